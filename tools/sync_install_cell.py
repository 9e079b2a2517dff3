"""Write the Colab install cell into every chapter: the repository URL from _config.yml, pinned to a release.

The URL lives in one place (``repository.url`` in ``_config.yml``) and the release in another
(``version`` in ``pyproject.toml``; its git tag is ``v<version>``). Run this after changing either, or
after adding a chapter::

    python tools/sync_install_cell.py               # pin the release tag v<version> (what is committed)
    python tools/sync_install_cell.py --ref 1a2b3c  # pin a commit (the Pages workflow: the built commit)

``tests/unit/test_notebooks.py`` fails if a chapter's first code cell differs from the committed form.

The cell is written for Colab as it is: it holds every package that is already installed at its
version (a constraints file made from the running environment), so pip may only *add* what is missing
and never replaces Colab's torch, IPython or ipywidgets. ``tests/colab`` proves that on a copy of
Colab's package set.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = '''# Colab / a fresh environment: install the book's helper package ({ref}) if it is missing.
# Packages already here (Colab's torch, IPython, ipywidgets...) are held at their versions: pip only adds.
# For the newest code instead of this release, change "@{ref}" to "@main".
import importlib.metadata as md, importlib.util, os, re, tempfile
if importlib.util.find_spec("book") is None:
    spec = os.environ.get("BOOK_INSTALL_SPEC", "git+{url}@{ref}")  # tests: a local wheel
    held = {{}}  # normalised name -> "name==version"; the first on sys.path wins, as for imports
    for d in md.distributions():
        if name := d.metadata["Name"]:
            held.setdefault(re.sub(r"[-_.]+", "-", name).lower(), f"{{name}}=={{d.version}}")
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write("\\n".join(held.values()))
    %pip install -q -c {{f.name}} {{spec}}
    importlib.invalidate_caches()
    if importlib.util.find_spec("book") is None:
        raise RuntimeError("installing the book failed: pip says why above")'''


def repo_url() -> str:
    text = (ROOT / "_config.yml").read_text(encoding="utf-8")
    m = re.search(r"^repository:\s*\n\s+url:\s*(\S+)", text, re.M)
    if not m:
        raise SystemExit("_config.yml has no repository: url: entry")
    return m.group(1)


def release_ref() -> str:
    """The git tag of the release the chapters belong to: ``v`` + ``pyproject.toml``'s version."""
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    m = re.search(r'^version\s*=\s*"([^"]+)"', text, re.M)
    if not m:
        raise SystemExit("pyproject.toml has no version = \"...\" line")
    return "v" + m.group(1)


def install_cell_source(ref: str | None = None) -> str:
    ref = ref or release_ref()
    if not re.fullmatch(r"[\w.\-/]+", ref):
        raise ValueError(f"not a git tag, branch or commit: {ref!r}")
    return TEMPLATE.format(url=repo_url(), ref=ref)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ref", help="git tag, branch or commit to pin (default: v<version> of pyproject.toml)")
    src = install_cell_source(ap.parse_args(argv).ref)
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
