"""SoundStream: a convolutional neural audio codec with residual vector quantization (Chapter 3).

MusicLM's acoustic tokens come from SoundStream (Zeghidour et al., 2022; MusicLM Sec. 3.1):

    wave (B, T) --Encoder--> (B, T/hop, D) --ResidualVQ--> tokens (B, Q, T/hop)
    tokens --ResidualVQ.decode--> (B, T/hop, D) --Decoder--> wave (B, T)

The encoder is a stack of blocks, one per stride in `CodecConfig.strides`: three residual units with
dilations 1, 3, 9 (a receptive field that grows geometrically at no extra cost), then a strided
convolution that downsamples by the stride and doubles the channels. The decoder mirrors it with
transposed convolutions. With the paper's strides (3, 4, 5, 8) the hop is 480 samples: 50 frames
per second at 24 kHz, and 12 levels of 1024 codes give 50 x 12 x 10 bits = 6 kbps.

Every convolution is *causal* when `CodecConfig.causal` is true (the default, as in the paper):
padding goes on the left only, so an output sample never depends on the future and the codec can
stream. The losses that train it live in `codec_losses.py`; its evaluation in `codec_eval.py`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from ..audio import check_waveforms
from ..config import CodecConfig
from .quantize import ResidualVQ

DILATIONS = (1, 3, 9)


class Conv1d(nn.Conv1d):
    """A 1-D convolution that pads itself: causal (all on the left) or centred (Chapter 3).

    The output has exactly ceil(T / stride) frames, whatever the kernel and dilation.
    """

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, dilation: int = 1,
                 causal: bool = True):
        super().__init__(c_in, c_out, kernel, stride=stride, dilation=dilation)
        self.causal = causal

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T) -> (B, C', ceil(T / stride))
        stride = self.stride[0]
        pad = (self.kernel_size[0] - 1) * self.dilation[0] + 1 - stride
        extra = -x.shape[-1] % stride  # pad the end so the last frame is complete
        left = pad if self.causal else pad // 2
        return super().forward(F.pad(x, (left, pad - left + extra)))


class ConvTranspose1d(nn.ConvTranspose1d):
    """A transposed convolution upsampling by `stride` exactly: T frames -> T * stride (Chapter 3)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, causal: bool = True):
        super().__init__(c_in, c_out, kernel, stride=stride)
        self.causal = causal

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T) -> (B, C', T * stride)
        y = super().forward(x)  # (B, C', (T - 1) * stride + kernel)
        trim = self.kernel_size[0] - self.stride[0]
        # Causal: drop the tail, which would need future frames to be complete.
        left = 0 if self.causal else trim // 2
        return y[..., left : y.shape[-1] - (trim - left)]


class ResidualUnit(nn.Module):
    """ELU -> dilated conv (kernel 7) -> ELU -> 1x1 conv, added to the input (Chapter 3)."""

    def __init__(self, channels: int, dilation: int, causal: bool):
        super().__init__()
        self.net = nn.Sequential(
            nn.ELU(), Conv1d(channels, channels, 7, dilation=dilation, causal=causal),
            nn.ELU(), Conv1d(channels, channels, 1, causal=causal),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T) -> (B, C, T)
        return x + self.net(x)


def encoder_block(c_in: int, stride: int, causal: bool) -> nn.Sequential:
    """Three residual units (dilations 1, 3, 9), then downsample by `stride` and double the channels (Chapter 3)."""
    units = [ResidualUnit(c_in, d, causal) for d in DILATIONS]
    return nn.Sequential(*units, nn.ELU(), Conv1d(c_in, 2 * c_in, 2 * stride, stride=stride, causal=causal))


def decoder_block(c_out: int, stride: int, causal: bool) -> nn.Sequential:
    """Upsample by `stride` and halve the channels, then three residual units: the mirror image (Chapter 3)."""
    units = [ResidualUnit(c_out, d, causal) for d in DILATIONS]
    return nn.Sequential(nn.ELU(), ConvTranspose1d(2 * c_out, c_out, 2 * stride, stride, causal=causal), *units)


class Encoder(nn.Module):
    """Waveform (B, T) -> embeddings (B, T / hop, D) (Chapter 3)."""

    def __init__(self, cfg: CodecConfig):
        super().__init__()
        c = cfg.channels
        layers: list[nn.Module] = [Conv1d(1, c, 7, causal=cfg.causal)]
        for stride in cfg.strides:
            layers.append(encoder_block(c, stride, cfg.causal))
            c *= 2
        layers += [nn.ELU(), Conv1d(c, cfg.embedding_dim, 3, causal=cfg.causal)]
        self.net = nn.Sequential(*layers)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return self.net(wave.unsqueeze(1)).transpose(1, 2)  # (B, 1, T) -> (B, D, T') -> (B, T', D)


class Decoder(nn.Module):
    """Embeddings (B, T', D) -> waveform (B, T' * hop) (Chapter 3)."""

    def __init__(self, cfg: CodecConfig):
        super().__init__()
        c = cfg.channels * 2 ** len(cfg.strides)
        layers: list[nn.Module] = [Conv1d(cfg.embedding_dim, c, 7, causal=cfg.causal)]
        for stride in reversed(cfg.strides):
            c //= 2
            layers.append(decoder_block(c, stride, cfg.causal))
        layers += [nn.ELU(), Conv1d(c, 1, 7, causal=cfg.causal)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z.transpose(1, 2)).squeeze(1)  # (B, D, T') -> (B, 1, T) -> (B, T)


@dataclass
class CodecOutput:
    """What one training forward pass returns (Chapter 3)."""

    audio: torch.Tensor  # (B, T) reconstruction, same length as the input
    codes: torch.Tensor  # (B, Q', T') the tokens used (Q' < Q under quantizer dropout)
    commit_loss: torch.Tensor  # () the RVQ commitment loss


def check_tokens(tokens: torch.Tensor, rvq) -> torch.Tensor:
    """(q, T') or (B, q, T') codes of the first q <= Q levels -> (B, q, T') long, else one ValueError (Chapter 3).

    The check at the door of every codec's `decode` (SoundStream, the spectral codec).
    """
    if tokens.ndim == 2:
        tokens = tokens.unsqueeze(0)
    if tokens.ndim != 3 or not 1 <= tokens.shape[1] <= rvq.num_quantizers:
        raise ValueError(f"tokens must be (B, q, T') with 1 <= q <= {rvq.num_quantizers}, got shape {tuple(tokens.shape)}")
    if tokens.min() < 0 or tokens.max() >= rvq.codebook_size:
        raise ValueError(f"token ids must lie in [0, {rvq.codebook_size})")
    return tokens.long()


class SoundStream(nn.Module):
    """Encoder + residual vector quantizer + decoder (Chapter 3).

    >>> codec = SoundStream(get_preset("tiny").codec)
    >>> tokens = codec.encode(wave)        # (B, T) -> (B, Q, T / hop)
    >>> wave_hat = codec.decode(tokens[:, :4])  # any number of levels q <= Q
    """

    def __init__(self, cfg: CodecConfig):
        super().__init__()
        if cfg.rvq.dim != cfg.embedding_dim:
            raise ValueError(f"codec embedding_dim {cfg.embedding_dim} != RVQ dim {cfg.rvq.dim}")
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.quantizer = ResidualVQ.from_config(cfg.rvq)
        self.decoder = Decoder(cfg)

    @property
    def hop(self) -> int:
        return self.cfg.hop

    def forward(self, wave: torch.Tensor, n_q: int | None = None) -> CodecOutput:
        """Training pass: reconstruction, tokens and commitment loss (Chapter 3).

        In training mode the quantizer drops its last levels at random (quantizer dropout), so one
        model learns to decode every bitrate.
        """
        wave = check_waveforms(wave, "SoundStream")
        z = self.encoder(wave)  # (B, T', D)
        q = self.quantizer(z, n_q=n_q)  # quantized (B, T', D), codes (B, Q', T')
        audio = self.decoder(q.quantized)[..., : wave.shape[-1]]  # (B, T)
        return CodecOutput(audio=audio, codes=q.codes, commit_loss=q.loss)

    @torch.no_grad()
    def encode(self, wave: torch.Tensor, n_q: int | None = None) -> torch.Tensor:
        """Waveform (B, T) or (T,) -> tokens (B, Q, ceil(T / hop)) (Chapter 3)."""
        return self.quantizer.encode(self.encoder(check_waveforms(wave, "SoundStream")), n_q=n_q)

    @torch.no_grad()
    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens (B, q, T') with q <= Q levels -> waveform (B, T' * hop) (Chapter 3)."""
        return self.decoder(self.quantizer.decode(check_tokens(tokens, self.cfg.rvq)))

    @torch.no_grad()
    def reconstruct(self, wave: torch.Tensor, n_q: int | None = None) -> torch.Tensor:
        """Encode with the first `n_q` levels and decode, cropped to the input length (Chapter 3)."""
        wave = check_waveforms(wave, "SoundStream")
        return self.decode(self.encode(wave, n_q=n_q))[..., : wave.shape[-1]]


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters (Chapter 3)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def codec_config(preset) -> CodecConfig:
    """What the `codec` component of `preset` is (Chapter 3; `components.py` loads and ships it)."""
    return preset.codec
