"""Training and measuring MuLan: `python -m musiclm_mini.train mulan --preset tiny` (Chapter 5).

Paper: MusicLM Sec. 3.1 (MuLan tokens); MuLan (Huang et al., 2022) Sec. 3.

One step (CLIP-style, Radford et al. 2021; MuLan, Huang et al. 2022):

    B SynthCaps clips --random window crop--> (B, window) --audio tower--> (B, 128)
    their captions (one of several wordings) --cached MiniLM + projection--> (B, 128)
    symmetric InfoNCE over the (B, B) similarity matrix -> AdamW

Each rank contrasts its own batch (no all-gather of negatives under DDP: simpler, a little weaker).
After the last step the RVQ of MuLan tokens is fitted on audio embeddings of the training clips and
the held-out test split is measured (retrieval recall@k, zero-shot tagging) into `metrics.json`.
`python -m musiclm_mini.train ship mulan` then copies the weights into the package, re-measured.
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from ..components import checkpoint_config
from ..config import Preset
from ..files import atomic_write
from ..tokenizers.mulan import MuLan, audio_windows
from .distributed import Runtime, wrap_ddp
from .loop import Run, batch_indices, fit, fit_options, step_generator


# ---------------------------------------------------------------------------------------------
# Data: SynthCaps clips and several wordings of their captions
# ---------------------------------------------------------------------------------------------
def caption_variants(label: dict, n_extra: int = 3, seed: int = 0) -> list[str]:
    """The caption, its aspect list, and `n_extra` shuffled subsets of the aspects (Chapter 5).

    Text augmentation: the tower should learn what is said, not how one template says it.
    """
    aspects = list(label.get("aspects") or [])
    variants = [label["caption"]]
    if aspects:
        variants.append(", ".join(aspects))
        rng = np.random.default_rng(seed)
        for _ in range(n_extra):
            k = int(rng.integers(max(1, len(aspects) // 2), len(aspects) + 1))
            variants.append(", ".join(rng.permutation(aspects)[:k].tolist()))
    return list(dict.fromkeys(variants))


def load_pairs(preset: Preset, split: str) -> tuple[torch.Tensor, list[dict]]:
    """SynthCaps waveforms (N, T) and labels of a split: train, validation or test (Chapter 5).

    The data set is generated first if missing (Chapter 1).
    """
    from ..data import synthcaps

    waves = torch.as_tensor(synthcaps.split_waveforms(preset, split)).float()
    labels = synthcaps.split_labels(preset, split)
    if len(labels) != waves.shape[0]:
        raise ValueError(f"SynthCaps {split}: {waves.shape[0]} clips but {len(labels)} labels")
    return waves, labels


def mulan_batch(waves: torch.Tensor, variants: list[list[str]], batch_size: int, window: int, step: int,
                seed: int, rank: int = 0, world_size: int = 1) -> tuple[torch.Tensor, list[str]]:
    """Random window crops (B, window) and one random wording of each caption, a pure function of
    (seed, step, rank) so training resumes exactly (Chapter 5)."""
    idx = batch_indices(waves.shape[0], batch_size, step, seed, rank, world_size)
    g = step_generator(seed, step, rank)
    wave = audio_windows(waves[idx], window, 1)[:, 0] if waves.shape[1] < window else waves[idx]
    starts = torch.randint(0, wave.shape[1] - window + 1, (batch_size,), generator=g).tolist()
    crops = torch.stack([w[s:s + window] for w, s in zip(wave, starts)])  # (B, window)
    pick = torch.randint(0, 1 << 30, (batch_size,), generator=g).tolist()
    texts = [variants[i][p % len(variants[i])] for i, p in zip(idx, pick)]
    return crops, texts


# ---------------------------------------------------------------------------------------------
# Measuring: retrieval and zero-shot tagging
# ---------------------------------------------------------------------------------------------
def retrieval_recall(text_emb: torch.Tensor, audio_emb: torch.Tensor, ks=(1, 5, 10)) -> dict[str, float]:
    """Text-to-music recall@k: how often caption i ranks clip i in its top k (Chapter 5).

    text_emb, audio_emb: (N, D) unit-norm, pair i matching. Chance level is k / N.
    """
    sims = text_emb @ audio_emb.t()  # (N, N)
    rank = (sims > sims.diag()[:, None]).sum(1)  # 0 = the right clip came first
    n = len(sims)
    out = {}
    for k in ks:
        out[f"recall@{k}"] = float((rank < k).float().mean())
        out[f"chance@{k}"] = min(1.0, k / n)
    out["median_rank"] = float(rank.float().median()) + 1
    return out


# Text prompts for zero-shot tagging: label value -> prompt. Short phrases, not training captions.
TAG_PROMPTS = {
    "style": {"chorale": "a chorale", "chamber": "chamber music", "church organ": "church organ music",
              "piano solo": "solo piano", "folk": "a folk tune", "rock": "rock music",
              "electronic": "electronic music", "jazz": "jazz", "orchestral": "an orchestra"},
    "mood": {m: f"{m} music" for m in ("calm", "cheerful", "happy", "energetic", "sad", "mysterious",
                                       "dramatic", "aggressive")},
    "tempo_bucket": {"slow": "slow tempo", "medium": "medium tempo", "fast": "fast tempo"},
    "drums": {True: "music with drums", False: "music without drums"},
}


def zero_shot_tagging(model: MuLan, audio_emb: torch.Tensor, labels: list[dict], tag: str,
                      prompts: dict | None = None) -> dict[str, float]:
    """Tag clips by their most similar prompt; accuracy beside two chance levels (Chapter 5).

    `chance_uniform` = 1 / number of classes; `chance_majority` = always answering the most common
    class of these clips (the stronger baseline when classes are unbalanced).
    """
    prompts = prompts or TAG_PROMPTS[tag]
    values = list(prompts)
    with torch.no_grad():
        prompt_emb = model.embed_text([prompts[v] for v in values])  # (K, D)
    guess = (audio_emb @ prompt_emb.t()).argmax(1).tolist()
    truth = [lab[tag] for lab in labels]
    counts = {v: truth.count(v) for v in values}
    return {"accuracy": float(np.mean([values[g] == t for g, t in zip(guess, truth)])),
            "chance_uniform": 1.0 / len(values), "chance_majority": max(counts.values()) / len(truth),
            "classes": len(values)}


@torch.no_grad()
def evaluate(model: MuLan, waves: torch.Tensor, labels: list[dict]) -> dict:
    """Retrieval and zero-shot tagging on held-out clips (Chapter 5)."""
    model.eval()
    audio = model.embed_audio(waves)  # (N, D)
    text = model.embed_text([lab["caption"] for lab in labels])  # (N, D)
    out = {"clips": len(labels), "retrieval": retrieval_recall(text, audio)}
    out["tagging"] = {tag: zero_shot_tagging(model, audio, labels, tag) for tag in TAG_PROMPTS}
    out["mean_cosine_matching"] = float((audio * text).sum(-1).mean())  # MCC-like (Chapter 7)
    return out


@torch.no_grad()
def rvq_training_vectors(model: MuLan, waves: torch.Tensor) -> torch.Tensor:
    """Audio embeddings the RVQ is fitted on: every window of every clip, and each clip's average,
    so tokens are good both for one-window crops and for whole clips (Chapter 5). -> (N, D)."""
    model.eval()
    windows = audio_windows(waves, model.window, model.hop)  # (N, W, window)
    N, W, _ = windows.shape
    per_window = model.embed_windows(windows.reshape(N * W, -1)).reshape(N, W, -1)
    clip = torch.nn.functional.normalize(per_window.mean(1), dim=-1)
    return torch.cat([per_window.reshape(N * W, -1), clip])


# ---------------------------------------------------------------------------------------------
# The stage
# ---------------------------------------------------------------------------------------------
def train_mulan(preset: Preset, args: argparse.Namespace, runtime: Runtime) -> Run:
    """The `mulan` subcommand of `python -m musiclm_mini.train` (Chapter 5)."""
    if args.data != "synthcaps":
        raise ValueError("MuLan needs captions: only --data synthcaps is supported")
    cfg, tc = preset.mulan, preset.train
    torch.manual_seed(tc.seed)
    model = MuLan(cfg).to(runtime.device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=tc.learning_rate, weight_decay=0.01)
    model_ddp = wrap_ddp(model, runtime)

    train_waves, train_labels = load_pairs(preset, "train")
    val_waves, val_labels = load_pairs(preset, "validation")
    variants = [caption_variants(lab, seed=i) for i, lab in enumerate(train_labels)]
    if model.text_tower.frozen:  # one pass of the frozen backbone over every wording, then cached
        model.text_tower.features([t for v in variants for t in v])

    def step_fn(step: int) -> dict[str, float]:
        model.train()
        crops, texts = mulan_batch(train_waves, variants, tc.batch_size, model.window, step, tc.seed,
                                   runtime.rank, runtime.world_size)
        loss = model_ddp(crops.to(runtime.device), model.text_tower.features(texts))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, tc.grad_clip)
        opt.step()
        return {"loss": float(loss.detach()), "temperature": 1.0 / float(model.scale().detach().exp())}

    def validate() -> dict[str, float]:
        res = evaluate(model, val_waves, val_labels)
        model.train()
        return {k: v for k, v in res["retrieval"].items() if k.startswith("recall")} | {
            "style_acc": res["tagging"]["style"]["accuracy"]}

    run = Run(name=f"mulan-{preset.name}", out_dir=args.out, config=checkpoint_config("mulan", cfg, preset.name),
              model=model, optimizers={"adamw": opt}, runtime=runtime, steps=tc.steps, base_lr=tc.learning_rate,
              warmup=tc.warmup_steps, val_every=tc.val_every, checkpoint_every=tc.checkpoint_every,
              seed=tc.seed, quiet=args.quiet)
    fit(run, step_fn, validate, **fit_options(args))
    if runtime.is_main:
        finish(run, model, train_waves, preset)
    return run


def finish(run: Run, model: MuLan, train_waves: torch.Tensor, preset: Preset) -> dict:
    """Fit the MuLan-token RVQ on training audio, save, and measure on the test split (Chapter 5)."""
    from ..checkpoint import save_checkpoint

    errors = model.fit_rvq(rvq_training_vectors(model, train_waves), seed=run.seed)
    save_checkpoint(run.out_dir, model.state_dict(), run.config, run.train_state())
    test_waves, test_labels = load_pairs(preset, "test")
    metrics = {"preset": preset.name, "steps": run.step, "train_seconds": round(run.elapsed, 1),
               "rvq_mse_per_level": [round(float(e), 5) for e in errors],
               "test": evaluate(model, test_waves, test_labels),
               "validation_history": run.history}
    atomic_write(run.out_dir / "metrics.json", lambda p: p.write_text(json.dumps(metrics, indent=2) + "\n"))
    print(json.dumps(metrics["test"], indent=2))
    return metrics


def measure_mulan(model: MuLan, preset: Preset, root=None) -> dict:
    """What `ship mulan` records: retrieval and tagging of the shipped weights on the test split (Chapter 5)."""
    return {"test": evaluate(model, *load_pairs(preset, "test"))}
