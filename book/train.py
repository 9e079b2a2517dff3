"""A plain, readable training loop with callbacks, that keeps metrics on the device.

Chapters: every chapter that trains a PyTorch model calls :func:`fit` -- first ``losses_activations`` and
``gradient_descent`` (with the live dashboard), then ``training_practice``, ``cnn``, ``rnn``, ``gpt``,
``pretraining``, ``lora``, ``adversarial``, ``compression``, ``applications``, ``generative`` and ``tools``;
``rnn``, ``gpt`` and ``tools`` write their own :class:`Callback`.

Why "sync only at log points": on a GPU, ``loss.item()`` waits for every queued kernel to finish, so
calling it each step serialises CPU and GPU. ``fit`` instead adds the detached loss into a device tensor
and reads it back (one sync) every ``log_every`` steps, which is also when callbacks such as the live
dashboard redraw.
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

import torch
from torch import nn

from book.config import DRY_COUNT, DRY_EVAL, dry_run
from book.data import batches


@dataclass
class History:
    """Metrics read back at each log point (plain Python floats, safe to plot)."""

    step: list = field(default_factory=list)
    train_loss: list = field(default_factory=list)
    val_loss: list = field(default_factory=list)
    val_acc: list = field(default_factory=list)
    seconds: list = field(default_factory=list)

    def last(self, key: str) -> float:
        values = getattr(self, key)
        if not values:
            raise ValueError(f"no {key} recorded yet (did training run at least log_every steps?)")
        return values[-1]


@dataclass
class State:
    """What callbacks see. ``will_log`` is True on steps whose metrics will be read back (redraw steps)."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    step: int = 0
    total_steps: int = 0
    epoch: int = 0
    will_log: bool = False
    loss: torch.Tensor | None = None  # on the device; don't .item() it except when will_log
    history: History = field(default_factory=History)


class Callback:
    """Override any of these. All are called with the :class:`State`."""

    def on_train_begin(self, state: State): ...
    def on_step_begin(self, state: State): ...
    def on_after_backward(self, state: State): ...  # gradients exist, optimizer has not stepped yet
    def on_log(self, state: State): ...            # metrics were just synced into state.history
    def on_train_end(self, state: State): ...


def _device_of(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    if p is None:
        raise ValueError("the model has no parameters, so there is nothing to train")
    return p.device


def check_same_device(model: nn.Module, *tensors: torch.Tensor) -> None:
    """Raise a helpful error if any tensor lives on another device than the model's parameters."""
    dev = _device_of(model)
    for t in tensors:
        if isinstance(t, torch.Tensor) and t.device.type != dev.type:
            raise RuntimeError(
                f"the model is on {dev} but a data tensor is on {t.device}. Move both to the same device, "
                "e.g. model.to(env.device) and data.to(env.device)."
            )


def check_finite(loss: float, step: int) -> None:
    if not math.isfinite(loss):
        raise FloatingPointError(
            f"the training loss became {loss} by step {step}. Usual causes: a learning rate that is too "
            "large (try 10x smaller), log(0) in a hand-written loss (use the logits form), or bad input "
            "data (check for NaN with torch.isnan(x).any())."
        )


def autocast(device: torch.device, dtype: torch.dtype | None):
    """Mixed precision on CUDA when ``dtype`` is given, a no-op context otherwise."""
    if dtype is None or device.type != "cuda":
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda", dtype=dtype)


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: Callable | None = None,
             batch_size: int = 2048) -> dict:
    """Mean loss and (for class-index targets) accuracy of ``model`` on ``(x, y)``, in eval mode.

    In a dry run (``BOOK_DRYRUN``, see :mod:`book.config`) only the first ``DRY_EVAL`` examples are scored:
    a gpu-sized test set on a CPU costs minutes and proves nothing that a few examples do not."""
    check_same_device(model, x, y)
    if dry_run():
        x, y = x[:DRY_EVAL], y[:DRY_EVAL]
    loss_fn = loss_fn or nn.functional.cross_entropy
    was_training = model.training
    model.eval()
    total_loss = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device)
    classification = False
    for i in range(0, len(x), batch_size):
        out = model(x[i:i + batch_size]).float()
        yb = y[i:i + batch_size]
        total_loss += loss_fn(out, yb) * len(yb)
        if out.ndim == 2 and yb.ndim == 1 and not yb.is_floating_point():
            classification = True
            correct += (out.argmax(1) == yb).sum()
    model.train(was_training)
    loss, acc = (torch.stack([total_loss, correct]) / len(x)).tolist()  # one sync
    return {"loss": loss, "acc": acc if classification else float("nan")}  # no accuracy for e.g. language models


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of ``x`` that ``model`` classifies as ``y``."""
    return evaluate(model, x, y)["acc"]


def batches_per_epoch(n: int, batch_size: int) -> int:
    """Mini-batches in one epoch of ``n`` examples: ``ceil(n / batch_size)``, the count :func:`fit` runs.

    In a dry run (``BOOK_DRYRUN``, see :mod:`book.config`) an epoch is at most ``DRY_COUNT`` batches: the
    dry run proves shapes and plumbing, not learning. Loops of their own that count steps in epochs use
    this too, so that they shrink with ``fit``."""
    if n < 1 or batch_size < 1:
        raise ValueError(f"need n >= 1 examples and batch_size >= 1, got n={n}, batch_size={batch_size}")
    per_epoch = math.ceil(n / batch_size)
    return min(per_epoch, DRY_COUNT) if dry_run() else per_epoch


def fit(model: nn.Module, data, optimizer: torch.optim.Optimizer, *, loss_fn: Callable | None = None,
        epochs: int | None = None, steps: int | None = None, batch_size: int = 64,
        val: tuple | None = None, log_every: int = 50, callbacks: Iterable[Callback] = (),
        amp_dtype: torch.dtype | None = None, grad_clip: float | None = None,
        scheduler=None, generator: torch.Generator | None = None, progress: bool | None = None) -> History:
    """Train ``model`` and return its :class:`History`.

    ``data`` is either a tuple ``(x, y)`` of tensors (then give ``epochs``; mini-batches of ``batch_size``
    are shuffled with ``generator``), or a function ``get_batch(step) -> (x, y)`` (then give ``steps``).
    ``val=(x_val, y_val)`` is evaluated at every log point. ``amp_dtype`` (``env.amp_dtype``) enables
    autocast on CUDA. Metrics are synced from the device only every ``log_every`` steps and at the end.
    In a dry run (``BOOK_DRYRUN``, see :mod:`book.config`) an epoch of ``(x, y)`` is its first
    ``DRY_COUNT`` shuffled batches.
    """
    loss_fn = loss_fn or nn.functional.cross_entropy
    if (epochs is None) == (steps is None):
        raise ValueError("give exactly one of epochs= (for (x, y) data) or steps= (for a get_batch function)")
    if log_every < 1:
        raise ValueError(f"log_every must be >= 1, got {log_every}")
    device = _device_of(model)
    if callable(data):
        if steps is None:
            raise ValueError("data is a get_batch(step) function, so give steps=, not epochs=")
        get_batch, total = data, steps
    else:
        if not (isinstance(data, (tuple, list)) and len(data) == 2):
            raise TypeError("data must be a tuple (x, y) of tensors or a function get_batch(step) -> (x, y)")
        x, y = data
        check_same_device(model, x, y)
        if len(x) != len(y):
            raise ValueError(f"x has {len(x)} examples but y has {len(y)}")
        per_epoch = batches_per_epoch(len(x), batch_size)
        total = per_epoch * epochs if epochs is not None else steps

        def epoch_stream():
            while True:
                yield from batches(x, y, batch_size, shuffle=True, generator=generator)
        stream = epoch_stream()
        get_batch = lambda step: next(stream)  # noqa: E731
    if val is not None:
        check_same_device(model, *val)

    scaler = torch.amp.GradScaler("cuda") if (amp_dtype == torch.float16 and device.type == "cuda") else None
    state = State(model=model, optimizer=optimizer, total_steps=total)
    callbacks = list(callbacks)
    if progress is None:
        progress = not callbacks and total >= 500
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=total, desc="training", leave=False)
    running = torch.zeros((), device=device)
    n_running = 0
    t0 = time.perf_counter()
    model.train()
    for cb in callbacks:
        cb.on_train_begin(state)
    for step in range(1, total + 1):
        state.step = step
        state.will_log = step % log_every == 0 or step == total
        for cb in callbacks:
            cb.on_step_begin(state)
        xb, yb = get_batch(step)
        if step == 1:
            check_same_device(model, xb, yb)
        with autocast(device, amp_dtype):
            out = model(xb)
            loss = loss_fn(out.float(), yb)
        if loss.ndim != 0:
            raise ValueError(f"loss_fn must return a scalar, got shape {tuple(loss.shape)}; use reduction='mean'")
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
        else:
            loss.backward()
        state.loss = loss.detach()
        for cb in callbacks:
            cb.on_after_backward(state)
        if grad_clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        if scheduler is not None:
            scheduler.step()
        running += state.loss
        n_running += 1
        if state.will_log:
            train_loss = (running / n_running).item()  # the one sync of this interval
            check_finite(train_loss, step)
            running.zero_()
            n_running = 0
            h = state.history
            h.step.append(step)
            h.train_loss.append(train_loss)
            if val is not None:
                m = evaluate(model, val[0], val[1], loss_fn)
                h.val_loss.append(m["loss"])
                if not math.isnan(m["acc"]):
                    h.val_acc.append(m["acc"])
            h.seconds.append(time.perf_counter() - t0)
            if bar is not None:
                bar.update(step - bar.n)
                bar.set_postfix(loss=f"{train_loss:.3f}")
            for cb in callbacks:
                cb.on_log(state)
        state.epoch = (step * batch_size) // len(x) if not callable(data) else 0
    if bar is not None:
        bar.close()
    for cb in callbacks:
        cb.on_train_end(state)
    return state.history


def running_mean(values, window: int = 25) -> list[float]:
    """Mean of the last ``window`` values at each step (fewer at the start), for noisy per-step curves such as
    losses or returns. Used by the efficiency and recsys_rl chapters."""
    if window < 1:
        raise ValueError(f"window must be a positive number of steps, got {window}")
    out, acc = [], 0.0
    for i, v in enumerate(values):
        acc += v - (values[i - window] if i >= window else 0.0)
        out.append(acc / min(i + 1, window))
    return out

