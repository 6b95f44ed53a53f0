"""From note lists to sound: arrangement, drums, FluidSynth and a hummed voice (Chapter 1).

One parsed score becomes many clips. A *variant* (a dict of choices made by `synthcaps`) says
which style, instruments, tempo, key, mode and loudness to use; this file carries it out:

    arrange()   melody / harmony / bass roles -> General MIDI parts in seconds, plus drums
    render()    pretty_midi + FluidSynth with the TimGM6mb soundfont that pretty_midi ships
    hum()       a numpy "voice": sine-like harmonics, vibrato, glides and breath noise

Everything is driven by an explicit `numpy.random.Generator`, so one seed gives one waveform.
"""
from __future__ import annotations

import io
import os
import wave
from dataclasses import dataclass

import numpy as np

from .scores import ScoreNotes, change_mode, harmonize

SOUNDFONT = "TimGM6mb.sf2"  # General MIDI soundfont bundled with pretty_midi (~6 MB)


def soundfont_path() -> str:
    """Path of the General MIDI soundfont that ships inside pretty_midi (Chapter 1)."""
    from .captions import pretty_midi  # imported there, quietly

    return os.path.join(os.path.dirname(pretty_midi.__file__), SOUNDFONT)


# ---------------------------------------------------------------------------------------------
# Styles: each one fixes the instrument palette, tempo range, drums and accompaniment texture
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Ensemble:
    """A named group: GM program choices per role; empty means 'the melody instrument' (Chapter 1)."""

    name: str
    melody: tuple[int, ...]
    harmony: tuple[int, ...] = ()
    bass: tuple[int, ...] = ()


@dataclass(frozen=True)
class Style:
    """What a style implies for the sound (Chapter 1)."""

    ensembles: tuple[Ensemble, ...]
    tempo: tuple[int, int]  # quarter-note BPM range
    drums: float  # probability that a drum kit plays
    groove: str  # drum pattern when it does
    texture: str  # how harmony and bass move: held, strum, eighths, pulse, comp
    dynamics: tuple[str, ...] = ("soft", "medium", "loud")


STYLES = {
    "chorale": Style((Ensemble("choir", (52,)), Ensemble("brass ensemble", (56,), (60,), (57, 58))),
                     (50, 96), 0.0, "", "held"),
    "chamber": Style((Ensemble("string quartet", (40,), (41,), (42,)),
                      Ensemble("woodwind quartet", (73,), (71, 68), (70,))), (56, 132), 0.0, "", "held"),
    "church organ": Style((Ensemble("organist", (19,)),), (50, 100), 0.0, "", "held"),
    "piano solo": Style((Ensemble("pianist", (0, 1)), Ensemble("electric piano player", (4,))), (56, 150), 0.0,
                        "", "held"),
    "folk": Style((Ensemble("folk band", (40, 73, 21, 22, 75, 71), (24, 25, 105), (32,)),),
                  (80, 168), 0.4, "folk", "strum"),
    "rock": Style((Ensemble("rock band", (30, 29), (29, 27, 16), (33, 34)),), (96, 168), 1.0, "rock",
                  "eighths", ("medium", "loud")),
    "electronic": Style((Ensemble("bank of synthesizers", (80, 81), (88, 89, 90), (38, 39)),), (112, 140), 0.9,
                        "electronic", "pulse", ("medium", "loud")),
    "jazz": Style((Ensemble("jazz combo", (65, 66, 11, 56), (0, 4, 26), (32,)),), (72, 200), 0.85, "swing", "comp"),
    "orchestral": Style((Ensemble("orchestra", (73, 68, 71, 40, 60), (48, 49), (42, 43)),), (56, 140), 0.0, "",
                        "held"),
}
VELOCITY = {"soft": 50, "medium": 78, "loud": 106}
PEAK = {"soft": 0.3, "medium": 0.55, "loud": 0.85}  # loudness follows the dynamics label
# Where each role sits (MIDI pitch of its median note); some instruments move it.
ROLE_CENTER = {"melody": 72, "harmony": 60, "bass": 41}
PROGRAM_CENTER = {73: 79, 75: 79, 22: 72, 70: 48, 42: 45, 43: 36, 57: 48, 58: 36, 60: 62, 41: 62}


# ---------------------------------------------------------------------------------------------
# Arrangement: score roles -> excerpt -> key, mode and register -> texture -> seconds
# ---------------------------------------------------------------------------------------------
def roles(score: ScoreNotes) -> dict[str, np.ndarray]:
    """Melody, harmony and bass of a score; one-voice tunes are harmonized (Chapter 1)."""
    melody = score.voices[0]
    if len(score.voices) >= 3:
        return {"melody": melody, "harmony": np.concatenate(score.voices[1:-1]), "bass": score.voices[-1]}
    harmony, bass = harmonize(melody, score.bar_starts, score.bar_length, score.tonic, score.mode)
    if len(score.voices) == 2:
        bass = score.voices[1]
    return {"melody": melody, "harmony": harmony, "bass": bass}


def excerpt(notes: np.ndarray, start: float, length: float, period: float) -> np.ndarray:
    """Notes sounding in [start, start + length), the score looped every `period` beats (Chapter 1)."""
    copies = int(np.ceil((start + length) / period)) + 1
    tiled = np.concatenate([notes + [k * period, 0, 0] for k in range(copies)])
    tiled[:, 0] -= start
    keep = (tiled[:, 0] >= 0) & (tiled[:, 0] < length)
    out = tiled[keep]
    out[:, 1] = np.minimum(out[:, 1], length - out[:, 0])
    return out[np.argsort(out[:, 0], kind="stable")]


def octave_shift(notes: np.ndarray, center: int) -> int:
    """Whole octaves that move the notes' median pitch closest to `center` (Chapter 1)."""
    return 0 if len(notes) == 0 else int(12 * np.round((center - np.median(notes[:, 2])) / 12))


def chop(notes: np.ndarray, step: float, offset: float = 0.0) -> np.ndarray:
    """Strike whatever sounds at each grid time `offset + k * step`: strums, pulses, stabs (Chapter 1).

    The grid is the excerpt's (it starts on a bar line), so a guitar strums on the beats and a
    jazz pianist stabs on the off-beats, whatever the rhythm of the written chords.
    """
    rows = []
    for onset, dur, pitch in notes:
        first = np.ceil((onset - offset) / step - 1e-9) * step + offset
        for t in np.arange(first, onset + dur - 1e-6, step):
            rows.append((t, min(step * 0.9, onset + dur - t), pitch))
    return np.array(rows, dtype=np.float64).reshape(-1, 3)


def texture(part: np.ndarray, role: str, kind: str) -> np.ndarray:
    """Rhythm of a harmony or bass part for a style's texture (Chapter 1)."""
    if role == "melody" or kind == "held" or len(part) == 0:
        return part
    if kind == "strum":  # guitar strums on every beat; bass on every other
        return chop(part, 1.0) if role == "harmony" else chop(part, 2.0)
    if kind == "eighths":  # rock: driving eighth notes
        return chop(part, 0.5)
    if kind == "pulse":  # electronic: sustained pad, off-beat bass
        return part if role == "harmony" else chop(part, 1.0, offset=0.5)
    if kind == "comp":  # jazz: chord stabs on the "and" of 2 and 4, bass on every beat
        return chop(part, 2.0, offset=1.5) if role == "harmony" else chop(part, 1.0)
    raise ValueError(f"unknown texture {kind!r}")


def swing(notes: np.ndarray) -> np.ndarray:
    """Delay every off-beat eighth to the last third of its beat: the jazz lilt (Chapter 1)."""
    out = notes.copy()
    off = np.isclose(out[:, 0] % 1.0, 0.5)
    out[off, 0] += 1.0 / 6.0
    out[off, 1] = np.maximum(out[off, 1] - 1.0 / 6.0, 0.05)
    return out


def arrange(score: ScoreNotes, variant: dict, clip_seconds: float, rng: np.random.Generator) -> list[dict]:
    """Turn a score into GM parts for one variant (Chapter 1).

    `variant` holds: style, programs {melody, harmony, bass}, tempo_bpm, tonic, mode, dynamics,
    drums, start_bar. Returns a list of parts {program, is_drum, notes (N, 4): start s, end s,
    pitch, velocity}.
    """
    style = STYLES[variant["style"]]
    beats = clip_seconds * variant["tempo_bpm"] / 60.0 + 1.0  # one spare beat for the release
    start = float(score.bar_starts[variant["start_bar"] % len(score.bar_starts)])
    period = float(np.ceil(score.length / score.bar_length) * score.bar_length)
    shift = (variant["tonic"] - score.tonic + 6) % 12 - 6  # nearest transposition: -6..+5
    parts = []
    for role, notes in roles(score).items():
        notes = excerpt(change_mode(notes, score.tonic, score.mode, variant["mode"]), start, beats, period)
        program = variant["programs"][role]
        center = ROLE_CENTER[role] if program == variant["programs"]["melody"] and role != "melody" \
            else PROGRAM_CENTER.get(program, ROLE_CENTER[role])
        notes[:, 2] += shift
        notes[:, 2] += octave_shift(notes, center)
        notes = texture(notes, role, style.texture)
        if variant["style"] == "jazz":
            notes = swing(notes)
        velocity = VELOCITY[variant["dynamics"]] + {"melody": 8, "harmony": -12, "bass": -4}[role]
        parts.append(timed(notes, variant["tempo_bpm"], velocity, score.bar_length, program, False, rng))
    if variant["drums"]:
        hits = drum_pattern(style.groove, beats, score.bar_length, rng)
        parts.append(timed(hits, variant["tempo_bpm"], VELOCITY[variant["dynamics"]] - 6, score.bar_length,
                            0, True, rng))
    return parts


def timed(notes, bpm, velocity, bar_length, program, is_drum, rng) -> dict:
    """Beats -> seconds, humanized velocities, an accent on each downbeat: one GM part (Chapter 1)."""
    sec = 60.0 / bpm
    accent = np.where(np.isclose(notes[:, 0] % bar_length, 0.0), 8, 0)
    extra = notes[:, 3] if notes.shape[1] > 3 else 0.0  # drum hits carry their own accents
    vel = np.clip(velocity + accent + extra + rng.normal(0, 5, len(notes)), 1, 127).round()
    out = np.stack([notes[:, 0] * sec, (notes[:, 0] + notes[:, 1]) * sec, np.clip(notes[:, 2], 0, 127), vel], 1)
    return {"program": int(program), "is_drum": is_drum, "notes": out.reshape(-1, 4)}


# GM drum keys
KICK, SNARE, CLAP, CLOSED_HAT, PEDAL_HAT, OPEN_HAT, CRASH, RIDE, TAMBOURINE = 36, 38, 39, 42, 44, 46, 49, 51, 54


def drum_pattern(groove: str, beats: float, bar_length: float, rng: np.random.Generator) -> np.ndarray:
    """Drum hits (N, 4: onset, duration, key, accent) for `beats` quarter notes of a groove (Chapter 1).

    Patterns are written per beat so they fit 3/4 and 6/8 as well as 4/4; every fourth bar of a
    rock groove ends with a snare fill chosen by `rng`.
    """
    hits = []
    for b in range(int(np.ceil(beats))):
        in_bar, bar = b % max(int(round(bar_length)), 1), b // max(int(round(bar_length)), 1)
        back = in_bar % 2 == 1  # backbeat
        if groove == "rock":
            hits += [(b, KICK, 10)] if not back else [(b, SNARE, 10)]
            hits += [(b, CLOSED_HAT, -10), (b + 0.5, CLOSED_HAT, -18)]
            if bar % 4 == 3 and in_bar == int(round(bar_length)) - 1 and rng.random() < 0.7:
                hits += [(b + f, SNARE, -5) for f in (0.25, 0.5, 0.75)]
        elif groove == "electronic":
            hits += [(b, KICK, 12), (b + 0.5, OPEN_HAT, -12), (b + 0.25, CLOSED_HAT, -25), (b + 0.75, CLOSED_HAT, -25)]
            hits += [(b, CLAP, 0)] if back else []
        elif groove == "swing":
            hits += [(b, RIDE, -8)] + ([(b + 2 / 3, RIDE, -16), (b, PEDAL_HAT, -12)] if back else [])
            hits += [(b, KICK, -20)] if in_bar == 0 else []
        elif groove == "folk":
            hits += [(b, KICK, 0)] if in_bar == 0 else []
            hits += [(b, TAMBOURINE, -10), (b + 0.5, TAMBOURINE, -22)]
        else:
            raise ValueError(f"unknown drum groove {groove!r}")
    hits.append((0.0, CRASH, -5))
    rows = [(t, 0.1, key, acc) for t, key, acc in hits if t < beats]
    return np.array(sorted(rows), dtype=np.float64).reshape(-1, 4)


# ---------------------------------------------------------------------------------------------
# Synthesis
# ---------------------------------------------------------------------------------------------
def render(parts: list[dict], sample_rate: int, num_samples: int, peak: float) -> np.ndarray:
    """Render GM parts with FluidSynth at `sample_rate`, cut to `num_samples`, peak `peak` (Chapter 1).

    A fresh synthesizer per clip keeps the output independent of what was rendered before, which
    is what makes generation reproducible across worker processes.
    """
    from .captions import pretty_midi  # imported there, quietly; it has imported fluidsynth
    import fluidsynth

    midi = pretty_midi.PrettyMIDI(initial_tempo=120.0)
    for part in parts:
        inst = pretty_midi.Instrument(program=part["program"], is_drum=part["is_drum"])
        inst.notes = [pretty_midi.Note(int(v), int(p), float(s), float(max(e, s + 0.02)))
                      for s, e, p, v in part["notes"]]
        midi.instruments.append(inst)
    # Reverb on (a room), chorus off: it adds nothing audible with this soundfont and costs time.
    synth = fluidsynth.Synth(samplerate=float(sample_rate), **{"synth.chorus.active": 0})
    try:
        sfid = synth.sfload(soundfont_path())
        audio = midi.fluidsynth(fs=sample_rate, synthesizer=synth, sfid=sfid)  # peak-normalized to 1
    finally:
        synth.delete()
    return finish(audio, num_samples, peak, sample_rate)


def finish(audio: np.ndarray, num_samples: int, peak: float, sample_rate: int) -> np.ndarray:
    """Crop or pad to `num_samples`, fade the last 50 ms out, scale to `peak`: float32 (T,) (Chapter 1)."""
    out = np.zeros(num_samples, dtype=np.float64)
    out[: min(len(audio), num_samples)] = audio[:num_samples]
    fade = int(0.05 * sample_rate)
    out[-fade:] *= np.linspace(1.0, 0.0, fade)
    top = np.abs(out).max()
    return (out * (peak / top if top > 0 else 0.0)).astype(np.float32)


def hum(notes: np.ndarray, sample_rate: int, num_samples: int, rng: np.random.Generator,
        peak: float = 0.5) -> np.ndarray:
    """A hummed melody: (N, 4) timed notes -> float32 (T,) (Chapter 1, used in Chapter 8).

    A voice is not a keyboard: pitch glides between notes (portamento), wobbles 5-6 times a
    second once a note settles (vibrato), drifts slightly, and the singer breathes in the gaps.
    The tone is nearly a sine (a closed-mouth hum), with weak 2nd-4th harmonics.
    """
    t = np.arange(num_samples) / sample_rate
    target = np.full(num_samples, np.nan)
    gate = np.zeros(num_samples)
    since = np.zeros(num_samples)  # seconds since the current note started
    for start, end, pitch, _ in notes:
        a, b = int(start * sample_rate), min(int((end - 0.04) * sample_rate), num_samples)
        target[a:b], gate[a:b], since[a:b] = pitch, 1.0, t[a:b] - start
    target = _fill_gaps(target)
    glide = np.exp(-1.0 / (0.03 * sample_rate))  # 30 ms portamento (one-pole smoother)
    from scipy.signal import lfilter

    midi = lfilter([1 - glide], [1, -glide], target, zi=[target[0] * glide])[0]
    rate, depth = rng.uniform(5.0, 6.5), rng.uniform(0.15, 0.35)
    vibrato = depth * np.clip(since / 0.25, 0, 1) * np.sin(2 * np.pi * rate * t)
    knots = np.arange(0, t[-1] + 1, 0.5)
    drift = np.interp(t, knots, rng.normal(0, 0.08, len(knots)))  # slow pitch wander, in semitones
    f0 = 440.0 * 2 ** ((midi + vibrato + drift - 69) / 12)
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    voice = sum(amp * np.sin(k * phase) for k, amp in ((1, 1.0), (2, 0.3), (3, 0.1), (4, 0.04)))
    env = lfilter([1 - np.exp(-1 / (0.02 * sample_rate))], [1, -np.exp(-1 / (0.02 * sample_rate))], gate)
    breath = lfilter([1, -0.9], [1], rng.normal(0, 1, num_samples))  # bright noise
    breath *= 0.02 + 0.1 * _breath_bursts(gate, sample_rate)
    return finish(voice * env + breath * 0.3, num_samples, peak, sample_rate)


def _fill_gaps(track: np.ndarray) -> np.ndarray:
    """Hold the last pitch through rests (and the first one before the first note)."""
    idx = np.where(np.isnan(track), 0, np.arange(len(track)))
    np.maximum.accumulate(idx, out=idx)
    filled = track[idx]
    first = np.flatnonzero(~np.isnan(track))
    return np.where(np.isnan(filled), track[first[0]] if len(first) else 60.0, filled)


def _breath_bursts(gate: np.ndarray, sample_rate: int) -> np.ndarray:
    """1 during the 150 ms before each note that follows a rest of 120 ms or more, else 0."""
    out = np.zeros_like(gate)
    onsets = np.flatnonzero(np.diff(gate, prepend=0) > 0)
    for on in onsets:
        rest = on - (np.flatnonzero(gate[:on])[-1] if gate[:on].any() else -sample_rate)
        if rest >= 0.12 * sample_rate:
            out[max(on - int(0.15 * sample_rate), 0):on] = 1.0
    return out


# ---------------------------------------------------------------------------------------------
# WAV bytes: what the datasets' Audio column stores
# ---------------------------------------------------------------------------------------------
def encode_wav(wave_: np.ndarray, sample_rate: int) -> bytes:
    """Mono float waveform in [-1, 1] -> 16-bit PCM WAV bytes (Chapter 1)."""
    pcm = (np.clip(np.asarray(wave_, dtype=np.float64), -1, 1) * 32767).round().astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(int(sample_rate))
        out.writeframes(pcm.tobytes())
    return buf.getvalue()


def decode_wav_int16(data: bytes) -> tuple[np.ndarray, int]:
    """16-bit mono WAV bytes written by `encode_wav` -> (int16 samples, sample rate) (Chapter 1)."""
    with wave.open(io.BytesIO(data), "rb") as src:
        if src.getsampwidth() != 2 or src.getnchannels() != 1:
            raise ValueError("expected 16-bit mono WAV bytes")
        return np.frombuffer(src.readframes(src.getnframes()), dtype="<i2"), src.getframerate()
