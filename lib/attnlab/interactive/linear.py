"""Chapter 18's explorer: a hybrid's context, its linear-to-full ratio and the model -> state and cache bytes.

:func:`hybrid_explorer` shows, for a published hybrid of :data:`attnlab.costs.HYBRID_MODELS` (Qwen3-Next, Kimi
Linear), the bytes one sequence holds at the chosen context: the full layers' growing cache, the linear layers'
fixed state, their total, and the same stack with every layer full, for the published layer pattern or the
rule "full iff (i + 1) % (r + 1) == 0" with r linear layers per full one (:func:`attnlab.costs.hybrid_full_layers`).
:func:`explorer_html` renders it as an HTML table (a pure function, so tests read what the widget shows
without a browser); the callbacks only set the HTML widget's value.
"""

from __future__ import annotations

import html

import ipywidgets as widgets

from attnlab import costs
from attnlab._validate import check_choice
from attnlab.plots import COLORS
from attnlab.widgets import context_options, row

#: Linear layers per full layer the explorer offers: None is the model's published pattern, 0 every layer full,
#: 10**6 no full layer at all.
RATIOS: tuple[tuple[str, int | None], ...] = (("published", None), ("all full", 0), ("1:1", 1), ("3:1", 3),
                                               ("7:1", 7), ("all linear", 10**6))
#: Contexts the slider offers: 1K to 1M tokens.
CONTEXTS: tuple[tuple[str, int], ...] = context_options(2**20)


def pattern(model: str, ratio: int | None) -> tuple[int, ...]:
    """The full layers of ``model`` under ``ratio`` (a value of :data:`RATIOS`)."""
    check_choice("model", model, tuple(costs.HYBRID_MODELS))
    check_choice("ratio", ratio, tuple(r for _, r in RATIOS))
    m = costs.HYBRID_MODELS[model]
    return m.full_layers if ratio is None else costs.hybrid_full_layers(m.n_layers, ratio)


def explorer_html(model: str, context: int, ratio: int | None) -> str:
    """The explorer's table: layers of each kind, the full layers' cache, the linear layers' state, the total,
    and the all-full stack at ``context`` tokens; GiB, with a bar each, scaled to the all-full stack."""
    check_choice("context", context, tuple(n for _, n in CONTEXTS))
    full_layers = pattern(model, ratio)
    m = costs.HYBRID_MODELS[model]
    parts = costs.hybrid_cache_bytes(model, context, full_layers=full_layers)
    n_full = len(full_layers)
    scale = max(parts["all_full"], parts["total"], 1)

    def bar(value: int, color: str) -> str:
        return f'<div style="background:{color};height:10px;width:{160 * value / scale:.0f}px"></div>'

    gib = 2**30
    full_kind = "GQA" if m.full_kind == "gqa" else "MLA"
    linear_kind = "Gated DeltaNet" if m.linear_kind == "gated_deltanet" else "KDA"
    rows = [
        (f"{n_full} full ({full_kind}) layers: cache, grows with the context", parts["full"], COLORS["cache"]),
        (f"{m.n_layers - n_full} linear ({linear_kind}) layers: state, fixed", parts["linear"], COLORS["key"]),
        ("total, one sequence", parts["total"], COLORS["query"]),
        (f"all {m.n_layers} layers full", parts["all_full"], COLORS["muted"]),
    ]
    body = "".join(f"<tr><td style='text-align:left'>{html.escape(label)}</td><td>{value / gib:,.3f}</td>"
                   f"<td>{bar(value, color)}</td></tr>" for label, value, color in rows)
    beyond = (f" (beyond its longest context, {m.max_context:,} tokens)" if context > m.max_context else "")
    caption = (f"{html.escape(m.name)} at {context:,} tokens{beyond}; full layers at "
               f"{', '.join(map(str, full_layers)) if full_layers else 'none'}; cache in bfloat16, state in float32")
    return (f'<table style="border-collapse:collapse;text-align:right"><caption style="text-align:left">{caption}'
            f"</caption><tr><th style='text-align:left'>what</th><th>GiB</th><th></th></tr>{body}</table>")


class HybridExplorer(widgets.VBox):
    """The container :func:`hybrid_explorer` returns: ``.model`` (Dropdown of the hybrids), ``.context``
    (SelectionSlider of :data:`CONTEXTS`), ``.ratio`` (ToggleButtons of :data:`RATIOS`) and ``.table`` (HTML)."""

    def __init__(self, model: str = "qwen3-next-80b-a3b", context: int = 2**17, ratio: int | None = None) -> None:
        check_choice("model", model, tuple(costs.HYBRID_MODELS))
        check_choice("context", context, tuple(n for _, n in CONTEXTS))
        check_choice("ratio", ratio, tuple(r for _, r in RATIOS))
        self.model = widgets.Dropdown(options=[(m.name, key) for key, m in costs.HYBRID_MODELS.items()], value=model,
                                      description="model")
        self.context = widgets.SelectionSlider(options=CONTEXTS, value=context, description="context")
        self.ratio = widgets.ToggleButtons(options=RATIOS, value=ratio, description="linear:full",
                                           style={"button_width": "72px"})
        self.table = widgets.HTML()
        for control in (self.model, self.context, self.ratio):
            control.observe(self._refresh, names="value")
        super().__init__([row(self.model, self.context), self.ratio, self.table])
        self._refresh()

    def _refresh(self, change: dict | None = None) -> None:
        # A callback: it only sets the HTML widget's value.
        self.table.value = explorer_html(self.model.value, self.context.value, self.ratio.value)

    def __repr__(self) -> str:
        # A short, deterministic text form (the notebook stores it as the cell's plain-text output).
        return f"HybridExplorer(model={self.model.value!r}, context={self.context.value}, ratio={self.ratio.value})"


def hybrid_explorer(model: str = "qwen3-next-80b-a3b", context: int = 2**17,
                    ratio: int | None = None) -> HybridExplorer:
    """Return chapter 18's widget: choose the hybrid, the context and the linear-to-full ratio, and read the
    full layers' cache, the linear layers' state and the total (:func:`attnlab.costs.hybrid_cache_bytes`)."""
    return HybridExplorer(model, context, ratio)
