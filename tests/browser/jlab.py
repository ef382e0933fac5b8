"""Helpers for driving JupyterLab in the browser tests: run a notebook from the Run menu and wait for
its kernel, find a live widget by its slider's label, press keys on a slider, read a readout table."""

from __future__ import annotations

import os
import re
import secrets
import time

import torch
from playwright.sync_api import expect

from attnlab import sizing
from attnlab.interactive.gqa import READOUT_CONTEXT
from attnlab.sizing import MODELS, format_bytes

#: Longest a notebook may take to run top to bottom in the browser (seconds).
RUN_TIMEOUT_S = int(os.environ.get("COURSE_RUN_TIMEOUT_S", 600))
# JupyterLab renders an exception's traceback, like any text on stderr, as application/vnd.jupyter.stderr
# (there is no separate error mime type in the page); the course's stored notebooks write nothing to stderr.
ERROR = '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'
PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"

# "error" as soon as any cell shows an error (JupyterLab may leave the cells queued after it marked "[*]"
# for good, so waiting for the run to end would wait out the whole timeout); "done" once no cell is queued
# or running and every code cell has an execution count; null while the run goes on.
_RUN_STATE = """([panel, error]) => {
  const root = document.querySelector(panel);
  if (!root) return null;
  if (root.querySelector(error) !== null) return "error";
  const prompts = [...root.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')].map(p => p.textContent);
  if (prompts.length === 0 || prompts.some(t => t.includes('*'))) return null;
  return prompts.every(t => /\\[\\d+\\]/.test(t)) ? "done" : null;
}"""


def error_cells(page, name: str) -> str:
    """Each code cell that shows an error: its number in the notebook, the first lines of its source and
    the error text, for a test's failure message."""
    cells = page.locator(f"{PANEL} .jp-CodeCell")
    reports = []
    for i in range(cells.count()):
        cell = cells.nth(i)
        errors = cell.locator(ERROR)
        if errors.count() == 0:
            continue
        source = "\n".join(cell.locator(".jp-InputArea-editor .cm-line").all_inner_texts()[:6])
        shown = "\n".join(errors.nth(j).inner_text() for j in range(errors.count()))
        reports.append(f"code cell {i} of {name}:\n{source}\n--- error ---\n{shown[-3000:]}")
    return "\n\n".join(reports)


def _menu(page, menu: str, item: str) -> None:
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(f"^{re.escape(menu)}$")).click()
    page.locator(".lm-Menu-content .lm-Menu-itemLabel", has_text=re.compile(f"^{re.escape(item)}$")).click()


def _kernel_idle(page) -> bool:
    indicator = page.locator(f"{PANEL} .jp-Notebook-ExecutionIndicator")
    return indicator.count() > 0 and indicator.first.get_attribute("data-status") == "idle"


def run_notebook(page, lab, name: str, folder: str = "notebooks") -> None:
    """Open ``folder``/``name`` (relative to the course folder) in JupyterLab, clear its outputs, Run All
    Cells, wait for the kernel to finish, and fail with the cells' error text if any cell shows an error
    or a traceback."""
    # A workspace of its own, reset: only this notebook opens, whatever an earlier page left open.
    workspace = "t" + secrets.token_hex(6)
    page.goto(lab.url(f"lab/workspaces/{workspace}/tree/{folder}/{name}") + "&reset")
    page.locator(f"{PANEL} .jp-Notebook .jp-CodeCell").first.wait_for(state="attached", timeout=120_000)
    expect(page.locator(f"{PANEL} .jp-Spinner")).to_have_count(0, timeout=120_000)
    expect(page.locator(".jp-NotebookPanel")).to_have_count(1)
    page.wait_for_function("() => { const i = document.querySelector("
                           f"'{PANEL} .jp-Notebook-ExecutionIndicator'); "
                           "return i !== null && i.dataset.status === 'idle'; }", timeout=120_000)
    page.locator(f"{PANEL} .jp-Notebook").click(position={"x": 5, "y": 5})
    _menu(page, "Edit", "Clear Outputs of All Cells")
    assert page.locator(f"{PANEL} .jp-OutputArea-output").count() == 0
    started = time.monotonic()
    _menu(page, "Run", "Run All Cells")
    state = page.wait_for_function(_RUN_STATE, arg=[PANEL, ERROR], timeout=RUN_TIMEOUT_S * 1000,
                                   polling=500).json_value()
    if state == "error":  # fail at the first error, naming the cell, instead of waiting for the run to end
        raise AssertionError(f"{name}: a cell shows an error after {time.monotonic() - started:.1f} s\n"
                             + error_cells(page, name))
    deadline = time.monotonic() + 60
    while not _kernel_idle(page):
        assert time.monotonic() < deadline, f"{name}: the kernel did not go idle after the run"
        time.sleep(0.25)
    assert page.locator(f"{PANEL} {ERROR}").count() == 0, f"{name}: cells show errors:\n" + error_cells(page, name)
    outputs = page.locator(f"{PANEL} .jp-OutputArea-output")
    for i in range(outputs.count()):
        text = outputs.nth(i).inner_text()
        assert "Traceback (most recent call last)" not in text, f"{name}: an output shows a traceback:\n{text}"
        assert "Error displaying widget" not in text, f"{name}: a widget failed to render:\n{text}"
    prompts = page.locator(f"{PANEL} .jp-CodeCell .jp-InputArea-prompt").all_inner_texts()
    unrun = [i for i, t in enumerate(prompts) if not re.search(r"\[\d+\]", t)]
    assert not unrun, f"{name}: code cells {unrun} did not run"
    print(f"{name}: {len(prompts)} code cells ran in {time.monotonic() - started:.1f} s")


def save_notebook(page) -> None:
    """Save the open notebook (File ▸ Save Notebook) and wait until JupyterLab marks it clean."""
    _menu(page, "File", "Save Notebook")
    expect(page.locator(".jp-mod-current.jp-mod-dirty")).to_have_count(0, timeout=30_000)


def _label(page, label: str):
    return page.locator(".widget-label", has_text=re.compile(f"^{re.escape(label)}$"))


def widget_output(page, slider_label: str):
    """The cell output holding the live widget with a slider described as ``slider_label``; waits for
    the widget to render."""
    output = page.locator(f"{PANEL} .jp-OutputArea-output").filter(
        has=page.locator(".widget-slider").filter(has=_label(page, slider_label)))
    expect(output).to_have_count(1, timeout=60_000)
    return output


def slider(scope, label: str):
    """The ipywidgets slider whose description is ``label`` (exactly), inside ``scope``."""
    return scope.locator(".widget-slider").filter(has=_label(scope.page, label))


def press(page, control, key: str, times: int = 1) -> None:
    """Focus the slider's handle and press ``key``, as a learner at the keyboard would."""
    handle = control.locator(".noUi-handle")
    handle.scroll_into_view_if_needed()
    for _ in range(times):
        handle.focus()
        page.keyboard.press(key)


def drag_slider(page, control, index: int, n_options: int) -> None:
    """Drag the slider's handle to where option ``index`` of ``n_options`` sits, as a presenter with a
    mouse would (in a slideshow the arrow keys belong to the slides)."""
    track, handle = control.locator(".noUi-target"), control.locator(".noUi-handle")
    track.scroll_into_view_if_needed()
    box, grip = track.bounding_box(), handle.bounding_box()
    assert box is not None and grip is not None, "the slider is not on screen"
    y = grip["y"] + grip["height"] / 2
    page.mouse.move(grip["x"] + grip["width"] / 2, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * index / (n_options - 1), y, steps=8)
    page.mouse.up()


def readout_cell(scope, row_label: str):
    """The bold value next to ``row_label`` in a readout table inside ``scope``."""
    row = scope.locator("tr").filter(has=scope.page.locator("td", has_text=re.compile(f"^{re.escape(row_label)}$")))
    return row.locator("b")


def expect_text(locator, text: str, timeout_s: float = 30) -> None:
    """Wait until ``locator`` shows exactly ``text``; fail with what it shows instead."""
    deadline = time.monotonic() + timeout_s
    shown = None
    while time.monotonic() < deadline:
        if locator.count() == 1:
            shown = (locator.text_content() or "").strip()
            if shown == text:
                return
        time.sleep(0.2)
    raise AssertionError(f"expected {text!r}, shown {shown!r} ({locator.count()} matches)")


# -- chapter 6's GQA explorer, as attnlab.sizing computes it -----------------------------------------

def explorer_rows(n_kv_heads: int) -> dict[str, str]:
    """The rows of the GQA explorer's readout for Llama-3-8B (bfloat16) at ``n_kv_heads``."""
    spec = MODELS["llama-3-8b"]
    per_token = sizing.cache_bytes_per_token(spec, torch.bfloat16, "gqa", n_kv_heads)
    cache = sizing.kv_cache_bytes(spec, READOUT_CONTEXT, 1, torch.bfloat16, "gqa", n_kv_heads)
    return {
        f"Bytes per token ({spec.n_layers} layers, bfloat16)": f"{per_token:,} B ({format_bytes(per_token)})",
        f"Cache of one {READOUT_CONTEXT:,}-token sequence": f"{sizing.gib(cache):,.2f} GiB",
        "Cached numbers per token per layer": sizing.kv_formula(spec, "gqa", n_kv_heads),
    }
