"""Does generated music follow the hum it was given? Chroma similarity against shuffled hums (Chapter 8; MusicLM Sec. 6).

MusicLM conditions its semantic stage on melody tokens of a hummed or whistled tune (paper Sec. 6,
appendix C) and shows examples. The book measures, as Chapter 6 measures adherence to text: each clip's
similarity to its *own* hum against its similarity to the *other* hums of the set (the shuffled-hum
baseline), a one-sided paired sign-flip permutation test on own - mean(other), and which-hum-is-it
retrieval (top-1 against chance 1 / N).

The similarity hears the tune's pitch classes in time, in any key:

    wave (T,) --chroma: pitch-class energy every 0.1 s--> (12, F) --minus each frame's mean--> (12, F)
    similarity(a, b) = max over 12 circular pitch shifts k and time offsets |d| <= 0.3 s of the cosine of
                       a[:, t + d] and roll(b, k)[:, t] over the frames they share            in [-1, 1]

Two chromas: `pitch` (default) folds the note activations of the package's transcriber (basic-pitch,
`transcribe.posteriorgrams`, 88 keys) into 12 pitch classes; `cqt` is librosa's constant-Q chroma,
which needs no transcriber but hears drums and overtones as pitch too. On 32 validation hums of the
melody set (31 scores), each against the full arrangements of the 32 melodies, `pitch` finds the hum's own
arrangement 30 times (94%), `cqt` 26 times (81%; chance 3%); a hummed tune against its whistled
rendition, both 32 of 32.

What it hears: which pitch classes sound when, relative to each other (a tune sung in another key is the
same tune), within +-0.3 s. What it misses: octave (a melody an octave up, or with its leaps folded, is
the same melody), rhythm beyond the 0.1 s frames and the offset (a tune stretched by a tempo change of a
few percent drifts out of line by the end of 10 s), and which voice plays: chords and a bass line that
share the melody's pitch classes count as following it, and music in a plain key earns some similarity
to any tune in that key. The shuffled hums are the baseline for exactly that.
"""
from __future__ import annotations

import numpy as np
from torch import Tensor

FRAME_SECONDS = 0.1  # one chroma frame: shorter than a note at 140 bpm in sixteenths (0.107 s)
MAX_OFFSET_SECONDS = 0.3  # a hum sung 3% fast or slow is 0.3 s off after 10 s
METHODS = ("pitch", "cqt")


# ---------------------------------------------------------------------------------------------
# Chroma: (T,) -> (12, F)
# ---------------------------------------------------------------------------------------------
def _mono(wave) -> np.ndarray:
    wave = wave.detach().cpu().float().numpy() if isinstance(wave, Tensor) else np.asarray(wave, np.float32)
    if wave.ndim != 1 or wave.size == 0:
        raise ValueError(f"need one mono wave (T,), got shape {wave.shape}")
    return wave.astype(np.float32)


def bin_frames(c: np.ndarray, fps: float, frames: int, frame_seconds: float = FRAME_SECONDS) -> np.ndarray:
    """Feature frames (12, F) at `fps` -> their means over `frames` bins of `frame_seconds`: (12, frames)."""
    index = (np.arange(c.shape[1]) / fps / frame_seconds).astype(int)  # (F,): the bin each frame falls in
    keep = index < frames
    out, count = np.zeros((c.shape[0], frames)), np.zeros(frames)
    np.add.at(out.T, index[keep], c[:, keep].T)
    np.add.at(count, index[keep], 1)
    return out / np.maximum(count, 1)


def pitch_chroma(wave, sample_rate: int, frame_seconds: float = FRAME_SECONDS) -> np.ndarray:
    """The transcriber's note activations folded into pitch classes (C = 0): (T,) -> (12, F)."""
    from .transcribe import FFT_HOP, MODEL_SAMPLE_RATE, posteriorgrams

    wave = _mono(wave)
    note = posteriorgrams(wave, sample_rate)["note"]  # (F_bp, 88): MIDI 21 .. 108, ~86 frames a second
    c = np.zeros((12, note.shape[0]))
    np.add.at(c, (np.arange(21, 109) % 12), note.T)  # (12, F_bp)
    return bin_frames(c, MODEL_SAMPLE_RATE / FFT_HOP, int(len(wave) / sample_rate / frame_seconds), frame_seconds)


def cqt_chroma(wave, sample_rate: int, frame_seconds: float = FRAME_SECONDS) -> np.ndarray:
    """librosa's constant-Q chroma (C = 0), unnormalized, at 16 kHz and 20 ms hops: (T,) -> (12, F)."""
    import librosa

    wave = _mono(wave)
    y = librosa.resample(wave, orig_sr=sample_rate, target_sr=16_000)
    c = librosa.feature.chroma_cqt(y=y, sr=16_000, hop_length=320, norm=None)  # (12, F_cqt), 50 a second
    return bin_frames(c, 50.0, int(len(wave) / sample_rate / frame_seconds), frame_seconds)


def chromagrams(waves, sample_rate: int, method: str = "pitch", frame_seconds: float = FRAME_SECONDS) -> np.ndarray:
    """Clips (N, T) -> centred chromas (N, 12, F): each frame minus its mean over the 12 pitch classes.

    Centring makes a flat frame (silence, noise, a drum hit) zero, so it neither helps nor hurts.
    """
    if method not in METHODS:
        raise ValueError(f"unknown chroma method {method!r}: choose one of {METHODS}")
    chroma = pitch_chroma if method == "pitch" else cqt_chroma
    c = np.stack([chroma(w, sample_rate, frame_seconds) for w in waves])  # (N, 12, F)
    return c - c.mean(1, keepdims=True)


# ---------------------------------------------------------------------------------------------
# Similarity: max over transpositions and small offsets
# ---------------------------------------------------------------------------------------------
def similarity_matrix(a: np.ndarray, b: np.ndarray, max_offset: int = 3) -> np.ndarray:
    """Chromas a (N, 12, F) and b (M, 12, F') -> (N, M): the best cosine over 12 pitch shifts and offsets.

    Both are cut to their common F frames; offset d compares a's frame t + d with b's frame t.
    """
    F = min(a.shape[-1], b.shape[-1])
    a, b = a[..., :F].astype(np.float64), b[..., :F].astype(np.float64)
    best = np.full((a.shape[0], b.shape[0]), -1.0)
    for d in range(-min(max_offset, F - 1), min(max_offset, F - 1) + 1):
        x, y = (a[..., d:], b[..., :F - d]) if d >= 0 else (a[..., :F + d], b[..., -d:])  # (N|M, 12, F - |d|)
        norms = np.sqrt((x ** 2).sum((1, 2)))[:, None] * np.sqrt((y ** 2).sum((1, 2)))[None] + 1e-12  # (N, M)
        for k in range(12):
            dots = np.einsum("ncf,mcf->nm", x, np.roll(y, k, axis=1))  # (N, M)
            best = np.maximum(best, dots / norms)
    return best


def melody_similarity(a, b, sample_rate: int, method: str = "pitch",
                      max_offset_seconds: float = MAX_OFFSET_SECONDS) -> float:
    """Two clips (T,) and (T',) at one rate -> their transposition-free chroma similarity (about -1 .. 1)."""
    ca, cb = chromagrams([a], sample_rate, method), chromagrams([b], sample_rate, method)
    return float(similarity_matrix(ca, cb, round(max_offset_seconds / FRAME_SECONDS))[0, 0])


# ---------------------------------------------------------------------------------------------
# Own hum vs the other hums
# ---------------------------------------------------------------------------------------------
def following_statistics(sim: np.ndarray, permutations: int = 10_000, seed: int = 0,
                         per_clip: bool = False) -> dict:
    """Similarities (N, N) of clip i to hum j -> own vs other hums, p-values and retrieval (Chapter 8).

    `own` is clip i's similarity to hum i, `other` its mean similarity to the N - 1 other hums (what a
    shuffled hum gives on average). One-sided tests of own > other: a paired sign-flip permutation test
    on the differences (as `musiclm.adherence_statistics`) and scipy's Wilcoxon signed-rank test.
    """
    sim = np.asarray(sim, np.float64)
    if sim.ndim != 2 or sim.shape[0] != sim.shape[1] or sim.shape[0] < 2:
        raise ValueError(f"need a square (N, N) similarity matrix with N >= 2, got shape {sim.shape}")
    from scipy.stats import wilcoxon

    N = sim.shape[0]
    own = np.diag(sim)  # (N,)
    other = (sim.sum(1) - own) / (N - 1)  # (N,)
    diff = own - other
    signs = np.random.default_rng(seed).integers(0, 2, (permutations, N)) * 2 - 1  # under H0 each sign is a coin flip
    null = (signs * diff).mean(1)  # (permutations,)
    p_perm = (1 + int((null >= diff.mean() - 1e-12).sum())) / (permutations + 1)
    p_wil = 1.0 if np.allclose(diff, 0) else float(wilcoxon(own, other, alternative="greater").pvalue)
    out = {"clips": N, "similarity": float(own.mean()), "shuffled": float(other.mean()),
           "difference": float(diff.mean()), "p_permutation": p_perm, "p_wilcoxon": p_wil,
           "retrieval_top1": float((sim.argmax(1) == np.arange(N)).mean()), "chance_top1": 1.0 / N}
    if per_clip:
        out.update(own=own.tolist(), other=other.tolist())
    return out


def melody_following(generated, hums, sample_rate: int, method: str = "pitch",
                     max_offset_seconds: float = MAX_OFFSET_SECONDS, permutations: int = 10_000, seed: int = 0,
                     per_clip: bool = False, hum_sample_rate: int | None = None) -> dict:
    """Clips (N, T) generated from hums (N, T') -> `following_statistics` of their chroma similarities (Chapter 8).

    Row i of `generated` must come from row i of `hums`. Each pair is compared over the shorter of the
    two (a hum is followed from its start). Use held-out hums. `hum_sample_rate` defaults to `sample_rate`.
    """
    if len(generated) != len(hums):
        raise ValueError(f"need one generated clip per hum, got {len(generated)} clips and {len(hums)} hums")
    if len(hums) < 2:
        raise ValueError(f"need at least 2 hums to compare a clip's own hum with the others, got {len(hums)}")
    g = chromagrams(generated, sample_rate, method)  # (N, 12, F)
    h = chromagrams(hums, hum_sample_rate or sample_rate, method)  # (N, 12, F')
    sim = similarity_matrix(g, h, round(max_offset_seconds / FRAME_SECONDS))  # (N, N)
    return following_statistics(sim, permutations, seed, per_clip)
