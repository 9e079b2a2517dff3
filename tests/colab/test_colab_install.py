"""Every chapter opened "in Colab": alone in an empty folder, in a Python holding Colab's published package
versions (IPython 7.34, ipywidgets 7.7, numpy 2.1, ...; see ``colab_env.py``), its first cell installing
the book. The only difference from Colab is where pip gets the book: the install cell reads
``BOOK_INSTALL_SPEC``, pointed here at a wheel of the checkout (Colab builds the same from the git tag).

The install cell (the same in every chapter: ``tests/unit/test_notebooks.py``) runs alone in a fresh
runtime; the chapters then run one after another in one runtime per worker, as a reader opening one
chapter after another: the first one's install cell installs the book (pip once per worker, not once
per chapter), and after every chapter the runtime must still hold Colab's packages plus the book only.

Run by ``make colab`` (part of ``make test``), which builds the base venv and the wheel first::

    python tests/colab/colab_env.py build && pytest -n 2 tests/colab
"""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import colab_env as ce  # noqa: E402

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX venv layout")
CHAPTERS = sorted(p.stem for p in (ce.ROOT / "chapters").glob("*.ipynb"))
BOOK = "neurons-to-llms-book"


@pytest.fixture(scope="module")
def base():
    return ce.build_base()


@pytest.fixture(scope="module")
def wheel():
    found = sorted((ce.WORK / "wheel").glob("*.whl"))
    return found[-1] if found else ce.build_wheel()


def test_base_holds_colabs_versions(base):
    have = ce.installed(base / "bin" / "python")
    colab = ce.read_pins()
    for name in ce.KEY_VERSIONS:
        assert colab[name] == f"{colab[name].split('==')[0]}=={have[name]}"
    assert BOOK not in have


@pytest.fixture(scope="module")
def runtime(base, tmp_path_factory):
    """One Colab runtime per worker: ``(venv, its packages before any chapter ran)``."""
    venv = tmp_path_factory.mktemp("runtime") / "venv"
    return venv, ce.installed(ce.overlay(base, venv))


def test_install_cell_in_a_fresh_runtime_adds_only_the_book(base, wheel, tmp_path):
    nb_path = tmp_path / "cell.ipynb"
    _install_cell_only(nb_path)
    py = ce.overlay(base, tmp_path / "venv")
    before = ce.installed(py)
    assert BOOK not in before
    r = _run_cell(py, nb_path, wheel)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    after = ce.installed(py)
    changed = {n: (v, after.get(n)) for n, v in before.items() if after.get(n) != v}
    assert not changed, f"the install cell changed preinstalled packages: {changed}"
    assert set(after) - set(before) == {BOOK}, "the install cell added more than the book"
    where = ce.sh([py, "-c", "import book; print(book.__file__)"], cwd=tmp_path).stdout.strip()
    assert where.startswith(str(tmp_path / "venv")), f"book imported from {where}, not the fresh runtime"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_runs_in_colab_and_the_runtime_only_gains_the_book(chapter, runtime, wheel, base, tmp_path):
    venv, fresh = runtime
    r = ce.run_chapter(chapter, tmp_path, base, wheel, venv=venv)
    probe, after = r["probe"], r["after"]
    # the kernel was the runtime's Python, and imported the book that an install cell put there
    assert probe["python"].startswith(str(venv)), probe
    assert probe["book"].startswith(str(venv)), f"book imported from {probe['book']}, not the runtime"
    assert probe["ipywidgets"] == fresh["ipywidgets"] and probe["ipython"] == fresh["ipython"]
    changed = {n: (v, after.get(n)) for n, v in fresh.items() if after.get(n) != v}
    assert not changed, f"an install cell changed preinstalled packages: {changed}"
    assert set(after) - set(fresh) == {BOOK}, "the runtime gained more than the book"


def _install_cell_only(path: Path) -> None:
    nb = nbformat.read(ce.ROOT / "chapters" / "gradient_descent.ipynb", as_version=4)
    nb.cells = [next(c for c in nb.cells if c.cell_type == "code")]
    nbformat.write(nb, path)


def _run_cell(py, nb_path, spec):
    env = ce.colab_env(spec)
    code = ("import json, sys, nbformat\nfrom nbclient import NotebookClient\nfrom traitlets.config import Config\n"
            "nb = nbformat.read(sys.argv[1], as_version=4)\n"
            "NotebookClient(nb, timeout=300, kernel_name='python3', shutdown_kernel='immediate',\n"
            "               config=Config(json.loads(sys.argv[2]))).execute()")
    return subprocess.run([str(py), "-c", code, str(nb_path), json.dumps(ce.kernel_config())], env=env,
                          cwd=nb_path.parent, text=True, capture_output=True)


def test_install_cell_refuses_to_replace_a_preinstalled_package(base, tmp_path):
    """A book that needed ipywidgets 8 must fail loudly in the cell, not upgrade Colab's ipywidgets;
    a plain ``pip install`` of the same requirement does upgrade it (so this test can fail)."""
    nb_path = tmp_path / "cell.ipynb"
    _install_cell_only(nb_path)
    py = ce.overlay(base, tmp_path / "venv")
    r = _run_cell(py, nb_path, "ipywidgets>=8")
    assert r.returncode != 0 and "installing the book failed" in r.stderr + r.stdout
    assert ce.installed(py)["ipywidgets"] == "7.7.1"
    # control: without the held versions pip replaces Colab's ipywidgets
    plain = subprocess.run([str(py), "-m", "pip", "install", "-q", "--dry-run", "--report", "-",
                            "ipywidgets>=8"], text=True, capture_output=True)
    if plain.returncode:
        pytest.skip(f"the package index is not reachable for the control: {plain.stderr[-300:]}")
    report = json.loads(plain.stdout)
    assert any(i["metadata"]["name"] == "ipywidgets" for i in report["install"])


def test_widget_unit_tests_pass_under_ipywidgets_7(base, wheel, tmp_path):
    """The unit tests that build widgets, run against Colab's ipywidgets 7.7.1 (the main venv has 8)."""
    py = ce.overlay(base, tmp_path / "venv")
    ce.sh([py, "-m", "pip", "install", "-q", "-c", base / "colab-constraints.txt", wheel, "pytest"],
          env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    # the UI layer's tests, and every chapter test that builds a view (by name)
    tests = [ce.ROOT / "tests" / "unit" / "test_ui.py"] + [
        p for p in sorted((ce.ROOT / "tests" / "chapters").glob("test_*.py"))
        if re.search(r"\.show\(\)|ipywidgets|explore\(", p.read_text(encoding="utf-8"))]
    views = "test_ui or explor or inspect or playground or timeline or dashboard or show or player or user"
    assert len(tests) > 5 and all(p.is_file() for p in tests)
    # run from tmp_path so that the checkout's book/ is not importable: the wheel's book is tested
    r = subprocess.run([str(tmp_path / "venv" / "bin" / "pytest"), "-q", "-p", "no:cacheprovider",
                        "-W", "ignore::DeprecationWarning", "--rootdir", str(tmp_path), "-k", views,
                        *map(str, tests)],
                       cwd=tmp_path, text=True, capture_output=True,
                       env={**os.environ, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert " passed" in r.stdout
    ver = ce.sh([py, "-c", "import ipywidgets; print(ipywidgets.__version__)"]).stdout.strip()
    assert ver.startswith("7."), ver
