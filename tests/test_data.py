"""Chapter 1's data package: SynthCaps generation, captions, splits, melody pairs and real data.

Small configs (a dozen clips) keep most tests to seconds. `test_full_tiny_synthcaps` builds the
real tiny data set under data/ (about 1-2 minutes on 2 free cores, instant once it exists):
the notebooks need it anyway. Set MUSICLM_SKIP_FULL_DATA=1 to skip it.
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from musiclm_mini.config import get_preset
from musiclm_mini.data import captions, melody_pairs, realdata, render, scores, synthcaps
from musiclm_mini.errors import AudioError, TextError

SR = 24_000
FIXTURES = Path(realdata.__file__).parent / "fixtures"
MC_CSV = FIXTURES / "musiccaps" / "musiccaps_mini.csv"
MC_CLIPS = FIXTURES / "musiccaps" / "clips"


def small_config(**changes):
    base = dict(num_clips=12, variants_per_score=2, num_melodies=3, melody_instruments=2)
    return dataclasses.replace(get_preset("tiny").data, **{**base, **changes})


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    """A 12-clip SynthCaps built through the public API into a temporary data root."""
    root = tmp_path_factory.mktemp("data")
    preset = get_preset("tiny").replace(data=small_config())
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MUSICLM_DATA_DIR", str(root))
        path = synthcaps.ensure_synthcaps(preset, num_workers=2)
    return root, preset, path


def all_labels(path):
    return {s: synthcaps.labels_from_dir(path, s) for s in synthcaps.SPLITS}


def dominant_hz(wave: torch.Tensor, rate: int = SR) -> float:
    spectrum = np.abs(np.fft.rfft(wave.numpy() * np.hanning(wave.shape[-1])))
    return float(np.fft.rfftfreq(wave.shape[-1], 1 / rate)[spectrum.argmax()])


def has_word(text: str, word: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", text.lower()) is not None


# ------------------------------------------------------------------------------- generation
@pytest.mark.slow
def test_same_seed_same_audio_bytes_any_worker_count(tmp_path):
    cfg = small_config(num_clips=6)
    a = synthcaps.generate_synthcaps(cfg, tmp_path / "a", num_workers=1)
    b = synthcaps.generate_synthcaps(cfg, tmp_path / "b", num_workers=2)
    c = synthcaps.generate_synthcaps(dataclasses.replace(cfg, seed=1), tmp_path / "c", num_workers=1)
    from datasets import Audio, load_from_disk

    def clips(path):
        dd = load_from_disk(str(path))
        # sha256 of the WAV bytes: as strict as the bytes, and a failure's diff stays readable (pytest's diff of
        # raw audio bytes ran for over 20 minutes in session 9)
        return {r["clip_id"]: (hashlib.sha256(r["audio"]["bytes"]).hexdigest(), r["caption"])
                for s in dd for r in dd[s].cast_column("audio", Audio(decode=False))}

    first, second, other = clips(a), clips(b), clips(c)
    assert len(first) == 6 and first == second
    assert not {v[0] for v in first.values()} & {v[0] for v in other.values()}  # a new seed, new audio


def test_splits_share_no_source_score(small_set):
    _, preset, path = small_set
    labels = all_labels(path)
    assert sum(map(len, labels.values())) == preset.data.num_clips
    sources = {s: {r["source_id"] for r in rows} for s, rows in labels.items()}
    assert all(sources.values()), "every split needs at least one score"
    assert not sources["train"] & sources["validation"]
    assert not sources["train"] & sources["test"]
    assert not sources["validation"] & sources["test"]
    saved = json.loads((path / "sources.json").read_text())
    assert all(saved[r["source_id"]] == s == r["split"] for s, rows in labels.items() for r in rows)
    assert len({r["clip_id"] for rows in labels.values() for r in rows}) == preset.data.num_clips


@pytest.mark.slow
def test_extra_variants_come_from_training_scores_only_and_repeat_no_clip(small_set, monkeypatch):
    root, preset, path = small_set
    monkeypatch.setenv("MUSICLM_DATA_DIR", str(root))
    extra = synthcaps.ensure_extra_variants(preset, per_score=2, num_workers=1)
    assert extra == synthcaps.extra_dir(preset) and synthcaps.ensure_extra_variants(preset, 2) == extra  # reused
    sources = json.loads((path / "sources.json").read_text())
    more = synthcaps.labels_from_dir(extra, "train")
    train_scores = {s for s, split in sources.items() if split == "train"}
    assert len(more) == 2 * len(train_scores) and {m["source_id"] for m in more} == train_scores
    assert json.loads((extra / "dataset_dict.json").read_text())["splits"] == ["train"]
    # New arrangements, not copies: no extra clip has the waveform of a training clip.
    base = torch.as_tensor(synthcaps.waveforms_from_dir(path, "train"))
    new = torch.as_tensor(synthcaps.waveforms_from_dir(extra, "train"))
    assert not any(torch.equal(a, b) for a in new for b in base)
    assert len({m["clip_id"] for m in more} | {c["clip_id"] for c in all_labels(path)["train"]}) == len(more) + len(base)
    with pytest.raises(ValueError, match="no training scores"):
        synthcaps.generate_extra_variants(preset.data, {}, 1, root / "nothing")


def test_assign_splits_uses_the_fractions():
    ids = [f"s{i}" for i in range(80)]
    splits = synthcaps.assign_splits(ids, 0.1, 0.1, seed=0)
    counts = {s: list(splits.values()).count(s) for s in synthcaps.SPLITS}
    assert counts == {"train": 64, "validation": 8, "test": 8}
    assert splits != synthcaps.assign_splits(ids, 0.1, 0.1, seed=1)
    with pytest.raises(ValueError, match="cannot fill"):
        synthcaps.assign_splits(["a", "b"], 0.1, 0.1, seed=0)


def test_waveforms_are_10s_mono_at_24k_and_follow_dynamics(small_set):
    _, preset, path = small_set
    for split in synthcaps.SPLITS:
        waves = synthcaps.waveforms_from_dir(path, split)
        labels = synthcaps.labels_from_dir(path, split)
        assert waves.dtype == torch.float32 and waves.shape == (len(labels), 10 * SR)
        assert torch.isfinite(waves).all()
        for wave, lab in zip(waves, labels):
            assert abs(wave.abs().max().item() - render.PEAK[lab["dynamics"]]) < 0.01
            assert wave[-SR:-SR // 10].pow(2).mean().sqrt() > 0.005, f"{lab['clip_id']} goes silent"
    assert (path / "waveforms-train.npy").exists()


def test_public_api_reuses_the_saved_set(small_set, monkeypatch):
    root, preset, path = small_set
    monkeypatch.setenv("MUSICLM_DATA_DIR", str(root))
    assert synthcaps.dataset_dir(preset) == path == root / "synthcaps-tiny"
    stamp = (path / "config.json").stat().st_mtime_ns
    dd = synthcaps.load_synthcaps(preset)
    assert set(dd) == set(synthcaps.SPLITS)
    assert dd["train"].features["audio"].sampling_rate == SR
    assert (path / "config.json").stat().st_mtime_ns == stamp, "an up-to-date set must not be rebuilt"
    waves, labels = synthcaps.split_waveforms(preset, "test"), synthcaps.split_labels(preset, "test")
    assert [r["clip_id"] for r in labels] == dd["test"]["clip_id"] and len(waves) == len(labels)
    decoded = dd["test"][0]["audio"].get_all_samples()  # the Audio column decodes to the same samples
    assert decoded.sample_rate == SR and torch.allclose(decoded.data[0], waves[0], atol=1e-4)
    assert not [p for p in root.iterdir() if ".tmp-" in p.name], "temporary folders left behind"


@pytest.mark.slow
def test_stale_set_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("MUSICLM_DATA_DIR", str(tmp_path))
    preset = get_preset("tiny").replace(data=small_config(num_clips=3, variants_per_score=1))
    first = synthcaps.split_labels(preset, "train")
    changed = preset.replace(data=dataclasses.replace(preset.data, seed=5))
    second = synthcaps.split_labels(changed, "train")
    assert json.loads((tmp_path / "synthcaps-tiny" / "config.json").read_text())["seed"] == 5
    assert [r["source_id"] for r in first] != [r["source_id"] for r in second]


# ------------------------------------------------------------------------------- captions
def many_labels(n_scores: int = 4, per_score: int = 60) -> list[dict]:
    """Labels and captions for many variants of a few scores (no audio: fast)."""
    out = []
    for i, sid in enumerate(scores.list_sources(3, n_scores)):
        score = scores.parse_score(sid)
        for j in range(per_score):
            rng = np.random.default_rng([3, i, j])
            variant = synthcaps.sample_variant(score, 10.0, rng)
            out.append(synthcaps.clip_labels(score, variant, f"c{i}-{j}", rng))
    return out


def check_caption(lab: dict) -> None:
    cap = lab["caption"].lower()
    words = lambda table, key: [w for w in table[key]]  # noqa: E731
    others = lambda table, key: [w for k, ws in table.items() if k != key for w in ws]  # noqa: E731
    assert any(w in cap for w in captions.STYLE_KEYWORDS[lab["style"]]), cap
    assert not any(w in cap for w in others(captions.STYLE_KEYWORDS, lab["style"])), cap
    assert any(has_word(cap, w) for w in words(captions.TEMPO_WORDS, lab["tempo_bucket"])), cap
    assert not any(has_word(cap, w) for w in others(captions.TEMPO_WORDS, lab["tempo_bucket"])), cap
    assert any(has_word(cap, w) for w in words(captions.MOOD_WORDS, lab["mood"])), cap
    assert not any(has_word(cap, w) for w in others(captions.MOOD_WORDS, lab["mood"])), cap
    assert has_word(cap, lab["mode"]) and not has_word(cap, {"major": "minor", "minor": "major"}[lab["mode"]])
    for program in lab["programs"].values():
        assert captions.instrument_word(program, lab["style"]) in cap, (program, cap)
    if lab["drums"]:
        assert "drum" in cap, cap
    else:
        stripped = cap
        for sentence in captions.NO_DRUM_SENTENCES:
            stripped = stripped.replace(sentence.lower(), "")
        assert not any(w in stripped for w in captions.DRUM_WORDS), cap


def test_captions_agree_with_labels():
    labels = many_labels()
    for lab in labels:
        check_caption(lab)
        assert lab["tempo_bucket"] == captions.tempo_bucket(lab["tempo_bpm"])
        assert lab["mood"] == captions.derive_mood(lab["mode"], lab["tempo_bucket"], lab["dynamics"])
        assert lab["key"].endswith(" " + lab["mode"])
        assert lab["drum_pattern"] == (render.STYLES[lab["style"]].groove if lab["drums"] else "none")
        asp = lab["aspects"]
        assert f"{lab['tempo_bucket']} tempo" in asp and f"{lab['mode']} key" in asp and lab["mood"] in asp
        assert ("no drums" in asp) != lab["drums"] and ("drums" in asp) == lab["drums"]
        assert len(lab["instruments"]) == len(set(lab["programs"].values()))
    # variety: every style and mood shows up, and captions are not one template
    assert {lab["style"] for lab in labels} == set(render.STYLES)
    assert {lab["mood"] for lab in labels} == set(captions.MOOD_WORDS)
    assert len({" ".join(lab["caption"].split()[:3]) for lab in labels}) >= 10
    assert len({lab["caption"] for lab in labels}) == len(labels)


def test_generated_set_captions_agree(small_set):
    for rows in all_labels(small_set[2]).values():
        for lab in rows:
            check_caption(lab)


def test_styles_without_drums_never_get_them():
    for lab in many_labels(n_scores=2, per_score=40):
        if render.STYLES[lab["style"]].drums == 0:
            assert not lab["drums"]


# ------------------------------------------------------------------------------- music building blocks
def test_change_mode_maps_scale_degrees():
    c_major = np.array([[i, 1, p] for i, p in enumerate([60, 62, 64, 65, 67, 69, 71, 72])], float)
    minor = scores.change_mode(c_major, 0, "major", "minor")
    assert list(minor[:, 2]) == [60, 62, 63, 65, 67, 68, 71, 72]  # harmonic minor
    back = scores.change_mode(minor, 0, "minor", "major")
    assert list(back[:, 2]) == list(c_major[:, 2])
    assert scores.change_mode(c_major, 0, "major", "major") is c_major


def test_harmonize_picks_fitting_triads():
    # bar 1: C-E-G (tonic), bar 2: G-B-D (dominant), in C major, 3/4 time
    melody = np.array([[0, 1, 72], [1, 1, 76], [2, 1, 79], [3, 1, 79], [4, 1, 83], [5, 1, 74]], float)
    harmony, bass = scores.harmonize(melody, np.array([0.0, 3.0]), 3.0, 0, "major")
    assert sorted(int(p) % 12 for p in harmony[harmony[:, 0] == 0][:, 2]) == [0, 4, 7]
    assert sorted(int(p) % 12 for p in harmony[harmony[:, 0] == 3][:, 2]) == [2, 7, 11]
    assert [int(p) % 12 for p in bass[:, 2]] == [0, 7] and (bass[:, 2] < 48).all()


def test_excerpt_loops_short_scores():
    notes = np.array([[0, 1, 60], [1, 1, 62]], float)
    out = render.excerpt(notes, start=1.0, length=5.0, period=2.0)
    assert list(out[:, 0]) == [0, 1, 2, 3, 4] and list(out[:, 2]) == [62, 60, 62, 60, 62]


def test_drum_grooves_put_hits_on_the_right_beats():
    rng = np.random.default_rng(0)
    rock = render.drum_pattern("rock", 8, 4.0, rng)
    kicks, snares = rock[rock[:, 2] == render.KICK][:, 0], rock[rock[:, 2] == render.SNARE][:, 0]
    assert set(kicks) == {0, 2, 4, 6} and {1, 3, 5, 7} <= set(snares)
    house = render.drum_pattern("electronic", 4, 4.0, rng)
    assert list(house[house[:, 2] == render.KICK][:, 0]) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="unknown drum groove"):
        render.drum_pattern("polka", 4, 4.0, rng)


def test_hum_sings_the_written_pitch():
    notes = np.array([[0.0, 2.0, 69, 80]])  # A4 for two seconds
    wave = render.hum(notes, SR, 2 * SR, np.random.default_rng(0))
    assert wave.dtype == np.float32 and wave.shape == (2 * SR,) and np.isfinite(wave).all()
    assert abs(dominant_hz(torch.from_numpy(wave)) - 440) < 15


def test_melody_pairs_keep_the_source_split(small_set, tmp_path):
    _, preset, path = small_set
    splits = json.loads((path / "sources.json").read_text())
    dd = melody_pairs.generate_melody_pairs(preset.data, tmp_path / "m", splits, num_workers=1)
    from datasets import load_from_disk

    dd = load_from_disk(str(dd))
    rows = [r for s in synthcaps.SPLITS for r in dd[s].remove_columns("audio").to_list()]
    assert {"melody_id", "variant", "audio", "split"} <= set(dd["train"].column_names)
    by_melody = {}
    for r in rows:
        by_melody.setdefault(r["melody_id"], []).append(r)
        assert r["split"] == splits[r["source_id"]]
    assert len(by_melody) >= 3
    for variants in by_melody.values():
        assert len({v["split"] for v in variants}) == 1
        assert sorted(v["variant"] == "hum" for v in variants) == [False, False, True]
    waves = synthcaps.waveforms_from_dir(tmp_path / "m", "train")
    assert waves.shape[1] == 10 * SR and (waves.pow(2).mean(1).sqrt() > 0.01).all()


# ------------------------------------------------------------------------------- real data
def test_musiccaps_fixture_loads_resampled_mono():
    ds = realdata.load_musiccaps(MC_CSV, MC_CLIPS)
    rows = ds.remove_columns("audio").to_list()
    waves = dict(zip([r["ytid"] for r in rows], realdata.dataset_waveforms(ds)))
    assert [r["ytid"] for r in rows] == ["fxA0001abcd", "fxB0002efgh", "fxC0003ijkl", "fxD0004mnop"]
    assert rows[0]["aspects"] == ["piano", "slow tempo", "calm"] and rows[0]["split"] == "test"
    assert [r["split"] for r in rows] == ["test", "train", "train", "test"]
    assert ds.features["audio"].sampling_rate == SR
    assert waves["fxA0001abcd"].shape == (SR,)  # 16 kHz, 1 s -> 24 kHz
    assert abs(dominant_hz(waves["fxA0001abcd"]) - 440) < 3
    b = waves["fxB0002efgh"]  # 44.1 kHz stereo 440 Hz left / 660 Hz right -> mono with both
    assert b.ndim == 1 and b.shape == (SR // 2,)
    spec = np.abs(np.fft.rfft(b.numpy()))
    freqs = np.fft.rfftfreq(len(b), 1 / SR)
    for hz in (440, 660):
        assert spec[np.abs(freqs - hz) < 5].max() > 0.3 * spec.max()
    c = waves["fxC0003ijkl"]  # a 3 s 'whole recording' cut to its 1-2 s segment
    assert c.shape == (SR,) and abs(dominant_hz(c) - 1000) < 5
    assert waves["fxD0004mnop"].shape == (int(0.4 * SR),)


def copy_musiccaps(tmp_path) -> tuple[Path, Path]:
    shutil.copytree(FIXTURES / "musiccaps", tmp_path / "mc")
    return tmp_path / "mc" / "musiccaps_mini.csv", tmp_path / "mc" / "clips"


def add_row(csv_path: Path, ytid: str, aspects: str = "['x']") -> None:
    with open(csv_path, "a", newline="") as handle:
        csv.writer(handle).writerow([ytid, 0, 10, "", aspects, "A caption.", 1, "False", "False"])


def test_musiccaps_missing_clip_is_named(tmp_path):
    csv_path, clips = copy_musiccaps(tmp_path)
    add_row(csv_path, "fxZ9999zzzz")
    with pytest.raises(AudioError, match="fxZ9999zzzz"):
        realdata.load_musiccaps(csv_path, clips)
    assert len(realdata.load_musiccaps(csv_path, clips, skip_missing=True)) == 4
    assert realdata.missing_clips(csv_path, clips) == ["fxZ9999zzzz"]


def test_musiccaps_unreadable_and_nan_files_are_named(tmp_path):
    csv_path, clips = copy_musiccaps(tmp_path)
    (clips / "fxA0001abcd_30.wav").write_bytes(b"RIFF not really a wave file" * 10)
    with pytest.raises(AudioError, match="fxA0001abcd_30.wav"):
        realdata.load_musiccaps(csv_path, clips)
    csv_path, clips = copy_musiccaps(tmp_path / "nan")
    bad = np.zeros(8000, np.float32)
    bad[100] = np.nan
    sf.write(clips / "fxA0001abcd_30.wav", bad, 16_000, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"fxA0001abcd_30\.wav.*NaN"):
        realdata.load_musiccaps(csv_path, clips)


def test_musiccaps_bad_aspect_list_and_columns(tmp_path):
    csv_path, clips = copy_musiccaps(tmp_path)
    add_row(csv_path, "fxA0001abcd", aspects="['unclosed")
    with pytest.raises(TextError, match="line 6"):
        realdata.read_musiccaps_csv(csv_path)
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("ytid,caption\nabc,hello\n")
    with pytest.raises(AudioError, match="missing MusicCaps column"):
        realdata.read_musiccaps_csv(wrong)


def test_audio_folder_fixture():
    ds = realdata.load_audio_folder(FIXTURES / "audiofolder")
    rows = ds.remove_columns("audio").to_list()
    assert [r["file_name"] for r in rows] == ["calm_piano.wav", "brass/loud_brass.flac"]
    assert rows[0]["caption"] == "A calm, slow piano note." and rows[1]["aspects"] == "brass; loud"
    waves = realdata.dataset_waveforms(ds)
    assert [w.shape for w in waves] == [(SR // 2,), (int(0.3 * SR),)]  # 22.05 kHz and 48 kHz stereo
    assert abs(dominant_hz(waves[0]) - 262) < 5


def test_audio_folder_errors_name_the_file(tmp_path):
    folder = tmp_path / "af"
    shutil.copytree(FIXTURES / "audiofolder", folder)
    (folder / "calm_piano.wav").write_bytes(b"\x00garbage" * 50)
    with pytest.raises(AudioError, match="calm_piano.wav"):
        realdata.load_audio_folder(folder)
    with open(folder / "metadata.csv", "a") as handle:
        handle.write("gone.wav,Missing clip.,x\n")
    with pytest.raises(AudioError, match="gone.wav"):
        realdata.load_audio_folder(folder)
    (folder / "metadata.csv").unlink()
    with pytest.raises(AudioError, match="metadata.csv"):
        realdata.load_audio_folder(folder)


# ------------------------------------------------------------------------------- the real tiny set
@pytest.mark.skipif(os.environ.get("MUSICLM_SKIP_FULL_DATA") == "1", reason="MUSICLM_SKIP_FULL_DATA=1")
def test_full_tiny_synthcaps():
    """SLOW the first time (~1-2 min on 2 cores): builds data/synthcaps-tiny for the notebooks."""
    preset = get_preset("tiny")
    path = synthcaps.ensure_synthcaps(preset, num_workers=2)
    labels = all_labels(path)
    counts = {s: len(rows) for s, rows in labels.items()}
    assert sum(counts.values()) == preset.data.num_clips == 320
    n_sources = len(json.loads((path / "sources.json").read_text()))
    assert n_sources == 80
    sources = [{r["source_id"] for r in rows} for rows in labels.values()]
    assert not (sources[0] & sources[1] or sources[0] & sources[2] or sources[1] & sources[2])
    assert 24 <= counts["test"] <= 40 and 24 <= counts["validation"] <= 40
    assert len({r["style"] for rows in labels.values() for r in rows}) == len(render.STYLES)


def test_chop_strikes_on_the_excerpt_grid():
    chords = np.array([[0.0, 4.0, 60], [4.0, 1.0, 64], [5.5, 0.25, 67]])
    strum = render.chop(chords, 1.0)
    assert list(strum[:, 0]) == [0, 1, 2, 3, 4] and list(strum[:, 2]) == [60] * 4 + [64]
    stabs = render.chop(chords, 2.0, offset=1.5)
    assert list(stabs[:, 0]) == [1.5, 3.5, 5.5] and list(stabs[:, 2]) == [60, 60, 67]  # 64 falls between stabs
