"""Self-checks of the backprop chapter's exercises."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from book.check.core import Case, run_cases
from book.lab.backprop import mlp_blocks, saved_activation_bytes

__all__ = ['grad_f', 'numerical_derivative', 'tanh_backward', 'linear_layout_backward', 'mlp_grads',
           'jacobian_by_vjps', 'gelu_saved_bytes']


def _g(seed):
    return torch.Generator().manual_seed(seed)


def grad_f(fn) -> None:
    """``fn(a, b, c)`` -> (∂f/∂a, ∂f/∂b, ∂f/∂c) of f = (a·b + c)² by hand (floats)."""
    def ref(a, b, c):
        t = [torch.tensor(float(v), dtype=torch.float64, requires_grad=True) for v in (a, b, c)]
        ((t[0] * t[1] + t[2]) ** 2).backward()
        return tuple(float(v.grad) for v in t)
    pts = [(1.0, 2.0, 3.0), (0.0, -1.0, 0.5), (-2.0, 0.3, 4.0), (1.5, 1.5, -2.25)]
    cases = [Case(p, ref(*p), public=i < 2) for i, p in enumerate(pts)]
    run_cases("grad_f", fn, cases, hint="name the inner expression u = a·b + c and apply the chain rule through u")


def numerical_derivative(fn) -> None:
    """``fn(f, x)`` -> central finite-difference estimate of f'(x), accurate to about 1e-6."""
    import math
    funcs = [(math.sin, 0.3, math.cos(0.3), "sin at 0.3"), (math.exp, 1.0, math.e, "exp at 1"),
             (lambda x: x ** 3, 2.0, 12.0, "x³ at 2"), (math.tanh, -0.7, 1 - math.tanh(-0.7) ** 2, "tanh")]
    cases = [Case((f, x), d, public=i < 2, label=label) for i, (f, x, d, label) in enumerate(funcs)]
    run_cases("numerical_derivative", fn, cases,
              compare=lambda got, exp: (abs(float(got) - exp) < 1e-5, f"error {abs(float(got) - exp):.2g}"),
              hint="a symmetric difference around x is accurate to O(h²); a one-sided one only to O(h)")


def tanh_backward(fn) -> None:
    """``fn(x, grad_out)`` -> gradient flowing into x through y = tanh(x), given grad_out = dL/dy."""
    g = _g(15)
    cases = []
    for i, shape in enumerate([(3,), (2, 4), (5,)]):
        x, go = (torch.randn(shape, generator=g, dtype=torch.float64) * 2,
                 torch.randn(shape, generator=g, dtype=torch.float64))
        xr = x.clone().requires_grad_()
        torch.tanh(xr).backward(go)
        cases.append(Case((x, go), xr.grad, public=i < 2, label=f"shape {shape}"))
    run_cases("tanh_backward", fn, cases, hint="the local derivative of tanh, times the incoming gradient")


def linear_layout_backward(fn) -> None:
    """``fn(x, weight, grad_out)`` -> (dx, dweight, dbias) for PyTorch's layout y = x @ weightᵀ + bias, with
    weight of shape (d_out, d_in) as in ``nn.Linear``; compared with autograd on ``F.linear``."""
    g = _g(16)
    cases = []
    for i, (n, d_in, d_out) in enumerate([(4, 3, 2), (1, 5, 3), (6, 2, 7), (3, 4, 4)]):
        x, w, b, go = (torch.randn(s, generator=g, dtype=torch.float64)
                       for s in ((n, d_in), (d_out, d_in), (d_out,), (n, d_out)))
        xr, wr, br = (t.clone().requires_grad_() for t in (x, w, b))
        F.linear(xr, wr, br).backward(go)
        cases.append(Case((x, w, go), (xr.grad, wr.grad, br.grad), public=i < 2,
                          label=f"batch {n}, {d_in} -> {d_out}"))
    run_cases("linear_layout_backward", fn, cases,
              hint="write Y_ij as a sum over k for this layout first; then match shapes")


def _mlp_loss(X, W1, b1, W2, b2, Y):
    return F.mse_loss(torch.tanh(X @ W1 + b1) @ W2 + b2, Y)


def mlp_grads(fn) -> None:
    """``fn(X, W1, b1, W2, b2, Y)`` -> (dW1, db1, dW2, db2) of the mean squared error (mean over every
    entry, as ``F.mse_loss``) of tanh(X W1 + b1) W2 + b2 against Y, by hand; compared with autograd."""
    g = _g(17)
    cases = []
    for i, (n, d, h, c) in enumerate([(4, 3, 5, 3), (8, 2, 6, 4), (16, 5, 10, 10), (1, 4, 3, 2)]):
        X = torch.randn(n, d, generator=g, dtype=torch.float64)
        params = [torch.randn(s, generator=g, dtype=torch.float64) for s in ((d, h), (h,), (h, c), (c,))]
        Y = torch.randn(n, c, generator=g, dtype=torch.float64)
        ps = [p.clone().requires_grad_() for p in params]
        _mlp_loss(X, *ps, Y).backward()
        cases.append(Case((X, *params, Y), tuple(p.grad for p in ps), public=i < 2,
                          label=f"N = {n}, {d} -> {h} -> {c}"))
    run_cases("mlp_grads", fn, cases,
              hint="go backwards one operation at a time, keeping every gradient the shape of its tensor")


def jacobian_by_vjps(fn) -> None:
    """``fn(f, x)`` -> the Jacobian (m, n) of f: Rⁿ -> Rᵐ at x (1-D tensors), built from VJPs."""
    g = _g(18)
    A = torch.randn(3, 5, generator=g, dtype=torch.float64)
    funcs = [(lambda x: A @ x, torch.randn(5, generator=g, dtype=torch.float64), True, "linear map R⁵ -> R³"),
             (lambda x: torch.tanh(x) * x.sum(), torch.randn(4, generator=g, dtype=torch.float64), True,
              "tanh(x)·Σx, R⁴ -> R⁴"),
             (lambda x: torch.stack([x.prod(), x.pow(2).sum()]), torch.randn(6, generator=g, dtype=torch.float64),
              False, "R⁶ -> R²"),
             (lambda x: torch.cumsum(x.exp(), 0), torch.randn(3, generator=g, dtype=torch.float64), False,
              "cumulative sum of eˣ")]
    cases = [Case((f, x), torch.func.jacrev(f)(x), public=pub, label=lab) for f, x, pub, lab in funcs]
    run_cases("jacobian_by_vjps", fn, cases,
              hint="a VJP uᵀJ with u = a basis vector picks out one row or one column of J: which one?")


def gelu_saved_bytes(fn) -> None:
    """``fn(batch, width, depth)`` -> bytes autograd saves for the backward pass of ``depth`` blocks of
    Linear(width, width) + GELU on a float32 input (batch, width), parameters excluded -- compared with
    what :func:`book.lab.backprop.saved_activation_bytes` measures."""
    specs = [((8, 16, 1), True), ((4, 32, 3), True), ((16, 8, 5), False), ((2, 64, 2), False)]
    cases = []
    for args, pub in specs:
        torch.manual_seed(0)
        measured = saved_activation_bytes(mlp_blocks(args[1], args[2], nn.GELU), torch.randn(args[0], args[1]))
        cases.append(Case(args, measured, public=pub, label=f"batch {args[0]}, width {args[1]}, depth {args[2]}"))
    run_cases("gelu_saved_bytes", fn, cases,
              hint="GELU's derivative needs its input, ReLU's only its output: list which buffers each op keeps")
