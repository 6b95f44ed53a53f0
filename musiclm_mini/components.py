"""The one component API: every trained part is loaded, saved and shipped the same way (Chapters 3-7).

A *component* is a part of MusicLM with its own weights: the codec (Chapter 3), the w2v-BERT model and
its k-means (Chapter 4, the MFCC k-means is the baseline), MuLan (Chapter 5) and the three stages
(Chapter 6). Its checkpoint is a folder `<component>-<preset>/` (the shipped ones in `SHIPPED`):

    model.safetensors   the weights (float16 when shipped)
    config.json         {"format": "musiclm-mini/1", "component": "codec", "model": "soundstream",
                         "preset": "tiny", "config": {... the model's config dataclass ...},
                         "fingerprint": "52f93b8dc9e7b0cc",
                         "sources": {"kmeans": "...", ...}}   # what it learnt from: stages, k-means

`load("codec", preset="tiny")` builds the model from the checkpoint's *own* config, as nanoGPT's
`from_pretrained` does, so a run trained with `--set` overrides loads (`load("codec", path=run_dir)`).
When a preset is named (or the shipped folder is used), the checkpoint's *architecture* must be the
preset's: otherwise one `CheckpointError` names the differing fields. Training and sampling settings
and the paper's reference numbers are not part of that identity (`config.setting`, `config.reference`).

The *fingerprint* is a short hash of a checkpoint's config and weights, computed once when it is
written (`checkpoint.save_checkpoint`) and stored in config.json. A stage records the fingerprints
of the tokenizers whose tokens it learnt (`sources`); loading compares these strings and never hashes
weights.

To add a component (Chapter 8's melody model, ...): a model class built from its config dataclass, one
line in `MODELS`, one `Component` in `COMPONENTS` (its chapter, `preset -> config`, trainer and
`sources`), a trainer `(preset, args, runtime)` in `train/`, and a recipe in `train/recipes.py`.
To give an existing component another model for some presets (a Vocos-style codec for `tiny`, SoundStream
kept for `paper`): add the class to `MODELS` with its config dataclass and let the component's
`preset -> config` return that dataclass for those presets; `load` builds whichever model a checkpoint
names, and refuses one whose model is not the one the preset asks for.
"""
from __future__ import annotations

import dataclasses
import importlib
import json
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .checkpoint import config_differences, load_checkpoint, read_config
from .config import SHIPPED, Preset, default_preset_name, get_preset
from .errors import CheckpointError


def resolve(target: str) -> Any:
    """"package.module:attr.attr" -> the object, imported only when needed."""
    module, _, attr = target.partition(":")
    obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


# ---------------------------------------------------------------------------------------------
# Configs as JSON, and what part of them is a model's identity
# ---------------------------------------------------------------------------------------------
def architecture(cfg) -> dict:
    """The fields of a config dataclass that decide what a model *is*, as JSON (Chapter 3 onwards).

    Nested dataclasses are walked; `setting` and `reference` fields are left out. Two checkpoints with
    the same architecture have interchangeable weights.
    """
    out = {}
    for f in dataclasses.fields(cfg):
        if f.metadata.get("identity", True):
            value = getattr(cfg, f.name)
            out[f.name] = architecture(value) if dataclasses.is_dataclass(value) else value
    return json.loads(json.dumps(out))  # tuples -> lists: what a config.json gives back


def to_json(cfg) -> dict:
    """A config dataclass as JSON, without the paper's reference numbers (Chapter 3 onwards)."""
    out = {}
    for f in dataclasses.fields(cfg):
        if not f.metadata.get("reference"):
            value = getattr(cfg, f.name)
            out[f.name] = to_json(value) if dataclasses.is_dataclass(value) else value
    return json.loads(json.dumps(out))


def from_json(cls, data: dict):
    """Rebuild a (nested) config dataclass from its JSON form; lists become tuples where declared.

    Missing fields take their defaults; unknown fields raise a ValueError naming them.
    """
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{cls.__name__} has no field(s) {', '.join(unknown)}")
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint) and isinstance(value, dict):
            value = from_json(hint, value)
        elif typing.get_origin(hint) is tuple and isinstance(value, list):
            value = tuple(value)
        kwargs[name] = value
    return cls(**kwargs)


# ---------------------------------------------------------------------------------------------
# The registry
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Model:
    """A kind of network: `build(config) -> nn.Module`, and the dataclass its config.json decodes to."""

    build: str  # "module:callable"
    config_class: str  # "module:Class"


MODELS: dict[str, Model] = {
    "soundstream": Model("musiclm_mini.tokenizers.soundstream:SoundStream", "musiclm_mini.config:CodecConfig"),
    "spectral-codec": Model("musiclm_mini.tokenizers.spectral_codec:SpectralCodec",
                            "musiclm_mini.tokenizers.spectral_codec:SpectralCodecConfig"),
    "w2v-bert": Model("musiclm_mini.tokenizers.w2v_bert:SemanticModel", "musiclm_mini.config:SemanticConfig"),
    "kmeans": Model("musiclm_mini.tokenizers.kmeans:KMeans.from_config", "musiclm_mini.tokenizers.kmeans:KMeansConfig"),
    "mulan": Model("musiclm_mini.tokenizers.mulan:MuLan", "musiclm_mini.config:MuLanConfig"),
    "stage": Model("musiclm_mini.hierarchy.stage_models:build_stage_model",
                   "musiclm_mini.hierarchy.stage_models:StageModelConfig"),
    "melody-vit": Model("musiclm_mini.melody.vit:MelodyEmbedder", "musiclm_mini.melody.vit:MelodyEmbedderConfig"),
    "melody-stage": Model("musiclm_mini.melody.stage:build_melody_stage_model",
                          "musiclm_mini.melody.stage:MelodyStageModelConfig"),
    "melody-coarse-stage": Model("musiclm_mini.melody.coarse:build_melody_coarse_model",
                                 "musiclm_mini.melody.coarse:MelodyCoarseStageConfig"),
    "tagger": Model("musiclm_mini.evaluation.tagger:Tagger", "musiclm_mini.evaluation.tagger:TaggerConfig"),
}


@dataclass(frozen=True)
class Component:
    """One trained part: its chapter, what a preset asks of it, and the command that trains it."""

    name: str
    chapter: str
    config: str  # "module:function": preset -> the model's config dataclass for that preset
    trainer: str  # "module:function" run by `python -m musiclm_mini.train <name>`
    sources: tuple[str, ...] = ()  # components whose tokens it learnt from (their fingerprints are kept)
    shipped: bool = True  # False: trained into runs/ and measured from there, never in the package (an ablation)

    def config_for(self, preset: Preset):
        return resolve(self.config)(preset)


COMPONENTS: dict[str, Component] = {c.name: c for c in [
    Component("codec", "3", "musiclm_mini.tokenizers.soundstream:codec_config", "musiclm_mini.train.codec:train_codec"),
    # The tiny preset's CPU codec (same token layout, frame-rate layers, an inverse STFT at the end); the tiny
    # stages read its tokens (`Preset.codec_component`), the colab and paper ones SoundStream's (Chapter 3).
    Component("spectral-codec", "3", "musiclm_mini.tokenizers.spectral_codec:spectral_codec_config",
              "musiclm_mini.train.spectral_codec:train_spectral_codec"),
    # Chapter 3's next codec: long-window magnitudes in and out, the phase from a phase vocoder; not trained yet.
    Component("magnitude-codec", "3", "musiclm_mini.tokenizers.spectral_codec:magnitude_codec_config",
              "musiclm_mini.train.spectral_codec:train_magnitude_codec", shipped=False),
    Component("w2v-bert", "4", "musiclm_mini.tokenizers.w2v_bert:w2v_bert_config",
              "musiclm_mini.train.w2v_bert:train_w2v_bert"),
    Component("kmeans", "4", "musiclm_mini.tokenizers.kmeans:kmeans_config", "musiclm_mini.train.w2v_bert:train_kmeans",
              sources=("w2v-bert",)),
    Component("mfcc", "4", "musiclm_mini.tokenizers.mfcc:mfcc_config", "musiclm_mini.train.w2v_bert:train_mfcc"),
    Component("mulan", "5", "musiclm_mini.tokenizers.mulan:mulan_config", "musiclm_mini.train.mulan:train_mulan"),
    Component("semantic-stage", "6", "musiclm_mini.hierarchy.stage_models:semantic_stage_config",
              "musiclm_mini.train.stages:train_semantic_stage", sources=("kmeans", "mulan")),
    Component("coarse-stage", "6", "musiclm_mini.hierarchy.stage_models:coarse_stage_config",
              "musiclm_mini.train.stages:train_coarse_stage", sources=("codec", "kmeans", "mulan")),
    Component("fine-stage", "6", "musiclm_mini.hierarchy.stage_models:fine_stage_config",
              "musiclm_mini.train.stages:train_fine_stage", sources=("codec",)),
    # The paper's ablation (Sec. 5): the coarse stage without semantic tokens (Chapter 7).
    Component("coarse-nosemantic-stage", "7", "musiclm_mini.hierarchy.stage_models:coarse_stage_config",
              "musiclm_mini.train.stages:train_coarse_nosemantic_stage", sources=("codec", "mulan"), shipped=False),
    # The judge of KLD and "asked for X, got X" (Chapter 7): one architecture for every preset.
    Component("tagger", "7", "musiclm_mini.evaluation.tagger:tagger_config",
              "musiclm_mini.evaluation.train_tagger:train_tagger_component"),
    Component("melody-embedder", "8", "musiclm_mini.melody.vit:melody_embedder_config",
              "musiclm_mini.train.melody:train_melody_embedder"),
    # The semantic stage conditioned on melody tokens + MuLan tokens (Chapter 8, Sec. 6); not trained yet, so not shipped.
    Component("melody-semantic-stage", "8", "musiclm_mini.melody.stage:melody_semantic_stage_config",
              "musiclm_mini.train.melody_stage:train_melody_semantic_stage",
              sources=("kmeans", "mulan", "melody-embedder"), shipped=False),
    # The coarse stage conditioned on melody tokens + MuLan + semantic tokens (Chapter 8): this book's semantic tokens
    # carry no pitch (Chapter 4), its acoustic tokens do. `--set melody_tokens=chroma` for the pitch-class tokens.
    Component("melody-coarse-stage", "8", "musiclm_mini.melody.coarse:melody_coarse_stage_config",
              "musiclm_mini.train.melody_coarse:train_melody_coarse_stage",
              sources=("codec", "kmeans", "mulan", "melody-embedder"), shipped=False),
]}
TOKENIZERS = ("codec", "kmeans", "mulan")  # whose fingerprints the stages record


def component(name: str) -> Component:
    """The registered component called `name`, or a ValueError listing them."""
    if name not in COMPONENTS:
        raise ValueError(f"unknown component {name!r}: choose one of {', '.join(COMPONENTS)}")
    return COMPONENTS[name]


def model_name(config) -> str:
    """The `MODELS` entry whose config class `config` is an instance of."""
    for name, model in MODELS.items():
        if type(config).__name__ == model.config_class.rpartition(":")[2]:
            return name
    raise ValueError(f"no model in components.MODELS takes a {type(config).__name__}")


def checkpoint_dir(name: str, preset: str | None = None, root: str | Path | None = None) -> Path:
    """`<root>/<component>-<preset>`; root defaults to the shipped checkpoints (`musiclm_mini/checkpoints`)."""
    return Path(root or SHIPPED) / f"{component(name).name}-{preset or default_preset_name()}"


def checkpoint_config(name: str, config, preset_name: str, sources: dict[str, str] | None = None) -> dict:
    """What config.json holds for component `name` with model config `config` (the fingerprint is added
    when the weights are written)."""
    out = {"component": component(name).name, "model": model_name(config), "preset": preset_name,
           "config": to_json(config)}
    if component(name).sources:
        out["sources"] = None if sources is None else {k: sources.get(k) for k in component(name).sources}
    return out


def identity_differences(stored: dict, preset: Preset) -> list[str]:
    """The architecture fields where a checkpoint's config differs from what `preset` asks for."""
    spec = component(stored["component"])
    expected = spec.config_for(preset)
    if stored.get("model") != model_name(expected):
        return [f"model: checkpoint has {stored.get('model')!r}, preset {preset.name!r} expects {model_name(expected)!r}"]
    config_class = resolve(MODELS[stored["model"]].config_class)
    return config_differences(architecture(from_json(config_class, stored["config"])), architecture(expected))


def _train_hint(name: str, preset_name: str) -> str:
    return f"train one with `python -m musiclm_mini.train {name} --preset {preset_name}`"


def load(name: str, preset: str | None = None, path: str | Path | None = None,
         device: str | torch.device = "cpu", sources: dict[str, str] | None = None) -> nn.Module:
    """A trained component in eval mode, built from its checkpoint's own config (Chapters 3-7).

    `path`: a checkpoint folder (a training run, or a copy); default: the shipped one of `preset`.
    `preset`: checks the checkpoint's architecture against it (default: the default preset, unless
    `path` is given, in which case the checkpoint is trusted as it is). `sources`: fingerprints of the
    tokenizers it will be used with; a stage trained on tokens of other ones is refused.
    The model's `checkpoint_config` attribute is its config.json (fingerprint included).
    """
    spec = component(name)
    preset_name = preset or (None if path is not None else default_preset_name())
    folder = Path(path) if path is not None else checkpoint_dir(name, preset_name)
    if not (folder / "model.safetensors").exists():
        raise CheckpointError(f"no {name} checkpoint at {folder}: {_train_hint(name, preset_name or 'tiny')}")
    stored = read_config(folder)
    if stored.get("component") != spec.name:
        raise CheckpointError(f"{folder} holds a {stored.get('component')!r} checkpoint, not {name!r}")
    if stored.get("model") not in MODELS:
        raise CheckpointError(f"{folder}: unknown model {stored.get('model')!r} (known: {', '.join(MODELS)})")
    if preset_name is not None:
        diffs = identity_differences(stored, get_preset(preset_name))
        if diffs:
            raise CheckpointError(f"{folder} was made for another architecture (preset {stored.get('preset')!r}, "
                                  f"expected {preset_name!r}): " + "; ".join(diffs[:6]))
    check_sources(stored, sources, folder)
    model_spec = MODELS[stored["model"]]
    try:
        config = from_json(resolve(model_spec.config_class), stored["config"])
    except (TypeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{folder}/config.json does not describe a {stored['model']}: {exc}") from exc
    model = resolve(model_spec.build)(config)
    state = load_checkpoint(folder, with_train_state=False).model_state
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}  # float16 shipped weights
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"weights in {folder} do not fit a {stored['model']} built from its config: {exc}") from exc
    model.checkpoint_config = stored
    return model.to(device).eval()


def check_sources(stored: dict, sources: dict[str, str] | None, folder: Path) -> None:
    """Refuse a checkpoint that learnt from other tokenizer checkpoints than `sources` (Chapter 6).

    Only the tokenizers the component reads count: retraining the codec leaves the semantic stage valid.
    """
    recorded = stored.get("sources")
    if not sources or not recorded:
        return
    which = [k for k, v in recorded.items() if k in sources and sources[k] is not None and v != sources[k]]
    if which:
        raise CheckpointError(f"{folder} was trained on tokens of other {'/'.join(which)} checkpoints than the ones "
                              f"loaded now: retrain it (`python -m musiclm_mini.train {stored['component']}`)")


def fingerprint(model) -> str:
    """The fingerprint of a loaded component: the string in its config.json (Chapter 6).

    A `SemanticTokenizer` answers for its k-means (whose fingerprint covers the w2v-BERT it was fitted
    on). A model that was never saved (tests, notebooks) gets a hash of its weights, as saving would.
    """
    from .checkpoint import fingerprint as weights_fingerprint

    if hasattr(model, "kmeans") and hasattr(model, "model"):
        model = model.kmeans
    config = getattr(model, "checkpoint_config", None)
    if config and config.get("fingerprint"):
        return config["fingerprint"]
    return weights_fingerprint({}, model.state_dict())


def token_sources(codec, semantic, mulan) -> dict[str, str]:
    """{"codec": ..., "kmeans": ..., "mulan": ...}: the fingerprints of the three tokenizers (Chapter 6)."""
    return {name: fingerprint(model) for name, model in zip(TOKENIZERS, (codec, semantic, mulan))}


def shipped_fingerprints(preset: str | None = None, root: str | Path | None = None) -> dict[str, str]:
    """The fingerprints of the tokenizers of `preset`, read from their config.json alone (Chapter 6)."""
    roles = {"codec": get_preset(preset).codec_component}  # the acoustic tokens' codec, whichever it is
    return {name: read_config(checkpoint_dir(roles.get(name, name), preset, root)).get("fingerprint") for name in TOKENIZERS}


# ---------------------------------------------------------------------------------------------
# Components used in pairs
# ---------------------------------------------------------------------------------------------
def semantic_tokenizer(preset: str | None = None, root: str | Path | None = None, device: str | torch.device = "cpu"):
    """w2v-BERT + its k-means as a tokenizer (Chapter 4); refuses a k-means fitted on another w2v-BERT."""
    from .tokenizers.w2v_bert import SemanticTokenizer

    model = load("w2v-bert", preset, None if root is None else checkpoint_dir("w2v-bert", preset, root), device)
    kmeans = load("kmeans", preset, None if root is None else checkpoint_dir("kmeans", preset, root), device,
                  sources={"w2v-bert": fingerprint(model)})
    return SemanticTokenizer(model, kmeans, kmeans.cfg.layer)


def mfcc_tokenizer(preset: str | None = None, root: str | Path | None = None):
    """The MFCC + k-means baseline tokenizer (Chapter 4)."""
    from .tokenizers.mfcc import MfccTokenizer

    kmeans = load("mfcc", preset, None if root is None else checkpoint_dir("mfcc", preset, root))
    return MfccTokenizer(get_preset(preset).semantic, kmeans)


def tokenizers(preset: str | None = None, root: str | Path | None = None, device: str | torch.device = "cpu",
               codec: str | None = None):
    """The codec, semantic tokenizer and MuLan of a preset: what the stages read and predict (Chapter 6).

    `codec`: the codec component (default: the preset's `codec_component`).
    """
    codec = codec or get_preset(preset).codec_component
    path = (lambda name: None) if root is None else (lambda name: checkpoint_dir(name, preset, root))
    return (load(codec, preset, path(codec), device), semantic_tokenizer(preset, root, device),
            load("mulan", preset, path("mulan"), device))
