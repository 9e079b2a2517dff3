"""The attention_math chapter: book.nn.attention against torch's scaled_dot_product_attention, and its checks."""
import pytest
import torch
import torch.nn.functional as F

from book.nn.attention import attention, causal_mask


@pytest.mark.parametrize("masked", [False, True])
def test_attention_matches_torch(masked):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 5, 8, generator=g) for _ in range(3))  # (B, heads, T, d)
    mask = causal_mask(5) if masked else None
    out, w = attention(q, k, v, mask)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert torch.allclose(out, ref, atol=1e-6) and w.shape == (2, 3, 5, 5)
    assert torch.allclose(w.sum(-1), torch.ones(2, 3, 5))
    if masked:
        assert (w.triu(1) == 0).all()  # no weight on the future


@pytest.mark.parametrize("q_shape,k_shape,dv", [
    ((5, 8), (5, 8), 8),                   # one sequence, no batch
    ((3, 16), (7, 16), 4),                 # fewer queries than keys, values of another width
    ((4, 2, 6, 32), (4, 2, 6, 32), 32),    # batch and heads
    ((1, 1, 1, 4), (1, 1, 9, 4), 2),       # one query
])
def test_attention_matches_torch_on_more_shapes(q_shape, k_shape, dv):
    """The chapter says the test suite checks more shapes than its cell: here they are, with a custom scale."""
    g = torch.Generator().manual_seed(1)
    q, k = torch.randn(*q_shape, generator=g), torch.randn(*k_shape, generator=g)
    v = torch.randn(*k_shape[:-1], dv, generator=g)
    for scale in (None, 0.3):
        out, w = attention(q, k, v, scale=scale)
        assert torch.allclose(out, F.scaled_dot_product_attention(q, k, v, scale=scale), atol=1e-5)
        assert w.shape == (*q_shape[:-1], k_shape[-2]) and torch.allclose(w.sum(-1), torch.ones(w.shape[:-1]))


def test_attention_errors():
    x = torch.zeros(4, 8)
    with pytest.raises(ValueError, match="same last dimension"):
        attention(x, torch.zeros(4, 7), x)
    with pytest.raises(ValueError, match="same number of positions"):
        attention(x, x, torch.zeros(3, 8))
    with pytest.raises(TypeError, match="boolean"):
        attention(x, x, x, mask=torch.ones(4, 4))


@pytest.mark.parametrize("name,good,bad", [
    ("softmax_temperature", lambda z, T: torch.softmax(z / T, -1), lambda z, T: torch.softmax(z * T, -1)),
    ("attention_weights", lambda q, k: torch.softmax(q @ k.T / q.shape[-1] ** 0.5, -1),
     lambda q, k: torch.softmax(q @ k.T, -1)),
    ("causal_mask", lambda T: torch.ones(T, T, dtype=torch.bool).tril(),
     lambda T: torch.ones(T, T, dtype=torch.bool).triu()),
    ("attention_output", lambda q, k, v: torch.softmax(q @ k.T / q.shape[-1] ** 0.5, -1) @ v,
     lambda q, k, v: torch.softmax(q @ k.T / q.shape[-1] ** 0.5, -1) / v.sum()),
])
def test_attention_math_checks(name, good, bad, check_verdict):
    check_verdict(name, good, bad)


def _mha_pair(C, h, seed=0):
    from torch import nn
    g = torch.Generator().manual_seed(seed)
    ws = [torch.randn(C, C, generator=g) / C ** 0.5 for _ in range(4)]
    ref = nn.MultiheadAttention(C, h, bias=False, batch_first=True)
    with torch.no_grad():
        ref.in_proj_weight.copy_(torch.cat([w.T for w in ws[:3]]))
        ref.out_proj.weight.copy_(ws[3].T)
    return ws, ref


@pytest.mark.parametrize("C,h,masked", [(8, 1, False), (16, 4, True), (24, 8, False), (32, 2, True)])
def test_multi_head_attention_matches_torch(C, h, masked):
    from book.nn.attention import multi_head_attention
    ws, ref = _mha_pair(C, h)
    x = torch.randn(3, 7, C, generator=torch.Generator().manual_seed(1))
    mask = causal_mask(7) if masked else None
    ours, w = multi_head_attention(x, *ws, h, mask)
    with torch.no_grad():
        theirs, _ = ref(x, x, x, attn_mask=None if mask is None else ~mask)
    assert torch.allclose(ours, theirs, atol=1e-5) and w.shape == (3, h, 7, 7)
    assert torch.allclose(w.sum(-1), torch.ones(3, h, 7))
    # unbatched input works too
    assert torch.allclose(multi_head_attention(x[0], *ws, h, mask)[0], ours[0], atol=1e-6)


def test_one_head_is_sdpa_on_the_projections():
    from book.nn.attention import multi_head_attention
    ws, _ = _mha_pair(12, 1, seed=3)
    x = torch.randn(2, 5, 12)
    out, _ = multi_head_attention(x, ws[0], ws[1], ws[2], torch.eye(12), 1)
    assert torch.allclose(out, F.scaled_dot_product_attention(x @ ws[0], x @ ws[1], x @ ws[2]), atol=1e-5)


def test_multi_head_attention_is_permutation_equivariant_without_positions():
    from book.nn.attention import multi_head_attention
    ws, _ = _mha_pair(16, 4, seed=4)
    x = torch.randn(9, 16)
    perm = torch.randperm(9, generator=torch.Generator().manual_seed(0))
    out = multi_head_attention(x, *ws, 4)[0]
    assert torch.allclose(multi_head_attention(x[perm], *ws, 4)[0], out[perm], atol=1e-5)
    masked = multi_head_attention(x, *ws, 4, causal_mask(9))[0]
    assert not torch.allclose(multi_head_attention(x[perm], *ws, 4, causal_mask(9))[0], masked[perm], atol=1e-3)


def test_multi_head_attention_errors():
    from book.nn.attention import multi_head_attention
    w = torch.zeros(6, 6)
    with pytest.raises(ValueError, match="divisible"):
        multi_head_attention(torch.zeros(2, 6), w, w, w, w, 4)
    with pytest.raises(ValueError, match="w_k must have shape"):
        multi_head_attention(torch.zeros(2, 6), w, torch.zeros(6, 5), w, w, 2)


@pytest.mark.parametrize("name,good,bad", [
    ("score_std", lambda d, sq, sk: d ** 0.5 * sq * sk, lambda d, sq, sk: d * sq * sk),
    ("attention_flops", lambda tq, tk, dk, dv: 2 * tq * tk * (dk + dv), lambda tq, tk, dk, dv: 4 * tq * tk * dk),
    ("crossover_length", lambda C: 2 * C, lambda C: C),
    ("multi_head",
     lambda x, wq, wk, wv, wo, h: _mh_good(x, wq, wk, wv, wo, h),
     lambda x, wq, wk, wv, wo, h: _mh_good(x, wq, wk, wv, wo, 1)),     # ignores the heads
])
def test_new_attention_math_checks(name, good, bad, check_verdict):
    check_verdict(name, good, bad)


def _mh_good(x, wq, wk, wv, wo, h):
    from book.nn.attention import multi_head_attention
    return multi_head_attention(x, wq, wk, wv, wo, h)[0]
