"""The residual_nets chapter's experiment plumbing: seeded runs, per-layer gradient norms, and the
measurements of batch norm's train/eval modes and of batch (in)dependence.

The models (:class:`~book.nn.models.ResidualMLP`, :class:`~book.nn.models.BasicBlock`,
:class:`~book.nn.models.SmallResNet`) and the from-scratch normalisations (:mod:`book.nn.norm`) live in
``book/nn``.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from book.config import setup
from book.train import evaluate, fit


def seeded(build: Callable[[], nn.Module], seed: int, device=None) -> nn.Module:
    """``build()`` with every random number drawn from ``seed`` (the same seed: the same initial weights)."""
    setup(seed=seed, verbose=False)
    model = build()
    return model.to(device) if device is not None else model


def weighted_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The Linear and Conv2d layers of ``model``, input to output (BatchNorm's scale is left out)."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


def grad_norms(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[float]:
    """The weight-gradient norm of every Linear/Conv2d layer for one batch ``(x, y)``, input to output.

    The model is left in the mode it was in and without gradients."""
    model.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    norms = [m.weight.grad.norm().item() for _, m in weighted_layers(model)]
    model.zero_grad()
    return norms


def run(model: nn.Module, data, seed: int, epochs: int = 1, lr: float = 1e-3, batch_size: int = 64,
        log_every: int = 50, callbacks=()) -> dict:
    """Train ``model`` with Adam on ``data.x_train`` for ``epochs`` (batch order drawn from ``seed``).

    Returns the history and, in eval mode, the loss and accuracy on the training and validation sets:
    a *training* loss that stays high is the degradation problem (not overfitting)."""
    e = setup(seed=seed, verbose=False)
    h = fit(model, (data.x_train, data.y_train), torch.optim.Adam(model.parameters(), lr=lr), epochs=epochs,
            batch_size=batch_size, val=(data.x_val, data.y_val), log_every=log_every, callbacks=callbacks,
            generator=e.generator, progress=False)
    tr, va = evaluate(model, data.x_train, data.y_train), evaluate(model, data.x_val, data.y_val)
    return {"history": h, "train_loss": tr["loss"], "train_acc": tr["acc"], "val_loss": va["loss"],
            "val_acc": va["acc"]}


@torch.no_grad()
def accuracy_in_mode(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int,
                     train_mode: bool) -> float:
    """Accuracy of ``model`` on ``(x, y)`` fed in consecutive batches of ``batch_size``, with its
    BatchNorm layers in training mode (batch statistics) or evaluation mode (running statistics).

    Nothing is learned: in training mode the running statistics would still move, so they are saved and
    restored."""
    state = {k: v.clone() for k, v in model.state_dict().items()}
    was = model.training
    model.train(train_mode)
    correct = 0
    try:
        for i in range(0, len(x), batch_size):
            correct += (model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum().item()
    finally:
        model.load_state_dict(state)
        model.train(was)
    return correct / len(x)


@torch.no_grad()
def batch_dependence(layer: nn.Module, x: torch.Tensor, others: torch.Tensor) -> float:
    """How much one example's output of ``layer`` changes when its batch-mates change.

    ``x`` (n, ...) is normalised once together with ``others[:n]`` and once with ``others[n:2n]``; the
    result is the largest absolute difference of ``x``'s outputs. 0 means independent of the batch."""
    n = len(x)
    if len(others) < 2 * n:
        raise ValueError(f"need at least {2 * n} other examples, got {len(others)}")
    a = layer(torch.cat([x, others[:n]]))[:n]
    b = layer(torch.cat([x, others[n:2 * n]]))[:n]
    return (a - b).abs().max().item()
