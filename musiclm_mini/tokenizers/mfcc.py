"""The baseline tokenizer: k-means on MFCC frames (Chapter 4; a baseline for MusicLM Sec. 3.1).

HuBERT's first iteration (Hsu et al., 2021): tokens from the signal itself, with no learned model at
all, at the same frame rate and with the same vocabulary as the semantic tokens, so Chapter 4's
probes compare like with like.
"""
from __future__ import annotations

import torch
import torchaudio
from torch import Tensor

from ..audio import check_waveforms, log_mel
from ..config import SemanticConfig
from .kmeans import KMeans, KMeansConfig

N_MFCC = 13


def mfcc_config(preset) -> KMeansConfig:
    """The `mfcc` component of `preset`: as many clusters as semantic tokens, of 3 x 13 MFCC features (Chapter 4)."""
    return KMeansConfig(preset.semantic.num_clusters, 3 * N_MFCC, "mfcc")


def mfcc_frames(wave: Tensor, cfg: SemanticConfig, n_mfcc: int = N_MFCC) -> Tensor:
    """MFCCs + deltas + delta-deltas at the semantic frame rate (Chapter 4).

    wave (B, T) -> (B, T // hop, 3 * n_mfcc). Computed at 4x the frame rate (as the semantic
    model's log-mel) and averaged over each group of 4, so both tokenizers share one clock.
    """
    wave = torch.as_tensor(wave).float()
    wave = wave.unsqueeze(0) if wave.ndim == 1 else wave
    sub = 4
    mel_hop = cfg.hop // sub
    frames = wave.shape[-1] // cfg.hop
    mel = log_mel(wave, cfg.sample_rate, cfg.n_mels, max(1024, 2 * mel_hop), mel_hop)  # (B, M, F)
    dct = torchaudio.functional.create_dct(n_mfcc, cfg.n_mels, norm="ortho").to(mel)  # (M, n_mfcc)
    mfcc = (mel.transpose(1, 2) @ dct).transpose(1, 2)  # (B, n_mfcc, F)
    d1 = torchaudio.functional.compute_deltas(mfcc)
    d2 = torchaudio.functional.compute_deltas(d1)
    feats = torch.cat([mfcc, d1, d2], dim=1)[..., : sub * frames]  # (B, 3 n_mfcc, 4T')
    return feats.reshape(feats.shape[0], feats.shape[1], frames, sub).mean(-1).transpose(1, 2)  # (B, T', 39)


class MfccTokenizer:
    """Baseline tokens: k-means on MFCC frames, same frame rate and vocabulary as the semantic ones (Chapter 4)."""

    def __init__(self, cfg: SemanticConfig, kmeans: KMeans):
        self.cfg, self.kmeans = cfg, kmeans

    @property
    def vocab_size(self) -> int:
        """Number of distinct tokens (Chapter 4)."""
        return self.kmeans.num_clusters

    @property
    def frame_rate(self) -> float:
        """Tokens per second, the same as the semantic tokenizer's (Chapter 4)."""
        return self.cfg.sample_rate / self.cfg.hop

    @torch.no_grad()
    def tokenize(self, wave: Tensor) -> Tensor:
        """wave (B, T) or (T,) -> tokens (B, T // hop) long (Chapter 4)."""
        wave = check_waveforms(wave, "MfccTokenizer", self.cfg.hop)
        return self.kmeans.predict(mfcc_frames(wave, self.cfg))

    __call__ = tokenize

    @classmethod
    def fit(cls, waves: Tensor, cfg: SemanticConfig, seed: int = 0, batch_size: int = 32,
            iters: int = 30) -> "MfccTokenizer":
        """Fit the baseline's k-means on the MFCC frames of training clips (N, T) (Chapter 4)."""
        frames = torch.cat([mfcc_frames(w, cfg).flatten(0, 1) for w in waves.split(batch_size)])
        return cls(cfg, KMeans.fit(frames, cfg.num_clusters, iters=iters, seed=seed, features="mfcc"))
