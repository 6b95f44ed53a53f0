"""Melody pairs: one melody, several instruments, hummed and whistled (Chapter 1, used in Chapter 8).

MusicLM's melody conditioning (Sec. 6, appendix C) learns from pairs of audio with the same melody and
different acoustics. These are made from SynthCaps' own scores: the top voice of a score, rendered by
a few instruments and hummed, each pair keeping its score's split so that no split shares a melody.

`load_melody_pairs` is Chapter 1's small sample. Chapter 8's embedder needs them in quantity:
`ensure_melody_set` renders several excerpts of every score (each excerpt one melody) played by
instruments in several octaves, hummed, whistled, and inside a full arrangement (harmony, bass,
drums: what music following a hum sounds like), at many tempi (below, `MelodySetConfig`).

    python -m musiclm_mini.data.melody_pairs --preset tiny          # Chapter 1's pairs
    python -m musiclm_mini.data.melody_pairs --preset tiny --set    # Chapter 8's training set
"""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from . import captions, render, scores
from .synthcaps import (KEY_NAMES, SPLITS, _ensure, _is_current, _run, _save, data_root, ensure_synthcaps,
                        parse_command, sample_variant)

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




# ---------------------------------------------------------------------------------------------
# Chapter 8: the melody set, in quantity
# ---------------------------------------------------------------------------------------------
def whistle(notes: np.ndarray, sample_rate: int, num_samples: int, rng: np.random.Generator,
            peak: float = 0.5) -> np.ndarray:
    """A whistled melody: (N, 4) timed notes -> float32 (T,) (Chapter 8).

    Whistling is nearly a pure sine, high (an octave or two above a hum), with a quick upward scoop
    into each note, little vibrato, and air hissing around the tone.
    """
    from scipy.signal import lfilter

    t = np.arange(num_samples) / sample_rate
    target, gate, since = np.full(num_samples, np.nan), np.zeros(num_samples), np.full(num_samples, 1.0)
    for start, end, pitch, _ in notes:
        a, b = int(start * sample_rate), min(int((end - 0.03) * sample_rate), num_samples)
        target[a:b], gate[a:b], since[a:b] = pitch, 1.0, t[a:b] - start
    target = render._fill_gaps(target)
    glide = np.exp(-1.0 / (0.015 * sample_rate))  # 15 ms portamento: quicker than a hum
    midi = lfilter([1 - glide], [1, -glide], target, zi=[target[0] * glide])[0]
    scoop = -0.5 * np.exp(-since / 0.04)  # half a semitone flat at each onset, gone in ~40 ms
    vibrato = rng.uniform(0.05, 0.15) * np.sin(2 * np.pi * rng.uniform(5.0, 7.0) * t)
    f0 = 440.0 * 2 ** ((midi + scoop + vibrato - 69) / 12)
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    tone = np.sin(phase) + 0.05 * np.sin(2 * phase)
    smooth = np.exp(-1 / (0.01 * sample_rate))
    env = lfilter([1 - smooth], [1, -smooth], gate)
    air = lfilter([1, -0.95], [1], rng.normal(0, 1, num_samples)) * (0.01 + 0.06 * env)  # hiss, louder while blowing
    return render.finish(tone * env + air * 0.5, num_samples, peak, sample_rate)


@dataclasses.dataclass(frozen=True)
class MelodySetConfig:
    """How many melodies Chapter 8's embedder learns from, and how each is played (Chapter 8)."""

    extra_scores: int = 250  # training scores beyond SynthCaps' candidates (none in its validation/test)
    extra_held_out: int = 24  # validation scores, and as many test scores, after those: more held-out melodies
    excerpts: int = 6  # at most this many melodies per score: excerpts that neither overlap nor repeat
    instruments: int = 3  # instruments per melody, each in a random octave, besides a hum and a whistle
    train_seconds: float = 6.0  # training clips: room for random 4 s crops
    eval_seconds: float = 10.0  # validation and test clips: three 4 s windows at a 3 s hop, as in the paper
    min_notes: int = 6  # an excerpt with fewer notes is hardly a melody
    ngram: int = 10  # a training score sharing this many (interval, duration) steps with a held-out one is dropped
    arrangements: bool = True  # each melody also inside a full SynthCaps arrangement (harmony, bass, drums)


VOICES = ("hum", "whistle")
HUM_CENTERS, WHISTLE_CENTERS = (50, 57, 64), (79, 84)  # low, middle and high voices; two whistling registers


def melody_set_dir(preset) -> Path:
    """Folder of Chapter 8's melody set: `<data root>/melodyset-<preset name>` (Chapter 8)."""
    return data_root() / f"melodyset-{preset.name}"


def melody_ngrams(notes: np.ndarray, n: int) -> set:
    """Every run of `n` (pitch interval, duration) steps of a melody: transposition-free (Chapter 8)."""
    steps = list(zip(np.diff(notes[:, 2]).round().astype(int).tolist(), np.round(notes[1:, 1], 2).tolist()))
    return {tuple(steps[i:i + n]) for i in range(len(steps) - n + 1)}


def pick_excerpts(score, beats: float, count: int, min_notes: int, ngram: int) -> list[float]:
    """Up to `count` start beats of excerpts of `beats` beats that are different melodies (Chapter 8).

    Excerpts never overlap, and one that repeats `ngram` steps of an excerpt already taken (tunes
    repeat their sections) is skipped: two labels must never name one melody.
    """
    fits = score.bar_starts[score.bar_starts <= score.length - beats]
    if len(fits) == 0:
        fits = score.bar_starts[:1]
    period = float(np.ceil(score.length / score.bar_length) * score.bar_length)
    starts, seen = [], set()
    for start in fits:
        if starts and start < starts[-1] + beats:
            continue
        notes = render.excerpt(score.voices[0], float(start), beats, period)
        grams = melody_ngrams(notes, ngram)
        if len(notes) >= min_notes and not grams & seen:
            seen |= grams
            starts.append(float(start))
    picked = np.linspace(0, len(starts) - 1, min(count, len(starts))).round().astype(int) if starts else []
    return [starts[i] for i in picked]


def _melody_set_job(job: tuple) -> list[tuple[dict, np.ndarray]]:
    """Worker: every excerpt of one score by instruments in random octaves, hummed, whistled and arranged.

    The excerpts of a score share its tempo, key, instruments, octaves and voices: they differ *only*
    in their notes. Each is a hard negative for the others: an embedder cannot tell them apart by key,
    tempo or timbre, only by the melody (and retrieval among them measures exactly that).
    """
    index, source_id, split, cfg, seconds = job
    try:
        score = scores.parse_score(source_id)
    except Exception:  # a corpus file music21 cannot read: skip it
        return []
    rng = np.random.default_rng([cfg["seed"], index, 888])
    sr, n = cfg["sample_rate"], int(round(seconds * cfg["sample_rate"]))
    tempo, tonic = int(rng.integers(70, 141)), int(rng.integers(12))
    programs = [int(p) for p in rng.choice(MELODY_PROGRAMS, size=cfg["instruments"], replace=False)]
    centers = {p: int(np.clip(render.PROGRAM_CENTER.get(p, 72) + 12 * rng.integers(-1, 2), 48, 88))
               for p in programs}  # each instrument's register, moved an octave up or down at random
    centers.update(hum=int(rng.choice(HUM_CENTERS)), whistle=int(rng.choice(WHISTLE_CENTERS)))
    period = float(np.ceil(score.length / score.bar_length) * score.bar_length)
    beats = seconds * tempo / 60.0 + 1.0
    out = []
    for e, start in enumerate(pick_excerpts(score, beats, cfg["excerpts"], cfg["min_notes"], cfg["ngram"])):
        notes = render.excerpt(score.voices[0], start, beats, period)
        notes[:, 2] += (tonic - score.tonic + 6) % 12 - 6
        for variant in [*programs, *VOICES]:
            voice = isinstance(variant, str)
            bpm = tempo * rng.uniform(0.97, 1.03) if voice else tempo  # a singer keeps the tempo only roughly
            shifted = notes.copy()
            shifted[:, 2] += render.octave_shift(shifted, centers[variant])
            part = render.timed(shifted, bpm, 80, score.bar_length, 0 if voice else variant, False, rng)
            if variant == "hum":
                audio = render.hum(part["notes"], sr, n, rng)
            elif variant == "whistle":
                audio = whistle(part["notes"], sr, n, rng)
            else:
                audio = render.render([part], sr, n, float(rng.uniform(0.3, 0.8)))
            label = {"melody_id": f"s{index:04d}-e{e}", "variant": variant if voice else captions.instrument_word(variant),
                     "program": -1 if voice else variant, "split": split, "source_id": source_id, "tempo_bpm": tempo,
                     "center": centers[variant]}
            out.append((label, (np.clip(audio, -1, 1) * 32767).round().astype(np.int16)))
        if cfg["arrangements"]:  # the melody in the top voice of a SynthCaps arrangement (own stream: the rest unchanged)
            arng = np.random.default_rng([cfg["seed"], index, 889, e])
            variant = {**sample_variant(score, seconds, arng), "tempo_bpm": tempo, "tonic": tonic, "mode": score.mode,
                       "start_bar": int(np.flatnonzero(np.isclose(score.bar_starts, start))[0])}
            audio = render.render(render.arrange(score, variant, seconds, arng), sr, n, render.PEAK[variant["dynamics"]])
            out.append(({**label, "variant": "arrangement", "program": -2, "center": 72, "style": variant["style"]},
                        (np.clip(audio, -1, 1) * 32767).round().astype(np.int16)))
    return out


def held_out_ngrams(source_splits: dict, n: int) -> set:
    """The melody n-grams of every validation and test score (Chapter 8)."""
    grams = set()
    for sid, split in source_splits.items():
        if split != "train":
            try:
                grams |= melody_ngrams(scores.parse_score(sid).voices[0], n)
            except Exception:  # unreadable: it renders nothing either
                pass
    return grams


def generate_melody_set(data_config, set_config: MelodySetConfig, source_splits: dict, out_dir,
                        num_workers: int = 1, verbose: bool = False) -> Path:
    """Chapter 8's melody set into `out_dir`: `waveforms-<split>.npy` (N, T) int16 and `clips-<split>.json`.

    Validation and test melodies come from SynthCaps' validation and test scores and `extra_held_out`
    further ones each; training melodies from its training scores and `extra_scores` further ones, minus
    any score whose melody shares an n-gram of `ngram` steps with a held-out score (the corpus has a tune
    under two names now and then). See `melody_sources`.
    """
    cfg = {**dataclasses.asdict(data_config), **dataclasses.asdict(set_config)}
    start = time.time()
    jobs, dropped = melody_jobs(data_config, set_config, source_splits)
    clips = {s: [] for s in SPLITS}
    for rows in _run(jobs, _melody_set_job, num_workers):
        for label, pcm in rows:
            clips[label["split"]].append((label, pcm))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for split, rows in clips.items():
        seconds = set_config.train_seconds if split == "train" else set_config.eval_seconds
        empty = np.zeros((0, int(round(seconds * cfg["sample_rate"]))), np.int16)
        np.save(out_dir / f"waveforms-{split}.npy", np.stack([pcm for _, pcm in rows]) if rows else empty)
        (out_dir / f"clips-{split}.json").write_text(json.dumps([label for label, _ in rows]))
    (out_dir / "dropped.json").write_text(json.dumps(dropped, indent=1))
    if verbose:
        counts = {s: f"{len(r)} clips, {len({lab['melody_id'] for lab, _ in r})} melodies" for s, r in clips.items()}
        print(f"melody set: {counts}; {len(dropped)} training scores dropped (share a tune with a held-out one); "
              f"{time.time() - start:.0f} s -> {out_dir}")
    return out_dir


def melody_sources(data_config, set_config: MelodySetConfig, source_splits: dict) -> list[tuple[str, str]]:
    """Every score of the melody set with its split, in job order (Chapter 8).

    SynthCaps' scores keep their splits; then, from further down the corpus' seeded order (past every
    score SynthCaps may use), `extra_scores` training scores, `extra_held_out` validation and as many test ones.
    """
    cfg = dataclasses.asdict(data_config)
    skip = len(synthcaps_candidates(cfg))
    want = set_config.extra_scores + 2 * set_config.extra_held_out
    extra = scores.list_sources(cfg["seed"], skip + want)[skip:]
    a, b = set_config.extra_scores, set_config.extra_scores + set_config.extra_held_out
    return [*source_splits.items(), *((sid, "train") for sid in extra[:a]),
            *((sid, "validation") for sid in extra[a:b]), *((sid, "test") for sid in extra[b:b + set_config.extra_held_out])]


def melody_jobs(data_config, set_config: MelodySetConfig, source_splits: dict, split: str | None = None,
                limit: int | None = None) -> tuple[list[tuple], list[str]]:
    """The rendering jobs of the melody set (of one `split`, its first `limit` scores), and the dropped scores.

    A training score that shares a melody n-gram with any held-out score is dropped.
    """
    cfg = {**dataclasses.asdict(data_config), **dataclasses.asdict(set_config)}
    order = melody_sources(data_config, set_config, source_splits)
    held = held_out_ngrams(dict(order), set_config.ngram) if split in (None, "train") else set()
    jobs, dropped = [], []
    for i, (sid, s) in enumerate(order):
        if (split is not None and s != split) or (limit is not None and len(jobs) >= limit):
            continue
        if s == "train":
            try:
                grams = melody_ngrams(scores.parse_score(sid).voices[0], set_config.ngram)
            except Exception:  # unreadable: nothing to render
                continue
            if grams & held:
                dropped.append(sid)
                continue
        jobs.append((i, sid, s, cfg, set_config.train_seconds if s == "train" else set_config.eval_seconds))
    return jobs, dropped


def load_melody_split(preset, split: str, set_config: MelodySetConfig | None = None,
                      limit: int | None = None) -> tuple[np.ndarray, list[dict]]:
    """(N, T) int16 clips and labels of one split of the melody set (Chapter 8).

    Read from disk when the set is there. Otherwise a held-out split, or the first `limit` training
    scores of SynthCaps, is rendered in memory (seconds; the same clips, from the same seeds); the whole
    training split (`limit=None`) renders and saves the whole set first (minutes).
    """
    set_config = set_config or MelodySetConfig()
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: choose one of {SPLITS}")
    on_disk = _is_current(melody_set_dir(preset), preset.data, {"melody_set": dataclasses.asdict(set_config)})
    if on_disk or (split == "train" and limit is None):
        pcm, labels = load_melody_set(ensure_melody_set(preset, set_config), split)
        if limit is not None:  # the clips of the first `limit` scores
            keep = list(dict.fromkeys(lab["source_id"] for lab in labels))[:limit]
            rows = [i for i, lab in enumerate(labels) if lab["source_id"] in keep]
            return np.asarray(pcm[rows]), [labels[i] for i in rows]
        return pcm, labels
    source_splits = json.loads((ensure_synthcaps(preset) / "sources.json").read_text())
    jobs, _ = melody_jobs(preset.data, set_config, source_splits, split, limit)
    rows = [row for job in jobs for row in _melody_set_job(job)]
    return np.stack([pcm for _, pcm in rows]), [label for label, _ in rows]


def synthcaps_candidates(cfg: dict) -> list[str]:
    """Every score SynthCaps may use, whatever its split (so the extra scores come after them)."""
    from .synthcaps import _candidates

    return _candidates(cfg)[0]


def ensure_melody_set(preset, set_config: MelodySetConfig | None = None, num_workers: int = 1,
                      verbose: bool = False) -> Path:
    """Chapter 8's melody set folder, rendered first if missing or made with other settings (Chapter 8)."""
    set_config = set_config or MelodySetConfig()
    splits = json.loads((ensure_synthcaps(preset, num_workers) / "sources.json").read_text())
    return _ensure(melody_set_dir(preset), preset.data,
                   lambda tmp: generate_melody_set(preset.data, set_config, splits, tmp, num_workers, verbose),
                   extra={"melody_set": dataclasses.asdict(set_config)})


def load_melody_set(path, split: str) -> tuple[np.ndarray, list[dict]]:
    """(N, T) int16 waveforms and their labels (melody_id, variant, ...) of one split (Chapter 8)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: choose one of {SPLITS}")
    labels = json.loads((Path(path) / f"clips-{split}.json").read_text())
    return np.load(Path(path) / f"waveforms-{split}.npy", mmap_mode="r"), labels  # mapped: read as needed


def main(argv=None) -> None:
    """`python -m musiclm_mini.data.melody_pairs --preset tiny [--workers 2] [--set]` (Chapters 1 and 8)."""
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    chapter8 = "--set" in argv
    preset, workers = parse_command([a for a in argv if a != "--set"],
                                    "Generate the melody pairs (and SynthCaps first if missing); --set: Chapter 8's melody set.")
    start = time.time()
    if chapter8:
        print(f"Melody set ready at {ensure_melody_set(preset, num_workers=workers, verbose=True)} "
              f"after {time.time() - start:.1f} s")
        return
    pairs = load_melody_pairs(preset, workers)
    print(f"Melody pairs ready at {melody_dir(preset)} ({sum(map(len, pairs.values()))} clips) "
          f"after {time.time() - start:.1f} s")


if __name__ == "__main__":
    main()
