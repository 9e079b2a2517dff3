"""Speech features from scratch, taught in the speech chapter: framing and a Hann window, the short-time
Fourier transform (STFT) as a matrix product, the power spectrogram, the mel filterbank (Slaney's mel
scale and area normalisation, librosa's default; HTK's scale on request), log-mel in decibels and the
DCT-II that turns log-mel into MFCCs.

Every function takes a torch tensor whose last axis is time (a batch of signals ``(..., samples)``) and
follows librosa 0.11's conventions and defaults, so that ``tests/chapters/test_speech.py`` can check each
step against ``librosa.stft``, ``librosa.filters.mel``, ``librosa.feature.melspectrogram``,
``librosa.feature.mfcc`` and ``torch.stft``. Spectrograms are ``(..., frequency, frames)``.
"""
from __future__ import annotations

import math

import torch


def frame_count(n_samples: int, n_fft: int, hop: int, center: bool = True) -> int:
    """How many frames :func:`frames` cuts from ``n_samples`` samples (``center`` pads ``n_fft // 2``
    zeros on each side first)."""
    if n_fft < 1 or hop < 1:
        raise ValueError(f"n_fft and hop must be >= 1, got {n_fft}, {hop}")
    n = n_samples + 2 * (n_fft // 2) if center else n_samples
    if n < n_fft:
        raise ValueError(f"{n_samples} samples are fewer than one frame of {n_fft}")
    return 1 + (n - n_fft) // hop


def frames(x: torch.Tensor, n_fft: int, hop: int, center: bool = True) -> torch.Tensor:
    """Overlapping frames ``(..., n_frames, n_fft)`` of signals ``x (..., samples)``, one every ``hop``
    samples. ``center=True`` pads ``n_fft // 2`` zeros at both ends, so frame ``t`` is centred on sample
    ``t * hop`` (librosa's and torch's default, with ``pad_mode="constant"``)."""
    frame_count(x.shape[-1], n_fft, hop, center)       # validates
    if center:
        x = torch.nn.functional.pad(x, (n_fft // 2, n_fft // 2))
    return x.unfold(-1, n_fft, hop)


def hann_window(n: int, dtype=torch.float64) -> torch.Tensor:
    """The periodic Hann window ``0.5 - 0.5 cos(2 pi k / n)``, ``k = 0..n-1`` (the one an FFT of length
    ``n`` wants; ``torch.hann_window`` and ``scipy.signal.get_window("hann", n)`` give the same)."""
    k = torch.arange(n, dtype=dtype)
    return 0.5 - 0.5 * torch.cos(2 * math.pi * k / n)


def dft_matrices(n_fft: int, dtype=torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """``(C, S)``, each ``(n_fft // 2 + 1, n_fft)``: ``C[k, n] = cos(2 pi k n / N)``, ``S[k, n] = sin(...)``.
    The DFT of a real frame ``f`` at the non-negative frequencies is ``C f - i S f``."""
    k = torch.arange(n_fft // 2 + 1, dtype=dtype)[:, None]
    n = torch.arange(n_fft, dtype=dtype)[None, :]
    angle = 2 * math.pi * ((k * n) % n_fft) / n_fft       # exact reduction before cos/sin
    return torch.cos(angle), torch.sin(angle)


def stft(x: torch.Tensor, n_fft: int, hop: int, center: bool = True) -> torch.Tensor:
    """Complex STFT ``(..., n_fft // 2 + 1, n_frames)`` with a periodic Hann window: window each frame,
    then multiply by the DFT matrices (no FFT: the matrix product is what the FFT computes fast)."""
    dtype = x.dtype if x.is_floating_point() else torch.float64
    f = frames(x.to(dtype), n_fft, hop, center) * hann_window(n_fft, dtype)   # (..., T, N)
    C, S = dft_matrices(n_fft, dtype)
    return torch.complex(f @ C.T, -(f @ S.T)).transpose(-1, -2)


def power_spectrogram(x: torch.Tensor, n_fft: int, hop: int, center: bool = True) -> torch.Tensor:
    """``|STFT|^2``, ``(..., n_fft // 2 + 1, n_frames)``, real."""
    dtype = x.dtype if x.is_floating_point() else torch.float64
    f = frames(x.to(dtype), n_fft, hop, center) * hann_window(n_fft, dtype)
    C, S = dft_matrices(n_fft, dtype)
    return ((f @ C.T) ** 2 + (f @ S.T) ** 2).transpose(-1, -2)


# ---------------------------------------------------------------------------- the mel scale
_F_SP = 200.0 / 3                       # Slaney: 200/3 Hz per mel below 1 kHz
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP      # = 15 mel
_LOGSTEP = math.log(6.4) / 27.0         # above 1 kHz: 27 mel per factor 6.4


def hz_to_mel(f, htk: bool = False) -> torch.Tensor:
    """Hertz -> mel. Slaney (default, librosa's): linear below 1 kHz, logarithmic above.
    HTK: ``2595 log10(1 + f / 700)``."""
    f = torch.as_tensor(f, dtype=torch.float64)
    if htk:
        return 2595.0 * torch.log10(1.0 + f / 700.0)
    lin = f / _F_SP
    log = _MIN_LOG_MEL + torch.log(torch.clamp(f, min=_MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOGSTEP
    return torch.where(f >= _MIN_LOG_HZ, log, lin)


def mel_to_hz(m, htk: bool = False) -> torch.Tensor:
    """Mel -> hertz, the inverse of :func:`hz_to_mel`."""
    m = torch.as_tensor(m, dtype=torch.float64)
    if htk:
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    lin = _F_SP * m
    log = _MIN_LOG_HZ * torch.exp(_LOGSTEP * (torch.clamp(m, min=_MIN_LOG_MEL) - _MIN_LOG_MEL))
    return torch.where(m >= _MIN_LOG_MEL, log, lin)


def mel_filterbank(sr: float, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None,
                   htk: bool = False, norm: str | None = "slaney") -> torch.Tensor:
    """``(n_mels, n_fft // 2 + 1)`` triangular filters, evenly spaced on the mel scale between ``fmin`` and
    ``fmax`` (default ``sr / 2``). Filter ``m`` rises from mel point ``m`` to ``m + 1`` and falls to
    ``m + 2`` (linearly in hertz). ``norm="slaney"`` scales each by ``2 / (its base width in hertz)``, so every
    triangle has unit area: a broad high filter does not collect more energy just by being broad."""
    fmax = sr / 2 if fmax is None else fmax
    if not 0 <= fmin < fmax <= sr / 2:
        raise ValueError(f"need 0 <= fmin < fmax <= sr / 2, got fmin={fmin}, fmax={fmax}, sr={sr}")
    if norm not in ("slaney", None):
        raise ValueError(f"norm must be 'slaney' or None, got {norm!r}")
    # bin k is k * sr / n_fft hertz (numpy's rfftfreq); for an odd n_fft the last bin is below sr / 2
    fft_hz = torch.arange(n_fft // 2 + 1, dtype=torch.float64) * (sr / n_fft)
    edges = mel_to_hz(torch.linspace(float(hz_to_mel(fmin, htk)), float(hz_to_mel(fmax, htk)),
                                     n_mels + 2, dtype=torch.float64), htk)     # (n_mels + 2,)
    width = edges.diff()
    rise = (fft_hz[None, :] - edges[:-2, None]) / width[:-1, None]
    fall = (edges[2:, None] - fft_hz[None, :]) / width[1:, None]
    w = torch.clamp(torch.minimum(rise, fall), min=0.0)
    if norm == "slaney":
        w = w * (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return w


def power_to_db(S: torch.Tensor, amin: float = 1e-10, top_db: float | None = 80.0) -> torch.Tensor:
    """``10 log10(max(S, amin))`` (reference power 1), floored ``top_db`` below the maximum of each
    spectrogram (the last two axes; librosa floors below the maximum of the whole array it is given)."""
    db = 10.0 * torch.log10(torch.clamp(S, min=amin))
    if top_db is not None:
        peak = db.amax(dim=(-2, -1), keepdim=True)
        db = torch.maximum(db, peak - top_db)
    return db


def log_mel(x: torch.Tensor, sr: float, n_fft: int, hop: int, n_mels: int, fmin: float = 0.0,
            fmax: float | None = None, top_db: float | None = 80.0) -> torch.Tensor:
    """Log-mel spectrogram in dB, ``(..., n_mels, n_frames)``: power spectrogram, mel filterbank, dB."""
    P = power_spectrogram(x, n_fft, hop)
    fb = mel_filterbank(sr, n_fft, n_mels, fmin, fmax).to(P.dtype)
    return power_to_db(fb @ P, top_db=top_db)


def dct_matrix(n: int, dtype=torch.float64) -> torch.Tensor:
    """Orthonormal DCT-II matrix ``D (n, n)``: ``(D x)_k = s_k sum_j x_j cos(pi k (2j + 1) / (2n))`` with
    ``s_0 = sqrt(1/n)`` and ``s_k = sqrt(2/n)``; ``D @ D.T = I`` (scipy's ``dct(type=2, norm="ortho")``)."""
    k = torch.arange(n, dtype=dtype)[:, None]
    j = torch.arange(n, dtype=dtype)[None, :]
    D = torch.cos(math.pi * k * (2 * j + 1) / (2 * n)) * math.sqrt(2.0 / n)
    D[0] /= math.sqrt(2.0)
    return D


def mfcc_from_log_mel(L: torch.Tensor, n_mfcc: int) -> torch.Tensor:
    """The first ``n_mfcc`` DCT-II coefficients along the mel axis: ``(..., n_mfcc, n_frames)``."""
    n_mels = L.shape[-2]
    if not 1 <= n_mfcc <= n_mels:
        raise ValueError(f"n_mfcc must be in 1..{n_mels} (the mel bands), got {n_mfcc}")
    return dct_matrix(n_mels, L.dtype)[:n_mfcc] @ L


def mfcc(x: torch.Tensor, sr: float, n_fft: int, hop: int, n_mels: int, n_mfcc: int,
         fmin: float = 0.0, fmax: float | None = None) -> torch.Tensor:
    """Mel-frequency cepstral coefficients ``(..., n_mfcc, n_frames)``: DCT-II of the log-mel spectrogram."""
    return mfcc_from_log_mel(log_mel(x, sr, n_fft, hop, n_mels, fmin, fmax), n_mfcc)
