"""How much do the stages read their MuLan tokens? Validation loss with own, another clip's and no MuLan tokens (Chapter 6).

    python scripts/conditioning_gain.py                        # the shipped tiny stages
    python scripts/conditioning_gain.py --checkpoints DIR      # stages in DIR/semantic-stage-tiny, DIR/coarse-stage-tiny

A stage that ignores its text scores the same with another clip's tokens or none; one that reads them
scores best with its own. `train.stages.conditioning_losses` does the work; Chapter 6 prints the same.
"""
from __future__ import annotations

import argparse

import torch

from musiclm_mini.components import checkpoint_dir, load, token_sources, tokenizers
from musiclm_mini.config import get_preset
from musiclm_mini.hierarchy.token_cache import cached_tokens
from musiclm_mini.train.stages import conditioning_losses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--checkpoints", default=None, help="folder holding the stages (default: the shipped ones)")
    parser.add_argument("--split", default="validation", choices=["validation", "test"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    preset = get_preset(args.preset)
    codec, semantic, mulan = tokenizers(preset.name)
    tokens = cached_tokens(preset, args.split, codec, semantic, mulan)
    sources = token_sources(codec, semantic, mulan)
    print(f"{args.split} loss (nats) of {len(tokens)} clips, one fixed crop each, by the MuLan tokens given")
    for stage in ("semantic", "coarse"):
        model = load(f"{stage}-stage", preset.name, checkpoint_dir(f"{stage}-stage", preset.name, args.checkpoints),
                     sources=sources)
        losses = conditioning_losses(model, stage, preset, tokens)
        print(f"{stage:>8} stage: " + " | ".join(f"{k} {v:.3f}" for k, v in losses.items()))


if __name__ == "__main__":
    main()
