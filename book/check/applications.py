"""Self-checks for the chapter "Applications: classifying text and images"."""
from __future__ import annotations

import torch

from book.check.core import Case, run_cases

__all__ = ["confusion", "precision_recall", "macro_f1", "topk_accuracy", "always_healthy_macro_f1",
           "precision_at"]


def _cm(t, p, k):
    return torch.bincount(t * k + p, minlength=k * k).view(k, k)


def _f1(cm):
    cm = cm.double()
    tp = cm.diag()
    p = torch.where(cm.sum(0) > 0, tp / cm.sum(0).clamp(min=1), torch.zeros_like(tp))
    r = torch.where(cm.sum(1) > 0, tp / cm.sum(1).clamp(min=1), torch.zeros_like(tp))
    return torch.where(p + r > 0, 2 * p * r / (p + r).clamp(min=1e-12), torch.zeros_like(tp)).mean().item()


def confusion(fn) -> None:
    """``fn(y_true, y_pred, k)`` -> k x k counts, rows = true class."""
    g = torch.Generator().manual_seed(31)
    t, p = torch.tensor([0, 0, 1, 2, 2, 2]), torch.tensor([0, 1, 1, 2, 0, 2])
    cases = [Case((t, p, 3), torch.tensor([[1, 1, 0], [0, 1, 0], [1, 0, 2]]), label="six examples, three classes")]
    t2, p2 = torch.randint(0, 5, (200,), generator=g), torch.randint(0, 5, (200,), generator=g)
    cases.append(Case((t2, p2, 5), _cm(t2, p2, 5), public=False, label="200 random labels"))
    cases.append(Case((torch.tensor([3]), torch.tensor([3]), 4), _cm(torch.tensor([3]), torch.tensor([3]), 4),
                      public=False, label="unused classes still get rows and columns"))
    run_cases("confusion", fn, cases, hint="index = true * k + predicted; bincount with minlength k*k; view(k, k)")


def precision_recall(fn) -> None:
    """``fn(cm, k)`` -> (precision, recall) of class k."""
    cm = torch.tensor([[5, 1, 0], [2, 3, 1], [0, 0, 4]])
    cases = [Case((cm, 0), (5 / 7, 5 / 6), label="class 0: column sum 7, row sum 6"),
             Case((cm, 2), (4 / 5, 1.0), label="class 2"),
             Case((torch.tensor([[3, 0], [2, 0]]), 1), (0.0, 0.0), public=False, label="never predicted, never right"),
             Case((cm, 1), (3 / 4, 3 / 6), public=False, label="class 1")]
    run_cases("precision_recall", lambda cm, k: tuple(float(v) for v in fn(cm, k)), cases,
              hint="precision divides by the column (predicted k), recall by the row (truly k)")


def macro_f1(fn) -> None:
    """``fn(cm)`` -> mean per-class F1."""
    g = torch.Generator().manual_seed(32)
    cases = [Case((torch.tensor([[990, 0], [10, 0]]),), _f1(torch.tensor([[990, 0], [10, 0]])),
                  label="the screening example: 99 % accuracy, macro-F1 about 0.5"),
             Case((torch.eye(3, dtype=torch.long) * 4,), 1.0, label="perfect")]
    cm = torch.randint(0, 20, (5, 5), generator=g)
    cases.append(Case((cm,), _f1(cm), public=False, label="random 5x5"))
    run_cases("macro_f1", lambda cm: float(fn(cm)), cases,
              hint="F1 per class = 2PR / (P + R) (0 if P + R = 0); average")


def topk_accuracy(fn) -> None:
    """``fn(logits, y, k)`` -> fraction of rows whose label is in the top k."""
    logits = torch.tensor([[0.1, 0.5, 0.4], [0.9, 0.05, 0.05], [0.2, 0.3, 0.5]])
    y = torch.tensor([2, 0, 0])
    cases = [Case((logits, y, 1), 1 / 3, label="top-1"), Case((logits, y, 2), 2 / 3, label="top-2"),
             Case((logits, y, 3), 1.0, label="top-3 of 3 classes")]
    g = torch.Generator().manual_seed(33)
    lg, yy = torch.randn(100, 10, generator=g), torch.randint(0, 10, (100,), generator=g)
    cases.append(Case((lg, yy, 5), (lg.topk(5, -1).indices == yy[:, None]).any(-1).float().mean().item(),
                      public=False, label="random, k=5"))
    run_cases("topk_accuracy", lambda *a: float(fn(*a)), cases,
              hint="logits.topk(k, dim=-1).indices, compare with y[:, None]")


def always_healthy_macro_f1(fn) -> None:
    """``fn(p)`` -> macro-F1 of the classifier that always says "healthy" when a fraction p is ill."""
    # the expected values are the derived formula evaluated (not shown here: deriving it is the exercise)
    cases = [Case((0.01,), 0.49748743718592964, label="p = 0.01: the screening example"),
             Case((0.5,), 0.3333333333333333, label="p = 0.5: balanced classes"),
             Case((0.1,), 0.47368421052631576, public=False, label="p = 0.1"),
             Case((0.2,), 0.4444444444444444, public=False, label="p = 0.2")]
    run_cases("always_healthy_macro_f1", lambda p: float(fn(p)), cases,
              hint="the healthy class has recall 1 and precision 1 - p; the ill class has F1 0; average the two")


def precision_at(fn) -> None:
    """``fn(recall, false_alarm_rate, prevalence)`` -> precision when a share ``prevalence`` is positive."""
    cases = [Case((1.0, 0.213, 0.5), 0.8244023083264632,
                  label="recall 1, false alarms 0.213, half positive (the dictionary on the test passages)"),
             Case((1.0, 0.213, 0.01), 0.0452755014261783, label="the same classifier, 1 % positive"),
             Case((0.95, 0.03, 0.05), 0.625, public=False, label="recall 0.95, false alarms 0.03, 5 % positive"),
             Case((0.6, 0.1, 0.2), 0.6, public=False, label="recall 0.6, false alarms 0.1, 20 % positive")]
    run_cases("precision_at", lambda *a: float(fn(*a)), cases,
              hint="flagged positives: recall x prevalence; flagged negatives: false-alarm rate x (1 - prevalence); "
                   "precision is the share of the flagged that are positive")
