"""Self-checks of the attention_math chapter's exercises."""
from __future__ import annotations

import torch

from book.check.core import Case, _g, close, run_cases

__all__ = ['attention_weights', 'softmax_temperature', 'causal_mask', 'attention_output', 'score_std',
           'attention_flops', 'crossover_length', 'multi_head']


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


def score_std(fn) -> None:
    """``fn(d, sigma_q, sigma_k)`` -> the standard deviation of q·k for independent mean-zero entries."""
    from book.check._reference import _score_std_ref  # hidden from graded code
    cases = [Case(args, _score_std_ref(*args), public=i < 2, label=f"d={args[0]}, σ_q={args[1]}, σ_k={args[2]}")
             for i, args in enumerate([(64, 1.0, 1.0), (16, 2.0, 0.5), (100, 0.1, 3.0), (7, 1.5, 1.5)])]
    run_cases("score_std", fn, cases, compare=lambda got, exp: close(got, exp, rtol=1e-6),
              hint="Var(q·k) = d · σ_q² · σ_k²; return its square root")


def attention_flops(fn) -> None:
    """``fn(t_q, t_k, d_k, d_v)`` -> FLOPs of ``book.nn.attention.attention``, as FlopCounterMode counts them."""
    from torch.utils.flop_counter import FlopCounterMode

    from book.nn.attention import attention
    cases = []
    for i, (tq, tk, dk, dv) in enumerate([(4, 4, 8, 8), (3, 10, 16, 4), (1, 50, 32, 64), (20, 7, 5, 9)]):
        counter = FlopCounterMode(display=False)
        with counter:
            attention(torch.zeros(tq, dk), torch.zeros(tk, dk), torch.zeros(tk, dv))
        cases.append(Case((tq, tk, dk, dv), counter.get_total_flops(), public=i < 2,
                          label=f"t_q={tq}, t_k={tk}, d_k={dk}, d_v={dv}"))
    run_cases("attention_flops", fn, cases, compare=lambda got, exp: close(got, exp, rtol=0, atol=0.5),
              hint="scores: (t_q x d_k)(d_k x t_k); output: (t_q x t_k)(t_k x d_v); 2 FLOPs per multiply-add")


def crossover_length(fn) -> None:
    """``fn(C)`` -> the length T at which attention's FLOPs (all heads) equal the projections' 8 T C²."""
    from book.check._reference import _attention_crossover_ref  # hidden from graded code
    cases = [Case((C,), _attention_crossover_ref(C), public=i < 2, label=f"C={C}")
             for i, C in enumerate([64, 768, 4096])]
    run_cases("crossover_length", fn, cases, compare=lambda got, exp: close(got, exp, rtol=1e-9),
              hint="h heads of width C/h: 4 T² C in all; solve 4 T² C = 8 T C² for T")


def multi_head(fn) -> None:
    """``fn(x, w_q, w_k, w_v, w_o, n_head)`` -> ``nn.MultiheadAttention(bias=False)`` holding the same weights."""
    from torch import nn
    g = _g(17)
    cases = []
    for i, (T, C, h) in enumerate([(3, 4, 1), (5, 8, 2), (9, 32, 4), (6, 24, 8)]):
        x = torch.randn(T, C, generator=g)
        ws = [torch.randn(C, C, generator=g) / C ** 0.5 for _ in range(4)]
        ref = nn.MultiheadAttention(C, h, bias=False)
        with torch.no_grad():
            ref.in_proj_weight.copy_(torch.cat([w.T for w in ws[:3]]))
            ref.out_proj.weight.copy_(ws[3].T)
            expected = ref(x, x, x, need_weights=False)[0]
        cases.append(Case((x, *ws, h), expected, public=i < 2, label=f"T={T}, C={C}, heads={h}"))
    with torch.no_grad():
        run_cases("multi_head", fn, cases, compare=lambda got, exp: close(got, exp, rtol=1e-4, atol=1e-5),
                  hint="split (T, C) into (heads, T, C/heads), scale by 1/sqrt(C/heads), concatenate, @ w_o")
