"""Every chapter presents as slides: RISE metadata chosen for a lecture, and an offline static export.

The slide rules a lecture needs: the title opens the deck; each numbered section (``##``) starts a slide
and each ``###`` a sub-slide; a live widget or an animation sits on a (sub)slide of its own, with at
most the text that introduces it; only the setup cell (the imports) may be skipped, and only when it shows nothing.
"""

from __future__ import annotations

import ast
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


def renders_prose(source: str) -> bool:
    """A code cell whose only job is to put computed numbers into a sentence: its statements are assignments
    and imports, plus at least one ``display(Markdown(...))``, and nothing else that shows anything."""
    try:
        body = ast.parse(source).body
    except SyntaxError:  # IPython magics: not a prose cell
        return False
    shown = False
    for node in body:
        if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign, ast.Import, ast.ImportFrom)):
            continue
        if isinstance(node, (ast.For, ast.If)) and not any(isinstance(n, ast.Expr) for n in ast.walk(node)):
            continue  # a loop or branch that only builds text
        call = node.value if isinstance(node, ast.Expr) else None
        if (isinstance(call, ast.Call) and getattr(call.func, "id", None) == "display" and len(call.args) == 1
                and isinstance(call.args[0], ast.Call) and getattr(call.args[0].func, "id", None) == "Markdown"):
            shown = True
            continue
        return False
    return shown


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

def test_chapter_opens_with_what_you_will_learn_and_assumes(nb):
    first = next(cell for cell in nb.cells if cell.cell_type == "markdown")
    assert "**What you will learn:**" in first.source and "**What it assumes:**" in first.source, (
        "the chapter's first cell says what you will learn and what it assumes, after its title")


def test_prose_cells_read_as_prose(nb):
    """Collapsed in JupyterLab (the sentence shows, the code is one click away) and hidden in the static slides."""
    for cell in nb.cells:
        if cell.cell_type != "code" or not renders_prose(cell.source):
            continue
        assert cell.metadata.get("jupyter", {}).get("source_hidden") is True, (
            f"collapse the source of this prose cell (jupyter={{\"source_hidden\": true}}): {cell.source[:80]!r}")
        assert "hide-input" in cell.metadata.get("tags", []), f"tag this prose cell hide-input: {cell.source[:80]!r}"


@pytest.mark.parametrize("source, prose", [
    ('x = 2\ndisplay(Markdown(f"{x} heads"))', True),
    ('display(Markdown("a"))\nplt.show()', False),
    ('x = 2', False),
    ('for i in range(2):\n    print(i)\ndisplay(Markdown("a"))', False),
])
def test_prose_cells_are_recognised(source, prose):
    assert renders_prose(source) is prose


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
    hidden = [c for c in nb.cells if "hide-input" in c.metadata.get("tags", [])]
    assert hidden, "chapter 6 has prose cells"
    for cell in hidden:  # the sentence is on the slide, the code that wrote it is not
        first_line = cell.source.strip().splitlines()[0]
        assert html.escape(first_line) not in text, first_line


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
