"""The book's one UI layer: every interactive view is built from these (see docs/chapter-guide.md).

* :class:`~book.ui.figure.LiveFigure` — a Matplotlib figure behind an IPython display handle, redrawn in
  place while code runs; the static site keeps its last frame.
* :func:`~book.ui.figure.player` — precomputed frames as a self-contained JavaScript player (no kernel).
* :func:`~book.ui.figure.explore` — ipywidgets controls over a figure's ``draw`` function.
* :class:`~book.ui.explorer.Explorer` — the base class of every named view: ``settings``, ``draw``,
  ``show()`` and ``player(key, values)``.
* :class:`~book.ui.dashboard.TrainingDashboard` — the live training dashboard (a ``fit`` callback).
"""
from book.ui.dashboard import TrainingDashboard
from book.ui.explorer import Explorer
from book.ui.figure import LiveFigure, even_frames, explore, in_notebook, player

__all__ = ["Explorer", "LiveFigure", "TrainingDashboard", "even_frames", "explore", "in_notebook", "player"]
