"""book.lab.generative: the VAE's formulas against torch.distributions, the model and its errors, sample judging,
the GAN identities, text-diversity measures, the widgets, and the chapter's self-checks."""
import math

import matplotlib
import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Normal, kl_divergence

import book.check.generative as gcheck
from book.check import raising
from book.data.text import CharVocab
from book.lab.generative import (
    VAE,
    LatentExplorer,
    SampleMonitor,
    bigram_sample_texts,
    classifier_probs,
    distinct_n,
    entropy_at_temperature,
    gan_value,
    gaussian_kl,
    inception_score,
    nearest_code_agreement,
    interpolate,
    js_divergence,
    latent_grid,
    mosaic,
    negative_elbo,
    ngram_counts,
    optimal_discriminator,
    reconstruction_nll,
    reparameterize,
    sample_report,
    sample_texts,
    train_vae,
    vae_test_loss,
    vocabulary,
    word_share,
)
from book.nn.gpt import GPT, GPTConfig

matplotlib.use("Agg")


# --------------------------------------------------------------------------- formulas
def test_gaussian_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mu, logvar = (torch.randn(7, 3, generator=g, dtype=torch.float64),
                  torch.randn(7, 3, generator=g, dtype=torch.float64))
    ref = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(torch.zeros_like(mu), torch.ones_like(mu))).sum(-1)
    assert torch.allclose(gaussian_kl(mu, logvar), ref)
    assert torch.equal(gaussian_kl(torch.zeros(2, 4), torch.zeros(2, 4)), torch.zeros(2))
    assert (gaussian_kl(mu, logvar) >= 0).all()


def test_reparameterize_is_mu_plus_sigma_eps_and_differentiable():
    mu = torch.tensor([[1.0, -1.0]], requires_grad=True)
    logvar = torch.tensor([[math.log(4.0), 0.0]], requires_grad=True)
    eps = torch.tensor([[0.5, 2.0]])
    z = reparameterize(mu, logvar, eps)
    assert torch.allclose(z, torch.tensor([[2.0, 1.0]]))
    z.sum().backward()
    assert (torch.allclose(mu.grad, torch.ones(1, 2))
            and torch.allclose(logvar.grad, 0.5 * torch.tensor([[2.0, 1.0]]) * eps))
    # with a generator: reproducible, and the sample moments are right
    a = reparameterize(torch.full((20000, 1), 3.0), torch.full((20000, 1), math.log(0.25)),
                       generator=torch.Generator().manual_seed(1))
    b = reparameterize(torch.full((20000, 1), 3.0), torch.full((20000, 1), math.log(0.25)),
                       generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and abs(a.mean() - 3) < 0.02 and abs(a.std() - 0.5) < 0.02


def test_formula_errors_are_helpful():
    with pytest.raises(ValueError, match="same shape"):
        gaussian_kl(torch.zeros(2, 3), torch.zeros(2, 2))
    with pytest.raises(TypeError, match="floating-point"):
        reparameterize(torch.zeros(2, dtype=torch.long), torch.zeros(2, dtype=torch.long))
    with pytest.raises(TypeError, match="tensors"):
        gaussian_kl([0.0], [0.0])
    with pytest.raises(ValueError, match="eps has shape"):
        reparameterize(torch.zeros(2, 3), torch.zeros(2, 3), eps=torch.zeros(3))
    with pytest.raises(ValueError, match=r"\(B, 1, 28, 28\)"):
        reconstruction_nll(torch.zeros(2, 784), torch.zeros(2, 1, 28, 28))


def test_negative_elbo_is_bce_sum_plus_kl():
    g = torch.Generator().manual_seed(2)
    logits, x = torch.randn(4, 1, 28, 28, generator=g), torch.rand(4, 1, 28, 28, generator=g)
    mu, logvar = torch.randn(4, 2, generator=g), torch.randn(4, 2, generator=g)
    parts = negative_elbo(logits, x, mu, logvar)
    bce = F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / 4
    assert torch.allclose(parts["recon"], bce) and torch.allclose(parts["loss"], parts["recon"] + parts["kl"])
    assert torch.allclose(negative_elbo(logits, x, mu, logvar, beta=0.0)["loss"], bce)


# --------------------------------------------------------------------------- the model
def test_vae_shapes_conditioning_and_errors():
    torch.manual_seed(0)
    m = VAE(latent=3, hidden=16)
    x = torch.rand(5, 1, 28, 28)
    logits, mu, logvar = m(x)
    assert logits.shape == x.shape and mu.shape == logvar.shape == (5, 3)
    s = m.sample(4, generator=torch.Generator().manual_seed(0))
    assert s.shape == (4, 1, 28, 28) and 0 <= s.min() and s.max() <= 1
    c = VAE(latent=2, hidden=16, n_classes=10)
    assert c(x, torch.arange(5))[0].shape == x.shape
    assert c.sample(3, 7).shape == (3, 1, 28, 28)                # one label for all
    z = torch.zeros(2, 2)
    assert not torch.allclose(c.sample(2, torch.tensor([0, 0]), z=z), c.sample(2, torch.tensor([1, 1]), z=z))
    with pytest.raises(ValueError, match="conditional"):
        c(x)
    with pytest.raises(ValueError, match="unconditional"):
        m(x, torch.arange(5))
    with pytest.raises(ValueError, match=r"0\.\.9"):
        c(x, torch.full((5,), 10))
    with pytest.raises(ValueError, match="long tensor of shape"):
        c(x, torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\(B, 1, 28, 28\)"):
        m(torch.rand(5, 784))
    with pytest.raises(ValueError, match=r"\(B, 3\)"):
        m.decode(torch.zeros(2, 2))
    with pytest.raises(ValueError, match="latent >= 1"):
        VAE(latent=0)


def _digits(n=256, seed=0):
    """Two synthetic 'digits' (a bar and a ring) with noise: enough for a VAE to learn something in a second."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    bar = ((xx - 14).abs() < 2).float()
    ring = (((xx - 14) ** 2 + (yy - 14) ** 2).sqrt().sub(8).abs() < 2).float()
    y = torch.randint(0, 2, (n,), generator=g)
    x = torch.where(y.view(-1, 1, 1) == 0, bar, ring).unsqueeze(1)
    x = (x + 0.1 * torch.rand(n, 1, 28, 28, generator=g)).clamp(0, 1)
    return x, y


def test_train_vae_learns_and_records():
    x, y = _digits()
    torch.manual_seed(0)
    m = VAE(latent=2, hidden=32)
    before = vae_test_loss(m, x)["loss"]
    seen = []
    h = train_vae(m, x, epochs=3, lr=3e-3, batch_size=64, test=(x,), n_show=4,
                  on_epoch=lambda model, hist: seen.append(len(hist.recon)))
    assert seen == [1, 2, 3] and len(h.samples) == 3 and h.samples[0].shape == (4, 28, 28)
    assert h.test_loss[-1] < 0.85 * before and h.recon[-1] < h.recon[0]
    c = VAE(latent=2, hidden=32, n_classes=2)
    h = train_vae(c, x, y, epochs=2, lr=3e-3, n_show=4)
    assert len(h.kl) == 2 and not c.training
    with pytest.raises(ValueError, match="needs the labels"):
        train_vae(c, x, epochs=1)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        train_vae(m, x * 255, epochs=1)
    with pytest.raises(ValueError, match=r"\(N, 1, 28, 28\)"):
        train_vae(m, x.flatten(1), epochs=1)


def test_pictures_and_explorers():
    torch.manual_seed(0)
    m = VAE(latent=2, hidden=16)
    assert mosaic(torch.zeros(6, 1, 28, 28), rows=2).shape == (56, 84)
    with pytest.raises(ValueError, match="rows evenly"):
        mosaic(torch.zeros(5, 28, 28), rows=2)
    assert latent_grid(m, n=4).shape == (112, 112)
    with pytest.raises(ValueError, match="2-D"):
        latent_grid(VAE(latent=3, hidden=8))
    x, y = _digits(32)
    assert interpolate(m, x[0], x[1], steps=5).shape == (5, 1, 28, 28)
    c = VAE(latent=2, hidden=16, n_classes=2)
    assert interpolate(c, x[0], x[1], steps=4, y0=0, y1=1).shape == (4, 1, 28, 28)
    from book.nn.models import LeNet
    clf = LeNet()
    for model in (m, c):
        ex = LatentExplorer(model, x, y, classifier=clf, n_points=32)
        assert ex.draw(z1=0.5, z2=-0.5).shape[0] == (2 if model.n_classes else 1)
        assert "<script" in ex.player(("z1", "z2"), [(0, 0), (1, 1)]).data
        assert ex.show().settings == {"z1": 0.0, "z2": 0.0}
    with pytest.raises(ValueError, match="2-D latent"):
        LatentExplorer(VAE(latent=3, hidden=8), x, y)
    mon = SampleMonitor()
    with pytest.raises(RuntimeError, match="nothing to replay"):
        mon.replay()
    h = train_vae(m, x, epochs=2, n_show=4, on_epoch=mon.update)
    assert mon.history is h and "<script" in mon.replay().data


# --------------------------------------------------------------------------- judging samples
def test_sample_report_and_inception_score():
    eye = torch.eye(10)
    assert inception_score(eye) == pytest.approx(10.0)
    assert inception_score(eye[[3] * 10]) == pytest.approx(1.0)
    assert inception_score(torch.full((4, 10), 0.1)) == pytest.approx(1.0)
    r = sample_report(eye[[0, 1, 1, 2]], requested=torch.tensor([0, 1, 2, 2]))
    assert (r["confident"] == 1.0 and r["agree"] == 0.75
            and torch.allclose(r["class_share"][:3], torch.tensor([.25, .5, .25])))
    with pytest.raises(ValueError, match="rows sum to 1"):
        inception_score(torch.randn(4, 10))
    with pytest.raises(ValueError, match=r"\(N, classes\)"):
        sample_report(torch.ones(10))
    from book.nn.models import LeNet
    p = classifier_probs(LeNet(), torch.rand(7, 1, 28, 28), batch_size=3)
    assert p.shape == (7, 10) and torch.allclose(p.sum(1), torch.ones(7))


def test_gan_identities():
    g = torch.Generator().manual_seed(3)
    pd, pm = torch.rand(6, generator=g, dtype=torch.float64).softmax(0), torch.rand(6, generator=g,
                                                                                   dtype=torch.float64).softmax(0)
    d_star = optimal_discriminator(pd, pm)
    best = gan_value(pd, pm, d_star)
    assert torch.allclose(best, -math.log(4) + 2 * js_divergence(pd, pm))
    for _ in range(20):     # no other discriminator does better
        d = torch.rand(6, generator=g, dtype=torch.float64).clamp(0.01, 0.99)
        assert gan_value(pd, pm, d) <= best + 1e-12
    assert torch.allclose(optimal_discriminator(pd, pd), torch.full((6,), 0.5, dtype=torch.float64))
    assert float(js_divergence(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]))) == pytest.approx(math.log(2))


# --------------------------------------------------------------------------- text
def test_text_measures():
    assert distinct_n("abcabc", 3) == 0.75 and distinct_n("aaaa", 1) == 0.25
    assert ngram_counts("abab", 2) == {"ab": 2, "ba": 1}
    with pytest.raises(ValueError, match="too short"):
        distinct_n("abc", 4)
    with pytest.raises(TypeError, match="decode"):
        distinct_n([1, 2, 3], 2)
    with pytest.raises(ValueError, match="n must be"):
        distinct_n("abc", 0)
    known = vocabulary("To be, or not to be: that is the question.")
    assert known == {"to", "be", "or", "not", "that", "is", "the", "question"}
    assert word_share("To be or xyzzy!", known) == 0.75 and word_share("  ", known) == 0.0
    logits = torch.randn(5, 65, generator=torch.Generator().manual_seed(0))
    ents = [entropy_at_temperature(logits, t) for t in (0.1, 0.5, 1.0, 2.0, 100.0)]
    assert all((a <= b + 1e-12).all() for a, b in zip(ents, ents[1:]))
    assert torch.allclose(ents[-1], torch.full((5,), math.log(65), dtype=torch.float64), atol=0.01)
    with pytest.raises(ValueError, match="positive"):
        entropy_at_temperature(logits, 0.0)


def test_nearest_code_agreement():
    torch.manual_seed(0)
    vae, cvae = VAE(latent=2, hidden=16), VAE(latent=2, hidden=16, n_classes=10)
    x = torch.rand(40, 1, 28, 28)
    y = torch.arange(40) % 10
    # the encoder's codes are a function of the image: copies of 4 prototypes, labelled by prototype
    protos = torch.rand(4, 1, 28, 28)
    xs, ys = protos.repeat(10, 1, 1, 1) + 0.001 * x, torch.arange(4).repeat(10)
    assert nearest_code_agreement(vae, xs, ys) == 1.0
    assert 0.0 <= nearest_code_agreement(cvae, x, y) <= 1.0 and vae.training     # mode kept
    with pytest.raises(ValueError, match="at least 2"):
        nearest_code_agreement(vae, x[:1], y[:1])
    with pytest.raises(ValueError, match="one label each"):
        nearest_code_agreement(vae, x, y[:3])


def test_bigram_baseline_samples_follow_the_corpus():
    outs = bigram_sample_texts("abababab", "a", 6, n_samples=3, seed=0)
    assert outs == ["bababa"] * 3                                   # after a always b, after b always a
    mixed = bigram_sample_texts("to be or not to be " * 50, "t", 200, n_samples=4, seed=1)
    assert len(mixed) == 4 and all(len(o) == 200 for o in mixed)
    assert mixed == bigram_sample_texts("to be or not to be " * 50, "t", 200, n_samples=4, seed=1)
    pairs = {a + b for o in mixed for a, b in zip("t" + o, o)}
    assert pairs <= {("to be or not to be " * 2)[i:i + 2] for i in range(37)}  # only pairs it has seen
    assert bigram_sample_texts("abc", "a", 0, n_samples=2) == ["", ""]
    with pytest.raises(ValueError, match="never occur"):
        bigram_sample_texts("abc", "z", 5)
    with pytest.raises(ValueError, match="non-empty"):
        bigram_sample_texts("", "a", 5)
    with pytest.raises(ValueError, match="n_samples"):
        bigram_sample_texts("abc", "a", 5, n_samples=0)


def test_sample_texts_batch_and_reproducible():
    vocab = CharVocab("abcdefgh \n")
    torch.manual_seed(0)
    model = GPT(GPTConfig(len(vocab), 16, 1, 2, 16))
    a = sample_texts(model, vocab, "ab", 10, temperature=1.0, n_samples=3, seed=4)
    b = sample_texts(model, vocab, "ab", 10, temperature=1.0, n_samples=3, seed=4)
    assert a == b and len(a) == 3 and all(len(s) == 10 for s in a)


# --------------------------------------------------------------------------- the chapter's checks
def _kl(mu, logvar):
    return 0.5 * (logvar.exp() + mu ** 2 - 1 - logvar).sum(-1)


def _elbo(logits, x, mu, logvar):
    rec = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
    return (rec + _kl(mu, logvar)).mean()


def _is(p):
    m = p.mean(0, keepdim=True).clamp_min(1e-12)
    return torch.exp((p * (p.clamp_min(1e-12).log() - m.log())).sum(1).mean())


def _gan(pd, pm):
    d = pd / (pd + pm)
    keep_d, keep_m = pd > 0, pm > 0
    return (pd[keep_d] * d[keep_d].log()).sum() + (pm[keep_m] * (1 - d[keep_m]).log()).sum()


RIGHT = {
    "reparam_sample": lambda mu, lv, eps: mu + torch.exp(0.5 * lv) * eps,
    "kl_to_standard_normal": _kl,
    "elbo_loss": _elbo,
    "distinct_ngrams": lambda t, n: len({t[i:i + n] for i in range(len(t) - n + 1)}) / (len(t) - n + 1),
    "classifier_inception_score": _is,
    "gan_optimum": _gan,
}
WRONG = {
    "reparam_sample": [lambda mu, lv, eps: mu + torch.exp(lv) * eps, lambda mu, lv, eps: mu + lv * eps],
    "kl_to_standard_normal": [lambda mu, lv: (lv.exp() + mu ** 2 - 1 - lv).sum(-1),
                              lambda mu, lv: 0.5 * (lv.exp() + mu ** 2 - 1 - lv).mean(-1)],
    "elbo_loss": [lambda lg, x, mu, lv: F.binary_cross_entropy_with_logits(lg, x) + _kl(mu, lv).mean(),
                  lambda lg, x, mu, lv: F.binary_cross_entropy_with_logits(lg, x, reduction="none").sum(1).mean()],
    "distinct_ngrams": [lambda t, n: len({t[i:i + n] for i in range(len(t) - n + 1)}) / len(t),
                        lambda t, n: len(set(t.split())) / len(t.split())],
    "classifier_inception_score": [lambda p: torch.exp(-(p * p.clamp_min(1e-12).log()).sum(1).mean()),
                                   lambda p: (p * (p.clamp_min(1e-12).log() - p.mean(0).log())).sum(1).mean()],
    "gan_optimum": [lambda pd, pm: 2 * js_divergence(pd, pm), lambda pd, pm: -math.log(4) + js_divergence(pd, pm)],
}


@pytest.mark.parametrize("name", sorted(RIGHT))
def test_checks_accept_the_solution_and_reject_mistakes(name):
    assert name in gcheck.__all__
    with raising():
        getattr(gcheck, name)(RIGHT[name])
        for wrong in WRONG[name]:
            with pytest.raises(AssertionError):
                getattr(gcheck, name)(wrong)


def test_every_check_is_tested():
    assert set(gcheck.__all__) == set(RIGHT)


def test_unattempted_check_raises_in_strict_mode():
    def stub(*args):
        raise NotImplementedError
    with raising():
        with pytest.raises(AssertionError):
            gcheck.elbo_loss(stub)
