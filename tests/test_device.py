"""With a GPU, every chapter would pick sensible settings (Chapter 11): checked with CUDA mocked, never touched."""
import json
import re
from pathlib import Path

import pytest
import torch

from musiclm_mini import config
from musiclm_mini.device import device_settings

BOOK = Path(__file__).parents[1] / "book"
CHAPTERS = sorted(BOOK.glob("[0-9][0-9]_*.ipynb"))


def code_of(chapter: Path) -> str:
    cells = json.loads(chapter.read_text())["cells"]
    return "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")


@pytest.fixture
def gpu(monkeypatch, tmp_path):
    """A machine that says it has a GPU with bf16; any real CUDA call fails. Shipped weights: tiny only."""
    def no_cuda(*args, **kwargs):
        raise AssertionError("CUDA was touched")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(torch.cuda, "_lazy_init", no_cuda)
    monkeypatch.setattr(torch.cuda, "init", no_cuda)
    monkeypatch.setattr(config, "SHIPPED", tmp_path)  # no `colab` checkpoints
    monkeypatch.setattr(config, "_NOTICES", [])
    monkeypatch.delenv("MUSICLM_PRESET", raising=False)
    return monkeypatch


def test_a_gpu_with_bf16_gets_cuda_bf16_and_the_shipped_tiny_weights(gpu, capsys):
    s = device_settings()
    assert (s.device, s.dtype, s.preset) == ("cuda", torch.bfloat16, "tiny")
    assert "no `colab` checkpoints" in capsys.readouterr().err  # said once, on stderr


def test_a_t4_gets_fp32_and_colab_once_its_weights_ship(gpu, tmp_path):
    gpu.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    (tmp_path / "fine-stage-colab").mkdir()
    (tmp_path / "fine-stage-colab" / "model.safetensors").write_bytes(b"")
    s = device_settings()
    assert (s.device, s.dtype, s.preset) == ("cuda", torch.float32, "colab")


def test_without_a_gpu_cpu_fp32_tiny(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("MUSICLM_PRESET", raising=False)
    assert device_settings() == type(device_settings())("cpu", torch.float32, "tiny")


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_every_chapter_takes_its_preset_from_the_default_and_never_hard_codes_cuda(chapter, gpu):
    code = code_of(chapter)
    assert re.search(r"^preset = get_preset\(\)", code, re.M), "the chapter's running preset must be get_preset()"
    assert not re.search(r"""["']cuda""", code), "a device string in a chapter: use device_settings()"
    ns = {}
    exec("from musiclm_mini.config import get_preset\npreset = get_preset()", ns)  # the chapter's own line
    assert ns["preset"].name == "tiny"  # a GPU without colab weights still loads the shipped ones
