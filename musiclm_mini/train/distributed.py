"""Where a training process runs: device, rank, DistributedDataParallel (Chapter 3; not in the paper).

Under `torchrun` (WORLD_SIZE > 1) every process joins a process group (NCCL on GPUs, Gloo on CPU),
models are wrapped in DistributedDataParallel, each rank draws its own shard of every batch, and only
rank 0 validates, logs and writes checkpoints.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


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
