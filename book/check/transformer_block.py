"""Self-checks of the transformer_block chapter's exercises."""
from __future__ import annotations

import torch
from torch import nn

from book.check.core import Case, _g, close, run_cases

__all__ = ['layernorm_output_var', 'initial_loss', 'pre_norm_block', 'post_norm_block']


def _loose(got, expected):
    return close(got, expected, rtol=1e-4, atol=1e-5)


def layernorm_output_var(fn) -> None:
    """``fn(sigma2, eps)`` -> the variance of ``nn.LayerNorm`` outputs (no affine) for inputs of (biased)
    variance ``sigma2``; measured on vectors built to have exactly that variance."""
    g = _g(40)
    cases = []
    for i, (sigma2, eps) in enumerate([(1.0, 1e-5), (1e-5, 1e-5), (4e-6, 1e-5), (0.25, 0.1), (1e-3, 1e-6)]):
        z = torch.randn(8, 64, generator=g, dtype=torch.float64)
        z = (z - z.mean(-1, keepdim=True)) / z.std(-1, unbiased=False, keepdim=True) * sigma2 ** 0.5 + 3.0
        out = nn.LayerNorm(64, eps=eps, elementwise_affine=False).double()(z)
        measured = out.var(-1, unbiased=False).mean().item()
        cases.append(Case((sigma2, eps), measured, public=i < 2,
                          label=f"σ²={sigma2:g}, ε={eps:g}: nn.LayerNorm measured {measured:.4f}"))
    run_cases("layernorm_output_var", fn, cases, compare=lambda got, exp: close(got, exp, rtol=1e-6),
              hint="subtracting the mean keeps the variance; dividing by sqrt(σ² + ε) divides it by σ² + ε")


def initial_loss(fn) -> None:
    """``fn(vocab_size)`` -> the cross-entropy of equal logits; compared with fresh GPTs' measured loss."""
    from book.nn.gpt import GPT, GPTConfig
    from book.nn.losses import lm_loss
    g = _g(41)
    cases = []
    for i, (V, layers, width) in enumerate([(65, 1, 16), (65, 2, 32), (10, 1, 16), (300, 1, 32)]):
        torch.manual_seed(i)
        model = GPT(GPTConfig(V, block_size=16, n_layer=layers, n_head=2, n_embd=width))
        idx = torch.randint(0, V, (64, 17), generator=g)
        with torch.no_grad():
            measured = lm_loss(model(idx[:, :-1]), idx[:, 1:]).item()
        cases.append(Case((V,), measured, public=i < 2,
                          label=f"vocab {V}: a fresh GPT ({layers} blocks, width {width}) measured {measured:.3f}"))
    run_cases("initial_loss", fn, cases, compare=lambda got, exp: close(got, exp, rtol=0, atol=0.02),
              hint="equal logits give every character probability 1/V")


def _block(seed: int, C: int = 16, heads: int = 2):
    from book.nn.gpt import Block, GPTConfig
    torch.manual_seed(seed)
    block = Block(GPTConfig(vocab_size=1, n_head=heads, n_embd=C)).eval()
    with torch.no_grad():    # LayerNorms away from (1, 0), so that a misplaced norm shows
        for ln in (block.ln1, block.ln2):
            ln.weight.uniform_(0.5, 1.5)
            ln.bias.uniform_(-0.5, 0.5)
    return block


def pre_norm_block(fn) -> None:
    """``fn(x, attn, mlp, ln1, ln2)`` -> what ``book.nn.gpt.Block`` computes."""
    g = _g(42)
    cases = []
    for i, (B, T) in enumerate([(1, 4), (2, 7), (3, 16)]):
        block = _block(i)
        x = torch.randn(B, T, 16, generator=g) * 2
        with torch.no_grad():
            cases.append(Case((x, block.attn, block.mlp, block.ln1, block.ln2), block(x), public=i < 2,
                              label=f"x of shape {(B, T, 16)}"))
    with torch.no_grad():
        run_cases("pre_norm_block", fn, cases, compare=_loose,
                  hint="h = x + attn(ln1(x)); return h + mlp(ln2(h))")


def post_norm_block(fn) -> None:
    """``fn(x, attn, mlp, ln1, ln2)`` -> ``nn.TransformerEncoderLayer(norm_first=False)`` with a causal mask."""
    g = _g(43)
    cases = []
    for i, (B, T) in enumerate([(1, 4), (2, 7), (3, 16)]):
        block = _block(10 + i)
        ref = nn.TransformerEncoderLayer(16, 2, 64, dropout=0.0, activation="gelu", batch_first=True,
                                         norm_first=False).eval()
        with torch.no_grad():
            ref.self_attn.in_proj_weight.copy_(block.attn.qkv.weight)
            ref.self_attn.in_proj_bias.copy_(block.attn.qkv.bias)
            ref.self_attn.out_proj.weight.copy_(block.attn.proj.weight)
            ref.self_attn.out_proj.bias.copy_(block.attn.proj.bias)
            for mine, theirs in ((block.mlp[0], ref.linear1), (block.mlp[2], ref.linear2),
                                 (block.ln1, ref.norm1), (block.ln2, ref.norm2)):
                theirs.weight.copy_(mine.weight)
                theirs.bias.copy_(mine.bias)
            x = torch.randn(B, T, 16, generator=g) * 2
            expected = ref(x, src_mask=torch.ones(T, T, dtype=torch.bool).triu(1))
        cases.append(Case((x, block.attn, block.mlp, block.ln1, block.ln2), expected, public=i < 2,
                          label=f"x of shape {(B, T, 16)}"))
    with torch.no_grad():
        run_cases("post_norm_block", fn, cases, compare=_loose,
                  hint="h = ln1(x + attn(x)); return ln2(h + mlp(h))")
