"""The training loop every component shares: schedule, validation, checkpoints, exact resume (Chapter 3).

Paper: MusicLM Sec. 4.1 (how its models were trained).

A trainer (`train/codec.py`, `train/stages.py`, ...) builds a `Run` and calls `fit`, which owns what
every component shares: the learning-rate schedule, the progress bar, periodic validation, atomic
checkpoints and *exact* resume (weights, optimizer moments, step, RNG states; data order is a pure
function of the seed and the step, `batch_indices` and `step_generator`).
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist
from torch import nn

from ..checkpoint import load_checkpoint, save_checkpoint
from ..errors import CheckpointError
from .distributed import Runtime, unwrap
from .scaling import full_model_state, full_optimizer_state, load_model_state, load_optimizer_state


# ---------------------------------------------------------------------------------------------
# Data order and learning rate: pure functions of (seed, step), hence exact resume
# ---------------------------------------------------------------------------------------------
def batch_indices(num_items: int, batch_size: int, step: int, seed: int, rank: int = 0, world_size: int = 1) -> list[int]:
    """Items of this rank's batch at `step` (Chapter 3).

    Like a DistributedSampler: each epoch is one seeded permutation of all items, consumed
    `batch_size * world_size` at a time, rank r taking its own contiguous slice.
    """
    per_step = batch_size * world_size
    first = step * per_step + rank * batch_size  # position in the endless stream of epochs
    out = []
    for pos in range(first, first + batch_size):
        epoch, offset = divmod(pos, num_items)
        order = torch.randperm(num_items, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
        out.append(int(order[offset]))
    return out


def step_generator(seed: int, step: int, rank: int = 0) -> torch.Generator:
    """A generator for this step's random crops and augmentations, independent of history (Chapter 3)."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step) * 1_009 + rank)


def learning_rate(step: int, base: float, warmup: int, total: int) -> float:
    """Linear warm-up, then cosine decay to a tenth of `base` at `total` (Chapter 3)."""
    if step < warmup:
        return base * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


# ---------------------------------------------------------------------------------------------
# The shared loop
# ---------------------------------------------------------------------------------------------
@dataclass
class Run:
    """Everything `fit` needs to train, checkpoint and resume one stage (Chapter 3).

    `model` is what later chapters load (saved to model.safetensors); `extra_modules` (e.g. a
    discriminator) and `optimizers` are training-only state, saved with it to resume.
    """

    name: str
    out_dir: Path
    config: dict  # what the weights are: compared on resume and on load
    model: nn.Module
    optimizers: dict[str, torch.optim.Optimizer]
    runtime: Runtime
    steps: int
    base_lr: float
    warmup: int
    val_every: int
    checkpoint_every: int
    seed: int
    extra_modules: dict[str, nn.Module] = field(default_factory=dict)
    quiet: bool = False
    validate_on_all_ranks: bool = False  # FSDP: a sharded model's forward needs every rank (Chapter 11)
    step: int = 0
    elapsed: float = 0.0  # seconds of training over every session, for the record
    history: list = field(default_factory=list)  # validation results

    # -- state --------------------------------------------------------------------------------
    def train_state(self) -> dict:
        state = {
            "step": self.step, "elapsed_seconds": self.elapsed, "history": self.history, "seed": self.seed,
            "optimizers": {k: full_optimizer_state(self.model, opt) for k, opt in self.optimizers.items()},
            "modules": {k: unwrap(m).state_dict() for k, m in self.extra_modules.items()},
            "rng": {"torch": torch.get_rng_state()},
        }
        if torch.cuda.is_available():
            state["rng"]["cuda"] = torch.cuda.get_rng_state(self.runtime.device)
        return state

    def save(self) -> None:
        model_state, train_state = full_model_state(self.model), self.train_state()  # FSDP gathers: every rank
        if self.runtime.is_main:
            save_checkpoint(self.out_dir, model_state, self.config, train_state)
        if self.runtime.distributed:
            dist.barrier()  # nobody runs ahead of a checkpoint being written

    def resume(self) -> bool:
        """Load the checkpoint in `out_dir` if there is one; True when training continues from it."""
        if not (self.out_dir / "model.safetensors").exists():
            return False
        ckpt = load_checkpoint(self.out_dir, self.config)
        if ckpt.train_state is None:
            raise CheckpointError(f"{self.out_dir} holds weights only (no training state): cannot resume")
        load_model_state(self.model, ckpt.model_state)
        state = ckpt.train_state
        for k, m in self.extra_modules.items():
            unwrap(m).load_state_dict(state["modules"][k])
        for k, opt in self.optimizers.items():
            load_optimizer_state(self.model, opt, state["optimizers"][k])
        torch.set_rng_state(state["rng"]["torch"])
        if "cuda" in state["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state(state["rng"]["cuda"], self.runtime.device)
        self.step, self.elapsed, self.history = state["step"], state["elapsed_seconds"], state["history"]
        return True

    def log(self, record: dict) -> None:
        if self.runtime.is_main:
            with open(self.out_dir / "log.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")


def _trim_log(path: Path, step: int) -> None:
    """Forget log lines written after the checkpoint we resume from (they will be written again)."""
    if path.exists():
        lines = [ln for ln in path.read_text().splitlines() if ln and json.loads(ln)["step"] <= step]
        path.write_text("".join(ln + "\n" for ln in lines))


def fit_options(args) -> dict:
    """`fit`'s keyword arguments from the command line: --resume, --init, --stop-at (Chapter 3)."""
    return {"resume": args.resume, "init_from": getattr(args, "init", None), "stop_at": getattr(args, "stop_at", None)}


def fit(run: Run, train_step: Callable[[int], dict[str, float]],
        validate: Callable[[], dict[str, float]] | None = None, resume: bool = False,
        init_from: Path | None = None, stop_at: int | None = None) -> Run:
    """Train `run` to `run.steps` steps, validating and checkpointing on the way (Chapter 3).

    `train_step(step)` does one optimisation step (its data must depend only on the step) and
    returns losses as floats; `validate()` returns held-out figures. Resuming continues from the
    checkpoint in `run.out_dir` and ends with the same weights as an uninterrupted run. A fresh run
    may start from the weights of `init_from` (a shipped checkpoint of the same config), with new
    optimizer state and schedule: a warm start. `stop_at` pauses the run at that step, validated and
    checkpointed, with the schedule still that of `run.steps` (a campaign trains in chunks).
    """
    from tqdm.auto import tqdm

    run.out_dir.mkdir(parents=True, exist_ok=True)
    if resume and run.resume():
        _trim_log(run.out_dir / "log.jsonl", run.step)
    elif run.runtime.is_main and (run.out_dir / "model.safetensors").exists():
        raise CheckpointError(f"{run.out_dir} already holds a checkpoint: pass --resume to continue it, "
                              f"or choose another --out")
    else:
        if run.runtime.is_main:
            (run.out_dir / "log.jsonl").unlink(missing_ok=True)
        if init_from is not None:
            load_model_state(run.model, load_checkpoint(init_from, run.config).model_state)
    bar = tqdm(total=run.steps, initial=run.step, desc=run.name, disable=run.quiet or not run.runtime.is_main,
               dynamic_ncols=True)
    end = run.steps if stop_at is None else min(run.steps, stop_at)
    while run.step < end:
        start = time.perf_counter()
        lr = learning_rate(run.step, run.base_lr, run.warmup, run.steps)
        for opt in run.optimizers.values():
            for group in opt.param_groups:
                group["lr"] = lr
        losses = train_step(run.step)
        run.step += 1
        run.elapsed += time.perf_counter() - start
        bar.update(1)
        bar.set_postfix({k: f"{v:.3g}" for k, v in list(losses.items())[:4]})
        if run.step % 10 == 0 or run.step == end:
            run.log({"step": run.step, "lr": lr, **losses})
        if (validate is not None and (run.runtime.is_main or run.validate_on_all_ranks)
                and (run.step % run.val_every == 0 or run.step == end)):
            figures = validate()
            run.history.append({"step": run.step, **figures})
            run.log({"step": run.step, "validation": figures})
            if run.runtime.is_main:
                bar.write(f"[{run.name}] step {run.step}: " + ", ".join(f"{k} {v:.4g}" for k, v in figures.items()))
        if run.step % run.checkpoint_every == 0 or run.step == end:
            run.save()
    bar.close()
    return run
