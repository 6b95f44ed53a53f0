"""Run by tests/test_scaling.py under `torchrun --nproc_per_node 2` (Gloo, CPU): one coarse stage trained
with DDP, and with FSDP (micro-batches, activation checkpointing, paused and resumed), on the micro preset.

    python -m torch.distributed.run --nproc_per_node 2 tests/parallel_worker.py OUT_DIR
"""
import sys
from pathlib import Path

import torch

from conftest import micro_preset
from musiclm_mini.train.distributed import init_runtime, shutdown_runtime
from musiclm_mini.train.loop import fit
from musiclm_mini.train.scaling import Scaling
from musiclm_mini.train.stages import stage_run
from test_scaling import CLIP_SECONDS, PER_RANK_BATCH, STEPS, clips

torch.set_num_threads(1)


def main(out: Path) -> None:
    runtime = init_runtime("cpu")
    p = micro_preset(batch_size=PER_RANK_BATCH, steps=STEPS, val_every=2, checkpoint_every=100)
    train, val = clips(p, 8), clips(p, 4, seed=1)
    runs = {"ddp": [(Scaling("ddp"), None)],
            "fsdp": [(Scaling("fsdp", accumulate=2, activation_checkpointing=True), STEPS - 1),  # pause ...
                     (Scaling("fsdp", accumulate=2, activation_checkpointing=True), None)]}  # ... and resume
    for name, legs in runs.items():
        for i, (scaling, stop_at) in enumerate(legs):
            run, step, validate = stage_run("coarse", p, train, val, out / name, runtime, {"codec": "x"}, True,
                                            scaling=scaling)
            fit(run, step, validate, resume=i > 0, stop_at=stop_at)
    shutdown_runtime(runtime)


if __name__ == "__main__":
    assert CLIP_SECONDS  # every crop is the whole clip: ranks and a single process see the same examples
    main(Path(sys.argv[1]))
