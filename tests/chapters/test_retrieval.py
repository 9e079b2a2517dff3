"""The retrieval chapter: book.nn.retrieval against scikit-learn (TF-IDF), a brute-force BM25 and
torch's cross-entropy (InfoNCE); the generated corpus and its splits, the dual encoder's training and
monitor, the reader, the search view, and the exercise checks."""
import math

import pytest
import torch
import torch.nn.functional as F

from book.lab.retrieval import (
    RetrievalMonitor,
    SearchExplorer,
    answer_accuracy,
    bm25_search,
    build_vocab,
    dense_vocab,
    encode_ids,
    make_corpus,
    make_prompt,
    majority_answers,
    metrics,
    read,
    train_dual_encoder,
)
from book.nn.retrieval import (
    DualEncoder,
    bm25_scores,
    count_matrix,
    gold_ranks,
    info_nce,
    mean_reciprocal_rank,
    random_mrr,
    recall_at_k,
    tfidf_idf,
    tfidf_scores,
    tokenize,
    zscore_fusion,
)

DOCS = ["the cat sat on the mat", "a dog and a cat", "the quick brown fox", "dogs and cats and mats",
        "zyx the rare token"]


def test_tfidf_matches_scikit_learn():
    sk = pytest.importorskip("sklearn.feature_extraction.text")
    queries = ["cat on a mat", "the rare zyx", "brown dogs"]
    vec = sk.TfidfVectorizer(analyzer=tokenize, smooth_idf=True, norm="l2", sublinear_tf=False)
    d = vec.fit_transform(DOCS)
    q = vec.transform(queries)
    ref = torch.tensor((q @ d.T).toarray())
    vocab = build_vocab(DOCS)
    ours = tfidf_scores(count_matrix(queries, vocab), count_matrix(DOCS, vocab))
    assert torch.allclose(ours, ref, atol=1e-12)
    idf = tfidf_idf(count_matrix(DOCS, vocab))
    assert all(abs(idf[vocab[t]].item() - vec.idf_[j]) < 1e-12 for t, j in vec.vocabulary_.items())


def _bm25_loop(query, docs, k1, b):
    toks = [tokenize(d) for d in docs]
    avg = sum(map(len, toks)) / len(toks)
    out = []
    for t in toks:
        s = 0.0
        for term in tokenize(query):
            df = sum(term in u for u in toks)
            idf = math.log(1 + (len(toks) - df + 0.5) / (df + 0.5))
            tf = t.count(term)
            s += idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * len(t) / avg))
        out.append(s)
    return out


@pytest.mark.parametrize("k1, b", [(1.2, 0.75), (2.0, 0.0), (0.5, 1.0)])
def test_bm25_matches_a_loop_over_terms(k1, b):
    vocab = build_vocab(DOCS)
    for query in ["the cat", "zyx zyx mat", "and and the"]:
        ours = bm25_scores(count_matrix([query], vocab), count_matrix(DOCS, vocab), k1, b)[0]
        assert torch.allclose(ours, torch.tensor(_bm25_loop(query, DOCS, k1, b), dtype=torch.float64))
    with pytest.raises(ValueError, match="0 <= b <= 1"):
        bm25_scores(count_matrix(["x"], vocab), count_matrix(DOCS, vocab), b=1.5)


def test_info_nce_is_cross_entropy_over_the_batch():
    sim = torch.randn(7, 7, requires_grad=True)
    for tau in (0.05, 1.0):
        ref = F.cross_entropy(sim / tau, torch.arange(7))
        ours = info_nce(sim, tau)
        assert torch.allclose(ours, ref, atol=1e-5)
        g1, = torch.autograd.grad(ours, sim)
        g2, = torch.autograd.grad(ref, sim)
        assert torch.allclose(g1, g2, atol=1e-5)
    assert abs(info_nce(torch.zeros(16, 16), 0.1).item() - math.log(16)) < 1e-5


def test_ranks_metrics_and_fusion():
    scores = torch.tensor([[3.0, 1.0, 2.0], [1.0, 1.0, 1.0], [0.0, 5.0, 4.0]])
    gold = torch.tensor([0, 0, 2])
    ranks = gold_ranks(scores, gold)
    assert ranks.tolist() == [1, 3, 2]                    # the all-tied row ranks the gold document last
    assert recall_at_k(ranks, 1) == pytest.approx(1 / 3)
    assert recall_at_k(ranks, 2) == pytest.approx(2 / 3)
    assert mean_reciprocal_rank(ranks) == pytest.approx((1 + 1 / 3 + 1 / 2) / 3)
    assert random_mrr(1) == 1 and random_mrr(2) == pytest.approx(0.75)
    g = torch.Generator().manual_seed(0)
    sim = torch.stack([torch.randperm(50, generator=g) for _ in range(20000)]).double()
    assert abs(mean_reciprocal_rank(gold_ranks(sim, torch.zeros(20000, dtype=torch.long)))
               - random_mrr(50)) < 0.01
    a, b = torch.randn(4, 6), 100 * torch.randn(4, 6)
    fused = zscore_fusion(a, b, 1.0)
    assert torch.allclose(fused.mean(1), torch.zeros(4), atol=1e-6)
    assert torch.equal(fused.argsort(1), a.argsort(1))


def test_corpus_splits_by_person_and_descriptions_are_unique():
    c = make_corpus(120, seed=3)
    assert len(c.docs) == 120 and set(c.split_of) == {"train", "val", "test"}
    for split, rows in c.queries.items():
        assert all(c.split_of[q[1]] == split for q in rows)
        assert {q[2] for q in rows} == {"name", "paraphrase"}
    triples = {(f["profession"], f["animal"], f["colour"]) for f in c.facts}
    assert len(triples) == 120
    for text, i, kind, slot, answer in c.queries["test"]:
        assert (c.names[i].lower() in tokenize(text)) == (kind == "name")
        assert answer.lower() in tokenize(c.docs[i])
    assert make_corpus(120, seed=3).docs == c.docs
    with pytest.raises(ValueError, match="distinct"):
        make_corpus(10_000)
    names = {c.names[i].lower() for i, s in enumerate(c.split_of) if s != "train"}
    assert not names & set(dense_vocab(c))          # held-out names are unknown to the dual encoder
    ids = encode_ids(["zzz unknown", "the"], {"<pad>": 0, "<unk>": 1, "the": 2})
    assert ids.tolist() == [[1, 1], [2, 0]]


def test_lexical_retrieval_finds_names_and_misses_paraphrases():
    c = make_corpus(120, seed=1)
    t, g, _, _ = c.questions("val", "name")
    assert metrics(bm25_search(c, t), g)["R@1"] > 0.9
    t, g, _, _ = c.questions("val", "paraphrase")
    assert metrics(bm25_search(c, t), g)["R@5"] < 0.3


def test_dual_encoder_learns_paraphrases_and_the_monitor_replays():
    c = make_corpus(120, seed=2)
    monitor = RetrievalMonitor(5, baseline=0.5)
    with pytest.raises(RuntimeError, match="nothing to replay"):
        monitor.replay()
    dense = train_dual_encoder(c, 300, tau=0.1, monitor=monitor, log_every=100)
    assert len(monitor.records) == 4          # step 1 (initialisation), 100, 200, 300
    assert "<script" in monitor.replay().data
    t, g, _, _ = c.questions("val", "paraphrase")
    assert metrics(dense.scores(t), g)["R@5"] > 5 * 5 / 120      # far above a random ranking
    model = DualEncoder(10, 8, 4)
    out = model(torch.randint(0, 10, (3, 5)), torch.randint(0, 10, (3, 7)))
    assert out.shape == (3, 3) and out.abs().max() <= 1 + 1e-6


def test_reader_and_rag_decomposition():
    c = make_corpus(120, seed=0)
    fb = majority_answers(c)
    doc = "The neighbour of Ab is a potter with a dog. Ab works as a baker in Belloc. Ab keeps a cat."
    assert read(make_prompt("Where does Ab live?", doc), fb) == "belloc"
    assert read(make_prompt("What does Ab do for a living?", doc), fb) == "potter"   # the trap
    assert read(make_prompt("What pet does Ab keep?", None), fb) == fb["animal"]
    _, g, _, _ = c.questions("test")
    oracle = answer_accuracy(c, "test", g.tolist())
    none = answer_accuracy(c, "test", None)
    assert 0.7 < oracle < 1 and none < 0.3


def test_search_explorer():
    c = make_corpus(60, seed=0)
    dense = train_dual_encoder(c, 20)
    q = c.queries["val"][0]
    ex = SearchExplorer(c, dense, query=q[0], k=3)
    found = ex.draw()
    assert set(found) == {"BM25", "dual encoder"} and all(len(v) == 3 for v in found.values())
    assert "<script" in ex.player("k", [1, 2]).data
    with pytest.raises(ValueError, match="between 1 and 10"):
        SearchExplorer(c, dense, k=0)


def _recall_good(scores, gold, k):
    ranks = (scores >= scores.gather(1, gold.view(-1, 1))).sum(1).double()
    return (ranks <= k).double().mean().item(), (1 / ranks).mean().item()


def _recall_bad(scores, gold, k):                # ties in favour of the gold document
    ranks = (scores > scores.gather(1, gold.view(-1, 1))).sum(1).double() + 1
    return (ranks <= k).double().mean().item(), (1 / ranks).mean().item()


def _bm25_good(q, d, k1, b):
    n = d.shape[0]
    df = (d > 0).sum(0).double()
    idf = torch.log(1 + (n - df + 0.5) / (df + 0.5))
    dl = d.sum(1, keepdim=True)
    return q @ (idf * d * (k1 + 1) / (d + k1 * (1 - b + b * dl / dl.mean()))).T


def _bm25_bad(q, d, k1, b):                      # no length normalisation
    return _bm25_good(q, d, k1, 0.0)


@pytest.mark.parametrize("name, good, bad", [
    ("recall_mrr", _recall_good, _recall_bad),
    ("random_mrr", lambda n: sum(1 / r for r in range(1, n + 1)) / n, lambda n: 2 / (n + 1)),
    ("bm25", _bm25_good, _bm25_bad),
    ("info_nce_equal", lambda B, sp, sn, t: math.log(1 + (B - 1) * math.exp((sn - sp) / t)),
     lambda B, sp, sn, t: math.log(B - 1) + (sn - sp) / t),
])
def test_checks_accept_good_and_reject_bad(check_verdict, name, good, bad):
    check_verdict(name, good, bad)
