"""What the live training dashboard costs: the median over several runs of the same training with and
without ``book.ui.dashboard.TrainingDashboard`` (the gradient_descent chapter's MLP on the shipped MNIST).

    python tools/bench_dashboard.py              # 5 runs each, the chapter's cpu setting
    python tools/bench_dashboard.py --runs 7 --epochs 30 --hidden 1024   # e.g. the gpu profile on CUDA

Runs alternate (with, without, with, ...) so that a change in machine load hits both. Each time is the wall
time of the whole ``fit`` call (the dashboard's final drawing included), and every redraw costs what it costs
in a notebook: the figure is rendered to PNG exactly as Jupyter's inline backend does
(``IPython.core.pylabtools.print_figure``), as if shown. Prints the medians and the overhead;
``docs/benchmarks.md`` keeps the measured numbers.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import matplotlib  # noqa: E402

matplotlib.use("Agg")

import torch  # noqa: E402
from torch import nn  # noqa: E402

from book import fit, load_mnist, setup  # noqa: E402
from book.ui.dashboard import TrainingDashboard  # noqa: E402


class _RenderedHandle:
    """What ``display(fig, display_id=True)`` costs in a notebook: a PNG of the figure, at every update."""

    def __init__(self, fig):
        self.update(fig)

    def update(self, fig):
        from IPython.core.pylabtools import print_figure

        print_figure(fig, "png", bbox_inches="tight")


def render_as_in_a_notebook():
    """Make book.ui's LiveFigure render PNGs as it does under a kernel (this script has none)."""
    import IPython.display

    import book.ui.figure as figure
    figure.in_notebook = lambda: True
    IPython.display.display = lambda fig, display_id=True: _RenderedHandle(fig)


def one_run(data, env, hidden: int, epochs: int, dashboard: bool) -> tuple[float, int]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, hidden), nn.ReLU(), nn.Linear(hidden, 128), nn.ReLU(),
                          nn.Linear(128, 10)).to(env.device)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    dash = TrainingDashboard(model, title="bench") if dashboard else None
    start = time.perf_counter()
    fit(model, (data.x_train, data.y_train), opt, epochs=epochs, batch_size=64, val=(data.x_test, data.y_test),
        log_every=50, amp_dtype=env.amp_dtype, callbacks=[dash] if dash else [], progress=False)
    return time.perf_counter() - start, dash.redraws if dash else 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--hidden", type=int, default=256)
    a = ap.parse_args(argv)
    env = setup(seed=0)
    render_as_in_a_notebook()
    data = load_mnist().to(env.device)
    times = {True: [], False: []}
    redraws = []
    for _ in range(a.runs):
        for dash in (True, False):
            s, r = one_run(data, env, a.hidden, a.epochs, dash)
            times[dash].append(s)
            redraws += [r] if dash else []
    with_d, without = statistics.median(times[True]), statistics.median(times[False])
    print(f"{env.device}: {a.runs} runs each, {a.epochs} epochs, hidden {a.hidden}")
    print(f"with dashboard: median {with_d:.2f} s (runs {', '.join(f'{t:.2f}' for t in times[True])}; "
          f"redraws {redraws})")
    print(f"without:        median {without:.2f} s (runs {', '.join(f'{t:.2f}' for t in times[False])})")
    print(f"overhead of the medians: {with_d / without - 1:+.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
