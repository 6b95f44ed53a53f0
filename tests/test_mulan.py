"""Tests of MuLan: towers, loss, windowing, tokens, bad input, paper shapes, shipped model (Chapter 5)."""
import math
import warnings

import pytest
import torch
import torch.nn.functional as F

from musiclm_mini.config import get_preset
from musiclm_mini.errors import AudioError, CheckpointError, TextError
from musiclm_mini.tokenizers.mulan import MuLan, audio_windows, contrastive_loss

torch.set_num_threads(1)
SR = 24_000
# The shipped tiny MuLan must beat this on the 32 held-out test clips (chance: 10 / 32 = 0.31).
RECALL10_FLOOR = 0.6


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model = MuLan(get_preset("tiny").mulan).eval()
    return model


def noise(batch: int, seconds: float, seed: int = 0) -> torch.Tensor:
    return 0.1 * torch.randn(batch, int(seconds * SR), generator=torch.Generator().manual_seed(seed))


# --- windows -------------------------------------------------------------------------------------
def test_windows_cover_the_clip_at_the_given_stride():
    wave = torch.arange(10, dtype=torch.float32)[None]  # (1, 10)
    w = audio_windows(wave, window=4, hop=2)
    assert w.shape == (1, 4, 4)
    assert w[0, :, 0].tolist() == [0, 2, 4, 6]
    # a tail that the stride misses gets one extra window aligned with the end
    w = audio_windows(torch.arange(11, dtype=torch.float32)[None], window=4, hop=2)
    assert w.shape == (1, 5, 4) and w[0, -1].tolist() == [7, 8, 9, 10]


def test_short_audio_is_looped_or_zero_padded_to_one_window():
    wave = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    looped = audio_windows(wave, window=5, hop=1)
    assert looped.shape == (2, 1, 5) and looped[0, 0].tolist() == [1, 2, 3, 1, 2]
    padded = audio_windows(wave, window=5, hop=1, short="zeros")
    assert padded[1, 0].tolist() == [4, 5, 6, 0, 0]
    with pytest.raises(ValueError, match="short"):
        audio_windows(wave, window=5, hop=1, short="reflect")


def test_paper_window_count_for_30_seconds():
    cfg = get_preset("paper").mulan
    win, hop = round(cfg.window_seconds * SR), round(cfg.hop_seconds * SR)
    assert audio_windows(torch.zeros(1, 30 * SR), win, hop).shape[1] == 21  # 10 s windows at 1 s: 0..20 s


# --- audio tower ---------------------------------------------------------------------------------
@pytest.mark.parametrize("seconds", [0.5, 10.0, 13.5])
def test_audio_embedding_of_any_length_is_unit_norm(tiny, seconds):
    emb = tiny.embed_audio(noise(2, seconds))
    assert emb.shape == (2, 128)
    assert torch.allclose(emb.norm(dim=-1), torch.ones(2), atol=1e-5)


def test_audio_embedding_is_the_renormalised_mean_of_window_embeddings(tiny):
    wave = noise(1, 12.0, seed=1)
    windows = audio_windows(wave, tiny.window, tiny.hop)[0]  # (W, window)
    with torch.no_grad():
        expected = F.normalize(tiny.embed_windows(windows).mean(0, keepdim=True), dim=-1)
        got = tiny.embed_audio(wave)
    assert torch.allclose(got, expected, atol=1e-5)
    single = tiny.embed_audio(noise(1, 12.0, seed=1)[0])  # (T,) is a batch of one
    assert torch.allclose(single, got, atol=1e-5)


def test_bad_audio_raises_audio_error(tiny):
    with pytest.raises(AudioError, match="NaN"):
        tiny.embed_audio(torch.full((1, SR), float("nan")))
    with pytest.raises(AudioError, match="empty"):
        tiny.embed_audio(torch.zeros(1, 0))
    with pytest.raises(AudioError, match="shape"):
        tiny.embed_audio(torch.zeros(1, 1, SR))


# --- text tower ----------------------------------------------------------------------------------
def test_text_embedding_shape_norm_and_cache(tiny):
    texts = ["a calm solo piano piece", "fast electronic drums with a heavy bass"]
    emb = tiny.embed_text(texts)
    assert emb.shape == (2, 128)
    assert torch.allclose(emb.norm(dim=-1), torch.ones(2), atol=1e-5)
    assert torch.allclose(tiny.embed_text(texts[1])[0], emb[1], atol=1e-6)  # one string, same answer
    assert not torch.allclose(emb[0], emb[1])


@pytest.mark.parametrize("bad", ["", "   ", "\n\t", [], ["fine", " "], [3]])
def test_empty_or_non_text_raises_text_error(tiny, bad):
    with pytest.raises(TextError):
        tiny.embed_text(bad)
    with pytest.raises(TextError):
        tiny.tokens_from_text(bad)


def test_overlong_text_is_truncated_with_a_warning(tiny):
    long_text = "a slow piano ballad with strings " * 60  # ~ 360 tokens > max_text_tokens
    with pytest.warns(UserWarning, match="truncated"):
        long_emb = tiny.embed_text([long_text + "and then drums"])
    with pytest.warns(UserWarning, match="truncated"):  # what comes after the limit is ignored
        other = tiny.embed_text([long_text + "and a choir"])
    assert torch.allclose(long_emb, other, atol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a short text must not warn
        tiny.embed_text(["a short caption"])


# --- loss ----------------------------------------------------------------------------------------
def test_contrastive_loss_rewards_matching_pairs():
    torch.manual_seed(0)
    a = F.normalize(torch.randn(8, 16), dim=-1)
    scale = torch.tensor(2.0)
    aligned = contrastive_loss(a, a, scale)
    shuffled = contrastive_loss(a, a[torch.randperm(8)], scale)
    assert aligned < shuffled
    assert aligned < torch.log(torch.tensor(8.0))  # better than uniform guessing
    # symmetric: swapping the roles of audio and text gives the same loss
    t = F.normalize(torch.randn(8, 16), dim=-1)
    assert torch.allclose(contrastive_loss(a, t, scale), contrastive_loss(t, a, scale))


def test_a_few_steps_of_training_lower_the_loss():
    torch.manual_seed(0)
    cfg = get_preset("tiny").mulan
    model = MuLan(cfg, load_text=False).train()
    wave = noise(4, cfg.window_seconds, seed=3)
    feats = torch.randn(4, 384, generator=torch.Generator().manual_seed(4))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(8):
        loss = contrastive_loss(model.audio_tower(wave), model.text_tower.project(feats), model.scale())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


# --- MuLan tokens --------------------------------------------------------------------------------
def test_tokens_need_a_fitted_rvq_then_come_from_one_shared_rvq():
    torch.manual_seed(0)
    cfg = get_preset("tiny").mulan
    model = MuLan(cfg, load_text=False).eval()
    with pytest.raises(CheckpointError, match="not fitted"):
        model.tokens(F.normalize(torch.randn(2, 128), dim=-1))
    data = F.normalize(torch.randn(600, 128), dim=-1)
    errors = model.fit_rvq(data, steps=5)
    assert errors.shape == (cfg.rvq.num_quantizers,)
    assert errors[-1] < errors[0]  # each level removes some of what is left
    tokens = model.tokens(data[:5])
    assert tokens.shape == (5, 12) and tokens.dtype == torch.long
    assert 0 <= int(tokens.min()) and int(tokens.max()) < cfg.rvq.codebook_size
    recon = model.rvq.decode(tokens[:, :, None])[:, 0]  # (5, 128)
    assert F.mse_loss(recon, data[:5]) < F.mse_loss(torch.zeros_like(recon), data[:5])


def test_tokens_from_audio_and_text(tiny):
    model = MuLan(get_preset("tiny").mulan, load_text=False).eval()
    model.text_tower = tiny.text_tower  # reuse the loaded backbone
    model.fit_rvq(F.normalize(torch.randn(600, 128), dim=-1), steps=3)
    assert model.tokens_from_audio(noise(3, 2.0)).shape == (3, 12)
    assert model.tokens_from_text(["a jazz trio", "a march"]).shape == (2, 12)


# --- paper shapes --------------------------------------------------------------------------------
def test_paper_mulan_has_paper_shapes():
    cfg = get_preset("paper").mulan
    assert cfg.embed_dim == 128 and cfg.text_tower == "bert-base-uncased"
    assert cfg.window_seconds == 10.0 and cfg.hop_seconds == 1.0
    assert (cfg.rvq.num_quantizers, cfg.rvq.codebook_size, cfg.rvq.dim) == (12, 1024, 128)
    with torch.device("meta"):  # ResNet-50 + BERT projection, no memory, no download
        model = MuLan(cfg, load_text=False)
    blocks = model.audio_tower.stages
    assert len(blocks) == 3 + 4 + 6 + 3
    assert model.audio_tower.out_channels == 2048
    assert model.audio_tower.projection.out_features == 128
    assert model.text_tower.projection[0].in_features == 768  # BERT-base width
    assert model.rvq.codebooks.shape == (12, 1024, 128)
    counts = model.parameter_counts()
    print("paper MuLan parameters:", counts)
    assert 23.4e6 < counts["audio_resnet"] < 23.6e6  # ResNet-50 without its classifier, 1 input channel


def test_temperature_starts_at_the_configured_value():
    cfg = get_preset("tiny").mulan
    model = MuLan(cfg, load_text=False)
    assert abs(1 / model.scale().exp().item() - cfg.temperature) < 1e-6


# --- training helpers ----------------------------------------------------------------------------
def test_retrieval_recall_counts_ranks_and_chance():
    from musiclm_mini.train.mulan import retrieval_recall

    audio = torch.eye(4)
    perfect = retrieval_recall(audio, audio, ks=(1, 2))
    assert perfect["recall@1"] == 1.0 and perfect["chance@1"] == 0.25 and perfect["chance@2"] == 0.5
    shifted = retrieval_recall(audio.roll(1, dims=0), audio, ks=(1, 4))  # every caption points elsewhere
    assert shifted["recall@1"] == 0.0 and shifted["recall@4"] == 1.0


def test_caption_variants_and_batches_are_deterministic():
    from musiclm_mini.train.mulan import caption_variants, mulan_batch

    label = {"caption": "A calm piano piece.", "aspects": ["piano", "calm", "slow tempo", "no drums"]}
    variants = caption_variants(label, seed=1)
    assert variants[0] == label["caption"] and variants[1] == "piano, calm, slow tempo, no drums"
    assert variants == caption_variants(label, seed=1) and len(set(variants)) == len(variants)
    waves = noise(6, 3.0)
    texts = [[f"clip {i}", f"clip {i} again"] for i in range(6)]
    a, ta = mulan_batch(waves, texts, 4, SR, step=7, seed=0)
    b, tb = mulan_batch(waves, texts, 4, SR, step=7, seed=0)
    assert a.shape == (4, SR) and torch.equal(a, b) and ta == tb  # a pure function of (seed, step)
    c, _ = mulan_batch(waves, texts, 4, SR, step=8, seed=0)
    assert not torch.equal(a, c)
    short, _ = mulan_batch(noise(6, 0.5), texts, 4, SR, step=0, seed=0)  # clips shorter than a window
    assert short.shape == (4, SR)


# --- exercise --------------------------------------------------------------------------------------
def test_exercise_reference_passes_and_stub_and_one_way_loss_fail():
    from musiclm_mini.exercises.mulan import check_contrastive_loss, reference_contrastive_loss

    def stub(audio, text, log_scale):
        raise NotImplementedError

    def one_way(audio, text, log_scale):
        return F.cross_entropy(log_scale.exp() * audio @ text.t(), torch.arange(len(audio)))

    def no_temperature(audio, text, log_scale):
        return contrastive_loss(audio, text, torch.tensor(0.0))

    def by_hand(audio, text, log_scale):  # the symmetric InfoNCE written out, not the package's function
        logits = log_scale.clamp(max=math.log(100.0)).exp() * audio @ text.t()
        labels = torch.arange(len(audio))
        return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2

    assert check_contrastive_loss(by_hand, verbose=False)
    assert torch.is_tensor(reference_contrastive_loss(torch.eye(2), torch.eye(2), torch.tensor(1.0)))
    assert not check_contrastive_loss(stub, verbose=False)
    assert not check_contrastive_loss(one_way, verbose=False)
    assert not check_contrastive_loss(no_temperature, verbose=False)


# --- the shipped checkpoint ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def shipped():
    from musiclm_mini.components import load
    from musiclm_mini.train.mulan import load_pairs

    model = load("mulan", "tiny")
    waves, labels = load_pairs(get_preset("tiny"), "test")
    with torch.no_grad():
        audio = model.embed_audio(waves)
    return model, audio, labels


@pytest.mark.slow
def test_shipped_mulan_retrieves_held_out_clips_far_above_chance(shipped):
    from musiclm_mini.train.mulan import retrieval_recall

    model, audio, labels = shipped
    with torch.no_grad():
        text = model.embed_text([lab["caption"] for lab in labels])
    r = retrieval_recall(text, audio)
    assert r["recall@10"] >= RECALL10_FLOOR, r
    assert r["recall@1"] >= 3 * r["chance@1"], r


@pytest.mark.slow
def test_a_random_text_projection_fails_the_same_bar(shipped):
    from musiclm_mini.train.mulan import retrieval_recall

    model, audio, labels = shipped
    feats = model.text_tower.features([lab["caption"] for lab in labels])
    # a fresh, untrained projection; not seed 0, which would rebuild the trained model's initial weights
    torch.manual_seed(1234)
    random_proj = MuLan(get_preset("tiny").mulan, load_text=False).text_tower
    with torch.no_grad():
        text = random_proj.project(feats)
    assert retrieval_recall(text, audio)["recall@10"] < RECALL10_FLOOR


@pytest.mark.slow
def test_shipped_mulan_tags_style_above_chance(shipped):
    from musiclm_mini.train.mulan import zero_shot_tagging

    model, audio, labels = shipped
    res = zero_shot_tagging(model, audio, labels, "style")
    assert res["accuracy"] > max(res["chance_uniform"], res["chance_majority"]) + 0.15, res


@pytest.mark.slow
def test_shipped_tokens_have_the_paper_layout(shipped):
    model, audio, labels = shipped
    m_a = model.tokens(audio)
    m_t = model.tokens_from_text([lab["caption"] for lab in labels[:4]])
    assert m_a.shape == (len(labels), 12) and m_t.shape == (4, 12)
    assert int(m_a.max()) < model.cfg.rvq.codebook_size
    assert len(set(m_a[:, 0].tolist())) > 1  # the first level is not collapsed onto one code
