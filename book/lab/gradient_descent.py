"""The gradient_descent chapter's experiments: 2-D loss surfaces, a runner that records optimizer paths,
their plots, and :class:`GradientDescentExplorer` (optimizer, learning rate and β on a surface, live).

The optimizers themselves are written from scratch in :mod:`book.nn.optim`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import torch

from book.nn.optim import OPTIMIZERS, make_optimizer
from book.ui.figure import LiveFigure, player


@dataclass(frozen=True)
class Landscape:
    name: str
    f: Callable  # f(x, y) -> loss, works on torch tensors and NumPy arrays
    start: tuple
    minimum: tuple  # one global minimum (x*, y*)
    xlim: tuple
    ylim: tuple
    note: str

    def __call__(self, x, y):
        return self.f(x, y)


LANDSCAPES = {
    "ill-conditioned quadratic": Landscape(
        "ill-conditioned quadratic", lambda x, y: 0.5 * (x ** 2 + 20 * y ** 2),
        start=(-4.0, 1.5), minimum=(0.0, 0.0), xlim=(-5, 5), ylim=(-2.5, 2.5),
        note="curvatures 1 and 20 (condition number 20): plain GD diverges for lr > 2/20 = 0.1"),
    "rosenbrock": Landscape(
        "rosenbrock", lambda x, y: (1 - x) ** 2 + 100 * (y - x ** 2) ** 2,
        start=(-1.5, 2.0), minimum=(1.0, 1.0), xlim=(-2, 2), ylim=(-1, 3),
        note="a long curved valley; the minimum (1, 1) is easy to find, hard to reach"),
    "saddle": Landscape(
        "saddle", lambda x, y: x ** 2 + 0.25 * y ** 4 - 0.5 * y ** 2,
        start=(-2.0, 1e-3), minimum=(0.0, 1.0), xlim=(-2.5, 2.5), ylim=(-2, 2),
        note="a saddle point at (0, 0) and two minima at (0, +-1); starts almost exactly on the ridge"),
}


@dataclass
class Run:
    path: np.ndarray   # (steps + 1, 2) positions, NaN after a divergence
    loss: np.ndarray   # (steps + 1,)
    diverged: bool

    @property
    def final(self) -> np.ndarray:
        ok = ~np.isnan(self.loss)
        return self.path[ok][-1]


def get_landscape(name: str) -> Landscape:
    if name not in LANDSCAPES:
        raise ValueError(f"unknown landscape {name!r}; choose one of {list(LANDSCAPES)}")
    return LANDSCAPES[name]


def run_optimizer(landscape: str | Landscape, optimizer: str = "SGD", lr: float = 0.01, steps: int = 100,
                  start: tuple | None = None, blowup: float = 1e6, **hyper) -> Run:
    """Minimise a 2-D landscape with a scratch optimizer; record the path (float64, on the CPU)."""
    land = get_landscape(landscape) if isinstance(landscape, str) else landscape
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    xy = torch.tensor(start if start is not None else land.start, dtype=torch.float64, requires_grad=True)
    opt = make_optimizer(optimizer, [xy], lr=lr, **hyper)
    path = np.full((steps + 1, 2), np.nan)
    loss = np.full(steps + 1, np.nan)
    diverged = False
    for t in range(steps + 1):
        value = land(xy[0], xy[1])
        path[t], loss[t] = xy.detach().numpy(), value.item()
        if not np.isfinite(loss[t]) or abs(loss[t]) > blowup or np.abs(path[t]).max() > blowup:
            path[t], loss[t], diverged = np.nan, np.nan, True
            break
        if t == steps:
            break
        opt.zero_grad()
        value.backward()
        opt.step()
    return Run(path, loss, diverged)


PALETTE = {"SGD": "tab:blue", "Momentum": "tab:orange", "RMSprop": "tab:green", "Adam": "tab:red"}


def landscape_grid(land, n: int = 200):
    xs = np.linspace(*land.xlim, n)
    ys = np.linspace(*land.ylim, n)
    X, Y = np.meshgrid(xs, ys)
    return X, Y, land(X, Y)


def plot_landscape(ax, land, n: int = 200):
    """Filled contours of a 2-D loss on log-spaced levels (valleys stay visible), minimum marked with a star."""
    X, Y, Z = landscape_grid(land, n)
    shifted = Z - Z.min() + 1e-3
    levels = np.geomspace(shifted.min(), shifted.max(), 25)
    ax.contourf(X, Y, shifted, levels=levels, norm=matplotlib.colors.LogNorm(), cmap="viridis", alpha=0.85)
    ax.contour(X, Y, shifted, levels=levels, colors="white", linewidths=0.3, alpha=0.5)
    ax.plot(*land.minimum, marker="*", color="white", markersize=14, markeredgecolor="black")
    ax.set_xlim(*land.xlim)
    ax.set_ylim(*land.ylim)
    ax.set_xlabel("$\\theta_1$")
    ax.set_ylabel("$\\theta_2$")


def plot_run(ax, run, label: str, color: str | None = None):
    """An optimizer's path on a contour plot: dots per step, a ring at the start, a cross where it diverged."""
    ok = ~np.isnan(run.loss)
    p = run.path[ok]
    line, = ax.plot(p[:, 0], p[:, 1], "-o", ms=2.5, lw=1.2, color=color,
                    label=label + (" (diverged)" if run.diverged else ""))
    ax.plot(*p[0], "o", mfc="none", mec=line.get_color(), ms=9)
    if run.diverged:
        ax.plot(*p[-1], "x", color=line.get_color(), ms=12, mew=3)
    return line


# ============================================================================ gradient-descent explorer
BETA_LABEL = {"SGD": "(unused)", "Momentum": "momentum μ", "RMSprop": "decay α", "Adam": "β₁"}


def _hyper(optimizer: str, beta: float) -> dict:
    if optimizer == "Momentum":
        return {"momentum": beta}
    if optimizer == "RMSprop":
        return {"alpha": beta}
    if optimizer == "Adam":
        return {"betas": (beta, 0.999)}
    return {}


class GradientDescentExplorer:
    """Pick a landscape, optimizer, learning rate, β and start point; see the path and the loss per step.

    Every setting is one keyword, so a teacher can hand out an exact setup, e.g.
    ``GradientDescentExplorer(landscape="rosenbrock", optimizer="Adam", lr=0.05, steps=300)``.
    ``compare=True`` draws all four optimizers with the same learning rate.
    """

    def __init__(self, landscape: str = "ill-conditioned quadratic", optimizer: str = "SGD", lr: float = 0.05,
                 beta: float = 0.9, steps: int = 60, start: tuple | None = None, compare: bool = False):
        get_landscape(landscape)
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {optimizer!r}; choose one of {list(OPTIMIZERS)}")
        if not 0 <= beta < 1:
            raise ValueError(f"beta must be in [0, 1), got {beta}")
        start = start or LANDSCAPES[landscape].start
        self.settings = dict(landscape=landscape, optimizer=optimizer, lr=lr, beta=beta, steps=steps,
                             start=tuple(start), compare=compare)
        self.fig, (self.ax_path, self.ax_loss) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=80,
                                                              gridspec_kw={"width_ratios": [1.3, 1]})
        self.live = None
        self.runs = {}

    def compute(self, **override) -> dict:
        """Run the optimizer(s) for the current settings (plus overrides); returns {name: Run}."""
        s = {**self.settings, **override}
        names = list(OPTIMIZERS) if s["compare"] else [s["optimizer"]]
        return {n: run_optimizer(s["landscape"], n, lr=s["lr"], steps=s["steps"], start=s["start"],
                                 **_hyper(n, s["beta"])) for n in names}

    def draw(self, **override):
        s = {**self.settings, **override}
        land = get_landscape(s["landscape"])
        self.runs = self.compute(**override)
        self.ax_path.clear()
        self.ax_loss.clear()
        plot_landscape(self.ax_path, land)
        for name, run in self.runs.items():
            plot_run(self.ax_path, run, name, PALETTE[name])
            gap = run.loss - float(land(*land.minimum))
            self.ax_loss.semilogy(np.maximum(gap, 1e-12), color=PALETTE[name], label=name)
        self.ax_path.legend(fontsize=8, loc="lower right")
        uses_beta = s["compare"] or s["optimizer"] != "SGD"
        self.ax_path.set_title(f"{land.name}: lr={s['lr']:.3g}" + (f", β={s['beta']:.2f}" if uses_beta else ""))
        self.ax_loss.set_title("loss − minimum, per step")
        self.ax_loss.set_xlabel("step")
        self.ax_loss.set_xlim(0, s["steps"])
        self.ax_loss.legend(fontsize=8)
        self.fig.tight_layout()
        return self.runs

    def render(self, **override) -> dict:
        """Draw once with the current settings (plus overrides) and display the figure, without controls.

        For static comparisons in a chapter; returns ``{optimizer name: Run}``.
        """
        runs = self.draw(**override)
        LiveFigure(self.fig)
        return runs

    def show(self):
        """Display the controls and the figure; the figure is drawn once now with the current settings."""
        import ipywidgets as w
        from IPython.display import display

        s = self.settings
        c = {
            "landscape": w.Dropdown(options=list(LANDSCAPES), value=s["landscape"], description="surface"),
            "optimizer": w.Dropdown(options=list(OPTIMIZERS), value=s["optimizer"], description="optimizer"),
            "lr": w.FloatLogSlider(value=s["lr"], base=10, min=-4, max=0.5, step=0.05, description="lr",
                                   readout_format=".2g"),
            "beta": w.FloatSlider(value=s["beta"], min=0.0, max=0.99, step=0.01,
                                  description=BETA_LABEL[s["optimizer"]]),
            "steps": w.IntSlider(value=s["steps"], min=5, max=500, step=5, description="steps"),
            "compare": w.Checkbox(value=s["compare"], description="compare all four"),
        }
        style = {"description_width": "90px"}
        for ctl in c.values():
            ctl.style = style

        def on_change(change):
            for key, ctl in c.items():
                self.settings[key] = ctl.value
            if change["owner"] is c["landscape"]:
                self.settings["start"] = LANDSCAPES[c["landscape"].value].start
            c["beta"].description = BETA_LABEL[c["optimizer"].value]
            self.draw()
            self.live.update()

        for ctl in c.values():
            ctl.observe(on_change, names="value")
        display(w.VBox([w.HBox([c["landscape"], c["optimizer"], c["compare"]]),
                        w.HBox([c["lr"], c["beta"], c["steps"]])]))
        self.draw()
        self.live = LiveFigure(self.fig)
        return self

    def player(self, key: str = "lr", values=(0.005, 0.02, 0.05, 0.09, 0.1, 0.11)):
        """A precomputed JavaScript player over one setting's values: the static site's explorer."""
        if key not in self.settings:
            raise KeyError(f"{key!r} is not a setting; settings are {list(self.settings)}")
        fig = self.fig
        values = list(values)
        return player(lambda i: self.draw(**{key: values[i]}), len(values), fig, interval=900)
