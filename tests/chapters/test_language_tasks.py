"""book.lab.language_tasks: SQuAD metrics, the QA data and span head, reviews and the padding mask,
the toy translation pair, chrF and BLEU, the views; and the chapter's checks."""
import math

import matplotlib
import pytest
import torch

from book.lab import language_tasks as lt
from book.lab.seq2seq import EOS, PAD, Seq2Seq
from book.nn.gpt import GPT, GPTConfig

matplotlib.use("Agg")


# ----------------------------------------------------------------------------- SQuAD's metrics
def test_normalisation_and_exact_match():
    assert lt.normalize_answer("  The Red, hen!  ") == "red hen"
    assert lt.normalize_answer("an apple and a theme") == "apple and theme"   # whole words only
    assert lt.squad_em("Red hen", "a red hen") == 1.0
    assert lt.squad_em("hen", ["a pig", "the hen"]) == 1.0                  # best of several truths
    assert lt.squad_em("red", "a red hen") == 0.0
    with pytest.raises(ValueError, match="at least one"):
        lt.squad_em("x", [])


def test_token_f1_by_hand():
    assert lt.squad_f1("hen", "a red hen") == pytest.approx(2 / 3)          # P 1, R 1/2
    assert lt.squad_f1("red hen. tom", "a red hen") == pytest.approx(0.8)   # P 2/3, R 1
    assert lt.squad_f1("hen hen", "a hen") == pytest.approx(2 / 3)          # multiset: P 1/2, R 1
    assert lt.squad_f1("a pig", "a red hen") == 0.0
    assert lt.squad_f1("the", "a") == 1.0                                   # both normalise to empty
    assert lt.squad_f1("tom", "a") == 0.0
    assert lt.squad_f1("x", ["y", "x z"]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        lt.squad_f1("x", [])


# ----------------------------------------------------------------------------- QA data and model
def test_make_qa_spans_distractors_and_lengths():
    data = lt.make_qa(300, seed=3)
    assert len(data) == 300 and max(len(e.text) for e in data) <= 64
    para = sum(e.paraphrased for e in data) / len(data)
    assert 0.4 < para < 0.6
    for e in data:
        assert e.text[e.start:e.end + 1] == e.answer and e.start >= e.context_start
        facts = [f.split() for f in e.passage.rstrip(".").split(". ")]
        assert len(facts) == 2 and facts[0][0] == facts[1][0] == e.question.split()[2]
        assert facts[0][1] != facts[1][1]                       # only the verb tells them apart
    assert [e.text for e in lt.make_qa(5, 3)] == [e.text for e in data[:5]]
    assert all(not e.paraphrased for e in lt.make_qa(20, 1, paraphrase=0.0))
    with pytest.raises(ValueError, match="share"):
        lt.make_qa(3, 0, paraphrase=1.5)


def test_encode_qa_pads_to_the_longest_and_refuses_too_long():
    class V:
        def encode(self, s):
            return torch.tensor([ord(c) for c in s])
    data = lt.make_qa(4, 0)
    x, y = lt.encode_qa(data, V(), 64)
    assert x.shape == (4, max(len(e.text) for e in data)) and y.tolist()[0] == [data[0].start, data[0].end]
    with pytest.raises(ValueError, match="block"):
        lt.encode_qa(data, V(), 20)


def test_best_spans_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    out = torch.randn(6, 12, 2, generator=g)
    c0, c1 = torch.tensor([2, 3, 0, 5, 1, 4]), torch.tensor([12, 10, 8, 12, 6, 9])
    got = lt.best_spans(out, c0, c1, max_len=4)
    for b in range(6):
        best = max(((i, j) for i in range(c0[b], c1[b]) for j in range(i, min(c1[b], i + 4))),
                   key=lambda ij: out[b, ij[0], 0] + out[b, ij[1], 1])
        assert tuple(got[b].tolist()) == best


def test_span_qa_head_and_loss():
    torch.manual_seed(0)
    model = lt.SpanQA(GPT(GPTConfig(20, 16, 1, 2, 8)))
    x = torch.randint(0, 20, (3, 10))
    out = model(x)
    assert out.shape == (3, 10, 2)
    y = torch.tensor([[1, 2], [4, 4], [0, 9]])
    manual = (torch.nn.functional.cross_entropy(out[..., 0], y[:, 0])
              + torch.nn.functional.cross_entropy(out[..., 1], y[:, 1])) / 2
    assert torch.allclose(lt.span_loss(out, y), manual)


def test_baselines_on_a_hand_made_passage():
    e = lt.QAExample("what did tom feed?", "tom met a pig. tom fed a red hen.", "a red hen", 0, 0, False)
    assert lt.first_span_baseline([e]) == ["a pig"]
    assert lt.overlap_baseline([e]) == ["a pig"]          # "feed" is not "fed": a tie, the first wins
    e2 = lt.QAExample("what did tom hit?", "tom met a pig. tom hit a red hen.", "a red hen", 0, 0, False)
    assert lt.overlap_baseline([e2]) == ["a red hen"]
    s = lt.qa_scores(["red hen", "pig"], [e, e2])
    assert s["em"] == 0.5 and s["em_literal"] == 0.5 and math.isnan(s["em_paraphrased"])
    with pytest.raises(ValueError):
        lt.qa_scores(["x"], [e, e2])


def test_verb_lookup_baseline_counts_pairs_on_train_only():
    train = [lt.QAExample("what did tom nurse?", "tom met a pig. tom fed a red hen.", "a red hen",
                          0, 0, True),
             lt.QAExample("what did ann greet?", "ann met a cow. ann hit a dog.", "a cow", 0, 0, True)]
    e = lt.QAExample("what did kit nurse?", "kit met a fox. kit fed a cat.", "a cat", 0, 0, True)
    assert lt.verb_lookup_baseline(train, [e]) == ["a cat"]        # nurse -> fed, learned
    e2 = lt.QAExample("what did kit eye?", "kit met a fox. kit saw a cat.", "a cat", 0, 0, True)
    assert lt.verb_lookup_baseline(train, [e2]) == ["a fox"]       # never seen: the first fact
    assert lt.verb_lookup_baseline([], [e]) == ["a fox"]
    # the generator's verb pairing is fixed, so a few examples solve it (the chapter says so)
    test = lt.make_qa(200, seed=20_002)
    assert lt.qa_scores(lt.verb_lookup_baseline(lt.make_qa(50, 0), test), test)["em"] == 1.0


def test_span_monitor_records_and_replays():
    from book.train import fit

    class V:
        chars = [chr(i) for i in range(128)]

        def encode(self, s):
            return torch.tensor([ord(c) for c in s])
    torch.manual_seed(0)
    model = lt.SpanQA(GPT(GPTConfig(128, 64, 1, 2, 16)))
    data = lt.make_qa(16, 0)
    x, y = lt.encode_qa(data, V(), 64)
    mon = lt.SpanMonitor(data[0], data[:8], V())
    with pytest.raises(RuntimeError, match="callbacks"):
        mon.replay()
    fit(model, (x, y), torch.optim.Adam(model.parameters()), loss_fn=lt.span_loss, steps=4, batch_size=4,
        log_every=2, callbacks=[mon])
    assert len(mon.frames) == 2 and mon.frames[0][3].shape == (len(data[0].text), 2)
    assert mon.replay() is not None
    preds = lt.qa_predict(model, data, V())
    assert all(p and p in e.passage for p, e in zip(preds, data))


# ----------------------------------------------------------------------------- reviews, tokenizer, mask
def test_reviews_labels_flip_with_not():
    texts, y = lt.make_reviews(400, 0)
    for t, label in zip(texts, y.tolist()):
        w = t.split()
        good = any(a in w for a in lt.GOOD)
        assert label == int(good != ("not" in w)) and w[-1] == "."
        assert set(w) <= set(lt.review_vocab())
    assert 0.4 < y.float().mean() < 0.6
    assert {len(t.split()) for t in texts} == set(range(5, 12))


def test_padding_mask_makes_batching_irrelevant():
    transformers = pytest.importorskip("transformers")
    words = lt.review_vocab()
    tok = transformers.BertTokenizer(vocab={w: i for i, w in enumerate(words)})
    cfg = transformers.BertConfig(vocab_size=len(words), hidden_size=16, num_hidden_layers=1,
                                  num_attention_heads=2, intermediate_size=32, max_position_embeddings=32,
                                  initializer_range=0.5)   # large weights: differences show
    torch.manual_seed(0)
    clf = lt.MaskedClassifier(transformers.BertForSequenceClassification(cfg))
    short, long = "the film was good .", "i think the song was not very dull to me ."
    x = lt.tokenize(tok, [short, long])
    assert x.shape == (2, 2, 13) and x[0, 1].tolist() == [1] * 7 + [0] * 6
    assert lt.tokenize(tok, [short], length=20).shape == (1, 2, 20)
    texts = [short, long, "the show was bad .", "the book was not fun ."]
    alone = torch.stack([clf.eval()(lt.tokenize(tok, [t]))[0] for t in texts])
    assert torch.allclose(lt.logits_alone(clf, tok, texts), alone, atol=1e-5)
    partner = long + " " + long
    assert torch.allclose(lt.logits_beside(clf, tok, texts, partner), alone, atol=1e-5)
    pair = lt.logits_beside(clf, tok, texts[:1], partner, mask=False)      # a batch of two
    unmasked = lt.logits_beside(clf, tok, texts, partner, mask=False)
    assert torch.allclose(pair[0], unmasked[0], atol=1e-5)
    assert (unmasked - alone).abs().max() > 1e-3                     # the padding is read


def test_bag_of_words_sees_pairs():
    words = lt.review_vocab()
    ids = {w: i for i, w in enumerate(words)}

    def enc(texts):
        rows = [[ids["[CLS]"]] + [ids[w] for w in t.split()] + [ids["[SEP]"]] for t in texts]
        T = max(map(len, rows))
        x = torch.tensor([r + [0] * (T - len(r)) for r in rows])
        return torch.stack([x, (x != 0).long()], 1)
    texts = ["the film was good .", "the film was not good .", "the film was bad .", "the film was not bad ."]
    y = torch.tensor([1, 0, 0, 1])
    x = enc(texts * 5)
    assert (lt.bag_of_words_baseline((x, y.repeat(5)), len(words))(enc(texts)) == y).all()
    words_only = lt.bag_of_words_baseline((x, y.repeat(5)), len(words), pairs=False)(enc(texts))
    assert (words_only == y).float().mean() < 1                      # XOR: words alone cannot


# ----------------------------------------------------------------------------- translation
def test_toyish_grammar_and_dictionary():
    src = "the big dog chases a cat".split()
    assert lt.translate_rule(src) == "de hundo gros en katzan jagta".split()
    assert lt.dictionary_baseline(src) == "de gros hundo jagta en katzo".split()
    assert lt.MT_TOKENS[PAD] == "_" and lt.MT_TOKENS[EOS] == ">"


def test_make_translation_pairs_are_distinct_and_decodable():
    train, s = lt.make_translation(200, 0)
    assert train.src.shape == (200, lt.MT_WIDTH) and train.tgt.shape == (200, lt.MT_WIDTH + 1)
    assert len({a for a, _ in s}) == 200
    assert all(lt.mt_decode(t) == ref for t, (_, ref) in zip(train.tgt, s))
    assert all(lt.mt_decode(t) == a for t, (a, _) in zip(train.src, s))
    other, s2 = lt.make_translation(100, 1, exclude={a for a, _ in s})
    assert not {a for a, _ in s2} & {a for a, _ in s}
    with pytest.raises(ValueError, match="4,800"):
        lt.make_translation(5000, 0)


def test_teacher_forced_wrapper_and_translate():
    torch.manual_seed(0)
    m = Seq2Seq(lt.MT_VOCAB, 8, 16, attention=True)
    data, _ = lt.make_translation(6, 0)
    assert torch.equal(lt.TeacherForced(m)((data.src, data.tgt)), m(data.src, data.tgt))
    (xb, yb) = lt.seq2seq_batches(data, 4, torch.Generator().manual_seed(0))(1)
    assert xb[0].shape == (4, lt.MT_WIDTH) and torch.equal(xb[1], yb)
    out = lt.translate(m, data)
    assert len(out) == 6 and all(isinstance(s, str) for s in out)


# ----------------------------------------------------------------------------- chrF and BLEU
def test_chrf_by_hand():
    assert lt.chrf("ab", "abc", max_n=2) == pytest.approx(7 / 11)
    assert lt.chrf("ab", "abc", max_n=2, beta=1) == pytest.approx(2 * 7 / 12 / (1 + 7 / 12))
    assert lt.chrf("abc", "abc") == 1.0 and lt.chrf("xyz", "abc") == 0.0
    assert lt.chrf("a b c", "abc") == 1.0                                   # spaces removed
    # corpus level: counts are summed before dividing (not an average of sentence scores)
    assert lt.chrf(["ab", "x"], ["ab", "y"], max_n=1) == pytest.approx(2 / 3)   # not (1 + 0) / 2
    with pytest.raises(ValueError):
        lt.chrf(["a"], ["a", "b"])


def test_bleu_by_hand():
    assert lt.bleu("the cat sat on mat", "the cat sat on the mat") == pytest.approx(
        math.exp(-1 / 5) / math.sqrt(2))
    assert lt.bleu("the the the the", "the cat") == 0.0                    # clipping
    # longer than the reference: no brevity penalty; p = 4/5, 3/4, 2/3, 1/2
    assert lt.bleu("a b c d e", "a b c d") == pytest.approx((1 / 5) ** 0.25)
    assert lt.bleu(["a b c d", "e f"], ["a b c d", "e f"]) == 1.0           # corpus: 4-grams of both
    with pytest.raises(ValueError):
        lt.bleu([], [])


def test_metric_explorer():
    view = lt.MetricExplorer(kind="case ending", errors=1)
    out = view.draw()
    assert out["chrf"] > out["bleu"] and out["hypothesis"] != view.reference
    assert view.draw(errors=0)["chrf"] == 1.0
    for kind in lt.MetricExplorer.KINDS:
        assert view.hypothesis(kind, 3) != view.reference
    assert len(view.hypothesis("dropped word", 2).split()) == 5
    with pytest.raises(ValueError, match="kind"):
        lt.MetricExplorer(kind="typo")
    with pytest.raises(ValueError, match="errors"):
        lt.MetricExplorer(errors=7)
    assert view.player("errors", [0, 1]) is not None


# ----------------------------------------------------------------------------- the checks
def test_checks_accept_solutions_and_reject_wrong_ones(check_verdict):
    from collections import Counter

    def f1(p, t):
        p, t = lt.normalize_answer(p).split(), lt.normalize_answer(t).split()
        if not p or not t:
            return float(p == t)
        same = sum((Counter(p) & Counter(t)).values())
        return 0.0 if same == 0 else 2 * same / (len(p) + len(t))

    def f1_sets(p, t):          # sets instead of multisets
        p, t = set(lt.normalize_answer(p).split()), set(lt.normalize_answer(t).split())
        if not p or not t:
            return float(p == t)
        same = len(p & t)
        return 0.0 if same == 0 else 2 * same / (len(p) + len(t))
    check_verdict("token_f1", f1, f1_sets)
    check_verdict("padding_bias",
                  lambda m: (1.0 - m.float())[:, None, None, :] * torch.finfo(torch.float32).min,
                  lambda m: (1.0 - m.float())[:, None, :, None] * torch.finfo(torch.float32).min)
    check_verdict("bleu_one_wrong",
                  lambda L: math.prod((L - 2 * n + 1) / (L - n + 1) for n in range(1, 5)) ** 0.25,
                  lambda L: (L - 1) / L)                                     # unigram precision only
    check_verdict("f1_extra_words", lambda k, m: 2 * k / (2 * k + m), lambda k, m: k / (k + m))
