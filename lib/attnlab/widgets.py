"""Live widgets for the notebooks.

:func:`cache_calculator` is the KV-cache calculator of chapter 0: pick a model (its published shape loads
into the sliders), or change layers, heads, head width, MLA's latent and RoPE widths, context, batch and
dtype, and read bytes per token, the whole cache in GiB, the tokens that fit in a GPU, and a bar chart
of MHA / MQA / GQA / MLA for the same shape. Every number comes from :mod:`attnlab.sizing`.

The readout and the chart are built by pure functions (:func:`readout_html`, :func:`bar_chart_figure`)
from a frozen :class:`CalculatorState`, so tests check them without a browser; the chart is a plotly
:class:`attnlab.figures.LiveFigure` updated in place (hover a bar for its exact bytes). Callbacks only set
widget values.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass

import ipywidgets as widgets
import plotly.graph_objects as go
import torch

from attnlab import sizing
from attnlab._validate import check_divisible, check_non_negative_int, check_positive_int
from attnlab.costs import AttentionShape
from attnlab.figures import Bar, LiveFigure, Segment, hbar_figure
from attnlab.schemes import get_scheme
from attnlab.sizing import MODELS, SCHEMES, ModelSpec


def context_options(longest: int = 2**20) -> tuple[tuple[str, int], ...]:
    """(label, tokens) for a context slider: the powers of two from 1K up to ``longest`` tokens, labelled
    "1K", "2K", ..., "512K", "1M". Every widget's context slider offers these (or, for DeepSeek-V3.2's cost
    explorer, these and its longest context)."""
    check_positive_int("longest", longest)
    return tuple((f"{n // 1024}K" if n < 2**20 else f"{n // 2**20}M", n)
                 for n in (2**k for k in range(10, 21)) if n <= longest)


#: Context lengths the calculator's slider offers: powers of two from 1K to 1M tokens.
CONTEXT_OPTIONS: tuple[tuple[str, int], ...] = context_options()


def row(*children: widgets.Widget) -> widgets.HBox:
    """Controls side by side that wrap onto the next line when the page is narrow (a projector at
    1024 px, a laptop with the file browser open), instead of squeezing each other until the sliders'
    readouts are clipped. Each child keeps its own width."""
    for child in children:
        child.layout.flex = "0 0 auto"
    return widgets.HBox(list(children), layout=widgets.Layout(flex_flow="row wrap", align_items="flex-start"))


def divisors(n: int) -> list[int]:
    """All positive divisors of ``n``, increasing: the KV-head counts GQA allows for n query heads."""
    check_positive_int("n", n)
    return [d for d in range(1, n + 1) if n % d == 0]


def gqa_start(spec: ModelSpec) -> int:
    """KV heads the GQA slider starts at for ``spec``: its own n_g, except for an MLA model, whose config
    lists n_g = n_h only because each head gets its own K and V back from the latent; there the GQA bar
    starts at the what-if n_g = n_h / 8 (16 for DeepSeek-V3's 128 heads, the seed summaries' figure)."""
    if spec.attention != "mla":
        return spec.n_kv_heads
    return max(d for d in divisors(spec.n_heads) if d <= max(1, spec.n_heads // 8))


@dataclass(frozen=True)
class CalculatorState:
    """Everything the calculator shows is a function of this.

    spec: the current shape, with ``spec.attention`` the scheme whose numbers the readout shows;
    gqa_kv_heads: the KV heads of the GQA bar; seq_len, batch: context tokens and sequences;
    dtype: the cache's dtype; gpu_gib: the memory budget for "tokens that fit".
    """

    spec: ModelSpec
    gqa_kv_heads: int
    seq_len: int
    batch: int = 1
    dtype: torch.dtype = torch.bfloat16
    gpu_gib: float = 80.0

    def __post_init__(self) -> None:
        check_positive_int("gqa_kv_heads", self.gqa_kv_heads)
        check_divisible("n_heads", self.spec.n_heads, "gqa_kv_heads", self.gqa_kv_heads)
        check_non_negative_int("seq_len", self.seq_len)
        check_positive_int("batch", self.batch)


def figures(state: CalculatorState) -> dict:
    """The numbers the calculator shows, all from :mod:`attnlab.sizing`:
    per-scheme bytes per token, the selected scheme's bytes per token, cache bytes for
    seq_len x batch, tokens that fit in gpu_gib, and each scheme's reduction against MHA. For a model with
    sliding windows, bytes per token is the slope inside the window and ``bytes_past_window`` the slope past
    it (the full layers only; 0 when the cache stops growing); ``beyond_context``: the context is longer
    than the model's published ``max_context``. ``growth_per_token``: bytes per token past every window
    (:func:`attnlab.sizing.growth_bytes_per_token`); ``fixed_state``: the linear layers' states for the batch.
    A DeepSeek-V4 model as published (scheme "v4") has no bytes per token (None): its layers add an entry per 4
    or 128 tokens; its bars are what-ifs, and ``reduction["v4"]`` is MHA's cache over its own at ``seq_len``."""
    spec = state.spec
    per_scheme = {
        s: sizing.cache_bytes_per_token(spec, state.dtype, s, state.gqa_kv_heads if s == "gqa" else None)
        for s in SCHEMES
    }
    v4 = spec.v4 is not None
    selected = "v4" if v4 else spec.attention
    cache = sizing.kv_cache_bytes(spec, state.seq_len, state.batch, state.dtype)
    reduction = {s: per_scheme["mha"] / per_scheme[s] for s in SCHEMES}
    if v4:
        mha = sizing.kv_cache_bytes(spec, state.seq_len, state.batch, state.dtype, "mha")
        reduction["v4"] = mha / cache if cache else math.nan
    return {
        "scheme": selected,
        "cache_scheme": selected if v4 else sizing.cache_scheme(spec),  # V3.2: MLA plus its index key, "dsa"
        "elements_per_layer": None if v4 else sizing.layer_elements_per_token(spec),
        "formula": sizing.kv_formula(spec),
        "bytes_per_token": None if v4 else sizing.cache_bytes_per_token(spec, state.dtype),
        "growth_per_token": sizing.growth_bytes_per_token(spec, state.dtype),
        "fixed_state": sizing.fixed_state_bytes(spec, state.batch, state.dtype),
        "cache_bytes": cache,
        "tokens_that_fit": sizing.tokens_that_fit(spec, state.gpu_gib, state.dtype),
        "bytes_past_window": (sizing.marginal_cache_bytes(spec, spec.sliding_window, state.dtype)
                              if spec.sliding_window else None),
        "beyond_context": 0 < spec.max_context < state.seq_len,
        "per_scheme": per_scheme,
        "reduction": reduction,
    }


def _scheme_label(state: CalculatorState, scheme: str) -> str:
    """"GQA · 8 KV heads", "MLA · d_c 512 + d_h^R 64": the scheme's label and what it keeps per token."""
    record = get_scheme(scheme)
    return f"{record.label} · {record.describe(state.spec.attention_shape(state.gqa_kv_heads))}"


def _dtype_name(dtype: torch.dtype) -> str:
    names = {v: k for k, v in sizing.DTYPES_BY_NAME.items()}
    return names.get(dtype, str(dtype).removeprefix("torch."))


def _context_label(seq_len: int) -> str:
    for label, value in CONTEXT_OPTIONS:
        if value == seq_len:
            return label
    return f"{seq_len:,}"


def readout_html(state: CalculatorState) -> str:
    """The calculator's numbers as a small HTML table (pure: same state, same string)."""
    f = figures(state)
    spec = state.spec
    v4 = f["scheme"] == "v4"
    scheme = "DeepSeek-V4 (CSA + HCA)" if v4 else get_scheme(f["cache_scheme"]).label
    dtype = _dtype_name(state.dtype)
    fit = f["tokens_that_fit"]
    context = _context_label(state.seq_len)
    one_sequence = sizing.kv_cache_bytes(spec, state.seq_len, 1, state.dtype)
    n_linear = spec.layer_types.count("linear")
    if spec.proportional:
        sequences = fit / state.seq_len if state.seq_len else 0.0
    else:  # a windowed cache is not proportional to its context: count whole sequences' caches
        sequences = state.gpu_gib * sizing.GIB / one_sequence if one_sequence else math.inf
    cache = f"{sizing.gib(f['cache_bytes']):,.2f} GiB"
    if f["beyond_context"]:
        cache += f" (beyond its published {spec.max_context:,}-token context)"
    if v4:
        rows = [(f"{scheme}: cached numbers per layer after T tokens", html.escape(f["formula"])),
                ("Layers", html.escape(sizing.layer_plan(spec))),
                (f"Growth per token past the {spec.v4.window}-token window ({dtype})",
                 f"{f['growth_per_token']:,.0f} B ({sizing.format_bytes(f['growth_per_token'])}): an entry per 4 "
                 "tokens (CSA) or 128 (HCA), on average")]
    elif n_linear:
        rows = [(f"{scheme}: cached numbers per token per layer; linear layers: a fixed state",
                 html.escape(f["formula"])),
                ("Layers", html.escape(sizing.layer_plan(spec))),
                (f"Bytes per token ({spec.n_layers - n_linear} {scheme} layers, {dtype})",
                 f"{f['bytes_per_token']:,} B ({sizing.format_bytes(f['bytes_per_token'])})"),
                (f"Fixed state ({n_linear} linear layers × batch {state.batch}, {dtype})",
                 f"{f['fixed_state']:,} B ({sizing.format_bytes(f['fixed_state'])}) at any context")]
    elif spec.windowed:
        past = f["bytes_past_window"]
        rows = [
            (f"{scheme}: cached numbers per token per layer", html.escape(f["formula"])),
            ("Layers", html.escape(sizing.layer_plan(spec))),
            (f"Bytes per token inside the {spec.sliding_window:,}-token window ({dtype})",
             f"{f['bytes_per_token']:,} B ({sizing.format_bytes(f['bytes_per_token'])})"),
            (f"Bytes per token past the window ({dtype})",
             f"{past:,} B ({sizing.format_bytes(past)}): the full layers" if past
             else "0 B: every layer holds the window only, the cache stops growing"),
        ]
    else:
        rows = [(f"{scheme}: cached numbers per token per layer", html.escape(f["formula"])),
                (f"Bytes per token ({spec.n_layers} layers, {dtype})",
                 f"{f['bytes_per_token']:,} B ({sizing.format_bytes(f['bytes_per_token'])})")]
    if fit == math.inf:
        fit_text = f"any context (the cache stops growing at {spec.sliding_window:,} tokens)"
    elif spec.proportional:
        fit_text = f"{fit:,} ({sequences:,.1f} sequences of {context})"
    else:  # one sequence's context
        fit_text = f"{fit:,}" + (f" (beyond its published {spec.max_context:,})" if 0 < spec.max_context < fit else "")
    fits = "Tokens that fit" if spec.proportional else "Context that fits"
    rows += [
        (f"Cache for {context} tokens × batch {state.batch}", cache),
        (f"{fits} in {state.gpu_gib:g} GiB (cache only)", fit_text),
    ]
    if not spec.proportional:
        rows.append((f"Sequences of {context} that fit", f"{sequences:,.1f}" if sequences != math.inf else "any"))
    reduction = f["reduction"][f["scheme"]]
    if v4:  # not one ratio per token: MHA's cache over V4's at this context
        rows.append((f"MHA on the same shape against {scheme} at {context}",
                     f"{sizing.format_ratio(reduction)}× larger" if state.seq_len else "–"))
    else:
        rows.append((f"{scheme} against MHA", f"{sizing.format_ratio(reduction)}× smaller"))
    cells = "".join(
        f'<tr><td style="padding:2px 12px 2px 0">{html.escape(k)}</td>'
        f'<td style="padding:2px 0;text-align:right;font-variant-numeric:tabular-nums"><b>{v}</b></td></tr>'
        for k, v in rows
    )
    return f'<table style="border-collapse:collapse;font-size:14px">{cells}</table>'


def bar_chart_bars(state: CalculatorState) -> list[Bar]:
    """The bars of the calculator's chart: one per scheme (bytes per token, same shape and dtype), labelled
    with what it keeps per token, its value and its reduction against MHA; the selected scheme outlined."""
    f = figures(state)
    return [Bar(label=_scheme_label(state, scheme),
                segments=(Segment("cache per token", f["per_scheme"][scheme], get_scheme(scheme).color),),
                text=f"{sizing.format_bytes(f['per_scheme'][scheme])} · {sizing.format_ratio(f['reduction'][scheme])}×",
                selected=scheme == f["scheme"])
            for scheme in SCHEMES]


def bar_chart_figure(state: CalculatorState) -> go.Figure:
    """The calculator's chart: :func:`bar_chart_bars` as horizontal bars on a linear axis of bytes per token
    (hover: scheme and exact bytes). Pure: same state, same figure."""
    title = (f"Bytes per token, {state.spec.n_layers} layers, {_dtype_name(state.dtype)}"
             f" (× = times smaller than MHA)")
    return hbar_figure(bar_chart_bars(state), title, "bytes per token", format_value=lambda v: f"{v:,} B")


@dataclass
class CalculatorControls:
    """The calculator's child widgets, so a test (or a curious learner) can set them from code."""

    model: widgets.Dropdown
    scheme: widgets.Dropdown
    n_layers: widgets.IntSlider
    n_heads: widgets.IntSlider
    n_kv_heads: widgets.SelectionSlider
    head_dim: widgets.IntSlider
    d_c: widgets.IntSlider
    d_h_rope: widgets.IntSlider
    seq_len: widgets.SelectionSlider
    batch: widgets.IntSlider
    dtype: widgets.Dropdown
    gpu_gib: widgets.BoundedFloatText
    readout: widgets.HTML
    chart: LiveFigure


class CacheCalculator(widgets.VBox):
    """The container :func:`cache_calculator` returns; ``.controls`` holds its child widgets."""

    def __init__(self, model: str = "deepseek-v3") -> None:
        if not isinstance(model, str) or model not in MODELS:
            raise ValueError(f"model={model!r} must be one of {sorted(MODELS)}")
        spec = MODELS[model]
        style = {"description_width": "150px"}
        layout = widgets.Layout(width="480px")

        def slider(description: str, lo: int, hi: int, step: int = 1) -> widgets.IntSlider:
            return widgets.IntSlider(min=lo, max=hi, step=step, value=lo, description=description,
                                     continuous_update=False, style=style, layout=layout)

        c = CalculatorControls(
            model=widgets.Dropdown(options=[(m.name, k) for k, m in MODELS.items()], value=model,
                                   description="Model", style=style, layout=layout),
            scheme=widgets.Dropdown(options=[(get_scheme(s).label, s) for s in SCHEMES], value=spec.attention,
                                    description="Scheme shown", style=style, layout=layout),
            n_layers=slider("Layers l", 1, 128),
            n_heads=slider("Query heads n_h", 1, 128),
            n_kv_heads=widgets.SelectionSlider(options=[1], value=1, description="KV heads n_g (GQA)",
                                               continuous_update=False, style=style, layout=layout),
            head_dim=slider("Head dim d_h", 16, 512, 16),
            d_c=slider("Latent d_c (MLA)", 32, 2048, 32),
            d_h_rope=slider("RoPE dim d_h^R (MLA)", 0, 256, 8),
            seq_len=widgets.SelectionSlider(options=list(CONTEXT_OPTIONS), value=2**17,
                                            description="Context (tokens)", continuous_update=False,
                                            style=style, layout=layout),
            batch=slider("Batch", 1, 256),
            dtype=widgets.Dropdown(options=list(sizing.DTYPES_BY_NAME.items()), value=torch.bfloat16,
                                   description="Cache dtype", style=style, layout=layout),
            gpu_gib=widgets.BoundedFloatText(value=80.0, min=1.0, max=100_000.0, step=8.0,
                                             description="GPU memory (GiB)", style=style, layout=layout),
            readout=widgets.HTML(),
            chart=LiveFigure(bar_chart_figure(CalculatorState(spec=spec, gqa_kv_heads=gqa_start(spec), seq_len=2**17))),
        )
        self.controls = c
        self._hidden_size = spec.hidden_size
        self._quiet = False
        left = widgets.VBox([c.model, c.scheme, c.n_layers, c.n_heads, c.n_kv_heads, c.head_dim, c.d_c,
                             c.d_h_rope])
        right = widgets.VBox([c.seq_len, c.batch, c.dtype, c.gpu_gib, c.readout])
        super().__init__([row(left, right), c.chart])

        c.model.observe(self._on_model, names="value")
        c.n_heads.observe(self._on_n_heads, names="value")
        for w in (c.scheme, c.n_layers, c.n_kv_heads, c.head_dim, c.d_c, c.d_h_rope, c.seq_len, c.batch,
                  c.dtype, c.gpu_gib):
            w.observe(self._refresh, names="value")
        self.load(spec)

    # -- state ---------------------------------------------------------------------------------------

    def state(self) -> CalculatorState:
        """The current :class:`CalculatorState` read from the controls."""
        c = self.controls
        scheme, n_h, n_g = c.scheme.value, c.n_heads.value, c.n_kv_heads.value
        record = get_scheme(scheme)  # KV heads as a config lists them: MHA n_h, MQA 1, GQA n_g; MLA n_h
        heads = AttentionShape(d_model=self._hidden_size, n_heads=n_h, n_kv_heads=n_g, head_dim=c.head_dim.value)
        kv_heads = record.kv_heads(heads) if record.dense else n_h
        spec = ModelSpec(
            name=f"{MODELS[c.model.value].name} (as set in the calculator)",
            n_layers=c.n_layers.value, n_heads=n_h, n_kv_heads=kv_heads, head_dim=c.head_dim.value,
            attention=scheme, hidden_size=self._hidden_size, source="attnlab.widgets.cache_calculator",
            kv_lora_rank=c.d_c.value, qk_rope_head_dim=c.d_h_rope.value,
            max_context=MODELS[c.model.value].max_context, **self._layers(c.n_layers.value, n_h),
        )
        return CalculatorState(spec=spec, gqa_kv_heads=n_g, seq_len=c.seq_len.value, batch=c.batch.value,
                               dtype=c.dtype.value, gpu_gib=float(c.gpu_gib.value))

    def _layers(self, n_layers: int, n_heads: int) -> dict:
        """The loaded model's indexer and layer kinds (sliding windows, shared caches, the full layers' own
        widths, linear layers' state shapes, DeepSeek-V4's windows and compressed entries); the layer kinds only
        as long as the layer count is still its own, else every layer is full. DeepSeek-V4's layers only while
        the scheme shown is its own too: another scheme is the what-if of every layer full with that scheme."""
        model = MODELS[self.controls.model.value]
        fields = {"index_n_heads": model.index_n_heads, "index_head_dim": model.index_head_dim,
                  "index_topk": model.index_topk}
        if n_layers != model.n_layers or (model.v4 is not None and self.controls.scheme.value != model.attention):
            return fields
        fields |= {"layer_types": model.layer_types, "sliding_window": model.sliding_window,
                   "kv_shared_layers": model.kv_shared_layers, "global_head_dim": model.global_head_dim,
                   "v4": model.v4, "linear_key_heads": model.linear_key_heads, "linear_key_dim": model.linear_key_dim,
                   "linear_value_heads": model.linear_value_heads, "linear_value_dim": model.linear_value_dim,
                   "linear_conv_kernel": model.linear_conv_kernel}
        if model.global_n_kv_heads and n_heads % model.global_n_kv_heads == 0:
            fields["global_n_kv_heads"] = model.global_n_kv_heads
        return fields

    def load(self, spec: ModelSpec) -> None:
        """Put a model's published shape into the sliders (MLA widths: its own, else d_c = 4 d_h and
        d_h^R = d_h / 2 for the MLA bar), then refresh once."""
        c = self.controls
        d_c, d_h_rope = sizing.mla_dims(spec)
        self._quiet = True
        try:
            self._hidden_size = spec.hidden_size
            c.n_layers.value = spec.n_layers
            c.n_heads.value = spec.n_heads
            self._set_kv_options(spec.n_heads, gqa_start(spec))
            c.head_dim.value = spec.head_dim
            c.d_c.value = d_c
            c.d_h_rope.value = d_h_rope
            c.scheme.value = spec.attention
        finally:
            self._quiet = False
        self._refresh()

    # -- callbacks: they only set widget values ------------------------------------------------------

    def _set_kv_options(self, n_heads: int, wanted: int) -> None:
        options = divisors(n_heads)
        value = max(d for d in options if d <= wanted)
        quiet, self._quiet = self._quiet, True
        try:
            self.controls.n_kv_heads.options = options
            self.controls.n_kv_heads.value = value
        finally:
            self._quiet = quiet

    def _on_model(self, change: dict) -> None:
        self.load(MODELS[change["new"]])

    def _on_n_heads(self, change: dict) -> None:
        self._set_kv_options(change["new"], self.controls.n_kv_heads.value)
        self._refresh()

    def _refresh(self, change: dict | None = None) -> None:
        if self._quiet:
            return
        state = self.state()
        self.controls.readout.value = readout_html(state)
        self.controls.chart.show_figure(bar_chart_figure(state))

    def __repr__(self) -> str:
        # A short, deterministic text form (the notebook stores it as the cell's plain-text output).
        return f"CacheCalculator(model={self.controls.model.value!r})"


def cache_calculator(model: str = "deepseek-v3") -> CacheCalculator:
    """Return the KV-cache calculator widget with ``model``'s published shape loaded.

    The returned container's ``.controls`` (:class:`CalculatorControls`) holds the sliders and the two
    HTML outputs; ``.state()`` gives the :class:`CalculatorState` the shown numbers are rendered from.
    """
    return CacheCalculator(model)
