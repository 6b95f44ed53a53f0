"""Tests of the text-to-music pipeline and its command line (Chapter 7), on small random models."""
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from conftest import FakeMuLan, micro_preset
from musiclm_mini import __main__ as cli
from musiclm_mini.audio import load_audio
from musiclm_mini.errors import CheckpointError, TextError
from musiclm_mini.hierarchy.stage_models import build_stage_model, stage_model_config
from musiclm_mini.musiclm import MusicLM, adherence_statistics, audio_adherence, caption_adherence, check_seconds, check_text
from musiclm_mini.tokenizers.soundstream import SoundStream

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def model():
    p = micro_preset()
    torch.manual_seed(0)
    stages = {s: build_stage_model(stage_model_config(s, p)).eval() for s in ("semantic", "coarse", "fine")}
    with torch.no_grad():  # large random weights: peaked, input-dependent distributions, unlike a fresh init
        for m in stages.values():
            for prm in m.parameters():
                prm.normal_(0.0, 0.5)
    return MusicLM(p, SoundStream(p.codec).eval(), FakeMuLan(p), stages)


# --- input checks ------------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_empty_text_is_a_text_error(text, model):
    with pytest.raises(TextError, match="empty"):
        check_text(text)
    with pytest.raises(TextError, match="empty"):
        model.generate(text, 1.0)
    with pytest.raises(TextError, match="string"):
        check_text(None)


@pytest.mark.parametrize("seconds,message", [(0, "positive"), (-2.5, "positive"), (301, "at most 300"),
                                             (1e9, "at most 300"), (math.nan, "finite"), (math.inf, "finite"),
                                             ("10", "finite")])
def test_bad_durations_are_value_errors(seconds, message, model):
    with pytest.raises(ValueError, match=message):
        check_seconds(seconds)
    with pytest.raises(ValueError, match=message):
        model.generate("a violin", seconds)


# --- generation ----------------------------------------------------------------------------------
def test_generate_length_reproducibility_and_seed(model):
    a = model.generate("a calming violin melody", 2.5, seed=0)
    assert a.shape == (round(2.5 * 24_000),) and a.dtype == torch.float32 and torch.isfinite(a).all()
    assert torch.equal(a, model.generate("a calming violin melody", 2.5, seed=0))  # same seed, same audio
    assert not torch.equal(a, model.generate("a calming violin melody", 2.5, seed=1))
    assert set(model.timings) == {"mulan", "semantic", "coarse", "fine", "decode"}


def test_generated_tokens_cover_the_duration_and_stay_in_their_vocabularies(model):
    p = model.preset
    M = FakeMuLan(p).tokens_from_text(["a", "b"])
    # 3 s: longer than every micro crop (2 s, 1 s, 0.5 s), so all three stages slide or chunk
    tokens = model.generate_tokens(M, 3.0, seed=0)
    units = math.ceil(3.0 * 24_000 / 1920)
    assert tokens["semantic"].shape == (2, units) and tokens["semantic"].max() < p.semantic.num_clusters
    assert tokens["coarse"].shape == (2, 4, 2 * units) and tokens["fine"].shape == (2, 4, 2 * units)
    assert max(tokens["coarse"].max(), tokens["fine"].max()) < p.codec.rvq.codebook_size
    # the conditioning reaches the stages: another text, other tokens from the same seed
    other = model.generate_tokens(M.flip(0), 3.0, seed=0)
    assert not torch.equal(tokens["semantic"], other["semantic"])


def test_guidance_reaches_the_text_reading_stages_only(model):
    M = FakeMuLan(model.preset).tokens_from_text(["a", "b"])
    plain = model.generate_tokens(M, 2.0, seed=0)  # the micro preset's stages: guidance 1
    assert all(torch.equal(plain[k], v) for k, v in model.generate_tokens(M, 2.0, seed=0, guidance=1.0).items())
    guided = model.generate_tokens(M, 2.0, seed=0, guidance=3.0)
    assert all(torch.equal(guided[k], v) for k, v in model.generate_tokens(M, 2.0, seed=0, guidance=3.0).items())
    assert not torch.equal(guided["semantic"], plain["semantic"])
    assert guided["semantic"].max() < model.preset.semantic.num_clusters
    assert guided["coarse"].max() < model.preset.codec.rvq.codebook_size
    for bad in (-1.0, math.nan, "3"):
        with pytest.raises(ValueError, match="guidance"):
            model.generate("a violin", 1.0, guidance=bad)


def test_given_semantic_tokens_replace_the_semantic_stage(model):
    M = FakeMuLan(model.preset).tokens_from_text(["a", "b"])
    units = math.ceil(2.0 * 24_000 / 1920)
    S = torch.randint(0, model.preset.semantic.num_clusters, (2, units + 3), generator=torch.Generator().manual_seed(0))
    tokens = model.generate_tokens(M, 2.0, seed=0, semantic=S)
    assert torch.equal(tokens["semantic"], S[:, :units])
    other = model.generate_tokens(M, 2.0, seed=0, semantic=S.flip(0))  # the coarse stage reads them
    assert not torch.equal(tokens["coarse"], other["coarse"])
    with pytest.raises(ValueError, match="semantic tokens must be"):
        model.generate_tokens(M, 2.0, seed=0, semantic=S[:, :units - 1])


def test_batch_generation_matches_shapes(model):
    waves = model.generate_batch(["a piano", "a drum loop"], 1.0, seed=3)
    assert waves.shape == (2, 24_000)


# --- checkpoints -----------------------------------------------------------------------------------
def test_from_pretrained_names_the_missing_part(tmp_path):
    with pytest.raises(CheckpointError, match="codec"):
        MusicLM.from_pretrained("tiny", checkpoint_root=tmp_path / "nowhere")


# --- command line ------------------------------------------------------------------------------------
@pytest.mark.parametrize("argv,message", [
    (["", "--seconds", "10"], "empty"),
    (["   ", "--seconds", "10"], "empty"),
    (["a violin", "--seconds", "0"], "positive"),
    (["a violin", "--seconds", "-4"], "positive"),
    (["a violin", "--seconds", "1000"], "at most 300"),
    (["a violin", "-o", "out.mp3"], ".wav"),
    (["a violin", "--guidance", "-1"], "guidance"),
    (["a violin", "--guidance", "nan"], "guidance"),
])
def test_cli_bad_input_one_line_exit_2(argv, message, capsys, tmp_path):
    assert cli.main(["generate", *argv, "--checkpoints", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_cli_bad_environment_one_line_exit_2(capsys, tmp_path, monkeypatch):
    """A bad MUSICLM_PRESET, an output folder that cannot be written, CUDA that is not there."""
    def fails(argv, message):
        assert cli.main(["generate", "a violin", "--seconds", "1", *argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1, err

    monkeypatch.setenv("MUSICLM_PRESET", "huge")
    fails(["-o", str(tmp_path / "a.wav")], "unknown preset 'huge'")
    monkeypatch.setenv("MUSICLM_PRESET", "tiny")
    fails(["-o", str(tmp_path / "no" / "such" / "folder" / "a.wav")], "cannot write")
    if os.geteuid() != 0:  # root may write anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        fails(["-o", str(locked / "a.wav")], "cannot write")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    fails(["-o", str(tmp_path / "a.wav"), "--device", "cuda"], "CUDA is not available")


def test_cli_missing_checkpoints_exit_2(capsys, tmp_path):
    assert cli.main(["generate", "a violin", "--seconds", "1", "--checkpoints", str(tmp_path / "none"),
                     "-o", str(tmp_path / "x.wav")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "checkpoint" in err and err.count("\n") == 1
    assert not (tmp_path / "x.wav").exists()


def test_cli_writes_the_wav(model, monkeypatch, tmp_path):
    monkeypatch.setattr(MusicLM, "from_pretrained", classmethod(lambda cls, *a, **k: model))
    out = tmp_path / "song.wav"
    assert cli.main(["generate", "a calming violin melody", "--seconds", "1.5", "-o", str(out), "--quiet"]) == 0
    wave = load_audio(out, 24_000)
    assert wave.shape == (36_000,)


def test_cli_entry_point_runs_as_a_module(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "musiclm_mini", "generate", " ", "-o", str(tmp_path / "a.wav")],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip().startswith("error: ") and "empty" in proc.stderr


# --- measuring adherence ---------------------------------------------------------------------------------
def test_adherence_statistics_detects_matching_and_not_random_pairs():
    g = torch.Generator().manual_seed(0)
    text = torch.randn(24, 16, generator=g)
    matched = adherence_statistics(text + 0.7 * torch.randn(24, 16, generator=g), text, permutations=2000)
    assert matched["mcc"] > matched["shuffled"] and matched["difference"] > 0.2
    assert matched["p_permutation"] < 0.01 and matched["p_wilcoxon"] < 0.01 and matched["retrieval_top1"] > 0.5
    unrelated = adherence_statistics(torch.randn(24, 16, generator=g), text, permutations=2000)
    assert unrelated["p_permutation"] > 0.05 and unrelated["p_wilcoxon"] > 0.05
    with pytest.raises(ValueError, match="matching"):
        adherence_statistics(text[:3], text)


def test_caption_adherence_runs_end_to_end(model):
    res = caption_adherence(model, ["a violin", "a drum loop", "a slow organ"], seconds=1.0, batch_size=2,
                            permutations=200)
    assert res["clips"] == 3 and -1 <= res["mcc"] <= 1 and 0 < res["p_permutation"] <= 1
    two = caption_adherence(model, ["a violin", "a drum loop", "a slow organ"], seconds=1.0, batch_size=2,
                            permutations=200, samples=2)
    assert two["samples"] == 2 and two["clips"] == 3 and two["mcc"] != res["mcc"]  # a second clip per caption
    with pytest.raises(ValueError, match="samples"):
        caption_adherence(model, ["a violin", "a drum loop"], seconds=1.0, samples=0)


def test_adherence_statistics_averages_several_clips_per_caption():
    g = torch.Generator().manual_seed(0)
    text = torch.randn(16, 8, generator=g)
    clips = text[:, None] + 1.5 * torch.randn(16, 6, 8, generator=g)  # 6 noisy clips per caption
    one = adherence_statistics(clips[:, 0], text, permutations=1000)
    assert adherence_statistics(clips[:, :1], text, permutations=1000) == one  # (N, 1, D) is (N, D)
    six = adherence_statistics(clips, text, permutations=1000)
    sims = torch.stack([F.normalize(clips[:, k], dim=-1) @ F.normalize(text, dim=-1).t() for k in range(6)]).mean(0)
    assert abs(six["mcc"] - float(sims.diag().mean())) < 1e-6  # similarities averaged over a caption's clips
    assert six["p_permutation"] <= one["p_permutation"]
    with pytest.raises(ValueError, match="matching"):
        adherence_statistics(clips[:4], text)


# --- the shipped checkpoints ----------------------------------------------------------------------------
SHIPPED = REPO / "musiclm_mini" / "checkpoints"
PARTS = ["codec-tiny", "kmeans-tiny", "mulan-tiny", "semantic-stage-tiny", "coarse-stage-tiny", "fine-stage-tiny"]
MISSING = [d for d in PARTS if not (SHIPPED / d / "model.safetensors").exists()]


@pytest.mark.slow
@pytest.mark.skipif(bool(MISSING), reason=f"shipped tiny checkpoints not trained yet: missing {MISSING}")
def test_shipped_tiny_pipeline_generates_reproducible_audio():
    mlm = MusicLM.from_pretrained("tiny")
    a = mlm.generate("a calming violin melody backed by a distorted guitar riff", 2.0, seed=0)
    assert a.shape == (48_000,) and torch.isfinite(a).all() and a.abs().max() > 1e-4  # not silence
    assert torch.equal(a, mlm.generate("a calming violin melody backed by a distorted guitar riff", 2.0, seed=0))
    # The text reaches the music: same seed, another caption -> other MuLan tokens -> other semantic tokens
    # (a stage that ignored its conditioning would sample the very same tokens from the same seed).
    captions = ["a calming violin melody backed by a distorted guitar riff", "an energetic rock song with loud drums"]
    m = mlm.mulan.tokens_from_text(captions)  # (2, 12)
    assert not torch.equal(m[0], m[1])
    one = [mlm.generate_tokens(m[i:i + 1], 2.0, seed=0) for i in range(2)]
    assert not torch.equal(one[0]["semantic"], one[1]["semantic"])
    assert not torch.equal(one[0]["coarse"], one[1]["coarse"])
    assert not torch.equal(a, mlm.generate(captions[1], 2.0, seed=0))
    # ... and that check has teeth: stages fed caption 0's MuLan tokens whatever the text give equal tokens.
    sem, coarse = mlm.stages["semantic"], mlm.stages["coarse"]
    sem_condition, coarse_condition = sem.condition, coarse.condition
    sem.condition = lambda mulan: sem_condition(m[:1].expand_as(mulan))
    coarse.condition = lambda mulan, s: coarse_condition(m[:1].expand_as(mulan), s)
    deaf = [mlm.generate_tokens(m[i:i + 1], 2.0, seed=0) for i in range(2)]
    assert torch.equal(deaf[0]["semantic"], deaf[1]["semantic"]) and torch.equal(deaf[0]["coarse"], deaf[1]["coarse"])


def test_audio_adherence_needs_one_clip_per_caption_and_sees_matching_audio():
    class EchoMuLan(FakeMuLan):  # a clip's embedding is its first 8 samples
        def embed_audio(self, wave):
            return torch.nn.functional.normalize(wave[:, :8], dim=-1)

    mulan = EchoMuLan(micro_preset())
    captions = ["a violin", "a drum loop", "a slow organ", "a choir", "a bass line", "a flute duet", "a harp", "a tuba"]
    noise = torch.randn(8, 1000, generator=torch.Generator().manual_seed(0))
    waves = torch.cat([mulan.embed_text(captions) + 0.1 * noise[:, :8], noise[:, 8:]], dim=1)  # (N, T)
    matched = audio_adherence(mulan, waves, captions, permutations=500)
    assert matched["clips"] == 8 and matched["difference"] > 0.5 and matched["p_permutation"] < 0.05
    shuffled = audio_adherence(mulan, waves.roll(1, dims=0), captions, permutations=500)  # clip i, caption i + 1
    assert shuffled["p_permutation"] > 0.05 and shuffled["retrieval_top1"] == 0
    with pytest.raises(ValueError, match="one clip per caption"):
        audio_adherence(mulan, waves[:5], captions)


# --- Chapter 6: the window plan and the per-clip similarities of the recorded adherence run ---------------
def test_window_plan_covers_the_duration_with_crop_long_windows():
    from musiclm_mini.config import get_preset
    from musiclm_mini.musiclm import window_plan

    plans = window_plan(get_preset("tiny"), 10.0)
    for name, plan in plans.items():
        ws = plan["windows"]
        assert ws[0].start == 0 and ws[0].given == 0 and ws[-1].end == plan["frames"], name
        assert all(w.end - w.start == plan["window"] for w in ws), name  # every window as long as a training crop
        assert all(a.end == b.given for a, b in zip(ws, ws[1:])), name  # new frames follow on without gaps
        assert all(w.start % plan["unit"] == 0 for w in ws), name
    assert plans["fine"]["prefix"] == 0 and plans["semantic"]["prefix"] > 0 and plans["coarse"]["prefix"] > 0
    assert plans["coarse"]["frames"] == plans["fine"]["frames"]


def test_adherence_per_clip_similarities_average_to_the_figures_and_match_by_hand():
    g = torch.Generator().manual_seed(3)
    text = torch.randn(6, 8, generator=g)
    clips = text[:, None] + 0.5 * torch.randn(6, 3, 8, generator=g)  # (N=6, K=3, D=8)
    r = adherence_statistics(clips, text, permutations=200, per_caption=True)
    own, other = torch.tensor(r["own"]), torch.tensor(r["other"])
    assert own.shape == (6, 3) and other.shape == (6, 3)
    assert own.mean().item() == pytest.approx(r["mcc"], abs=1e-6)
    assert other.mean().item() == pytest.approx(r["shuffled"], abs=1e-6)
    sims = F.normalize(text, dim=1) @ F.normalize(clips[2, 1], dim=0)  # clip 1 of caption 2 against every caption
    assert own[2, 1].item() == pytest.approx(sims[2].item(), abs=1e-6)
    assert other[2, 1].item() == pytest.approx(((sims.sum() - sims[2]) / 5).item(), abs=1e-6)
    assert "own" not in adherence_statistics(clips, text, permutations=200)
