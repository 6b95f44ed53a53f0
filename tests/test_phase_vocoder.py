"""The phase vocoder and Griffin-Lim of Chapter 3 (`tokenizers/phase_vocoder.py`), on signals with known answers."""
import math

import torch

from musiclm_mini.tokenizers.phase_vocoder import (griffin_lim, magnitude_to_wave, nearest_peak, peak_frequency,
                                                   phase_from_magnitude, spectral_peaks)

SR, N_FFT, HOP = 24_000, 1920, 480
WINDOW = torch.hann_window(N_FFT)


def two_sines(seconds: float = 2.0) -> torch.Tensor:
    t = torch.arange(int(seconds * SR)) / SR
    return (0.3 * torch.sin(2 * math.pi * 440.3 * t + 1.0) + 0.2 * torch.sin(2 * math.pi * 661.7 * t))[None]  # (1, T)


def stft(x: torch.Tensor) -> torch.Tensor:
    return torch.stft(x, N_FFT, HOP, window=WINDOW, return_complex=True)  # (B, F, N)


def convergence(y: torch.Tensor, mag: torch.Tensor) -> float:
    """|| |STFT(y)| - mag || / || mag ||, edge frames left out."""
    diff = (stft(y).abs() - mag)[..., 4:-4]
    return float(torch.linalg.vector_norm(diff) / torch.linalg.vector_norm(mag[..., 4:-4]))


def test_peaks_and_their_frequencies_are_the_sines():
    mag = stft(two_sines()).abs()
    logmag = torch.log(mag + 1e-7)
    peaks = spectral_peaks(logmag)
    frame = 20
    found = torch.nonzero(peaks[0, :, frame]).flatten().tolist()
    bin_hz = SR / N_FFT  # 12.5 Hz
    assert [round(440.3 / bin_hz), round(661.7 / bin_hz)] == found  # bins 35 and 53, nothing else
    freqs = peak_frequency(logmag)[0, found, frame] * bin_hz
    assert torch.allclose(freqs, torch.tensor([440.3, 661.7]), atol=0.5)  # within 0.04 bin: interpolation works


def test_every_bin_belongs_to_its_nearest_peak():
    peaks = torch.zeros(1, 10, 1, dtype=torch.bool)
    peaks[0, [2, 7], 0] = True
    assert nearest_peak(peaks)[0, :, 0].tolist() == [2, 2, 2, 2, 2, 7, 7, 7, 7, 7]  # ties (bin 4.5) do not exist
    assert nearest_peak(torch.zeros(1, 4, 1, dtype=torch.bool))[0, :, 0].tolist() == [0, 1, 2, 3]  # no peak: itself


def test_the_phase_vocoder_rebuilds_sines_that_random_phases_and_plain_griffin_lim_do_not():
    x = two_sines()
    mag = stft(x).abs()
    vocoded = torch.istft(torch.polar(mag, phase_from_magnitude(mag, N_FFT, HOP)), N_FFT, HOP, window=WINDOW,
                          length=x.shape[-1])
    noise = 2 * math.pi * torch.rand(mag.shape, generator=torch.Generator().manual_seed(0))
    random = torch.istft(torch.polar(mag, noise), N_FFT, HOP, window=WINDOW, length=x.shape[-1])
    assert convergence(vocoded, mag) < 0.05
    assert convergence(random, mag) > 0.3
    assert convergence(magnitude_to_wave(mag, N_FFT, HOP, x.shape[-1]), mag) < 0.05
    assert convergence(griffin_lim(mag, N_FFT, HOP, x.shape[-1]), mag) > 2 * convergence(vocoded, mag)  # a head start


def test_silence_stays_silent_and_shapes_hold():
    mag = torch.zeros(2, N_FFT // 2 + 1, 11)
    wave = magnitude_to_wave(mag, N_FFT, HOP, 10 * HOP)
    assert wave.shape == (2, 10 * HOP) and torch.isfinite(wave).all() and wave.abs().max() == 0
