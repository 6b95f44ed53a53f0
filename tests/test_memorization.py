"""Memorization (Chapter 10): the OT histogram cost, tau's calibration, and a detector that finds a model that copies."""
import dataclasses

import numpy as np
import pytest
import torch

from musiclm_mini.config import TransformerConfig, get_preset
from musiclm_mini.evaluation.memorization import (calibrate_tau, entropy_bits, exact_matches, greedy_continuations,
                                                  histogram_cost, histograms, negative_pairs, prompts, wilson_interval)
from musiclm_mini.hierarchy.stage_models import build_stage_model, stage_loss, stage_model_config
from musiclm_mini.hierarchy.tokens import make_stage

torch.set_num_threads(1)
RNG = np.random.default_rng(0)
CENTROIDS = RNG.normal(size=(16, 4))


def random_histogram(k=16, n=25, seed=0):
    return histograms(torch.as_tensor(np.random.default_rng(seed).integers(0, k, (1, n))), k)[0]


def test_cost_is_zero_for_identical_symmetric_and_finite_with_empty_bins():
    a, b = random_histogram(seed=1), random_histogram(seed=2)
    assert (a == 0).any()  # some tokens never occur: empty bins
    assert histogram_cost(a, a, CENTROIDS, "emd") == pytest.approx(0.0, abs=1e-9)
    assert histogram_cost(a, b, CENTROIDS, "emd") == pytest.approx(histogram_cost(b, a, CENTROIDS, "emd"))
    assert np.isfinite(histogram_cost(a, b, CENTROIDS)) and histogram_cost(a, b, CENTROIDS) > 0


def test_sinkhorn_matches_exact_emd_on_small_cases():
    for seed in range(5):
        a, b = random_histogram(seed=seed), random_histogram(seed=seed + 10)
        exact, entropic = histogram_cost(a, b, CENTROIDS, "emd"), histogram_cost(a, b, CENTROIDS, "sinkhorn", reg=0.01)
        assert entropic == pytest.approx(exact, rel=0.05), (exact, entropic)


def test_cost_of_one_token_moved_is_the_distance_between_centroids():
    a, b = np.zeros(16), np.zeros(16)
    a[3], b[7] = 5, 5
    assert histogram_cost(a, b, CENTROIDS, "emd") == pytest.approx(np.linalg.norm(CENTROIDS[3] - CENTROIDS[7]))


@pytest.mark.filterwarnings("ignore")  # POT warns about the division by zero it then hides
def test_an_empty_histogram_is_an_error_not_a_perfect_match():
    import ot

    # What the issue warned about: POT's default Sinkhorn gives 0 for an empty (all-zero) histogram.
    assert float(ot.sinkhorn2(np.zeros(3), np.ones(3) / 3, np.ones((3, 3)), 0.1)) == 0.0
    with pytest.raises(ValueError, match="empty"):
        histogram_cost(np.zeros(16), random_histogram(), CENTROIDS)


def test_tau_calibration_gives_the_stated_false_positive_rate_on_synthetic_negatives():
    costs = np.random.default_rng(3).uniform(0, 1, 50_000)
    out = calibrate_tau(costs, 1e-3)
    assert out["observed_rate"] <= 1e-3 and out["tau"] == pytest.approx(1e-3, abs=5e-4)
    fresh = np.random.default_rng(4).uniform(0, 1, 200_000)  # held-out negatives: the rate holds
    assert np.mean(fresh < out["tau"]) < 2e-3
    assert calibrate_tau(costs[:100], 1e-4)["negatives_needed"] == 30_000


def test_negative_pairs_are_distinct_and_never_a_clip_with_itself():
    pairs = negative_pairs(10, 90)
    assert len(set(pairs)) == 90 and all(i != j for i, j in pairs)


def test_wilson_interval_and_entropy():
    lo, hi = wilson_interval(0, 100)
    assert lo == 0 and 0.02 < hi < 0.05
    assert entropy_bits(torch.tensor([[1, 1, 1, 1], [0, 1, 2, 3]])).tolist() == [0.0, 2.0]


def test_prompts_refuse_a_prompt_longer_than_the_clip():
    preset = get_preset("tiny")
    stage = make_stage("semantic", stage_model_config("semantic", preset).layout)
    with pytest.raises(ValueError, match="semantic tokens"):
        prompts(stage, torch.zeros(2, 12, dtype=torch.long), torch.zeros(2, 30, dtype=torch.long), 20, 20)


def test_the_detector_finds_a_model_that_copies():
    """A positive control in miniature: a small stage trained to copy 4 clips continues them exactly;
    an untrained one does not."""
    preset = get_preset("tiny")
    cfg = stage_model_config("semantic", preset)
    small = TransformerConfig(n_layers=2, n_heads=2, d_model=64, d_ff=128, dropout=0.0)
    cfg = dataclasses.replace(cfg, stage=dataclasses.replace(cfg.stage, transformer=small, mulan_codebook_embedding=False))
    stage = make_stage("semantic", cfg.layout)
    g = torch.Generator().manual_seed(0)
    mulan = torch.randint(0, cfg.layout.mulan_codes, (4, cfg.layout.mulan_levels), generator=g)
    semantic = torch.randint(0, cfg.layout.semantic_codes, (4, 30), generator=g)
    condition, given, target = prompts(stage, mulan, semantic, 10, 20)
    torch.manual_seed(0)
    untrained = build_stage_model(cfg)
    model = build_stage_model(cfg)
    seq, mask = stage.sequence(condition, torch.cat([given, target], dim=1))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(300):
        loss, _ = stage_loss(model, seq, mask)
        opt.zero_grad()
        loss.backward()
        opt.step()
    copied = exact_matches(greedy_continuations(model, stage, condition, given, 20), target)
    fresh = exact_matches(greedy_continuations(untrained, stage, condition, given, 20), target)
    assert copied.all() and not fresh.any()


def test_the_recorded_study_catches_the_control_and_flags_the_shipped_stage_no_more_than_unseen_clips():
    """book/data/memorization-tiny.json (scripts/measure_memorization.py): the overfit control is detected at
    every prompt of 10 tokens or more, and the shipped stage matches its training clips no more often than clips it
    never saw (what Chapter 10 reads from it)."""
    import json
    from pathlib import Path

    from scipy.stats import fisher_exact

    study = json.loads((Path(__file__).parents[1] / "book" / "data" / "memorization-tiny.json").read_text())
    control = study["systems"]["overfit control, its training clips"]
    assert all(r["approx_ci95"][0] > study["tau"]["observed_rate"] for r in control if r["prompt_tokens"] >= 10)
    pooled = {k: (sum(r["exact"] for r in rows), sum(r["clips"] for r in rows)) for k, rows in study["systems"].items()}
    (ea, na), (eb, nb) = pooled["shipped, training clips"], pooled["shipped, test clips"]
    assert fisher_exact([[ea, na - ea], [eb, nb - eb]], alternative="greater")[1] > 0.05
    assert study["tau"]["negatives"] >= study["tau"]["negatives_needed"]
