"""The seq2seq chapter: a generated task (reverse a string), an encoder-decoder GRU with and without
Bahdanau attention, teacher-forced training, greedy decoding, scores by length, trivial baselines, and
:class:`AlignmentMonitor`, the live view of the attention weights while the model trains (a Replay).

The one change between the two models: the decoder's context vector. Without attention it is the
encoder's last state at every step (the fixed-size bottleneck of Sutskever et al. 2014 and Cho et al.
2014); with attention it is recomputed at every step as a weighted average of all encoder states
(Bahdanau et al. 2015), with :func:`book.nn.attention.additive_attention`.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from book.nn.attention import additive_attention
from book.ui.explorer import Replay

PAD, BOS, EOS = 0, 1, 2
LETTERS = "abcdefghijkl"
TOKENS = ["_", "<", ">"] + list(LETTERS)   # id -> character; "_" padding, "<" start, ">" end
VOCAB = len(TOKENS)


# ============================================================================ the data
@dataclass
class Pairs:
    """Source strings and their targets as padded id tensors: src (N, S), tgt (N, S + 1) ending in EOS."""
    src: torch.Tensor
    tgt: torch.Tensor

    @property
    def lengths(self) -> torch.Tensor:
        return (self.src != PAD).sum(1)

    def __len__(self):
        return len(self.src)

    def subset(self, keep: torch.Tensor) -> "Pairs":
        return Pairs(self.src[keep], self.tgt[keep])


def encode(s: str, width: int) -> list[int]:
    if len(s) > width:
        raise ValueError(f"{s!r} is longer than the width {width}")
    return [TOKENS.index(c) for c in s] + [PAD] * (width - len(s))


def out_ids(chars: str) -> list[int]:
    return [TOKENS.index(c) for c in chars]


def decode(ids) -> str:
    """Ids to text, stopping at the first end token; padding is dropped."""
    out = []
    for i in (ids.tolist() if isinstance(ids, torch.Tensor) else ids):
        if i == EOS:
            break
        if i != PAD:
            out.append(TOKENS[i])
    return "".join(out)


def make_reversal(n: int, min_len: int, max_len: int, seed: int, width: int | None = None) -> Pairs:
    """``n`` random strings over ``LETTERS``, lengths uniform in [min_len, max_len]; target: reversed."""
    if not 1 <= min_len <= max_len:
        raise ValueError(f"need 1 <= min_len <= max_len, got {min_len}, {max_len}")
    width = width or max_len
    if width < max_len:
        raise ValueError(f"width {width} is less than max_len {max_len}")
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(min_len, max_len + 1, (n,), generator=g)
    letters = torch.randint(3, VOCAB, (n, width), generator=g)
    pos = torch.arange(width)
    src = torch.where(pos < lengths[:, None], letters, PAD)
    tgt = torch.full((n, width + 1), PAD)
    for i, L in enumerate(lengths.tolist()):
        tgt[i, :L] = src[i, :L].flip(0)
        tgt[i, L] = EOS
    return Pairs(src, tgt)


def make_splits(n_train: int, n_val: int, n_test: int, min_len: int, max_len: int, seed: int = 0):
    """Train / validation / test sets of the reversal task, lengths in [min_len, max_len] for all three.
    Validation and test strings that also occur in the training set are dropped: they measure unseen
    strings only (it matters for the shortest lengths, where there are few distinct strings)."""
    train = make_reversal(n_train, min_len, max_len, seed)
    seen = {tuple(r) for r in train.src.tolist()}
    out = [train]
    for k, n in ((1, n_val), (2, n_test)):
        d = make_reversal(n, min_len, max_len, seed + 1000 * k)
        keep = torch.tensor([tuple(r) not in seen for r in d.src.tolist()])
        out.append(d.subset(keep))
    return tuple(out)


# ============================================================================ the model
class Seq2Seq(nn.Module):
    """Encoder GRU → decoder GRU cell; ``attention=False``: the context is the encoder's last state at every
    step; ``attention=True``: the context is re-weighted at every step by additive attention."""

    def __init__(self, vocab: int = VOCAB, emb: int = 32, hidden: int = 64, attention: bool = True):
        super().__init__()
        self.attention, self.hidden = attention, hidden
        self.src_emb = nn.Embedding(vocab, emb, padding_idx=PAD)
        self.tgt_emb = nn.Embedding(vocab, emb)
        self.encoder = nn.GRU(emb, hidden, batch_first=True)
        self.decoder = nn.GRU(emb + hidden, hidden, batch_first=True)   # stepped with its cell below
        self.out = nn.Linear(2 * hidden, vocab)
        k = 1 / math.sqrt(hidden)
        self.W_q = nn.Parameter(torch.empty(hidden, hidden).uniform_(-k, k))   # additive attention's
        self.W_k = nn.Parameter(torch.empty(hidden, hidden).uniform_(-k, k))   # weights (unused when
        self.v = nn.Parameter(torch.empty(hidden).uniform_(-k, k))             # attention=False)
        if not attention:
            for p in (self.W_q, self.W_k, self.v):
                p.requires_grad_(False)

    def encode(self, src):
        """Encoder states (B, S, H), the last real state of each sequence (B, H) and the mask (B, S)."""
        mask = src != PAD
        lengths = mask.sum(1).clamp(min=1).cpu()
        packed = pack_padded_sequence(self.src_emb(src), lengths, batch_first=True, enforce_sorted=False)
        states, last = self.encoder(packed)
        states, _ = nn.utils.rnn.pad_packed_sequence(states, batch_first=True, total_length=src.shape[1])
        return states, last[0], mask

    def step(self, y_prev, s, states, last, mask, keys=None):
        """One decoder step: previous token (B,), state (B, H) -> logits (B, V), new state, weights (B, S).
        ``keys``: the encoder states projected by W_k, computed once per batch."""
        if self.attention:
            context, weights = additive_attention(s, states, self.W_q, self.W_k, self.v, mask, keys)
        else:
            context, weights = last, None                  # the same vector at every step
        d = self.decoder
        s = torch.gru_cell(torch.cat([self.tgt_emb(y_prev), context], 1), s,
                           d.weight_ih_l0, d.weight_hh_l0, d.bias_ih_l0, d.bias_hh_l0)
        return self.out(torch.cat([s, context], 1)), s, weights

    def forward(self, src, tgt):
        """Teacher forcing: the decoder reads the true previous token. Returns logits (B, T, V)."""
        states, last, mask = self.encode(src)
        y_prev = torch.cat([torch.full_like(tgt[:, :1], BOS), tgt[:, :-1]], 1)   # (B, T) inputs
        if not self.attention:
            # Nothing a step reads depends on the step before except the state, so PyTorch's GRU runs
            # all steps in one call: the same equations as step(), looped in C++ instead of Python.
            context = last.unsqueeze(1).expand(-1, tgt.shape[1], -1)
            s, _ = self.decoder(torch.cat([self.tgt_emb(y_prev), context], 2), last.unsqueeze(0).contiguous())
            return self.out(torch.cat([s, context], 2))
        keys = states @ self.W_k.T
        s, logits = last, []
        for t in range(tgt.shape[1]):
            out, s, _ = self.step(y_prev[:, t], s, states, last, mask, keys)
            logits.append(out)
        return torch.stack(logits, 1)

    @torch.no_grad()
    def greedy(self, src, steps: int | None = None):
        """Free-running greedy decoding: each step reads the model's own previous argmax.
        Returns the ids (B, steps) and the attention weights (B, steps, S) (None without attention)."""
        was = self.training
        self.eval()
        steps = steps or src.shape[1] + 1
        states, last, mask = self.encode(src)
        keys = states @ self.W_k.T
        s, y = last, torch.full((src.shape[0],), BOS, device=src.device)
        ids, ws = [], []
        for _ in range(steps):
            out, s, w = self.step(y, s, states, last, mask, keys)
            y = out.argmax(1)
            ids.append(y)
            ws.append(w)
        self.train(was)
        return torch.stack(ids, 1), (torch.stack(ws, 1) if self.attention else None)


def seq_loss(logits, tgt):
    """Cross-entropy per target token, padding ignored."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1), ignore_index=PAD)


# ============================================================================ scores and baselines
def scores(pred: torch.Tensor, data: Pairs) -> dict:
    """Per-token accuracy (over the target tokens, the end token included) and exact match (the whole target
    right, end token included), overall and by source length."""
    T = data.tgt.shape[1]
    pred = pred[:, :T]
    if pred.shape[1] < T:
        pred = torch.cat([pred, pred.new_full((len(pred), T - pred.shape[1]), PAD)], 1)
    real = data.tgt != PAD
    right = (pred == data.tgt) & real
    tok = right.sum(1).float() / real.sum(1)
    exact = (right.sum(1) == real.sum(1)).float()
    L = data.lengths
    by_len = {int(k): (float(tok[L == k].mean()), float(exact[L == k].mean())) for k in L.unique()}
    return dict(token=float(right.sum() / real.sum()), exact=float(exact.mean()), by_length=by_len)


def copy_baseline(data: Pairs) -> torch.Tensor:
    """Predict the input unchanged (then the end token)."""
    out = torch.full_like(data.tgt, PAD)
    out[:, :data.src.shape[1]] = data.src
    out[torch.arange(len(data)), data.lengths] = EOS
    return out


def majority_baseline(train: Pairs, data: Pairs) -> torch.Tensor:
    """Predict the most frequent letter of the training targets at every position, then the end token
    (the true length is given to it for free)."""
    letters = train.tgt[train.tgt > EOS]
    top = int(torch.bincount(letters).argmax())
    out = torch.where(torch.arange(data.tgt.shape[1]) < data.lengths[:, None], top, PAD)
    out[torch.arange(len(data)), data.lengths] = EOS
    return out


# ============================================================================ training
@dataclass
class Run:
    """A trained model and what was logged: the step, training loss and validation exact match."""
    model: Seq2Seq
    step: list = field(default_factory=list)
    train_loss: list = field(default_factory=list)
    val_exact: list = field(default_factory=list)
    seconds: float = 0.0


def train_seq2seq(train: Pairs, val: Pairs, *, attention: bool, seed: int, steps: int, batch: int = 64,
                  lr: float = 3e-3, emb: int = 32, hidden: int = 64, log_every: int = 100, on_log=None,
                  device="cpu") -> Run:
    """Adam with teacher forcing on random batches of ``train``; every ``log_every`` steps the validation
    exact match under greedy decoding is logged and ``on_log(run, model)`` called (e.g. the live view)."""
    torch.manual_seed(seed)
    model = Seq2Seq(VOCAB, emb, hidden, attention).to(device)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    g = torch.Generator().manual_seed(seed)
    run, t0, total = Run(model), time.perf_counter(), torch.zeros(())
    vsrc = val.src.to(device)
    for step in range(1, steps + 1):
        idx = torch.randint(len(train), (batch,), generator=g)
        src, tgt = train.src[idx].to(device), train.tgt[idx].to(device)
        loss = seq_loss(model(src, tgt), tgt)
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        total = total + loss.detach().cpu()
        if step % log_every == 0 or step == steps:
            n = step - (run.step[-1] if run.step else 0)
            run.step.append(step)
            run.train_loss.append(float(total) / n)
            total = torch.zeros(())
            run.val_exact.append(scores(model.greedy(vsrc)[0].cpu(), val)["exact"])
            if on_log is not None:
                on_log(run, model)
    run.seconds = time.perf_counter() - t0
    return run


def by_length_table(score: dict, lengths) -> tuple[list[float], list[float]]:
    """(per-token accuracy, exact match) for each length in ``lengths`` (NaN where none was scored)."""
    tok = [score["by_length"].get(k, (math.nan, math.nan))[0] for k in lengths]
    ex = [score["by_length"].get(k, (math.nan, math.nan))[1] for k in lengths]
    return tok, ex


# ============================================================================ the live view
class AlignmentMonitor(Replay):
    """Live view while an attention model trains: left, the validation exact match so far; right, the
    attention weights of one fixed validation string under greedy decoding (rows: output steps, columns:
    input positions). Pass ``on_log=monitor.update`` to :func:`train_seq2seq`; ``replay()`` plays it back."""

    replay_hint = "pass on_log=monitor.update to train_seq2seq first"

    def __init__(self, src: torch.Tensor, title: str = "attention"):
        if src.ndim != 1:
            raise ValueError(f"give one source string as a 1-D id tensor, got shape {tuple(src.shape)}")
        self.src, self.title = src, title
        self.L = int((src != PAD).sum())
        self.frames: list[tuple[int, float, torch.Tensor, str]] = []
        self.curve: list[tuple[int, float]] = []
        self.fig = self.live = None

    def update(self, run: Run, model: Seq2Seq):
        ids, w = model.greedy(self.src[None].to(next(model.parameters()).device), self.L + 1)
        if w is None:
            raise ValueError("AlignmentMonitor needs a model with attention=True")
        self.curve.append((run.step[-1], run.val_exact[-1]))
        chars = "".join(TOKENS[i] for i in ids[0].tolist())
        self.frames.append((run.step[-1], run.val_exact[-1], w[0, :, :self.L].cpu(), chars))
        self.draw(len(self.frames) - 1)
        self.show_live()

    def draw(self, k: int):
        import matplotlib.pyplot as plt

        if self.fig is None:
            self.fig, (self.ax_curve, self.ax_map) = plt.subplots(
                1, 2, figsize=(10, 3.6), dpi=80, gridspec_kw={"width_ratios": [1, 1.2]})
        step, exact, w, out = self.frames[k]
        self.ax_curve.clear()
        xs, ys = zip(*self.curve[:k + 1])
        self.ax_curve.plot(xs, ys, "o-", color="tab:green")
        self.ax_curve.set(xlabel="training step", ylabel="validation exact match", ylim=(-0.02, 1.02),
                          xlim=(0, max(s for s, _ in self.curve) * 1.05))
        self.ax_map.clear()
        self.ax_map.imshow(w.numpy(), cmap="Blues", vmin=0, vmax=1, aspect="auto")
        src = decode(self.src)
        self.ax_map.set_xticks(range(self.L), list(src))
        self.ax_map.set_yticks(range(len(out)), ["end" if ch == TOKENS[EOS] else ch for ch in out])
        self.ax_map.set(xlabel="input position", ylabel="output step (greedy)")
        self.ax_map.set_title(f"{self.title}, step {step}: reads {src!r}, writes {decode(out_ids(out))!r}",
                              fontsize=9)
        self.fig.tight_layout()

    # -- replay contract
    def _frames(self) -> int:
        return len(self.frames)

    def _draw_frame(self, k: int):
        self.draw(k)


# ============================================================================ reading a trained model
@torch.no_grad()
def teacher_forced_accuracy(model: Seq2Seq, data: Pairs) -> float:
    """Per-token accuracy when every step reads the true previous token (as in training), not its own."""
    was = model.training
    model.eval()
    pred = model(data.src, data.tgt).argmax(-1)
    model.train(was)
    real = data.tgt != PAD
    return float(((pred == data.tgt) & real).sum() / real.sum())


def reversal_alignment(weights: torch.Tensor, data: Pairs, within: int = 0) -> float:
    """Share of output letters (step t < L) whose largest attention weight falls on input position L − 1 − t
    (the letter a reversal copies there), or at most ``within`` positions from it. ``weights``: (N, steps, S)
    from :meth:`Seq2Seq.greedy`."""
    hits, total = 0, 0
    for w, L in zip(weights, data.lengths.tolist()):
        t = torch.arange(L)
        hits += int(((w[t, :].argmax(1) - (L - 1 - t)).abs() <= within).sum())
        total += L
    return hits / total


def alignment_offsets(weights: torch.Tensor, data: Pairs) -> dict[int, float]:
    """Share of output letters (step t < L) by the offset of their largest attention weight from the mirrored
    input position L − 1 − t: ``{-1: one position earlier, 0: on it, 1: one position later, ...}``.
    ``weights``: (N, steps, S) from :meth:`Seq2Seq.greedy`."""
    counts: dict[int, int] = {}
    total = 0
    for w, L in zip(weights, data.lengths.tolist()):
        t = torch.arange(L)
        off = w[t, :].argmax(1) - (L - 1 - t)                  # (L,): read position minus the mirrored one
        for o, n in zip(*off.unique(return_counts=True)):
            counts[int(o)] = counts.get(int(o), 0) + int(n)
        total += L
    return {o: n / total for o, n in sorted(counts.items())}


def alignment_chance(data: Pairs, within: int = 0) -> float:
    """What :func:`reversal_alignment` gives when the largest weight falls on a uniformly random input letter."""
    hits, total = 0.0, 0
    for L in data.lengths.tolist():
        m = torch.arange(L)                                    # the mirrored positions, one per output letter
        lo, hi = (m - within).clamp(min=0), (m + within).clamp(max=L - 1)
        hits += float(((hi - lo + 1).double() / L).sum())
        total += L
    return hits / total
