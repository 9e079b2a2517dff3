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
