"""The history chapter: book.lab.history (timeline, growth fits, explorer) and its checks."""
import math
from pathlib import Path

import numpy as np
import pytest

from book.lab.history import TimelineExplorer, fit_growth, load_timeline


def test_timeline_table():
    ms = load_timeline()
    assert [m.year for m in ms] == sorted(m.year for m in ms)
    bib = (Path(__file__).resolve().parents[2] / "assets" / "references.bib").read_text(encoding="utf-8")
    for m in ms:
        assert m.domain in {"foundations", "vision", "language", "multimodal"}
        assert "{" + m.source + "," in bib, f"{m.model}: source {m.source} is not in references.bib"
        assert m.parameters is None or m.parameters > 0
    by = {m.model: m for m in ms}
    assert by["GPT-3"].parameters == 175e9 and by["GPT-3"].training_flop == 3.14e23


def test_fit_growth_recovers_a_known_rate():
    years = np.arange(2000, 2011)
    g = fit_growth(years, 5 * 2.0 ** (years - 2000))  # doubles every year
    assert g.doubling_months == pytest.approx(12) and g.factor_per_year == pytest.approx(2)
    assert g(2003) == pytest.approx(40) and g.n_points == 11


@pytest.mark.parametrize("years,values,match", [
    ([2000], [1.0], "at least two"), ([2000, 2000], [1.0, 2.0], "at least two"),
    ([2000, 2001], [1.0, -2.0], "positive"), ([2000, 2001], [1.0], "equally long")])
def test_fit_growth_errors(years, values, match):
    with pytest.raises(ValueError, match=match):
        fit_growth(years, values)


def test_timeline_explorer():
    ex = TimelineExplorer(domains=["vision"], years=(2010, 2020), model="AlexNet")
    assert {m.domain for m in ex.selected()} == {"vision"} and all(2010 <= m.year <= 2020 for m in ex.selected())
    assert "60,000,000 parameters" in ex.facts() and "krizhevsky2012imagenet" in ex.facts()
    ex.draw()
    with pytest.raises(ValueError, match="unknown domains"):
        TimelineExplorer(domains=["music"])
    shown = TimelineExplorer(model="GPT-3").show()
    assert shown.settings["domains"] == tuple(sorted({m.domain for m in load_timeline()}))
    shown.widgets["model"].value = "AlexNet"
    assert shown._status_line.value == shown.facts() and "AlexNet" in shown.facts()


def _loo_range(years, values, log=np.log10):
    months = []
    for i in range(len(years)):
        keep = np.arange(len(years)) != i
        slope = np.polyfit(np.asarray(years, float)[keep], log(np.asarray(values, float)[keep]), 1)[0]
        months.append(12 * math.log10(2) / slope)
    return min(months), max(months)


@pytest.mark.parametrize("name,good,bad", [
    ("doubling_months", lambda f: 12 * math.log(2) / math.log(f), lambda f: 12 / f),
    ("training_flops", lambda n, d: 6 * n * d, lambda n, d: 2 * n * d),
    ("log_slope", lambda y, v: np.polyfit(y, np.log10(v), 1)[0], lambda y, v: np.polyfit(y, np.log(v), 1)[0]),
    ("years_until", lambda c, t, d: math.log2(t / c) * d / 12, lambda c, t, d: math.log2(t / c) * d),
    ("tokens_doubling_months", lambda n, c: 1 / (1 / c - 1 / n), lambda n, c: n - c),
    ("loo_doubling_range", _loo_range, lambda y, v: _loo_range(y, v, log=np.log)),
])
def test_history_checks(name, good, bad, check_verdict):
    check_verdict(name, good, bad)
