"""The three stage models: a `Transformer` sized for each stage, its loss and its size (Chapter 6).

MusicLM Sec. 3.2 and 4.1: the semantic, coarse and fine stages are decoder-only Transformers of the
same shape (24 layers, 16 heads, d_model 1024 in the paper), each over its own vocabulary
(`tokens.py`). What a stage model *is* (`StageModelConfig`) is its Transformer, its vocabulary
layout and whether MuLan tokens are embedded through MuLan's codebooks (`mulan_embedding.py`); the
checkpoint of a stage stores it, so `components.load("coarse-stage")` builds the model from it.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import Preset, StageConfig, get_preset
from .mulan_embedding import CodebookEmbedding
from .tokens import STAGE_NAMES, TokenLayout, make_stage
from .transformer import Transformer


@dataclass(frozen=True)
class StageModelConfig:
    """What one stage model is (Chapter 6): its stage, Transformer and sampling settings, token layout.

    `mulan_dim` is the dimension of MuLan's codebook vectors, used when `stage.mulan_codebook_embedding`.
    """

    name: str  # semantic, coarse or fine
    stage: StageConfig
    layout: TokenLayout
    mulan_dim: int

    @property
    def vocab_size(self) -> int:
        return make_stage(self.name, self.layout).vocab_size


def stage_model_config(name: str, preset: Preset) -> StageModelConfig:
    """The config of stage `name` (semantic, coarse, fine) of `preset` (Chapter 6)."""
    if name not in STAGE_NAMES:
        raise ValueError(f"unknown stage {name!r}: choose one of {', '.join(STAGE_NAMES)}")
    return StageModelConfig(name, getattr(preset, f"{name}_stage"), TokenLayout.from_preset(preset),
                            preset.mulan.rvq.dim)


def semantic_stage_config(preset: Preset) -> StageModelConfig:
    """The `semantic-stage` component of `preset`: p(S | M) (Chapter 6)."""
    return stage_model_config("semantic", preset)


def coarse_stage_config(preset: Preset) -> StageModelConfig:
    """The `coarse-stage` component of `preset`: p(A_1..4 | S, M) (Chapter 6)."""
    return stage_model_config("coarse", preset)


def fine_stage_config(preset: Preset) -> StageModelConfig:
    """The `fine-stage` component of `preset`: p(A_5..Q | A_1..4) (Chapter 6)."""
    return stage_model_config("fine", preset)


def build_stage_model(config: StageModelConfig, mulan_codebooks: Tensor | None = None) -> Transformer:
    """A fresh Transformer for one stage (Chapter 6).

    With `mulan_codebook_embedding` (not in the paper) its MuLan tokens are embedded through MuLan's
    codebooks: `mulan_codebooks` (levels, codes, dim) when training; zeros otherwise, which loading a
    checkpoint overwrites with the codebooks the stage was trained with.
    """
    st, cfg = make_stage(config.name, config.layout), config.stage
    model = Transformer(cfg.transformer, st.vocab_size)
    if cfg.mulan_codebook_embedding and st.reads_mulan:
        if mulan_codebooks is None:
            mulan_codebooks = torch.zeros(config.layout.mulan_levels, config.layout.mulan_codes, config.mulan_dim)
        model.tok_emb = CodebookEmbedding(st.vocab_size, cfg.transformer.d_model, mulan_codebooks)
    return model


# ---------------------------------------------------------------------------------------------
# Loss: next-token cross-entropy on the target part only
# ---------------------------------------------------------------------------------------------
def stage_loss(model, tokens: Tensor, loss_mask: Tensor) -> tuple[Tensor, Tensor]:
    """Mean cross-entropy and accuracy of predicting the masked tokens (Chapter 6).

    tokens, loss_mask (B, L). Position i's logits predict token i + 1, so the loss uses
    loss_mask[:, 1:]: conditioning tokens are inputs only, their prediction is not trained.
    """
    logits, _ = model(tokens[:, :-1])  # (B, L - 1, V)
    targets, mask = tokens[:, 1:], loss_mask[:, 1:]  # (B, L - 1)
    if not mask.any():
        raise ValueError("loss_mask selects no predicted token")
    loss = F.cross_entropy(logits[mask], targets[mask])  # only the predicted part counts
    accuracy = (logits[mask].argmax(-1) == targets[mask]).float().mean()
    return loss, accuracy


# ---------------------------------------------------------------------------------------------
# Parameter counting (no memory needed: build on the meta device)
# ---------------------------------------------------------------------------------------------
def count_parameters(model: nn.Module, include_embeddings: bool = True) -> int:
    """Number of parameters (Chapter 6). Without embeddings: the Transformer body only, i.e. minus
    the token embedding (with its MuLan projection, if any) and the output head."""
    total = sum(p.numel() for p in model.parameters())
    if include_embeddings:
        return total
    if not (hasattr(model, "tok_emb") and hasattr(model, "head")):
        raise TypeError(f"include_embeddings=False needs a Transformer, got {type(model).__name__}")
    return total - sum(p.numel() for p in model.tok_emb.parameters()) - model.head.weight.numel()


def parameter_table(preset_names: tuple[str, ...] = ("tiny", "colab", "paper")) -> str:
    """A text table of per-stage vocabulary and parameter counts for each preset (Chapter 6).

    Built as training builds them, on the meta device: `body` is everything but the input embedding
    and the output head. Vocabularies: semantic = MuLan tokens + the null condition + semantic
    clusters; coarse = the same + the coarse RVQ levels; fine = all codec levels.
    """
    rows = [f"{'preset':<7}{'stage':<10}{'vocab':>7}{'total':>14}{'body':>14}"]
    for name in preset_names:
        preset = get_preset(name)
        for stage in STAGE_NAMES:
            config = stage_model_config(stage, preset)
            with torch.device("meta"):
                model = build_stage_model(config)
            rows.append(f"{name:<7}{stage:<10}{config.vocab_size:>7}{count_parameters(model):>14,}"
                        f"{count_parameters(model, include_embeddings=False):>14,}")
    return "\n".join(rows)


if __name__ == "__main__":
    print(parameter_table())
