"""Shipping a trained component with the package: `python -m musiclm_mini.train ship <component>` (Chapters 3-6).

Not in the paper: how the book ships its small checkpoints.

    python -m musiclm_mini.train ship coarse-stage --preset tiny [--from runs/coarse-stage-tiny]

One command for every component: the run's weights are exported in float16 (k-means centroids stay
float32: they are tiny and decide every token) without training state to
`musiclm_mini/checkpoints/<component>-<preset>/`, with their log; the export is loaded back through
`components.load` (architecture of the preset, and for stages and k-means the fingerprints of the
tokenizers shipped beside them), and measured on the validation and test splits into metrics.json.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from .. import components
from ..checkpoint import export_weights

FULL_PRECISION = ("kmeans", "mfcc", "tagger")  # the tagger: 284 kB, and a judge's posteriors should not move
COPIED = ("log.jsonl", "data.json", "record.json", "metrics.json")  # what a run wrote beside its weights
# component -> "module:function(model, preset, root) -> dict of figures", measured on what readers will load
# (root: where the components it reads are)
MEASURES = {
    "codec": "musiclm_mini.train.codec:measure_codec",
    "spectral-codec": "musiclm_mini.train.codec:measure_codec",
    "magnitude-codec": "musiclm_mini.train.codec:measure_codec",
    "w2v-bert": "musiclm_mini.train.w2v_bert:measure_w2v_bert",
    "mulan": "musiclm_mini.train.mulan:measure_mulan",
    "semantic-stage": "musiclm_mini.train.stages:measure_stage",
    "coarse-stage": "musiclm_mini.train.stages:measure_stage",
    "fine-stage": "musiclm_mini.train.stages:measure_stage",
    "melody-embedder": "musiclm_mini.train.melody:measure_melody_embedder",
}


def ship(name: str, source: str | Path, preset_name: str, root: str | Path | None = None,
         measure: bool = True) -> Path:
    """Export run `source` of component `name` into the package (or `root`), check it loads, measure it."""
    spec = components.component(name)
    dest = components.checkpoint_dir(name, preset_name, root)
    export_weights(source, dest, dtype=None if name in FULL_PRECISION else torch.float16)
    for file in COPIED:
        if (Path(source) / file).exists():
            shutil.copyfile(Path(source) / file, dest / file)
    if name == "kmeans":  # fitted on the shipped w2v-BERT
        w2v = components.checkpoint_dir("w2v-bert", preset_name, root)
        sources = {"w2v-bert": components.read_config(w2v).get("fingerprint")}
    else:
        sources = components.shipped_fingerprints(preset_name, root) if spec.sources else None
    model = components.load(name, preset_name, dest, sources=sources)  # the float16 weights, as readers get them
    if measure and name in MEASURES:
        from ..config import get_preset

        figures = components.resolve(MEASURES[name])(model, get_preset(preset_name), root)
        previous = json.loads((dest / "metrics.json").read_text()) if (dest / "metrics.json").exists() else {}
        (dest / "metrics.json").write_text(json.dumps({**previous, "shipped": figures}, indent=1) + "\n")
    return dest
