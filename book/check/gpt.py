"""Self-checks of the gpt chapter's exercises."""
from __future__ import annotations

import torch

from book.check.core import Case, _g, close, run_cases

__all__ = ['top_k_filter', 'top_p_filter', 'sinusoidal_pe', 'gpt_params', 'kv_cache_floats', 'positions_processed']


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
              hint="find the k-th largest logit (torch.topk); every logit below it becomes -inf, ties with it stay")


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


def _tiny_gpt(n_layer, n_embd, block=64):
    from book.nn.gpt import GPT, GPTConfig
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=7, block_size=block, n_layer=n_layer, n_head=2, n_embd=n_embd)).eval()


def kv_cache_floats(fn) -> None:
    """``fn(n_layer, n_embd, T, batch)`` -> numbers held by the KV cache of ``book.nn.gpt.GPT`` after it
    has processed ``T`` positions of ``batch`` sequences."""
    from book.check._reference import _kv_floats_ref as ref  # hidden from graded code
    cases = []
    for i, (L, C, T, B) in enumerate([(2, 16, 10, 1), (3, 8, 5, 4), (1, 32, 33, 2)]):
        caches = [[] for _ in range(L)]          # counted on the real model, not by a formula
        with torch.no_grad():
            _tiny_gpt(L, C)(torch.zeros(B, T, dtype=torch.long), caches)
        n = sum(t.numel() for c in caches for t in c)
        cases.append(Case((L, C, T, B), n, public=i < 2, label=f"{L} layers, C={C}, T={T}, batch {B}"))
    cases.append(Case((12, 768, 1024, 1), ref(12, 768, 1024, 1), public=False, label="GPT-2 small, full window"))
    run_cases("kv_cache_floats", fn, cases, compare=lambda g, e: close(g, e, rtol=0, atol=0.5),
              hint="which tensors does each block's attention keep between calls, and what is their shape?")


def positions_processed(fn) -> None:
    """``fn(prompt_len, n_new, use_cache)`` -> token positions ``GPT.generate`` feeds through the model
    for a prompt of ``prompt_len`` tokens and ``n_new`` new ones (prompt_len + n_new <= block_size)."""
    model = _tiny_gpt(1, 8)
    seen = []
    hook = model.tok.register_forward_hook(lambda mod, inp, out: seen.append(inp[0].numel()))
    cases = []
    try:
        for i, (p, n, cache) in enumerate([(5, 10, False), (5, 10, True), (1, 1, False), (12, 40, False),
                                           (30, 20, True)]):
            seen.clear()      # counted by a hook on the real model's token embedding
            model.generate(torch.zeros(1, p, dtype=torch.long), n, greedy=True, use_cache=cache)
            cases.append(Case((p, n, cache), sum(seen), public=i < 2,
                              label=f"prompt {p}, {n} new, {'with' if cache else 'without'} cache"))
    finally:
        hook.remove()
    run_cases("positions_processed", fn, cases, compare=lambda g, e: close(g, e, rtol=0, atol=0.5),
              hint="read GPT.generate: how many calls of the model, and how long is each call's input?")
