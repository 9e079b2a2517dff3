"""A network explorer in the spirit of TensorFlow Playground, training real PyTorch on the book's device.

Every setup is one short dict (``Playground(**settings)``), so a teacher can hand out "this exact setup".
Training records snapshots every ``every`` steps -- losses, accuracies, the decision surface on a grid and
each hidden unit's activation map -- and reads the device only then. The figure is a
:class:`~book.ui.figure.LiveFigure` (the static site keeps the trained result) and ``player()`` replays the run.
"""
from __future__ import annotations

import math
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn

from book.data import TOY_DATASETS, make_2d
from book.ui.figure import LiveFigure, even_frames, player

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "sigmoid": nn.Sigmoid, "linear": nn.Identity}
DEFAULTS = dict(dataset="spirals", noise=0.1, n=400, hidden=(16, 16), activation="tanh", lr=0.03, l2=0.0,
                steps=600, batch=0, seed=0, every=50)
LIMIT = 2.0  # the plotted square [-LIMIT, LIMIT]^2 holds every toy dataset


class Playground:
    """Train a small MLP on a 2-D toy dataset and watch its decision boundary and hidden units.

    Settings (all keywords, see ``DEFAULTS``): ``dataset`` (moons, circles, spirals, xor, blobs), ``noise``,
    ``n`` points (split 50/25/25 into train/validation/test), ``hidden`` widths (``()`` = no hidden layer:
    a linear classifier), ``activation``, ``lr`` (Adam), ``l2`` (weight decay), ``steps``, ``batch``
    (0 = full batch), ``seed``, and ``every`` (snapshot interval).
    """

    def __init__(self, device=None, **settings):
        unknown = set(settings) - set(DEFAULTS)
        if unknown:
            raise TypeError(f"unknown settings {sorted(unknown)}; valid: {sorted(DEFAULTS)}")
        s = {**DEFAULTS, **settings}
        s["hidden"] = tuple(int(h) for h in s["hidden"])
        if s["dataset"] not in TOY_DATASETS:
            raise ValueError(f"unknown dataset {s['dataset']!r}; choose one of {TOY_DATASETS}")
        if s["activation"] not in ACTIVATIONS:
            raise ValueError(f"unknown activation {s['activation']!r}; choose one of {list(ACTIVATIONS)}")
        if any(h < 1 for h in s["hidden"]) or s["steps"] < 1 or s["every"] < 1 or s["n"] < 8:
            raise ValueError("hidden widths, steps and every must be positive and n at least 8")
        self.settings = s
        self.device = torch.device(device) if device is not None else _default_device()
        self.snapshots: list[dict] = []
        self.fig = None
        self.live = None

    # ------------------------------------------------------------------ data and model
    def split(self):
        """(x, y) of train, validation and test, fixed by the seed."""
        s = self.settings
        x, y = make_2d(s["dataset"], n=s["n"], noise=s["noise"], seed=s["seed"])
        perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(s["seed"] + 1))
        x, y = x[perm].to(self.device), y[perm].float().to(self.device)
        a, b = len(x) // 2, (3 * len(x)) // 4
        return (x[:a], y[:a]), (x[a:b], y[a:b]), (x[b:], y[b:])

    def build(self) -> nn.Sequential:
        s = self.settings
        torch.manual_seed(s["seed"])
        layers, width = [], 2
        for h in s["hidden"]:
            layers += [nn.Linear(width, h), ACTIVATIONS[s["activation"]]()]
            width = h
        layers.append(nn.Linear(width, 1))  # one logit: P(class 1) = sigmoid(logit)
        return nn.Sequential(*layers).to(self.device)

    # ------------------------------------------------------------------ training
    def train(self, live: bool = True, max_overhead: float = 0.15) -> dict:
        """Train with the settings; record snapshots; return final metrics (train/val/test loss and accuracy)."""
        s = self.settings
        (xt, yt), (xv, yv), (xs, ys) = self.split()
        self.model = model = self.build()
        opt = torch.optim.Adam(model.parameters(), lr=s["lr"], weight_decay=s["l2"])
        loss_fn = nn.functional.binary_cross_entropy_with_logits
        g = torch.Generator().manual_seed(s["seed"] + 2)
        grid = _grid(60).to(self.device)
        self.snapshots = []
        if live:
            self._figure()
            self.live = LiveFigure(self.fig)
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
                    self.draw(len(self.snapshots) - 1)
                    self.live.update()
                    cost = time.perf_counter() - t0
                    next_draw = time.perf_counter() + cost / max_overhead
        self.results = self.evaluate((xt, yt), (xv, yv), (xs, ys))
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
    def _figure(self):
        if self.fig is None:
            self.fig = plt.figure(figsize=(13, 4.4), dpi=80)
            gs = self.fig.add_gridspec(4, 8)
            self.ax_bound = self.fig.add_subplot(gs[:, 0:3])
            self.ax_loss = self.fig.add_subplot(gs[:, 3:5])
            self.ax_units = [self.fig.add_subplot(gs[r, 5 + c]) for r in range(4) for c in range(3)]
        return self.fig

    def draw(self, k: int = -1):
        """Draw snapshot ``k`` (default: the last)."""
        if not self.snapshots:
            raise RuntimeError("nothing to draw: call train() first")
        self._figure()
        snap = self.snapshots[k]
        (xt, yt), (xv, yv), _ = self.split()
        ax = self.ax_bound
        ax.clear()
        ax.contourf(*np.meshgrid(np.linspace(-LIMIT, LIMIT, 60), np.linspace(-LIMIT, LIMIT, 60)), snap["prob"],
                    levels=np.linspace(0, 1, 11), cmap="RdBu_r", alpha=0.7)
        for x, y, marker in ((xt, yt, "o"), (xv, yv, "^")):
            x, y = x.cpu().numpy(), y.cpu().numpy()
            ax.scatter(x[:, 0], x[:, 1], c=y, cmap="RdBu_r", marker=marker, s=14, edgecolors="k", linewidths=0.4)
        s = self.settings
        ax.set_title(f"{s['dataset']}, hidden {list(s['hidden'])}, {s['activation']} — step {snap['step']}\n"
                     f"train acc {snap['train_acc']:.2f} (●), validation acc {snap['val_acc']:.2f} (▲)", fontsize=9)
        ax.set_xlim(-LIMIT, LIMIT)
        ax.set_ylim(-LIMIT, LIMIT)
        ax.set_aspect("equal")
        upto = self.snapshots[: (k % len(self.snapshots)) + 1]
        self.ax_loss.clear()
        self.ax_loss.plot([p["step"] for p in upto], [p["train_loss"] for p in upto], label="train")
        self.ax_loss.plot([p["step"] for p in upto], [p["val_loss"] for p in upto], label="validation")
        self.ax_loss.set_xlim(0, s["steps"])
        self.ax_loss.set_yscale("log")
        self.ax_loss.set_title("loss", fontsize=9)
        self.ax_loss.legend(fontsize=8)
        for i, a in enumerate(self.ax_units):
            a.clear()
            a.set_xticks([])
            a.set_yticks([])
            if i < len(snap["units"]):
                a.imshow(snap["units"][i], origin="lower", cmap="RdBu_r", extent=(-LIMIT, LIMIT, -LIMIT, LIMIT))
                a.set_title(f"unit {i + 1}", fontsize=7)
            else:
                a.axis("off")
        if self.ax_units:
            self.ax_units[0].figure.text(0.815, 0.96, "hidden units (first 12)", fontsize=9, ha="center")
        return self.fig

    def show(self, train: bool = True):
        """Controls + figure. The current settings are trained once right away, so the page shows a result."""
        import ipywidgets as w
        from IPython.display import display

        s = self.settings
        c = {"dataset": w.Dropdown(options=TOY_DATASETS, value=s["dataset"], description="data"),
             "noise": w.FloatSlider(value=s["noise"], min=0, max=0.5, step=0.05, description="noise"),
             "hidden": w.Text(value=",".join(map(str, s["hidden"])), description="hidden"),
             "activation": w.Dropdown(options=list(ACTIVATIONS), value=s["activation"], description="activation"),
             "lr": w.FloatLogSlider(value=s["lr"], base=10, min=-4, max=0, description="lr"),
             "l2": w.FloatLogSlider(value=max(s["l2"], 1e-6), base=10, min=-6, max=-1, description="L2"),
             "steps": w.IntSlider(value=s["steps"], min=50, max=3000, step=50, description="steps")}
        button = w.Button(description="train", button_style="primary")
        text = w.HTML()

        def run(_=None):
            hidden = tuple(int(v) for v in c["hidden"].value.replace(" ", "").split(",") if v)
            self.settings.update({k: ctl.value for k, ctl in c.items() if k != "hidden"}, hidden=hidden)
            if c["l2"].value <= 1e-6:
                self.settings["l2"] = 0.0
            r = self.train(live=False) if self.live is None else self._retrain()
            text.value = f"<code>Playground(**{self.settings})</code><br>test accuracy {r['test_acc']:.3f}"
        button.on_click(run)
        display(w.VBox([w.HBox([c["dataset"], c["noise"], c["hidden"], c["activation"]]),
                        w.HBox([c["lr"], c["l2"], c["steps"], button]), text]))
        if train:
            self.train(live=True)
            text.value = f"<code>Playground(**{self.settings})</code><br>test accuracy {self.results['test_acc']:.3f}"
        return self

    def _retrain(self):
        r = self.train(live=False)
        self.draw()
        self.live.update()
        return r

    def player(self, max_frames: int = 20):
        """A JavaScript player of the recorded snapshots (works in the static site)."""
        if not self.snapshots:
            raise RuntimeError("nothing to replay: call train() first")
        frames = even_frames(len(self.snapshots), max_frames)
        return player(lambda i: self.draw(int(frames[i])), len(frames), self._figure(), interval=300)


def _grid(n: int) -> torch.Tensor:
    xs = torch.linspace(-LIMIT, LIMIT, n)
    gx, gy = torch.meshgrid(xs, xs, indexing="xy")
    return torch.stack([gx.flatten(), gy.flatten()], 1)  # (n*n, 2), row-major like the image


def _default_device() -> torch.device:
    from book.config import pick_device
    return pick_device()
