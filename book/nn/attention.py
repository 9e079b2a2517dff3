"""Scaled dot-product attention written out (tested against torch.nn.functional.scaled_dot_product_attention).

Chapters: taught in ``attention_math``; the GPT of ``gpt`` (:mod:`book.nn.gpt`) uses it for its attention maps.

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
