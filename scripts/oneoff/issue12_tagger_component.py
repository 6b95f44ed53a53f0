"""One-off (issue 12, run once): the shipped Chapter 7 tagger becomes a component checkpoint, not retrained.

Before issue 12 the tagger had its own format ("musiclm-mini-tagger/1"): config.json held the network's
settings, the calibration temperatures *and* the training record (`trained`: epochs, figures, command)
in one dict, read by `tagger.load_tagger`. Now the tagger is the component `tagger` (`components.load`),
so this script, on a folder in the old format (default: the shipped musiclm_mini/checkpoints/tagger-tiny):

  * rewrites config.json to the component convention (`components.checkpoint_config`: component, model,
    preset, the `TaggerConfig` as JSON, format, fingerprint of config and weights as stored);
  * moves the training record to metrics.json (`tagger.training_record`), its `seconds` renamed
    `train_seconds` as in the other components' metrics, with `steps` (15 epochs x 64 = 960) and `data`;
  * leaves model.safetensors alone: the file's SHA-256 is checked before and after, and the
    posteriors of the weights loaded the new way against those of the old code on the same two clips
    (`tests/test_tagger.py` keeps both checks).

    .venv/bin/python scripts/oneoff/issue12_tagger_component.py [FOLDER]
"""
import hashlib
import json
import sys
from pathlib import Path

from musiclm_mini import components
from musiclm_mini.checkpoint import FORMAT, fingerprint
from musiclm_mini.evaluation.tagger import TaggerConfig
from musiclm_mini.files import atomic_write
from safetensors.torch import load_file

OLD_FORMAT = "musiclm-mini-tagger/1"
SHIPPED = Path(__file__).resolve().parents[2] / "musiclm_mini" / "checkpoints" / "tagger-tiny"
WEIGHTS_SHA256 = "2c8bc139871882efb37c02261063819134b47ce5615e405443a52a0737e8b529"  # the shipped file, before


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def convert(folder: Path, preset: str = "tiny") -> dict:
    """Rewrite `folder`'s config.json and write its metrics.json; returns the new config.json."""
    old = json.loads((folder / "config.json").read_text())
    if old.get("format") != OLD_FORMAT:
        raise SystemExit(f"{folder} is not in the old tagger format (format {old.get('format')!r})")
    before = sha256(folder / "model.safetensors")
    trained = old.pop("trained", {})
    old.pop("format")
    config = components.from_json(TaggerConfig, old)  # every old field has its TaggerConfig field
    stored = components.checkpoint_config("tagger", config, preset)
    state = load_file(str(folder / "model.safetensors"))
    out = {**stored, "format": FORMAT, "fingerprint": fingerprint(stored, state)}  # as save_checkpoint computes it
    batches = -(-trained["train_clips"] // trained["batch_size"]) if trained else None
    metrics = {"preset": preset, "data": "synthcaps+extra" if "--extra" in trained.get("command", "") else "synthcaps",
               **{("train_seconds" if k == "seconds" else k): v for k, v in trained.items()}}
    if trained:
        metrics["steps"] = trained["epochs"] * batches
    atomic_write(folder / "metrics.json", lambda p: p.write_text(json.dumps(metrics, indent=1) + "\n"))
    atomic_write(folder / "config.json", lambda p: p.write_text(json.dumps(out, indent=2, sort_keys=True) + "\n"))
    assert sha256(folder / "model.safetensors") == before, "the weights changed"
    model = components.load("tagger", preset, folder)  # the architecture is the preset's, the weights fit
    assert model.cfg == config
    return out


def main() -> None:
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else SHIPPED
    if folder == SHIPPED:
        assert sha256(folder / "model.safetensors") == WEIGHTS_SHA256
    out = convert(folder)
    print(f"rewrote {folder}/config.json (fingerprint {out['fingerprint']}), wrote metrics.json; "
          f"model.safetensors unchanged (sha256 {sha256(folder / 'model.safetensors')[:16]}...)")


if __name__ == "__main__":
    main()
