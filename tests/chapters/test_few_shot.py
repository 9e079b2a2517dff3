"""The few_shot chapter: the prototype classifier against PyTorch, episodes, training, views and checks."""
import math

import matplotlib
import pytest
import torch
import torch.nn.functional as F

from book.lab.few_shot import (BASE, NOVEL, Embedder, EpisodeExplorer, EpisodeMonitor, Episodes, embed,
                               episode_accuracy, linear_form, proto_logits, proto_loss, prototypes, restrict,
                               train_classifier, train_protonet, with_rotations)

matplotlib.use("Agg")


def test_prototypes_and_logits_match_torch():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(12, 5, generator=g)
    y = torch.tensor([2, 0, 1, 2, 0, 1, 0, 1, 2, 2, 0, 1])
    protos = prototypes(z, y, 3)
    for k in range(3):
        assert torch.allclose(protos[k], z[y == k].mean(0))
    q = torch.randn(7, 5, generator=g)
    assert torch.allclose(proto_logits(q, protos), -torch.cdist(q, protos) ** 2, atol=1e-5)
    with pytest.raises(ValueError, match="at least one support"):
        prototypes(z[:2], torch.tensor([0, 0]), 2)
    with pytest.raises(ValueError, match="must be"):
        prototypes(z[0], y[:1], 3)


def test_proto_loss_is_cross_entropy_of_negative_squared_distances():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(3 * 2 + 3 * 4, 6, generator=g)
    y = torch.cat([torch.arange(3).repeat_interleave(2), torch.arange(3).repeat_interleave(4)])
    protos = torch.stack([z[:6][y[:6] == k].mean(0) for k in range(3)])
    ref = F.cross_entropy(-torch.cdist(z[6:], protos) ** 2, y[6:])
    assert torch.allclose(proto_loss(z, y, 3, 2), ref, atol=1e-5)


def test_linear_form_gives_the_same_softmax():
    g = torch.Generator().manual_seed(2)
    protos, q = torch.randn(5, 4, generator=g, dtype=torch.float64), torch.randn(9, 4, generator=g,
                                                                                   dtype=torch.float64)
    W, b = linear_form(protos)
    diff = q @ W.T + b - proto_logits(q, protos)
    assert torch.allclose(diff, diff[:, :1].expand_as(diff))          # a per-query constant
    assert torch.allclose(diff[:, 0], (q ** 2).sum(1))


def test_episodes_are_reproducible_and_well_formed():
    y = torch.arange(10).repeat(30)
    eps = Episodes(y, NOVEL, 5, 3, 4, seed=3)
    s, ys, q, yq, digits = eps.episode(0)
    assert sorted(digits) == list(NOVEL) and len(s) == 15 and len(q) == 20
    assert (y[s] == torch.tensor(digits).repeat_interleave(3)).all()
    assert (y[q] == torch.tensor(digits).repeat_interleave(4)).all()
    assert not set(s.tolist()) & set(q.tolist())
    assert all((a == b).all() for a, b in zip(eps.episode(5)[:4], Episodes(y, NOVEL, 5, 3, 4, seed=3).episode(5)[:4]))
    assert not torch.equal(eps.episode(1)[0], s)
    with pytest.raises(ValueError, match="n_way"):
        Episodes(y, BASE, 6, 1, 1)
    with pytest.raises(ValueError, match="fewer than"):
        Episodes(y, BASE, 5, 20, 20)


def test_restrict_and_rotations():
    x = torch.arange(4 * 28 * 28, dtype=torch.float32).reshape(4, 1, 28, 28)
    y = torch.tensor([0, 5, 3, 9])
    xb, yb = restrict(x, y, BASE)
    assert yb.tolist() == [0, 3] and torch.equal(xb[1], x[2])
    X, Y = with_rotations(xb, yb)
    assert len(X) == 16 and sorted(set(Y.tolist())) == sorted({c + 10 * r for c in (0, 3) for r in range(8)})
    assert torch.equal(X[2], torch.rot90(xb[0], 1, (1, 2)))
    assert len(with_rotations(xb, yb, flips=False)[0]) == 8


def test_accuracy_rules_on_separable_features():
    y = torch.arange(5).repeat(20) + 5
    z = F.one_hot(y - 5, 5).float() * 10 + torch.randn(100, 5) * 0.1
    eps = Episodes(y, NOVEL, 5, 1, 3)
    assert episode_accuracy(z, eps, 4).min() == 1.0 and episode_accuracy(z, eps, 4, "nn").min() == 1.0
    with pytest.raises(ValueError, match="rule"):
        episode_accuracy(z, eps, 1, "knn")


def _tiny():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(10).repeat(12)
    x = torch.rand(len(y), 1, 28, 28, generator=g) * 0.2
    for c in range(10):                     # a bright bar whose row depends on the class
        x[y == c, :, 2 + 2 * c, :] = 1.0
    return x, y


def test_training_runs_and_monitor_replays():
    x, y = _tiny()
    xb, yb = restrict(x, y, BASE)
    xv, yv = restrict(x, y, NOVEL)
    eps = Episodes(yv, NOVEL, 5, 1, 3)
    mon = EpisodeMonitor(xv, eps, 3, {"pixels": 0.5})
    with pytest.raises(RuntimeError, match="nothing to replay"):
        mon.replay()
    model, hist = train_protonet(xb, yb, n_way=5, k_shot=2, n_query=3, steps=4, lr=1e-3, seed=0,
                                 dim=8, width=4, log_every=2, callbacks=[mon])
    assert isinstance(model, Embedder) and len(hist.step) == 2 and len(mon.acc) == 2
    assert embed(model, xv).shape == (len(yv), 8) and embed(None, xv).shape == (len(yv), 784)
    assert mon.best()[0] in (2, 4)
    assert "<script" in mon.replay(max_frames=2).data
    body, hc = train_classifier(xb, yb, steps=3, batch=8, lr=1e-3, seed=0, dim=8, width=4, log_every=3)
    assert isinstance(body, Embedder) and math.isfinite(hc.train_loss[-1])


def test_explorer_draws_and_validates():
    x, y = _tiny()
    xv, yv = restrict(x, y, NOVEL)
    torch.manual_seed(0)
    view = EpisodeExplorer(xv, yv, {"pixels": None, "random": Embedder(8, 4)}, space="pixels")
    out = view.draw(k_shot=3, episode=2)
    assert out["accuracy"] == 1.0 and sorted(out["digits"]) == list(NOVEL)   # bars are separable
    assert 0 <= view.draw(space="random")["accuracy"] <= 1
    given = EpisodeExplorer(xv, yv, {"features": xv.flatten(1)}, space="features")   # precomputed
    assert given.draw(k_shot=3, episode=2) == view.draw(k_shot=3, episode=2, space="pixels")
    with pytest.raises(ValueError, match="space"):
        EpisodeExplorer(xv, yv, {"pixels": None}, space="trained")
    with pytest.raises(ValueError, match="k_shot"):
        view.draw(k_shot=0)
    assert "<script" in view.player("k_shot", [1, 2]).data


# ----------------------------------------------------------------------------- the exercise checks
def test_checks_accept_correct_and_reject_wrong(check_verdict):
    def protos_ok(z, y, n):
        return torch.stack([z[y == k].mean(0) for k in range(n)])

    def protos_wrong(z, y, n):                        # assumes rows come class by class
        return z.reshape(n, -1, z.shape[1]).mean(1)
    check_verdict("class_prototypes", protos_ok, protos_wrong)
    check_verdict("prototype_as_linear", lambda c: (2 * c, -(c ** 2).sum(1)),
                  lambda c: (c, -(c ** 2).sum(1)))
    check_verdict("prototype_as_linear", lambda c: (2 * c, -(c ** 2).sum(1)),
                  lambda c: (2 * c, torch.zeros(len(c), dtype=c.dtype)))
    check_verdict("logit_gradient", lambda q, c: 2 * (c - q), lambda q, c: 2 * (q - c))
    check_verdict("queries_needed", lambda p, h: 1.959964 ** 2 * p * (1 - p) / h ** 2,
                  lambda p, h: p * (1 - p) / h ** 2)
