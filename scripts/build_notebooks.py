"""Re-execute the course notebooks from their jupytext sources.

    python scripts/build_notebooks.py                  # every notebooks/NN_*.py
    python scripts/build_notebooks.py notebooks/04_kv_caching.py

Each ``notebooks/NN_topic.py`` (py:percent, the file you edit) is read, executed top to bottom in a fresh
kernel with ``notebooks/`` as working directory, and written to ``notebooks/NN_topic.ipynb`` with its
outputs. Metadata that changes from run to run (execution timestamps) is stripped, so a rebuild of
unchanged sources gives an unchanged file. Prints the seconds each notebook took.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import jupytext
import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"


def sources(args: list[str]) -> list[Path]:
    """The .py sources to build: the arguments, or every numbered chapter."""
    if args:
        return [Path(a).resolve().with_suffix(".py") for a in args]
    return sorted(NOTEBOOKS.glob("[0-9][0-9]_*.py"))


def strip_volatile(nb: nbformat.NotebookNode) -> None:
    """Drop per-run metadata (timings) so the stored notebook is deterministic."""
    for cell in nb.cells:
        cell.metadata.pop("execution", None)


WIDGET_ID = re.compile(r"\b[0-9a-f]{32}\b")


def stable_widget_ids(text: str) -> str:
    """Renumber ipywidgets' random model ids (32 hex digits) in order of first appearance.

    The widget state saved in the notebook keeps the widgets viewable in static exports, and the
    renumbering keeps a rebuild of an unchanged source byte-identical."""
    ids: dict[str, str] = {}
    return WIDGET_ID.sub(lambda m: ids.setdefault(m.group(0), f"{len(ids) + 1:032x}"), text)


def build(path: Path) -> float:
    """Execute one jupytext source and store it as an executed .ipynb; return seconds taken."""
    nb = jupytext.read(path)
    nb.metadata.setdefault("jupytext", {})["formats"] = "ipynb,py:percent"
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    start = time.perf_counter()
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}},
                   record_timing=False).execute()
    seconds = time.perf_counter() - start
    strip_volatile(nb)
    # Keep cell ids stable across rebuilds: derive them from the cell position.
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i:03d}"
    path.with_suffix(".ipynb").write_text(stable_widget_ids(nbformat.writes(nb)) + "\n", encoding="utf-8")
    return seconds


def main(argv: list[str]) -> int:
    for path in sources(argv):
        seconds = build(path)
        print(f"{path.relative_to(ROOT)}: executed in {seconds:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
