"""The compression chapter's experiments: model size and latency, pruning, distillation, and its explorer.

(Quantization itself is written from scratch in :mod:`book.nn.quantize`.)

* **Pruning.** :func:`magnitude_masks` is global magnitude pruning from scratch; :func:`torch_global_prune`
  does it with ``torch.nn.utils.prune.global_unstructured``; both keep exactly the same weights.
* **Distillation.** :func:`distillation_loss` is Hinton et al.'s (2015) temperature-softened KL plus
  cross-entropy, with the ``T²`` factor; :func:`train_student` trains a small student with ``book.train.fit``.
* :class:`CompressionExplorer`: sliders over sparsity and bits (live), and a static player for the site.
"""
from __future__ import annotations

import copy
import io

import torch
import torch.nn.functional as F
from torch import nn

from book.hardware import time_step
from book.nn.quantize import fake_quantize, quiet_quantization_warnings
from book.ui import Explorer

# ============================================================================ model size and speed


def state_dict_bytes(module: nn.Module) -> int:
    """Bytes of ``torch.save(module.state_dict())`` written to memory: the size of the model file."""
    if not isinstance(module, nn.Module):
        raise TypeError(f"state_dict_bytes takes an nn.Module, got {type(module).__name__}")
    buf = io.BytesIO()
    with quiet_quantization_warnings():
        torch.save(module.state_dict(), buf)
    return buf.getbuffer().nbytes


@torch.no_grad()
def latency_ms(model: nn.Module, x: torch.Tensor, repeats: int = 20, warmup: int = 3) -> float:
    """Median wall-clock milliseconds of one forward pass on ``x`` (in eval mode, after ``warmup`` passes).

    The median ignores the occasional slow run caused by other processes; on CUDA we synchronise around
    each pass so that queued kernels are counted.
    """
    was_training = model.training
    model.eval()
    try:
        return 1000 * time_step(lambda: model(x), x.device, repeats=repeats, warmup=warmup)
    finally:
        model.train(was_training)


# ============================================================================ pruning


def prunable(model: nn.Module) -> list[tuple[nn.Module, str]]:
    """``(module, "weight")`` for every ``Conv2d`` and ``Linear`` (biases are few and are never pruned)."""
    out = [(m, "weight") for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    if not out:
        raise ValueError("the model has no Conv2d or Linear layers to prune")
    return out


def _n_to_prune(sparsity: float, n: int) -> int:
    if not 0.0 <= sparsity <= 1.0:
        raise ValueError(f"sparsity must be a fraction in [0, 1], got {sparsity}")
    return round(sparsity * n)                                           # torch.nn.utils.prune rounds the same way


def magnitude_masks(weights: list[torch.Tensor], sparsity: float) -> list[torch.Tensor]:
    """Global magnitude pruning from scratch: rank *all* weights of all tensors by ``|w|`` together and zero
    the ``round(sparsity · N)`` smallest. Returns one float mask (1 = keep) per tensor, shaped like it."""
    if isinstance(weights, torch.Tensor):
        weights = [weights]
    if not weights:
        raise ValueError("give at least one weight tensor")
    flat = torch.cat([w.detach().reshape(-1) for w in weights]).abs()  # (N,)
    k = _n_to_prune(sparsity, flat.numel())
    keep = torch.ones_like(flat)
    if k > 0:
        keep[torch.topk(flat, k, largest=False).indices] = 0.0          # the k smallest magnitudes
    masks, i = [], 0
    for w in weights:
        masks.append(keep[i:i + w.numel()].reshape(w.shape))             # back to each tensor's shape
        i += w.numel()
    return masks


@torch.no_grad()
def scratch_global_prune(model: nn.Module, sparsity: float) -> list[torch.Tensor]:
    """Zero the globally smallest weights of ``model`` in place (no re-parametrisation); return the masks."""
    params = [getattr(m, name) for m, name in prunable(model)]
    masks = magnitude_masks(params, sparsity)
    for p, mask in zip(params, masks):
        p.mul_(mask)
    return masks


def torch_global_prune(model: nn.Module, sparsity: float) -> nn.Module:
    """``torch.nn.utils.prune.global_unstructured`` with L1 (magnitude) ranking, in place.

    Each pruned layer then holds ``weight_orig`` and ``weight_mask`` and computes ``weight = weight_orig ·
    mask`` in a forward pre-hook, so fine-tuning keeps pruned weights at zero. Call
    :func:`make_pruning_permanent` to fold the mask in.
    """
    import torch.nn.utils.prune as prune

    _n_to_prune(sparsity, 1)                                             # validate
    prune.global_unstructured(prunable(model), pruning_method=prune.L1Unstructured, amount=float(sparsity))
    return model


def make_pruning_permanent(model: nn.Module) -> nn.Module:
    """Replace each pruned ``weight_orig``/``weight_mask`` pair by a plain (sparse-valued) ``weight``."""
    import torch.nn.utils.prune as prune

    for m, name in prunable(model):
        if prune.is_pruned(m) and hasattr(m, name + "_mask"):
            prune.remove(m, name)
    return model


def weight_sparsity(model: nn.Module) -> float:
    """Fraction of exactly-zero entries among the prunable weights (the effective ones, masks included)."""
    params = [getattr(m, name) for m, name in prunable(model)]
    zeros = sum(int((p == 0).sum()) for p in params)
    return zeros / sum(p.numel() for p in params)


# ============================================================================ distillation


def soft_target_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, T: float = 4.0) -> torch.Tensor:
    """``T² · KL(softmax(teacher/T) ‖ softmax(student/T))``, averaged over the batch.

    Why ``T²``: the gradient of the KL term with respect to a student logit is ``(p_i - q_i)/T`` and the
    difference of two softened distributions itself shrinks like ``1/T``, so without the factor the soft
    term's gradients fall like ``1/T²`` as the temperature rises. Multiplying by ``T²`` keeps them on the
    scale of the hard-label term whatever ``T`` is (Hinton, Vinyals & Dean 2015).
    """
    if student_logits.shape != teacher_logits.shape or student_logits.ndim != 2:
        raise ValueError("student and teacher logits must both have shape (B, n_classes); got "
                         f"{tuple(student_logits.shape)} and {tuple(teacher_logits.shape)}")
    if T <= 0:
        raise ValueError(f"temperature T must be positive, got {T}")
    log_p = F.log_softmax(student_logits / T, dim=1)                     # (B, K) student, softened
    log_q = F.log_softmax(teacher_logits.detach() / T, dim=1)            # (B, K) teacher, softened
    return T * T * F.kl_div(log_p, log_q, reduction="batchmean", log_target=True)


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
                      T: float = 4.0, alpha: float = 0.5) -> torch.Tensor:
    """``alpha · T² · KL(teacher_T ‖ student_T) + (1 - alpha) · CE(student, labels)``."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha weights the soft term and must be in [0, 1], got {alpha}")
    if labels.ndim != 1 or labels.is_floating_point() or len(labels) != len(student_logits):
        raise ValueError(f"labels must be class indices of shape ({len(student_logits)},), got "
                         f"{tuple(labels.shape)} {labels.dtype}")
    return alpha * soft_target_loss(student_logits, teacher_logits, T) + \
        (1 - alpha) * F.cross_entropy(student_logits, labels)


def student_mlp(hidden: int = 32, n_in: int = 784, n_out: int = 10) -> nn.Sequential:
    """The small student: ``Flatten → Linear(784, hidden) → ReLU → Linear(hidden, 10)``."""
    return nn.Sequential(nn.Flatten(), nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, n_out))


@torch.no_grad()
def logits_of(model: nn.Module, x: torch.Tensor, batch_size: int = 2048) -> torch.Tensor:
    """The model's logits on ``x`` (eval mode, in batches) -- computed once, reused every distillation step."""
    was_training = model.training
    model.eval()
    out = torch.cat([model(x[i:i + batch_size]).float() for i in range(0, len(x), batch_size)])
    model.train(was_training)
    return out


def train_student(student: nn.Module, x: torch.Tensor, y: torch.Tensor, teacher_logits: torch.Tensor | None = None,
                  *, steps: int, T: float = 4.0, alpha: float = 0.5, lr: float = 3e-3, batch_size: int = 64,
                  generator: torch.Generator | None = None):
    """Train ``student`` for ``steps`` Adam steps with ``book.train.fit``; with ``teacher_logits`` (aligned with
    ``x``) the loss is :func:`distillation_loss`, without them plain cross-entropy on the hard labels.
    Batches are drawn with ``generator``, so two students given equal generators see the same batches."""
    if teacher_logits is not None and teacher_logits.shape[0] != len(x):
        raise ValueError(f"teacher_logits has {teacher_logits.shape[0]} rows but x has {len(x)} examples; "
                         "compute them with logits_of(teacher, x)")
    from book.train import fit

    gen = generator or torch.Generator().manual_seed(0)

    def get_batch(step):
        idx = torch.randint(0, len(x), (batch_size,), generator=gen).to(x.device)
        tb = teacher_logits[idx] if teacher_logits is not None else None
        return x[idx], (y[idx], tb)

    def loss_fn(out, target):
        yb, tb = target
        return F.cross_entropy(out, yb) if tb is None else distillation_loss(out, tb, yb, T, alpha)

    opt = torch.optim.Adam(student.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    return fit(student, get_batch, opt, loss_fn=loss_fn, steps=steps, log_every=max(1, steps // 4), scheduler=sched,
               progress=False)


# ============================================================================ explorer widget


class CompressionExplorer(Explorer):
    """Prune a copy of ``model`` to a global ``sparsity`` and round its weights to ``bits`` (per output channel;
    32 = float), then show the surviving weights' histogram and the accuracy on ``(x, y)`` (validation images
    in the chapter: sliders that choose settings must not look at the test set).

    Settings ``sparsity`` and ``bits``; the sliders offer ``sparsities`` and ``bit_widths``. ``show()``
    needs a live kernel; ``player(("sparsity", "bits"), [(0.5, 32), (0.9, 4)])`` precomputes frames for the
    static site (the :class:`~book.ui.explorer.Explorer` contract). Accuracies are cached per ``(sparsity, bits)``.
    """

    SPARSITIES = (0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98)
    BITS = (32, 8, 6, 4, 3, 2)
    defaults = dict(sparsity=0.8, bits=32)
    layout = dict(ncols=2, figsize=(10, 3.2))
    interval = 900

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, sparsities=SPARSITIES, bit_widths=BITS,
                 **settings):
        self.model, self.x, self.y = model, x, y
        self.sparsities, self.bit_widths = tuple(sparsities), tuple(bit_widths)
        self.cache: dict[tuple[float, int], tuple[float, torch.Tensor]] = {}
        super().__init__(**settings)

    def _validate(self, s, changed):
        _n_to_prune(s["sparsity"], 1)
        if not (isinstance(s["bits"], int) and 2 <= s["bits"] <= 32):
            raise ValueError(f"bits must be an int from 2 to 32 (32 = float), got {s['bits']!r}")

    def _controls(self):
        import ipywidgets as w
        sparsities = sorted({*self.sparsities, self.settings["sparsity"]})
        bits = sorted({*self.bit_widths, self.settings["bits"]}, reverse=True)
        return {"sparsity": w.SelectionSlider(options=[(f"{100 * v:g} %", v) for v in sparsities],
                                              description="sparsity"),
                "bits": w.SelectionSlider(options=[("float32" if b == 32 else f"{b} bit", b) for b in bits],
                                          description="bits")}

    def compressed(self, sparsity: float, bits: int) -> nn.Module:
        m = copy.deepcopy(self.model).eval()
        scratch_global_prune(m, sparsity)
        return m if bits == 32 else fake_quantize_model(m, bits, per_channel=True)

    def compute(self, sparsity: float, bits: int) -> tuple[float, torch.Tensor]:
        key = (float(sparsity), int(bits))
        if key not in self.cache:
            from book.train import accuracy

            m = self.compressed(sparsity, bits)
            w = torch.cat([getattr(mod, n).detach().reshape(-1) for mod, n in prunable(m)]).cpu()
            self.cache[key] = (accuracy(m, self.x, self.y), w[w != 0])
        return self.cache[key]

    def draw(self, **override) -> float:
        """Draw the settings (plus ``override``); returns the compressed model's accuracy."""
        s = self.resolve(**override)
        sparsity, bits = s["sparsity"], s["bits"]
        self.figure()
        ax1, ax2 = self.axes
        acc, w = self.compute(sparsity, bits)
        ax1.clear()
        ax1.hist(w.numpy(), bins=120, range=(-0.5, 0.5), color="tab:blue")
        ax1.set_yscale("log")
        ax1.set_xlabel("weight value (all conv and linear layers)")
        ax1.set_title(f"{len(w):,} non-zero weights · {'float32' if bits == 32 else f'{bits}-bit'}", fontsize=10)
        ax2.clear()
        for b, style in ((32, "o-"), (bits, "s--")):
            accs = [self.compute(v, b)[0] for v in self.sparsities]
            ax2.plot([100 * v for v in self.sparsities], accs, style, label="float32" if b == 32 else f"{b}-bit")
            if b == bits:
                break
        ax2.plot([100 * sparsity], [acc], "r*", ms=16, label=f"now: {acc:.3f}")
        ax2.set_xlabel("sparsity (%)")
        ax2.set_ylabel("accuracy (no fine-tuning)")
        ax2.set_ylim(0, 1.02)
        ax2.legend(fontsize=8, loc="lower left")
        self.fig.tight_layout()
        return acc


def prune_finetune_curve(model: nn.Module, sparsities, train: tuple, heldout: tuple, *, ft_steps: int = 100,
                         lr: float = 1e-3, batch_size: int = 64,
                         generator: torch.Generator | None = None) -> list[dict]:
    """For each sparsity: prune a copy of ``model`` globally by magnitude, measure its accuracy on ``heldout``
    (validation images: the curve is for *choosing* a sparsity), fine-tune it for ``ft_steps`` Adam steps on
    ``train`` with the mask held fixed, measure again. Returns one dict per sparsity with keys ``sparsity``,
    ``measured`` (zeros actually present), ``pruned`` and ``finetuned`` (accuracies) and ``model`` (the
    fine-tuned copy, mask folded in), so that the chosen one can meet the test set once, at the end."""
    from book.train import accuracy, fit

    rows = []
    for s in sparsities:
        m = torch_global_prune(copy.deepcopy(model), s)
        row = {"sparsity": float(s), "pruned": accuracy(m, *heldout)}
        if ft_steps > 0:
            opt = torch.optim.Adam([p for p in m.parameters() if p.requires_grad], lr=lr)
            fit(m, train, opt, steps=ft_steps, batch_size=batch_size, log_every=ft_steps, generator=generator,
                progress=False)
        make_pruning_permanent(m)
        row["finetuned"] = accuracy(m, *heldout)
        row["measured"] = weight_sparsity(m)
        row["model"] = m
        rows.append(row)
    return rows


@torch.no_grad()
def fake_quantize_model(model: nn.Module, bits: int = 8, per_channel: bool = True) -> nn.Module:
    """A copy of ``model`` whose conv and linear weights are rounded to their symmetric ``bits``-bit grid
    (per output channel, or per tensor) and stored back as floats: "weight-only" quantization, simulated.
    Zeros stay zero (0 is on every symmetric grid), so it composes with pruning."""
    model = copy.deepcopy(model)
    for module, name in prunable(model):
        w = getattr(module, name)
        w.copy_(fake_quantize(w, bits, dim=0 if per_channel else None))
    return model
