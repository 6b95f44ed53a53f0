"""Changes of sound that keep the melody: loudness swells, noise, reverb-like smearing (Chapter 8).

Not in the paper, whose pairs come from covers, vocals and people humming (Sec. 6). Our pairs differ
in instrument, octave and voice; these augmentations add what a reader's microphone adds, so that the
embedder learns to ignore it too. They work on the mel *power* spectrogram (B, n_mels, frames), where
independent sounds add, and cost a few element-wise operations per batch instead of re-rendering audio:

    swell    a gain ramp of up to +-9 dB across the window (a constant gain is no change at all: the
             front end standardises every window, `frontend.log_standardise`)
    noise    a coloured noise floor 5-30 dB below the window's mean power, its power fluctuating
             frame to frame as a real noise's does (exponentially distributed)
    smear    a reverb tail: each frame leaks into the next ones with an exponential decay of
             RT60 0.2-1.5 s, mixed in at up to the dry level; notes blur into each other, pitches stay

Each is applied to each example with probability `p`, drawn from the step's generator (exact resume).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
import torchaudio
from torch import Tensor


def _uniform(n: int, low: float, high: float, g: torch.Generator) -> Tensor:
    return low + (high - low) * torch.rand(n, generator=g)


def swell(power: Tensor, g: torch.Generator, max_db: float = 9.0) -> Tensor:
    """A linear ramp in dB across each window: (B, M, T) -> same."""
    B, _, T = power.shape
    db = _uniform(B, -max_db, max_db, g)[:, None] * torch.linspace(-0.5, 0.5, T)[None, :]  # (B, T)
    return power * (10 ** (db / 10))[:, None, :]


def noise(power: Tensor, g: torch.Generator, snr_db: tuple[float, float] = (5.0, 30.0)) -> Tensor:
    """Add a noise floor of random colour at a random signal-to-noise ratio: (B, M, T) -> same."""
    B, M, T = power.shape
    tilt = _uniform(B, -1.0, 1.0, g)[:, None] * torch.linspace(-1, 1, M)[None, :]  # (B, M): dark to bright
    colour = 10 ** tilt  # up to +-10 dB across the mel range
    level = power.mean(dim=(1, 2)) / 10 ** (_uniform(B, *snr_db, g) / 10)  # (B,)
    floor = colour * level[:, None] / colour.mean(1, keepdim=True)  # (B, M), mean `level`
    fluctuation = torch.empty(B, M, T).exponential_(generator=g)  # |noise|^2 per frame and bin
    return power + floor[:, :, None] * fluctuation


def smear(power: Tensor, g: torch.Generator, frame_rate: float, rt60: tuple[float, float] = (0.2, 1.5)) -> Tensor:
    """Reverb-like smearing: add an exponentially decaying tail to every frame: (B, M, T) -> same."""
    B, M, T = power.shape
    taps = int(rt60[1] * frame_rate)  # the longest tail, in frames
    t = torch.arange(1, taps + 1) / frame_rate  # (K,) seconds after the dry frame
    decay = torch.exp(-6.9 * t[None, :] / _uniform(B, *rt60, g)[:, None])  # (B, K): -60 dB at RT60
    wet = _uniform(B, 0.1, 1.0, g)[:, None] * decay / decay.sum(1, keepdim=True)  # tail energy = wet x dry
    kernel = wet.flip(1).repeat_interleave(M, 0)[:, None, :]  # (B*M, 1, K): conv1d correlates, so flipped
    padded = F.pad(power.reshape(1, B * M, T), (taps, 0))  # (1, B*M, K + T): frame t sees t-K .. t-1
    tail = F.conv1d(padded, kernel, groups=B * M)[..., :T]  # (1, B*M, T): the past only, never the future
    return power + tail.reshape(B, M, T)


def augment(power: Tensor, g: torch.Generator, frame_rate: float, p: float = 0.5) -> Tensor:
    """Swell, noise and smear, each applied to each example with probability `p`: (B, M, T) -> same."""
    out = power.clone()
    for change in (lambda x: smear(x, g, frame_rate), lambda x: noise(x, g), lambda x: swell(x, g)):
        pick = torch.rand(power.shape[0], generator=g) < p  # (B,): which examples this change touches
        if pick.any():
            out[pick] = change(out[pick])
    return out



def degrade(wave: Tensor, g: torch.Generator, snr_db: float = 10.0, rt60: float = 0.8, sample_rate: int = 24_000) -> Tensor:
    """A phone in a room, on the waveform (B, T) -> (B, T) (Chapter 8): reverb, then noise `snr_db` below the signal.

    For measuring, not training: the reverb is exponentially decaying noise of `rt60` seconds (half wet),
    the noise darker than white (a one-pole low-pass). The tune stays; the hand-made chroma
    features of `baselines.py` and the embedder are compared on it.
    """
    B, T = wave.shape
    n = int(rt60 * sample_rate)
    t = torch.arange(n) / sample_rate
    ir = torch.randn(B, n, generator=g) * torch.exp(-6.9 * t / rt60)  # (B, n): -60 dB at rt60
    ir = ir / ir.norm(dim=1, keepdim=True)
    size = T + n
    wet = torch.fft.irfft(torch.fft.rfft(wave, size) * torch.fft.rfft(ir, size), size)[:, :T]  # (B, T)
    room = 0.5 * wave + 0.5 * wet * wave.norm(dim=1, keepdim=True) / wet.norm(dim=1, keepdim=True).clamp(min=1e-9)
    white = torch.randn(B, T, generator=g)
    pink = torchaudio.functional.lfilter(white, torch.tensor([1.0, -0.9]), torch.tensor([1.0, 0.0]), clamp=False)  # darker
    level = room.pow(2).mean(1, keepdim=True) / 10 ** (snr_db / 10)  # (B, 1) noise power
    return room + pink * (level / pink.pow(2).mean(1, keepdim=True)).sqrt()
