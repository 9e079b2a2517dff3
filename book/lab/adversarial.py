"""Adversarial examples under an L∞ budget: FGSM, PGD, accuracy under attack, fast adversarial training.

Every attack here works for *any* classifier ``model(x) -> logits`` whose inputs are images with pixel
values in a box ``bounds`` (default ``(0, 1)``, what :func:`book.data.load_mnist` returns). The
perturbation ``delta = x_adv - x`` always satisfies ``|delta| <= eps`` in every pixel, and ``x_adv`` stays
inside ``bounds``. If your model expects normalised inputs ((x - mean) / std), put the normalisation
*inside* the model (a first layer), so that ``eps`` keeps meaning "pixel units" and clamping to [0, 1]
stays right.

References: FGSM (Goodfellow, Shlens & Szegedy 2015, arXiv:1412.6572), PGD and adversarial training as a
min-max problem (Madry et al. 2018, arXiv:1706.06083), FGSM with a random start ("fast adversarial
training", Wong, Rice & Kolter 2020, arXiv:2001.03994).
"""
from __future__ import annotations

import copy
import math
from typing import Callable

import numpy as np
import torch
from torch import nn

from book.data import batches
from book.train import batches_per_epoch
from book.ui import Explorer

ATTACKS = ("fgsm", "pgd", "noise")   # "noise": the control, random signs with the same budget


# ----------------------------------------------------------------------------------------- checks
def _check(x: torch.Tensor, y: torch.Tensor, eps: float, bounds) -> None:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError(f"x must be a floating-point image tensor, got "
                        f"{type(x).__name__ if not isinstance(x, torch.Tensor) else x.dtype}; "
                        "convert with x.float() (and divide by 255 if it holds 0..255 pixel values)")
    if x.ndim < 2:
        raise ValueError(f"x must be a batch (B, ...) of inputs, got shape {tuple(x.shape)}; "
                         "add a batch axis with x[None]")
    if not isinstance(y, torch.Tensor) or y.ndim != 1 or y.is_floating_point() or len(y) != len(x):
        shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        raise ValueError(f"y must be an integer class-index tensor of shape ({len(x)},), got {shape}; "
                         "use torch.tensor([label]) for a single image")
    if not (isinstance(eps, (int, float)) and math.isfinite(eps) and eps >= 0):
        raise ValueError(f"eps is the L∞ budget in pixel units and must be a finite number >= 0, got {eps!r}")
    if bounds is not None:
        lo, hi = bounds
        if not lo < hi:
            raise ValueError(f"bounds must be (low, high) with low < high, got {bounds}")
        if len(x) and (float(x.min()) < lo - 1e-6 or float(x.max()) > hi + 1e-6):
            raise ValueError(
                f"images must lie in bounds {bounds} but range over [{float(x.min()):.3g}, {float(x.max()):.3g}]. "
                "load_mnist returns [0, 1]; if you normalised the images, put the normalisation inside the "
                "model instead, or pass bounds=None to skip clamping")


def linf_project(x_adv: torch.Tensor, x: torch.Tensor, eps: float, bounds=(0.0, 1.0)) -> torch.Tensor:
    """The point nearest to ``x_adv`` that is within ``eps`` of ``x`` in every pixel and inside ``bounds``.

    The L∞ ball is a box, so projecting onto it is a per-pixel clamp to ``[x - eps, x + eps]``; the
    intersection with the pixel box ``bounds`` is again a box, hence one more clamp.
    """
    if x_adv.shape != x.shape:
        raise ValueError(f"x_adv {tuple(x_adv.shape)} and x {tuple(x.shape)} must have the same shape")
    out = torch.min(torch.max(x_adv, x - eps), x + eps)   # min/max, not x + clamp(x_adv - x): exact at ±eps
    return out.clamp(*bounds) if bounds is not None else out


def share_at_box_edge(x_adv: torch.Tensor, x: torch.Tensor, eps: float, bounds=(0.0, 1.0)) -> float:
    """Fraction of the pixels of ``x_adv`` that lie on an edge of their allowed interval
    ``[x - eps, x + eps] ∩ bounds`` (within 1e-6): the corners of the box that sign steps push towards."""
    if x_adv.shape != x.shape:
        raise ValueError(f"x_adv {tuple(x_adv.shape)} and x {tuple(x.shape)} must have the same shape")
    lo, hi = x - eps, x + eps
    if bounds is not None:
        lo, hi = lo.clamp(*bounds), hi.clamp(*bounds)
    edge = ((x_adv - lo).abs() <= 1e-6) | ((x_adv - hi).abs() <= 1e-6)
    return edge.float().mean().item()


def input_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                   loss_fn: Callable | None = None) -> torch.Tensor:
    """∂ loss / ∂ x, same shape as ``x`` (the model's weights get no ``.grad``)."""
    loss_fn = loss_fn or nn.functional.cross_entropy
    x = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        # summed, not averaged: each image's gradient must not shrink with the batch size
        loss = loss_fn(model(x).float(), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x)
    return grad


# ----------------------------------------------------------------------------------------- attacks
def random_noise(x: torch.Tensor, eps: float, *, bounds=(0.0, 1.0),
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """The control for an attack: every pixel moved by ``±eps`` with a random sign, then clamped to ``bounds``.

    The same L∞ budget as :func:`fgsm`, and the same corners of the box, but no gradient: what is left of
    the accuracy shows how much of an attack's damage is due to *where* it pushes, not to how far.
    ``generator`` (on the CPU) makes the signs reproducible on every device.
    """
    _check(x, torch.zeros(len(x), dtype=torch.long, device=x.device), eps, bounds)
    x = x.detach()
    bits = torch.randint(0, 2, x.shape, generator=generator, device="cpu" if generator else x.device)
    return linf_project(x + eps * (2 * bits.to(x.device, x.dtype) - 1), x, eps, bounds)


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, *, targeted: bool = False,
         bounds=(0.0, 1.0), loss_fn: Callable | None = None) -> torch.Tensor:
    """Fast gradient sign method: one step of size ``eps`` along sign(∇ₓ loss).

    Untargeted (``y`` = true labels): ``x + eps·sign(∇ loss(x, y))`` raises the loss. Targeted (``y`` = the
    labels you want): ``x - eps·sign(∇ loss(x, y))`` lowers the loss of the target. Then clamp to ``bounds``.
    """
    _check(x, y, eps, bounds)
    sign = -1.0 if targeted else 1.0
    x_adv = x.detach() + sign * eps * input_gradient(model, x, y, loss_fn).sign()
    return linf_project(x_adv, x.detach(), eps, bounds).detach()


def pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, *, steps: int = 10,
        step_size: float | None = None, random_start: bool = True, targeted: bool = False,
        bounds=(0.0, 1.0), loss_fn: Callable | None = None,
        generator: torch.Generator | None = None) -> torch.Tensor:
    """Projected gradient descent (ascent on the loss) in the L∞ ball of radius ``eps`` around ``x``.

    Repeats ``steps`` times: a signed-gradient step of ``step_size`` (default ``2.5·eps/steps``, so the
    iterate can cross the ball and back), then projection onto the ball ∩ ``bounds``. ``random_start``
    begins at a uniform random point of the ball (``generator``, on the CPU, makes it reproducible on
    every device). With ``steps=1, step_size=eps, random_start=False`` this is exactly :func:`fgsm`.
    """
    _check(x, y, eps, bounds)
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    step_size = 2.5 * eps / steps if step_size is None else step_size
    if step_size < 0:
        raise ValueError(f"step_size must be >= 0, got {step_size}")
    x = x.detach()
    sign = -1.0 if targeted else 1.0
    x_adv = x
    if random_start and eps > 0:
        noise = torch.rand(x.shape, generator=generator, dtype=x.dtype, device="cpu" if generator else x.device)
        x_adv = linf_project(x + (2 * noise.to(x.device) - 1) * eps, x, eps, bounds)
    for _ in range(steps):
        x_adv = x_adv + sign * step_size * input_gradient(model, x_adv, y, loss_fn).sign()
        x_adv = linf_project(x_adv, x, eps, bounds)
    return x_adv.detach()


def attack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, method: str = "pgd",
           **kwargs) -> torch.Tensor:
    """Dispatch to :func:`fgsm`, :func:`pgd` or the control :func:`random_noise` by name (``kwargs`` go to it)."""
    if method not in ATTACKS:
        raise ValueError(f"unknown attack {method!r}; choose one of {ATTACKS}")
    if method == "noise":
        _check(x, y, eps, kwargs.get("bounds", (0.0, 1.0)))
        return random_noise(x, eps, **kwargs)
    return fgsm(model, x, y, eps, **kwargs) if method == "fgsm" else pgd(model, x, y, eps, **kwargs)


# ----------------------------------------------------------------------------------------- evaluation
def robust_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, method: str = "pgd",
                    batch_size: int = 500, **kwargs) -> float:
    """Accuracy of ``model`` (in eval mode) on ``x`` after attacking every image with budget ``eps``.

    ``eps = 0`` gives the clean accuracy. The attack is white-box: it uses this very model's gradients.
    """
    was_training = model.training
    model.eval()
    correct = torch.zeros((), device=x.device)
    try:
        for i in range(0, len(x), batch_size):
            xb, yb = x[i:i + batch_size], y[i:i + batch_size]
            xa = attack(model, xb, yb, eps, method, **kwargs) if eps > 0 else xb
            with torch.no_grad():
                correct += (model(xa).argmax(1) == yb).sum()
    finally:
        model.train(was_training)
    return correct.item() / len(x)


def accuracy_vs_eps(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps_values, method: str = "pgd",
                    **kwargs) -> np.ndarray:
    """:func:`robust_accuracy` for every budget in ``eps_values`` (an array, one accuracy per budget)."""
    return np.array([robust_accuracy(model, x, y, float(e), method, **kwargs) for e in eps_values])


# ----------------------------------------------------------------------------------------- training
class AdversarialBatches:
    """A ``get_batch(step)`` for :func:`book.train.fit` that attacks each mini-batch with the current model.

    Default: FGSM from a random start with step ``1.25·eps`` -- the "fast adversarial training" recipe of
    Wong, Rice & Kolter (2020). ``steps > 1`` gives PGD adversarial training (Madry et al. 2018). The attack
    uses the model as it is at that training step, so the examples stay adversarial as the model changes.
    """

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, *, batch_size: int = 64,
                 steps: int = 1, step_size: float | None = None, random_start: bool = True,
                 bounds=(0.0, 1.0), generator: torch.Generator | None = None):
        _check(x[:batch_size], y[:batch_size], eps, bounds)
        self.model, self.x, self.y, self.eps = model, x, y, eps
        self.batch_size, self.steps, self.bounds, self.random_start = batch_size, steps, bounds, random_start
        self.step_size = (1.25 * eps if steps == 1 else 2.5 * eps / steps) if step_size is None else step_size
        self.generator = generator
        self.steps_per_epoch = batches_per_epoch(len(x), batch_size)   # shrinks in a dry run
        self._stream = self._forever()

    def _forever(self):
        while True:
            yield from batches(self.x, self.y, self.batch_size, shuffle=True, generator=self.generator)

    def __call__(self, step: int):
        xb, yb = next(self._stream)
        x_adv = pgd(self.model, xb, yb, self.eps, steps=self.steps, step_size=self.step_size,
                    random_start=self.random_start, bounds=self.bounds, generator=self.generator)
        return x_adv, yb


def step_seconds(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, *, batch_size: int = 64,
                 repeats: int = 20) -> dict:
    """Median seconds of one Adam training step on a batch of ``batch_size``, plain and adversarial.

    Both train a throw-away copy of ``model`` on the first ``batch_size`` images: ``"plain"`` on the clean
    batch, ``"adversarial"`` on the batch as :class:`AdversarialBatches` attacks it (FGSM from a random
    start: one extra forward and backward pass). Wall-clock, so the numbers are this machine's.
    """
    from book.hardware import time_step

    if not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive int, got {repeats!r}")
    probe = copy.deepcopy(model).train()
    opt = torch.optim.Adam(probe.parameters(), lr=1e-4)
    xb, yb = x[:batch_size], y[:batch_size]
    adv = AdversarialBatches(probe, xb, yb, eps, batch_size=batch_size, generator=torch.Generator().manual_seed(0))

    def step(get):
        xs, ys = get()
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(probe(xs), ys).backward()
        opt.step()

    device = next(probe.parameters()).device
    return {"plain": time_step(lambda: step(lambda: (xb, yb)), device, repeats=repeats),
            "adversarial": time_step(lambda: step(lambda: adv(0)), device, repeats=repeats)}


# ----------------------------------------------------------------------------------------- plots
def plot_accuracy_vs_eps(ax, eps_values, curves: dict, marker_eps: float | None = None,
                         references: dict | None = None) -> None:
    """Accuracy-vs-budget curves, ``curves = {label: accuracies}``; a dotted line at ``marker_eps``;
    ``references = {label: accuracy}`` adds horizontal lines (a baseline that no budget changes)."""
    colors: dict = {}
    for label, acc in curves.items():   # one colour per model (the text before the comma), style per attack
        color = colors.setdefault(label.split(",")[0], f"C{len(colors)}")
        style = "o-" if "PGD" in label else "^:" if "noise" in label else "s--"
        ax.plot(eps_values, acc, style, label=label, ms=4, color=color)
    for label, acc in (references or {}).items():
        ax.axhline(acc, color="black", ls="-.", lw=1, label=label)
    if marker_eps is not None:
        ax.axvline(marker_eps, color="grey", ls=":", lw=1)
    ax.set(xlabel="L∞ budget ε (pixel units)", ylabel="test accuracy under attack", ylim=(-0.02, 1.02))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


class AttackExplorer(Explorer):
    """One test image attacked with budget ``eps`` against each of several models (white-box, each its own).

    Per model, one row: the clean image, the adversarial image, the perturbation scaled by 1/ε (so it is
    visible however small ε is) and the class probabilities before and after. Settings ``eps`` and
    ``index`` (the test image); ``show()`` adds sliders, ``player("eps", [...])`` precomputes frames for
    the static site (the :class:`~book.ui.explorer.Explorer` contract).
    """

    defaults = dict(eps=0.1, index=0)
    interval = 900
    max_eps = 0.3   # the ε slider's range

    def __init__(self, models: dict, images: torch.Tensor, labels: torch.Tensor, eps: float = 0.1,
                 index: int = 0, method: str = "pgd", **attack_kwargs):
        if not models:
            raise ValueError("give at least one model, e.g. {'standard': model}")
        self.models, self.images, self.labels = dict(models), images, labels
        self.method, self.attack_kwargs = method, attack_kwargs
        n = len(self.models)
        self.layout = dict(nrows=n, ncols=4, figsize=(11, 2.5 * n), squeeze=False,
                           gridspec_kw=dict(width_ratios=[1, 1, 1, 1.8]))
        super().__init__(eps=eps, index=index)

    def _validate(self, s, changed):
        if not 0 <= s["index"] < len(self.images):
            raise ValueError(f"index must be in 0..{len(self.images) - 1}, got {s['index']}")

    def _controls(self):
        import ipywidgets as w
        return {"eps": w.FloatSlider(min=0.0, max=max(self.max_eps, self.settings["eps"]), step=0.01, description="ε"),
                "index": w.IntSlider(min=0, max=len(self.images) - 1, description="test image")}

    def compute(self, **override) -> dict:
        """For each model: the adversarial image and the probabilities on the clean and attacked image."""
        s = self.resolve(**override)
        x, y = self.images[s["index"]][None], self.labels[s["index"]][None]   # (1, C, H, W), (1,)
        out = {}
        for name, model in self.models.items():
            was = model.training
            model.eval()
            kwargs = dict(self.attack_kwargs)
            if self.method == "pgd":
                kwargs.setdefault("generator", torch.Generator().manual_seed(0))
            x_adv = attack(model, x, y, s["eps"], self.method, **kwargs) if s["eps"] > 0 else x
            with torch.no_grad():
                p_clean = model(x).softmax(1)[0].cpu().numpy()
                p_adv = model(x_adv).softmax(1)[0].cpu().numpy()
            model.train(was)
            out[name] = dict(x=x[0, 0].cpu().numpy(), x_adv=x_adv[0, 0].cpu().numpy(),
                             delta=(x_adv - x)[0, 0].cpu().numpy(), p_clean=p_clean, p_adv=p_adv)
        return out

    def draw(self, **override) -> dict:
        s = self.resolve(**override)
        res = self.compute(**override)
        label = int(self.labels[s["index"]])
        self.figure()
        for row, (name, r) in zip(self.axes, res.items()):
            for ax in row:
                ax.clear()
            pred = int(r["p_adv"].argmax())
            row[0].imshow(r["x"], cmap="gray", vmin=0, vmax=1)
            row[0].set_title(f"{name}: clean, label {label}", fontsize=8)
            row[1].imshow(r["x_adv"], cmap="gray", vmin=0, vmax=1)
            row[1].set_title(f"attacked (ε={s['eps']:.2f}): predicts {pred}", fontsize=8,
                             color="black" if pred == label else "red")
            scale = max(s["eps"], 1e-12)
            row[2].imshow(r["delta"] / scale, cmap="RdBu_r", vmin=-1, vmax=1)
            row[2].set_title("perturbation δ / ε", fontsize=8)
            for ax in row[:3]:
                ax.set_xticks([])
                ax.set_yticks([])
            k = np.arange(len(r["p_clean"]))
            row[3].bar(k - 0.2, r["p_clean"], 0.4, label="clean", color="tab:blue")
            row[3].bar(k + 0.2, r["p_adv"], 0.4, label="attacked", color="tab:red")
            row[3].set(ylim=(0, 1.05), xticks=k)
            row[3].set_title(f"probabilities: p(label) {r['p_clean'][label]:.2f} → {r['p_adv'][label]:.2f}",
                             fontsize=8)
            row[3].legend(fontsize=7, loc="upper right")
        self.fig.tight_layout()
        return res
