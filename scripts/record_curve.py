"""Keep a training run's validation curve in the book when its weights are not shipped (Chapter 3).

    python scripts/record_curve.py runs/magnitude-codec-tiny --command "python -m musiclm_mini.train ..." \
        --json book/data/magnitude-codec-curve.json

A shipped checkpoint carries its own `log.jsonl`; a run that is still a candidate lives in `runs/`, which a fresh
clone does not have. This copies the run's validation rows (step, CPU minutes and figures) with the command that
trained it. `--after FILE` appends a second leg (e.g. a fine-tune started with --init) to a curve already recorded:
its CPU minutes continue from the first leg's last.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def validation_rows(run: Path) -> list[dict]:
    """[{"step": s, **figures}, ...] from `run`/log.jsonl, in order."""
    path = run / "log.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"no log.jsonl in {run}")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [{"step": r["step"], **r["validation"]} for r in rows if "validation" in r]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--command", required=True, help="the command that trained the run")
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--after", type=Path, help="a curve file this run continues (its legs are kept)")
    args = parser.parse_args(argv)
    try:
        rows = validation_rows(args.run)
        if not rows:
            raise ValueError(f"{args.run}/log.jsonl has no validation rows")
        legs = json.loads(args.after.read_text())["legs"] if args.after else []
    except (OSError, ValueError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    offset = legs[-1]["rows"][-1].get("cpu_minutes_total", 0.0) if legs else 0.0
    for r in rows:
        if "cpu_minutes" in r:
            r["cpu_minutes_total"] = offset + r["cpu_minutes"]
    legs.append({"run": args.run.name, "command": args.command, "rows": rows})
    args.json.write_text(json.dumps({"legs": legs}, indent=1) + "\n")
    last = rows[-1]
    print(f"{args.run.name}: {len(rows)} validation rows, last step {last['step']}: "
          + ", ".join(f"{k} {v:.3f}" for k, v in last.items() if isinstance(v, float)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
