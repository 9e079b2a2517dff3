"""Grading submissions from the teacher's copy, with results the submission cannot forge.

How a submission is graded (see ``teaching.md`` for the threat model):

1. Only the *source of its solution cells* is taken (cells whose nbgrader ``grade_id`` is
   ``<label>-solution``). Every other cell -- set-up, check cells, metadata -- comes from the teacher's
   chapter; stored outputs are ignored.
2. The assembled notebook runs in a sandbox (:mod:`book.teach.sandbox`). Check cells are not run there:
   at each one the namespace is remembered instead.
3. After the cells ran, the grader sends *probes*: for a ``check.NAME(fn)`` call, the inputs of that
   check's cases (built here, in the grader's process); for other check-cell statements and hidden tests,
   the expressions whose value is compared (of ``assert a == b`` only ``a`` is sent). The sandbox returns
   values as JSON, never a verdict.
4. Here, outside the sandbox, values are compared with the check's own expected values (built here) or
   with the values the teacher's solution gave in its own sandboxed run. Only matching values score.
"""
from __future__ import annotations

import ast
import csv
import math
import os
import pickle
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from book.teach.sandbox import OUTPUT_END, Limits, Sandbox, subreaper

MAX_NOTEBOOK_MB = 50
FEEDBACK_OUTPUT_CHARS = 4000
CSV_RISKY = ("=", "+", "-", "@", "\t", "\r", "\n")


def printable(s: str) -> str:
    """Text from file names in any encoding, made valid UTF-8 (undecodable bytes become U+FFFD)."""
    return s.encode("utf-8", errors="surrogateescape").decode("utf-8", errors="replace")


def warn(msg: str, sink: list | None = None):
    msg = printable(msg)
    print(f"warning: {msg}", file=sys.stderr)
    if sink is not None:
        sink.append(msg)


# --------------------------------------------------------------------------- hidden tests and probes
def read_hidden_tests(path: Path | None) -> dict[str, str]:
    """A Python file split into sections by lines ``# exercise: <label>``; each section is extra test code."""
    if path is None:
        return {}
    tests, label = {}, None
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        m = re.match(r"^#\s*exercise:\s*(\S+)\s*$", line)
        if m:
            label = m.group(1)
            tests[label] = ""
        elif label is not None:
            tests[label] += line + "\n"
    return {k: v.strip() for k, v in tests.items() if v.strip()}


def _check_call(node) -> tuple[str, str] | None:
    """``check.NAME(fn)`` or ``book.check.NAME(fn)`` as a statement -> (NAME, source of fn)."""
    if not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)):
        return None
    f, call = node.value.func, node.value
    owner = f.value if isinstance(f, ast.Attribute) else None
    named = isinstance(owner, ast.Name) and owner.id == "check" or (
        isinstance(owner, ast.Attribute) and owner.attr == "check")
    if not named or len(call.args) != 1 or call.keywords:
        return None
    return f.attr, ast.unparse(call.args[0])


def probe_steps(source: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Split test code into ``check.NAME(fn)`` calls and steps: ("exec", code) or ("probe", expression).

    An ``assert a == b`` becomes the probe ``a`` (its value is compared with the teacher's ``a``; ``b``
    never reaches the submission); ``assert f(x, y)`` probes ``x`` and ``y``; a bare expression is probed.
    """
    tree = ast.parse(source)
    calls, steps = [], []
    for node in tree.body:
        found = _check_call(node)
        if found:
            calls.append(found)
        elif isinstance(node, ast.Assert):
            t = node.test
            if isinstance(t, ast.Compare):
                exprs = [t.left]
            elif isinstance(t, ast.Call):
                exprs = [a for a in t.args if not isinstance(a, ast.Constant)] or [t]
            else:
                exprs = [t]
            steps += [("probe", ast.unparse(e)) for e in exprs]
        elif isinstance(node, ast.Expr):
            steps.append(("probe", ast.unparse(node.value)))
        else:
            steps.append(("exec", ast.unparse(node)))
    return calls, steps


def capture_cases(name: str):
    """The cases (inputs and expected values) of ``book.check.NAME``, built here in the grader's process."""
    from book import check

    fn = getattr(check, name, None)
    if not callable(fn):
        raise ValueError(f"book.check has no check named {name!r}")
    module = sys.modules[fn.__module__]
    captured = {}

    class Captured(Exception):
        pass

    def capture(_name, _fn, cases, compare=None, hint=""):
        captured.update(cases=cases, compare=compare or check.close)
        raise Captured

    old = module.run_cases
    module.run_cases = capture
    try:
        fn(lambda *a, **k: None)
    except Captured:
        pass
    finally:
        module.run_cases = old
    if not captured:
        raise ValueError(f"check.{name} did not build its cases through run_cases")
    return captured["cases"], captured["compare"]


# --------------------------------------------------------------------------- values from the sandbox
_DTYPES = {"float16", "float32", "float64", "bfloat16", "int8", "int16", "int32", "int64", "uint8", "bool",
           "complex64", "complex128"}


class Opaque:
    """A value the sandbox could not describe (an object): equal to nothing."""

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return f"<{self.name}>"


def _special(v):
    if isinstance(v, list):
        return [_special(i) for i in v]
    if isinstance(v, dict) and "float" in v:
        return float(v["float"]) if v["float"] in ("nan", "inf", "-inf") else math.nan
    return v


def decode(v, depth=0):
    """Rebuild a value reported by the sandbox (JSON only: nothing from the submission is unpickled)."""
    if depth > 40:
        return Opaque("too deep")
    if isinstance(v, list):
        return [decode(i, depth + 1) for i in v]
    if not isinstance(v, dict):
        return v
    if "tuple" in v:
        return tuple(decode(i, depth + 1) for i in v["tuple"])
    if "dict" in v:
        try:
            return {decode(k, depth + 1): decode(x, depth + 1) for k, x in v["dict"]}
        except TypeError:
            return Opaque("dict")
    if "bigint" in v:
        return int(str(v["bigint"])[:400])
    if "float" in v:
        return _special(v)
    dtype = str(v.get("dtype", "")).rsplit(".", 1)[-1]
    if dtype not in _DTYPES:
        return Opaque(f"array of {dtype}")
    if "tensor" in v:
        import torch
        try:
            return torch.tensor(_special(v["tensor"]), dtype=getattr(torch, dtype))
        except (TypeError, ValueError, RuntimeError):
            return Opaque("tensor")
    if "ndarray" in v:
        import numpy as np
        try:
            return np.array(_special(v["ndarray"]), dtype=dtype if dtype != "bfloat16" else "float32")
        except (TypeError, ValueError):
            return Opaque("ndarray")
    return Opaque(str(v.get("object", "object")))


def same(got, exp, rtol=1e-5, atol=1e-7) -> tuple[bool, str]:
    """Compare a submission's value with the teacher's (numbers with a tolerance, everything else exactly)."""
    import numpy as np
    if isinstance(exp, (tuple, list)):
        if not isinstance(got, (tuple, list)) or len(got) != len(exp):
            return False, f"expected {len(exp)} values"
        for g, e in zip(got, exp):
            ok, why = same(g, e, rtol, atol)
            if not ok:
                return False, why
        return True, ""
    if isinstance(exp, dict):
        if not isinstance(got, dict) or set(got) != set(exp):
            return False, "different keys"
        return same([got[k] for k in exp], [exp[k] for k in exp], rtol, atol)
    if exp is None or isinstance(exp, (str, bool, Opaque)) or isinstance(got, (str, bool, Opaque, type(None))):
        ok = type(got) is type(exp) and got == exp and not isinstance(exp, Opaque)
        return ok, "" if ok else "different value"
    try:
        g, e = np.asarray(_numpy(got), dtype=float), np.asarray(_numpy(exp), dtype=float)
    except (TypeError, ValueError):
        return False, "not numbers"
    if g.shape != e.shape:
        return False, f"expected shape {e.shape}, got {g.shape}"
    ok = bool(np.allclose(g, e, rtol=rtol, atol=atol, equal_nan=True))
    return ok, "" if ok else "values differ"


def _numpy(x):
    if type(x).__module__.startswith("torch"):
        return x.detach().cpu().double().numpy()
    return x


# --------------------------------------------------------------------------- the teacher's copy
@dataclass
class Part:
    """One scored unit of an exercise: its check cell or its hidden test."""
    label: str
    kind: str                      # "check" or "hidden"
    calls: list = field(default_factory=list)   # [(check name, fn source, cases, compare, probe id)]
    steps: list = field(default_factory=list)   # [("exec"|"probe", source)]
    step_probe: int | None = None  # probe id of the steps
    expected: list = field(default_factory=list)  # teacher's values of the step probes


class Assignment:
    """The teacher's chapter, the exercises graded, and the probes of each."""

    def __init__(self, chapter: Path, exercises: list[str] | None, hidden: dict[str, str], warnings: list):
        from book.teach.student import find_exercises, stub_source
        self.path = Path(chapter)
        self.nb = nbformat.read(self.path, as_version=4)
        self.all = {e.label: e for e in find_exercises(self.nb)}
        if not self.all:
            raise ValueError(f"{chapter} has no exercises: grading needs the teacher's chapter with solutions")
        unknown = set(exercises or ()) - set(self.all)
        if unknown:
            raise ValueError(f"unknown exercise labels {sorted(unknown)}; {chapter} has {list(self.all)}")
        self.labels = [lb for lb in self.all if exercises is None or lb in exercises]
        for lb in sorted(set(hidden) - set(self.all)):
            warn(f"hidden tests for {lb!r}: no such exercise in {self.path.name} (a typo?); they are NOT used",
                 warnings)
        for lb in sorted(set(hidden) & set(self.all) - set(self.labels)):
            warn(f"hidden tests for {lb!r} are unused: that exercise is not graded (--exercises)", warnings)
        self.stubs = {lb: stub_source(self.nb.cells[self.all[lb].solution].source, lb)
                      for lb in self.labels if self.all[lb].solution is not None}
        self.parts, self.probes = [], []
        for lb in self.labels:
            e = self.all[lb]
            if e.check is not None:
                self._add_part(lb, "check", self.nb.cells[e.check].source)
            if lb in hidden:
                self._add_part(lb, "hidden", hidden[lb])

    def _add_part(self, label, kind, source):
        try:
            calls, steps = probe_steps(source)
        except SyntaxError as e:
            raise ValueError(f"{kind} code of {label} is not valid Python: {e}") from e
        part = Part(label, kind, steps=steps)
        for name, fn_src in calls:
            cases, compare = capture_cases(name)
            pid = len(self.probes)
            self.probes.append({"id": pid, "snapshot": label, "call": fn_src,
                                "args": [(c.args, c.kwargs or {}) for c in cases]})
            part.calls.append((name, fn_src, cases, compare, pid))
        if steps:
            part.step_probe = len(self.probes)
            self.probes.append({"id": part.step_probe, "snapshot": label, "steps": steps})
        if part.calls or part.steps:
            self.parts.append(part)

    def cells(self, solutions: dict[str, str] | None) -> list[dict]:
        """The notebook to run: the teacher's cells, with ``solutions`` (None: the teacher's own)."""
        by_index = {}
        for lb, e in self.all.items():
            graded = lb in self.labels
            if e.solution is not None:
                src = self.nb.cells[e.solution].source if solutions is None else solutions.get(lb, self.stubs.get(lb))
                by_index[e.solution] = {"kind": "cell", "index": e.solution, "source": src} if graded else None
            if e.check is not None:
                by_index[e.check] = {"kind": "snapshot", "label": lb} if graded else None
        cells = []
        for i, cell in enumerate(self.nb.cells):
            if cell.cell_type != "code" or "skip-execution" in cell.metadata.get("tags", []):
                continue
            item = by_index.get(i, {"kind": "cell", "index": i, "source": cell.source})
            if item is not None:
                cells.append(item)
        return cells


# --------------------------------------------------------------------------- running and scoring
RUNNER = Path(__file__).with_name("runner.py")


def run_job(sandbox: Sandbox, root: Path, name: str, cells: list, probes: list, probe_seconds: int):
    """Run ``cells`` then ``probes`` in a fresh work folder under ``root``; return (outcome, values by probe)."""
    job = Path(tempfile.mkdtemp(prefix="job-", dir=root))
    try:
        shutil.copy(RUNNER, job / "runner.py")
        with open(job / "job.pkl", "wb") as f:
            pickle.dump({"cells": cells, "probe_seconds": probe_seconds, "output_end": OUTPUT_END}, f)
        outcome = sandbox.run(job, pickle.dumps(probes))
    finally:
        shutil.rmtree(job, ignore_errors=True)
    values, cell_errors = {}, []
    for msg in outcome.messages:
        if isinstance(msg.get("probe"), int) and isinstance(msg.get("values"), list):
            values.setdefault(msg["probe"], msg["values"])  # the first report counts
        elif isinstance(msg.get("cell"), int) and msg.get("error"):
            cell_errors.append((msg["cell"], str(msg["error"])[:500]))
    return outcome, values, cell_errors


def _value(reported, i):
    """The i-th value of a probe: (True, value) or (False, error text)."""
    if not isinstance(reported, list) or i >= len(reported) or not isinstance(reported[i], dict):
        return False, "no value (the code did not get this far)"
    r = reported[i]
    if "value" in r:
        return True, decode(r["value"])
    return False, str(r.get("error", "no value"))[:300]


def _fmt(x, width=60):
    s = repr(x.tolist() if hasattr(x, "tolist") else x)
    return s if len(s) <= width else s[: width - 3] + "..."


def score_part(part: Part, values: dict) -> tuple[float, list[str]]:
    """Fraction of the part's cases / probes whose value matches, and feedback lines (no hidden code)."""
    passed, total, lines = 0, 0, []
    for name, _src, cases, compare, pid in part.calls:
        ok_n = 0
        for i, case in enumerate(cases):
            have, got = _value(values.get(pid), i)
            ok, why = _safe_compare(compare)(got, case.expected) if have else (False, got)
            ok_n += ok
            kind = "public" if case.public else "extra"
            label = case.label or f"case {i + 1}"
            detail = ""
            if not ok and case.public and have:
                detail = f"; expected {_fmt(case.expected)}, got {_fmt(got)}"
            lines.append(f"  {'✓' if ok else '✗'} case {i + 1} ({kind}) {label}" + ("" if ok else f": {why}{detail}"))
        lines.insert(len(lines) - len(cases), f"check {name}: {ok_n}/{len(cases)} cases passed")
        passed, total = passed + ok_n, total + len(cases)
    if part.step_probe is not None:
        n = len(part.expected)
        ok_n = 0
        for i, exp in enumerate(part.expected):
            have, got = _value(values.get(part.step_probe), i)
            ok = have and same(got, exp)[0]
            ok_n += ok
            if part.kind == "check":
                lines.append(f"  {'✓' if ok else '✗'} test {i + 1} of the check cell"
                             + ("" if ok or have else f": {got}"))
        if part.kind == "hidden":  # never show hidden code, inputs or values
            lines.append(f"hidden tests: {ok_n}/{n} passed")
        passed, total = passed + ok_n, total + n
    return (passed / total if total else 0.0), lines


def _safe_compare(compare):
    def run(got, exp):
        try:
            ok, why = compare(got, exp)
            return bool(ok), why
        except Exception as e:  # an odd value must fail the case, not the grader
            return False, f"could not compare: {type(e).__name__}"
    return run


# --------------------------------------------------------------------------- submissions
def _display_name(path: Path, root: Path) -> str:
    """Student id from the file's path below the submissions folder (any bytes made printable)."""
    rel = os.fsencode(path.relative_to(root).with_suffix("")).decode("utf-8", errors="replace")
    return rel.replace(os.sep, "/")


def _person(name: str) -> str:
    """What two files of the same student have in common: 'Copy of alice (1)' -> 'alice'."""
    s = name.rsplit("/", 1)[-1].lower().strip()
    for _ in range(3):
        s = re.sub(r"^copy of\s+|\s*\(\d+\)$|[\s_-]+(copy|\d)$", "", s).strip()
    return s


def find_submissions(folder: Path, warnings: list) -> list[tuple[str, Path]]:
    """Every notebook below ``folder`` (any case of .ipynb, sub-folders too); warn about what is skipped."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        keep = []
        for d in sorted(dirnames):
            if d.startswith(".") or d == "__pycache__":
                warn(f"skipped folder {os.path.join(dirpath, d)!r} (hidden or a checkpoint folder)", warnings)
            else:
                keep.append(d)
        dirnames[:] = keep
        for fn in sorted(filenames):
            path = Path(dirpath) / fn
            if fn.lower().endswith(".ipynb") and not fn.startswith("."):
                found.append((_display_name(path, Path(folder)), path))
            else:
                warn(f"skipped {str(path)!r}: not a .ipynb notebook", warnings)
    people: dict[str, list[str]] = {}
    for name, _ in found:
        people.setdefault(_person(name), []).append(name)
    for names in people.values():
        if len(names) > 1:
            warn(f"these look like the same student (each is graded): {', '.join(names)}", warnings)
    return found


def student_solutions(path: Path, labels: list[str]) -> tuple[dict[str, str], list[str]]:
    """Source of the solution cells of a submission, by exercise label, and every label it carries.

    Raises ValueError with a reason a teacher can act on when the file is not a readable notebook."""
    size = path.stat().st_size
    if size > MAX_NOTEBOOK_MB * 2 ** 20:
        raise ValueError(f"file too large ({size / 2 ** 20:.0f} MB > {MAX_NOTEBOOK_MB} MB)")
    raw = path.read_bytes()
    if raw[:2] == b"PK":
        raise ValueError("a zip archive, not a notebook (renamed .zip?)")
    try:
        nb = nbformat.reads(raw.decode("utf-8"), as_version=4)
    except UnicodeDecodeError:
        raise ValueError("not UTF-8 text, so not a notebook") from None
    except Exception as e:  # nbformat raises several kinds for broken JSON or schema
        raise ValueError(f"not a readable notebook ({type(e).__name__}: {str(e)[:150]})") from None
    sols: dict[str, list[str]] = {}
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        gid = str(meta.get("grade_id", "")) if isinstance(meta, dict) else ""
        if cell.get("cell_type") == "code" and meta.get("solution") and gid.endswith("-solution"):
            sols.setdefault(gid[: -len("-solution")], []).append(str(cell.get("source", "")))
    seen = list(sols)
    return {lb: "\n\n".join(src) for lb, src in sols.items() if lb in labels}, seen


# --------------------------------------------------------------------------- the grader
class Grader:
    """Grades submissions of one assignment: the teacher's run once, then one sandboxed run each."""

    def __init__(self, chapter: Path, hidden_path: Path | None = None, exercises: list[str] | None = None,
                 timeout: float = 600, memory_mb: int = 4096, hide: list | None = None,
                 probe_seconds: int = 60, output_kb: int = 200):
        self.warnings: list[str] = []
        hidden = read_hidden_tests(hidden_path)
        self.assignment = Assignment(chapter, exercises, hidden, self.warnings)
        self.root = Path(tempfile.mkdtemp(prefix="book-grade-"))
        os.chmod(self.root, 0o711)  # a job run as nobody must reach its own folder, and list nothing
        limits = Limits(seconds=timeout, memory_mb=memory_mb, output_bytes=output_kb * 1000)
        self.sandbox = Sandbox([*(hide or []), chapter, hidden_path, self.root], limits=limits)
        self.sandbox.reference = Path(__file__).resolve().parent.parent / "check" / "_reference.py"
        if self.sandbox.mode != "bubblewrap":
            warn(f"isolation: {self.sandbox.describe()}", self.warnings)
        self.probe_seconds = probe_seconds
        self.hidden_lines = sorted({ln.strip() for src in hidden.values() for ln in src.splitlines()
                                    if len(ln.strip()) >= 8}, key=len, reverse=True)
        self.max_points = {lb: 0 for lb in self.assignment.labels}
        for part in self.assignment.parts:
            self.max_points[part.label] += 1

    def close(self):
        shutil.rmtree(self.root, ignore_errors=True)

    def run_teacher(self):
        """The teacher's own solutions give the expected value of every step probe; they must pass."""
        a = self.assignment
        outcome, values, errors = run_job(self.sandbox, self.root, "teacher", a.cells(None), a.probes,
                                          self.probe_seconds)
        if not any(m.get("phase") == "done" for m in outcome.messages):
            raise RuntimeError(f"the teacher's chapter {a.path.name} did not run to the end in the sandbox "
                               f"({'timed out' if outcome.timed_out else f'exit code {outcome.returncode}'}); "
                               f"its output ends with:\n{outcome.output[-2000:]}")
        for cell, err in errors:
            warn(f"the teacher's chapter fails in cell {cell}: {err}", self.warnings)
        for part in a.parts:
            if part.step_probe is not None:
                reported = values.get(part.step_probe, [])
                part.expected = []
                for i in range(sum(k == "probe" for k, _ in part.steps)):
                    have, v = _value(reported, i)
                    if not have:
                        warn(f"{part.kind} test {i + 1} of {part.label} fails on the teacher's own solution "
                             f"({v}); it and the tests after it are not scored", self.warnings)
                        break
                    part.expected.append(v)
            score, lines = score_part(part, values)
            if part.calls and score < 1:
                warn(f"the teacher's solution of {part.label} does not pass its own check: {lines}", self.warnings)

    def grade(self, path: Path) -> dict:
        """One submission -> {"exercises": {label: points}, "status", "reason", "feedback", ...}."""
        a = self.assignment
        res = {"exercises": {lb: 0.0 for lb in a.labels}, "status": "graded", "reason": "", "lines": {},
               "other_errors": [], "output": "", "warnings": []}
        try:
            sols, seen = student_solutions(path, a.labels)
        except (OSError, ValueError) as e:
            return {**res, "status": "not graded", "reason": str(e)}
        if not sols:
            other = sorted(set(seen) - set(a.labels))
            why = (f"another assignment's notebook (its exercises: {', '.join(other[:6])})" if other
                   else "no solution cells of this assignment (nbgrader metadata missing?)")
            return {**res, "status": "not graded", "reason": why}
        outcome, values, errors = run_job(self.sandbox, self.root, path.name, a.cells(sols), a.probes,
                                          self.probe_seconds)
        for part in a.parts:
            frac, lines = score_part(part, values)
            res["exercises"][part.label] += frac
            res["lines"].setdefault(part.label, []).extend(lines)
        sol_cells = {a.all[lb].solution for lb in a.labels}
        res["other_errors"] = [f"cell {c}: {e}" for c, e in errors if c not in sol_cells]
        res["solution_errors"] = [f"cell {c}: {e}" for c, e in errors if c in sol_cells]
        res["output"] = self.redact(outcome.feedback_output())
        if outcome.output_dropped:
            res["warnings"].append(f"{outcome.output_dropped} bytes of printed output were dropped")
        done = any(m.get("phase") == "done" for m in outcome.messages)
        if outcome.timed_out:
            res.update(status="incomplete", reason=f"timed out after {self.sandbox.limits.seconds:g} s "
                       "(only what was checked before counts)")
        elif not done:
            code = outcome.returncode
            why = (f"killed by signal {-code} (memory limit {self.sandbox.limits.memory_mb} MB?)" if code and code < 0
                   else f"the notebook's process exited early (exit code {code})")
            res.update(status="incomplete", reason=why)
        return res

    def redact(self, text: str) -> str:
        """Belt and braces: no line of the hidden tests appears in feedback, however it was obtained."""
        for line in self.hidden_lines:
            text = text.replace(line, "[hidden test redacted]")
        return text


def grade_notebook(path: Path, hidden: Path | None = None, timeout: int = 600, workdir=None, *,
                   chapter: Path) -> dict:
    """Grade one submission against the teacher's ``chapter`` (see :func:`grade_folder`)."""
    grader = Grader(chapter, hidden, timeout=timeout, hide=[Path(path).parent])
    try:
        with subreaper():
            grader.run_teacher()
            return grader.grade(Path(path))
    finally:
        grader.close()


# --------------------------------------------------------------------------- CSV and feedback
def csv_cell(value) -> str:
    """Text for a CSV cell that no spreadsheet runs as a formula (OWASP: prefix with a quote)."""
    s = printable(str(value))
    return "'" + s if s.startswith(CSV_RISKY) else s


def _num(x: float) -> str:
    x = round(x, 2)
    return str(int(x)) if x == int(x) else f"{x:g}"


def write_csv(path: Path, labels: list[str], rows: list[tuple[str, str, dict]], max_points: dict) -> None:
    """Write atomically (a temporary file then a rename): an interrupted grader leaves a whole CSV."""
    tmp = path.with_name(path.name + ".tmp")
    top = sum(max_points.values())
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["student", "file", *labels, "score", "max_score", "status", "reason", "other_errors",
                    "warnings"])
        for student, file, res in rows:
            ex = res["exercises"]
            w.writerow([csv_cell(student), csv_cell(file), *[_num(ex.get(lb, 0)) for lb in labels],
                        _num(sum(ex.values())), _num(top), res["status"], csv_cell(res["reason"]),
                        len(res["other_errors"]), csv_cell("; ".join(res["warnings"]))])
    os.replace(tmp, path)


def feedback(student: str, res: dict, max_points: dict) -> str:
    lines = [f"# Feedback for {student}", "",
             f"Score: {_num(sum(res['exercises'].values()))} / {_num(sum(max_points.values()))}", ""]
    if res["reason"]:
        lines += [f"**{res['status']}:** {res['reason']}", ""]
    for lb, pts in res["exercises"].items():
        mark = "✓" if pts >= max_points[lb] else "✗"
        lines += [f"## {mark} {lb}: {_num(pts)}/{max_points[lb]}", "", "```", *res["lines"].get(lb, []), "```", ""]
    errs = res.get("solution_errors", []) + res["other_errors"]
    if errs:
        lines += ["## Cells that raised an error", "", *[f"- {e}" for e in errs], ""]
    if res["output"].strip():
        out = res["output"]
        cut = len(out) > FEEDBACK_OUTPUT_CHARS
        lines += ["## What the notebook printed" + (" (the end)" if cut else ""), "", "```",
                  out[-FEEDBACK_OUTPUT_CHARS:].replace("```", "'''"), "```"]
    return "\n".join(lines) + "\n"


def _feedback_name(student: str, used: set) -> str:
    base = re.sub(r"[^\w.-]+", "_", student).strip("._") or "student"
    name, n = base, 1
    while name.lower() in used:
        n += 1
        name = f"{base}-{n}"
    used.add(name.lower())
    return name + ".md"


def grade_folder(submissions: Path, out: Path, hidden_path: Path | None = None, timeout: float = 600, *,
                 chapter: Path | None = None, exercises: list[str] | None = None, memory_mb: int = 4096) -> Path:
    """Grade every notebook below ``submissions`` against the teacher's ``chapter``; write
    ``out/grades.csv`` (one row per file, always), ``out/feedback/<student>.md`` and ``out/warnings.txt``."""
    if chapter is None:
        raise ValueError("grading needs the teacher's chapter (with solutions): grade_folder(..., chapter=...) "
                         "or --chapter chapters/<name>.ipynb")
    submissions, out = Path(submissions).resolve(), Path(out).resolve()
    if not submissions.is_dir():
        raise FileNotFoundError(f"no submissions folder {submissions}")
    if out == submissions or submissions in out.parents:
        raise ValueError(f"the output folder {out} is inside the submissions folder: choose another, the "
                         "grader never writes into the submissions")
    warnings: list[str] = []
    subs = find_submissions(submissions, warnings)
    if not subs:
        raise FileNotFoundError(f"no .ipynb submissions in {submissions}")
    (out / "feedback").mkdir(parents=True, exist_ok=True)
    grader = Grader(Path(chapter), hidden_path, exercises, timeout, memory_mb, hide=[submissions, out])
    grader.warnings[:0] = warnings
    labels, csv_path = grader.assignment.labels, out / "grades.csv"
    pending = {"exercises": {lb: 0.0 for lb in labels}, "status": "not graded",
               "reason": "grading was interrupted before this file", "other_errors": [], "warnings": []}
    rows = [(name, str(path.relative_to(submissions)), dict(pending)) for name, path in subs]
    write_csv(csv_path, labels, rows, grader.max_points)
    used: set = set()
    try:
        with subreaper():
            grader.run_teacher()
            for i, (name, path) in enumerate(subs):
                try:
                    res = grader.grade(path)
                except Exception as e:  # a grader bug on one odd file must not cost the class
                    res = {**pending, "status": "not graded", "reason": f"grader error: {type(e).__name__}: {e}"}
                    res["lines"], res["output"] = {}, ""
                rows[i] = (name, rows[i][1], res)
                if res["status"] != "graded":
                    warn(f"{name}: {res['status']}: {res['reason']}", grader.warnings)
                (out / "feedback" / _feedback_name(name, used)).write_text(
                    feedback(name, res, grader.max_points), encoding="utf-8", errors="replace")
                write_csv(csv_path, labels, rows, grader.max_points)
    finally:
        write_csv(csv_path, labels, rows, grader.max_points)
        (out / "warnings.txt").write_text("\n".join(grader.warnings + [f"isolation: {grader.sandbox.describe()}"])
                                          + "\n", encoding="utf-8", errors="replace")
        grader.close()
    return csv_path
