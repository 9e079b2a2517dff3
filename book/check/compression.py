"""Self-checks for the chapter "Model compression: quantization, pruning, distillation"."""
from __future__ import annotations

import torch

from book.check.core import Case, close, run_cases

__all__ = ["quantize_symmetric", "affine_params", "magnitude_mask", "kd_loss", "csr_bytes"]


def _g(seed):
    return torch.Generator().manual_seed(seed)


def _compare_codes(got, expected):
    """Codes must match exactly (as integers); the scale to float precision."""
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        return False, f"expected a tuple (q, scale), got {type(got).__name__}"
    q, s = got
    if not isinstance(q, torch.Tensor):
        return False, f"q must be a torch.Tensor, got {type(q).__name__}"
    if q.is_floating_point():
        return False, f"q must hold integer codes (e.g. .to(torch.int8)), got {q.dtype}"
    try:
        s = float(s)
    except (TypeError, ValueError):
        return False, f"scale must be a number or a one-element tensor, got {type(s).__name__}"
    ok, why = close(s, float(expected[1]), rtol=1e-5, atol=0)
    if not ok:
        return False, f"scale: {why}"
    return close(q.long(), expected[0].long(), rtol=0, atol=0)


def quantize_symmetric(fn) -> None:
    """``fn(x)`` -> ``(q, scale)``: symmetric per-tensor int8, ``scale = max|x| / 127``, ``q = round(x / scale)``."""
    from book.check._reference import _sym_ref  # hidden from graded code
    x = torch.tensor([-1.0, -0.5, 0.0, 0.25, 1.27])
    cases = [Case((x,), _sym_ref(x), label="[-1, -0.5, 0, 0.25, 1.27]: scale 0.01, q = [-100, -50, 0, 25, 127]"),
             Case((torch.tensor([0.3, -2.54]),), _sym_ref(torch.tensor([0.3, -2.54])),
                  label="the largest magnitude is negative: it maps to -127")]
    for seed in range(3):
        r = torch.randn(6, 7, generator=_g(seed)) * (seed + 1)
        cases.append(Case((r,), _sym_ref(r), public=False, label="random (6, 7) tensor"))
    run_cases("quantize_symmetric", fn, cases, compare=_compare_codes,
              hint="take the max of |x| (not of x), divide by 127, round x/scale and cast with .to(torch.int8)")


def affine_params(fn) -> None:
    """``fn(x)`` -> ``(scale, zero_point)`` for unsigned 8-bit affine quantization of the range
    ``[min(x, 0), max(x, 0)]``: ``scale = (hi - lo) / 255``, ``zero_point = -round(lo / scale)``."""
    from book.check._reference import _affine_ref  # hidden from graded code
    cases = [Case((torch.tensor([-1.0, 0.5, 1.55]),), _affine_ref(torch.tensor([-1.0, 0.5, 1.55])),
                  label="range [-1, 1.55]: scale 0.01, zero point 100"),
             Case((torch.tensor([0.2, 2.55]),), _affine_ref(torch.tensor([0.2, 2.55])),
                  label="all positive (ReLU output): the range still starts at 0, zero point 0")]
    for seed in range(3):
        r = torch.randn(50, generator=_g(10 + seed)) + 0.5 * seed
        cases.append(Case((r,), _affine_ref(r), public=False, label="random values"))
    run_cases("affine_params", fn, cases,
              hint="include 0 in the range (lo = min(x.min(), 0), hi = max(x.max(), 0)); 2^8 - 1 = 255 steps")


def _compare_mask(got, expected):
    if not isinstance(got, torch.Tensor):
        return False, f"expected a torch.Tensor mask, got {type(got).__name__}"
    return close(got.float(), expected, rtol=0, atol=0)


def magnitude_mask(fn) -> None:
    """``fn(w, sparsity)`` -> a mask shaped like ``w`` (1 = keep, 0 = prune) that removes the
    ``round(sparsity · w.numel())`` entries of smallest ``|w|``."""
    from book.check._reference import _mask_ref  # hidden from graded code
    w = torch.tensor([[0.5, -0.1, 0.05], [-2.0, 0.3, -0.02]])
    cases = [Case((w, 0.5), _mask_ref(w, 0.5), label="6 weights, 50 %: drop -0.02, 0.05 and -0.1 (by |w|)"),
             Case((w, 0.0), torch.ones(2, 3), label="sparsity 0: keep everything")]
    for seed, s in zip(range(3), (0.8, 0.9, 0.33)):
        r = torch.randn(8, 5, 3, generator=_g(20 + seed))
        cases.append(Case((r, s), _mask_ref(r, s), public=False, label=f"random (8, 5, 3), sparsity {s}"))
    run_cases("magnitude_mask", fn, cases, compare=_compare_mask,
              hint="rank by |w|, not w (large negative weights matter); k = round(sparsity * w.numel()); "
                   "torch.topk(..., largest=False) finds the k smallest")


def kd_loss(fn) -> None:
    """``fn(student_logits, teacher_logits, T)`` -> ``T² · KL(softmax(t/T) ‖ softmax(s/T))`` averaged over the batch."""
    from book.check._reference import _kd_ref  # hidden from graded code
    s = torch.tensor([[2.0, 0.0, -1.0]])
    cases = [Case((s, s.clone(), 4.0), torch.tensor(0.0), label="student = teacher: loss 0"),
             Case((torch.zeros(1, 3), torch.tensor([[3.0, 1.0, 0.0]]), 2.0),
                  _kd_ref(torch.zeros(1, 3), torch.tensor([[3.0, 1.0, 0.0]]), 2.0), label="uniform student, T = 2")]
    for seed, T in zip(range(3), (1.0, 4.0, 10.0)):
        a, b = torch.randn(5, 10, generator=_g(30 + seed)) * 3, torch.randn(5, 10, generator=_g(40 + seed)) * 3
        cases.append(Case((a, b, T), _kd_ref(a, b, T), public=False, label=f"random (5, 10) logits, T = {T}"))
    run_cases("kd_loss", fn, cases,
              hint="soften both with /T, KL(teacher ‖ student) = Σ q (log q - log p), mean over the batch (not over "
                   "classes), times T²")


def csr_bytes(fn) -> None:
    """``fn(w)`` -> bytes to store the 2-D float32 tensor ``w`` in CSR: 4-byte values and 8-byte (int64) column
    indices for each non-zero, plus ``rows + 1`` 8-byte row pointers."""
    from book.check._reference import _csr_ref  # hidden from graded code
    w = torch.tensor([[0.0, 1.5, 0.0], [0.0, 0.0, 0.0], [2.0, 0.0, -1.0]])
    cases = [Case((w,), _csr_ref(w), label="3 non-zeros in a 3×3 matrix: 36 + 32 = 68 bytes"),
             Case((torch.zeros(4, 5),), 40, label="all zeros: only the 5 row pointers")]
    for seed in range(2):
        r = torch.randn(20, 30, generator=_g(50 + seed))
        r[r.abs() < 1.0] = 0
        cases.append(Case((r,), _csr_ref(r), public=False, label="random sparse (20, 30)"))
    run_cases("csr_bytes", fn, cases, hint="count non-zeros with (w != 0).sum(); each costs 4 + 8 bytes; "
              "the row-pointer array has rows + 1 entries")
