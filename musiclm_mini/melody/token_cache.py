"""Melody tokens of the training clips, computed once and cached beside the other tokens (Chapter 8; MusicLM Sec. 6).

The melody-conditioned semantic stage learns from the melody tokens of each clip's *own* audio: the shipped
embedder was trained to ignore the instruments (a hum lands near the arrangement of the same tune, Chapter 8's
retrieval table), so at generation time the hum's tokens stand in for the music's, as M_T stands in for M_A.
For every clip we store the RVQ codes of its melody windows on the grid of `alignment.MelodyGrid` (tiny: 16
windows of 4 s, 0.4 s apart, per 10 s clip), from which any training crop takes its own (`stage.melody_stage_batch`):

    codes (N, P, Q) int16 in <data root>/tokens/<preset>-<split>-melody-<key>.safetensors

The key hashes the data config, the embedder's fingerprint and the grid, as `hierarchy/token_cache.py` does for
M_A, S and A: retrain the embedder and the old file is simply not found. The melody-coarse stage (`coarse.py`)
reads codes on its own grid (tiny: 21 windows per clip, for 2 s crops) and, with `melody_tokens="chroma"`,
each clip's chroma tokens (`chroma.py`), cached the same way:

    tokens (N, U) int16 in <data root>/tokens/<preset>-<split>-chroma-<key>.safetensors   (tiny: U = 125 units of 80 ms)
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor
from tqdm.auto import tqdm

from ..components import fingerprint
from ..config import Preset
from ..files import build_once
from ..hierarchy.token_cache import cache_path
from ..hierarchy.token_cache import TokenGrid
from .alignment import MelodyGrid, grid_windows
from .chroma import chroma_tokens
from .tokens import quantize

CHROMA_VERSION = 1  # bump when `chroma.py` changes what it computes: old caches are then not found


@torch.no_grad()
def melody_window_codes(embedder, waves: Tensor, grid: MelodyGrid, clips_per_batch: int = 8,
                        progress: bool = False) -> Tensor:
    """Clips (N, T) -> the melody codes of their grid windows (N, P, Q), long (Chapter 8)."""
    device = next(embedder.parameters()).device
    positions = grid.positions(waves.shape[-1] // grid.semantic_hop)
    out = []
    for chunk in tqdm(waves.split(clips_per_batch), desc="melody tokens", disable=not progress):
        windows = grid_windows(chunk.float(), grid, positions)  # (n, P, window)
        emb = embedder.embed_windows(windows.reshape(-1, grid.window).to(device))  # (n * P, D)
        out.append(quantize(embedder, emb.reshape(len(chunk), positions, -1)).long().cpu())  # (n, P, Q)
    return torch.cat(out)


def melody_cache_path(preset: Preset, split: str, embedder, root: str | os.PathLike | None = None,
                      grid: MelodyGrid | None = None) -> Path:
    """Where the melody codes of a split are cached: the key covers data, embedder and grid (Chapter 8)."""
    grid = grid or MelodyGrid.from_preset(preset)
    return cache_path(preset, f"{split}-melody", {"melody-embedder": fingerprint(embedder),
                                                  "grid": dataclasses.asdict(grid)}, root)


def cached_melody_codes(preset: Preset, split: str, embedder, waves: Tensor | Callable | None = None,
                        root: str | os.PathLike | None = None, progress: bool = False,
                        grid: MelodyGrid | None = None) -> Tensor:
    """The melody codes (N, P, Q) of a SynthCaps split, from the cache or computed and cached now (Chapter 8).

    `waves` (N, T), or a function returning them (called only when the cache is missing), replaces the
    split's audio (extra clips, tests); by default `synthcaps.split_waveforms`, the clips in the order of
    `hierarchy.token_cache.cached_tokens`, so row i is clip i there too. `grid`: the semantic stage's by default.
    """
    grid = grid or MelodyGrid.from_preset(preset)
    path = melody_cache_path(preset, split, embedder, root, grid)

    def compute(tmp: Path) -> None:  # only when the cache is missing; another process waits meanwhile (build_once)
        codes = melody_window_codes(embedder, _waves(preset, split, waves), grid, progress=progress)
        meta = {"preset": preset.name, "split": split, "melody-embedder": fingerprint(embedder), "clips": len(codes)}
        save_file({"codes": codes.to(torch.int16).contiguous()}, str(tmp),
                  metadata={"meta": json.dumps(meta, sort_keys=True)})

    return load_file(str(build_once(path, compute)))["codes"].long()


def _waves(preset: Preset, split: str, waves: Tensor | Callable | None) -> Tensor:
    """The clips (N, T): `waves`, or what a function `waves` returns, else the split's SynthCaps clips (Chapter 8)."""
    if callable(waves):
        waves = waves()
    if waves is None:
        from ..data import synthcaps

        waves = synthcaps.split_waveforms(preset, split)
    return torch.as_tensor(waves)


def cached_chroma_tokens(preset: Preset, split: str, waves: Tensor | Callable | None = None,
                         root: str | os.PathLike | None = None, progress: bool = False) -> Tensor:
    """The chroma tokens (N, U) of a SynthCaps split, one per grid unit, from the cache or computed now (Chapter 8).

    As `cached_melody_codes`: `waves` (or a function returning them) replaces the split's audio, row i is clip i
    of `hierarchy.token_cache.cached_tokens`. int16 in the file, long here.
    """
    unit = TokenGrid.from_preset(preset).unit
    path = cache_path(preset, f"{split}-chroma", {"chroma": CHROMA_VERSION, "unit": unit}, root)

    def compute(tmp: Path) -> None:
        x = _waves(preset, split, waves)
        tokens = torch.cat([chroma_tokens(chunk.float(), preset.codec.sample_rate, unit)
                            for chunk in tqdm(x.split(32), desc="chroma tokens", disable=not progress)])  # (N, U)
        meta = {"preset": preset.name, "split": split, "chroma": CHROMA_VERSION, "clips": len(tokens)}
        save_file({"tokens": tokens.to(torch.int16).contiguous()}, str(tmp),
                  metadata={"meta": json.dumps(meta, sort_keys=True)})

    return load_file(str(build_once(path, compute)))["tokens"].long()
