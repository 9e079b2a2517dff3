"""Retrieval from scratch, taught in the retrieval chapter: a tokeniser, TF-IDF (scikit-learn's smoothing),
BM25 (Robertson & Zaragoza), a bag-of-words dual encoder with the InfoNCE loss over in-batch negatives, and
the ranking metrics recall@k and MRR.

Every score function returns a ``(queries, documents)`` matrix; documents and queries are given as count
matrices ``(n, vocabulary)`` built by :func:`count_matrix`.
"""
from __future__ import annotations

import math
import re

import torch
import torch.nn as nn
import torch.nn.functional as F


def tokenize(text: str) -> list[str]:
    """Lower-cased runs of letters and digits: ``"Where does Ilsa live?"`` -> ``['where', 'does', 'ilsa', 'live']``."""
    return re.findall(r"[a-z0-9]+", text.lower())


def count_matrix(texts: list[str], vocab: dict[str, int]) -> torch.Tensor:
    """``(len(texts), len(vocab))`` float64 term counts; tokens missing from ``vocab`` are dropped."""
    rows, cols = [], []
    for i, text in enumerate(texts):
        for tok in tokenize(text):
            j = vocab.get(tok)
            if j is not None:
                rows.append(i)
                cols.append(j)
    counts = torch.zeros(len(texts), len(vocab), dtype=torch.float64)
    index = (torch.tensor(rows, dtype=torch.long), torch.tensor(cols, dtype=torch.long))
    return counts.index_put_(index, torch.ones(len(rows), dtype=torch.float64), accumulate=True)


def tfidf_idf(doc_counts: torch.Tensor) -> torch.Tensor:
    """Smoothed inverse document frequency ``ln((1 + N) / (1 + df)) + 1`` (scikit-learn's ``smooth_idf=True``:
    as if one extra document held every term once; the ``+ 1`` keeps terms found everywhere)."""
    n = doc_counts.shape[0]
    df = (doc_counts > 0).sum(0).to(doc_counts.dtype)
    return torch.log((1 + n) / (1 + df)) + 1


def tfidf_vectors(counts: torch.Tensor, idf: torch.Tensor) -> torch.Tensor:
    """Raw counts times ``idf``, each row scaled to unit length (rows without a known term stay zero)."""
    w = counts * idf
    return w / w.norm(dim=1, keepdim=True).clamp_min(1e-12)


def tfidf_scores(query_counts: torch.Tensor, doc_counts: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of TF-IDF vectors, idf measured on the documents: ``(queries, documents)``."""
    idf = tfidf_idf(doc_counts)
    return tfidf_vectors(query_counts, idf) @ tfidf_vectors(doc_counts, idf).T


def bm25_idf(doc_counts: torch.Tensor) -> torch.Tensor:
    """BM25's ``ln(1 + (N - df + 0.5) / (df + 0.5))`` (the ``1 +`` keeps it positive for common terms)."""
    n = doc_counts.shape[0]
    df = (doc_counts > 0).sum(0).to(doc_counts.dtype)
    return torch.log1p((n - df + 0.5) / (df + 0.5))


def bm25_scores(query_counts: torch.Tensor, doc_counts: torch.Tensor, k1: float = 1.2,
                b: float = 0.75) -> torch.Tensor:
    """Okapi BM25: ``sum_t qtf_t * idf_t * tf (k1 + 1) / (tf + k1 (1 - b + b |d| / avgdl))``.

    ``k1`` sets how fast repeated terms saturate, ``b`` how much long documents are penalised; a query term
    counted twice counts twice (Robertson & Zaragoza's ``k3 -> infinity``)."""
    if k1 < 0 or not 0 <= b <= 1:
        raise ValueError(f"need k1 >= 0 and 0 <= b <= 1, got k1={k1}, b={b}")
    dl = doc_counts.sum(1, keepdim=True)
    norm = k1 * (1 - b + b * dl / dl.mean())
    tf = doc_counts * (k1 + 1) / (doc_counts + norm)
    used = query_counts.sum(0) > 0                 # only the queries' terms contribute
    return query_counts[:, used] @ (tf[:, used] * bm25_idf(doc_counts)[used]).T


class BagEncoder(nn.Module):
    """Mean of word embeddings (padding id 0 ignored), a linear map, unit length."""

    def __init__(self, embedding: nn.Embedding, dim: int):
        super().__init__()
        self.embedding = embedding
        self.proj = nn.Linear(embedding.embedding_dim, dim)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        mask = (ids != 0).unsqueeze(-1).to(self.embedding.weight.dtype)
        mean = (self.embedding(ids) * mask).sum(1) / mask.sum(1).clamp_min(1)
        return F.normalize(self.proj(mean), dim=-1)


class DualEncoder(nn.Module):
    """Two bag-of-words encoders sharing one embedding table: ``queries(ids)`` and ``docs(ids)`` give unit
    vectors whose dot product is the relevance score (the DPR recipe with bags of words for BERTs)."""

    def __init__(self, vocab_size: int, embed: int = 64, dim: int = 64):
        super().__init__()
        table = nn.Embedding(vocab_size, embed, padding_idx=0)
        self.queries = BagEncoder(table, dim)
        self.docs = BagEncoder(table, dim)

    def forward(self, q_ids: torch.Tensor, d_ids: torch.Tensor) -> torch.Tensor:
        """``(B, B)`` cosine similarities of every query with every document of the batch."""
        return self.queries(q_ids) @ self.docs(d_ids).T


def info_nce(sim: torch.Tensor, tau: float) -> torch.Tensor:
    """InfoNCE with in-batch negatives: query ``i``'s positive is document ``i`` and the other ``B - 1``
    documents of the batch are its negatives; ``mean_i [log sum_j exp(s_ij / tau) - s_ii / tau]``."""
    logits = sim / tau
    return (torch.logsumexp(logits, dim=1) - logits.diagonal()).mean()


def gold_ranks(scores: torch.Tensor, gold: torch.Tensor) -> torch.Tensor:
    """1-based rank of each query's gold document; ties count against the gold document (a retriever that
    gives every document the same score ranks it last, not first)."""
    g = scores.gather(1, gold.view(-1, 1))
    return (scores >= g).sum(1)


def recall_at_k(ranks: torch.Tensor, k: int) -> float:
    """Fraction of queries whose gold document is among the top ``k``."""
    return (ranks <= k).double().mean().item()


def mean_reciprocal_rank(ranks: torch.Tensor) -> float:
    """Mean of ``1 / rank`` of the gold document (1 when it is always first)."""
    return (1.0 / ranks.double()).mean().item()


def zscore_fusion(a: torch.Tensor, b: torch.Tensor, weight: float) -> torch.Tensor:
    """Hybrid score ``weight * z(a) + (1 - weight) * z(b)``, each score matrix standardised per query (row),
    so that scores on different scales can be added."""
    def z(s):
        return (s - s.mean(1, keepdim=True)) / s.std(1, keepdim=True).clamp_min(1e-12)
    return weight * z(a) + (1 - weight) * z(b)


def random_mrr(n_docs: int) -> float:
    """Expected MRR of a uniformly random ranking of ``n_docs`` documents: ``H_N / N``."""
    return sum(1 / r for r in range(1, n_docs + 1)) / n_docs if n_docs > 0 else math.nan
