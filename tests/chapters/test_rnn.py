import math

import pytest
import torch
from torch import nn

from book.data.text import CharVocab, batch_sampler, split, windows
from book.nn.losses import lm_loss
from book.nn.rnn import CharLSTM, GRUCell, LSTMCell, NGram, RNNCell, gradient_through_time, unroll


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
    with pytest.raises(ValueError, match="no forget gate"):
        gradient_through_time("gru", forget_bias=1.0)


def test_lstm_keeps_gradients_longer_than_rnn_but_both_vanish_without_a_forget_bias():
    for seed in range(5):
        rnn = gradient_through_time("rnn", seed=seed).flip(0)
        lstm = gradient_through_time("lstm", seed=seed).flip(0)
        kept = gradient_through_time("lstm", seed=seed, forget_bias=3.0).flip(0)
        assert lstm[25] / lstm[0] > 10 * rnn[25] / rnn[0]      # seeds 0-7: 53 to 2e4 times
        assert lstm[49] < 1e-8 and rnn[49] < 1e-8               # seeds 0-7: at most 1e-10
        assert kept[49] > 1e-2                                  # seeds 0-7: 0.08 to 0.44
        assert torch.allclose(kept[0], lstm[0], rtol=0.5)       # the last step is hardly changed


def test_forget_bias_touches_only_the_forget_gate_rows():
    torch.manual_seed(0)
    a = LSTMCell(3, 4)
    b = LSTMCell(3, 4).copy_from(a)
    with torch.no_grad():
        b.bias_ih[4:8] += 2.0
    x, h, c = torch.randn(2, 3), torch.zeros(2, 4), torch.ones(2, 4)
    (_, ca), (_, cb) = a(x, (h, c)), b(x, (h, c))
    # a larger forget gate keeps more of c = 1: the new cell state is larger everywhere
    assert (cb > ca).all()


def test_windows_cover_the_text_once():
    ids = torch.arange(23)
    x, y = windows(ids, 5)
    assert x.shape == y.shape == (4, 5)
    assert torch.equal(x.flatten(), ids[:20]) and torch.equal(y.flatten(), ids[1:21])
    with pytest.raises(ValueError, match="too short"):
        windows(ids[:5], 5)


def test_ngram_matches_counting_by_hand():
    ids = torch.tensor([0, 1, 0, 1, 1, 0, 2, 0, 1, 0])
    ng = NGram(ids, 2, 3)
    # unigram with Witten-Bell: (N(c) + T * 1/V) / (N + T), N = 10 tokens, T = 3 distinct
    counts = torch.bincount(ids, minlength=3).double()
    uni = (counts + 3 / 3) / (10 + 3)
    seq = torch.tensor([1, 0, 2])
    p = ng.probabilities(seq)
    assert p.shape == (2, 2) and torch.allclose(p[0], uni[[0, 2]])
    # bigram: after 1 the training text has 0 three times and 1 once (N = 4, T = 2)
    assert torch.isclose(p[1, 0], (3 + 2 * uni[0]) / (4 + 2))
    # after 0 it has 1 three times, 2 once (the final 0 has no successor): N = 4, T = 2
    assert torch.isclose(p[1, 1], (1 + 2 * uni[2]) / (4 + 2))
    # a context never seen keeps the lower order; every order is a distribution
    assert torch.isclose(NGram(ids, 2, 4).probabilities(torch.tensor([3, 0]))[1, 0],
                         NGram(ids, 2, 4).probabilities(torch.tensor([3, 0]))[0, 0])
    full = torch.stack([ng.probabilities(torch.tensor([a, b]))[:, 0] for a in range(3) for b in range(3)])
    assert torch.allclose(full.view(3, 3, 2).sum(1), torch.ones(3, 2, dtype=torch.float64))
    ce = ng.cross_entropy(seq)
    assert len(ce) == 2 and abs(ce[1] - float(-p[1].log().mean())) < 1e-12


def test_ngram_errors():
    ids = torch.tensor([0, 1, 0, 1])
    with pytest.raises(ValueError, match="at least 1"):
        NGram(ids, 0, 2)
    with pytest.raises(ValueError, match="int64"):
        NGram(ids, 20, 65)
    with pytest.raises(ValueError, match="too short"):
        NGram(ids, 4, 2)
    with pytest.raises(ValueError, match="at least 2 tokens"):
        NGram(ids, 2, 2).probabilities(torch.tensor([1]))


def test_ngram_on_shakespeare_orders_improve_then_turn():
    from book import load_text
    text = load_text()
    v = CharVocab(text)
    train, rest = split(v.encode(text))
    val, test = split(rest, 0.5)
    ce = NGram(train, 6, v_len := len(v)).cross_entropy(val)
    assert abs(ce[0] - 3.333) < 0.01 and ce[0] < math.log(v_len)       # letter frequencies
    assert ce[0] > ce[1] > ce[2] > ce[3] > ce[4] < ce[5]                 # order 5 is best on validation


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
def test_rnn_checks(name, good, bad, check_verdict):
    check_verdict(name, good, bad)


# ---------------------------------------------------------------------------- book/lab/rnn.py
def test_gradient_flow_explorer_draws_the_forget_bias_effect():
    from book.lab.rnn import GradientFlowExplorer
    ex = GradientFlowExplorer(distance=30)
    last = {b: ex.draw(forget_bias=b) for b in (0.0, 1.0, 3.0)}
    assert set(last[1.0]) == {"RNN", "GRU", "LSTM, bias 0", "LSTM, bias +1"}
    assert last[0.0]["LSTM, bias +0"] == pytest.approx(last[0.0]["LSTM, bias 0"])   # the same cell
    assert last[0.0]["LSTM, bias +0"] < last[1.0]["LSTM, bias +1"] < last[3.0]["LSTM, bias +3"]
    assert len(ex.curves()["RNN"]) == 30
    assert ex.player("forget_bias", [0.0, 2.0]) is not None
    with pytest.raises(ValueError, match="distance"):
        GradientFlowExplorer(distance=1)
    with pytest.raises(ValueError, match="scale"):
        GradientFlowExplorer(scale=0)


def test_streams_and_stream_loss():
    from book.lab.rnn import stream_loss, streams
    ids = torch.arange(23)
    s = streams(ids, 4)
    assert s.shape == (4, 5) and torch.equal(s[1], torch.arange(5, 10))
    with pytest.raises(ValueError, match="too short"):
        streams(ids, 20)
    torch.manual_seed(0)
    m = CharLSTM(23, 8)
    # chunked reading with the state carried equals reading each stream in one go
    x = streams(ids, 2)
    logits = m(x[:, :-1])
    whole = float(lm_loss(logits, x[:, 1:]).detach())
    assert stream_loss(m, ids, n_streams=2, chunk=3) == pytest.approx(whole, rel=1e-5)


def test_tbptt_trains_and_checks_its_arguments():
    from book.lab.rnn import stream_loss, train_tbptt
    v = CharVocab("abcd")
    ids = v.encode("abcd" * 400)
    m = train_tbptt(ids, 4, vocab=4, hidden=16, batch_tokens=16, updates=60, lr=0.03, seed=0)
    assert stream_loss(m, ids[:200], n_streams=2) < 0.3          # the cycle is learned
    m2 = train_tbptt(ids, 4, vocab=4, hidden=16, batch_tokens=16, updates=2, lr=0.03, seed=0, carry=False)
    assert isinstance(m2, CharLSTM)
    with pytest.raises(ValueError, match="divide"):
        train_tbptt(ids, 3, vocab=4, hidden=8, batch_tokens=16, updates=2, lr=0.01, seed=0)
    with pytest.raises(ValueError, match="do not fit"):
        train_tbptt(ids, 16, vocab=4, hidden=8, batch_tokens=16, updates=200, lr=0.01, seed=0)


@pytest.mark.parametrize("name,good,bad", [
    ("forget_bias_for", lambda keep, k: math.log(keep ** (1 / k) / (1 - keep ** (1 / k))),
     lambda keep, k: math.log(keep / (1 - keep))),
    ("char_lstm_params", lambda V, H, L: V * H + L * 4 * (2 * H * H + 2 * H) + H * V + V,
     lambda V, H, L: V * H + L * 4 * (2 * H * H + H) + H * V + V),
])
def test_new_rnn_checks(name, good, bad, check_verdict):
    check_verdict(name, good, bad)


# ---------------------------------------------------------------- dropout in recurrent networks
def test_locked_dropout_keeps_one_mask_per_sequence():
    from book.lab.rnn import locked_dropout
    torch.manual_seed(0)
    x = torch.ones(64, 20, 32)
    y = locked_dropout(x, 0.25)
    kept = y != 0
    assert torch.equal(kept, kept[:, :1].expand_as(kept))            # the same units at every step
    assert torch.allclose(y[kept], torch.full_like(y[kept], 1 / 0.75))  # rescaled like nn.Dropout
    assert abs((~kept[:, 0]).float().mean().item() - 0.25) < 0.05    # a share p dropped
    # a fresh mask per step (nn.Dropout) drops different units at different steps
    fresh = nn.functional.dropout(x, 0.25) != 0
    assert not torch.equal(fresh, fresh[:, :1].expand_as(fresh))
    assert torch.equal(locked_dropout(x, 0.25, training=False), x)
    assert torch.equal(locked_dropout(x, 0.0), x)
    big = locked_dropout(torch.ones(4000, 3, 8), 0.5)
    assert big.mean().item() == pytest.approx(1.0, abs=0.05)         # the expected value is kept
    with pytest.raises(ValueError, match="p must be"):
        locked_dropout(x, 1.0)
    with pytest.raises(ValueError, match="batch, time, features"):
        locked_dropout(torch.ones(3, 4), 0.1)


@pytest.mark.parametrize("variational", [False, True])
def test_dropout_char_lstm_is_the_plain_model_without_dropout(variational):
    from book.lab.rnn import DropoutCharLSTM
    torch.manual_seed(0)
    ours = DropoutCharLSTM(11, 16, p=0.4, variational=variational)
    plain = CharLSTM(11, 16)
    plain.load_state_dict(ours.state_dict())
    x = torch.randint(0, 11, (3, 9))
    ours.eval()
    assert torch.allclose(ours(x), plain(x), atol=1e-6)               # eval: no dropout anywhere
    ours.train()
    assert not torch.allclose(ours(x), plain(x), atol=1e-3)           # training: dropped
    zero = DropoutCharLSTM(11, 16, p=0.0, variational=variational)
    zero.load_state_dict(ours.state_dict())
    assert torch.allclose(zero(x), plain(x), atol=1e-6)
    logits, state = ours(x, return_state=True)
    assert logits.shape == (3, 9, 11) and state[0].shape == (1, 3, 16)


def test_dropout_char_lstm_drops_only_non_recurrent_connections():
    from book.lab.rnn import DropoutCharLSTM
    torch.manual_seed(0)
    m = DropoutCharLSTM(7, 8, layers=2, p=0.3)
    assert m.lstm.dropout == 0.3                                      # between stacked layers
    assert DropoutCharLSTM(7, 8, layers=1, p=0.3).lstm.dropout == 0   # nn.LSTM warns otherwise
    # the recurrent path is untouched: with the input and output masks fixed by the seed, the
    # model equals nn.LSTM run on the masked embedding (the LSTM's own step is PyTorch's)
    m = DropoutCharLSTM(7, 8, p=0.5).train()
    x = torch.randint(0, 7, (2, 5))
    torch.manual_seed(1)
    out = m(x)
    torch.manual_seed(1)
    h, _ = m.lstm(nn.functional.dropout(m.emb(x), 0.5))
    assert torch.allclose(out, m.head(nn.functional.dropout(h, 0.5)), atol=1e-6)
    with pytest.raises(ValueError, match="p must be"):
        DropoutCharLSTM(7, 8, p=-0.1)
    with pytest.raises(ValueError, match="token ids"):
        m(torch.zeros(2, 5))


def test_stream_loss_reads_at_most_chunks():
    from book.lab.rnn import stream_loss, streams
    torch.manual_seed(0)
    m, ids = CharLSTM(23, 8), torch.randint(0, 23, (400,))
    assert stream_loss(m, ids, n_streams=2, chunk=10, chunks=100) == stream_loss(m, ids, n_streams=2, chunk=10)
    x = streams(ids, 2)[:, :31]                      # three chunks of 10, and the last target
    whole = float(lm_loss(m(x[:, :-1]), x[:, 1:]).detach())
    assert stream_loss(m, ids, n_streams=2, chunk=10, chunks=3) == pytest.approx(whole, rel=1e-5)
    with pytest.raises(ValueError, match="chunks must be"):
        stream_loss(m, ids, chunks=0)
