"""Tests of the stage Transformer (Chapter 6): shapes, causality, KV cache, sampling, size, learning."""
import math

import pytest
import torch
import torch.nn.functional as F

from musiclm_mini.config import TransformerConfig, get_preset
from musiclm_mini.hierarchy.sampling import Sampling, sample
from musiclm_mini.hierarchy.stage_models import count_parameters
from musiclm_mini.hierarchy.transformer import KVCache, Transformer, relative_position_bucket

torch.set_num_threads(1)

# Small enough for milliseconds; 8 buckets up to distance 16 so sequences of ~40 reach the log buckets.
MICRO = TransformerConfig(n_layers=2, n_heads=4, d_model=32, d_ff=64, dropout=0.1,
                          gated_ff=True, rel_pos_buckets=8, rel_pos_max_distance=16)
VOCAB = 50


def make_model(config=MICRO, vocab=VOCAB, seed=0, **kw):
    torch.manual_seed(seed)
    return Transformer(config, vocab, **kw).eval()


def meta_transformer(config, vocab):
    with torch.device("meta"):  # shapes only, no memory
        return Transformer(config, vocab)


def random_tokens(B, T, vocab=VOCAB, seed=1):
    return torch.randint(0, vocab, (B, T), generator=torch.Generator().manual_seed(seed))


# --- relative positions ----------------------------------------------------------------------
def test_relative_position_bucket_hand_computed():
    # causal, 32 buckets, max distance 128: distances 0..15 exact; then 16 + floor(16 * log(n/16) / log(8))
    distance = torch.tensor([0, 1, 15, 16, 32, 64, 127, 128, 1000])
    expected = [0, 1, 15, 16, 21, 26, 31, 31, 31]  # log2(2)/3*16 = 5.33 -> 21; 2/3*16 = 10.67 -> 26
    assert relative_position_bucket(-distance, 32, 128).tolist() == expected
    # future keys (positive offsets) are not distinguished in the causal version
    assert relative_position_bucket(torch.tensor([1, 5]), 32, 128).tolist() == [0, 0]


def test_relative_position_bucket_bidirectional():
    # 32 buckets split in two: keys before the query use 0..15, keys after use 16..31
    rel = torch.tensor([-3, 3, -20, 20])  # 20: 8 + floor(8 * log(20/8) / log(16)) = 8 + 2 = 10
    assert relative_position_bucket(rel, 32, 128, bidirectional=True).tolist() == [3, 19, 10, 26]


# --- shapes and causality --------------------------------------------------------------------
def test_forward_shapes_and_cache_structure():
    model = make_model()
    logits, cache = model(random_tokens(3, 11))
    assert logits.shape == (3, 11, VOCAB)
    assert isinstance(cache, KVCache) and cache.offset == 11 and len(cache.layers) == MICRO.n_layers
    k, v = cache.layers[0]
    assert k.shape == v.shape == (3, MICRO.n_heads, 11, MICRO.d_model // MICRO.n_heads)
    last, _ = model(random_tokens(3, 11), last_only=True)
    assert last.shape == (3, 1, VOCAB)


def test_causality_future_token_does_not_change_past_logits():
    model = make_model()
    tokens = random_tokens(2, 30)
    changed = tokens.clone()
    j = 17
    changed[:, j] = (changed[:, j] + 1) % VOCAB
    a, _ = model(tokens)
    b, _ = model(changed)
    assert torch.equal(a[:, :j], b[:, :j])
    assert not torch.allclose(a[:, j:], b[:, j:])  # the change is visible from position j on


def test_bad_input_raises_clear_errors():
    model = make_model(max_len=20)
    with pytest.raises(ValueError, match=f"prompt ids must lie in \\[0, {VOCAB}\\)"):
        model.generate(torch.tensor([[0, VOCAB]]), 1)
    with pytest.raises(ValueError, match="max_len"):
        model(random_tokens(1, 21))
    with pytest.raises(ValueError, match="batch, time"):
        model.generate(torch.zeros(5, dtype=torch.long), 1)
    with pytest.raises(ValueError, match="integer ids"):
        model.generate(torch.zeros(1, 5), 1)
    with pytest.raises(ValueError, match="temperature"):
        model.generate(random_tokens(1, 3), 2, temperature=0.0)
    with pytest.raises(ValueError, match="allowed_range"):
        model.generate(random_tokens(1, 3), 2, allowed_range=(10, VOCAB + 1))


def test_tokens_are_checked_once_per_request_not_per_decoding_step(monkeypatch):
    model, calls = make_model(), []
    check = Transformer.check_tokens
    monkeypatch.setattr(Transformer, "check_tokens", lambda self, *a: calls.append(1) or check(self, *a))
    model.generate(random_tokens(2, 3), 10)
    assert len(calls) == 1


# --- KV cache --------------------------------------------------------------------------------
def test_kv_cache_matches_full_recompute_at_every_step():
    model = make_model()
    tokens = random_tokens(2, 40)  # longer than max_distance 16: exercises the log and last buckets
    full, _ = model(tokens)  # (2, 40, V)
    logits, cache = model(tokens[:, :5])  # prefill 5
    torch.testing.assert_close(logits, full[:, :5], atol=1e-5, rtol=0)
    for t in range(5, 40):  # then one token at a time
        step, cache = model(tokens[:, t:t + 1], cache)
        assert cache.offset == t + 1
        torch.testing.assert_close(step[:, 0], full[:, t], atol=1e-5, rtol=0)


def test_kv_cache_accepts_chunks_of_several_tokens():
    model = make_model()
    tokens = random_tokens(1, 30)
    full, _ = model(tokens)
    cache, outs = None, []
    for lo, hi in [(0, 3), (3, 10), (10, 11), (11, 30)]:
        out, cache = model(tokens[:, lo:hi], cache)
        outs.append(out)
    torch.testing.assert_close(torch.cat(outs, dim=1), full, atol=1e-5, rtol=0)


def test_a_cache_with_room_gives_the_same_logits_bit_for_bit():
    """`empty_cache` (in-place appends, the bias row cut from a table) must not change a single bit: golden hashes."""
    model = make_model()
    tokens = random_tokens(2, 40)
    with torch.no_grad():  # as in sampling: decoding steps take the cached bias row
        cat, roomy = None, model.empty_cache(2, 40)
        for lo, hi in [(0, 5)] + [(t, t + 1) for t in range(5, 40)]:
            a, cat = model(tokens[:, lo:hi], cat)
            b, roomy = model(tokens[:, lo:hi], roomy)
            assert torch.equal(a, b) and roomy.offset == hi and roomy.layers[0][0].shape[2] == hi
        assert torch.equal(cat.layers[-1][1], roomy.layers[-1][1])
        for offset in (0, 7, 39, 300):  # past the table's first length too
            pos = torch.arange(offset + 1)
            assert torch.equal(model.rel_bias.last_row(offset), model.rel_bias(pos[offset:], pos))


def test_greedy_generation_same_with_and_without_cache():
    model = make_model()
    prompt = random_tokens(2, 4)
    with_cache = model.generate(prompt, 40, greedy=True, use_cache=True)
    without = model.generate(prompt, 40, greedy=True, use_cache=False)
    assert with_cache.shape == (2, 44)
    assert torch.equal(with_cache[:, :4], prompt)
    assert torch.equal(with_cache, without)


# --- sampling --------------------------------------------------------------------------------
def test_same_seed_same_samples_and_mode_restored():
    model = make_model().train()
    prompt = random_tokens(2, 3)

    def sample(seed):
        return model.generate(prompt, 25, temperature=1.0, top_k=10, generator=torch.Generator().manual_seed(seed))

    assert torch.equal(sample(0), sample(0))
    assert not torch.equal(sample(0), sample(1))
    assert model.training  # generate switched to eval and back


def test_allowed_range_fixed_and_per_step():
    model = make_model()
    prompt = random_tokens(4, 3)
    g = torch.Generator().manual_seed(0)
    out = model.generate(prompt, 30, temperature=2.0, allowed_range=(10, 20), generator=g)[:, 3:]
    assert out.min() >= 10 and out.max() < 20
    assert out.unique().numel() > 3  # really sampled, not stuck on one token

    def alternate(step):  # even steps: one token type, odd steps: another
        return (0, 5) if step % 2 == 0 else (40, 50)

    out = model.generate(prompt, 30, temperature=2.0, allowed_range=alternate, generator=g)[:, 3:]
    assert ((out[:, 0::2] >= 0) & (out[:, 0::2] < 5)).all()
    assert ((out[:, 1::2] >= 40) & (out[:, 1::2] < 50)).all()
    greedy = model.generate(prompt, 5, greedy=True, allowed_range=(7, 8))[:, 3:]
    assert (greedy == 7).all()


def test_guidance_mixes_the_two_halves_of_the_batch():
    """u + w (c - u): w = 0 samples from the unconditional half alone, equal halves make w irrelevant."""
    model = make_model()
    cond, uncond = random_tokens(2, 5, seed=1), random_tokens(2, 5, seed=2)

    def draw(prompt, guidance=1.0):
        return sample(model, prompt, 12, Sampling(temperature=1.0, guidance=guidance), torch.Generator().manual_seed(4))

    plain_u = draw(uncond)
    only_u = draw(torch.cat([cond, uncond]), guidance=0.0)  # (2, 17): the conditional rows, continued
    assert only_u.shape == (2, 17) and torch.equal(only_u[:, :5], cond)
    assert torch.equal(only_u[:, 5:], plain_u[:, 5:])  # the continuation followed the unconditional logits
    same = draw(torch.cat([cond, cond]), guidance=3.0)  # c == u: guidance changes nothing
    assert torch.equal(same, draw(cond))
    assert not torch.equal(draw(torch.cat([cond, uncond]), guidance=3.0), draw(cond))
    with pytest.raises(ValueError, match="even"):
        draw(random_tokens(3, 4), guidance=2.0)


def test_top_k_one_equals_greedy():
    model = make_model()
    prompt = random_tokens(2, 3)
    sampled = model.generate(prompt, 15, top_k=1, generator=torch.Generator().manual_seed(3))
    assert torch.equal(sampled, model.generate(prompt, 15, greedy=True))


# --- size ------------------------------------------------------------------------------------
def body_formula(c: TransformerConfig) -> int:
    ff = (3 if c.gated_ff else 2) * c.d_model * c.d_ff
    per_layer = 4 * c.d_model ** 2 + ff + 2 * c.d_model  # attention + feed-forward + two norm gains
    return c.n_layers * per_layer + c.d_model + c.rel_pos_buckets * c.n_heads  # + final norm + bias table


PAPER_VOCAB = {"semantic": 13_313, "coarse": 17_409, "fine": 12_288}


@pytest.mark.parametrize("stage", ["semantic", "coarse", "fine"])
def test_paper_stage_has_about_430M_parameters(stage):
    """Counted: every parameter incl. the untied token embedding and output head (vocabularies:
    semantic 13,313, coarse 17,409, fine 12,288, see test_stages)."""
    preset = get_preset("paper")
    config, vocab = getattr(preset, f"{stage}_stage").transformer, PAPER_VOCAB[stage]
    model = meta_transformer(config, vocab)
    assert all(p.device.type == "meta" for p in model.parameters())  # nothing allocated
    total = count_parameters(model)
    body = count_parameters(model, include_embeddings=False)
    assert 400e6 <= total <= 460e6, total
    assert body == body_formula(config)  # 402.7M for the paper config
    assert total == body + 2 * vocab * config.d_model


def test_plain_mlp_would_be_far_from_430M():
    config = TransformerConfig(gated_ff=False)
    model = meta_transformer(config, PAPER_VOCAB["semantic"])
    assert count_parameters(model, include_embeddings=False) == body_formula(config)
    assert count_parameters(model) < 340e6  # why the book uses GEGLU


# --- learning --------------------------------------------------------------------------------
def test_tiny_model_overfits_a_repeated_sequence():
    torch.manual_seed(0)
    config = TransformerConfig(n_layers=2, n_heads=4, d_model=64, d_ff=128, dropout=0.0,
                               rel_pos_buckets=16, rel_pos_max_distance=32)
    model = Transformer(config, vocab_size=32)
    pattern = torch.tensor([3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8])  # repeats need context: 1 -> 4 or 5
    seq = pattern.repeat(4)[None].expand(4, -1)  # (4, 48)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        logits, _ = model(seq[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, 32), seq[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] > 0.8 * math.log(32)  # starts near chance
    assert losses[-1] < 0.1 * losses[0], losses[-1]
    out = model.generate(pattern[None, :6], 18, greedy=True)  # continues the pattern it learned
    assert torch.equal(out[0], pattern.repeat(2))
