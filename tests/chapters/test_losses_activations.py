import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from book.data import make_2d
from book.lab.attention_math import SoftmaxExplorer
from book.lab.losses_activations import ActivationExplorer, ActivationStats, LossExplorer
from book.nn import activations as A
from book.nn import losses as L
from book.train import fit


def test_losses_match_torch_including_extremes():
    g = torch.Generator().manual_seed(0)
    z = torch.cat([torch.randn(50, generator=g) * 5, torch.tensor([100.0, -100.0])])
    y = (torch.rand(52, generator=g) > 0.5).float()
    assert torch.allclose(L.bce_with_logits(z, y), F.binary_cross_entropy_with_logits(z, y))
    assert torch.isfinite(L.bce_with_logits(z, y))
    logits, t = torch.randn(30, 7, generator=g) * 50, torch.randint(0, 7, (30,), generator=g)
    assert torch.allclose(L.cross_entropy(logits, t), F.cross_entropy(logits, t), atol=1e-5)
    assert torch.allclose(L.logsumexp(logits), torch.logsumexp(logits, -1))
    assert torch.allclose(L.softmax(logits), torch.softmax(logits, -1), atol=1e-6)
    p = torch.rand(20, generator=g)
    assert torch.allclose(L.mse(p, y[:20]), F.mse_loss(p, y[:20]))
    assert torch.allclose(L.bce(p, y[:20]), F.binary_cross_entropy(p, y[:20]), atol=1e-6)
    ninf = torch.tensor([[float("-inf"), 0.0]])
    assert torch.allclose(L.logsumexp(ninf), torch.tensor([0.0]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_probability_forms_clamp_the_log_like_torch(dtype):
    """bce and cross_entropy_from_probs clamp each log at -100 in every dtype, as F.binary_cross_entropy does:
    a certain wrong answer costs 100 (an eps clamp of p, 1 - 1e-12, rounds to 1 in float32 and gave inf)."""
    g = torch.Generator().manual_seed(1)
    edges = torch.tensor([0.0, 1.0, 1e-30, 1 - 2 ** -24], dtype=dtype)
    p = torch.cat([torch.rand(200, generator=g, dtype=dtype), edges])
    for y in (torch.zeros_like(p), torch.ones_like(p), torch.rand(len(p), generator=g, dtype=dtype)):
        assert torch.allclose(L.bce(p, y), F.binary_cross_entropy(p, y), rtol=1e-6, atol=1e-6)
    certain = torch.sigmoid(torch.tensor([30.0], dtype=dtype))            # rounds to 1.0 in float32
    zero = torch.zeros(1, dtype=dtype)
    wrong = L.bce(certain, zero)
    assert torch.isfinite(wrong) and wrong == pytest.approx(F.binary_cross_entropy(certain, zero).item())
    if dtype == torch.float32:
        assert certain.item() == 1.0 and wrong.item() == 100.0
    probs = torch.cat([torch.softmax(torch.randn(5, 4, generator=g, dtype=dtype) * 30, 1),
                       torch.tensor([[0.0, 1.0, 0.0, 0.0]], dtype=dtype)])
    t = torch.tensor([0, 1, 2, 3, 0, 0])
    assert torch.allclose(L.cross_entropy_from_probs(probs, t), F.nll_loss(probs.log().clamp_min(-100), t))
    assert L.cross_entropy_from_probs(probs[-1:], t[-1:]).item() == 100.0
    # gradients: PyTorch's inside (0, 1); finite (never NaN) at exactly 0 and 1, where the clamp binds
    inner = (torch.rand(50, generator=g, dtype=dtype) * 0.98 + 0.01).requires_grad_()
    ref = inner.detach().clone().requires_grad_()
    y = (torch.rand(50, generator=g, dtype=dtype) > 0.5).to(dtype)
    L.bce(inner, y).backward()
    F.binary_cross_entropy(ref, y).backward()
    assert torch.allclose(inner.grad, ref.grad, rtol=1e-5)
    edges = torch.tensor([0.0, 1.0, 0.0, 1.0], dtype=dtype, requires_grad=True)
    L.bce(edges, torch.tensor([0.0, 0.0, 1.0, 1.0], dtype=dtype)).backward()
    assert torch.isfinite(edges.grad).all()


def test_lm_loss_is_the_mean_cross_entropy_over_positions():
    g = torch.Generator().manual_seed(2)
    logits, targets = torch.randn(3, 5, 11, generator=g) * 3, torch.randint(0, 11, (3, 5), generator=g)
    assert torch.allclose(L.lm_loss(logits, targets), L.cross_entropy(logits.reshape(15, 11), targets.reshape(15)),
                          atol=1e-6)
    with pytest.raises(ValueError, match=r"\(B, T, V\)"):
        L.lm_loss(logits[0], targets[0])


def test_probability_forms_reject_logits():
    with pytest.raises(ValueError, match=r"probabilities in \[0, 1\].*logit"):
        L.bce(torch.tensor([1.5]), torch.tensor([1.0]))
    with pytest.raises(ValueError, match="probabilities"):
        L.cross_entropy_from_probs(torch.tensor([[-0.1, 1.1]]), torch.tensor([0]))
    with pytest.raises(ValueError, match="probabilities"):
        L.bce(torch.tensor([float("nan")]), torch.tensor([1.0]))


def test_loss_errors_explain_shapes():
    with pytest.raises(ValueError, match="squeeze"):
        L.mse(torch.zeros(4, 1), torch.zeros(4))
    with pytest.raises(ValueError, match=r"class indices of shape \(3,\)"):
        L.cross_entropy(torch.zeros(3, 5), torch.zeros(3))
    with pytest.raises(ValueError, match=r"\(N, C\)"):
        L.cross_entropy(torch.zeros(5), torch.zeros(5, dtype=torch.long))


@pytest.mark.parametrize("name", list(A.ACTIVATIONS))
def test_activation_derivatives_match_autograd(name):
    f, df = A.get(name)
    x = torch.linspace(-8, 8, 161, dtype=torch.float64).requires_grad_()
    y = A.MODULES[name]()(x)
    y.sum().backward()
    assert torch.allclose(f(x.detach()), y.detach(), atol=1e-7)
    keep = x.detach().abs() > 1e-9
    assert torch.allclose(df(x.detach())[keep], x.grad[keep], atol=1e-7)


def test_saturation_and_dead_fraction():
    assert A.saturation(torch.tensor([0.995, -0.999, 0.1, 0.0]), "tanh") == 0.5
    assert A.saturation(torch.tensor([0.001, 0.5]), "sigmoid") == 0.5
    out = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 2.0]])   # unit 0 dead for the whole batch
    assert A.dead_fraction(out) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="tanh and sigmoid"):
        A.saturation(out, "relu")
    with pytest.raises(ValueError, match="batch"):
        A.dead_fraction(torch.zeros(3))
    with pytest.raises(ValueError, match="unknown activation"):
        A.get("swish2")


def test_activation_stats_callback():
    x, y = make_2d("moons", n=128, seed=0)
    net = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    stats = ActivationStats(net, live=False)
    fit(net, (x, y), torch.optim.SGD(net.parameters(), lr=0.1), epochs=2, batch_size=32, log_every=2, callbacks=[stats])
    assert stats.steps == [2, 4, 6, 8] and set(stats.final()) == {"1", "3"}
    assert all(0 <= v <= 1 for vals in stats.values.values() for v in vals)
    assert not net[1]._forward_hooks
    with pytest.raises(ValueError, match="no nn.Tanh"):
        ActivationStats(nn.Linear(2, 2))


def test_explorers():
    le = LossExplorer(y=0, p=0.9)
    v = le.values()
    assert v["bce"] == pytest.approx(-math.log(0.1)) and v["d_bce_dz"] == pytest.approx(0.9)
    le.draw()
    assert "<script" in le.player("p", [0.1, 0.5]).data
    with pytest.raises(ValueError, match="need y"):
        le.values(y=2)
    ae = ActivationExplorer(name="sigmoid")
    assert ae.stats()["mean_grad"] <= 0.25 and ae.stats(scale=10)["small_grad"] > 0.5
    ae.show()
    sm = SoftmaxExplorer()
    assert sm.probs().sum() == pytest.approx(1) and sm.probs(temperature=0.05)[0] > 0.99
    with pytest.raises(ValueError, match="positive"):
        sm.probs(temperature=0)
    with pytest.raises(TypeError, match="unknown settings"):
        SoftmaxExplorer(colour=1)
    with pytest.raises(KeyError, match="not a setting"):
        sm.player("colour", [1])


def _lse(z):
    m = z.max(-1, keepdim=True).values
    return (m + (z - m).exp().sum(-1, keepdim=True).log()).squeeze(-1)


@pytest.mark.parametrize("name,good,bad", [
    ("bce_from_logits", lambda z, y: (z.clamp(min=0) - z * y + torch.log1p(torch.exp(-z.abs()))).mean(),
     lambda z, y: -(y * torch.sigmoid(z).log() + (1 - y) * (1 - torch.sigmoid(z)).log()).mean()),
    ("logsumexp", _lse, lambda z: z.exp().sum(-1).log()),
    ("d_sigmoid", lambda x: torch.sigmoid(x) * (1 - torch.sigmoid(x)), lambda x: torch.sigmoid(x)),
    ("cross_entropy", lambda z, t: -(z - _lse(z)[:, None])[torch.arange(len(t)), t].mean(),
     lambda z, t: -(z.softmax(1).log())[torch.arange(len(t)), t].mean() + 0.01),
])
def test_losses_activations_checks(name, good, bad, check_verdict):
    check_verdict(name, good, bad)


def test_likelihood_losses_match_torch_distributions():
    g = torch.Generator().manual_seed(3)
    mean, y = torch.randn(40, generator=g, dtype=torch.float64), torch.randn(40, generator=g, dtype=torch.float64)
    for sigma in (0.2, 1.0, 3.0):
        nll = -torch.distributions.Normal(mean, sigma).log_prob(y).mean()
        assert torch.allclose(L.gaussian_nll(mean, y, sigma), nll)
        assert torch.allclose(L.gaussian_nll(mean, y, sigma),
                              F.gaussian_nll_loss(mean, y, torch.full_like(mean, sigma ** 2), full=True))
    with pytest.raises(ValueError, match="positive"):
        L.gaussian_nll(mean, y, 0.0)
    with pytest.raises(ValueError, match="squeeze"):
        L.gaussian_nll(mean[:, None], y, 1.0)


def test_entropy_cross_entropy_and_kl():
    g = torch.Generator().manual_seed(4)
    p, q = (torch.softmax(torch.randn(50, 7, generator=g, dtype=torch.float64) * 2, -1) for _ in range(2))
    Cat = torch.distributions.Categorical
    assert torch.allclose(L.entropy(p), Cat(probs=p).entropy())
    kl = L.kl_divergence(p, q)
    assert torch.allclose(kl, torch.distributions.kl_divergence(Cat(probs=p), Cat(probs=q)))
    assert torch.allclose(kl, F.kl_div(q.log(), p, reduction="none").sum(-1))
    assert torch.allclose(L.cross_entropy_between(p, q), L.entropy(p) + kl)
    assert (kl > 0).all() and L.kl_divergence(p, p).abs().max() < 1e-12
    assert not torch.allclose(kl, L.kl_divergence(q, p))
    onehot = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)           # 0 log 0 = 0
    r = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)
    assert L.entropy(onehot) == 0 and torch.isclose(L.kl_divergence(onehot, r), -r[1].log())
    assert torch.isinf(L.kl_divergence(r, onehot))                         # q rules out what p allows
    with pytest.raises(ValueError, match="sum"):
        L.entropy(torch.tensor([0.5, 0.2]))
    with pytest.raises(ValueError, match="probabilities"):
        L.kl_divergence(torch.tensor([1.5, -0.5]), r[:2] / r[:2].sum())


def test_softmax_cross_entropy_grad_matches_autograd():
    g = torch.Generator().manual_seed(5)
    z = (torch.randn(9, 6, generator=g, dtype=torch.float64) * 4).requires_grad_()
    t = torch.randint(0, 6, (9,), generator=g)
    F.cross_entropy(z, t).backward()
    assert torch.allclose(L.softmax_cross_entropy_grad(z.detach(), t), z.grad, atol=1e-12)
    with pytest.raises(ValueError, match="class indices"):
        L.softmax_cross_entropy_grad(z.detach(), t.double())


def _xlogy_kl(p, q):
    return (torch.xlogy(p, p) - torch.xlogy(p, q)).sum(-1)


def _tempered(z, t, T):
    return (torch.softmax(z / T, 1) - F.one_hot(t, z.shape[1]).to(z.dtype)) / (len(t) * T)


def _best_constant(labels, c):
    f = torch.bincount(labels, minlength=c).double() / len(labels)
    return -torch.xlogy(f, f).sum().item()


@pytest.mark.parametrize("name,good,bad", [
    ("gaussian_nll_dsigma", lambda p, y, s: 1 / s - ((p - y) ** 2).mean().item() / s ** 3,
     lambda p, y, s: -((p - y) ** 2).mean().item() / s ** 3),              # forgot the log σ term
    ("kl_categorical", _xlogy_kl, lambda p, q: _xlogy_kl(q, p)),            # the other direction
    ("tempered_ce_grad", _tempered, lambda z, t, T: _tempered(z, t, T) * T),  # forgot the 1/T
    ("best_constant_ce", _best_constant, lambda labels, c: math.log(c)),    # the uniform guess
])
def test_derivation_checks(name, good, bad, check_verdict):
    check_verdict(name, good, bad)
