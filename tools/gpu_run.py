"""Run every chapter's ``gpu`` profile on a CUDA machine and write a table for ``docs/benchmarks.md``.

    python tools/gpu_run.py                      # all chapters, one after another, on the GPU
    python tools/gpu_run.py -j 2 gpt cnn         # two chapters at a time, only these
    python tools/gpu_run.py --dry history        # no GPU: BOOK_DRYRUN=1 (gpu configuration, few steps) on the CPU

For each chapter: seconds, peak GPU memory (``torch.cuda.max_memory_allocated``; on the CPU the kernel's
peak resident memory), whether it ran to the end with every assert holding (on a GPU the asserts are
enforced; in ``--dry`` they are only counted), the slowest cell and the last line it printed (usually
the result its assert checks). The table goes to stdout and, with ``-o``, to a file; executed notebooks
to ``_build/gpu-run/``. Sized for a short lease: every chapter's ``gpu`` profile together is meant to
take about 5 minutes on one H100-class GPU (``docs/benchmarks.md`` has the measured table).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "_build" / "gpu-run"
PROBE = ("import json, resource, torch\n"
         "cuda = torch.cuda.is_available()\n"
         "print('GPU-RUN ' + json.dumps({'device': torch.cuda.get_device_name() if cuda else 'cpu',\n"
         "    'peak_bytes': torch.cuda.max_memory_allocated() if cuda else\n"
         "    resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))")


def run_chapter(path: Path, dry: bool, timeout: int) -> dict:
    """Execute one chapter cell by cell in a fresh kernel; return its row of the table."""
    import nbformat
    from nbclient import NotebookClient
    from kernels import kernel_config
    from traitlets.config import Config

    env = {"BOOK_STRICT": "1", "MPLBACKEND": "module://matplotlib_inline.backend_inline"}
    if dry:
        env.update(BOOK_DRYRUN="1", BOOK_DEVICE="cpu", BOOK_THREADS="1", OMP_NUM_THREADS="1")
    else:
        env["BOOK_PROFILE"] = "gpu"
    os.environ.update(env)  # the kernel inherits them (one chapter per process: see main)
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(PROBE))
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", config=Config(kernel_config()),
                            resources={"metadata": {"path": str(path.parent)}})
    row = {"chapter": path.stem, "ok": True, "error": "", "cells": []}
    t0 = time.perf_counter()
    with client.setup_kernel():
        for i, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            t = time.perf_counter()
            try:
                client.execute_cell(cell, i)
            except Exception as e:  # noqa: BLE001 -- any failure is a row, the run goes on
                row.update(ok=False, error=f"cell {i}: {type(e).__name__}: {str(e).strip().splitlines()[-1][:160]}")
                break
            text = "".join(o.get("text", "") for o in cell.outputs if o.get("output_type") == "stream")
            row["cells"].append((time.perf_counter() - t, i, text.strip().splitlines()[-1:] or [""]))
    row["seconds"] = time.perf_counter() - t0
    probe = "".join(o.get("text", "") for o in nb.cells[-1].get("outputs", []))
    row.update(json.loads(probe.split("GPU-RUN ")[1]) if "GPU-RUN " in probe else {"device": "?", "peak_bytes": 0})
    OUT.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, OUT / path.name)
    return row


def _run_in_subprocess(args) -> dict:
    """One chapter per Python process, so environment and CUDA state never leak between chapters."""
    import subprocess
    path, dry, timeout = args
    code = ("import json, sys; sys.path.insert(0, %r); import gpu_run as g; from pathlib import Path; "
            "print('ROW ' + json.dumps(g.run_chapter(Path(%r), %r, %d)))" % (str(Path(__file__).parent), str(path),
                                                                          dry, timeout))
    r = subprocess.run([sys.executable, "-c", code], text=True, capture_output=True)
    rows = [ln for ln in r.stdout.splitlines() if ln.startswith("ROW ")]
    if not rows:
        return {"chapter": path.stem, "ok": False, "error": (r.stderr.strip().splitlines() or ["?"])[-1][:160],
                "cells": [], "seconds": 0.0, "device": "?", "peak_bytes": 0}
    return json.loads(rows[-1][4:])


def table(rows: list[dict], dry: bool) -> str:
    head = ("| chapter | seconds | peak memory | ran to the end" + (" (asserts counted only)" if dry else "")
            + " | slowest cell: its last printed line |\n|---|---|---|---|---|\n")
    lines = []
    for r in rows:
        slow = max(r["cells"], default=(0, -1, [""]))
        status = "yes" if r["ok"] else f"**no**: {r['error']}"
        lines.append(f"| {r['chapter']} | {r['seconds']:.0f} | {r['peak_bytes'] / 2**30:.2f} GiB | {status} | "
                     f"cell {slow[1]} ({slow[0]:.0f} s): {(slow[2][0] if slow[2] else '')[:90]} |")
    total = sum(r["seconds"] for r in rows)
    device = rows[0]["device"] if rows else "?"
    return head + "\n".join(lines) + f"\n\n{len(rows)} chapters on {device}: {total:.0f} s of chapter time.\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("chapters", nargs="*", help="chapter names (default: all)")
    ap.add_argument("-j", "--jobs", type=int, default=1, help="chapters at a time (default 1)")
    ap.add_argument("--dry", action="store_true", help="no GPU: the dry run of the gpu configuration on the CPU")
    ap.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    ap.add_argument("-o", "--output", help="also write the table to this file")
    a = ap.parse_args(argv)
    paths = [ROOT / "chapters" / f"{c}.ipynb" for c in a.chapters] or sorted((ROOT / "chapters").glob("*.ipynb"))
    missing = [p.name for p in paths if not p.exists()]
    if missing:
        ap.error(f"no such chapter: {missing}")
    if not a.dry:
        import torch
        if not torch.cuda.is_available():
            ap.error("no CUDA device here: use --dry for the CPU dry run of the gpu configuration")
    t0 = time.perf_counter()
    with ThreadPoolExecutor(a.jobs) as pool:
        rows = list(pool.map(_run_in_subprocess, [(p, a.dry, a.timeout) for p in paths]))
    text = table(rows, a.dry) + f"Wall time {time.perf_counter() - t0:.0f} s with {a.jobs} at a time.\n"
    print(text)
    if a.output:
        Path(a.output).write_text(text)
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
