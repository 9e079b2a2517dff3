"""Self-checks of the retrieval chapter's exercises."""
from __future__ import annotations

import torch

from book.check.core import Case, _g, close, run_cases

__all__ = ["recall_mrr", "random_mrr", "bm25", "info_nce_equal"]


def recall_mrr(fn) -> None:
    """``fn(scores, gold, k)`` -> (recall@k, MRR) for scores (queries, documents) and gold ids (queries,);
    ties count against the gold document."""
    from book.nn.retrieval import gold_ranks, mean_reciprocal_rank, recall_at_k
    g = _g(191)
    cases = []
    for i, (q, n, k, tie) in enumerate([(4, 6, 1, False), (10, 20, 5, False), (8, 12, 3, True),
                                        (30, 50, 10, True), (5, 5, 5, False)]):
        scores = torch.randn(q, n, generator=g, dtype=torch.float64)
        if tie:
            scores = scores.round()                    # many ties: who ranks first?
        gold = torch.randint(0, n, (q,), generator=g)
        ranks = gold_ranks(scores, gold)
        cases.append(Case((scores, gold, k), (recall_at_k(ranks, k), mean_reciprocal_rank(ranks)),
                          public=i < 2, label=f"{q} queries, {n} documents, k={k}" + (", ties" if tie else "")))
    run_cases("recall_mrr", fn, cases, compare=lambda got, exp: close(tuple(map(float, got)), exp, rtol=1e-9,
                                                                      atol=1e-12),
              hint="rank of the gold document = number of documents scoring at least as high as it (ties "
                   "against it); recall@k = mean of rank <= k, MRR = mean of 1 / rank")


def random_mrr(fn) -> None:
    """``fn(n_docs)`` -> expected MRR of a uniformly random ranking of ``n_docs`` documents."""
    from book.nn.retrieval import random_mrr as ref
    cases = [Case((n,), ref(n), public=i < 2, label=f"{n} documents")
             for i, n in enumerate([1, 2, 10, 240, 1000])]
    run_cases("random_mrr", fn, cases, compare=lambda got, exp: close(float(got), exp, rtol=1e-9, atol=1e-12),
              hint="the gold document's rank is uniform on 1..N: average 1/r over those N ranks (it is not "
                   "1 over the average rank)")


def bm25(fn) -> None:
    """``fn(query_counts, doc_counts, k1, b)`` -> BM25 scores (queries, documents) as in the chapter."""
    from book.nn.retrieval import bm25_scores
    g = _g(192)
    cases = []
    for i, (q, n, v, k1, b) in enumerate([(2, 5, 8, 1.2, 0.75), (3, 10, 20, 1.5, 0.0), (4, 6, 12, 0.5, 1.0),
                                          (5, 30, 40, 2.0, 0.5)]):
        docs = torch.randint(0, 3, (n, v), generator=g).double()
        docs[:, 0] = 1 + torch.randint(0, 4, (n,), generator=g)      # a term in every document
        queries = torch.randint(0, 2, (q, v), generator=g).double()
        cases.append(Case((queries, docs, k1, b), bm25_scores(queries, docs, k1, b), public=i < 2,
                          label=f"{q} queries, {n} documents, k1={k1}, b={b}"))
    run_cases("bm25", fn, cases, compare=lambda got, exp: close(got, exp, rtol=1e-6, atol=1e-9),
              hint="idf = ln(1 + (N - df + 0.5) / (df + 0.5)); tf part = tf (k1 + 1) / (tf + k1 (1 - b + b "
                   "|d| / avgdl)); score = query counts @ (tf part * idf).T")


def info_nce_equal(fn) -> None:
    """``fn(batch, s_pos, s_neg, tau)`` -> InfoNCE loss when every query's positive has cosine ``s_pos`` and
    every in-batch negative ``s_neg``."""
    from book.nn.retrieval import info_nce
    cases = []
    for i, (b, sp, sn, tau) in enumerate([(64, 0.0, 0.0, 0.1), (64, 0.9, 0.1, 0.1), (8, 0.5, 0.2, 0.05),
                                          (128, 1.0, -0.2, 0.2), (2, 0.3, 0.3, 1.0)]):
        sim = torch.full((b, b), sn, dtype=torch.float64)
        sim.fill_diagonal_(sp)
        cases.append(Case((b, sp, sn, tau), info_nce(sim, tau).item(), public=i < 2,
                          label=f"batch {b}, positive {sp}, negatives {sn}, tau {tau}"))
    run_cases("info_nce_equal", fn, cases, compare=lambda got, exp: close(float(got), exp, rtol=1e-7, atol=1e-9),
              hint="the loss is -log of the positive's softmax probability over the batch's B documents; the "
                   "positive is one of the B terms of the denominator")
