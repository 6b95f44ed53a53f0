"""How good is a codec? Mel distance and SI-SNR at every bitrate (Chapter 3; MusicLM Sec. 3.1, SoundStream Sec. 5).

Two complementary numbers, both computed on held-out clips:

  * mel distance: mean absolute difference of log-mel spectrograms (natural log, 64 bands,
    1024-sample window). It ignores phase, like the ear mostly does. Lower is better; 0 is a copy.
  * SI-SNR (scale-invariant signal-to-noise ratio, in dB): how much of the decoded waveform is the
    original waveform, sample by sample, after the best rescaling. It punishes any phase error, so
    it is harsh on generative codecs. Higher is better; 0 dB means as much error as signal.

`evaluate_levels` decodes the same clips with the first 1, 2, 4, ... RVQ levels: each level adds
log2(codebook_size) bits per frame, and the figures should improve with every level.
"""
from __future__ import annotations

import torch

from ..audio import log_mel
from .soundstream import SoundStream


def mel_distance(reference: torch.Tensor, estimate: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """Mean |log-mel(reference) - log-mel(estimate)| per clip: (B, T), (B, T) -> (B,) (Chapter 3)."""
    if reference.shape != estimate.shape:
        raise ValueError(f"mel_distance needs equal shapes, got {tuple(reference.shape)} and {tuple(estimate.shape)}")
    diff = log_mel(reference, sample_rate, n_mels=64) - log_mel(estimate, sample_rate, n_mels=64)
    return diff.abs().flatten(-2).mean(-1)


def si_snr(reference: torch.Tensor, estimate: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Scale-invariant SNR in dB per clip: (B, T), (B, T) -> (B,) (Chapter 3).

    Both signals are made zero-mean; the target is the projection of the estimate on the
    reference, the noise is what is left.
    """
    if reference.shape != estimate.shape:
        raise ValueError(f"si_snr needs equal shapes, got {tuple(reference.shape)} and {tuple(estimate.shape)}")
    ref = reference - reference.mean(-1, keepdim=True)
    est = estimate - estimate.mean(-1, keepdim=True)
    scale = (est * ref).sum(-1, keepdim=True) / (ref.pow(2).sum(-1, keepdim=True) + eps)
    target = scale * ref
    noise = est - target
    return 10 * torch.log10((target.pow(2).sum(-1) + eps) / (noise.pow(2).sum(-1) + eps))


def default_levels(num_quantizers: int) -> list[int]:
    """1, 2, 4, 8, ... up to and always including all `num_quantizers` levels (Chapter 3)."""
    levels, q = [], 1
    while q < num_quantizers:
        levels.append(q)
        q *= 2
    return levels + [num_quantizers]


@torch.no_grad()
def evaluate_levels(codec: SoundStream, waves: torch.Tensor, levels: list[int] | None = None,
                    batch_size: int = 4) -> dict[int, dict[str, float]]:
    """Mel distance and SI-SNR of `waves` (N, T) decoded with the first q levels, for each q (Chapter 3).

    Returns {q: {"bitrate": bits/s, "mel_distance": mean, "si_snr": mean dB}}. Use held-out clips.
    """
    cfg = codec.cfg
    levels = levels or default_levels(cfg.rvq.num_quantizers)
    was_training = codec.training
    codec.eval()
    device = next(codec.parameters()).device
    sums = {q: torch.zeros(2, dtype=torch.float64) for q in levels}
    for start in range(0, waves.shape[0], batch_size):
        batch = waves[start : start + batch_size].to(device)
        tokens = codec.encode(batch)  # (B, Q, T'): encode once, decode at every depth
        for q in levels:
            recon = codec.decode(tokens[:, :q])[..., : batch.shape[-1]]
            sums[q][0] += mel_distance(batch, recon, cfg.sample_rate).sum().item()
            sums[q][1] += si_snr(batch, recon).sum().item()
    codec.train(was_training)
    n = waves.shape[0]
    bits_per_level = cfg.frame_rate * cfg.rvq.bits_per_code
    return {q: {"bitrate": q * bits_per_level, "mel_distance": float(sums[q][0] / n), "si_snr": float(sums[q][1] / n)}
            for q in levels}
