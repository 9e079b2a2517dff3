"""Numbers in the text come from the run: ``glue(name, value)`` here, ``{glue:text}`name:.3f``` in Markdown.

Used by every chapter whose prose quotes a measured value (tests/unit/test_typed_numbers.py flags a
measured-looking number typed into a Markdown cell). When the book is built, myst-nb (installed for the
build) stores the value in the executed notebook and the page shows it, so the page can never disagree
with its own output. Where myst-nb is not installed (Colab, a plain Jupyter) nothing is displayed: the
reader sees the value printed by the code cell instead.
"""
from __future__ import annotations

import math
import numbers


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
        raise ValueError(f"glue({name!r}, {number}): a non-finite value would print as {number} in the text; "
                         "check the run that produced it")
    try:
        from myst_nb import glue as _myst_glue
    except ImportError:
        return value
    _myst_glue(name, number, display=False)
    return value
