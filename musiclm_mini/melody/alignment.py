"""Which melody windows condition which semantic tokens: one rule for training and generation (Chapter 8; MusicLM Sec. 6, appendix C).

Paper: "During training, we consider input audio with a duration of 10 seconds. We extract three melody
embeddings, with a hop length of 3 seconds" -- the paper's semantic stage trains on 30 s crops, so it
does not say which 10 s they are. Ours must say it, because `tiny`'s semantic stage trains on 6 s crops
of 10 s clips and generates 10 s in 6 s windows (prompt 3 s + 3 s new, `musiclm.window_plan`):

    a training crop      semantic frames [s, s + 75) of a clip    <- melody windows of the clip's audio [s, s + 6 s)
    a generation window  semantic frames [s, s + 75) of the song  <- melody windows of the hum's audio  [s, s + 6 s)

So a crop or a window is conditioned on the melody of *its own time span*, placed as the embedder places
windows in any audio (`tokenizers.mulan.audio_windows`: 4 s windows 3 s apart, a last one aligned with the
end): 6 s -> windows at +0 s and +2 s, 2 windows x 8 RVQ levels = 16 melody tokens per crop (`span_windows`).
The alternative, the melody of the whole clip for every crop (as M_A is computed, `hierarchy/token_cache.py`),
would teach the stage a tune of which it generates only part, and at generation time would have to say which
10 s of a long hum each window should follow; with the span rule a 30 s hum simply guides 30 s of music.

Training cannot run the embedder on every random crop, so the melody windows of every clip are computed once
on a grid (`MelodyGrid.grid_hop`, 0.4 s in `tiny`: 16 windows per 10 s clip, `melody/token_cache.py`), and
training crops start on multiples of `step_frames` semantic frames (5 = 0.4 s), where every window of the
crop falls on the grid. Generation windows start anywhere; their melody windows are cut from the hum itself.
Audio that runs out (a hum shorter than the song, a span past a clip's end) is looped, in training and in
generation alike, as the embedder loops audio shorter than a window.

    clip (N, T) --loop, unfold every grid_hop--> (N, P, window) --embedder, RVQ--> codes (N, P, Q)   training
    hum (T,)    --loop, cut at s + offsets-->    (W, window)    --embedder, RVQ--> codes (1, W, Q)   generation
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..config import Preset

CROP_STEP_SECONDS = 0.4  # training crops start on this grid: tiny 5 semantic frames (51 starts -> 11 per clip)


def window_offsets(span: int, window: int, hop: int) -> tuple[int, ...]:
    """Where melody windows start inside `span` samples (Chapter 8): `audio_windows`' rule, as sample offsets.

    Windows `hop` apart while they fit, plus one aligned with the end when the hop does not land there;
    a span shorter than a window gets one window (the audio is looped to fill it). 6 s, 4 s, 3 s -> (0, 2 s).
    """
    if span <= window:
        return (0,)
    starts = list(range(0, span - window + 1, hop))
    if (span - window) % hop:
        starts.append(span - window)
    return tuple(starts)


def loop_to(wave: Tensor, length: int) -> Tensor:
    """Audio (B, T) repeated from its start as often as needed, cut to `length` samples -> (B, length)."""
    return wave.repeat(1, -(-length // wave.shape[-1]))[:, :length]  # ceil(length / T) copies


@dataclass(frozen=True)
class MelodyGrid:
    """The melody's time layout for the melody-conditioned semantic stage, in samples and semantic frames (Chapter 8)."""

    sample_rate: int
    semantic_hop: int  # samples per semantic frame (tiny: 1920, 80 ms)
    window: int  # samples per melody window (4 s)
    hop: int  # samples between melody windows (3 s)
    span_frames: int  # semantic frames a crop (and a generation window) spans: tiny 75 (6 s)
    step_frames: int  # training crops start on multiples of this (tiny 5 = 0.4 s)

    @classmethod
    def from_preset(cls, preset: Preset) -> "MelodyGrid":
        """The semantic stage's crop, cut to the clip as `stage_batch` cuts it (`paper`: 30 s crops of 10 s clips)."""
        rate, frame, m = preset.codec.sample_rate, preset.semantic.hop, preset.melody
        span = min(preset.semantic_stage.crop_seconds, preset.data.clip_seconds)
        return cls(rate, frame, round(m.window_seconds * rate), round(m.hop_seconds * rate),
                   max(1, round(span * rate / frame)), max(1, round(CROP_STEP_SECONDS * rate / frame)))

    @property
    def span(self) -> int:
        """Samples of a crop's span (tiny: 144,000 = 6 s)."""
        return self.span_frames * self.semantic_hop

    @property
    def offsets(self) -> tuple[int, ...]:
        """Start of each melody window inside a span, in samples (tiny: 0 and 48,000)."""
        return window_offsets(self.span, self.window, self.hop)

    @property
    def windows(self) -> int:
        """Melody windows per crop (tiny 2; the paper's 10 s: 3)."""
        return len(self.offsets)

    @property
    def grid_hop(self) -> int:
        """Samples between cached window starts: every crop start and window offset is a multiple (tiny 9,600)."""
        return math.gcd(self.step_frames * self.semantic_hop, *self.offsets)

    def positions(self, clip_frames: int) -> int:
        """Cached windows per clip of `clip_frames` semantic frames: enough for every crop start (tiny 10 s: 16)."""
        last_start = max(0, clip_frames - self.span_frames) // self.step_frames * self.step_frames
        return (last_start * self.semantic_hop + self.offsets[-1]) // self.grid_hop + 1

    def crop_index(self, start_frames: Tensor) -> Tensor:
        """Crop starts (B,) in semantic frames, multiples of `step_frames` -> their windows' grid indices (B, W)."""
        if (start_frames % self.step_frames).any():
            raise ValueError(f"training crops start on multiples of {self.step_frames} semantic frames")
        samples = start_frames[:, None] * self.semantic_hop + torch.tensor(self.offsets)  # (B, W)
        return samples // self.grid_hop


def grid_windows(waves: Tensor, grid: MelodyGrid, positions: int) -> Tensor:
    """Training (Chapter 8): clips (N, T) -> the melody windows at every grid position (N, P, window), looped past the end."""
    need = (positions - 1) * grid.grid_hop + grid.window
    return loop_to(waves, max(need, waves.shape[-1])).unfold(-1, grid.window, grid.grid_hop)[:, :positions]


def span_windows(melody: Tensor, start_frame: int, grid: MelodyGrid) -> Tensor:
    """Generation (Chapter 8): the melody windows of the span starting at semantic frame `start_frame`.

    melody (T,) -> (W, window): the hum's own audio at start + each offset, looped when the hum runs out.
    A window starting on the training grid gets exactly the samples `grid_windows` gave the same clip.
    """
    start = start_frame * grid.semantic_hop
    looped = loop_to(melody.reshape(1, -1), start + grid.offsets[-1] + grid.window)[0]
    return torch.stack([looped[start + o:start + o + grid.window] for o in grid.offsets])
