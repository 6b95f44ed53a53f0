"""Exercise of Chapter 7: the Fréchet distance between two Gaussians, the heart of FAD.

The reader writes `fn(mu1, sigma1, mu2, sigma2) -> float` for means (D,) and covariances (D, D) (NumPy):

    FD = ||mu1 - mu2||^2 + tr(sigma1) + tr(sigma2) - 2 tr((sigma1 sigma2)^{1/2})

`check_frechet_distance(fn)` grades it against `reference_frechet_distance`, written independently of
`musiclm_mini.evaluation.fad` (it takes the eigenvalues of the product sigma1 sigma2, which are real and
non-negative because the product is similar to a positive semi-definite matrix), on cases whose answers
are known by hand.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from .grading import grade


def reference_frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """The answer to Chapter 7's exercise: tr((S1 S2)^{1/2}) = sum of sqrt(eigenvalues of S1 S2)."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    eig = np.linalg.eigvals(s1 @ s2).real  # S1 S2 ~ S1^1/2 S2 S1^1/2: real, >= 0 up to round-off
    cross = np.sqrt(np.clip(eig, 0.0, None)).sum()
    return float((mu1 - mu2) @ (mu1 - mu2) + np.trace(s1) + np.trace(s2) - 2.0 * cross)


def _psd(rng, d, rank=None):
    a = rng.normal(size=(d, rank or d))
    return a @ a.T + (0.0 if rank else 0.1) * np.eye(d)


def _cases() -> list[tuple]:
    rng = np.random.default_rng(7)
    d5 = (rng.normal(size=5), _psd(rng, 5), rng.normal(size=5), _psd(rng, 5))
    return [
        ("1-D: (1 - 3)^2 + (2 - 3)^2 = 5", np.array([1.0]), np.array([[4.0]]), np.array([3.0]), np.array([[9.0]])),
        ("identical Gaussians give 0", np.zeros(3), np.eye(3) * 2.0, np.zeros(3), np.eye(3) * 2.0),
        ("equal covariances: only the squared mean difference", np.array([1.0, 2.0]), np.eye(2),
         np.array([4.0, -2.0]), np.eye(2)),
        ("diagonal covariances: sum of (sqrt a - sqrt b)^2", np.zeros(3), np.diag([1.0, 4.0, 9.0]), np.zeros(3),
         np.diag([4.0, 4.0, 1.0])),
        ("5-D, covariances that do not commute", *d5),
        ("a rank-1 covariance (fewer clips than dimensions)", np.zeros(4), _psd(rng, 4, rank=1), np.ones(4),
         _psd(rng, 4)),
    ]


def _hint(got: float, mu1, s1, mu2, s2) -> str:
    """Name the usual mistakes: no factor 2, element-wise square root, unsquared mean distance."""
    want = reference_frechet_distance(mu1, s1, mu2, s2)
    cross = (np.trace(s1) + np.trace(s2) + (mu1 - mu2) @ (mu1 - mu2) - want) / 2
    mean_sq = float((mu1 - mu2) @ (mu1 - mu2))
    guesses = {
        " (the cross term needs a factor 2: -2 tr((S1 S2)^1/2))": want + cross,
        " (the square root is of the matrix product, not element by element)":
            mean_sq + np.trace(s1) + np.trace(s2) - 2 * np.trace(np.sqrt(np.abs(s1 @ s2))),
        " (the mean term is the SQUARED distance ||mu1 - mu2||^2)": want - mean_sq + np.sqrt(mean_sq),
        " (the mean term is missing)": want - mean_sq,
    }
    for hint, guess in guesses.items():
        if abs(got - guess) <= 1e-6 * max(1.0, abs(guess)) and abs(guess - want) > 1e-6:
            return hint
    return ""


def check_frechet_distance(fn: Callable, verbose: bool = True) -> bool:
    """Grade a reader's Fréchet distance; print what passed and what did not (Chapter 7). Never raises."""

    def compare(got, mu1, s1, mu2, s2) -> str | None:
        want = reference_frechet_distance(mu1, s1, mu2, s2)
        try:
            got = float(np.asarray(got).real.squeeze())
        except (TypeError, ValueError):
            return f"expected one number, got {type(got).__name__}"
        if not np.isfinite(got):
            return f"expected a finite number, got {got}"
        if abs(got - want) > 1e-6 * max(1.0, abs(want)):
            return f"expected {want:.6g}, got {got:.6g}{_hint(got, mu1, s1, mu2, s2)}"
        return None

    return grade(_cases(), fn, compare, verbose)
