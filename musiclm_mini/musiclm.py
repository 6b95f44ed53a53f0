"""MusicLM: text -> MuLan tokens -> semantic -> coarse -> fine -> waveform (Chapters 6 and 7).

The whole pipeline of the paper's Figure 2 (right), from the trained parts of Chapters 3-6:

    text --MuLan text tower + RVQ--> M_T (1, 12)                        (at training time: M_A)
         --semantic stage--> S (1, T_s)          temperature: paper 1.0   (+ guidance w, not in the paper)
         --coarse stage--> A_1..4 (1, 4, T_a)    temperature: paper 0.95  (+ guidance w)
         --fine stage--> A_5..Q (1, Q-4, T_a)    temperature: paper 0.4
         --codec decoder--> wave (T,)            SoundStream; tiny: the spectral codec (Chapter 3)

Each preset holds its own temperatures and guidance (`StageConfig.temperature`, `.guidance`): `paper`
samples as the paper does; `tiny` samples its coarse stage cooler and guides (Chapter 6 says why).

Only the conditioning changes between training and generation: each stage learnt from M_A, the
MuLan tokens of the training audio, and here receives M_T, the MuLan tokens of the text, quantized
by the same RVQ; MuLan's shared embedding space is what makes them interchangeable (Sec. 4.2).

A duration longer than a stage's training crop is generated in windows as long as the crop, each
prompted with the previous window's second half (semantic and coarse stages: a simple sliding
continuation, see `hierarchy.sampling.sliding_windows`); the fine stage fills independent crop-long chunks of
the coarse tokens, as AudioLM does. `caption_adherence` measures whether the music follows its text.
"""
from __future__ import annotations

import bisect
import itertools
import math
import numbers
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from . import components
from .config import Preset, get_preset
from .errors import TextError
from .hierarchy.sampling import Sampling, frames_to_multiple, generate_windows, sliding_windows
from .hierarchy.token_cache import TokenGrid
from .hierarchy.tokens import STAGE_NAMES, TokenLayout, make_stage
from .hierarchy.transformer import Transformer

MAX_SECONDS = 300.0  # five minutes: beyond that a request is almost surely a typo (and takes ages on CPU)


def check_text(text) -> str:
    """The prompt, or `TextError` when it is not a string or has no words (Chapter 7)."""
    if not isinstance(text, str):
        raise TextError(f"the text prompt must be a string, got {type(text).__name__}")
    if not text.strip():
        raise TextError("the text prompt is empty: describe the music, e.g. \"a calming violin melody\"")
    return text


def check_seconds(seconds) -> float:
    """A duration in (0, MAX_SECONDS], else a ValueError saying what is wrong (Chapter 7)."""
    if isinstance(seconds, bool) or not isinstance(seconds, numbers.Real) or not math.isfinite(seconds):
        raise ValueError(f"seconds must be a finite number, got {seconds!r}")
    if seconds <= 0:
        raise ValueError(f"seconds must be positive, got {seconds:g}")
    if seconds > MAX_SECONDS:
        raise ValueError(f"seconds must be at most {MAX_SECONDS:g} (five minutes), got {seconds:g}")
    return float(seconds)


def check_story(segments) -> tuple[list[str], list[float]]:
    """[(text, seconds), ...] -> (texts, seconds), or one clear error: no segments, an empty text, a duration
    that is not positive, a total over `MAX_SECONDS` (Chapter 9)."""
    if isinstance(segments, (str, bytes)) or not segments:
        raise ValueError("a story needs at least one (text, seconds) segment")
    if not all(isinstance(seg, (tuple, list)) and len(seg) == 2 for seg in segments):
        raise ValueError(f"each story segment must be a (text, seconds) pair, got {segments!r}")
    texts = [check_text(text) for text, _ in segments]
    seconds = [check_seconds(sec) for _, sec in segments]
    if sum(seconds) > MAX_SECONDS:
        raise ValueError(f"the story lasts {sum(seconds):g} s in all; at most {MAX_SECONDS:g} s (five minutes)")
    return texts, seconds


def window_plan(preset: Preset, seconds: float, breaks: tuple[float, ...] = ()) -> dict[str, dict]:
    """How `MusicLM.generate_tokens` covers `seconds` with windows no longer than each stage's training crop (Chapters 6, 9).

    -> {stage: {"frames", "window", "prefix", "unit", "breaks", "windows": [Window, ...]}}, counted in the
    stage's target frames (semantic frames; codec frames for coarse and fine). The semantic stage slides as
    the paper's long generation does (Sec. 6): windows of `preset.long.prefix_seconds + stride_seconds`,
    each prompted with the last `prefix_seconds` of what came before (paper: 15 s + 15 s in a 30 s crop).
    The coarse stage slides with half a crop of prompt (the book's choice) and starts on grid units
    (`unit` codec frames), so each window reads whole semantic frames. The fine stage fills independent
    chunks (prefix 0), as AudioLM does. `breaks` (seconds, story mode) are where the text changes: no new
    part of a text-reading stage's window crosses one (`sliding_windows`).
    """
    grid, long = TokenGrid.from_preset(preset), preset.long
    if long.prefix_seconds + long.stride_seconds > preset.semantic_stage.crop_seconds + 1e-9:
        raise ValueError(f"preset {preset.name!r}: a long-generation window (prefix {long.prefix_seconds:g} s + stride "
                         f"{long.stride_seconds:g} s) is longer than the semantic stage's {preset.semantic_stage.crop_seconds:g} s crop")
    units = grid.units(check_seconds(seconds))
    unit_seconds = grid.unit / grid.sample_rate
    break_units = tuple(round(b / unit_seconds) for b in breaks)
    if any(not 0 < b < units for b in break_units) or len(set(break_units)) < len(break_units):
        raise ValueError(f"breaks {list(breaks)} must be distinct times inside (0, {seconds:g}) s, at least "
                         f"{unit_seconds:g} s apart")
    spu, apu = grid.semantic_per_unit, grid.acoustic_per_unit
    semantic_rate = grid.sample_rate / grid.semantic_hop  # semantic frames per second
    plans = {}
    # (stage, frames per grid unit, window boundaries' multiple)
    for name, per_unit, unit in (("semantic", spu, 1), ("coarse", apu, apu), ("fine", apu, 1)):
        total = units * per_unit
        if name == "semantic":
            window = frames_to_multiple(grid.crop_frames(name, long.prefix_seconds + long.stride_seconds), unit)
            prefix = frames_to_multiple(long.prefix_seconds * semantic_rate, unit)
        else:
            window = frames_to_multiple(grid.crop_frames(name, getattr(preset, f"{name}_stage").crop_seconds), unit)
            prefix = frames_to_multiple(window // 2, unit) if name == "coarse" and window >= 2 * unit else 0
        cuts = tuple(b * per_unit for b in break_units) if name != "fine" else ()  # the fine stage reads no text
        plans[name] = {"frames": total, "window": window, "prefix": prefix, "unit": unit, "breaks": cuts,
                       "windows": sliding_windows(total, window, prefix, unit, cuts)}
    return plans


class MusicLM:
    """Text-to-music with the three stages, MuLan and the codec (Chapters 6 and 7).

    `codec` needs `decode(tokens (B, Q, T)) -> (B, T')`, `mulan` needs `tokens_from_text(list[str])`
    (and `embed_audio`/`embed_text` for `caption_adherence`); `transformers` maps semantic/coarse/fine
    to the stage models, `stages` holds each stage's token layout (`hierarchy.tokens.Stage`).
    `timings` holds the seconds spent in each part by the last generation.
    """

    def __init__(self, preset: Preset, codec, mulan, transformers: dict[str, Transformer]):
        missing = [s for s in STAGE_NAMES if s not in transformers]
        if missing:
            raise ValueError(f"MusicLM needs all three stages, missing {missing}")
        self.preset, self.codec, self.mulan, self.transformers = preset, codec, mulan, transformers
        self.layout, self.grid = TokenLayout.from_preset(preset), TokenGrid.from_preset(preset)
        self.stages = {s: make_stage(s, self.layout) for s in STAGE_NAMES}
        self.timings: dict[str, float] = {}
        self.melody_parts = None  # Chapter 8: the melody embedder and stage, loaded by the first generate(melody=...)
        self.checkpoint_root: Path | None = None  # where from_pretrained found the parts

    @classmethod
    def from_pretrained(cls, preset: str | None = None, checkpoint_root: str | Path | None = None,
                        device: str | torch.device = "cpu") -> "MusicLM":
        """Load every part of `preset` from `musiclm_mini/checkpoints` or `checkpoint_root` (Chapter 7).

        The stages must have learnt the tokens of the codec, k-means and MuLan found beside them: their
        recorded fingerprints are compared with the ones in those checkpoints' config.json (the w2v-BERT
        model itself is never loaded: generation does not tokenize audio). Raises `CheckpointError`
        naming the part that is missing or was made for another preset or other tokenizers.
        """
        p = get_preset(preset)
        path = (lambda name: None) if checkpoint_root is None else \
            (lambda name: components.checkpoint_dir(name, p.name, checkpoint_root))
        codec = components.load(p.codec_component, p.name, path(p.codec_component), device)
        mulan = components.load("mulan", p.name, path("mulan"), device)
        sources = {**components.shipped_fingerprints(p.name, checkpoint_root), "codec": components.fingerprint(codec),
                   "mulan": components.fingerprint(mulan)}
        transformers = {s: components.load(f"{s}-stage", p.name, path(f"{s}-stage"), device, sources)
                        for s in STAGE_NAMES}
        model = cls(p, codec, mulan, transformers)
        model.checkpoint_root = checkpoint_root
        return model

    @property
    def sample_rate(self) -> int:
        return self.preset.codec.sample_rate

    @property
    def device(self) -> torch.device:
        return next(self.transformers["semantic"].parameters()).device

    def fingerprints(self) -> dict[str, str]:
        """{"codec", "mulan", "semantic", "coarse", "fine"}: the fingerprint of every component loaded, the record
        that every measurement JSON keeps of what it measured (Chapters 6-9)."""
        return {**{name: components.fingerprint(getattr(self, name)) for name in ("codec", "mulan")},
                **{stage: components.fingerprint(model) for stage, model in self.transformers.items()}}

    # -- generation -------------------------------------------------------------------------------
    def generate(self, text: str, seconds: float, seed: int = 0, temperatures: tuple[float, float, float] | None = None,
                 progress: bool = False, guidance: float | None = None, melody=None, melody_sample_rate: int | None = None,
                 melody_stage: str | Path | None = None) -> Tensor:
        """`seconds` of music for `text` -> wave (T,) at 24 kHz; same seed, same audio (Chapter 7).

        `temperatures` (semantic, coarse, fine) default to the preset's `StageConfig.temperature`: the paper's
        (1.0, 0.95, 0.4) in `paper`; `tiny` samples its coarse stage cooler (Chapter 6). `guidance`, the
        classifier-free guidance scale of the semantic and coarse stages, defaults to the preset's (1 = none,
        as in the paper; `tiny` guides, see Chapter 6). Pass `temperatures=(1.0, 0.95, 0.4), guidance=1.0`
        for the paper's sampling with any preset.
        `melody`: a tune to follow, (T,) or (C, T) at `melody_sample_rate` Hz (Chapter 8, `melody/generation.py`).
        """
        if melody is not None:
            from .melody.generation import generate_with_melody

            text, plans = check_text(text), window_plan(self.preset, check_seconds(seconds))
            return generate_with_melody(self, text, seconds, plans, melody, melody_sample_rate, seed, temperatures,
                                        progress, guidance, melody_stage)
        return self.generate_batch([check_text(text)], seconds, seed, temperatures, progress, guidance)[0]

    def generate_batch(self, texts: list[str], seconds: float, seed: int = 0,
                       temperatures: tuple[float, float, float] | None = None, progress: bool = False,
                       guidance: float | None = None) -> Tensor:
        """One clip per text, sampled together -> waves (B, T) (Chapter 7)."""
        if isinstance(texts, str) or not texts:
            raise TextError("generate_batch needs a non-empty list of texts (use generate for one text)")
        texts = [check_text(t) for t in texts]
        seconds = check_seconds(seconds)
        start = time.perf_counter()
        with torch.no_grad():
            mulan_tokens = self.mulan.tokens_from_text(texts).to(self.device)  # (B, 12): M_T
        self.timings = {"mulan": time.perf_counter() - start}
        tokens = self.generate_tokens(mulan_tokens, seconds, seed, temperatures, progress, guidance=guidance)
        return self.decode(tokens, seconds)

    def generate_tokens(self, mulan_tokens: Tensor, seconds: float, seed: int = 0,
                        temperatures: tuple[float, float, float] | None = None, progress: bool = False,
                        semantic: Tensor | None = None, guidance: float | None = None,
                        breaks: tuple[float, ...] = ()) -> dict[str, Tensor]:
        """MuLan tokens (B, 12) -> {"semantic" (B, T_s), "coarse" (B, Q_c, T_a), "fine" (B, Q_f, T_a)} (Chapters 6, 9).

        `semantic` (B, >= T_s), if given, replaces the semantic stage: e.g. a real clip's semantic tokens, to
        hear what the acoustic stages make of them alone. Story mode (Chapter 9): `mulan_tokens` (B, S, 12)
        holds S texts' tokens and `breaks` the S - 1 times (s) where each next text takes over; the token
        prompt carries over each break, only the conditioning changes.
        """
        seconds = check_seconds(seconds)
        M = mulan_tokens.to(self.device).long()
        M = M[:, None] if M.dim() == 2 else M  # (B, S, 12): one row of MuLan tokens per text
        if M.dim() != 3 or M.shape[2] != self.layout.mulan_levels or M.shape[1] != len(breaks) + 1:
            raise ValueError(f"MuLan tokens must be (B, {self.layout.mulan_levels}), or (B, S, {self.layout.mulan_levels}) "
                             f"with S - 1 = {len(breaks)} breaks; got {tuple(mulan_tokens.shape)}")
        temps = temperatures or tuple(getattr(self.preset, f"{s}_stage").temperature for s in STAGE_NAMES)
        if len(temps) != 3:
            raise ValueError(f"temperatures must be (semantic, coarse, fine), got {temps}")
        if guidance is not None and (isinstance(guidance, bool) or not isinstance(guidance, numbers.Real)
                                     or not math.isfinite(guidance) or guidance < 0):
            raise ValueError(f"guidance must be a finite number >= 0 (1 = no guidance), got {guidance!r}")
        g = torch.Generator(device=self.device).manual_seed(int(seed))
        spu, apu = self.grid.semantic_per_unit, self.grid.acoustic_per_unit
        plans, st, out = window_plan(self.preset, seconds, tuple(breaks)), self.stages, {}

        def text_of(name: str, w) -> Tensor:  # (B, 12): the text of the segment where w's new frames start
            return M[:, bisect.bisect_right(plans[name]["breaks"], w.given)]

        def run(name: str, condition) -> Tensor:
            cfg, plan = getattr(self.preset, f"{name}_stage"), plans[name]
            scale = 1.0 if not st[name].reads_mulan else cfg.guidance if guidance is None else float(guidance)
            sampling = Sampling(temps[STAGE_NAMES.index(name)], cfg.top_k, guidance=scale)
            bar = tqdm(total=_sampling_steps(plan["windows"]) * st[name].tokens_per_frame, desc=name,
                       disable=not progress)
            start = time.perf_counter()
            ids = generate_windows(self.transformers[name], st[name], condition, plan["frames"], plan["window"],
                                   plan["prefix"], sampling, plan["unit"], g, tick=lambda: bar.update(1),
                                   breaks=plan["breaks"])
            bar.close()
            self.timings[name] = time.perf_counter() - start
            return st[name].decode_target(ids)

        n_semantic = plans["semantic"]["frames"]
        if semantic is None:
            out["semantic"] = run("semantic", lambda w: st["semantic"].condition(text_of("semantic", w)))
        else:
            if semantic.dim() != 2 or semantic.shape[0] != M.shape[0] or semantic.shape[1] < n_semantic:
                raise ValueError(f"semantic tokens must be (B={M.shape[0]}, >= {n_semantic}), got {tuple(semantic.shape)}")
            out["semantic"] = semantic[:, :n_semantic].to(self.device).long()
        # each coarse window reads the semantic tokens of its own time span (codec frames -> semantic frames)
        out["coarse"] = run("coarse", lambda w: st["coarse"].condition(
            text_of("coarse", w), out["semantic"][:, w.start // apu * spu:w.end // apu * spu]))
        out["fine"] = run("fine", lambda w: st["fine"].condition(out["coarse"][:, :, w.start:w.end]))
        return out

    def story(self, segments: list[tuple[str, float]], seed: int = 0, progress: bool = False,
              guidance: float | None = None, temperatures: tuple[float, float, float] | None = None) -> Tensor:
        """Story mode (Chapter 9, paper Sec. 6): [(text, seconds), ...] -> one wave (T,), the text changing at each boundary.

        M_T is computed once per text; the windows of the semantic and coarse stages are cut at each
        boundary and the next text conditions the windows after it, prompted with the tokens before it.
        """
        texts, seconds = check_story(segments)
        with torch.no_grad():
            M = self.mulan.tokens_from_text(texts).to(self.device)  # (S, 12)
        breaks = tuple(itertools.accumulate(seconds))[:-1]
        tokens = self.generate_tokens(M[None], sum(seconds), seed, temperatures, progress, guidance=guidance,
                                      breaks=breaks)
        return self.decode(tokens, sum(seconds))[0]

    @torch.no_grad()
    def decode(self, tokens: dict[str, Tensor], seconds: float) -> Tensor:
        """All codec levels -> waves (B, T), cut to exactly `seconds` (Chapter 7)."""
        start = time.perf_counter()
        codes = torch.cat([tokens["coarse"], tokens["fine"]], dim=1)  # (B, Q, T_a)
        wave = self.codec.decode(codes).float().cpu()  # (B, T_a * hop)
        n = round(seconds * self.sample_rate)
        wave = F.pad(wave, (0, max(0, n - wave.shape[-1])))[..., :n]
        self.timings["decode"] = time.perf_counter() - start
        return wave


def _sampling_steps(plan: list) -> int:
    """How many sampling steps `generate_windows` takes over `plan` in frames (batched fresh windows count once)."""
    fresh_lengths = {w.end - w.start for w in plan if w.given == w.start}
    return sum(fresh_lengths) + sum(w.end - w.given for w in plan if w.given != w.start)


# ---------------------------------------------------------------------------------------------
# Does the music follow the text? (Chapter 7)
# ---------------------------------------------------------------------------------------------
def adherence_statistics(audio_embeddings: Tensor, text_embeddings: Tensor, permutations: int = 10_000,
                         seed: int = 0, per_caption: bool = False) -> dict[str, float]:
    """MuLan similarity of each clip to its own caption vs to the other captions, with p-values (Chapter 7).

    audio_embeddings (N, D), or (N, K, D) for K clips per caption; text_embeddings (N, D); row i = the
    clip(s) of caption i. With K clips, a caption's similarities are averaged over its clips, which
    removes sampling noise but not the caption-to-caption variation the tests are about.
    `own` is the paper's MCC per caption; `other` is the mean similarity to the N - 1 other captions,
    i.e. the expected similarity to a shuffled caption. The one-sided tests ask whether own > other:
    a paired sign-flip permutation test on the differences, and scipy's Wilcoxon signed-rank test.
    `per_caption=True` adds `own` and `other` (N lists of K values, clip by clip), so that a later run on
    a slice of the same captions can be compared clip for clip (Chapter 6's live check of its recorded run).
    """
    audio = audio_embeddings[:, None] if audio_embeddings.dim() == 2 else audio_embeddings  # (N, K, D)
    if (audio.dim() != 3 or audio.shape[0] != text_embeddings.shape[0] or audio.shape[-1] != text_embeddings.shape[-1]
            or text_embeddings.dim() != 2 or audio.shape[0] < 2):
        raise ValueError(f"need matching (N, D) or (N, K, D) audio and (N, D) text embeddings with N >= 2, got "
                         f"{tuple(audio_embeddings.shape)} and {tuple(text_embeddings.shape)}")
    from scipy.stats import wilcoxon

    audio, text = F.normalize(audio.float(), dim=-1), F.normalize(text_embeddings.float(), dim=-1)
    by_clip = torch.einsum("nkd,md->nkm", audio, text)  # (N, K, N): clip k of caption i vs caption j
    sim = by_clip.mean(1)  # (N, N): caption i's clips vs caption j
    N = sim.shape[0]
    own = sim.diag()
    other = (sim.sum(1) - own) / (N - 1)
    diff = own - other  # (N,)
    g = torch.Generator().manual_seed(seed)
    signs = torch.randint(0, 2, (permutations, N), generator=g).float() * 2 - 1  # under H0 each sign is a coin flip
    null = (signs * diff).mean(1)  # (permutations,)
    p_perm = (1 + int((null >= diff.mean()).sum())) / (permutations + 1)
    out = {"clips": N, "mcc": float(own.mean()), "shuffled": float(other.mean()),
           "difference": float(diff.mean()), "p_permutation": p_perm,
           "p_wilcoxon": float(wilcoxon(own.numpy(), other.numpy(), alternative="greater").pvalue),
           "retrieval_top1": float((sim.argmax(1) == torch.arange(N)).float().mean()), "chance_top1": 1.0 / N}
    if per_caption:
        own_k, other_k = own_and_other(by_clip)
        out.update(own=own_k.tolist(), other=other_k.tolist())
    return out


def own_and_other(by_clip: Tensor) -> tuple[Tensor, Tensor]:
    """Similarities (N, K, N) of clip k of caption i to caption j -> own (N, K) and mean over other captions (N, K).

    Chapter 6 uses it to compare a live slice of clips with the recorded ones, clip by clip.
    """
    N = by_clip.shape[0]
    own = by_clip[torch.arange(N), :, torch.arange(N)]  # (N, K)
    return own, (by_clip.sum(-1) - own) / (N - 1)


@torch.no_grad()
def caption_adherence(model: MusicLM, captions: list[str], seconds: float | None = None, seed: int = 0,
                      batch_size: int = 8, permutations: int = 10_000, progress: bool = False,
                      samples: int = 1, guidance: float | None = None,
                      temperatures: tuple[float, float, float] | None = None, per_caption: bool = False) -> dict[str, float]:
    """Generate `samples` clips per caption, then `adherence_statistics` with MuLan's embeddings (Chapter 7).

    `guidance` and `temperatures` override the preset's (see `MusicLM.generate`).

    Use held-out captions (the test split), never training ones. Clip k of caption i uses seed
    `seed + 10_007 * k + i // batch_size`.
    """
    if samples < 1:
        raise ValueError(f"samples must be at least 1, got {samples}")
    seconds = seconds or model.preset.data.clip_seconds
    bar = tqdm(total=samples * len(captions), desc="clips", disable=not progress)
    audio = []
    for k in range(samples):
        waves = []
        for i in range(0, len(captions), batch_size):
            waves.append(model.generate_batch(captions[i:i + batch_size], seconds, seed + 10_007 * k + i // batch_size,
                                              temperatures, guidance=guidance))
            bar.update(len(waves[-1]))
        audio.append(model.mulan.embed_audio(torch.cat(waves).to(model.device)).cpu())  # (N, D)
    bar.close()
    text = model.mulan.embed_text(list(captions)).cpu()  # (N, D)
    return {**adherence_statistics(torch.stack(audio, 1), text, permutations, seed, per_caption), "samples": samples}


@torch.no_grad()
def audio_adherence(mulan, waves: Tensor, captions: list[str], permutations: int = 10_000,
                    seed: int = 0, per_caption: bool = False) -> dict[str, float]:
    """`adherence_statistics` for any clips (N, T) and their captions, e.g. real or codec-decoded ones (Chapter 6).

    Run on the real held-out clips it gives the ceiling that generated music could reach with this MuLan.
    """
    if waves.dim() != 2 or waves.shape[0] != len(captions):
        raise ValueError(f"need one clip per caption, got waves {tuple(waves.shape)} and {len(captions)} captions")
    audio = mulan.embed_audio(waves).cpu()  # (N, D), waves on MuLan's device
    text = mulan.embed_text(list(captions)).cpu()  # (N, D)
    return adherence_statistics(audio, text, permutations, seed, per_caption)
