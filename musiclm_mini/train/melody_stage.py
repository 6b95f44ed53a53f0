"""Training the melody-conditioned semantic stage: `python -m musiclm_mini.train melody-semantic-stage` (Chapter 8).

MusicLM Sec. 6 and appendix C: the semantic stage of Chapter 6, its prefix extended with melody tokens
(`melody/stage.py`), trained as the semantic stage is (`train/stages.py`): next-token cross-entropy on the
semantic tokens of random crops, condition dropout for guidance, the same recipe (`recipes.py`), the same
cached tokens (M_A, S) of SynthCaps plus its extra arrangements. What is new:

    melody codes (N, P, Q)   each clip's own melody windows on a grid, from the shipped melody embedder,
                             cached (`melody/token_cache.py`); a crop reads those of its own span
    validation               loss and accuracy, and the loss with *another clip's* melody: the gap says how
                             much the stage listens to the tune (as `stages.conditioning_losses` for the text)

The frozen parts (k-means, MuLan, the melody embedder) are recorded by fingerprint in config.json, so the
stage is only ever loaded next to the tokenizers whose tokens it learnt.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import torch

from .. import components
from ..config import Preset
from ..hierarchy.stage_models import stage_loss
from ..hierarchy.token_cache import TokenSet
from ..hierarchy.tokens import TokenLayout
from ..melody.alignment import MelodyGrid
from ..melody.stage import MelodyLayout, MelodySemanticStage, build_melody_stage_model, melody_semantic_stage_config, \
    melody_stage_batch
from ..melody.token_cache import cached_melody_codes, melody_window_codes
from .distributed import Runtime
from .loop import Run, fit, fit_options
from .scaling import Scaling, scaling_from_args
from .stages import EXTRA_VARIANTS_PER_SCORE, TRAINING_DATA, VALIDATION_SEED, StageTrainer, training_tokens

NAME = "melody-semantic-stage"


def melody_stage(preset: Preset) -> MelodySemanticStage:
    """The token layout of `preset`'s melody-semantic stage (Chapter 8)."""
    return MelodySemanticStage(TokenLayout.from_preset(preset), MelodyLayout.from_preset(preset))


@torch.no_grad()
def evaluate_melody_stage(model, preset: Preset, tokens: TokenSet, codes: torch.Tensor, batch_size: int = 16,
                          max_clips: int = 64) -> dict[str, float]:
    """Loss and accuracy on fixed crops of held-out clips, and the loss with the melody of another clip (Chapter 8)."""
    was_training = model.training
    model.eval()
    st, grid, device = melody_stage(preset), MelodyGrid.from_preset(preset), next(model.parameters()).device
    n = min(len(tokens), max_clips)

    def losses(melody: torch.Tensor) -> tuple[float, float]:
        g = torch.Generator().manual_seed(VALIDATION_SEED)  # the same crops whichever melody
        total, correct, count = 0.0, 0.0, 0
        for lo in range(0, n, batch_size):
            seq, mask = melody_stage_batch(st, tokens, melody, list(range(lo, min(lo + batch_size, n))), grid, g)
            loss, acc = stage_loss(model, seq.to(device), mask.to(device))
            k = int(mask[:, 1:].sum())
            total, correct, count = total + float(loss) * k, correct + float(acc) * k, count + k
        return total / count, correct / count

    loss, accuracy = losses(codes)
    other, _ = losses(codes.roll(1, dims=0))  # clip i with clip i - 1's tune, its own text
    model.train(was_training)
    return {"loss": loss, "accuracy": accuracy, "loss_other_melody": other}


def melody_stage_run(preset: Preset, train_tokens: TokenSet, train_codes: torch.Tensor, val_tokens: TokenSet | None,
                     val_codes: torch.Tensor | None, out_dir: Path, runtime: Runtime, sources: dict[str, str] | None = None,
                     quiet: bool = False, mulan_codebooks: torch.Tensor | None = None, scaling: Scaling = Scaling()):
    """The Run, step function and validation of the melody-semantic stage (Chapter 8), as `stages.stage_run`."""
    if len(train_codes) != len(train_tokens):
        raise ValueError(f"{len(train_codes)} clips of melody codes for {len(train_tokens)} clips of tokens")
    st, grid, cfg = melody_stage(preset), MelodyGrid.from_preset(preset), preset.semantic_stage
    config = melody_semantic_stage_config(preset)
    trainer = StageTrainer(lambda: build_melody_stage_model(config, mulan_codebooks), preset, runtime, scaling)

    def train_step(step: int) -> dict[str, float]:
        idx, g = trainer.batch_of(step, len(train_tokens))
        seq, mask = melody_stage_batch(st, train_tokens, train_codes, idx, grid, g)  # (B, 28 + 75) in tiny
        return trainer.step(st.drop_condition(seq, cfg.condition_dropout, g), mask)  # some: p(S) without tune or text

    batch = preset.train.batch_size
    validate = None if val_tokens is None else \
        (lambda: evaluate_melody_stage(trainer.model, preset, val_tokens, val_codes, batch))
    return trainer.run(NAME, config, preset, out_dir, sources, quiet), train_step, validate


def melody_codes(preset: Preset, data: str, embedder, progress: bool = False, split: str = "train") -> torch.Tensor:
    """The melody codes (N, P, Q) of the clips of `stages.training_tokens(preset, data, ..., split)`, row for row (Chapter 8)."""
    if data == "sines":  # the same synthetic clips as `training_tokens`, not cached
        from .codec import sine_clips

        waves = sine_clips(8 if split == "train" else 4, preset.data.clip_seconds, preset.codec.sample_rate,
                           seed=1 if split == "train" else 2)
        return melody_window_codes(embedder, waves, MelodyGrid.from_preset(preset))
    codes = cached_melody_codes(preset, split, embedder, progress=progress)
    if split != "train" or data == "synthcaps":
        return codes

    def extra_waves() -> torch.Tensor:  # only called when the cache is missing
        from ..data import synthcaps

        return torch.as_tensor(synthcaps.waveforms_from_dir(
            synthcaps.ensure_extra_variants(preset, EXTRA_VARIANTS_PER_SCORE, verbose=progress), "train")).float()

    more = cached_melody_codes(preset, f"train-extra{EXTRA_VARIANTS_PER_SCORE}", embedder, extra_waves, progress=progress)
    return torch.cat([codes, more])


@dataclass
class MelodyStageData:
    """What a melody stage trains on (Chapter 8): tokens and melody lines, row for row, and where they came from."""

    train_tokens: TokenSet
    train_melody: torch.Tensor  # (N, P, Q): each clip's melody time line
    val_tokens: TokenSet | None  # None on the ranks that do not validate
    val_melody: torch.Tensor | None
    sources: dict[str, str]  # fingerprints of the tokenizers (and the melody embedder) the tokens came from
    mulan_codebooks: torch.Tensor  # (levels, codes, dim)
    scaling: Scaling


def melody_stage_data(preset: Preset, args: argparse.Namespace, runtime: Runtime, melody_lines,
                      needs_embedder: bool = True) -> MelodyStageData:
    """Load the tokenizers, cache (rank 0 first) and read the tokens and melody lines of a melody stage (Chapter 8).

    `melody_lines(preset, data, embedder, progress=..., split=...)` -> (N, P, Q): `melody_codes` here,
    `melody_coarse.melody_time_lines` for the melody-coarse stage (whose chroma needs no embedder).
    """
    if args.data not in TRAINING_DATA:
        raise ValueError(f"melody stages train on SynthCaps tokens: --data must be one of {TRAINING_DATA}, got {args.data!r}")
    codec, semantic, mulan = components.tokenizers(preset.name, args.checkpoints, runtime.device,
                                                   codec=preset.codec_component)
    sources, embedder = components.token_sources(codec, semantic, mulan), None
    if needs_embedder:
        folder = None if args.checkpoints is None else components.checkpoint_dir("melody-embedder", preset.name,
                                                                                   args.checkpoints)
        embedder = components.load("melody-embedder", preset.name, folder, runtime.device)
        sources["melody-embedder"] = components.fingerprint(embedder)
    if runtime.is_main:  # rank 0 extracts and caches first, so the other ranks only read the files
        training_tokens(preset, args.data, codec, semantic, mulan, progress=not args.quiet)
        melody_lines(preset, args.data, embedder, progress=not args.quiet)
    if runtime.distributed:
        torch.distributed.barrier()
    scaling = scaling_from_args(args)
    validates = runtime.is_main or scaling.parallel == "fsdp"
    data = MelodyStageData(
        training_tokens(preset, args.data, codec, semantic, mulan), melody_lines(preset, args.data, embedder),
        training_tokens(preset, args.data, codec, semantic, mulan, split="validation") if validates else None,
        melody_lines(preset, args.data, embedder, split="validation") if validates else None,
        sources, mulan.rvq.codebooks.detach().float().cpu(), scaling)
    del codec, semantic, mulan, embedder  # the tokenizers are not needed any more
    return data


def train_melody_semantic_stage(preset: Preset, args: argparse.Namespace, runtime: Runtime) -> Run:
    """`python -m musiclm_mini.train melody-semantic-stage`: p(S | melody tokens, M_A) (Chapter 8)."""
    d = melody_stage_data(preset, args, runtime, melody_codes)
    run, step_fn, validate = melody_stage_run(preset, d.train_tokens, d.train_melody, d.val_tokens, d.val_melody,
                                              args.out, runtime, d.sources, args.quiet, d.mulan_codebooks, d.scaling)
    return fit(run, step_fn, validate, **fit_options(args))
