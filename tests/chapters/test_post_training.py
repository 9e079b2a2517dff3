"""The post_training chapter: book.nn.preference's objectives against PyTorch and their derivations,
the task, template and judge of book.lab.post_training, short runs of each stage, the monitor's replay,
and the exercise checks."""
import copy
import math

import pytest
import torch
import torch.nn.functional as F

from book.lab import post_training as pt
from book.nn.preference import (
    IGNORE,
    bradley_terry_loss,
    dpo_loss,
    implicit_reward,
    kl_regularised_objective,
    kl_regularised_optimum,
    masked_labels,
    reinforce_kl_loss,
    sequence_logprob,
    sft_loss,
)


def test_masked_labels_and_sft_loss_match_cross_entropy():
    torch.manual_seed(0)
    ids = torch.randint(0, 11, (3, 8))
    labels = masked_labels(ids, torch.tensor([2, 3, 5]))
    assert labels[0, :1].eq(IGNORE).all() and labels[0, 1:-1].eq(ids[0, 2:]).all()
    assert labels[2, :4].eq(IGNORE).all() and labels[:, -1].eq(IGNORE).all()
    logits = torch.randn(3, 8, 11)
    ref = F.cross_entropy(logits.reshape(-1, 11), labels.reshape(-1), ignore_index=IGNORE)
    assert torch.allclose(sft_loss(logits, labels), ref, atol=1e-6)
    per_row = sequence_logprob(logits, labels)
    assert torch.allclose(-per_row.sum() / labels.ne(IGNORE).sum(), ref, atol=1e-6)


def test_sft_loss_refuses_an_all_prompt_batch():
    with pytest.raises(ValueError, match="no answer token"):
        sft_loss(torch.randn(1, 3, 4), torch.full((1, 3), IGNORE))


def test_bradley_terry_gradient_is_minus_sigmoid_of_minus_margin():
    rw = torch.randn(7, requires_grad=True)
    rl = torch.randn(7)
    g, = torch.autograd.grad(bradley_terry_loss(rw, rl) * 7, rw)
    assert torch.allclose(g, -torch.sigmoid(rl - rw.detach()), atol=1e-6)


def test_kl_optimum_beats_other_policies_and_has_value_beta_log_z():
    torch.manual_seed(1)
    p_ref = torch.rand(5).add(0.1)
    p_ref /= p_ref.sum()
    r, beta = torch.randn(5), 0.3
    best = kl_regularised_optimum(p_ref.log(), r, beta)
    j = kl_regularised_objective(best, p_ref.log(), r, beta)
    others = torch.randn(500, 5).log_softmax(-1)
    assert (kl_regularised_objective(others, p_ref.log(), r, beta) <= j + 1e-6).all()
    assert torch.allclose(j, beta * torch.logsumexp(p_ref.log() + r / beta, -1), atol=1e-5)
    with pytest.raises(ValueError, match="beta"):
        kl_regularised_optimum(p_ref.log(), r, 0.0)


def test_dpo_of_the_optimum_is_bradley_terry_of_the_reward():
    torch.manual_seed(2)
    p_ref = torch.rand(6).add(0.1)
    p_ref /= p_ref.sum()
    r, beta = torch.randn(6), 0.7
    best = kl_regularised_optimum(p_ref.log(), r, beta)
    offset = r - implicit_reward(best, p_ref.log(), beta)
    assert torch.allclose(offset, offset[0].expand(6), atol=1e-5)
    w, lo = torch.tensor([0, 1, 2]), torch.tensor([3, 4, 5])
    assert torch.allclose(dpo_loss(best[w], best[lo], p_ref.log()[w], p_ref.log()[lo], beta),
                          bradley_terry_loss(r[w], r[lo]), atol=1e-5)


def test_reinforce_kl_loss_expectation_is_the_policy_gradient():
    """Sum over all answers of pi(y) x the per-sample gradient = grad of E[r] - beta KL (exactly)."""
    torch.manual_seed(3)
    theta = torch.randn(4, requires_grad=True)
    ref = torch.randn(4).log_softmax(-1)
    r, beta = torch.randn(4), 0.4
    true, = torch.autograd.grad(kl_regularised_objective(theta.log_softmax(-1), ref, r, beta), theta)
    logp = theta.log_softmax(-1)
    p = logp.exp().detach()
    # every answer as its own 'batch' of one, weighted by its probability; the batch-mean baseline of a
    # one-sample batch would cancel everything, so use the loss's shaped reward with a zero baseline
    est = torch.zeros(4)
    for y in range(4):
        shaped = (r[y] - beta * (logp[y].detach() - ref[y]))
        est += p[y] * shaped * torch.autograd.grad(logp[y], theta, retain_graph=True)[0]
    assert torch.allclose(est, true, atol=1e-5)
    loss, shaped = reinforce_kl_loss(logp, ref, r, beta)
    assert torch.allclose(shaped, r - beta * (logp.detach() - ref))
    assert loss.requires_grad


def test_reinforce_kl_loss_expected_gradient_is_shrunk_policy_gradient():
    """The loss itself, batch-mean baseline included: over every batch of B = 2 answers drawn from pi, its
    expected gradient is exactly -(1 - 1/B) grad (E[r] - beta KL); without the KL term in R it is not."""
    torch.manual_seed(4)
    theta = torch.randn(5, requires_grad=True)
    ref = torch.randn(5).log_softmax(-1)
    r, beta = torch.randn(5), 0.7
    logp = theta.log_softmax(-1)
    true, = torch.autograd.grad(kl_regularised_objective(logp, ref, r, beta), theta, retain_graph=True)
    p = logp.exp().detach()

    def expected(b):
        total = torch.zeros(5)
        for y1 in range(5):
            for y2 in range(5):
                y = torch.tensor([y1, y2])
                loss, _ = reinforce_kl_loss(logp[y], ref[y], r[y], b)
                total += p[y1] * p[y2] * torch.autograd.grad(loss, theta, retain_graph=True)[0]
        return total

    assert torch.allclose(expected(beta), -0.5 * true, atol=1e-6)
    assert (expected(0.0) + 0.5 * true).abs().max() > 1e-2


def test_template_judge_and_split():
    sp = pt.split_prompts(0)
    assert len(sp["train"]) + len(sp["val"]) + len(sp["test"]) == 32
    assert not set(sp["test"]) & set(sp["train"]) and not set(sp["val"]) & set(sp["train"])
    ids = pt.chat("prev", "a", ["p", "!"])
    assert [pt.TOKENS[i] for i in ids] == ["<user>", "prev", "a", "<assistant>", "p", "!", "<end>"]
    s = pt.STOI
    assert pt.judge("prev", "a", ids[pt.PROMPT_LEN:]) == 1.0
    assert pt.judge("prev", "a", [s["p"], s["!"], s["!"]]) == 0.5
    assert pt.judge("prev", "a", [s["b"], s["!"], s["<end>"]]) == 0.0
    assert pt.judge("prev", "a", []) == 0.0


def test_features_count_tokens_and_stop_at_end():
    s = pt.STOI
    phi = pt.features("next", "c", [s["d"], s["!"], s["!"], s["<end>"], s["!"]])
    assert phi[s["!"]] == 2 and phi[s["d"]] == 1 and phi[s["<end>"]] == 0
    assert phi[len(pt.TOKENS) + 1] == 1 and phi[len(pt.TOKENS):].sum() == 1


def test_preference_pairs_follow_the_rule():
    g = torch.Generator().manual_seed(0)
    for cmd, x, w, lo in pt.preference_pairs(pt.all_prompts(), 50, g):
        enc = lambda y: [pt.STOI[t] for t in y] + [pt.STOI["<end>"]]   # noqa: E731
        assert pt.judge(cmd, x, enc(w)) > pt.judge(cmd, x, enc(lo))


def test_answer_labels_stop_after_the_first_end():
    s = pt.STOI
    answers = torch.tensor([[s["d"], s["<end>"], s["<end>"], s["<end>"], s["<end>"], s["<end>"]]])
    ids, labels = pt.answer_labels([("next", "c")], answers)
    kept = labels[labels != IGNORE].tolist()
    assert kept == [s["d"], s["<end>"]]


def test_short_pipeline_runs_and_rewards_rise(monkeypatch):
    """A few steps of every stage on a tiny model; the reward model learns the rule's direction."""
    torch.manual_seed(0)
    sp = pt.split_prompts(0)
    g = torch.Generator().manual_seed(0)
    base = pt.new_policy(pt.PolicyConfig(n_embd=16, n_layer=1, n_head=2), 0)
    losses = pt.pretrain(base, pt.pretrain_stream(200, g), steps=5, batch=4, lr=3e-3, seed=0)
    assert all(math.isfinite(v) for v in losses)
    ids, labels = pt.instruction_data(sp["train"], 32, g)
    sft_model = copy.deepcopy(base)
    pt.sft(sft_model, ids, labels, steps=3, batch=8, lr=1e-3, seed=0)
    pairs = pt.preference_pairs(sp["train"], 200, g)
    rm = pt.train_reward_model(pairs, steps=100, lr=0.05, weight_decay=0.01, seed=0)
    assert pt.pair_accuracy(rm, pt.preference_pairs(sp["val"], 50, g)) > 0.8
    assert rm.w.weight[0, pt.STOI["!"]] > 0
    monitor = pt.RLMonitor()
    pol = copy.deepcopy(sft_model)
    h = pt.reinforce(pol, sft_model, rm, sp["train"], beta=0.1, steps=3, batch=8, lr=1e-3, seed=0,
                     log_every=1, monitor=monitor, name="test")
    assert len(h["reward"]) == 3 and monitor._frames() == 3
    html = monitor.replay(max_frames=3)
    assert "<script" in html.data
    d = pt.dpo(copy.deepcopy(sft_model), sft_model, pairs, beta=0.5, steps=2, batch=4, lr=1e-4, seed=0)
    assert abs(d[0] - math.log(2)) < 1e-5
    dpo_monitor = pt.RLMonitor()
    d2 = pt.dpo(copy.deepcopy(sft_model), sft_model, pairs, beta=0.5, steps=2, batch=4, lr=1e-4, seed=0,
                monitor=dpo_monitor, rm=rm, log_every=1, log_batch=8)
    assert d2 == d                        # the monitor draws from its own generator: same training
    assert dpo_monitor._frames() == 2 and dpo_monitor.runs["DPO"]["kl"][0] == pytest.approx(0, abs=0.5)
    with pytest.raises(ValueError, match="rm="):
        pt.dpo(copy.deepcopy(sft_model), sft_model, pairs, beta=0.5, steps=1, batch=4, lr=1e-4, seed=0,
               monitor=pt.RLMonitor())
    e = pt.evaluate_policy(pt.random_policy, sp["test"], n=5, seed=0, rm=rm)
    assert 0 <= e["judge"] <= 1 and e["scores"].shape == (30,)
    assert 0 <= e["right"] <= e["judge"] * 2 + 1e-9 and 0 <= e["polite"] <= 1
    assert pt.win_rate(torch.tensor([1.0, 0.5]), torch.tensor([0.5, 0.5])) == 0.75


def test_monitor_replay_needs_a_run():
    with pytest.raises(RuntimeError, match="nothing to replay"):
        pt.RLMonitor().replay()


def test_checks_accept_good_and_reject_bad(check_verdict):
    def good_labels(ids, p):
        lab = torch.full_like(ids, -100)
        lab[:, :-1] = ids[:, 1:]
        lab[:, :p - 1] = -100
        return lab

    def bad_labels(ids, p):            # masks one token too many: the answer's first
        lab = good_labels(ids, p)
        lab[:, :p] = -100
        return lab
    check_verdict("sft_labels", good_labels, bad_labels)
    check_verdict("dpo_objective",
                  lambda a, b, c, d, beta: -F.logsigmoid(beta * ((a - c) - (b - d))).mean(),
                  lambda a, b, c, d, beta: -F.logsigmoid(beta * (a - b)).mean())   # forgets the reference
    check_verdict("bt_gradient", lambda w, lo: -torch.sigmoid(lo - w), lambda w, lo: -torch.sigmoid(w - lo))
    check_verdict("kl_optimal_value", lambda p, r, b: b * torch.logsumexp(p.log() + r / b, -1),
                  lambda p, r, b: (p * r).sum())                     # the reference's mean reward
