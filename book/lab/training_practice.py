"""The training_practice chapter's plumbing: per-layer activation and gradient statistics of a deep MLP at
initialisation, and :class:`InitExplorer`, the view that switches initialisation × normalisation ×
activation and shows them.

The networks come from :func:`book.nn.models.deep_mlp`.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from book.config import setup
from book.nn.models import deep_mlp
from book.ui import Explorer

# initialisation name shown to the reader -> (deep_mlp's init, weight std override as a function of fan_in)
INITS = {"too small N(0, 0.01²)": ("naive", None),
         "Xavier": ("xavier", None),
         "He": ("he", None),
         "too large N(0, 0.2²)": ("naive", lambda fan_in: 0.2)}
NORMS = {"none": None, "batch norm": "batch", "layer norm": "layer"}


def build(init: str, norm: str = "none", act: str = "tanh", depth: int = 10, width: int = 256,
          seed: int = 0) -> nn.Sequential:
    """A ``deep_mlp`` with the reader-facing ``init`` (a key of ``INITS``) and ``norm`` (a key of ``NORMS``)."""
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; choose one of {list(INITS)}")
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}; choose one of {list(NORMS)}")
    setup(seed=seed, verbose=False)
    base, std = INITS[init]
    net = deep_mlp(depth=depth, width=width, act=act, init=base, norm=NORMS[norm])
    if std is not None:
        with torch.no_grad():
            for lin in [m for m in net if isinstance(m, nn.Linear)][:-1]:
                lin.weight.normal_(0.0, std(lin.in_features))
    return net


def layer_stats(net: nn.Sequential, x: torch.Tensor, y: torch.Tensor) -> dict:
    """Per hidden layer, at the current weights, for one batch: the variance of the pre-activations
    ``z_l`` (outputs of each hidden Linear) and of the loss gradient with respect to them, ``∂L/∂z_l``.

    Returns ``{"act_var": array, "grad_var": array}`` (input side first)."""
    hidden = [m for m in net if isinstance(m, nn.Linear)][:-1]
    outs = []

    def keep(module, inputs, out):      # returns None: the output is left unchanged
        out.retain_grad()
        outs.append(out)

    hooks = [m.register_forward_hook(keep) for m in hidden]
    try:
        net.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
    finally:
        for h in hooks:
            h.remove()
    net.zero_grad()
    return {"act_var": np.array([o.detach().var().item() for o in outs]),
            "grad_var": np.array([o.grad.var().item() for o in outs])}


class InitExplorer(Explorer):
    """Per-layer variance of the pre-activations (forward) and of their gradients (backward) in a deep MLP
    at initialisation, for initialisation × normalisation × activation (one batch of real digits)."""

    defaults = {"init": "Xavier", "norm": "none", "act": "tanh", "depth": 10, "width": 256}
    layout = {"ncols": 2, "figsize": (10, 3.3)}

    def __init__(self, x: torch.Tensor, y: torch.Tensor, **settings):
        self.x, self.y = x, y
        super().__init__(**settings)

    def _validate(self, s, changed):
        if s["init"] not in INITS:
            raise ValueError(f"unknown init {s['init']!r}; choose one of {list(INITS)}")
        if s["norm"] not in NORMS:
            raise ValueError(f"unknown norm {s['norm']!r}; choose one of {list(NORMS)}")
        if s["act"] not in ("tanh", "relu"):
            raise ValueError(f"act must be 'tanh' or 'relu', got {s['act']!r}")
        if s["depth"] < 1:
            raise ValueError(f"depth must be >= 1, got {s['depth']}")

    def _controls(self):
        import ipywidgets as w
        return {"init": w.Dropdown(options=list(INITS), description="init"),
                "norm": w.Dropdown(options=list(NORMS), description="normalise"),
                "act": w.Dropdown(options=["tanh", "relu"], description="activation"),
                "depth": w.IntSlider(min=2, max=30, description="depth")}

    def stats(self, **override) -> dict:
        s = self.resolve(**override)
        net = build(s["init"], s["norm"], s["act"], s["depth"], s["width"]).to(self.x.device)
        return layer_stats(net, self.x, self.y)

    def draw(self, **override):
        s = self.resolve(**override)
        st = self.stats(**override)
        self.figure()
        layers = np.arange(1, s["depth"] + 1)
        for ax, key, title in zip(self.axes, ("act_var", "grad_var"),
                                  ("forward: Var(z_l)", "backward: Var(∂L/∂z_l)")):
            ax.clear()
            values = np.clip(st[key], 1e-30, 1e30)
            ax.semilogy(layers, values, "o-")
            ax.axhline(values[0], color="gray", ls=":", lw=1)
            ax.set(title=title, xlabel="hidden layer", ylim=(1e-24, 1e12))   # one scale for all
        self.axes[0].set_ylabel("variance")
        self.fig.suptitle(f"{s['init']}, {s['norm']}, {s['act']}: forward, layer {s['depth']} / layer 1 = "
                          f"{st['act_var'][-1] / st['act_var'][0]:.2g}; backward, layer 1 / layer "
                          f"{s['depth']} = {st['grad_var'][0] / max(st['grad_var'][-1], 1e-30):.2g}",
                          fontsize=9)
        self.fig.tight_layout()
        return st


def relu_variance_prediction(var_x: float, fan_ins, var_w) -> np.ndarray:
    """Var(z_l) predicted layer by layer for a ReLU net with zero biases: Var(z_1) = n_0·Var(w)·E[x²]
    with ``var_x`` = E[x²] of the input, then Var(z_l) = n_{l-1}·Var(w_l)·Var(z_{l-1})/2."""
    fan_ins, var_w = list(fan_ins), list(var_w)
    out, v = [], None
    for i, (n, s2) in enumerate(zip(fan_ins, var_w)):
        v = n * s2 * (var_x if i == 0 else v / 2)
        out.append(v)
    return np.array(out)


def tanh_fixed_point(gain: float, q0: float = 1.0, layers: int = 200, n: int = 200_001) -> float:
    """The variance q that pre-activations settle to in a wide tanh net with Var(w) = gain²/fan_in:
    iterate q ← gain²·E[tanh(√q·ξ)²], ξ ~ N(0, 1) (expectation by quadrature on a grid)."""
    xi = np.linspace(-10, 10, n)
    pdf = np.exp(-xi ** 2 / 2) / math.sqrt(2 * math.pi)
    dx = xi[1] - xi[0]
    q = q0
    for _ in range(layers):
        q = gain ** 2 * float(np.sum(np.tanh(math.sqrt(q) * xi) ** 2 * pdf) * dx)
    return q
