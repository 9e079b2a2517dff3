"""Device, profile and seeding: the one place where the book decides *where* and *how big*.

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
"""
from __future__ import annotations

import os
import random
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

    def pick(self, cpu: dict, gpu: dict | None = None) -> SimpleNamespace:
        """Return the settings of the active profile as attributes (``cfg.epochs``).

        ``gpu`` may list only what differs from ``cpu``; every key it names must exist in ``cpu`` so that
        both profiles are complete, real configurations.
        """
        if not isinstance(cpu, dict):
            raise TypeError("pick(cpu=...) takes a dict of settings, e.g. pick(cpu=dict(epochs=5))")
        gpu = gpu or {}
        extra = set(gpu) - set(cpu)
        if extra:
            raise KeyError(f"gpu profile sets {sorted(extra)} which the cpu profile lacks; give both a value")
        chosen = {**cpu, **gpu} if self.profile == "gpu" else dict(cpu)
        return SimpleNamespace(**chosen)


def setup(seed: int = 0, device: str | None = None, profile: str | None = None, verbose: bool = True) -> Env:
    """Choose device and profile, seed everything, apply ``$BOOK_THREADS``; print a one-line summary."""
    dev = pick_device(device)
    prof = pick_profile(dev, profile)
    threads = os.environ.get("BOOK_THREADS", "").strip()
    if threads:
        if not threads.isdigit() or int(threads) < 1:
            raise ValueError(f"BOOK_THREADS must be a positive integer, got {threads!r}")
        torch.set_num_threads(int(threads))
    gen = seed_everything(seed)
    env = Env(device=dev, profile=prof, seed=seed, threads=torch.get_num_threads(), generator=gen)
    if verbose:
        name = torch.cuda.get_device_name(dev) if env.cuda else dev.type
        print(f"book: device={dev} ({name}), profile={prof}, seed={seed}, torch {torch.__version__}, "
              f"{env.threads} CPU thread(s)")
    return env
