"""The chapters as slides, in a real browser: a RISE slideshow in JupyterLab, and the static HTML export
opened with every request to the internet refused.

Screenshots go to ``artifacts/browser/``.
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")

pytest.importorskip("playwright.sync_api", reason="the browser tests need the playwright package (pip)")
if not CHROMIUM.exists():
    pytest.skip(f"the browser tests need Chromium at {CHROMIUM} (Debian package chromium)",
                allow_module_level=True)

from jlab import (  # noqa: E402
    drag_slider,
    expect_text,
    explorer_rows,
    readout_cell,
    run_notebook,
    save_notebook,
    slider,
)
from playwright.sync_api import expect  # noqa: E402

from attnlab.sizing import MODELS  # noqa: E402
from attnlab.widgets import divisors  # noqa: E402

sys.path.insert(0, str(ROOT / "scripts"))
import slides  # noqa: E402

CHAPTER = ROOT / "notebooks" / "06_grouped_query_attention.ipynb"
LIVE_CHAPTER = ROOT / "notebooks" / "10_deepseek_sparse_attention.ipynb"  # live widgets with plotly charts
WIDGET = "application/vnd.jupyter.widget-view+json"
PLOTLY = "application/vnd.plotly.v1+json"


def horizontal_slide(nb) -> list[int]:
    """For each cell, the reveal.js index of the (top-level) slide it shows on: a "slide" cell opens
    the next one, every other cell stays on the current one."""
    index, h = [], -1
    for cell in nb.cells:
        if cell.metadata.get("slideshow", {}).get("slide_type") == "slide":
            h += 1
        index.append(h)
    return index


def figure_slide(nb) -> tuple[int, int]:
    """(slide, sub-slide) reveal.js shows the chapter's first plotly figure on: the top-level index and
    the count of sub-slides before it within that slide."""
    h = v = -1
    for cell in nb.cells:
        kind = cell.metadata.get("slideshow", {}).get("slide_type")
        if kind == "slide":
            h, v = h + 1, 0
        elif kind == "subslide":
            v += 1
        if any(PLOTLY in o.get("data", {}) for o in cell.get("outputs", [])):
            return h, v
    raise AssertionError("the chapter shows no plotly figure")


def widget_slide(nb) -> int:
    """The index of the slide that holds the chapter's first live widget."""
    return next(h for h, cell in zip(horizontal_slide(nb), nb.cells, strict=True)
                if any(WIDGET in o.get("data", {}) for o in cell.get("outputs", [])))


def shot(page, folder: Path, name: str) -> None:
    page.screenshot(path=str(folder / f"{name}.png"))


def test_rise_slideshow(page, lab, artifacts):
    """Chapter 6 as a teacher presents it: Run All in JupyterLab and save, then the RISE slideshow of
    the same notebook: the title slide, one reveal.js section per slide, typeset math, the plotly figure
    drawn with the data the notebook stores, the arrow keys
    reaching the widget's slide, and there the GQA explorer run from the slideshow on the same kernel:
    its slider, dragged with the mouse, updates the readout to what attnlab.sizing computes. A copy of
    the chapter in build/ is saved, not the course's own."""
    nb = nbformat.read(CHAPTER, as_version=4)
    n_slides = horizontal_slide(nb)[-1] + 1
    scratch = ROOT / "build" / "browser-test"
    scratch.mkdir(parents=True, exist_ok=True)
    shutil.copy2(CHAPTER, scratch / CHAPTER.name)
    run_notebook(page, lab, CHAPTER.name, folder=scratch.relative_to(ROOT).as_posix())
    save_notebook(page)

    show = page.context.new_page()
    try:
        show.set_viewport_size({"width": 1280, "height": 720})  # a projector
        show.goto(lab.url(f"rise/{scratch.relative_to(ROOT).as_posix()}/{CHAPTER.name}"))
        deck = show.locator(".reveal .slides")
        expect(deck.locator(":scope > section")).to_have_count(n_slides, timeout=120_000)
        title = nb.cells[0].source.splitlines()[0].lstrip("# ").strip()
        expect(show.locator(".reveal section.present h1").first).to_have_text(re.compile(re.escape(title)))
        expect(show.locator(".reveal mjx-container").first).to_be_attached(timeout=30_000)
        shot(show, artifacts, "rise_title_slide")

        target = widget_slide(nb)
        for _ in range(target):
            show.keyboard.press("ArrowRight")
        expect(deck.locator(":scope > section.present")).to_have_count(1)
        assert deck.locator(":scope > section").evaluate_all(
            "s => s.findIndex(x => x.classList.contains('present'))") == target
        present = show.locator(".reveal section.present")
        cell = present.locator(".jp-CodeCell").first
        expect(cell.locator(".jp-InputArea-editor")).to_contain_text('gqa_widgets.gqa_explorer("llama-3-8b")')
        # Run the widget's cell from the slideshow, in place (Shift+Enter would also advance the slide):
        # it runs on the kernel Run All used, so its count follows the last one, and the widget is live.
        n_code = sum(c.cell_type == "code" for c in nb.cells)
        cell.locator(".jp-InputArea-editor").click()
        show.keyboard.press("Control+Enter")
        expect(cell.locator(".jp-InputArea-prompt")).to_have_text(f"[{n_code + 1}]:", timeout=60_000)
        kv = slider(cell, "KV heads n_g")
        expect(kv).to_have_count(1, timeout=60_000)
        readout = cell.locator(".widget-html")
        options = divisors(MODELS["llama-3-8b"].n_heads)  # what the slider offers
        for n_kv in (8, 16, 2):
            if n_kv != 8:
                drag_slider(show, kv, options.index(n_kv), len(options))
            expect_text(kv.locator(".widget-readout"), str(n_kv))
            for label, value in explorer_rows(n_kv).items():
                expect_text(readout_cell(readout, label), value)
        # dragging the slider left the slideshow on the widget's slide
        assert deck.locator(":scope > section").evaluate_all(
            "s => s.findIndex(x => x.classList.contains('present'))") == target
        shot(show, artifacts, "rise_widget_slide")

        # on to the chapter's plotly figure, drawn by JupyterLab's plotly renderer with the data it stores
        h, v = figure_slide(nb)
        assert h > target, "the chapter's figure comes after its widget"
        for key, times in (("ArrowRight", h - target), ("ArrowDown", v)):
            for _ in range(times):
                show.keyboard.press(key)
        # JupyterLab's plotly renderer shows the picture it took when the notebook was saved, and draws the
        # live figure as the pointer comes over it
        rendered = show.locator(".reveal section.present .jp-RenderedPlotly")
        expect(rendered).to_have_count(1, timeout=60_000)
        rendered.scroll_into_view_if_needed()
        rendered.hover()
        plot = show.locator(".reveal section.present .js-plotly-plot")
        expect(plot).to_have_count(1, timeout=60_000)
        stored = next(o for cell in nb.cells for o in cell.get("outputs", []) if PLOTLY in o.get("data", {}))
        drawn = plot.evaluate("el => el.data.map(t => Array.from(t.x))")
        assert drawn == [t["x"] for t in stored["data"][PLOTLY]["data"]]
        expect(plot.locator(".main-svg").first).to_be_visible()
        shot(show, artifacts, "rise_plotly_slide")
    finally:
        shot(show, artifacts, "rise_last_seen")  # what the slideshow showed last, pass or fail
        show.close()
        shutil.rmtree(scratch, ignore_errors=True)


def plotly_figures(nb) -> tuple[int, int]:
    """(static plotly figures the cells display, live plotly charts in the saved widget state)."""
    static = sum(PLOTLY in o.get("data", {}) for cell in nb.cells for o in cell.get("outputs", []))
    state = nb.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {}).get("state", {})
    live = sum(m["state"].get("_model_module") == "anywidget" for m in state.values())
    return static, live


@pytest.mark.parametrize("chapter", [CHAPTER, LIVE_CHAPTER], ids=lambda p: p.stem[:2])
def test_static_slides_work_offline(browser, tmp_path, artifacts, chapter):
    """The exported slides load with every non-local request refused: reveal.js starts, MathJax
    typesets, the saved widgets render, every plotly figure is drawn by the plotly.js copied next to the
    slides (the static ones and the live widgets' saved charts, their data as stored), and nothing failed
    to load."""
    if not slides.NODE_MODULES.is_dir():
        pytest.skip("run npm ci --prefix slides (./course test does) for the slide export")
    slides.copy_vendor(tmp_path)
    assert (tmp_path / "vendor" / "plotly.min.js").read_bytes() == slides.PLOTLY_JS.read_bytes()
    html_path = slides.export(chapter, tmp_path)
    nb = nbformat.read(chapter, as_version=4)
    n_slides = horizontal_slide(nb)[-1] + 1
    static, live = plotly_figures(nb)
    assert static >= 1, f"{chapter.name} shows no plotly figure"

    page = browser.new_page()
    page.set_viewport_size({"width": 1280, "height": 720})
    refused, failed, errors = [], [], []
    page.route(re.compile(r"^(?!file:|data:|blob:).*"), lambda route: (refused.append(route.request.url),
                                                                      route.abort()))
    page.on("requestfailed", lambda request: failed.append(request.url))
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        page.goto(html_path.as_uri())
        # reveal.js loads as a require.js module and marks the deck "ready" once it has laid it out
        expect(page.locator(".reveal.ready")).to_have_count(1, timeout=60_000)
        expect(page.locator(".reveal .slides > section")).to_have_count(n_slides)
        expect(page.locator(".MathJax_CHTML, .mjx-chtml").first).to_be_attached(timeout=60_000)
        expect(page.locator(".widget-slider").first).to_be_attached(timeout=60_000)
        # every figure drawn: plotly.js puts its SVG into each graph div
        expect(page.locator(".js-plotly-plot .main-svg").first).to_be_attached(timeout=60_000)
        expect(page.locator(".js-plotly-plot")).to_have_count(static + live, timeout=60_000)
        expect(page.locator(".attnlab-live-figure.js-plotly-plot")).to_have_count(live)
        stored = next(o for cell in nb.cells for o in cell.get("outputs", []) if PLOTLY in o.get("data", {}))
        first_id = re.search(r'<div id="([a-z0-9-]+)"', stored["data"]["text/html"]).group(1)
        drawn = page.locator(f"#{first_id}").evaluate("el => el.data.map(t => t.name || null)")
        assert drawn == [t.get("name") for t in stored["data"][PLOTLY]["data"]]
        shot(page, artifacts, f"static_slides_title_{chapter.stem[:2]}")
        for _ in range(widget_slide(nb)):
            page.keyboard.press("ArrowRight")
        expect(page.locator("section.present .widget-slider").first).to_be_visible()
        page.wait_for_timeout(500)
        shot(page, artifacts, f"static_slides_widget_{chapter.stem[:2]}")
    finally:
        page.close()
    assert not refused, f"the slides asked the internet for {refused}"
    assert not failed, f"these did not load: {failed}"
    assert not errors, f"script errors: {errors}"
