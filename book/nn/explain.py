"""Explaining one prediction, from scratch: occlusion, gradient saliency, integrated gradients, a LIME-style
local linear surrogate, exact Shapley values by enumeration and KernelSHAP as a weighted regression.

Chapter: ``explanations``.

Two kinds of input:

* **models** ``f`` (a ``torch.nn.Module`` or any function of a batch) and one input ``x`` (no batch dimension):
  :func:`occlusion`, :func:`saliency`, :func:`integrated_gradients` explain the output ``f(x)[target]``;
* **set functions** ``value(masks) -> (n,)``: ``masks`` is an ``(n, d)`` boolean tensor, row ``S`` says which
  of the ``d`` features (or image patches) are present. :func:`masked_value` builds one from a model, an
  input and a baseline (absent features take the baseline's values, averaged over a background batch).
  :func:`shapley_exact`, :func:`kernel_shap` and :func:`lime` work on any such function.

Everything is computed in float64 where the result is compared with an exact value. Each function is checked
against a reference in ``tests/unit/test_explain.py``: a per-patch loop (occlusion),
``torch.autograd.grad`` (saliency), the completeness identity and closed forms (integrated gradients), the
Shapley axioms and the additive closed form (Shapley, KernelSHAP).
"""
from __future__ import annotations

import itertools
import math

import torch

__all__ = ["target_score", "occlusion", "saliency", "integrated_gradients", "masked_value", "all_masks",
           "shapley_exact", "shapley_kernel_weight", "kernel_shap", "lime", "spearman",
           "deletion_curve", "patch_masks_to_pixels"]


def target_score(f, x: torch.Tensor, target: int | None) -> torch.Tensor:
    """``f(x)[:, target]`` for a batch ``x`` (or ``f(x)`` itself when ``target`` is None and it is 1-D)."""
    out = f(x)
    if target is None:
        if out.dim() != 1 and not (out.dim() == 2 and out.shape[1] == 1):
            raise ValueError(f"f returns shape {tuple(out.shape)}: give target= (the output to explain)")
        return out.reshape(-1)
    return out[:, target]


# ============================================================================ perturbation: occlusion
@torch.no_grad()
def occlusion(f, x: torch.Tensor, target: int | None, patch: int, stride: int | None = None,
              fill: float = 0.0) -> torch.Tensor:
    """Occlusion map (Zeiler & Fergus 2014) of an image ``x`` (C, H, W): slide a ``patch`` x ``patch`` square of
    value ``fill`` with ``stride`` (default ``patch``) over the image; each pixel gets the drop of the target
    score, ``f(x) - f(x occluded)``, averaged over the squares that cover it. Returns (H, W)."""
    if x.dim() != 3:
        raise ValueError(f"x must be one image (C, H, W), got shape {tuple(x.shape)}")
    stride = stride or patch
    if patch < 1 or stride < 1:
        raise ValueError(f"patch and stride must be >= 1, got {patch}, {stride}")
    _, h, w = x.shape
    tops = list(range(0, max(h - patch, 0) + 1, stride))
    lefts = list(range(0, max(w - patch, 0) + 1, stride))
    batch = x.unsqueeze(0).repeat(len(tops) * len(lefts), 1, 1, 1)
    for k, (t, le) in enumerate(itertools.product(tops, lefts)):
        batch[k, :, t:t + patch, le:le + patch] = fill
    base = target_score(f, x.unsqueeze(0), target)[0]
    drop = base - target_score(f, batch, target)
    total = torch.zeros(h, w, dtype=drop.dtype, device=x.device)
    count = torch.zeros(h, w, dtype=drop.dtype, device=x.device)
    for k, (t, le) in enumerate(itertools.product(tops, lefts)):
        total[t:t + patch, le:le + patch] += drop[k]
        count[t:t + patch, le:le + patch] += 1
    return total / count.clamp_min(1)


# ============================================================================ gradients
def saliency(f, x: torch.Tensor, target: int | None, times_input: bool = False) -> torch.Tensor:
    """Gradient of the target score with respect to the input (Simonyan et al. 2014), for a batch ``x``.
    ``times_input=True``: gradient x input. Maps keep their sign; take ``.abs()`` for a heat map."""
    x = x.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(target_score(f, x, target).sum(), x)
    return grad * x.detach() if times_input else grad


def integrated_gradients(f, x: torch.Tensor, target: int | None, baseline: torch.Tensor | None = None,
                         steps: int = 32, batch: int = 64) -> torch.Tensor:
    """Integrated gradients (Sundararajan et al. 2017) of one input ``x`` (no batch dimension):

    ``(x - b) * mean_k grad f(b + a_k (x - b))`` at the midpoints ``a_k = (k + 1/2) / steps`` of the path from
    the ``baseline`` b (default zeros) to ``x``. The attributions sum to ``f(x) - f(b)`` up to the error of the
    midpoint rule (O(1/steps^2) for smooth f; exact for f quadratic along the path)."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    b = torch.zeros_like(x) if baseline is None else baseline.to(x)
    if b.shape != x.shape:
        raise ValueError(f"baseline shape {tuple(b.shape)} differs from x's {tuple(x.shape)}")
    alphas = (torch.arange(steps, dtype=x.dtype, device=x.device) + 0.5) / steps
    total = torch.zeros_like(x)
    for i in range(0, steps, batch):
        a = alphas[i:i + batch].view(-1, *([1] * x.dim()))
        total += saliency(f, b + a * (x - b), target).sum(0)
    return (x - b) * total / steps


# ============================================================================ set functions
def masked_value(f, x: torch.Tensor, baseline: torch.Tensor, target: int | None = None,
                 groups: torch.Tensor | None = None, batch: int = 1024):
    """A set function ``value(masks) -> (n,)`` for Shapley values and LIME: present features keep ``x``'s
    values, absent ones take the ``baseline``'s. ``baseline`` has ``x``'s shape or is a background batch
    ``(m, *x.shape)``: then ``value`` averages over it (interventional Shapley values). ``groups`` (x's shape,
    integers 0..d-1) maps every element of ``x`` to one of ``d`` features, e.g. image patches; default: each
    element is its own feature."""
    bg = baseline.unsqueeze(0) if baseline.shape == x.shape else baseline
    if bg.shape[1:] != x.shape:
        raise ValueError(f"baseline must have x's shape {tuple(x.shape)} or (m, *x.shape), got {tuple(baseline.shape)}")
    idx = torch.arange(x.numel(), device=x.device).view(x.shape) if groups is None else groups.to(x.device)
    d = int(idx.max()) + 1

    @torch.no_grad()
    def value(masks: torch.Tensor) -> torch.Tensor:
        masks = masks.to(torch.bool)
        if masks.dim() != 2 or masks.shape[1] != d:
            raise ValueError(f"masks must be (n, {d}) booleans, got shape {tuple(masks.shape)}")
        out = []
        for i in range(0, len(masks), batch):
            keep = masks[i:i + batch].to(x.device)[:, idx]                    # (n, *x.shape)
            z = torch.where(keep.unsqueeze(1), x, bg)                          # (n, m, *x.shape)
            s = target_score(f, z.reshape(-1, *x.shape), target).reshape(len(keep), len(bg))
            out.append(s.mean(1))
        return torch.cat(out).double().cpu()

    value.d = d
    return value


def all_masks(d: int) -> torch.Tensor:
    """All 2**d coalitions as a (2**d, d) boolean tensor; row k has feature i present iff bit i of k is 1."""
    if not 1 <= d <= 24:
        raise ValueError(f"enumeration needs 1 <= d <= 24 features, got {d}")
    k = torch.arange(2 ** d)
    return (k.unsqueeze(1) >> torch.arange(d)) & 1 == 1


def shapley_exact(value, d: int) -> torch.Tensor:
    """Exact Shapley values of the set function ``value`` over ``d`` features, by enumerating all 2**d
    coalitions: ``phi_i = sum_S |S|! (d-|S|-1)! / d! * (v(S + i) - v(S))`` over S not containing i."""
    masks = all_masks(d)
    v = value(masks).double()
    size = masks.sum(1)
    w = torch.tensor([math.factorial(s) * math.factorial(d - s - 1) / math.factorial(d) for s in range(d)],
                     dtype=torch.float64)
    phi = torch.zeros(d, dtype=torch.float64)
    k = torch.arange(2 ** d)
    for i in range(d):
        without = ~masks[:, i]
        s_idx = k[without]
        phi[i] = (w[size[without]] * (v[s_idx + 2 ** i] - v[s_idx])).sum()
    return phi


def shapley_kernel_weight(d: int, s: int) -> float:
    """The Shapley kernel (Lundberg & Lee 2017): ``(d - 1) / (C(d, s) s (d - s))`` for a coalition of size
    ``s``; infinite for the empty and the full coalition (they become constraints)."""
    if s in (0, d):
        return math.inf
    return (d - 1) / (math.comb(d, s) * s * (d - s))


def _weighted_lstsq(z: torch.Tensor, y: torch.Tensor, w: torch.Tensor, ridge: float = 0.0) -> torch.Tensor:
    sw = w.sqrt().unsqueeze(1)
    a, b = z * sw, y * sw[:, 0]
    if ridge:
        a = torch.cat([a, math.sqrt(ridge) * torch.eye(z.shape[1], dtype=z.dtype)])
        b = torch.cat([b, torch.zeros(z.shape[1], dtype=z.dtype)])
    return torch.linalg.lstsq(a, b.unsqueeze(1), driver="gelsd").solution[:, 0]


def kernel_shap(value, d: int, n_samples: int | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """KernelSHAP (Lundberg & Lee 2017): Shapley values as the weighted least-squares fit of a linear model
    ``v(S) ~ phi_0 + sum_{i in S} phi_i`` with the Shapley kernel weights, under the constraints
    ``phi_0 = v(empty)`` and ``sum phi = v(full) - v(empty)`` (efficiency).

    ``n_samples=None``: every coalition of size 1..d-1 with its kernel weight (then the fit *is* the exact
    Shapley value). Otherwise ``n_samples`` coalitions drawn with probability proportional to the kernel
    (a size s with weight ~ (d-1)/(s(d-s)), then a uniform subset of that size), each with weight 1."""
    if d < 2:
        raise ValueError(f"KernelSHAP needs d >= 2 features, got {d}")
    if n_samples is None:
        masks = all_masks(d)
        size = masks.sum(1)
        masks = masks[(size > 0) & (size < d)]
        w = torch.tensor([shapley_kernel_weight(d, int(s)) for s in masks.sum(1)], dtype=torch.float64)
    else:
        if n_samples < 1:
            raise ValueError(f"n_samples must be >= 1, got {n_samples}")
        sizes = torch.arange(1, d)
        p = (d - 1) / (sizes * (d - sizes)).double()
        s = sizes[torch.multinomial(p / p.sum(), n_samples, replacement=True, generator=generator)]
        order = torch.rand(n_samples, d, generator=generator).argsort(1)
        masks = order < s.unsqueeze(1)
        w = torch.ones(n_samples, dtype=torch.float64)
    ends = value(torch.stack([torch.zeros(d, dtype=torch.bool), torch.ones(d, dtype=torch.bool)])).double()
    v0, total = ends[0], ends[1] - ends[0]
    y = value(masks).double() - v0
    z = masks.double()
    # eliminate phi_{d-1} = total - sum_{i<d-1} phi_i: y - z_last * total = sum_i (z_i - z_last) phi_i
    a = z[:, :-1] - z[:, -1:]
    phi_rest = _weighted_lstsq(a, y - z[:, -1] * total, w)
    return torch.cat([phi_rest, (total - phi_rest.sum()).view(1)])


def lime(value, d: int, n_samples: int = 500, kernel_width: float = 0.25, ridge: float = 1e-3,
         generator: torch.Generator | None = None) -> torch.Tensor:
    """A LIME-style local linear surrogate (Ribeiro et al. 2016) of the set function ``value``: draw
    ``n_samples`` coalitions (each feature present with probability 1/2; the full one is added), weight each
    by ``exp(-D^2 / kernel_width^2)`` with D the fraction of features switched off, and fit
    ``v(S) ~ c + sum_{i in S} beta_i`` by weighted ridge regression. Returns ``beta`` (d,). Unlike KernelSHAP,
    nothing forces the coefficients to add up to ``v(full) - v(empty)``."""
    if n_samples < 2:
        raise ValueError(f"n_samples must be >= 2, got {n_samples}")
    masks = torch.rand(n_samples - 1, d, generator=generator) < 0.5
    masks = torch.cat([torch.ones(1, d, dtype=torch.bool), masks])
    dist = 1 - masks.double().mean(1)
    w = torch.exp(-dist ** 2 / kernel_width ** 2)
    y = value(masks).double()
    z = torch.cat([torch.ones(n_samples, 1, dtype=torch.float64), masks.double()], 1)
    sw = w.sqrt().unsqueeze(1)
    pen = torch.diag(torch.tensor([0.0] + [ridge] * d, dtype=torch.float64)).sqrt()   # intercept not penalised
    a = torch.cat([z * sw, pen])
    b = torch.cat([y * sw[:, 0], torch.zeros(d + 1, dtype=torch.float64)])
    return torch.linalg.lstsq(a, b.unsqueeze(1), driver="gelsd").solution[1:, 0]


def patch_masks_to_pixels(values: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """Spread per-feature values (d,) onto the elements that ``groups`` assigns to each feature."""
    return values.to(torch.float64)[groups.long()]


# ============================================================================ evaluating explanations
def _ranks(a: torch.Tensor) -> torch.Tensor:
    """Ranks 0..n-1 of the rows of ``a`` (n is the last dimension), ties broken by the average rank."""
    order = a.argsort(-1)
    r = torch.empty_like(a, dtype=torch.float64)
    r.scatter_(-1, order, torch.arange(a.shape[-1], dtype=torch.float64).expand_as(a).contiguous())
    # average ties
    flat_a, flat_r = a.reshape(-1, a.shape[-1]), r.reshape(-1, a.shape[-1])
    for row_a, row_r in zip(flat_a, flat_r):
        vals, inv, counts = torch.unique(row_a, return_inverse=True, return_counts=True)
        if len(vals) < len(row_a):
            sums = torch.zeros(len(vals), dtype=torch.float64).index_add_(0, inv, row_r)
            row_r.copy_((sums / counts)[inv])
    return flat_r.view_as(r)


def spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman rank correlation of ``a`` and ``b`` along the last dimension (flatten maps first); ties take
    their average rank, as in ``scipy.stats.spearmanr``."""
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {tuple(a.shape)} and {tuple(b.shape)}")
    ra, rb = _ranks(a.detach().cpu().double()), _ranks(b.detach().cpu().double())
    ra, rb = ra - ra.mean(-1, keepdim=True), rb - rb.mean(-1, keepdim=True)
    return (ra * rb).sum(-1) / (ra.norm(dim=-1) * rb.norm(dim=-1)).clamp_min(1e-300)


@torch.no_grad()
def deletion_curve(f, x: torch.Tensor, target: int, attribution: torch.Tensor, steps: int = 20,
                   fill: float = 0.0, insertion: bool = False, fraction: float = 1.0) -> torch.Tensor:
    """Deletion (or insertion) curve of one image ``x`` (C, H, W): the target class's probability after the
    ``fraction * k/steps`` share of pixels with the largest ``attribution`` (H, W) were set to ``fill``
    (insertion: start from an image all ``fill`` and put those pixels back). Returns (steps + 1,), k = 0..steps.
    A good attribution makes the deletion curve fall fast (small area) and the insertion curve rise fast."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    n = attribution.numel()
    order = attribution.reshape(-1).argsort(descending=True)
    batch = []
    for k in range(steps + 1):
        keep = torch.ones(n, dtype=torch.bool, device=x.device)
        keep[order[:round(k * fraction * n / steps)]] = False
        if insertion:
            keep = ~keep
        batch.append(torch.where(keep.view(attribution.shape), x, torch.full_like(x, fill)))
    return f(torch.stack(batch)).softmax(-1)[:, target]
