"""Training the melody embedder: `python -m musiclm_mini.train melody-embedder --preset tiny` (Chapter 8).

Paper: MusicLM Sec. 6 and appendix C (a ViT trained with the semi-hard triplet loss on audio pairs
with matching melodies and different acoustics).

One step:

    B melodies (B/2 and an excerpt of the same score for each) x V renderings, the same 4 s of each
    tune (melody/dataset.py)                                                    (B*V, n_mels, frames)
    --augment (swell, noise, smear)--> --log, standardise--> ViT --> (B*V, embed_dim)
    --semi-hard triplet loss, mined in the batch (melody/triplet.py)--> AdamW

Validation: same-melody retrieval on the held-out melodies of the validation split (SynthCaps'
validation scores and further ones, never heard in training), across instruments, from the hum and the
whistle, and into full arrangements of the tune, recall@1 and @5 against chance (`melody/retrieval.py`).
The test split is not read here.
After the last step the RVQ of the melody tokens is fitted on embeddings of the training clips
(`melody/tokens.py`), and the tokens' own retrieval is measured on validation.
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from ..components import checkpoint_config
from ..config import Preset
from ..files import atomic_write
from ..melody.augment import augment, degrade
from ..melody.dataset import MelodyGroups
from ..melody.baselines import baseline_embeddings
from ..melody.frontend import log_standardise, melody_windows
from ..melody.retrieval import same_melody_retrieval
from ..melody.tokens import dequantize, fit_melody_rvq, quantize
from ..melody.triplet import semi_hard_triplet_loss
from ..melody.vit import MelodyEmbedder, melody_embedder_config
from .distributed import Runtime, wrap_ddp
from .loop import Run, batch_indices, fit, fit_options, step_generator

RENDERINGS_PER_MELODY = 3  # V: each melody of a batch brings 3 of its 6 renderings (positives for each other)
# A step takes batch_size / 2 melodies and, for each, another excerpt of the same score (`MelodyGroups.with_siblings`).


def load_eval_split(preset: Preset, split: str) -> tuple[torch.Tensor, list[dict]]:
    """(N, T) float waveforms and labels of the melody set's validation (or test) split (Chapter 8)."""
    from ..data.melody_pairs import load_melody_split

    pcm, labels = load_melody_split(preset, split)  # rendered in memory if the melody set is not on disk
    return torch.from_numpy(np.asarray(pcm, dtype=np.float32) / 32768.0), labels


@torch.no_grad()
def evaluate(model: MelodyEmbedder, waves: torch.Tensor, labels: list[dict], tokens: bool = False) -> dict[str, float]:
    """Same-melody retrieval of clips (N, T) (Chapter 8): recall@1/@5 per query kind, and chance.

    `tokens=True`: of the melody tokens instead, each window's codes turned back into its vector.
    """
    model.eval()
    emb = torch.cat([model.embed(w) for w in waves.split(16)])  # (N, W, D)
    if tokens:
        emb = torch.nn.functional.normalize(dequantize(model, quantize(model, emb)), dim=-1)
    return same_melody_retrieval(emb, labels)


def baselines(model: MelodyEmbedder, waves: torch.Tensor, labels: list[dict]) -> dict[str, dict[str, float]]:
    """The same retrieval from the key profile and the chroma sequence, no learning (Chapter 8)."""
    m = model.cfg.melody
    windows = melody_windows(waves, m.window_seconds, m.hop_seconds)  # (N, W, S)
    return {name: same_melody_retrieval(emb, labels) for name, emb in baseline_embeddings(windows).items()}


def train_melody_embedder(preset: Preset, args: argparse.Namespace, runtime: Runtime) -> Run:
    """The `melody-embedder` subcommand of `python -m musiclm_mini.train` (Chapter 8)."""
    if args.data != "synthcaps":
        raise ValueError("the melody embedder trains on the melody set rendered from SynthCaps' scores: --data synthcaps")
    from ..data.melody_pairs import ensure_melody_set

    cfg, tc = melody_embedder_config(preset), preset.train
    torch.manual_seed(tc.seed)
    model = MelodyEmbedder(cfg).to(runtime.device)
    opt = torch.optim.AdamW(model.parameters(), lr=tc.learning_rate, weight_decay=0.05)
    model_ddp = wrap_ddp(model, runtime)
    folder = ensure_melody_set(preset, verbose=runtime.is_main)
    train = MelodyGroups.from_folder(folder, "train", cfg.mel)
    val_waves, val_labels = load_eval_split(preset, "validation")

    def step_fn(step: int) -> dict[str, float]:
        model.train()
        g = step_generator(tc.seed, step, runtime.rank)
        first = batch_indices(len(train.groups), tc.batch_size // 2, step, tc.seed, runtime.rank, runtime.world_size)
        groups = train.with_siblings(first, g)  # up to `batch_size` melodies, in pairs from one score
        power, labels = train.batch(groups, RENDERINGS_PER_MELODY, cfg.frames, g)  # (B*V, M, frames), (B*V,)
        x = log_standardise(augment(power, g, cfg.mel.frame_rate)).to(runtime.device)
        loss, stats = semi_hard_triplet_loss(model_ddp(x), labels.to(runtime.device), cfg.margin)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
        opt.step()
        return {"loss": float(loss.detach()), **stats}

    def validate() -> dict[str, float]:
        figures = evaluate(model, val_waves, val_labels)
        model.train()
        return figures

    run = Run(name=f"melody-embedder-{preset.name}", out_dir=args.out,
              config=checkpoint_config("melody-embedder", cfg, preset.name), model=model,
              optimizers={"adamw": opt}, runtime=runtime, steps=tc.steps, base_lr=tc.learning_rate,
              warmup=tc.warmup_steps, val_every=tc.val_every, checkpoint_every=tc.checkpoint_every,
              seed=tc.seed, quiet=args.quiet)
    fit(run, step_fn, validate, **fit_options(args))
    if runtime.is_main and run.step == tc.steps:
        finish(run, model, train, val_waves, val_labels, preset)
    return run


@torch.no_grad()
def training_embeddings(model: MelodyEmbedder, train: MelodyGroups, chunk: int = 256) -> torch.Tensor:
    """Embeddings of the first and last 4 s of every training clip (Chapter 8): (2 N, D), for the RVQ."""
    model.eval()
    frames, total = model.cfg.frames, train.logmel.shape[-1]
    out = []
    for start in (0, total - frames):
        for block in train.logmel[..., start:start + frames].split(chunk):
            out.append(model(log_standardise(block.float().exp())))
    return torch.cat(out)


def finish(run: Run, model: MelodyEmbedder, train: MelodyGroups, val_waves, val_labels, preset: Preset) -> dict:
    """Fit the melody-token RVQ on training embeddings, save, and measure the tokens on validation (Chapter 8)."""
    from ..checkpoint import save_checkpoint

    errors = fit_melody_rvq(model, training_embeddings(model, train), seed=run.seed)
    save_checkpoint(run.out_dir, model.state_dict(), run.config, run.train_state())
    metrics = {"preset": preset.name, "steps": run.step, "train_seconds": round(run.elapsed, 1),
               "train_melodies": len(train.groups), "rvq_mse_per_level": [round(float(e), 5) for e in errors],
               "validation": run.history[-1] if run.history else None,
               "validation_tokens": evaluate(model, val_waves, val_labels, tokens=True),
               "validation_baselines": baselines(model, val_waves, val_labels),
               "validation_history": run.history}
    atomic_write(run.out_dir / "metrics.json", lambda p: p.write_text(json.dumps(metrics, indent=2) + "\n"))
    return metrics


def degrade_voices(waves: torch.Tensor, labels: list[dict], seed: int = 0) -> torch.Tensor:
    """The hums and whistles recorded by a phone in a room (`augment.degrade`, 10 dB SNR); instruments clean."""
    voices = [i for i, lab in enumerate(labels) if lab["variant"] in ("hum", "whistle")]
    out = waves.clone()
    out[voices] = degrade(waves[voices], torch.Generator().manual_seed(seed))
    return out


def measure_melody_embedder(model: MelodyEmbedder, preset: Preset, root=None) -> dict:
    """Retrieval of an embedder, its tokens and the baselines on the validation split (solo renderings and
    arrangements), clean and with the hums and whistles degraded (Chapter 8).

    Validation, not test: the test split's melodies are kept for the chapter's one measured look.
    """
    waves, labels = load_eval_split(preset, "validation")
    noisy = degrade_voices(waves, labels)
    return {"validation": evaluate(model, waves, labels), "validation_tokens": evaluate(model, waves, labels, tokens=True),
            "validation_baselines": baselines(model, waves, labels),
            "validation_degraded_voices": evaluate(model, noisy, labels),
            "validation_degraded_voices_baselines": baselines(model, noisy, labels)}
