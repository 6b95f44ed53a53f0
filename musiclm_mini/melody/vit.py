"""The melody embedder: a ViT over mel frames, one unit vector per 4 s window (Chapter 8; MusicLM appendix C).

Paper: "a small ViT (Dosovitskiy et al., 2021) composed of 12 layers, 6 attention heads, embedding
dimension of 512 and feed-forward layer of dimension 1024 ... 192 dimensional embeddings for each 4
seconds of audio" (`MelodyConfig`, whose defaults are those numbers; `tiny` is 4 layers of 128).

    log-mel (B, n_mels, 200) --group `patch_frames` frames--> (B, N, n_mels * patch_frames)
        --linear--> (B, N, d) + learned positions --L blocks (bidirectional)--> (B, N, d)
        --mean over tokens, linear--> (B, embed_dim) --L2 normalise--> the melody embedding

An image ViT cuts 16 x 16 patches; here a token is a slice of *time* with all its frequencies, since
the paper feeds "temporal frames". Unit-length outputs make the triplet loss's squared distance
2 - 2 cos, so its margin means the same at every size.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import MelodyConfig, Preset, setting
from ..tokenizers.quantize import ResidualVQ
from .frontend import MelSettings, log_standardise, mel_power, melody_windows, window_frames

# Mel frames per token: the paper's "temporal frames" one by one (200 tokens per window); tiny groups
# four (80 ms, 50 tokens) so that a CPU trains it in minutes. Not a MelodyConfig field: config.py is full.
PATCH_FRAMES = {"tiny": 4}


@dataclass(frozen=True)
class MelodyEmbedderConfig:
    """What the `melody-embedder` component is (Chapter 8): the preset's ViT sizes, its mel input, its patches."""

    melody: MelodyConfig = field(default_factory=MelodyConfig)
    mel: MelSettings = field(default_factory=MelSettings)
    patch_frames: int = 1
    margin: float = setting(0.2)  # of the triplet loss, on squared distances of unit vectors (FaceNet's alpha)

    @property
    def frames(self) -> int:
        return window_frames(self.melody.window_seconds, self.mel)

    @property
    def tokens(self) -> int:
        return self.frames // self.patch_frames


def melody_embedder_config(preset: Preset) -> MelodyEmbedderConfig:
    """The `melody-embedder` of `preset` (Chapter 8; `components.py` loads and ships it)."""
    return MelodyEmbedderConfig(melody=preset.melody, patch_frames=PATCH_FRAMES.get(preset.name, 1))


class Block(nn.Module):
    """Pre-norm Transformer encoder block: attention over every token (no causal mask), then an MLP."""

    def __init__(self, d: int, heads: int, d_ff: int):
        super().__init__()
        self.heads = heads
        self.norm1, self.qkv, self.proj = nn.LayerNorm(d), nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.norm2 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, d_ff), nn.GELU(), nn.Linear(d_ff, d))

    def forward(self, x: Tensor) -> Tensor:
        B, N, D = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(B, N, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v)  # (B, H, N, D/H): every frame sees the whole window
        x = x + self.proj(a.transpose(1, 2).reshape(B, N, D))  # (B, N, D)
        return x + self.mlp(self.norm2(x))


class MelodyEmbedder(nn.Module):
    """Audio -> melody embeddings, one per window (Chapter 8). Built from a `MelodyEmbedderConfig`."""

    def __init__(self, cfg: MelodyEmbedderConfig):
        super().__init__()
        m = cfg.melody
        if cfg.frames % cfg.patch_frames:
            raise ValueError(f"{cfg.frames} frames per window do not split into patches of {cfg.patch_frames}")
        if m.rvq.dim != m.embed_dim:
            raise ValueError(f"the melody RVQ quantizes {m.embed_dim}-d embeddings, not {m.rvq.dim}-d ones")
        self.cfg = cfg
        self.patch = nn.Linear(cfg.mel.n_mels * cfg.patch_frames, m.d_model)
        self.position = nn.Parameter(torch.randn(1, cfg.tokens, m.d_model) * 0.02)  # learned, as in ViT
        self.blocks = nn.ModuleList(Block(m.d_model, m.n_heads, m.d_ff) for _ in range(m.n_layers))
        self.norm = nn.LayerNorm(m.d_model)
        self.head = nn.Linear(m.d_model, m.embed_dim)
        self.rvq = ResidualVQ.from_config(m.rvq)  # melody tokens (`tokens.py`): fitted after training, then fixed
        self.rvq.eval()

    def forward(self, logmel: Tensor) -> Tensor:
        """Standardised log-mel windows (B, n_mels, frames) -> unit embeddings (B, embed_dim)."""
        B, M, T = logmel.shape
        if T != self.cfg.frames or M != self.cfg.mel.n_mels:
            raise ValueError(f"melody embedder expects ({self.cfg.mel.n_mels}, {self.cfg.frames}) mel windows, "
                             f"got {(M, T)}")
        p = self.cfg.patch_frames
        x = logmel.transpose(1, 2).reshape(B, T // p, p * M)  # (B, N, p * n_mels): a token is a slice of time
        x = self.patch(x) + self.position  # (B, N, d)
        for block in self.blocks:
            x = block(x)
        x = self.norm(x).mean(1)  # (B, d): mean over tokens
        return F.normalize(self.head(x), dim=-1)  # (B, embed_dim)

    def logmel(self, windows: Tensor) -> Tensor:
        """Audio windows (B, window) -> the ViT's input (B, n_mels, frames)."""
        return log_standardise(mel_power(windows, self.cfg.mel)[..., : self.cfg.frames])

    def embed_windows(self, windows: Tensor, batch_size: int = 64) -> Tensor:
        """Audio windows (N, window samples) -> (N, embed_dim), in chunks."""
        return torch.cat([self(self.logmel(w)) for w in windows.split(batch_size)])

    @torch.no_grad()
    def embed(self, wave: Tensor) -> Tensor:
        """Melody embeddings of audio of any length (Chapter 8): (B, T) or (T,) -> (B, W, embed_dim).

        10 s gives W = 3 (windows at 0, 3 and 6 s, as in the paper); shorter audio is looped to 4 s.
        """
        m = self.cfg.melody
        windows = melody_windows(wave, m.window_seconds, m.hop_seconds).to(self.head.weight.device)  # (B, W, S)
        B, W, S = windows.shape
        return self.embed_windows(windows.reshape(B * W, S)).reshape(B, W, -1)
