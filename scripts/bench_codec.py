"""Real-time factors of the codecs' encoding and decoding on this machine's CPU (Chapter 3).

    python scripts/bench_codec.py [--preset tiny] [--components codec spectral-codec] [--seconds 10] [--threads 1]

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
from musiclm_mini.tokenizers.spectral_codec import SpectralCodec


def best_time(fn, repeats: int) -> float:
    fn()  # warm-up: first calls allocate and pick kernels
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def bench(name: str, preset: str, seconds: float, repeats: int) -> tuple[float, float]:
    """Best encode and decode times of component `name` (a codec) on `seconds` of noise."""
    from musiclm_mini.components import component

    try:
        codec, source = load(name, preset), "shipped weights"
    except CheckpointError:
        torch.manual_seed(0)
        model = SoundStream if name == "codec" else SpectralCodec
        codec, source = model(component(name).config_for(get_preset(preset))).eval(), "random weights (speed only)"
    cfg = codec.cfg
    wave = 0.1 * torch.randn(1, int(seconds * cfg.sample_rate))
    tokens = codec.encode(wave)
    with torch.inference_mode():
        t_enc = best_time(lambda: codec.encode(wave), repeats)
        t_dec = best_time(lambda: codec.decode(tokens), repeats)
    print(f"{type(codec).__name__} [{name}, {preset}, {source}]: {count_parameters(codec) / 1e6:.2f}M parameters, "
          f"hop {cfg.hop}, {cfg.frame_rate:g} Hz x {cfg.rvq.num_quantizers} levels")
    for what, t in [("encode", t_enc), ("decode", t_dec)]:
        rtf = t / seconds
        print(f"  {what}: {t * 1000:7.1f} ms  RTF {rtf:.3f}  ({1 / rtf:.1f}x faster than real time)")
    return t_enc, t_dec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--components", nargs="+", default=["codec", "spectral-codec"])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"CPU: {platform.processor() or platform.machine()}, {args.threads} thread(s), "
          f"{args.seconds:g} s of audio, best of {args.repeats}")
    times = {name: bench(name, args.preset, args.seconds, args.repeats) for name in args.components}
    if {"codec", "spectral-codec"} <= set(times):
        print(f"spectral codec vs SoundStream: encode {times['codec'][0] / times['spectral-codec'][0]:.1f}x faster, "
              f"decode {times['codec'][1] / times['spectral-codec'][1]:.1f}x faster")
    for name, (_, t_dec) in times.items():
        print(f"target: decode 10 s in under 1 s on one thread: {name} {'meets it' if t_dec * 10 / args.seconds < 1 else 'misses it'}")


if __name__ == "__main__":
    main()
