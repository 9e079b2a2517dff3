"""Self-checks for the chapter "From raw data to a served model"."""
from __future__ import annotations

import numpy as np

from book.check.core import Case, _rel, run_cases
from book.lab import pipeline as lab
from book.nn import dedup

__all__ = ["jaccard_similarity", "robust_zscore", "lsh_half_point", "noisy_label_accuracy"]


def jaccard_similarity(fn) -> None:
    """``fn(a, b)`` -> ``|a & b| / |a | b|`` for two sets (1.0 for two empty sets); reference
    :func:`book.nn.dedup.jaccard`."""
    args = [(({"a b c", "b c d"}, {"b c d", "c d e"}), True), (({1, 2, 3}, {1, 2, 3}), True),
            (({1, 2}, {3, 4}), True), ((set(), set()), False), (({1}, set()), False),
            ((set(range(10)), set(range(5, 30))), False)]
    rng = np.random.default_rng(1)
    for size in (20, 200):
        a, b = set(rng.integers(0, 3 * size, size).tolist()), set(rng.integers(0, 3 * size, size).tolist())
        args.append(((a, b), False))
    cases = [Case(a, dedup.jaccard(*a), public=p, label=f"sets of {len(a[0])} and {len(a[1])}")
             for a, p in args]
    run_cases("jaccard_similarity", lambda a, b: float(fn(a, b)), cases, compare=_rel,
              hint="intersection over union; two empty sets are identical (1.0)")


def robust_zscore(fn) -> None:
    """``fn(v)`` -> (v - median) / (1.4826 * MAD) for a 1-D array; reference :func:`book.lab.pipeline.robust_z`."""
    vals = [np.array([1.0, 2.0, 3.0, 4.0, 100.0]), np.array([-1.0, 0.0, 0.5, 2.0, 3.0, 50.0, -40.0])]
    wild = np.random.default_rng(5).normal(size=200)
    wild[:10] += 50.0
    vals += [wild, np.random.default_rng(6).standard_t(2, size=101)]
    cases = [Case((v,), lab.robust_z(v), public=i < 2, label=f"{len(v)} values") for i, v in enumerate(vals)]
    run_cases("robust_zscore", lambda v: np.asarray(fn(v.copy()), dtype=float), cases,
              hint="median of the values, median of the absolute deviations from it, scaled by 1.4826")


def lsh_half_point(fn) -> None:
    """``fn(rows, bands)`` -> the similarity s at which 1 - (1 - s^r)^b = 1/2, found here by bisection on
    :func:`book.nn.dedup.s_curve`."""
    def solve(r, b):
        lo, hi = 0.0, 1.0
        for _ in range(200):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if dedup.s_curve(mid, r, b) < 0.5 else (lo, mid)
        return (lo + hi) / 2
    args = [((2, 32), True), ((4, 16), True), ((1, 1), True), ((8, 16), False), ((5, 20), False),
            ((3, 1), False), ((1, 64), False)]
    cases = [Case(a, solve(*a), public=p, label=f"r = {a[0]}, b = {a[1]}") for a, p in args]
    run_cases("lsh_half_point", lambda r, b: float(fn(r, b)), cases, compare=_rel,
              hint="(1 - s^r)^b = 1/2: take the b-th root first, then solve for s")


def noisy_label_accuracy(fn) -> None:
    """``fn(a, rho, k)`` -> expected accuracy against labels of which a fraction rho were redrawn uniformly
    from k classes, for a classifier right about the true class with probability a. Checked by summing
    the exact joint distribution of (true class, prediction, observed label)."""
    def exact(a, rho, k):
        total = 0.0
        for true in range(k):                       # uniform true class
            for pred in range(k):                   # right w.p. a, else uniform over the others
                p_pred = a if pred == true else (1 - a) / (k - 1)
                for label in range(k):              # kept w.p. 1 - rho, else uniform over all k
                    p_label = (1 - rho) * (label == true) + rho / k
                    total += (1 / k) * p_pred * p_label * (pred == label)
        return total
    args = [((0.9, 0.2, 2), True), ((0.8, 0.3, 6), True), ((1.0, 0.0, 10), True), ((0.5, 1.0, 4), False),
            ((0.7, 0.1, 3), False), ((0.25, 0.5, 5), False), ((0.95, 0.05, 20), False)]
    cases = [Case(a, exact(*a), public=p, label=f"a = {a[0]}, rho = {a[1]}, K = {a[2]}") for a, p in args]
    run_cases("noisy_label_accuracy", lambda a, r, k: float(fn(a, r, k)), cases, compare=_rel,
              hint="condition on whether the label was redrawn: (1 - rho) a + rho * (chance a uniform label "
                   "equals the prediction)")
