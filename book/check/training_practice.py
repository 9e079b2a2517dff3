"""Self-checks of the training_practice chapter's exercises."""
from __future__ import annotations

import torch

from book.check.core import Case, _g, _rel, close, run_cases

__all__ = ['init_std', 'warmup_cosine_lr', 'clip_by_norm', 'batchnorm_forward', 'leaky_he_std', 'layers_to_vanish']


# ---------------------------------------------------------------------------- Part III: training in practice
def init_std(fn) -> None:
    """``fn(kind, fan_in, fan_out)`` -> the weight standard deviation of 'xavier' (Glorot) or 'he' (Kaiming, ReLU)."""
    from book.check._reference import _init_std_ref as ref  # hidden from graded code
    params = [("xavier", 784, 256), ("he", 784, 256), ("xavier", 100, 100), ("he", 10, 1000), ("xavier", 3, 5)]
    cases = [Case(p, ref(*p), public=i < 2, label=f"{p[0]}, fan_in={p[1]}, fan_out={p[2]}")
             for i, p in enumerate(params)]
    run_cases("init_std", fn, cases,
              hint="Xavier: Var = 2/(fan_in + fan_out); He: Var = 2/fan_in; return the square root")


def warmup_cosine_lr(fn) -> None:
    """``fn(step, total, warmup, base_lr)`` -> linear warm-up to base_lr over ``warmup`` steps, then cosine decay
    to 0."""
    from book.check._reference import _warmup_cosine_ref as ref  # hidden from graded code
    params = [(0, 100, 10, 1.0), (9, 100, 10, 1.0), (10, 100, 10, 1.0), (55, 100, 10, 1.0), (99, 100, 10, 0.1),
              (4, 1000, 50, 3e-3), (700, 1000, 50, 3e-3)]
    cases = [Case(p, ref(*p), public=i < 4, label=f"step {p[0]} of {p[1]}, warm-up {p[2]}")
             for i, p in enumerate(params)]
    run_cases("warmup_cosine_lr", fn, cases, hint="warm-up: base·(step+1)/warmup; then base·½(1 + cos(π·progress)) "
              "with progress = (step − warmup)/(total − warmup)")


def clip_by_norm(fn) -> None:
    """``fn(grads, max_norm)`` -> the gradients scaled together so that their total L2 norm is at most max_norm."""
    g = _g(20)
    cases = []
    for i, (scale, max_norm) in enumerate([(10.0, 1.0), (0.01, 1.0), (3.0, 0.5)]):
        grads = [torch.randn(3, 4, generator=g, dtype=torch.float64) * scale,
                 torch.randn(5, generator=g, dtype=torch.float64) * scale]
        total = torch.sqrt(sum((t ** 2).sum() for t in grads))
        factor = min(1.0, max_norm / float(total))
        cases.append(Case((grads, max_norm), tuple(t * factor for t in grads), public=i < 2,
                          label="large gradients" if scale > 1 else "small gradients (unchanged)"))
    run_cases("clip_by_norm", fn, cases, compare=lambda got, exp: close(tuple(got), exp),
              hint="total = sqrt(Σ‖g‖²); multiply every g by min(1, max_norm / total)")


def batchnorm_forward(fn) -> None:
    """``fn(x, eps)`` -> batch normalisation of x (N, D) in training mode, without the learned scale and shift."""
    import torch.nn.functional as F
    g = _g(21)
    cases = []
    for i, (n, dim) in enumerate([(4, 3), (16, 8), (64, 2)]):
        x = torch.randn(n, dim, generator=g, dtype=torch.float64) * 3 + 1
        cases.append(Case((x, 1e-5), F.batch_norm(x, None, None, training=True, eps=1e-5), public=i < 2,
                          label=f"({n}, {dim})"))
    run_cases("batchnorm_forward", fn, cases, hint="per feature: (x − mean) / sqrt(var + eps), with the *biased* "
              "variance (divide by N)")


def leaky_he_std(fn) -> None:
    """``fn(fan_in, slope)`` -> the weight std that keeps the forward variance of a leaky-ReLU net constant."""
    from book.check._reference import _leaky_he_std_ref as ref  # hidden from graded code
    params = [(784, 0.01), (256, 0.2), (100, 0.0), (64, 1.0), (1000, 0.5)]
    cases = [Case(p, ref(*p), public=i < 2, label=f"fan_in={p[0]}, slope={p[1]}") for i, p in enumerate(params)]
    run_cases("leaky_he_std", fn, cases, compare=_rel,
              hint="E[f(z)²] = (1 + slope²)/2 · Var(z) for z symmetric around 0; solve fan_in·Var(w)·that = 1")


def layers_to_vanish(fn) -> None:
    """``fn(width, std, factor)`` -> the fewest ReLU layers that multiply the activation std by <= factor."""
    from book.check._reference import _layers_to_vanish_ref as ref  # hidden from graded code
    params = [(256, 0.01, 1e-6), (512, 0.05, 1e-3), (128, 0.1, 1e-2), (1024, 0.04, 0.5), (64, 0.01, 1e-9)]
    cases = [Case(p, ref(*p), public=i < 2, label=f"width={p[0]}, std={p[1]}, factor={p[2]:g}")
             for i, p in enumerate(params)]
    run_cases("layers_to_vanish", fn, cases, compare=_rel,
              hint="per layer the std is multiplied by r = sqrt(width·std²/2); the smallest L with r^L <= factor")
