"""The melody-conditioned semantic stage: p(S | melody tokens, M) (Chapter 8; MusicLM Sec. 6 and appendix C).

Paper: "we quantize the melody embeddings with RVQ, and concatenate the resulting token sequences with the
MuLan audio tokens M_A. During inference, we compute melody tokens from the input audio clip and concatenate
them with the MuLan text tokens M_T." The semantic stage of Chapter 6 with a longer conditioning prefix:

    melody-semantic   u(1,1) .. u(1,Q) u(2,1) .. u(W,Q)  m1 .. m12  s1 s2 ........ sT
                                                                    ^^^^^^^^^^^^^^^^^
    u(w, q): RVQ level q of melody window w of the crop's own span (`alignment.py`; tiny: W = 2 windows x
    Q = 8 levels = 16 tokens, then 12 MuLan tokens, then 75 semantic tokens of 6 s)

Its vocabulary is the semantic stage's with one slice per melody RVQ level appended, so MuLan, the null
id and the semantic tokens keep their ids (and MuLan's codebook embedding, `mulan_embedding.py`, its place):

    | M1 (K_m) | ... | M12 | 0 | S (K_s) | U1 (K_u) | ... | UQ |      tiny: 3,072 + 1 + 128 + 8 x 128 = 4,225 ids

The null condition (condition dropout and classifier-free guidance, Chapter 6) replaces the melody *and* the
MuLan ids: guidance then pushes towards both the tune and the text, p(S | U, M) against p(S). Only the
semantic stage reads the melody, as in the paper; the coarse and fine stages follow its semantic tokens.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..config import Preset, StageConfig
from ..hierarchy.mulan_embedding import CodebookEmbedding
from ..hierarchy.token_cache import TokenSet
from ..hierarchy.tokens import SemanticStage, TokenLayout, check_codes
from ..hierarchy.transformer import Transformer
from .alignment import MelodyGrid


@dataclass(frozen=True)
class MelodyLayout:
    """Melody tokens per crop (Chapter 8): `windows` windows of `levels` RVQ codes among `codes` each."""

    windows: int
    levels: int
    codes: int

    @classmethod
    def from_preset(cls, preset: Preset) -> "MelodyLayout":
        """tiny: 2 windows per 6 s crop, 8 levels of 128 codes (`MelodyConfig.rvq`)."""
        rvq = preset.melody.rvq
        return cls(MelodyGrid.from_preset(preset).windows, rvq.num_quantizers, rvq.codebook_size)

    @property
    def tokens(self) -> int:
        return self.windows * self.levels


class MelodyPrefix:
    """What a melody stage adds to a stage of Chapter 6 (Chapter 8): W x Q melody ids in front of its MuLan ids.

    The melody's ids are slices appended after the stage's own vocabulary, so every other id keeps its place;
    each subclass says where its vocabulary ends (`melody_offset`). The null condition replaces the melody and
    the MuLan ids together: the unconditional branch of guidance has neither tune nor text.
    """

    melody: MelodyLayout
    melody_tokens: str = "embedder"
    melody_offset: int

    @property
    def vocab_size(self) -> int:
        return self.melody_offset + self.melody.levels * self.melody.codes

    @property
    def condition_length(self) -> int:
        """The ids the null condition replaces: melody then MuLan (tiny semantic 16 + 12; coarse 8 or 25 + 12)."""
        return self.melody.tokens + self.layout.mulan_levels

    def melody_ids(self, codes: Tensor) -> Tensor:
        """Melody codes (B, W, Q) -> ids (B, W * Q), position by position, level q in slice U_q (Chapter 8)."""
        m = self.melody
        if codes.dim() != 3 or codes.shape[1:] != (m.windows, m.levels):
            raise ValueError(f"melody codes must be (B, {m.windows} windows, {m.levels} levels) for "
                             f"{self.melody_tokens!r} melody tokens, got {tuple(codes.shape)}")
        codes = check_codes(codes, m.codes, "melody tokens")
        levels = torch.arange(m.levels, device=codes.device) * m.codes  # (Q,)
        return (codes + self.melody_offset + levels).flatten(1)  # (B, W * Q)

    def condition(self, melody: Tensor, *rest: Tensor) -> Tensor:
        """Melody codes (B, W, Q) and the stage's own condition (MuLan, and semantic for coarse) -> ids (B, W * Q + ...)."""
        return torch.cat([self.melody_ids(melody), super().condition(*rest)], dim=1)

    def uncondition(self, tokens: Tensor) -> Tensor:
        """The same sequences (B, L) with melody and MuLan ids replaced by the null id: no tune, no text (Chapter 8)."""
        out = tokens.clone()
        out[:, :self.condition_length] = self.layout.null_condition
        return out


class MelodySemanticStage(MelodyPrefix, SemanticStage):
    """p(S | U, M): [W x Q melody ids] + [12 MuLan ids] + [semantic ids] (Chapter 8)."""

    name = "melody-semantic"

    def __init__(self, layout: TokenLayout, melody: MelodyLayout):
        super().__init__(layout)
        self.melody = melody

    @property
    def melody_offset(self) -> int:
        """First melody id: right after the semantic slice (Chapter 8)."""
        return self.layout.semantic_offset + self.layout.semantic_codes

    def target_range(self, j: int) -> tuple[int, int]:
        return self.layout.semantic_offset, self.melody_offset  # semantic ids only, never a melody id


@dataclass(frozen=True)
class MelodyStageModelConfig:
    """What the `melody-semantic-stage` component is (Chapter 8): the semantic stage's Transformer and layout, plus the melody's."""

    stage: StageConfig
    layout: TokenLayout
    melody: MelodyLayout
    mulan_dim: int

    @property
    def vocab_size(self) -> int:
        return MelodySemanticStage(self.layout, self.melody).vocab_size


def melody_semantic_stage_config(preset: Preset) -> MelodyStageModelConfig:
    """The `melody-semantic-stage` of `preset`: the semantic stage's sizes and settings (Chapter 8)."""
    return MelodyStageModelConfig(preset.semantic_stage, TokenLayout.from_preset(preset),
                                  MelodyLayout.from_preset(preset), preset.mulan.rvq.dim)


def build_melody_stage_model(config: MelodyStageModelConfig, mulan_codebooks: Tensor | None = None) -> Transformer:
    """A fresh Transformer over the melody-semantic vocabulary (Chapter 8), as `stage_models.build_stage_model`."""
    cfg, vocab = config.stage, config.vocab_size
    model = Transformer(cfg.transformer, vocab)
    if cfg.mulan_codebook_embedding:
        if mulan_codebooks is None:  # loading a checkpoint overwrites them with the ones it was trained with
            mulan_codebooks = torch.zeros(config.layout.mulan_levels, config.layout.mulan_codes, config.mulan_dim)
        model.tok_emb = CodebookEmbedding(vocab, cfg.transformer.d_model, mulan_codebooks)
    return model


def melody_stage_batch(stage: MelodySemanticStage, tokens: TokenSet, melody_codes: Tensor, indices: list[int],
                       grid: MelodyGrid, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Random crops of clips `indices`, each with the melody of its own span -> (tokens (B, L), loss_mask (B, L)) (Chapter 8).

    melody_codes (N, P, Q): every clip's melody windows on the grid (`token_cache.melody_window_codes`).
    Crops start on multiples of `grid.step_frames`, so their windows are cached ones (`MelodyGrid.crop_index`).
    """
    idx = torch.as_tensor(indices, dtype=torch.long)
    total = tokens.semantic.shape[1]
    W = min(grid.span_frames, total)
    starts = torch.randint(0, (total - W) // grid.step_frames + 1, (len(indices),), generator=generator) * grid.step_frames
    window = grid.crop_index(starts)  # (B, W_m): grid positions of each crop's melody windows
    if window.max() >= melody_codes.shape[1]:
        raise ValueError(f"melody codes hold {melody_codes.shape[1]} windows per clip, crops need {int(window.max()) + 1}")
    S = torch.stack([tokens.semantic[i, a:a + W] for i, a in zip(idx.tolist(), starts.tolist())])  # (B, W)
    U = melody_codes[idx[:, None], window]  # (B, W_m, Q)
    return stage.sequence(stage.condition(U, tokens.mulan[idx]), stage.encode_target(S))
