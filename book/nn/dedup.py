"""Near-duplicate detection from scratch: shingles, exact Jaccard, MinHash signatures, LSH banding.

Taught in the pipeline chapter (``chapters/pipeline.ipynb``). Every estimate here is checked against
the exact, brute-force answer (:func:`jaccard`, :func:`exact_pairs`) in the chapter and in
``tests/unit/test_dedup.py``.

* :func:`shingles` -- the set of word ``k``-grams of a text (its "shingles", Broder 1997);
* :func:`jaccard` -- ``|A & B| / |A | B|``, the exact similarity;
* :class:`MinHasher` -- ``num_perm`` random hash functions ``h_i(x) = (a_i x + b_i) mod p``; a signature
  keeps each one's minimum over the shingles, and two signatures agree in position ``i`` with probability
  exactly the Jaccard similarity of the two sets;
* :func:`lsh_candidates` -- banding: cut signatures into ``bands`` bands of ``rows`` rows; two documents
  become a candidate pair when any band agrees completely (probability ``1 - (1 - s^r)^b``,
  :func:`s_curve`).
"""
from __future__ import annotations

import zlib
from collections import defaultdict
from itertools import combinations

import numpy as np

PRIME = (1 << 31) - 1     # a Mersenne prime: (a * x + b) with a, x < 2^31 fits in 64 bits


def shingles(text: str, k: int = 3) -> set[str]:
    """The set of word ``k``-grams of ``text`` (lower-cased, split on white space); a text shorter than
    ``k`` words is one shingle."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    words = text.lower().split()
    if len(words) < k:
        return {" ".join(words)} if words else set()
    return {" ".join(words[i:i + k]) for i in range(len(words) - k + 1)}


def jaccard(a: set, b: set) -> float:
    """Exact Jaccard similarity ``|a & b| / |a | b|`` (1.0 for two empty sets)."""
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def shingle_ids(sh: set[str]) -> np.ndarray:
    """A stable 31-bit integer per shingle (CRC-32 mod p: the same in every process, unlike ``hash``)."""
    return np.array(sorted(zlib.crc32(s.encode()) % PRIME for s in sh), dtype=np.uint64)


class MinHasher:
    """``num_perm`` hash functions ``h_i(x) = (a_i x + b_i) mod p`` drawn with ``seed``.

    ``signature(shingle_set)`` -> ``(num_perm,)`` uint64: ``min_x h_i(x)`` over the set. For two sets the
    chance that position ``i`` agrees is ``|A & B| / |A | B|`` (the element of ``A | B`` with the smallest
    hash is equally likely to be any of them, and the minima agree exactly when it lies in ``A & B``)."""

    def __init__(self, num_perm: int = 128, seed: int = 0):
        if num_perm < 1:
            raise ValueError(f"num_perm must be >= 1, got {num_perm}")
        rng = np.random.default_rng(seed)
        self.num_perm = num_perm
        self.a = rng.integers(1, PRIME, size=num_perm, dtype=np.uint64)
        self.b = rng.integers(0, PRIME, size=num_perm, dtype=np.uint64)

    def signature(self, sh: set[str]) -> np.ndarray:
        if not sh:
            raise ValueError("an empty shingle set has no signature")
        x = shingle_ids(sh)
        hashed = (self.a[:, None] * x[None, :] + self.b[:, None]) % PRIME    # (num_perm, n_shingles)
        return hashed.min(axis=1)

    def signatures(self, sets: list[set[str]]) -> np.ndarray:
        """``(n, num_perm)`` signatures of many sets."""
        return np.stack([self.signature(s) for s in sets])


def estimate_jaccard(sig_a: np.ndarray, sig_b: np.ndarray) -> float:
    """The MinHash estimate: the fraction of positions where two signatures agree."""
    if sig_a.shape != sig_b.shape:
        raise ValueError(f"signatures differ in length: {sig_a.shape} vs {sig_b.shape}")
    return float(np.mean(sig_a == sig_b))


def s_curve(s, rows: int, bands: int):
    """Probability that two documents of similarity ``s`` share at least one of ``bands`` bands of
    ``rows`` rows: ``1 - (1 - s^rows)^bands``."""
    s = np.asarray(s, dtype=float)
    return 1.0 - (1.0 - s ** rows) ** bands


def lsh_candidates(signatures: np.ndarray, bands: int, rows: int) -> set[tuple[int, int]]:
    """Candidate pairs ``(i, j)``, ``i < j``: documents whose signatures agree on every row of at least
    one band. Uses the first ``bands * rows`` positions of each signature."""
    n, k = signatures.shape
    if bands * rows > k:
        raise ValueError(f"bands * rows = {bands * rows} exceeds the signature length {k}")
    pairs: set[tuple[int, int]] = set()
    for band in range(bands):
        buckets: dict[bytes, list[int]] = defaultdict(list)
        block = np.ascontiguousarray(signatures[:, band * rows:(band + 1) * rows])
        for i in range(n):
            buckets[block[i].tobytes()].append(i)
        for members in buckets.values():
            pairs.update(combinations(members, 2))
    return pairs


def exact_pairs(sets: list[set], threshold: float) -> set[tuple[int, int]]:
    """The brute-force reference: every pair ``(i, j)``, ``i < j``, with Jaccard >= ``threshold``."""
    return {(i, j) for i, j in combinations(range(len(sets)), 2) if jaccard(sets[i], sets[j]) >= threshold}


def overlapping_pairs(sets: list[set]) -> dict[tuple[int, int], float]:
    """Exact Jaccard of every pair ``(i, j)``, ``i < j``, that shares at least one shingle (every other
    pair has Jaccard 0), found through an inverted index instead of all n(n-1)/2 pairs."""
    postings: dict = defaultdict(list)
    for i, s in enumerate(sets):
        for sh in s:
            postings[sh].append(i)
    pairs = {p for docs in postings.values() for p in combinations(docs, 2)}
    return {(i, j): jaccard(sets[i], sets[j]) for i, j in sorted(pairs)}


def near_duplicate_pairs(signatures: np.ndarray, bands: int, rows: int,
                         threshold: float) -> set[tuple[int, int]]:
    """LSH candidates kept when their MinHash estimate is >= ``threshold`` (no exact Jaccard needed)."""
    return {(i, j) for i, j in lsh_candidates(signatures, bands, rows)
            if estimate_jaccard(signatures[i], signatures[j]) >= threshold}


def dedup_keep(n: int, pairs: set[tuple[int, int]]) -> np.ndarray:
    """Indices to keep: one document (the lowest index) of every group joined by ``pairs`` (union-find)."""
    parent = list(range(n))

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in pairs:
        if not (0 <= i < n and 0 <= j < n):
            raise ValueError(f"pair {(i, j)} outside 0..{n - 1}")
        ri, rj = root(i), root(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    return np.array([i for i in range(n) if root(i) == i], dtype=np.int64)
