"""The generalisation chapter's experiments: the bias-variance decomposition measured on polynomial
regression, double descent of min-norm least squares on random ReLU features, the optimism of selecting
on the test set, k-fold cross-validation from scratch, and :class:`ComplexityExplorer` (a complexity and
regularisation slider over the fits and the error curves).

Everything here is closed-form least squares in float64 NumPy (no training loop): each number is exact
up to the randomness of the data, so thousands of fits take seconds on a CPU.
"""
from __future__ import annotations

import math

import numpy as np
from numpy.polynomial import legendre

from book.ui import Explorer

NOISE = 0.3           # standard deviation of the label noise of the 1-D problem
DEGREES = tuple(range(0, 11))
LAMS = (0.0, 1e-6, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)   # the explorer's regularisation strengths


# ============================================================================ the 1-D problem
def target(x):
    """The true function of the 1-D problem: f(x) = sin(3x) + x / 2 on [-1, 1]."""
    return np.sin(3 * np.asarray(x, dtype=float)) + 0.5 * np.asarray(x, dtype=float)


def make_data(n: int, rng: np.random.Generator, noise: float = NOISE):
    """``n`` points x ~ U[-1, 1] with labels y = f(x) + noise·ε, ε ~ N(0, 1)."""
    if n < 1:
        raise ValueError(f"need at least one point, got n={n}")
    x = rng.uniform(-1, 1, n)
    return x, target(x) + noise * rng.standard_normal(n)


def poly_features(x, degree: int) -> np.ndarray:
    """``(len(x), degree + 1)`` Legendre polynomials P_0 .. P_degree of x: a polynomial of that degree,
    in a basis that stays well conditioned on [-1, 1] (the monomials 1, x, x², ... do not)."""
    if degree < 0:
        raise ValueError(f"degree must be >= 0, got {degree}")
    return legendre.legvander(np.asarray(x, dtype=float), degree)


# ============================================================================ least squares from scratch
def ridge_path(features, y, lams) -> np.ndarray:
    """Ridge weights ``w(λ) = argmin |Φw − y|² + λ|w|²`` for every ``λ`` in ``lams``, one row each.

    Through the SVD Φ = U diag(s) Vᵀ: w(λ) = V diag(s / (s² + λ)) Uᵀ y. At λ = 0 this is the
    **minimum-norm** least-squares solution (the pseudo-inverse; singular values below the rounding level
    count as zero), which interpolates the data once there are at least as many features as points.
    """
    phi = np.asarray(features, dtype=float)
    y = np.asarray(y, dtype=float)
    lams = np.atleast_1d(np.asarray(lams, dtype=float))
    if phi.ndim != 2 or y.shape != (phi.shape[0],):
        raise ValueError(f"features must be (n, p) and y (n,), got {phi.shape} and {y.shape}")
    if (lams < 0).any():
        raise ValueError(f"regularisation strengths must be >= 0, got {lams}")
    u, s, vt = np.linalg.svd(phi, full_matrices=False)
    uty = u.T @ y
    cutoff = s.max(initial=0.0) * max(phi.shape) * np.finfo(float).eps
    keep = s > cutoff
    s2 = s ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        shrink = np.where(keep, s / (s2[None, :] + lams[:, None]), 0.0)   # (len(lams), r)
    return (shrink * uty) @ vt


def ridge_fit(features, y, lam: float = 0.0) -> np.ndarray:
    """Ridge weights for one ``lam`` (``lam=0``: minimum-norm least squares); see :func:`ridge_path`."""
    return ridge_path(features, y, [lam])[0]


def mse(pred, y) -> float:
    return float(np.mean((np.asarray(pred) - np.asarray(y)) ** 2))


# ============================================================================ bias and variance
def decompose(preds, truth):
    """``(bias², variance)`` of predictions ``preds`` (one row per training set, one column per test
    point) around the true values ``truth``: each averaged over the test points."""
    preds = np.asarray(preds, dtype=float)
    truth = np.asarray(truth, dtype=float)
    if preds.ndim != 2 or preds.shape[1:] != truth.shape:
        raise ValueError(f"preds must be (training sets, points) and truth (points,), got {preds.shape}, "
                         f"{truth.shape}")
    bias2 = float(np.mean((preds.mean(0) - truth) ** 2))
    variance = float(np.mean(preds.var(0)))
    return bias2, variance


def bias_variance_curve(degrees=DEGREES, n_train: int = 30, repeats: int = 200, seed: int = 0,
                        lam: float = 0.0, n_test: int = 400, noise: float = NOISE) -> dict:
    """Draw ``repeats`` training sets of ``n_train`` points; fit a polynomial of every degree on each.

    Returns arrays over ``degrees``: ``bias2``, ``variance``, ``noise`` (σ², the same for all), the
    measured ``test_error`` (fresh noisy labels at ``n_test`` random test inputs, one draw per training
    set) and ``train_error``; ``fits[d]`` holds the ``(repeats, n_test)`` predictions, at ``x_test``.
    Every degree sees the same training sets (fewer random differences between degrees).
    """
    degrees = list(degrees)
    if repeats < 2:
        raise ValueError("the variance needs at least two training sets (repeats >= 2)")
    rng = np.random.default_rng(seed)
    x_test = rng.uniform(-1, 1, n_test)
    f_test = target(x_test)
    sets = [make_data(n_train, rng, noise) for _ in range(repeats)]
    y_test = f_test + noise * rng.standard_normal((repeats, n_test))
    top = max(degrees)
    phi_test = poly_features(x_test, top)
    out = {k: [] for k in ("bias2", "variance", "test_error", "train_error")}
    fits = {}
    for d in degrees:
        preds, train = np.empty((repeats, n_test)), []
        for r, (x, y) in enumerate(sets):
            phi = poly_features(x, d)
            w = ridge_fit(phi, y, lam)
            preds[r] = phi_test[:, :d + 1] @ w
            train.append(mse(phi @ w, y))
        b2, var = decompose(preds, f_test)
        out["bias2"].append(b2)
        out["variance"].append(var)
        out["test_error"].append(mse(preds, y_test))
        out["train_error"].append(float(np.mean(train)))
        fits[d] = preds
    res = {k: np.array(v) for k, v in out.items()}
    res.update(degrees=np.array(degrees), noise=noise ** 2, x_test=x_test, fits=fits, sets=sets)
    return res


# ============================================================================ double descent
def relu_features(x, w) -> np.ndarray:
    """Random ReLU features max(0, x·W) / √p of inputs ``x`` (n, d) for fixed random ``w`` (d, p)."""
    return np.maximum(np.asarray(x) @ w, 0.0) / math.sqrt(w.shape[1])


def double_descent(n_features, n_train: int = 40, d: int = 10, lam: float = 0.0, repeats: int = 5,
                   seed: int = 0, n_test: int = 500, noise: float = 0.5) -> dict:
    """Test error of least squares on ``p`` random ReLU features, for every ``p`` in ``n_features``.

    The task: inputs x ~ N(0, I_d), labels y = x·β + ½ tanh(2 x₁) + noise·ε, with β drawn once per
    seed. For each p, ``repeats`` times: a fresh training set and fresh random features, a fit
    (``lam=0``: minimum norm), its test error on ``n_test`` fresh points with noisy labels. Returns the
    median over the repeats per p (``test_error``, ``train_error``, ``weight_norm``: the norm of the
    fitted output weights), and the error of the trivial baseline that predicts the training mean
    (``baseline``, also a median).
    """
    rng = np.random.default_rng(seed)
    beta = rng.standard_normal(d) / math.sqrt(d)

    def f(x):
        return x @ beta + 0.5 * np.tanh(2 * x[:, 0])

    x_test = rng.standard_normal((n_test, d))
    test, train, norm, base = [], [], [], []
    for p in n_features:
        t, tr, nm = [], [], []
        for _ in range(repeats):
            x = rng.standard_normal((n_train, d))
            y = f(x) + noise * rng.standard_normal(n_train)
            y_test = f(x_test) + noise * rng.standard_normal(n_test)
            w = rng.standard_normal((d, p)) / math.sqrt(d)
            coef = ridge_fit(relu_features(x, w), y, lam)
            t.append(mse(relu_features(x_test, w) @ coef, y_test))
            tr.append(mse(relu_features(x, w) @ coef, y))
            nm.append(float(np.linalg.norm(coef)))
            base.append(mse(np.full(n_test, y.mean()), y_test))
        test.append(float(np.median(t)))
        train.append(float(np.median(tr)))
        norm.append(float(np.median(nm)))
    return {"n_features": np.array(list(n_features)), "test_error": np.array(test),
            "train_error": np.array(train), "weight_norm": np.array(norm),
            "baseline": float(np.median(base)), "n_train": n_train}


# ============================================================================ validation and test
def selection_optimism(repeats: int = 60, seed: int = 0, degrees=DEGREES, lams=(1e-2, 3e-2, 1e-1, 3e-1, 1.0),
                       n_train: int = 30, n_val: int = 20, n_test: int = 20, n_fresh: int = 4000) -> dict:
    """Choose one of ``len(degrees) · len(lams)`` polynomial ridge models, two ways, ``repeats`` times.

    Each repeat draws training, validation and test sets, fits every candidate on the training set, then
    picks (a) the candidate with the lowest *test* error -- the mistake -- and (b) the one with the lowest
    *validation* error. Both report their test error; ``n_fresh`` new points measure each pick's true
    error. Returns per repeat ``reported_on_test``, ``fresh_on_test`` (pick (a)), ``reported_on_val``,
    ``fresh_on_val`` (pick (b)) and ``baseline`` (the training mean's fresh error).
    """
    rng = np.random.default_rng(seed)
    top = max(degrees)
    out = {k: [] for k in ("reported_on_test", "fresh_on_test", "reported_on_val", "fresh_on_val", "baseline")}
    for _ in range(repeats):
        (x, y), (xv, yv), (xs, ys), (xf, yf) = (make_data(n, rng) for n in (n_train, n_val, n_test, n_fresh))
        phis = {k: poly_features(v, top) for k, v in (("t", x), ("v", xv), ("s", xs), ("f", xf))}
        val, test, fresh = [], [], []
        for deg in degrees:
            ws = ridge_path(phis["t"][:, :deg + 1], y, lams)          # (len(lams), deg + 1)
            for w in ws:
                val.append(mse(phis["v"][:, :deg + 1] @ w, yv))
                test.append(mse(phis["s"][:, :deg + 1] @ w, ys))
                fresh.append(mse(phis["f"][:, :deg + 1] @ w, yf))
        i, j = int(np.argmin(test)), int(np.argmin(val))
        out["reported_on_test"].append(test[i])
        out["fresh_on_test"].append(fresh[i])
        out["reported_on_val"].append(test[j])
        out["fresh_on_val"].append(fresh[j])
        out["baseline"].append(mse(np.full(n_fresh, y.mean()), yf))
    return {k: np.array(v) for k, v in out.items()}


def kfold_mse(x, y, degree: int, k: int, lam: float = 0.0) -> float:
    """k-fold cross-validation error of a degree-``degree`` polynomial (ridge ``lam``), from scratch.

    The points are split in order into ``k`` contiguous folds of sizes differing by at most one
    (``np.array_split``); each fold is predicted by a fit on the other ``k − 1``; the squared errors of
    all ``n`` held-out predictions are averaged. Shuffle the data first if its order means anything.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    n = len(x)
    if not 2 <= k <= n:
        raise ValueError(f"k must be between 2 and the number of points ({n}), got {k}")
    sq = np.empty(n)
    for fold in np.array_split(np.arange(n), k):
        rest = np.setdiff1d(np.arange(n), fold)
        w = ridge_fit(poly_features(x[rest], degree), y[rest], lam)
        sq[fold] = (poly_features(x[fold], degree) @ w - y[fold]) ** 2
    return float(sq.mean())


def loo_mse_closed_form(x, y, degree: int, lam: float = 0.0) -> float:
    """Leave-one-out error of a linear smoother without refitting: with the hat matrix
    H = Φ(ΦᵀΦ + λI)⁻¹Φᵀ of the fit on *all* points, the held-out residual of point i is
    (y_i − ŷ_i) / (1 − H_ii). A direct computation to check :func:`kfold_mse` with ``k = n`` against."""
    phi = poly_features(x, degree)
    y = np.asarray(y, dtype=float)
    h = phi @ np.linalg.solve(phi.T @ phi + lam * np.eye(phi.shape[1]), phi.T)
    return float(np.mean(((y - h @ y) / (1 - np.diag(h))) ** 2))


# ============================================================================ the live view
class ComplexityExplorer(Explorer):
    """Polynomial regression on the 1-D problem: a complexity (degree) and a regularisation slider.

    Left: the true function, one training set and its fit, and the fits on other training sets (thin
    grey: their spread is the variance; their mean's distance to the truth is the bias). Right: training
    and test error, bias² and variance over all degrees at this regularisation, the noise floor σ² and the
    training-mean baseline, with the chosen degree marked. ``draw`` returns the numbers at that degree.
    """

    defaults = dict(degree=3, lam=0.0, n_train=30, repeats=40, seed=0)
    layout = dict(ncols=2, figsize=(11, 3.6))

    def __init__(self, **settings):
        super().__init__(**settings)
        self._curves: dict = {}

    def _validate(self, s, changed):
        if s["degree"] not in DEGREES:
            raise ValueError(f"degree must be one of {DEGREES}, got {s['degree']}")
        if s["lam"] < 0:
            raise ValueError(f"lam must be >= 0, got {s['lam']}")
        if s["repeats"] < 2 or s["n_train"] < 2:
            raise ValueError("need n_train >= 2 and repeats >= 2")

    def _controls(self):
        import ipywidgets as w
        return {"degree": w.IntSlider(min=min(DEGREES), max=max(DEGREES), description="degree"),
                "lam": w.SelectionSlider(options=list(LAMS), description="ridge λ")}

    def curves(self, **override) -> dict:
        """The :func:`bias_variance_curve` of these settings (computed once per setting, then kept)."""
        s = self.resolve(**override)
        key = (s["lam"], s["n_train"], s["repeats"], s["seed"])
        if key not in self._curves:
            self._curves[key] = bias_variance_curve(DEGREES, s["n_train"], s["repeats"], s["seed"], s["lam"],
                                                    n_test=200)
        return self._curves[key]

    def draw(self, **override):
        s = self.resolve(**override)
        c = self.curves(**override)
        self.figure()
        left, right = self.axes
        left.clear(), right.clear()
        d = s["degree"]
        order = np.argsort(c["x_test"])
        xs = c["x_test"][order]
        fits = c["fits"][d][:, order]
        for row in fits[1:16]:
            left.plot(xs, row, color="0.75", lw=0.7)
        left.plot(xs, target(xs), "k--", lw=1.5, label="true f(x)")
        left.plot(xs, fits.mean(0), color="tab:orange", lw=1.5, label="mean fit (bias)")
        x0, y0 = c["sets"][0]
        left.plot(x0, y0, "o", ms=3.5, color="tab:blue", label="one training set")
        left.plot(xs, fits[0], color="tab:blue", lw=1.8, label="its fit")
        left.set(ylim=(-2.2, 2.2), xlabel="x", ylabel="y",
                 title=f"degree {d}, λ = {s['lam']:g}: grey = fits on other training sets")
        left.legend(fontsize=7, loc="upper left")
        deg = c["degrees"]
        base = c["test_error"][0]
        right.plot(deg, c["test_error"], "o-", color="tab:red", label="test error")
        right.plot(deg, c["train_error"], "o-", color="tab:blue", label="training error")
        right.plot(deg, c["bias2"], "--", color="tab:orange", label="bias²")
        right.plot(deg, c["variance"], "--", color="tab:purple", label="variance")
        right.axhline(c["noise"], color="gray", ls=":", label="noise σ²")
        right.axhline(base, color="k", lw=0.8, ls="-.", label="training mean (degree 0)")
        right.axvline(d, color="k", lw=0.6)
        right.set(yscale="log", xlabel="polynomial degree", ylabel="mean squared error",
                  ylim=(3e-4, max(10.0, float(np.max(c["test_error"])) * 1.5)),
                  title=f"{s['n_train']} training points, {s['repeats']} training sets")
        right.legend(fontsize=7, ncol=2)
        self.fig.tight_layout()
        return {"degree": d, "lam": s["lam"], "test_error": float(c["test_error"][d]),
                "train_error": float(c["train_error"][d]), "bias2": float(c["bias2"][d]),
                "variance": float(c["variance"][d]), "noise": c["noise"], "baseline": float(base)}
