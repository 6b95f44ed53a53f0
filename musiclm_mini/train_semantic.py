"""Recipes for semantic tokens: self-supervised training, then k-means (Chapter 4).

    python -m musiclm_mini.train semantic --preset tiny --out runs/semantic-tiny
    python -m musiclm_mini.train kmeans   --preset tiny --out musiclm_mini/checkpoints/semantic-tiny

`semantic` trains the w2v-BERT-style `SemanticModel` on training clips with the shared loop of
`train.fit` (checkpoints, exact resume with --resume). `kmeans` takes that run (from
$MUSICLM_SEMANTIC_RUN, default runs/semantic-<preset>), exports its weights in half precision,
fits k-means on the embeddings of MLM layer `embedding_layer` of the *exported* weights (so the
shipped tokenizer is self-consistent), fits the MFCC baseline the same way, and measures both on
held-out test clips with `token_probes.synthcaps_probes`.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch

from .config import Preset
from .errors import CheckpointError
from .semantic import SemanticModel, load_semantic_model, semantic_checkpoint_config
from .train import Run, Runtime, fit, step_generator, unwrap, wrap_ddp
from .train_codec import codec_batch, load_splits


# ---------------------------------------------------------------------------------------------
# Which data a run saw
# ---------------------------------------------------------------------------------------------
def data_fingerprint(preset: Preset, data: str) -> dict:
    """The SynthCaps config and a hash of its score -> split table, or the name of another data set (Chapter 4).

    Stored with a run and compared by `kmeans`: probes scored on "held-out" clips mean nothing if the
    data set was regenerated (and its splits redrawn) after the model was trained.
    """
    if data != "synthcaps":
        return {"data": data}
    import hashlib

    from .data import synthcaps

    folder = synthcaps.ensure_synthcaps(preset)
    return {"data": "synthcaps", "config": json.loads((folder / "config.json").read_text()),
            "splits_sha256": hashlib.sha256((folder / "sources.json").read_bytes()).hexdigest()[:16]}


# ---------------------------------------------------------------------------------------------
# Self-supervised training
# ---------------------------------------------------------------------------------------------
def semantic_train_step(model, opt, wave: torch.Tensor, generator: torch.Generator,
                        grad_clip: float = 1.0) -> dict[str, float]:
    """One AdamW step on contrastive + MLM + commitment losses (Chapter 4). Returns the losses as floats."""
    model.train()
    out = model(wave, generator)
    opt.zero_grad(set_to_none=True)
    out.loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    opt.step()
    return {k: float(v.detach()) for k, v in out._asdict().items()}


@torch.no_grad()
def evaluate_semantic(model: SemanticModel, waves: torch.Tensor, batch_size: int = 8, seed: int = 0) -> dict[str, float]:
    """Held-out losses and accuracies, with fixed masks, averaged over clips (Chapter 4).

    The quantizer's EMA codebook is not updated (eval mode), so validation changes nothing.
    """
    model.eval()
    device = next(model.parameters()).device
    g = torch.Generator().manual_seed(seed)  # the same masks at every validation
    totals: dict[str, float] = {}
    for chunk in waves.split(batch_size):
        out = model.losses(chunk.to(device), g)
        for k, v in out._asdict().items():
            totals[k] = totals.get(k, 0.0) + float(v) * len(chunk)
    return {k: v / len(waves) for k, v in totals.items()}


def train_semantic(preset: Preset, args: argparse.Namespace, runtime: Runtime) -> Run:
    """The `semantic` subcommand of `python -m musiclm_mini.train` (Chapter 4)."""
    cfg, tc = preset.semantic, preset.train
    torch.manual_seed(tc.seed)  # same initial weights on every rank
    model = SemanticModel(cfg).to(runtime.device)
    # betas and weight decay of wav2vec 2.0 / w2v-BERT pre-training
    opt = torch.optim.AdamW(model.parameters(), lr=tc.learning_rate, betas=(0.9, 0.98), weight_decay=0.01)
    model_ddp = wrap_ddp(model, runtime)
    torch.manual_seed(tc.seed + runtime.rank)  # dropout

    train_waves, val_waves = load_splits(preset, args.data)
    crop = int(cfg.crop_seconds * cfg.sample_rate)
    val_clips = val_waves[:16]
    if runtime.is_main:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "data.json").write_text(json.dumps(data_fingerprint(preset, args.data), indent=1) + "\n")

    def step_fn(step: int) -> dict[str, float]:
        wave = codec_batch(train_waves, tc.batch_size, crop, step, tc.seed, runtime.rank, runtime.world_size)
        return semantic_train_step(model_ddp, opt, wave.to(runtime.device), step_generator(tc.seed, step, runtime.rank),
                                   tc.grad_clip)

    def validate() -> dict[str, float]:
        figures = evaluate_semantic(unwrap(model), val_clips)
        return {k: figures[k] for k in ("contrastive", "mlm", "contrastive_accuracy", "mlm_accuracy",
                                         "target_perplexity")}

    run = Run(name=f"semantic-{preset.name}", out_dir=args.out, config=semantic_checkpoint_config(preset.name, cfg),
              model=model, optimizers={"adamw": opt}, runtime=runtime, steps=tc.steps, base_lr=tc.learning_rate,
              warmup=tc.warmup_steps, val_every=tc.val_every, checkpoint_every=tc.checkpoint_every, seed=tc.seed,
              quiet=args.quiet)
    return fit(run, step_fn, validate, resume=args.resume)


# ---------------------------------------------------------------------------------------------
# k-means: semantic tokens and the MFCC baseline
# ---------------------------------------------------------------------------------------------
@torch.no_grad()
def layer_embeddings(model: SemanticModel, waves: torch.Tensor, layer: int | None = None,
                     batch_size: int = 16) -> torch.Tensor:
    """Every frame's embedding from MLM layer `layer` for clips (N, T) -> (N * T', D) (Chapter 4)."""
    device = next(model.parameters()).device
    model.eval()
    return torch.cat([model.embed(w.to(device), layer).flatten(0, 1).cpu() for w in waves.split(batch_size)])


def read_training_record(run_dir: Path) -> dict:
    """Step, seconds and validation history of a semantic run, from its checkpoint (Chapter 4)."""
    from .checkpoint import load_checkpoint

    state = load_checkpoint(run_dir).train_state or {}
    log = run_dir / "log.jsonl"
    losses = [json.loads(ln) for ln in log.read_text().splitlines() if ln] if log.exists() else []
    return {"step": state.get("step"), "elapsed_seconds": state.get("elapsed_seconds"),
            "validation": state.get("history", []),
            "train": [r for r in losses if "validation" not in r]}


def train_kmeans(preset: Preset, args: argparse.Namespace, runtime: Runtime) -> dict:
    """The `kmeans` subcommand: export the semantic run, fit both k-means, probe them (Chapter 4)."""
    from .checkpoint import export_weights
    from .kmeans import KMeans, MfccTokenizer, save_kmeans
    from .semantic import SemanticTokenizer
    from .token_probes import format_probe_table, synthcaps_probes

    cfg, seed = preset.semantic, preset.train.seed
    source = Path(os.environ.get("MUSICLM_SEMANTIC_RUN", f"runs/semantic-{preset.name}"))
    out = Path(args.out)
    seen = json.loads((source / "data.json").read_text()) if (source / "data.json").exists() else None
    now = data_fingerprint(preset, args.data)
    if seen != now:
        raise CheckpointError(f"{source} was trained on another version of the data ({seen} != {now}): "
                              f"train it again with `python -m musiclm_mini.train semantic --preset {preset.name}`")
    export_weights(source, out)  # half-precision weights + config, no optimizer state
    model = load_semantic_model(str(out), preset.name, runtime.device, cfg)
    train_waves, _ = load_splits(preset, args.data)

    frames = layer_embeddings(model, train_waves)  # (N T', D)
    kmeans = KMeans.fit(frames, cfg.num_clusters, seed=seed)
    meta = {"preset": preset.name, "layer": cfg.embedding_layer, "train_frames": len(frames), "seed": seed}
    save_kmeans(str(out / "kmeans"), kmeans, {**meta, "features": "w2v-bert"})
    mfcc = MfccTokenizer.fit(train_waves, cfg, seed=seed)
    save_kmeans(str(out / "mfcc-kmeans"), mfcc.kmeans, {**meta, "features": "mfcc+deltas (39)"})

    record = {**read_training_record(source), "data": now}
    tokenizers = {"w2v-BERT": SemanticTokenizer(model, kmeans), "MFCC": mfcc}
    record["probes"] = synthcaps_probes(preset, tokenizers) if args.data == "synthcaps" else []
    (out / "record.json").write_text(json.dumps(record, indent=1) + "\n")
    if not args.quiet and record["probes"]:
        print(format_probe_table(record["probes"]))
    return record
