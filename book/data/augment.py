"""Data augmentation that keeps a digit's class: small shifts and rotations, never flips.

Chapter: ``cnn`` (augmentations that keep the label, and what training with horizontal flips costs:
:func:`hflip` and :func:`random_hflip` exist only for that measurement).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def random_affine(x: torch.Tensor, max_shift: float = 2.0, max_degrees: float = 10.0,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Shift each image by up to ``max_shift`` pixels and rotate it by up to ``max_degrees`` (bilinear, zero fill).

    A horizontal flip is *not* offered: it turns a 2, 3, 4, 5, 7 or 9 into a shape that is no digit,
    i.e. it changes the label. Works on (N, C, H, W) batches on any device; the random draws are on the CPU.
    """
    if x.ndim != 4:
        raise ValueError(f"expected images of shape (N, C, H, W), got {tuple(x.shape)}")
    n, _, h, w = x.shape
    angle = (torch.rand(n, generator=generator) * 2 - 1) * math.radians(max_degrees)
    shift = (torch.rand(n, 2, generator=generator) * 2 - 1) * max_shift
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1], theta[:, 1, 0], theta[:, 1, 1] = cos, -sin, sin, cos
    theta[:, 0, 2] = shift[:, 0] * 2 / w          # affine_grid works in [-1, 1] coordinates
    theta[:, 1, 2] = shift[:, 1] * 2 / h
    grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, padding_mode="zeros", align_corners=False)


def hflip(x: torch.Tensor) -> torch.Tensor:
    """A horizontal flip -- here only to show what it does to digits."""
    return x.flip(-1)


def random_hflip(x: torch.Tensor, p: float = 0.5, generator: torch.Generator | None = None) -> torch.Tensor:
    """Flip each image horizontally with probability ``p`` -- the augmentation the ``cnn`` chapter measures
    as harmful for digits (the random draws are on the CPU, like :func:`random_affine`'s)."""
    if x.ndim != 4:
        raise ValueError(f"expected images of shape (N, C, H, W), got {tuple(x.shape)}")
    if not 0 <= p <= 1:
        raise ValueError(f"p is a probability, got {p}")
    flip = (torch.rand(len(x), generator=generator) < p).to(x.device).view(-1, 1, 1, 1)
    return torch.where(flip, x.flip(-1), x)
