"""The optimisation chapter: Nesterov, AdaGrad, Adadelta, AdamW and the schedules of book.nn.optim against
torch.optim, its lab plumbing (book.lab.optimisation) and its checks."""
import math

import matplotlib
import numpy as np
import pytest
import torch
from torch import nn

matplotlib.use("Agg")

from book.check import optimisation as checks  # noqa: E402
from book.check._reference import _halving_ref, _lasso_max_ref, _nesterov_lr_ref  # noqa: E402
from book.lab.optimisation import (TrajectoryView, captured_share, filter_normalised_direction,  # noqa: E402
                                   flat_params, loss_grid, match_torch, set_flat_params, soft_threshold,
                                   sparsity, torch_schedule, train_regularised, trajectory_pca)
from book.nn.optim import (Adadelta, AdaGrad, AdamW, Nesterov, cosine_lr, exponential_lr,  # noqa: E402
                           one_cycle_lr, step_lr, warmup_cosine_lr)
from book.train import fit  # noqa: E402

L = torch.optim.lr_scheduler

# ============================================================================ book.nn.optim against torch.optim
PAIRS = {
    "nesterov": (lambda p: Nesterov(p, lr=0.05, momentum=0.8),
                 lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.8, nesterov=True)),
    "adagrad": (lambda p: AdaGrad(p, lr=0.3, eps=1e-8), lambda p: torch.optim.Adagrad(p, lr=0.3, eps=1e-8)),
    "adadelta": (lambda p: Adadelta(p, lr=0.5, rho=0.8, eps=1e-5),
                 lambda p: torch.optim.Adadelta(p, lr=0.5, rho=0.8, eps=1e-5)),
    "adamw": (lambda p: AdamW(p, lr=0.02, betas=(0.8, 0.99), weight_decay=0.3),
              lambda p: torch.optim.AdamW(p, lr=0.02, betas=(0.8, 0.99), weight_decay=0.3)),
}


@pytest.mark.parametrize("name", list(PAIRS))
def test_scratch_matches_torch_optim_step_for_step(name):
    ours, theirs = PAIRS[name]
    assert match_torch(ours, theirs, steps=200, seed=1, shape=(4, 6)) < 1e-10


def test_match_torch_detects_a_difference():
    assert match_torch(lambda p: Nesterov(p, lr=0.1), lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9)) > 1e-3
    with pytest.raises(ValueError, match="steps"):
        match_torch(PAIRS["adagrad"][0], PAIRS["adagrad"][1], steps=0)


def test_adamw_without_decay_is_adam():
    assert match_torch(lambda p: AdamW(p, lr=0.01, weight_decay=0.0), lambda p: torch.optim.Adam(p, lr=0.01)) < 1e-12


SCHEDULES = {
    "step": (lambda t: step_lr(t, 0.4, 7, 0.5), lambda o: L.StepLR(o, step_size=7, gamma=0.5)),
    "exponential": (lambda t: exponential_lr(t, 0.4, 0.9), lambda o: L.ExponentialLR(o, gamma=0.9)),
    "cosine": (lambda t: cosine_lr(t, 0.4, 40, eta_min=0.01),
               lambda o: L.CosineAnnealingLR(o, T_max=40, eta_min=0.01)),
    "warmup": (lambda t: warmup_cosine_lr(t, 0.4, 40, 5, start_factor=0.2),
               lambda o: L.SequentialLR(o, [L.LinearLR(o, 0.2, 1.0, total_iters=5),
                                            L.CosineAnnealingLR(o, T_max=35)], [5])),
    "one-cycle": (lambda t: one_cycle_lr(t, 0.4, 40, pct_start=0.25, div_factor=10, final_div_factor=100),
                  lambda o: L.OneCycleLR(o, max_lr=0.4, total_steps=40, pct_start=0.25, div_factor=10,
                                         final_div_factor=100, cycle_momentum=False)),
}


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_schedules_match_lr_scheduler(name):
    ours, theirs = SCHEDULES[name]
    ref = torch_schedule(theirs, 40, base=0.4)
    assert np.abs(np.array([ours(t) for t in range(40)]) - ref).max() < 1e-12


# ============================================================================ regularisation
def test_soft_threshold():
    w = torch.tensor([-1.0, -0.05, 0.0, 0.05, 2.0])
    assert torch.allclose(soft_threshold(w, 0.1), torch.tensor([-0.9, 0.0, 0.0, 0.0, 1.9]))
    assert sparsity(soft_threshold(w, 0.1)) == pytest.approx({"exact": 0.6, "near": 0.6})


def _tiny_split():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(256, 1, 28, 28, generator=g)
    y = (x.flatten(1)[:, :392].sum(1) > x.flatten(1)[:, 392:].sum(1)).long()
    return type("S", (), {"x_train": x[:200], "y_train": y[:200], "x_val": x[200:], "y_val": y[200:]})()


def test_proximal_l1_gives_exact_zeros_and_subgradient_does_not():
    data = _tiny_split()
    sub = train_regularised(data, "l1", 0.01, 0.1, 3, seed=0)[1].weight
    prox = train_regularised(data, "l1-prox", 0.01, 0.1, 3, seed=0)[1].weight
    l2 = train_regularised(data, "l2", 0.01, 0.1, 3, seed=0)[1].weight
    assert sparsity(prox)["exact"] > 0.2 and sparsity(sub)["exact"] < 0.01 and sparsity(l2)["exact"] == 0
    with pytest.raises(ValueError, match="unknown penalty"):
        train_regularised(data, "l0", 0.01, 0.1, 1, seed=0)


# ============================================================================ loss landscape
def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 8), nn.ReLU(), nn.Linear(8, 2))


def test_flat_params_roundtrip_and_loss_grid_restores():
    net = _mlp()
    flat = flat_params(net)
    set_flat_params(net, flat * 2)
    assert torch.allclose(flat_params(net), flat * 2)
    set_flat_params(net, flat)
    data = _tiny_split()
    dirs = torch.stack([torch.randn_like(flat), torch.randn_like(flat)])
    Z = loss_grid(net, flat, dirs, [-1.0, 0.0, 1.0], [0.0, 0.5], data.x_val, data.y_val)
    assert Z.shape == (2, 3) and torch.equal(flat_params(net), flat)
    assert Z[0, 1] == pytest.approx(nn.functional.cross_entropy(net(data.x_val), data.y_val).item(), rel=1e-6)


def test_filter_normalised_direction():
    net = _mlp()
    d = filter_normalised_direction(net, torch.Generator().manual_seed(0))
    w = net[1].weight
    rows = d[:w.numel()].view_as(w)
    assert torch.allclose(rows.norm(dim=1), w.detach().norm(dim=1), rtol=1e-5)
    assert torch.equal(d[w.numel():w.numel() + 8], torch.zeros(8))     # bias: not perturbed


def test_trajectory_pca_and_captured_share():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(50, generator=g), torch.randn(50, generator=g)
    t = torch.linspace(0, 1, 20)[:, None]
    path = t * a + t ** 2 * b            # a path in the plane of a and b
    dirs, share = trajectory_pca(path)
    assert share[:2].sum() == pytest.approx(1.0, abs=1e-9)
    assert captured_share(path, dirs) == pytest.approx(1.0, abs=1e-9)
    assert captured_share(path, torch.randn(2, 50, generator=g)) < 0.9
    with pytest.raises(ValueError, match="at least 3"):
        trajectory_pca(path[:2])


def test_trajectory_view_records_and_replays():
    data = _tiny_split()
    net = _mlp()
    view = TrajectoryView(net, data.x_val, data.y_val, grid=5, redraw_every=2)
    with pytest.raises(RuntimeError, match="nothing to replay"):
        view.replay()
    fit(net, (data.x_train, data.y_train), torch.optim.SGD(net.parameters(), lr=0.1), epochs=2, batch_size=32,
        log_every=2, callbacks=[view], progress=False)
    assert len(view.path) == len(view.steps) == 1 + 14 // 2   # the start + every 2nd of 14 steps
    assert view.Z.shape == (5, 5) and view.coords.shape == (len(view.path), 2)
    assert np.allclose(view.coords[-1], 0)          # the grid is centred on the final weights
    assert view.redraws >= 2
    assert "<script" in view.replay(max_frames=3).data
    with pytest.raises(ValueError, match="grid"):
        TrajectoryView(net, data.x_val, data.y_val, grid=2)


# ============================================================================ exercise checks
def nesterov_step(theta, v, grad, lr, mu):
    v_new = mu * v + grad
    return theta - lr * (grad + mu * v_new), v_new


def test_reference_answers_are_right():
    # Nesterov's limit: just below it a run converges, just above it diverges
    def final(lr, lam=20.0, mu=0.9):
        theta = torch.tensor([1.0], dtype=torch.float64, requires_grad=True)
        opt = Nesterov([theta], lr=lr, momentum=mu)
        for _ in range(3000):
            theta.grad = lam * theta.detach().clone()
            opt.step()
        return abs(theta.item())
    lim = _nesterov_lr_ref(20.0, 0.9)
    assert final(0.99 * lim) < 1e-3 < 1e3 < final(1.01 * lim)
    # weight decay's half-life: simulate
    w, n = 1.0, 0
    while w > 0.5:
        w *= 1 - 0.1 * 0.01
        n += 1
    assert n == _halving_ref(0.1, 0.01)
    # lasso's lambda_max: proximal gradient keeps w = 0 just above it, not just below
    g = torch.Generator().manual_seed(0)
    X = torch.randn(60, 5, generator=g, dtype=torch.float64)
    y = X[:, 0] + 0.1 * torch.randn(60, generator=g, dtype=torch.float64)
    lam_max, step = _lasso_max_ref(X, y), 60 / torch.linalg.matrix_norm(X, 2).item() ** 2
    for lam, zero in ((1.02 * lam_max, True), (0.95 * lam_max, False)):
        w = torch.zeros(5, dtype=torch.float64)
        for _ in range(500):
            w = soft_threshold(w - step * X.T @ (X @ w - y) / 60, step * lam)
        assert bool((w == 0).all()) == zero


@pytest.mark.parametrize("name, good, bad", [
    ("nesterov_step", nesterov_step, lambda th, v, g, lr, mu: (th - lr * (mu * v + g), mu * v + g)),
    ("nesterov_max_lr", lambda lam, mu: 2 * (1 + mu) / (lam * (1 + 2 * mu)), lambda lam, mu: 2 * (1 + mu) / lam),
    ("adagrad_step_size", lambda t, lr, g: lr * abs(g) / (math.sqrt(t) * abs(g) + 1e-10),
     lambda t, lr, g: lr / t),
    ("halving_steps", lambda lr, wd: math.ceil(math.log(0.5) / math.log(1 - lr * wd)),
     lambda lr, wd: math.floor(math.log(0.5) / math.log(1 - lr * wd))),
    ("lasso_lambda_max", lambda X, y: float((X.T @ y).abs().max() / len(y)),
     lambda X, y: float((X.T @ y).abs().sum() / len(y))),
])
def test_checks_accept_good_and_reject_bad(check_verdict, name, good, bad):
    assert name in checks.__all__
    check_verdict(name, good, bad)
