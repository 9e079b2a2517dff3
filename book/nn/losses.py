"""Loss functions written out, in the numerically stable forms PyTorch uses (tested against torch.nn.functional).

Chapters: taught in ``losses_activations``; ``attention_math`` uses its :func:`softmax`; :func:`lm_loss` is
the language-model loss of ``rnn``, ``gpt``, ``pretraining``, ``efficiency``, ``scaling_laws`` and ``trends``.

Why "from logits": a network's last layer outputs unbounded scores z (logits). Computing probabilities
first and then log(p) loses precision when p rounds to 0 or 1 (log(0) = -inf); the logit forms below
never form p explicitly and stay finite for any z.
"""
from __future__ import annotations

import math

import torch


def _same_shape(a: torch.Tensor, b: torch.Tensor, what: str):
    if a.shape != b.shape:
        raise ValueError(f"{what}: prediction has shape {tuple(a.shape)} but target has {tuple(b.shape)}; "
                         "they must match (did you forget .squeeze(1) on a (N, 1) output?)")


def mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error, mean over all elements."""
    _same_shape(pred, target, "mse")
    return ((pred - target) ** 2).mean()


LOG_FLOOR = -100.0
"""Where the probability forms clamp each log: log(0) = -inf becomes -100, so a probability of exactly 0 for
the right answer costs 100, not infinity. It is PyTorch's convention (``nn.BCELoss`` clamps its log outputs
at -100) and works in every dtype: clamping p itself into [eps, 1 - eps] with a tiny eps does nothing in
float32, where 1 - 1e-12 rounds to exactly 1."""


def _check_probabilities(p: torch.Tensor, what: str):
    if ((p < 0) | (p > 1)).any() or p.isnan().any():
        raise ValueError(f"{what} takes probabilities in [0, 1], got values from {p.min().item():.3g} to "
                         f"{p.max().item():.3g}; for raw scores (logits) use the _with_logits / logit form")


def bce(p: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy from probabilities: -mean[y log p + (1 - y) log(1 - p)], each log clamped at
    ``LOG_FLOOR`` (-100) as ``torch.nn.functional.binary_cross_entropy`` does."""
    _same_shape(p, y, "bce")
    _check_probabilities(p, "bce")
    zero, one = p == 0, p == 1       # there the log is -inf: use the floor, and never take log(0), whose
    log_p = torch.where(zero, LOG_FLOOR, torch.where(zero, 1.0, p).log())  # gradient 0·inf would be NaN
    log_not_p = torch.where(one, LOG_FLOOR, torch.log1p(-torch.where(one, 0.0, p)))  # log(1 - p)
    return -(y * log_p.clamp_min(LOG_FLOOR) + (1 - y) * log_not_p.clamp_min(LOG_FLOOR)).mean()


def bce_with_logits(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The same loss from logits z (p = sigmoid(z)), stable for any z: ``max(z, 0) - z·y + log(1 + e^{-|z|})``."""
    _same_shape(z, y, "bce_with_logits")
    return (z.clamp(min=0) - z * y + torch.log1p(torch.exp(-z.abs()))).mean()


def logsumexp(z: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """log Σ e^{z}: subtract the max first so that no exponential overflows."""
    m = z.amax(dim=dim, keepdim=True)
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    return (m + (z - m).exp().sum(dim=dim, keepdim=True).log()).squeeze(dim)


def log_softmax(z: torch.Tensor, dim: int = -1) -> torch.Tensor:
    return z - logsumexp(z, dim).unsqueeze(dim)


def softmax(z: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """e^{z_i} / Σ_j e^{z_j}, computed as exp(log_softmax) so large logits do not overflow."""
    return log_softmax(z, dim).exp()


def _check_targets(logits: torch.Tensor, target: torch.Tensor):
    if logits.ndim != 2:
        raise ValueError(f"logits must have shape (N, C), got {tuple(logits.shape)}")
    if target.shape != logits.shape[:1] or target.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"target must be class indices of shape ({logits.shape[0]},) and an integer dtype, "
                         f"got shape {tuple(target.shape)} and {target.dtype}")


def cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Categorical cross-entropy from logits (N, C) and class indices (N,): mean of -log softmax(z)[target]."""
    _check_targets(logits, target)
    return -log_softmax(logits, 1).gather(1, target.long()[:, None]).mean()


def cross_entropy_from_probs(p: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The same from probabilities (N, C): mean of -log p[target], the log clamped at ``LOG_FLOOR`` as in
    :func:`bce` (``F.nll_loss(p.log().clamp_min(-100), target)``)."""
    _check_targets(p, target)
    _check_probabilities(p, "cross_entropy_from_probs")
    log_p = torch.where(p == 0, LOG_FLOOR, torch.where(p == 0, 1.0, p).log())   # as in bce
    return -log_p.clamp_min(LOG_FLOOR).gather(1, target.long()[:, None]).mean()


def gaussian_nll(mean: torch.Tensor, target: torch.Tensor, sigma) -> torch.Tensor:
    """Mean negative log-likelihood of ``target`` under N(mean, σ²), constant included (chapter
    ``losses_activations``): mean of (target - mean)² / (2σ²) + log σ + ½ log 2π, i.e. MSE / (2σ²) plus a
    constant when σ is fixed. Equals ``F.gaussian_nll_loss(mean, target, var=σ², full=True)``."""
    _same_shape(mean, target, "gaussian_nll")
    sigma = torch.as_tensor(sigma, dtype=mean.dtype, device=mean.device)
    if (sigma <= 0).any():
        raise ValueError("gaussian_nll: the standard deviation sigma must be positive")
    return ((target - mean) ** 2 / (2 * sigma ** 2) + sigma.log() + 0.5 * math.log(2 * math.pi)).mean()


def _check_distribution(p: torch.Tensor, what: str):
    _check_probabilities(p, what)
    if not torch.allclose(p.sum(-1), torch.ones((), dtype=p.dtype), atol=1e-4):
        raise ValueError(f"{what} takes probability vectors along the last dimension (each summing to 1)")


def entropy(p: torch.Tensor) -> torch.Tensor:
    """Entropy H(p) = -Σ p log p over the last dimension, in nats (0 log 0 = 0)."""
    _check_distribution(p, "entropy")
    return -torch.xlogy(p, p).sum(-1)


def cross_entropy_between(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Cross-entropy H(p, q) = -Σ p log q between two distributions over the last dimension, in nats."""
    _check_distribution(p, "cross_entropy_between")
    _check_distribution(q, "cross_entropy_between")
    return -torch.xlogy(p, q).sum(-1)


def kl_divergence(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """KL(p ‖ q) = Σ p log(p / q) = H(p, q) - H(p) over the last dimension, in nats; ≥ 0, and 0 only when
    p = q. Equals ``F.kl_div(q.log(), p, reduction="none").sum(-1)`` (note the swapped argument order)."""
    _check_distribution(p, "kl_divergence")
    _check_distribution(q, "kl_divergence")
    return (torch.xlogy(p, p) - torch.xlogy(p, q)).sum(-1)


def softmax_cross_entropy_grad(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The gradient of :func:`cross_entropy` (the mean over N examples) with respect to the logits, written
    out: (softmax(z) - onehot(target)) / N -- derived in ``losses_activations``, used in ``backprop``."""
    _check_targets(logits, target)
    onehot = torch.nn.functional.one_hot(target.long(), logits.shape[1]).to(logits.dtype)
    return (softmax(logits, 1) - onehot) / logits.shape[0]


def lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """A language model's loss: mean cross-entropy over every (batch, time) position.

    logits (B, T, V), targets (B, T). Used by the rnn, gpt, pretraining, efficiency, scaling_laws and trends
    chapters. It calls PyTorch's fused ``cross_entropy`` (faster than :func:`cross_entropy` above, which
    computes the same number: tests/chapters/test_losses_activations.py checks it)."""
    if logits.dim() != 3 or targets.shape != logits.shape[:2]:
        raise ValueError(f"lm_loss takes logits (B, T, V) and targets (B, T); got {tuple(logits.shape)} and "
                         f"{tuple(targets.shape)}")
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),  # (B*T, V)
                                             targets.reshape(-1))                     # (B*T,)

