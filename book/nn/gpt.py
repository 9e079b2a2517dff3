"""A tiny GPT: token and position embeddings, pre-LayerNorm Transformer blocks with causal multi-head
self-attention, and generation (greedy, temperature, top-k, top-p) with an optional KV cache.

Chapters: taught in ``gpt``; pretrained in ``pretraining`` (the checkpoint ``lora``, ``applications``,
``generative`` and ``trends`` start from), and trained again in ``efficiency`` and ``scaling_laws``.

Two attention paths give the same numbers (tests/chapters/test_gpt.py): the fused
``torch.nn.functional.scaled_dot_product_attention`` used for training, and the explicit
``book.nn.attention.attention`` that also returns the weights for heat-maps.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from book.nn.attention import attention


@dataclass
class GPTConfig:
    vocab_size: int
    block_size: int = 64     # longest context the model sees
    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    causal: bool = True      # False: every position sees every other (a BERT-style encoder, book.lab.pretraining)
    d_ff: int | None = None  # the MLP's hidden width; None: 4 * n_embd, as in GPT-2


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        if cfg.n_embd % cfg.n_head:
            raise ValueError(f"n_embd={cfg.n_embd} must be divisible by n_head={cfg.n_head}")
        self.n_head = cfg.n_head
        self.causal = cfg.causal
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd)
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.drop = nn.Dropout(cfg.dropout)
        self.weights = None  # the last attention weights, when asked for

    def mask(self, T: int, past: int, device) -> torch.Tensor:
        """(T, past + T) booleans: query t (absolute position past + t) may see keys 0 .. past + t."""
        mask = torch.ones(T, past + T, dtype=torch.bool, device=device)
        return mask.tril(diagonal=past) if self.causal else mask

    def sdpa_mask(self, T: int, past: int, device) -> dict:
        """The same rule as ``mask``, said the cheapest way to ``scaled_dot_product_attention``: an
        explicit mask rules out the flash kernel on CUDA, so pass ``is_causal`` (or nothing) when it
        says the same -- always, except for several new tokens after a cache."""
        if not self.causal or T == 1:          # every key visible
            return {}
        if past == 0:
            return {"is_causal": True}
        return {"attn_mask": self.mask(T, past, device)}

    def forward(self, x, cache: list | None = None, keep_weights: bool = False):
        B, T, C = x.shape
        h = self.n_head
        q, k, v = self.qkv(x).split(C, dim=2)                                   # 3 x (B, T, C)
        q, k, v = (t.view(B, T, h, C // h).transpose(1, 2) for t in (q, k, v))  # (B, h, T, C/h)
        past = 0
        if cache is not None:                       # cache = [k, v] of earlier positions, or [] at the start
            if cache:
                past = cache[0].shape[2]
                k, v = torch.cat([cache[0], k], 2), torch.cat([cache[1], v], 2)  # (B, h, past + T, C/h)
            cache[:] = [k, v]
        if keep_weights:
            y, self.weights = attention(q, k, v, self.mask(T, past, x.device))
        else:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.drop.p if self.training else 0.0,
                                               **self.sdpa_mask(T, past, x.device))
        y = y.transpose(1, 2).reshape(B, T, C)                                    # (B, T, C)
        return self.drop(self.proj(y))


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(cfg.n_embd), nn.LayerNorm(cfg.n_embd)
        self.attn = CausalSelfAttention(cfg)
        d_ff = cfg.d_ff or 4 * cfg.n_embd
        self.mlp = nn.Sequential(nn.Linear(cfg.n_embd, d_ff), nn.GELU(),
                                 nn.Linear(d_ff, cfg.n_embd), nn.Dropout(cfg.dropout))

    def forward(self, x, cache=None, keep_weights=False):
        x = x + self.attn(self.ln1(x), cache, keep_weights)   # residual connections around both parts
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        self.tok = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.pos = nn.Embedding(cfg.block_size, cfg.n_embd)   # learned positions
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd)
        self.head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.head.weight = self.tok.weight                    # weight tying, as in GPT-2
        self.apply(self._init)

    @staticmethod
    def _init(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)

    def forward(self, idx, caches: list | None = None, keep_weights: bool = False):
        """idx (B, T) token ids -> logits (B, T, vocab). ``caches``: one list per block for the KV cache."""
        if idx.ndim != 2 or idx.dtype != torch.long:
            raise ValueError("expected token ids of shape (batch, time) and dtype long, "
                             f"got {tuple(idx.shape)} {idx.dtype}")
        B, T = idx.shape
        past = caches[0][0].shape[2] if caches and caches[0] else 0
        if past + T > self.cfg.block_size:
            raise ValueError(f"sequence of {past + T} tokens exceeds block_size={self.cfg.block_size}; "
                             "crop the context")
        pos = torch.arange(past, past + T, device=idx.device)
        x = self.drop(self.tok(idx) + self.pos(pos))                          # (B, T, C)
        for i, block in enumerate(self.blocks):
            x = block(x, caches[i] if caches is not None else None, keep_weights)
        return self.head(self.ln_f(x))                                       # (B, T, vocab)

    def attention_maps(self, idx) -> list:
        """Attention weights of every layer for one input: a list of (B, heads, T, T) tensors.

        Computed in eval mode (dropout off, so the maps do not change from call to call); the model's
        training mode is restored afterwards."""
        was = self.training
        self.eval()
        with torch.no_grad():
            self.forward(idx, keep_weights=True)
        self.train(was)
        return [b.attn.weights for b in self.blocks]

    @torch.no_grad()
    def generate(self, idx, n: int, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                 greedy: bool = False, use_cache: bool = True, generator: torch.Generator | None = None):
        """Append ``n`` tokens to idx (1, T). With ``use_cache`` each step feeds only the newest token and
        reuses the keys and values of earlier positions; otherwise it re-reads the whole context."""
        was = self.training
        self.eval()
        caches = [[] for _ in self.blocks] if use_cache else None
        out = idx
        logits = self(out[:, -self.cfg.block_size:], caches)
        for _ in range(n):
            nxt = pick_next(logits[:, -1].float(), temperature, top_k, top_p, greedy, generator)   # (1, 1)
            out = torch.cat([out, nxt], 1)
            if use_cache and caches[0][0].shape[2] < self.cfg.block_size:
                logits = self(nxt, caches)
            else:   # no cache, or the cache is full: re-read the last block_size tokens
                caches = [[] for _ in self.blocks] if use_cache else None
                logits = self(out[:, -self.cfg.block_size:], caches)
        self.train(was)
        return out


def filter_logits(logits, top_k: int | None = None, top_p: float | None = None):
    """Set to -inf every logit outside the top k, and outside the smallest set whose probability reaches top_p."""
    if top_k is not None:
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        kth = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None:
        if not 0 < top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        drop = cum - sorted_logits.softmax(-1) >= top_p   # tokens after the nucleus is already full
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    return logits


def pick_next(logits, temperature=1.0, top_k=None, top_p=None, greedy=False, generator=None):
    """One next token per row of logits (B, V) -> (B, 1)."""
    if greedy:
        return logits.argmax(-1, keepdim=True)
    if temperature <= 0:
        raise ValueError(f"temperature must be positive (use greedy=True for argmax), got {temperature}")
    probs = filter_logits(logits / temperature, top_k, top_p).softmax(-1)
    return torch.multinomial(probs.cpu(), 1, generator=generator).to(logits.device)


def sinusoidal_positions(T: int, C: int) -> torch.Tensor:
    """The fixed encodings of the original Transformer: PE[t, 2i] = sin(t / 10000^(2i/C)), PE[t, 2i+1] = cos(...)."""
    if C % 2:
        raise ValueError(f"C must be even, got {C}")
    t = torch.arange(T)[:, None].float()
    freq = torch.exp(-math.log(10000.0) * torch.arange(0, C, 2).float() / C)
    pe = torch.zeros(T, C)
    pe[:, 0::2], pe[:, 1::2] = torch.sin(t * freq), torch.cos(t * freq)
    return pe
