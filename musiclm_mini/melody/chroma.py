"""Chroma melody tokens: the tune's pitch class every 80 ms, for the melody-coarse stage (Chapter 8; MusicLM Sec. 6, appendix C).

A departure from the paper, for `tiny`. The paper conditions on melody *embeddings*, one 192-d vector per 4 s
window quantized by RVQ (`tokens.py`), which the stage must learn to decode into notes. With `tiny`'s 1,024
training clips that decoding has little to learn from. Chroma tokens say the notes directly, in time:

    wave (T,) --CQT chroma (librosa, 36 bins an octave folded to 12) every hop--> (12, F)
              --summed over each grid unit (tiny: 80 ms = 1 semantic frame = 2 codec frames)--> (12, U)
              --argmax: the dominant pitch class, C = 0 ... B = 11; 12 when the unit is quiet--> (U,) in [0, 13)

"Quiet" is a unit whose RMS is below -60 dBFS or 30 dB below the clip's loud units (their 95th percentile), so a
breath between hummed phrases says "no pitch" rather than whatever noise is loudest. A unit reads only its own
80 ms of audio (plus the CQT's window, which reaches further at low pitch), and a whole clip is computed at once,
in training (each 10 s clip, cached: `token_cache.cached_chroma_tokens`) as in generation (the hum, looped to
the length of the music, `coarse.hum_chroma_tokens`), so a crop's tokens are the same either way.

What it keeps and loses: the pitch class of the loudest note and its timing to 80 ms; not the octave, not the
other voices. For a hum (one voice) that is the tune. For a training arrangement the loudest pitch class may be
the bass or a chord tone rather than the melody, so the stage learns "the music's dominant pitch class", which a
hum then stands in for, as the hum's embedding stands in for the arrangement's in the paper. Measured on the 8
melodies of the first 4 validation scores of Chapter 8's melody set: where both have a pitch, a hum's token equals
its full arrangement's in 46% of the units (11% against the other melodies' arrangements, chance about 8%), and
a solo rendition's in 80-92%. The CQT's tuning is estimated per clip (librosa), so a hum sung a little flat
still lands on its notes. Pitch classes are absolute: the music is asked to play in the hum's key.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

PITCH_CLASSES = 12
NO_PITCH = 12  # the token of a quiet unit
CHROMA_CODES = 13  # 12 pitch classes + no pitch
SILENCE_RMS = 1e-3  # -60 dBFS: quiet whatever the clip
QUIET_BELOW_LOUD_DB = 30.0  # quiet relative to the clip: this far below its loud units
LOUD_PERCENTILE = 95.0


def cqt_hop(unit: int) -> int:
    """The CQT hop: the largest divisor of `unit` that is a multiple of 64 (librosa's 7-octave CQT) and at most
    512 samples; tiny's 1,920-sample unit -> 384 (5 CQT frames per unit, 16 ms)."""
    for hop in range(min(unit, 512), 0, -1):
        if unit % hop == 0 and hop % 64 == 0:
            return hop
    raise ValueError(f"a grid unit of {unit} samples has no divisor that is a multiple of 64: no CQT hop fits it")


def unit_chroma(wave: np.ndarray, sample_rate: int, unit: int) -> np.ndarray:
    """CQT chroma energy of each whole unit of a mono wave (T,) -> (12, U), U = T // unit, C = 0 (Chapter 8)."""
    import librosa

    hop = cqt_hop(unit)
    per = unit // hop
    U = len(wave) // unit
    c = librosa.feature.chroma_cqt(y=wave.astype(np.float32), sr=sample_rate, hop_length=hop, norm=None)  # (12, F)
    c = c[:, :U * per]  # frame j is centred on sample j * hop: frames [k * per, (k + 1) * per) lie in unit k
    return c.reshape(PITCH_CLASSES, U, per).sum(-1)  # (12, U)


def quiet_units(wave: np.ndarray, unit: int) -> np.ndarray:
    """True for the units of a mono wave (T,) with no tune to hear -> (U,) bool (Chapter 8)."""
    U = len(wave) // unit
    rms = np.sqrt(np.mean(wave[:U * unit].astype(np.float64).reshape(U, unit) ** 2, axis=1))  # (U,)
    loud = np.percentile(rms, LOUD_PERCENTILE) if U else 0.0
    return rms < max(SILENCE_RMS, loud * 10 ** (-QUIET_BELOW_LOUD_DB / 20))


def chroma_tokens(waves, sample_rate: int, unit: int) -> Tensor:
    """Waves (N, T) or (T,) -> chroma tokens (N, U) long in [0, 13): each unit's dominant pitch class, 12 if quiet (Chapter 8)."""
    x = waves.detach().cpu().float().numpy() if isinstance(waves, Tensor) else np.asarray(waves, np.float32)
    x = x[None] if x.ndim == 1 else x
    if x.ndim != 2 or x.shape[1] < unit:
        raise ValueError(f"need waves (N, T) or (T,) of at least one unit ({unit} samples), got shape {x.shape}")
    out = []
    for wave in x:
        tokens = unit_chroma(wave, sample_rate, unit).argmax(0)  # (U,)
        tokens[quiet_units(wave, unit)] = NO_PITCH
        out.append(torch.as_tensor(tokens, dtype=torch.long))
    return torch.stack(out)  # (N, U)
