"""The gradient_descent chapter's experiments: 2-D loss surfaces, a runner that records optimizer paths,
their plots, and :class:`GradientDescentExplorer` (optimizer, learning rate and β on a surface, live).

The optimizers themselves are written from scratch in :mod:`book.nn.optim`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import matplotlib
import numpy as np
import torch

from book.nn.optim import OPTIMIZERS, make_optimizer
from book.ui import Explorer


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


class GradientDescentExplorer(Explorer):
    """Pick a landscape, optimizer, learning rate, β and start point; see the path and the loss per step.

    Every setting is one keyword, so a teacher can hand out an exact setup, e.g.
    ``GradientDescentExplorer(landscape="rosenbrock", optimizer="Adam", lr=0.05, steps=300)``.
    ``compare=True`` draws all four optimizers with the same learning rate; ``start`` defaults to the
    landscape's. ``show()``, ``render()`` and ``player("lr", [...])`` follow the :class:`~book.ui.explorer.Explorer`
    contract.
    """

    defaults = dict(landscape="ill-conditioned quadratic", optimizer="SGD", lr=0.05, beta=0.9, steps=60,
                    start=None, compare=False)
    layout = dict(ncols=2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [1.3, 1]})
    interval = 900

    def __init__(self, **settings):
        self.runs = {}
        super().__init__(**settings)

    def _validate(self, s, changed):
        land = get_landscape(s["landscape"])
        if s["optimizer"] not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {s['optimizer']!r}; choose one of {list(OPTIMIZERS)}")
        if not 0 <= s["beta"] < 1:
            raise ValueError(f"beta must be in [0, 1), got {s['beta']}")
        if s["start"] is None or ("landscape" in changed and "start" not in changed):
            s["start"] = land.start   # a new surface starts at its own start point
        s["start"] = tuple(s["start"])

    def _controls(self):
        import ipywidgets as w

        style = {"description_width": "90px"}
        c = {"landscape": w.Dropdown(options=list(LANDSCAPES), description="surface", style=style),
             "optimizer": w.Dropdown(options=list(OPTIMIZERS), description="optimizer", style=style),
             "compare": w.Checkbox(description="compare all four", style=style),
             "lr": w.FloatLogSlider(base=10, min=-4, max=0.5, step=0.05, description="lr", readout_format=".2g",
                                    style=style),
             "beta": w.FloatSlider(min=0.0, max=0.99, step=0.01, description=BETA_LABEL[self.settings["optimizer"]],
                                   style=style),
             "steps": w.IntSlider(min=5, max=500, step=5, description="steps", style=style)}

        def relabel(change):   # β means something else for each optimizer
            c["beta"].description = BETA_LABEL[change["new"]]
        c["optimizer"].observe(relabel, names="value")
        return c

    @property
    def ax_path(self):
        return self.axes[0]

    @property
    def ax_loss(self):
        return self.axes[1]

    def compute(self, **override) -> dict:
        """Run the optimizer(s) for the current settings (plus overrides); returns {name: Run}."""
        s = self.resolve(**override)
        names = list(OPTIMIZERS) if s["compare"] else [s["optimizer"]]
        return {n: run_optimizer(s["landscape"], n, lr=s["lr"], steps=s["steps"], start=s["start"],
                                 **_hyper(n, s["beta"])) for n in names}

    def draw(self, **override) -> dict:
        """Draw the settings (plus ``override``); returns ``{optimizer name: Run}``."""
        s = self.resolve(**override)
        land = get_landscape(s["landscape"])
        self.runs = self.compute(**override)
        self.figure()
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


# ============================================================================ mini-batch gradient noise
def _flat_grad(model, loss) -> torch.Tensor:
    grads = torch.autograd.grad(loss, [p for p in model.parameters() if p.requires_grad])
    return torch.cat([g.reshape(-1) for g in grads])


def gradient_noise(model, x, y, batch_sizes, repeats: int, generator=None, chunk: int = 500) -> dict:
    """Measure how noisy the mini-batch gradient of ``model`` (cross-entropy) is on ``(x, y)``.

    The full-data gradient ``G`` and the trace of the per-example gradient covariance
    ``tr(Σ) = mean_i |g_i|^2 - |G|^2`` come from per-example gradients (``torch.func``, in chunks).
    Then, for each B of ``batch_sizes``, ``repeats`` mini-batches of B examples drawn *with
    replacement* give the measured ``E|g_B - G|^2``, to set beside the prediction ``tr(Σ) / B``.
    Returns ``dict(G2=|G|^2, trace=tr(Σ), noise_scale=tr(Σ)/|G|^2, measured={B: ...},
    predicted={B: ...})``.
    """
    from torch.func import functional_call, grad, vmap

    if repeats < 2:
        raise ValueError(f"repeats must be >= 2 to estimate a variance, got {repeats}")
    if min(batch_sizes) < 1 or max(batch_sizes) > len(x):
        raise ValueError(f"batch sizes must lie in 1..{len(x)}, got {list(batch_sizes)}")
    params = {k: v.detach() for k, v in model.named_parameters()}

    def loss_one(p, xi, yi):
        out = functional_call(model, p, (xi[None],))
        return torch.nn.functional.cross_entropy(out, yi[None])
    per_example = vmap(grad(loss_one), in_dims=(None, 0, 0))
    total = torch.zeros(sum(v.numel() for v in params.values()), dtype=torch.float64, device=x.device)
    sq = torch.zeros((), dtype=torch.float64, device=x.device)
    for i in range(0, len(x), chunk):
        g = per_example(params, x[i:i + chunk], y[i:i + chunk])
        flat = torch.cat([g[k].reshape(len(x[i:i + chunk]), -1) for k in params], 1).double()
        total += flat.sum(0)
        sq += (flat ** 2).sum()
    G = total / len(x)
    G2 = float(G @ G)
    trace = float(sq / len(x)) - G2
    measured = {}
    for b in batch_sizes:
        errs = torch.empty(repeats, dtype=torch.float64)
        for r in range(repeats):
            idx = torch.randint(len(x), (b,), generator=generator).to(x.device)
            loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
            errs[r] = float(((_flat_grad(model, loss).double() - G) ** 2).sum())
        measured[b] = float(errs.mean())
    return dict(G2=G2, trace=trace, noise_scale=trace / G2, measured=measured,
                predicted={b: trace / b for b in batch_sizes})


def train_at_batch_size(make_model, data, batch_size: int, lr: float, epochs: int, seed: int) -> float:
    """Plain SGD for ``epochs`` epochs at one (batch size, learning rate); returns the validation loss.

    ``data`` is a :class:`book.data.Split` with a validation part. One epoch is the same number of
    examples whatever ``batch_size``, so a larger batch takes proportionally fewer steps. A run whose
    loss blows up returns ``inf``.
    """
    from book.train import evaluate, fit

    torch.manual_seed(seed)
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)   # fit shuffles on the CPU
    try:
        fit(model, (data.x_train, data.y_train), opt, epochs=epochs, batch_size=batch_size,
            log_every=10 ** 9, generator=gen, progress=False)
    except FloatingPointError:
        return float("inf")
    loss = evaluate(model, data.x_val, data.y_val)["loss"]
    return loss if np.isfinite(loss) else float("inf")
