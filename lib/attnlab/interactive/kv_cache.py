"""The decode stepper of chapter 4: walk through cached generation one step at a time.

:func:`trace_decode` runs greedy generation of a :class:`~attnlab.model.TinyLM` once, through a real
:class:`~attnlab.kv_cache.KVCache`, and records every step: which tokens were already cached, which
were computed now, the cache's measured size (``KVCache.nbytes``) and the attention row of the newest
token in every layer and head. Step 0 is the **prefill** (the whole prompt at once); step s >= 1 is a
**decode** step that feeds only the token predicted at step s - 1.

:func:`step_html` renders one step of that record as HTML (a pure function: same trace and step, same
string), so tests check what the widget shows without a browser. :func:`decode_stepper` wraps it in a
slider; its callbacks only set the HTML widget's value. :func:`cache_context_figure` draws real models'
caches against the context (plotly), from :mod:`attnlab.sizing`.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass

import ipywidgets as widgets
import plotly.graph_objects as go
import torch

from attnlab import costs, sizing
from attnlab._validate import check_ndim, check_non_negative_int, check_positive_int
from attnlab.costs import AttentionShape
from attnlab.figures import new_figure
from attnlab.plots import COLORS
from attnlab.tokenization import BPETokenizer, visible_token
from attnlab.widgets import row


@dataclass(frozen=True)
class DecodeStep:
    """What one generation step did.

    step: 0 for the prefill, s >= 1 for the s-th decode step; n_cached: tokens whose K and V were read
    from the cache (computed by earlier steps); n_new: tokens whose K and V this step computed and
    appended (the prompt length at the prefill, 1 afterwards); cache_bytes: ``KVCache.nbytes`` after
    the step; attention: (n_layers, n_heads, n_cached + n_new), the softmax weights of the newest
    token's query over every key; next_id: the token the step predicts (greedy argmax).
    """

    step: int
    n_cached: int
    n_new: int
    cache_bytes: int
    attention: torch.Tensor
    next_id: int

    @property
    def n_tokens(self) -> int:
        """Tokens in the cache after this step: n_cached + n_new."""
        return self.n_cached + self.n_new


@dataclass(frozen=True)
class DecodeTrace:
    """A whole cached generation: ``ids`` (prompt, then every generated token that was fed back),
    ``tokens`` (their text, for display), ``prompt_len``, the model shape that sets the cache size,
    and one :class:`DecodeStep` per step (``steps[0]`` is the prefill)."""

    ids: tuple[int, ...]
    tokens: tuple[str, ...]
    next_token: str
    prompt_len: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    element_size: int
    steps: tuple[DecodeStep, ...]

    @property
    def cache_bytes_per_token(self) -> int:
        """2 (K and V) x layers x n_kv_heads x head_dim x bytes per number: the cost of one token
        (:func:`attnlab.costs.cache_elements_per_token` of the model's shape, times the bytes per number)."""
        shape = AttentionShape(d_model=self.n_heads * self.head_dim, n_heads=self.n_heads, head_dim=self.head_dim,
                               n_kv_heads=self.n_kv_heads, n_layers=self.n_layers)
        return costs.cache_elements_per_token("gqa", shape) * self.element_size


@torch.no_grad()
def trace_decode(model, tokenizer: BPETokenizer, ids: torch.Tensor | list[int], n_new: int) -> DecodeTrace:
    """Greedy cached generation of ``n_new`` tokens after the prompt ``ids`` (one sequence), recorded.

    ids: (1, prompt_len) tensor or a list of ids. Runs one prefill pass (the prompt, filling the cache),
    then ``n_new`` decode steps, each feeding the previous step's prediction with ``cache=``; returns a
    :class:`DecodeTrace` with n_new + 1 steps. The fed tokens, ``trace.ids``, equal
    ``generate(model, ids, n_new)[0]``; the last step's prediction is recorded (``next_id``) but not fed.
    """
    if not isinstance(ids, torch.Tensor):
        ids = torch.tensor([list(ids)], dtype=torch.long)
    check_ndim("ids", ids, 2, "(1, prompt_len)")
    if ids.shape[0] != 1 or ids.shape[1] == 0:
        raise ValueError(f"ids must hold one non-empty sequence, shape (1, prompt_len), got {tuple(ids.shape)}")
    check_non_negative_int("n_new", n_new)
    config = model.config
    if ids.shape[1] + n_new > config.max_seq_len:
        raise ValueError(f"prompt_len + n_new = {ids.shape[1] + n_new} exceeds max_seq_len={config.max_seq_len}")
    attn = config.attention_config()
    cache = model.new_cache()
    fed, steps = ids[0].tolist(), []
    step_input = ids
    for step in range(n_new + 1):
        n_cached = cache.seq_len
        logits, maps = model(step_input, cache=cache, return_attention=True)
        rows = torch.stack([w[0, :, -1, :] for w in maps]).float()  # (n_layers, n_heads, n_k), newest query
        next_id = int(logits[0, -1].argmax())
        steps.append(DecodeStep(step, n_cached, step_input.shape[1], cache.nbytes, rows, next_id))
        if step < n_new:
            fed.append(next_id)
            step_input = torch.tensor([[next_id]], device=ids.device)
    return DecodeTrace(
        ids=tuple(fed),
        tokens=tuple(visible_token(tokenizer.vocab[i]) for i in fed),
        next_token=visible_token(tokenizer.vocab[steps[-1].next_id]),
        prompt_len=ids.shape[1],
        n_layers=config.n_layers,
        n_heads=attn.n_heads,
        n_kv_heads=attn.n_kv_heads,
        head_dim=attn.head_dim,
        element_size=model.embed.weight.element_size(),
        steps=tuple(steps),
    )


def attention_row(trace: DecodeTrace, step: int, layer: int, head: int | None = None) -> torch.Tensor:
    """The newest token's attention weights at ``step`` in ``layer``: one head's, or the mean over heads
    when ``head`` is None. Returns (n_tokens,), summing to 1."""
    _check_step(trace, step)
    if not isinstance(layer, int) or not 0 <= layer < trace.n_layers:
        raise ValueError(f"layer={layer!r} must be an int in [0, {trace.n_layers})")
    rows = trace.steps[step].attention[layer]  # (n_heads, n_k)
    if head is None:
        return rows.mean(dim=0)
    if not isinstance(head, int) or not 0 <= head < trace.n_heads:
        raise ValueError(f"head={head!r} must be None (mean over heads) or an int in [0, {trace.n_heads})")
    return rows[head]


def _check_step(trace: DecodeTrace, step: object) -> None:
    if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step < len(trace.steps):
        raise ValueError(f"step={step!r} must be an int in [0, {len(trace.steps) - 1}]")


def step_figures(trace: DecodeTrace, step: int) -> dict:
    """The numbers the stepper shows at ``step``: tokens cached before it, tokens computed by it, tokens
    in the cache after it, the measured cache bytes, the formula's bytes, and the K/V projections (token
    x layer) this step ran against those a model without a cache would run (every token so far)."""
    _check_step(trace, step)
    s = trace.steps[step]
    return {
        "n_cached": s.n_cached,
        "n_new": s.n_new,
        "n_tokens": s.n_tokens,
        "cache_bytes": s.cache_bytes,
        "formula_bytes": trace.cache_bytes_per_token * s.n_tokens,
        "kv_projections": s.n_new * trace.n_layers,
        "kv_projections_uncached": s.n_tokens * trace.n_layers,
    }


def _chip(text: str, weight: float, top: float, border: str, title: str) -> str:
    """One token: the background's darkness is its attention weight relative to the row's largest."""
    alpha = 0.08 + 0.85 * (weight / top if top > 0 else 0.0)
    return (f'<span title="{html.escape(title)}" style="display:inline-block;margin:2px 1px;padding:1px 3px;'
            f'border:2px solid {border};border-radius:4px;background:rgba(31,119,180,{alpha:.2f});'
            f'color:{"white" if alpha > 0.55 else "black"}">{html.escape(text)}</span>')


def step_html(trace: DecodeTrace, step: int, layer: int | None = None, head: int | None = None) -> str:
    """HTML for one step (pure: same arguments, same string).

    A line saying what the step did; every token fed so far as a chip, bordered red if its K and V came
    from the cache and blue if computed at this step, shaded by the attention weight the newest token's
    query gives it (``layer``, default the last; ``head``, default the mean over heads), followed by the
    predicted next token; then a table with the cache's measured bytes and the formula
    2 x layers x n_kv_heads x head_dim x bytes x tokens."""
    layer = trace.n_layers - 1 if layer is None else layer
    f = step_figures(trace, step)
    s = trace.steps[step]
    row = attention_row(trace, step, layer, head)
    top = float(row.max())
    if step == 0:
        what = (f"<b>Step 0 · prefill</b>: the {f['n_new']} prompt tokens go through the model at once; "
                f"their keys and values fill an empty cache.")
    else:
        what = (f"<b>Step {step} of {len(trace.steps) - 1} · decode</b>: 1 new token; the keys and values "
                f"of the {f['n_cached']} earlier tokens are read from the cache, not recomputed.")
    chips = []
    for i, weight in enumerate(row.tolist()):
        cached = i < s.n_cached
        border = COLORS["cache"] if cached else COLORS["query"]
        where = "from the cache" if cached else "computed at this step"
        title = f"position {i}, id {trace.ids[i]}, K/V {where}, attention {weight:.3f}"
        chips.append(_chip(trace.tokens[i], weight, top, border, title))
    next_token = trace.next_token if step == len(trace.steps) - 1 else trace.tokens[s.n_tokens]
    chips.append(f'<span style="display:inline-block;margin:2px 1px;padding:1px 3px;border:2px dashed '
                 f'{COLORS["muted"]};border-radius:4px">→ {html.escape(next_token)}</span>')
    who = "mean over heads" if head is None else f"head {head}"
    best = int(row.argmax())
    legend = (f'<span style="color:{COLORS["cache"]}">■</span> K/V read from the cache &nbsp; '
              f'<span style="color:{COLORS["query"]}">■</span> K/V computed now &nbsp; shading: attention '
              f'of the newest token ({html.escape(trace.tokens[s.n_tokens - 1])}), layer {layer}, {who}; '
              f'strongest on position {best} ({html.escape(trace.tokens[best])}, {row[best]:.2f}) &nbsp; '
              f'dashed: the token this step predicts')
    formula = (f"2 × {trace.n_layers} layers × {trace.n_kv_heads} KV heads × {trace.head_dim} × "
               f"{trace.element_size} B × {f['n_tokens']} tokens")
    rows = [
        ("Tokens in the cache after this step", f"{f['n_tokens']} ({f['n_cached']} cached + {f['n_new']} new)"),
        ("Cache size (KVCache.nbytes)", f"{f['cache_bytes']:,} B"),
        ("Formula", f"{formula} = {f['formula_bytes']:,} B"),
        ("K/V projections run (token × layer)",
         f"{f['kv_projections']} with the cache, {f['kv_projections_uncached']} without"),
    ]
    table = "".join(
        f'<tr><td style="padding:1px 12px 1px 0">{html.escape(k)}</td>'
        f'<td style="padding:1px 0;font-variant-numeric:tabular-nums"><b>{html.escape(v)}</b></td></tr>'
        for k, v in rows
    )
    return (f'<div style="font-size:14px;max-width:900px">{what}'
            f'<div style="font-family:monospace;line-height:1.9;margin:6px 0">{"".join(chips)}</div>'
            f'<div style="font-size:12px;color:#444">{legend}</div>'
            f'<table style="border-collapse:collapse;margin-top:6px">{table}</table></div>')


class DecodeStepper(widgets.VBox):
    """The container :func:`decode_stepper` returns: ``.trace`` is the recorded generation, ``.step``,
    ``.layer``, ``.head`` the controls, ``.view`` the HTML widget they fill."""

    def __init__(self, trace: DecodeTrace) -> None:
        self.trace = trace
        n_steps = len(trace.steps) - 1
        style = {"description_width": "60px"}
        self.step = widgets.IntSlider(value=0, min=0, max=n_steps, description="step", style=style,
                                      layout=widgets.Layout(width="520px"))
        self.play = widgets.Play(value=0, min=0, max=n_steps, interval=700, description="play")
        widgets.jslink((self.play, "value"), (self.step, "value"))
        self.layer = widgets.Dropdown(options=list(range(trace.n_layers)), value=trace.n_layers - 1,
                                      description="layer", style=style, layout=widgets.Layout(width="140px"))
        heads = [("mean", None)] + [(str(h), h) for h in range(trace.n_heads)]
        self.head = widgets.Dropdown(options=heads, value=None, description="head", style=style,
                                     layout=widgets.Layout(width="140px"))
        self.view = widgets.HTML()
        for control in (self.step, self.layer, self.head):
            control.observe(self._refresh, names="value")
        super().__init__([row(self.play, self.step, self.layer, self.head), self.view])
        self._refresh()

    def _refresh(self, change: dict | None = None) -> None:
        # A callback: it only sets the HTML widget's value.
        self.view.value = step_html(self.trace, self.step.value, self.layer.value, self.head.value)

    def __repr__(self) -> str:
        # A short, deterministic text form (the notebook stores it as the cell's plain-text output).
        return f"DecodeStepper(prompt_len={self.trace.prompt_len}, steps={len(self.trace.steps)})"


def decode_stepper(model, tokenizer: BPETokenizer, prompt: str, n_new: int = 24) -> DecodeStepper:
    """Return the decode stepper for ``prompt``: greedy cached generation of ``n_new`` tokens, recorded
    by :func:`trace_decode`, with a step slider (and play button), a layer and a head menu."""
    if not isinstance(prompt, str) or not prompt:
        raise ValueError(f"prompt={prompt!r} must be a non-empty str")
    return DecodeStepper(trace_decode(model, tokenizer, tokenizer.encode(prompt), n_new))


# ----------------------------------------------------------------------------------------------------
# real models' caches against the context (plotly: hover for the exact bytes)

#: Line colours of the models in :func:`cache_context_figure`, in order (Okabe-Ito, colour-blind safe).
MODEL_COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")


def cache_context_figure(models: Sequence[str], lengths: Sequence[int], batches: Sequence[int] = (1,),
                         dtype: torch.dtype | str = torch.bfloat16, weights: bool = False) -> go.Figure:
    """Each model's KV cache (:func:`attnlab.sizing.kv_cache_bytes`) against the context length, log-log,
    one line per (model, batch): solid up to the model's published context window (``max_context``, marked
    with a diamond), dotted beyond. Hover gives model, batch, context and the exact bytes. ``weights=True``
    adds each model's weights (:func:`attnlab.sizing.weight_bytes`) as a dotted horizontal line."""
    if not models:
        raise ValueError("models must not be empty")
    for n in lengths:
        check_positive_int("lengths", n)
    dtype_name = str(sizing.get_dtype(dtype)).removeprefix("torch.")
    fig = new_figure(f"KV cache of real models ({dtype_name}); ◆ = published context window",
                     "context length (tokens)", "cache (GiB)", log_x=True, log_y=True, height=440)
    dashes = ("solid", "dash", "dashdot", "longdash")
    for m, key in enumerate(models):
        spec = sizing.get_model(key)
        colour = MODEL_COLOURS[m % len(MODEL_COLOURS)]
        window = spec.max_context
        for b, batch in enumerate(batches):
            check_positive_int("batches", batch)
            points = sorted(set(lengths) | ({window} if window else set()))
            size = [sizing.kv_cache_bytes(spec, n, batch, dtype) for n in points]
            name = f"{spec.name}" + (f", batch {batch}" if len(batches) > 1 else "")
            inside = [i for i, n in enumerate(points) if not window or n <= window]
            beyond = [i for i, n in enumerate(points) if window and n >= window]
            hover = (f"{spec.name} · batch {batch}<br>context %{{x:,}} tokens<br>%{{customdata[0]:,}} B "
                     f"(%{{customdata[1]}})<extra></extra>")
            for part, dash, legend in ((inside, dashes[b % len(dashes)], True), (beyond, "dot", False)):
                if len(part) < 2:
                    continue
                fig.add_trace(go.Scatter(
                    x=[points[i] for i in part], y=[sizing.gib(size[i]) for i in part], mode="lines",
                    name=name, legendgroup=name, showlegend=legend, line=dict(color=colour, dash=dash, width=2),
                    customdata=[[size[i], sizing.format_bytes(size[i])] for i in part], hovertemplate=hover))
            if window:
                at = points.index(window)
                fig.add_trace(go.Scatter(
                    x=[window], y=[sizing.gib(size[at])], mode="markers", legendgroup=name, showlegend=False,
                    name=f"{name}: published window", marker=dict(symbol="diamond", size=10, color=colour),
                    customdata=[[size[at], sizing.format_bytes(size[at])]],
                    hovertemplate=f"{spec.name} · batch {batch}<br>published context window %{{x:,}} tokens<br>"
                                  f"%{{customdata[0]:,}} B (%{{customdata[1]}})<extra></extra>"))
        if weights:
            w = sizing.weight_bytes(spec, dtype)
            fig.add_trace(go.Scatter(
                x=[min(lengths), max(lengths)], y=[sizing.gib(w)] * 2, mode="lines", legendgroup=spec.name,
                name=f"{spec.name} weights, {sizing.gib(w):.1f} GiB", line=dict(color=colour, dash="dot", width=1.2),
                hovertemplate=f"{spec.name} weights: {w:,} B ({sizing.format_bytes(w)})<extra></extra>"))
    ticks = sorted(set(lengths))
    fig.update_xaxes(tickvals=ticks, ticktext=[f"{n // 1024}K" if n < 2**20 else f"{n // 2**20}M" for n in ticks])
    fig.update_layout(legend=dict(x=1.02, y=1.0, xanchor="left", yanchor="top", font=dict(size=11)),
                      hovermode="closest")
    return fig
