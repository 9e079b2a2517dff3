"""The modern_cnn chapter's plumbing: equal-budget training runs, accuracy on shifted digits, saliency
maps with their randomisation sanity check (Adebayo et al. 2018), and the shift view."""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import nn

from book.config import setup
from book.lab.cnn import shift
from book.nn.counting import count_params
from book.nn.models import SmallCNN
from book.train import History, evaluate, fit
from book.ui import Explorer, TrainingDashboard


@dataclass
class Run:
    """One training run: the trained model, its history and (if it was watched) its dashboard."""
    model: nn.Module
    history: History
    dashboard: TrainingDashboard | None = None


def train_classifier(make: Callable[[], nn.Module], data, *, epochs: int, lr: float, seed: int,
                     watch: str | None = None, log_every: int | None = None, amp_dtype=None,
                     batch_size: int = 64) -> Run:
    """Seed everything with ``seed``, build ``make()`` on the data's device and train it on
    ``data.x_train`` with Adam and a one-cycle schedule (the cnn chapter's recipe).

    Every run of the chapter goes through here, so two runs differ only in ``make`` (and the seed): the same
    batches in the same order, the same optimizer, schedule and number of steps. ``watch`` (a title) attaches
    a live :class:`~book.ui.TrainingDashboard`, redrawn every ``log_every`` steps."""
    env = setup(seed=seed, verbose=False)
    model = make().to(data.x_train.device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    steps = epochs * math.ceil(len(data.x_train) / batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.2)
    dash = TrainingDashboard(model, title=watch) if watch else None
    history = fit(model, (data.x_train, data.y_train), opt, epochs=epochs, batch_size=batch_size,
                  val=(data.x_val, data.y_val), log_every=(log_every or steps) if watch else steps,
                  callbacks=[dash] if dash else [], scheduler=sched, amp_dtype=amp_dtype,
                  generator=env.generator, progress=False)
    return Run(model, history, dash)


def mlp_same_budget(n_params: int, n_in: int = 784, n_out: int = 10) -> nn.Sequential:
    """A one-hidden-layer ReLU MLP whose parameter count is as close to ``n_params`` as a whole number of
    hidden units allows: (n_in + 1)·h + (h + 1)·n_out parameters."""
    per_unit = n_in + 1 + n_out
    h = max(1, round((n_params - n_out) / per_unit))
    return nn.Sequential(nn.Flatten(), nn.Linear(n_in, h), nn.ReLU(), nn.Linear(h, n_out))


def separable_match(channels: Sequence[int], head: str = "flatten") -> tuple[int, ...]:
    """Widths for a ``SmallCNN(separable=True)`` with about as many parameters as ``SmallCNN(channels)``:
    the first width is kept (its block is a plain convolution), the others are scaled by one common factor,
    searched in steps of 1/16."""
    target = count_params(SmallCNN(channels, head=head))
    best = None
    for step in range(16, 16 * 16):
        widths = (channels[0], *[max(1, round(c * step / 16)) for c in channels[1:]])
        gap = abs(count_params(SmallCNN(widths, head=head, separable=True)) - target)
        if best is None or gap < best[0]:
            best = (gap, widths)
    return best[1]


def shift_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, shifts: Sequence[int]) -> list[float]:
    """Accuracy on ``x`` shifted by ``d`` pixels, for each ``d`` in ``shifts``: the mean over the four
    directions (right, left, down, up), so that no side of the frame is favoured."""
    out = []
    for d in shifts:
        moves = [(0, 0)] if d == 0 else [(0, d), (0, -d), (d, 0), (-d, 0)]
        out.append(sum(evaluate(model, shift(x, dy, dx), y)["acc"] for dy, dx in moves) / len(moves))
    return out


# ---------------------------------------------------------------------------- saliency and its sanity check
def saliency_maps(model: nn.Module, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
    """``|∂ score_k / ∂ x|`` for a batch (N, C, H, W) at once, k the label (or the prediction): (N, H, W).
    Each image's score depends on that image only, so one backward pass gives every map."""
    was = model.training
    model.eval()
    x = images.detach().clone().requires_grad_(True)
    scores = model(x)
    k = scores.argmax(1) if labels is None else labels
    scores.gather(1, k.view(-1, 1)).sum().backward()
    model.train(was)
    return x.grad.abs().amax(1)


def smoothgrad(model: nn.Module, images: torch.Tensor, samples: int, sigma: float,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """SmoothGrad (Smilkov et al. 2017): the mean of ``|gradient|`` over ``samples`` noisy copies of each
    image (Gaussian noise of standard deviation ``sigma``), for the class predicted on the clean image."""
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    was = model.training
    with torch.no_grad():
        model.eval()
        labels = model(images).argmax(1)
    total = torch.zeros(images.shape[0], *images.shape[2:], device=images.device)
    for _ in range(samples):
        noise = torch.randn(images.shape, generator=generator).to(images.device) * sigma
        total += saliency_maps(model, images + noise, labels)
    model.train(was)
    return total / samples


def _average_ranks(v: torch.Tensor) -> torch.Tensor:
    """Ranks 0..D-1 of each row of ``v`` (N, D); tied values share the mean of their positions (the standard
    convention of Spearman's rho, and the one that matters for digits: most of their pixels are exactly 0,
    and ranking those by position would correlate a map with the raster order)."""
    n, d = v.shape
    order = v.argsort(dim=1, stable=True)                   # (N, D) positions, sorted by value
    sorted_v = v.gather(1, order)
    new_group = torch.ones_like(sorted_v, dtype=torch.bool)
    new_group[:, 1:] = sorted_v[:, 1:] != sorted_v[:, :-1]
    group = new_group.long().cumsum(1) - 1                  # (N, D) index of each run of equal values
    pos = torch.arange(d, dtype=torch.float64, device=v.device).expand(n, d)
    sums = torch.zeros(n, d, dtype=torch.float64, device=v.device).scatter_add_(1, group, pos)
    counts = torch.zeros(n, d, dtype=torch.float64, device=v.device).scatter_add_(1, group, torch.ones_like(pos))
    mean_rank = (sums / counts.clamp(min=1)).gather(1, group)   # (N, D), in sorted order
    return torch.empty_like(mean_rank).scatter_(1, order, mean_rank)


def spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman rank correlation of each row of ``a`` with the same row of ``b`` (flattened after the first
    axis): the Pearson correlation of the ranks, ties sharing their mean rank."""
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {tuple(a.shape)} and {tuple(b.shape)}")
    a, b = a.reshape(len(a), -1).double(), b.reshape(len(b), -1).double()   # (N, D) each
    ra, rb = _average_ranks(a), _average_ranks(b)
    ra, rb = ra - ra.mean(1, keepdim=True), rb - rb.mean(1, keepdim=True)
    return (ra * rb).sum(1) / (ra.norm(dim=1) * rb.norm(dim=1))


def randomized_layers(model: nn.Module) -> list[str]:
    """Names of the layers with weights, from the output back to the input (the cascade's order)."""
    return [name for name, m in model.named_modules() if hasattr(m, "reset_parameters")
            and any(True for _ in m.parameters(recurse=False))][::-1]


def randomized_copy(model: nn.Module, seed: int = 0) -> nn.Module:
    """A copy of ``model`` with every layer re-initialised (the end point of the cascade)."""
    rand = copy.deepcopy(model)
    modules = dict(rand.named_modules())
    torch.manual_seed(seed)
    for name in randomized_layers(rand):
        modules[name].reset_parameters()
    return rand


def cascading_randomization(model: nn.Module, images: torch.Tensor, seed: int = 0) -> list[tuple[str, float]]:
    """Adebayo et al.'s cascading test: re-initialise the layers one by one from the top, and after each
    measure the mean rank correlation of the saliency maps with those of the trained model. Returns
    ``[(layer name, mean Spearman correlation), ...]``; ``model`` itself is left unchanged."""
    reference = saliency_maps(model, images)
    labels = model(images).argmax(1).detach()
    rand = copy.deepcopy(model)
    modules = dict(rand.named_modules())
    torch.manual_seed(seed)
    out = []
    for name in randomized_layers(rand):
        modules[name].reset_parameters()
        maps = saliency_maps(rand, images, labels)
        out.append((name, spearman(reference, maps).mean().item()))
    return out


class ShiftExplorer(Explorer):
    """Accuracy against the size of a shift, for several trained networks, beside one shifted digit and
    what each network predicts for it.

    Settings ``index`` (which image) and ``shift`` (pixels, moved right). ``curves`` maps a network's name to
    its accuracies at ``shifts`` (from :func:`shift_accuracy`)."""

    defaults = dict(index=0, shift=0)
    layout = dict(nrows=1, ncols=2, figsize=(10, 3.4), gridspec_kw=dict(width_ratios=[1, 2.4]))
    interval = 700

    def __init__(self, models: dict, images: torch.Tensor, labels: torch.Tensor, shifts: Sequence[int],
                 curves: dict, **settings):
        if set(models) != set(curves):
            raise ValueError(f"models {sorted(models)} and curves {sorted(curves)} name different networks")
        self.models, self.images, self.labels = models, images, labels
        self.shifts, self.curves = list(shifts), curves
        super().__init__(**settings)

    def _validate(self, s, changed):
        if not 0 <= s["shift"] <= max(self.shifts):
            raise ValueError(f"shift must be in 0..{max(self.shifts)}, got {s['shift']}")
        if not 0 <= s["index"] < len(self.images):
            raise ValueError(f"index must be in 0..{len(self.images) - 1}, got {s['index']}")

    def _controls(self):
        import ipywidgets as w
        return {"index": w.IntSlider(min=0, max=len(self.images) - 1, description="image"),
                "shift": w.IntSlider(min=0, max=max(self.shifts), description="shift (px)")}

    def draw(self, **override) -> dict:
        """Draw the settings (plus ``override``); returns each network's prediction for the shifted image."""
        s = self.resolve(**override)
        img = shift(self.images[s["index"]], 0, s["shift"])
        preds = {}
        with torch.no_grad():
            for name, m in self.models.items():
                m.eval()
                preds[name] = int(m(img[None]).argmax())
        self.figure()
        ax_img, ax = self.axes
        ax_img.clear()
        ax_img.imshow(img[0].cpu().numpy(), cmap="gray")
        ax_img.axis("off")
        lab = int(self.labels[s["index"]])
        ax_img.set_title(f"label {lab}, moved {s['shift']} px right", fontsize=8)
        ax.clear()
        for name, accs in self.curves.items():
            ax.plot(self.shifts, accs, marker="o", ms=3, label=name)
        ax.axvline(s["shift"], color="grey", lw=1, ls="--")
        ax.set_xlabel("shift (pixels, mean over four directions)")
        ax.set_ylabel("validation accuracy")
        ax.set_ylim(0, 1)
        ax.legend(fontsize=7, loc="lower left")
        ax.set_title("this image is read as " + " / ".join(str(p) for p in preds.values())
                     + " (legend order)", fontsize=8)
        self.fig.tight_layout()
        return preds
