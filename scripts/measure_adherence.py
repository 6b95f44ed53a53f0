"""Does the generated music follow its caption? MuLan similarity on held-out captions (Chapters 6 and 7).

Generates `--samples` clips per caption of the SynthCaps *test* split with the shipped pipeline, then
compares each clip's MuLan similarity to its own caption (the paper's MCC, Sec. 4.4) with its similarity
to the other captions (`musiclm.caption_adherence`: paired permutation and Wilcoxon tests, retrieval
top-1). With --references it first measures the same on the real test clips, on their reconstructions by
the preset's codec, on their real coarse levels with random fine levels, and on clips generated from each
test clip's own MuLan *audio* tokens M_A (what the stages were trained with): the ceilings that music
generated from text could reach with this MuLan, this codec and these stages.

With --json it writes every figure Chapter 6 prints: one row per system (MCC, other, difference, both
p-values, top-1, clips, and the per-clip similarities the chapter's live slice is checked against), the
command, the settings, the fingerprints of the components measured, CPU and wall seconds, and how many
times this command has measured the test split (carried over from the JSON it replaces). Chapter 6's
table is regenerated with (about 17 CPU-minutes on one thread of a laptop CPU):

    python scripts/measure_adherence.py --seconds 10 --samples 4 --batch-size 16 --threads 1 --references \
        --json book/data/adherence-tiny.json
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from musiclm_mini.config import get_preset
from musiclm_mini.files import atomic_write
from musiclm_mini.musiclm import MusicLM, audio_adherence, caption_adherence
from musiclm_mini.paper import TABLE1
from musiclm_mini.train.mulan import load_pairs


def main(argv: list[str] | None = None) -> dict:
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
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    model = MusicLM.from_pretrained(args.preset, args.checkpoints)
    waves, labels = load_pairs(get_preset(args.preset), args.split)
    captions = [lab["caption"] for lab in labels][:args.clips]
    real = waves[:len(captions), :round(args.seconds * model.sample_rate)]  # (N, T)
    bs = args.batch_size
    references = {}
    if args.references:
        with torch.no_grad():
            decoded = torch.cat([model.codec.reconstruct(real[i:i + bs]) for i in range(0, len(real), bs)])
            codes = torch.cat([model.codec.encode(real[i:i + bs]) for i in range(0, len(real), bs)])
            q = model.preset.coarse_levels  # keep the real coarse levels, draw the fine ones at random
            codes[:, q:] = torch.randint(0, model.preset.codec.rvq.codebook_size, codes[:, q:].shape,
                                         generator=torch.Generator().manual_seed(args.seed))
            coarse_only = model.codec.decode(codes)[..., :real.shape[1]]
            # M_A of each whole clip, as in training (token_cache.py); batch b uses seed + b, as caption_adherence
            M_A = model.mulan.tokens_from_audio(real)  # (N, 12)
            from_audio = torch.cat([model.decode(model.generate_tokens(
                M_A[i:i + bs], args.seconds, args.seed + i // bs, args.temperatures, guidance=args.guidance),
                args.seconds) for i in range(0, len(real), bs)])
        clips = {"real clips": real, "codec-decoded clips": decoded, "real coarse, random fine": coarse_only,
                 "generated from M_A (clip's audio), 1 clip": from_audio}
        for name, w in clips.items():
            references[name] = audio_adherence(model.mulan, w, captions, seed=args.seed, per_caption=True)
            r = references[name]
            print(f"{name:42s} MCC {r['mcc']:.4f}, other captions {r['shuffled']:.4f}, p = {r['p_permutation']:.4g}, "
                  f"Wilcoxon p = {r['p_wilcoxon']:.4g}, top-1 {r['retrieval_top1']:.3f}", flush=True)
    start = time.perf_counter()
    res = caption_adherence(model, captions, args.seconds, args.seed, bs, samples=args.samples,
                            guidance=args.guidance, temperatures=args.temperatures, per_caption=True)
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
        write_json(Path(args.json), args, model, res, guidance, temps, cpu0, wall0, argv)
    return res


def write_json(path: Path, args, model, res: dict, guidance: float, temps, cpu0: float, wall0: float, argv) -> None:
    """Every figure Chapter 6 prints, with what is needed to trust and regenerate them."""
    previous = {}
    if path.exists():
        try:
            previous = json.loads(path.read_text())
        except ValueError:
            previous = {}
    rows = {**res["references"], f"generated from M_T (caption), {args.samples} clip(s)":
            {k: v for k, v in res.items() if k not in ("references", "seconds", "seed", "guidance", "temperatures",
                                                        "wall_seconds", "split", "preset")}}
    result = {
        "command": "python scripts/measure_adherence.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "settings": {"preset": args.preset, "split": args.split, "seconds": args.seconds, "seed": args.seed,
                     "batch_size": args.batch_size, "samples": args.samples, "guidance": guidance,
                     "temperatures": list(temps), "threads": args.threads, "checkpoints": args.checkpoints},
        "fingerprints": model.fingerprints(),
        "captions": res["clips"], "rows": rows,
        # how often this command has measured the test split (carried over from the file it replaces)
        "test_split_runs": previous.get("test_split_runs", 0) + (args.split == "test"),
        "cpu_seconds": round(time.process_time() - cpu0, 1), "wall_seconds": round(time.perf_counter() - wall0, 1),
    }
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(result, indent=1) + "\n"))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
