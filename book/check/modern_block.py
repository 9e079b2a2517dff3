"""Self-checks of the modern_block chapter's exercises."""
from __future__ import annotations

import torch

from book.check.core import Case, _g, close, run_cases

__all__ = ["rms_norm", "merge_softmax", "gqa_params_saved", "causal_tiles"]


def rms_norm(fn) -> None:
    """``fn(x, weight, eps)`` -> x / sqrt(mean(x², last dim) + eps) · weight."""
    from book.nn.modern import RMSNorm
    g = _g(71)
    cases = []
    for i, (shape, eps) in enumerate([((2, 5), 1e-6), ((3, 4, 8), 1e-5), ((6, 16), 1e-2)]):
        x = torch.randn(*shape, generator=g) * (1 + 3 * i) + i     # shifted: the mean is not removed
        ref = RMSNorm(shape[-1], eps=eps)
        with torch.no_grad():
            ref.weight.copy_(torch.randn(shape[-1], generator=g))
            expected = ref(x)
        cases.append(Case((x, ref.weight.detach().clone(), eps), expected, public=i < 2,
                          label=f"x of shape {shape}, eps={eps}"))
    run_cases("rms_norm", fn, cases, compare=lambda got, exp: close(got, exp, rtol=1e-4, atol=1e-5),
              hint="the mean of the squares over the last dimension (keepdim), no mean subtracted; then the gain")


def merge_softmax(fn) -> None:
    """``fn(m1, l1, m2, l2)`` -> (m, l) of the union of two score sets from their (max, sum of exp(s - max))."""
    g = _g(72)
    cases = []
    for i, (n1, n2, scale) in enumerate([(3, 4, 1.0), (5, 2, 10.0), (8, 8, 50.0)]):
        a = torch.randn(4, n1, generator=g) * scale
        b = torch.randn(4, n2, generator=g) * scale - (scale if i == 1 else 0)   # maxima in either part
        stats = []
        for s in (a, b):
            m = s.amax(-1)
            stats += [m, torch.exp(s - m[:, None]).sum(-1)]
        both = torch.cat([a, b], -1)                     # the reference: computed on the union itself
        m = both.amax(-1)
        expected = (m, torch.exp(torch.logsumexp(both, -1) - m))
        cases.append(Case(tuple(stats), expected, public=i < 2, label=f"rows of {n1} + {n2} scores, scale {scale}"))
    run_cases("merge_softmax", fn, cases, compare=lambda got, exp: close(got, exp, rtol=1e-5, atol=1e-6),
              hint="the union's max is the larger max; rescale each partial sum by exp(its max - the union's max)")


def gqa_params_saved(fn) -> None:
    """``fn(n_embd, n_head, n_kv_head)`` -> parameters GQASelfAttention saves against n_kv_head = n_head."""
    from book.nn.counting import count_params
    from book.nn.modern import GQASelfAttention
    cases = []
    for i, (C, H, G) in enumerate([(64, 4, 1), (64, 4, 2), (96, 6, 3), (384, 6, 2), (32, 4, 4)]):
        n = count_params(GQASelfAttention(C, H, H)) - count_params(GQASelfAttention(C, H, G))
        cases.append(Case((C, H, G), n, public=i < 2, label=f"C={C}, {H} heads, {G} kv heads"))
    run_cases("gqa_params_saved", fn, cases, compare=lambda g, e: close(g, e, rtol=0, atol=0.5),
              hint="only qkv changes: it maps C to C + 2·G·(C/H) features, with a weight and a bias for each")


def causal_tiles(fn) -> None:
    """``fn(T, block)`` -> the number of score tiles a causal ``tiled_attention`` computes."""
    from book.lab.modern_block import TileExplorer
    cases = []
    for i, (T, b) in enumerate([(64, 16), (100, 16), (7, 8), (1000, 64), (129, 32)]):
        n = int((TileExplorer(T=T, block=b, causal=True).tiles() >= 0).sum())   # counted on the view
        cases.append(Case((T, b), n, public=i < 2, label=f"T={T}, tile {b}"))
    run_cases("causal_tiles", fn, cases, compare=lambda g, e: close(g, e, rtol=0, atol=0.5),
              hint="n = ceil(T / block) tiles per side; query tile i needs key tiles 0..i")
