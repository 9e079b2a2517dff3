"""Applications: confusion matrices and per-class metrics, prediction helpers, and a network probe.

Chapter: ``applications``.
"""
from __future__ import annotations

import socket

import torch


def confusion_matrix(y_true: torch.Tensor, y_pred: torch.Tensor, n_classes: int) -> torch.Tensor:
    """``C[i, j]`` = number of examples of true class i predicted as j."""
    y_true, y_pred = torch.as_tensor(y_true).long().cpu(), torch.as_tensor(y_pred).long().cpu()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true {tuple(y_true.shape)} and y_pred {tuple(y_pred.shape)} must have the same shape")
    if len(y_true) and (min(y_true.min(), y_pred.min()) < 0 or max(y_true.max(), y_pred.max()) >= n_classes):
        raise ValueError(f"labels must be in 0..{n_classes - 1}")
    return torch.bincount(y_true * n_classes + y_pred, minlength=n_classes ** 2).view(n_classes, n_classes)


def per_class_metrics(cm: torch.Tensor) -> dict:
    """Precision, recall and F1 per class from a confusion matrix (0 where undefined)."""
    cm = cm.double()
    tp = cm.diag()
    precision = torch.where(cm.sum(0) > 0, tp / cm.sum(0).clamp(min=1), torch.zeros_like(tp))
    recall = torch.where(cm.sum(1) > 0, tp / cm.sum(1).clamp(min=1), torch.zeros_like(tp))
    f1 = torch.where(precision + recall > 0, 2 * precision * recall / (precision + recall).clamp(min=1e-12),
                     torch.zeros_like(tp))
    return {"precision": precision, "recall": recall, "f1": f1, "accuracy": (tp.sum() / cm.sum()).item()}


def online(host: str = "huggingface.co", port: int = 443, timeout: float = 2.0) -> bool:
    """True when ``host`` answers within ``timeout`` seconds (used to skip download-only cells cleanly)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
