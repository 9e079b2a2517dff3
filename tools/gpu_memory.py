"""Upper-bound estimate of every chapter's peak GPU memory under its ``gpu`` profile, checked against a T4.

Colab's free GPU is a 16 GB T4 (about 15 GiB usable). For each ``chapters/*.ipynb`` this reads the gpu
settings from the notebook's ``env.pick(...)`` call, rebuilds the chapter's models from the book's own
classes on the ``meta`` device (shapes, no memory, no compute) and adds up, per phase of the chapter:

- weights + gradients + optimizer state (fp32: Adam/AdamW 2 tensors per trainable parameter, SGD 0),
- the tensors autograd saves for backward in one forward at the gpu batch size (measured, fp32), plus
  twice the largest of them (its gradient and its input's gradient, in flight during backward),
- for no-grad evaluation, the most bytes of forward outputs referenced at once (tracked op by op),
- attention through the decomposed "math" path, which keeps the (B, heads, T, T) weights: more than the
  memory-efficient SDPA kernel a T4 uses, so again an upper bound,
- the data the chapter moves to the device, and whatever earlier phases keep alive,
- a fixed CUDA context / allocator allowance (``CUDA_CONTEXT``).

Run ``python tools/gpu_memory.py`` for the Markdown table (``--check`` exits 1 if a chapter does not fit);
the table and its method are kept in ``docs/benchmarks.md`` (section "Colab's T4"): regenerate it there.
"""
from __future__ import annotations

import argparse
import ast
import json
import math
import sys
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:      # run as a script from anywhere: import the checkout's `book`
    sys.path.insert(0, str(ROOT))

from book.config import Env  # noqa: E402
from book.lab.distributed import zero_memory  # noqa: E402
from book.lab.efficiency import DeepMLP, SavedTensorMeter, layernorm_gelu  # noqa: E402
from book.lab.pretraining import TASK_LABELS  # noqa: E402
from book.nn.counting import count_params  # noqa: E402
from book.nn.gpt import GPT, GPTConfig  # noqa: E402
from book.nn.losses import lm_loss as _lm_loss  # noqa: E402
from book.nn.models import LeNet, deep_mlp  # noqa: E402
from book.nn.models import SmallCNN  # noqa: E402

GiB, MiB = 2 ** 30, 2 ** 20
T4_USABLE = 15 * GiB          # nvidia-smi shows 15,360 MiB on Colab's T4 (sold as "16 GB")
CUDA_CONTEXT = GiB // 2       # CUDA context, cuBLAS/cuDNN handles, allocator rounding: a stated allowance
FP32 = 4
OPT_STATE = {"adam": 2, "adamw": 2, "sgd_momentum": 1, "sgd": 0, None: 0}   # fp32 tensors per trainable parameter
MNIST_PIXELS = 784
VOCAB = 65                    # characters in the shipped Tiny Shakespeare (book.data.text.CharVocab(load_text()))


# ============================================================================ reading the gpu profile
class _StubEnv:
    """Stands in for ``book.config.Env`` so the notebook's own ``env.pick(...)`` runs with profile ``gpu``."""
    profile = "gpu"
    dry = False          # the real gpu configuration, not the dry run
    pick = Env.pick


def gpu_config(notebook: Path) -> SimpleNamespace:
    """The settings ``cfg = env.pick(cpu=..., gpu=...)`` gives on a GPU: the notebook's call, evaluated."""
    cells = json.loads(Path(notebook).read_text())["cells"]
    for cell in cells:
        src = "".join(cell["source"]) if cell["cell_type"] == "code" else ""
        if "env.pick(" not in src:
            continue
        # parse line by line past IPython magics (%pip) that are not Python
        tree = ast.parse("\n".join("" if ln.lstrip().startswith(("%", "!")) else ln for ln in src.splitlines()))
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "pick"
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "env"):
                try:
                    return eval(ast.unparse(node), {"env": _StubEnv(), "dict": dict})
                except NameError as e:
                    raise ValueError(f"{notebook.name}: env.pick(...) must use literal settings to be read "
                                     f"without running the chapter ({e})") from e
    raise ValueError(f"{notebook.name}: no `cfg = env.pick(cpu=..., gpu=...)` call found in its code cells")


# ============================================================================ measuring on the meta device
def _storage_key(t: torch.Tensor) -> int:
    # book.lab.efficiency.SavedTensorMeter keys storages by data_ptr(), which is 0 for every meta tensor (it would
    # count nothing there); the StorageImpl's address identifies a storage on every device.
    return t.untyped_storage()._cdata


class MetaSavedTensorMeter(SavedTensorMeter):
    """``SavedTensorMeter`` that also works on ``meta`` tensors, and records the largest saved storage."""

    def __init__(self, exclude=()):
        super().__init__(())
        self._exclude = {_storage_key(t) for t in exclude}
        self.largest = 0

    def _pack(self, t):
        key = _storage_key(t)
        if key not in self._exclude:
            n = t.untyped_storage().nbytes()
            self._seen[key] = n
            self.largest = max(self.largest, n)
        return t


class OutputMeter(TorchDispatchMode):
    """Peak bytes of the tensors a no-grad forward holds at once: after every op, the sum of the op outputs
    (new storages only) that are still referenced. A storage is freed when its last tensor or view dies (views
    keep their base alive), so a weak reference to the op's output tells whether its storage still exists."""

    def __init__(self, exclude=()):
        super().__init__()
        self._exclude = {_storage_key(t) for t in exclude}
        self._live: dict[int, tuple[weakref.ref, int]] = {}
        self.bytes = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in (out if isinstance(out, (tuple, list)) else (out,)):
            if isinstance(t, torch.Tensor):
                key = _storage_key(t)
                alive = key in self._live and self._live[key][0]() is not None
                if key not in self._exclude and not alive:      # a view of a live storage adds nothing
                    self._live[key] = (weakref.ref(t), t.untyped_storage().nbytes())
        self._live = {k: v for k, v in self._live.items() if v[0]() is not None}
        self.bytes = max(self.bytes, sum(n for _, n in self._live.values()))
        return out


@dataclass
class Workload:
    """One model run by a chapter: ``build()`` the module, ``inputs(batch, device)`` a tuple of its inputs,
    ``loss(out, inputs)`` the scalar it backpropagates (None: a no-grad forward, e.g. evaluation)."""
    name: str
    build: Callable[[], nn.Module]
    inputs: Callable[[int, torch.device], tuple]
    batch: int
    loss: Callable | None = None
    optimizer: str | None = "adam"
    grads: bool = True            # parameter gradients exist during this phase


@dataclass
class Measured:
    params: int
    trainable: int
    param_bytes: int
    activations: int              # saved for backward (train) or all forward outputs (no-grad)
    in_flight: int                # backward's gradient buffers: 2 x the largest saved tensor
    fallback: bool                # True: measured on the CPU at batch 1 and scaled by the batch size


def _forward(model, xs, loss_fn, exclude):
    """Run one forward (and loss) under the right meter; return (activation bytes, largest saved tensor)."""
    if loss_fn is None:
        with torch.no_grad(), OutputMeter(exclude) as meter:
            model(*xs)
        return meter.bytes, 0
    with MetaSavedTensorMeter(exclude) as meter:
        loss = loss_fn(model(*xs), xs)
    del loss                       # frees the graph (matters on the CPU fallback)
    return meter.bytes, meter.largest


def measure(w: Workload) -> Measured:
    """Parameters and activations of ``w`` on ``meta``; if an op has no meta kernel, on the CPU at batch 1
    scaled linearly to ``w.batch`` (activations grow linearly with the batch for every model here)."""
    fallback = False
    try:
        with torch.device("meta"):
            model = w.build()
        xs = w.inputs(w.batch, torch.device("meta"))
        acts, largest = _forward(model, xs, w.loss, list(model.parameters()) + list(model.buffers()))
    except (NotImplementedError, RuntimeError):
        fallback = True
        model = w.build()
        xs = w.inputs(1, torch.device("cpu"))
        acts, largest = _forward(model, xs, w.loss, list(model.parameters()) + list(model.buffers()))
        acts, largest = acts * w.batch, largest * w.batch
    n = count_params(model)
    trainable = count_params(model, trainable_only=True)
    param_bytes = sum(p.numel() * p.element_size() for p in {id(p): p for p in model.parameters()}.values())
    return Measured(n, trainable, param_bytes, acts, 2 * largest, fallback)


# ============================================================================ phases and estimates
@dataclass
class Phase:
    """One stretch of a chapter: a workload plus everything else on the GPU at that time."""
    workload: Workload | None
    data: int = 0                 # datasets / batches held on the device
    extra: int = 0                # other models and tensors kept alive meanwhile
    autocast: bool = False        # fp16 autocast on a T4: adds an fp16 copy of the weights
    note: str = ""
    model_desc: str = ""
    measured: Measured | None = None

    def state_bytes(self) -> int:
        m, w = self.measured, self.workload
        if m is None:
            return 0
        grads = m.trainable * FP32 if w.grads else 0
        return m.param_bytes + grads + OPT_STATE[w.optimizer] * m.trainable * FP32

    def other_bytes(self) -> int:
        m = self.measured
        cast = m.params * 2 if (self.autocast and m) else 0
        return self.extra + cast + (m.in_flight if m else 0)

    def peak(self) -> int:
        acts = self.measured.activations if self.measured else 0
        return CUDA_CONTEXT + self.state_bytes() + acts + self.data + self.other_bytes()


def evaluate_phases(phases: list[Phase]) -> list[Phase]:
    for p in phases:
        if p.workload is not None and p.measured is None:
            p.measured = measure(p.workload)
    return phases


# ---------------------------------------------------------------------------- small helpers for chapters
def mnist_bytes(full: bool) -> int:
    """A load_mnist() split on the device: float32 images (N, 1, 28, 28) and int64 labels, train + test."""
    n = 70_000 if full else 10_000          # full: 60k/10k; shipped: the 10k test set split 8k/2k
    return n * (MNIST_PIXELS * FP32 + 8)


def train_state(n_params: int, optimizer: str | None = "adam", grads: bool = True) -> int:
    """Bytes of a model's fp32 weights, gradients and optimizer state (for models merely kept alive)."""
    return n_params * FP32 * (1 + int(grads) + OPT_STATE[optimizer])


def images(batch, device):
    return (torch.zeros(batch, 1, 28, 28, device=device),)


def tokens(block):
    return lambda batch, device: (torch.zeros(batch, block, dtype=torch.long, device=device),)


def ce_labels(out, xs):
    return F.cross_entropy(out.float(), torch.zeros(out.shape[0], dtype=torch.long, device=out.device))


def lm_loss(out, xs):
    return _lm_loss(out.float(), xs[0])


def gpt(n_layer, n_head, n_embd, block, vocab=VOCAB, causal=True):
    return lambda: GPT(GPTConfig(vocab, block, n_layer, n_head, n_embd, causal=causal))


def gpt_desc(n_layer, n_head, n_embd, block):
    return f"GPT {n_layer}L/{n_head}H/{n_embd}d, block {block}"


def n_params_of(build) -> int:
    with torch.device("meta"):
        return count_params(build())


class _Classifier(nn.Module):
    """book.lab.pretraining.GPTClassifier on a fresh body (its checkpoint's shape: book.lab.pretraining.RECIPE)."""

    def __init__(self, n_layer, n_head, n_embd, block, n_classes=len(TASK_LABELS), lora_rank=0):
        super().__init__()
        from book.lab.pretraining import GPTClassifier
        self.clf = GPTClassifier(GPT(GPTConfig(VOCAB, block, n_layer, n_head, n_embd)), n_classes)
        if lora_rank:
            from book.nn.lora import add_lora
            add_lora(self.clf, r=lora_rank, targets=("qkv", "proj", "mlp.0", "mlp.2"), train=("head",))

    def forward(self, idx):
        return self.clf(idx)


def recipe_shape():
    from book.lab.pretraining import RECIPE
    return RECIPE["n_layer"], RECIPE["n_head"], RECIPE["n_embd"], RECIPE["block"]


# ============================================================================ the chapters
def no_gpu(note):
    return lambda c: [Phase(None, note=note, model_desc="none on the GPU")]


def lenet_chapter(c, *, full, amp=True, extra=0, eval_n=None, note=""):
    """A LeNet(width) trained with Adam at batch 64, then evaluated in batches of 2048 (book.train.evaluate)."""
    desc = f"LeNet(width={c.width})"
    build = lambda: LeNet(width=c.width)  # noqa: E731
    data = mnist_bytes(full)
    n_test = 10_000 if full else 2_000
    return [
        Phase(Workload(desc, build, images, 64, ce_labels, "adam"), data, extra, amp, note or "train, batch 64"),
        Phase(Workload(desc, build, images, min(2048, eval_n or n_test), None, "adam"), data, extra, False,
              "evaluate, batch 2048 (no grad)"),
    ]


def ch_adversarial(c):
    n = n_params_of(lambda: LeNet(width=c.width))
    attacks = 3 * c.n_eval * MNIST_PIXELS * FP32            # x_eval, x_fgsm, x_pgd
    phases = lenet_chapter(c, full=False)
    build = lambda: LeNet(width=c.width)  # noqa: E731
    phases += [
        Phase(Workload(f"LeNet(width={c.width})", build, images, c.n_eval, ce_labels, "adam"), mnist_bytes(False),
              attacks, False, f"PGD on all n_eval={c.n_eval} images at once (input gradients)"),
        Phase(Workload(f"LeNet(width={c.width})", build, images, 64, ce_labels, "adam"), mnist_bytes(False),
              attacks + train_state(n, "adam"), True,
              "adversarial training of a copy; the standard model (+grads, Adam) kept alive"),
    ]
    return phases


def ch_explanations(c):
    build = lambda: LeNet()  # noqa: E731
    n = n_params_of(build)
    nets = 8 * n * FP32     # trained, 5 cascading copies, random-label net, a float64 copy (counted twice)
    masks = 1024 * MNIST_PIXELS * FP32 * 2                  # one chunk of masked images for LIME/KernelSHAP
    return [
        Phase(Workload("LeNet()", build, images, 64, ce_labels, "adam"), mnist_bytes(False), nets, False,
              "train, batch 64 (twice: true and shuffled labels)"),
        Phase(Workload("LeNet()", build, images, max(c.ig_steps, 1), ce_labels, None), mnist_bytes(False),
              nets + masks, False, f"integrated gradients: {c.ig_steps} path points per backward pass"),
    ]


def ch_applications(c):
    L, H, D, T = recipe_shape()
    clf = lambda: _Classifier(L, H, D, T)  # noqa: E731
    text_clf = train_state(n_params_of(clf), "adamw")
    k = len(TASK_LABELS)                                     # clean / misspelled windows, int64
    windows = k * (c.text_per_class + c.text_val_per_class + c.text_test_per_class) * (T + 1) * 8
    phases = [
        Phase(Workload(f"GPTClassifier({gpt_desc(L, H, D, T)})", clf, tokens(T), 32, ce_labels, "adamw"), 0,
              windows, False, "fine-tune the shipped GPT, batch 32"),
        Phase(Workload(f"GPTClassifier({gpt_desc(L, H, D, T)})", clf, tokens(T), k * c.text_test_per_class, None,
                       "adamw"), 0, windows, False, f"evaluate {k * c.text_test_per_class} test windows at once"),
    ]
    for p in lenet_chapter(c, full=c.full_mnist, extra=text_clf + windows):
        p.note += "; the text classifier kept alive"
        phases.append(p)
    return phases


def ch_cnn(c):
    phases = lenet_chapter(c, full=c.full_mnist)
    phases[1].extra += 2 * 10_000 * MNIST_PIXELS * FP32      # augmented and flipped copies of the test set
    phases[1].note += "; + shifted and flipped test sets"
    return phases


def ch_modern_cnn(c):
    build = lambda: SmallCNN(tuple(c.channels))  # noqa: E731
    desc = f"SmallCNN{tuple(c.channels)}"
    n = n_params_of(build)
    # every trained network stays alive (seeds CNNs + seeds MLPs + avg, stride, GAP, separable), each about
    # n parameters with its last gradients; plus one shifted copy of the 1,000 validation images
    kept = (2 * c.seeds + 4) * train_state(n, None) + 1000 * MNIST_PIXELS * FP32
    data = mnist_bytes(c.full_mnist)
    return [
        Phase(Workload(desc, build, images, 64, ce_labels, "adam"), data, kept, True,
              "train, batch 64; the other trained networks kept"),
        Phase(Workload(desc, build, images, 2048, None, "adam"), data, kept, False,
              "evaluate shifted validation images, batch 2048 (no grad)"),
        Phase(Workload(desc, build, images, c.n_maps, ce_labels, "adam"), data, kept, False,
              f"saliency / SmoothGrad: input gradients of n_maps={c.n_maps} images at once"),
    ]


def ch_compression(c):
    n = n_params_of(lambda: LeNet(width=c.width))
    phases = lenet_chapter(c, full=False, eval_n=8000)
    phases[1].note = "logits_of/evaluate, batch 2048 (no grad)"
    copies = 3 * n * FP32                                   # fake-quantized / pruned deep copies alive at once
    phases.append(Phase(Workload(f"LeNet(width={c.width})", lambda: LeNet(width=c.width), images, 64, ce_labels,
                                 "adam"), mnist_bytes(False), train_state(n, "adam") + copies, False,
                        "prune + fine-tune a copy; teacher (+grads, Adam) and a few copies alive"))
    from book.lab.compression import student_mlp
    phases.append(Phase(Workload(f"student MLP(hidden={c.hidden})", lambda: student_mlp(c.hidden), images, 64,
                                 ce_labels, "adam"), mnist_bytes(False),
                        train_state(n, "adam") + 8000 * 10 * FP32, False, "distillation; teacher + its logits kept"))
    return phases


def ch_core_concepts(c):
    n = max(c.sizes)
    # book.hardware.matmul_gflops: a, b (fp32 randn, then .to(dtype)) and a @ b; fp32 is the largest
    mm = 4 * n * n * FP32
    return [Phase(None, extra=mm, note=f"matmul_gflops n={n}: a, b, a@b and one fp32 temporary",
                  model_desc=f"{n}x{n} matmul")]


def ch_efficiency(c):
    g = gpt(c.n_layer, c.n_head, c.n_embd, c.block)
    n_gpt = n_params_of(g)
    desc = gpt_desc(c.n_layer, c.n_head, c.n_embd, c.block)
    mlp = lambda: DeepMLP(depth=c.mlp_depth, width=c.mlp_width)  # noqa: E731
    n_mlp = n_params_of(mlp)
    n_settings = 1 + sum(s <= c.mlp_depth for s in (1, 2, 4, 8, 16, 32))
    grad_copies = n_settings * n_mlp * FP32                 # measure_checkpointing returns a copy of the grads
    mlp_inputs = c.mlp_batch * c.mlp_width * FP32 + c.mlp_batch * 8
    gpt_leftover = train_state(n_gpt, None, grads=False) + 2 * n_gpt * FP32   # model + `full`, `acc` grad copies
    pw = math.prod(c.pw_shape) * FP32

    def mlp_inputs_fn(batch, device):
        return (torch.zeros(batch, c.mlp_width, device=device),)

    class PW(nn.Module):   # layernorm_gelu as a module so the meter can exclude its weight and bias
        def __init__(self):
            super().__init__()
            self.w, self.b = nn.Parameter(torch.ones(c.pw_shape[1])), nn.Parameter(torch.zeros(c.pw_shape[1]))

        def forward(self, x):
            return layernorm_gelu(x, self.w, self.b)

    def pw_inputs(batch, device):
        return (torch.zeros(batch, c.pw_shape[1], device=device, requires_grad=True),)

    return [
        Phase(Workload(desc, g, tokens(c.block), c.batch, lm_loss, "adamw"), 0, 0, True,
              f"train_steps, batch {c.batch} (fp32 and fp16 autocast runs, one at a time)"),
        Phase(Workload(f"DeepMLP({c.mlp_depth}x{c.mlp_width})", mlp, mlp_inputs_fn, c.mlp_batch, ce_labels, None),
              mlp_inputs, grad_copies + gpt_leftover, False,
              f"checkpointing demo, batch {c.mlp_batch}, no checkpointing (largest); all {n_settings} gradient "
              "copies counted"),
        Phase(Workload(f"layernorm_gelu{tuple(c.pw_shape)}", PW, pw_inputs, c.pw_shape[0],
                       lambda out, xs: out.sum(), None),
              pw, train_state(n_mlp, None, grads=False) + grad_copies + mlp_inputs + gpt_leftover, False,
              "eager fused-op demo (x and its grad); the MLP demo's tensors still alive"),
        Phase(Workload(desc, g, tokens(c.block), c.batch, lm_loss, "adamw"), 0,
              train_state(n_gpt, "adamw") + train_state(n_mlp, None, grads=False) + grad_copies + mlp_inputs + 2 * pw,
              True, "eager vs torch.compile: two GPTs with AdamW alive; earlier demos' tensors too"),
    ]


def ch_generative(c):
    from book.lab.generative import VAE
    vae = lambda: VAE(latent=2, hidden=c.hidden)  # noqa: E731
    cvae = lambda: _CVAE(c.hidden)  # noqa: E731
    n_vae, n_clf = n_params_of(vae), n_params_of(LeNet)
    data = mnist_bytes(c.full_mnist)
    samples = 2 * c.n_samples * MNIST_PIXELS * FP32
    return [
        Phase(Workload(f"VAE(hidden={c.hidden})", vae, images, 128, _vae_loss, "adam"), data, 0, False,
              "train_vae, batch 128"),
        Phase(Workload("LeNet()", LeNet, images, 64, ce_labels, "adam"), data, train_state(n_vae, "adam"), True,
              "LeNet judge; the VAE kept"),
        Phase(Workload(f"conditional VAE(hidden={c.hidden})", cvae, _cvae_inputs, 128, _vae_loss, "adam"), data,
              train_state(n_vae, "adam") + train_state(n_clf, "adam") + samples, False,
              "conditional VAE; VAE, judge and samples kept"),
        Phase(Workload("LeNet()", LeNet, images, 1000, None, "adam"), data,
              2 * train_state(n_vae, "adam") + samples, False, "judge scores samples in batches of 1000"),
    ]


def ch_gan(c):
    ring = lambda: _GANPair(c.latent, c.hidden)  # noqa: E731
    data = mnist_bytes(False)                   # the chapter loads the shipped split only
    n_pair = n_params_of(ring)
    # baseline_sets: the 784 x 784 pixel covariance and its Cholesky factor (float64), five image sets
    baselines = 2 * MNIST_PIXELS * MNIST_PIXELS * 8 + 5 * c.n_judge * MNIST_PIXELS * FP32
    return [
        Phase(Workload(f"ring GAN: generator + discriminator (hidden {c.hidden})", ring,
                       lambda b, d: (torch.zeros(b, c.latent, device=d),), c.batch,
                       lambda out, xs: out.sum(), "adam"),
              0, 0, False, f"train_gan on the ring, batch {c.batch}"),
        Phase(Workload("LeNet()", LeNet, images, 64, ce_labels, "adam"), data, 2 * train_state(n_pair, "adam"),
              False, "LeNet judge; two ring GANs kept"),
        Phase(Workload("LeNet()", LeNet, images, 1000, None, "adam"), data,
              2 * train_state(n_pair, "adam") + baselines, False, "judge scores image sets in batches of 1000"),
    ]


class _GANPair(nn.Module):
    """A ring generator and its discriminator, run back to back (one generator step)."""

    def __init__(self, latent, hidden):
        super().__init__()
        from book.lab.gan import MLPDiscriminator, mlp_generator
        self.gen, self.disc = mlp_generator(latent, hidden, 2), MLPDiscriminator(2, hidden)

    def forward(self, z):
        return self.disc(self.gen(z))


class _CVAE(nn.Module):
    def __init__(self, hidden):
        super().__init__()
        from book.lab.generative import VAE
        self.vae = VAE(latent=2, hidden=hidden, n_classes=10)

    def forward(self, x, y):
        return self.vae(x, y)


def _cvae_inputs(batch, device):
    return images(batch, device) + (torch.zeros(batch, dtype=torch.long, device=device),)


def _vae_loss(out, xs):
    # VAE.forward returns (reconstruction logits, mean, log-variance): sum them all into a scalar
    parts = out if isinstance(out, (tuple, list)) else (out,)
    return sum(p.float().sum() for p in parts if isinstance(p, torch.Tensor))


def ch_gpt(c):
    g = gpt(c.n_layer, c.n_head, c.n_embd, c.block)
    desc = gpt_desc(c.n_layer, c.n_head, c.n_embd, c.block)
    windows = 64 * c.val_batches                      # validation windows, kept on the device (int64 x, y)
    val = 2 * windows * c.block * 8
    eval_batch = min(2048, windows)                   # book.train.evaluate's batch_size
    return [Phase(Workload(desc, g, tokens(c.block), c.batch, lm_loss, "adamw"), val, 0, True,
                  f"fit, batch {c.batch}, AdamW"),
            Phase(Workload(desc, g, tokens(c.block), eval_batch, None, "adamw"), val, 0, False,
                  f"validation: {windows} windows in batches of {eval_batch} (no grad)")]


def ch_gradient_descent(c):
    def mlp():
        return nn.Sequential(nn.Flatten(), nn.Linear(784, c.hidden), nn.ReLU(), nn.Dropout(c.dropout),
                             nn.Linear(c.hidden, 128), nn.ReLU(), nn.Linear(128, 10))
    n = n_params_of(mlp)
    data = mnist_bytes(c.full_mnist)
    desc = f"MLP 784-{c.hidden}-128-10"
    small = lambda: nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10))  # noqa: E731
    return [Phase(Workload(desc, mlp, images, 64, ce_labels, "adam"), data, train_state(n, "adam"), True,
                  "second MLP trained while the first (+grads, Adam) is kept"),
            Phase(Workload(desc, mlp, images, 2048, None, "adam"), data, train_state(n, "adam"), False,
                  "evaluate, batch 2048"),
            # gradient_noise: per-example gradients of the small MLP, 500 at a time (fp32 + a float64 copy)
            Phase(Workload("MLP 784-64-10", small, images, 64, ce_labels, "sgd"), data,
                  train_state(n, "adam") + 500 * n_params_of(small) * (FP32 + FP32 + 8), False,
                  "gradient noise: per-example gradients in chunks of 500")]


def ch_optimisation(c):
    def mlp(hidden):
        return lambda: nn.Sequential(nn.Flatten(), nn.Linear(784, hidden), nn.ReLU(), nn.Linear(hidden, 10))
    data = mnist_bytes(c.full_mnist)
    n_sched, n_land = n_params_of(mlp(c.sched_hidden)), n_params_of(mlp(c.land_hidden))
    kept = 6 * train_state(n_sched, None)          # the six schedule runs' models (+grads) stay in `trained`
    steps = c.land_epochs * math.ceil((60_000 if c.full_mnist else 8_000) / 64)
    path = (steps // c.land_log + 2) * n_land * FP32   # TrajectoryView's parameter copies, on the device
    linear = lambda: nn.Sequential(nn.Flatten(), nn.Linear(784, 10))  # noqa: E731
    return [Phase(Workload("Linear 784-10", linear, images, 64, ce_labels, "sgd"), data, 0, False,
                  "L1 / L2 runs, batch 64"),
            Phase(Workload(f"MLP 784-{c.sched_hidden}-10", mlp(c.sched_hidden), images, 64, ce_labels,
                           "sgd_momentum"), data, kept, False, "schedule runs, batch 64; earlier runs kept"),
            Phase(Workload(f"MLP 784-{c.land_hidden}-10", mlp(c.land_hidden), images, 64, ce_labels,
                           "sgd_momentum"), data, kept + path, False, "trajectory run, parameter copies kept"),
            Phase(Workload(f"MLP 784-{c.land_hidden}-10", mlp(c.land_hidden), images, c.land_examples, None,
                           None), data, kept + path, False, f"loss grid, batch {c.land_examples} (no grad)")]


def ch_lora(c):
    L, H, D, T = recipe_shape()
    n_clf = n_params_of(lambda: _Classifier(L, H, D, T))
    kept = (len(c.ranks) + 3) * train_state(n_clf, None, grads=True)   # `results` keeps every run's model
    k = len(TASK_LABELS)
    windows = k * (c.per_class + c.val_per_class + c.test_per_class) * T * 8
    full = lambda: _Classifier(L, H, D, T)  # noqa: E731
    desc = f"GPTClassifier({gpt_desc(L, H, D, T)})"
    return [Phase(Workload(desc, full, tokens(c.block), 32, ce_labels, "adamw"), windows, kept, False,
                  f"full fine-tune, batch 32; all {len(c.ranks) + 2} earlier runs' models kept (results dict)"),
            Phase(Workload(desc, full, tokens(c.block), k * c.test_per_class, None, "adamw"), windows, kept, False,
                  f"scoring {k * c.test_per_class} test windows at once (evaluate batch 2048)")]


def ch_losses_activations(c):
    mlp = lambda: nn.Sequential(nn.Flatten(), nn.Linear(784, c.hidden), nn.ReLU(), nn.Linear(c.hidden, c.hidden),  # noqa: E731
                                nn.ReLU(), nn.Linear(c.hidden, 10))
    return [Phase(Workload(f"MLP 784-{c.hidden}-{c.hidden}-10", mlp, images, 64, ce_labels, "adam"),
                  mnist_bytes(False), 0, False, "train, batch 64"),
            Phase(Workload(f"MLP 784-{c.hidden}-{c.hidden}-10", mlp, images, 2000, None, "adam"),
                  mnist_bytes(False), 0, False, "evaluate 2000 test images")]


def ch_pretraining(c):
    r = c.live_recipe or {}
    L, H, D, T = r.get("n_layer", 2), r.get("n_head", 4), r.get("n_embd", 128), recipe_shape()[3]
    g = gpt(L, H, D, T)
    n = n_params_of(g)
    demo = lambda: GPT(GPTConfig(VOCAB + 1, c.demo_block, 2, 4, c.demo_embd))  # noqa: E731
    demos = 2 * train_state(n_params_of(demo), "adamw")
    k = len(TASK_LABELS)
    windows = k * (c.per_class + c.val_per_class + c.test_per_class) * T * 8
    clf = lambda: _Classifier(L, H, D, T)  # noqa: E731
    return [
        Phase(Workload(gpt_desc(L, H, D, T), g, tokens(T), r.get("batch", 32), lm_loss, "adamw"), 0, demos, False,
              "build_checkpoint: live pretraining (gpu profile); the two demo models kept"),
        Phase(Workload(gpt_desc(L, H, D, T), g, tokens(T), 256, None, "adamw"), 0, demos, False,
              "lm_val_loss on 256 windows"),
        Phase(Workload(f"GPTClassifier({gpt_desc(L, H, D, T)})", clf, tokens(T), k * c.test_per_class, None,
                       "adamw"), windows, demos + 3 * train_state(n, "adamw"), False,
              f"scoring {k * c.test_per_class} test windows; pretrained, scratch and probe bodies kept"),
    ]


def ch_recsys_rl(c):
    from book.lab.recsys_rl import Catch, MatrixFactorization, PolicyNet
    mf = lambda: _MF(c.users, c.items, c.dim)  # noqa: E731
    horizon = Catch(c.width, c.height, c.balls, n_envs=1).horizon
    obs = (2, c.height, c.width)
    pol = lambda: PolicyNet(obs, c.hidden)  # noqa: E731
    scores = c.users * c.items * FP32 * 3        # model scores, masked copies, true scores
    clicks = c.users * c.items * 2              # train / test boolean matrices
    n_mf = n_params_of(lambda: MatrixFactorization(c.users, c.items, c.dim))
    return [
        Phase(Workload(f"MatrixFactorization({c.users}x{c.items}, dim {c.dim})", mf,
                       lambda b, d: (torch.zeros(b, dtype=torch.long, device=d),), c.batch, ce_labels, "adam"),
              clicks, scores, False, f"train_mf, batch {c.batch} (softmax over all items)"),
        Phase(Workload(f"PolicyNet({obs}, hidden {c.hidden}) x2", lambda: _TwoNets(pol), _obs_inputs(obs),
                       c.n_envs * horizon, lambda out, xs: out.sum(), "adam"),
              (c.n_envs + 500) * math.prod(obs) * FP32, train_state(n_mf, "adam") + scores, False,
              f"REINFORCE: policy + value over a {horizon}-step episode of {c.n_envs} games"),
    ]


class _MF(nn.Module):
    def __init__(self, users, items, dim):
        super().__init__()
        from book.lab.recsys_rl import MatrixFactorization
        self.mf = MatrixFactorization(users, items, dim)

    def forward(self, u):
        return self.mf.score_all(u)


class _TwoNets(nn.Module):
    def __init__(self, build):
        super().__init__()
        self.policy, self.value = build(), build()

    def forward(self, obs):
        return self.policy(obs).sum() + self.value(obs).sum()


def _obs_inputs(obs):
    return lambda batch, device: (torch.zeros(batch, *obs, device=device),)


def ch_dqn(c):
    from book.lab.dqn import MAZE, GridWorld, make_qnet
    from book.lab.recsys_rl import PolicyNet
    world = GridWorld(MAZE)
    obs = world.obs_shape
    qnet = lambda: make_qnet(world, c.hidden)  # noqa: E731
    n_q = n_params_of(qnet)
    buffer = c.buffer * (2 * math.prod(obs) * FP32 + 8 + FP32 + 1)   # s, s', action, reward, done
    pol = lambda: PolicyNet(obs, c.hidden, n_out=4)  # noqa: E731
    return [
        Phase(Workload(f"Q network PolicyNet({obs}, hidden {c.hidden}, 4 actions)", qnet, _obs_inputs(obs),
                       c.batch, lambda out, xs: out.sum(), "adam"),
              buffer + c.n_envs * math.prod(obs) * FP32 * 2, train_state(n_q, None, False), False,
              f"dqn: replay buffer of {c.buffer}, minibatch {c.batch}, target network kept alive"),
        Phase(Workload(f"PolicyNet({obs}, hidden {c.hidden}) x2", lambda: _TwoNets(pol), _obs_inputs(obs),
                       c.n_envs * c.horizon, lambda out, xs: out.sum(), "adam"),
              c.n_envs * math.prod(obs) * FP32, 0, False,
              f"REINFORCE: policy + value over a {c.horizon}-step episode of {c.n_envs} mazes"),
    ]


def ch_rnn(c):
    from book.nn.rnn import CharLSTM
    lstm = lambda: CharLSTM(VOCAB, c.hidden, c.layers)  # noqa: E731
    desc = f"CharLSTM(hidden {c.hidden}, {c.layers} layers), block {c.block}"
    return [Phase(Workload(desc, lstm, tokens(c.block), c.batch, lm_loss, "adam"), 2 * 64 * c.block * 8, 0, True,
                  f"fit, batch {c.batch}; cuDNN's LSTM reserve space not modelled"),
            Phase(Workload(desc, lstm, tokens(c.block), 64, None, "adam"), 2 * 64 * c.block * 8, 0, False,
                  "validation, 64 windows")]


def ch_seq2seq(c):
    from book.lab.seq2seq import VOCAB as S2S_VOCAB
    from book.lab.seq2seq import Seq2Seq, seq_loss

    def pairs(batch, device):       # full-length strings: the longest unroll of encoder and decoder
        return (torch.full((batch, c.max_len), 3, dtype=torch.long, device=device),
                torch.full((batch, c.max_len + 1), 3, dtype=torch.long, device=device))

    model = lambda: Seq2Seq(S2S_VOCAB, c.emb, c.hidden, attention=True)  # noqa: E731
    desc = f"Seq2Seq(GRU {c.hidden}, additive attention), strings of {c.max_len}"
    data = (c.n_train + c.n_val + c.n_test) * (2 * c.max_len + 1) * 8
    return [Phase(Workload(desc, model, pairs, c.batch, lambda out, xs: seq_loss(out.float(), xs[1]), "adam"),
                  data, 0, False, f"training, batch {c.batch}; batches are moved to the device one at a time"),
            Phase(Workload(desc, model, pairs, c.n_test, None, "adam"), data, 0, False,
                  f"greedy decoding of the {c.n_test} test strings at once")]


def ch_language_tasks(c):
    from book.lab.language_tasks import MT_VOCAB, MT_WIDTH, SpanQA, span_loss
    from book.lab.seq2seq import Seq2Seq, seq_loss

    L, H, D, T = recipe_shape()
    qa = lambda: SpanQA(GPT(GPTConfig(VOCAB, T, L, H, D)))  # noqa: E731
    qa_desc = f"SpanQA({gpt_desc(L, H, D, T)})"
    spans = lambda out, xs: span_loss(out.float(), torch.zeros(out.shape[0], 2, dtype=torch.long,  # noqa: E731
                                                                device=out.device))
    qa_data = c.qa_train * (T + 2) * 8                      # int64 passages and start/end targets
    qa_kept = train_state(n_params_of(qa), "adamw")         # the fine-tuned model stays alive

    def pairs(batch, device):
        return (torch.full((batch, MT_WIDTH), 3, dtype=torch.long, device=device),
                torch.full((batch, MT_WIDTH + 1), 3, dtype=torch.long, device=device))

    mt = lambda: Seq2Seq(MT_VOCAB, 32, c.mt_hidden, attention=True)  # noqa: E731
    mt_desc = f"Seq2Seq(GRU {c.mt_hidden}, additive attention), {MT_WIDTH} words"
    mt_data = c.mt_train * (2 * MT_WIDTH + 1) * 8
    return [Phase(Workload(qa_desc, qa, tokens(T), c.qa_batch, spans, "adamw"), qa_data, 0, False,
                  f"fine-tune the shipped GPT with a start/end head, batch {c.qa_batch}"),
            Phase(Workload(qa_desc, qa, tokens(T), 256, None, "adamw"), qa_data, 0, False,
                  "predict spans in batches of 256 (no grad)"),
            Phase(Workload(mt_desc, mt, pairs, 64, lambda out, xs: seq_loss(out.float(), xs[1]), "adam"),
                  mt_data, qa_kept, False, "translation model, batch 64; the QA model kept alive; the tiny "
                  "BERT classifier runs on the CPU")]


def ch_scaling_laws(c):
    w = max(c.widths)
    g = gpt(c.n_layer, max(1, w // 16), w, c.block)
    desc = gpt_desc(c.n_layer, max(1, w // 16), w, c.block)
    val = 2 * c.val_windows * c.block * 8
    return [Phase(Workload(desc, g, tokens(c.block), c.batch, lm_loss, "adamw"), val, 0, True,
                  f"widest of the family (one model at a time), batch {c.batch}"),
            Phase(Workload(desc, g, tokens(c.block), c.val_windows, None, "adamw"), val, 0, False,
                  f"validation on {c.val_windows} windows at once")]


def ch_tools(c):
    n = max(c.sizes)
    return [Phase(Workload("LeNet()", LeNet, images, c.batch, ce_labels, "adam"), mnist_bytes(False), 0, False,
                  f"profiled train step, batch {c.batch}"),
            Phase(None, data=mnist_bytes(False), extra=3 * n * n * FP32 + train_state(n_params_of(LeNet), "adam"),
                  note=f"matmul n={n}: a, b, a@b; the profiled LeNet kept", model_desc=f"{n}x{n} matmul")]


def ch_training_practice(c):
    bn = lambda: deep_mlp(depth=c.depth, width=c.width, act="tanh", init="naive", norm="batch")  # noqa: E731
    n = n_params_of(bn)
    desc = f"deep_mlp(depth {c.depth}, width {c.width}, BatchNorm)"
    return [Phase(Workload(desc, bn, images, 64, ce_labels, "adam"), mnist_bytes(False), 2 * train_state(n, None),
                  False, "train, batch 64; dashboard model and one more kept"),
            Phase(Workload(desc, bn, images, 2000, None, "adam"), mnist_bytes(False), 2 * train_state(n, None),
                  False, "evaluate 2000 test images")]


def ch_residual_nets(c):
    from book.nn.models import ResidualMLP, SmallResNet
    mlp = lambda: ResidualMLP(c.depth, c.width, skip=False)  # noqa: E731
    res = lambda: SmallResNet(c.widths, c.blocks, skip=True)  # noqa: E731
    n_mlp, n_res = n_params_of(mlp), n_params_of(res)
    kept = 2 * train_state(n_res, None)       # plain CNN and ResNet kept alive for the later sections
    return [Phase(Workload(f"ResidualMLP(depth {c.depth}, width {c.width})", mlp, images, 64, ce_labels,
                           "adam"), mnist_bytes(False), 0, False, "MLP runs, batch 64, one at a time"),
            Phase(Workload(f"SmallResNet({c.widths}, blocks {c.blocks})", res, images, 64, ce_labels,
                           "adam"), mnist_bytes(False), train_state(n_mlp, None) + kept, False,
                  "ResNet training, batch 64; plain CNN kept"),
            Phase(Workload(f"SmallResNet({c.widths}, blocks {c.blocks})", res, images, 2048, None, None),
                  mnist_bytes(False), kept, False, "evaluate, batch 2048 (no grad)")]


def ch_modern_block(c):
    from book.lab.modern_block import arms
    from book.nn.modern import ModernConfig, ModernGPT
    configs = list(arms(ModernConfig(VOCAB, c.block, c.n_layer, c.n_head, c.n_embd), c.n_kv_head).values())
    kept = c.seeds * len(configs) * train_state(n_params_of(lambda: ModernGPT(configs[0])), None, grads=False)
    val = 2 * 2 * c.val_windows * c.block * 8           # validation and test windows (int64 x, y)
    desc = f"ModernGPT {c.n_layer}L/{c.n_head}H ({c.n_kv_head} kv)/{c.n_embd}d, block {c.block}"
    model = lambda: ModernGPT(configs[-1])   # noqa: E731  (all four changes; every arm has its size)
    return [Phase(Workload(desc, model, tokens(c.block), c.batch, lm_loss, "adamw"), val, kept, False,
                  f"fit, batch {c.batch}, AdamW; every arm's model of every seed kept"),
            Phase(Workload(desc, model, tokens(c.block), min(2048, c.val_windows), None, "adamw"), val, kept,
                  False, f"validation, {c.val_windows} windows (no grad)")]


def ch_evaluation(c):
    g = gpt(c.n_layer, c.n_head, c.n_embd, c.block)
    desc = gpt_desc(c.n_layer, c.n_head, c.n_embd, c.block)
    windows = 32 * c.eval_batches                     # per split: train, validation, test (int64 x, y)
    val = 3 * 2 * windows * c.block * 8
    others = 2 * n_params_of(g) * FP32                # continue_training: the base model and the other run
    return [Phase(Workload(desc, g, tokens(c.block), c.batch, lm_loss, "adamw"), val, 0, True,
                  f"fit, batch {c.batch}, AdamW"),
            Phase(Workload(desc, g, tokens(c.block), windows, None, "adamw"), val, 0, False,
                  f"held-out NLL: {windows} windows per split at once (no grad)"),
            Phase(Workload(desc, g, tokens(c.block), c.batch, lm_loss, "adamw"), val, others, False,
                  f"continue_training on a copy, batch {c.batch}, two other models kept"),
            Phase(Workload(desc, g, tokens(c.block), min(256, c.n_items), None, "adamw"), val, others, False,
                  f"token_logprobs: {c.n_items} passages in batches of at most 256 (no grad)")]


def ch_few_shot(c):
    from book.lab.few_shot import Embedder
    build = lambda: Embedder(c.dim, c.width)  # noqa: E731
    n = n_params_of(build)
    desc = f"Embedder(dim {c.dim}, width {c.width})"
    episode = c.train_way * (c.train_shot + c.train_query)
    # the shipped split plus the base digits' 8 rotated/mirrored copies (at most 8 x 8,000 images);
    # untrained net, prototypical net and classifier kept alive
    data = mnist_bytes(False) + 8 * 8000 * MNIST_PIXELS * FP32
    kept = 3 * train_state(n, "adam")
    return [Phase(Workload(desc, build, images, episode, ce_labels, "adam"), data, kept, False,
                  f"episodic training: one episode of {episode} images per step"),
            Phase(Workload(desc, build, images, 1000, None, "adam"), data, kept, False,
                  "embed the novel images in batches of 1000 (no grad)")]


def ch_speech(c):
    from book.lab.speech import KEYWORDS, N_MELS, N_SAMPLES, HOP, KeywordCNN
    frames = 1 + N_SAMPLES // HOP
    build = lambda: KeywordCNN(len(KEYWORDS), c.width)  # noqa: E731
    spec = lambda b, d: (torch.zeros(b, 1, N_MELS, frames, device=d),)  # noqa: E731
    # features are made on the CPU; the train and validation log-mel (or MFCC) images go to the device
    data = (c.train_batches + c.val_batches) * 200 * N_MELS * frames * FP32
    kept = train_state(n_params_of(build), "adam")     # the CNN of the other input, kept alive
    return [Phase(Workload(f"KeywordCNN(width {c.width})", build, spec, 64, ce_labels, "adam"), data,
                  kept, False, "train on log-mel or MFCC images, batch 64"),
            Phase(Workload(f"KeywordCNN(width {c.width})", build, spec, c.test_batches * 200, None,
                           "adam"), data, kept, False,
                  "evaluate: book.train.evaluate on the test clips at one SNR at a time (no grad)")]


def ch_using_models(c):
    from book.lab.using_models import ICLTransformer
    model = lambda: ICLTransformer(c.dim, c.n_points, c.n_embd, c.n_layer, c.n_head)  # noqa: E731
    prompts = lambda b, d: (torch.zeros(b, c.n_points, c.dim, device=d),   # noqa: E731
                            torch.zeros(b, c.n_points, device=d))
    desc = f"ICLTransformer({c.n_layer}L/{c.n_head}H/{c.n_embd}d, dim {c.dim}, {c.n_points} pairs)"
    val = c.eval_seqs * c.n_points * (c.dim + 1) * FP32           # the evaluation prompts
    return [Phase(Workload(desc, model, prompts, c.batch, lambda out, xs: out.square().mean(), "adam"), val, 0,
                  False, f"train_icl, batch {c.batch} (the MoE runs on the CPU)"),
            Phase(Workload(desc, model, prompts, c.eval_seqs, None, "adam"), val, 0, False,
                  f"evaluation on {c.eval_seqs} prompts at once (no grad)")]


def ch_attention_math(c):
    T = max(c.lengths)            # the cost measurement: one head, (T, d_cost) inputs on env.device
    qkv = 3 * T * c.d_cost * FP32 * 2          # q, k, v and their gradients' room
    return [Phase(None, extra=3 * T * T * FP32 + qkv, model_desc=f"attention at T={T}, d={c.d_cost}",
                  note="scores, scaled scores and weights (T x T each) alive at once; autograd keeps the weights")]


def ch_transformer_block(c):
    from book.lab.transformer_block import StageLM, build_up
    stages = build_up(c.n_head)
    deep = [s.but(s.name, n_layer=c.depth) for s in stages[3:]]
    kept = c.seeds * sum(train_state(n_params_of(lambda s=s: StageLM(s, VOCAB, c.block, c.n_embd)), None,
                                     grads=False) for s in stages + deep)   # every run's model is kept
    model = lambda: StageLM(deep[-1], VOCAB, c.block, c.n_embd)  # noqa: E731
    desc = f"StageLM({c.depth} blocks, {c.n_head} heads, {c.n_embd}d), block {c.block}"
    windows = c.val_chars // c.block
    val = 2 * windows * c.block * 8 + 2 * 56_000 * 8          # validation and test windows (int64 x, y)
    return [Phase(Workload(desc, model, tokens(c.block), c.batch, lm_loss, "adamw"), val, kept, False,
                  f"deepest stage, batch {c.batch}, AdamW; all earlier runs' models kept"),
            Phase(Workload(desc, model, tokens(c.block), min(2048, windows), None, "adamw"), val, kept, False,
                  f"validation, {windows} windows in batches of {min(2048, windows)} (no grad)")]


def ch_vision_tasks(c):
    from book.lab.vision_tasks import GridDetector, UNet
    canvas = lambda batch, device: (torch.zeros(batch, 1, 48, 48, device=device),)  # noqa: E731
    square = lambda out, xs: out.float().square().mean()  # noqa: E731
    det = lambda: GridDetector(tuple(c.det_channels))  # noqa: E731
    unet = lambda: UNet(tuple(c.unet_channels))  # noqa: E731
    det_desc, unet_desc = f"GridDetector{tuple(c.det_channels)}", f"UNet{tuple(c.unet_channels)}"
    # train_detector / train_unet move the training scenes to the device: images, grid targets, masks
    scenes = c.n_train * 48 * 48 * FP32 * 2 + c.n_train * 6 * 6 * 6 * FP32
    kept = train_state(n_params_of(det), "adam")                   # the detector stays alive
    return [Phase(Workload(det_desc, det, canvas, 32, square, "adam"), scenes, 0, False,
                  "detector, batch 32 (fp32: train_detector uses no autocast)"),
            Phase(Workload(det_desc, det, canvas, 256, None, "adam"), scenes, 0, False,
                  "raw_predictions in batches of 256 (no grad)"),
            Phase(Workload(unet_desc, unet, canvas, 16, square, "adam"), scenes, kept, False,
                  "U-Net, batch 16 (fp32); the detector kept"),
            Phase(Workload(unet_desc, unet, canvas, 256, None, "adam"), scenes, kept, False,
                  "segment in batches of 256 (no grad)")]


CHAPTERS: dict[str, Callable[[SimpleNamespace], list[Phase]]] = {
    "adversarial": ch_adversarial,
    "applications": ch_applications,
    "attention_math": ch_attention_math,
    "backprop": no_gpu("scratch autodiff on the CPU only"),
    "cnn": ch_cnn,
    "modern_cnn": ch_modern_cnn,
    "compression": ch_compression,
    "core_concepts": ch_core_concepts,
    "distributed": no_gpu("one T4 < 2 processes: default_backend picks gloo, DDP runs on the CPU"),
    "efficiency": ch_efficiency,
    "generalisation": no_gpu("closed-form least squares in NumPy on the CPU; nothing on the GPU"),
    "generative": ch_generative,
    "gan": ch_gan,
    "gpt": ch_gpt,
    "gradient_descent": ch_gradient_descent,
    "history": no_gpu("plots a table; nothing on the GPU"),
    "lora": ch_lora,
    "losses_activations": ch_losses_activations,
    "optimisation": ch_optimisation,
    "pretraining": ch_pretraining,
    "recsys_rl": ch_recsys_rl,
    "dqn": ch_dqn,
    "explanations": ch_explanations,
    "residual_nets": ch_residual_nets,
    "rnn": ch_rnn,
    "seq2seq": ch_seq2seq,
    "scaling_laws": ch_scaling_laws,
    "tools": ch_tools,
    "training_practice": ch_training_practice,
    "transformer_block": ch_transformer_block,
    "modern_block": ch_modern_block,
    "post_training": no_gpu("tiny GPTs and a linear reward model, all on the CPU (no device= given)"),
    "using_models": ch_using_models,
    "evaluation": ch_evaluation,
    "retrieval": no_gpu("BM25 and a bag-of-words dual encoder, all on the CPU (no device= given)"),
    "inference": no_gpu("the shipped 0.4M-parameter GPT, the 15k-parameter draft GPT it trains and every measurement "
                        "run on the CPU (no device= given)"),
    "trends": no_gpu("load_checkpoint() and lm_val_loss run on the CPU (no device= given)"),
    "vision_tasks": ch_vision_tasks,
    "language_tasks": ch_language_tasks,
    "few_shot": ch_few_shot,
    "speech": ch_speech,
    "pipeline": no_gpu("numpy tables, MinHash on the CPU, a bag-of-words MLP and its HTTP service all on the CPU "
                       "(no device= given)"),
    "graphs": no_gpu("graphs of at most 1,500 nodes (dense adjacency) on the CPU (no device= given)"),
    "privacy_fairness": no_gpu("DP-SGD of a 196-input MLP and a 3-feature logistic regression, all on the CPU "
                               "(no device= given)"),
}


# ============================================================================ the table
@dataclass
class ChapterEstimate:
    chapter: str
    phase: Phase                               # the phase with the highest peak
    phases: list[Phase] = field(default_factory=list)

    @property
    def peak(self) -> int:
        return self.phase.peak()

    @property
    def fits(self) -> bool:
        return self.peak <= T4_USABLE


def estimate_chapter(name: str, cfg: SimpleNamespace) -> ChapterEstimate:
    if name not in CHAPTERS:
        raise KeyError(f"chapter {name!r} has no memory model in tools/gpu_memory.py: add a ch_{name}(cfg) "
                       "function to CHAPTERS (see the others)")
    phases = evaluate_phases(CHAPTERS[name](cfg))
    return ChapterEstimate(name, max(phases, key=Phase.peak), phases)


def estimate_all(chapters_dir: Path = ROOT / "chapters") -> list[ChapterEstimate]:
    notebooks = sorted(Path(chapters_dir).glob("*.ipynb"))
    if not notebooks:
        raise FileNotFoundError(f"no chapter notebooks in {chapters_dir}")
    return [estimate_chapter(nb.stem, gpu_config(nb)) for nb in notebooks]


def _fmt(b: int) -> str:
    return f"{b / GiB:.2f} GiB" if b >= GiB else f"{b / MiB:.1f} MiB"


def _model_cell(r: ChapterEstimate) -> str:
    """The chapter's largest model by parameters (which need not be the one of its peak phase)."""
    measured = [p for p in r.phases if p.measured is not None]
    if not measured:
        return r.phase.model_desc
    p = max(measured, key=lambda q: q.measured.params)
    return f"{p.workload.name} ({p.measured.params:,} params)"


def markdown_table(rows: list[ChapterEstimate]) -> str:
    head = ("| chapter | largest model trained or run (shape, parameters) | weights + grads + optimizer | "
            "activations (saved for backward / eval forward) | data on the GPU | other live (kept, in flight, "
            "fp16 copies) | estimated peak | fits a T4 (15 GiB)? | notes |\n|" + "---|" * 9)
    lines = [head]
    for r in rows:
        p = r.phase
        acts = p.measured.activations if p.measured else 0
        notes = "peak phase: " + p.note + ("; activations measured on CPU at batch 1 and scaled" if p.measured and
                          p.measured.fallback else "") + ("; fp16 autocast (activations counted fp32)"
                                                          if p.autocast else "")
        margin = T4_USABLE - r.peak
        lines.append(f"| {r.chapter} | {_model_cell(r)} | {_fmt(p.state_bytes())} | {_fmt(acts)} | "
                     f"{_fmt(p.data)} | {_fmt(p.other_bytes())} | {_fmt(r.peak)} | "
                     f"{'yes' if r.fits else '**no**'} ({_fmt(abs(margin))} {'spare' if margin >= 0 else 'over'}) "
                     f"| {notes} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chapters", type=Path, default=ROOT / "chapters", help="folder of chapter notebooks")
    ap.add_argument("--check", action="store_true", help="exit with status 1 if any chapter does not fit")
    args = ap.parse_args(argv)
    rows = estimate_all(args.chapters)
    print(markdown_table(rows))
    print(f"\nCUDA context/allocator allowance {_fmt(CUDA_CONTEXT)} included in every peak; T4 budget "
          f"{_fmt(T4_USABLE)}. ZeRO cross-check (book.lab.distributed.zero_memory, 1 GPU, stage 0) of the biggest "
          f"peak-phase model: {_zero_check(rows)}")
    return 1 if args.check and not all(r.fits for r in rows) else 0


def _zero_check(rows) -> str:
    """Cross-check the weights/grads/optimizer arithmetic with the book's own ZeRO model (mixed precision:
    16 bytes per parameter), for the chapter with the most parameters."""
    best = max((r for r in rows if r.phase.measured), key=lambda r: r.phase.measured.params)
    z = zero_memory(best.phase.measured.params, 1, 0)
    return f"{best.chapter}: {_fmt(int(z['total']))} (ours, fp32 Adam: {_fmt(best.phase.state_bytes())})"


if __name__ == "__main__":
    sys.exit(main())
