"""The `paper` preset must say what `book/paper_numbers.md` says, field by field.

Numbers are read out of the markdown with regular expressions, so editing either side alone fails.
"""
import dataclasses
import re
from pathlib import Path

import pytest

from musiclm_mini import paper
from musiclm_mini.config import PRESET_NAMES, Preset, get_preset

NUMBERS = (Path(__file__).parents[1] / "book" / "paper_numbers.md").read_text()
P = get_preset("paper")


def grab(pattern: str) -> tuple[str, ...]:
    match = re.search(pattern, NUMBERS, re.S)
    assert match, f"paper_numbers.md no longer contains {pattern!r}"
    return match.groups()


def test_soundstream_numbers():
    khz, stride, hz, levels, codes, kbps, tps = map(int, grab(
        r"(\d+) kHz mono, total stride (\d+) -> (\d+) Hz frames; RVQ (\d+) quantizers x (\d+) codes; "
        r"(\d+) kbps; (\d+) tokens per second"))
    c = P.codec
    assert (c.sample_rate, c.hop, c.frame_rate) == (khz * 1000, stride, hz)
    assert (c.rvq.num_quantizers, c.rvq.codebook_size) == (levels, codes)
    assert c.bitrate == kbps * 1000 and c.tokens_per_second == tps
    assert P.data.sample_rate == khz * 1000


def test_w2v_bert_numbers():
    params, layer, clusters, hz, tps = grab(
        r"(\d+)M params; embeddings of layer (\d+) of the MLM module; k-means (\d+) clusters; "
        r"(\d+) Hz -> (\d+) semantic tokens per second")
    s = P.semantic
    assert s.paper_params == int(params) * 1_000_000
    assert s.embedding_layer == int(layer) and s.num_clusters == int(clusters)
    assert s.frame_rate == int(hz) == int(tps)


def test_mulan_numbers():
    (dim,) = grab(r"(\d+)-d shared space")
    (resnet,) = grab(r"audio tower ResNet-(\d+)")
    window, hop = grab(r"(\d+) s windows with (\d+) s stride")
    levels, codes, tokens = grab(r"RVQ (\d+) x (\d+) -> (\d+) MuLan tokens")
    m = P.mulan
    assert m.embed_dim == int(dim)
    assert resnet == "50" and m.resnet_blocks == (3, 4, 6, 3) and m.bottleneck  # ResNet-50: 3-4-6-3 bottlenecks
    assert m.text_tower.startswith("bert")
    assert (m.window_seconds, m.hop_seconds) == (float(window), float(hop))
    assert (m.rvq.num_quantizers, m.rvq.codebook_size) == (int(levels), int(codes)) and int(tokens) == int(levels)


def test_stage_numbers():
    rows = {
        "semantic": grab(r"\| semantic \| .*? \| (\d+) s \| ([\d.]+) \|"),
        "coarse": grab(r"\| coarse acoustic \| first (\d+) RVQ levels.*? \| (\d+) s \| ([\d.]+) \|"),
        "fine": grab(r"\| fine acoustic \| remaining (\d+) RVQ levels.*? \| (\d+) s \| ([\d.]+) \|"),
    }
    assert (P.semantic_stage.crop_seconds, P.semantic_stage.temperature) == tuple(map(float, rows["semantic"]))
    coarse_levels, crop, temp = rows["coarse"]
    assert P.coarse_levels == int(coarse_levels)
    assert (P.coarse_stage.crop_seconds, P.coarse_stage.temperature) == (float(crop), float(temp))
    fine_levels, crop, temp = rows["fine"]
    assert P.fine_levels == int(fine_levels)
    assert (P.fine_stage.crop_seconds, P.fine_stage.temperature) == (float(crop), float(temp))
    # The paper samples each stage plainly: no condition dropout, no classifier-free guidance.
    for stage in (P.semantic_stage, P.coarse_stage, P.fine_stage):
        assert (stage.condition_dropout, stage.guidance) == (0.0, 1.0)


def test_transformer_numbers():
    layers, heads, d, ff, dropout = grab(
        r"(\d+) layers, (\d+) heads, d_model (\d+), feed-forward (\d+),\s+dropout ([\d.]+)")
    (params,) = grab(r"about (\d+)M parameters per stage")
    for stage in (P.semantic_stage, P.coarse_stage, P.fine_stage):
        t = stage.transformer
        assert (t.n_layers, t.n_heads, t.d_model, t.d_ff) == tuple(map(int, (layers, heads, d, ff)))
        assert t.dropout == float(dropout) and t.gated_ff
        assert t.paper_params_per_stage == int(params) * 1_000_000
    hours, clips = grab(r"(\d+)k hours \((\d+)M clips\)")
    assert P.data.paper_train_hours == int(hours) * 1000 and P.data.paper_train_clips == int(clips) * 10**6


def test_extension_numbers():
    layers, heads, d, ff = map(int, grab(r"ViT, (\d+) layers, (\d+) heads, d (\d+), feed-forward (\d+)"))
    dim, window = map(int, grab(r"one (\d+)-d embedding per (\d+) s of audio"))
    hop = int(grab(r"(\d+) s hop")[0])
    levels, codes = map(int, grab(r"each quantized by RVQ (\d+) x (\d+)"))
    m = P.melody
    assert (m.n_layers, m.n_heads, m.d_model, m.d_ff, m.embed_dim) == (layers, heads, d, ff, dim)
    assert (m.window_seconds, m.hop_seconds) == (window, hop)
    assert (m.rvq.num_quantizers, m.rvq.codebook_size) == (levels, codes)
    stride, prefix = map(int, grab(r"generate with stride (\d+) s, (\d+) s prefix"))
    (story,) = map(int, grab(r"changes every (\d+) s"))
    assert (P.long.stride_seconds, P.long.prefix_seconds, P.long.story_change_seconds) == (stride, prefix, story)


def test_memorization_numbers():
    mem = P.memorization
    assert mem.max_prompt_tokens == int(grab(r"T in \{0 \.\.\. (\d+)\}")[0])
    assert mem.generated_tokens == int(grab(r"greedy decoding of (\d+) tokens")[0])
    assert mem.approx_threshold == float(grab(r"tau = ([\d.]+)")[0])
    assert mem.max_false_positive_rate == pytest.approx(float(grab(r"stay below ([\d.]+) %")[0]) / 100)
    assert mem.paper_exact_rate_max == pytest.approx(float(grab(r"always below ([\d.]+) %")[0]) / 100)
    assert mem.paper_approx_rate == pytest.approx(float(grab(r"about (\d+) % of examples")[0]) / 100)
    typical, match = map(float, grab(r"entropy ([\d.]+) bits for a typical.*?vs ([\d.]+) bit"))
    assert (paper.TYPICAL_SAMPLE_ENTROPY_BITS, paper.LOW_COST_MATCH_ENTROPY_BITS) == (typical, match)


def test_table1_and_musiccaps():
    for row in paper.TABLE1[:3]:
        cells = grab(rf"\| {row.model} \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| (\d+) \|")
        assert (row.fad_trill, row.fad_vggish, row.kld, row.mcc) == tuple(map(float, cells[:4]))
        assert row.wins == int(cells[4])
    assert paper.TABLE1[3].wins == int(grab(r"\| MusicCaps \(reference\) .*?\| (\d+) \|")[0])
    clips, eval_, train, balanced = (int(x.replace(",", "")) for x in grab(
        r"MusicCaps: ([\d,]+) clips of 10 s \(([\d,]+) AudioSet eval \+ ([\d,]+) train\).*?subset of ([\d,]+)"))
    mc = paper.MUSICCAPS
    assert (mc.clips, mc.audioset_eval_clips, mc.audioset_train_clips, mc.balanced_subset) == (clips, eval_, train, balanced)
    a = paper.ABLATION_NO_SEMANTIC
    fad_t, fad_v = map(float, grab(r"FAD_Trill ([\d.]+),\s+FAD_VGG ([\d.]+), KLD"))
    assert (a.fad_trill, a.fad_vggish) == (fad_t, fad_v)
    assert a.kld == float(grab(r"KLD [\d.]+ -> ([\d.]+)")[0]) and a.mcc == float(grab(r"MCC [\d.]+ -> ([\d.]+)")[0])
    assert a.wins is None and "wins" not in " ".join(grab(r"(Ablation without the semantic stage.*?)\n\n"))


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_presets_are_frozen_and_complete(name):
    preset = get_preset(name)
    assert isinstance(preset, Preset) and preset.name == name
    with pytest.raises(dataclasses.FrozenInstanceError):
        preset.codec.sample_rate = 1  # type: ignore[misc]
    assert preset.codec.sample_rate == preset.data.sample_rate == preset.semantic.sample_rate
    assert (preset.coarse_levels, preset.fine_levels) == {"tiny": (4, 4), "colab": (4, 8), "paper": (4, 8)}[name]
    assert preset.codec.rvq.dim == preset.codec.embedding_dim


def test_preset_choice(monkeypatch):
    monkeypatch.setenv("MUSICLM_PRESET", "paper")
    assert get_preset().name == "paper"
    monkeypatch.delenv("MUSICLM_PRESET")
    import torch

    assert get_preset().name == ("colab" if torch.cuda.is_available() else "tiny")
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        get_preset("huge")
