"""Chapter 1's exercise: a correct answer written independently passes, the stub and plausible mistakes fail."""
import torch
import torchaudio

from musiclm_mini.exercises.audio_data import check_to_mono_24k, reference_to_mono_24k


def test_an_independent_correct_answer_passes():
    def answer(wave, rate):  # not the package's `prepare_waveform`, which the grader uses as its reference
        mono = wave.float().mean(0) if wave.ndim == 2 else wave.float()
        return mono if rate == 24_000 else torchaudio.functional.resample(mono, rate, 24_000)

    assert check_to_mono_24k(answer, verbose=False)


def test_stub_fails():
    def stub(wave, rate):
        raise NotImplementedError

    assert not check_to_mono_24k(stub, verbose=False)


def test_common_mistakes_fail():
    def first_channel_only(wave, rate):
        return torchaudio.functional.resample(wave[0], rate, 24_000)

    def forgot_to_resample(wave, rate):
        return wave.mean(0)

    assert not check_to_mono_24k(first_channel_only, verbose=False)
    assert not check_to_mono_24k(forgot_to_resample, verbose=False)


def test_sum_instead_of_mean_fails():
    assert not check_to_mono_24k(lambda w, r: torchaudio.functional.resample(w.sum(0), r, 24_000), verbose=False)
    assert torch.is_tensor(reference_to_mono_24k(torch.zeros(2, 100), 48_000))
