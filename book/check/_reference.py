"""Reference answers of the self-checks, kept apart from what a submission can import.

The check functions import them lazily; the grader (``book.teach``) hides this file from the sandbox
that runs submissions, so calling a reference answer there earns nothing (see ``teaching.md``).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch.distributions import Normal, kl_divergence


# ---- compression
def _sym_ref(x):
    scale = x.abs().max() / 127
    return torch.clamp(torch.round(x / scale), -127, 127).to(torch.int8), scale


def _affine_ref(x):
    lo, hi = min(x.min().item(), 0.0), max(x.max().item(), 0.0)
    scale = (torch.tensor(hi) - torch.tensor(lo)) / 255.0
    zp = int(0 - torch.round(torch.tensor(lo) / scale).item())
    return scale.item(), zp


def _mask_ref(w, sparsity):
    k = round(sparsity * w.numel())
    mask = torch.ones(w.numel())
    if k:
        mask[torch.topk(w.abs().reshape(-1), k, largest=False).indices] = 0
    return mask.reshape(w.shape)


def _kd_ref(s, t, T):
    return T * T * F.kl_div(F.log_softmax(s / T, 1), F.log_softmax(t / T, 1), reduction="batchmean", log_target=True)


def _csr_ref(w):
    nnz = int((w != 0).sum())
    return 4 * nnz + 8 * nnz + 8 * (w.shape[0] + 1)


# ---- efficiency
def _best_ref(depth):
    return min(range(1, depth + 1), key=lambda s: (s + math.ceil(depth / s), s))


# ---- generative
def _kl_ref(mu, logvar):
    q = Normal(mu, torch.exp(0.5 * logvar))
    p = Normal(torch.zeros_like(mu), torch.ones_like(mu))
    return kl_divergence(q, p).sum(-1)


def _elbo_ref(logits, x, mu, logvar):
    recon = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
    return (recon + _kl_ref(mu, logvar)).mean()


def _is_ref(p):
    p = p.double()
    m = p.mean(0, keepdim=True).clamp_min(1e-12)
    return math.exp(float((p * (p.clamp_min(1e-12).log() - m.log())).sum(1).mean()))


def _gan_ref(pd, pm):
    m = (pd + pm) / 2

    def kl(a, b):
        k = a > 0
        return float((a[k] * (a[k] / b[k]).log()).sum())
    return -math.log(4) + kl(pd, m) + kl(pm, m)


# ---- optim
def _momentum_ref(theta, v, grad, lr, mu):
    v_new = mu * v + grad
    return theta - lr * v_new, v_new


# ---- pretraining
def _corrupt_ref(x, chosen, r, mask_id, random_ids):
    out = x.clone()
    out[chosen & (r < 0.8)] = mask_id
    swap = chosen & (r >= 0.8) & (r < 0.9)
    out[swap] = random_ids[swap]
    return out


def _leak_ref(starts, block, held):
    return (~held[starts[:, None] + torch.arange(block)]).any(1).float().mean().item()


# ---- scaling
def _slope_ref(n, loss):
    return -np.polyfit(np.log(n), np.log(loss), 1)[0]


def _days_ref(n_params, n_tokens, gpus, flops_per_gpu, utilization):
    return 6 * n_params * n_tokens / (gpus * flops_per_gpu * utilization) / 86400


def _extrap_ref(n, loss, n_new):
    slope, intercept = np.polyfit(np.log(n), np.log(loss), 1)
    return float(np.exp(intercept + slope * np.log(n_new)))


# ---- scaling_laws
def _chinchilla_ref(c, r):
    n = math.sqrt(c / (6 * r))
    return (n, r * n)


# ---- tools
def _ema_ref(vals, w):
    out, s = [], vals[0]
    for v in vals:
        s = w * s + (1 - w) * v
        out.append(s)
    return out


# ---- training_practice
def _init_std_ref(kind, fan_in, fan_out):
    return math.sqrt(2 / (fan_in + fan_out)) if kind == "xavier" else math.sqrt(2 / fan_in)


def _warmup_cosine_ref(step, total, warmup, base):
    if step < warmup:
        return base * (step + 1) / warmup
    return base * 0.5 * (1 + math.cos(math.pi * (step - warmup) / (total - warmup)))

