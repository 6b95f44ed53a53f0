"""What the tests share: the micro preset, fake tokenizers, and the `slow` marker.

    pytest -m "not slow" tests     # the fast inner loop (under 3 minutes)
    bash scripts/test.sh           # everything: every test and every chapter under nbval, on two workers
"""
import dataclasses

import pytest
import torch

from musiclm_mini.config import LongGenerationConfig, RVQConfig, StageConfig, TrainConfig, TransformerConfig, get_preset

torch.set_num_threads(1)

MICRO = TransformerConfig(n_layers=1, n_heads=2, d_model=32, d_ff=64, dropout=0.0, rel_pos_buckets=16,
                          rel_pos_max_distance=64)


def micro_preset(**train):
    """tiny's time grid with small vocabularies, a 4-channel codec and one-layer stages with short crops:
    milliseconds per step. `train` overrides fields of its TrainConfig."""
    p = get_preset("tiny")
    return p.replace(
        mulan=dataclasses.replace(p.mulan, rvq=RVQConfig(12, 16, 128)),
        semantic=dataclasses.replace(p.semantic, num_clusters=8),
        codec=dataclasses.replace(p.codec, channels=4, rvq=dataclasses.replace(p.codec.rvq, codebook_size=16)),
        semantic_stage=StageConfig(MICRO, crop_seconds=2.0, temperature=1.0),
        coarse_stage=StageConfig(MICRO, crop_seconds=1.0, temperature=0.95),
        fine_stage=StageConfig(MICRO, crop_seconds=0.5, temperature=0.4),
        long=LongGenerationConfig(stride_seconds=1.0, prefix_seconds=1.0, story_change_seconds=1.0),  # half the crop
        train=TrainConfig(**{"batch_size": 4, "learning_rate": 3e-3, "steps": 4, "warmup_steps": 1,
                             "val_every": 2, "checkpoint_every": 2, **train}))


def _seeded(text: str) -> torch.Generator:
    return torch.Generator().manual_seed(sum(map(ord, text)))


class FakeCodec(torch.nn.Module):
    """encode: every level = a quantized running level of the frame's loudness (deterministic); counts calls."""

    def __init__(self, preset):
        super().__init__()
        self.cfg, self.scale = preset.codec, torch.nn.Parameter(torch.tensor(3.0))
        self.calls = 0

    def encode(self, wave):
        self.calls += 1
        frames = wave.unfold(-1, self.cfg.hop, self.cfg.hop).abs().mean(-1)  # (B, T')
        q = (frames * self.scale * 100).long() % self.cfg.rvq.codebook_size
        return torch.stack([(q + i) % self.cfg.rvq.codebook_size for i in range(self.cfg.rvq.num_quantizers)], 1)


class FakeSemantic(torch.nn.Module):
    """tokenize: each frame's loudness, quantized into the preset's clusters."""

    def __init__(self, preset):
        super().__init__()
        self.cfg, self.w = preset.semantic, torch.nn.Parameter(torch.tensor(1.0))

    def tokenize(self, wave):
        frames = wave.unfold(-1, self.cfg.hop, self.cfg.hop).abs().mean(-1)
        return (frames * 1000).long() % self.cfg.num_clusters


class FakeMuLan(torch.nn.Module):
    """Text -> 12 tokens and an embedding by a hash of the words; audio -> tokens and embedding from loudness.

    `rvq.codebooks` (levels, codes, dim) are random, for stages that embed MuLan tokens through them.
    """

    def __init__(self, preset):
        super().__init__()
        self.cfg, self.w = preset.mulan, torch.nn.Parameter(torch.tensor(1.0))
        rvq = preset.mulan.rvq
        codebooks = torch.randn(rvq.num_quantizers, rvq.codebook_size, rvq.dim, generator=torch.Generator().manual_seed(0))
        self.rvq = torch.nn.Module()
        self.rvq.register_buffer("codebooks", codebooks)

    def tokens_from_text(self, texts):
        rvq = self.cfg.rvq
        return torch.stack([torch.randint(0, rvq.codebook_size, (rvq.num_quantizers,), generator=_seeded(t))
                            for t in texts])

    def tokens_from_audio(self, wave):
        level = (wave.abs().mean(-1, keepdim=True) * 1000).long()  # (B, 1)
        return (level + torch.arange(self.cfg.rvq.num_quantizers)) % self.cfg.rvq.codebook_size

    def embed_text(self, texts):
        return torch.nn.functional.normalize(torch.stack([torch.randn(8, generator=_seeded(t)) for t in texts]), dim=-1)

    def embed_audio(self, wave):
        return torch.nn.functional.normalize(torch.stack([wave[:, i::8].std(-1) for i in range(8)], 1), dim=-1)


@pytest.fixture
def micro():
    """A fresh micro preset (see `micro_preset`)."""
    return micro_preset()
