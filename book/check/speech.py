"""Self-checks for the chapter "Speech: from waveform to keywords"."""
from __future__ import annotations

import math

import torch

from book.check.core import Case, _g, run_cases
from book.nn.audio import dct_matrix, frame_count, mel_to_hz

__all__ = ["stft_frames", "noise_sigma", "htk_mel_to_hz", "dct_ii_matrix"]


def stft_frames(fn) -> None:
    """``fn(n_samples, n_fft, hop, center)`` -> how many STFT frames (librosa's and torch's convention)."""
    args = [(4000, 256, 80, True), (4000, 256, 80, False), (16000, 400, 160, True)]
    labels = ["the chapter's clips, centred", "the same, not centred", "16 kHz, 25 ms / 10 ms"]
    cases = [Case(a, frame_count(*a), label=lab) for a, lab in zip(args, labels)]
    extra = [(256, 256, 80, False), (1000, 512, 128, True), (22050, 2048, 512, True), (300, 256, 100, False)]
    cases += [Case(a, frame_count(*a), public=False, label=str(a)) for a in extra]
    run_cases("stft_frames", lambda *a: int(fn(*a)), cases,
              hint="centring adds n_fft // 2 samples at each end; then count the hops that still fit")


def noise_sigma(fn) -> None:
    """``fn(signal_power, snr_db)`` -> the standard deviation of white noise at that SNR."""
    cases = [Case((1.0, 0.0), 1.0, label="0 dB: as loud as the signal"),
             Case((1.0, 20.0), 0.1, label="20 dB, unit power"),
             Case((4.0, 10.0), math.sqrt(0.4), public=False, label="power 4, 10 dB"),
             Case((0.5, -5.0), math.sqrt(0.5 * 10 ** 0.5), public=False, label="-5 dB: noise louder")]
    run_cases("noise_sigma", lambda p, s: float(fn(p, s)), cases,
              hint="SNR in dB is 10 log10(signal power / noise power); white noise's power is sigma^2")


def htk_mel_to_hz(fn) -> None:
    """``fn(m)`` -> hertz for ``m`` HTK mels (the inverse of ``2595 log10(1 + f / 700)``)."""
    ms = [0.0, 1000.0, 2146.06]
    cases = [Case((m,), float(mel_to_hz(m, htk=True)), label=f"{m} mel") for m in ms]
    cases += [Case((m,), float(mel_to_hz(m, htk=True)), public=False, label=f"{m} mel")
              for m in (1.0, 500.0, 3000.0)]
    run_cases("htk_mel_to_hz", lambda m: float(fn(m)), cases,
              hint="divide by 2595, undo log10 with a power of 10, subtract 1, multiply by 700")


def dct_ii_matrix(fn) -> None:
    """``fn(n)`` -> the orthonormal DCT-II matrix ``(n, n)`` (row k: the k-th cosine)."""
    cases = [Case((2,), dct_matrix(2), label="n = 2"), Case((4,), dct_matrix(4), label="n = 4"),
             Case((13,), dct_matrix(13), public=False, label="n = 13"),
             Case((32,), dct_matrix(32), public=False, label="n = 32")]

    def compare(got, expected):
        got = torch.as_tensor(got, dtype=torch.float64)
        if got.shape != expected.shape:
            return False, f"shape {tuple(got.shape)}, expected {tuple(expected.shape)}"
        x = torch.randn(expected.shape[0], generator=_g(5), dtype=torch.float64)
        if not torch.allclose(got @ x, expected @ x, atol=1e-9):
            rows = (got - expected).abs().amax(1) > 1e-9
            return False, f"rows {rows.nonzero().flatten().tolist()} differ"
        return True, ""
    run_cases("dct_ii_matrix", fn, cases, compare,
              hint="row 0 is constant sqrt(1/n); row k is sqrt(2/n) cos(pi k (2j + 1) / (2n))")
