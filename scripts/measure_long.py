"""Long generation and story mode, measured (Chapter 9): every figure the chapter prints, in one JSON.

Stories: the held-out captions of the SynthCaps split, four at a time (story k = captions 4k..4k+3), each
a piece whose text changes every --seconds-each seconds (`MusicLM.story`, story k with seed + k). Their baseline is the hard cut: each caption generated
alone (seed + 1000 + b) and the clips put end to end. Measured (`evaluation.continuity`):

- adherence: each segment's MuLan similarity to its own text against the story's other texts;
- boundaries: tempo change, key distance, flux jump and MuLan jump across each text change, against the
  same at each segment's middle (no change there), at the hard cuts, and at the middle of the real clips;
- drift: --long-captions pieces of --long-seconds, measured every --every seconds (MuLan similarity to
  its caption minus the other pieces' captions, loudness, tempo) and the slope of each against time.

    python scripts/measure_long.py --threads 1 --json book/data/long-tiny.json
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from musiclm_mini.config import get_preset
from musiclm_mini.evaluation import continuity as C
from musiclm_mini.musiclm import MusicLM
from musiclm_mini.train.mulan import load_pairs

MEASURES = ("tempo_change", "key_distance", "flux_jump", "embedding_jump")


def generate_stories(model: MusicLM, texts: list[list[str]], each: float, seed: int) -> torch.Tensor:
    """Story k of `texts` (N lists of P texts) -> waves (N, P * each * sr): `MusicLM.story` with seed + k,
    one at a time, so that the chapter can regenerate any one of them exactly."""
    return torch.stack([model.story([(t, each) for t in story], seed=seed + k) for k, story in enumerate(texts)])


def hard_cuts(model: MusicLM, texts: list[list[str]], each: float, seed: int, batch: int) -> torch.Tensor:
    """The baseline: every text generated alone for `each` s, the clips of a story put end to end."""
    flat = sum(texts, [])
    clips = torch.cat([model.generate_batch(flat[i:i + batch], each, seed + 1000 + b)
                       for b, i in enumerate(range(0, len(flat), batch))])  # (N * P, T)
    return clips.reshape(len(texts), -1)


def measures_at(waves: torch.Tensor, points: list[float], sr: int, span: float, mulan) -> dict[str, list]:
    """Every boundary measure at each point of each wave -> {measure: [per wave, per point]}."""
    rows = [[C.boundary_measures(w, sr, t, span, mulan) for t in points] for w in waves]
    return {m: [[r[m] for r in row] for row in rows] for m in MEASURES}


def drift(model: MusicLM, waves: torch.Tensor, captions: list[str], every: float) -> dict:
    """Adherence, loudness and tempo of each `every`-second stretch of each long piece, and their slopes."""
    sr, n = model.sample_rate, round(every * model.sample_rate)
    pieces = waves[:, :waves.shape[1] // n * n].reshape(len(waves), -1, n)  # (N, K, n)
    with torch.no_grad():
        emb = model.mulan.embed_audio(pieces.reshape(-1, n)).reshape(len(waves), pieces.shape[1], -1)  # (N, K, D)
        text = model.mulan.embed_text(captions)  # (N, D)
    sim = torch.einsum("nkd,md->nkm", emb, text)  # (N, K, N)
    own = sim[torch.arange(len(waves)), :, torch.arange(len(waves))]  # (N, K)
    other = (sim.sum(-1) - own) / (len(waves) - 1)
    out = {"times": [every * (k + 0.5) for k in range(pieces.shape[1])], "adherence": (own - other).tolist(),
           "loudness_db": [[C.loudness_db(p) for p in row] for row in pieces],
           "tempo_bpm": [[C.tempo_bpm(p, sr) for p in row] for row in pieces]}
    from scipy.stats import linregress

    t = np.tile(out["times"], len(waves))
    out["slopes_per_minute"] = {}
    for key in ("adherence", "loudness_db", "tempo_bpm"):
        fit = linregress(t, np.asarray(out[key]).ravel())
        out["slopes_per_minute"][key] = {"slope": 60 * fit.slope, "stderr": 60 * fit.stderr, "p": fit.pvalue}
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--split", default="test", choices=["validation", "test"])
    parser.add_argument("--stories", type=int, default=8)
    parser.add_argument("--parts", type=int, default=4)
    parser.add_argument("--seconds-each", type=float, default=None, help="default: the preset's story_change_seconds")
    parser.add_argument("--span", type=float, default=4.0, help="seconds measured either side of a point")
    parser.add_argument("--long-captions", type=int, default=4)
    parser.add_argument("--long-seconds", type=float, default=120.0)
    parser.add_argument("--every", type=float, default=10.0, help="drift: seconds per measured stretch")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    preset = get_preset(args.preset)
    each = args.seconds_each or preset.long.story_change_seconds
    model = MusicLM.from_pretrained(args.preset)
    sr, mulan = model.sample_rate, model.mulan
    real, labels = load_pairs(preset, args.split)
    captions = [lab["caption"] for lab in labels]
    if len(captions) < args.stories * args.parts:
        sys.exit(f"error: {args.split} has {len(captions)} captions, fewer than {args.stories} x {args.parts}")
    texts = [captions[k * args.parts:(k + 1) * args.parts] for k in range(args.stories)]

    story = generate_stories(model, texts, each, args.seed)  # (N, P * each * sr)
    cut = hard_cuts(model, texts, each, args.seed, args.batch_size)
    seg = lambda w: w.reshape(len(texts), args.parts, -1)  # noqa: E731  (N, P, each * sr)
    with torch.no_grad():
        text_emb = mulan.embed_text(sum(texts, [])).reshape(len(texts), args.parts, -1)
        adherence = {name: C.story_adherence(mulan.embed_audio(seg(w).flatten(0, 1)).reshape(len(texts), args.parts, -1),
                                             text_emb, seed=args.seed)
                     for name, w in (("story", story), ("hard_cut", cut))}
    boundaries = [each * i for i in range(1, args.parts)]
    middles = [each * (i + 0.5) for i in range(args.parts)]
    real_middle = real.shape[1] / sr / 2
    points = {"story_boundary": measures_at(story, boundaries, sr, args.span, mulan),
              "story_middle": measures_at(story, middles, sr, args.span, mulan),
              "hard_cut": measures_at(cut, boundaries, sr, args.span, mulan),
              "real_middle": measures_at(real[:args.stories * args.parts], [real_middle], sr, args.span, mulan)}
    flat = lambda rows: list(itertools.chain.from_iterable(rows))  # noqa: E731
    summary = {m: {name: float(np.mean(flat(points[name][m]))) for name in points} for m in MEASURES}
    for m in MEASURES:  # paired by story and boundary: the same texts either side
        summary[m]["p_story_below_hard_cut"] = C.paired_smaller(flat(points["story_boundary"][m]), flat(points["hard_cut"][m]))

    long_captions = captions[-args.long_captions:]  # the last ones (with 32 test captions, also the last story's)
    with torch.no_grad():
        M = mulan.tokens_from_text(long_captions)
        long_waves = model.decode(model.generate_tokens(M, args.long_seconds, args.seed + 2000), args.long_seconds)
    drifts = drift(model, long_waves, long_captions, args.every)

    result = {"command": "python scripts/measure_long.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "settings": {**{k: v for k, v in vars(args).items() if k != "json"}, "seconds_each": each},
              "fingerprints": model.fingerprints(),
              "texts": texts, "long_captions": long_captions, "adherence": adherence, "points": points,
              "summary": summary, "drift": drifts}
    report(result)
    if args.json:
        path = Path(args.json)
        previous = json.loads(path.read_text()) if path.exists() else {}
        result["test_split_runs"] = previous.get("test_split_runs", 0) + (args.split == "test")
        result.update(cpu_seconds=round(time.process_time() - cpu0, 1), wall_seconds=round(time.perf_counter() - wall0, 1))
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(result, indent=1) + "\n")
        tmp.replace(path)
        print(f"wrote {path} ({result['cpu_seconds']:.0f} CPU-s)")
    return result


def report(r: dict) -> None:
    """Print the chapter's three tables."""
    for name, a in r["adherence"].items():
        print(f"{name:9s} segments follow their own text: own - other {a['difference']:+.4f} "
              f"(p = {a['p_permutation']:.4g}), top-1 {a['top1']:.3f} (chance {a['chance_top1']:.3f})")
    print(f"{'measure':15s}" + "".join(f"{n:>15s}" for n in r["points"]) + "   p(story < hard cut)")
    for m, row in r["summary"].items():
        print(f"{m:15s}" + "".join(f"{row[n]:15.3f}" for n in r["points"]) + f"   {row['p_story_below_hard_cut']:.3g}")
    for key, s in r["drift"]["slopes_per_minute"].items():
        print(f"drift of {key:12s} {s['slope']:+.4f} per minute (+- {s['stderr']:.4f}, p = {s['p']:.3g})")


if __name__ == "__main__":
    main()
