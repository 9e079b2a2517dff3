"""Speech: generated spoken-word-like keywords, their features and a small keyword recogniser.

Chapter: ``speech``. The features are :mod:`book.nn.audio` (from scratch, checked against librosa).

* :func:`make_keywords` synthesises keywords: two or three *phones* -- the vowels "a", "i", "u" (the
  harmonics of a voice at the speaker's pitch, shaped by three formants) and the fricative "s" (band-pass
  noise) -- with random speaker pitch and pitch slope, speed, start time, and white background noise at a
  chosen signal-to-noise ratio. The eight keywords come in pairs that contain the same sounds in the
  opposite order ("ai" / "ia"), so a feature averaged over time cannot tell a pair apart: the task
  needs temporal order.
* :func:`features` turns signals into log-mel spectrograms or MFCCs; :class:`KeywordCNN` classifies them.
* Baselines: the majority class, and a nearest-centroid and a logistic-regression classifier on
  time-averaged MFCCs (:func:`mean_mfcc`, :func:`nearest_centroid`).
* :class:`KeywordExplorer`: one keyword at a chosen SNR -> waveform, spectrogram, log-mel, MFCC and the
  model's prediction.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from book.nn.audio import log_mel, mfcc_from_log_mel, power_spectrogram, power_to_db
from book.ui.explorer import Explorer

SR = 8000                    # samples per second (telephone band: everything below 4 kHz)
DURATION = 0.5               # seconds per clip
N_SAMPLES = int(SR * DURATION)
N_FFT, HOP, N_MELS, N_MFCC = 256, 80, 32, 13      # 32 ms frames every 10 ms
# (F1, F2, F3) in Hz: roughly an adult male voice's first three formants of each vowel
FORMANTS = {"a": (730.0, 1090.0, 2440.0), "i": (270.0, 2290.0, 3010.0), "u": (300.0, 870.0, 2240.0)}
BANDWIDTHS = (90.0, 110.0, 170.0)
FORMANT_GAINS = (1.0, 0.5, 0.25)
FRICATIVE_BAND = (2200.0, 3800.0)   # "s": noise in this band (at 8 kHz its real band is cut off)
KEYWORDS = ("ai", "ia", "au", "ua", "sa", "as", "ius", "sui")
SNRS = (-10.0, -5.0, 0.0, 5.0, 10.0, 20.0)   # the test SNRs (dB)


def add_noise(x: torch.Tensor, snr_db, generator: torch.Generator) -> torch.Tensor:
    """``x (n, samples)`` plus white Gaussian noise whose power is the clip's power over ``10^(snr/10)``
    (``snr_db``: one value or one per clip)."""
    snr = torch.as_tensor(snr_db, dtype=x.dtype).reshape(-1, 1)
    power = x.pow(2).mean(-1, keepdim=True)
    sigma = torch.sqrt(power / 10 ** (snr / 10))
    return x + sigma * torch.randn(x.shape, generator=generator, dtype=x.dtype)


def _synthesise(word: str, rng: np.random.Generator) -> np.ndarray:
    """One clean clip of ``word`` (normalised to unit power) with a random speaker, speed and start."""
    t = np.arange(N_SAMPLES) / SR
    length = rng.uniform(0.25, 0.40)                         # seconds: the speed
    start = rng.uniform(0.02, DURATION - length - 0.02)
    u = (t - start) / length                                 # 0..1 inside the word
    n = len(word)
    cuts = np.linspace(0, 1, n + 1)
    cuts[1:-1] += rng.uniform(-0.12, 0.12, n - 1) / n        # uneven phone durations
    # knots: each phone holds its formants over its middle, and glides to the next at the joins
    knots, values, voiced = [], [], []
    for j, ph in enumerate(word):
        a, b = cuts[j], cuts[j + 1]
        m = 0.25 * (b - a)
        knots += [a + m, b - m]
        # "s" is unvoiced; its formants (unheard) are the neighbouring vowel's, so joins glide only there
        vowel = ph if ph != "s" else next((c for c in word[j:] + word[::-1] if c != "s"))
        f = FORMANTS[vowel]
        values += [f, f]
        voiced += [0.0 if ph == "s" else 1.0] * 2
    values = np.array(values)
    F = np.stack([np.interp(u, knots, values[:, k]) for k in range(3)])     # (3, T)
    v = np.interp(u, knots, voiced)
    env = np.clip(np.minimum(u, 1 - u) / 0.06, 0, 1)                        # fade in/out, 0 outside
    f0 = rng.uniform(90, 220) * (1 + rng.uniform(-0.15, 0.15) * (u.clip(0, 1) - 0.5))
    phase = 2 * math.pi * np.cumsum(f0) / SR
    # the harmonics k * f0 (all in phase: a buzz like the glottis'), each weighted by the formant
    # resonances at its frequency; the weights change slowly, so they are computed every 5 ms
    coarse = slice(0, N_SAMPLES, 40)
    k = np.arange(1, int(SR / 2 / 90))[:, None]                               # (K, 1)
    fk = k * f0[coarse]                                                        # (K, T / 40)
    gain = sum(g / (1 + ((fk - Fj[coarse]) / B) ** 2)
               for g, Fj, B in zip(FORMANT_GAINS, F, BANDWIDTHS)) * (fk < 0.95 * SR / 2)
    gain = np.repeat(gain, 40, axis=1)[:, :N_SAMPLES]
    two_cos, s_prev, s_now = 2 * np.cos(phase), np.zeros(N_SAMPLES), np.sin(phase)
    voice = np.zeros(N_SAMPLES)
    for g in gain:                       # sin(k phase) by the recurrence s_k = 2 cos(phase) s_k-1 - s_k-2
        voice += g * s_now
        s_prev, s_now = s_now, two_cos * s_now - s_prev
    spec = np.fft.rfft(rng.standard_normal(N_SAMPLES))
    hz = np.fft.rfftfreq(N_SAMPLES, 1 / SR)
    spec[(hz < FRICATIVE_BAND[0]) | (hz > FRICATIVE_BAND[1])] = 0
    hiss = np.fft.irfft(spec, N_SAMPLES)
    hiss *= 0.8 * voice[v > 0.5].std() / hiss.std() if (v > 0.5).any() else 1 / hiss.std()
    x = env * (v * voice + (1 - v) * hiss)
    return x / np.sqrt(np.mean(x ** 2))


def make_keywords(n: int, seed: int, snr_db=None, snr_range=(-10.0, 30.0)):
    """``(x (n, N_SAMPLES) float32, y (n,) long, snr (n,))``: ``n`` clips, the keywords in turn (balanced),
    shuffled; background noise at ``snr_db`` (one value for all), at a uniform random SNR in
    ``snr_range`` when ``snr_db`` is None, or none at all when ``snr_db`` is ``inf``."""
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(n) % len(KEYWORDS))
    clean = torch.tensor(np.stack([_synthesise(KEYWORDS[k], rng) for k in y]), dtype=torch.float32)
    if snr_db is None:
        snr = torch.tensor(rng.uniform(*snr_range, n), dtype=torch.float32)
    else:
        snr = torch.full((n,), float(snr_db))
    g = torch.Generator().manual_seed(seed)
    x = clean if math.isinf(float(snr_db if snr_db is not None else 0)) else add_noise(clean, snr, g)
    return x, torch.tensor(y, dtype=torch.long), snr


def features(x: torch.Tensor, kind: str = "log-mel") -> torch.Tensor:
    """``(n, 1, bands, frames)`` float32: log-mel in dB (``N_MELS`` bands) or MFCCs (``N_MFCC``), each
    standardised per clip (zero mean, unit variance), so loudness does not matter."""
    if kind not in ("log-mel", "mfcc"):
        raise ValueError(f"kind must be 'log-mel' or 'mfcc', got {kind!r}")
    L = log_mel(x.double(), SR, N_FFT, HOP, N_MELS)
    f = L if kind == "log-mel" else mfcc_from_log_mel(L, N_MFCC)
    f = (f - f.mean(dim=(-2, -1), keepdim=True)) / (f.std(dim=(-2, -1), keepdim=True) + 1e-8)
    return f.float().unsqueeze(1)


def mean_mfcc(x: torch.Tensor) -> torch.Tensor:
    """``(n, 2 * N_MFCC)``: each clip's MFCCs averaged over its frames, and their standard deviation over
    frames -- what the clip sounds like on average, with every trace of order removed."""
    c = mfcc_from_log_mel(log_mel(x.double(), SR, N_FFT, HOP, N_MELS), N_MFCC)
    return torch.cat([c.mean(-1), c.std(-1)], dim=1).float()


def nearest_centroid(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor) -> torch.Tensor:
    """Predicted classes of ``test_x``: the class whose training mean is nearest (after standardising each
    feature with the training mean and standard deviation)."""
    mu, sd = train_x.mean(0), train_x.std(0) + 1e-8
    a, b = (train_x - mu) / sd, (test_x - mu) / sd
    classes = train_y.unique()
    centroids = torch.stack([a[train_y == c].mean(0) for c in classes])
    return classes[torch.cdist(b, centroids).argmin(1)]


class Standardised(nn.Module):
    """A linear classifier on features standardised with fixed (training) statistics: logistic regression."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, n_classes: int):
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std + 1e-8)
        self.linear = nn.Linear(len(mean), n_classes)

    def forward(self, x):
        return self.linear((x - self.mean) / self.std)


class KeywordCNN(nn.Module):
    """Two conv blocks (3x3 conv, batch norm, ReLU, 2x2 max-pool) over (bands, frames), a third conv, then
    the maximum over time and frequency and a linear layer. The convolutions see order within their
    receptive field -- 3, 4, 8, 10, 18 frames after conv, pool, conv, pool, conv: 17 hops of 10 ms plus a
    32 ms frame, about 200 ms -- enough to tell a rising formant from a falling one."""

    def __init__(self, n_classes: int = len(KEYWORDS), width: int = 16):
        super().__init__()

        def block(i, o):
            return [nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU(), nn.MaxPool2d(2)]
        self.body = nn.Sequential(*block(1, width), *block(width, 2 * width),
                                  nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(2 * width, n_classes)

    def forward(self, x):
        return self.head(self.body(x).amax(dim=(-2, -1)))


# ============================================================================ the explorer
class KeywordExplorer(Explorer):
    """One keyword at a chosen SNR, as the recogniser hears it: the waveform, its power spectrogram (dB),
    the log-mel spectrogram, the MFCCs and the model's probabilities for the eight keywords."""

    defaults = {"keyword": "ai", "snr": 20.0}
    layout = {"nrows": 1, "ncols": 5, "figsize": (15, 3)}

    def __init__(self, model: nn.Module, kind: str = "log-mel", seed: int = 7, **settings):
        self.model, self.kind, self.seed = model, kind, seed
        super().__init__(**settings)

    def _controls(self):
        import ipywidgets as w
        return {"keyword": w.Dropdown(options=KEYWORDS, description="keyword"),
                "snr": w.FloatSlider(min=-10, max=40, step=5, description="SNR (dB)")}

    def _validate(self, s, changed):
        if s["keyword"] not in KEYWORDS:
            raise ValueError(f"keyword must be one of {KEYWORDS}, got {s['keyword']!r}")
        if not -20 <= s["snr"] <= 60:
            raise ValueError(f"snr must be in -20..60 dB, got {s['snr']}")

    def clip(self, keyword: str, snr: float) -> torch.Tensor:
        """The view's clip of ``keyword`` with noise at ``snr`` dB. One generator seed: every keyword gets the
        same speed and start, and keywords of equal length (a keyword and its reversal) the same speaker."""
        rng = np.random.default_rng(self.seed)
        clean = torch.tensor(_synthesise(keyword, rng), dtype=torch.float32)[None]
        return add_noise(clean, snr, torch.Generator().manual_seed(self.seed))

    def draw(self, **override):
        s = self.resolve(**override)
        x = self.clip(s["keyword"], s["snr"])
        P = power_to_db(power_spectrogram(x.double(), N_FFT, HOP))[0]
        L = log_mel(x.double(), SR, N_FFT, HOP, N_MELS)
        C = mfcc_from_log_mel(L, N_MFCC)[0]
        was = self.model.training
        self.model.eval()
        with torch.no_grad():
            p = self.model(features(x, self.kind).to(next(self.model.parameters()).device))
        self.model.train(was)
        p = p.softmax(-1)[0].cpu()
        self.figure()
        for ax in self.axes:
            ax.clear()
        ax = self.axes
        ax[0].plot(np.arange(N_SAMPLES) / SR, x[0].numpy(), lw=0.4)
        ax[0].set(title=f'"{s["keyword"]}" at {s["snr"]:g} dB SNR', xlabel="time (s)")
        ext = (0, DURATION, 0, SR / 2)
        ax[1].imshow(P.numpy(), origin="lower", aspect="auto", extent=ext, vmin=P.max() - 80)
        ax[1].set(title="power spectrogram (dB)", xlabel="time (s)", ylabel="Hz")
        ax[2].imshow(L[0].numpy(), origin="lower", aspect="auto", extent=(0, DURATION, 0, N_MELS))
        ax[2].set(title="log-mel (dB)", xlabel="time (s)", ylabel="mel band")
        ax[3].imshow(C.numpy(), origin="lower", aspect="auto", extent=(0, DURATION, 0, N_MFCC),
                     cmap="coolwarm")
        ax[3].set(title="MFCC", xlabel="time (s)", ylabel="coefficient")
        guess = int(p.argmax())
        colors = ["tab:green" if KEYWORDS[k] == s["keyword"] else "tab:gray" for k in range(len(KEYWORDS))]
        ax[4].bar(range(len(KEYWORDS)), p.numpy(), color=colors)
        ax[4].set_xticks(range(len(KEYWORDS)), KEYWORDS)
        ax[4].set(ylim=(0, 1), title=f"model hears: {KEYWORDS[guess]!r}")
        self.fig.tight_layout()
        return {"probs": p, "prediction": KEYWORDS[guess]}
