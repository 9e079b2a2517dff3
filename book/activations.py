"""Activation functions and their derivatives written out, and a callback that watches them during training."""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import torch
from torch import nn

from .train import Callback, State
from .viz import LiveFigure


def sigmoid(x):
    return 1 / (1 + torch.exp(-x))


def d_sigmoid(x):
    s = sigmoid(x)
    return s * (1 - s)          # at most 1/4, at x = 0


def tanh(x):
    return torch.tanh(x)


def d_tanh(x):
    return 1 - torch.tanh(x) ** 2


def relu(x):
    return x.clamp(min=0)


def d_relu(x):
    return (x > 0).to(x.dtype)   # 0 for x <= 0 (the convention PyTorch uses at 0)


def gelu(x):
    return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))   # x·Φ(x), the exact form


def d_gelu(x):
    cdf = 0.5 * (1 + torch.erf(x / math.sqrt(2)))
    pdf = torch.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
    return cdf + x * pdf


def silu(x):
    return x * sigmoid(x)


def d_silu(x):
    s = sigmoid(x)
    return s * (1 + x * (1 - s))


ACTIVATIONS = {"sigmoid": (sigmoid, d_sigmoid), "tanh": (tanh, d_tanh), "relu": (relu, d_relu),
               "gelu": (gelu, d_gelu), "silu": (silu, d_silu)}
MODULES = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU}


def get(name: str):
    """(f, f') of activation ``name``."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {list(ACTIVATIONS)}")
    return ACTIVATIONS[name]


def saturation(out: torch.Tensor, kind: str) -> torch.Tensor:
    """Fraction of outputs where the derivative is nearly zero: |tanh| > 0.99, sigmoid outside (0.01, 0.99)."""
    if kind == "tanh":
        return (out.abs() > 0.99).float().mean()
    if kind == "sigmoid":
        return ((out < 0.01) | (out > 0.99)).float().mean()
    raise ValueError(f"saturation is defined for tanh and sigmoid, not {kind!r}")


def dead_fraction(out: torch.Tensor) -> torch.Tensor:
    """Fraction of ReLU units that output 0 for every example of the batch (they get no gradient at all)."""
    if out.ndim < 2:
        raise ValueError(f"need a batch of unit outputs of shape (N, units, ...), got {tuple(out.shape)}")
    per_unit = out.transpose(0, 1).reshape(out.shape[1], -1)   # (units, N·...)
    return (per_unit <= 0).all(dim=1).float().mean()


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
