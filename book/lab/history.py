"""The history of large models as data: a table of milestones, growth-rate fits, and an explorer.

Chapters: ``history``; ``generative`` reuses :func:`load_timeline`.
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass

import numpy as np

from book.data import asset
from book.ui import Explorer

DOMAIN_COLORS = {"foundations": "tab:gray", "vision": "tab:blue", "language": "tab:red", "multimodal": "tab:purple"}


@dataclass(frozen=True)
class Milestone:
    year: int
    model: str
    organisation: str
    domain: str
    parameters: float | None   # as published; None where the source gives none
    training_flop: float | None
    source: str                # key in assets/references.bib
    note: str


def load_timeline() -> list[Milestone]:
    """The shipped table ``assets/data/timeline.csv`` (SHA-256 checked), sorted by year."""
    rows = []
    with open(asset("timeline.csv"), newline="", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            rows.append(Milestone(int(r["year"]), r["model"], r["organisation"], r["domain"],
                                  float(r["parameters"]) if r["parameters"] else None,
                                  float(r["training_flop"]) if r["training_flop"] else None,
                                  r["source"], r["note"]))
    return sorted(rows, key=lambda m: m.year)


@dataclass(frozen=True)
class Growth:
    """An exponential fit ``value ≈ 10**(intercept + slope * year)``."""

    slope: float      # log10 units per year
    intercept: float
    n_points: int
    first_year: float = 0.0
    last_year: float = 0.0

    @property
    def factor_per_year(self) -> float:
        return 10 ** self.slope

    @property
    def doubling_months(self) -> float:
        return 12 * math.log10(2) / self.slope

    def __call__(self, year):
        return 10 ** (self.intercept + self.slope * np.asarray(year, dtype=float))


def fit_growth(years, values) -> Growth:
    """Least-squares line through ``(year, log10 value)``: the exponential growth rate of ``values``."""
    years = np.asarray(years, dtype=float)
    values = np.asarray(values, dtype=float)
    if years.shape != values.shape or years.ndim != 1:
        raise ValueError(f"years and values must be 1-D and equally long, got {years.shape} and {values.shape}")
    if len(years) < 2 or np.ptp(years) == 0:
        raise ValueError("need at least two points from different years to fit a growth rate")
    if (values <= 0).any() or not np.isfinite(values).all():
        raise ValueError("values must be positive and finite (they are fitted on a log scale)")
    slope, intercept = np.polyfit(years, np.log10(values), 1)
    return Growth(float(slope), float(intercept), len(years), float(years.min()), float(years.max()))


def plot_timeline(ax, milestones, key: str = "parameters", log: bool = True, growth: Growth | None = None,
                  highlight: str | None = None):
    """Scatter ``key`` (parameters or training_flop) against year, coloured by domain, with an optional fit."""
    pts = [m for m in milestones if getattr(m, key) is not None]
    for dom, color in DOMAIN_COLORS.items():
        sel = [m for m in pts if m.domain == dom]
        if sel:
            ax.scatter([m.year for m in sel], [getattr(m, key) for m in sel], color=color, label=dom, zorder=3)
    for m in pts:
        ax.annotate(m.model, (m.year, getattr(m, key)), fontsize=7, xytext=(3, 3), textcoords="offset points",
                    fontweight="bold" if m.model == highlight else "normal")
    if growth is not None:
        xs = np.linspace(growth.first_year, growth.last_year, 50)  # only over the years that were fitted
        ax.plot(xs, growth(xs), "k--", lw=1, label=f"fit: ×2 every {growth.doubling_months:.1f} months")
    ax.set_yscale("log" if log else "linear")
    ax.set_xlabel("year")
    ax.set_ylabel({"parameters": "parameters", "training_flop": "training compute (FLOP)"}[key])
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3)


class TimelineExplorer(Explorer):
    """Filter the timeline by domain and years, toggle the log scale, pick a model to read its facts.

    Settings ``domains`` (default: all), ``years`` (first, last), ``log`` and ``model`` (a name in the
    table, or None); the picked model's facts appear under the controls (the :class:`~book.ui.explorer.Explorer`
    contract).
    """

    defaults = dict(domains=None, years=(1950, 2025), log=True, model=None)
    layout = dict(ncols=2, figsize=(12, 4.2))

    def __init__(self, **settings):
        self.milestones = load_timeline()
        super().__init__(**settings)

    def _validate(self, s, changed):
        known = sorted({m.domain for m in self.milestones})
        s["domains"] = tuple(known if s["domains"] is None else s["domains"])
        unknown = set(s["domains"]) - set(known)
        if unknown:
            raise ValueError(f"unknown domains {sorted(unknown)}; the table has {known}")
        s["years"] = tuple(s["years"])
        if s["model"] is not None and s["model"] not in {m.model for m in self.milestones}:
            raise ValueError(f"unknown model {s['model']!r}; see load_timeline() for the names")

    def _controls(self):
        import ipywidgets as w
        return {"domains": w.SelectMultiple(options=sorted({m.domain for m in self.milestones}), description="domains"),
                "years": w.IntRangeSlider(min=1950, max=2025, description="years"),
                "log": w.Checkbox(description="log scale"),
                "model": w.Dropdown(options=[None] + [m.model for m in self.milestones], description="model")}

    def _status(self) -> str:
        return self.facts()

    def selected(self, **override) -> list[Milestone]:
        s = self.resolve(**override)
        return [m for m in self.milestones if m.domain in s["domains"] and s["years"][0] <= m.year <= s["years"][1]]

    def facts(self, **override) -> str:
        name = self.resolve(**override)["model"]
        m = next((m for m in self.milestones if m.model == name), None)
        if m is None:
            return ""
        size = f"{m.parameters:,.0f} parameters" if m.parameters else "no parameter count"
        flop = f", {m.training_flop:.2g} FLOP of training" if m.training_flop else ""
        return f"{m.model} ({m.year}, {m.organisation}): {size}{flop}. {m.note} [source: {m.source}]"

    def draw(self, **override) -> list[Milestone]:
        """Draw the settings (plus ``override``); returns the selected milestones."""
        s = self.resolve(**override)
        sel = self.selected(**override)
        self.figure()
        for ax, key in zip(self.axes, ("parameters", "training_flop")):
            ax.clear()
            pts = [m for m in sel if getattr(m, key)]
            growth = fit_growth([m.year for m in pts], [getattr(m, key) for m in pts]) if len(
                {m.year for m in pts}) >= 2 else None
            plot_timeline(ax, sel, key, s["log"], growth, s["model"])
        self.axes[0].set_title("parameters of published models")
        self.axes[1].set_title("training compute, where the paper states it")
        self.fig.tight_layout()
        return sel
