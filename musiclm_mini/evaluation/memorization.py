"""Does the model copy its training data? Exact and approximate memorization (Chapter 10; MusicLM Sec. 4.4, 5, Figure 3).

The paper's protocol, on the semantic stage only:

    prompt   = [M_A] + the first T semantic tokens of a training clip          T = 0 ... max_prompt_tokens
    generate = greedy continuation of `generated_tokens` tokens
    exact    = every generated token equals the clip's true continuation
    approx   = OT cost between the two token-count histograms < tau, with the ground cost the Euclidean
               distance between the k-means centroids of the tokens (Sec. 3.1), restricted to the tokens
               with non-zero counts; tau calibrated on negative pairs (a continuation against another
               clip's target) so that false positives stay below the preset's bound

    prompts(stage, tokens, idx, T, n)       -> condition, given, target ids
    greedy_continuations(model, stage, ...) -> (B, n) generated ids
    histogram_cost(a, b, centroids)         -> OT cost (Sinkhorn, or exact EMD for comparison)
    calibrate_tau(negative costs, max_fpr)  -> tau, and the false-positive bound the negatives can support
    wilson_interval(k, n)                   -> a 95% interval for a rate
    entropy_bits(ids)                       -> empirical entropy of each sample's tokens (4.6 vs 1.0 bits)
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from ..hierarchy.sampling import Sampling, continue_target


# ---------------------------------------------------------------------------------------------
# Prompts and greedy continuations
# ---------------------------------------------------------------------------------------------
def prompts(stage, mulan: Tensor, semantic: Tensor, prompt_tokens: int, new_tokens: int) -> tuple[Tensor, Tensor, Tensor]:
    """Clips' M_A (B, 12) and semantic tokens (B, T_s) -> (condition ids, first T ids, next n ids).

    The target is the `new_tokens` tokens right after the prompt, as in the paper.
    """
    if prompt_tokens + new_tokens > semantic.shape[1]:
        raise ValueError(f"a prompt of {prompt_tokens} and a continuation of {new_tokens} tokens need "
                         f"{prompt_tokens + new_tokens} semantic tokens; clips have {semantic.shape[1]}")
    ids = stage.encode_target(semantic)  # (B, T_s) vocabulary ids of the semantic stage
    return stage.condition(mulan), ids[:, :prompt_tokens], ids[:, prompt_tokens:prompt_tokens + new_tokens]


@torch.no_grad()
def greedy_continuations(model, stage, condition: Tensor, given: Tensor, new_tokens: int,
                         batch_size: int = 64) -> Tensor:
    """Greedy decoding of `new_tokens` ids after [condition] + [given] -> (B, new_tokens) (Chapter 10)."""
    out = []
    for lo in range(0, len(condition), batch_size):
        cont = continue_target(model, stage, condition[lo:lo + batch_size], given[lo:lo + batch_size],
                               new_tokens, Sampling(greedy=True))
        out.append(cont[:, given.shape[1]:])
    return torch.cat(out)


def exact_matches(generated: Tensor, target: Tensor) -> Tensor:
    """(B, n) and (B, n) -> (B,) True where every token agrees (Chapter 10)."""
    return (generated == target).all(dim=1)


# ---------------------------------------------------------------------------------------------
# Approximate matches: optimal transport between token histograms
# ---------------------------------------------------------------------------------------------
def histograms(tokens: Tensor, vocab: int) -> np.ndarray:
    """Token codes (B, n) in [0, vocab) -> counts (B, vocab)."""
    counts = torch.zeros(tokens.shape[0], vocab, dtype=torch.float64)
    counts.scatter_add_(1, tokens.long(), torch.ones_like(tokens, dtype=torch.float64))
    return counts.numpy()


def histogram_cost(a: np.ndarray, b: np.ndarray, centroids: np.ndarray, method: str = "sinkhorn",
                   reg: float = 0.05) -> float:
    """Optimal-transport cost between two token-count histograms (K,), ground cost the Euclidean
    distance between the tokens' k-means centroids (K, D), on the sub-matrix of non-zero counts (Chapter 10).

    `method`: "sinkhorn" (the paper's; entropic, `reg` times the mean ground cost of the sub-matrix)
    or "emd" (exact). An empty histogram is an error: POT's `sinkhorn2` would silently return 0 for
    it, and a cost of 0 reads as a perfect match.
    """
    import ot

    rows, cols = np.flatnonzero(a), np.flatnonzero(b)
    if len(rows) == 0 or len(cols) == 0:
        raise ValueError("an empty token histogram has no transport cost (is the continuation empty?)")
    pa, pb = a[rows] / a[rows].sum(), b[cols] / b[cols].sum()  # probability vectors, no zero entries
    cost = np.linalg.norm(centroids[rows, None, :] - centroids[None, cols, :], axis=-1)  # (|rows|, |cols|)
    if method == "emd":
        return float(ot.emd2(pa, pb, cost))
    if method != "sinkhorn":
        raise ValueError(f"method must be 'sinkhorn' or 'emd', got {method!r}")
    scale = float(cost.mean()) or 1.0  # identical one-token histograms: cost 0, any reg works
    return float(ot.sinkhorn2(pa, pb, cost, reg * scale, method="sinkhorn_stabilized"))  # log-domain safe, 10x faster than sinkhorn_log


def pair_costs(generated: np.ndarray, targets: np.ndarray, centroids: np.ndarray, pairs: list[tuple[int, int]],
               method: str = "sinkhorn") -> np.ndarray:
    """Costs of histogram pairs (generated[i], targets[j]) for (i, j) in `pairs` (Chapter 10)."""
    return np.array([histogram_cost(generated[i], targets[j], centroids, method) for i, j in pairs])


def negative_pairs(n: int, count: int, seed: int = 0) -> list[tuple[int, int]]:
    """`count` distinct pairs (i, j), i != j, drawn at random: a continuation against another clip's target."""
    if n < 2:
        raise ValueError("negative pairs need at least two clips")
    count = min(count, n * (n - 1))
    rng = np.random.default_rng(seed)
    flat = rng.choice(n * (n - 1), size=count, replace=False)
    i, r = flat // (n - 1), flat % (n - 1)
    return [(int(a), int(b + (b >= a))) for a, b in zip(i, r)]  # skip the diagonal


def calibrate_tau(negative_costs: np.ndarray, max_false_positive_rate: float) -> dict:
    """The largest threshold whose rate of negatives below it is at most the bound (Chapter 10).

    With n negatives a rate below 1/n cannot be observed: the 95% upper bound on the true rate when
    none of n falls below tau is about 3/n (the rule of three), so a bound of 1e-4 needs about 30,000
    negative pairs to be *shown*. Both are returned.
    """
    costs = np.sort(np.asarray(negative_costs, dtype=float))
    n = len(costs)
    k = int(math.floor(max_false_positive_rate * n))  # negatives allowed strictly below tau
    tau = float(costs[k]) if k < n else float("inf")
    observed = float(np.mean(costs < tau))
    return {"tau": tau, "negatives": n, "observed_rate": observed,
            "upper_bound_95": wilson_interval(int(round(observed * n)), n)[1],
            "negatives_needed": int(math.ceil(3 / max_false_positive_rate))}


# ---------------------------------------------------------------------------------------------
# Rates and diversity
# ---------------------------------------------------------------------------------------------
def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for k successes out of n (better than the normal one near 0)."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def entropy_bits(tokens: Tensor) -> np.ndarray:
    """Empirical entropy (bits) of each row's token distribution (B, n) -> (B,)."""
    out = []
    for row in tokens:
        _, counts = torch.unique(row, return_counts=True)
        p = counts.double() / counts.sum()
        out.append(float(-(p * torch.log2(p)).sum()))
    return np.array(out)
