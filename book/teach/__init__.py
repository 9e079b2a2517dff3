"""Teachers' tools: turn a chapter into a student assignment, and grade submitted notebooks.

Command line (from a checkout, or anywhere the ``book`` package is installed)::

    python -m book.teach student chapters/gradient_descent.ipynb -o assignments/
    python -m book.teach student chapters/gradient_descent.ipynb --exercises ex-gd-momentum-step,ex-gd-adam-step
    python -m book.teach grade submissions/ --chapter chapters/gradient_descent.ipynb -o grades/ [--hidden hidden.py]
    python -m book.teach nbgrader chapters/gradient_descent.ipynb -o source/ps1/   # for nbgrader users

A chapter marks its exercises with cell tags: one code cell tagged ``solution`` (between the MyST gates
``{solution-start}`` / ``{solution-end}``) and one code cell tagged ``check`` that calls a self-check from
``book.check``. The **student version** replaces each solution by a stub that raises
``NotImplementedError`` (keeping signatures and docstrings), turns MyST-only markup into plain Markdown
that renders in Jupyter and Colab, clears outputs, keeps the checks, and adds nbgrader-compatible cell
metadata. **Grading** (:mod:`book.teach.grade`) takes only the solution cells of each submission, runs
them inside the teacher's chapter in a sandbox (:mod:`book.teach.sandbox`), and scores the values the
submission's functions return on grader-chosen inputs, compared outside the sandbox. See ``teaching.md``.
"""
from book.teach.cli import main
from book.teach.grade import grade_folder, grade_notebook, read_hidden_tests
from book.teach.student import (
    Exercise,
    find_exercises,
    find_exercises_student,
    make_nbgrader_source,
    make_student,
    nbgrader_solution,
    plain_markdown,
    stub_source,
)

__all__ = ["Exercise", "find_exercises", "find_exercises_student", "grade_folder", "grade_notebook", "main",
           "make_nbgrader_source", "make_student", "nbgrader_solution", "plain_markdown", "read_hidden_tests",
           "stub_source"]
