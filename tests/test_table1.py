"""Chapter 7's Table 1 (`scripts/measure_table1.py`, `evaluation/statistics.py`): its statistics against known
answers, the no-semantic ablation's token layout, bad input, and the recorded JSON's completeness."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from musiclm_mini.evaluation import fad, kld, tagger


def table1_script():
    import importlib.util

    path = Path(__file__).parent.parent / "scripts" / "measure_table1.py"
    spec = importlib.util.spec_from_file_location("measure_table1", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_table1_fast_fad_equals_fad_and_the_tests_behave():
    from musiclm_mini.evaluation import statistics as m
    rng = np.random.default_rng(12)
    for n1, n2, d in ((32, 32, 352), (20, 30, 5), (200, 150, 8)):  # fewer clips than dimensions, and more
        a, b = rng.normal(size=(n1, d)), rng.normal(size=(n2, d)) * 1.5 + 0.3
        assert m.fast_fad(a, b) == pytest.approx(fad.fad(a, b), rel=1e-7)
    assert m.fast_fad(a, a) < 1e-8
    # sign-flip test: a clear paired effect is significant, none is not
    x = rng.normal(size=32)
    assert m.paired_permutation_p(x + 1.0, x, seed=0) < 0.001
    assert m.paired_permutation_p(x, x + rng.normal(scale=1e-3, size=32) * 0, seed=0) == 1.0
    lo, hi = m.bootstrap_ci(x)
    assert lo < x.mean() < hi
    # FAD swap test: two sets from one distribution are not told apart; a shifted set is
    ref, same, other = rng.normal(size=(32, 6)), rng.normal(size=(32, 6)), rng.normal(size=(32, 6))
    assert m.fad_swap_p(ref, same, other, 200) > 0.05
    assert m.fad_swap_p(ref, same, other + 2.0, 200) < 0.01
    draws = m.fad_draws(ref, np.stack([same, other], 1), draws=5)
    assert draws["draws"] == 5 and draws["std"] > 0


def test_table1_null_condition_and_mulan_only_stages():
    from musiclm_mini.config import get_preset
    from musiclm_mini.hierarchy.tokens import TokenLayout, make_stage

    m = table1_script()
    layout = TokenLayout.from_preset(get_preset("tiny"))
    stage = make_stage("coarse", layout)
    M = torch.randint(0, layout.mulan_codes, (2, layout.mulan_levels))
    S = torch.randint(0, layout.semantic_codes, (2, 5))
    plain, null = stage.condition(M, S), m.NullCondition(stage).condition(M, S)
    assert (null[:, :layout.mulan_levels] == layout.null_condition).all()
    assert torch.equal(null[:, layout.mulan_levels:], plain[:, layout.mulan_levels:])
    assert m.NullCondition(stage).vocab_size == stage.vocab_size  # everything else is the stage's
    ablation = make_stage("coarse-nosemantic", layout)
    only = ablation.condition(M, S)
    assert torch.equal(only, plain[:, :layout.mulan_levels])  # the MuLan ids, and no semantic ids
    A = torch.randint(0, layout.codec_codes, (2, layout.coarse_levels, 3))
    assert torch.equal(ablation.encode_target(A), stage.encode_target(A)) and ablation.vocab_size == stage.vocab_size


@pytest.mark.parametrize("flags", [["--samples", "0"], ["--seconds", "11"], ["--split", "train"],
                                   ["--ablation", "/nonexistent"], ["--json", "/nonexistent/t.json"]])
def test_table1_bad_input_is_one_error_line_and_exit_2(flags):
    import subprocess
    import sys

    root = Path(__file__).parent.parent
    done = subprocess.run([sys.executable, str(root / "scripts" / "measure_table1.py"), *flags], cwd=root,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr


def test_table1_json_is_complete_and_honest():
    """The committed Table 1: every system measured on held-out captions, every comparison with a p-value,
    the paper's rows as in `paper.py`, and the ablation never filled from the paper."""
    from musiclm_mini import paper

    path = Path(__file__).parent.parent / "book" / "data" / "table1-tiny.json"
    if not path.exists():
        pytest.skip("book/data/table1-tiny.json not generated yet (python scripts/measure_table1.py)")
    r = json.loads(path.read_text())
    assert r["settings"]["split"] == "test" and r["captions"] == 32 and r["test_split_runs"] >= 1
    assert {"real", "codec", "musiclm", "unconditioned", "retrieval"} <= set(r["systems"])
    for s in r["systems"]:
        row = r["rows"][s]
        for key in ("fad_bp", "fad_mulan", "mcc", "asked_got", "wins"):
            assert key in row, (s, key)
        lo, hi = row["mcc"]["ci95"]
        assert lo <= np.mean(r["per_caption"][s]["mcc"]) + 1e-6 and hi >= np.mean(r["per_caption"][s]["mcc"]) - 1e-6
        assert 0 <= row["mcc"]["p_permutation"] <= 1
        if s != "musiclm":
            c = row["comparisons"]["vs_musiclm"]
            assert all(0 < c[k] <= 1 for k in ("fad_bp_p", "fad_mulan_p", "mcc_p", "asked_got_p"))
            assert 0 <= r["wins"]["tagger"]["vs_musiclm"][s]["p_value"] <= 1
        for judge in ("tagger", "mulan"):
            assert row["wins"][judge]["comparisons"] == r["pairs_per_system"]
    assert "kld" not in r["rows"]["real"]  # the real clips are KLD's reference
    assert r["paper"]["table1"] == [t.__dict__ for t in paper.TABLE1]
    if r["ablation"]["status"] != "measured":
        assert "no_semantic" not in r["rows"] and "no_semantic" not in r["systems"]
