"""Benchmark SynthCaps generation: clips per second, total time and size on disk (Chapter 1).

    .venv/bin/python scripts/bench_synthcaps.py                  # the tiny preset's 320 clips, 2 workers
    .venv/bin/python scripts/bench_synthcaps.py --num-clips 40 --workers 1

Generates into a temporary folder (deleted afterwards unless --keep), so the real data set under
data/ is left alone. Also times the parts of the pipeline on a few scores, one process.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from musiclm_mini.config import get_preset  # noqa: E402
from musiclm_mini.data import render, scores, synthcaps  # noqa: E402


def folder_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def stage_times(data_config, n_scores: int = 4) -> None:
    """Seconds per parse, per render, per caption, measured inline on a few scores."""
    import numpy as np

    parse = render_s = caption = 0.0
    clips = 0
    for i, sid in enumerate(scores.list_sources(data_config.seed, n_scores)):
        t = time.perf_counter()
        score = scores.parse_score(sid)
        parse += time.perf_counter() - t
        for j in range(data_config.variants_per_score):
            rng = np.random.default_rng([data_config.seed, i, j])
            t = time.perf_counter()
            variant = synthcaps.sample_variant(score, data_config.clip_seconds, rng)
            parts = render.arrange(score, variant, data_config.clip_seconds, rng)
            render.render(parts, data_config.sample_rate, int(data_config.clip_seconds * data_config.sample_rate), 0.5)
            render_s += time.perf_counter() - t
            t = time.perf_counter()
            synthcaps.clip_labels(score, variant, "x", rng)
            caption += time.perf_counter() - t
            clips += 1
    print(f"per score: parse {parse / n_scores:.3f} s | per clip: arrange+render {render_s / clips:.3f} s, "
          f"labels+caption {caption / clips * 1000:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--num-clips", type=int, default=None, help="default: the preset's num_clips")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--keep", action="store_true", help="keep the generated folder")
    parser.add_argument("--stages", action="store_true", help="also time parse/render/caption separately")
    args = parser.parse_args()
    cfg = get_preset(args.preset).data
    if args.num_clips:
        cfg = dataclasses.replace(cfg, num_clips=args.num_clips)
    if args.stages:
        stage_times(cfg)
    out = Path(tempfile.mkdtemp(prefix="synthcaps-bench-", dir=os.environ.get("TMPDIR")))
    start = time.perf_counter()
    synthcaps.generate_synthcaps(cfg, out / "ds", num_workers=args.workers)
    took = time.perf_counter() - start
    size = folder_size(out / "ds")
    print(f"preset={args.preset} clips={cfg.num_clips} workers={args.workers} cpus={os.cpu_count()}")
    print(f"total {took:.1f} s  ->  {cfg.num_clips / took:.2f} clips/s  ({size / 2**20:.0f} MiB on disk)")
    if args.keep:
        print(f"kept {out / 'ds'}")
    else:
        import shutil

        shutil.rmtree(out)


if __name__ == "__main__":
    main()
