"""w2v-BERT-style self-supervised model and its semantic tokens (Chapter 4).

MusicLM (Sec. 3.1), following AudioLM, takes its *semantic tokens* from layer 7 of the MLM module
of a 600M-parameter w2v-BERT (Chung et al., 2021), quantized by k-means with 1024 centroids at
25 Hz. The model is trained on audio alone, with two losses on masked frames:

    waveform (B, T)
      -> FeatureEncoder: log-mel at 4x the frame rate, two stride-2 Conv2d      (B, T', D)
      -> VectorQuantizer on those features (unmasked, normalized per clip): codes  (B, T')
      -> mask spans of frames, replace them by a learned vector
      -> contrastive module (Conformer): contrastive loss vs. quantized targets  (B, T', D)
      -> MLM module (Conformer): cross-entropy predicting the target codes        (B, T', D)

After training, `embed` returns an MLM layer's output for unmasked audio and a `SemanticTokenizer`
maps each frame to its nearest k-means centroid: `frame_rate` tokens per second.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..audio import check_waveforms, log_mel
from ..config import SemanticConfig
from .conformer import Conformer
from .quantize import VectorQuantizer, codebook_stats

SUBSAMPLING = 4  # two stride-2 convolutions


# ---------------------------------------------------------------------------------------------
# Feature encoder
# ---------------------------------------------------------------------------------------------
class FeatureEncoder(nn.Module):
    """Log-mel frames at 4x the frame rate -> two stride-2 Conv2d -> Linear (Chapter 4).

    wave (B, T) -> features (B, T // hop, d_model). The log-mel front end is w2v-BERT's; the 4x
    convolutional subsampling is the Conformer's (Gulati et al., 2020).
    """

    def __init__(self, cfg: SemanticConfig):
        super().__init__()
        if cfg.hop % SUBSAMPLING:
            raise ValueError(f"the semantic hop {cfg.hop} must be divisible by {SUBSAMPLING}")
        self.sample_rate, self.hop, self.n_mels = cfg.sample_rate, cfg.hop, cfg.n_mels
        self.mel_hop = cfg.hop // SUBSAMPLING  # 240 samples = 10 ms in the paper preset
        self.n_fft = max(1024, 2 * self.mel_hop)
        C = cfg.conv_channels
        self.convs = nn.Sequential(
            nn.Conv2d(1, C, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(C, C, 3, stride=2, padding=1), nn.GELU())
        mel_out = math.ceil(math.ceil(cfg.n_mels / 2) / 2)  # mel bins left after two stride-2 convs
        self.proj = nn.Linear(C * mel_out, cfg.d_model)
        self.norm = nn.LayerNorm(cfg.d_model)

    def num_frames(self, num_samples: int) -> int:
        """Frames produced for `num_samples` samples: one per hop, the incomplete tail dropped (Chapter 4)."""
        return num_samples // self.hop

    def log_mel(self, wave: Tensor) -> Tensor:
        """wave (B, T) -> per-clip standardized log-mel (B, 4 T', n_mels) (Chapter 4)."""
        frames = self.num_frames(wave.shape[-1])
        mel = log_mel(wave, self.sample_rate, self.n_mels, self.n_fft, self.mel_hop)  # (B, M, F)
        mel = mel[..., : SUBSAMPLING * frames].transpose(1, 2)  # (B, 4T', M)
        # One mean and scale per clip: loudness should not change the tokens.
        mean = mel.mean(dim=(1, 2), keepdim=True)
        std = mel.std(dim=(1, 2), keepdim=True)
        return (mel - mean) / (std + 1e-5)

    def forward(self, wave: Tensor) -> Tensor:
        x = self.convs(self.log_mel(wave).unsqueeze(1))  # (B, C, T', M/4)
        x = x.permute(0, 2, 1, 3).flatten(2)  # (B, T', C * M/4)
        return self.norm(self.proj(x))  # (B, T', D)


# ---------------------------------------------------------------------------------------------
# Masking and the two losses
# ---------------------------------------------------------------------------------------------
def span_mask(batch: int, frames: int, prob: float, span: int, generator: torch.Generator | None = None,
              device: torch.device | str = "cpu") -> Tensor:
    """wav2vec 2.0 masking: each frame starts a masked span with probability `prob` (Chapter 4).

    -> (B, T') bool, True = masked. Spans overlap and are cut at the clip's end; with prob 0.065
    and span 10, about 1 - (1 - 0.065)^10 = 49 % of frames are masked. Every clip gets at least two
    masked frames, so the contrastive loss always has a distractor.
    """
    starts = torch.rand(batch, frames, generator=generator) < prob  # (B, T')
    forced = torch.randint(0, frames, (batch, 2), generator=generator)  # two guaranteed starts
    starts[torch.arange(batch)[:, None], forced] = True
    # A frame is masked if a span started at any of the `span` frames up to and including it.
    padded = F.pad(starts.float(), (span - 1, 0)).unsqueeze(1)  # (B, 1, T' + span - 1)
    covered = F.conv1d(padded, torch.ones(1, 1, span)).squeeze(1) > 0  # (B, T')
    if frames >= 2 and covered.sum(1).min() < 2:  # span 1 with both forced starts on one frame
        covered[:, :2] = True
    return covered.to(device)


def contrastive_loss(context: Tensor, targets: Tensor, codes: Tensor, mask: Tensor,
                     temperature: float) -> tuple[Tensor, Tensor]:
    """InfoNCE of each masked frame against its quantized target (Chapter 4).

    context, targets (B, T', D); codes (B, T') target ids; mask (B, T') bool. For a masked frame t,
        L_t = -log exp(cos(c_t, q_t) / k) / sum_j exp(cos(c_t, q_j) / k)
    with j over t and the other masked frames of the same clip (wav2vec 2.0 samples 100 of them;
    we take all). A distractor with the same code as t is the same vector as the positive, so it is
    left out. Returns (mean loss, accuracy of picking the true target).
    """
    sim = F.normalize(context, dim=-1) @ F.normalize(targets, dim=-1).transpose(1, 2) / temperature  # (B, T', T')
    eye = torch.eye(mask.shape[1], dtype=torch.bool, device=mask.device)  # (T', T')
    same_code = codes.unsqueeze(2) == codes.unsqueeze(1)  # (B, T', T')
    allowed = (mask.unsqueeze(1) & ~same_code) | eye  # the positive + masked frames with another code
    sim = sim.masked_fill(~allowed, float("-inf"))
    log_prob = sim.diagonal(dim1=1, dim2=2) - sim.logsumexp(dim=-1)  # (B, T')
    accuracy = (sim.argmax(dim=-1) == torch.arange(mask.shape[1], device=mask.device))[mask].float().mean()
    return -log_prob[mask].mean(), accuracy


def mlm_loss(logits: Tensor, codes: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Cross-entropy of the target ids at masked frames (Chapter 4).

    logits (B, T', K), codes (B, T'), mask (B, T') -> (mean loss, accuracy).
    """
    logits, codes = logits[mask], codes[mask]  # (N, K), (N,)
    return F.cross_entropy(logits, codes), (logits.argmax(-1) == codes).float().mean()


def normalize_over_time(x: Tensor, eps: float = 1e-5) -> Tensor:
    """Zero mean, unit variance over the frames of each clip, per channel (Chapter 4). (B, T', D) -> same.

    Applied to the quantizer's input only. Without it the targets collapse within a few dozen
    steps: the encoder learns to give every frame the same code, which makes both losses trivial.
    After it, frames of a clip cannot all be equal (each channel has unit variance over time), and
    what is constant over a clip (largely timbre, loudness) is not part of the targets (data2vec
    normalizes its targets per clip in the same way).
    """
    return (x - x.mean(dim=1, keepdim=True)) / (x.std(dim=1, keepdim=True) + eps)


class SemanticLosses(NamedTuple):
    """What one training step of the semantic model measures (Chapter 4)."""

    loss: Tensor  # contrastive + mlm + commitment: what the optimizer minimises
    contrastive: Tensor
    mlm: Tensor
    commitment: Tensor
    contrastive_accuracy: Tensor
    mlm_accuracy: Tensor
    target_perplexity: Tensor  # how many target codes are in real use (1 .. target_codebook_size)
    mask_fraction: Tensor


# ---------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------
class SemanticModel(nn.Module):
    """w2v-BERT: feature encoder, quantized targets, contrastive and MLM Conformers (Chapter 4)."""

    def __init__(self, cfg: SemanticConfig):
        super().__init__()
        self.cfg = cfg
        if not 1 <= cfg.embedding_layer <= cfg.mlm_layers:
            raise ValueError(f"embedding_layer must be in 1..{cfg.mlm_layers}, got {cfg.embedding_layer}")
        D = cfg.d_model
        self.encoder = FeatureEncoder(cfg)
        # Targets: EMA-trained codebook over the clean features (Chapter 2's quantizer).
        self.quantizer = VectorQuantizer(D, cfg.target_codebook_size)
        self.mask_embedding = nn.Parameter(torch.empty(D).uniform_(-0.1, 0.1))  # stands in for masked frames
        stack = dict(d_model=D, n_heads=cfg.n_heads, d_ff=cfg.d_ff, conv_kernel=cfg.conv_kernel,
                     dropout=cfg.dropout)
        self.contrastive = Conformer(cfg.contrastive_layers, **stack)
        self.mlm = Conformer(cfg.mlm_layers, **stack)
        self.contrastive_proj = nn.Linear(D, D)  # context vectors -> space compared with the targets
        self.mlm_head = nn.Linear(D, cfg.target_codebook_size)

    @property
    def frame_rate(self) -> float:
        """Frames (tokens) per second: 25 in the paper, 12.5 in tiny (Chapter 4)."""
        return self.cfg.sample_rate / self.cfg.hop

    def num_parameters(self) -> int:
        """Trainable parameters (the EMA codebook is a buffer and not counted) (Chapter 4)."""
        return sum(p.numel() for p in self.parameters())

    def losses(self, wave: Tensor, generator: torch.Generator | None = None) -> SemanticLosses:
        """Mask, run both modules, and compute both losses on the masked frames (Chapter 4).

        wave (B, T) -> SemanticLosses. `generator` seeds the mask (the model's dropout uses torch's).
        """
        wave = check_waveforms(wave, "semantic model", self.cfg.hop)
        features = self.encoder(wave)  # (B, T', D)
        targets, codes, commitment = self.quantizer(normalize_over_time(features))  # (B, T', D), (B, T'), ()
        B, T, D = features.shape
        mask = span_mask(B, T, self.cfg.mask_prob, self.cfg.mask_span, generator, features.device)
        x = torch.where(mask.unsqueeze(-1), self.mask_embedding.to(features.dtype), features)  # (B, T', D)
        context = self.contrastive(x)[-1]  # (B, T', D)
        c_loss, c_acc = contrastive_loss(self.contrastive_proj(context), targets, codes, mask,
                                         self.cfg.contrastive_temperature)
        logits = self.mlm_head(self.mlm(context)[-1])  # (B, T', K)
        m_loss, m_acc = mlm_loss(logits, codes, mask)
        perplexity = codebook_stats(codes, self.cfg.target_codebook_size)["perplexity"]
        return SemanticLosses(c_loss + m_loss + commitment, c_loss, m_loss, commitment, c_acc, m_acc,
                              perplexity, mask.float().mean())

    forward = losses  # DistributedDataParallel wraps `forward`

    def embed(self, wave: Tensor, layer: int | None = None) -> Tensor:
        """Embeddings of MLM layer `layer` (1-based; default `embedding_layer`) for unmasked audio (Chapter 4).

        wave (B, T) or (T,) -> (B, T // hop, d_model). Call `model.eval()` first for tokens.
        """
        layer = self.cfg.embedding_layer if layer is None else layer
        if not 1 <= layer <= self.cfg.mlm_layers:
            raise ValueError(f"layer must be in 1..{self.cfg.mlm_layers} (MLM module layers), got {layer}")
        wave = check_waveforms(wave, "semantic model", self.cfg.hop)
        context = self.contrastive(self.encoder(wave))[-1]  # (B, T', D)
        return self.mlm(context, upto=layer)[-1]  # (B, T', D)


# ---------------------------------------------------------------------------------------------
# Semantic tokens
# ---------------------------------------------------------------------------------------------
class SemanticTokenizer:
    """Waveform -> semantic tokens: nearest k-means centroid of each frame's embedding (Chapter 4)."""

    def __init__(self, model: SemanticModel, kmeans, layer: int | None = None):
        self.model = model.eval()
        self.kmeans = kmeans
        self.layer = model.cfg.embedding_layer if layer is None else layer
        if kmeans.dim != model.cfg.d_model:
            raise ValueError(f"k-means centroids have dimension {kmeans.dim}, the model's embeddings "
                             f"{model.cfg.d_model}")

    @property
    def vocab_size(self) -> int:
        """Number of distinct tokens, the k-means cluster count (Chapter 4)."""
        return self.kmeans.num_clusters

    @property
    def frame_rate(self) -> float:
        """Tokens per second (Chapter 4)."""
        return self.model.frame_rate

    @torch.no_grad()
    def tokenize(self, wave: Tensor, batch_size: int = 16) -> Tensor:
        """wave (B, T) or (T,) -> tokens (B, T // hop) long, `frame_rate` per second (Chapter 4)."""
        wave = check_waveforms(wave, "SemanticTokenizer", self.model.cfg.hop)
        device = next(self.model.parameters()).device
        out = [self.kmeans.predict(self.model.embed(chunk.to(device), self.layer)).cpu()
               for chunk in wave.split(batch_size)]
        return torch.cat(out)

    __call__ = tokenize


def w2v_bert_config(preset) -> SemanticConfig:
    """What the `w2v-bert` component of `preset` is (Chapter 4; `components.py` loads and ships it)."""
    return preset.semantic
