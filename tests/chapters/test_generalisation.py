"""The generalisation chapter: book.lab.generalisation (least squares, bias-variance, double descent,
selection, cross-validation, the explorer) and its checks."""
import math

import numpy as np
import pytest
import torch

from book.lab.generalisation import (
    ComplexityExplorer,
    bias_variance_curve,
    decompose,
    double_descent,
    kfold_mse,
    loo_mse_closed_form,
    make_data,
    poly_features,
    ridge_fit,
    ridge_path,
    selection_optimism,
)


def test_ridge_matches_torch_in_every_regime():
    rng = np.random.default_rng(1)
    tall, wide = rng.standard_normal((20, 5)), rng.standard_normal((6, 15))
    y20, y6 = rng.standard_normal(20), rng.standard_normal(6)
    ref = torch.linalg.lstsq(torch.from_numpy(tall), torch.from_numpy(y20)[:, None]).solution[:, 0]
    assert np.allclose(ridge_fit(tall, y20), ref.numpy(), atol=1e-10)
    assert np.allclose(ridge_fit(wide, y6), (torch.linalg.pinv(torch.from_numpy(wide)) @ torch.from_numpy(y6)).numpy())
    lams = [0.0, 0.1, 10.0]
    path = ridge_path(wide, y6, lams)
    for lam, w in zip(lams[1:], path[1:]):
        ref = np.linalg.solve(wide.T @ wide + lam * np.eye(15), wide.T @ y6)
        assert np.allclose(w, ref, atol=1e-9)
    assert np.linalg.norm(path[2]) < np.linalg.norm(path[1]) < np.linalg.norm(path[0])   # ridge shrinks
    rank_deficient = np.hstack([tall, tall[:, :1]])        # a repeated column: min-norm splits it evenly
    w = ridge_fit(rank_deficient, y20)
    assert math.isclose(w[0], w[-1], rel_tol=1e-8)


def test_errors():
    with pytest.raises(ValueError, match="features must be"):
        ridge_fit(np.ones((3, 2)), np.ones(4))
    with pytest.raises(ValueError, match=">= 0"):
        ridge_path(np.ones((3, 2)), np.ones(3), [-1.0])
    with pytest.raises(ValueError, match="degree"):
        poly_features([0.0], -1)
    with pytest.raises(ValueError, match="at least one"):
        make_data(0, np.random.default_rng(0))
    with pytest.raises(ValueError, match="preds must be"):
        decompose(np.ones(3), np.ones(3))
    with pytest.raises(ValueError, match="repeats >= 2"):
        bias_variance_curve(repeats=1)
    with pytest.raises(ValueError, match="k must be"):
        kfold_mse(np.arange(5.0), np.arange(5.0), 1, k=6)


def test_decomposition_is_exact_for_the_sample_estimates():
    rng = np.random.default_rng(2)
    truth, preds = rng.standard_normal(9), rng.standard_normal((40, 9))
    b2, var = decompose(preds, truth)
    assert math.isclose(b2 + var, float(np.mean((preds - truth) ** 2)), rel_tol=1e-12)


def test_bias_variance_curve_adds_up_and_has_a_u_shape():
    c = bias_variance_curve(degrees=[0, 3, 9], n_train=30, repeats=60, seed=3)
    total = c["bias2"] + c["variance"] + c["noise"]
    assert np.allclose(total, c["test_error"], rtol=0.05)
    assert c["test_error"][1] < c["test_error"][0] and c["test_error"][1] < c["test_error"][2]
    assert (np.diff(c["train_error"]) < 0).all()           # nested least squares: training error falls
    assert c["fits"][3].shape == (60, 400)


def test_double_descent_peaks_at_the_threshold_and_ridge_removes_it():
    p = [10, 20, 40, 80, 200]
    plain = double_descent(p, repeats=5, seed=0)
    ridge = double_descent(p, repeats=5, seed=0, lam=0.1)
    assert p[int(np.argmax(plain["test_error"]))] == 40
    assert plain["train_error"][2:].max() < 1e-12
    assert ridge["test_error"][2] < 0.2 * plain["test_error"][2]


def test_selection_on_the_test_set_is_optimistic():
    r = selection_optimism(repeats=40, seed=0)
    assert np.mean(r["fresh_on_test"] - r["reported_on_test"]) > 0.01
    assert (r["reported_on_test"] <= r["reported_on_val"] + 1e-15).all()   # the minimum of the same scores


def test_kfold_with_k_equal_n_is_the_closed_form_leave_one_out():
    x, y = make_data(15, np.random.default_rng(4))
    for degree, lam in ((0, 0.0), (2, 0.0), (5, 0.1)):
        assert math.isclose(kfold_mse(x, y, degree, k=15, lam=lam), loo_mse_closed_form(x, y, degree, lam),
                            rel_tol=1e-9)
    assert kfold_mse(x, y, 2, k=3) > np.mean((poly_features(x, 2) @ ridge_fit(poly_features(x, 2), y) - y) ** 2)


def test_complexity_explorer():
    ex = ComplexityExplorer(degree=2, repeats=5)
    out = ex.draw()
    assert out["degree"] == 2 and out["test_error"] > out["noise"] > 0
    assert ex.draw(degree=10)["variance"] > out["variance"]
    assert ex.draw(degree=10, lam=0.1)["test_error"] < ex.draw(degree=10)["test_error"]
    assert "<script" in ex.player("degree", [0, 3]).data
    ex.show()
    ex.widgets["degree"].value = 4
    assert ex.settings["degree"] == 4
    with pytest.raises(ValueError, match="degree"):
        ComplexityExplorer(degree=11)
    with pytest.raises(ValueError, match="lam"):
        ComplexityExplorer(lam=-1.0)
    with pytest.raises(TypeError, match="unknown settings"):
        ComplexityExplorer(colour="red")


def _best_of(m, s):
    z = np.random.default_rng(0).standard_normal((400_000, m))
    return s * z.max(1).mean()


@pytest.mark.parametrize("name,good,bad", [
    ("bias_variance_split", decompose, lambda p, t: (float(np.mean((p - t) ** 2)), float(p.var(0).mean()))),
    ("mean_baseline_mse", lambda v, n: v * (1 + 1 / n), lambda v, n: v),
    ("ols_train_mse", lambda n, p, s: s * s * (n - p) / n, lambda n, p, s: s * s),
    ("cv_mse", lambda x, y, d, k: kfold_mse(x, y, d, k),
     lambda x, y, d, k: float(np.mean((poly_features(x, d) @ ridge_fit(poly_features(x, d), y) - y) ** 2))),
    ("best_of_optimism", _best_of, lambda m, s: s * math.sqrt(2 * math.log(max(m, 1)))),
])
def test_generalisation_checks(name, good, bad, check_verdict):
    check_verdict(name, good, bad)
