"""Vector quantization and residual vector quantization (Chapter 2).

A `VectorQuantizer` replaces each D-dim vector by the nearest of K code vectors; a `ResidualVQ`
chains Q of them, each one quantizing what the previous ones missed. SoundStream (Chapter 3),
MuLan tokens (Chapter 5) and melody tokens (Chapter 8) all use the same `ResidualVQ`.

Training choices follow SoundStream (Zeghidour et al., 2021, Sec. 3.3) and VQ-VAE-2:
  * k-means initialisation of each codebook from the first training batch,
  * codebooks updated by exponential moving averages (EMA), not by gradients,
  * dead-code restarts: rarely used codes are moved onto vectors of the current batch,
  * straight-through gradients and a commitment loss for whatever produces the vectors,
  * quantizer dropout: each training batch uses a random number of levels 1..Q.

Codebooks are buffers, not parameters, so an optimizer never touches them and `state_dict`
(hence safetensors) saves them. Under `torch.distributed` the EMA statistics are all-reduced and
random choices are broadcast from rank 0, so DDP replicas keep identical codebooks.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn


class QuantizerOutput(NamedTuple):
    """What a quantizer returns (Chapter 2)."""

    quantized: Tensor  # (B, T, D), straight-through: forward value = codes, gradient = identity
    codes: Tensor  # (B, T) for a VectorQuantizer, (B, Q', T) for a ResidualVQ; long
    loss: Tensor  # scalar commitment loss


# ---------------------------------------------------------------------------------------------
# Small pure helpers
# ---------------------------------------------------------------------------------------------
def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def _broadcast_(t: Tensor) -> None:
    """Copy rank 0's tensor to every replica, in place (no-op without torch.distributed)."""
    if _distributed():
        dist.broadcast(t, src=0)


def _all_reduce_(t: Tensor) -> None:
    """Sum a tensor over replicas, in place (no-op without torch.distributed)."""
    if _distributed():
        dist.all_reduce(t)


def _check_vectors(x: Tensor, dim: int, name: str) -> None:
    if x.ndim != 3 or x.shape[-1] != dim:
        raise ValueError(f"{name} expects vectors of shape (B, T, {dim}), got {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} got NaN or infinite values to quantize")


def nearest_code(x: Tensor, codebook: Tensor, chunk: int = 65_536) -> Tensor:
    """Index of the nearest code (squared Euclidean) for each row of x (Chapter 2).

    x: (N, D), codebook: (K, D) -> (N,) long. Rows go `chunk` at a time, so N x K scores never fill memory.
    """
    if len(x) > chunk:
        return torch.cat([nearest_code(part, codebook, chunk) for part in x.split(chunk)])
    # ||x - c||^2 = ||x||^2 - 2 x.c + ||c||^2; ||x||^2 is the same for every code, so drop it.
    scores = codebook.pow(2).sum(-1) - 2 * x @ codebook.t()  # (N, K)
    return scores.argmin(dim=-1)


def sample_vectors(x: Tensor, n: int) -> Tensor:
    """n rows of x chosen at random; without replacement when x has enough rows (Chapter 2)."""
    if x.shape[0] >= n:
        idx = torch.randperm(x.shape[0], device=x.device)[:n]
    else:
        idx = torch.randint(0, x.shape[0], (n,), device=x.device)
    return x[idx]


def lloyd_step(x: Tensor, centres: Tensor) -> tuple[Tensor, Tensor]:
    """One step of Lloyd's algorithm (Chapters 2 and 4): rows x (N, D), centres (K, D) ->
    (assign (N,): each row's nearest centre, new centres (K, D): the mean of their rows).

    A centre that no row chose keeps its place (the callers decide what to do with it).
    """
    assign = nearest_code(x, centres)  # (N,)
    counts = torch.bincount(assign, minlength=len(centres))  # (K,)
    sums = torch.zeros_like(centres).index_add_(0, assign, x)  # (K, D)
    new = centres.clone()
    filled = counts > 0
    new[filled] = sums[filled] / counts[filled, None].to(x.dtype)
    return assign, new


def kmeans(x: Tensor, k: int, iters: int = 10) -> tuple[Tensor, Tensor]:
    """Lloyd's k-means on the rows of x (Chapter 2). Returns centres (k, D) and counts (k,).

    Centres start at random rows of x; a cluster that empties keeps its previous centre.
    """
    centres = sample_vectors(x, k).clone()  # (k, D)
    for _ in range(iters):
        centres = lloyd_step(x, centres)[1]
    counts = torch.bincount(nearest_code(x, centres), minlength=k).to(x.dtype)
    return centres, counts


def codebook_stats(codes: Tensor, codebook_size: int) -> dict[str, Tensor]:
    """How well codes use their codebook (Chapter 2).

    codes (B, T) -> usage and perplexity as 0-d tensors; codes (B, Q, T) -> one value per level (Q,).
    usage = fraction of the K codes that occur at least once; perplexity = exp(entropy) of the code
    histogram, between 1 (one code only) and K (all codes equally often).
    """
    if codes.ndim == 2:
        per_level = codes.reshape(1, -1)  # (1, N)
    elif codes.ndim == 3:
        per_level = codes.transpose(0, 1).reshape(codes.shape[1], -1)  # (Q, B*T)
    else:
        raise ValueError(f"codebook_stats expects codes (B, T) or (B, Q, T), got {tuple(codes.shape)}")
    if per_level.numel() and (per_level.min() < 0 or per_level.max() >= codebook_size):
        raise ValueError(f"codes must lie in [0, {codebook_size}), got {per_level.min()}..{per_level.max()}")
    hist = torch.stack([torch.bincount(row, minlength=codebook_size) for row in per_level]).float()
    probs = hist / hist.sum(-1, keepdim=True).clamp(min=1)  # (Q, K)
    entropy = -(probs * probs.clamp(min=1e-12).log()).sum(-1)  # nats
    usage = (hist > 0).float().mean(-1)
    perplexity = entropy.exp()
    if codes.ndim == 2:
        return {"usage": usage[0], "perplexity": perplexity[0]}
    return {"usage": usage, "perplexity": perplexity}


# ---------------------------------------------------------------------------------------------
# One codebook
# ---------------------------------------------------------------------------------------------
class VectorQuantizer(nn.Module):
    """Nearest-neighbour quantizer with an EMA-trained codebook (Chapter 2).

    x (B, T, D) -> QuantizerOutput(quantized (B, T, D), codes (B, T), loss ()).
    `dead_code_threshold` is an EMA count *per training batch*: keep it well below
    (vectors per batch) / codebook_size, or healthy codes are restarted every step.
    """

    def __init__(self, dim: int, codebook_size: int, ema_decay: float = 0.99,
                 commitment_weight: float = 0.25, kmeans_init: bool = True,
                 dead_code_threshold: float = 1.0, kmeans_iters: int = 10, eps: float = 1e-5):
        super().__init__()
        if dim < 1 or codebook_size < 1:
            raise ValueError(f"dim and codebook_size must be positive, got {dim} and {codebook_size}")
        if not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {ema_decay}")
        self.dim, self.codebook_size = dim, codebook_size
        self.ema_decay, self.commitment_weight = ema_decay, commitment_weight
        self.dead_code_threshold, self.kmeans_iters, self.eps = dead_code_threshold, kmeans_iters, eps
        # Buffers, not parameters: the EMA below is the codebook's only teacher.
        self.register_buffer("codebook", torch.randn(codebook_size, dim))  # (K, D)
        self.register_buffer("cluster_size", torch.ones(codebook_size))  # (K,) EMA of counts
        self.register_buffer("embed_sum", self.codebook.clone())  # (K, D) EMA of sums of vectors
        self.register_buffer("initialized", torch.tensor(not kmeans_init))

    # -- inference -----------------------------------------------------------------------------
    def encode(self, x: Tensor) -> Tensor:
        """Codes of the nearest codebook vectors (Chapter 2). x (B, T, D) -> (B, T) long."""
        _check_vectors(x, self.dim, "VectorQuantizer")
        B, T, D = x.shape
        return nearest_code(x.reshape(-1, D).float(), self.codebook).reshape(B, T)

    def decode(self, codes: Tensor) -> Tensor:
        """Codebook vectors for codes (Chapter 2). codes (B, T) -> (B, T, D)."""
        if codes.numel() and (codes.min() < 0 or codes.max() >= self.codebook_size):
            raise ValueError(f"codes must lie in [0, {self.codebook_size}), "
                             f"got {int(codes.min())}..{int(codes.max())}")
        return F.embedding(codes.long(), self.codebook)

    # -- training --------------------------------------------------------------------------------
    @torch.no_grad()
    def _init_from_kmeans(self, flat: Tensor) -> None:
        centres, counts = kmeans(flat, self.codebook_size, self.kmeans_iters)
        self.codebook.copy_(centres)
        _broadcast_(self.codebook)  # replicas saw different batches: agree on rank 0's centres
        # A centre that no batch vector chose (a duplicate when the batch has fewer vectors than
        # codes) starts with count 0, so the dead-code restart below moves it at once.
        _broadcast_(counts)
        self.cluster_size.copy_(counts)
        self.embed_sum.copy_(self.codebook * counts[:, None])
        self.initialized.fill_(True)

    @torch.no_grad()
    def _ema_update(self, flat: Tensor, codes: Tensor) -> None:
        one_hot = F.one_hot(codes, self.codebook_size).type(flat.dtype)  # (N, K)
        counts = one_hot.sum(0)  # (K,)
        sums = one_hot.t() @ flat  # (K, D)
        _all_reduce_(counts)
        _all_reduce_(sums)
        self.cluster_size.mul_(self.ema_decay).add_(counts, alpha=1 - self.ema_decay)
        self.embed_sum.mul_(self.ema_decay).add_(sums, alpha=1 - self.ema_decay)
        # Laplace smoothing keeps a code that was never chosen from dividing by zero.
        n = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.eps) / (n + self.codebook_size * self.eps) * n
        self.codebook.copy_(self.embed_sum / smoothed[:, None])

    @torch.no_grad()
    def _restart_dead_codes(self, flat: Tensor) -> None:
        dead = self.cluster_size < self.dead_code_threshold  # (K,) identical on every replica
        n_dead = int(dead.sum())
        if n_dead == 0:
            return
        # A dead code moves onto a vector the encoder really produces, so it will be chosen again.
        fresh = sample_vectors(flat, n_dead)  # (n_dead, D)
        self.codebook[dead] = fresh
        self.cluster_size[dead] = self.dead_code_threshold
        self.embed_sum[dead] = fresh * self.dead_code_threshold
        for t in (self.codebook, self.cluster_size, self.embed_sum):
            _broadcast_(t)

    def quantize(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Quantize without the straight-through trick, updating the codebook when training (Chapter 2).

        x (B, T, D) -> (quantized (B, T, D) without gradient, codes (B, T), commitment loss ()).
        """
        _check_vectors(x, self.dim, "VectorQuantizer")
        B, T, D = x.shape
        flat = x.detach().reshape(-1, D).float()  # (N, D); float32 even under autocast
        if self.training and not bool(self.initialized):
            self._init_from_kmeans(flat)
        codes = nearest_code(flat, self.codebook)  # (N,)
        quantized = F.embedding(codes, self.codebook).reshape(B, T, D).to(x.dtype)
        if self.training:
            self._ema_update(flat, codes)
            if self.dead_code_threshold > 0:
                self._restart_dead_codes(flat)
        # The commitment loss pulls the encoder towards its codes; the codes move by EMA instead.
        loss = self.commitment_weight * F.mse_loss(x, quantized)
        return quantized, codes.reshape(B, T), loss

    def forward(self, x: Tensor) -> QuantizerOutput:
        quantized, codes, loss = self.quantize(x)
        # Straight-through: the forward pass sees the code, the backward pass sees the identity.
        quantized = x + (quantized - x).detach()
        return QuantizerOutput(quantized, codes, loss)


# ---------------------------------------------------------------------------------------------
# A stack of codebooks
# ---------------------------------------------------------------------------------------------
class ResidualVQ(nn.Module):
    """Q vector quantizers, each quantizing the residual left by the ones before it (Chapter 2).

    x (B, T, D) -> QuantizerOutput(quantized (B, T, D), codes (B, Q', T), loss ()), where Q' is
    n_q if given, a random 1..Q in training with quantizer dropout, else Q.
    """

    def __init__(self, dim: int, num_quantizers: int, codebook_size: int, quantizer_dropout: bool = True,
                 ema_decay: float = 0.99, commitment_weight: float = 0.25, kmeans_init: bool = True,
                 dead_code_threshold: float = 1.0):
        super().__init__()
        if num_quantizers < 1:
            raise ValueError(f"num_quantizers must be at least 1, got {num_quantizers}")
        self.dim, self.num_quantizers, self.codebook_size = dim, num_quantizers, codebook_size
        self.quantizer_dropout = quantizer_dropout
        self.layers = nn.ModuleList(
            VectorQuantizer(dim, codebook_size, ema_decay, commitment_weight, kmeans_init, dead_code_threshold)
            for _ in range(num_quantizers))

    @classmethod
    def from_config(cls, cfg) -> "ResidualVQ":
        """Build from an `RVQConfig` (Chapter 2)."""
        return cls(cfg.dim, cfg.num_quantizers, cfg.codebook_size, quantizer_dropout=cfg.quantizer_dropout,
                   ema_decay=cfg.ema_decay, commitment_weight=cfg.commitment_weight,
                   kmeans_init=cfg.kmeans_init, dead_code_threshold=cfg.dead_code_threshold)

    @property
    def codebooks(self) -> Tensor:
        """All codebooks stacked, (Q, K, D) (Chapter 2)."""
        return torch.stack([layer.codebook for layer in self.layers])

    @property
    def bits_per_frame(self) -> float:
        return self.num_quantizers * math.log2(self.codebook_size)

    def _levels(self, n_q: int | None) -> int:
        if n_q is None:
            return self.num_quantizers
        if not 1 <= n_q <= self.num_quantizers:
            raise ValueError(f"n_q must be in 1..{self.num_quantizers}, got {n_q}")
        return int(n_q)

    def _random_levels(self, device: torch.device) -> int:
        n_q = torch.randint(1, self.num_quantizers + 1, (1,), device=device)
        _broadcast_(n_q)  # every replica must run the same levels, or their all-reduces would hang
        return int(n_q)

    def forward(self, x: Tensor, n_q: int | None = None) -> QuantizerOutput:
        _check_vectors(x, self.dim, "ResidualVQ")
        if n_q is None and self.training and self.quantizer_dropout:
            n_q = self._random_levels(x.device)  # SoundStream: train for every bitrate at once
        n_q = self._levels(n_q)
        residual = x  # (B, T, D); keeps its gradient so every level's commitment loss reaches x
        quantized = torch.zeros_like(x)
        codes, losses = [], []
        for layer in self.layers[:n_q]:
            q, c, loss = layer.quantize(residual)
            residual = residual - q
            quantized = quantized + q
            codes.append(c)
            losses.append(loss)
        # One straight-through step for the sum: d(quantized)/dx = identity, whatever n_q is.
        quantized = x + (quantized - x).detach()
        return QuantizerOutput(quantized, torch.stack(codes, dim=1), torch.stack(losses).mean())

    @torch.no_grad()
    def encode(self, x: Tensor, n_q: int | None = None) -> Tensor:
        """Codes of the first n_q (default all) levels (Chapter 2). x (B, T, D) -> (B, n_q, T)."""
        _check_vectors(x, self.dim, "ResidualVQ")
        residual, codes = x.float(), []
        for layer in self.layers[: self._levels(n_q)]:
            c = layer.encode(residual)  # (B, T)
            residual = residual - layer.decode(c)
            codes.append(c)
        return torch.stack(codes, dim=1)

    def decode(self, codes: Tensor) -> Tensor:
        """Sum of the code vectors of the first codes.shape[1] levels (Chapter 2). (B, q, T) -> (B, T, D)."""
        if codes.ndim != 3:
            raise ValueError(f"ResidualVQ.decode expects codes (B, q, T), got {tuple(codes.shape)}")
        q = self._levels(codes.shape[1])
        return sum(self.layers[i].decode(codes[:, i]) for i in range(q))

    @torch.no_grad()
    def residual_errors(self, x: Tensor) -> Tensor:
        """Mean squared error after 1, 2, ..., Q levels, for plots (Chapter 2). x (B, T, D) -> (Q,)."""
        codes = self.encode(x)  # (B, Q, T)
        approx = torch.zeros_like(x, dtype=torch.float32)
        errors = []
        for i, layer in enumerate(self.layers):
            approx = approx + layer.decode(codes[:, i])
            errors.append(F.mse_loss(approx, x.float()))
        return torch.stack(errors)

    @torch.no_grad()
    def fit(self, vectors: Tensor, steps: int = 30, seed: int = 0) -> Tensor:
        """Fit every level to a set of vectors (N, D), from k-means then by EMA updates (Chapters 2, 5, 8).

        For quantizers of embeddings fitted after their encoder is trained (MuLan's 12 levels, the melody
        embedder's): always restarts from k-means, even over an earlier fit. -> MSE after each level (Q,).
        """
        torch.manual_seed(seed)
        x = vectors.detach().float()[None]  # (1, N, D): one "sequence" of N vectors
        for layer in self.layers:
            layer.initialized.fill_(False)
        self.train()
        for _ in range(steps):
            self(x, n_q=self.num_quantizers)
        self.eval()
        return self.residual_errors(x)
