import math

import pytest
import torch
from torch import nn

from book.data import make_2d
from book.train import Callback, check_finite, evaluate, fit


def blobs_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 2))


def test_fit_learns_blobs_and_records_history():
    x, y = make_2d("blobs", n=400, noise=0.05, seed=0)
    model = blobs_model()
    h = fit(model, (x, y), torch.optim.Adam(model.parameters(), lr=0.05), epochs=5, batch_size=32,
            val=(x, y), log_every=10, generator=torch.Generator().manual_seed(0))
    steps = 5 * math.ceil(400 / 32)
    assert h.step[-1] == steps and h.step[0] == 10
    assert len(h.train_loss) == len(h.val_loss) == len(h.val_acc) == len(h.seconds)
    assert h.train_loss[-1] < h.train_loss[0]
    assert h.last("val_acc") > 0.9
    assert evaluate(model, x, y)["acc"] == pytest.approx(h.last("val_acc"))


def test_fit_with_get_batch_function():
    x, y = make_2d("xor", n=256, seed=0)
    model = nn.Sequential(nn.Linear(2, 32), nn.ReLU(), nn.Linear(32, 2))
    g = torch.Generator().manual_seed(0)

    def get_batch(step):
        i = torch.randint(0, len(x), (64,), generator=g)
        return x[i], y[i]
    h = fit(model, get_batch, torch.optim.Adam(model.parameters(), lr=0.02), steps=300, log_every=100)
    assert h.step == [100, 200, 300]
    assert evaluate(model, x, y)["acc"] > 0.9


def test_fit_is_deterministic():
    x, y = make_2d("moons", n=200, seed=0)
    losses = []
    for _ in range(2):
        model = blobs_model(seed=5)
        h = fit(model, (x, y), torch.optim.SGD(model.parameters(), lr=0.1), epochs=2,
                log_every=3, generator=torch.Generator().manual_seed(1))
        losses.append(h.train_loss)
    assert losses[0] == losses[1]


def test_callbacks_are_called_in_order_and_sync_only_at_log_points():
    calls = []

    class Spy(Callback):
        def on_train_begin(self, s): calls.append("begin")
        def on_step_begin(self, s): calls.append(("step", s.step, s.will_log))
        def on_after_backward(self, s):
            assert all(p.grad is not None for p in s.model.parameters())
            calls.append("backward")
        def on_log(self, s): calls.append(("log", s.step, len(s.history.step)))
        def on_train_end(self, s): calls.append("end")
    x, y = make_2d("blobs", n=40, seed=0)
    model = blobs_model()
    fit(model, (x, y), torch.optim.SGD(model.parameters(), lr=0.1), epochs=1, batch_size=10,
        log_every=3, callbacks=[Spy()])
    assert calls[0] == "begin" and calls[-1] == "end"
    assert ("step", 3, True) in calls and ("step", 2, False) in calls
    assert [c for c in calls if c[0] == "log"] == [("log", 3, 1), ("log", 4, 2)]  # last step always logs


def test_argument_errors_are_explained():
    x, y = make_2d("blobs", n=20, seed=0)
    model = blobs_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="exactly one of epochs"):
        fit(model, (x, y), opt)
    with pytest.raises(ValueError, match="exactly one of epochs"):
        fit(model, (x, y), opt, epochs=1, steps=3)
    with pytest.raises(ValueError, match="give steps="):
        fit(model, lambda s: (x, y), opt, epochs=1)
    with pytest.raises(TypeError, match="tuple"):
        fit(model, [x], opt, epochs=1)
    with pytest.raises(ValueError, match="20 examples but y has 5"):
        fit(model, (x, y[:5]), opt, epochs=1)
    with pytest.raises(ValueError, match="log_every"):
        fit(model, (x, y), opt, epochs=1, log_every=0)
    with pytest.raises(ValueError, match="no parameters"):
        fit(nn.ReLU(), (x, y), opt, epochs=1)
    with pytest.raises(ValueError, match="scalar"):
        fit(model, (x, y), opt, epochs=1, loss_fn=lambda o, t: nn.functional.cross_entropy(o, t, reduction="none"))


def test_device_mismatch_is_explained():
    x, y = make_2d("blobs", n=20, seed=0)
    model = blobs_model().to("meta")  # stands in for "a GPU" on machines without one
    with pytest.raises(RuntimeError, match="model is on meta but a data tensor is on cpu"):
        fit(model, (x, y), torch.optim.SGD(model.parameters(), lr=0.1), epochs=1)


def test_nan_loss_stops_training_with_advice():
    x, y = make_2d("blobs", n=64, seed=0)
    model = blobs_model()
    bad = x.clone()
    bad[3, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="learning rate that is too large"):
        fit(model, (bad, y), torch.optim.SGD(model.parameters(), lr=0.1), epochs=2, log_every=2)
    with pytest.raises(FloatingPointError):
        check_finite(float("inf"), 7)


def test_no_accuracy_for_sequence_outputs():
    model = nn.Sequential(nn.Embedding(5, 5))            # (B, T) -> (B, T, 5): a toy language model
    x = torch.randint(0, 5, (8, 4))
    lm = lambda out, y: nn.functional.cross_entropy(out.reshape(-1, 5), y.reshape(-1))  # noqa: E731
    assert math.isnan(evaluate(model, x, x, loss_fn=lm)["acc"])
    h = fit(model, lambda s: (x, x), torch.optim.SGD(model.parameters(), lr=0.5), loss_fn=lm, steps=4, log_every=2,
            val=(x, x))
    assert len(h.val_loss) == 2 and h.val_acc == []


def test_evaluate_restores_training_mode():
    x, y = make_2d("blobs", n=50, seed=0)
    model = nn.Sequential(nn.Linear(2, 4), nn.Dropout(0.5), nn.Linear(4, 2))
    model.train()
    out = evaluate(model, x, y, batch_size=7)
    assert model.training and 0 <= out["acc"] <= 1 and out["loss"] > 0


def test_fit_reads_values_from_the_device_only_at_log_points(monkeypatch):
    """The rule for training loops (a GPU runs ahead of Python until something reads a value back):
    `.item()`, `.tolist()`, `float(t)` and `.cpu()` happen per log point, not per step."""
    reads = []
    for name in ("item", "tolist", "__float__", "cpu"):
        orig = getattr(torch.Tensor, name)
        monkeypatch.setattr(torch.Tensor, name,
                            lambda self, *a, _o=orig, _n=name, **k: reads.append(_n) or _o(self, *a, **k))

    def count(steps, log_every):
        reads.clear()
        x, y = make_2d("blobs", n=64, seed=0)
        model = blobs_model()
        fit(model, (x, y), torch.optim.SGD(model.parameters(), lr=0.1), steps=steps, batch_size=8,
            log_every=log_every, progress=False)
        return len(reads)

    per_log = count(10, 10)                  # one log point
    assert count(40, 10) <= 4 * per_log      # four log points, 40 steps: reads grow with logs, not steps
    assert count(40, 40) == per_log
