"""A codec for a laptop: SoundStream's tokens with a spectral encoder and an inverse-STFT decoder (Chapter 3).

SoundStream (Zeghidour et al., 2022; MusicLM Sec. 3.1) runs its first and last layers at the sample
rate: 24,000 positions a second. On a CPU that is where the time goes, so the `tiny` preset uses a
codec whose every layer runs at a *frame* rate, as Vocos (Siuzdak, 2023) does for its decoder:

    wave (B, T) --STFT--> log|X| (B, F, T/h) --ConvNeXt @ 100 Hz--> --stride 4--> ConvNeXt @ 25 Hz
                --> (B, T/hop, D) --ResidualVQ--> tokens (B, Q, T/hop)            # same tokens as SoundStream
    tokens --> ConvNeXt @ 25 Hz --> x4 upsample --> ConvNeXt @ 100 Hz --> magnitude, phase (B, F, T/h)
                --inverse STFT--> wave (B, T)

With `synthesis="vocoder"` (the `magnitude-codec` component, Chapter 3's next codec) the decoder writes
magnitudes only and `tokenizers/phase_vocoder.py` finds their phase, which needs long windows (1920 samples:
12.5 Hz bins, where the partials of a note are separate peaks):

    tokens --> ConvNeXt @ 25 Hz --> x2 upsample --> ConvNeXt @ 50 Hz --> log-magnitude (B, F, T/h)
                --phase vocoder + Griffin-Lim--> wave (B, T)

The token interface (`encode`, `decode`, `hop`, `cfg.rvq`) is SoundStream's, so every later chapter
works with either. Two honest departures: the encoder reads the STFT magnitude (the phase of the
input is never seen, so the decoder invents a phase: waveform SNR is poor even when the sound is
right), and the layers are not causal (centred kernels: the codec cannot stream). The `paper`
preset keeps SoundStream as the paper describes it.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from ..audio import check_waveforms
from ..config import RVQConfig
from .phase_vocoder import magnitude_to_wave
from .quantize import QuantizerOutput, ResidualVQ
from .soundstream import CodecOutput, check_tokens


@dataclass(frozen=True)
class SpectralCodecConfig:
    """Architecture of the spectral codec (Chapter 3). Its token rate is sample_rate / hop."""

    sample_rate: int = 24_000
    hop: int = 960  # samples per token frame: 25 Hz at 24 kHz, as the tiny SoundStream
    frame_hop: int = 240  # samples per STFT frame inside the codec: 100 Hz
    n_fft: int = 960  # 4 x frame_hop, as in Vocos: 481 frequency bins of 25 Hz
    dim: int = 256  # ConvNeXt width
    encoder_blocks: tuple[int, int] = (2, 2)  # blocks at the frame rate, then at the token rate
    decoder_blocks: tuple[int, int] = (4, 4)  # blocks at the token rate, then at the frame rate
    rvq: RVQConfig = field(default_factory=lambda: RVQConfig(8, 256, 64, dead_code_threshold=0.1))
    synthesis: str = "phase"  # "phase": the decoder writes magnitude and phase; "vocoder": magnitude only
    griffin_lim_iterations: int = 8  # "vocoder": Griffin-Lim iterations after the phase vocoder

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop

    @property
    def upsample(self) -> int:
        return self.hop // self.frame_hop

    @property
    def bins(self) -> int:
        return self.n_fft // 2 + 1


class ConvNeXtBlock(nn.Module):
    """Depthwise conv (kernel 7) -> LayerNorm -> MLP x3 -> layer scale, added to the input (Vocos)."""

    def __init__(self, dim: int):
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 3 * dim), nn.GELU(), nn.Linear(3 * dim, dim))
        self.scale = nn.Parameter(torch.full((dim,), 0.1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, D, N) -> (B, D, N)
        y = self.dwconv(x).transpose(1, 2)  # (B, N, D)
        y = self.scale * self.mlp(self.norm(y))
        return x + y.transpose(1, 2)


def blocks(dim: int, n: int) -> nn.Sequential:
    return nn.Sequential(*[ConvNeXtBlock(dim) for _ in range(n)])


class SpectralEncoder(nn.Module):
    """log|STFT| (B, F, N) at the frame rate -> latents (B, N / upsample, rvq.dim) at the token rate."""

    def __init__(self, cfg: SpectralCodecConfig):
        super().__init__()
        self.stem = nn.Conv1d(cfg.bins, cfg.dim, 7, padding=3)
        self.frame_blocks = blocks(cfg.dim, cfg.encoder_blocks[0])
        self.down = nn.Conv1d(cfg.dim, cfg.dim, cfg.upsample, stride=cfg.upsample)
        self.token_blocks = blocks(cfg.dim, cfg.encoder_blocks[1])
        self.norm = nn.LayerNorm(cfg.dim)
        self.proj = nn.Linear(cfg.dim, cfg.rvq.dim)

    def forward(self, logmag: torch.Tensor) -> torch.Tensor:
        x = self.frame_blocks(self.stem(logmag))  # (B, D, N)
        x = self.token_blocks(self.down(x))  # (B, D, N / upsample)
        return self.proj(self.norm(x.transpose(1, 2)))  # (B, T', rvq.dim)


class SpectralDecoder(nn.Module):
    """Quantized latents (B, T', rvq.dim) -> STFT (B, F, T' * upsample), complex."""

    def __init__(self, cfg: SpectralCodecConfig):
        super().__init__()
        self.proj = nn.Conv1d(cfg.rvq.dim, cfg.dim, 7, padding=3)
        self.token_blocks = blocks(cfg.dim, cfg.decoder_blocks[0])
        self.up = nn.ConvTranspose1d(cfg.dim, cfg.dim, cfg.upsample, stride=cfg.upsample)
        self.frame_blocks = blocks(cfg.dim, cfg.decoder_blocks[1])
        self.norm = nn.LayerNorm(cfg.dim)
        self.writes_phase = cfg.synthesis == "phase"
        self.head = nn.Linear(cfg.dim, (2 if self.writes_phase else 1) * cfg.bins)  # log-magnitude (and phase) per bin

    def log_magnitude_and_phase(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, T', rvq.dim) -> log-magnitude (B, F, N) and phase (B, F, N), or None when the decoder writes none."""
        x = self.token_blocks(self.proj(z.transpose(1, 2)))  # (B, D, T')
        x = self.frame_blocks(self.up(x))  # (B, D, N)
        out = self.head(self.norm(x.transpose(1, 2))).transpose(1, 2)  # (B, 2F or F, N)
        return out.chunk(2, dim=1) if self.writes_phase else (out, None)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """(B, T', rvq.dim) -> STFT (B, F, N): complex, or magnitudes when the decoder writes no phase."""
        logmag, phase = self.log_magnitude_and_phase(z)
        magnitude = torch.exp(logmag).clamp(max=100.0)  # Vocos: exp, clipped so early training cannot explode
        return magnitude if phase is None else torch.polar(magnitude, phase)


class SpectralCodec(nn.Module):
    """Spectral encoder + residual vector quantizer + inverse-STFT decoder (Chapter 3).

    >>> codec = SpectralCodec(SpectralCodecConfig())
    >>> tokens = codec.encode(wave)        # (B, T) -> (B, Q, ceil(T / hop))
    >>> wave_hat = codec.decode(tokens[:, :4])  # any number of levels q <= Q
    """

    def __init__(self, cfg: SpectralCodecConfig):
        super().__init__()
        if cfg.hop % cfg.frame_hop:
            raise ValueError(f"hop {cfg.hop} must be a multiple of frame_hop {cfg.frame_hop}")
        if cfg.synthesis not in ("phase", "vocoder"):
            raise ValueError(f"synthesis must be 'phase' or 'vocoder', got {cfg.synthesis!r}")
        self.cfg = cfg
        self.encoder = SpectralEncoder(cfg)
        self.quantizer = ResidualVQ.from_config(cfg.rvq)
        self.decoder = SpectralDecoder(cfg)
        self.register_buffer("window", torch.hann_window(cfg.n_fft), persistent=False)

    @property
    def hop(self) -> int:
        return self.cfg.hop

    def magnitudes(self, wave: torch.Tensor) -> torch.Tensor:
        """(B, T) -> |STFT| (B, F, ceil(T / hop) * hop / frame_hop): what the encoder reads (and a vocoder decoder writes)."""
        wave = F.pad(wave, (0, -wave.shape[-1] % self.cfg.hop))
        spec = torch.stft(wave, self.cfg.n_fft, self.cfg.frame_hop, window=self.window, return_complex=True)
        return spec.abs()[..., :-1]  # centred frames, the last dropped: N = T / frame_hop

    def _latents(self, wave: torch.Tensor) -> torch.Tensor:
        """(B, T) -> (B, ceil(T / hop), rvq.dim): pad to whole token frames, STFT, encode."""
        return self.encoder(torch.log(self.magnitudes(wave) + 1e-5))

    def _synthesize(self, z: torch.Tensor) -> torch.Tensor:
        """(B, T', rvq.dim) -> (B, T' * hop) through the inverse STFT (or the phase vocoder)."""
        spec = self.decoder(z)  # (B, F, N)
        spec = torch.cat([spec, spec[..., -1:]], dim=-1)  # centred iSTFT wants N + 1 frames for N * frame_hop samples
        length = z.shape[1] * self.cfg.hop
        if not spec.is_complex():  # magnitudes only: the phase vocoder finds a phase
            return magnitude_to_wave(spec, self.cfg.n_fft, self.cfg.frame_hop, length, self.cfg.griffin_lim_iterations)
        return torch.istft(spec, self.cfg.n_fft, self.cfg.frame_hop, window=self.window, length=length)

    def forward(self, wave: torch.Tensor, n_q: int | None = None, frozen_tokens: bool = False) -> CodecOutput:
        """Training pass: reconstruction, tokens and commitment loss (Chapter 3).

        With `synthesis="vocoder"`, `audio` holds the decoded log-magnitudes (B, F, N) instead: the training loss
        compares magnitudes, and the phase vocoder runs only when the codec is heard (`decode`).
        `frozen_tokens`: the encoder and quantizer run without gradients and without codebook updates, so the
        tokens stay exactly those the stages above were trained on and only the decoder learns.
        """
        wave = check_waveforms(wave, "SpectralCodec")
        if frozen_tokens:
            q = self._frozen_quantize(wave, n_q)
        else:
            q = self.quantizer(self._latents(wave), n_q=n_q)  # quantized (B, T', D), codes (B, Q', T')
        if not self.decoder.writes_phase:
            return CodecOutput(audio=self.decoder.log_magnitude_and_phase(q.quantized)[0], codes=q.codes,
                               commit_loss=q.loss)
        audio = self._synthesize(q.quantized)[..., : wave.shape[-1]]
        return CodecOutput(audio=audio, codes=q.codes, commit_loss=q.loss)

    @torch.no_grad()
    def _frozen_quantize(self, wave: torch.Tensor, n_q: int | None) -> QuantizerOutput:
        """The quantizer's output through its pure `encode` / `decode` (no EMA, no dead-code restarts), still
        with quantizer dropout in training so the decoder keeps serving every bitrate."""
        if n_q is None and self.training and self.quantizer.quantizer_dropout:
            n_q = self.quantizer._random_levels(wave.device)
        codes = self.quantizer.encode(self._latents(wave), n_q=n_q)  # (B, Q', T')
        return QuantizerOutput(self.quantizer.decode(codes), codes, wave.new_zeros(()))

    @torch.no_grad()
    def encode(self, wave: torch.Tensor, n_q: int | None = None) -> torch.Tensor:
        """Waveform (B, T) or (T,) -> tokens (B, Q, ceil(T / hop)) (Chapter 3)."""
        return self.quantizer.encode(self._latents(check_waveforms(wave, "SpectralCodec")), n_q=n_q)

    @torch.no_grad()
    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens (B, q, T') with q <= Q levels -> waveform (B, T' * hop) (Chapter 3)."""
        return self._synthesize(self.quantizer.decode(check_tokens(tokens, self.cfg.rvq)))

    @torch.no_grad()
    def reconstruct(self, wave: torch.Tensor, n_q: int | None = None) -> torch.Tensor:
        """Encode with the first `n_q` levels and decode, cropped to the input length (Chapter 3)."""
        wave = check_waveforms(wave, "SpectralCodec")
        return self.decode(self.encode(wave, n_q=n_q))[..., : wave.shape[-1]]


def spectral_codec_config(preset) -> SpectralCodecConfig:
    """What the `spectral-codec` component of `preset` is: the same token rate and RVQ as its SoundStream (Chapter 3)."""
    return SpectralCodecConfig(sample_rate=preset.codec.sample_rate, hop=preset.codec.hop, rvq=preset.codec.rvq)


def magnitude_codec_config(preset) -> SpectralCodecConfig:
    """The `magnitude-codec` component (Chapter 3, the next codec): the spectral codec over 1920-sample windows
    at 50 Hz frames, whose decoder writes magnitudes for the phase vocoder; the same tokens' rate and RVQ."""
    return dataclasses.replace(spectral_codec_config(preset), frame_hop=480, n_fft=1920, synthesis="vocoder")
