"""The paper map (book/paper_map.md, the Appendix): every module it names imports, every chapter it names
exists, and, where the paper's text is at hand, every section of the paper has a row."""
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "book" / "paper_map.md"
# Chapters being written while this map was made: named by their files, allowed to be missing until they land.
PENDING = {"book/08_melody_conditioning", "book/09_long_generation"}
PAPER_CANDIDATES = [ROOT.parent / "shared" / "seed" / "musiclm-paper.txt", ROOT / "shared" / "seed" / "musiclm-paper.txt"]


def rows() -> list[list[str]]:
    """The body rows of every table on the page, as cells: section, what, chapter, modules."""
    out = []
    for line in PAGE.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) == 4 and cells[0] != "paper section" and not set(cells[0]) <= {"-"}:
            out.append(cells)
    return out


def module_names(cell: str) -> list[str]:
    """`hierarchy/sampling.py` -> musiclm_mini.hierarchy.sampling; `melody/` -> musiclm_mini.melody."""
    paths = re.findall(r"`([^`]+)`", cell)
    assert paths, f"no module in {cell!r}"
    for path in paths:
        assert path.endswith((".py", "/")), f"{path!r} is neither a module nor a folder"
    return ["musiclm_mini." + p.removesuffix(".py").strip("/").replace("/", ".") for p in paths]


def test_every_module_on_the_map_exists_and_imports():
    table = rows()
    assert len(table) >= 20  # the parser read the tables (a broken parse would check nothing)
    for section, _, _, modules in table:
        for name in module_names(modules):
            try:
                importlib.import_module(name)
            except ImportError as exc:
                pytest.fail(f"paper map, {section}: {name} does not import ({exc})")


def test_every_chapter_on_the_map_exists():
    toc = (ROOT / "_toc.yml").read_text()
    assert "file: book/paper_map" in toc
    for section, _, chapters, _ in rows():
        links = re.findall(r"\]\(([^)]+)\)", chapters)
        pending = re.findall(r"`(book/[^`]+)`", chapters)
        assert links or pending, f"{section}: no chapter"
        for target in links:
            assert (PAGE.parent / target).exists(), f"{section}: {target} does not exist"
            assert f"file: book/{Path(target).with_suffix('')}" in toc or target == "intro.md", \
                f"{section}: {target} is not in _toc.yml"
        for name in pending:
            assert name in PENDING or any((ROOT / f"{name}{s}").exists() for s in (".ipynb", ".md")), \
                f"{section}: {name} is neither a chapter nor one being written"


def paper_sections(text: str) -> set[str]:
    """Numbered headings of the paper's text: "2.1. Quantization" -> "2.1", "A. MusicCaps Dataset" -> "A"."""
    numbered = re.findall(r"^(\d(?:\.\d)?)\. [A-Z][^,\n]*[^,\-\n]$", text, re.M)
    appendix = re.findall(r"^[ \t]*([A-C])\. [A-Z][A-Za-z ]{3,40}$", text, re.M)
    found = set(numbered) | set(appendix)
    return {s for s in found if not any(o.startswith(s + ".") for o in found)}  # leaves: 2.1, not 2


def test_every_section_of_the_paper_has_a_row():
    paper = next((p for p in PAPER_CANDIDATES if p.exists()), None)
    if paper is None:
        pytest.skip("the paper's text (shared/seed/musiclm-paper.txt) is not next to this checkout")
    sections = paper_sections(paper.read_text())
    assert {"2.1", "3.2", "4.4", "6", "C"} <= sections  # the heading parser works on this text
    mapped = {row[0].split()[0] for row in rows()}
    assert sections <= mapped, f"paper sections without a row: {sorted(sections - mapped)}"
