"""Fréchet Audio Distance over any embedding (Chapter 7; MusicLM Sec. 4.3 and 5, Table 1).

MusicLM reports FAD with two embeddings, VGGish (trained on YouTube-8M audio) and TRILL (trained on
speech). Each clip becomes one embedding vector; a Gaussian is fitted to the reference clips and one
to the generated clips, and FAD is the Fréchet (2-Wasserstein) distance between the two Gaussians:

    FD = ||mu_r - mu_g||^2 + tr(S_r) + tr(S_g) - 2 tr((S_r^{1/2} S_g S_r^{1/2})^{1/2})

The last trace equals tr((S_r S_g)^{1/2}) (the two products are similar matrices), but written this way
the matrix inside the square root is symmetric positive semi-definite, so its square root comes from
an eigendecomposition (`numpy.linalg.eigh`) with tiny negative round-off clipped to 0: no complex
parts to throw away, unlike `scipy.linalg.sqrtm` on the non-symmetric product.

VGGish and TRILL download their weights, so the book cannot run them offline. Its stand-ins:

    transcriber_embedding   basic-pitch's note and onset posteriorgrams (a pretrained transcriber whose
                            weights ship in its PyPI package), pooled over time. It hears pitch and
                            harmony (which notes, how busy), NOT timbre: a flute and a trumpet playing
                            the same tune embed alike. A low FAD here means "the right kind of notes".
    embed_with(fn, waves)   any embedding function, e.g. the book's own MuLan audio tower.
    load_vggish()           VGGish through torch.hub where a download is possible (Colab); never in tests.

FAD depends on how many clips there are: the estimate from N clips is biased upwards by roughly
c / N (Chong & Forsyth 2020; Gui et al. 2024, "FAD-infinity"), so two systems must be compared at the
same N. `fad_at` reports FAD at a fixed count (averaged over random subsets) and `fad_infinity`
extrapolates the line FAD(1/N) to N = infinity.
"""
from __future__ import annotations

from typing import Callable, Iterable, Sequence

import numpy as np


# ---------------------------------------------------------------------------------------------
# Gaussians and the Fréchet distance
# ---------------------------------------------------------------------------------------------
def gaussian_stats(embeddings) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and unbiased covariance (D, D) of an (N, D) embedding set, in float64 (Chapter 7)."""
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"need an (N, D) array with N >= 2 clips, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("embeddings contain NaN or infinite values")
    return x.mean(axis=0), np.atleast_2d(np.cov(x, rowvar=False))


def psd_sqrt(matrix) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix by eigendecomposition (Chapter 7).

    The matrix is symmetrized first; eigenvalues below 0 (round-off) are clipped to 0.
    """
    m = np.asarray(matrix, dtype=np.float64)
    values, vectors = np.linalg.eigh((m + m.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def trace_sqrt_product(sigma1, sigma2) -> float:
    """tr((S1 S2)^{1/2}) for PSD S1, S2, as tr((S1^{1/2} S2 S1^{1/2})^{1/2}) (Chapter 7)."""
    root1 = psd_sqrt(sigma1)
    inner = root1 @ np.asarray(sigma2, dtype=np.float64) @ root1
    values = np.linalg.eigvalsh((inner + inner.T) / 2)
    return float(np.sqrt(np.clip(values, 0.0, None)).sum())


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2) (Chapter 7, MusicLM Sec. 4.3)."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.size, mu1.size):
        raise ValueError(f"shapes differ: mu {mu1.shape} vs {mu2.shape}, sigma {sigma1.shape} vs {sigma2.shape}")
    diff = mu1 - mu2
    value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt_product(sigma1, sigma2)
    return float(max(value, 0.0))  # round-off can dip a hair below 0 for identical sets


def fad(reference, generated) -> float:
    """FAD between two (N, D) embedding sets (clips x dimensions) (Chapter 7, MusicLM Table 1)."""
    return frechet_distance(*gaussian_stats(reference), *gaussian_stats(generated))


def fad_at(reference, generated, num_clips: int, draws: int = 10, seed: int = 0) -> dict:
    """FAD at a fixed number of clips per side: mean and spread over random subsets (Chapter 7).

    FAD estimated from N clips is biased upwards, by about c / N: sampling noise in each fitted mean
    adds ~tr(S)/N to ||mu_r - mu_g||^2, and noise in the covariances inflates the trace terms, even when
    both sets come from the same distribution (two halves of the real test split do NOT give 0). Numbers
    are therefore only comparable at equal N, and with D dimensions a covariance needs N well above D
    to be full rank. Each draw takes `num_clips` clips of each set without replacement (seeded).
    Returns {"fad": mean, "std": spread over draws, "num_clips": N, "draws": draws}.
    """
    ref, gen = np.asarray(reference, np.float64), np.asarray(generated, np.float64)
    if not 2 <= num_clips <= min(len(ref), len(gen)):
        raise ValueError(f"num_clips must be in [2, {min(len(ref), len(gen))}], got {num_clips}")
    rng = np.random.default_rng(seed)
    values = [fad(ref[rng.choice(len(ref), num_clips, replace=False)],
                  gen[rng.choice(len(gen), num_clips, replace=False)]) for _ in range(draws)]
    return {"fad": float(np.mean(values)), "std": float(np.std(values)), "num_clips": int(num_clips),
            "draws": int(draws)}


def fad_infinity(reference, generated, counts: Sequence[int] | None = None, draws: int = 10,
                 seed: int = 0) -> dict:
    """FAD extrapolated to infinitely many clips: fit FAD(N) = a + b / N, report a (Chapter 7).

    `counts` are the subset sizes (default: 5 sizes from half to all of the smaller set). Returns
    {"fad_inf": a, "slope": b, "counts": [...], "fads": [...]}; the slope is the small-sample bias
    per 1/N, the reason `fad_at` fixes N.
    """
    n = min(len(reference), len(generated))
    counts = sorted(set(counts or np.linspace(max(2, n // 2), n, 5).astype(int).tolist()))
    fads = [fad_at(reference, generated, c, draws if c < n else 1, seed)["fad"] for c in counts]
    if len(counts) < 2:
        raise ValueError("need at least two different clip counts to extrapolate")
    slope, intercept = np.polyfit(1.0 / np.asarray(counts, np.float64), fads, 1)
    return {"fad_inf": float(intercept), "slope": float(slope), "counts": counts, "fads": [float(f) for f in fads]}


# ---------------------------------------------------------------------------------------------
# Embeddings
# ---------------------------------------------------------------------------------------------
def embed_with(fn: Callable, waves: Iterable, batch_size: int = 16) -> np.ndarray:
    """Embed clips with any function: (B, T) batch -> (B, D) vectors; returns (N, D) float64 (Chapter 7).

    `waves` is an (N, T) array/tensor or a list of equal-length clips. Use it to plug in the book's
    MuLan audio tower, e.g. `embed_with(lambda b: mulan.embed_audio(b), test_waves)`.
    """
    import torch

    if isinstance(waves, torch.Tensor):
        batches = waves.split(batch_size)
    else:
        items = list(waves)
        batches = [torch.as_tensor(np.stack([np.asarray(w, np.float32) for w in items[i:i + batch_size]]))
                   for i in range(0, len(items), batch_size)]
    out = []
    with torch.no_grad():
        for batch in batches:
            vectors = fn(batch)
            vectors = vectors.detach().cpu().numpy() if isinstance(vectors, torch.Tensor) else np.asarray(vectors)
            if vectors.ndim != 2 or vectors.shape[0] != len(batch):
                raise ValueError(f"embedding function must return (batch, dim), got {vectors.shape}")
            out.append(vectors.astype(np.float64))
    if not out:
        raise ValueError("no clips to embed")
    return np.concatenate(out)


def transcriber_embedding(waves, sample_rate: int, outputs: Sequence[str] = ("note", "onset")) -> np.ndarray:
    """basic-pitch posteriorgrams pooled over time: (N, 2 * 88 * len(outputs)) (Chapter 7).

    For each clip and each posteriorgram (88 piano keys x frames at ~86 frames/s), the time mean (which
    pitches sound, how often: harmony and register) and time standard deviation (how much they come
    and go: melody and rhythm) are concatenated. The transcriber was trained to name notes, so this
    embedding is deaf to timbre, production and noise that does not disturb pitch: it measures the
    music's notes, not its sound. With 352 dimensions, compare sets at a fixed N (see `fad_at`).
    """
    from .transcribe import posteriorgrams

    rows = []
    for wave in waves:
        post = posteriorgrams(np.asarray(wave, np.float32), sample_rate)
        rows.append(np.concatenate([np.concatenate([post[k].mean(0), post[k].std(0)]) for k in outputs]))
    if not rows:
        raise ValueError("no clips to embed")
    return np.stack(rows).astype(np.float64)


# ---------------------------------------------------------------------------------------------
# VGGish, where a download is possible (Colab). Never used offline or in tests.
# ---------------------------------------------------------------------------------------------
VGGISH_HUB = "harritaylor/torchvggish"


def load_vggish():
    """VGGish (the paper's first FAD embedding) through torch.hub; needs the internet (Chapter 7).

    Downloads code and weights on first use (Colab: fine). Offline, raises a RuntimeError that says
    so; use `transcriber_embedding` or the MuLan audio tower instead.
    """
    import torch

    try:
        model = torch.hub.load(VGGISH_HUB, "vggish", trust_repo=True)
    except Exception as err:  # no network, hub blocked, repo moved
        raise RuntimeError(f"VGGish could not be loaded from torch.hub ({VGGISH_HUB}): {err}. It downloads "
                           "its weights, so it works only online (e.g. Colab); offline, use "
                           "transcriber_embedding or embed_with(MuLan's audio tower).") from err
    model.eval()
    return model


def vggish_embedding(model, waves, sample_rate: int) -> np.ndarray:
    """Clip embeddings from a loaded VGGish: its 128-d frame embeddings (0.96 s) averaged (Chapter 7)."""
    import torch

    rows = []
    with torch.no_grad():
        for wave in waves:
            frames = model.forward(np.asarray(wave, np.float32), sample_rate)  # resamples to 16 kHz itself
            rows.append(torch.as_tensor(frames, dtype=torch.float64).reshape(-1, 128).mean(0).numpy())
    return np.stack(rows)
