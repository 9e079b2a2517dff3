"""Self-checks of the evaluation chapter's exercises."""
from __future__ import annotations

import math

import numpy as np
import torch

from book.check.core import Case, _g, close, run_cases

__all__ = ["per_char_perplexity", "roc_auc", "min_k_percent", "min_detectable_delta",
           "length_controlled_win_rate"]

_SNIPPETS = ["To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer\n",
             "Now is the winter of our discontent\nMade glorious summer by this sun of York;\n",
             "O Romeo, Romeo! wherefore art thou Romeo?\nDeny thy father and refuse thy name;\n",
             "Friends, Romans, countrymen, lend me your ears;\nI come to bury Caesar, not to praise him.\n"]


def per_char_perplexity(fn) -> None:
    """``fn(ppl_token, n_tokens, n_chars)`` -> the perplexity per character of a text whose ``n_tokens``
    tokens had perplexity ``ppl_token`` (measured here: a word unigram model on short texts)."""
    from book.lab.evaluation import WordTokenizer, unigram_nll
    train = "".join(_SNIPPETS) * 3
    tok = WordTokenizer(train, min_count=2)
    train_tokens = tok.encode(train)
    cases = []
    for i, text in enumerate(_SNIPPETS + [_SNIPPETS[0] + _SNIPPETS[2], "to be or not"]):
        tokens = tok.encode(text)
        nll = unigram_nll(train_tokens, tokens, tok.vocab)
        cases.append(Case((math.exp(nll / len(tokens)), len(tokens), len(text)), math.exp(nll / len(text)),
                          public=i < 2, label=f"{len(tokens)} tokens, {len(text)} characters"))
    run_cases("per_char_perplexity", fn, cases, compare=lambda got, exp: close(float(got), exp, rtol=1e-6),
              hint="the total NLL is the same whatever you divide it by: recover it from ppl_token and "
                   "n_tokens, then divide by n_chars")


def roc_auc(fn) -> None:
    """``fn(pos, neg)`` -> the AUC of scores that should be higher for ``pos`` (ties count one half)."""
    from book.lab.evaluation import auc
    g = _g(91)
    cases = [Case(([0.9, 0.8], [0.1, 0.2, 0.3]), 1.0, label="perfectly separated"),
             Case(([0.5, 0.2], [0.5, 0.1]), auc([0.5, 0.2], [0.5, 0.1]), label="one tie")]
    for n_pos, n_neg, shift, levels in [(30, 20, 1.0, 0), (7, 50, 0.3, 0), (40, 40, 0.0, 4), (5, 5, -1.0, 3)]:
        pos = torch.randn(n_pos, generator=g) + shift
        neg = torch.randn(n_neg, generator=g)
        if levels:                                     # coarse scores: many ties
            pos, neg = (pos * levels).round(), (neg * levels).round()
        cases.append(Case((pos.tolist(), neg.tolist()), auc(pos.numpy(), neg.numpy()), public=False,
                          label=f"{n_pos} vs {n_neg}" + (", with ties" if levels else "")))
    run_cases("roc_auc", fn, cases, compare=lambda got, exp: close(float(got), exp, rtol=1e-9, atol=1e-12),
              hint="compare every positive with every negative: count pos > neg as 1 and pos == neg as 1/2, "
                   "then average over all pairs")


def min_k_percent(fn) -> None:
    """``fn(logp, frac)`` -> (N,) the mean of each row's ``max(1, int(frac * T))`` lowest log-probabilities."""
    from book.lab.evaluation import min_k_prob
    g = _g(92)
    cases = []
    for i, (N, T, frac) in enumerate([(3, 10, 0.2), (2, 8, 0.5), (4, 64, 0.1), (5, 7, 0.01), (1, 20, 1.0)]):
        logp = -torch.rand(N, T, generator=g) * 5
        cases.append(Case((logp, frac), min_k_prob(logp, frac), public=i < 2,
                          label=f"{N} passages of {T} tokens, frac {frac}"))
    run_cases("min_k_percent", fn, cases, compare=lambda got, exp: close(got, exp, rtol=1e-5, atol=1e-6),
              hint="sort each row ascending (the least likely tokens first), keep k = max(1, int(frac * T)), "
                   "average them")


def min_detectable_delta(fn) -> None:
    """``fn(p, n)`` -> the accuracy gap ``delta`` that two models (accuracies ``p - delta / 2`` and ``p + delta / 2``,
    ``n`` items each) show as significant (two-sided, 5 %) in 80 % of benchmarks; measured by simulation."""
    from book.lab.evaluation import simulated_power
    cases = [Case((p, n), (p, n), public=i < 2, label=f"p={p}, n={n}")
             for i, (p, n) in enumerate([(0.7, 500), (0.5, 1000), (0.9, 2000), (0.6, 300)])]

    def compare(got, exp):
        p, n = exp
        d = float(got)
        if not 0 < d < 2 * min(p, 1 - p):
            return False, f"expected a gap between 0 and {2 * min(p, 1 - p):.2f}, got {d:.4f}"
        power = simulated_power(n, p - d / 2, d, sims=20000, seed=93)
        ok = abs(power - 0.8) < 0.035
        return ok, "" if ok else f"at this gap the test separates the models in {power:.1%} of benchmarks, not 80 %"
    run_cases("min_detectable_delta", fn, cases, compare=compare,
              hint="the difference of two accuracies has variance about 2 p (1 - p) / n; the gap must exceed "
                   "its z_(0.975) threshold by z_(0.8) standard errors")


def length_controlled_win_rate(fn) -> None:
    """``fn(verdicts, length_diff)`` -> the intercept of the least-squares line of the verdicts on the length
    difference (the win rate at equal length)."""
    from book.lab.evaluation import length_controlled
    rng = np.random.default_rng(94)
    cases = [Case(([1.0, 0.0], [1.0, -1.0]), 0.5, label="two pairs, symmetric"),
             Case(([1.0, 1.0, 0.5, 0.0], [2.0, 1.0, 0.0, -1.0]),
                  length_controlled([1.0, 1.0, 0.5, 0.0], [2.0, 1.0, 0.0, -1.0]), label="four pairs")]
    for n, shift, bias in [(200, 1.0, 0.3), (500, 0.5, 0.0), (50, -1.0, 0.5)]:
        d = rng.standard_normal(n) + shift
        v = (rng.standard_normal(n) + bias * d > 0).astype(float)
        v[rng.random(n) < 0.2] = 0.5
        cases.append(Case((v, d), length_controlled(v, d), public=False,
                          label=f"{n} pairs, mean length difference {shift}"))
    run_cases("length_controlled_win_rate", fn, cases,
              compare=lambda got, exp: close(float(got), exp, rtol=1e-6, atol=1e-9),
              hint="fit v = a + b d by least squares (a design matrix with a column of ones and the "
                   "differences); return a, not the mean of v")
