"""Simulate opening a chapter in Colab: the notebook alone in an empty folder, a fresh Python that has
torch (as Colab does) but not the book, and the chapter's own first cell installing the package.

The only difference from Colab is where pip gets the package: the install cell reads BOOK_INSTALL_SPEC,
which this test points at a wheel built from the checkout instead of the git URL (no network here).
Run by `make colab` (part of `make test`).
"""
import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHAPTER = os.environ.get("BOOK_COLAB_CHAPTER", "gradient_descent")

RUNNER = r"""
import json, sys, nbformat
from nbclient import NotebookClient
nb = nbformat.read(sys.argv[1], as_version=4)
NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": sys.argv[2]}}).execute()
import book, torch
print(json.dumps({"book": book.__file__, "torch": torch.__version__}))
"""


def run(cmd, **kw):
    r = subprocess.run(cmd, text=True, capture_output=True, **kw)
    if r.returncode:
        pytest.fail(f"{cmd[:3]} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-6000:]}")
    return r


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX paths")
def test_chapter_installs_book_and_runs_in_a_fresh_environment(tmp_path):
    wheel_dir = tmp_path / "wheel"
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheel_dir),
         str(ROOT)])
    wheel = next(wheel_dir.glob("*.whl"))

    env_dir = tmp_path / "colab-venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    # Colab comes with torch and Jupyter; install the same torch we test with, and the kernel machinery.
    run([str(py), "-m", "pip", "install", "-q", f"torch=={_torch_version()}", "ipykernel", "nbclient", "nbformat"])
    work = tmp_path / "content"  # Colab's working folder, with nothing but the notebook
    work.mkdir()
    shutil.copy(ROOT / "chapters" / f"{CHAPTER}.ipynb", work)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BOOK_", "PYTHONPATH", "VIRTUAL_ENV"))}
    env.update(BOOK_INSTALL_SPEC=str(wheel), BOOK_STRICT="1", BOOK_THREADS="1", OMP_NUM_THREADS="1")
    before = run([str(py), "-c", "import importlib.util as u, torch; print(u.find_spec('book'), torch.__version__)"],
                 env=env, cwd=work).stdout.split()
    assert before[0] == "None", "the fresh environment must not have the book yet"
    out = run([str(py), "-c", RUNNER, str(work / f"{CHAPTER}.ipynb"), str(work)], env=env, cwd=work).stdout
    info = json.loads(out.strip().splitlines()[-1])
    assert info["book"].startswith(str(env_dir)), f"book was imported from {info['book']}, not the fresh env"
    assert info["torch"] == before[1], "installing the book must not replace the existing torch"


def _torch_version():
    import torch
    return torch.__version__.split("+")[0]
