"""Training semantic tokens: w2v-BERT, then k-means, and the MFCC baseline (Chapter 4; MusicLM Sec. 3.1).

    python -m musiclm_mini.train w2v-bert --preset tiny && python -m musiclm_mini.train ship w2v-bert --preset tiny
    python -m musiclm_mini.train kmeans --preset tiny   && python -m musiclm_mini.train ship kmeans --preset tiny
    python -m musiclm_mini.train mfcc --preset tiny     && python -m musiclm_mini.train ship mfcc --preset tiny

`w2v-bert` trains the w2v-BERT-style `SemanticModel` on training clips with the shared loop
(`loop.fit`: checkpoints, exact resume with --resume). `kmeans` fits k-means on the embeddings of
MLM layer `embedding_layer` of the *shipped* (float16) w2v-BERT, so the shipped tokenizer is
self-consistent, records that model's fingerprint, and measures the tokens on held-out test clips
with `token_probes.synthcaps_probes`. `mfcc` fits the baseline's k-means on MFCC frames.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from ..config import Preset
from ..errors import CheckpointError
from ..components import checkpoint_config, fingerprint, load
from ..tokenizers.w2v_bert import SemanticModel
from .codec import codec_batch, load_splits
from .distributed import Runtime, unwrap, wrap_ddp
from .loop import Run, fit, fit_options, step_generator


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

    from ..data import synthcaps

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


def train_w2v_bert(preset: Preset, args: argparse.Namespace, runtime: Runtime) -> Run:
    """The `w2v-bert` subcommand of `python -m musiclm_mini.train` (Chapter 4)."""
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

    run = Run(name=f"w2v-bert-{preset.name}", out_dir=args.out, config=checkpoint_config("w2v-bert", cfg, preset.name),
              model=model, optimizers={"adamw": opt}, runtime=runtime, steps=tc.steps, base_lr=tc.learning_rate,
              warmup=tc.warmup_steps, val_every=tc.val_every, checkpoint_every=tc.checkpoint_every, seed=tc.seed,
              quiet=args.quiet)
    return fit(run, step_fn, validate, **fit_options(args))


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


def check_data(preset: Preset, data: str, folder: Path) -> dict:
    """The data fingerprint now, refusing a w2v-BERT trained on another version of the data (Chapter 4)."""
    now = data_fingerprint(preset, data)
    seen = json.loads((folder / "data.json").read_text()) if (folder / "data.json").exists() else None
    if seen is not None and seen != now:
        raise CheckpointError(f"{folder} was trained on another version of the data ({seen} != {now}): "
                              f"train it again with `python -m musiclm_mini.train w2v-bert --preset {preset.name}`")
    return now


def fit_steps(args: argparse.Namespace, default: int = 30) -> int:
    """Lloyd iterations of a k-means: `--steps` if given (a quick check), else `default`."""
    return default if args.steps is None else max(1, args.steps)


def train_kmeans(preset: Preset, args: argparse.Namespace, runtime: Runtime) -> dict:
    """The `kmeans` subcommand: k-means on the shipped w2v-BERT's embeddings, then the probes (Chapter 4)."""
    from ..checkpoint import save_checkpoint
    from ..components import checkpoint_dir
    from ..tokenizers.kmeans import KMeans
    from ..tokenizers.token_probes import format_probe_table, synthcaps_probes
    from ..tokenizers.w2v_bert import SemanticTokenizer

    cfg, seed, out = preset.semantic, preset.train.seed, Path(args.out)
    folder = checkpoint_dir("w2v-bert", preset.name, args.checkpoints)
    model = load("w2v-bert", preset.name, folder, device=runtime.device)
    now = check_data(preset, args.data, folder)
    train_waves, _ = load_splits(preset, args.data)
    frames = layer_embeddings(model, train_waves, cfg.embedding_layer)  # (N T', D)
    kmeans = KMeans.fit(frames, cfg.num_clusters, iters=fit_steps(args), seed=seed, layer=cfg.embedding_layer)
    config = checkpoint_config("kmeans", kmeans.cfg, preset.name, {"w2v-bert": fingerprint(model)})
    save_checkpoint(out, kmeans.state_dict(), {**config, "fitted": {"train_frames": len(frames), "seed": seed}})
    probes = synthcaps_probes(preset, {"w2v-BERT": SemanticTokenizer(model, kmeans)}) if args.data == "synthcaps" else []
    (out / "record.json").write_text(json.dumps({"data": now, "probes": probes}, indent=1) + "\n")
    if not args.quiet and probes:
        print(format_probe_table(probes))
    return {"probes": probes}


def train_mfcc(preset: Preset, args: argparse.Namespace, runtime: Runtime) -> dict:
    """The `mfcc` subcommand: the baseline's k-means on MFCC frames of the training clips (Chapter 4)."""
    from ..checkpoint import save_checkpoint
    from ..tokenizers.mfcc import MfccTokenizer

    out, seed = Path(args.out), preset.train.seed
    train_waves, _ = load_splits(preset, args.data)
    mfcc = MfccTokenizer.fit(train_waves, preset.semantic, seed=seed, iters=fit_steps(args))
    config = checkpoint_config("mfcc", mfcc.kmeans.cfg, preset.name)
    save_checkpoint(out, mfcc.kmeans.state_dict(), {**config, "fitted": {"clips": len(train_waves), "seed": seed}})
    return {"clusters": mfcc.vocab_size}


def measure_w2v_bert(model: SemanticModel, preset: Preset, root=None) -> dict:
    """What `ship w2v-bert` records: held-out losses and accuracies on 16 validation and test clips (Chapter 4)."""
    from ..data import synthcaps

    return {split: evaluate_semantic(model, torch.as_tensor(synthcaps.split_waveforms(preset, split))[:16].float())
            for split in ("validation", "test")}
