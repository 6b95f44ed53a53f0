"""Training the melody-coarse stage: `python -m musiclm_mini.train melody-coarse-stage` (Chapter 8; MusicLM Sec. 6, appendix C).

The coarse stage of Chapter 6 with melody tokens in front of its prefix (`melody/coarse.py`), trained as the
coarse stage is (`train/stages.py`): next-token cross-entropy on the coarse acoustic tokens of random 2 s crops
(tiny), condition dropout (melody and text together) for guidance, the coarse stage's recipe (`recipes.py`),
the same cached tokens (M_A, S, A) of SynthCaps plus its extra arrangements. What is new:

    melody time line (N, P, Q)   each clip's own melody, cached (`melody/token_cache.py`):
                                 embedder: RVQ codes of 4 s windows every 0.4 s (tiny: P = 21, Q = 8)
                                 chroma:   a pitch-class token every 80 ms (tiny: P = 125, Q = 1)
    validation                   loss and accuracy, and the loss with *another clip's* melody: the gap says how
                                 much the stage listens to the tune (0.001 for the melody-semantic stage)

    python -m musiclm_mini.train melody-coarse-stage --preset tiny --out runs/melody-coarse-stage-tiny
    python -m musiclm_mini.train melody-coarse-stage --preset tiny --set melody_tokens=chroma \\
        --out runs/melody-coarse-chroma-stage-tiny

The frozen parts (codec, k-means, MuLan and, for `embedder`, the melody embedder) are recorded by fingerprint
in config.json, so the stage is only ever loaded next to the tokenizers whose tokens it learnt.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from .. import components
from ..config import Preset
from ..hierarchy.stage_models import stage_loss
from ..hierarchy.token_cache import TokenGrid, TokenSet
from ..melody.chroma import chroma_tokens
from ..melody.coarse import (build_melody_coarse_model, check_melody_tokens, coarse_melody_grid, extend_from_coarse,
                              melody_coarse_batch,
                             melody_coarse_stage, melody_coarse_stage_config)
from ..melody.token_cache import cached_chroma_tokens, cached_melody_codes, melody_window_codes
from .distributed import Runtime
from .loop import Run, fit, fit_options
from .scaling import Scaling
from .melody_stage import melody_stage_data
from .stages import EXTRA_VARIANTS_PER_SCORE, VALIDATION_SEED, StageTrainer

NAME = "melody-coarse-stage"


@torch.no_grad()
def evaluate_melody_coarse(model, preset: Preset, tokens: TokenSet, melody: torch.Tensor, batch_size: int = 16,
                           max_clips: int = 64) -> dict[str, float]:
    """Loss and accuracy on fixed crops of held-out clips, and the loss with another clip's melody (Chapter 8).

    The crops depend only on VALIDATION_SEED and the grid, not on the representation: `embedder` and `chroma`
    runs are scored on the same crops, so their losses compare.
    """
    was_training = model.training
    model.eval()
    st, grid, tg = melody_coarse_stage(preset), coarse_melody_grid(preset), TokenGrid.from_preset(preset)
    device, n = next(model.parameters()).device, min(len(tokens), max_clips)

    def losses(line: torch.Tensor) -> tuple[float, float]:
        g = torch.Generator().manual_seed(VALIDATION_SEED)  # the same crops whichever melody
        total, correct, count = 0.0, 0.0, 0
        for lo in range(0, n, batch_size):
            seq, mask = melody_coarse_batch(st, tokens, line, list(range(lo, min(lo + batch_size, n))), grid, tg, g)
            loss, acc = stage_loss(model, seq.to(device), mask.to(device))
            k = int(mask[:, 1:].sum())
            total, correct, count = total + float(loss) * k, correct + float(acc) * k, count + k
        return total / count, correct / count

    loss, accuracy = losses(melody)
    other, _ = losses(melody.roll(1, dims=0))  # clip i with clip i - 1's tune, its own text and semantic tokens
    model.train(was_training)
    return {"loss": loss, "accuracy": accuracy, "loss_other_melody": other}


def melody_coarse_run(preset: Preset, train_tokens: TokenSet, train_melody: torch.Tensor, val_tokens: TokenSet | None,
                      val_melody: torch.Tensor | None, out_dir: Path, runtime: Runtime,
                      sources: dict[str, str] | None = None, quiet: bool = False,
                      mulan_codebooks: torch.Tensor | None = None, scaling: Scaling = Scaling(),
                      coarse_state: dict[str, torch.Tensor] | None = None):
    """The Run, step function and validation of the melody-coarse stage (Chapter 8), as `stages.stage_run`.

    `coarse_state`: a trained coarse stage's weights to start from (`melody.coarse.extend_from_coarse`).
    """
    if len(train_melody) != len(train_tokens):
        raise ValueError(f"{len(train_melody)} clips of melody tokens for {len(train_tokens)} clips of tokens")
    st, grid, tg = melody_coarse_stage(preset), coarse_melody_grid(preset), TokenGrid.from_preset(preset)
    cfg = preset.coarse_stage
    config = melody_coarse_stage_config(preset)
    def build():
        model = build_melody_coarse_model(config, mulan_codebooks)
        return model if coarse_state is None else extend_from_coarse(model, coarse_state)

    trainer = StageTrainer(build, preset, runtime, scaling)

    def train_step(step: int) -> dict[str, float]:
        idx, g = trainer.batch_of(step, len(train_tokens))
        seq, mask = melody_coarse_batch(st, train_tokens, train_melody, idx, grid, tg, g)  # tiny (B, 8 or 25 + 37 + 200)
        return trainer.step(st.drop_condition(seq, cfg.condition_dropout, g), mask)  # some: p(A | S), no tune, no text

    batch = preset.train.batch_size
    validate = None if val_tokens is None else \
        (lambda: evaluate_melody_coarse(trainer.model, preset, val_tokens, val_melody, batch))
    return trainer.run(NAME, config, preset, out_dir, sources, quiet), train_step, validate


def clip_melody(preset: Preset, waves: torch.Tensor, embedder=None) -> torch.Tensor:
    """Clips (N, T) -> their melody time lines (N, P, Q) in `preset.melody_tokens`' representation, uncached (Chapter 8)."""
    if check_melody_tokens(preset.melody_tokens) == "embedder":
        return melody_window_codes(embedder, waves, coarse_melody_grid(preset))  # (N, 21, 8) in tiny
    return chroma_tokens(waves, preset.codec.sample_rate, TokenGrid.from_preset(preset).unit)[..., None]  # (N, 125, 1)


def melody_time_lines(preset: Preset, data: str, embedder=None, progress: bool = False,
                      split: str = "train") -> torch.Tensor:
    """The melody time lines (N, P, Q) of the clips of `stages.training_tokens(preset, data, ..., split)`, row for row."""
    if data == "sines":  # the same synthetic clips as `training_tokens`, not cached
        from .codec import sine_clips

        waves = sine_clips(8 if split == "train" else 4, preset.data.clip_seconds, preset.codec.sample_rate,
                           seed=1 if split == "train" else 2)
        return clip_melody(preset, waves, embedder)
    kind = check_melody_tokens(preset.melody_tokens)

    def cached(name: str, waves=None) -> torch.Tensor:
        if kind == "embedder":
            return cached_melody_codes(preset, name, embedder, waves, progress=progress, grid=coarse_melody_grid(preset))
        return cached_chroma_tokens(preset, name, waves, progress=progress)[..., None]

    lines = cached(split)
    if split != "train" or data == "synthcaps":
        return lines

    def extra_waves() -> torch.Tensor:  # only called when the cache is missing
        from ..data import synthcaps

        return torch.as_tensor(synthcaps.waveforms_from_dir(
            synthcaps.ensure_extra_variants(preset, EXTRA_VARIANTS_PER_SCORE, verbose=progress), "train")).float()

    return torch.cat([lines, cached(f"train-extra{EXTRA_VARIANTS_PER_SCORE}", extra_waves)])


def train_melody_coarse_stage(preset: Preset, args: argparse.Namespace, runtime: Runtime) -> Run:
    """`python -m musiclm_mini.train melody-coarse-stage [--set melody_tokens=chroma] [--init COARSE]`: p(A_1..4 | U, M_A, S).

    `--init` may name a *coarse-stage* checkpoint (e.g. the shipped one): the stage then starts from it, its
    vocabulary extended by the melody ids (`extend_from_coarse`), instead of from scratch (Chapter 8).
    """
    kind = check_melody_tokens(preset.melody_tokens)
    d = melody_stage_data(preset, args, runtime, melody_time_lines, needs_embedder=kind == "embedder")  # chroma: no trained part
    options, coarse_state = fit_options(args), None
    init = options["init_from"]
    if init is not None and components.read_config(init).get("component") == "coarse-stage":
        coarse = components.load("coarse-stage", preset.name, init, sources=d.sources)  # refused if trained on other tokens
        coarse_state, options["init_from"] = coarse.state_dict(), None  # applied by the model's builder, not by `fit`
    run, step_fn, validate = melody_coarse_run(preset, d.train_tokens, d.train_melody, d.val_tokens, d.val_melody, args.out,
                                               runtime, d.sources, args.quiet, d.mulan_codebooks, d.scaling, coarse_state)
    return fit(run, step_fn, validate, **options)
