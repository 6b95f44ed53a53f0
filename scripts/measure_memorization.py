"""Chapter 10's memorization study (MusicLM Sec. 4.4, Figure 3), on the shipped semantic stage.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/measure_memorization.py --json book/data/memorization-tiny.json

For every prompt length T on the preset's grid: greedy continuations of the shipped stage from training
clips (could be memorized) and test clips (cannot be: the negative control), and from a stage overfit on
a handful of training clips (must be caught: the positive control, trained here in minutes into
runs/semantic-overfit-tiny unless it is there). Exact matches, OT costs between token histograms, tau
calibrated on negative pairs of the shipped stage's training continuations, rates with Wilson intervals,
and the entropy of typical samples against that of approximate matches. Chapter 10 loads the JSON.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from musiclm_mini import components
from musiclm_mini.checkpoint import load_checkpoint, save_checkpoint
from musiclm_mini.config import get_preset
from musiclm_mini.evaluation.memorization import (calibrate_tau, entropy_bits, exact_matches, greedy_continuations,
                                                  histograms, negative_pairs, pair_costs, prompts,
                                                  wilson_interval)
from musiclm_mini.hierarchy.stage_models import build_stage_model, stage_loss, stage_model_config
from musiclm_mini.hierarchy.token_cache import TokenGrid, TokenSet, cached_tokens, stage_batch
from musiclm_mini.hierarchy.tokens import make_stage


def subset(tokens: TokenSet, idx: list[int]) -> TokenSet:
    return TokenSet(tokens.mulan[idx], tokens.semantic[idx], tokens.acoustic[idx])


def overfit_control(preset, tokens: TokenSet, codebooks: torch.Tensor, steps: int, out: Path):
    """A semantic stage trained only on `tokens` (a handful of clips) until it copies them (Chapter 10)."""
    config = stage_model_config("semantic", preset)
    stage, grid = make_stage("semantic", config.layout), TokenGrid.from_preset(preset)
    identity = {"control": "semantic stage overfit", "clips": len(tokens), "steps": steps}
    torch.manual_seed(0)
    model = build_stage_model(config, codebooks)
    if (out / "model.safetensors").exists():
        model.load_state_dict(load_checkpoint(out, identity, with_train_state=False).model_state)
        return model.eval(), json.loads((out / "record.json").read_text())
    start = time.process_time()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    for step in range(steps):  # every clip in every batch, random crops: nothing to generalise from
        seq, mask = stage_batch(stage, tokens, list(range(len(tokens))), grid, preset.semantic_stage.crop_seconds,
                                torch.Generator().manual_seed(step))
        loss, _ = stage_loss(model, seq, mask)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    record = {"final_train_loss": float(loss.detach()), "cpu_seconds": time.process_time() - start, **identity}
    save_checkpoint(out, model.state_dict(), identity)
    (out / "record.json").write_text(json.dumps(record, indent=1) + "\n")
    return model.eval(), record


def study(model, stage, tokens: TokenSet, grid: list[int], new: int, centroids: np.ndarray, vocab: int) -> dict:
    """Greedy continuations at every prompt length: exact matches and OT costs to the true continuation."""
    out = {}
    for T in grid:
        condition, given, target = prompts(stage, tokens.mulan, tokens.semantic, T, new)
        generated = greedy_continuations(model, stage, condition, given, new)
        gen_codes, target_codes = stage.decode_target(generated), stage.decode_target(target)
        hg, ht = histograms(gen_codes, vocab), histograms(target_codes, vocab)
        own = [(i, i) for i in range(len(hg))]
        out[T] = {"exact": exact_matches(generated, target).numpy(),
                  "costs": pair_costs(hg, ht, centroids, own, "emd"),
                  "costs_sinkhorn": pair_costs(hg, ht, centroids, own, "sinkhorn"),
                  "generated": gen_codes, "hist_generated": hg, "hist_target": ht}
    return out


def rates(result: dict, tau: float) -> list[dict]:
    rows = []
    for T, r in result.items():
        n, exact, approx = len(r["exact"]), int(r["exact"].sum()), int((r["costs"] < tau).sum())
        rows.append({"prompt_tokens": T, "clips": n, "exact": exact, "exact_rate": exact / n,
                     "exact_ci95": wilson_interval(exact, n), "approx": approx, "approx_rate": approx / n,
                     "approx_ci95": wilson_interval(approx, n), "median_cost": float(np.median(r["costs"]))})
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--train-clips", type=int, default=256, help="training clips prompted (all of tiny's)")
    parser.add_argument("--negatives", type=int, default=40_000, help="negative pairs for tau (>= 3 / bound)")
    parser.add_argument("--control-clips", type=int, default=8)
    parser.add_argument("--control-steps", type=int, default=400)
    parser.add_argument("--control-dir", type=Path, default=Path("runs/semantic-overfit-tiny"))
    parser.add_argument("--step", type=int, default=10, help="prompt lengths 0, step, 2 step, ... up to the preset's maximum")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    start_wall, start_cpu = time.time(), time.process_time()
    preset = get_preset(args.preset)
    mem = preset.memorization
    codec, semantic, mulan = components.tokenizers(preset.name)
    sources = components.token_sources(codec, semantic, mulan)
    shipped = components.load("semantic-stage", preset.name, sources=sources)
    stage = make_stage("semantic", stage_model_config("semantic", preset).layout)
    centroids, vocab = semantic.kmeans.centroids.double().numpy(), semantic.vocab_size
    say = lambda *a: print(f"[{time.time() - start_wall:6.0f} s]", *a, file=sys.stderr, flush=True)
    say("tokens of the training and test clips (cached after the first run: minutes)")
    train = cached_tokens(preset, "train", codec, semantic, mulan, progress=True)
    test = cached_tokens(preset, "test", codec, semantic, mulan, progress=True)
    train = subset(train, list(range(min(args.train_clips, len(train)))))
    grid = list(range(0, mem.max_prompt_tokens + 1, args.step))
    control_tokens = subset(train, list(range(args.control_clips)))
    control, control_record = overfit_control(preset, control_tokens, mulan.rvq.codebooks.detach().float(),
                                              args.control_steps, args.control_dir)
    say("the overfit control is ready; greedy continuations")
    results = {name: study(model, stage, tokens, grid, mem.generated_tokens, centroids, vocab) for name, model, tokens in
               [("shipped, training clips", shipped, train), ("shipped, test clips", shipped, test),
                ("overfit control, its training clips", control, control_tokens)]}
    say("negative pairs for tau")
    # tau: continuations of the shipped stage from training clips against *other* clips' continuations
    base = results["shipped, training clips"]
    per_t = max(1, args.negatives // len(grid))
    negatives = np.concatenate([pair_costs(base[T]["hist_generated"], base[T]["hist_target"], centroids,
                                           negative_pairs(len(train), per_t, seed=T), "emd") for T in grid])
    # The paper's Sinkhorn beside exact EMD: on these small supports EMD is exact and ~100x faster, so the
    # decisions use EMD; how far the two differ is measured on the positives and on a sample of negatives.
    sample = negative_pairs(len(train), 1000, seed=999)
    T_last = grid[-1]
    neg_emd = pair_costs(base[T_last]["hist_generated"], base[T_last]["hist_target"], centroids, sample, "emd")
    neg_sk = pair_costs(base[T_last]["hist_generated"], base[T_last]["hist_target"], centroids, sample, "sinkhorn")
    pos_emd = np.concatenate([r[T]["costs"] for r in results.values() for T in grid])
    pos_sk = np.concatenate([r[T]["costs_sinkhorn"] for r in results.values() for T in grid])
    agreement = {"pairs": len(sample) + len(pos_emd),
                 "correlation": float(np.corrcoef(np.r_[neg_emd, pos_emd], np.r_[neg_sk, pos_sk])[0, 1]),
                 "median_relative_excess": float(np.median((np.r_[neg_sk, pos_sk] - np.r_[neg_emd, pos_emd])
                                                           / np.maximum(np.r_[neg_emd, pos_emd], 1e-9)))}
    calibration = calibrate_tau(negatives, mem.max_false_positive_rate)
    tau = calibration["tau"]
    typical = np.concatenate([entropy_bits(base[T]["generated"]) for T in grid])
    matched = np.concatenate([entropy_bits(base[T]["generated"])[base[T]["costs"] < tau] for T in grid])
    out = {"command": "python scripts/measure_memorization.py " + " ".join(sys.argv[1:] if argv is None else argv),
           "preset": preset.name, "grid": grid, "generated_tokens": mem.generated_tokens,
           "fingerprints": {"semantic-stage": shipped.checkpoint_config.get("fingerprint"), **sources},
           "tau": calibration, "cost": "exact EMD (decisions); Sinkhorn, entropic reg 0.05 x mean ground cost, beside it",
           "sinkhorn_vs_emd": agreement, "negative_cost_quantiles": {q: float(np.quantile(negatives, q)) for q in (0.0001, 0.001, 0.01, 0.5)},
           "negative_cost_histogram": dict(zip(("counts", "edges"), (a.tolist() for a in np.histogram(negatives, bins=60)))),
           "positive_costs": {name: np.concatenate([r[T]["costs"] for T in grid]).tolist() for name, r in results.items()},
           "systems": {name: rates(r, tau) for name, r in results.items()},
           "entropy_bits": {"typical": float(typical.mean()), "typical_samples": len(typical),
                            "approximate_matches": float(matched.mean()) if len(matched) else None,
                            "approximate_match_samples": len(matched)},
           "control": control_record, "paper": {"tau": 0.85, "exact_rate_max": mem.paper_exact_rate_max,
                                                "approx_rate": mem.paper_approx_rate, "entropy_typical": 4.6,
                                                "entropy_matches": 1.0},
           "cpu_seconds": time.process_time() - start_cpu, "wall_seconds": time.time() - start_wall}
    for name, rows in out["systems"].items():
        print(name)
        for r in rows:
            print(f"  T={r['prompt_tokens']:3d}  exact {r['exact']:3d}/{r['clips']}  approx {r['approx']:3d}/{r['clips']}"
                  f"  median cost {r['median_cost']:.3f}")
    print(f"tau {tau:.4f} from {calibration['negatives']} negatives; entropy typical {out['entropy_bits']['typical']:.2f} bits, "
          f"matches {out['entropy_bits']['approximate_matches']}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
