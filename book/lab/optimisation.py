"""The optimisation chapter's experiments: scratch optimizers and schedules against ``torch.optim``,
L1 / L2 regularisation on a linear classifier, learning-rate schedules on a real run, and the loss
landscape around a training trajectory (:class:`TrajectoryView`, live while it trains, with a replay).

The optimizers and schedules themselves are written from scratch in :mod:`book.nn.optim`.
"""
from __future__ import annotations

import math

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn

from book.train import Callback, State, evaluate, fit
from book.ui import Replay


# ============================================================================ scratch vs torch.optim
def match_torch(ours, theirs, steps: int = 50, seed: int = 0, shape=(5, 3)) -> float:
    """Largest ``|ours - theirs|`` after ``steps`` steps of two optimizers fed the same random gradients
    from the same random start (float64). ``ours``/``theirs`` build an optimizer from a parameter list."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    g = torch.Generator().manual_seed(seed)
    p0 = torch.randn(*shape, generator=g, dtype=torch.float64)
    a, b = p0.clone().requires_grad_(), p0.clone().requires_grad_()
    opt_a, opt_b = ours([a]), theirs([b])
    err = 0.0
    for _ in range(steps):
        grad = torch.randn(*shape, generator=g, dtype=torch.float64)
        a.grad, b.grad = grad.clone(), grad.clone()
        opt_a.step()
        opt_b.step()
        err = max(err, (a - b).abs().max().item())
    return err


def torch_schedule(make_scheduler, steps: int, base: float = 1.0) -> np.ndarray:
    """The learning rate a ``torch.optim.lr_scheduler`` gives at steps 0 .. steps-1 (one ``step()`` per
    optimizer step), for an SGD optimizer of learning rate ``base``."""
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=base)
    sched = make_scheduler(opt)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return np.array(out)


# ============================================================================ L1 / L2 regularisation
def soft_threshold(w: torch.Tensor, threshold: float) -> torch.Tensor:
    """The proximal step of ``threshold * |w|``: move each weight ``threshold`` towards 0, stop at 0."""
    return torch.sign(w) * (w.abs() - threshold).clamp_min(0)


def train_regularised(data, penalty: str, lam: float, lr: float, epochs: int, seed: int,
                      batch_size: int = 64) -> nn.Module:
    """A linear classifier (softmax regression, ``nn.Linear(784, 10)``) trained with plain SGD and a
    penalty on its weight matrix (not the bias).

    ``penalty``: ``"none"``; ``"l2"`` (``loss + lam/2 |W|^2``, i.e. SGD's ``weight_decay=lam``); ``"l1"``
    (``loss + lam |W|_1`` by its subgradient ``lam * sign(W)``); ``"l1-prox"`` (the same objective, but the
    penalty applied by :func:`soft_threshold` after each gradient step on the loss alone).
    """
    if penalty not in ("none", "l2", "l1", "l1-prox"):
        raise ValueError(f"unknown penalty {penalty!r}; choose none, l2, l1 or l1-prox")
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10)).to(data.x_train.device)
    W = model[1].weight
    gen = torch.Generator().manual_seed(seed)
    n = len(data.x_train)
    for _ in range(epochs):
        for idx in torch.randperm(n, generator=gen).split(batch_size):
            idx = idx.to(data.x_train.device)
            loss = nn.functional.cross_entropy(model(data.x_train[idx]), data.y_train[idx])
            model.zero_grad()
            loss.backward()
            with torch.no_grad():
                if penalty == "l2":
                    W.grad += lam * W
                elif penalty == "l1":
                    W.grad += lam * torch.sign(W)
                for p in model.parameters():
                    p -= lr * p.grad
                if penalty == "l1-prox":
                    W.copy_(soft_threshold(W, lr * lam))
    return model


def sparsity(w: torch.Tensor, tol: float = 1e-3) -> dict:
    """Fractions of exactly zero weights and of weights with ``|w| < tol``."""
    w = w.detach()
    return {"exact": (w == 0).float().mean().item(), "near": (w.abs() < tol).float().mean().item()}


# ============================================================================ schedules on a real run
def train_with_schedule(make_model, data, make_scheduler, lr: float, epochs: int, seed: int,
                        batch_size: int = 64, momentum: float = 0.9) -> tuple[nn.Module, dict]:
    """SGD with momentum for ``epochs`` epochs, the learning rate set each step by ``make_scheduler(opt,
    total_steps)`` (``None``: constant). Returns the model and its validation loss and accuracy."""
    torch.manual_seed(seed)
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    total = epochs * math.ceil(len(data.x_train) / batch_size)
    sched = make_scheduler(opt, total) if make_scheduler is not None else None
    fit(model, (data.x_train, data.y_train), opt, epochs=epochs, batch_size=batch_size,
        scheduler=sched, log_every=10 ** 9, generator=torch.Generator().manual_seed(seed), progress=False)
    return model, evaluate(model, data.x_val, data.y_val)


# ============================================================================ loss landscape
def flat_params(model: nn.Module) -> torch.Tensor:
    """All parameters as one detached vector (a copy)."""
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()]).clone()


def set_flat_params(model: nn.Module, flat: torch.Tensor) -> None:
    i = 0
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(flat[i:i + p.numel()].view_as(p))
            i += p.numel()


def filter_normalised_direction(model: nn.Module, generator=None) -> torch.Tensor:
    """A random direction with each filter (each output row of a weight) rescaled to the norm of the same
    filter of the model's weights, biases set to 0 -- Li et al. (2018), §4."""
    parts = []
    for p in model.parameters():
        if p.dim() <= 1:
            parts.append(torch.zeros_like(p).reshape(-1))
            continue
        d = torch.randn(p.shape, generator=generator).to(p.device, p.dtype)
        rows, w = d.reshape(len(d), -1), p.detach().reshape(len(p), -1)
        rows = rows * (w.norm(dim=1, keepdim=True) / (rows.norm(dim=1, keepdim=True) + 1e-10))
        parts.append(rows.reshape(-1))
    return torch.cat(parts)


def trajectory_pca(path: torch.Tensor) -> tuple[torch.Tensor, np.ndarray]:
    """PCA of a trajectory ``path`` (k, P) relative to its last point (Li et al., §7): the two leading
    unit directions (2, P) and the share of the path's variance along each (all components)."""
    if len(path) < 3:
        raise ValueError(f"a trajectory needs at least 3 points for two directions, got {len(path)}")
    M = (path[:-1] - path[-1]).double()
    _, S, Vh = torch.linalg.svd(M, full_matrices=False)
    share = (S ** 2 / (S ** 2).sum()).cpu().numpy()
    return Vh[:2].to(path.dtype), share


def captured_share(path: torch.Tensor, directions: torch.Tensor) -> float:
    """Share of the path's squared distance to its end that lies in the span of ``directions`` (2, P)."""
    M = (path[:-1] - path[-1]).double()
    Q, _ = torch.linalg.qr(directions.double().T)      # orthonormal basis of the span
    return float((M @ Q).pow(2).sum() / M.pow(2).sum())


@torch.no_grad()
def loss_grid(model: nn.Module, center: torch.Tensor, directions: torch.Tensor, alphas, betas, x, y):
    """Loss of ``model`` with parameters ``center + a d1 + b d2`` on ``(x, y)`` for every (a, b) of the
    grid; returns an array (len(betas), len(alphas)). The model's parameters are restored afterwards."""
    keep = flat_params(model)
    was = model.training
    model.eval()
    Z = np.empty((len(betas), len(alphas)))
    for i, b in enumerate(betas):
        for j, a in enumerate(alphas):
            set_flat_params(model, center + a * directions[0] + b * directions[1])
            Z[i, j] = nn.functional.cross_entropy(model(x), y).item()
    set_flat_params(model, keep)
    model.train(was)
    return Z


class TrajectoryView(Callback, Replay):
    """Gradient descent on a real network, seen on its loss surface (a :func:`book.train.fit` callback).

    At every log point of ``fit`` it copies the parameters (the only read-back) and redraws every
    ``redraw_every`` log points: the path so far, projected on the two leading PCA directions of the path
    so far, beside the training loss. When training ends it fixes the two directions from the whole path
    (Li et al., 2018, §7), computes the loss on a ``grid`` x ``grid`` mesh around the final weights on
    ``(x, y)`` and draws the path over the contours. ``replay()`` steps through the recorded path on that
    final surface.
    """

    replay_hint = "train with this view as a callback of fit first"

    def __init__(self, model: nn.Module, x, y, grid: int = 15, margin: float = 0.3, redraw_every: int = 10,
                 title: str = "loss surface around the trajectory"):
        if grid < 3:
            raise ValueError(f"grid must be >= 3 points per axis, got {grid}")
        if redraw_every < 1:
            raise ValueError(f"redraw_every must be >= 1, got {redraw_every}")
        self.model, self.x, self.y, self.grid, self.margin = model, x, y, grid, margin
        self.redraw_every, self.title = redraw_every, title
        self.path: list[torch.Tensor] = []
        self.steps: list[int] = []
        self.losses: list[float] = []
        self.fig = self.axes = self.live = None
        self.directions = self.share = self.coords = self.Z = None
        self.alphas = self.betas = None
        self.done = False
        self.redraws = 0
        self._artists = None   # the final surface's moving lines, once drawn

    # -- callback protocol
    def on_train_begin(self, state: State):
        self.path, self.steps, self.losses = [flat_params(self.model)], [0], [float("nan")]

    def on_log(self, state: State):
        self.path.append(flat_params(self.model))
        self.steps.append(state.step)
        self.losses.append(state.history.train_loss[-1])
        if len(self.path) >= 3 and (len(self.path) - 1) % self.redraw_every == 0 and \
                state.step < state.total_steps:
            P = torch.stack(self.path)
            dirs, _ = trajectory_pca(P)
            self._draw(self._project(P, dirs), len(self.path) - 1, surface=False)
            self._show()

    def on_train_end(self, state: State):
        self.finish()

    def finish(self):
        """Fix the directions from the whole path, compute the surface, draw the final frame."""
        P = torch.stack(self.path)
        self.directions, self.share = trajectory_pca(P)
        self.coords = self._project(P, self.directions)
        lo, hi = self.coords.min(0), self.coords.max(0)
        pad = self.margin * (hi - lo)
        self.alphas = np.linspace(lo[0] - pad[0], hi[0] + pad[0], self.grid)
        self.betas = np.linspace(lo[1] - pad[1], hi[1] + pad[1], self.grid)
        self.Z = loss_grid(self.model, P[-1], self.directions, self.alphas, self.betas, self.x, self.y)
        self.done = True
        self._draw(self.coords, len(self.path) - 1, surface=True)
        self._show()

    # -- drawing
    @staticmethod
    def _project(P, dirs):
        return ((P - P[-1]) @ dirs.T).double().cpu().numpy()

    def _figure(self):
        if self.fig is None:
            self.fig, self.axes = plt.subplots(1, 2, figsize=(10, 3.8), dpi=80,
                                               gridspec_kw={"width_ratios": [1.2, 1]})
            plt.close(self.fig)

    def _draw(self, coords, k: int, surface: bool):
        """Draw the path up to log point ``k``; on the final surface only the lines move (cheap replay)."""
        self._figure()
        ax, ax_loss = self.axes
        if not (surface and self._artists):
            ax.clear()
            ax_loss.clear()
            if surface:
                A, B = np.meshgrid(self.alphas, self.betas)
                levels = np.geomspace(self.Z.min(), self.Z.max(), 20)
                norm = matplotlib.colors.LogNorm(self.Z.min(), self.Z.max())
                extent = (self.alphas[0], self.alphas[-1], self.betas[0], self.betas[-1])
                cs = ax.imshow(self.Z, origin="lower", extent=extent, aspect="auto", cmap="viridis",
                               norm=norm, interpolation="bicubic")   # cheaper per frame than contourf
                ax.contour(A, B, self.Z, levels=levels, colors="white", linewidths=0.4, alpha=0.7)
                self.fig.colorbar(cs, ax=ax, label="loss")
                ax.set_title(f"{self.title}\n(PCA of the whole path: {self.share[0]:.0%} + "
                             f"{self.share[1]:.0%} of its variance)", fontsize=9)
            else:
                ax.set_title(f"{self.title}\n(live: PCA of the path so far)", fontsize=9)
            path, = ax.plot([], [], "-o", color="tab:red", ms=3, lw=1.2)
            ax.plot(*coords[0], "o", mfc="none", mec="tab:red", ms=10)
            now, = ax.plot([], [], "*", color="white", mec="black", ms=13)
            curve, = ax_loss.semilogy([], [], color="tab:blue")
            ax.set_xlabel("direction 1")
            ax.set_ylabel("direction 2")
            ax_loss.set_xlim(0, max(self.steps))
            seen = [v for v in self.losses[1:] if np.isfinite(v)]
            if seen:
                ax_loss.set_ylim(0.8 * min(seen), 1.25 * max(seen))
            ax_loss.set_xlabel("step")
            if not surface:
                lo, hi = coords.min(0), coords.max(0)
                pad = 0.1 * (hi - lo) + 1e-9
                ax.set_xlim(lo[0] - pad[0], hi[0] + pad[0])
                ax.set_ylim(lo[1] - pad[1], hi[1] + pad[1])
            self.fig.subplots_adjust(left=0.07, right=0.98, bottom=0.14, top=0.84, wspace=0.3)
            self._artists = (path, now, curve) if surface else None
            arts = (path, now, curve)
        else:
            arts = self._artists
        path, now, curve = arts
        path.set_data(coords[:k + 1, 0], coords[:k + 1, 1])
        now.set_data([coords[k, 0]], [coords[k, 1]])
        curve.set_data(self.steps[1:k + 1], self.losses[1:k + 1])
        ax_loss.set_title(f"training loss (step {self.steps[k]})", fontsize=9)

    def _show(self):
        self.show_live()
        self.redraws += 1

    # -- replay contract
    def _frames(self) -> int:
        return len(self.path) if self.done else 0

    def _draw_frame(self, k: int):
        self._draw(self.coords, k, surface=True)
