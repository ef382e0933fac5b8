"""Chapter 13's real-model cache explorer: every model in :data:`attnlab.sizing.MODELS`, its published
attention scheme against the what-if schemes, cache sizes at several contexts and the tokens that fit
beside the weights on one GPU. Every number comes from :mod:`attnlab.sizing`; rendering is pure."""

from __future__ import annotations

import html

import ipywidgets as widgets
import plotly.graph_objects as go
import torch

from attnlab import sizing
from attnlab._validate import check_positive_int
from attnlab.figures import Bar, LiveFigure, Segment, hbar_figure
from attnlab.interactive.svg import html_table
from attnlab.plots import SCHEME_COLORS
from attnlab.schemes import get_scheme
from attnlab.sizing import MODELS, SCHEMES, format_bytes
from attnlab.widgets import CONTEXT_OPTIONS, gqa_start, row


def model_table(context_lens: tuple[int, ...] = (4096, 32768, 131072), gpu_gib: float = 80,
                dtype: torch.dtype | str = torch.bfloat16) -> list[dict]:
    """One row per (model in MODELS, scheme in SCHEMES): the published scheme and the what-ifs.

    Each row: model (key), name, scheme, published (bool), n_kv_heads (for GQA: the model's own, or for an
    MLA model the what-if n_h / 8 of :func:`attnlab.widgets.gqa_start`), bytes_per_token, cache_bytes
    ({context: bytes}), weight_bytes (bf16), weights_fit (bool), tokens_fit (tokens of cache beside the
    bf16 weights in ``gpu_gib`` GiB; 0 when the weights alone exceed it), note.
    """
    for n in context_lens:
        check_positive_int("context_lens", n)
    rows = []
    for key, spec in MODELS.items():
        weights = sizing.weight_bytes(spec, torch.bfloat16)
        fit = weights <= int(float(gpu_gib) * sizing.GIB)
        for scheme in SCHEMES:
            n_kv = gqa_start(spec) if scheme == "gqa" else None
            per = sizing.cache_bytes_per_token(spec, dtype, scheme, n_kv)
            rows.append({
                "model": key, "name": spec.name, "scheme": scheme, "published": scheme == spec.attention,
                "n_kv_heads": n_kv, "bytes_per_token": per,
                "cache_bytes": {n: sizing.kv_cache_bytes(spec, n, 1, dtype, scheme, n_kv) for n in context_lens},
                "weight_bytes": weights, "weights_fit": fit,
                "tokens_fit": sizing.tokens_that_fit(spec, gpu_gib, dtype, scheme, n_kv, weights_dtype=torch.bfloat16),
                "note": "" if fit else f"weights alone exceed {gpu_gib:g} GiB",
            })
    return rows


def _label(row: dict) -> str:
    name = get_scheme(row["scheme"]).label
    if row["scheme"] == "gqa":
        name += f" ({row['n_kv_heads']} KV heads)"
    return name + (" — published" if row["published"] else " — what-if")


def model_rows(model: str, seq_len: int, gpu_gib: float, dtype: torch.dtype | str) -> list[dict]:
    """The four rows of :func:`model_table` for one model at one context length."""
    if model not in MODELS:
        raise ValueError(f"model={model!r} must be one of {sorted(MODELS)}")
    return [r for r in model_table((seq_len,), gpu_gib, dtype) if r["model"] == model]


def table_html(model: str, seq_len: int, gpu_gib: float, dtype: torch.dtype | str) -> str:
    """An HTML table: per scheme, bytes per token, the cache at ``seq_len`` and the tokens that fit. Pure."""
    rows = model_rows(model, seq_len, gpu_gib, dtype)
    titles = ("scheme", "bytes per token", f"cache at {seq_len:,} tokens",
              f"tokens beside the weights ({gpu_gib:g} GiB)")
    head = "".join(f'<th style="padding:2px 10px;text-align:left">{h}</th>' for h in titles)
    body = "".join(
        f'<tr><td style="padding:2px 10px">{html.escape(_label(r))}</td>'
        f'<td style="padding:2px 10px">{r["bytes_per_token"]:,}</td>'
        f'<td style="padding:2px 10px">{format_bytes(r["cache_bytes"][seq_len])}</td>'
        f'<td style="padding:2px 10px">{r["tokens_fit"]:,}{" (" + html.escape(r["note"]) + ")" if r["note"] else ""}'
        f'</td></tr>' for r in rows)
    summary = html_table([("model", MODELS[model].name),
                          ("weights (bf16)", format_bytes(rows[0]["weight_bytes"])),
                          ("source", MODELS[model].source)])
    return (summary + f'<table style="border-collapse:collapse;font-size:14px;font-variant-numeric:tabular-nums">'
            f"<tr>{head}</tr>{body}</table>")


def chart_figure(model: str, seq_len: int, gpu_gib: float, dtype: torch.dtype | str) -> go.Figure:
    """The cache at ``seq_len`` for each scheme of :func:`model_rows` as horizontal bars on a linear axis
    (the published scheme outlined, the what-ifs lighter); hover gives the exact bytes. Pure."""
    rows = model_rows(model, seq_len, gpu_gib, dtype)
    bars = [Bar(_label(r), (Segment(f"cache at {seq_len:,} tokens", r["cache_bytes"][seq_len],
                                    SCHEME_COLORS[r["scheme"]]),),
                format_bytes(r["cache_bytes"][seq_len]), selected=r["published"]) for r in rows]
    return hbar_figure(bars, f"{MODELS[model].name}: KV cache at {seq_len:,} tokens", "bytes",
                       format_value=lambda v: f"{v:,} B ({format_bytes(v)})")


class ModelCacheExplorer(widgets.VBox):
    """The container :func:`model_cache_explorer` returns: ``.model`` (Dropdown over MODELS), ``.seq_len``
    (SelectionSlider over :data:`attnlab.widgets.CONTEXT_OPTIONS`), ``.gpu_gib`` (BoundedFloatText),
    ``.dtype`` (Dropdown over :data:`attnlab.sizing.DTYPES_BY_NAME`), the ``.table`` (HTML) and the ``.chart``
    (:class:`attnlab.figures.LiveFigure`)."""

    def __init__(self, model: str = "deepseek-v3", seq_len: int = 131072, gpu_gib: float = 80.0) -> None:
        if model not in MODELS:
            raise ValueError(f"model={model!r} must be one of {sorted(MODELS)}")
        if seq_len not in [n for _, n in CONTEXT_OPTIONS]:
            raise ValueError(f"seq_len={seq_len!r} must be one of {[n for _, n in CONTEXT_OPTIONS]}")
        style = {"description_width": "120px"}
        self.model = widgets.Dropdown(options=[(m.name, k) for k, m in MODELS.items()], value=model,
                                      description="model", style=style)
        self.seq_len = widgets.SelectionSlider(options=list(CONTEXT_OPTIONS), value=seq_len, description="context",
                                               continuous_update=False, style=style)
        self.gpu_gib = widgets.BoundedFloatText(value=float(gpu_gib), min=1.0, max=100_000.0, step=8.0,
                                                description="GPU memory (GiB)", style=style)
        self.dtype = widgets.Dropdown(options=list(sizing.DTYPES_BY_NAME.items()), value=torch.bfloat16,
                                      description="cache dtype", style=style)
        self.table = widgets.HTML()
        self.chart = LiveFigure(chart_figure(model, seq_len, float(gpu_gib), torch.bfloat16))
        for control in (self.model, self.seq_len, self.gpu_gib, self.dtype):
            control.observe(self._refresh, names="value")
        super().__init__([row(widgets.VBox([self.model, self.seq_len]),
                                        widgets.VBox([self.gpu_gib, self.dtype])), self.table, self.chart])
        self._refresh()

    def _refresh(self, change: dict | None = None) -> None:
        # A callback: it only sets the widgets' values (the chart's in place).
        args = (self.model.value, self.seq_len.value, float(self.gpu_gib.value), self.dtype.value)
        self.table.value = table_html(*args)
        self.chart.show_figure(chart_figure(*args))

    def __repr__(self) -> str:
        # A short, deterministic text form (the notebook stores it as the cell's plain-text output).
        return f"ModelCacheExplorer(model={self.model.value!r}, seq_len={self.seq_len.value})"


def model_cache_explorer(model: str = "deepseek-v3", seq_len: int = 131072,
                         gpu_gib: float = 80.0) -> ModelCacheExplorer:
    """Return chapter 13's widget: pick a model, a context, the GPU memory and the cache dtype, and read the
    published scheme against MHA/GQA/MQA/MLA what-ifs as a table and a bar chart."""
    return ModelCacheExplorer(model, seq_len, gpu_gib)
