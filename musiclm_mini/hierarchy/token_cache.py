"""Tokens of the training data, extracted once and cached on disk; random training crops (Chapter 6).

The three stages never see audio: they train on tokens. For every SynthCaps clip we compute, once,

    M_A  (12,)          MuLan tokens of the clip's audio            (mulan.tokens_from_audio)
    S    (T_s,)         semantic tokens                             (semantic.tokenize)
    A    (Q, T_a)       every SoundStream RVQ level                 (codec.encode)

and save them in `<data root>/tokens/<preset>-<split>-<key>.safetensors`. The key hashes the data
config and each tokenizer's fingerprint (`components.fingerprint`): retrain any of them and the old
file is simply not found, so tokens are never silently stale. Each epoch then costs only index lookups.

M_A is computed once on the whole clip and reused for every crop of it. This departs from the paper,
which computes M_A on the target audio itself (Sec. 3.1-3.2: MuLan over 10 s windows with a 1 s stride,
averaged). Our clips are exactly one MuLan window long (10 s), so a 6 s, 2 s or 0.6 s crop gets the M_A of
the whole 10 s, which also describes audio outside the crop. Chapter 6 says what that means for long
generation; per-crop M_A would need MuLan run on every crop at every step.

Crops follow the paper's ratio (Sec. 4.2: 30 s semantic, 10 s coarse, 3 s fine; `StageConfig.crop_seconds`
holds each preset's values) on a time grid where semantic and acoustic frames line up: one grid
unit is the least common multiple of the two hops (80 ms in `tiny`: 1 semantic frame, 2 codec frames).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor
from tqdm.auto import tqdm

from ..components import token_sources
from ..config import Preset
from ..files import atomic_write, build_once
from .tokens import Stage


# ---------------------------------------------------------------------------------------------
# The cached tokens
# ---------------------------------------------------------------------------------------------
@dataclass
class TokenSet:
    """Tokens of N clips (Chapter 6): mulan (N, Q_m), semantic (N, T_s), acoustic (N, Q, T_a), all long."""

    mulan: Tensor
    semantic: Tensor
    acoustic: Tensor

    def __post_init__(self):
        n = {self.mulan.shape[0], self.semantic.shape[0], self.acoustic.shape[0]}
        if len(n) != 1 or self.mulan.dim() != 2 or self.semantic.dim() != 2 or self.acoustic.dim() != 3:
            raise ValueError(f"inconsistent token shapes: mulan {tuple(self.mulan.shape)}, semantic "
                             f"{tuple(self.semantic.shape)}, acoustic {tuple(self.acoustic.shape)}")

    def __len__(self) -> int:
        return self.mulan.shape[0]

    def tensors(self) -> dict[str, Tensor]:
        return {"mulan": self.mulan, "semantic": self.semantic, "acoustic": self.acoustic}


def _config_json(cfg) -> str:
    return json.dumps(dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else repr(cfg), sort_keys=True)


def cache_path(preset: Preset, split: str, fingerprints: dict[str, str], root: str | os.PathLike | None = None) -> Path:
    """<data root>/tokens/<preset>-<split>-<key>.safetensors, key = hash(data config, tokenizers) (Chapter 6).

    The data root is SynthCaps' (`data/`, or `$MUSICLM_DATA_DIR`) unless `root` is given.
    """
    if root is None:
        from ..data.synthcaps import data_root

        root = data_root()
    key_text = _config_json(preset.data) + json.dumps(fingerprints, sort_keys=True)
    key = hashlib.sha256(key_text.encode()).hexdigest()[:12]
    return Path(root) / "tokens" / f"{preset.name}-{split}-{key}.safetensors"


@torch.no_grad()
def extract_tokens(waves: Tensor, codec, semantic, mulan, batch_size: int = 16, progress: bool = False) -> TokenSet:
    """M_A, S and A of every clip, waves (N, T) -> TokenSet (Chapter 6)."""
    device = next(codec.parameters()).device
    out = {"mulan": [], "semantic": [], "acoustic": []}
    for chunk in tqdm(waves.split(batch_size), desc="tokens", disable=not progress):
        chunk = chunk.to(device)
        out["mulan"].append(mulan.tokens_from_audio(chunk).long().cpu())  # (b, Q_m)
        out["semantic"].append(semantic.tokenize(chunk).long().cpu())  # (b, T_s)
        out["acoustic"].append(codec.encode(chunk).long().cpu())  # (b, Q, T_a)
    return TokenSet(**{k: torch.cat(v) for k, v in out.items()})


def save_tokens(path: str | os.PathLike, tokens: TokenSet, meta: dict) -> None:
    """Write a TokenSet as int16 safetensors, atomically (Chapter 6)."""
    atomic_write(path, lambda tmp: _write_tokens(tmp, tokens, meta))


def _write_tokens(path: Path, tokens: TokenSet, meta: dict) -> None:
    small = {k: v.to(torch.int16).contiguous() for k, v in tokens.tensors().items()}  # codes < 32768
    save_file(small, str(path), metadata={"meta": json.dumps(meta, sort_keys=True)})


def load_tokens(path: str | os.PathLike) -> tuple[TokenSet, dict]:
    """Read a TokenSet written by `save_tokens` -> (tokens, meta) (Chapter 6)."""
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads((f.metadata() or {}).get("meta", "{}"))
    t = load_file(str(path))
    return TokenSet(t["mulan"].long(), t["semantic"].long(), t["acoustic"].long()), meta


def cached_tokens(preset: Preset, split: str, codec, semantic, mulan, waves: Tensor | Callable | None = None,
                  root: str | os.PathLike | None = None, progress: bool = False) -> TokenSet:
    """The tokens of a SynthCaps split, from the cache or extracted and cached now (Chapter 6).

    `waves` (N, T), or a function returning them (called only when the cache is missing), replaces the
    split's audio (tests, extra clips); by default `synthcaps.split_waveforms`.
    """
    prints = token_sources(codec, semantic, mulan)

    def extract(tmp: Path) -> None:  # only when the cache is missing; another process waits meanwhile (build_once)
        clips = waves() if callable(waves) else waves
        if clips is None:
            from ..data import synthcaps

            synthcaps.ensure_synthcaps(preset)
            clips = synthcaps.split_waveforms(preset, split)
        tokens = extract_tokens(clips, codec, semantic, mulan, progress=progress)
        _write_tokens(tmp, tokens, {"preset": preset.name, "split": split, "sources": prints, "clips": len(tokens)})

    return load_tokens(build_once(cache_path(preset, split, prints, root), extract))[0]


# ---------------------------------------------------------------------------------------------
# Time grid and crops
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TokenGrid:
    """Where semantic and acoustic frames line up (Chapter 6).

    unit = lcm(semantic hop, codec hop) samples, holding `semantic_per_unit` semantic frames and
    `acoustic_per_unit` codec frames (paper: 960 samples = 1 semantic + 2 acoustic frames).
    """

    sample_rate: int
    semantic_hop: int
    codec_hop: int

    @classmethod
    def from_preset(cls, preset: Preset) -> "TokenGrid":
        return cls(preset.codec.sample_rate, preset.semantic.hop, preset.codec.hop)

    @property
    def unit(self) -> int:
        return math.lcm(self.semantic_hop, self.codec_hop)

    @property
    def semantic_per_unit(self) -> int:
        return self.unit // self.semantic_hop

    @property
    def acoustic_per_unit(self) -> int:
        return self.unit // self.codec_hop

    def units(self, seconds: float) -> int:
        """Whole grid units covering `seconds` (at least one), rounded up (Chapter 6)."""
        return max(1, math.ceil(seconds * self.sample_rate / self.unit - 1e-9))

    def crop_frames(self, stage: str, seconds: float) -> int:
        """Frames of a stage's crop: semantic frames, or codec frames (coarse: whole units) (Chapter 6)."""
        if stage == "semantic":
            return max(1, round(seconds * self.sample_rate / self.semantic_hop))
        if stage == "coarse":
            return max(1, round(seconds * self.sample_rate / self.unit)) * self.acoustic_per_unit
        return max(1, round(seconds * self.sample_rate / self.codec_hop))


def stage_batch(stage: Stage, tokens: TokenSet, indices: list[int], grid: TokenGrid, crop_seconds: float,
                generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Random crops of clips `indices` laid out for `stage` -> (tokens (B, L), loss_mask (B, L)) (Chapter 6).

    A crop longer than the clips is cut to the clip: e.g. the `paper` preset's 30 s semantic crop on 10 s
    SynthCaps clips. (The paper's 30 s crops come from its 280k-hour training set of five million clips,
    about 200 s each on average; its 10 s MusicCaps clips are only for evaluation.)
    """
    idx = torch.as_tensor(indices, dtype=torch.long)
    lay, B = stage.layout, len(indices)
    if stage.name == "semantic":
        total = tokens.semantic.shape[1]
        W = min(grid.crop_frames("semantic", crop_seconds), total)
        s = torch.randint(0, total - W + 1, (B,), generator=generator)
        S = torch.stack([tokens.semantic[i, a:a + W] for i, a in zip(idx.tolist(), s.tolist())])
        return stage.sequence(stage.condition(tokens.mulan[idx]), stage.encode_target(S))
    if stage.name == "coarse":
        spu, apu = grid.semantic_per_unit, grid.acoustic_per_unit
        total = min(tokens.semantic.shape[1] // spu, tokens.acoustic.shape[2] // apu)  # whole units
        U = min(grid.crop_frames("coarse", crop_seconds) // apu, total)
        u = torch.randint(0, total - U + 1, (B,), generator=generator).tolist()
        S = torch.stack([tokens.semantic[i, a * spu:(a + U) * spu] for i, a in zip(idx.tolist(), u)])
        A = torch.stack([tokens.acoustic[i, :lay.coarse_levels, a * apu:(a + U) * apu] for i, a in zip(idx.tolist(), u)])
        return stage.sequence(stage.condition(tokens.mulan[idx], S), stage.encode_target(A))
    total = tokens.acoustic.shape[2]
    W = min(grid.crop_frames("fine", crop_seconds), total)
    s = torch.randint(0, total - W + 1, (B,), generator=generator)
    A = torch.stack([tokens.acoustic[i, :, a:a + W] for i, a in zip(idx.tolist(), s.tolist())])  # (B, Q, W)
    return stage.sequence(stage.condition(A[:, :lay.coarse_levels]), stage.encode_target(A[:, lay.coarse_levels:]))
