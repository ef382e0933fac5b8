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
