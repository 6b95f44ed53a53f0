"""MuLan: a joint embedding of music and text, and the 12 MuLan tokens (Chapter 5).

MusicLM conditions on MuLan (Huang et al., 2022; MusicLM Sec. 2.5 and 3.1): two towers map audio and
text into one 128-d space, trained contrastively so a clip lands near its caption.

    audio (B, T) --10 s windows, 1 s stride--> (B*W, win) --log-mel--> ResNet --> (B*W, 128)
                 --average over windows--> (B, 128)            <- MuLan audio embedding
    text  list[str] --BERT/MiniLM + projection--> (B, 128)      <- MuLan text embedding
    embedding (B, 128) --RVQ 12 levels--> (B, 12) tokens        <- M_A (from audio) or M_T (from text)

Training uses audio tokens M_A (no captions needed); generation swaps in text tokens M_T, quantized
by the same RVQ. `train/mulan.py` holds the training recipe and the evaluation helpers.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..audio import check_waveforms, log_mel
from ..config import MuLanConfig
from ..errors import CheckpointError
from .mulan_text import TEXT_BACKBONE_PARAMS, TextTower, check_texts
from .quantize import ResidualVQ

SAMPLE_RATE = 24_000  # every preset works at 24 kHz


# ---------------------------------------------------------------------------------------------
# Audio tower: a ResNet on log-mel spectrograms
# ---------------------------------------------------------------------------------------------
class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a skip connection: ResNet-18/34's block (Chapter 5)."""

    expansion = 1

    def __init__(self, c_in: int, width: int, stride: int = 1):
        super().__init__()
        c_out = width * self.expansion
        self.body = nn.Sequential(
            nn.Conv2d(c_in, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out))
        self.skip = _shortcut(c_in, c_out, stride)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.body(x) + self.skip(x))


class Bottleneck(nn.Module):
    """1x1 squeeze, 3x3, 1x1 expand (x4) with a skip connection: ResNet-50's block (Chapter 5)."""

    expansion = 4

    def __init__(self, c_in: int, width: int, stride: int = 1):
        super().__init__()
        c_out = width * self.expansion
        self.body = nn.Sequential(
            nn.Conv2d(c_in, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, c_out, 1, bias=False), nn.BatchNorm2d(c_out))
        self.skip = _shortcut(c_in, c_out, stride)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.body(x) + self.skip(x))


def _shortcut(c_in: int, c_out: int, stride: int) -> nn.Module:
    if stride == 1 and c_in == c_out:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))


def normalise_mel(mel: Tensor) -> Tensor:
    """Zero mean, unit variance per clip (Chapter 5): loudness is not what a caption describes."""
    mean = mel.mean(dim=(-2, -1), keepdim=True)
    std = mel.std(dim=(-2, -1), keepdim=True)
    return (mel - mean) / (std + 1e-5)


class AudioTower(nn.Module):
    """ResNet over a log-mel 'image' -> unit-norm embedding (Chapter 5). (B, T) -> (B, embed_dim).

    `resnet_blocks=(3, 4, 6, 3)` with bottlenecks and width 64 is ResNet-50 (paper); the tiny preset
    uses one basic block per stage. Channels double and the spectrogram halves at each stage.
    """

    def __init__(self, cfg):
        super().__init__()
        self.n_mels = cfg.n_mels
        block = Bottleneck if cfg.bottleneck else BasicBlock
        w = cfg.resnet_width
        self.stem = nn.Sequential(  # (B, 1, n_mels, frames) -> (B, w, n_mels/4, frames/4)
            nn.Conv2d(1, w, 7, 2, 3, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, 1))
        stages, c_in = [], w
        for i, n_blocks in enumerate(cfg.resnet_blocks):
            width = w * 2**i
            for j in range(n_blocks):
                stages.append(block(c_in, width, stride=2 if (j == 0 and i > 0) else 1))
                c_in = width * block.expansion
        self.stages = nn.Sequential(*stages)
        self.out_channels = c_in  # 2048 for ResNet-50
        self.projection = nn.Linear(c_in, cfg.embed_dim)

    def forward(self, wave: Tensor) -> Tensor:
        mel = normalise_mel(log_mel(wave, SAMPLE_RATE, self.n_mels))  # (B, n_mels, frames)
        h = self.stages(self.stem(mel.unsqueeze(1)))  # (B, C, n_mels/32, frames/32)
        h = h.mean(dim=(-2, -1))  # (B, C): global average pool, any length in
        return F.normalize(self.projection(h), dim=-1)  # (B, embed_dim)


# ---------------------------------------------------------------------------------------------
# Windows: audio of any length
# ---------------------------------------------------------------------------------------------
def audio_windows(wave: Tensor, window: int, hop: int, short: str = "loop") -> Tensor:
    """Cut (B, T) audio into (B, W, window) windows `hop` apart (Chapter 5).

    Audio shorter than one window is looped to fill it (`short="loop"`) or padded with silence
    (`short="zeros"`). Looping keeps the input looking like music; a window that falls silent halfway
    is unlike anything the tower was trained on (Chapter 5 measures the difference). When the last hop
    does not land on the end, one more window is aligned with the end, so no sample is left out.
    """
    if wave.shape[-1] < window:
        if short == "loop":
            wave = wave.repeat(1, -(-window // wave.shape[-1]))[:, :window]  # ceil(window / T) copies
        elif short == "zeros":
            wave = F.pad(wave, (0, window - wave.shape[-1]))
        else:
            raise ValueError(f"short must be 'loop' or 'zeros', got {short!r}")
    windows = wave.unfold(-1, window, hop)  # (B, W, window)
    if (wave.shape[-1] - window) % hop:
        windows = torch.cat([windows, wave[:, None, -window:]], dim=1)
    return windows


# ---------------------------------------------------------------------------------------------
# The contrastive loss
# ---------------------------------------------------------------------------------------------
def similarity_logits(audio: Tensor, text: Tensor, log_scale: Tensor) -> Tensor:
    """Scaled cosine similarities (Chapter 5). (B, D), (B, D) -> (B, B); row i = audio i vs every text."""
    return log_scale.exp() * audio @ text.t()


def contrastive_loss(audio: Tensor, text: Tensor, log_scale: Tensor) -> Tensor:
    """CLIP's symmetric InfoNCE (Chapter 5): each clip must pick its caption among the batch, and back.

    audio, text: unit-norm (B, D), pair i matching; every other pair in the batch is a negative.
    loss = (CE(rows of S) + CE(columns of S)) / 2 with S = exp(log_scale) * audio @ text^T.
    """
    logits = similarity_logits(audio, text, log_scale)  # (B, B)
    target = torch.arange(len(audio), device=audio.device)  # the diagonal
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))


# ---------------------------------------------------------------------------------------------
# MuLan
# ---------------------------------------------------------------------------------------------
class MuLan(nn.Module):
    """The two towers, a learnable temperature and the RVQ of MuLan tokens (Chapter 5).

    `load_text=False` skips loading the pretrained text backbone (parameter counts, meta device).
    """

    def __init__(self, cfg, load_text: bool = True):
        super().__init__()
        self.cfg = cfg
        self.audio_tower = AudioTower(cfg)
        self.text_tower = TextTower(cfg, load=load_text)
        # log(1/temperature), learned as in CLIP; clamped at 100 so the logits cannot blow up.
        self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / cfg.temperature)))
        self.rvq = ResidualVQ.from_config(cfg.rvq)
        self.rvq.eval()  # fitted once after training (`fit_rvq`), then only used for lookups

    @property
    def window(self) -> int:
        return round(self.cfg.window_seconds * SAMPLE_RATE)

    @property
    def hop(self) -> int:
        return round(self.cfg.hop_seconds * SAMPLE_RATE)

    def scale(self) -> Tensor:
        return self.log_scale.clamp(max=math.log(100.0))

    def embed_windows(self, windows: Tensor, batch_size: int = 64) -> Tensor:
        """Audio windows (N, window) -> unit-norm embeddings (N, D), in chunks (Chapter 5)."""
        return torch.cat([self.audio_tower(w) for w in windows.split(batch_size)])

    def embed_audio(self, wave: Tensor, batch_size: int = 64, short: str = "loop") -> Tensor:
        """MuLan audio embedding of audio of any length (Chapter 5). (B, T) or (T,) -> (B, D).

        The mean of the window embeddings (10 s windows, 1 s stride in the paper), renormalised to
        unit length so it compares with text embeddings by cosine. Audio shorter than one window is
        looped to fill it (`short="zeros"` pads with silence instead; see `audio_windows`).
        """
        wave = check_waveforms(wave, "MuLan").to(self.log_scale.device)
        windows = audio_windows(wave, self.window, self.hop, short)  # (B, W, window)
        B, W, _ = windows.shape
        emb = self.embed_windows(windows.reshape(B * W, -1), batch_size).reshape(B, W, -1)
        return F.normalize(emb.mean(1), dim=-1)  # (B, D)

    def embed_text(self, texts) -> Tensor:
        """MuLan text embedding (Chapter 5). list[str] (or one str) -> (B, D); `TextError` on empty text."""
        return self.text_tower(check_texts(texts))

    def forward(self, windows: Tensor, text_features: Tensor) -> Tensor:
        """Training loss of a batch (Chapter 5): audio windows (B, window), backbone text features (B, H)."""
        return contrastive_loss(self.audio_tower(windows), self.text_tower.project(text_features), self.scale())

    def similarity(self, wave: Tensor, texts) -> Tensor:
        """Cosine similarity of every clip with every text (Chapter 5). -> (B_audio, B_text)."""
        return self.embed_audio(wave) @ self.embed_text(texts).t()

    # -- MuLan tokens -----------------------------------------------------------------------------
    def tokens(self, embedding: Tensor) -> Tensor:
        """12 MuLan tokens of embeddings (Chapter 5). (B, D) -> (B, Q) long."""
        if not bool(self.rvq.layers[0].initialized):
            raise CheckpointError("the MuLan RVQ is not fitted yet: run fit_rvq (or load a trained MuLan with components.load) first")
        return self.rvq.encode(embedding[:, None, :].float())[:, :, 0]  # (B, Q, 1) -> (B, Q)

    @torch.no_grad()
    def tokens_from_audio(self, wave: Tensor) -> Tensor:
        """M_A: MuLan audio tokens, the conditioning used in training (Chapter 5). (B, T) -> (B, Q)."""
        return self.tokens(self.embed_audio(wave))

    @torch.no_grad()
    def tokens_from_text(self, texts) -> Tensor:
        """M_T: MuLan text tokens, the conditioning used at generation (Chapter 5). list[str] -> (B, Q)."""
        return self.tokens(self.embed_text(texts))

    @torch.no_grad()
    def fit_rvq(self, embeddings: Tensor, steps: int = 30, seed: int = 0) -> Tensor:
        """Fit the RVQ on audio embeddings (N, D), all levels, by k-means then EMA (Chapter 5).

        Returns the mean squared error after each level, (Q,). The text side is never seen: M_T uses
        the codebooks learnt from audio, exactly as in the paper.
        """
        return self.rvq.fit(embeddings, steps, seed)

    # -- sizes ------------------------------------------------------------------------------------
    def parameter_counts(self) -> dict[str, int]:
        """Parameters per part, the text backbone included even when not loaded (Chapter 5)."""
        count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
        counts = {
            "audio_resnet": count(self.audio_tower) - count(self.audio_tower.projection),
            "audio_projection": count(self.audio_tower.projection),
            "text_backbone": TEXT_BACKBONE_PARAMS[self.cfg.text_tower],
            "text_projection": count(self.text_tower.projection),
        }
        counts["total"] = sum(counts.values()) + 1  # + the temperature
        return counts


def mulan_config(preset) -> MuLanConfig:
    """What the `mulan` component of `preset` is (Chapter 5; `components.py` loads and ships it)."""
    return preset.mulan
