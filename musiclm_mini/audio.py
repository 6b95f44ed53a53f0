"""Audio as numbers: loading, checking, resampling and the mel spectrogram (Chapter 1; MusicLM Sec. 4: 24 kHz).

Every waveform in the package is a float32 tensor of shape (T,) for one clip or (B, T) for a
batch, mono, at the preset's sample rate. `load_audio` and `prepare_waveform` are the only doors
in: they resample, mix to mono and refuse broken audio with one `AudioError` naming the source.
`audio_player` is the one way out to the ear: a player with compressed audio inside, so a page stays light.
"""
from __future__ import annotations

import base64
import os
import shutil
import subprocess
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


# The players embed compressed audio: a 10 s WAV at 24 kHz is ~0.64 MB of base64 in the page, the same clip as
# 64 kbit/s MP3 ~0.1 MB. 64 kbit/s mono is well above the codecs the book compares (Opus at 12 kbit/s, Chapter 3),
# so the player's own artifacts stay below what the reader is asked to hear. MP3 plays in every browser.
PLAYER_FORMATS = {"mp3": ("audio/mpeg", ["-c:a", "libmp3lame", "-b:a", "64k", "-f", "mp3"]),
                  "opus": ("audio/ogg", ["-c:a", "libopus", "-b:a", "48k", "-f", "ogg"])}


def encode_audio(wave, sample_rate: int, fmt: str = "mp3") -> tuple[bytes, str]:
    """A mono waveform (T,) -> (file bytes, MIME type), compressed by the ffmpeg program (Chapter 1).

    Falls back to 16-bit WAV (returning "audio/wav") when `fmt` is "wav", ffmpeg is missing or the encoder
    fails, so a player is always made.
    """
    x = np.asarray(torch.as_tensor(wave).detach().float().cpu().reshape(-1).numpy(), dtype=np.float32)
    ffmpeg = shutil.which("ffmpeg")
    if fmt in PLAYER_FORMATS and ffmpeg:
        mime, codec = PLAYER_FORMATS[fmt]
        # Raw float samples in on stdin, the file out on stdout; bitexact keeps the bytes the same run to run.
        cmd = [ffmpeg, "-v", "error", "-f", "f32le", "-ar", str(int(sample_rate)), "-ac", "1", "-i", "pipe:0",
               *codec, "-fflags", "+bitexact", "-flags:a", "+bitexact", "pipe:1"]
        out = subprocess.run(cmd, input=x.astype("<f4").tobytes(), capture_output=True)
        if out.returncode == 0 and out.stdout:
            return out.stdout, mime
    elif fmt not in PLAYER_FORMATS and fmt != "wav":
        raise ValueError(f"unknown player format {fmt!r}: choose one of {sorted(PLAYER_FORMATS)} or 'wav'")
    from .data.render import encode_wav  # the book's one WAV writer (Chapter 1)

    return encode_wav(x, sample_rate), "audio/wav"


def player_html(wave, sample_rate: int, fmt: str = "mp3", normalize: bool = True) -> str:
    """An HTML `<audio controls>` element with the clip inside as a base64 data URI (Chapter 1).

    The rendered book has no kernel and no server, so the audio must live in the page itself. With
    `normalize`, the clip is scaled to a peak of 0.9 as IPython's `Audio` does (to 1.0): quiet clips become
    audible, and the headroom keeps the encoder's ringing from clipping.
    """
    x = torch.as_tensor(wave).detach().float().cpu().reshape(-1)
    peak = float(x.abs().max()) if x.numel() else 0.0
    if normalize and peak > 0:
        x = x * (0.9 / peak)
    data, mime = encode_audio(x, sample_rate, fmt)
    return (f'<audio controls preload="none" src="data:{mime};base64,{base64.b64encode(data).decode()}">'
            "Your browser does not play embedded audio.</audio>")


def audio_player(wave: torch.Tensor, sample_rate: int, fmt: str = "mp3"):
    """A compressed audio player for a notebook; the rendered book embeds it (Chapter 1). See `player_html`."""
    from IPython.display import HTML

    return HTML(player_html(wave, sample_rate, fmt))
