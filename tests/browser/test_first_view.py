"""What a learner meets first: ``./course lab`` itself, opened in a real (headless) Chromium.

The server is started the way the README says (``./course lab``, here with ``--no-browser`` and a known
port and token), with a fresh home folder so no earlier visit's settings or workspaces count. The page
must show the chapter asked for (chapter 0 by default), the file browser in ``notebooks/`` with one entry
per chapter (the notebooks; their jupytext sources hidden) and the solutions folder, the table of contents
open on the chapter's sections, and no "Jupyter news" pop-up.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"

pytest.importorskip("playwright.sync_api", reason="the browser tests need the playwright package (pip)")
if not CHROMIUM.exists():
    pytest.skip(f"the browser tests need Chromium at {CHROMIUM} (Debian package chromium)", allow_module_level=True)

from conftest import _free_port  # noqa: E402
from playwright.sync_api import expect  # noqa: E402

CHAPTERS = sorted(p.name for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


def _start_course_lab(home: Path, *args: str) -> tuple[subprocess.Popen, str]:
    """Run ``./course lab ARGS --no-browser`` and return the process and the URL it prints."""
    port = _free_port()
    env = dict(os.environ, HOME=str(home), JUPYTER_CONFIG_DIR=str(home / ".jupyter"),
               JUPYTER_RUNTIME_DIR=str(home / "runtime"), JUPYTER_DATA_DIR=str(home / "data"), PYTHONUNBUFFERED="1")
    log = home / "lab.log"
    server = subprocess.Popen(["./course", "lab", *args, "--no-browser", f"--port={port}", "--port-retries=0"],
                              cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
                              start_new_session=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        match = re.search(rf"http://127\.0\.0\.1:{port}/\S+\?token=\w+", log.read_text(errors="replace"))
        if match:
            return server, match.group(0)
        if server.poll() is not None:
            break
        time.sleep(0.5)
    _stop(server)
    pytest.fail(f"./course lab printed no URL:\n{log.read_text(errors='replace')[-4000:]}")


def _stop(server: subprocess.Popen) -> None:
    try:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(server.pid, signal.SIGKILL)


@pytest.mark.parametrize("chapter", [None, 7], ids=["default", "chapter-7"])
def test_course_lab_opens_the_chapter_in_the_course_layout(browser, tmp_path, artifacts, chapter):
    args = () if chapter is None else (str(chapter),)
    expected = CHAPTERS[0] if chapter is None else next(n for n in CHAPTERS if n.startswith(f"{chapter:02d}_"))
    server, url = _start_course_lab(tmp_path, *args)
    assert "/lab/workspaces/course?" in url, url
    page = browser.new_page()
    try:
        page.goto(url)
        # the chapter is open and active
        tab = page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab.lm-mod-current")
        expect(tab).to_contain_text(expected, timeout=120_000)
        expect(page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell").first).to_be_visible()
        # the table of contents is the open side panel, listing the chapter's sections
        toc = page.locator(".jp-TableOfContents-tree")
        expect(toc).to_be_visible(timeout=30_000)
        expect(toc.locator(".jp-tocItem").first).to_be_visible(timeout=30_000)
        headings = toc.locator(".jp-tocItem").all_inner_texts()
        assert any(text.startswith("Chapter ") for text in headings), headings
        assert sum(bool(re.match(r"\d+\. ", text)) for text in headings) >= 3, headings
        # the file browser: notebooks/, one entry per chapter, the sources hidden, solutions one click away
        page.locator('.jp-SideBar.jp-mod-left [data-id="filebrowser"]').click()
        listing = page.locator(".jp-DirListing-content .jp-DirListing-itemText")
        expect(listing.first).to_be_visible(timeout=30_000)
        expect(page.locator(".jp-FileBrowser .jp-BreadCrumbs")).to_contain_text("notebooks")
        names = [name.strip() for name in listing.all_inner_texts()]
        assert [n for n in names if n.endswith(".ipynb")] == CHAPTERS, names
        assert not [n for n in names if n.endswith(".py")], f"chapter sources listed twice: {names}"
        assert "solutions" in names, names
        # no "Jupyter news?" pop-up (checked after the page has settled)
        time.sleep(3)
        assert page.locator(".Toastify__toast", has_text="news").count() == 0, "the news pop-up is shown"
        page.screenshot(path=str(artifacts / f"first_view_{'default' if chapter is None else chapter}.png"))
    finally:
        page.close()
        _stop(server)
