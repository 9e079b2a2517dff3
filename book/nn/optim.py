"""Optimizers written from scratch, with the same defaults and update rules as ``torch.optim``.

Chapter: taught in ``gradient_descent``; Nesterov, AdaGrad, Adadelta, AdamW and the schedules in ``optimisation``.

They exist to be read (chapter "Gradient descent and optimizers") and are tested to match ``torch.optim``
step for step (``tests/chapters/test_gradient_descent.py``). Each class only implements ``update(p, g, s)``: how one
parameter tensor ``p`` moves given its gradient ``g`` and its own state dict ``s``.
"""
from __future__ import annotations

import math

import torch


class ScratchOptimizer:
    """The shared bookkeeping: a parameter list, per-parameter state, ``zero_grad`` and ``step``."""

    def __init__(self, params, lr: float):
        self.params = list(params)
        if not self.params:
            raise ValueError("optimizer got an empty parameter list")
        if not lr > 0:
            raise ValueError(f"learning rate must be positive, got {lr}")
        self.lr = lr
        self.state = [dict() for _ in self.params]
        self.t = 0  # number of steps taken (Adam's bias correction needs it)

    def zero_grad(self, set_to_none: bool = True):
        """Forget the gradients, as ``torch.optim.Optimizer.zero_grad`` does: drop them (``None``), or
        fill them with zeros when ``set_to_none=False``."""
        for p in self.params:
            if set_to_none or p.grad is None:
                p.grad = None
            else:
                p.grad.zero_()

    @torch.no_grad()
    def step(self):
        self.t += 1
        for p, s in zip(self.params, self.state):
            if p.grad is not None:
                self.update(p, p.grad, s)

    def update(self, p, g, s):  # pragma: no cover - abstract
        raise NotImplementedError


class SGD(ScratchOptimizer):
    """theta <- theta - lr * g"""

    def update(self, p, g, s):
        p -= self.lr * g


class Momentum(ScratchOptimizer):
    """v <- mu * v + g ;  theta <- theta - lr * v   (PyTorch's form: ``SGD(momentum=mu)``)."""

    def __init__(self, params, lr: float, momentum: float = 0.9):
        super().__init__(params, lr)
        self.momentum = momentum

    def update(self, p, g, s):
        v = s.setdefault("v", torch.zeros_like(p))
        v.mul_(self.momentum).add_(g)
        p -= self.lr * v


class RMSprop(ScratchOptimizer):
    """r <- a * r + (1 - a) * g^2 ;  theta <- theta - lr * g / (sqrt(r) + eps)."""

    def __init__(self, params, lr: float = 0.01, alpha: float = 0.99, eps: float = 1e-8):
        super().__init__(params, lr)
        self.alpha, self.eps = alpha, eps

    def update(self, p, g, s):
        r = s.setdefault("r", torch.zeros_like(p))
        r.mul_(self.alpha).addcmul_(g, g, value=1 - self.alpha)
        p -= self.lr * g / (r.sqrt() + self.eps)


class Adam(ScratchOptimizer):
    """m, v: moving averages of g and g^2, bias-corrected by 1 - beta^t before the step."""

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8):
        super().__init__(params, lr)
        self.beta1, self.beta2 = betas
        self.eps = eps

    def update(self, p, g, s):
        m = s.setdefault("m", torch.zeros_like(p))
        v = s.setdefault("v", torch.zeros_like(p))
        m.mul_(self.beta1).add_(g, alpha=1 - self.beta1)
        v.mul_(self.beta2).addcmul_(g, g, value=1 - self.beta2)
        m_hat = m / (1 - self.beta1 ** self.t)  # without this, the first steps are ~10x too small
        v_hat = v / (1 - self.beta2 ** self.t)
        p -= self.lr * m_hat / (v_hat.sqrt() + self.eps)


# ---- chapter ``optimisation``: Nesterov momentum, AdaGrad, Adadelta, AdamW and learning-rate schedules,
# each matched step for step against torch.optim / torch.optim.lr_scheduler
# (tests/chapters/test_optimisation.py).
class Nesterov(Momentum):
    """v <- mu * v + g ;  theta <- theta - lr * (g + mu * v)   (``SGD(momentum=mu, nesterov=True)``).

    The gradient is still taken at theta; adding ``mu * v`` once more is PyTorch's rewriting of
    Nesterov's "look ahead, then take the gradient there" (Sutskever et al., 2013)."""

    def update(self, p, g, s):
        v = s.setdefault("v", torch.zeros_like(p))
        v.mul_(self.momentum).add_(g)
        p -= self.lr * (g + self.momentum * v)


class AdaGrad(ScratchOptimizer):
    """G <- G + g^2 ;  theta <- theta - lr * g / (sqrt(G) + eps)   (``torch.optim.Adagrad``).

    G only grows, so each coordinate's steps can only get smaller over time (for the same gradient)."""

    def __init__(self, params, lr: float = 0.01, eps: float = 1e-10):
        super().__init__(params, lr)
        self.eps = eps

    def update(self, p, g, s):
        acc = s.setdefault("G", torch.zeros_like(p))
        acc.addcmul_(g, g)
        p -= self.lr * g / (acc.sqrt() + self.eps)


class Adadelta(ScratchOptimizer):
    """r <- rho r + (1-rho) g^2 ;  d = sqrt(u + eps) / sqrt(r + eps) * g ;  u <- rho u + (1-rho) d^2 ;
    theta <- theta - lr * d   (``torch.optim.Adadelta``; Zeiler's rule is ``lr = 1``).

    The ratio of two RMS values carries the units of theta, so no learning rate is needed."""

    def __init__(self, params, lr: float = 1.0, rho: float = 0.9, eps: float = 1e-6):
        super().__init__(params, lr)
        self.rho, self.eps = rho, eps

    def update(self, p, g, s):
        r = s.setdefault("r", torch.zeros_like(p))
        u = s.setdefault("u", torch.zeros_like(p))
        r.mul_(self.rho).addcmul_(g, g, value=1 - self.rho)
        d = (u + self.eps).sqrt() / (r + self.eps).sqrt() * g
        u.mul_(self.rho).addcmul_(d, d, value=1 - self.rho)
        p -= self.lr * d


class AdamW(Adam):
    """Adam with *decoupled* weight decay: theta <- theta (1 - lr * wd), then Adam's step on g alone
    (``torch.optim.AdamW``; Loshchilov & Hutter, 2019). Adding wd * theta to g instead (L2) would be
    divided by sqrt(v_hat) like the rest of the gradient."""

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2):
        super().__init__(params, lr, betas, eps)
        self.weight_decay = weight_decay

    def update(self, p, g, s):
        p.mul_(1 - self.lr * self.weight_decay)
        super().update(p, g, s)


def step_lr(t: int, base: float, step_size: int, gamma: float = 0.1) -> float:
    """Learning rate after ``t`` scheduler steps: ``base * gamma ** (t // step_size)`` (``StepLR``)."""
    return base * gamma ** (t // step_size)


def exponential_lr(t: int, base: float, gamma: float) -> float:
    """``base * gamma ** t`` (``ExponentialLR``)."""
    return base * gamma ** t


def cosine_lr(t: int, base: float, total: int, eta_min: float = 0.0) -> float:
    """Half a cosine from ``base`` at t = 0 to ``eta_min`` at t = total (``CosineAnnealingLR``)."""
    return eta_min + (base - eta_min) * (1 + math.cos(math.pi * t / total)) / 2


def warmup_cosine_lr(t: int, base: float, total: int, warmup: int, start_factor: float = 0.1) -> float:
    """Linear warm-up from ``start_factor * base`` to ``base`` over ``warmup`` steps, then a cosine to 0 at
    ``total`` (``SequentialLR([LinearLR, CosineAnnealingLR(T_max=total - warmup)], [warmup])``)."""
    if t < warmup:
        return base * (start_factor + (1 - start_factor) * t / warmup)
    return cosine_lr(t - warmup, base, total - warmup)


def one_cycle_lr(t: int, max_lr: float, total: int, pct_start: float = 0.3, div_factor: float = 25.0,
                 final_div_factor: float = 1e4) -> float:
    """``OneCycleLR``: a cosine rise from ``max_lr / div_factor`` to ``max_lr`` over the first
    ``pct_start`` of the run, then a cosine fall to ``max_lr / div_factor / final_div_factor``."""
    start = max_lr / div_factor
    end = start / final_div_factor
    peak = float(pct_start * total) - 1

    def anneal(a, b, pct):
        return b + (a - b) / 2 * (math.cos(math.pi * pct) + 1)
    if t <= peak:
        return anneal(start, max_lr, t / peak)
    return anneal(max_lr, end, (t - peak) / (total - 1 - peak))


OPTIMIZERS = {"SGD": SGD, "Momentum": Momentum, "RMSprop": RMSprop, "Adam": Adam}


def make_optimizer(name: str, params, lr: float, **hyper) -> ScratchOptimizer:
    """Build a scratch optimizer by name (``SGD``, ``Momentum``, ``RMSprop``, ``Adam``)."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {list(OPTIMIZERS)}")
    return OPTIMIZERS[name](params, lr=lr, **hyper)
