"""book.lab.speech: the generated keywords, features, baselines, model and view; and the chapter's checks.
(book.nn.audio itself is tested against librosa and torch in tests/unit/test_audio.py.)"""
import math

import matplotlib
import pytest
import torch

from book.lab import speech as sp
from book.nn import audio

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def clips():
    return sp.make_keywords(32, seed=3, snr_db=math.inf)


def test_keywords_come_in_reversed_pairs():
    assert len(set(sp.KEYWORDS)) == 8
    assert all(k[::-1] in sp.KEYWORDS and k[::-1] != k for k in sp.KEYWORDS)


def test_make_keywords_is_balanced_deterministic_and_unit_power(clips):
    x, y, snr = clips
    assert x.shape == (32, sp.N_SAMPLES) and x.dtype == torch.float32
    assert torch.bincount(y).tolist() == [4] * 8
    assert torch.isinf(snr).all()
    assert torch.allclose(x.pow(2).mean(1), torch.ones(32), atol=1e-4)
    x2, y2, _ = sp.make_keywords(32, seed=3, snr_db=math.inf)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert not torch.equal(sp.make_keywords(32, seed=4, snr_db=math.inf)[0], x)
    _, _, snr = sp.make_keywords(64, seed=0)
    assert snr.min() >= -10 and snr.max() <= 30 and snr.std() > 5       # random SNRs


def test_add_noise_reaches_the_asked_snr(clips):
    x = clips[0]
    for snr_db in (-10.0, 0.0, 20.0):
        noisy = sp.add_noise(x, snr_db, torch.Generator().manual_seed(0))
        noise = noisy - x
        measured = 10 * torch.log10(x.pow(2).mean() / noise.pow(2).mean())
        assert abs(float(measured) - snr_db) < 0.1


def test_clip_is_silent_outside_the_word(clips):
    x = clips[0]
    assert (x[:, :100].abs().max() < 1e-6)       # the word starts at 20 ms or later


def test_pairs_differ_in_order_not_in_average():
    """A keyword and its reversal have nearly the same time-averaged spectrum, but different log-mel
    images: the reason the task needs order."""
    x, y, _ = sp.make_keywords(400, seed=1, snr_db=math.inf)
    m = sp.mean_mfcc(x)[:, :sp.N_MFCC]
    cent = torch.stack([m[y == k].mean(0) for k in range(8)])
    d = torch.cdist(cent, cent)
    partner = torch.tensor([sp.KEYWORDS.index(k[::-1]) for k in sp.KEYWORDS])
    pair = d[torch.arange(8), partner]
    other = d.masked_fill(torch.eye(8, dtype=torch.bool), float("inf"))
    other[torch.arange(8), partner] = float("inf")
    assert (pair < 0.5 * other.min(1).values).all()


def test_features_shapes_and_standardisation(clips):
    x = clips[0][:4]
    frames = audio.frame_count(sp.N_SAMPLES, sp.N_FFT, sp.HOP)
    f = sp.features(x, "log-mel")
    assert f.shape == (4, 1, sp.N_MELS, frames) and f.dtype == torch.float32
    assert torch.allclose(f.mean(dim=(-2, -1)), torch.zeros(4, 1), atol=1e-5)
    assert sp.features(x, "mfcc").shape == (4, 1, sp.N_MFCC, frames)
    assert torch.allclose(sp.features(3 * x, "log-mel"), f, atol=1e-4)     # loudness does not matter
    with pytest.raises(ValueError, match="kind"):
        sp.features(x, "spectrogram")
    assert sp.mean_mfcc(x).shape == (4, 2 * sp.N_MFCC)


def test_nearest_centroid_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    tx, ty = torch.randn(60, 5, generator=g), torch.arange(60) % 3
    q = torch.randn(7, 5, generator=g)
    got = sp.nearest_centroid(tx, ty, q)
    mu, sd = tx.mean(0), tx.std(0) + 1e-8
    cents = [((tx[ty == c] - mu) / sd).mean(0) for c in range(3)]
    want = [min(range(3), key=lambda c: float(((qi - mu) / sd - cents[c]).norm())) for qi in q]
    assert got.tolist() == want


def test_models_shapes():
    cnn = sp.KeywordCNN(8, width=4)
    assert cnn(torch.zeros(2, 1, sp.N_MELS, 51)).shape == (2, 8)
    assert cnn(torch.zeros(2, 1, sp.N_MFCC, 51)).shape == (2, 8)
    lin = sp.Standardised(torch.zeros(26), torch.ones(26), 8)
    assert lin(torch.zeros(3, 26)).shape == (3, 8)


def test_explorer_draws_and_validates():
    torch.manual_seed(0)
    view = sp.KeywordExplorer(sp.KeywordCNN(8, width=4), kind="log-mel")
    out = view.draw(keyword="sui", snr=10.0)
    assert out["prediction"] in sp.KEYWORDS and abs(float(out["probs"].sum()) - 1) < 1e-5
    assert len(view.fig.axes) == 5
    assert torch.equal(view.clip("ai", 20.0), view.clip("ai", 20.0))
    with pytest.raises(ValueError, match="keyword"):
        view.draw(keyword="xy")
    with pytest.raises(ValueError, match="snr"):
        view.draw(snr=100.0)
    with pytest.raises(TypeError):
        sp.KeywordExplorer(sp.KeywordCNN(8, width=4), speed=2)
    snr = view._controls()["snr"]                 # the slider reaches every test SNR
    assert snr.min <= min(sp.SNRS) and snr.max >= max(sp.SNRS)


def test_checks_accept_solutions_and_reject_wrong_ones(check_verdict):
    check_verdict("stft_frames",
                  lambda n, N, H, c: 1 + ((n + 2 * (N // 2) if c else n) - N) // H,
                  lambda n, N, H, c: n // H)                                     # forgets the frame length
    check_verdict("noise_sigma", lambda p, s: math.sqrt(p * 10 ** (-s / 10)),
                  lambda p, s: p * 10 ** (-s / 10))                              # the power, not sigma
    check_verdict("htk_mel_to_hz", lambda m: 700 * (10 ** (m / 2595) - 1),
                  lambda m: 700 * (math.exp(m / 2595) - 1))                      # e instead of 10

    def dct_good(n):
        return audio.dct_matrix(n)

    def dct_bad(n):                                                              # row 0 not rescaled
        k, j = torch.arange(n)[:, None].double(), torch.arange(n)[None, :].double()
        return torch.cos(math.pi * k * (2 * j + 1) / (2 * n)) * math.sqrt(2 / n)
    check_verdict("dct_ii_matrix", dct_good, dct_bad)
