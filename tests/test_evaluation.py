"""Chapter 7's measuring tools against cases whose answers are known (MusicLM Sec. 4.3-5).

FAD: identical sets, a shifted set, closed-form covariance terms, the small-sample bias. KLD: zero,
a hand-computed value and its direction. Tagger: one that ignores its input scores the majority share,
one trained on an easy synthetic task learns it, save/load round trip through `components`
(more in test_tagger.py). Transcriber: the right pitches
on synthesized tones and a chord, note F1 by hand. SynthCaps' true notes: re-rendering them gives the
stored audio back (needs data/synthcaps-tiny; skipped when absent). Listening test: a scripted
answer sheet pressed on the real widget gives the hand-counted tally.
"""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from musiclm_mini import components
from musiclm_mini.checkpoint import save_checkpoint
from musiclm_mini.components import checkpoint_config
from musiclm_mini.errors import CheckpointError
from musiclm_mini.evaluation import fad, kld, listening, tagger, train_tagger, transcribe

SR = 24_000


def random_psd(rng, d):
    a = rng.normal(size=(d, d))
    return a @ a.T + 0.1 * np.eye(d)


# ------------------------------------------------------------------------------------------ FAD
def test_identical_sets_give_zero_fad():
    x = np.random.default_rng(0).normal(size=(300, 6)) @ np.random.default_rng(1).normal(size=(6, 6))
    assert fad.fad(x, x) < 1e-8
    assert fad.fad(x, x[::-1].copy()) < 1e-8  # order of clips does not matter


def test_mean_shift_gives_squared_norm():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(200, 5)) * [1, 2, 3, 0.5, 1]
    shift = np.array([1.0, -2.0, 0.5, 0.0, 3.0])
    assert fad.fad(x, x + shift) == pytest.approx(shift @ shift, rel=1e-9)  # 14.25


def test_covariance_term_closed_forms():
    # 1-D: (m1 - m2)^2 + (s1 - s2)^2
    assert fad.frechet_distance([1.0], [[4.0]], [3.0], [[9.0]]) == pytest.approx(4.0 + 1.0)
    # diagonal covariances: sum of (sqrt(a) - sqrt(b))^2
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 4.0, 1.0])
    assert fad.frechet_distance(np.zeros(3), np.diag(a), np.zeros(3), np.diag(b)) == pytest.approx(1.0 + 0.0 + 4.0)
    # non-commuting covariances: compare with the textbook formula through scipy's general sqrtm
    from scipy.linalg import sqrtm

    rng = np.random.default_rng(3)
    s1, s2, m1, m2 = random_psd(rng, 6), random_psd(rng, 6), rng.normal(size=6), rng.normal(size=6)
    textbook = (m1 - m2) @ (m1 - m2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(sqrtm(s1 @ s2).real)
    assert fad.frechet_distance(m1, s1, m2, s2) == pytest.approx(textbook, rel=1e-7)
    assert fad.frechet_distance(m1, s1, m2, s2) == pytest.approx(fad.frechet_distance(m2, s2, m1, s1), rel=1e-9)


def test_psd_sqrt_squares_back_and_survives_singular_matrices():
    rng = np.random.default_rng(4)
    m = random_psd(rng, 5)
    r = fad.psd_sqrt(m)
    assert np.allclose(r @ r, m, atol=1e-9) and np.allclose(r, r.T)
    v = rng.normal(size=(5, 1))
    singular = v @ v.T  # rank 1: eigenvalues 0 (or -1e-16 after round-off)
    assert np.allclose(fad.psd_sqrt(singular) @ fad.psd_sqrt(singular), singular, atol=1e-9)
    assert np.isfinite(fad.frechet_distance(np.zeros(5), singular, np.zeros(5), m))


def test_fad_of_sampled_gaussians_approaches_the_true_distance():
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(20_000, 3)), 2.0 * rng.normal(size=(20_000, 3)) + [1, 0, 0]
    assert fad.fad(x, y) == pytest.approx(1.0 + 3 * (2 - 1) ** 2, rel=0.03)  # mean term 1, covariance term 3


def test_fad_small_sample_bias_and_extrapolation():
    rng = np.random.default_rng(6)
    x, y = rng.normal(size=(1000, 8)), rng.normal(size=(1000, 8))  # one distribution: true FAD is 0
    few, many = fad.fad_at(x, y, 40, draws=5), fad.fad_at(x, y, 800, draws=2)
    assert few["fad"] > 3 * many["fad"] > 0  # ~1/N bias
    assert few["num_clips"] == 40 and few["draws"] == 5
    inf = fad.fad_infinity(x, y, counts=[50, 100, 200, 400, 1000], draws=4)
    assert abs(inf["fad_inf"]) < 0.25 * few["fad"] and inf["slope"] > 0
    with pytest.raises(ValueError):
        fad.fad_at(x, y, 5000)


def test_embed_with_batches_any_function():
    waves = torch.arange(30, dtype=torch.float32).reshape(5, 6)
    emb = fad.embed_with(lambda b: torch.stack([b.mean(1), b.max(1).values], 1), waves, batch_size=2)
    assert emb.shape == (5, 2) and np.allclose(emb[:, 1], [5, 11, 17, 23, 29])
    assert np.allclose(fad.embed_with(lambda b: b[:, :3], list(waves.numpy()), batch_size=4), waves[:, :3])
    with pytest.raises(ValueError):
        fad.embed_with(lambda b: b.sum(), waves)


# ------------------------------------------------------------------------------------------ KLD
def test_kld_zero_for_identical_and_hand_computed_case():
    p = np.array([[0.5, 0.5], [0.2, 0.8]])
    assert np.allclose(kld.kl_divergence(p, p), 0.0)
    one = kld.kl_divergence([0.5, 0.5], [0.9, 0.1])[0]
    assert one == pytest.approx(0.5 * np.log(0.5 / 0.9) + 0.5 * np.log(0.5 / 0.1), rel=1e-6)  # 0.5108
    # the direction is KL(reference || generated): swapping the sides gives KL(q || p) = 0.3681
    res = kld.kld({"mode": np.array([[0.5, 0.5]])}, {"mode": np.array([[0.9, 0.1]])})
    assert res["kld"] == pytest.approx(0.5108, abs=1e-4)
    assert kld.kld({"mode": np.array([[0.9, 0.1]])}, {"mode": np.array([[0.5, 0.5]])})["kld"] == pytest.approx(
        0.3681, abs=1e-4)


def test_kld_sums_heads_and_groups_by_caption():
    ref = {"mode": np.array([[0.5, 0.5], [1.0, 0.0]]), "drums": np.array([[0.5, 0.5], [0.5, 0.5]])}
    gen = {"mode": np.array([[0.9, 0.1], [0.1, 0.9], [1.0, 0.0], [1.0, 0.0]]),
           "drums": np.array([[0.5, 0.5]] * 4)}
    res = kld.kld(ref, gen, reference_ids=["c1", "c2"], generated_ids=["c1", "c1", "c2", "c2"])
    # caption c1: generated mean [0.5, 0.5] = reference -> 0; caption c2: identical -> ~0 (eps clipping)
    assert res["kld"] == pytest.approx(0.0, abs=1e-4) and res["captions"] == ["c1", "c2"]
    res = kld.kld(ref, {h: v[[0, 2]] for h, v in gen.items()})
    assert res["per_head"]["drums"] == pytest.approx(0.0, abs=1e-9)
    assert res["kld"] == pytest.approx(res["per_head"]["mode"]) and res["kld"] == pytest.approx(0.5108 / 2, abs=1e-4)
    with pytest.raises(ValueError):
        kld.kld(ref, gen, reference_ids=["c1", "c2"])


# --------------------------------------------------------------------------------------- tagger
def labels_rows(n, rng):
    classes = tagger.head_classes()
    return [{"family": str(rng.choice(classes["family"])), "drums": bool(i % 2), "tempo_bucket": ["slow", "medium", "fast"][i % 3],
             "mode": ["major", "minor"][i % 2], "mood": classes["mood"][i % 8], "style": classes["style"][i % 9]}
            for i in range(n)]


def test_a_tagger_that_ignores_its_input_scores_the_majority_share():
    rng = np.random.default_rng(7)
    model = tagger.Tagger(tagger.TaggerConfig(sample_rate=8000, n_fft=256, hop=80, n_mels=32, f_max=3500.0))
    with torch.no_grad():
        for name, head in model.heads.items():
            head.weight.zero_()
            head.bias.zero_()
            head.bias[1] = 1.0  # always the second class, whatever it hears
    labels = labels_rows(72, rng)  # balanced: 1/2 drums, 1/3 per tempo, 1/2 per mode, 1/8 per mood, 1/9 style
    post = tagger.predict(model, torch.randn(72, 8000), 8000)
    acc = tagger.accuracy(post, labels)
    assert acc["drums"] == pytest.approx(1 / 2) and acc["tempo_bucket"] == pytest.approx(1 / 3)
    assert acc["mode"] == pytest.approx(1 / 2) and acc["mood"] == pytest.approx(1 / 8)
    assert acc["style"] == pytest.approx(1 / 9)
    # such a judge cannot tell anything apart: every pair of sets is at KLD 0 under it
    other = tagger.predict(model, 0.1 * torch.randn(72, 8000), 8000)
    assert kld.kld(post, other)["kld"] == pytest.approx(0.0, abs=1e-9)
    base = tagger.majority_baseline(labels[:36], labels[36:], heads=("drums", "mode"))
    assert base == {"drums": 0.5, "mode": 0.5}


def click_clip(bpm, drums, rng, sr=8000, seconds=3.0):
    """A synthetic clip: a tone pulsing at `bpm`, plus noise bursts on the off-beats when `drums`."""
    t = np.arange(int(sr * seconds)) / sr
    beat = 60.0 / bpm
    phase = (t + rng.uniform(0, beat)) % beat
    tone = np.sin(2 * np.pi * rng.uniform(200, 600) * t) * np.exp(-phase / 0.08)
    if drums:
        off = (phase - beat / 2) % beat
        tone = tone + rng.normal(size=t.size) * np.exp(-off / 0.02) * (off < 0.1)
    return (0.3 * tone).astype(np.float32)


@pytest.mark.slow
def test_tagger_learns_drums_and_tempo_on_a_synthetic_task(tmp_path):
    """~15 s: 100 training clips of 3 s at 8 kHz, 12 epochs; held-out clips are used for nothing else."""
    torch.set_num_threads(1)
    rng = np.random.default_rng(8)
    bpms = {"slow": (55, 70), "medium": (88, 108), "fast": (135, 170)}
    rows, waves = [], []
    for i in range(150):
        bucket, drums = ["slow", "medium", "fast"][i % 3], bool((i // 3) % 2)
        rows.append({"tempo_bucket": bucket, "drums": drums})
        waves.append(click_clip(rng.uniform(*bpms[bucket]), drums, rng))
    waves = torch.as_tensor(np.stack(waves))
    cfg = {"n_fft": 256, "hop": 80, "n_mels": 32, "f_max": 3500.0, "channels": (8, 16)}
    model = train_tagger.train_tagger(waves[:100], rows[:100], waves[100:125], rows[100:125], sample_rate=8000,
                                heads=("drums", "tempo_bucket"), epochs=12, crop_seconds=2.5, seed=0, **cfg)
    acc = tagger.accuracy(tagger.predict(model, waves[125:], 8000), rows[125:])
    assert acc["drums"] >= 0.85 and acc["tempo_bucket"] >= 0.7, acc  # chance: 0.5 and 0.33
    assert set(model.cfg.temperature) == {"drums", "tempo_bucket"}  # calibrated on the validation clips
    assert model.training_record["train_clips"] == 100 and model.training_record["epochs"] == 12
    # save / load as a component: same posteriors, temperatures included, JSON config, no pickle
    save_checkpoint(tmp_path / "tg", model.state_dict(), checkpoint_config("tagger", model.cfg, "tiny"))
    again = components.load("tagger", path=tmp_path / "tg")
    assert again.cfg == model.cfg
    a, b = tagger.predict(model, waves[125:], 8000), tagger.predict(again, waves[125:], 8000)
    assert all(np.allclose(a[h], b[h], atol=1e-6) for h in a)
    assert sorted(p.name for p in (tmp_path / "tg").iterdir()) == ["config.json", "model.safetensors"]
    # any sample rate: the same clips at 16 kHz are resampled to the tagger's 8 kHz
    up = transcribe.resample(waves[125].numpy(), 8000, 16000)
    assert tagger.predict(model, [up], 16000)["drums"].shape == (1, 2)


def test_tagger_training_is_reproducible_with_a_seed():
    torch.set_num_threads(1)
    rng = np.random.default_rng(9)
    waves = torch.as_tensor(rng.normal(size=(12, 8000)).astype(np.float32))
    rows = [{"drums": bool(i % 2)} for i in range(12)]
    cfg = {"n_fft": 256, "hop": 80, "n_mels": 16, "f_max": 3500.0, "channels": (4,)}
    runs = [train_tagger.train_tagger(waves, rows, sample_rate=8000, heads=("drums",), epochs=2, batch_size=4,
                                      crop_seconds=0.5, seed=s, **cfg).state_dict() for s in (3, 3, 4)]
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    assert not all(torch.equal(runs[0][k], runs[2][k]) for k in runs[0])


def test_temperature_calibration_has_the_closed_form_answer():
    """Logits +-10 with 3 clips in 4 right: the best T makes sigmoid(20 / T) = 3/4, so T = 20 / ln 3 = 18.2."""

    class Fixed(torch.nn.Module):
        def __init__(self, logits):
            super().__init__()
            self.logits, self.seen = logits, 0
            self.cfg = tagger.TaggerConfig(sample_rate=8000, classes={"drums": ["drums", "no drums"]})
            self.heads = {"drums": None}

        def forward(self, batch):
            out = self.logits[self.seen:self.seen + len(batch)]
            self.seen += len(batch)
            return {"drums": out}

    rows = [{"drums": True}] * 20
    logits = torch.tensor([[10.0, -10.0]] * 15 + [[-10.0, 10.0]] * 5)
    t = train_tagger.fit_temperature(Fixed(logits), torch.zeros(20, 10), rows, 8000)["drums"]
    assert t == pytest.approx(20 / np.log(3), rel=0.03)


def test_loading_a_tagger_refuses_what_is_not_a_tagger(tmp_path):
    with pytest.raises(CheckpointError):
        components.load("tagger", path=tmp_path / "missing")
    (tmp_path / "config.json").write_text(json.dumps({"format": "something else"}))
    (tmp_path / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError):
        components.load("tagger", path=tmp_path)


def test_asked_got_counts_by_hand():
    asked = [{"drums": True}, {"drums": True}, {"drums": False}, {"drums": True}]
    post = {"drums": np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7], [0.6, 0.4]])}  # classes: drums, no drums
    table = tagger.asked_got(post, asked)
    assert table["drums"]["drums"] == {"asked": 3, "got": 2, "rate": 2 / 3}
    assert table["drums"]["no drums"] == {"asked": 1, "got": 1, "rate": 1.0}
    text = tagger.format_asked_got({"real": table, "generated": tagger.asked_got(post, asked[::-1])})
    assert "drums: no drums" in text and "real" in text and "generated" in text


# ----------------------------------------------------------------------------------- transcriber
def tone(midi, seconds, sr=SR, start=0.0, total=None):
    """A plucked harmonic tone (decaying, 4 partials falling as 1/k^2) at a MIDI pitch, placed at `start` s."""
    total = total or seconds + start
    out = np.zeros(int(total * sr), np.float32)
    t = np.arange(int(seconds * sr)) / sr
    f0 = 440.0 * 2 ** ((midi - 69) / 12)
    wave = sum(np.sin(2 * np.pi * k * f0 * t) / k ** 2 for k in range(1, 5)) * np.exp(-t * 2.0) * np.minimum(t / 0.005, 1)
    out[int(start * sr):int(start * sr) + len(t)] = wave
    return out


def test_transcriber_finds_a_tone_and_a_chord():
    a4 = tone(69, 1.0, total=1.5)
    notes = transcribe.transcribe(a4, SR)
    longest = notes[np.argmax(notes[:, 1] - notes[:, 0])]
    assert longest[2] == 69 and longest[0] < 0.06 and longest[1] == pytest.approx(1.0, abs=0.1), notes
    assert all(p == 69 or p - 69 >= 12 for p in notes[:, 2]), notes  # anything else is an overtone
    chord = (tone(60, 1.2, total=1.6) + tone(64, 1.2, total=1.6) + tone(67, 1.2, total=1.6)) / 3
    found = set(transcribe.transcribe(chord, SR)[:, 2].astype(int))
    assert {60, 64, 67} <= found and len(found - {60, 64, 67}) <= 1, found
    # the same chord at 44.1 kHz is resampled and heard alike
    found_44k = set(transcribe.transcribe(transcribe.resample(chord, SR, 44_100), 44_100)[:, 2].astype(int))
    assert {60, 64, 67} <= found_44k


def test_transcribed_melody_scores_high_note_f1():
    pitches, sr = [60, 62, 64, 65, 67, 69, 71, 72], SR
    wave = sum(tone(p, 0.4, start=0.25 + 0.5 * i, total=4.5) for i, p in enumerate(pitches))
    truth = np.array([(0.25 + 0.5 * i, 0.65 + 0.5 * i, p) for i, p in enumerate(pitches)])
    score = transcribe.note_f1(truth, transcribe.transcribe(wave, sr))
    assert score["f1"] >= 0.85, score
    wrong = truth + [0, 0, 1]
    assert transcribe.note_f1(wrong, transcribe.transcribe(wave, sr))["f1"] <= 0.2


def test_note_f1_by_hand():
    notes = np.array([[0.0, 0.5, 60], [0.5, 1.0, 64], [1.0, 1.5, 67], [1.0, 1.5, 48]])
    assert transcribe.note_f1(notes, notes)["f1"] == 1.0
    assert transcribe.note_f1(notes, notes + [0.03, 0.3, 0])["f1"] == 1.0  # onsets within 50 ms; offsets ignored
    assert transcribe.note_f1(notes, notes + [0.08, 0, 0])["f1"] == 0.0
    half = transcribe.note_f1(notes, notes[:2])
    assert half["precision"] == 1.0 and half["recall"] == 0.5 and half["f1"] == pytest.approx(2 / 3)
    octave = notes + [0, 0, 12]
    assert transcribe.note_f1(notes, octave)["f1"] == 0.0
    assert transcribe.note_f1(notes, octave, octave_invariant=True)["f1"] == 1.0
    assert transcribe.note_f1([], [])["f1"] == 1.0 and transcribe.note_f1(notes, [])["f1"] == 0.0


def test_transcriber_embedding_shape_and_pitch_sense():
    a, b = tone(60, 1.0), tone(72, 1.0)
    emb = fad.transcriber_embedding([a, a * 0.5, b], SR)
    assert emb.shape == (3, 352)
    assert np.linalg.norm(emb[0] - emb[1]) < np.linalg.norm(emb[0] - emb[2])  # louder/softer < another pitch


# ------------------------------------------------------------------------- SynthCaps' true notes
def tiny_dir():
    from musiclm_mini.data import synthcaps

    path = synthcaps.data_root() / "synthcaps-tiny"
    if os.environ.get("MUSICLM_SKIP_FULL_DATA") == "1" or not (path / "config.json").exists():
        pytest.skip("needs data/synthcaps-tiny (python -m musiclm_mini.data.synthcaps --preset tiny)")
    return path


@pytest.mark.slow
def test_synthcaps_true_notes_rerender_the_stored_audio():
    from musiclm_mini.data import render, synthcaps

    path = tiny_dir()
    clips = synthcaps.labels_from_dir(path, "test")[:2]
    waves = synthcaps.waveforms_from_dir(path, "test")[:2]
    for clip, stored in zip(clips, waves):
        variant, parts, cfg = transcribe.synthcaps_parts(path, clip)
        n = int(round(cfg["clip_seconds"] * cfg["sample_rate"]))
        audio = render.render(parts, cfg["sample_rate"], n, render.PEAK[variant["dynamics"]])
        pcm = np.frombuffer(render.encode_wav(audio, cfg["sample_rate"])[44:], "<i2")
        assert np.array_equal(pcm, np.round(stored.numpy() * 32768).astype(np.int16)), clip["clip_id"]
        notes = transcribe.synthcaps_notes(path, clip)
        assert len(notes) > 10 and notes[:, 0].min() >= 0 and notes[:, 1].max() <= cfg["clip_seconds"]
        assert len(transcribe.synthcaps_notes(path, clip, roles=("melody",))) < len(notes)
    # the transcriber agrees better with a clip's own notes than with another clip's
    own = transcribe.score_against_synthcaps(waves[:1].numpy(), SR, path, clips[:1])[0]
    other = transcribe.score_against_synthcaps(waves[:1].numpy(), SR, path, clips[1:2])[0]
    assert own["clip_id"] == clips[0]["clip_id"] and own["f1"] > other["f1"] + 0.1, (own, other)


def test_synthcaps_parts_refuses_a_clip_whose_labels_disagree():
    path = tiny_dir()
    from musiclm_mini.data import synthcaps

    clip = dict(synthcaps.labels_from_dir(path, "validation")[0])
    clip["tempo_bpm"] += 1
    with pytest.raises(ValueError, match="tempo_bpm"):
        transcribe.synthcaps_parts(path, clip)


# ------------------------------------------------------------------------------ listening test
def test_make_pairs_balances_systems_and_hides_sides():
    clips = {s: [np.full(100, k, np.float32) for k in range(4)] for s in ("real", "model", "retrieval")}
    pairs = listening.make_pairs(clips, [f"caption {k}" for k in range(4)], seed=0)
    assert len(pairs) == 4 * 3
    meetings = {}
    for p in pairs:
        key = tuple(sorted((p.a_system, p.b_system)))
        meetings[key] = meetings.get(key, 0) + 1
        assert p.a_wave[0] == p.caption_index and p.caption == f"caption {p.caption_index}"
    assert meetings == {("model", "real"): 4, ("model", "retrieval"): 4, ("real", "retrieval"): 4}
    assert len({p.a_system for p in pairs}) == 3  # sides are shuffled
    again = listening.make_pairs(clips, [f"caption {k}" for k in range(4)], seed=0)
    assert [(p.a_system, p.b_system, p.caption_index) for p in again] == \
           [(p.a_system, p.b_system, p.caption_index) for p in pairs]


def test_scripted_answer_sheet_through_the_widget_gives_the_hand_tally():
    w = np.zeros(2400, np.float32)
    pairs = [listening.Pair("c0", "x", "y", w, w), listening.Pair("c0", "z", "x", w, w),
             listening.Pair("c1", "y", "z", w, w), listening.Pair("c1", "x", "y", w, w),
             listening.Pair("c2", "y", "x", w, w)]
    sheet = ["A", "B", None, "B", "B"]  # x beats y; x beats z; skipped; y beats x; x beats y
    expected = {"x": {"wins": 3, "comparisons": 4}, "y": {"wins": 1, "comparisons": 3},
                "z": {"wins": 0, "comparisons": 1}}
    test = listening.ListeningTest(pairs, SR)
    page = test.widget()
    assert "Pair 1 of 5" in page.children[0].value
    assert listening.apply_answer_sheet(test, sheet) == expected
    assert test.answers == sheet and test.done and "3 wins of 4" in test._built["result"].value
    assert listening.tally(pairs, sheet) == expected
    with pytest.raises(ValueError):
        test.answer("A")  # nothing left to answer
    sign = listening.sign_test(pairs, sheet, "x", "y")
    assert sign["wins"] == 2 and sign["comparisons"] == 3 and sign["p_value"] == pytest.approx(1.0)


def test_sign_test_and_automatic_judge():
    w = np.zeros(10, np.float32)
    pairs = [listening.Pair("c", "good", "bad", w + 1, w) for _ in range(10)]
    answers = listening.answers_from_scores(pairs, lambda caption, wave: float(wave.mean()))
    assert answers == ["A"] * 10
    assert listening.sign_test(pairs, answers[:9] + ["B"], "good", "bad")["p_value"] == pytest.approx(0.021484375)


def test_static_html_has_two_players_per_pair():
    w = np.zeros(2400, np.float32)
    pairs = [listening.Pair("a <b>", "x", "y", w, w), listening.Pair("c", "y", "x", w, w)]
    page = listening.static_html(pairs, SR)
    assert page.count("<audio") == 4 and "a &lt;b&gt;" in page and page.count("which was which") == 2


# ------------------------------------------------------------------ Chapter 7's exercise and Table 1
def test_frechet_exercise_grader_passes_the_answer_and_names_mistakes(capsys):
    from musiclm_mini.exercises import check_frechet_distance
    from musiclm_mini.exercises.evaluation import reference_frechet_distance

    # the reference is independent code: it agrees with the package's eigh-based FAD
    rng = np.random.default_rng(11)
    s1, s2, m1, m2 = random_psd(rng, 7), random_psd(rng, 7), rng.normal(size=7), rng.normal(size=7)
    assert reference_frechet_distance(m1, s1, m2, s2) == pytest.approx(fad.frechet_distance(m1, s1, m2, s2), rel=1e-8)
    assert check_frechet_distance(reference_frechet_distance, verbose=False)
    assert check_frechet_distance(fad.frechet_distance, verbose=False)

    def stub(mu1, sigma1, mu2, sigma2):
        raise NotImplementedError

    def no_factor_two(mu1, sigma1, mu2, sigma2):
        return fad.frechet_distance(mu1, sigma1, mu2, sigma2) + fad.trace_sqrt_product(sigma1, sigma2)

    def unsquared_mean(mu1, sigma1, mu2, sigma2):
        d = np.asarray(mu1) - np.asarray(mu2)
        return fad.frechet_distance(mu1, sigma1, mu2, sigma2) - d @ d + np.sqrt(d @ d)

    capsys.readouterr()
    assert not check_frechet_distance(stub)
    assert "not implemented yet" in capsys.readouterr().out
    assert not check_frechet_distance(no_factor_two)
    assert "factor 2" in capsys.readouterr().out
    assert not check_frechet_distance(unsquared_mean)
    assert "SQUARED" in capsys.readouterr().out
