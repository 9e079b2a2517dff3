"""book.nn.graph against its references: networkx's normalised Laplacian, dense masked softmax, per-node loops,
the closed form of label propagation."""
import networkx as nx
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from book.nn.graph import (GATLayer, GCNLayer, edge_index, edge_softmax, harmonic_solution, label_propagation,
                           masked_softmax, normalized_adjacency)


def _graph(n=12, p=0.3, seed=0):
    G = nx.gnp_random_graph(n, p, seed=seed)
    return G, torch.tensor(nx.to_numpy_array(G, nodelist=range(n), weight=None))


def test_normalized_adjacency_is_identity_minus_networkx_laplacian():
    G, A = _graph()
    G.add_node(12)                                        # an isolated node
    A = torch.tensor(nx.to_numpy_array(G, nodelist=range(13), weight=None))
    L = torch.tensor(nx.normalized_laplacian_matrix(G, nodelist=range(13), weight=None).toarray())
    ours = normalized_adjacency(A, self_loops=False)
    # networkx puts 0 (not 1) on the diagonal of L for an isolated node; ours has a zero row there
    expected = torch.eye(13, dtype=torch.float64) - L
    lonely = A.sum(1) == 0
    assert lonely[12]
    expected[lonely, lonely] = 0
    assert torch.allclose(ours, expected, atol=1e-12)
    G.add_edges_from((i, i) for i in G)
    L_loops = torch.tensor(nx.normalized_laplacian_matrix(G, nodelist=range(13), weight=None).toarray())
    assert torch.allclose(normalized_adjacency(A), torch.eye(13, dtype=torch.float64) - L_loops, atol=1e-12)
    with pytest.raises(ValueError, match="square"):
        normalized_adjacency(torch.ones(2, 3))


def test_edge_index_lists_every_edge_both_ways_and_self_loops():
    _, A = _graph()
    e = edge_index(A)
    assert e.shape[1] == int(A.sum()) + len(A)
    assert all(A[i, j] or i == j for j, i in e.T.tolist())
    assert edge_index(A, self_loops=False).shape[1] == int(A.sum())


def test_gcn_layer_is_a_hat_x_w():
    _, A = _graph()
    torch.manual_seed(0)
    layer = GCNLayer(4, 3).double()
    x = torch.randn(len(A), 4, dtype=torch.float64)
    a_hat = normalized_adjacency(A)
    assert torch.allclose(layer(x, a_hat), a_hat @ x @ layer.linear.weight.T + layer.bias)
    with pytest.raises(ValueError, match="a_hat"):
        layer(x[:3], a_hat)


def test_edge_softmax_equals_dense_masked_softmax_and_is_stable():
    _, A = _graph(15, 0.25, 1)
    src, tgt = edge_index(A)
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(len(src), 3, generator=g, dtype=torch.float64) * 300     # would overflow exp
    out = edge_softmax(scores, tgt, len(A))
    dense = torch.zeros(3, len(A), len(A), dtype=torch.float64)
    dense[:, tgt, src] = scores.T
    mask = (A + torch.eye(len(A), dtype=torch.float64)).bool()
    ref = masked_softmax(dense, mask.expand(3, -1, -1))
    assert torch.isfinite(out).all()
    assert torch.allclose(out, ref[:, tgt, src].T, atol=1e-12)
    sums = torch.zeros(len(A), 3, dtype=torch.float64).index_add(0, tgt, out)
    assert torch.allclose(sums, torch.ones_like(sums))
    with pytest.raises(ValueError, match="one score per edge"):
        edge_softmax(scores[:-1], tgt, len(A))


def test_masked_softmax_empty_rows_are_zero():
    s = torch.randn(2, 3)
    m = torch.tensor([[True, False, True], [False, False, False]])
    out = masked_softmax(s, m)
    assert torch.allclose(out[0], torch.softmax(s[0].masked_fill(~m[0], -torch.inf), 0))
    assert torch.equal(out[1], torch.zeros(3))


@pytest.mark.parametrize("concat", [True, False])
def test_gat_layer_against_a_per_node_loop(concat):
    _, A = _graph(10, 0.3, 2)
    torch.manual_seed(0)
    layer = GATLayer(5, 4, heads=3, concat=concat).double()
    x = torch.randn(10, 5, dtype=torch.float64)
    out = layer(x, edge_index(A))
    rows = []
    for i in range(10):
        nbrs = [j for j in range(10) if A[i, j] or i == j]
        heads = []
        for k in range(3):
            z = x @ layer.weight[k]
            e = torch.stack([F.leaky_relu(layer.att_target[k] @ z[i] + layer.att_source[k] @ z[j], 0.2)
                             for j in nbrs])
            heads.append((torch.softmax(e, 0)[:, None] * z[nbrs]).sum(0))
        rows.append(torch.cat(heads) if concat else torch.stack(heads).mean(0))
    assert out.shape == (10, 12 if concat else 4)
    assert torch.allclose(out, torch.stack(rows) + layer.bias, atol=1e-12)
    assert layer.attention.shape == (int(A.sum()) + 10, 3)
    with pytest.raises(ValueError, match="edges"):
        layer(x, edge_index(A).T)


def test_gat_layer_parameter_count():
    layer = GATLayer(7, 5, heads=3)
    assert sum(p.numel() for p in layer.parameters()) == 3 * (7 * 5 + 2 * 5) + 3 * 5


def test_label_propagation_converges_to_the_harmonic_solution():
    G = nx.karate_club_graph()
    A = torch.tensor(nx.to_numpy_array(G, nodelist=range(34), weight=None))
    y = torch.tensor([0 if G.nodes[i]["club"] == "Mr. Hi" else 1 for i in range(34)])
    train = torch.zeros(34, dtype=torch.bool)
    train[[0, 33, 5]] = True
    it = label_propagation(A, y, train, 2, iterations=600)
    assert torch.allclose(it, harmonic_solution(A, y, train, 2), atol=1e-9)
    assert torch.equal(it[train].argmax(1), y[train])                    # clamped
    assert torch.allclose(it.sum(1), torch.ones(34, dtype=torch.float64))
    assert (it.argmax(1) == y).double().mean() > 0.8


def test_label_propagation_keeps_isolated_nodes_uniform():
    A = torch.zeros(4, 4)
    A[0, 1] = A[1, 0] = 1
    y = torch.tensor([0, 1, 0, 1])
    train = torch.tensor([True, False, False, False])
    out = label_propagation(A, y, train, 2, iterations=5)
    assert np.allclose(out[2].numpy(), [0.5, 0.5]) and out[1].argmax() == 0
