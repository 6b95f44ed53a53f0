"""The melody embedder's input: log-mel frames of 4 s windows, 3 s apart (Chapter 8; MusicLM appendix C).

The paper: "The input to the model are the temporal frames of the mel spectrogram of the audio",
one 192-d embedding "for each 4 seconds of audio", three of them for 10 s "with a hop length of
3 seconds". It gives no mel settings; ours are chosen for melody, not timbre:

    80 Hz - 4 kHz    where tunes are played, hummed and whistled (and their first harmonics), so the
                     mel bins are spent on pitch rather than on the cymbals' shimmer
    n_fft 2048       85 ms, 11.7 Hz per FFT bin: neighbouring semitones above ~200 Hz fall in
                     different bins
    hop 480          20 ms frames, 50 per second, 200 per 4 s window

    wave (B, T) --windows--> (B, W, 96000) --mel power--> (B*W, n_mels, 200) --log, standardise--> ViT
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
import torchaudio
from torch import Tensor

from ..audio import check_waveforms
from ..tokenizers.mulan import audio_windows

SAMPLE_RATE = 24_000  # every preset works at 24 kHz


@dataclass(frozen=True)
class MelSettings:
    """The mel spectrogram the melody embedder reads (Chapter 8). Not in the paper: chosen for pitch."""

    n_mels: int = 128
    min_hz: float = 80.0
    max_hz: float = 4000.0
    n_fft: int = 2048
    hop: int = 480  # 20 ms at 24 kHz

    @property
    def frame_rate(self) -> float:
        return SAMPLE_RATE / self.hop


@lru_cache(maxsize=4)
def _mel(settings: MelSettings) -> torchaudio.transforms.MelSpectrogram:
    return torchaudio.transforms.MelSpectrogram(
        sample_rate=SAMPLE_RATE, n_fft=settings.n_fft, hop_length=settings.hop, f_min=settings.min_hz,
        f_max=settings.max_hz, n_mels=settings.n_mels, power=2.0, center=True)


def mel_power(wave: Tensor, settings: MelSettings) -> Tensor:
    """Mel power spectrogram: (..., T) -> (..., n_mels, T // hop + 1) (Chapter 8).

    Power, not log: augmentations add noise and smear reverb here, where sounds add (`augment.py`).
    """
    return _mel(settings).to(wave.device)(wave)


def log_standardise(power: Tensor) -> Tensor:
    """log(power), then zero mean and unit variance per window: (..., n_mels, frames) -> same (Chapter 8).

    A melody is the same loud or soft, so the loudness of a window is taken out before the ViT sees it.
    """
    logmel = torch.log(power + 1e-6)
    mean = logmel.mean(dim=(-2, -1), keepdim=True)
    std = logmel.std(dim=(-2, -1), keepdim=True)
    return (logmel - mean) / (std + 1e-5)


def window_samples(window_seconds: float) -> int:
    return round(window_seconds * SAMPLE_RATE)


def melody_windows(wave: Tensor, window_seconds: float, hop_seconds: float) -> Tensor:
    """Audio (B, T) -> windows (B, W, window) at `hop_seconds` (Chapter 8). 10 s, 4 s, 3 s -> 3 windows.

    Audio shorter than a window is looped to fill it, and a last window is aligned with the end when
    the hop does not land there (`tokenizers.mulan.audio_windows`, the same rule as MuLan's).
    """
    wave = check_waveforms(wave, "melody embedder")
    return audio_windows(wave, window_samples(window_seconds), round(hop_seconds * SAMPLE_RATE))


def window_frames(window_seconds: float, settings: MelSettings) -> int:
    """Mel frames the ViT reads per window: 200 for 4 s at 20 ms (the last, centred frame is dropped)."""
    return window_samples(window_seconds) // settings.hop
