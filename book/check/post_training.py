"""Self-checks of the post_training chapter's exercises."""
from __future__ import annotations

import torch

from book.check.core import Case, _g, close, run_cases

__all__ = ["sft_labels", "dpo_objective", "bt_gradient", "kl_optimal_value"]


def sft_labels(fn) -> None:
    """``fn(ids, prompt_len)`` -> next-token labels with every prompt token's label set to -100."""
    from book.nn.preference import masked_labels
    g = _g(81)
    cases = []
    for i, (B, T, p) in enumerate([(2, 7, 3), (3, 10, 4), (1, 5, 1), (4, 6, 5)]):
        ids = torch.randint(0, 20, (B, T), generator=g)
        cases.append(Case((ids, p), masked_labels(ids, p), public=i < 2, label=f"ids {B}x{T}, prompt {p}"))
    run_cases("sft_labels", fn, cases, compare=lambda got, exp: close(got, exp, rtol=0, atol=0),
              hint="position t predicts token t + 1; keep it only when t + 1 >= prompt_len; the last "
                   "position predicts nothing")


def dpo_objective(fn) -> None:
    """``fn(logp_chosen, logp_rejected, ref_chosen, ref_rejected, beta)`` -> the mean DPO loss."""
    from book.nn.preference import dpo_loss
    g = _g(82)
    cases = []
    for i, (n, beta) in enumerate([(4, 0.1), (8, 0.5), (16, 2.0), (3, 0.01)]):
        a = [torch.randn(n, generator=g) * 3 - 5 for _ in range(4)]
        cases.append(Case((*a, beta), dpo_loss(*a, beta), public=i < 2, label=f"{n} pairs, beta={beta}"))
    run_cases("dpo_objective", fn, cases, compare=lambda got, exp: close(got, exp, rtol=1e-5, atol=1e-6),
              hint="-log sigmoid(beta * ((chosen - ref_chosen) - (rejected - ref_rejected))), averaged; "
                   "use F.logsigmoid for stability")


def bt_gradient(fn) -> None:
    """``fn(r_chosen, r_rejected)`` -> d/d r_chosen of the per-pair loss -log sigmoid(r_chosen - r_rejected)."""
    from book.nn.preference import bradley_terry_loss
    g = _g(83)
    cases = []
    for i, (n, scale) in enumerate([(5, 1.0), (6, 4.0), (4, 20.0)]):
        rc = (torch.randn(n, generator=g) * scale).requires_grad_()
        rr = torch.randn(n, generator=g) * scale
        grad, = torch.autograd.grad(bradley_terry_loss(rc, rr) * n, rc)   # per pair: undo the mean
        cases.append(Case((rc.detach(), rr), grad, public=i < 2, label=f"{n} pairs, scale {scale}"))
    run_cases("bt_gradient", fn, cases, compare=lambda got, exp: close(got, exp, rtol=1e-4, atol=1e-6),
              hint="d/dz of -log sigmoid(z) is -(1 - sigmoid(z)) = -sigmoid(-z), with z = r_chosen - r_rejected")


def kl_optimal_value(fn) -> None:
    """``fn(p_ref, r, beta)`` -> max over pi of E_pi[r] - beta KL(pi || p_ref), on a finite set of answers."""
    from book.nn.preference import kl_regularised_objective, kl_regularised_optimum
    g = _g(84)
    cases = []
    for i, (n, beta) in enumerate([(3, 1.0), (5, 0.2), (8, 5.0), (4, 0.05)]):
        p_ref = torch.rand(n, generator=g).add(0.05)
        p_ref = p_ref / p_ref.sum()
        r = torch.randn(n, generator=g)
        best = kl_regularised_optimum(p_ref.log(), r, beta)
        value = kl_regularised_objective(best, p_ref.log(), r, beta)   # evaluated at the optimum itself
        cases.append(Case((p_ref, r, beta), value, public=i < 2, label=f"{n} answers, beta={beta}"))
    run_cases("kl_optimal_value", fn, cases, compare=lambda got, exp: close(got, exp, rtol=1e-4, atol=1e-5),
              hint="put pi* = p_ref exp(r / beta) / Z into the objective: everything but one term cancels")
