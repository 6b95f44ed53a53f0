"""Exercise of Chapter 2: write the residual loop of residual vector quantization.

The reader writes `fn(x, codebooks) -> codes`, with
    x:         (B, T, D) float vectors
    codebooks: (Q, K, D) one codebook per level
    codes:     (B, Q, T) long, level q quantizing what levels 0..q-1 left over.
`check_residual_encode(fn)` grades it against `reference_residual_encode`.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from ..tokenizers.quantize import nearest_code
from .grading import grade


def reference_residual_encode(x: Tensor, codebooks: Tensor) -> Tensor:
    """The answer to Chapter 2's exercise: RVQ encoding with given codebooks (Chapter 2).

    x (B, T, D), codebooks (Q, K, D) -> codes (B, Q, T).
    """
    B, T, D = x.shape
    residual = x.reshape(-1, D)  # (N, D)
    codes = []
    for codebook in codebooks:  # (K, D) each
        c = nearest_code(residual, codebook)  # (N,)
        residual = residual - codebook[c]  # what this level missed goes to the next one
        codes.append(c.reshape(B, T))
    return torch.stack(codes, dim=1)  # (B, Q, T)


def _cases() -> list[tuple[str, Tensor, Tensor]]:
    g = torch.Generator().manual_seed(2)
    # Codebooks whose scale shrinks level by level, as trained RVQ codebooks do.
    shrinking = torch.randn(4, 16, 3, generator=g) * torch.tensor([1.0, 0.5, 0.25, 0.125])[:, None, None]
    return [
        ("one level is plain nearest-neighbour VQ", torch.randn(2, 5, 3, generator=g),
         torch.randn(1, 8, 3, generator=g)),
        ("four levels, each quantizing the residual", torch.randn(3, 7, 3, generator=g), shrinking),
        ("batch of one, one frame", torch.randn(1, 1, 3, generator=g), shrinking),
    ]


def check_residual_encode(fn: Callable[[Tensor, Tensor], Tensor], verbose: bool = True) -> bool:
    """Grade a reader's residual encoder; print what passed and what did not (Chapter 2).

    Never raises: an exception inside `fn` counts as a failed check, so the notebook keeps running.
    """
    def compare(got, x: Tensor, books: Tensor) -> str | None:
        want = reference_residual_encode(x, books)
        if not isinstance(got, Tensor):
            return f"expected a tensor of codes, got {type(got).__name__}"
        if tuple(got.shape) != tuple(want.shape):
            return f"expected codes of shape (B, Q, T) = {tuple(want.shape)}, got {tuple(got.shape)}"
        if not torch.equal(got.long(), want):
            wrong = (got.long() != want).float().mean(dim=(0, 2))  # (Q,) fraction wrong per level
            levels = ", ".join(f"level {q}: {w:.0%}" for q, w in enumerate(wrong.tolist()))
            hint = (" (level 0 is right: are later levels quantizing the residual, not x?)"
                    if wrong[0] == 0 and len(wrong) > 1 else "")
            return f"wrong codes ({levels}){hint}"
        return None

    return grade(_cases(), fn, compare, verbose)
