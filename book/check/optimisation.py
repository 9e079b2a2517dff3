"""Self-checks for the chapter "Optimisation in depth"."""
from __future__ import annotations

import torch

from book.check.core import Case, run_cases

__all__ = ["nesterov_step", "nesterov_max_lr", "adagrad_step_size", "halving_steps", "lasso_lambda_max"]


def _nesterov_torch(theta, v, grad, lr, mu):
    """Reference: one step of torch.optim.SGD(nesterov=True) from parameters theta and velocity v."""
    p = theta.clone().requires_grad_(True)
    opt = torch.optim.SGD([p], lr=lr, momentum=mu, nesterov=True)
    if v is not None:
        opt.state[p]["momentum_buffer"] = v.clone()
    p.grad = grad.clone()
    opt.step()
    return p.detach(), opt.state[p]["momentum_buffer"].clone()


def nesterov_step(fn) -> None:
    """``fn(theta, v, grad, lr, mu)`` -> ``(theta_new, v_new)``, compared with ``torch.optim.SGD(nesterov=True)``."""
    t = lambda *v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    g = torch.Generator().manual_seed(3)
    cases = []
    theta, grad = t(1.0, -1.0), t(0.5, 2.0)
    # torch starts its buffer at the first gradient: the same as v = 0 followed by v = mu*0 + g
    cases.append(Case((theta, t(0.0, 0.0), grad, 0.1, 0.9), _nesterov_torch(theta, None, grad, 0.1, 0.9),
                      label="first step (v = 0)"))
    v = t(1.0, -2.0)
    cases.append(Case((theta, v, grad, 0.1, 0.9), _nesterov_torch(theta, v, grad, 0.1, 0.9),
                      label="v = [1, -2]: the velocity enters twice"))
    for _ in range(3):
        r = [torch.randn(4, generator=g, dtype=torch.float64) for _ in range(3)]
        cases.append(Case((*r, 0.05, 0.8), _nesterov_torch(r[0], r[1], r[2], 0.05, 0.8), public=False,
                          label="random tensors"))
    run_cases("nesterov_step", fn, cases, hint="v_new = mu*v + grad, then theta - lr*(grad + mu*v_new)")


def nesterov_max_lr(fn) -> None:
    """``fn(curvature, mu)`` -> the largest learning rate for which PyTorch's Nesterov momentum converges on
    f(θ) = ½ λ θ²."""
    from book.check._reference import _nesterov_lr_ref
    cases = [Case((20.0, 0.9), _nesterov_lr_ref(20.0, 0.9), label="λ = 20, μ = 0.9 (the chapter's valley)"),
             Case((1.0, 0.0), _nesterov_lr_ref(1.0, 0.0), label="μ = 0: plain gradient descent"),
             Case((4.0, 0.5), _nesterov_lr_ref(4.0, 0.5), public=False),
             Case((0.3, 0.99), _nesterov_lr_ref(0.3, 0.99), public=False)]
    run_cases("nesterov_max_lr", fn, cases, hint="one eigenvalue of the 2x2 step matrix reaches -1 at the "
              "limit: solve det(M + I) = 0 for the learning rate")


def _adagrad_torch(t, lr, g):
    p = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adagrad([p], lr=lr)
    before = 0.0
    for _ in range(t):
        before = p.item()
        p.grad = torch.tensor([g], dtype=torch.float64)
        opt.step()
    return abs(p.item() - before)


def adagrad_step_size(fn) -> None:
    """``fn(t, lr, g)`` -> the size of AdaGrad's step number t under a constant gradient g, compared with
    ``torch.optim.Adagrad``."""
    cases = [Case((1, 0.1, 0.7), _adagrad_torch(1, 0.1, 0.7), label="step 1: about lr"),
             Case((4, 0.1, 0.7), _adagrad_torch(4, 0.1, 0.7), label="step 4"),
             Case((100, 0.5, -3.0), _adagrad_torch(100, 0.5, -3.0), label="step 100, a negative gradient"),
             Case((37, 0.01, 1e-3), _adagrad_torch(37, 0.01, 1e-3), public=False),
             Case((500, 1.0, 20.0), _adagrad_torch(500, 1.0, 20.0), public=False)]
    run_cases("adagrad_step_size", fn, cases, hint="after t equal gradients the accumulator holds t·g²")


def halving_steps(fn) -> None:
    """``fn(lr, weight_decay)`` -> the first step count after which SGD's weight decay alone has halved a
    weight (an integer)."""
    from book.check._reference import _halving_ref
    cases = [Case((0.1, 0.01), _halving_ref(0.1, 0.01), label="lr = 0.1, weight decay 0.01"),
             Case((0.5, 1.0), _halving_ref(0.5, 1.0), label="lr·λ = 0.5: one step halves it"),
             Case((0.01, 5e-4), _halving_ref(0.01, 5e-4), public=False),
             Case((0.3, 0.1), _halving_ref(0.3, 0.1), public=False)]
    run_cases("halving_steps", fn, cases, compare=_same_count,
              hint="each step multiplies the weight by (1 - lr·λ); round the step count up")


def _same_count(got, expected):
    try:
        ok = float(got) == expected
    except (TypeError, ValueError):
        return False, f"expected a whole number of steps, got {type(got).__name__}"
    return ok, "" if ok else "not the first step count that halves the weight"


def lasso_lambda_max(fn) -> None:
    """``fn(X, y)`` -> the smallest λ for which w = 0 minimises ``(1/2n)|y - Xw|² + λ|w|_1``."""
    from book.check._reference import _lasso_max_ref
    g = torch.Generator().manual_seed(4)
    X1 = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]], dtype=torch.float64)
    y1 = torch.tensor([1.0, -1.0, 0.5], dtype=torch.float64)
    cases = [Case((X1, y1), _lasso_max_ref(X1, y1), label="3 examples, 2 features")]
    for n, p in ((50, 5), (200, 30)):
        X = torch.randn(n, p, generator=g, dtype=torch.float64)
        y = X[:, 0] - X[:, 1] + torch.randn(n, generator=g, dtype=torch.float64)
        cases.append(Case((X, y), _lasso_max_ref(X, y), public=False, label=f"random, n = {n}, p = {p}"))
    run_cases("lasso_lambda_max", fn, cases, hint="at w = 0 the squared error's gradient is -Xᵀy / n; the "
              "penalty's subgradient can cancel entries up to λ in size")
