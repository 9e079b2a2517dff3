"""Self-checks of the attention_math chapter's exercises."""
from __future__ import annotations

import torch

from book.check.core import Case, _g, run_cases

__all__ = ['attention_weights', 'softmax_temperature', 'causal_mask', 'attention_output']


def attention_weights(fn) -> None:
    """``fn(q, k)`` -> softmax(q kᵀ / √d) over the keys, for q (Tq, d) and k (Tk, d)."""
    g = _g(14)
    cases = []
    for i, (tq, tk, d) in enumerate([(1, 3, 2), (4, 4, 8), (3, 5, 64)]):
        q, k = torch.randn(tq, d, generator=g), torch.randn(tk, d, generator=g)
        cases.append(Case((q, k), torch.softmax(q @ k.T / d ** 0.5, -1), public=i < 2,
                          label=f"Tq={tq}, Tk={tk}, d={d}"))
    run_cases("attention_weights", fn, cases, hint="scores = q @ k.T / sqrt(d); softmax over the last dimension")


def softmax_temperature(fn) -> None:
    """``fn(z, T)`` -> softmax(z / T) over the last dimension, stable for large z."""
    cases = [Case((torch.tensor([1.0, 2.0, 3.0]), 1.0), torch.softmax(torch.tensor([1.0, 2.0, 3.0]), -1)),
             Case((torch.tensor([1.0, 2.0, 3.0]), 0.1), torch.softmax(torch.tensor([10.0, 20.0, 30.0]), -1),
                  label="T = 0.1: nearly one-hot"),
             Case((torch.tensor([[1000.0, 0.0], [3.0, 3.0]]), 10.0),
                  torch.softmax(torch.tensor([[100.0, 0.0], [0.3, 0.3]]), -1), public=False, label="large logits")]
    run_cases("softmax_temperature", fn, cases, hint="divide by T, subtract the row max, exponentiate, normalise")


def causal_mask(fn) -> None:
    """``fn(T)`` -> a (T, T) boolean tensor, True where position t may attend to position s (s <= t)."""
    cases = [Case((T,), torch.ones(T, T).tril().bool(), public=T < 4) for T in (1, 3, 6)]
    run_cases("causal_mask", fn, cases, compare=lambda got, exp: (
        isinstance(got, torch.Tensor) and got.dtype == torch.bool and got.shape == exp.shape
        and bool((got == exp).all()),
        "expected a boolean lower-triangular (T, T) tensor"), hint="torch.ones(T, T, dtype=torch.bool).tril()")


def attention_output(fn) -> None:
    """``fn(q, k, v)`` -> softmax(q kᵀ / √d) v for q (Tq, d), k (Tk, d), v (Tk, dv)."""
    import torch.nn.functional as F
    g = _g(16)
    cases = []
    for i, (tq, tk, d, dv) in enumerate([(1, 1, 3, 3), (2, 3, 4, 2), (5, 5, 16, 8)]):
        q, k, v = torch.randn(tq, d, generator=g), torch.randn(tk, d, generator=g), torch.randn(tk, dv, generator=g)
        cases.append(Case((q, k, v), F.scaled_dot_product_attention(q[None], k[None], v[None])[0], public=i < 2,
                          label=f"Tq={tq}, Tk={tk}, d={d}, dv={dv}"))
    run_cases("attention_output", fn, cases, hint="weights = softmax(q @ k.T / sqrt(d), dim=-1); return weights @ v")
