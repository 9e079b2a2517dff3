"""Counting a network's parameters and FLOPs: by formula, and measured by PyTorch's FLOP counter.

Convention (the one PyTorch's counter and most papers use): a multiply-add counts as 2 FLOPs, so a
matrix product (m×k)·(k×n) costs 2·m·k·n. Element-wise work (activations, softmax, norms) is ignored.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (shared tensors counted once)."""
    seen, total = set(), 0
    for p in model.parameters():
        if id(p) in seen or (trainable_only and not p.requires_grad):
            continue
        seen.add(id(p))
        total += p.numel()
    return total


def measure_flops(model: nn.Module, x: torch.Tensor, backward: bool = False) -> int:
    """FLOPs of one forward pass (and backward, if asked) on input ``x``, counted by PyTorch."""
    counter = FlopCounterMode(display=False)
    with counter:
        out = model(x)
        if backward:
            out.float().sum().backward()
    return int(counter.get_total_flops())


def linear_params(n_in: int, n_out: int, bias: bool = True) -> int:
    return n_in * n_out + (n_out if bias else 0)


def mlp_params(sizes: list[int]) -> int:
    """Parameters of an MLP with layer widths ``sizes`` (input first), biases included."""
    _check_sizes(sizes)
    return sum(linear_params(a, b) for a, b in zip(sizes[:-1], sizes[1:]))


def mlp_flops(sizes: list[int], batch: int = 1) -> int:
    """Forward FLOPs of that MLP on ``batch`` inputs: 2·n_in·n_out per example and layer."""
    _check_sizes(sizes)
    return 2 * batch * sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))


def conv2d_params(c_in: int, c_out: int, k: int, bias: bool = True) -> int:
    return c_out * c_in * k * k + (c_out if bias else 0)


def conv2d_flops(c_in: int, c_out: int, k: int, h_out: int, w_out: int, batch: int = 1) -> int:
    """Each output value is a dot product of length c_in·k·k."""
    return 2 * batch * c_out * h_out * w_out * c_in * k * k


def block_params(d_model: int, d_ff: int) -> int:
    """A Transformer block: attention (Q, K, V, output: 4 d² + 4 d), MLP (2 d·d_ff + d_ff + d), 2 LayerNorms (4 d)."""
    return 4 * d_model * d_model + 4 * d_model + 2 * d_model * d_ff + d_ff + d_model + 4 * d_model


def block_flops(d_model: int, d_ff: int, seq: int, batch: int = 1) -> int:
    """Forward FLOPs of that block on ``batch`` sequences of length ``seq``: projections, the two attention
    matrix products (Q·Kᵀ and weights·V: 2·seq²·d each), and the MLP."""
    tokens = batch * seq
    return 2 * tokens * (4 * d_model * d_model + 2 * d_model * d_ff) + 2 * 2 * batch * seq * seq * d_model


def _check_sizes(sizes):
    if len(sizes) < 2 or any((not isinstance(s, int)) or s < 1 for s in sizes):
        raise ValueError(f"sizes must list at least two positive int widths (input, ..., output), got {sizes}")


class TransformerBlock(nn.Module):
    """A pre-LayerNorm Transformer block written out plainly, to count its parameters and FLOPs."""

    def __init__(self, d_model: int = 64, n_heads: int = 4, d_ff: int = 256):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} must be divisible by n_heads={n_heads}")
        self.n_heads = n_heads
        self.ln1, self.ln2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, d_ff), nn.GELU(), nn.Linear(d_ff, d_model))

    def forward(self, x):
        B, T, C = x.shape
        h = self.n_heads
        q, k, v = self.qkv(self.ln1(x)).split(C, dim=-1)                    # 3 x (B, T, C)
        q, k, v = (t.view(B, T, h, C // h).transpose(1, 2) for t in (q, k, v))  # (B, h, T, C/h)
        att = (q @ k.transpose(-2, -1)) / (C // h) ** 0.5                    # (B, h, T, T)
        y = att.softmax(dim=-1) @ v                                          # (B, h, T, C/h)
        x = x + self.proj(y.transpose(1, 2).reshape(B, T, C))                # (B, T, C)
        return x + self.mlp(self.ln2(x))
