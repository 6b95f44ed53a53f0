"""evaluation.transcribe.heard_note_kinds: what a transcriber's wrong notes are (Chapter 3)."""
from musiclm_mini.evaluation.transcribe import HEARD_KINDS, heard_note_kinds

TRUE = [(0.0, 1.0, 48), (0.5, 1.5, 60)]  # (onset s, offset s, MIDI pitch): C3 held, C4 from 0.5 s


def test_each_kind_is_recognised():
    heard = [(0.02, 0.9, 48),   # found: C3 within 50 ms of its onset
             (0.60, 1.4, 60),   # C4 0.1 s after its onset, while it sounds -> fragment
             (0.30, 0.9, 67),   # G4: a fifth (19 semitones) above the sounding C3 -> octave or fifth
             (0.70, 1.2, 72),   # C5: an octave above the sounding C4
             (0.20, 0.5, 50),   # D3: nothing of the kind -> other
             (2.00, 2.5, 48)]   # after every note ended: other
    assert heard_note_kinds(TRUE, heard) == {"found": 1, "fragment": 1, "octave or fifth": 2, "other": 2}


def test_empty_lists_count_nothing_or_everything_as_other():
    assert heard_note_kinds(TRUE, []) == dict.fromkeys(HEARD_KINDS, 0)
    assert heard_note_kinds([], [(0.0, 1.0, 60)]) == {"found": 0, "fragment": 0, "octave or fifth": 0, "other": 1}
