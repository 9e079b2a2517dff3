"""Write the Colab install cell into every chapter, with the repository URL from _config.yml.

The URL lives in one place (``repository.url`` in ``_config.yml``); run this after changing it or after
adding a chapter:  ``python tools/sync_install_cell.py``. ``tests/test_notebooks.py`` fails if a chapter's
first code cell differs from what this script would write.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = '''# Colab / a fresh environment: install the book's helper package and its data if missing.
# Locally (after `make`) this does nothing, and it never reinstalls an existing torch.
import importlib.util, os
if importlib.util.find_spec("book") is None:
    spec = os.environ.get("BOOK_INSTALL_SPEC", "git+{url}")  # tests point this at a local wheel
    %pip install -q {{spec}}'''


def repo_url() -> str:
    text = (ROOT / "_config.yml").read_text(encoding="utf-8")
    m = re.search(r"^repository:\s*\n\s+url:\s*(\S+)", text, re.M)
    if not m:
        raise SystemExit("_config.yml has no repository: url: entry")
    return m.group(1)


def install_cell_source() -> str:
    return TEMPLATE.format(url=repo_url())


def main() -> int:
    src = install_cell_source()
    for path in sorted((ROOT / "chapters").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        first = next(c for c in nb.cells if c.cell_type == "code")
        if first.source != src:
            first.source = src
            first.metadata["tags"] = ["colab-install", "hide-input"]
            nbformat.write(nb, path)
            print("updated", path.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
