"""book.nn.privacy: per-example gradients against a loop of backward passes, clipping, the noise's scale, the DP-SGD
step against plain SGD, and the RDP accountant against the closed form (q = 1) and numerical integration (q < 1)."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import integrate, stats
from torch import nn

from book.nn.privacy import (
    ORDERS,
    clip_per_example,
    dp_epsilon,
    dp_sgd_step,
    eps_from_rdp,
    noisy_sum,
    per_example_grads,
    per_example_norms,
    rdp_subsampled_gaussian,
)


def _net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3)).double()


def _batch(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 5, generator=g, dtype=torch.float64), torch.randint(0, 3, (n,), generator=g)


def test_per_example_grads_equal_a_loop_of_backward_passes():
    net, (x, y) = _net(), _batch()
    grads = per_example_grads(net, F.cross_entropy, x, y)
    for i in range(len(x)):
        net.zero_grad()
        F.cross_entropy(net(x[i:i + 1]), y[i:i + 1]).backward()
        for name, p in net.named_parameters():
            assert grads[name].shape == (len(x), *p.shape)
            assert torch.allclose(grads[name][i], p.grad, atol=1e-12)
    norms = per_example_norms(grads)
    direct = torch.sqrt(sum(g[0].pow(2).sum() for g in grads.values()))
    assert norms.shape == (len(x),) and torch.isclose(norms[0], direct)
    with pytest.raises(ValueError, match="same length"):
        per_example_grads(net, F.cross_entropy, x, y[:-1])


def test_clipping_bounds_every_norm_and_leaves_small_gradients_alone():
    net, (x, y) = _net(), _batch(20)
    grads = per_example_grads(net, F.cross_entropy, x, y)
    norms = per_example_norms(grads)
    c = float(norms.median())
    clipped = per_example_norms(clip_per_example(grads, c))
    assert (clipped <= c * (1 + 1e-9)).all()
    big = norms > c
    assert torch.allclose(clipped[big], torch.full_like(clipped[big], c))
    assert torch.allclose(clipped[~big], norms[~big])                # small ones unchanged
    zero = {k: torch.zeros_like(v) for k, v in grads.items()}
    assert all(torch.equal(v, zero[k]) for k, v in clip_per_example(zero, 1.0).items())
    with pytest.raises(ValueError, match="positive"):
        clip_per_example(grads, 0.0)


def test_noise_of_the_summed_gradient_has_std_sigma_times_c():
    grads = {"w": torch.randn(4, 200_000, generator=torch.Generator().manual_seed(1), dtype=torch.float64)}
    clipped_sum = clip_per_example(grads, 0.5)["w"].sum(0)
    for sigma in (0.0, 1.0, 3.0):
        noise = noisy_sum(grads, 0.5, sigma, torch.Generator().manual_seed(2))["w"] - clipped_sum
        assert abs(noise.std().item() - sigma * 0.5) <= 0.01 * max(sigma * 0.5, 1e-9) + 1e-12
        assert abs(noise.mean().item()) < 0.01
    with pytest.raises(ValueError, match=">= 0"):
        noisy_sum(grads, 0.5, -1.0)


def test_dp_sgd_step_without_noise_and_clipping_is_plain_sgd():
    x, y = _batch(8)
    a, b = _net(3), _net(3)
    dp_sgd_step(a, F.cross_entropy, x, y, lr=0.1, clip=1e6, sigma=0.0, expected_batch=8)
    F.cross_entropy(b(x), y).backward()
    with torch.no_grad():
        for p in b.parameters():
            p -= 0.1 * p.grad
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.allclose(pa, pb, atol=1e-12)
    c = _net(3)                       # an empty Poisson batch: the parameters move by noise only
    before = [p.clone() for p in c.parameters()]
    norms = dp_sgd_step(c, F.cross_entropy, x[:0], y[:0], lr=0.1, clip=1.0, sigma=1.0, expected_batch=8,
                        generator=torch.Generator().manual_seed(0))
    assert len(norms) == 0 and any(not torch.equal(p, q) for p, q in zip(c.parameters(), before))
    with pytest.raises(ValueError, match="expected_batch"):
        dp_sgd_step(c, F.cross_entropy, x, y, lr=0.1, clip=1.0, sigma=1.0, expected_batch=0)


@pytest.mark.parametrize("sigma", [0.5, 1.0, 4.0])
def test_accountant_at_q_one_is_the_gaussian_closed_form(sigma):
    orders = [2, 3, 10, 64]
    assert np.allclose(rdp_subsampled_gaussian(1.0, sigma, orders), [a / (2 * sigma ** 2) for a in orders],
                       rtol=1e-12)
    assert rdp_subsampled_gaussian(0.0, sigma, orders) == [0.0] * 4


@pytest.mark.parametrize("q,sigma", [(0.01, 0.8), (0.1, 1.0), (0.5, 2.0)])
def test_accountant_matches_numerical_integration_of_the_renyi_divergence(q, sigma):
    """A_alpha = E_{z ~ N(0, s^2)} [((1 - q) + q * p1(z) / p0(z))^alpha] with p1 = N(1, s^2): the mixture
    against N(0, s^2)."""
    for alpha in (2, 3, 5, 8):
        def f(z):
            ratio = math.exp((2 * z - 1) / (2 * sigma ** 2))
            return stats.norm.pdf(z, 0, sigma) * ((1 - q) + q * ratio) ** alpha
        a, _ = integrate.quad(f, -40 * sigma, 40 * sigma + alpha, limit=400, epsabs=0, epsrel=1e-11)
        got = rdp_subsampled_gaussian(q, sigma, [alpha])[0]
        assert math.isclose(got, math.log(a) / (alpha - 1), rel_tol=1e-6, abs_tol=1e-12), (alpha, got)


def test_epsilon_grows_with_steps_and_falls_with_noise_and_subsampling():
    steps = [1, 10, 100, 1000]
    sigmas = [0.6, 1.0, 2.0, 5.0]
    table = np.array([[dp_epsilon(0.01, s, t, 1e-5) for t in steps] for s in sigmas])
    assert (np.diff(table, axis=1) > 0).all() and (np.diff(table, axis=0) < 0).all()
    assert dp_epsilon(0.01, 1.0, 100, 1e-5) < dp_epsilon(0.1, 1.0, 100, 1e-5) < dp_epsilon(1.0, 1.0, 100, 1e-5)
    assert dp_epsilon(0.01, 1.0, 100, 1e-5) < dp_epsilon(0.01, 1.0, 100, 1e-7)   # smaller delta costs epsilon
    assert dp_epsilon(0.5, 1.0, 0, 1e-5) == 0.0


def test_conversion_takes_the_best_order():
    rdp = [3 * a / 2 for a in ORDERS]                     # sigma = 1, three full-batch steps
    eps, order = eps_from_rdp(rdp, 1e-5, ORDERS)
    manual = min(r + math.log(1e5) / (a - 1) for r, a in zip(rdp, ORDERS))
    assert math.isclose(eps, manual) and order in ORDERS
    real = 3 / 2 + math.sqrt(2 * 3 * math.log(1e5))       # the minimum over real orders, a lower bound
    assert real <= eps <= real * 1.01


def test_accountant_error_paths():
    with pytest.raises(ValueError, match="q must be"):
        rdp_subsampled_gaussian(1.5, 1.0)
    with pytest.raises(ValueError, match="sigma"):
        rdp_subsampled_gaussian(0.1, 0.0)
    with pytest.raises(ValueError, match="integers"):
        rdp_subsampled_gaussian(0.1, 1.0, [1.5])
    with pytest.raises(ValueError, match="delta"):
        eps_from_rdp([1.0], 0.0, [2])
    with pytest.raises(ValueError, match="orders"):
        eps_from_rdp([1.0, 2.0], 1e-5, [2])
    with pytest.raises(ValueError, match="steps"):
        dp_epsilon(0.1, 1.0, -1, 1e-5)
