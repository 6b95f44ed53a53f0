"""Which device, precision and preset a notebook runs with (Chapter 11; not in the paper).

    settings = device_settings()   # DeviceSettings(device='cuda', dtype=torch.bfloat16, preset='tiny')

On a CPU: fp32 and the shipped `tiny` preset. On a GPU: bf16 where it is supported (A100, H100, L4),
fp32 where it is not (a T4: fp16 would need a loss scaler), and the preset `config.default_preset_name`
picks: `colab` once its checkpoints ship, else `tiny`. Training takes its precision from the same rule
(`train/scaling.autocast_dtype`). Only `torch.cuda.is_available` and `is_bf16_supported` are asked,
so the choice can be tested on a machine without a GPU.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .config import default_preset_name


@dataclass(frozen=True)
class DeviceSettings:
    """Where a chapter's models run (Chapter 11)."""

    device: str  # "cuda" or "cpu"
    dtype: torch.dtype  # autocast precision: bf16 or fp32
    preset: str


def best_dtype(device: str | torch.device) -> torch.dtype:
    """bf16 on a GPU that supports it, else fp32 (Chapter 11)."""
    on_gpu = torch.device(device).type == "cuda"
    return torch.bfloat16 if on_gpu and torch.cuda.is_bf16_supported() else torch.float32


def device_settings() -> DeviceSettings:
    """The device, autocast precision and preset this machine should use (Chapter 11)."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return DeviceSettings(device, best_dtype(device), default_preset_name())
