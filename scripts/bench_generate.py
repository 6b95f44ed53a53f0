"""Real-time factor of text-to-music on CPU, with the time of each stage (Chapters 6 and 7).

Generates `--seconds` of audio from a caption with the `tiny` preset and prints the wall time of
MuLan (text -> M_T), the semantic, coarse and fine stages and the SoundStream decoder, then the
real-time factor (wall seconds per second of audio; below 1 is faster than real time). It uses the
shipped checkpoints when they are all there; otherwise randomly initialised models of the same
sizes (speed does not depend on what a model learnt) and a MuLan stand-in, and says so.

    python scripts/bench_generate.py                     # 10 s of audio, 1 CPU thread, median of 3
    python scripts/bench_generate.py --seconds 30 --threads 2 --repeats 1
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from musiclm_mini.config import get_preset
from musiclm_mini.errors import CheckpointError
from musiclm_mini.hierarchy.stage_models import build_stage_model, count_parameters, stage_model_config
from musiclm_mini.hierarchy.tokens import STAGE_NAMES
from musiclm_mini.musiclm import MusicLM

CAPTION = "a calming violin melody backed by a distorted guitar riff"


class HashMuLan:
    """Stand-in for MuLan when its checkpoint is missing: text -> 12 tokens from a hash (no cost)."""

    def __init__(self, cfg):
        self.cfg = cfg

    def tokens_from_text(self, texts):
        g = torch.Generator().manual_seed(sum(map(ord, "".join(texts))))
        return torch.randint(0, self.cfg.rvq.codebook_size, (len(texts), self.cfg.rvq.num_quantizers), generator=g)


def build_model(preset_name: str) -> tuple[MusicLM, str]:
    """The shipped pipeline, or random weights of the same sizes; and a note saying which."""
    try:
        return MusicLM.from_pretrained(preset_name), "shipped checkpoints"
    except CheckpointError as exc:
        note = f"random weights (shipped checkpoints unavailable: {exc})"
    from musiclm_mini.tokenizers.soundstream import SoundStream

    preset = get_preset(preset_name)
    torch.manual_seed(0)
    stages = {s: build_stage_model(stage_model_config(s, preset)).eval() for s in STAGE_NAMES}
    try:
        from musiclm_mini.components import load

        mulan = load("mulan", preset_name)  # the real text tower, so its time counts
    except CheckpointError:
        mulan, note = HashMuLan(preset.mulan), note + "; MuLan replaced by a hash (its time is not measured)"
    return MusicLM(preset, SoundStream(preset.codec).eval(), mulan, stages), note


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds of audio to generate")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs (the median is printed)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    model, note = build_model(args.preset)
    sizes = ", ".join(f"{s} {count_parameters(model.transformers[s]) / 1e6:.1f}M" for s in STAGE_NAMES)
    print(f"preset {args.preset}: {note}")
    guidance = model.preset.coarse_stage.guidance
    print(f"stage parameters: {sizes}; CPU, {args.threads} thread(s); classifier-free guidance {guidance:g} "
          f"({'semantic and coarse stages run twice per step' if guidance != 1 else 'none'})")
    model.generate(CAPTION, 1.0, seed=0)  # warm-up: one-off allocations and lazy imports

    runs = []
    for seed in range(args.repeats):
        start, cpu = time.perf_counter(), time.process_time()
        wave = model.generate(CAPTION, args.seconds, seed=seed)
        runs.append({"total": time.perf_counter() - start, "cpu": time.process_time() - cpu, **model.timings})
    assert wave.shape[-1] == round(args.seconds * model.sample_rate)
    median = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    print(f"text -> {args.seconds:g} s of audio, median of {args.repeats} run(s):")
    for part in ("mulan", *STAGE_NAMES, "decode", "total"):
        print(f"  {part:<9}{median[part]:7.2f} s")
    print(f"  (CPU time of the process: {median['cpu']:.2f} s; wall >> CPU means other processes shared the cores)")
    rtf = median["total"] / args.seconds
    print(f"real-time factor: {rtf:.2f} (wall seconds per second of audio; < 1 is faster than real time)")


if __name__ == "__main__":
    main()
