"""Exercise of Chapter 1: turn any recording into what the book's models eat.

The reader writes `fn(wave, rate) -> mono`, with
    wave: (C, T) float, C channels at `rate` Hz
    mono: (T',) float at 24 kHz, the channels averaged
`check_to_mono_24k(fn)` grades it against `reference_to_mono_24k`, written here from the definition (mean over
channels, then torchaudio's resampler), independently of `musiclm_mini.audio.prepare_waveform`; a test ties the two.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

import torchaudio

from .grading import grade

TARGET_RATE = 24_000


def reference_to_mono_24k(wave: Tensor, rate: int) -> Tensor:
    """The answer to Chapter 1's exercise: average the channels, then resample to 24 kHz (Chapter 1)."""
    mono = wave.float().mean(dim=0)  # (C, T) -> (T,)
    return mono if rate == TARGET_RATE else torchaudio.functional.resample(mono, rate, TARGET_RATE)


def _tone(rate: int, channels: int, seconds: float = 0.5, freq: float = 440.0) -> Tensor:
    t = torch.arange(int(rate * seconds)) / rate
    left = torch.sin(2 * math.pi * freq * t)
    right = 0.5 * torch.sin(2 * math.pi * 2 * freq * t)
    return torch.stack([left, right][:channels]) if channels <= 2 else left.repeat(channels, 1)


def _cases() -> list[tuple[str, Tensor, int]]:
    return [
        ("stereo at 44.1 kHz (a CD)", _tone(44_100, 2), 44_100),
        ("mono at 16 kHz (speech models)", _tone(16_000, 1), 16_000),
        ("stereo already at 24 kHz: only mixing to do", _tone(24_000, 2), 24_000),
        ("six channels at 48 kHz (a film mix)", _tone(48_000, 6), 48_000),
    ]


def check_to_mono_24k(fn: Callable[[Tensor, int], Tensor], verbose: bool = True) -> bool:
    """Grade a reader's mono-24 kHz converter; print what passed and what did not (Chapter 1).

    Never raises: an exception inside `fn` counts as a failed check, so the notebook keeps running.
    """
    def compare(got, wave: Tensor, rate: int) -> str | None:
        want = reference_to_mono_24k(wave, rate)
        got = torch.as_tensor(got).float()
        if got.shape != want.shape:
            return f"shape {tuple(got.shape)}, expected {tuple(want.shape)} (mono, 24 kHz)"
        if not torch.allclose(got, want, atol=1e-3):
            return f"samples differ from the reference by up to {(got - want).abs().max().item():.3g}"
        return None

    return grade(_cases(), fn, compare, verbose)
