"""k-means: continuous frames -> discrete tokens (Chapter 4).

MusicLM's semantic tokens are the nearest of 1024 k-means centroids to each w2v-BERT embedding
(Sec. 3.1). The same `KMeans` on MFCC frames gives the baseline tokenizer, HuBERT's first
iteration (Hsu et al., 2021): tokens from the signal itself, with no learned model at all.

Frames are standardized per dimension before clustering (mean 0, variance 1, statistics from the
training frames), so no single dimension dominates the Euclidean distance. The centroids live in
that standardized space; Chapter 10 uses their distances as the ground cost of optimal transport.
"""
from __future__ import annotations

import json
import os

import torch
import torchaudio
from torch import Tensor, nn

from .audio import log_mel
from .config import SemanticConfig
from .errors import CheckpointError
from .quantize import nearest_code


def _nearest(x: Tensor, centroids: Tensor, chunk: int = 65_536) -> Tensor:
    """Nearest centroid of each row, chunked so N x K distances never fill memory. (N, D) -> (N,)."""
    return torch.cat([nearest_code(part, centroids) for part in x.split(chunk)]) if len(x) else \
        torch.zeros(0, dtype=torch.long)


def kmeans_plus_plus(x: Tensor, k: int, generator: torch.Generator) -> Tensor:
    """k-means++ seeding: each new centre is drawn with probability proportional to D(x)^2 (Chapter 4).

    x (N, D) -> centres (k, D). Spreads the first centres out, so fewer clusters start empty.
    """
    centres = [x[torch.randint(len(x), (1,), generator=generator)][0]]
    dist = (x - centres[0]).pow(2).sum(-1)  # (N,) squared distance to the nearest centre so far
    for _ in range(1, k):
        probs = dist / dist.sum() if dist.sum() > 0 else torch.full_like(dist, 1.0 / len(dist))
        new = x[torch.multinomial(probs, 1, generator=generator)][0]
        centres.append(new)
        dist = torch.minimum(dist, (x - new).pow(2).sum(-1))
    return torch.stack(centres)


class KMeans(nn.Module):
    """Standardize, then nearest of K centroids (Chapter 4). frames (..., D) -> tokens (...) long."""

    def __init__(self, num_clusters: int, dim: int):
        super().__init__()
        self.register_buffer("centroids", torch.zeros(num_clusters, dim))  # (K, D), standardized space
        self.register_buffer("mean", torch.zeros(dim))  # (D,)
        self.register_buffer("std", torch.ones(dim))  # (D,)

    @property
    def num_clusters(self) -> int:
        """K, the vocabulary size of the tokens (Chapter 4)."""
        return self.centroids.shape[0]

    @property
    def dim(self) -> int:
        """D, the dimension of the frames clustered (Chapter 4)."""
        return self.centroids.shape[1]

    def standardize(self, x: Tensor) -> Tensor:
        """Per-dimension zero mean and unit variance, with the training frames' statistics (Chapter 4)."""
        return (x - self.mean) / self.std

    @torch.no_grad()
    def predict(self, x: Tensor) -> Tensor:
        """Token of each frame (Chapter 4). x (..., D) -> (...) long."""
        if x.shape[-1] != self.dim:
            raise ValueError(f"k-means expects frames of dimension {self.dim}, got {tuple(x.shape)}")
        flat = self.standardize(x.reshape(-1, self.dim).float().to(self.centroids.device))
        return _nearest(flat, self.centroids).reshape(x.shape[:-1])

    forward = predict

    @classmethod
    @torch.no_grad()
    def fit(cls, x: Tensor, num_clusters: int, iters: int = 30, seed: int = 0,
            init_points: int = 20_000) -> "KMeans":
        """Lloyd's algorithm from k-means++ seeds on frames x (N, D) (Chapter 4). Deterministic for a seed.

        An empty cluster is re-seeded on the frame farthest from its centroid.
        """
        if x.ndim != 2 or len(x) < num_clusters:
            raise ValueError(f"k-means needs frames (N, D) with N >= {num_clusters}, got {tuple(x.shape)}")
        x = x.float()
        km = cls(num_clusters, x.shape[1])
        km.mean.copy_(x.mean(0))
        km.std.copy_(x.std(0).clamp(min=1e-5))
        z = km.standardize(x)  # (N, D)
        g = torch.Generator().manual_seed(seed)
        sample = z[torch.randperm(len(z), generator=g)[:init_points]]
        centroids = kmeans_plus_plus(sample, num_clusters, g)  # (K, D)
        for _ in range(iters):
            assign = _nearest(z, centroids)  # (N,)
            counts = torch.bincount(assign, minlength=num_clusters)  # (K,)
            sums = torch.zeros_like(centroids).index_add_(0, assign, z)  # (K, D)
            new = sums / counts.clamp(min=1)[:, None]
            empty = counts == 0
            if empty.any():  # move empty clusters onto the worst-served frames
                err = (z - centroids[assign]).pow(2).sum(-1)
                new[empty] = z[err.topk(int(empty.sum())).indices]
            if torch.equal(new, centroids):
                break
            centroids = new
        km.centroids.copy_(centroids)
        return km

    def inertia(self, x: Tensor) -> float:
        """Mean squared distance of standardized frames to their centroid (Chapter 4)."""
        z = self.standardize(x.reshape(-1, self.dim).float())
        return float((z - self.centroids[self.predict(x).reshape(-1)]).pow(2).sum(-1).mean())


def save_kmeans(path: str, kmeans: KMeans, meta: dict | None = None) -> None:
    """Write <path>.safetensors (centroids, mean, std) and <path>.json (sizes + meta) (Chapter 4)."""
    from safetensors.torch import save_file

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in kmeans.state_dict().items()}
    save_file(tensors, path + ".safetensors.tmp")
    os.replace(path + ".safetensors.tmp", path + ".safetensors")
    info = {"num_clusters": kmeans.num_clusters, "dim": kmeans.dim, **(meta or {})}
    with open(path + ".json.tmp", "w") as f:
        json.dump(info, f, indent=2)
    os.replace(path + ".json.tmp", path + ".json")


def load_kmeans(path: str, expected_clusters: int | None = None, expected_dim: int | None = None) -> KMeans:
    """Read what `save_kmeans` wrote; CheckpointError if missing or of the wrong size (Chapter 4)."""
    from safetensors.torch import load_file

    if not os.path.exists(path + ".safetensors"):
        raise CheckpointError(f"k-means checkpoint not found: {path}.safetensors")
    try:
        tensors = load_file(path + ".safetensors")
        K, D = tensors["centroids"].shape
    except Exception as exc:
        raise CheckpointError(f"cannot read k-means checkpoint {path}.safetensors: {exc}") from exc
    if expected_clusters is not None and K != expected_clusters:
        raise CheckpointError(f"{path}: {K} clusters, but the preset expects {expected_clusters}")
    if expected_dim is not None and D != expected_dim:
        raise CheckpointError(f"{path}: centroids of dimension {D}, but the preset expects {expected_dim}")
    km = KMeans(K, D)
    km.load_state_dict(tensors)
    return km


# ---------------------------------------------------------------------------------------------
# The baseline: k-means on MFCC frames
# ---------------------------------------------------------------------------------------------
def mfcc_frames(wave: Tensor, cfg: SemanticConfig, n_mfcc: int = 13) -> Tensor:
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
        from .semantic import check_waveforms

        wave = check_waveforms(wave, self.cfg.hop, "MfccTokenizer")
        return self.kmeans.predict(mfcc_frames(wave, self.cfg))

    __call__ = tokenize

    @classmethod
    def fit(cls, waves: Tensor, cfg: SemanticConfig, seed: int = 0, batch_size: int = 32) -> "MfccTokenizer":
        """Fit the baseline's k-means on the MFCC frames of training clips (N, T) (Chapter 4)."""
        frames = torch.cat([mfcc_frames(w, cfg).flatten(0, 1) for w in waves.split(batch_size)])
        return cls(cfg, KMeans.fit(frames, cfg.num_clusters, seed=seed))


def load_mfcc_tokenizer(preset: str = "tiny", directory: str | None = None) -> MfccTokenizer:
    """The baseline tokenizer shipped beside the semantic one (checkpoints/semantic-<preset>) (Chapter 4)."""
    from .config import get_preset
    from .semantic import semantic_checkpoint_dir

    cfg = get_preset(preset).semantic
    path = os.path.join(directory or semantic_checkpoint_dir(preset), "mfcc-kmeans")
    return MfccTokenizer(cfg, load_kmeans(path, expected_clusters=cfg.num_clusters, expected_dim=39))
