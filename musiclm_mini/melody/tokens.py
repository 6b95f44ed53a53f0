"""Melody tokens: each window's embedding quantized by the RVQ of Chapter 2 (Chapter 8; MusicLM Sec. 6, appendix C).

Paper: "We extract three melody embeddings, with a hop length of 3 seconds, discretize each of them to
tokens with residual vector quantization (RVQ) and concatenate the resulting token sequences with the
MuLan audio tokens M_A. We use an RVQ composed of 24 quantizers, each with a vocabulary size of 512."

    10 s of audio --embedder--> (B, 3, D) --RVQ, Q levels--> (B, 3, Q) --flatten--> (B, 3 Q) melody tokens
    paper: 3 x 24 = 72 tokens of 512 codes; tiny: 3 x 8 = 24 tokens of 128 codes (`MelodyConfig.rvq`)

As MuLan's (Chapter 5), the RVQ is fitted once, after the embedder is trained, on embeddings of
training audio (k-means, then EMA updates: `tokenizers/quantize.py`), and stored with the embedder.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..errors import CheckpointError
from .vit import MelodyEmbedder


@torch.no_grad()
def fit_melody_rvq(model: MelodyEmbedder, embeddings: Tensor, steps: int = 30, seed: int = 0) -> Tensor:
    """Fit the embedder's RVQ on window embeddings (N, D), every level (Chapter 8) -> MSE after each level (Q,)."""
    return model.rvq.fit(embeddings, steps, seed)  # k-means, then EMA, as MuLan's (Chapter 5)


def quantize(model: MelodyEmbedder, embeddings: Tensor) -> Tensor:
    """Window embeddings (B, W, D) -> codes (B, W, Q) (Chapter 8)."""
    if not bool(model.rvq.layers[0].initialized):
        raise CheckpointError("the melody RVQ is not fitted yet: train the embedder to the end, or load a trained one")
    return model.rvq.encode(embeddings.float()).transpose(1, 2)  # encode: (B, W, D) -> (B, Q, W)


def dequantize(model: MelodyEmbedder, codes: Tensor) -> Tensor:
    """Codes (B, W, Q) -> the quantized embeddings (B, W, D): what the tokens still say (Chapter 8)."""
    return model.rvq.decode(codes.transpose(1, 2))


@torch.no_grad()
def melody_tokens(model: MelodyEmbedder, wave: Tensor) -> Tensor:
    """Melody tokens of audio (Chapter 8): (B, T) -> (B, W * Q) long, window by window (window 0's Q levels first).

    10 s gives W = 3 windows. These are what the paper concatenates with the MuLan tokens.
    """
    codes = quantize(model, model.embed(wave))  # (B, W, Q)
    return codes.flatten(1)
