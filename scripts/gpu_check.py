"""A few hundred steps of each `colab` part and a few steps of each `paper` stage on one CUDA GPU (Chapter 11).

    bash scripts/gpu_check.sh        # about 10 minutes; prints tokens/s, peak memory and the loss going down

Stages train through `train.stages.stage_run` (the real step: bf16 autocast where supported, AdamW,
clipping) on synthetic tokens with a repeating pattern, so the loss must fall; the paper stages with
activation checkpointing. The codec and w2v-BERT train through the entry point on `--data sines`.
MuLan needs SynthCaps captions, so it is left to `scripts/train_all.sh`. Peak memory is set beside
`musiclm_mini.scale`'s estimate.
"""
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from musiclm_mini.config import get_preset
from musiclm_mini.hierarchy.token_cache import TokenGrid, TokenSet
from musiclm_mini.hierarchy.tokens import TokenLayout
from musiclm_mini.scale import sequence_length, stage_cost
from musiclm_mini.train.distributed import Runtime
from musiclm_mini.train.loop import fit
from musiclm_mini.train.scaling import Scaling
from musiclm_mini.train.stages import stage_run


def patterned_tokens(preset, n: int, seconds: float) -> TokenSet:
    """n clips whose tokens repeat with period 8 frames: learnable, so the loss must fall."""
    lay, grid = TokenLayout.from_preset(preset), TokenGrid.from_preset(preset)
    units = grid.crop_frames("coarse", seconds) // grid.acoustic_per_unit
    g = torch.Generator().manual_seed(0)
    period = lambda codes, *shape: torch.randint(0, codes, (*shape[:-1], 8), generator=g).repeat(  # noqa: E731
        *([1] * (len(shape) - 1)), shape[-1] // 8 + 1)[..., :shape[-1]]
    return TokenSet(torch.randint(0, lay.mulan_codes, (n, lay.mulan_levels), generator=g),
                    period(lay.semantic_codes, n, units * grid.semantic_per_unit),
                    period(lay.codec_codes, n, lay.codec_levels, units * grid.acoustic_per_unit))


def check_stage(preset_name: str, stage: str, steps: int, batch: int, checkpointing: bool, out: Path) -> None:
    p = get_preset(preset_name)
    p = p.replace(train=type(p.train)(batch_size=batch, learning_rate=3e-4, steps=steps, warmup_steps=min(10, steps),
                                      val_every=10 ** 9, checkpoint_every=10 ** 9))
    crop = getattr(p, f"{stage}_stage").crop_seconds
    torch.cuda.reset_peak_memory_stats()
    run, step, _ = stage_run(stage, p, patterned_tokens(p, 32, crop), None, out / f"{stage}-{preset_name}",
                             Runtime(torch.device("cuda", 0)), quiet=True,
                             scaling=Scaling(activation_checkpointing=checkpointing))
    losses = []
    start = time.perf_counter()
    fit(run, lambda s: losses.append(step(s)["loss"]) or {"loss": losses[-1]})
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    tokens = steps * batch * sequence_length(p, stage)
    est = stage_cost(p, stage).memory(batch, checkpointed=checkpointing)
    print(f"{preset_name:>6} {stage:>8}: {steps:4d} steps, {tokens / seconds:10,.0f} tokens/s, peak "
          f"{torch.cuda.max_memory_allocated() / 2**30:6.2f} GiB (estimate {est / 2**30:6.2f}), "
          f"loss {losses[0]:.3f} -> {losses[-1]:.3f} {'ok' if losses[-1] < losses[0] else 'NOT FALLING'}")


def check_entry_point(component: str, steps: int, out: Path) -> None:
    folder = out / component
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "musiclm_mini.train", component, "--preset", "colab", "--data", "sines",
                    "--steps", str(steps), "--val-every", str(steps), "--checkpoint-every", str(steps), "--quiet",
                    "--device", "cuda", "--out", str(folder)], check=True)
    lines = [json.loads(x) for x in (folder / "log.jsonl").read_text().splitlines()]
    losses = [x["loss"] for x in lines if "loss" in x]
    print(f" colab {component:>8}: {steps:4d} steps in {time.perf_counter() - start:5.0f} s, "
          f"loss {losses[0]:.3f} -> {losses[-1]:.3f} {'ok' if losses[-1] < losses[0] else 'NOT FALLING'}")


def main() -> None:
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA GPU on this machine; nothing to check. The GPU figures of Chapter 11 are "
              "estimates (musiclm_mini/scale.py).", file=sys.stderr)
        sys.exit(1)
    print(f"{torch.cuda.get_device_name()}, bf16 {'yes' if torch.cuda.is_bf16_supported() else 'no (fp32)'}")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        for stage in ("semantic", "coarse", "fine"):
            check_stage("colab", stage, 300, 16, False, out)
        for stage in ("semantic", "coarse", "fine"):
            check_stage("paper", stage, 8, 4, True, out)
        for component in ("codec", "w2v-bert"):
            check_entry_point(component, 200, out)


if __name__ == "__main__":
    main()
