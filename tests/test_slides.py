"""Every chapter presents as slides: RISE metadata chosen for a lecture, and an offline static export.

The slide rules a lecture needs: the title opens the deck; each numbered section (``##``) starts a slide
and each ``###`` a sub-slide; a live widget or an animation sits on a (sub)slide of its own, with at
most the text that introduces it; only the setup cell (the imports) may be skipped, and only when it shows nothing.
"""

from __future__ import annotations

import html
import re
import sys
from pathlib import Path

import nbformat
import pytest

from attnlab.chapters import CHAPTERS

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import slides  # noqa: E402

NOTEBOOKS = [ROOT / "notebooks" / c.notebook for c in CHAPTERS]
SLIDE_TYPES = {"slide", "subslide", "fragment", "-", "skip", "notes"}
STARTS = {"slide", "subslide"}
WIDGET = "application/vnd.jupyter.widget-view+json"
#: The most code cells one (sub)slide may hold: one idea per slide.
MAX_CODE_CELLS_PER_SLIDE = 3


def slide_type(cell) -> str:
    return cell.metadata.get("slideshow", {}).get("slide_type", "")


def heading_level(cell) -> int:
    if cell.cell_type != "markdown":
        return 0
    match = re.match(r"(#{1,6}) ", cell.source.lstrip())
    return len(match.group(1)) if match else 0


def is_live(cell) -> bool:
    """A cell that shows a live widget or a chapter animation."""
    if cell.cell_type != "code":
        return False
    return "show_animation(" in cell.source or any(WIDGET in o.get("data", {}) for o in cell.get("outputs", []))


def groups(nb) -> list[list[int]]:
    """The cells of each (sub)slide, by index, skipped cells left out."""
    out: list[list[int]] = []
    for i, cell in enumerate(nb.cells):
        kind = slide_type(cell)
        if kind == "skip":
            continue
        if kind in STARTS or not out:
            out.append([])
        out[-1].append(i)
    return out


@pytest.fixture(scope="module", params=NOTEBOOKS, ids=lambda p: p.stem)
def nb(request):
    return nbformat.read(request.param, as_version=4)


def test_rise_settings(nb):
    assert nb.metadata.get("rise") == slides.RISE


def test_every_cell_has_a_slide_type(nb):
    bad = [(i, slide_type(c)) for i, c in enumerate(nb.cells) if slide_type(c) not in SLIDE_TYPES]
    assert not bad, f"cells without a valid slideshow.slide_type: {bad}"


def test_headings_start_slides(nb):
    assert slide_type(nb.cells[0]) == "slide" and heading_level(nb.cells[0]) == 1
    for i, cell in enumerate(nb.cells):
        level = heading_level(cell)
        if level in (1, 2):
            assert slide_type(cell) == "slide", f"cell {i} ({cell.source.splitlines()[0]!r}) must start a slide"
        elif level == 3:
            assert slide_type(cell) in STARTS, f"cell {i} ({cell.source.splitlines()[0]!r}) must start a sub-slide"


def test_live_cells_have_a_slide_of_their_own(nb):
    live = [i for i, c in enumerate(nb.cells) if is_live(c)]
    assert live, "every chapter has a widget or an animation"
    for group in groups(nb):
        inside = [i for i in group if i in live]
        if not inside:
            continue
        assert len(inside) == 1, f"cells {inside} share a slide"
        cell = inside[0]
        before, after = group[:group.index(cell)], group[group.index(cell) + 1:]
        code_before = [i for i in before if nb.cells[i].cell_type == "code"]
        assert not code_before, f"cell {cell} shares its slide with code cells {code_before}"
        assert not after, f"cell {cell} is followed on its slide by cells {after}"


def test_one_idea_per_slide(nb):
    for group in groups(nb):
        code = [i for i in group if nb.cells[i].cell_type == "code"]
        assert len(code) <= MAX_CODE_CELLS_PER_SLIDE, f"cells {group} make one slide with {len(code)} code cells"


def test_only_silent_setup_is_skipped(nb):
    skipped = [i for i, c in enumerate(nb.cells) if slide_type(c) == "skip"]
    first_code = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code")
    assert set(skipped) <= {first_code}, f"skipped cells {skipped}; only the setup (cell {first_code}) may be"
    for i in skipped:
        assert not nb.cells[i].outputs, f"the skipped setup cell {i} shows something the class would not see"


# -- the static export ---------------------------------------------------------------------------------------

def test_remote_references_are_found():
    found = slides.remote_references(
        '<script src="https://cdn.example/x.js"></script><link href="//fonts.example/a.css">'
        "<style>@import url(https://fonts.example/b.css); div{background:url('http://x/y.png')}</style>")
    assert len(found) == 4, found
    assert slides.remote_references(
        '<script src="vendor/require.js"></script><a href="https://arxiv.org/abs/2305.13245">paper</a>'
        '<link href="vendor/reveal.js/dist/reveal.css">') == []


needs_npm = pytest.mark.skipif(not slides.NODE_MODULES.is_dir(),
                               reason="run npm ci --prefix slides (./course test does) for the slide export")


@needs_npm
def test_export_is_offline(tmp_path):
    chapter = ROOT / "notebooks" / "06_grouped_query_attention.ipynb"
    slides.copy_vendor(tmp_path)
    page = slides.export(chapter, tmp_path)
    text = page.read_text()
    assert slides.remote_references(text) == []
    for src in re.findall(r'<script src="([^"]+)"', text) + re.findall(r'<link rel="stylesheet" href="([^"]+)"', text):
        assert (tmp_path / src.split("?")[0]).is_file(), f"{src} is referenced but not copied"
    assert "vendor/html-manager/embed-amd.js" in text and "application/vnd.jupyter.widget-state+json" in text
    for css in (tmp_path / "vendor").rglob("*.css"):
        assert slides.remote_references(css.read_text(errors="replace")) == [], css
    # reveal.js: one <section> per slide, each holding one per sub-slide
    nb = nbformat.read(chapter, as_version=4)
    n_slides = sum(slide_type(c) == "slide" for c in nb.cells)
    n_groups = len(groups(nb))
    assert text.count("<section") == n_slides + n_groups


@needs_npm
def test_export_command_writes_an_index(tmp_path):
    chapters = [ROOT / "notebooks" / "00_introduction.ipynb", ROOT / "notebooks" / "13_fact_check.ipynb"]
    assert slides.main([str(c) for c in chapters] + ["--out", str(tmp_path / "slides")]) == 0
    index = (tmp_path / "slides" / "index.html").read_text()
    for chapter in chapters:
        assert f'href="{chapter.stem}.slides.html"' in index
        assert (tmp_path / "slides" / f"{chapter.stem}.slides.html").is_file()
        assert html.escape(slides.chapter_title(chapter)) in index
    assert index.count("<li>") == 2
