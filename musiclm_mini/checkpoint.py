"""Checkpoints: safetensors weights + a JSON config, written atomically, checked on load (Chapter 3 onwards).

Not in the paper: the book's file format.

A checkpoint is a directory:

    model.safetensors        the model's weights (what a later chapter loads), format and step in its header
    config.json              what the weights are (`components.py` says what it holds), readable
    train_state.safetensors  optional: optimizer moments, RNG states, step, ... to resume training

Nothing is pickled: tensors go to safetensors, everything else to JSON, so loading a checkpoint
can never run code. Each file is written atomically (`files.atomic_write`): a run killed mid-save
leaves the previous file intact. The model
and the training state both record their step; if they disagree (killed between the two
replacements) loading says so instead of resuming from a mixture.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from .errors import CheckpointError
from .files import atomic_write

FORMAT = "musiclm-mini/1"
MODEL_FILE, CONFIG_FILE, STATE_FILE = "model.safetensors", "config.json", "train_state.safetensors"
IGNORED = ("format", "fingerprint")  # written by `save_checkpoint` itself, not part of what a run asks for


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


def fingerprint(config: dict, model_state: dict[str, torch.Tensor]) -> str:
    """A short hash of a checkpoint's config and weights (names, dtypes, shapes, bytes) (Chapter 6).

    Written into config.json whenever weights are saved, so that what was trained on a component's
    tokens can later be checked by comparing strings (`components.check_sources`).
    """
    h = hashlib.sha256(json.dumps(_normalise({k: v for k, v in config.items() if k not in IGNORED}),
                                  sort_keys=True).encode())
    for name, t in sorted(model_state.items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def save_checkpoint(directory: str | os.PathLike, model_state: dict[str, torch.Tensor], config: dict,
                    train_state: dict | None = None) -> Path:
    """Write weights, config and (optionally) training state into `directory`, atomically per file (Chapter 3).

    `config` must be JSON-serialisable; `train_state` may nest dicts, lists, numbers and tensors.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    weights = {k: v.detach().cpu().contiguous().clone() for k, v in model_state.items()}
    config = {**config, "format": FORMAT, "fingerprint": fingerprint(config, weights)}
    config_json = json.dumps(_normalise(config), indent=2, sort_keys=True)
    step = None if train_state is None else train_state.get("step")
    meta = {"format": FORMAT, "step": json.dumps(step)}
    if train_state is not None:
        skeleton, tensors = flatten_state(train_state)
        state_meta = {"format": FORMAT, "skeleton": json.dumps(skeleton), "step": json.dumps(step)}
        atomic_write(directory / STATE_FILE, lambda p: save_file(tensors, str(p), metadata=state_meta))
    elif (directory / STATE_FILE).exists():
        (directory / STATE_FILE).unlink()  # a stale training state would not match these weights
    atomic_write(directory / MODEL_FILE, lambda p: save_file(weights, str(p), metadata=meta))
    atomic_write(directory / CONFIG_FILE, lambda p: p.write_text(config_json + "\n"))
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
    return tensors, meta


def read_config(directory: str | os.PathLike) -> dict:
    """A checkpoint's config.json, without reading its weights; CheckpointError if missing or corrupt."""
    path = Path(directory) / CONFIG_FILE
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {directory}: {CONFIG_FILE} is missing "
                              f"(train one with `python -m musiclm_mini.train ...`)")
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"corrupt {path}: {exc}") from exc
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise CheckpointError(f"{directory} is not a musiclm-mini checkpoint "
                              f"(format {config.get('format') if isinstance(config, dict) else None!r})")
    return config


def load_checkpoint(directory: str | os.PathLike, expected_config: dict | None = None,
                    with_train_state: bool = True) -> Checkpoint:
    """Read a checkpoint written by `save_checkpoint` (Chapter 3).

    Raises `CheckpointError` when the directory or weights are missing, a file is corrupt, the
    training state belongs to another step, or the stored config differs from `expected_config`
    (e.g. resuming a run with other settings), naming the differing fields.
    """
    directory = Path(directory)
    model_path = directory / MODEL_FILE
    if not model_path.exists():
        raise CheckpointError(f"no checkpoint at {directory}: {MODEL_FILE} is missing "
                              f"(train one with `python -m musiclm_mini.train ...`)")
    config = read_config(directory)
    model_state, meta = _read(model_path, "weights")
    try:
        step = json.loads(meta.get("step", "null"))
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"corrupt header in {model_path}: {exc}") from exc
    if expected_config is not None:
        diffs = config_differences({k: v for k, v in config.items() if k not in IGNORED},
                                   _normalise({k: v for k, v in expected_config.items() if k not in IGNORED}))
        if diffs:
            raise CheckpointError(f"checkpoint {directory} was made for another configuration "
                                  f"(preset {config.get('preset')!r}): " + "; ".join(diffs[:8]))
    train_state = None
    state_path = directory / STATE_FILE
    if with_train_state and state_path.exists():
        tensors, state_meta = _read(state_path, "training state")
        if state_meta.get("format") != FORMAT:
            raise CheckpointError(f"{state_path} is not a musiclm-mini training state")
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
