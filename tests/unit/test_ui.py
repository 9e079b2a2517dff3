import math
import time

import numpy as np
import pytest
import torch
from torch import nn

from book.data import make_2d
from book.lab.gradient_descent import GradientDescentExplorer
from book.train import Callback, fit
from book.ui import Explorer, Replay
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


def test_dashboard_holds_drawing_to_its_budget():
    x, y = make_2d("moons", n=256, seed=0)

    class Slow(Callback):   # a training step that takes 50 ms, so that the budget grows as on a real run
        def on_step_begin(self, state):
            time.sleep(0.05)

    def run(**kw):
        model = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 2))
        dash = TrainingDashboard(model, **kw)
        h = fit(model, (x, y), torch.optim.SGD(model.parameters(), lr=0.1), epochs=4, log_every=2,
                callbacks=[Slow(), dash], progress=False)
        return dash, h

    dash, _ = run(min_seconds=3600)            # too soon after the start: only the final state is drawn
    assert len(dash.snapshots) == 8 and dash.redraws == 1   # 16 steps, a log every 2
    dash, _ = run(min_seconds=0.0, max_overhead=1e-6)       # no budget for any redraw during training
    assert dash.redraws == 1
    dash, h = run(min_seconds=0.0, max_overhead=1.0)        # drawing may take as long as training
    assert 1 < dash.redraws <= 8
    # what it spent: never more than the budget allowed when it chose to draw, plus one overrun
    assert dash.drawing_seconds <= h.seconds[-1] + dash._expected


def test_dashboard_errors():
    with pytest.raises(ValueError, match="max_overhead"):
        TrainingDashboard(nn.Linear(2, 2), max_overhead=0)
    with pytest.raises(ValueError, match="no layer with a trainable .weight"):
        TrainingDashboard(nn.ReLU())
    with pytest.raises(RuntimeError, match="nothing to replay yet: train with this dashboard"):
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

    from book.ui import Explorer, LiveFigure, explore

    fig, ax = plt.subplots()
    calls = []

    def draw(a, b):
        calls.append((a, b))
        ax.clear()
        ax.plot([0, 1], [a, b])
    a, b = w.FloatSlider(value=1.0), w.IntSlider(value=2)
    view = explore(fig, draw, a=a, b=b)
    assert isinstance(view, Explorer) and isinstance(view.live, LiveFigure) and view.fig is fig
    assert calls == [(1.0, 2)] and view.settings == {"a": 1.0, "b": 2}
    b.value = 5
    assert calls[-1] == (1.0, 5) and ax.lines[0].get_ydata()[1] == 5 and view.settings["b"] == 5
    calls.clear()
    assert "<script" in view.player("a", [0.0, 3.0]).data   # the same machinery gives a player
    assert (0.0, 5) in calls and (3.0, 5) in calls and view.settings == {"a": 1.0, "b": 5}


def test_explore_errors():
    import ipywidgets as w
    import matplotlib.pyplot as plt

    from book.ui import explore

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


# ----------------------------------------------------------------------------- the Explorer base
class Line(Explorer):
    """The smallest view: a line y = slope * x + shift."""

    defaults = dict(slope=1.0, shift=0.0, label="line")
    layout = dict(ncols=2, figsize=(4, 2))

    def _validate(self, s, changed):
        if s["slope"] > 10:
            raise ValueError(f"slope must be at most 10, got {s['slope']}")
        if "slope" in changed and "shift" not in changed:
            s["shift"] = -s["slope"]          # a completed setting: the line goes through (1, 0)

    def _controls(self):
        import ipywidgets as w
        return {"slope": w.FloatSlider(min=-5, max=5), "shift": w.FloatSlider(min=-5, max=5)}

    def draw(self, **override):
        s = self.resolve(**override)
        self.figure()
        self.draws = getattr(self, "draws", 0) + 1
        ax = self.axes[0]
        ax.clear()
        ax.plot([0, 1], [s["shift"], s["slope"] + s["shift"]])
        ax.set_title(s["label"])
        return s


def test_explorer_settings_defaults_validation_and_unknown_names():
    ex = Line(slope=2.0)
    assert ex.settings == {"slope": 2.0, "shift": -2.0, "label": "line"} and ex.fig is None
    assert Line().settings == {"slope": 1.0, "shift": 0.0, "label": "line"}   # defaults are not "changed"
    with pytest.raises(TypeError, match=r"unknown settings \['colour'\] for Line; valid: \['label', 'shift', "):
        Line(colour="red")
    with pytest.raises(ValueError, match="at most 10"):
        Line(slope=11)
    assert ex.resolve(slope=3.0) == {"slope": 3.0, "shift": -3.0, "label": "line"}
    assert ex.settings["slope"] == 2.0, "resolve must not change the settings"
    with pytest.raises(TypeError, match="unknown settings"):
        ex.draw(colour="red")
    with pytest.raises(ValueError, match="at most 10"):
        ex.draw(slope=20)


def test_explorer_controls_change_settings_and_redraw():
    ex = Line(slope=2.0).show()
    assert ex.draws == 1 and ex.live is not None and ex.fig is not None and len(ex.axes) == 2
    assert set(ex.widgets) == {"slope", "shift"} and ex.widgets["slope"].value == 2.0
    ex.widgets["slope"].value = 3.0
    assert ex.draws == 2 and ex.settings == {"slope": 3.0, "shift": -3.0, "label": "line"}
    assert ex.axes[0].lines[0].get_ydata().tolist() == [-3.0, 0.0]
    ex.widgets["slope"].value = 4.0    # an invalid change would raise inside ipywidgets; a valid one redraws
    assert ex.draws == 3
    out = ex.render(label="once")      # one figure, no controls; the settings stay
    assert out["label"] == "once" and ex.settings["label"] == "line"


def test_explorer_apply_button_and_status():
    class Slow(Line):
        apply_button = "run"

        def _status(self):
            return f"slope {self.settings['slope']}"
    ex = Slow().show()
    assert ex.draws == 1 and ex._status_line.value == "slope 1.0"
    ex.widgets["slope"].value = 2.0
    assert ex.draws == 1 and ex.settings["slope"] == 2.0, "with an apply button a change only sets the setting"
    ex.update()                        # what the button does
    assert ex.draws == 2 and ex._status_line.value == "slope 2.0"


def test_explorer_player_frames_and_errors():
    ex = Line()
    html = ex.player("slope", [0.0, 1.0, 2.0], interval=100).data
    assert "<script" in html and ex.settings["slope"] == 1.0
    assert "<script" in ex.player(("slope", "shift"), [(0.0, 0.0), (1.0, 1.0)]).data
    with pytest.raises(KeyError, match="'colour' is not a setting of Line; settings are"):
        ex.player("colour", [1])
    with pytest.raises(ValueError, match="at least one value"):
        ex.player("slope", [])
    with pytest.raises(ValueError, match="tuple of 2"):
        ex.player(("slope", "shift"), [1.0, 2.0])
    with pytest.raises(ValueError, match="at most 10"):
        ex.player("slope", [1.0, 20.0])


def test_explorer_without_draw_says_so():
    class NoDraw(Explorer):
        defaults = dict(a=1)
    with pytest.raises(NotImplementedError, match="NoDraw must define draw"):
        NoDraw().show()


# ----------------------------------------------------------------------------- the Replay contract
class Recorded(Replay):
    replay_hint = "record first"

    def __init__(self, n):
        import matplotlib.pyplot as plt
        self.fig, self.ax = plt.subplots()
        self.drawn, self.n = [], n

    def _frames(self):
        return self.n

    def _draw_frame(self, k):
        self.drawn.append(k)
        self.ax.clear()
        self.ax.plot([0, k])


def test_replay_contract_spreads_frames_and_says_how_to_record():
    with pytest.raises(RuntimeError, match="nothing to replay yet: record first"):
        Recorded(0).replay()
    r = Recorded(100)
    html = r.replay(max_frames=5, interval=50).data
    assert "<script" in html and set(r.drawn) == {0, 25, 50, 74, 99}
    r = Recorded(3)
    r.replay()
    assert set(r.drawn) == {0, 1, 2}


def test_show_live_displays_once_then_redraws_in_place(monkeypatch):
    import book.ui.explorer as ex
    made, updated = [], []

    class Fake:
        def __init__(self, fig):
            made.append(fig)

        def update(self):
            updated.append(1)
    monkeypatch.setattr(ex, "LiveFigure", Fake)
    r = Recorded(2)
    for _ in range(3):
        r.show_live()
    assert made == [r.fig] and len(updated) == 2 and isinstance(r.live, Fake)


def test_every_replay_view_has_the_same_signature():
    import inspect

    from book.lab.core_concepts import Playground
    from book.lab.generative import SampleMonitor
    from book.lab.transformer_block import StageMonitor
    from book.lab.optimisation import TrajectoryView
    from book.lab.using_models import ICLMonitor
    from book.lab.post_training import RLMonitor
    for cls in (TrainingDashboard, SampleMonitor, Playground, StageMonitor, TrajectoryView, ICLMonitor,
                RLMonitor):
        assert issubclass(cls, Replay)
        assert str(inspect.signature(cls.replay)) == "(self, max_frames: 'int' = 24, interval: 'int' = 400)"
    from book.lab.seq2seq import AlignmentMonitor
    assert issubclass(AlignmentMonitor, Replay) and str(inspect.signature(AlignmentMonitor.replay)) == (
        "(self, max_frames: 'int' = 24, interval: 'int' = 400)")
    from book.lab.retrieval import RetrievalMonitor
    assert issubclass(RetrievalMonitor, Replay) and str(inspect.signature(RetrievalMonitor.replay)) == (
        "(self, max_frames: 'int' = 24, interval: 'int' = 400)")
    from book.lab.inference import SpeculativeMonitor
    assert issubclass(SpeculativeMonitor, Replay) and str(inspect.signature(SpeculativeMonitor.replay)) == (
        "(self, max_frames: 'int' = 24, interval: 'int' = 400)")
    from book.lab.vision_tasks import DetectionMonitor
    assert issubclass(DetectionMonitor, Replay) and str(inspect.signature(DetectionMonitor.replay)) == (
        "(self, max_frames: 'int' = 24, interval: 'int' = 400)")
    from book.lab.evaluation import PerplexityMonitor
    assert issubclass(PerplexityMonitor, Replay) and str(inspect.signature(PerplexityMonitor.replay)) == (
        "(self, max_frames: 'int' = 24, interval: 'int' = 400)")
    from book.lab.language_tasks import SpanMonitor
    assert issubclass(SpanMonitor, Replay) and str(inspect.signature(SpanMonitor.replay)) == (
        "(self, max_frames: 'int' = 24, interval: 'int' = 400)")
    from book.lab.gan import RingMonitor
    assert issubclass(RingMonitor, Replay) and str(inspect.signature(RingMonitor.replay)) == (
        "(self, max_frames: 'int' = 24, interval: 'int' = 400)")
    from book.lab.gan import DigitMonitor
    assert issubclass(DigitMonitor, Replay) and str(inspect.signature(DigitMonitor.replay)) == (
        "(self, max_frames: 'int' = 24, interval: 'int' = 400)")
    from book.lab.few_shot import EpisodeMonitor
    assert issubclass(EpisodeMonitor, Replay) and str(inspect.signature(EpisodeMonitor.replay)) == (
        "(self, max_frames: 'int' = 24, interval: 'int' = 400)")
    from book.lab.pipeline import ServeMonitor
    assert issubclass(ServeMonitor, Replay) and str(inspect.signature(ServeMonitor.replay)) == (
        "(self, max_frames: 'int' = 24, interval: 'int' = 400)")
    from book.lab.graphs import GraphMonitor
    assert issubclass(GraphMonitor, Replay) and str(inspect.signature(GraphMonitor.replay)) == (
        "(self, max_frames: 'int' = 24, interval: 'int' = 400)")
    from book.lab.privacy_fairness import DPMonitor
    assert issubclass(DPMonitor, Replay) and str(inspect.signature(DPMonitor.replay)) == (
        "(self, max_frames: 'int' = 24, interval: 'int' = 400)")


def test_every_settings_view_is_an_explorer():
    from book.lab import (
        adversarial,
        attention_math,
        cnn,
        compression,
        core_concepts,
        generative,
        gpt,
        gradient_descent,
        history,
        losses_activations,
        recsys_rl,
    )
    views = [adversarial.AttackExplorer, attention_math.SoftmaxExplorer, cnn.CNNInspector,
             compression.CompressionExplorer, core_concepts.Playground, generative.LatentExplorer,
             gpt.GenerationExplorer, gpt.AttentionExplorer, gradient_descent.GradientDescentExplorer,
             history.TimelineExplorer, losses_activations.LossExplorer, losses_activations.ActivationExplorer,
             recsys_rl.UserExplorer]
    from book.lab import modern_cnn
    views.append(modern_cnn.ShiftExplorer)
    from book.lab import generalisation
    views.append(generalisation.ComplexityExplorer)
    from book.lab import backprop
    views.append(backprop.GraphStepper)
    from book.lab import training_practice
    views.append(training_practice.InitExplorer)
    views.append(training_practice.InitDashboard)
    from book.lab import rnn
    views.append(rnn.GradientFlowExplorer)
    from book.lab import modern_block
    views.append(modern_block.TileExplorer)
    from book.lab import inference
    views.append(inference.ThroughputExplorer)
    from book.lab import retrieval
    views.append(retrieval.SearchExplorer)
    from book.lab import dqn
    views.append(dqn.QMapExplorer)
    from book.lab import evaluation
    views.append(evaluation.NoiseExplorer)
    from book.lab import language_tasks
    views.append(language_tasks.MetricExplorer)
    from book.lab import vision_tasks
    views.append(vision_tasks.BoxExplorer)
    from book.lab import gan
    views.append(gan.LatentWalk)
    from book.lab import few_shot
    views.append(few_shot.EpisodeExplorer)
    from book.lab import pipeline
    views.append(pipeline.SCurveExplorer)
    from book.lab import graphs
    views.append(graphs.AttentionExplorer)
    from book.lab import explanations
    views.extend([explanations.ExplanationExplorer, explanations.IGMonitor])
    from book.lab import privacy_fairness
    views.extend([privacy_fairness.ThresholdExplorer, privacy_fairness.DPMonitor])
    from book.lab import speech
    views.append(speech.KeywordExplorer)
    for cls in views:
        assert issubclass(cls, Explorer), cls
        for name in ("show", "player", "render", "refresh", "resolve"):
            assert getattr(cls, name) is getattr(Explorer, name), f"{cls.__name__} redefines {name}"


def test_ui_does_not_import_lab_or_nn():
    import ast
    from pathlib import Path

    import book.ui
    for path in Path(book.ui.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                assert not name.startswith(("book.lab", "book.nn")), f"{path.name} imports {name}"


def test_glue_stores_numbers_for_the_page_and_refuses_the_rest(monkeypatch):
    """The stored output is exactly what myst-nb's glue writes (so the build finds it); in Colab (no
    myst-nb, no BOOK_GLUE) nothing is shown."""
    import IPython
    import IPython.display

    import book.ui.glued as g
    shown = []
    monkeypatch.setattr(IPython, "get_ipython", lambda: object())    # as in a kernel
    monkeypatch.setattr(IPython.display, "display", lambda *a, **k: shown.append((a, k)))
    monkeypatch.setenv("BOOK_GLUE", "1")
    assert g.glue("val_acc", torch.tensor(0.75)).item() == 0.75
    assert g.glue("n", np.int64(3)) == 3
    (bundle,), kw = shown[0]
    assert bundle == {g.PREFIX + "text/plain": "0.75"} and kw["raw"] is True
    assert kw["metadata"]["scrapbook"] == {"name": "val_acc", "mime_prefix": g.PREFIX}
    mine = shown[:]
    try:                                   # myst-nb's own glue, for comparison (the build has it, Colab not)
        from myst_nb import glue as myst_glue
    except ImportError:
        myst_glue = None
    if myst_glue is not None:
        shown.clear()
        myst_glue("val_acc", 0.75, display=False)
        assert shown[0] == mine[0]
    with pytest.raises(TypeError, match="takes a number"):
        g.glue("name", "text")
    with pytest.raises(TypeError, match="takes a number"):
        g.glue("flag", True)
    with pytest.raises(ValueError, match="non-finite"):
        g.glue("loss", float("nan"))
    with pytest.raises(ValueError, match="letters, digits"):
        g.glue("val acc", 1.0)
    shown.clear()
    monkeypatch.setenv("BOOK_GLUE", "0")
    monkeypatch.setattr(g.importlib.util, "find_spec", lambda name: None)   # Colab: no myst-nb
    assert g.glue("val_acc", 0.5) == 0.5 and shown == []


def test_glue_lets_a_dry_run_pass_non_finite_values(monkeypatch):
    """Two steps of a gpu configuration (BOOK_DRYRUN) may give nan: the dry run checks the code, not results."""
    from book.ui import glue
    monkeypatch.setenv("BOOK_DRYRUN", "1")
    assert math.isnan(glue("loss", float("nan")))
    monkeypatch.setenv("BOOK_DRYRUN", "0")
    with pytest.raises(ValueError, match="non-finite"):
        glue("loss", float("inf"))


def test_player_draws_each_frame_once():
    import matplotlib.pyplot as plt

    from book.ui import player

    fig, ax = plt.subplots()
    line, = ax.plot([], [])
    seen, draws = [], []
    fig.canvas.mpl_connect("draw_event", lambda e: draws.append(1))
    html = player(lambda i: (seen.append(i), line.set_data([0, i], [0, i])), 5, fig).data
    assert "draw_idle" not in vars(fig.canvas), "the canvas keeps its own draw_idle afterwards"
    assert sorted(set(seen)) == [0, 1, 2, 3, 4] and html.count("frames[") >= 5
    assert len(draws) <= len(seen) + 1, f"{len(draws)} canvas draws for {len(seen)} frames: each drawn twice?"


def test_replay_in_a_dry_run_draws_the_first_and_last_frame(monkeypatch):
    import matplotlib.pyplot as plt

    class Run(Replay):
        def __init__(self):
            self.fig, self.drawn = plt.subplots()[0], []

        def _frames(self):
            return 10

        def _draw_frame(self, k):
            self.drawn.append(k)

    run = Run()
    run.replay(max_frames=24)
    assert sorted(set(run.drawn)) == list(range(10))
    monkeypatch.setenv("BOOK_DRYRUN", "1")
    run = Run()
    run.replay(max_frames=24)
    assert sorted(set(run.drawn)) == [0, 9]


def test_explorer_player_in_a_dry_run_draws_first_and_last_unless_it_keeps_results(monkeypatch):
    class Count(Line):
        def draw(self, **override):
            self.seen = getattr(self, "seen", []) + [self.resolve(**override)["slope"]]
            return super().draw(**override)

    monkeypatch.setenv("BOOK_DRYRUN", "1")
    ex = Count()
    ex.player("slope", [0.0, 1.0, 2.0, 3.0])
    assert sorted(set(ex.seen)) == [0.0, 3.0]
    ex = Count()
    ex.player_keeps_results = True
    ex.player("slope", [0.0, 1.0, 2.0, 3.0])
    assert sorted(set(ex.seen)) == [0.0, 1.0, 2.0, 3.0]
