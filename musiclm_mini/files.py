"""Writing files so that a killed process never leaves half of one behind (all chapters: checkpoints, caches, data)."""
from __future__ import annotations

import json
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp)` on a temporary name beside `path`, then move it into place with `os.replace`.

    `os.replace` is atomic on POSIX and Windows: readers see the old file or the new one, never a
    mixture, and a run killed mid-write leaves the previous file intact.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


@contextmanager
def exclusive_lock(path: str | os.PathLike):
    """Hold an exclusive lock on `path` (POSIX), so two processes (notebooks) never build one thing at once."""
    try:
        import fcntl
    except ImportError:  # Windows: no lock, atomic renames still protect readers
        yield
        return
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build_once(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """`path`, made first by `write(tmp)` (as `atomic_write`) if missing: a cache several processes may want at once.

    The first process takes the lock `.<name>.lock` beside `path` and builds; the others (a notebook and a
    test worker, say) wait on the lock, then find the finished file and build nothing.
    """
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        with exclusive_lock(path.with_name(f".{path.name}.lock")):
            if not path.exists():  # nobody finished it while we waited
                atomic_write(path, write)
    return path


def write_record(path: str | os.PathLike | None, result: dict, script: str, argv: list[str] | None) -> dict:
    """A measuring script's figures with what made them (Chapters 3-10): `result` gets "command" (the script and its
    arguments, `sys.argv` when `argv` is None) and "cpu_seconds" (this process so far), and is written atomically
    as JSON to `path` when one is given. Returns `result`."""
    result["command"] = f"python {script} " + " ".join(sys.argv[1:] if argv is None else argv)
    result["cpu_seconds"] = round(time.process_time(), 1)
    if path is not None:
        atomic_write(path, lambda tmp: tmp.write_text(json.dumps(result, indent=1) + "\n"))
    return result
