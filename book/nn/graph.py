"""Graph neural networks from scratch, taught in the graphs chapter.

* :func:`normalized_adjacency` -- Kipf & Welling's ``D^-1/2 (A + I) D^-1/2`` (checked against networkx's
  normalised Laplacian: ``I - L``);
* :class:`GCNLayer` -- one graph convolution ``A_hat X W + b`` (Kipf & Welling 2017);
* :func:`edge_softmax` -- a softmax over the edges that enter each node (a masked softmax written on an
  edge list), and :func:`masked_softmax`, its dense reference;
* :class:`GATLayer` -- multi-head graph attention (Velickovic et al. 2018) on an edge list;
* :func:`label_propagation` -- Zhu & Ghahramani's iteration with the labelled nodes clamped, and
  :func:`harmonic_solution`, the fixed point it converges to, in closed form.

Graphs are given as a dense 0/1 adjacency matrix ``A`` (``(n, n)``, symmetric, no self-loops) or as an
edge list ``edges`` of shape ``(2, E)``: row 0 the source ``j``, row 1 the target ``i`` of a message
``j -> i``. :func:`edge_index` turns the first into the second.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def _square(A: torch.Tensor) -> None:
    if A.ndim != 2 or A.shape[0] != A.shape[1]:
        raise ValueError(f"the adjacency matrix must be square (n, n), got shape {tuple(A.shape)}")


def normalized_adjacency(A: torch.Tensor, self_loops: bool = True) -> torch.Tensor:
    """``D^-1/2 (A + I) D^-1/2`` with ``D`` the degrees of ``A + I`` (``self_loops=False``: of ``A``).
    A node of degree 0 gets a zero row and column (without self-loops)."""
    _square(A)
    A = A.to(torch.get_default_dtype()) if not A.is_floating_point() else A
    if self_loops:
        A = A + torch.eye(len(A), dtype=A.dtype, device=A.device)
    deg = A.sum(1)
    inv_sqrt = torch.where(deg > 0, deg.clamp_min(1e-12).rsqrt(), torch.zeros_like(deg))
    return inv_sqrt[:, None] * A * inv_sqrt[None, :]


def edge_index(A: torch.Tensor, self_loops: bool = True) -> torch.Tensor:
    """The ``(2, E)`` edge list ``[source; target]`` of the nonzero entries of ``A`` (``A[i, j] != 0``:
    a message ``j -> i``), with every self-loop ``i -> i`` added when ``self_loops``."""
    _square(A)
    A = A != 0
    if self_loops:
        A = A | torch.eye(len(A), dtype=torch.bool, device=A.device)
    target, source = torch.nonzero(A, as_tuple=True)
    return torch.stack([source, target])


class GCNLayer(nn.Module):
    """``H' = A_hat H W + b``: every node averages its neighbours' (and its own) transformed features with
    the weights of the normalised adjacency ``A_hat`` (:func:`normalized_adjacency`)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.linear = nn.Linear(in_features, out_features, bias=False)
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    def forward(self, x: torch.Tensor, a_hat: torch.Tensor) -> torch.Tensor:
        if a_hat.shape != (len(x), len(x)):
            raise ValueError(f"a_hat must be ({len(x)}, {len(x)}) for {len(x)} nodes, got {tuple(a_hat.shape)}")
        out = a_hat @ self.linear(x)
        return out + self.bias if self.bias is not None else out


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Softmax of ``scores`` along ``dim`` over the entries where ``mask`` is True; the others get 0 (a row
    with no True entry is all zeros)."""
    masked = scores.masked_fill(~mask, float("-inf"))
    out = torch.softmax(masked, dim=dim)
    return torch.nan_to_num(out, nan=0.0)


def edge_softmax(scores: torch.Tensor, target: torch.Tensor, n_nodes: int) -> torch.Tensor:
    """Softmax of per-edge ``scores`` (``(E,)`` or ``(E, heads)``) over the edges that share a target node:
    for every node ``i``, the weights of its incoming edges sum to 1. The maximum per target is subtracted
    first, as in any stable softmax."""
    if len(scores) != len(target):
        raise ValueError(f"one score per edge: {len(scores)} scores for {len(target)} edges")
    shape = (n_nodes,) + tuple(scores.shape[1:])
    idx = target.view(-1, *([1] * (scores.ndim - 1))).expand_as(scores)
    top = torch.full(shape, float("-inf"), dtype=scores.dtype, device=scores.device)
    top = top.scatter_reduce(0, idx, scores, reduce="amax", include_self=True)
    e = torch.exp(scores - top[target])
    total = torch.zeros(shape, dtype=scores.dtype, device=scores.device).index_add(0, target, e)
    return e / total[target]


class GATLayer(nn.Module):
    """Multi-head graph attention (Velickovic et al. 2018) on an edge list ``(2, E)`` (with self-loops).

    Head ``h`` maps every node with ``W_h``, scores the edge ``j -> i`` by
    ``LeakyReLU(a_h^T [W_h x_i || W_h x_j])`` (slope 0.2), normalises the scores over ``i``'s incoming edges
    (:func:`edge_softmax`) and sums the messages ``alpha_ij W_h x_j``. The heads' outputs are concatenated
    (``concat=True``, ``heads * out_features`` features) or averaged. ``self.attention`` keeps the last
    ``(E, heads)`` weights."""

    def __init__(self, in_features: int, out_features: int, heads: int = 1, concat: bool = True,
                 negative_slope: float = 0.2, dropout: float = 0.0):
        super().__init__()
        self.heads, self.out_features, self.concat = heads, out_features, concat
        self.negative_slope, self.dropout = negative_slope, dropout
        self.weight = nn.Parameter(torch.empty(heads, in_features, out_features))
        self.att_target = nn.Parameter(torch.empty(heads, out_features))
        self.att_source = nn.Parameter(torch.empty(heads, out_features))
        self.bias = nn.Parameter(torch.zeros(heads * out_features if concat else out_features))
        for p in (self.weight, self.att_target, self.att_source):
            nn.init.xavier_uniform_(p)
        self.attention: torch.Tensor | None = None

    def scores(self, x: torch.Tensor, edges: torch.Tensor):
        """``(Wx, e)``: the transformed features ``(n, heads, out)`` and the raw edge scores ``(E, heads)``."""
        wx = torch.einsum("nf,hfo->nho", x, self.weight)
        source, target = edges
        s_tgt = (wx * self.att_target).sum(-1)            # (n, heads): a_left . W x_i
        s_src = (wx * self.att_source).sum(-1)            # (n, heads): a_right . W x_j
        e = F.leaky_relu(s_tgt[target] + s_src[source], self.negative_slope)
        return wx, e

    def forward(self, x: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
        if edges.ndim != 2 or edges.shape[0] != 2:
            raise ValueError(f"edges must be (2, E) [source; target], got shape {tuple(edges.shape)}")
        source, target = edges
        wx, e = self.scores(x, edges)
        alpha = edge_softmax(e, target, len(x))           # (E, heads)
        self.attention = alpha.detach()
        alpha = F.dropout(alpha, self.dropout, self.training)
        out = torch.zeros_like(wx).index_add(0, target, alpha[..., None] * wx[source])
        out = out.reshape(len(x), -1) if self.concat else out.mean(1)
        return out + self.bias


def label_propagation(A: torch.Tensor, y: torch.Tensor, train_mask: torch.Tensor, n_classes: int,
                      iterations: int = 100) -> torch.Tensor:
    """Zhu & Ghahramani's label propagation: start from the one-hot labels of the training nodes (uniform
    elsewhere), repeat ``F <- D^-1 A F`` and reset the training nodes to their labels. Returns the
    ``(n, n_classes)`` scores; a node of degree 0 keeps the uniform row."""
    _square(A)
    A = A.to(torch.float64)
    deg = A.sum(1, keepdim=True)
    P = torch.where(deg > 0, A / deg.clamp_min(1e-12), torch.zeros_like(A))
    clamp = F.one_hot(y[train_mask], n_classes).to(torch.float64)
    scores = torch.full((len(A), n_classes), 1.0 / n_classes, dtype=torch.float64)
    scores[train_mask] = clamp
    for _ in range(iterations):
        new = P @ scores
        new[deg[:, 0] == 0] = scores[deg[:, 0] == 0]
        new[train_mask] = clamp
        scores = new
    return scores


def harmonic_solution(A: torch.Tensor, y: torch.Tensor, train_mask: torch.Tensor, n_classes: int) -> torch.Tensor:
    """The fixed point of :func:`label_propagation` in closed form: ``F_U = (I - P_UU)^-1 P_UL Y_L`` with
    ``P = D^-1 A`` (every unlabelled node must reach a labelled one)."""
    _square(A)
    A = A.to(torch.float64)
    P = A / A.sum(1, keepdim=True)
    U, L = ~train_mask, train_mask
    if (A[U].sum(1) == 0).any():
        lonely = torch.nonzero(U & (A.sum(1) == 0)).flatten().tolist()
        raise ValueError(f"unlabelled nodes {lonely} have no neighbour: no harmonic value (use label_propagation)")
    Y_L = F.one_hot(y[L], n_classes).to(torch.float64)
    out = torch.zeros(len(A), n_classes, dtype=torch.float64)
    out[L] = Y_L
    eye = torch.eye(int(U.sum()), dtype=torch.float64)
    try:
        out[U] = torch.linalg.solve(eye - P[U][:, U], P[U][:, L] @ Y_L)
    except torch.linalg.LinAlgError as err:       # I - P_UU is singular: a component has no label
        raise ValueError("some unlabelled nodes cannot reach a labelled one: no unique harmonic solution "
                         "(use label_propagation)") from err
    return out
