"""Self-checks of the seq2seq chapter's exercises."""
from __future__ import annotations

import torch

from book.check.core import Case, _g, run_cases
from book.nn.attention import additive_attention, attention

__all__ = ["additive_weights", "dot_attention", "copy_accuracy", "p_seen"]


def _tensors(g, B, S, D, A):
    return (torch.randn(B, D, generator=g, dtype=torch.float64), torch.randn(B, S, D, generator=g, dtype=torch.float64),
            torch.randn(A, D, generator=g, dtype=torch.float64) * 0.5,
            torch.randn(A, D, generator=g, dtype=torch.float64) * 0.5, torch.randn(A, generator=g, dtype=torch.float64))


def additive_weights(fn) -> None:
    """``fn(s, H, W_q, W_k, v)`` -> the (B, S) attention weights softmax_j(vᵀ tanh(W_q s + W_k h_j))."""
    g = _g(61)
    cases = []
    for i, (B, S, D, A) in enumerate([(1, 3, 2, 4), (2, 5, 4, 3), (3, 7, 6, 5)]):
        s, H, Wq, Wk, v = _tensors(g, B, S, D, A)
        cases.append(Case((s, H, Wq, Wk, v), additive_attention(s, H, Wq, Wk, v)[1], public=i < 2,
                          label=f"B={B}, S={S}, D={D}, A={A}"))
    run_cases("additive_weights", fn, cases, hint="scores (B, S): tanh(s @ W_q.T (as (B, 1, A)) + H @ W_k.T) @ v; "
              "then softmax over S")


def dot_attention(fn) -> None:
    """``fn(s, H, mask)`` -> (context (B, D), weights (B, S)) of Luong's dot attention: scores h_jᵀ s, padding
    (mask False) weighted 0."""
    g = _g(62)
    cases = []
    for i, (B, S, D) in enumerate([(1, 4, 3), (2, 5, 4), (3, 6, 8)]):
        s = torch.randn(B, D, generator=g, dtype=torch.float64)
        H = torch.randn(B, S, D, generator=g, dtype=torch.float64)
        lengths = torch.randint(1, S + 1, (B,), generator=g)
        lengths[0] = S - 1 if S > 1 else 1                  # at least one sequence with padding
        mask = torch.arange(S) < lengths[:, None]
        out, w = attention(s[:, None], H, H, mask[:, None], scale=1.0)
        cases.append(Case((s, H, mask), (out[:, 0], w[:, 0]), public=i < 2, label=f"B={B}, S={S}, D={D}"))
    run_cases("dot_attention", fn, cases, hint="scores = (H @ s[:, :, None]).squeeze(-1); set the padded ones to "
              "-inf before the softmax; context = weights-weighted sum of the rows of H")


def copy_accuracy(fn) -> None:
    """``fn(L, V)`` -> the expected per-token accuracy of the copy baseline on reversing a random string of L
    letters drawn uniformly from V, counting the end token as one of the L + 1 targets."""
    from book.check._reference import _copy_acc_ref
    cases = [Case((L, V), _copy_acc_ref(L, V), public=i < 3, label=f"L={L}, V={V}")
             for i, (L, V) in enumerate([(2, 12), (3, 12), (10, 12), (7, 2), (1, 5), (12, 26)])]
    run_cases("copy_accuracy", fn, cases, hint="which target positions t does the input put in place? t = L − 1 − t "
              "always; otherwise two independent letters agree with probability 1/V")


def p_seen(fn) -> None:
    """``fn(L, n_train, n_lengths, V)`` -> the probability that one given string of length L occurs among
    ``n_train`` training strings whose lengths are uniform over ``n_lengths`` values and letters uniform over V."""
    from book.check._reference import _p_seen_ref
    cases = [Case(a, _p_seen_ref(*a), public=i < 3, label=f"L={a[0]}, n={a[1]}, lengths={a[2]}, V={a[3]}")
             for i, a in enumerate([(2, 20000, 11, 12), (3, 20000, 11, 12), (5, 20000, 11, 12), (1, 10, 1, 4),
                                    (4, 100000, 3, 10)])]
    run_cases("p_seen", fn, cases, hint="one training string equals it with "
              "probability 1/(n_lengths · V^L); the n_train draws are independent")
