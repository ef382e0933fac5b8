"""The course as a learner meets it: JupyterLab in a real (headless) Chromium.

Each test opens a notebook in JupyterLab, clears its outputs, runs every cell from the Run menu, waits
for the kernel, and checks that no cell shows an error. Three tests then move the live widgets' sliders
with the keyboard, as a learner would, and check that the numbers shown, in the readouts and in the live
plotly charts' figure data, are exactly the ones :mod:`attnlab.sizing` computes for the new setting. A
screenshot of each test's page is saved under ``artifacts/browser/``.

Needs the ``playwright`` Python package and Debian's ``chromium`` at /usr/bin/chromium (no browser is
downloaded); without them the module is skipped.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"

pytest.importorskip("playwright.sync_api", reason="the browser tests need the playwright package (pip)")
if not CHROMIUM.exists():
    pytest.skip(f"the browser tests need Chromium at {CHROMIUM} (Debian package chromium)",
                allow_module_level=True)

import nbformat  # noqa: E402
import torch  # noqa: E402
from jlab import expect_text, explorer_rows, press, readout_cell, run_notebook, slider, widget_output  # noqa: E402
from playwright.sync_api import expect  # noqa: E402

from attnlab import chapters, sizing  # noqa: E402
from attnlab.interactive.gqa import decode_read_bytes  # noqa: E402
from attnlab.sizing import MODELS, format_bytes, format_ratio  # noqa: E402
from attnlab.widgets import CONTEXT_OPTIONS  # noqa: E402

# -- chapter 0: the KV-cache calculator ------------------------------------------------------------------

def _context_label(seq_len: int) -> str:
    return next(label for label, value in CONTEXT_OPTIONS if value == seq_len)


def _calculator_cache(seq_len: int, scheme: str | None = None, n_kv_heads: int | None = None) -> tuple[str, str]:
    """(row label, value) of the calculator's cache row for DeepSeek-V3's shape (batch 1, bfloat16; MLA
    as published unless ``scheme`` says otherwise), formatted as the widget's readout formats it."""
    v3 = MODELS["deepseek-v3"]
    cache = sizing.kv_cache_bytes(v3, seq_len, 1, torch.bfloat16, scheme, n_kv_heads)
    beyond = f" (beyond its published {v3.max_context:,}-token context)" if seq_len > v3.max_context else ""
    return f"Cache for {_context_label(seq_len)} tokens × batch 1", f"{sizing.gib(cache):,.2f} GiB{beyond}"


def _calculator_gqa_bar(n_kv_heads: int) -> tuple[str, str]:
    """(label, value) of the calculator's GQA bar for DeepSeek-V3's shape with ``n_kv_heads``."""
    v3 = MODELS["deepseek-v3"]
    gqa = sizing.cache_bytes_per_token(v3, torch.bfloat16, "gqa", n_kv_heads)
    mha = sizing.cache_bytes_per_token(v3, torch.bfloat16, "mha")
    heads = "head" if n_kv_heads == 1 else "heads"
    return f"GQA · {n_kv_heads} KV {heads}", f"{format_bytes(gqa)} · {format_ratio(mha / gqa)}×"


def _chart_texts(scope) -> list[str]:
    """What the live plotly chart inside ``scope`` writes: its bars' labels and the values beside them,
    read from the figure the browser draws (plotly.js keeps it on the graph div as ``.data``)."""
    return scope.locator(".js-plotly-plot").first.evaluate(
        "el => el.data.flatMap(t => t.orientation === 'h' ? Array.from(t.y) : (t.mode === 'text' ? "
        "Array.from(t.text).map(s => s.trim()) : []))")


def _expect_chart_text(scope, text: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in (shown := _chart_texts(scope)):
        assert time.monotonic() < deadline, f"the chart does not show {text!r}: {shown}"
        time.sleep(0.2)


def test_introduction_calculator(page, lab):
    run_notebook(page, lab, "00_introduction.ipynb")
    calc = widget_output(page, "KV heads n_g (GQA)")
    kv = slider(calc, "KV heads n_g (GQA)")
    context = slider(calc, "Context (tokens)")
    readout = calc.locator(".widget-html")
    options = [value for _, value in CONTEXT_OPTIONS]

    # As loaded: DeepSeek-V3, GQA what-if at 16 KV heads, 128K tokens.
    label, value = _calculator_cache(2**17)
    expect_text(readout_cell(readout, label), value)
    expect_text(kv.locator(".widget-readout"), "16")
    for text in _calculator_gqa_bar(16):
        _expect_chart_text(calc, text)

    # Context: one step right (256K), then two left (64K).
    for key, times, seq_len in (("ArrowRight", 1, 2**18), ("ArrowLeft", 2, 2**16)):
        press(page, context, key, times)
        expect_text(context.locator(".widget-readout"), _context_label(seq_len))
        label, value = _calculator_cache(seq_len)
        expect_text(readout_cell(readout, label), value)
        assert seq_len in options

    # KV heads: the slider offers the divisors of 128; right to 32, then left twice to 8.
    for key, times, n_kv in (("ArrowRight", 1, 32), ("ArrowLeft", 2, 8)):
        press(page, kv, key, times)
        expect_text(kv.locator(".widget-readout"), str(n_kv))
        for text in _calculator_gqa_bar(n_kv):
            _expect_chart_text(calc, text)
    # The readout describes MLA as published, so the KV-heads slider leaves the cache row as it was.
    label, value = _calculator_cache(2**16)
    expect_text(readout_cell(readout, label), value)

    # Scheme shown: GQA. Now the KV-heads slider sets the cache row itself: 8, then 1, then 128 heads.
    scheme = calc.locator(".widget-dropdown", has=page.locator(".widget-label", has_text="Scheme shown"))
    scheme.locator("select").select_option(label="GQA")
    for key, times, n_kv in ((None, 0, 8), ("ArrowLeft", 3, 1), ("End", 1, 128)):
        if key:
            press(page, kv, key, times)
        expect_text(kv.locator(".widget-readout"), str(n_kv))
        label, value = _calculator_cache(2**16, "gqa", n_kv)
        expect_text(readout_cell(readout, label), value)
    kv.scroll_into_view_if_needed()


# -- chapter 6: the GQA explorer -------------------------------------------------------------------------

def test_gqa_explorer(page, lab):
    run_notebook(page, lab, "06_grouped_query_attention.ipynb")
    explorer = widget_output(page, "KV heads n_g")
    kv = slider(explorer, "KV heads n_g")
    readout = explorer.locator(".widget-html")

    # As loaded: Llama-3-8B as published, 8 KV heads; then right to 16, then left twice to 4.
    for key, times, n_kv in ((None, 0, 8), ("ArrowRight", 1, 16), ("ArrowLeft", 2, 4)):
        if key:
            press(page, kv, key, times)
        expect_text(kv.locator(".widget-readout"), str(n_kv))
        for label, value in explorer_rows(n_kv).items():
            expect_text(readout_cell(readout, label), value)
    kv.scroll_into_view_if_needed()


# -- chapter 5: a live plotly chart ---------------------------------------------------------------------------

def test_live_plotly_chart_follows_its_slider(page, lab):
    """Chapter 5's decode explorer draws with a plotly FigureWidget: move its batch slider and the bars the
    browser draws (read from the graph div's figure data) are the bytes attnlab.sizing gives, the same
    graph div updated in place, not drawn anew."""
    run_notebook(page, lab, "05_multi_query_attention.ipynb")
    explorer = widget_output(page, "Batch")
    batch = slider(explorer, "Batch")
    chart = explorer.locator(".js-plotly-plot")
    expect(chart).to_have_count(1, timeout=60_000)
    chart.evaluate("el => { el.dataset.seen = 'before the slider moved'; }")

    def drawn() -> list[list[float]]:  # the stacked bars: weights, then the K/V cache, for MHA and MQA
        return chart.evaluate("el => el.data.filter(t => t.type === 'bar').map(t => Array.from(t.x))")

    for key, times, n in ((None, 0, 8), ("ArrowRight", 1, 16), ("ArrowLeft", 3, 2)):
        if key:
            press(page, batch, key, times)
        expect_text(batch.locator(".widget-readout"), str(n))
        mha, mqa = (decode_read_bytes("llama-2-7b", 4096, n, s) for s in ("mha", "mqa"))
        want = [[mha["weights"], mqa["weights"]], [mha["cache"], mqa["cache"]]]
        deadline = time.monotonic() + 30
        while drawn() != want:
            assert time.monotonic() < deadline, f"batch {n}: the chart draws {drawn()}, attnlab.sizing gives {want}"
            time.sleep(0.2)
        assert chart.evaluate("el => el.dataset.seen") == "before the slider moved"  # the same chart, restyled
    assert sizing.format_bytes(mha["total"]) in " ".join(_chart_texts(explorer))
    chart.scroll_into_view_if_needed()


# -- every chapter -----------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("name", [c.notebook for c in chapters.CHAPTERS])
def test_notebook_runs_in_browser(page, lab, name):
    run_notebook(page, lab, name)


# -- the harness itself ------------------------------------------------------------------------------------

def test_a_failing_cell_fails_the_run_at_once(page, lab):
    """A notebook whose second cell raises, followed by a cell that would run for ten minutes: the run
    stops at the error and the failure names that cell and its error, well before the run timeout."""
    scratch = ROOT / "build" / "browser-fail-fast"
    scratch.mkdir(parents=True, exist_ok=True)
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("x = 1"),
        nbformat.v4.new_code_cell("raise ValueError('the cell the test must name')"),
        nbformat.v4.new_code_cell("import time\ntime.sleep(600)"),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, scratch / "failing.ipynb")
    started = time.monotonic()
    try:
        with pytest.raises(AssertionError) as failure:
            run_notebook(page, lab, "failing.ipynb", folder=scratch.relative_to(ROOT).as_posix())
    finally:
        lab.shutdown_kernels()
        shutil.rmtree(scratch, ignore_errors=True)
    message = str(failure.value)
    assert "code cell 1 of failing.ipynb" in message and "the cell the test must name" in message, message
    assert time.monotonic() - started < 120, "the run waited on a page that had already failed"
