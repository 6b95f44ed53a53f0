"""Real public-domain scores as note lists: the music21 corpus, parsed once per score (Chapter 1).

SynthCaps does not invent melodies: it borrows them from the scores that ship with `music21`
(Bach chorales, German, Chinese and Irish folk tunes, Renaissance madrigals, ...). This file
turns one corpus entry into plain numpy note lists that the renderer can rearrange freely:

    voices[k]   (N, 3) float array of (onset, duration, MIDI pitch); onsets and durations are
                in quarter notes, voice 0 is the melody (top voice), the last one the bass.

Parsing is the slow part of the whole pipeline (tens of milliseconds per tune), so every source
is parsed exactly once and rendered several times. Nothing is cached on disk here: music21's
own pickle cache is switched off (`storePickle=False`) so the book writes only under `data/`.
"""
from __future__ import annotations

import functools
import os
import re
import warnings
from dataclasses import dataclass

import numpy as np

# Where each collection lives inside music21's corpus, its kind, and its share of the sources.
# "poly" scores bring their own harmony; "mono" tunes get one from `harmonize` below.
COLLECTIONS = {
    "bach-chorales": ("bach", "poly", 0.35),
    "essen-folksongs": ("essenFolksong", "mono", 0.22),
    "ryans-mammoth": ("ryansMammoth", "mono", 0.18),
    "oneills-1850": ("oneills1850", "mono", 0.15),
    "madrigals": ("monteverdi", "poly", 0.10),
}
_CHORALE = re.compile(r"^bwv(?!846)[\d.]+\.mxl$")  # chorales; skips "-inst"/"-a" duplicates and a prelude
MIN_NOTES = 12  # a source needs at least this many melody notes to make a 10 s clip


@dataclass
class ScoreNotes:
    """One parsed score: note lists, bar grid and key (Chapter 1)."""

    source_id: str
    title: str
    kind: str  # "poly" (several real voices) or "mono" (a tune; harmony is generated)
    voices: list  # list of (N, 3) float arrays: onset, duration (quarter notes), MIDI pitch
    bar_starts: np.ndarray  # (B,) onsets of the bars, in quarter notes
    bar_length: float  # quarter notes per bar (3.0 for 3/4 and 6/8, 4.0 for 4/4)
    tonic: int  # pitch class of the key's tonic, 0 = C
    mode: str  # "major" or "minor"

    @property
    def length(self) -> float:
        """Duration of the whole score in quarter notes."""
        return float(max((v[:, 0] + v[:, 1]).max() for v in self.voices))


def corpus_root() -> str:
    """The folder of music21's bundled corpus (Chapter 1)."""
    import music21

    return os.path.join(os.path.dirname(music21.__file__), "corpus")


def _tune_numbers(path: str) -> list[int]:
    """The `X:` reference numbers of the tunes in an ABC file, cheaply, without music21."""
    with open(path, encoding="latin-1") as handle:
        return [int(m.group(1)) for m in re.finditer(r"^X:\s*(\d+)", handle.read(), re.M)]


@functools.lru_cache(maxsize=4)
def collection_sources(name: str) -> tuple[str, ...]:
    """Every source id of one collection, sorted; multi-tune ABC files give `file.abc#X` ids (Chapter 1)."""
    folder, _, _ = COLLECTIONS[name]
    root = os.path.join(corpus_root(), folder)
    files = sorted(os.listdir(root))
    if name == "bach-chorales":
        return tuple(f"{folder}/{f}" for f in files if _CHORALE.match(f))
    if name == "madrigals":  # "_old" files duplicate a madrigal: one piece must not sit in two splits
        return tuple(f"{folder}/{f}" for f in files if f.endswith(".mxl") and "_old" not in f)
    if name == "ryans-mammoth":  # one tune per file
        return tuple(f"{folder}/{f}" for f in files if f.endswith(".abc"))
    ids = []
    for f in files:  # essen and O'Neill's: many tunes per file
        if f.endswith(".abc") and not f.startswith(("test", "variant")):
            ids += [f"{folder}/{f}#{x}" for x in _tune_numbers(os.path.join(root, f))]
    return tuple(ids)


def list_sources(seed: int, count: int) -> list[str]:
    """`count` source ids mixed across collections by their shares, in a seeded order (Chapter 1).

    Each slot draws a collection by weight and takes that collection's next (shuffled) entry, so
    the same seed always names the same scores in the same order.
    """
    rng = np.random.default_rng([seed, 1234])
    names = list(COLLECTIONS)
    pools = {n: list(rng.permutation(collection_sources(n))) for n in names}
    weights = np.array([COLLECTIONS[n][2] for n in names])
    out = []
    while len(out) < count and any(pools.values()):
        live = np.array([bool(pools[n]) for n in names])
        p = weights * live / (weights * live).sum()
        out.append(str(pools[names[rng.choice(len(names), p=p)]].pop()))
    return out


def source_kind(source_id: str) -> str:
    """"poly" or "mono" for a source id, from its collection folder (Chapter 1)."""
    folder = source_id.split("/", 1)[0]
    return next(kind for f, kind, _ in COLLECTIONS.values() if f == folder)


def _load_music21(source_id: str):
    """Parse a source id with music21 (no pickle cache); an ABC `#X` id parses that tune only."""
    from music21 import converter

    path, _, number = source_id.partition("#")
    full = os.path.join(corpus_root(), path)
    if not number:
        parsed = converter.parseFile(full, forceSource=True, storePickle=False)
    else:  # cut the tune's text out of the multi-tune file: far faster than parsing the whole opus
        with open(full, encoding="latin-1") as handle:
            text = handle.read()
        starts = [m.start() for m in re.finditer(r"^X:\s*\d+", text, re.M)]
        numbers = _tune_numbers(full)
        i = numbers.index(int(number))
        end = starts[i + 1] if i + 1 < len(starts) else len(text)
        parsed = converter.parseData(text[starts[i]:end], format="abc")
    if hasattr(parsed, "scores"):  # an Opus: take its first tune
        parsed = parsed.scores[0]
    return parsed


def _part_notes(part) -> np.ndarray:
    """(N, 3) onset/duration/pitch of one part; chords keep their top note, grace notes are dropped.

    Tied notes are merged into one long note (music21's `stripTies` does the same, 20x slower).
    """
    rows, tied = [], False
    for n in part.flatten().notes:  # iterating sets each note's offset to its place in the part
        dur = float(n.quarterLength)
        if dur <= 0 or not getattr(n, "pitches", None):  # grace notes, chord symbols
            continue
        onset, pitch = float(n.offset), max(p.midi for p in n.pitches)
        if tied and rows[-1][2] == pitch and abs(rows[-1][0] + rows[-1][1] - onset) < 1e-6:
            rows[-1] = (rows[-1][0], rows[-1][1] + dur, pitch)
        else:
            rows.append((onset, dur, pitch))
        tied = n.tie is not None and n.tie.type in ("start", "continue")
    return np.array(rows, dtype=np.float64).reshape(-1, 3)


def parse_score(source_id: str) -> ScoreNotes:
    """Parse one corpus entry into `ScoreNotes` (Chapter 1).

    Voices are ordered from the highest to the lowest average pitch, so voice 0 is the melody even
    when a file lists its parts differently. Raises ValueError for a score too short to use.
    """
    from music21 import meter, stream

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        score = _load_music21(source_id)
        parts = list(score.parts) if score.parts else [score]
        voices = [v for v in (_part_notes(p) for p in parts) if len(v)]
        if not voices or len(voices[0]) < MIN_NOTES:
            raise ValueError(f"{source_id}: too few notes")
        key = score.analyze("key")  # Krumhansl-Schmuckler: tonic and mode from the pitch profile
        sigs = list(score.recurse().getElementsByClass(meter.TimeSignature))
        bar_length = float(sigs[0].barDuration.quarterLength) if sigs else 4.0
        bar_starts = [float(m.offset) for m in parts[0].getElementsByClass(stream.Measure)]
    voices.sort(key=lambda v: -float(np.average(v[:, 2], weights=v[:, 1])))
    if len(voices) > 1:  # the real bass line stays the lowest voice; drop near-empty extras
        voices = [v for v in voices if len(v) >= MIN_NOTES // 2] or voices[:1]
    if not bar_starts or bar_length <= 0:
        bar_starts = list(np.arange(0.0, max(v[-1, 0] for v in voices) + 1e-6, bar_length or 4.0))
    title = (score.metadata.title if score.metadata and score.metadata.title else source_id) or source_id
    mode = key.mode if key.mode in ("major", "minor") else "major"
    return ScoreNotes(source_id, str(title), source_kind(source_id), voices,
                      np.array(sorted(set(bar_starts))), bar_length or 4.0, key.tonic.pitchClass, mode)


# ---------------------------------------------------------------------------------------------
# A harmony for one-voice tunes: pick the triad that best fits each half bar
# ---------------------------------------------------------------------------------------------
# Diatonic triads as pitch classes relative to the tonic, with a small prior favouring I and V.
TRIADS = {
    "major": {"I": (0, 4, 7), "ii": (2, 5, 9), "IV": (5, 9, 0), "V": (7, 11, 2), "vi": (9, 0, 4)},
    "minor": {"i": (0, 3, 7), "III": (3, 7, 10), "iv": (5, 8, 0), "V": (7, 11, 2), "VI": (8, 0, 3),
              "VII": (10, 2, 5)},
}
_PRIOR = {"I": 0.3, "i": 0.3, "V": 0.2, "IV": 0.15, "iv": 0.15}


def harmonize(melody: np.ndarray, bar_starts: np.ndarray, bar_length: float, tonic: int,
              mode: str) -> tuple[np.ndarray, np.ndarray]:
    """Chords and a bass line for a one-voice tune (Chapter 1).

    Each half bar (a whole bar when it holds three beats or fewer) gets the diatonic triad that
    covers the most sounding melody time; downbeat notes count double. Returns (harmony, bass),
    note arrays in the same (onset, duration, pitch) format: a close-position triad around
    middle C and the chord's root in the bass octave.
    """
    step = bar_length / 2 if bar_length > 3 else bar_length
    end = float((melody[:, 0] + melody[:, 1]).max())
    grid = np.concatenate([np.arange(b, b + bar_length - 1e-6, step) for b in bar_starts])
    grid = np.unique(np.concatenate([[0.0], grid[(grid >= 0) & (grid < end)]]))
    harmony, bass, previous = [], [], None
    for start, stop in zip(grid, np.append(grid[1:], end)):
        overlap = np.minimum(melody[:, 0] + melody[:, 1], stop) - np.maximum(melody[:, 0], start)
        weight = np.clip(overlap, 0, None) * np.where(np.isclose(melody[:, 0], start), 2.0, 1.0)
        pcs = (melody[:, 2].astype(int) - tonic) % 12
        best = max(TRIADS[mode].items(), key=lambda kv: weight[np.isin(pcs, kv[1])].sum()
                   + _PRIOR.get(kv[0], 0.0) * step + (0.05 * step if kv[0] == previous else 0.0))
        previous = best[0]
        root = (tonic + best[1][0]) % 12
        chord = sorted(60 + (tonic + pc) % 12 - (12 if (tonic + pc) % 12 > 7 else 0) for pc in best[1])
        harmony += [(start, stop - start, p) for p in chord]
        bass.append((start, stop - start, 36 + (root - 36) % 12))
    return np.array(harmony, dtype=np.float64), np.array(bass, dtype=np.float64)


def change_mode(notes: np.ndarray, tonic: int, source_mode: str, target_mode: str) -> np.ndarray:
    """Move notes between parallel major and minor by mapping scale degrees (Chapter 1).

    Major -> minor lowers the third and sixth (the leading tone stays, as in harmonic minor);
    minor -> major raises them and turns the lowered seventh into the leading tone.
    """
    if source_mode == target_mode or len(notes) == 0:
        return notes
    shift = {4: -1, 9: -1} if target_mode == "minor" else {3: 1, 8: 1, 10: 1}
    degree = (notes[:, 2].astype(int) - tonic) % 12
    out = notes.copy()
    out[:, 2] += np.vectorize(lambda d: shift.get(int(d), 0), otypes=[float])(degree)
    return out
