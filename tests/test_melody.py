"""Chapter 8's melody embedder: the semi-hard triplet loss against a brute-force loop, the ViT's shapes.

Tiny random inputs only: every test runs in well under a second.
"""
import dataclasses

import pytest
import torch

from musiclm_mini.components import architecture
from musiclm_mini.config import MelodyConfig, RVQConfig, get_preset
from musiclm_mini.melody import frontend, triplet
from musiclm_mini.melody.vit import MelodyEmbedder, MelodyEmbedderConfig, melody_embedder_config


def brute_force_triplet_loss(emb, labels, margin):
    """FaceNet's semi-hard mining written as plain loops over anchors, positives and negatives."""
    n = len(labels)
    dist = [[float(((emb[i] - emb[j]) ** 2).sum()) for j in range(n)] for i in range(n)]
    losses, semi, fell = [], 0, 0
    for a in range(n):
        for p in range(n):
            if a == p or labels[a] != labels[p]:
                continue
            negatives = [k for k in range(n) if labels[k] != labels[a]]
            farther = [k for k in negatives if dist[a][k] > dist[a][p]]
            if farther:
                neg = min(farther, key=lambda k: dist[a][k])  # the closest of those farther than the positive
            else:
                neg = max(negatives, key=lambda k: dist[a][k])  # FaceNet's fallback: the farthest negative
                fell += 1
            semi += dist[a][p] < dist[a][neg] < dist[a][p] + margin
            losses.append(max(0.0, dist[a][p] - dist[a][neg] + margin))
    return sum(losses) / len(losses), semi / len(losses), fell / len(losses)


@pytest.mark.parametrize("seed", range(5))
def test_semi_hard_loss_matches_a_brute_force_loop(seed):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 4, (12,), generator=g)
    labels[:2] = 9  # at least one pair
    emb = torch.nn.functional.normalize(torch.randn(12, 5, generator=g, dtype=torch.float64), dim=-1)
    margin = [0.2, 0.5, 1.0, 2.0, 0.05][seed]
    loss, stats = triplet.semi_hard_triplet_loss(emb, labels, margin)
    want, semi, fell = brute_force_triplet_loss(emb, labels.tolist(), margin)
    assert float(loss) == pytest.approx(want, rel=1e-9, abs=1e-12)
    assert stats["semi_hard"] == pytest.approx(semi) and stats["fallback"] == pytest.approx(fell)


def test_mining_picks_the_semi_hard_negative_and_falls_back_to_the_farthest():
    # 1-d embeddings: anchor 0 and positive at 0.5 (d = 0.25); negatives at 0.4 (d 0.16, closer: hard),
    # 0.6 (d 0.36: semi-hard within 0.2), 1.0 (d 1: easy).
    emb = torch.tensor([[0.0], [0.5], [0.4], [0.6], [1.0]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 2, 3])
    a, p, n, fallback = triplet.mine_semi_hard(triplet.squared_distances(emb), labels)
    pairs = {(int(i), int(j)): (int(k), bool(f)) for i, j, k, f in zip(a, p, n, fallback)}
    assert pairs[(0, 1)] == (3, False)  # 0.6: farther than the positive, closest such
    # Anchor 0.5, positive 0 (d 0.25): negatives 0.4 (0.01), 0.6 (0.01), 1.0 (0.25, not farther): fallback
    assert pairs[(1, 0)] == (4, True)
    loss, stats = triplet.semi_hard_triplet_loss(emb, labels, margin=0.2)
    assert float(loss) == pytest.approx(((0.25 - 0.36 + 0.2) + (0.25 - 0.25 + 0.2)) / 2)
    assert stats == {"semi_hard": 0.5, "fallback": 0.5, "active": 1.0}


def test_the_loss_needs_pairs_and_negatives_and_a_gradient_step_lowers_it():
    with pytest.raises(ValueError, match="two examples of one melody"):
        triplet.semi_hard_triplet_loss(torch.randn(3, 4), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="two melodies"):
        triplet.semi_hard_triplet_loss(torch.randn(3, 4), torch.tensor([1, 1, 1]))
    emb = torch.tensor([[0.0, 0.0], [0.5, 0.0], [0.6, 0.0], [0.0, 0.3]], requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1])
    loss, _ = triplet.semi_hard_triplet_loss(emb, labels, margin=0.2)
    loss.backward()
    assert float(loss.detach()) > 0 and emb.grad.abs().sum() > 0
    after, _ = triplet.semi_hard_triplet_loss(emb.detach() - 0.05 * emb.grad, labels, margin=0.2)
    assert float(after) < float(loss.detach())


MICRO = MelodyEmbedderConfig(MelodyConfig(n_layers=1, n_heads=2, d_model=16, d_ff=32, embed_dim=8,
                                          rvq=RVQConfig(3, 16, 8)),
                             frontend.MelSettings(n_mels=16), patch_frames=4)


def test_the_vit_embeds_windows_as_unit_vectors_and_10_s_as_three_windows():
    torch.manual_seed(0)
    model = MelodyEmbedder(MICRO).eval()
    assert MICRO.frames == 200 and MICRO.tokens == 50  # 4 s of 20 ms frames, 4 frames per token
    wave = torch.randn(2, 10 * frontend.SAMPLE_RATE) * 0.1
    emb = model.embed(wave)
    assert emb.shape == (2, 3, 8) and torch.allclose(emb.norm(dim=-1), torch.ones(2, 3), atol=1e-5)
    first = model.embed_windows(wave[:, : 4 * frontend.SAMPLE_RATE])
    assert torch.allclose(emb[:, 0], first, atol=1e-5)  # window 0 is the first 4 s
    assert model.embed(wave[0, :24_000]).shape == (1, 1, 8)  # 1 s: looped to one window
    with pytest.raises(ValueError, match="expects"):
        model(torch.randn(1, 16, 100))


def test_loudness_does_not_change_the_embedding():
    torch.manual_seed(0)
    model = MelodyEmbedder(MICRO).eval()
    wave = torch.randn(1, 4 * frontend.SAMPLE_RATE) * 0.1
    assert torch.allclose(model.embed(wave), model.embed(wave * 3.0), atol=1e-3)


def test_tiny_and_paper_sizes():
    paper = melody_embedder_config(get_preset("paper"))
    assert (paper.melody.n_layers, paper.melody.d_model, paper.melody.embed_dim, paper.tokens) == (12, 512, 192, 200)
    tiny = melody_embedder_config(get_preset("tiny"))
    assert tiny.tokens == 50 and tiny.melody.embed_dim == 64
    params = sum(p.numel() for p in MelodyEmbedder(tiny).parameters())
    assert params < 2_000_000  # a few MB in float16
    assert architecture(dataclasses.replace(tiny, margin=0.5)) == architecture(tiny)  # a setting: not the identity
    assert architecture(dataclasses.replace(tiny, patch_frames=2)) != architecture(tiny)


def test_melody_tokens_are_each_windows_rvq_codes_window_by_window():
    from musiclm_mini.errors import CheckpointError
    from musiclm_mini.melody import tokens

    torch.manual_seed(0)
    model = MelodyEmbedder(MICRO).eval()
    wave = torch.randn(2, 10 * frontend.SAMPLE_RATE) * 0.1
    with pytest.raises(CheckpointError, match="not fitted"):
        tokens.melody_tokens(model, wave)
    errors = tokens.fit_melody_rvq(model, torch.nn.functional.normalize(torch.randn(300, 8), dim=-1))
    assert errors.shape == (3,) and (errors[1:] < errors[:-1]).all()  # each level removes more of the residual
    emb = model.embed(wave)  # (2, 3, 8)
    codes = tokens.quantize(model, emb)  # (2, 3 windows, 3 levels)
    assert codes.shape == (2, 3, 3)
    flat = tokens.melody_tokens(model, wave)
    assert torch.equal(flat, codes.flatten(1)) and torch.equal(flat[:, :3], codes[:, 0])  # window 0's levels first
    one = tokens.quantize(model, emb[:, 1:2])  # a window's codes do not depend on the other windows
    assert torch.equal(one[:, 0], codes[:, 1])
    assert (tokens.dequantize(model, codes) - emb).pow(2).sum(-1).mean() < emb.pow(2).sum(-1).mean()
