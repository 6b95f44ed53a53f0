"""The one component API (issue 10): load, identity, fingerprints, recipes, the training CLI (Chapters 3-7)."""
import dataclasses
import json
import shutil

import pytest
import torch

from conftest import micro_preset
from musiclm_mini import components
from musiclm_mini.checkpoint import save_checkpoint
from musiclm_mini.components import COMPONENTS, architecture, checkpoint_config, checkpoint_dir, load
from musiclm_mini.config import PRESET_NAMES, SHIPPED, default_preset_name, get_preset
from musiclm_mini.errors import CheckpointError
from musiclm_mini.hierarchy.stage_models import build_stage_model, stage_model_config
from musiclm_mini.tokenizers.soundstream import SoundStream
from musiclm_mini.train.__main__ import main as train_main
from musiclm_mini.train.recipes import RECIPES

TINY = get_preset("tiny")


def save_codec(folder, cfg, preset_name="tiny", seed=0):
    torch.manual_seed(seed)
    model = SoundStream(cfg)
    save_checkpoint(folder, model.state_dict(), checkpoint_config("codec", cfg, preset_name))
    return model


def same_weights(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


# --- the registry ------------------------------------------------------------------------------------
@pytest.mark.parametrize("preset", PRESET_NAMES)
def test_every_component_has_a_config_a_model_and_a_trainer(preset):
    for name, spec in COMPONENTS.items():
        config = spec.config_for(get_preset(preset))
        assert components.model_name(config) in components.MODELS
        assert callable(components.resolve(spec.trainer))
        assert set(spec.sources) <= set(COMPONENTS)
    assert {name for name, _ in RECIPES} <= set(COMPONENTS)


def test_identity_leaves_out_settings_and_paper_reference_numbers():
    paper = get_preset("paper")
    stage = stage_model_config("coarse", paper)
    changed = dataclasses.replace(stage, stage=dataclasses.replace(
        stage.stage, crop_seconds=1.0, temperature=0.1, condition_dropout=0.5, guidance=7.0,
        transformer=dataclasses.replace(stage.stage.transformer, dropout=0.3, paper_params_per_stage=1)))
    assert architecture(changed) == architecture(stage)
    wider = dataclasses.replace(stage, stage=dataclasses.replace(
        stage.stage, transformer=dataclasses.replace(stage.stage.transformer, d_model=2048)))
    assert architecture(wider) != architecture(stage)
    assert "paper_params" not in components.to_json(paper.semantic)


# --- load ----------------------------------------------------------------------------------------------
def test_load_builds_from_the_checkpoints_own_config_and_checks_only_the_architecture(tmp_path):
    settings = dataclasses.replace(TINY.codec, weight_waveform=3.0, crop_seconds=0.25,
                                   rvq=dataclasses.replace(TINY.codec.rvq, dead_code_threshold=0.5))
    saved = save_codec(tmp_path / "codec-tiny", settings)
    loaded = load("codec", "tiny", tmp_path / "codec-tiny")  # training settings differ: still tiny's codec
    assert same_weights(saved, loaded) and not loaded.training
    assert loaded.cfg == settings  # built from the checkpoint, not from the preset
    assert loaded.checkpoint_config["fingerprint"] == components.fingerprint(loaded)

    narrow = dataclasses.replace(TINY.codec, channels=8)  # a run trained with --set codec.channels=8
    save_codec(tmp_path / "narrow", narrow)
    assert load("codec", path=tmp_path / "narrow").cfg.channels == 8  # no preset named: trusted as it is
    with pytest.raises(CheckpointError, match=r"another architecture .*channels: checkpoint has 8, expected 16"):
        load("codec", "tiny", tmp_path / "narrow")
    with pytest.raises(CheckpointError, match="no codec checkpoint .*`python -m musiclm_mini.train codec --preset colab`"):
        load("codec", "colab", tmp_path / "nothing")
    with pytest.raises(CheckpointError, match="holds a 'codec' checkpoint, not 'mulan'"):
        load("mulan", path=tmp_path / "narrow")
    with pytest.raises(ValueError, match="unknown component 'vocoder'"):
        load("vocoder", "tiny")


def test_load_refuses_a_config_that_does_not_describe_its_model(tmp_path):
    save_codec(tmp_path / "c", TINY.codec)
    config = json.loads((tmp_path / "c" / "config.json").read_text())
    config["config"]["wings"] = 2
    (tmp_path / "c" / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="wings"):
        load("codec", path=tmp_path / "c")


def test_a_stage_is_refused_next_to_other_tokenizers_than_the_ones_it_learnt(tmp_path):
    p = micro_preset()
    sources = {"codec": "aaa", "kmeans": "bbb", "mulan": "ccc"}

    def save_stage(stage):
        torch.manual_seed(1)
        model = build_stage_model(stage_model_config(stage, p))
        save_checkpoint(tmp_path / stage, model.state_dict(),
                        checkpoint_config(f"{stage}-stage", stage_model_config(stage, p), "tiny", sources))
        return model

    saved = save_stage("semantic")
    assert same_weights(saved, load("semantic-stage", path=tmp_path / "semantic", sources=sources))
    with pytest.raises(CheckpointError, match="other kmeans checkpoints"):
        load("semantic-stage", path=tmp_path / "semantic", sources={**sources, "kmeans": "retrained"})
    load("semantic-stage", path=tmp_path / "semantic", sources={**sources, "codec": "retrained"})  # no acoustic tokens
    save_stage("fine")
    with pytest.raises(CheckpointError, match="other codec checkpoints"):
        load("fine-stage", path=tmp_path / "fine", sources={**sources, "codec": "retrained"})
    load("fine-stage", path=tmp_path / "fine", sources={**sources, "mulan": "retrained"})  # reads acoustic tokens only
    with pytest.raises(CheckpointError, match=r"another architecture .*stage.transformer.d_model"):
        load("semantic-stage", "tiny", tmp_path / "semantic")


@pytest.mark.slow
@pytest.mark.parametrize("name", [name for name, spec in COMPONENTS.items() if spec.shipped])
def test_every_shipped_checkpoint_loads_through_the_one_api(name):
    model = load(name, "tiny")
    assert model.checkpoint_config["preset"] == "tiny" and len(model.checkpoint_config["fingerprint"]) == 16
    roles = {"codec": get_preset("tiny").codec_component}  # "codec" names the acoustic tokens' codec, whichever it is
    for source, fingerprint in (model.checkpoint_config.get("sources") or {}).items():
        assert components.read_config(checkpoint_dir(roles.get(source, source), "tiny"))["fingerprint"] == fingerprint


# --- presets where the reader is ---------------------------------------------------------------------------
def test_a_gpu_without_colab_checkpoints_gets_tiny_with_one_line(monkeypatch, capsys):
    from musiclm_mini import config

    monkeypatch.delenv("MUSICLM_PRESET", raising=False)
    monkeypatch.setattr(config, "_NOTICES", [])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert not (SHIPPED / "fine-stage-colab").exists()
    assert default_preset_name() == "tiny" and default_preset_name() == "tiny"
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no `colab` checkpoints" in err and "--preset colab" in err
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert default_preset_name() == "tiny" and capsys.readouterr().err == ""
    monkeypatch.setenv("MUSICLM_PRESET", "Paper")
    assert default_preset_name() == "paper"


# --- the training command line ---------------------------------------------------------------------------
def train_fails(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        train_main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1 and message in err, err


def test_train_cli_errors_are_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MUSICLM_PRESET", "huge")
    train_fails(["codec", "--steps", "1"], "unknown preset 'huge'", capsys)
    monkeypatch.setenv("MUSICLM_PRESET", "tiny")
    (tmp_path / "file").write_text("")
    train_fails(["codec", "--steps", "1", "--out", str(tmp_path / "file" / "run")], "cannot write", capsys)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    train_fails(["codec", "--device", "cuda", "--out", str(tmp_path / "r")], "CUDA is not available", capsys)
    train_fails(["codec", "--set", "codec.wings=2", "--out", str(tmp_path / "r")], "no field 'wings'", capsys)
    train_fails(["ship", "codec", "--from", str(tmp_path / "nothing")], "no checkpoint", capsys)


def test_no_flags_run_the_shipped_recipe(monkeypatch, tmp_path):
    from musiclm_mini.train import __main__ as cli

    seen = {}
    monkeypatch.setitem(COMPONENTS, "coarse-stage", dataclasses.replace(COMPONENTS["coarse-stage"], trainer="x:y"))
    monkeypatch.setattr(cli, "resolve", lambda target: lambda preset, args, runtime: seen.update(preset=preset, args=args))
    train_main(["coarse-stage", "--preset", "tiny", "--out", str(tmp_path / "r")])
    assert seen["preset"].train.steps == 3500 and seen["args"].data == "synthcaps+extra" and seen["args"].threads == 1
    train_main(["coarse-stage", "--preset", "tiny", "--steps", "7", "--data", "synthcaps", "--out", str(tmp_path / "r")])
    assert seen["preset"].train.steps == 7 and seen["args"].data == "synthcaps"  # flags win over the recipe
    train_main(["coarse-stage", "--preset", "colab", "--out", str(tmp_path / "r")])
    assert seen["preset"].train.steps == get_preset("colab").train.steps  # no recipe: the preset's own


# --- two steps of every component, read back by `load` ------------------------------------------------------
QUICK = ["--preset", "tiny", "--steps", "2", "--quiet", "--threads", "1", "--val-every", "2", "--checkpoint-every", "2"]


@pytest.mark.slow
@pytest.mark.parametrize("name,extra", [
    ("codec", ["--data", "sines", "--set", "codec.channels=8"]),
    ("spectral-codec", ["--data", "sines"]),
    ("magnitude-codec", ["--data", "sines"]),
    ("w2v-bert", ["--data", "sines", "--set", "semantic.d_ff=64"]),
    ("kmeans", ["--data", "sines"]),
    ("mfcc", ["--data", "sines"]),
    ("mulan", ["--batch-size", "4"]),
    ("semantic-stage", ["--data", "sines", "--batch-size", "2", "--set", "semantic_stage.crop_seconds=2.0"]),
    ("coarse-stage", ["--data", "sines", "--batch-size", "2"]),
    ("coarse-nosemantic-stage", ["--data", "sines", "--batch-size", "2"]),
    ("fine-stage", ["--data", "sines", "--batch-size", "2", "--set", "fine_stage.transformer.n_layers=1"]),
    ("melody-semantic-stage", ["--data", "sines", "--batch-size", "2"]),
    ("melody-coarse-stage", ["--data", "sines", "--batch-size", "2"]),
    ("melody-coarse-stage", ["--data", "sines", "--batch-size", "2", "--set", "melody_tokens=chroma"]),  # not tiny's
])
def test_two_steps_of_every_component_write_a_checkpoint_that_load_reads(name, extra, tmp_path, monkeypatch):
    out = tmp_path / name
    if name == "mulan":  # its first 40 clips per split: caching the text features of every wording of all 320
        from musiclm_mini.train import mulan  # captions and embedding every clip for the RVQ took 100 s of 2 steps
        full = mulan.load_pairs  # 40 clips x 7 vectors still give the 256-code RVQ more vectors than codes
        monkeypatch.setattr(mulan, "load_pairs", lambda preset, split: (lambda w, lab: (w[:40], lab[:40]))(*full(preset, split)))
    train_main([name, *QUICK, *extra, "--out", str(out)])
    model = load(name, path=out)
    assert model.checkpoint_config["component"] == name and not model.training
    overridden = [s for s in extra if "=" in s]
    if overridden and "crop_seconds" not in overridden[0]:  # an architecture override: not tiny's any more
        with pytest.raises(CheckpointError, match=overridden[0].split("=")[0].rpartition(".")[2]):
            load(name, "tiny", out)
    else:
        load(name, "tiny", out)


@pytest.mark.slow
def test_ship_exports_float16_checks_and_measures(tmp_path):
    run, root = tmp_path / "run", tmp_path / "checkpoints"
    train_main(["codec", *QUICK, "--data", "sines", "--out", str(run)])
    train_main(["ship", "codec", "--preset", "tiny", "--from", str(run), "--checkpoints", str(root)])
    shipped = root / "codec-tiny"
    assert {p.name for p in shipped.iterdir()} >= {"model.safetensors", "config.json", "log.jsonl", "metrics.json"}
    model = load("codec", "tiny", shipped)
    assert set(json.loads((shipped / "metrics.json").read_text())["shipped"]) == {"validation", "test"}
    assert model.checkpoint_config["fingerprint"] != load("codec", path=run).checkpoint_config["fingerprint"]  # float16
    shutil.rmtree(run)


def test_the_stages_codec_is_a_preset_setting():
    """`Preset.codec_component` picks whose acoustic tokens the stages read; the tokenizers follow it."""
    from musiclm_mini.components import tokenizers
    from musiclm_mini.config import get_preset
    from musiclm_mini.tokenizers.spectral_codec import SpectralCodec

    from musiclm_mini.tokenizers.soundstream import SoundStream

    assert get_preset("tiny").codec_component == "spectral-codec"  # the shipped tiny stages learnt its tokens
    assert get_preset("colab").codec_component == get_preset("paper").codec_component == "codec"  # SoundStream
    codec, _, _ = tokenizers("tiny")
    assert isinstance(codec, SpectralCodec) and codec.hop == get_preset("tiny").codec.hop
    codec, _, _ = tokenizers("tiny", codec="codec")
    assert isinstance(codec, SoundStream) and codec.hop == get_preset("tiny").codec.hop


def test_run_progress_tells_an_unfinished_run_from_a_finished_one(tmp_path):
    from musiclm_mini.train.recipes import run_progress, recipe

    steps = recipe("coarse-nosemantic-stage", "tiny").steps
    assert run_progress("coarse-nosemantic-stage", "tiny", tmp_path) == (0, steps)  # nothing trained
    (tmp_path / "log.jsonl").write_text('{"step": 10, "loss": 5.0}\n{"step": 20, "validation": {"loss": 4.9}}\n')
    assert run_progress("coarse-nosemantic-stage", "tiny", tmp_path) == (20, steps)


def test_every_shipped_stage_files_its_figures_under_shipped():
    """One layout for the stages' metrics.json, the one `ship` writes (Chapter 11 reads the test loss from it)."""
    for name in ("semantic-stage", "coarse-stage", "fine-stage"):
        metrics = json.loads((checkpoint_dir(name, "tiny") / "metrics.json").read_text())
        assert set(metrics) == {"shipped"}, name
        for split in ("validation", "test"):
            assert 0 < metrics["shipped"][split]["loss"] < 10, (name, split)


def test_musiclm_fingerprints_are_the_shipped_config_fingerprints():
    from musiclm_mini.musiclm import MusicLM
    preset = get_preset("tiny")
    folders = {"codec": preset.codec_component, "mulan": "mulan", "semantic": "semantic-stage",
               "coarse": "coarse-stage", "fine": "fine-stage"}
    want = {k: json.loads((checkpoint_dir(c, "tiny") / "config.json").read_text())["fingerprint"] for k, c in folders.items()}
    assert MusicLM.from_pretrained("tiny").fingerprints() == want
