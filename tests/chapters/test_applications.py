"""book.lab.applications: confusion matrix, per-class metrics, online probe; the chapter's checks."""
import pytest
import torch

from book import check
from book.check import raising
from book.lab.applications import confusion_matrix, online, per_class_metrics


def test_confusion_matrix_and_metrics():
    cm = confusion_matrix(torch.tensor([0, 0, 1, 2, 2, 2]), torch.tensor([0, 1, 1, 2, 0, 2]), 3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    m = per_class_metrics(cm)
    assert torch.allclose(m["precision"], torch.tensor([0.5, 0.5, 1.0], dtype=torch.float64))
    assert torch.allclose(m["recall"], torch.tensor([0.5, 1.0, 2 / 3], dtype=torch.float64))
    assert abs(m["accuracy"] - 4 / 6) < 1e-12
    never = per_class_metrics(torch.tensor([[5, 0], [3, 0]]))
    assert never["precision"][1] == 0 and never["f1"][1] == 0


def test_confusion_matrix_errors():
    with pytest.raises(ValueError, match="same shape"):
        confusion_matrix(torch.tensor([0, 1]), torch.tensor([0]), 2)
    with pytest.raises(ValueError, match="0..1"):
        confusion_matrix(torch.tensor([0, 2]), torch.tensor([0, 1]), 2)


def test_online_is_false_for_an_unreachable_port():
    assert online("127.0.0.1", 9, timeout=0.5) is False


def test_checks_accept_solutions_and_reject_wrong_ones():
    with raising():
        check.confusion(lambda t, p, k: torch.bincount(t * k + p, minlength=k * k).view(k, k))
        check.precision_recall(lambda cm, k: ((cm[k, k] / cm[:, k].sum()).item() if cm[:, k].sum() else 0.0,
                                              (cm[k, k] / cm[k].sum()).item() if cm[k].sum() else 0.0))
        check.macro_f1(lambda cm: per_class_metrics(cm)["f1"].mean().item())
        check.topk_accuracy(lambda lg, y, k: (lg.topk(k, -1).indices == y[:, None]).any(-1).float().mean().item())
        check.always_healthy_macro_f1(lambda p: (1 - p) / (2 - p))
        check.precision_at(lambda r, f, p: r * p / (r * p + f * (1 - p)))
        for name, wrong in [("confusion", lambda t, p, k: torch.bincount(p * k + t, minlength=k * k).view(k, k)),
                            ("precision_recall", lambda cm, k: (0.5, 0.5)),
                            ("macro_f1", lambda cm: per_class_metrics(cm)["accuracy"]),
                            ("topk_accuracy", lambda lg, y, k: (lg.argmax(-1) == y).float().mean().item()),
                            ("always_healthy_macro_f1", lambda p: 1 - p),           # the accuracy, not macro-F1
                            ("always_healthy_macro_f1", lambda p: (1 - p) / 2),     # precision, not F1
                            ("precision_at", lambda r, f, p: r / (r + f))]:         # ignores the prevalence
            with pytest.raises(check.CheckFailed):
                getattr(check, name)(wrong)
