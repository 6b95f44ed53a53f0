"""scripts/check_book.py recognises the book's players (Chapter 1's `audio_player`, the static table of
`widgets.SliderPlayer`) and fails a chapter whose page shows fewer players than its notebook makes."""
import importlib.util
import math
from pathlib import Path

import torch

from musiclm_mini.audio import player_html
from musiclm_mini.widgets import SliderPlayer

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("check_book", ROOT / "scripts" / "check_book.py")
check_book = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check_book)
SR = 24_000


def _wave(hz):
    return 0.3 * torch.sin(2 * math.pi * hz * torch.arange(SR // 4) / SR)


def _check(tmp_path, monkeypatch, body: str) -> int:
    page = tmp_path / "book" / "02_rvq.html"
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(f"<html><body>{body}</body></html>")
    monkeypatch.setattr(check_book, "toc_pages", lambda: ["book/02_rvq"])
    return check_book.main([str(tmp_path), "--no-browser"])


def test_chapter_two_needs_its_player_and_its_slider_table(tmp_path, monkeypatch, capsys):
    wanted = check_book.player_cells("book/02_rvq")
    assert wanted >= 2  # the held-out melody and the depth slider
    one = player_html(_wave(440), SR)
    table = SliderPlayer({"1 level": _wave(220), "2 levels": _wave(330)}, SR).static_html()
    assert _check(tmp_path, monkeypatch, one * (wanted - 1) + table) == 0
    assert "(mpeg)" in capsys.readouterr().out
    # the slider shown as a bare widget (no static table) loses its players: the check fails
    hidden = f'<script type="application/vnd.jupyter.widget-state+json">{one}</script>'
    assert _check(tmp_path, monkeypatch, one * (wanted - 1) + hidden) == 1
    assert "cells of its notebook make players" in capsys.readouterr().err
