"""Chapters 5 (MQA) and 6 (GQA): the widgets show what attnlab.gqa and attnlab.sizing compute, offer only
valid KV-head counts, and the exercise checks accept the worked solutions and reject the usual slips."""

from __future__ import annotations

import math
import re
import runpy
import xml.etree.ElementTree as ET
from pathlib import Path

import ipywidgets
import pytest
import torch

from attnlab import sizing
from attnlab.exercises import ch05, ch06
from attnlab.figures import figure_text, trace_data
from attnlab.gqa import repeat_kv
from attnlab.interactive import gqa as ui
from attnlab.sizing import MODELS

SOLUTIONS = Path(__file__).resolve().parents[1] / "notebooks" / "solutions"


@pytest.fixture(scope="module")
def sol05() -> dict:
    return runpy.run_path(str(SOLUTIONS / "ch05.py"))


@pytest.fixture(scope="module")
def sol06() -> dict:
    return runpy.run_path(str(SOLUTIONS / "ch06.py"))


def svg_root(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def rects(svg: str) -> list[ET.Element]:
    return [e for e in svg_root(svg).iter() if e.tag.endswith("rect")]


def shown_text(html_text: str) -> str:
    return re.sub(r"<[^>]+>", " ", html_text)


# ------------------------------------------------------------------ pure functions


@pytest.mark.parametrize("n_heads", [1, 7, 8, 12, 28, 32, 64, 71, 128])
def test_kv_head_options_are_exactly_the_divisors(n_heads):
    options = ui.kv_head_options(n_heads)
    assert options == [n for n in range(1, n_heads + 1) if n_heads % n == 0]
    assert options[0] == 1 and options[-1] == n_heads


def test_valid_kv_heads_for_12():
    assert ui.kv_head_options(12) == [1, 2, 3, 4, 6, 12]


@pytest.mark.parametrize("n_heads,n_kv", [(8, 8), (8, 4), (8, 2), (8, 1), (12, 3), (71, 1), (128, 16)])
def test_kv_head_of_matches_repeat_kv(n_heads, n_kv):
    # repeat_kv is the explicit copy grouped_attention avoids: entry h of the repeated heads is KV head g(h)
    heads = torch.arange(n_kv).view(1, n_kv, 1, 1)
    assert ui.kv_head_of(n_heads, n_kv) == repeat_kv(heads, n_heads // n_kv).flatten().tolist()


def test_kv_head_of_rejects_non_divisors_with_the_library_message():
    with pytest.raises(ValueError, match="n_heads=12 is not divisible by n_kv_heads=5"):
        ui.kv_head_of(12, 5)
    with pytest.raises(ValueError, match="n_kv_heads=0"):
        ui.sharing_svg(8, 0)


@pytest.mark.parametrize("n_heads,n_kv", [(8, 8), (8, 2), (8, 1), (32, 8), (71, 71), (128, 16)])
def test_sharing_svg_draws_every_head_and_one_line_per_query_head(n_heads, n_kv):
    svg = ui.sharing_svg(n_heads, n_kv)
    root = svg_root(svg)  # well-formed XML
    lines = [e for e in root.iter() if e.tag.endswith("line")]
    assert len(lines) == n_heads
    query_boxes = [r for r in rects(svg) if r.get("fill") == ui.COLORS["query"]]
    key_boxes = [r for r in rects(svg) if r.get("fill") == ui.COLORS["key"]]
    value_boxes = [r for r in rects(svg) if r.get("fill") == ui.COLORS["value"]]
    assert (len(query_boxes), len(key_boxes), len(value_boxes)) == (n_heads, n_kv, n_kv)
    # every line starts under its query head and ends over the KV head kv_head_of names
    kv_centres = [float(k.get("x")) + float(k.get("width")) for k in key_boxes]  # K is the left half
    owner = ui.kv_head_of(n_heads, n_kv)
    for h, line in enumerate(lines):
        q = query_boxes[h]
        assert math.isclose(float(line.get("x1")), float(q.get("x")) + float(q.get("width")) / 2, abs_tol=0.11)
        assert math.isclose(float(line.get("x2")), kv_centres[owner[h]], abs_tol=0.11)


def test_sharing_svg_names_the_scheme():
    assert "MHA" in ui.sharing_svg(8, 8) and "MQA" in ui.sharing_svg(8, 1) and "GQA" in ui.sharing_svg(8, 2)
    assert ui.sharing_svg(8, 2) == ui.sharing_svg(8, 2)  # pure


@pytest.mark.parametrize("key", sorted(MODELS))
def test_gqa_figures_come_from_sizing(key):
    spec = MODELS[key]
    for n_kv in ui.kv_head_options(spec.n_heads):
        f = ui.gqa_figures(spec, n_kv)
        assert f["bytes_per_token"] == sizing.cache_bytes_per_token(spec, "bfloat16", "gqa", n_kv)
        # 2 n_g d_h numbers in bf16 on each layer that keeps a cache, at that layer's d_h (Gemma 4: 512 on full)
        head_dims = [spec.global_head_dim if kind == "full" and spec.global_head_dim else spec.head_dim
                     for i, kind in enumerate(spec.layer_types) if spec.kv_sources[i] == i and kind != "linear"]
        assert f["bytes_per_token"] == sum(2 * n_kv * d_h * 2 for d_h in head_dims)
        assert f["reduction_vs_mha"] == spec.n_heads / n_kv
        assert f["cache_bytes"] == sizing.kv_cache_bytes(spec, ui.READOUT_CONTEXT, 1, "bfloat16", "gqa", n_kv)


def test_deepseek_v3_gqa_is_marked_a_what_if_and_16_groups_give_8x():
    f = ui.gqa_figures("deepseek-v3", 16)
    assert f["reduction_vs_mha"] == 8 and not f["is_published"]
    text = shown_text(ui.gqa_readout_html("deepseek-v3", 16))
    assert "does not use GQA" in text and "what-if" in text and "8× smaller" in text
    assert ui.start_kv_heads("deepseek-v3") == 16


def test_published_gqa_models_are_marked_as_published():
    for key in ("llama-3-8b", "llama-3-70b", "mistral-7b", "qwen2.5-7b"):
        spec = MODELS[key]
        assert ui.gqa_figures(spec, spec.n_kv_heads)["is_published"]
        assert "as published" in ui.gqa_readout_html(spec, spec.n_kv_heads)
        assert "What-if" in ui.gqa_readout_html(spec, 1)


# ------------------------------------------------------------------ the GQA explorer


@pytest.fixture
def explorer():
    return ui.gqa_explorer("llama-3-8b")


def test_gqa_explorer_is_a_container_with_a_deterministic_repr(explorer):
    assert isinstance(explorer, ipywidgets.Box)
    assert isinstance(explorer.n_kv_heads, ipywidgets.SelectionSlider)
    assert repr(explorer) == "GQAExplorer(model='llama-3-8b', n_kv_heads=8)"


@pytest.mark.parametrize("key", sorted(MODELS))
def test_slider_offers_exactly_the_divisors_of_each_models_heads(explorer, key):
    explorer.model.value = key
    spec = MODELS[key]
    assert list(explorer.n_kv_heads.options) == ui.kv_head_options(spec.n_heads)
    assert explorer.n_kv_heads.value == ui.start_kv_heads(spec)
    assert ui.gqa_readout_html(spec, explorer.n_kv_heads.value) == explorer.readout.value


def test_moving_the_slider_changes_diagram_and_bytes_to_what_sizing_gives(explorer):
    spec = MODELS["llama-3-8b"]
    seen = set()
    for n_kv in explorer.n_kv_heads.options:
        explorer.n_kv_heads.value = n_kv
        expected = sizing.cache_bytes_per_token(spec, "bfloat16", "gqa", n_kv)
        assert f"{expected:,} B" in explorer.readout.value
        key_boxes = [r for r in rects(explorer.diagram.value) if r.get("fill") == ui.COLORS["key"]]
        assert len(key_boxes) == n_kv
        seen.add(explorer.diagram.value)
    assert len(seen) == len(explorer.n_kv_heads.options)  # a different diagram at every setting


def test_switching_model_then_sliding(explorer):
    explorer.model.value = "deepseek-v3"
    explorer.n_kv_heads.value = 128
    assert f"{sizing.cache_bytes_per_token('deepseek-v3', 'bfloat16', 'mha'):,} B" in explorer.readout.value
    explorer.n_kv_heads.value = 1
    assert f"{sizing.cache_bytes_per_token('deepseek-v3', 'bfloat16', 'mqa'):,} B" in explorer.readout.value
    explorer.model.value = "falcon-7b"
    assert list(explorer.n_kv_heads.options) == [1, 71]  # 71 is prime: only MQA or MHA
    assert explorer.n_kv_heads.value == 1


def test_callbacks_do_not_print(explorer, capsys):
    explorer.model.value = "qwen2.5-7b"
    explorer.n_kv_heads.value = 7
    assert capsys.readouterr().out == ""


# ------------------------------------------------------------------ the MQA decode explorer


def test_decode_read_bytes_adds_weights_and_cache():
    r = ui.decode_read_bytes("llama-2-7b", 4096, 8, "mha")
    assert r["weights"] == sizing.weight_bytes("llama-2-7b")
    assert r["cache"] == 8 * 4096 * sizing.cache_bytes_per_token("llama-2-7b", "bfloat16", "mha")
    assert r["total"] == r["weights"] + r["cache"] and r["per_token"] == r["total"] / 8
    mqa = ui.decode_read_bytes("llama-2-7b", 4096, 8, "mqa")
    assert r["cache"] == 32 * mqa["cache"] and r["weights"] == mqa["weights"]


def test_decode_explorer_follows_its_controls():
    w = ui.mqa_decode_explorer()
    assert repr(w) == "MQADecodeExplorer(model='llama-2-7b', seq_len=4096, batch=8)"
    assert set(w.model.options) == {(MODELS[k].name, k) for k in ui.DENSE_MODELS}
    assert "deepseek-v3" not in ui.DENSE_MODELS  # MoE: n_params are not all read per step
    chart, before = w.chart, trace_data(w.chart)
    w.batch.value = 64
    w.seq_len.value = 32768
    assert w.chart is chart and trace_data(w.chart) != before  # the same figure, updated in place
    assert trace_data(w.chart) == trace_data(ui.decode_figure("llama-2-7b", 32768, 64))
    mha = ui.decode_read_bytes("llama-2-7b", 32768, 64, "mha")
    mqa = ui.decode_read_bytes("llama-2-7b", 32768, 64, "mqa")
    weights, cache = w.chart.data[0], w.chart.data[1]  # stacked: weights, then the K/V cache
    assert list(weights.x) == [mha["weights"], mqa["weights"]] and list(cache.x) == [mha["cache"], mqa["cache"]]
    assert sizing.format_bytes(mha["total"]) in figure_text(w.chart)
    assert w.readout.value == ui.decode_readout_html("llama-2-7b", 32768, 64)
    w.model.value = "falcon-7b"
    assert "71× less" in shown_text(w.readout.value)
    assert "Falcon" in figure_text(w.chart)


def test_decode_explorer_rejects_bad_arguments():
    with pytest.raises(ValueError, match="dense"):
        ui.mqa_decode_explorer("deepseek-v3")
    with pytest.raises(ValueError, match="batch"):
        ui.mqa_decode_explorer(batch=3)
    with pytest.raises(ValueError, match="seq_len"):
        ui.mqa_decode_explorer(seq_len=1000)


# ------------------------------------------------------------------ exercises, chapter 5


def test_ch05_solutions_pass(sol05):
    assert ch05.check_prediction_mqa_parameters(sol05["prediction_mqa_parameters"]).startswith("✓")
    assert ch05.check_mqa_attention(sol05["answer_mqa_attention"]).startswith("✓")
    assert ch05.check_cache_dominates(sol05["answer_cache_dominates"]).startswith("✓")
    assert sol05["answer_cache_dominates"] == ch05.expected_cache_dominates()


@pytest.mark.parametrize("check", [ch05.check_mqa_attention, ch05.check_cache_dominates, ch06.check_mean_pool,
                                   ch06.check_gqa_attention])
def test_none_means_not_attempted(check):
    assert "not attempted" in check(None)


@pytest.mark.parametrize("check", [ch05.check_prediction_mqa_parameters, ch06.check_prediction_gqa_flops])
def test_no_prediction_runs_nothing(check):
    assert "write your prediction first" in check(None)


def test_ch05_parameter_prediction_explains_with_counts():
    """The layers are counted, not assumed: 4 d^2 against 2 d^2 + 2 d d_h; guessing the cache's 8x is named."""
    counted = ch05.layer_parameters()
    assert (counted["mha"], counted["mqa"]) == (4 * 512 * 512, 2 * 512 * 512 + 2 * 512 * 64)
    verdict = ch05.check_prediction_mqa_parameters(8)
    assert verdict.startswith("✗") and "CACHE" in verdict and "1.78×" in verdict
    with pytest.raises(AssertionError, match="positive"):
        ch05.check_prediction_mqa_parameters(-1)


def _mqa_non_causal(q, k, v):
    weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)
    return weights @ v


def _mqa_unscaled(q, k, v):
    n = q.shape[-2]
    scores = (q @ k.transpose(-2, -1)).masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


def _mqa_one_head(q, k, v):
    return _mqa_non_causal(q[:, :1], k, v)


@pytest.mark.parametrize("wrong,hint", [
    (_mqa_non_causal, "future"),
    (_mqa_unscaled, "1 / sqrt(d)"),
    (_mqa_one_head, "q's shape"),
    (lambda q, k, v: q, "differs"),
    (lambda q, k, v: 1 / 0, "ZeroDivisionError"),
    (42, "function"),
])
def test_ch05_mqa_attention_wrong_answers_fail(wrong, hint):
    with pytest.raises(AssertionError, match=re.escape(hint)):
        ch05.check_mqa_attention(wrong)


@pytest.mark.parametrize("wrong,hint", [
    ((201, 7), "swapped"),
    ((6, 200), "one short"),
    ((7, 7), "MQA"),
    ((1, 201), "MHA"),
    (7, "pair"),
    ((7.5, 201), "whole numbers"),
])
def test_ch05_cache_dominates_wrong_answers_fail(wrong, hint):
    with pytest.raises(AssertionError, match=re.escape(hint)):
        ch05.check_cache_dominates(wrong)


# ------------------------------------------------------------------ exercises, chapter 6


def test_ch06_solutions_pass(sol06):
    assert ch06.check_mean_pool(sol06["answer_mean_pool"]).startswith("✓")
    assert ch06.check_gqa_attention(sol06["answer_gqa_attention"]).startswith("✓")
    assert ch06.check_prediction_gqa_flops(sol06["prediction_gqa_flops"]).startswith("✓")


def _pool_sum(w, n_heads, n_kv):
    d = w.shape[0] // n_heads
    return w.reshape(n_kv, n_heads // n_kv, d, -1).sum(dim=1).reshape(n_kv * d, -1)


def _pool_strided(w, n_heads, n_kv):
    d = w.shape[0] // n_heads
    return w.reshape(n_heads // n_kv, n_kv, d, -1).mean(dim=0).reshape(n_kv * d, -1)


def _pool_first_head(w, n_heads, n_kv):
    d = w.shape[0] // n_heads
    return w.reshape(n_kv, n_heads // n_kv, d, -1)[:, 0].reshape(n_kv * d, -1)


def test_ch06_check_mean_pool_leaves_the_global_rng_alone(sol06):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    ch06.check_mean_pool(sol06["answer_mean_pool"])
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("wrong,hint", [
    (_pool_sum, "sum"),
    (_pool_strided, "NEIGHBOURING"),
    (_pool_first_head, "differ"),
    (lambda w, n_heads, n_kv: w, "should be"),
    (lambda w, n_heads, n_kv: w.view(3, 5), "raised"),
    ("mean", "function"),
])
def test_ch06_mean_pool_wrong_answers_fail(wrong, hint):
    with pytest.raises(AssertionError, match=re.escape(hint)):
        ch06.check_mean_pool(wrong)


def _gqa_strided(q, k, v):
    """Query head h reads KV head h % g: the usual slip."""
    idx = torch.arange(q.shape[1]) % k.shape[1]
    return _causal(q, k[:, idx], v[:, idx])


def _causal(q, k, v):
    n = q.shape[-2]
    scores = (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).masked_fill(
        torch.ones(n, n, dtype=torch.bool).triu(1), float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


def _gqa_non_causal(q, k, v):
    r = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(r, dim=1), v.repeat_interleave(r, dim=1)
    return torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1) @ v


@pytest.mark.parametrize("wrong,hint", [
    (_gqa_strided, "h // r"),
    (_gqa_non_causal, "causal"),
    (lambda q, k, v: q[:, :1], "output has shape"),
    (lambda q, k, v: q, "differs"),
    (3, "function"),
])
def test_ch06_gqa_attention_wrong_answers_fail(wrong, hint):
    with pytest.raises(AssertionError, match=re.escape(hint)):
        ch06.check_gqa_attention(wrong)


def test_ch06_repeat_interleave_is_allowed():
    """Copying K and V per query head is wasteful, not wrong: the check accepts it."""
    def copied(q, k, v):
        r = q.shape[1] // k.shape[1]
        return _causal(q, k.repeat_interleave(r, dim=1), v.repeat_interleave(r, dim=1))

    assert ch06.check_gqa_attention(copied).startswith("✓")


def test_ch06_gqa_flops_prediction_names_the_cache_share():
    verdict = ch06.check_prediction_gqa_flops(0.25)
    assert verdict.startswith("✗") and "cache's share" in verdict and "4× less" in verdict
