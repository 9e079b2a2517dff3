"""book.lab.recsys_rl (generated clicks, matrix factorisation, top-k metrics, click-through rates, Catch,
REINFORCE) and its checks."""
import math

import matplotlib
import pytest
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from book.check import raising  # noqa: E402
from book.check import recsys_rl as checks  # noqa: E402
from book.lab.recsys_rl import (  # noqa: E402
    Catch,
    LogisticCTR,
    MatrixFactorization,
    PolicyNet,
    UserExplorer,
    ad_ctr_scores,
    bpr_loss,
    discounted_returns,
    draw_catch,
    draw_user,
    evaluate_policy,
    evaluate_scores,
    follow_ball_policy,
    greedy_policy,
    hit_rate_at_k,
    knn_genre_accuracy,
    make_clicks,
    make_impressions,
    model_scores,
    ndcg_at_k,
    pca_2d,
    plot_returns,
    popularity_scores,
    random_policy,
    random_scores,
    recall_at_k,
    recommend,
    record_episode,
    reinforce,
    topk_metrics,
    train_mf,
)


# ============================================================================ data
def test_make_clicks_is_deterministic_and_split_cleanly():
    a, b = make_clicks(n_users=50, n_items=40, seed=3), make_clicks(n_users=50, n_items=40, seed=3)
    assert torch.equal(a.train, b.train) and torch.equal(a.test, b.test)
    assert not torch.equal(a.train, make_clicks(n_users=50, n_items=40, seed=4).train)
    assert a.train.shape == (50 * 15, 2) and a.test.shape == (50 * 5, 2)
    tr, te = a.matrix("train"), a.matrix("test")
    assert tr.sum() == 750 and te.sum() == 250 and not (tr & te).any()       # distinct clicks, disjoint split
    assert torch.allclose(a.taste.sum(1), torch.ones(50))
    assert torch.bincount(a.genre).tolist() == [8] * 5                        # balanced genres
    assert a.true_scores().shape == (50, 40)
    with pytest.raises(ValueError, match="test_per_user"):
        make_clicks(clicks_per_user=5, test_per_user=5)
    with pytest.raises(ValueError, match="n_genres"):
        make_clicks(n_genres=1)
    with pytest.raises(ValueError, match="split"):
        a.matrix("valid")


def test_clicks_follow_the_hidden_taste():
    d = make_clicks(seed=0)
    # users click mostly in the genre they like most: far above the 1/5 of a taste-blind user
    fav = d.taste.argmax(1)[d.train[:, 0]]
    assert (d.genre[d.train[:, 1]] == fav).float().mean() > 0.5


# ============================================================================ metrics
def test_single_user_metrics_by_hand():
    ranked, relevant = [5, 2, 9, 1], {2, 1, 7}
    assert hit_rate_at_k(ranked, relevant, 1) == 0.0 and hit_rate_at_k(ranked, relevant, 2) == 1.0
    assert recall_at_k(ranked, relevant, 3) == pytest.approx(1 / 3)
    assert recall_at_k(ranked, relevant, 4) == pytest.approx(2 / 3)
    # k=3: one hit at rank 2 -> DCG = 1/log2(3) = 0.6309; ideal = 1 + 0.6309 + 0.5 = 2.1309
    assert ndcg_at_k(ranked, relevant, 3) == pytest.approx(0.6309298 / 2.1309298, abs=1e-6)
    # k=4: hits at ranks 2 and 4 -> DCG = 0.6309 + 1/log2(5) = 0.6309 + 0.4307
    assert ndcg_at_k(ranked, relevant, 4) == pytest.approx((0.6309298 + 0.4306766) / 2.1309298, abs=1e-6)
    assert ndcg_at_k([7, 3], {7}, 2) == 1.0 and ndcg_at_k([1, 2], {1, 2, 3}, 2) == 1.0
    with pytest.raises(ValueError, match="no relevant"):
        ndcg_at_k([1], set(), 1)
    with pytest.raises(ValueError, match="no relevant"):
        recall_at_k([1], [], 1)


def test_vectorised_metrics_match_the_single_user_ones():
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(30, 25, generator=g)
    exclude = torch.rand(30, 25, generator=g) < 0.2
    relevant = (torch.rand(30, 25, generator=g) < 0.15) & ~exclude
    relevant[0] = False                                                   # a user with nothing held out: skipped
    ranked = recommend(scores, exclude, 5)
    assert not exclude.gather(1, ranked).any()                            # seen items never recommended
    got = topk_metrics(ranked, relevant)
    users = [u for u in range(30) if relevant[u].any()]
    for name, fn in (("hit_rate", hit_rate_at_k), ("recall", recall_at_k), ("ndcg", ndcg_at_k)):
        ref = sum(fn(ranked[u], relevant[u].nonzero().squeeze(1), 5) for u in users) / len(users)
        assert got[name] == pytest.approx(ref, abs=1e-6), name
    with pytest.raises(ValueError, match="bool tensor"):
        recommend(scores, exclude.float(), 5)
    with pytest.raises(ValueError, match=r"\(users, items\)"):
        recommend(scores[0], None, 5)
    with pytest.raises(ValueError, match="same U"):
        topk_metrics(ranked[:3], relevant)


# ============================================================================ model
def test_matrix_factorization_scores_and_errors():
    torch.manual_seed(0)
    m = MatrixFactorization(6, 9, dim=4)
    with torch.no_grad():
        m.user_bias.weight.normal_()
        m.item_bias.weight.normal_()
        m.mu.fill_(0.3)
    u, i = torch.tensor([0, 5, 2]), torch.tensor([8, 0, 3])
    ref = (m.user.weight[u] * m.item.weight[i]).sum(1) + m.user_bias.weight[u, 0] + m.item_bias.weight[i, 0] + 0.3
    assert torch.allclose(m(u, i), ref)
    assert torch.allclose(m.score_all(u)[torch.arange(3), i], ref, atol=1e-6)
    assert m.score_all(u).shape == (3, 9) and model_scores(m).shape == (6, 9)
    with pytest.raises(TypeError, match="integer tensor"):
        m(u.float(), i)
    with pytest.raises(IndexError, match=r"0\.\.8"):
        m(u, torch.tensor([0, 9, 1]))
    with pytest.raises(ValueError, match="same shape"):
        m(u, i[:2])


def test_bpr_loss():
    pos, neg = torch.tensor([2.0, 0.0]), torch.tensor([0.0, 1.0])
    ref = (math.log1p(math.exp(-2.0)) + math.log1p(math.exp(1.0))) / 2
    assert bpr_loss(pos, neg).item() == pytest.approx(ref, rel=1e-6)
    with pytest.raises(ValueError, match="same shape"):
        bpr_loss(pos, neg[:1])


@pytest.mark.parametrize("loss", ["softmax", "bpr"])
def test_training_beats_the_baselines(loss):
    d = make_clicks(n_users=200, n_items=80, n_genres=4, seed=1)
    torch.manual_seed(0)
    m = MatrixFactorization(d.n_users, d.n_items, 8)
    losses = train_mf(m, d, epochs=10, lr=0.03, loss=loss, weight_decay=0.1 if loss == "softmax" else 0.01)
    assert losses[-1] < losses[0]
    ours = evaluate_scores(model_scores(m), d)["ndcg"]
    assert ours > evaluate_scores(popularity_scores(d), d)["ndcg"] > evaluate_scores(random_scores(200, 80), d)["ndcg"]
    assert knn_genre_accuracy(m.item.weight, d.genre) > 0.5                  # chance: 0.25
    with pytest.raises(ValueError, match="loss"):
        train_mf(m, d, loss="mse")
    with pytest.raises(ValueError, match="users x"):
        train_mf(MatrixFactorization(3, 3), d)


# ============================================================================ click-through rate
def test_impressions_are_deterministic_slice_and_encode():
    a, b = make_impressions(500, seed=3), make_impressions(500, seed=3)
    assert torch.equal(a.click, b.click) and torch.equal(a.ad, b.ad)
    assert not torch.equal(a.p, make_impressions(500, seed=4).p)
    x = a.one_hot()
    assert x.shape == (500, a.n_segments + a.n_ads + a.n_slots)
    assert torch.equal(x.sum(1), torch.full((500,), 3.0))                 # one 1 per field
    assert torch.equal(x[:, :a.n_segments].argmax(1), a.segment)
    part = a[10:20]
    assert len(part) == 10 and torch.equal(part.p, a.p[10:20]) and part.n_ads == a.n_ads
    assert set(a.click.unique().tolist()) <= {0.0, 1.0} and ((a.p > 0) & (a.p < 1)).all()
    with pytest.raises(ValueError, match="at least 1"):
        make_impressions(0)


def test_impressions_follow_the_slot_penalty_and_the_base_rate():
    d = make_impressions(60000, seed=0, spread=0.0)              # no segment or ad effect
    rates = [d.click[d.slot == s].mean().item() for s in range(d.n_slots)]
    assert rates == sorted(rates, reverse=True)                   # the top slot is clicked most
    assert abs(rates[0] - 1 / (1 + math.exp(3.0))) < 0.01         # sigmoid(base_logit)


def test_ad_click_rate_baseline_by_hand():
    d = make_impressions(6, n_ads=3, seed=0)
    d.ad, d.click = torch.tensor([0, 0, 1, 1, 1, 2]), torch.tensor([1.0, 0, 1, 1, 0, 0])
    rate = 3 / 6
    assert torch.allclose(ad_ctr_scores(d, d, prior=0.0), torch.tensor([0.5, 0.5, 2 / 3, 2 / 3, 2 / 3, 0.0]))
    smoothed = ad_ctr_scores(d, d[:1], prior=2.0)                 # ad 0: (1 + 2 * 0.5) / (2 + 2)
    assert torch.allclose(smoothed, torch.tensor([(1 + 2 * rate) / 4]))
    with pytest.raises(ValueError, match="prior"):
        ad_ctr_scores(d, d, prior=-1.0)


def test_logistic_ctr_learns_close_to_the_oracle_and_auc_matches_sklearn():
    from sklearn.metrics import log_loss, roc_auc_score

    from book.lab.evaluation import auc
    from book.nn.losses import bce, bce_with_logits
    from book.train import fit

    d = make_impressions(30000, seed=1)
    tr, te = d[:20000], d[20000:]
    torch.manual_seed(0)
    m = LogisticCTR(tr.one_hot().shape[1])
    fit(m, (tr.one_hot(), tr.click), torch.optim.Adam(m.parameters(), lr=0.05), loss_fn=bce_with_logits,
        epochs=5, batch_size=256, log_every=10**6, generator=torch.Generator().manual_seed(0), progress=False)
    with torch.no_grad():
        p = torch.sigmoid(m(te.one_hot()))
    assert p.shape == (len(te),)
    ll, base = bce(p, te.click).item(), bce(torch.full_like(p, tr.click.mean().item()), te.click).item()
    assert ll == pytest.approx(log_loss(te.click.numpy(), p.numpy()), rel=1e-5)
    assert ll < 0.9 * base and ll < 1.04 * bce(te.p, te.click).item()
    hit = te.click.bool()
    assert auc(p[hit], p[~hit]) == pytest.approx(roc_auc_score(te.click.numpy(), p.numpy()), abs=1e-9)
    assert auc(p[hit], p[~hit]) > ad_auc(tr, te) + 0.04


def ad_auc(tr, te):
    from book.lab.evaluation import auc

    q, hit = ad_ctr_scores(tr, te), te.click.bool()
    return auc(q[hit], q[~hit])


def test_pca_matches_torch():
    x = torch.randn(50, 6, generator=torch.Generator().manual_seed(0)) * torch.tensor([5.0, 3, 1, 1, 1, 1])
    xy, ratio = pca_2d(x)
    _, _, v = torch.pca_lowrank(x, q=6, center=True)
    ref = (x - x.mean(0)) @ v[:, :2]
    assert torch.allclose(xy.abs(), ref.abs(), atol=1e-4)                  # equal up to the sign of each axis
    ev = torch.linalg.eigvalsh(torch.cov(x.T)).flip(0)
    assert torch.allclose(ratio, (ev[:2] / ev.sum()).float(), atol=1e-5)
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        pca_2d(torch.zeros(5))


def test_user_view_draws_and_checks():
    d = make_clicks(n_users=20, n_items=30, seed=0)
    fig, axes = plt.subplots(1, 2)
    out = draw_user(axes, d, d.true_scores(), 3, k=5)
    assert len(out["ranked"]) == 5 and 0 <= out["hits"] <= 5
    with pytest.raises(ValueError, match="user must be"):
        draw_user(axes, d, d.true_scores(), 20)
    plt.close(fig)
    ex = UserExplorer(d, d.true_scores(), k=5)
    assert ex.draw(user=4)["hits"] >= 0 and len(ex.draw()["ranked"]) == 5
    assert "<script" in ex.player("user", [0, 1]).data
    assert ex.show().live is not None
    with pytest.raises(ValueError, match="user must be"):
        ex.draw(user=20)
    with pytest.raises(ValueError, match="scores must be"):
        UserExplorer(d, d.true_scores()[:3])


# ============================================================================ reinforcement learning
def test_catch_dynamics():
    env = Catch(width=5, height=4, n_balls=2, n_envs=3, seed=0)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(torch.ones(3, dtype=torch.long))
    obs = env.reset(seed=1)
    assert obs.shape == (3, 2, 4, 5) and env.horizon == 6
    assert (obs[:, 0].sum((1, 2)) == 1).all() and (obs[:, 1, 3].argmax(1) == 2).all()   # ball, paddle at centre
    col = env.ball_col.clone()
    # steer every paddle straight under its ball: all three catch the first ball (3 moves suffice)
    rewards = []
    for _ in range(3):
        a = (torch.sign(col - env.paddle) + 1).long()
        obs, r, done = env.step(a)
        rewards.append(r)
    assert rewards[0].eq(0).all() and rewards[1].eq(0).all() and rewards[2].eq(1).all() and not done.any()
    assert (env.ball_row == 0).all()                                      # a new ball at the top
    for _ in range(3):
        obs, r, done = env.step(torch.zeros(3, dtype=torch.long))        # always left: catch only column 0
    assert torch.equal(r, torch.where(env.ball_col == 0, 1.0, -1.0)) and done.all()
    with pytest.raises(RuntimeError, match="over"):
        env.step(torch.ones(3, dtype=torch.long))


def test_catch_errors_and_single_env_ints():
    env = Catch(n_envs=1)
    env.reset()
    obs, r, done = env.step(2)                                            # a plain int works for one game
    assert int(env.paddle) == 4 and obs.shape == (1, 2, 8, 7)
    with pytest.raises(ValueError, match="shape"):
        env.step(torch.ones(2, dtype=torch.long))
    with pytest.raises(ValueError, match="left"):
        env.step(torch.tensor([3]))
    with pytest.raises(ValueError, match="integer"):
        env.step(torch.tensor([1.0]))
    with pytest.raises(ValueError, match="3 x 3"):
        Catch(width=2)
    with pytest.raises(ValueError, match="PolicyNet"):
        PolicyNet((2, 8, 7))(torch.zeros(1, 2, 5, 5))


def test_discounted_returns():
    r = torch.tensor([[0.0, 0.0, 1.0], [1.0, -1.0, 2.0]])
    assert torch.allclose(discounted_returns(r, 0.5), torch.tensor([[0.25, 0.5, 1.0], [1.0, 0.0, 2.0]]))
    assert torch.allclose(discounted_returns(r[1], 1.0), torch.tensor([2.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match="gamma"):
        discounted_returns(r, 1.5)


def test_reinforce_learns_catch_and_beats_random():
    torch.manual_seed(0)
    env = Catch(width=5, height=5, n_balls=1, n_envs=32, seed=0)
    pol, val = PolicyNet(env.obs_shape, 32), PolicyNet(env.obs_shape, 32, n_out=1)
    calls = []
    hist = reinforce(env, pol, val, updates=120, lr=1e-2, entropy_coef=0.05, callback=calls.append, every=50,
                     generator=torch.Generator().manual_seed(0))
    assert len(hist["mean_return"]) == 120 and len(calls) == 3              # at 50, 100 and the last update
    ev = Catch(width=5, height=5, n_balls=1, n_envs=200)
    trained, _ = evaluate_policy(greedy_policy(pol), ev, 400)
    rand, _ = evaluate_policy(random_policy(ev), ev, 400)
    assert trained > 0.8 and rand < 0 and trained - rand > 1.0


@pytest.mark.parametrize("width,height", [(7, 8), (9, 10), (5, 6)])
def test_follow_the_ball_rule_catches_every_ball(width, height):
    env = Catch(width, height, n_balls=3, n_envs=64, seed=0)
    mean, err = evaluate_policy(follow_ball_policy(), env, 128)
    assert mean == 3.0 and err == 0.0
    # a board too wide for its height: some balls land before the paddle gets there
    assert 0 < evaluate_policy(follow_ball_policy(), Catch(width + 2, height, 3, n_envs=64), 128)[0] < 3
    obs = env.reset(seed=1)
    act = follow_ball_policy()(obs)
    ball = obs[:, 0].sum(1).argmax(-1)
    paddle = obs[:, 1, -1].argmax(-1)
    assert torch.equal(act, torch.sign(ball - paddle).long() + 1) and act.dtype == torch.long


def test_episode_recording_and_drawing():
    frames = record_episode(random_policy(Catch()), seed=3)
    assert len(frames) == 1 + Catch().horizon
    assert sum(f["reward"] != 0 for f in frames) == 2 and frames[-1]["total"] in (-2.0, 0.0, 2.0)
    assert all(f["ball"][0] == 7 for f in frames if f["reward"] != 0)       # a ball lands in the paddle row
    fig, ax = plt.subplots()
    draw_catch(ax, frames[7], title="random")
    plot_returns(ax, {"update": list(range(30)), "mean_return": [0.1 * i for i in range(30)]}, -1.0, 2.0)
    plt.close(fig)


# ============================================================================ exercise checks
def _sol_hit(ranked, relevant, k):
    return float(any(i in relevant for i in list(ranked)[:k]))


def _sol_ndcg(ranked, relevant, k):
    dcg = sum(1 / math.log2(r + 2) for r, i in enumerate(list(ranked)[:k]) if i in relevant)
    return dcg / sum(1 / math.log2(r + 2) for r in range(min(k, len(relevant))))


def _sol_downsample(p_s, w):
    return w * p_s / (w * p_s + 1 - p_s)


def _sol_returns(rewards, gamma):
    out, running = torch.zeros_like(rewards), 0.0
    for t in reversed(range(len(rewards))):
        running = rewards[t] + gamma * running
        out[t] = running
    return out


def _sol_eps(q, epsilon):
    p = torch.full_like(q, epsilon / len(q))
    p[q.argmax()] += 1 - epsilon
    return p


def _sol_reinforce(log_probs, returns, baselines):
    return -((returns - baselines).detach() * log_probs).mean()


SOLUTIONS = [("hit_rate_at_k", _sol_hit, lambda r, rel, k: float(any(i in rel for i in list(r)[:k + 1]))),
             ("ndcg_at_k", _sol_ndcg,
              lambda r, rel, k: sum(1 / math.log2(i + 2) for i, x in enumerate(r[:k]) if x in rel)),
             ("undo_downsampling", _sol_downsample, lambda p, w: p * w),        # scales p, not the odds
             ("discounted_returns", _sol_returns, lambda r, g: r.flip(0).cumsum(0).flip(0)),
             ("epsilon_greedy_probs", _sol_eps, lambda q, e: torch.softmax(q / max(e, 1e-3), 0)),
             ("reinforce_loss", _sol_reinforce, lambda lp, G, b: -((G - b) * lp).mean())]   # baseline not detached


def _ndcg_wrong(r, rel, k):                      # the common mistake: ideal DCG over all relevant items
    dcg = sum(1 / math.log2(i + 2) for i, x in enumerate(list(r)[:k]) if x in rel)
    return dcg / sum(1 / math.log2(i + 2) for i in range(len(rel))) if rel else 0.0


@pytest.mark.parametrize("name,good,bad", SOLUTIONS, ids=[s[0] for s in SOLUTIONS])
def test_checks_pass_reference_and_reject_wrong(name, good, bad, check_verdict):
    check_verdict(name, good, bad)


def test_ndcg_check_catches_the_ideal_dcg_mistake():
    with pytest.raises(AssertionError):
        with raising():
            checks.ndcg_at_k(_ndcg_wrong)


def test_checks_are_listed():
    assert set(checks.__all__) == {s[0] for s in SOLUTIONS}
