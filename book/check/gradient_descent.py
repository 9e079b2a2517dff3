"""Self-checks for the chapter "Gradient descent and optimizers"."""
from __future__ import annotations

import torch

from book.check.core import Case, run_cases

__all__ = ["quadratic_grad", "momentum_step", "adam_step", "max_stable_lr", "best_fixed_lr", "minibatch_variance"]


def _theta(*v):
    return torch.tensor(v, dtype=torch.float64)


def quadratic_grad(fn) -> None:
    """``fn(theta)`` -> gradient of J(theta) = (theta1 - 1)^2 + (theta2 - 2)^2, a tensor of shape (2,)."""
    g = torch.Generator().manual_seed(1)
    cases = [Case((_theta(1.0, 2.0),), _theta(0.0, 0.0), label="θ=[1, 2] (the minimum: gradient 0)"),
             Case((_theta(0.0, 0.0),), _theta(-2.0, -4.0)),
             Case((_theta(3.0, -1.0),), _theta(4.0, -6.0))]
    for _ in range(3):
        t = torch.randn(2, generator=g, dtype=torch.float64) * 3
        cases.append(Case((t.clone(),), torch.stack([2 * (t[0] - 1), 2 * (t[1] - 2)]), public=False,
                          label="random θ"))
    run_cases("quadratic_grad", fn, cases, hint="differentiate each squared term: d/dx (x - a)^2 = 2 (x - a)")


def momentum_step(fn) -> None:
    """``fn(theta, v, grad, lr, mu)`` -> ``(theta_new, v_new)`` in PyTorch's convention."""
    from book.check._reference import _momentum_ref  # hidden from graded code
    g = torch.Generator().manual_seed(2)
    cases = []
    args = (_theta(1.0, -1.0), _theta(0.0, 0.0), _theta(0.5, 2.0), 0.1, 0.9)
    cases.append(Case(args, _momentum_ref(*args), label="first step (v = 0): same as plain GD"))
    args = (_theta(1.0, -1.0), _theta(1.0, 1.0), _theta(0.5, 2.0), 0.1, 0.9)
    cases.append(Case(args, _momentum_ref(*args), label="v = [1, 1]: velocity carries over"))
    for _ in range(3):
        r = [torch.randn(3, generator=g, dtype=torch.float64) for _ in range(3)]
        args = (*r, 0.05, 0.8)
        cases.append(Case(args, _momentum_ref(*args), public=False, label="random tensors"))
    run_cases("momentum_step", fn, cases, hint="update v first (v = mu*v + grad), then move theta by -lr*v")


def _adam_torch(theta, grad, lr, t):
    """Reference: run torch.optim.Adam for t steps with the same gradient each step."""
    p = theta.clone().requires_grad_(True)
    opt = torch.optim.Adam([p], lr=lr)
    for _ in range(t):
        p.grad = grad.clone()
        opt.step()
    st = opt.state[p]
    return p.detach(), st["exp_avg"], st["exp_avg_sq"]


def adam_step(fn) -> None:
    """``fn(theta, m, v, grad, t, lr)`` -> ``(theta, m, v)`` after Adam step number ``t`` (1-based),
    with bias correction, beta1=0.9, beta2=0.999, eps=1e-8 -- compared with ``torch.optim.Adam``."""
    cases = []
    theta, grad = _theta(1.0, -2.0), _theta(0.3, -4.0)
    zeros = torch.zeros(2, dtype=torch.float64)
    cases.append(Case((theta, zeros, zeros, grad, 1, 0.1), _adam_torch(theta, grad, 0.1, 1),
                      label="step 1 from m = v = 0 (each coordinate moves by ≈ lr)"))
    # steps 2..4: feed the reference state of step t-1 into the reader's function
    for t in (2, 3, 10):
        p, m, v = _adam_torch(theta, grad, 0.1, t - 1)
        cases.append(Case((p, m, v, grad, t, 0.1), _adam_torch(theta, grad, 0.1, t), public=t == 2,
                          label=f"step {t}"))
    run_cases("adam_step", fn, cases, hint="m_hat = m / (1 - beta1**t) and v_hat = v / (1 - beta2**t); "
              "forgetting them makes the first step ~10x too small when m = v = 0")


def max_stable_lr(fn) -> None:
    """``fn(curvatures)`` -> the learning rate above which gradient descent on
    f(θ) = ½ Σ λ_i θ_i² diverges (λ_i = curvatures, all positive)."""
    cases = [Case(([1.0, 20.0],), 0.1, label="λ = [1, 20] (the chapter's quadratic)"),
             Case(([2.0],), 1.0),
             Case(([0.5, 4.0, 0.1],), 0.5, public=False),
             Case(([1000.0, 1.0],), 0.002, public=False)]
    run_cases("max_stable_lr", fn, cases, hint="along direction i, GD multiplies θ_i by (1 - lr·λ_i) each "
              "step; it shrinks only while |1 - lr·λ_i| < 1")


def best_fixed_lr(fn) -> None:
    """``fn(curvatures)`` -> the constant learning rate that makes gradient descent on
    f(θ) = ½ Σ λ_i θ_i² converge fastest from the worst start: it minimises ``max_i |1 - lr·λ_i|``."""
    from book.check._reference import _best_lr_ref
    cases = [Case(([1.0, 20.0],), _best_lr_ref([1.0, 20.0]), label="λ = [1, 20] (the chapter's quadratic)"),
             Case(([4.0],), _best_lr_ref([4.0]), label="one direction: one step lands on the minimum"),
             Case(([0.5, 4.0, 0.1],), _best_lr_ref([0.5, 4.0, 0.1]), public=False),
             Case(([3.0, 3.0, 1000.0],), _best_lr_ref([3.0, 3.0, 1000.0]), public=False)]
    run_cases("best_fixed_lr", fn, cases, hint="the worst contraction is set by the two extreme curvatures; "
              "balance |1 - lr·λ_min| against |1 - lr·λ_max|")


def minibatch_variance(fn) -> None:
    """``fn(per_example, B)`` -> ``E|g_B - G|²`` when the B examples of a mini-batch are drawn *without*
    replacement from the N rows of ``per_example`` (shape (N, P)); G is the mean row."""
    from book.check._reference import _minibatch_var_ref
    g = torch.Generator().manual_seed(5)
    small = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 2.0], [2.0, -3.0]], dtype=torch.float64)
    cases = [Case((small, 1), _minibatch_var_ref(small, 1), label="N = 4, B = 1 (one example: tr Σ)"),
             Case((small, 2), _minibatch_var_ref(small, 2), label="N = 4, B = 2"),
             Case((small, 4), _minibatch_var_ref(small, 4), label="B = N: the whole data set, no noise")]
    for n, b in ((50, 7), (200, 64), (30, 29)):
        x = torch.randn(n, 6, generator=g, dtype=torch.float64)
        cases.append(Case((x, b), _minibatch_var_ref(x, b), public=False, label=f"random, N = {n}, B = {b}"))
    run_cases("minibatch_variance", fn, cases, hint="with replacement it is tr Σ / B; without, the B "
              "examples are negatively correlated (they cannot repeat): a factor (N - B) / (N - 1)")
