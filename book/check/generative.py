"""Self-checks for the chapter "Applications: generating images and text"."""
from __future__ import annotations

import math

import torch

from book.check.core import Case, run_cases

__all__ = ["reparam_sample", "kl_to_standard_normal", "elbo_loss", "distinct_ngrams", "classifier_inception_score",
           "gan_optimum"]


def _rand(g, *shape):
    return torch.randn(*shape, generator=g, dtype=torch.float64)


def reparam_sample(fn) -> None:
    """``fn(mu, logvar, eps)`` -> z = mu + exp(logvar / 2) * eps (all tensors of one shape)."""
    g = torch.Generator().manual_seed(21)
    cases = [Case((torch.zeros(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64),
                   torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)),
                  torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64), label="mu = 0, logvar = 0: z = eps"),
             Case((torch.tensor([1.0, 2.0], dtype=torch.float64), torch.tensor([math.log(4.0), math.log(0.25)],
                                                                              dtype=torch.float64),
                   torch.tensor([1.0, 1.0], dtype=torch.float64)),
                  torch.tensor([3.0, 2.5], dtype=torch.float64), label="variances 4 and 1/4: sigma = 2 and 1/2")]
    for _ in range(3):
        mu, lv, eps = _rand(g, 4, 2), _rand(g, 4, 2), _rand(g, 4, 2)
        cases.append(Case((mu, lv, eps), mu + torch.exp(0.5 * lv) * eps, public=False, label="random (4, 2)"))
    run_cases("reparam_sample", fn, cases, hint="logvar is log sigma^2, so sigma = exp(logvar / 2), not exp(logvar)")


def kl_to_standard_normal(fn) -> None:
    """``fn(mu, logvar)`` -> KL(N(mu, diag exp(logvar)) || N(0, I)) summed over the last dimension, shape (B,),
    compared with ``torch.distributions.kl_divergence``."""
    from book.check._reference import _kl_ref  # hidden from graded code
    g = torch.Generator().manual_seed(22)
    z = torch.zeros(2, 3, dtype=torch.float64)
    cases = [Case((z, z), torch.zeros(2, dtype=torch.float64), label="q = p: KL is 0"),
             Case((torch.tensor([[1.0, 0.0]], dtype=torch.float64), torch.zeros(1, 2, dtype=torch.float64)),
                  torch.tensor([0.5], dtype=torch.float64), label="mean shifted by 1, sigma = 1: KL = 1/2"),
             Case((torch.zeros(1, 1, dtype=torch.float64), torch.tensor([[math.log(4.0)]], dtype=torch.float64)),
                  _kl_ref(torch.zeros(1, 1, dtype=torch.float64), torch.tensor([[math.log(4.0)]], dtype=torch.float64)),
                  label="sigma = 2, mean 0")]
    for _ in range(3):
        mu, lv = _rand(g, 5, 4), _rand(g, 5, 4)
        cases.append(Case((mu, lv), _kl_ref(mu, lv), public=False, label="random (5, 4)"))
    run_cases("kl_to_standard_normal", fn, cases,
              hint="per dimension 0.5 * (sigma^2 + mu^2 - 1 - log sigma^2); sum over the latent dimension only")


def elbo_loss(fn) -> None:
    """``fn(logits, x, mu, logvar)`` -> the negative ELBO averaged over the batch: Bernoulli reconstruction
    (binary cross-entropy from logits, summed over the pixels of each image) plus the Gaussian KL."""
    from book.check._reference import _elbo_ref  # hidden from graded code
    g = torch.Generator().manual_seed(23)
    cases = []
    for i, (b, d, latent) in enumerate([(2, 4, 1), (3, 6, 2), (8, 784, 2), (5, 10, 3)]):
        logits, x = _rand(g, b, d), torch.rand(b, d, generator=g, dtype=torch.float64)
        mu, lv = _rand(g, b, latent), _rand(g, b, latent) * 0.5
        cases.append(Case((logits, x, mu, lv), _elbo_ref(logits, x, mu, lv), public=i < 2,
                          label=f"{b} images of {d} pixels, latent {latent}"))
    run_cases("elbo_loss", fn, cases, hint="sum the cross-entropy over the pixels of each image (not mean), add that "
              "image's KL, then average over the batch; use F.binary_cross_entropy_with_logits(..., reduction='none')")


def _distinct(text, n):
    total = len(text) - n + 1
    return len({text[i:i + n] for i in range(total)}) / total


def distinct_ngrams(fn) -> None:
    """``fn(text, n)`` -> (number of different character n-grams) / (number of n-grams) in ``text``."""
    cases = [Case(("abcabc", 3), 0.75, label="'abcabc', n=3: abc, bca, cab, abc -> 3 of 4"),
             Case(("aaaaaa", 2), 0.2, label="'aaaaaa', n=2: one distinct bigram out of 5"),
             Case(("hello", 1), 0.8, label="'hello', n=1: h, e, l, o of 5 characters"),
             Case(("to be or not to be", 4), _distinct("to be or not to be", 4), public=False),
             Case(("the the the the", 4), _distinct("the the the the", 4), public=False),
             Case(("abcd", 4), 1.0, public=False, label="exactly one n-gram")]
    run_cases("distinct_ngrams", fn, cases, hint="a text of length L has L - n + 1 n-grams; a set() collects the "
              "different ones")


def classifier_inception_score(fn) -> None:
    """``fn(probs)`` -> exp(mean over images of KL(p(y|x) || p(y))) for class probabilities (N, classes)."""
    from book.check._reference import _is_ref  # hidden from graded code
    g = torch.Generator().manual_seed(24)
    eye = torch.eye(4, dtype=torch.float64)
    cases = [Case((eye,), 4.0, label="4 images, each certainly a different class: 4"),
             Case((eye[[0, 0, 0, 0]],), 1.0, label="4 images, all certainly class 0 (collapse): 1"),
             Case((torch.full((3, 5), 0.2, dtype=torch.float64),), 1.0, label="uniform p(y|x): 1"),
             Case((torch.tensor([[0.9, 0.1], [0.2, 0.8]], dtype=torch.float64),),
                  _is_ref(torch.tensor([[0.9, 0.1], [0.2, 0.8]], dtype=torch.float64)), label="two soft predictions")]
    for _ in range(2):
        p = _rand(g, 20, 10).mul(3).softmax(1)
        cases.append(Case((p,), _is_ref(p), public=False, label="random (20, 10)"))
    run_cases("classifier_inception_score", lambda p: float(fn(p)), cases,
              hint="p(y) is the mean of the rows; KL(p || q) = sum p log(p / q) per row; exponentiate the mean KL. "
              "Classes nobody predicts have probability 0: clamp before log so that 0 * log 0 counts as 0, not NaN")


def gan_optimum(fn) -> None:
    """``fn(p_data, p_model)`` -> max over D of V(D, G) = E_data log D + E_model log(1 - D), for two probability
    vectors over the same finite set of outcomes."""
    from book.check._reference import _gan_ref  # hidden from graded code
    g = torch.Generator().manual_seed(25)
    half = torch.tensor([0.5, 0.5], dtype=torch.float64)
    cases = [Case((half, half), -math.log(4), label="p_model = p_data: -log 4"),
             Case((torch.tensor([1.0, 0.0], dtype=torch.float64), torch.tensor([0.0, 1.0], dtype=torch.float64)), 0.0,
                  label="disjoint supports: 0 (D tells them apart perfectly)"),
             Case((torch.tensor([0.7, 0.2, 0.1], dtype=torch.float64),
                   torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64)),
                  _gan_ref(torch.tensor([0.7, 0.2, 0.1], dtype=torch.float64),
                           torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64)), label="three outcomes")]
    for _ in range(2):
        pd, pm = _rand(g, 6).softmax(0), _rand(g, 6).softmax(0)
        cases.append(Case((pd, pm), _gan_ref(pd, pm), public=False, label="random, 6 outcomes"))
    run_cases("gan_optimum", lambda a, b: float(fn(a, b)), cases,
              hint="plug D*(x) = p_data / (p_data + p_model) into V; terms with probability 0 contribute 0 "
              "(0 * log 0 = 0), so skip them instead of computing log 0")
