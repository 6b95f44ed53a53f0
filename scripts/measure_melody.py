"""Does music generated from a hum follow it? Melody following and text adherence on held-out hums (Chapter 8).

For the first `--hums` held-out melodies of Chapter 8's melody set (one melody per score first, so that the
hums are as independent as the split allows), generates one clip per hum with
`MusicLM.generate(caption, seconds, melody=hum)` and measures (`evaluation/melody_following.py`) each clip's
chroma similarity to its own hum against the other hums: a paired sign-flip permutation test and
which-hum-is-it retrieval against chance. Two baselines get the same measure:

    real arrangement of the hum's melody   the melody set's full arrangement of the same melody: the ceiling
    generated from the caption alone       the same captions and seeds, no melody: what the measure gives
                                           music that never heard the hum (it should be chance)

and MuLan adherence to the text (`musiclm.audio_adherence`, Chapter 6: own caption vs the other captions)
of the clips generated with and without the hum: following the tune should not cost the text.

Captions: the SynthCaps captions of the same split, in order, caption i with hum i (cycled if there are
more hums than captions). Melody-set clips have no caption of their own; these are held-out captions
the stages never trained on, the ones Chapter 6 measures adherence with (so the two MCCs compare), all
different (so own vs other captions is a fair test), and drawn independently of the hums (so the
no-melody clips cannot follow their hum through their caption). A caption's key and tempo may disagree
with its hum's, as a reader's would; the similarity ignores key.

The melody stage is either component (`--melody-stage` names its folder): the melody-semantic stage, or the
melody-coarse stage in either representation (its config.json says which; `melody/generation.py`).

Choose settings on the validation split (the default), record the test split once:

    python scripts/measure_melody.py --split test --hums 32 --seconds 10 --threads 1 \
        --melody-stage runs/melody-semantic-stage-tiny --json book/data/melody-following-tiny.json

With --json it writes every figure printed, the command, the settings, the fingerprints of the components
measured, CPU and wall seconds, and how many times it has measured the test split (carried over from the
JSON it replaces).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from musiclm_mini import components
from musiclm_mini.errors import CheckpointError
from musiclm_mini.files import atomic_write
from musiclm_mini.evaluation.melody_following import (FRAME_SECONDS, MAX_OFFSET_SECONDS, METHODS, chromagrams,
                                                      following_statistics, similarity_matrix)
from musiclm_mini.melody.generation import melody_parts
from musiclm_mini.musiclm import MusicLM, audio_adherence

ROWS = ("generated from the hum and a caption", "real arrangement of the hum's melody (ceiling)",
        "generated from the caption alone (no melody)")
TEXT_ROWS = (ROWS[0], ROWS[2])


def pick_melodies(labels: list[dict], n: int) -> list[tuple[int, int]]:
    """(hum row, arrangement row) of up to `n` melodies: every score's first melody, then its second, ..."""
    rows: dict[str, dict[str, dict[str, int]]] = {}  # score -> melody -> variant -> row
    for i, lab in enumerate(labels):
        rows.setdefault(lab["source_id"], {}).setdefault(lab["melody_id"], {})[lab["variant"]] = i
    per_score = [[(m["hum"], m["arrangement"]) for m in melodies.values() if {"hum", "arrangement"} <= set(m)]
                 for melodies in rows.values()]
    picked = []
    for r in range(max(map(len, per_score), default=0)):  # round r: the r-th melody of every score that has one
        picked += [pairs[r] for pairs in per_score if r < len(pairs)]
    return picked[:n]


def held_out_melodies(preset, split: str, n: int) -> tuple[torch.Tensor, torch.Tensor, list[dict], int]:
    """Hums (n, T) and the arrangements of the same melodies (n, T), floats, their hum labels, and their rate."""
    from musiclm_mini.data.melody_pairs import load_melody_split

    pcm, labels = load_melody_split(preset, split, limit=n)  # the first n scores: rendered in seconds if not on disk
    picked = pick_melodies(labels, n)
    if len(picked) < n:
        pcm, labels = load_melody_split(preset, split)
        picked = pick_melodies(labels, n)
    if len(picked) < n:
        raise SystemExit(f"error: the {split} melody set has {len(picked)} melodies with a hum; use --hums {len(picked)}")
    wave = lambda rows: torch.as_tensor(np.stack([pcm[r] for r in rows]).astype(np.float32) / 32767)  # noqa: E731
    return (wave([h for h, _ in picked]), wave([a for _, a in picked]), [labels[h] for h, _ in picked],
            preset.data.sample_rate)


def held_out_captions(preset, split: str, n: int) -> list[str]:
    """The split's SynthCaps captions in order, `n` of them (cycled if the split has fewer)."""
    from musiclm_mini.data.synthcaps import split_labels

    captions = [lab["caption"] for lab in split_labels(preset, split)]
    if len(captions) < n:
        print(f"note: {split} has {len(captions)} captions for {n} hums: captions repeat", file=sys.stderr)
    return [captions[i % len(captions)] for i in range(n)]


def following(clips: torch.Tensor, rate: int, hum_chroma: np.ndarray, args) -> dict:
    """Clips (N, T) vs the hums' chromas (N, 12, F) -> `following_statistics` with per-clip lists."""
    sim = similarity_matrix(chromagrams(clips, rate, args.method), hum_chroma,
                            round(MAX_OFFSET_SECONDS / FRAME_SECONDS))  # (N, N)
    return following_statistics(sim, args.permutations, args.seed, per_clip=True)


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--split", default="validation", choices=["validation", "test"],
                        help="held-out hums: choose settings on validation, record test")
    parser.add_argument("--hums", type=int, default=32, help="how many held-out hums (one clip each)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each clip (the hums are 10 s)")
    parser.add_argument("--seed", type=int, default=0, help="clip i uses seed + i, with and without its hum")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--melody-stage", default=None,
                        help="a melody-semantic or melody-coarse stage's folder (default: runs/melody-semantic-stage-<preset>)")
    parser.add_argument("--checkpoints", default=None, help="folder holding the other parts (default: the shipped ones)")
    parser.add_argument("--guidance", type=float, default=None, help="classifier-free guidance (default: the preset's)")
    parser.add_argument("--method", default="pitch", choices=METHODS, help="chroma: the transcriber's, or librosa's CQT")
    parser.add_argument("--permutations", type=int, default=10_000)
    parser.add_argument("--json", default=None, help="write the figures to this file")
    args = parser.parse_args(argv)
    if args.hums < 2 or args.seconds < 4:
        parser.error("need --hums 2 or more and --seconds 4 or more (one melody window)")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse(argv)
    torch.set_num_threads(args.threads)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    model = MusicLM.from_pretrained(args.preset, args.checkpoints)
    try:
        parts = melody_parts(model, args.melody_stage)
    except CheckpointError as exc:  # no stage, or one trained on other tokenizers: one line
        raise SystemExit(f"error: {exc}") from exc
    hums, arrangements, labels, rate = held_out_melodies(model.preset, args.split, args.hums)
    T = min(hums.shape[1], round(args.seconds * rate))
    hums, arrangements = hums[:, :T], arrangements[:, :T]  # (N, T): the span a clip of `seconds` follows
    captions = held_out_captions(model.preset, args.split, args.hums)
    timings, clips = {}, {}
    for name, melody in ((ROWS[0], True), (ROWS[2], False)):
        start, waves = time.perf_counter(), []
        for i, (caption, hum) in enumerate(zip(captions, hums)):
            extra = dict(melody=hum, melody_sample_rate=rate, melody_stage=args.melody_stage) if melody else {}
            waves.append(model.generate(caption, args.seconds, seed=args.seed + i, guidance=args.guidance, **extra))
            print(f"\r{name}: {i + 1}/{len(captions)}", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)
        clips[name] = torch.stack(waves)  # (N, T')
        timings[name] = round(time.perf_counter() - start, 1)
    start = time.perf_counter()
    hum_chroma = chromagrams(hums, rate, args.method)  # (N, 12, F)
    rows = {ROWS[0]: following(clips[ROWS[0]], model.sample_rate, hum_chroma, args),
            ROWS[1]: following(arrangements, rate, hum_chroma, args),
            ROWS[2]: following(clips[ROWS[2]], model.sample_rate, hum_chroma, args)}
    text = {name: audio_adherence(model.mulan, clips[name].to(model.device), captions, args.permutations, args.seed,
                                  per_caption=True) for name in TEXT_ROWS}
    timings["measures"] = round(time.perf_counter() - start, 1)
    report(args, rows, text)
    res = {"following": rows, "text_adherence": text, "timings": timings}
    if args.json:
        write_json(Path(args.json), args, model, parts, res, labels, captions, cpu0, wall0, argv)
    return res


def report(args, rows: dict, text: dict) -> None:
    n = next(iter(rows.values()))["clips"]
    print(f"{n} {args.split} hums, {args.seconds:g} s clips, seed {args.seed}, {args.method} chroma")
    print(f"melody following: similarity to own hum vs to the other hums (chance top-1 {1 / n:.3f})")
    for name, r in rows.items():
        print(f"  {name:48s} own {r['similarity']:.3f}  other {r['shuffled']:.3f}  difference {r['difference']:+.3f}  "
              f"p = {r['p_permutation']:.4g} (Wilcoxon {r['p_wilcoxon']:.4g})  top-1 {r['retrieval_top1']:.3f}")
    print("text adherence: MuLan similarity to own caption (MCC) vs to the other captions")
    for name, r in text.items():
        print(f"  {name:48s} MCC {r['mcc']:.4f}  other {r['shuffled']:.4f}  p = {r['p_permutation']:.4g}  "
              f"top-1 {r['retrieval_top1']:.3f}")


def write_json(path: Path, args, model, parts, res: dict, labels, captions, cpu0: float, wall0: float, argv) -> None:
    """Every figure printed, with what is needed to trust and regenerate them (as scripts/measure_adherence.py)."""
    previous = {}
    if path.exists():
        try:
            previous = json.loads(path.read_text())
        except ValueError:
            previous = {}
    p = model.preset
    result = {
        "command": "python scripts/measure_melody.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "settings": {"preset": args.preset, "split": args.split, "hums": args.hums, "seconds": args.seconds,
                     "seed": args.seed, "threads": args.threads, "method": args.method,
                     "frame_seconds": FRAME_SECONDS, "max_offset_seconds": MAX_OFFSET_SECONDS,
                     "permutations": args.permutations, "checkpoints": args.checkpoints,
                     "melody_stage": str(parts.folder), "melody_stage_component": parts.component,
                     "melody_tokens": parts.melody_tokens, "guidance": args.guidance,
                     "preset_guidance": {s: getattr(p, f"{s}_stage").guidance for s in ("semantic", "coarse")},
                     "temperatures": [getattr(p, f"{s}_stage").temperature for s in ("semantic", "coarse", "fine")]},
        "fingerprints": {**model.fingerprints(),
                         **({} if parts.embedder is None else {"melody-embedder": components.fingerprint(parts.embedder)}),
                         parts.component: components.fingerprint(parts.transformer)},  # melody-semantic or -coarse
        "hums": len(labels), "melody_ids": [lab["melody_id"] for lab in labels], "captions": captions,
        "following": res["following"], "text_adherence": res["text_adherence"], "timings": res["timings"],
        # how often this command has measured the test split (carried over from the file it replaces)
        "test_split_runs": previous.get("test_split_runs", 0) + (args.split == "test"),
        "cpu_seconds": round(time.process_time() - cpu0, 1), "wall_seconds": round(time.perf_counter() - wall0, 1),
    }
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(result, indent=1) + "\n"))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
