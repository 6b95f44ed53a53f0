"""The grader every chapter's `check_...` function shares (all chapters).

A check runs the reader's function on a few named cases and prints one line per case, `ok` or
`FAIL` with a hint, then a summary. It never raises: a reader's exception is a failed case, so
the notebook keeps running (and nbval keeps passing) while the exercise is unsolved.
"""
from __future__ import annotations

import traceback
from typing import Any, Callable, Iterable

import torch


def _copy(value: Any) -> Any:
    return value.clone() if torch.is_tensor(value) else value


def grade(cases: Iterable[tuple], fn: Callable, compare: Callable[..., str | None], verbose: bool = True) -> bool:
    """Run `fn(*inputs)` on every `(name, *inputs)` case; `compare(got, *inputs)` returns None when
    the answer is right, else what is wrong. Prints a line per case; returns True when all pass.
    """
    say = print if verbose else (lambda *a, **k: None)
    passed = True
    for name, *inputs in cases:
        try:
            got = fn(*map(_copy, inputs))  # the reader may modify their inputs in place
            problem = compare(got, *inputs)
        except NotImplementedError:
            problem = "not implemented yet (the function raised NotImplementedError)"
        except Exception as err:  # the reader's bug, reported rather than raised
            problem = f"raised {type(err).__name__}: {err}"
            if verbose:
                traceback.print_exc(limit=-1)
        if problem:
            say(f"FAIL  {name}: {problem}")
            passed = False
        else:
            say(f"ok    {name}")
    say("All checks passed." if passed else "Some checks failed: read the messages above.")
    return passed
