"""Self-checks for the chapter "Distributed training"."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from book.check.core import Case, run_cases

__all__ = ["allreduce_mean", "my_shard", "ring_bytes_sent", "zero_bytes", "row_parallel"]


def allreduce_mean(fn) -> None:
    """``fn(grads)`` -> list of N tensors, each the mean of the N inputs."""
    g = torch.Generator().manual_seed(21)
    a, b = torch.tensor([1.0, 2.0]), torch.tensor([3.0, 6.0])
    cases = [Case(([a, b],), (torch.tensor([2.0, 4.0]), torch.tensor([2.0, 4.0])), label="two workers")]
    grads = [torch.randn(3, 4, generator=g, dtype=torch.float64) for _ in range(4)]
    mean = torch.stack(grads).mean(0)
    cases.append(Case((grads,), tuple(mean for _ in range(4)), public=False, label="four workers, (3, 4) tensors"))
    run_cases("allreduce_mean", lambda gs: tuple(fn([t.clone() for t in gs])), cases,
              hint="every worker ends with the same tensor: the mean over workers")


def my_shard(fn) -> None:
    """``fn(indices, rank, world)`` -> worker rank's contiguous equal slice."""
    idx = torch.arange(10, 22)
    cases = [Case((idx, 0, 3), idx[:4], label="rank 0 of 3"), Case((idx, 2, 3), idx[8:], label="rank 2 of 3"),
             Case((idx, 1, 4), idx[3:6], public=False, label="rank 1 of 4"),
             Case((idx, 0, 1), idx, public=False, label="world of 1")]
    run_cases("my_shard", fn, cases, hint="per = len(indices) // world; slice [rank * per, (rank + 1) * per)")


def ring_bytes_sent(fn) -> None:
    """``fn(n_bytes, n_workers)`` -> 2 (N - 1) / N * n_bytes."""
    cases = [Case((1000, 2), 1000.0, label="2 workers: one full gradient"),
             Case((2e9, 8), 3.5e9, label="1 B bf16 parameters (2 GB) on 8 GPUs"),
             Case((1200, 1), 0.0, public=False, label="one worker sends nothing"),
             Case((600, 3), 800.0, public=False, label="3 workers")]
    run_cases("ring_bytes_sent", fn, cases, hint="N - 1 reduce-scatter steps and N - 1 all-gather steps of n_bytes / N")


def zero_bytes(fn) -> None:
    """``fn(n_params, n_gpus, stage)`` -> bytes per GPU under ZeRO (2 + 2 + 12 bytes per parameter)."""
    cases = [Case((7.5e9, 64, 0), 120e9, label="ZeRO paper: stage 0"),
             Case((7.5e9, 64, 1), 7.5e9 * (4 + 12 / 64), label="stage 1"),
             Case((7.5e9, 64, 2), 7.5e9 * (2 + 14 / 64), label="stage 2"),
             Case((7.5e9, 64, 3), 7.5e9 * 16 / 64, label="stage 3"),
             Case((1e6, 4, 2), 1e6 * (2 + 14 / 4), public=False, label="1 M parameters, 4 GPUs, stage 2")]
    run_cases("zero_bytes", fn, cases, hint="stage 1 divides the 12 optimizer bytes by N, stage 2 also the "
              "gradients' 2, stage 3 also the weights' 2")


def row_parallel(fn) -> None:
    """``fn(x, W, b, n)`` -> F.linear(x, W, b) computed as a sum over n column blocks."""
    g = torch.Generator().manual_seed(22)
    cases = []
    for i, (N, din, dout, n) in enumerate([(3, 4, 5, 2), (2, 12, 6, 3), (5, 16, 8, 4)]):
        x, W, b = (torch.randn(N, din, generator=g, dtype=torch.float64), torch.randn(dout, din, generator=g,
                   dtype=torch.float64), torch.randn(dout, generator=g, dtype=torch.float64))
        cases.append(Case((x, W, b, n), F.linear(x, W, b), public=i == 0, label=f"x ({N}, {din}), {n} blocks"))
    run_cases("row_parallel", fn, cases, hint="sum the partial products x[:, S_i] @ W[:, S_i].T, then add b once")
