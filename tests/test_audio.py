"""Audio helpers (Chapters 1-2): hearing a log-mel spectrogram."""
import math

import torch

from musiclm_mini.audio import log_mel, mel_to_audio


def test_mel_to_audio_gives_back_a_sound_with_the_same_spectrum_shape():
    sr = 24_000
    t = torch.arange(sr) / sr
    tone = 0.3 * torch.sin(2 * math.pi * 440 * t)
    mel = log_mel(tone, sr)  # (64, frames)
    back = mel_to_audio(mel, sr)
    assert back.shape == tone.shape and torch.isfinite(back).all()
    again = log_mel(back, sr)
    # the loudest band survives the round trip, and the result is not silence
    assert int(again.mean(-1).argmax()) == int(mel.mean(-1).argmax()) and back.abs().max() > 0.05
    assert torch.equal(mel_to_audio(mel, sr, seed=1), mel_to_audio(mel, sr, seed=1))  # seeded phase
