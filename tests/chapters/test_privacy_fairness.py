"""book.lab.privacy_fairness: SGD / DP-SGD runs and their monitor, the attack's AUC against scikit-learn, the fairness
measurements on hand-made confusion matrices, the threshold repair and its explorer, the error paths and the exercise
checks (book.nn.privacy itself: tests/unit/test_privacy.py)."""
import math

import matplotlib
import pytest
import torch
from sklearn.metrics import roc_auc_score

from book.lab.privacy_fairness import (
    DPMonitor,
    ThresholdExplorer,
    accuracy_of,
    auc,
    best_group_thresholds,
    calibration_by_group,
    decide,
    group_rates,
    make_lending,
    make_mlp,
    membership_auc,
    pooled,
    roc_points,
    train_sgd,
)

matplotlib.use("Agg")


def _task(n=300, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long() + (x[:, 2] > 1).long()          # 3 classes
    return x, y


def test_pooled_and_mlp_shapes():
    assert pooled(torch.rand(3, 1, 28, 28)).shape == (3, 196)
    a, b = make_mlp(196, 8, seed=1), make_mlp(196, 8, seed=1)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_plain_sgd_learns_and_dp_sgd_spends_epsilon():
    x, y = _task()
    base = max(torch.bincount(y).tolist()) / len(y)
    plain = make_mlp(6, 16, n_out=3, seed=0)
    hist = train_sgd(plain, x, y, steps=150, q=0.2, lr=0.5, log_every=50, val=(x, y))
    assert hist["step"] == [50, 100, 150] and all(e == math.inf for e in hist["eps"])
    assert accuracy_of(plain, x, y) > base + 0.2
    private = make_mlp(6, 16, n_out=3, seed=0)
    monitor = DPMonitor(baseline=base)
    hist = train_sgd(private, x, y, steps=60, q=0.2, lr=0.5, clip=1.0, sigma=1.0, log_every=20,
                     val=(x, y), monitor=monitor, name="dp")
    assert hist["eps"] == sorted(hist["eps"]) and 0 < hist["eps"][0] < hist["eps"][-1] < math.inf
    assert monitor.runs["dp"]["step"] == [20, 40, 60] and monitor._frames() == 3
    seen = monitor.draw(point=0)
    assert seen == {"dp": 1}
    assert "<script" in monitor.replay(max_frames=2).data
    clipped = make_mlp(6, 16, n_out=3, seed=0)                   # sigma = 0: clipping only, no privacy
    assert train_sgd(clipped, x, y, steps=5, q=0.2, lr=0.5, clip=1.0, sigma=0.0, log_every=5)["eps"] == [math.inf]


def test_train_sgd_and_monitor_error_paths():
    x, y = _task(20)
    model = make_mlp(6, 4, n_out=3)
    with pytest.raises(ValueError, match="both clip and sigma"):
        train_sgd(model, x, y, steps=2, q=0.5, lr=0.1, clip=1.0)
    with pytest.raises(ValueError, match="sampling rate"):
        train_sgd(model, x, y, steps=2, q=0.0, lr=0.1)
    with pytest.raises(ValueError, match="steps"):
        train_sgd(model, x, y, steps=0, q=0.5, lr=0.1)
    monitor = DPMonitor()
    with pytest.raises(RuntimeError, match="replay"):
        monitor.replay()
    with pytest.raises(RuntimeError, match="start"):
        monitor.log("a", {"step": 1, "val_acc": 0.5, "eps": 1.0})


def test_auc_matches_scikit_learn_with_ties():
    g = torch.Generator().manual_seed(0)
    pos = torch.randint(0, 5, (40,), generator=g).float()
    neg = torch.randint(0, 4, (55,), generator=g).float()
    ref = roc_auc_score([1] * 40 + [0] * 55, torch.cat([pos, neg]).numpy())
    assert math.isclose(auc(pos, neg), ref, rel_tol=1e-12)
    assert auc(torch.tensor([2.0]), torch.tensor([1.0])) == 1.0 and auc(torch.tensor([1.0]), torch.tensor([1.0])) == 0.5
    with pytest.raises(ValueError, match="at least one"):
        auc(torch.tensor([]), torch.tensor([1.0]))


def test_membership_auc_is_high_for_a_memorised_set():
    torch.manual_seed(0)
    x, y = torch.randn(40, 6), torch.randint(0, 3, (40,))                      # random labels: only memory helps
    model = make_mlp(6, 64, n_out=3, seed=0)
    train_sgd(model, x[:20], y[:20], steps=400, q=1.0, lr=0.5, log_every=400)
    assert accuracy_of(model, x[:20], y[:20]) == 1.0
    assert membership_auc(model, (x[:20], y[:20]), (x[20:], y[20:])) > 0.9


def test_lending_data_has_the_promised_base_rates_and_proxy():
    d = make_lending(20000, seed=0)
    assert d["x"].shape == (20000, 3)
    rate = [d["y"][d["a"] == g].float().mean().item() for g in (0, 1)]
    assert abs(rate[0] - 0.6) < 0.02 and abs(rate[1] - 0.3) < 0.02
    assert ((d["x"][:, 2] > 0.5).long() == d["a"]).float().mean() > 0.9
    for g in (0, 1):                    # the signals behave the same in both groups, given y
        m = (d["a"] == g) & (d["y"] == 1)
        assert abs(d["x"][m, 0].mean().item() - 1) < 0.05
    with pytest.raises(ValueError):
        make_lending(1)


def test_group_rates_on_a_hand_made_example():
    y = torch.tensor([1, 1, 0, 0, 1, 0, 0, 0])
    a = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    pred = torch.tensor([1, 0, 1, 0, 1, 1, 0, 0])
    r = group_rates(pred, y, a)
    assert r[0] == {"pos": 0.5, "tpr": 0.5, "fpr": 0.5, "ppv": 0.5, "base": 0.5, "acc": 0.5}
    assert r[1]["tpr"] == 1.0 and math.isclose(r[1]["fpr"], 1 / 3) and r[1]["ppv"] == 0.5
    assert r["dp"] == 0.0 and r["tpr"] == 0.5 and math.isclose(r["fpr"], 1 / 6) and r["eo"] == 0.5
    assert r["acc"] == 5 / 8
    with pytest.raises(ValueError, match="positive and negative"):
        group_rates(pred, torch.zeros(8, dtype=torch.long), a)


def test_calibration_by_group():
    g = torch.Generator().manual_seed(0)
    score = torch.rand(20000, generator=g)
    a = (torch.rand(20000, generator=g) < 0.5).long()
    y = (torch.rand(20000, generator=g) < score).long()           # calibrated by construction
    cal = calibration_by_group(score, y, a)
    assert cal[0]["gap"] < 0.02 and cal[1]["gap"] < 0.02 and len(cal[0]["bins"]) == 5
    shifted = calibration_by_group((score + 0.2).clamp(0, 1), y, a)
    assert shifted[0]["gap"] > 0.1


def test_group_thresholds_equalise_the_odds_and_decide_applies_them():
    d = make_lending(20000, seed=1)
    score = torch.sigmoid(d["x"][:, 0] + d["x"][:, 1] - 1 + 1.5 * d["a"].neg().add(1).float() - 0.7)
    t = best_group_thresholds(score, d["y"], d["a"], max_gap=0.02)
    assert group_rates(decide(score, d["a"], t), d["y"], d["a"])["eo"] <= 0.02
    assert group_rates(decide(score, d["a"], (0.5, 0.5)), d["y"], d["a"])["eo"] > 0.1
    assert decide(torch.tensor([0.3, 0.3]), torch.tensor([0, 1]), (0.2, 0.4)).tolist() == [1, 0]
    fpr, tpr = roc_points(score, d["y"], [0.0, 1.01])
    assert fpr.tolist() == [1.0, 0.0] and tpr.tolist() == [1.0, 0.0]
    # no pair reaches the tolerance: the smallest gap wins
    loose = best_group_thresholds(score, d["y"], d["a"], max_gap=-1.0)
    assert group_rates(decide(score, d["a"], loose), d["y"], d["a"])["eo"] <= 0.02


def test_threshold_explorer_draws_player_and_checks_settings():
    d = make_lending(2000, seed=2)
    score = torch.sigmoid(d["x"][:, 0] + d["x"][:, 1] - 1)
    view = ThresholdExplorer(score, d["y"], d["a"], t0=0.4)
    r = view.draw(t1=0.6)
    assert r == view.compute(t1=0.6) and len(view.axes[0].lines) == 5
    assert "<script" in view.player(("t0", "t1"), [(0.5, 0.5), (0.4, 0.6)]).data
    with pytest.raises(ValueError, match="t0"):
        ThresholdExplorer(score, d["y"], d["a"], t0=1.5)


# ------------------------------------------------------------------ exercise checks
def test_check_clip_each_example(check_verdict):
    def good(g, C):
        return g * (C / g.norm(dim=1, keepdim=True).clamp(min=1e-12)).clamp(max=1.0)

    def bad(g, C):                                                 # one norm for the whole batch
        return g * min(1.0, C / g.norm().item())
    check_verdict("clip_each_example", good, bad)


def test_check_sigma_for_budget(check_verdict):
    def good(eps, delta, steps):             # the closed form over real orders: within 2 % of the integer one
        L = math.log(1 / delta)
        u = (-math.sqrt(2 * steps * L) + math.sqrt(2 * steps * L + 2 * steps * eps)) / steps
        return 1 / u

    def bad(eps, delta, steps):              # forgets composition: one step's budget
        return good(eps, delta, 1)
    check_verdict("sigma_for_budget", good, bad)


def test_check_loss_attack_auc(check_verdict):
    def good(m, o):
        return ((m[:, None] < o[None, :]).double() + 0.5 * (m[:, None] == o[None, :]).double()).mean().item()

    def bad(m, o):                           # the wrong direction: high loss means member
        return ((m[:, None] > o[None, :]).double() + 0.5 * (m[:, None] == o[None, :]).double()).mean().item()
    check_verdict("loss_attack_auc", good, bad)


def test_check_ppv_from_rates(check_verdict):
    check_verdict("ppv_from_rates", lambda p, tpr, fpr: p * tpr / (p * tpr + (1 - p) * fpr),
                  lambda p, tpr, fpr: tpr / (tpr + fpr))                    # forgets the base rate


def test_check_equalised_odds_gap(check_verdict):
    def good(pred, y, a):
        def rate(g, label):
            return pred[(a == g) & (y == label)].float().mean().item()
        return max(abs(rate(0, 1) - rate(1, 1)), abs(rate(0, 0) - rate(1, 0)))

    def bad(pred, y, a):                     # only the TPR gap (equal opportunity)
        return abs(pred[(a == 0) & (y == 1)].float().mean().item() - pred[(a == 1) & (y == 1)].float().mean().item())
    check_verdict("equalised_odds_gap", good, bad)
