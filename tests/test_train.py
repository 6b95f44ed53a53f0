"""The shared training entry point and checkpoints (Chapter 3): exact resume, DDP, clear errors."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from musiclm_mini.checkpoint import (STATE_FILE, export_weights, flatten_state, load_checkpoint, save_checkpoint,
                                     unflatten_state)
from musiclm_mini.config import get_preset
from musiclm_mini.errors import CheckpointError
from musiclm_mini.train import codec as train_codec
from musiclm_mini.train.__main__ import main, override
from musiclm_mini.train.loop import batch_indices, learning_rate

torch.set_num_threads(1)
ROOT = Path(__file__).parents[1]
# A codec small enough to train a few steps in a second, with the discriminator on from step 1.
SMALL = ["--preset", "tiny", "--data", "sines", "--batch-size", "2", "--quiet", "--threads", "1",
         "--set", "codec.strides=[2,4]", "--set", "codec.channels=4", "--set", "codec.embedding_dim=16",
         "--set", "codec.rvq.dim=16", "--set", "codec.rvq.codebook_size=16", "--set", "codec.rvq.num_quantizers=3",
         "--set", "codec.disc_channels=4", "--set", "codec.stft_window=128", "--set", "codec.spectral_windows=[64,128]",
         "--set", "codec.crop_seconds=0.02", "--set", "codec.adversarial_start=1", "--set", "train.warmup_steps=2"]


def fails(argv, message, capsys) -> None:
    """The training command refuses `argv` with one `error:` line containing `message`, exit status 2."""
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.startswith("error: ") and message in err and err.count("\n") == 1, err


def weights(directory: Path) -> dict:
    return {**load_file(str(directory / "model.safetensors")), **load_file(str(directory / STATE_FILE))}


@pytest.mark.slow
def test_resume_after_interruption_gives_the_same_weights(tmp_path, monkeypatch):
    main(["codec", *SMALL, "--steps", "6", "--checkpoint-every", "2", "--val-every", "3", "--out", str(tmp_path / "a")])

    real_step = train_codec.codec_train_step

    def crash_at_step_5(*args, **kwargs):
        if args[6] == 5:  # `step`, after the checkpoint of step 4
            raise KeyboardInterrupt
        return real_step(*args, **kwargs)

    monkeypatch.setattr(train_codec, "codec_train_step", crash_at_step_5)
    with pytest.raises(KeyboardInterrupt):
        main(["codec", *SMALL, "--steps", "6", "--checkpoint-every", "2", "--val-every", "3", "--out", str(tmp_path / "b")])
    assert load_checkpoint(tmp_path / "b").train_state["step"] == 4
    monkeypatch.setattr(train_codec, "codec_train_step", real_step)
    main(["codec", *SMALL, "--steps", "6", "--checkpoint-every", "2", "--val-every", "3", "--out", str(tmp_path / "b"),
          "--resume"])

    a, b = weights(tmp_path / "a"), weights(tmp_path / "b")
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert different == [], f"resumed run differs in {different[:5]}"
    # The log holds each step once, validation included.
    steps = [line for line in (tmp_path / "b" / "log.jsonl").read_text().splitlines() if '"validation"' in line]
    assert len(steps) == 2
    # And training changed the weights at all (otherwise equality above would prove nothing).
    main(["codec", *SMALL, "--steps", "1", "--out", str(tmp_path / "c")])
    c = load_file(str(tmp_path / "c" / "model.safetensors"))
    assert any(not torch.equal(a[k], c[k]) for k in c if c[k].is_floating_point())


def test_existing_checkpoint_needs_resume_and_the_same_config(tmp_path, capsys):
    main(["codec", *SMALL, "--steps", "1", "--out", str(tmp_path)])
    fails(["codec", *SMALL, "--steps", "2", "--out", str(tmp_path)], "--resume", capsys)
    fails(["codec", *SMALL, "--set", "codec.channels=8", "--steps", "2", "--out", str(tmp_path), "--resume"],
          "config.channels: checkpoint has 4, expected 8", capsys)


def test_stop_at_pauses_a_run_that_resumes_exactly(tmp_path):
    common = [*SMALL, "--steps", "4", "--checkpoint-every", "100", "--val-every", "100"]
    main(["codec", *common, "--out", str(tmp_path / "a")])
    main(["codec", *common, "--out", str(tmp_path / "b"), "--stop-at", "3"])
    assert load_checkpoint(tmp_path / "b").train_state["step"] == 3  # checkpointed at the pause
    main(["codec", *common, "--out", str(tmp_path / "b"), "--resume"])
    a, b = weights(tmp_path / "a"), weights(tmp_path / "b")
    assert all(torch.equal(a[k], b[k]) for k in a)  # same schedule, same weights


def test_init_warm_starts_a_fresh_run_from_other_weights(tmp_path, capsys):
    main(["codec", *SMALL, "--steps", "2", "--lr", "0.05", "--out", str(tmp_path / "a")])  # far from the seed's start
    main(["codec", *SMALL, "--steps", "1", "--lr", "1e-6", "--out", str(tmp_path / "b"), "--init", str(tmp_path / "a")])
    main(["codec", *SMALL, "--steps", "1", "--lr", "1e-6", "--out", str(tmp_path / "c")])
    a, b, c = (load_file(str(tmp_path / d / "model.safetensors")) for d in "abc")
    conv = next(k for k in a if k.endswith("weight") and a[k].dim() == 3)  # a convolution: no EMA, only AdamW
    assert torch.allclose(a[conv], b[conv], atol=1e-5)  # one tiny step from a's weights
    assert not torch.allclose(a[conv], c[conv], atol=1e-3)  # a fresh run starts elsewhere
    fails(["codec", *SMALL, "--set", "codec.channels=8", "--steps", "1", "--out", str(tmp_path / "d"),
           "--init", str(tmp_path / "a")], "config.channels: checkpoint has 4, expected 8", capsys)


@pytest.mark.slow
def test_two_process_ddp_on_cpu(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           "-m", "musiclm_mini.train", "codec", *SMALL, "--steps", "2", "--out", str(tmp_path / "ddp")]
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    ckpt = load_checkpoint(tmp_path / "ddp")
    assert ckpt.train_state["step"] == 2 and ckpt.config["preset"] == "tiny"


# ---------------------------------------------------------------------------------------------
# Pieces
# ---------------------------------------------------------------------------------------------
def test_batches_shard_each_epoch_across_ranks():
    seen = []
    for step in range(3):  # 3 steps x 2 ranks x 2 items = 12 = one epoch of 12 items
        shards = [batch_indices(12, 2, step, seed=7, rank=r, world_size=2) for r in range(2)]
        assert not set(shards[0]) & set(shards[1])
        seen += shards[0] + shards[1]
    assert sorted(seen) == list(range(12))
    assert batch_indices(12, 2, 5, seed=7) == batch_indices(12, 2, 5, seed=7)
    assert batch_indices(12, 4, 0, seed=7) != batch_indices(12, 4, 0, seed=8)


def test_learning_rate_schedule():
    assert learning_rate(0, 1.0, 10, 100) == pytest.approx(0.1)
    assert learning_rate(9, 1.0, 10, 100) == pytest.approx(1.0)
    assert learning_rate(100, 1.0, 10, 100) == pytest.approx(0.1)


def test_override_nested_fields():
    p = override(get_preset("tiny"), "codec.rvq.codebook_size", 64)
    assert p.codec.rvq.codebook_size == 64 and p.codec.channels == get_preset("tiny").codec.channels
    assert override(p, "codec.strides", [2, 2]).codec.strides == (2, 2)
    with pytest.raises(ValueError, match="no field 'chanels'"):
        override(p, "codec.chanels", 3)


def test_flatten_state_round_trip_keeps_integer_keys():
    state = {"step": 3, "opt": {"state": {0: {"m": torch.ones(2)}, 1: {"m": torch.zeros(1)}},
                                "param_groups": [{"lr": 0.1, "betas": (0.5, 0.9), "params": [0, 1]}]}}
    skeleton, tensors = flatten_state(state)
    back = unflatten_state(skeleton, tensors)
    assert set(back["opt"]["state"]) == {0, 1} and torch.equal(back["opt"]["state"][0]["m"], torch.ones(2))
    with pytest.raises(TypeError, match="no pickles"):
        flatten_state({"bad": object()})


def test_checkpoint_errors(tmp_path):
    with pytest.raises(CheckpointError, match="missing"):
        load_checkpoint(tmp_path / "none")
    save_checkpoint(tmp_path / "ok", {"w": torch.ones(3)}, {"preset": "tiny", "x": 1}, {"step": 5, "m": torch.zeros(2)})
    assert not [p for p in (tmp_path / "ok").iterdir() if ".tmp" in p.name]  # no temporary files left
    ck = load_checkpoint(tmp_path / "ok", {"preset": "tiny", "x": 1})
    assert ck.train_state["step"] == 5 and torch.equal(ck.model_state["w"], torch.ones(3))
    with pytest.raises(CheckpointError, match=r"x: checkpoint has 1, expected 2"):
        load_checkpoint(tmp_path / "ok", {"preset": "tiny", "x": 2})
    # A save killed between its two files: weights and training state disagree.
    save_checkpoint(tmp_path / "mixed", {"w": torch.ones(3)}, {"x": 1}, {"step": 5})
    (tmp_path / "mixed" / STATE_FILE).write_bytes((tmp_path / "ok" / STATE_FILE).read_bytes())
    save_checkpoint(tmp_path / "other", {"w": torch.ones(3)}, {"x": 1}, {"step": 6})
    (tmp_path / "mixed" / "model.safetensors").write_bytes((tmp_path / "other" / "model.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match="interrupted"):
        load_checkpoint(tmp_path / "mixed")
    # A truncated file.
    data = (tmp_path / "ok" / "model.safetensors").read_bytes()
    (tmp_path / "ok" / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(tmp_path / "ok")


def test_export_weights_drops_training_state(tmp_path):
    save_checkpoint(tmp_path / "run", {"w": torch.full((3,), 1.5), "n": torch.tensor(2)}, {"x": 1}, {"step": 2})
    export_weights(tmp_path / "run", tmp_path / "ship")
    ck = load_checkpoint(tmp_path / "ship", {"x": 1})
    assert ck.train_state is None and not (tmp_path / "ship" / STATE_FILE).exists()
    assert ck.model_state["w"].dtype == torch.float16 and ck.model_state["n"].dtype == torch.int64


def test_resume_refuses_a_changed_data_set(tmp_path, capsys):
    main(["codec", *SMALL, "--steps", "1", "--out", str(tmp_path)])
    record = (tmp_path / "data.json").read_text()
    (tmp_path / "data.json").write_text(record.replace('"sines"', '"other"'))
    fails(["codec", *SMALL, "--steps", "2", "--out", str(tmp_path), "--resume"], "another version of the data", capsys)
