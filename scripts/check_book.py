"""Check the built book: every page of the table of contents exists, every chapter shows the audio players its
notebook makes, no page is too heavy, and, in a real headless browser with the network cut off, the maths is
typeset.

    python scripts/check_book.py _build/html [--max-mb 12] [--no-browser]

Exits 1 with one line per problem. The browser is Debian's chromium (`apt-get install chromium`);
without it the maths check is skipped with a warning (pass --require-browser to fail instead).
"""
from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Chromium flags for a closed machine: no background traffic, and every request sent to a dead proxy,
# so a page that needs the internet (MathJax from a CDN) visibly fails.
OFFLINE_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>", "--allow-file-access-from-files"]


def toc_pages() -> list[str]:
    """Every `file:` of _toc.yml plus its root, as paths without suffix ("book/01_audio_data")."""
    text = (ROOT / "_toc.yml").read_text()
    return re.findall(r"^root:\s*(\S+)", text, re.M) + re.findall(r"file:\s*(\S+)", text)


def is_chapter(page: str) -> bool:
    """Chapters are the numbered notebooks."""
    return re.match(r"book/\d\d_", page) is not None and (ROOT / f"{page}.ipynb").exists()


# Calls that put audio players in a cell's output: the package's player, the slider with its static table
# (musiclm_mini/widgets.py), the listening test's static pairs, IPython's own Audio.
PLAYER_CALL = re.compile(r"\b(audio_player|SliderPlayer|static_html|Audio)\(")


def player_cells(page: str) -> int:
    """How many code cells of a chapter's notebook make audio players: its page must show at least that many."""
    import json

    cells = json.loads((ROOT / f"{page}.ipynb").read_text())["cells"]
    return sum(1 for c in cells if c["cell_type"] == "code" and PLAYER_CALL.search("".join(c["source"])))


def rendered_dom(chromium: str, html: Path) -> str:
    """The page's DOM after its scripts ran (MathJax typesetting included), network cut off."""
    with tempfile.TemporaryDirectory() as profile:
        out = subprocess.run([chromium, *OFFLINE_FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=20000",
                              "--dump-dom", html.resolve().as_uri()], capture_output=True, text=True, timeout=180)
    return out.stdout


def untypeset_math(dom: str) -> int:
    """How many \\( or \\[ delimiters are still visible (outside scripts) after MathJax ran."""
    visible = re.sub(r"<script.*?</script>", "", dom, flags=re.S)
    return len(re.findall(r"\\\(|\\\[", visible))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("html", type=Path, nargs="?", default=ROOT / "_build" / "html")
    parser.add_argument("--max-mb", type=float, default=12.0, help="largest page allowed, MB")
    parser.add_argument("--no-browser", action="store_true")
    parser.add_argument("--require-browser", action="store_true")
    args = parser.parse_args(argv)
    problems, chromium = [], shutil.which("chromium") or shutil.which("chromium-browser")
    if not args.no_browser and chromium is None:
        if args.require_browser:
            problems.append("no chromium to check the maths: apt-get install chromium")
        else:
            print("check_book: no chromium, maths not checked in a browser (apt-get install chromium)", file=sys.stderr)
    for page in toc_pages():
        html = args.html / f"{page}.html"
        if not html.exists():
            problems.append(f"{page}: no page {html} (did the chapter fail to execute?)")
            continue
        text = html.read_text(errors="replace")
        size = html.stat().st_size / 1e6
        # Players outside <script>: the saved state of a widget (widgets.py) holds a player the page never shows.
        shown = re.sub(r"<script.*?</script>", "", text, flags=re.S)
        players = shown.count("<audio")
        formats = sorted(set(re.findall(r'<audio[^>]*src="data:audio/([a-z0-9.+-]+)', shown)))
        has_math = 'class="math' in text
        line = f"{page}: {size:.1f} MB, {players} audio players" + (f" ({', '.join(formats)})" if formats else "")
        # A chapter that makes players must show them all (a lost output, a widget with no static fallback);
        # one that makes none (the cost of scaling up) is not asked for sound.
        wanted = player_cells(page) if is_chapter(page) else 0
        if players < wanted:
            problems.append(f"{page}: {players} audio players shown, but {wanted} cells of its notebook make players")
        elif is_chapter(page) and wanted == 0:
            line += " (its notebook makes none)"
        if size > args.max_mb:
            problems.append(f"{page}: {size:.1f} MB is over {args.max_mb} MB")
        if has_math and chromium and not args.no_browser:
            dom = rendered_dom(chromium, html)
            typeset, raw = dom.count("<mjx-container"), untypeset_math(dom)
            line += f", {typeset} formulas typeset, {raw} left raw"
            if typeset == 0 or raw:
                problems.append(f"{page}: maths not typeset offline ({typeset} typeset, {raw} raw delimiters)")
        print(line)
    for p in problems:
        print(f"check_book: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
