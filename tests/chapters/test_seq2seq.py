"""The seq2seq chapter: additive attention against a reference computation, the reversal data, the
encoder-decoder (its one-call decoder equals stepping), scores, baselines, the live view and the checks."""
import math

import pytest
import torch

from book.check._reference import _copy_acc_ref, _p_seen_ref
from book.lab.seq2seq import (
    EOS,
    PAD,
    VOCAB,
    AlignmentMonitor,
    Seq2Seq,
    alignment_chance,
    alignment_offsets,
    by_length_table,
    copy_baseline,
    decode,
    encode,
    make_reversal,
    make_splits,
    majority_baseline,
    reversal_alignment,
    scores,
    teacher_forced_accuracy,
    train_seq2seq,
)
from book.nn.attention import additive_attention, attention


def _loop_reference(s, H, Wq, Wk, v, lengths):
    B, S, D = H.shape
    w, c = torch.zeros(B, S, dtype=torch.float64), torch.zeros(B, D, dtype=torch.float64)
    for b in range(B):
        e = torch.stack([v @ torch.tanh(Wq @ s[b] + Wk @ H[b, j]) for j in range(lengths[b])])
        w[b, :lengths[b]] = torch.softmax(e, 0)
        c[b] = (w[b, :, None] * H[b]).sum(0)
    return c, w


@pytest.mark.parametrize("B,S,D,A", [(1, 1, 2, 3), (3, 6, 4, 5), (2, 9, 8, 2)])
def test_additive_attention_matches_the_formula_written_out(B, S, D, A):
    g = torch.Generator().manual_seed(B * 100 + S)
    s, H = torch.randn(B, D, generator=g, dtype=torch.float64), torch.randn(B, S, D, generator=g, dtype=torch.float64)
    Wq, Wk = (torch.randn(A, D, generator=g, dtype=torch.float64) for _ in range(2))
    v = torch.randn(A, generator=g, dtype=torch.float64)
    lengths = torch.randint(1, S + 1, (B,), generator=g).tolist()
    mask = torch.arange(S) < torch.tensor(lengths)[:, None]
    ctx, w = additive_attention(s, H, Wq, Wk, v, mask)
    ref_c, ref_w = _loop_reference(s, H, Wq, Wk, v, lengths)
    assert torch.allclose(w, ref_w, atol=1e-12) and torch.allclose(ctx, ref_c, atol=1e-12)
    assert (w[~mask] == 0).all() and torch.allclose(w.sum(1), torch.ones(B, dtype=torch.float64))
    # projected keys computed once give the same
    assert torch.allclose(additive_attention(s, H, Wq, Wk, v, mask, H @ Wk.T)[1], w)


def test_additive_attention_errors():
    s, H = torch.zeros(2, 3), torch.zeros(2, 4, 3)
    W, v = torch.zeros(5, 3), torch.zeros(5)
    with pytest.raises(ValueError, match="expected query"):
        additive_attention(s[0], H, W, W, v)
    with pytest.raises(ValueError, match="do not fit"):
        additive_attention(s, H, W, torch.zeros(5, 2), v)
    with pytest.raises(ValueError, match="do not fit"):
        additive_attention(s, H, W, W, torch.zeros(4))
    with pytest.raises(TypeError, match="boolean"):
        additive_attention(s, H, W, W, v, torch.ones(2, 4))


def test_reversal_data():
    d = make_reversal(50, 2, 6, seed=0, width=8)
    assert d.src.shape == (50, 8) and d.tgt.shape == (50, 9)
    assert d.lengths.min() >= 2 and d.lengths.max() <= 6
    for src, tgt in zip(d.src, d.tgt):
        assert decode(tgt) == decode(src)[::-1]
        assert int((tgt == EOS).sum()) == 1
    assert encode("abc", 5)[3:] == [PAD, PAD] and decode(encode("abc", 5)) == "abc"
    with pytest.raises(ValueError, match="min_len"):
        make_reversal(3, 4, 2, 0)
    with pytest.raises(ValueError, match="width"):
        make_reversal(3, 2, 6, 0, width=4)
    with pytest.raises(ValueError, match="longer"):
        encode("abcdef", 3)


def test_splits_hold_no_training_string():
    tr, va, te = make_splits(3000, 300, 300, 1, 4)
    seen = {tuple(r) for r in tr.src.tolist()}
    assert not any(tuple(r) in seen for r in va.src.tolist() + te.src.tolist())
    assert len(va) < 300          # short strings repeat: some were dropped


def test_one_call_decoder_equals_stepping_and_greedy_shapes():
    torch.manual_seed(0)
    d = make_reversal(6, 1, 7, seed=1)
    for att in (False, True):
        m = Seq2Seq(VOCAB, 8, 12, attention=att)
        logits = m(d.src, d.tgt)
        states, last, mask = m.encode(d.src)
        keys = states @ m.W_k.T
        y, s, out = torch.full((6,), 1), last, []
        for t in range(d.tgt.shape[1]):
            o, s, _ = m.step(y, s, states, last, mask, keys)
            out.append(o)
            y = d.tgt[:, t]
        assert torch.allclose(logits, torch.stack(out, 1), atol=1e-5)
        ids, w = m.greedy(d.src, 5)
        assert ids.shape == (6, 5) and m.training
        if att:
            assert w.shape == (6, 5, 7) and (w.masked_select(~mask[:, None]) == 0).all()
        else:
            assert w is None
    # the encoder's last state is the state at each sequence's own last letter, not after the padding
    m = Seq2Seq(VOCAB, 8, 12, attention=False)
    one = make_reversal(1, 3, 3, seed=2, width=7)
    _, last_padded, _ = m.encode(one.src)
    _, last_short, _ = m.encode(one.src[:, :3])
    assert torch.allclose(last_padded, last_short, atol=1e-6)


def test_scores_baselines_and_alignment():
    d = make_reversal(4000, 1, 6, seed=3)
    perfect = scores(d.tgt.clone(), d)
    assert perfect["token"] == 1.0 and perfect["exact"] == 1.0
    copy = scores(copy_baseline(d), d)
    for L, (tok, _) in copy["by_length"].items():
        assert abs(tok - _copy_acc_ref(L, 12)) < 0.03
    maj = scores(majority_baseline(d, d), d)
    assert 0.15 < maj["token"] < 0.45 and maj["exact"] < 0.05     # length 1: 1 in 12 right
    tok, ex = by_length_table(copy, [1, 2, 99])
    assert tok[0] == 1.0 and math.isnan(tok[2])
    # weights on the exact anti-diagonal: alignment 1; uniform weights: argmax 0 always
    N, S = len(d), d.src.shape[1]
    anti = torch.zeros(N, S + 1, S)
    for i, L in enumerate(d.lengths.tolist()):
        anti[i, torch.arange(L), L - 1 - torch.arange(L)] = 1
    assert reversal_alignment(anti, d) == 1.0
    shifted = torch.roll(anti, 1, dims=2)
    assert reversal_alignment(shifted, d) < 0.5 and reversal_alignment(shifted, d, within=1) > 0.8
    assert alignment_offsets(anti, d) == {0: 1.0}
    offs = alignment_offsets(shifted, d)            # one position later, except where it runs off the end
    assert abs(sum(offs.values()) - 1) < 1e-12 and offs[1] > 0.5 and set(offs) <= {-6, -5, -4, -3, -2, -1, 0, 1}
    assert abs(offs[1] - reversal_alignment(shifted, d, within=1) + reversal_alignment(shifted, d)
               + offs.get(-1, 0)) < 1e-12
    # chance: one length L = 3, within 0: 1/3; within 1: (2 + 3 + 2) / 9
    three = make_reversal(5, 3, 3, seed=0)
    assert abs(alignment_chance(three) - 1 / 3) < 1e-12
    assert abs(alignment_chance(three, within=1) - 7 / 9) < 1e-12


def test_p_seen_matches_sampling():
    tr = make_reversal(2000, 1, 2, seed=0)
    seen = {tuple(r) for r in tr.src.tolist()}
    cand = make_reversal(2000, 2, 2, seed=9, width=2)
    share = sum(tuple(r) in seen for r in cand.src.tolist()) / 2000
    assert abs(share - _p_seen_ref(2, 2000, 2, 12)) < 0.05


def test_attention_learns_short_reversals_and_the_monitor_replays():
    tr, va, _ = make_splits(3000, 100, 10, 2, 5)
    mon = AlignmentMonitor(va.src[0])
    with pytest.raises(RuntimeError, match="nothing to replay"):
        mon.replay()
    run = train_seq2seq(tr, va, attention=True, seed=0, steps=200, batch=32, lr=1e-2, emb=16, hidden=32,
                        log_every=100, on_log=mon.update)
    assert run.step == [100, 200] and len(mon.frames) == 2
    assert run.val_exact[-1] > 0.5                      # seeds 0-4: 0.7 to 1.0
    assert teacher_forced_accuracy(run.model, va) > 0.8
    assert mon.replay(max_frames=2) is not None
    flat = train_seq2seq(tr, va, attention=False, seed=0, steps=1, log_every=1)
    with pytest.raises(ValueError, match="attention=True"):
        AlignmentMonitor(va.src[0]).update(flat, flat.model)
    with pytest.raises(ValueError, match="1-D"):
        AlignmentMonitor(va.src[:2])


def _additive(s, H, Wq, Wk, v):
    return torch.softmax(torch.tanh((s @ Wq.T)[:, None] + H @ Wk.T) @ v, 1)


def _dot(s, H, mask, use_mask=True):
    scores = (H @ s[:, :, None]).squeeze(-1)
    if use_mask:
        scores = scores.masked_fill(~mask, float("-inf"))
    w = scores.softmax(1)
    return (w[:, None] @ H).squeeze(1), w


def test_dot_attention_check_reference_is_the_books_attention():
    g = torch.Generator().manual_seed(0)
    s, H = torch.randn(2, 4, generator=g), torch.randn(2, 5, 4, generator=g)
    mask = torch.arange(5) < torch.tensor([[5], [2]])
    out, w = attention(s[:, None], H, H, mask[:, None], scale=1.0)
    c, w2 = _dot(s, H, mask)
    assert torch.allclose(out[:, 0], c, atol=1e-6) and torch.allclose(w[:, 0], w2, atol=1e-6)


@pytest.mark.parametrize("name,good,bad", [
    ("additive_weights", _additive,
     lambda s, H, Wq, Wk, v: torch.softmax(((s @ Wq.T)[:, None] + H @ Wk.T) @ v, 1)),   # no tanh
    ("dot_attention", _dot, lambda s, H, mask: _dot(s, H, mask, use_mask=False)),
    ("copy_accuracy", _copy_acc_ref, lambda L, V: (L / V + 1) / (L + 1)),
    ("p_seen", _p_seen_ref, lambda L, n, k, V: n / (k * V ** L)),
])
def test_seq2seq_checks(name, good, bad, check_verdict):
    check_verdict(name, good, bad)
