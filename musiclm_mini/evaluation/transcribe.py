"""An independent ear: a pretrained transcriber, note F1, and SynthCaps' true notes (Chapter 7; MusicLM Sec. 4.4).

MusicLM checks melody conditioning (Sec. 4.4, 5.2) with a pitch tracker that was trained elsewhere; the
book does the same for its codec and its generated music with basic-pitch (Bittner et al., ICASSP 2022),
a small polyphonic transcriber whose ONNX weights (230 kB) ship inside the `basic-pitch` PyPI package,
so nothing is downloaded at run time. It runs here through onnxruntime on one thread.

    transcribe(wave, sr)        -> (N, 3) notes: onset s, offset s, MIDI pitch
    posteriorgrams(wave, sr)    -> the model's note / onset / contour activations (frames x bins)
    note_f1(reference, est)     -> precision, recall, F1 with onset-only matching (mir_eval)
    synthcaps_notes(dir, clip)  -> the notes a SynthCaps clip really plays, re-derived from its score

SynthCaps does not store notes; it stores each clip's source score and choices (style, tempo, key, ...).
Its generator draws every clip from its own random stream, `default_rng([seed, score index, variant])`,
so replaying that stream through `sample_variant` and `arrange` gives the very parts FluidSynth rendered
(the test re-renders a clip from them and gets the stored audio back, sample for sample).
"""
from __future__ import annotations

import functools
import importlib.util
import json
import logging
from contextlib import contextmanager
from math import gcd
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import AudioError

MODEL_SAMPLE_RATE = 22_050  # basic-pitch's input rate
FFT_HOP = 256
WINDOW_SAMPLES = MODEL_SAMPLE_RATE * 2 - FFT_HOP  # 2 s windows (43,844 samples)
OVERLAP_FRAMES = 30
ONNX_NAMES = {"note": "StatefulPartitionedCall:1", "onset": "StatefulPartitionedCall:2",
              "contour": "StatefulPartitionedCall:0"}
ROLES = ("melody", "harmony", "bass")


# ---------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------
def model_path() -> Path:
    """Path of basic-pitch's ONNX model inside its installed package (no import, no download)."""
    spec = importlib.util.find_spec("basic_pitch")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("basic-pitch is not installed: `pip install --no-deps basic-pitch` plus "
                          "onnxruntime, librosa, mir_eval and resampy (see requirements.txt)")
    path = Path(list(spec.submodule_search_locations)[0]) / "saved_models" / "icassp_2022" / "nmp.onnx"
    if not path.exists():
        raise ImportError(f"basic-pitch is installed but its ONNX model is missing: {path}")
    return path


@functools.lru_cache(maxsize=1)
def _session():
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1  # one thread beside training runs
    options.log_severity_level = 3
    return ort.InferenceSession(str(model_path()), options, providers=["CPUExecutionProvider"])


@contextmanager
def _quiet_import():
    """basic-pitch's __init__ logs a warning per missing backend (TF, CoreML, TFLite): silence it."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def _note_creation():
    with _quiet_import():
        from basic_pitch import note_creation
    return note_creation


def resample(wave, sample_rate: int, target: int) -> np.ndarray:
    """Polyphase resampling (scipy) of a mono float waveform; returns float32 (Chapter 7)."""
    wave = np.asarray(wave, dtype=np.float32).reshape(-1)
    if sample_rate == target:
        return wave
    from scipy.signal import resample_poly

    g = gcd(int(sample_rate), int(target))
    return resample_poly(wave, target // g, int(sample_rate) // g).astype(np.float32)


def posteriorgrams(wave, sample_rate: int) -> dict[str, np.ndarray]:
    """basic-pitch's activations for one mono clip: {"note": (F, 88), "onset": (F, 88), "contour": (F, 264)}.

    Frames are 256 samples at 22.05 kHz (~86 per second); note bins are the 88 piano keys (MIDI 21-108),
    contour bins thirds of a semitone. Windowing follows basic-pitch's own `run_inference`: 2 s windows
    overlapping by 30 frames, half of the overlap dropped at each side, so frame times line up with
    its `model_frames_to_time`.
    """
    audio = resample(wave, sample_rate, MODEL_SAMPLE_RATE)
    if not np.isfinite(audio).all():
        raise AudioError("waveform contains NaN or infinite samples")
    overlap = OVERLAP_FRAMES * FFT_HOP
    hop = WINDOW_SAMPLES - overlap
    length = len(audio)
    audio = np.concatenate([np.zeros(overlap // 2, np.float32), audio])
    windows = []
    for start in range(0, len(audio), hop):
        window = audio[start:start + WINDOW_SAMPLES]
        windows.append(np.pad(window, (0, WINDOW_SAMPLES - len(window))))
    batch = np.stack(windows)[:, :, None].astype(np.float32)
    outputs = _session().run(list(ONNX_NAMES.values()), {"serving_default_input_2:0": batch})
    n_keep = int(np.floor(length * (MODEL_SAMPLE_RATE // FFT_HOP) / MODEL_SAMPLE_RATE))  # as basic-pitch trims
    half = OVERLAP_FRAMES // 2
    result = {}
    for name, out in zip(ONNX_NAMES, outputs):
        out = out[:, half:-half, :]
        result[name] = out.reshape(-1, out.shape[-1])[:n_keep]
    return result


def transcribe(wave, sample_rate: int, onset_threshold: float = 0.5, frame_threshold: float = 0.3,
               min_note_ms: float = 127.7, melodia_trick: bool = True) -> np.ndarray:
    """Notes heard in one mono clip: (N, 3) float array of onset s, offset s, MIDI pitch, by onset (Chapter 7).

    Any sample rate (resampled to 22.05 kHz). Thresholds and minimum length are basic-pitch's defaults.
    """
    post = posteriorgrams(wave, sample_rate)
    nc = _note_creation()
    min_frames = int(np.round(min_note_ms / 1000 * (MODEL_SAMPLE_RATE / FFT_HOP)))
    events = nc.output_to_notes_polyphonic(post["note"].copy(), post["onset"].copy(), onset_thresh=onset_threshold,
                                           frame_thresh=frame_threshold, min_note_len=min_frames,
                                           infer_onsets=True, max_freq=None, min_freq=None,
                                           melodia_trick=melodia_trick)
    times = nc.model_frames_to_time(post["contour"].shape[0])
    notes = np.array([(times[s], times[e], p) for s, e, p, _ in events], dtype=np.float64).reshape(-1, 3)
    return notes[np.lexsort((notes[:, 2], notes[:, 0]))]


# ---------------------------------------------------------------------------------------------
# Scoring
# ---------------------------------------------------------------------------------------------
def _as_notes(notes) -> np.ndarray:
    array = np.asarray(notes, dtype=np.float64)
    return np.zeros((0, 3)) if array.size == 0 else array.reshape(-1, array.shape[-1])[:, :3]


def note_f1(reference, estimate, onset_tolerance: float = 0.05, octave_invariant: bool = False) -> dict:
    """Note precision, recall and F1 with onset-only matching (mir_eval) (Chapter 7).

    A note counts as found when an estimated note has the same pitch (within 50 cents) and an onset
    within `onset_tolerance` seconds (50 ms, mir_eval's default); offsets are ignored, since a synth's
    release and a transcriber's note-off rarely agree. Each note matches at most once. With
    `octave_invariant`, pitches are folded to one octave first (a bass heard an octave up still counts).
    Both lists empty gives 1.0 (nothing to find, nothing found); one empty gives 0.0.
    """
    ref, est = _as_notes(reference), _as_notes(estimate)
    if len(ref) == 0 or len(est) == 0:
        value = 1.0 if len(ref) == len(est) else 0.0
        return {"precision": value, "recall": value, "f1": value, "reference": len(ref), "estimate": len(est)}
    from mir_eval.transcription import precision_recall_f1_overlap

    def prepare(notes):
        pitch = notes[:, 2] % 12 + 60 if octave_invariant else notes[:, 2]
        intervals = np.stack([notes[:, 0], np.maximum(notes[:, 1], notes[:, 0] + 1e-3)], axis=1)
        return intervals, 440.0 * 2.0 ** ((pitch - 69.0) / 12.0)

    (ri, rp), (ei, ep) = prepare(ref), prepare(est)
    p, r, f, _ = precision_recall_f1_overlap(ri, rp, ei, ep, onset_tolerance=onset_tolerance, offset_ratio=None)
    return {"precision": float(p), "recall": float(r), "f1": float(f), "reference": len(ref), "estimate": len(est)}


HEARD_KINDS = ("found", "fragment", "octave or fifth", "other")


def heard_note_kinds(reference, estimate, onset_tolerance: float = 0.05) -> dict[str, int]:
    """What each heard note is, against the true notes (Chapter 3): a count per kind in `HEARD_KINDS`.

    found: a true note of the same pitch starts within `onset_tolerance` (what note F1 rewards, though F1 also
    matches each true note only once);
    fragment: no such onset, but a true note of that pitch is sounding (a note heard twice);
    octave or fifth: a true note sounding 7, 12, 19 or 24 semitones below or above (a harmonic heard as a note);
    other: none of these. Pitches are rounded to semitones.
    """
    ref, est = _as_notes(reference), _as_notes(estimate)
    counts = dict.fromkeys(HEARD_KINDS, 0)
    for onset, _, pitch in est:
        same = ref[np.round(ref[:, 2]) == round(pitch)] if len(ref) else ref
        sounding = ref[(ref[:, 0] - onset_tolerance <= onset) & (onset <= ref[:, 1])] if len(ref) else ref
        if len(same) and np.any(np.abs(same[:, 0] - onset) <= onset_tolerance):
            counts["found"] += 1
        elif np.any(np.round(sounding[:, 2]) == round(pitch)):
            counts["fragment"] += 1
        elif np.any(np.isin(np.abs(np.round(sounding[:, 2]) - round(pitch)), (7, 12, 19, 24))):
            counts["octave or fifth"] += 1
        else:
            counts["other"] += 1
    return counts


# ---------------------------------------------------------------------------------------------
# SynthCaps' true notes
# ---------------------------------------------------------------------------------------------
def synthcaps_parts(dataset_dir, clip: dict) -> tuple[dict, list[dict], dict]:
    """Re-derive the parts FluidSynth rendered for one SynthCaps clip (Chapter 7).

    `dataset_dir` is the saved set (its `config.json` holds the generator settings: seed, clip length,
    clip count) and `clip` a row of `labels_from_dir` (source_id and clip_id are what is used). Returns
    (variant, parts, config): `parts` as `render.arrange` gives them (melody, harmony, bass, then drums
    when they play). Raises ValueError when the replayed choices disagree with the clip's labels (data
    made by another generator version).
    """
    from ..data import render, scores, synthcaps

    cfg = json.loads((Path(dataset_dir) / "config.json").read_text())
    if cfg.get("generator_version") != synthcaps.GENERATOR_VERSION:
        raise ValueError(f"{dataset_dir} was made by SynthCaps generator {cfg.get('generator_version')}, "
                         f"this code replays version {synthcaps.GENERATOR_VERSION}")
    candidates, _ = synthcaps._candidates(cfg)  # the same seeded list of scores the generator walked
    if clip["source_id"] not in candidates:
        raise ValueError(f"{clip['source_id']} is not among the scores of this data set's config")
    index, variant_no = candidates.index(clip["source_id"]), int(clip["clip_id"].rsplit("-", 1)[1])
    score = scores.parse_score(clip["source_id"])
    rng = np.random.default_rng([cfg["seed"], index, variant_no])
    variant = synthcaps.sample_variant(score, cfg["clip_seconds"], rng)
    parts = render.arrange(score, variant, cfg["clip_seconds"], rng)
    for key in ("style", "tempo_bpm", "mode", "drums", "start_bar"):
        if key in clip and clip[key] != variant[key]:
            raise ValueError(f"{clip['clip_id']}: replayed {key}={variant[key]!r} but the label says {clip[key]!r}")
    if "programs" in clip and dict(clip["programs"]) != variant["programs"]:
        raise ValueError(f"{clip['clip_id']}: replayed programs {variant['programs']} but the labels say {clip['programs']}")
    return variant, parts, cfg


def synthcaps_notes(dataset_dir, clip: dict, roles: Sequence[str] = ROLES) -> np.ndarray:
    """The pitched notes a SynthCaps clip plays: (N, 3) onset s, offset s, MIDI pitch, by onset (Chapter 7).

    Drums are left out (they have no pitch); `roles` picks melody / harmony / bass (e.g. ("melody",) for
    the tune alone). Notes are those that start inside the clip, their offsets cut at its end; a note
    struck twice at once by two roles (same pitch, same onset) is kept once, as the ear hears it.
    """
    _, parts, cfg = synthcaps_parts(dataset_dir, clip)
    unknown = set(roles) - set(ROLES)
    if unknown:
        raise ValueError(f"unknown roles {sorted(unknown)}: choose from {ROLES}")
    length = float(cfg["clip_seconds"])
    rows = [part["notes"][:, :3] for role, part in zip(ROLES, parts) if role in roles and not part["is_drum"]]
    notes = np.concatenate(rows) if rows else np.zeros((0, 3))
    notes = notes[notes[:, 0] < length].copy()
    notes[:, 1] = np.minimum(np.maximum(notes[:, 1], notes[:, 0] + 0.02), length)  # as render() sends them
    notes = np.unique(np.round(notes, 6), axis=0)
    _, first = np.unique(notes[:, [0, 2]], axis=0, return_index=True)
    notes = notes[np.sort(first)]
    return notes[np.lexsort((notes[:, 2], notes[:, 0]))]


def score_against_synthcaps(waves, sample_rate: int, dataset_dir, clips: Sequence[dict], roles: Sequence[str] = ROLES,
                            octave_invariant: bool = False) -> list[dict]:
    """Note F1 of each clip's transcription against its SynthCaps score (originals, codec output, ...).

    `waves[i]` is the audio standing for `clips[i]` (a label row of `labels_from_dir`). Returns one
    `note_f1` dict per clip, with its clip_id (Chapter 7; issue "an independent ear" for Chapter 3).
    """
    out = []
    for wave, clip in zip(waves, clips):
        truth = synthcaps_notes(dataset_dir, clip, roles)
        heard = transcribe(np.asarray(wave, np.float32), sample_rate)
        out.append({"clip_id": clip["clip_id"], **note_f1(truth, heard, octave_invariant=octave_invariant)})
    return out


def main(argv=None) -> None:
    """`python -m musiclm_mini.evaluation.transcribe --data data/synthcaps-tiny --split test --clips 8`:
    note F1 of basic-pitch on real SynthCaps clips against their true notes (all roles, melody only)."""
    import argparse

    from ..data import synthcaps

    parser = argparse.ArgumentParser(description="Note F1 of the transcriber on real SynthCaps clips.")
    parser.add_argument("--data", default="data/synthcaps-tiny")
    parser.add_argument("--split", default="test")
    parser.add_argument("--clips", type=int, default=8, help="the first N clips of the split")
    args = parser.parse_args(argv)
    rate = json.loads((Path(args.data) / "config.json").read_text())["sample_rate"]
    clips = synthcaps.labels_from_dir(args.data, args.split)[: args.clips]
    waves = synthcaps.waveforms_from_dir(args.data, args.split)[: args.clips].numpy()
    rows = {name: score_against_synthcaps(waves, rate, args.data, clips, roles, octave)
            for name, roles, octave in (("all", ROLES, False), ("all, octave-free", ROLES, True),
                                        ("melody recall", ("melody",), False))}
    print(f"{'clip':16s} {'style':13s} {'drums':5s} {'F1 all':>7s} {'F1 8va-free':>11s} {'melody recall':>13s}")
    for k, clip in enumerate(clips):
        print(f"{clip['clip_id']:16s} {clip['style']:13s} {str(clip['drums']):5s} {rows['all'][k]['f1']:7.3f} "
              f"{rows['all, octave-free'][k]['f1']:11.3f} {rows['melody recall'][k]['recall']:13.3f}")
    means = [np.mean([r["f1"] for r in rows["all"]]), np.mean([r["f1"] for r in rows["all, octave-free"]]),
             np.mean([r["recall"] for r in rows["melody recall"]])]
    print(f"{'mean':36s} {means[0]:7.3f} {means[1]:11.3f} {means[2]:13.3f}")


if __name__ == "__main__":
    main()
