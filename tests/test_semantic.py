"""Tests of Chapter 4: the w2v-BERT-style model, k-means, semantic and MFCC tokenizers, probes."""
import dataclasses
import math

import numpy as np
import pytest
import torch

from musiclm_mini.config import get_preset
from musiclm_mini.errors import AudioError
from musiclm_mini.exercises.semantic import check_lloyd_step, lloyd_step_stub, reference_lloyd_step
from musiclm_mini.tokenizers.kmeans import KMeans
from musiclm_mini.tokenizers.quantize import lloyd_step
from musiclm_mini.tokenizers.mfcc import MfccTokenizer, mfcc_frames
from musiclm_mini.tokenizers.w2v_bert import FeatureEncoder, SemanticModel, SemanticTokenizer, contrastive_loss, span_mask
from musiclm_mini.tokenizers.token_probes import probe_accuracy, token_histograms

torch.set_num_threads(1)
TINY = get_preset("tiny").semantic
PAPER = get_preset("paper").semantic


def _music(batch: int, seconds: float, seed: int = 0) -> torch.Tensor:
    """Random sums of sines with random pitch changes: a stand-in for music, (B, T)."""
    g = torch.Generator().manual_seed(seed)
    sr = TINY.sample_rate
    t = torch.arange(int(seconds * sr)) / sr
    notes = 220 * 2 ** (torch.randint(0, 24, (batch, int(seconds * 4) + 1), generator=g) / 12)  # 4 notes/s
    freq = notes.repeat_interleave(sr // 4, dim=1)[:, : len(t)]  # (B, T)
    phase = 2 * math.pi * torch.cumsum(freq / sr, dim=1)
    return 0.3 * torch.sin(phase) + 0.01 * torch.randn(batch, len(t), generator=g)


# ---------------------------------------------------------------------------------------------
# Sizes: the paper preset and the frame arithmetic
# ---------------------------------------------------------------------------------------------
def test_paper_preset_shapes_and_parameter_count():
    with torch.device("meta"):
        model = SemanticModel(PAPER)
    n = model.num_parameters()
    print(f"paper w2v-BERT: {n / 1e6:.1f}M parameters (paper: 600M)")
    assert 500e6 <= n <= 700e6
    assert len(model.contrastive.blocks) == 12 and len(model.mlm.blocks) == 12
    block = model.mlm.blocks[0]
    assert block.ff1.net[1].weight.shape == (4096, 1024)  # d_ff x d_model
    assert block.attn.n_heads == PAPER.n_heads and block.attn.qkv.weight.shape == (3 * 1024, 1024)
    assert block.conv.depthwise.kernel_size == (PAPER.conv_kernel,)
    assert model.mlm_head.out_features == PAPER.target_codebook_size == 1024
    assert PAPER.embedding_layer == 7 and PAPER.num_clusters == 1024


def test_parameter_counts_of_every_preset_are_printed_and_ordered():
    counts = {}
    for name in ("tiny", "colab", "paper"):
        with torch.device("meta"):
            counts[name] = SemanticModel(get_preset(name).semantic).num_parameters()
        print(f"{name:>6}: {counts[name] / 1e6:8.2f}M parameters")
    assert counts["tiny"] < counts["colab"] < counts["paper"]
    assert counts["tiny"] < 3e6  # shipped weights stay a few MB


def test_paper_frame_rate_is_25_tokens_per_second():
    assert PAPER.hop == 960 and PAPER.sample_rate / PAPER.hop == 25.0
    enc = FeatureEncoder(PAPER)  # the real paper-size front end (6M parameters) on 1 s of audio
    assert enc.num_frames(10 * 24_000) == 250
    with torch.no_grad():
        out = enc(torch.randn(1, 24_000) * 0.1)
    assert out.shape == (1, 25, 1024)


def test_tiny_embed_shape_and_layer_range():
    torch.manual_seed(0)
    model = SemanticModel(TINY).eval()
    wave = _music(2, 2.0)
    emb = model.embed(wave)
    assert emb.shape == (2, int(2.0 * TINY.frame_rate), TINY.d_model)
    assert model.embed(wave, layer=1).shape == emb.shape
    with pytest.raises(ValueError, match="layer"):
        model.embed(wave, layer=TINY.mlm_layers + 1)
    with pytest.raises(AudioError, match="NaN"):
        model.embed(torch.full((1, 4000), float("nan")))
    with pytest.raises(AudioError, match="at least"):
        model.embed(torch.zeros(1, TINY.hop - 1))


# ---------------------------------------------------------------------------------------------
# Masking and the losses
# ---------------------------------------------------------------------------------------------
def test_span_mask_fraction_and_spans():
    g = torch.Generator().manual_seed(0)
    mask = span_mask(400, 250, 0.065, 10, g)
    expected = 1 - (1 - 0.065) ** 10  # about 0.49, ignoring the clip's edges and forced starts
    assert abs(mask.float().mean().item() - expected) < 0.05
    assert mask.sum(1).min() >= 2
    # Spans: every masked run is at least `span` long unless it touches the end of the clip.
    row = span_mask(1, 60, 0.0, 4, torch.Generator().manual_seed(1))[0].int().tolist()
    runs = "".join(map(str, row)).strip("0").split("0")
    assert all(len(r) >= 4 for r in runs if r) or row[-1] == 1


def test_contrastive_loss_prefers_the_true_target():
    g = torch.Generator().manual_seed(0)
    targets = torch.randn(2, 30, 16, generator=g)
    codes = torch.arange(30).repeat(2, 1)  # all distinct
    mask = torch.rand(2, 30, generator=g) < 0.5
    good, acc = contrastive_loss(targets + 0.01 * torch.randn(2, 30, 16, generator=g), targets, codes, mask, 0.1)
    bad, _ = contrastive_loss(torch.randn(2, 30, 16, generator=g), targets, codes, mask, 0.1)
    assert acc.item() == 1.0 and good.item() < 0.1 < bad.item()
    # Frames with the positive's code are not distractors: identical targets cost nothing.
    same = torch.zeros(2, 30, dtype=torch.long)
    loss, _ = contrastive_loss(torch.randn(2, 30, 16, generator=g), targets[:, :1].expand(2, 30, 16), same, mask, 0.1)
    assert loss.item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.slow
def test_training_steps_reduce_the_loss_on_a_fixed_batch():
    torch.manual_seed(0)
    model = SemanticModel(TINY)
    wave = _music(4, 4.0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for step in range(25):
        out = model.losses(wave, torch.Generator().manual_seed(step % 3))
        assert torch.isfinite(out.loss)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(out.contrastive.item() + out.mlm.item())
    assert 0.0 <= out.mask_fraction.item() <= 1.0 and out.target_perplexity.item() >= 1.0
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.3, losses


# ---------------------------------------------------------------------------------------------
# k-means and tokenizers
# ---------------------------------------------------------------------------------------------
def test_kmeans_recovers_blobs_and_is_deterministic(tmp_path):
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(6, 5, generator=g) * 10
    labels = torch.randint(0, 6, (600,), generator=g)
    x = centres[labels] + torch.randn(600, 5, generator=g) * 0.1
    km = KMeans.fit(x, 6, seed=0)
    pred = km.predict(x)
    # Each true blob maps to one cluster and clusters are not shared: a perfect clustering.
    pairs = set(zip(labels.tolist(), pred.tolist()))
    assert len(pairs) == 6 and len({p for _, p in pairs}) == 6
    assert torch.equal(KMeans.fit(x, 6, seed=0).centroids, km.centroids)
    assert not torch.equal(KMeans.fit(x, 6, seed=1).centroids, km.centroids)
    with pytest.raises(ValueError, match="dimension"):
        km.predict(torch.zeros(3, 4))


def test_semantic_tokenizer_shapes_determinism_and_batch_independence():
    torch.manual_seed(0)
    model = SemanticModel(TINY)
    wave = _music(3, 3.0, seed=1)
    with torch.no_grad():
        frames = model.eval().embed(wave).reshape(-1, TINY.d_model)
    tok = SemanticTokenizer(model, KMeans.fit(frames, 16, seed=0))
    a = tok.tokenize(wave)
    assert a.shape == (3, int(3.0 * TINY.frame_rate)) and a.dtype == torch.long
    assert 0 <= a.min() and a.max() < 16
    assert torch.equal(a, tok.tokenize(wave))  # deterministic
    assert torch.equal(a[1:2], tok.tokenize(wave[1]))  # a clip's tokens do not depend on its batch
    with pytest.raises(AudioError):
        tok.tokenize(torch.zeros(2, 10))


def test_mfcc_tokenizer_shapes_and_determinism():
    wave = _music(4, 2.0, seed=2)
    feats = mfcc_frames(wave, TINY)
    assert feats.shape == (4, int(2.0 * TINY.frame_rate), 39)
    tok = MfccTokenizer.fit(wave, dataclasses.replace(TINY, num_clusters=8), seed=0)
    a = tok.tokenize(wave)
    assert a.shape == (4, 25) and a.max() < 8
    assert torch.equal(a, tok.tokenize(wave))


# ---------------------------------------------------------------------------------------------
# The shipped tokenizer
# ---------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_shipped_tiny_tokenizer_is_deterministic_and_batch_independent():
    from musiclm_mini.components import semantic_tokenizer

    tok = semantic_tokenizer("tiny")
    wave = _music(2, 2.0, seed=3)
    tokens = tok.tokenize(wave)
    assert tokens.shape == (2, 25) and tokens.max() < TINY.num_clusters
    assert torch.equal(tokens, semantic_tokenizer("tiny").tokenize(wave))
    assert torch.equal(tokens[1:], tok.tokenize(wave[1]))
    assert len(tokens.unique()) > 4  # not collapsed onto a few clusters


# ---------------------------------------------------------------------------------------------
# Probes and the exercise
# ---------------------------------------------------------------------------------------------
def test_probes_find_information_that_is_there_and_not_what_is_not():
    g = torch.Generator().manual_seed(0)
    labels = [{"a": i % 3, "b": int(torch.randint(0, 3, (1,), generator=g))} for i in range(90)]
    waves = torch.tensor([[d["a"]] for d in labels]).float()  # a "waveform" that is just the label

    def tokenize(w):  # tokens drawn mostly from a label-specific range of 4 tokens out of 12
        lab = w[:, 0].long()
        return lab[:, None] * 4 + torch.randint(0, 4, (len(w), 20), generator=g)

    train, test = (token_histograms(tokenize(w), 12, bigram_buckets=8) for w in (waves[:60], waves[60:]))
    acc = {task: probe_accuracy(train, [d[task] for d in labels[:60]], test, [d[task] for d in labels[60:]])
           for task in ("a", "b")}
    assert acc["a"]["accuracy"] == 1.0 and acc["a"]["n_test"] == 30
    assert acc["b"]["accuracy"] < 0.6  # b is independent of the tokens: near chance (1/3)
    hist = token_histograms(torch.tensor([[0, 1, 1, 2]]), 3)
    assert np.allclose(hist, [[0.25, 0.5, 0.25]])
    r = probe_accuracy(np.zeros((4, 2)), ["x"] * 4, np.zeros((2, 2)), ["x", "y"])
    assert r["accuracy"] == 0.5 and r["majority"] == 0.5


def test_exercise_stub_fails_and_reference_passes():
    assert not check_lloyd_step(lloyd_step_stub, verbose=False)
    assert check_lloyd_step(lloyd_step, verbose=False)  # the package's step, graded by the exercise's reference
    assert reference_lloyd_step is not lloyd_step

    def forgets_empty_clusters(x, c):
        assign = torch.cdist(x, c).argmin(1)
        sums = torch.zeros_like(c).index_add_(0, assign, x)
        return assign, sums / torch.bincount(assign, minlength=len(c)).clamp(min=1)[:, None]

    assert not check_lloyd_step(forgets_empty_clusters, verbose=False)


# ---------------------------------------------------------------------------------------------
# Frame-level probe helpers and the recipes end to end (on quick synthetic data)
# ---------------------------------------------------------------------------------------------
def test_sounding_pitch_and_context_onehots():
    from musiclm_mini.tokenizers.token_probes import context_onehots, sounding_pitch

    notes = np.array([[0.0, 1.0, 60], [0.5, 2.0, 64]])
    hi = sounding_pitch(notes, 30, 10.0)  # frame centres at 0.05, 0.15, ... s
    lo = sounding_pitch(notes, 30, 10.0, highest=False)
    assert hi[2] == 60 and hi[7] == 64 and lo[7] == 60 and hi[15] == 64 and hi[25] == -1
    assert (sounding_pitch(np.zeros((0, 4)), 5, 10.0) == -1).all()
    x = context_onehots(torch.tensor([[0, 1, 2]]), 3).toarray()  # (3 frames, 3 x 3)
    assert x.shape == (3, 9)
    assert x[1].tolist() == [1, 0, 0, 0, 1, 0, 0, 0, 1]  # previous 0, current 1, next 2
    assert x[0, :3].sum() == 0 and x[2, 6:].sum() == 0  # no neighbour beyond the clip's edges


@pytest.mark.slow
def test_recipes_w2v_bert_ship_kmeans_then_load(tmp_path, capsys):
    import json

    from musiclm_mini.components import load, semantic_tokenizer
    from musiclm_mini.train.__main__ import main

    run, root = tmp_path / "run", tmp_path / "checkpoints"
    common = ["--preset", "tiny", "--data", "sines", "--quiet", "--threads", "1"]
    main(["w2v-bert", *common, "--steps", "3", "--val-every", "3", "--checkpoint-every", "3", "--out", str(run)])
    main(["ship", "w2v-bert", "--preset", "tiny", "--from", str(run), "--checkpoints", str(root)])
    main(["kmeans", *common, "--checkpoints", str(root), "--out", str(tmp_path / "km")])
    main(["ship", "kmeans", "--preset", "tiny", "--from", str(tmp_path / "km"), "--checkpoints", str(root)])
    tok = semantic_tokenizer("tiny", root)
    assert tok.kmeans.checkpoint_config["sources"] == {"w2v-bert": tok.model.checkpoint_config["fingerprint"]}
    assert tok.tokenize(_music(1, 2.0)).shape == (1, 25)
    assert load("kmeans", "tiny", root / "kmeans-tiny").centroids.dtype == torch.float32
    (root / "w2v-bert-tiny" / "data.json").write_text(json.dumps({"data": "something else"}))
    with pytest.raises(SystemExit):
        main(["kmeans", *common, "--checkpoints", str(root), "--out", str(tmp_path / "km2")])
    assert "another version of the data" in capsys.readouterr().err
