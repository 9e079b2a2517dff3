"""tools/gpu_run.py, the script a GPU lease runs: tested here in its CPU dry mode on a small chapter."""
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
import gpu_run  # noqa: E402


@pytest.mark.long
def test_dry_run_of_one_chapter_writes_a_table_row(tmp_path):
    out = tmp_path / "table.md"
    assert gpu_run.main(["--dry", "history", "-o", str(out)]) == 0   # the shortest chapter
    text = out.read_text()
    assert "| history |" in text and "| yes |" in text and "1 chapters on cpu" in text


def test_a_failing_chapter_is_a_row_not_a_crash():
    rows = [{"chapter": "x", "ok": False, "error": "cell 3: KeyError: 512", "cells": [], "seconds": 1.0,
             "device": "cpu", "peak_bytes": 0}]
    assert "**no**: cell 3: KeyError: 512" in gpu_run.table(rows, dry=True)


def test_refuses_without_cuda_unless_dry(capsys):
    import torch
    if torch.cuda.is_available():
        pytest.skip("CUDA is here")
    with pytest.raises(SystemExit):
        gpu_run.main(["history"])
    assert "--dry" in capsys.readouterr().err
