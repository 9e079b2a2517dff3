"""The attention_math chapter's view: :class:`SoftmaxExplorer` (softmax temperature), on the one explorer base."""
from __future__ import annotations

import numpy as np
import torch

from book.ui.explorer import Explorer


class SoftmaxExplorer(Explorer):
    """softmax(z / T) of fixed logits for a temperature T: T → 0 approaches argmax, T → ∞ uniform."""

    defaults = dict(temperature=1.0, logits=(2.0, 1.0, 0.5, 0.0, -1.0))

    def _controls(self):
        import ipywidgets as w
        return {"temperature": w.FloatLogSlider(base=10, min=-1.3, max=1.3, step=0.05, description="temperature")}

    def probs(self, **override) -> np.ndarray:
        s = self.resolve(**override)
        if s["temperature"] <= 0:
            raise ValueError(f"temperature must be positive, got {s['temperature']}")
        z = torch.tensor(s["logits"], dtype=torch.float64) / s["temperature"]
        return torch.softmax(z, 0).numpy()

    def draw(self, **override):
        s = self.resolve(**override)
        self.figure()
        ax = self.axes
        ax.clear()
        p = self.probs(**override)
        entropy = float(-(p * np.log(p + 1e-300)).sum())
        ax.bar([f"z={z:g}" for z in s["logits"]], p, color="tab:purple")
        ax.set(ylim=(0, 1), ylabel="probability",
                    title=f"softmax(z / T), T = {s['temperature']:.2g}: entropy {entropy:.2f} nats")
        self.fig.tight_layout()
        return p
