"""The training_practice chapter: its exercise checks accept a right answer and reject a typical wrong one."""
import math

import pytest
import torch



@pytest.mark.parametrize("name,good,bad", [
    ("init_std", lambda k, i, o: math.sqrt(2 / (i + o)) if k == "xavier" else math.sqrt(2 / i),
     lambda k, i, o: math.sqrt(1 / i)),
    ("batchnorm_forward", lambda x, eps: (x - x.mean(0)) / torch.sqrt(x.var(0, unbiased=False) + eps),
     lambda x, eps: (x - x.mean(0)) / torch.sqrt(x.var(0) + eps)),
    ("warmup_cosine_lr", lambda s, T, w, b: (b * (s + 1) / w if s < w
                                             else b * 0.5 * (1 + math.cos(math.pi * (s - w) / (T - w)))),
     lambda s, T, w, b: b * 0.5 * (1 + math.cos(math.pi * s / T))),
    ("clip_by_norm", lambda gs, m: [g * min(1.0, m / float(torch.sqrt(sum((t ** 2).sum() for t in gs)))) for g in gs],
     lambda gs, m: [g.clamp(-m, m) for g in gs]),
    ("leaky_he_std", lambda n, a: math.sqrt(2 / ((1 + a ** 2) * n)), lambda n, a: math.sqrt(2 / n)),
    ("layers_to_vanish", lambda w, s, f: math.ceil(math.log(f) / math.log(math.sqrt(w * s * s / 2))),
     lambda w, s, f: math.ceil(math.log(f) / math.log(w * s * s / 2))),
])
def test_training_practice_checks(name, good, bad, check_verdict):
    check_verdict(name, good, bad)


@pytest.mark.parametrize("act", ["tanh", "relu"])
@pytest.mark.parametrize("init,variance", [
    ("naive", lambda fan_in, fan_out: 0.01 ** 2),
    ("xavier", lambda fan_in, fan_out: 2 / (fan_in + fan_out)),   # Glorot & Bengio
    ("he", lambda fan_in, fan_out: 2 / fan_in),                   # He et al., for tanh too: no 5/3 gain
])
def test_deep_mlp_weight_variance_is_the_chapters_formula(act, init, variance):
    """deep_mlp's init= gives every hidden layer the variance the chapter (and its exercise) teaches."""
    from book.nn.models import deep_mlp
    torch.manual_seed(0)
    net = deep_mlp(depth=3, width=512, act=act, init=init)
    hidden = [m for m in net if isinstance(m, torch.nn.Linear)][:-1]
    assert len(hidden) == 3
    for lin in hidden:
        fan_out, fan_in = lin.weight.shape
        assert lin.weight.var().item() == pytest.approx(variance(fan_in, fan_out), rel=0.02)
        assert abs(lin.weight.mean().item()) < 0.01 * math.sqrt(variance(fan_in, fan_out))
        assert torch.equal(lin.bias, torch.zeros_like(lin.bias))


def test_deep_mlp_default_init_is_pytorchs():
    from book.nn.models import deep_mlp
    torch.manual_seed(0)
    lin = deep_mlp(depth=1, width=512, init="default")[1]
    assert lin.weight.var().item() == pytest.approx(1 / (3 * 784), rel=0.02)   # U(±1/√fan_in)


# ---------------------------------------------------------------- book/lab/training_practice.py
def test_build_inits_and_errors():
    from book.lab.training_practice import INITS, build
    for init in INITS:
        net = build(init, "batch norm", "relu", depth=3, width=64)
        hidden = [m for m in net if isinstance(m, torch.nn.Linear)][:-1]
        assert len(hidden) == 3 and any(isinstance(m, torch.nn.BatchNorm1d) for m in net)
    big = build("too large N(0, 0.2²)", depth=2, width=512)[1].weight
    assert big.std().item() == pytest.approx(0.2, rel=0.02)
    a, b = build("He", seed=3, depth=2, width=8), build("He", seed=3, depth=2, width=8)
    assert torch.equal(a[1].weight, b[1].weight)
    with pytest.raises(ValueError, match="unknown init"):
        build("orthogonal")
    with pytest.raises(ValueError, match="unknown norm"):
        build("He", norm="group norm")


def test_layer_stats_matches_the_relu_prediction():
    from book.lab.training_practice import build, layer_stats, relu_variance_prediction
    torch.manual_seed(0)
    x, y = torch.randn(512, 784), torch.randint(0, 10, (512,))
    net = build("He", act="relu", depth=6, width=512)
    st = layer_stats(net, x, y)
    assert st["act_var"].shape == st["grad_var"].shape == (6,)
    pred = relu_variance_prediction(1.0, [784] + [512] * 5, [2 / 784] + [2 / 512] * 5)
    assert (abs(st["act_var"] / pred - 1) < 0.3).all()
    assert all(p.grad is None or not p.grad.any() for p in net.parameters())
    out = net(x)                                   # the hooks are gone: the output is unchanged
    assert out.shape == (512, 10)


def test_tanh_fixed_point():
    from book.lab.training_practice import tanh_fixed_point
    q = tanh_fixed_point(5 / 3)
    xi = torch.randn(2_000_000, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert (25 / 9) * torch.tanh(math.sqrt(q) * xi).pow(2).mean().item() == pytest.approx(q, rel=0.01)
    assert tanh_fixed_point(1.0) < 0.01            # gain 1: no fixed point above 0
    assert tanh_fixed_point(1.0, layers=1) == pytest.approx(torch.tanh(xi).pow(2).mean().item(), rel=0.01)


def test_init_explorer_draws_and_validates():
    from book.lab.training_practice import InitExplorer
    torch.manual_seed(0)
    view = InitExplorer(torch.rand(64, 1, 28, 28), torch.randint(0, 10, (64,)), depth=4, width=32)
    st = view.draw(init="too small N(0, 0.01²)")
    assert st["act_var"][-1] < 1e-4 * st["act_var"][0]
    st = view.draw(init="too small N(0, 0.01²)", norm="batch norm")
    assert 0.5 < st["act_var"][-1] / st["act_var"][1] < 2      # layer 2 on: standardised inputs
    assert len(view.axes) == 2 and view.axes[0].lines
    for bad in ({"init": "zeros"}, {"norm": "rms"}, {"act": "gelu"}, {"depth": 0}):
        with pytest.raises(ValueError):
            InitExplorer(torch.zeros(2, 784), torch.zeros(2, dtype=torch.long), **bad)


def test_init_dashboard_trains_records_and_replays():
    from book.lab.training_practice import InitDashboard
    torch.manual_seed(0)
    x, y = torch.rand(128, 1, 28, 28), torch.randint(0, 10, (128,))
    view = InitDashboard(x, y, (x[:32], y[:32]), depth=3, width=16, steps=6, batch=16)
    with pytest.raises(RuntimeError, match="nothing to replay yet"):
        view.replay()
    out = view.draw(init="He", norm="batch norm")
    assert set(out) == {"val_acc", "first", "last", "spread", "history"}
    assert 0 <= out["val_acc"] <= 1 and out["spread"] >= 1 and out["history"].step[-1] == 6
    assert view.runs["He", "batch norm", "tanh"] is out
    assert len(view.axes) == 4 and view.axes[0].lines                # the dashboard's four panels
    assert "<script" in view.replay(max_frames=3).data
    # the same settings again redraw the recorded run instead of training it again
    dash = view.dash
    assert view.draw(init="He", norm="batch norm") is out and view.dash is dash
    small = view.draw(init="too small N(0, 0.01²)")
    assert small["first"] < out["first"] and view.dash is not dash
    html = view.player(("init", "norm"), [("Xavier", "none"), ("He", "layer norm")]).data
    assert "<script" in html and ("He", "layer norm", "tanh") in view.runs
    for bad in ({"init": "zeros"}, {"norm": "rms"}, {"steps": 0}, {"lr": 0.0}):
        with pytest.raises(ValueError):
            InitDashboard(x, y, (x, y), **bad)
