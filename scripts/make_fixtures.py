"""Write the tiny real-data fixtures under musiclm_mini/data/fixtures/ (Chapter 1 tests).

    .venv/bin/python scripts/make_fixtures.py

Two small folders, made of pure tones so a test can check what came out (< 300 KB together):

musiccaps/   a MusicCaps-style CSV (same columns as the public file) and clips named the ways
             `realdata.find_clip` accepts, in different rates, channel counts and formats:
               fxA..._30.wav   16 kHz mono, 1.0 s, 440 Hz             ({ytid}_{start}.wav)
               fxB....flac     44.1 kHz stereo, 0.5 s, 440 Hz L / 660 Hz R     ({ytid}.flac)
               fxC....wav      8 kHz mono, 3.0 s "whole recording": 1 kHz only in 1-2 s
               fxD..._10.wav   22.05 kHz stereo float32, 0.4 s, 330 Hz
audiofolder/ metadata.csv (file_name, caption, aspects) and two clips, one in a subfolder.

Corrupt and NaN files are *not* here: the tests write those into a temporary folder.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1] / "musiclm_mini" / "data" / "fixtures"
HEADER = ["ytid", "start_s", "end_s", "audioset_positive_labels", "aspect_list", "caption", "author_id",
          "is_balanced_subset", "is_audioset_eval"]


def tone(freq: float, seconds: float, rate: int, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * rate))) / rate
    return amp * np.sin(2 * np.pi * freq * t)


def musiccaps() -> None:
    folder = ROOT / "musiccaps"
    clips = folder / "clips"
    clips.mkdir(parents=True, exist_ok=True)
    sf.write(clips / "fxA0001abcd_30.wav", tone(440, 1.0, 16_000), 16_000, subtype="PCM_16")
    stereo = np.stack([tone(440, 0.5, 44_100), tone(660, 0.5, 44_100)], axis=1)  # (T, 2)
    sf.write(clips / "fxB0002efgh.flac", stereo, 44_100, subtype="PCM_16")
    whole = tone(200, 3.0, 8_000, amp=0.2)
    whole[8_000:16_000] = tone(1_000, 1.0, 8_000)  # the segment 1-2 s is a 1 kHz tone
    sf.write(clips / "fxC0003ijkl.wav", whole, 8_000, subtype="PCM_16")
    stereo = np.stack([tone(330, 0.4, 22_050), tone(330, 0.4, 22_050, 0.25)], axis=1).astype(np.float32)
    sf.write(clips / "fxD0004mnop_10.wav", stereo, 22_050, subtype="FLOAT")
    rows = [
        ["fxA0001abcd", 30, 40, "/m/05r5c", "['piano', 'slow tempo', 'calm']",
         "A calm piano melody plays at a slow tempo. The recording is quiet.", 4, "False", "True"],
        ["fxB0002efgh", 0, 10, "/m/0l14md", "['guitar', 'fast tempo', 'happy', 'stereo']",
         "This is an upbeat guitar tune. The tempo is fast and the mood is happy.", 7, "True", "False"],
        ["fxC0003ijkl", 1, 2, "/m/042v_gx", "['flute', 'medium tempo']",
         "A flute plays a steady tone at a medium tempo.", 4, "False", "False"],
        ["fxD0004mnop", 10, 20, "/m/07y_7", "['violin', 'sad', 'minor key']",
         "A sad violin piece in a minor key, played slowly.", 2, "True", "True"],
    ]
    with open(folder / "musiccaps_mini.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        writer.writerows(rows)


def audiofolder() -> None:
    folder = ROOT / "audiofolder"
    (folder / "brass").mkdir(parents=True, exist_ok=True)
    sf.write(folder / "calm_piano.wav", tone(262, 0.5, 22_050), 22_050, subtype="PCM_16")
    stereo = np.stack([tone(523, 0.3, 48_000), tone(784, 0.3, 48_000)], axis=1)
    sf.write(folder / "brass" / "loud_brass.flac", stereo, 48_000, subtype="PCM_16")
    with open(folder / "metadata.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file_name", "caption", "aspects"])
        writer.writerow(["calm_piano.wav", "A calm, slow piano note.", "piano; calm; slow tempo"])
        writer.writerow(["brass/loud_brass.flac", "A loud brass chord, bright and fast.", "brass; loud"])


def main() -> None:
    musiccaps()
    audiofolder()
    total = sum(f.stat().st_size for f in ROOT.rglob("*") if f.is_file())
    print(f"fixtures in {ROOT}: {total / 1024:.0f} KB")


if __name__ == "__main__":
    main()
