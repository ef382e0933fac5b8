"""Chapter 13's real-model cache explorer: every model in :data:`attnlab.sizing.MODELS`, its published
attention scheme against the what-if schemes, cache sizes at several contexts and the tokens that fit
beside the weights on one GPU. Every number comes from :mod:`attnlab.sizing`; rendering is pure."""

from __future__ import annotations

import html
import math

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
    MLA model the what-if n_h / 8 of :func:`attnlab.widgets.gqa_start`), bytes_per_token (for a model with
    sliding windows: inside the window), cache_bytes ({context: bytes}, layer by layer, so a windowed cache
    flattens past its window), beyond ({context: the context is longer than the published max_context}),
    weight_bytes (bf16), weights_fit (bool), tokens_fit (tokens of cache beside the bf16 weights in
    ``gpu_gib`` GiB; 0 when the weights alone exceed it; ``math.inf`` when the cache stops growing), note.
    A DeepSeek-V4 model's published row has scheme "v4" (its window and compressed entries; its four Table 1
    rows are what-ifs with every layer full) and, as bytes_per_token, the average growth past the window
    (:func:`attnlab.sizing.growth_bytes_per_token`, a float).
    """
    for n in context_lens:
        check_positive_int("context_lens", n)
    rows = []
    for key, spec in MODELS.items():
        weights = sizing.weight_bytes(spec, torch.bfloat16)
        fit = weights <= int(float(gpu_gib) * sizing.GIB)
        for scheme in ((None,) if spec.v4 is not None else ()) + SCHEMES:
            n_kv = gqa_start(spec) if scheme == "gqa" else None
            per = (sizing.growth_bytes_per_token(spec, dtype) if scheme is None
                   else sizing.cache_bytes_per_token(spec, dtype, scheme, n_kv))
            rows.append({
                "model": key, "name": spec.name, "scheme": scheme or "v4",
                "published": scheme is None or (scheme == spec.attention and spec.v4 is None),
                "n_kv_heads": n_kv, "bytes_per_token": per,
                "cache_bytes": {n: sizing.kv_cache_bytes(spec, n, 1, dtype, scheme, n_kv) for n in context_lens},
                "beyond": {n: 0 < spec.max_context < n for n in context_lens},
                "weight_bytes": weights, "weights_fit": fit,
                "tokens_fit": sizing.tokens_that_fit(spec, gpu_gib, dtype, scheme, n_kv, weights_dtype=torch.bfloat16),
                "note": "" if fit else f"weights alone exceed {gpu_gib:g} GiB",
            })
    return rows


def _label(row: dict) -> str:
    if row["scheme"] == "v4":
        return "DeepSeek-V4 (CSA + HCA) — published"
    name = get_scheme(sizing.cache_scheme(row["model"], row["scheme"])).label  # DeepSeek-V3.2 as published: DSA
    if row["scheme"] == "gqa":
        name += f" ({row['n_kv_heads']} KV heads)"
    return name + (" — published" if row["published"] else " — what-if")


def model_rows(model: str, seq_len: int, gpu_gib: float, dtype: torch.dtype | str) -> list[dict]:
    """The four rows of :func:`model_table` for one model at one context length."""
    if model not in MODELS:
        raise ValueError(f"model={model!r} must be one of {sorted(MODELS)}")
    return [r for r in model_table((seq_len,), gpu_gib, dtype) if r["model"] == model]


def context_label(n_tokens: int) -> str:
    """A context as the course writes it: 8192 -> "8K", 131072 -> "128K", 163840 -> "160K", 1000 -> "1,000"."""
    check_positive_int("n_tokens", n_tokens)
    return f"{n_tokens // 1024:,}K" if n_tokens % 1024 == 0 else f"{n_tokens:,}"


def beyond_note(model: str, n_tokens: int) -> str:
    """" (beyond its 8K context)" when ``n_tokens`` is longer than ``model``'s published max_context, else ""."""
    spec = sizing.get_model(model)
    check_positive_int("n_tokens", n_tokens)
    return f" (beyond its {context_label(spec.max_context)} context)" if 0 < spec.max_context < n_tokens else ""


def fit_text(tokens: int | float, model: str) -> str:
    """Tokens that fit as text: "1,222,383", or for a cache that stops growing "any context"."""
    if tokens == math.inf:
        return f"any context (the cache stops growing at {sizing.get_model(model).sliding_window:,} tokens)"
    return f"{tokens:,}"


def table_html(model: str, seq_len: int, gpu_gib: float, dtype: torch.dtype | str) -> str:
    """An HTML table: per scheme, bytes per token, the cache at ``seq_len`` and the tokens that fit; a context
    beyond the model's published one is marked, and a windowed model's layers are named. Pure."""
    rows = model_rows(model, seq_len, gpu_gib, dtype)
    spec = MODELS[model]
    per_token = f"bytes per token{' (inside the window)' if spec.windowed else ''}"
    if spec.v4 is not None:
        per_token += " (V4: its average growth past the window)"
    titles = ("scheme", per_token, f"cache at {seq_len:,} tokens{beyond_note(model, seq_len)}",
              f"tokens beside the weights ({gpu_gib:g} GiB)")
    head = "".join(f'<th style="padding:2px 10px;text-align:left">{h}</th>' for h in titles)
    body = "".join(
        f'<tr><td style="padding:2px 10px">{html.escape(_label(r))}</td>'
        f'<td style="padding:2px 10px">{r["bytes_per_token"]:,.0f}</td>'
        f'<td style="padding:2px 10px">{format_bytes(r["cache_bytes"][seq_len])}</td>'
        f'<td style="padding:2px 10px">{html.escape(fit_text(r["tokens_fit"], model))}'
        f'{" (" + html.escape(r["note"]) + ")" if r["note"] else ""}'
        f'</td></tr>' for r in rows)
    summary = html_table([("model", spec.name), ("layers", sizing.layer_plan(spec)),
                          ("published context", f"{spec.max_context:,} tokens"),
                          ("weights (bf16)", format_bytes(rows[0]["weight_bytes"])),
                          ("source", spec.source)])
    return (summary + f'<table style="border-collapse:collapse;font-size:14px;font-variant-numeric:tabular-nums">'
            f"<tr>{head}</tr>{body}</table>")


def chart_figure(model: str, seq_len: int, gpu_gib: float, dtype: torch.dtype | str) -> go.Figure:
    """The cache at ``seq_len`` for each scheme of :func:`model_rows` as horizontal bars on a linear axis
    (the published scheme outlined, the what-ifs lighter); hover gives the exact bytes. Pure."""
    rows = model_rows(model, seq_len, gpu_gib, dtype)
    bars = [Bar(_label(r), (Segment(f"cache at {seq_len:,} tokens", r["cache_bytes"][seq_len],
                                    SCHEME_COLORS.get(r["scheme"], "#555555")),),  # V4's own row: no Table 1 colour
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
