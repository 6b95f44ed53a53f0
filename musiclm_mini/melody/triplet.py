"""The semi-hard triplet loss with in-batch mining (Chapter 8; MusicLM appendix C; FaceNet, Schroff et al. 2015).

Paper: "We use semi-hard triplet loss (Schroff et al., 2015) to train the melody embedding model".

A triplet is an *anchor* a, a *positive* p (the same melody, other acoustics) and a *negative* n
(another melody). With squared distances d(x, y) = |f(x) - f(y)|^2 the loss asks the negative to be
farther than the positive by a margin alpha:

    L(a, p, n) = max(0, d(a, p) - d(a, n) + alpha)

Which negative? Most are already far (loss 0, nothing learnt); the *hardest* (the closest) makes
training collapse early (FaceNet Sec. 3.2: "bad local minima ... a collapsed model"). FaceNet takes
a **semi-hard** one, "further away from the anchor than the positive exemplar, but still hard":

    d(a, p) < d(a, n) < d(a, p) + alpha        (inside the margin: a loss > 0 that is safe to learn from)

Mining, as in FaceNet's own implementation (TensorFlow's `triplet_semihard_loss`): every
(anchor, positive) pair of the batch is used; its negative is the *closest negative farther than the
positive* (semi-hard when within the margin, else the loss is 0 anyway); when no negative is farther
than the positive, it falls back to the *farthest* negative (the easiest of the hard ones, never the
hardest). The loss is the mean over all (anchor, positive) pairs.
"""
from __future__ import annotations

import torch
from torch import Tensor


def squared_distances(emb: Tensor) -> Tensor:
    """(B, D) embeddings -> (B, B) squared Euclidean distances (Chapter 8)."""
    sq = (emb * emb).sum(-1)
    return (sq[:, None] + sq[None, :] - 2 * emb @ emb.t()).clamp(min=0)


def mine_semi_hard(dist: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Each (anchor, positive) pair and its negative (Chapter 8).

    dist (B, B) squared distances, labels (B,) melody ids -> (anchor, positive, negative, fallback),
    each (P,): indices into the batch for every ordered pair a != p with the same label, and True where
    no negative was farther than the positive (the farthest negative was taken instead).
    """
    same = labels[:, None] == labels[None, :]  # (B, B)
    anchor, positive = torch.nonzero(same & ~torch.eye(len(labels), dtype=torch.bool, device=dist.device),
                                      as_tuple=True)  # (P,), (P,)
    d_ap = dist[anchor, positive][:, None]  # (P, 1)
    d_an = dist[anchor]  # (P, B): distance from each pair's anchor to every example
    negative_mask = ~same[anchor]  # (P, B): the candidates are the other melodies
    farther = negative_mask & (d_an > d_ap)  # candidates farther than the positive
    inf = torch.finfo(dist.dtype).max
    closest_farther = torch.where(farther, d_an, torch.full_like(d_an, inf)).argmin(1)  # (P,)
    farthest = torch.where(negative_mask, d_an, torch.full_like(d_an, -1.0)).argmax(1)  # (P,)
    fallback = ~farther.any(1)
    return anchor, positive, torch.where(fallback, farthest, closest_farther), fallback


def semi_hard_triplet_loss(emb: Tensor, labels: Tensor, margin: float = 0.2) -> tuple[Tensor, dict[str, float]]:
    """Mean of max(0, d(a, p) - d(a, n) + margin) over every (anchor, positive) pair (Chapter 8).

    emb (B, D), labels (B,). Returns the loss and what the mining found: the fraction of pairs whose
    negative was semi-hard (inside the margin), that fell back, and that still had a loss.
    """
    if not (labels[:, None] == labels[None, :]).fill_diagonal_(False).any():
        raise ValueError("a triplet batch needs at least two examples of one melody")
    if (labels[:, None] == labels[None, :]).all():
        raise ValueError("a triplet batch needs at least two melodies")
    dist = squared_distances(emb)
    a, p, n, fallback = mine_semi_hard(dist.detach(), labels)  # mining picks indices; no gradient through it
    d_ap, d_an = dist[a, p], dist[a, n]
    hinge = (d_ap - d_an + margin).clamp(min=0)  # (P,)
    stats = {"semi_hard": float(((d_an > d_ap) & (d_an < d_ap + margin)).float().mean()),
             "fallback": float(fallback.float().mean()), "active": float((hinge > 0).float().mean())}
    return hinge.mean(), stats
