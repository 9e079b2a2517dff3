"""Self-checks of the rnn chapter's exercises."""
from __future__ import annotations

import torch

from book.check.core import Case, _g, run_cases

__all__ = ['rnn_step', 'lstm_step', 'gru_step', 'perplexity', 'forget_bias_for', 'char_lstm_params']


# ---------------------------------------------------------------------------- Part IV: recurrent networks
def _rnn_case_tensors(g, B, I, H, G):
    return (torch.randn(B, I, generator=g, dtype=torch.float64), torch.randn(B, H, generator=g, dtype=torch.float64),
            torch.randn(G * H, I, generator=g, dtype=torch.float64) * 0.5,
            torch.randn(G * H, H, generator=g, dtype=torch.float64) * 0.5,
            torch.randn(G * H, generator=g, dtype=torch.float64) * 0.1,
            torch.randn(G * H, generator=g, dtype=torch.float64) * 0.1)


def rnn_step(fn) -> None:
    """``fn(x, h, W_ih, W_hh, b_ih, b_hh)`` -> the next hidden state of a vanilla (tanh) RNN, PyTorch layout."""
    g = _g(22)
    cases = []
    for i, (B, I, H) in enumerate([(1, 2, 3), (4, 5, 6), (2, 3, 8)]):   # I != H: a transposed W fails
        x, h, Wi, Wh, bi, bh = _rnn_case_tensors(g, B, I, H, 1)
        cases.append(Case((x, h, Wi, Wh, bi, bh), torch.rnn_tanh_cell(x, h, Wi, Wh, bi, bh), public=i < 2,
                          label=f"B={B}, I={I}, H={H}"))
    run_cases("rnn_step", fn, cases, hint="tanh(x @ W_ih.T + b_ih + h @ W_hh.T + b_hh)")


def lstm_step(fn) -> None:
    """``fn(x, h, c, W_ih, W_hh, b_ih, b_hh)`` -> (h', c') of an LSTM cell, gates in PyTorch's order i, f, g, o."""
    g = _g(23)
    cases = []
    for i, (B, I, H) in enumerate([(1, 3, 2), (3, 4, 5), (2, 6, 7)]):
        x, h, Wi, Wh, bi, bh = _rnn_case_tensors(g, B, I, H, 4)
        c = torch.randn(B, H, generator=g, dtype=torch.float64)
        cases.append(Case((x, h, c, Wi, Wh, bi, bh), torch.lstm_cell(x, (h, c), Wi, Wh, bi, bh), public=i < 2,
                          label=f"B={B}, I={I}, H={H}"))
    run_cases("lstm_step", fn, cases, hint="split the 4H pre-activations into i, f, g, o; c' = σ(f)c + σ(i)tanh(g); "
              "h' = σ(o)tanh(c')")


def gru_step(fn) -> None:
    """``fn(x, h, W_ih, W_hh, b_ih, b_hh)`` -> h' of a GRU cell, gates in PyTorch's order r, z, n."""
    g = _g(24)
    cases = []
    for i, (B, I, H) in enumerate([(2, 4, 3), (3, 2, 5), (5, 7, 4)]):   # not the shapes of rnn_step's cases
        x, h, Wi, Wh, bi, bh = _rnn_case_tensors(g, B, I, H, 3)
        cases.append(Case((x, h, Wi, Wh, bi, bh), torch.gru_cell(x, h, Wi, Wh, bi, bh), public=i < 2,
                          label=f"B={B}, I={I}, H={H}"))
    run_cases("gru_step", fn, cases, hint="r and z from both inputs; n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn)); "
              "h' = (1 − z) n + z h")


def perplexity(fn) -> None:
    """``fn(mean_loss)`` -> the perplexity exp(loss) of a language model with that mean cross-entropy (nats)."""
    import math
    cases = [Case((math.log(65),), 65.0, label="uniform over 65 characters"), Case((0.0,), 1.0),
             Case((1.5,), math.exp(1.5), public=False), Case((2.2,), math.exp(2.2), public=False)]
    run_cases("perplexity", fn, cases, hint="perplexity = e^loss: the effective number of equally likely choices")


def forget_bias_for(fn) -> None:
    """``fn(keep, k)`` -> the forget-gate bias b at which the LSTM's cell path alone keeps the share ``keep`` of
    the gradient k steps back at initialisation (f_t ≈ σ(b) at every step)."""
    from book.check._reference import _forget_bias_ref
    cases = [Case((keep, k), _forget_bias_ref(keep, k), public=i < 3, label=f"keep={keep}, k={k}")
             for i, (keep, k) in enumerate([(0.5, 1), (0.1, 50), (0.5, 100), (0.01, 10), (0.9, 20), (0.25, 2)])]
    run_cases("forget_bias_for", fn, cases, hint="solve σ(b)^k = keep for σ(b) first, then invert the sigmoid")


def char_lstm_params(fn) -> None:
    """``fn(V, H, layers)`` -> the number of parameters of ``CharLSTM(V, H, layers)`` (embedding, LSTM, head)."""
    from book.check._reference import _char_lstm_params_ref
    cases = [Case(a, _char_lstm_params_ref(*a), public=i < 2, label=f"V={a[0]}, H={a[1]}, layers={a[2]}")
             for i, a in enumerate([(65, 192, 1), (65, 512, 2), (10, 3, 1), (100, 7, 3)])]
    run_cases("char_lstm_params", fn, cases, hint="per layer 4 gates, each with an input matrix, a recurrent "
              "matrix and two bias vectors; every layer's input has H features here")
