"""The recipes of the shipped checkpoints: what `python -m musiclm_mini.train <component>` runs (Chapters 3-6).

Paper: MusicLM Sec. 4.1-4.2 for the paper's own training settings.

A recipe is the command-line settings that made a shipped checkpoint, beyond its preset: so the
command in each checkpoint's README is just `python -m musiclm_mini.train <component> --preset tiny`.
Flags given on the command line win over the recipe; `--set` overrides are added after the recipe's.
Components and presets without a recipe train with the preset's `TrainConfig` and SynthCaps.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Recipe:
    """Command-line defaults of one (component, preset); None = the preset's own value."""

    steps: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    val_every: int | None = None
    checkpoint_every: int | None = None
    threads: int | None = None
    data: str = "synthcaps"
    set: tuple[str, ...] = ()  # --set FIELD=VALUE overrides


RECIPES: dict[tuple[str, str], Recipe] = {
    # Chapter 3: 2000 steps, then resumed to a 3500-step schedule (see codec-tiny/README.md).
    ("codec", "tiny"): Recipe(steps=3500, batch_size=8, val_every=250, checkpoint_every=100, threads=1),
    # Chapter 3: the CPU codec, on SynthCaps' training clips plus 1,200 clips of 300 scores SynthCaps never uses.
    ("spectral-codec", "tiny"): Recipe(steps=4500, batch_size=8, lr=5e-4, val_every=250, checkpoint_every=250,
                                       threads=1, data="synthcaps+codec"),
    # Chapter 3's next codec: the spectral codec's recipe, over 1920-sample windows with a magnitude decoder.
    ("magnitude-codec", "tiny"): Recipe(steps=12000, batch_size=8, lr=5e-4, val_every=250, checkpoint_every=250,
                                        threads=1, data="synthcaps+codec"),
    # Chapter 4: the preset's 2000 AdamW steps; then k-means and the MFCC baseline on the shipped model.
    ("w2v-bert", "tiny"): Recipe(threads=1),
    ("kmeans", "tiny"): Recipe(threads=1),
    ("mfcc", "tiny"): Recipe(threads=1),
    # Chapter 5
    ("mulan", "tiny"): Recipe(steps=600, batch_size=32, val_every=100, checkpoint_every=100, threads=2),
    # Chapter 6: the training clips plus 12 new arrangements of every training score.
    ("semantic-stage", "tiny"): Recipe(steps=1250, val_every=250, checkpoint_every=250, threads=1,
                                       data="synthcaps+extra"),
    ("coarse-stage", "tiny"): Recipe(steps=3500, val_every=500, checkpoint_every=250, threads=1,
                                     data="synthcaps+extra"),
    # Chapter 7: the paper's ablation, with the coarse stage's recipe.
    ("coarse-nosemantic-stage", "tiny"): Recipe(steps=3500, val_every=500, checkpoint_every=250, threads=1,
                                                data="synthcaps+extra"),
    ("fine-stage", "tiny"): Recipe(steps=4000, val_every=500, checkpoint_every=250, threads=1,
                                   data="synthcaps+extra"),
    # Chapter 7's tagger: 1,024 clips (training + extra arrangements), batch 16, so 960 steps = 15 epochs;
    # it validates every epoch and writes once, so val_every / checkpoint_every do not apply.
    ("tagger", "tiny"): Recipe(steps=960, batch_size=16, lr=3e-3, threads=1, data="synthcaps+extra"),
    # Chapter 8: 32 melodies (16 and a sibling excerpt of each) x 3 of their 6 renderings per step, on one thread.
    ("melody-embedder", "tiny"): Recipe(steps=2000, batch_size=32, val_every=250, checkpoint_every=100, threads=1),
    # Chapter 8: the semantic stage's recipe, with melody tokens in its prefix.
    ("melody-semantic-stage", "tiny"): Recipe(steps=1250, val_every=250, checkpoint_every=250, threads=1,
                                              data="synthcaps+extra"),
    # Chapter 8: the coarse stage's recipe, with melody tokens (`--set melody_tokens=embedder|chroma`) in its prefix.
    ("melody-coarse-stage", "tiny"): Recipe(steps=3500, val_every=500, checkpoint_every=250, threads=1,
                                            data="synthcaps+extra"),
}


def recipe(component: str, preset: str) -> Recipe:
    """The recipe of `component` at `preset`, or the preset's defaults."""
    return RECIPES.get((component, preset), Recipe())


def run_progress(component: str, preset: str, run_dir) -> tuple[int, int]:
    """(last step logged, steps of the recipe) of a run folder: a measurement of a run that is still training,
    or was stopped, must say so instead of reporting a half-trained model (Chapter 7's ablation)."""
    import json
    from pathlib import Path

    from ..config import get_preset

    log = Path(run_dir) / "log.jsonl"
    lines = log.read_text().splitlines() if log.exists() else []
    step = json.loads(lines[-1])["step"] if lines else 0
    return step, recipe(component, preset).steps or get_preset(preset).train.steps
