"""Convolution and max-pooling from scratch -- first as loops, then as unfold + matrix product --
tested against torch.nn.functional.conv2d / max_pool2d (tests/chapters/test_cnn.py).

Chapter: taught in ``cnn``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def out_size(n: int, k: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> int:
    """Output length along one axis: floor((n + 2p - d(k - 1) - 1) / s) + 1."""
    if min(n, k, stride, dilation) < 1 or padding < 0:
        raise ValueError(f"need n, k, stride, dilation >= 1 and padding >= 0, got n={n}, k={k}, "
                         f"stride={stride}, padding={padding}, dilation={dilation}")
    size = (n + 2 * padding - dilation * (k - 1) - 1) // stride + 1
    if size < 1:
        raise ValueError(f"a {k}-wide kernel (dilation {dilation}) does not fit an input of {n} with padding {padding}")
    return size


def _check(x, w):
    if x.ndim != 4 or w.ndim != 4:
        raise ValueError(f"expected x of shape (N, C, H, W) and w of shape (C_out, C, kH, kW), got {tuple(x.shape)} "
                         f"and {tuple(w.shape)}")
    if x.shape[1] != w.shape[1]:
        raise ValueError(f"x has {x.shape[1]} channels but the kernel expects {w.shape[1]}")


def conv2d_loops(x, w, b=None, stride: int = 1, padding: int = 0, dilation: int = 1):
    """The definition, one output pixel at a time:
    out[n, o, i, j] = b[o] + Σ_{c,u,v} x[n, c, i·s + u·d, j·s + v·d] w[o, c, u, v]."""
    _check(x, w)
    N, C, H, W = x.shape
    O, _, kh, kw = w.shape
    x = F.pad(x, (padding,) * 4)
    Ho, Wo = out_size(H, kh, stride, padding, dilation), out_size(W, kw, stride, padding, dilation)
    out = torch.zeros(N, O, Ho, Wo, dtype=x.dtype)
    for i in range(Ho):
        for j in range(Wo):
            patch = x[:, :, i * stride: i * stride + dilation * (kh - 1) + 1: dilation,
                      j * stride: j * stride + dilation * (kw - 1) + 1: dilation]          # (N, C, kh, kw)
            out[:, :, i, j] = torch.einsum("nchw,ochw->no", patch, w)
    return out if b is None else out + b.view(1, O, 1, 1)


def conv2d_unfold(x, w, b=None, stride: int = 1, padding: int = 0, dilation: int = 1):
    """The same as one matrix product: unfold every receptive field into a column (im2col)."""
    _check(x, w)
    N, C, H, W = x.shape
    O, _, kh, kw = w.shape
    cols = F.unfold(x, (kh, kw), dilation=dilation, padding=padding, stride=stride)   # (N, C·kh·kw, L)
    out = w.view(O, -1) @ cols                                                          # (N, O, L)
    if b is not None:
        out = out + b.view(1, O, 1)
    return out.view(N, O, out_size(H, kh, stride, padding, dilation), out_size(W, kw, stride, padding, dilation))


def maxpool2d_loops(x, k: int = 2, stride: int | None = None):
    """Max over each k×k window (stride k by default)."""
    if x.ndim != 4:
        raise ValueError(f"expected (N, C, H, W), got {tuple(x.shape)}")
    s = stride or k
    Ho, Wo = out_size(x.shape[2], k, s), out_size(x.shape[3], k, s)
    out = torch.empty(*x.shape[:2], Ho, Wo, dtype=x.dtype)
    for i in range(Ho):
        for j in range(Wo):
            out[:, :, i, j] = x[:, :, i * s: i * s + k, j * s: j * s + k].amax(dim=(2, 3))
    return out
