"""Tests for attnlab.show (source excerpts) and attnlab.plots (heatmap, PNG export)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from attnlab import plots, show  # noqa: E402
from attnlab.show import show_source, source_lines  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def sample(x):
    """A docstring."""
    y = x + 1  # step one
    z = y * 2  # step two
    if z > 3:  # step three
        return z
    return y  # step four


class Holder:
    def method(self):
        a = 1
        b = 2
        return a + b


# --- show -----------------------------------------------------------------------------------------------


def test_source_lines_whole_object():
    text = source_lines(sample)
    assert text.splitlines()[0] == "def sample(x):"
    assert text.splitlines()[-1] == "    return y  # step four"


def test_source_lines_cut_between_start_and_stop():
    assert source_lines(sample, start="step one", stop="step two") == (
        "y = x + 1  # step one\nz = y * 2  # step two"
    )


def test_source_lines_read_a_source_file_by_path(tmp_path):
    source = tmp_path / "kernel.c"
    source.write_text("/* a kernel */\nvoid f(void) {\n    g();  /* the call */\n}  /* f */\n")
    assert source_lines(source, start="void f", stop="/* f */") == (
        "void f(void) {\n    g();  /* the call */\n}  /* f */")
    assert show_source(source, start="g();", stop="g();").data == "```c\ng();  /* the call */\n```"


def test_source_lines_dedents_nested_blocks():
    assert source_lines(sample, start="if z", stop="return z") == "if z > 3:  # step three\n    return z"


def test_source_lines_start_only_and_stop_only():
    assert source_lines(sample, start="if z").splitlines() == [
        "if z > 3:  # step three",
        "    return z",
        "return y  # step four",
    ]
    assert source_lines(sample, stop="A docstring") == 'def sample(x):\n    """A docstring."""'


def test_source_lines_stop_may_match_the_start_line():
    # start == stop shows that one line (how a chapter quotes a single line)
    assert source_lines(sample, start="z = y * 2", stop="z = y * 2") == "z = y * 2  # step two"
    assert source_lines(sample, start="step one", stop="step") == "y = x + 1  # step one"
    # stop is searched from the start line on: an earlier match does not count
    assert source_lines(sample, start="step two", stop="step") == "z = y * 2  # step two"
    assert source_lines(sample, start="if z", stop="return") == "if z > 3:  # step three\n    return z"


def test_source_lines_of_a_method():
    assert source_lines(Holder.method, start="a = 1", stop="b = 2") == "a = 1\nb = 2"
    assert source_lines(Holder.method).startswith("def method(self):")


def test_source_lines_errors():
    with pytest.raises(ValueError, match="start='nowhere' does not occur in the source of"):
        source_lines(sample, start="nowhere")
    with pytest.raises(ValueError, match="stop='nowhere' does not occur in the source after start"):
        source_lines(sample, stop="nowhere")
    with pytest.raises(ValueError, match="stop='step one' does not occur in the source after start"):
        source_lines(sample, start="step two", stop="step one")  # stop only occurs before start


def test_show_source_wraps_in_a_python_block():
    md = show_source(sample, start="step one", stop="step two")
    assert md.data == "```python\ny = x + 1  # step one\nz = y * 2  # step two\n```"
    assert "def source_lines" in show_source(show.source_lines).data


# --- plots ----------------------------------------------------------------------------------------------


def labels(ticklabels) -> list[str]:
    return [t.get_text() for t in ticklabels]


def test_attention_heatmap_labels_and_image():
    weights = torch.softmax(torch.randn(3, 3), dim=-1)
    tokens = ["the", " cat", "\n"]
    ax = plots.attention_heatmap(weights, tokens, title="layer 0")
    try:
        assert isinstance(ax, matplotlib.axes.Axes)
        assert labels(ax.get_xticklabels()) == ["the", " cat", "\\n"]
        assert labels(ax.get_yticklabels()) == ["the", " cat", "\\n"]
        assert list(ax.get_xticks()) == [0, 1, 2]
        assert ax.get_title() == "layer 0"
        assert ax.get_xlabel() == "key (attended to)" and ax.get_ylabel() == "query (attending)"
        image = ax.get_images()[0]
        assert torch.allclose(torch.as_tensor(image.get_array().data), weights)
        assert image.get_clim() == pytest.approx((0.0, float(weights.max())))
    finally:
        plt.close(ax.figure)


def test_attention_heatmap_decode_rows_are_the_last_tokens():
    weights = torch.rand(2, 4)
    ax = plots.attention_heatmap(weights, ["a", "b", "c", "d"])
    try:
        assert labels(ax.get_yticklabels()) == ["c", "d"]
        assert labels(ax.get_xticklabels()) == ["a", "b", "c", "d"]
    finally:
        plt.close(ax.figure)


def test_attention_heatmap_query_tokens_and_given_axes():
    fig, ax = plt.subplots()
    try:
        out = plots.attention_heatmap(torch.rand(2, 3, dtype=torch.float64), ["x", "y", "z"],
                                      query_tokens=["q1", "q2"], ax=ax)
        assert out is ax
        assert labels(ax.get_yticklabels()) == ["q1", "q2"]
    finally:
        plt.close(fig)


def test_attention_heatmap_without_tokens_and_all_zero_weights():
    ax = plots.attention_heatmap(torch.zeros(4, 4))
    try:
        assert ax.get_images()[0].get_clim() == (0.0, 1.0)  # vmax falls back to 1 for an all-zero map
        assert ax.get_title() == ""
    finally:
        plt.close(ax.figure)


def test_attention_heatmap_errors():
    n_figures = len(plt.get_fignums())
    with pytest.raises(ValueError, match=r"weights must be 2-D \(n_q, n_k\), got shape \(1, 3, 3\)"):
        plots.attention_heatmap(torch.rand(1, 3, 3))
    with pytest.raises(ValueError, match="len\\(tokens\\)=2 must equal the number of keys n_k=3"):
        plots.attention_heatmap(torch.rand(3, 3), ["a", "b"])
    with pytest.raises(ValueError, match="len\\(query_tokens\\)=1 must equal the number of queries n_q=2"):
        plots.attention_heatmap(torch.rand(2, 3), ["a", "b", "c"], query_tokens=["q"])
    with pytest.raises(ValueError, match="n_q=4 > n_k=3: pass query_tokens"):
        plots.attention_heatmap(torch.rand(4, 3), ["a", "b", "c"])
    assert len(plt.get_fignums()) == n_figures  # no figure left open by a rejected call


def test_figure_png_returns_png_bytes_and_closes():
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [1, 0])
    data = plots.figure_png(fig, dpi=50)
    assert isinstance(data, bytes) and data.startswith(PNG_SIGNATURE) and len(data) > 100
    assert not plt.fignum_exists(fig.number)


def test_colors_are_hex():
    for palette in (plots.COLORS, plots.SCHEME_COLORS):
        for color in palette.values():
            assert matplotlib.colors.is_color_like(color) and color.startswith("#") and len(color) == 7
    assert set(plots.SCHEME_COLORS) == {"mha", "gqa", "mqa", "mla", "dsa"}
