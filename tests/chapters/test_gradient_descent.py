"""The gradient_descent chapter: the scratch optimizers (book.nn.optim) against torch.optim, the 2-D surfaces."""
import numpy as np
import pytest
import torch

from book.lab.gradient_descent import LANDSCAPES, get_landscape, run_optimizer
from book.nn.optim import OPTIMIZERS, SGD, Adam, Momentum, RMSprop, make_optimizer


@pytest.mark.parametrize("name", list(LANDSCAPES))
def test_minimum_is_stationary_and_lowest(name):
    land = LANDSCAPES[name]
    xy = torch.tensor(land.minimum, dtype=torch.float64, requires_grad=True)
    v = land(xy[0], xy[1])
    v.backward()
    assert xy.grad.abs().max() < 1e-12
    X, Y = np.meshgrid(np.linspace(*land.xlim, 101), np.linspace(*land.ylim, 101))
    assert land(X, Y).min() >= v.item() - 1e-9


def test_quadratic_stability_threshold():
    assert not run_optimizer("ill-conditioned quadratic", "SGD", lr=0.099, steps=400).diverged
    run = run_optimizer("ill-conditioned quadratic", "SGD", lr=0.101, steps=400)
    assert run.diverged and np.isnan(run.loss[-1]) and np.isfinite(run.final).all()


def test_adam_reaches_rosenbrock_minimum():
    run = run_optimizer("rosenbrock", "Adam", lr=0.02, steps=3000)
    assert np.linalg.norm(run.final - np.array([1.0, 1.0])) < 0.05
    assert run.path.shape == (3001, 2) and not run.diverged


def test_errors():
    with pytest.raises(ValueError, match="unknown landscape"):
        get_landscape("himmelblau")
    with pytest.raises(ValueError, match="steps"):
        run_optimizer("saddle", steps=0)


# ============================================================================ book.nn.optim

PAIRS = [
    (lambda p: SGD(p, lr=0.1), lambda p: torch.optim.SGD(p, lr=0.1)),
    (lambda p: Momentum(p, lr=0.05, momentum=0.8), lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.8)),
    (lambda p: RMSprop(p, lr=0.01, alpha=0.9), lambda p: torch.optim.RMSprop(p, lr=0.01, alpha=0.9)),
    (lambda p: Adam(p, lr=0.01, betas=(0.8, 0.99)), lambda p: torch.optim.Adam(p, lr=0.01, betas=(0.8, 0.99))),
]


@pytest.mark.parametrize("ours,theirs", PAIRS)
def test_scratch_matches_torch_optim(ours, theirs):
    g = torch.Generator().manual_seed(0)
    p0 = [torch.randn(4, 3, generator=g, dtype=torch.float64), torch.randn(5, generator=g, dtype=torch.float64)]
    a = [t.clone().requires_grad_() for t in p0]
    b = [t.clone().requires_grad_() for t in p0]
    oa, ob = ours(a), theirs(b)
    for _ in range(100):
        for pa, pb in zip(a, b):
            grad = torch.randn(pa.shape, generator=g, dtype=torch.float64)
            pa.grad, pb.grad = grad.clone(), grad.clone()
        oa.step()
        ob.step()
    for pa, pb in zip(a, b):
        assert torch.allclose(pa, pb, atol=1e-10)


def test_scratch_optimizer_trains_a_real_model():
    torch.manual_seed(0)
    x = torch.randn(64, 3)
    y = x @ torch.tensor([1.0, -1.0, 2.0])
    model = torch.nn.Linear(3, 1)
    opt = Adam(model.parameters(), lr=0.05)
    for _ in range(300):
        opt.zero_grad()
        loss = ((model(x).squeeze(1) - y) ** 2).mean()
        loss.backward()
        opt.step()
    assert loss.item() < 1e-3
    opt.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_parameters_without_grad_are_skipped():
    p, q = torch.ones(2, requires_grad=True), torch.ones(2, requires_grad=True)
    opt = SGD([p, q], lr=1.0)
    p.grad = torch.ones(2)
    opt.step()
    assert torch.equal(p, torch.zeros(2)) and torch.equal(q, torch.ones(2))


def test_optimizer_errors():
    with pytest.raises(ValueError, match="empty parameter list"):
        SGD([], lr=0.1)
    with pytest.raises(ValueError, match="positive"):
        Adam([torch.zeros(1)], lr=0)
    with pytest.raises(ValueError, match="unknown optimizer 'Lion'"):
        make_optimizer("Lion", [torch.zeros(1)], lr=0.1)
    assert set(OPTIMIZERS) == {"SGD", "Momentum", "RMSprop", "Adam"}


# ============================================================================ gradient noise and batch size
def _tiny_problem():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 6, generator=g)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 2)), x, y


def test_gradient_noise_full_gradient_and_trace_are_exact():
    from book.lab.gradient_descent import gradient_noise
    model, x, y = _tiny_problem()
    r = gradient_noise(model, x, y, [1, 300], repeats=3, generator=torch.Generator().manual_seed(0), chunk=64)
    # brute force: one example at a time with autograd
    grads = []
    for i in range(len(x)):
        model.zero_grad()
        torch.nn.functional.cross_entropy(model(x[i:i + 1]), y[i:i + 1]).backward()
        grads.append(torch.cat([p.grad.reshape(-1) for p in model.parameters()]).double())
    G = torch.stack(grads)
    assert r["G2"] == pytest.approx(float(G.mean(0) @ G.mean(0)), rel=1e-6)
    assert r["trace"] == pytest.approx(float(((G - G.mean(0)) ** 2).sum(1).mean()), rel=1e-6)
    assert r["noise_scale"] == pytest.approx(r["trace"] / r["G2"])
    assert r["predicted"][300] == pytest.approx(r["trace"] / 300)


def test_gradient_noise_measures_one_over_b():
    from book.lab.gradient_descent import gradient_noise
    model, x, y = _tiny_problem()
    r = gradient_noise(model, x, y, [2, 32], repeats=400, generator=torch.Generator().manual_seed(1))
    for b in (2, 32):
        assert 0.8 < r["measured"][b] / r["predicted"][b] < 1.25
    with pytest.raises(ValueError, match="repeats"):
        gradient_noise(model, x, y, [2], repeats=1)
    with pytest.raises(ValueError, match="batch sizes"):
        gradient_noise(model, x, y, [301], repeats=2)


def test_train_at_batch_size_returns_inf_when_it_blows_up():
    from book.lab.gradient_descent import train_at_batch_size
    _, x, y = _tiny_problem()
    data = type("S", (), {"x_train": x[:200], "y_train": y[:200], "x_val": x[200:], "y_val": y[200:]})()
    make = lambda: torch.nn.Linear(6, 2)  # noqa: E731
    ok = train_at_batch_size(make, data, 16, 0.5, 2, seed=0)
    assert np.isfinite(ok) and ok < 0.69
    assert train_at_batch_size(make, data, 16, float("inf"), 2, seed=0) == float("inf")


# ============================================================================ exercise checks
def test_minibatch_variance_reference_by_enumeration():
    import itertools

    from book.check._reference import _minibatch_var_ref
    g = torch.Generator().manual_seed(0)
    rows = torch.randn(7, 3, generator=g, dtype=torch.float64)
    G = rows.mean(0)
    for b in (1, 3, 7):
        errs = [float(((rows[list(c)].mean(0) - G) ** 2).sum()) for c in itertools.combinations(range(7), b)]
        assert _minibatch_var_ref(rows, b) == pytest.approx(np.mean(errs), rel=1e-12)


def test_best_fixed_lr_reference_minimises_the_worst_factor():
    from book.check._reference import _best_lr_ref
    lam = [0.5, 3.0, 20.0]
    worst = lambda lr: max(abs(1 - lr * k) for k in lam)  # noqa: E731
    best = _best_lr_ref(lam)
    assert all(worst(best) <= worst(best * f) for f in (0.9, 0.99, 1.01, 1.1))


def _minibatch_with_replacement(per_example, b):
    return float(((per_example - per_example.mean(0)) ** 2).sum(1).mean()) / b


@pytest.mark.parametrize("name, good, bad", [
    ("quadratic_grad", lambda t: torch.stack([2 * (t[0] - 1), 2 * (t[1] - 2)]),
     lambda t: torch.stack([2 * (1 - t[0]), 2 * (2 - t[1])])),
    ("momentum_step", lambda th, v, g, lr, mu: (th - lr * (mu * v + g), mu * v + g),
     lambda th, v, g, lr, mu: (th - lr * g, mu * v + g)),
    ("max_stable_lr", lambda c: 2.0 / max(c), lambda c: 1.0 / max(c)),
    ("best_fixed_lr", lambda c: 2.0 / (min(c) + max(c)), lambda c: 1.0 / max(c)),
    ("minibatch_variance",
     lambda r, b: _minibatch_with_replacement(r, b) * (len(r) - b) / (len(r) - 1), _minibatch_with_replacement),
])
def test_gradient_descent_checks(name, good, bad, check_verdict):
    check_verdict(name, good, bad)
