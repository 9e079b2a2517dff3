"""Teachers' tools: turn a chapter into a student assignment, and grade submitted notebooks.

The ``python -m book.teach student|nbgrader|grade ...`` command line; see :mod:`book.teach`."""
from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

import nbformat

from book.teach.grade import grade_folder
from book.teach.student import make_nbgrader_source, make_student


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
    g.add_argument("--chapter", type=Path, required=True,
                   help="the teacher's chapter WITH solutions (e.g. chapters/gradient_descent.ipynb)")
    g.add_argument("-o", "--out", type=Path, default=Path("grades"))
    g.add_argument("--hidden", type=Path, help="hidden tests: a .py file with '# exercise: <label>' sections")
    g.add_argument("--exercises", help="comma-separated exercise labels graded (default: all of the chapter)")
    g.add_argument("--timeout", type=float, default=600, help="seconds per notebook (default 600)")
    g.add_argument("--memory-mb", type=int, default=4096, help="memory limit per notebook (default 4096)")
    a = p.parse_args(argv)
    if a.cmd in ("student", "nbgrader"):
        a.out.mkdir(parents=True, exist_ok=True)
        chosen = a.exercises.split(",") if a.exercises else None
        make = make_student if a.cmd == "student" else make_nbgrader_source
        for path in a.chapters:
            target = a.out / path.name
            if target.exists() and target.resolve() == path.resolve():
                p.error(f"refusing to write the {a.cmd} version of {path} over the chapter itself: choose "
                        "another -o folder")
            nb = make(nbformat.read(path, as_version=4), chosen, page=f"chapters/{path.stem}")
            nbformat.write(nb, target)
            print(f"wrote {target}")
        return 0
    # a polite stop (kill, logout) must still leave a complete grades.csv: turn it into KeyboardInterrupt
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        csv_path = grade_folder(a.submissions, a.out, a.hidden, a.timeout, chapter=a.chapter,
                                exercises=a.exercises.split(",") if a.exercises else None, memory_mb=a.memory_mb)
    except KeyboardInterrupt:
        print(f"interrupted: {a.out / 'grades.csv'} lists what was graded so far", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {csv_path}, {a.out / 'feedback'}/ and {a.out / 'warnings.txt'}")
    return 0
