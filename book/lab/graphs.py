"""The graphs chapter: semi-supervised node classification with GCN and GAT, against baselines.

Two graphs: Zachary's karate club (networkx ships it; labels: the club each member joined) and a
generated stochastic block model whose homophily (the fraction of edges inside a class) is set, with
noisy node features. The layers are written from scratch in :mod:`book.nn.graph`; this module holds the
data, the three models (MLP, GCN, GAT) bound to their graph, training with ``fit``, the baselines and the
two views (:class:`GraphMonitor`, live training; :class:`AttentionExplorer`, a node's attention weights).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from book.nn.graph import GATLayer, GCNLayer, edge_index, label_propagation, normalized_adjacency
from book.train import Callback, State, fit
from book.ui import Explorer, Replay


# ----------------------------------------------------------------------------- data
@dataclass
class Graph:
    """A graph for node classification: dense adjacency ``A`` (0/1, symmetric, no self-loops), node
    features ``x`` ``(n, d)``, labels ``y`` ``(n,)`` in ``0..n_classes-1`` and, for drawing, positions."""
    A: torch.Tensor
    x: torch.Tensor
    y: torch.Tensor
    n_classes: int
    name: str = "graph"
    pos: np.ndarray | None = None

    @property
    def n(self) -> int:
        return len(self.y)

    def edges(self) -> np.ndarray:
        """The undirected edges ``(m, 2)``, each once (``i < j``)."""
        i, j = np.nonzero(np.triu(self.A.numpy(), 1))
        return np.stack([i, j], 1)


def edge_homophily(A: torch.Tensor, y: torch.Tensor) -> float:
    """The fraction of edges whose two ends have the same label."""
    i, j = torch.nonzero(torch.triu(A, 1), as_tuple=True)
    if len(i) == 0:
        raise ValueError("the graph has no edges")
    return (y[i] == y[j]).double().mean().item()


def karate(seed: int = 0) -> Graph:
    """Zachary's karate club (34 members, 78 friendships): label 0 = the members who stayed with Mr. Hi,
    1 = those who followed the officer. Features: the identity (one indicator per member), as Kipf &
    Welling did, so that a model without edges knows nothing about an unlabelled member."""
    import networkx as nx
    G = nx.karate_club_graph()
    A = torch.tensor(nx.to_numpy_array(G, nodelist=range(34), weight=None), dtype=torch.float32)
    y = torch.tensor([0 if G.nodes[i]["club"] == "Mr. Hi" else 1 for i in range(34)])
    pos = nx.spring_layout(G, seed=seed)
    return Graph(A, torch.eye(34), y, 2, "karate club", np.array([pos[i] for i in range(34)]))


def sbm_probabilities(n_per_class: int, n_classes: int, homophily: float, degree: float):
    """``(p_in, p_out)`` of a stochastic block model with equal classes whose expected degree is ``degree``
    and whose expected fraction of edges inside a class is ``homophily``."""
    if not 0 <= homophily <= 1:
        raise ValueError(f"homophily must be in [0, 1], got {homophily}")
    p_in = homophily * degree / (n_per_class - 1)
    p_out = (1 - homophily) * degree / (n_per_class * (n_classes - 1))
    if max(p_in, p_out) > 1:
        raise ValueError(f"degree {degree} is too high for {n_per_class} nodes per class (p > 1)")
    return p_in, p_out


def sbm(n_per_class: int = 100, n_classes: int = 3, homophily: float = 0.8, degree: float = 6.0,
        dim: int = 16, signal: float = 1.0, seed: int = 0) -> Graph:
    """A stochastic block model (Holland et al. 1983) with ``n_classes`` equal classes, expected degree
    ``degree`` and expected edge homophily ``homophily``. Node features ``mu_y + noise``: the class means
    ``mu_c`` are drawn once with length about ``signal``, the noise has length about 1 (both scaled by
    ``1 / sqrt(dim)``), so a small ``signal`` makes the features alone a weak clue."""
    g = torch.Generator().manual_seed(seed)
    n = n_per_class * n_classes
    y = torch.arange(n_classes).repeat_interleave(n_per_class)
    p_in, p_out = sbm_probabilities(n_per_class, n_classes, homophily, degree)
    P = torch.where(y[:, None] == y[None, :], p_in, p_out)
    upper = torch.triu(torch.rand(n, n, generator=g) < P, 1)
    A = (upper | upper.T).float()
    means = torch.randn(n_classes, dim, generator=g) * signal / dim ** 0.5
    x = means[y] + torch.randn(n, dim, generator=g) / dim ** 0.5
    return Graph(A, x, y, n_classes, f"SBM h={homophily:g}")


@dataclass
class Masks:
    train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor


def node_split(y: torch.Tensor, n_classes: int, per_class: int, n_val: int, seed: int = 0) -> Masks:
    """Boolean masks: ``per_class`` training nodes of every class, ``n_val`` validation nodes, the rest test
    (disjoint; drawn with ``seed``)."""
    g = torch.Generator().manual_seed(seed)
    train = torch.zeros(len(y), dtype=torch.bool)
    for c in range(n_classes):
        idx = torch.nonzero(y == c).flatten()
        if len(idx) < per_class:
            raise ValueError(f"class {c} has {len(idx)} nodes, fewer than per_class={per_class}")
        train[idx[torch.randperm(len(idx), generator=g)[:per_class]]] = True
    rest = torch.nonzero(~train).flatten()
    if n_val >= len(rest):
        raise ValueError(f"n_val={n_val} leaves no test nodes ({len(rest)} unlabelled nodes)")
    rest = rest[torch.randperm(len(rest), generator=g)]
    val = torch.zeros_like(train)
    val[rest[:n_val]] = True
    return Masks(train, val, ~train & ~val)


# ----------------------------------------------------------------------------- models
class MLP(nn.Module):
    """Features only: two layers, no edges (the baseline every graph model must beat)."""

    def __init__(self, graph: Graph, hidden: int = 16, dropout: float = 0.5):
        super().__init__()
        self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(graph.x.shape[1], hidden), nn.ReLU(),
                                 nn.Dropout(dropout), nn.Linear(hidden, graph.n_classes))

    def forward(self, x):
        return self.net(x)


class GCN(nn.Module):
    """Two graph convolutions (Kipf & Welling 2017) on a fixed graph: ``A_hat ReLU(A_hat X W1) W2``."""

    def __init__(self, graph: Graph, hidden: int = 16, dropout: float = 0.5):
        super().__init__()
        self.register_buffer("a_hat", normalized_adjacency(graph.A))
        self.conv1 = GCNLayer(graph.x.shape[1], hidden)
        self.conv2 = GCNLayer(hidden, graph.n_classes)
        self.dropout = dropout

    def forward(self, x):
        x = F.dropout(x, self.dropout, self.training)
        x = F.relu(self.conv1(x, self.a_hat))
        return self.conv2(F.dropout(x, self.dropout, self.training), self.a_hat)


class GAT(nn.Module):
    """Two graph-attention layers (Velickovic et al. 2018): ``heads`` heads of ``hidden`` features,
    concatenated and passed through ELU, then one head to the classes."""

    def __init__(self, graph: Graph, hidden: int = 8, heads: int = 4, dropout: float = 0.5):
        super().__init__()
        self.register_buffer("edges", edge_index(graph.A))
        self.gat1 = GATLayer(graph.x.shape[1], hidden, heads=heads, dropout=dropout)
        self.gat2 = GATLayer(hidden * heads, graph.n_classes, heads=1, dropout=dropout)
        self.dropout = dropout

    def forward(self, x):
        x = F.dropout(x, self.dropout, self.training)
        x = F.elu(self.gat1(x, self.edges))
        return self.gat2(F.dropout(x, self.dropout, self.training), self.edges)


MODELS = {"MLP": MLP, "GCN": GCN, "GAT": GAT}


def train_nodes(kind: str, graph: Graph, masks: Masks, *, steps: int, lr: float = 0.01,
                weight_decay: float = 5e-4, seed: int = 0, log_every: int | None = None, callbacks=(),
                **model_args):
    """Train ``MODELS[kind]`` full-batch on the training nodes' labels (the others are ignored by the loss),
    Adam with weight decay, with ``fit``; returns ``(model, history)``."""
    if kind not in MODELS:
        raise ValueError(f"kind must be one of {list(MODELS)}, got {kind!r}")
    torch.manual_seed(seed)
    model = MODELS[kind](graph, **model_args)
    target = torch.where(masks.train, graph.y, torch.full_like(graph.y, -100))   # -100: ignored
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    hist = fit(model, lambda step: (graph.x, target), opt, steps=steps,
               log_every=log_every or steps, callbacks=callbacks)
    return model, hist


@torch.no_grad()
def predict(model: nn.Module, graph: Graph) -> torch.Tensor:
    """Predicted class of every node, in eval mode (no dropout)."""
    was = model.training
    model.eval()
    out = model(graph.x).argmax(1)
    model.train(was)
    return out


def accuracy(pred: torch.Tensor, graph: Graph, mask: torch.Tensor) -> float:
    return (pred[mask] == graph.y[mask]).double().mean().item()


def majority_pred(graph: Graph, masks: Masks) -> torch.Tensor:
    """Every node gets the most frequent class of the training nodes (ties: the smallest)."""
    counts = torch.bincount(graph.y[masks.train], minlength=graph.n_classes)
    return torch.full_like(graph.y, int(counts.argmax()))


def lp_pred(graph: Graph, masks: Masks, iterations: int = 200) -> torch.Tensor:
    """Label propagation's predictions (Zhu & Ghahramani 2002), with class mass normalisation: each class's
    scores are rescaled so that their total over the unlabelled nodes matches the class's share of the
    training labels. Why: with few labels on a large graph the propagated scores crowd together and a plain
    argmax gives most nodes one class (offline, 1,500-node block model, h = 0.7, seeds 0-2: test accuracy
    0.39-0.57 plain, 0.58-0.64 normalised), and a baseline must be given its best chance."""
    scores = label_propagation(graph.A, graph.y, masks.train, graph.n_classes, iterations)  # (n, classes)
    share = torch.bincount(graph.y[masks.train], minlength=graph.n_classes).double()
    share = share / share.sum()
    mass = scores[~masks.train].sum(0).clamp_min(1e-12)         # (classes,) over the unlabelled nodes
    return (scores * share / mass).argmax(1)


def compare(graph: Graph, masks: Masks, *, steps: int, seed: int = 0, kinds=("MLP", "GCN", "GAT"),
            lp_steps: int = 200, **train_args) -> dict[str, torch.Tensor]:
    """Predictions of every method on every node: majority, label propagation (``lp_steps`` iterations)
    and the trained models (``kinds``, ``steps`` each)."""
    preds = {"majority": majority_pred(graph, masks),
             "label propagation": lp_pred(graph, masks, lp_steps)}
    for kind in kinds:
        model, _ = train_nodes(kind, graph, masks, steps=steps, seed=seed, **train_args)
        preds[kind] = predict(model, graph)
    return preds


def homophily_sweep(levels, *, seeds, steps: int, n_per_class: int, n_classes: int, degree: float, dim: int,
                    signal: float, per_class: int, n_val: int, kinds=("MLP", "GCN", "GAT"),
                    lp_steps: int = 200) -> dict:
    """Validation accuracy of every method at every homophily level, one graph and split per seed:
    ``{method: array (levels, seeds)}``; the measured homophily under ``"measured"``."""
    out: dict = {}
    for a, h in enumerate(levels):
        for s in range(seeds):
            g = sbm(n_per_class, n_classes, h, degree, dim, signal, seed=100 + s)
            m = node_split(g.y, n_classes, per_class, n_val, seed=s)
            preds = compare(g, m, steps=steps, seed=s, kinds=kinds, lp_steps=lp_steps)
            out.setdefault("measured", np.zeros((len(levels), seeds)))[a, s] = edge_homophily(g.A, g.y)
            for name, p in preds.items():
                out.setdefault(name, np.zeros((len(levels), seeds)))[a, s] = accuracy(p, g, m.val)
    return out


# ----------------------------------------------------------------------------- drawing
def draw_graph(ax, graph: Graph, colors, *, ring=None, widths=None, title: str = ""):
    """Nodes at ``graph.pos`` coloured by class ``colors`` (``(n,)`` ints); ``ring``: nodes drawn with a
    black outline (e.g. the training nodes); ``widths``: one line width per undirected edge (default 0.6)."""
    from matplotlib.collections import LineCollection
    pos = graph.pos
    e = graph.edges()
    lw = np.full(len(e), 0.6) if widths is None else np.asarray(widths)
    ax.add_collection(LineCollection(pos[e], linewidths=lw, colors="0.55", zorder=1))
    cmap = np.array(["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728"])
    edge = np.where(np.zeros(graph.n, bool) if ring is None else np.asarray(ring), "black", "white")
    ax.scatter(pos[:, 0], pos[:, 1], c=cmap[np.asarray(colors) % 4], edgecolors=edge, linewidths=1.5,
               s=70, zorder=2)
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


# ----------------------------------------------------------------------------- the live view
class GraphMonitor(Callback, Replay):
    """Live view of node classification: the training loss, the validation accuracy (baselines dashed) and
    the graph with every node coloured by the model's prediction (training nodes outlined). A ``fit``
    callback for the models of :func:`train_nodes`."""

    replay_hint = "train with this monitor in callbacks= first"

    def __init__(self, graph: Graph, masks: Masks, baselines: dict[str, float], title: str = "training"):
        if graph.pos is None:
            raise ValueError("the graph has no positions to draw (graph.pos is None)")
        self.graph, self.masks, self.baselines, self.title = graph, masks, dict(baselines), title
        self.steps, self.loss, self.acc, self.preds = [], [], [], []
        self.fig = self.live = None

    def on_log(self, state: State):
        pred = predict(state.model, self.graph)
        self.steps.append(state.step)
        self.loss.append(state.history.train_loss[-1])
        self.acc.append(accuracy(pred, self.graph, self.masks.val))
        self.preds.append(pred)
        self._draw_frame(len(self.steps) - 1)
        self.show_live()

    def _frames(self) -> int:
        return len(self.steps)

    def _draw_frame(self, k: int):
        import matplotlib.pyplot as plt
        if self.fig is None:
            self.fig, self.axes = plt.subplots(1, 3, figsize=(12, 3.6), dpi=80,
                                               gridspec_kw={"width_ratios": [1, 1, 1.4]})
        a, b, c = self.axes
        for ax in self.axes:
            ax.clear()
        a.plot(self.steps[:k + 1], self.loss[:k + 1], "o-", ms=3)
        a.set(xlabel="step", ylabel="training loss", title=self.title)
        b.plot(self.steps[:k + 1], self.acc[:k + 1], "o-", ms=3, color="C1", label="model")
        for j, (name, value) in enumerate(self.baselines.items()):
            b.axhline(value, ls="--", lw=1, color=f"C{j + 2}", label=name)
        b.set(xlabel="step", ylabel="validation accuracy", ylim=(0, 1.02))
        b.legend(fontsize=7, loc="lower right")
        wrong = int((self.preds[k] != self.graph.y).sum())
        draw_graph(c, self.graph, self.preds[k].numpy(), ring=self.masks.train.numpy(),
                   title=f"step {self.steps[k]}: predictions ({wrong} of {self.graph.n} wrong)")
        self.fig.tight_layout()


# ----------------------------------------------------------------------------- the explorer
class AttentionExplorer(Explorer):
    """A trained :class:`GAT`'s first-layer attention around one node: the edges into ``node`` drawn with
    widths proportional to their weights (``head``: one head, or ``"mean"`` over heads), and the weights of
    every head as bars."""

    defaults = {"node": 0, "head": "mean"}
    layout = {"ncols": 2, "figsize": (11, 4), "gridspec_kw": {"width_ratios": [1, 1.1]}}

    def __init__(self, model: GAT, graph: Graph, **settings):
        if graph.pos is None:
            raise ValueError("the graph has no positions to draw (graph.pos is None)")
        self.model, self.graph = model, graph
        was = model.training
        model.eval()
        with torch.no_grad():
            model(graph.x)
        model.train(was)
        self.alpha = model.gat1.attention.numpy()          # (E, heads), edges with self-loops
        self.source, self.target = (t.numpy() for t in model.edges)
        self.heads = self.alpha.shape[1]
        super().__init__(**settings)

    def _validate(self, s, changed):
        if not 0 <= s["node"] < self.graph.n:
            raise ValueError(f"node must be in 0..{self.graph.n - 1}, got {s['node']}")
        if s["head"] != "mean" and s["head"] not in range(self.heads):
            raise ValueError(f"head must be 'mean' or 0..{self.heads - 1}, got {s['head']!r}")

    def _controls(self):
        import ipywidgets as w
        return {"node": w.IntSlider(min=0, max=self.graph.n - 1, description="node"),
                "head": w.Dropdown(options=["mean", *range(self.heads)], description="head")}

    def weights(self, node: int) -> tuple[np.ndarray, np.ndarray]:
        """``(neighbours, alpha)``: the sources of the edges into ``node`` (itself included) and their
        ``(k, heads)`` attention weights."""
        into = self.target == node
        return self.source[into], self.alpha[into]

    def draw(self, **override):
        s = self.resolve(**override)
        node = s["node"]
        nbrs, alpha = self.weights(node)
        w = alpha.mean(1) if s["head"] == "mean" else alpha[:, s["head"]]
        self.figure()
        a, b = self.axes
        a.clear()
        b.clear()
        e = self.graph.edges()
        widths = np.full(len(e), 0.3)
        for j, wj in zip(nbrs, w):
            hit = ((e[:, 0] == node) & (e[:, 1] == j)) | ((e[:, 1] == node) & (e[:, 0] == j))
            widths[hit] = 0.5 + 4 * wj * len(nbrs)          # uniform weights: width 4.5
        ring = np.zeros(self.graph.n, bool)
        ring[node] = True
        draw_graph(a, self.graph, self.graph.y.numpy(), ring=ring, widths=widths,
                   title=f"node {node}: attention on its edges (head {s['head']})")
        order = np.argsort(nbrs)
        x = np.arange(len(nbrs))
        bw = 0.8 / self.heads
        for h in range(self.heads):
            b.bar(x + (h - (self.heads - 1) / 2) * bw, alpha[order, h], bw, label=f"head {h}")
        b.axhline(1 / len(nbrs), ls="--", lw=1, color="k", label="uniform")
        b.set_xticks(x, [("self" if j == node else str(j)) for j in nbrs[order]], fontsize=7,
                     rotation=90 if len(nbrs) > 12 else 0)
        b.set(xlabel="neighbour", ylabel="attention weight", title="weights per head (sum to 1)")
        b.legend(fontsize=7)
        self.fig.tight_layout()
        return {"neighbours": nbrs[order].tolist(), "weights": alpha[order]}
