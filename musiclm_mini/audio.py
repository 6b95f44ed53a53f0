"""Audio as numbers: loading, checking, resampling and the mel spectrogram (Chapter 1; MusicLM Sec. 4: 24 kHz).

Every waveform in the package is a float32 tensor of shape (T,) for one clip or (B, T) for a
batch, mono, at the preset's sample rate. `load_audio` and `prepare_waveform` are the only doors
in: they resample, mix to mono and refuse broken audio with one `AudioError` naming the source.
"""
from __future__ import annotations

import os
from functools import lru_cache

import numpy as np
import torch
import torchaudio

from .errors import AudioError


def prepare_waveform(wave, sample_rate: int, target_rate: int, source: str = "<array>") -> torch.Tensor:
    """Any waveform -> float32 mono (T,) at `target_rate`; NaN/inf raise `AudioError` (Chapter 1).

    `wave` may be (T,), (C, T) channels-first, or (T, C) channels-last when C is small.
    """
    wave = torch.as_tensor(np.asarray(wave) if not torch.is_tensor(wave) else wave).float()
    if wave.ndim == 2:
        channels_last = wave.shape[1] <= 8 and wave.shape[0] > wave.shape[1]
        wave = wave.mean(dim=1 if channels_last else 0)  # mix to mono
    if wave.ndim != 1:
        raise AudioError(f"{source}: expected a (T,) or (channels, T) waveform, got shape {tuple(wave.shape)}")
    if wave.numel() == 0:
        raise AudioError(f"{source}: the audio is empty (0 samples)")
    if not torch.isfinite(wave).all():
        bad = int((~torch.isfinite(wave)).sum())
        raise AudioError(f"{source}: the audio contains {bad} NaN or infinite samples")
    if sample_rate <= 0:
        raise AudioError(f"{source}: invalid sample rate {sample_rate}")
    if sample_rate != target_rate:
        wave = torchaudio.functional.resample(wave, int(sample_rate), int(target_rate))
    return wave.contiguous()


def load_audio(path: str | os.PathLike, sample_rate: int) -> torch.Tensor:
    """Read an audio file as float32 mono (T,) at `sample_rate` (Chapter 1).

    Raises `AudioError` naming the file when it is missing, unreadable or contains NaN.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise AudioError(f"audio file not found: {path}")
    try:
        wave, rate = torchaudio.load(path)  # (C, T); decoded by torchcodec + ffmpeg
    except Exception as exc:  # every decoder failure becomes one clear error
        raise AudioError(f"cannot read audio file {path}: {type(exc).__name__}: {exc}") from exc
    return prepare_waveform(wave, rate, sample_rate, source=path)


def save_audio(path: str | os.PathLike, wave: torch.Tensor, sample_rate: int) -> None:
    """Write a mono (T,) or (C, T) waveform as 16-bit WAV (Chapter 1)."""
    wave = torch.as_tensor(wave).detach().float().cpu()
    if wave.ndim == 1:
        wave = wave.unsqueeze(0)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    torchaudio.save(os.fspath(path), wave.clamp(-1, 1), sample_rate, bits_per_sample=16, encoding="PCM_S")


def check_waveforms(wave, name: str, min_samples: int = 1) -> torch.Tensor:
    """(T,) or (B, T) finite audio, at least `min_samples` long -> (B, T) float, else one `AudioError` (Chapters 3-5).

    The one check at the door of every model that reads audio (SoundStream, w2v-BERT, MuLan, ...).
    """
    wave = torch.as_tensor(wave)
    if wave.ndim == 1:
        wave = wave.unsqueeze(0)
    if wave.ndim != 2:
        raise AudioError(f"{name} expects audio of shape (T,) or (B, T), got {tuple(wave.shape)}")
    if wave.shape[0] == 0 or wave.shape[-1] == 0:
        raise AudioError(f"{name} got empty audio of shape {tuple(wave.shape)}")
    if wave.shape[-1] < min_samples:
        raise AudioError(f"{name} needs at least {min_samples} samples (one frame), got {wave.shape[-1]}")
    if not torch.isfinite(wave).all():
        raise AudioError(f"{name} got audio with NaN or infinite samples")
    return wave.float()


@lru_cache(maxsize=8)
def _mel_transform(sample_rate: int, n_fft: int, hop: int, n_mels: int) -> torchaudio.transforms.MelSpectrogram:
    return torchaudio.transforms.MelSpectrogram(
        sample_rate=sample_rate, n_fft=n_fft, hop_length=hop, n_mels=n_mels, power=2.0, center=True
    )


def log_mel(wave: torch.Tensor, sample_rate: int, n_mels: int = 64, n_fft: int = 1024, hop: int = 240) -> torch.Tensor:
    """Log-mel spectrogram: (..., T) -> (..., n_mels, frames), in natural-log power (Chapter 1)."""
    mel = _mel_transform(sample_rate, n_fft, hop, n_mels).to(wave.device)(wave)
    return torch.log(mel + 1e-5)


def mel_to_audio(logmel: torch.Tensor, sample_rate: int, n_fft: int = 1024, hop: int = 240, iters: int = 32,
                 seed: int = 0) -> torch.Tensor:
    """Hear a log-mel spectrogram (`log_mel`'s output, (..., n_mels, frames)) -> waveform (..., T) (Chapter 2).

    The inverse of the mel filterbank by least squares, then Griffin-Lim for a phase: the mel bands are
    wide and the phase is invented, so even an exact log-mel comes back blurred and phasey. It lets a
    reader hear what a spectrogram keeps, not a codec.
    """
    n_mels = logmel.shape[-2]
    power = torch.exp(logmel).clamp(min=0)  # undo log(mel + 1e-5); the 1e-5 floor is inaudible
    linear = torchaudio.transforms.InverseMelScale(n_fft // 2 + 1, n_mels, sample_rate)(power)  # (..., F, frames)
    torch.manual_seed(seed)  # Griffin-Lim starts from random phases
    griffin = torchaudio.transforms.GriffinLim(n_fft, n_iter=iters, hop_length=hop, power=2.0)
    return griffin(linear.clamp(min=0))


def stft_magnitude(wave: torch.Tensor, n_fft: int = 1024, hop: int = 256) -> torch.Tensor:
    """|STFT|: (..., T) -> (..., n_fft // 2 + 1, frames) (Chapter 1)."""
    window = torch.hann_window(n_fft, device=wave.device)
    return torch.stft(wave, n_fft, hop, window=window, return_complex=True).abs()


def audio_player(wave: torch.Tensor, sample_rate: int):
    """An HTML audio player for a notebook; the rendered book embeds it (Chapter 1)."""
    from IPython.display import Audio

    return Audio(torch.as_tensor(wave).detach().float().cpu().numpy(), rate=sample_rate, normalize=True)
