"""The modern_block chapter: book.nn.modern's pieces against their references (torch.nn.RMSNorm, a complex
RoPE, a direct SwiGLU, scaled_dot_product_attention), ModernGPT against book.nn.gpt.GPT, the KV cache,
the ablation's arms at equal size, the tile view, and the exercise checks."""
import math

import pytest
import torch
import torch.nn.functional as F

from book.lab.modern_block import TileExplorer, arms, matched, train_arm
from book.nn.counting import count_params
from book.nn.gpt import GPT, CausalSelfAttention, GPTConfig
from book.nn.modern import (
    GQASelfAttention,
    ModernConfig,
    ModernGPT,
    RMSNorm,
    SwiGLU,
    apply_rope,
    attention_memory,
    gqa_attention,
    kv_cache_bytes,
    rope_angles,
    swiglu_hidden,
    tiled_attention,
)


def test_rmsnorm_matches_torch_outputs_and_gradients():
    torch.manual_seed(0)
    ours, ref = RMSNorm(16, eps=1e-5), torch.nn.RMSNorm(16, eps=1e-5)
    with torch.no_grad():
        ours.weight.copy_(torch.randn(16))
        ref.weight.copy_(ours.weight)
    x = torch.randn(3, 5, 16, requires_grad=True)
    assert torch.allclose(ours(x), ref(x), atol=1e-6)
    g1, = torch.autograd.grad(ours(x).sum(), x)
    g2, = torch.autograd.grad(ref(x).sum(), x)
    assert torch.allclose(g1, g2, atol=1e-5)


def test_rope_matches_complex_formulation_and_sees_only_offsets():
    torch.manual_seed(1)
    T, d = 20, 8
    x = torch.randn(2, T, d)
    cos, sin = rope_angles(T, d)
    theta = 10000 ** (-torch.arange(0, d, 2).float() / d)
    z = torch.view_as_complex(x.reshape(2, T, d // 2, 2)) * torch.polar(torch.ones(T, d // 2),
                                                                         torch.arange(T)[:, None] * theta)
    assert torch.allclose(apply_rope(x, cos, sin), torch.view_as_real(z).reshape(2, T, d), atol=1e-5)
    q, k = torch.randn(d), torch.randn(d)
    rq = apply_rope(q.expand(T, d), cos, sin)
    rk = apply_rope(k.expand(T, d), cos, sin)
    s = rq @ rk.T
    for off in range(-T + 1, T):
        diag = s.diagonal(off)
        assert (diag.max() - diag.min()).abs() < 1e-4
    # a start offset rotates as the same positions would
    c2, s2 = rope_angles(5, d, start=7)
    assert torch.allclose(apply_rope(x[:, 7:12], c2, s2), apply_rope(x, cos, sin)[:, 7:12], atol=1e-6)
    with pytest.raises(ValueError, match="even"):
        rope_angles(4, 7)


def test_swiglu_is_the_direct_formula_and_sized_like_gelu_mlp():
    torch.manual_seed(2)
    m = SwiGLU(12, 20)
    x = torch.randn(4, 12)
    a, b = x @ m.gate.weight.T, x @ m.up.weight.T
    assert torch.allclose(m(x), (a * torch.sigmoid(a) * b) @ m.down.weight.T, atol=1e-6)
    for C in (32, 64, 96, 384):
        gelu = 2 * C * 4 * C + 5 * C
        assert abs(3 * C * swiglu_hidden(C) - gelu) <= 1.5 * C


@pytest.mark.parametrize("G", [1, 2, 4])
def test_gqa_matches_sdpa(G):
    torch.manual_seed(3)
    q, k, v = torch.randn(2, 4, 9, 8), torch.randn(2, G, 9, 8), torch.randn(2, G, 9, 8)
    ref = F.scaled_dot_product_attention(q, k.repeat_interleave(4 // G, 1), v.repeat_interleave(4 // G, 1),
                                         is_causal=True)
    assert torch.allclose(gqa_attention(q, k, v), ref, atol=1e-5)
    if "enable_gqa" in F.scaled_dot_product_attention.__doc__:
        assert torch.allclose(gqa_attention(q, k, v),
                              F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True), atol=1e-5)
    with pytest.raises(ValueError, match="multiple"):
        gqa_attention(torch.randn(1, 3, 4, 8), torch.randn(1, 2, 4, 8), torch.randn(1, 2, 4, 8))


def test_gqa_layer_with_all_heads_is_the_gpt_attention():
    torch.manual_seed(4)
    mha = CausalSelfAttention(GPTConfig(vocab_size=1, n_embd=16, n_head=4)).eval()
    gqa = GQASelfAttention(16, 4, 4)
    gqa.load_state_dict(mha.state_dict())
    x = torch.randn(2, 7, 16)
    assert torch.allclose(gqa(x), mha(x), atol=1e-6)
    with pytest.raises(ValueError):
        GQASelfAttention(16, 4, 3)


def test_modern_gpt_with_switches_off_is_the_book_gpt():
    torch.manual_seed(5)
    g = GPT(GPTConfig(11, 12, 2, 4, 16)).eval()
    m = ModernGPT(ModernConfig(11, 12, 2, 4, 16)).eval()
    m.load_state_dict(g.state_dict())                 # strict: same names and shapes
    idx = torch.randint(0, 11, (3, 12))
    assert torch.allclose(m(idx), g(idx), atol=1e-6)
    with pytest.raises(ValueError, match="exceeds"):
        m(torch.zeros(1, 13, dtype=torch.long))
    with pytest.raises(ValueError, match="token ids"):
        m(torch.zeros(1, 3))


@pytest.mark.parametrize("G", [1, 2, 4])
def test_kv_cache_gives_the_same_logits_and_its_size_is_the_formula(G):
    torch.manual_seed(6)
    m = ModernGPT(ModernConfig(11, 16, 2, 4, 16, rmsnorm=True, rope=True, swiglu=True, n_kv_head=G)).eval()
    idx = torch.randint(0, 11, (2, 16))
    caches = [[] for _ in m.blocks]
    with torch.no_grad():
        full = m(idx)
        parts = torch.cat([m(idx[:, :9], caches), m(idx[:, 9:10], caches), m(idx[:, 10:], caches)], 1)
    assert torch.allclose(full, parts, atol=1e-5)
    held = sum(t.numel() * t.element_size() for c in caches for t in c)
    assert held == kv_cache_bytes(2, G, 4, 16, bytes_per=4, batch=2)


@pytest.mark.parametrize("T,block,causal", [(32, 8, False), (32, 8, True), (45, 16, True), (5, 16, False)])
def test_tiled_attention_matches_sdpa(T, block, causal):
    torch.manual_seed(7)
    q, k, v = (torch.randn(2, 3, T, 8) for _ in range(3))
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    assert torch.allclose(tiled_attention(q, k, v, causal, block), ref, atol=1e-5)


def test_tiled_attention_errors_and_memory():
    with pytest.raises(ValueError, match="as many keys"):
        tiled_attention(torch.randn(1, 1, 4, 2), torch.randn(1, 1, 6, 2), torch.randn(1, 1, 6, 2), causal=True)
    mem = attention_memory(1024, 64, 32, bytes_per=4)
    assert mem["full"] == 2 * 1024 * 1024 * 4
    assert mem["tiled"] == (64 * 64 + 2 * 64 + 64 * 32) * 4


def test_arms_change_one_thing_and_have_equal_size():
    base = ModernConfig(65, 32, 2, 4, 32)
    configs = arms(base, 2)
    assert list(configs)[0] == "GPT (baseline)" and configs["GPT (baseline)"] == matched(base, base)
    sizes = [count_params(ModernGPT(c)) for c in configs.values()]
    per_unit = 2 * 3 * 32
    assert max(sizes) - min(sizes) <= per_unit
    switches = ("rmsnorm", "rope", "swiglu", "n_kv_head")
    for name, c in list(configs.items())[1:-1]:
        changed = [s for s in switches if getattr(c, s) != getattr(base, s)]
        assert len(changed) == 1, (name, changed)


def test_train_arm_learns_and_is_reproducible():
    torch.manual_seed(0)
    ids = torch.randint(0, 5, (3000,))
    ids[1::2] = (ids[::2] + 1) % 5                   # every second token follows from the one before
    cfg = ModernConfig(5, 16, 1, 2, 16, rope=True)
    val = (ids[:16 * 20].view(20, 16), ids[1:16 * 20 + 1].view(20, 16))
    _, h1 = train_arm(cfg, ids, val, batch=8, steps=60, lr=1e-2, seed=0, log_every=30)
    _, h2 = train_arm(cfg, ids, val, batch=8, steps=60, lr=1e-2, seed=0, log_every=30)
    assert h1.val_loss == h2.val_loss
    assert h1.val_loss[-1] < math.log(5) - 0.3


def test_tile_explorer_counts_and_draws():
    view = TileExplorer(T=64, block=16)
    order = view.tiles()
    assert int((order >= 0).sum()) == 10 and order[0, 1] == -1
    assert int((view.tiles(causal=False) >= 0).sum()) == 16
    assert view.draw().shape == (4, 4)
    with pytest.raises(ValueError):
        TileExplorer(block=0)


@pytest.mark.parametrize("T,block,causal", [(64, 16, True), (100, 16, True), (7, 8, True), (37, 8, False)])
def test_tile_view_counts_the_tiles_tiled_attention_computes(T, block, causal):
    """The causal_tiles check's expected answers come from TileExplorer.tiles(): count the score tiles the
    real tiled_attention computes (each is one q @ kᵀ of a key tile) and compare."""
    from torch.overrides import TorchFunctionMode

    class CountTiles(TorchFunctionMode):
        n = 0

        def __torch_function__(self, func, types, args=(), kwargs=None):
            if func is torch.Tensor.transpose:     # one k-tile transposed per score tile
                CountTiles.n += 1
            return func(*args, **(kwargs or {}))

    q = k = v = torch.randn(1, 1, T, 4)
    with CountTiles():
        tiled_attention(q, k, v, causal=causal, block=block)
    assert CountTiles.n == int((TileExplorer(T=T, block=block, causal=causal).tiles() >= 0).sum())


@pytest.mark.parametrize("name,good,bad", [
    ("rms_norm", lambda x, w, eps: x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w,
     lambda x, w, eps: (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, keepdim=True, unbiased=False) + eps) * w),
    ("merge_softmax", lambda m1, l1, m2, l2: (torch.maximum(m1, m2), l1 * torch.exp(m1 - torch.maximum(m1, m2))
                                              + l2 * torch.exp(m2 - torch.maximum(m1, m2))),
     lambda m1, l1, m2, l2: (torch.maximum(m1, m2), l1 + l2)),
    ("gqa_params_saved", lambda C, H, G: 2 * (H - G) * (C // H) * (C + 1),
     lambda C, H, G: 2 * (H - G) * (C // H) * C),
    ("causal_tiles", lambda T, b: (-(-T // b)) * (-(-T // b) + 1) // 2,
     lambda T, b: (T // b) * (T // b + 1) // 2),
])
def test_modern_block_checks(name, good, bad, check_verdict):
    check_verdict(name, good, bad)
