"""Self-checks of the history chapter's exercises."""
from __future__ import annotations

import math

import numpy as np

from book.check.core import Case, _rel, close, run_cases

__all__ = ['doubling_months', 'training_flops', 'log_slope', 'years_until', 'tokens_doubling_months',
           'loo_doubling_range']


def doubling_months(fn) -> None:
    """``fn(factor_per_year)`` -> months for a quantity growing by that factor per year to double."""
    cases = [Case((2.0,), 12.0, label="×2 per year doubles in 12 months"),
             Case((4.0,), 6.0), Case((10.0,), 12 * math.log(2) / math.log(10)),
             Case((1.5,), 12 * math.log(2) / math.log(1.5), public=False),
             Case((1000.0,), 12 * math.log(2) / math.log(1000), public=False)]
    run_cases("doubling_months", fn, cases, compare=_rel,
              hint="solve factor**(t/12) = 2 for t by taking logarithms of both sides")


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
    run_cases("log_slope", fn, cases, compare=_rel,
              hint="fit a straight line to (year, log10 value): np.polyfit returns the slope first")


def years_until(fn) -> None:
    """``fn(current, target, doubling_months)`` -> years until ``current`` grows to ``target``."""
    cases = [Case((1.0, 8.0, 12.0), 3.0, label="×8 = three doublings of a year each"),
             Case((175e9, 175e12, 6.0), 0.5 * math.log2(1000)),
             Case((5.0, 5.0, 3.0), 0.0, public=False), Case((1e6, 3e9, 9.0), 0.75 * math.log2(3000), public=False)]
    run_cases("years_until", fn, cases, compare=_rel, hint="number of doublings log2(target/current), each "
              "taking doubling_months / 12 years")


def tokens_doubling_months(fn) -> None:
    """``fn(t_params, t_compute)`` -> doubling time (months) of the training tokens D when parameters N
    double every ``t_params`` months, compute C every ``t_compute`` months, and C = 6·N·D."""
    from book.check._reference import _tokens_doubling_ref as ref  # hidden from graded code
    cases = [Case((12.0, 6.0), ref(12.0, 6.0), label="N every 12 months, C every 6"),
             Case((9.3, 3.4), ref(9.3, 3.4), label="doubling times like the chapter's fits"),
             Case((24.0, 18.0), ref(24.0, 18.0), public=False), Case((5.0, 4.9), ref(5.0, 4.9), public=False)]
    run_cases("tokens_doubling_months", fn, cases, compare=_rel,
              hint="write each quantity as 2**(t / T) and divide: exponents subtract, doubling times do not")


def loo_doubling_range(fn) -> None:
    """``fn(years, values)`` -> ``(shortest, longest)`` doubling time in months among the log-linear fits
    that leave out one point at a time."""
    from book.check._reference import _loo_doubling_ref as ref  # hidden from graded code
    from book.lab.history import load_timeline
    rng = np.random.default_rng(5)
    sized = [m for m in load_timeline() if m.parameters and m.year >= 2012]
    real = ([m.year for m in sized], [m.parameters for m in sized])
    years = np.arange(2010, 2021)
    noisy = (years.tolist(), (10 ** (0.3 * (years - 2010) + rng.normal(0, 0.3, len(years)))).tolist())
    cases = [Case(([2000, 2001, 2002], [1.0, 2.0, 4.0]), ref([2000, 2001, 2002], [1.0, 2.0, 4.0]),
                  label="exact doubling every year: no spread"),
             Case(real, ref(*real), label="the timeline's parameters since 2012"),
             Case(noisy, ref(*noisy), public=False, label="noisy growth")]
    run_cases("loo_doubling_range", fn, cases, compare=lambda g, e: close(tuple(g), e, rtol=1e-6),
              hint="one fit per left-out point; each slope of log10(value) per year becomes a doubling time")
