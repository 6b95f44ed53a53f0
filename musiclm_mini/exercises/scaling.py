"""Exercise of Chapter 11: how much memory one GPU needs to train one stage, under DDP or FSDP.

The reader writes `fn(params, micro_batch, seq_len, bytes_per_token, gpus, fsdp) -> GiB`:
    params           parameters of the stage (fp32 weights, trained with AdamW)
    micro_batch      sequences in one forward/backward pass
    seq_len          tokens per sequence
    bytes_per_token  activation bytes kept per token (`scale.activation_bytes_per_token`)
    gpus, fsdp       under FSDP the weights, gradients and Adam moments are split over `gpus`; under DDP
                     every GPU keeps all of them. Activations are never split: each GPU runs its own micro-batch.
`check_stage_memory(fn)` grades it against `reference_stage_memory`, written here independently of
`musiclm_mini.scale` (a test ties the two together).
"""
from __future__ import annotations

from typing import Callable

from .grading import grade

GIB = 2 ** 30


def reference_stage_memory(params: int, micro_batch: int, seq_len: int, bytes_per_token: float, gpus: int = 1,
                           fsdp: bool = False) -> float:
    """The answer to Chapter 11's exercise, in GiB (Chapter 11)."""
    weights, gradients, adam = 4 * params, 4 * params, 2 * 4 * params  # fp32 each; Adam keeps m and v
    states = (weights + gradients + adam) / (gpus if fsdp else 1)
    activations = micro_batch * seq_len * bytes_per_token
    return (states + activations) / GIB


def _cases() -> list[tuple]:
    return [
        ("a 430M stage on one GPU, micro-batch 1", 430_000_000, 1, 2261, 40_000.0, 1, False),
        ("the same under DDP on 8 GPUs (every GPU keeps everything)", 430_000_000, 1, 2261, 40_000.0, 8, False),
        ("FSDP on 8 GPUs: the states split eight ways", 430_000_000, 1, 2261, 40_000.0, 8, True),
        ("micro-batch 4 with activation checkpointing", 430_000_000, 4, 2261, 4_500.0, 8, True),
        ("tiny: a 4.8M stage on a laptop", 4_819_840, 8, 236, 150_000.0, 1, False),
    ]


def _hint(got: float, params, micro_batch, seq_len, bytes_per_token, gpus, fsdp) -> str:
    """Name the usual mistakes: Adam forgotten, FSDP not dividing, activations divided too, bytes not GiB."""
    want = reference_stage_memory(params, micro_batch, seq_len, bytes_per_token, gpus, fsdp)
    split = gpus if fsdp else 1
    acts = micro_batch * seq_len * bytes_per_token
    guesses = {
        " (Adam keeps two fp32 moments per parameter: 8 more bytes)": (8 * params / split + acts) / GIB,
        " (weights only: training also keeps gradients and Adam's moments)": (4 * params / split + acts) / GIB,
        " (under DDP nothing is sharded; under FSDP the states are divided by the GPUs)":
            (16 * params / (1 if fsdp else gpus) + acts) / GIB,
        " (activations are per GPU: each runs its own micro-batch, FSDP does not split them)":
            (16 * params / split + acts / gpus) / GIB,
        " (return GiB, 2**30 bytes)": want * GIB,
    }
    for hint, guess in guesses.items():
        if abs(got - guess) <= 1e-6 * max(1.0, abs(guess)) and abs(guess - want) > 1e-6 * max(1.0, abs(want)):
            return hint
    return ""


def check_stage_memory(fn: Callable[..., float], verbose: bool = True) -> bool:
    """Grade a reader's per-GPU training memory of one stage; print what passed and what did not (Chapter 11)."""
    def compare(got, *inputs) -> str | None:
        want = reference_stage_memory(*inputs)
        got = float(got)
        if abs(got - want) > 1e-6 * max(1.0, abs(want)):
            return f"expected {want:.3f} GiB, got {got:.3f}{_hint(got, *inputs)}"
        return None

    return grade(_cases(), fn, compare, verbose)
