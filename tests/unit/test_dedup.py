"""book.nn.dedup: shingles, exact Jaccard, MinHash, LSH banding -- each against a brute-force reference."""
from itertools import combinations

import numpy as np
import pytest

from book.nn.dedup import (
    MinHasher,
    dedup_keep,
    estimate_jaccard,
    exact_pairs,
    jaccard,
    lsh_candidates,
    near_duplicate_pairs,
    overlapping_pairs,
    s_curve,
    shingle_ids,
    shingles,
)


def test_shingles_and_jaccard():
    assert shingles("a b c d", 3) == {"a b c", "b c d"}
    assert shingles("A b", 3) == {"a b"} and shingles("", 2) == set()
    assert jaccard({1, 2, 3}, {2, 3, 4}) == 0.5 and jaccard(set(), set()) == 1.0
    with pytest.raises(ValueError, match="k must be"):
        shingles("a b", 0)


def test_shingle_ids_are_stable_and_below_the_prime():
    ids = shingle_ids({"x y z", "a b c"})
    assert ids.dtype == np.uint64 and (ids < (1 << 31) - 1).all()
    assert (shingle_ids({"a b c", "x y z"}) == ids).all()


def _random_sets(rng, n=40, universe=300):
    base = [set(rng.choice(universe, size=rng.integers(20, 60), replace=False).tolist()) for _ in range(n)]
    # plant overlaps: copy a set with a few elements swapped
    for i in range(0, n, 4):
        s = set(base[i])
        drop = rng.choice(sorted(s), size=rng.integers(1, 15), replace=False)
        base[i + 1] = (s - set(drop.tolist())) | set(rng.integers(universe, 2 * universe, 5).tolist())
    return [{str(v) for v in s} for s in base]


def test_minhash_is_unbiased_with_binomial_variance():
    rng = np.random.default_rng(0)
    sets = _random_sets(rng)
    pairs = list(combinations(range(len(sets)), 2))
    j = np.array([jaccard(sets[a], sets[b]) for a, b in pairs])
    k = 256
    errs = []
    for seed in range(4):
        sig = MinHasher(k, seed=seed).signatures(sets)
        errs.append([estimate_jaccard(sig[a], sig[b]) - jj for (a, b), jj in zip(pairs, j)])
    err = np.array(errs)
    pred_var = np.mean(j * (1 - j)) / k
    # the mean over 4 x 780 pairs: standard error sqrt(pred_var / 3120)
    assert abs(err.mean()) < 4 * np.sqrt(pred_var / err.size)
    assert 0.7 < np.mean(err ** 2) / pred_var < 1.4


def test_identical_and_disjoint_sets():
    mh = MinHasher(64, seed=1)
    a, b = {"p q r", "q r s", "r s t"}, {"x y z", "y z w"}
    assert estimate_jaccard(mh.signature(a), mh.signature(set(a))) == 1.0
    assert estimate_jaccard(mh.signature(a), mh.signature(b)) == 0.0
    with pytest.raises(ValueError, match="empty"):
        mh.signature(set())
    with pytest.raises(ValueError, match="differ in length"):
        estimate_jaccard(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="num_perm"):
        MinHasher(0)


def test_lsh_candidates_equal_a_loop_over_bands():
    rng = np.random.default_rng(2)
    sets = _random_sets(rng)
    sig = MinHasher(60, seed=3).signatures(sets)
    bands, rows = 12, 5
    loop = {(a, b) for a, b in combinations(range(len(sets)), 2)
            if any((sig[a, i * rows:(i + 1) * rows] == sig[b, i * rows:(i + 1) * rows]).all()
                   for i in range(bands))}
    assert lsh_candidates(sig, bands, rows) == loop
    with pytest.raises(ValueError, match="exceeds"):
        lsh_candidates(sig, 13, 5)


def test_s_curve_matches_simulated_bands():
    rng = np.random.default_rng(4)
    r, b, s = 3, 10, 0.5
    agree = rng.random((20000, b, r)) < s            # each row agrees independently with prob s
    rate = agree.all(axis=2).any(axis=1).mean()
    assert abs(rate - s_curve(s, r, b)) < 0.015
    assert s_curve(0.0, r, b) == 0.0 and s_curve(1.0, r, b) == 1.0


def test_overlapping_pairs_equals_brute_force():
    rng = np.random.default_rng(5)
    sets = _random_sets(rng, n=30)
    fast = overlapping_pairs(sets)
    brute = {(a, b): jaccard(sets[a], sets[b]) for a, b in combinations(range(30), 2) if sets[a] & sets[b]}
    assert fast == brute
    assert exact_pairs(sets, 0.3) == {p for p, j in brute.items() if j >= 0.3}


def test_near_duplicates_and_dedup_keep():
    docs = ["the cat sat on the mat today", "the cat sat on the mat today", "a dog ran in the park at noon",
            "the cat sat on the mat yesterday"]
    sets = [shingles(d, 2) for d in docs]
    sig = MinHasher(128, seed=0).signatures(sets)
    found = near_duplicate_pairs(sig, 32, 4, 0.5)
    assert (0, 1) in found and not any(2 in p for p in found)
    keep = dedup_keep(4, found)
    assert 0 in keep and 1 not in keep and 2 in keep
    assert dedup_keep(5, {(3, 4), (2, 3)}).tolist() == [0, 1, 2]     # groups join transitively
    with pytest.raises(ValueError, match="outside"):
        dedup_keep(2, {(0, 5)})
