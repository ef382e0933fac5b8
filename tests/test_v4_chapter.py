"""Tests for what chapter 20 adds on top of attnlab.v4: the cache explorer's numbers against attnlab.costs (every
offered value, each layer type, the published 10% / 7%), its controls and silent callbacks, the exercise checks
(the worked solutions pass, the usual slips are named, the decode prediction is what a real layer holds), and
the animation's data read off a real CSA layer."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from attnlab import cache_formats, costs
from attnlab.exercises import ch20
from attnlab.interactive import v4 as v4_widgets
from attnlab.v4 import DeepSeekV4Attention, V4AttentionConfig

ROOT = Path(__file__).resolve().parents[1]


def load_solutions():
    spec = importlib.util.spec_from_file_location("solutions_ch20", ROOT / "notebooks" / "solutions" / "ch20.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- the explorer ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("formats", ["fp8", "bf16"])
@pytest.mark.parametrize("model", ["deepseek-v4-flash", "deepseek-v4-pro"])
def test_rows_add_up_to_the_cost_formulas_at_every_offered_context(model, formats):
    for context in v4_widgets.CONTEXTS:
        rows = v4_widgets.cache_rows(model, context, formats)
        expected = costs.v4_vs_v32_cache(model, context, formats)
        assert sum(r["bytes"] for r in rows[:-1]) == expected["v4_bytes"]
        assert rows[-1]["bytes"] == expected["v32_bytes"]
        spec = costs.V4_MODELS[model]
        assert {r["kind"]: r["layers"] for r in rows[:-1]} == {k: n for k, n in spec.layer_counts().items() if n}


def test_rows_count_what_one_layer_holds_by_hand():
    """V4-Pro at 128K in FP8: a CSA layer holds 128 raw vectors, 32768 entries and index keys; an HCA layer
    128 raw and 1024 entries; V3.2 61 layers of 131072 x (656 + 132) bytes."""
    rows = {r["kind"]: r for r in v4_widgets.cache_rows("deepseek-v4-pro", 2**17, "fp8")}
    assert (rows["csa"]["window"], rows["csa"]["entries"], rows["csa"]["index_keys"]) == (128, 32768, 32768)
    assert rows["csa"]["bytes_per_layer"] == (128 + 32768) * 584 + 32768 * 68
    assert (rows["hca"]["entries"], rows["hca"]["index_keys"], rows["hca"]["bytes_per_layer"]) == (1024, 0, 1152 * 584)
    assert rows["v3.2"]["bytes"] == 61 * 2**17 * (656 + 132)
    assert "sliding" not in rows  # V4-Pro has no sliding-only layer


def test_the_published_percentages_hold_in_the_serving_formats_only():
    at_1m = {m: costs.v4_vs_v32_cache(m, 2**20, "fp8")["ratio"] for m in costs.V4_MODELS}
    assert round(100 * at_1m["deepseek-v4-pro"]) == 10 and round(100 * at_1m["deepseek-v4-flash"]) == 7
    bf16 = costs.v4_vs_v32_cache("deepseek-v4-pro", 2**20, "bf16")
    assert round(bf16["times_smaller"], 1) == 8.7 and bf16["ratio"] > at_1m["deepseek-v4-pro"]
    assert cache_formats.DEEPSEEK_V4_FP8_ENTRY.bytes == 584 and cache_formats.DEEPSEEK_V4_FP4_INDEX_KEY.bytes == 68


def test_explorer_offers_only_valid_values_and_shows_what_cache_rows_gives(capsys):
    explorer = v4_widgets.v4_cache_explorer()
    assert [value for _, value in explorer.context.options] == list(v4_widgets.CONTEXTS)
    assert {value for _, value in explorer.model.options} == set(costs.V4_MODELS)
    assert {value for _, value in explorer.formats.options} == set(costs.V4_CACHE_FORMATS)
    for model in costs.V4_MODELS:
        for formats in costs.V4_CACHE_FORMATS:
            for context in (v4_widgets.CONTEXTS[0], v4_widgets.CONTEXTS[-1]):
                explorer.model.value, explorer.formats.value, explorer.context.value = model, formats, context
                assert explorer.table.value == v4_widgets.explorer_html(model, context, formats)
                ratio = costs.v4_vs_v32_cache(model, context, formats)["ratio"]
                assert f"{100 * ratio:.1f}%" in explorer.table.value
    assert capsys.readouterr() == ("", "")  # callbacks never print
    assert repr(explorer).startswith("V4CacheExplorer(")


@pytest.mark.parametrize("bad", [dict(model="deepseek-v3.2"), dict(context=1000), dict(formats="fp4")])
def test_explorer_refuses_values_it_does_not_offer(bad):
    args = dict(model="deepseek-v4-pro", context=2**20, formats="fp8") | bad
    name = next(iter(bad))
    with pytest.raises(ValueError, match=name):
        v4_widgets.cache_rows(**args)
    with pytest.raises(ValueError, match=name):
        v4_widgets.v4_cache_explorer(**args)


def test_context_labels():
    assert [v4_widgets.context_label(c) for c in (2**12, 2**17, 2**20)] == ["4K", "128K", "1M"]


# --- the exercises --------------------------------------------------------------------------------------


def test_solutions_pass_and_none_is_not_attempted():
    sol = load_solutions()
    assert ch20.check_visible_entries(sol.answer_csa_entries, sol.answer_hca_entries).startswith("✓")
    assert ch20.check_entry_bytes(sol.answer_entry_bytes, sol.answer_csa_bytes_per_token).startswith("✓")
    assert ch20.check_decode_prediction(sol.answer_entries, sol.answer_window, sol.answer_pending).startswith("✓")
    assert ch20.check_visible_entries(None, None).startswith("…")
    assert ch20.check_entry_bytes(None, 1).startswith("…")
    assert ch20.check_decode_prediction(1, None, 1).startswith("…")


def test_visible_entries_follow_the_layers_mask():
    """The expected answer is the rule the layer applies: a CSA layer with top-k above the entry count lets the
    query at t select exactly (t + 1) // m entries."""
    e = ch20.EXERCISE_1
    config = V4AttentionConfig(d_model=16, n_heads=2, q_lora_rank=8, o_groups=2, o_lora_rank=4, head_dim=8,
                               rope_head_dim=4, window=4, layer_type="csa", compress_rate=e["csa_rate"],
                               index_n_heads=2, index_head_dim=8, index_topk=64)
    torch.manual_seed(0)
    layer = DeepSeekV4Attention(config).double()
    t = e["csa_position"]
    with torch.no_grad():
        out = layer(torch.randn(1, t + 1, 16, dtype=torch.float64))
    assert int((out.selection.indices[0, t] >= 0).sum()) == ch20.expected_visible()[0]


@pytest.mark.parametrize("answer, slip", [
    ((9, 2), "token 39 itself completes"),
    ((5, 2), "windows start every m"),
    ((40, 2), "raw tokens"),
    ((10, 1), "last of block"),
    ((10, 3), "not yet"),
])
def test_visible_entries_name_the_slip(answer, slip):
    with pytest.raises(AssertionError, match=slip):
        ch20.check_visible_entries(*answer)


@pytest.mark.parametrize("answer, slip", [
    ((512, 163), "RoPE values stay in bfloat16"),
    ((1024, 163), "bfloat16 entry"),
    ((576, 163), "add the scales"),
    ((583, 163), "padding"),
    ((656, 163), "V3.2's MLA entry"),
    ((584, 652), "divide by 4"),
    ((584, 146), "index key"),
    ((584, 81.5), "every 4 tokens"),
    ((584, 160), "not yet"),
])
def test_entry_bytes_name_the_slip(answer, slip):
    with pytest.raises(AssertionError, match=slip):
        ch20.check_entry_bytes(*answer)


def test_decode_prediction_is_what_the_layer_holds():
    ran = ch20.run_decode()
    e = ch20.EXERCISE_3
    assert ran == {"entries": e["tokens"] // e["rate"], "window": e["window"], "pending": e["tokens"] % e["rate"],
                   "previous": e["rate"]}


@pytest.mark.parametrize("answer, slip", [
    ((2, 6, 2), "entry 0 has no window before it"),
    ((1, 6, 2), "one entry per m tokens"),
    ((3, 14, 2), "last W"),
    ((3, 6, 6), "previous window is kept apart"),
    ((3, 6, 1), "not yet"),
])
def test_decode_prediction_names_the_slip(answer, slip):
    with pytest.raises(AssertionError, match=slip):
        ch20.check_decode_prediction(*answer)


# --- the animation's data -------------------------------------------------------------------------------


def test_animation_reads_a_real_layers_selection():
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    pytest.importorskip("manim")
    from animations.ch20_deepseek_v4 import N_TOKENS, RATE, TOP_K, run_layer

    s = run_layer()
    assert s["entries"] == N_TOKENS // RATE and s["visible"] == (s["query"] + 1) // RATE
    assert len(s["chosen"]) == TOP_K == len(set(s["chosen"])) and all(0 <= w < s["visible"] for w in s["chosen"])
