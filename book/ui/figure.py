"""Plotting primitives that also work without a kernel.

Two ideas make the book's figures survive in the static HTML site:

* :class:`LiveFigure` shows a Matplotlib figure through an IPython *display handle* and redraws it in
  place. The notebook stores a plain PNG, so the built page shows the last frame without widget JS.
* :func:`player` renders a list of frames into a self-contained JavaScript player (Matplotlib's
  ``to_jshtml``), so a reader of the static page can step through precomputed states.

Controls over a figure are built on these in :mod:`book.ui.explorer` (:class:`~book.ui.explorer.Explorer`,
:func:`~book.ui.explorer.explore`).
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
    """A JavaScript player (works in the static site) of ``n_frames`` frames; ``draw(i)`` redraws ``fig``.

    Each frame is drawn once, by the PNG export (Matplotlib's animation would also redraw the canvas after
    every frame, which no one sees here: a third of the cost)."""
    from IPython.display import HTML

    def frame(i):
        draw(i)  # whatever draw returns (runs, arrays) is not an artist list: ignore it
        return []
    anim = animation.FuncAnimation(fig, frame, frames=n_frames, interval=interval, blit=False)
    canvas = fig.canvas
    canvas.draw_idle = lambda *args, **kwargs: None  # the animation's redraw after each frame (see above)
    try:
        html = anim.to_jshtml(default_mode="once")
    finally:
        del canvas.draw_idle  # the instance attribute shadowed the class's method: back to it
        plt.close(fig)
    return HTML(html)
