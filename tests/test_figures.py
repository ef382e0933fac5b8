"""The shared plotting style and the plotly helpers: one look for every scheme, static figures whose stored
outputs are identical run after run and load nothing from the internet, and live charts updated in place."""

from __future__ import annotations

import json
import re

import plotly.graph_objects as go
import plotly.io as pio
import pytest

from attnlab import figures
from attnlab.plots import COLORS
from attnlab.schemes import SCHEMES, VARIANTS


def small_figure() -> go.Figure:
    fig = figures.new_figure("Cache per token", "context", "bytes", log_x=True)
    fig.add_trace(go.Scatter(x=[1024, 2048, 4096], y=[1.5, 3.0, 6.0], name="MLA", mode="lines+markers"))
    return fig


def test_every_scheme_has_one_style_from_its_record():
    for key, record in {**SCHEMES, **VARIANTS}.items():
        style = figures.scheme_style(key)
        assert style["color"] == record.color and style["label"] == record.label
        assert style["symbol"] == figures.PLOTLY_SYMBOLS[record.marker]
    assert figures.TEMPLATE.layout.colorway == tuple(s.color for s in SCHEMES.values())
    assert figures.WEIGHT_SCALE[-1][1] == COLORS["query"]


def test_template_is_registered_once_with_the_animations_look():
    assert pio.templates["attnlab"] is figures.TEMPLATE or pio.templates["attnlab"] == figures.TEMPLATE
    layout = figures.TEMPLATE.layout
    assert layout.font.family.startswith(figures.FONT) and layout.font.color == figures.INK
    assert layout.paper_bgcolor == layout.plot_bgcolor == figures.BACKGROUND
    assert figures.MATPLOTLIB_RC["font.sans-serif"][0] == figures.FONT
    fig = small_figure()
    assert fig.layout.xaxis.type == "log" and fig.layout.yaxis.type == "linear"


def test_stored_outputs_are_identical_across_runs_and_fetch_nothing():
    a = json.dumps(figures.mimebundle(small_figure(), "ch04-cache"), sort_keys=True)
    b = json.dumps(figures.mimebundle(small_figure(), "ch04-cache"), sort_keys=True)
    assert a == b
    bundle = figures.mimebundle(small_figure(), "ch04-cache")
    assert set(bundle) == {figures.PLOTLY_MIME, "text/html", "text/plain"}
    assert bundle["text/plain"] == "<plotly figure ch04-cache: Cache per token>"
    page = bundle["text/html"]
    assert 'id="ch04-cache"' in page and 'Plotly.newPlot("ch04-cache"' in page
    assert not re.search(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-", a)  # no uuid anywhere
    assert "cdn" not in page.lower() and "<script src" not in page and "http" not in page
    assert "uid" not in json.dumps(bundle[figures.PLOTLY_MIME]["data"])
    assert bundle[figures.PLOTLY_MIME]["data"][0]["x"] == [1024, 2048, 4096]


def test_a_label_cannot_end_the_script():
    fig = figures.new_figure("</script><b>x</b>")
    assert "</script><b>" not in figures.figure_html(fig, "x")


def test_hbar_figure_stacks_segments_and_writes_totals():
    bars = [figures.Bar("MHA", (figures.Segment("cache", 100, "#4c72b0"),), "100 B"),
            figures.Bar("DSA", (figures.Segment("index", 10, "#17becf"), figures.Segment("attention", 30, "#8172b2")),
                        "40 B", selected=False)]
    fig = figures.hbar_figure(bars, "t", "bytes")
    first, second, text = fig.data
    assert list(first.x) == [100, 10] and list(second.x) == [0, 30]
    assert list(text.x) == [100, 40] and [t.strip() for t in text.text] == ["100 B", "40 B"]
    assert list(first.marker.opacity) == [1.0, 0.55]
    assert fig.layout.barmode == "stack" and fig.layout.xaxis.range == (0, 160)
    assert figures.figure_text(fig).split("\n")[1:] == ["MHA", "DSA", "  100 B", "  40 B"]
    with pytest.raises(ValueError, match="labels must differ"):
        figures.hbar_figure([bars[0], bars[0]], "t")


def test_live_figure_updates_in_place_in_one_batch():
    live = figures.LiveFigure(small_figure())
    messages = []
    live.observe(lambda change: messages.append(change["name"]) if change["new"] is not None else None,
                 names=["_py2js_update", "_py2js_restyle", "_py2js_relayout"])
    new = small_figure()
    new.data[0].y = [2.0, 4.0, 8.0]
    new.update_layout(title_text="Twice as much")
    live.show_figure(new)
    assert figures.trace_data(live) == figures.trace_data(new)
    assert live.layout.title.text == "Twice as much"
    assert messages == ["_py2js_update"]  # one message: traces and layout together
    assert repr(live) == "LiveFigure(traces=1, title='Twice as much')"
    other = small_figure().add_trace(go.Bar(x=[1], y=[1]))
    with pytest.raises(ValueError, match="keeps its traces"):
        live.show_figure(other)
