"""Scaled dot-product attention written out (tested against torch.nn.functional.scaled_dot_product_attention).

Chapters: taught in ``attention_math``; the GPT of ``gpt`` (:mod:`book.nn.gpt`) uses it for its attention maps.
Bahdanau's :func:`additive_attention` (one query per sequence, an encoder-decoder's) is taught in ``seq2seq``.
:func:`multi_head_attention` (learned projections, heads split and concatenated) is taught in ``attention_math``.

    Attention(Q, K, V) = softmax(Q Kᵀ / √d_k) V

Each query row is compared with every key row (a dot product), the scores are scaled by 1/√d_k and
turned into weights that sum to 1 over the keys, and the output is the weighted average of the values.
"""
from __future__ import annotations

import math

import torch


def causal_mask(T: int, device=None) -> torch.Tensor:
    """(T, T) boolean mask, True where query t may look at key s (s <= t): no peeking at the future."""
    return torch.ones(T, T, dtype=torch.bool, device=device).tril()


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None,
              scale: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Scaled dot-product attention. Shapes: q (..., Tq, d), k (..., Tk, d), v (..., Tk, dv).

    ``mask``: boolean, broadcastable to (..., Tq, Tk), True = may attend. ``scale`` defaults to 1/√d.
    Returns ``(out, weights)`` with out (..., Tq, dv) and weights (..., Tq, Tk), each row summing to 1.
    """
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"queries and keys need the same last dimension d, got {q.shape[-1]} and {k.shape[-1]}")
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"keys and values need the same number of positions, got {k.shape[-2]} and {v.shape[-2]}")
    if mask is not None and mask.dtype != torch.bool:
        raise TypeError(f"mask must be boolean (True = may attend), got {mask.dtype}")
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = (q @ k.transpose(-2, -1)) * scale            # (..., Tq, Tk)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = scores.softmax(dim=-1)                       # each row: a distribution over the keys
    return weights @ v, weights                            # (..., Tq, dv), (..., Tq, Tk)


def multi_head_attention(x: torch.Tensor, w_q: torch.Tensor, w_k: torch.Tensor, w_v: torch.Tensor,
                         w_o: torch.Tensor, n_head: int, mask: torch.Tensor | None = None
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """Multi-head self-attention written out (chapter ``attention_math``; tested against
    ``torch.nn.MultiheadAttention`` with ``bias=False``). ``n_head=1``: one head with learned projections.

        project:  Q = x W_Q,  K = x W_K,  V = x W_V              (..., T, C) each
        split:    C columns -> n_head heads of C / n_head         (..., h, T, C/h)
        attend:   head_i = softmax(Q_i K_iᵀ / √(C/h)) V_i         (:func:`attention`)
        concat:   [head_1 ... head_h] W_O                          (..., T, C)

    x (..., T, C); w_q, w_k, w_v, w_o (C, C), applied as ``x @ w``; ``mask`` as in :func:`attention`.
    Returns ``(out (..., T, C), weights (..., h, T, T))``.
    """
    C = x.shape[-1]
    if C % n_head:
        raise ValueError(f"the width C={C} must be divisible by n_head={n_head}")
    for name, w in (("w_q", w_q), ("w_k", w_k), ("w_v", w_v), ("w_o", w_o)):
        if w.shape != (C, C):
            raise ValueError(f"{name} must have shape ({C}, {C}) for inputs of width {C}, got {tuple(w.shape)}")

    def split(t):                                          # (..., T, C) -> (..., h, T, C/h)
        return t.unflatten(-1, (n_head, C // n_head)).transpose(-3, -2)

    out, weights = attention(split(x @ w_q), split(x @ w_k), split(x @ w_v), mask)
    return out.transpose(-3, -2).flatten(-2) @ w_o, weights   # concatenate the heads, then W_O


def additive_attention(query: torch.Tensor, keys: torch.Tensor, W_q: torch.Tensor, W_k: torch.Tensor,
                       v: torch.Tensor, mask: torch.Tensor | None = None,
                       projected_keys: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Bahdanau's additive attention (chapter ``seq2seq``): one query per sequence against its keys.

        e_j = vᵀ tanh(W_q s + W_k h_j),   α = softmax(e) over the unmasked j,   context = Σ_j α_j h_j

    Shapes: query ``s`` (B, Dq), keys ``h`` (B, S, Dk), W_q (A, Dq), W_k (A, Dk), v (A,); ``mask`` (B, S)
    boolean, True = a real position (False: padding, weight 0). Returns ``(context (B, Dk), α (B, S))``.
    ``projected_keys``: ``keys @ W_k.T`` computed once per sequence by a decoder that asks many queries.
    """
    if query.ndim != 2 or keys.ndim != 3 or query.shape[0] != keys.shape[0]:
        raise ValueError(f"expected query (B, Dq) and keys (B, S, Dk), got {tuple(query.shape)} and "
                         f"{tuple(keys.shape)}")
    sizes_fit = W_q.shape[1] == query.shape[1] and W_k.shape[1] == keys.shape[2]
    if not sizes_fit or len({W_q.shape[0], W_k.shape[0], v.shape[0]}) != 1:
        raise ValueError(f"W_q {tuple(W_q.shape)}, W_k {tuple(W_k.shape)} and v {tuple(v.shape)} do not fit "
                         f"query {tuple(query.shape)} and keys {tuple(keys.shape)}")
    if mask is not None and mask.dtype != torch.bool:
        raise TypeError(f"mask must be boolean (True = a real position), got {mask.dtype}")
    projected_keys = keys @ W_k.T if projected_keys is None else projected_keys      # (B, S, A)
    scores = torch.tanh((query @ W_q.T).unsqueeze(1) + projected_keys) @ v           # (B, S)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = scores.softmax(dim=-1)
    return (weights.unsqueeze(1) @ keys).squeeze(1), weights
