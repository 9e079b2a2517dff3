"""Self-checks of the losses_activations chapter's exercises."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from book.check.core import Case, _g, _number, run_cases
from book.nn import losses as L

__all__ = ["bce_from_logits", "logsumexp", "d_sigmoid", "cross_entropy", "gaussian_nll_dsigma",
           "kl_categorical", "tempered_ce_grad", "best_constant_ce"]


def bce_from_logits(fn) -> None:
    """``fn(z, y)`` -> mean binary cross-entropy from logits, finite even for ``|z| = 1000``."""
    g = _g(10)
    cases = [Case((torch.tensor([0.0]), torch.tensor([1.0])), F.binary_cross_entropy_with_logits(
        torch.tensor([0.0]), torch.tensor([1.0])), label="z = 0: loss log 2")]
    z, y = torch.randn(8, generator=g) * 3, (torch.rand(8, generator=g) > 0.5).float()
    cases.append(Case((z, y), F.binary_cross_entropy_with_logits(z, y), label="random logits"))
    z, y = torch.tensor([1000.0, -1000.0, 1000.0]), torch.tensor([1.0, 0.0, 0.0])
    cases.append(Case((z, y), F.binary_cross_entropy_with_logits(z, y), public=False, label="|z| = 1000"))
    run_cases("bce_from_logits", fn, cases, hint="substitute p = σ(z) into the loss and simplify log σ(z) and "
              "log(1 − σ(z)) before computing anything: which exponential can overflow?")


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
    run_cases("logsumexp", fn, cases, hint="adding a constant c to every z_j changes log Σ e^z by exactly c: "
              "which c keeps every exponential at most 1?")


def d_sigmoid(fn) -> None:
    """``fn(x)`` -> derivative of the sigmoid at x, element-wise."""
    xs = [torch.tensor([0.0]), torch.linspace(-6, 6, 13), torch.tensor([-30.0, 30.0])]
    cases = []
    for i, x in enumerate(xs):
        x_ = x.clone().requires_grad_()
        torch.sigmoid(x_).sum().backward()
        cases.append(Case((x.clone(),), x_.grad, public=i < 2, label=f"x = {x.tolist()[:3]}…"))
    run_cases("d_sigmoid", fn, cases, hint="differentiate 1 / (1 + e^(−x)) and write the result in terms of "
              "σ(x) itself")


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
    run_cases("cross_entropy", fn, cases, hint="the loss is −log of the target's softmax probability: write that log "
              "without computing the probability")


def gaussian_nll_dsigma(fn) -> None:
    """``fn(pred, y, sigma)`` -> ∂/∂σ of the mean Gaussian negative log-likelihood of y under N(pred, σ²)
    (a float), derived by hand; compared with autograd on :func:`book.nn.losses.gaussian_nll`."""
    g = _g(20)
    cases = []
    for i, (n, sigma) in enumerate([(6, 1.0), (10, 0.5), (8, 2.0), (12, 0.3)]):
        pred = torch.randn(n, generator=g, dtype=torch.float64)
        y = pred + torch.randn(n, generator=g, dtype=torch.float64) * 0.7
        s = torch.tensor(sigma, dtype=torch.float64, requires_grad=True)
        L.gaussian_nll(pred, y, s).backward()
        cases.append(Case((pred, y, sigma), float(s.grad), public=i < 2, label=f"n = {n}, σ = {sigma}"))
    pred, y = torch.zeros(4, dtype=torch.float64), torch.tensor([1.0, -1.0, 1.0, -1.0], dtype=torch.float64)
    cases.append(Case((pred, y, 1.0), 0.0, public=False, label="σ² equal to the MSE: a stationary point"))
    run_cases("gaussian_nll_dsigma", fn, cases, compare=lambda got, exp: _close_float(got, exp),
              hint="write the mean NLL as a function of σ alone: which terms contain σ, and how?")


def _close_float(got, expected) -> tuple[bool, str]:
    value, why = _number(got)
    if value is None:
        return False, why
    ok = abs(value - expected) <= 1e-6 + 1e-6 * abs(expected)
    return ok, "" if ok else f"off by {abs(value - expected):.3g}"


def kl_categorical(fn) -> None:
    """``fn(p, q)`` -> KL(p ‖ q) along the last dimension (0 log 0 = 0), against torch.distributions."""
    from torch.distributions import Categorical, kl_divergence
    g = _g(21)
    p, q = (torch.softmax(torch.randn(5, 4, generator=g, dtype=torch.float64) * 2, -1) for _ in range(2))
    with_zero = torch.tensor([[0.5, 0.5, 0.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
    q3 = torch.tensor([[0.2, 0.3, 0.5], [0.1, 0.6, 0.3]], dtype=torch.float64)
    skew = torch.tensor([0.9, 0.05, 0.05], dtype=torch.float64)
    flat = torch.full((3,), 1 / 3, dtype=torch.float64)
    pairs = [((p, q), True, "a batch of 5 pairs over 4 outcomes"),
             ((skew, flat), True, "p = [0.9, 0.05, 0.05], q uniform"),
             ((with_zero, q3), False, "p has zeros (0 log 0 = 0)"),
             ((flat, skew), False, "the same pair swapped: KL is not symmetric")]
    cases = [Case(a, kl_divergence(Categorical(probs=a[0]), Categorical(probs=a[1])), public=pub, label=lab)
             for a, pub, lab in pairs]
    run_cases("kl_categorical", fn, cases,
              hint="the definition is an expectation under p: which distribution weights the sum?")


def tempered_ce_grad(fn) -> None:
    """``fn(logits, target, T)`` -> ∂/∂logits of the mean cross-entropy of the tempered logits z / T, shape
    (N, C), derived by hand (no autograd); compared with autograd on ``F.cross_entropy(z / T, target)``."""
    g = _g(22)
    cases = []
    for i, (n, c, temp) in enumerate([(1, 3, 2.0), (4, 5, 0.5), (7, 10, 3.0), (3, 2, 1.0)]):
        z = (torch.randn(n, c, generator=g, dtype=torch.float64) * 3).requires_grad_()
        t = torch.randint(0, c, (n,), generator=g)
        F.cross_entropy(z / temp, t).backward()
        cases.append(Case((z.detach().clone(), t, temp), z.grad, public=i < 2, label=f"N = {n}, C = {c}, T = {temp}"))
    run_cases("tempered_ce_grad", fn, cases,
              hint="name the tempered logits u = z / T: you know the gradient with respect to u; what links u and z?")


def best_constant_ce(fn) -> None:
    """``fn(labels, num_classes)`` -> the lowest mean cross-entropy (nats) that one fixed probability vector,
    predicted for every example, can reach on these labels; a number."""
    g = _g(23)
    specs = [(torch.tensor([0, 0, 1, 2]), 3, True, "labels [0, 0, 1, 2]"),
             (torch.tensor([1, 1, 1, 1]), 2, True, "one class only"),
             (torch.randint(0, 10, (200,), generator=g), 10, False, "200 labels, 10 classes"),
             (torch.tensor([0, 1, 0, 1, 0, 0]), 5, False, "classes 2-4 never occur")]
    cases = []
    for labels, c, pub, lab in specs:
        freq = torch.bincount(labels, minlength=c).double() / len(labels)
        cases.append(Case((labels, c), float(L.entropy(freq)), public=pub, label=lab))
    run_cases("best_constant_ce", fn, cases, compare=lambda got, exp: _close_float(got, exp),
              hint="H(p, q) = H(p) + KL(p ‖ q): which q makes the second term vanish, and what is p here?")
