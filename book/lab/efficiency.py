"""Training efficiently: number formats, loss scaling, mixed precision, gradient accumulation,
activation checkpointing, and honest timing.

Chapter: ``efficiency``.

* :func:`format_limits` derives a floating-point format's range and precision from its bit layout;
  :func:`format_table` puts that next to ``torch.finfo``.
* :func:`scaler_update` and :class:`DynamicLossScaler` are dynamic loss scaling written out: scale the
  loss up so small fp16 gradients survive, halve the scale and skip the step when a gradient overflows,
  double it after ``growth_interval`` good steps -- the rule ``torch.amp.GradScaler`` follows
  (tests/chapters/test_efficiency.py runs both side by side).
* :func:`train_steps` is a small training loop with autocast on *any* device (``book.train.fit`` enables
  autocast on CUDA only), optional loss scaling and gradient accumulation over micro-batches.
* :class:`DeepMLP` can run its blocks under ``torch.utils.checkpoint``; :class:`SavedTensorMeter` counts
  the bytes autograd keeps for the backward pass (works on the CPU, where ``torch.cuda.max_memory_allocated``
  does not exist).
"""
from __future__ import annotations

import contextlib
import math
import time
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from book.config import sync

# name -> (dtype, exponent bits, mantissa bits); one sign bit each
FORMATS = {"float32": (torch.float32, 8, 23), "float16": (torch.float16, 5, 10), "bfloat16": (torch.bfloat16, 8, 7)}


# ============================================================================ number formats
def format_limits(exp_bits: int, man_bits: int) -> dict:
    """Range and precision of an IEEE-style binary format with ``exp_bits`` exponent and ``man_bits`` stored
    mantissa bits (plus one sign bit and an implicit leading 1).

    bias = 2^(e-1) - 1; the largest exponent pattern is reserved for inf/NaN, so the largest finite number is
    (2 - 2^-m)·2^bias; eps (the gap after 1.0) is 2^-m; the smallest *normal* number ("tiny") is 2^(1-bias);
    subnormals reach down to 2^(1-bias-m) with fewer significant bits.
    """
    if exp_bits < 2 or man_bits < 1:
        raise ValueError(f"need at least 2 exponent bits and 1 mantissa bit, got {exp_bits} and {man_bits}")
    bias = 2 ** (exp_bits - 1) - 1
    return {"bits": 1 + exp_bits + man_bits, "max": (2 - 2.0 ** -man_bits) * 2.0 ** bias, "eps": 2.0 ** -man_bits,
            "tiny": 2.0 ** (1 - bias), "smallest_subnormal": 2.0 ** (1 - bias - man_bits)}


def format_table() -> list[dict]:
    """One row per format: bit layout, and max / eps / tiny / smallest subnormal as ``torch.finfo`` reports them."""
    rows = []
    for name, (dtype, e, m) in FORMATS.items():
        fi = torch.finfo(dtype)
        rows.append({"name": name, "bits": fi.bits, "exponent": e, "mantissa": m, "max": fi.max, "eps": fi.eps,
                     "tiny": fi.tiny, "smallest_subnormal": fi.smallest_normal * fi.eps, "bytes": fi.bits // 8})
    return rows


def draw_formats(ax) -> None:
    """The bit layouts of float32, float16 and bfloat16 as coloured boxes: sign, exponent (range), mantissa
    (precision), one box per bit."""
    colors = {"sign": "tab:red", "exponent": "tab:green", "mantissa": "tab:blue"}
    ax.clear()
    for row, (name, (_, e, m)) in enumerate(FORMATS.items()):
        y = len(FORMATS) - 1 - row
        parts = [("sign", 1), ("exponent", e), ("mantissa", m)]
        x = 0
        for part, n in parts:
            for _ in range(n):
                ax.add_patch(plt_rectangle((x, y + 0.1), 0.9, 0.8, color=colors[part], alpha=0.75))
                x += 1
        ax.text(-0.6, y + 0.5, name, ha="right", va="center", fontsize=10)
        ax.text(x + 0.5, y + 0.5, f"{1 + e + m} bits: {e} exponent, {m} mantissa", va="center", fontsize=9)
    for part, c in colors.items():
        ax.plot([], [], "s", color=c, alpha=0.75, label=part)
    ax.legend(loc="upper right", fontsize=8, ncol=3, bbox_to_anchor=(1.0, 1.18), frameon=False)
    ax.set_xlim(-7, 50)
    ax.set_ylim(0, len(FORMATS))
    ax.axis("off")


def plt_rectangle(*args, **kwargs):
    from matplotlib.patches import Rectangle
    return Rectangle(*args, **kwargs)


def tensor_bytes(shape, dtype: torch.dtype) -> int:
    """Bytes of a dense tensor of ``shape`` in ``dtype`` (``numel · itemsize``), without allocating it."""
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"dtype must be a torch.dtype such as torch.bfloat16, got {dtype!r}")
    return math.prod(shape) * dtype.itemsize


def lost_fraction(values: torch.Tensor, dtype: torch.dtype, scale: float = 1.0) -> dict:
    """What happens to the non-zero ``values`` (usually fp32 gradients) multiplied by ``scale`` and cast to
    ``dtype``: the fraction that becomes 0 (underflow), that lands among the subnormals (kept with fewer
    significant bits), and that becomes inf (overflow)."""
    v = values.detach().flatten().float()
    v = v[v != 0] * scale
    if v.numel() == 0:
        raise ValueError("no non-zero values to cast")
    c = v.to(dtype)
    fi = torch.finfo(dtype)
    finite = c.isfinite()
    return {"zero": (c == 0).float().mean().item(), "inf": (~finite).float().mean().item(),
            "subnormal": ((c != 0) & finite & (c.abs() < fi.tiny)).float().mean().item()}


def char_ngram_loss(ids: torch.Tensor, vocab_size: int, order: int = 2) -> float:
    """Cross-entropy (nats per character) of the best unigram (``order=1``: character frequencies) or bigram
    (``order=2``: frequencies of the next character given the current one) model of ``ids``, fitted on
    ``ids`` itself -- the trivial baselines a character language model's training loss must beat."""
    if order not in (1, 2):
        raise ValueError(f"order must be 1 (unigram) or 2 (bigram), got {order!r}")
    ids = torch.as_tensor(ids).flatten().long()
    if ids.numel() < 2 or int(ids.min()) < 0 or int(ids.max()) >= vocab_size:
        raise ValueError(f"ids must hold at least 2 token ids in [0, {vocab_size}), got {ids.numel()} "
                         f"ids in [{int(ids.min()) if ids.numel() else 0}, {int(ids.max()) if ids.numel() else 0}]")
    if order == 1:
        p = torch.bincount(ids, minlength=vocab_size).double() / ids.numel()
        p = p[p > 0]
        return float(-(p * p.log()).sum())
    pairs = torch.bincount(ids[:-1] * vocab_size + ids[1:], minlength=vocab_size ** 2).double()
    pairs = pairs.view(vocab_size, vocab_size)                       # (V, V): current -> next
    cond = pairs / pairs.sum(1, keepdim=True).clamp_min(1)           # p(next | current)
    seen = pairs > 0
    return float(-(pairs[seen] * cond[seen].log()).sum() / pairs.sum())


def activation_gradients(model: nn.Module, loss_fn: Callable[[], torch.Tensor]) -> torch.Tensor:
    """All gradients with respect to the outputs of ``model``'s ``nn.Linear`` layers (flattened, fp32) for
    the loss that ``loss_fn()`` computes -- the gradients that flow *between* layers in the backward pass,
    which are the ones that underflow first in fp16 (Micikevicius et al., 2018)."""
    grads, handles = [], []

    def hook(module, inputs, output):
        if output.requires_grad:
            output.register_hook(lambda g: grads.append(g.detach().float().flatten()))
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Linear)]
    try:
        loss = loss_fn()
        model.zero_grad(set_to_none=True)
        loss.backward()
    finally:
        for h in handles:
            h.remove()
    model.zero_grad(set_to_none=True)
    if not grads:
        raise ValueError("the model has no nn.Linear layer whose output needs a gradient")
    return torch.cat(grads)


# ============================================================================ dynamic loss scaling
def scaler_update(scale: float, good_steps: int, found_inf: bool, growth_factor: float = 2.0,
                  backoff_factor: float = 0.5, growth_interval: int = 2000) -> tuple[float, int]:
    """One update of a dynamic loss scale. Returns ``(new_scale, new_good_steps)``.

    An overflow (``found_inf``) multiplies the scale by ``backoff_factor`` and restarts the count; otherwise
    the count grows, and after ``growth_interval`` good steps in a row the scale grows by ``growth_factor``
    and the count restarts.
    """
    if found_inf:
        return scale * backoff_factor, 0
    good_steps += 1
    if good_steps >= growth_interval:
        return scale * growth_factor, 0
    return scale, good_steps


class DynamicLossScaler:
    """Dynamic loss scaling from scratch, with the interface of ``torch.amp.GradScaler``::

        scaler.scale(loss).backward()
        scaler.step(optimizer)     # unscales the gradients; skips the step if any is inf/NaN
        scaler.update()            # halves the scale after an overflow, doubles it after N good steps

    ``history`` records ``(scale, skipped)`` for every step.
    """

    def __init__(self, init_scale: float = 2.0 ** 16, growth_factor: float = 2.0, backoff_factor: float = 0.5,
                 growth_interval: int = 2000):
        if init_scale <= 0 or growth_factor <= 1 or not 0 < backoff_factor < 1 or growth_interval < 1:
            raise ValueError("need init_scale > 0, growth_factor > 1, 0 < backoff_factor < 1, growth_interval >= 1; "
                             f"got {init_scale}, {growth_factor}, {backoff_factor}, {growth_interval}")
        self._scale = float(init_scale)
        self.growth_factor, self.backoff_factor, self.growth_interval = growth_factor, backoff_factor, growth_interval
        self.good_steps = 0
        self.found_inf: bool | None = None   # set by unscale_/step, consumed by update
        self.history: list[tuple[float, bool]] = []

    def get_scale(self) -> float:
        return self._scale

    def scale(self, loss: torch.Tensor) -> torch.Tensor:
        """The loss times the current scale (call ``.backward()`` on this)."""
        return loss * self._scale

    def unscale_(self, optimizer: torch.optim.Optimizer) -> bool:
        """Divide every gradient by the scale (in fp32); return whether any of them is inf or NaN."""
        if self.found_inf is not None:
            raise RuntimeError("unscale_ was already called since the last update(); call update() after step()")
        inv = 1.0 / self._scale
        flags = []
        for group in optimizer.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                p.grad.mul_(inv)
                flags.append((~p.grad.isfinite()).any())   # stays on the device: no sync per tensor
        self.found_inf = bool(torch.stack(flags).any()) if flags else False   # one sync
        return self.found_inf

    def step(self, optimizer: torch.optim.Optimizer) -> bool:
        """Unscale (if not done yet) and step the optimizer unless a gradient overflowed. Returns True if it stepped."""
        if self.found_inf is None:
            self.unscale_(optimizer)
        if not self.found_inf:
            optimizer.step()
        return not self.found_inf

    def update(self) -> None:
        """Apply :func:`scaler_update` with what the last step found."""
        if self.found_inf is None:
            raise RuntimeError("update() needs a step(optimizer) first")
        self.history.append((self._scale, self.found_inf))
        self._scale, self.good_steps = scaler_update(self._scale, self.good_steps, self.found_inf, self.growth_factor,
                                                     self.backoff_factor, self.growth_interval)
        self.found_inf = None


# ============================================================================ mixed precision training
def amp_context(device, dtype: torch.dtype | None):
    """``torch.autocast`` on ``device`` (CPU, CUDA, ...) in ``dtype``; a no-op when ``dtype`` is None."""
    if dtype is None:
        return contextlib.nullcontext()
    if dtype not in (torch.float16, torch.bfloat16):
        raise ValueError(f"autocast takes torch.float16 or torch.bfloat16 (or None for fp32), got {dtype}")
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)




def split_batch(x: torch.Tensor, y: torch.Tensor, k: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``k`` equal micro-batches of ``(x, y)`` along the first dimension."""
    if k < 1 or len(x) % k:
        raise ValueError(f"a batch of {len(x)} cannot be split into {k} equal micro-batches; "
                         f"choose k dividing {len(x)}")
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} examples but y has {len(y)}")
    return list(zip(x.chunk(k), y.chunk(k)))


def accumulated_grads(model: nn.Module, loss_fn: Callable, x: torch.Tensor, y: torch.Tensor, k: int) -> list:
    """Gradients of the mean loss over ``(x, y)``, computed as ``k`` micro-batches whose losses are divided by
    ``k`` and whose gradients add up in ``.grad`` (for k = 1: one ordinary backward pass)."""
    model.zero_grad(set_to_none=True)
    for xb, yb in split_batch(x, y, k):
        (loss_fn(model(xb), yb) / k).backward()
    grads = [p.grad.detach().clone() for p in model.parameters() if p.grad is not None]
    model.zero_grad(set_to_none=True)
    return grads


def train_steps(model: nn.Module, get_batch: Callable, steps: int, lr: float, *, loss_fn: Callable | None = None,
                amp_dtype: torch.dtype | None = None, micro_batches: int = 1, loss_scaler=None,
                weight_decay: float = 0.0, grad_clip: float | None = 1.0) -> dict:
    """Train with AdamW for ``steps`` optimizer steps; return ``{"loss": [...], "seconds": s, "skipped": n}``.

    ``get_batch(step) -> (x, y)`` gives the full batch; with ``micro_batches=k`` it is split into k parts
    whose scaled losses are backpropagated one after the other before a single optimizer step (gradient
    accumulation: the activations of only one part are alive at a time). ``amp_dtype`` runs the forward pass
    under autocast on the model's device (CPU included). ``loss_scaler`` (a :class:`DynamicLossScaler` or
    ``torch.amp.GradScaler``) is required for float16, whose gradients underflow without it.
    Losses are read back once, at the end (no per-step GPU sync).
    """
    loss_fn = loss_fn or (lambda out, y: F.cross_entropy(out.reshape(-1, out.shape[-1]).float(), y.reshape(-1)))
    device = next(model.parameters()).device
    if amp_dtype == torch.float16 and loss_scaler is None:
        raise ValueError("float16 autocast needs loss scaling: pass loss_scaler=DynamicLossScaler() "
                         "(or torch.amp.GradScaler()), or use torch.bfloat16, which has fp32's range")
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    losses = torch.zeros(steps, device=device)
    skipped = 0
    model.train()
    sync(device)
    t0 = time.perf_counter()
    for step in range(steps):
        x, y = get_batch(step)
        opt.zero_grad(set_to_none=True)
        for xb, yb in split_batch(x, y, micro_batches):
            with amp_context(device, amp_dtype):
                loss = loss_fn(model(xb), yb) / micro_batches
            (loss_scaler.scale(loss) if loss_scaler is not None else loss).backward()
            losses[step] += loss.detach().float()
        if loss_scaler is not None:
            loss_scaler.unscale_(opt)
        if grad_clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        if loss_scaler is not None:
            before = loss_scaler.get_scale()
            loss_scaler.step(opt)
            loss_scaler.update()
            skipped += loss_scaler.get_scale() < before   # the scale only shrinks after a skipped step
        else:
            opt.step()
    sync(device)
    seconds = time.perf_counter() - t0
    out = losses.tolist()
    if not all(math.isfinite(v) for v in out):
        raise FloatingPointError("the training loss became inf/NaN: lower the learning rate, or use loss scaling "
                                 "with float16")
    return {"loss": out, "seconds": seconds, "skipped": skipped}


# ============================================================================ activation checkpointing
class DeepMLP(nn.Module):
    """``depth`` blocks ``Linear(width, width) -> ReLU`` and a linear head, for checkpointing experiments.

    ``forward(x, segments=s)`` cuts the blocks into ``s`` consecutive chunks of (nearly) equal length and runs
    each under ``torch.utils.checkpoint.checkpoint(use_reentrant=False)``: autograd then keeps only each
    chunk's *input* and recomputes the chunk's activations during the backward pass. ``segments=0``: none.
    """

    def __init__(self, depth: int = 16, width: int = 256, n_in: int | None = None, n_out: int = 10):
        super().__init__()
        self.inp = nn.Linear(n_in, width) if n_in else nn.Identity()
        self.blocks = nn.ModuleList(nn.Sequential(nn.Linear(width, width), nn.ReLU()) for _ in range(depth))
        self.head = nn.Linear(width, n_out)

    def forward(self, x: torch.Tensor, segments: int = 0) -> torch.Tensor:
        h = self.inp(x)                                             # (B, width)
        for start, end in chunk_bounds(len(self.blocks), segments) if segments else [(0, len(self.blocks))]:
            run = _Chunk(self.blocks[start:end])
            h = checkpoint(run, h, use_reentrant=False) if segments else run(h)
        return self.head(h)                                         # (B, n_out)


class _Chunk(nn.Module):
    def __init__(self, blocks):
        super().__init__()
        self.blocks = blocks

    def forward(self, h):
        for b in self.blocks:
            h = b(h)
        return h


def chunk_bounds(depth: int, segments: int) -> list[tuple[int, int]]:
    """``segments`` consecutive ``(start, end)`` ranges covering ``range(depth)``, lengths differing by at most 1."""
    if not 1 <= segments <= depth:
        raise ValueError(f"segments must be between 1 and depth={depth}, got {segments}")
    edges = [round(i * depth / segments) for i in range(segments + 1)]
    return list(zip(edges[:-1], edges[1:]))


class SavedTensorMeter:
    """Count the tensors autograd saves for the backward pass while the ``with`` block runs.

    Each tensor saved through ``torch.autograd.graph.saved_tensors_hooks`` is counted once per storage (a
    ReLU output saved by the ReLU *and* by the next Linear is one buffer); storages of ``exclude`` (e.g. the
    model's parameters, which exist anyway) are skipped. Tensors saved *inside* a checkpointed region are
    not seen -- checkpointing replaces them by a recipe to recompute them -- but the region's inputs are,
    because ``checkpoint(use_reentrant=False)`` saves them for the recomputation::

        with SavedTensorMeter(model.parameters()) as meter:
            loss = loss_fn(model(x), y)
        meter.bytes, meter.count
    """

    def __init__(self, exclude=()):
        self._exclude = {t.untyped_storage().data_ptr() for t in exclude}
        self._seen: dict[int, int] = {}
        self._ctx = None

    def _pack(self, t):
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr not in self._exclude and ptr != 0:
            self._seen[ptr] = storage.nbytes()
        return t

    def __enter__(self):
        self._ctx = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc):
        self._ctx.__exit__(*exc)

    @property
    def bytes(self) -> int:
        return sum(self._seen.values())

    @property
    def count(self) -> int:
        return len(self._seen)


def measure_checkpointing(model: DeepMLP, x: torch.Tensor, y: torch.Tensor, segments: int, repeats: int = 3) -> dict:
    """Memory and time of one training step (forward + backward) of ``model`` with ``segments`` checkpointed chunks.

    Returns ``held`` (bytes autograd keeps between forward and backward, measured), ``peak`` (``held`` plus the
    activations of the largest chunk, recomputed while its backward runs -- measured by running that chunk
    without checkpointing), ``cuda_peak`` (``torch.cuda.max_memory_allocated`` above the memory already in
    use, on CUDA only, else None), ``seconds`` (the fastest of ``repeats`` timed steps after one warm-up:
    the least disturbed by other work on the machine) and
    ``grads`` (the parameter gradients, to compare across settings).
    """
    params = list(model.parameters())
    loss_fn = nn.functional.cross_entropy
    with SavedTensorMeter(params) as meter:
        loss = loss_fn(model(x, segments), y)
    held = meter.bytes
    model.zero_grad(set_to_none=True)
    loss.backward()
    grads = [p.grad.detach().clone() for p in params]
    recompute = 0
    if segments:
        start, end = max(chunk_bounds(len(model.blocks), segments), key=lambda se: se[1] - se[0])
        h = model.inp(x).detach().requires_grad_(True)
        with SavedTensorMeter(params + [h]) as chunk_meter:    # the chunk's input is already in `held`
            _Chunk(model.blocks[start:end])(h)
        recompute = chunk_meter.bytes
    cuda_peak = None
    dev = x.device
    if dev.type == "cuda":
        model.zero_grad(set_to_none=True)
        sync(dev)
        base = torch.cuda.memory_allocated(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        loss_fn(model(x, segments), y).backward()
        sync(dev)
        cuda_peak = torch.cuda.max_memory_allocated(dev) - base
    times = []
    for i in range(repeats + 1):
        model.zero_grad(set_to_none=True)
        sync(dev)
        t0 = time.perf_counter()
        loss_fn(model(x, segments), y).backward()
        sync(dev)
        if i:   # the first run is a warm-up
            times.append(time.perf_counter() - t0)
    model.zero_grad(set_to_none=True)
    return {"segments": segments, "held": held, "peak": held + recompute, "cuda_peak": cuda_peak,
            "seconds": min(times), "grads": grads}


def draw_checkpoint_bars(axes, results: list[dict], i: int) -> None:
    """Two bar charts over all settings in ``results`` (from :func:`measure_checkpointing`), setting ``i``
    highlighted: memory (held and estimated peak, MiB) and time per step relative to no checkpointing."""
    ax_mem, ax_time = axes
    for ax in axes:
        ax.clear()
    labels = [str(r["segments"]) if r["segments"] else "off" for r in results]
    xs = range(len(results))
    mib = 2 ** 20
    colors = ["tab:orange" if j == i else "tab:blue" for j in xs]
    ax_mem.bar([j - 0.2 for j in xs], [r["held"] / mib for r in results], 0.4, color=colors, label="held for backward")
    ax_mem.bar([j + 0.2 for j in xs], [r["peak"] / mib for r in results], 0.4, color=colors, alpha=0.45,
               label="peak (held + one recomputed chunk)")
    ax_mem.set_xticks(list(xs), labels)
    ax_mem.set_xlabel("checkpointed segments")
    ax_mem.set_ylabel("MiB of activations")
    ax_mem.set_ylim(0, 1.35 * max(q["peak"] for q in results) / mib)   # room for the legend
    ax_mem.legend(fontsize=8, loc="upper center", ncol=2)
    r = results[i]
    ax_mem.set_title(f"segments {labels[i]}: held {r['held'] / mib:.1f} MiB, peak {r['peak'] / mib:.1f} MiB")
    base = results[0]["seconds"]
    ax_time.bar(list(xs), [q["seconds"] / base for q in results], color=colors)
    ax_time.axhline(1.0, color="grey", lw=0.8)
    ax_time.set_xticks(list(xs), labels)
    ax_time.set_xlabel("checkpointed segments")
    ax_time.set_ylabel("time per step (× no checkpointing)")
    ax_time.set_title(f"segments {labels[i]}: {r['seconds'] / base:.2f}× the time")


def train_step_fn(model: nn.Module, x: torch.Tensor, y: torch.Tensor, lr: float = 1e-3,
                  amp_dtype: torch.dtype | None = None, loss_fn: Callable | None = None) -> Callable[[], None]:
    """A closure that does one AdamW training step of ``model`` on the fixed batch ``(x, y)`` under
    autocast ``amp_dtype`` -- for :func:`~book.hardware.time_step` (no loss scaling: it measures speed,
    not accuracy)."""
    loss_fn = loss_fn or (lambda out, t: F.cross_entropy(out.reshape(-1, out.shape[-1]).float(), t.reshape(-1)))
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    device = x.device

    def step():
        with amp_context(device, amp_dtype):
            loss = loss_fn(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def layernorm_gelu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """LayerNorm over the last dimension followed by the tanh approximation of GELU, written operation by
    operation. Eager PyTorch runs each of its ~15 element-wise operations as its own kernel, each reading
    and writing the whole tensor; ``torch.compile`` fuses them into a few kernels -- the kind of code where
    compilation pays off most. Equals ``F.gelu(F.layer_norm(x, ...), approximate="tanh")``."""
    if x.shape[-1] != weight.shape[-1] or weight.shape != bias.shape:
        raise ValueError(f"weight and bias must both have shape ({x.shape[-1]},) to match x's last dimension; "
                         f"got {tuple(weight.shape)} and {tuple(bias.shape)}")
    mu = x.mean(-1, keepdim=True)                                   # (..., 1)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)                    # (..., 1), biased, as LayerNorm
    h = (x - mu) / torch.sqrt(var + eps) * weight + bias
    return 0.5 * h * (1 + torch.tanh(math.sqrt(2 / math.pi) * (h + 0.044715 * h ** 3)))
