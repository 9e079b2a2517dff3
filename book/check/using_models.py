"""Self-checks of the using_models chapter's exercises."""
from __future__ import annotations

import torch

from book.check.core import Case, _g, close, run_cases

__all__ = ["balance_loss", "min_norm_error", "ridge_predict", "moe_active_params"]


def balance_loss(fn) -> None:
    """``fn(probs, idx)`` -> Switch Transformer's ``E * sum_i f_i * P_i`` (probs (N, E), idx (N, k))."""
    from book.nn.moe import load_balancing_loss
    g = _g(81)
    cases = []
    for i, (N, E, k, skew) in enumerate([(16, 4, 1, 0.0), (32, 8, 2, 0.0), (64, 8, 1, 4.0), (10, 3, 3, 0.0),
                                         (50, 6, 2, 8.0)]):
        logits = torch.randn(N, E, generator=g)
        logits[:, 0] += skew                                   # a router that prefers expert 0
        probs = logits.softmax(-1)
        idx = logits.topk(k, -1).indices
        cases.append(Case((probs, idx), load_balancing_loss(probs, idx), public=i < 2,
                          label=f"{N} tokens, {E} experts, top-{k}" + (", skewed" if skew else "")))
    run_cases("balance_loss", fn, cases, compare=lambda got, exp: close(got, exp, rtol=1e-5, atol=1e-6),
              hint="f: counts of each expert in idx over idx.numel() (torch.bincount, minlength=E); "
                   "P: probs.mean(0); then E * (f * P).sum()")


def min_norm_error(fn) -> None:
    """``fn(d, k)`` -> expected squared error / d of the minimum-norm least-squares prediction from ``k``
    noiseless examples, x and w ~ N(0, I_d) (measured here by simulation)."""
    from book.lab.using_models import error_by_examples, icl_batch, least_squares_predictions
    g = _g(82)
    cases = []
    for i, d in enumerate([3, 5, 8]):
        xs, ys, _ = icl_batch(6000, d + 3, d, generator=g)
        err = error_by_examples(least_squares_predictions(xs, ys), ys, d)
        for k in ([1, d - 1, d + 1] if i < 2 else [0, 2, 5, d + 2]):
            cases.append(Case((d, k), float(err[k]), public=i < 1, label=f"d={d}, k={k}"))
    run_cases("min_norm_error", fn, cases, compare=lambda got, exp: close(got, exp, rtol=0, atol=0.06),
              hint="the fit recovers the projection of w onto the span of the k inputs; what is left has "
                   "d - k of d directions (none once k >= d)")


def ridge_predict(fn) -> None:
    """``fn(X, y, x_query, lam)`` -> the ridge prediction at ``x_query`` for one data set ``X`` (k, d)."""
    from book.lab.using_models import least_squares_predictions
    g = _g(83)
    cases = []
    for i, (k, d, lam) in enumerate([(5, 3, 0.1), (2, 4, 1.0), (10, 5, 0.01), (1, 2, 3.0)]):
        xs = torch.randn(1, k + 1, d, generator=g, dtype=torch.float64)
        ys = torch.randn(1, k + 1, generator=g, dtype=torch.float64)
        expected = least_squares_predictions(xs, ys, ridge=lam)[0, k].item()
        cases.append(Case((xs[0, :k], ys[0, :k], xs[0, k], lam), expected, public=i < 2,
                          label=f"{k} examples in {d} dimensions, lambda={lam}"))
    run_cases("ridge_predict", fn, cases, compare=lambda got, exp: close(float(got), exp, rtol=1e-6, atol=1e-8),
              hint="w = (X^T X + lambda I)^-1 X^T y (torch.linalg.solve), then w · x_query")


def moe_active_params(fn) -> None:
    """``fn(dim, hidden, n_experts, k)`` -> (all parameters, parameters one token uses) of book.nn.moe.MoE."""
    from book.nn.counting import count_params
    from book.nn.moe import MoE
    cases = []
    for i, (dim, hidden, E, k) in enumerate([(32, 32, 8, 1), (64, 256, 4, 2), (16, 8, 3, 3), (128, 512, 16, 2)]):
        moe = MoE(dim, hidden, E, k)
        one = count_params(moe.experts[0])
        router = count_params(moe.router)
        cases.append(Case((dim, hidden, E, k), (count_params(moe), router + k * one), public=i < 2,
                          label=f"dim {dim}, hidden {hidden}, {E} experts, top-{k}"))
    run_cases("moe_active_params", fn, cases,
              compare=lambda got, exp: close(torch.tensor(got, dtype=torch.float64),
                                             torch.tensor(exp, dtype=torch.float64), rtol=0, atol=0.5),
              hint="each expert: two linear layers with biases; the router has dim x n_experts weights, no "
                   "bias, and every token uses it")
