"""Exercise of Chapter 8: mine the semi-hard negatives of a triplet batch (FaceNet's rule, MusicLM appendix C).

The reader writes `fn(dist, labels) -> (anchor, positive, negative)`: for every ordered pair (a, p), a != p,
with the same label, in row-major order, the index of its negative: the closest example of another label
that is farther from the anchor than the positive; if there is none, the farthest example of another label.
`check_semi_hard_mining(fn)` grades it against `reference_mining`, three plain loops written independently of
the package's vectorised `musiclm_mini.melody.triplet.mine_semi_hard`; `tests/test_exercise_references.py`
checks that the two agree.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from .grading import grade


def reference_mining(dist: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The answer, pair by pair (Chapter 8): dist (B, B) squared distances, labels (B,) -> three (P,) tensors."""
    B, anchors, positives, negatives = len(labels), [], [], []
    for a in range(B):
        for p in range(B):
            if a == p or labels[a] != labels[p]:
                continue
            others = [n for n in range(B) if labels[n] != labels[a]]
            farther = [n for n in others if dist[a, n] > dist[a, p]]
            # ties go to the lowest index, as an arg-min / arg-max over the row does
            pick = min(farther, key=lambda n: (dist[a, n], n)) if farther else \
                max(others, key=lambda n: (dist[a, n], -n))
            anchors.append(a), positives.append(p), negatives.append(pick)
    as_long = lambda xs: torch.tensor(xs, dtype=torch.long)  # noqa: E731
    return as_long(anchors), as_long(positives), as_long(negatives)


def _batch(b: int, labels: int, seed: int, spread: float = 1.0) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    lab = torch.arange(b) % labels  # every label at least twice when b >= 2 * labels
    emb = spread * torch.randn(b, 3, generator=g)
    sq = (emb * emb).sum(-1)
    return (sq[:, None] + sq[None, :] - 2 * emb @ emb.t()).clamp(min=0), lab


def _cases() -> list[tuple]:
    return [("two melodies, four renderings each", *_batch(8, 2, 1)),
            ("five melodies, two renderings each", *_batch(10, 5, 2)),
            ("a batch where some positives are farther than every negative", *_batch(12, 3, 3, spread=0.1)),
            ("a larger batch", *_batch(24, 6, 4))]


def check_semi_hard_mining(fn: Callable[[Tensor, Tensor], tuple], verbose: bool = True) -> bool:
    """Grade a reader's semi-hard mining; print what passed and what did not (Chapter 8). Never raises."""
    def compare(got, dist: Tensor, labels: Tensor) -> str | None:
        want = reference_mining(dist, labels)
        got = [torch.as_tensor(x).long().reshape(-1) for x in got]
        if len(got) != 3:
            return "return three tensors: anchor, positive, negative"
        for name, g, w in zip(("anchors", "positives"), got[:2], want[:2]):
            if not torch.equal(g, w):
                return f"the {name} differ: every ordered pair a != p with the same label, in row-major order"
        if not torch.equal(got[2], want[2]):
            wrong = int((got[2] != want[2]).nonzero()[0]) if got[2].shape == want[2].shape else 0
            return (f"negative of pair {wrong} (anchor {int(want[0][wrong])}): expected {int(want[2][wrong])}, "
                    f"got {int(got[2][wrong]) if got[2].shape == want[2].shape else got[2].shape}")
        return None

    return grade(_cases(), fn, compare, verbose)
