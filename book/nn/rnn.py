"""Recurrent cells written out with exactly PyTorch's weight layout, so their outputs can be compared
with nn.RNN / nn.LSTM / nn.GRU after copying the weights (tests/chapters/test_rnn.py).

Chapter: taught in ``rnn``.

Gate order as in PyTorch: LSTM rows of weight_ih/weight_hh are [input, forget, cell, output];
GRU rows are [reset, update, new].
"""
from __future__ import annotations

import math

import torch
from torch import nn


class _Cell(nn.Module):
    gates = 1

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        k = 1 / math.sqrt(hidden_size)  # PyTorch's default: U(-1/sqrt(H), 1/sqrt(H))
        G = self.gates * hidden_size
        self.weight_ih = nn.Parameter(torch.empty(G, input_size).uniform_(-k, k))
        self.weight_hh = nn.Parameter(torch.empty(G, hidden_size).uniform_(-k, k))
        self.bias_ih = nn.Parameter(torch.empty(G).uniform_(-k, k))
        self.bias_hh = nn.Parameter(torch.empty(G).uniform_(-k, k))

    def copy_from(self, module: nn.Module) -> "_Cell":
        """Take the layer-0 weights of an nn.RNN / nn.LSTM / nn.GRU (or *Cell) of the same sizes."""
        suffix = "_l0" if hasattr(module, "weight_ih_l0") else ""
        with torch.no_grad():
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                src = getattr(module, name + suffix)
                if src.shape != getattr(self, name).shape:
                    raise ValueError(f"{name}: shape {tuple(src.shape)} does not match "
                                     f"{tuple(getattr(self, name).shape)}")
                getattr(self, name).copy_(src)
        return self

    def _check(self, x, h):
        if x.ndim != 2 or x.shape[1] != self.input_size:
            raise ValueError(f"x must have shape (batch, {self.input_size}), got {tuple(x.shape)}")
        if h.shape != (x.shape[0], self.hidden_size):
            raise ValueError(f"the state must have shape ({x.shape[0]}, {self.hidden_size}), got {tuple(h.shape)}")


class RNNCell(_Cell):
    """h' = tanh(x W_ihᵀ + b_ih + h W_hhᵀ + b_hh)"""

    def forward(self, x, h):
        self._check(x, h)
        return torch.tanh(x @ self.weight_ih.T + self.bias_ih + h @ self.weight_hh.T + self.bias_hh)


class LSTMCell(_Cell):
    """i, f, o = σ(·), g = tanh(·);  c' = f ⊙ c + i ⊙ g;  h' = o ⊙ tanh(c')."""

    gates = 4

    def forward(self, x, state):
        h, c = state
        self._check(x, h)
        pre = x @ self.weight_ih.T + self.bias_ih + h @ self.weight_hh.T + self.bias_hh   # (B, 4H)
        i, f, g, o = pre.chunk(4, dim=1)                                                   # 4 x (B, H)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, c


class GRUCell(_Cell):
    """r, z = σ(·);  n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn));  h' = (1 − z) ⊙ n + z ⊙ h."""

    gates = 3

    def forward(self, x, h):
        self._check(x, h)
        xr, xz, xn = (x @ self.weight_ih.T + self.bias_ih).chunk(3, dim=1)
        hr, hz, hn = (h @ self.weight_hh.T + self.bias_hh).chunk(3, dim=1)
        r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
        n = torch.tanh(xn + r * hn)
        return (1 - z) * n + z * h


def unroll(cell: _Cell, xs: torch.Tensor, state=None):
    """Run ``cell`` over xs (B, T, I); returns the outputs (B, T, H) and the last state."""
    B = xs.shape[0]
    zeros = xs.new_zeros(B, cell.hidden_size)
    state = state if state is not None else ((zeros, zeros.clone()) if isinstance(cell, LSTMCell) else zeros)
    outs = []
    for t in range(xs.shape[1]):
        state = cell(xs[:, t], state)
        outs.append(state[0] if isinstance(state, tuple) else state)
    return torch.stack(outs, 1), state


def gradient_through_time(kind: str = "rnn", T: int = 50, hidden: int = 32, seed: int = 0, scale: float = 1.0):
    """‖∂h_T / ∂x_t‖ for t = 1..T: how much the last state still depends on each earlier input.

    A vanilla RNN multiplies by (a tanh derivative × W_hh) at every step, so the dependence usually
    decays geometrically; the LSTM's additive cell state lets it survive much longer.
    """
    cls = {"rnn": RNNCell, "lstm": LSTMCell, "gru": GRUCell}
    if kind not in cls:
        raise ValueError(f"kind must be one of {list(cls)}, got {kind!r}")
    torch.manual_seed(seed)
    cell = cls[kind](hidden, hidden)
    with torch.no_grad():
        cell.weight_hh.mul_(scale)
    xs = torch.randn(1, T, hidden, requires_grad=True)
    out, _ = unroll(cell, xs)
    out[0, -1].sum().backward()
    return xs.grad[0].norm(dim=1)   # (T,)


class CharLSTM(nn.Module):
    """Embedding → nn.LSTM → linear: next-character logits for every position."""

    def __init__(self, vocab_size: int, hidden: int = 192, layers: int = 1):
        super().__init__()
        self.emb = nn.Embedding(vocab_size, hidden)
        self.lstm = nn.LSTM(hidden, hidden, layers, batch_first=True)
        self.head = nn.Linear(hidden, vocab_size)

    def forward(self, x, state=None, return_state: bool = False):
        if x.ndim != 2 or x.dtype != torch.long:
            raise ValueError("expected token ids of shape (batch, time) and dtype long, "
                             f"got {tuple(x.shape)} {x.dtype}")
        h, state = self.lstm(self.emb(x), state)   # (B, T, H)
        logits = self.head(h)                        # (B, T, V)
        return (logits, state) if return_state else logits

    @torch.no_grad()
    def generate(self, start: torch.Tensor, n: int, temperature: float = 1.0,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Sample ``n`` more tokens after ``start`` (1-D ids), carrying the LSTM state (no re-reading)."""
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        was = self.training
        self.eval()
        device = next(self.parameters()).device
        logits, state = self(start.view(1, -1).to(device), return_state=True)
        out = []
        for _ in range(n):
            probs = torch.softmax(logits[0, -1].float() / temperature, -1).cpu()
            nxt = torch.multinomial(probs, 1, generator=generator)
            out.append(int(nxt))
            logits, state = self(nxt.view(1, 1).to(device), state, return_state=True)
        self.train(was)
        return torch.tensor(out)
