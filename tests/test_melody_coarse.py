"""The melody-coarse stage (issue 16, Chapter 8): both melody representations' layouts, the time alignment of crops
and generation windows, chroma tokens with known answers, generation from a hum with a micro model, two training
steps read back by `load`, the checkpoint's dispatch in `melody_parts`, and scripts/measure_melody.py with it."""
import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import MICRO, FakeMuLan, micro_preset
from musiclm_mini import components
from musiclm_mini.checkpoint import save_checkpoint
from musiclm_mini.components import COMPONENTS, checkpoint_config, load
from musiclm_mini.config import LongGenerationConfig, MelodyConfig, RVQConfig, StageConfig, get_preset
from musiclm_mini.errors import CheckpointError
from musiclm_mini.hierarchy.stage_models import build_stage_model, stage_model_config
from musiclm_mini.hierarchy.token_cache import TokenGrid, TokenSet
from musiclm_mini.hierarchy.tokens import STAGE_NAMES, CoarseStage, TokenLayout
from musiclm_mini.melody.alignment import grid_windows, span_windows
from musiclm_mini.melody.chroma import NO_PITCH, chroma_tokens
from musiclm_mini.melody.coarse import (MelodyCoarseStage, build_melody_coarse_model, coarse_melody_grid,
                                        hum_chroma_tokens, melody_coarse_batch, melody_coarse_stage,
                                        melody_coarse_stage_config)
from musiclm_mini.melody.frontend import MelSettings
from musiclm_mini.melody.generation import (COARSE, MelodyParts, check_melody, coarse_window_melody, melody_coarse_tokens,
                                            melody_parts, window_codes)
from musiclm_mini.melody.token_cache import cached_chroma_tokens, melody_window_codes
from musiclm_mini.melody.tokens import fit_melody_rvq
from musiclm_mini.melody.vit import MelodyEmbedder, MelodyEmbedderConfig
from musiclm_mini.musiclm import MusicLM, window_plan
from musiclm_mini.tokenizers.soundstream import SoundStream
from musiclm_mini.train.distributed import Runtime
from musiclm_mini.train.loop import fit
from musiclm_mini.train.melody_coarse import melody_coarse_run
from musiclm_mini.train.recipes import recipe

TINY = get_preset("tiny")
SR, UNIT = 24_000, 1920
MELODY = MelodyConfig(n_layers=1, n_heads=2, d_model=16, d_ff=32, embed_dim=8, rvq=RVQConfig(3, 16, 8))


def coarse_preset(kind: str = "embedder"):
    """The micro preset with tiny's 2 s coarse crops (so tiny's melody grid), a micro embedder and `kind` melody tokens."""
    p = micro_preset(steps=2)
    return p.replace(melody=MELODY, melody_tokens=kind,
                     coarse_stage=StageConfig(MICRO, crop_seconds=2.0, temperature=0.7, condition_dropout=0.2, guidance=3.0),
                     long=LongGenerationConfig(stride_seconds=1.0, prefix_seconds=1.0, story_change_seconds=1.0))


def notes(midis, seconds: float = 0.48, rest: bool = False, rate: int = SR, level: float = 0.3) -> np.ndarray:
    """Sine notes of `seconds` each (10 ms ramps), a rest as long after each if `rest`: (T,) float32."""
    n = int(seconds * rate)
    t = np.arange(n) / rate
    ramp = np.minimum(1.0, np.minimum(t, seconds - t) / 0.01)
    out = []
    for m in midis:
        out.append(level * ramp * np.sin(2 * np.pi * 440 * 2 ** ((m - 69) / 12) * t))
        if rest:
            out.append(np.zeros(n))
    return np.concatenate(out).astype(np.float32)


def tune(seed: int, seconds: float, rate: int = SR) -> torch.Tensor:
    """A hum-like tune of random 0.5 s notes, (T,)."""
    g = torch.Generator().manual_seed(seed)
    return torch.as_tensor(notes((57 + torch.randint(0, 12, (int(seconds * 2) + 1,), generator=g)).tolist(), 0.5,
                                 rate=rate)[:int(seconds * rate)])


@pytest.fixture(scope="module")
def embedder():
    torch.manual_seed(0)
    emb = MelodyEmbedder(MelodyEmbedderConfig(MELODY, MelSettings(n_mels=16), patch_frames=4)).eval()
    with torch.no_grad():
        windows = grid_windows(torch.stack([tune(i, 10.0) for i in range(2)]), coarse_melody_grid(coarse_preset()), 21)
        fit_melody_rvq(emb, emb.embed_windows(windows.reshape(-1, windows.shape[-1])))
    return emb


@pytest.fixture(scope="module")
def models(embedder):
    """{kind: MusicLM} sharing micro stages with large random weights, each with a melody-coarse stage of its kind."""
    torch.manual_seed(0)
    out, p = {}, coarse_preset()
    stages = {s: build_stage_model(stage_model_config(s, p)).eval() for s in STAGE_NAMES}
    codec = SoundStream(p.codec).eval()
    with torch.no_grad():  # large random weights: peaked, input-dependent distributions (as test_melody_generation's)
        for prm in (q for m in stages.values() for q in m.parameters()):
            prm.normal_(0.0, 0.5)
    for kind in ("embedder", "chroma"):
        coarse = build_melody_coarse_model(melody_coarse_stage_config(coarse_preset(kind))).eval()
        with torch.no_grad():
            for prm in coarse.parameters():
                prm.normal_(0.0, 0.3)  # 0.3: guidance 3 still leaves a choice
        mlm = MusicLM(coarse_preset(kind), codec, FakeMuLan(p), stages)
        mlm.melody_parts = MelodyParts(embedder if kind == "embedder" else None, coarse, None, COARSE, kind)
        out[kind] = mlm
    return out


# --- the token layout ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind,W,Q,K", [("embedder", 1, 8, 128), ("chroma", 25, 1, 13)])
def test_the_prefix_is_melody_then_mulan_then_semantic_tokens_and_the_target_the_coarse_tokens(kind, W, Q, K):
    lay, st = TokenLayout.from_preset(TINY), melody_coarse_stage(TINY, kind)
    coarse = CoarseStage(lay)
    assert (st.melody.windows, st.melody.levels, st.melody.codes, st.condition_length) == (W, Q, K, W * Q + 12)
    assert st.melody_offset == coarse.vocab_size == 12 * 256 + 1 + 128 + 4 * 256
    assert st.vocab_size == coarse.vocab_size + Q * K == melody_coarse_stage_config(TINY.replace(melody_tokens=kind)).vocab_size
    g = torch.Generator().manual_seed(0)
    U, M, S = torch.randint(0, K, (3, W, Q), generator=g), torch.randint(0, 256, (3, 12), generator=g), \
        torch.randint(0, 128, (3, 25), generator=g)
    ids = st.condition(U, M, S)  # (3, W * Q + 12 + 25)
    assert ids.shape == (3, W * Q + 37) and torch.equal(ids[:, W * Q:], coarse.condition(M, S))  # MuLan, S ids as before
    u = ids[:, :W * Q] - st.melody_offset
    assert (u >= 0).all() and (ids < st.vocab_size).all() and torch.equal(u % K, U.flatten(1))
    assert torch.equal(u // K, torch.arange(Q).repeat(W).expand(3, -1))  # level q in slice U_q
    assert all(st.target_range(j) == coarse.target_range(j) for j in range(8))  # coarse ids only, never a melody id
    seq, mask = st.sequence(ids, st.encode_target(torch.randint(0, 256, (3, 4, 50), generator=g)))
    assert mask[:, W * Q + 37:].all() and not mask[:, :W * Q + 37].any() and seq.shape[1] == W * Q + 37 + 200
    null = st.uncondition(seq)  # no tune, no text; the semantic tokens stay
    assert (null[:, :W * Q + 12] == lay.null_condition).all() and torch.equal(null[:, W * Q + 12:], seq[:, W * Q + 12:])
    dropped = st.drop_condition(seq, 0.5, torch.Generator().manual_seed(3))
    assert all(torch.equal(d, s) or torch.equal(d, n) for d, s, n in zip(dropped, seq, null))  # melody and text together
    with pytest.raises(ValueError, match="melody codes must be"):
        st.condition(U[:, :, :0], M, S)
    with pytest.raises(ValueError, match="melody tokens must lie"):
        st.condition(U + K, M, S)
    with pytest.raises(ValueError, match="melody_tokens must be one of 'embedder', 'chroma'"):
        melody_coarse_stage_config(TINY.replace(melody_tokens="mfcc"))


def test_the_component_has_the_coarse_stages_recipe_and_does_not_ship():
    spec = COMPONENTS["melody-coarse-stage"]
    assert (spec.chapter, spec.shipped) == ("8", False) and "melody-embedder" in spec.sources and "codec" in spec.sources
    assert recipe("melody-coarse-stage", "tiny") == recipe("coarse-stage", "tiny")
    assert (recipe("coarse-stage", "tiny").steps, recipe("coarse-stage", "tiny").data) == (3500, "synthcaps+extra")


# --- the time alignment ----------------------------------------------------------------------------------------------
def test_tiny_coarse_crops_read_one_window_starting_at_their_start_on_a_0_4_s_grid():
    grid = coarse_melody_grid(TINY)
    assert (grid.span_frames, grid.offsets, grid.step_frames, grid.grid_hop, grid.positions(125)) == (25, (0,), 5, 9_600, 21)


def test_a_training_crop_reads_the_melody_of_its_own_span_the_same_crops_for_both_representations():
    grid, tg, N = coarse_melody_grid(TINY), TokenGrid.from_preset(TINY), 4
    frames = torch.arange(250)
    tokens = TokenSet(torch.zeros(N, 12, dtype=torch.long), torch.arange(125).expand(N, -1).clone(),  # S_t = t
                      (frames % 256).expand(N, 8, -1).clone())  # A at frame t = t % 256
    lines = {"embedder": (torch.arange(21)[None, :, None] + 21 * torch.arange(N)[:, None, None]).expand(N, 21, 8) % 128,
             "chroma": ((torch.arange(125)[None, :] + torch.arange(N)[:, None]) % 13)[..., None]}
    seen = set()
    for step in range(10):
        idx = [step % N, (step + 1) % N, (step + 2) % N]
        starts = {}
        for kind, line in lines.items():
            st = melody_coarse_stage(TINY, kind)
            seq, _ = melody_coarse_batch(st, tokens, line, idx, grid, tg, torch.Generator().manual_seed(step))
            C = st.condition_length
            s = (seq[:, C] - st.layout.semantic_offset).tolist()  # the crop's first semantic frame = its start unit
            a = ((seq[:, C + 25] - st.layout.acoustic_offset) % 256).tolist()  # its first coarse token: frame 2 s
            u = (seq[:, :st.melody.tokens] - st.melody_offset) % st.melody.codes  # (B, W * Q)
            for b, (i, start) in enumerate(zip(idx, s)):
                assert start % 5 == 0 and 0 <= start <= 100 and a[b] == (2 * start) % 256
                if kind == "embedder":  # the window at the crop's start: grid position start / 5
                    assert u[b, 0] == (21 * i + start // 5) % 128
                else:  # the crop's own 25 units
                    assert u[b].tolist() == [(start + k + i) % 13 for k in range(25)]
            starts[kind] = s
            seen.update(s)
        assert starts["embedder"] == starts["chroma"]  # both representations train and validate on the same crops
    assert len(seen) > 8


def test_generation_windows_read_what_training_read_from_the_same_audio(models):
    p = models["embedder"].preset
    clip = tune(7, 10.0)  # a training clip, or a hum of the same tune
    windows = window_plan(p, 10.0)["coarse"]["windows"]  # codec frames [0, 50), [26, 76), ..., [200, 250)
    assert len(windows) == 9 and all(w.end - w.start == 50 for w in windows)
    codes = coarse_window_melody(models["embedder"].melody_parts, clip, windows, p)
    grid, emb = coarse_melody_grid(p), models["embedder"].melody_parts.embedder
    cached = melody_window_codes(emb, clip[None], grid)  # (1, 21, Q): what training reads
    on_grid = 0
    for w in windows:
        start = w.start // 2  # semantic frames (= grid units)
        looped = torch.cat([clip, clip])[start * UNIT:start * UNIT + 96_000]  # the 4 s from the span's start, looped
        assert torch.equal(span_windows(clip, start, grid)[0], looped)
        assert torch.equal(codes[w.start], window_codes(emb, clip, [start], grid)[start])
        if start % 5 == 0:  # a start on the training grid: exactly the cached window
            on_grid += 1
            assert torch.equal(codes[w.start][0], cached[0, grid.crop_index(torch.tensor([start]))[0]])
    assert on_grid == 3  # frames 0, 65 and 100
    chroma = coarse_window_melody(models["chroma"].melody_parts, clip, windows, p)
    line = chroma_tokens(clip, SR, UNIT)[0]  # (125,): what the cache holds for this clip
    assert all(torch.equal(chroma[w.start][0, :, 0], line[w.start // 2:w.start // 2 + 25]) for w in windows)
    short = tune(8, 5.0)  # a 5 s hum guiding 10 s: looped, as in training past a clip's end
    assert torch.equal(hum_chroma_tokens(short, 125, p)[0, :, 0], chroma_tokens(torch.cat([short, short]), SR, UNIT)[0])


# --- chroma tokens ---------------------------------------------------------------------------------------------------
def test_chroma_tokens_give_the_pitch_class_no_pitch_for_silence_and_shift_with_transposition():
    scale = [60, 62, 64, 65, 67, 69, 71, 72]  # C major, C4 .. C5: pitch classes 0 2 4 5 7 9 11 0
    tokens = chroma_tokens(notes(scale, rest=True), SR, UNIT)[0]  # 0.48 s = 6 units a note, then 6 of rest
    notes_, rests = tokens.view(8, 2, 6)[:, 0], tokens.view(8, 2, 6)[:, 1]
    assert torch.equal(notes_, torch.tensor([0, 2, 4, 5, 7, 9, 11, 0])[:, None].expand(8, 6))
    assert (rests == NO_PITCH).all()
    for k in (3, 7):  # the same tune k semitones up: every pitched token shifts by k
        up = chroma_tokens(notes([m + k for m in scale], rest=True), SR, UNIT)[0]
        assert torch.equal(up, torch.where(tokens == NO_PITCH, tokens, (tokens + k) % 12))
    assert torch.equal(chroma_tokens(notes(scale, rest=True, level=0.03), SR, UNIT)[0], tokens)  # 20 dB quieter: same
    quiet = np.concatenate([notes([69] * 4), notes([69] * 2, level=3e-4)])  # a -60 dB tail after A4
    assert chroma_tokens(quiet, SR, UNIT)[0].tolist() == [9] * 24 + [NO_PITCH] * 12
    hum = check_melody(torch.as_tensor(notes(scale, rest=True, rate=16_000)).expand(2, -1), 16_000)  # 16 kHz stereo
    assert torch.equal(chroma_tokens(hum, SR, UNIT)[0], tokens)  # a reader's recording: resampled, mixed, the same


def test_chroma_tokens_are_cached_per_clip_like_the_other_tokens(tmp_path):
    waves = torch.stack([tune(3, 10.0), tune(4, 10.0)])
    calls = []
    first = cached_chroma_tokens(TINY, "train", lambda: calls.append(1) or waves, root=tmp_path)
    again = cached_chroma_tokens(TINY, "train", lambda: calls.append(1) or waves, root=tmp_path)  # read back, not computed
    assert calls == [1] and torch.equal(first, again) and torch.equal(first, chroma_tokens(waves, SR, UNIT))
    assert first.shape == (2, 125) and len(list((tmp_path / "tokens").glob("tiny-train-chroma-*.safetensors"))) == 1


# --- generation from a hum with a micro model ----------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["embedder", "chroma"])
def test_a_micro_melody_coarse_stage_follows_a_hum_deterministically(kind, models, monkeypatch):
    model = models[kind]
    hum16 = tune(1, 5.0, 16_000).expand(2, -1).clone()  # 5 s at 16 kHz, stereo
    a = model.generate("a calming violin melody", 4.0, seed=0, melody=hum16, melody_sample_rate=16_000)
    assert a.shape == (4 * SR,) and torch.isfinite(a).all()
    assert set(model.timings) == {"mulan", "melody", "semantic", "coarse", "fine", "decode"}
    assert torch.equal(a, model.generate("a calming violin melody", 4.0, seed=0, melody=hum16, melody_sample_rate=16_000))
    M, plans = model.mulan.tokens_from_text(["a violin"]), window_plan(model.preset, 4.0)
    hum, other = check_melody(tune(1, 5.0), SR), check_melody(tune(2, 5.0), SR)
    seen, condition = [], MelodyCoarseStage.condition
    monkeypatch.setattr(MelodyCoarseStage, "condition", lambda self, u, m, s: seen.append(u) or condition(self, u, m, s))
    out = melody_coarse_tokens(model, M, hum, plans, seed=0)
    assert out["coarse"].shape == (1, 4, 100) and out["fine"].shape == (1, 4, 100)
    assert torch.equal(out["semantic"], model.generate_tokens(M, 4.0, seed=0)["semantic"])  # S as without the melody
    assert torch.equal(out["coarse"], melody_coarse_tokens(model, M, hum, plans, seed=0)["coarse"])
    assert not torch.equal(out["coarse"], melody_coarse_tokens(model, M, other, plans, seed=0)["coarse"])  # the tune counts
    windows = plans["coarse"]["windows"]  # [0, 50), [26, 76), [50, 100): each reads its own span of the hum
    expected = coarse_window_melody(model.melody_parts, hum, windows, model.preset)
    assert [w.start for w in windows] == [0, 26, 50] and all(torch.equal(u, expected[w.start]) for u, w in zip(seen, windows))


# --- training, and loading what it wrote -----------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["embedder", "chroma"])
def test_two_training_steps_write_a_checkpoint_that_load_reads(kind, tmp_path):
    p, g = coarse_preset(kind), torch.Generator().manual_seed(0)
    N = 4
    tokens = TokenSet(torch.randint(0, 16, (N, 12), generator=g), torch.randint(0, 8, (N, 125), generator=g),
                      torch.randint(0, 16, (N, 8, 250), generator=g))
    line = torch.randint(0, 16, (N, 21, 3), generator=g) if kind == "embedder" else torch.randint(0, 13, (N, 125, 1), generator=g)
    sources = {"codec": "c", "kmeans": "k", "mulan": "m", **({"melody-embedder": "e"} if kind == "embedder" else {})}
    run, step, validate = melody_coarse_run(p, tokens, line, tokens, line, tmp_path / "run", Runtime(torch.device("cpu")),
                                            sources, quiet=True)
    fit(run, step, validate)
    assert run.step == 2 and set(run.history[-1]) == {"step", "loss", "accuracy", "loss_other_melody"}
    loaded = load("melody-coarse-stage", path=tmp_path / "run", sources=sources)
    assert loaded.checkpoint_config["config"]["melody_tokens"] == kind and not loaded.training
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), run.model.state_dict().values()))
    with pytest.raises(CheckpointError, match="other codec checkpoints"):
        load("melody-coarse-stage", path=tmp_path / "run", sources={**sources, "codec": "retrained"})
    with pytest.raises(ValueError, match="melody tokens for"):
        melody_coarse_run(p, tokens, line[:2], None, None, tmp_path / "other", Runtime(torch.device("cpu")))


def test_melody_parts_dispatch_on_the_checkpoint_and_check_it_against_the_preset_with_its_own_melody_tokens(models, tmp_path):
    model = models["chroma"]
    config = melody_coarse_stage_config(TINY.replace(melody_tokens="chroma"))  # tiny's sizes, chroma's vocabulary
    sources = {"codec": components.fingerprint(model.codec), "kmeans": None, "mulan": components.fingerprint(model.mulan),
               "melody-embedder": None}
    state = build_melody_coarse_model(config).state_dict()
    save_checkpoint(tmp_path / "chroma", state, checkpoint_config(COARSE, config, "tiny", sources))
    fresh = MusicLM(model.preset, model.codec, model.mulan, model.transformers)  # no melody parts loaded yet
    parts = melody_parts(fresh, tmp_path / "chroma")
    assert (parts.component, parts.melody_tokens, parts.embedder, parts.folder) == (COARSE, "chroma", None, tmp_path / "chroma")
    with pytest.raises(CheckpointError, match="melody_tokens"):  # not tiny's architecture without its own setting
        load(COARSE, "tiny", tmp_path / "chroma")
    save_checkpoint(tmp_path / "other", state, checkpoint_config(COARSE, config, "tiny", {**sources, "codec": "x"}))
    with pytest.raises(CheckpointError, match="other codec checkpoints"):
        melody_parts(fresh, tmp_path / "other")


# --- scripts/measure_melody.py with a melody-coarse stage ------------------------------------------------------------
def test_measure_melody_accepts_a_melody_coarse_stage(models, monkeypatch, tmp_path):
    path = Path(__file__).resolve().parents[1] / "scripts" / "measure_melody.py"
    spec = importlib.util.spec_from_file_location("measure_melody", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    model, stage = models["chroma"], tmp_path / "stage"
    stage.mkdir()
    (stage / "model.safetensors").write_bytes(b"")  # found by find_melody_stage; the fixture's parts stand for it
    monkeypatch.setattr(model.melody_parts, "folder", stage)
    monkeypatch.setattr(MusicLM, "from_pretrained", classmethod(lambda cls, *a, **k: model))
    hums = torch.stack([tune(i, 6.0) for i in range(3)])
    melodies = (hums, hums.clone(), [{"melody_id": f"m{i}", "source_id": f"s{i}"} for i in range(3)])
    monkeypatch.setattr(script, "held_out_melodies", lambda preset, split, n: tuple(x[:n] for x in melodies) + (SR,))
    monkeypatch.setattr(script, "held_out_captions", lambda preset, split, n: [f"caption {i}" for i in range(n)])
    out = tmp_path / "melody.json"
    script.main(["--hums", "3", "--seconds", "4", "--melody-stage", str(stage), "--method", "cqt",
                 "--permutations", "100", "--json", str(out)])
    data = json.loads(out.read_text())
    assert {"melody-coarse-stage", "semantic", "coarse", "fine"} <= set(data["fingerprints"])
    assert "melody-embedder" not in data["fingerprints"] and data["settings"]["melody_tokens"] == "chroma"
    assert data["following"][script.ROWS[1]]["similarity"] == pytest.approx(1.0, abs=1e-6) and not math.isnan(
        data["following"][script.ROWS[0]]["difference"])


# --- warm start from a trained coarse stage --------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["chroma", "embedder"])
def test_extend_from_coarse_keeps_the_coarse_stage_on_its_own_ids(kind):
    from dataclasses import replace

    from musiclm_mini.melody.coarse import extend_from_coarse, melody_coarse_stage_config
    preset = replace(get_preset("tiny"), melody_tokens=kind)
    coarse = load("coarse-stage", "tiny")  # the shipped one
    model = extend_from_coarse(build_melody_coarse_model(melody_coarse_stage_config(preset)), coarse.state_dict()).eval()
    layout = TokenLayout.from_preset(preset)
    vocab = CoarseStage(layout).vocab_size
    assert model.head.weight.shape[0] > vocab  # the melody ids were added at the end
    g = torch.Generator().manual_seed(0)
    seq = torch.randint(0, vocab, (2, 40), generator=g)  # a sequence of coarse-stage ids only
    with torch.no_grad():
        want, got = coarse(seq), model(seq)
    want, got = (x[0] if isinstance(x, tuple) else x for x in (want, got))
    assert torch.allclose(got[..., :vocab], want, atol=1e-5)  # same weights, relative positions: same predictions
    wrong = {k: v[:, :-1] if k == "head.weight" else v for k, v in coarse.state_dict().items()}  # another width
    with pytest.raises(ValueError, match="head.weight"):
        extend_from_coarse(build_melody_coarse_model(melody_coarse_stage_config(preset)), wrong)
