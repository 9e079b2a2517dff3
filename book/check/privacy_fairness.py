"""Self-checks for the chapter "Privacy and fairness"."""
from __future__ import annotations

import math

import torch

from book.check.core import Case, close, run_cases

__all__ = ["clip_each_example", "sigma_for_budget", "loss_attack_auc", "ppv_from_rates", "equalised_odds_gap"]


def clip_each_example(fn) -> None:
    """``fn(g, C)``: ``g`` is ``(batch, d)``, one gradient per row -> every row scaled to norm at most ``C``."""
    from book.nn.privacy import clip_per_example
    g = torch.Generator().manual_seed(31)
    small = torch.tensor([[3.0, 4.0], [0.3, 0.4], [0.0, 0.0]], dtype=torch.float64)
    cases = [Case((small, 1.0), torch.tensor([[0.6, 0.8], [0.3, 0.4], [0.0, 0.0]], dtype=torch.float64),
                  label="norms 5, 0.5 and 0 with C = 1: only the first row shrinks; a zero row stays zero")]
    for c in (0.1, 2.0):
        gi = 3 * torch.randn(6, 10, generator=g, dtype=torch.float64)
        cases.append(Case((gi, c), clip_per_example({"w": gi}, c)["w"], public=False, label=f"random rows, C={c}"))
    run_cases("clip_each_example", fn, cases,
              hint="per ROW: norm = g.norm(dim=1, keepdim=True), scale = min(1, C / norm); clipping the whole "
                   "batch by one norm is not per-example clipping")


def _sigma_reference(eps: float, delta: float, steps: int) -> float:
    from book.nn.privacy import dp_epsilon
    lo, hi = 0.05, 500.0
    for _ in range(80):
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if dp_epsilon(1.0, mid, steps, delta) > eps else (lo, mid)
    return hi


def sigma_for_budget(fn) -> None:
    """``fn(eps, delta, steps)`` -> the smallest noise multiplier ``sigma`` with which ``steps`` full-batch
    (``q = 1``) Gaussian steps stay within ``(eps, delta)`` (within 2 %: integer or real orders both pass)."""
    cases = []
    for i, (eps, delta, steps) in enumerate([(1.0, 1e-5, 1), (8.0, 1e-5, 100), (2.0, 1e-6, 10),
                                             (0.5, 1e-5, 1000)]):
        cases.append(Case((eps, delta, steps), _sigma_reference(eps, delta, steps), public=i < 2,
                          label=f"eps={eps}, delta={delta:g}, {steps} steps"))
    run_cases("sigma_for_budget", lambda *a: float(fn(*a)), cases,
              compare=lambda got, exp: close(got, exp, rtol=0.02),
              hint="the RDP of T steps is T·α/(2σ²); eps(σ) = min over α of T·α/(2σ²) + log(1/δ)/(α-1) falls "
                   "as σ grows: solve eps(σ) = target (bisection, or the closed form of the minimum)")


def loss_attack_auc(fn) -> None:
    """``fn(member_losses, nonmember_losses)`` -> the AUC of the attack "low loss means member" (ties: half)."""
    from book.lab.privacy_fairness import auc
    g = torch.Generator().manual_seed(33)
    cases = [Case((torch.tensor([0.1, 0.2]), torch.tensor([0.3, 0.4])), 1.0,
                  label="every member's loss below every non-member's: a perfect attack"),
             Case((torch.tensor([0.5, 0.1]), torch.tensor([0.3, 0.5])), 0.625,
                  label="members [0.5, 0.1], non-members [0.3, 0.5]: one tie counts half"),
             Case((torch.tensor([0.9]), torch.tensor([0.1, 0.2])), 0.0, label="the member has the highest loss")]
    for n in (50, 300):
        m, o = torch.rand(n, generator=g), torch.rand(n + 7, generator=g) + 0.2
        m[:5] = o[:5]                                                  # some ties across the two sets
        cases.append(Case((m, o), auc(-m, -o), public=False, label=f"{n} random members"))
    run_cases("loss_attack_auc", lambda *a: float(fn(*a)), cases,
              hint="count the pairs (member, non-member) in which the member's loss is lower, add half the ties, "
                   "divide by the number of pairs")


def ppv_from_rates(fn) -> None:
    """``fn(p, tpr, fpr)`` -> the precision (PPV) that the base rate ``p``, the true-positive rate ``tpr`` and
    the false-positive rate ``fpr`` force (Chouldechova's identity, solved for the PPV)."""
    cases = [Case((0.5, 0.8, 0.2), 0.8, label="p=0.5, TPR=0.8, FPR=0.2"),
             Case((0.2, 0.8, 0.2), 0.16 / (0.16 + 0.16), label="p=0.2, same TPR and FPR: a lower PPV")]
    g = torch.Generator().manual_seed(34)
    for _ in range(4):                                   # random confusion matrices
        tp, fn_, fp, tn = (torch.rand(4, generator=g) * 100 + 1).tolist()
        n = tp + fn_ + fp + tn
        cases.append(Case(((tp + fn_) / n, tp / (tp + fn_), fp / (fp + tn)), tp / (tp + fp), public=False,
                          label="a random confusion matrix"))
    run_cases("ppv_from_rates", lambda *a: float(fn(*a)), cases,
              hint="count in one confusion matrix of n people: TP = TPR·n·p, FP = FPR·n·(1-p), "
                   "PPV = TP / (TP + FP); the base rate p does not cancel")


def equalised_odds_gap(fn) -> None:
    """``fn(pred, y, a)`` (0/1 tensors) -> ``max(|TPR_0 - TPR_1|, |FPR_0 - FPR_1|)`` between groups 0 and 1."""
    from book.lab.privacy_fairness import group_rates
    y = torch.tensor([1, 1, 0, 0, 1, 1, 0, 0])
    a = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    cases = [Case((torch.tensor([1, 1, 0, 0, 1, 0, 0, 0]), y, a), 0.5,
                  label="TPR 1 vs 0.5, FPR 0 vs 0: the TPR gap"),
             Case((torch.tensor([1, 0, 1, 0, 1, 0, 0, 0]), y, a), 0.5,
                  label="TPR 0.5 vs 0.5, FPR 0.5 vs 0: the FPR gap counts too")]
    g = torch.Generator().manual_seed(35)
    for _ in range(3):
        yi, ai, pi = (torch.randint(0, 2, (200,), generator=g) for _ in range(3))
        cases.append(Case((pi, yi, ai), group_rates(pi, yi, ai)["eo"], public=False, label="random decisions"))
    run_cases("equalised_odds_gap", lambda *a: float(fn(*a)), cases,
              hint="TPR of a group = mean decision over its y == 1 rows, FPR = over its y == 0 rows; the gap is "
                   "the larger of the two differences (absolute values)")
