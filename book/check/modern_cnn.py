"""Self-checks of the modern_cnn chapter's exercises."""
from __future__ import annotations

import torch

from book.check.core import Case, _g, run_cases

__all__ = ['pointwise_conv', 'separable_width', 'rank_correlation', 'exact_shifts']


def pointwise_conv(fn) -> None:
    """``fn(x, w, b)`` -> the 1×1 convolution of x (N, C, H, W) with w (O, C, 1, 1) and bias b (O,)."""
    import torch.nn.functional as F
    g = _g(31)
    cases = []
    for i, (n, c, h, w_, o) in enumerate([(1, 1, 2, 2, 1), (2, 3, 4, 5, 4), (3, 8, 6, 3, 2), (1, 5, 1, 7, 6)]):
        x = torch.randn(n, c, h, w_, generator=g, dtype=torch.float64)
        w = torch.randn(o, c, 1, 1, generator=g, dtype=torch.float64)
        b = torch.randn(o, generator=g, dtype=torch.float64)
        cases.append(Case((x, w, b), F.conv2d(x, w, b), public=i < 2, label=f"x {tuple(x.shape)}, w {tuple(w.shape)}"))
    run_cases("pointwise_conv", fn, cases, hint="each pixel's C channels times the (C, O) matrix w[:, :, 0, 0].T, "
              "plus b; mind the axis order")


def separable_width(fn) -> None:
    """``fn(c_in, k, budget)`` -> the largest c_out whose depthwise-separable layer (both parts with bias) has
    at most ``budget`` parameters; 0 if none fits."""
    from book.nn.conv import separable_conv2d_params

    def widest(c_in, k, budget):          # counted, not solved: the largest O that fits
        o = 0
        while separable_conv2d_params(c_in, o + 1, k) <= budget:
            o += 1
        return o
    params = [(16, 3, 1000), (1, 3, 20), (8, 5, 300), (32, 3, 5000), (4, 3, 10), (64, 7, 20000), (3, 1, 30)]
    cases = [Case(p, widest(*p), public=i < 3, label=f"c_in={p[0]}, k={p[1]}, budget={p[2]}")
             for i, p in enumerate(params)]
    run_cases("separable_width", fn, cases, hint="c_in·k² + c_in (depthwise) + c_out·(c_in + 1) (pointwise) "
              "<= budget; round down, and never below 0")


def rank_correlation(fn) -> None:
    """``fn(a, b)`` -> Spearman's rank correlation of two 1-D tensors without ties."""
    from book.lab.modern_cnn import spearman
    g = _g(32)
    a = torch.randn(50, generator=g)
    pairs = [(a, a ** 3, "a, a³"), (a, -a, "a, −a"), (a, torch.randn(50, generator=g), "a, independent"),
             (torch.randn(7, generator=g), torch.randn(7, generator=g), "7 values"),
             (torch.arange(10.), torch.arange(10.).flip(0) ** 2, "monotone decreasing")]
    cases = [Case((x, y), spearman(x[None], y[None])[0], public=i < 3, label=label)
             for i, (x, y, label) in enumerate(pairs)]
    run_cases("rank_correlation", fn, cases, hint="ranks: x.argsort().argsort(); then the Pearson correlation "
              "of the two rank vectors")


def exact_shifts(fn) -> None:
    """``fn(layers, max_shift)`` -> the shifts 1..max_shift that move the last map by whole units."""
    from book.check._reference import _exact_shifts_ref
    params = [([(5, 1, 1), (2, 2, 1), (5, 1, 1), (2, 2, 1)], 12), ([(3, 1, 1)], 3), ([(3, 2, 1), (3, 3, 2)], 20),
              ([(3, 1, 1), (2, 2, 1)] * 3, 17), ([(7, 2, 1), (3, 2, 1), (3, 1, 4)], 9)]
    cases = [Case((layers, m), _exact_shifts_ref(layers, m), public=i < 3, label=f"{layers}, up to {m}")
             for i, (layers, m) in enumerate(params)]
    def same(got, exp):
        return isinstance(got, (list, tuple)) and list(got) == exp, "different shifts"
    run_cases("exact_shifts", fn, cases, compare=same,
              hint="the shift must be a multiple of every stride below, chained: of their product")
