"""Plotting primitives that also work without a kernel.

Two ideas make the book's figures survive in the static HTML site:

* :class:`LiveFigure` shows a Matplotlib figure through an IPython *display handle* and redraws it in
  place. The notebook stores a plain PNG, so the built page shows the last frame without widget JS.
* :func:`player` renders a list of frames into a self-contained JavaScript player (Matplotlib's
  ``to_jshtml``), so a reader of the static page can step through precomputed states.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib import animation


def even_frames(n: int, max_frames: int) -> np.ndarray:
    """At most ``max_frames`` indices spread evenly over ``0 .. n - 1``, first and last included (for players)."""
    return np.unique(np.linspace(0, n - 1, min(max_frames, n)).round().astype(int))


def in_notebook() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return False
    ip = get_ipython()
    return ip is not None and "IPKernelApp" in getattr(ip, "config", {})


class LiveFigure:
    """A figure shown once and then updated in place: ``live = LiveFigure(fig); ...; live.update()``."""

    def __init__(self, fig: plt.Figure):
        self.fig = fig
        plt.close(fig)  # we display it ourselves; stop the inline backend from showing it a second time
        self.handle = None
        if in_notebook():
            from IPython.display import display
            self.handle = display(fig, display_id=True)

    def update(self):
        if self.handle is not None:
            self.handle.update(self.fig)


def player(draw, n_frames: int, fig: plt.Figure, interval: int = 400):
    """A JavaScript player (works in the static site) of ``n_frames`` frames; ``draw(i)`` redraws ``fig``."""
    from IPython.display import HTML

    def frame(i):
        draw(i)  # whatever draw returns (runs, arrays) is not an artist list: ignore it
        return []
    anim = animation.FuncAnimation(fig, frame, frames=n_frames, interval=interval, blit=False)
    html = anim.to_jshtml(default_mode="once")
    plt.close(fig)
    return HTML(html)


def explore(fig: plt.Figure, draw, **controls) -> LiveFigure:
    """Live controls above a figure that the static site still shows.

    ``controls`` are ipywidgets value widgets, by name; ``draw(**values)`` redraws ``fig`` for their
    current values (it clears what it redraws). The figure is drawn once now and shown through a display
    handle (a PNG kept in the notebook, so the built page shows it without widget JavaScript); with a
    kernel, every change of a control redraws it in place. Unlike plotting inside a ``widgets.Output``,
    nothing is lost when the page is read without a kernel.

        fig, ax = plt.subplots()
        explore(fig, lambda lr: plot_loss(ax, lr), lr=widgets.FloatSlider(0.1, min=0.01, max=1));
    """
    import ipywidgets as w
    from IPython.display import display

    if not isinstance(fig, plt.Figure):
        raise TypeError(f"explore(fig, draw, **controls): fig must be a Matplotlib Figure, got {type(fig).__name__}")
    if not callable(draw):
        raise TypeError(f"draw must be a function of the controls' values, got {type(draw).__name__}")
    bad = [k for k, c in controls.items() if not isinstance(c, w.ValueWidget)]
    if not controls or bad:
        raise TypeError("give the controls as ipywidgets with a value, by name, e.g. "
                        f"explore(fig, draw, lr=widgets.FloatSlider(...)); not widgets: {bad or 'none given'}")

    def values():
        return {k: c.value for k, c in controls.items()}
    draw(**values())
    if in_notebook():
        display(w.HBox(list(controls.values())))
    live = LiveFigure(fig)

    def changed(_change):
        draw(**values())
        live.update()
    for c in controls.values():
        c.observe(changed, names="value")
    return live
