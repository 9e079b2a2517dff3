"""The one base of the book's interactive views: :class:`Explorer`.

A view has ``settings`` (one dict with ``defaults``), ``draw(**override)`` (Matplotlib, into ``self.fig``),
``show()`` (ipywidgets controls + a :class:`~book.ui.figure.LiveFigure` that keeps its last frame in the
static site) and ``player(key, values)`` (a precomputed JavaScript player for readers without a kernel).
"""
from __future__ import annotations

from book.ui.figure import LiveFigure, player


class Explorer:
    controls: dict = {}

    def __init__(self, **settings):
        unknown = set(settings) - set(self.defaults)
        if unknown:
            raise TypeError(f"unknown settings {sorted(unknown)}; valid: {sorted(self.defaults)}")
        self.settings = {**self.defaults, **settings}
        self.fig = None
        self.live = None

    def show(self):
        import ipywidgets as w
        from IPython.display import display

        ctls = {k: make() for k, make in self._controls().items()}
        for k, c in ctls.items():
            c.value = self.settings[k]

            def changed(change, k=k):
                self.settings[k] = change["new"]
                self.draw()
                self.live.update()
            c.observe(changed, names="value")
        display(w.HBox(list(ctls.values())))
        self.draw()
        self.live = LiveFigure(self.fig)
        return self

    def player(self, key: str, values, interval: int = 700):
        if key not in self.settings:
            raise KeyError(f"{key!r} is not a setting; settings are {list(self.settings)}")
        values = list(values)
        self.draw()
        return player(lambda i: self.draw(**{key: values[i]}), len(values), self.fig, interval)
