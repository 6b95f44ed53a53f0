"""Tests of the three stages (Chapter 6): layouts, loss masks, sampling ranges, windows, token cache, training."""
import dataclasses

import pytest
import torch
import torch.nn.functional as F

from conftest import MICRO, FakeCodec, FakeMuLan, FakeSemantic, micro_preset
from musiclm_mini.components import token_sources
from musiclm_mini.config import get_preset
from musiclm_mini.hierarchy.sampling import Sampling, Window, generate_windows, sliding_windows
from musiclm_mini.hierarchy.stage_models import stage_loss
from musiclm_mini.hierarchy.token_cache import TokenGrid, TokenSet, cache_path, cached_tokens, extract_tokens, stage_batch
from musiclm_mini.hierarchy.tokens import TokenLayout, flatten_frames, level_range, make_stage, unflatten_frames
from musiclm_mini.hierarchy.transformer import Transformer
from musiclm_mini.train.distributed import Runtime
from musiclm_mini.train.loop import fit
from musiclm_mini.train.stages import stage_run

# A fixed layout for hand-computed ids (independent of later preset tweaks): 12 MuLan levels of 256,
# 128 semantic clusters, 8 codec levels of 1024, 4 of them coarse.
LAY = TokenLayout(mulan_levels=12, mulan_codes=256, semantic_codes=128, codec_levels=8, codec_codes=1024,
                  coarse_levels=4)


def random_tokens(preset_or_layout, n=6, seconds=4.0, seed=0) -> TokenSet:
    """Random tokens of n clips of `seconds` on tiny's time grid (12.5 Hz semantic, 25 Hz codec)."""
    lay = preset_or_layout if isinstance(preset_or_layout, TokenLayout) else TokenLayout.from_preset(preset_or_layout)
    g = torch.Generator().manual_seed(seed)
    Ts, Ta = int(seconds * 12.5), int(seconds * 25)
    return TokenSet(torch.randint(0, lay.mulan_codes, (n, lay.mulan_levels), generator=g),
                    torch.randint(0, lay.semantic_codes, (n, Ts), generator=g),
                    torch.randint(0, lay.codec_codes, (n, lay.codec_levels, Ta), generator=g))


# --- vocabulary and flattening ---------------------------------------------------------------
@pytest.mark.parametrize("name,sizes", [
    ("tiny", (12 * 256 + 1 + 128, 12 * 256 + 1 + 128 + 4 * 256, 8 * 256)),  # M slices + null + S (+ A1..4) | A1..8
    ("paper", (12 * 1024 + 1 + 1024, 12 * 1024 + 1 + 1024 + 4 * 1024, 12 * 1024)),
])
def test_stage_vocabularies_hand_computed(name, sizes):
    layout = TokenLayout.from_preset(get_preset(name))
    assert tuple(make_stage(s, layout).vocab_size for s in ("semantic", "coarse", "fine")) == sizes


def test_flatten_frames_hand_computed_and_round_trip():
    codes = torch.tensor([[[1, 2, 3], [4, 5, 6]]])  # (B=1, Q=2, T=3), K=10, offset 100
    flat = flatten_frames(codes, 10, offset=100)
    # frame by frame: a(1,1) a(1,2) a(2,1) a(2,2) ..., level 2 shifted by one codebook
    assert flat.tolist() == [[101, 114, 102, 115, 103, 116]]
    assert torch.equal(unflatten_frames(flat, 2, 10, 100), codes)
    big = torch.randint(0, 1024, (3, 4, 17), generator=torch.Generator().manual_seed(0))
    assert torch.equal(unflatten_frames(flatten_frames(big, 1024, 7), 4, 1024, 7), big)


def test_unflatten_refuses_partial_frames_and_wrong_slices():
    with pytest.raises(ValueError, match="whole number of frames"):
        unflatten_frames(torch.zeros(1, 5, dtype=torch.long), 2, 10)
    with pytest.raises(ValueError, match="slice"):
        unflatten_frames(torch.tensor([[15, 15]]), 2, 10)  # level 1 holds a level-2 id


def test_sequences_layout_offsets_and_loss_masks():
    lay = LAY
    toks = random_tokens(lay, n=2, seconds=2.0)
    M, S, A = toks.mulan, toks.semantic, toks.acoustic
    Ac, Af = A[:, :4], A[:, 4:]
    # semantic: [M level q at q*256] + [S at 12*256 + 1, after the null condition 3072]
    sem = make_stage("semantic", lay)
    seq, mask = sem.sequence(sem.condition(M), sem.encode_target(S))
    assert torch.equal(seq[:, :12], M + torch.arange(12) * 256)
    assert lay.null_condition == 3072
    assert torch.equal(seq[:, 12:], S + 3073) and torch.equal(sem.decode_target(seq[:, 12:]), S)
    assert mask[:, :12].sum() == 0 and mask[:, 12:].all()
    # coarse: [M] + [S] + [A_1..4 flattened at 3073 + 128 + q * 1024]
    coarse = make_stage("coarse", lay)
    seq, mask = coarse.sequence(coarse.condition(M, S), coarse.encode_target(Ac))
    C = 12 + S.shape[1]
    assert seq.shape[1] == C + 4 * A.shape[2] and seq.max() < coarse.vocab_size
    assert seq[0, C + 5] == 3201 + 1024 + Ac[0, 1, 1]  # frame 2, level 2
    assert torch.equal(coarse.decode_target(seq[:, C:]), Ac)
    assert not mask[:, :C].any() and mask[:, C:].all()
    # fine: [A_1..4 at q * 1024] + [A_5..8 at (4 + q) * 1024]
    fine = make_stage("fine", lay)
    seq, mask = fine.sequence(fine.condition(Ac), fine.encode_target(Af))
    C = 4 * A.shape[2]
    assert seq[0, 6] == 2 * 1024 + Ac[0, 2, 1] and seq[0, C + 7] == 7 * 1024 + Af[0, 3, 1]
    assert torch.equal(fine.decode_target(seq[:, C:]), Af)
    assert not mask[:, :C].any() and mask[:, C:].all()
    with pytest.raises(ValueError, match="semantic tokens must lie"):
        sem.encode_target(S + 128)


def test_target_ranges_follow_levels():
    lay = LAY
    assert make_stage("semantic", lay).target_range(5) == (3073, 3201)  # 3072 is the null condition
    coarse = make_stage("coarse", lay)
    assert [coarse.target_range(j) for j in (0, 1, 3, 4, 6)] == [
        (3201, 4225), (4225, 5249), (6273, 7297), (3201, 4225), (5249, 6273)]
    fine = make_stage("fine", lay)
    assert fine.target_range(0) == (4096, 5120) and fine.target_range(7) == (7168, 8192)
    assert level_range(9, 4, 10, 5) == (15, 25)


# --- the null condition (classifier-free guidance) ---------------------------------------------
def test_uncondition_and_condition_dropout_touch_only_the_mulan_ids():
    toks = random_tokens(LAY, n=64, seconds=2.0)
    coarse = make_stage("coarse", LAY)
    seq, _ = coarse.sequence(coarse.condition(toks.mulan, toks.semantic), coarse.encode_target(toks.acoustic[:, :4]))
    null = coarse.uncondition(seq)
    assert (null[:, :12] == LAY.null_condition).all() and torch.equal(null[:, 12:], seq[:, 12:])
    assert torch.equal(coarse.drop_condition(seq, 0.0), seq)
    dropped = coarse.drop_condition(seq, 0.5, torch.Generator().manual_seed(0))
    gone = (dropped[:, :12] == LAY.null_condition).all(1)  # (64,)
    assert 16 < int(gone.sum()) < 48  # about half
    assert torch.equal(dropped[gone], null[gone]) and torch.equal(dropped[~gone], seq[~gone])
    with pytest.raises(ValueError, match="condition dropout"):
        coarse.drop_condition(seq, 1.0)
    fine = make_stage("fine", LAY)
    with pytest.raises(ValueError, match="reads no MuLan"):
        fine.uncondition(seq)
    assert torch.equal(fine.drop_condition(seq, 0.5), seq)  # nothing to drop


@pytest.mark.slow
def test_guidance_strengthens_a_weak_condition():
    """M = 0 is followed by pattern 0 in 70% of the examples, M = 1 by pattern 1 in 70%. Trained with
    condition dropout, plain sampling follows the condition about 70% of the time; guidance w = 3 must
    follow it more often (p(pattern | M) / p(pattern) amplified), which a stage ignoring M cannot do."""
    p = micro_preset()
    lay = TokenLayout.from_preset(p)
    sem = make_stage("semantic", lay)
    patterns = torch.tensor([[1, 2, 3, 4, 1, 2], [6, 5, 7, 0, 6, 5]])
    g = torch.Generator().manual_seed(0)
    which = torch.randint(0, 2, (200,), generator=g)
    follows = torch.rand(200, generator=g) < 0.7
    S = patterns[torch.where(follows, which, 1 - which)]  # (200, 6)
    M = which[:, None].expand(200, 12) * 9
    seq, mask = sem.sequence(sem.condition(M), sem.encode_target(S))
    torch.manual_seed(0)
    model = Transformer(MICRO, sem.vocab_size)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for step in range(150):
        batch = sem.drop_condition(seq, 0.3, torch.Generator().manual_seed(step))
        loss, _ = stage_loss(model, batch, mask)
        opt.zero_grad()
        loss.backward()
        opt.step()

    def follow_rate(w: float) -> float:
        cond = sem.condition(torch.tensor([[0] * 12, [9] * 12]).repeat(150, 1))  # (300, 12)
        out = generate_windows(model, sem, lambda win: cond, 6, 6, 0, Sampling(1.0, guidance=w),
                               generator=torch.Generator().manual_seed(1))
        first = sem.decode_target(out)[:, 0]  # (300,)
        return float((first == patterns[torch.tensor([0, 1]).repeat(150), 0]).float().mean())

    plain, guided = follow_rate(1.0), follow_rate(3.0)
    assert 0.55 < plain < 0.85, plain
    assert guided > plain + 0.1, (plain, guided)


# --- loss ------------------------------------------------------------------------------------
def test_loss_counts_only_the_predicted_part():
    torch.manual_seed(0)
    model = Transformer(MICRO, 40)
    tokens = torch.randint(0, 40, (2, 15))
    mask = torch.zeros_like(tokens, dtype=torch.bool)
    mask[:, 6:] = True  # 6 conditioning tokens
    loss, acc = stage_loss(model, tokens, mask)
    logits, _ = model(tokens[:, :-1])
    expected = F.cross_entropy(logits[:, 5:].reshape(-1, 40), tokens[:, 6:].reshape(-1))
    everything = F.cross_entropy(logits.reshape(-1, 40), tokens[:, 1:].reshape(-1))
    torch.testing.assert_close(loss, expected)
    assert not torch.isclose(loss, everything)  # the conditioning positions really are left out
    # changing what "follows" a conditioning position only matters through the context, not as a target
    assert 0.0 <= float(acc) <= 1.0
    with pytest.raises(ValueError, match="no predicted"):
        stage_loss(model, tokens, torch.zeros_like(mask))


# --- windows ---------------------------------------------------------------------------------
def test_sliding_windows_hand_computed():
    assert sliding_windows(10, 4, 2) == [Window(0, 0, 4), Window(2, 4, 6), Window(4, 6, 8), Window(6, 8, 10)]
    assert sliding_windows(9, 4, 2) == [Window(0, 0, 4), Window(2, 4, 6), Window(4, 6, 8), Window(5, 8, 9)]
    # prefix 0: independent chunks, the last one aligned to the end (its overlap is its prompt)
    assert sliding_windows(10, 4, 0) == [Window(0, 0, 4), Window(4, 4, 8), Window(6, 8, 10)]
    assert sliding_windows(3, 4, 2) == [Window(0, 0, 3)]  # shorter than a window: one short window
    assert sliding_windows(12, 4, 2, unit=2) == [Window(0, 0, 4), Window(2, 4, 6), Window(4, 6, 8),
                                                 Window(6, 8, 10), Window(8, 10, 12)]
    with pytest.raises(ValueError, match="multiples"):
        sliding_windows(11, 4, 2, unit=2)
    with pytest.raises(ValueError, match="prefix"):
        sliding_windows(10, 4, 4)


@pytest.mark.parametrize("total,window,prefix,unit", [(250, 100, 50, 2), (37, 12, 0, 1), (125, 125, 62, 1),
                                                      (80, 24, 12, 2)])
def test_sliding_windows_cover_everything_with_full_windows(total, window, prefix, unit):
    plan = sliding_windows(total, window, prefix, unit)
    assert plan[0].start == 0 and plan[-1].end == total
    for before, w in zip(plan, plan[1:]):
        assert w.given == before.end  # contiguous: nothing skipped, nothing generated twice
        assert w.end - w.start == min(window, total)  # every window as long as a training crop
        assert w.given - w.start >= prefix
    assert all(w.start % unit == 0 and w.end % unit == 0 for w in plan)


class RecordingModel(torch.nn.Module):
    """Stands in for a Transformer: records each prompt; its logits fall with the id, so the lowest allowed
    id is sampled (with probability 1 - e^-100)."""

    def __init__(self, vocab_size: int):
        super().__init__()
        self.prompts, self.vocab_size = [], vocab_size

    def forward(self, tokens, cache=None, last_only=False):
        if cache is None:  # a new prompt
            self.prompts.append(tokens.clone())
        logits = -100.0 * torch.arange(self.vocab_size, dtype=torch.float).expand(tokens.shape[0], 1, -1)
        return logits, (cache or 0) + tokens.shape[1]


def test_generate_windows_prompts_continue_the_previous_window():
    coarse = make_stage("coarse", LAY)
    model = RecordingModel(coarse.vocab_size)
    cond = lambda w: torch.full((2, 3), w.start)  # noqa: E731  conditioning that names its window
    ids = generate_windows(model, coarse, cond, total=10, window=4, prefix=2, sampling=Sampling(), unit=2)
    assert ids.shape == (2, 40)
    codes = coarse.decode_target(ids)  # every position in its own level's slice, or this raises
    assert codes.shape == (2, 4, 10)
    assert len(model.prompts) == 4
    for p, start in zip(model.prompts[1:], [2, 4, 6]):
        assert (p[:, :3] == start).all()  # the window's own conditioning
        assert torch.equal(p[:, 3:], ids[:, start * 4:(start + 2) * 4])  # the last 2 frames so far


def test_generate_windows_batches_independent_fine_chunks():
    fine = make_stage("fine", LAY)
    model = RecordingModel(fine.vocab_size)
    coarse = torch.randint(0, 1024, (2, 4, 10))
    ids = generate_windows(model, fine, lambda w: fine.condition(coarse[:, :, w.start:w.end]), 10, 4, 0, Sampling())
    assert len(model.prompts) == 2  # chunks [0,4) and [4,8) in one batch, then [6,10) continuing [6,8)
    assert model.prompts[0].shape == (4, 16)
    assert torch.equal(model.prompts[0][2:], fine.condition(coarse[:, :, 4:8]))
    assert torch.equal(model.prompts[1][:, 16:], ids[:, 6 * 4:8 * 4])
    assert fine.decode_target(ids).shape == (2, 4, 10)


def test_sampling_with_a_real_model_is_seeded_and_in_range():
    p = micro_preset()
    lay = TokenLayout.from_preset(p)
    coarse = make_stage("coarse", lay)
    torch.manual_seed(0)
    model = Transformer(MICRO, coarse.vocab_size).eval()
    M, S = torch.randint(0, 16, (2, 12)), torch.randint(0, 8, (2, 10))

    def sample(seed):
        g = torch.Generator().manual_seed(seed)
        return generate_windows(model, coarse, lambda w: coarse.condition(M, S[:, w.start // 2:w.end // 2]), 20, 8, 4,
                                Sampling(temperature=1.5), unit=2, generator=g)

    a = sample(0)
    assert torch.equal(a, sample(0)) and not torch.equal(a, sample(1))
    assert coarse.decode_target(a).max() < 16


# --- token cache and crops --------------------------------------------------------------------
def test_token_cache_is_written_once_and_keyed_by_the_tokenizers(tmp_path):
    p = micro_preset()
    codec, sem, mulan = FakeCodec(p), FakeSemantic(p), FakeMuLan(p)
    waves = torch.rand(5, 2 * 24_000, generator=torch.Generator().manual_seed(0)) - 0.5
    first = cached_tokens(p, "train", codec, sem, mulan, waves=waves, root=tmp_path)
    assert first.mulan.shape == (5, 12) and first.semantic.shape == (5, 25) and first.acoustic.shape == (5, 8, 50)
    assert codec.calls == 1
    again = cached_tokens(p, "train", codec, sem, mulan, waves=None, root=tmp_path)  # no audio needed: cached
    assert codec.calls == 1 and all(torch.equal(a, b) for a, b in zip(first.tensors().values(), again.tensors().values()))
    path = cache_path(p, "train", token_sources(codec, sem, mulan), tmp_path)
    assert path.exists() and path.parent == tmp_path / "tokens"
    with torch.no_grad():
        codec.scale.fill_(4.0)  # "retrained" codec: another key, tokens extracted again
    assert cache_path(p, "train", token_sources(codec, sem, mulan), tmp_path) != path
    cached_tokens(p, "train", codec, sem, mulan, waves=waves, root=tmp_path)
    assert codec.calls == 2


def test_crops_align_semantic_and_acoustic_time():
    p = micro_preset()
    n, Ts, Ta = 3, 50, 100  # 4 s: semantic frame f covers codec frames 2f and 2f + 1
    frames_s = torch.arange(Ts) % 8
    frames_a = torch.arange(Ta) // 2 % 8  # the codec frame's semantic frame index, mod 8
    toks = TokenSet(torch.zeros(n, 12, dtype=torch.long), frames_s.repeat(n, 1),
                    frames_a.repeat(n, 8, 1).reshape(n, 8, Ta))
    lay, grid = TokenLayout.from_preset(p), TokenGrid.from_preset(p)
    coarse = make_stage("coarse", lay)
    seq, mask = stage_batch(coarse, toks, [0, 1, 2], grid, 1.0, torch.Generator().manual_seed(3))
    units = round(1.0 * 24_000 / grid.unit)  # 1 s crop = 12 units of 80 ms (12.5 rounds to 12)
    assert seq.shape == (3, 12 + units + 4 * 2 * units) and mask.sum(1).tolist() == [4 * 2 * units] * 3
    S = seq[:, 12:12 + units] - lay.semantic_offset
    A = coarse.decode_target(seq[:, 12 + units:])
    assert torch.equal(A[:, 0, 0::2], S) and torch.equal(A[:, 0, 1::2], S)  # same moments in time
    sem = make_stage("semantic", lay)
    seq, _ = stage_batch(sem, toks, [0, 1], grid, 30.0, torch.Generator())  # longer than the clip: whole clip
    assert seq.shape == (2, 12 + Ts)
    fine = make_stage("fine", lay)
    seq, mask = stage_batch(fine, toks, [0], grid, 0.5, torch.Generator())
    assert seq.shape == (1, 8 * 12) and mask.sum() == 4 * 12


# --- training ----------------------------------------------------------------------------------
def test_conditioning_is_not_ignored():
    """Two MuLan patterns, each always followed by its own semantic pattern: a few dozen steps must
    teach the stage to tell them apart, which it can only do by reading the conditioning."""
    p = micro_preset()
    lay = TokenLayout.from_preset(p)
    sem = make_stage("semantic", lay)
    M = torch.stack([torch.zeros(12, dtype=torch.long), torch.full((12,), 9)])  # (2, 12)
    S = torch.stack([torch.tensor([1, 2, 3, 4] * 3), torch.tensor([6, 5, 7, 0] * 3)])  # (2, 12)
    seq, mask = sem.sequence(sem.condition(M), sem.encode_target(S))
    torch.manual_seed(0)
    model = Transformer(MICRO, sem.vocab_size)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(60):
        loss, acc = stage_loss(model, seq, mask)
        opt.zero_grad()
        loss.backward()
        opt.step()
    out = generate_windows(model, sem, lambda w: sem.condition(M), 12, 12, 0, Sampling(greedy=True))
    assert torch.equal(sem.decode_target(out), S)  # each conditioning gets its own continuation


def test_stage_training_run_checkpoints_and_validates(tmp_path):
    p = micro_preset()
    for stage in ("semantic", "coarse", "fine"):
        run, step_fn, validate = stage_run(stage, p, random_tokens(p, 8), random_tokens(p, 4, seed=1),
                                           tmp_path / stage, Runtime(torch.device("cpu")), sources={"codec": "x"},
                                           quiet=True)
        first = validate()
        fit(run, step_fn, validate)
        assert run.step == 4 and len(run.history) == 2
        assert (tmp_path / stage / "model.safetensors").exists()
        assert run.history[-1]["loss"] < first["loss"]  # 4 steps at lr 3e-3 already lower the held-out loss


def test_train_subcommand_trains_and_resumes_exactly(tmp_path, monkeypatch):
    """`python -m musiclm_mini.train coarse-stage ...` through the entry point, with stand-in tokenizers and tokens."""
    import musiclm_mini.train.stages as ts
    from musiclm_mini import components
    from musiclm_mini.train.__main__ import main
    from safetensors.torch import load_file

    p = micro_preset()
    monkeypatch.setattr(components, "tokenizers", lambda *a, **k: (FakeCodec(p), FakeSemantic(p), FakeMuLan(p)))
    monkeypatch.setattr(ts, "cached_tokens", lambda preset, split, *a, **k: random_tokens(preset, 8 if split == "train" else 4))
    micro = ["--set", "coarse_stage.transformer.n_layers=1", "--set", "coarse_stage.transformer.d_model=32",
             "--set", "coarse_stage.transformer.d_ff=64", "--set", "coarse_stage.crop_seconds=1.0",
             "--set", "codec.rvq.codebook_size=16", "--set", "mulan.rvq.codebook_size=16",
             "--set", "semantic.num_clusters=8", "--batch-size", "2", "--val-every", "2", "--checkpoint-every", "2",
             "--quiet", "--preset", "tiny", "--data", "synthcaps"]
    main(["coarse-stage", *micro, "--steps", "4", "--out", str(tmp_path / "straight")])
    main(["coarse-stage", *micro, "--steps", "2", "--out", str(tmp_path / "resumed")])
    main(["coarse-stage", *micro, "--steps", "4", "--out", str(tmp_path / "resumed"), "--resume"])
    a = load_file(str(tmp_path / "straight" / "model.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_training_tokens_add_the_extra_variants_and_name_unknown_data(tmp_path, monkeypatch):
    import musiclm_mini.train.stages as ts
    from musiclm_mini.data import synthcaps

    p = micro_preset()
    codec, sem, mulan = FakeCodec(p), FakeSemantic(p), FakeMuLan(p)
    g = torch.Generator().manual_seed(0)
    train, extra = torch.rand(3, 48_000, generator=g) - 0.5, torch.rand(5, 48_000, generator=g) - 0.5
    monkeypatch.setenv("MUSICLM_DATA_DIR", str(tmp_path))
    cached_tokens(p, "train", codec, sem, mulan, waves=train)  # the split's tokens, cached under tmp_path
    monkeypatch.setattr(synthcaps, "ensure_extra_variants", lambda preset, per_score, **k: tmp_path / "extra")
    monkeypatch.setattr(synthcaps, "waveforms_from_dir", lambda path, split: extra.numpy())
    both = ts.training_tokens(p, "synthcaps+extra", codec, sem, mulan)
    alone = ts.training_tokens(p, "synthcaps", codec, sem, mulan)
    assert len(alone) == 3 and len(both) == 8 and torch.equal(both.acoustic[:3], alone.acoustic)
    assert torch.equal(both.acoustic[3:], extract_tokens(extra, codec, sem, mulan).acoustic)
    with pytest.raises(ValueError, match="--data must be one of"):
        ts.training_tokens(p, "mp3s", codec, sem, mulan)


# --- MuLan tokens embedded through MuLan's codebooks --------------------------------------------
def test_codebook_embedding_keeps_mulan_neighbours_close_and_learns_only_the_projection():
    from musiclm_mini.hierarchy.mulan_embedding import CodebookEmbedding

    g = torch.Generator().manual_seed(0)
    books = torch.randn(2, 4, 8, generator=g)  # 2 levels of 4 codes, 8-d
    books[0, 1] = books[0, 0] + 1e-3  # codes 0 and 1 of level 0: nearly the same vector
    torch.manual_seed(0)
    emb = CodebookEmbedding(vocab_size=12, d_model=16, codebooks=books)
    out = emb(torch.tensor([[0, 1, 2, 4, 8, 9]]))[0]  # (6, 16)
    assert (out[0] - out[1]).norm() < 1e-2 * (out[0] - out[2]).norm()  # close codes, close embeddings
    assert torch.allclose(out[3], emb.proj(books[1, 0]) + emb.level.weight[1])  # id 4 = level 1, code 0
    assert torch.equal(out[4], emb.other.weight[8]) and torch.equal(out[5], emb.other.weight[9])  # other ids: rows
    out.sum().backward()
    assert "codebooks" in dict(emb.named_buffers()) and emb.proj.weight.grad is not None
    assert not any(p is emb.codebooks for p in emb.parameters())  # the codebooks are never trained
    with pytest.raises(ValueError, match="cannot start"):
        CodebookEmbedding(8, 16, books)


def test_tiny_stages_reading_mulan_embed_it_through_the_codebooks_and_save_them(tmp_path):
    from musiclm_mini.checkpoint import load_checkpoint, save_checkpoint
    from musiclm_mini.hierarchy.mulan_embedding import CodebookEmbedding
    from musiclm_mini.hierarchy.stage_models import build_stage_model, stage_model_config

    p = get_preset("tiny")
    books = torch.randn(12, 256, 128, generator=torch.Generator().manual_seed(1))
    coarse = build_stage_model(stage_model_config("coarse", p), books)
    assert isinstance(coarse.tok_emb, CodebookEmbedding) and torch.equal(coarse.tok_emb.codebooks, books.view(-1, 128))
    assert isinstance(build_stage_model(stage_model_config("fine", p)).tok_emb, torch.nn.Embedding)  # reads no MuLan
    paper = get_preset("paper")
    paper = paper.replace(coarse_stage=dataclasses.replace(paper.coarse_stage, transformer=MICRO))
    assert isinstance(build_stage_model(stage_model_config("coarse", paper), books).tok_emb,
                      torch.nn.Embedding)  # the paper's stages learn a row per MuLan code
    save_checkpoint(tmp_path, coarse.state_dict(), {"x": 1}, None)
    fresh = build_stage_model(stage_model_config("coarse", p))  # zeros until the checkpoint is loaded
    fresh.load_state_dict(load_checkpoint(tmp_path, with_train_state=False).model_state)
    assert torch.equal(fresh.tok_emb.codebooks, books.view(-1, 128))


def test_conditioning_losses_compare_own_other_and_no_mulan_tokens():
    from musiclm_mini.hierarchy.stage_models import build_stage_model, stage_model_config
    from musiclm_mini.train.stages import conditioning_losses

    p = micro_preset()
    toks = random_tokens(p, n=4, seconds=2.0)
    torch.manual_seed(0)
    model = build_stage_model(stage_model_config("semantic", p)).train()
    losses = conditioning_losses(model, "semantic", p, toks)
    assert list(losses) == ["own", "another clip's", "none"] and len(set(losses.values())) == 3
    assert model.training  # restored
    with pytest.raises(ValueError, match="reads no MuLan"):
        conditioning_losses(build_stage_model(stage_model_config("fine", p)), "fine", p, toks)
