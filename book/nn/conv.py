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


def _pool2d_loops(x, k: int, stride: int | None, reduce):
    """``reduce(window, dim=(2, 3))`` over each k×k window (stride k by default): the loop both pools share."""
    if x.ndim != 4:
        raise ValueError(f"expected (N, C, H, W), got {tuple(x.shape)}")
    s = stride or k
    Ho, Wo = out_size(x.shape[2], k, s), out_size(x.shape[3], k, s)
    out = torch.empty(*x.shape[:2], Ho, Wo, dtype=x.dtype)
    for i in range(Ho):
        for j in range(Wo):
            out[:, :, i, j] = reduce(x[:, :, i * s: i * s + k, j * s: j * s + k], dim=(2, 3))
    return out


def maxpool2d_loops(x, k: int = 2, stride: int | None = None):
    """Max over each k×k window (stride k by default)."""
    return _pool2d_loops(x, k, stride, torch.amax)


def avgpool2d_loops(x, k: int = 2, stride: int | None = None):
    """Mean over each k×k window (stride k by default), like ``F.avg_pool2d`` (no padding).

    Chapter: ``cnn``."""
    return _pool2d_loops(x, k, stride, torch.mean)


def receptive_field(layers) -> tuple[int, int]:
    """Receptive field and jump of a stack of layers, each ``(k, stride, dilation)`` along one axis.

    r_0 = 1, J_0 = 1;  r_l = r_{l-1} + d_l (k_l - 1) J_{l-1};  J_l = J_{l-1} s_l  (J: input pixels between
    neighbouring units of layer l). Pooling is a layer with its window as k. Chapter: ``cnn``."""
    r, jump = 1, 1
    for layer in layers:
        k, s, d = layer
        if min(k, s, d) < 1:
            raise ValueError(f"need k, stride, dilation >= 1, got {layer}")
        r, jump = r + d * (k - 1) * jump, jump * s
    return r, jump


def pointwise_conv2d(x, w, b=None):
    """A 1×1 convolution as what it is: the same linear map C -> O applied at every pixel.
    ``w`` has shape (O, C, 1, 1) like ``nn.Conv2d``'s weight. Chapter: ``modern_cnn``."""
    _check(x, w)
    if w.shape[2:] != (1, 1):
        raise ValueError(f"a pointwise kernel is (O, C, 1, 1), got {tuple(w.shape)}")
    out = torch.einsum("nchw,oc->nohw", x, w[:, :, 0, 0])
    return out if b is None else out + b.view(1, -1, 1, 1)


def depthwise_conv2d(x, w, b=None, stride: int = 1, padding: int = 0):
    """Depthwise convolution: channel c is convolved with its own k×k filter ``w[c, 0]`` and nothing else
    (``F.conv2d(..., groups=C)``); written as a per-channel unfold. Chapter: ``modern_cnn``."""
    if x.ndim != 4 or w.ndim != 4 or w.shape[1] != 1 or w.shape[0] != x.shape[1]:
        raise ValueError(f"depthwise: x (N, C, H, W) and w (C, 1, k, k), got {tuple(x.shape)} and {tuple(w.shape)}")
    N, C, H, W = x.shape
    k = w.shape[2]
    cols = F.unfold(x, k, padding=padding, stride=stride).view(N, C, k * k, -1)     # (N, C, k·k, L)
    out = torch.einsum("nckl,ck->ncl", cols, w.view(C, k * k))
    if b is not None:
        out = out + b.view(1, C, 1)
    return out.view(N, C, out_size(H, k, stride, padding), out_size(W, k, stride, padding))


def separable_conv2d_params(c_in: int, c_out: int, k: int, bias: bool = True) -> int:
    """Depthwise k×k (c_in filters of k·k) then pointwise 1×1 (c_out·c_in): c_in·k² + c_in·c_out (+ biases
    c_in + c_out), against c_out·c_in·k² (+ c_out) for a standard convolution. Chapter: ``modern_cnn``."""
    return c_in * k * k + c_in * c_out + ((c_in + c_out) if bias else 0)


def separable_conv2d_flops(c_in: int, c_out: int, k: int, h_out: int, w_out: int, batch: int = 1) -> int:
    """Forward FLOPs (2 per multiply-add): 2·h·w·(c_in·k² + c_in·c_out) per image, against
    2·h·w·c_out·c_in·k² for the standard convolution -- a factor 1/c_out + 1/k² of it. Chapter: ``modern_cnn``."""
    return 2 * batch * h_out * w_out * (c_in * k * k + c_in * c_out)
