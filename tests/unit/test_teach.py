"""The teacher's workflow: student versions and grading (fast, on a small synthetic chapter)."""
import csv

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from book.teach import (
    find_exercises,
    grade_folder,
    make_nbgrader_source,
    make_student,
    nbgrader_solution,
    plain_markdown,
    read_hidden_tests,
    stub_source,
)


def exercise(label, title, solution, check_call):
    return [
        new_markdown_cell(f"````{{exercise}} {title}\n:label: {label}\n\n"
                          f"Write it. See {{cite}}`kingma2015adam`.\n````"),
        new_markdown_cell(f"```{{solution-start}} {label}\n:class: dropdown\n```"),
        new_code_cell(solution, metadata={"tags": ["solution"]}),
        new_markdown_cell("```{solution-end}\n```"),
        new_code_cell(check_call, metadata={"tags": ["check"]}),
    ]


def chapter():
    cells = [new_markdown_cell("# Tiny chapter\n\n```{admonition} Learning goals\n:class: tip\nLearn.\n```"),
             new_code_cell("import torch\nfrom book import check")]
    cells += exercise("ex-t-grad", "Gradient",
                      'def quadratic_grad(theta):\n    """The gradient."""\n'
                      "    return torch.stack([2 * (theta[0] - 1), 2 * (theta[1] - 2)])",
                      "check.quadratic_grad(quadratic_grad)")
    cells += exercise("ex-t-lr", "Learning rate", "def max_stable_lr(c):\n    return 2.0 / max(c)\n\nprint(1)",
                      "check.max_stable_lr(max_stable_lr)")
    cells.append(new_code_cell("x = 1 + 1", outputs=[], execution_count=3))
    return new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                              "language": "python"}})


def test_find_exercises():
    ex = find_exercises(chapter())
    assert [e.label for e in ex] == ["ex-t-grad", "ex-t-lr"]
    assert (ex[0].markdown, ex[0].solution, ex[0].check, ex[0].gates) == (2, 4, 6, [3, 5])


def test_stub_keeps_signature_and_docstring():
    src = 'import math\n\ndef f(a, b=2):\n    """Doc."""\n    return a + b\n\nprint(f(1))'
    stub = stub_source(src, "ex-x")
    assert "import math" in stub and 'def f(a, b=2):\n    """Doc."""' in stub
    assert "return a + b" not in stub and "print" not in stub and "NotImplementedError" in stub
    with pytest.raises(ValueError, match="not valid Python"):
        stub_source("def (:", "ex-x")


def test_plain_markdown_removes_myst():
    text = ("```{admonition} The source says / actually\n:class: warning\n"
            "It is **wrong** {cite}`kingma2015adam`.\n```\n"
            "See {doc}`../appendix/errata`.")
    md = plain_markdown(text, site_url="https://example.org/book/", bib={"kingma2015adam": "Kingma & Ba, 2015"},
                        page="chapters/x")
    assert "{" not in md and ":class:" not in md
    assert "> **The source says / actually**" in md and "(Kingma & Ba, 2015)" in md
    assert "[errata](https://example.org/book/appendix/errata.html)" in md
    glued = plain_markdown("accuracy {glue:text}`val_acc:.3f` of {glue}`n` runs")
    assert glued == "accuracy (`val_acc`, printed by the code) of (`n`, printed by the code) runs"


def test_student_version():
    nb = chapter()
    student = make_student(nb)
    src = "\n".join(c.source for c in student.cells)
    assert "return torch.stack" not in src and "2.0 / max" not in src
    assert "solution-start" not in src and "{exercise}" not in src and "{cite}" not in src
    assert src.count("raise NotImplementedError") == 2 and "check.quadratic_grad(quadratic_grad)" in src
    assert all(not c.get("outputs") for c in student.cells if c.cell_type == "code")
    grades = [c.metadata["nbgrader"] for c in student.cells if "nbgrader" in c.metadata]
    assert [g["grade_id"] for g in grades] == ["ex-t-grad-solution", "ex-t-grad-check", "ex-t-lr-solution",
                                               "ex-t-lr-check"]
    assert "return torch.stack" in "\n".join(c.source for c in nb.cells), "the input must not change"
    only = make_student(nb, ["ex-t-lr"])
    assert only.metadata["book_student"]["exercises"] == ["ex-t-lr"]
    assert "quadratic_grad" not in "\n".join(c.source for c in only.cells)
    with pytest.raises(ValueError, match="unknown exercise labels"):
        make_student(nb, ["ex-nope"])
    with pytest.raises(ValueError, match="no exercises"):
        make_student(new_notebook(cells=[new_markdown_cell("# x")]))


def test_nbgrader_markers_keep_signatures_visible():
    src = 'import math\n\ndef f(a):\n    """Doc."""\n    b = a + 1\n    return b\n\nx = f(1)\nprint(x)'
    out = nbgrader_solution(src, "ex-x").splitlines()
    assert out == ["import math", "", "def f(a):", '    """Doc."""', "    ### BEGIN SOLUTION", "    b = a + 1",
                   "    return b", "    ### END SOLUTION", "", "### BEGIN SOLUTION", "x = f(1)", "print(x)",
                   "### END SOLUTION"]


def test_nbgrader_source():
    nb = make_nbgrader_source(chapter())
    cells = {c.metadata["nbgrader"]["grade_id"]: c for c in nb.cells if "nbgrader" in c.metadata}
    sol, chk = cells["ex-t-grad-solution"], cells["ex-t-grad-check"]
    assert "### BEGIN SOLUTION" in sol.source and "return torch.stack" in sol.source
    assert chk.source.startswith("with check.raising():") and "### BEGIN HIDDEN TESTS" in chk.source
    assert chk.metadata["nbgrader"]["points"] == 1 and chk.metadata["nbgrader"]["locked"]
    compile(chk.source, "check", "exec")  # still valid Python
    assert "book_student" not in nb.metadata


def test_hidden_tests_file(tmp_path):
    f = tmp_path / "hidden.py"
    f.write_text("# exercise: ex-a\nassert 1\n\n# exercise: ex-b\nassert 2\n")
    assert read_hidden_tests(f) == {"ex-a": "assert 1", "ex-b": "assert 2"}
    assert read_hidden_tests(None) == {}


@pytest.mark.long
def test_grading_ranks_correct_above_wrong(tmp_path):
    """A correct, a half-wrong and an untouched submission, plus a hidden test the wrong answer fails."""
    student = make_student(chapter())
    subs = tmp_path / "submissions"
    subs.mkdir()
    nbformat.write(student, subs / "untouched.ipynb")
    correct, wrong = nbformat.from_dict(student), nbformat.from_dict(nbformat.v4.reads(nbformat.v4.writes(student)))
    answers = {"quadratic_grad": "def quadratic_grad(theta):\n"
                                 "    return torch.stack([2 * (theta[0] - 1), 2 * (theta[1] - 2)])",
               "max_stable_lr": "def max_stable_lr(c):\n    return 2.0 / max(c)"}
    for nb, bad in ((correct, False), (wrong, True)):
        for cell in nb.cells:
            for name, code in answers.items():
                if cell.cell_type == "code" and f"def {name}" in cell.source:
                    cell.source = code.replace("2.0 / max", "1.0 / max") if bad else code
    nbformat.write(correct, subs / "alice.ipynb")
    nbformat.write(wrong, subs / "bob.ipynb")
    hidden = tmp_path / "hidden.py"
    hidden.write_text("# exercise: ex-t-lr\nassert max_stable_lr([4.0]) == 0.5\n")
    teacher = tmp_path / "chapter.ipynb"
    nbformat.write(chapter(), teacher)
    csv_path = grade_folder(subs, tmp_path / "out", hidden, chapter=teacher)
    rows = {r["student"]: r for r in csv.DictReader(open(csv_path))}
    assert rows["alice"]["score"] == "3" and rows["alice"]["max_score"] == "3"
    assert rows["bob"]["score"] == "1"                    # grad right; lr check and hidden test fail
    assert rows["untouched"]["score"] == "0"
    assert all(r["other_errors"] == "0" for r in rows.values())
    feedback = (tmp_path / "out" / "feedback" / "bob.md").read_text()
    assert "✗ ex-t-lr: 0/2" in feedback and "hidden tests: 0/1 passed" in feedback
    assert "max_stable_lr([4.0])" not in feedback and "0.5" not in feedback.split("ex-t-lr")[-1].split("hidden")[1]
    with pytest.raises(FileNotFoundError):
        grade_folder(tmp_path / "empty", tmp_path / "out2", chapter=teacher)
