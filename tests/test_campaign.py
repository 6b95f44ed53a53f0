"""The training campaign (Chapter 3): chunks that resume, a judge on validation, shipping only what is better."""
import json

import torch

from musiclm_mini import config
from musiclm_mini.config import get_preset
from musiclm_mini.train.__main__ import main, override
from musiclm_mini.train.campaign import Leg, campaign_leg, is_better, run_step

torch.set_num_threads(1)
SMALL = ["--data", "sines", "--batch-size", "2", "--threads", "1", "--val-every", "2", "--checkpoint-every", "2"]
SMALL_CODEC = {"codec.strides": (2, 4), "codec.channels": 4, "codec.embedding_dim": 16, "codec.rvq.dim": 16,
               "codec.rvq.codebook_size": 16, "codec.rvq.num_quantizers": 3, "codec.spectral_windows": (64, 128),
               "codec.crop_seconds": 0.02}
LEG = Leg("codec", steps=4, chunk=2, figure="mel_distance", higher_is_better=False,
          judge="musiclm_mini.train.codec:judge_levels")


def test_is_better_reads_the_direction_and_ships_when_nothing_is_comparable():
    assert is_better(LEG, 1.0, 2.0) and not is_better(LEG, 2.0, 1.0) and is_better(LEG, 5.0, None)
    up = Leg("x", 1, 1, "f1", True, "m:f")
    assert is_better(up, 0.6, 0.5) and not is_better(up, 0.5, 0.5)


def small_preset():
    preset = config._tiny()
    for field, value in SMALL_CODEC.items():
        preset = override(preset, field, value)
    return preset


def test_a_campaign_trains_in_chunks_judges_and_ships_only_what_is_better(tmp_path, monkeypatch):
    monkeypatch.setitem(config._BUILDERS, "tiny", small_preset)  # "tiny" is a codec that trains in a second
    calls = []
    train = lambda argv: (calls.append(argv), main([*argv, *SMALL]))
    runs, root, log = tmp_path / "runs", tmp_path / "checkpoints", tmp_path / "campaign.jsonl"
    campaign_leg(LEG, get_preset("tiny"), train, runs=runs, root=root, log=log)
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert [e["step"] for e in entries] == [2, 4] and run_step(runs / "codec-tiny")[0] == 4
    assert "--stop-at" in calls[0] and calls[0][calls[0].index("--stop-at") + 1] == "2"
    assert "--resume" not in calls[0] and "--resume" in calls[1]  # the second chunk continues the first
    assert entries[0]["shipped"] and entries[0]["shipped_validation"] is None  # nothing shipped yet: ship
    second = entries[1]
    assert second["shipped"] == (second["validation"]["mel_distance"] < second["shipped_validation"]["mel_distance"])
    record = json.loads((root / "codec-tiny" / "record.json").read_text())
    assert record["command"].startswith("python -m musiclm_mini.train campaign") and record["cpu_hours"] > 0
    assert list(json.loads((root / "codec-tiny" / "metrics.json").read_text())["shipped"]) == ["validation"]
    campaign_leg(LEG, get_preset("tiny"), train, runs=runs, root=root, log=log)  # finished: nothing to do
    assert len(calls) == 2
