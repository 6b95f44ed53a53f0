"""Training past one GPU: FSDP, bf16 autocast, gradient accumulation, activation checkpointing (Chapter 11).

Not in the paper: MusicLM Sec. 4.1 gives the stages' sizes (24 layers, d_model 1024, about 430M
parameters each), not how they were trained. This file is how the book trains the `paper` stages on
PyTorch's own engine; `distributed.py` starts the processes and `loop.py` stays what it was.

    torchrun --nproc_per_node 8 -m musiclm_mini.train coarse-stage --preset paper \
        --parallel fsdp --accumulate 4 --activation-checkpointing      # bf16 where the GPU has it

    parallel   ddp: every rank holds all weights, gradients and Adam moments; gradients are all-reduced.
               fsdp: each block's weights, gradients and moments are sharded over the ranks
                     (`fully_shard`, FSDP2); a block's weights are all-gathered just before it runs.
    precision  auto: bf16 autocast on a GPU that supports it, else fp32. Weights and Adam stay fp32.
    accumulate each rank's batch is split into this many micro-batches, one backward each; gradients
               are synchronised only after the last, then one optimizer step.
    activation_checkpointing  each block keeps only its input and recomputes the rest in backward.

Checkpoints stay consolidated: `full_model_state` gathers the weights (and `full_optimizer_state` the
Adam moments, keyed by parameter index as a plain optimizer's are), so a run saved under FSDP resumes
on one process, under DDP, or on another number of GPUs.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.fsdp import FSDPModule, fully_shard
from torch.utils.checkpoint import checkpoint

from ..device import best_dtype
from .distributed import Runtime, unwrap, wrap_ddp

PARALLEL = ("ddp", "fsdp")
PRECISION = ("auto", "bf16", "fp32")


@dataclass(frozen=True)
class Scaling:
    """How a stage is spread over processes and memory (Chapter 11). The defaults are the old behaviour."""

    parallel: str = "ddp"  # only matters under torchrun (WORLD_SIZE > 1)
    precision: str = "auto"
    accumulate: int = 1  # micro-batches per optimizer step
    activation_checkpointing: bool = False

    def __post_init__(self):
        if self.parallel not in PARALLEL or self.precision not in PRECISION or self.accumulate < 1:
            raise ValueError(f"bad scaling options: {self} (parallel {PARALLEL}, precision {PRECISION}, accumulate >= 1)")


def add_scaling_flags(parser: argparse.ArgumentParser) -> None:
    """The command-line flags of `Scaling` (Chapter 11)."""
    parser.add_argument("--parallel", default="ddp", choices=PARALLEL, help="under torchrun: ddp or fsdp (FSDP2)")
    parser.add_argument("--precision", default="auto", choices=PRECISION, help="auto = bf16 autocast where supported")
    parser.add_argument("--accumulate", type=int, default=1, help="micro-batches per step (splits --batch-size)")
    parser.add_argument("--activation-checkpointing", action="store_true", help="recompute block activations in backward")


def scaling_from_args(args: argparse.Namespace) -> Scaling:
    return Scaling(getattr(args, "parallel", "ddp"), getattr(args, "precision", "auto"),
                   getattr(args, "accumulate", 1), getattr(args, "activation_checkpointing", False))


# ---------------------------------------------------------------------------------------------
# Precision
# ---------------------------------------------------------------------------------------------
def autocast_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """bf16 or None (fp32) for `device` (Chapter 11). A T4 has no bf16: fp16 would need a loss scaler, so fp32."""
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    return None if best_dtype(device) == torch.float32 else torch.bfloat16  # the notebooks' rule (device.py)


def autocast(device: torch.device, dtype: torch.dtype | None):
    """Matmuls in `dtype`, reductions and weights in fp32; a no-op for None (Chapter 11)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


# ---------------------------------------------------------------------------------------------
# Memory: activation checkpointing and sharding
# ---------------------------------------------------------------------------------------------
def _recomputed(forward, *args):
    return checkpoint(forward, *args, use_reentrant=False)


def checkpoint_blocks(model: nn.Module) -> nn.Module:
    """Recompute each of `model.blocks` in backward instead of storing its activations (Chapter 11).

    The block's forward is replaced on the instance, so parameter names (and checkpoints) do not change.
    """
    for block in model.blocks:
        block.forward = functools.partial(_recomputed, block.forward)
    return model


def prepare(model: nn.Module, runtime: Runtime, scaling: Scaling) -> nn.Module:
    """The module to run forward through: itself, DDP around it, or itself sharded in place (Chapter 11).

    FSDP shards every block on its own (so only one block's full weights exist at a time), then the
    rest (embedding, head). Build the optimizer *after* this: under FSDP it must see the shards.
    """
    if scaling.activation_checkpointing:
        checkpoint_blocks(model)
    if not runtime.distributed:
        return model
    if scaling.parallel == "ddp":
        return wrap_ddp(model, runtime)
    for block in model.blocks:
        fully_shard(block)
    fully_shard(model)
    return model


@contextlib.contextmanager
def gradient_sync(module: nn.Module, enabled: bool):
    """Skip the gradient all-reduce (DDP) or reduce-scatter (FSDP) inside, unless `enabled` (Chapter 11)."""
    if isinstance(module, nn.parallel.DistributedDataParallel) and not enabled:
        with module.no_sync():
            yield
    elif isinstance(module, FSDPModule):
        module.set_requires_gradient_sync(enabled)
        try:
            yield
        finally:
            module.set_requires_gradient_sync(True)
    else:
        yield


# ---------------------------------------------------------------------------------------------
# One optimisation step's forward and backward passes
# ---------------------------------------------------------------------------------------------
def micro_batches(batch_size: int, accumulate: int) -> list[slice]:
    """`accumulate` equal slices of a batch (Chapter 11)."""
    if batch_size % accumulate:
        raise ValueError(f"--batch-size {batch_size} is not a multiple of --accumulate {accumulate}")
    size = batch_size // accumulate
    return [slice(i, i + size) for i in range(0, batch_size, size)]


def accumulate_gradients(module: nn.Module, loss_fn, weights: list[float], dtype: torch.dtype | None,
                         device: torch.device) -> list[float]:
    """Backward through each micro-batch; the summed gradient is that of the whole batch's mean (Chapter 11).

    `loss_fn(i)` returns micro-batch i's figures, a mean loss first; `weights[i]` is how many terms it
    averages (target tokens). Scaling loss i by weights[i] / sum(weights) makes one batch of means a mean.
    Returns the batch's weighted figures (floats), this rank's.
    """
    total, sums = float(sum(weights)), None
    for i, w in enumerate(weights):
        with gradient_sync(module, enabled=i == len(weights) - 1), autocast(device, dtype):
            figures = loss_fn(i)
            (figures[0].float() * (w / total)).backward()
        part = [float(f.detach()) * w / total for f in figures]
        sums = part if sums is None else [a + b for a, b in zip(sums, part)]
    return sums


def global_mean(values: list[float], runtime: Runtime, device: torch.device) -> list[float]:
    """The mean of `values` over ranks, for rank 0's log: the loss of the global batch (Chapter 11)."""
    if not runtime.distributed:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return (t / runtime.world_size).tolist()


# ---------------------------------------------------------------------------------------------
# Consolidated checkpoints
# ---------------------------------------------------------------------------------------------
def _full():
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=True)  # gathered on rank 0, in CPU memory


def is_sharded(model: nn.Module) -> bool:
    return isinstance(model, FSDPModule)


def full_model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """All weights, unsharded (Chapter 11). Under FSDP every rank must call it; only rank 0 gets them."""
    if not is_sharded(model):
        return unwrap(model).state_dict()
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    return get_model_state_dict(model, options=_full())


def load_model_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load full weights into a plain, DDP or sharded model (each rank keeps its shard) (Chapter 11)."""
    if not is_sharded(model):
        unwrap(model).load_state_dict(state)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    set_model_state_dict(model, state, options=StateDictOptions(full_state_dict=True))


def _param_names(model: nn.Module, optimizer: torch.optim.Optimizer) -> list[str]:
    """Parameter names in the optimizer's order: index i of a plain state_dict is names[i]."""
    names = {p: n for n, p in model.named_parameters()}
    return [names[p] for group in optimizer.param_groups for p in group["params"]]


def full_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """The optimizer's state as a plain optimizer's `state_dict()` (integer keys), unsharded (Chapter 11)."""
    if not is_sharded(model):
        return optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    state = get_optimizer_state_dict(model, optimizer, options=_full())  # keyed by parameter name
    if not state:  # ranks other than 0
        return {}
    index = {n: i for i, n in enumerate(_param_names(model, optimizer))}
    return {"state": {index[n]: s for n, s in state["state"].items()},
            "param_groups": [{**g, "params": [index[n] for n in g["params"]]} for g in state["param_groups"]]}


def load_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Inverse of `full_optimizer_state`: every rank passes the full state, each keeps its shard (Chapter 11)."""
    if not is_sharded(model):
        optimizer.load_state_dict(state)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    names = _param_names(model, optimizer)
    named = {"state": {names[int(i)]: s for i, s in state["state"].items()},
             "param_groups": [{**g, "params": [names[int(i)] for i in g["params"]]} for g in state["param_groups"]]}
    set_optimizer_state_dict(model, optimizer, named, options=StateDictOptions(full_state_dict=True))
