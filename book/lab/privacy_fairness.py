"""Plumbing of the chapter ``privacy_fairness``: DP-SGD training runs and their monitor, the loss-threshold
membership-inference attack, and the fairness measurements on a generated lending task with their explorer.

The from-scratch mechanism (per-example gradients, clipping, noise, the RDP accountant) is in
:mod:`book.nn.privacy`; this module runs experiments with it.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from book.nn.privacy import dp_epsilon, dp_sgd_step
from book.ui import Explorer, Replay


# ---------------------------------------------------------------------------------------------- privacy
def pooled(x: torch.Tensor) -> torch.Tensor:
    """MNIST images ``(n, 1, 28, 28)`` -> ``(n, 196)``: 2x2 average pooling, flattened (fewer weights: cheaper
    per-example gradients, and less noise in total)."""
    return F.avg_pool2d(x, 2).flatten(1)


def make_mlp(n_in: int, hidden: int, n_out: int = 10, seed: int = 0) -> nn.Sequential:
    """``Linear -> ReLU -> Linear`` with weights fixed by ``seed`` (no batch norm: per-example gradients)."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, n_out))


@torch.no_grad()
def accuracy_of(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return (model(x).argmax(1) == y).float().mean().item()


def train_sgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, steps: int, q: float, lr: float,
              clip: float | None = None, sigma: float | None = None, delta: float = 1e-5, seed: int = 0,
              val: tuple | None = None, log_every: int = 50, monitor=None, name: str = "") -> dict:
    """Train ``model`` in place with plain SGD on Poisson-sampled batches (every example joins a step with
    probability ``q``), for ``steps`` steps.

    ``clip=None``: non-private SGD (the mean loss over the expected batch ``q * n``). ``clip=C`` and
    ``sigma``: DP-SGD (:func:`~book.nn.privacy.dp_sgd_step`); ``sigma=0`` clips without noise (no privacy).
    Every ``log_every`` steps (and at the end) records the step, the validation accuracy (if ``val``) and
    the ``eps`` spent so far at ``delta`` (``inf`` without noise); passes each record to
    ``monitor.log(name, record)``. Returns ``{"step": [...], "val_acc": [...], "eps": [...]}``."""
    if steps < 1 or log_every < 1:
        raise ValueError(f"steps and log_every must be >= 1, got {steps} and {log_every}")
    if not 0 < q <= 1:
        raise ValueError(f"the sampling rate q must be in (0, 1], got {q}")
    if (clip is None) != (sigma is None):
        raise ValueError("give both clip and sigma (DP-SGD) or neither (plain SGD)")
    n = len(x)
    g = torch.Generator().manual_seed(seed)
    hist = {"step": [], "val_acc": [], "eps": []}
    if monitor is not None:
        monitor.start(name)
    for step in range(1, steps + 1):
        mask = (torch.rand(n, generator=g) < q).to(x.device)
        xb, yb = x[mask], y[mask]
        if clip is None:
            model.zero_grad(set_to_none=True)
            F.cross_entropy(model(xb), yb, reduction="sum").div(q * n).backward()
            with torch.no_grad():
                for p in model.parameters():
                    if p.grad is not None:
                        p.sub_(lr * p.grad)
        else:
            dp_sgd_step(model, F.cross_entropy, xb, yb, lr=lr, clip=clip, sigma=sigma, expected_batch=q * n,
                        generator=g)
        if step % log_every == 0 or step == steps:
            eps = dp_epsilon(q, sigma, step, delta) if sigma else math.inf
            rec = {"step": step, "val_acc": accuracy_of(model, *val) if val is not None else math.nan,
                   "eps": eps}
            for k, v in rec.items():
                hist[k].append(v)
            if monitor is not None:
                monitor.log(name, rec)
    return hist


def auc(pos: torch.Tensor, neg: torch.Tensor) -> float:
    """Area under the ROC curve of scores ``pos`` (should be high) against ``neg``: the probability that a
    random positive scores above a random negative, ties counting half (the Mann-Whitney statistic)."""
    pos, neg = torch.as_tensor(pos, dtype=torch.float64).flatten(), torch.as_tensor(neg, dtype=torch.float64).flatten()
    if len(pos) == 0 or len(neg) == 0:
        raise ValueError("need at least one positive and one negative score")
    allv = torch.cat([pos, neg])
    order = allv.argsort()
    ranks = torch.empty_like(allv)
    ranks[order] = torch.arange(1, len(allv) + 1, dtype=torch.float64)
    for v in allv.unique():          # average ranks within ties
        same = allv == v
        if same.sum() > 1:
            ranks[same] = ranks[same].mean()
    u = ranks[:len(pos)].sum() - len(pos) * (len(pos) + 1) / 2
    return float(u / (len(pos) * len(neg)))


@torch.no_grad()
def membership_auc(model: nn.Module, members: tuple, nonmembers: tuple) -> float:
    """The loss-threshold attack (Yeom et al. 2018; the simplest member of Shokri et al.'s family): guess
    "member" when an example's loss is low. Returns its AUC over every threshold (0.5: no better than a
    coin; 1: perfect)."""
    lm = F.cross_entropy(model(members[0]), members[1], reduction="none")
    lo = F.cross_entropy(model(nonmembers[0]), nonmembers[1], reduction="none")
    return auc(-lm, -lo)


class DPMonitor(Explorer, Replay):
    """Live view of SGD / DP-SGD runs: validation accuracy (left) and the ``eps`` spent (right) against the
    step, one line per run. ``train_sgd(..., monitor=m, name=...)`` records; the figure follows the run in
    a notebook (``redraw_every`` records); ``replay()`` steps through the recorded points."""

    defaults = dict(point=-1)          # the recorded point drawn (-1: the newest)
    layout = dict(ncols=2, figsize=(9, 3.2))
    replay_hint = "train with train_sgd(..., monitor=monitor, name=...) first"

    def __init__(self, baseline: float | None = None, redraw_every: int = 1, **settings):
        self.baseline, self.redraw_every = baseline, max(1, redraw_every)
        self.runs: dict[str, dict] = {}
        self.events: list[tuple[str, int]] = []     # (run, how many points it had) after each record
        self._current = None
        super().__init__(**settings)

    def start(self, name: str):
        self._current = name
        self.runs[name] = {"step": [], "val_acc": [], "eps": []}
        self.events = [e for e in self.events if e[0] != name]

    def log(self, name: str, rec: dict):
        if name != self._current:
            raise RuntimeError(f"call start({name!r}) before logging it")
        run = self.runs[name]
        for k in run:
            run[k].append(rec[k])
        self.events.append((name, len(run["step"])))
        if len(run["step"]) % self.redraw_every == 0:
            self.update()           # Explorer: draw the newest point and show it in place

    def draw(self, **override):
        s = self.resolve(**override)
        self.figure()
        if not self.events:
            return {}
        k = s["point"] % len(self.events)
        seen: dict[str, int] = {}
        for name, n in self.events[:k + 1]:
            seen[name] = n
        acc_ax, eps_ax = self.axes
        acc_ax.clear()
        eps_ax.clear()
        for i, name in enumerate(self.runs):
            if name not in seen:
                continue
            run, n = self.runs[name], seen[name]
            acc_ax.plot(run["step"][:n], run["val_acc"][:n], "-", color=f"C{i}", lw=1.3, label=name)
            eps = np.array(run["eps"][:n], dtype=float)
            if np.isfinite(eps).all():
                eps_ax.plot(run["step"][:n], eps, "-", color=f"C{i}", lw=1.3, label=name)
        if self.baseline is not None:
            acc_ax.axhline(self.baseline, color="0.4", ls="--", lw=1, label="majority class")
        acc_ax.set(xlabel="step", ylabel="validation accuracy", ylim=(0, 1))
        eps_ax.set(xlabel="step", ylabel="ε spent (δ = 1e-5)")
        eps_ax.set_yscale("log")
        acc_ax.legend(fontsize=7, loc="lower right")
        if eps_ax.lines:
            eps_ax.legend(fontsize=7, loc="lower right")
        self.fig.tight_layout()
        return seen

    def _frames(self) -> int:
        return len(self.events)

    def _draw_frame(self, k: int):
        self.draw(point=k)


# ---------------------------------------------------------------------------------------------- fairness
def make_lending(n: int, seed: int = 0, base_rates=(0.6, 0.3), proxy_noise: float = 0.3) -> dict:
    """A generated decision task: group ``a`` (0 or 1, half each), label ``y`` ("repays") with base rate
    ``base_rates[a]``, two noisy signals of ``y`` that behave the same in both groups, and a *proxy* feature
    (think: postcode) that tracks the group and says nothing about ``y`` beyond it.

    Returns float tensors ``x`` ``(n, 3)`` = (signal 1, signal 2, proxy), and ``y``, ``a`` (0/1 int64)."""
    if n < 2:
        raise ValueError(f"n must be at least 2, got {n}")
    g = torch.Generator().manual_seed(seed)
    a = (torch.rand(n, generator=g) < 0.5).long()
    rate = torch.tensor(base_rates, dtype=torch.float32)[a]
    y = (torch.rand(n, generator=g) < rate).long()
    s1 = y + torch.randn(n, generator=g)
    s2 = y + torch.randn(n, generator=g)
    proxy = a + proxy_noise * torch.randn(n, generator=g)
    return {"x": torch.stack([s1, s2, proxy], 1), "y": y, "a": a}


def group_rates(pred, y, a) -> dict:
    """Per group (0 and 1): ``pos`` (share predicted positive), ``tpr``, ``fpr``, ``ppv`` (precision),
    ``base`` (share truly positive), ``acc``; and the gaps ``|group 0 - group 1|``: ``dp`` (demographic
    parity difference), ``tpr``, ``fpr``, ``eo`` (equalised-odds gap: the larger of the two), ``ppv``."""
    pred, y, a = (torch.as_tensor(t).long() for t in (pred, y, a))
    out = {}
    for grp in (0, 1):
        m = a == grp
        p, t = pred[m], y[m]
        if m.sum() == 0 or (t == 1).sum() == 0 or (t == 0).sum() == 0:
            raise ValueError(f"group {grp} needs positive and negative examples")
        out[grp] = {"pos": p.double().mean().item(), "tpr": p[t == 1].double().mean().item(),
                    "fpr": p[t == 0].double().mean().item(),
                    "ppv": t[p == 1].double().mean().item() if (p == 1).any() else math.nan,
                    "base": t.double().mean().item(), "acc": (p == t).double().mean().item()}
    gap = {k: abs(out[0][k] - out[1][k]) for k in ("pos", "tpr", "fpr", "ppv")}
    out["dp"], out["tpr"], out["fpr"], out["ppv"] = gap["pos"], gap["tpr"], gap["fpr"], gap["ppv"]
    out["eo"] = max(gap["tpr"], gap["fpr"])
    out["acc"] = (pred == y).double().mean().item()
    return out


def calibration_by_group(score, y, a, bins: int = 5) -> dict:
    """Per group: ``(mean score, share positive, count)`` in ``bins`` equal-width score bins, and ``gap``:
    the count-weighted mean ``|mean score - share positive|`` (0: calibrated within the group)."""
    score, y, a = (torch.as_tensor(t) for t in (score, y, a))
    out = {}
    for grp in (0, 1):
        s, t = score[a == grp].double(), y[a == grp].double()
        idx = (s * bins).long().clamp(0, bins - 1)
        rows, gap = [], 0.0
        for b in range(bins):
            m = idx == b
            if m.any():
                rows.append((s[m].mean().item(), t[m].mean().item(), int(m.sum())))
                gap += abs(rows[-1][0] - rows[-1][1]) * rows[-1][2]
        out[grp] = {"bins": rows, "gap": gap / len(s)}
    return out


def best_group_thresholds(score, y, a, max_gap: float = 0.02, grid=None) -> tuple[float, float]:
    """Per-group thresholds ``(t0, t1)`` from ``grid``: the most accurate pair whose equalised-odds gap (the
    larger of the TPR and FPR gaps) is at most ``max_gap``; if no pair is that close, the pair with the
    smallest gap. Choose them on validation data, never on the test set."""
    score, y, a = (torch.as_tensor(t) for t in (score, y, a))
    grid = torch.linspace(0.02, 0.98, 97) if grid is None else torch.as_tensor(grid)
    rates = {}
    for grp in (0, 1):
        s, t = score[a == grp], y[a == grp]
        if (t == 1).sum() == 0 or (t == 0).sum() == 0:
            raise ValueError(f"group {grp} needs positive and negative examples")
        pred = (s[None, :] >= grid[:, None].to(s.dtype))                 # (thresholds, examples)
        rates[grp] = (pred[:, t == 1].float().mean(1), pred[:, t == 0].float().mean(1),
                      (pred == t.bool()[None, :]).float().sum(1))
    eo = torch.maximum((rates[0][0][:, None] - rates[1][0][None, :]).abs(),
                       (rates[0][1][:, None] - rates[1][1][None, :]).abs())      # (t0, t1)
    acc = (rates[0][2][:, None] + rates[1][2][None, :]) / len(y)
    ok = eo <= max_gap
    key = torch.where(ok, -acc, eo + 10) if ok.any() else eo
    i, j = divmod(int(key.argmin()), len(grid))
    return float(grid[i]), float(grid[j])


def decide(score, a, thresholds) -> torch.Tensor:
    """Positive decision where ``score >= thresholds[a]`` (one threshold per group)."""
    score, a = torch.as_tensor(score), torch.as_tensor(a)
    return (score >= torch.tensor(thresholds, dtype=score.dtype)[a]).long()


def roc_points(score, y, grid) -> tuple[np.ndarray, np.ndarray]:
    """``(fpr, tpr)`` of ``score >= t`` for every ``t`` in ``grid``."""
    score, y = torch.as_tensor(score), torch.as_tensor(y)
    pred = score[None, :] >= torch.as_tensor(grid, dtype=score.dtype)[:, None]
    return pred[:, y == 0].float().mean(1).numpy(), pred[:, y == 1].float().mean(1).numpy()


class ThresholdExplorer(Explorer):
    """One decision threshold per group on a classifier's scores: each group's ROC curve with its operating
    point (left) and the gaps between the groups with the overall accuracy (right). ``player(("t0", "t1"),
    [...])`` steps through threshold pairs for the static site."""

    defaults = dict(t0=0.5, t1=0.5)
    layout = dict(ncols=2, figsize=(9, 3.4))
    GAPS = (("dp", "positive rate\n(dem. parity)"), ("tpr", "TPR"), ("fpr", "FPR"), ("ppv", "PPV"),
            ("acc", "accuracy"))

    def __init__(self, score, y, a, **settings):
        self.score, self.y, self.a = (torch.as_tensor(t) for t in (score, y, a))
        self.grid = np.linspace(0, 1, 101)
        self.curves = {grp: roc_points(self.score[self.a == grp], self.y[self.a == grp], self.grid) for grp in (0, 1)}
        super().__init__(**settings)

    def _validate(self, s, changed):
        for k in ("t0", "t1"):
            if not 0 <= s[k] <= 1:
                raise ValueError(f"{k} must be in [0, 1], got {s[k]}")

    def _controls(self):
        import ipywidgets as w
        return {k: w.FloatSlider(min=0.05, max=0.95, step=0.01, description=f"threshold {k[1]}")
                for k in ("t0", "t1")}

    def compute(self, **override) -> dict:
        s = self.resolve(**override)
        return group_rates(decide(self.score, self.a, (s["t0"], s["t1"])), self.y, self.a)

    def draw(self, **override):
        s = self.resolve(**override)
        r = self.compute(**override)
        self.figure()
        roc, bars = self.axes
        roc.clear()
        bars.clear()
        for grp in (0, 1):
            fpr, tpr = self.curves[grp]
            roc.plot(fpr, tpr, color=f"C{grp}", lw=1.2, label=f"group {grp}")
            roc.plot([r[grp]["fpr"]], [r[grp]["tpr"]], "o", color=f"C{grp}", ms=7)
        roc.plot([0, 1], [0, 1], ":", color="0.6", lw=1)
        roc.set(xlabel="false-positive rate", ylabel="true-positive rate", xlim=(0, 1), ylim=(0, 1))
        roc.set_title(f"thresholds: group 0 {s['t0']:.2f}, group 1 {s['t1']:.2f}", fontsize=9)
        roc.legend(fontsize=8, loc="lower right")
        vals = [r[k] for k, _ in self.GAPS]
        bars.bar(range(len(vals)), vals, color=["C2"] * 4 + ["0.5"])
        bars.set_xticks(range(len(vals)), [label for _, label in self.GAPS], fontsize=7)
        bars.set(ylim=(0, 1), ylabel="gap between groups | accuracy")
        for i, v in enumerate(vals):
            bars.text(i, v + 0.02, f"{v:.2f}", ha="center", fontsize=8)
        self.fig.tight_layout()
        return r
