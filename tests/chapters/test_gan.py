"""The gan chapter: book.lab.gan's losses against PyTorch, the Fréchet distance against closed forms, the
ring, coverage, baselines and judge, short training runs, the views, and the exercise checks."""
import math

import pytest
import torch
import torch.nn.functional as F

from book.lab import gan


def test_losses_match_binary_cross_entropy_and_their_gradients():
    g = torch.Generator().manual_seed(0)
    lr_, lf = torch.randn(16, generator=g) * 4, torch.randn(16, generator=g) * 4
    bce = F.binary_cross_entropy_with_logits
    assert torch.allclose(gan.discriminator_loss(lr_, lf), bce(lr_, torch.ones(16)) + bce(lf, torch.zeros(16)))
    assert torch.allclose(gan.generator_loss(lf), bce(lf, torch.ones(16)))
    assert torch.allclose(gan.generator_loss(lf, "saturating"), -bce(lf, torch.zeros(16)))
    x = lf.double().requires_grad_()
    d = torch.sigmoid(x.detach())
    grad, = torch.autograd.grad(gan.generator_loss(x, "saturating") * 16, x)
    assert torch.allclose(grad, -d)
    grad, = torch.autograd.grad(gan.generator_loss(x) * 16, x)
    assert torch.allclose(grad, -(1 - d))
    assert torch.isfinite(gan.discriminator_loss(torch.tensor([1e4]), torch.tensor([-1e4])))


def test_losses_refuse_bad_input():
    with pytest.raises(ValueError, match="kind"):
        gan.generator_loss(torch.zeros(3), "wasserstein")
    with pytest.raises(ValueError, match="squeeze"):
        gan.discriminator_loss(torch.zeros(3, 1), torch.zeros(3))


def test_frechet_matches_closed_forms():
    assert gan.frechet_gaussians(torch.tensor([1.0]), torch.tensor([[9.0]]), torch.tensor([0.0]),
                                 torch.tensor([[1.0]])) == pytest.approx(1 + 4)
    # commuting (diagonal) covariances: sum of (sqrt a - sqrt b)^2
    a, b = torch.tensor([1.0, 4.0, 0.25]), torch.tensor([4.0, 1.0, 0.25])
    fd = gan.frechet_gaussians(torch.zeros(3), torch.diag(a), torch.ones(3), torch.diag(b))
    assert fd == pytest.approx(3 + float((a.sqrt() - b.sqrt()).pow(2).sum()))
    g = torch.Generator().manual_seed(1)
    x = torch.randn(300, 5, generator=g, dtype=torch.float64)
    assert gan.frechet_distance(x, x) == pytest.approx(0, abs=1e-8)
    # tr sqrt(S_a^1/2 S_b S_a^1/2) = sum of sqrt of the eigenvalues of S_a S_b
    y = torch.randn(300, 5, generator=g, dtype=torch.float64) @ torch.randn(5, 5, generator=g, dtype=torch.float64)
    sa, sb = torch.cov(x.T), torch.cov(y.T)
    ev = torch.linalg.eigvals(sa @ sb).real.clamp_min(0).sqrt().sum()
    exact = (x.mean(0) - y.mean(0)).pow(2).sum() + torch.trace(sa + sb) - 2 * ev
    assert gan.frechet_distance(x, y) == pytest.approx(float(exact), rel=1e-6)
    with pytest.raises(ValueError):
        gan.frechet_distance(x, y[:, :3])


def test_ring_and_coverage():
    c = gan.ring_centers(8, 2.0)
    assert torch.allclose(c.norm(dim=1), torch.full((8,), 2.0))
    x = gan.ring_sampler(std=0.02)(4000, torch.Generator().manual_seed(0))
    cov = gan.mode_coverage(x, c, 0.02)
    assert cov["modes"] == 8 and cov["quality"] > 0.98
    one = c[[0] * 100] + 0.001
    assert gan.mode_coverage(one, c, 0.02)["modes"] == 1
    assert gan.mode_coverage(torch.zeros(50, 2), c, 0.02)["modes"] == 0


def test_minibatch_std_and_discriminator_shapes():
    d = gan.MLPDiscriminator(2, 16, minibatch_std=True)
    assert d(torch.randn(5, 2)).shape == (5,)
    h = gan.MinibatchStd()(torch.ones(4, 3))
    assert h.shape == (4, 4) and torch.all(h[:, -1] == 0)      # identical rows: no spread
    with pytest.raises(ValueError, match="batch"):
        gan.MinibatchStd()(torch.ones(1, 3))


def test_input_std_discriminator_sees_the_batch_spread():
    d = gan.MLPDiscriminator(2, 16, input_std=True)
    assert d(torch.randn(5, 2)).shape == (5,)
    assert d.body[2].in_features == 3                      # 2 coordinates + the batch's spread
    # the spread enters: the same sample scores differently in a spread-out and in a collapsed batch
    x = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    spread = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    assert not torch.isclose(d(x)[0], d(spread)[0])


def test_image_sampler_draws_flat_training_images():
    imgs = torch.arange(5 * 4, dtype=torch.float32).view(5, 1, 2, 2)
    real = gan.image_sampler(imgs)
    x = real(7, torch.Generator().manual_seed(0))
    assert x.shape == (7, 4)
    rows = {tuple(r.tolist()) for r in imgs.flatten(1)}
    assert all(tuple(r.tolist()) in rows for r in x)
    assert torch.equal(x, real(7, torch.Generator().manual_seed(0)))     # the generator decides
    with pytest.raises(ValueError, match="batch of images"):
        gan.image_sampler(torch.zeros(3))


def test_digit_monitor_draws_a_sample_grid_and_replays():
    import matplotlib
    matplotlib.use("Agg")
    from book.lab.generative import draw_samples, mosaic
    torch.manual_seed(0)
    G, D = gan.mlp_generator(4, 16, 784, depth=1, out_act="sigmoid"), gan.MLPDiscriminator(784, 16, depth=1)
    x = torch.rand(30, 1, 28, 28)
    mon = gan.DigitMonitor("digits", rows=2)
    with pytest.raises(RuntimeError, match="on_log"):
        mon.replay()
    hist = gan.train_gan(G, D, gan.image_sampler(x), latent=4, steps=4, batch_size=8, log_every=2, n_show=6,
                         on_log=mon.update)
    assert hist.samples[-1].shape == (6, 784) and mon.history is hist
    img = mon.ax_pts.images[0].get_array()
    assert img.shape == (2 * 28, 3 * 28)                       # 6 samples in 2 rows of 28 x 28
    assert torch.allclose(torch.as_tensor(img.data), mosaic(hist.samples[-1].view(6, 28, 28), rows=2))
    assert "<script" in mon.replay().data
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots()
    draw_samples(ax, torch.rand(4, 784), rows=2, title="t")   # flat rows become 28 x 28 images
    assert ax.images[0].get_array().shape == (56, 56) and ax.get_title() == "t"
    with pytest.raises(ValueError, match="rows"):
        draw_samples(ax, torch.rand(5, 784), rows=2)
    plt.close(fig)


def test_train_gan_records_and_saturation_gradients():
    torch.manual_seed(0)
    G, D = gan.mlp_generator(4, 16, 2), gan.MLPDiscriminator(2, 16)
    seen = []
    hist = gan.train_gan(G, D, gan.ring_sampler(), latent=4, steps=6, batch_size=8, log_every=3, n_show=5,
                         on_log=lambda g, h: seen.append(len(h.step)))
    assert hist.step == [3, 6] and seen == [1, 2] and hist.samples[-1].shape == (5, 2)
    mon = gan.RingMonitor(gan.ring_centers())
    with pytest.raises(RuntimeError, match="on_log"):
        mon.replay()
    mon.history = hist
    assert "<script" in mon.replay().data
    with pytest.raises(ValueError, match="loss"):
        gan.train_gan(G, D, gan.ring_sampler(), latent=4, steps=1, loss="hinge")
    torch.manual_seed(1)
    r = gan.saturation_gradients(gan.mlp_generator(16, 128, 2), gan.MLPDiscriminator(2, 128), gan.ring_sampler(),
                                 latent=16, d_steps=100, batch_size=128)   # the chapter's setting
    assert r["d_fake"] < 0.05 and r["non_saturating"] > 20 * r["saturating"]


def test_latent_walk_and_baselines_and_judge():
    torch.manual_seed(0)
    G = gan.mlp_generator(3, 8, 2)
    walk = gan.LatentWalk(G, torch.zeros(3), torch.ones(3), gan.ring_centers(), 0.02, n_path=20)
    assert walk.draw(t=0.5) > 0 and "<script" in walk.player("t", [0.0, 1.0]).data
    with pytest.raises(ValueError, match="t must"):
        walk.draw(t=2.0)
    g = torch.Generator().manual_seed(0)
    xtr, xte = torch.rand(60, 1, 28, 28, generator=g), torch.rand(40, 1, 28, 28, generator=g)
    sets = gan.baseline_sets(xtr, xte, 20, torch.Generator().manual_seed(1))
    assert set(sets) == {"reference", "held-out real", "training copies", "pixel Gaussian", "uniform noise"}
    assert all(v.shape == (20, 1, 28, 28) for v in sets.values())
    with pytest.raises(ValueError, match="disjoint"):
        gan.baseline_sets(xtr, xte, 30, g)
    from book.nn.models import LeNet
    clf = LeNet()
    ref = gan.classifier_features(clf, sets["reference"])
    assert ref.shape == (20, 84)
    s = gan.judge(clf, sets["training copies"], ref, xtr)
    assert s["copy"] == 0 and 0 <= s["entropy"] <= math.log(10) + 1e-9


def test_checks_accept_good_and_reject_bad(check_verdict):
    # by D itself; the typical wrong answer is the chapter's derivative by the logit
    check_verdict("generator_grads", lambda d: (-1 / (1 - d), -1 / d), lambda d: (-d, -(1 - d)))
    check_verdict("frechet_isotropic",
                  lambda ma, sa, mb, sb: float(((ma - mb) ** 2).sum()) + len(ma) * (sa - sb) ** 2,
                  lambda ma, sa, mb, sb: float(((ma - mb) ** 2).sum()) + (sa - sb) ** 2)  # tr I = 1?

    def good_modes(x, c, std):
        dist, near = torch.cdist(x, c).min(1)
        share = torch.bincount(near[dist < 3 * std], minlength=len(c)) / len(x)
        return int((share >= 0.01).sum())

    def bad_modes(x, c, std):                       # counts every mode that is nearest to any sample
        return int(torch.cdist(x, c).argmin(1).unique().numel())
    check_verdict("modes_covered", good_modes, bad_modes)

    def good_h(p):
        s = torch.bincount(p.argmax(1), minlength=p.shape[1]) / len(p)
        s = s[s > 0]
        return float(-(s * s.log()).sum())

    def bad_h(p):                                   # mean entropy of the rows instead
        return float(-(p * p.clamp_min(1e-12).log()).sum(1).mean())
    check_verdict("histogram_entropy", good_h, bad_h)
