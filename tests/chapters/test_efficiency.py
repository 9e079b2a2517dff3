import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from book import check
from book.hardware import time_step
from book.lab.efficiency import (
    FORMATS,
    DeepMLP,
    DynamicLossScaler,
    SavedTensorMeter,
    accumulated_grads,
    activation_gradients,
    amp_context,
    char_ngram_loss,
    chunk_bounds,
    draw_checkpoint_bars,
    draw_formats,
    format_limits,
    format_table,
    layernorm_gelu,
    lost_fraction,
    measure_checkpointing,
    scaler_update,
    split_batch,
    tensor_bytes,
    train_step_fn,
    train_steps,
)
from book.train import running_mean


# ----------------------------------------------------------------------------- number formats
@pytest.mark.parametrize("name", list(FORMATS))
def test_format_limits_match_finfo(name):
    dtype, e, m = FORMATS[name]
    fi, lim = torch.finfo(dtype), format_limits(e, m)
    assert lim["bits"] == fi.bits
    assert lim["max"] == fi.max and lim["eps"] == fi.eps and lim["tiny"] == fi.tiny
    sub = torch.tensor(lim["smallest_subnormal"], dtype=torch.float64).to(dtype)
    assert sub > 0 and (sub / 2).to(dtype) == 0   # the smallest positive value: half of it rounds to 0


def test_format_table_and_errors():
    rows = {r["name"]: r for r in format_table()}
    assert rows["float16"]["max"] == 65504 and rows["bfloat16"]["exponent"] == rows["float32"]["exponent"] == 8
    assert rows["float16"]["smallest_subnormal"] == 2.0 ** -24
    with pytest.raises(ValueError, match="exponent"):
        format_limits(1, 3)


def test_tensor_bytes_and_lost_fraction():
    assert tensor_bytes((3, 4), torch.bfloat16) == 24 and tensor_bytes((), torch.float64) == 8
    with pytest.raises(TypeError, match="torch.dtype"):
        tensor_bytes((3,), "float16")
    v = torch.tensor([1e-9, 1e-6, 1.0, 1e5, 0.0])
    f = lost_fraction(v, torch.float16)
    assert f == {"zero": 0.25, "inf": 0.25, "subnormal": 0.25}
    assert lost_fraction(v, torch.float16, scale=2.0 ** 10)["zero"] == 0.0
    assert lost_fraction(v, torch.bfloat16) == {"zero": 0.0, "inf": 0.0, "subnormal": 0.0}
    with pytest.raises(ValueError, match="non-zero"):
        lost_fraction(torch.zeros(3), torch.float16)


def test_char_ngram_loss_unigram_and_bigram():
    ids = torch.tensor([0, 1, 0, 1, 0, 1, 0, 1])
    assert char_ngram_loss(ids, 2, 1) == pytest.approx(math.log(2))       # two equally frequent symbols
    assert char_ngram_loss(ids, 2, 2) == pytest.approx(0.0)               # the next one is always known
    ids = torch.randint(0, 5, (5000,), generator=torch.Generator().manual_seed(0))
    uni, bi = char_ngram_loss(ids, 5, 1), char_ngram_loss(ids, 5, 2)
    assert uni == pytest.approx(math.log(5), abs=0.01) and bi <= uni     # conditioning never hurts in-sample
    # the bigram loss is the cross-entropy of counting: compare with F.cross_entropy on the count table
    counts = torch.zeros(5, 5)
    counts.index_put_((ids[:-1], ids[1:]), torch.ones(len(ids) - 1), accumulate=True)
    logp = (counts / counts.sum(1, keepdim=True)).log()
    assert bi == pytest.approx(F.nll_loss(logp[ids[:-1]], ids[1:]).item(), rel=1e-5)
    with pytest.raises(ValueError, match="order"):
        char_ngram_loss(ids, 5, 3)
    with pytest.raises(ValueError, match="ids"):
        char_ngram_loss(torch.tensor([0, 7]), 5)


def test_activation_gradients_collects_linear_outputs():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    x, y = torch.randn(5, 4), torch.tensor([0, 1, 2, 0, 1])
    g = activation_gradients(net, lambda: F.cross_entropy(net(x), y))
    assert g.shape == (5 * 8 + 5 * 3,)
    assert all(p.grad is None for p in net.parameters())
    with pytest.raises(ValueError, match="nn.Linear"):
        activation_gradients(nn.Sequential(nn.ReLU()), lambda: torch.ones(1, requires_grad=True).sum())


# ----------------------------------------------------------------------------- loss scaling
def test_scaler_update_rule():
    assert scaler_update(8.0, 3, True) == (4.0, 0)
    assert scaler_update(8.0, 3, False, growth_interval=5) == (8.0, 4)
    assert scaler_update(8.0, 4, False, growth_interval=5) == (16.0, 0)


def _run(scaler, grads_per_step):
    """Train one parameter with SGD through a scaler; return (scale after each step, final parameter)."""
    p = nn.Parameter(torch.ones(3))
    opt = torch.optim.SGD([p], lr=0.1)
    scales = []
    for g in grads_per_step:
        opt.zero_grad()
        scaler.scale((p * g).sum()).backward()
        scaler.step(opt)
        scaler.update()
        scales.append(scaler.get_scale())
    return scales, p.detach()


def test_scratch_scaler_matches_torch_gradscaler():
    inf, nan = float("inf"), float("nan")
    grads = [1.0, 1.0, 1.0, inf, 2.0, nan, 1.0, 1.0, 1.0, 1.0, 1e-3]
    kw = dict(init_scale=2.0 ** 10, growth_interval=3)
    ours = _run(DynamicLossScaler(**kw), grads)
    ref = torch.amp.GradScaler("cpu", **kw)
    if not ref.is_enabled():   # pragma: no cover - older builds without CPU GradScaler
        pytest.skip("torch.amp.GradScaler is disabled on this CPU build")
    theirs = _run(ref, grads)
    assert ours[0] == theirs[0]
    assert torch.allclose(ours[1], theirs[1])
    # the scale grew after 3 good steps, halved at the inf and at the nan, and those steps were skipped
    assert ours[0][:6] == [2.0 ** 10, 2.0 ** 10, 2.0 ** 11, 2.0 ** 10, 2.0 ** 10, 2.0 ** 9]


def test_scratch_scaler_logic_without_torch():
    s = DynamicLossScaler(init_scale=4.0, growth_interval=2)
    scales, p = _run(s, [1.0, 1.0, float("inf"), 1.0])
    assert scales == [4.0, 8.0, 4.0, 4.0]
    assert torch.allclose(p, torch.full((3,), 1 - 0.3))          # 3 of 4 steps taken, gradients unscaled
    assert [skipped for _, skipped in s.history] == [False, False, True, False]
    with pytest.raises(RuntimeError, match="step"):
        s.update()
    with pytest.raises(ValueError, match="growth_factor"):
        DynamicLossScaler(growth_factor=1.0)


def test_unscale_twice_is_an_error():
    p = nn.Parameter(torch.ones(2))
    opt = torch.optim.SGD([p], lr=0.1)
    s = DynamicLossScaler()
    s.scale(p.sum()).backward()
    assert not s.unscale_(opt)
    assert torch.allclose(p.grad, torch.ones(2))
    with pytest.raises(RuntimeError, match="already"):
        s.unscale_(opt)


# ----------------------------------------------------------------------------- training loop, accumulation
def _tiny_lm(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Embedding(11, 16), nn.Linear(16, 32), nn.GELU(), nn.Linear(32, 11))


def _batches(seed=0, batch=8, T=5):
    g = torch.Generator().manual_seed(seed)
    data = [torch.randint(0, 11, (batch, T + 1), generator=g) for _ in range(20)]
    return lambda step: (data[step][:, :-1], data[step][:, 1:])


def test_accumulated_grads_equal_full_batch():
    net = _tiny_lm()
    x, y = _batches()(0)
    loss_fn = lambda out, t: F.cross_entropy(out.reshape(-1, 11), t.reshape(-1))  # noqa: E731
    full = accumulated_grads(net, loss_fn, x, y, 1)
    for k in (2, 4, 8):
        assert all(torch.allclose(a, b, atol=1e-7) for a, b in zip(full, accumulated_grads(net, loss_fn, x, y, k)))
    with pytest.raises(ValueError, match="equal micro-batches"):
        split_batch(x, y, 3)
    with pytest.raises(ValueError, match="examples"):
        split_batch(x, y[:4], 2)


def test_train_steps_accumulation_and_autocast():
    runs = {}
    for k in (1, 4):
        net = _tiny_lm()
        runs[k] = train_steps(net, _batches(), 20, 1e-2, micro_batches=k)
    assert max(abs(a - b) for a, b in zip(runs[1]["loss"], runs[4]["loss"])) < 1e-5
    assert runs[1]["loss"][-1] < runs[1]["loss"][0] and runs[1]["skipped"] == 0
    bf = train_steps(_tiny_lm(), _batches(), 20, 1e-2, amp_dtype=torch.bfloat16)
    assert abs(bf["loss"][-1] - runs[1]["loss"][-1]) < 0.1 and bf["loss"][0] != runs[1]["loss"][0]
    with pytest.raises(ValueError, match="loss scaling"):
        train_steps(_tiny_lm(), _batches(), 2, 1e-2, amp_dtype=torch.float16)
    sc = DynamicLossScaler(init_scale=2.0 ** 140, growth_interval=1000)   # above fp32 max: overflows at first
    r = train_steps(_tiny_lm(), _batches(), 20, 1e-2, loss_scaler=sc)
    assert r["skipped"] >= 1 and sc.get_scale() < 2.0 ** 128 and sum(skip for _, skip in sc.history) == r["skipped"]
    with pytest.raises(FloatingPointError, match="inf/NaN"):
        train_steps(_tiny_lm(), lambda s: (torch.zeros(8, 5, dtype=torch.long), torch.zeros(8, 5, dtype=torch.long)),
                    3, 1e-2, loss_fn=lambda o, t: o.sum() * float("inf"))


def test_amp_context_and_running_mean():
    with amp_context("cpu", torch.bfloat16):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    with amp_context("cpu", None):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
    with pytest.raises(ValueError, match="float16 or torch.bfloat16"):
        amp_context("cpu", torch.float64)
    assert running_mean([1.0, 3.0, 5.0], window=2) == [1.0, 2.0, 4.0]
    with pytest.raises(ValueError, match="window"):
        running_mean([1.0], window=0)


# ----------------------------------------------------------------------------- checkpointing
def test_chunk_bounds():
    assert chunk_bounds(16, 4) == [(0, 4), (4, 8), (8, 12), (12, 16)]
    b = chunk_bounds(10, 3)
    assert b[0][0] == 0 and b[-1][1] == 10 and {e - s for s, e in b} <= {3, 4}
    with pytest.raises(ValueError, match="segments"):
        chunk_bounds(4, 5)


def test_saved_tensor_meter_counts_shared_buffers_once():
    net = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU())
    x = torch.randn(4, 8)
    with SavedTensorMeter(net.parameters()) as meter:
        net(x).sum()
    assert meter.count == 3 and meter.bytes == 3 * 4 * 8 * 4      # x, relu1 (= linear2's input), relu2


def test_checkpointing_saves_memory_and_keeps_gradients():
    torch.manual_seed(0)
    model = DeepMLP(depth=8, width=32, n_in=12, n_out=5)
    x, y = torch.randn(16, 12), torch.randint(0, 5, (16,))
    plain = measure_checkpointing(model, x, y, 0, repeats=1)
    ck = measure_checkpointing(model, x, y, 2, repeats=1)
    assert ck["held"] < plain["held"] / 2 and ck["peak"] < plain["peak"] and ck["cuda_peak"] is None
    assert all(torch.allclose(a, b) for a, b in zip(plain["grads"], ck["grads"]))
    assert plain["peak"] == plain["held"] and ck["seconds"] > 0
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2)
    draw_checkpoint_bars(axes, [plain, ck], 1)
    assert "segments 2" in axes[0].get_title()
    plt.close(fig)


def test_time_step_runs_warmup_and_repeats(monkeypatch):
    calls = []
    t = time_step(lambda: calls.append(1), "cpu", repeats=4, warmup=2)
    assert len(calls) == 6 and t >= 0
    monkeypatch.setenv("BOOK_DRYRUN", "1")  # a dry run warms up once (its repeats are shrunk by env.pick)
    calls.clear()
    time_step(lambda: calls.append(1), "cpu", repeats=2, warmup=3)
    assert len(calls) == 3


# ----------------------------------------------------------------------------- exercise checks
def test_checks_accept_reference_solutions():
    with check.raising():
        check.bytes_in_dtype(lambda shape, dtype: math.prod(shape) * dtype.itemsize)
        check.loss_scale_update(lambda s, g, f, n: scaler_update(s, g, f, growth_interval=n))
        check.accumulation_weights(lambda sizes: [n / sum(sizes) for n in sizes])
        check.mlp_activation_bytes(lambda b, w, d, dtype: (d + 1) * b * w * dtype.itemsize)
        check.best_segments(lambda d: min(range(1, d + 1), key=lambda s: (s + math.ceil(d / s), s)))


@pytest.mark.parametrize("name,wrong", [
    ("bytes_in_dtype", lambda shape, dtype: math.prod(shape) * 4),                    # ignores the dtype
    ("loss_scale_update", lambda s, g, f, n: (s / 2, 0) if f else (s * 2, 0)),        # grows every step
    ("accumulation_weights", lambda sizes: [1 / len(sizes)] * len(sizes)),            # wrong for unequal sizes
    ("mlp_activation_bytes", lambda b, w, d, dtype: 2 * d * b * w * dtype.itemsize),  # counts shared buffers twice
    ("best_segments", lambda d: round(math.sqrt(d))),                                  # only approximately right
])
def test_checks_reject_wrong_solutions(name, wrong):
    with pytest.raises(check.CheckFailed):
        with check.raising():
            getattr(check, name)(wrong)


def test_train_step_fn_changes_the_model():
    net = _tiny_lm()
    x, y = _batches()(0)
    before = net[1].weight.detach().clone()
    step = train_step_fn(net, x, y, lr=1e-2, amp_dtype=torch.bfloat16)
    step()
    assert not torch.equal(before, net[1].weight) and net[1].weight.dtype == torch.float32


def test_draw_formats():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots()
    draw_formats(ax)
    assert len(ax.patches) == 32 + 16 + 16
    plt.close(fig)


def test_layernorm_gelu_matches_torch():
    torch.manual_seed(0)
    x, w, b = (torch.randn(6, 10, dtype=torch.float64), torch.randn(10, dtype=torch.float64),
               torch.randn(10, dtype=torch.float64))
    ref = F.gelu(F.layer_norm(x, (10,), w, b, eps=1e-5), approximate="tanh")
    assert torch.allclose(layernorm_gelu(x, w, b), ref)
    with pytest.raises(ValueError, match=r"shape \(10,\)"):
        layernorm_gelu(x, w[:5], b)
