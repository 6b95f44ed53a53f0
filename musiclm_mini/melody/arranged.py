"""The melody of the set inside a full arrangement: what music that follows a hum sounds like (Chapter 8).

The melody set's renderings are solo lines. Music generated from a hum will not be: the tune sits in the
top voice, with harmony, bass and often drums around it (MusicLM Sec. 6: music "which follows the melody
contained in the input audio clip, while adhering to the text description"). This renders, for a clip of
the set, SynthCaps' own arrangement of *the same excerpt*, at the same tempo and in the same key, in a
random style (Chapter 1's `render.arrange`). Retrieving it from the hum (`retrieval.py`, gallery
"arrangement") asks what a melody-following measure must answer.

    label of a set clip --replay its score's draws--> start, tempo, key --SynthCaps variant--> 10 s of music
"""
from __future__ import annotations

import numpy as np

from ..data import render, scores, synthcaps
from ..data.melody_pairs import pick_excerpts


def excerpt_of(label: dict, cfg: dict, seconds: float) -> tuple[scores.ScoreNotes, float, int, int]:
    """The score, start beat, tempo and tonic of a melody of the set (replaying `_melody_set_job`'s first draws)."""
    index, excerpt = (int(part[1:]) for part in label["melody_id"].split("-"))
    score = scores.parse_score(label["source_id"])
    rng = np.random.default_rng([cfg["seed"], index, 888])  # the job's stream: tempo, then tonic come first
    tempo, tonic = int(rng.integers(70, 141)), int(rng.integers(12))
    beats = seconds * tempo / 60.0 + 1.0
    start = pick_excerpts(score, beats, cfg["excerpts"], cfg["min_notes"], cfg["ngram"])[excerpt]
    return score, start, tempo, tonic


def arrangement(label: dict, cfg: dict, seconds: float, seed: int = 0) -> np.ndarray:
    """10 s (`seconds`) of a random SynthCaps arrangement of a set melody's excerpt: float32 (T,) (Chapter 8)."""
    score, start, tempo, tonic = excerpt_of(label, cfg, seconds)
    rng = np.random.default_rng([cfg["seed"], seed, *map(ord, label["melody_id"])])
    variant = synthcaps.sample_variant(score, seconds, rng)  # style, instruments, loudness, drums
    bar = int(np.flatnonzero(np.isclose(score.bar_starts, start))[0])
    variant.update(tempo_bpm=tempo, tonic=tonic, mode=score.mode, start_bar=bar)  # the excerpt, as the set plays it
    parts = render.arrange(score, variant, seconds, rng)
    audio = render.render(parts, cfg["sample_rate"], int(round(seconds * cfg["sample_rate"])), render.PEAK[variant["dynamics"]])
    return audio


def with_arrangements(pcm: np.ndarray, labels: list[dict], cfg: dict, seconds: float) -> tuple[np.ndarray, list[dict]]:
    """A held-out split plus one arrangement per melody (variant "arrangement") (Chapter 8)."""
    firsts = {lab["melody_id"]: lab for lab in labels}
    audio = [arrangement(lab, cfg, seconds) for lab in firsts.values()]
    extra = np.stack([(np.clip(a, -1, 1) * 32767).round().astype(np.int16) for a in audio])
    return (np.concatenate([np.asarray(pcm), extra]),
            labels + [{**lab, "variant": "arrangement", "program": -2} for lab in firsts.values()])
