"""Where each number of the `paper` preset comes from (Chapter 2; MusicLM Sec. 3-4, 6 and Appendix C).

The `paper` preset is the book's best reading of MusicLM, but not every field is stated in the paper.
Each field is one of:

    MusicLM      stated in Agostinelli et al. (2023); the section is given
    prior work   stated in a paper MusicLM builds on (SoundStream, w2v-BERT, wav2vec 2.0, T5, VQ-VAE)
    book         the book's choice where the papers are silent (or its reading of a stated total)

`preset_sources(get_preset("paper"))` lists every field with its value and source; a field missing
from `SOURCES` is the book's choice, so a new field can never be passed off as the paper's.
"""
from __future__ import annotations

import dataclasses
from fnmatch import fnmatch

STAGES = "<stage>"  # stands for each of the three stages

# dotted field (fnmatch pattern) -> (kind, where). First match wins.
SOURCES: list[tuple[str, tuple[str, str]]] = [
    # Data and the training set (Sec. 3.1, 4.2, 4.3)
    ("data.sample_rate", ("MusicLM", "Sec. 3.1: 24 kHz")),
    ("data.clip_seconds", ("MusicLM", "Sec. 4.3: MusicCaps clips are 10 s")),
    ("data.paper_train_*", ("MusicLM", "Sec. 4.2: five million clips, 280k hours")),
    # SoundStream (Sec. 3.1) and the SoundStream paper
    ("codec.sample_rate", ("MusicLM", "Sec. 3.1: 24 kHz")),
    ("codec.strides", ("book", "Sec. 3.1 states a total stride of 480 (50 Hz); 3 x 4 x 5 x 8 is the book's split")),
    ("codec.rvq.num_quantizers", ("MusicLM", "Sec. 3.1: 12 quantizers")),
    ("codec.rvq.codebook_size", ("MusicLM", "Sec. 3.1: vocabulary of 1024")),
    ("codec.causal", ("prior work", "SoundStream: causal convolutions for streaming")),
    ("codec.rvq.ema_decay", ("prior work", "SoundStream: codebooks updated by exponential moving averages")),
    ("codec.rvq.kmeans_init", ("prior work", "SoundStream: codebooks initialised by k-means")),
    ("codec.rvq.quantizer_dropout", ("prior work", "SoundStream: quantizer dropout for bitrate scalability")),
    ("codec.rvq.commitment_weight", ("prior work", "VQ-VAE: commitment weight 0.25")),
    ("codec.stft_window", ("prior work", "SoundStream: STFT discriminator with a 1024-sample window")),
    ("codec.spectral_windows", ("prior work", "SoundStream: spectral loss over windows 2^6 ... 2^11")),
    ("codec.weight_adversarial", ("prior work", "SoundStream: lambda_adv = 1")),
    ("codec.weight_feature", ("prior work", "SoundStream: lambda_feat = 100")),
    ("codec.weight_reconstruction", ("prior work", "SoundStream: lambda_rec = 1")),
    # w2v-BERT (Sec. 3.1) and its paper
    ("semantic.sample_rate", ("MusicLM", "Sec. 3.1: 24 kHz audio throughout")),
    ("semantic.frame_rate", ("MusicLM", "Sec. 3.1: 25 semantic tokens per second")),
    ("semantic.embedding_layer", ("MusicLM", "Sec. 3.1: the 7th layer of the MLM module")),
    ("semantic.num_clusters", ("MusicLM", "Sec. 3.1: k-means with 1024 clusters")),
    ("semantic.paper_params", ("MusicLM", "Sec. 3.1: a w2v-BERT of 600M parameters")),
    ("semantic.d_model", ("prior work", "w2v-BERT XL: model dimension 1024")),
    ("semantic.contrastive_layers", ("prior work", "w2v-BERT XL: 24 Conformer layers, 12 contrastive")),
    ("semantic.mlm_layers", ("prior work", "w2v-BERT XL: 24 Conformer layers, 12 masked-prediction")),
    ("semantic.mask_prob", ("prior work", "wav2vec 2.0's masking (p = 0.065), not MusicLM's")),
    ("semantic.mask_span", ("prior work", "wav2vec 2.0's masking (spans of M = 10), not MusicLM's")),
    ("semantic.contrastive_temperature", ("prior work", "wav2vec 2.0: kappa = 0.1")),
    # MuLan (Sec. 3.1)
    ("mulan.embed_dim", ("MusicLM", "Sec. 3.1: a shared space of 128 dimensions")),
    ("mulan.text_tower", ("MusicLM", "Sec. 3.1: a BERT text tower")),
    ("mulan.resnet_blocks", ("MusicLM", "Sec. 3.1: the ResNet-50 audio tower (3, 4, 6, 3 blocks)")),
    ("mulan.bottleneck", ("MusicLM", "Sec. 3.1: ResNet-50 has bottleneck blocks")),
    ("mulan.window_seconds", ("MusicLM", "Sec. 3.1: 10-second windows")),
    ("mulan.hop_seconds", ("MusicLM", "Sec. 3.1: 1-second stride, embeddings averaged")),
    ("mulan.rvq.num_quantizers", ("MusicLM", "Sec. 3.1: 12 quantizers")),
    ("mulan.rvq.codebook_size", ("MusicLM", "Sec. 3.1: vocabulary of 1024")),
    ("mulan.rvq.dim", ("MusicLM", "Sec. 3.1: the RVQ quantizes the 128-d embedding")),
    # The three stages (Sec. 4.1, 4.2; AudioLM)
    (f"{STAGES}.transformer.n_layers", ("MusicLM", "Sec. 4.1: 24 layers")),
    (f"{STAGES}.transformer.n_heads", ("MusicLM", "Sec. 4.1: 16 attention heads")),
    (f"{STAGES}.transformer.d_model", ("MusicLM", "Sec. 4.1: embedding dimension 1024")),
    (f"{STAGES}.transformer.d_ff", ("MusicLM", "Sec. 4.1: feed-forward dimension 4096")),
    (f"{STAGES}.transformer.dropout", ("MusicLM", "Sec. 4.1: dropout 0.1")),
    (f"{STAGES}.transformer.paper_params_per_stage", ("MusicLM", "Sec. 4.1: 430M parameters per stage")),
    (f"{STAGES}.transformer.gated_ff", ("book", "a T5.1.1-style gated feed-forward: what makes Sec. 4.1's sizes 430M")),
    (f"{STAGES}.transformer.rel_pos_*", ("prior work", "T5 (Raffel et al., 2020): 32 buckets up to distance 128")),
    ("semantic_stage.crop_seconds", ("MusicLM", "Sec. 4.2: 30-second crops")),
    ("coarse_stage.crop_seconds", ("MusicLM", "Sec. 4.2: 10-second crops")),
    ("fine_stage.crop_seconds", ("MusicLM", "Sec. 4.2: 3-second crops")),
    (f"{STAGES}.temperature", ("MusicLM", "Sec. 4.2: temperatures 1.0, 0.95 and 0.4")),
    (f"{STAGES}.top_k", ("MusicLM", "Sec. 4.2: plain temperature sampling (no top-k)")),
    (f"{STAGES}.guidance", ("MusicLM", "Sec. 4.2: plain temperature sampling (no guidance)")),
    (f"{STAGES}.condition_dropout", ("MusicLM", "Sec. 4.2: no guidance, so no condition dropout")),
    ("coarse_levels", ("prior work", "AudioLM: the coarse stage models the first 4 SoundStream levels")),
    # Melody conditioning (Appendix C), long generation (Sec. 6), memorization (Sec. 4.4)
    ("melody.n_layers", ("MusicLM", "App. C: a ViT of 12 layers")),
    ("melody.n_heads", ("MusicLM", "App. C: 6 attention heads")),
    ("melody.d_model", ("MusicLM", "App. C: embedding dimension 512")),
    ("melody.d_ff", ("MusicLM", "App. C: feed-forward dimension 1024")),
    ("melody.embed_dim", ("MusicLM", "App. C: 192-dimensional embeddings")),
    ("melody.window_seconds", ("MusicLM", "App. C: one embedding per 4 seconds")),
    ("melody.hop_seconds", ("MusicLM", "App. C: hop of 3 seconds")),
    ("melody.rvq.num_quantizers", ("MusicLM", "App. C: RVQ of 24 quantizers")),
    ("melody.rvq.codebook_size", ("MusicLM", "App. C: vocabulary of 512")),
    ("melody.rvq.dim", ("MusicLM", "App. C: the RVQ quantizes the 192-d embedding")),
    ("melody.loss", ("MusicLM", "App. C: semi-hard triplet loss")),
    ("long.*", ("MusicLM", "Sec. 6: 15-second stride and prefix; story text changes every 15 s")),
    ("memorization.max_prompt_tokens", ("MusicLM", "Sec. 4.4: prompts of up to 250 semantic tokens (10 s)")),
    ("memorization.generated_tokens", ("MusicLM", "Sec. 4.4: greedy continuations of 125 tokens")),
    ("memorization.approx_threshold", ("MusicLM", "Sec. 4.4: tau = 0.85")),
    ("memorization.max_false_positive_rate", ("MusicLM", "Sec. 4.4: under 0.01% false positives")),
    ("memorization.paper_*", ("MusicLM", "Sec. 5, Figure 3")),
]


def source(field: str) -> tuple[str, str]:
    """(kind, where) for a dotted field of the `paper` preset; ("book", "") when no paper states it."""
    for pattern, found in SOURCES:
        stages = ("semantic_stage", "coarse_stage", "fine_stage") if STAGES in pattern else (STAGES,)
        if any(fnmatch(field, pattern.replace(STAGES, stage)) for stage in stages):
            return found
    return ("book", "")


def fields(obj, prefix: str = "") -> list[tuple[str, object]]:
    """Every leaf field of a (nested) dataclass as (dotted name, value)."""
    out = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            out += fields(value, f"{prefix}{f.name}.")
        else:
            out.append((prefix + f.name, value))
    return out


def preset_sources(preset) -> list[tuple[str, object, str, str]]:
    """(field, value, kind, where) for every field of `preset` except its name (Chapter 2)."""
    return [(name, value, *source(name)) for name, value in fields(preset) if name != "name"]
