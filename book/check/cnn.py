"""Self-checks of the cnn chapter's exercises."""
from __future__ import annotations

import torch

from book.check.core import Case, _g, run_cases

__all__ = ['conv_output_size', 'conv2d_single', 'maxpool2x2', 'conv2d_multi', 'dilated_stack_rf', 'avgpool_kernel']


# ---------------------------------------------------------------------------- Part III: convolution
def conv_output_size(fn) -> None:
    """``fn(n, k, stride, padding, dilation)`` -> the output length of a convolution along one axis."""
    from book.nn.conv import out_size
    params = [(28, 5, 1, 2, 1), (28, 5, 1, 0, 1), (32, 3, 2, 1, 1), (10, 3, 1, 0, 2), (7, 2, 2, 0, 1),
              (224, 7, 2, 3, 1)]
    cases = [Case(p, out_size(*p), public=i < 3, label=f"n={p[0]}, k={p[1]}, s={p[2]}, p={p[3]}, d={p[4]}")
             for i, p in enumerate(params)]
    run_cases("conv_output_size", fn, cases, hint="floor((n + 2p − d·(k − 1) − 1) / s) + 1")


def conv2d_single(fn) -> None:
    """``fn(x, w)`` -> 'valid' cross-correlation of one 2-D image x (H, W) with one kernel w (k, k)."""
    import torch.nn.functional as F
    g = _g(17)
    cases = []
    for i, (h, k) in enumerate([(3, 2), (5, 3), (8, 5)]):
        x, w = torch.randn(h, h, generator=g, dtype=torch.float64), torch.randn(k, k, generator=g, dtype=torch.float64)
        cases.append(Case((x, w), F.conv2d(x[None, None], w[None, None])[0, 0], public=i < 2,
                          label=f"{h}×{h} * {k}×{k}"))
    run_cases("conv2d_single", fn, cases, hint="out[i, j] = (x[i:i+k, j:j+k] * w).sum(); no kernel flip (PyTorch "
              "'convolution' is cross-correlation)")


def maxpool2x2(fn) -> None:
    """``fn(x)`` -> 2×2 max-pooling with stride 2 of a 2-D tensor x (H, W) with even H, W."""
    import torch.nn.functional as F
    g = _g(18)
    cases = []
    for i, h in enumerate([2, 4, 8]):
        x = torch.randn(h, h, generator=g)
        cases.append(Case((x,), F.max_pool2d(x[None, None], 2)[0, 0], public=i < 2, label=f"{h}×{h}"))
    run_cases("maxpool2x2", fn, cases, hint="x.reshape(H//2, 2, W//2, 2).amax(dim=(1, 3))")


def conv2d_multi(fn) -> None:
    """``fn(x, w, b)`` -> convolution of a batch x (N, C, H, W) with kernels w (O, C, k, k) and bias b (O,)."""
    import torch.nn.functional as F
    g = _g(19)
    cases = []
    for i, (n, c, h, o, k) in enumerate([(1, 1, 4, 1, 2), (2, 3, 6, 4, 3), (3, 2, 7, 5, 3)]):
        x, w, b = (torch.randn(shape, generator=g, dtype=torch.float64) for shape in ((n, c, h, h), (o, c, k, k), (o,)))
        cases.append(Case((x, w, b), F.conv2d(x, w, b), public=i < 2, label=f"x {tuple(x.shape)}, w {tuple(w.shape)}"))
    run_cases("conv2d_multi", fn, cases, hint="unfold: F.unfold(x, k) is (N, C·k·k, L); multiply by w.view(O, -1)")


def dilated_stack_rf(fn) -> None:
    """``fn(n, k)`` -> receptive field of n stride-1 k×k convolutions with dilations 1, 2, 4, ..., 2^(n-1)."""
    from book.nn.conv import receptive_field
    params = [(1, 3), (2, 3), (3, 3), (4, 2), (5, 3), (6, 5), (10, 3)]
    cases = [Case(p, receptive_field([(p[1], 1, 2 ** i) for i in range(p[0])])[0], public=i < 3,
                  label=f"n={p[0]}, k={p[1]}") for i, p in enumerate(params)]
    run_cases("dilated_stack_rf", fn, cases, hint="each layer adds (k − 1)·dilation; the dilations double")


def avgpool_kernel(fn) -> None:
    """``fn(C, k)`` -> weight w (C, 1, k, k) with F.conv2d(x, w, stride=k, groups=C) == F.avg_pool2d(x, k)."""
    import torch.nn.functional as F
    if not callable(fn):
        raise TypeError(f"check.avgpool_kernel takes your function itself, not {type(fn).__name__}")
    g = _g(20)

    def pooled(C, k, x):          # what the reader's kernel computes, as a grouped convolution
        w = fn(C, k)
        if not isinstance(w, torch.Tensor) or tuple(w.shape) != (C, 1, k, k):
            got = tuple(w.shape) if isinstance(w, torch.Tensor) else type(w).__name__
            raise ValueError(f"expected a tensor of shape {(C, 1, k, k)}, got {got}")
        return F.conv2d(x, w.to(x.dtype), stride=k, groups=C)
    cases = []
    for i, (C, k, h) in enumerate([(1, 2, 4), (3, 2, 8), (4, 3, 9), (2, 4, 8)]):
        x = torch.randn(2, C, h, h, generator=g, dtype=torch.float64)
        cases.append(Case((C, k, x), F.avg_pool2d(x, k), public=i < 2, label=f"C={C}, k={k}, x {tuple(x.shape)}"))
    run_cases("avgpool_kernel", pooled, cases,
              hint="the mean of a window is a sum with equal weights 1/k²; groups=C: shape (C, 1, k, k)")
