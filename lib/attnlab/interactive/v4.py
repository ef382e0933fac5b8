"""Chapter 20's explorer: context length, model (V4-Flash / V4-Pro) and byte format -> the cache of one
sequence, layer type by layer type, beside DeepSeek-V3.2's at the same context.

:func:`cache_rows` computes the table from :mod:`attnlab.costs` (``v4_layer_cache_entries``, the byte layouts
of ``V4_CACHE_FORMATS``, ``v32_cache_bytes``); its totals are ``costs.v4_vs_v32_cache``'s. :func:`explorer_html`
renders them (a pure function, so tests read what the widget shows without a browser); the callbacks only set
the HTML widget's value.
"""

from __future__ import annotations

import html

import ipywidgets as widgets

from attnlab import costs
from attnlab._validate import check_choice
from attnlab.plots import COLORS
from attnlab.sizing import format_bytes
from attnlab.widgets import row

#: Context lengths the explorer offers: 4K to 1M tokens, powers of two.
CONTEXTS: tuple[int, ...] = tuple(2**p for p in range(12, 21))
#: The two released models, by :data:`attnlab.costs.V4_MODELS` key.
MODELS: dict[str, str] = {"V4-Flash": "deepseek-v4-flash", "V4-Pro": "deepseek-v4-pro"}
#: The byte accountings, by :data:`attnlab.costs.V4_CACHE_FORMATS` key.
FORMATS: dict[str, str] = {"FP8 / FP4 (DeepSeek's layouts)": "fp8", "bfloat16 everywhere": "bf16"}
#: Colour of each layer type's bar (V3.2's in the cache colour).
TYPE_COLORS: dict[str, str] = {"sliding": COLORS["muted"], "csa": COLORS["index"], "hca": COLORS["latent"],
                               "v3.2": COLORS["cache"]}
TYPE_LABELS: dict[str, str] = {"sliding": "sliding window only", "csa": "CSA (m = 4, top-k)", "hca": "HCA (m = 128)"}


def context_label(context: int) -> str:
    """A context length as the slider shows it: 131072 -> "128K", 1048576 -> "1M"."""
    return f"{context // 2**20}M" if context >= 2**20 else f"{context // 2**10}K"


def cache_rows(model: str, context: int, formats: str) -> list[dict[str, object]]:
    """One row per V4 layer type of ``model`` (a :data:`attnlab.costs.V4_MODELS` key) at ``context`` tokens in
    ``formats`` ("fp8" or "bf16"), then V3.2's row. Each row: "kind", "label", "layers", "window" (raw tokens
    per layer), "entries" and "index_keys" (per layer), "bytes_per_layer" = (window + entries) x entry bytes +
    index keys x key bytes, and "bytes" (all layers of the kind). V3.2: context MLA entries and index keys in
    each of its 61 layers."""
    check_choice("model", model, tuple(costs.V4_MODELS))
    check_choice("context", context, CONTEXTS)
    check_choice("formats", formats, tuple(costs.V4_CACHE_FORMATS))
    spec, layouts = costs.V4_MODELS[model], costs.V4_CACHE_FORMATS[formats]
    entry, key = layouts["v4_entry"].bytes, layouts["v4_index_key"].bytes
    rate = {"sliding": None, "csa": 4, "hca": 128}
    rows = []
    for kind, n_layers in spec.layer_counts().items():
        if n_layers == 0:
            continue
        held = costs.v4_layer_cache_entries(kind, context, rate[kind], spec.window)
        per_layer = (held["window"] + held["entries"]) * entry + held["index_keys"] * key
        rows.append({"kind": kind, "label": TYPE_LABELS[kind], "layers": n_layers, **held,
                     "bytes_per_layer": per_layer, "bytes": n_layers * per_layer})
    v32 = costs.v32_cache_bytes(context, layouts["v32_entry"], layouts["v32_index_key"])
    rows.append({"kind": "v3.2", "label": "DeepSeek-V3.2: MLA + DSA index key", "layers": costs.DEEPSEEK_V32_LAYERS,
                 "window": 0, "entries": context, "index_keys": context,
                 "bytes_per_layer": v32 // costs.DEEPSEEK_V32_LAYERS, "bytes": v32})
    return rows


def explorer_html(model: str, context: int, formats: str) -> str:
    """The explorer's table for these choices: per layer type the layers, what one layer holds, its bytes and
    those of all its layers with a bar against V3.2's; then the totals and V4 / V3.2."""
    rows = cache_rows(model, context, formats)
    v32 = rows[-1]["bytes"]
    v4 = sum(r["bytes"] for r in rows[:-1])
    body = []
    for r in rows:
        width = 240 * r["bytes"] / v32
        bar = (f'<div style="background:{TYPE_COLORS[r["kind"]]};height:10px;width:{max(width, 1):.0f}px"></div>')
        held = (f"{r['window']:,} raw + {r['entries']:,} entries" + (f" + {r['index_keys']:,} index keys"
                                                                    if r["index_keys"] else "")
                if r["kind"] != "v3.2" else f"{r['entries']:,} MLA entries + {r['index_keys']:,} index keys")
        body.append(f"<tr><td style='text-align:left'>{html.escape(r['label'])}</td><td>{r['layers']}</td>"
                    f"<td>{held}</td><td>{format_bytes(r['bytes_per_layer'])}</td>"
                    f"<td>{format_bytes(r['bytes'])} {bar}</td></tr>")
    head = ("<tr><th style='text-align:left'>layers</th><th>how many</th><th>one layer holds</th>"
            "<th>bytes per layer</th><th>bytes, all of them</th></tr>")
    name = costs.V4_MODELS[model].name
    fmt = next(label for label, key in FORMATS.items() if key == formats)
    caption = (f"One sequence of {context:,} tokens ({context_label(context)}), {html.escape(fmt)}: {name} holds "
               f"<b>{format_bytes(v4)}</b>, DeepSeek-V3.2 <b>{format_bytes(v32)}</b>: "
               f"<b>{100 * v4 / v32:.1f}%</b> of V3.2's cache ({v32 / v4:.1f}× smaller)")
    return (f'<table style="border-collapse:collapse;text-align:right"><caption style="text-align:left">{caption}'
            f"</caption>{head}{''.join(body)}</table>")


class V4CacheExplorer(widgets.VBox):
    """The container :func:`v4_cache_explorer` returns: ``.model`` (ToggleButtons of :data:`MODELS`),
    ``.formats`` (ToggleButtons of :data:`FORMATS`), ``.context`` (SelectionSlider of :data:`CONTEXTS`) and
    ``.table`` (HTML)."""

    def __init__(self, model: str = "deepseek-v4-pro", context: int = 2**20, formats: str = "fp8") -> None:
        check_choice("model", model, tuple(MODELS.values()))
        check_choice("context", context, CONTEXTS)
        check_choice("formats", formats, tuple(FORMATS.values()))
        self.model = widgets.ToggleButtons(options=list(MODELS.items()), value=model, description="model")
        self.formats = widgets.ToggleButtons(options=list(FORMATS.items()), value=formats, description="bytes",
                                             style={"button_width": "210px"})
        self.context = widgets.SelectionSlider(options=[(context_label(c), c) for c in CONTEXTS], value=context,
                                               description="context")
        self.table = widgets.HTML()
        for control in (self.model, self.formats, self.context):
            control.observe(self._refresh, names="value")
        super().__init__([row(self.model, self.context), self.formats, self.table])
        self._refresh()

    def _refresh(self, change: dict | None = None) -> None:
        # A callback: it only sets the HTML widget's value.
        self.table.value = explorer_html(self.model.value, self.context.value, self.formats.value)

    def __repr__(self) -> str:
        # A short, deterministic text form (the notebook stores it as the cell's plain-text output).
        return (f"V4CacheExplorer(model={self.model.value!r}, context={self.context.value}, "
                f"formats={self.formats.value!r})")


def v4_cache_explorer(model: str = "deepseek-v4-pro", context: int = 2**20, formats: str = "fp8") -> V4CacheExplorer:
    """Return chapter 20's widget: choose the context, V4-Flash or V4-Pro, and the byte format, and read the
    cache of each layer type beside DeepSeek-V3.2's (:func:`cache_rows`)."""
    return V4CacheExplorer(model, context, formats)
