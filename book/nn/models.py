"""Models used across chapters: a LeNet-style CNN and configurable deep MLPs.

Chapters: :class:`LeNet` is introduced in ``cnn`` and reused in ``adversarial``, ``compression``,
``applications``, ``generative`` and ``tools``; :func:`deep_mlp` is ``training_practice``'s (depth,
initialisation, normalisation).
"""
from __future__ import annotations

import math

from torch import nn

INITS = ("default", "naive", "xavier", "he")


class LeNet(nn.Module):
    """LeNet-5 style: two 5×5 convolutions with max-pooling, three fully connected layers (ReLU)."""

    def __init__(self, width: int = 1, n_classes: int = 10):
        super().__init__()
        c1, c2 = 6 * width, 16 * width
        self.features = nn.Sequential(
            nn.Conv2d(1, c1, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),   # (B, c1, 28, 28) -> (B, c1, 14, 14)
            nn.Conv2d(c1, c2, 5), nn.ReLU(), nn.MaxPool2d(2),              # (B, c2, 10, 10) -> (B, c2, 5, 5)
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),                                                  # (B, c2·25)
            nn.Linear(c2 * 25, 120 * width), nn.ReLU(),
            nn.Linear(120 * width, 84 * width), nn.ReLU(),
            nn.Linear(84 * width, n_classes),
        )

    def forward(self, x):
        if x.ndim != 4 or x.shape[1:] != (1, 28, 28):
            raise ValueError(f"LeNet expects images of shape (B, 1, 28, 28), got {tuple(x.shape)}")
        return self.classifier(self.features(x))


def deep_mlp(depth: int = 8, width: int = 256, act: str = "tanh", init: str = "default", norm: str | None = None,
             n_in: int = 784, n_out: int = 10, dropout: float = 0.0) -> nn.Sequential:
    """A plain deep MLP for initialisation/normalisation experiments.

    ``init`` sets the weights of every hidden linear layer (their biases start at 0), whatever ``act``
    is; the output layer keeps PyTorch's default:

    * ``default``: PyTorch's ``nn.Linear`` default (uniform, variance 1/(3·fan_in)), biases too;
    * ``naive``: N(0, 0.01²), the classic "small random numbers" that are too small for deep nets;
    * ``xavier``: N(0, 2/(fan_in + fan_out)) (Glorot & Bengio 2010), no gain;
    * ``he``: N(0, 2/fan_in) (He et al. 2015, derived for ReLU), also for tanh. No activation-specific
      gain is applied: PyTorch's ``kaiming_normal_(..., nonlinearity="tanh")`` would use gain 5/3, i.e.
      variance (25/9)/fan_in; this helper never does, so ``he`` always means what the chapter teaches.

    ``norm``: None, ``batch`` or ``layer`` (after each hidden linear layer, before the activation).
    """
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; choose one of {INITS}")
    if norm not in (None, "batch", "layer"):
        raise ValueError(f"norm must be None, 'batch' or 'layer', got {norm!r}")
    acts = {"tanh": nn.Tanh, "relu": nn.ReLU, "sigmoid": nn.Sigmoid}
    if act not in acts:
        raise ValueError(f"unknown activation {act!r}; choose one of {list(acts)}")
    layers: list[nn.Module] = [nn.Flatten()]
    d = n_in
    for _ in range(depth):
        lin = nn.Linear(d, width)
        if init != "default":   # N(0, std²) weights, zero biases; no activation-specific gain
            std = {"naive": 0.01, "xavier": math.sqrt(2 / (d + width)), "he": math.sqrt(2 / d)}[init]
            nn.init.normal_(lin.weight, 0.0, std)
            nn.init.zeros_(lin.bias)
        layers.append(lin)
        if norm == "batch":
            layers.append(nn.BatchNorm1d(width))
        elif norm == "layer":
            layers.append(nn.LayerNorm(width))
        layers.append(acts[act]())
        if dropout:
            layers.append(nn.Dropout(dropout))
        d = width
    layers.append(nn.Linear(d, n_out))   # the output layer keeps PyTorch's default init
    return nn.Sequential(*layers)

