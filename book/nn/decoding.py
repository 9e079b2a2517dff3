"""Inference from scratch: arithmetic intensity, a paged KV-cache allocator, speculative sampling's
accept/reject rule, and weight-only int8/int4 quantization of a model's linear layers.

Chapter: taught in ``inference``.

* :func:`matmul_intensity` -- FLOPs per byte moved of an ``(m×k)·(k×n)`` product (the roofline's x axis).
* :class:`PagedKVCache` -- fixed-size pages handed out from a free list, one block table per sequence
  (the bookkeeping of PagedAttention); it stores real vectors and gathers them back in order.
* :func:`residual_distribution`, :func:`speculative_accept`, :func:`speculative_sample` -- the rule of
  Leviathan et al. / Chen et al. that turns draft proposals into exact samples of the target;
  :func:`expected_tokens_per_step` and :func:`expected_speedup` -- what it buys, in target passes and
  in time.
* :func:`quantize_weight` / :func:`dequantize_weight` -- symmetric per-group codes, built on
  :mod:`book.nn.quantize`; :func:`weight_only_quantized` applies them to every ``nn.Linear`` of a copy.
"""
from __future__ import annotations

import copy
import math

import torch
from torch import nn

from book.nn.quantize import dequantize, quantize, symmetric_qparams

# ============================================================================ arithmetic intensity


def matmul_intensity(m: int, n: int, k: int, bytes_per: float = 4) -> float:
    """FLOPs per byte of ``(m×k)·(k×n)``: ``2mnk`` FLOPs over ``(mk + kn + mn)·bytes_per`` bytes read
    and written once. A linear layer applied to ``m`` tokens is ``m×d_in`` times ``d_in×d_out``."""
    if min(m, n, k) < 1 or bytes_per <= 0:
        raise ValueError(f"sizes must be positive, got m={m}, n={n}, k={k}, bytes_per={bytes_per}")
    return 2 * m * n * k / ((m * k + k * n + m * n) * bytes_per)


# ============================================================================ a paged KV cache


class PagedKVCache:
    """A pool of ``n_pages`` pages of ``page_size`` slots, each slot a vector of ``width`` numbers.

    A sequence owns a *block table*: the list of its pages, in order. :meth:`append` writes vectors at
    the sequence's end, taking a page from the free list only when the last one is full; :meth:`free`
    returns a finished sequence's pages. A sequence therefore wastes less than one page -- against a
    contiguous cache that reserves ``max_len`` slots per sequence up front.
    """

    def __init__(self, n_pages: int, page_size: int, width: int = 1, dtype=torch.float32):
        if n_pages < 1 or page_size < 1 or width < 1:
            raise ValueError(f"n_pages, page_size and width must be positive, got {n_pages}, {page_size}, {width}")
        self.page_size = page_size
        self.pool = torch.zeros(n_pages, page_size, width, dtype=dtype)
        self.free_pages = list(range(n_pages - 1, -1, -1))    # a stack: pop() gives page 0 first
        self.tables: dict = {}                                # sequence -> [page, ...]
        self.lengths: dict = {}                               # sequence -> slots written

    def append(self, seq, vectors: torch.Tensor) -> None:
        """Write ``vectors`` (n, width) after the ``seq``'s last slot (a new ``seq`` starts empty)."""
        vectors = torch.as_tensor(vectors, dtype=self.pool.dtype).reshape(-1, self.pool.shape[2])
        table = self.tables.setdefault(seq, [])
        length = self.lengths.setdefault(seq, 0)
        need = -(-(length + len(vectors)) // self.page_size) - len(table)
        if need > len(self.free_pages):
            raise MemoryError(f"sequence {seq!r} needs {need} more page(s), only {len(self.free_pages)} free")
        table += [self.free_pages.pop() for _ in range(need)]
        for i, v in enumerate(vectors):
            page, slot = divmod(length + i, self.page_size)
            self.pool[table[page], slot] = v
        self.lengths[seq] = length + len(vectors)

    def gather(self, seq) -> torch.Tensor:
        """The ``seq``'s vectors in order, (length, width), read through its block table."""
        if seq not in self.tables:
            raise KeyError(f"unknown sequence {seq!r}")
        pages = self.pool[self.tables[seq]].reshape(-1, self.pool.shape[2])
        return pages[:self.lengths[seq]]

    def free(self, seq) -> None:
        """Return the ``seq``'s pages to the free list."""
        if seq not in self.tables:
            raise KeyError(f"unknown sequence {seq!r}")
        self.free_pages += reversed(self.tables.pop(seq))
        del self.lengths[seq]

    def stats(self) -> dict:
        """Slots ``used`` (written), ``reserved`` (in pages handed out), ``waste`` and free ``pages``."""
        used = sum(self.lengths.values())
        reserved = self.page_size * sum(len(t) for t in self.tables.values())
        return {"used": used, "reserved": reserved, "waste": reserved - used, "free_pages": len(self.free_pages)}


# ============================================================================ speculative sampling


def residual_distribution(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """``norm(max(p - q, 0))`` along the last dim: where a rejected draft token is resampled from.

    Where ``p == q`` (nothing is ever rejected) the residual is undefined; ``p`` is returned there."""
    r = (p - q).clamp_min(0)
    mass = r.sum(-1, keepdim=True)
    return torch.where(mass > 0, r / mass.clamp_min(1e-30), p)


def speculative_accept(p: torch.Tensor, q: torch.Tensor, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Whether draft token ``x`` (drawn from ``q``) is kept: ``u < min(1, p[x] / q[x])``, ``u ~ U(0, 1)``.

    ``p``, ``q``: (..., V) target and draft probabilities; ``x``, ``u``: (...) tokens and uniforms."""
    px = p.gather(-1, x[..., None])[..., 0]
    qx = q.gather(-1, x[..., None])[..., 0]
    return u * qx < px          # u < p/q without dividing by a zero q (x was drawn from q, so qx > 0)


def speculative_sample(p: torch.Tensor, q: torch.Tensor, n: int, generator=None) -> torch.Tensor:
    """``n`` tokens from one speculative step of one drafted token: draw ``x ~ q``, keep it with
    probability ``min(1, p[x]/q[x])``, otherwise draw from :func:`residual_distribution`. The result is
    distributed exactly as ``p`` (tested in the chapter and in tests/)."""
    x = torch.multinomial(q, n, replacement=True, generator=generator)
    u = torch.rand(n, generator=generator)
    keep = speculative_accept(p.expand(n, -1), q.expand(n, -1), x, u)
    r = torch.multinomial(residual_distribution(p, q), n, replacement=True, generator=generator)
    return torch.where(keep, x, r)


def speculative_step(p: torch.Tensor, q: torch.Tensor, drafts: torch.Tensor, generator=None) -> list[int]:
    """One step of speculative decoding: ``drafts`` (k,) were drawn from ``q`` (k, V); ``p`` (k + 1, V)
    are the target's probabilities at the same k positions and one more, from a single forward pass.

    Returns the tokens to append: the accepted prefix of ``drafts``, then either the resampled token
    at the first rejection or, if all k were kept, a bonus token drawn from ``p[k]``."""
    k = len(drafts)
    if p.shape[0] != k + 1 or q.shape[0] != k:
        raise ValueError(f"need p of {k + 1} rows and q of {k} rows for {k} drafts, got {p.shape[0]} and {q.shape[0]}")
    out = []
    for i in range(k):
        u = torch.rand((), generator=generator)
        if speculative_accept(p[i], q[i], drafts[i], u):
            out.append(int(drafts[i]))
        else:
            out.append(int(torch.multinomial(residual_distribution(p[i], q[i]), 1, generator=generator)))
            return out
    out.append(int(torch.multinomial(p[k], 1, generator=generator)))
    return out


def expected_tokens_per_step(alpha: float, k: int) -> float:
    """Tokens one target pass yields when each of ``k`` drafts is kept with probability ``alpha``,
    independently: ``1 + α + … + α^k = (1 - α^{k+1}) / (1 - α)``."""
    if not 0 <= alpha <= 1 or k < 0:
        raise ValueError(f"need 0 <= alpha <= 1 and k >= 0, got {alpha}, {k}")
    return float(k + 1) if alpha == 1 else (1 - alpha ** (k + 1)) / (1 - alpha)


def expected_speedup(alpha: float, k: int, c: float) -> float:
    """Expected wall-time speed-up of speculative decoding over plain decoding (Leviathan et al. 2023,
    Theorem 3.8): ``(1 - α^{k+1}) / ((1 - α)(k c + 1))``.

    A step costs ``k`` draft calls of ``c`` target passes each plus one target pass, and yields
    :func:`expected_tokens_per_step` tokens; plain decoding pays one target pass per token. The formula
    assumes the target pass over ``k + 1`` positions costs what a pass over one does, and nothing else
    (sampling, bookkeeping) costs time."""
    if c < 0:
        raise ValueError(f"the draft's cost ratio c must be >= 0, got {c}")
    return expected_tokens_per_step(alpha, k) / (k * c + 1)


# ============================================================================ weight-only quantization


def quantize_weight(w: torch.Tensor, bits: int, group: int | None = None):
    """Symmetric ``bits``-bit codes of a (out, in) weight, one scale per row (``group=None``) or per
    ``group`` consecutive inputs of a row. Returns ``(codes, scales)``: codes (out, in) int8,
    scales (out, in / group) float32."""
    out_f, in_f = w.shape
    g = in_f if group is None else group
    if in_f % g:
        raise ValueError(f"group {g} does not divide the {in_f} input features")
    rows = w.detach().float().reshape(out_f * (in_f // g), g)            # one row per group
    scale, zp = symmetric_qparams(rows, bits, dim=0)
    codes = quantize(rows, scale, zp, bits, True, dim=0)
    return codes.reshape(out_f, in_f), scale.reshape(out_f, in_f // g)


def dequantize_weight(codes: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """Float weight ``codes · scale`` of :func:`quantize_weight`'s output."""
    out_f, in_f = codes.shape
    g = in_f // scales.shape[1]
    rows = codes.reshape(-1, g)
    zero = torch.zeros(rows.shape[0], dtype=torch.int64)
    return dequantize(rows, scales.reshape(-1), zero, dim=0).reshape(out_f, in_f)


def weight_only_quantized(model: nn.Module, bits: int, group: int | None = None) -> tuple[nn.Module, dict]:
    """A copy of ``model`` whose ``nn.Linear`` weights are replaced by their dequantized ``bits``-bit codes
    (activations, biases, norms and embeddings other than tied ones stay float), and the storage count
    ``{"float_bytes", "quant_bytes"}`` of those weights: ``bits/8`` bytes a code plus a 2-byte scale per
    group, against 4-byte floats. A weight tied to an embedding is quantized once, for both uses."""
    model = copy.deepcopy(model).eval()
    seen, counts = set(), {"float_bytes": 0, "quant_bytes": 0}
    for m in model.modules():
        if isinstance(m, nn.Linear) and id(m.weight) not in seen:
            seen.add(id(m.weight))
            codes, scales = quantize_weight(m.weight, bits, group)
            with torch.no_grad():
                m.weight.copy_(dequantize_weight(codes, scales))
            counts["float_bytes"] += 4 * m.weight.numel()
            counts["quant_bytes"] += math.ceil(m.weight.numel() * bits / 8) + 2 * scales.numel()
    return model, counts
