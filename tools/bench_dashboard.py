"""What the live training dashboard costs: the median over several runs of the same training with and
without ``book.ui.dashboard.TrainingDashboard`` (the gradient_descent chapter's MLP on the shipped MNIST).

    python tools/bench_dashboard.py              # 5 runs each, the chapter's cpu setting
    python tools/bench_dashboard.py --runs 7 --epochs 30 --hidden 1024   # e.g. the gpu profile on CUDA

Runs alternate (with, without, with, ...) so that a change in machine load hits both. Prints the medians
and the overhead; ``docs/benchmarks.md`` keeps the measured numbers.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import matplotlib  # noqa: E402

matplotlib.use("Agg")

import torch  # noqa: E402
from torch import nn  # noqa: E402

from book import fit, load_mnist, setup  # noqa: E402
from book.ui.dashboard import TrainingDashboard  # noqa: E402


def one_run(data, env, hidden: int, epochs: int, dashboard: bool) -> tuple[float, int]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, hidden), nn.ReLU(), nn.Linear(hidden, 128), nn.ReLU(),
                          nn.Linear(128, 10)).to(env.device)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    dash = TrainingDashboard(model, title="bench") if dashboard else None
    h = fit(model, (data.x_train, data.y_train), opt, epochs=epochs, batch_size=64, val=(data.x_test, data.y_test),
            log_every=50, amp_dtype=env.amp_dtype, callbacks=[dash] if dash else [], progress=False)
    return h.seconds[-1], dash.redraws if dash else 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--hidden", type=int, default=256)
    a = ap.parse_args(argv)
    env = setup(seed=0)
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
