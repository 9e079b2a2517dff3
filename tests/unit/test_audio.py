"""book.nn.audio: framing, Hann window, STFT, mel filterbank, log-mel and MFCC against librosa and torch."""
import librosa
import numpy as np
import pytest
import torch

from book.nn import audio

SR, N_FFT, HOP = 8000, 256, 80


@pytest.fixture(scope="module")
def signal():
    return torch.randn(3, 4000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def test_frame_count_and_frames():
    assert audio.frame_count(4000, 256, 80) == 1 + 4000 // 80
    assert audio.frame_count(4000, 256, 80, center=False) == 1 + (4000 - 256) // 80
    assert audio.frame_count(256, 256, 80, center=False) == 1
    x = torch.arange(10.0)
    f = audio.frames(x, 4, 3, center=False)
    assert f.tolist() == [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9]]
    fc = audio.frames(x, 4, 3)                   # two zeros padded at each end
    assert fc[0].tolist() == [0, 0, 0, 1] and fc.shape == (4, 4)
    with pytest.raises(ValueError, match="fewer than one frame"):
        audio.frame_count(100, 256, 80, center=False)
    with pytest.raises(ValueError, match=">= 1"):
        audio.frame_count(100, 256, 0)


def test_hann_window_matches_torch():
    for n in (8, 255, 256):
        assert torch.allclose(audio.hann_window(n), torch.hann_window(n, dtype=torch.float64), atol=1e-15)


@pytest.mark.parametrize("center", [True, False])
def test_stft_matches_librosa_and_torch(signal, center):
    ours = audio.stft(signal, N_FFT, HOP, center=center)
    ref = librosa.stft(signal.numpy(), n_fft=N_FFT, hop_length=HOP, center=center, dtype=np.complex128)
    assert ours.shape == ref.shape == (3, N_FFT // 2 + 1, audio.frame_count(4000, N_FFT, HOP, center))
    assert np.abs(ours.numpy() - ref).max() < 1e-10
    tref = torch.stft(signal, N_FFT, HOP, window=torch.hann_window(N_FFT, dtype=torch.float64),
                      center=center, pad_mode="constant", return_complex=True)
    assert (ours - tref).abs().max() < 1e-10
    power = audio.power_spectrogram(signal, N_FFT, HOP, center=center)
    assert torch.allclose(power, ours.abs() ** 2, rtol=1e-10, atol=1e-10)


def test_mel_scale_round_trip_and_librosa():
    f = torch.tensor([0.0, 100.0, 999.0, 1000.0, 2500.0, 4000.0])
    for htk in (False, True):
        assert torch.allclose(audio.mel_to_hz(audio.hz_to_mel(f, htk), htk), f.double(), atol=1e-9)
        assert np.allclose(audio.hz_to_mel(f, htk).numpy(), librosa.hz_to_mel(f.numpy(), htk=htk))
    assert float(audio.hz_to_mel(1000.0)) == pytest.approx(15.0)       # Slaney: 3 f / 200 below 1 kHz
    assert float(audio.hz_to_mel(1000.0, htk=True)) == pytest.approx(1000.0, abs=0.1)


@pytest.mark.parametrize("htk", [False, True])
@pytest.mark.parametrize("norm", ["slaney", None])
def test_mel_filterbank_matches_librosa(htk, norm):
    for n_mels, fmin, fmax in ((32, 0.0, None), (20, 100.0, 3500.0)):
        ours = audio.mel_filterbank(SR, N_FFT, n_mels, fmin, fmax, htk=htk, norm=norm)
        ref = librosa.filters.mel(sr=SR, n_fft=N_FFT, n_mels=n_mels, fmin=fmin, fmax=fmax, htk=htk,
                                  norm=norm, dtype=np.float64)
        assert np.abs(ours.numpy() - ref).max() < 1e-12 * max(1.0, ref.max())


@pytest.mark.parametrize("n_fft", [255, 400, 511])
def test_mel_filterbank_matches_librosa_for_any_n_fft(n_fft):
    """Bin k sits at k * sr / n_fft: for an odd n_fft the last bin is below sr / 2 (was 3-6 % off)."""
    ours = audio.mel_filterbank(SR, n_fft, 32)
    ref = librosa.filters.mel(sr=SR, n_fft=n_fft, n_mels=32, dtype=np.float64)
    assert ours.shape == ref.shape and np.abs(ours.numpy() - ref).max() < 1e-12 * ref.max()


def test_mel_filterbank_errors():
    with pytest.raises(ValueError, match="fmax"):
        audio.mel_filterbank(SR, N_FFT, 32, fmax=5000.0)
    with pytest.raises(ValueError, match="norm"):
        audio.mel_filterbank(SR, N_FFT, 32, norm="area")


def test_melspectrogram_log_mel_and_mfcc_match_librosa(signal):
    y = signal[0].numpy()
    mel = audio.mel_filterbank(SR, N_FFT, 32) @ audio.power_spectrogram(signal[0], N_FFT, HOP)
    ref = librosa.feature.melspectrogram(y=y, sr=SR, n_fft=N_FFT, hop_length=HOP, n_mels=32,
                                         dtype=np.float64)
    assert np.abs(mel.numpy() - ref).max() < 1e-10 * ref.max()
    L = audio.log_mel(signal[0], SR, N_FFT, HOP, 32)
    assert np.abs(L.numpy() - librosa.power_to_db(ref)).max() < 1e-9
    c = audio.mfcc(signal, SR, N_FFT, HOP, 32, 13)
    for i in range(3):
        cref = librosa.feature.mfcc(y=signal[i].numpy(), sr=SR, n_fft=N_FFT, hop_length=HOP, n_mels=32,
                                    n_mfcc=13, dtype=np.float64)
        assert np.abs(c[i].numpy() - cref).max() < 1e-9


def test_power_to_db_floor_is_per_spectrogram():
    S = torch.tensor([[[1.0, 1e-12]], [[1e-4, 1e-12]]])
    db = audio.power_to_db(S, top_db=80.0)
    assert db[0].tolist() == [[0.0, -80.0]] and db[1].tolist() == [[-40.0, -100.0]]
    assert audio.power_to_db(S, top_db=None)[0, 0, 1] == pytest.approx(-100.0)


def test_dct_matrix_is_orthonormal_and_matches_scipy():
    from scipy.fft import dct
    D = audio.dct_matrix(13)
    assert torch.allclose(D @ D.T, torch.eye(13, dtype=torch.float64), atol=1e-12)
    x = np.random.default_rng(1).standard_normal((13, 4))
    assert np.allclose(D.numpy() @ x, dct(x, type=2, norm="ortho", axis=0))
    with pytest.raises(ValueError, match="n_mfcc"):
        audio.mfcc_from_log_mel(torch.zeros(8, 5), 9)
