import pytest
import torch
from torch import nn

from book.nn.gpt import GPT, CausalSelfAttention, GPTConfig, filter_logits, pick_next, sinusoidal_positions
from book.nn.losses import lm_loss


def small(**kw):
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=11, block_size=16, n_layer=2, n_head=2, n_embd=16, **kw)).eval()


def test_shapes_and_causality():
    m = small()
    x = torch.randint(0, 11, (3, 10))
    logits = m(x)
    assert logits.shape == (3, 10, 11)
    y = x.clone()
    y[:, 7:] = (y[:, 7:] + 1) % 11            # change only the future
    assert torch.allclose(m(y)[:, :7], logits[:, :7], atol=1e-6)
    assert not torch.allclose(m(y)[:, 7:], logits[:, 7:])


def test_fused_and_explicit_attention_agree():
    m = small()
    x = torch.randint(0, 11, (2, 12))
    fused = m(x)
    explicit = m(x, keep_weights=True)
    assert torch.allclose(fused, explicit, atol=1e-5)
    maps = m.attention_maps(x)
    assert len(maps) == 2 and maps[0].shape == (2, 2, 12, 12)
    assert torch.allclose(maps[0].sum(-1), torch.ones(2, 2, 12)) and (maps[0].triu(1) == 0).all()


def test_attention_matches_nn_multiheadattention():
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=5, n_embd=16, n_head=4)
    ours = CausalSelfAttention(cfg).eval()
    ref = nn.MultiheadAttention(16, 4, batch_first=True)
    with torch.no_grad():
        ref.in_proj_weight.copy_(ours.qkv.weight)
        ref.in_proj_bias.copy_(ours.qkv.bias)
        ref.out_proj.weight.copy_(ours.proj.weight)
        ref.out_proj.bias.copy_(ours.proj.bias)
    x = torch.randn(2, 7, 16)
    mask = torch.ones(7, 7, dtype=torch.bool).triu(1)       # nn.MultiheadAttention: True = NOT allowed
    expected, _ = ref(x, x, x, attn_mask=mask)
    assert torch.allclose(ours(x), expected, atol=1e-5)


def test_kv_cache_gives_identical_greedy_text():
    m = small()
    start = torch.tensor([[1, 2, 3]])
    a = m.generate(start, 20, greedy=True, use_cache=True)      # runs past block_size=16: cache refills
    b = m.generate(start, 20, greedy=True, use_cache=False)
    assert torch.equal(a, b) and a.shape == (1, 23)


def test_sampling_filters():
    logits = torch.tensor([[3.0, 2.0, 1.0, 0.0, -1.0]])
    assert torch.isinf(filter_logits(logits, top_k=2)).sum() == 3
    p = logits.softmax(-1)[0]
    kept = torch.isfinite(filter_logits(logits, top_p=0.8))[0]
    assert kept.tolist() == [True, True, False, False, False] and p[:1].sum() < 0.8 <= p[:2].sum()
    assert torch.isfinite(filter_logits(logits, top_p=1.0)).all()
    assert pick_next(logits, greedy=True).item() == 0
    g = torch.Generator().manual_seed(0)
    assert all(pick_next(logits, top_k=1, generator=g).item() == 0 for _ in range(5))
    with pytest.raises(ValueError, match="top_k"):
        filter_logits(logits, top_k=0)
    with pytest.raises(ValueError, match="top_p"):
        filter_logits(logits, top_p=0)
    with pytest.raises(ValueError, match="temperature"):
        pick_next(logits, temperature=0)


def test_errors_and_helpers():
    m = small()
    with pytest.raises(ValueError, match="exceeds block_size"):
        m(torch.zeros(1, 17, dtype=torch.long))
    with pytest.raises(ValueError, match="token ids"):
        m(torch.zeros(1, 4))
    with pytest.raises(ValueError, match="divisible"):
        GPT(GPTConfig(vocab_size=5, n_embd=10, n_head=3))
    pe = sinusoidal_positions(50, 16)
    assert pe.shape == (50, 16) and pe[0, 1] == 1.0 and pe.abs().max() <= 1
    with pytest.raises(ValueError, match="even"):
        sinusoidal_positions(5, 3)
    assert m.head.weight is m.tok.weight


def test_tiny_gpt_learns_a_pattern():
    torch.manual_seed(0)
    m = GPT(GPTConfig(vocab_size=4, block_size=16, n_layer=1, n_head=2, n_embd=16))
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    data = torch.arange(4).repeat(40)
    for step in range(80):
        i = torch.randint(0, len(data) - 17, (8,))
        x = torch.stack([data[j:j + 16] for j in i])
        y = torch.stack([data[j + 1:j + 17] for j in i])
        loss = lm_loss(m(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05
    assert m.generate(torch.tensor([[0, 1]]), 6, greedy=True)[0].tolist() == [0, 1, 2, 3, 0, 1, 2, 3]


def test_gpu_profile_architecture_builds_small():
    """The gpu profile's baby-GPT shape (6 layers, 6 heads) at small width runs on any device."""
    m = GPT(GPTConfig(vocab_size=65, block_size=32, n_layer=6, n_head=6, n_embd=48))
    assert m(torch.zeros(2, 32, dtype=torch.long)).shape == (2, 32, 65)


@pytest.mark.parametrize("name,good,bad", [
    ("top_k_filter", lambda z, k: filter_logits(z, top_k=k), lambda z, k: filter_logits(z, top_k=k + 1)),
    ("top_p_filter", lambda z, p: filter_logits(z, top_p=p), lambda z, p: filter_logits(z, top_k=1)),
    ("sinusoidal_pe", sinusoidal_positions, lambda T, C: sinusoidal_positions(T, C).flip(1)),
    ("gpt_params", lambda V, T, L, C: V * C + T * C + L * (12 * C * C + 13 * C) + 2 * C,
     lambda V, T, L, C: 2 * V * C + T * C + L * (12 * C * C + 13 * C) + 2 * C),
    ("kv_cache_floats", lambda L, C, T, B: 2 * L * B * T * C, lambda L, C, T, B: L * B * T * C),
    ("positions_processed", lambda p, n, c: p + n if c else (n + 1) * p + n * (n + 1) // 2,
     lambda p, n, c: p + n if c else n * p + n * (n - 1) // 2),
])
def test_gpt_checks(name, good, bad, check_verdict):
    check_verdict(name, good, bad)


def test_generation_and_attention_explorers():
    from book.data.text import CharVocab
    from book.lab.gpt import AttentionExplorer, GenerationExplorer
    v = CharVocab("abcdefgh \n:")
    m = GPT(GPTConfig(vocab_size=len(v), block_size=16, n_layer=2, n_head=2, n_embd=16))
    ge = GenerationExplorer(m, v, prompt="ab", n=10)
    a = ge.sample()
    assert len(a) == 10 and ge.sample() == a                      # same seed, same text
    assert ge.sample(greedy=True) == ge.sample(greedy=True, seed=5)
    assert len(ge.sample(top_k=3, top_p=0.5)) == 10
    assert "<script" in ge.player("temperature", [0.5, 1.0]).data
    ae = AttentionExplorer(m, v, text="abc def", layer=1, head=1)
    w = ae.weights()
    assert w.shape == (7, 7) and torch.allclose(w.sum(-1), torch.ones(7), atol=1e-5)
    ae.show()
    assert "<script" in ae.player("head", [0, 1]).data
    with pytest.raises(ValueError, match="layer must be"):
        AttentionExplorer(m, v, layer=5)


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("T, past", [(1, 0), (6, 0), (1, 5), (4, 5)])
def test_sdpa_gets_is_causal_instead_of_a_mask_where_it_means_the_same(causal, T, past):
    """No boolean mask without a cache (it rules out CUDA's flash kernel); every case equals the explicit rule."""
    attn = CausalSelfAttention(GPTConfig(vocab_size=11, block_size=16, n_head=2, n_embd=16, causal=causal))
    kw = attn.sdpa_mask(T, past, "cpu")
    if past == 0 or T == 1 or not causal:
        assert "attn_mask" not in kw
    q = torch.randn(2, 2, T, 8)
    k, v = torch.randn(2, 2, past + T, 8), torch.randn(2, 2, past + T, 8)
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=attn.mask(T, past, "cpu"))
    got = torch.nn.functional.scaled_dot_product_attention(q, k, v, **kw)
    assert torch.allclose(got, ref, atol=1e-6)


def test_attention_maps_ignore_dropout_and_keep_the_training_mode():
    torch.manual_seed(0)
    m = GPT(GPTConfig(vocab_size=11, block_size=16, n_layer=2, n_head=2, n_embd=16, dropout=0.5)).train()
    x = torch.randint(0, 11, (1, 10))
    a, b = m.attention_maps(x), m.attention_maps(x)
    assert m.training and all(torch.equal(p, q) for p, q in zip(a, b))
