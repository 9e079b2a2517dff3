"""Student versions of a chapter (solutions replaced by stubs, MyST turned into plain Markdown), the nbgrader
source, and the ``python -m book.teach`` command line. See :mod:`book.teach` for the overview."""
from __future__ import annotations

import ast
import copy
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

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
    # a glued number is filled in when the book is built; here, point at the value the code prints
    text = re.sub(r"\{glue(?::\w+)?\}`([\w]+)(?::[^`]*)?`", r"(`\1`, printed by the code)", text)
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
            inserts += [(first.lineno - 1, f"{indent}### BEGIN SOLUTION"),
                        (node.end_lineno, f"{indent}### END SOLUTION")]
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


# --------------------------------------------------------------------------- grading (see grade.py)
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
