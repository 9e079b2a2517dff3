"""Activation functions and their derivatives written out.

Chapter: taught in ``losses_activations``.

``ACTIVATIONS`` maps a name to ``(f, f')``; ``MODULES`` maps the same names to PyTorch's modules, which the
tests compare against.
"""
from __future__ import annotations

import math

import torch
from torch import nn


def sigmoid(x):
    return 1 / (1 + torch.exp(-x))


def d_sigmoid(x):
    s = sigmoid(x)
    return s * (1 - s)          # at most 1/4, at x = 0


def tanh(x):
    return torch.tanh(x)


def d_tanh(x):
    return 1 - torch.tanh(x) ** 2


def relu(x):
    return x.clamp(min=0)


def d_relu(x):
    return (x > 0).to(x.dtype)   # 0 for x <= 0 (the convention PyTorch uses at 0)


def gelu(x):
    return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))   # x·Φ(x), the exact form


def d_gelu(x):
    cdf = 0.5 * (1 + torch.erf(x / math.sqrt(2)))
    pdf = torch.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
    return cdf + x * pdf


def silu(x):
    return x * sigmoid(x)


def d_silu(x):
    s = sigmoid(x)
    return s * (1 + x * (1 - s))


ACTIVATIONS = {"sigmoid": (sigmoid, d_sigmoid), "tanh": (tanh, d_tanh), "relu": (relu, d_relu),
               "gelu": (gelu, d_gelu), "silu": (silu, d_silu)}
MODULES = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU}


def get(name: str):
    """(f, f') of activation ``name``."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {list(ACTIVATIONS)}")
    return ACTIVATIONS[name]


def saturation(out: torch.Tensor, kind: str) -> torch.Tensor:
    """Fraction of outputs where the derivative is nearly zero: ``|tanh| > 0.99``, sigmoid outside (0.01, 0.99)."""
    if kind == "tanh":
        return (out.abs() > 0.99).float().mean()
    if kind == "sigmoid":
        return ((out < 0.01) | (out > 0.99)).float().mean()
    raise ValueError(f"saturation is defined for tanh and sigmoid, not {kind!r}")


def dead_fraction(out: torch.Tensor) -> torch.Tensor:
    """Fraction of ReLU units that output 0 for every example of the batch (they get no gradient at all)."""
    if out.ndim < 2:
        raise ValueError(f"need a batch of unit outputs of shape (N, units, ...), got {tuple(out.shape)}")
    per_unit = out.transpose(0, 1).reshape(out.shape[1], -1)   # (units, N·...)
    return (per_unit <= 0).all(dim=1).float().mean()
