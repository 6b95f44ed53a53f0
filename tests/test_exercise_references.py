"""The exercise graders of Chapters 1 and 5 keep their own references; these tests tie them to the package."""
import pytest
import torch

from musiclm_mini.audio import prepare_waveform
from musiclm_mini.exercises.audio_data import TARGET_RATE, reference_to_mono_24k
from musiclm_mini.exercises.audio_data import _cases as audio_cases
from musiclm_mini.exercises.mulan import _cases as mulan_cases
from musiclm_mini.exercises.mulan import reference_contrastive_loss
from musiclm_mini.tokenizers.mulan import contrastive_loss


@pytest.mark.parametrize("case", audio_cases(), ids=lambda c: c[0])
def test_chapter_1_reference_equals_prepare_waveform(case):
    _, wave, rate = case
    assert torch.allclose(reference_to_mono_24k(wave, rate), prepare_waveform(wave, rate, TARGET_RATE), atol=1e-6)


@pytest.mark.parametrize("case", mulan_cases(), ids=lambda c: c[0])
def test_chapter_5_reference_equals_the_package_loss(case):
    _, audio, text, log_scale = case
    assert torch.allclose(reference_contrastive_loss(audio, text, log_scale), contrastive_loss(audio, text, log_scale), atol=1e-6)
