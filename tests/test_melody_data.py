"""Chapter 8's data and training: melody-keeping augmentations, batches, retrieval, the whistle, the trainer.

Tiny random inputs; the training smoke test runs a micro ViT on a fake melody set for a few steps.
"""
import json

import numpy as np
import pytest
import torch

from musiclm_mini.config import get_preset
from musiclm_mini.data import melody_pairs, scores
from musiclm_mini.melody import augment, dataset, retrieval
from musiclm_mini.melody.frontend import SAMPLE_RATE, MelSettings, log_standardise
from musiclm_mini.train.__main__ import main

torch.set_num_threads(1)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_smear_is_causal_and_decays():
    power = torch.zeros(2, 3, 100)
    power[:, :, 40] = 1.0  # one loud frame
    out = augment.smear(power, gen(), frame_rate=50.0)
    assert torch.equal(out[..., :41], power[..., :41])  # nothing before the frame, the frame itself unchanged
    tail = out[0, 0, 41:] - power[0, 0, 41:]
    assert (tail[:5] > 0).all() and tail[0] > tail[10] > tail[40]  # a tail after it, decaying


def test_noise_lands_near_its_snr_and_swell_survives_standardising_unlike_a_constant_gain():
    power = torch.rand(64, 8, 50) + 0.5
    added = augment.noise(power, gen(), snr_db=(10.0, 10.0)) - power
    assert (added > 0).all()
    assert float(added.mean() / power.mean()) == pytest.approx(0.1, rel=0.1)  # 10 dB below the signal
    x = torch.rand(2, 8, 50) + 0.5
    assert torch.allclose(log_standardise(x * 4.0), log_standardise(x), atol=1e-5)  # gain alone is no change
    assert not torch.allclose(log_standardise(augment.swell(x, gen())), log_standardise(x), atol=1e-3)


def test_augment_is_a_pure_function_of_the_generator():
    power = torch.rand(6, 8, 60)
    a, b = augment.augment(power, gen(3), 50.0), augment.augment(power, gen(3), 50.0)
    assert torch.equal(a, b) and not torch.equal(a, augment.augment(power, gen(4), 50.0))


def fake_set(n_melodies, renderings, seconds, seed=0):
    """Random int16 clips and labels in the melody set's format: 3 instruments then hum and whistle."""
    rng = np.random.default_rng(seed)
    names = ["piano", "violin", "flute", "hum", "whistle"][:renderings]
    labels = [{"melody_id": f"m{m}", "variant": v, "program": -1 if v in ("hum", "whistle") else 0,
               "source_id": f"score{m // 2}"} for m in range(n_melodies) for v in names]  # two melodies per score
    pcm = (rng.normal(0, 0.1, (len(labels), int(seconds * SAMPLE_RATE))) * 32767).astype(np.int16)
    return pcm, labels


def test_a_batch_cuts_the_same_notes_from_every_rendering_of_a_melody():
    pcm, labels = fake_set(4, 3, 4.5)
    pcm[3:6] = pcm[3]  # melody 1: three identical renderings
    data = dataset.MelodyGroups(pcm, labels, MelSettings(n_mels=16))
    power, lab = data.batch([1, 2], per_group=3, frames=200, g=gen(), jitter=0)
    assert power.shape == (6, 16, 200) and lab.tolist() == [0, 0, 0, 1, 1, 1]
    assert torch.equal(power[0], power[1]) and torch.equal(power[0], power[2])  # one offset per melody
    assert not torch.equal(power[3], power[4])


def test_siblings_are_the_other_melodies_of_the_same_score():
    pcm, labels = fake_set(5, 2, 4.5)
    data = dataset.MelodyGroups(pcm, labels, MelSettings(n_mels=16))
    assert data.siblings == [[1], [0], [3], [2], []]
    assert data.with_siblings([0, 2, 4], gen()) == [0, 1, 2, 3, 4]  # melody 4 is alone in its score
    assert data.with_siblings([0, 1], gen()) == [0, 1]  # drawn twice, kept once


def test_chroma_baselines_find_the_pitch_class_of_a_tone():
    from musiclm_mini.melody import baselines

    t = torch.arange(SAMPLE_RATE) / SAMPLE_RATE
    tones = torch.stack([torch.sin(2 * torch.pi * 440.0 * t), torch.sin(2 * torch.pi * 261.63 * 2 * t)])  # A4, C5
    key = baselines.key_profile(baselines.chroma(tones))
    assert key.argmax(1).tolist() == [0, 3]  # pitch classes counted from A: A = 0, C = 3
    emb = baselines.baseline_embeddings(tones.reshape(2, 1, -1))
    assert emb["key profile"].shape == (2, 1, 12) and emb["chroma sequence"].shape[:2] == (2, 1)


def test_retrieval_is_perfect_for_perfect_embeddings_and_counts_ranks_like_a_loop():
    _, labels = fake_set(6, 5, 1)
    melody = torch.tensor([int(lab["melody_id"][1:]) for lab in labels])
    perfect = torch.nn.functional.one_hot(melody, 8).float()[:, None, :].repeat(1, 3, 1)  # (N, W, D)
    figures = retrieval.same_melody_retrieval(perfect, labels)
    assert figures["melodies"] == 6 and figures["chance@1"] == pytest.approx(1 / 6) and figures["chance@5"] == pytest.approx(5 / 6)
    assert figures["instrument_recall@1"] == figures["hum_recall@1"] == figures["whistle_recall@1"] == 1.0
    emb = torch.nn.functional.normalize(torch.randn(len(labels), 3, 4, generator=gen()), dim=-1)
    got = retrieval.same_melody_retrieval(emb, labels)
    hits = []  # the hum against instrument slot j, by hand
    for j in range(3):
        for m in range(6):
            q = emb[m * 5 + 3]
            sims = [float((q * emb[g * 5 + j]).sum(-1).mean()) for g in range(6)]
            hits.append(sum(s > sims[m] for s in sims) < 1)
    assert got["hum_recall@1"] == pytest.approx(sum(hits) / len(hits))


def test_whistle_sounds_at_its_pitch():
    notes = np.array([[0.1, 0.9, 81, 80]])  # A5, 880 Hz
    wave = melody_pairs.whistle(notes, SAMPLE_RATE, SAMPLE_RATE, np.random.default_rng(0))
    assert wave.dtype == np.float32 and np.isfinite(wave).all() and np.abs(wave).max() == pytest.approx(0.5, rel=1e-3)
    spectrum = np.abs(np.fft.rfft(wave[int(0.4 * SAMPLE_RATE):int(0.9 * SAMPLE_RATE)]))
    assert abs(np.argmax(spectrum) * 2 - 880) < 15  # 0.5 s of audio: 2 Hz per bin


def test_melody_ngrams_ignore_transposition_and_excerpts_differ():
    tune = np.array([[i, 1.0, 60 + (i * 7) % 12] for i in range(20)], float)
    up = tune + [0, 0, 5]
    assert melody_pairs.melody_ngrams(tune, 6) == melody_pairs.melody_ngrams(up, 6)
    assert not melody_pairs.melody_ngrams(tune, 6) & melody_pairs.melody_ngrams(tune[:, [0, 1, 2]] * [1, 2, 1], 6)
    score = scores.ScoreNotes("x", "x", "mono", [tune], np.arange(0, 20, 4.0), 4.0, 0, "major")
    starts = melody_pairs.pick_excerpts(score, 8.0, 3, 4, ngram=12)
    assert starts == [0.0, 8.0]  # 8-beat excerpts that do not overlap
    # The same tune twice over (an AABB form): 16 straddles the join (new steps), 24 and 32 repeat the first half.
    twice = scores.ScoreNotes("x", "x", "mono", [np.concatenate([tune, tune + [20, 0, 0]])],
                              np.arange(0, 40, 4.0), 4.0, 0, "major")
    assert melody_pairs.pick_excerpts(twice, 8.0, 6, 4, ngram=6) == [0.0, 8.0, 16.0]


MICRO = ["--preset", "tiny", "--quiet", "--threads", "1", "--batch-size", "2", "--set", "melody.n_layers=1",
         "--set", "melody.d_model=16", "--set", "melody.n_heads=2", "--set", "melody.d_ff=32",
         "--set", "melody.embed_dim=8", "--set", "melody.rvq.dim=8",
         "--set", "melody.rvq.codebook_size=16", "--set", "melody.rvq.num_quantizers=3", "--set", "train.warmup_steps=1"]


@pytest.mark.slow
def test_the_trainer_runs_validates_and_resumes_exactly(tmp_path, monkeypatch):
    folder = tmp_path / "set"
    folder.mkdir()
    for split, (n, seconds) in {"train": (4, 4.5), "validation": (3, 10)}.items():
        pcm, labels = fake_set(n, 5, seconds, seed=len(split))
        np.save(folder / f"waveforms-{split}.npy", pcm)
        (folder / f"clips-{split}.json").write_text(json.dumps(labels))
    monkeypatch.setattr(melody_pairs, "ensure_melody_set", lambda preset, *a, **k: folder)
    monkeypatch.setattr(melody_pairs, "load_melody_split", lambda preset, split: melody_pairs.load_melody_set(folder, split))
    flags = [*MICRO, "--steps", "4", "--val-every", "2", "--checkpoint-every", "2"]
    main(["melody-embedder", *flags, "--out", str(tmp_path / "a")])
    main(["melody-embedder", *flags, "--stop-at", "2", "--out", str(tmp_path / "b")])
    main(["melody-embedder", *flags, "--resume", "--out", str(tmp_path / "b")])
    metrics = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert metrics["steps"] == 4 and metrics["validation"]["chance@1"] == pytest.approx(1 / 3)
    from safetensors.torch import load_file

    a, b = load_file(str(tmp_path / "a" / "model.safetensors")), load_file(str(tmp_path / "b" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    from musiclm_mini.components import load

    model = load("melody-embedder", path=tmp_path / "a")
    assert model.embed(torch.zeros(1, SAMPLE_RATE * 10) + 0.01).shape == (1, 3, 8)
    assert len(metrics["rvq_mse_per_level"]) == 3 and "instrument_recall@1" in metrics["validation_tokens"]
    assert set(metrics["validation_baselines"]) == {"key profile", "chroma sequence"}
    from musiclm_mini.melody.tokens import melody_tokens

    tokens = melody_tokens(model, torch.randn(2, SAMPLE_RATE * 10) * 0.1)  # the fitted RVQ travels with the weights
    assert tokens.shape == (2, 9) and tokens.dtype == torch.long and int(tokens.max()) < 16


def test_a_split_rendered_alone_gives_the_clips_of_the_whole_set(tmp_path):
    preset = get_preset("tiny")
    splits = {"bach/bwv66.6.mxl": "validation", "bach/bwv26.6.mxl": "train"}
    config = melody_pairs.MelodySetConfig(extra_scores=0, extra_held_out=0, excerpts=2, instruments=1, train_seconds=4.5,
                                          eval_seconds=4.5)
    folder = melody_pairs.generate_melody_set(preset.data, config, splits, tmp_path / "set")
    for split in ("validation", "train"):
        pcm, labels = melody_pairs.load_melody_set(folder, split)
        rows = [r for job in melody_pairs.melody_jobs(preset.data, config, splits, split)[0]
                for r in melody_pairs._melody_set_job(job)]
        assert len(rows) == len(labels) >= 3 and [lab for lab, _ in rows] == labels
        assert all(np.array_equal(a, b) for (_, a), b in zip(rows, pcm))


def test_degrade_adds_a_room_and_noise_at_the_asked_ratio_and_is_seeded():
    t = torch.arange(2 * SAMPLE_RATE) / SAMPLE_RATE
    wave = 0.5 * torch.sin(2 * torch.pi * 440.0 * t)[None].repeat(2, 1)
    a = augment.degrade(wave, gen(0), snr_db=10.0)
    assert torch.equal(a, augment.degrade(wave, gen(0), snr_db=10.0)) and not torch.equal(a, augment.degrade(wave, gen(1)))
    quiet = augment.degrade(wave, gen(0), snr_db=40.0)
    noise = a - quiet  # same room (same generator draws), noise 10 dB vs 40 dB below
    assert float(noise.pow(2).mean() / quiet.pow(2).mean()) == pytest.approx(0.1 - 1e-4, rel=0.15)


def test_arrangements_add_one_clip_per_melody_and_leave_the_solo_renderings_unchanged(tmp_path):
    preset = get_preset("tiny")
    base = dict(extra_scores=0, extra_held_out=0, excerpts=2, instruments=1, eval_seconds=4.5)
    sets = {flag: melody_pairs.generate_melody_set(preset.data, melody_pairs.MelodySetConfig(**base, arrangements=flag),
                                                   {"bach/bwv66.6.mxl": "validation"}, tmp_path / str(flag))
            for flag in (False, True)}
    solo, solo_labels = melody_pairs.load_melody_set(sets[False], "validation")
    both, labels = melody_pairs.load_melody_set(sets[True], "validation")
    kept = [i for i, lab in enumerate(labels) if lab["variant"] != "arrangement"]
    assert np.array_equal(both[kept], solo) and [labels[i] for i in kept] == solo_labels
    melodies = [lab["melody_id"] for lab in labels if lab["variant"] == "arrangement"]
    assert sorted(melodies) == sorted({lab["melody_id"] for lab in solo_labels})
    emb = torch.nn.functional.one_hot(torch.tensor([int(lab["melody_id"][-1]) for lab in labels]), 4).float()[:, None]
    figures = retrieval.same_melody_retrieval(emb, labels)
    assert figures["hum_to_arrangement_recall@1"] == figures["instrument0_to_arrangement_recall@1"] == 1.0
