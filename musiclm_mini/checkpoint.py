"""Checkpoints: safetensors weights + a JSON config, written atomically, checked on load (Chapter 3 onwards).

A checkpoint is a directory:

    model.safetensors        the model's weights (what a later chapter loads), config in its header
    config.json              the same config, readable
    train_state.safetensors  optional: optimizer moments, RNG states, step, ... to resume training

Nothing is pickled: tensors go to safetensors, everything else to JSON, so loading a checkpoint
can never run code. Each file is written to a temporary name and moved into place with
`os.replace`, which is atomic: a run killed mid-save leaves the previous file intact. The model
and the training state both record their step; if they disagree (killed between the two
replacements) loading says so instead of resuming from a mixture.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from .errors import CheckpointError

FORMAT = "musiclm-mini/1"
MODEL_FILE, CONFIG_FILE, STATE_FILE = "model.safetensors", "config.json", "train_state.safetensors"


@dataclass
class Checkpoint:
    """What `load_checkpoint` returns (Chapter 3)."""

    model_state: dict[str, torch.Tensor]
    config: dict
    train_state: dict | None  # None for weights-only checkpoints (the shipped ones)
    directory: Path


# ---------------------------------------------------------------------------------------------
# Nested training state <-> (JSON skeleton, flat tensors)
# ---------------------------------------------------------------------------------------------
def flatten_state(obj: Any, prefix: str = "", tensors: dict | None = None) -> tuple[Any, dict[str, torch.Tensor]]:
    """Split nested dicts/lists with tensor leaves into a JSON skeleton and named tensors (Chapter 3).

    An optimizer's `state_dict()` has integer keys; they survive as {"__items__": [[key, value], ...]}.
    """
    tensors = {} if tensors is None else tensors
    if torch.is_tensor(obj):
        name = prefix.strip("/") or "tensor"
        tensors[name] = obj.detach().cpu().contiguous().clone()
        return {"__tensor__": name}, tensors
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {k: flatten_state(v, f"{prefix}/{k}", tensors)[0] for k, v in obj.items()}, tensors
        items = [[k, flatten_state(v, f"{prefix}/{k}", tensors)[0]] for k, v in obj.items()]
        return {"__items__": items}, tensors
    if isinstance(obj, (list, tuple)):
        return [flatten_state(v, f"{prefix}/{i}", tensors)[0] for i, v in enumerate(obj)], tensors
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj, tensors
    raise TypeError(f"cannot store {type(obj).__name__} at {prefix or '/'} in a checkpoint (no pickles)")


def unflatten_state(skeleton: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of `flatten_state` (Chapter 3)."""
    if isinstance(skeleton, dict):
        if set(skeleton) == {"__tensor__"}:
            return tensors[skeleton["__tensor__"]]
        if set(skeleton) == {"__items__"}:
            return {k: unflatten_state(v, tensors) for k, v in skeleton["__items__"]}
        return {k: unflatten_state(v, tensors) for k, v in skeleton.items()}
    if isinstance(skeleton, list):
        return [unflatten_state(v, tensors) for v in skeleton]
    return skeleton


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------
def _normalise(config: dict) -> dict:
    return json.loads(json.dumps(config))  # tuples -> lists, keys -> str: what a reload gives


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic on POSIX and Windows
    finally:
        if tmp.exists():
            tmp.unlink()


def save_checkpoint(directory: str | os.PathLike, model_state: dict[str, torch.Tensor], config: dict,
                    train_state: dict | None = None) -> Path:
    """Write weights, config and (optionally) training state into `directory`, atomically per file (Chapter 3).

    `config` must be JSON-serialisable; `train_state` may nest dicts, lists, numbers and tensors.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config_json = json.dumps(_normalise(config), indent=2, sort_keys=True)
    step = None if train_state is None else train_state.get("step")
    meta = {"format": FORMAT, "config": config_json, "step": json.dumps(step)}
    if train_state is not None:
        skeleton, tensors = flatten_state(train_state)
        state_meta = {"format": FORMAT, "skeleton": json.dumps(skeleton), "step": json.dumps(step)}
        _atomic_write(directory / STATE_FILE, lambda p: save_file(tensors, str(p), metadata=state_meta))
    elif (directory / STATE_FILE).exists():
        (directory / STATE_FILE).unlink()  # a stale training state would not match these weights
    weights = {k: v.detach().cpu().contiguous().clone() for k, v in model_state.items()}
    _atomic_write(directory / MODEL_FILE, lambda p: save_file(weights, str(p), metadata=meta))
    _atomic_write(directory / CONFIG_FILE, lambda p: p.write_text(config_json + "\n"))
    return directory


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------
def config_differences(stored: Any, expected: Any, path: str = "") -> list[str]:
    """Human-readable list of the fields where two configs differ (Chapter 3)."""
    if isinstance(stored, dict) and isinstance(expected, dict):
        out = []
        for key in sorted(set(stored) | set(expected)):
            where = f"{path}.{key}" if path else key
            if key not in stored:
                out.append(f"{where} (missing in the checkpoint)")
            elif key not in expected:
                out.append(f"{where} (only in the checkpoint)")
            else:
                out += config_differences(stored[key], expected[key], where)
        return out
    return [] if stored == expected else [f"{path or 'config'}: checkpoint has {stored!r}, expected {expected!r}"]


def _read(path: Path, what: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        tensors = load_file(str(path))
    except Exception as exc:  # truncated, not safetensors, unreadable: all mean the same to a user
        raise CheckpointError(f"corrupt {what} {path}: {type(exc).__name__}: {exc}") from exc
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a musiclm-mini checkpoint (format {meta.get('format')!r})")
    return tensors, meta


def load_checkpoint(directory: str | os.PathLike, expected_config: dict | None = None,
                    with_train_state: bool = True) -> Checkpoint:
    """Read a checkpoint written by `save_checkpoint` (Chapter 3).

    Raises `CheckpointError` when the directory or weights are missing, a file is corrupt, the
    training state belongs to another step, or the stored config differs from `expected_config`
    (e.g. weights trained for the `tiny` preset loaded into `colab`), naming the differing fields.
    """
    directory = Path(directory)
    model_path = directory / MODEL_FILE
    if not model_path.exists():
        raise CheckpointError(f"no checkpoint at {directory}: {MODEL_FILE} is missing "
                              f"(train one with `python -m musiclm_mini.train ...`)")
    model_state, meta = _read(model_path, "weights")
    try:
        config = json.loads(meta["config"])
        step = json.loads(meta.get("step", "null"))
    except (KeyError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"corrupt config in {model_path}: {exc}") from exc
    if expected_config is not None:
        diffs = config_differences(config, _normalise(expected_config))
        if diffs:
            raise CheckpointError(f"checkpoint {directory} was made for another configuration "
                                  f"(preset {config.get('preset')!r}): " + "; ".join(diffs[:8]))
    train_state = None
    state_path = directory / STATE_FILE
    if with_train_state and state_path.exists():
        tensors, state_meta = _read(state_path, "training state")
        state_step = json.loads(state_meta.get("step", "null"))
        if state_step != step:
            raise CheckpointError(f"{directory}: weights are from step {step} but the training state from step "
                                  f"{state_step} (a save was interrupted); delete the directory to start again")
        train_state = unflatten_state(json.loads(state_meta["skeleton"]), tensors)
    return Checkpoint(model_state, config, train_state, directory)


def export_weights(source: str | os.PathLike, destination: str | os.PathLike,
                   dtype: torch.dtype | None = torch.float16) -> Path:
    """Copy a training checkpoint's weights and config, without training state, to ship (Chapter 3).

    Floating-point tensors are stored as `dtype` (half precision by default: half the megabytes;
    loading casts them back into the model's float32 parameters).
    """
    ckpt = load_checkpoint(source, with_train_state=False)
    state = {k: v.to(dtype) if dtype is not None and v.is_floating_point() else v
             for k, v in ckpt.model_state.items()}
    return save_checkpoint(destination, state, ckpt.config, None)
