"""The audio slider of Chapters 2 and 6 (`musiclm_mini.widgets.SliderPlayer`), driven as a reader would."""
import base64
import math
import re

import pytest
import torch

from musiclm_mini.widgets import SliderPlayer

SR = 24_000


def _clips():
    t = torch.arange(SR // 2) / SR  # half a second each, a different pitch per setting
    return {f"{q} level(s)": 0.3 * torch.sin(2 * math.pi * 220 * q * t) for q in (1, 2, 4, 8)}


def _payloads(html: str) -> list[bytes]:
    return [base64.b64decode(p) for p in re.findall(r'src="data:audio/[^;]+;base64,([^"]+)"', html)]


def test_moving_the_slider_swaps_the_player_for_that_settings_clip():
    clips = _clips()
    pick = SliderPlayer(clips, SR, description="RVQ depth", notes={"2 level(s)": "10 bits per frame"})
    assert pick.slider.value == "1 level(s)"
    first = pick.view.value
    assert _payloads(first) == _payloads(pick.players["1 level(s)"])
    pick.slider.value = "2 level(s)"  # what dragging does: the observer updates the player below
    assert pick.view.value != first
    assert _payloads(pick.view.value) == _payloads(pick.players["2 level(s)"])
    assert "10 bits per frame" in pick.view.value
    # the four clips differ, so four different players were made
    assert len({p for label in clips for p in _payloads(pick.players[label])}) == 4


def test_display_carries_the_widget_and_a_static_table_of_every_setting():
    pick = SliderPlayer(_clips(), SR, value="4 level(s)")
    assert pick.slider.value == "4 level(s)"
    bundle = pick._repr_mimebundle_()
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == pick.widget.model_id
    static = bundle["text/html"]
    assert static.count("<audio") == 4 and all(label in static for label in pick.labels)
    with pytest.raises(ValueError):
        SliderPlayer(_clips(), SR, value="16 levels")
    with pytest.raises(ValueError):
        SliderPlayer({}, SR)
