"""Presets: every size in the book, in one place (all chapters; the `paper` preset is Chapter 1's table).

Scale is one switch. Each component has a frozen dataclass; a `Preset` bundles one of each.

    tiny   CPU, CI and laptops: seconds to minutes per stage.
    colab  one GPU, about an hour per stage.
    paper  the sizes of Agostinelli et al. (2023), field by field (see `paper-numbers.md`).

Pick one with `get_preset("tiny")`, or set `MUSICLM_PRESET=colab`; with neither, `tiny`, whose
checkpoints ship with the book (`colab` on a GPU once its checkpoints ship too).
"""
from __future__ import annotations

import dataclasses
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

PRESET_NAMES = ("tiny", "colab", "paper")
SHIPPED = Path(__file__).parent / "checkpoints"  # the one place shipped weights live (`components.py`)


def setting(default):
    """A field that says how a model is trained or sampled (loss weights, crops, dropout, temperatures),
    not what it is: never part of a checkpoint's identity (`components.architecture`)."""
    return field(default=default, metadata={"identity": False})


def reference(default):
    """A number quoted from the paper, for comparison only: never part of a checkpoint's identity."""
    return field(default=default, metadata={"identity": False, "reference": True})


# Data (Chapter 1) ----------------------------------------------------------------------------
@dataclass(frozen=True)
class DataConfig:
    """SynthCaps and real-data settings (Chapter 1)."""

    sample_rate: int = 24_000  # paper: 24 kHz mono everywhere
    clip_seconds: float = 10.0  # MusicCaps clips are 10 s
    num_clips: int = 320  # SynthCaps clips generated for this preset
    val_fraction: float = 0.1  # fractions of *source scores*, so splits share no score
    test_fraction: float = 0.1
    seed: int = 0
    variants_per_score: int = 4  # clips rendered from each parsed score (parsing is the slow part)
    num_melodies: int = 48  # melody pairs for Chapter 8: melodies, each played and hummed
    melody_instruments: int = 3  # instruments per melody, besides the hummed version
    # The paper's own training set (Sec. 4.2), for reference only: we cannot have it.
    paper_train_hours: int = reference(280_000)
    paper_train_clips: int = reference(5_000_000)


# Quantizers (Chapter 2) ----------------------------------------------------------------------
@dataclass(frozen=True)
class RVQConfig:
    """Residual vector quantizer (Chapter 2): `num_quantizers` levels of `codebook_size` codes."""

    num_quantizers: int = 12
    codebook_size: int = 1024
    dim: int = 128  # dimension of the vectors being quantized
    ema_decay: float = setting(0.99)
    commitment_weight: float = setting(0.25)
    kmeans_init: bool = setting(True)
    dead_code_threshold: float = setting(1.0)  # codes used less than this (EMA count) get restarted
    quantizer_dropout: bool = setting(True)  # train at random bitrates

    @property
    def bits_per_code(self) -> float:
        return math.log2(self.codebook_size)


# SoundStream (Chapter 3) ---------------------------------------------------------------------
@dataclass(frozen=True)
class CodecConfig:
    """SoundStream codec (Chapter 3). The product of `strides` is the hop between frames."""

    sample_rate: int = 24_000
    strides: tuple[int, ...] = (3, 4, 5, 8)  # paper: 3*4*5*8 = 480 samples -> 50 Hz
    causal: bool = True  # SoundStream is causal (streamable): convolutions pad on the left only
    channels: int = 32  # channels after the first conv; doubled at each downsampling
    embedding_dim: int = 512
    rvq: RVQConfig = field(default_factory=lambda: RVQConfig(12, 1024, 512))
    # Discriminator: one STFT discriminator (SoundStream Sec. 3.4), multi-scale spectral loss windows.
    disc_channels: int = setting(32)
    stft_window: int = setting(1024)
    spectral_windows: tuple[int, ...] = setting((64, 128, 256, 512, 1024, 2048))
    # Loss weights (SoundStream Sec. 3.5)
    weight_adversarial: float = setting(1.0)
    weight_feature: float = setting(100.0)
    weight_reconstruction: float = setting(1.0)
    # Not in SoundStream: an L1 loss on the waveform itself (as in EnCodec). 0 in the paper preset.
    weight_waveform: float = setting(0.0)
    adversarial_start: int = setting(0)  # training step at which the discriminator joins in
    crop_seconds: float = setting(1.0)  # length of the random training crops

    @property
    def hop(self) -> int:
        return math.prod(self.strides)

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop

    @property
    def tokens_per_second(self) -> float:
        return self.frame_rate * self.rvq.num_quantizers

    @property
    def bitrate(self) -> float:
        """Bits per second at full depth: frames/s x levels x log2(codebook)."""
        return self.tokens_per_second * self.rvq.bits_per_code


# Semantic tokens: w2v-BERT + k-means (Chapter 4) ---------------------------------------------
@dataclass(frozen=True)
class SemanticConfig:
    """w2v-BERT-style model and k-means semantic tokens (Chapter 4)."""

    sample_rate: int = 24_000
    frame_rate: float = 25.0  # paper: 25 semantic tokens per second
    d_model: int = 1024
    n_heads: int = 8
    d_ff: int = 4096
    conv_kernel: int = 31
    n_mels: int = 80  # w2v-BERT's input: 80 log-mel bins at 4x the frame rate ...
    conv_channels: int = 256  # ... subsampled 4x by two stride-2 Conv2d layers of this width
    dropout: float = setting(0.1)
    contrastive_layers: int = 12
    mlm_layers: int = 12
    embedding_layer: int = setting(7)  # paper: layer 7 of the MLM module
    target_codebook_size: int = 1024  # quantized targets of the contrastive/MLM losses
    num_clusters: int = setting(1024)  # paper: k-means with 1024 clusters
    mask_prob: float = setting(0.065)
    mask_span: int = setting(10)
    contrastive_temperature: float = setting(0.1)  # kappa of the contrastive (InfoNCE) loss, as in wav2vec 2.0
    crop_seconds: float = setting(10.0)  # length of the random training crops
    paper_params: int = reference(600_000_000)

    @property
    def hop(self) -> int:
        return round(self.sample_rate / self.frame_rate)


# MuLan (Chapter 5) ---------------------------------------------------------------------------
@dataclass(frozen=True)
class MuLanConfig:
    """MuLan joint music-text embedding (Chapter 5)."""

    embed_dim: int = 128  # paper: 128-d shared space
    n_mels: int = 128
    resnet_blocks: tuple[int, ...] = (3, 4, 6, 3)  # ResNet-50
    resnet_width: int = 64
    bottleneck: bool = True
    text_tower: str = "bert-base-uncased"  # paper: BERT; the book ships MiniLM (offline)
    text_trainable_layers: int = setting(-1)  # last N backbone layers trained; -1 = all, 0 = frozen (features cached)
    max_text_tokens: int = 128
    window_seconds: float = 10.0  # paper: 10 s windows ...
    hop_seconds: float = 1.0  # ... at 1 s stride, averaged
    rvq: RVQConfig = field(default_factory=lambda: RVQConfig(12, 1024, 128))  # 12 MuLan tokens
    temperature: float = setting(0.07)


# Hierarchical Transformers (Chapter 6) -------------------------------------------------------
@dataclass(frozen=True)
class TransformerConfig:
    """Decoder-only Transformer of one stage (Chapter 6)."""

    n_layers: int = 24
    n_heads: int = 16
    d_model: int = 1024
    d_ff: int = 4096
    dropout: float = setting(0.1)
    gated_ff: bool = True  # GEGLU as in T5.1.1: what makes ~430M per stage (paper-numbers.md)
    rel_pos_buckets: int = 32  # T5-style bucketed relative position bias
    rel_pos_max_distance: int = 128
    paper_params_per_stage: int = reference(430_000_000)


@dataclass(frozen=True)
class StageConfig:
    """One stage of the hierarchy: its Transformer, training crop and sampling temperature.

    Not in the paper (0 and 1 in `paper`): `condition_dropout`, the fraction of training examples whose
    MuLan tokens are replaced by the null condition, and `guidance`, the classifier-free guidance scale
    used when sampling (1 = none), and `mulan_codebook_embedding`, embedding MuLan tokens through MuLan's
    codebook vectors (`mulan_embedding.py`). Only the stages that read MuLan tokens (semantic, coarse) use them.
    """

    transformer: TransformerConfig
    crop_seconds: float = field(metadata={"identity": False})  # a setting without a default
    temperature: float = field(metadata={"identity": False})
    top_k: int | None = setting(None)
    condition_dropout: float = setting(0.0)
    guidance: float = setting(1.0)
    mulan_codebook_embedding: bool = False


# Extensions (Chapters 8-9) and memorization (Chapter 10) -------------------------------------
@dataclass(frozen=True)
class MelodyConfig:
    """Melody embedding for melody conditioning (Chapter 8)."""

    n_layers: int = 12
    n_heads: int = 6
    d_model: int = 512
    d_ff: int = 1024
    embed_dim: int = 192
    window_seconds: float = 4.0
    hop_seconds: float = 3.0  # 10 s input -> 3 embeddings
    rvq: RVQConfig = field(default_factory=lambda: RVQConfig(24, 512, 192))
    loss: str = "semi-hard triplet"


@dataclass(frozen=True)
class LongGenerationConfig:
    """Long generation and story mode (Chapter 9): semantic windows of prefix + stride <= its crop."""

    stride_seconds: float = 15.0  # new audio per window
    prefix_seconds: float = 15.0  # the previous window's end, given as the prompt
    story_change_seconds: float = 15.0  # default length of a story segment


@dataclass(frozen=True)
class MemorizationConfig:
    """Memorization study of the semantic stage (Chapter 10)."""

    max_prompt_tokens: int = 250  # up to 10 s of semantic tokens at 25 Hz
    generated_tokens: int = 125  # 5 s, greedy
    approx_threshold: float = 0.85  # tau, calibrated on permuted pairs
    max_false_positive_rate: float = 1e-4  # 0.01 %
    paper_exact_rate_max: float = reference(0.002)  # always below 0.2 %
    paper_approx_rate: float = reference(0.01)  # about 1 %


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings shared by the training entry point."""

    batch_size: int = 8
    learning_rate: float = 3e-4
    steps: int = 1000
    warmup_steps: int = 100
    val_every: int = 200
    checkpoint_every: int = 200
    grad_clip: float = 1.0
    seed: int = 0


# Presets -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Preset:
    """Everything the book needs at one scale (all chapters)."""

    name: str
    data: DataConfig
    codec: CodecConfig
    semantic: SemanticConfig
    mulan: MuLanConfig
    semantic_stage: StageConfig
    coarse_stage: StageConfig
    fine_stage: StageConfig
    coarse_levels: int  # RVQ levels modelled by the coarse stage; the rest go to the fine stage
    melody: MelodyConfig
    long: LongGenerationConfig
    memorization: MemorizationConfig
    train: TrainConfig
    codec_component: str = "codec"  # which codec's tokens the stages read: `codec` (SoundStream) or `spectral-codec`
    melody_tokens: str = "embedder"  # the melody-coarse stage's melody: `embedder` (the paper's) or `chroma` (Ch. 8)

    @property
    def fine_levels(self) -> int:
        return self.codec.rvq.num_quantizers - self.coarse_levels

    def replace(self, **changes) -> "Preset":
        """A copy with some components swapped: `preset.replace(train=TrainConfig(steps=10))`."""
        return dataclasses.replace(self, **changes)


GUIDANCE_TINY = 3.0  # classifier-free guidance scale of the semantic and coarse stages of `tiny` and `colab` (Chapter 6)


def _paper() -> Preset:
    big = TransformerConfig()  # the defaults are the paper's
    return Preset(
        name="paper",
        data=DataConfig(num_clips=50_000),
        codec=CodecConfig(),
        semantic=SemanticConfig(),
        mulan=MuLanConfig(),
        semantic_stage=StageConfig(big, crop_seconds=30.0, temperature=1.0),
        coarse_stage=StageConfig(big, crop_seconds=10.0, temperature=0.95),
        fine_stage=StageConfig(big, crop_seconds=3.0, temperature=0.4),
        coarse_levels=4,
        melody=MelodyConfig(),
        long=LongGenerationConfig(),
        memorization=MemorizationConfig(),
        train=TrainConfig(batch_size=32, learning_rate=1e-4, steps=1_000_000, warmup_steps=10_000,
                          val_every=5_000, checkpoint_every=5_000),
    )


def _colab() -> Preset:
    mid = TransformerConfig(n_layers=8, n_heads=8, d_model=512, d_ff=2048)
    return Preset(
        name="colab",
        data=DataConfig(num_clips=3_000, num_melodies=400),
        codec=CodecConfig(channels=32, embedding_dim=256, rvq=RVQConfig(12, 1024, 256),
                          weight_waveform=1000.0, adversarial_start=2_000),
        semantic=SemanticConfig(d_model=384, n_heads=6, d_ff=1536, contrastive_layers=4, mlm_layers=6,
                                embedding_layer=4, target_codebook_size=512, num_clusters=512),
        mulan=MuLanConfig(resnet_blocks=(2, 2, 2, 2), bottleneck=False,
                          text_tower="minilm", text_trainable_layers=1, n_mels=64),
        # Codebook embedding and guidance as in `tiny`, paper temperatures (none of it measured at this size yet).
        semantic_stage=StageConfig(mid, crop_seconds=10.0, temperature=1.0, condition_dropout=0.2, guidance=GUIDANCE_TINY,
                                   mulan_codebook_embedding=True),
        coarse_stage=StageConfig(mid, crop_seconds=4.0, temperature=0.95, condition_dropout=0.2, guidance=GUIDANCE_TINY,
                                 mulan_codebook_embedding=True),
        fine_stage=StageConfig(mid, crop_seconds=1.5, temperature=0.4),
        coarse_levels=4,
        melody=MelodyConfig(n_layers=6, n_heads=4, d_model=256, d_ff=512, embed_dim=128,
                            rvq=RVQConfig(12, 512, 128)),
        long=LongGenerationConfig(stride_seconds=5.0, prefix_seconds=5.0, story_change_seconds=5.0),
        memorization=MemorizationConfig(max_prompt_tokens=100, generated_tokens=50),
        train=TrainConfig(batch_size=16, learning_rate=3e-4, steps=20_000, warmup_steps=500,
                          val_every=1_000, checkpoint_every=1_000),
    )


def _tiny() -> Preset:
    small = TransformerConfig(n_layers=4, n_heads=4, d_model=256, d_ff=512, dropout=0.1,
                              gated_ff=True, rel_pos_buckets=32, rel_pos_max_distance=128)
    return Preset(
        name="tiny",
        data=DataConfig(num_clips=320),
        # 24 kHz as in the paper, but a larger hop (25 Hz) and 8 levels keep CPU sequences short;
        # 256 codes per level (not 1024) because a CPU batch holds only ~200 frames to fill them,
        # hence also a lower dead-code threshold. See Chapter 3.
        codec=CodecConfig(strides=(4, 5, 6, 8), channels=16, embedding_dim=64,
                          rvq=RVQConfig(8, 256, 64, dead_code_threshold=0.1), disc_channels=16,
                          weight_waveform=1000.0, adversarial_start=10_000),  # no GAN phase on CPU
        codec_component="spectral-codec",  # same token layout, an inverse-STFT decoder; MuLan hears twice as much (Ch. 3)
        # 12.5 Hz frames (80 ms): a 10 s clip is 125 tokens. Mask spans of 5 frames = 400 ms as in the paper.
        semantic=SemanticConfig(frame_rate=12.5, d_model=128, n_heads=4, d_ff=384, conv_kernel=15,
                                conv_channels=32, contrastive_layers=2, mlm_layers=3, embedding_layer=2,
                                target_codebook_size=128, num_clusters=128, mask_prob=0.13, mask_span=5,
                                crop_seconds=8.0),
        # 5 s windows: 10 s clips give 6 windows to average, and random 5 s crops augment training.
        mulan=MuLanConfig(resnet_blocks=(1, 1, 1, 1), resnet_width=16,
                          bottleneck=False, text_tower="minilm", text_trainable_layers=0, n_mels=64,
                          window_seconds=5.0, rvq=RVQConfig(12, 256, 128)),
        # Not in the paper (Chapter 6): MuLan tokens embedded through MuLan's codebooks (each code is seen in
        # only a few training clips), condition dropout for classifier-free guidance, and a cooler coarse stage.
        # Guidance 3 and coarse temperature 0.7 were chosen on the validation captions among (0.95, 1), (0.8, 1),
        # (0.7, 1) and (0.7, 3): see checkpoints/coarse-tiny/README.md.
        semantic_stage=StageConfig(small, crop_seconds=6.0, temperature=1.0, condition_dropout=0.2, guidance=GUIDANCE_TINY,
                                   mulan_codebook_embedding=True),
        coarse_stage=StageConfig(small, crop_seconds=2.0, temperature=0.7, condition_dropout=0.2, guidance=GUIDANCE_TINY,
                                 mulan_codebook_embedding=True),
        fine_stage=StageConfig(small, crop_seconds=0.6, temperature=0.4),
        coarse_levels=4,
        melody=MelodyConfig(n_layers=4, n_heads=4, d_model=128, d_ff=256, embed_dim=64,
                            rvq=RVQConfig(8, 128, 64)),
        long=LongGenerationConfig(stride_seconds=3.0, prefix_seconds=3.0, story_change_seconds=10.0),
        memorization=MemorizationConfig(max_prompt_tokens=50, generated_tokens=25),
        train=TrainConfig(batch_size=8, learning_rate=1e-3, steps=2_000, warmup_steps=100,
                          val_every=250, checkpoint_every=250),
    )


_BUILDERS = {"tiny": _tiny, "colab": _colab, "paper": _paper}


def default_preset_name() -> str:
    """`MUSICLM_PRESET` if set; else `colab` on a GPU when its checkpoints ship, and `tiny` otherwise
    (its checkpoints ship with the book; a GPU without `colab` checkpoints says so on stderr, once)."""
    import torch

    name = os.environ.get("MUSICLM_PRESET", "").strip().lower()
    if name or not torch.cuda.is_available():
        return name or "tiny"
    if (SHIPPED / "fine-stage-colab" / "model.safetensors").exists():
        return "colab"
    if not _NOTICES:
        _NOTICES.append("tiny")
        print("musiclm-mini: a GPU but no `colab` checkpoints, so the shipped `tiny` preset is used (train colab "
              "ones with `python -m musiclm_mini.train <component> --preset colab`)", file=sys.stderr)
    return "tiny"


_NOTICES: list[str] = []  # said once per process


def get_preset(name: str | None = None) -> Preset:
    """The preset called `name` (`tiny`, `colab` or `paper`); see `default_preset_name` when None."""
    name = (name or default_preset_name()).strip().lower()
    if name not in _BUILDERS:
        raise ValueError(f"unknown preset {name!r}: choose one of {', '.join(PRESET_NAMES)}")
    return _BUILDERS[name]()
