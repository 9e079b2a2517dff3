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


# ---- attention_math
def _score_std_ref(d, sigma_q, sigma_k):
    return math.sqrt(d) * sigma_q * sigma_k      # Var(q·k) = d σ_q² σ_k²


def _attention_crossover_ref(C):
    return 2 * C                                 # 4 T² C = 8 T C²


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


# ---- gradient_descent
def _best_lr_ref(curvatures):
    return 2.0 / (min(curvatures) + max(curvatures))


def _minibatch_var_ref(per_example, b):
    n = len(per_example)
    trace = float(((per_example - per_example.mean(0)) ** 2).sum(1).mean())
    return trace / b * (n - b) / (n - 1)


# ---- optimisation
def _nesterov_lr_ref(curvature, mu):
    return 2 * (1 + mu) / (curvature * (1 + 2 * mu))


def _halving_ref(lr, weight_decay):
    return math.ceil(math.log(0.5) / math.log(1 - lr * weight_decay))


def _lasso_max_ref(X, y):
    return float((X.T @ y).abs().max() / len(y))


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


def _leaky_he_std_ref(fan_in, slope):
    return torch.nn.init.calculate_gain("leaky_relu", slope) / math.sqrt(fan_in)


def _layers_to_vanish_ref(width, std, factor):
    per_layer = math.sqrt(width * std ** 2 / 2)      # ReLU: E[relu(z)²] = Var(z)/2
    return math.ceil(math.log(factor) / math.log(per_layer))


# ---- residual_nets
def _running_mean_ref(k, m, momentum):
    from book.nn.norm import BatchNorm
    bn = BatchNorm(1, momentum=momentum).double()
    x = torch.tensor([[m - 1.0], [m + 1.0]], dtype=torch.float64)   # batch mean m
    for _ in range(k):
        bn(x)
    return bn.running_mean.item()


def _branch_scale_ref(L):
    return math.sqrt(2 ** (1 / L) - 1)


def _resnet_params_ref(widths, blocks):
    from book.nn.models import SmallResNet
    return sum(p.numel() for p in SmallResNet(tuple(widths), blocks).parameters())


def _warmup_cosine_ref(step, total, warmup, base):
    if step < warmup:
        return base * (step + 1) / warmup
    return base * 0.5 * (1 + math.cos(math.pi * (step - warmup) / (total - warmup)))


# ---- generalisation
def _mean_baseline_ref(var_y, n):
    return var_y * (1 + 1 / n)


def _ols_train_ref(n, p, sigma):
    return sigma ** 2 * (n - p) / n


def _best_of_ref(m, s):
    # s * E[max of m standard normals] = s * integral of x * m * phi(x) * Phi(x)^(m-1), on a fine grid
    x = np.linspace(-12, 12, 200001)
    phi = np.exp(-x * x / 2) / math.sqrt(2 * math.pi)
    cdf = 0.5 * (1 + torch.erf(torch.from_numpy(x / math.sqrt(2)))).numpy()
    return float(s * np.trapezoid(x * m * phi * cdf ** (m - 1), x))


# ---- core_concepts
def _crossover_ref(d_model, d_ff):
    return 2 * d_model + d_ff


def _acc_std_ref(acc, m):
    return math.sqrt(acc * (1 - acc) / m)


# ---- history
def _tokens_doubling_ref(t_params, t_compute):
    return 1 / (1 / t_compute - 1 / t_params)


def _loo_doubling_ref(years, values):
    years, values = np.asarray(years, float), np.asarray(values, float)
    months = []
    for i in range(len(years)):
        keep = np.arange(len(years)) != i
        slope = np.polyfit(years[keep], np.log10(values[keep]), 1)[0]
        months.append(12 * math.log10(2) / slope)
    return (min(months), max(months))


# ---- gpt
def _kv_floats_ref(n_layer, n_embd, T, batch):
    return 2 * n_layer * batch * T * n_embd


def _positions_ref(prompt_len, n_new, use_cache):
    if use_cache:
        return prompt_len + n_new
    return (n_new + 1) * prompt_len + n_new * (n_new + 1) // 2



# ---- modern_cnn
def _exact_shifts_ref(layers, max_shift):
    from book.nn.conv import receptive_field
    jump = receptive_field(layers)[1]
    return [d for d in range(1, max_shift + 1) if d % jump == 0]


# ---- rnn
def _forget_bias_ref(keep, k):
    f = keep ** (1.0 / k)               # sigmoid(b) ** k = keep
    return math.log(f / (1 - f))


def _char_lstm_params_ref(V, H, layers):
    from book.nn.rnn import CharLSTM
    return sum(p.numel() for p in CharLSTM(V, H, layers).parameters())


# ---- seq2seq
def _copy_acc_ref(L, V):
    mid = L % 2                          # the middle letter of an odd length is in place
    return (1 + mid + (L - mid) / V) / (L + 1)   # + 1: the end token is always right


def _p_seen_ref(L, n_train, n_lengths, V):
    return 1 - (1 - 1 / (n_lengths * V ** L)) ** n_train


# ---- language_tasks
def _padding_bias_ref(mask):
    return (1.0 - mask.float())[:, None, None, :] * torch.finfo(torch.float32).min


# ---- recsys_rl
def _undo_downsampling_ref(p_s, w):
    odds = w * p_s / (1 - p_s)           # keeping a fraction w of the non-clicks multiplies the odds by 1/w
    return odds / (1 + odds)
