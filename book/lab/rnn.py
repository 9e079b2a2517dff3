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
def stream_loss(model: CharLSTM, ids: torch.Tensor, n_streams: int = 8, chunk: int = 256) -> float:
    """Mean next-character loss over ``ids`` read as ``n_streams`` streams, the state carried all the way
    (every prediction sees everything before it in its stream)."""
    was = model.training
    model.eval()
    x = streams(ids, n_streams)
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
