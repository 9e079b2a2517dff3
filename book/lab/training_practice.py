"""The training_practice chapter's plumbing: per-layer activation and gradient statistics of a deep MLP at
initialisation, :class:`InitExplorer`, the view that switches initialisation × normalisation ×
activation and shows them, and :class:`InitDashboard`, the same switches over a short training run
watched in the live training dashboard.

The networks come from :func:`book.nn.models.deep_mlp`.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from book.config import setup
from book.nn.models import deep_mlp
from book.train import fit
from book.ui import Explorer, Replay, TrainingDashboard

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


# ============================================================================ the switches, while training
class _ViewDashboard(TrainingDashboard):
    """A :class:`~book.ui.TrainingDashboard` that draws into an :class:`InitDashboard`'s figure and shows its
    redraws through the view's display (``live=False``: it records and draws, but shows nothing)."""

    def __init__(self, model: nn.Module, view: "InitDashboard", live: bool, **kw):
        super().__init__(model, **kw)
        self.view, self.show_live = view, live

    def on_train_begin(self, state):
        super().on_train_begin(state)
        self.fig, self.axes = self.view.figure(), self.view.axes

    def _show(self):
        if self.show_live:
            self.view.refresh()


class InitDashboard(Explorer, Replay):
    """Switch initialisation × normalisation (× activation), press *train*, and watch a deep MLP train in the
    live training dashboard: loss, validation accuracy, each layer's gradient norm and the activations.

    Settings: ``init`` (a key of ``INITS``), ``norm`` (a key of ``NORMS``), ``act``, ``depth``, ``width``,
    ``steps`` (Adam steps of ``batch`` images), ``lr``, ``seed``. ``draw`` trains a fresh network from
    ``seed`` (the same batches for every setting) and returns ``{"val_acc", "first", "last", "spread",
    "history"}``: the final validation accuracy, the first and the last hidden layer's weight-gradient norm
    at the last log point, and the largest / smallest of the hidden layers' norms there; ``runs`` keeps it
    for every setting drawn (a ``player`` over settings fills it). ``replay()`` replays the last run drawn
    (for the static site)."""

    defaults = {"init": "too small N(0, 0.01²)", "norm": "none", "act": "tanh", "depth": 10, "width": 128,
                "steps": 200, "batch": 64, "lr": 1e-3, "seed": 0}
    apply_button = "train"
    replay_hint = "call draw() or show() first"
    player_keeps_results = True   # a player over settings trains each run that the next cells read

    def __init__(self, x: torch.Tensor, y: torch.Tensor, val: tuple, **settings):
        self.x, self.y, self.val = x, y, val
        self.dash = None
        self.runs: dict = {}    # (init, norm, act) -> what draw returned, for every run drawn so far
        self._trained = None    # the settings of the run self.dash recorded
        super().__init__(**settings)

    def _validate(self, s, changed):
        InitExplorer._validate(self, s, changed)
        if s["steps"] < 1 or s["batch"] < 2 or s["lr"] <= 0:
            raise ValueError(f"steps must be >= 1, batch >= 2 and lr > 0; got {s['steps']}, {s['batch']}, "
                             f"{s['lr']}")

    def _controls(self):
        import ipywidgets as w
        return {"init": w.Dropdown(options=list(INITS), description="init"),
                "norm": w.Dropdown(options=list(NORMS), description="normalise"),
                "act": w.Dropdown(options=["tanh", "relu"], description="activation")}

    def _new_figure(self):
        import matplotlib.pyplot as plt
        fig, axes = plt.subplots(1, 4, figsize=(15, 3.3), dpi=80)
        fig.subplots_adjust(left=0.04, right=0.99, bottom=0.16, top=0.88, wspace=0.22)
        return fig, axes

    def draw(self, **override):
        s = self.resolve(**override)
        live = not override           # player frames and checks train without touching the display
        if s == self._trained and not live:
            # the same settings (and seed) train the same run: redraw its end instead of training again
            self.dash.draw(self.dash.history, len(self.dash.snapshots) - 1)
            return self.runs[s["init"], s["norm"], s["act"]]
        net = build(s["init"], s["norm"], s["act"], s["depth"], s["width"], seed=s["seed"]).to(self.x.device)
        if live and self.live is None:
            self.refresh()           # one display for the view; the dashboard redraws into it
        self.dash = _ViewDashboard(net, self, live, title=f"{s['init']}, {s['norm']}")
        g = torch.Generator().manual_seed(s["seed"])
        h = fit(net, (self.x, self.y), torch.optim.Adam(net.parameters(), lr=s["lr"]), steps=s["steps"],
                batch_size=s["batch"], val=self.val, log_every=max(1, s["steps"] // 10),
                callbacks=[self.dash], generator=g, progress=False)
        hidden = [j for j, (_, m) in enumerate(self.dash.weighted) if isinstance(m, nn.Linear)][:-1]
        norms = self.dash.snapshots[-1]["norms"][hidden]
        out = {"val_acc": h.val_acc[-1], "first": float(norms[0]), "last": float(norms[-1]),
               "spread": float(norms.max() / norms.min()), "history": h}
        self.runs[s["init"], s["norm"], s["act"]] = out
        self._trained = dict(s)
        return out

    def _frames(self) -> int:
        return len(self.dash.snapshots) if self.dash is not None and self.dash.history is not None else 0

    def _draw_frame(self, k: int):
        self.dash.draw(self.dash.history, k)
