"""Recurrent cells written out with exactly PyTorch's weight layout, so their outputs can be compared
with nn.RNN / nn.LSTM / nn.GRU after copying the weights (tests/chapters/test_rnn.py); the gradient through
time of a freshly initialised cell; a character LSTM; and :class:`NGram`, the count-based baseline a
neural language model has to beat.

Chapter: taught in ``rnn``; ``NGram`` is the baseline again in ``gpt``.

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


def gradient_through_time(kind: str = "rnn", T: int = 50, hidden: int = 32, seed: int = 0, scale: float = 1.0,
                          forget_bias: float = 0.0):
    """‖∂h_T / ∂x_t‖ for t = 1..T: how much the last state still depends on each earlier input.

    A vanilla RNN multiplies by (a tanh derivative × W_hh) at every step, so the dependence decays
    geometrically. Along the LSTM's cell state each step back multiplies by the forget gate f_t; at
    PyTorch's initialisation f_t ≈ σ(0) = 0.5, so that decays geometrically too, only more slowly.
    ``forget_bias`` (LSTM only) is added to the forget gate's bias, as Jozefowicz et al. (2015) recommend
    (their value: 1): f_t ≈ σ(forget_bias) moves towards 1 and the dependence survives many steps.
    """
    cls = {"rnn": RNNCell, "lstm": LSTMCell, "gru": GRUCell}
    if kind not in cls:
        raise ValueError(f"kind must be one of {list(cls)}, got {kind!r}")
    if forget_bias and kind != "lstm":
        raise ValueError(f"forget_bias is the LSTM's forget-gate bias; {kind!r} has no forget gate")
    with torch.random.fork_rng(devices=[]):        # seed locally: the caller's random stream is left alone
        torch.manual_seed(seed)
        cell = cls[kind](hidden, hidden)
        with torch.no_grad():
            cell.weight_hh.mul_(scale)
            if forget_bias:
                cell.bias_ih[hidden:2 * hidden] += forget_bias   # rows [i, f, g, o]: the f block
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


class NGram:
    """A count-based n-gram language model: the next token's probability given the ``n - 1`` before it,
    estimated by counting in the training text (``n = 1``: unigram, letter frequencies; ``n = 2``: bigram).

    Contexts seen rarely or never are handled by Witten-Bell interpolation with the next shorter context::

        P_k(c | h) = (N(h c) + T(h) P_{k-1}(c | h')) / (N(h) + T(h))

    where ``h`` holds the last ``k`` tokens, ``h'`` the last ``k - 1``, ``N`` counts occurrences in the
    training text and ``T(h)`` the distinct tokens seen after ``h``; a context never seen keeps
    ``P_{k-1}``, and below the unigram is the uniform ``1 / vocab_size``. No parameter to tune.
    """

    def __init__(self, train_ids: torch.Tensor, n: int, vocab_size: int):
        if n < 1:
            raise ValueError(f"n must be at least 1 (1 = unigram), got {n}")
        if vocab_size ** n >= 2 ** 62:
            raise ValueError(f"vocab_size ** n = {vocab_size}**{n} does not fit the int64 keys; use a smaller n")
        if len(train_ids) <= n:
            raise ValueError(f"a training text of {len(train_ids)} tokens is too short for n={n}")
        self.n, self.vocab_size = n, vocab_size
        train_ids = train_ids.long().cpu()
        self.tables = []       # per context length k = 0 .. n-1
        for k in range(n):
            h = self._contexts(train_ids, k)                           # context of each position t >= k
            pairs, n_pair = torch.unique(h * vocab_size + train_ids[k:], return_counts=True)
            ctx, n_ctx = torch.unique(h, return_counts=True)           # N(h)
            _, t_ctx = torch.unique(pairs // vocab_size, return_counts=True)   # T(h), same order as ctx
            self.tables.append((pairs, n_pair, ctx, n_ctx, t_ctx))

    def _contexts(self, ids: torch.Tensor, k: int) -> torch.Tensor:
        """One integer per position t >= k: the k tokens ids[t-k:t] read as a number in base vocab_size."""
        key = torch.zeros(len(ids) - k, dtype=torch.long)
        for j in range(k):
            key = key * self.vocab_size + ids[j:len(ids) - k + j]
        return key

    @staticmethod
    def _count(keys, counts, query):
        i = torch.searchsorted(keys, query).clamp(max=len(keys) - 1)
        return torch.where(keys[i] == query, counts[i], 0)

    def probabilities(self, ids: torch.Tensor) -> torch.Tensor:
        """(n, len(ids) - 1): the probability of ids[t], t = 1 .. len - 1, under the orders 1 .. n.

        Order k + 1 uses the k tokens before t; near the start, where fewer exist, it keeps order k."""
        ids = ids.long().cpu()
        if ids.ndim != 1 or len(ids) < 2:
            raise ValueError(f"expected a 1-D sequence of at least 2 tokens, got shape {tuple(ids.shape)}")
        p = torch.full((len(ids),), 1.0 / self.vocab_size, dtype=torch.float64)
        out = []
        for k, (pairs, n_pair, ctx, n_ctx, t_ctx) in enumerate(self.tables):
            if k < len(ids):
                h = self._contexts(ids, k)
                n_hc = self._count(pairs, n_pair, h * self.vocab_size + ids[k:]).double()
                n_h = self._count(ctx, n_ctx, h).double()
                t_h = self._count(ctx, t_ctx, h).double()
                lower = p[k:]
                p = torch.cat([p[:k], torch.where(n_h > 0, (n_hc + t_h * lower) / (n_h + t_h).clamp(min=1),
                                                  lower)])
            out.append(p[1:])
        return torch.stack(out)

    def cross_entropy(self, ids: torch.Tensor) -> list[float]:
        """Mean -log p (nats per token) of ids[1:] for the orders 1 .. n: compare with a model's loss on
        the same targets (:func:`book.data.text.windows` predicts exactly ``ids[1:]``)."""
        return (-self.probabilities(ids).log().mean(1)).tolist()
