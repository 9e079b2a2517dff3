"""book.lab.explanations: the additive task's closed-form Shapley values, the linear baseline, cascading
randomisation, every attribution method's shape and reference, the sanity table and deletion scores, the two
views (monitor with replay, explorer with player), the error paths and the exercise checks."""
import copy

import matplotlib
import pytest
import torch
from torch import nn

from book import check
from book.data import Split
from book.lab.explanations import (
    METHODS,
    ExplanationExplorer,
    IGMonitor,
    additive_task,
    attribution_maps,
    deletion_scores,
    edge_map,
    fit_mlp,
    ig_completeness_errors,
    kernel_shap_errors,
    layers_top_down,
    linear_fit,
    r2,
    randomise_top,
    sanity_table,
    train_cnn,
    true_function,
    true_shapley,
)
from book.nn.explain import integrated_gradients, masked_value, saliency, shapley_exact
from book.nn.models import LeNet

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def digits():
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(6, 1, 28, 28, generator=g) > 0.8).float()
    return LeNet().eval(), x, torch.randint(0, 10, (6,), generator=g)


def test_true_shapley_is_the_exact_shapley_value_of_the_true_function():
    x, y = additive_task(200, seed=1)
    assert x.shape == (200, 8) and y.shape == (200,)
    assert (y - true_function(x)).std() == pytest.approx(0.3, rel=0.2)
    bg = x[:40]
    for xi in x[100:103]:
        phi = shapley_exact(masked_value(true_function, xi.double(), bg.double()), 8)
        assert torch.allclose(phi, true_shapley(xi, bg).double(), atol=1e-5)
        assert phi[6] == 0 and phi[7] == 0


def test_mlp_beats_the_linear_fit_and_r2_of_the_mean_is_zero():
    x, y = additive_task(600, seed=0)
    net = fit_mlp(x[:400], y[:400], hidden=32, steps=300)
    w, b = linear_fit(x[:400], y[:400])
    with torch.no_grad():
        assert r2(net(x[400:]), y[400:]) > r2(x[400:] @ w + b, y[400:])
    assert r2(torch.full_like(y, float(y.mean())), y) == pytest.approx(0.0, abs=1e-6)


def test_cascading_randomisation_changes_only_the_top_layers(digits):
    model = digits[0]
    names = [n for n, _ in layers_top_down(model)]
    assert names[0] == "classifier.5" and names[-1] == "features.0" and len(names) == 5
    m2 = randomise_top(model, 2, seed=3)
    sd, sd2 = model.state_dict(), m2.state_dict()
    changed = {k.rsplit(".", 1)[0] for k in sd if not torch.equal(sd[k], sd2[k])}
    assert changed == {"classifier.5", "classifier.3"}
    assert torch.equal(randomise_top(model, 0).state_dict()["features.0.weight"], sd["features.0.weight"])
    with pytest.raises(ValueError, match="between 0 and 5"):
        randomise_top(model, 6)


@pytest.mark.parametrize("method", METHODS)
def test_attribution_maps_have_the_image_shape(digits, method):
    model, x, y = digits
    maps = attribution_maps(model, x[:2], y[:2], method, ig_steps=4, patch_samples=40)
    assert maps.shape == (2, 28, 28) and torch.isfinite(maps).all()


def test_attribution_maps_match_the_from_scratch_methods(digits):
    model, x, y = digits
    g = attribution_maps(model, x[:2], y[:2], "gradient")
    assert torch.allclose(g[1], saliency(model, x[1:2], int(y[1]))[0, 0])
    ig = attribution_maps(model, x[:1], y[:1], "integrated gradients", ig_steps=8)
    assert torch.allclose(ig[0], integrated_gradients(model, x[0], int(y[0]), steps=8)[0])
    assert torch.equal(attribution_maps(model, x, y, "edge detector"), edge_map(x))
    assert edge_map(torch.ones(1, 1, 5, 5))[0, 2, 2] == 0          # flat image: no edges inside
    with pytest.raises(ValueError, match="unknown method"):
        attribution_maps(model, x, y, "guided backprop")


def test_sanity_table_and_deletion_scores(digits):
    model, x, y = digits
    models = {"trained": model, "random": randomise_top(model, 5, seed=1)}
    tab = sanity_table(models, x[:3], y[:3], ["gradient", "edge detector"], ig_steps=4)
    assert tab["gradient"]["trained"] == pytest.approx(1.0) and tab["edge detector"]["random"] == pytest.approx(1.0)
    assert -1 <= tab["gradient"]["random"] < 1
    maps = {"brightness": x[:3, 0], "random": torch.rand(3, 28, 28)}
    d = deletion_scores(model, x[:3], y[:3], maps, steps=4)
    i = deletion_scores(model, x[:3], y[:3], maps, steps=4, insertion=True)
    assert set(d) == set(maps) and all(0 <= v <= 1 for v in (*d.values(), *i.values()))


def test_completeness_and_kernel_shap_helpers(digits):
    model = copy.deepcopy(digits[0]).double()
    x = digits[1][0].double()
    errs = ig_completeness_errors(model, x, 3, [2, 64])
    assert errs[64] <= errs[2] + 1e-9
    net = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 1), nn.Flatten(0)).double()
    value = masked_value(net, torch.randn(5, dtype=torch.float64), torch.zeros(5, dtype=torch.float64))
    e = kernel_shap_errors(value, shapley_exact(value, 5), [8, 400], range(3))
    assert e.shape == (2, 3) and e[1].mean() < e[0].mean()


def test_train_cnn_monitor_and_replay():
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(96, 1, 28, 28, generator=g), torch.randint(0, 10, (96,), generator=g)
    data = Split(x[:64], y[:64], x[64:], y[64:], "tiny")
    mon = IGMonitor(x[0], 3, ig_steps=2, redraw_every=1)
    with pytest.raises(RuntimeError, match="fit"):
        mon.replay()
    drawn, draw_frame = [], mon._draw_frame
    mon._draw_frame = lambda k: (drawn.append(k), draw_frame(k))
    model, hist = train_cnn(data, epochs=2, lr=1e-3, log_every=1, callbacks=[mon], val=(x[64:], y[64:]))
    assert not model.training and len(mon.records) == 2 == mon._frames()
    assert drawn == [0, 1]                     # redraw_every=1: every record is drawn
    assert mon.draw(frame=0)["step"] == 1 and 0 <= mon.draw()["acc"] <= 1
    mon.replay(max_frames=2)
    shuffled, _ = train_cnn(data, epochs=1, lr=1e-3, shuffle_labels=True)
    assert isinstance(shuffled, LeNet)


def test_explanation_explorer(digits):
    model, x, y = digits
    levels = [model, randomise_top(model, 1), randomise_top(model, 5)]
    ex = ExplanationExplorer(model, x, y, levels, method="gradient", ig_steps=4)
    out = ex.draw(level=0)
    assert out["rho"] == pytest.approx(1.0)
    ig = ex.draw(method="integrated gradients", digit=1, level=2)["map"]
    assert torch.allclose(ig, attribution_maps(levels[2], x[1:2], y[1:2], "integrated gradients", ig_steps=4)[0])
    assert ex.draw(level=2)["rho"] < 1
    ex.player("level", [0, 1, 2])
    ex.player(("method", "level"), [("gradient", 0), ("edge detector", 2)])
    with pytest.raises(ValueError, match="level"):
        ExplanationExplorer(model, x, y, levels, level=3)
    with pytest.raises(ValueError, match="unknown method"):
        ex.draw(method="nope")
    with pytest.raises(ValueError, match="digit"):
        ex.draw(digit=99)


def test_checks_accept_solutions_and_reject_wrong_ones(check_verdict):
    check_verdict("ig_linear", lambda w, x, b: (x - b) * w, lambda w, x, b: x * w)
    check_verdict("product_shapley",
                  lambda x1, x2, b1, b2: (0.5 * (x1 - b1) * (x2 + b2), 0.5 * (x2 - b2) * (x1 + b1)),
                  lambda x1, x2, b1, b2: (0.5 * x1 * x2, 0.5 * x1 * x2))      # right only for a zero baseline
    check_verdict("ig_cubic_gap", lambda x, n: float((x ** 3).sum()) / (4 * n * n),
                  lambda x, n: float((x ** 3).sum()) / (2 * n))

    def occlude(f, x, t, p):
        out = torch.zeros(x.shape[1:], dtype=x.dtype)
        with torch.no_grad():
            base = f(x[None])[0, t]
            for i in range(0, x.shape[1], p):
                for j in range(0, x.shape[2], p):
                    z = x.clone()
                    z[:, i:i + p, j:j + p] = 0
                    out[i:i + p, j:j + p] = base - f(z[None])[0, t]
        return out

    def occlude_wrong(f, x, t, p):             # the occluded score, not the drop
        return -occlude(f, x, t, p) + f(x[None])[0, t].detach()

    check_verdict("occlude", occlude, occlude_wrong)
    check.ig_linear(lambda w, x, b: (x - b) * w)
