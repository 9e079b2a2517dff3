"""How fast is this machine? Matrix-multiply throughput, measured.

Chapters: ``core_concepts`` measures the reader's machine with :func:`matmul_gflops`, :func:`supports`
and :func:`gpu_peak_tflops`; ``efficiency`` and ``compression`` time training steps with :func:`time_step`.
"""
from __future__ import annotations

import statistics
import time
from typing import Callable

import torch

from book.config import dry_run, sync


def time_step(step: Callable[[], None], device, repeats: int = 10, warmup: int = 3) -> float:
    """Seconds of ``step()``: the median of ``repeats`` timed calls after ``warmup`` untimed ones (compilation,
    allocator, caches), synchronising the device around each timed call. The median ignores the occasional
    slow call caused by other processes. A dry run (``BOOK_DRYRUN``) warms up once: its timings prove the code
    runs, they measure nothing."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if dry_run():
        warmup = min(warmup, 1)
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def matmul_gflops(n: int, device="cpu", dtype=torch.float32, repeats: int | None = None,
                  min_seconds: float = 0.05, rounds: int = 3) -> float:
    """GFLOP/s of an (n×n)·(n×n) product on ``device`` in ``dtype`` (2·n³ FLOPs per product).

    One warm-up product first (allocation, kernel selection), then ``rounds`` blocks of ``repeats``
    products, each block timed together; by default as many as fill about ``min_seconds``, so tiny sizes
    are not all timer noise. The fastest block counts (as ``timeit`` does): on a shared machine the other
    blocks measure the neighbours' load, not the hardware.
    """
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    device = torch.device(device)
    if n < 1:
        raise ValueError(f"n must be positive, got {n}")
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    a @ b
    sync(device)
    if repeats is None:  # calibrate
        t0 = time.perf_counter()
        a @ b
        sync(device)
        one = max(time.perf_counter() - t0, 1e-7)
        repeats = max(1, min(1000, int(min_seconds / one)))
    seconds = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(repeats):
            a @ b
        sync(device)
        seconds = min(seconds, time.perf_counter() - t0)
    return 2 * n ** 3 * repeats / seconds / 1e9


def supports(dtype: torch.dtype, device="cpu") -> bool:
    """Whether a small matmul in ``dtype`` runs on ``device`` at all."""
    try:
        x = torch.ones(4, 4, device=device, dtype=dtype)
        (x @ x).sum().item()
        return True
    except (RuntimeError, TypeError):
        return False


def gpu_peak_tflops(device="cuda") -> dict | None:
    """Published dense peaks of a few common GPUs (TFLOP/s, without sparsity), or None if unknown."""
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name(device)
    table = {"H100 PCIe": {"fp32": 51.2, "bf16": 756.0}, "H100": {"fp32": 67.0, "bf16": 989.0},
             "H200": {"fp32": 67.0, "bf16": 989.0},
             "A100": {"fp32": 19.5, "bf16": 312.0}, "T4": {"fp32": 8.1, "fp16": 65.0},
             "L4": {"fp32": 30.3, "bf16": 121.0}, "V100": {"fp32": 15.7, "fp16": 125.0}}
    for key, peak in table.items():
        if key in name:
            return {"name": name, **peak}
    return None
