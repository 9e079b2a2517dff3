"""Self-checks for the chapter "Parameter-efficient fine-tuning: LoRA"."""
from __future__ import annotations

import torch

from book.check.core import Case, run_cases

__all__ = ["lora_params", "lora_forward", "merge_weight", "update_rank", "adam_training_bytes", "break_even_rank"]


def lora_params(fn) -> None:
    """``fn(d_in, d_out, r)`` -> trainable numbers LoRA adds to one linear layer."""
    cases = [Case((4096, 4096, 8), 65536, label="4096x4096, r=8"),
             Case((10, 20, 1), 30, label="d_in=10, d_out=20, r=1"),
             Case((768, 3072, 16), 61440, public=False, label="768 -> 3072, r=16")]
    run_cases("lora_params", fn, cases, hint="A is r x d_in, B is d_out x r")


def _rand(g, *shape):
    return torch.randn(*shape, generator=g, dtype=torch.float64)


def lora_forward(fn) -> None:
    """``fn(x, W, b, A, B, alpha, r)`` -> x W^T + b + (alpha / r) x A^T B^T."""
    g = torch.Generator().manual_seed(11)
    cases = []
    for i, (n, di, do, r, alpha) in enumerate([(2, 3, 2, 1, 1.0), (5, 8, 6, 2, 4.0), (7, 16, 12, 4, 8.0)]):
        x, W, b, A, B = _rand(g, n, di), _rand(g, do, di), _rand(g, do), _rand(g, r, di), _rand(g, do, r)
        cases.append(Case((x, W, b, A, B, alpha, r), x @ W.T + b + (alpha / r) * x @ A.T @ B.T, public=i == 0,
                          label=f"x ({n}, {di}), r={r}, alpha={alpha:g}"))
    run_cases("lora_forward", fn, cases, hint="the side branch is (x @ A.T) @ B.T, scaled by alpha / r")


def merge_weight(fn) -> None:
    """``fn(W, A, B, alpha, r)`` -> W + (alpha / r) B A."""
    g = torch.Generator().manual_seed(12)
    cases = []
    for i, (di, do, r, alpha) in enumerate([(3, 2, 1, 2.0), (8, 6, 2, 2.0), (16, 12, 4, 1.0)]):
        W, A, B = _rand(g, do, di), _rand(g, r, di), _rand(g, do, r)
        cases.append(Case((W, A, B, alpha, r), W + (alpha / r) * B @ A, public=i == 0, label=f"{do}x{di}, r={r}"))
    run_cases("merge_weight", fn, cases, hint="B @ A has the shape of W (d_out x d_in)")


def update_rank(fn) -> None:
    """``fn(A, B)`` -> numerical rank of B A (an int)."""
    g = torch.Generator().manual_seed(13)
    A, B = _rand(g, 3, 10), _rand(g, 8, 3)
    A2 = torch.cat([A[:1], A[:1] * 2, A[:1] * -1])          # rank-1 A: the product has rank 1
    cases = [Case((A, B), 3, label="random A (3, 10), B (8, 3)"), Case((A2, B), 1, label="rows of A all parallel"),
             Case((A, torch.zeros(8, 3, dtype=torch.float64)), 0, label="B = 0 (LoRA at initialisation)"),
             Case((_rand(g, 6, 20), _rand(g, 20, 6)), 6, public=False, label="r = 6")]
    run_cases("update_rank", lambda A, B: int(fn(A, B)), cases, hint="torch.linalg.matrix_rank(B @ A)")


def adam_training_bytes(fn) -> None:
    """``fn(n_trainable, bytes_per_number=4)`` -> bytes of gradients + two Adam moments."""
    cases = [Case((1,), 12, label="one fp32 parameter: gradient + m + v = 3 x 4 bytes"),
             Case((7_000_000_000,), 84_000_000_000, label="7 B parameters in fp32: 84 GB"),
             Case((1000, 2), 6000, public=False, label="1000 parameters, 2-byte numbers")]
    run_cases("adam_training_bytes", fn, cases, hint="three numbers per trainable parameter")


def break_even_rank(fn) -> None:
    """``fn(d_in, d_out)`` -> the smallest integer rank at which LoRA trains at least as many numbers as the
    dense ``d_out x d_in`` matrix it adapts."""
    # the derived rank evaluated for each shape (deriving it is the exercise)
    cases = [Case((4096, 4096), 2048, label="4096x4096"), Case((128, 512), 103, label="this chapter's mlp.0"),
             Case((10, 20), 7, label="d_in=10, d_out=20"),
             Case((768, 3072), 615, public=False, label="768 -> 3072"), Case((1, 1), 1, public=False, label="1x1")]
    run_cases("break_even_rank", lambda di, do: int(fn(di, do)), cases,
              hint="solve r (d_in + d_out) >= d_in d_out for r, then round up to a whole rank")
