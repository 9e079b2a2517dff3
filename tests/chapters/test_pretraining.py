"""book.lab.pretraining: split, downstream windows, masking, classifier, checkpoints (and the shipped one rebuilt)."""
import pickle

import pytest
import torch

from book import check, load_text
from book.check import raising
from book.data.text import CharVocab
from book.lab.pretraining import (
    RECIPE,
    TASK_PLAYS,
    GPTClassifier,
    build_checkpoint,
    finetune,
    heldout_mask,
    lm_val_loss,
    load_checkpoint,
    mask_tokens,
    masked_loss,
    play_spans,
    play_windows,
    pretraining_split,
    save_checkpoint,
)
from book.nn.gpt import GPT, GPTConfig

TEXT = load_text()
VOCAB = CharVocab(TEXT)


def test_play_spans_cover_the_text_in_order():
    spans = play_spans(TEXT)
    assert spans[0][1] == 0 and spans[-1][2] == len(TEXT)
    assert all(a[2] == b[1] for a, b in zip(spans, spans[1:]))
    assert TEXT[spans[3][1]:].startswith("SAMPSON:")          # Romeo and Juliet opens with Sampson
    with pytest.raises(ValueError, match="Tiny Shakespeare"):
        play_spans("not the corpus")


def test_heldout_mask_and_split():
    m = heldout_mask(100, chunk=10, every=5)
    assert m.tolist() == [(i // 10) % 5 == 2 for i in range(100)]
    ids = torch.arange(100)
    tr, va = pretraining_split(ids, 10, 5)
    assert len(tr) + len(va) == 100 and set(va.tolist()) == set(ids[m].tolist())
    with pytest.raises(ValueError, match="every >= 2"):
        heldout_mask(10, 5, 1)


def test_play_windows_test_set_never_seen_in_pretraining():
    x, y = play_windows(TEXT, VOCAB, "test", per_class=20, seed=0)
    assert x.shape == (20 * len(TASK_PLAYS), 64) and y.bincount().tolist() == [20] * len(TASK_PLAYS)
    held = heldout_mask(len(TEXT), RECIPE["chunk"], RECIPE["every"])
    ids = VOCAB.encode(TEXT)
    # every test window occurs in the text at a place that is wholly held out
    _, val_ids = pretraining_split(ids, RECIPE["chunk"], RECIPE["every"])
    val_text = VOCAB.decode(val_ids)
    for row in x[:: 7]:
        assert VOCAB.decode(row) in val_text
    xt, yt = play_windows(TEXT, VOCAB, "train", per_class=5, seed=1)
    assert xt.shape == (5 * len(TASK_PLAYS), 64)
    assert held.any()
    with pytest.raises(ValueError, match="split"):
        play_windows(TEXT, VOCAB, "val")
    with pytest.raises(KeyError, match="unknown plays"):
        play_windows(TEXT, VOCAB, "train", plays=("Hamlet",))
    with pytest.raises(ValueError, match="only"):
        play_windows(TEXT, VOCAB, "test", per_class=10**6)


def test_mask_tokens_rule_and_errors():
    x = torch.randint(0, 65, (200, 200))
    inp, lab = mask_tokens(x, 65, 65, generator=torch.Generator().manual_seed(0))
    chosen = lab != -100
    assert abs(chosen.float().mean() - 0.15) < 0.01
    assert (lab[chosen] == x[chosen]).all() and (inp[~chosen] == x[~chosen]).all()
    assert abs((inp[chosen] == 65).float().mean() - 0.8) < 0.02
    with pytest.raises(TypeError, match="long"):
        mask_tokens(x.float(), 65, 65)
    with pytest.raises(ValueError, match="probability"):
        mask_tokens(x, 65, 65, p=1.5)
    logits = torch.randn(2, 3, 5)
    labels = torch.tensor([[1, -100, 2], [-100, -100, 4]])
    ref = torch.nn.functional.cross_entropy(logits[labels != -100], labels[labels != -100])
    assert torch.allclose(masked_loss(logits, labels), ref)


def test_non_causal_attention_sees_the_future():
    torch.manual_seed(0)
    for causal in (True, False):
        m = GPT(GPTConfig(10, 8, 1, 2, 16, causal=causal)).eval()
        x = torch.randint(0, 10, (1, 8))
        x2 = x.clone()
        x2[0, -1] = (x[0, -1] + 1) % 10
        same_first = torch.allclose(m(x)[0, 0], m(x2)[0, 0])
        assert same_first == causal


def test_classifier_features_and_errors():
    body = GPT(GPTConfig(len(VOCAB), 64, 1, 2, 16))
    clf = GPTClassifier(body, 6)
    assert clf(torch.randint(0, len(VOCAB), (3, 20))).shape == (3, 6)
    with pytest.raises(ValueError, match="block_size"):
        clf(torch.zeros(1, 65, dtype=torch.long))
    with pytest.raises(ValueError, match="long"):
        clf(torch.zeros(1, 5))


def test_finetune_probe_freezes_body_and_full_does_not():
    torch.manual_seed(0)
    body = GPT(GPTConfig(len(VOCAB), 64, 1, 2, 16))
    before = body.tok.weight.clone()
    data = play_windows(TEXT, VOCAB, "train", per_class=4, seed=0)
    clf, hist = finetune(body, data, data, len(TASK_PLAYS), steps=4, mode="probe", log_every=2)
    assert torch.equal(body.tok.weight, before) and len(hist.val_acc) == 2
    clf, _ = finetune(body, data, data, len(TASK_PLAYS), steps=2, mode="full", log_every=2)
    assert not torch.equal(body.tok.weight, before)
    with pytest.raises(ValueError, match="mode"):
        finetune(body, data, data, 6, steps=1, mode="lora")


def test_checkpoint_roundtrip_and_weights_only(tmp_path):
    m = GPT(GPTConfig(len(VOCAB), 16, 1, 2, 16))
    p = save_checkpoint(m, tmp_path / "m.pt", VOCAB, val_loss=1.0, note="x")
    m2, v2, meta = load_checkpoint(p)
    assert v2.chars == VOCAB.chars and meta == {"val_loss": 1.0, "note": "x"}
    assert m2.head.weight is m2.tok.weight                      # tying survives the round trip
    for k, v in m.state_dict().items():
        assert torch.equal(v, m2.state_dict()[k])
    with pytest.raises(TypeError, match="numbers or strings"):
        save_checkpoint(m, tmp_path / "bad.pt", VOCAB, obj=object())

    class Trap:
        def __reduce__(self):
            return (print, ("pwned",))
    torch.save({"config": {}, "state": {}, "meta": Trap()}, tmp_path / "trap.pt")
    with pytest.raises(pickle.UnpicklingError):
        load_checkpoint(tmp_path / "trap.pt")


def test_shipped_checkpoint_loads_and_matches_its_record():
    model, vocab, meta = load_checkpoint()
    assert vocab.chars == VOCAB.chars and meta["objective"] == "causal"
    _, val_ids = pretraining_split(VOCAB.encode(TEXT), RECIPE["chunk"], RECIPE["every"])
    assert abs(lm_val_loss(model, val_ids, model.cfg.block_size) - meta["val_loss"]) < 0.01
    assert meta["recipe"] == str(sorted(RECIPE.items()))


def test_rebuilding_the_shipped_checkpoint_reproduces_it(tmp_path):
    """The shipped file is what `python -m book.lab.pretraining` makes (about 1-2 minutes on one CPU thread)."""
    meta = build_checkpoint(tmp_path / "rebuilt.pt")
    _, _, shipped = load_checkpoint()
    assert abs(meta["val_loss"] - shipped["val_loss"]) < 0.03, (meta, shipped)
    rebuilt, _, _ = load_checkpoint(tmp_path / "rebuilt.pt")
    original, _, _ = load_checkpoint()
    # same recipe and seed on the same torch: the weights agree closely (floating-point order may differ)
    diffs = [(a - b).abs().max().item() for a, b in zip(rebuilt.parameters(), original.parameters())]
    assert max(diffs) < 0.05 or abs(meta["val_loss"] - shipped["val_loss"]) < 0.005


def test_checks_accept_solutions_and_reject_wrong_ones():
    import torch.nn.functional as F
    with raising():
        check.bert_corrupt(lambda x, c, r, m, ri: torch.where(c & (r < 0.8), torch.full_like(x, m),
                                                              torch.where(c & (r < 0.9), ri, x)))
        check.causal_pairs(lambda ids: (ids[:-1], ids[1:]))
        check.masked_ce(lambda lg, lb: F.cross_entropy(lg[lb != -100], lb[lb != -100]))
        check.probe_params(lambda C, K: C * K + K)
        check.leaked_fraction(lambda s, b, h: (~h[s[:, None] + torch.arange(b)]).any(1).float().mean().item())
        for name, wrong in [("bert_corrupt", lambda x, c, r, m, ri: torch.where(c, torch.full_like(x, m), x)),
                            ("causal_pairs", lambda ids: (ids[1:], ids[:-1])),
                            ("masked_ce", lambda lg, lb: F.cross_entropy(lg.reshape(-1, lg.shape[-1]),
                                                                        lb.reshape(-1).clamp(min=0))),
                            ("probe_params", lambda C, K: C * K),
                            ("leaked_fraction", lambda s, b, h: 0.0)]:
            with pytest.raises(check.CheckFailed):
                getattr(check, name)(wrong)
