"""One training entry point for every stage of the book (Chapter 3 onwards).

    python -m musiclm_mini.train codec --preset tiny [--steps N] [--batch-size B] [--out DIR] [--resume] [--seed S]
    torchrun --nproc_per_node 4 -m musiclm_mini.train codec --preset colab     # several GPUs (DDP)

Each stage is a subcommand found in `STAGES` (name -> "module:function"), imported only when
chosen. A stage function receives `(preset, args, runtime)` and usually builds a `Run` and calls
`fit`, which owns what every stage shares: the learning-rate schedule, the progress bar, periodic
validation, atomic checkpoints and *exact* resume (weights, optimizer moments, step, RNG states;
data order is a pure function of the seed and the step). To add a stage, add one line to `STAGES`.

Device: CUDA when available, else CPU. Under `torchrun` (WORLD_SIZE > 1) every process joins a
process group (NCCL on GPUs, Gloo on CPU), models are wrapped in DistributedDataParallel, each rank
draws its own shard of every batch, and only rank 0 validates, logs and writes checkpoints.
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import importlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist
from torch import nn

from .checkpoint import load_checkpoint, save_checkpoint
from .config import PRESET_NAMES, Preset, get_preset
from .errors import CheckpointError

# Subcommand -> "module:function". Later chapters add their stage here (semantic, kmeans, mulan, ...).
STAGES: dict[str, str] = {
    "codec": "musiclm_mini.train_codec:train_codec",  # Chapter 3
    "semantic-stage": "musiclm_mini.train_stages:train_semantic_stage",  # Chapter 6
    "coarse": "musiclm_mini.train_stages:train_coarse_stage",  # Chapter 6
    "fine": "musiclm_mini.train_stages:train_fine_stage",  # Chapter 6
    "mulan": "musiclm_mini.train_mulan:train_mulan",  # Chapter 5
    "semantic": "musiclm_mini.train_semantic:train_semantic",  # Chapter 4
    "kmeans": "musiclm_mini.train_semantic:train_kmeans",  # Chapter 4
}


# ---------------------------------------------------------------------------------------------
# Devices and processes
# ---------------------------------------------------------------------------------------------
@dataclass
class Runtime:
    """Where this process runs: device, rank and number of processes (Chapter 3)."""

    device: torch.device
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_runtime(device: str | None = None) -> Runtime:
    """Pick the device and, under torchrun, join the process group from its env variables (Chapter 3)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")  # MASTER_ADDR etc. from env
    return Runtime(dev, rank, world_size)


def shutdown_runtime(runtime: Runtime) -> None:
    """Leave the process group, if any (Chapter 3)."""
    if runtime.distributed and dist.is_initialized():
        dist.destroy_process_group()


def wrap_ddp(module: nn.Module, runtime: Runtime) -> nn.Module:
    """The module itself on one process, DistributedDataParallel on several (Chapter 3)."""
    if not runtime.distributed:
        return module
    ids = [runtime.device.index] if runtime.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=ids)


def unwrap(module: nn.Module) -> nn.Module:
    """The model inside a DDP wrapper (Chapter 3)."""
    return module.module if isinstance(module, nn.parallel.DistributedDataParallel) else module


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
    step: int = 0
    elapsed: float = 0.0  # seconds of training over every session, for the record
    history: list = field(default_factory=list)  # validation results

    # -- state --------------------------------------------------------------------------------
    def train_state(self) -> dict:
        state = {
            "step": self.step, "elapsed_seconds": self.elapsed, "history": self.history, "seed": self.seed,
            "optimizers": {k: opt.state_dict() for k, opt in self.optimizers.items()},
            "modules": {k: unwrap(m).state_dict() for k, m in self.extra_modules.items()},
            "rng": {"torch": torch.get_rng_state()},
        }
        if torch.cuda.is_available():
            state["rng"]["cuda"] = torch.cuda.get_rng_state(self.runtime.device)
        return state

    def save(self) -> None:
        if self.runtime.is_main:
            save_checkpoint(self.out_dir, unwrap(self.model).state_dict(), self.config, self.train_state())
        if self.runtime.distributed:
            dist.barrier()  # nobody runs ahead of a checkpoint being written

    def resume(self) -> bool:
        """Load the checkpoint in `out_dir` if there is one; True when training continues from it."""
        if not (self.out_dir / "model.safetensors").exists():
            return False
        ckpt = load_checkpoint(self.out_dir, self.config)
        if ckpt.train_state is None:
            raise CheckpointError(f"{self.out_dir} holds weights only (no training state): cannot resume")
        unwrap(self.model).load_state_dict(ckpt.model_state)
        state = ckpt.train_state
        for k, m in self.extra_modules.items():
            unwrap(m).load_state_dict(state["modules"][k])
        for k, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][k])
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


def fit(run: Run, train_step: Callable[[int], dict[str, float]],
        validate: Callable[[], dict[str, float]] | None = None, resume: bool = False) -> Run:
    """Train `run` to `run.steps` steps, validating and checkpointing on the way (Chapter 3).

    `train_step(step)` does one optimisation step (its data must depend only on the step) and
    returns losses as floats; `validate()` returns held-out figures. Resuming continues from the
    checkpoint in `run.out_dir` and ends with the same weights as an uninterrupted run.
    """
    from tqdm.auto import tqdm

    run.out_dir.mkdir(parents=True, exist_ok=True)
    if resume and run.resume():
        _trim_log(run.out_dir / "log.jsonl", run.step)
    elif run.runtime.is_main and (run.out_dir / "model.safetensors").exists():
        raise CheckpointError(f"{run.out_dir} already holds a checkpoint: pass --resume to continue it, "
                              f"or choose another --out")
    elif run.runtime.is_main:
        (run.out_dir / "log.jsonl").unlink(missing_ok=True)
    bar = tqdm(total=run.steps, initial=run.step, desc=run.name, disable=run.quiet or not run.runtime.is_main,
               dynamic_ncols=True)
    while run.step < run.steps:
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
        if run.step % 10 == 0 or run.step == run.steps:
            run.log({"step": run.step, "lr": lr, **losses})
        if validate is not None and run.runtime.is_main and (run.step % run.val_every == 0 or run.step == run.steps):
            figures = validate()
            run.history.append({"step": run.step, **figures})
            run.log({"step": run.step, "validation": figures})
            bar.write(f"[{run.name}] step {run.step}: " + ", ".join(f"{k} {v:.4g}" for k, v in figures.items()))
        if run.step % run.checkpoint_every == 0 or run.step == run.steps:
            run.save()
    bar.close()
    return run


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------
def override(obj, dotted: str, value):
    """A copy of a (nested) frozen dataclass with one field changed: ("codec.channels", 8) (Chapter 3)."""
    head, _, rest = dotted.partition(".")
    if not dataclasses.is_dataclass(obj) or head not in {f.name for f in dataclasses.fields(obj)}:
        raise ValueError(f"--set {dotted}: no field {head!r} in {type(obj).__name__}")
    new = override(getattr(obj, head), rest, value) if rest else value
    if isinstance(getattr(obj, head), tuple) and isinstance(new, list):
        new = tuple(new)
    return dataclasses.replace(obj, **{head: new})


def build_preset(args: argparse.Namespace) -> Preset:
    """The named preset with --set overrides and the common flags applied to its TrainConfig (Chapter 3)."""
    preset = get_preset(args.preset)
    for item in args.set or []:
        key, _, text = item.partition("=")
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text  # a bare string
        preset = override(preset, key.strip(), value)
    for flag, name in [("steps", "steps"), ("batch_size", "batch_size"), ("lr", "learning_rate"),
                       ("seed", "seed"), ("val_every", "val_every"), ("checkpoint_every", "checkpoint_every")]:
        if getattr(args, flag) is not None:
            preset = override(preset, f"train.{name}", getattr(args, flag))
    return preset


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m musiclm_mini.train", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="stage", required=True, metavar="STAGE")
    for name, target in STAGES.items():
        p = sub.add_parser(name, help=f"train the {name} stage ({target})")
        p.add_argument("--preset", default=None, choices=PRESET_NAMES, help="model sizes (default: tiny on CPU)")
        p.add_argument("--steps", type=int, help="total optimisation steps (preset default otherwise)")
        p.add_argument("--batch-size", type=int, help="examples per step and per process")
        p.add_argument("--lr", type=float, help="peak learning rate")
        p.add_argument("--seed", type=int, help="seed of weights, data order and crops")
        p.add_argument("--val-every", type=int)
        p.add_argument("--checkpoint-every", type=int)
        p.add_argument("--out", type=Path, help="checkpoint directory (default runs/<stage>-<preset>)")
        p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
        p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
        p.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
        p.add_argument("--data", default="synthcaps", help="training data: synthcaps, or sines (a quick synthetic set)")
        p.add_argument("--quiet", action="store_true", help="no progress bar")
        p.add_argument("--set", action="append", metavar="FIELD=VALUE",
                       help="override a preset field, e.g. --set codec.channels=8 (repeatable)")
    return parser


def main(argv: list[str] | None = None):
    """Parse the command line and run one stage (Chapter 3)."""
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    preset = build_preset(args)
    args.out = args.out or Path("runs") / f"{args.stage}-{preset.name}"
    module, _, func = STAGES[args.stage].partition(":")
    stage_fn = getattr(importlib.import_module(module), func)
    runtime = init_runtime(args.device)
    try:
        return stage_fn(preset, args, runtime)
    finally:
        shutdown_runtime(runtime)


if __name__ == "__main__":
    main(sys.argv[1:])
