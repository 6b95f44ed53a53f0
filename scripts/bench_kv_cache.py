"""How much the KV cache speeds up decoding (Chapter 6).

Greedy-decodes the same tokens with and without the cache, checks they are identical, and prints
tokens per second for both. The model is the `tiny` preset's coarse-stage Transformer with the
coarse stage's vocabulary, randomly initialised: speed does not depend on what it has learned.

    python scripts/bench_kv_cache.py                 # 500 new tokens, 1 CPU thread
    python scripts/bench_kv_cache.py --tokens 200 --threads 2
"""
from __future__ import annotations

import argparse
import time

import torch

from musiclm_mini.config import get_preset
from musiclm_mini.hierarchy.transformer import Transformer
from musiclm_mini.hierarchy.stage_models import count_parameters
from musiclm_mini.hierarchy.stage_models import stage_model_config


def timed_generate(model: Transformer, prompt: torch.Tensor, tokens: int, use_cache: bool):
    """Greedy-decode `tokens` tokens; return the output and tokens per second (Chapter 6)."""
    start = time.perf_counter()
    out = model.generate(prompt, tokens, greedy=True, use_cache=use_cache)
    return out, tokens / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=500, help="new tokens to generate")
    parser.add_argument("--prompt", type=int, default=12, help="prompt length (e.g. 12 MuLan tokens)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    preset = get_preset("tiny")
    config, vocab = preset.coarse_stage.transformer, stage_model_config("coarse", preset).vocab_size
    model = Transformer(config, vocab).eval()
    prompt = torch.randint(0, vocab, (1, args.prompt))
    print(f"tiny coarse stage: {config.n_layers} layers, d_model {config.d_model}, vocab {vocab:,}, "
          f"{count_parameters(model):,} parameters; CPU, {args.threads} thread(s)")

    model.generate(prompt, 8, greedy=True)  # warm-up: first calls pay one-off allocation costs
    cached, cached_tps = timed_generate(model, prompt, args.tokens, use_cache=True)
    full, full_tps = timed_generate(model, prompt, args.tokens, use_cache=False)
    if not torch.equal(cached, full):
        raise SystemExit("outputs differ between cached and full decoding: the KV cache is wrong")

    print(f"greedy decoding of {args.tokens} tokens after a {args.prompt}-token prompt, outputs identical")
    print(f"  without cache: {full_tps:8.1f} tokens/s")
    print(f"  with cache:    {cached_tps:8.1f} tokens/s")
    print(f"  speed-up:      {cached_tps / full_tps:8.1f}x")


if __name__ == "__main__":
    main()
