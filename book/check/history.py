"""Self-checks of the history chapter's exercises."""
from __future__ import annotations

import math

import numpy as np

from book.check.core import Case, _rel, run_cases

__all__ = ['doubling_months', 'training_flops', 'log_slope', 'years_until']


def doubling_months(fn) -> None:
    """``fn(factor_per_year)`` -> months for a quantity growing by that factor per year to double."""
    cases = [Case((2.0,), 12.0, label="×2 per year doubles in 12 months"),
             Case((4.0,), 6.0), Case((10.0,), 12 * math.log(2) / math.log(10)),
             Case((1.5,), 12 * math.log(2) / math.log(1.5), public=False),
             Case((1000.0,), 12 * math.log(2) / math.log(1000), public=False)]
    run_cases("doubling_months", fn, cases, compare=_rel,
              hint="solve factor**(t/12) = 2 for t: t = 12·ln 2 / ln(factor)")


def training_flops(fn) -> None:
    """``fn(params, tokens)`` -> the usual estimate of training compute, 6·N·D FLOPs."""
    cases = [Case((175e9, 300e9), 6 * 175e9 * 300e9, label="GPT-3: 175B parameters, 300B tokens"),
             Case((70e9, 1.4e12), 6 * 70e9 * 1.4e12, label="Chinchilla: 70B parameters, 1.4T tokens"),
             Case((1.0, 1.0), 6.0, public=False), Case((124e6, 9e9), 6 * 124e6 * 9e9, public=False)]
    run_cases("training_flops", fn, cases, compare=_rel,
              hint="per token and parameter: 2 FLOPs forward, about 4 backward")


def log_slope(fn) -> None:
    """``fn(years, values)`` -> slope of the least-squares line through (year, log10 value)."""
    rng = np.random.default_rng(3)
    cases = [Case(([2000, 2010], [1.0, 100.0]), 0.2, label="two points: ×100 in 10 years")]
    years = np.arange(2012, 2023)
    for slope in (0.35, 0.8):
        vals = 10 ** (slope * (years - 2012) + 6 + rng.normal(0, 0.2, len(years)))
        cases.append(Case((years.tolist(), vals.tolist()), float(np.polyfit(years, np.log10(vals), 1)[0]),
                          public=slope == 0.35, label="noisy growth"))
    run_cases("log_slope", fn, cases, compare=_rel, hint="np.polyfit(years, np.log10(values), 1)[0]")


def years_until(fn) -> None:
    """``fn(current, target, doubling_months)`` -> years until ``current`` grows to ``target``."""
    cases = [Case((1.0, 8.0, 12.0), 3.0, label="×8 = three doublings of a year each"),
             Case((175e9, 175e12, 6.0), 0.5 * math.log2(1000)),
             Case((5.0, 5.0, 3.0), 0.0, public=False), Case((1e6, 3e9, 9.0), 0.75 * math.log2(3000), public=False)]
    run_cases("years_until", fn, cases, compare=_rel, hint="number of doublings log2(target/current), each "
              "taking doubling_months / 12 years")
