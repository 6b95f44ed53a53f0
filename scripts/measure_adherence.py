"""Does the generated music follow its caption? MuLan similarity on held-out captions (Chapters 6 and 7).

Generates one clip per caption of the SynthCaps *test* split with the shipped `tiny` pipeline, then
compares each clip's MuLan similarity to its own caption with its similarity to the other captions
(`musiclm.caption_adherence`: paired permutation and Wilcoxon tests, retrieval top-1). Prints the
figures and, with --json, writes them to a file. With --references it first measures the same on the
real test clips and on their SoundStream reconstructions (`musiclm.audio_adherence`): the ceilings that
generated music could reach with this MuLan and this codec.

    python scripts/measure_adherence.py --seconds 10 --threads 1 --references --json runs/adherence-tiny.json
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from musiclm_mini.config import get_preset
from musiclm_mini.musiclm import MusicLM, audio_adherence, caption_adherence
from musiclm_mini.paper import TABLE1
from musiclm_mini.train.mulan import load_pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--split", default="test", choices=["validation", "test"],
                        help="held-out captions to use: choose a protocol on validation, report test")
    parser.add_argument("--checkpoints", default=None,
                        help="folder holding every part, e.g. with a mid-run stage (default: the shipped ones)")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clips", type=int, default=None, help="first N test captions (default: all)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--samples", type=int, default=1, help="clips generated per caption (similarities averaged)")
    parser.add_argument("--guidance", type=float, default=None,
                        help="classifier-free guidance scale of the semantic and coarse stages (default: the preset's)")
    parser.add_argument("--temperatures", type=float, nargs=3, default=None, metavar=("SEMANTIC", "COARSE", "FINE"),
                        help="sampling temperatures of the three stages (default: the preset's)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--references", action="store_true", help="also measure the real and codec-decoded test clips")
    parser.add_argument("--json", default=None, help="write the figures to this file")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    model = MusicLM.from_pretrained(args.preset, args.checkpoints)
    waves, labels = load_pairs(get_preset(args.preset), args.split)
    captions = [lab["caption"] for lab in labels][:args.clips]
    references = {}
    if args.references:
        real = waves[:len(captions), :round(args.seconds * model.sample_rate)]  # (N, T)
        with torch.no_grad():
            decoded = torch.cat([model.codec.reconstruct(real[i:i + args.batch_size])
                                 for i in range(0, len(real), args.batch_size)])
            codes = torch.cat([model.codec.encode(real[i:i + args.batch_size]) for i in range(0, len(real), args.batch_size)])
            q = model.preset.coarse_levels  # keep the real coarse levels, draw the fine ones at random
            codes[:, q:] = torch.randint(0, model.preset.codec.rvq.codebook_size, codes[:, q:].shape,
                                         generator=torch.Generator().manual_seed(args.seed))
            coarse_only = model.codec.decode(codes)[..., :real.shape[1]]
        references = {"real clips": audio_adherence(model.mulan, real, captions, seed=args.seed),
                      "SoundStream-decoded clips": audio_adherence(model.mulan, decoded, captions, seed=args.seed),
                      "real coarse, random fine": audio_adherence(model.mulan, coarse_only, captions, seed=args.seed)}
        for name, r in references.items():
            print(f"{name:26s} MCC {r['mcc']:.4f}, other captions {r['shuffled']:.4f}, p = {r['p_permutation']:.4g}, "
                  f"top-1 {r['retrieval_top1']:.3f}")
    start = time.perf_counter()
    res = caption_adherence(model, captions, args.seconds, args.seed, args.batch_size, samples=args.samples,
                            guidance=args.guidance, temperatures=args.temperatures)
    guidance = model.preset.coarse_stage.guidance if args.guidance is None else args.guidance
    temps = args.temperatures or [getattr(model.preset, f"{s}_stage").temperature for s in ("semantic", "coarse", "fine")]
    res.update(seconds=args.seconds, seed=args.seed, guidance=guidance, temperatures=list(temps),
               wall_seconds=round(time.perf_counter() - start, 1),
               split=args.split, preset=args.preset, references=references)
    paper = next(r for r in TABLE1 if r.model == "MusicLM")
    print(f"{res['clips']} {args.split} captions, {args.samples} clip(s) of {args.seconds:g} s each, seed {args.seed}, "
          f"guidance {guidance:g}, temperatures {' / '.join(f'{t:g}' for t in temps)}")
    print(f"  MCC (own caption)         {res['mcc']:.4f}   (paper, MusicLM on MusicCaps: {paper.mcc})")
    print(f"  similarity, other captions {res['shuffled']:.4f}")
    print(f"  difference                {res['difference']:.4f}   p = {res['p_permutation']:.4g} (permutation), "
          f"{res['p_wilcoxon']:.4g} (Wilcoxon)")
    print(f"  retrieval top-1           {res['retrieval_top1']:.3f}   (chance {res['chance_top1']:.3f})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
