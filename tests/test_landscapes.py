import numpy as np
import pytest
import torch

from book.landscapes import LANDSCAPES, get_landscape, run_optimizer


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
