"""SynthCaps: a captioned music data set the book builds offline, in minutes (Chapter 1).

MusicLM trained on 280,000 hours of music and was evaluated on MusicCaps. We can ship neither,
so we make a stand-in with the same shape: 10 s clips at 24 kHz, each with a MusicCaps-style
caption and aspect list. The notes are real public-domain music (music21's corpus); style,
instruments, tempo, key, mode and loudness are chosen per clip, so captions describe what the
audio really does. Pipeline, per source score (one task per score, two worker processes):

    parse once (scores.py) -> K variants: choices (here) -> arrange + FluidSynth (render.py)
                                         -> caption + aspects (captions.py)

Splits are made by *source score*: a tune in `test` never appears, in any arrangement, in
`train`. The result is a `datasets.DatasetDict` saved with `save_to_disk` under `data/`.

    python -m musiclm_mini.data.synthcaps --preset tiny        # build it (about a minute)
"""
from __future__ import annotations

import dataclasses
import json
import math
import multiprocessing
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..files import build_once, exclusive_lock
from . import captions, render, scores

GENERATOR_VERSION = 3  # bump when the generator changes: stale data sets are rebuilt
SPLITS = ("train", "validation", "test")
KEY_NAMES = {"major": "C Db D Eb E F F# G Ab A Bb B".split(), "minor": "C C# D Eb E F F# G G# A Bb B".split()}
# How likely each style is for scores with real voices ("poly") and for one-line tunes ("mono").
STYLE_WEIGHTS = {
    "poly": {"chorale": 2.0, "chamber": 2.0, "church organ": 1.2, "piano solo": 1.2, "orchestral": 1.5,
             "jazz": 1.0, "rock": 1.0, "electronic": 1.0, "folk": 0.4},
    "mono": {"chorale": 0.5, "chamber": 0.8, "church organ": 0.5, "piano solo": 1.2, "orchestral": 1.0,
             "jazz": 1.2, "rock": 1.2, "electronic": 1.2, "folk": 3.0},
}


# ---------------------------------------------------------------------------------------------
# Where the data lives
# ---------------------------------------------------------------------------------------------
def data_root() -> Path:
    """`$MUSICLM_DATA_DIR`, else `<repo>/data` (or `./data` outside a checkout) (Chapter 1)."""
    if os.environ.get("MUSICLM_DATA_DIR"):
        return Path(os.environ["MUSICLM_DATA_DIR"]).expanduser()
    repo = Path(__file__).resolve().parents[2]
    return repo / "data" if (repo / "pyproject.toml").exists() else Path.cwd() / "data"


def dataset_dir(preset) -> Path:
    """Folder of a preset's SynthCaps: `<data root>/synthcaps-<preset name>` (Chapter 1)."""
    return data_root() / f"synthcaps-{preset.name}"


# ---------------------------------------------------------------------------------------------
# One clip: choices -> audio -> labels
# ---------------------------------------------------------------------------------------------
def sample_variant(score: scores.ScoreNotes, clip_seconds: float, rng: np.random.Generator) -> dict:
    """Draw the arrangement of one clip: style, instruments, tempo, key, mode, loudness (Chapter 1).

    Style comes first because it decides the rest: the palette of instruments, the tempo range,
    whether drums play and in which groove.
    """
    weights = STYLE_WEIGHTS[score.kind]
    style = str(rng.choice(list(weights), p=np.array(list(weights.values())) / sum(weights.values())))
    spec = render.STYLES[style]
    ens = spec.ensembles[rng.integers(len(spec.ensembles))]
    melody = int(rng.choice(ens.melody))
    programs = {"melody": melody,
                "harmony": int(rng.choice(ens.harmony)) if ens.harmony else melody,
                "bass": int(rng.choice(ens.bass)) if ens.bass else melody}
    tempo = int(rng.integers(spec.tempo[0], spec.tempo[1] + 1))
    drums = bool(rng.random() < spec.drums)
    beats = clip_seconds * tempo / 60.0
    fits = np.flatnonzero(score.bar_starts <= score.length - beats)  # starts that need no looping
    start_bar = int(rng.choice(fits)) if len(fits) else 0
    return {"style": style, "ensemble": ens.name, "programs": programs, "tempo_bpm": tempo,
            "mode": str(rng.choice(["major", "minor"])), "tonic": int(rng.integers(12)),
            "dynamics": str(rng.choice(spec.dynamics)), "drums": drums,
            "drum_pattern": spec.groove if drums else "none", "start_bar": start_bar}


def clip_labels(score: scores.ScoreNotes, variant: dict, clip_id: str, rng: np.random.Generator) -> dict:
    """Structured labels, caption and aspects of one clip (Chapter 1)."""
    progs = list(dict.fromkeys(variant["programs"].values()))
    bucket = captions.tempo_bucket(variant["tempo_bpm"])
    labels = {
        "clip_id": clip_id, "style": variant["style"], "ensemble": variant["ensemble"],
        "instruments": [captions.gm_name(p) for p in progs],
        "instrument_families": [captions.gm_family(p) for p in progs],
        "family": captions.gm_family(variant["programs"]["melody"]), "programs": dict(variant["programs"]),
        "tempo_bpm": variant["tempo_bpm"], "tempo_bucket": bucket,
        "key": f"{KEY_NAMES[variant['mode']][variant['tonic']]} {variant['mode']}", "mode": variant["mode"],
        "mood": captions.derive_mood(variant["mode"], bucket, variant["dynamics"]),
        "dynamics": variant["dynamics"], "drums": variant["drums"], "drum_pattern": variant["drum_pattern"],
        "source_id": score.source_id, "source_collection": score.source_id.split("/")[0],
        "title": score.title, "transpose": (variant["tonic"] - score.tonic + 6) % 12 - 6,
        "start_bar": variant["start_bar"],
    }
    labels["caption"] = captions.make_caption(labels, rng)
    labels["aspects"] = captions.make_aspects(labels)
    return labels


def _source_job(job: tuple) -> list[dict] | None:
    """Worker: parse one score and render its variants; None when the score is unusable."""
    index, source_id, count, cfg = job
    try:
        score = scores.parse_score(source_id)
    except Exception:  # a corpus file music21 cannot read, or one too short: skip it
        return None
    num_samples = int(round(cfg["clip_seconds"] * cfg["sample_rate"]))
    clips = []
    first = cfg.get("first_variant", 0)  # > 0: more variants of a score, after those already rendered
    for j in range(first, first + count):
        rng = np.random.default_rng([cfg["seed"], index, j])  # one stream per clip: order-free
        variant = sample_variant(score, cfg["clip_seconds"], rng)
        parts = render.arrange(score, variant, cfg["clip_seconds"], rng)
        audio = render.render(parts, cfg["sample_rate"], num_samples, render.PEAK[variant["dynamics"]])
        labels = clip_labels(score, variant, "", np.random.default_rng([cfg["seed"], index, j, 1]))
        clips.append({**labels, "variant": j, "wav": render.encode_wav(audio, cfg["sample_rate"])})
    return clips


def _run(jobs, fn, num_workers: int):
    """Yield fn(job) in job order, in `num_workers` spawned processes (inline when <= 1)."""
    if num_workers <= 1:
        yield from map(fn, jobs)
        return
    with multiprocessing.get_context("spawn").Pool(num_workers) as pool:
        yield from pool.imap(fn, jobs, chunksize=1)
        pool.terminate()  # tasks queued beyond what the caller needed


def assign_splits(source_ids: list[str], val_fraction: float, test_fraction: float, seed: int) -> dict:
    """Source id -> split, a seeded shuffle with at least one score per split (Chapter 1)."""
    n = len(source_ids)
    n_test = max(1, round(test_fraction * n)) if test_fraction > 0 else 0
    n_val = max(1, round(val_fraction * n)) if val_fraction > 0 else 0
    if n - n_test - n_val < 1:
        raise ValueError(f"{n} source scores cannot fill train, validation and test; ask for more clips")
    order = np.random.default_rng([seed, 99]).permutation(n)
    split = ["test"] * n_test + ["validation"] * n_val + ["train"] * (n - n_test - n_val)
    return {source_ids[i]: split[rank] for rank, i in enumerate(order)}


# ---------------------------------------------------------------------------------------------
# The data set
# ---------------------------------------------------------------------------------------------
def features(sample_rate: int):
    """The `datasets.Features` of SynthCaps (Chapter 1)."""
    from datasets import Audio, Features, List, Value

    text, num = Value("string"), Value("int32")
    return Features({
        "clip_id": text, "audio": Audio(sampling_rate=sample_rate), "caption": text, "aspects": List(text),
        "style": text, "ensemble": text, "instruments": List(text), "instrument_families": List(text),
        "family": text, "programs": {"melody": num, "harmony": num, "bass": num}, "tempo_bpm": num,
        "tempo_bucket": text, "key": text, "mode": text, "mood": text, "dynamics": text,
        "drums": Value("bool"), "drum_pattern": text, "source_id": text, "source_collection": text,
        "title": text, "transpose": num, "start_bar": num, "split": text,
    })


@contextmanager
def _quiet_datasets():
    """Silence datasets' progress bars (notebook outputs must be stable), then restore them."""
    from datasets.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _save(records: list[dict], feats, out_dir: Path, name_key: str, splits: tuple[str, ...] = SPLITS) -> None:
    """Group records (with WAV bytes under "wav") by split and write a DatasetDict to `out_dir`."""
    from datasets import Dataset, DatasetDict

    dd = {}
    for split in splits:
        rows = [r for r in records if r["split"] == split]
        cols = {name: [r[name] for r in rows] for name in feats if name != "audio"}
        cols["audio"] = [{"bytes": r["wav"], "path": f"{r[name_key]}.wav"} for r in rows]
        dd[split] = Dataset.from_dict(cols, features=feats)
    with _quiet_datasets():
        DatasetDict(dd).save_to_disk(str(out_dir))


def _candidates(cfg: dict) -> tuple[list[str], int]:
    """The scores SynthCaps tries, in order, and how many clips each gives."""
    n_sources = max(math.ceil(cfg["num_clips"] / cfg["variants_per_score"]), min(3, cfg["num_clips"]))
    return scores.list_sources(cfg["seed"], int(n_sources * 1.25) + 8), math.ceil(cfg["num_clips"] / n_sources)


def generate_synthcaps(data_config, out_dir, num_workers: int = 2, verbose: bool = False) -> Path:
    """Generate SynthCaps for a `DataConfig` into `out_dir` (Chapter 1).

    Scores are taken in a seeded order and each gives `variants_per_score` clips (more when the
    config asks for fewer than three scores' worth); a score that fails to parse is skipped.
    Writes the DatasetDict plus `sources.json` (score -> split) and `config.json`.
    Same config -> same audio bytes, whatever `num_workers` is. Scripts that call this with
    workers must guard their entry point with `if __name__ == "__main__":` (spawned processes).
    """
    cfg = dataclasses.asdict(data_config)
    candidates, per_source = _candidates(cfg)
    start, used, records = time.time(), [], []
    jobs = [(i, sid, per_source, cfg) for i, sid in enumerate(candidates)]
    results = _run(jobs, _source_job, num_workers)
    for (_, sid, _, _), clips in zip(jobs, results):
        if clips:
            used.append(sid)
            for j, clip in enumerate(clips):
                records.append({**clip, "clip_id": f"sc{cfg['seed']}-{len(used) - 1:05d}-{j}"})
        if len(records) >= cfg["num_clips"]:
            break
    results.close()  # stops the workers still busy with spare scores
    if len(records) < cfg["num_clips"]:
        raise RuntimeError(f"only {len(records)} clips could be made from the corpus")
    records = records[: cfg["num_clips"]]
    splits = assign_splits(used, cfg["val_fraction"], cfg["test_fraction"], cfg["seed"])
    for r in records:
        r["split"] = splits[r["source_id"]]
    out_dir = Path(out_dir)
    _save(records, features(cfg["sample_rate"]), out_dir, "clip_id")
    (out_dir / "sources.json").write_text(json.dumps(splits, indent=1))
    (out_dir / "config.json").write_text(json.dumps({"generator_version": GENERATOR_VERSION, **cfg}, indent=1))
    if verbose:
        took = time.time() - start
        print(f"SynthCaps: {len(records)} clips from {len(used)} scores in {took:.1f} s "
              f"({len(records) / took:.2f} clips/s, {num_workers} workers) -> {out_dir}")
    return out_dir


def _is_current(path: Path, data_config, extra: dict | None = None) -> bool:
    """True when `path` holds a finished data set made with this config (and `extra`) and generator."""
    try:
        saved = json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return False
    want = {"generator_version": GENERATOR_VERSION, **dataclasses.asdict(data_config), **(extra or {})}
    return saved == json.loads(json.dumps(want))


def _ensure(path: Path, data_config, build, extra: dict | None = None) -> Path:
    """Build into a temporary sibling folder and rename it into place (atomic for readers)."""
    if _is_current(path, data_config, extra):
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(path.parent / f".{path.name}.lock"):
        if _is_current(path, data_config, extra):  # another process built it while we waited
            return path
        tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        build(tmp)
        (tmp / "config.json").write_text(json.dumps({"generator_version": GENERATOR_VERSION,
                                                     **dataclasses.asdict(data_config), **(extra or {})}, indent=1))
        if path.exists():  # stale: made by another config or generator version
            shutil.rmtree(path)
        os.rename(tmp, path)
    return path


def ensure_synthcaps(preset, num_workers: int = 2, verbose: bool = False) -> Path:
    """The preset's SynthCaps folder, generated first if missing or stale (Chapter 1)."""
    return _ensure(dataset_dir(preset), preset.data,
                   lambda tmp: generate_synthcaps(preset.data, tmp, num_workers, verbose))


def extra_dir(preset) -> Path:
    """Folder of the extra training variants: `<data root>/synthcaps-<preset name>-extra` (Chapter 6)."""
    return data_root() / f"synthcaps-{preset.name}-extra"


def generate_extra_variants(data_config, sources: dict[str, str], per_score: int, out_dir,
                            num_workers: int = 2, verbose: bool = False) -> Path:
    """`per_score` more clips of every *training* score of a SynthCaps, into `out_dir` (Chapter 6).

    The hierarchical stages need far more audio than the tokenizers. These clips are new arrangements
    (instruments, tempo, key, excerpt, caption) of the training split's scores only, drawn from the
    random streams that come after the ones SynthCaps used, so they share no score with validation or
    test and repeat no clip of the training split. `sources` is the SynthCaps' score -> split map.
    """
    cfg = dataclasses.asdict(data_config)
    candidates, per_source = _candidates(cfg)
    train = [sid for sid in candidates if sources.get(sid) == "train"]
    if not train:
        raise ValueError("no training scores: pass the sources.json of the SynthCaps these clips extend")
    start = time.time()
    jobs = [(candidates.index(sid), sid, per_score, {**cfg, "first_variant": per_source}) for sid in train]
    records = []
    for (index, _, _, _), clips in zip(jobs, _run(jobs, _source_job, num_workers)):
        for clip in clips or []:
            records.append({**clip, "clip_id": f"sx{cfg['seed']}-{index:05d}-{clip['variant']}", "split": "train"})
    out_dir = Path(out_dir)
    _save(records, features(cfg["sample_rate"]), out_dir, "clip_id", splits=("train",))  # datasets cannot load empty splits
    if verbose:
        print(f"SynthCaps extra: {len(records)} clips of {len(train)} training scores in {time.time() - start:.1f} s")
    return out_dir


def ensure_extra_variants(preset, per_score: int, num_workers: int = 2, verbose: bool = False) -> Path:
    """The extra training variants' folder, generated first if missing or stale (Chapter 6)."""
    sources = json.loads((ensure_synthcaps(preset, num_workers, verbose) / "sources.json").read_text())
    return _ensure(extra_dir(preset), preset.data,
                   lambda tmp: generate_extra_variants(preset.data, sources, per_score, tmp, num_workers, verbose),
                   extra={"extra_variants_per_score": per_score})


def load_synthcaps(preset):
    """SynthCaps as a `datasets.DatasetDict` with train/validation/test (Chapter 1)."""
    from datasets import load_from_disk

    return load_from_disk(str(ensure_synthcaps(preset)))


def waveforms_from_dir(path, split: str):
    """(N, T) float32 tensor of one split of a saved data set, cached as int16 .npy beside it (Chapter 1)."""
    import torch

    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: choose one of {SPLITS}")

    def write(tmp: Path) -> None:
        from datasets import Audio, load_from_disk

        ds = load_from_disk(str(path))[split].cast_column("audio", Audio(decode=False))
        arrays = [render.decode_wav_int16(a["bytes"])[0] for a in ds["audio"]]
        with open(tmp, "wb") as f:  # a file object: np.save would add ".npy" to a path
            np.save(f, np.stack(arrays) if arrays else np.zeros((0, 0), np.int16))

    cache = build_once(Path(path) / f"waveforms-{split}.npy", write)  # one process decodes, the others wait
    pcm = np.load(cache)  # (N, T) int16: 16-bit is all the WAVs hold, at half the size of float32
    return torch.from_numpy(pcm.astype(np.float32) / 32768.0)


def labels_from_dir(path, split: str) -> list[dict]:
    """Every column but audio of one split, as dicts, in waveform order (Chapter 1)."""
    from datasets import load_from_disk

    ds = load_from_disk(str(path))[split]
    return ds.remove_columns("audio").to_list()


def split_waveforms(preset, split: str):
    """All clips of a split as an (N, T) float32 tensor at `preset.data.sample_rate` (Chapter 1)."""
    return waveforms_from_dir(ensure_synthcaps(preset), split)


def split_labels(preset, split: str) -> list[dict]:
    """Captions, aspects and labels per clip of a split, in `split_waveforms` order (Chapter 1)."""
    return labels_from_dir(ensure_synthcaps(preset), split)


def parse_command(argv, description: str):
    """`--preset NAME --workers N` of the data commands -> (preset, workers) (Chapter 1)."""
    import argparse

    from ..config import get_preset

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--preset", default=None, help="tiny, colab or paper (default: $MUSICLM_PRESET, else tiny)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    return get_preset(args.preset), args.workers


def main(argv=None) -> None:
    """`python -m musiclm_mini.data.synthcaps --preset tiny [--workers 2]` (Chapter 1; melody pairs:
    `python -m musiclm_mini.data.melody_pairs`)."""
    preset, workers = parse_command(argv, "Generate SynthCaps.")
    start = time.time()
    path = ensure_synthcaps(preset, workers, verbose=True)
    print(f"SynthCaps ({preset.name}) ready at {path} after {time.time() - start:.1f} s")


if __name__ == "__main__":
    main()
