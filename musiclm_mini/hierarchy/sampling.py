"""Sampling the stages: temperature, top-k, vocabulary slices, classifier-free guidance, windows (Chapter 6).

The generic `Transformer` only maps tokens to logits (with a KV cache). Everything about *how* a
stage picks its next token lives here:

- `sample_next`: argmax, or a draw at a temperature, optionally among the top k logits;
- `restrict_to_range`: a step of a stage may only emit ids of its own token type (`tokens.Stage.target_range`);
- classifier-free guidance (`Sampling.guidance`, not in the paper): the prompts run twice in one batch,
  with and without their MuLan ids, and each step samples from u + w (c - u);
- `sample`: the decoding loop itself, calling `tick` once per step (a progress bar);
- windows longer than a crop: `sliding_windows` plans the generation of `total` frames in windows of the
  training crop's length, each prompted with the last `prefix` frames of the previous one (a simple
  continuation, as in Chapter 9's long generation). The last window is aligned to the end, so every
  window is as long as a training crop. The fine stage uses prefix 0: independent chunks, as AudioLM.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Union

import torch
import torch.nn.functional as F
from torch import Tensor

# A vocabulary slice [lo, hi), fixed or chosen per generated step (step 0 = first new token).
AllowedRange = Union[tuple[int, int], Callable[[int], tuple[int, int]]]


def restrict_to_range(logits: Tensor, lo: int, hi: int, masks: dict | None = None) -> Tensor:
    """Set logits outside the vocabulary slice [lo, hi) to -inf (Chapter 6).

    `masks`, a dict kept by the caller, remembers each slice's mask: `sample` asks for the same few every step.
    """
    V = logits.shape[-1]
    if not 0 <= lo < hi <= V:
        raise ValueError(f"allowed_range ({lo}, {hi}) must satisfy 0 <= lo < hi <= vocab size {V}")
    outside = None if masks is None else masks.get((lo, hi, V))
    if outside is None:
        ids = torch.arange(V, device=logits.device)
        outside = (ids < lo) | (ids >= hi)
        if masks is not None:
            masks[(lo, hi, V)] = outside
    return logits.masked_fill(outside, float("-inf"))


def sample_next(logits: Tensor, temperature: float = 1.0, top_k: int | None = None, greedy: bool = False,
                generator: torch.Generator | None = None) -> Tensor:
    """Pick one token per row from logits (B, V) -> (B, 1): argmax, or temperature/top-k sampling (Chapter 6)."""
    if greedy:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits / temperature  # < 1 sharpens, > 1 flattens
    if top_k is not None:
        kth = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = F.softmax(logits, dim=-1)  # (B, V); masked entries get exactly 0
    return torch.multinomial(probs, num_samples=1, generator=generator)


# ---------------------------------------------------------------------------------------------
# Sampling
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Sampling:
    """How one stage samples (Chapter 6): temperature, optional top-k, or greedy argmax.

    `guidance` w != 1 samples from logits u + w (c - u), c with the text and u without it (the null
    condition): classifier-free guidance. w = 1 is plain conditional sampling, as in the paper.
    """

    temperature: float = 1.0
    top_k: int | None = None
    greedy: bool = False
    guidance: float = 1.0


@torch.no_grad()
def sample(model, prompt: Tensor, max_new_tokens: int, sampling: Sampling = Sampling(),
           generator: torch.Generator | None = None, allowed_range: AllowedRange | None = None,
           use_cache: bool = True, tick: Callable[[], None] | None = None) -> Tensor:
    """Continue `prompt` (B, T0) by `max_new_tokens` sampled tokens -> (B, T0 + new) (Chapter 6).

    `model(tokens, cache, last_only=True) -> (logits, cache)` is any decoder with a KV cache (the
    `Transformer`). Runs in eval mode and restores the previous mode. `allowed_range` keeps each step
    inside one token type: a fixed (lo, hi) or a function of the step (0 = first new token); hi is
    exclusive. `use_cache=False` recomputes the whole sequence each step (slow: kept to check the
    cache and to teach why it exists). `tick` is called once per step.

    Classifier-free guidance (`sampling.guidance` w != 1): `prompt` is (2B, T0), rows B.. being rows ..B
    without their conditioning. Both halves run in one batch; each step samples from u + w (c - u)
    (c, u: the two halves' logits) and appends the token to both -> (B, T0 + new).
    """
    guided = sampling.guidance != 1.0
    if guided and prompt.shape[0] % 2:
        raise ValueError(f"with guidance the prompt holds conditional then unconditional rows, so an even "
                         f"batch; got {prompt.shape[0]} rows")
    was_training = model.training
    model.eval()
    try:
        tokens, cache, first, masks = prompt, None, True, {}
        if use_cache and hasattr(model, "empty_cache"):  # keys and values appended in place, not re-copied each step
            cache = model.empty_cache(prompt.shape[0], prompt.shape[1] + max_new_tokens)
        for step in range(max_new_tokens):
            if use_cache:  # first step: the whole prompt; afterwards only the newest token
                logits, cache = model(tokens if first else tokens[:, -1:], cache, last_only=True)
                first = False
            else:
                logits, _ = model(tokens, last_only=True)
            logits = logits[:, -1, :]  # (B, V), or (2B, V) with guidance
            if guided:
                cond, uncond = logits.chunk(2)  # (B, V) each
                logits = uncond + sampling.guidance * (cond - uncond)
            lo_hi = allowed_range(step) if callable(allowed_range) else allowed_range
            if lo_hi is not None:
                logits = restrict_to_range(logits, *lo_hi, masks)
            nxt = sample_next(logits, sampling.temperature, sampling.top_k, sampling.greedy, generator)  # (B, 1)
            tokens = torch.cat([tokens, nxt.repeat(2, 1) if guided else nxt], dim=1)
            if tick is not None:
                tick()
        return tokens[:prompt.shape[0] // 2] if guided else tokens
    finally:
        model.train(was_training)


def check_sampling(sampling: Sampling, max_new_tokens: int = 0) -> Sampling:
    """A ValueError for settings that cannot sample, checked once per request (Chapter 6)."""
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if not sampling.greedy and not sampling.temperature > 0:
        raise ValueError(f"temperature must be > 0 when sampling (use greedy=True for argmax), got {sampling.temperature}")
    if sampling.top_k is not None and sampling.top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {sampling.top_k}")
    if not sampling.guidance >= 0:
        raise ValueError(f"guidance must be >= 0 (1 = no guidance), got {sampling.guidance}")
    return sampling


def continue_target(model, stage, condition: Tensor, given: Tensor, new_tokens: int, sampling: Sampling,
                    generator: torch.Generator | None = None, tick: Callable[[], None] | None = None) -> Tensor:
    """Sample `new_tokens` target ids after [condition (B, C)] + [given (B, G)] -> (B, G + new) (Chapter 6).

    Token j of the target is drawn from `stage.target_range(j)` only: a coarse position can only
    be a code of its own RVQ level. `tick` is called once per sampled step (a progress bar).
    """
    start, C = given.shape[1], condition.shape[1]
    prompt = torch.cat([condition, given], dim=1)  # (B, C + G)
    if sampling.guidance != 1.0:  # the same prompts without their text, run alongside in one batch
        prompt = torch.cat([prompt, stage.uncondition(prompt)])  # (2B, C + G)
    out = sample(model, prompt, new_tokens, sampling, generator, lambda step: stage.target_range(start + step),
                 tick=tick)
    return out[:, C:]  # (B, G + new)


@dataclass(frozen=True)
class Window:
    """One generation window over frames (Chapter 6): [start, given) is the prompt, [given, end) is new."""

    start: int
    given: int
    end: int


def sliding_windows(total: int, window: int, prefix: int, unit: int = 1, breaks: tuple[int, ...] = ()) -> list[Window]:
    """Plan the generation of `total` frames in windows of `window` frames (Chapters 6 and 9).

    The first window starts from nothing; each later one starts `prefix` frames before the frames
    generated so far, which it receives as its prompt, so it continues them. The last window is
    aligned to the end so it is a full `window` long too (its prompt may then be longer than
    `prefix`). Every boundary is a multiple of `unit` (e.g. 2 codec frames per semantic frame).
    `breaks` are frames that no window's new part may cross (story mode's text changes, Chapter 9):
    a window stops at the next break, and the window after it starts there, prompted as usual.

    Example: sliding_windows(10, 4, 2) -> windows [0,4) [2,6) [4,8) [6,10); after the first, each
    is prompted with 2 frames and adds 2 new ones.
    """
    if total < 1 or window < 1:
        raise ValueError(f"total ({total}) and window ({window}) must be positive")
    if not 0 <= prefix < window:
        raise ValueError(f"prefix must be in [0, window), got prefix {prefix}, window {window}")
    if total % unit or window % unit or prefix % unit:
        raise ValueError(f"total {total}, window {window} and prefix {prefix} must be multiples of {unit}")
    if any(not 0 < b < total or b % unit for b in breaks):
        raise ValueError(f"breaks must be multiples of {unit} inside (0, {total}), got {list(breaks)}")
    windows, done = [], 0
    for stop in sorted(set(breaks)) + [total]:  # the new frames of a window never cross a break
        while done < stop:
            start = 0 if done == 0 else max(0, min(done - prefix, stop - window))
            end = min(start + window, stop)
            windows.append(Window(start, done, end))
            done = end
    return windows


def frames_to_multiple(frames: float, unit: int) -> int:
    """`frames` rounded down to a positive multiple of `unit` (Chapter 6)."""
    return max(unit, int(frames) // unit * unit)


def generate_windows(model, stage, condition: Callable[[Window], Tensor], total: int, window: int,
                     prefix: int, sampling: Sampling, unit: int = 1, generator: torch.Generator | None = None,
                     tick: Callable[[], None] | None = None, breaks: tuple[int, ...] = ()) -> Tensor:
    """Target ids (B, total * tokens_per_frame) generated window by window (Chapters 6 and 9).

    `condition(w)` returns the conditioning ids (B, C) of window `w` (in story mode, those of the segment
    its new frames belong to; `breaks`, the segment boundaries, are explained in `sliding_windows`).
    Windows that start from nothing (given == start, e.g. the fine stage's chunks) do not depend on each
    other and are sampled together in one batch; the others follow one by one, each continuing its prompt.
    """
    tpf, plan = stage.tokens_per_frame, sliding_windows(total, window, prefix, unit, breaks)
    fresh = [w for w in plan if w.given == w.start]  # empty prompt: the first window, the fine chunks
    pieces = {}
    for length in sorted({w.end - w.start for w in fresh}):  # one batch per length (almost always one)
        group = [w for w in fresh if w.end - w.start == length]
        conds = torch.cat([condition(w) for w in group])  # (len(group) * B, C)
        B = conds.shape[0] // len(group)
        out = continue_target(model, stage, conds, conds.new_zeros(conds.shape[0], 0), length * tpf, sampling,
                              generator, tick)
        pieces.update({w.start: out[i * B:(i + 1) * B] for i, w in enumerate(group)})
    target = out.new_zeros(B, 0)
    for w in plan:  # in time order; the windows with a prompt continue what is already there
        if w.given == w.start:
            piece = pieces[w.start]
        else:
            given = target[:, w.start * tpf:w.given * tpf]
            piece = continue_target(model, stage, condition(w), given, (w.end - w.given) * tpf, sampling,
                                    generator, tick)[:, given.shape[1]:]
        target = torch.cat([target, piece], dim=1)
    return target  # (B, total * tpf)
