"""Generative adversarial networks trained: the two losses, the saturation of the generator's gradient,
mode collapse on a ring of Gaussians, and honest ways to score generated digits (baselines, a Fréchet
distance in a classifier's feature space, a memorisation check).

Chapter: ``gan`` (the maths of the GAN game, its optimal discriminator and the Jensen-Shannon divergence,
is in ``generative``; its ``classifier_probs`` is reused from :mod:`book.lab.generative`).

A generator ``G`` maps noise ``z ~ N(0, I)`` to a sample; a discriminator ``D`` maps a sample to a logit
``l`` with ``D = sigmoid(l)`` the probability that it is real. ``D`` minimises the binary cross-entropy of
"real" against "generated"; ``G`` either minimises ``log(1 - D(G(z)))`` (the *saturating* loss of the
minimax game) or ``-log D(G(z))`` (the *non-saturating* loss Goodfellow et al. use in practice).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from book.lab.generative import classifier_probs, draw_samples
from book.ui import Explorer, Replay

GEN_LOSSES = ("non_saturating", "saturating")


# --------------------------------------------------------------------------- the two losses
def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """-[log D(x) + log(1 - D(G(z)))], averaged over each batch and summed: the discriminator's loss.

    With ``D = sigmoid(l)``: ``log D = logsigmoid(l)`` and ``log(1 - D) = logsigmoid(-l)``, which stay
    finite for any logit (no ``log(0)``)."""
    if real_logits.ndim != 1 or fake_logits.ndim != 1:
        raise ValueError(f"expected logits of shape (B,), got {tuple(real_logits.shape)} and "
                         f"{tuple(fake_logits.shape)}; squeeze the discriminator's last dimension")
    return -F.logsigmoid(real_logits).mean() - F.logsigmoid(-fake_logits).mean()


def generator_loss(fake_logits: torch.Tensor, kind: str = "non_saturating") -> torch.Tensor:
    """The generator's loss on the discriminator's logits for generated samples, shape (B,).

    ``"saturating"``: ``mean log(1 - D(G(z)))`` -- minus the discriminator's term, the minimax game itself;
    its gradient by the logit is ``-D``, which vanishes when D confidently rejects the samples.
    ``"non_saturating"``: ``mean -log D(G(z))``; its gradient by the logit is ``-(1 - D)``, largest exactly
    then."""
    if kind not in GEN_LOSSES:
        raise ValueError(f"kind must be one of {GEN_LOSSES}, got {kind!r}")
    if fake_logits.ndim != 1:
        raise ValueError(f"expected logits of shape (B,), got {tuple(fake_logits.shape)}")
    if kind == "saturating":
        return F.logsigmoid(-fake_logits).mean()
    return -F.logsigmoid(fake_logits).mean()


# --------------------------------------------------------------------------- the two networks
class MinibatchStd(nn.Module):
    """Append one feature to every sample: the standard deviation across the batch, averaged over features
    (Karras et al. 2018). A batch of near-identical samples -- a collapsed generator -- has a small value,
    so the discriminator can see the collapse and the generator is pushed to spread out. (B, F) -> (B, F+1)."""

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if h.ndim != 2 or len(h) < 2:
            raise ValueError(f"minibatch std needs a batch of at least 2 feature rows, got {tuple(h.shape)}")
        s = h.std(0).mean().expand(len(h), 1)                                     # (B, 1)
        return torch.cat([h, s], 1)                                               # (B, F + 1)


def mlp_generator(latent: int, hidden: int, out: int, depth: int = 2, out_act: str | None = None) -> nn.Sequential:
    """noise (B, latent) -> samples (B, out): ``depth`` hidden ReLU layers; ``out_act="sigmoid"`` for pixels."""
    if min(latent, hidden, out, depth) < 1:
        raise ValueError(f"need positive sizes, got latent={latent}, hidden={hidden}, out={out}, depth={depth}")
    layers, width = [], latent
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), nn.ReLU()]
        width = hidden
    layers.append(nn.Linear(width, out))
    if out_act == "sigmoid":
        layers.append(nn.Sigmoid())
    elif out_act is not None:
        raise ValueError(f"out_act must be None or 'sigmoid', got {out_act!r}")
    return nn.Sequential(*layers)


class MLPDiscriminator(nn.Module):
    """samples (B, ...) -> logits (B,): ``depth`` hidden LeakyReLU(0.2) layers, optionally a
    :class:`MinibatchStd` feature before the last layer (``minibatch_std``) or next to the input
    (``input_std``: the spread of the batch's raw samples, which a collapsed generator cannot fake)."""

    def __init__(self, n_in: int, hidden: int, depth: int = 2, minibatch_std: bool = False,
                 input_std: bool = False):
        super().__init__()
        if min(n_in, hidden, depth) < 1:
            raise ValueError(f"need positive sizes, got n_in={n_in}, hidden={hidden}, depth={depth}")
        layers, width = [nn.Flatten()], n_in
        if input_std:
            layers, width = [nn.Flatten(), MinibatchStd()], n_in + 1
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.LeakyReLU(0.2)]
            width = hidden
        self.body = nn.Sequential(*layers)
        self.mbstd = MinibatchStd() if minibatch_std else None
        self.head = nn.Linear(hidden + (1 if minibatch_std else 0), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(x)                                                          # (B, hidden)
        if self.mbstd is not None:
            h = self.mbstd(h)                                                     # (B, hidden + 1)
        return self.head(h).squeeze(1)                                            # (B,)


# --------------------------------------------------------------------------- training
@dataclass
class GANHistory:
    """Per log point: step, mean D and G losses since the last point, mean D(x) on real and on generated
    samples, and a snapshot of samples drawn from the same fixed noise (CPU tensors)."""

    step: list = field(default_factory=list)
    d_loss: list = field(default_factory=list)
    g_loss: list = field(default_factory=list)
    d_real: list = field(default_factory=list)
    d_fake: list = field(default_factory=list)
    samples: list = field(default_factory=list)
    seconds: float = 0.0


def train_gan(gen: nn.Module, disc: nn.Module, real: Callable, *, latent: int, steps: int,
              batch_size: int = 64, lr_g: float = 2e-4, lr_d: float = 2e-4, betas=(0.5, 0.999),
              d_steps: int = 1, loss: str = "non_saturating", log_every: int = 100, n_show: int = 64,
              generator: torch.Generator | None = None, on_log: Callable | None = None) -> GANHistory:
    """Alternating updates: ``d_steps`` discriminator steps, then one generator step, ``steps`` times.

    ``real(n, generator)`` returns ``n`` real samples (on the networks' device). Adam with ``betas``
    (0.5, 0.999) as in DCGAN. Every ``log_every`` steps (and at the end) the history records the mean
    losses and D outputs since the last point and ``n_show`` samples from the same fixed noise;
    ``on_log(gen, history)`` is called then (a live view)."""
    if loss not in GEN_LOSSES:
        raise ValueError(f"loss must be one of {GEN_LOSSES}, got {loss!r}")
    if steps < 1 or d_steps < 1 or log_every < 1:
        raise ValueError(f"need steps, d_steps, log_every >= 1; got {steps}, {d_steps}, {log_every}")
    dev = next(gen.parameters()).device
    gen_ = generator or torch.Generator().manual_seed(0)

    def noise(n):
        return torch.randn(n, latent, generator=gen_).to(dev)

    z_show = noise(n_show)
    opt_g = torch.optim.Adam(gen.parameters(), lr=lr_g, betas=betas)
    opt_d = torch.optim.Adam(disc.parameters(), lr=lr_d, betas=betas)
    hist = GANHistory()
    sums, count = torch.zeros(4, device=dev), 0
    t0 = time.perf_counter()
    gen.train()
    disc.train()
    for step in range(1, steps + 1):
        for _ in range(d_steps):
            x = real(batch_size, gen_)
            with torch.no_grad():
                fake = gen(noise(batch_size))
            lr_, lf_ = disc(x), disc(fake)
            d_loss = discriminator_loss(lr_, lf_)
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
        lf = disc(gen(noise(batch_size)))
        g_loss = generator_loss(lf, loss)
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        sums += torch.stack([d_loss.detach(), g_loss.detach(), torch.sigmoid(lr_.detach()).mean(),
                             torch.sigmoid(lf_.detach()).mean()])
        count += 1
        if step % log_every == 0 or step == steps:
            d, g, dr, df = (sums / count).tolist()                          # one sync per log point
            if not math.isfinite(d + g):
                raise FloatingPointError(f"the GAN losses became {d}, {g} at step {step}; lower the learning rates")
            hist.step.append(step)
            hist.d_loss.append(d)
            hist.g_loss.append(g)
            hist.d_real.append(dr)
            hist.d_fake.append(df)
            with torch.no_grad():
                gen.eval()
                hist.samples.append(gen(z_show).cpu())
                gen.train()
            sums.zero_()
            count = 0
            hist.seconds = time.perf_counter() - t0
            if on_log is not None:
                on_log(gen, hist)
    gen.eval()
    disc.eval()
    return hist


def saturation_gradients(gen: nn.Module, disc: nn.Module, real: Callable, *, latent: int, d_steps: int,
                         batch_size: int = 128, lr: float = 1e-3, generator: torch.Generator | None = None) -> dict:
    """Train only the discriminator for ``d_steps`` against the frozen, untrained generator, then measure the
    gradient norm of each generator loss by the generator's parameters on one batch.

    Returns ``d_fake`` (mean D(G(z)): how confidently D rejects the samples) and the two gradient norms,
    ``saturating`` and ``non_saturating``: the situation at the start of training, when D wins easily."""
    gen_ = generator or torch.Generator().manual_seed(0)
    dev = next(gen.parameters()).device
    opt_d = torch.optim.Adam(disc.parameters(), lr=lr, betas=(0.5, 0.999))
    for _ in range(d_steps):
        with torch.no_grad():
            fake = gen(torch.randn(batch_size, latent, generator=gen_).to(dev))
        loss = discriminator_loss(disc(real(batch_size, gen_)), disc(fake))
        opt_d.zero_grad(set_to_none=True)
        loss.backward()
        opt_d.step()
    z = torch.randn(batch_size, latent, generator=gen_).to(dev)
    out = {}
    for kind in GEN_LOSSES:
        logits = disc(gen(z))
        grads = torch.autograd.grad(generator_loss(logits, kind), list(gen.parameters()))
        out[kind] = float(torch.sqrt(sum(g.pow(2).sum() for g in grads)))
    out["d_fake"] = float(torch.sigmoid(logits.detach()).mean())
    return out


@torch.no_grad()
def generate(gen: nn.Module, n: int, latent: int, generator: torch.Generator | None = None,
             batch_size: int = 1000) -> torch.Tensor:
    """``n`` samples of a trained generator from fresh noise (on the generator's device)."""
    dev = next(gen.parameters()).device
    z = torch.randn(n, latent, generator=generator).to(dev)
    was = gen.training
    gen.eval()
    out = torch.cat([gen(z[i:i + batch_size]) for i in range(0, n, batch_size)])
    gen.train(was)
    return out


# --------------------------------------------------------------------------- the ring of Gaussians
def ring_centers(modes: int = 8, radius: float = 2.0) -> torch.Tensor:
    """The ``modes`` centres evenly spaced on a circle: (modes, 2)."""
    if modes < 1 or radius <= 0:
        raise ValueError(f"need modes >= 1 and radius > 0, got {modes}, {radius}")
    a = torch.arange(modes) * (2 * math.pi / modes)
    return radius * torch.stack([a.cos(), a.sin()], 1)


def ring_sampler(modes: int = 8, radius: float = 2.0, std: float = 0.02, device="cpu") -> Callable:
    """``real(n, generator)`` for :func:`train_gan`: a mixture of ``modes`` equally likely Gaussians
    (standard deviation ``std``) on a circle -- the toy of Metz et al. (2017)."""
    centers = ring_centers(modes, radius)

    def real(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        k = torch.randint(0, modes, (n,), generator=generator)
        x = centers[k] + std * torch.randn(n, 2, generator=generator)               # (n, 2)
        return x.to(device)
    return real


def mode_coverage(samples: torch.Tensor, centers: torch.Tensor, std: float, k: float = 3.0,
                  min_share: float = 0.01) -> dict:
    """How well 2-D samples cover a mixture of Gaussians with these ``centers`` and ``std``.

    A sample is *high quality* if it lies within ``k`` standard deviations of its nearest centre; a mode is
    *covered* if at least ``min_share`` of all samples are high-quality samples of it. Returns ``modes``
    (the number covered), ``quality`` (the high-quality share) and ``shares`` (per mode)."""
    if samples.ndim != 2 or samples.shape[1] != centers.shape[1]:
        raise ValueError(f"samples {tuple(samples.shape)} and centers {tuple(centers.shape)} must be (N, d), (M, d)")
    d = torch.cdist(samples.float().cpu(), centers.float().cpu())                   # (N, M)
    dist, nearest = d.min(1)
    good = dist < k * std
    shares = torch.bincount(nearest[good], minlength=len(centers)).float() / len(samples)
    return {"modes": int((shares >= min_share).sum()), "quality": float(good.float().mean()), "shares": shares}


def image_sampler(images: torch.Tensor) -> Callable:
    """``real(n, generator)`` for :func:`train_gan` on images: ``n`` images (N, ...) drawn with replacement,
    flattened to (n, pixels) like an MLP generator's output, on the images' device."""
    if images.ndim < 2 or len(images) < 1:
        raise ValueError(f"need a batch of images (N, ...), got shape {tuple(images.shape)}")
    flat = images.flatten(1)                                                          # (N, pixels)

    def real(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return flat[torch.randint(0, len(flat), (n,), generator=generator).to(flat.device)]
    return real


# --------------------------------------------------------------------------- judging digits
@torch.no_grad()
def classifier_features(classifier: nn.Module, images: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """The input of a LeNet's last layer (its penultimate features, (N, 84)) for images (N, 1, 28, 28) --
    the space in which the "FID-like" distance compares image sets (FID uses an Inception network's)."""
    was = classifier.training
    classifier.eval()
    dev = next(classifier.parameters()).device
    body = nn.Sequential(classifier.features, *list(classifier.classifier)[:-1])
    out = torch.cat([body(images[i:i + batch_size].to(dev)).double()
                     for i in range(0, len(images), batch_size)])
    classifier.train(was)
    return out


def _sqrtm_psd(a: torch.Tensor) -> torch.Tensor:
    """The symmetric square root of a symmetric positive semi-definite matrix, by its eigenvectors."""
    w, v = torch.linalg.eigh((a + a.T) / 2)
    return (v * w.clamp_min(0).sqrt()) @ v.T


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """The Fréchet distance between Gaussians fitted to two feature sets (N, F) and (M, F):

    ``|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a^1/2 S_b S_a^1/2)^1/2)``, the squared 2-Wasserstein distance
    of the two Gaussians -- the formula of the Fréchet Inception Distance (Heusel et al. 2017)."""
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise ValueError(f"need two feature sets (N, F), (M, F) with N, M >= 2; got {tuple(a.shape)}, {tuple(b.shape)}")
    a, b = a.double(), b.double()
    return frechet_gaussians(a.mean(0), torch.cov(a.T), b.mean(0), torch.cov(b.T))


def frechet_gaussians(mu_a: torch.Tensor, cov_a: torch.Tensor, mu_b: torch.Tensor, cov_b: torch.Tensor) -> float:
    """The Fréchet distance of N(mu_a, cov_a) and N(mu_b, cov_b): means (F,), covariances (F, F)."""
    if cov_a.shape != (len(mu_a), len(mu_a)) or cov_b.shape != cov_a.shape or mu_b.shape != mu_a.shape:
        raise ValueError(f"need means (F,) and covariances (F, F); got {tuple(mu_a.shape)}, {tuple(cov_a.shape)}, "
                         f"{tuple(mu_b.shape)}, {tuple(cov_b.shape)}")
    mu_a, cov_a, mu_b, cov_b = (t.double() for t in (mu_a, cov_a, mu_b, cov_b))
    root_a = _sqrtm_psd(cov_a)
    cross = _sqrtm_psd(root_a @ cov_b @ root_a)                                    # (F, F)
    return float((mu_a - mu_b).pow(2).sum() + torch.trace(cov_a + cov_b - 2 * cross))


def class_entropy(probs: torch.Tensor) -> float:
    """Entropy (nats) of the histogram of predicted classes: log(10) when all ten digits are drawn equally
    often, 0 when every sample is read as the same digit (a collapsed generator)."""
    if probs.ndim != 2:
        raise ValueError(f"expected probabilities (N, classes), got {tuple(probs.shape)}")
    share = torch.bincount(probs.argmax(1).cpu(), minlength=probs.shape[1]).double() / len(probs)
    share = share[share > 0]
    return float(-(share * share.log()).sum())


@torch.no_grad()
def nearest_distance(x: torch.Tensor, reference: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Euclidean pixel distance of each image of ``x`` to its nearest image in ``reference``: (N,)."""
    ref = reference.flatten(1).float()
    return torch.cat([torch.cdist(x[i:i + batch_size].flatten(1).float().to(ref.device), ref).min(1).values
                      for i in range(0, len(x), batch_size)]).cpu()


def baseline_sets(x_train: torch.Tensor, x_test: torch.Tensor, n: int, generator: torch.Generator) -> dict:
    """The image sets a generator is compared with, ``n`` images each (``x_test`` needs ``2 n``):

    ``reference`` and ``held-out real``: two disjoint halves of the test images (the first is what scores
    compare *to*, the second shows what real, unseen data scores); ``training copies``: ``n`` training
    images returned verbatim (a memorising "generator"); ``pixel Gaussian``: draws from a Gaussian with the
    training pixels' mean and covariance, clipped to [0, 1]; ``uniform noise``."""
    if len(x_test) < 2 * n:
        raise ValueError(f"need at least {2 * n} test images for two disjoint halves, got {len(x_test)}")
    perm = torch.randperm(len(x_test), generator=generator)
    flat = x_train.flatten(1).double().cpu()                                        # (N, 784)
    mean, cov = flat.mean(0), torch.cov(flat.T)                                     # (784,), (784, 784)
    # a little jitter: dead border pixels make the covariance singular
    chol = torch.linalg.cholesky(cov + 1e-4 * torch.eye(flat.shape[1], dtype=torch.double))
    gauss = mean + torch.randn(n, flat.shape[1], generator=generator, dtype=torch.double) @ chol.T
    shape = (n, *x_train.shape[1:])
    dev = x_train.device
    return {"reference": x_test[perm[:n].to(dev)],
            "held-out real": x_test[perm[n:2 * n].to(dev)],
            "training copies": x_train[torch.randperm(len(x_train), generator=generator)[:n].to(dev)],
            "pixel Gaussian": gauss.clamp(0, 1).float().view(shape).to(dev),
            "uniform noise": torch.rand(shape, generator=generator).to(dev)}


def judge(classifier: nn.Module, images: torch.Tensor, real_features: torch.Tensor, train_images: torch.Tensor,
          threshold: float = 0.9, n_copy: int = 250) -> dict:
    """Every score of the chapter for one set of images: ``confident`` (share the classifier reads with
    probability > ``threshold``), ``entropy`` (of its class histogram), ``fid`` (Fréchet distance to
    ``real_features`` in the classifier's feature space) and ``copy`` (median pixel distance to the nearest
    training image, over the first ``n_copy`` images: a search through the whole training set is the
    costly part)."""
    probs = classifier_probs(classifier, images)
    return {"confident": float((probs.max(1).values > threshold).float().mean()),
            "entropy": class_entropy(probs),
            "fid": frechet_distance(classifier_features(classifier, images), real_features),
            "copy": float(nearest_distance(images[:n_copy], train_images).median())}


# --------------------------------------------------------------------------- views
class GANMonitor(Replay):
    """The base of the live figures for :func:`train_gan`: D and G losses and D's mean outputs per log
    point (left), the samples from the fixed noise (right, drawn by a subclass's ``draw_samples``). Pass
    ``on_log=monitor.update``; ``replay(max_frames=24, interval=400)`` plays the log points back."""

    replay_hint = "pass on_log=monitor.update to train_gan first"
    figsize = (10, 3.4)
    width_ratios = (1, 1)

    def __init__(self, title: str = "GAN"):
        self.title = title
        self.fig = self.live = self.history = None

    def draw_samples(self, ax, samples: torch.Tensor, step: int):
        raise NotImplementedError

    def draw(self, hist: GANHistory, k: int | None = None):
        """Draw log point ``k`` (default: the latest) of ``hist``."""
        import matplotlib.pyplot as plt

        if self.fig is None:
            self.fig, (self.ax_loss, self.ax_pts) = plt.subplots(
                1, 2, figsize=self.figsize, dpi=80, gridspec_kw={"width_ratios": self.width_ratios})
            self.fig.subplots_adjust(bottom=0.17)                       # room for the x label
        k = len(hist.step) - 1 if k is None else k
        steps = hist.step[:k + 1]
        ax = self.ax_loss
        ax.clear()
        ax.plot(steps, hist.d_loss[:k + 1], "o-", label="D loss")
        ax.plot(steps, hist.g_loss[:k + 1], "s-", label="G loss")
        ax.plot(steps, hist.d_real[:k + 1], ":", label="mean D(real)")
        ax.plot(steps, hist.d_fake[:k + 1], "--", label="mean D(generated)")
        ax.set(xlabel="step", xlim=(0, hist.step[-1] * 1.02 + 1), title=f"{self.title}: the two players")
        ax.legend(fontsize=7)
        self.draw_samples(self.ax_pts, hist.samples[k], hist.step[k])

    def update(self, gen, hist: GANHistory):
        """``train_gan``'s ``on_log``: record the history, draw the latest point and show it."""
        self.history = hist
        self.draw(hist)
        self.show_live()

    def _frames(self) -> int:
        return len(self.history.step) if self.history is not None else 0

    def _draw_frame(self, k: int):
        self.draw(self.history, k)


class RingMonitor(GANMonitor):
    """:class:`GANMonitor` on the ring: the samples from the fixed noise over the ring's centres."""

    def __init__(self, centers: torch.Tensor, title: str = "GAN"):
        super().__init__(title)
        self.centers = centers.cpu()

    def draw_samples(self, ax, samples: torch.Tensor, step: int):
        ax.clear()
        ax.scatter(samples[:, 0], samples[:, 1], s=4, alpha=0.5, label="generated")
        ax.scatter(self.centers[:, 0], self.centers[:, 1], marker="x", color="red", s=40, label="mode centres")
        lim = float(self.centers.abs().max()) * 1.6
        ax.set(xlim=(-lim, lim), ylim=(-lim, lim), aspect="equal", title=f"samples at step {step}")
        ax.legend(fontsize=7, loc="upper right")


class DigitMonitor(GANMonitor):
    """:class:`GANMonitor` on digits: the samples from the fixed noise as a grid of ``rows`` rows (flat
    (N, 784) generator outputs are shown as 28 x 28 images)."""

    figsize = (11, 3.0)
    width_ratios = (1, 1.6)

    def __init__(self, title: str = "GAN", rows: int = 3):
        super().__init__(title)
        self.rows = rows

    def draw_samples(self, ax, samples: torch.Tensor, step: int):
        draw_samples(ax, samples, rows=self.rows, title=f"samples at step {step} (same z every time)")


class LatentWalk(Explorer):
    """Walk a straight line ``z = (1 - t) z0 + t z1`` in a ring generator's noise space.

    Left: the whole path the generator maps the segment to, the real modes, and the point at ``t``. Right:
    the distance of each point on the path to its nearest mode centre, in standard deviations of the modes --
    between two modes a continuous generator has to cross empty space. ``show()`` adds a slider;
    ``player("t", values)`` precomputes frames for the web page."""

    defaults = dict(t=0.0)
    layout = dict(ncols=2, figsize=(10, 3.6), gridspec_kw={"bottom": 0.16})
    interval = 300

    def __init__(self, gen: nn.Module, z0: torch.Tensor, z1: torch.Tensor, centers: torch.Tensor, std: float,
                 n_path: int = 200, **settings):
        if z0.shape != z1.shape or z0.ndim != 1:
            raise ValueError(f"z0 and z1 must be two noise vectors of the same shape (latent,), got "
                             f"{tuple(z0.shape)} and {tuple(z1.shape)}")
        self.gen, self.z0, self.z1 = gen.eval(), z0.float(), z1.float()
        self.centers, self.std = centers.cpu().float(), std
        self.ts = torch.linspace(0, 1, n_path)
        self.path = self.points(self.ts)                                           # (n_path, 2)
        self.gap = torch.cdist(self.path, self.centers).min(1).values / std        # (n_path,)
        super().__init__(**settings)

    def _validate(self, s, changed):
        if not 0.0 <= float(s["t"]) <= 1.0:
            raise ValueError(f"t must lie in [0, 1], got {s['t']}")

    def _controls(self):
        import ipywidgets as w
        return {"t": w.FloatSlider(min=0.0, max=1.0, step=0.02, description="t")}

    @torch.no_grad()
    def points(self, ts: torch.Tensor) -> torch.Tensor:
        """The generator's outputs along the segment at the given ``t`` values: (len(ts), 2)."""
        dev = next(self.gen.parameters()).device
        z = (1 - ts[:, None]) * self.z0 + ts[:, None] * self.z1                  # (n, latent)
        return self.gen(z.to(dev)).cpu()

    def draw(self, **override) -> float:
        """Draw the settings (plus ``override``); returns the distance (in stds) of the point at ``t`` to its
        nearest mode."""
        s = self.resolve(**override)
        t = float(s["t"])
        p = self.points(torch.tensor([t]))[0]
        gap = float(torch.cdist(p[None], self.centers).min() / self.std)
        self.figure()
        ax, ax_gap = self.axes
        ax.clear()
        ax.plot(self.path[:, 0], self.path[:, 1], "-", color="C0", lw=1, label="G(z) along the segment")
        ax.scatter(self.centers[:, 0], self.centers[:, 1], marker="x", color="red", s=40, label="mode centres")
        ax.plot(*p.tolist(), "o", color="black", ms=9)
        lim = float(self.centers.abs().max()) * 1.6
        ax.set(xlim=(-lim, lim), ylim=(-lim, lim), aspect="equal", title=f"t = {t:.2f}")
        ax.legend(fontsize=7, loc="upper right")
        ax_gap.clear()
        ax_gap.semilogy(self.ts, self.gap.clamp_min(1e-2), color="C0")
        ax_gap.axhline(3, color="grey", ls=":", label="3 std: a high-quality sample")
        ax_gap.plot([t], [max(gap, 1e-2)], "o", color="black")
        ax_gap.set(xlabel="t", ylabel="distance to nearest mode (stds)",
                   title=f"distance to the nearest mode: {gap:.1f} std")
        ax_gap.legend(fontsize=7)
        return gap
