"""Self-checks of the vision_tasks chapter's exercises."""
from __future__ import annotations

import torch

from book.check.core import Case, _g, _number, run_cases

__all__ = ['pair_iou', 'scaled_box_iou', 'max_shift_for_iou', 'greedy_nms']


def pair_iou(fn) -> None:
    """``fn(a, b)`` -> the IoU (a float) of two boxes given as ``(x1, y1, x2, y2)`` lists."""
    from book.nn.detection import box_iou
    g = _g(41)
    pairs = [([0, 0, 4, 4], [2, 2, 6, 6], "partial overlap"), ([0, 0, 2, 2], [3, 3, 5, 5], "disjoint"),
             ([1, 1, 9, 9], [3, 3, 5, 5], "one inside the other"), ([0, 0, 2, 2], [2, 0, 4, 2], "touching edges"),
             ([0, 0, 10, 4], [0, 0, 10, 4], "identical"), ([0, 0, 4, 10], [0, 5, 4, 15], "corner outside")]
    for _ in range(4):
        xy = torch.rand(2, 2, generator=g) * 20
        wh = torch.rand(2, 2, generator=g) * 10 + 0.5
        a, b = torch.cat([xy, xy + wh], 1).tolist()
        pairs.append((a, b, "random"))
    cases = [Case((a, b), float(box_iou(torch.tensor([a]), torch.tensor([b]))[0, 0]), public=i < 4, label=label)
             for i, (a, b, label) in enumerate(pairs)]
    run_cases("pair_iou", fn, cases, compare=lambda got, exp: _num(got, exp, 1e-5),
              hint="intersection: from the larger top-left corner to the smaller bottom-right one, clamped at 0 "
              "in each direction; union = area(a) + area(b) - intersection")


def scaled_box_iou(fn) -> None:
    """``fn(rw, rh)`` -> the IoU of a box with the same box scaled about its centre by ``rw`` in width and
    ``rh`` in height (derived: it does not depend on the box)."""
    from book.nn.detection import box_iou

    def measured(rw, rh, w=6.0, h=10.0, cx=3.0, cy=-2.0):
        a = torch.tensor([[cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]], dtype=torch.float64)
        b = torch.tensor([[cx - rw * w / 2, cy - rh * h / 2, cx + rw * w / 2, cy + rh * h / 2]],
                         dtype=torch.float64)
        return float(box_iou(a, b)[0, 0])
    params = [(2.0, 2.0), (0.5, 1.0), (1.5, 0.5), (1.0, 1.0), (0.7, 0.9), (3.0, 0.2), (1.2, 1.3), (0.25, 4.0)]
    cases = [Case(p, measured(*p), public=i < 3, label=f"rw={p[0]}, rh={p[1]}") for i, p in enumerate(params)]
    run_cases("scaled_box_iou", fn, cases, compare=lambda got, exp: _num(got, exp, 1e-9),
              hint="in each direction the overlap is the shorter of the two extents, min(r, 1) of the original; "
              "the union is the two areas minus the overlap")


def max_shift_for_iou(fn) -> None:
    """``fn(side, t)`` -> the largest shift d along x of a side x side square that keeps IoU >= t."""
    from book.nn.detection import box_iou

    def searched(side, t):                      # bisection on the measured IoU, not the formula
        lo, hi = 0.0, float(side)
        a = torch.tensor([[0.0, 0.0, side, side]], dtype=torch.float64)
        for _ in range(80):
            mid = (lo + hi) / 2
            b = torch.tensor([[mid, 0.0, mid + side, side]], dtype=torch.float64)
            lo, hi = (mid, hi) if box_iou(a, b)[0, 0] >= t else (lo, mid)
        return lo
    params = [(10, 0.5), (20, 0.5), (16, 0.75), (8, 0.3), (30, 0.9), (12, 0.1), (5, 0.99)]
    cases = [Case(p, searched(*p), public=i < 3, label=f"side {p[0]}, IoU >= {p[1]}") for i, p in enumerate(params)]
    run_cases("max_shift_for_iou", fn, cases, compare=lambda got, exp: _num(got, exp, 1e-6),
              hint="the overlap is (s - d) x s and the union 2 s² minus it; set the ratio equal to t and solve for d")


def greedy_nms(fn) -> None:
    """``fn(boxes, scores, threshold)`` -> indices of the boxes NMS keeps, highest score first."""
    from book.nn.detection import nms
    g = _g(43)
    cases = []
    base = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 9]], dtype=torch.float32)
    cases.append(Case((base, torch.tensor([0.9, 0.8, 0.7, 0.95]), 0.5),
                      nms(base, torch.tensor([0.9, 0.8, 0.7, 0.95]), 0.5), label="two clusters"))
    cases.append(Case((base, torch.tensor([0.9, 0.8, 0.7, 0.95]), 0.95),
                      nms(base, torch.tensor([0.9, 0.8, 0.7, 0.95]), 0.95), label="a lenient threshold"))
    for i, (n, thr) in enumerate([(12, 0.5), (30, 0.3), (30, 0.7), (5, 0.0)]):
        xy = torch.rand(n, 2, generator=g) * 30
        boxes = torch.cat([xy, xy + 6 + torch.rand(n, 2, generator=g) * 8], 1)
        scores = torch.rand(n, generator=g)
        cases.append(Case((boxes, scores, thr), nms(boxes, scores, thr), public=i < 1, label=f"{n} random boxes, "
                          f"threshold {thr}"))

    def same(got, exp):
        try:
            got = [int(i) for i in got]
        except (TypeError, ValueError):
            return False, "expected a list or tensor of indices"
        return got == exp.tolist(), "different boxes kept, or not in order of decreasing score"
    run_cases("greedy_nms", fn, cases, compare=same,
              hint="sort by score; keep the first remaining box; drop every remaining box whose IoU with it is "
              "greater than the threshold; repeat")


def _num(got, expected: float, tol: float) -> tuple[bool, str]:
    g, why = _number(got)
    if g is None:
        return False, why
    ok = abs(g - expected) <= tol * max(1.0, abs(expected))
    return ok, "" if ok else f"off by {abs(g - expected):.3g}"
