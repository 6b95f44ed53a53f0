"""The spectral codec (Chapter 3): SoundStream's token interface, frame-rate layers, a training step that learns."""
import dataclasses

import pytest
import torch

from musiclm_mini.config import RVQConfig, get_preset
from musiclm_mini.errors import AudioError
from musiclm_mini.tokenizers.soundstream import SoundStream
from musiclm_mini.tokenizers.spectral_codec import SpectralCodec, SpectralCodecConfig, spectral_codec_config
from musiclm_mini.train.codec import sine_clips
from musiclm_mini.train.spectral_codec import (TRAINING, log_mel_loss, magnitude_losses, phase_derivative_loss,
                                              semitone_filters, spectral_codec_step, stft_loss)

SMALL = SpectralCodecConfig(dim=32, encoder_blocks=(1, 1), decoder_blocks=(1, 1), rvq=RVQConfig(4, 32, 16))


def test_same_token_interface_as_the_presets_soundstream():
    preset = get_preset("tiny")
    spectral, soundstream = SpectralCodec(spectral_codec_config(preset)), SoundStream(preset.codec)
    wave = 0.1 * torch.randn(2, 24_000 + 100)  # not a whole number of frames
    a, b = spectral.encode(wave), soundstream.encode(wave)
    assert a.shape == b.shape == (2, 8, 26) and spectral.hop == soundstream.hop == 960
    assert int(a.max()) < preset.codec.rvq.codebook_size
    assert spectral.decode(a[:, :3]).shape == (2, 26 * 960)  # any depth decodes
    assert spectral.reconstruct(wave).shape == wave.shape


def test_decoder_layers_run_at_frame_rate_only():
    codec = SpectralCodec(SMALL)
    lengths = []
    positions = lambda m, i, o: lengths.append(o.shape[-2] if isinstance(m, torch.nn.Linear) else o.shape[-1])
    hooks = [m.register_forward_hook(positions) for m in codec.decoder.modules()
             if isinstance(m, (torch.nn.Conv1d, torch.nn.ConvTranspose1d, torch.nn.Linear))]
    codec.decode(torch.zeros(1, 4, 10, dtype=torch.long))  # 10 token frames = 9,600 samples
    for h in hooks:
        h.remove()
    assert max(lengths) == 10 * SMALL.upsample  # 40 STFT frames, never 9,600 samples


def test_bad_input_is_refused_with_a_clear_error():
    codec = SpectralCodec(SMALL)
    with pytest.raises(AudioError, match="NaN"):
        codec.encode(torch.full((1, 1000), float("nan")))
    with pytest.raises(AudioError, match="empty"):
        codec.encode(torch.zeros(1, 0))
    with pytest.raises(ValueError, match="lie in"):
        codec.decode(torch.full((1, 2, 5), 32))
    with pytest.raises(ValueError, match="levels|1 <= q"):
        codec.decode(torch.zeros(1, 5, 5, dtype=torch.long))


def test_log_mel_loss_is_zero_for_identical_audio_and_grows_with_noise():
    x = sine_clips(2, 0.5, 24_000, seed=0)
    assert float(log_mel_loss(x, x, 24_000, (512, 1024))) == pytest.approx(0.0, abs=1e-6)
    small = float(log_mel_loss(x, x + 1e-3 * torch.randn_like(x), 24_000, (512, 1024)))
    large = float(log_mel_loss(x, x + 1e-2 * torch.randn_like(x), 24_000, (512, 1024)))
    assert 0 < small < large


def test_a_few_steps_lower_the_loss_on_fixed_clips():
    torch.manual_seed(0)
    codec = SpectralCodec(SMALL)
    opt = torch.optim.AdamW(codec.parameters(), lr=3e-3)
    wave = sine_clips(4, 0.4, 24_000, seed=3)
    training = dataclasses.replace(TRAINING, mel_windows=(512,))
    first = spectral_codec_step(codec, None, opt, None, wave, 0, 24_000, training)["mel"]
    for step in range(1, 40):
        last = spectral_codec_step(codec, None, opt, None, wave, step, 24_000, training)["mel"]
    assert last < 0.7 * first


def test_stft_loss_is_zero_for_identical_audio_and_grows_with_noise():
    x = sine_clips(2, 0.5, 24_000, seed=0)
    assert float(stft_loss(x, x, (1024, 2048))) == pytest.approx(0.0, abs=1e-6)
    small = float(stft_loss(x, x + 1e-3 * torch.randn_like(x), (1024, 2048)))
    large = float(stft_loss(x, x + 1e-2 * torch.randn_like(x), (1024, 2048)))
    assert 0 < small < large


def test_phase_derivative_loss_ignores_the_absolute_phase_but_not_the_frequency():
    t = torch.arange(12_000) / 24_000
    tone = lambda hz, phase: torch.sin(2 * torch.pi * hz * t + phase)[None]  # (1, T)
    shifted = float(phase_derivative_loss(tone(440, 0.0), tone(440, 1.3), 960, 240))
    detuned = float(phase_derivative_loss(tone(440, 0.0), tone(452, 0.0), 960, 240))
    noisy = float(phase_derivative_loss(tone(440, 0.0), torch.randn(1, 12_000), 960, 240))
    assert shifted < 0.1 < 0.3 < detuned and noisy > 0.8, (shifted, detuned, noisy)  # edge frames: not 0


# --- the magnitude codec: magnitudes in and out, the phase from the phase vocoder ---------------------------------
SMALL_VOCODER = dataclasses.replace(SMALL, n_fft=1920, frame_hop=480, synthesis="vocoder")


def test_the_magnitude_codec_keeps_the_token_interface_and_writes_no_phase():
    from musiclm_mini.tokenizers.spectral_codec import magnitude_codec_config
    preset = get_preset("tiny")
    codec = SpectralCodec(magnitude_codec_config(preset))
    wave = 0.1 * torch.randn(2, 24_000 + 100)
    tokens = codec.encode(wave)
    assert tokens.shape == (2, 8, 26) and codec.cfg.bins == 961 and codec.cfg.upsample == 2
    assert codec.decoder.head.out_features == codec.cfg.bins  # log-magnitude only
    assert codec.reconstruct(wave).shape == wave.shape
    out = codec(wave)  # training pass: log-magnitudes, shaped as the magnitudes the encoder reads
    assert out.audio.shape == codec.magnitudes(wave).shape == (2, 961, 26 * 2)
    with pytest.raises(ValueError, match="synthesis"):
        SpectralCodec(dataclasses.replace(SMALL, synthesis="griffin"))


def test_a_few_magnitude_steps_lower_its_loss_and_the_shipped_configs_are_unchanged():
    torch.manual_seed(0)
    codec = SpectralCodec(SMALL_VOCODER)
    opt = torch.optim.AdamW(codec.parameters(), lr=3e-3)
    wave = sine_clips(4, 0.4, 24_000, seed=3)
    first = spectral_codec_step(codec, None, opt, None, wave, 0, 24_000)
    assert {"log_magnitude", "convergence", "commit", "total"} <= set(first)
    for step in range(1, 40):
        last = spectral_codec_step(codec, None, opt, None, wave, step, 24_000)
    assert last["log_magnitude"] < 0.7 * first["log_magnitude"]
    assert spectral_codec_config(get_preset("tiny")).synthesis == "phase"  # the shipped codec writes its phase


def test_the_magnitude_mel_term_is_zero_on_a_copy_and_sees_a_missing_band():
    wave = sine_clips(2, 0.5, 24_000, seed=1)
    codec = SpectralCodec(SMALL_VOCODER)
    magnitude = codec.magnitudes(wave)  # (B, F, N)
    assert "mel" not in magnitude_losses(torch.log(magnitude + 1e-5), magnitude)  # only when asked
    assert magnitude_losses(torch.log(magnitude), magnitude, 24_000)["mel"] < 1e-3
    dimmed = magnitude.clone()
    dimmed[:, magnitude.shape[1] // 2:] *= 0.01  # the upper half of the spectrum 40 dB down
    assert magnitude_losses(torch.log(dimmed), magnitude, 24_000)["mel"] > 0.5
    torch.manual_seed(0)
    opt = torch.optim.AdamW(codec.parameters(), lr=3e-3)
    training = dataclasses.replace(TRAINING, weight_magnitude_mel=15.0)
    losses = spectral_codec_step(codec, None, opt, None, wave, 0, 24_000, training)
    assert losses["mel"] > 0 and losses["total"] > 15.0 * losses["mel"]


def test_semitone_filters_peak_at_their_pitch_and_leave_none_empty():
    filters = semitone_filters(961, 24_000)  # 12.5 Hz bins, E1 (MIDI 28) .. C8 (108)
    assert filters.shape == (961, 81) and bool((filters.sum(0) > 0).all())
    assert int(filters[:, 69 - 28].argmax()) == round(440 / 12.5)  # A4's band is centred on 440 Hz
    magnitude = SpectralCodec(SMALL_VOCODER).magnitudes(sine_clips(2, 0.5, 24_000, seed=2))
    losses = magnitude_losses(torch.log(magnitude), magnitude, 24_000, semitones=True)
    assert losses["semitone"] < 1e-3 and losses["mel"] < 1e-3


def test_frozen_tokens_train_the_decoder_only_and_keep_every_token():
    torch.manual_seed(0)
    codec = SpectralCodec(SMALL_VOCODER)
    wave = sine_clips(4, 0.4, 24_000, seed=3)
    codec(wave)  # a normal training pass first: k-means initialises the codebooks
    codec.eval()
    tokens = codec.encode(wave)
    frozen = {k: v.clone() for k, v in codec.state_dict().items() if not k.startswith("decoder.")}
    decoder = {k: v.clone() for k, v in codec.decoder.state_dict().items()}
    opt = torch.optim.AdamW(codec.parameters(), lr=3e-3)
    training = dataclasses.replace(TRAINING, frozen_tokens=True, weight_semitone=10.0)
    for step in range(3):
        losses = spectral_codec_step(codec, None, opt, None, wave, step, 24_000, training)
    assert losses["semitone"] > 0 and losses["commit"] == 0
    assert all(torch.equal(v, codec.state_dict()[k]) for k, v in frozen.items())  # encoder, codebooks, EMA state
    assert any(not torch.equal(v, codec.decoder.state_dict()[k]) for k, v in decoder.items())
    codec.eval()
    assert torch.equal(codec.encode(wave), tokens)
