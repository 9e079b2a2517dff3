"""Self-checks of the gpt chapter's exercises."""
from __future__ import annotations

import torch

from book.check.core import Case, _g, close, run_cases

__all__ = ['top_k_filter', 'top_p_filter', 'sinusoidal_pe', 'gpt_params']


# ---------------------------------------------------------------------------- Part IV: Transformers
def top_k_filter(fn) -> None:
    """``fn(logits, k)`` -> logits (1-D) with every entry outside the k largest set to -inf."""
    from book.nn.gpt import filter_logits
    g = _g(25)
    cases = [Case((torch.tensor([1.0, 3.0, 2.0, 0.0]), 2), filter_logits(torch.tensor([1.0, 3.0, 2.0, 0.0]), top_k=2))]
    for i, k in enumerate((1, 5, 20)):
        z = torch.randn(20, generator=g)
        cases.append(Case((z, k), filter_logits(z, top_k=k), public=i == 0, label=f"20 logits, k={k}"))
    run_cases("top_k_filter", fn, cases,
              hint="kth = torch.topk(logits, k).values[-1]; logits.masked_fill(logits < kth, -inf)")


def top_p_filter(fn) -> None:
    """``fn(logits, p)`` -> logits (1-D) keeping the smallest set of most likely tokens whose probability reaches p."""
    from book.nn.gpt import filter_logits
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
    from book.nn.gpt import sinusoidal_positions
    cases = [Case((T, C), sinusoidal_positions(T, C), public=i < 2, label=f"T={T}, C={C}") for i, (T, C) in
             enumerate([(4, 2), (10, 8), (64, 32)])]
    run_cases("sinusoidal_pe", fn, cases, compare=lambda got, exp: close(got, exp, rtol=1e-4, atol=1e-5),
              hint="freq_i = 10000^(−2i/C) for i = 0..C/2−1; PE[:, 0::2] = sin(t·freq), PE[:, 1::2] = cos(t·freq)")


def gpt_params(fn) -> None:
    """``fn(vocab, block, n_layer, n_embd)`` -> parameters of ``book.nn.gpt.GPT`` (tied input/output embedding)."""
    from book.nn.counting import count_params
    from book.nn.gpt import GPT, GPTConfig
    params = [(65, 64, 2, 96), (10, 8, 1, 16), (50257, 1024, 12, 768)]
    cases = []
    for i, (V, T, L, C) in enumerate(params):
        n = count_params(GPT(GPTConfig(V, T, L, 4 if C % 4 == 0 else 2, C))) if V < 1000 else \
            V * C + T * C + L * (12 * C * C + 13 * C) + 2 * C
        cases.append(Case((V, T, L, C), n, public=i < 2, label=f"V={V}, block={T}, layers={L}, C={C}"))
    run_cases("gpt_params", fn, cases, hint="embeddings V·C + T·C (the output layer reuses V·C); per block: "
              "qkv 3C²+3C, proj C²+C, MLP 8C²+5C, two LayerNorms 4C; final LayerNorm 2C")
