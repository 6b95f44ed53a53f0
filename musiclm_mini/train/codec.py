"""Training SoundStream: `python -m musiclm_mini.train codec --preset tiny` (Chapter 3; SoundStream Sec. 3.4-3.5).

One step (SoundStream Sec. 3.5, with the discriminator joining at `CodecConfig.adversarial_start`):

    crops (B, T) --codec--> reconstruction, commitment loss
    generator:      spectral + commitment (+ waveform) (+ adversarial + feature matching) -> Adam
    discriminator:  hinge loss on the crops and their reconstructions                        -> Adam

The codec alone (model.safetensors) is what later chapters load; the discriminator and both
optimizers live in the training state, so a checkpoint directory resumes exactly.
"""
from __future__ import annotations

import argparse
import json
import math

import torch

from ..tokenizers.codec_eval import evaluate_levels
from ..tokenizers.codec_losses import discriminator_from_config, discriminator_loss, generator_losses
from ..config import CodecConfig, Preset
from ..errors import CheckpointError
from ..components import checkpoint_config
from ..tokenizers.soundstream import SoundStream
from .distributed import Runtime, unwrap, wrap_ddp
from .loop import Run, batch_indices, fit, fit_options, step_generator


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------
def sine_clips(num_clips: int, seconds: float, sample_rate: int, seed: int) -> torch.Tensor:
    """A quick synthetic data set: each clip a few random notes of harmonic tones, (N, T) (Chapter 3).

    For tests and smoke runs; real training uses SynthCaps (Chapter 1).
    """
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * sample_rate)) / sample_rate  # (T,)
    clips = torch.zeros(num_clips, t.numel())
    for i in range(num_clips):
        n_notes = int(torch.randint(2, 6, (1,), generator=g))
        for _ in range(n_notes):
            f0 = 110 * 2 ** (float(torch.randint(0, 36, (1,), generator=g)) / 12)  # A2 .. A5
            onset = float(torch.rand(1, generator=g)) * seconds
            env = torch.exp(-3 * (t - onset).clamp(min=0)) * (t >= onset)
            for h in range(1, 4):
                clips[i] += env * torch.sin(2 * math.pi * f0 * h * t) / (h * n_notes)
    return 0.5 * clips / clips.abs().amax(dim=1, keepdim=True).clamp(min=1e-3)


def load_splits(preset: Preset, data: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Training and validation waveforms (N, T) for `--data synthcaps` or `--data sines` (Chapter 3)."""
    if data == "sines":
        sr = preset.codec.sample_rate
        return sine_clips(32, 2.0, sr, seed=1), sine_clips(4, 2.0, sr, seed=2)
    if data != "synthcaps":
        raise ValueError(f"unknown --data {data!r}: use synthcaps or sines")
    from ..data import synthcaps

    synthcaps.ensure_synthcaps(preset)
    return synthcaps.split_waveforms(preset, "train"), synthcaps.split_waveforms(preset, "validation")


def record_data(preset: Preset, data: str, out_dir, resume: bool = False) -> None:
    """Write `data.json` beside the checkpoint: which data set (version, score -> split) trained it (Chapter 3).

    With it, a later test can prove that its "held-out" clips come from scores the codec never saw.
    Resuming checks the record instead: a run must not continue on a regenerated data set.
    """
    record = {"data": data}
    if data == "synthcaps":
        from ..data import synthcaps

        folder = synthcaps.dataset_dir(preset)
        record["config"] = json.loads((folder / "config.json").read_text())
        record["sources"] = json.loads((folder / "sources.json").read_text())
    path = out_dir / "data.json"
    if resume and path.exists() and (out_dir / "model.safetensors").exists():
        if json.loads(path.read_text()) != json.loads(json.dumps(record)):
            raise CheckpointError(f"{out_dir} was trained on another version of the data ({path}); "
                                  "resuming would mix data sets: start a new --out instead")
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")


def codec_batch(waves: torch.Tensor, batch_size: int, crop: int, step: int, seed: int,
                rank: int = 0, world_size: int = 1) -> torch.Tensor:
    """This rank's random crops at `step`, a pure function of (seed, step, rank): (B, crop) (Chapter 3)."""
    idx = batch_indices(waves.shape[0], batch_size, step, seed, rank, world_size)
    g = step_generator(seed, step, rank)
    crop = min(crop, waves.shape[1])
    starts = torch.randint(0, waves.shape[1] - crop + 1, (batch_size,), generator=g)
    return torch.stack([waves[i, s : s + crop] for i, s in zip(idx, starts.tolist())])


# ---------------------------------------------------------------------------------------------
# One step
# ---------------------------------------------------------------------------------------------
def codec_train_step(cfg: CodecConfig, codec, discriminator, opt_g, opt_d, wave: torch.Tensor, step: int,
                     grad_clip: float = 1.0) -> dict[str, float]:
    """One generator (and, once adversarial training has started, discriminator) update (Chapter 3)."""
    codec.train()
    out = codec(wave)  # reconstruction (B, T), codes (B, Q', T'), commit loss
    adversarial = cfg.adversarial_start is not None and step >= cfg.adversarial_start
    # The generator's loss reads the bare discriminator: its gradients there are thrown away.
    losses = generator_losses(cfg, wave, out.audio, out.commit_loss, unwrap(discriminator) if adversarial else None)
    return update_codec(codec, discriminator if adversarial else None, opt_g, opt_d, losses, wave, out, grad_clip)


def update_codec(codec, discriminator, opt_g, opt_d, losses: dict, wave: torch.Tensor, out, grad_clip: float = 1.0
                 ) -> dict[str, float]:
    """Step the codec on `losses["total"]`, then (with a discriminator) the discriminator; logged floats (Chapter 3).

    Shared by every codec's training step (SoundStream here, the spectral codec in `spectral_codec.py`).
    """
    opt_g.zero_grad(set_to_none=True)
    losses["total"].backward()
    torch.nn.utils.clip_grad_norm_(codec.parameters(), grad_clip)
    opt_g.step()
    if discriminator is not None:
        # One forward pass on real and fake together, so DDP sees each weight used once.
        opt_d.zero_grad(set_to_none=True)
        losses["discriminator"] = discriminator_loss(discriminator, wave, out.audio)
        losses["discriminator"].backward()
        opt_d.step()
    logged = {k: float(v.detach()) for k, v in losses.items()}
    logged["levels"] = float(out.codes.shape[1])
    return logged


def train_codec(preset: Preset, args: argparse.Namespace, runtime: Runtime) -> Run:
    """The `codec` subcommand of `python -m musiclm_mini.train` (Chapter 3)."""
    cfg, tc = preset.codec, preset.train
    torch.manual_seed(tc.seed)  # same initial weights on every rank
    codec = SoundStream(cfg).to(runtime.device)
    disc = discriminator_from_config(cfg).to(runtime.device)
    opt_g = torch.optim.Adam(codec.parameters(), lr=tc.learning_rate, betas=(0.5, 0.9))  # SoundStream's betas
    opt_d = torch.optim.Adam(disc.parameters(), lr=tc.learning_rate, betas=(0.5, 0.9))
    codec_ddp, disc_ddp = wrap_ddp(codec, runtime), wrap_ddp(disc, runtime)
    torch.manual_seed(tc.seed + runtime.rank)  # quantizer dropout etc. (the RVQ broadcasts its choices)

    train_waves, val_waves = load_splits(preset, args.data)
    if runtime.is_main:
        record_data(preset, args.data, args.out, resume=args.resume)
    crop = int(cfg.crop_seconds * cfg.sample_rate)
    val_clips = val_waves[:8, : 4 * cfg.sample_rate]  # 8 held-out clips, 4 s each: seconds per check

    def step_fn(step: int) -> dict[str, float]:
        wave = codec_batch(train_waves, tc.batch_size, crop, step, tc.seed, runtime.rank, runtime.world_size)
        return codec_train_step(cfg, codec_ddp, disc_ddp, opt_g, opt_d, wave.to(runtime.device), step, tc.grad_clip)

    def validate() -> dict[str, float]:
        return level_figures(codec, val_clips)

    run = Run(name=f"codec-{preset.name}", out_dir=args.out, config=checkpoint_config("codec", cfg, preset.name),
              model=codec, optimizers={"generator": opt_g, "discriminator": opt_d}, runtime=runtime,
              steps=tc.steps, base_lr=tc.learning_rate, warmup=tc.warmup_steps, val_every=tc.val_every,
              checkpoint_every=tc.checkpoint_every, seed=tc.seed, extra_modules={"discriminator": disc},
              quiet=args.quiet)
    return fit(run, step_fn, validate, **fit_options(args))


def level_figures(codec: SoundStream, clips: torch.Tensor) -> dict[str, float]:
    """Mel distance with 1 and all RVQ levels, and SI-SNR with all, on held-out clips (Chapter 3)."""
    q = codec.cfg.rvq.num_quantizers
    res = evaluate_levels(codec, clips, levels=[1, q])
    return {"mel_distance_1": res[1]["mel_distance"], "mel_distance": res[q]["mel_distance"],
            "si_snr": res[q]["si_snr"]}


def judge_levels(codec, preset: Preset) -> dict[str, float]:
    """`level_figures` on 8 validation clips of 4 s: a campaign judge for any codec (Chapter 3)."""
    from ..data import synthcaps

    clips = synthcaps.split_waveforms(preset, "validation")[:8, : 4 * codec.cfg.sample_rate]
    return level_figures(codec, torch.as_tensor(clips).float())


def measure_codec(codec: SoundStream, preset: Preset, root=None) -> dict:
    """What `ship codec` records: `level_figures` on 8 validation and 8 test clips, 4 s each (Chapter 3)."""
    from ..data import synthcaps

    sr = codec.cfg.sample_rate
    return {split: level_figures(codec, torch.as_tensor(synthcaps.split_waveforms(preset, split))[:8, :4 * sr].float())
            for split in ("validation", "test")}
