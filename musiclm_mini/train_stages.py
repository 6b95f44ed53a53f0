"""Training the three stages: `python -m musiclm_mini.train semantic-stage|coarse|fine --preset tiny` (Chapter 6).

Each stage is one `Transformer` trained by next-token cross-entropy on its target tokens only
(`stages.stage_loss`), on random crops of the cached SynthCaps tokens (`token_cache.py`):

    semantic-stage   [M_A] + [S]              crop StageConfig.crop_seconds (paper 30 s)
    coarse           [M_A] + [S] + [A_1..4]   (paper 10 s)
    fine             [A_1..4] + [A_5..Q]      (paper 3 s)

The tokenizers (SoundStream, w2v-BERT + k-means, MuLan) are the trained checkpoints of Chapters
3-5 and stay frozen; their fingerprints are stored in the stage's config, so a stage can never be
loaded next to tokenizers other than the ones whose tokens it learnt. The loop is `train.fit`.
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import torch

from .config import Preset, get_preset
from .mulan_embedding import CodebookEmbedding, mulan_codebooks
from .stages import TokenLayout, make_stage, stage_loss
from .token_cache import TokenGrid, TokenSet, cached_tokens, source_fingerprints, stage_batch
from .train import Run, Runtime, batch_indices, fit, step_generator, wrap_ddp
from .transformer import Transformer

SHIPPED = Path(__file__).parent / "checkpoints"
CHECKPOINT_NAMES = {"semantic": "semantic-stage", "coarse": "coarse", "fine": "fine"}  # = train subcommands
VALIDATION_SEED = 12_345  # fixed crops: every validation sees the same examples
# --data synthcaps+extra adds this many new arrangements of every training score (tiny: 64 scores x 12).
EXTRA_VARIANTS_PER_SCORE = 12
TRAINING_DATA = ("synthcaps", "synthcaps+extra")
# The tokenizers whose tokens each stage reads or predicts: retraining the codec leaves the semantic
# stage valid (it never sees acoustic tokens), but invalidates the coarse and fine stages.
STAGE_SOURCES = {"semantic": ("semantic", "mulan"), "coarse": ("codec", "semantic", "mulan"), "fine": ("codec",)}


def stage_checkpoint_dir(stage: str, preset_name: str, root: str | Path | None = None) -> Path:
    """checkpoints/semantic-stage-<preset>, coarse-<preset> or fine-<preset> (Chapter 6)."""
    return Path(root or SHIPPED) / f"{CHECKPOINT_NAMES[stage]}-{preset_name}"


def stage_sources(stage: str, sources: dict[str, str] | None) -> dict[str, str] | None:
    """The fingerprints of the tokenizers `stage` depends on, out of all three (Chapter 6)."""
    return None if sources is None else {k: sources[k] for k in STAGE_SOURCES[stage] if k in sources}


def stage_checkpoint_config(stage: str, preset: Preset, sources: dict[str, str] | None = None) -> dict:
    """What a stage checkpoint is: its architecture, vocabulary and the tokenizers it learnt from (Chapter 6)."""
    cfg = getattr(preset, f"{stage}_stage")
    layout = TokenLayout.from_preset(preset)
    st = make_stage(stage, layout)
    config = {"model": f"{stage}-stage", "preset": preset.name, "transformer": dataclasses.asdict(cfg.transformer),
              "vocab_size": st.vocab_size, "layout": dataclasses.asdict(layout), "crop_seconds": cfg.crop_seconds,
              "sources": stage_sources(stage, sources)}
    if st.reads_mulan:  # guidance needs a stage that also learnt p(x) without the text
        config["condition_dropout"] = cfg.condition_dropout
        config["mulan_codebook_embedding"] = cfg.mulan_codebook_embedding
    return config


def build_stage_model(stage: str, preset: Preset, mulan_codebooks: torch.Tensor | None = None) -> Transformer:
    """A fresh Transformer sized for `stage` of `preset` (Chapter 6).

    With `mulan_codebook_embedding` (not in the paper) its MuLan tokens are embedded through MuLan's
    codebooks (`mulan_embedding.py`): `mulan_codebooks` (levels, codes, dim) when training; zeros
    otherwise, which loading a checkpoint overwrites with the codebooks the stage was trained with.
    """
    layout, cfg = TokenLayout.from_preset(preset), getattr(preset, f"{stage}_stage")
    st = make_stage(stage, layout)
    model = Transformer(cfg.transformer, st.vocab_size)
    if cfg.mulan_codebook_embedding and st.reads_mulan:
        if mulan_codebooks is None:
            mulan_codebooks = torch.zeros(layout.mulan_levels, layout.mulan_codes, preset.mulan.rvq.dim)
        model.tok_emb = CodebookEmbedding(st.vocab_size, cfg.transformer.d_model, mulan_codebooks)
    return model


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
        seq, mask = stage_batch(st, tokens, idx, grid, getattr(preset, f"{stage}_stage").crop_seconds, g)
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


def stage_run(stage: str, preset: Preset, train_tokens: TokenSet, val_tokens: TokenSet | None, out_dir: Path,
              runtime: Runtime, sources: dict[str, str] | None = None, quiet: bool = False,
              mulan_codebooks: torch.Tensor | None = None):
    """The Run, step function and validation of one stage on given tokens (Chapter 6)."""
    tc, cfg = preset.train, getattr(preset, f"{stage}_stage")
    st, grid = make_stage(stage, TokenLayout.from_preset(preset)), TokenGrid.from_preset(preset)
    torch.manual_seed(tc.seed)  # same initial weights on every rank
    model = build_stage_model(stage, preset, mulan_codebooks).to(runtime.device)
    ddp = wrap_ddp(model, runtime)
    opt = torch.optim.AdamW(model.parameters(), lr=tc.learning_rate, betas=(0.9, 0.98), weight_decay=0.01)
    torch.manual_seed(tc.seed + runtime.rank)  # dropout differs per rank

    def train_step(step: int) -> dict[str, float]:
        idx = batch_indices(len(train_tokens), tc.batch_size, step, tc.seed, runtime.rank, runtime.world_size)
        g = step_generator(tc.seed, step, runtime.rank)
        seq, mask = stage_batch(st, train_tokens, idx, grid, cfg.crop_seconds, g)
        seq = st.drop_condition(seq, cfg.condition_dropout, g)  # some examples learn p(x) without the text
        ddp.train()
        loss, acc = stage_loss(ddp, seq.to(runtime.device), mask.to(runtime.device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
        opt.step()
        return {"loss": float(loss.detach()), "accuracy": float(acc)}

    validate = None if val_tokens is None else (lambda: evaluate_stage(model, stage, preset, val_tokens, tc.batch_size))
    run = Run(name=f"{CHECKPOINT_NAMES[stage]}-{preset.name}", out_dir=Path(out_dir),
              config=stage_checkpoint_config(stage, preset, sources), model=model, optimizers={"adamw": opt},
              runtime=runtime, steps=tc.steps, base_lr=tc.learning_rate, warmup=tc.warmup_steps,
              val_every=tc.val_every, checkpoint_every=tc.checkpoint_every, seed=tc.seed, quiet=quiet)
    return run, train_step, validate


def load_token_sources(preset_name: str, device: str | torch.device = "cpu"):
    """The shipped codec, semantic tokenizer and MuLan of a preset (Chapters 3-5); CheckpointError if missing."""
    from .mulan import load_mulan
    from .semantic import load_semantic_tokenizer
    from .soundstream import load_codec

    return (load_codec(preset=preset_name, device=device), load_semantic_tokenizer(preset_name, device=device),
            load_mulan(preset_name).to(device))


def extra_tokens(preset: Preset, codec, semantic, mulan, progress: bool = False) -> TokenSet:
    """Tokens of the extra training variants (`synthcaps.ensure_extra_variants`), cached (Chapter 6)."""
    from .data import synthcaps

    def waves() -> torch.Tensor:  # only called when the cache is missing
        return torch.as_tensor(synthcaps.waveforms_from_dir(
            synthcaps.ensure_extra_variants(preset, EXTRA_VARIANTS_PER_SCORE, verbose=progress), "train")).float()

    return cached_tokens(preset, f"train-extra{EXTRA_VARIANTS_PER_SCORE}", codec, semantic, mulan, waves, progress=progress)


def training_tokens(preset: Preset, data: str, codec, semantic, mulan, progress: bool = False) -> TokenSet:
    """The training split's tokens, plus those of the extra variants for `data="synthcaps+extra"` (Chapter 6)."""
    if data not in TRAINING_DATA:
        raise ValueError(f"the stages train on SynthCaps tokens: --data must be one of {TRAINING_DATA}, got {data!r}")
    tokens = cached_tokens(preset, "train", codec, semantic, mulan, progress=progress)
    if data == "synthcaps":
        return tokens
    more = extra_tokens(preset, codec, semantic, mulan, progress)
    return TokenSet(*(torch.cat([a, b]) for a, b in zip(tokens.tensors().values(), more.tensors().values())))


def train_stage(stage: str, preset: Preset, args: argparse.Namespace, runtime: Runtime) -> Run:
    """Extract (or reuse) the tokens, then train one stage with `train.fit` (Chapter 6)."""
    if args.data not in TRAINING_DATA:
        raise ValueError(f"the {CHECKPOINT_NAMES[stage]} stage trains on SynthCaps tokens: --data must be one of "
                         f"{TRAINING_DATA}, got {args.data!r}")
    codec, semantic, mulan = load_token_sources(preset.name, runtime.device)
    sources = source_fingerprints(codec, semantic, mulan)
    # Rank 0 extracts and caches first, so the other ranks only read the file.
    if runtime.is_main:
        training_tokens(preset, args.data, codec, semantic, mulan, progress=not args.quiet)
    if runtime.distributed:
        torch.distributed.barrier()
    train_tokens = training_tokens(preset, args.data, codec, semantic, mulan)
    val_tokens = cached_tokens(preset, "validation", codec, semantic, mulan) if runtime.is_main else None
    codebooks = mulan_codebooks(mulan)
    del codec, semantic, mulan  # the tokenizers are not needed any more
    run, step_fn, validate = stage_run(stage, preset, train_tokens, val_tokens, args.out, runtime, sources, args.quiet,
                                       codebooks)
    return fit(run, step_fn, validate, resume=args.resume)


def train_semantic_stage(preset: Preset, args: argparse.Namespace, runtime: Runtime) -> Run:
    """`python -m musiclm_mini.train semantic-stage`: p(S | M_A) (Chapter 6)."""
    return train_stage("semantic", preset, args, runtime)


def train_coarse_stage(preset: Preset, args: argparse.Namespace, runtime: Runtime) -> Run:
    """`python -m musiclm_mini.train coarse`: p(A_1..4 | S, M_A) (Chapter 6)."""
    return train_stage("coarse", preset, args, runtime)


def train_fine_stage(preset: Preset, args: argparse.Namespace, runtime: Runtime) -> Run:
    """`python -m musiclm_mini.train fine`: p(A_5..Q | A_1..4) (Chapter 6)."""
    return train_stage("fine", preset, args, runtime)


# ---------------------------------------------------------------------------------------------
# Shipping a trained stage with the package
# ---------------------------------------------------------------------------------------------
def ship(stage: str, source: Path, preset: Preset, root: str | Path | None = None) -> Path:
    """Copy a finished run's weights (float16, no training state) and log into the package (or `root`),
    then measure what readers will load on the validation and test splits into `metrics.json` (Chapter 6)."""
    import json
    import shutil

    from .checkpoint import export_weights
    from .musiclm import load_stage

    dest = stage_checkpoint_dir(stage, preset.name, root)
    export_weights(source, dest)
    if (Path(source) / "log.jsonl").exists():
        shutil.copyfile(Path(source) / "log.jsonl", dest / "log.jsonl")
    model = load_stage(stage, preset, root)  # the float16 weights, cast back to float32
    codec, semantic, mulan = load_token_sources(preset.name)
    metrics = {}
    for split in ("validation", "test"):
        tokens = cached_tokens(preset, split, codec, semantic, mulan)
        metrics[split] = {**evaluate_stage(model, stage, preset, tokens), "clips": min(len(tokens), 64)}
    (dest / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    return dest


def main(argv: list[str] | None = None) -> None:
    """`python -m musiclm_mini.train_stages ship coarse --preset tiny --from runs/coarse-tiny` (Chapter 6).

    Training itself is `python -m musiclm_mini.train semantic-stage|coarse|fine`.
    """
    p = argparse.ArgumentParser(prog="python -m musiclm_mini.train_stages")
    p.add_argument("action", choices=["ship"])
    p.add_argument("stage", choices=list(CHECKPOINT_NAMES), help="semantic, coarse or fine")
    p.add_argument("--preset", default="tiny")
    p.add_argument("--from", dest="source", type=Path, default=None, help="run folder (default runs/<stage>-<preset>)")
    a = p.parse_args(argv)
    source = a.source or Path("runs") / f"{CHECKPOINT_NAMES[a.stage]}-{a.preset}"
    print("shipped to", ship(a.stage, source, get_preset(a.preset)))


if __name__ == "__main__":
    main()
