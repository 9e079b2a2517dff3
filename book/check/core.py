"""The machinery behind every exercise self-check.

A check runs the reader's function on *public* cases (shown in full) and *extra* cases (random or edge
inputs, shown only when they fail), then prints one line per case and a summary. Set the environment
variable ``BOOK_STRICT=1`` to make a failing or unattempted check raise :class:`CheckFailed` -- CI uses it
to prove the hidden solutions pass, and autograders use it to turn a check cell into a pass/fail test.
"""
from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

results: dict[str, tuple[int, int]] = {}  # check name -> (passed, total), for teachers' scripts


class CheckFailed(AssertionError):
    """Raised in strict mode when a self-check does not pass."""


def strict() -> bool:
    return os.environ.get("BOOK_STRICT", "").strip() not in ("", "0", "false", "False")


@contextlib.contextmanager
def raising():
    """Strict mode inside a ``with`` block: ``with check.raising(): check.adam_step(adam_step)``.

    Used by nbgrader test cells, so that grading cannot silently pass when ``BOOK_STRICT`` is unset.
    """
    old = os.environ.get("BOOK_STRICT")
    os.environ["BOOK_STRICT"] = "1"
    try:
        yield
    finally:
        if old is None:
            del os.environ["BOOK_STRICT"]
        else:
            os.environ["BOOK_STRICT"] = old


@dataclass
class Case:
    args: tuple
    expected: Any
    kwargs: dict | None = None
    public: bool = True
    label: str = ""


def _to_array(x):
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().double().numpy()
    if isinstance(x, (list, tuple)) and x and all(isinstance(i, torch.Tensor) for i in x):
        return [_to_array(i) for i in x]
    return np.asarray(x, dtype=float)


def close(got, expected, rtol: float = 1e-5, atol: float = 1e-7) -> tuple[bool, str]:
    """Compare numbers, arrays, tensors or tuples of them; return (ok, reason-if-not)."""
    if isinstance(expected, tuple):
        if not isinstance(got, (tuple, list)) or len(got) != len(expected):
            return False, f"expected a tuple of {len(expected)} values, got {type(got).__name__}"
        for i, (g, e) in enumerate(zip(got, expected)):
            ok, why = close(g, e, rtol, atol)
            if not ok:
                return False, f"item {i}: {why}"
        return True, ""
    if isinstance(expected, torch.Tensor) and not isinstance(got, torch.Tensor):
        return False, f"expected a torch.Tensor, got {type(got).__name__}"
    try:
        g, e = _to_array(got), _to_array(expected)
    except (TypeError, ValueError):
        return False, f"could not read {type(got).__name__} as numbers"
    if np.shape(g) != np.shape(e):
        return False, f"expected shape {np.shape(e)}, got {np.shape(g)}"
    if not np.allclose(g, e, rtol=rtol, atol=atol, equal_nan=True):
        if not np.isfinite(g).all() and np.isfinite(e).all():
            return False, "got inf or NaN where finite values were expected (numerical overflow?)"
        with np.errstate(invalid="ignore"):
            return False, f"values differ (max abs error {np.nanmax(np.abs(g - e)):.3g})"
    return True, ""


def _fmt(x, width: int = 60) -> str:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().tolist()
    if isinstance(x, float):
        s = f"{x:.6g}"
    elif isinstance(x, tuple):
        s = "(" + ", ".join(_fmt(i, width) for i in x) + ")"
    else:
        s = repr(x)
    return s if len(s) <= width else s[: width - 3] + "..."


def run_cases(name: str, fn: Callable, cases: list[Case], compare: Callable = close, hint: str = "") -> bool:
    """Run ``fn`` on every case, print a report, record it in ``results``; strict mode raises on failure."""
    if not callable(fn):
        raise TypeError(f"check.{name} takes your function itself, e.g. check.{name}(my_fn), "
                        f"not {type(fn).__name__}")
    lines, passed = [], 0
    for i, case in enumerate(cases, 1):
        kind = "public" if case.public else "extra"
        label = case.label or ", ".join(_fmt(a, 30) for a in case.args)
        try:
            got = fn(*case.args, **(case.kwargs or {}))
        except NotImplementedError:
            lines.append("  … not attempted yet: replace `raise NotImplementedError` with your code")
            break
        except Exception as e:  # report the reader's bug as a failed case, not as a crash of the check
            lines.append(f"  ✗ case {i} ({kind}) {label}: raised {type(e).__name__}: {e}")
            continue
        ok, why = compare(got, case.expected)
        if ok:
            passed += 1
            lines.append(f"  ✓ case {i} ({kind}) {label}")
        else:
            detail = f"expected {_fmt(case.expected)}, got {_fmt(got)}" if case.public else "(hidden inputs)"
            lines.append(f"  ✗ case {i} ({kind}) {label}: {why}; {detail}")
    total = len(cases)
    results[name] = (passed, total)
    ok = passed == total
    head = f"check {name}: {passed}/{total} cases passed " + ("✓" if ok else "✗")
    print("\n".join([head, *lines] + ([f"  hint: {hint}"] if hint and not ok else [])))
    if not ok and strict():
        raise CheckFailed(f"{name}: {passed}/{total} cases passed")
    return ok


def _g(seed: int) -> torch.Generator:
    """A seeded CPU generator: the random cases of a check are the same on every run."""
    return torch.Generator().manual_seed(seed)


def _number(got) -> tuple[float | None, str]:
    """``(float(got), "")``, or ``(None, why)`` when an answer that must be one number is not: the first step of
    every comparator of a single number."""
    try:
        return float(got), ""
    except (TypeError, ValueError):
        return None, f"expected a number, got {type(got).__name__}"


def _rel(got, expected) -> tuple[bool, str]:
    g, why = _number(got)
    if g is None:
        return False, why
    ok = math.isclose(g, expected, rel_tol=1e-6, abs_tol=1e-9)
    return ok, "" if ok else f"off by {abs(g - expected) / max(abs(expected), 1e-12):.1%}"
