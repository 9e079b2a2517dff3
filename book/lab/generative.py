"""Generative models: a (conditional) variational autoencoder on MNIST, ways to judge its samples, and
diversity measures for text sampled from a language model.

Chapter: ``generative``.

The VAE of Kingma and Welling: an encoder maps an image to a Gaussian ``q(z|x) = N(mu, diag(sigma^2))``,
a decoder maps a latent ``z`` back to 784 Bernoulli pixel probabilities, and training maximises the
evidence lower bound (ELBO)::

    log p(x) >= E_q[log p(x|z)] - KL(q(z|x) || N(0, I))

With ``n_classes > 0`` the encoder and decoder also see the one-hot label (a conditional VAE), so that
``sample(y=...)`` draws a requested digit.
"""
from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from book.data import batches
from book.ui import Explorer, Replay

IMAGE_SHAPE = (1, 28, 28)
N_PIXELS = 784


# --------------------------------------------------------------------------- the three formulas
def _check_mu_logvar(mu: torch.Tensor, logvar: torch.Tensor) -> None:
    if not (isinstance(mu, torch.Tensor) and isinstance(logvar, torch.Tensor)):
        raise TypeError(f"mu and logvar must be tensors, got {type(mu).__name__} and {type(logvar).__name__}")
    if mu.shape != logvar.shape:
        raise ValueError(f"mu {tuple(mu.shape)} and logvar {tuple(logvar.shape)} must have the same shape "
                         "(B, latent): the encoder outputs one mean and one log-variance per latent dimension")
    if not mu.is_floating_point():
        raise TypeError(f"mu must be a floating-point tensor, got {mu.dtype}; use .float()")


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor | None = None,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """A sample ``z = mu + sigma * eps`` with ``sigma = exp(logvar / 2)`` and ``eps ~ N(0, I)``.

    The randomness sits in ``eps``, which does not depend on the parameters, so gradients flow through
    ``mu`` and ``sigma`` (the reparameterisation trick). Give ``eps`` to make it deterministic.
    """
    _check_mu_logvar(mu, logvar)
    if eps is None:
        eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device="cpu" if generator is not None
                          else mu.device).to(mu.device)
    elif eps.shape != mu.shape:
        raise ValueError(f"eps has shape {tuple(eps.shape)}, expected {tuple(mu.shape)} like mu")
    return mu + torch.exp(0.5 * logvar) * eps


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL( N(mu, diag(exp(logvar))) || N(0, I) ), summed over the last dimension: (B, L) -> (B,).

    Per dimension: 0.5 * (sigma^2 + mu^2 - 1 - log sigma^2). Zero exactly when mu = 0 and sigma = 1.
    """
    _check_mu_logvar(mu, logvar)
    return 0.5 * (logvar.exp() + mu.pow(2) - 1.0 - logvar).sum(-1)


def reconstruction_nll(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """-log p(x|z) for Bernoulli pixels given decoder logits: binary cross-entropy summed per image -> (B,)."""
    if logits.shape != x.shape:
        raise ValueError(f"decoder logits {tuple(logits.shape)} and images {tuple(x.shape)} must have the same "
                         "shape (B, 1, 28, 28)")
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)


def negative_elbo(logits: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
                  beta: float = 1.0) -> dict:
    """The VAE loss, averaged over the batch: ``{"loss": recon + beta * kl, "recon": ..., "kl": ...}``
    (nats per image). ``beta = 1`` is the ELBO of Kingma and Welling; other values give a beta-VAE."""
    recon = reconstruction_nll(logits, x).mean()
    kl = gaussian_kl(mu, logvar).mean()
    return {"loss": recon + beta * kl, "recon": recon, "kl": kl}


# --------------------------------------------------------------------------- the model
class VAE(nn.Module):
    """An MLP variational autoencoder for 28x28 images; conditional on the label when ``n_classes > 0``.

    ``forward(x, y=None)`` -> ``(logits, mu, logvar)``, logits of shape (B, 1, 28, 28).
    """

    def __init__(self, latent: int = 2, hidden: int = 256, n_classes: int = 0):
        super().__init__()
        if latent < 1 or hidden < 1 or n_classes < 0:
            raise ValueError(f"need latent >= 1, hidden >= 1, n_classes >= 0; got {latent}, {hidden}, {n_classes}")
        self.latent, self.hidden, self.n_classes = latent, hidden, n_classes
        self.encoder = nn.Sequential(nn.Linear(N_PIXELS + n_classes, hidden), nn.ReLU(),
                                     nn.Linear(hidden, hidden), nn.ReLU())
        self.to_stats = nn.Linear(hidden, 2 * latent)                  # mean and log-variance
        self.decoder = nn.Sequential(nn.Linear(latent + n_classes, hidden), nn.ReLU(),
                                     nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, N_PIXELS))

    def _label(self, y, n: int, device) -> torch.Tensor | None:
        if self.n_classes == 0:
            if y is not None:
                raise ValueError("this VAE is unconditional (n_classes=0); do not pass labels y")
            return None
        if y is None:
            raise ValueError(f"this VAE is conditional (n_classes={self.n_classes}): pass the labels y")
        y = torch.as_tensor(y, device=device)
        if y.ndim == 0:
            y = y.expand(n)
        if y.shape != (n,) or y.dtype != torch.long:
            raise ValueError(f"labels must be a long tensor of shape ({n},), got {tuple(y.shape)} {y.dtype}")
        if int(y.min()) < 0 or int(y.max()) >= self.n_classes:
            raise ValueError(f"labels must lie in 0..{self.n_classes - 1}")
        return F.one_hot(y, self.n_classes).float()                                # (B, n_classes)

    def encode(self, x: torch.Tensor, y=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (B, 1, 28, 28) -> (mu, logvar), each (B, latent)."""
        if x.ndim != 4 or tuple(x.shape[1:]) != IMAGE_SHAPE:
            raise ValueError(f"expected images of shape (B, 1, 28, 28), got {tuple(x.shape)}")
        h = x.flatten(1)                                                            # (B, 784)
        onehot = self._label(y, len(x), x.device)
        if onehot is not None:
            h = torch.cat([h, onehot], 1)                                           # (B, 784 + classes)
        mu, logvar = self.to_stats(self.encoder(h)).chunk(2, dim=1)                 # (B, L) each
        return mu, logvar

    def decode(self, z: torch.Tensor, y=None) -> torch.Tensor:
        """Latents (B, latent) -> pixel logits (B, 1, 28, 28)."""
        if z.ndim != 2 or z.shape[1] != self.latent:
            raise ValueError(f"expected latents of shape (B, {self.latent}), got {tuple(z.shape)}")
        onehot = self._label(y, len(z), z.device)
        if onehot is not None:
            z = torch.cat([z, onehot], 1)                                           # (B, L + classes)
        return self.decoder(z).view(-1, *IMAGE_SHAPE)                               # (B, 1, 28, 28)

    def forward(self, x: torch.Tensor, y=None, generator: torch.Generator | None = None):
        mu, logvar = self.encode(x, y)
        z = reparameterize(mu, logvar, generator=generator)
        return self.decode(z, y), mu, logvar

    @torch.no_grad()
    def sample(self, n: int, y=None, generator: torch.Generator | None = None, z: torch.Tensor | None = None):
        """``n`` new images (pixel probabilities in [0, 1], shape (n, 1, 28, 28)) decoded from z ~ N(0, I)."""
        device = next(self.parameters()).device
        if z is None:
            z = torch.randn(n, self.latent, generator=generator).to(device)
        was = self.training
        self.eval()
        out = torch.sigmoid(self.decode(z.to(device), y))
        self.train(was)
        return out


@dataclass
class VAEHistory:
    """Per-epoch means (nats per image) and the sample grids drawn after each epoch."""

    recon: list = field(default_factory=list)
    kl: list = field(default_factory=list)
    test_loss: list = field(default_factory=list)
    samples: list = field(default_factory=list)      # (k, 28, 28) CPU tensors, same z every epoch
    seconds: float = 0.0


def train_vae(model: VAE, x: torch.Tensor, y: torch.Tensor | None = None, *, epochs: int, lr: float = 1e-3,
              batch_size: int = 128, beta: float = 1.0, test: tuple | None = None, n_show: int = 10,
              generator: torch.Generator | None = None, on_epoch: Callable | None = None) -> VAEHistory:
    """Train ``model`` with Adam on images ``x`` (and labels ``y`` if it is conditional); return the history.

    After every epoch the decoder draws ``n_show`` images from the *same* latents (and, for a conditional
    model, the labels 0..9 in turn), so the snapshots show how samples improve; ``on_epoch(model, history)``
    is called then (for a live figure).
    """
    if x.ndim != 4 or tuple(x.shape[1:]) != IMAGE_SHAPE:
        raise ValueError(f"expected images of shape (N, 1, 28, 28), got {tuple(x.shape)}")
    if float(x.min()) < 0 or float(x.max()) > 1:
        raise ValueError("pixels must lie in [0, 1] for the Bernoulli likelihood (load_mnist gives that)")
    conditional = model.n_classes > 0
    if conditional and y is None:
        raise ValueError("a conditional VAE needs the labels y for training")
    labels = y if conditional else torch.zeros(len(x), dtype=torch.long, device=x.device)
    gen = generator or torch.Generator().manual_seed(0)
    z_show = torch.randn(n_show, model.latent, generator=gen)
    y_show = torch.arange(n_show) % model.n_classes if conditional else None
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    hist = VAEHistory()
    t0 = time.perf_counter()
    for _ in range(epochs):
        model.train()
        sums = torch.zeros(2, device=x.device)
        for xb, yb in batches(x, labels, batch_size, shuffle=True, generator=gen):
            logits, mu, logvar = model(xb, yb if conditional else None)
            parts = negative_elbo(logits, xb, mu, logvar, beta)
            opt.zero_grad(set_to_none=True)
            parts["loss"].backward()
            opt.step()
            sums += torch.stack([parts["recon"].detach(), parts["kl"].detach()]) * len(xb)
        recon, kl = (sums / len(x)).tolist()                  # one sync per epoch
        if not math.isfinite(recon + kl):
            raise FloatingPointError(f"the VAE loss became {recon + kl}; try a smaller learning rate")
        hist.recon.append(recon)
        hist.kl.append(kl)
        if test is not None:
            hist.test_loss.append(vae_test_loss(model, *test)["loss"])
        hist.samples.append(model.sample(n_show, y_show, z=z_show)[:, 0].cpu())
        hist.seconds = time.perf_counter() - t0
        if on_epoch is not None:
            on_epoch(model, hist)
    model.eval()
    return hist


@torch.no_grad()
def vae_test_loss(model: VAE, x: torch.Tensor, y: torch.Tensor | None = None, seed: int = 0) -> dict:
    """Negative ELBO (recon, kl, loss in nats per image) on held-out images, one fixed-seed z per image."""
    was = model.training
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    logits, mu, logvar = model(x, y if model.n_classes else None, generator=gen)
    parts = {k: float(v) for k, v in negative_elbo(logits, x, mu, logvar).items()}
    model.train(was)
    return parts


# --------------------------------------------------------------------------- judging samples
@torch.no_grad()
def classifier_probs(classifier: nn.Module, images: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Softmax class probabilities (N, classes) of a trained classifier on images (N, 1, 28, 28)."""
    was = classifier.training
    classifier.eval()
    dev = next(classifier.parameters()).device
    out = torch.cat([classifier(images[i:i + batch_size].to(dev)).float().softmax(-1)
                     for i in range(0, len(images), batch_size)])
    classifier.train(was)
    return out


def sample_report(probs: torch.Tensor, requested: torch.Tensor | None = None, threshold: float = 0.9) -> dict:
    """What a classifier says about generated images, from its probabilities (N, classes):

    ``confident``: share with max probability > ``threshold``; ``agree``: share whose predicted class is the
    ``requested`` label (conditional models); ``score``: the classifier-based Inception Score; ``class_share``:
    how often each class is predicted (a collapsed generator puts everything into a few classes).
    """
    if probs.ndim != 2:
        raise ValueError(f"expected probabilities of shape (N, classes), got {tuple(probs.shape)}")
    pred = probs.argmax(1)
    report = {"confident": float((probs.max(1).values > threshold).float().mean()),
              "score": inception_score(probs),
              "class_share": torch.bincount(pred.cpu(), minlength=probs.shape[1]).float() / len(probs)}
    if requested is not None:
        report["agree"] = float((pred.cpu() == requested.cpu()).float().mean())
    return report


def inception_score(probs: torch.Tensor, eps: float = 1e-12) -> float:
    """exp( E_x KL(p(y|x) || p(y)) ) from classifier probabilities (N, classes).

    Between 1 and the number of classes: high when every image is classified confidently (low-entropy
    p(y|x)) *and* the classes are used evenly (high-entropy marginal p(y)). Salimans et al. (2016) used an
    ImageNet Inception network; here the classifier is our LeNet.
    """
    if probs.ndim != 2 or (probs < 0).any() or not torch.allclose(probs.sum(1), torch.ones(len(probs),
                                                                                           dtype=probs.dtype,
                                                                                           device=probs.device),
                                                                     atol=1e-4):
        raise ValueError("expected probabilities of shape (N, classes) whose rows sum to 1 (apply softmax first)")
    p = probs.double().clamp_min(eps)
    marginal = p.mean(0, keepdim=True)                                             # (1, classes)
    kl = (p * (p.log() - marginal.log())).sum(1)                                   # (N,)
    return float(kl.mean().exp())


# --------------------------------------------------------------------------- GAN, in math only
def gan_value(p_data: torch.Tensor, p_model: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """V(D, G) = E_data[log D(x)] + E_model[log(1 - D(x))] on a finite set of outcomes x.

    ``p_data``, ``p_model`` are probability vectors over the outcomes, ``d`` the discriminator's output
    D(x) in (0, 1) for each outcome.
    """
    return (p_data * d.log()).sum() + (p_model * (1 - d).log()).sum()


def optimal_discriminator(p_data: torch.Tensor, p_model: torch.Tensor) -> torch.Tensor:
    """D*(x) = p_data(x) / (p_data(x) + p_model(x)): the best a discriminator can do against a fixed G."""
    return p_data / (p_data + p_model)


def js_divergence(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Jensen-Shannon divergence (nats) of two probability vectors."""
    m = (p + q) / 2

    def kl(a, b):
        a_pos = a > 0
        return (a[a_pos] * (a[a_pos] / b[a_pos]).log()).sum()
    return 0.5 * kl(p, m) + 0.5 * kl(q, m)


# --------------------------------------------------------------------------- text diversity
def distinct_n(text: str, n: int = 4) -> float:
    """Distinct-n of a string at the character level: (number of different n-grams) / (number of n-grams).

    1.0 means no n-gram repeats; a model stuck in a loop scores near 0. (Li et al. 2016 use word n-grams.)
    """
    if not isinstance(text, str):
        raise TypeError(f"distinct_n takes a string, got {type(text).__name__}; decode token ids first")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    total = len(text) - n + 1
    if total < 1:
        raise ValueError(f"the text has {len(text)} characters, too short for {n}-grams")
    return len({text[i:i + n] for i in range(total)}) / total


def word_share(text: str, known: set[str]) -> float:
    """Share of the whitespace-separated words of ``text`` (letters only, lower-cased) that are in ``known``."""
    words = ["".join(c for c in w if c.isalpha()).lower() for w in text.split()]
    words = [w for w in words if w]
    if not words:
        return 0.0
    return sum(w in known for w in words) / len(words)


def vocabulary(text: str) -> set[str]:
    """The set of lower-cased words (letters only) in a corpus."""
    return {w for w in ("".join(c for c in t if c.isalpha()).lower() for t in text.split()) if w}


@torch.no_grad()
def sample_texts(model, vocab, prompt: str, n_chars: int, temperature: float, n_samples: int = 4,
                 seed: int = 0, top_k: int | None = None, top_p: float | None = None) -> list[str]:
    """``n_samples`` continuations of ``prompt`` (generated as one batch) at the given temperature."""
    dev = next(model.parameters()).device
    idx = vocab.encode(prompt).view(1, -1).repeat(n_samples, 1).to(dev)            # (S, T)
    gen = torch.Generator().manual_seed(seed)
    out = model.generate(idx, n_chars, temperature=temperature, top_k=top_k, top_p=top_p, generator=gen)
    return [vocab.decode(row[len(prompt):].tolist()) for row in out.cpu()]


@torch.no_grad()
def bigram_sample_texts(corpus: str, prompt: str, n_chars: int, n_samples: int = 4, seed: int = 0) -> list[str]:
    """The trivial baseline for text generation: ``n_samples`` continuations of ``prompt`` from a character
    **bigram** model of ``corpus`` (each next character drawn with the frequency it follows the current one
    there), sampled at temperature 1 like :func:`sample_texts`."""
    if not corpus or not prompt:
        raise ValueError("need a non-empty corpus and prompt")
    if n_chars < 0 or n_samples < 1:
        raise ValueError(f"need n_chars >= 0 and n_samples >= 1, got {n_chars}, {n_samples}")
    chars = sorted(set(corpus))
    if any(c not in chars for c in prompt):
        raise ValueError(f"the prompt uses characters that never occur in the corpus: "
                         f"{sorted(set(prompt) - set(chars))}")
    index = {c: i for i, c in enumerate(chars)}
    ids = torch.tensor([index[c] for c in corpus])
    v = len(chars)
    counts = torch.bincount(ids[:-1] * v + ids[1:], minlength=v * v).view(v, v).double()   # (V, V)
    counts[counts.sum(1) == 0] = 1.0                         # a character never followed: uniform
    probs = counts / counts.sum(1, keepdim=True)
    gen = torch.Generator().manual_seed(seed)
    cur = torch.full((n_samples,), index[prompt[-1]])
    out = []
    for _ in range(n_chars):
        cur = torch.multinomial(probs[cur], 1, generator=gen).squeeze(1)             # (S,)
        out.append(cur)
    rows = torch.stack(out, 1).tolist() if out else [[] for _ in range(n_samples)]
    return ["".join(chars[i] for i in row) for row in rows]


def entropy_at_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Entropy (nats) of softmax(logits / temperature) along the last dimension: (..., V) -> (...).

    It grows with the temperature: T -> 0 gives 0 (greedy), T -> infinity gives log V (uniform)."""
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    logp = (logits.double() / temperature).log_softmax(-1)
    return -(logp.exp() * logp).sum(-1)


def ngram_counts(text: str, n: int = 4) -> Counter:
    """How often each character n-gram occurs (to show which ones repeat)."""
    return Counter(text[i:i + n] for i in range(len(text) - n + 1))


@torch.no_grad()
def nearest_code_agreement(model: VAE, x: torch.Tensor, y: torch.Tensor, n: int = 2000) -> float:
    """How much the code space is organised by label: for each of the first ``n`` images, is the image whose
    code mean is nearest (Euclidean, leave-one-out) of the same label? Returns that share -- about 0.1 for
    ten balanced classes if the codes ignore the label, near 1 if they cluster by it. A conditional model
    encodes with the true labels."""
    if len(x) != len(y) or len(x) < 2:
        raise ValueError(f"need at least 2 images with one label each, got {len(x)} images and {len(y)} labels")
    was_training = model.training
    model.eval()
    x, y = x[:n], y[:n]
    mu, _ = model.encode(x, y if model.n_classes else None)                          # (n, L)
    model.train(was_training)
    d = torch.cdist(mu.float(), mu.float())                                          # (n, n)
    d.fill_diagonal_(float("inf"))
    return float((y[d.argmin(1)] == y).float().mean())


# --------------------------------------------------------------------------- pictures
def mosaic(images: torch.Tensor, rows: int) -> torch.Tensor:
    """Tile images (N, 28, 28) or (N, 1, 28, 28) into one (rows*28, cols*28) picture, row by row."""
    images = images.detach().cpu()
    if images.ndim == 4:
        images = images[:, 0]                                                      # (N, 28, 28)
    n, h, w = images.shape
    if n % rows:
        raise ValueError(f"{n} images do not fill {rows} rows evenly")
    cols = n // rows
    return images.view(rows, cols, h, w).permute(0, 2, 1, 3).reshape(rows * h, cols * w)   # (rows*h, cols*w)


def draw_samples(ax, images: torch.Tensor, rows: int = 1, title: str | None = None):
    """Draw a grid of images (N, 28, 28), (N, 1, 28, 28) or flat (N, 784) with pixels in [0, 1] on ``ax``:
    one grey :func:`mosaic` of ``rows`` rows, no axes, ``title`` above it. The sample panel of every
    generative model's view (the VAE's :class:`SampleMonitor` and :class:`LatentExplorer`, the digit GAN's
    monitor in :mod:`book.lab.gan`)."""
    images = images.detach()
    if images.ndim == 2:
        images = images.view(len(images), *IMAGE_SHAPE[1:])                       # (N, 28, 28)
    ax.clear()
    ax.imshow(mosaic(images, rows=rows).numpy(), cmap="gray", vmin=0, vmax=1)
    ax.axis("off")
    if title is not None:
        ax.set_title(title, fontsize=9)


@torch.no_grad()
def latent_grid(model: VAE, n: int = 15, y=None, quantile: float = 0.95) -> torch.Tensor:
    """Decode an n x n grid of a 2-D latent space and tile it (the learned-manifold picture of Kingma & Welling).

    The grid is evenly spaced in *probability*: coordinates are Normal quantiles from 1-q to q, so each cell
    covers the same prior mass."""
    if model.latent != 2:
        raise ValueError(f"latent_grid draws a 2-D latent space; this model has latent={model.latent}")
    p = torch.linspace(1 - quantile, quantile, n)
    coords = torch.distributions.Normal(0.0, 1.0).icdf(p)                          # (n,)
    z1, z2 = torch.meshgrid(coords, coords.flip(0), indexing="xy")                 # z2 grows upwards
    z = torch.stack([z1.reshape(-1), z2.reshape(-1)], 1)                           # (n*n, 2)
    return mosaic(model.sample(n * n, y, z=z), rows=n)


@torch.no_grad()
def interpolate(model: VAE, x0: torch.Tensor, x1: torch.Tensor, steps: int = 8, y0=None, y1=None) -> torch.Tensor:
    """Decode points on the straight line between the encoder means of two images: (steps, 1, 28, 28).

    For a conditional VAE give the labels; the label is switched half way."""
    model.eval()
    x0, x1 = x0.view(1, *IMAGE_SHAPE), x1.view(1, *IMAGE_SHAPE)
    conditional = model.n_classes > 0
    m0 = model.encode(x0, torch.tensor([y0]) if conditional else None)[0]
    m1 = model.encode(x1, torch.tensor([y1]) if conditional else None)[0]
    t = torch.linspace(0, 1, steps, device=m0.device)[:, None]                     # (steps, 1)
    z = (1 - t) * m0 + t * m1                                                      # (steps, L)
    y = (torch.where(t[:, 0] < 0.5, y0, y1).long() if conditional else None)
    return model.sample(steps, y, z=z)


class SampleMonitor(Replay):
    """A live figure for :func:`train_vae`: the two loss terms per epoch and the samples of the latest
    epoch. Pass ``on_epoch=monitor.update``; ``replay(max_frames=24, interval=400)`` returns a player of
    the epochs (the :class:`~book.ui.explorer.Replay` contract)."""

    replay_hint = "pass on_epoch=monitor.update to train_vae first"

    def __init__(self, title: str = "VAE"):
        self.title = title
        self.fig = self.live = self.history = None

    def draw(self, hist: VAEHistory, k: int | None = None):
        import matplotlib.pyplot as plt

        if self.fig is None:
            self.fig, (self.ax_loss, self.ax_img) = plt.subplots(1, 2, figsize=(11, 2.8), dpi=80,
                                                                 gridspec_kw={"width_ratios": [1, 2.2]})
        k = len(hist.recon) - 1 if k is None else k
        epochs = range(1, k + 2)
        self.ax_loss.clear()
        self.ax_loss.plot(epochs, hist.recon[:k + 1], "o-", label="reconstruction −log p(x|z)")
        self.ax_loss.plot(epochs, hist.kl[:k + 1], "s-", label="KL(q(z|x) ‖ p(z))")
        self.ax_loss.set(xlabel="epoch", ylabel="nats per image", yscale="log",
                         xlim=(0.5, max(len(hist.recon), 2) + 0.5))
        self.ax_loss.legend(fontsize=7)
        draw_samples(self.ax_img, hist.samples[k], rows=1,
                     title=f"{self.title}: samples after epoch {k + 1} (same z every epoch)")

    def update(self, model, hist: VAEHistory):
        """``train_vae``'s ``on_epoch``: record the history, draw the latest epoch and show it."""
        self.history = hist
        self.draw(hist)
        self.show_live()

    # -- replay contract
    def _frames(self) -> int:
        return len(self.history.recon) if self.history is not None else 0

    def _draw_frame(self, k: int):
        self.draw(self.history, k)


class LatentExplorer(Explorer):
    """Walk the 2-D latent space of a trained VAE.

    Left: where test images land (encoder means, coloured by their label) and the current point
    z = (``z1``, ``z2``). Right: what the decoder draws at z -- one digit for an unconditional VAE, all ten
    digits in the same "style" z for a conditional one. With a ``classifier`` the title says what it reads.
    ``show()`` adds two sliders (live notebooks); ``player(("z1", "z2"), path)`` precomputes frames along a
    path for the web page (the :class:`~book.ui.explorer.Explorer` contract).
    """

    defaults = dict(z1=0.0, z2=0.0)
    layout = dict(ncols=2, figsize=(10, 4.2), gridspec_kw={"width_ratios": [1, 1.25]})
    interval = 350

    def __init__(self, model: VAE, images: torch.Tensor, labels: torch.Tensor, classifier: nn.Module | None = None,
                 n_points: int = 2000, **settings):
        if model.latent != 2:
            raise ValueError(f"LatentExplorer shows a 2-D latent space; this model has latent={model.latent}")
        self.model, self.classifier = model.eval(), classifier
        self.conditional = model.n_classes > 0
        with torch.no_grad():
            x, y = images[:n_points], labels[:n_points]
            self.means = model.encode(x, y if self.conditional else None)[0].cpu()  # (n_points, 2)
        self.point_labels = y.cpu()
        super().__init__(**settings)

    def _controls(self):
        import ipywidgets as w
        return {k: w.FloatSlider(min=-3.5, max=3.5, step=0.05, description=k) for k in ("z1", "z2")}

    def _new_figure(self):
        import matplotlib as mpl
        fig, axes = super()._new_figure()
        bar = mpl.cm.ScalarMappable(mpl.colors.Normalize(-0.5, 9.5), "tab10")
        fig.colorbar(bar, ax=axes[0], ticks=range(10), label="label of the test image")
        return fig, axes

    def decode(self, z) -> torch.Tensor:
        zz = torch.tensor([z], dtype=torch.float32)
        if self.conditional:
            return self.model.sample(self.model.n_classes, torch.arange(self.model.n_classes),
                                     z=zz.repeat(self.model.n_classes, 1))      # (10, 1, 28, 28)
        return self.model.sample(1, z=zz)                                          # (1, 1, 28, 28)

    def draw(self, **override) -> torch.Tensor:
        """Draw the settings (plus ``override``); returns the decoded images."""
        s = self.resolve(**override)
        z = (float(s["z1"]), float(s["z2"]))
        imgs = self.decode(z)
        self.figure()
        ax, ax_img = self.axes
        ax.clear()
        ax.scatter(self.means[:, 0], self.means[:, 1], c=self.point_labels, cmap="tab10", s=4, vmin=-0.5,
                   vmax=9.5, alpha=0.6)
        ax.plot(*z, marker="X", color="black", markersize=14, markeredgecolor="white")
        ax.set(xlim=(-4, 4), ylim=(-4, 4), xlabel="$z_1$", ylabel="$z_2$",
               title="encoder means of test images" + (" (style only)" if self.conditional else ""))
        title = f"decoder at z = ({z[0]:.2f}, {z[1]:.2f})"
        if self.classifier is not None:
            probs = classifier_probs(self.classifier, imgs)
            conf, pred = probs.max(1)
            if self.conditional:
                title += f"; LeNet agrees with {int((pred.cpu() == torch.arange(len(pred))).sum())}/10 labels"
            else:
                title += f"; LeNet reads {int(pred[0])} (p = {float(conf[0]):.2f})"
        draw_samples(ax_img, imgs, rows=2 if self.conditional else 1, title=title)
        return imgs
