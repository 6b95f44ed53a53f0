"""Statistics for Table 1: FAD through the Gram matrix, bootstrap intervals, paired permutation tests (Chapter 7).

MusicLM's Table 1 (Sec. 5) reports single numbers. With 32 captions, the book reports each with its
uncertainty, and compares two systems *paired by caption* (each caption's clips from both systems):

    fast_fad(reference, generated)      FAD of two (n, D) embedding sets, exact, fast when n << D
    fad_draws(reference, clips)         FAD when a caption has K clips: the mean over draws of one clip each
    bootstrap_ci(values)                95% interval of a mean over captions, resampling captions
    paired_permutation_p(a, b)          sign-flip test of mean(a - b) = 0 for per-caption values
    fad_swap_p(reference, x, y)         the same idea for FAD: swap the two systems' clips of a caption

Pure NumPy functions; `scripts/measure_table1.py` runs them, `tests/test_evaluation.py` checks them.
"""
from __future__ import annotations

import numpy as np


def fast_fad(reference: np.ndarray, generated: np.ndarray) -> float:
    """FAD between (n1, D) and (n2, D) embedding sets, through the clips' Gram matrix (Chapter 7).

    With centred data A (n1, D) and B (n2, D), S1 = A^T A / (n1 - 1) and S2 = B^T B / (n2 - 1), and
    tr((S1 S2)^{1/2}) is the sum of the singular values of A B^T / sqrt((n1 - 1)(n2 - 1)): an n1 x n2
    matrix, not D x D. Equal to `evaluation.fad.fad` (tested); thousands of times faster when n << D,
    which the permutation tests need.
    """
    a, b = np.asarray(reference, np.float64), np.asarray(generated, np.float64)
    ma, mb = a.mean(0), b.mean(0)
    a, b = a - ma, b - mb
    ca, cb = len(a) - 1, len(b) - 1
    cross = np.linalg.svd(a @ b.T / np.sqrt(ca * cb), compute_uv=False).sum()
    value = (ma - mb) @ (ma - mb) + (a * a).sum() / ca + (b * b).sum() / cb - 2.0 * cross
    return float(max(value, 0.0))


def bootstrap_ci(values, resamples: int = 2000, seed: int = 0) -> list[float]:
    """95% percentile interval of the mean of per-caption values, resampling captions (Chapter 7)."""
    v = np.asarray(values, np.float64)
    idx = np.random.default_rng(seed).integers(0, len(v), (resamples, len(v)))
    return [float(x) for x in np.percentile(v[idx].mean(1), [2.5, 97.5])]


def paired_permutation_p(a, b, permutations: int = 10_000, seed: int = 0) -> float:
    """Two-sided sign-flip permutation test of mean(a - b) = 0 for per-caption values (Chapter 7)."""
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    signs = np.random.default_rng(seed).choice([-1.0, 1.0], (permutations, len(d)))
    null = np.abs((signs * d).mean(1))
    return float((1 + (null >= abs(d.mean()) - 1e-12).sum()) / (permutations + 1))


def fad_swap_p(reference, x, y, permutations: int = 1000, seed: int = 0) -> float:
    """Paired permutation test of FAD(ref, x) = FAD(ref, y); row i of x and y belong to caption i (Chapter 7).

    Under "the two systems' clips are exchangeable", swapping the two clips of a caption changes nothing;
    the p-value is the share of random swaps whose |difference| is at least the observed one.
    """
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    observed = abs(fast_fad(reference, x) - fast_fad(reference, y))
    rng, hits = np.random.default_rng(seed), 0
    for _ in range(permutations):
        swap = rng.random(len(x)) < 0.5
        xs, ys = np.where(swap[:, None], y, x), np.where(swap[:, None], x, y)
        hits += abs(fast_fad(reference, xs) - fast_fad(reference, ys)) >= observed - 1e-12
    return float((1 + hits) / (permutations + 1))


def fad_draws(reference, clips, draws: int = 20, seed: int = 0) -> dict:
    """FAD of (N, K, D) clips (K per caption) against (N_ref, D): each draw takes one clip per caption."""
    clips = np.asarray(clips, np.float64)
    if clips.shape[1] == 1:
        return {"fad": fast_fad(reference, clips[:, 0]), "std": 0.0, "draws": 1}
    rng = np.random.default_rng(seed)
    values = [fast_fad(reference, clips[np.arange(len(clips)), rng.integers(0, clips.shape[1], len(clips))])
              for _ in range(draws)]
    return {"fad": float(np.mean(values)), "std": float(np.std(values)), "draws": draws}
