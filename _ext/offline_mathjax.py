"""Serve MathJax from the built site itself when a local copy is available.

`make` installs MathJax 3 from the npm registry into .venv/mathjax (when npm exists) and points
BOOK_MATHJAX_DIR at its es5/ folder. This extension then copies the parts the pages need into
_static/mathjax/ and makes every page load it from there, so the site typesets math offline (and the
browser test can check it). Without the variable, Sphinx's default CDN address is kept.
"""
import os
import shutil
from pathlib import Path

PARTS = ["tex-chtml.js", "output/chtml", "input/tex/extensions", "ui", "a11y", "sre"]


def _copy(app, exception):
    src = os.environ.get("BOOK_MATHJAX_DIR")
    if exception is not None or not src or app.builder.format != "html":
        return
    dest = Path(app.outdir) / "_static" / "mathjax"
    for part in PARTS:
        s, d = Path(src) / part, dest / part
        if s.is_dir():
            shutil.copytree(s, d, dirs_exist_ok=True)
        elif s.is_file():
            d.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(s, d)


def _configure(app, config):
    src = os.environ.get("BOOK_MATHJAX_DIR")
    if src and (Path(src) / "tex-chtml.js").is_file():
        config.mathjax_path = "mathjax/tex-chtml.js"  # relative to _static/


def setup(app):
    app.connect("config-inited", _configure)
    app.connect("build-finished", _copy)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
