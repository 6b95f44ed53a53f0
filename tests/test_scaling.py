"""Chapter 11's training engine: DDP and FSDP match one process, micro-batches match one batch, bf16 where supported."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import MICRO, micro_preset
from musiclm_mini.checkpoint import load_checkpoint
from musiclm_mini.hierarchy.token_cache import TokenSet
from musiclm_mini.hierarchy.tokens import TokenLayout
from musiclm_mini.hierarchy.transformer import Transformer
from musiclm_mini.train.distributed import Runtime
from musiclm_mini.train.loop import fit
from musiclm_mini.train.scaling import (Scaling, accumulate_gradients, autocast_dtype, checkpoint_blocks,
                                        micro_batches)
from musiclm_mini.train.stages import stage_run

torch.set_num_threads(1)
ROOT = Path(__file__).parents[1]
CLIP_SECONDS = 1.0  # = the micro preset's coarse crop: every crop is the whole clip, whatever the generator
PER_RANK_BATCH, STEPS = 2, 3


def clips(preset, n, seed=0) -> TokenSet:
    """Random tokens of n clips of CLIP_SECONDS on tiny's grid (12.5 Hz semantic, 25 Hz codec)."""
    lay, g = TokenLayout.from_preset(preset), torch.Generator().manual_seed(seed)
    Ts, Ta = int(CLIP_SECONDS * 12.5), int(CLIP_SECONDS * 25)
    return TokenSet(torch.randint(0, lay.mulan_codes, (n, lay.mulan_levels), generator=g),
                    torch.randint(0, lay.semantic_codes, (n, Ts), generator=g),
                    torch.randint(0, lay.codec_codes, (n, lay.codec_levels, Ta), generator=g))


def final_loss(folder: Path) -> float:
    return json.loads((folder / "log.jsonl").read_text().splitlines()[-2])["loss"]  # last: the validation line


@pytest.mark.slow
def test_ddp_and_fsdp_on_two_cpu_processes_match_one_process(tmp_path):
    # One process, the global batch (2 ranks x 2 examples) at once.
    p = micro_preset(batch_size=2 * PER_RANK_BATCH, steps=STEPS, val_every=2, checkpoint_every=100)
    run, step, validate = stage_run("coarse", p, clips(p, 8), clips(p, 4, seed=1), tmp_path / "single",
                                    Runtime(torch.device("cpu")), {"codec": "x"}, True)
    fit(run, step, validate)
    # Two processes under torchrun (Gloo): DDP, then FSDP with 2 micro-batches, checkpointing, pause and resume.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{ROOT / 'tests'}{os.pathsep}{ROOT}"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29531",
           str(ROOT / "tests" / "parallel_worker.py"), str(tmp_path)]
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]

    single = load_file(str(tmp_path / "single" / "model.safetensors"))
    start = stage_run("coarse", p, clips(p, 8), None, tmp_path / "start", Runtime(torch.device("cpu")), quiet=True)[0]
    moved = max(float((single[k] - v).abs().max()) for k, v in start.model.state_dict().items())
    assert moved > 1e-3  # training changed the weights, so matching them below means something
    for name in ("ddp", "fsdp"):
        ckpt = load_checkpoint(tmp_path / name)  # consolidated: one safetensors file, loadable without torchrun
        assert ckpt.train_state["step"] == STEPS and ckpt.model_state.keys() == single.keys()
        worst = max(float((ckpt.model_state[k] - single[k]).abs().max()) for k in single)
        assert worst < 1e-4, f"{name}: weights differ from one process by {worst:.2g}"
        assert final_loss(tmp_path / name) == pytest.approx(final_loss(tmp_path / "single"), rel=1e-5)
        assert ckpt.train_state["history"][-1]["loss"] == pytest.approx(run.history[-1]["loss"], rel=1e-5)
        moments = ckpt.train_state["optimizers"]["adamw"]["state"]
        assert set(moments) == set(range(len(single)))  # the plain optimizer's format: resumable anywhere


# --- pieces --------------------------------------------------------------------------------------
def test_micro_batches_split_evenly_or_refuse():
    assert micro_batches(8, 4) == [slice(0, 2), slice(2, 4), slice(4, 6), slice(6, 8)]
    with pytest.raises(ValueError, match="not a multiple"):
        micro_batches(6, 4)
    with pytest.raises(ValueError, match="accumulate"):
        Scaling(accumulate=0)


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters()}


def test_accumulated_micro_batches_give_the_gradient_of_the_whole_batch():
    torch.manual_seed(0)
    model = Transformer(MICRO, 50)
    x = torch.randint(0, 50, (4, 9), generator=torch.Generator().manual_seed(1))

    def loss(rows):  # mean next-token loss over rows
        logits, _ = model(x[rows, :-1])
        return (torch.nn.functional.cross_entropy(logits.flatten(0, 1), x[rows, 1:].flatten()),)

    whole = accumulate_gradients(model, lambda i: loss(slice(0, 4)), [32.0], None, torch.device("cpu"))
    want = _grads(model)
    model.zero_grad()
    parts = micro_batches(4, 2)
    split = accumulate_gradients(model, lambda i: loss(parts[i]), [16.0, 16.0], None, torch.device("cpu"))
    assert split[0] == pytest.approx(whole[0], rel=1e-6)
    assert all(torch.allclose(g, want[n], atol=1e-6) for n, g in _grads(model).items())


def test_activation_checkpointing_keeps_names_and_gradients():
    torch.manual_seed(0)
    plain = Transformer(MICRO, 50)
    ckpt = Transformer(MICRO, 50)
    ckpt.load_state_dict(plain.state_dict())
    checkpoint_blocks(ckpt)
    assert list(ckpt.state_dict()) == list(plain.state_dict())  # checkpoints stay interchangeable
    x = torch.randint(0, 50, (2, 9), generator=torch.Generator().manual_seed(1))
    for m in (plain, ckpt):
        m(x)[0].square().mean().backward()
    assert all(torch.allclose(g, p.grad, atol=1e-6) for g, p in zip(_grads(plain).values(), ckpt.parameters()))


def test_precision_is_bf16_only_where_asked_or_supported(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    assert autocast_dtype(cpu) is None and autocast_dtype(cpu, "bf16") is torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # an A100: no CUDA touched
    assert autocast_dtype(cuda) is torch.bfloat16 and autocast_dtype(cuda, "fp32") is None
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)  # a T4
    assert autocast_dtype(cuda) is None


def test_stage_trains_under_bf16_autocast_on_cpu(tmp_path):
    p = micro_preset(batch_size=2, steps=2, val_every=2, checkpoint_every=2)
    run, step, validate = stage_run("coarse", p, clips(p, 4), clips(p, 2, seed=1), tmp_path,
                                    Runtime(torch.device("cpu")), {"codec": "x"}, True, scaling=Scaling(precision="bf16"))
    fit(run, step, validate)
    weights = load_file(str(tmp_path / "model.safetensors"))
    assert all(v.dtype == torch.float32 for v in weights.values())  # master weights stay fp32
    assert torch.isfinite(torch.tensor(final_loss(tmp_path)))
