"""Exercise of Chapter 4: one step of Lloyd's k-means, the algorithm that makes semantic tokens.

The reader writes `fn(x, centroids) -> (assign, new_centroids)`, with
    x:             (N, D) float frames (embeddings)
    centroids:     (K, D) float, the current centroids
    assign:        (N,) long, index of each frame's nearest centroid (squared Euclidean distance)
    new_centroids: (K, D) float, the mean of the frames assigned to each centroid; a centroid that
                   received no frame stays where it was.
`check_lloyd_step(fn)` grades it against `reference_lloyd_step`.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from .grading import grade


def reference_lloyd_step(x: Tensor, centroids: Tensor) -> tuple[Tensor, Tensor]:
    """The answer to Chapter 4's exercise: assign frames, then move centroids to their means (Chapter 4).

    x (N, D), centroids (K, D) -> assign (N,), new centroids (K, D).
    """
    assign = torch.cdist(x, centroids).argmin(dim=1)  # (N,) nearest centroid = the frame's token
    counts = torch.bincount(assign, minlength=len(centroids))  # (K,)
    sums = torch.zeros_like(centroids).index_add_(0, assign, x)  # (K, D)
    new = centroids.clone()
    filled = counts > 0  # an empty cluster keeps its centroid instead of dividing by zero
    new[filled] = sums[filled] / counts[filled, None]
    return assign, new


def _cases() -> list[tuple[str, Tensor, Tensor]]:
    g = torch.Generator().manual_seed(4)
    blobs = torch.cat([torch.randn(20, 2, generator=g) * 0.1 + torch.tensor(c) for c in ([0.0, 0.0], [3.0, 0.0], [0.0, 3.0])])
    far = torch.tensor([[0.1, 0.0], [2.9, 0.1], [0.0, 2.8], [50.0, 50.0]])  # the last one gets no frame
    return [
        ("three well-separated blobs", blobs, blobs[[0, 20, 40]].clone()),
        ("an empty cluster keeps its centroid", blobs, far),
        ("random 8-d frames, 5 centroids", torch.randn(40, 8, generator=g), torch.randn(5, 8, generator=g)),
    ]


def check_lloyd_step(fn: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]], verbose: bool = True) -> bool:
    """Grade a reader's Lloyd step; print what passed and what did not (Chapter 4).

    Never raises: an exception inside `fn` counts as a failed check, so the notebook keeps running.
    """
    def compare(got, x: Tensor, cents: Tensor) -> str | None:
        want_assign, want_cents = reference_lloyd_step(x, cents)
        got_assign, got_cents = got
        if not (isinstance(got_assign, Tensor) and isinstance(got_cents, Tensor)):
            return "expected two tensors (assign, new_centroids)"
        if tuple(got_assign.shape) != tuple(want_assign.shape) or tuple(got_cents.shape) != tuple(want_cents.shape):
            return (f"expected shapes {tuple(want_assign.shape)} and {tuple(want_cents.shape)}, "
                    f"got {tuple(got_assign.shape)} and {tuple(got_cents.shape)}")
        if not torch.equal(got_assign.long(), want_assign):
            wrong = (got_assign.long() != want_assign).float().mean().item()
            return f"{wrong:.0%} of frames assigned to the wrong centroid (nearest = smallest distance?)"
        if not torch.allclose(got_cents.float(), want_cents, atol=1e-5):
            moved = ~torch.isclose(got_cents.float(), want_cents, atol=1e-5).all(dim=1)  # NaN counts as moved
            empty = torch.bincount(want_assign, minlength=len(cents)) == 0
            hint = " (an empty cluster must keep its old centroid)" if (moved & empty).any() else ""
            return f"centroids {moved.nonzero().flatten().tolist()} are not the means of their frames{hint}"
        return None

    return grade(_cases(), fn, compare, verbose)


def lloyd_step_stub(x: Tensor, centroids: Tensor) -> tuple[Tensor, Tensor]:
    """What the reader starts from in Chapter 4 (fails the check until filled in)."""
    raise NotImplementedError("assign each frame to its nearest centroid, then average each cluster")
