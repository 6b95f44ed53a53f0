"""files.py: atomic writes and caches that several processes (pytest workers, notebooks) build at once."""
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from musiclm_mini.files import build_once, write_record

ROOT = Path(__file__).resolve().parents[1]

# Builds `cache` with build_once; its build logs the pid, waits for the file `go`, then writes random bytes
# (two builds could never agree). Prints what it reads back.
BUILDER = """
import os, sys, time
from pathlib import Path
from musiclm_mini.files import build_once
cache, log, go = map(Path, sys.argv[1:])

def write(tmp):
    with open(log, "a") as f:
        f.write(f"{os.getpid()}\\n")
    deadline = time.time() + 60
    while not go.exists() and time.time() < deadline:
        time.sleep(0.05)
    tmp.write_bytes(os.urandom(4096))

print(build_once(cache, write).read_bytes().hex())
"""


def test_two_processes_build_a_cache_once_and_read_the_same_bytes(tmp_path):
    cache, log, go = tmp_path / "cache" / "tokens.bin", tmp_path / "builds.log", tmp_path / "go"
    run = lambda: subprocess.Popen([sys.executable, "-c", BUILDER, str(cache), str(log), str(go)],  # noqa: E731
                                   cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = run()
    deadline = time.time() + 60
    while not log.exists() and time.time() < deadline:  # the first process is building, holding the lock
        time.sleep(0.05)
    assert log.exists() and not cache.exists()
    second = run()
    time.sleep(1.0)  # the second finds no cache and waits on the lock
    go.touch()
    outs = [p.communicate(timeout=120) for p in (first, second)]
    assert [p.returncode for p in (first, second)] == [0, 0], [err for _, err in outs]
    assert len(log.read_text().splitlines()) == 1, "built twice"
    assert outs[0][0] == outs[1][0] == cache.read_bytes().hex() + "\n"
    assert not [p.name for p in cache.parent.iterdir() if ".tmp-" in p.name]


def test_build_once_builds_only_what_is_missing_and_leaves_nothing_half_written(tmp_path):
    path, calls = tmp_path / "a.npy", []

    def write(tmp):
        calls.append(tmp)
        tmp.write_bytes(b"done")

    def fails(tmp):
        tmp.write_bytes(b"half")
        raise RuntimeError("killed mid-build")

    with pytest.raises(RuntimeError):
        build_once(path, fails)
    assert not path.exists() and [p.name for p in tmp_path.iterdir()] == [".a.npy.lock"]
    assert build_once(path, write) == path and path.read_bytes() == b"done"
    assert build_once(path, write) == path and len(calls) == 1  # there: not built again
    assert calls[0].parent == path.parent and calls[0] != path  # written beside it, then moved into place


def test_write_record_keeps_the_command_and_cpu_seconds(tmp_path):
    out = tmp_path / "figures.json"
    result = write_record(out, {"rows": [1, 2]}, "scripts/x.py", ["--clips", "8"])
    assert result["command"] == "python scripts/x.py --clips 8" and result["cpu_seconds"] >= 0
    assert json.loads(out.read_text()) == result
    assert write_record(None, {}, "scripts/x.py", [])["command"] == "python scripts/x.py "  # no file asked for
