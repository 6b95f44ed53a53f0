"""Count-based baselines of the token stages (Chapter 6): known entropies, smoothing chosen on validation."""
import math

import pytest
import torch

from musiclm_mini.hierarchy.ngram import (baseline_table, choose_alpha, fit_counts, flatten_codes, mean_nll,
                                          uniform_nll)


def markov_codes(n: int, levels: int, frames: int, k: int, stay: float, seed: int) -> torch.Tensor:
    """Codes (N, Q, T) where each next id (flattened frame by frame) is previous + 1 mod K w.p. `stay`."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.zeros(n, levels * frames, dtype=torch.long)
    ids[:, 0] = torch.randint(0, k, (n,), generator=g)
    for i in range(1, ids.shape[1]):
        keep = torch.rand(n, generator=g) < stay
        ids[:, i] = torch.where(keep, (ids[:, i - 1] + 1) % k, torch.randint(0, k, (n,), generator=g))
    return ids.view(n, frames, levels).transpose(1, 2)


def test_flatten_is_frame_by_frame():
    codes = torch.tensor([[[1, 2, 3], [4, 5, 6]]])  # (1, Q=2, T=3)
    ids, levels = flatten_codes(codes)
    assert ids.tolist() == [[1, 4, 2, 5, 3, 6]] and levels.tolist() == [0, 1, 0, 1, 0, 1]


def test_bigram_reaches_the_chains_entropy_and_unigram_does_not():
    k, stay = 8, 0.9
    codes = markov_codes(300, 2, 40, k, stay, seed=0)
    table = baseline_table(codes[:200], codes[200:250], codes[250:], k)
    p = stay + (1 - stay) / k
    entropy = -(p * math.log(p) + (k - 1) * ((1 - stay) / k) * math.log((1 - stay) / k))
    assert table["uniform"] == pytest.approx(math.log(k))
    assert table["unigram"] == pytest.approx(math.log(k), abs=0.02)  # every id equally frequent
    assert table["bigram"] == pytest.approx(entropy, abs=0.05)  # plus the first token's log K / L


def test_unigram_learns_a_skewed_level():
    g = torch.Generator().manual_seed(1)
    probs = torch.tensor([0.7, 0.1, 0.1, 0.1])
    codes = torch.multinomial(probs, 200 * 30, replacement=True, generator=g).view(200, 1, 30)
    model = fit_counts(codes[:150], 4, order=1, alpha=0.01)
    expected = float(-(probs * probs.log()).sum())
    assert mean_nll(model, codes[150:]) == pytest.approx(expected, abs=0.03)
    assert mean_nll(model, codes[150:]) < uniform_nll(4) - 0.3


def test_smoothing_is_chosen_on_validation_and_matters_for_unseen_pairs():
    codes = markov_codes(40, 1, 20, 64, 0.5, seed=2)  # few tokens, many unseen bigrams
    alpha, losses = choose_alpha(codes[:20], codes[20:30], 64, order=2)
    assert losses[alpha] == min(losses.values()) and len(set(losses.values())) == len(losses)


def test_bad_codes_are_refused():
    with pytest.raises(ValueError, match="lie in"):
        fit_counts(torch.full((1, 1, 3), 9), 8, order=1)
    with pytest.raises(ValueError, match="order"):
        fit_counts(torch.zeros(1, 1, 3, dtype=torch.long), 8, order=3)
    with pytest.raises(ValueError, match=r"\(N, Q, T\)"):
        flatten_codes(torch.zeros(3, 4, dtype=torch.long))
