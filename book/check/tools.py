"""Self-checks for the chapter "Tools of the trade"."""
from __future__ import annotations

from book.check.core import Case, run_cases

__all__ = ["amdahl", "matmul_intensity", "attainable", "ema"]


def amdahl(fn) -> None:
    """``fn(p, s)`` -> 1 / ((1 - p) + p / s)."""
    cases = [Case((0.5, 2.0), 4 / 3, label="half the time, twice as fast"),
             Case((0.05, 1e12), 1 / 0.95, label="optimizer 5 %, made (almost) infinitely fast"),
             Case((1.0, 8.0), 8.0, label="everything 8x faster"),
             Case((0.9, 10.0), 1 / 0.19, public=False, label="p = 0.9, s = 10"),
             Case((0.0, 100.0), 1.0, public=False, label="p = 0: nothing changes")]
    run_cases("amdahl", lambda p, s: float(fn(p, s)), cases, hint="new time = (1 - p) + p / s of the old")


def matmul_intensity(fn) -> None:
    """``fn(m, n, k, bytes_per)`` -> 2mnk / ((mk + kn + mn) bytes_per)."""
    cases = [Case((2, 2, 2, 4), 16 / 48, label="2x2 @ 2x2 in fp32"),
             Case((4096, 4096, 4096, 2), 2 * 4096 ** 3 / (3 * 4096 ** 2 * 2), label="4096^3 in bf16"),
             Case((4096, 1, 4096, 2), 2 * 4096 * 4096 / ((4096 * 4096 + 4096 + 4096) * 2), public=False,
                  label="matrix-vector product: about 1 FLOP/byte")]
    run_cases("matmul_intensity", lambda *a: float(fn(*a)), cases, hint="read A (m k) and B (k n), write C (m n)")


def attainable(fn) -> None:
    """``fn(intensity, peak, bandwidth)`` -> min(peak, intensity * bandwidth)."""
    cases = [Case((1.0, 990e12, 3.35e12), 3.35e12, label="matrix-vector on an H100: memory-bound"),
             Case((1000.0, 990e12, 3.35e12), 990e12, label="large matmul: compute-bound"),
             Case((0.25, 1e12, 1e11), 2.5e10, public=False, label="element-wise")]
    run_cases("attainable", lambda *a: float(fn(*a)), cases, hint="the lower of the two roofs")


def ema(fn) -> None:
    """``fn(values, w)`` -> exponentially smoothed list, starting from values[0]."""
    from book.check._reference import _ema_ref as ref  # hidden from graded code
    cases = [Case(([1.0, 0.0, 0.0], 0.5), [1.0, 0.5, 0.25], label="[1, 0, 0], w = 0.5"),
             Case(([3.0, 1.0, 2.0], 0.0), [3.0, 1.0, 2.0], label="w = 0: no smoothing"),
             Case(([2.0, 4.0, 6.0, 8.0], 0.9), ref([2.0, 4.0, 6.0, 8.0], 0.9), public=False, label="w = 0.9")]
    run_cases("ema", lambda v, w: [float(x) for x in fn(list(v), w)], cases,
              hint="s starts at values[0]; s = w*s + (1-w)*v")
