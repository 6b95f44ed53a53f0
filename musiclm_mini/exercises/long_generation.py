"""Exercise of Chapter 9: the window arithmetic of long generation (paper Sec. 6).

The reader writes `fn(total, window, prefix) -> [(start, given, end), ...]`: the windows that generate
`total` frames with a model trained on `window` frames, each window after the first prompted with the
last `prefix` frames before it (frames [start, given) are the prompt, [given, end) are new). The last
window is aligned to the end, so that it too is `window` frames long (its prompt is then longer).
`check_windows(fn)` grades it against `reference_windows`, a closed form written independently of the
package's loop (`musiclm_mini.hierarchy.sampling.sliding_windows`); `tests/test_long_generation.py`
checks that the two agree.
"""
from __future__ import annotations

import math
from typing import Callable

from .grading import grade


def reference_windows(total: int, window: int, prefix: int) -> list[tuple[int, int, int]]:
    """The answer, in closed form (Chapter 9): 1 + ceil((total - window) / stride) windows, stride = window - prefix.

    Window k >= 1 adds frames [window + (k - 1) * stride, ...) up to `total`; the last starts at total - window.
    """
    if total <= window:
        return [(0, 0, total)]
    stride = window - prefix
    n = 1 + math.ceil((total - window) / stride)
    out = [(0, 0, window)]
    for k in range(1, n):
        given = window + (k - 1) * stride
        end = min(given + stride, total)
        start = total - window if k == n - 1 else given - prefix
        out.append((start, given, end))
    return out


def _cases() -> list[tuple[str, int, int, int]]:
    return [
        ("the paper's five minutes: 30 s windows, 15 s prefix (in seconds)", 300, 30, 15),
        ("tiny's 10 s in semantic frames: 75-frame windows, 37-frame prefix", 125, 75, 37),
        ("shorter than one window", 40, 75, 37),
        ("exactly one window", 75, 75, 37),
        ("a last window that must be end-aligned", 10, 4, 1),
        ("no prefix: independent chunks", 12, 5, 0),
    ]


def check_windows(fn: Callable[[int, int, int], list], verbose: bool = True) -> bool:
    """Grade a reader's window plan; print what passed and what did not (Chapter 9). Never raises."""
    def compare(got, total: int, window: int, prefix: int) -> str | None:
        want = reference_windows(total, window, prefix)
        got = [tuple(int(x) for x in w) for w in got]
        if len(got) != len(want):
            return f"expected {len(want)} windows, got {len(got)}"
        for k, (g, w) in enumerate(zip(got, want)):
            if g != w:
                hint = " (the last window should end at `total` and be a full window long)" if k == len(want) - 1 else ""
                return f"window {k}: expected (start, given, end) = {w}, got {g}{hint}"
        return None

    return grade(_cases(), fn, compare, verbose)
