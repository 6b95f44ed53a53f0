"""Real-time factors of SoundStream encoding and decoding on this machine's CPU (Chapter 3).

    python scripts/bench_codec.py [--preset tiny] [--seconds 10] [--threads 1] [--repeats 3]

Real-time factor (RTF) = processing time / audio duration: below 1 is faster than real time.
Uses the shipped weights for `tiny` (speed does not depend on the weights, so other presets use a
freshly initialised codec of the right size).
"""
from __future__ import annotations

import argparse
import platform
import time

import torch

from musiclm_mini.components import load
from musiclm_mini.config import get_preset
from musiclm_mini.errors import CheckpointError
from musiclm_mini.tokenizers.soundstream import SoundStream, count_parameters


def best_time(fn, repeats: int) -> float:
    fn()  # warm-up: first calls allocate and pick kernels
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = get_preset(args.preset).codec
    try:
        codec, source = load("codec", args.preset), "shipped weights"
    except CheckpointError:
        torch.manual_seed(0)
        codec, source = SoundStream(cfg).eval(), "random weights (speed only)"
    wave = 0.1 * torch.randn(1, int(args.seconds * cfg.sample_rate))
    tokens = codec.encode(wave)
    with torch.inference_mode():
        t_enc = best_time(lambda: codec.encode(wave), args.repeats)
        t_dec = best_time(lambda: codec.decode(tokens), args.repeats)
    print(f"SoundStream [{args.preset}, {source}]: {count_parameters(codec) / 1e6:.2f}M parameters, "
          f"hop {cfg.hop}, {cfg.frame_rate:g} Hz x {cfg.rvq.num_quantizers} levels = "
          f"{cfg.tokens_per_second:g} tokens/s, {cfg.bitrate / 1000:g} kbps")
    print(f"CPU: {platform.processor() or platform.machine()}, {args.threads} thread(s), "
          f"{args.seconds:g} s of audio, best of {args.repeats}")
    for name, t in [("encode", t_enc), ("decode", t_dec)]:
        rtf = t / args.seconds
        print(f"  {name}: {t * 1000:7.1f} ms  RTF {rtf:.3f}  ({1 / rtf:.1f}x faster than real time)")


if __name__ == "__main__":
    main()
