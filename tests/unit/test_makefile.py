"""The Makefile's venv handling (README): a .venv of another Python, or one without a working pip (an
interrupted creation), is rebuilt with a message instead of being used silently. `make -n` evaluates
these checks (they run while the Makefile is read) without installing anything."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(shutil.which("make") is None or sys.platform == "win32", reason="needs make")


def fake_venv(tmp_path, version="3.9", pip_works=True):
    """A folder that looks like a venv: bin/python prints ``version`` and answers ``-m pip`` or not."""
    v = tmp_path / "v"
    (v / "bin").mkdir(parents=True)
    py = v / "bin" / "python"
    py.write_text(f'#!/bin/sh\nif [ "$1" = "-m" ]; then exit {0 if pip_works else 1}; fi\necho {version}\n')
    py.chmod(0o755)
    return v


def make_n(venv, *args):
    env = {k: v for k, v in os.environ.items() if k not in ("PY", "MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    r = subprocess.run(["make", "-n", "-C", str(ROOT), f"VENV={venv}", *args, "unit"],
                       text=True, capture_output=True, env=env)
    return r.stdout + r.stderr


def this_python():
    return "%d.%d" % sys.version_info[:2]


def test_a_venv_of_another_python_is_rebuilt_when_py_is_given(tmp_path):
    v = fake_venv(tmp_path, version="3.9")
    out = make_n(v, f"PY={sys.executable}")
    assert f"{v} is not a venv of {sys.executable}: rebuilding it" in out and not v.exists()


def test_the_same_python_keeps_the_venv(tmp_path):
    v = fake_venv(tmp_path, version=this_python())
    out = make_n(v, f"PY={sys.executable}")
    assert "rebuilding" not in out and v.exists()


def test_without_py_the_existing_venv_is_kept(tmp_path):
    v = fake_venv(tmp_path, version="3.9")
    assert "rebuilding" not in make_n(v) and v.exists()


def test_a_venv_without_pip_is_rebuilt(tmp_path):
    v = fake_venv(tmp_path, version=this_python(), pip_works=False)
    out = make_n(v)
    assert "has no working pip" in out and not v.exists()
