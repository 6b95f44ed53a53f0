"""A slider that plays audio: explore a setting by ear (Chapter 2: RVQ depth; Chapter 6: sampling temperature).

    pick = SliderPlayer({"1 level": w1, "2 levels": w2, ...}, sample_rate=24_000, description="RVQ depth")
    pick                      # last line of a cell: the slider with one player under it
    pick.slider.value = "2 levels"   # what dragging the slider does; the player below changes

The clips are made beforehand, one per setting, and encoded once (`audio.player_html`): moving the slider
only swaps which player is shown, so it answers at once and computes nothing.

The rendered book has no kernel, so a slider there could move but never change the sound. The displayed
output therefore carries two forms: the widget, and as its `text/html` a static table of every setting's
player. A Jupyter front-end shows the widget; the book shows the table (`_config.yml` ranks the widget view
out of the HTML build and loads no widget JavaScript, so nothing is fetched from the internet); GitHub and
other viewers without widgets show the table too.
"""
from __future__ import annotations

import html
from typing import Mapping, Sequence

from .audio import player_html


class SliderPlayer:
    """A `SelectionSlider` over named clips with one audio player beneath it, plus a static table fallback.

    `clips` maps each setting's label (in slider order) to a mono waveform (T,); `notes` optionally maps a
    label to one line shown beside its player (bits per frame, the temperatures used, ...).
    """

    def __init__(self, clips: Mapping[str, object], sample_rate: int, description: str = "setting",
                 notes: Mapping[str, str] | None = None, value: str | None = None, fmt: str = "mp3"):
        import ipywidgets as w  # imported here: the package works without a notebook front-end

        if not clips:
            raise ValueError("SliderPlayer needs at least one clip")
        self.labels: Sequence[str] = list(clips)
        if value is not None and value not in self.labels:
            raise ValueError(f"value {value!r} is not one of the settings {self.labels}")
        self.notes = {k: str(v) for k, v in (notes or {}).items()}
        # Encode every clip once, up front: the slider then only swaps strings.
        self.players = {label: player_html(wave, sample_rate, fmt) for label, wave in clips.items()}
        self.slider = w.SelectionSlider(options=self.labels, value=value or self.labels[0], description=description,
                                        continuous_update=False, style={"description_width": "initial"},
                                        layout=w.Layout(width="min(100%, 36em)"))
        self.view = w.HTML(self.panel(self.slider.value))
        self.slider.observe(self._on_change, names="value")
        self.widget = w.VBox([self.slider, self.view])

    def panel(self, label: str) -> str:
        """The HTML under the slider for one setting: its label, its note and its player."""
        note = self.notes.get(label, "")
        return (f"<div><b>{html.escape(label)}</b>{': ' + html.escape(note) if note else ''}</div>"
                f"{self.players[label]}")

    def _on_change(self, change) -> None:
        self.view.value = self.panel(change["new"])

    def static_html(self) -> str:
        """Every setting as one row of a table (label, note, player): the book's view, without a kernel."""
        rows = "".join(
            f'<tr><td style="padding-right:1em"><b>{html.escape(label)}</b></td>'
            f'<td style="padding-right:1em">{html.escape(self.notes.get(label, ""))}</td>'
            f"<td>{self.players[label]}</td></tr>" for label in self.labels)
        return f'<table class="slider-player-static"><tbody>{rows}</tbody></table>'

    def _repr_mimebundle_(self, **kwargs):
        # The widget's own bundle (text/plain + widget view) with the static table added as text/html:
        # each front-end picks the richest form it can show.
        bundle = dict(self.widget._repr_mimebundle_(**kwargs) or {})
        bundle["text/html"] = self.static_html()
        return bundle
