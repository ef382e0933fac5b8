"""The notebooks as stored: paired with their jupytext sources, executed, error-free, deterministic.

nbval (run by ``./course test``) re-executes every notebook and compares each text output; these tests
check what nbval does not: that the .ipynb was built from the current .py, and that it is complete.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import jupytext
import pytest

from attnlab.chapters import CHAPTERS

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
#: Every chapter's source, from the course's chapter list (tests/test_chapters.py: it is every numbered notebook).
SOURCES = [NOTEBOOKS / c.source for c in CHAPTERS]


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_ipynb_matches_its_jupytext_source(source: Path):
    ipynb = source.with_suffix(".ipynb")
    assert ipynb.exists(), f"{ipynb.name} missing: run ./course notebooks {source.relative_to(NOTEBOOKS.parent)}"
    from_py = jupytext.read(source)
    stored = jupytext.read(ipynb)
    strip = lambda nb: [(c.cell_type, c.source.strip(), c.metadata.get("slideshow")) for c in nb.cells]
    assert strip(from_py) == strip(stored), (
        f"{ipynb.name} drifted from {source.name}: run ./course notebooks {source.relative_to(NOTEBOOKS.parent)}"
    )


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_ipynb_writes_back_to_its_source_text(source: Path):
    """What JupyterLab's jupytext does when the .ipynb is the newer of the pair: write it as py:percent and
    compare the text with the .py. Any difference (cell metadata in another order on a ``# %%`` line) makes
    JupyterLab refuse to open the chapter. The version lines jupytext adds to the header are left out."""
    written = jupytext.writes(jupytext.read(source.with_suffix(".ipynb")), fmt="py:percent")
    versions = re.compile(r"^#\s+(format_version|jupytext_version): .*\n", re.M)
    assert versions.sub("", written) == versions.sub("", source.read_text()), (
        f"{source.name} is not what jupytext writes for its notebook (the # %% metadata in jupytext's order: "
        "alphabetical); JupyterLab would refuse to open it")


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_ipynb_is_stored_executed_without_errors(source: Path):
    cells = json.loads(source.with_suffix(".ipynb").read_text())["cells"]
    code = [c for c in cells if c["cell_type"] == "code" and "".join(c["source"]).strip()]
    assert code, "a chapter without code"
    assert all(c["execution_count"] is not None for c in code), "some code cells are stored unexecuted"
    errors = [o for c in code for o in c["outputs"] if o["output_type"] == "error"]
    assert not errors, [e["ename"] + ": " + e["evalue"] for e in errors]
    counts = [c["execution_count"] for c in code]
    assert counts == list(range(1, len(code) + 1)), "cells were not executed top to bottom in one run"


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_stored_notebook_has_nothing_a_rebuild_would_change(source: Path):
    """What varies from run to run is stored in one fixed form (scripts/build_notebooks.py), so rebuilding an
    unchanged chapter rewrites the same bytes: widget model ids numbered, each saved FigureWidget's traces
    "trace-0", "trace-1", ... rather than plotly's random uuids, and printed output one stream per run of
    prints rather than the kernel's chunks."""
    nb = json.loads(source.with_suffix(".ipynb").read_text())
    state = nb["metadata"].get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {}).get("state", {})
    for model_id, model in state.items():
        assert re.fullmatch(r"0{16}[0-9a-f]{16}", model_id), f"widget model id {model_id} was not renumbered"
        for i, trace in enumerate(model["state"].get("_widget_data", [])):
            uid = trace.get("uid", f"trace-{i}")
            assert uid == f"trace-{i}", f"trace {i} of widget {model_id} has uid {uid}"
    for cell in nb["cells"]:
        outputs = cell.get("outputs", [])
        for a, b in zip(outputs, outputs[1:], strict=False):
            assert not (a["output_type"] == b["output_type"] == "stream" and a["name"] == b["name"]), (
                f"two {a['name']} outputs in a row in a cell of {source.stem}: a rebuild joins them")


UNFINISHED = re.compile(r"\bTODO\b|\bFIXME\b|\bXXX\b|coming soon|placeholder|NotImplementedError", re.I)


def _without_images(node):
    """The stored notebook's JSON with image payloads (base64, random letters) left out."""
    if isinstance(node, dict):
        return {k: _without_images(v) for k, v in node.items() if not k.startswith("image/")}
    if isinstance(node, list):
        return [_without_images(v) for v in node]
    return node


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_no_unfinished_text(source: Path):
    """Neither the source nor the stored notebook (cells, outputs, widget state, metadata) has words of
    unfinished work, "placeholder" included (ipywidgets' default placeholder is left out of the state)."""
    assert not UNFINISHED.search(source.read_text()), source.name
    stored = json.dumps(_without_images(json.loads(source.with_suffix(".ipynb").read_text())), ensure_ascii=False)
    found = sorted({m.group(0) for m in UNFINISHED.finditer(stored)})
    assert not found, f"{source.with_suffix('.ipynb').name} contains {found}"


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_chapter_has_the_required_sections(source: Path):
    text = source.read_text()
    assert "What it costs" in text, "every chapter has a 'What it costs' section"
    assert "## Exercises" in text, "every chapter ends with exercises"
    assert re.search(r"widgets|cache_calculator|interactive", text), "every chapter has a live widget"
    solutions = NOTEBOOKS / "solutions" / f"ch{source.stem[:2]}.py"
    assert solutions.exists(), f"solutions for {source.stem} belong in {solutions.relative_to(NOTEBOOKS.parent)}"
