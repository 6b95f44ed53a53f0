"""The paper's reported results, to print beside the book's own measurements (Chapters 7 and 10).

Sizes live in the `paper` preset (`musiclm_mini.config`); this module holds what the paper *measured*.
Source: Agostinelli et al. (2023), Table 1, Sections 4.3-5; `book/paper_numbers.md` quotes them.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Table1Row:
    """One row of the paper's Table 1 (Chapter 7). None where the paper reports no value."""

    model: str
    fad_trill: float | None
    fad_vggish: float | None
    kld: float | None
    mcc: float | None
    wins: int | None  # pairwise wins in the listening test; None: the paper reports none


TABLE1 = (
    Table1Row("Riffusion", 0.76, 13.4, 1.19, 0.34, 158),
    Table1Row("Mubert", 0.45, 9.6, 1.58, 0.32, 97),
    Table1Row("MusicLM", 0.44, 4.0, 1.01, 0.51, 312),
    Table1Row("MusicCaps (reference)", None, None, None, None, 472),
)

# Ablation without the semantic stage (Section 5): coarse tokens straight from MuLan tokens.
# The paper ran no listening test on it, so it has no win count.
ABLATION_NO_SEMANTIC = Table1Row("MusicLM without semantic stage", 0.42, 4.0, 1.05, 0.49, None)


@dataclass(frozen=True)
class MusicCapsStats:
    """The MusicCaps evaluation set (Section 4.3; Chapter 1 and 7)."""

    clips: int = 5_521
    audioset_eval_clips: int = 2_858
    audioset_train_clips: int = 2_663
    balanced_subset: int = 1_000
    clip_seconds: float = 10.0
    sentences_per_caption: int = 4  # about
    aspects_per_clip: int = 11  # about


MUSICCAPS = MusicCapsStats()

# Memorization (Section 5, Figure 3; Chapter 10): token entropy of samples.
TYPICAL_SAMPLE_ENTROPY_BITS = 4.6  # a typical 125-token sample
LOW_COST_MATCH_ENTROPY_BITS = 1.0  # approximate matches with score below 0.5
LOW_COST_MATCH_SCORE = 0.5
