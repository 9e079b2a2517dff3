"""Numbers in the text come from the run: ``glue(name, value)`` here, ``{glue:text}`name:.3f``` in Markdown.

Used by every chapter whose prose quotes a measured value (tests/unit/test_typed_numbers.py flags a
measured-looking number typed into a Markdown cell). When the book is built, the value is stored in the
executed notebook the way myst-nb's ``glue`` stores it (a display output under the
``application/papermill.record/`` mimetypes), and the page shows it: the page can never disagree with its
own output. That happens where myst-nb is installed (the build) or ``BOOK_GLUE=1`` is set (`make colab`,
whose runs the build reuses); elsewhere (Colab, a plain Jupyter) nothing is displayed, and the reader sees
the value printed by the code cell instead.
"""
from __future__ import annotations

import importlib.util
import math
import numbers
import os

from book.config import dry_run

PREFIX = "application/papermill.record/"   # myst-nb's glue protocol (scrapbook's)


def _storing() -> bool:
    if os.environ.get("BOOK_GLUE", "").strip() not in ("", "0"):
        return True
    return importlib.util.find_spec("myst_nb") is not None


def glue(name: str, value):
    """Make ``value`` (a number) available to the page as ``name``; returns ``value``.

    The Markdown side chooses the format: ``{glue:text}`val_acc:.3f``` or ``{glue:text}`n_params:,```.
    Tensors and NumPy scalars are turned into Python numbers first; anything else raises, with the fix.
    """
    if not isinstance(name, str) or not name.replace("_", "").isalnum():
        raise ValueError(f"glue name must be letters, digits and '_' (it is used in a MyST role), got {name!r}")
    number = value.item() if hasattr(value, "item") and getattr(value, "ndim", 0) == 0 else value
    if not isinstance(number, numbers.Real) or isinstance(number, bool):
        raise TypeError(f"glue({name!r}, ...) takes a number (int, float, 0-d tensor), got {type(value).__name__}; "
                        "glue each number on its own")
    if isinstance(number, float) and not math.isfinite(number):
        if dry_run():   # two steps of a gpu configuration prove the code runs, not what it learns
            return value
        raise ValueError(f"glue({name!r}, {number}): a non-finite value would print as {number} in the text; "
                         "check the run that produced it")
    if not _storing():
        return value
    try:
        from IPython import get_ipython
    except ImportError:
        return value
    if get_ipython() is None:          # a plain Python process: nothing to store the value in
        return value
    from IPython.core.formatters import format_display_data
    from IPython.display import display

    bundle, metadata = format_display_data(number)
    metadata["scrapbook"] = dict(name=name, mime_prefix=PREFIX)
    display({PREFIX + k: v for k, v in bundle.items()}, raw=True, metadata=metadata)
    return value
