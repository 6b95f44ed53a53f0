"""Exercise of Chapter 6: flatten acoustic tokens frame by frame, as the coarse and fine stages read them.

The reader writes `fn(codes, codebook_size, offset) -> ids`, with
    codes:          (B, Q, T) long tensor, codes[b, q, t] in [0, codebook_size): level q of frame t
    codebook_size:  codes per RVQ level (K_a)
    offset:         first id of level 1's slice in the stage's vocabulary
    ids:            (B, T * Q) long tensor, position t * Q + q holding offset + q * codebook_size + codes[b, q, t]
`check_flatten_frames(fn)` grades it against `reference_flatten_frames`, written independently of the
package's `musiclm_mini.hierarchy.tokens.flatten_frames` (two loops straight from the definition, where the
package reshapes), so a bug in the package cannot hide in its own grader; `tests/test_exercise_flatten.py`
checks that the two agree.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from .grading import grade


def reference_flatten_frames(codes: Tensor, codebook_size: int, offset: int = 0) -> Tensor:
    """The answer to Chapter 6's exercise, position by position from its definition (Chapter 6).

    Slow on purpose: it spells out `t * Q + q` and `offset + q * codebook_size + code` rather than
    reshaping, so it shares no step with the package's `flatten_frames`.
    """
    B, Q, T = codes.shape
    ids = torch.empty(B, T * Q, dtype=torch.long)
    for t in range(T):  # frames outer ...
        for q in range(Q):  # ... levels inner
            ids[:, t * Q + q] = offset + q * codebook_size + codes[:, q, t].long()
    return ids


def _codes(b: int, q: int, t: int, k: int, seed: int) -> Tensor:
    return torch.randint(0, k, (b, q, t), generator=torch.Generator().manual_seed(seed))


def _cases() -> list[tuple[str, Tensor, int, int]]:
    return [
        ("4 coarse levels, 5 frames, no offset", _codes(2, 4, 5, 16, 1), 16, 0),
        ("the coarse stage's offset (after MuLan and semantic ids)", _codes(2, 4, 6, 256, 2), 256, 3200),
        ("the fine stage's levels 5-8 (offset 4 * K_a)", _codes(1, 4, 3, 256, 3), 256, 1024),
        ("one level only", _codes(3, 1, 7, 8, 4), 8, 5),
        ("one frame only", _codes(2, 3, 1, 8, 5), 8, 0),
    ]


def _hint(got: Tensor, codes: Tensor, k: int, offset: int) -> str:
    """Name the usual mistakes: level-major order, forgotten level or stage offsets."""
    B, Q, T = codes.shape
    levels = (torch.arange(Q) * k).view(1, -1, 1)
    guesses = {
        " (that is level by level: MusicLM flattens frame by frame, all levels of frame 1 first)":
            (codes + offset + levels).reshape(B, -1),
        " (every level needs its own vocabulary slice: add q * codebook_size)":
            (codes + offset).transpose(1, 2).reshape(B, -1),
        " (the stage's offset is missing)": (codes + levels).transpose(1, 2).reshape(B, -1),
    }
    for hint, guess in guesses.items():
        if got.shape == guess.shape and torch.equal(got, guess):
            return hint
    return ""


def check_flatten_frames(fn: Callable[[Tensor, int, int], Tensor], verbose: bool = True) -> bool:
    """Grade a reader's frame-by-frame flattening; print what passed and what did not (Chapter 6).

    Never raises: an exception inside `fn` counts as a failed check, so the notebook keeps running.
    """
    def compare(got, codes: Tensor, k: int, offset: int) -> str | None:
        want = reference_flatten_frames(codes, k, offset)
        got = torch.as_tensor(got)
        if got.shape != want.shape:
            return f"expected shape {tuple(want.shape)}, got {tuple(got.shape)}"
        if not torch.equal(got.long(), want):
            return f"wrong ids{_hint(got.long(), codes, k, offset)}"
        return None

    return grade(_cases(), fn, compare, verbose)
