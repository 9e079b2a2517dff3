"""The graphs chapter: data, splits, models, baselines, the two views and the exercise checks."""
import math

import matplotlib
import numpy as np
import pytest
import torch

from book.lab.graphs import (GAT, GCN, MLP, AttentionExplorer, Graph, GraphMonitor, accuracy, compare,
                             edge_homophily, homophily_sweep, karate, lp_pred, majority_pred, node_split,
                             predict, sbm, sbm_probabilities, train_nodes)

matplotlib.use("Agg")


def test_karate_club_is_zacharys_graph():
    g = karate()
    assert g.n == 34 and int(g.A.sum()) // 2 == 78 and g.n_classes == 2
    assert int((g.y == 0).sum()) == 17 and g.y[0] == 0 and g.y[33] == 1     # Mr. Hi and the officer
    assert torch.equal(g.x, torch.eye(34)) and g.pos.shape == (34, 2)
    assert 0.8 < edge_homophily(g.A, g.y) < 0.9
    assert len(g.edges()) == 78


def test_sbm_hits_its_homophily_and_degree():
    g = sbm(200, 3, 0.7, 8.0, dim=4, seed=1)
    assert g.n == 600 and g.x.shape == (600, 4) and torch.equal(g.A, g.A.T) and g.A.diagonal().sum() == 0
    assert abs(edge_homophily(g.A, g.y) - 0.7) < 0.03
    assert abs(g.A.sum(1).mean().item() - 8.0) < 0.5
    # the features do not depend on the homophily (one change at a time)
    assert torch.equal(sbm(50, 3, 0.9, 4.0, seed=2).x, sbm(50, 3, 0.2, 4.0, seed=2).x)
    p_in, p_out = sbm_probabilities(100, 3, 0.7, 6.0)
    assert math.isclose(p_in * 99 + p_out * 200, 6.0)
    with pytest.raises(ValueError, match="homophily"):
        sbm_probabilities(10, 2, 1.5, 2.0)
    with pytest.raises(ValueError, match="too high"):
        sbm_probabilities(5, 2, 0.9, 20.0)
    with pytest.raises(ValueError, match="no edges"):
        edge_homophily(torch.zeros(3, 3), torch.zeros(3, dtype=torch.long))


def test_node_split_is_disjoint_and_balanced():
    y = torch.arange(3).repeat_interleave(20)
    m = node_split(y, 3, 4, 10, seed=0)
    assert int(m.train.sum()) == 12 and int(m.val.sum()) == 10 and int(m.test.sum()) == 38
    assert not (m.train & m.val).any() and not (m.train & m.test).any() and not (m.val & m.test).any()
    assert torch.bincount(y[m.train]).tolist() == [4, 4, 4]
    assert torch.equal(node_split(y, 3, 4, 10, seed=0).val, m.val)
    with pytest.raises(ValueError, match="fewer than"):
        node_split(y, 3, 30, 1)
    with pytest.raises(ValueError, match="no test"):
        node_split(y, 3, 4, 48)


def _easy_graph():
    return sbm(30, 2, 0.95, 5.0, dim=8, signal=0.5, seed=3)


@pytest.mark.parametrize("kind, cls", [("MLP", MLP), ("GCN", GCN), ("GAT", GAT)])
def test_models_train_on_the_training_nodes_only(kind, cls):
    g = _easy_graph()
    m = node_split(g.y, 2, 5, 10, seed=0)
    model, hist = train_nodes(kind, g, m, steps=30, seed=0, log_every=10)
    assert isinstance(model, cls) and len(hist.step) == 3 and hist.train_loss[-1] < hist.train_loss[0]
    p = predict(model, g)
    assert p.shape == (g.n,) and model.training                        # predict restores the mode
    # the labels of non-training nodes do not change training
    g2 = Graph(g.A, g.x, torch.where(m.train, g.y, 1 - g.y), 2)
    model2, _ = train_nodes(kind, g2, m, steps=30, seed=0)
    assert torch.equal(predict(model2, g2), predict(train_nodes(kind, g, m, steps=30, seed=0)[0], g))
    with pytest.raises(ValueError, match="kind"):
        train_nodes("GIN", g, m, steps=1)


def test_baselines_and_compare():
    g = _easy_graph()
    m = node_split(g.y, 2, 5, 10, seed=0)
    assert (majority_pred(g, m) == 0).all()                              # a tie: the smallest class
    assert accuracy(lp_pred(g, m), g, m.test) > 0.9                      # homophily 0.95
    preds = compare(g, m, steps=5, kinds=("GCN",), lp_steps=50)
    assert set(preds) == {"majority", "label propagation", "GCN"}
    sweep = homophily_sweep((0.9, 0.2), seeds=2, steps=3, n_per_class=20, n_classes=2, degree=4.0, dim=4,
                            signal=0.3, per_class=3, n_val=8, kinds=("MLP",), lp_steps=20)
    assert sweep["MLP"].shape == (2, 2) and sweep["measured"][0].min() > sweep["measured"][1].max()
    assert np.allclose(sweep["MLP"][0], sweep["MLP"][1])                 # features unchanged by h


def test_monitor_records_and_replays():
    g = karate()
    m = node_split(g.y, 2, 2, 10, seed=0)
    mon = GraphMonitor(g, m, {"majority": 0.5})
    with pytest.raises(RuntimeError, match="nothing to replay"):
        mon.replay()
    train_nodes("GCN", g, m, steps=6, seed=0, log_every=2, callbacks=[mon])
    assert mon.steps == [2, 4, 6] and len(mon.preds) == 3 and all(0 <= a <= 1 for a in mon.acc)
    assert "<script" in mon.replay(max_frames=2).data
    with pytest.raises(ValueError, match="positions"):
        GraphMonitor(_easy_graph(), m, {})


def test_attention_explorer_draws_weights_that_sum_to_one():
    g = karate()
    m = node_split(g.y, 2, 2, 10, seed=0)
    model, _ = train_nodes("GAT", g, m, steps=3, seed=0)
    view = AttentionExplorer(model, g, node=33)
    out = view.draw()
    degree = int(g.A[33].sum())
    assert len(out["neighbours"]) == degree + 1 and 33 in out["neighbours"]
    assert np.allclose(out["weights"].sum(0), 1.0, atol=1e-5)
    assert view.draw(node=0, head=1)["neighbours"] == sorted(view.weights(0)[0].tolist())
    with pytest.raises(ValueError, match="node"):
        view.draw(node=34)
    with pytest.raises(ValueError, match="head"):
        view.draw(head=7)
    assert "<script" in view.player("node", [0, 1]).data


# ----------------------------------------------------------------------------- the exercise checks
def test_checks_accept_correct_and_reject_wrong(check_verdict):
    def norm_ok(A):
        At = A + torch.eye(len(A), dtype=A.dtype)
        r = At.sum(1).rsqrt()
        return r[:, None] * At * r[None, :]

    def norm_wrong(A):                            # forgets the self-loops
        d = A.sum(1).clamp_min(1).rsqrt()
        return d[:, None] * A * d[None, :]
    check_verdict("sym_normalise", norm_ok, norm_wrong)

    def soft_ok(s, t, n):
        out = torch.empty_like(s)
        for i in range(n):
            out[t == i] = torch.softmax(s[t == i], 0)
        return out

    def soft_naive(s, t, n):                      # no maximum subtracted: overflows
        e = s.exp()
        return e / torch.zeros(n, dtype=s.dtype).index_add(0, t, e)[t]
    check_verdict("incoming_softmax", soft_ok, soft_naive)
    check_verdict("incoming_softmax", soft_ok, lambda s, t, n: torch.softmax(s, 0))

    def hom_ok(p_in, p_out, m, k):
        inside = k * m * (m - 1) / 2 * p_in
        return inside / (inside + k * (k - 1) / 2 * m * m * p_out)

    def hom_wrong(p_in, p_out, m, k):             # counts ordered pairs inside as m^2
        inside = k * m * m / 2 * p_in
        return inside / (inside + k * (k - 1) / 2 * m * m * p_out)
    check_verdict("sbm_homophily", hom_ok, hom_wrong)
    check_verdict("neutral_homophily", lambda k, d: (d - k + 1) / (d * k), lambda k, d: 1 / k)


def test_harmonic_solution_explains_graphs_without_one():
    from book.nn.graph import harmonic_solution
    y = torch.tensor([0, 1, 0, 1])
    train = torch.tensor([True, False, False, False])
    A = torch.zeros(4, 4)
    A[0, 1] = A[1, 0] = A[2, 3] = A[3, 2] = 1                       # nodes 2, 3 see no label
    with pytest.raises(ValueError, match="cannot reach a labelled one"):
        harmonic_solution(A, y, train, 2)
    A[2, 3] = A[3, 2] = 0
    A[1, 3] = A[3, 1] = 1                                            # node 2 has no neighbour
    with pytest.raises(ValueError, match=r"nodes \[2\] have no neighbour"):
        harmonic_solution(A, y, train, 2)
