"""Real captioned music: MusicCaps, and your own folder of clips (Chapter 1).

The book never downloads audio. When you have it, two doors lead into the same format as
SynthCaps (a `datasets.Dataset` with a 24 kHz mono `audio` column and a `caption`):

`load_musiccaps(csv, audio_dir)` joins the public MusicCaps metadata CSV (5,521 rows: ytid,
start_s, end_s, aspect_list, caption, author_id, is_balanced_subset, is_audioset_eval) to a
folder of clips you fetched yourself. For each row it looks, in this order, for

    {ytid}_{start_s}.{ext}    e.g. -0Gj8-vB1q4_30.wav   (the 10 s segment)
    {ytid}.{ext}              e.g. -0Gj8-vB1q4.flac     (the segment, or the whole recording)

with any common audio extension. A file clearly longer than the segment is taken to be the
whole YouTube recording and is cut at [start_s, end_s]. MusicCaps has no validation split:
`split` is "test" for the AudioSet-eval rows (what the paper reports on) and "train" otherwise.

`load_audio_folder(folder)` reads a folder with a `metadata.csv` (file_name, caption, and any
other columns) through `datasets`' audiofolder builder.

Every clip goes through `musiclm_mini.audio.load_audio`: any sample rate and channel count come
out as mono at the target rate, and a missing, unreadable or NaN file raises one `AudioError`
that names it.
"""
from __future__ import annotations

import ast
import csv
import os
import tempfile
from pathlib import Path

import numpy as np

from ..audio import load_audio
from ..errors import AudioError, TextError
from .render import encode_wav

AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac", ".webm")
MUSICCAPS_COLUMNS = ("ytid", "start_s", "end_s", "aspect_list", "caption", "author_id",
                     "is_balanced_subset", "is_audioset_eval")


def _truthy(value: str) -> bool:
    return str(value).strip().lower() in ("true", "1", "yes")


def read_musiccaps_csv(csv_path) -> list[dict]:
    """Rows of a MusicCaps-style CSV with typed fields and parsed aspect lists (Chapter 1).

    `aspect_list` is stored as a Python list literal ("['piano', 'slow tempo']") and parsed with
    `ast.literal_eval`, which evaluates literals only, never code.
    """
    csv_path = Path(csv_path)
    if not csv_path.exists():
        raise AudioError(f"MusicCaps CSV not found: {csv_path}")
    with open(csv_path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in MUSICCAPS_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise AudioError(f"{csv_path}: missing MusicCaps column(s) {missing}")
        rows = []
        for line, raw in enumerate(reader, start=2):  # line 1 is the header
            try:
                aspects = ast.literal_eval(raw["aspect_list"])
            except (ValueError, SyntaxError) as exc:
                raise TextError(f"{csv_path}, line {line}: aspect_list is not a list literal: "
                                f"{raw['aspect_list']!r}") from exc
            if not isinstance(aspects, (list, tuple)) or not all(isinstance(a, str) for a in aspects):
                raise TextError(f"{csv_path}, line {line}: aspect_list must be a list of strings")
            if not raw["caption"].strip():
                raise TextError(f"{csv_path}, line {line}: empty caption for {raw['ytid']}")
            rows.append({"ytid": raw["ytid"], "start_s": float(raw["start_s"]), "end_s": float(raw["end_s"]),
                         "aspects": list(aspects), "caption": raw["caption"].strip(),
                         "author_id": int(raw["author_id"]), "is_balanced_subset": _truthy(raw["is_balanced_subset"]),
                         "is_audioset_eval": _truthy(raw["is_audioset_eval"])})
    return rows


def find_clip(audio_dir, ytid: str, start_s: float) -> Path | None:
    """The file holding a MusicCaps clip, by the naming rules above, or None (Chapter 1)."""
    audio_dir = Path(audio_dir)
    stems = [f"{ytid}_{start_s:g}", f"{ytid}_{int(start_s)}", ytid]
    for stem in dict.fromkeys(stems):
        for ext in AUDIO_EXTENSIONS:
            for candidate in (audio_dir / f"{stem}{ext}", audio_dir / f"{stem}{ext.upper()}"):
                if candidate.is_file():
                    return candidate
    return None


def load_segment(path, start_s: float, end_s: float, sample_rate: int):
    """A clip as float32 mono (T,) at `sample_rate`; a whole recording is cut to [start_s, end_s] (Chapter 1)."""
    wave = load_audio(path, sample_rate)  # (T,): resampled, mixed to mono, NaN-checked
    seconds = wave.shape[-1] / sample_rate
    if seconds > (end_s - start_s) + 1.0:  # longer than the segment: the full recording
        if seconds < end_s - 0.05:
            raise AudioError(f"{path}: {seconds:.1f} s long, too short to hold the segment "
                             f"{start_s:g}-{end_s:g} s")
        wave = wave[int(start_s * sample_rate): int(end_s * sample_rate)]
    return wave


def missing_clips(csv_path, audio_dir) -> list[str]:
    """ytids of the CSV rows without a clip in `audio_dir`: what is left to fetch (Chapter 1)."""
    return [r["ytid"] for r in read_musiccaps_csv(csv_path) if find_clip(audio_dir, r["ytid"], r["start_s"]) is None]


def _audio_features(sample_rate: int, extra: dict):
    from datasets import Audio, Features

    return Features({"audio": Audio(sampling_rate=sample_rate), **extra})


def load_musiccaps(csv_path, audio_dir, sample_rate: int = 24_000, skip_missing: bool = False,
                   limit: int | None = None):
    """MusicCaps rows joined to local clips as a `datasets.Dataset` (Chapter 1, evaluated in Chapter 7).

    Columns: ytid, audio (mono WAV at `sample_rate`), caption, aspects, author_id, start_s, end_s,
    is_balanced_subset, is_audioset_eval, split, file. A row without a clip raises `AudioError`
    unless `skip_missing=True`, which drops it (see `missing_clips` for the list).
    """
    from datasets import Dataset, List, Value

    rows = read_musiccaps_csv(csv_path)[:limit]
    out = []
    for row in rows:
        path = find_clip(audio_dir, row["ytid"], row["start_s"])
        if path is None:
            if skip_missing:
                continue
            raise AudioError(f"MusicCaps clip {row['ytid']} not found in {audio_dir} "
                             f"(looked for {row['ytid']}_{row['start_s']:g}.* and {row['ytid']}.*, "
                             f"extensions {', '.join(AUDIO_EXTENSIONS)})")
        wave = load_segment(path, row["start_s"], row["end_s"], sample_rate)
        out.append({**row, "split": "test" if row["is_audioset_eval"] else "train", "file": path.name,
                    "audio": {"bytes": encode_wav(wave.numpy(), sample_rate), "path": path.stem + ".wav"}})
    text, flag = Value("string"), Value("bool")
    feats = _audio_features(sample_rate, {
        "ytid": text, "caption": text, "aspects": List(text), "author_id": Value("int32"),
        "start_s": Value("float32"), "end_s": Value("float32"), "is_balanced_subset": flag,
        "is_audioset_eval": flag, "split": text, "file": text})
    return Dataset.from_dict({k: [r[k] for r in out] for k in feats}, features=feats)


def load_audio_folder(folder, sample_rate: int = 24_000):
    """Your own clips + `metadata.csv` (file_name, caption, ...) as a `datasets.Dataset` (Chapter 1).

    Uses `datasets`' audiofolder builder for the join (its cache goes to a temporary folder that
    is removed afterwards), then decodes every file with `load_audio`, so the audio column holds
    mono WAV at `sample_rate` and bad files fail with an `AudioError` naming them.
    """
    from datasets import Audio, Dataset, Value, load_dataset

    from .synthcaps import _quiet_datasets

    folder = Path(folder)
    meta = folder / "metadata.csv"
    if not meta.is_file():
        raise AudioError(f"{folder}: no metadata.csv (columns file_name, caption) in the audio folder")
    with open(meta, newline="", encoding="utf-8") as handle:
        listed = list(csv.DictReader(handle))
    if not listed or not {"file_name", "caption"} <= set(listed[0]):
        raise AudioError(f"{meta}: needs a header with file_name and caption and at least one row")
    for line, row in enumerate(listed, start=2):
        if not (folder / row["file_name"]).is_file():
            raise AudioError(f"{meta}, line {line}: audio file not found: {folder / row['file_name']}")
        if not row["caption"].strip():
            raise TextError(f"{meta}, line {line}: empty caption for {row['file_name']}")
    with tempfile.TemporaryDirectory(prefix="musiclm-audiofolder-") as cache, _quiet_datasets():
        ds = load_dataset("audiofolder", data_dir=str(folder), cache_dir=cache, split="train")
        ds = ds.cast_column("audio", Audio(decode=False))
        records = ds.to_list()  # materialize before the cache folder disappears
    if len(records) != len(listed):
        found = {os.path.basename(r["audio"]["path"]) for r in records}
        lost = [r["file_name"] for r in listed if os.path.basename(r["file_name"]) not in found]
        raise AudioError(f"{folder}: audiofolder did not read {lost} (not an audio extension?)")
    columns = {"file_name": [], "audio": [], **{k: [] for k in records[0] if k != "audio"}}
    for rec in records:
        path = rec["audio"]["path"]
        wave = load_audio(path, sample_rate)  # raises AudioError naming the file
        columns["file_name"].append(Path(os.path.relpath(path, folder)).as_posix())
        columns["audio"].append({"bytes": encode_wav(wave.numpy(), sample_rate), "path": Path(path).stem + ".wav"})
        for k in list(columns)[2:]:
            columns[k].append(str(rec[k]))
    feats = _audio_features(sample_rate, {k: Value("string") for k in columns if k != "audio"})
    return Dataset.from_dict(columns, features=feats)


def dataset_waveforms(dataset):
    """Every clip of a Dataset made here, as a list of float32 (T,) tensors (Chapter 1)."""
    import torch
    from datasets import Audio

    from .render import decode_wav_int16

    plain = dataset.cast_column("audio", Audio(decode=False))
    return [torch.from_numpy(decode_wav_int16(a["bytes"])[0].astype(np.float32) / 32768.0) for a in plain["audio"]]
