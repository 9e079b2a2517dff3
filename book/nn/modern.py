"""The modern decoder block, from scratch: RMSNorm, rotary positions (RoPE), SwiGLU, grouped-query
attention (GQA, with multi-query attention as its one-group case) and tiled attention with an online
softmax (FlashAttention's idea, in plain PyTorch).

Chapter: ``modern_block``. Each piece is checked against a reference there and in
tests/chapters/test_modern_block.py: ``torch.nn.RMSNorm``, a complex-number RoPE, a direct SwiGLU formula,
``torch.nn.functional.scaled_dot_product_attention``. :class:`ModernGPT` is ``book.nn.gpt.GPT`` with each
of the four changes behind a switch; with every switch off it *is* that GPT (same parameter names, same
outputs).

Sources: RMSNorm, Zhang & Sennrich 2019 (arXiv:1910.07467); RoPE, Su et al. 2021 (arXiv:2104.09864);
SwiGLU, Shazeer 2020 (arXiv:2002.05202); MQA, Shazeer 2019 (arXiv:1911.02150); GQA, Ainslie et al. 2023
(arXiv:2305.13245); FlashAttention, Dao et al. 2022 (arXiv:2205.14135); online softmax, Milakov &
Gimelshein 2018 (arXiv:1805.02867); all four together in Llama, Touvron et al. 2023 (arXiv:2302.13971).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


# ============================================================================ RMSNorm
class RMSNorm(nn.Module):
    """y = x / sqrt(mean(x²) + eps) · g. LayerNorm without the mean subtraction and without the bias:
    one statistic instead of two, and (Zhang & Sennrich) about as good."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))   # the gain g, one per feature

    def forward(self, x):
        # mean over the features of each position: (..., C) -> (..., 1)
        rms = torch.sqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return x / rms * self.weight


# ============================================================================ RoPE
def rope_angles(T: int, head_dim: int, base: float = 10000.0, start: int = 0):
    """cos and sin of the angles m·θ_i, each (T, head_dim / 2), for positions start .. start + T - 1.

    θ_i = base^(-2i / head_dim): the same geometric frequencies as the sinusoidal encodings."""
    if head_dim % 2:
        raise ValueError(f"RoPE rotates pairs of features: head_dim must be even, got {head_dim}")
    theta = base ** (-torch.arange(0, head_dim, 2).float() / head_dim)      # (d/2,)
    m = torch.arange(start, start + T).float()                              # (T,)
    angles = m[:, None] * theta[None, :]                                    # (T, d/2)
    return angles.cos(), angles.sin()


def apply_rope(x, cos, sin):
    """Rotate each pair (x[2i], x[2i+1]) of x (..., T, d) by the angle of its position and pair.

    A rotation keeps lengths, and the dot product of two rotated vectors depends only on the
    difference of their angles: q_m · k_n sees m - n, never m or n alone."""
    x1, x2 = x[..., 0::2], x[..., 1::2]              # the pairs' two coordinates, each (..., T, d/2)
    y1 = x1 * cos - x2 * sin                          # the 2-D rotation [[cos, -sin], [sin, cos]]
    y2 = x1 * sin + x2 * cos
    return torch.stack([y1, y2], dim=-1).flatten(-2)  # interleave back: (..., T, d/2, 2) -> (..., T, d)


# ============================================================================ SwiGLU
def swiglu_hidden(n_embd: int, d_ff: int | None = None) -> int:
    """The SwiGLU width with the parameters of a GELU MLP of width d_ff (default 4·C, with biases):
    3·C·h ≈ 2·C·d_ff + d_ff + C, since SwiGLU has three bias-free matrices instead of two."""
    d_ff = d_ff or 4 * n_embd
    return round((2 * n_embd * d_ff + d_ff + n_embd) / (3 * n_embd))


class SwiGLU(nn.Module):
    """down( silu(gate(x)) * up(x) ): a gated MLP. The gate decides, feature by feature, how much of
    ``up(x)`` passes; Shazeer found it beats ReLU and GELU MLPs at equal compute."""

    def __init__(self, n_embd: int, hidden: int):
        super().__init__()
        self.gate = nn.Linear(n_embd, hidden, bias=False)
        self.up = nn.Linear(n_embd, hidden, bias=False)
        self.down = nn.Linear(hidden, n_embd, bias=False)

    def forward(self, x):
        return self.down(F.silu(self.gate(x)) * self.up(x))


# ============================================================================ grouped-query attention
def gqa_attention(q, k, v, causal: bool = True):
    """Attention with fewer key/value heads than query heads.

    q (B, H, T, d); k, v (B, H_kv, S, d) with H a multiple of H_kv. Each group of H / H_kv query heads
    shares one key/value head: H_kv = H is multi-head attention, H_kv = 1 multi-query attention."""
    H, H_kv = q.shape[1], k.shape[1]
    if H % H_kv:
        raise ValueError(f"query heads ({H}) must be a multiple of key/value heads ({H_kv})")
    k = k.repeat_interleave(H // H_kv, dim=1)                 # (B, H, S, d): head h reads group h // (H/H_kv)
    v = v.repeat_interleave(H // H_kv, dim=1)                 # (B, H, S, d)
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, H, T, S)
    if causal:
        T, S = scores.shape[-2:]
        # query t is position S - T + t: it sees keys 0 .. S - T + t (S > T after a KV cache)
        keep = torch.ones(T, S, dtype=torch.bool, device=q.device).tril(diagonal=S - T)
        scores = scores.masked_fill(~keep, float("-inf"))
    return scores.softmax(-1) @ v                             # (B, H, T, d)


class GQASelfAttention(nn.Module):
    """Causal self-attention with ``n_kv_head`` key/value heads, RoPE optional, and a KV cache.

    The projection is one ``Linear(C, C + 2·n_kv_head·d)``: with n_kv_head = n_head it is the 3C
    layout of ``book.nn.gpt.CausalSelfAttention`` (same parameter names)."""

    def __init__(self, n_embd: int, n_head: int, n_kv_head: int, rope: bool = False):
        super().__init__()
        if n_embd % n_head or n_head % n_kv_head:
            raise ValueError(f"need n_embd % n_head == 0 and n_head % n_kv_head == 0, got "
                             f"{n_embd}, {n_head}, {n_kv_head}")
        self.n_head, self.n_kv_head, self.rope = n_head, n_kv_head, rope
        self.head_dim = n_embd // n_head
        self.qkv = nn.Linear(n_embd, n_embd + 2 * n_kv_head * self.head_dim)
        self.proj = nn.Linear(n_embd, n_embd)

    def forward(self, x, cache: list | None = None):
        B, T, C = x.shape
        d, H, G = self.head_dim, self.n_head, self.n_kv_head
        q, k, v = self.qkv(x).split([C, G * d, G * d], dim=2)  # (B, T, C), 2 x (B, T, G·d)
        q = q.view(B, T, H, d).transpose(1, 2)                 # (B, H, T, d)
        k = k.view(B, T, G, d).transpose(1, 2)                 # (B, G, T, d)
        v = v.view(B, T, G, d).transpose(1, 2)                 # (B, G, T, d)
        past = cache[0].shape[2] if cache else 0
        if self.rope:   # rotate by absolute position; attention then sees only differences
            cos, sin = (a.to(x.device) for a in rope_angles(T, d, start=past))
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if cache is not None:      # the cache holds G heads, not H: GQA's saving
            if cache:
                k = torch.cat([cache[0], k], 2)                # (B, G, past + T, d)
                v = torch.cat([cache[1], v], 2)
            cache[:] = [k, v]
        # the fused kernel; gqa_attention above computes the same numbers step by step
        k = k.repeat_interleave(H // G, dim=1)                  # (B, H, past + T, d)
        v = v.repeat_interleave(H // G, dim=1)
        if past == 0:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            mask = torch.ones(T, past + T, dtype=torch.bool, device=x.device).tril(past)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        y = y.transpose(1, 2).reshape(B, T, C)                  # (B, T, C)
        return self.proj(y)


# ============================================================================ the block and the model
@dataclass
class ModernConfig:
    """``book.nn.gpt.GPTConfig``'s sizes plus the four switches. All off: the book's GPT."""

    vocab_size: int
    block_size: int = 64
    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 128
    d_ff: int | None = None      # MLP width; None: 4 · n_embd, or for SwiGLU the width of equal size
    rmsnorm: bool = False        # LayerNorm -> RMSNorm
    rope: bool = False           # learned positions -> rotary positions
    swiglu: bool = False         # GELU MLP -> SwiGLU of the same parameter count
    n_kv_head: int | None = None  # None: = n_head (multi-head attention)


class ModernBlock(nn.Module):
    """x = x + attn(norm1(x)); x = x + mlp(norm2(x)) — pre-norm, as ``book.nn.gpt.Block``."""

    def __init__(self, cfg: ModernConfig):
        super().__init__()
        C = cfg.n_embd
        norm = RMSNorm if cfg.rmsnorm else nn.LayerNorm
        self.ln1, self.ln2 = norm(C), norm(C)
        self.attn = GQASelfAttention(C, cfg.n_head, cfg.n_kv_head or cfg.n_head, cfg.rope)
        if cfg.swiglu:
            self.mlp = SwiGLU(C, cfg.d_ff or swiglu_hidden(C))
        else:
            d_ff = cfg.d_ff or 4 * C
            self.mlp = nn.Sequential(nn.Linear(C, d_ff), nn.GELU(), nn.Linear(d_ff, C))

    def forward(self, x, cache=None):
        x = x + self.attn(self.ln1(x), cache)
        return x + self.mlp(self.ln2(x))


class ModernGPT(nn.Module):
    """``book.nn.gpt.GPT`` with the switches of :class:`ModernConfig`. idx (B, T) -> logits (B, T, V)."""

    def __init__(self, cfg: ModernConfig):
        super().__init__()
        self.cfg = cfg
        self.tok = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        # RoPE puts positions inside attention: no position table at all
        self.pos = None if cfg.rope else nn.Embedding(cfg.block_size, cfg.n_embd)
        self.blocks = nn.ModuleList(ModernBlock(cfg) for _ in range(cfg.n_layer))
        self.ln_f = (RMSNorm if cfg.rmsnorm else nn.LayerNorm)(cfg.n_embd)
        self.head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.head.weight = self.tok.weight                  # tied, as in the book's GPT
        self.apply(self._init)

    @staticmethod
    def _init(m):   # book.nn.gpt.GPT's initialisation
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)

    def forward(self, idx, caches: list | None = None):
        if idx.ndim != 2 or idx.dtype != torch.long:
            raise ValueError(f"expected token ids of shape (batch, time) and dtype long, got "
                             f"{tuple(idx.shape)} {idx.dtype}")
        B, T = idx.shape
        past = caches[0][0].shape[2] if caches and caches[0] else 0
        if past + T > self.cfg.block_size:
            raise ValueError(f"sequence of {past + T} tokens exceeds block_size={self.cfg.block_size}")
        x = self.tok(idx)                                                   # (B, T, C)
        if self.pos is not None:
            x = x + self.pos(torch.arange(past, past + T, device=idx.device))
        for i, block in enumerate(self.blocks):
            x = block(x, caches[i] if caches is not None else None)
        return self.head(self.ln_f(x))                                      # (B, T, V)


def kv_cache_bytes(n_layer: int, n_kv_head: int, head_dim: int, T: int, bytes_per: int = 2,
                   batch: int = 1) -> int:
    """Bytes of a KV cache: keys and values (2) of every layer, kv head, feature and position."""
    return 2 * n_layer * n_kv_head * head_dim * T * bytes_per * batch


# ============================================================================ tiled attention
def tiled_attention(q, k, v, causal: bool = False, block: int = 16):
    """softmax(q kᵀ / √d) v computed one (block × block) tile of scores at a time, never the T × S matrix.

    The online softmax: for each query row keep a running maximum m, a running sum of exponentials l
    and a running, unnormalised output acc. A new tile of scores s updates them as::

        m' = max(m, max s),  l' = l·e^(m - m') + Σ e^(s - m'),  acc' = acc·e^(m - m') + e^(s - m') v

    rescaling what was summed so far to the new maximum, and the answer is acc / l at the end.
    q (B, H, T, d), k and v (B, H, S, d); causal: query t sees keys 0 .. t (T = S)."""
    B, H, T, d = q.shape
    S = k.shape[2]
    if causal and S != T:
        raise ValueError(f"causal tiled attention expects as many keys as queries, got {S} and {T}")
    scale = 1 / math.sqrt(d)
    out = torch.empty_like(q)
    for i in range(0, T, block):                          # one tile of queries at a time
        qi = q[:, :, i:i + block] * scale                 # (B, H, bq, d)
        bq = qi.shape[2]
        m = torch.full((B, H, bq, 1), float("-inf"), dtype=q.dtype, device=q.device)  # running max
        l = torch.zeros(B, H, bq, 1, dtype=q.dtype, device=q.device)                  # running sum
        acc = torch.zeros(B, H, bq, d, dtype=q.dtype, device=q.device)                 # running output
        stop = min(S, i + bq) if causal else S            # later keys are all masked: skip them
        for j in range(0, stop, block):
            s = qi @ k[:, :, j:j + block].transpose(-2, -1)   # (B, H, bq, bk): one tile of scores
            if causal and j + block > i:                     # the tile crosses the diagonal
                rows = torch.arange(i, i + bq, device=q.device)[:, None]
                cols = torch.arange(j, j + s.shape[-1], device=q.device)[None, :]
                s = s.masked_fill(cols > rows, float("-inf"))
            m_new = torch.maximum(m, s.amax(-1, keepdim=True))   # (B, H, bq, 1)
            p = torch.exp(s - m_new)                             # (B, H, bq, bk)
            fix = torch.exp(m - m_new)                           # rescale the old sums
            l = l * fix + p.sum(-1, keepdim=True)
            acc = acc * fix + p @ v[:, :, j:j + block]           # (B, H, bq, d)
            m = m_new
        out[:, :, i:i + bq] = acc / l
    return out


def attention_memory(T: int, block: int, head_dim: int, bytes_per: int = 4) -> dict:
    """Bytes of the intermediates of one head's attention: the full T × T score matrix (and its
    softmax, as large) against a tiled pass's tile of scores plus its running max, sum and output."""
    return {"full": 2 * T * T * bytes_per,
            "tiled": (block * block + 2 * block + block * head_dim) * bytes_per}
