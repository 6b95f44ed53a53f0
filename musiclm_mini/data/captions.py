"""Labels -> MusicCaps-style captions and aspect lists (Chapter 1).

MusicCaps pairs each 10 s clip with a few sentences written by a musician ("This is a calm
baroque chorale ... The tempo is slow ... It could be used in ...") and a list of short aspects.
We write ours from the structured labels of each SynthCaps clip. Because a model should learn
*meanings* and not one sentence pattern, every fact can be said several ways: several opening
templates, synonyms for moods and tempos, sentences in a shuffled order, some of them optional.

The word lists below are also the contract the tests check: a caption must use a word of its
own label and no word of any other label (a slow clip never says "fast"; no drums, no "snare").
"""
from __future__ import annotations

import contextlib
import io

import numpy as np

# pretty_midi imports pyfluidsynth, which prints where it found its library when the environment variable CI is
# set; that line landed in whichever notebook cell first imported it and failed nbval's check in CI.
with contextlib.redirect_stdout(io.StringIO()):
    import pretty_midi

TEMPO_BUCKETS = (("slow", 0, 80), ("medium", 80, 120), ("fast", 120, 10_000))  # quarter-note BPM


def tempo_bucket(bpm: float) -> str:
    """"slow" below 80 BPM, "medium" below 120, else "fast" (Chapter 1)."""
    return next(name for name, lo, hi in TEMPO_BUCKETS if lo <= bpm < hi)


def derive_mood(mode: str, tempo: str, dynamics: str) -> str:
    """The mood label, a fixed function of mode, tempo bucket and dynamics (Chapter 1).

    Major is brighter than minor and faster is more excited; loudness tips a fast piece from
    happy to energetic, or from dramatic to aggressive. A rule, so that labels never disagree.
    """
    if mode == "major":
        return {"slow": "calm", "medium": "cheerful"}.get(tempo, "energetic" if dynamics == "loud" else "happy")
    return {"slow": "sad", "medium": "mysterious"}.get(tempo, "aggressive" if dynamics == "loud" else "dramatic")


# ------------------------------------------------------------------ the vocabulary (disjoint sets)
STYLE_PHRASES = {
    "chorale": ["baroque chorale", "four-part chorale", "hymn-like chorale"],
    "chamber": ["chamber music piece", "piece of chamber music", "classical chamber work"],
    "church organ": ["church organ piece", "piece for church organ", "sacred church organ work"],
    "piano solo": ["solo piano piece", "piano solo", "short solo piano work"],
    "folk": ["folk tune", "traditional folk melody", "folk song"],
    "rock": ["rock song", "rock instrumental", "guitar-driven rock track"],
    "electronic": ["electronic track", "electronic dance tune", "synth-driven electronic piece"],
    "jazz": ["jazz tune", "jazz instrumental", "small-group jazz piece"],
    "orchestral": ["orchestral piece", "classical orchestral work", "cinematic orchestral cue"],
}
STYLE_KEYWORDS = {"chorale": ("chorale",), "chamber": ("chamber",), "church organ": ("church organ",),
                  "piano solo": ("solo piano", "piano solo"), "folk": ("folk",), "rock": ("rock",),
                  "electronic": ("electronic",), "jazz": ("jazz",), "orchestral": ("orchestra",)}
MOOD_WORDS = {
    "calm": ["calm", "relaxing", "serene"],
    "cheerful": ["cheerful", "pleasant", "sunny"],
    "happy": ["happy", "joyful", "upbeat"],
    "energetic": ["energetic", "lively", "exciting"],
    "sad": ["sad", "melancholic", "sorrowful"],
    "mysterious": ["mysterious", "dark", "brooding"],
    "dramatic": ["dramatic", "suspenseful", "stirring"],
    "aggressive": ["aggressive", "intense", "fierce"],
}
TEMPO_WORDS = {"slow": ["slow"], "medium": ["moderate", "medium"], "fast": ["fast", "quick", "brisk"]}
DYNAMICS_PHRASES = {"soft": ["played softly", "played gently", "kept at a low volume"],
                    "medium": ["played at a comfortable volume", "played with even dynamics"],
                    "loud": ["played loudly", "played with loud, powerful dynamics"]}
DYNAMICS_ASPECT = {"soft": "soft", "medium": "medium volume", "loud": "loud"}
GROOVES = {"rock": "a steady rock beat with kick, snare and hi-hats",
           "electronic": "a four-on-the-floor kick with claps and open hi-hats",
           "swing": "a swinging ride cymbal pattern",
           "folk": "a light kick-and-tambourine groove"}
GROOVE_ASPECT = {"rock": "rock drum beat", "electronic": "four-on-the-floor", "swing": "swing ride cymbal",
                 "folk": "tambourine"}
DRUM_WORDS = ("drum", "percussion", "snare", "kick", "cymbal", "hi-hat", "tambourine")
NO_DRUM_SENTENCES = ["There are no drums.", "There is no percussion.", "The piece has no drums."]
USES = {
    "calm": ["a meditation app", "a nature documentary", "a quiet evening playlist"],
    "cheerful": ["a cooking show", "a family video", "a travel vlog"],
    "happy": ["a children's TV show", "a summer advertisement", "a celebration video"],
    "energetic": ["a sports highlight reel", "a workout video", "a car commercial"],
    "sad": ["an emotional film scene", "a farewell video", "a rainy-day playlist"],
    "mysterious": ["a detective story", "a fantasy video game", "a night-time documentary"],
    "dramatic": ["a movie trailer", "a thriller", "a historical drama"],
    "aggressive": ["a boss fight in a video game", "an extreme sports video", "a chase scene"],
}
# Friendly instrument names for GM programs; the folk fiddle is a violin by another name.
INSTRUMENT_WORDS = {
    0: "piano", 1: "piano", 4: "electric piano", 11: "vibraphone", 16: "electric organ", 19: "church organ",
    21: "accordion", 22: "harmonica", 24: "nylon-string guitar", 25: "acoustic guitar", 26: "hollow-body guitar",
    27: "clean electric guitar", 29: "overdriven guitar", 30: "distorted electric guitar", 32: "upright bass",
    33: "electric bass", 34: "picked electric bass", 38: "synth bass", 39: "synth bass", 40: "violin",
    41: "viola", 42: "cello", 43: "double bass", 48: "string section", 49: "lush strings", 52: "wordless choir",
    56: "trumpet", 57: "trombone", 58: "tuba", 60: "french horn", 65: "alto saxophone", 66: "tenor saxophone",
    68: "oboe", 70: "bassoon", 71: "clarinet", 73: "flute", 75: "pan flute", 80: "square-wave synth lead",
    81: "sawtooth synth lead", 88: "synth pad", 89: "synth pad", 90: "polysynth pad", 105: "banjo",
}


def instrument_word(program: int, style: str = "") -> str:
    """Friendly name of a GM program as a caption would say it (Chapter 1)."""
    if style == "folk" and program == 40:
        return "fiddle"
    return INSTRUMENT_WORDS.get(program, pretty_midi.program_to_instrument_name(program).lower())


def gm_name(program: int) -> str:
    """The official General MIDI name, e.g. 'Acoustic Grand Piano' (Chapter 1)."""
    return pretty_midi.program_to_instrument_name(program)


def gm_family(program: int) -> str:
    """Coarse GM family ('piano', 'strings', 'brass', 'synth lead', ...) of a program (Chapter 1)."""
    return pretty_midi.program_to_instrument_class(program).lower()


# ------------------------------------------------------------------ writing
def _a(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _instrument_sentence(labels: dict, rng: np.random.Generator) -> str:
    progs = labels["programs"]
    words = {role: instrument_word(progs[role], labels["style"]) for role in ("melody", "harmony", "bass")}
    if progs["melody"] == progs["harmony"] == progs["bass"]:
        verb = "sung" if progs["melody"] == 52 else "played"  # the GM choir
        return str(rng.choice([f"Everything is performed by {_a(words['melody'])}.",
                               f"The whole piece is {verb} by {_a(words['melody'])}, melody and harmony alike."]))
    others = [_a(w) for w in dict.fromkeys([words["harmony"], words["bass"]]) if w != words["melody"]]
    lead = _a(words["melody"])
    if not others:
        return f"The melody and the accompaniment are both played by {lead}."
    return str(rng.choice([
        f"The melody is played by {lead}, accompanied by {_join(others)}.",
        f"{lead[0].upper() + lead[1:]} carries the melody while {_join(others)} fill in the harmony and bass.",
        f"The instrumentation consists of {_join([lead] + others)}, with the {words['melody']} on the melody.",
    ]))


def make_caption(labels: dict, rng: np.random.Generator) -> str:
    """A MusicCaps-style caption (4-7 sentences) that agrees with every label (Chapter 1)."""
    pick = lambda options: str(rng.choice(options))  # noqa: E731
    mood, style = pick(MOOD_WORDS[labels["mood"]]), pick(STYLE_PHRASES[labels["style"]])
    ens = labels["ensemble"]
    opening = pick([
        f"This is {_a(mood)} {style} played by {_a(ens)}.",
        f"{_a(mood).capitalize()} {style} performed by {_a(ens)}.",
        f"The song is {_a(mood)} {style} featuring {_a(ens)}.",
        f"Here we have {_a(style)} with {_a(mood)} feel, played by {_a(ens)}.",
        f"This {style} by {_a(ens)} sounds {mood}.",
    ])
    tempo = pick(TEMPO_WORDS[labels["tempo_bucket"]])
    bpm = labels["tempo_bpm"]
    middle = [
        pick([f"The tempo is {tempo}.", f"It moves at {_a(tempo)} tempo of about {bpm} BPM.",
              f"The pace is {tempo}, around {bpm} beats per minute."]),
        pick([f"The song is in {_a(labels['mode'])} key.", f"It is in {labels['key']}.",
              f"The piece is written in the key of {labels['key']}."]),
        pick([f"It is {pick(DYNAMICS_PHRASES[labels['dynamics']])}.",
              f"The instruments are {pick(DYNAMICS_PHRASES[labels['dynamics']])} throughout."]),
    ]
    if labels["drums"]:
        groove = GROOVES[labels["drum_pattern"]]
        middle.append(pick([f"The drums play {groove}.", f"A drum kit keeps {groove} going.",
                            f"The percussion is {groove} on the drums."]))
    elif rng.random() < 0.5:
        middle.append(pick(NO_DRUM_SENTENCES))
    rng.shuffle(middle)
    sentences = [opening, _instrument_sentence(labels, rng)] + middle
    if rng.random() < 0.7:
        use = pick(USES[labels["mood"]])
        sentences.append(pick([f"It could be used in {use}.", f"This music would fit {use}.",
                               f"It would suit {use}."]))
    return " ".join(sentences)


def make_aspects(labels: dict) -> list[str]:
    """A MusicCaps-style aspect list: short tags for style, instruments, tempo, key, mood, drums (Chapter 1)."""
    words = [instrument_word(p, labels["style"]) for p in labels["programs"].values()]
    aspects = [STYLE_PHRASES[labels["style"]][0], labels["ensemble"], *dict.fromkeys(words),
               f"{labels['tempo_bucket']} tempo", f"{labels['mode']} key", labels["mood"],
               DYNAMICS_ASPECT[labels["dynamics"]]]
    aspects += ["drums", GROOVE_ASPECT[labels["drum_pattern"]]] if labels["drums"] else ["no drums"]
    aspects.append("wordless vocals" if labels["ensemble"] == "choir" else "instrumental")
    return list(dict.fromkeys(aspects))
