"""Plumbing of the ``inference`` chapter: the text split, a bigram draft model, speculative and plain
generation that count the target's forward passes, decode-step timings, and the throughput view."""
from __future__ import annotations

import time

import torch

from book.hardware import time_step
from book.lab.pretraining import RECIPE, split_regions
from book.nn.decoding import speculative_step
from book.nn.gpt import GPT
from book.ui import Explorer


def inference_split(ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train, validation, test) ids: the shipped checkpoint's pretraining text and its two kinds of
    held-out chunks (:func:`book.lab.pretraining.split_regions`), so neither held-out part was seen."""
    region = split_regions(len(ids), RECIPE["chunk"], RECIPE["every"])
    return ids[region == 0], ids[region == 1], ids[region == 2]


class BigramDraft:
    """A draft model that costs nothing: next-token probabilities given the last token, counted on the
    training text with add-one smoothing (so every token has ``q > 0``)."""

    def __init__(self, train_ids: torch.Tensor, vocab_size: int):
        counts = torch.ones(vocab_size, vocab_size)
        counts.index_put_((train_ids[:-1], train_ids[1:]), torch.ones(len(train_ids) - 1), accumulate=True)
        self.table = counts / counts.sum(1, keepdim=True)               # (V, V): row = previous token

    def probs(self, last: int) -> torch.Tensor:
        return self.table[last]


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
def speculative_generate(model: GPT, draft: BigramDraft, prompt: list[int], n: int, k: int,
                         generator=None) -> tuple[list[int], dict]:
    """Sample ``n`` tokens with speculative decoding: the draft proposes ``k`` tokens, one target pass
    scores them all (and one more position), :func:`book.nn.decoding.speculative_step` keeps a prefix.

    Returns (ids, counts): ``target_passes``, ``drafted``, ``judged`` (drafts the rule looked at: all up
    to the first rejection), ``accepted`` and ``history``, the running acceptance rate
    ``accepted / judged`` after each step."""
    if k < 1 or k >= model.cfg.block_size:
        raise ValueError(f"k must be in 1 .. block_size - 1, got {k}")
    model.eval()
    ids, stats = list(prompt), {"target_passes": 0, "drafted": 0, "judged": 0, "accepted": 0,
                             "history": []}
    while len(ids) - len(prompt) < n:
        drafts, q = [], []
        for _ in range(k):
            qi = draft.probs(drafts[-1] if drafts else ids[-1])
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
