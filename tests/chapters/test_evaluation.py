"""The evaluation chapter: the word tokeniser and unigram baseline, token log-probabilities against the
model's loss, the contamination plumbing, min-k% and the AUC against independent computations, the
bootstrap and the item-count formula against simulation, the simulated judge, the views, and the
exercise checks."""
import math

import numpy as np
import pytest
import torch

from book.data.text import CharVocab
from book.lab.evaluation import (
    NoiseExplorer,
    PerplexityMonitor,
    SimulatedJudge,
    WordTokenizer,
    auc,
    bootstrap_ci,
    continue_training,
    items_needed,
    judge_win_rate,
    length_controlled,
    min_k_prob,
    passage_benchmark,
    simulated_power,
    token_logprobs,
    unigram_nll,
    z,
)
from book.nn.gpt import GPT, GPTConfig
from book.nn.losses import lm_loss

TEXT = ("the cat sat on the mat. the dog sat on the log. a cat and a dog sat together on the mat.\n" * 20)


def test_word_tokenizer_is_lossless_and_spells_rare_words():
    tok = WordTokenizer(TEXT, min_count=2)
    s = "the cat sat on a dog. the mat"
    assert "".join(tok.encode(s)) == s
    assert "cat" in tok.encode(s) and "mat" in tok.encode(s)
    rare = WordTokenizer("ab ab cd", min_count=2)
    assert rare.encode("cd ab") == ["c", "d", " ", "ab"]
    with pytest.raises(KeyError, match="not in the training text"):
        tok.encode("the zebra")
    with pytest.raises(ValueError, match="min_count"):
        WordTokenizer(TEXT, min_count=0)


def test_unigram_nll_is_add_one_smoothed():
    train = ["a", "b", "a", "a"]
    vocab = {"a", "b", "c"}
    got = unigram_nll(train, ["a", "c"], vocab)
    expected = -(math.log(4 / 7) + math.log(1 / 7))        # counts + 1 over 4 tokens + 3 types
    assert math.isclose(got, expected, rel_tol=1e-12)
    with pytest.raises(KeyError, match="not in the vocabulary"):
        unigram_nll(train, ["d"], vocab)


def _tiny_gpt(vocab_size, block=16, seed=0):
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size, block, 1, 2, 16))


def test_token_logprobs_mean_is_the_lm_loss_and_training_mode_is_kept():
    vocab = CharVocab(TEXT)
    ids = vocab.encode(TEXT)
    model = _tiny_gpt(len(vocab))
    seqs = torch.stack([ids[i:i + 17] for i in range(0, 170, 17)])
    model.train()
    lp = token_logprobs(model, seqs, batch=3)
    assert lp.shape == (10, 16) and model.training
    with torch.no_grad():
        model.eval()
        loss = lm_loss(model(seqs[:, :-1]), seqs[:, 1:]).item()
    assert abs(-lp.mean().item() - loss) < 1e-5


def test_passage_benchmark_leaks_half_without_overlap():
    ids = torch.arange(1000)
    items, leaked = passage_benchmark(ids, 20, 33, seed=3)
    assert items.shape == (20, 33) and leaked.sum() == 10
    starts = items[:, 0]
    assert len(set(starts.tolist())) == 20 and (starts % 33 == 0).all()
    assert torch.equal(items[:, 1:] - items[:, :-1], torch.ones(20, 32, dtype=torch.long))
    with pytest.raises(ValueError, match="fit"):
        passage_benchmark(ids, 40, 33)


def test_contaminated_run_differs_from_its_control_only_by_the_leak():
    vocab = CharVocab(TEXT)
    ids = vocab.encode(TEXT)
    model = _tiny_gpt(len(vocab))
    before = [p.clone() for p in model.parameters()]
    leaked = torch.stack([ids[i:i + 17] for i in (0, 40)])
    a = continue_training(model, ids, 3, 16, 8, 1e-3, seed=1)
    b = continue_training(model, ids, 3, 16, 8, 1e-3, seed=1)
    c = continue_training(model, ids, 3, 16, 8, 1e-3, leaked=leaked, per_batch=2, seed=1)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before))     # the base is untouched
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))  # same seed, same run
    assert any(not torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters()))


def test_min_k_prob_takes_the_lowest_tokens():
    lp = torch.tensor([[-1.0, -5.0, -2.0, -3.0], [-0.1, -0.2, -0.3, -0.4]])
    assert torch.allclose(min_k_prob(lp, 0.5), torch.tensor([-4.0, -0.35]))
    assert torch.allclose(min_k_prob(lp, 0.01), torch.tensor([-5.0, -0.4]))     # at least one token
    assert torch.allclose(min_k_prob(lp, 1.0), lp.mean(1))
    with pytest.raises(ValueError, match="frac"):
        min_k_prob(lp, 0.0)


def test_auc_matches_the_rank_sum_statistic():
    rng = np.random.default_rng(0)
    pos = np.round(rng.normal(0.5, 1, 37), 1)      # rounded: ties
    neg = np.round(rng.normal(0.0, 1, 23), 1)
    allv = np.concatenate([pos, neg])
    order = allv.argsort(kind="stable")
    ranks = np.empty(len(allv))
    ranks[order] = np.arange(1, len(allv) + 1)
    for v in np.unique(allv):                      # mid-ranks for ties
        ranks[allv == v] = ranks[allv == v].mean()
    u = ranks[:len(pos)].sum() - len(pos) * (len(pos) + 1) / 2
    assert math.isclose(auc(pos, neg), u / (len(pos) * len(neg)), rel_tol=1e-12)
    assert auc([1, 2], [0]) == 1.0 and auc([0], [1, 2]) == 0.0 and auc([1], [1]) == 0.5
    with pytest.raises(ValueError, match="at least one"):
        auc([], [1.0])


def test_bootstrap_interval_matches_the_normal_one_for_many_items():
    x = np.random.default_rng(1).random(2000) < 0.3
    lo, hi = bootstrap_ci(x, n_boot=2000, seed=0)
    se = math.sqrt(x.mean() * (1 - x.mean()) / len(x))
    assert lo < x.mean() < hi
    assert abs((hi - lo) - 2 * 1.96 * se) < 0.1 * (hi - lo)


def test_items_needed_gives_the_promised_power():
    assert math.isclose(z(0.975), 1.959964, abs_tol=1e-5)
    n = items_needed(0.6, 0.08)
    assert abs(simulated_power(n, 0.6, 0.08, sims=20000, seed=5) - 0.8) < 0.02
    assert simulated_power(n // 4, 0.6, 0.08, sims=4000, seed=5) < 0.4
    assert items_needed(0.6, 0.04) > 3.5 * n          # 1 / delta^2
    with pytest.raises(ValueError, match="delta"):
        items_needed(0.9, 0.2)


def test_judge_biases_and_their_fixes():
    fair = judge_win_rate(SimulatedJudge(0.0, 0.0, 0.5), 6000, seed=0)
    assert abs(fair["first_wins"] - 0.5) < 0.02 and abs(fair["win_x_first"] - fair["true_win"]) < 0.03
    biased = judge_win_rate(SimulatedJudge(0.5, 0.0, 0.5), 6000, seed=0)
    assert biased["win_x_first"] > biased["true_win"] + 0.08 > biased["win_x_second"] + 0.16
    assert abs(biased["win_both_orders"] - biased["true_win"]) < 0.03
    long = judge_win_rate(SimulatedJudge(0.0, 0.5, 0.5), 6000, length_gap=1.0, seed=0)
    assert long["win_both_orders"] > long["true_win"] + 0.05
    assert abs(long["win_length_controlled"] - long["true_win"]) < 0.03


def test_length_controlled_is_the_intercept():
    d = np.array([-1.0, 0.0, 1.0, 2.0])
    v = 0.5 + 0.1 * d
    assert math.isclose(length_controlled(v, d), 0.5, abs_tol=1e-12)
    with pytest.raises(ValueError, match="as many"):
        length_controlled([1.0, 0.0], [1.0])


def test_views():
    import matplotlib
    matplotlib.use("Agg")
    ex = NoiseExplorer(n=100, delta=0.1, p=0.6)
    out = ex.draw()
    assert math.isclose(out["se"], math.sqrt(0.6 * 0.4 / 100))
    assert out["items_needed"] == items_needed(0.6, 0.1) and 0 < out["power"] < 1
    assert ex.draw(n=3000)["power"] > 0.95
    with pytest.raises(ValueError):
        NoiseExplorer(p=0.95, delta=0.1)
    mon = PerplexityMonitor({"bigram": 12.0})
    with pytest.raises(RuntimeError, match="nothing to replay"):
        mon.replay()

    class _H:
        train_loss, val_loss = [2.0], [2.1]

    class _S:
        step, total_steps, history = 10, 10, _H()
    mon.on_log(_S())
    assert len(mon.records) == 1 and math.isclose(mon.records[0][2], math.exp(2.1))
    mon.replay(max_frames=2)


def _per_char(ppl, n_tok, n_char):
    return math.exp(n_tok * math.log(ppl) / n_char)


def _auc(pos, neg):
    d = np.asarray(pos, float)[:, None] - np.asarray(neg, float)[None, :]
    return float((d > 0).mean() + 0.5 * (d == 0).mean())


def _delta(p, n):
    return (z(0.975) + z(0.8)) * math.sqrt(2 * p * (1 - p) / n)


def _lc(v, d):
    v, d = np.asarray(v, float), np.asarray(d, float)
    return float(np.linalg.lstsq(np.stack([np.ones(len(d)), d], 1), v, rcond=None)[0][0])


@pytest.mark.parametrize("name,good,bad", [
    ("per_char_perplexity", _per_char, lambda ppl, n_tok, n_char: ppl * n_tok / n_char),
    ("roc_auc", _auc, lambda pos, neg: float((np.asarray(pos)[:, None] > np.asarray(neg)[None, :]).mean())),
    ("min_k_percent", lambda lp, f: lp.sort(-1).values[:, :max(1, int(f * lp.shape[-1]))].mean(-1),
     lambda lp, f: lp.sort(-1, descending=True).values[:, :max(1, int(f * lp.shape[-1]))].mean(-1)),
    ("min_detectable_delta", _delta, lambda p, n: (z(0.975) + z(0.8)) * math.sqrt(p * (1 - p) / n)),
    ("length_controlled_win_rate", _lc, lambda v, d: float(np.mean(v))),
])
def test_checks(name, good, bad, check_verdict):
    check_verdict(name, good, bad)
