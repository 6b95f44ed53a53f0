"""One training entry point for every component of the book (Chapters 3-6; MusicLM Sec. 4.1).

    python -m musiclm_mini.train <component> --preset tiny      # the recipe of the shipped checkpoint
    python -m musiclm_mini.train codec --preset tiny --steps 2 --out runs/smoke --set codec.channels=8
    python -m musiclm_mini.train ship codec --preset tiny       # runs/codec-tiny -> musiclm_mini/checkpoints
    python -m musiclm_mini.train campaign --preset tiny         # resume, judge on validation, ship if better
    torchrun --nproc_per_node 4 -m musiclm_mini.train codec --preset colab     # several GPUs (DDP)
    torchrun --nproc_per_node 8 -m musiclm_mini.train fine-stage --preset paper --parallel fsdp   # Chapter 11

Components are the ones of `components.COMPONENTS`, each with a trainer `(preset, args, runtime)` that
builds a `loop.Run` and calls `loop.fit`. A run writes `runs/<component>-<preset>` unless `--out` says
otherwise; `components.load(name, path=run_dir)` reads it back, `--set` overrides included. Flags
left out take the recipe of the shipped checkpoint (`recipes.py`), then the preset's `TrainConfig`.
Bad input (unknown preset in MUSICLM_PRESET, an unwritable `--out`, `--device cuda` without CUDA,
a missing checkpoint) prints one line `error: ...` and exits with 2.
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import sys
from pathlib import Path

import torch

from ..components import COMPONENTS, component, resolve
from ..config import PRESET_NAMES, Preset, default_preset_name, get_preset
from ..errors import MusicLMError
from .recipes import recipe
from .scaling import add_scaling_flags

FLAGS = {"steps": "steps", "batch_size": "batch_size", "lr": "learning_rate", "seed": "seed",
         "val_every": "val_every", "checkpoint_every": "checkpoint_every"}  # flag -> TrainConfig field


def override(obj, dotted: str, value):
    """A copy of a (nested) frozen dataclass with one field changed: ("codec.channels", 8) (Chapter 3)."""
    head, _, rest = dotted.partition(".")
    if not dataclasses.is_dataclass(obj) or head not in {f.name for f in dataclasses.fields(obj)}:
        raise ValueError(f"--set {dotted}: no field {head!r} in {type(obj).__name__}")
    new = override(getattr(obj, head), rest, value) if rest else value
    if isinstance(getattr(obj, head), tuple) and isinstance(new, list):
        new = tuple(new)
    return dataclasses.replace(obj, **{head: new})


def apply_recipe(args: argparse.Namespace) -> argparse.Namespace:
    """Fill the flags left out with the recipe of (component, preset) (Chapter 3)."""
    r = recipe(args.component, args.preset)
    for name in ("steps", "batch_size", "lr", "val_every", "checkpoint_every", "threads", "data"):
        if getattr(args, name) is None:
            setattr(args, name, getattr(r, name))
    args.set = [*r.set, *(args.set or [])]
    return args


def build_preset(args: argparse.Namespace) -> Preset:
    """The named preset with --set overrides and the common flags applied to its TrainConfig (Chapter 3)."""
    preset = get_preset(args.preset)
    for item in args.set or []:
        key, _, text = item.partition("=")
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text  # a bare string
        preset = override(preset, key.strip(), value)
    for flag, name in FLAGS.items():
        if getattr(args, flag, None) is not None:
            preset = override(preset, f"train.{name}", getattr(args, flag))
    return preset


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m musiclm_mini.train", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="component", required=True, metavar="COMPONENT")
    for name, spec in COMPONENTS.items():
        p = sub.add_parser(name, help=f"train the {name} (Chapter {spec.chapter})")
        p.add_argument("--preset", default=None, choices=PRESET_NAMES, help="model sizes (default: tiny on CPU)")
        p.add_argument("--steps", type=int, help="total optimisation steps (default: the recipe's, else the preset's)")
        p.add_argument("--batch-size", type=int, help="examples per step and per process")
        p.add_argument("--lr", type=float, help="peak learning rate")
        p.add_argument("--seed", type=int, help="seed of weights, data order and crops")
        p.add_argument("--val-every", type=int)
        p.add_argument("--checkpoint-every", type=int)
        p.add_argument("--out", type=Path, help="checkpoint directory (default runs/<component>-<preset>)")
        p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
        p.add_argument("--stop-at", type=int, default=None,
                       help="pause at this step (checkpointed); the schedule still runs to --steps")
        p.add_argument("--init", type=Path, default=None,
                       help="a fresh run starts from these weights (a checkpoint folder of the same config)")
        p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
        p.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
        p.add_argument("--data", default=None, help="synthcaps (default), synthcaps+extra (stages), synthcaps+codec (spectral codec), or sines "
                                                     "(all but mulan: a quick synthetic set)")
        p.add_argument("--quiet", action="store_true", help="no progress bar")
        p.add_argument("--checkpoints", type=Path, default=None,
                       help="where the components it reads are (default: the shipped musiclm_mini/checkpoints)")
        p.add_argument("--set", action="append", metavar="FIELD=VALUE",
                       help="override a preset field, e.g. --set codec.channels=8 (repeatable)")
        if name.endswith("-stage"):  # the Transformers: FSDP, bf16, accumulation (Chapter 11)
            add_scaling_flags(p)
        if name in ("spectral-codec", "magnitude-codec"):
            p.add_argument("--training", action="append", metavar="FIELD=VALUE",
                           help="override a training setting, e.g. --training weight_phase=0 (repeatable)")
    ship = sub.add_parser("ship", help="copy a finished run into the package (float16), check and measure it")
    ship.add_argument("name", choices=list(COMPONENTS), metavar="COMPONENT", help=", ".join(COMPONENTS))
    ship.add_argument("--preset", default=None, choices=PRESET_NAMES)
    ship.add_argument("--from", dest="source", type=Path, default=None, help="run folder (default runs/<component>-<preset>)")
    ship.add_argument("--checkpoints", type=Path, default=None,
                      help="folder to ship into (default: the package's musiclm_mini/checkpoints)")
    ship.add_argument("--device", default=None)
    campaign = sub.add_parser("campaign", help="resume every unfinished leg, judge on validation, ship what is better")
    campaign.add_argument("--preset", default=None, choices=PRESET_NAMES)
    campaign.add_argument("--only", nargs="+", default=None, metavar="COMPONENT", help="these legs only")
    campaign.add_argument("--device", default=None)
    return parser


def check_device(device: str | None) -> None:
    """A ValueError for a CUDA device on a machine without one (Chapter 3)."""
    if device is not None and device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: CUDA is not available on this machine (use --device cpu)")


def check_writable(folder: Path) -> None:
    """An OSError-free promise that `folder` can hold a checkpoint, else a ValueError naming it (Chapter 3)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise ValueError(f"cannot write to {folder}: {exc.strerror or exc}") from exc


def run(args: argparse.Namespace):
    """Train one component (or ship one) as the parsed command line says (Chapter 3)."""
    from .distributed import init_runtime, shutdown_runtime

    args.preset = get_preset(args.preset or default_preset_name()).name  # a bad MUSICLM_PRESET: ValueError
    check_device(args.device)
    if args.component == "ship":
        from .ship import ship

        source = args.source or Path("runs") / f"{args.name}-{args.preset}"
        print("shipped to", ship(args.name, source, args.preset, args.checkpoints))
        return None
    if args.component == "campaign":
        from .campaign import main as campaign

        return campaign(args.preset, args.only, train=lambda argv: run(build_parser().parse_args(argv)))
    args = apply_recipe(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    preset = build_preset(args)
    args.out = args.out or Path("runs") / f"{args.component}-{preset.name}"
    check_writable(args.out)
    trainer = resolve(component(args.component).trainer)
    runtime = init_runtime(args.device)
    try:
        return trainer(preset, args, runtime)
    finally:
        shutdown_runtime(runtime)


def main(argv: list[str] | None = None):
    """Parse the command line and run it; exits with 2 and one `error:` line on bad input (Chapter 3)."""
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except (ValueError, MusicLMError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main(sys.argv[1:])
