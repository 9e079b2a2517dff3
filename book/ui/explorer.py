"""The two contracts every view of the book follows: :class:`Explorer` (settings) and :class:`Replay` (a run).

**Settings-driven views** subclass :class:`Explorer` and write only three things:

* ``defaults`` -- a class dict, every setting and its default (``View(**settings)`` overrides them; an
  unknown name raises ``TypeError`` listing the valid ones, so a setup is one short, checkable value);
* ``_controls()`` -- ``{setting: ipywidgets value widget}`` (the base sets each widget's value from the
  settings and redraws on every change);
* ``draw(**override)`` -- draw the settings, with ``override`` applied, into ``self.figure()``; return
  whatever the chapter may want to check. Start it with ``s = self.resolve(**override)``.

and get ``show()`` (controls + a :class:`~book.ui.figure.LiveFigure`: the static site keeps the last frame,
a kernel redraws in place), ``render(**override)`` (the figure once, no controls) and
``player(key, values, interval=None)`` (precomputed frames as a JavaScript player for readers without a
kernel; ``key`` may be a tuple of settings, each value then a tuple). Optional: ``layout`` (the
``plt.subplots`` keywords; an instance may set its own, e.g. one row per model) or ``_new_figure()`` for
other layouts; ``_validate(s, changed)`` to check and complete settings; ``_status()`` for a line of
HTML under the controls; ``apply_button`` for draws too slow to run on every change (such a draw may
call ``self.refresh()`` to show its progress); ``interval``. A view with constructor arguments (a model,
data) stores them first, then calls ``super().__init__(**settings)``. :func:`explore` puts any ``draw``
function of a figure through the same machinery.

**Views that replay a recorded run** (training dashboards, monitors) mix in :class:`Replay`: they record
frames while the run goes and implement ``_frames()`` and ``_draw_frame(k)``; the mixin gives
``replay(max_frames=24, interval=400)``.
"""
from __future__ import annotations

from functools import partial

import matplotlib.pyplot as plt

from book.config import DRY_COUNT, dry_run
from book.ui.figure import LiveFigure, even_frames, in_notebook, player


class Explorer:
    """Base of every settings-driven view (the contract is in the module docstring)."""

    defaults: dict = {}          # every setting and its default value
    layout: dict = {"figsize": (6, 3)}   # keywords of plt.subplots (nrows, ncols, figsize, gridspec_kw, ...)
    interval: int = 700          # milliseconds per frame of player() when it is not given
    player_keeps_results = False  # True: player() frames compute what later cells read (all drawn in a dry run)
    per_row: int = 3             # controls per row in show()
    apply_button: str | None = None   # a label: controls only change settings; this button redraws

    def __init__(self, **settings):
        unknown = set(settings) - set(self.defaults)
        if unknown:
            raise TypeError(f"unknown settings {sorted(unknown)} for {type(self).__name__}; "
                            f"valid: {sorted(self.defaults)}")
        s = {**self.defaults, **settings}
        self._validate(s, frozenset(settings))
        self.settings = s
        self.fig = self.axes = self.live = None
        self.widgets: dict = {}      # show()'s controls, by setting
        self._status_line = None

    # ------------------------------------------------------------------ what a view writes
    def _controls(self) -> dict:
        """``{setting: ipywidgets value widget}`` for ``show()``; settings without a control stay fixed."""
        return {}

    def draw(self, **override):
        raise NotImplementedError(f"{type(self).__name__} must define draw(**override)")

    def _validate(self, s: dict, changed: frozenset) -> None:
        """Check ``s`` (raise ``ValueError``) and complete it in place; ``changed`` names the settings just set."""

    def _status(self) -> str | None:
        """A line of HTML shown under the controls and updated after every draw (None: no line)."""
        return None

    def _new_figure(self):
        """``(fig, axes)`` for this view: ``plt.subplots(**layout)`` unless a view needs another layout."""
        return plt.subplots(**{"dpi": 80, **self.layout})

    # ------------------------------------------------------------------ what the base gives
    def figure(self):
        """``self.fig``, created (with ``self.axes``) on first use."""
        if self.fig is None:
            self.fig, self.axes = self._new_figure()
        return self.fig

    def resolve(self, **override) -> dict:
        """The settings with ``override`` applied and checked (for ``draw`` and computations)."""
        unknown = set(override) - set(self.settings)
        if unknown:
            raise TypeError(f"unknown settings {sorted(unknown)} for {type(self).__name__}; "
                            f"valid: {sorted(self.settings)}")
        s = {**self.settings, **override}
        if override:
            self._validate(s, frozenset(override))
        return s

    def refresh(self):
        """Show the figure as drawn now: the first call displays it, later calls update it in place."""
        if self.live is None:
            self.live = LiveFigure(self.figure())
        else:
            self.live.update()

    def update(self):
        """Redraw with the current settings and show the result (what every control change does)."""
        out = self.draw()
        self.refresh()
        if self._status_line is not None:
            self._status_line.value = self._status() or ""
        return out

    def show(self):
        """Controls (in a notebook) above the figure, drawn now with the current settings; returns ``self``."""
        import ipywidgets as w
        from IPython.display import display

        self.live = None
        self.widgets = dict(self._controls())
        for key, ctl in self.widgets.items():
            if key not in self.settings:
                raise KeyError(f"control {key!r} is not a setting; settings are {list(self.settings)}")
            ctl.value = self.settings[key]
            ctl.observe(partial(self._changed, key), names="value")
        ctls = list(self.widgets.values())
        rows = [w.HBox(ctls[i:i + self.per_row]) for i in range(0, len(ctls), self.per_row)]
        if self.apply_button:
            button = w.Button(description=self.apply_button, button_style="primary")
            button.on_click(lambda _: self.update())
            rows.append(w.HBox([button]))
        self._status_line = w.HTML() if self._status() is not None else None
        if self._status_line is not None:
            rows.append(self._status_line)
        if in_notebook():
            display(w.VBox(rows))
        self.update()
        return self

    def _changed(self, key, change):
        s = {**self.settings, key: change["new"]}
        self._validate(s, frozenset([key]))
        self.settings = s
        if not self.apply_button:
            self.update()

    def render(self, **override):
        """Draw once (settings plus ``override``) and display the figure without controls; returns ``draw``'s value."""
        out = self.draw(**override)
        self.live = LiveFigure(self.figure())
        return out

    def player(self, key, values, interval: int | None = None):
        """A JavaScript player (works in the static site) with one frame per value of setting ``key``.

        ``key`` may be a tuple of settings; each value is then a tuple, e.g.
        ``player(("sparsity", "bits"), [(0.5, 32), (0.9, 4)])``. ``interval``: milliseconds per frame.
        The dry run (``BOOK_DRYRUN``) draws the first and the last value only, unless the class sets
        ``player_keeps_results = True`` (its frames compute results that later cells read).
        """
        keys = (key,) if isinstance(key, str) else tuple(key)
        for k in keys:
            if k not in self.settings:
                raise KeyError(f"{k!r} is not a setting of {type(self).__name__}; settings are {list(self.settings)}")
        values = list(values)
        if not values:
            raise ValueError("player needs at least one value")
        if len(keys) > 1 and any(not isinstance(v, (tuple, list)) or len(v) != len(keys) for v in values):
            raise ValueError(f"each value must be a tuple of {len(keys)} ({', '.join(keys)}), got {values}")
        frames = [dict(zip(keys, v)) if len(keys) > 1 else {keys[0]: v} for v in values]
        for f in frames:   # fail before any frame is drawn
            self.resolve(**f)
        if dry_run() and not self.player_keeps_results:
            frames = [frames[i] for i in even_frames(len(frames), DRY_COUNT)]
        return player(lambda i: self.draw(**frames[i]), len(frames), self.figure(), interval or self.interval)


class _FunctionExplorer(Explorer):
    """:func:`explore`'s view: the settings are the given widgets' values, ``draw`` the given function."""

    def __init__(self, fig, fn, controls: dict):
        self._fn, self._given = fn, controls
        self.defaults = {k: c.value for k, c in controls.items()}
        super().__init__()
        self.fig, self.axes = fig, fig.axes

    def _controls(self):
        return self._given

    def draw(self, **override):
        return self._fn(**self.resolve(**override))


def explore(fig: plt.Figure, draw, **controls) -> Explorer:
    """Live controls above a figure that the static site still shows; returns the view (an :class:`Explorer`).

    ``controls`` are ipywidgets value widgets, by name; ``draw(**values)`` redraws ``fig`` for their
    current values (it clears what it redraws). The figure is drawn once now and shown through a display
    handle (a PNG kept in the notebook, so the built page shows it without widget JavaScript); with a
    kernel, every change of a control redraws it in place. Unlike plotting inside a ``widgets.Output``,
    nothing is lost when the page is read without a kernel. The returned view's ``player(name, values)``
    precomputes frames for readers without a kernel.

        fig, ax = plt.subplots()
        explore(fig, lambda lr: plot_loss(ax, lr), lr=widgets.FloatSlider(0.1, min=0.01, max=1));
    """
    import ipywidgets as w

    if not isinstance(fig, plt.Figure):
        raise TypeError(f"explore(fig, draw, **controls): fig must be a Matplotlib Figure, got {type(fig).__name__}")
    if not callable(draw):
        raise TypeError(f"draw must be a function of the controls' values, got {type(draw).__name__}")
    bad = [k for k, c in controls.items() if not isinstance(c, w.ValueWidget)]
    if not controls or bad:
        raise TypeError("give the controls as ipywidgets with a value, by name, e.g. "
                        f"explore(fig, draw, lr=widgets.FloatSlider(...)); not widgets: {bad or 'none given'}")
    return _FunctionExplorer(fig, draw, controls).show()


class Replay:
    """Mixin of views that record a run and replay it: ``replay(max_frames=24, interval=400)``.

    A subclass records one frame per redraw point while the run goes and implements ``_frames()`` (how
    many are recorded) and ``_draw_frame(k)`` (draw recorded frame ``k`` into ``self.fig``, creating it if
    needed); ``replay_hint`` says how to record (shown when there is nothing to replay yet).
    """

    replay_hint = "run it first"

    def _frames(self) -> int:
        raise NotImplementedError

    def _draw_frame(self, k: int):
        raise NotImplementedError

    def show_live(self):
        """Show ``self.fig`` live while the run goes: displayed at the first call, redrawn in place at the
        next ones (in ``self.live``). Views call it at each redraw point, after drawing the newest frame."""
        if getattr(self, "live", None) is None:
            self.live = LiveFigure(self.fig)
        else:
            self.live.update()

    def replay(self, max_frames: int = 24, interval: int = 400):
        """A JavaScript player (works in the static site) of at most ``max_frames`` recorded frames, spread
        evenly over the run, first and last included; ``interval``: milliseconds per frame. The dry run
        (``BOOK_DRYRUN``) replays the first and the last frame only: it looks for configuration errors, and
        the pictures are the real run's (drawing a recorded frame changes nothing, so nothing is missed)."""
        n = self._frames()
        if n == 0:
            raise RuntimeError(f"nothing to replay yet: {self.replay_hint}")
        frames = even_frames(n, DRY_COUNT if dry_run() else max_frames)
        self._draw_frame(int(frames[0]))   # makes sure the figure exists
        return player(lambda i: self._draw_frame(int(frames[i])), len(frames), self.fig, interval)


class RunsReplay(Replay):
    """A :class:`Replay` of several named runs recorded one after another and drawn together (one line per
    run). The subclass keeps each run's points, sets ``self.events = []`` and ``self._current = None``, calls
    ``_restart(name)`` when run ``name`` begins (a run recorded again replaces its earlier points) and
    ``_mark(n)`` after recording the current run's ``n``-th point, and implements ``draw(k)`` with
    ``seen(k)``: every run's number of points as it stood after recorded point ``k``."""

    def _restart(self, name: str):
        self._current = name
        self.events = [e for e in self.events if e[0] != name]

    def _mark(self, n: int):
        self.events.append((self._current, n))

    def seen(self, k: int) -> dict[str, int]:
        counts: dict[str, int] = {}
        for name, n in self.events[:k + 1]:
            counts[name] = n
        return counts

    def _frames(self) -> int:
        return len(self.events)

    def _draw_frame(self, k: int):
        self.draw(k)
