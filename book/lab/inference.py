"""Plumbing of the ``inference`` chapter: the text split, two draft models (counted bigrams and a small
GPT trained on the same text), speculative and plain generation that count the target's forward passes,
decode-step and draft-cost timings, the throughput view and the live view of speculative decoding."""
from __future__ import annotations

import time

import torch

from book.data.text import batch_sampler
from book.hardware import time_step
from book.lab.pretraining import RECIPE, split_regions
from book.nn.decoding import speculative_step
from book.nn.gpt import GPT, GPTConfig
from book.nn.losses import lm_loss
from book.train import fit
from book.ui import Explorer, Replay


def inference_split(ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train, validation, test) ids: the shipped checkpoint's pretraining text and its two kinds of
    held-out chunks (:func:`book.lab.pretraining.split_regions`), so neither held-out part was seen."""
    region = split_regions(len(ids), RECIPE["chunk"], RECIPE["every"])
    return ids[region == 0], ids[region == 1], ids[region == 2]


class BigramDraft:
    """A draft model that costs almost nothing: next-token probabilities given the last token, counted on
    the training text with add-one smoothing (so every token has ``q > 0``)."""

    def __init__(self, train_ids: torch.Tensor, vocab_size: int):
        counts = torch.ones(vocab_size, vocab_size)
        counts.index_put_((train_ids[:-1], train_ids[1:]), torch.ones(len(train_ids) - 1), accumulate=True)
        self.table = counts / counts.sum(1, keepdim=True)               # (V, V): row = previous token

    def probs(self, context: list[int]) -> torch.Tensor:
        """(V,) next-token probabilities after ``context`` (only its last token matters)."""
        return self.table[context[-1]]

    def batch_probs(self, contexts: torch.Tensor) -> torch.Tensor:
        """(n, V) next-token probabilities after each row of ``contexts`` (n, t)."""
        return self.table[contexts[:, -1]]


class GPTDraft:
    """A small GPT as the draft: its next-token probabilities given the last ``block_size`` tokens of the
    context (one forward pass of the small model per drafted token)."""

    def __init__(self, model: GPT):
        self.model = model.eval()

    def probs(self, context: list[int]) -> torch.Tensor:
        """(V,) next-token probabilities after ``context``."""
        return target_probs(self.model, context, 1)[0]

    @torch.no_grad()
    def batch_probs(self, contexts: torch.Tensor) -> torch.Tensor:
        """(n, V) next-token probabilities after each row of ``contexts`` (n, t), cropped to the block."""
        return self.model(contexts[:, -self.model.cfg.block_size:])[:, -1].float().softmax(-1)


def train_draft(train_ids: torch.Tensor, vocab_size: int, steps: int, n_layer: int = 1, n_embd: int = 32,
                n_head: int = 4, block: int = 16, batch: int = 64, lr: float = 1e-2, seed: int = 0) -> GPT:
    """A small GPT trained for ``steps`` AdamW steps on random ``block``-token windows of the training text
    (next-token cross-entropy, :func:`book.train.fit`): the draft of speculative decoding."""
    with torch.random.fork_rng():                  # seed the initial weights, leave the caller's RNG alone
        torch.manual_seed(seed)
        model = GPT(GPTConfig(vocab_size, block, n_layer, n_head, n_embd))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.1)
    fit(model, batch_sampler(train_ids, block, batch, torch.Generator().manual_seed(seed)), opt,
        loss_fn=lm_loss, steps=steps, log_every=max(1, steps), progress=False)
    return model.eval()


@torch.no_grad()
def acceptance_on_text(model: GPT, draft, ids: torch.Tensor, n_windows: int = 64, positions: int = 16,
                       seed: int = 0) -> float:
    """The acceptance rate ``α = Σ_x min(p(x), q(x))`` averaged over the last ``positions`` positions of
    ``n_windows`` random full-context windows of ``ids``: target ``p`` and draft ``q`` both read the
    window up to that position, as in decoding. A counted prediction of speculative decoding's rate."""
    T = model.cfg.block_size
    if not 1 <= positions < T:
        raise ValueError(f"positions must be in 1 .. {T - 1}, got {positions}")
    g = torch.Generator().manual_seed(seed)
    start = torch.randint(0, len(ids) - T, (n_windows,), generator=g)
    w = ids[start[:, None] + torch.arange(T)]                            # (n, T) windows
    p = model(w)[:, -positions:].float().softmax(-1)                     # (n, positions, V)
    q = torch.stack([draft.batch_probs(w[:, :t + 1]) for t in range(T - positions, T)], 1)  # same shape
    return torch.minimum(p, q).sum(-1).mean().item()


@torch.no_grad()
def target_probs(model: GPT, ids: list[int], last: int) -> torch.Tensor:
    """The target's next-token probabilities at the ``last`` positions of ``ids`` (one forward pass,
    the context cropped to the model's block): (last, V)."""
    ctx = torch.tensor(ids[-model.cfg.block_size:])[None]
    return model(ctx)[0, -last:].float().softmax(-1)


@torch.no_grad()
def plain_generate(model: GPT, prompt: list[int], n: int, generator=None) -> tuple[list[int], dict]:
    """Sample ``n`` tokens from the target, one forward pass each; returns (ids, counts)."""
    model.eval()
    ids = list(prompt)
    for _ in range(n):
        ids.append(int(torch.multinomial(target_probs(model, ids, 1)[0], 1, generator=generator)))
    return ids, {"target_passes": n, "tokens": n}


@torch.no_grad()
def speculative_generate(model: GPT, draft, prompt: list[int], n: int, k: int,
                         generator=None, on_step=None) -> tuple[list[int], dict]:
    """Sample ``n`` tokens with speculative decoding: the draft (anything with ``probs(context) -> (V,)``,
    e.g. :class:`BigramDraft`, :class:`GPTDraft`) proposes ``k`` tokens, one target pass scores them all
    (and one more position), :func:`book.nn.decoding.speculative_step` keeps a prefix.

    Returns (ids, counts): ``target_passes``, ``drafted``, ``judged`` (drafts the rule looked at: all up
    to the first rejection), ``accepted`` and ``history``, the running acceptance rate
    ``accepted / judged`` after each step. ``on_step(counts)``, if given, is called after every step
    (a live view, :class:`SpeculativeMonitor`)."""
    if k < 1 or k >= model.cfg.block_size:
        raise ValueError(f"k must be in 1 .. block_size - 1, got {k}")
    model.eval()
    ids, stats = list(prompt), {"target_passes": 0, "drafted": 0, "judged": 0, "accepted": 0,
                             "history": []}
    while len(ids) - len(prompt) < n:
        drafts, q = [], []
        for _ in range(k):
            qi = draft.probs(ids + drafts)
            q.append(qi)
            drafts.append(int(torch.multinomial(qi, 1, generator=generator)))
        p = target_probs(model, ids + drafts, k + 1)                   # one pass: k + 1 positions
        new = speculative_step(p, torch.stack(q), torch.tensor(drafts), generator)
        stats["target_passes"] += 1
        stats["drafted"] += k
        stats["accepted"] += len(new) - 1                  # all but the resampled or bonus token
        stats["judged"] += min(len(new), k)                # a rejection was judged too
        stats["history"].append(stats["accepted"] / stats["judged"])
        ids += new
        stats["generated"] = min(len(ids) - len(prompt), n)
        if on_step is not None:
            on_step(stats)
    ids = ids[:len(prompt) + n]
    stats["tokens"] = n
    return ids, stats


@torch.no_grad()
def decode_step_seconds(model: GPT, batch: int, past: int, repeats: int = 5) -> float:
    """Median seconds of one decode step (one new token per sequence) for ``batch`` sequences whose KV
    caches already hold ``past`` positions."""
    model.eval()
    V = model.cfg.vocab_size
    caches = [[] for _ in model.blocks]
    model(torch.randint(0, V, (batch, past)), caches)
    frozen = [list(c) for c in caches]
    nxt = torch.randint(0, V, (batch, 1))

    def step():
        model(nxt, [list(c) for c in frozen])                          # the cache is not extended
    return time_step(step, "cpu", repeats=repeats, warmup=1)


@torch.no_grad()
def prefill_seconds(model: GPT, batch: int, T: int, repeats: int = 5) -> float:
    """Median seconds of one forward pass over ``T`` prompt tokens per sequence (the prefill)."""
    model.eval()
    x = torch.randint(0, model.cfg.vocab_size, (batch, T))
    return time_step(lambda: model(x, [[] for _ in model.blocks]), "cpu", repeats=repeats, warmup=1)


def draft_cost_ratio(model: GPT, draft, context: list[int], repeats: int = 5, calls: int = 20) -> dict:
    """The draft's cost ``c`` in target passes: the median time of ``calls`` drafting calls (``probs``
    and one sample) over that of ``calls`` target passes (``target_probs`` and one sample), both after
    ``context``. Returns ``{"c", "draft_s", "target_s"}`` (seconds per call)."""
    g = torch.Generator().manual_seed(0)

    def drafting():
        for _ in range(calls):
            torch.multinomial(draft.probs(context), 1, generator=g)

    def verifying():
        for _ in range(calls):
            torch.multinomial(target_probs(model, context, 1)[0], 1, generator=g)
    d = time_step(drafting, "cpu", repeats=repeats, warmup=1) / calls
    t = time_step(verifying, "cpu", repeats=repeats, warmup=1) / calls
    return {"c": d / t, "draft_s": d, "target_s": t}


def wall(fn, *args, **kw):
    """(result, seconds) of one call."""
    t0 = time.perf_counter()
    out = fn(*args, **kw)
    return out, time.perf_counter() - t0


class ThroughputExplorer(Explorer):
    """Measured decode steps against batch size: tokens per second (throughput) and milliseconds per
    step (the latency every sequence sees), the chosen batch marked."""

    defaults = dict(batch=1)
    layout = dict(ncols=2, figsize=(8, 3))

    def __init__(self, seconds: dict, **settings):
        if not seconds:
            raise ValueError("need at least one measured batch size")
        self.seconds = dict(sorted(seconds.items()))
        super().__init__(**settings)

    def _validate(self, s, changed):
        if s["batch"] not in self.seconds:
            raise ValueError(f"batch {s['batch']} was not measured; measured: {list(self.seconds)}")

    def _controls(self):
        import ipywidgets as w
        return {"batch": w.SelectionSlider(options=list(self.seconds), description="batch")}

    def draw(self, **override):
        s = self.resolve(**override)
        b = list(self.seconds)
        sec = [self.seconds[x] for x in b]
        self.figure()
        ax1, ax2 = self.axes
        for ax in (ax1, ax2):
            ax.clear()
        ax1.plot(b, [x / t for x, t in zip(b, sec)], "o-")
        ax2.plot(b, [1e3 * t for t in sec], "o-", color="C1")
        t = self.seconds[s["batch"]]
        ax1.plot([s["batch"]], [s["batch"] / t], "s", color="k", ms=9)
        ax2.plot([s["batch"]], [1e3 * t], "s", color="k", ms=9)
        ax1.set(xscale="log", xlabel="batch (sequences)", ylabel="tokens / s",
                title=f"throughput: {s['batch'] / t:,.0f} tokens/s")
        ax2.set(xscale="log", xlabel="batch (sequences)", ylabel="ms per decode step",
                title=f"latency: {1e3 * t:.2f} ms per token")
        self.fig.tight_layout()
        return {"tokens_per_s": s["batch"] / t, "ms_per_step": 1e3 * t}


class SpeculativeMonitor(Replay):
    """Live view of speculative decoding runs: the acceptance rate so far (left) and the tokens per
    target pass so far (right) against the target passes spent, one line per run. Pass
    ``on_step=monitor.step(name)`` to :func:`speculative_generate`; the figure is redrawn every
    ``redraw_every`` steps of a run and by :meth:`done`; ``draw_seconds`` adds up the time spent drawing
    (to take it out of a run's wall time). ``replay(max_frames, interval)`` replays the redraws (the
    :class:`~book.ui.explorer.Replay` contract)."""

    replay_hint = "pass on_step=monitor.step(name) to speculative_generate first"
    cmaps = ("Blues", "Oranges", "Greens", "Purples")       # runs named "<draft>, ..." share one

    def __init__(self, redraw_every: int = 20):
        if redraw_every < 1:
            raise ValueError(f"redraw_every must be >= 1, got {redraw_every}")
        self.redraw_every = redraw_every
        self.runs: dict[str, list[tuple[float, float]]] = {}   # name -> [(alpha so far, tokens/pass)]
        self.frames: list[dict[str, int]] = []                  # per redraw: name -> points drawn
        self.fig = self.live = None
        self.draw_seconds = 0.0

    def step(self, name: str):
        """The ``on_step`` callback that records run ``name`` (a new name starts a new line)."""
        if name in self.runs:
            raise ValueError(f"run {name!r} is recorded already")
        points = self.runs[name] = []

        def on_step(stats):
            points.append((stats["history"][-1], stats["generated"] / stats["target_passes"]))
            if len(points) % self.redraw_every == 0:
                self.redraw()
        return on_step

    def done(self):
        """Draw the latest state (call after each run)."""
        self.redraw()

    def redraw(self):
        t0 = time.perf_counter()
        self.frames.append({name: len(points) for name, points in self.runs.items()})
        self.draw(len(self.frames) - 1)
        self.show_live()
        self.draw_seconds += time.perf_counter() - t0

    def draw(self, k: int):
        """Redraw ``k``: every run as far as it had got then."""
        import matplotlib.pyplot as plt

        if self.fig is None:
            self.fig, self.axes = plt.subplots(1, 2, figsize=(9, 3), dpi=80)
        shown = self.frames[k]
        # axes fixed by everything recorded, so the replay's frames share them
        longest = max((len(p) for p in self.runs.values()), default=1)
        top = max((x[1] for p in self.runs.values() for x in p), default=2.0) + 0.2
        for ax in self.axes:
            ax.clear()
        groups: dict[str, int] = {}                      # "draft, k=..." -> one colour map per draft
        for name, points in self.runs.items():
            group = name.split(",")[0]
            shade = groups.setdefault(group, 0)
            groups[group] += 1
            cmap = plt.get_cmap(self.cmaps[(list(groups).index(group)) % len(self.cmaps)])
            pts = points[:shown.get(name, 0)]
            if not pts:
                continue
            steps = range(1, len(pts) + 1)
            for ax, col in zip(self.axes, range(2)):
                ax.plot(steps, [p[col] for p in pts], lw=1.2, color=cmap(min(1.0, 0.45 + 0.18 * shade)),
                        label=name)
        self.axes[0].set(xlabel="target passes", ylabel="acceptance rate so far", ylim=(0, 1),
                         xlim=(0, longest + 1))
        self.axes[1].set(xlabel="target passes", ylabel="tokens per target pass so far",
                         ylim=(0.9, top), xlim=(0, longest + 1))
        self.axes[1].axhline(1, color="k", lw=0.8, ls=":")          # plain decoding: one token a pass
        if any(shown.values()):
            self.axes[1].legend(fontsize=7, ncol=2)
        self.fig.tight_layout()

    # -- replay contract
    def _frames(self) -> int:
        return len(self.frames)

    def _draw_frame(self, k: int):
        self.draw(k)
