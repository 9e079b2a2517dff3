"""Self-checks for the chapter "Adversarial examples and adversarial training"."""
from __future__ import annotations

import torch
from torch import nn

from book.check.core import Case, run_cases

__all__ = ["fgsm_step", "project_linf", "linear_worst_case", "accuracy_under_fgsm", "targeted_fgsm"]


def _images(g, n, side=6):
    return torch.rand(n, 1, side, side, generator=g, dtype=torch.float64)


def fgsm_step(fn) -> None:
    """``fn(x, grad, eps)`` -> ``x + eps * sign(grad)``, clamped to the pixel range [0, 1]."""
    g = torch.Generator().manual_seed(21)
    x = torch.tensor([[0.5, 0.0, 1.0, 0.95]], dtype=torch.float64)
    grad = torch.tensor([[2.0, -0.1, 3.0, 1e-4]], dtype=torch.float64)
    cases = [Case((x, grad, 0.1), torch.tensor([[0.6, 0.0, 1.0, 1.0]], dtype=torch.float64),
                  label="x=[.5, 0, 1, .95]: only the sign of the gradient counts; stay in [0, 1]"),
             Case((x, torch.zeros_like(x), 0.3), x, label="zero gradient: no change")]
    for eps in (0.05, 0.3):
        xi, gi = _images(g, 3), torch.randn(3, 1, 6, 6, generator=g, dtype=torch.float64)
        cases.append(Case((xi, gi, eps), (xi + eps * gi.sign()).clamp(0, 1), public=False, label=f"images, eps={eps}"))
    run_cases("fgsm_step", fn, cases, hint="x + eps * grad.sign(), then .clamp(0, 1): the step ignores the "
              "gradient's size, and pixels must stay valid")


def project_linf(fn) -> None:
    """``fn(x_adv, x, eps)`` -> the nearest point to ``x_adv`` within ``eps`` of ``x`` (every pixel) and in [0, 1]."""
    g = torch.Generator().manual_seed(22)
    x = torch.tensor([[0.5, 0.5, 0.05, 0.98]], dtype=torch.float64)
    x_adv = torch.tensor([[0.9, 0.45, -0.2, 1.5]], dtype=torch.float64)
    cases = [Case((x_adv, x, 0.1), torch.tensor([[0.6, 0.45, 0.0, 1.0]], dtype=torch.float64),
                  label="too far up, inside, too far down and below 0, above 1")]
    for eps in (0.03, 0.2):
        xi = _images(g, 2)
        xa = xi + 0.5 * torch.randn(xi.shape, generator=g, dtype=torch.float64)
        ref = torch.min(torch.max(xa, xi - eps), xi + eps).clamp(0, 1)
        cases.append(Case((xa, xi, eps), ref, public=False, label=f"random images, eps={eps}"))
    run_cases("project_linf", fn, cases, hint="clamp each pixel to [x - eps, x + eps] (torch.max / torch.min "
              "with tensors), then to [0, 1]")


def linear_worst_case(fn) -> None:
    """``fn(w, eps)`` -> the largest change of the score ``w · x`` over perturbations with every ``|δ_i| <= eps``."""
    g = torch.Generator().manual_seed(23)
    w = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    cases = [Case((w, 0.1), 0.35, label="w=[1, -2, .5], eps=0.1: pick δ = eps·sign(w)"),
             Case((torch.full((784,), 0.01, dtype=torch.float64), 0.1), 0.784,
                  label="784 weights of 0.01, eps=0.1: tiny per pixel, large in total")]
    for n in (10, 1000):
        wi = torch.randn(n, generator=g, dtype=torch.float64)
        cases.append(Case((wi, 0.07), float(0.07 * wi.abs().sum()), public=False, label=f"random w, {n} inputs"))
    run_cases("linear_worst_case", lambda w, eps: float(fn(w, eps)), cases,
              hint="w · δ is largest at δ_i = eps · sign(w_i), which gives eps · sum |w_i|")


def _template_task(seed: int, n: int = 200):
    """A linear classifier that is accurate on noisy copies of ten random 'digit' templates."""
    g = torch.Generator().manual_seed(seed)
    base = 0.3 + 0.4 * torch.rand(1, 1, 28, 28, generator=g)
    templates = base + 0.04 * torch.randn(10, 1, 28, 28, generator=g)      # (10, 1, 28, 28): close together
    y = torch.randint(0, 10, (n,), generator=g)
    x = (templates[y] + 0.1 * torch.randn(n, 1, 28, 28, generator=g)).clamp(0, 1)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    with torch.no_grad():
        centred = templates.view(10, -1) - templates.view(10, -1).mean(0)   # (10, 784)
        model[1].weight.copy_(centred)
        model[1].bias.copy_(-0.5 * (centred * templates.view(10, -1)).sum(1))
    return model.eval(), x, y


def accuracy_under_fgsm(fn) -> None:
    """``fn(model, x, y, eps)`` -> the fraction of ``x`` still classified as ``y`` after an FGSM attack
    with budget ``eps`` (a float)."""
    from book.lab.adversarial import robust_accuracy
    cases = []
    for i, (seed, eps) in enumerate([(0, 0.0), (0, 0.02), (0, 0.05), (1, 0.03), (2, 0.01)]):
        model, x, y = _template_task(seed)
        cases.append(Case((model, x, y, eps), robust_accuracy(model, x, y, eps, "fgsm"), public=i < 3,
                          label=f"template classifier, eps={eps}"))
    run_cases("accuracy_under_fgsm", lambda *a: float(fn(*a)), cases,
              hint="attack with x_adv = (x + eps * sign(∂loss/∂x)).clamp(0, 1) using the true labels, then "
                   "compare model(x_adv).argmax(1) with y; eps = 0 must give the clean accuracy")


def targeted_fgsm(fn) -> None:
    """``fn(model, x, target, eps)`` -> one FGSM step that *lowers* the loss of class ``target``, clamped to [0, 1]."""
    from book.lab.adversarial import fgsm
    cases = []
    for i, (seed, eps) in enumerate([(0, 0.05), (1, 0.1), (2, 0.2)]):
        model, x, y = _template_task(seed, n=20)
        target = (y + 1 + torch.arange(len(y)) % 9) % 10                   # never the true class
        cases.append(Case((model, x, target, eps), fgsm(model, x, target, eps, targeted=True), public=i == 0,
                          label=f"template classifier, eps={eps}"))
    run_cases("targeted_fgsm", fn, cases, hint="step *against* the gradient of the loss computed with the "
              "target labels: x - eps * sign(∂loss(x, target)/∂x), then clamp to [0, 1]")
