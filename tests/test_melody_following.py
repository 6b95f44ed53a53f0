"""Melody following (issue 16, step 4; Chapter 8): a transposition-free chroma similarity between a hum and music,
own hum vs shuffled hums with a sign-flip test, and scripts/measure_melody.py end to end with a micro model."""
import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from musiclm_mini.errors import CheckpointError
from musiclm_mini.evaluation.melody_following import (chromagrams, following_statistics, melody_following,
                                                      melody_similarity, similarity_matrix)
from musiclm_mini.musiclm import MusicLM
from test_melody_generation import model  # noqa: F401  (the micro MusicLM + melody stage fixture)

SR = 24_000


def tones(midi: list[float], note_seconds: float = 0.4, rate: int = SR) -> np.ndarray:
    """A tone sequence: each MIDI pitch for `note_seconds`, a tone with two weak overtones, 20 ms fades -> (T,)."""
    n = int(note_seconds * rate)
    t = np.arange(n) / rate
    fade = np.minimum(1, np.minimum(t, t[::-1]) / 0.02)
    notes = []
    for m in midi:
        f = 440 * 2 ** ((m - 69) / 12)
        notes.append(fade * sum(a * np.sin(2 * np.pi * k * f * t) for k, a in ((1, 1.0), (2, 0.3), (3, 0.1))))
    return (0.3 * np.concatenate(notes)).astype(np.float32)


def random_tune(rng: np.random.Generator, notes: int = 12) -> list[float]:
    return (60 + rng.integers(-7, 8, notes)).tolist()


TUNE = [60, 62, 64, 65, 67, 65, 64, 62, 60, 67, 64, 60]


@pytest.mark.parametrize("method,floor", [("pitch", 0.85), ("cqt", 0.98)])  # the transcriber's activations vary by register
def test_a_transposed_tune_scores_the_maximum_and_beats_an_unrelated_one(method, floor):
    a = tones(TUNE)
    up5 = tones([m + 5 for m in TUNE])  # a fourth up: another key
    down_octave = tones([m - 12 for m in TUNE])
    other = tones(random_tune(np.random.default_rng(3)))
    same = melody_similarity(a, a, SR, method)
    assert same == pytest.approx(1.0, abs=1e-6)
    assert melody_similarity(a, up5, SR, method) > floor and melody_similarity(up5, a, SR, method) > floor
    assert melody_similarity(a, down_octave, SR, method) > 0.85  # the octave is not heard
    assert melody_similarity(a, other, SR, method) < melody_similarity(a, up5, SR, method) - 0.3


def test_the_best_shift_and_offset_are_found_and_the_shapes_are_kept():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(3, 12, 40))
    a -= a.mean(1, keepdims=True)
    b = np.roll(a, 4, axis=1)[..., 2:]  # transposed by 4 semitones, 0.2 s later, cut to 38 frames
    sim = similarity_matrix(a, b, max_offset=3)
    assert sim.shape == (3, 3) and np.allclose(np.diag(sim), 1.0)
    assert np.diag(similarity_matrix(a, b, max_offset=1)).max() < 0.5  # the offset is outside +-1 frame
    assert (sim <= 1 + 1e-9).all() and (sim - np.eye(3) < 0.6).all()


def test_a_tone_sequence_becomes_centred_chroma_frames():
    c = chromagrams([tones([60] * 10), tones([67] * 10)], SR, "pitch")  # 4 s: 40 frames of 0.1 s
    assert c.shape == (2, 12, 40) and np.allclose(c.sum(1), 0)
    assert (c[0, :, 5:35].argmax(0) == 0).all() and (c[1, :, 5:35].argmax(0) == 7).all()  # C, then G


def test_identical_sets_follow_their_hums_significantly():
    rng = np.random.default_rng(1)
    hums = np.stack([tones(random_tune(rng)) for _ in range(8)])  # (8, T): 4.8 s each
    r = melody_following(hums, hums, SR, method="cqt", permutations=5000, per_clip=True)
    assert r["similarity"] == pytest.approx(1.0, abs=1e-6) and r["shuffled"] < 0.7
    assert r["p_permutation"] < 0.01 and r["p_wilcoxon"] < 0.01
    assert r["retrieval_top1"] == 1.0 and r["chance_top1"] == 1 / 8 and r["clips"] == 8
    assert len(r["own"]) == len(r["other"]) == 8
    # transposed renditions of the same tunes, an octave and a fifth away, with the transcriber's chroma
    moved = np.stack([tones([m + 7 * (i % 2) - 12 for m in random_tune(np.random.default_rng(i + 100))])
                      for i in range(4)])
    orig = np.stack([tones(random_tune(np.random.default_rng(i + 100))) for i in range(4)])
    r = melody_following(moved, orig, SR, permutations=2000)
    assert r["difference"] > 0.3 and r["retrieval_top1"] == 1.0


def test_a_generator_that_ignores_its_hum_is_not_significant():
    rng = np.random.default_rng(2)
    hums = np.stack([tones(random_tune(rng)) for _ in range(16)])
    ignoring = np.stack([tones(random_tune(rng)) for _ in range(16)])  # clips drawn without looking at the hums
    r = melody_following(ignoring, hums, SR, method="cqt", permutations=5000, seed=0)
    assert r["p_permutation"] > 0.05 and r["p_wilcoxon"] > 0.05
    assert abs(r["difference"]) < 0.1


def test_mismatched_inputs_are_refused_clearly():
    hums = np.stack([tones(TUNE)] * 3)
    with pytest.raises(ValueError, match="one generated clip per hum, got 2 clips and 3 hums"):
        melody_following(hums[:2], hums, SR)
    with pytest.raises(ValueError, match="at least 2 hums"):
        melody_following(hums[:1], hums[:1], SR)
    with pytest.raises(ValueError, match="unknown chroma method 'mfcc'"):
        melody_following(hums, hums, SR, method="mfcc")
    with pytest.raises(ValueError, match=r"square \(N, N\)"):
        following_statistics(np.ones((3, 2)))


# --- scripts/measure_melody.py end to end, with the micro model of test_melody_generation -----------------------
def measure_script():
    path = Path(__file__).resolve().parents[1] / "scripts" / "measure_melody.py"
    spec = importlib.util.spec_from_file_location("measure_melody", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_measure_melody_writes_every_figure(model, monkeypatch, tmp_path):  # noqa: F811
    script = measure_script()
    stage = tmp_path / "stage"
    stage.mkdir()
    (stage / "model.safetensors").write_bytes(b"")  # found by find_melody_stage; the fixture's parts stand for it
    monkeypatch.setattr(model.melody_parts, "folder", stage)
    monkeypatch.setattr(MusicLM, "from_pretrained", classmethod(lambda cls, *a, **k: model))
    hums = torch.stack([torch.as_tensor(tones(random_tune(np.random.default_rng(i)), 0.5)) for i in range(3)])  # (3, 6 s)
    labels = [{"melody_id": f"m{i}", "source_id": f"s{i}"} for i in range(3)]
    melodies = (hums, hums.clone(), labels, SR)  # the "arrangement" of each melody is its hum itself
    monkeypatch.setattr(script, "held_out_melodies", lambda preset, split, n: tuple(x[:n] for x in melodies[:3]) + (SR,))
    monkeypatch.setattr(script, "held_out_captions", lambda preset, split, n: [f"caption {i}" for i in range(n)])
    out = tmp_path / "melody.json"
    out.write_text(json.dumps({"test_split_runs": 2}))
    argv = ["--hums", "3", "--seconds", "4", "--melody-stage", str(stage), "--split", "test", "--permutations", "200",
            "--json", str(out)]
    res = script.main(argv)
    data = json.loads(out.read_text())
    assert set(data) == {"command", "settings", "fingerprints", "hums", "captions", "melody_ids", "following",
                         "text_adherence", "test_split_runs", "cpu_seconds", "wall_seconds", "timings"}
    assert data["test_split_runs"] == 3 and data["hums"] == 3 and data["melody_ids"] == ["m0", "m1", "m2"]
    assert set(data["fingerprints"]) == {"codec", "mulan", "semantic", "coarse", "fine", "melody-embedder",
                                         "melody-semantic-stage"}
    assert data["settings"]["melody_stage"] == str(stage) and data["settings"]["seconds"] == 4.0
    assert set(data["following"]) == set(script.ROWS) and set(data["text_adherence"]) == set(script.TEXT_ROWS)
    keys = {"clips", "similarity", "shuffled", "difference", "p_permutation", "p_wilcoxon", "retrieval_top1",
            "chance_top1", "own", "other"}
    for row in data["following"].values():
        assert set(row) == keys and row["clips"] == 3 and 0 < row["p_permutation"] <= 1
    assert data["following"][script.ROWS[1]]["similarity"] == pytest.approx(1.0, abs=1e-6)
    for row in data["text_adherence"].values():
        assert {"mcc", "shuffled", "p_permutation", "retrieval_top1"} <= set(row) and math.isfinite(row["mcc"])
    assert res["following"] == data["following"]


def test_measure_melody_without_a_stage_fails_in_one_line(model, monkeypatch, tmp_path):  # noqa: F811
    script = measure_script()
    monkeypatch.setattr(MusicLM, "from_pretrained", classmethod(lambda cls, *a, **k: model))
    with pytest.raises(SystemExit) as exc:
        script.main(["--melody-stage", str(tmp_path / "nowhere")])
    message = str(exc.value.code)
    assert message.startswith("error: no melody-semantic-stage checkpoint in ") and "\n" not in message
    assert "python -m musiclm_mini.train melody-semantic-stage --preset" in message
    assert isinstance(exc.value.__context__, CheckpointError)
