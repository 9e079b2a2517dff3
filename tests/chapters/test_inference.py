"""The inference chapter: book.nn.decoding (intensity counts, the paged cache against a torch.cat cache,
speculative sampling against direct torch.multinomial sampling, the speed-up formula, weight-only
quantization against torch.quantize_per_channel), the lab's drafts (bigram, small GPT), generation
counts, exactness of speculative_generate with a GPT draft (two tokens, enumerated), the views, and the
exercise checks."""
import math

import pytest
import torch

from book.lab.inference import (
    BigramDraft,
    GPTDraft,
    SpeculativeMonitor,
    ThroughputExplorer,
    acceptance_on_text,
    draft_cost_ratio,
    inference_split,
    plain_generate,
    speculative_generate,
    target_probs,
    train_draft,
)
from book.nn.decoding import (
    PagedKVCache,
    dequantize_weight,
    expected_speedup,
    expected_tokens_per_step,
    matmul_intensity,
    quantize_weight,
    residual_distribution,
    speculative_accept,
    speculative_sample,
    speculative_step,
    weight_only_quantized,
)
from book.nn.gpt import GPT, GPTConfig
from book.nn.quantize import torch_quantize


def test_matmul_intensity_counts():
    assert matmul_intensity(1, 1, 1, 1) == pytest.approx(2 / 3)
    n = 64
    assert matmul_intensity(n, n, n, 4) == pytest.approx(2 * n ** 3 / (3 * n * n * 4))
    assert matmul_intensity(1, 4096, 4096, 2) < 1 < matmul_intensity(512, 4096, 4096, 2)
    with pytest.raises(ValueError):
        matmul_intensity(0, 1, 1)


def test_paged_cache_matches_contiguous_and_reuses_pages():
    g = torch.Generator().manual_seed(0)
    cache, ref = PagedKVCache(20, 4, 3), {}
    for _ in range(40):
        s = int(torch.randint(0, 3, (1,), generator=g))
        v = torch.randn(int(torch.randint(1, 3, (1,), generator=g)), 3, generator=g)
        cache.append(s, v)
        ref[s] = torch.cat([ref.get(s, torch.empty(0, 3)), v])
    for s, v in ref.items():
        assert torch.equal(cache.gather(s), v)
    st = cache.stats()
    assert st["reserved"] - st["used"] == st["waste"] and 0 <= st["waste"] < 4 * len(ref)
    pages = list(cache.tables[0])
    cache.free(0)
    cache.append("new", torch.zeros(1, 3))
    assert cache.tables["new"][0] in pages
    with pytest.raises(KeyError):
        cache.gather(0)
    with pytest.raises(MemoryError):
        PagedKVCache(1, 2).append(0, torch.zeros(3, 1))
    with pytest.raises(ValueError):
        PagedKVCache(0, 2)


def test_residual_and_accept_rule():
    p, q = torch.tensor([0.5, 0.3, 0.2]), torch.tensor([0.2, 0.3, 0.5])
    assert torch.allclose(residual_distribution(p, q), torch.tensor([1.0, 0.0, 0.0]))
    assert torch.equal(residual_distribution(p, p), p)           # nothing is ever rejected
    x = torch.tensor([0, 2])
    assert speculative_accept(p.expand(2, 3), q.expand(2, 3), x, torch.tensor([0.99, 0.39])).tolist() == [True, True]
    assert not speculative_accept(p, q, torch.tensor(2), torch.tensor(0.41))
    # min(p, q) + P(reject) r = p, exactly
    torch.manual_seed(0)
    p, q = torch.rand(5, 9).softmax(-1), torch.rand(5, 9).softmax(-1)
    m = torch.minimum(p, q)
    assert torch.allclose(m + (1 - m.sum(-1, keepdim=True)) * residual_distribution(p, q), p, atol=1e-6)


def test_speculative_sampling_matches_direct_sampling():
    g = torch.Generator().manual_seed(1)
    p = torch.tensor([0.4, 0.3, 0.2, 0.1])
    q = torch.tensor([0.1, 0.1, 0.3, 0.5])
    n = 40000
    spec = torch.bincount(speculative_sample(p, q, n, g), minlength=4).double() / n
    direct = torch.bincount(torch.multinomial(p, n, replacement=True, generator=g), minlength=4).double() / n
    assert 0.5 * (spec - p.double()).abs().sum() < 0.015
    assert 0.5 * (spec - direct).abs().sum() < 0.02
    assert 0.5 * (torch.bincount(torch.multinomial(q, n, True, generator=g), minlength=4) / n - p).abs().sum() > 0.3


def test_speculative_step_shapes_and_bonus():
    p = torch.tensor([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
    q = torch.tensor([[0.0, 1.0], [0.0, 1.0]])
    assert speculative_step(p, q, torch.tensor([1, 1])) == [1, 1, 0]      # both kept + bonus from p[2]
    q2 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert speculative_step(p, q2, torch.tensor([0, 1])) == [1]            # rejected, resampled from residual
    with pytest.raises(ValueError):
        speculative_step(p[:2], q, torch.tensor([1, 1]))


def test_expected_tokens():
    assert expected_tokens_per_step(0.5, 2) == pytest.approx(1.75)
    assert expected_tokens_per_step(1.0, 3) == 4
    assert expected_tokens_per_step(0.0, 3) == 1
    with pytest.raises(ValueError):
        expected_tokens_per_step(1.5, 2)


def test_expected_speedup():
    assert expected_speedup(0.5, 2, 0.0) == pytest.approx(1.75)          # a free draft: tokens per pass
    assert expected_speedup(0.5, 2, 0.5) == pytest.approx(1.75 / 2)
    assert expected_speedup(0.8, 4, 0.05) == pytest.approx((1 - 0.8 ** 5) / (0.2 * 1.2))
    # a draft that costs something has a best k, and S drops below 1 for long enough drafts
    s = [expected_speedup(0.7, k, 0.2) for k in range(1, 40)]
    assert 1 < max(s) and s[-1] < 1 and 0 < s.index(max(s)) < len(s) - 1
    with pytest.raises(ValueError):
        expected_speedup(0.5, 2, -0.1)


def _tiny_pair(vocab=4, block=8):
    """A tiny target GPT and a tiny GPT draft whose distributions differ clearly (untied random head)."""
    torch.manual_seed(0)
    target = GPT(GPTConfig(vocab_size=vocab, block_size=block, n_layer=1, n_head=2, n_embd=16))
    with torch.no_grad():
        target.tok.weight.mul_(4)                                  # peaked, not uniform, distributions
    torch.manual_seed(1)
    small = GPT(GPTConfig(vocab_size=vocab, block_size=block, n_layer=1, n_head=2, n_embd=16))
    small.head = torch.nn.Linear(16, vocab, bias=False)
    with torch.no_grad():
        small.head.weight.normal_(0, 1.5)
    return target.eval(), small.eval()


def test_gpt_draft_probs_and_acceptance_on_text():
    target, small = _tiny_pair(5, 8)
    draft = GPTDraft(small)
    ctx = [0, 3, 1, 4, 2, 2, 1, 0, 3, 4]                             # longer than the block: cropped
    with torch.no_grad():
        ref = small(torch.tensor([ctx[-8:]]))[0, -1].softmax(-1)
    assert torch.allclose(draft.probs(ctx), ref, atol=1e-6)
    rows = torch.tensor([ctx[:6], ctx[4:10]])
    assert torch.allclose(draft.batch_probs(rows), torch.stack([draft.probs(r.tolist()) for r in rows]), atol=1e-6)
    ids = torch.randint(0, 5, (300,), generator=torch.Generator().manual_seed(0))
    bigram = BigramDraft(ids, 5)
    assert torch.equal(bigram.batch_probs(rows), torch.stack([bigram.probs(r.tolist()) for r in rows]))
    # acceptance_on_text against a loop over windows and positions, sum_x min(p, q) each
    got = acceptance_on_text(target, draft, ids, n_windows=6, positions=3, seed=2)
    g = torch.Generator().manual_seed(2)
    start = torch.randint(0, len(ids) - 8, (6,), generator=g)
    terms = []
    for s0 in start.tolist():
        w = ids[s0:s0 + 8].tolist()
        for t in range(5, 8):
            p = target_probs(target, w[:t + 1], 1)[0]
            terms.append(torch.minimum(p, draft.probs(w[:t + 1])).sum().item())
    assert got == pytest.approx(sum(terms) / len(terms), abs=1e-5)
    assert acceptance_on_text(target, GPTDraft(target), ids, 4, 3) == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError):
        acceptance_on_text(target, draft, ids, 4, positions=8)


def test_train_draft_learns_a_cycle():
    ids = torch.arange(3000) % 5                                     # 0 1 2 3 4 0 1 ...: fully predictable
    small = train_draft(ids, 5, steps=60, n_embd=16, block=8, batch=16, lr=1e-2)
    assert not small.training and small.cfg.block_size == 8
    p = GPTDraft(small).probs([1, 2, 3])
    assert p.argmax().item() == 4 and p[4] > 0.8


def test_speculative_generate_with_a_gpt_draft_samples_the_target_exactly():
    """The joint distribution of the first two generated tokens, enumerated exactly from the target,
    against speculative_generate's samples with a GPT draft (k = 2: both tokens may come from one step
    or from two). Pearson's chi-square over the 16 cells; the draft's own joint must be far away."""
    target, small = _tiny_pair(4, 8)
    draft, prompt, N = GPTDraft(small), [0, 1], 1000
    p1 = target_probs(target, prompt, 1)[0]
    joint_p = torch.stack([p1[a] * target_probs(target, prompt + [a], 1)[0] for a in range(4)])  # (4, 4)
    q1 = draft.probs(prompt)
    joint_q = torch.stack([q1[a] * draft.probs(prompt + [a]) for a in range(4)])
    assert 0.5 * (joint_p - joint_q).abs().sum() > 0.25                # the test can tell them apart
    g = torch.Generator().manual_seed(0)
    counts = torch.zeros(4, 4)
    accepted = judged = 0
    for _ in range(N):
        out, st = speculative_generate(target, draft, prompt, 2, 2, g)
        counts[out[2], out[3]] += 1
        accepted, judged = accepted + st["accepted"], judged + st["judged"]
    assert 0.2 < accepted / judged < 0.9                               # both branches of the rule ran
    expected = N * joint_p
    chi2 = ((counts - expected) ** 2 / expected).sum().item()
    assert chi2 < 15 + 5 * math.sqrt(30)                               # df = 15: mean 15, sd sqrt(30)
    chi2_q = ((counts - N * joint_q) ** 2 / (N * joint_q)).sum().item()
    assert chi2_q > 10 * chi2


def test_draft_cost_ratio_and_monitor():
    target, small = _tiny_pair(4, 8)
    out = draft_cost_ratio(target, GPTDraft(small), [0, 1, 2], repeats=2, calls=3)
    assert out["c"] == pytest.approx(out["draft_s"] / out["target_s"]) and out["c"] > 0
    monitor = SpeculativeMonitor(redraw_every=6)
    with pytest.raises(RuntimeError):
        monitor.replay()
    g = torch.Generator().manual_seed(0)
    for name, k in (("small GPT, k=1", 1), ("small GPT, k=3", 3)):
        _, st = speculative_generate(target, GPTDraft(small), [0], 20, k, g, monitor.step(name))
        monitor.done()
        alpha, per_pass = monitor.runs[name][-1]
        assert alpha == st["history"][-1] and per_pass == pytest.approx(20 / st["target_passes"])
    assert len(monitor.frames) >= 3 and monitor.draw_seconds > 0
    assert len(monitor.runs["small GPT, k=1"]) == monitor.frames[-1]["small GPT, k=1"]
    with pytest.raises(ValueError):
        monitor.step("small GPT, k=1")
    with pytest.raises(ValueError):
        SpeculativeMonitor(redraw_every=0)
    assert "<script" in monitor.replay(max_frames=3).data


def test_weight_quantization_codes_and_model():
    torch.manual_seed(0)
    w = torch.randn(16, 64)
    codes, scales = quantize_weight(w, 8)
    ref = torch_quantize(w, scales[:, 0], torch.zeros(16, dtype=torch.long), True, 0)
    if ref is not None:
        assert (codes == ref).float().mean() > 0.999
    assert ((dequantize_weight(codes, scales) - w).abs() <= scales * 0.5 + 1e-6).all()
    c4, s4 = quantize_weight(w, 4, 16)
    assert c4.min() >= -8 and c4.max() <= 7 and s4.shape == (16, 4)
    err4g = (dequantize_weight(c4, s4) - w).abs().mean()
    err4r = (dequantize_weight(*quantize_weight(w, 4)) - w).abs().mean()
    assert err4g < err4r
    with pytest.raises(ValueError):
        quantize_weight(w, 4, 10)
    model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=32))
    qm, counts = weight_only_quantized(model, 4, 16)
    assert counts["quant_bytes"] < counts["float_bytes"] / 6
    assert qm.head.weight is qm.tok.weight                     # tying survives the copy
    assert not torch.equal(qm.blocks[0].mlp[0].weight, model.blocks[0].mlp[0].weight)
    x = torch.randint(0, 11, (2, 8))
    assert (qm(x) - model(x)).abs().max() < 0.1


def test_generation_counts_and_split():
    ids = torch.arange(60000) % 7
    tr, va, te = inference_split(ids)
    assert len(tr) + len(va) + len(te) == 60000 and len(va) > 0 and len(te) > 0
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=7, block_size=16, n_layer=1, n_head=2, n_embd=16))
    draft = BigramDraft(tr, 7)
    assert torch.allclose(draft.table.sum(1), torch.ones(7)) and (draft.table > 0).all()
    g = torch.Generator().manual_seed(0)
    out, st = speculative_generate(model, draft, [0, 1, 2], 30, 3, g)
    assert len(out) == 33 and st["target_passes"] <= 30
    assert st["accepted"] <= st["judged"] <= st["drafted"] == 3 * st["target_passes"]
    out, st = plain_generate(model, [0], 10, g)
    assert len(out) == 11 and st["target_passes"] == 10
    with pytest.raises(ValueError):
        speculative_generate(model, draft, [0], 5, 16)


def test_throughput_explorer():
    view = ThroughputExplorer({1: 0.001, 4: 0.002})
    out = view.render(batch=4)
    assert math.isclose(out["tokens_per_s"], 2000) and math.isclose(out["ms_per_step"], 2.0)
    with pytest.raises(ValueError):
        ThroughputExplorer({1: 0.001}, batch=3)
    with pytest.raises(ValueError):
        ThroughputExplorer({})


def _first_slower_k(alpha, c):
    k = 1
    while (1 - alpha ** (k + 1)) / ((1 - alpha) * (k * c + 1)) >= 1:
        k += 1
    return k


def test_checks(check_verdict):
    check_verdict("expected_tokens", lambda a, k: sum(a ** i for i in range(k + 1)),
                  lambda a, k: sum(a ** i for i in range(k)))
    check_verdict("matvec_intensity", lambda n, m, b: 2 * n * m / ((n * m + n + m) * b),
                  lambda n, m, b: 2 * n * m / (n * m * b))
    check_verdict("paged_waste", lambda ls, p: sum(-(-n // p) * p - n for n in ls),
                  lambda ls, p: sum(n % p for n in ls))
    check_verdict("first_slower_k", _first_slower_k,
                  lambda a, c: next(k for k in range(1, 10_000) if (1 - a ** k) / ((1 - a) * (k * c + 1)) < 1))
    check_verdict("residual", lambda p, q: (p - q).clamp_min(0) / (p - q).clamp_min(0).sum(-1, keepdim=True),
                  lambda p, q: (p - q).clamp_min(0))
