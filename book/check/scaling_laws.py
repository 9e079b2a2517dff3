"""Self-checks for the chapter "Scaling laws"."""
from __future__ import annotations

import math

import numpy as np

from book.check.core import Case, close, run_cases

__all__ = ["scaling_exponent", "training_gpu_days", "chinchilla_split", "extrapolate_loss"]


def _rel(got, expected):
    return close(got, expected, rtol=1e-6, atol=0.0)


def _law_points(seed: int, alpha: float, a: float, noise: float, k: int = 6):
    rng = np.random.default_rng(seed)
    n = np.geomspace(1e3, 1e3 * 10 ** rng.uniform(1.5, 4), k)
    loss = a * n ** (-alpha) * np.exp(noise * rng.standard_normal(k))
    return n, loss


def scaling_exponent(fn) -> None:
    """``fn(n, loss)`` -> alpha of the least-squares fit L = a·N^(-alpha) (a positive number when loss falls)."""
    from book.check._reference import _slope_ref  # hidden from graded code
    n = np.array([1e3, 1e4, 1e5, 1e6])
    cases = [Case((n, 5.0 * n ** -0.1), 0.1, label="exact law L = 5·N^-0.1 at N = 1e3..1e6"),
             Case((np.array([10.0, 1000.0]), np.array([4.0, 2.0])), math.log(2) / math.log(100),
                  label="two points: loss halves over two decades")]
    for seed, alpha in ((1, 0.076), (2, 0.34), (3, 0.03)):
        pts = _law_points(seed, alpha, 3.0, 0.02)
        cases.append(Case(pts, _slope_ref(*pts), public=False, label=f"noisy law, alpha ≈ {alpha}"))
    run_cases("scaling_exponent", fn, cases, compare=_rel,
              hint="fit a straight line to (log N, log L) with np.polyfit(..., 1); alpha is minus its slope. "
                   "Use the same logarithm on both axes (the base cancels in a slope)")


def training_gpu_days(fn) -> None:
    """``fn(n_params, n_tokens, gpus, flops_per_gpu, utilization)`` -> wall-clock days of training, with
    C = 6·N·D FLOPs done at ``utilization`` × the peak ``flops_per_gpu`` (FLOP/s) of each of ``gpus`` GPUs."""
    from book.check._reference import _days_ref  # hidden from graded code
    cases = [Case((1e9, 20e9, 8, 1e15, 0.4), _days_ref(1e9, 20e9, 8, 1e15, 0.4),
                  label="1 B parameters, 20 B tokens, 8 GPUs of 1 PFLOP/s at 40 %"),
             Case((175e9, 300e9, 1024, 312e12, 0.5), _days_ref(175e9, 300e9, 1024, 312e12, 0.5),
                  label="GPT-3 on 1024 A100s (312 TFLOP/s bf16 peak) at 50 %"),
             Case((70e9, 1.4e12, 2048, 989e12, 0.4), _days_ref(70e9, 1.4e12, 2048, 989e12, 0.4), public=False),
             Case((3e5, 1.5e5, 1, 5e10, 0.2), _days_ref(3e5, 1.5e5, 1, 5e10, 0.2), public=False)]
    run_cases("training_gpu_days", fn, cases, compare=_rel,
              hint="C = 6·N·D FLOPs; seconds = C / (gpus · flops_per_gpu · utilization); a day has 86,400 s")


def chinchilla_split(fn) -> None:
    """``fn(flops, tokens_per_param)`` -> ``(n_params, n_tokens)`` with 6·N·D = flops and D = tokens_per_param·N."""
    from book.check._reference import _chinchilla_ref as ref  # hidden from graded code
    cases = [Case((5.88e23, 20.0), ref(5.88e23, 20.0),
                  label="Chinchilla's budget (6 · 70e9 · 1.4e12), 20 tokens/param"),
             Case((1.2e21, 20.0), ref(1.2e21, 20.0), label="1.2e21 FLOPs"),
             Case((3.14e23, 20.0), ref(3.14e23, 20.0), public=False, label="GPT-3's budget"),
             Case((1e18, 100.0), ref(1e18, 100.0), public=False, label="another ratio")]
    run_cases("chinchilla_split", fn, cases, compare=lambda g, e: close(g, e, rtol=1e-6, atol=0.0),
              hint="substitute D = r·N into C = 6·N·D: C = 6·r·N², so N = sqrt(C / (6 r))")


def extrapolate_loss(fn) -> None:
    """``fn(n, loss, n_new)`` -> the loss predicted at size ``n_new`` by the log-log least-squares power law."""
    from book.check._reference import _extrap_ref  # hidden from graded code
    n = np.array([1e3, 1e4, 1e5])
    cases = [Case((n, 4.0 * n ** -0.05, 1e7), 4.0 * 1e7 ** -0.05, label="exact law 4·N^-0.05, extrapolated to 1e7"),
             Case((np.array([2e3, 8e3, 3e4, 1e5]), np.array([2.6, 2.5, 2.42, 2.33]), 1e6),
                  _extrap_ref(np.array([2e3, 8e3, 3e4, 1e5]), np.array([2.6, 2.5, 2.42, 2.33]), 1e6),
                  label="four toy GPT losses, extrapolated 10x")]
    for seed in (4, 5):
        pts = _law_points(seed, 0.1, 6.0, 0.03)
        cases.append(Case((*pts, 1e9), _extrap_ref(*pts, 1e9), public=False, label="noisy law, far extrapolation"))
    run_cases("extrapolate_loss", fn, cases, compare=_rel,
              hint="fit log L = c + s·log N with np.polyfit, then return exp(c + s·log n_new)")
