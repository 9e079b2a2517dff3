"""Optimizers written from scratch, with the same defaults and update rules as ``torch.optim``.

Chapter: taught in ``gradient_descent``.

They exist to be read (chapter "Gradient descent and optimizers") and are tested to match ``torch.optim``
step for step (``tests/chapters/test_gradient_descent.py``). Each class only implements ``update(p, g, s)``: how one
parameter tensor ``p`` moves given its gradient ``g`` and its own state dict ``s``.
"""
from __future__ import annotations

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


OPTIMIZERS = {"SGD": SGD, "Momentum": Momentum, "RMSprop": RMSprop, "Adam": Adam}


def make_optimizer(name: str, params, lr: float, **hyper) -> ScratchOptimizer:
    """Build a scratch optimizer by name (``SGD``, ``Momentum``, ``RMSprop``, ``Adam``)."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {list(OPTIMIZERS)}")
    return OPTIMIZERS[name](params, lr=lr, **hyper)
