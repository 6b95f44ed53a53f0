"""Count-based baselines for the token stages: uniform, unigram and bigram, in nats per token (Chapter 6).

Before asking what a Transformer learned, ask what counting alone gets (as in Karpathy's makemore):
a stage's loss means little without the loss of the simplest models of the same tokens.

Tokens are codes (N, Q, T): N clips, Q levels (1 for semantic tokens), T frames, flattened frame by
frame as the stages flatten them (level 1..Q of frame 1, then of frame 2, ...). Each position's level
is known, so every model predicts among the K codes of that level:

    uniform   p(x) = 1 / K                                        log K nats
    unigram   p(x | level)            = (count(level, x) + a) / (count(level) + a K)
    bigram    p(x | level, previous)  = (count(level, previous, x) + a) / (count(level, previous) + a K)

The smoothing `a` is chosen on validation clips (`choose_alpha`), never on test clips.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


def flatten_codes(codes: Tensor) -> tuple[Tensor, Tensor]:
    """(N, Q, T) codes -> (N, T*Q) ids and (T*Q,) level of each position, frame by frame."""
    if codes.ndim != 3:
        raise ValueError(f"codes must be (N, Q, T), got shape {tuple(codes.shape)}")
    n, q, t = codes.shape
    return codes.transpose(1, 2).reshape(n, t * q).long(), torch.arange(q).repeat(t)


@dataclass
class CountModel:
    """Counts of a unigram (order 1) or bigram (order 2) model over K codes per level."""

    order: int
    codebook_size: int
    counts: Tensor  # order 1: (Q, K); order 2: (Q, K + 1, K), previous = K at a clip's first position
    alpha: float = 1.0

    def log_probs(self, levels: Tensor, previous: Tensor | None = None) -> Tensor:
        """log p(. | context) for every position: (..., K)."""
        table = self.counts[levels] if self.order == 1 else self.counts[levels, previous]
        table = table.double() + self.alpha
        return (table / table.sum(-1, keepdim=True)).log()


def _previous(ids: Tensor, k: int) -> Tensor:
    """The previous id of every position, K (the start symbol) at position 0: (N, L)."""
    return torch.cat([torch.full_like(ids[:, :1], k), ids[:, :-1]], dim=1)


def fit_counts(codes: Tensor, codebook_size: int, order: int, alpha: float = 1.0) -> CountModel:
    """Count a unigram (order=1) or bigram (order=2) model on training codes (N, Q, T)."""
    if order not in (1, 2):
        raise ValueError(f"order must be 1 (unigram) or 2 (bigram), got {order}")
    ids, levels = flatten_codes(codes)
    q, k = codes.shape[1], codebook_size
    if ids.numel() and (ids.min() < 0 or ids.max() >= k):
        raise ValueError(f"codes must lie in [0, {k})")
    lv = levels.expand_as(ids)
    if order == 1:
        counts = torch.zeros(q * k, dtype=torch.long).index_add_(0, (lv * k + ids).flatten(),
                                                                 torch.ones(ids.numel(), dtype=torch.long))
        return CountModel(1, k, counts.view(q, k), alpha)
    prev = _previous(ids, k)
    flat = (lv * (k + 1) + prev) * k + ids
    counts = torch.zeros(q * (k + 1) * k, dtype=torch.long).index_add_(0, flat.flatten(),
                                                                       torch.ones(ids.numel(), dtype=torch.long))
    return CountModel(2, k, counts.view(q, k + 1, k), alpha)


def mean_nll(model: CountModel, codes: Tensor) -> float:
    """Mean negative log-likelihood in nats per token of codes (N, Q, T) under a count model."""
    ids, levels = flatten_codes(codes)
    lv = levels.expand_as(ids)
    logp = model.log_probs(lv, _previous(ids, model.codebook_size) if model.order == 2 else None)  # (N, L, K)
    return float(-logp.gather(-1, ids.unsqueeze(-1)).mean())


def uniform_nll(codebook_size: int) -> float:
    """The loss of guessing uniformly among K codes: log K nats."""
    return math.log(codebook_size)


def choose_alpha(train: Tensor, validation: Tensor, codebook_size: int, order: int,
                 alphas: tuple[float, ...] = (0.01, 0.03, 0.1, 0.3, 1.0)) -> tuple[float, dict[float, float]]:
    """The smoothing with the lowest validation loss, and every candidate's validation loss."""
    base = fit_counts(train, codebook_size, order)
    losses = {a: mean_nll(CountModel(order, codebook_size, base.counts, a), validation) for a in alphas}
    return min(losses, key=losses.get), losses


def baseline_table(train: Tensor, validation: Tensor, test: Tensor, codebook_size: int) -> dict[str, float]:
    """Uniform, unigram and bigram test losses (nats/token), smoothing chosen on validation."""
    table = {"uniform": uniform_nll(codebook_size)}
    for order, name in ((1, "unigram"), (2, "bigram")):
        alpha, _ = choose_alpha(train, validation, codebook_size, order)
        table[name] = mean_nll(fit_counts(train, codebook_size, order, alpha), test)
        table[f"{name}_alpha"] = alpha
    return table
