"""The chapters as slides: RISE settings for JupyterLab, and static HTML slides that work offline.

In JupyterLab (RISE) every chapter is a slideshow: open it, Run All, then Alt+R (or the slideshow
button). Each cell's ``slideshow`` metadata lives in the chapter's ``.py`` source (the
``slideshow={"slide_type": ...}`` on its ``# %%`` line); :data:`RISE` is the notebook-level setting the
notebook build adds to every chapter.

``python scripts/slides.py [notebooks/NN_topic.ipynb ...] [--out build/slides]`` (``./course slides``)
exports static reveal.js slides from the stored, executed notebooks. Nothing in them is fetched from the
internet: reveal.js, MathJax 2, require.js, jQuery and the Jupyter widget renderer are copied from
``slides/node_modules`` (``npm ci --prefix slides``) into ``<out>/vendor``, plotly.js from the installed
plotly package (:data:`PLOTLY_JS`), and widgets show the state they were saved with. The plotly figures
(:func:`attnlab.figures.show`) draw themselves with that plotly.js; a live widget's chart (a plotly
FigureWidget, whose JavaScript the stored notebooks leave out) is drawn from its saved figure by
:func:`static_figure_widgets`. Open ``<out>/index.html`` in a browser; rendered animations (``./course
animations``) are copied next to it so the videos play too.
"""

from __future__ import annotations

import argparse
import html
import json
import re
import shutil
import sys
from pathlib import Path

import nbformat
import plotly
from nbconvert import SlidesExporter
from traitlets.config import Config

from attnlab.chapters import CHAPTERS

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
NODE_MODULES = ROOT / "slides" / "node_modules"
TEMPLATES = ROOT / "slides" / "template"
DEFAULT_OUT = ROOT / "build" / "slides"

#: Notebook metadata for RISE: one theme for RISE and the static export ("white": its fonts ship with
#: reveal.js), no transition (crisp on a projector, nothing to wait for), long slides scroll.
RISE = {"theme": "white", "transition": "none", "scroll": True, "start_slideshow_at": "beginning"}

#: What ``<out>/vendor`` holds: (path under slides/node_modules, path under vendor/). MathJax 2 only
#: with what the TeX-AMS_CHTML-full configuration loads.
VENDOR = (
    ("reveal.js/dist/reset.css", "reveal.js/dist/reset.css"),
    ("reveal.js/dist/reveal.css", "reveal.js/dist/reveal.css"),
    ("reveal.js/dist/reveal.js", "reveal.js/dist/reveal.js"),
    (f"reveal.js/dist/theme/{RISE['theme']}.css", f"reveal.js/dist/theme/{RISE['theme']}.css"),
    ("reveal.js/dist/theme/fonts/source-sans-pro", "reveal.js/dist/theme/fonts/source-sans-pro"),
    ("reveal.js/plugin/notes", "reveal.js/plugin/notes"),
    ("requirejs/require.js", "require.js"),
    ("jquery/dist/jquery.min.js", "jquery.min.js"),
    ("@jupyter-widgets/html-manager/dist", "html-manager"),
    ("mathjax/MathJax.js", "mathjax/MathJax.js"),
    ("mathjax/config/TeX-AMS_CHTML-full.js", "mathjax/config/TeX-AMS_CHTML-full.js"),
    ("mathjax/config/Safe.js", "mathjax/config/Safe.js"),
    ("mathjax/extensions", "mathjax/extensions"),
    ("mathjax/jax/input/TeX", "mathjax/jax/input/TeX"),
    ("mathjax/jax/output/CommonHTML", "mathjax/jax/output/CommonHTML"),
    ("mathjax/jax/element", "mathjax/jax/element"),
    ("mathjax/localization/en", "mathjax/localization/en"),
    ("mathjax/fonts/HTML-CSS/TeX/woff", "mathjax/fonts/HTML-CSS/TeX/woff"),
)
#: plotly.js as the installed plotly package ships it (the version its figures' JSON is written for); the
#: slides load it as ``vendor/plotly.min.js``, before require.js, so that it defines ``window.Plotly``.
PLOTLY_JS = Path(plotly.__file__).resolve().parent / "package_data" / "plotly.min.js"

#: Source maps and the widget renderer's non-AMD bundle: the slides load neither.
SKIP = shutil.ignore_patterns("*.map", "embed.js", "embed.js.LICENSE.txt")

#: What a browser fetches from another host as it loads a page: a script, image, frame or media ``src``,
#: a ``<link href>``, a CSS ``@import`` or ``url()``. (A link the reader may click, ``<a href>``, is fine.)
REMOTE = re.compile(
    r"""<(?:script|img|iframe|video|audio|source|embed|track)\b[^>]*?\bsrc\s*=\s*["']?(?:https?:)?//"""
    r"""|<link\b[^>]*?\bhref\s*=\s*["']?(?:https?:)?//"""
    r"""|@import\s+(?:url\()?\s*["']?(?:https?:)?//|\burl\(\s*["']?(?:https?:)?//""", re.I)


def exporter() -> SlidesExporter:
    """nbconvert's reveal.js exporter with every script and style sheet pointed at ``vendor/``."""
    c = Config()
    c.SlidesExporter.extra_template_basedirs = [str(TEMPLATES)]
    c.SlidesExporter.template_name = "reveal_offline"
    c.SlidesExporter.reveal_url_prefix = "vendor/reveal.js"
    c.SlidesExporter.reveal_theme = RISE["theme"]
    c.SlidesExporter.reveal_transition = RISE["transition"]
    c.SlidesExporter.reveal_scroll = RISE["scroll"]
    c.SlidesExporter.require_js_url = "vendor/require.js"
    c.SlidesExporter.jquery_url = "vendor/jquery.min.js"
    c.SlidesExporter.mathjax_url = "vendor/mathjax/MathJax.js?config=TeX-AMS_CHTML-full,Safe"
    c.SlidesExporter.widget_renderer_url = "vendor/html-manager/embed-amd.js"
    c.SlidesExporter.font_awesome_url = ""
    # a cell that only renders computed numbers into a sentence (tagged "hide-input", its source collapsed in
    # JupyterLab) shows its sentence on the slide, not its code
    c.TagRemovePreprocessor.enabled = True
    c.TagRemovePreprocessor.remove_input_tags = ("hide-input",)
    return SlidesExporter(config=c)


def copy_vendor(out: Path) -> None:
    """Copy the local reveal.js, MathJax, require.js, jQuery and widget renderer into ``out/vendor``."""
    missing = [src for src, _ in VENDOR if not (NODE_MODULES / src).exists()]
    if missing:
        raise FileNotFoundError(f"{NODE_MODULES} lacks {missing}: run npm ci --prefix slides (./course slides does)")
    vendor = out / "vendor"
    shutil.rmtree(vendor, ignore_errors=True)
    for src, dst in VENDOR:
        source, target = NODE_MODULES / src, vendor / dst
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=SKIP)
        else:
            shutil.copy2(source, target)
    shutil.copy2(PLOTLY_JS, vendor / "plotly.min.js")


def static_figure_widgets(nb: nbformat.NotebookNode) -> int:
    """Turn each saved plotly FigureWidget (an anywidget model, which the static widget renderer cannot
    load) into an HTML widget holding its saved figure, ``<div class="attnlab-live-figure" data-figure=
    "...">``, which the slides' script draws with plotly.js. Returns how many were turned."""
    state = nb.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {}).get("state", {})
    turned = 0
    for model_id, model in state.items():
        saved = model.get("state", {})
        if saved.get("_model_module") != "anywidget" or "_widget_data" not in saved:
            continue
        figure = {"data": saved["_widget_data"], "layout": saved.get("_widget_layout", {})}
        value = (f'<div class="attnlab-live-figure" data-figure="{html.escape(json.dumps(figure), quote=True)}">'
                 f"</div>")
        controls = {"_model_module": "@jupyter-widgets/controls", "_model_module_version": "2.0.0",
                    "_view_module": "@jupyter-widgets/controls", "_view_module_version": "2.0.0"}
        state[model_id] = {"model_module": "@jupyter-widgets/controls", "model_module_version": "2.0.0",
                           "model_name": "HTMLModel",
                           "state": {**controls, "_model_name": "HTMLModel", "_view_name": "HTMLView",
                                     "value": value}}
        turned += 1
    return turned


def remote_references(text: str) -> list[str]:
    """Every reference in ``text`` (HTML or CSS) that a browser would fetch from another host."""
    return [text[m.start():m.end() + 40] for m in REMOTE.finditer(text)]


def export(notebook: Path, out: Path) -> Path:
    """Write ``out/<name>.slides.html`` for one stored notebook; raise ``ValueError`` if it would fetch
    anything from the internet."""
    nb = nbformat.read(notebook, as_version=4)
    static_figure_widgets(nb)
    body, _ = exporter().from_notebook_node(nb, resources={"metadata": {"name": notebook.stem}})
    remote = remote_references(body)
    if remote:
        raise ValueError(f"{notebook.name}: the slides would load {remote[:3]} from the internet")
    target = out / f"{notebook.stem}.slides.html"
    target.write_text(body, encoding="utf-8")
    return target


def chapter_title(notebook: Path) -> str:
    """The chapter's title: the first heading of its first cell."""
    first = nbformat.read(notebook, as_version=4).cells[0].source
    return next(line.lstrip("# ").strip() for line in first.splitlines() if line.startswith("# "))


def write_index(pages: list[tuple[Path, str]], out: Path) -> Path:
    """``out/index.html``: one link per exported chapter."""
    items = "\n".join(f'<li><a href="{html.escape(p.name)}">{html.escape(title)}</a></li>' for p, title in pages)
    index = out / "index.html"
    index.write_text(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>How attention got efficient: "
        "slides</title>\n<style>body{font-family:'Source Sans Pro',Helvetica,sans-serif;max-width:46em;"
        "margin:3em auto;line-height:1.6}a{color:#2a76dd}</style></head><body>\n"
        "<h1>How attention got efficient: slides</h1>\n<p>Arrow keys move between slides (down for the "
        "steps inside a section), Esc shows them all, S opens the speaker view. Widgets show the values "
        "they were saved with; to move them, present from JupyterLab instead.</p>\n"
        f"<ol start=\"0\">\n{items}\n</ol>\n</body></html>\n", encoding="utf-8")
    return index


def copy_videos(out: Path) -> int:
    """Copy rendered animations (``media/videos``) to where the slides' relative video links point
    (``../media/videos`` from ``out``); return how many."""
    videos = sorted((ROOT / "media" / "videos").glob("*.mp4"))
    if videos:
        target = out.parent / "media" / "videos"
        target.mkdir(parents=True, exist_ok=True)
        for video in videos:
            shutil.copy2(video, target / video.name)
    return len(videos)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="chapters to export (default: all)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default: {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    notebooks = [p.with_suffix(".ipynb") for p in args.notebooks] or [NOTEBOOKS / c.notebook for c in CHAPTERS]
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    copy_vendor(out)
    pages = [(export(nb, out), chapter_title(nb)) for nb in notebooks]
    index = write_index(pages, out)
    videos = copy_videos(out)
    for page, _ in pages:
        print(page.relative_to(out.parent))
    print(f"{len(pages)} chapters, {videos} videos; open {index}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
