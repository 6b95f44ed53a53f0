"""Melody pairs: one melody, several instruments and a hummed version (Chapter 1, used in Chapter 8).

MusicLM's melody conditioning (Sec. 3.3) learns from pairs of audio with the same melody. These are
made from SynthCaps' own scores: the top voice of a score, rendered by a few instruments and hummed,
each pair keeping its score's split so that no split shares a melody.

    python -m musiclm_mini.data.melody_pairs --preset tiny
"""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from . import captions, render, scores
from .synthcaps import KEY_NAMES, SPLITS, _ensure, _run, _save, data_root, ensure_synthcaps, parse_command

MELODY_PROGRAMS = (0, 73, 40, 56, 65, 24, 80, 11, 71, 68)  # instruments for the melody pairs


def melody_dir(preset) -> Path:
    """Folder of a preset's melody pairs: `<data root>/melodypairs-<preset name>` (Chapter 1)."""
    return data_root() / f"melodypairs-{preset.name}"


def _melody_job(job: tuple) -> list[dict]:
    """Worker: the top voice of one score rendered by a few instruments and hummed."""
    index, source_id, split, cfg = job
    score = scores.parse_score(source_id)
    rng = np.random.default_rng([cfg["seed"], index, 777])
    num_samples = int(round(cfg["clip_seconds"] * cfg["sample_rate"]))
    tempo, tonic = int(rng.integers(70, 141)), int(rng.integers(12))
    beats = cfg["clip_seconds"] * tempo / 60.0 + 1.0
    fits = np.flatnonzero(score.bar_starts <= score.length - beats)
    start = float(score.bar_starts[int(rng.choice(fits)) if len(fits) else 0])
    period = float(np.ceil(score.length / score.bar_length) * score.bar_length)
    notes = render.excerpt(score.voices[0], start, beats, period)
    notes[:, 2] += (tonic - score.tonic + 6) % 12 - 6
    programs = rng.choice(MELODY_PROGRAMS, size=cfg["melody_instruments"], replace=False)
    rows, key = [], f"{KEY_NAMES[score.mode][tonic]} {score.mode}"
    for program in [-1, *map(int, programs)]:
        center = 64 if program < 0 else render.PROGRAM_CENTER.get(program, 72)  # hum in a voice's range
        shifted = notes.copy()
        shifted[:, 2] += render.octave_shift(shifted, center)
        part = render.timed(shifted, tempo, 80, score.bar_length, max(program, 0), False, rng)
        if program < 0:
            audio = render.hum(part["notes"], cfg["sample_rate"], num_samples, rng)
        else:
            audio = render.render([part], cfg["sample_rate"], num_samples, 0.5)
        rows.append({"melody_id": f"m{cfg['seed']}-{index:04d}", "variant": "hum" if program < 0 else
                     captions.instrument_word(program), "program": program, "split": split,
                     "source_id": source_id, "tempo_bpm": tempo, "key": key,
                     "wav": render.encode_wav(audio, cfg["sample_rate"])})
    return rows


def generate_melody_pairs(data_config, out_dir, source_splits: dict, num_workers: int = 2) -> Path:
    """Melody pairs from SynthCaps' own scores, keeping each score's split (Chapter 1, used in Chapter 8)."""
    from datasets import Audio, Features, Value

    cfg = dataclasses.asdict(data_config)
    by_split = {s: [sid for sid, sp in source_splits.items() if sp == s] for s in SPLITS}
    total = len(source_splits)
    jobs = []
    for s in SPLITS:  # each split gets its share of the melodies
        take = max(1, round(cfg["num_melodies"] * len(by_split[s]) / total)) if by_split[s] else 0
        jobs += [(len(jobs) + k, sid, s, cfg) for k, sid in enumerate(by_split[s][:take])]
    rows = [r for batch in _run(jobs, _melody_job, num_workers) for r in batch]
    text = Value("string")
    feats = Features({"melody_id": text, "variant": text, "audio": Audio(cfg["sample_rate"]), "split": text,
                      "program": Value("int32"), "source_id": text, "tempo_bpm": Value("int32"), "key": text})
    _save([{**r, "name": f"{r['melody_id']}-{r['variant']}"} for r in rows], feats, Path(out_dir), "name")
    return Path(out_dir)


def load_melody_pairs(preset, num_workers: int = 2):
    """Melody pairs as a DatasetDict (columns melody_id, variant, audio, split, ...) (Chapter 1)."""
    from datasets import load_from_disk

    splits = json.loads((ensure_synthcaps(preset, num_workers) / "sources.json").read_text())
    path = _ensure(melody_dir(preset), preset.data,
                   lambda tmp: generate_melody_pairs(preset.data, tmp, splits, num_workers))
    return load_from_disk(str(path))




def main(argv=None) -> None:
    """`python -m musiclm_mini.data.melody_pairs --preset tiny [--workers 2]` (Chapter 1)."""
    preset, workers = parse_command(argv, "Generate the melody pairs (and SynthCaps first if missing).")
    start = time.time()
    pairs = load_melody_pairs(preset, workers)
    print(f"Melody pairs ready at {melody_dir(preset)} ({sum(map(len, pairs.values()))} clips) "
          f"after {time.time() - start:.1f} s")


if __name__ == "__main__":
    main()
