"""Teachers' tools: turn a chapter into a student assignment, and grade submitted notebooks.

Command line (from a checkout, or anywhere the ``book`` package is installed)::

    python -m book.teach student chapters/gradient_descent.ipynb -o assignments/
    python -m book.teach student chapters/gradient_descent.ipynb --exercises ex-gd-momentum-step,ex-gd-adam-step
    python -m book.teach grade submissions/ -o grades/ [--hidden hidden.py]
    python -m book.teach nbgrader chapters/gradient_descent.ipynb -o source/ps1/   # for nbgrader users

A chapter marks its exercises with cell tags: one code cell tagged ``solution`` (between the MyST gates
``{solution-start}`` / ``{solution-end}``) and one code cell tagged ``check`` that calls a self-check from
``book.check``. The **student version** replaces each solution by a stub that raises
``NotImplementedError`` (keeping signatures and docstrings), turns MyST-only markup into plain Markdown
that renders in Jupyter and Colab, clears outputs, keeps the checks, and adds nbgrader-compatible cell
metadata. **Grading** executes each submission with ``BOOK_STRICT=1`` (a failing check raises), scores
one point per passing check cell (plus the teacher's hidden tests), and writes ``grades.csv`` and one
feedback file per student. No Docker or JupyterHub is needed. Submissions are untrusted code: grade them
in a throw-away environment (a container or a separate user account).
"""
from __future__ import annotations

import argparse
import ast
import copy
import csv
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

FENCE = re.compile(r"^(?P<fence>`{3,}|:{3,})\{(?P<name>[\w-]+)\}[ \t]*(?P<arg>.*)$")


# --------------------------------------------------------------------------- exercises in a chapter
@dataclass
class Exercise:
    label: str
    title: str
    markdown: int            # index of the cell holding the {exercise} block
    solution: int | None = None
    check: int | None = None
    gates: list = field(default_factory=list)  # solution-start / solution-end cells


def find_exercises(nb) -> list[Exercise]:
    """The exercises of a chapter, in order, with the indices of their cells."""
    exercises: list[Exercise] = []
    for i, cell in enumerate(nb.cells):
        tags = cell.metadata.get("tags", [])
        if cell.cell_type == "markdown":
            m = re.search(r"^`{3,}\{exercise\}[ \t]*(.*)\n(?::label:[ \t]*(\S+))?", cell.source, re.M)
            if m:
                if not m.group(2):
                    raise ValueError(f"cell {i}: an {{exercise}} block needs a ':label:' line")
                exercises.append(Exercise(label=m.group(2), title=m.group(1).strip(), markdown=i))
            elif cell.source.lstrip().startswith(("```{solution-start}", "```{solution-end}")):
                if not exercises:
                    raise ValueError(f"cell {i}: a solution gate before any exercise")
                exercises[-1].gates.append(i)
        elif "solution" in tags:
            if not exercises or exercises[-1].solution is not None:
                raise ValueError(f"cell {i}: a solution cell without its own exercise")
            exercises[-1].solution = i
        elif "check" in tags:
            if not exercises or exercises[-1].check is not None:
                raise ValueError(f"cell {i}: a check cell without its own exercise")
            exercises[-1].check = i
    return exercises


# --------------------------------------------------------------------------- solution -> stub
def _parse(source: str, label: str) -> ast.Module:
    try:
        return ast.parse(source)
    except SyntaxError as e:
        raise ValueError(f"solution of {label} is not valid Python: {e}") from e


def _has_docstring(node) -> bool:
    first = node.body[0]
    return isinstance(first, ast.Expr) and isinstance(getattr(first, "value", None), ast.Constant) \
        and isinstance(first.value.value, str)


def stub_source(source: str, label: str) -> str:
    """Keep imports, signatures and docstrings of the solution's functions; their bodies raise."""
    tree = _parse(source, label)
    lines = source.splitlines()
    out = []
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            out.append(ast.get_source_segment(source, node))
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            first_body = node.body[0]
            head_end = first_body.end_lineno if _has_docstring(node) else first_body.lineno - 1
            head = lines[node.lineno - 1 - len(node.decorator_list): head_end]
            indent = " " * (first_body.col_offset)
            out.append("\n".join(head + [
                f"{indent}# YOUR CODE HERE ({label}); then run the check cell below.",
                f'{indent}raise NotImplementedError("{node.name}: not written yet (exercise {label})")']))
    if not out:
        out.append(f"# YOUR CODE HERE ({label})\nraise NotImplementedError('exercise {label}: not written yet')")
    return "\n\n\n".join(out)


# --------------------------------------------------------------------------- MyST -> plain Markdown
def _bib_names(bib_path: Path) -> dict[str, str]:
    """Map bibliography keys to "Author et al. (year)" for citations in plain Markdown."""
    names = {}
    if not bib_path.is_file():
        return names
    for entry in re.split(r"\n@", bib_path.read_text(encoding="utf-8")):
        key = re.match(r"@?\w+\{([^,]+),", entry.strip())
        if not key:
            continue
        author = re.search(r"author\s*=\s*\{(.+?)\},?\s*\n", entry)
        year = re.search(r"year\s*=\s*\{?(\d{4})", entry)
        surnames = [a.split(",")[0].strip(" {}") for a in (author.group(1).split(" and ") if author else [])]
        who = (surnames[0] + (" et al." if len(surnames) > 2 else f" & {surnames[1]}" if len(surnames) == 2 else "")
               if surnames else key)
        names[key.group(1)] = f"{who}, {year.group(1) if year else 'n.d.'}"
    return names


def plain_markdown(text: str, site_url: str = "", bib: dict | None = None, page: str = "chapters/x") -> str:
    """Turn the MyST markup the chapters use into Markdown that Jupyter and Colab render."""
    bib = bib or {}
    out, lines, i = [], text.split("\n"), 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m or m.group("name") in ("code-cell",):
            out.append(lines[i])
            i += 1
            continue
        fence, name, arg = m.group("fence"), m.group("name"), m.group("arg").strip()
        body, i = [], i + 1
        while i < len(lines) and lines[i].strip() != fence:
            body.append(lines[i])
            i += 1
        i += 1  # skip the closing fence
        body = [b for b in body if not re.match(r"^:[\w-]+:", b)]  # drop directive options
        inner = plain_markdown("\n".join(body).strip("\n"), site_url, bib, page)
        if name == "exercise":
            out.append(f"### Exercise: {arg}\n\n{inner}")
        elif name in ("solution-start", "solution-end", "bibliography"):
            continue
        else:  # admonition, note, warning, tip ...
            title = arg or name.capitalize()
            out.append("\n".join([f"> **{title}**", ">"] + [f"> {b}" if b else ">" for b in inner.split("\n")]))
    text = "\n".join(out)

    def cite(m):
        return "(" + "; ".join(bib.get(k.strip(), k.strip()) for k in m.group(1).split(",")) + ")"

    def doc(m):
        target = os.path.normpath(os.path.join(os.path.dirname(page), m.group(1))).replace(os.sep, "/")
        name = target.rsplit("/", 1)[-1].replace("_", " ")
        return f"[{name}]({site_url.rstrip('/')}/{target}.html)" if site_url else f"*{name}*"

    text = re.sub(r"\{cite(?::\w+)?\}`([^`]+)`", cite, text)
    text = re.sub(r"\{doc\}`([^`<]+?)`", doc, text)
    text = re.sub(r"\{(?:ref|numref|eq)\}`([^`<]+?)`", r"*\1*", text)
    return text


# --------------------------------------------------------------------------- student version
def _site_url(root: Path) -> str:
    cfg = root / "_config.yml"
    if cfg.is_file():
        m = re.search(r"^\s+baseurl:\s*(\S+)", cfg.read_text(encoding="utf-8"), re.M)
        if m:
            return m.group(1)
    return ""


def nbgrader_solution(source: str, label: str) -> str:
    """Wrap the solution in nbgrader's markers; inside functions, so that signatures stay visible."""
    tree = _parse(source, label)
    lines = source.splitlines()
    inserts = []  # (line index, text)
    run = None  # [first line, last line] of consecutive top-level statements that are not defs/imports
    for node in tree.body + [None]:
        plain = node is not None and not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef,
                                                           ast.Import, ast.ImportFrom))
        if plain:
            run = [run[0] if run else node.lineno - 1, node.end_lineno]
            continue
        if run:  # close the run of plain statements
            inserts += [(run[0], "### BEGIN SOLUTION"), (run[1], "### END SOLUTION")]
            run = None
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            first = body[1] if _has_docstring(node) and len(body) > 1 else body[0]
            indent = " " * first.col_offset
            inserts += [(first.lineno - 1, f"{indent}### BEGIN SOLUTION"), (node.end_lineno, f"{indent}### END SOLUTION")]
    for at, text in sorted(inserts, key=lambda t: t[0], reverse=True):  # from the bottom: indices stay valid
        lines.insert(at, text)
    return "\n".join(lines)


def make_nbgrader_source(nb, exercises: list[str] | None = None, root: Path | None = None,
                         page: str = "chapters/x"):
    """An nbgrader *source* notebook: solutions between ``### BEGIN/END SOLUTION``, graded check cells
    that raise on failure (``with check.raising():``) and a ``### BEGIN HIDDEN TESTS`` block to fill."""
    return make_student(nb, exercises, root, page, _mode="nbgrader")


def make_student(nb, exercises: list[str] | None = None, root: Path | None = None, page: str = "chapters/x",
                 _mode: str = "student"):
    """Return the student version of chapter ``nb`` (a new notebook; ``nb`` is not modified)."""
    nb = copy.deepcopy(nb)
    found = find_exercises(nb)
    if not found:
        raise ValueError("this notebook has no exercises (no {exercise} blocks with solution/check cells)")
    labels = [e.label for e in found]
    wanted = set(labels if exercises is None else exercises)
    unknown = wanted - set(labels)
    if unknown:
        raise ValueError(f"unknown exercise labels {sorted(unknown)}; this chapter has {labels}")
    root = root or Path(__file__).resolve().parent.parent
    bib = _bib_names(root / "assets" / "references.bib")
    site = _site_url(root)
    drop = set()
    for e in found:
        if e.solution is None or e.check is None:
            if e.label in wanted and e.solution is not None:
                raise ValueError(f"exercise {e.label} has a solution but no check cell")
        drop.update(e.gates)
        if e.label not in wanted:
            drop.update(i for i in (e.markdown, e.solution, e.check) if i is not None)
            continue
        if e.solution is not None:
            cell = nb.cells[e.solution]
            transform = nbgrader_solution if _mode == "nbgrader" else stub_source
            cell.source = transform(cell.source, e.label)
            cell.metadata["nbgrader"] = {"grade": False, "solution": True, "locked": False,
                                         "grade_id": f"{e.label}-solution", "schema_version": 3}
            cell.metadata["tags"] = ["solution"]
        if e.check is not None:
            cell = nb.cells[e.check]
            if _mode == "nbgrader":
                body = "\n".join("    " + line for line in cell.source.splitlines())
                cell.source = (f"with check.raising():  # graded: a failing check raises\n{body}\n"
                               "### BEGIN HIDDEN TESTS\n# (teachers: add hidden asserts here)\n### END HIDDEN TESTS")
            cell.metadata["nbgrader"] = {"grade": True, "solution": False, "locked": True, "points": 1,
                                         "grade_id": f"{e.label}-check", "schema_version": 3}
    cells = []
    for i, cell in enumerate(nb.cells):
        if i in drop:
            continue
        if cell.cell_type == "markdown":
            cell.source = plain_markdown(cell.source, site, bib, page)
        else:
            cell.outputs, cell.execution_count = [], None
        cells.append(cell)
    nb.cells = cells
    nb.metadata["book_student"] = {"exercises": [lb for lb in labels if lb in wanted]}
    if _mode == "nbgrader":
        nb.metadata.pop("book_student")
    return nb


# --------------------------------------------------------------------------- grading
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


def _cell_error(cell) -> str | None:
    for out in cell.get("outputs", []):
        if out.get("output_type") == "error":
            return f"{out.get('ename')}: {out.get('evalue')}"
    return None


def _cell_text(cell) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")


def grade_notebook(path: Path, hidden: dict[str, str] | None = None, timeout: int = 600,
                   workdir: Path | None = None) -> dict:
    """Execute one submission in strict mode; return per-exercise results and the notebook's other errors."""
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    labels = nb.metadata.get("book_student", {}).get("exercises")
    found = {e.label: e for e in find_exercises_student(nb)}
    if labels is None:
        labels = list(found)
    hidden = hidden or {}
    # append the teacher's hidden tests right after each exercise's check cell
    for label in reversed(labels):
        if label in hidden and label in found:
            cell = nbformat.v4.new_code_cell(hidden[label])
            cell.metadata["book_hidden_test"] = label
            nb.cells.insert(found[label].check + 1, cell)
    env_before = os.environ.get("BOOK_STRICT")
    os.environ["BOOK_STRICT"] = "1"
    try:
        client = NotebookClient(nb, timeout=timeout, allow_errors=True, kernel_name="python3",
                                resources={"metadata": {"path": str(workdir or path.parent)}})
        client.execute()
    finally:
        if env_before is None:
            os.environ.pop("BOOK_STRICT", None)
        else:
            os.environ["BOOK_STRICT"] = env_before
    results, other_errors = {}, []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        err = _cell_error(cell)
        grade = cell.metadata.get("nbgrader", {}).get("grade")
        hidden_label = cell.metadata.get("book_hidden_test")
        label = hidden_label or (cell.metadata["nbgrader"]["grade_id"].rsplit("-check", 1)[0] if grade else None)
        if label is None:
            if err and "solution" not in cell.metadata.get("tags", []):
                other_errors.append(f"cell {i}: {err}")
            continue
        r = results.setdefault(label, {"passed": 0, "total": 0, "report": []})
        r["total"] += 1
        r["passed"] += err is None
        r["report"].append(("hidden test: " if hidden_label else "") + (_cell_text(cell).strip() or (err or "ok")))
        if err and hidden_label:
            r["report"].append(f"hidden test failed: {err}")
    return {"exercises": results, "other_errors": other_errors}


def find_exercises_student(nb) -> list[Exercise]:
    """Exercises of a student notebook, located by their nbgrader metadata."""
    out = []
    for i, cell in enumerate(nb.cells):
        meta = cell.metadata.get("nbgrader", {})
        gid = meta.get("grade_id", "")
        if meta.get("solution"):
            out.append(Exercise(label=gid.rsplit("-solution", 1)[0], title="", markdown=-1, solution=i))
        elif meta.get("grade") and out and gid == f"{out[-1].label}-check":
            out[-1].check = i
    return out


def grade_folder(submissions: Path, out: Path, hidden_path: Path | None = None, timeout: int = 600) -> Path:
    """Grade every ``*.ipynb`` in ``submissions``; write ``grades.csv`` and ``feedback/<student>.md`` to ``out``."""
    subs = sorted(Path(submissions).glob("*.ipynb"))
    if not subs:
        raise FileNotFoundError(f"no .ipynb submissions in {submissions}")
    hidden = read_hidden_tests(hidden_path)
    out = Path(out)
    (out / "feedback").mkdir(parents=True, exist_ok=True)
    rows, labels = [], []
    for sub in subs:
        res = grade_notebook(sub, hidden, timeout)
        for label in res["exercises"]:
            if label not in labels:
                labels.append(label)
        rows.append((sub.stem, res))
        lines = [f"# Feedback for {sub.stem}", ""]
        for label, r in res["exercises"].items():
            mark = "✓" if r["passed"] == r["total"] else "✗"
            lines += [f"## {mark} {label}: {r['passed']}/{r['total']}", "", "```", *r["report"], "```", ""]
        if res["other_errors"]:
            lines += ["## Other cells that failed", "", *[f"- {e}" for e in res["other_errors"]]]
        (out / "feedback" / f"{sub.stem}.md").write_text("\n".join(lines), encoding="utf-8")
    csv_path = out / "grades.csv"
    with open(csv_path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["student", *labels, "score", "max_score", "other_errors"])
        for student, res in rows:
            ex = res["exercises"]
            got = [ex.get(lb, {"passed": 0})["passed"] for lb in labels]
            top = sum(ex.get(lb, {"total": 0})["total"] for lb in labels)
            w.writerow([student, *got, sum(got), top, len(res["other_errors"])])
    return csv_path


# --------------------------------------------------------------------------- command line
def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m book.teach", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("student", help="write the student version of chapters")
    s.add_argument("chapters", nargs="+", type=Path)
    s.add_argument("-o", "--out", type=Path, default=Path("student"))
    s.add_argument("--exercises", help="comma-separated exercise labels to keep (default: all)")
    n = sub.add_parser("nbgrader", help="write nbgrader source notebooks (for `nbgrader generate_assignment`)")
    n.add_argument("chapters", nargs="+", type=Path)
    n.add_argument("-o", "--out", type=Path, default=Path("source"))
    n.add_argument("--exercises", help="comma-separated exercise labels to keep (default: all)")
    g = sub.add_parser("grade", help="grade a folder of submitted notebooks")
    g.add_argument("submissions", type=Path)
    g.add_argument("-o", "--out", type=Path, default=Path("grades"))
    g.add_argument("--hidden", type=Path, help="hidden tests: a .py file with '# exercise: <label>' sections")
    g.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    a = p.parse_args(argv)
    if a.cmd in ("student", "nbgrader"):
        a.out.mkdir(parents=True, exist_ok=True)
        chosen = a.exercises.split(",") if a.exercises else None
        make = make_student if a.cmd == "student" else make_nbgrader_source
        for path in a.chapters:
            nb = make(nbformat.read(path, as_version=4), chosen, page=f"chapters/{path.stem}")
            target = a.out / path.name
            nbformat.write(nb, target)
            print(f"wrote {target}")
    else:
        csv_path = grade_folder(a.submissions, a.out, a.hidden, a.timeout)
        print(f"wrote {csv_path} and {a.out / 'feedback'}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
