"""Self-checks of the few_shot chapter's exercises."""
from __future__ import annotations

import math

import numpy as np
import torch

from book.check.core import Case, _g, _number, close, run_cases

__all__ = ['class_prototypes', 'prototype_as_linear', 'logit_gradient', 'queries_needed']


def class_prototypes(fn) -> None:
    """``fn(z, y, n_way)`` -> the ``(n_way, D)`` mean embedding of each class (``book.lab.few_shot.prototypes``)."""
    from book.lab.few_shot import prototypes
    g = _g(70)
    cases = []
    for i, (n_way, k, dim, shuffle) in enumerate([(2, 1, 3, False), (3, 2, 4, False), (5, 5, 8, True),
                                                  (4, 3, 16, True)]):
        y = torch.arange(n_way).repeat_interleave(k)
        if shuffle:                         # support rows need not come class by class
            y = y[torch.randperm(len(y), generator=g)]
        z = torch.randn(len(y), dim, generator=g)
        cases.append(Case((z, y, n_way), prototypes(z, y, n_way), public=i < 2,
                          label=f"{n_way}-way {k}-shot, {dim} features" + (", rows shuffled" if shuffle else "")))
    run_cases("class_prototypes", fn, cases, hint="for each class k, the mean of the rows of z whose label is k")


def _same_softmax(got, expected_logits):
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        return False, f"expected a tuple (W, b), got {type(got).__name__}"
    W, b = got
    q, protos = expected_logits
    from book.lab.few_shot import proto_logits
    try:
        linear = q @ torch.as_tensor(W, dtype=q.dtype).T + torch.as_tensor(b, dtype=q.dtype)
    except (RuntimeError, TypeError) as e:
        return False, f"could not compute q @ W.T + b: {e}"
    return close(torch.softmax(linear, 1), torch.softmax(proto_logits(q, protos), 1), rtol=1e-4, atol=1e-6)


def prototype_as_linear(fn) -> None:
    """``fn(protos)`` -> ``(W, b)`` such that ``softmax(q @ W.T + b)`` equals the prototype classifier's
    ``softmax(-||q - c_k||^2)`` for every query ``q``."""
    g = _g(71)
    cases = []
    for i, (n_way, dim) in enumerate([(2, 2), (3, 4), (5, 8), (10, 3)]):
        protos = torch.randn(n_way, dim, generator=g, dtype=torch.float64) * (0.5 + i / 2)
        q = torch.randn(20, dim, generator=g, dtype=torch.float64) + 0.3
        cases.append(Case((protos,), (q, protos), public=i < 2,
                          label=f"{n_way} prototypes in {dim} dimensions, 20 queries compared"))
    run_cases("prototype_as_linear", fn, cases, compare=_same_softmax,
              hint="expand ||q - c||^2 and drop the term that is the same for every class")


def logit_gradient(fn) -> None:
    """``fn(q, c)`` -> the gradient of the logit ``-||q - c||^2`` with respect to the query ``q``
    (compared with autograd)."""
    g = _g(72)
    cases = []
    for i, dim in enumerate([2, 3, 16, 64]):
        q = torch.randn(dim, generator=g, dtype=torch.float64, requires_grad=True)
        c = torch.randn(dim, generator=g, dtype=torch.float64)
        (-((q - c) ** 2).sum()).backward()
        cases.append(Case((q.detach().clone(), c), q.grad.clone(), public=i < 2,
                          label=f"{dim} dimensions: autograd's gradient"))
    run_cases("logit_gradient", fn, cases, compare=lambda a, b: close(a, b, rtol=1e-6, atol=1e-9),
              hint="d/dq of (q - c)·(q - c) is 2 (q - c); mind the minus sign")


def _coverage_ok(got, expected):
    """``expected = (p, h)``: n queries must make a 95% interval of half-width h (normal approximation)."""
    p, h = expected
    n, why = _number(got)
    if n is None:
        return False, why
    if not math.isfinite(n) or n <= 0:
        return False, f"expected a positive number of queries, got {n}"
    rng = np.random.default_rng(73)
    n_int = int(math.ceil(n))
    p_hat = rng.binomial(n_int, p, size=40_000) / n_int
    cover = float(np.mean(np.abs(p_hat - p) <= h))
    if not 0.93 <= cover <= 0.97:
        return False, (f"with {n_int} queries, |accuracy - p| <= {h} in {cover:.1%} of 40,000 simulated "
                       "test sets; a 95% interval needs about 95%")
    return True, ""


def queries_needed(fn) -> None:
    """``fn(p, half_width)`` -> how many independent test queries make the 95% interval of a measured
    accuracy ``p`` about ``±half_width`` wide; checked by simulating binomial test sets."""
    cases = [Case((p, h), (p, h), public=i < 2, label=f"p = {p}, half-width {h}")
             for i, (p, h) in enumerate([(0.5, 0.02), (0.8, 0.01), (0.95, 0.01), (0.6, 0.005)])]
    run_cases("queries_needed", fn, cases, compare=_coverage_ok,
              hint="the standard error of a mean of n Bernoulli(p) draws is sqrt(p (1 - p) / n); "
                   "a 95% interval is about ±1.96 standard errors")
