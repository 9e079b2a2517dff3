"""CI proof of the teacher's workflow and of every chapter's gpu configuration (run by `make student`,
two chapters at a time).

The student version of a chapter must fail exactly at its check cells (every solution is a stub, so
every check raises in strict mode) and nowhere else: a student who opens it sees no unrelated errors.
It runs as the **dry run of the gpu profile** (``BOOK_DRYRUN=1``, see ``book.config``): the gpu
configuration's shapes, data sizes and batch sizes with a few steps, asserts counted rather than
enforced, so a configuration error of the gpu profile fails here on the CPU (``BOOK_DRYRUN=0`` runs the
student versions in the cpu profile instead). Each chapter's full run is in `make colab` and the build.
Figures are built but not rendered to PNG (Matplotlib's Agg backend) and players draw their first and
last frame: the pictures are the full run's, checked on the built site (`make site`).
"""
import os
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from traitlets.config import Config

from book.teach import find_exercises_student, make_student

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
from kernels import kernel_config  # noqa: E402  (kernels on Unix sockets: no port race)
CHAPTERS = sorted((ROOT / "chapters").glob("*.ipynb"))


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_student_version_fails_exactly_at_its_checks(path, tmp_path, monkeypatch):
    monkeypatch.setenv("BOOK_STRICT", "1")
    monkeypatch.setenv("BOOK_THREADS", os.environ.get("BOOK_THREADS", "1"))
    monkeypatch.setenv("BOOK_DRYRUN", os.environ.get("BOOK_DRYRUN", "1"))
    monkeypatch.setenv("MPLBACKEND", "Agg")   # no PNG per figure (see above)
    student = make_student(nbformat.read(path, as_version=4), page=f"chapters/{path.stem}")
    checks = {e.check for e in find_exercises_student(student) if e.check is not None}
    assert len(checks) >= 4, "a chapter needs at least four self-checked exercises"
    # "immediate": every output is in by then; a graceful shutdown tears the interpreter down (~1.3 CPU s)
    NotebookClient(student, timeout=600, allow_errors=True, kernel_name="python3", shutdown_kernel="immediate",
                   config=Config(kernel_config()), resources={"metadata": {"path": str(tmp_path)}}).execute()
    failed = {i for i, c in enumerate(student.cells) if c.cell_type == "code"
              and any(o.get("output_type") == "error" for o in c.outputs)}
    details = {i: [o.get("ename") for o in student.cells[i].outputs if o.get("output_type") == "error"]
               for i in failed ^ checks}
    assert failed == checks, f"cells failing unexpectedly / checks not failing: {details}"
    for i in checks:
        assert any(o.get("ename") == "CheckFailed" for o in student.cells[i].outputs)
