"""Compressed audio players (Chapter 1, `musiclm_mini.audio.audio_player`): what the rendered book embeds."""
import base64
import math
import re

import numpy as np
import pytest
import torch

from musiclm_mini import audio
from musiclm_mini.audio import audio_player, encode_audio, load_audio, log_mel, player_html
from musiclm_mini.data.render import encode_wav

SR = 24_000


def _tone(seconds=3.0, hz=440.0):
    t = torch.arange(int(seconds * SR)) / SR
    return 0.3 * torch.sin(2 * math.pi * hz * t)


def _payload(html: str) -> tuple[str, bytes]:
    """The MIME type and decoded bytes of the single <audio> element's data URI."""
    found = re.findall(r'<audio controls[^>]*src="data:([^;]+);base64,([^"]+)"', html)
    assert len(found) == 1, html[:200]
    return found[0][0], base64.b64decode(found[0][1])


@pytest.mark.parametrize("fmt,suffix", [("mp3", ".mp3"), ("opus", ".ogg")])
def test_player_embeds_compressed_audio_that_decodes_to_the_same_sound(tmp_path, fmt, suffix):
    tone = _tone()
    mime, data = _payload(player_html(tone, SR, fmt))
    assert mime != "audio/wav"  # ffmpeg is a set-up requirement, so the compressed path must be taken here
    wav_size = len(encode_wav(tone.numpy(), SR))
    assert len(data) < wav_size / 4  # the point of compressing
    path = tmp_path / f"clip{suffix}"
    path.write_bytes(data)
    back = load_audio(path, SR)
    assert abs(back.numel() - tone.numel()) < 0.05 * SR  # encoder padding at most tens of milliseconds
    # the same pitch comes back: the loudest mel band is the tone's
    assert int(log_mel(back, SR).mean(-1).argmax()) == int(log_mel(tone, SR).mean(-1).argmax())


def test_player_normalizes_to_a_fixed_peak_and_falls_back_to_wav_without_ffmpeg(monkeypatch):
    monkeypatch.setattr(audio.shutil, "which", lambda name: None)
    quiet = _tone(1.0) * 0.01
    mime, data = _payload(player_html(quiet, SR))
    assert mime == "audio/wav"
    import io
    import wave

    with wave.open(io.BytesIO(data)) as w:
        assert w.getframerate() == SR and w.getnframes() == quiet.numel()
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2") / 32767
    assert abs(np.abs(pcm).max() - 0.9) < 1e-3  # scaled up to the 0.9 peak, as the docstring says
    raw = _payload(player_html(quiet, SR, normalize=False))[1]
    assert abs(np.abs(np.frombuffer(raw[44:], dtype="<i2") / 32767).max() - float(quiet.abs().max())) < 1e-4


def test_audio_player_is_html_for_the_notebook_and_check_book_counts_it():
    shown = audio_player(_tone(0.5), SR)
    assert "<audio controls" in shown._repr_html_()  # scripts/check_book.py counts "<audio"
    with pytest.raises(ValueError):
        encode_audio(_tone(0.1), SR, "flac-ish")
    assert encode_audio(_tone(0.1), SR, "wav")[1] == "audio/wav"
