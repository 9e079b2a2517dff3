"""The live training dashboard: :class:`TrainingDashboard`, a :class:`book.train.Callback`.

It draws with Matplotlib into a :class:`~book.ui.figure.LiveFigure` (a display handle), so it updates while
code runs in Jupyter, VS Code and Colab, and the built site still shows its last frame; it syncs the GPU only
at its redraw points. It follows the replay contract of :class:`~book.ui.explorer.Replay`:
``replay(max_frames=24, interval=400)`` replays the recorded run for readers without a kernel.
"""
from __future__ import annotations

import time

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn

from book.train import Callback, State
from book.ui.explorer import Replay

ACTIVATION_TYPES = (nn.ReLU, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.ELU)


# ============================================================================ training dashboard
class TrainingDashboard(Callback, Replay):
    """Live view of a training run: losses, validation accuracy, per-layer gradient norms, activations.

    Pass it to :func:`book.train.fit` as a callback. It reads data from the GPU only at fit's log points
    (``log_every``); gradient norms and activation samples are taken on those steps alone, so the other
    steps pay nothing. Drawing (about 0.1-0.3 s for four panels) is held to a budget: a redraw happens at a
    log point only if all drawing so far -- the empty figure shown at the start included -- plus the
    expected cost of this redraw (the last one's) stays within ``max_overhead`` (5 %) of the training time
    elapsed with room left for the final drawing, and at least ``min_seconds`` after the previous one.
    The data of every log point is still
    recorded; the final state is always drawn, and ``replay(max_frames=24, interval=400)`` returns a player
    of the recorded snapshots. ``drawing_seconds`` is what drawing cost, final state excluded.
    """

    replay_hint = "train with this dashboard as a callback first"

    def __init__(self, model: nn.Module, title: str = "training", min_seconds: float = 0.5,
                 max_overhead: float = 0.05, bins: int = 40, sample: int = 4096):
        if not 0 < max_overhead <= 1:
            raise ValueError(f"max_overhead is a fraction of training time in (0, 1], got {max_overhead}")
        self.model, self.title, self.min_seconds, self.max_overhead = model, title, min_seconds, max_overhead
        self.bins, self.sample = bins, sample
        # layers with weights (for gradient norms) and activation modules (for histograms)
        self.weighted = [(n, m) for n, m in model.named_modules()
                         if isinstance(getattr(m, "weight", None), torch.Tensor) and m.weight.requires_grad]
        acts = [(n, m) for n, m in model.named_modules() if isinstance(m, ACTIVATION_TYPES)]
        self.watched = acts or [(n, m) for n, m in self.weighted if isinstance(m, (nn.Linear, nn.Conv2d))]
        if not self.weighted:
            raise ValueError("TrainingDashboard found no layer with a trainable .weight in this model")
        self._capture = False
        self._acts: dict[str, torch.Tensor] = {}
        self._hooks = [m.register_forward_hook(self._make_hook(n)) for n, m in self.watched]
        self._grad_norms = None
        self.snapshots: list[dict] = []
        self.history = None   # the run's History, once training has ended
        self.live = None
        self._start = self._last_draw = 0.0
        self._expected = 0.25      # seconds a redraw takes, until one has been measured
        self.drawing_seconds = 0.0
        self.redraws = 0

    def _make_hook(self, name):
        def hook(module, inputs, output):
            if self._capture:
                flat = output.detach().flatten()
                self._acts[name] = flat[: self.sample].float()
        return hook

    def remove(self):
        """Detach the forward hooks (called automatically at the end of training)."""
        for h in self._hooks:
            h.remove()
        self._hooks = []

    # -- callback protocol
    def on_train_begin(self, state: State):
        self._start = time.perf_counter()
        self.fig, self.axes = plt.subplots(1, 4, figsize=(15, 3.3), dpi=80)
        # fixed margins: tight_layout costs more than a redraw, and the panels never move
        self.fig.subplots_adjust(left=0.04, right=0.99, bottom=0.16, top=0.88, wspace=0.22)
        plt.close(self.fig)   # shown at the first redraw (a PNG of an empty figure would cost as much)
        self._last_draw = time.perf_counter()
        self.drawing_seconds = self._last_draw - self._start

    def on_step_begin(self, state: State):
        self._capture = state.will_log

    def on_after_backward(self, state: State):
        self._capture = False
        if state.will_log:  # one small stack of norms, still on the device
            self._grad_norms = torch.stack([
                m.weight.grad.detach().float().norm() if m.weight.grad is not None
                else torch.zeros((), device=m.weight.device) for _, m in self.weighted])

    def on_log(self, state: State):
        h = state.history
        hists = {}
        for name, a in self._acts.items():
            lo, hi = a.min(), a.max()
            counts = torch.histc(a, bins=self.bins, min=float(lo), max=float(hi) + 1e-6)
            hists[name] = (np.linspace(float(lo), float(hi) + 1e-6, self.bins + 1), counts.cpu().numpy())
        norms = self._grad_norms.cpu().numpy() if self._grad_norms is not None else None
        self.snapshots.append({"i": len(h.step), "hists": hists, "norms": norms})
        now = time.perf_counter()
        # this redraw and the final one (always drawn) must fit in the budget
        within_budget = self.drawing_seconds + 2 * self._expected <= self.max_overhead * (now - self._start)
        if within_budget and now - self._last_draw >= self.min_seconds and state.step < state.total_steps:
            self.draw(state.history, len(self.snapshots) - 1)   # (the last step: on_train_end draws it)
            self._show()
            self.redraws += 1
            self._last_draw = time.perf_counter()
            self._expected = self._last_draw - now
            self.drawing_seconds += self._expected

    def on_train_end(self, state: State):
        self.remove()
        self.history = state.history
        self.draw(state.history, len(self.snapshots) - 1)
        self._show()
        self.redraws += 1

    def _show(self):
        self.show_live()

    # -- drawing
    def draw(self, history, k: int):
        """Draw the dashboard as it was at snapshot ``k`` (used live and by the replay player)."""
        ax_loss, ax_acc, ax_grad, ax_act = self.axes
        for ax in self.axes:
            ax.clear()
        n = self.snapshots[k]["i"]
        steps = history.step[:n]
        ax_loss.plot(steps, history.train_loss[:n], label="train")
        if history.val_loss:
            ax_loss.plot(steps, history.val_loss[:n], label="validation")
        ax_loss.set_yscale("log")
        ax_loss.set_title(f"{self.title}: loss (step {steps[-1] if steps else 0})")
        ax_loss.set_xlabel("step")
        ax_loss.legend(fontsize=8)
        if history.val_acc:
            ax_acc.plot(steps, history.val_acc[:n], color="tab:green")
            ax_acc.set_ylim(0, 1)
            ax_acc.set_title(f"validation accuracy {history.val_acc[n - 1]:.3f}")
        else:
            ax_acc.set_title("validation accuracy (none: no val data, or not classification)", fontsize=8)
        ax_acc.set_xlabel("step")
        norms = np.array([s["norms"] for s in self.snapshots[: k + 1] if s["norms"] is not None])
        if len(norms):
            for j, (name, _) in enumerate(self.weighted):
                ax_grad.plot(steps[-len(norms):], norms[:, j], label=name or "model")
            ax_grad.set_yscale("log")
            if len(self.weighted) <= 16:   # beyond that a legend would hide the lines
                ax_grad.legend(fontsize=7, ncol=2)
        ax_grad.set_title("gradient norm per layer" if len(self.weighted) <= 16
                          else f"gradient norm of each of {len(self.weighted)} layers")
        ax_grad.set_xlabel("step")
        for name, (edges, counts) in self.snapshots[k]["hists"].items():
            ax_act.stairs(counts / max(counts.sum(), 1), edges, label=name)
        ax_act.set_title("activation histograms")
        if self.snapshots[k]["hists"]:
            ax_act.legend(fontsize=7)

    # -- replay contract
    def _frames(self) -> int:
        return len(self.snapshots) if self.history is not None else 0

    def _draw_frame(self, k: int):
        self.draw(self.history, k)
