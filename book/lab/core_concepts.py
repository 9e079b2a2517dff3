"""A network explorer in the spirit of TensorFlow Playground, training real PyTorch on the book's device.

Chapter: ``core_concepts``.

Every setup is one short dict (``Playground(**settings)``), so a teacher can hand out "this exact setup".
Training records snapshots every ``every`` steps -- losses, accuracies, the decision surface on a grid and
each hidden unit's activation map -- and reads the device only then. The figure is a
:class:`~book.ui.figure.LiveFigure` (the static site keeps the trained result) and ``replay()`` replays the run.
"""
from __future__ import annotations

import math
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn

from book.data import TOY_DATASETS, make_2d
from book.nn.activations import MODULES
from book.ui import Explorer, Replay

ACTIVATIONS = ("tanh", "relu", "sigmoid", "linear")   # the playground's choices (modules: book.nn.activations)


def _activation(name: str) -> nn.Module:
    return nn.Identity() if name == "linear" else MODULES[name]()
DEFAULTS = dict(dataset="spirals", noise=0.1, n=400, train_frac=0.5, hidden=(16, 16), activation="tanh", lr=0.03,
                l2=0.0, steps=600, batch=0, seed=0, every=50)
LIMIT = 2.0  # the plotted square [-LIMIT, LIMIT]^2 holds every toy dataset


class Playground(Explorer, Replay):
    """Train a small MLP on a 2-D toy dataset and watch its decision boundary and hidden units.

    Settings (all keywords, see ``DEFAULTS``): ``dataset`` (moons, circles, spirals, xor, blobs), ``noise``,
    ``n`` points, ``train_frac`` of them for training and the rest split equally into validation and test
    (0.5: 50/25/25; a small ``train_frac`` trains on few points and still validates on many), ``hidden``
    widths (``()`` = no hidden layer: a linear classifier), ``activation``, ``lr`` (Adam), ``l2`` (weight
    decay), ``steps``, ``batch`` (0 = full batch), ``seed``, and ``every`` (snapshot interval).

    Both contracts of :mod:`book.ui`: an :class:`~book.ui.explorer.Explorer` whose ``draw`` shows the trained result
    of the settings (training first if needed; ``show()``'s controls retrain on the *train* button, and
    the figure follows the training live), and a :class:`~book.ui.explorer.Replay`: ``replay()`` steps through the
    snapshots of the last training.
    """

    defaults = DEFAULTS
    apply_button = "train"
    per_row = 4
    replay_hint = "call train() or show() first"
    HIDDEN = ((), (4,), (8,), (16,), (4, 4), (16, 16), (32, 32), (16, 16, 16), (64, 64, 64))   # control presets
    L2 = (0.0, 1e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1)

    def __init__(self, device=None, **settings):
        self.device = torch.device(device) if device is not None else _default_device()
        self.snapshots: list[dict] = []
        self.results = None
        self._trained = None   # the settings that self.snapshots and self.results belong to
        super().__init__(**settings)

    def _validate(self, s, changed):
        s["hidden"] = tuple(int(h) for h in s["hidden"])
        if s["dataset"] not in TOY_DATASETS:
            raise ValueError(f"unknown dataset {s['dataset']!r}; choose one of {TOY_DATASETS}")
        if s["activation"] not in ACTIVATIONS:
            raise ValueError(f"unknown activation {s['activation']!r}; choose one of {list(ACTIVATIONS)}")
        if any(h < 1 for h in s["hidden"]) or s["steps"] < 1 or s["every"] < 1 or s["n"] < 8:
            raise ValueError("hidden widths, steps and every must be positive and n at least 8")
        a = int(s["train_frac"] * s["n"])
        if not 0 < s["train_frac"] < 1 or a < 2 or s["n"] - a < 4:
            raise ValueError(f"train_frac={s['train_frac']} of n={s['n']} points leaves {a} for training and "
                             f"{s['n'] - a} for validation and test; need at least 2 and 4")

    def _controls(self):
        import ipywidgets as w
        s = self.settings
        return {"dataset": w.Dropdown(options=TOY_DATASETS, description="data"),
                "noise": w.FloatSlider(min=0, max=0.5, step=0.05, description="noise"),
                "hidden": w.Dropdown(options=[(", ".join(map(str, h)) or "none (linear)", h) for h in
                                              sorted({*self.HIDDEN, s["hidden"]}, key=lambda h: (len(h), h))],
                                     description="hidden"),
                "activation": w.Dropdown(options=list(ACTIVATIONS), description="activation"),
                "lr": w.FloatLogSlider(base=10, min=-4, max=0, description="lr"),
                "l2": w.SelectionSlider(options=[(f"{v:g}", v) for v in sorted({*self.L2, s["l2"]})], description="L2"),
                "steps": w.IntSlider(min=50, max=3000, step=50, description="steps")}

    def _status(self) -> str:
        if self.results is None:
            return ""
        r = self.results   # validation: the split that chooses settings (the test split is for the end)
        return (f"<code>Playground(**{self._trained})</code><br>training accuracy {r['train_acc']:.3f}, "
                f"validation accuracy {r['val_acc']:.3f}")

    # ------------------------------------------------------------------ data and model
    def split(self):
        """(x, y) of train, validation and test, fixed by the seed."""
        s = self.settings
        x, y = make_2d(s["dataset"], n=s["n"], noise=s["noise"], seed=s["seed"])
        perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(s["seed"] + 1))
        x, y = x[perm].to(self.device), y[perm].float().to(self.device)
        a = int(s["train_frac"] * len(x))
        b = a + (len(x) - a) // 2
        return (x[:a], y[:a]), (x[a:b], y[a:b]), (x[b:], y[b:])

    def build(self) -> nn.Sequential:
        s = self.settings
        torch.manual_seed(s["seed"])
        layers, width = [], 2
        for h in s["hidden"]:
            layers += [nn.Linear(width, h), _activation(s["activation"])]
            width = h
        layers.append(nn.Linear(width, 1))  # one logit: P(class 1) = sigmoid(logit)
        return nn.Sequential(*layers).to(self.device)

    def baseline(self) -> dict:
        """Accuracy of the trivial classifier that always answers the training set's majority class, on each
        split (``train_acc``, ``val_acc``, ``test_acc``): the score a trained model has to beat."""
        (_, yt), (_, yv), (_, ys) = self.split()
        majority = float(yt.mean() >= 0.5)
        return {f"{name}_acc": (y == majority).float().mean().item()
                for name, y in (("train", yt), ("val", yv), ("test", ys))}

    def grad_norms(self) -> list[float]:
        """The norm of the loss gradient reaching each ``nn.Linear`` layer's weights at initialisation (input
        layer first), on the whole training set: where gradients vanish on their way down a deep stack."""
        (xt, yt), _, _ = self.split()
        model = self.build()
        loss = nn.functional.binary_cross_entropy_with_logits(model(xt).squeeze(1), yt)
        loss.backward()
        return [m.weight.grad.norm().item() for m in model if isinstance(m, nn.Linear)]

    # ------------------------------------------------------------------ training
    def train(self, live: bool = True, max_overhead: float = 0.15) -> dict:
        """Train with the settings; record snapshots; return final metrics (train/val/test loss and accuracy).

        ``live``: show the figure (a new output) and redraw it while training, at most ``max_overhead`` of
        the time."""
        if live:
            self.live = None
        return self._fit(live, max_overhead)

    def _fit(self, live: bool, max_overhead: float = 0.15) -> dict:
        s = self.settings
        (xt, yt), (xv, yv), (xs, ys) = self.split()
        self.model = model = self.build()
        opt = torch.optim.Adam(model.parameters(), lr=s["lr"], weight_decay=s["l2"])
        loss_fn = nn.functional.binary_cross_entropy_with_logits
        g = torch.Generator().manual_seed(s["seed"] + 2)
        grid = _grid(60).to(self.device)
        self.snapshots = []
        next_draw = 0.0
        for step in range(1, s["steps"] + 1):
            if s["batch"]:
                idx = torch.randint(0, len(xt), (s["batch"],), generator=g).to(self.device)
                xb, yb = xt[idx], yt[idx]
            else:
                xb, yb = xt, yt
            loss = loss_fn(model(xb).squeeze(1), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if step % s["every"] == 0 or step == s["steps"]:
                self.snapshots.append(self._snapshot(step, grid, (xt, yt), (xv, yv)))
                if not math.isfinite(self.snapshots[-1]["train_loss"]):
                    raise FloatingPointError(f"loss became NaN at step {step}: lower lr (now {s['lr']}) "
                                             "or check the data for NaN")
                t0 = time.perf_counter()
                if live and (t0 >= next_draw or step == s["steps"]):
                    self._paint(self, len(self.snapshots) - 1)
                    self.refresh()
                    cost = time.perf_counter() - t0
                    next_draw = time.perf_counter() + cost / max_overhead
        self.results = self.evaluate((xt, yt), (xv, yv), (xs, ys))
        self._trained = dict(s)
        return self.results

    @torch.no_grad()
    def evaluate(self, *splits) -> dict:
        out = {}
        for name, (x, y) in zip(("train", "val", "test"), splits):
            logits = self.model(x).squeeze(1)
            loss = nn.functional.binary_cross_entropy_with_logits(logits, y)
            acc = ((logits > 0).float() == y).float().mean()
            out[f"{name}_loss"], out[f"{name}_acc"] = torch.stack([loss, acc]).tolist()
        return out

    @torch.no_grad()
    def _snapshot(self, step, grid, train, val) -> dict:
        model = self.model
        h, maps = grid, []
        for layer in model:  # run the grid through the net, keeping each hidden layer's activations
            h = layer(h)
            if not isinstance(layer, nn.Linear):
                maps.append(h)
        prob = torch.sigmoid(h.squeeze(1))
        metrics = self.evaluate(train, val)
        units = torch.cat(maps, 1) if maps else torch.zeros(len(grid), 0, device=grid.device)
        return {"step": step, **metrics, "prob": prob.view(60, 60).cpu().numpy(),
                "units": units[:, :16].T.reshape(-1, 60, 60).cpu().numpy()}

    # ------------------------------------------------------------------ drawing
    def _new_figure(self):
        fig = plt.figure(figsize=(13, 4.4), dpi=80)
        gs = fig.add_gridspec(4, 8)
        bound, loss = fig.add_subplot(gs[:, 0:3]), fig.add_subplot(gs[:, 3:5])
        units = [fig.add_subplot(gs[r, 5 + c]) for r in range(4) for c in range(3)]
        fig.text(0.815, 0.96, "hidden units (first 12)", fontsize=9, ha="center")
        return fig, (bound, loss, units)

    def draw(self, **override) -> dict:
        """Draw the trained result of the settings (plus ``override``), training first if it is not
        trained yet (an override trains a separate copy); returns its final metrics."""
        s = self.resolve(**override)
        run = self
        if s != self.settings:
            run = Playground(device=self.device, **s)
            run._fit(live=False)
        elif self._trained != s:
            self._fit(live=False)
        self._paint(run, len(run.snapshots) - 1)
        return run.results

    def update(self):
        """Train the current settings if needed, showing the figure as it learns, then draw the result."""
        if self._trained != self.settings:
            self._fit(live=True)
        return super().update()

    def _paint(self, run: "Playground", k: int):
        """Draw snapshot ``k`` of ``run`` (this playground or a copy with other settings) into this figure."""
        self.figure()
        ax, ax_loss, ax_units = self.axes
        snap = run.snapshots[k]
        (xt, yt), (xv, yv), _ = run.split()
        ax.clear()
        ax.contourf(*np.meshgrid(np.linspace(-LIMIT, LIMIT, 60), np.linspace(-LIMIT, LIMIT, 60)), snap["prob"],
                    levels=np.linspace(0, 1, 11), cmap="RdBu_r", alpha=0.7)
        for x, y, marker in ((xt, yt, "o"), (xv, yv, "^")):
            x, y = x.cpu().numpy(), y.cpu().numpy()
            ax.scatter(x[:, 0], x[:, 1], c=y, cmap="RdBu_r", marker=marker, s=14, edgecolors="k", linewidths=0.4)
        s = run.settings
        ax.set_title(f"{s['dataset']}, hidden {list(s['hidden'])}, {s['activation']} — step {snap['step']}\n"
                     f"train acc {snap['train_acc']:.2f} (●), validation acc {snap['val_acc']:.2f} (▲)", fontsize=9)
        ax.set_xlim(-LIMIT, LIMIT)
        ax.set_ylim(-LIMIT, LIMIT)
        ax.set_aspect("equal")
        upto = run.snapshots[: (k % len(run.snapshots)) + 1]
        ax_loss.clear()
        ax_loss.plot([p["step"] for p in upto], [p["train_loss"] for p in upto], label="train")
        ax_loss.plot([p["step"] for p in upto], [p["val_loss"] for p in upto], label="validation")
        ax_loss.set_xlim(0, s["steps"])
        ax_loss.set_yscale("log")
        ax_loss.set_title("loss", fontsize=9)
        ax_loss.legend(fontsize=8)
        for i, a in enumerate(ax_units):
            a.clear()
            a.set_xticks([])
            a.set_yticks([])
            if i < len(snap["units"]):
                a.imshow(snap["units"][i], origin="lower", cmap="RdBu_r", extent=(-LIMIT, LIMIT, -LIMIT, LIMIT))
                a.set_title(f"unit {i + 1}", fontsize=7)
            else:
                a.axis("off")

    # ------------------------------------------------------------------ replay contract
    def _frames(self) -> int:
        return len(self.snapshots)

    def _draw_frame(self, k: int):
        self._paint(self, k)


def _grid(n: int) -> torch.Tensor:
    xs = torch.linspace(-LIMIT, LIMIT, n)
    gx, gy = torch.meshgrid(xs, xs, indexing="xy")
    return torch.stack([gx.flatten(), gy.flatten()], 1)  # (n*n, 2), row-major like the image


def _default_device() -> torch.device:
    from book.config import pick_device
    return pick_device()
