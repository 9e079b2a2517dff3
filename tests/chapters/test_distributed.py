"""book.lab.distributed: simulated data parallelism, ring all-reduce, ZeRO arithmetic, and real DDP under torchrun."""
import pytest
import torch
import torch.nn.functional as F

from book import check, load_mnist
from book.check import raising
from book.lab.distributed import (
    global_batches,
    launch,
    make_model,
    ring_allreduce,
    shard,
    simulate_data_parallel,
    train_single,
    zero_memory,
)


def test_simulated_data_parallel_equals_full_batch():
    d = load_mnist(n_train=200)
    model = make_model(0)
    x, y = d.x_train[:48], d.y_train[:48]
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()
    full = [p.grad.clone() for p in model.parameters()]
    for n in (1, 3, 4):
        for a, b in zip(simulate_data_parallel(model, x, y, n), full):
            assert torch.allclose(a, b, atol=1e-6)


def test_shard_and_batches():
    idx = torch.arange(12)
    assert torch.equal(torch.cat([shard(idx, r, 3) for r in range(3)]), idx)
    with pytest.raises(ValueError, match="divisible by 5"):
        shard(idx, 0, 5)
    b = global_batches(100, 4, 10, seed=1)
    assert b.shape == (4, 10) and torch.equal(b, global_batches(100, 4, 10, seed=1))


def test_ring_allreduce_sums_and_counts_traffic():
    g = torch.Generator().manual_seed(0)
    for n in (1, 2, 5):
        vecs = [torch.randn(20, generator=g) for _ in range(n)]
        out, sent = ring_allreduce(vecs)
        assert all(torch.allclose(o, torch.stack(vecs).sum(0), atol=1e-5) for o in out)
        assert sent == (2 * (n - 1) * 20 // n if n > 1 else 0)
    with pytest.raises(ValueError, match="equal length"):
        ring_allreduce([torch.zeros(6), torch.zeros(4)])


def test_zero_memory_matches_the_paper_and_errors():
    for stage, gb in {0: 120.0, 1: 31.4, 2: 16.6, 3: 1.9}.items():
        assert abs(zero_memory(7.5e9, 64, stage)["total"] / 1e9 - gb) < 0.05
    assert zero_memory(1e9, 1, 3)["total"] == zero_memory(1e9, 1, 0)["total"]
    with pytest.raises(ValueError, match="stage"):
        zero_memory(1e9, 8, 4)
    with pytest.raises(ValueError, match="n_gpus"):
        zero_memory(1e9, 0, 1)


@pytest.mark.long
def test_ddp_with_two_gloo_processes_matches_one_process(tmp_path):
    lines = []
    res = launch(2, tmp_path / "ddp.pt", on_line=lines.append, steps=12, batch=32, n_train=1000, log_every=4,
                 backend="gloo")
    assert res["world"] == 2 and res["backend"] == "gloo" and lines[0].startswith("step 0 loss")
    d = load_mnist(n_train=1000)
    model, losses, first = train_single(d.x_train, d.y_train, 12, 32)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(first, res["first_grads"]))
    assert all(torch.allclose(v, res["state"][k], atol=1e-5) for k, v in model.state_dict().items())
    assert abs(float(lines[-1].split()[-1]) - losses[-1]) < 1e-4


@pytest.mark.long
def test_launch_reports_failures(tmp_path):
    with pytest.raises(RuntimeError, match="torchrun exited"):
        # 33 examples cannot be split over 2 processes; one run (the retry has its own test below)
        launch(2, tmp_path / "x.pt", tries=1, batch=33)


def test_checks_accept_solutions_and_reject_wrong_ones():
    with raising():
        check.allreduce_mean(lambda gs: [torch.stack(gs).mean(0) for _ in gs])
        check.my_shard(lambda idx, r, w: idx[r * (len(idx) // w):(r + 1) * (len(idx) // w)])
        check.ring_bytes_sent(lambda b, n: 2 * (n - 1) * b / n)
        check.zero_bytes(lambda p, n, s: 2 * p / (n if s >= 3 else 1) + 2 * p / (n if s >= 2 else 1)
                         + 12 * p / (n if s >= 1 else 1))
        check.row_parallel(lambda x, W, b, n: F.linear(x, W, b))
        for name, wrong in [("allreduce_mean", lambda gs: [torch.stack(gs).sum(0) for _ in gs]),
                            ("my_shard", lambda idx, r, w: idx[r::w]),
                            ("ring_bytes_sent", lambda b, n: b * n),
                            ("zero_bytes", lambda p, n, s: 16 * p / n),
                            ("row_parallel", lambda x, W, b, n: F.linear(x, W, b) + b)]:
            with pytest.raises(check.CheckFailed):
                getattr(check, name)(wrong)


def test_launch_starts_a_failed_run_once_more_and_then_gives_up(monkeypatch, capsys):
    import book.lab.distributed as d
    calls = []

    def flaky(*a, **k):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("torchrun exited with 1: rank 1 SIGABRT")
        return {"world": 2}
    monkeypatch.setattr(d, "_launch_once", flaky)
    assert d.launch(2, "x.pt") == {"world": 2} and len(calls) == 2
    assert "starting again" in capsys.readouterr().out
    monkeypatch.setattr(d, "_launch_once", lambda *a, **k: calls.append(1) or (_ for _ in ()).throw(RuntimeError("x")))
    calls.clear()
    with pytest.raises(RuntimeError):
        d.launch(2, "x.pt", tries=2)
    assert len(calls) == 2
