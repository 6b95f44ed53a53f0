"""The training campaign: one command that resumes, judges on validation and ships (Chapters 3 and 6).

Not in the paper: how a laptop trains the book's models over many sessions.

    python -m musiclm_mini.train campaign --preset tiny                        # every leg, in order
    python -m musiclm_mini.train campaign --preset tiny --only spectral-codec

A leg is a component, the total steps of its run (its cosine schedule) and a chunk. For each chunk:

  1. train: resume `runs/<component>-<preset>` when it holds a checkpoint; else warm-start from the
     shipped weights (`--init`) when they have the run's config; else start from scratch. Pause at the
     chunk's end (`--stop-at`), checkpointed, so the schedule stays the whole leg's;
  2. judge: the leg's validation figure, measured by the same function on the run and on the shipped
     weights (never on the test split: that is looked at once, by the measuring scripts);
  3. ship the run only when it is better, in float16, with `record.json`: the command, steps, CPU hours
     and both sets of figures.

Every judgement is appended to `runs/campaign.jsonl`. Kill it at any time: what is lost is the steps
since the last checkpoint (a few minutes), and the next call carries on.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from .. import components
from ..checkpoint import load_checkpoint
from ..errors import CheckpointError
from ..files import atomic_write


@dataclass(frozen=True)
class Leg:
    """One component's part of the campaign (Chapter 3)."""

    component: str
    steps: int  # total steps of the run: its learning-rate schedule
    chunk: int  # steps between judgements (a multiple of the recipe's checkpoint interval)
    figure: str  # the validation figure that decides whether the run ships
    higher_is_better: bool
    judge: str  # "module:function(model, preset) -> dict of validation figures"


LEGS = {
    "tiny": (
        # Chapter 3: note F1 is the figure the shipped codec misses most (Opus 12 kbps: 0.39 on test).
        Leg("spectral-codec", 12_000, 1_000, "note_f1", True, "musiclm_mini.train.spectral_codec:judge_codec"),
    ),
}


def is_better(leg: Leg, new: float, old: float | None) -> bool:
    """Whether figure `new` beats `old` (None: nothing comparable is shipped) (Chapter 3)."""
    return old is None or (new > old if leg.higher_is_better else new < old)


def start_flags(run_dir: Path, shipped: Path, config: dict) -> list[str]:
    """How the next chunk starts: --resume, --init <shipped> (same config), or nothing (from scratch)."""
    if (run_dir / "model.safetensors").exists():
        return ["--resume"]
    try:
        load_checkpoint(shipped, config, with_train_state=False)
        return ["--init", str(shipped)]
    except CheckpointError:
        return []


def run_step(run_dir: Path) -> tuple[int, float]:
    """(step, CPU seconds) of the checkpoint in `run_dir`, (0, 0) when there is none."""
    if not (run_dir / "model.safetensors").exists():
        return 0, 0.0
    state = load_checkpoint(run_dir).train_state or {}
    return int(state.get("step", 0)), float(state.get("elapsed_seconds", 0.0))


def shipped_figures(leg: Leg, preset, shipped: Path, sources) -> dict | None:
    """The judge's figures for the shipped weights; None when none are shipped or they no longer load."""
    try:
        model = components.load(leg.component, preset.name, shipped, sources=sources)
    except CheckpointError:
        return None
    return components.resolve(leg.judge)(model, preset)


def campaign_leg(leg: Leg, preset, train: Callable[[list[str]], object], runs: Path = Path("runs"),
                 root: Path | None = None, log: Path | None = None) -> None:
    """Train, judge and maybe ship `leg` chunk by chunk until its run reaches `leg.steps` (Chapter 3).

    `train(argv)` runs one training command line (`python -m musiclm_mini.train` passes its own).
    """
    from .ship import ship

    run_dir, shipped = runs / f"{leg.component}-{preset.name}", components.checkpoint_dir(leg.component, preset.name, root)
    log = log or runs / "campaign.jsonl"
    spec = components.component(leg.component)
    sources = components.shipped_fingerprints(preset.name, root) if spec.sources else None
    while (step := run_step(run_dir)[0]) < leg.steps:
        flags = start_flags(run_dir, shipped, _run_config(leg, preset, sources))
        stop = min(leg.steps, (step // leg.chunk + 1) * leg.chunk)
        argv = [leg.component, "--preset", preset.name, "--steps", str(leg.steps), "--stop-at", str(stop),
                "--out", str(run_dir), "--quiet", *flags]
        if root is not None:
            argv += ["--checkpoints", str(root)]
        train(argv)
        step, cpu_seconds = run_step(run_dir)
        new = components.resolve(leg.judge)(components.load(leg.component, path=run_dir, sources=sources), preset)
        old = shipped_figures(leg, preset, shipped, sources)
        better = is_better(leg, new[leg.figure], None if old is None else old[leg.figure])
        entry = {"time": time.strftime("%Y-%m-%d %H:%M:%S"), "component": leg.component, "step": step,
                 "cpu_hours": cpu_seconds / 3600, "started": " ".join(flags) or "from scratch",
                 "validation": new, "shipped_validation": old, "shipped": better, "leg": asdict(leg)}
        if better:
            record = {"command": f"python -m musiclm_mini.train campaign --preset {preset.name} --only {leg.component}",
                      "chunk_command": "python -m musiclm_mini.train " + " ".join(argv), **entry}
            atomic_write(run_dir / "record.json", lambda p: p.write_text(json.dumps(record, indent=1) + "\n"))
            dest = ship(leg.component, run_dir, preset.name, root, measure=False)
            atomic_write(dest / "metrics.json",
                         lambda p: p.write_text(json.dumps({"shipped": {"validation": new}}, indent=1) + "\n"))
        with open(log, "a") as f:
            f.write(json.dumps(entry) + "\n")
        print(f"[campaign] {leg.component} step {step}: {leg.figure} {new[leg.figure]:.4g} vs shipped "
              f"{'-' if old is None else format(old[leg.figure], '.4g')}: {'shipped' if better else 'kept the shipped'}",
              flush=True)


def _run_config(leg: Leg, preset, sources) -> dict:
    """The checkpoint config a run of `leg` writes, to test whether the shipped weights can seed it."""
    return components.checkpoint_config(leg.component, components.component(leg.component).config_for(preset),
                                        preset.name, sources)


def main(preset_name: str, only: list[str] | None, train: Callable[[list[str]], object]) -> None:
    """`python -m musiclm_mini.train campaign`: every leg of the preset (or those named), in order."""
    from ..config import get_preset

    preset = get_preset(preset_name)
    legs = [leg for leg in LEGS.get(preset.name, ()) if not only or leg.component in only]
    if not legs:
        raise ValueError(f"no campaign leg for preset {preset.name!r}" + (f" and {only}" if only else ""))
    for leg in legs:
        campaign_leg(leg, preset, train)
