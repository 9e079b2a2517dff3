"""Self-checks of the graphs chapter's exercises."""
from __future__ import annotations

import math

import torch

from book.check.core import Case, _g, _number, close, run_cases

__all__ = ["sym_normalise", "incoming_softmax", "sbm_homophily", "neutral_homophily"]


def _random_graph(n: int, p: float, g: torch.Generator, isolated: bool = False) -> torch.Tensor:
    upper = torch.triu((torch.rand(n, n, generator=g) < p).double(), 1)
    A = upper + upper.T
    if isolated:                       # the last node has no neighbour at all
        A[-1] = 0
        A[:, -1] = 0
    return A


def sym_normalise(fn) -> None:
    """``fn(A)`` -> ``D^-1/2 (A + I) D^-1/2`` with ``D`` the degrees of ``A + I``
    (``book.nn.graph.normalized_adjacency``)."""
    from book.nn.graph import normalized_adjacency
    g = _g(80)
    cases = []
    for i, (n, p, iso) in enumerate([(3, 0.9, False), (5, 0.5, False), (12, 0.3, True), (30, 0.1, True)]):
        A = _random_graph(n, p, g, iso)
        cases.append(Case((A.clone(),), normalized_adjacency(A), public=i < 2,
                          label=f"{n} nodes, {int(A.sum()) // 2} edges" + (", one isolated" if iso else "")))
    run_cases("sym_normalise", fn, cases, compare=lambda a, b: close(a, b, rtol=1e-6, atol=1e-9),
              hint="add the self-loops first; the degree of a node then counts itself; scale entry (i, j) "
                   "by 1 / sqrt(d_i d_j)")


def incoming_softmax(fn) -> None:
    """``fn(scores, target, n_nodes)`` -> per-edge weights: a softmax of ``scores`` over the edges that share
    a target node (``book.nn.graph.edge_softmax``)."""
    from book.nn.graph import edge_softmax
    g = _g(81)
    cases = []
    for i, (n, m, scale) in enumerate([(2, 4, 1.0), (4, 10, 1.0), (20, 80, 5.0), (50, 300, 400.0)]):
        target = torch.cat([torch.arange(n), torch.randint(0, n, (m - n,), generator=g)])  # every node hit
        target = target[torch.randperm(m, generator=g)]
        scores = torch.randn(m, generator=g, dtype=torch.float64) * scale
        cases.append(Case((scores, target, n), edge_softmax(scores, target, n), public=i < 2,
                          label=f"{m} edges into {n} nodes, scores of size ~{scale:g}"))
    run_cases("incoming_softmax", fn, cases, compare=lambda a, b: close(a, b, rtol=1e-6, atol=1e-9),
              hint="exponentiate, then divide by the sum over the edges with the same target "
                   "(index_add_ or a loop over nodes); subtract a maximum first for large scores")


def _homophily_ok(got, expected):
    h, why = _number(got)
    if h is None:
        return False, why
    ok = math.isclose(h, expected, rel_tol=1e-6, abs_tol=1e-9)
    return ok, "" if ok else f"expected homophily {expected:.6f}, got {h:.6f}"


def sbm_homophily(fn) -> None:
    """``fn(p_in, p_out, n_per_class, n_classes)`` -> the expected fraction of a stochastic block model's
    edges that join two nodes of the same class. Checked against the generator's own parameters: the
    ``(p_in, p_out)`` that ``book.lab.graphs.sbm_probabilities`` picks for a homophily ``h`` must give ``h``."""
    from book.lab.graphs import sbm_probabilities
    cases = []
    for i, (m, k, h, deg) in enumerate([(50, 2, 0.8, 5.0), (100, 3, 0.7, 6.0), (10, 4, 0.25, 3.0),
                                        (200, 5, 0.05, 10.0), (7, 3, 1.0, 2.0)]):
        p_in, p_out = sbm_probabilities(m, k, h, deg)
        cases.append(Case((p_in, p_out, m, k), h, public=i < 2,
                          label=f"{k} classes of {m}, p_in={p_in:.4g}, p_out={p_out:.4g}"))
    run_cases("sbm_homophily", fn, cases, compare=_homophily_ok,
              hint="count the expected edges inside the classes (pairs in one class times p_in) and between "
                   "them (pairs in different classes times p_out)")


def _neutral_ok(got, expected):
    k, d = expected
    h, why = _number(got)
    if h is None:
        return False, why
    own = (1 + d * h) / (d + 1)                  # expected weight on the node's own class in the mean
    other = d * (1 - h) / ((k - 1) * (d + 1))    # ... and on each other class
    if not math.isclose(own, other, rel_tol=1e-6, abs_tol=1e-9):
        return False, (f"at h = {h:.6g} the mean gives the node's own class {own:.4f} but each other "
                       f"class {other:.4f}: not equal")
    return True, ""


def neutral_homophily(fn) -> None:
    """``fn(n_classes, degree)`` -> the homophily at which the mean of one-hot labels over a node and its
    ``degree`` neighbours puts as much weight, in expectation, on the node's own class as on any other."""
    cases = [Case((k, d), (k, d), public=i < 2, label=f"{k} classes, degree {d}")
             for i, (k, d) in enumerate([(2, 4), (3, 6), (3, 50), (10, 20), (5, 7)])]
    run_cases("neutral_homophily", fn, cases, compare=_neutral_ok,
              hint="write the expected weight on the own class (the node itself plus d h neighbours) and on "
                   "one other class, each divided by d + 1, and solve for h")
