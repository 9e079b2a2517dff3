"""Device, profile and seeding: the one place where the book decides *where* and *how big*.

Chapters: all of them, ``history`` to ``trends``, start as shown below; ``efficiency`` also reseeds with
:func:`seed_everything` between runs.

Every chapter starts with::

    from book import setup
    env = setup(seed=0)          # prints what it chose
    cfg = env.pick(cpu=dict(epochs=6), gpu=dict(epochs=20))

Environment variables (all optional) let a reader, a teacher or CI override the choice without
editing a notebook:

- ``BOOK_DEVICE``  -- ``cuda``, ``cuda:1``, ``mps`` or ``cpu`` (default: best available, CUDA -> MPS -> CPU)
- ``BOOK_PROFILE`` -- ``cpu`` (small, fast: what CI runs) or ``gpu`` (bigger, longer).
  Default: ``gpu`` when the chosen device is CUDA, else ``cpu``.
- ``BOOK_THREADS`` -- number of CPU threads torch may use (CI's parallel workers set 1).
- ``BOOK_DRYRUN=1`` -- the **gpu configuration, dry**: profile ``gpu`` on whatever device is there, every
  step/epoch/repeat count shrunk to a few (:func:`shrink`), and the outcome of every ``assert`` written in
  a notebook cell only counted, not enforced (its condition is still evaluated, so an error computing it
  still fails). Shapes, data sizes, windows and batch sizes are the gpu profile's: a configuration
  error (asking for 400 test windows where the text has 352) fails on a CPU in seconds. CI runs every
  chapter this way (``tests/student``).
"""
from __future__ import annotations

import ast
import os
import random
import re
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
import torch

PROFILES = ("cpu", "gpu")


def pick_device(prefer: str | None = None) -> torch.device:
    """Return the device chapters train on: ``prefer`` or ``$BOOK_DEVICE`` if given, else CUDA -> MPS -> CPU."""
    want = prefer or os.environ.get("BOOK_DEVICE", "").strip() or None
    if want is not None:
        dev = torch.device(want)  # raises a clear RuntimeError for nonsense like "gpu"
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(
                f"device {want!r} was requested but CUDA is not available here. "
                "Unset BOOK_DEVICE (or set it to 'cpu'); in Colab choose Runtime -> Change runtime type -> GPU."
            )
        if dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise RuntimeError(f"device {want!r} was requested but Apple MPS is not available here.")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    if hasattr(torch.backends, "mps") and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def pick_profile(device: torch.device, prefer: str | None = None) -> str:
    """``cpu`` or ``gpu``: ``prefer`` / ``$BOOK_PROFILE`` if given, else ``gpu`` exactly when training on CUDA."""
    want = prefer or os.environ.get("BOOK_PROFILE", "").strip() or None
    if want is None:
        return "gpu" if device.type == "cuda" else "cpu"
    if want not in PROFILES:
        raise ValueError(f"unknown profile {want!r}: expected one of {PROFILES} (check $BOOK_PROFILE)")
    return want


def sync(device) -> None:
    """Wait for queued GPU work (CUDA or MPS), so that a timer measures the work and not just its launch."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def dry_run() -> bool:
    """Whether ``$BOOK_DRYRUN`` asks for the dry run of the gpu configuration (see the module docstring)."""
    return os.environ.get("BOOK_DRYRUN", "").strip() not in ("", "0", "false", "False")


DRY_COUNT = 2  # steps, updates, repeats, seeds ... in a dry run (epochs: 1; evaluation batches: 1)
DRY_EVAL = 16  # examples that book.train.evaluate scores in a dry run (the first ones; shapes unchanged)
_COUNT_KEY = re.compile(r"(^|_)(steps|updates|repeats|seeds|batches)$")
_EPOCH_KEY = re.compile(r"(^|_)epochs$")


def shrink(key: str, value):
    """A setting as the dry run uses it: counts of steps/updates/repeats/seeds at most ``DRY_COUNT``,
    epochs and batches 1, dicts shrunk key by key; everything else (sizes, shapes, batches, windows) unchanged."""
    if isinstance(value, dict):
        return {k: shrink(k, v) for k, v in value.items()}
    if isinstance(value, bool) or not (_COUNT_KEY.search(key) or _EPOCH_KEY.search(key)):
        return value
    # epochs and evaluation batches: one is always a valid count (a training loop may need two steps)
    cap = 1 if _EPOCH_KEY.search(key) or key.endswith("batches") else DRY_COUNT
    if isinstance(value, int):
        return min(value, cap)
    if isinstance(value, (list, tuple)):  # e.g. kd_steps=(1000, 6000): keep the order, shrink the counts
        if key.endswith("seeds"):
            return type(value)(value[:1])
        return type(value)(min(v, cap * (i + 1)) if isinstance(v, int) else v for i, v in enumerate(value))
    return value


class _CountAsserts(ast.NodeTransformer):
    """``assert test, msg`` -> ``__book_dry_assert__(test, 'source')``: evaluated, recorded, not enforced."""

    def visit_Assert(self, node):
        call = ast.Call(func=ast.Name("__book_dry_assert__", ast.Load()),
                        args=[node.test, ast.Constant(ast.unparse(node.test)[:200])], keywords=[])
        return ast.copy_location(ast.Expr(call), node)


DRY_ASSERTS: list[tuple[bool, str]] = []  # (held, condition) of every notebook assert in a dry run


def _dry_assert(held, text: str) -> None:
    DRY_ASSERTS.append((bool(held), text))


def _install_dry_asserts() -> bool:
    """In IPython, make cell-level ``assert``s count instead of raise; returns whether it was installed."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    ip = get_ipython()
    if ip is None:
        return False
    ip.user_ns["__book_dry_assert__"] = _dry_assert
    if not any(isinstance(t, _CountAsserts) for t in ip.ast_transformers):
        ip.ast_transformers.append(_CountAsserts())
    return True


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (CPU and all GPUs); return a fresh CPU ``torch.Generator`` with that seed."""
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device
    return torch.Generator().manual_seed(int(seed))


@dataclass
class Env:
    """What :func:`setup` chose. ``env.pick(cpu=..., gpu=...)`` returns the active profile's sizes."""

    device: torch.device
    profile: str
    seed: int
    threads: int
    generator: torch.Generator = field(repr=False)
    dry: bool = False  # BOOK_DRYRUN: gpu configuration, few steps, notebook asserts counted (see above)

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def amp_dtype(self) -> torch.dtype | None:
        """Autocast dtype for training: bf16 on Ampere or newer, fp16 (with loss scaling) on older CUDA
        cards such as Colab's T4, ``None`` (plain fp32) on CPU and MPS."""
        if not self.cuda:
            return None
        major, _ = torch.cuda.get_device_capability(self.device)
        return torch.bfloat16 if major >= 8 else torch.float16

    def pick(self, cpu: dict, gpu: dict | None = None, dry: dict | None = None) -> SimpleNamespace:
        """Return the settings of the active profile as attributes (``cfg.epochs``).

        ``gpu`` may list only what differs from ``cpu``; every key it names must exist in ``cpu`` so that
        both profiles are complete, real configurations. ``dry`` (rare) overrides a gpu value in the dry
        run (``BOOK_DRYRUN``) where it would take minutes on a CPU and cannot be a configuration error,
        e.g. the batch of a timing demo; say why beside it.
        """
        if not isinstance(cpu, dict):
            raise TypeError("pick(cpu=...) takes a dict of settings, e.g. pick(cpu=dict(epochs=5))")
        gpu, dry = gpu or {}, dry or {}
        for name, extra in (("gpu", set(gpu) - set(cpu)), ("dry", set(dry) - set(cpu))):
            if extra:
                raise KeyError(f"{name} profile sets {sorted(extra)} which the cpu profile lacks; give both a value")
        chosen = {**cpu, **gpu} if self.profile == "gpu" else dict(cpu)
        if self.dry:
            chosen = {k: shrink(k, v) for k, v in {**chosen, **dry}.items()}
        return SimpleNamespace(**chosen)


def setup(seed: int = 0, device: str | None = None, profile: str | None = None, verbose: bool = True) -> Env:
    """Choose device and profile, seed everything, apply ``$BOOK_THREADS``; print a one-line summary."""
    dev = pick_device(device)
    dry = dry_run()
    prof = "gpu" if dry else pick_profile(dev, profile)
    threads = os.environ.get("BOOK_THREADS", "").strip()
    if threads:
        if not threads.isdigit() or int(threads) < 1:
            raise ValueError(f"BOOK_THREADS must be a positive integer, got {threads!r}")
        torch.set_num_threads(int(threads))
    gen = seed_everything(seed)
    env = Env(device=dev, profile=prof, seed=seed, threads=torch.get_num_threads(), generator=gen, dry=dry)
    if dry:
        counted = _install_dry_asserts()
        print(f"book: DRY RUN of the gpu configuration: counts shrunk to {DRY_COUNT} (epochs 1), "
              + ("notebook asserts counted, not enforced" if counted else "no IPython: asserts enforced"))
    if verbose:
        name = torch.cuda.get_device_name(dev) if env.cuda else dev.type
        print(f"book: device={dev} ({name}), profile={prof}, seed={seed}, torch {torch.__version__}, "
              f"{env.threads} CPU thread(s)")
    return env
