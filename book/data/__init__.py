"""Data the book ships (checked by SHA-256 on every load), optional full downloads, and synthetic sets.

Chapters: MNIST (:func:`load_mnist`) in ``losses_activations``, ``gradient_descent``, ``training_practice``,
``cnn``, ``adversarial``, ``distributed``, ``compression``, ``applications``, ``generative`` and ``tools``;
the Shakespeare text (:func:`load_text`) in ``rnn``, ``gpt``, ``pretraining``, ``lora``, ``efficiency``,
``scaling_laws``, ``applications``, ``generative`` and ``trends``; the 2-D toy sets (:func:`make_2d`) in
``core_concepts`` and ``backprop``; the timeline of ``history`` (:func:`asset`).

Shipped files live in the repository's ``assets/data/`` (installed with the package as ``book_assets``),
so every chapter runs offline. Readers who are online may ask for the full 60k MNIST training set with
``load_mnist(full=True)``; without a network it falls back to the shipped split with a warning.
"""
from __future__ import annotations

import gzip
import hashlib
import importlib.util
import lzma
import math
import os
import struct
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

# SHA-256 of every shipped data file. Kept in code (reviewed), not next to the data (editable by accident).
CHECKSUMS = {
    "t10k-images-idx3-ubyte.gz": "167310007f03058885c7e95e6c0b19c20de5c7fd3031f4cbdadc9014a523d80b",
    "t10k-labels-idx1-ubyte.gz": "fc607395669ec21321ea83e4b82c0544b7e8e63ff5b34337c06bc0a17cc0da3c",
    "tinyshakespeare.txt.xz": "d2476529549e2da7ec5dd2530f028856808ec42fec335c232268c9c6af463bc6",
    "timeline.csv": "7a225f59dcd32a0bd62e8e391596947ca2e4c2a3b36ed9a82c30c5ec9fdc99c5",
    # produced by the book itself: `python -m book.lab.pretraining` (tests/chapters/test_pretraining.py rebuilds it)
    "gpt-char-shakespeare.pt": "28d28b64d44528c4469674a065a2d8c4286700dbcc55de835a581edec4da2b46",
}

# The full MNIST, for readers with a network. MD5s of the .gz files as published (the same values
# torchvision checks); mirrors tried in order.
MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}


class ChecksumError(RuntimeError):
    """A data file's content is not what the book shipped."""


def assets_dir() -> Path:
    """The folder holding the shipped assets: ``$BOOK_ASSETS``, the checkout's ``assets/``, or the installed copy."""
    if os.environ.get("BOOK_ASSETS"):
        return Path(os.environ["BOOK_ASSETS"])
    checkout = Path(__file__).resolve().parent.parent / "assets"
    if (checkout / "data").is_dir():
        return checkout
    spec = importlib.util.find_spec("book_assets")  # installed copy (a namespace package: no __init__.py)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the book's assets are not installed: reinstall the book package "
                                "(`pip install -e .` in a checkout; in Colab re-run the first cell)")
    return Path(list(spec.submodule_search_locations)[0])


def sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def asset(name: str) -> Path:
    """Path of shipped data file ``name`` after checking its SHA-256; raises a helpful error otherwise."""
    if name not in CHECKSUMS:
        raise KeyError(f"{name!r} is not a shipped data file; known: {sorted(CHECKSUMS)}")
    path = assets_dir() / "data" / name
    if not path.is_file():
        raise FileNotFoundError(
            f"shipped data file {path} is missing. In a checkout run `git checkout -- assets/`; "
            "in Colab re-run the chapter's first (install) cell."
        )
    got = sha256(path)
    if got != CHECKSUMS[name]:
        raise ChecksumError(
            f"{path} has SHA-256 {got}, expected {CHECKSUMS[name]}: the file is damaged or was replaced. "
            "Restore it with `git checkout -- assets/data` (or reinstall the book package)."
        )
    return path


def _read_idx(raw: bytes) -> np.ndarray:
    """Parse the IDX format of the MNIST files: magic (2 zero bytes, dtype code, ndim), sizes, data."""
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != 0x08:
        raise ValueError("not an unsigned-byte IDX file")
    shape = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != math.prod(shape):
        raise ValueError(f"IDX file truncated: header says {shape}, found {data.size} values")
    return data.reshape(shape)


@dataclass
class Split:
    """Tensors of one split. Images are float32 in [0, 1], shape (N, 1, 28, 28); labels int64.

    ``x_val``/``y_val`` exist when asked for (``load_mnist(n_val=...)``): choose settings (early stopping,
    learning rates, ranks) on them, and touch the test set once, at the end."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    source: str
    x_val: torch.Tensor | None = None
    y_val: torch.Tensor | None = None

    def to(self, device) -> "Split":
        val = (self.x_val.to(device), self.y_val.to(device)) if self.x_val is not None else (None, None)
        return Split(self.x_train.to(device), self.y_train.to(device), self.x_test.to(device),
                     self.y_test.to(device), self.source, *val)

    def __repr__(self) -> str:
        val = f", val {tuple(self.x_val.shape)}" if self.x_val is not None else ""
        return (f"Split({self.source}: train {tuple(self.x_train.shape)}{val}, test {tuple(self.x_test.shape)}, "
                f"device={self.x_train.device})")

    def with_validation(self, n_val: int) -> "Split":
        """The last ``n_val`` training examples become the validation set (the test set is untouched)."""
        if self.x_val is not None:
            raise ValueError("this split already has a validation set")
        if not 0 < n_val < len(self.y_train):
            raise ValueError(f"n_val must be between 1 and {len(self.y_train) - 1} (the training set has "
                             f"{len(self.y_train)} examples), got {n_val}")
        k = len(self.y_train) - n_val
        return Split(self.x_train[:k], self.y_train[:k], self.x_test, self.y_test,
                     f"{self.source}, last {n_val} training images held out for validation",
                     self.x_train[k:], self.y_train[k:])


def _images_to_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)  # (N, 1, 28, 28)


def _download_full_mnist(cache: Path) -> dict[str, np.ndarray]:
    cache.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for name, md5 in MNIST_MD5.items():
        path = cache / name
        if not (path.is_file() and hashlib.md5(path.read_bytes()).hexdigest() == md5):
            last = None
            for mirror in MNIST_MIRRORS:
                try:
                    with urllib.request.urlopen(mirror + name, timeout=20) as r:
                        path.write_bytes(r.read())
                    if hashlib.md5(path.read_bytes()).hexdigest() == md5:
                        break
                    last = ChecksumError(f"{mirror + name} has the wrong MD5")
                except OSError as e:  # URLError, timeouts, DNS failure: all OSError
                    last = e
            else:
                raise OSError(f"could not download {name}: {last}")
        arrays[name] = _read_idx(gzip.decompress(path.read_bytes()))
    return arrays


def load_mnist(n_train: int = 8000, split_seed: int = 0, full: bool = False, device=None,
               n_val: int = 0) -> Split:
    """MNIST digits as tensors.

    Default (offline): the shipped 10,000-image MNIST *test* set, shuffled with ``split_seed`` and split
    into ``n_train`` training and ``10000 - n_train`` test images -- the split is fixed by ``split_seed``,
    not by the training seed, so every run is scored on the same test images.

    ``full=True``: download the standard 60,000 / 10,000 split (cached in ``~/.cache/book/mnist``); if that
    fails (no network), warn and return the shipped split instead.

    ``n_val > 0``: the last ``n_val`` training images become a validation set (``x_val``, ``y_val``), for
    choosing settings; the test images stay exactly the same.
    """
    if full:
        try:
            a = _download_full_mnist(Path.home() / ".cache" / "book" / "mnist")
            split = Split(_images_to_tensor(a["train-images-idx3-ubyte.gz"]),
                          torch.from_numpy(a["train-labels-idx1-ubyte.gz"].astype(np.int64)),
                          _images_to_tensor(a["t10k-images-idx3-ubyte.gz"]),
                          torch.from_numpy(a["t10k-labels-idx1-ubyte.gz"].astype(np.int64)),
                          "MNIST full 60k/10k")
            split = split.with_validation(n_val) if n_val else split
            return split.to(device) if device is not None else split
        except OSError as e:
            warnings.warn(f"full MNIST unavailable ({e}); using the shipped 10k split instead", stacklevel=2)
    if not 0 < n_train < 10000:
        raise ValueError(f"n_train must be between 1 and 9999 (the shipped set has 10,000 images), got {n_train}")
    images = _read_idx(gzip.decompress(asset("t10k-images-idx3-ubyte.gz").read_bytes()))
    labels = _read_idx(gzip.decompress(asset("t10k-labels-idx1-ubyte.gz").read_bytes()))
    perm = torch.randperm(len(labels), generator=torch.Generator().manual_seed(split_seed))
    x = _images_to_tensor(images)[perm]
    y = torch.from_numpy(labels.astype(np.int64))[perm]
    split = Split(x[:n_train], y[:n_train], x[n_train:], y[n_train:],
                  f"shipped MNIST test set, {n_train}/{10000 - n_train} split (seed {split_seed})")
    split = split.with_validation(n_val) if n_val else split
    return split.to(device) if device is not None else split


def load_text(name: str = "tinyshakespeare") -> str:
    """A shipped text corpus as one string (``tinyshakespeare``: 1,115,394 characters)."""
    if name != "tinyshakespeare":
        raise KeyError(f"unknown corpus {name!r}; shipped: ['tinyshakespeare']")
    return lzma.decompress(asset("tinyshakespeare.txt.xz").read_bytes()).decode("utf-8")


# --------------------------------------------------------------------------- synthetic 2-D data
TOY_DATASETS = ("moons", "circles", "spirals", "xor", "blobs")


def make_2d(name: str, n: int = 512, noise: float = 0.1, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A 2-D binary classification set: ``x`` float32 (n, 2) roughly in [-1.5, 1.5], ``y`` int64 (n,) in {0, 1}."""
    if name not in TOY_DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {TOY_DATASETS}")
    if n < 2:
        raise ValueError(f"n must be at least 2, got {n}")
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2  # balanced classes
    u = torch.rand(n, generator=g)
    if name == "moons":
        a = math.pi * u
        x = torch.stack([torch.cos(a), torch.sin(a)], 1)  # (n, 2)
        x[y == 1] = torch.stack([1 - torch.cos(a[y == 1]), 0.5 - torch.sin(a[y == 1])], 1)
        x = (x - torch.tensor([0.5, 0.25])) * 1.2
    elif name == "circles":
        a = 2 * math.pi * u
        r = torch.where(y == 0, 1.0, 0.45)
        x = r[:, None] * torch.stack([torch.cos(a), torch.sin(a)], 1)
    elif name == "spirals":
        t = 0.25 + 2.6 * math.pi * u.sqrt()  # more points far out, where the arms are longer
        a = t + math.pi * y
        x = (t / (2.85 * math.pi))[:, None] * torch.stack([torch.cos(a), torch.sin(a)], 1) * 1.4
    elif name == "xor":
        x = torch.rand(n, 2, generator=g) * 2 - 1
        x = x + 0.05 * torch.sign(x)  # keep points off the axes
        y = ((x[:, 0] > 0) ^ (x[:, 1] > 0)).long()
    else:  # blobs
        centers = torch.tensor([[-0.6, -0.6], [0.6, 0.6]])
        x = centers[y] + 0.35 * torch.randn(n, 2, generator=g)
    x = x + noise * torch.randn(n, 2, generator=g)
    return x.float(), y.long()


def batches(x: torch.Tensor, y: torch.Tensor, batch_size: int, shuffle: bool = True,
            generator: torch.Generator | None = None):
    """Yield ``(xb, yb)`` mini-batches of tensors already on their device (no DataLoader workers needed).

    The permutation is drawn on the CPU with ``generator`` so it is identical on every device.
    """
    if len(x) != len(y):
        raise ValueError(f"x and y have different lengths: {len(x)} vs {len(y)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    idx = torch.randperm(len(x), generator=generator) if shuffle else torch.arange(len(x))
    idx = idx.to(x.device)
    for i in range(0, len(x), batch_size):
        j = idx[i:i + batch_size]
        yield x[j], y[j]
