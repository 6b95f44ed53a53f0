"""k-means: continuous frames -> discrete tokens (Chapter 4).

MusicLM's semantic tokens are the nearest of 1024 k-means centroids to each w2v-BERT embedding
(Sec. 3.1). The same `KMeans` on MFCC frames gives the baseline tokenizer (`mfcc.py`).

Frames are standardized per dimension before clustering (mean 0, variance 1, statistics from the
training frames), so no single dimension dominates the Euclidean distance. The centroids live in
that standardized space; Chapter 10 uses their distances as the ground cost of optimal transport.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .quantize import lloyd_step, nearest_code


@dataclass(frozen=True)
class KMeansConfig:
    """What a k-means is (Chapter 4): K centroids of D-dimensional frames, and which frames.

    `features` names them ("w2v-bert" embeddings of MLM layer `layer`, or "mfcc" frames): the
    semantic tokenizer reads the layer the k-means was fitted on.
    """

    num_clusters: int
    dim: int
    features: str = "w2v-bert"
    layer: int | None = None


def kmeans_config(preset) -> KMeansConfig:
    """The `kmeans` component of `preset`: clusters of w2v-BERT layer `embedding_layer` (Chapter 4)."""
    cfg = preset.semantic
    return KMeansConfig(cfg.num_clusters, cfg.d_model, "w2v-bert", cfg.embedding_layer)


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

    def __init__(self, num_clusters: int, dim: int, config: KMeansConfig | None = None):
        super().__init__()
        self.cfg = config or KMeansConfig(num_clusters, dim)
        self.register_buffer("centroids", torch.zeros(num_clusters, dim))  # (K, D), standardized space
        self.register_buffer("mean", torch.zeros(dim))  # (D,)
        self.register_buffer("std", torch.ones(dim))  # (D,)

    @classmethod
    def from_config(cls, config: KMeansConfig) -> "KMeans":
        """An unfitted k-means of `config`'s size, to load centroids into (`components.load`)."""
        return cls(config.num_clusters, config.dim, config)

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
        return nearest_code(flat, self.centroids).reshape(x.shape[:-1])

    forward = predict

    @classmethod
    @torch.no_grad()
    def fit(cls, x: Tensor, num_clusters: int, iters: int = 30, seed: int = 0, init_points: int = 20_000,
            features: str = "w2v-bert", layer: int | None = None) -> "KMeans":
        """Lloyd's algorithm from k-means++ seeds on frames x (N, D) (Chapter 4). Deterministic for a seed.

        An empty cluster is re-seeded on the frame farthest from its centroid.
        """
        if x.ndim != 2 or len(x) < num_clusters:
            raise ValueError(f"k-means needs frames (N, D) with N >= {num_clusters}, got {tuple(x.shape)}")
        x = x.float()
        km = cls(num_clusters, x.shape[1], KMeansConfig(num_clusters, x.shape[1], features, layer))
        km.mean.copy_(x.mean(0))
        km.std.copy_(x.std(0).clamp(min=1e-5))
        z = km.standardize(x)  # (N, D)
        g = torch.Generator().manual_seed(seed)
        sample = z[torch.randperm(len(z), generator=g)[:init_points]]
        centroids = kmeans_plus_plus(sample, num_clusters, g)  # (K, D)
        for _ in range(iters):
            assign, new = lloyd_step(z, centroids)  # (N,), (K, D)
            empty = torch.bincount(assign, minlength=num_clusters) == 0
            if empty.any():  # move empty clusters onto the worst-served frames
                err = (z - centroids[assign]).pow(2).sum(-1)
                new[empty] = z[err.topk(int(empty.sum())).indices]
            if torch.equal(new, centroids):
                break
            centroids = new
        km.centroids.copy_(centroids)
        return km
