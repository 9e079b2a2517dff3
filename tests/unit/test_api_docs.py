"""The API reference (appendix/api.md) covers the whole package, and every helper names its chapters."""
import ast
import importlib.util
import pkgutil
import re
from pathlib import Path

import pytest

import book

ROOT = Path(__file__).resolve().parents[2]
API = ROOT / "appendix" / "api.md"
STEMS = sorted(p.stem for p in (ROOT / "chapters").glob("*.ipynb"))
# `python -m book.teach`: importing it runs the command line, so the page describes it in words
NOT_DOCUMENTED = {"book.teach.__main__"}
MODULES = sorted(m.name for m in pkgutil.walk_packages(book.__path__, "book.") if m.name not in NOT_DOCUMENTED)
# the runtime and the from-scratch layers: a reader of the code must be able to find where it is taught
TAUGHT = [m for m in MODULES if m.split(".")[1] in ("nn", "data", "config", "train", "hardware")]


def documented() -> list[str]:
    return re.findall(r"^\.\. automodule:: ([\w.]+)\s*$", API.read_text(encoding="utf-8"), flags=re.M)


def docstring(module: str) -> str:
    """The module's docstring, read from its source (nothing is imported)."""
    source = Path(importlib.util.find_spec(module).origin).read_text(encoding="utf-8")
    return ast.get_docstring(ast.parse(source)) or ""


def test_the_module_list_is_not_empty():
    assert len(MODULES) > 40 and "book.nn.gpt" in MODULES and "book.config" in TAUGHT
    assert len(STEMS) >= 20


def test_every_module_is_in_the_api_reference():
    missing = sorted(set(MODULES) - set(documented()))
    assert not missing, f"add an `.. automodule::` block for each of these to appendix/api.md: {missing}"


def test_the_api_reference_names_only_existing_modules_once():
    names = documented()
    stale = sorted(set(names) - set(MODULES) - {"book"})
    assert not stale, f"appendix/api.md documents modules that do not exist (autodoc fails the build): {stale}"
    assert len(names) == len(set(names)), "a module is documented twice (duplicate object descriptions)"


@pytest.mark.parametrize("module", TAUGHT)
def test_module_docstring_names_its_chapters(module):
    head = "\n".join(docstring(module).splitlines()[:10])
    named = [s for s in STEMS if re.search(rf"(?<![\w./]){s}\b", head)]
    assert named, (f"{module}: say in the first lines of its docstring which chapters (chapters/<stem>.ipynb) "
                   f"teach or use it, by stem; stems: {STEMS}")
