"""The book's one UI layer: every interactive view is built from these (see docs/chapter-guide.md).

* :class:`~book.ui.figure.LiveFigure` — a Matplotlib figure behind an IPython display handle, redrawn in
  place while code runs; the static site keeps its last frame.
* :func:`~book.ui.figure.player` — precomputed frames as a self-contained JavaScript player (no kernel).
* :class:`~book.ui.explorer.Explorer` — the base of every settings-driven view, and
  :func:`~book.ui.explorer.explore`, the same machinery over any figure's ``draw`` function.
* :class:`~book.ui.explorer.Replay` — the mixin of every view that replays a recorded run.
* :class:`~book.ui.explorer.RunsReplay` — a Replay of several named runs drawn together (one line each).
* :class:`~book.ui.dashboard.TrainingDashboard` — the live training dashboard (a ``fit`` callback, a Replay).

Two contracts, one each for the two kinds of view:

**Settings** (:class:`~book.ui.explorer.Explorer`). ``View(**settings)`` (unknown names raise ``TypeError``
listing the valid ones); ``view.settings`` is one dict, so ``View(**view.settings)`` rebuilds the setup;
``view.draw(**override)`` draws into ``view.fig`` and returns what a chapter may check;
``view.show()`` displays controls over the figure (the static site keeps its last frame) and returns the
view; ``view.render(**override)`` displays the figure once without controls;
``view.player(key, values, interval=None)`` precomputes one frame per value of setting ``key`` (a tuple of
settings takes tuples of values) as a JavaScript player. A view writes only ``defaults``,
``_controls()`` and ``draw``. ``explore(fig, draw, **widgets)`` builds such a view from a function.

**Replay** (:class:`~book.ui.explorer.Replay`). A view that records a run (``TrainingDashboard``, the
Playground's training, the VAE's ``SampleMonitor``) offers ``view.replay(max_frames=24, interval=400)``:
a JavaScript player of at most ``max_frames`` recorded frames spread over the run, first and last
included; before anything is recorded it raises ``RuntimeError`` saying how to record.

This package imports only the standard library, numpy, matplotlib, torch, ipywidgets, IPython and
``book.config``/``book.train`` — never ``book.lab`` or ``book.nn`` (which build on it).
"""
from book.ui.dashboard import TrainingDashboard
from book.ui.explorer import Explorer, Replay, RunsReplay, explore
from book.ui.figure import LiveFigure, even_frames, in_notebook, player
from book.ui.glued import glue

__all__ = ["glue", "Explorer", "LiveFigure", "Replay", "RunsReplay", "TrainingDashboard", "even_frames", "explore",
           "in_notebook", "player"]
