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
