"""Self-checks of the gan chapter's exercises."""
from __future__ import annotations

import math

import torch

from book.check.core import Case, _g, close, run_cases

__all__ = ["generator_grads", "frechet_isotropic", "modes_covered", "histogram_entropy"]


def generator_grads(fn) -> None:
    """``fn(d)`` -> (saturating, non-saturating): d/dD of each per-sample generator loss at D = d.

    The derivative is taken by D itself, not by the logit the chapter differentiates by, so the answer
    is not the chapter's formula; the expected values come from autograd through the lab's losses.
    """
    from book.lab.gan import generator_loss
    cases = []
    for i, d in enumerate([torch.tensor([0.5, 0.1, 0.9]), torch.tensor([1e-3, 0.3]),
                           torch.rand(6, generator=_g(91)) * 0.98 + 0.01]):
        expected = []
        for kind in ("saturating", "non_saturating"):
            dd = d.double().requires_grad_()
            loss = generator_loss(torch.logit(dd), kind) * len(d)       # sum of per-sample losses
            grad, = torch.autograd.grad(loss, dd)
            expected.append(grad)
        cases.append(Case((d.double(),), tuple(expected), public=i < 2, label=f"D = {d.numpy().round(3)}"))
    run_cases("generator_grads", fn, cases, compare=lambda got, exp: close(got, exp, rtol=1e-5, atol=1e-8),
              hint="differentiate log(1 - D) and -log D by D itself (no sigmoid here)")


def frechet_isotropic(fn) -> None:
    """``fn(mean_a, std_a, mean_b, std_b)`` -> Fréchet distance of N(mean_a, std_a² I), N(mean_b, std_b² I).

    Means are tensors of shape (k,), standard deviations floats; the expected values come from the
    chapter's matrix formula (``frechet_gaussians``) on the full covariance matrices.
    """
    from book.lab.gan import frechet_gaussians
    g = _g(92)
    cases = []
    for i, k in enumerate([1, 3, 2, 6, 84]):
        ma, mb = torch.randn(k, generator=g, dtype=torch.float64), torch.randn(k, generator=g, dtype=torch.float64)
        sa, sb = (torch.rand(2, generator=g, dtype=torch.float64) * 3 + 0.1).tolist()
        if i == 0:
            mb, sb = ma.clone(), sa                          # identical Gaussians: distance 0
        eye = torch.eye(k, dtype=torch.float64)
        exp = frechet_gaussians(ma, sa ** 2 * eye, mb, sb ** 2 * eye)
        cases.append(Case((ma, sa, mb, sb), exp, public=i < 2,
                          label=f"k = {k}, std {sa:.2f} vs {sb:.2f}"))
    run_cases("frechet_isotropic", fn, cases, compare=lambda got, exp: close(got, exp, rtol=1e-6, atol=1e-9),
              hint="with Σ = s² I every matrix commutes: (Σ_a^½ Σ_b Σ_a^½)^½ = s_a s_b I, "
                   "and tr I = k, the dimension")


def modes_covered(fn) -> None:
    """``fn(samples, centers, std)`` -> how many modes have >= 1 % of the samples within 3 std of them."""
    from book.lab.gan import mode_coverage, ring_centers
    g = _g(93)
    cases = []
    centers = ring_centers(8, 2.0)
    for i, (n_modes, spread) in enumerate([(8, 0.02), (2, 0.02), (5, 0.3), (1, 0.01), (8, 1.0)]):
        k = torch.randint(0, n_modes, (400,), generator=g)
        x = centers[k] + spread * torch.randn(400, 2, generator=g)
        cases.append(Case((x, centers, 0.02), mode_coverage(x, centers, 0.02)["modes"], public=i < 2,
                          label=f"400 samples on {n_modes} modes, spread {spread}"))
    run_cases("modes_covered", fn, cases, compare=lambda got, exp: close(got, exp, rtol=0, atol=0),
              hint="nearest centre of each sample (torch.cdist); keep samples closer than 3 std; count the "
                   "centres that keep at least 1 % of all samples")


def histogram_entropy(fn) -> None:
    """``fn(probs)`` -> entropy (nats) of the histogram of predicted classes of probabilities (N, C)."""
    from book.lab.gan import class_entropy
    g = _g(94)
    cases = [Case((torch.eye(10),), math.log(10), label="ten samples, one per class"),
             Case((torch.eye(10)[[3] * 7],), 0.0, label="every sample the same class")]
    for n in (5, 50, 200):
        p = torch.rand(n, 10, generator=g).pow(4).softmax(1)
        cases.append(Case((p,), class_entropy(p), public=False, label=f"{n} random rows"))
    run_cases("histogram_entropy", fn, cases, compare=lambda got, exp: close(got, exp, rtol=1e-6, atol=1e-9),
              hint="count argmax classes, divide by N, sum -share log share over the classes that occur")
