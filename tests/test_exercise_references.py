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


def test_chapter8_mining_reference_agrees_with_the_package_and_grades(capsys):
    from musiclm_mini.exercises import check_semi_hard_mining
    from musiclm_mini.exercises.melody import reference_mining
    from musiclm_mini.melody.triplet import mine_semi_hard, squared_distances

    for seed in range(30):
        g = torch.Generator().manual_seed(seed)
        labels = torch.randint(0, 4, (12,), generator=g)
        emb = torch.randn(12, 3, generator=g) * (0.1 if seed % 3 == 0 else 1.0)
        d = squared_distances(emb)
        want = mine_semi_hard(d, labels)[:3]
        assert all(torch.equal(a, b) for a, b in zip(reference_mining(d, labels), want)), seed
    assert check_semi_hard_mining(lambda d, lab: mine_semi_hard(d, lab)[:3])

    def hardest(d, lab):  # the classic mistake: the closest negative, whatever the positive
        a, p, _, _ = mine_semi_hard(d, lab)
        other = lab[a][:, None] != lab[None, :]
        return a, p, torch.where(other, d[a], torch.full_like(d[a], float("inf"))).argmin(1)
    assert not check_semi_hard_mining(hardest)
    assert "negative of pair" in capsys.readouterr().out
