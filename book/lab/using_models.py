"""Plumbing of the ``using_models`` chapter: in-context linear regression (Garg et al. 2022) with its
baselines and live view (:class:`ICLMonitor`), and the mixture-of-experts experiment (book.nn.moe)."""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn

from book.nn.gpt import Block, GPTConfig
from book.nn.moe import MoE
from book.ui import Replay


# ============================================================================ in-context regression
def icl_batch(batch: int, n_points: int, dim: int, noise: float = 0.0, generator=None):
    """``(xs, ys, w)``: ``batch`` sequences of ``n_points`` pairs, ``x ~ N(0, I_dim)``, ``y = w·x + noise·ε``
    with a fresh ``w ~ N(0, I_dim)`` for every sequence. Shapes ``(B, n, dim)``, ``(B, n)``, ``(B, dim)``."""
    xs = torch.randn(batch, n_points, dim, generator=generator)
    w = torch.randn(batch, dim, generator=generator)
    ys = (xs @ w[:, :, None])[..., 0] + noise * torch.randn(batch, n_points, generator=generator)
    return xs, ys, w


class ICLTransformer(nn.Module):
    """A small causal transformer that reads ``x1, y1, x2, y2, ...`` (one token each) and predicts, at the
    token of ``x_i``, the value ``y_i`` from the ``i - 1`` pairs before it (Garg et al.'s set-up).

    An ``x`` token is ``(x, 0)``, a ``y`` token ``(0, ..., 0, y)``, both read in by one linear map."""

    def __init__(self, dim: int, n_points: int, n_embd: int = 64, n_layer: int = 2, n_head: int = 4):
        super().__init__()
        cfg = GPTConfig(vocab_size=1, block_size=2 * n_points, n_layer=n_layer, n_head=n_head,
                        n_embd=n_embd)
        self.dim, self.n_points = dim, n_points
        self.read_in = nn.Linear(dim + 1, n_embd)
        self.pos = nn.Parameter(0.02 * torch.randn(2 * n_points, n_embd))
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(n_layer))
        self.ln = nn.LayerNorm(n_embd)
        self.read_out = nn.Linear(n_embd, 1)

    def forward(self, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
        B, n, d = xs.shape
        z = xs.new_zeros(B, n, 2, d + 1)
        z[:, :, 0, :d] = xs                        # x tokens
        z[:, :, 1, d] = ys                         # y tokens
        h = self.read_in(z.reshape(B, 2 * n, d + 1)) + self.pos[:2 * n]
        for block in self.blocks:
            h = block(h)
        return self.read_out(self.ln(h))[:, 0::2, 0]   # the prediction at every x token: (B, n)


def least_squares_predictions(xs: torch.Tensor, ys: torch.Tensor, ridge: float = 0.0) -> torch.Tensor:
    """``(B, n)``: for each ``i``, the prediction at ``x_i`` of the (minimum-norm) least-squares fit, or of
    ridge regression with penalty ``ridge``, to the ``i`` pairs before it (0 when there are none)."""
    B, n, d = xs.shape
    out = torch.zeros(B, n, dtype=xs.dtype)
    for i in range(1, n):
        X, y = xs[:, :i], ys[:, :i]                                    # (B, i, d), (B, i)
        if ridge > 0:
            A = X.transpose(1, 2) @ X + ridge * torch.eye(d, dtype=xs.dtype)
            w = torch.linalg.solve(A, (X.transpose(1, 2) @ y[..., None]))[..., 0]
        else:
            w = (torch.linalg.pinv(X) @ y[..., None])[..., 0]          # minimum-norm solution
        out[:, i] = (w * xs[:, i]).sum(-1)
    return out


def error_by_examples(pred: torch.Tensor, ys: torch.Tensor, dim: int) -> np.ndarray:
    """Mean squared error at each number of in-context examples, divided by ``dim`` (the zero predictor's
    expected error without noise): entry ``i`` is the error with ``i`` examples."""
    return ((pred - ys) ** 2).mean(0).detach().numpy() / dim


class ICLMonitor(Replay):
    """Live view of the transformer's error by number of in-context examples while it trains, beside the
    least-squares and zero baselines; ``replay(max_frames=24, interval=400)`` replays the recorded curves."""

    replay_hint = "pass the monitor to train_icl first"

    def __init__(self, baselines: dict[str, np.ndarray]):
        self.baselines = {k: np.asarray(v) for k, v in baselines.items()}
        self.records: list[tuple[int, np.ndarray]] = []
        self.fig = self.live = None

    def record(self, step: int, errors: np.ndarray, redraw: bool = True):
        self.records.append((step, np.asarray(errors)))
        if redraw:
            self.draw(len(self.records) - 1)
            self.show_live()

    def draw(self, k: int):
        """The error curve recorded at point ``k`` with the baselines."""
        import matplotlib.pyplot as plt

        if self.fig is None:
            self.fig, self.ax = plt.subplots(figsize=(6.5, 3.4), dpi=80)
        step, err = self.records[k]
        ax = self.ax
        ax.clear()
        for j, (name, curve) in enumerate(self.baselines.items()):
            ax.plot(curve, "--", lw=1.2, color=f"C{j + 1}", label=name)
        ax.plot(err, "o-", ms=3, color="C0", label="transformer")
        ax.set(xlabel="in-context examples", ylabel="squared error / dim", ylim=(0, 1.6),
               title=f"in-context regression, step {step}")
        ax.legend(fontsize=7, loc="upper right")
        self.fig.tight_layout()

    def _frames(self) -> int:
        return len(self.records)

    def _draw_frame(self, k: int):
        self.draw(k)


def train_icl(dim: int, n_points: int, steps: int, batch: int = 64, lr: float = 1e-3, n_embd: int = 64,
              n_layer: int = 2, n_head: int = 4, noise: float = 0.0, seed: int = 0, eval_set=None,
              monitor: ICLMonitor | None = None, log_every: int = 100, device="cpu"):
    """Train an :class:`ICLTransformer` on fresh sequences every step (MSE at every ``x`` token);
    return ``(model, errors)`` with the error by number of examples on ``eval_set`` (``(xs, ys)``)."""
    torch.manual_seed(seed)
    model = ICLTransformer(dim, n_points, n_embd, n_layer, n_head).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(1000 + seed)

    def evaluate():
        model.eval()
        with torch.no_grad():
            pred = model(eval_set[0].to(device), eval_set[1].to(device)).cpu()
        model.train()
        return error_by_examples(pred, eval_set[1], dim)

    for step in range(1, steps + 1):
        xs, ys, _ = icl_batch(batch, n_points, dim, noise, g)
        loss = ((model(xs.to(device), ys.to(device)) - ys.to(device)) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if monitor is not None and (step % log_every == 0 or step == steps):
            monitor.record(step, evaluate(), redraw=step == steps or step % (5 * log_every) == 0)
    return model, (evaluate() if eval_set is not None else None)


# ============================================================================ mixture of experts
def moe_task(n: int, dim: int = 8, n_clusters: int = 8, generator=None, maps=None):
    """``(x, y, maps)``: points from ``n_clusters`` Gaussian clusters in ``dim`` dimensions; a point's
    target is its cluster's own linear map of it (``maps``, ``(n_clusters, dim, dim)``; drawn if None)."""
    if maps is None:
        maps = torch.randn(n_clusters, dim, dim, generator=generator) / math.sqrt(dim)
    centres = 3.0 * torch.eye(n_clusters, dim) if n_clusters <= dim else None
    if centres is None:
        raise ValueError("n_clusters must be at most dim (the cluster centres are 3·e_i)")
    c = torch.randint(n_clusters, (n,), generator=generator)
    x = centres[c] + torch.randn(n, dim, generator=generator)
    y = (maps[c] @ x[:, :, None])[..., 0]
    return x, y, maps


class MoENet(nn.Module):
    """``x -> Linear -> x + MoE(LayerNorm(x)) -> Linear``: one mixture-of-experts layer in a residual net."""

    def __init__(self, dim: int, width: int, hidden: int, n_experts: int, k: int):
        super().__init__()
        self.inp, self.ln = nn.Linear(dim, width), nn.LayerNorm(width)
        self.moe = MoE(width, hidden, n_experts, k)
        self.out = nn.Linear(width, dim)

    def forward(self, x):
        h = self.inp(x)
        return self.out(h + self.moe(self.ln(h)))


def train_moe(alpha: float, seed: int, steps: int, n_experts: int = 8, k: int = 1, width: int = 32,
              hidden: int = 32, batch: int = 128, lr: float = 3e-3, data_seed: int = 0):
    """Train a :class:`MoENet` on :func:`moe_task` with loss ``MSE + alpha * load-balancing loss``; return
    ``dict(model, usage, mse, baseline)``: expert usage and MSE on held-out points, and the held-out MSE of
    predicting the training targets' mean."""
    g = torch.Generator().manual_seed(data_seed)
    x, y, maps = moe_task(4096, generator=g)
    xt, yt, _ = moe_task(2048, generator=g, maps=maps)
    torch.manual_seed(seed)
    model = MoENet(x.shape[1], width, hidden, n_experts, k)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gb = torch.Generator().manual_seed(100 + seed)
    for _ in range(steps):
        i = torch.randint(len(x), (batch,), generator=gb)
        loss = ((model(x[i]) - y[i]) ** 2).mean() + alpha * model.moe.aux_loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        mse = ((model(xt) - yt) ** 2).mean().item()
        usage = model.moe.usage.clone()
    baseline = ((y.mean(0) - yt) ** 2).mean().item()
    return dict(model=model, usage=usage, mse=mse, baseline=baseline)


def effective_experts(usage: torch.Tensor) -> float:
    """``exp(entropy)`` of the usage fractions: the number of experts used, counting uneven use less."""
    p = usage[usage > 0]
    return float(torch.exp(-(p * p.log()).sum()))
