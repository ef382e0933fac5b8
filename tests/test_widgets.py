"""The KV-cache calculator: it loads published shapes, offers only valid KV-head counts, and shows what
attnlab.sizing computes; its rendering is a pure function of the state."""

from __future__ import annotations

import dataclasses

import ipywidgets
import pytest
import torch

from attnlab import sizing
from attnlab.sizing import MODELS, SCHEMES
from attnlab.widgets import (
    CONTEXT_OPTIONS,
    CalculatorState,
    bar_chart_bars,
    bar_chart_figure,
    cache_calculator,
    divisors,
    figures,
    readout_html,
)


@pytest.fixture
def calc():
    return cache_calculator()


def chart_text(chart) -> str:
    """What a plotly chart writes: its title, the bars' labels and the values written beside them."""
    labels = [str(y) for trace in chart.data for y in (trace.y or ())]
    written = [t for trace in chart.data if trace.type == "scatter" and trace.mode == "text" for t in trace.text]
    return " ".join([chart.layout.title.text or "", *labels, *written])


def shown(calc) -> str:
    return calc.controls.readout.value + chart_text(calc.controls.chart)


def test_returns_a_widget_container(calc):
    assert isinstance(calc, ipywidgets.Widget)
    assert isinstance(calc, ipywidgets.Box)
    assert repr(calc) == "CacheCalculator(model='deepseek-v3')"


def test_default_loads_deepseek_v3(calc):
    c = calc.controls
    v3 = MODELS["deepseek-v3"]
    assert (c.n_layers.value, c.n_heads.value, c.head_dim.value, c.d_c.value, c.d_h_rope.value) == (
        v3.n_layers, v3.n_heads, v3.head_dim, v3.kv_lora_rank, v3.qk_rope_head_dim)
    assert c.scheme.value == "mla"
    assert c.n_kv_heads.value == 16  # the GQA bar starts at the what-if of 16 groups
    f = figures(calc.state())
    assert f["bytes_per_token"] == 70_272
    assert f["per_scheme"] == {"mha": 3_997_696, "mqa": 31_232, "gqa": 499_712, "mla": 70_272}
    assert "70,272 B" in c.readout.value
    assert "8.58 GiB" in c.readout.value  # 128K tokens, the default context
    assert "56.9× smaller" in c.readout.value


@pytest.mark.parametrize("key", sorted(MODELS))
def test_model_dropdown_loads_shapes(calc, key):
    c = calc.controls
    spec = MODELS[key]
    c.model.value = key
    assert c.n_layers.value == spec.n_layers
    assert c.n_heads.value == spec.n_heads
    assert c.head_dim.value == spec.head_dim
    assert c.scheme.value == spec.attention
    assert list(c.n_kv_heads.options) == divisors(spec.n_heads)
    if spec.attention != "mla":
        assert c.n_kv_heads.value == spec.n_kv_heads
    assert (c.d_c.value, c.d_h_rope.value) == sizing.mla_dims(spec)
    state = calc.state()
    assert figures(state)["cache_bytes"] == sizing.kv_cache_bytes(key, c.seq_len.value)
    if spec.v4 is not None:  # no bytes per token: an entry per 4 or 128 tokens, on average the growth
        assert figures(state)["bytes_per_token"] is None
        assert f"{sizing.growth_bytes_per_token(key):,.0f} B" in c.readout.value
        return
    assert figures(state)["bytes_per_token"] == sizing.cache_bytes_per_token(key)
    assert f"{sizing.cache_bytes_per_token(key):,} B" in c.readout.value


@pytest.mark.parametrize("n_heads", [1, 24, 71, 96, 128])
def test_kv_head_options_are_exactly_the_divisors(calc, n_heads):
    c = calc.controls
    c.n_heads.value = n_heads
    assert list(c.n_kv_heads.options) == [d for d in range(1, n_heads + 1) if n_heads % d == 0]
    assert n_heads % c.n_kv_heads.value == 0


def test_divisors():
    assert divisors(128) == [1, 2, 4, 8, 16, 32, 64, 128]
    assert divisors(71) == [1, 71]
    with pytest.raises(ValueError, match="n=0 must be a positive integer"):
        divisors(0)


def test_moving_kv_heads_changes_shown_values(calc):
    c = calc.controls
    c.model.value = "llama-3-8b"
    before = c.readout.value
    c.n_kv_heads.value = 2
    expected = sizing.cache_bytes_per_token("llama-3-8b", scheme="gqa", n_kv_heads=2)
    assert expected == 2 * 2 * 128 * 32 * 2
    assert c.readout.value != before
    assert f"{expected:,} B" in c.readout.value
    assert "GQA · 2 KV heads" in chart_text(c.chart)
    gib = sizing.gib(sizing.kv_cache_bytes("llama-3-8b", 2**17, n_kv_heads=2))
    assert f"{gib:,.2f} GiB" in c.readout.value


def test_moving_kv_heads_changes_the_gqa_bar_on_an_mla_model(calc):
    c = calc.controls
    c.n_kv_heads.value = 64
    assert figures(calc.state())["per_scheme"]["gqa"] == sizing.cache_bytes_per_token(
        "deepseek-v3", scheme="gqa", n_kv_heads=64)
    gqa_64 = sizing.cache_bytes_per_token("deepseek-v3", scheme="gqa", n_kv_heads=64)
    assert sizing.format_bytes(gqa_64) in chart_text(c.chart)


def test_moving_context_changes_shown_values(calc):
    c = calc.controls
    for seq_len in (2**10, 2**15, 2**20):
        c.seq_len.value = seq_len
        gib = sizing.gib(sizing.kv_cache_bytes("deepseek-v3", seq_len))
        label = dict((v, k) for k, v in CONTEXT_OPTIONS)[seq_len]
        assert f"Cache for {label} tokens × batch 1" in c.readout.value
        assert f"{gib:,.2f} GiB" in c.readout.value


def test_batch_dtype_gpu_and_scheme(calc):
    c = calc.controls
    c.batch.value = 8
    c.dtype.value = torch.float8_e4m3fn
    c.gpu_gib.value = 141.0
    c.scheme.value = "mha"
    expected_cache = sizing.kv_cache_bytes("deepseek-v3", 2**17, 8, torch.float8_e4m3fn, scheme="mha")
    assert f"{sizing.gib(expected_cache):,.2f} GiB" in c.readout.value
    fit = sizing.tokens_that_fit("deepseek-v3", 141.0, torch.float8_e4m3fn, scheme="mha")
    assert f"{fit:,}" in c.readout.value
    assert "float8" in chart_text(c.chart)


def test_changing_shape_sliders(calc):
    c = calc.controls
    c.n_layers.value = 10
    c.d_c.value = 256
    c.d_h_rope.value = 32
    assert figures(calc.state())["bytes_per_token"] == (256 + 32) * 10 * 2
    c.head_dim.value = 64
    c.scheme.value = "mqa"
    assert figures(calc.state())["bytes_per_token"] == 2 * 64 * 10 * 2


def test_callbacks_never_print(calc, capsys):
    c = calc.controls
    c.model.value = "falcon-7b"
    c.n_heads.value = 64
    c.n_kv_heads.value = 8
    c.seq_len.value = 2**12
    c.model.value = "qwen2.5-7b"
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""


def test_unknown_model():
    with pytest.raises(ValueError, match="model='no-such-model' must be one of"):
        cache_calculator("no-such-model")


# ----------------------------------------------------------------------------------------------------
# The pure rendering


def state_for(key: str, **kw) -> CalculatorState:
    spec = MODELS[key]
    return CalculatorState(spec=spec, gqa_kv_heads=kw.pop("gqa_kv_heads", spec.n_kv_heads),
                           seq_len=kw.pop("seq_len", 4096), **kw)


def test_render_is_pure_and_matches_the_widget(calc):
    state = calc.state()
    assert readout_html(state) == readout_html(dataclasses.replace(state))
    assert readout_html(state) == calc.controls.readout.value
    assert bar_chart_figure(state).to_json() == bar_chart_figure(dataclasses.replace(state)).to_json()
    shown, built = calc.controls.chart, bar_chart_figure(state)
    assert [t.x for t in shown.data] == [t.x for t in built.data]
    assert [t.y for t in shown.data] == [t.y for t in built.data]


def test_chart_follows_the_sliders_in_place(calc):
    """Moving a slider updates the same plotly FigureWidget (no new chart) to what attnlab.sizing gives."""
    chart = calc.controls.chart
    calc.controls.model.value = "llama-3-8b"
    calc.controls.n_kv_heads.value = 2
    assert calc.controls.chart is chart
    spec = calc.state().spec
    bars = dict(zip(chart.data[0].y, chart.data[0].x, strict=True))
    assert bars["GQA · 2 KV heads"] == sizing.cache_bytes_per_token(spec, torch.bfloat16, "gqa", 2)
    assert chart.data[0].x == bar_chart_figure(calc.state()).data[0].x


def test_chart_has_one_labelled_bar_per_scheme_on_a_linear_axis():
    state = state_for("deepseek-v3", gqa_kv_heads=16)
    fig = bar_chart_figure(state)
    bars, text = fig.data[0], fig.data[-1]
    assert bars.type == "bar" and bars.orientation == "h" and len(bars.x) == len(SCHEMES)
    values = figures(state)["per_scheme"]
    assert list(bars.x) == [values[s] for s in SCHEMES]  # exact bytes, linear scale from 0
    assert fig.layout.xaxis.type == "linear" and fig.layout.xaxis.range[0] == 0
    assert list(bars.marker.color) == [sizing.get_scheme(s).color for s in SCHEMES]
    assert text.mode == "text" and list(text.x) == list(bars.x)  # each value written after its bar
    for label in ("4.00 MB · 1×", "31.2 kB · 128×", "500 kB · 8×", "70.3 kB · 56.9×"):
        assert any(label in t for t in text.text)


def test_selected_scheme_is_highlighted():
    bars = bar_chart_figure(state_for("llama-3-8b")).data[0]
    selected = {y: w for y, w in zip(bars.y, bars.marker.line.width, strict=True) if w}
    assert list(selected) == ["GQA · 8 KV heads"]
    assert [o for o in bars.marker.opacity].count(1.0) == 1


def test_state_validation():
    with pytest.raises(ValueError, match="n_heads=32 is not divisible by gqa_kv_heads=5"):
        state_for("llama-3-8b", gqa_kv_heads=5)
    with pytest.raises(ValueError, match="seq_len=-1"):
        state_for("llama-3-8b", seq_len=-1)


def test_windowed_models_flatten_past_the_window_in_the_readout():
    # Gemma-2-9B: 21 sliding layers (window 4,096) + 21 full; at 128K, far beyond its published 8K context
    calc = cache_calculator("gemma-2-9b")
    state, text = calc.state(), calc.controls.readout.value
    assert state.spec.layer_types == MODELS["gemma-2-9b"].layer_types
    assert figures(state)["cache_bytes"] == sizing.kv_cache_bytes("gemma-2-9b", 2**17)
    assert figures(state)["bytes_past_window"] == 21 * 2 * 8 * 256 * 2
    assert "21 sliding (window 4,096) + 21 full" in text and "past the window" in text
    assert "beyond its published 8,192-token context" in text
    # Mistral-7B-v0.1: every layer slides, the cache stops growing at 4,096 tokens
    calc.controls.model.value = "mistral-7b-v0.1"
    assert "any context (the cache stops growing at 4,096 tokens)" in calc.controls.readout.value
    assert f"{sizing.gib(sizing.kv_cache_bytes('mistral-7b-v0.1', 4096)):,.2f} GiB" in calc.controls.readout.value
    # with another layer count the calculator has no pattern to follow: every layer full
    calc.controls.n_layers.value = 30
    assert not calc.state().spec.windowed


def test_v32_readout_counts_the_index_key():
    calc = cache_calculator("deepseek-v3.2")
    text = calc.controls.readout.value
    assert "d_c + d_h^R + d^I = 512 + 64 + 128 = 704" in text
    assert f"{sizing.cache_bytes_per_token('deepseek-v3.2'):,} B" in text
    assert figures(calc.state())["bytes_per_token"] == (576 + 128) * 2 * 61


def test_hybrid_readout_shows_the_fixed_state():
    # Qwen3-Next: 12 GQA layers of 2 x 2 x 256 numbers per token, 36 Gated DeltaNet states of 548,864 numbers
    calc = cache_calculator("qwen3-next-80b-a3b")
    state, text = calc.state(), calc.controls.readout.value
    assert state.spec.layer_types == MODELS["qwen3-next-80b-a3b"].layer_types
    assert figures(state)["fixed_state"] == 36 * 548_864 * 2
    assert "36 linear (fixed state) + 12 full" in text and "39,518,208 B (39.5 MB) at any context" in text
    assert "Bytes per token (12 GQA layers, bfloat16)" in text and "24,576 B" in text
    assert figures(state)["cache_bytes"] == 36 * 548_864 * 2 + 2**17 * 24_576
    calc.controls.batch.value = 4  # every sequence keeps its own states
    assert figures(calc.state())["fixed_state"] == 4 * 36 * 548_864 * 2
    # what-ifs change the full layers only: MHA keeps 2 x 16 x 256 per token on each of the 12
    calc.controls.scheme.value = "mha"
    assert figures(calc.state())["bytes_per_token"] == 12 * 2 * 16 * 256 * 2


def test_v4_readout_and_what_ifs():
    calc = cache_calculator("deepseek-v4-flash")
    f, text = figures(calc.state()), calc.controls.readout.value
    assert f["scheme"] == "v4" and f["cache_bytes"] == sizing.kv_cache_bytes("deepseek-v4-flash", 2**17)
    assert "2 sliding + 21 CSA (1 entry per 4 tokens) + 20 HCA (1 entry per 128)" in text
    assert f["growth_per_token"] == 21 * (1024 + 256) / 4 + 20 * 1024 / 128
    assert f["reduction"]["v4"] == sizing.kv_cache_bytes("deepseek-v4-flash", 2**17, scheme="mha") / f["cache_bytes"]
    # no bar is V4's own: none is drawn as the selected scheme
    assert not any(bar.selected for bar in bar_chart_bars(calc.state()))
    # another scheme: every layer a full layer of it, V3.2's MLA entry of 576 on 43 layers
    calc.controls.scheme.value = "mla"
    assert calc.state().spec.v4 is None
    assert figures(calc.state())["bytes_per_token"] == 576 * 2 * 43
