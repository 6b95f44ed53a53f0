"""Training the three stages: `python -m musiclm_mini.train semantic-stage|coarse-stage|fine-stage` (Chapter 6).

Each stage is one `Transformer` trained by next-token cross-entropy on its target tokens only
(`stage_models.stage_loss`), on random crops of the cached SynthCaps tokens (`token_cache.py`):

    semantic-stage   [M_A] + [S]              crop StageConfig.crop_seconds (paper 30 s)
    coarse-stage     [M_A] + [S] + [A_1..4]   (paper 10 s)
    fine-stage       [A_1..4] + [A_5..Q]      (paper 3 s)
    coarse-nosemantic-stage   [M_A] + [A_1..4]: the paper's ablation without semantic tokens (Chapter 7)

The tokenizers (SoundStream, w2v-BERT + k-means, MuLan) are the trained checkpoints of Chapters
3-5 and stay frozen; their fingerprints are stored in the stage's config.json, so a stage can never be
loaded next to tokenizers other than the ones whose tokens it learnt. The loop is `loop.fit`.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from .. import components
from ..config import Preset
from ..hierarchy.stage_models import build_stage_model, stage_loss, stage_model_config
from ..hierarchy.token_cache import TokenGrid, TokenSet, cached_tokens, extract_tokens, stage_batch
from ..hierarchy.tokens import TokenLayout, make_stage
from .distributed import Runtime
from .loop import Run, batch_indices, fit, fit_options, step_generator
from .scaling import Scaling, accumulate_gradients, autocast_dtype, global_mean, micro_batches, prepare, scaling_from_args

VALIDATION_SEED = 12_345  # fixed crops: every validation sees the same examples
# --data synthcaps+extra adds this many new arrangements of every training score (tiny: 64 scores x 12).
EXTRA_VARIANTS_PER_SCORE = 12
TRAINING_DATA = ("synthcaps", "synthcaps+extra", "sines")  # sines: a quick check on 8 synthetic clips


@torch.no_grad()
def evaluate_stage(model, stage: str, preset: Preset, tokens: TokenSet, batch_size: int = 16,
                   max_clips: int = 64) -> dict[str, float]:
    """Loss and next-token accuracy on fixed crops of held-out clips (Chapter 6)."""
    was_training = model.training
    model.eval()
    st, grid = make_stage(stage, TokenLayout.from_preset(preset)), TokenGrid.from_preset(preset)
    g = torch.Generator().manual_seed(VALIDATION_SEED)
    device = next(model.parameters()).device
    total, correct, count = 0.0, 0.0, 0
    for lo in range(0, min(len(tokens), max_clips), batch_size):
        idx = list(range(lo, min(lo + batch_size, len(tokens), max_clips)))
        seq, mask = stage_batch(st, tokens, idx, grid, getattr(preset, f"{st.name}_stage").crop_seconds, g)
        loss, acc = stage_loss(model, seq.to(device), mask.to(device))
        n = int(mask[:, 1:].sum())
        total, correct, count = total + float(loss) * n, correct + float(acc) * n, count + n
    model.train(was_training)
    return {"loss": total / count, "accuracy": correct / count}


@torch.no_grad()
def conditioning_losses(model, stage: str, preset: Preset, tokens: TokenSet, seed: int = 0) -> dict[str, float]:
    """How much the MuLan tokens matter to a stage (Chapter 6): its loss on one fixed crop of every clip with
    each clip's own MuLan tokens, with another clip's (rolled by one), and with the null condition."""
    st, grid = make_stage(stage, TokenLayout.from_preset(preset)), TokenGrid.from_preset(preset)
    if not st.reads_mulan:
        raise ValueError(f"the {stage} stage reads no MuLan tokens")
    crop = getattr(preset, f"{stage}_stage").crop_seconds
    seq, mask = stage_batch(st, tokens, list(range(len(tokens))), grid, crop, torch.Generator().manual_seed(seed))
    swapped = seq.clone()
    swapped[:, :st.layout.mulan_levels] = seq[:, :st.layout.mulan_levels].roll(1, dims=0)
    was_training = model.training
    model.eval()
    losses = {name: float(stage_loss(model, s, mask)[0]) for name, s in
              (("own", seq), ("another clip's", swapped), ("none", st.uncondition(seq)))}
    model.train(was_training)
    return losses


class StageTrainer:
    """A stage model ready to train: its DDP/FSDP wrapper, AdamW and autocast dtype (Chapters 6 and 8).

    Every stage, the ablation and Chapter 8's melody stages optimise the same way; only their batches differ.
    `scaling` (Chapter 11): DDP or FSDP under torchrun, bf16 autocast, micro-batches, activation checkpointing.
    """

    def __init__(self, build_model, preset: Preset, runtime: Runtime, scaling: Scaling = Scaling()):
        self.tc, self.runtime, self.scaling = preset.train, runtime, scaling
        torch.manual_seed(self.tc.seed)  # same initial weights on every rank
        self.model = build_model().to(runtime.device)
        self.ddp = prepare(self.model, runtime, scaling)  # DDP wraps `model`; FSDP shards it in place
        self.dtype = autocast_dtype(runtime.device, scaling.precision)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=self.tc.learning_rate, betas=(0.9, 0.98),
                                     weight_decay=0.01)
        torch.manual_seed(self.tc.seed + runtime.rank)  # dropout differs per rank

    def batch_of(self, step: int, n_clips: int) -> tuple[list[int], torch.Generator]:
        """The clips and the random generator of training step `step`: a pure function of seed, step and rank."""
        tc, rt = self.tc, self.runtime
        return batch_indices(n_clips, tc.batch_size, step, tc.seed, rt.rank, rt.world_size), \
            step_generator(tc.seed, step, rt.rank)

    def step(self, seq: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
        """One optimisation step on a batch of sequences (B, L) and their loss masks (B, L)."""
        seq, mask = seq.to(self.runtime.device), mask.to(self.runtime.device)
        parts = micro_batches(len(seq), self.scaling.accumulate)
        self.ddp.train()
        self.opt.zero_grad(set_to_none=True)
        figures = accumulate_gradients(self.ddp, lambda i: stage_loss(self.ddp, seq[parts[i]], mask[parts[i]]),
                                       [float(mask[p, 1:].sum()) for p in parts], self.dtype, self.runtime.device)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.tc.grad_clip)
        self.opt.step()
        loss, acc = global_mean(figures, self.runtime, self.runtime.device)  # the global batch's, for rank 0's log
        return {"loss": loss, "accuracy": acc}

    def run(self, component: str, config, preset: Preset, out_dir: Path, sources: dict[str, str] | None,
            quiet: bool) -> Run:
        """The `loop.Run` that checkpoints this model as `component` under `out_dir`."""
        tc = self.tc
        return Run(name=f"{component}-{preset.name}", out_dir=Path(out_dir),
                   config=components.checkpoint_config(component, config, preset.name, sources), model=self.model,
                   optimizers={"adamw": self.opt}, runtime=self.runtime, steps=tc.steps, base_lr=tc.learning_rate,
                   warmup=tc.warmup_steps, val_every=tc.val_every, checkpoint_every=tc.checkpoint_every,
                   seed=tc.seed, quiet=quiet,
                   validate_on_all_ranks=self.runtime.distributed and self.scaling.parallel == "fsdp")


def stage_run(stage: str, preset: Preset, train_tokens: TokenSet, val_tokens: TokenSet | None, out_dir: Path,
              runtime: Runtime, sources: dict[str, str] | None = None, quiet: bool = False,
              mulan_codebooks: torch.Tensor | None = None, scaling: Scaling = Scaling()):
    """The Run, step function and validation of one stage on given tokens (Chapter 6)."""
    st, grid = make_stage(stage, TokenLayout.from_preset(preset)), TokenGrid.from_preset(preset)
    cfg = getattr(preset, f"{st.name}_stage")  # the ablation trains as the coarse stage
    config = stage_model_config(st.name, preset)
    trainer = StageTrainer(lambda: build_stage_model(config, mulan_codebooks), preset, runtime, scaling)

    def train_step(step: int) -> dict[str, float]:
        idx, g = trainer.batch_of(step, len(train_tokens))
        seq, mask = stage_batch(st, train_tokens, idx, grid, cfg.crop_seconds, g)
        return trainer.step(st.drop_condition(seq, cfg.condition_dropout, g), mask)  # some learn p(x) without text

    batch = preset.train.batch_size
    validate = None if val_tokens is None else \
        (lambda: evaluate_stage(trainer.model, stage, preset, val_tokens, batch))
    return trainer.run(f"{stage}-stage", config, preset, out_dir, sources, quiet), train_step, validate


def extra_tokens(preset: Preset, codec, semantic, mulan, progress: bool = False) -> TokenSet:
    """Tokens of the extra training variants (`synthcaps.ensure_extra_variants`), cached (Chapter 6)."""
    from ..data import synthcaps

    def waves() -> torch.Tensor:  # only called when the cache is missing
        return torch.as_tensor(synthcaps.waveforms_from_dir(
            synthcaps.ensure_extra_variants(preset, EXTRA_VARIANTS_PER_SCORE, verbose=progress), "train")).float()

    return cached_tokens(preset, f"train-extra{EXTRA_VARIANTS_PER_SCORE}", codec, semantic, mulan, waves, progress=progress)


def training_tokens(preset: Preset, data: str, codec, semantic, mulan, progress: bool = False,
                    split: str = "train") -> TokenSet:
    """The split's tokens, plus those of the extra variants for `data="synthcaps+extra"` (Chapter 6).

    `data="sines"` is a quick check (`--steps 2`): 8 (4 for validation) synthetic clips, tokens not cached.
    """
    if data not in TRAINING_DATA:
        raise ValueError(f"the stages train on SynthCaps tokens: --data must be one of {TRAINING_DATA}, got {data!r}")
    if data == "sines":
        from .codec import sine_clips

        waves = sine_clips(8 if split == "train" else 4, preset.data.clip_seconds, preset.codec.sample_rate,
                           seed=1 if split == "train" else 2)
        return extract_tokens(waves, codec, semantic, mulan)
    tokens = cached_tokens(preset, split, codec, semantic, mulan, progress=progress)
    if split != "train":
        return tokens
    if data == "synthcaps":
        return tokens
    more = extra_tokens(preset, codec, semantic, mulan, progress)
    return TokenSet(*(torch.cat([a, b]) for a, b in zip(tokens.tensors().values(), more.tensors().values())))


def train_stage(stage: str, preset: Preset, args: argparse.Namespace, runtime: Runtime) -> Run:
    """Extract (or reuse) the tokens, then train one stage with `loop.fit` (Chapter 6)."""
    if args.data not in TRAINING_DATA:
        raise ValueError(f"the {stage}-stage trains on SynthCaps tokens: --data must be one of "
                         f"{TRAINING_DATA}, got {args.data!r}")
    codec, semantic, mulan = components.tokenizers(preset.name, args.checkpoints, runtime.device,
                                                   codec=preset.codec_component)  # --set codec_component=...
    sources = components.token_sources(codec, semantic, mulan)
    # Rank 0 extracts and caches first, so the other ranks only read the file.
    if runtime.is_main:
        training_tokens(preset, args.data, codec, semantic, mulan, progress=not args.quiet)
    if runtime.distributed:
        torch.distributed.barrier()
    train_tokens = training_tokens(preset, args.data, codec, semantic, mulan)
    scaling = scaling_from_args(args)
    validates = runtime.is_main or scaling.parallel == "fsdp"  # a sharded model validates on every rank
    val_tokens = training_tokens(preset, args.data, codec, semantic, mulan, split="validation") if validates else None
    codebooks = mulan.rvq.codebooks.detach().float().cpu()  # (levels, codes, dim)
    del codec, semantic, mulan  # the tokenizers are not needed any more
    run, step_fn, validate = stage_run(stage, preset, train_tokens, val_tokens, args.out, runtime, sources, args.quiet,
                                       codebooks, scaling)
    return fit(run, step_fn, validate, **fit_options(args))


def train_semantic_stage(preset: Preset, args: argparse.Namespace, runtime: Runtime) -> Run:
    """`python -m musiclm_mini.train semantic-stage`: p(S | M_A) (Chapter 6)."""
    return train_stage("semantic", preset, args, runtime)


def train_coarse_stage(preset: Preset, args: argparse.Namespace, runtime: Runtime) -> Run:
    """`python -m musiclm_mini.train coarse-stage`: p(A_1..4 | S, M_A) (Chapter 6)."""
    return train_stage("coarse", preset, args, runtime)


def train_fine_stage(preset: Preset, args: argparse.Namespace, runtime: Runtime) -> Run:
    """`python -m musiclm_mini.train fine-stage`: p(A_5..Q | A_1..4) (Chapter 6)."""
    return train_stage("fine", preset, args, runtime)


def train_coarse_nosemantic_stage(preset: Preset, args: argparse.Namespace, runtime: Runtime) -> Run:
    """`python -m musiclm_mini.train coarse-nosemantic-stage`: p(A_1..4 | M_A), the paper's ablation (Chapter 7)."""
    return train_stage("coarse-nosemantic", preset, args, runtime)


def measure_stage(model, preset: Preset, root: str | Path | None = None) -> dict:
    """What `ship <stage>` records: loss and accuracy on fixed crops of the validation and test clips (Chapter 6)."""
    stage = model.checkpoint_config["component"].removesuffix("-stage")
    codec, semantic, mulan = components.tokenizers(preset.name, root)
    out = {}
    for split in ("validation", "test"):
        tokens = cached_tokens(preset, split, codec, semantic, mulan)
        out[split] = {**evaluate_stage(model, stage, preset, tokens), "clips": min(len(tokens), 64)}
    return out
