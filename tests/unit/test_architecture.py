"""The package's architecture (tools/import_graph.py): layers obeyed, no import cycles, one name per chapter."""
import importlib.util
import sys
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("import_graph", ROOT / "tools" / "import_graph.py")
ig = importlib.util.module_from_spec(spec)
sys.modules["import_graph"] = ig
spec.loader.exec_module(ig)

CHAPTERS = {p.stem for p in (ROOT / "chapters").glob("*.ipynb")}


def test_layers_are_obeyed_and_there_are_no_cycles():
    g = ig.graph()
    assert ig.violations(g) == []
    assert ig.cycles(g) == []
    # the layers the architecture promises are really used (an empty layer would hide a wrong rule)
    used = set(ig.layer_edges(g))
    for edge in [("lab", "ui"), ("lab", "nn"), ("lab", "data"), ("ui", "train"), ("check", "nn")]:
        assert edge in used, edge


def test_rules_catch_a_bad_import_and_a_cycle():
    g = {"book.nn.gpt": {"book.ui.figure"}, "book.ui.figure": set()}
    assert "book.nn.gpt (nn) imports book.ui.figure (ui)" in ig.violations(g)[0]
    assert ig.cycles({"book.lab.a": {"book.lab.b"}, "book.lab.b": {"book.lab.a"}}) == [["book.lab.a", "book.lab.b"]]
    with pytest.raises(ValueError, match="no layer"):
        ig.layer("book.somewhere.new")


def test_resolves_relative_and_function_level_imports(tmp_path):
    pkg = tmp_path / "book"
    (pkg / "nn").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "nn" / "__init__.py").write_text("")
    (pkg / "nn" / "a.py").write_text("def f():\n    from . import b\n    from book.nn.b import g\n")
    (pkg / "nn" / "b.py").write_text("from .a import f\n")
    g = ig.graph(pkg)
    assert g["book.nn.a"] == {"book.nn.b"} and g["book.nn.b"] == {"book.nn.a"}
    assert ig.cycles(g) == [["book.nn.a", "book.nn.b"]]


def test_one_name_per_chapter():
    """book/lab/<stem>.py and book/check/<stem>.py are named after chapters/<stem>.ipynb, nothing else."""
    lab = {p.stem for p in (ROOT / "book" / "lab").glob("*.py")} - {"__init__"}
    checks = {p.stem for p in (ROOT / "book" / "check").glob("*.py")} - {"__init__", "core", "_reference"}
    assert lab <= CHAPTERS, lab - CHAPTERS
    assert checks <= CHAPTERS, checks - CHAPTERS
    tests = {p.stem.removeprefix("test_") for p in (ROOT / "tests" / "chapters").glob("test_*.py")}
    assert tests <= CHAPTERS, tests - CHAPTERS
    assert lab <= tests and checks <= tests, "every lab or check module has its chapter's test file"


def test_every_subpackage_is_installed():
    """pip install (Colab) ships exactly the packages pyproject lists: a new subpackage must be listed."""
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "book").rglob("__init__.py")}
    assert found <= listed, found - listed


def test_drawing(tmp_path):
    assert ig.main(["--svg", str(tmp_path / "g.svg")]) == 0
    assert (tmp_path / "g.svg").read_text().startswith("<?xml")
    assert (ROOT / "assets" / "import-graph.svg").is_file(), \
        "draw it: python tools/import_graph.py --svg assets/import-graph.svg"
