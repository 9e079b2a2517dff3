"""book.lab.adversarial: attacks stay in the ε-ball and the pixel range, PGD(1 step, step ε) is FGSM, attacks
raise the loss, accuracy under attack, adversarial batches for fit, the explorer, the error paths and the
exercise checks."""
import matplotlib
import pytest
import torch
import torch.nn.functional as F

from book import check, evaluate, fit
from book.check import raising
from book.check.adversarial import _template_task
from book.lab.adversarial import (
    AdversarialBatches,
    AttackExplorer,
    accuracy_vs_eps,
    attack,
    fgsm,
    input_gradient,
    linf_project,
    pgd,
    plot_accuracy_vs_eps,
    random_noise,
    robust_accuracy,
    share_at_box_edge,
    step_seconds,
)
from book.nn.models import LeNet

matplotlib.use("Agg")


@pytest.fixture
def lenet_batch():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(16, 1, 28, 28, generator=g)
    x[:4] = (x[:4] > 0.5).float()             # many pixels exactly at 0 or 1: clamping matters
    return LeNet().eval(), x, torch.randint(0, 10, (16,), generator=g)


@pytest.mark.parametrize("eps", [0.0, 0.03, 0.1, 0.3])
def test_perturbation_within_budget_and_pixel_range(lenet_batch, eps):
    model, x, y = lenet_batch
    for x_adv in (fgsm(model, x, y, eps), pgd(model, x, y, eps, steps=5),
                  pgd(model, x, y, eps, steps=3, step_size=0.5, random_start=True),   # huge steps: projection holds
                  fgsm(model, x, y, eps, targeted=True)):
        assert x_adv.shape == x.shape and x_adv.dtype == x.dtype and not x_adv.requires_grad
        assert (x_adv - x).abs().max() <= eps + 1e-6
        assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert all(p.grad is None for p in model.parameters())          # attacks leave the weights alone


def test_pgd_one_step_of_size_eps_is_fgsm(lenet_batch):
    model, x, y = lenet_batch
    for eps in (0.05, 0.2):
        assert torch.equal(pgd(model, x, y, eps, steps=1, step_size=eps, random_start=False), fgsm(model, x, y, eps))
        assert torch.equal(pgd(model, x, y, eps, steps=1, step_size=eps, random_start=False, targeted=True),
                           fgsm(model, x, y, eps, targeted=True))
    assert torch.equal(attack(model, x, y, 0.1, "fgsm"), fgsm(model, x, y, 0.1))


def test_fgsm_is_sign_of_the_input_gradient_clamped(lenet_batch):
    model, x, y = lenet_batch
    xr = x.clone().requires_grad_(True)
    F.cross_entropy(model(xr), y).backward()
    assert torch.equal(fgsm(model, x, y, 0.1), (x + 0.1 * xr.grad.sign()).clamp(0, 1))
    assert torch.allclose(input_gradient(model, x, y), xr.grad * len(x), rtol=1e-4, atol=1e-8)   # summed loss


def test_attacks_raise_the_loss_and_the_targeted_one_lowers_the_target_loss():
    model, x, y = _template_task(0)                 # linear in x: the loss is convex in x
    clean = F.cross_entropy(model(x), y, reduction="none")
    f = F.cross_entropy(model(fgsm(model, x, y, 0.03)), y, reduction="none")
    p = F.cross_entropy(model(pgd(model, x, y, 0.03, steps=10, random_start=False)), y, reduction="none")
    # convexity: loss(x + δ) >= loss(x) + ∇loss·δ, and FGSM's δ has ∇loss·δ >= 0 pixel by pixel
    assert (f >= clean - 1e-6).all() and f.mean() > clean.mean() + 0.5
    assert p.mean() >= f.mean() - 1e-4
    target = (y + 1) % 10
    before = F.cross_entropy(model(x), target)
    after = F.cross_entropy(model(fgsm(model, x, target, 0.03, targeted=True)), target)
    assert after < before - 0.5
    # the same holds for a CNN on average
    torch.manual_seed(1)
    cnn = LeNet().eval()
    xi, yi = torch.rand(32, 1, 28, 28), torch.randint(0, 10, (32,))
    assert F.cross_entropy(cnn(pgd(cnn, xi, yi, 0.1)), yi) > F.cross_entropy(cnn(xi), yi)


def test_random_start_is_reproducible_with_a_generator(lenet_batch):
    model, x, y = lenet_batch
    a = pgd(model, x, y, 0.1, steps=2, generator=torch.Generator().manual_seed(3))
    b = pgd(model, x, y, 0.1, steps=2, generator=torch.Generator().manual_seed(3))
    c = pgd(model, x, y, 0.1, steps=2, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_robust_accuracy_and_curves():
    model, x, y = _template_task(0)
    model.train()
    assert robust_accuracy(model, x, y, 0.0) == evaluate(model, x, y)["acc"] == 1.0
    assert model.training                                       # mode restored
    fg = accuracy_vs_eps(model, x, y, [0, 0.01, 0.02, 0.05], "fgsm")
    pg = accuracy_vs_eps(model, x, y, [0, 0.01, 0.02, 0.05], "pgd", steps=10,
                         generator=torch.Generator().manual_seed(0))
    assert fg.shape == (4,) and (fg[1:] <= fg[:-1]).all() and fg[-1] < 0.2
    assert (pg <= fg + 0.02).all()


def test_random_noise_is_the_control_with_the_same_budget(lenet_batch):
    model, x, y = lenet_batch
    g = torch.Generator().manual_seed(0)
    xn = random_noise(x, 0.1, generator=g)
    assert (xn - x).abs().max() <= 0.1 + 1e-6 and xn.min() >= 0 and xn.max() <= 1
    # every pixel sits at a corner of its interval: +eps, -eps or a clamped edge
    assert share_at_box_edge(xn, x, 0.1) == 1.0
    assert torch.equal(random_noise(x, 0.1, generator=torch.Generator().manual_seed(0)), xn)
    assert torch.equal(attack(model, x, y, 0.1, "noise", generator=torch.Generator().manual_seed(0)), xn)
    # it hardly hurts a classifier that an attack with the same budget breaks
    m, xt, yt = _template_task(0)
    noisy = accuracy_vs_eps(m, xt, yt, [0.05], "noise", generator=torch.Generator().manual_seed(0))
    assert noisy[0] > accuracy_vs_eps(m, xt, yt, [0.05], "fgsm")[0] + 0.3
    with pytest.raises(ValueError, match=">= 0"):
        random_noise(x, -0.1)


def test_share_at_box_edge_and_step_seconds(lenet_batch):
    model, x, y = lenet_batch
    assert share_at_box_edge(x, x, 0.0) == 1.0
    xa = (x + 0.05).clamp(0, 1)
    # half a step up is an edge only where the pixel range clamps it (x >= 0.95)
    assert share_at_box_edge(xa, x, 0.1) == pytest.approx((x >= 0.95 - 1e-6).float().mean().item())
    with pytest.raises(ValueError, match="same shape"):
        share_at_box_edge(x[:2], x, 0.1)
    t = step_seconds(model, x, y, 0.1, batch_size=8, repeats=2)
    assert set(t) == {"plain", "adversarial"} and t["plain"] > 0 and t["adversarial"] > 0
    assert all(p.grad is None for p in model.parameters())      # the model itself is not trained
    with pytest.raises(ValueError, match="repeats"):
        step_seconds(model, x, y, 0.1, repeats=0)


def test_linf_project_is_exact_on_the_box_edges():
    x = torch.tensor([0.5, 0.5, 0.05, 0.98, 0.3])
    xa = torch.tensor([0.9, 0.45, -0.2, 1.5, 0.3 + 0.1])
    out = linf_project(xa, x, 0.1)
    assert torch.equal(out, torch.tensor([0.5 + 0.1, 0.45, 0.0, 1.0, 0.3 + 0.1]))
    unclamped = torch.tensor([0.6, 0.45, 0.05 - 0.1, 0.98 + 0.1, 0.3 + 0.1])
    assert torch.equal(linf_project(xa, x, 0.1, bounds=None), unclamped)


def test_adversarial_batches_train_with_fit():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(96, 1, 28, 28, generator=g), torch.randint(0, 10, (96,), generator=g)
    model = LeNet()
    batches = AdversarialBatches(model, x, y, 0.1, batch_size=32, generator=g)
    assert batches.steps_per_epoch == 3 and batches.step_size == pytest.approx(0.125)
    xb, yb = batches(1)
    assert xb.shape == (32, 1, 28, 28) and yb.shape == (32,)
    # each adversarial image is within eps of some training image with the same label
    dist = (xb[:, None] - x[None]).abs().flatten(2).amax(2)       # (32, 96)
    nearest = dist.argmin(1)
    assert (dist.min(1).values <= 0.1 + 1e-6).all() and torch.equal(y[nearest], yb)
    h = fit(model, batches, torch.optim.Adam(model.parameters(), 1e-3), steps=4, log_every=2)
    assert len(h.train_loss) == 2
    assert AdversarialBatches(model, x, y, 0.1, steps=4).step_size == pytest.approx(2.5 * 0.1 / 4)


def test_explorer_and_plot():
    model, x, y = _template_task(0, n=8)
    ex = AttackExplorer({"a": model, "b": model}, x, y, eps=0.05, index=1)
    res = ex.draw()
    assert set(res) == {"a", "b"} and abs(res["a"]["delta"]).max() <= 0.05 + 1e-6
    assert ex.draw(eps=0.0)["a"]["delta"].max() == 0
    html = ex.player("eps", [0.0, 0.05])
    assert "<script" in html.data
    assert ex.show().live is not None and len(ex.axes) == 2     # one row per model
    ex.widgets["eps"].value = 0.0
    assert ex.settings["eps"] == 0.0
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots()
    plot_accuracy_vs_eps(ax, [0, 0.1], {"standard, PGD": [1.0, 0.5], "standard, FGSM": [1.0, 0.7]}, marker_eps=0.1)
    assert len(ax.lines) == 3
    ax.clear()
    plot_accuracy_vs_eps(ax, [0, 0.1], {"standard, random ±ε noise": [1.0, 0.9]}, references={"constant": 0.1})
    assert len(ax.lines) == 2 and ax.lines[1].get_ydata()[0] == 0.1
    plt.close(fig)


def test_errors_are_helpful(lenet_batch):
    model, x, y = lenet_batch
    with pytest.raises(TypeError, match="floating-point"):
        fgsm(model, (x * 255).to(torch.uint8), y, 0.1)
    with pytest.raises(ValueError, match=r"shape \(16,\)"):
        fgsm(model, x, y[:3], 0.1)
    with pytest.raises(ValueError, match="class-index"):
        fgsm(model, x, y.float(), 0.1)
    with pytest.raises(ValueError, match=">= 0"):
        pgd(model, x, y, -0.1)
    with pytest.raises(ValueError, match="normalisation inside the model"):
        fgsm(model, (x - 0.13) / 0.31, y, 0.1)
    with pytest.raises(ValueError, match="low < high"):
        fgsm(model, x, y, 0.1, bounds=(1, 0))
    with pytest.raises(ValueError, match="steps"):
        pgd(model, x, y, 0.1, steps=0)
    with pytest.raises(ValueError, match="step_size"):
        pgd(model, x, y, 0.1, step_size=-1.0)
    with pytest.raises(ValueError, match="unknown attack"):
        attack(model, x, y, 0.1, "cw")
    with pytest.raises(ValueError, match="same shape"):
        linf_project(x[:2], x, 0.1)
    with pytest.raises(ValueError, match="batch"):
        fgsm(model, x[0, 0, 0], y[:1], 0.1)
    with pytest.raises(ValueError, match="at least one model"):
        AttackExplorer({}, x, y)
    # bounds=None lifts the range check (for inputs that are not pixels)
    assert fgsm(model, x * 3, y, 0.1, bounds=None).max() > 1


def test_checks_accept_solutions_and_reject_wrong_ones():
    def acc_fgsm(model, x, y, eps):
        xr = x.clone().requires_grad_(True)
        F.cross_entropy(model(xr), y).backward()
        xa = (x + eps * xr.grad.sign()).clamp(0, 1)
        return (model(xa).argmax(1) == y).float().mean().item()

    def targeted(model, x, t, eps):
        xr = x.clone().requires_grad_(True)
        F.cross_entropy(model(xr), t).backward()
        return (x - eps * xr.grad.sign()).clamp(0, 1)

    with raising():
        check.fgsm_step(lambda x, g, eps: (x + eps * g.sign()).clamp(0, 1))
        check.project_linf(lambda xa, x, eps: torch.min(torch.max(xa, x - eps), x + eps).clamp(0, 1))
        check.linear_worst_case(lambda w, eps: eps * w.abs().sum())
        check.accuracy_under_fgsm(acc_fgsm)
        check.targeted_fgsm(targeted)
        for name, wrong in [("fgsm_step", lambda x, g, eps: x + eps * g.sign()),
                            ("fgsm_step", lambda x, g, eps: (x + eps * g).clamp(0, 1)),
                            ("project_linf", lambda xa, x, eps: xa.clamp(0, 1)),
                            ("project_linf", lambda xa, x, eps: torch.min(torch.max(xa, x - eps), x + eps)),
                            ("linear_worst_case", lambda w, eps: eps * w.abs().max()),
                            ("accuracy_under_fgsm", lambda m, x, y, eps: (m(x).argmax(1) == y).float().mean().item()),
                            ("targeted_fgsm", lambda m, x, t, eps: fgsm(m, x, t, eps))]:
            with pytest.raises(check.CheckFailed):
                getattr(check, name)(wrong)
