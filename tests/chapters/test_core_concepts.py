"""The core_concepts chapter: book.nn.counting, book.hardware, book.lab.core_concepts and its checks."""

import pytest
import torch
from torch import nn

from book.hardware import gpu_peak_tflops, matmul_gflops, supports
from book.lab.core_concepts import Playground
from book.nn.counting import (
    block_flops,
    block_params,
    conv2d_flops,
    conv2d_params,
    count_params,
    measure_flops,
    mlp_flops,
    mlp_params,
)
from book.nn.gpt import Block, GPTConfig


def test_counting_formulas_match_torch():
    mlp = nn.Sequential(nn.Linear(10, 7), nn.ReLU(), nn.Linear(7, 3))
    assert count_params(mlp) == mlp_params([10, 7, 3])
    assert measure_flops(mlp, torch.randn(4, 10)) == mlp_flops([10, 7, 3], 4)
    conv = nn.Conv2d(3, 5, 3)
    assert count_params(conv) == conv2d_params(3, 5, 3)
    assert measure_flops(conv, torch.randn(2, 3, 8, 8)) == conv2d_flops(3, 5, 3, 6, 6, 2)
    for causal in (False, True):   # the fused attention kernel is counted too (as the math path's products)
        block = Block(GPTConfig(vocab_size=1, block_size=10, n_head=4, n_embd=32, d_ff=64, causal=causal))
        assert count_params(block) == block_params(32, 64)
        assert measure_flops(block, torch.randn(2, 10, 32)) == block_flops(32, 64, 10, 2)
    # GPT-2's MLP width by default
    assert count_params(Block(GPTConfig(vocab_size=1, n_embd=32))) == block_params(32, 128)
    assert measure_flops(mlp, torch.randn(4, 10), backward=True) > mlp_flops([10, 7, 3], 4)


def test_count_params_shared_and_frozen():
    lin = nn.Linear(4, 4)
    tied = nn.Sequential(lin, lin)
    assert count_params(tied) == 20
    lin.bias.requires_grad_(False)
    assert count_params(tied, trainable_only=True) == 16


def test_counting_errors():
    with pytest.raises(ValueError, match="at least two"):
        mlp_params([5])
    with pytest.raises(ValueError, match="divisible"):
        Block(GPTConfig(vocab_size=1, n_head=3, n_embd=10))


def test_matmul_gflops():
    assert matmul_gflops(64, repeats=3) > 0
    assert supports(torch.float32)
    supports(torch.float32, device="meta")  # answers for any device without raising
    with pytest.raises(ValueError):
        matmul_gflops(0)
    with pytest.raises(ValueError, match="rounds"):
        matmul_gflops(8, rounds=0)
    if not torch.cuda.is_available():
        assert gpu_peak_tflops() is None


def test_playground_learns_and_records():
    pg = Playground(dataset="xor", hidden=(4,), steps=300, every=100, device="cpu")
    r = pg.train(live=False)
    assert r["train_acc"] > 0.85 and set(r) == {f"{s}_{m}" for s in ("train", "val", "test") for m in ("loss", "acc")}
    assert [s["step"] for s in pg.snapshots] == [100, 200, 300]
    assert pg.snapshots[-1]["prob"].shape == (60, 60) and pg.snapshots[-1]["units"].shape == (4, 60, 60)
    assert pg.draw() == r, "draw shows the trained result, without training again"
    assert "<script" in pg.replay(max_frames=2).data
    again = Playground(**pg.settings, device="cpu").train(live=False)
    assert again == r, "the same settings must give the same result"


def test_playground_linear_has_no_units_and_show_works():
    pg = Playground(dataset="blobs", hidden=(), steps=50, device="cpu").show()
    assert pg.snapshots[-1]["units"].shape[0] == 0 and pg.results["train_acc"] > 0.8
    assert pg.live is not None and "validation accuracy" in pg._status() and "test" not in pg._status()
    first = pg.results
    pg.widgets["steps"].value = 100                    # a control changes the setting, the button retrains
    assert pg.settings["steps"] == 100 and pg.results == first
    pg.update()
    assert pg.snapshots[-1]["step"] == 100 and pg._trained == pg.settings


def test_playground_split_baseline_and_gradients():
    pg = Playground(dataset="circles", n=400, train_frac=0.1, device="cpu")
    (xt, _), (xv, _), (xs, _) = pg.split()
    assert (len(xt), len(xv), len(xs)) == (40, 180, 180)
    default = Playground(n=83, device="cpu").split()     # 0.5: the 50/25/25 split it always had
    assert [len(x) for x, _ in default] == [41, 21, 21]
    base = pg.baseline()
    (_, yt), (_, yv), _ = pg.split()
    majority = float(yt.mean() >= 0.5)
    assert base["train_acc"] == pytest.approx(float((yt == majority).float().mean()))
    assert base["val_acc"] == pytest.approx(float((yv == majority).float().mean())) and set(base) == {
        "train_acc", "val_acc", "test_acc"}
    deep = Playground(hidden=(16,) * 10, activation="sigmoid", device="cpu").grad_norms()
    shallow = Playground(hidden=(16, 16), activation="sigmoid", device="cpu").grad_norms()
    assert len(deep) == 11 and len(shallow) == 3 and all(g >= 0 for g in deep)
    assert deep[0] / deep[-1] < 1e-6 < shallow[0] / shallow[-1]   # the vanishing gradient, at initialisation
    for bad in (0.0, 1.0, 0.001):
        with pytest.raises(ValueError, match="train_frac"):
            Playground(n=400, train_frac=bad)


def test_playground_draw_trains_what_it_shows_and_overrides_train_a_copy():
    pg = Playground(dataset="xor", hidden=(4,), steps=40, every=20, device="cpu")
    r = pg.draw()                                      # not trained yet: draw trains first
    assert set(r) >= {"test_acc"} and len(pg.snapshots) == 2
    other = pg.draw(steps=60)                          # a copy with other settings; pg keeps its own run
    assert other != r and pg.settings["steps"] == 40 and len(pg.snapshots) == 2


def test_playground_errors():
    with pytest.raises(TypeError, match="unknown settings"):
        Playground(colour="red")
    with pytest.raises(ValueError, match="unknown dataset"):
        Playground(dataset="mnist")
    with pytest.raises(ValueError, match="unknown activation"):
        Playground(activation="gelu")
    with pytest.raises(ValueError, match="positive"):
        Playground(hidden=(0,))
    with pytest.raises(RuntimeError, match="nothing to replay yet"):
        Playground().replay()
    with pytest.raises(FloatingPointError, match="lower lr"):
        Playground(dataset="moons", noise=float("nan"), steps=100, every=50, device="cpu").train(live=False)


@pytest.mark.parametrize("name,good,bad", [
    ("linear_params", lambda i, o: i * o + o, lambda i, o: i * o),
    ("mlp_forward_flops", lambda s, b: 2 * b * sum(x * y for x, y in zip(s, s[1:])),
     lambda s, b: b * sum(x * y for x, y in zip(s, s[1:]))),
    ("conv2d_params", lambda i, o, k: o * (i * k * k + 1), lambda i, o, k: o * i * k * k),
    ("transformer_block_params", block_params, lambda d, f: 4 * d * d + 2 * d * f),
    ("attention_crossover", lambda d, f: 2 * d + f, lambda d, f: d + f),
    ("accuracy_std", lambda a, m: (a * (1 - a) / m) ** 0.5, lambda a, m: a * (1 - a) / m),
])
def test_core_concepts_checks(name, good, bad, check_verdict):
    check_verdict(name, good, bad)
