"""Differentially private SGD from scratch: per-example gradients, clipping, noise, and the privacy accountant.

Chapter: ``privacy_fairness``.

* :func:`per_example_grads` -- the gradient of every example's loss separately, with ``torch.func``
  (``vmap`` over ``grad`` of a one-example loss); equal to a loop of single-example backward passes.
* :func:`clip_per_example` -- scale each example's gradient to norm at most ``C``.
* :func:`dp_sgd_step` -- one step of DP-SGD (Abadi et al. 2016): clip every example's gradient, sum, add
  Gaussian noise of std ``sigma * C`` to the sum, divide by the expected batch size, take an SGD step.
* :func:`rdp_subsampled_gaussian` -- the Rényi differential privacy (RDP) of one step of the Poisson-subsampled
  Gaussian mechanism at integer orders (Mironov, Talwar & Zhang 2019); :func:`eps_from_rdp` turns the RDP of
  ``steps`` composed steps into ``(eps, delta)`` (Mironov 2017, Prop. 3); :func:`dp_epsilon` does both.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

ORDERS = tuple(range(2, 257))   # integer Rényi orders the accountant minimises over


def per_example_grads(model: nn.Module, loss_fn, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """``{name: (batch, *param.shape)}``: the gradient of ``loss_fn(model(x_i), y_i)`` for every example ``i``.

    ``loss_fn(logits, targets)`` must reduce a batch of one to a scalar (e.g. ``F.cross_entropy``). The
    model must have no batch-dependent layers (no batch norm in training mode)."""
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}")
    params = {k: v.detach() for k, v in model.named_parameters() if v.requires_grad}
    buffers = {k: v.detach() for k, v in model.named_buffers()}

    def one_loss(p, xi, yi):
        out = functional_call(model, (p, buffers), (xi.unsqueeze(0),))
        return loss_fn(out, yi.unsqueeze(0))

    return vmap(grad(one_loss), in_dims=(None, 0, 0))(params, x, y)


def per_example_norms(grads: dict[str, torch.Tensor]) -> torch.Tensor:
    """``(batch,)``: the L2 norm of every example's whole gradient (all parameters together)."""
    return torch.sqrt(sum(g.flatten(1).pow(2).sum(1) for g in grads.values()))


def clip_per_example(grads: dict[str, torch.Tensor], clip: float) -> dict[str, torch.Tensor]:
    """Scale every example's gradient by ``min(1, clip / norm)``: afterwards every norm is at most ``clip``."""
    if clip <= 0:
        raise ValueError(f"the clipping norm must be positive, got {clip}")
    norms = per_example_norms(grads)
    scale = (clip / (norms + 1e-12)).clamp(max=1.0)
    return {k: g * scale.view(-1, *([1] * (g.dim() - 1))) for k, g in grads.items()}


def noisy_sum(grads: dict[str, torch.Tensor], clip: float, sigma: float,
              generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Clip every example's gradient to ``clip``, sum over the batch and add ``N(0, (sigma * clip)^2)`` noise
    to every coordinate (the Gaussian mechanism; its sensitivity is ``clip``)."""
    if sigma < 0:
        raise ValueError(f"the noise multiplier must be >= 0, got {sigma}")
    clipped = clip_per_example(grads, clip)
    out = {}
    for k, g in clipped.items():
        s = g.sum(0)
        noise = torch.randn(s.shape, generator=generator, dtype=s.dtype, device="cpu").to(s.device)
        out[k] = s + sigma * clip * noise
    return out


def dp_sgd_step(model: nn.Module, loss_fn, x: torch.Tensor, y: torch.Tensor, *, lr: float, clip: float,
                sigma: float, expected_batch: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """One DP-SGD step on the (Poisson-sampled) batch ``x, y``, in place; returns the per-example norms before
    clipping. The noisy sum is divided by the *expected* batch size ``q * n`` (a fixed number, so the
    division reveals nothing about how many examples were drawn)."""
    if expected_batch <= 0:
        raise ValueError(f"expected_batch must be positive, got {expected_batch}")
    params = dict(model.named_parameters())
    if len(x):
        grads = per_example_grads(model, loss_fn, x, y)
        norms = per_example_norms(grads)
    else:   # an empty Poisson batch still gets its noise
        grads = {k: torch.zeros(0, *p.shape, dtype=p.dtype, device=p.device)
                 for k, p in params.items() if p.requires_grad}
        norms = torch.zeros(0)
    summed = noisy_sum(grads, clip, sigma, generator)
    with torch.no_grad():
        for k, s in summed.items():
            params[k].sub_(lr * s / expected_batch)
    return norms


def rdp_subsampled_gaussian(q: float, sigma: float, orders: Sequence[int] = ORDERS) -> list[float]:
    """RDP ``eps(alpha)`` of ONE step of the Poisson-subsampled Gaussian mechanism (sensitivity 1, noise std
    ``sigma``, sampling rate ``q``) at every integer order ``alpha >= 2``:

        eps(alpha) = log( sum_k C(alpha, k) (1-q)^(alpha-k) q^k exp((k^2 - k) / (2 sigma^2)) ) / (alpha - 1)

    (Mironov, Talwar & Zhang 2019, the integer-order formula). At ``q = 1`` it is ``alpha / (2 sigma^2)``."""
    if not 0 <= q <= 1:
        raise ValueError(f"the sampling rate q must be in [0, 1], got {q}")
    if sigma <= 0:
        raise ValueError(f"sigma must be positive (sigma = 0 gives no privacy), got {sigma}")
    if any(int(a) != a or a < 2 for a in orders):
        raise ValueError("orders must be integers >= 2")
    if q == 0:
        return [0.0] * len(orders)
    if q == 1:
        return [int(a) / (2 * sigma ** 2) for a in orders]
    a = torch.tensor([int(o) for o in orders], dtype=torch.float64)[:, None]        # (orders, 1)
    k = torch.arange(int(a.max()) + 1, dtype=torch.float64)[None, :]               # (1, terms)
    log_terms = (torch.lgamma(a + 1) - torch.lgamma(k + 1) - torch.lgamma((a - k).clamp(min=0) + 1)
                 + (a - k) * math.log1p(-q) + k * math.log(q) + (k * k - k) / (2 * sigma ** 2))
    log_terms = log_terms.masked_fill(k > a, -math.inf)                            # only k = 0 .. alpha
    return (torch.logsumexp(log_terms, dim=1) / (a[:, 0] - 1)).tolist()


def eps_from_rdp(rdp: Sequence[float], delta: float, orders: Sequence[int] = ORDERS) -> tuple[float, int]:
    """``(eps, best order)``: an ``(eps, delta)`` guarantee from RDP values at ``orders`` (already composed),
    ``eps = min_alpha rdp(alpha) + log(1/delta) / (alpha - 1)`` (Mironov 2017, Proposition 3)."""
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    if len(rdp) != len(orders):
        raise ValueError(f"{len(rdp)} RDP values for {len(orders)} orders")
    eps = [r + math.log(1 / delta) / (a - 1) for r, a in zip(rdp, orders)]
    i = min(range(len(eps)), key=eps.__getitem__)
    return eps[i], int(orders[i])


def dp_epsilon(q: float, sigma: float, steps: int, delta: float, orders: Sequence[int] = ORDERS) -> float:
    """The ``eps`` that ``steps`` steps of DP-SGD (sampling rate ``q``, noise multiplier ``sigma``) spend at
    ``delta``: RDP adds up over steps (composition), then one conversion."""
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    if steps == 0:
        return 0.0
    rdp = [steps * r for r in rdp_subsampled_gaussian(q, sigma, orders)]
    return eps_from_rdp(rdp, delta, orders)[0]
