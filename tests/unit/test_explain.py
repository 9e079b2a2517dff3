"""book.nn.explain against references: occlusion vs a per-patch loop, saliency vs torch.autograd.grad, integrated
gradients vs completeness and closed forms, exact Shapley values vs the axioms and the additive closed form,
KernelSHAP with all coalitions vs exact, LIME on a linear function, Spearman vs scipy, deletion curves."""
import math

import pytest
import torch
from torch import nn

from book.nn.explain import (
    all_masks,
    deletion_curve,
    integrated_gradients,
    kernel_shap,
    lime,
    masked_value,
    occlusion,
    patch_masks_to_pixels,
    saliency,
    shapley_exact,
    shapley_kernel_weight,
    spearman,
    target_score,
)


def _cnn(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(4 * 8 * 8, 3)).double()


def _additive(x):           # f(x) = 2 x0 + sin(3 x1) + x2^2 + 0 * x3, on a batch (n, 4)
    return 2 * x[:, 0] + torch.sin(3 * x[:, 1]) + x[:, 2] ** 2 + 0 * x[:, 3]


def _g(x):                  # the additive terms, per feature
    return torch.stack([2 * x[..., 0], torch.sin(3 * x[..., 1]), x[..., 2] ** 2, 0 * x[..., 3]], -1)


@pytest.mark.parametrize("patch,stride", [(2, 2), (3, 1), (4, 3)])
def test_occlusion_equals_a_manual_loop(patch, stride):
    f = _cnn()
    x = torch.rand(1, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    got = occlusion(f, x, 1, patch, stride, fill=0.5)
    with torch.no_grad():
        base = f(x[None])[0, 1]
        total, count = torch.zeros(8, 8, dtype=torch.float64), torch.zeros(8, 8, dtype=torch.float64)
        for t in range(0, 8 - patch + 1, stride):
            for le in range(0, 8 - patch + 1, stride):
                z = x.clone()
                z[:, t:t + patch, le:le + patch] = 0.5
                total[t:t + patch, le:le + patch] += base - f(z[None])[0, 1]
                count[t:t + patch, le:le + patch] += 1
    assert torch.allclose(got, total / count.clamp_min(1), atol=1e-12)


def test_saliency_equals_autograd_and_the_linear_weights():
    f = _cnn()
    x = torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    xr = x.clone().requires_grad_(True)
    (ref,) = torch.autograd.grad(f(xr)[:, 2].sum(), xr)
    assert torch.allclose(saliency(f, x, 2), ref, atol=1e-12)
    assert torch.allclose(saliency(f, x, 2, times_input=True), ref * x, atol=1e-12)
    lin = nn.Linear(6, 2).double()
    xs = torch.randn(3, 6, dtype=torch.float64)
    assert torch.allclose(saliency(lin, xs, 1), lin.weight[1].detach().expand(3, 6))
    assert not x.requires_grad and all(p.grad is None for p in f.parameters())


def test_integrated_gradients_closed_forms_and_completeness():
    lin = nn.Linear(6, 1).double()
    x, b = torch.randn(6, dtype=torch.float64), torch.randn(6, dtype=torch.float64)
    assert torch.allclose(integrated_gradients(lin, x, None, b, steps=1), (x - b) * lin.weight[0].detach())
    quad = lambda z: (torch.arange(1, 7, dtype=torch.float64) * z ** 2).sum(-1)   # noqa: E731
    # the gradient is linear along the path: the midpoint rule is exact, IG_i = a_i (x_i^2 - b_i^2)
    ig = integrated_gradients(quad, x, None, b, steps=3)
    assert torch.allclose(ig, torch.arange(1, 7) * (x ** 2 - b ** 2), atol=1e-12)
    f = _cnn()
    xi = torch.rand(1, 8, 8, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    gap = (f(xi[None])[0, 0] - f(torch.zeros(1, 1, 8, 8, dtype=torch.float64))[0, 0]).item()
    errs = [abs(integrated_gradients(f, xi, 0, steps=s, batch=7).sum().item() - gap) for s in (2, 8, 64)]
    assert errs[2] < errs[0] and errs[2] < 1e-3 * max(abs(gap), 1e-3)
    with pytest.raises(ValueError, match="steps"):
        integrated_gradients(f, xi, 0, steps=0)
    with pytest.raises(ValueError, match="baseline shape"):
        integrated_gradients(f, xi, 0, baseline=torch.zeros(3))


def test_target_score_needs_a_target_for_many_outputs():
    with pytest.raises(ValueError, match="target"):
        target_score(_cnn(), torch.zeros(2, 1, 8, 8, dtype=torch.float64), None)


def test_all_masks_and_kernel_weights():
    m = all_masks(3)
    assert m.shape == (8, 3) and m[5].tolist() == [True, False, True] and len({tuple(r) for r in m.tolist()}) == 8
    assert shapley_kernel_weight(4, 0) == math.inf and shapley_kernel_weight(4, 2) == pytest.approx(3 / (6 * 4))
    with pytest.raises(ValueError):
        all_masks(0)


def test_shapley_additive_closed_form_with_a_background():
    g = torch.Generator().manual_seed(4)
    x, bg = torch.randn(4, generator=g, dtype=torch.float64), torch.randn(30, 4, generator=g, dtype=torch.float64)
    value = masked_value(_additive, x, bg)
    phi = shapley_exact(value, 4)
    assert torch.allclose(phi, _g(x) - _g(bg).mean(0), atol=1e-12)      # phi_i = g_i(x_i) - E g_i(X_i)
    assert phi[3] == 0                                                    # dummy


def test_shapley_axioms_on_an_interacting_function():
    w = torch.tensor([1.0, 1.0, -0.5, 0.0], dtype=torch.float64)
    f = lambda z: z @ w + 3 * z[:, 0] * z[:, 1] + torch.sin(z[:, 2] * z[:, 0])   # noqa: E731
    x, b = torch.tensor([0.7, 0.7, 1.2, 5.0], dtype=torch.float64), torch.zeros(4, dtype=torch.float64)
    value = masked_value(f, x, b)
    phi = shapley_exact(value, 4)
    full = value(torch.ones(1, 4, dtype=torch.bool)) - value(torch.zeros(1, 4, dtype=torch.bool))
    assert phi.sum().item() == pytest.approx(full.item(), abs=1e-12)      # efficiency
    assert phi[3].item() == pytest.approx(0, abs=1e-14)                     # dummy: feature 3 does nothing
    # symmetry: swapping features 0 and 1 leaves f unchanged only with x2 = 0; check that case
    x2 = torch.tensor([0.7, 0.7, 0.0, 5.0], dtype=torch.float64)
    p2 = shapley_exact(masked_value(lambda z: z @ w + 3 * z[:, 0] * z[:, 1], x2, b), 4)
    assert p2[0].item() == pytest.approx(p2[1].item(), abs=1e-12)
    assert p2[0].item() == pytest.approx(0.7 + 1.5 * 0.49, abs=1e-12)   # the product's credit split in two


def test_kernel_shap_with_all_coalitions_is_exact_and_sampling_converges():
    g = torch.Generator().manual_seed(5)
    net = nn.Sequential(nn.Linear(7, 16), nn.Tanh(), nn.Linear(16, 1)).double()
    x, bg = torch.randn(7, generator=g, dtype=torch.float64), torch.randn(5, 7, generator=g, dtype=torch.float64)
    value = masked_value(net, x, bg)
    exact = shapley_exact(value, 7)
    assert (kernel_shap(value, 7) - exact).abs().max() < 1e-6
    errs = [(kernel_shap(value, 7, n, generator=torch.Generator().manual_seed(0)) - exact).abs().max() for n in
            (20, 2000)]
    assert errs[1] < errs[0]
    s = kernel_shap(value, 7, 50, generator=g)
    assert s.sum().item() == pytest.approx(exact.sum().item(), abs=1e-9)   # efficiency holds by construction
    with pytest.raises(ValueError):
        kernel_shap(value, 1)
    with pytest.raises(ValueError, match="masks"):
        value(torch.ones(2, 3, dtype=torch.bool))


def test_lime_recovers_a_linear_set_function():
    beta = torch.tensor([0.5, -1.0, 2.0, 0.0, 0.3], dtype=torch.float64)
    value = lambda m: 1.0 + m.double() @ beta   # noqa: E731
    got = lime(value, 5, n_samples=400, ridge=1e-9, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(got, beta, atol=1e-6)
    with pytest.raises(ValueError):
        lime(value, 5, n_samples=1)


def test_masked_value_with_patch_groups():
    x = torch.arange(16, dtype=torch.float64).view(1, 4, 4)
    groups = (torch.arange(4).view(2, 2).repeat_interleave(2, 0).repeat_interleave(2, 1)).view(1, 4, 4)
    value = masked_value(lambda z: z.sum((1, 2, 3)), x, torch.zeros_like(x), groups=groups)
    assert value.d == 4
    v = value(torch.tensor([[True, False, False, False], [False, False, False, True]]))
    assert v.tolist() == [0 + 1 + 4 + 5, 10 + 11 + 14 + 15]
    assert patch_masks_to_pixels(torch.tensor([1.0, 2.0, 3.0, 4.0]), groups)[0, 3, 0] == 3.0


def test_spearman_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    g = torch.Generator().manual_seed(6)
    a = torch.randn(3, 50, generator=g)
    b = a + torch.randn(3, 50, generator=g)
    b[0, :10] = 0.0                                  # ties
    a[1, :5] = 1.0
    for i in range(3):
        assert spearman(a[i], b[i]).item() == pytest.approx(stats.spearmanr(a[i], b[i])[0], abs=1e-12)
    assert torch.allclose(spearman(a, b), torch.stack([spearman(a[i], b[i]) for i in range(3)]))
    with pytest.raises(ValueError):
        spearman(a, b[:, :3])


def test_deletion_and_insertion_curves():
    f = nn.Sequential(nn.Flatten(), nn.Linear(16, 2)).double()
    with torch.no_grad():
        f[1].weight.zero_()
        f[1].weight[0, :4] = 5.0
        f[1].bias.zero_()
    x = torch.ones(1, 4, 4, dtype=torch.float64)
    good = torch.zeros(4, 4, dtype=torch.float64).view(-1)
    good[:4] = 1.0
    good = good.view(4, 4)
    d_good = deletion_curve(f, x, 0, good, steps=4)
    d_bad = deletion_curve(f, x, 0, -good, steps=4)
    assert d_good.shape == (5,) and d_good[0] == d_bad[0] and d_good[-1] == pytest.approx(0.5)
    assert d_good[1] == pytest.approx(0.5) and d_bad[1] > 0.99            # the right pixels go first
    ins = deletion_curve(f, x, 0, good, steps=4, insertion=True)
    assert ins[0] == pytest.approx(0.5) and ins[1] > 0.99
