"""Self-checks of the inference chapter's exercises."""
from __future__ import annotations

import torch

from book.check.core import Case, _g, close, run_cases

__all__ = ["expected_tokens", "matvec_intensity", "paged_waste", "residual", "first_slower_k"]


def expected_tokens(fn) -> None:
    """``fn(alpha, k)`` -> expected tokens per target pass of speculative decoding with k drafts."""
    from book.nn.decoding import expected_tokens_per_step
    cases = [Case((a, k), expected_tokens_per_step(a, k), public=i < 2, label=f"alpha={a}, k={k}")
             for i, (a, k) in enumerate([(0.5, 4), (0.8, 2), (0.0, 3), (0.9, 7), (0.3, 1), (0.99, 5)])]
    run_cases("expected_tokens", fn, cases, compare=lambda g, e: close(g, e, rtol=1e-6, atol=1e-9),
              hint="draft i (from 1) is kept only if drafts 1..i all are; the pass always yields one token more")


def matvec_intensity(fn) -> None:
    """``fn(n, m, bytes_per)`` -> FLOPs per byte of an (n×m) matrix times an m-vector."""
    from book.nn.decoding import matmul_intensity
    cases = [Case((n, m, b), matmul_intensity(1, n, m, b), public=i < 2, label=f"n={n}, m={m}, {b} bytes")
             for i, (n, m, b) in enumerate([(128, 128, 4), (4096, 4096, 2), (384, 128, 4), (11008, 4096, 2),
                                            (3, 5, 1)])]
    run_cases("matvec_intensity", fn, cases, compare=lambda g, e: close(g, e, rtol=1e-6, atol=1e-9),
              hint="count the multiply-adds (2 FLOPs each) and every number read or written: matrix, vector, result")


def paged_waste(fn) -> None:
    """``fn(lengths, page_size)`` -> slots reserved but unused by a paged cache holding these sequences."""
    from book.nn.decoding import PagedKVCache
    g = _g(91)
    cases = []
    for i, (n, page, top) in enumerate([(5, 16, 100), (8, 4, 30), (20, 32, 500), (3, 1, 10), (12, 16, 16)]):
        lengths = torch.randint(1, top + 1, (n,), generator=g).tolist()
        cache = PagedKVCache(sum(-(-x // page) for x in lengths), page)
        for s, x in enumerate(lengths):
            cache.append(s, torch.zeros(x, 1))
        cases.append(Case((lengths, page), cache.stats()["waste"], public=i < 2,
                          label=f"{n} sequences, pages of {page}"))
    run_cases("paged_waste", fn, cases, compare=lambda g, e: close(g, e, rtol=0, atol=0.5),
              hint="a sequence of length l holds ceil(l / page) pages")


def residual(fn) -> None:
    """``fn(p, q)`` -> norm(max(p - q, 0)) for rows of probabilities with p != q."""
    from book.nn.decoding import residual_distribution
    g = _g(92)
    cases = []
    for i, (rows, V) in enumerate([(1, 4), (3, 10), (5, 65), (2, 2)]):
        p = torch.rand(rows, V, generator=g).softmax(-1)
        q = (3 * torch.rand(rows, V, generator=g)).softmax(-1)
        cases.append(Case((p, q), residual_distribution(p, q), public=i < 2, label=f"{rows} row(s) of {V}"))
    run_cases("residual", fn, cases, compare=lambda g, e: close(g, e, rtol=1e-5, atol=1e-7),
              hint="clamp p - q at 0, then divide each row by its sum (keepdim)")


def first_slower_k(fn) -> None:
    """``fn(alpha, c)`` -> the smallest k >= 1 with expected speed-up S(alpha, k, c) < 1."""
    from book.nn.decoding import expected_speedup

    def reference(alpha, c):
        k = 1
        while expected_speedup(alpha, k, c) >= 1:
            k += 1
        return k
    cases = [Case((a, c), reference(a, c), public=i < 2, label=f"alpha={a}, c={c}")
             for i, (a, c) in enumerate([(0.6, 0.2), (0.65, 0.22), (0.8, 0.07), (0.5, 0.03), (0.0, 0.3),
                                         (0.95, 0.03), (0.3, 0.5)])]
    run_cases("first_slower_k", fn, cases, compare=lambda g, e: close(g, e, rtol=0, atol=0.5),
              hint="a step yields 1 + alpha + ... + alpha^k tokens for k*c + 1 target passes of time; "
                   "the first k where that ratio is below 1")
