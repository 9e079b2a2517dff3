"""Self-checks for the chapter "Explaining predictions" (``chapters/explanations.ipynb``).

Expected answers are computed by the from-scratch methods of :mod:`book.nn.explain` (numerical integration,
enumeration of coalitions, occlusion), never by the closed forms the exercises ask for.
"""
from __future__ import annotations

import torch
from torch import nn

from book.check.core import Case, run_cases

__all__ = ["ig_linear", "product_shapley", "ig_cubic_gap", "occlude"]


def ig_linear(fn) -> None:
    """``fn(w, x, baseline)`` -> the integrated-gradients attributions of ``f(x) = w · x + c`` (1-D tensors)."""
    from book.nn.explain import integrated_gradients
    g = torch.Generator().manual_seed(31)
    cases = []
    for i, d in enumerate((3, 5, 12)):
        w, x, b = (torch.randn(d, generator=g, dtype=torch.float64) for _ in range(3))
        if i == 0:
            b = torch.zeros(d, dtype=torch.float64)
        lin = nn.Linear(d, 1).double()
        with torch.no_grad():
            lin.weight.copy_(w[None])
        ref = integrated_gradients(lin, x, None, b, steps=5)
        cases.append(Case((w, x, b), ref, public=i < 2,
                          label=f"{d} inputs" + (", zero baseline" if i == 0 else ", random baseline")))
    run_cases("ig_linear", fn, cases, hint="the gradient of a linear function is w at every point of the path")


def _product_value(x1, x2, b1, b2):
    def value(masks):
        return torch.where(masks[:, 0], x1, b1) * torch.where(masks[:, 1], x2, b2)
    return value


def product_shapley(fn) -> None:
    """``fn(x1, x2, b1, b2)`` -> ``(phi_1, phi_2)``: the Shapley values of ``f = x1 * x2`` at ``(x1, x2)``
    when an absent feature takes its baseline value ``b1`` or ``b2`` (floats)."""
    from book.nn.explain import shapley_exact
    cases = []
    for i, (x1, x2, b1, b2) in enumerate([(1.0, 1.0, 0.0, 0.0), (2.0, 3.0, 0.0, 0.0), (2.0, 3.0, 1.0, -1.0),
                                           (-0.5, 4.0, 0.5, 2.0), (0.3, -2.0, -1.0, 0.7)]):
        t = [torch.tensor(v, dtype=torch.float64) for v in (x1, x2, b1, b2)]
        phi = shapley_exact(_product_value(*t), 2)
        cases.append(Case((x1, x2, b1, b2), (float(phi[0]), float(phi[1])), public=i < 3,
                          label=f"x = ({x1}, {x2}), baseline ({b1}, {b2})"))
    run_cases("product_shapley", lambda *a: tuple(float(v) for v in fn(*a)), cases,
              hint="two features: average feature 1's marginal contribution over the two orders in which it "
                   "can join (first: v({1}) - v({}); second: v({1,2}) - v({2}))")


def ig_cubic_gap(fn) -> None:
    """``fn(x, n)`` -> ``f(x) - sum(IG)`` for ``f(x) = sum_i x_i**3``, zero baseline, IG by the midpoint rule
    with ``n`` steps (a float)."""
    from book.nn.explain import integrated_gradients
    cube = lambda z: (z ** 3).sum(-1)   # noqa: E731
    g = torch.Generator().manual_seed(33)
    cases = []
    for i, (d, n) in enumerate([(1, 1), (1, 4), (3, 2), (5, 10), (4, 3), (8, 50)]):
        x = torch.randn(d, generator=g, dtype=torch.float64) if i else torch.ones(1, dtype=torch.float64)
        ref = float((x ** 3).sum() - integrated_gradients(cube, x, None, steps=n).sum())
        cases.append(Case((x, n), ref, public=i < 3, label=f"{d} inputs, {n} steps"))
    run_cases("ig_cubic_gap", lambda x, n: float(fn(x, n)), cases,
              hint="along the path t·x the gradient of x_i**3 is 3 t² x_i²; compare the midpoint sum of 3 t² "
                   "over n cells with its integral 1")


def occlude(fn) -> None:
    """``fn(f, x, target, patch)`` -> (H, W): for every non-overlapping ``patch`` x ``patch`` square of the
    image ``x`` (C, H, W), the drop ``f(x)[target] - f(x with that square set to 0)[target]`` on its pixels."""
    from book.nn.explain import occlusion
    g = torch.Generator().manual_seed(34)
    cases = []
    for i, (side, patch, seed) in enumerate([(4, 2, 0), (6, 3, 1), (8, 4, 2), (8, 2, 3)]):
        torch.manual_seed(seed)
        f = nn.Sequential(nn.Flatten(), nn.Linear(side * side, 8), nn.Tanh(), nn.Linear(8, 3)).double()
        x = torch.rand(1, side, side, generator=g, dtype=torch.float64)
        t = i % 3
        cases.append(Case((f, x, t, patch), occlusion(f, x, t, patch), public=i < 2,
                          label=f"{side}x{side} image, patch {patch}, class {t}"))
    run_cases("occlude", fn, cases, hint="loop over the squares' corners in steps of patch; one forward pass "
              "for the image as it is and one per occluded copy (add a batch dimension: x[None])")
