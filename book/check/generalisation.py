"""Self-checks of the generalisation chapter's exercises."""
from __future__ import annotations

import numpy as np

from book.check.core import Case, _rel, close, run_cases

__all__ = ["bias_variance_split", "mean_baseline_mse", "ols_train_mse", "cv_mse", "best_of_optimism"]


def bias_variance_split(fn) -> None:
    """``fn(preds, truth)`` -> ``(bias², variance)``: preds (training sets, points), truth (points,);
    both averaged over the points, the variance over training sets with ``ddof=0``."""
    from book.lab.generalisation import decompose
    rng = np.random.default_rng(7)
    truth = np.array([0.0, 1.0])
    preds = np.array([[0.5, 1.0], [1.5, 3.0]])
    cases = [Case((preds, truth), decompose(preds, truth), label="two training sets, two points")]
    for i, (r, m) in enumerate([(50, 30), (3, 200)]):
        t = rng.normal(size=m)
        p = t + 0.3 + rng.normal(size=(r, m))
        cases.append(Case((p, t), decompose(p, t), public=i == 0, label=f"{r} training sets, {m} points"))
    run_cases("bias_variance_split", fn, cases, compare=lambda g, e: close(tuple(g), e, rtol=1e-9),
              hint="average over training sets first (axis 0), then over points; which of the two is "
                   "squared before averaging?")


def mean_baseline_mse(fn) -> None:
    """``fn(var_y, n)`` -> expected squared error, on a new example, of predicting the mean of ``n``
    independent training labels whose variance is ``var_y`` (labels and the new one from one distribution)."""
    from book.check._reference import _mean_baseline_ref as ref  # hidden from graded code
    cases = [Case((1.0, 1), ref(1.0, 1), label="one training label"),
             Case((0.09, 30), ref(0.09, 30), label="30 labels, variance 0.09"),
             Case((2.5, 7), ref(2.5, 7), public=False), Case((1.0, 10_000), ref(1.0, 10_000), public=False)]
    run_cases("mean_baseline_mse", fn, cases, compare=_rel,
              hint="split the error as in the chapter: what are the bias, the variance of a mean of n "
                   "labels, and the noise of the new label?")


def ols_train_mse(fn) -> None:
    """``fn(n, p, sigma)`` -> expected *training* mean squared error of least squares with ``p`` features
    on ``n > p`` points when the model is correct and the noise has standard deviation ``sigma``."""
    from book.check._reference import _ols_train_ref as ref  # hidden from graded code
    cases = [Case((10, 1, 1.0), ref(10, 1, 1.0), label="n=10, p=1, σ=1"),
             Case((30, 4, 0.3), ref(30, 4, 0.3), label="n=30, p=4, σ=0.3"),
             Case((100, 99, 2.0), ref(100, 99, 2.0), public=False),
             Case((1000, 10, 0.5), ref(1000, 10, 0.5), public=False)]
    run_cases("ols_train_mse", fn, cases, compare=_rel,
              hint="the residual is (I − H)·noise, with H the projection onto the p feature columns; "
                   "what is the trace of I − H?")


def cv_mse(fn) -> None:
    """``fn(x, y, degree, k)`` -> k-fold cross-validation error of a least-squares polynomial, folds
    ``np.array_split(np.arange(n), k)`` in the given order."""
    from book.lab.generalisation import kfold_mse, make_data
    rng = np.random.default_rng(11)
    cases = []
    for i, (n, deg, k) in enumerate([(20, 1, 5), (30, 3, 10), (25, 2, 25), (40, 5, 4)]):
        x, y = make_data(n, rng)
        cases.append(Case((x, y, deg, k), kfold_mse(x, y, deg, k), public=i < 2,
                          label=f"n={n}, degree {deg}, k={k}"))
    run_cases("cv_mse", fn, cases, compare=lambda g, e: close(g, e, rtol=1e-8),
              hint="each fold is predicted by a model that never saw it; are the squared errors averaged "
                   "over all n points?")


def best_of_optimism(fn) -> None:
    """``fn(m, s)`` -> expected optimism (true error minus reported score) when the best of ``m`` models
    with the same true error is picked by a score with independent N(0, s²) noise per model."""
    from book.check._reference import _best_of_ref as ref  # hidden from graded code
    cases = [Case((1, 1.0), 0.0, label="one model: nothing is chosen"),
             Case((2, 1.0), ref(2, 1.0), label="two models, s=1"),
             Case((10, 0.3), ref(10, 0.3), label="ten models, s=0.3"),
             Case((50, 0.5), ref(50, 0.5), public=False), Case((5, 2.0), ref(5, 2.0), public=False)]
    run_cases("best_of_optimism", fn, cases, compare=lambda g, e: close(g, e, rtol=0.02, atol=0.005),
              hint="it scales with s; for m models you need the expected largest of m standard normals "
                   "(simulate a few hundred thousand draws: the check allows 2 %)")
