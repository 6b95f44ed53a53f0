"""Command line: `python -m musiclm_mini generate "a calming violin melody" --seconds 10 -o out.wav` (Chapters 6, 9).

Paper: MusicLM Sec. 3.2 (generation from a text prompt) and Sec. 6 (long generation, story mode).

    python -m musiclm_mini generate TEXT [--seconds 10] [-o out.wav] [--preset tiny] [--seed 0]
                                         [--guidance W] [--checkpoints DIR] [--device cpu] [--quiet]
    python -m musiclm_mini generate TEXT --melody hum.wav [--melody-stage DIR] [same options]   # follow a tune (Ch. 8)
    python -m musiclm_mini story TEXT TEXT ... [--seconds-each S] [-o story.wav] [same options]

Shows one progress bar per stage. Bad input (empty text, no texts for a story, a duration or a story's
total that is not in (0, 300] s, an
unknown preset in MUSICLM_PRESET, an output file that cannot be written, `--device cuda` without CUDA,
a missing checkpoint or one made for another preset, a --melody file that is missing, unreadable, silent, clipped
or shorter than one 4 s melody window) prints one line `error: ...` and exits with 2.
Training has its own entry point: `python -m musiclm_mini.train <component>`.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .config import PRESET_NAMES, default_preset_name, get_preset
from .errors import MusicLMError


def build_parser() -> argparse.ArgumentParser:
    """The `python -m musiclm_mini` argument parser (Chapter 6)."""
    parser = argparse.ArgumentParser(prog="python -m musiclm_mini", description="MusicLM-mini: text to music.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    gen = sub.add_parser("generate", help="generate music from a text description")
    gen.add_argument("text", help="what the music should sound like")
    gen.add_argument("--seconds", type=float, default=10.0, help="duration in seconds (default 10, at most 300)")
    gen.add_argument("--melody", type=Path, default=None,
                     help="a recording of the tune to follow: hummed, sung, whistled or played, any WAV, at least 4 s "
                          "(looped if shorter than --seconds) (Chapter 8)")
    gen.add_argument("--melody-stage", type=Path, default=None,
                     help="the melody-semantic-stage folder (default: runs/melody-semantic-stage-<preset>, else the shipped one)")
    story = sub.add_parser("story", help="story mode: one piece whose text changes every --seconds-each seconds")
    story.add_argument("texts", nargs="*", help="the texts, in order")
    story.add_argument("--seconds-each", type=float, default=None,
                       help="seconds per text (default: the preset's story_change_seconds; total at most 300)")
    for cmd, out in ((gen, "out.wav"), (story, "story.wav")):
        cmd.add_argument("-o", "--output", type=Path, default=Path(out), help=f"WAV file to write (default {out})")
        cmd.add_argument("--preset", choices=PRESET_NAMES, default=None,
                         help="model sizes (default: $MUSICLM_PRESET, else the preset whose checkpoints ship: tiny)")
        cmd.add_argument("--seed", type=int, default=0, help="same seed, same music")
        cmd.add_argument("--guidance", type=float, default=None,
                         help="classifier-free guidance scale, 1 = none as in the paper (default: the preset's)")
        cmd.add_argument("--checkpoints", type=Path, default=None,
                         help="folder holding <component>-<preset>/ for codec, kmeans, mulan and the three stages "
                              "(default: the shipped musiclm_mini/checkpoints)")
        cmd.add_argument("--device", default="cpu", help="cpu, cuda, ...")
        cmd.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def check_request(args: argparse.Namespace) -> None:
    """Refuse bad text, durations, presets, devices and output files before any model is loaded (Chapter 6)."""
    import os

    import torch

    from .musiclm import check_seconds, check_story, check_text

    preset = get_preset(args.preset or default_preset_name())  # a bad MUSICLM_PRESET: ValueError
    args.preset = preset.name
    if args.command == "story":
        each = preset.long.story_change_seconds if args.seconds_each is None else args.seconds_each
        args.segments = [(text, each) for text in args.texts]
        check_story(args.segments)
        args.seconds = len(args.texts) * each
    else:
        check_text(args.text)
        check_seconds(args.seconds)
        if args.melody is not None:  # missing, unreadable, silent, clipped or too short: refused before any model loads
            from .melody.generation import load_melody

            args.melody_wave = load_melody(args.melody, preset)
    if args.guidance is not None and not args.guidance >= 0:  # also refuses NaN
        raise ValueError(f"--guidance must be >= 0 (1 = no guidance), got {args.guidance:g}")
    if args.output.suffix.lower() != ".wav":
        raise ValueError(f"the output must be a .wav file, got {str(args.output)!r}")
    folder = args.output.resolve().parent
    if not folder.is_dir() or not os.access(folder, os.W_OK) or (args.output.exists() and not os.access(args.output, os.W_OK)):
        raise ValueError(f"cannot write {args.output}: {folder} is not a writable folder")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {args.device}: CUDA is not available on this machine (use --device cpu)")


def generate_command(args: argparse.Namespace) -> int:
    """Load the models, generate (one text, or a story), write the WAV (Chapters 6 and 9)."""
    from .audio import save_audio
    from .musiclm import MusicLM

    start = time.perf_counter()
    melody = {}
    if getattr(args, "melody_wave", None) is not None:  # Chapter 8: find the melody stage before loading the rest
        from .melody.generation import find_melody_stage

        melody = {"melody": args.melody_wave, "melody_sample_rate": get_preset(args.preset).codec.sample_rate,
                  "melody_stage": find_melody_stage(args.preset, args.melody_stage, args.checkpoints)}
    model = MusicLM.from_pretrained(args.preset, args.checkpoints, args.device)
    if args.command == "story":
        wave = model.story(args.segments, seed=args.seed, progress=not args.quiet, guidance=args.guidance)
    else:
        wave = model.generate(args.text, args.seconds, seed=args.seed, progress=not args.quiet, guidance=args.guidance,
                              **melody)
    save_audio(args.output, wave, model.sample_rate)
    if not args.quiet:
        print(f"wrote {args.output} ({args.seconds:g} s) in {time.perf_counter() - start:.1f} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status: 0 on success, 2 on bad input (Chapter 6)."""
    args = build_parser().parse_args(argv)
    try:
        check_request(args)  # bad text (TextError), duration or file name: ValueErrors
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        return generate_command(args)
    except (MusicLMError, OSError) as exc:  # CheckpointError while loading, AudioError or OSError while writing
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
