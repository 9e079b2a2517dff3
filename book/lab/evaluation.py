"""The evaluation chapter: held-out perplexity against n-gram baselines and across tokenisers, a benchmark
contaminated on purpose and three detectors of it, the noise of a benchmark score (standard error,
bootstrap, items needed), and a simulated model-as-judge with a position and a length bias.

Everything here is from scratch (numpy / torch); ``auc`` is checked against a rank-sum computation in
``tests/chapters/test_evaluation.py``.
"""
from __future__ import annotations

import copy
import math
import re
from collections import Counter
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import torch

from book.data.text import batch_sampler
from book.nn.losses import lm_loss
from book.train import Callback, fit
from book.ui import Explorer, Replay

# ============================================================================ perplexity and tokenisers
_PIECES = re.compile(r"[A-Za-z']+|[^A-Za-z']")


class WordTokenizer:
    """Words (letters and apostrophes) seen at least ``min_count`` times in the training text are one token
    each; every other character is a token of its own, and a rarer word is spelled out letter by letter.
    Lossless: ``"".join(tok.encode(s)) == s`` for any text whose characters the training text contains."""

    def __init__(self, train_text: str, min_count: int = 2):
        if min_count < 1:
            raise ValueError(f"min_count must be at least 1, got {min_count}")
        counts = Counter(_PIECES.findall(train_text))
        self.chars = set(train_text)
        self.vocab = {w for w, c in counts.items() if c >= min_count} | self.chars

    def __len__(self):
        return len(self.vocab)

    def encode(self, text: str) -> list[str]:
        missing = set(text) - self.chars
        if missing:
            raise KeyError(f"characters not in the training text: {sorted(missing)}")
        out: list[str] = []
        for piece in _PIECES.findall(text):
            if piece in self.vocab:
                out.append(piece)
            else:
                out.extend(piece)
        return out


def unigram_nll(train_tokens: list, tokens: list, vocab) -> float:
    """Total negative log-likelihood (nats) of ``tokens`` under the add-one-smoothed unigram model counted on
    ``train_tokens`` over the token types ``vocab`` (a type never seen in training keeps count one)."""
    counts = Counter(train_tokens)
    vocab = set(vocab)
    unknown = (set(tokens) | set(counts)) - vocab
    if unknown:
        raise KeyError(f"{len(unknown)} tokens are not in the vocabulary, e.g. {sorted(unknown)[:3]}")
    n, v = len(train_tokens), len(vocab)
    return -sum(math.log((counts[t] + 1) / (n + v)) for t in tokens)


@torch.no_grad()
def token_logprobs(model, seqs: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """(N, T - 1): the model's log-probability of each next token of ``seqs`` (N, T), in eval mode."""
    was = model.training
    model.eval()
    dev = next(model.parameters()).device
    out = []
    for i in range(0, len(seqs), batch):
        s = seqs[i:i + batch].to(dev)
        logp = model(s[:, :-1]).float().log_softmax(-1)
        out.append(logp.gather(-1, s[:, 1:, None])[..., 0].cpu())
    model.train(was)
    return torch.cat(out)


class PerplexityMonitor(Callback, Replay):
    """A :func:`book.train.fit` callback: perplexity on the training batches and on validation at each log
    point, beside fixed baseline perplexities (dashed); ``replay(max_frames=24, interval=400)``."""

    replay_hint = "pass the monitor to fit(callbacks=[...]) first"

    def __init__(self, baselines: dict[str, float], redraw_every: int = 2):
        self.baselines = dict(baselines)
        self.redraw_every = max(1, redraw_every)
        self.records: list[tuple[int, float, float]] = []
        self.fig = self.live = None

    def on_log(self, state):
        h = state.history
        val = math.exp(h.val_loss[-1]) if h.val_loss else float("nan")
        self.records.append((state.step, math.exp(h.train_loss[-1]), val))
        last = state.step == state.total_steps
        if last or len(self.records) % self.redraw_every == 1:
            self._draw_frame(len(self.records) - 1)
            self.show_live()

    def _frames(self) -> int:
        return len(self.records)

    def _draw_frame(self, k: int):
        import matplotlib.pyplot as plt

        if self.fig is None:
            self.fig, self.ax = plt.subplots(figsize=(6.5, 3.2), dpi=80)
        ax = self.ax
        ax.clear()
        steps = [r[0] for r in self.records[:k + 1]]
        ax.plot(steps, [r[1] for r in self.records[:k + 1]], "o-", ms=3, label="train batches")
        ax.plot(steps, [r[2] for r in self.records[:k + 1]], "s-", ms=3, label="validation")
        for j, (name, ppl) in enumerate(self.baselines.items()):
            ax.axhline(ppl, ls="--", lw=1, color=f"C{j + 2}", label=name)
        top = max([r[1] for r in self.records] + list(self.baselines.values()))
        ax.set(xlim=(0, max(r[0] for r in self.records) * 1.02), ylim=(1, top * 1.05), yscale="log",
               xlabel="step", ylabel="perplexity (per character)",
               title=f"step {self.records[k][0]}: validation perplexity {self.records[k][2]:.2f}")
        ax.legend(fontsize=7, loc="upper right")
        self.fig.tight_layout()


# ============================================================================ contamination
def passage_benchmark(ids: torch.Tensor, n_items: int, length: int, seed: int = 0):
    """``(items, leaked)``: ``n_items`` non-overlapping passages of ``length`` tokens from ``ids`` (N, length),
    and a boolean mask choosing half of them at random (the ones a contaminated model will see)."""
    slots = len(ids) // length
    if n_items > slots:
        raise ValueError(f"only {slots} passages of {length} tokens fit in {len(ids)} tokens")
    g = torch.Generator().manual_seed(seed)
    starts = torch.randperm(slots, generator=g)[:n_items] * length
    items = torch.stack([ids[s:s + length] for s in starts.tolist()])
    leaked = torch.zeros(n_items, dtype=torch.bool)
    leaked[torch.randperm(n_items, generator=g)[:n_items // 2]] = True
    return items, leaked


def continue_training(model, train_ids: torch.Tensor, steps: int, block: int, batch: int, lr: float,
                      leaked: torch.Tensor | None = None, per_batch: int = 4, seed: int = 0):
    """A copy of ``model`` trained ``steps`` more steps on random training windows. With ``leaked`` (M, block + 1)
    passages, ``per_batch`` windows of every batch are replaced by leaked passages drawn at random: the one
    difference between a contaminated run and its control (same windows, same seed otherwise)."""
    m = copy.deepcopy(model)
    m.train()
    dev = next(m.parameters()).device
    opt = torch.optim.AdamW(m.parameters(), lr=lr, weight_decay=0.01)
    windows = batch_sampler(train_ids, block, batch, torch.Generator().manual_seed(seed + 7), dev)
    g = torch.Generator().manual_seed(seed + 8)

    def get_batch(step):
        x, y = windows(step)
        j = torch.randint(0, 1 << 30, (per_batch,), generator=g)   # drawn in both runs: same windows
        if leaked is not None:
            p = leaked[j % len(leaked)].to(dev)
            x, y = x.clone(), y.clone()
            x[:per_batch], y[:per_batch] = p[:, :-1], p[:, 1:]
        return x, y

    fit(m, get_batch, opt, loss_fn=lm_loss, steps=steps, log_every=steps, grad_clip=1.0)
    return m


def min_k_prob(logp: torch.Tensor, frac: float) -> torch.Tensor:
    """Min-k% probability (Shi et al. 2023) of each row of ``logp`` (N, T): the mean of its
    ``k = max(1, int(frac * T))`` lowest token log-probabilities."""
    if not 0 < frac <= 1:
        raise ValueError(f"frac must be in (0, 1], got {frac}")
    k = max(1, int(frac * logp.shape[-1]))
    return logp.sort(-1).values[..., :k].mean(-1)


def auc(pos, neg) -> float:
    """Area under the ROC curve of a score that should be higher for ``pos`` than for ``neg``: the fraction of
    (pos, neg) pairs ordered correctly, ties counting one half (the Mann-Whitney statistic)."""
    pos, neg = np.asarray(pos, dtype=float).ravel(), np.asarray(neg, dtype=float).ravel()
    if len(pos) == 0 or len(neg) == 0:
        raise ValueError("need at least one positive and one negative score")
    diff = pos[:, None] - neg[None, :]
    return float((diff > 0).mean() + 0.5 * (diff == 0).mean())


# ============================================================================ benchmark noise
def bootstrap_ci(scores, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of per-item ``scores``: resample the items with replacement
    ``n_boot`` times, take the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of the resampled means."""
    x = np.asarray(scores, dtype=float).ravel()
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(n_boot, len(x)))].mean(1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def z(q: float) -> float:
    """The standard normal quantile (1.96 for q = 0.975)."""
    return NormalDist().inv_cdf(q)


def items_needed(p: float, delta: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Items per model so that a two-sided z-test at level ``alpha`` detects a true accuracy difference
    ``delta`` (accuracies ``p`` and ``p + delta``, each model on its own random items) with probability
    ``power``: ``n = (z_{1-alpha/2} + z_power)^2 (p(1-p) + q(1-q)) / delta^2``."""
    q = p + delta
    if not (0 < p < 1 and 0 < q < 1 and delta != 0):
        raise ValueError(f"need 0 < p, p + delta < 1 and delta != 0; got p={p}, delta={delta}")
    var = p * (1 - p) + q * (1 - q)
    return math.ceil((z(1 - alpha / 2) + z(power)) ** 2 * var / delta ** 2)


def simulated_power(n: int, p: float, delta: float, sims: int = 4000, alpha: float = 0.05,
                    seed: int = 0) -> float:
    """Fraction of ``sims`` simulated pairs of benchmarks (``n`` items each, accuracies ``p`` and ``p + delta``)
    in which the z-test on the difference of the two measured accuracies is significant at ``alpha``."""
    rng = np.random.default_rng(seed)
    a = rng.binomial(n, p, sims) / n
    b = rng.binomial(n, p + delta, sims) / n
    se = np.sqrt((a * (1 - a) + b * (1 - b)) / n)
    stat = np.abs(b - a) / np.where(se > 0, se, np.inf)
    return float((stat > z(1 - alpha / 2)).mean())


class NoiseExplorer(Explorer):
    """Two models whose true accuracies differ by ``delta``, each measured on ``n`` items: the spread of the
    measured accuracies (simulated benchmarks, with the normal approximation), and how often a z-test
    tells them apart against ``n`` (simulated and derived), the chosen ``n`` marked."""

    defaults = dict(n=200, delta=0.05, p=0.7)
    layout = dict(ncols=2, figsize=(9, 3.2))
    sims = 2000

    def _validate(self, s, changed):
        if not (0 < s["p"] < 1 and 0 < s["p"] + s["delta"] < 1):
            raise ValueError(f"accuracies p={s['p']} and p + delta must lie in (0, 1)")
        if s["n"] < 2:
            raise ValueError(f"n must be at least 2, got {s['n']}")

    def _controls(self):
        import ipywidgets as w
        return {"n": w.IntSlider(min=20, max=3000, step=20, description="items n"),
                "delta": w.FloatSlider(min=0.01, max=0.2, step=0.01, description="delta"),
                "p": w.FloatSlider(min=0.3, max=0.85, step=0.05, description="accuracy p")}

    def draw(self, **override):
        s = self.resolve(**override)
        n, p, d = int(s["n"]), s["p"], s["delta"]
        rng = np.random.default_rng(0)
        a = rng.binomial(n, p, self.sims) / n
        b = rng.binomial(n, p + d, self.sims) / n
        self.figure()
        ax1, ax2 = self.axes
        for ax in (ax1, ax2):
            ax.clear()
        bins = np.linspace(min(p, p + d) - 0.25, max(p, p + d) + 0.25, 60)
        ax1.hist(a, bins, alpha=0.6, density=True, label=f"model A (true {p:.2f})")
        ax1.hist(b, bins, alpha=0.6, density=True, label=f"model B (true {p + d:.2f})")
        se = math.sqrt(p * (1 - p) / n)
        wrong = float((b <= a).mean())
        ax1.set(xlabel="measured accuracy", yticks=[],
                title=f"n = {n}: SE {se:.3f}; B measured <= A in {wrong:.0%}")
        ax1.legend(fontsize=7)
        ns = np.unique(np.geomspace(20, 5000, 20).astype(int))
        sim = [simulated_power(int(k), p, d, sims=400, seed=1) for k in ns]
        need = items_needed(p, d)
        ax2.plot(ns, sim, "o", ms=3, label="simulated")
        zc = z(0.975)
        theory = [NormalDist().cdf(abs(d) / math.sqrt((p * (1 - p) + (p + d) * (1 - p - d)) / k) - zc)
                  for k in ns]
        ax2.plot(ns, theory, "-", lw=1, label="normal approximation")
        power = simulated_power(n, p, d, sims=self.sims, seed=2)
        ax2.plot([n], [power], "s", color="k", ms=8)
        ax2.axvline(need, ls="--", color="0.5", lw=1)
        ax2.set(xscale="log", ylim=(0, 1.02), xlabel="items per model", ylabel="P(test separates A, B)",
                title=f"power at n = {n}: {power:.2f}; 80 % needs {need}")
        ax2.legend(fontsize=7, loc="lower right")
        self.fig.tight_layout()
        return {"se": se, "power": power, "b_not_above_a": wrong, "items_needed": need}


# ============================================================================ model as judge
@dataclass
class SimulatedJudge:
    """A judge of answer pairs: its score of an answer is ``quality + length_bias * length + noise`` (unit
    Gaussian noise per verdict), and it prefers the first answer shown when ``score_1 - score_2 +
    position_bias > 0``. Ground truth: the answer of higher quality is better."""

    position_bias: float = 0.0
    length_bias: float = 0.0
    noise: float = 0.5

    def first_wins(self, q1, l1, q2, l2, rng: np.random.Generator) -> np.ndarray:
        """(N,) booleans: the verdicts on pairs shown as (answer 1, answer 2)."""
        s1 = q1 + self.length_bias * l1 + self.noise * rng.standard_normal(len(q1))
        s2 = q2 + self.length_bias * l2 + self.noise * rng.standard_normal(len(q2))
        return s1 - s2 + self.position_bias > 0


def length_controlled(verdicts, length_diff) -> float:
    """The win rate at equal length: the intercept of the least-squares line ``verdict ~ a + b * length_diff``
    (verdicts 1 / 0.5 / 0 for win / tie / loss; ``length_diff``: first system's length minus the other's)."""
    v, d = np.asarray(verdicts, dtype=float).ravel(), np.asarray(length_diff, dtype=float).ravel()
    if len(v) != len(d) or len(v) < 2:
        raise ValueError(f"need as many verdicts as length differences (at least 2), got {len(v)} and {len(d)}")
    design = np.stack([np.ones(len(d)), d], 1)
    return float(np.linalg.lstsq(design, v, rcond=None)[0][0])


def judge_win_rate(judge: SimulatedJudge, n: int = 4000, quality_gap: float = 0.0, length_gap: float = 0.0,
                   seed: int = 0) -> dict:
    """System X against system Y on ``n`` prompts: their answers' qualities are unit Gaussians with means
    ``quality_gap`` and 0, their standardised lengths unit Gaussians with means ``length_gap`` and 0. The judge
    sees every pair in both orders. Returned: the true win rate of X (the fraction of pairs where X's answer
    is better); X's win rate by the judge with X always shown first, always second, and with both orders
    (orders that disagree are a tie, worth one half); that both-orders rate with length controlled (the
    intercept of a least-squares line of the verdict on the length difference: the win rate at equal
    length); how often the answer shown first wins; the fraction of pairs whose two orders agree; and the
    judge's agreement with the truth on one order and on the pairs where both orders agree."""
    rng = np.random.default_rng(seed)
    qx, qy = quality_gap + rng.standard_normal(n), rng.standard_normal(n)
    lx, ly = length_gap + rng.standard_normal(n), rng.standard_normal(n)
    x_first = judge.first_wins(qx, lx, qy, ly, rng)        # True: X preferred, X shown first
    x_second = ~judge.first_wins(qy, ly, qx, lx, rng)      # True: X preferred, X shown second
    truth = qx > qy
    both = np.where(x_first == x_second, x_first.astype(float), 0.5)
    controlled = length_controlled(both, lx - ly)
    agree = x_first == x_second
    return {"true_win": float(truth.mean()),
            "win_x_first": float(x_first.mean()), "win_x_second": float(x_second.mean()),
            "win_both_orders": float(both.mean()), "win_length_controlled": float(controlled),
            "first_wins": float((x_first.sum() + (~x_second).sum()) / (2 * n)),
            "consistent": float(agree.mean()),
            "agree_one_order": float((x_first == truth).mean()),
            "agree_consistent": float((x_first == truth)[agree].mean())}
