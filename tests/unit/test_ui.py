import numpy as np
import pytest
import torch
from torch import nn

from book.data import make_2d
from book.lab.gradient_descent import GradientDescentExplorer
from book.train import fit
from book.ui.dashboard import TrainingDashboard


def train_with_dashboard(model, **kw):
    x, y = make_2d("moons", n=128, seed=0)
    dash = TrainingDashboard(model, min_seconds=0.0, **kw)
    h = fit(model, (x, y), torch.optim.Adam(model.parameters(), lr=0.01), epochs=3, batch_size=32,
            val=(x, y), log_every=4, callbacks=[dash])
    return dash, h


def test_dashboard_records_norms_and_activations():
    model = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 2))
    dash, h = train_with_dashboard(model)
    assert len(dash.snapshots) == len(h.step) == 3
    snap = dash.snapshots[-1]
    assert snap["norms"].shape == (3,) and (snap["norms"] > 0).all()
    assert set(snap["hists"]) == {"1", "3"}  # the ReLU and Tanh modules
    edges, counts = snap["hists"]["1"]
    assert len(edges) == len(counts) + 1 and counts.sum() > 0
    assert not model[1]._forward_hooks, "hooks must be removed after training"
    html = dash.replay(max_frames=2).data
    assert "<script" in html and "img" in html


def test_dashboard_without_activation_modules_watches_linear_layers():
    model = nn.Sequential(nn.Linear(2, 2))
    dash, _ = train_with_dashboard(model)
    assert set(dash.snapshots[-1]["hists"]) == {"0"}


def test_dashboard_rations_redraws():
    model = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 2))
    x, y = make_2d("moons", n=256, seed=0)
    dash = TrainingDashboard(model, min_seconds=3600)  # at most one redraw during training, then the final one
    fit(model, (x, y), torch.optim.SGD(model.parameters(), lr=0.1), epochs=4, log_every=2, callbacks=[dash])
    assert len(dash.snapshots) == 8 and dash.redraws == 2  # 16 steps, a log every 2


def test_dashboard_errors():
    with pytest.raises(ValueError, match="max_overhead"):
        TrainingDashboard(nn.Linear(2, 2), max_overhead=0)
    with pytest.raises(ValueError, match="no layer with a trainable .weight"):
        TrainingDashboard(nn.ReLU())
    with pytest.raises(RuntimeError, match="nothing to replay"):
        TrainingDashboard(nn.Linear(2, 2)).replay()


def test_explorer_compute_draw_and_player():
    ex = GradientDescentExplorer(landscape="ill-conditioned quadratic", lr=0.05, steps=30)
    runs = ex.draw()
    assert list(runs) == ["SGD"] and runs["SGD"].path.shape == (31, 2)
    assert ex.ax_path.get_title().startswith("ill-conditioned quadratic")
    runs = ex.compute(compare=True, lr=0.2)
    assert set(runs) == {"SGD", "Momentum", "RMSprop", "Adam"} and runs["SGD"].diverged
    html = ex.player("lr", [0.01, 0.05]).data
    assert "<script" in html
    with pytest.raises(KeyError, match="not a setting"):
        ex.player("colour", [1])


def test_explorer_settings_are_one_value():
    ex = GradientDescentExplorer(landscape="saddle", optimizer="Momentum", lr=0.02, beta=0.8, steps=10)
    assert ex.settings == dict(landscape="saddle", optimizer="Momentum", lr=0.02, beta=0.8, steps=10,
                               start=(-2.0, 1e-3), compare=False)
    again = GradientDescentExplorer(**{k: v for k, v in ex.settings.items()})
    assert np.allclose(again.compute()["Momentum"].path, ex.compute()["Momentum"].path)


def test_explorer_render_returns_runs():
    ex = GradientDescentExplorer(landscape="saddle", steps=5, compare=True)
    assert set(ex.render()) == {"SGD", "Momentum", "RMSprop", "Adam"}
    assert "β=" in ex.ax_path.get_title()
    ex = GradientDescentExplorer(optimizer="SGD", steps=5)
    ex.render()
    assert "β" not in ex.ax_path.get_title()


def test_explorer_show_builds_controls_without_a_kernel():
    ex = GradientDescentExplorer(steps=10).show()
    assert ex.live is not None and ex.runs


def test_explorer_errors():
    with pytest.raises(ValueError, match="unknown landscape"):
        GradientDescentExplorer(landscape="moon")
    with pytest.raises(ValueError, match="unknown optimizer"):
        GradientDescentExplorer(optimizer="LBFGS")
    with pytest.raises(ValueError, match="beta"):
        GradientDescentExplorer(beta=1.0)


def test_explore_draws_now_and_on_every_change():
    import ipywidgets as w
    import matplotlib.pyplot as plt

    from book.ui.figure import LiveFigure, explore

    fig, ax = plt.subplots()
    calls = []

    def draw(a, b):
        calls.append((a, b))
        ax.clear()
        ax.plot([0, 1], [a, b])
    a, b = w.FloatSlider(value=1.0), w.IntSlider(value=2)
    live = explore(fig, draw, a=a, b=b)
    assert isinstance(live, LiveFigure) and calls == [(1.0, 2)]
    b.value = 5
    assert calls[-1] == (1.0, 5) and ax.lines[0].get_ydata()[1] == 5


def test_explore_errors():
    import ipywidgets as w
    import matplotlib.pyplot as plt

    from book.ui.figure import explore

    fig, _ = plt.subplots()
    with pytest.raises(TypeError, match="Matplotlib Figure"):
        explore("fig", lambda x: None, x=w.IntSlider())
    with pytest.raises(TypeError, match="function"):
        explore(fig, None, x=w.IntSlider())
    with pytest.raises(TypeError, match="ipywidgets"):
        explore(fig, lambda x: None, x=3)
    with pytest.raises(TypeError, match="none given"):
        explore(fig, lambda: None)


def test_even_frames_spread_over_the_run_and_keep_both_ends():
    from book.ui.figure import even_frames
    assert even_frames(100, 5).tolist() == [0, 25, 50, 74, 99]
    assert even_frames(3, 24).tolist() == [0, 1, 2]
    assert even_frames(1, 24).tolist() == [0]
