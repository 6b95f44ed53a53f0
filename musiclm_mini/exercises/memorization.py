"""Exercise of Chapter 10: the optimal-transport cost between two token histograms (MusicLM Sec. 4.4).

The reader writes `fn(a, b, centroids) -> float`: `a` and `b` are token counts (K,) (NumPy, many
zeros), `centroids` (K, D) the k-means centroids of the tokens. The answer is the exact optimal-transport
cost between the two *normalized* histograms with ground cost the Euclidean distance between centroids
(POT: `ot.emd2`). `check_histogram_cost(fn)` grades it against `reference_histogram_cost`, which solves
the same transport problem as a linear program with SciPy, independently of POT and of
`musiclm_mini.evaluation.memorization`.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from .grading import grade


def reference_histogram_cost(a, b, centroids) -> float:
    """min over plans P >= 0 with row sums p and column sums q of sum P_ij ||c_i - c_j||, as an LP."""
    from scipy.optimize import linprog

    a, b, c = np.asarray(a, float), np.asarray(b, float), np.asarray(centroids, float)
    rows, cols = np.flatnonzero(a), np.flatnonzero(b)
    p, q = a[rows] / a[rows].sum(), b[cols] / b[cols].sum()
    cost = np.sqrt(((c[rows, None, :] - c[None, cols, :]) ** 2).sum(-1))  # (m, n)
    m, n = cost.shape
    row_sums = np.kron(np.eye(m), np.ones((1, n)))  # P flattened row-major: sum_j P_ij = p_i
    col_sums = np.kron(np.ones((1, m)), np.eye(n))  # sum_i P_ij = q_j
    res = linprog(cost.ravel(), A_eq=np.vstack([row_sums, col_sums]), b_eq=np.concatenate([p, q]),
                  bounds=(0, None), method="highs")
    return float(res.fun)


def _cases() -> list[tuple]:
    rng = np.random.default_rng(10)
    c = rng.normal(size=(12, 3))
    one_a, one_b = np.zeros(12), np.zeros(12)
    one_a[2], one_b[9] = 4, 4
    counts = lambda seed: np.bincount(np.random.default_rng(seed).integers(0, 12, 25), minlength=12).astype(float)
    return [
        ("identical histograms cost 0", counts(1), counts(1), c),
        ("all of one token vs all of another: the distance between their centroids", one_a, one_b, c),
        ("25 tokens against 25 others (many empty bins)", counts(2), counts(3), c),
        ("counts, not probabilities: 50 tokens against 25", 2 * counts(4), counts(5), c),
    ]


def _hint(got: float, a, b, c) -> str:
    import ot

    rows, cols = np.flatnonzero(a), np.flatnonzero(b)
    dist = np.linalg.norm(c[rows, None] - c[None, cols], axis=-1)
    guesses = {" (normalize the counts to probabilities first)": ot.emd2(a[rows], b[cols], dist)
               if np.isclose(a.sum(), b.sum()) else None,
               " (the ground cost is the distance, not its square)": ot.emd2(a[rows] / a.sum(), b[cols] / b.sum(), dist ** 2)}
    for hint, guess in guesses.items():
        if guess is not None and abs(got - guess) < 1e-6 * max(1.0, abs(guess)):
            return hint
    return ""


def check_histogram_cost(fn: Callable, verbose: bool = True) -> bool:
    """Grade a reader's histogram cost; print what passed and what did not (Chapter 10). Never raises."""

    def compare(got, a, b, c) -> str | None:
        want = reference_histogram_cost(a, b, c)
        try:
            got = float(np.asarray(got).squeeze())
        except (TypeError, ValueError):
            return f"expected one number, got {type(got).__name__}"
        if not np.isfinite(got) or abs(got - want) > 1e-6 * max(1.0, abs(want)):
            return f"expected {want:.6g}, got {got:.6g}{_hint(got, a, b, c)}"
        return None

    return grade(_cases(), fn, compare, verbose)
