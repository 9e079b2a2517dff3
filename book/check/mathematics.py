"""Self-checks for Part II: losses, activations, backpropagation, softmax and attention."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .core import Case, close, run_cases

__all__ = ["bce_from_logits", "logsumexp", "d_sigmoid", "cross_entropy", "grad_f", "numerical_derivative",
           "matmul_backward", "attention_weights", "tanh_backward", "softmax_temperature", "causal_mask",
           "attention_output", "conv_output_size", "conv2d_single", "maxpool2x2", "conv2d_multi", "init_std",
           "warmup_cosine_lr", "clip_by_norm", "batchnorm_forward", "rnn_step", "lstm_step", "gru_step",
           "perplexity", "top_k_filter", "top_p_filter", "sinusoidal_pe", "gpt_params"]


def _g(seed):
    return torch.Generator().manual_seed(seed)


def bce_from_logits(fn) -> None:
    """``fn(z, y)`` -> mean binary cross-entropy from logits, finite even for |z| = 1000."""
    g = _g(10)
    cases = [Case((torch.tensor([0.0]), torch.tensor([1.0])), F.binary_cross_entropy_with_logits(
        torch.tensor([0.0]), torch.tensor([1.0])), label="z = 0: loss log 2")]
    z, y = torch.randn(8, generator=g) * 3, (torch.rand(8, generator=g) > 0.5).float()
    cases.append(Case((z, y), F.binary_cross_entropy_with_logits(z, y), label="random logits"))
    z, y = torch.tensor([1000.0, -1000.0, 1000.0]), torch.tensor([1.0, 0.0, 0.0])
    cases.append(Case((z, y), F.binary_cross_entropy_with_logits(z, y), public=False, label="|z| = 1000"))
    run_cases("bce_from_logits", fn, cases, hint="max(z, 0) - z*y + log(1 + exp(-|z|)); never compute sigmoid "
              "then log")


def logsumexp(fn) -> None:
    """``fn(z)`` -> log Σ exp(z) over the last dimension, without overflow."""
    g = _g(11)
    z = torch.randn(4, 6, generator=g)
    cases = [Case((torch.tensor([0.0, 0.0]),), torch.logsumexp(torch.tensor([0.0, 0.0]), -1), label="log 2"),
             Case((z,), torch.logsumexp(z, -1), label="a (4, 6) batch"),
             Case((torch.tensor([1000.0, 1000.0]),), torch.logsumexp(torch.tensor([1000.0, 1000.0]), -1),
                  public=False, label="huge values"),
             Case((torch.tensor([-1000.0, -1001.0]),), torch.logsumexp(torch.tensor([-1000.0, -1001.0]), -1),
                  public=False, label="very negative values")]
    run_cases("logsumexp", fn, cases, hint="subtract m = max(z) first: log Σ e^z = m + log Σ e^(z - m)")


def d_sigmoid(fn) -> None:
    """``fn(x)`` -> derivative of the sigmoid at x, element-wise."""
    xs = [torch.tensor([0.0]), torch.linspace(-6, 6, 13), torch.tensor([-30.0, 30.0])]
    cases = []
    for i, x in enumerate(xs):
        x_ = x.clone().requires_grad_()
        torch.sigmoid(x_).sum().backward()
        cases.append(Case((x.clone(),), x_.grad, public=i < 2, label=f"x = {x.tolist()[:3]}…"))
    run_cases("d_sigmoid", fn, cases, hint="σ'(x) = σ(x)(1 − σ(x)); its maximum is 1/4 at x = 0")


def cross_entropy(fn) -> None:
    """``fn(logits, target)`` -> mean categorical cross-entropy from logits (N, C) and class indices (N,)."""
    g = _g(12)
    logits, target = torch.randn(5, 4, generator=g), torch.tensor([0, 3, 1, 1, 2])
    big = torch.tensor([[500.0, 0.0, -500.0], [0.0, 800.0, 0.0]])
    cases = [Case((logits, target), F.cross_entropy(logits, target), label="(5, 4) logits"),
             Case((torch.zeros(2, 10), torch.tensor([3, 7])), F.cross_entropy(torch.zeros(2, 10), torch.tensor([3, 7])),
                  label="uniform over 10 classes: log 10"),
             Case((big, torch.tensor([2, 0])), F.cross_entropy(big, torch.tensor([2, 0])), public=False,
                  label="huge logits")]
    run_cases("cross_entropy", fn, cases, hint="-mean of log_softmax(z)[target]; log_softmax = z - logsumexp(z)")


def grad_f(fn) -> None:
    """``fn(a, b, c)`` -> (∂f/∂a, ∂f/∂b, ∂f/∂c) of f = (a·b + c)² by hand (floats)."""
    def ref(a, b, c):
        t = [torch.tensor(float(v), dtype=torch.float64, requires_grad=True) for v in (a, b, c)]
        ((t[0] * t[1] + t[2]) ** 2).backward()
        return tuple(float(v.grad) for v in t)
    pts = [(1.0, 2.0, 3.0), (0.0, -1.0, 0.5), (-2.0, 0.3, 4.0), (1.5, 1.5, -2.25)]
    cases = [Case(p, ref(*p), public=i < 2) for i, p in enumerate(pts)]
    run_cases("grad_f", fn, cases, hint="with u = a·b + c: ∂f/∂u = 2u, then ∂u/∂a = b, ∂u/∂b = a, ∂u/∂c = 1")


def numerical_derivative(fn) -> None:
    """``fn(f, x)`` -> central finite-difference estimate of f'(x), accurate to about 1e-6."""
    import math
    funcs = [(math.sin, 0.3, math.cos(0.3), "sin at 0.3"), (math.exp, 1.0, math.e, "exp at 1"),
             (lambda x: x ** 3, 2.0, 12.0, "x³ at 2"), (math.tanh, -0.7, 1 - math.tanh(-0.7) ** 2, "tanh")]
    cases = [Case((f, x), d, public=i < 2, label=label) for i, (f, x, d, label) in enumerate(funcs)]
    run_cases("numerical_derivative", fn, cases,
              compare=lambda got, exp: (abs(float(got) - exp) < 1e-5, f"error {abs(float(got) - exp):.2g}"),
              hint="(f(x + h) - f(x - h)) / (2h) with h around 1e-5: error ~ h², one-sided would be ~ h")


def matmul_backward(fn) -> None:
    """``fn(X, W, G)`` -> (dL/dX, dL/dW) for Y = X @ W, given G = dL/dY."""
    g = _g(13)
    cases = []
    for i, (n, k, m) in enumerate([(2, 3, 4), (5, 1, 2), (3, 6, 3)]):
        X, W, G = (torch.randn(s, generator=g, dtype=torch.float64) for s in ((n, k), (k, m), (n, m)))
        Xr, Wr = X.clone().requires_grad_(), W.clone().requires_grad_()
        (Xr @ Wr).backward(G)
        cases.append(Case((X, W, G), (Xr.grad, Wr.grad), public=i == 0, label=f"({n},{k}) @ ({k},{m})"))
    run_cases("matmul_backward", fn, cases, hint="dX = G @ Wᵀ and dW = Xᵀ @ G: check the shapes")


def attention_weights(fn) -> None:
    """``fn(q, k)`` -> softmax(q kᵀ / √d) over the keys, for q (Tq, d) and k (Tk, d)."""
    g = _g(14)
    cases = []
    for i, (tq, tk, d) in enumerate([(1, 3, 2), (4, 4, 8), (3, 5, 64)]):
        q, k = torch.randn(tq, d, generator=g), torch.randn(tk, d, generator=g)
        cases.append(Case((q, k), torch.softmax(q @ k.T / d ** 0.5, -1), public=i < 2,
                          label=f"Tq={tq}, Tk={tk}, d={d}"))
    run_cases("attention_weights", fn, cases, hint="scores = q @ k.T / sqrt(d); softmax over the last dimension")


def tanh_backward(fn) -> None:
    """``fn(x, grad_out)`` -> gradient flowing into x through y = tanh(x), given grad_out = dL/dy."""
    g = _g(15)
    cases = []
    for i, shape in enumerate([(3,), (2, 4), (5,)]):
        x, go = (torch.randn(shape, generator=g, dtype=torch.float64) * 2,
                 torch.randn(shape, generator=g, dtype=torch.float64))
        xr = x.clone().requires_grad_()
        torch.tanh(xr).backward(go)
        cases.append(Case((x, go), xr.grad, public=i < 2, label=f"shape {shape}"))
    run_cases("tanh_backward", fn, cases, hint="local derivative 1 - tanh(x)², times the incoming gradient")


def softmax_temperature(fn) -> None:
    """``fn(z, T)`` -> softmax(z / T) over the last dimension, stable for large z."""
    cases = [Case((torch.tensor([1.0, 2.0, 3.0]), 1.0), torch.softmax(torch.tensor([1.0, 2.0, 3.0]), -1)),
             Case((torch.tensor([1.0, 2.0, 3.0]), 0.1), torch.softmax(torch.tensor([10.0, 20.0, 30.0]), -1),
                  label="T = 0.1: nearly one-hot"),
             Case((torch.tensor([[1000.0, 0.0], [3.0, 3.0]]), 10.0),
                  torch.softmax(torch.tensor([[100.0, 0.0], [0.3, 0.3]]), -1), public=False, label="large logits")]
    run_cases("softmax_temperature", fn, cases, hint="divide by T, subtract the row max, exponentiate, normalise")


def causal_mask(fn) -> None:
    """``fn(T)`` -> a (T, T) boolean tensor, True where position t may attend to position s (s <= t)."""
    cases = [Case((T,), torch.ones(T, T).tril().bool(), public=T < 4) for T in (1, 3, 6)]
    run_cases("causal_mask", fn, cases, compare=lambda got, exp: (
        isinstance(got, torch.Tensor) and got.dtype == torch.bool and got.shape == exp.shape
        and bool((got == exp).all()),
        "expected a boolean lower-triangular (T, T) tensor"), hint="torch.ones(T, T, dtype=torch.bool).tril()")


def attention_output(fn) -> None:
    """``fn(q, k, v)`` -> softmax(q kᵀ / √d) v for q (Tq, d), k (Tk, d), v (Tk, dv)."""
    import torch.nn.functional as F
    g = _g(16)
    cases = []
    for i, (tq, tk, d, dv) in enumerate([(1, 1, 3, 3), (2, 3, 4, 2), (5, 5, 16, 8)]):
        q, k, v = torch.randn(tq, d, generator=g), torch.randn(tk, d, generator=g), torch.randn(tk, dv, generator=g)
        cases.append(Case((q, k, v), F.scaled_dot_product_attention(q[None], k[None], v[None])[0], public=i < 2,
                          label=f"Tq={tq}, Tk={tk}, d={d}, dv={dv}"))
    run_cases("attention_output", fn, cases, hint="weights = softmax(q @ k.T / sqrt(d), dim=-1); return weights @ v")


# ---------------------------------------------------------------------------- Part III: convolution
def conv_output_size(fn) -> None:
    """``fn(n, k, stride, padding, dilation)`` -> the output length of a convolution along one axis."""
    from ..conv import out_size
    params = [(28, 5, 1, 2, 1), (28, 5, 1, 0, 1), (32, 3, 2, 1, 1), (10, 3, 1, 0, 2), (7, 2, 2, 0, 1),
              (224, 7, 2, 3, 1)]
    cases = [Case(p, out_size(*p), public=i < 3, label=f"n={p[0]}, k={p[1]}, s={p[2]}, p={p[3]}, d={p[4]}")
             for i, p in enumerate(params)]
    run_cases("conv_output_size", fn, cases, hint="floor((n + 2p − d·(k − 1) − 1) / s) + 1")


def conv2d_single(fn) -> None:
    """``fn(x, w)`` -> 'valid' cross-correlation of one 2-D image x (H, W) with one kernel w (k, k)."""
    import torch.nn.functional as F
    g = _g(17)
    cases = []
    for i, (h, k) in enumerate([(3, 2), (5, 3), (8, 5)]):
        x, w = torch.randn(h, h, generator=g, dtype=torch.float64), torch.randn(k, k, generator=g, dtype=torch.float64)
        cases.append(Case((x, w), F.conv2d(x[None, None], w[None, None])[0, 0], public=i < 2,
                          label=f"{h}×{h} * {k}×{k}"))
    run_cases("conv2d_single", fn, cases, hint="out[i, j] = (x[i:i+k, j:j+k] * w).sum(); no kernel flip (PyTorch "
              "'convolution' is cross-correlation)")


def maxpool2x2(fn) -> None:
    """``fn(x)`` -> 2×2 max-pooling with stride 2 of a 2-D tensor x (H, W) with even H, W."""
    import torch.nn.functional as F
    g = _g(18)
    cases = []
    for i, h in enumerate([2, 4, 8]):
        x = torch.randn(h, h, generator=g)
        cases.append(Case((x,), F.max_pool2d(x[None, None], 2)[0, 0], public=i < 2, label=f"{h}×{h}"))
    run_cases("maxpool2x2", fn, cases, hint="x.reshape(H//2, 2, W//2, 2).amax(dim=(1, 3))")


def conv2d_multi(fn) -> None:
    """``fn(x, w, b)`` -> convolution of a batch x (N, C, H, W) with kernels w (O, C, k, k) and bias b (O,)."""
    import torch.nn.functional as F
    g = _g(19)
    cases = []
    for i, (n, c, h, o, k) in enumerate([(1, 1, 4, 1, 2), (2, 3, 6, 4, 3), (3, 2, 7, 5, 3)]):
        x, w, b = (torch.randn(shape, generator=g, dtype=torch.float64) for shape in ((n, c, h, h), (o, c, k, k), (o,)))
        cases.append(Case((x, w, b), F.conv2d(x, w, b), public=i < 2, label=f"x {tuple(x.shape)}, w {tuple(w.shape)}"))
    run_cases("conv2d_multi", fn, cases, hint="unfold: F.unfold(x, k) is (N, C·k·k, L); multiply by w.view(O, -1)")


# ---------------------------------------------------------------------------- Part III: training in practice
def init_std(fn) -> None:
    """``fn(kind, fan_in, fan_out)`` -> the weight standard deviation of 'xavier' (Glorot) or 'he' (Kaiming, ReLU)."""
    import math
    ref = {"xavier": lambda i, o: math.sqrt(2 / (i + o)), "he": lambda i, o: math.sqrt(2 / i)}
    params = [("xavier", 784, 256), ("he", 784, 256), ("xavier", 100, 100), ("he", 10, 1000), ("xavier", 3, 5)]
    cases = [Case(p, ref[p[0]](p[1], p[2]), public=i < 2, label=f"{p[0]}, fan_in={p[1]}, fan_out={p[2]}")
             for i, p in enumerate(params)]
    run_cases("init_std", fn, cases,
              hint="Xavier: Var = 2/(fan_in + fan_out); He: Var = 2/fan_in; return the square root")


def warmup_cosine_lr(fn) -> None:
    """``fn(step, total, warmup, base_lr)`` -> linear warm-up to base_lr over ``warmup`` steps, then cosine decay
    to 0."""
    import math

    def ref(step, total, warmup, base):
        if step < warmup:
            return base * (step + 1) / warmup
        return base * 0.5 * (1 + math.cos(math.pi * (step - warmup) / (total - warmup)))
    params = [(0, 100, 10, 1.0), (9, 100, 10, 1.0), (10, 100, 10, 1.0), (55, 100, 10, 1.0), (99, 100, 10, 0.1),
              (4, 1000, 50, 3e-3), (700, 1000, 50, 3e-3)]
    cases = [Case(p, ref(*p), public=i < 4, label=f"step {p[0]} of {p[1]}, warm-up {p[2]}")
             for i, p in enumerate(params)]
    run_cases("warmup_cosine_lr", fn, cases, hint="warm-up: base·(step+1)/warmup; then base·½(1 + cos(π·progress)) "
              "with progress = (step − warmup)/(total − warmup)")


def clip_by_norm(fn) -> None:
    """``fn(grads, max_norm)`` -> the gradients scaled together so that their total L2 norm is at most max_norm."""
    g = _g(20)
    cases = []
    for i, (scale, max_norm) in enumerate([(10.0, 1.0), (0.01, 1.0), (3.0, 0.5)]):
        grads = [torch.randn(3, 4, generator=g, dtype=torch.float64) * scale,
                 torch.randn(5, generator=g, dtype=torch.float64) * scale]
        total = torch.sqrt(sum((t ** 2).sum() for t in grads))
        factor = min(1.0, max_norm / float(total))
        cases.append(Case((grads, max_norm), tuple(t * factor for t in grads), public=i < 2,
                          label="large gradients" if scale > 1 else "small gradients (unchanged)"))
    run_cases("clip_by_norm", fn, cases, compare=lambda got, exp: close(tuple(got), exp),
              hint="total = sqrt(Σ‖g‖²); multiply every g by min(1, max_norm / total)")


def batchnorm_forward(fn) -> None:
    """``fn(x, eps)`` -> batch normalisation of x (N, D) in training mode, without the learned scale and shift."""
    import torch.nn.functional as F
    g = _g(21)
    cases = []
    for i, (n, dim) in enumerate([(4, 3), (16, 8), (64, 2)]):
        x = torch.randn(n, dim, generator=g, dtype=torch.float64) * 3 + 1
        cases.append(Case((x, 1e-5), F.batch_norm(x, None, None, training=True, eps=1e-5), public=i < 2,
                          label=f"({n}, {dim})"))
    run_cases("batchnorm_forward", fn, cases, hint="per feature: (x − mean) / sqrt(var + eps), with the *biased* "
              "variance (divide by N)")


# ---------------------------------------------------------------------------- Part IV: recurrent networks
def _rnn_case_tensors(g, B, I, H, G):
    return (torch.randn(B, I, generator=g, dtype=torch.float64), torch.randn(B, H, generator=g, dtype=torch.float64),
            torch.randn(G * H, I, generator=g, dtype=torch.float64) * 0.5,
            torch.randn(G * H, H, generator=g, dtype=torch.float64) * 0.5,
            torch.randn(G * H, generator=g, dtype=torch.float64) * 0.1,
            torch.randn(G * H, generator=g, dtype=torch.float64) * 0.1)


def rnn_step(fn) -> None:
    """``fn(x, h, W_ih, W_hh, b_ih, b_hh)`` -> the next hidden state of a vanilla (tanh) RNN, PyTorch layout."""
    g = _g(22)
    cases = []
    for i, (B, I, H) in enumerate([(1, 2, 3), (4, 5, 6), (2, 3, 8)]):
        x, h, Wi, Wh, bi, bh = _rnn_case_tensors(g, B, I, H, 1)
        cases.append(Case((x, h, Wi, Wh, bi, bh), torch.rnn_tanh_cell(x, h, Wi, Wh, bi, bh), public=i < 2,
                          label=f"B={B}, I={I}, H={H}"))
    run_cases("rnn_step", fn, cases, hint="tanh(x @ W_ih.T + b_ih + h @ W_hh.T + b_hh)")


def lstm_step(fn) -> None:
    """``fn(x, h, c, W_ih, W_hh, b_ih, b_hh)`` -> (h', c') of an LSTM cell, gates in PyTorch's order i, f, g, o."""
    g = _g(23)
    cases = []
    for i, (B, I, H) in enumerate([(1, 2, 3), (4, 5, 6), (2, 3, 8)]):
        x, h, Wi, Wh, bi, bh = _rnn_case_tensors(g, B, I, H, 4)
        c = torch.randn(B, H, generator=g, dtype=torch.float64)
        cases.append(Case((x, h, c, Wi, Wh, bi, bh), torch.lstm_cell(x, (h, c), Wi, Wh, bi, bh), public=i < 2,
                          label=f"B={B}, I={I}, H={H}"))
    run_cases("lstm_step", fn, cases, hint="split the 4H pre-activations into i, f, g, o; c' = σ(f)c + σ(i)tanh(g); "
              "h' = σ(o)tanh(c')")


def gru_step(fn) -> None:
    """``fn(x, h, W_ih, W_hh, b_ih, b_hh)`` -> h' of a GRU cell, gates in PyTorch's order r, z, n."""
    g = _g(24)
    cases = []
    for i, (B, I, H) in enumerate([(1, 2, 3), (4, 5, 6), (2, 3, 8)]):
        x, h, Wi, Wh, bi, bh = _rnn_case_tensors(g, B, I, H, 3)
        cases.append(Case((x, h, Wi, Wh, bi, bh), torch.gru_cell(x, h, Wi, Wh, bi, bh), public=i < 2,
                          label=f"B={B}, I={I}, H={H}"))
    run_cases("gru_step", fn, cases, hint="r and z from both inputs; n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn)); "
              "h' = (1 − z) n + z h")


def perplexity(fn) -> None:
    """``fn(mean_loss)`` -> the perplexity exp(loss) of a language model with that mean cross-entropy (nats)."""
    import math
    cases = [Case((math.log(65),), 65.0, label="uniform over 65 characters"), Case((0.0,), 1.0),
             Case((1.5,), math.exp(1.5), public=False), Case((2.2,), math.exp(2.2), public=False)]
    run_cases("perplexity", fn, cases, hint="perplexity = e^loss: the effective number of equally likely choices")


# ---------------------------------------------------------------------------- Part IV: Transformers
def top_k_filter(fn) -> None:
    """``fn(logits, k)`` -> logits (1-D) with every entry outside the k largest set to -inf."""
    from ..gpt import filter_logits
    g = _g(25)
    cases = [Case((torch.tensor([1.0, 3.0, 2.0, 0.0]), 2), filter_logits(torch.tensor([1.0, 3.0, 2.0, 0.0]), top_k=2))]
    for i, k in enumerate((1, 5, 20)):
        z = torch.randn(20, generator=g)
        cases.append(Case((z, k), filter_logits(z, top_k=k), public=i == 0, label=f"20 logits, k={k}"))
    run_cases("top_k_filter", fn, cases,
              hint="kth = torch.topk(logits, k).values[-1]; logits.masked_fill(logits < kth, -inf)")


def top_p_filter(fn) -> None:
    """``fn(logits, p)`` -> logits (1-D) keeping the smallest set of most likely tokens whose probability reaches p."""
    from ..gpt import filter_logits
    g = _g(26)
    z0 = torch.tensor([3.0, 2.0, 1.0, 0.0, -1.0])
    cases = [Case((z0, 0.8), filter_logits(z0, top_p=0.8), label="keeps the two most likely"),
             Case((z0, 1.0), filter_logits(z0, top_p=1.0), label="p = 1 keeps everything")]
    for p in (0.5, 0.9):
        z = torch.randn(30, generator=g) * 2
        cases.append(Case((z, p), filter_logits(z, top_p=p), public=False, label=f"30 logits, p={p}"))
    run_cases("top_p_filter", fn, cases, hint="sort descending, cumulative softmax; keep a token if the mass *before* "
              "it is still < p")


def sinusoidal_pe(fn) -> None:
    """``fn(T, C)`` -> (T, C) sinusoidal position encodings: even columns sin(t/10000^(2i/C)), odd columns cos."""
    from ..gpt import sinusoidal_positions
    cases = [Case((T, C), sinusoidal_positions(T, C), public=i < 2, label=f"T={T}, C={C}") for i, (T, C) in
             enumerate([(4, 2), (10, 8), (64, 32)])]
    run_cases("sinusoidal_pe", fn, cases, compare=lambda got, exp: close(got, exp, rtol=1e-4, atol=1e-5),
              hint="freq_i = 10000^(−2i/C) for i = 0..C/2−1; PE[:, 0::2] = sin(t·freq), PE[:, 1::2] = cos(t·freq)")


def gpt_params(fn) -> None:
    """``fn(vocab, block, n_layer, n_embd)`` -> parameters of ``book.gpt.GPT`` (tied input/output embedding)."""
    from ..counting import count_params
    from ..gpt import GPT, GPTConfig
    params = [(65, 64, 2, 96), (10, 8, 1, 16), (50257, 1024, 12, 768)]
    cases = []
    for i, (V, T, L, C) in enumerate(params):
        n = count_params(GPT(GPTConfig(V, T, L, 4 if C % 4 == 0 else 2, C))) if V < 1000 else \
            V * C + T * C + L * (12 * C * C + 13 * C) + 2 * C
        cases.append(Case((V, T, L, C), n, public=i < 2, label=f"V={V}, block={T}, layers={L}, C={C}"))
    run_cases("gpt_params", fn, cases, hint="embeddings V·C + T·C (the output layer reuses V·C); per block: "
              "qkv 3C²+3C, proj C²+C, MLP 8C²+5C, two LayerNorms 4C; final LayerNorm 2C")
