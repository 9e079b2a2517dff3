"""Self-checks of the residual_nets chapter's exercises."""
from __future__ import annotations

import torch

from book.check.core import Case, _g, _rel, close, run_cases

__all__ = ["batchnorm_eval", "running_mean_after", "branch_scale", "small_resnet_params", "layer_norm_last"]


def batchnorm_eval(fn) -> None:
    """``fn(x, running_mean, running_var, gamma, beta, eps)`` -> batch norm of x (N, C) in evaluation mode."""
    import torch.nn.functional as F
    g = _g(31)
    cases = []
    for i, (n, c) in enumerate([(4, 3), (1, 5), (32, 8)]):
        x = torch.randn(n, c, generator=g, dtype=torch.float64) * 2 + 1
        rm = torch.randn(c, generator=g, dtype=torch.float64)
        rv = torch.rand(c, generator=g, dtype=torch.float64) * 3 + 0.1
        gamma = torch.rand(c, generator=g, dtype=torch.float64) + 0.5
        beta = torch.randn(c, generator=g, dtype=torch.float64)
        expected = F.batch_norm(x, rm, rv, gamma, beta, training=False, eps=1e-5)
        cases.append(Case((x, rm, rv, gamma, beta, 1e-5), expected, public=i < 2,
                          label=f"({n}, {c})" + (", a single example" if n == 1 else "")))
    run_cases("batchnorm_eval", fn, cases, hint="evaluation mode uses the running statistics, not the batch's")


def running_mean_after(fn) -> None:
    """``fn(k, m, momentum)`` -> a fresh batch norm's running mean after k batches of mean m."""
    from book.check._reference import _running_mean_ref as ref  # hidden from graded code
    params = [(1, 2.0, 0.1), (10, 2.0, 0.1), (44, -1.5, 0.1), (5, 3.0, 0.5), (0, 1.0, 0.1), (200, 0.7, 0.01)]
    cases = [Case(p, ref(*p), public=i < 3, label=f"k={p[0]}, m={p[1]}, momentum={p[2]}")
             for i, p in enumerate(params)]
    run_cases("running_mean_after", fn, cases, compare=lambda got, exp: close(got, exp, rtol=1e-4, atol=1e-6),
              hint="each update multiplies the gap m − running_mean by (1 − momentum)")


def branch_scale(fn) -> None:
    """``fn(L)`` -> the branch scale α with (1 + α²)^L = 2."""
    from book.check._reference import _branch_scale_ref as ref  # hidden from graded code
    cases = [Case((L,), ref(L), public=i < 2, label=f"L={L}") for i, L in enumerate([1, 10, 3, 100, 1000])]
    run_cases("branch_scale", fn, cases, compare=_rel,
              hint="one block multiplies the variance by 1 + α²; L blocks by (1 + α²)^L")


def small_resnet_params(fn) -> None:
    """``fn(widths, blocks)`` -> the number of trainable parameters of SmallResNet(widths, blocks)."""
    from book.check._reference import _resnet_params_ref as ref  # hidden from graded code
    # (8, 8, 8): stride-2 blocks whose channels do not change still need a projection
    params = [((8, 16, 32), 3), ((4, 8, 16), 1), ((16, 32, 64), 5), ((8, 8, 8), 2), ((3, 5, 7), 2)]
    cases = [Case(p, ref(*p), public=i < 2, label=f"widths={p[0]}, blocks={p[1]}")
             for i, p in enumerate(params)]
    run_cases("small_resnet_params", fn, cases, compare=_rel,
              hint="stem (3×3 conv from 1 channel + batch norm), every basic block (a projection when its "
                   "stride or channels change), and the head's linear layer with bias")


def layer_norm_last(fn) -> None:
    """``fn(x, eps)`` -> layer normalisation of x over its last axis, without γ and β."""
    import torch.nn.functional as F
    g = _g(32)
    cases = []
    for i, shape in enumerate([(4, 6), (2, 3, 8), (1, 16), (5, 1, 2)]):
        x = torch.randn(*shape, generator=g, dtype=torch.float64) * 3 - 1
        cases.append(Case((x, 1e-5), F.layer_norm(x, shape[-1:], eps=1e-5), public=i < 2, label=str(shape)))
    run_cases("layer_norm_last", fn, cases, hint="mean and biased variance over the last axis, keepdim=True")
