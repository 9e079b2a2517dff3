"""Self-checks of the backprop chapter's exercises."""
from __future__ import annotations

import torch

from book.check.core import Case, run_cases

__all__ = ['grad_f', 'numerical_derivative', 'matmul_backward', 'tanh_backward']


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
    run_cases("grad_f", fn, cases, hint="with u = a·b + c: ∂f/∂u = 2u, then ∂u/∂a = b, ∂u/∂b = a, ∂u/∂c = 1")


def numerical_derivative(fn) -> None:
    """``fn(f, x)`` -> central finite-difference estimate of f'(x), accurate to about 1e-6."""
    import math
    funcs = [(math.sin, 0.3, math.cos(0.3), "sin at 0.3"), (math.exp, 1.0, math.e, "exp at 1"),
             (lambda x: x ** 3, 2.0, 12.0, "x³ at 2"), (math.tanh, -0.7, 1 - math.tanh(-0.7) ** 2, "tanh")]
    cases = [Case((f, x), d, public=i < 2, label=label) for i, (f, x, d, label) in enumerate(funcs)]
    run_cases("numerical_derivative", fn, cases,
              compare=lambda got, exp: (abs(float(got) - exp) < 1e-5, f"error {abs(float(got) - exp):.2g}"),
              hint="(f(x + h) - f(x - h)) / (2h) with h around 1e-5: error ~ h², one-sided would be ~ h")


def matmul_backward(fn) -> None:
    """``fn(X, W, G)`` -> (dL/dX, dL/dW) for Y = X @ W, given G = dL/dY."""
    g = _g(13)
    cases = []
    for i, (n, k, m) in enumerate([(2, 3, 4), (5, 1, 2), (3, 6, 3)]):
        X, W, G = (torch.randn(s, generator=g, dtype=torch.float64) for s in ((n, k), (k, m), (n, m)))
        Xr, Wr = X.clone().requires_grad_(), W.clone().requires_grad_()
        (Xr @ Wr).backward(G)
        cases.append(Case((X, W, G), (Xr.grad, Wr.grad), public=i == 0, label=f"({n},{k}) @ ({k},{m})"))
    run_cases("matmul_backward", fn, cases, hint="dX = G @ Wᵀ and dW = Xᵀ @ G: check the shapes")


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
    run_cases("tanh_backward", fn, cases, hint="local derivative 1 - tanh(x)², times the incoming gradient")
