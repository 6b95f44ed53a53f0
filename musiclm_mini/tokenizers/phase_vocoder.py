"""Phase from magnitudes: a peak-locked phase vocoder, then a few Griffin-Lim iterations (Chapter 3).

A decoder that writes only STFT magnitudes needs a phase before anything can be played. Two classic answers,
which work together:

    phase_from_magnitude(mag, n_fft, hop)   every spectral peak is taken for a partial. Its frequency, read off
                                            the peak's shape by quadratic interpolation, sets how far its phase
                                            advances from one frame to the next (a phase vocoder); the bins
                                            around a peak keep the peak's phase (Laroche and Dolson's phase
                                            locking, 1999), so a partial stays one sinusoid
    griffin_lim(mag, n_fft, hop, length, phase=...)
                                            alternate between "has these magnitudes" and "is the STFT of some
                                            waveform" (Griffin and Lim, 1984), with the momentum of Perraudin
                                            et al. (2013), started from a given phase
    magnitude_to_wave(mag, n_fft, hop, length)   the first, then a few iterations of the second

Both need the partials to be separate peaks. A 960-sample window at 24 kHz has 25 Hz bins, too coarse for
the partials of low notes; 1920 or 3840 samples (12.5 or 6.25 Hz) resolve them. `scripts/codec_diagnosis.py`
measures how many notes a transcriber still hears after each (Chapter 3 prints it).

Layout throughout: torch.stft's, (B, F, N) with F = n_fft // 2 + 1 bins and N frames, Hann windows, centred frames.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def spectral_peaks(logmag: Tensor, floor_db: float = 70.0) -> Tensor:
    """(B, F, N) log-magnitudes -> (B, F, N) bool: local maxima over +-2 bins, at most `floor_db` below the clip's loudest."""
    padded = F.pad(logmag.transpose(1, 2), (2, 2), value=-math.inf).transpose(1, 2)  # (B, F + 4, N)
    n = logmag.shape[1]
    peak = torch.ones_like(logmag, dtype=torch.bool)
    for offset in (0, 1, 3, 4):  # neighbours at -2, -1, +1, +2 bins
        peak &= logmag >= padded[:, offset:offset + n]
    loudest = logmag.amax(dim=(1, 2), keepdim=True)  # (B, 1, 1)
    return peak & (logmag > loudest - floor_db / 20 * math.log(10))


def peak_frequency(logmag: Tensor) -> Tensor:
    """(B, F, N) -> (B, F, N) the frequency, in bins, of a parabola through each bin and its two neighbours (its vertex).

    Meaningful at peaks, where the vertex lies within half a bin; elsewhere clamped to +-0.5 bin.
    """
    below = F.pad(logmag[:, :-1], (0, 0, 1, 0), value=0.0)  # (B, F, N): bin k - 1
    above = F.pad(logmag[:, 1:], (0, 0, 0, 1), value=0.0)  # bin k + 1
    curvature = below - 2 * logmag + above
    safe = torch.where(curvature.abs() > 1e-9, curvature, torch.ones_like(curvature))
    offset = torch.where(curvature.abs() > 1e-9, 0.5 * (below - above) / safe, torch.zeros_like(curvature))
    bins = torch.arange(logmag.shape[1], dtype=logmag.dtype, device=logmag.device)[None, :, None]
    return bins + offset.clamp(-0.5, 0.5)


def nearest_peak(peaks: Tensor) -> Tensor:
    """(B, F, N) bool -> (B, F, N) long: the index of each bin's nearest peak in its frame (itself where none is)."""
    n = peaks.shape[1]
    bins = torch.arange(n, device=peaks.device)[None, :, None].expand_as(peaks)
    below = torch.where(peaks, bins, torch.full_like(bins, -n)).cummax(dim=1).values  # nearest peak at or below
    above = torch.where(peaks, bins, torch.full_like(bins, 2 * n)).flip(1).cummin(dim=1).values.flip(1)  # at or above
    owner = torch.where(bins - below <= above - bins, below, above)
    return torch.where((below < 0) & (above >= n), bins, owner.clamp(0, n - 1))


def phase_from_magnitude(mag: Tensor, n_fft: int, hop: int, floor_db: float = 70.0) -> Tensor:
    """Magnitudes (B, F, N) -> phases (B, F, N), by a peak-locked phase vocoder (module docstring).

    Each bin advances by 2 pi f hop / n_fft per frame, f (in bins) the interpolated frequency of its nearest
    peak; advances are summed over frames. Within a peak's region, bins keep the peak's phase plus pi per bin of
    distance: a Hann-windowed sinusoid alternates sign across its main lobe when, as in torch.stft, the phase
    is measured from the start of each frame.
    """
    logmag = torch.log(mag + 1e-7)
    owner = nearest_peak(spectral_peaks(logmag, floor_db))  # (B, F, N)
    frequency = peak_frequency(logmag).gather(1, owner)  # (B, F, N): the owning peak's frequency, in bins
    accumulated = torch.cumsum(2 * math.pi * frequency * hop / n_fft, dim=2)  # (B, F, N): phase of each bin's track
    distance = torch.arange(mag.shape[1], device=mag.device)[None, :, None] - owner
    return accumulated.gather(1, owner) + math.pi * distance


def griffin_lim(mag: Tensor, n_fft: int, hop: int, length: int, iterations: int = 8, phase: Tensor | None = None,
                momentum: float = 0.99) -> Tensor:
    """Magnitudes (B, F, N) -> waveform (B, length): `iterations` of fast Griffin-Lim from `phase` (default zeros)."""
    window = torch.hann_window(n_fft, device=mag.device, dtype=mag.dtype)
    spec = torch.polar(mag, torch.zeros_like(mag) if phase is None else phase)
    previous = None
    for _ in range(iterations):
        wave = torch.istft(spec, n_fft, hop, window=window, length=length)
        rebuilt = torch.stft(wave, n_fft, hop, window=window, return_complex=True)  # (B, F, N): consistent
        accelerated = rebuilt if previous is None else rebuilt - momentum / (1 + momentum) * previous
        previous = rebuilt
        spec = torch.polar(mag, torch.angle(accelerated))
    return torch.istft(spec, n_fft, hop, window=window, length=length)


def magnitude_to_wave(mag: Tensor, n_fft: int, hop: int, length: int, iterations: int = 8) -> Tensor:
    """Magnitudes (B, F, N) -> waveform (B, length): the phase vocoder's phase, refined by Griffin-Lim (Chapter 3)."""
    return griffin_lim(mag, n_fft, hop, length, iterations, phase_from_magnitude(mag, n_fft, hop))
