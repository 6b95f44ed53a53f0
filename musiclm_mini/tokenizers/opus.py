"""Opus, the yardstick codec: a waveform through libopus at a given bitrate and back (Chapter 3).

SoundStream's headline claim (Zeghidour et al., 2022, Sec. 5) is that at 3 kbps it sounds better
than Opus at 12 kbps. To test that on our own clips we round-trip them through ffmpeg's libopus,
the reference Opus encoder, at the same bitrates as the paper's comparison.
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import torch

from ..data.render import encode_wav


def opus_roundtrip(wave: torch.Tensor, sample_rate: int, kbps: float) -> torch.Tensor:
    """Encode one clip (T,) with libopus at `kbps` and decode it back to (T,) at `sample_rate`.

    Opus works at 48 kHz internally; ffmpeg resamples both ways. The decoded clip is cut or padded
    to the input length (Opus adds a short look-ahead delay, which ffmpeg trims).
    """
    if shutil.which("ffmpeg") is None:
        raise RuntimeError("Opus needs the ffmpeg command (Debian: apt-get install ffmpeg)")
    if wave.ndim != 1:
        raise ValueError(f"opus_roundtrip takes one clip (T,), got shape {tuple(wave.shape)}")
    with tempfile.TemporaryDirectory() as tmp:
        src, coded = Path(tmp) / "in.wav", Path(tmp) / "coded.opus"
        src.write_bytes(encode_wav(wave.numpy(), sample_rate))
        run = lambda *args: subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", *args],
                                           check=True, capture_output=True)
        run("-i", str(src), "-c:a", "libopus", "-b:a", f"{kbps}k", "-ac", "1", str(coded))
        raw = subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(coded), "-f", "f32le",
                              "-ac", "1", "-ar", str(sample_rate), "-"], check=True, capture_output=True).stdout
    out = torch.from_numpy(np.frombuffer(raw, dtype=np.float32).copy())
    n = wave.shape[-1]
    return out[:n] if out.numel() >= n else torch.nn.functional.pad(out, (0, n - out.numel()))


def opus_batch(waves: torch.Tensor, sample_rate: int, kbps: float) -> torch.Tensor:
    """`opus_roundtrip` over a batch (N, T) -> (N, T)."""
    return torch.stack([opus_roundtrip(w, sample_rate, kbps) for w in waves])
