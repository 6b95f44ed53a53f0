"""Chapter 7's tagger as a registered component (issue 12): the shipped checkpoint, identity, the training command.

The shipped weights were converted from the tagger's own format without retraining
(scripts/oneoff/issue12_tagger_component.py): the file is the one shipped before, and it predicts what
the old `tagger.load_tagger` predicted on the same two clips (numbers recorded with the old code).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np
import pytest
import torch

from musiclm_mini import components
from musiclm_mini.checkpoint import save_checkpoint
from musiclm_mini.components import checkpoint_config, checkpoint_dir, load
from musiclm_mini.config import get_preset
from musiclm_mini.errors import CheckpointError
from musiclm_mini.evaluation import tagger, train_tagger
from musiclm_mini.evaluation.tagger import TaggerConfig
from musiclm_mini.train.__main__ import main as train_main

SHIPPED = checkpoint_dir("tagger", "tiny")
WEIGHTS_SHA256 = "2c8bc139871882efb37c02261063819134b47ce5615e405443a52a0737e8b529"  # as shipped before issue 12
# sum_c c * p(c) per head for the two clips of `two_clips`, from the old `load_tagger` + `predict`
BEFORE = {"family": [7.930724, 2.999959], "drums": [0.649321, 0.0], "tempo_bucket": [1.687002, 1.065372],
          "mode": [0.602682, 0.928821], "mood": [3.469031, 3.353153], "style": [4.322758, 5.0]}
ARGMAX_BEFORE = {"family": [8, 3], "drums": [1, 0], "tempo_bucket": [2, 1], "mode": [1, 1], "mood": [5, 3], "style": [1, 5]}


def two_clips(sr=24_000):
    """A pulsing 220 Hz tone in noise and a 330 + 392 Hz dyad with noise bursts, 3 s each."""
    t = np.arange(3 * sr) / sr
    rng = np.random.default_rng(0)
    a = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sign(np.sin(2 * np.pi * 2 * t))) / 2 + 0.05 * rng.normal(size=t.size)
    b = (0.2 * np.sin(2 * np.pi * 330 * t) + 0.2 * np.sin(2 * np.pi * 392 * t)
         + 0.1 * rng.normal(size=t.size) * (np.sin(2 * np.pi * 3 * t) > 0.9))
    return np.stack([a, b]).astype(np.float32)


# --- the shipped checkpoint ------------------------------------------------------------------------------
def test_shipped_tagger_loads_through_components_and_predicts_as_before_the_conversion():
    torch.set_num_threads(1)
    assert hashlib.sha256((SHIPPED / "model.safetensors").read_bytes()).hexdigest() == WEIGHTS_SHA256
    judge = load("tagger", "tiny")
    assert isinstance(judge, tagger.Tagger) and not judge.training
    assert judge.checkpoint_config["component"] == "tagger" and judge.checkpoint_config["model"] == "tagger"
    assert components.architecture(judge.cfg) == components.architecture(tagger.tagger_config(get_preset("tiny")))
    assert judge.cfg.heads == tagger.HEADS and judge.cfg.temperature == dict.fromkeys(tagger.HEADS, 1.0)
    post = tagger.predict(judge, two_clips(), 24_000)
    assert list(post) == list(tagger.HEADS)
    for head, before in BEFORE.items():
        assert post[head] @ np.arange(post[head].shape[1]) == pytest.approx(before, abs=1e-5), head
        assert post[head].argmax(1).tolist() == ARGMAX_BEFORE[head]


def test_the_figures_chapter_7_reads_are_in_metrics_json_not_in_the_config():
    record = tagger.training_record(SHIPPED)
    assert record["train_clips"] == 1024 and record["epochs"] == 15 and record["steps"] == 960
    assert record["test_clips"] == 32 and set(record["test_accuracy"]) == set(record["majority_baseline"]) == set(tagger.HEADS)
    assert record["test_accuracy"]["family"] == 1.0 and record["train_seconds"] == 286.5
    stored = json.loads((SHIPPED / "config.json").read_text())
    assert "trained" not in stored["config"] and stored["format"] == "musiclm-mini/1"
    with pytest.raises(CheckpointError, match="metrics.json"):
        tagger.training_record(SHIPPED.parent / "codec-tiny-nonexistent")


def test_every_preset_asks_for_the_same_tagger():
    configs = [components.component("tagger").config_for(get_preset(p)) for p in ("tiny", "colab", "paper")]
    assert configs[0] == configs[1] == configs[2] == TaggerConfig()


# --- identity: what `load` refuses --------------------------------------------------------------------------
def save_tagger_checkpoint(folder, cfg: TaggerConfig, preset_name="tiny"):
    torch.manual_seed(0)
    model = tagger.Tagger(cfg)
    save_checkpoint(folder, model.state_dict(), checkpoint_config("tagger", cfg, preset_name))
    return model


def test_a_tagger_of_another_architecture_is_refused_with_the_differing_fields(tmp_path):
    narrow = dataclasses.replace(TaggerConfig(), channels=(8, 16))
    save_tagger_checkpoint(tmp_path / "narrow", narrow)
    with pytest.raises(CheckpointError, match=r"another architecture.*channels"):
        load("tagger", "tiny", tmp_path / "narrow")
    assert load("tagger", path=tmp_path / "narrow").cfg.channels == (8, 16)  # no preset named: trusted as it is
    fewer = dataclasses.replace(TaggerConfig(), classes={"drums": ["drums", "no drums"]})
    save_tagger_checkpoint(tmp_path / "fewer", fewer)
    with pytest.raises(CheckpointError, match=r"classes\.family \(missing in the checkpoint\)"):
        load("tagger", "tiny", tmp_path / "fewer")
    # other temperatures are a calibration, not another network
    calibrated = dataclasses.replace(TaggerConfig(), temperature={"mood": 2.0})
    save_tagger_checkpoint(tmp_path / "calibrated", calibrated)
    assert load("tagger", "tiny", tmp_path / "calibrated").cfg.temperature == {"mood": 2.0}


def test_the_old_format_and_other_components_are_refused(tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    (old / "config.json").write_text(json.dumps({"format": "musiclm-mini-tagger/1", "sample_rate": 24000}))
    (old / "model.safetensors").write_bytes((SHIPPED / "model.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match="musiclm-mini-tagger/1"):
        load("tagger", path=old)
    cfg = components.component("mfcc").config_for(get_preset("tiny"))
    model = components.resolve(components.MODELS["kmeans"].build)(cfg)
    save_checkpoint(tmp_path / "mfcc", model.state_dict(), checkpoint_config("mfcc", cfg, "tiny"))
    with pytest.raises(CheckpointError, match="not 'tagger'"):
        load("tagger", path=tmp_path / "mfcc")


# --- the training commands ------------------------------------------------------------------------------------
def label_rows(n):
    classes = tagger.head_classes()
    return [{h: classes[h][i % len(classes[h])] for h in tagger.HEADS if h != "drums"} | {"drums": bool(i % 2)}
            for i in range(n)]


@pytest.fixture
def fake_synthcaps(tmp_path, monkeypatch):
    """A SynthCaps folder of 1 s noise clips (8 / 4 / 4): the commands' data path without the real set."""
    from musiclm_mini.data import synthcaps

    folder = tmp_path / "synthcaps"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"sample_rate": 24_000}))
    sizes = {"train": 8, "validation": 4, "test": 4}
    rng = np.random.default_rng(1)
    data = {s: (torch.as_tensor(0.1 * rng.normal(size=(n, 24_000)).astype(np.float32)), label_rows(n))
            for s, n in sizes.items()}
    monkeypatch.setattr(train_tagger, "load_split", lambda path, split: data[split])
    monkeypatch.setattr(synthcaps, "ensure_synthcaps", lambda preset: folder)
    return folder


def test_train_tagger_writes_a_checkpoint_that_load_reads(fake_synthcaps, tmp_path):
    out = tmp_path / "run"
    train_main(["tagger", "--preset", "tiny", "--steps", "3", "--batch-size", "4", "--data", "synthcaps",
                "--quiet", "--out", str(out)])
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "metrics.json", "model.safetensors"]
    model = load("tagger", "tiny", out)  # the preset's architecture
    assert model.checkpoint_config["preset"] == "tiny" and len(model.checkpoint_config["fingerprint"]) == 16
    assert set(model.cfg.temperature) == set(tagger.HEADS)  # calibrated on the validation clips
    record = tagger.training_record(out)
    assert record["steps"] == 3 and record["epochs"] == 2 and record["train_clips"] == 8 and record["test_clips"] == 4
    assert record["command"].startswith("python -m musiclm_mini.train tagger --preset tiny --data synthcaps --steps 3")


def test_the_older_command_writes_the_same_kind_of_checkpoint(fake_synthcaps, tmp_path):
    out = tmp_path / "old-command"
    figures = train_tagger.main(["--data", str(fake_synthcaps), "--out", str(out), "--epochs", "1"])
    assert load("tagger", "tiny", out).cfg.heads == tagger.HEADS
    assert figures["epochs"] == 1 and figures["steps"] == 1 and tagger.training_record(out) == figures


def test_train_tagger_refuses_data_without_labels_and_resuming(tmp_path, capsys):
    for flags, message in ((["--data", "sines"], "SynthCaps' labels"), (["--resume"], "in one go")):
        with pytest.raises(SystemExit) as exit_info:
            train_main(["tagger", "--preset", "tiny", *flags, "--out", str(tmp_path / "r")])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.slow
def test_two_steps_on_the_real_synthcaps_write_a_checkpoint_that_load_reads(tmp_path):
    """~20 s: the tiny SynthCaps (generated first if missing), 2 steps of 4 clips, then the test split measured."""
    out = tmp_path / "tagger"
    train_main(["tagger", "--preset", "tiny", "--steps", "2", "--batch-size", "4", "--data", "synthcaps",
                "--threads", "1", "--quiet", "--out", str(out)])
    assert load("tagger", "tiny", out).checkpoint_config["component"] == "tagger"
    assert tagger.training_record(out)["train_clips"] == 256
