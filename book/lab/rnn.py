"""The rnn chapter's plumbing: :class:`GradientFlowExplorer` (how far back the last state still depends on an
input, for RNN, GRU and LSTM with a forget-gate bias), truncated backpropagation through time written out
(:func:`train_tbptt`, :func:`stream_loss`).
"""
from __future__ import annotations

import torch
from torch import nn

from book.nn.losses import lm_loss
from book.nn.rnn import CharLSTM, gradient_through_time
from book.ui.explorer import Explorer


# ============================================================================ gradients through time
class GradientFlowExplorer(Explorer):
    """‖∂h_T/∂x_{T-k}‖ against the distance k for a fresh RNN, GRU and LSTM (forget-gate bias 0) and an LSTM
    whose forget-gate bias starts at ``forget_bias``; the dotted line is the cell path alone, σ(b)^k.
    Settings: ``forget_bias``, ``distance`` (how many steps back to draw), ``scale`` (of W_hh), ``seed``."""

    defaults = dict(forget_bias=3.0, distance=50, scale=1.0, seed=0, hidden=32)
    layout = dict(figsize=(7.5, 3.6))
    interval = 900

    def _validate(self, s, changed):
        if not 2 <= int(s["distance"]) <= 400:
            raise ValueError(f"distance must be between 2 and 400 steps, got {s['distance']}")
        if s["scale"] <= 0:
            raise ValueError(f"scale must be positive, got {s['scale']}")
        s["distance"] = int(s["distance"])

    def _controls(self):
        import ipywidgets as w
        return {"forget_bias": w.FloatSlider(min=-2, max=6, step=0.5, description="forget bias"),
                "distance": w.IntSlider(min=5, max=200, step=5, description="steps back"),
                "scale": w.FloatLogSlider(base=2, min=-1, max=2, step=0.25, description="W_hh ×")}

    def curves(self, **override) -> dict:
        """{name: ‖∂h_T/∂x_{T-k}‖ for k = 0 .. distance - 1} (index 0: the last input)."""
        s = self.resolve(**override)
        T, kw = s["distance"], dict(hidden=s["hidden"], seed=s["seed"], scale=s["scale"])
        out = {name: gradient_through_time(kind, T=T, **kw).flip(0)
               for name, kind in (("RNN", "rnn"), ("GRU", "gru"), ("LSTM, bias 0", "lstm"))}
        out[f"LSTM, bias {s['forget_bias']:+g}"] = gradient_through_time(
            "lstm", T=T, forget_bias=s["forget_bias"], **kw).flip(0)
        return out

    def draw(self, **override):
        s = self.resolve(**override)
        self.figure()
        ax = self.axes
        ax.clear()
        c = self.curves(**override)
        for (name, g), style in zip(c.items(), ("-", "-", "-", "--")):
            ax.semilogy(g.numpy() + 1e-30, style, label=name)
        k = torch.arange(s["distance"], dtype=torch.float64)
        path = torch.sigmoid(torch.tensor(s["forget_bias"], dtype=torch.float64)) ** k
        ax.semilogy(k.numpy(), path.numpy() + 1e-30, ":", color="k", label="σ(b)^k, cell path alone")
        ax.set(xlabel="steps back from the last input, k", ylabel="‖∂h_T/∂x_{T−k}‖", ylim=(1e-20, 1e2),
               title=f"forget-gate bias {s['forget_bias']:+g}, W_hh ×{s['scale']:g}")
        ax.legend(fontsize=7, loc="lower left")
        self.fig.tight_layout()
        return {name: float(g[-1]) for name, g in c.items()}


# ============================================================================ truncated BPTT
def streams(ids: torch.Tensor, n: int) -> torch.Tensor:
    """Cut ``ids`` into ``n`` contiguous streams of equal length: (n, len // n). Row b continues where it left
    off at every update, so a state carried from one chunk to the next has read the text before it."""
    L = len(ids) // n
    if L < 2:
        raise ValueError(f"a text of {len(ids)} tokens is too short for {n} streams")
    return ids[:n * L].view(n, L)


@torch.no_grad()
def stream_loss(model: CharLSTM, ids: torch.Tensor, n_streams: int = 8, chunk: int = 256,
                chunks: int | None = None) -> float:
    """Mean next-character loss over ``ids`` read as ``n_streams`` streams, the state carried all the way
    (every prediction sees everything before it in its stream). ``chunks``: read at most that many chunks
    of ``chunk`` characters per stream (None: all of ``ids``)."""
    if chunks is not None and chunks < 1:
        raise ValueError(f"chunks must be >= 1 or None, got {chunks}")
    was = model.training
    model.eval()
    x = streams(ids, n_streams)
    if chunks is not None:
        x = x[:, :chunks * chunk + 1]
    state, total, count = None, 0.0, 0
    for t in range(0, x.shape[1] - 1, chunk):
        inp, tgt = x[:, t:t + chunk], x[:, t + 1:t + chunk + 1]
        inp = inp[:, :tgt.shape[1]]
        logits, state = model(inp, state, return_state=True)
        total += float(lm_loss(logits, tgt)) * tgt.numel()
        count += tgt.numel()
    model.train(was)
    return total / count


def train_tbptt(train_ids: torch.Tensor, k: int, *, vocab: int, hidden: int, batch_tokens: int, updates: int,
                lr: float, seed: int, carry: bool = True) -> CharLSTM:
    """Truncated backpropagation through time: read ``batch_tokens // k`` contiguous streams of the training
    text ``k`` characters at a time, carry the LSTM state from each chunk into the next, and detach it after
    every update, so that gradients flow back at most ``k`` steps. Whatever ``k``, every update sees
    ``batch_tokens`` characters and there are ``updates`` of them: only the truncation length changes.
    ``carry=False`` starts every chunk from a zero state instead (no context beyond the chunk)."""
    if not 1 <= k <= batch_tokens or batch_tokens % k:
        raise ValueError(f"k must divide batch_tokens = {batch_tokens}, got k={k}")
    torch.manual_seed(seed)
    model = CharLSTM(vocab, hidden)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    x = streams(train_ids, batch_tokens // k)
    if x.shape[1] <= updates * k:
        raise ValueError(f"{updates} updates of {k} characters do not fit streams of {x.shape[1]}")
    state = None
    for t in range(0, updates * k, k):
        logits, state = model(x[:, t:t + k], state, return_state=True)
        loss = lm_loss(logits, x[:, t + 1:t + k + 1])
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        state = tuple(s.detach() for s in state) if carry else None   # keep the values, cut the graph
    return model


# ============================================================================ dropout in recurrent networks
def locked_dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """Dropout on a sequence ``x`` (batch, time, features) with **one mask per sequence**, the same at every
    time step (Gal & Ghahramani's variational dropout, applied to the non-recurrent connections). Kept
    units are scaled by ``1 / (1 - p)`` as in ``nn.Dropout``, so the expected value is unchanged."""
    if not 0 <= p < 1:
        raise ValueError(f"p must be in [0, 1), got {p}")
    if x.ndim != 3:
        raise ValueError(f"expected (batch, time, features), got shape {tuple(x.shape)}")
    if not training or p == 0:
        return x
    mask = torch.empty(x.shape[0], 1, x.shape[2], device=x.device, dtype=x.dtype).bernoulli_(1 - p)
    return x * mask / (1 - p)


class DropoutCharLSTM(CharLSTM):
    """:class:`~book.nn.rnn.CharLSTM` with dropout where Zaremba et al. (2014) put it: on the embedding that
    enters the LSTM and on the LSTM's output before the head (and, with ``layers > 1``, between layers,
    ``nn.LSTM(dropout=p)``) -- never on the recurrent connection h_{t-1} -> h_t. ``variational=True`` draws
    one mask per sequence for all time steps (:func:`locked_dropout`) instead of a fresh one per step.
    With ``p = 0``, or in ``eval()`` mode, it computes exactly what a ``CharLSTM`` with its weights does."""

    def __init__(self, vocab_size: int, hidden: int = 192, layers: int = 1, p: float = 0.3,
                 variational: bool = False):
        if not 0 <= p < 1:
            raise ValueError(f"p must be in [0, 1), got {p}")
        super().__init__(vocab_size, hidden, layers)
        self.p, self.variational = p, variational
        if layers > 1:
            self.lstm.dropout = p      # nn.LSTM drops the outputs of every layer but the last

    def _drop(self, x):
        if self.variational:
            return locked_dropout(x, self.p, self.training)
        return nn.functional.dropout(x, self.p, self.training)

    def forward(self, x, state=None, return_state: bool = False):
        if x.ndim != 2 or x.dtype != torch.long:
            raise ValueError("expected token ids of shape (batch, time) and dtype long, "
                             f"got {tuple(x.shape)} {x.dtype}")
        h, state = self.lstm(self._drop(self.emb(x)), state)   # dropout on the input side ...
        logits = self.head(self._drop(h))                      # ... and on the output side only
        return (logits, state) if return_state else logits
