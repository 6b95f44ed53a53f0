"""Where the `paper` preset's numbers come from (Chapter 2): every field is labelled, none by default as the paper's."""
from musiclm_mini.config import get_preset
from musiclm_mini.paper_sources import SOURCES, fields, preset_sources, source


def test_every_field_has_a_source_and_unknown_fields_are_the_books():
    rows = preset_sources(get_preset("paper"))
    assert len(rows) == len(fields(get_preset("paper"))) - 1  # all but the name
    assert {kind for _, _, kind, _ in rows} == {"MusicLM", "prior work", "book"}
    assert source("a.field.nobody.states") == ("book", "")


def test_the_issues_examples_are_labelled_as_the_papers_say():
    assert source("codec.strides")[0] == "book"  # the paper gives only the product, 480
    assert source("semantic.mask_prob") == ("prior work", "wav2vec 2.0's masking (p = 0.065), not MusicLM's")
    assert source("coarse_stage.transformer.n_layers") == ("MusicLM", "Sec. 4.1: 24 layers")
    assert source("fine_stage.temperature")[0] == "MusicLM" and source("train.learning_rate")[0] == "book"


def test_every_pattern_matches_a_field():
    names = [name for name, _ in fields(get_preset("paper"))]
    patterns = [p for p, _ in SOURCES]
    unused = [p for p in patterns if not any(source(n) == dict(SOURCES)[p] for n in names)]
    assert unused == []


def test_stated_numbers_agree_with_the_preset():
    paper = get_preset("paper")
    assert paper.codec.hop == 480 and paper.codec.rvq.num_quantizers == 12 and paper.semantic.embedding_layer == 7
    assert paper.semantic_stage.crop_seconds == 30 and paper.coarse_stage.temperature == 0.95
