"""Self-checks of the losses_activations chapter's exercises."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from book.check.core import Case, _g, run_cases

__all__ = ['bce_from_logits', 'logsumexp', 'd_sigmoid', 'cross_entropy']


def bce_from_logits(fn) -> None:
    """``fn(z, y)`` -> mean binary cross-entropy from logits, finite even for ``|z| = 1000``."""
    g = _g(10)
    cases = [Case((torch.tensor([0.0]), torch.tensor([1.0])), F.binary_cross_entropy_with_logits(
        torch.tensor([0.0]), torch.tensor([1.0])), label="z = 0: loss log 2")]
    z, y = torch.randn(8, generator=g) * 3, (torch.rand(8, generator=g) > 0.5).float()
    cases.append(Case((z, y), F.binary_cross_entropy_with_logits(z, y), label="random logits"))
    z, y = torch.tensor([1000.0, -1000.0, 1000.0]), torch.tensor([1.0, 0.0, 0.0])
    cases.append(Case((z, y), F.binary_cross_entropy_with_logits(z, y), public=False, label="|z| = 1000"))
    run_cases("bce_from_logits", fn, cases, hint="max(z, 0) - z*y + log(1 + exp(-|z|)); never compute sigmoid "
              "then log")


def logsumexp(fn) -> None:
    """``fn(z)`` -> log Σ exp(z) over the last dimension, without overflow."""
    g = _g(11)
    z = torch.randn(4, 6, generator=g)
    cases = [Case((torch.tensor([0.0, 0.0]),), torch.logsumexp(torch.tensor([0.0, 0.0]), -1), label="log 2"),
             Case((z,), torch.logsumexp(z, -1), label="a (4, 6) batch"),
             Case((torch.tensor([1000.0, 1000.0]),), torch.logsumexp(torch.tensor([1000.0, 1000.0]), -1),
                  public=False, label="huge values"),
             Case((torch.tensor([-1000.0, -1001.0]),), torch.logsumexp(torch.tensor([-1000.0, -1001.0]), -1),
                  public=False, label="very negative values")]
    run_cases("logsumexp", fn, cases, hint="subtract m = max(z) first: log Σ e^z = m + log Σ e^(z - m)")


def d_sigmoid(fn) -> None:
    """``fn(x)`` -> derivative of the sigmoid at x, element-wise."""
    xs = [torch.tensor([0.0]), torch.linspace(-6, 6, 13), torch.tensor([-30.0, 30.0])]
    cases = []
    for i, x in enumerate(xs):
        x_ = x.clone().requires_grad_()
        torch.sigmoid(x_).sum().backward()
        cases.append(Case((x.clone(),), x_.grad, public=i < 2, label=f"x = {x.tolist()[:3]}…"))
    run_cases("d_sigmoid", fn, cases, hint="σ'(x) = σ(x)(1 − σ(x)); its maximum is 1/4 at x = 0")


def cross_entropy(fn) -> None:
    """``fn(logits, target)`` -> mean categorical cross-entropy from logits (N, C) and class indices (N,)."""
    g = _g(12)
    logits, target = torch.randn(5, 4, generator=g), torch.tensor([0, 3, 1, 1, 2])
    big = torch.tensor([[500.0, 0.0, -500.0], [0.0, 800.0, 0.0]])
    cases = [Case((logits, target), F.cross_entropy(logits, target), label="(5, 4) logits"),
             Case((torch.zeros(2, 10), torch.tensor([3, 7])), F.cross_entropy(torch.zeros(2, 10), torch.tensor([3, 7])),
                  label="uniform over 10 classes: log 10"),
             Case((big, torch.tensor([2, 0])), F.cross_entropy(big, torch.tensor([2, 0])), public=False,
                  label="huge logits")]
    run_cases("cross_entropy", fn, cases, hint="-mean of log_softmax(z)[target]; log_softmax = z - logsumexp(z)")
