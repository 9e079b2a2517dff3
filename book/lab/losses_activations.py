"""The losses_activations chapter's views: a training callback that watches activations, and two explorers.

* :class:`ActivationStats` records per-layer saturation / dead fractions while :func:`book.train.fit` runs.
* :class:`LossExplorer` (BCE vs squared error and their gradients) and :class:`ActivationExplorer`
  (a function and its derivative), both built on :class:`book.ui.explorer.Explorer`.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn

from book.nn import activations as A
from book.nn.activations import dead_fraction, saturation
from book.train import Callback, State
from book.ui.explorer import Explorer
from book.ui.figure import LiveFigure


class ActivationStats(Callback):
    """Record, at every log point of ``fit``, each activation layer's saturated (tanh/sigmoid) or dead (ReLU)
    fraction on the current batch; optionally plot them live. Values are computed on the device and read
    back only at log points."""

    def __init__(self, model: nn.Module, live: bool = True, title: str = ""):
        self.layers = [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Tanh, nn.Sigmoid, nn.ReLU))]
        if not self.layers:
            raise ValueError("ActivationStats found no nn.Tanh, nn.Sigmoid or nn.ReLU module in the model")
        self.live, self.title = live, title
        self.steps: list[int] = []
        self.values: dict[str, list[float]] = {n: [] for n, _ in self.layers}
        self._pending = {}
        self._on = False
        self._hooks = [m.register_forward_hook(self._hook(n, m)) for n, m in self.layers]

    def _hook(self, name, module):
        kind = "relu" if isinstance(module, nn.ReLU) else ("tanh" if isinstance(module, nn.Tanh) else "sigmoid")

        def hook(mod, inputs, out):
            if self._on:
                self._pending[name] = dead_fraction(out) if kind == "relu" else saturation(out, kind)
        return hook

    def on_train_begin(self, state: State):
        if self.live:
            self.fig, self.ax = plt.subplots(figsize=(6, 3), dpi=80)
            self.view = LiveFigure(self.fig)

    def on_step_begin(self, state: State):
        self._on = state.will_log

    def on_after_backward(self, state: State):
        self._on = False

    def on_log(self, state: State):
        vals = torch.stack([self._pending[n] for n, _ in self.layers]).tolist()  # one sync
        self.steps.append(state.step)
        for (n, _), v in zip(self.layers, vals):
            self.values[n].append(v)
        if self.live and (state.step == state.total_steps or len(self.steps) % 5 == 1):
            self.draw()
            self.view.update()

    def on_train_end(self, state: State):
        for h in self._hooks:
            h.remove()
        if self.live:
            self.draw()
            self.view.update()

    def draw(self):
        self.ax.clear()
        for (n, m) in self.layers:
            self.ax.plot(self.steps, self.values[n], label=f"layer {n} ({type(m).__name__})")
        self.ax.set(ylim=(-0.02, 1.02), xlabel="step", ylabel="fraction",
                    title=self.title or "saturated (tanh/sigmoid) or dead (ReLU) units")
        self.ax.legend(fontsize=7)
        self.fig.tight_layout()

    def final(self) -> dict:
        return {n: v[-1] for n, v in self.values.items()}


class LossExplorer(Explorer):
    """Binary classification, one example: label ``y`` and predicted probability ``p`` = sigmoid(z).

    Left: BCE and squared error as functions of p, with the current p marked. Right: the gradient of each
    loss with respect to the logit z — BCE's is p - y (never vanishes while wrong), squared error's is
    2 (p - y) p (1 - p), which vanishes when the model is confidently wrong.
    """

    defaults = dict(y=1, p=0.3)
    layout = dict(ncols=2, figsize=(10, 3.4))

    def _controls(self):
        import ipywidgets as w
        return {"y": w.ToggleButtons(options=[0, 1], description="label y"),
                "p": w.FloatSlider(min=0.001, max=0.999, step=0.001, description="predicted p", readout_format=".3f")}

    def values(self, **override) -> dict:
        s = self.resolve(**override)
        y, p = float(s["y"]), float(s["p"])
        if y not in (0.0, 1.0) or not 0 < p < 1:
            raise ValueError(f"need y in {{0, 1}} and 0 < p < 1, got y={y}, p={p}")
        return {"bce": -(y * np.log(p) + (1 - y) * np.log(1 - p)), "mse": (p - y) ** 2,
                "d_bce_dz": p - y, "d_mse_dz": 2 * (p - y) * p * (1 - p)}

    def draw(self, **override):
        s = self.resolve(**override)
        self.figure()
        ax1, ax2 = self.axes
        ax1.clear(), ax2.clear()
        ps = np.linspace(0.001, 0.999, 400)
        v = {k: np.array([self.values(p=q, y=s["y"])[k] for q in ps]) for k in ("bce", "mse", "d_bce_dz", "d_mse_dz")}
        now = self.values(**override)
        ax1.plot(ps, v["bce"], label="binary cross-entropy")
        ax1.plot(ps, v["mse"], label="squared error")
        ax1.plot([s["p"]] * 2, [now["bce"], now["mse"]], "ko")
        ax1.set(xlabel="predicted probability p", ylabel="loss", ylim=(0, 5),
                title=f"y = {s['y']}: BCE {now['bce']:.3f}, squared error {now['mse']:.3f}")
        ax2.plot(ps, v["d_bce_dz"], label="∂BCE/∂z = p − y")
        ax2.plot(ps, v["d_mse_dz"], label="∂(p−y)²/∂z")
        ax2.plot([s["p"]] * 2, [now["d_bce_dz"], now["d_mse_dz"]], "ko")
        ax2.axhline(0, color="gray", lw=0.5)
        ax2.set(xlabel="predicted probability p", ylabel="gradient w.r.t. the logit z",
                title="what the last layer is told to change")
        for ax in self.axes:
            ax.legend(fontsize=8)
        self.fig.tight_layout()
        return now


class ActivationExplorer(Explorer):
    """An activation and its derivative, and what it does to inputs x ~ N(0, scale²)."""

    defaults = dict(name="tanh", scale=1.0)
    layout = dict(ncols=3, figsize=(13, 3.3))

    def _controls(self):
        import ipywidgets as w
        return {"name": w.Dropdown(options=list(A.ACTIVATIONS), description="activation"),
                "scale": w.FloatLogSlider(base=10, min=-1, max=1.3, step=0.05, description="input scale")}

    def stats(self, **override) -> dict:
        s = self.resolve(**override)
        f, df = A.get(s["name"])
        x = torch.randn(20000, generator=torch.Generator().manual_seed(0)) * s["scale"]
        return {"mean_grad": float(df(x).mean()), "small_grad": float((df(x) < 0.01).float().mean())}

    def draw(self, **override):
        s = self.resolve(**override)
        self.figure()
        for ax in self.axes:
            ax.clear()
        f, df = A.get(s["name"])
        x = torch.linspace(-5, 5, 400)
        self.axes[0].plot(x, f(x), label="f(x)")
        self.axes[0].plot(x, df(x), label="f'(x)")
        self.axes[0].set(title=s["name"], xlabel="x")
        self.axes[0].legend(fontsize=8)
        xs = torch.randn(20000, generator=torch.Generator().manual_seed(0)) * s["scale"]
        self.axes[1].hist(f(xs).numpy(), bins=60, color="tab:blue")
        self.axes[1].set(title=f"f(x) for x ~ N(0, {s['scale']:.2g}²)", xlabel="output")
        st = self.stats(**override)
        self.axes[2].hist(df(xs).numpy(), bins=60, color="tab:orange")
        self.axes[2].set(title=f"f'(x): mean {st['mean_grad']:.3f}, {st['small_grad']:.0%} below 0.01",
                         xlabel="derivative")
        self.fig.tight_layout()
        return st
