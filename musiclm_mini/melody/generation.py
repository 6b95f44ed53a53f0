"""Music from a hum and a text: `MusicLM.generate(text, seconds, melody=wave, melody_sample_rate=sr)` (Chapter 8; MusicLM Sec. 6).

Paper: "During inference, we compute melody tokens from the input audio clip and concatenate them with the
MuLan text tokens M_T." With a melody-semantic stage (the paper's way) only the semantic stage changes; the
coarse and fine stages follow its tokens:

    hum (any rate, any channels) --check_melody--> (T,) at 24 kHz, mono
    text --MuLan--> M_T (1, 12)
    each semantic window [s, s + 6 s) --its own span of the hum (alignment.span_windows)--> melody codes (1, 2, 8)
    --melody-semantic stage, window by window (musiclm.window_plan)--> S (1, T_s)
    --coarse and fine stages, codec (MusicLM.generate_tokens(semantic=S), decode)--> wave (T,)

With a melody-coarse stage (`coarse.py`: this book's semantic tokens carry no pitch) the shipped semantic stage
writes S from the text alone (the same S as without the melody, seed for seed) and the coarse stage reads the tune:

    each coarse window, codec frames [s, s + 50) --its own span of the hum--> melody codes (1, W, Q)
        embedder: the 4 s window starting at the span's start (1, 1, 8); chroma: its 25 units (1, 25, 1)
    --melody-coarse stage, window by window, with M_T and S of the span--> A_1..4, then the fine stage, codec

The music follows the hum from its start; a hum shorter than the music is looped.
The stage is read from `runs/melody-semantic-stage-<preset>` (a training run in the working directory), or a
folder given by the caller (either component: its config.json says which), or the package's checkpoints once
one ships (`find_melody_stage`).
"""
from __future__ import annotations

import math
import numbers
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torchaudio
from torch import Tensor, nn
from tqdm.auto import tqdm

from .. import components
from ..audio import prepare_waveform
from ..checkpoint import read_config
from ..config import Preset, get_preset
from ..errors import AudioError, CheckpointError
from ..hierarchy.sampling import Sampling, generate_windows
from ..hierarchy.token_cache import TokenGrid
from ..hierarchy.tokens import STAGE_NAMES
from .alignment import MelodyGrid, span_windows
from .coarse import MELODY_TOKENS, coarse_melody_grid, coarse_melody_layout, hum_chroma_tokens, melody_coarse_stage
from .stage import MelodyLayout, MelodySemanticStage
from .tokens import quantize

NAME = "melody-semantic-stage"
COARSE = "melody-coarse-stage"
SILENCE_RMS = 1e-3  # -60 dBFS: far below any recording with a tune in it
CLIPPED_FRACTION = 0.5  # more than half the samples at the peak: a flat line or a square wave, no tune left


# ---------------------------------------------------------------------------------------------
# The input tune
# ---------------------------------------------------------------------------------------------
def check_melody(wave, sample_rate, target_rate: int = 24_000, min_seconds: float = 4.0,
                 source: str = "the melody") -> Tensor:
    """Any waveform -> float32 mono (T,) at `target_rate`, or one `AudioError` naming the problem (Chapter 8).

    `wave` (T,), (C, T) or (T, C) at `sample_rate` is mixed to mono (`audio.prepare_waveform`, which refuses NaN,
    infinity and empty audio). Then refused: shorter than `min_seconds` (one melody window: the embedder reads
    4 s at a time), silence (RMS below -60 dBFS), and clipping only (more than half of the samples at the peak
    level, e.g. a square wave or a flat line), all measured before resampling, whose ringing would hide clipping.
    """
    if sample_rate is None or isinstance(sample_rate, bool) or not isinstance(sample_rate, numbers.Real) \
            or not math.isfinite(sample_rate) or sample_rate < 1:
        raise AudioError(f"{source}: give its sample rate in Hz (melody_sample_rate), got {sample_rate!r}")
    rate = int(sample_rate)
    wave = prepare_waveform(wave, rate, rate, source)  # (T,) mono, at its own rate
    seconds = wave.numel() / rate
    if seconds < min_seconds - 1e-9:
        raise AudioError(f"{source} is too short: {seconds:.2f} s; hum at least {min_seconds:g} s "
                         f"(one melody window)")
    rms = float(wave.pow(2).mean().sqrt())
    if rms < SILENCE_RMS:
        level = "digital silence" if rms == 0 else f"{20 * math.log10(rms):.0f} dBFS"
        raise AudioError(f"{source} is silent ({level}): record the tune louder")
    peak = float(wave.abs().max())
    clipped = float((wave.abs() >= 0.999 * peak).float().mean())
    if clipped > CLIPPED_FRACTION:
        raise AudioError(f"{source} is clipped: {clipped:.0%} of its samples sit at the peak level {peak:.3g}, "
                         f"so no tune is left; record it quieter")
    return prepare_waveform(wave, rate, target_rate, source)  # (T',) at target_rate


def load_melody(path: str | Path, preset: Preset) -> Tensor:
    """A melody file (WAV or anything ffmpeg reads) -> checked (T,) at the preset's rate, else one `AudioError` (Chapter 8).

    Read at its own rate (unlike `audio.load_audio`), so that `check_melody` sees the samples as recorded.
    """
    if not Path(path).is_file():
        raise AudioError(f"audio file not found: {path}")
    try:
        wave, rate = torchaudio.load(str(path))  # (C, T); decoded by torchcodec + ffmpeg
    except Exception as exc:  # every decoder failure becomes one clear error, on one line
        raise AudioError(f"cannot read audio file {path}: {type(exc).__name__}: {' '.join(str(exc).split())}") from exc
    return check_melody(wave, rate, preset.codec.sample_rate, preset.melody.window_seconds, source=str(path))


# ---------------------------------------------------------------------------------------------
# The trained parts
# ---------------------------------------------------------------------------------------------
@dataclass
class MelodyParts:
    """What generation from a melody adds to MusicLM (Chapter 8): the embedder and the melody stage."""

    embedder: nn.Module | None  # None for a chroma melody-coarse stage, which needs none
    transformer: nn.Module
    folder: Path | None = None  # where the stage was loaded from
    component: str = NAME  # melody-semantic-stage, or melody-coarse-stage
    melody_tokens: str = "embedder"  # a melody-coarse stage's representation: embedder or chroma


def find_melody_stage(preset_name: str, path: str | Path | None = None, checkpoint_root: str | Path | None = None) -> Path:
    """The melody stage's folder: `path`, else `runs/<stage>-<preset>`, else the package's (Chapter 8).

    Only a given `path` may hold a melody-coarse stage (`melody_parts` reads which component it is); the default
    places are the melody-semantic stage's. Raises `CheckpointError` saying where it looked and how to train one.
    """
    if path is not None:
        candidates = [Path(path)]
    else:
        candidates = [Path("runs") / f"{NAME}-{preset_name}", components.checkpoint_dir(NAME, preset_name, checkpoint_root)]
    for folder in candidates:
        if (folder / "model.safetensors").exists():
            return folder
    raise CheckpointError(f"no {NAME} checkpoint in {' or '.join(str(c) for c in candidates)}: train one with "
                          f"`python -m musiclm_mini.train {NAME} --preset {preset_name}` (it writes runs/{NAME}-{preset_name})")


def melody_parts(model, path: str | Path | None = None) -> MelodyParts:
    """`model.melody_parts`, loaded on first use (Chapter 8), checked against the tokenizers `model` uses.

    A melody-coarse stage's folder goes to `melody_coarse_parts`. A melody-semantic stage must have learnt the
    k-means tokens the coarse stage reads, the MuLan tokens `model.mulan` makes and the melody tokens of the
    embedder loaded beside it (fingerprints in its config.json).
    """
    parts = getattr(model, "melody_parts", None)
    if parts is not None and (path is None or parts.folder == Path(path)):
        return parts
    root = getattr(model, "checkpoint_root", None)
    p, device = model.preset, model.device
    folder = find_melody_stage(p.name, path, root)
    if read_config(folder).get("component") == COARSE:
        model.melody_parts = melody_coarse_parts(model, folder)
        return model.melody_parts
    embedder_dir = None if root is None else components.checkpoint_dir("melody-embedder", p.name, root)
    embedder = components.load("melody-embedder", p.name, embedder_dir, device)
    coarse = getattr(model.transformers["coarse"], "checkpoint_config", None) or {}
    sources = {"kmeans": (coarse.get("sources") or {}).get("kmeans"), "mulan": components.fingerprint(model.mulan),
               "melody-embedder": components.fingerprint(embedder)}
    transformer = components.load(NAME, p.name, folder, device, sources)
    model.melody_parts = MelodyParts(embedder, transformer, folder)
    return model.melody_parts


# ---------------------------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------------------------
@torch.no_grad()
def window_codes(embedder, melody: Tensor, starts: list[int], grid: MelodyGrid) -> dict[int, Tensor]:
    """Melody codes (1, W, Q) of the span of each semantic window starting at `starts` (frames) (Chapter 8)."""
    device = next(embedder.parameters()).device
    windows = torch.stack([span_windows(melody, s, grid) for s in starts])  # (N, W, window)
    N, W, S = windows.shape
    emb = embedder.embed_windows(windows.reshape(N * W, S).to(device)).reshape(N, W, -1)  # (N, W, D)
    codes = quantize(embedder, emb)  # (N, W, Q)
    return {s: codes[i:i + 1] for i, s in enumerate(starts)}


def melody_semantic_tokens(model, mulan_tokens: Tensor, melody: Tensor, plan: dict, seed: int = 0,
                           temperature: float | None = None, guidance: float | None = None,
                           progress: bool = False) -> Tensor:
    """M_T (1, 12) and a checked melody (T,) at 24 kHz -> semantic tokens (1, T_s) that follow it (Chapter 8).

    `plan` is the semantic stage's `musiclm.window_plan(preset, seconds)["semantic"]`: window by window as
    `MusicLM.generate_tokens` samples its semantic stage (same temperature, top-k and guidance defaults);
    each window reads the melody codes of its own span of the hum.
    """
    p = model.preset
    parts, cfg = melody_parts(model), p.semantic_stage
    if parts.component != NAME:
        raise ValueError(f"the melody stage loaded is a {parts.component}: its tune reaches the coarse stage "
                         f"(melody_coarse_tokens), not the semantic stage")
    stage, grid = MelodySemanticStage(model.layout, MelodyLayout.from_preset(p)), MelodyGrid.from_preset(p)
    start = time.perf_counter()
    codes = window_codes(parts.embedder, melody, sorted({w.start for w in plan["windows"]}), grid)
    model.timings["melody"] = time.perf_counter() - start
    M = mulan_tokens.to(model.device).long()  # (1, 12)
    sampling = Sampling(cfg.temperature if temperature is None else temperature, cfg.top_k,
                        guidance=cfg.guidance if guidance is None else float(guidance))
    g = torch.Generator(device=model.device).manual_seed(int(seed))
    bar = tqdm(total=plan["frames"], desc="semantic (melody)", disable=not progress)
    start = time.perf_counter()
    ids = generate_windows(parts.transformer, stage, lambda w: stage.condition(codes[w.start].to(model.device), M),
                           plan["frames"], plan["window"], plan["prefix"], sampling, plan["unit"], g,
                           tick=lambda: bar.update(1))
    bar.close()
    model.timings["semantic"] = time.perf_counter() - start
    return stage.decode_target(ids)  # (1, T_s)


def generate_with_melody(model, text: str, seconds: float, plans: dict, melody, melody_sample_rate, seed: int = 0,
                         temperatures: tuple[float, float, float] | None = None, progress: bool = False,
                         guidance: float | None = None, melody_stage: str | Path | None = None) -> Tensor:
    """`MusicLM.generate` with a melody: `seconds` of music for `text` that follows the tune -> wave (T,) (Chapter 8).

    `text` and `seconds` come checked, with every stage's `plans` of `musiclm.window_plan`, from `MusicLM.generate`
    (this module does not import `musiclm`, which imports it). The melody stage loaded (`melody_parts`) decides
    which stage reads the tune: the semantic one, or the coarse one (`melody_coarse_tokens`).
    """
    p = model.preset
    hum = check_melody(melody, melody_sample_rate, model.sample_rate, p.melody.window_seconds)  # (T,)
    temps = temperatures or tuple(getattr(p, f"{s}_stage").temperature for s in STAGE_NAMES)
    if len(temps) != 3:
        raise ValueError(f"temperatures must be (semantic, coarse, fine), got {temps}")
    if guidance is not None and (isinstance(guidance, bool) or not isinstance(guidance, numbers.Real)
                                 or not math.isfinite(guidance) or guidance < 0):
        raise ValueError(f"guidance must be a finite number >= 0 (1 = no guidance), got {guidance!r}")
    parts = melody_parts(model, melody_stage)
    start = time.perf_counter()
    with torch.no_grad():
        M = model.mulan.tokens_from_text([text]).to(model.device)  # (1, 12): M_T
    model.timings = {"mulan": time.perf_counter() - start}
    if parts.component == COARSE:
        tokens = melody_coarse_tokens(model, M, hum, plans, seed, temps, guidance, progress)
    else:
        semantic = melody_semantic_tokens(model, M, hum, plans["semantic"], seed, temps[0], guidance, progress)
        tokens = model.generate_tokens(M, seconds, seed, temps, progress, semantic=semantic, guidance=guidance)
    return model.decode(tokens, seconds)[0]


# ---------------------------------------------------------------------------------------------
# The melody-coarse stage: the tune reaches the acoustic tokens (`coarse.py`)
# ---------------------------------------------------------------------------------------------
def melody_coarse_parts(model, folder: Path) -> MelodyParts:
    """A melody-coarse stage from `folder`, either representation, checked against the parts `model` uses (Chapter 8).

    Its architecture must be the preset's with the checkpoint's own `melody_tokens` (a chroma run is trained with
    `--set melody_tokens=chroma`, which the preset itself does not say); it must have learnt the codec, k-means and
    MuLan tokens `model` uses and, for `embedder`, the melody tokens of the embedder loaded beside it.
    """
    root, p, device = getattr(model, "checkpoint_root", None), model.preset, model.device
    stored = read_config(folder)
    kind = (stored.get("config") or {}).get("melody_tokens", "embedder")
    if kind not in MELODY_TOKENS:
        raise CheckpointError(f"{folder}: unknown melody_tokens {kind!r} (known: {', '.join(MELODY_TOKENS)})")
    diffs = components.identity_differences(stored, get_preset(p.name).replace(melody_tokens=kind))
    if diffs:
        raise CheckpointError(f"{folder} was made for another architecture than preset {p.name!r} with "
                              f"melody_tokens={kind!r}: " + "; ".join(diffs[:6]))
    coarse = getattr(model.transformers["coarse"], "checkpoint_config", None) or {}
    sources = {"codec": components.fingerprint(model.codec), "kmeans": (coarse.get("sources") or {}).get("kmeans"),
               "mulan": components.fingerprint(model.mulan)}
    embedder = None
    if kind == "embedder":
        embedder_dir = None if root is None else components.checkpoint_dir("melody-embedder", p.name, root)
        embedder = components.load("melody-embedder", p.name, embedder_dir, device)
        sources["melody-embedder"] = components.fingerprint(embedder)
    transformer = components.load(COARSE, None, folder, device, sources)  # architecture checked above
    return MelodyParts(embedder, transformer, folder, COARSE, kind)


def coarse_window_melody(parts: MelodyParts, hum: Tensor, windows: list, preset: Preset) -> dict[int, Tensor]:
    """Melody codes (1, W, Q) of each coarse window (codec frames [start, end)), keyed by its start (Chapter 8).

    Each window reads its own span of the hum: `embedder`, the 4 s window starting at the span's start
    (`window_codes` on `coarse.coarse_melody_grid`, as a training crop's cached window); `chroma`, the span's units
    of the chroma of the whole hum looped to the music (`coarse.hum_chroma_tokens`, as a training clip's).
    """
    grid = TokenGrid.from_preset(preset)
    spu, apu = grid.semantic_per_unit, grid.acoustic_per_unit
    if parts.melody_tokens == "embedder":
        starts = sorted({w.start // apu * spu for w in windows})  # semantic frames
        codes = window_codes(parts.embedder, hum, starts, coarse_melody_grid(preset))
        return {w.start: codes[w.start // apu * spu] for w in windows}  # (1, 1, Q) each
    U = coarse_melody_layout(preset, "chroma").windows  # units per crop: tiny 25
    line = hum_chroma_tokens(hum, max(w.start // apu for w in windows) + U, preset)  # (1, units, 1)
    return {w.start: line[:, w.start // apu:w.start // apu + U] for w in windows}  # (1, U, 1) each


def melody_coarse_tokens(model, mulan_tokens: Tensor, melody: Tensor, plans: dict, seed: int = 0,
                         temperatures: tuple[float, float, float] | None = None, guidance: float | None = None,
                         progress: bool = False) -> dict[str, Tensor]:
    """M_T (1, 12) and a checked melody (T,) -> {"semantic" (1, T_s), "coarse" (1, Q_c, T_a), "fine" (1, Q_f, T_a)} (Chapter 8).

    As `MusicLM.generate_tokens` samples (the same settings, one generator through the three stages, so S is
    the S generated without the melody for the same seed), with the melody-coarse stage in place of the coarse
    stage, each coarse window conditioned on the melody of its own span, its text and its semantic tokens.
    """
    p, parts, device = model.preset, melody_parts(model), model.device
    if parts.component != COARSE:
        raise ValueError(f"the melody stage loaded is a {parts.component}, not a {COARSE}")
    temps = temperatures or tuple(getattr(p, f"{s}_stage").temperature for s in STAGE_NAMES)
    st, mst = model.stages, melody_coarse_stage(p, parts.melody_tokens)
    spu, apu = model.grid.semantic_per_unit, model.grid.acoustic_per_unit
    M = mulan_tokens.to(device).long()  # (1, 12)
    g = torch.Generator(device=device).manual_seed(int(seed))

    def run(name: str, transformer, stage, condition) -> Tensor:  # as `MusicLM.generate_tokens`' run
        cfg, plan = getattr(p, f"{name}_stage"), plans[name]
        scale = 1.0 if not stage.reads_mulan else cfg.guidance if guidance is None else float(guidance)
        sampling = Sampling(temps[STAGE_NAMES.index(name)], cfg.top_k, guidance=scale)
        bar = tqdm(total=plan["frames"] * stage.tokens_per_frame, desc=name, disable=not progress)
        start = time.perf_counter()
        ids = generate_windows(transformer, stage, condition, plan["frames"], plan["window"], plan["prefix"], sampling,
                               plan["unit"], g, tick=lambda: bar.update(1), breaks=plan["breaks"])
        bar.close()
        model.timings[name] = time.perf_counter() - start
        return stage.decode_target(ids)

    S = run("semantic", model.transformers["semantic"], st["semantic"], lambda w: st["semantic"].condition(M))
    start = time.perf_counter()
    codes = coarse_window_melody(parts, melody, plans["coarse"]["windows"], p)
    model.timings["melody"] = time.perf_counter() - start
    A = run("coarse", parts.transformer, mst, lambda w: mst.condition(  # each window: its tune, the text, its S
        codes[w.start].to(device), M, S[:, w.start // apu * spu:w.end // apu * spu]))
    fine = run("fine", model.transformers["fine"], st["fine"], lambda w: st["fine"].condition(A[:, :, w.start:w.end]))
    return {"semantic": S, "coarse": A, "fine": fine}
