"""SoundStream (Chapter 3): shapes, causality, the paper's numbers, losses, metrics and the shipped codec."""
import dataclasses

import pytest
import torch

from musiclm_mini.components import checkpoint_dir, load
from musiclm_mini.config import CodecConfig, RVQConfig, get_preset
from musiclm_mini.errors import AudioError, CheckpointError
from musiclm_mini.tokenizers.codec_eval import default_levels, evaluate_levels, mel_distance, si_snr
from musiclm_mini.tokenizers.codec_losses import (STFTDiscriminator, feature_matching_loss, generator_losses,
                                                  hinge_discriminator_loss, hinge_generator_loss, spectral_loss)
from musiclm_mini.tokenizers.soundstream import SoundStream, count_parameters

torch.set_num_threads(1)
SMALL = CodecConfig(strides=(2, 4), channels=4, embedding_dim=16, rvq=RVQConfig(4, 32, 16),
                    spectral_windows=(64, 128), disc_channels=4, stft_window=128)


def small_codec(**changes) -> SoundStream:
    torch.manual_seed(0)
    return SoundStream(dataclasses.replace(SMALL, **changes))


# ---------------------------------------------------------------------------------------------
# Shapes and causality
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("causal", [True, False])
def test_shapes(causal):
    codec = small_codec(causal=causal).eval()
    wave = torch.randn(3, 100) * 0.1  # 100 samples: not a multiple of the hop (8)
    tokens = codec.encode(wave)
    assert tokens.shape == (3, 4, 13) and tokens.dtype == torch.long  # ceil(100 / 8) frames
    assert codec.decode(tokens).shape == (3, 13 * 8)
    assert codec.decode(tokens[:, :2]).shape == (3, 104)  # fewer levels, same length
    assert codec.reconstruct(wave, n_q=1).shape == wave.shape
    out = codec.train()(wave)
    assert out.audio.shape == wave.shape and out.commit_loss.ndim == 0
    assert 1 <= out.codes.shape[1] <= 4  # quantizer dropout picks the depth


def test_fewer_levels_decode_the_prefix_of_the_tokens():
    codec = small_codec().eval()
    wave = torch.randn(2, 64) * 0.1
    tokens = codec.encode(wave)
    assert torch.equal(codec.encode(wave, n_q=2), tokens[:, :2])
    assert not torch.allclose(codec.decode(tokens[:, :1]), codec.decode(tokens))


def test_causal_codec_ignores_the_future():
    codec = small_codec(causal=True).eval()
    x = torch.randn(1, 256)
    y = x.clone()
    y[:, 128:] = torch.randn(1, 128)  # change only the second half
    z_x, z_y = codec.encoder(x), codec.encoder(y)  # (1, 32, D), frames of 8 samples
    assert torch.allclose(z_x[:, :16], z_y[:, :16], atol=1e-6)  # frames ending before sample 128
    assert not torch.allclose(z_x[:, 16:], z_y[:, 16:])
    d_x, d_y = codec.decoder(z_x), codec.decoder(z_y)
    assert torch.allclose(d_x[:, :128], d_y[:, :128], atol=1e-6)


def test_non_causal_codec_looks_ahead():
    codec = small_codec(causal=False).eval()
    x = torch.randn(1, 256)
    y = x.clone()
    y[:, 128:] = torch.randn(1, 128)
    assert not torch.allclose(codec.encoder(x)[:, 15], codec.encoder(y)[:, 15])


def test_bad_inputs_raise_clear_errors():
    codec = small_codec().eval()
    with pytest.raises(AudioError, match="NaN"):
        codec.encode(torch.tensor([[0.0, float("nan")] * 8]))
    with pytest.raises(AudioError, match="shape"):
        codec.encode(torch.zeros(1, 1, 16))
    with pytest.raises(AudioError, match="empty"):
        codec.encode(torch.zeros(1, 0))
    with pytest.raises(ValueError, match="1 <= q <= 4"):
        codec.decode(torch.zeros(1, 5, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[0, 32\)"):
        codec.decode(torch.full((1, 2, 3), 32))
    with pytest.raises(ValueError, match="embedding_dim"):
        SoundStream(dataclasses.replace(SMALL, embedding_dim=8))


# ---------------------------------------------------------------------------------------------
# The paper's codec
# ---------------------------------------------------------------------------------------------
def test_paper_codec_has_the_papers_rates():
    cfg = get_preset("paper").codec
    assert (cfg.sample_rate, cfg.strides, cfg.hop, cfg.frame_rate) == (24_000, (3, 4, 5, 8), 480, 50)
    assert (cfg.rvq.num_quantizers, cfg.rvq.codebook_size) == (12, 1024)
    assert cfg.bitrate == 6000 and cfg.tokens_per_second == 600
    torch.manual_seed(0)
    codec = SoundStream(cfg).eval()
    assert len(codec.quantizer.layers) == 12 and codec.quantizer.codebooks.shape == (12, 1024, 512)
    tokens = codec.encode(torch.randn(1, 4800) * 0.1)  # 0.2 s
    assert tokens.shape == (1, 12, 10)  # 50 Hz x 12 levels: 600 tokens per second
    assert codec.decode(tokens).shape == (1, 4800)
    assert 5_000_000 < count_parameters(codec) < 50_000_000


def test_tiny_codec_rates():
    cfg = get_preset("tiny").codec
    assert cfg.hop == 960 and cfg.frame_rate == 25 and cfg.bitrate == 25 * 8 * 8


# ---------------------------------------------------------------------------------------------
# Losses and metrics
# ---------------------------------------------------------------------------------------------
def test_spectral_loss_is_zero_only_for_a_copy():
    x = torch.randn(2, 2000)
    assert spectral_loss(x, x, 24_000, (64, 256)).item() < 1e-2  # up to the eps inside the sqrt
    assert spectral_loss(x, 0.5 * x, 24_000, (64, 256)).item() > 0.1


def test_discriminator_shapes_and_hinge_losses():
    disc = STFTDiscriminator(channels=4, window=128, layers=2)
    logits, feats = disc(torch.randn(2, 1000))
    assert logits.shape[:2] == (2, 1) and len(feats) == 4
    assert hinge_discriminator_loss(torch.full((3,), 2.0), torch.full((3,), -2.0)).item() == 0.0
    assert hinge_discriminator_loss(torch.zeros(3), torch.zeros(3)).item() == 2.0
    assert hinge_generator_loss(torch.full((3,), -1.0)).item() == 2.0
    assert feature_matching_loss(feats, feats).item() == 0.0


def test_generator_losses_terms():
    cfg = dataclasses.replace(SMALL, weight_waveform=0.5)
    x, y = torch.randn(2, 1000), torch.randn(2, 1000)
    without = generator_losses(cfg, x, y, torch.tensor(0.0))
    assert set(without) == {"spectral", "commit", "waveform", "total"}
    disc = STFTDiscriminator(channels=4, window=128, layers=2)
    with_d = generator_losses(cfg, x, y, torch.tensor(0.0), disc)
    assert {"adversarial", "feature"} <= set(with_d) and with_d["total"] > without["total"]


def test_si_snr_and_mel_distance():
    torch.manual_seed(0)
    x = torch.randn(2, 24_000)
    assert (si_snr(x, x) > 60).all()
    noisy = x + 0.1 * torch.randn_like(x)  # noise at -20 dB
    assert si_snr(x, noisy).mean().item() == pytest.approx(20.0, abs=0.5)
    assert torch.allclose(si_snr(x, 3 * noisy), si_snr(x, noisy), atol=1e-3)  # scale-invariant
    assert si_snr(x, torch.randn_like(x)).mean().item() < -20  # unrelated signals
    assert mel_distance(x, x, 24_000).abs().max().item() < 1e-5
    assert (mel_distance(x, noisy, 24_000) > 0).all()
    assert default_levels(8) == [1, 2, 4, 8] and default_levels(12) == [1, 2, 4, 8, 12]


# ---------------------------------------------------------------------------------------------
# The shipped codec on held-out SynthCaps clips
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def test_clips():
    from musiclm_mini.data import synthcaps

    preset = get_preset("tiny")
    synthcaps.ensure_synthcaps(preset)
    return synthcaps.split_waveforms(preset, "test")[:8, : 4 * preset.codec.sample_rate]  # 8 clips, 4 s


# Bounds the shipped codec meets with a margin (its figures are in the checkpoint README) and a
# codec that learned nothing misses by far.
# Shipped: mel distance 1.86 -> 1.62 and SI-SNR -6.5 -> -2.3 dB from 1 to 8 levels. Untrained: mel
# distance above 5 and SI-SNR near -75 dB; a collapsed codec (same output for every input) sits near
# mel 2.6 whatever the depth.
MAX_MEL_DISTANCE_ALL_LEVELS = 1.75
MIN_SI_SNR_ALL_LEVELS = -4.0
MIN_MEL_GAIN_1_TO_ALL = 0.1


def codec_passes(figures: dict) -> list[str]:
    problems = []
    levels = sorted(figures)
    mel = [figures[q]["mel_distance"] for q in levels]
    snr = [figures[q]["si_snr"] for q in levels]
    if not all(b < a for a, b in zip(mel, mel[1:])):
        problems.append(f"mel distance does not fall with levels: {mel}")
    if not all(b > a for a, b in zip(snr, snr[1:])):
        problems.append(f"SI-SNR does not rise with levels: {snr}")
    if mel[-1] > MAX_MEL_DISTANCE_ALL_LEVELS:
        problems.append(f"mel distance at all levels {mel[-1]:.3f} > {MAX_MEL_DISTANCE_ALL_LEVELS}")
    if mel[0] - mel[-1] < MIN_MEL_GAIN_1_TO_ALL:
        problems.append(f"all levels improve mel distance by only {mel[0] - mel[-1]:.3f} over one level")
    if snr[-1] < MIN_SI_SNR_ALL_LEVELS:
        problems.append(f"SI-SNR at all levels {snr[-1]:.2f} dB < {MIN_SI_SNR_ALL_LEVELS}")
    return problems


def test_shipped_codec_never_saw_the_test_scores():
    import json

    from musiclm_mini.data import synthcaps

    record = json.loads((checkpoint_dir("codec", "tiny") / "data.json").read_text())
    trained_on = {s for s, split in record["sources"].items() if split == "train"}
    folder = synthcaps.ensure_synthcaps(get_preset("tiny"))
    test_scores = {s for s, split in json.loads((folder / "sources.json").read_text()).items() if split == "test"}
    assert test_scores and not test_scores & trained_on


@pytest.mark.slow
def test_shipped_codec_improves_with_every_level(test_clips):
    codec = load("codec", "tiny")
    figures = evaluate_levels(codec, test_clips)
    assert sorted(figures) == [1, 2, 4, 8]
    assert codec_passes(figures) == []


@pytest.mark.slow
def test_untrained_codec_fails_the_same_bar(test_clips):
    torch.manual_seed(0)
    codec = SoundStream(get_preset("tiny").codec)
    codec(test_clips[:2, :24_000])  # one training pass initialises the codebooks by k-means
    figures = evaluate_levels(codec.eval(), test_clips)
    assert codec_passes(figures) != []


def test_shipped_codec_refuses_another_preset():
    with pytest.raises(CheckpointError, match="another architecture .*embedding_dim: checkpoint has 64, expected 256"):
        load("codec", "colab", checkpoint_dir("codec", "tiny"))


# ---------------------------------------------------------------------------------------------
# The exercise
# ---------------------------------------------------------------------------------------------
def test_exercise_grader():
    import torch.nn.functional as F

    from musiclm_mini.exercises import check_causal_conv
    from musiclm_mini.exercises.soundstream import reference_causal_conv

    def stub(x, weight, bias, stride, dilation):
        raise NotImplementedError

    def centred(x, weight, bias, stride, dilation):  # right length, but looks ahead
        pad = (weight.shape[-1] - 1) * dilation + 1 - stride
        return F.conv1d(F.pad(x, (pad // 2, pad - pad // 2 + (-x.shape[-1] % stride))), weight, bias,
                        stride=stride, dilation=dilation)

    def no_padding(x, weight, bias, stride, dilation):
        return F.conv1d(x, weight, bias, stride=stride, dilation=dilation)

    from musiclm_mini.tokenizers.soundstream import Conv1d

    def with_the_package(x, weight, bias, stride, dilation):  # the chapter's Conv1d, not the exercise's reference
        conv = Conv1d(weight.shape[1], weight.shape[0], weight.shape[2], stride, dilation, causal=True)
        with torch.no_grad():
            conv.weight.copy_(weight)
            conv.bias.copy_(bias)
            return conv(x)

    assert check_causal_conv(with_the_package, verbose=False)
    assert reference_causal_conv is not with_the_package
    for wrong in (stub, centred, no_padding):
        assert not check_causal_conv(wrong, verbose=False)
