"""Scaling laws: train a family of tiny GPTs, fit a power law to their losses, and do compute-optimal arithmetic.

Chapter: ``scaling_laws``.

* Counting: ``non_embedding_params`` (Kaplan et al. 2020 count the parameters *outside* the token and
  position embeddings), ``gpt_non_embedding_params`` (the same by formula), ``training_flops`` (C ≈ 6·N·D).
* Fitting: ``fit_power_law`` fits L(N) = a·N^(-alpha) by a straight line in log-log space, or, with
  ``irreducible=True``, L(N) = E + a·N^(-alpha) by scanning E and fitting a line to log(L - E) for each E
  (scipy is not a dependency of the book, so the fit is plain numpy; it is deterministic and tested on
  synthetic data drawn from a known law).
* Compute-optimal allocation (Hoffmann et al. 2022, "Chinchilla"): ``chinchilla_optimal`` (the
  20-tokens-per-parameter rule), ``chinchilla_loss`` and ``law_optimal`` (the optimum of their fitted law).
* Experiment: ``family_configs`` and ``train_family`` train one GPT per width for the same number of tokens.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from book.nn.counting import block_params, count_params
from book.nn.gpt import GPT, GPTConfig
from book.nn.losses import lm_loss
from book.train import evaluate, fit

# Kaplan et al. 2020 (arXiv:2001.08361), eq. 1.1: L(N) = (N_c / N)^alpha_N for models trained to convergence
# on enough data; N counts non-embedding parameters, L is in nats per BPE token of WebText2.
KAPLAN = dict(alpha_N=0.076, N_c=8.8e13, alpha_D=0.095, D_c=5.4e13)
# Hoffmann et al. 2022 (arXiv:2203.15556), eq. 10 ("approach 3"): L(N, D) = E + A/N^alpha + B/D^beta,
# N = all parameters, D = training tokens, L in nats per token of MassiveText.
CHINCHILLA = dict(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)
# (parameters, training tokens) as published: GPT-3 (Brown et al. 2020), Gopher (Rae et al. 2021),
# Chinchilla (Hoffmann et al. 2022), LLaMA-7B (Touvron et al. 2023).
MODELS = {"GPT-3": (175e9, 300e9), "Gopher": (280e9, 300e9), "Chinchilla": (70e9, 1.4e12),
          "LLaMA-7B": (6.7e9, 1.0e12)}


# --------------------------------------------------------------------------- counting
def non_embedding_params(model: GPT) -> int:
    """Parameters of a ``book.nn.gpt.GPT`` minus its token and position embeddings (the output layer is tied to
    the token embedding, so it adds nothing). This is Kaplan et al.'s N."""
    if not (hasattr(model, "tok") and hasattr(model, "pos")):
        raise TypeError(f"expected a book.nn.gpt.GPT (with .tok and .pos embeddings), got {type(model).__name__}")
    return count_params(model) - model.tok.weight.numel() - model.pos.weight.numel()


def gpt_non_embedding_params(n_layer: int, n_embd: int) -> int:
    """Non-embedding parameters of ``book.nn.gpt.GPT`` by formula: per block 12·d² + 13·d (attention 4d² + 4d,
    MLP 8d² + 5d, two LayerNorms 4d), plus the final LayerNorm (2d). Kaplan's approximation is 12·n_layer·d²."""
    if n_layer < 1 or n_embd < 1:
        raise ValueError(f"n_layer and n_embd must be positive, got {n_layer}, {n_embd}")
    return n_layer * block_params(n_embd, 4 * n_embd) + 2 * n_embd   # block_params(d, 4d) = 12·d² + 13·d


def training_flops(n_params, n_tokens):
    """Training compute C ≈ 6·N·D FLOPs: per parameter and token, 2 in the forward pass (a multiply-add)
    and about 4 in the backward pass (gradients for the activations and for the weights)."""
    n, d = np.asarray(n_params, dtype=float), np.asarray(n_tokens, dtype=float)
    if (n <= 0).any() or (d <= 0).any():
        raise ValueError("n_params and n_tokens must be positive")
    out = 6.0 * n * d
    return float(out) if out.ndim == 0 else out


# --------------------------------------------------------------------------- fitting
@dataclass
class PowerLaw:
    """L(N) = E + a·N^(-alpha). ``r2`` is the coefficient of determination of log L (1 = a perfect fit)."""

    a: float
    alpha: float
    E: float = 0.0
    r2: float = float("nan")

    def __call__(self, n):
        return self.E + self.a * np.asarray(n, dtype=float) ** (-self.alpha)

    def __str__(self):
        e = f"{self.E:.3f} + " if self.E else ""
        return f"L(N) = {e}{self.a:.3g}·N^(-{self.alpha:.3f})  (R² in log space {self.r2:.3f})"


def _as_points(n, loss, need: int):
    n, loss = np.asarray(n, dtype=float).ravel(), np.asarray(loss, dtype=float).ravel()
    if n.shape != loss.shape:
        raise ValueError(f"n and loss must have the same length, got {n.size} and {loss.size}")
    if n.size < need:
        raise ValueError(f"need at least {need} points to fit this law, got {n.size}")
    if not (np.isfinite(n).all() and np.isfinite(loss).all()) or (n <= 0).any() or (loss <= 0).any():
        raise ValueError("n and loss must be finite and positive (a power law lives on log-log axes)")
    if np.unique(n).size < 2:
        raise ValueError("need at least two different model sizes n")
    return n, loss


def _r2(y, pred) -> float:
    ss = ((y - y.mean()) ** 2).sum()
    return float(1.0 - ((y - pred) ** 2).sum() / ss) if ss > 0 else 1.0


def _line(n, loss, E):
    """Least-squares line log(L - E) = log a - alpha·log N -> (a, alpha)."""
    slope, intercept = np.polyfit(np.log(n), np.log(loss - E), 1)
    return math.exp(intercept), -slope


def fit_power_law(n, loss, irreducible: bool = False, grid: int = 4000) -> PowerLaw:
    """Fit L(N) = a·N^(-alpha), or E + a·N^(-alpha) with ``irreducible=True``.

    Without E the law is a straight line in log-log space: one least-squares line. With E, every E in
    [0, min L) is tried on a fine grid (``grid`` values); for each, a line is fitted to log(L - E), and the E
    whose law best predicts log L wins. Three parameters from a handful of points are poorly determined --
    read the result as a description of the data, not as a measurement of E.
    """
    n, loss = _as_points(n, loss, 4 if irreducible else 2)
    y = np.log(loss)
    if not irreducible:
        a, alpha = _line(n, loss, 0.0)
        return PowerLaw(a, alpha, 0.0, _r2(y, np.log(a) - alpha * np.log(n)))
    best = None
    for E in np.linspace(0.0, loss.min(), grid, endpoint=False):
        a, alpha = _line(n, loss, E)
        sse = ((y - np.log(E + a * n ** (-alpha))) ** 2).sum()
        if best is None or sse < best[0]:
            best = (sse, a, alpha, E)
    _, a, alpha, E = best
    return PowerLaw(a, alpha, float(E), _r2(y, np.log(E + a * n ** (-alpha))))


# --------------------------------------------------------------------------- compute-optimal allocation
def chinchilla_optimal(flops, tokens_per_param: float = 20.0):
    """(N_opt, D_opt) for a FLOP budget with C = 6·N·D and D = r·N (r ≈ 20 tokens per parameter, the ratio
    Hoffmann et al.'s compute-optimal models follow): N = sqrt(C / (6 r)), D = r·N."""
    c = np.asarray(flops, dtype=float)
    if (c <= 0).any() or tokens_per_param <= 0:
        raise ValueError("flops and tokens_per_param must be positive")
    n = np.sqrt(c / (6.0 * tokens_per_param))
    d = tokens_per_param * n
    return (float(n), float(d)) if n.ndim == 0 else (n, d)


def chinchilla_loss(n_params, n_tokens, E: float = CHINCHILLA["E"], A: float = CHINCHILLA["A"],
                    B: float = CHINCHILLA["B"], alpha: float = CHINCHILLA["alpha"], beta: float = CHINCHILLA["beta"]):
    """Hoffmann et al.'s fitted loss L(N, D) = E + A/N^alpha + B/D^beta (nats per token of their data)."""
    n, d = np.asarray(n_params, dtype=float), np.asarray(n_tokens, dtype=float)
    if (n <= 0).any() or (d <= 0).any():
        raise ValueError("n_params and n_tokens must be positive")
    out = E + A * n ** (-alpha) + B * d ** (-beta)
    return float(out) if out.ndim == 0 else out


def law_optimal(flops, A: float = CHINCHILLA["A"], B: float = CHINCHILLA["B"], alpha: float = CHINCHILLA["alpha"],
                beta: float = CHINCHILLA["beta"]):
    """The (N, D) minimising E + A/N^alpha + B/D^beta subject to 6·N·D = C (Hoffmann et al., eq. 4):
    N = G·(C/6)^(beta/(alpha+beta)), D = (C/6)^(alpha/(alpha+beta)) / G, G = (alpha·A / (beta·B))^(1/(alpha+beta))."""
    c = float(flops)
    if c <= 0:
        raise ValueError(f"flops must be positive, got {flops}")
    g = (alpha * A / (beta * B)) ** (1.0 / (alpha + beta))
    n = g * (c / 6.0) ** (beta / (alpha + beta))
    return n, c / (6.0 * n)


# --------------------------------------------------------------------------- the experiment
@dataclass
class ScalingPoint:
    """One trained model of the family."""

    n_layer: int
    n_embd: int
    n_params: int          # non-embedding (Kaplan's N)
    n_total: int           # every parameter, embeddings included
    tokens: int            # D = steps · batch · block
    flops: float           # 6·N·D with the non-embedding N
    lr: float
    val_loss: float
    seconds: float
    curve_tokens: list     # tokens seen at each log point of training ...
    curve_loss: list       # ... and the mean training loss over the interval before it


def family_configs(vocab_size: int, widths: Sequence[int], n_layer: int = 2, block: int = 32) -> list[GPTConfig]:
    """One ``GPTConfig`` per width, all with ``n_layer`` blocks and heads of (up to) 16 dimensions."""
    if not widths:
        raise ValueError("give at least one width")
    return [GPTConfig(vocab_size, block, n_layer, max(1, w // 16), w) for w in widths]


def width_lr(base_lr: float, n_embd: int, ref: int = 64) -> float:
    """Learning rate for width ``n_embd``: ``base_lr`` at ``ref``, scaled by sqrt(ref / n_embd). Wider networks
    need smaller Adam steps; without this the widest models of a fixed-lr family are the least stable."""
    return base_lr * math.sqrt(ref / n_embd)


def train_family(configs: Sequence[GPTConfig], get_batch_fn: Callable[[int], Callable], val: tuple, *, steps: int,
                 batch: int, base_lr: float, seed: int = 0, device="cpu", amp_dtype=None,
                 on_point: Callable[[ScalingPoint, list], None] | None = None, n_logs: int = 15) -> list[ScalingPoint]:
    """Train one GPT per config for ``steps`` steps (so every model sees the same D = steps·batch·block tokens)
    and return a :class:`ScalingPoint` each, smallest first as given.

    ``get_batch_fn(seed)`` must return a fresh ``get_batch(step)`` sampler; every model gets the same batches.
    ``val = (x, y)`` is one fixed validation set for all models. ``on_point(point, points_so_far)`` is called
    after each model (the chapter's live plot uses it). AdamW, one-cycle schedule, gradient clipping at 1.
    The training loss is recorded ``n_logs`` times per run (the learning curve, against tokens seen).
    """
    vx, vy = val
    if vx.ndim != 2 or vx.shape != vy.shape:
        raise ValueError(f"val must be (x, y) token ids of the same shape (batch, block), got {tuple(vx.shape)}, "
                         f"{tuple(vy.shape)}")
    points = []
    for cfg in configs:
        if vx.shape[1] != cfg.block_size:
            raise ValueError(f"validation windows have {vx.shape[1]} tokens but block_size={cfg.block_size}; "
                             "sample them with the same block as the models")
        sampler = get_batch_fn(seed)

        def get_batch(step, sampler=sampler, cfg=cfg):
            xb, yb = sampler(step)
            if step == 1 and tuple(xb.shape) != (batch, cfg.block_size):
                raise ValueError(f"get_batch_fn gave batches of shape {tuple(xb.shape)}, expected (batch, block) = "
                                 f"({batch}, {cfg.block_size}): build the sampler with the same batch and block")
            return xb, yb
        torch.manual_seed(seed)
        model = GPT(cfg).to(device)
        lr = width_lr(base_lr, cfg.n_embd)
        opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.0)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps, pct_start=0.2)
        t0 = time.perf_counter()
        hist = fit(model, get_batch, opt, loss_fn=lm_loss, steps=steps, log_every=max(1, steps // n_logs),
                   scheduler=sched, grad_clip=1.0, amp_dtype=amp_dtype, progress=False)
        loss = evaluate(model, vx, vy, lm_loss, batch_size=256)["loss"]
        n = non_embedding_params(model)
        tokens = steps * batch * cfg.block_size
        points.append(ScalingPoint(cfg.n_layer, cfg.n_embd, n, count_params(model), tokens,
                                   training_flops(n, tokens), lr, loss, time.perf_counter() - t0,
                                   [s * batch * cfg.block_size for s in hist.step], list(hist.train_loss)))
        if on_point is not None:
            on_point(points[-1], points)
    return points


# --------------------------------------------------------------------------- drawing
def _plain_log_ticks(ax):
    """Label a log y-axis that spans less than a decade with plain numbers (2.2, 2.4) instead of 2.2×10⁰."""
    from matplotlib.ticker import FuncFormatter
    fmt = FuncFormatter(lambda v, _: f"{v:g}")
    ax.yaxis.set_major_formatter(fmt)
    ax.yaxis.set_minor_formatter(fmt)


def plot_scaling(ax, n, loss, law: PowerLaw | None = None, n_fit: int | None = None, extend: float = 10.0,
                 title: str = ""):
    """Losses against N on log-log axes; the first ``n_fit`` points (filled) were used for ``law``, the rest
    (hollow) are held out. The law is drawn over the data and extrapolated ``extend`` times beyond it."""
    n, loss = np.asarray(n, dtype=float), np.asarray(loss, dtype=float)
    n_fit = len(n) if n_fit is None else n_fit
    ax.clear()
    ax.loglog(n[:n_fit], loss[:n_fit], "o", color="C0", ms=8, label="models used in the fit")
    if n_fit < len(n):
        ax.loglog(n[n_fit:], loss[n_fit:], "o", mfc="none", mec="C3", ms=9, mew=2, label="held out")
    if law is not None:
        grid = np.geomspace(n.min() / 1.5, n.max() * extend, 200)
        ax.loglog(grid, law(grid), "-", color="C1", label=f"fit: α = {law.alpha:.3f}")
    ax.set_xlabel("non-embedding parameters N")
    ax.set_ylabel("validation loss (nats / character)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")
    _plain_log_ticks(ax)


def plot_family(ax_n, ax_c, points: Sequence[ScalingPoint]):
    """Left: validation loss against N (one point per finished model). Right: each model's training loss
    against the compute spent so far, 6·N·(tokens seen) -- the picture behind compute-optimal training."""
    ax_n.clear()
    ax_c.clear()
    n = [p.n_params for p in points]
    ax_n.loglog(n, [p.val_loss for p in points], "o-", color="C0", ms=7)
    for p in points:
        ax_n.annotate(f"d={p.n_embd}", (p.n_params, p.val_loss), textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax_c.loglog(training_flops(p.n_params, np.asarray(p.curve_tokens)), p.curve_loss, "-", lw=1.5,
                    label=f"d={p.n_embd}")
    ax_n.set(xlabel="non-embedding parameters N", ylabel="validation loss (nats / character)",
             title=f"{len(points)} model(s) trained")
    ax_c.set(xlabel="training compute so far, 6·N·tokens (FLOPs)", ylabel="training loss",
             title="learning curves against compute")
    for ax in (ax_n, ax_c):
        ax.grid(True, which="both", alpha=0.3)
        _plain_log_ticks(ax)
    ax_c.legend(fontsize=8)



def plot_isoflop(ax, models: dict = MODELS, tokens_per_param: float = 20.0):
    """Hoffmann et al.'s fitted loss along curves of equal compute C = 6·N·D ("IsoFLOP profiles"), one per
    model's training budget: the model (dot), the law's optimum (star) and the tokens-per-parameter rule (x)."""
    ax.clear()
    for i, (name, (n_model, d_model)) in enumerate(models.items()):
        c = training_flops(n_model, d_model)
        grid = np.geomspace(1e9, 1e12, 300)
        color = f"C{i}"
        ax.semilogx(grid, chinchilla_loss(grid, c / (6 * grid)), "-", color=color, lw=1.2,
                    label=f"{name}: C = {c:.2g} FLOPs")
        ax.semilogx(n_model, chinchilla_loss(n_model, d_model), "o", color=color, ms=8)
        n_law, d_law = law_optimal(c)
        ax.semilogx(n_law, chinchilla_loss(n_law, d_law), "*", color=color, ms=12, mec="black")
        n_rule, d_rule = chinchilla_optimal(c, tokens_per_param)
        ax.semilogx(n_rule, chinchilla_loss(n_rule, d_rule), "x", color=color, ms=9, mew=2)
        ax.annotate(name, (n_model, chinchilla_loss(n_model, d_model)), textcoords="offset points", xytext=(5, -12),
                    fontsize=8, color=color)
    ax.set(xlabel="parameters N (D = C / 6N)", ylabel="fitted loss L(N, D) (nats / token)",
           title="Chinchilla law at equal compute: ● as trained, ★ law optimum, × 20 tokens/param")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
