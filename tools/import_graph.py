"""The import graph of the `book` package: its layers, the rules between them, and a drawing.

    python tools/import_graph.py                      # check the rules, print the layer graph
    python tools/import_graph.py --svg assets/import-graph.svg   # ... and redraw the figure

Every ``import``/``from ... import`` inside ``book/`` (also those inside functions) is read with ``ast``, so
nothing is imported to draw the graph. Layers, bottom to top (an arrow is "imports"):

* ``runtime`` — ``book.config`` (device, profiles, dry run) and ``book.hardware`` (timing, peak FLOP/s)
* ``nn`` — from-scratch implementations, each checked against the PyTorch call it explains; imports nothing
  of the book but other ``nn`` modules
* ``data`` — shipped and generated data; ``train`` — the training loop
* ``ui`` — the one UI layer (live figure, player, explorer base, dashboard)
* ``lab`` — one module per chapter: its experiments and its views (built on ``ui``)
* ``check`` — one module per chapter: exercise self-checks; ``teach`` — the teacher's grader
* ``book`` — the package itself (``book/__init__.py`` re-exports the everyday names)

tests/unit/test_architecture.py fails on an import that breaks a rule or closes a cycle.
"""
from __future__ import annotations

import argparse
import ast
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "book"

# layer -> the layers it may import (besides itself)
ALLOWED = {
    "runtime": set(),
    "nn": set(),
    "data": {"runtime"},
    "train": {"runtime", "data"},
    "ui": {"runtime", "train"},
    "lab": {"runtime", "nn", "data", "train", "ui"},
    "check": {"runtime", "nn", "data", "train", "lab"},
    "teach": {"runtime", "check", "book"},
    "book": {"runtime", "data", "train", "ui", "check"},
}
ORDER = ["teach", "check", "book", "lab", "ui", "train", "data", "nn", "runtime"]   # top to bottom


def modules(package: Path = PACKAGE) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package (packages as their ``__init__``)."""
    out = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def layer(module: str) -> str:
    """The layer a dotted module name belongs to (see the module docstring)."""
    parts = module.split(".")
    if parts == ["book"]:
        return "book"
    head = parts[1]
    if head in ("config", "hardware"):
        return "runtime"
    if head in ALLOWED:
        return head
    raise ValueError(f"{module}: no layer for book.{head}; add it to tools/import_graph.py (ALLOWED and layer())")


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """Module -> the book modules it imports (``from book.nn import losses`` counts as ``book.nn.losses``)."""
    mods = modules(package)
    edges: dict[str, set[str]] = defaultdict(set)
    for mod, path in mods.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(mod, path.name == "__init__.py", node)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            for t in targets:
                if t.split(".")[0] != "book":
                    continue
                while t not in mods:          # book.nn.gpt.GPT -> book.nn.gpt
                    t = t.rsplit(".", 1)[0]
                if t != mod:
                    edges[mod].add(t)
        edges.setdefault(mod, set())
    return dict(edges)


def violations(g: dict[str, set[str]]) -> list[str]:
    """Imports that go against ALLOWED, said in words."""
    bad = []
    for a, targets in sorted(g.items()):
        for b in sorted(targets):
            la, lb = layer(a), layer(b)
            if la != lb and lb not in ALLOWED[la]:
                bad.append(f"{a} ({la}) imports {b} ({lb}); {la} may import only {sorted(ALLOWED[la]) or 'nothing'}")
    return bad


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), i.e. import cycles."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(max(1000, 10 * len(g)))
    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def layer_edges(g: dict[str, set[str]]) -> dict[tuple[str, str], int]:
    """(importing layer, imported layer) -> number of module-to-module imports."""
    count: dict[tuple[str, str], int] = defaultdict(int)
    for a, targets in g.items():
        for b in targets:
            if layer(a) != layer(b):
                count[(layer(a), layer(b))] += 1
    return dict(count)


def draw(g: dict[str, set[str]], path: Path) -> None:
    """The layers as boxes (their modules listed inside), top to bottom; an arrow per imported layer, labelled
    with the number of module-to-module imports."""
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    members: dict[str, list[str]] = defaultdict(list)
    for m in g:
        members[layer(m)].append(m.removeprefix("book.").split(".", 1)[-1] if "." in m else m)
    # one layer per row, top to bottom, and nn as a column on the right (only lab and check use it)
    rows = ["teach", "book", "check", "lab", "ui", "train", "data", "runtime"]
    height, step, left, width = 0.95, 1.25, 2.6, 6.2
    boxes = {name: (left, (len(rows) - 1 - r) * step, width) for r, name in enumerate(rows)}
    boxes["nn"] = (9.6, 0.0, 2.4)
    fig, ax = plt.subplots(figsize=(12, 10.5))
    ax.set_xlim(0, 12.1)
    ax.set_ylim(-0.2, len(rows) * step)
    ax.axis("off")
    for name, (x, y, w) in boxes.items():
        h = height if name != "nn" else boxes["check"][1] + height
        ax.add_patch(plt.Rectangle((x, y), w, h, fc="#f4f4f4", ec="0.35", lw=1))
        ax.text(x + 0.1, y + h - 0.08, name, ha="left", va="top", fontsize=12, weight="bold")
        names = sorted(members.get(name, []))
        text = "\n".join(names) if name == "nn" else textwrap.fill(", ".join(names), width=int(w * 14))
        ax.text(x + w / 2, y + h / 2 - 0.14, text, ha="center", va="center", fontsize=8, color="0.2")
    for (a, b), n in sorted(layer_edges(g).items()):
        (xa, ya, wa), (xb, yb, wb) = boxes[a], boxes[b]
        if b == "nn":           # to the right, into the nn column
            start, end, style = (xa + wa, ya + height / 2), (xb, ya + height / 2), "arc3,rad=0"
        elif ya - yb <= step + 1e-9:   # the next row: straight down
            start, end, style = (xa + wa / 2, ya), (xb + wb / 2, yb + height), "arc3,rad=0"
        else:                   # further down: around the left of the boxes in between
            skip = round((ya - yb) / step)
            start, end = (xa, ya + height * 0.35), (xb, yb + height * 0.65)
            style = f"arc3,rad={0.12 + 0.03 * skip}"
        ax.annotate("", xy=end, xytext=start, arrowprops=dict(arrowstyle="-|>", color="tab:blue", alpha=0.6,
                                                              lw=1.1, shrinkA=0, shrinkB=0, connectionstyle=style))
        mid = ((start[0] + end[0]) / 2 - (0.45 + 0.1 * (ya - yb) if "0.1" in style or "0.2" in style else 0),
               (start[1] + end[1]) / 2)
        ax.text(*mid, str(n), fontsize=7, color="tab:blue", ha="center", va="center",
                bbox=dict(fc="white", ec="none", pad=0.5))
    ax.set_title("book/: who imports whom (arrows point to the imported layer; numbers: module imports). "
                 "No cycles.", fontsize=11)
    plt.rcParams["svg.hashsalt"] = "book"
    fig.savefig(path, metadata={"Date": None} if str(path).endswith(".svg") else None, bbox_inches="tight")
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--svg", type=Path, help="write the drawing here (e.g. assets/import-graph.svg)")
    args = ap.parse_args(argv)
    g = graph()
    for (a, b), n in sorted(layer_edges(g).items(), key=lambda kv: (ORDER.index(kv[0][0]), ORDER.index(kv[0][1]))):
        print(f"{a:>8} -> {b:<8} {n:3d} imports")
    problems = violations(g) + [f"import cycle: {' -> '.join(c)}" for c in cycles(g)]
    for p in problems:
        print("ERROR", p)
    if args.svg:
        draw(g, args.svg)
        print(f"wrote {args.svg}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
