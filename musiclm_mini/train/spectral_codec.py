"""Training the spectral codec: `python -m musiclm_mini.train spectral-codec --preset tiny` (Chapter 3).

The same command trains the `magnitude-codec` (`python -m musiclm_mini.train magnitude-codec`), whose decoder
writes magnitudes only: its loss compares them with the input's (`magnitude_losses`), no waveform is built.

Not in MusicLM: the `tiny` preset's CPU codec (`tokenizers/spectral_codec.py`). One step is
SoundStream's (`train/codec.py`) with Vocos' reconstruction loss: an L1 distance between log-mel
spectrograms at several resolutions, which is also what the book's mel distance measures. The STFT
discriminator joins at `SpectralCodecTraining.adversarial_start`.
"""
from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from functools import lru_cache

import torch
import torchaudio

from .. import components
from ..components import checkpoint_config
from ..config import Preset
from ..tokenizers.codec_losses import STFTDiscriminator, feature_matching_loss, hinge_generator_loss
from ..tokenizers.spectral_codec import SpectralCodec
from .codec import codec_batch, judge_levels, level_figures, load_splits, record_data, update_codec
from .distributed import Runtime, unwrap, wrap_ddp
from .loop import Run, fit, fit_options


@dataclass(frozen=True)
class SpectralCodecTraining:
    """Training settings of the spectral codec (not its identity: changing them keeps checkpoints loadable)."""

    crop_seconds: float = 1.0
    warmup_steps: int = 200
    betas: tuple[float, float] = (0.8, 0.99)  # Vocos' AdamW betas
    mel_windows: tuple[int, ...] = (512, 1024, 2048)
    weight_mel: float = 15.0
    # Linear-frequency STFT loss at long windows: 64 mel bands cannot see harmonics, a 4096-sample window can.
    stft_windows: tuple[int, ...] = (2048, 4096)
    weight_stft: float = 10.0
    # Phase coherence without a discriminator: instantaneous frequency and group delay (APNet's idea).
    weight_phase: float = 10.0
    # The magnitude codec ("vocoder" synthesis): L1 of log-magnitudes and spectral convergence, at its own window.
    weight_log_magnitude: float = 15.0
    weight_convergence: float = 10.0
    # ... and L1 of log-mels of those magnitudes: the book's mel distance hears mid-level bands that L1 over 961
    # bins, ruled by the quiet ones, barely trains (session 9: 1.67 nats there against 1.16 for the spectral codec).
    weight_magnitude_mel: float = 0.0
    # ... and L1 of log-spectra in one band per semitone (E1-C8), which resolve the fundamentals that 64 mels blur
    # below ~700 Hz: session 9 found the transcriber hears 3.5x more octave/fifth notes in this codec than in the
    # originals (harmonics out of balance with their fundamentals).
    weight_semitone: float = 0.0
    # A decoder-only fine-tune: the encoder and quantizer frozen, so the tokens (and the stages trained on them) stay.
    frozen_tokens: bool = False
    weight_adversarial: float = 1.0
    weight_feature: float = 5.0
    # On one CPU thread the STFT discriminator costs more than the codec: no adversarial phase yet.
    adversarial_start: int = 1_000_000
    disc_channels: int = 16
    disc_window: int = 1024
    codec_audio_scores: int = 300  # --data synthcaps+codec: clips of corpus scores SynthCaps never uses
    codec_audio_per_score: int = 4


TRAINING = SpectralCodecTraining()


@lru_cache(maxsize=8)
def _mel(sample_rate: int, window: int) -> torchaudio.transforms.MelSpectrogram:
    return torchaudio.transforms.MelSpectrogram(sample_rate=sample_rate, n_fft=window, hop_length=window // 4,
                                                n_mels=64, power=2.0)


def log_mel_loss(x: torch.Tensor, y: torch.Tensor, sample_rate: int, windows: tuple[int, ...]) -> torch.Tensor:
    """Mean over windows of mean |log mel(x) - log mel(y)|, power mels as in the book's mel distance (Chapter 3)."""
    total = x.new_zeros(())
    for w in windows:
        mel = _mel(sample_rate, w).to(x.device)
        total = total + (torch.log(mel(x) + 1e-5) - torch.log(mel(y) + 1e-5)).abs().mean()
    return total / len(windows)


def stft_loss(x: torch.Tensor, y: torch.Tensor, windows: tuple[int, ...]) -> torch.Tensor:
    """Multi-resolution STFT loss (Yamamoto et al., 2020): spectral convergence + L1 of log magnitudes (Chapter 3).

    Spectral convergence, || |X| - |Y| ||_F / || |X| ||_F, is dominated by the loudest bins, the partials of
    the notes; at a long window each partial is a narrow peak, so a smeared or noisy partial costs much.
    """
    total = x.new_zeros(())
    for w in windows:
        window = torch.hann_window(w, device=x.device)
        mx = torch.stft(x, w, w // 4, window=window, return_complex=True).abs()  # (B, F, N)
        my = torch.stft(y, w, w // 4, window=window, return_complex=True).abs()
        convergence = torch.linalg.vector_norm(mx - my) / (torch.linalg.vector_norm(mx) + 1e-7)
        total = total + convergence + (torch.log(mx + 1e-5) - torch.log(my + 1e-5)).abs().mean()
    return total / len(windows)


def _wrapped_difference_loss(zx: torch.Tensor, zy: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Weighted mean of 1 - cos(angle(zy) - angle(zx)): 0 when the phase differences agree, wrap-free."""
    z = zy * zx.conj()
    cosine = z.real / (z.abs() + 1e-4)
    return (weight * (1 - cosine)).sum() / (weight.sum() + 1e-7)


def phase_derivative_loss(x: torch.Tensor, y: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
    """How far y's phase *derivatives* are from x's, weighted by x's magnitude (Chapter 3).

    Along time, the phase advance between frames is the instantaneous frequency of a partial: a held
    note advances steadily, a noisy one at random. Along frequency it is the group delay: when the
    note starts. Both ignore the absolute phase, which no decoder can know from magnitudes.
    """
    window = torch.hann_window(n_fft, device=x.device)
    sx = torch.stft(x, n_fft, hop, window=window, return_complex=True)  # (B, F, N)
    sy = torch.stft(y, n_fft, hop, window=window, return_complex=True)
    mx = sx.abs()
    in_time = _wrapped_difference_loss(sx[..., 1:] * sx[..., :-1].conj(), sy[..., 1:] * sy[..., :-1].conj(),
                                       mx[..., 1:] * mx[..., :-1])
    in_freq = _wrapped_difference_loss(sx[:, 1:] * sx[:, :-1].conj(), sy[:, 1:] * sy[:, :-1].conj(),
                                       mx[:, 1:] * mx[:, :-1])
    return in_time + in_freq


@lru_cache(maxsize=4)
def _mel_filters(bins: int, sample_rate: int, n_mels: int = 64) -> torch.Tensor:
    """(F, n_mels) triangular mel filters over an STFT's `bins` frequencies, as the book's mel distance uses."""
    return torchaudio.functional.melscale_fbanks(bins, 0.0, sample_rate / 2, n_mels, sample_rate)


@lru_cache(maxsize=4)
def semitone_filters(bins: int, sample_rate: int, low: int = 28, high: int = 108) -> torch.Tensor:
    """(F, high - low + 1) triangular filters, one per MIDI pitch low..high (E1-C8), over an STFT's `bins` (Chapter 3).

    Each triangle spans a semitone either side of its pitch on a linear-frequency axis, but never less than one
    bin either side: at 12.5 Hz bins the lowest semitones (2-3 Hz apart) share their nearest bins.
    """
    freqs = torch.linspace(0, sample_rate / 2, bins, dtype=torch.float64)  # (F,)
    pitches = torch.arange(low, high + 1, dtype=torch.float64)
    centre = 440.0 * 2 ** ((pitches - 69) / 12)  # (P,)
    half_width = (centre * (2 ** (1 / 12) - 1)).clamp(min=float(freqs[1]))  # (P,): at least one bin
    weights = (1 - (freqs[:, None] - centre[None]).abs() / half_width[None]).clamp(min=0)  # (F, P)
    return weights.float()


def _log_band_l1(magnitude: torch.Tensor, magnitude_hat: torch.Tensor, filters: torch.Tensor) -> torch.Tensor:
    """Mean |log band power difference|, bands = columns of `filters` (F, M) over power spectra (B, F, N)."""
    band, band_hat = (torch.einsum("bfn,fm->bmn", m.pow(2), filters) for m in (magnitude, magnitude_hat))
    return (torch.log(band_hat + 1e-5) - torch.log(band + 1e-5)).abs().mean()


def magnitude_losses(logmag_hat: torch.Tensor, magnitude: torch.Tensor, sample_rate: int | None = None,
                     semitones: bool = False) -> dict[str, torch.Tensor]:
    """Decoded log-magnitudes (B, F, N) against the input's magnitudes (B, F, N) (Chapter 3): mean |log difference|,
    which hears quiet bins, and spectral convergence, ruled by the partials of the notes. With `sample_rate`, also
    "mel": mean |log-mel difference| of the two, 64 power mels from the same bins; with `semitones` too,
    "semitone": the same over one band per semitone (`semitone_filters`)."""
    log_l1 = (logmag_hat - torch.log(magnitude + 1e-5)).abs().mean()
    magnitude_hat = torch.exp(logmag_hat)
    convergence = torch.linalg.vector_norm(magnitude - magnitude_hat) / (torch.linalg.vector_norm(magnitude) + 1e-7)
    losses = {"log_magnitude": log_l1, "convergence": convergence}
    if sample_rate is not None:
        bins = magnitude.shape[-2]
        losses["mel"] = _log_band_l1(magnitude, magnitude_hat, _mel_filters(bins, sample_rate).to(magnitude.device))
        if semitones:
            filters = semitone_filters(bins, sample_rate).to(magnitude.device)
            losses["semitone"] = _log_band_l1(magnitude, magnitude_hat, filters)
    return losses


def spectral_codec_step(codec, disc, opt_g, opt_d, wave: torch.Tensor, step: int, sample_rate: int,
                        training: SpectralCodecTraining = TRAINING) -> dict[str, float]:
    """One generator update (and a discriminator update once adversarial training has started) (Chapter 3)."""
    codec.train()
    # reconstruction (B, T) (or log-magnitudes (B, F, N)), codes (B, Q', T'), commit loss
    out = codec(wave, frozen_tokens=True) if training.frozen_tokens else codec(wave)
    if unwrap(codec).cfg.synthesis == "vocoder":  # the magnitude codec: no waveform, no discriminator
        bands = training.weight_magnitude_mel > 0 or training.weight_semitone > 0
        losses = {**magnitude_losses(out.audio, unwrap(codec).magnitudes(wave), sample_rate if bands else None,
                                     semitones=training.weight_semitone > 0), "commit": out.commit_loss}
        losses["total"] = (training.weight_log_magnitude * losses["log_magnitude"]
                           + training.weight_convergence * losses["convergence"] + out.commit_loss
                           + training.weight_magnitude_mel * losses.get("mel", 0.0)
                           + training.weight_semitone * losses.get("semitone", 0.0))
        return update_codec(codec, None, opt_g, opt_d, losses, wave, out)
    losses = {"mel": log_mel_loss(wave, out.audio, sample_rate, training.mel_windows), "commit": out.commit_loss}
    total = training.weight_mel * losses["mel"] + out.commit_loss
    if training.weight_stft > 0:
        losses["stft"] = stft_loss(wave, out.audio, training.stft_windows)
        total = total + training.weight_stft * losses["stft"]
    if training.weight_phase > 0:
        cfg = unwrap(codec).cfg
        losses["phase"] = phase_derivative_loss(wave, out.audio, cfg.n_fft, cfg.frame_hop)
        total = total + training.weight_phase * losses["phase"]
    adversarial = step >= training.adversarial_start
    if adversarial:  # the generator's loss reads the bare discriminator: its gradients there are thrown away
        fake_logits, fake_features = unwrap(disc)(out.audio)
        with torch.no_grad():
            _, real_features = unwrap(disc)(wave)
        losses["adversarial"] = hinge_generator_loss(fake_logits)
        losses["feature"] = feature_matching_loss(real_features, fake_features)
        total = total + training.weight_adversarial * losses["adversarial"] + training.weight_feature * losses["feature"]
    losses["total"] = total
    return update_codec(codec, disc if adversarial else None, opt_g, opt_d, losses, wave, out)


def training_audio(preset: Preset, data: str, training: SpectralCodecTraining = TRAINING) -> tuple[torch.Tensor, torch.Tensor]:
    """Training and validation waveforms; `--data synthcaps+codec` adds the codec-only audio to training."""
    base = "synthcaps" if data == "synthcaps+codec" else data
    train, val = load_splits(preset, base)
    if data == "synthcaps+codec":
        from ..data.codec_audio import codec_audio_waveforms, ensure_codec_audio

        folder = ensure_codec_audio(preset, training.codec_audio_scores, training.codec_audio_per_score, verbose=True)
        train = torch.cat([train, codec_audio_waveforms(folder)[:, : train.shape[1]]])
    return train, val


def note_figures(preset: Preset, waves: torch.Tensor):
    """A validation check with an independent ear: basic-pitch's note F1 of reconstructions of whole
    validation clips against their SynthCaps scores, and its ratio to the originals' (Chapter 3)."""
    from ..data import synthcaps
    from ..evaluation.transcribe import score_against_synthcaps

    sr, folder = preset.data.sample_rate, synthcaps.dataset_dir(preset)
    labels = synthcaps.split_labels(preset, "validation")[: len(waves)]

    def mean_f1(audio: torch.Tensor) -> float:
        return sum(r["f1"] for r in score_against_synthcaps(audio.numpy(), sr, folder, labels)) / len(labels)

    original = mean_f1(waves)

    def figures(codec) -> dict[str, float]:
        f1 = mean_f1(codec.reconstruct(waves))
        return {"note_f1": f1, "note_f1_ratio": f1 / original}

    return figures


def training_settings(items: list[str] | None) -> SpectralCodecTraining:
    """TRAINING with `--training FIELD=VALUE` overrides, e.g. weight_phase=0 (Chapter 3's loss comparison)."""
    import ast

    training = TRAINING
    for item in items or []:
        key, _, text = item.partition("=")
        if key not in {f.name for f in dataclasses.fields(training)}:
            raise ValueError(f"--training {item}: no field {key!r} in SpectralCodecTraining")
        value = ast.literal_eval(text)
        training = dataclasses.replace(training, **{key: tuple(value) if isinstance(value, list) else value})
    return training


@lru_cache(maxsize=2)
def _validation_notes(preset: Preset):
    """`note_figures` on the first 8 validation clips, built once per preset: the originals' transcription
    is the same for every codec a campaign judges."""
    from ..data import synthcaps

    return note_figures(preset, synthcaps.split_waveforms(preset, "validation")[:8])


def judge_codec(codec, preset: Preset) -> dict[str, float]:
    """The campaign's validation figures for a codec: `judge_levels` (mel distance and SI-SNR on 8 clips of
    4 s) and note F1 on the same 8 whole clips (Chapter 3)."""
    return {**judge_levels(codec, preset), **_validation_notes(preset)(codec)}


def train_spectral_codec(preset: Preset, args: argparse.Namespace, runtime: Runtime,
                         component: str = "spectral-codec") -> Run:
    """The `spectral-codec` (and `magnitude-codec`) subcommand of `python -m musiclm_mini.train` (Chapter 3)."""
    cfg, tc = components.component(component).config_for(preset), preset.train
    training = training_settings(getattr(args, "training", None))
    torch.manual_seed(tc.seed)  # same initial weights on every rank
    codec = SpectralCodec(cfg).to(runtime.device)
    disc = STFTDiscriminator(channels=training.disc_channels, window=training.disc_window).to(runtime.device)
    opt_g = torch.optim.AdamW(codec.parameters(), lr=tc.learning_rate, betas=training.betas)
    opt_d = torch.optim.AdamW(disc.parameters(), lr=tc.learning_rate, betas=training.betas)
    codec_ddp, disc_ddp = wrap_ddp(codec, runtime), wrap_ddp(disc, runtime)
    torch.manual_seed(tc.seed + runtime.rank)

    train_waves, val_waves = training_audio(preset, args.data, training)
    if runtime.is_main:
        record_data(preset, "synthcaps" if args.data == "synthcaps+codec" else args.data, args.out, resume=args.resume)
    crop = int(training.crop_seconds * cfg.sample_rate)
    val_clips = val_waves[:8, : 4 * cfg.sample_rate]  # as SoundStream's: 8 held-out clips, 4 s each

    def step_fn(step: int) -> dict[str, float]:
        wave = codec_batch(train_waves, tc.batch_size, crop, step, tc.seed, runtime.rank, runtime.world_size)
        return spectral_codec_step(codec_ddp, disc_ddp, opt_g, opt_d, wave.to(runtime.device), step,
                                   cfg.sample_rate, training)

    notes = note_figures(preset, val_waves[:8]) if args.data != "sines" else None

    def validate() -> dict[str, float]:
        return {**level_figures(codec, val_clips), **(notes(codec) if notes else {}), "cpu_minutes": run.elapsed / 60}

    run = Run(name=f"{component}-{preset.name}", out_dir=args.out,
              config=checkpoint_config(component, cfg, preset.name), model=codec,
              optimizers={"generator": opt_g, "discriminator": opt_d}, runtime=runtime, steps=tc.steps,
              base_lr=tc.learning_rate, warmup=training.warmup_steps, val_every=tc.val_every,
              checkpoint_every=tc.checkpoint_every, seed=tc.seed, extra_modules={"discriminator": disc},
              quiet=args.quiet)
    return fit(run, step_fn, validate, **fit_options(args))


def train_magnitude_codec(preset: Preset, args: argparse.Namespace, runtime: Runtime) -> Run:
    """`python -m musiclm_mini.train magnitude-codec`: the spectral codec that writes magnitudes for the phase vocoder."""
    return train_spectral_codec(preset, args, runtime, component="magnitude-codec")
