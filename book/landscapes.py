"""Two-dimensional loss surfaces for watching optimizers move, and a runner that records their paths."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from .optim import make_optimizer


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
