"""Counting a network's parameters and FLOPs: by formula, and measured by PyTorch's FLOP counter.

Chapters: taught in ``core_concepts``; used again in ``gpt``, ``pretraining``, ``compression``, ``scaling_laws``
and ``trends``.

Convention (the one PyTorch's counter and most papers use): a multiply-add counts as 2 FLOPs, so a
matrix product (m×k)·(k×n) costs 2·m·k·n. Element-wise work (activations, softmax, norms) is ignored.
"""
from __future__ import annotations

import contextlib

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


def _math_attention():
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel  # torch >= 2.3
    except ImportError:
        return contextlib.nullcontext()
    return sdpa_kernel(SDPBackend.MATH)


def measure_flops(model: nn.Module, x: torch.Tensor, backward: bool = False) -> int:
    """FLOPs of one forward pass (and backward, if asked) on input ``x``, counted by PyTorch."""
    counter = FlopCounterMode(display=False)
    # FlopCounterMode has no formula for the fused attention kernels PyTorch picks on the CPU; the "math"
    # path computes the same attention as matrix products, which it counts (Q·Kᵀ and weights·V).
    with _math_attention(), counter:
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
    """Parameters of a Transformer block (``book.nn.gpt.Block``): attention (Q, K, V, output: 4 d² + 4 d),
    MLP (2 d·d_ff + d_ff + d), 2 LayerNorms (4 d)."""
    return 4 * d_model * d_model + 4 * d_model + 2 * d_model * d_ff + d_ff + d_model + 4 * d_model


def block_flops(d_model: int, d_ff: int, seq: int, batch: int = 1) -> int:
    """Forward FLOPs of that block on ``batch`` sequences of length ``seq``: projections, the two attention
    matrix products (Q·Kᵀ and weights·V: 2·seq²·d each), and the MLP."""
    tokens = batch * seq
    return 2 * tokens * (4 * d_model * d_model + 2 * d_model * d_ff) + 2 * 2 * batch * seq * seq * d_model


def _check_sizes(sizes):
    if len(sizes) < 2 or any((not isinstance(s, int)) or s < 1 for s in sizes):
        raise ValueError(f"sizes must list at least two positive int widths (input, ..., output), got {sizes}")
