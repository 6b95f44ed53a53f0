"""Baselines without learning: what retrieval gets from pitch classes alone (Chapter 8).

Chance (k / N) is a low bar. These two hand-made features say how far plain signal processing goes on
the same retrieval task, so that the embedder's figure can be read against them:

    key profile       the mean chroma of a window: how much energy falls on each of the 12 pitch
                      classes (C, C#, ..., B), octaves folded together. Knows the key, not the tune.
    chroma sequence   the chroma every 100 ms, concatenated: the tune's pitch classes in time. Only
                      works when the two renderings are in the same key and aligned in time, which
                      the melody set guarantees (the embedder is not told so).

    windows (N, S) --|STFT|^2, 80 Hz - 4 kHz--> (N, F, frames) --fold bins to pitch classes--> (N, 12, frames)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .frontend import SAMPLE_RATE


def chroma(windows: Tensor, n_fft: int = 4096, hop: int = 480) -> Tensor:
    """Pitch-class energy per frame, summing to 1: (N, S) -> (N, 12, frames) (Chapter 8).

    4096-point frames (5.9 Hz bins) so that semitones stay apart down to ~100 Hz.
    """
    freqs = torch.fft.rfftfreq(n_fft, 1 / SAMPLE_RATE)
    keep = ((freqs > 80) & (freqs < 4000)).nonzero()[:, 0]
    lo, hi = int(keep[0]), int(keep[-1]) + 1  # one run of bins, a third of them: |.|^2 of only those
    power = torch.stft(windows, n_fft, hop, window=torch.hann_window(n_fft, device=windows.device),
                       return_complex=True)[:, lo:hi].abs() ** 2  # (N, F kept, frames)
    pitch_class = (torch.round(12 * torch.log2(freqs[lo:hi] / 440.0)) % 12).long()  # A = 0
    out = torch.zeros(windows.shape[0], 12, power.shape[-1]).index_add_(1, pitch_class, power)
    return out / out.sum(1, keepdim=True).clamp(min=1e-12)


def key_profile(c: Tensor) -> Tensor:
    """Mean chroma of each window, unit length: chroma (N, 12, frames) -> (N, 12)."""
    return F.normalize(c.mean(-1), dim=-1)


def chroma_sequence(c: Tensor, step: int = 5) -> Tensor:
    """Chroma averaged over `step` frames (100 ms), flattened, unit length: (N, 12, frames) -> (N, 12 * frames / step)."""
    return F.normalize(F.avg_pool1d(c, step).flatten(1), dim=-1)


def baseline_embeddings(windows: Tensor, chunk: int = 64) -> dict[str, Tensor]:
    """Both baselines of clip windows (N, W, S) -> {"key profile": (N, W, 12), "chroma sequence": (N, W, D)}."""
    N, W, S = windows.shape
    keys, sequences = [], []
    for block in windows.reshape(N * W, S).split(chunk):
        c = chroma(block)  # (n, 12, frames)
        keys.append(key_profile(c))
        sequences.append(chroma_sequence(c))
    return {"key profile": torch.cat(keys).reshape(N, W, -1), "chroma sequence": torch.cat(sequences).reshape(N, W, -1)}
