"""A Colab-like Python environment, built from Colab's published package set, and chapters run in it.

Colab as a reader meets it: Python with torch, IPython 7.34, ipywidgets 7.7, numpy 2.1 ... preinstalled,
and a chapter opened alone in an empty folder whose first cell installs the book. This module builds

* a **base** venv holding Colab's versions of every package a chapter or its kernel touches
  (pip constraints from ``colab-runtime-*.txt``, a copy of Colab's ``pip freeze``), with the torch
  given by ``$BOOK_COLAB_TORCH`` (default: the version of the torch running this script -- Colab's exact
  torch 2.11 is a multi-GB CUDA download on PyPI for Linux; CI uses the machine's local CPU wheel), under
  the Python given by ``$BOOK_COLAB_PYTHON`` (default: this interpreter; Colab's is 3.13);
* an empty **overlay** venv (a Colab runtime) that sees the base's packages (a ``.pth`` file) but installs
  into itself, so an install cell really installs the book, and anything the cell would change shows
  up as a package of the overlay. The tests run a fresh overlay through the install cell alone, then
  the chapters one after another in one overlay per worker (the first one's install cell installs the
  book; every chapter's install cell is the same, ``tests/unit/test_notebooks.py``), as a reader who
  opens one chapter after another in the same runtime.

Command line (``make colab`` calls the first; the tests call the rest)::

    python tests/colab/colab_env.py build      # base venv + the book's wheel, under _build/colab/
    python3 tests/colab/colab_env.py base      # the base venv alone: standard library only, so `make test`
                                               # builds it beside the project's install (BOOK_COLAB_TORCH)
    python tests/colab/colab_env.py run CHAPTER  # one chapter through its install cell; prints a summary
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))          # tools/ is not a package
from kernels import kernel_config  # noqa: E402  (kernels on Unix sockets: no port race; stdlib only)

HERE = Path(__file__).resolve().parent
SNAPSHOT = sorted(HERE.glob("colab-runtime-*.txt"))[-1]
WORK = ROOT / "_build" / "colab"
# What Colab has preinstalled that a chapter, its kernel or nbclient uses (their dependencies follow).
PREINSTALLED = ["numpy", "matplotlib", "ipython", "ipykernel", "ipywidgets", "widgetsnbextension",
                "jupyter_client", "nbclient", "nbformat", "tqdm", "tokenizers", "tensorboard", "pillow",
                "jax", "jaxlib", "peft", "transformers", "scikit-learn", "networkx", "librosa"]
# Colab's versions of the packages whose version matters most to the book; checked after the build.
KEY_VERSIONS = ("ipython", "ipywidgets", "ipykernel", "numpy", "matplotlib", "tokenizers", "tensorboard")


def norm(name: str) -> str:
    """PEP 503 normalised project name: ``Jinja2`` and ``jinja2``, ``typing_extensions`` and
    ``typing-extensions`` agree."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(path: Path = SNAPSHOT) -> dict[str, str]:
    """``{normalised name: 'Name==version'}`` from a ``pip freeze`` file (comments and URL lines skipped)."""
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "==" in line and " @ " not in line:
            pins[norm(line.split("==")[0])] = line
    return pins


def sh(cmd: list, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run([str(c) for c in cmd], text=True, capture_output=True, **kw)
    if r.returncode:
        raise RuntimeError(f"{' '.join(map(str, cmd[:4]))} ... failed ({r.returncode}):\n"
                           f"{r.stdout[-3000:]}\n{r.stderr[-6000:]}")
    return r


def colab_python() -> str:
    return os.environ.get("BOOK_COLAB_PYTHON") or sys.executable


def colab_torch() -> str:
    want = os.environ.get("BOOK_COLAB_TORCH")
    if want:
        return want
    import torch
    return torch.__version__.split("+")[0]


def python_version(py: str) -> str:
    return sh([py, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"]).stdout.strip()


def base_dir() -> Path:
    """The base venv's folder, named by what defines it, so a changed snapshot or torch builds anew."""
    py = colab_python()
    key = hashlib.sha256(
        "\n".join([SNAPSHOT.read_text(), python_version(py), colab_torch(), *PREINSTALLED]).encode()
    ).hexdigest()[:12]
    return WORK / f"base-py{python_version(py)}-torch{colab_torch()}-{key}"


def installed(py: Path | str) -> dict[str, str]:
    """``{normalised name: version}`` of every distribution visible to ``py`` (first on sys.path wins)."""
    code = ("import importlib.metadata as md, json, re\nseen = {}\n"
            "for d in md.distributions():\n"
            "    n = d.metadata['Name']\n"
            "    if n: seen.setdefault(re.sub(r'[-_.]+', '-', n).lower(), d.version)\n"
            "print(json.dumps(seen))")
    return json.loads(sh([py, "-I", "-c", code]).stdout)  # -I: not the cwd's metadata


def build_base() -> Path:
    """Create (once per definition) the base venv with Colab's package versions; return its folder."""
    base = base_dir()
    stamp = base / ".colab-ready"
    if stamp.exists():
        return base
    if base.exists():
        shutil.rmtree(base)  # an interrupted build: start over
    base.parent.mkdir(parents=True, exist_ok=True)
    sh([colab_python(), "-m", "venv", base])
    py = base / "bin" / "python"
    # torch first, alone: it is not Colab's build here (see the module docstring), so its own
    # dependencies (setuptools, sympy...) may need newer versions than Colab's and are held from here on.
    sh([py, "-m", "pip", "install", "-q", f"torch=={colab_torch()}"])
    pins = read_pins()
    pins.update({n: f"{n}=={v}" for n, v in installed(py).items()})  # what is installed stays
    constraints = base / "colab-constraints.txt"
    constraints.write_text("\n".join(pins.values()) + "\n")
    sh([py, "-m", "pip", "install", "-q", "-c", constraints, *PREINSTALLED])
    have = installed(py)
    colab = read_pins()
    wrong = {n: (have.get(n), colab[n]) for n in KEY_VERSIONS if colab[n].split("==")[1] != have.get(n)}
    if wrong:
        raise RuntimeError(f"the base venv does not hold Colab's versions: {wrong}")
    stamp.write_text(json.dumps(have, indent=1, sort_keys=True))
    return base


def build_wheel() -> Path:
    """The book's wheel from this checkout (what ``pip install git+<repo>@<ref>`` builds in Colab)."""
    out = WORK / "wheel"
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(ROOT / "build", ignore_errors=True)   # setuptools' leftovers would put deleted modules in it
    sh([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", out, ROOT])
    return next(out.glob("*.whl"))


def overlay(base: Path, where: Path) -> Path:
    """An empty venv at ``where`` that imports the base's packages but installs into itself."""
    py_base = base / "bin" / "python"
    sh([py_base, "-m", "venv", "--without-pip", where])
    py = where / "bin" / "python"
    site_base = sh([py_base, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    site_own = sh([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    # addsitedir (not a bare path) so that the base's own .pth files are processed too
    Path(site_own, "_colab_base.pth").write_text(f"import site; site.addsitedir({site_base!r})\n")
    return py


RUNNER = r"""
import json, sys, nbformat
from nbclient import NotebookClient
from traitlets.config import Config
path, out, kernel_config = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
nb = nbformat.read(path, as_version=4)
probe = nbformat.v4.new_code_cell(metadata={"tags": ["colab-probe"]}, source=
    "import json, sys, book, torch, IPython, ipywidgets\n"
    "print('COLAB-PROBE ' + json.dumps({'python': sys.executable, 'book': book.__file__, "
    "'torch': torch.__version__, 'ipython': IPython.__version__, 'ipywidgets': ipywidgets.__version__}))")
nb.cells.append(probe)
try:
    # "immediate": the outputs are all in; a graceful shutdown lets the kernel tear its interpreter down (~1.3 CPU s)
    NotebookClient(nb, timeout=600, kernel_name="python3", shutdown_kernel="immediate", config=Config(kernel_config),
                   resources={"metadata": {"path": str(__import__('pathlib').Path(path).parent)}}).execute()
finally:
    nbformat.write(nb, out)
text = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
print(text.split("COLAB-PROBE ")[1].strip())
"""


def colab_env(install_spec, **extra) -> dict:
    """This process's environment as a fresh Colab kernel would see it: none of our BOOK_* settings, no
    PYTHONPATH or venv of ours, the install cell pointed at ``install_spec``, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BOOK_", "PYTHONPATH", "VIRTUAL_ENV"))}
    env.update(BOOK_INSTALL_SPEC=str(install_spec), PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONNOUSERSITE="1")
    return {**env, **extra}


def run_chapter(chapter: str, work: Path, base: Path | None = None, wheel: Path | None = None,
                venv: Path | None = None) -> dict:
    """Run ``chapters/<chapter>.ipynb`` alone in ``work/content`` through its own install cell in an overlay
    of the base venv: a new one in ``work/venv``, or ``venv``, an overlay earlier chapters ran in (a Colab
    runtime where another chapter was opened first: the install cell finds the book and does nothing).
    Returns what the kernel saw and the packages before and after."""
    base = base or build_base()
    wheel = wheel or next((WORK / "wheel").glob("*.whl"))
    py = overlay(base, work / "venv") if venv is None else venv / "bin" / "python"
    content = work / "content"  # Colab's working folder: nothing but the notebook
    content.mkdir(parents=True)
    shutil.copy(ROOT / "chapters" / f"{chapter}.ipynb", content)
    # BOOK_GLUE: store glued numbers as the build would (the build reuses this run); Colab shows nothing
    env = colab_env(wheel, BOOK_STRICT="1", BOOK_GLUE="1", BOOK_THREADS="1", OMP_NUM_THREADS="1",
                    MKL_NUM_THREADS="1",
                    MPLBACKEND="module://matplotlib_inline.backend_inline")
    before = installed(py)
    if venv is None and "neurons-to-llms-book" in before:
        raise RuntimeError("the overlay already has the book: the install cell would not be tested")
    executed = WORK / "executed" / f"{chapter}.ipynb"
    executed.parent.mkdir(parents=True, exist_ok=True)
    from prefill_cache import book_fingerprint  # one definition, shared with the build (imports jupyter_cache)
    probe = json.loads(sh([py, "-c", RUNNER, content / f"{chapter}.ipynb", executed, json.dumps(kernel_config())],
                          env=env, cwd=content).stdout.strip().splitlines()[-1])
    # the build may reuse this run (tools/prefill_cache.py --executed) if book/ is still the same
    nb = json.loads(executed.read_text(encoding="utf-8"))
    nb["metadata"]["book_fingerprint"] = book_fingerprint()
    executed.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return {"probe": probe, "before": before, "after": installed(py), "venv": str(py.parent.parent)}


def main(argv: list[str]) -> int:
    if argv[:1] == ["base"]:
        print(f"Colab-like base venv: {build_base()}")
        return 0
    if argv[:1] == ["build"]:
        base = build_base()
        print(f"Colab-like base venv: {base}\nbook wheel: {build_wheel()}")
        return 0
    if argv[:1] == ["run"] and len(argv) == 2:
        import tempfile
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(run_chapter(argv[1], Path(tmp))["probe"], indent=1))
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
