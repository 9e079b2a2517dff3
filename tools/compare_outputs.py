"""Compare what two runs of the chapters printed: the check that a refactoring changed no result.

    python tools/compare_outputs.py BEFORE_DIR AFTER_DIR [--show 8]

Each folder holds executed notebooks (e.g. from the build's jupyter-cache, or written by nbclient). For every
chapter present in both, the printed text (stdout, glued values, plain-text results) is compared line by
line after masking what legitimately differs between two runs: wall-clock times and speeds (``5.2 s``,
``34 ms``, ``99.9 GFLOP/s``, ``-26%`` overheads), memory addresses and widget reprs. What is left -- losses,
accuracies, counts, asserts' inputs -- must be identical; the exit status is the number of chapters that
differ.
"""
from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
from pathlib import Path

# wall-clock quantities, addresses and widget reprs differ from run to run; results do not
MASKS = [
    (re.compile(r"\b0x[0-9a-f]+\b"), "0x…"),
    (re.compile(r"[-+]?\d[\d,]*(\.\d+)?\s*(ms|µs|us|s|seconds|GFLOP/s|TFLOP/s|tokens/s|it/s|kB|MB)\b"), "<time>"),
    (re.compile(r"overhead [-+]?\d+%"), "overhead <n>%"),
    (re.compile(r"\d+(\.\d+)?x (as fast|faster|slower|the time)"), "<n>x \\1"),
]
WIDGET = re.compile(r"^(VBox|HBox|IntSlider|FloatSlider|HTML|Dropdown)\(")


def printed(path: Path) -> list[str]:
    """The lines a chapter printed, in order, with run-dependent parts masked."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    lines = []
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        for out in cell.get("outputs", []):
            if out["output_type"] == "stream" and out.get("name") == "stdout":
                lines += "".join(out["text"]).splitlines()
            elif out["output_type"] in ("execute_result", "display_data"):
                data = out.get("data", {})
                if set(data) & {"image/png", "text/html", "text/markdown", "image/svg+xml"}:
                    continue
                text = "".join(data.get("text/plain", ""))
                if text and not WIDGET.match(text):
                    lines += text.splitlines()
    masked = []
    for line in lines:
        for pattern, repl in MASKS:
            line = pattern.sub(repl, line)
        masked.append(line)
    return masked


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    ap.add_argument("--show", type=int, default=8, help="differing lines shown per chapter")
    args = ap.parse_args(argv)
    differ = 0
    for a in sorted(args.before.glob("*.ipynb")):
        b = args.after / a.name
        if not b.is_file():
            print(f"{a.stem}: missing in {args.after}")
            differ += 1
            continue
        diff = [d for d in difflib.unified_diff(printed(a), printed(b), lineterm="", n=0)
                if not d.startswith(("---", "+++", "@@"))]
        print(f"{a.stem}: {len(printed(a))} lines printed, {'identical' if not diff else f'{len(diff)} differ'}")
        for d in diff[:args.show]:
            print("   ", d[:150])
        differ += bool(diff)
    return differ


if __name__ == "__main__":
    sys.exit(main())
