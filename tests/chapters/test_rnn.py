import math

import pytest
import torch
from torch import nn

from book import check
from book.data.text import CharVocab, batch_sampler, split
from book.nn.losses import lm_loss
from book.nn.rnn import CharLSTM, GRUCell, LSTMCell, RNNCell, gradient_through_time, unroll


@pytest.mark.parametrize("ours,ref", [(RNNCell, nn.RNN), (LSTMCell, nn.LSTM), (GRUCell, nn.GRU)])
def test_cells_match_torch(ours, ref):
    torch.manual_seed(0)
    r = ref(4, 6, batch_first=True)
    cell = ours(4, 6).copy_from(r)
    xs = torch.randn(2, 9, 4)
    out, _ = unroll(cell, xs)
    assert torch.allclose(out, r(xs)[0], atol=1e-6)
    cell_ref = getattr(nn, ref.__name__ + "Cell")(4, 6)
    ours(4, 6).copy_from(cell_ref)  # *Cell modules have no _l0 suffix


def test_cell_errors():
    cell = LSTMCell(4, 6)
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 4\)"):
        cell(torch.zeros(2, 5), (torch.zeros(2, 6), torch.zeros(2, 6)))
    with pytest.raises(ValueError, match="state must have shape"):
        RNNCell(4, 6)(torch.zeros(2, 4), torch.zeros(3, 6))
    with pytest.raises(ValueError, match="does not match"):
        RNNCell(4, 6).copy_from(nn.RNN(4, 7))
    with pytest.raises(ValueError, match="kind must be"):
        gradient_through_time("transformer")


def test_lstm_keeps_gradients_longer_than_rnn():
    for seed in range(3):
        rnn = gradient_through_time("rnn", seed=seed).flip(0)
        lstm = gradient_through_time("lstm", seed=seed).flip(0)
        assert lstm[25] / lstm[0] > 100 * rnn[25] / rnn[0]


def test_vocab_sampler_and_model():
    v = CharVocab("hello world")
    assert v.decode(v.encode("low")) == "low" and len(v) == 8
    with pytest.raises(KeyError, match="not in the vocabulary"):
        v.encode("xyz")
    ids = v.encode("hello world" * 20)
    tr, va = split(ids)
    assert len(tr) == int(0.9 * len(ids))
    x, y = batch_sampler(tr, 8, 5, torch.Generator().manual_seed(0))(0)
    assert x.shape == y.shape == (5, 8) and torch.equal(x[:, 1:], y[:, :-1])
    with pytest.raises(ValueError, match="too short"):
        batch_sampler(ids[:5], 8, 2, torch.Generator())
    m = CharLSTM(len(v), 16)
    logits = m(x)
    assert logits.shape == (5, 8, len(v)) and lm_loss(logits, y) > 0
    out = m.generate(v.encode("he"), 10, 0.8, torch.Generator().manual_seed(0))
    assert out.shape == (10,) and m.training
    with pytest.raises(ValueError, match="temperature"):
        m.generate(v.encode("he"), 3, 0)
    with pytest.raises(ValueError, match="token ids"):
        m(torch.zeros(2, 3))


def test_lstm_learns_a_repeating_pattern():
    v = CharVocab("abcd")
    ids = v.encode("abcd" * 200)
    torch.manual_seed(0)
    m = CharLSTM(4, 16)
    opt = torch.optim.Adam(m.parameters(), lr=0.02)
    get = batch_sampler(ids, 12, 8, torch.Generator().manual_seed(0))
    for step in range(60):
        x, y = get(step)
        loss = lm_loss(m(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1
    assert v.decode(m.generate(v.encode("ab"), 6, 0.1, torch.Generator().manual_seed(0))) == "cdabcd"


def _lstm(x, h, c, Wi, Wh, bi, bh):
    i, f, g, o = (x @ Wi.T + bi + h @ Wh.T + bh).chunk(4, 1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def _gru(x, h, Wi, Wh, bi, bh, reset_after=True):
    xr, xz, xn = (x @ Wi.T + bi).chunk(3, 1)
    hr, hz, hn = (h @ Wh.T + bh).chunk(3, 1)
    r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
    n = torch.tanh(xn + r * hn) if reset_after else torch.tanh(xn + hn)
    return (1 - z) * n + z * h


@pytest.mark.parametrize("name,good,bad", [
    ("rnn_step", lambda x, h, Wi, Wh, bi, bh: torch.tanh(x @ Wi.T + bi + h @ Wh.T + bh),
     lambda x, h, Wi, Wh, bi, bh: torch.relu(x @ Wi.T + bi + h @ Wh.T + bh)),
    ("lstm_step", _lstm, lambda x, h, c, Wi, Wh, bi, bh: _lstm(x, h, torch.zeros_like(c), Wi, Wh, bi, bh)),
    ("gru_step", _gru, lambda *a: _gru(*a, reset_after=False)),
    ("perplexity", math.exp, lambda loss: 2 ** loss),
])
def test_rnn_checks(name, good, bad, monkeypatch):
    monkeypatch.setenv("BOOK_STRICT", "1")
    getattr(check, name)(good)
    with pytest.raises(check.CheckFailed):
        getattr(check, name)(bad)
