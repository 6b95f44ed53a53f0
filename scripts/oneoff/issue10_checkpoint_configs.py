"""One-off (issue 10, run once): rewrite the shipped checkpoints' config.json to the component convention.

Before issue 10 each loader had its own config layout and the semantic tokenizer's folder held three
models. The folders were moved with `git mv` (weights byte for byte unchanged):

    semantic-tiny/{model.safetensors,README.md,record.json}  -> w2v-bert-tiny/
    semantic-tiny/kmeans.{safetensors,json}                  -> kmeans-tiny/{model.safetensors,config.json}
    semantic-tiny/mfcc-kmeans.{safetensors,json}             -> mfcc-tiny/{model.safetensors,config.json}
    coarse-tiny/, fine-tiny/                                 -> coarse-stage-tiny/, fine-stage-tiny/

and this script rewrote each config.json (see `musiclm_mini/components.py` for the format). The
fingerprints of the codec, k-means (then called "semantic") and MuLan are the ones the stages recorded
when they were trained (weight hashes computed by the old `token_cache.source_fingerprints`), so the
stages still load next to exactly those tokenizers; the others are computed by `checkpoint.fingerprint`.

    .venv/bin/python scripts/oneoff/issue10_checkpoint_configs.py
"""
import json
from pathlib import Path

from safetensors.torch import load_file

from musiclm_mini.checkpoint import FORMAT, fingerprint
from musiclm_mini.components import checkpoint_config, from_json
from musiclm_mini.config import CodecConfig, MuLanConfig, SemanticConfig, get_preset
from musiclm_mini.hierarchy.stage_models import stage_model_config
from musiclm_mini.tokenizers.kmeans import KMeansConfig

ROOT = Path(__file__).resolve().parents[2] / "musiclm_mini" / "checkpoints"
PRESET = get_preset("tiny")


def old(name: str) -> dict:
    return json.loads((ROOT / name / "config.json").read_text())


def write(name: str, config: dict, fp: str | None = None, **extra) -> str:
    """config.json of ROOT/name; the fingerprint is `fp` or computed from the weights as stored."""
    state = load_file(str(ROOT / name / "model.safetensors")) if fp is None else None
    out = {**config, **extra, "format": FORMAT}
    out["fingerprint"] = fp or fingerprint({k: v for k, v in out.items() if k != "format"}, state)
    (ROOT / name / "config.json").write_text(json.dumps(out, indent=2, sort_keys=True) + "\n")
    return out["fingerprint"]


def main() -> None:
    recorded = old("coarse-tiny" if (ROOT / "coarse-tiny").exists() else "coarse-stage-tiny")["sources"]
    assert recorded == {**old("semantic-stage-tiny")["sources"], "codec": old("fine-stage-tiny")["sources"]["codec"]}
    codec = from_json(CodecConfig, old("codec-tiny")["codec"])
    assert codec == PRESET.codec
    write("codec-tiny", checkpoint_config("codec", codec, "tiny"), recorded["codec"])

    semantic = old("w2v-bert-tiny")["semantic"]
    semantic.pop("paper_params")
    w2v = write("w2v-bert-tiny", checkpoint_config("w2v-bert", from_json(SemanticConfig, semantic), "tiny"))

    km = old("kmeans-tiny")
    config = KMeansConfig(km["num_clusters"], km["dim"], "w2v-bert", km["layer"])
    write("kmeans-tiny", checkpoint_config("kmeans", config, "tiny", {"w2v-bert": w2v}), recorded["semantic"],
          fitted={"train_frames": km["train_frames"], "seed": km["seed"]})
    mf = old("mfcc-tiny")
    write("mfcc-tiny", checkpoint_config("mfcc", KMeansConfig(mf["num_clusters"], mf["dim"], "mfcc"), "tiny"),
          fitted={"train_frames": mf["train_frames"], "seed": mf["seed"]})

    mulan = old("mulan-tiny")["mulan"]
    mulan.pop("audio_tower")
    write("mulan-tiny", checkpoint_config("mulan", from_json(MuLanConfig, mulan), "tiny"), recorded["mulan"])

    sources = {"codec": recorded["codec"], "kmeans": recorded["semantic"], "mulan": recorded["mulan"]}
    for stage in ("semantic", "coarse", "fine"):
        name = f"{stage}-stage-tiny"
        before, config = old(name), stage_model_config(stage, PRESET)
        arch = config.stage.transformer
        assert before["transformer"] == {**json.loads(json.dumps(arch.__dict__)), "paper_params_per_stage": 430_000_000}
        assert before["layout"] == config.layout.__dict__ and before["crop_seconds"] == config.stage.crop_seconds
        assert before.get("mulan_codebook_embedding", False) == config.stage.mulan_codebook_embedding or stage == "fine"
        write(name, checkpoint_config(f"{stage}-stage", config, "tiny", sources))
    print("rewrote", ", ".join(sorted(p.name for p in ROOT.iterdir() if p.is_dir())))


if __name__ == "__main__":
    main()
