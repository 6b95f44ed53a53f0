"""Does long music hang together? Measures at story-mode boundaries and along long generations (Chapter 9).

Paper: MusicLM Sec. 6 says story mode "generates smooth transitions which are tempo consistent and
semantically plausible" and that long generations are "coherent over several minutes"; it shows examples
and gives no number. The book measures, with librosa (tempo, chroma, onset strength) and its own MuLan:

- `tempo_bpm`: the beat tracker's tempo of a stretch; `tempo_change`: |log2| of the ratio across a point,
  folded over octaves (a beat tracker often hears half or double the tempo, which is not a change);
- `estimate_key`: the best of 24 Krumhansl-Kessler key profiles against the mean chroma;
  `key_distance`: steps around the circle of fifths (0 = same key or its relative, 6 = farthest);
- `flux_jump`: onset strength (spectral flux) right at a point over its median nearby: a splice shows up
  as a spike no note onset of ordinary music makes as reliably;
- `embedding_jump`: 1 - cosine of MuLan's embeddings of the stretches before and after.

`boundary_measures` computes them all at one point; the chapter compares story boundaries with the same
measures at the middle of a segment, at the middle of real clips, and at hard cuts (two independent
generations put end to end).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

# Krumhansl & Kessler (1982) probe-tone profiles, tonic first.
MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


def _numpy(wave) -> np.ndarray:
    wave = wave.detach().cpu().float().numpy() if isinstance(wave, Tensor) else np.asarray(wave, np.float32)
    if wave.ndim != 1:
        raise ValueError(f"need one mono wave (T,), got shape {wave.shape}")
    return wave


def tempo_bpm(wave, sample_rate: int) -> float:
    """The beat tracker's tempo of `wave` (T,) in beats per minute (librosa, Chapter 9)."""
    import librosa

    onset = librosa.onset.onset_strength(y=_numpy(wave), sr=sample_rate)
    return float(librosa.feature.tempo(onset_envelope=onset, sr=sample_rate)[0])


def tempo_change(bpm_a: float, bpm_b: float) -> float:
    """|log2(b / a)| folded over octaves, in [0, 0.5]: 0 for the same tempo, its double or its half (Chapter 9)."""
    r = np.log2(bpm_b / bpm_a)
    return float(abs(r - np.round(r)))


def estimate_key(wave, sample_rate: int) -> tuple[int, str]:
    """(tonic pitch class 0-11, "major" | "minor") best correlated with the mean chroma (Chapter 9)."""
    import librosa

    chroma = librosa.feature.chroma_stft(y=_numpy(wave), sr=sample_rate).mean(1)  # (12,)
    scores = [(np.corrcoef(chroma, np.roll(profile, tonic))[0, 1], tonic, mode)
              for mode, profile in (("major", MAJOR), ("minor", MINOR)) for tonic in range(12)]
    _, tonic, mode = max(scores, key=lambda s: (np.nan_to_num(s[0], nan=-2.0), -s[1]))
    return int(tonic), mode


def key_distance(a: tuple[int, str], b: tuple[int, str]) -> int:
    """Steps around the circle of fifths between two keys, a minor key placed at its relative major (0-6)."""
    def fifths(key):  # position on the circle of fifths of the key's relative major
        tonic, mode = key
        return (7 * ((tonic + 3) % 12 if mode == "minor" else tonic)) % 12
    d = abs(fifths(a) - fifths(b))
    return min(d, 12 - d)


def flux_jump(wave, sample_rate: int, at: float, width: float = 0.1, context: float = 2.0) -> float:
    """Mean onset strength within `width` s of `at` over its median within `context` s (Chapter 9)."""
    import librosa

    hop = 256
    onset = librosa.onset.onset_strength(y=_numpy(wave), sr=sample_rate, hop_length=hop)  # (frames,)
    frame = lambda t: int(round(t * sample_rate / hop))  # noqa: E731
    near = onset[max(0, frame(at - width)):frame(at + width) + 1]
    around = onset[max(0, frame(at - context)):frame(at + context) + 1]
    return float(near.mean() / max(np.median(around), 1e-6))


def stretches(wave: Tensor, sample_rate: int, at: float, span: float) -> tuple[Tensor, Tensor]:
    """The `span` seconds before and after `at` (Chapter 9); ValueError when they do not fit."""
    i, n = round(at * sample_rate), round(span * sample_rate)
    if i - n < 0 or i + n > wave.shape[-1]:
        raise ValueError(f"{span:g} s either side of {at:g} s does not fit in {wave.shape[-1] / sample_rate:g} s")
    return wave[i - n:i], wave[i:i + n]


@torch.no_grad()
def embedding_jump(mulan, before: Tensor, after: Tensor) -> float:
    """1 - cosine of MuLan's audio embeddings of two stretches (Chapter 9)."""
    e = mulan.embed_audio(torch.stack([before, after]))  # (2, D), unit length
    return float(1 - (e[0] * e[1]).sum())


def boundary_measures(wave: Tensor, sample_rate: int, at: float, span: float, mulan=None) -> dict[str, float]:
    """Tempo change, key distance, flux jump (and MuLan jump) across the point `at` of `wave` (T,) (Chapter 9)."""
    before, after = stretches(wave, sample_rate, at, span)
    out = {"tempo_change": tempo_change(tempo_bpm(before, sample_rate), tempo_bpm(after, sample_rate)),
           "key_distance": key_distance(estimate_key(before, sample_rate), estimate_key(after, sample_rate)),
           "flux_jump": flux_jump(wave, sample_rate, at, context=span)}
    if mulan is not None:
        out["embedding_jump"] = embedding_jump(mulan, before, after)
    return out


def loudness_db(wave: Tensor) -> float:
    """RMS level in dB relative to full scale (Chapter 9)."""
    return float(20 * torch.log10(wave.float().pow(2).mean().sqrt().clamp_min(1e-8)))


def story_adherence(audio: Tensor, text: Tensor, permutations: int = 10_000, seed: int = 0) -> dict:
    """Does each segment follow its own text more than the other texts of its story? (Chapter 9)

    audio (N, P, D): MuLan embeddings of the P segments of N stories; text (N, P, D): their texts'.
    `own` (N, P) is each segment's similarity to its text, `other` (N, P) its mean similarity to the story's
    P - 1 other texts. The one-sided sign-flip permutation test asks whether own > other on average over
    all N * P segments; `top1` is how often a segment is closest to its own text (chance 1 / P).
    """
    if audio.dim() != 3 or audio.shape != text.shape or audio.shape[1] < 2:
        raise ValueError(f"need audio and text embeddings (N, P >= 2, D) of one shape, got {tuple(audio.shape)} "
                         f"and {tuple(text.shape)}")
    a, t = torch.nn.functional.normalize(audio.float(), dim=-1), torch.nn.functional.normalize(text.float(), dim=-1)
    sim = torch.einsum("npd,nqd->npq", a, t)  # (N, P, P): segment p of story n vs text q of story n
    P = sim.shape[1]
    own = sim.diagonal(dim1=1, dim2=2)  # (N, P)
    other = (sim.sum(-1) - own) / (P - 1)  # (N, P)
    diff = (own - other).flatten()
    g = torch.Generator().manual_seed(seed)
    signs = torch.randint(0, 2, (permutations, diff.numel()), generator=g).float() * 2 - 1
    p = (1 + int(((signs * diff).mean(1) >= diff.mean()).sum())) / (permutations + 1)
    top1 = (sim.argmax(-1) == torch.arange(P)).float().mean()
    return {"own": own.tolist(), "other": other.tolist(), "difference": float(diff.mean()), "p_permutation": p,
            "top1": float(top1), "chance_top1": 1.0 / P, "segments": diff.numel()}


def paired_smaller(a, b) -> float:
    """One-sided Wilcoxon signed-rank p-value that the values `a` tend to be smaller than their pairs `b`."""
    from scipy.stats import wilcoxon

    a, b = np.asarray(a, float), np.asarray(b, float)
    if np.allclose(a, b):
        return 1.0
    return float(wilcoxon(a, b, alternative="less").pvalue)
