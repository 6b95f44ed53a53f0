"""An A/B listening test the reader runs, counted as MusicLM counts its raters (Chapter 7; MusicLM Sec. 5).

MusicLM's human study (Sec. 5, Table 1 "Wins") showed raters a caption and two clips made for it by two
systems, asked which one follows the caption better, and reported how many comparisons each system won.
The book does the same with one rater, you:

    pairs = make_pairs({"MusicLM-mini": gen, "retrieval": ret, "real": real}, captions, seed=0)
    test = ListeningTest(pairs, sample_rate=24_000)
    test.widget()            # in Jupyter: two players, "A better" / "B better" / "skip" buttons
    test.tally()             # {system: {"wins": w, "comparisons": n}}

Within a pair the sides are shuffled (seeded) and the systems' names stay hidden until the end, so the
reader judges blind. Nothing about the reader is recorded: the answers live in memory in this object
only, no file is written, no time is taken, nothing is sent anywhere. In CI `apply_answer_sheet` presses
the real buttons from a scripted sheet and the tally is checked; the rendered book (no kernel) shows
the pairs as plain HTML players via `static_html`.
"""
from __future__ import annotations

import html
import itertools
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from ..data.render import encode_wav

CHOICES = ("A", "B", None)  # None: skipped, counts for nobody


@dataclass
class Pair:
    """One comparison: a caption and two clips made for it by two systems (A and B as the reader sees them)."""

    caption: str
    a_system: str
    b_system: str
    a_wave: np.ndarray
    b_wave: np.ndarray
    caption_index: int = 0


def make_pairs(clips: Mapping[str, Sequence], captions: Sequence[str], seed: int = 0,
               systems: Sequence[str] | None = None) -> list[Pair]:
    """Every pair of systems for every caption, sides and order shuffled with `seed` (Chapter 7).

    `clips[system][i]` is that system's clip for `captions[i]` (a 1-D waveform). With S systems and
    K captions there are K * S * (S - 1) / 2 pairs, so every system meets every other equally often.
    """
    systems = list(systems or clips)
    if len(systems) < 2:
        raise ValueError("a listening test needs at least two systems")
    for s in systems:
        if len(clips[s]) != len(captions):
            raise ValueError(f"{s}: {len(clips[s])} clips for {len(captions)} captions")
    rng = np.random.default_rng(seed)
    pairs = []
    for i, caption in enumerate(captions):
        for s1, s2 in itertools.combinations(systems, 2):
            if rng.random() < 0.5:
                s1, s2 = s2, s1
            pairs.append(Pair(caption, s1, s2, np.asarray(clips[s1][i], np.float32),
                              np.asarray(clips[s2][i], np.float32), i))
    return [pairs[k] for k in rng.permutation(len(pairs))]


def tally(pairs: Sequence[Pair], answers: Sequence) -> dict[str, dict]:
    """Wins and comparisons per system; an answer is "A", "B" or None (skipped, not counted) (Chapter 7)."""
    if len(answers) > len(pairs):
        raise ValueError(f"{len(answers)} answers for {len(pairs)} pairs")
    out = {s: {"wins": 0, "comparisons": 0} for p in pairs for s in (p.a_system, p.b_system)}
    for pair, answer in zip(pairs, answers):
        if answer not in CHOICES:
            raise ValueError(f"answer must be 'A', 'B' or None, got {answer!r}")
        if answer is None:
            continue
        out[pair.a_system]["comparisons"] += 1
        out[pair.b_system]["comparisons"] += 1
        out[pair.a_system if answer == "A" else pair.b_system]["wins"] += 1
    return out


def sign_test(pairs: Sequence[Pair], answers: Sequence, system: str, other: str) -> dict:
    """Two-sided sign test of `system` against `other` on the pairs where they met (Chapter 7).

    Under "neither is better" each of their n answered comparisons is a coin flip, so wins ~ Binomial(n, 1/2).
    """
    from scipy.stats import binomtest

    wins = n = 0
    for pair, answer in zip(pairs, answers):
        if answer is None or {pair.a_system, pair.b_system} != {system, other}:
            continue
        n += 1
        wins += int((pair.a_system if answer == "A" else pair.b_system) == system)
    p = binomtest(wins, n, 0.5).pvalue if n else 1.0
    return {"wins": wins, "comparisons": n, "p_value": float(p)}


def answers_from_scores(pairs: Sequence[Pair], score) -> list:
    """An automatic judge: `score(caption, wave) -> float`, the higher-scoring side wins (ties: skipped).

    E.g. MuLan's caption-clip similarity or the tagger's "asked for X, got X" count. Label its tally as
    the judge's, not a listener's: such judges share the biases of the models they measure (Chapter 7).
    """
    answers = []
    for pair in pairs:
        a, b = float(score(pair.caption, pair.a_wave)), float(score(pair.caption, pair.b_wave))
        answers.append("A" if a > b else "B" if b > a else None)
    return answers


class ListeningTest:
    """The interactive page: one pair at a time, blind, answers kept in memory only (Chapter 7)."""

    def __init__(self, pairs: Sequence[Pair], sample_rate: int):
        self.pairs, self.sample_rate = list(pairs), int(sample_rate)
        self.answers: list = []
        self._built = None

    @property
    def done(self) -> bool:
        return len(self.answers) >= len(self.pairs)

    def answer(self, choice) -> None:
        """Record the answer to the current pair and move on ("A", "B" or None to skip)."""
        if choice not in CHOICES:
            raise ValueError(f"answer must be 'A', 'B' or None, got {choice!r}")
        if self.done:
            raise ValueError("every pair has been answered")
        self.answers.append(choice)
        if self._built is not None:
            self._show()

    def tally(self) -> dict[str, dict]:
        """Wins and comparisons per system so far."""
        return tally(self.pairs, self.answers)

    def widget(self):
        """The ipywidgets page (built once; call again to get the same one)."""
        if self._built is None:
            import ipywidgets as w

            layout = w.Layout(width="130px")
            self._built = {
                "progress": w.HTML(), "caption": w.HTML(), "a": w.Audio(format="wav", autoplay=False),
                "b": w.Audio(format="wav", autoplay=False), "result": w.HTML(),
                "buttons": {c: w.Button(description=d, layout=layout) for c, d in
                            (("A", "A better"), ("B", "B better"), (None, "skip"))},
            }
            for choice, button in self._built["buttons"].items():
                button.on_click(lambda _, c=choice: self.answer(c))
            b = self._built
            players = w.HBox([w.VBox([w.HTML("<b>A</b>"), b["a"]]), w.VBox([w.HTML("<b>B</b>"), b["b"]])])
            b["page"] = w.VBox([b["progress"], b["caption"], players, w.HBox(list(b["buttons"].values())),
                                b["result"]])
            self._show()
        return self._built["page"]

    def _show(self) -> None:
        b = self._built
        if self.done:
            b["progress"].value = f"<b>Done: {len(self.pairs)} pairs.</b>"
            b["caption"].value = ""
            for button in b["buttons"].values():
                button.disabled = True
            rows = sorted(self.tally().items(), key=lambda kv: -kv[1]["wins"])
            b["result"].value = "<table>" + "".join(
                f"<tr><td>{html.escape(s)}</td><td>{c['wins']} wins of {c['comparisons']}</td></tr>"
                for s, c in rows) + "</table>"
            return
        pair = self.pairs[len(self.answers)]
        b["progress"].value = f"Pair {len(self.answers) + 1} of {len(self.pairs)}: which clip follows the caption better?"
        b["caption"].value = f"<i>{html.escape(pair.caption)}</i>"
        b["a"].value = encode_wav(np.asarray(pair.a_wave, np.float32), self.sample_rate)
        b["b"].value = encode_wav(np.asarray(pair.b_wave, np.float32), self.sample_rate)


def apply_answer_sheet(test: ListeningTest, sheet: Sequence) -> dict[str, dict]:
    """Press the page's own buttons for each scripted answer ("A", "B", None), then return the tally (CI)."""
    test.widget()
    for choice in sheet:
        test._built["buttons"][choice].click()
    return test.tally()


def static_html(pairs: Sequence[Pair], sample_rate: int, reveal: bool = True) -> str:
    """The pairs as plain HTML audio players (for the rendered book, where no kernel runs the widget).

    With `reveal`, each pair has a collapsed "which was which" line, so the reader can judge first.
    """
    from ..audio import player_html

    parts = []
    for k, pair in enumerate(pairs):
        # compressed (MP3), at the clips' own levels: a louder clip must not win by being normalised
        players = "".join(
            f'<div style="display:inline-block;margin-right:1em"><b>{side}</b><br>'
            f'{player_html(np.clip(np.asarray(wave, np.float32), -1, 1), sample_rate, normalize=False)}</div>'
            for side, wave in (("A", pair.a_wave), ("B", pair.b_wave)))
        key = (f"<details><summary>which was which</summary>A: {html.escape(pair.a_system)}, "
               f"B: {html.escape(pair.b_system)}</details>") if reveal else ""
        parts.append(f"<div><p>{k + 1}. <i>{html.escape(pair.caption)}</i></p>{players}{key}</div>")
    return "\n".join(parts)
