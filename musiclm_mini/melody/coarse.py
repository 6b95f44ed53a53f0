"""The melody-coarse stage: p(A_coarse | melody tokens, M, S) (Chapter 8; MusicLM Sec. 6 and appendix C).

The paper conditions its *semantic* stage on melody tokens; the coarse and fine stages follow the semantic
tokens. That works when semantic tokens carry the tune. This book's do not: Chapter 4 measured that its
w2v-BERT + k-means tokens keep tempo and instrument but no pitch, and the melody-semantic stage (`stage.py`)
learnt to ignore its melody tokens (loss 1.573 with a clip's own tune, 1.574 with another's). Pitch lives in
the acoustic tokens, which the coarse stage writes, so here the coarse stage reads the melody, as the issue
allows ("and the coarse stage if the text conditioning needs it"). The coarse stage of Chapter 6 with a
longer prefix, melody first as in `stage.py`:

    melody-coarse   u(1,1) .. u(W,Q)  m1 .. m12  s1 .. s25  a(1,1) a(1,2) a(1,3) a(1,4) .... a(50,4)
                                                            ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
Its vocabulary is the coarse stage's with the melody slices appended, so every other id keeps its place:

    | M1 .. M12 | 0 | S | A1 .. A4 | U1 .. UQ |     tiny: 3,072 + 1 + 128 + 4 x 256 + (8 x 128 or 13)

Two melody representations (`Preset.melody_tokens`, `--set melody_tokens=chroma`), to choose between on
validation (the loss with a clip's own melody against another clip's says how much the stage listens):

    "embedder"  the paper's: the shipped melody embedder's RVQ codes (`tokens.py`). Its windows are 4 s and a
                tiny crop is 2 s, so a crop reads ONE window, the one *starting at the crop's start*: the crop is
                its first half, the 2 s after it the second. Why that one: it is the rule
                `alignment.window_offsets` already gives any span shorter than a window (one window at +0 s, the
                audio looped past its end), so training and generation share `alignment.py` unchanged; it covers
                the whole crop and never needs audio before a clip's start (a centred window would, for the
                crops at 0 s); and its second half is what the next generation window plays, where an
                end-aligned window would spend half of itself on music already generated. Cutting the input
                to the crop's own 2 s (looped to 4 s) would feed the embedder audio unlike any it trained on.
                W = 1 window x Q = 8 levels of 128 codes = 8 tokens.
    "chroma"    NOT the paper's, a departure for `tiny` (`chroma.py`): the dominant pitch class of every 80 ms
                grid unit of the crop (librosa's CQT chroma), or "no pitch" when the unit is quiet: the tune's
                notes in time, directly, where a 64-d embedding per 4 s must be decoded by a stage that has seen
                1,024 clips. W = 25 units x Q = 1 level of 13 codes = 25 tokens.

Time alignment, as `alignment.py`: a training crop (2 s, on the 0.4 s grid of `alignment.CROP_STEP_SECONDS`)
and each generation window (codec frames [s, s + 50), `musiclm.window_plan`) read the melody of their own
time span: the embedder window starting at the span's start, or the chroma units of the span, computed over
the whole clip (training, cached) or the whole hum looped to the music's length (generation). Crops of both
representations start on the same 0.4 s grid (where the embedder's windows are cached), so the two train and
validate on the same crops.

Condition dropout and guidance: the null condition replaces the melody AND the MuLan ids together, as in
`stage.py`. Sampling has one unconditional branch (`sampling.continue_target`), so guidance compares
p(A | U, M, S) with p(A | S): it pushes towards tune and text at once. Dropping them independently (p each)
would leave the "neither" case, the one guidance needs, to p^2 of the examples (4% at tiny's 0.2), and would
only pay off with a sampler that guides melody and text with separate scales (two unconditional branches).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..config import Preset, StageConfig
from ..hierarchy.token_cache import TokenGrid, TokenSet
from ..hierarchy.tokens import CoarseStage, TokenLayout, check_codes
from ..hierarchy.transformer import Transformer
from .alignment import CROP_STEP_SECONDS, MelodyGrid, loop_to
from .chroma import CHROMA_CODES, chroma_tokens
from .stage import MelodyLayout, MelodyPrefix, build_melody_stage_model

MELODY_TOKENS = ("embedder", "chroma")


def check_melody_tokens(kind: str) -> str:
    """`kind` if it is a melody representation, else a ValueError naming both (Chapter 8)."""
    if kind not in MELODY_TOKENS:
        raise ValueError(f"melody_tokens must be one of {', '.join(map(repr, MELODY_TOKENS))}, got {kind!r}")
    return kind


def coarse_melody_grid(preset: Preset) -> MelodyGrid:
    """The melody's time layout for coarse crops, in semantic frames (Chapter 8).

    tiny: a 2 s crop spans 25 frames and holds one melody window (+0 s); crops start every 5 frames (0.4 s),
    so a 10 s clip needs 21 cached windows (0, 0.4, ..., 8 s).
    """
    grid, m, rate = TokenGrid.from_preset(preset), preset.melody, preset.codec.sample_rate
    seconds = min(preset.coarse_stage.crop_seconds, preset.data.clip_seconds)  # `stage_batch` cuts crops to the clip
    units = max(1, round(seconds * rate / grid.unit))  # whole grid units, as `TokenGrid.crop_frames("coarse")`
    step = max(1, round(CROP_STEP_SECONDS * rate / grid.unit))
    spu = grid.semantic_per_unit
    return MelodyGrid(rate, preset.semantic.hop, round(m.window_seconds * rate), round(m.hop_seconds * rate),
                      units * spu, step * spu)


def coarse_melody_layout(preset: Preset, kind: str | None = None) -> MelodyLayout:
    """Melody tokens per coarse crop (Chapter 8): tiny embedder 1 window x 8 levels of 128; chroma 25 units x 1 of 13."""
    kind = check_melody_tokens(kind or preset.melody_tokens)
    grid = coarse_melody_grid(preset)
    if kind == "embedder":
        return MelodyLayout(grid.windows, preset.melody.rvq.num_quantizers, preset.melody.rvq.codebook_size)
    return MelodyLayout(grid.span_frames // TokenGrid.from_preset(preset).semantic_per_unit, 1, CHROMA_CODES)


class MelodyCoarseStage(MelodyPrefix, CoarseStage):
    """p(A_coarse | U, M, S): [W x Q melody ids] + [12 MuLan ids] + [semantic ids] + [coarse ids] (Chapter 8).

    `condition(melody, mulan, semantic)`; `uncondition` nulls melody and MuLan and keeps S: p(A | S).
    """

    name = "melody-coarse"

    def __init__(self, layout: TokenLayout, melody: MelodyLayout, melody_tokens: str = "embedder"):
        super().__init__(layout)
        self.melody, self.melody_tokens = melody, check_melody_tokens(melody_tokens)

    @property
    def melody_offset(self) -> int:
        """First melody id: right after the coarse stage's last acoustic id (Chapter 8)."""
        return self.layout.acoustic_offset + self.layout.coarse_levels * self.layout.codec_codes


def melody_coarse_stage(preset: Preset, kind: str | None = None) -> MelodyCoarseStage:
    """The token layout of `preset`'s melody-coarse stage with `kind` melody tokens (default: the preset's) (Chapter 8)."""
    kind = kind or preset.melody_tokens
    return MelodyCoarseStage(TokenLayout.from_preset(preset), coarse_melody_layout(preset, kind), kind)


# ---------------------------------------------------------------------------------------------
# The component: its config and model
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MelodyCoarseStageConfig:
    """What the `melody-coarse-stage` component is (Chapter 8): the coarse stage's Transformer and layout, the melody's."""

    stage: StageConfig
    layout: TokenLayout
    melody: MelodyLayout
    mulan_dim: int
    melody_tokens: str = "embedder"  # "embedder" (the paper's) or "chroma" (tiny's departure)

    @property
    def vocab_size(self) -> int:
        return MelodyCoarseStage(self.layout, self.melody, self.melody_tokens).vocab_size


def melody_coarse_stage_config(preset: Preset) -> MelodyCoarseStageConfig:
    """The `melody-coarse-stage` of `preset`: the coarse stage's sizes and settings, `preset.melody_tokens` (Chapter 8)."""
    return MelodyCoarseStageConfig(preset.coarse_stage, TokenLayout.from_preset(preset),
                                   coarse_melody_layout(preset), preset.mulan.rvq.dim,
                                   check_melody_tokens(preset.melody_tokens))


def build_melody_coarse_model(config: MelodyCoarseStageConfig, mulan_codebooks: Tensor | None = None) -> Transformer:
    """A fresh Transformer over the melody-coarse vocabulary, MuLan ids through MuLan's codebooks as the coarse stage's."""
    return build_melody_stage_model(config, mulan_codebooks)  # reads .stage, .layout, .mulan_dim and .vocab_size



def extend_from_coarse(model: Transformer, coarse_state: dict[str, Tensor]) -> Transformer:
    """Start a melody-coarse model from a trained coarse stage (Chapter 8): `model`, with `coarse_state` copied in.

    The two are the same Transformer (relative positions, so a longer prefix needs no new weights) over
    vocabularies that differ only by the melody slices appended at the end, where every other id keeps its
    place: each weight is copied whole, except the token embedding and output rows, of which the coarse
    stage's ids are copied and the melody ids keep their fresh initialisation. What is left to learn is how
    to use the tune. (Module docstring: the vocabulary.)
    """
    own = model.state_dict()  # tensors sharing the parameters' storage: copying into them sets the weights
    if set(own) != set(coarse_state):
        raise ValueError(f"not a coarse stage of this Transformer: weights {sorted(set(own) ^ set(coarse_state))[:4]} "
                         f"are in one and not the other")
    with torch.no_grad():
        for name, weight in coarse_state.items():
            target = own[name]
            if target.shape == weight.shape:
                target.copy_(weight)
            elif target.dim() == weight.dim() and target.shape[1:] == weight.shape[1:] and target.shape[0] > weight.shape[0]:
                target[: weight.shape[0]].copy_(weight)  # (vocab, D) rows: the coarse stage's ids, in their places
            else:
                raise ValueError(f"{name}: {tuple(weight.shape)} in the coarse stage, {tuple(target.shape)} here")
    return model

# ---------------------------------------------------------------------------------------------
# Melody on a time line: training crops and generation windows
# ---------------------------------------------------------------------------------------------
def melody_positions(kind: str, grid: MelodyGrid, start_frames: Tensor, spu: int = 1) -> Tensor:
    """Crop starts (B,) in semantic frames -> where their melody tokens sit on a clip's melody time line (B, W).

    The time line of a clip (N, P, Q): embedder windows on the grid (`alignment.MelodyGrid`, P = 21 in tiny),
    or chroma units (P = 125 units of 80 ms, Q = 1). Embedder: the window starting at the crop's start;
    chroma: the crop's own units.
    """
    if kind == "embedder":
        return grid.crop_index(start_frames)  # (B, 1)
    units = grid.span_frames // spu
    return (start_frames // spu)[:, None] + torch.arange(units)  # (B, U)


def melody_coarse_batch(stage: MelodyCoarseStage, tokens: TokenSet, melody: Tensor, indices: list[int],
                        grid: MelodyGrid, token_grid: TokenGrid, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Random coarse crops of clips `indices`, each with the melody of its own span -> (tokens (B, L), loss_mask (B, L)).

    melody (N, P, Q): every clip's melody time line (`melody_positions`). Crops start on multiples of
    `grid.step_frames` semantic frames (0.4 s), whole grid units as `token_cache.stage_batch`'s (Chapter 8).
    """
    idx = torch.as_tensor(indices, dtype=torch.long)
    spu, apu, lay = token_grid.semantic_per_unit, token_grid.acoustic_per_unit, stage.layout
    total = min(tokens.semantic.shape[1] // spu, tokens.acoustic.shape[2] // apu)  # whole units per clip
    U, step = min(grid.span_frames // spu, total), grid.step_frames // spu
    u = (torch.randint(0, (total - U) // step + 1, (len(indices),), generator=generator) * step)  # (B,) units
    where = melody_positions(stage.melody_tokens, grid, u * spu, spu)  # (B, W)
    if where.max() >= melody.shape[1]:
        raise ValueError(f"the melody time line holds {melody.shape[1]} positions per clip, crops need {int(where.max()) + 1}")
    S = torch.stack([tokens.semantic[i, a * spu:(a + U) * spu] for i, a in zip(idx.tolist(), u.tolist())])  # (B, T_s)
    A = torch.stack([tokens.acoustic[i, :lay.coarse_levels, a * apu:(a + U) * apu]
                     for i, a in zip(idx.tolist(), u.tolist())])  # (B, Q_c, T_a)
    Um = melody[idx[:, None], where]  # (B, W, Q)
    return stage.sequence(stage.condition(Um, tokens.mulan[idx], S), stage.encode_target(A))


def hum_chroma_tokens(hum: Tensor, units: int, preset: Preset) -> Tensor:
    """Generation: chroma tokens of the first `units` grid units of a hum (T,), looped to the music -> (1, units, 1).

    Computed over the whole hum (looped when the music is longer), as a training clip's are over the whole
    clip: a training clip given as the hum gets exactly its cached tokens (Chapter 8).
    """
    unit = TokenGrid.from_preset(preset).unit
    wave = loop_to(hum.reshape(1, -1).float().cpu(), max(units * unit, hum.numel()))  # (1, T')
    return chroma_tokens(wave, preset.codec.sample_rate, unit)[:, :units, None]  # (1, units, 1)
