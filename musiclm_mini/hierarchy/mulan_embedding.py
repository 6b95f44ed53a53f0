"""Embedding MuLan tokens through MuLan's own codebooks, so a small stage can generalise (Chapter 6).

A stage normally learns one embedding row per token id, MuLan tokens included. With the paper's data
(millions of clips) every MuLan code is seen often. With `tiny`'s 1,024 training clips and 256 codes
per MuLan level, each level-1 code is seen in about 4 to 7 clips: a row per code can only memorise
those clips, and a caption whose code is rare gets an embedding that means nothing. The stages then
learn to ignore the MuLan tokens altogether (Chapter 6 measures it).

Not in the paper, and off in the `paper` preset: `StageConfig.mulan_codebook_embedding` embeds MuLan
token (level q, code k) as

    P c_{q,k} + e_q          c_{q,k}: MuLan's RVQ codebook vector (frozen), P: a learned d x 128
                             projection shared by all codes, e_q: a learned vector per level

so codes that MuLan places close together start close for the stage too, and what the stage learns
from one clip carries over to every clip with a nearby code. Every other id keeps its own row.
"""
from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor


class CodebookEmbedding(nn.Module):
    """Token embedding whose first `levels * codes` ids are MuLan tokens, embedded via codebooks (Chapter 6).

    `codebooks` (levels, codes, dim) is a buffer, saved with the stage's weights: the stage keeps the
    codebooks it was trained with, and the checkpoint's tokenizer fingerprints (`token_cache`) make sure
    it is only ever loaded next to that MuLan.
    """

    def __init__(self, vocab_size: int, d_model: int, codebooks: Tensor):
        super().__init__()
        if codebooks.dim() != 3:
            raise ValueError(f"codebooks must be (levels, codes, dim), got {tuple(codebooks.shape)}")
        levels, codes, dim = codebooks.shape
        if vocab_size <= levels * codes:
            raise ValueError(f"vocabulary of {vocab_size} ids cannot start with {levels} x {codes} MuLan ids")
        self.levels, self.codes = levels, codes
        self.other = nn.Embedding(vocab_size, d_model)  # rows of the MuLan ids stay unused
        self.register_buffer("codebooks", codebooks.reshape(levels * codes, dim).float().clone())
        self.proj = nn.Linear(dim, d_model, bias=False)
        self.level = nn.Embedding(levels, d_model)
        for weight in (self.other.weight, self.proj.weight, self.level.weight):  # as the Transformer's init
            nn.init.normal_(weight, mean=0.0, std=0.02)

    def forward(self, ids: Tensor) -> Tensor:
        """ids (B, T) -> embeddings (B, T, D) (Chapter 6)."""
        n = self.levels * self.codes
        is_mulan = ids < n  # (B, T)
        if ids.device.type == "cpu" and not self.training and not bool(is_mulan.any()):
            return self.other(ids)  # no MuLan id (a decoding step): what torch.where would pick everywhere
        safe = ids.clamp(max=n - 1)
        mulan = self.proj(self.codebooks[safe]) + self.level(safe // self.codes)  # (B, T, D)
        return torch.where(is_mulan[..., None], mulan, self.other(ids))
