"""Melody conditioning, the plumbing (issue 16, Chapter 8): the melody-semantic stage's tokens, the time alignment of
training and generation, generation from a hum with a micro model, two training steps, the input checks and the CLI."""
import math
import wave
from pathlib import Path

import pytest
import torch

from conftest import MICRO, FakeMuLan, micro_preset
from musiclm_mini import __main__ as cli
from musiclm_mini.audio import load_audio
from musiclm_mini.components import load
from musiclm_mini.config import LongGenerationConfig, MelodyConfig, RVQConfig, StageConfig, get_preset
from musiclm_mini.errors import AudioError, CheckpointError
from musiclm_mini.hierarchy.stage_models import build_stage_model, stage_model_config
from musiclm_mini.hierarchy.token_cache import TokenSet
from musiclm_mini.hierarchy.tokens import STAGE_NAMES, SemanticStage, TokenLayout
from musiclm_mini.melody.alignment import MelodyGrid, grid_windows, loop_to, span_windows, window_offsets
from musiclm_mini.melody.frontend import MelSettings
from musiclm_mini.melody.generation import (MelodyParts, check_melody, find_melody_stage, melody_semantic_tokens,
                                            window_codes)
from musiclm_mini.melody.stage import (MelodyLayout, MelodySemanticStage, build_melody_stage_model,
                                       melody_semantic_stage_config, melody_stage_batch)
from musiclm_mini.melody.token_cache import melody_window_codes
from musiclm_mini.melody.tokens import fit_melody_rvq
from musiclm_mini.melody.vit import MelodyEmbedder, MelodyEmbedderConfig
from musiclm_mini.musiclm import MusicLM, window_plan
from musiclm_mini.tokenizers.mulan import audio_windows
from musiclm_mini.tokenizers.soundstream import SoundStream
from musiclm_mini.train.distributed import Runtime
from musiclm_mini.train.loop import fit
from musiclm_mini.train.melody_stage import melody_stage_run

TINY = get_preset("tiny")
MELODY = MelodyConfig(n_layers=1, n_heads=2, d_model=16, d_ff=32, embed_dim=8, rvq=RVQConfig(3, 16, 8))


def melody_preset():
    """The micro preset with tiny's 6 s semantic crops and windows (so 2 melody windows per crop) and a micro embedder."""
    p = micro_preset(steps=2)
    return p.replace(melody=MELODY, semantic_stage=StageConfig(MICRO, crop_seconds=6.0, temperature=1.0,
                                                               condition_dropout=0.2, guidance=3.0),
                     long=LongGenerationConfig(stride_seconds=3.0, prefix_seconds=3.0, story_change_seconds=3.0))


def tune(seed: int, seconds: float, rate: int = 24_000, channels: int = 0) -> torch.Tensor:
    """A hummed-like tune: random notes of 0.5 s, (T,), or (channels, T) slightly different per channel."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * rate)) / rate
    notes = 220 * 2 ** (torch.randint(0, 12, (int(seconds * 2) + 1,), generator=g) / 12)
    out = 0.3 * torch.sin(2 * math.pi * torch.cumsum(notes[(t * 2).long()] / rate, 0))
    return torch.stack([out * (1 - 0.1 * c) for c in range(channels)]) if channels else out


@pytest.fixture(scope="module")
def model():
    p = melody_preset()
    torch.manual_seed(0)
    stages = {s: build_stage_model(stage_model_config(s, p)).eval() for s in STAGE_NAMES}
    stage = build_melody_stage_model(melody_semantic_stage_config(p)).eval()
    with torch.no_grad():  # large random weights: peaked, input-dependent distributions (as test_musiclm's fixture)
        for m, std in [*((m, 0.5) for m in stages.values()), (stage, 0.3)]:  # 0.3: guidance 3 still leaves a choice
            for prm in m.parameters():
                prm.normal_(0.0, std)
    embedder = MelodyEmbedder(MelodyEmbedderConfig(MELODY, MelSettings(n_mels=16), patch_frames=4)).eval()
    with torch.no_grad():
        windows = grid_windows(torch.stack([tune(i, 10.0) for i in range(4)]), MelodyGrid.from_preset(p), 16)
        fit_melody_rvq(embedder, embedder.embed_windows(windows.reshape(-1, windows.shape[-1])))
    mlm = MusicLM(p, SoundStream(p.codec).eval(), FakeMuLan(p), stages)
    mlm.melody_parts = MelodyParts(embedder, stage)
    return mlm


# --- the token layout --------------------------------------------------------------------------------------
def test_the_prefix_is_the_melody_tokens_then_the_mulan_tokens_with_one_null_condition():
    lay = TokenLayout.from_preset(TINY)
    st = MelodySemanticStage(lay, MelodyLayout.from_preset(TINY))
    assert (st.melody.windows, st.melody.levels, st.melody.codes, st.condition_length) == (2, 8, 128, 28)
    assert st.vocab_size == 12 * 256 + 1 + 128 + 8 * 128 == melody_semantic_stage_config(TINY).vocab_size
    g = torch.Generator().manual_seed(0)
    U, M = torch.randint(0, 128, (3, 2, 8), generator=g), torch.randint(0, 256, (3, 12), generator=g)
    ids = st.condition(U, M)  # (3, 28)
    assert ids.shape == (3, 28) and torch.equal(ids[:, 16:], SemanticStage(lay).condition(M))  # MuLan ids as before
    u = ids[:, :16] - st.melody_offset
    assert st.melody_offset == lay.semantic_offset + 128 and (u >= 0).all() and (ids < st.vocab_size).all()
    assert torch.equal(u // 128, torch.arange(8).repeat(2).expand(3, -1))  # level q in slice U_q, window by window
    assert torch.equal(u % 128, U.flatten(1))
    assert st.target_range(5) == (lay.semantic_offset, st.melody_offset)  # a semantic id, never a melody id
    seq, mask = st.sequence(ids, st.encode_target(torch.arange(75).expand(3, -1) % 128))
    assert mask[:, 28:].all() and not mask[:, :28].any()
    null = st.uncondition(seq)
    assert (null[:, :28] == lay.null_condition).all() and torch.equal(null[:, 28:], seq[:, 28:])  # no tune, no text
    dropped = st.drop_condition(seq, 0.5, torch.Generator().manual_seed(3))
    assert all(torch.equal(d, s) or torch.equal(d, n) for d, s, n in zip(dropped, seq, null))
    with pytest.raises(ValueError, match="melody codes must be"):
        st.condition(U[:, :1], M)
    with pytest.raises(ValueError, match="melody tokens must lie"):
        st.condition(U + 128, M)


# --- the time alignment --------------------------------------------------------------------------------------
@pytest.mark.parametrize("seconds", [1.0, 4.0, 6.0, 7.0, 10.0, 13.5])
def test_window_offsets_are_the_embedders_own_windows(seconds):
    wave = torch.randn(1, int(seconds * 24_000), generator=torch.Generator().manual_seed(0))
    looped = loop_to(wave, 96_000)[0] if wave.shape[-1] < 96_000 else wave[0]
    expected = torch.stack([looped[o:o + 96_000] for o in window_offsets(wave.shape[-1], 96_000, 72_000)])
    assert torch.equal(audio_windows(wave, 96_000, 72_000)[0], expected)


def test_tiny_crops_hold_two_melody_windows_on_a_0_4_s_grid():
    grid = MelodyGrid.from_preset(TINY)
    assert (grid.span_frames, grid.offsets, grid.step_frames, grid.grid_hop) == (75, (0, 48_000), 5, 9_600)
    assert grid.positions(125) == 16  # windows at 0, 0.4, ..., 6 s of a 10 s clip
    assert grid.crop_index(torch.tensor([0, 5, 50])).tolist() == [[0, 5], [1, 6], [10, 15]]
    with pytest.raises(ValueError, match="multiples of 5"):
        grid.crop_index(torch.tensor([3]))


def test_a_training_crop_reads_the_melody_windows_of_its_own_span():
    st, grid = MelodySemanticStage(TokenLayout.from_preset(TINY), MelodyLayout.from_preset(TINY)), MelodyGrid.from_preset(TINY)
    N = 4
    tokens = TokenSet(torch.zeros(N, 12, dtype=torch.long), torch.arange(125).expand(N, -1).clone(),
                      torch.zeros(N, 8, 250, dtype=torch.long))  # semantic token t = frame t: a crop's first says its start
    codes = (torch.arange(16)[None, :, None] + 16 * torch.arange(N)[:, None, None]).expand(N, 16, 8).clone()  # clip, position
    seen = set()
    for step in range(12):
        idx = [step % N, (step + 1) % N, (step + 2) % N]
        seq, _ = melody_stage_batch(st, tokens, codes, idx, grid, torch.Generator().manual_seed(step))
        starts = seq[:, 28] - st.layout.semantic_offset  # (B,) frames
        U = ((seq[:, :16] - st.melody_offset) % 128).view(3, 2, 8)  # (B, W, Q)
        for b, (i, s) in enumerate(zip(idx, starts.tolist())):
            assert s % 5 == 0 and 0 <= s <= 50
            assert [int(U[b, w, 0]) for w in range(2)] == [16 * i + (s * 1920 + o) // 9600 for o in (0, 48_000)]
            seen.add(s)
    assert len(seen) > 6  # crops start all over the clip


def test_training_and_generation_read_the_same_audio_and_tokens(model):
    grid = MelodyGrid.from_preset(TINY)
    clip = tune(7, 10.0)[None]  # (1, T): a training clip, or a hum of the same tune
    windows = grid_windows(clip, grid, grid.positions(125))  # (1, 16, 96000)
    for start in range(0, 51, 5):
        index = grid.crop_index(torch.tensor([start]))[0]
        assert torch.equal(span_windows(clip[0], start, grid), windows[0, index])
    p, embedder = model.preset, model.melody_parts.embedder
    micro_grid = MelodyGrid.from_preset(p)
    cached = melody_window_codes(embedder, clip, micro_grid)  # (1, P, Q): what training reads
    starts = [0, 5, 25, 50]
    live = window_codes(embedder, clip[0], starts, micro_grid)  # what generation computes for windows starting there
    for s in starts:
        assert torch.equal(live[s][0], cached[0, micro_grid.crop_index(torch.tensor([s]))[0]])


def test_generation_windows_loop_a_short_hum():
    grid = MelodyGrid.from_preset(TINY)
    hum = torch.arange(5 * 24_000).float()  # 5 s
    windows = span_windows(hum, 38, grid)  # the second window of a 10 s song starts at frame 38 (3.04 s)
    looped = hum.repeat(3)
    assert torch.equal(windows, torch.stack([looped[72_960 + o:72_960 + o + 96_000] for o in (0, 48_000)]))


# --- generation with a micro model ------------------------------------------------------------------------------
def test_a_micro_melody_stage_follows_a_hum_deterministically(model, monkeypatch):
    a = model.generate("a calming violin melody", 8.0, seed=0, melody=tune(1, 5.0, 16_000, channels=2),
                       melody_sample_rate=16_000)
    assert a.shape == (8 * 24_000,) and torch.isfinite(a).all()
    assert set(model.timings) == {"mulan", "melody", "semantic", "coarse", "fine", "decode"}
    assert torch.equal(a, model.generate("a calming violin melody", 8.0, seed=0, melody=tune(1, 5.0, 16_000, channels=2),
                                         melody_sample_rate=16_000))
    M, plan = model.mulan.tokens_from_text(["a violin"]), window_plan(model.preset, 8.0)["semantic"]
    hum, other = check_melody(tune(1, 8.0), 24_000), check_melody(tune(2, 8.0), 24_000)
    seen = []
    condition = MelodySemanticStage.condition
    monkeypatch.setattr(MelodySemanticStage, "condition", lambda self, u, m: seen.append(u) or condition(self, u, m))
    S = melody_semantic_tokens(model, M, hum, plan, seed=0)
    assert S.shape == (1, 100) and 0 <= S.min() and S.max() < model.preset.semantic.num_clusters
    assert torch.equal(S, melody_semantic_tokens(model, M, hum, plan, seed=0))
    assert not torch.equal(S, melody_semantic_tokens(model, M, other, plan, seed=0))  # the tune reaches the stage
    assert not torch.equal(S, melody_semantic_tokens(model, M, hum, plan, seed=1))
    # each window [0, 75), [25, 100) read the melody of its own span of the hum
    starts = [w.start for w in plan["windows"]]
    expected = window_codes(model.melody_parts.embedder, hum, starts, MelodyGrid.from_preset(model.preset))
    assert starts == [0, 25] and all(torch.equal(u, expected[s]) for u, s in zip(seen[:2], starts))


def test_no_melody_stage_is_one_clear_checkpoint_error(model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no runs/ here
    with pytest.raises(CheckpointError, match=r"no melody-semantic-stage checkpoint in runs/melody-semantic-stage-tiny or "
                                              r".*`python -m musiclm_mini.train melody-semantic-stage --preset tiny`"):
        find_melody_stage("tiny", checkpoint_root=tmp_path / "shipped")
    with pytest.raises(CheckpointError, match="elsewhere"):
        find_melody_stage("tiny", tmp_path / "elsewhere")
    run = tmp_path / "runs" / "melody-semantic-stage-tiny"
    run.mkdir(parents=True)
    (run / "model.safetensors").write_bytes(b"")
    assert find_melody_stage("tiny", checkpoint_root=tmp_path / "shipped") == Path("runs/melody-semantic-stage-tiny")
    monkeypatch.setattr(model, "melody_parts", None)
    monkeypatch.setattr(model, "checkpoint_root", tmp_path / "shipped")
    with pytest.raises(CheckpointError, match="no melody-semantic-stage checkpoint in .*nowhere"):
        model.generate("a violin", 2.0, melody=tune(1, 4.0), melody_sample_rate=24_000, melody_stage=tmp_path / "nowhere")


# --- training ---------------------------------------------------------------------------------------------------
def test_two_training_steps_write_a_checkpoint_that_load_reads(tmp_path):
    p = melody_preset()
    g = torch.Generator().manual_seed(0)
    N, P = 4, MelodyGrid.from_preset(p).positions(125)
    tokens = TokenSet(torch.randint(0, 16, (N, 12), generator=g), torch.randint(0, 8, (N, 125), generator=g),
                      torch.randint(0, 16, (N, 8, 250), generator=g))
    codes = torch.randint(0, 16, (N, P, 3), generator=g)
    sources = {"kmeans": "k", "mulan": "m", "melody-embedder": "e"}
    run, step, validate = melody_stage_run(p, tokens, codes, tokens, codes, tmp_path / "run", Runtime(torch.device("cpu")),
                                           sources, quiet=True)
    fit(run, step, validate)
    assert run.step == 2 and set(run.history[-1]) == {"step", "loss", "accuracy", "loss_other_melody"}
    loaded = load("melody-semantic-stage", path=tmp_path / "run", sources=sources)
    assert loaded.checkpoint_config["sources"] == sources and not loaded.training
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), run.model.state_dict().values()))
    with pytest.raises(CheckpointError, match="other melody-embedder checkpoints"):
        load("melody-semantic-stage", path=tmp_path / "run", sources={**sources, "melody-embedder": "retrained"})
    with pytest.raises(ValueError, match="melody codes"):
        melody_stage_run(p, tokens, codes[:2], None, None, tmp_path / "other", Runtime(torch.device("cpu")))


# --- the input tune -----------------------------------------------------------------------------------------------
def test_any_rate_and_channel_count_becomes_24_khz_mono():
    stereo = tune(0, 5.0, 44_100, channels=2)  # (2, T)
    out = check_melody(stereo, 44_100)
    assert out.shape == (5 * 24_000,) and out.dtype == torch.float32
    assert torch.allclose(check_melody(stereo.t().contiguous(), 44_100), out)  # (T, C) channels last too
    assert torch.equal(check_melody(tune(0, 4.0).numpy(), 24_000.0), tune(0, 4.0))  # numpy in, a float rate


CLIP = torch.sign(tune(0, 5.0))  # a square wave: every sample at full scale


@pytest.mark.parametrize("wave,rate,message", [
    (torch.zeros(5 * 24_000), 24_000, "silent (digital silence)"),
    (1e-4 * tune(0, 5.0), 24_000, "silent"),
    (CLIP, 24_000, "clipped: 100%"),
    (torch.full((5 * 24_000,), 0.5), 24_000, "clipped"),
    (torch.cat([tune(0, 5.0)[:-1], torch.tensor([math.nan])]), 24_000, "NaN"),
    (tune(0, 1.0), 24_000, "too short: 1.00 s; hum at least 4 s"),
    (tune(0, 3.9, 8_000, channels=2), 8_000, "too short"),
    (torch.zeros(0), 24_000, "empty"),
    (tune(0, 5.0), None, "sample rate"),
    (tune(0, 5.0), 0, "sample rate"),
])
def test_bad_melodies_raise_one_clear_error(wave, rate, message):
    with pytest.raises(AudioError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_melody(wave, rate)


# --- the command line ---------------------------------------------------------------------------------------------
def write_wav(path: Path, x: torch.Tensor, rate: int) -> Path:
    """(T,) or (C, T) floats in [-1, 1] -> 16-bit PCM WAV."""
    x = x[None] if x.dim() == 1 else x
    with wave.open(str(path), "wb") as out:
        out.setnchannels(x.shape[0])
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes((x.t().clamp(-1, 1).numpy() * 32767).round().astype("<i2").tobytes())
    return path


def cli_fails(argv, message, capsys, tmp_path):
    assert cli.main(["generate", "a violin", "--seconds", "10", "-o", str(tmp_path / "out.wav"), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "out.wav").exists()


@pytest.mark.parametrize("kind,message", [("missing", "not found"), ("unreadable", "cannot read"),
                                          ("silent", "silent"), ("short", "too short"), ("clipped", "clipped")])
def test_cli_bad_melody_files_print_one_error_line_and_exit_2(kind, message, capsys, tmp_path):
    path = tmp_path / "hum.wav"
    if kind == "unreadable":
        path.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot a wave at all")
    elif kind != "missing":
        wave_ = {"silent": torch.zeros(5 * 16_000), "short": tune(0, 2.0, 16_000), "clipped": torch.sign(tune(0, 5.0, 16_000))}
        write_wav(path, wave_[kind], 16_000)
    cli_fails(["--melody", str(path)], message, capsys, tmp_path)


def test_cli_without_a_melody_stage_says_how_to_train_one(capsys, tmp_path):
    hum = write_wav(tmp_path / "hum.wav", tune(0, 5.0), 24_000)
    cli_fails(["--melody", str(hum), "--melody-stage", str(tmp_path / "none")],
              "`python -m musiclm_mini.train melody-semantic-stage --preset tiny`", capsys, tmp_path)


def test_cli_writes_music_that_follows_a_stereo_44_khz_hum(model, monkeypatch, tmp_path):
    stage = tmp_path / "stage"
    stage.mkdir()
    (stage / "model.safetensors").write_bytes(b"")  # found by find_melody_stage; the fixture's parts stand for it
    monkeypatch.setattr(model.melody_parts, "folder", stage)
    monkeypatch.setattr(MusicLM, "from_pretrained", classmethod(lambda cls, *a, **k: model))
    hum = write_wav(tmp_path / "hum.wav", tune(3, 4.5, 44_100, channels=2), 44_100)
    out = tmp_path / "song.wav"
    assert cli.main(["generate", "a calming violin melody", "--melody", str(hum), "--melody-stage", str(stage),
                     "--seconds", "4", "-o", str(out), "--quiet"]) == 0
    assert load_audio(out, 24_000).shape == (4 * 24_000,) and "melody" in model.timings
