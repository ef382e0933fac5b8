"""Re-execute the course notebooks from their jupytext sources.

    python scripts/build_notebooks.py                  # every chapter's notebooks/NN_*.py (attnlab.chapters)
    python scripts/build_notebooks.py notebooks/04_kv_caching.py

Each ``notebooks/NN_topic.py`` (py:percent, the file you edit) is read, executed top to bottom in a fresh
kernel with ``notebooks/`` as working directory, and written to ``notebooks/NN_topic.ipynb`` with its
outputs. Metadata that changes from run to run (execution timestamps) is stripped, so a rebuild of
unchanged sources gives an unchanged file. Prints the seconds each notebook took.
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import jupytext
import nbformat
from nbclient import NotebookClient

from attnlab.chapters import CHAPTERS
from slides import RISE

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"


def sources(args: list[str]) -> list[Path]:
    """The .py sources to build: the arguments, or every chapter of :data:`attnlab.chapters.CHAPTERS`."""
    if args:
        return [Path(a).resolve().with_suffix(".py") for a in args]
    return [NOTEBOOKS / c.source for c in CHAPTERS]


def strip_volatile(nb: nbformat.NotebookNode) -> None:
    """Drop per-run metadata (timings) so the stored notebook is deterministic, and join each run of printed
    output into one stream output: the kernel flushes stdout in chunks whose boundaries vary from run to run."""
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        outputs = []
        for output in cell.get("outputs", []):
            previous = outputs[-1] if outputs else None
            if (output.get("output_type") == "stream" and previous is not None
                    and previous.get("output_type") == "stream" and previous.get("name") == output.get("name")):
                previous["text"] = "".join(previous["text"]) + "".join(output["text"])
            else:
                outputs.append(output)
        if "outputs" in cell:
            cell["outputs"] = outputs


def drop_default_widget_state(nb: nbformat.NotebookNode) -> None:
    """Leave out of the saved widget state every attribute still at its default, as ipywidgets'
    ``get_state(drop_defaults=True)`` does (the widget renderers fill defaults in): the stored notebooks
    keep only what the course set. The ``_model_*``/``_view_*`` names stay, so any reader can tell the
    widget's kind from its state alone."""
    from ipywidgets.widgets.widget import _registry  # ipywidgets 8: (module, version, name, ...) -> class

    state = nb.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {}).get("state", {})
    for model in state.values():
        values = model["state"]
        names = [values.get(k) for k in ("_model_module", "_model_module_version", "_model_name", "_view_module",
                                          "_view_module_version", "_view_name")]
        try:
            traits = _registry.get(*names).class_traits(sync=True)
        except KeyError:
            continue  # not an ipywidgets class: keep its state whole
        for key in [k for k in values if k in traits and not k.startswith("_")]:
            if values[key] == traits[key].default_value:
                del values[key]


#: What an anywidget widget (plotly's FigureWidget) carries that the saved state need not: its JavaScript
#: module and style sheet, about 5 MB for plotly, which the front end loads from the installed package.
WIDGET_SOURCES = ("_esm", "_css")


def drop_widget_sources(nb: nbformat.NotebookNode) -> None:
    """Leave the JavaScript of anywidget widgets out of the saved widget state. What they show stays (a
    FigureWidget's ``_widget_data`` and ``_widget_layout``: the static slides draw the figure from it)."""
    state = nb.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {}).get("state", {})
    for model in state.values():
        if model.get("model_module") == "anywidget" or model["state"].get("_model_module") == "anywidget":
            for key in WIDGET_SOURCES:
                model["state"].pop(key, None)


def stable_trace_uids(nb: nbformat.NotebookNode) -> None:
    """Give the traces of every saved FigureWidget the uids "trace-0", "trace-1", ... in their order. Plotly draws
    a random uuid for each trace (it ties a trace to its updates within one figure), which would change the
    saved widget state, and the stored notebook, on every rebuild; each uid is replaced wherever the widget's
    state mentions it."""
    state = nb.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {}).get("state", {})
    for model in state.values():
        traces = model.get("state", {}).get("_widget_data")
        if not isinstance(traces, list):
            continue
        text = json.dumps(model["state"])
        for i, trace in enumerate(traces):
            if isinstance(trace, dict) and isinstance(trace.get("uid"), str):
                text = text.replace(json.dumps(trace["uid"]), json.dumps(f"trace-{i}"))
        model["state"] = json.loads(text)


WIDGET_ID = re.compile(r"(?<![0-9a-f])[0-9a-f]{32}(?![0-9a-f])")


def stable_widget_ids(nb: nbformat.NotebookNode) -> str:
    """The notebook as JSON text, with ipywidgets' random model ids (32 hex digits) renumbered.

    Ids are numbered in a fixed order: the widgets the cells display, in cell order, then those their
    state refers to (children, layouts, styles), breadth first; any left over by their masked state.
    The widget state saved in the notebook keeps the widgets viewable in static exports, and the
    renumbering keeps a rebuild of an unchanged source byte-identical."""
    state = nb.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {}).get("state", {})
    order: list[str] = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            view = output.get("data", {}).get("application/vnd.jupyter.widget-view+json")
            if view and view.get("model_id") not in order:
                order.append(view["model_id"])
    i = 0
    while i < len(order):  # breadth first through the references in each widget's state
        refs = WIDGET_ID.findall(json.dumps(state.get(order[i], {}), sort_keys=True))
        order.extend(r for r in dict.fromkeys(refs) if r not in order)
        i += 1
    masked = {k: WIDGET_ID.sub("ID", json.dumps(v, sort_keys=True)) for k, v in state.items()}
    order.extend(sorted((k for k in state if k not in order), key=lambda k: (masked[k], k)))
    text = nbformat.writes(nb)
    ids = {old: f"{n + 1:032x}" for n, old in enumerate(order)}
    text = WIDGET_ID.sub(lambda m: ids.get(m.group(0), m.group(0)), text)
    return json.dumps(json.loads(text), indent=1, sort_keys=True, ensure_ascii=False)


def build(path: Path) -> float:
    """Execute one jupytext source and store it as an executed .ipynb; return seconds taken."""
    nb = jupytext.read(path)
    nb.metadata.setdefault("jupytext", {})["formats"] = "ipynb,py:percent"
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nb.metadata["rise"] = dict(RISE)  # every chapter presents as a slideshow (scripts/slides.py)
    start = time.perf_counter()
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}},
                   record_timing=False).execute()
    seconds = time.perf_counter() - start
    strip_volatile(nb)
    drop_default_widget_state(nb)
    drop_widget_sources(nb)
    stable_trace_uids(nb)
    # Keep cell ids stable across rebuilds: derive them from the cell position.
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i:03d}"
    path.with_suffix(".ipynb").write_text(stable_widget_ids(nb) + "\n", encoding="utf-8")
    return seconds


def main(argv: list[str]) -> int:
    for path in sources(argv):
        seconds = build(path)
        print(f"{path.relative_to(ROOT)}: executed in {seconds:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
