"""The three stages of MusicLM's hierarchy: vocabularies, sequence layouts, losses, sampling (Chapter 6).

MusicLM (Sec. 3.2) generates audio tokens in three autoregressive stages, each a decoder-only
Transformer (`transformer.py`) over its own vocabulary:

    semantic stage   p(S_t | S_<t, M)                 M: 12 MuLan tokens, S: semantic tokens
    coarse stage     p(A_t | A_<t, S, M), levels 1-4   A: SoundStream RVQ tokens
    fine stage       p(A_t | A_<t, A_coarse), levels 5-12   (AudioLM's fine stage)

Training conditions on M_A, the MuLan tokens of the training audio itself; generation swaps in M_T,
the MuLan tokens of the text (`musiclm.py`). Every token type owns one slice of its stage's
vocabulary, so an id alone says what it is (K_m, K_s, K_a: codes per MuLan level, semantic
clusters, codes per SoundStream level; 12 MuLan and 12 SoundStream levels in the paper):

    semantic vocabulary  | M1 (K_m) | M2 | ... | M12 | 0 | S (K_s) |
    coarse vocabulary    | M1 | ... | M12 | 0 | S | A1 (K_a) | A2 | A3 | A4 |
    fine vocabulary      | A1 | A2 | ... | A12 |          (A1-A4 are read, A5-A12 predicted)

"0" is one extra id, the *null condition*: the 12 MuLan ids replaced by 12 nulls mean "no text".
The paper has no such id. We add it for classifier-free guidance (`Sampling.guidance`): the small
stages, trained with a fraction of their examples unconditioned (`Stage.drop_condition`), can then
be asked how much more likely a token is with the text than without it, and that ratio amplified.

Sequences, with the loss only on the part marked ^ (the conditioning is read, never predicted):

    semantic   m1 m2 .. m12  s1 s2 s3 ........ sT
                             ^^^^^^^^^^^^^^^^^^^^
    coarse     m1 .. m12  s1 .. sT  a(1,1) a(1,2) a(1,3) a(1,4) a(2,1) a(2,2) ... a(T',4)
                                    ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
    fine       a(1,1) .. a(1,4) a(2,1) .. a(T',4)  a(1,5) .. a(1,12) a(2,5) .. a(T',12)
                                                   ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^

a(t, q) is the token of frame t at RVQ level q. Acoustic tokens are flattened frame by frame, coarse
levels first within a frame, as in AudioLM: level q of frame t comes after every level of frame
t-1 and after levels < q of its own frame, so each prediction refines what the frame already has.
The fine stage puts the whole crop's coarse tokens first, so every fine token also sees the coarse
tokens of *later* frames (AudioLM conditions its fine stage on the coarse tokens of the chunk); a
per-frame interleave (a(t,1..4) a(t,5..12) a(t+1,1..4) ...) would hide them for no gain, since the
coarse tokens are all known before the fine stage starts.

"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..config import Preset

STAGE_NAMES = ("semantic", "coarse", "fine")


# ---------------------------------------------------------------------------------------------
# Vocabulary layout and per-frame flattening
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TokenLayout:
    """Sizes of every token type, hence every vocabulary slice (Chapter 6)."""

    mulan_levels: int
    mulan_codes: int
    semantic_codes: int
    codec_levels: int
    codec_codes: int
    coarse_levels: int

    @classmethod
    def from_preset(cls, preset: Preset) -> "TokenLayout":
        """The layout of a preset's tokenizers (Chapter 6)."""
        if not 1 <= preset.coarse_levels < preset.codec.rvq.num_quantizers:
            raise ValueError(f"coarse_levels must be in 1..{preset.codec.rvq.num_quantizers - 1}, "
                             f"got {preset.coarse_levels}")
        return cls(preset.mulan.rvq.num_quantizers, preset.mulan.rvq.codebook_size, preset.semantic.num_clusters,
                   preset.codec.rvq.num_quantizers, preset.codec.rvq.codebook_size, preset.coarse_levels)

    @property
    def fine_levels(self) -> int:
        return self.codec_levels - self.coarse_levels

    @property
    def null_condition(self) -> int:
        """The id that stands for "no MuLan token", right after the MuLan slices (Chapter 6)."""
        return self.mulan_levels * self.mulan_codes

    @property
    def semantic_offset(self) -> int:
        """First semantic id, after the MuLan slices and the null id (semantic and coarse vocabularies) (Chapter 6)."""
        return self.null_condition + 1

    @property
    def acoustic_offset(self) -> int:
        """First coarse acoustic id in the coarse vocabulary, after M and S (Chapter 6)."""
        return self.semantic_offset + self.semantic_codes


def check_codes(codes: Tensor, codebook_size: int, what: str) -> Tensor:
    """Integer tokens in [0, codebook_size) -> long tensor, else a ValueError naming `what` (Chapter 6)."""
    if codes.dtype.is_floating_point or codes.dtype == torch.bool:
        raise ValueError(f"{what} must be integer token ids, got dtype {codes.dtype}")
    if codes.numel() and (codes.min() < 0 or codes.max() >= codebook_size):
        raise ValueError(f"{what} must lie in [0, {codebook_size}), got [{int(codes.min())}, {int(codes.max())}]")
    return codes.long()


def offset_levels(codes: Tensor, codebook_size: int, offset: int = 0) -> Tensor:
    """Level q of codes (B, Q) or (B, Q, T) -> ids offset + q * codebook_size + code (Chapter 6)."""
    levels = torch.arange(codes.shape[1], device=codes.device) * codebook_size
    shape = (1, -1) + (1,) * (codes.dim() - 2)
    return codes + offset + levels.view(shape)


def flatten_frames(codes: Tensor, codebook_size: int, offset: int = 0) -> Tensor:
    """Per-frame flattening with level offsets (Chapter 6): codes (B, Q, T) -> ids (B, T * Q).

    Output position t * Q + q holds level q of frame t: a(1,1) a(1,2) .. a(1,Q) a(2,1) ...
    """
    ids = offset_levels(codes, codebook_size, offset)  # (B, Q, T)
    return ids.transpose(1, 2).reshape(codes.shape[0], -1)  # (B, T, Q) -> (B, T * Q)


def unflatten_frames(ids: Tensor, levels: int, codebook_size: int, offset: int = 0) -> Tensor:
    """Inverse of `flatten_frames` (Chapter 6): ids (B, T * Q) -> codes (B, Q, T).

    Raises ValueError when the length is not a whole number of frames or an id sits in the wrong
    level's slice (which would mean the layout or the sampling ranges are broken).
    """
    B, L = ids.shape
    if L % levels:
        raise ValueError(f"{L} tokens are not a whole number of frames of {levels} levels")
    codes = ids.view(B, L // levels, levels).transpose(1, 2) - offset  # (B, Q, T)
    codes = codes - (torch.arange(levels, device=ids.device) * codebook_size).view(1, -1, 1)
    if codes.numel() and (codes.min() < 0 or codes.max() >= codebook_size):
        raise ValueError("token ids outside their level's vocabulary slice")
    return codes


def level_range(position: int, levels: int, codebook_size: int, offset: int = 0) -> tuple[int, int]:
    """Vocabulary slice [lo, hi) of flattened position `position` (0 = level 1 of frame 1) (Chapter 6)."""
    lo = offset + (position % levels) * codebook_size
    return lo, lo + codebook_size


# ---------------------------------------------------------------------------------------------
# The three stages: [conditioning tokens] + [target tokens]
# ---------------------------------------------------------------------------------------------
class Stage:
    """What every stage shares: a conditioning prefix, a target part and its sampling slices (Chapter 6).

    Subclasses define `condition(...)` (inputs -> conditioning ids), `encode_target` (tokens ->
    ids), `decode_target` (ids -> tokens) and `target_range(j)`, the slice of target token j.
    """

    name: str
    tokens_per_frame: int
    reads_mulan: bool = False  # does the conditioning start with the 12 MuLan ids? (semantic, coarse)

    def __init__(self, layout: TokenLayout):
        self.layout = layout

    @property
    def vocab_size(self) -> int:
        """Ids in this stage's vocabulary (Chapter 6)."""
        raise NotImplementedError

    def target_range(self, j: int) -> tuple[int, int]:
        """Vocabulary slice [lo, hi) that target token j (0 = first) must come from (Chapter 6)."""
        raise NotImplementedError

    def sequence(self, condition: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        """ids (B, C) + (B, L) -> (tokens (B, C + L), loss_mask (B, C + L) True on the target) (Chapter 6)."""
        tokens = torch.cat([condition, target], dim=1)
        mask = torch.zeros_like(tokens, dtype=torch.bool)
        mask[:, condition.shape[1]:] = True
        return tokens, mask

    def uncondition(self, tokens: Tensor) -> Tensor:
        """The same sequences (B, L) with their MuLan ids replaced by the null id: "no text" (Chapter 6)."""
        if not self.reads_mulan:
            raise ValueError(f"the {self.name} stage reads no MuLan tokens: there is no text condition to remove")
        out = tokens.clone()
        out[:, :self.layout.mulan_levels] = self.layout.null_condition
        return out

    def drop_condition(self, tokens: Tensor, p: float, generator: torch.Generator | None = None) -> Tensor:
        """Each sequence (B, L) loses its MuLan ids with probability `p` (Chapter 6).

        Training with p > 0 teaches one model both p(x | M) and p(x), which classifier-free guidance
        needs at sampling time. The paper trains with p = 0; so do our `paper` and stages without MuLan.
        """
        if not 0.0 <= p < 1.0:
            raise ValueError(f"condition dropout must be in [0, 1), got {p}")
        if p == 0.0 or not self.reads_mulan:
            return tokens
        drop = torch.rand(tokens.shape[0], generator=generator) < p  # (B,)
        return torch.where(drop.to(tokens.device)[:, None], self.uncondition(tokens), tokens)


class SemanticStage(Stage):
    """p(S | M): [12 MuLan ids] + [semantic ids] (Chapter 6)."""

    name, tokens_per_frame, reads_mulan = "semantic", 1, True

    @property
    def vocab_size(self) -> int:
        return self.layout.semantic_offset + self.layout.semantic_codes

    def condition(self, mulan: Tensor) -> Tensor:
        """MuLan tokens (B, Q_m) -> ids (B, Q_m), level q in slice q (Chapter 6)."""
        lay = self.layout
        return offset_levels(check_codes(mulan, lay.mulan_codes, "MuLan tokens"), lay.mulan_codes)

    def encode_target(self, semantic: Tensor) -> Tensor:
        """Semantic tokens (B, T) -> ids (B, T) (Chapter 6)."""
        return check_codes(semantic, self.layout.semantic_codes, "semantic tokens") + self.layout.semantic_offset

    def decode_target(self, ids: Tensor) -> Tensor:
        """Ids (B, T) -> semantic tokens (B, T) (Chapter 6)."""
        return check_codes(ids - self.layout.semantic_offset, self.layout.semantic_codes, "semantic ids")

    def target_range(self, j: int) -> tuple[int, int]:
        return self.layout.semantic_offset, self.vocab_size


class CoarseStage(Stage):
    """p(A_coarse | S, M): [12 MuLan ids] + [semantic ids] + [coarse ids, frame by frame] (Chapter 6)."""

    name, reads_mulan = "coarse", True

    def __init__(self, layout: TokenLayout):
        super().__init__(layout)
        self.tokens_per_frame = layout.coarse_levels

    @property
    def vocab_size(self) -> int:
        return self.layout.acoustic_offset + self.layout.coarse_levels * self.layout.codec_codes

    def condition(self, mulan: Tensor, semantic: Tensor) -> Tensor:
        """MuLan (B, Q_m) and semantic (B, T_s) tokens -> ids (B, Q_m + T_s) (Chapter 6)."""
        return torch.cat([SemanticStage(self.layout).condition(mulan),
                          SemanticStage(self.layout).encode_target(semantic)], dim=1)

    def encode_target(self, coarse: Tensor) -> Tensor:
        """Coarse codec tokens (B, Q_c, T) -> ids (B, T * Q_c) (Chapter 6)."""
        lay = self.layout
        if coarse.dim() != 3 or coarse.shape[1] != lay.coarse_levels:
            raise ValueError(f"coarse tokens must be (B, {lay.coarse_levels}, T), got {tuple(coarse.shape)}")
        return flatten_frames(check_codes(coarse, lay.codec_codes, "coarse tokens"), lay.codec_codes,
                              lay.acoustic_offset)

    def decode_target(self, ids: Tensor) -> Tensor:
        """Ids (B, T * Q_c) -> coarse codec tokens (B, Q_c, T) (Chapter 6)."""
        return unflatten_frames(ids, self.layout.coarse_levels, self.layout.codec_codes, self.layout.acoustic_offset)

    def target_range(self, j: int) -> tuple[int, int]:
        return level_range(j, self.layout.coarse_levels, self.layout.codec_codes, self.layout.acoustic_offset)


class FineStage(Stage):
    """p(A_fine | A_coarse): [coarse ids of the crop] + [fine ids, frame by frame] (Chapter 6)."""

    name = "fine"

    def __init__(self, layout: TokenLayout):
        super().__init__(layout)
        self.tokens_per_frame = layout.fine_levels

    @property
    def vocab_size(self) -> int:
        return self.layout.codec_levels * self.layout.codec_codes

    def condition(self, coarse: Tensor) -> Tensor:
        """Coarse codec tokens (B, Q_c, T) -> ids (B, T * Q_c) in slices A1..A_Qc (Chapter 6)."""
        lay = self.layout
        if coarse.dim() != 3 or coarse.shape[1] != lay.coarse_levels:
            raise ValueError(f"coarse tokens must be (B, {lay.coarse_levels}, T), got {tuple(coarse.shape)}")
        return flatten_frames(check_codes(coarse, lay.codec_codes, "coarse tokens"), lay.codec_codes)

    def encode_target(self, fine: Tensor) -> Tensor:
        """Fine codec tokens (B, Q_f, T) -> ids (B, T * Q_f) in slices A_(Qc+1)..A_Q (Chapter 6)."""
        lay = self.layout
        if fine.dim() != 3 or fine.shape[1] != lay.fine_levels:
            raise ValueError(f"fine tokens must be (B, {lay.fine_levels}, T), got {tuple(fine.shape)}")
        return flatten_frames(check_codes(fine, lay.codec_codes, "fine tokens"), lay.codec_codes,
                              lay.coarse_levels * lay.codec_codes)

    def decode_target(self, ids: Tensor) -> Tensor:
        """Ids (B, T * Q_f) -> fine codec tokens (B, Q_f, T) (Chapter 6)."""
        lay = self.layout
        return unflatten_frames(ids, lay.fine_levels, lay.codec_codes, lay.coarse_levels * lay.codec_codes)

    def target_range(self, j: int) -> tuple[int, int]:
        lay = self.layout
        return level_range(j, lay.fine_levels, lay.codec_codes, lay.coarse_levels * lay.codec_codes)


class MulanOnlyCoarseStage(CoarseStage):
    """p(A_coarse | M): the paper's ablation without semantic tokens, [12 MuLan ids] + [coarse ids] (Chapter 7, Sec. 5).

    Same vocabulary, crops and targets as the coarse stage; only the semantic ids are missing from the prompt,
    so generation (which still passes them) ignores them.
    """

    def condition(self, mulan: Tensor, semantic: Tensor | None = None) -> Tensor:
        """MuLan tokens (B, Q_m) -> ids (B, Q_m); `semantic` is ignored (Chapter 7)."""
        return SemanticStage(self.layout).condition(mulan)


def make_stage(name: str, layout: TokenLayout) -> Stage:
    """The stage called `name`: semantic, coarse or fine (Chapter 6), or coarse-nosemantic (Chapter 7's ablation)."""
    classes = {"semantic": SemanticStage, "coarse": CoarseStage, "fine": FineStage,
               "coarse-nosemantic": MulanOnlyCoarseStage}
    if name not in classes:
        raise ValueError(f"unknown stage {name!r}: choose one of {', '.join(classes)}")
    return classes[name](layout)
