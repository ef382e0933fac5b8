"""Chapters 10 (DeepSeek Sparse Attention) and 11 (quantization and rotation): the widgets, their pure
functions and helpers, and the exercise checks."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

from attnlab.dsa import (  # noqa: E402
    DeepSeekSparseAttention,
    crossover_context,
    indexer_config_for,
    layer_cost,
    selection_mask,
    topk_indices,
)
from attnlab.exercises import ch10, ch11  # noqa: E402
from attnlab.figures import figure_text, trace_data  # noqa: E402
from attnlab.interactive import dsa as W  # noqa: E402
from attnlab.mla import MLAConfig  # noqa: E402
from attnlab.model import TinyLM, TinyLMConfig, save_checkpoint  # noqa: E402
from attnlab.quant import SCALE_FORMATS, fake_quantize_fp8, fwht, hadamard_rotation, quantize_fp8_blocks  # noqa: E402
from attnlab.sizing import MODELS, format_bytes  # noqa: E402

SOLUTIONS = Path(__file__).resolve().parents[1] / "notebooks" / "solutions"
V32 = MODELS["deepseek-v3.2"]  # the model the chapter 10 widget and exercise count for


def load_solutions(chapter: str):
    spec = importlib.util.spec_from_file_location(f"solutions_{chapter}", SOLUTIONS / f"{chapter}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def values(slider) -> list:
    """The values a SelectionSlider or ToggleButtons offers (options may be (label, value) pairs)."""
    return [o[1] if isinstance(o, tuple) else o for o in slider.options]


# ----------------------------------------------------------------------------------------------------
# chapter 10: the cost explorer


@pytest.fixture(scope="module")
def cost_widget():
    return W.cost_explorer()


def test_cost_explorer_offers_only_valid_values(cost_widget):
    spec = MODELS["deepseek-v3.2"]
    assert values(cost_widget.context) == list(W.CONTEXT_OPTIONS)
    assert values(cost_widget.top_k) == list(W.TOPK_OPTIONS)
    assert all(isinstance(n, int) and 0 < n <= spec.max_context for n in W.CONTEXT_OPTIONS)
    assert all(isinstance(k, int) and k > 0 for k in W.TOPK_OPTIONS)
    assert spec.index_topk in W.TOPK_OPTIONS and 131_072 in W.CONTEXT_OPTIONS
    for n in W.CONTEXT_OPTIONS:  # every combination the sliders reach renders
        for k in W.TOPK_OPTIONS:
            W.decode_cost_figures(n, k)


def test_decode_cost_figures_are_layer_cost(cost_widget):
    for n, k in [(1024, 2048), (131_072, 2048), (8192, 512), (163_840, 8192)]:
        f = W.decode_cost_figures(n, k)
        c = layer_cost(V32, n, k)
        assert f["flops_dense"] == c["decode_flops_dense"] and f["flops_dsa"] == c["decode_flops_dsa"]
        assert f["flops_indexer"] + f["flops_sparse"] == f["flops_dsa"]
        assert f["bytes_dense"] == c["decode_bytes_dense"] and f["bytes_dsa"] == c["decode_bytes_dsa"]
        assert f["flops_ratio"] == c["decode_flops_dense"] / c["decode_flops_dsa"]
        assert f["prefill_ratio"] == c["prefill_flops_dense"] / c["prefill_flops_dsa"]
        assert f["selected"] == min(n, k)
        assert f["crossover_flops"] == crossover_context(V32, k, metric="decode_flops")
        assert f["crossover_bytes"] == crossover_context(V32, k, metric="decode_bytes")


@pytest.mark.parametrize("n, k", [(131_072, 2048), (1024, 2048), (16_384, 256), (4096, 8192)])
def test_moving_the_sliders_shows_layer_cost_numbers(cost_widget, n, k):
    cost_widget.context.value, cost_widget.top_k.value = n, k
    c = layer_cost(V32, n, k)
    shown = figure_text(cost_widget.chart) + cost_widget.readout.value
    assert W.format_flops(c["decode_flops_dense"]) in shown
    assert W.format_flops(c["decode_flops_dsa"]) in shown
    assert format_bytes(c["decode_bytes_dense"]) in shown
    assert format_bytes(c["decode_bytes_dsa"]) in shown
    assert f"{c['decode_flops_dense'] / c['decode_flops_dsa']:.2f}×" in cost_widget.readout.value
    assert f"L = {crossover_context(V32, k):,}" in cost_widget.readout.value
    assert f"context L = {n:,}" in figure_text(cost_widget.chart)
    assert trace_data(cost_widget.chart) == trace_data(W.cost_figure(n, k))
    first, second = (t.x for t in cost_widget.chart.data[:2])  # FLOPs panel: bars' 1st and 2nd segments
    assert (first[0], first[1], second[1]) == (
        c["decode_flops_dense"], c["decode_flops_indexer"], c["decode_flops_sparse"])  # dense; DSA stacked
    assert cost_widget.readout.value == W.cost_readout_html(n, k)


def test_slider_change_changes_the_shown_numbers(cost_widget):
    cost_widget.context.value, cost_widget.top_k.value = 131_072, 2048
    before = cost_widget.readout.value
    cost_widget.context.value = 4096
    after = cost_widget.readout.value
    assert before != after
    assert W.format_flops(layer_cost(V32, 4096)["decode_flops_dense"]) in after
    assert W.format_flops(layer_cost(V32, 4096)["decode_flops_dense"]) not in before
    cost_widget.top_k.value = 512
    assert f"L = {crossover_context(V32, 512):,}" in cost_widget.readout.value


def test_cost_chart_says_which_side_is_cheaper():
    assert "DSA" in figure_text(W.cost_figure(1024, 2048)) and "dearer" in figure_text(W.cost_figure(1024, 2048))
    assert "cheaper" in figure_text(W.cost_figure(131_072, 2048))


def test_cost_figure_is_pure():
    assert W.cost_figure(65_536, 1024).to_json() == W.cost_figure(65_536, 1024).to_json()


def test_cost_callbacks_do_not_print(cost_widget, capsys):
    for n in W.CONTEXT_OPTIONS:
        cost_widget.context.value = n
    for k in W.TOPK_OPTIONS:
        cost_widget.top_k.value = k
    assert capsys.readouterr() == ("", "")


def test_cost_repr_is_short_and_deterministic():
    assert repr(W.cost_explorer(8192, 512)) == "CostExplorer(context_len=8192, top_k=512)"


def test_cost_bad_input():
    with pytest.raises(ValueError, match="context_len=999"):
        W.cost_explorer(context_len=999)
    with pytest.raises(ValueError, match="top_k=3"):
        W.cost_explorer(top_k=3)
    with pytest.raises(ValueError, match="exceeds DeepSeek-V3.2's max_context"):
        W.decode_cost_figures(200_000, 2048)
    with pytest.raises(ValueError, match="top_k=0"):
        W.decode_cost_figures(1024, 0)
    with pytest.raises(ValueError, match="model='nonexistent'"):
        W.cost_explorer(model="nonexistent")


def test_format_flops():
    assert W.format_flops(36_507_222_016) == "36.5 GFLOP"
    assert W.format_flops(570_425_344) == "570 MFLOP"
    assert W.format_flops(999) == "999 FLOP"
    assert W.format_flops(2.2e12) == "2.20 TFLOP"


# ----------------------------------------------------------------------------------------------------
# chapter 10: the helpers the notebook uses on the tiny model


def make_dsa(q_lora_rank=None, seed=0) -> DeepSeekSparseAttention:
    config = MLAConfig(d_model=16, n_heads=2, kv_lora_rank=8, qk_nope_head_dim=4, qk_rope_head_dim=4,
                       q_lora_rank=q_lora_rank)
    torch.manual_seed(seed)
    layer = DeepSeekSparseAttention(config, indexer_config_for(config, 3, 8, 4)).double()
    with torch.no_grad():
        for p in layer.parameters():
            p.normal_(0.0, 0.5)
    return layer


@pytest.mark.parametrize("q_lora_rank", [None, 6])
def test_index_scores_match_the_indexer_and_interleaving_differs(q_lora_rank):
    layer = make_dsa(q_lora_rank)
    x = torch.randn(2, 9, 16, dtype=torch.float64)
    q_input = None if q_lora_rank is None else layer.query_input(x)
    with torch.no_grad():
        halves = W.index_scores(layer, x)
        interleaved = W.index_scores(layer, x, interleaved=True)
        torch.testing.assert_close(halves, layer.indexer(x, q_input), rtol=1e-12, atol=1e-12)
    finite = torch.isfinite(halves)
    assert torch.equal(finite, torch.isfinite(interleaved))  # same causal mask
    assert not torch.allclose(halves[finite], interleaved[finite])


def test_index_scores_interleaved_is_a_permutation_of_the_rope_coordinates():
    """Interleaved pairs (2i, 2i+1) are halves pairs (i, i + d/2) after reordering the RoPE coordinates."""
    layer = make_dsa()
    d = layer.indexer.config.rope_head_dim
    perm = torch.cat([torch.arange(0, d, 2), torch.arange(1, d, 2)])  # interleaved -> halves layout
    full = torch.cat([perm, torch.arange(d, layer.indexer.config.index_head_dim)])
    twin = make_dsa()
    with torch.no_grad():  # reorder W^IQ (per head) and W^IK rows so the twin's halves = the layer's interleaved
        h, di = layer.indexer.config.index_n_heads, layer.indexer.config.index_head_dim
        wq = layer.indexer.w_q.weight.view(h, di, -1)[:, full].reshape(h * di, -1)
        twin.indexer.w_q.weight.copy_(wq)
        twin.indexer.w_k.weight.copy_(layer.indexer.w_k.weight[full])
        twin.indexer.k_norm.weight.copy_(layer.indexer.k_norm.weight[full])
        twin.indexer.k_norm.bias.copy_(layer.indexer.k_norm.bias[full])
        twin.indexer.config = layer.indexer.config.__class__(**{**layer.indexer.config.__dict__, "hadamard": False})
        layer.indexer.config = twin.indexer.config
        x = torch.randn(1, 7, 16, dtype=torch.float64)
        torch.testing.assert_close(W.index_scores(layer, x, interleaved=True), W.index_scores(twin, x),
                                   rtol=1e-10, atol=1e-10)


def test_recent_selection():
    mask = W.recent_selection(6, 3)
    assert mask.shape == (6, 6) and mask.dtype == torch.bool
    assert mask.sum(-1).tolist() == [1, 2, 3, 3, 3, 3]
    assert mask[5].nonzero().flatten().tolist() == [3, 4, 5]
    assert not mask.triu(1).any()
    with pytest.raises(ValueError, match="top_k=0"):
        W.recent_selection(4, 0)


def test_attention_captured():
    torch.manual_seed(1)
    w = torch.softmax(torch.randn(2, 5, 5).masked_fill(~torch.ones(5, 5, dtype=torch.bool).tril(), -torch.inf), -1)
    everything = torch.ones(5, 5, dtype=torch.bool).tril()
    torch.testing.assert_close(W.attention_captured(w, everything), torch.ones(5, dtype=torch.float64))
    recent = W.recent_selection(5, 2)
    want = (w.double().mean(0) * recent).sum(-1)
    torch.testing.assert_close(W.attention_captured(w, recent), want)
    torch.testing.assert_close(W.attention_captured(w[0], recent), (w[0].double() * recent).sum(-1))
    with pytest.raises(ValueError, match="selected must be a boolean"):
        W.attention_captured(w, recent.float())


def test_selection_figure_outlines_every_selected_cell():
    scores = torch.randn(1, 6, 6).masked_fill(~torch.ones(6, 6, dtype=torch.bool).tril(), -torch.inf)
    selected = selection_mask(topk_indices(scores, 3), 6)[0]
    weights = torch.softmax(scores[0], -1)
    heat, outlined = W.selection_figure(weights, selected, [str(i) for i in range(6)]).data
    cells = sorted((heat.y.index(q), heat.x.index(k)) for q, k in zip(outlined.y, outlined.x, strict=True))
    assert cells == sorted(map(tuple, selected.nonzero().tolist()))
    assert heat.z[5][2] == round(float(weights[5, 2]), 4)
    assert (heat.y[5], heat.x[2]) == ("'5' 5", "'2' 2")  # hover: the query's and the key's token and position
    with pytest.raises(ValueError, match="selected must be a boolean"):
        W.selection_figure(torch.zeros(6, 6), torch.zeros(5, 5, dtype=torch.bool), list("abcdef"))


def test_tiny_dsa_model_prefers_the_trained_checkpoint(tmp_path):
    config = TinyLMConfig(d_model=32, n_layers=2, n_heads=4, d_ff=64, max_seq_len=32, kv_lora_rank=16,
                          qk_rope_head_dim=4, index_n_heads=2, index_head_dim=8, index_topk=4)
    torch.manual_seed(0)
    mla = TinyLM(TinyLMConfig(**{**config.__dict__, "attention": "mla"}))
    save_checkpoint(mla, tmp_path / "m.pt")
    model, source = W.tiny_dsa_model(dsa=tmp_path / "none.pt", mla=tmp_path / "m.pt")
    assert source == W.TINY_MLA and model.config.attention == "dsa"
    torch.testing.assert_close(model.blocks[1].attn.mla.w_o.weight, mla.blocks[1].attn.w_o.weight.half().float())
    dsa = TinyLM(TinyLMConfig(**{**config.__dict__, "attention": "dsa"}))
    save_checkpoint(dsa, tmp_path / "d.pt")
    model, source = W.tiny_dsa_model(torch.float64, dsa=tmp_path / "d.pt", mla=tmp_path / "m.pt")
    assert source == W.TINY_DSA and model.embed.weight.dtype == torch.float64
    with pytest.raises(ValueError, match="neither"):
        W.tiny_dsa_model(dsa=tmp_path / "x.pt", mla=tmp_path / "y.pt")


# ----------------------------------------------------------------------------------------------------
# chapter 11: the rotation explorer


@pytest.fixture(scope="module")
def rotation_widget():
    return W.rotation_explorer()


def test_rotation_explorer_offers_only_valid_values(rotation_widget):
    assert values(rotation_widget.outlier) == list(W.OUTLIER_OPTIONS)
    assert values(rotation_widget.block) == list(W.BLOCK_OPTIONS)
    assert values(rotation_widget.scale_format) == list(SCALE_FORMATS)
    assert all(128 % b == 0 for b in W.BLOCK_OPTIONS)
    assert all(m >= 0 for m in W.OUTLIER_OPTIONS)


def test_rotation_experiment_is_what_quant_gives():
    r = W.rotation_experiment(20, 64, "fp32")
    q, k = W.outlier_inputs(20)
    exact = q @ k.T
    for name, (qq, kk) in (("plain", (q, k)), ("rotated", (fwht(q), fwht(k)))):
        scores = fake_quantize_fp8(qq, 64, "fp32") @ fake_quantize_fp8(kk, 64, "fp32").T
        assert r[name]["overlap"] == W.topk_overlap(exact, scores, 64)
        k_hat = fake_quantize_fp8(kk, 64, "fp32")
        assert math.isclose(r[name]["key_error"], float((k_hat - kk).norm() / kk.norm()), rel_tol=1e-12)
    assert r["block"] == 64 and r["scale_format"] == "fp32" and r["top_k"] == 64


def test_rotation_keeps_dot_products_and_small_outliers_quantize_well():
    q, k = W.outlier_inputs(50)
    torch.testing.assert_close(fwht(q) @ fwht(k).T, q @ k.T, rtol=1e-12, atol=1e-9)
    r = W.rotation_experiment(0)
    assert r["plain"]["overlap"] > 0.9 and r["rotated"]["overlap"] > 0.9


@pytest.mark.parametrize("outlier, block, fmt", [(20, 128, "ue8m0"), (200, 32, "fp32"), (0, 64, "fp32")])
def test_moving_the_outlier_slider_shows_the_experiment(rotation_widget, outlier, block, fmt):
    rotation_widget.outlier.value = outlier
    rotation_widget.block.value = block
    rotation_widget.scale_format.value = fmt
    r = W.rotation_experiment(outlier, block, fmt)
    shown = rotation_widget.readout.value
    assert f"{r['plain']['overlap']:.1%} · {r['rotated']['overlap']:.1%}" in shown
    assert f"{r['plain']['key_error']:.2%} · {r['rotated']['key_error']:.2%}" in shown
    assert trace_data(rotation_widget.chart) == trace_data(W.rotation_figure(outlier, block, fmt))
    plain, rotated, now = rotation_widget.chart.data
    at = W.OUTLIER_OPTIONS.index(outlier)
    assert (plain.y[at], rotated.y[at]) == (r["plain"]["overlap"], r["rotated"]["overlap"])
    assert list(now.y) == [r["plain"]["overlap"], r["rotated"]["overlap"]] and set(now.x) == {at}
    assert f"overlap {r['rotated']['overlap']:.1%}" in " ".join(now.text)
    assert rotation_widget.chart.layout.shapes[0].x0 == at  # the dashed line at the chosen magnitude


def test_outlier_slider_change_changes_the_numbers(rotation_widget):
    rotation_widget.block.value, rotation_widget.scale_format.value = 128, "ue8m0"
    rotation_widget.outlier.value = 0
    before = rotation_widget.readout.value
    rotation_widget.outlier.value = 50
    assert rotation_widget.readout.value != before
    r = W.rotation_experiment(50, 128, "ue8m0")
    assert f"{r['plain']['overlap']:.1%}" in rotation_widget.readout.value


def test_rotation_callbacks_do_not_print(rotation_widget, capsys):
    for m in W.OUTLIER_OPTIONS[:4]:
        rotation_widget.outlier.value = m
    rotation_widget.scale_format.value = "fp32"
    rotation_widget.scale_format.value = "ue8m0"
    assert capsys.readouterr() == ("", "")


def test_rotation_figure_is_pure():
    assert W.rotation_figure(10, 128, "ue8m0").to_json() == W.rotation_figure(10, 128, "ue8m0").to_json()


def test_rotation_repr():
    assert repr(W.rotation_explorer(5, 64, "fp32")) == "RotationExplorer(outlier=5, block=64, scale_format='fp32')"


def test_ue8m0_quantization_does_not_depend_on_the_block():
    """With power-of-two scales, FP8 quantization is rounding to 3 mantissa bits (away from the range edges)."""
    x = torch.randn(8, 128, dtype=torch.float64)
    assert torch.equal(fake_quantize_fp8(x, 32, "ue8m0"), fake_quantize_fp8(x, 128, "ue8m0"))
    assert not torch.equal(fake_quantize_fp8(x, 32, "fp32"), fake_quantize_fp8(x, 128, "fp32"))


def test_outlier_inputs():
    q, k = W.outlier_inputs(7.0, n_queries=3, n_keys=5, seed=2)
    q0, k0 = W.outlier_inputs(0.0, n_queries=3, n_keys=5, seed=2)
    channels = list(W.OUTLIER_CHANNELS)
    torch.testing.assert_close(q[:, channels] - q0[:, channels], torch.full((3, 4), 7.0, dtype=torch.float64))
    others = [c for c in range(128) if c not in channels]
    assert torch.equal(k[:, others], k0[:, others])
    assert torch.equal(W.outlier_inputs(7.0, seed=2)[1], W.outlier_inputs(7.0, seed=2)[1])


def test_topk_overlap():
    a = torch.tensor([[4.0, 3.0, 2.0, 1.0]])
    assert W.topk_overlap(a, a, 2) == 1.0
    assert W.topk_overlap(a, -a, 2) == 0.0
    assert W.topk_overlap(a, torch.tensor([[4.0, 0.0, 3.0, 1.0]]), 2) == 0.5
    with pytest.raises(ValueError, match="top_k=5 exceeds"):
        W.topk_overlap(a, a, 5)


def test_rotation_bad_input():
    with pytest.raises(ValueError, match="outlier=3"):
        W.rotation_figure(3)
    with pytest.raises(ValueError, match="block=48"):
        W.rotation_explorer(block=48)
    with pytest.raises(ValueError, match="scale_format='e5m2'"):
        W.rotation_readout_html(10, 128, "e5m2")
    with pytest.raises(ValueError, match="outlier=-1"):
        W.outlier_inputs(-1)
    with pytest.raises(ValueError, match="block=48 must divide"):
        W.rotation_experiment(10, 48)


# ----------------------------------------------------------------------------------------------------
# exercises


def test_solutions_pass_the_checks():
    s10, s11 = load_solutions("ch10"), load_solutions("ch11")
    assert ch10.check_causal_topk(s10.answer_causal_topk).startswith("✓")
    assert ch10.check_index_scores(s10.answer_index_scores).startswith("✓")
    assert ch10.check_crossover(s10.answer_crossover).startswith("✓")
    assert ch10.check_prediction_decode_speedup(s10.prediction_decode_speedup).startswith("✓")
    assert ch11.check_ue8m0_scale(s11.answer_ue8m0_scale).startswith("✓")
    assert ch11.check_fwht(s11.answer_fwht).startswith("✓")
    assert ch11.check_block_fp8(s11.answer_block_fp8).startswith("✓")
    assert ch11.check_prediction_ue8m0_cost(s11.prediction_ue8m0_cost).startswith("✓")


def test_unattempted_exercises_say_so():
    for check in (ch10.check_causal_topk, ch10.check_index_scores, ch10.check_crossover,
                  ch11.check_ue8m0_scale, ch11.check_fwht, ch11.check_block_fp8):
        assert "not attempted" in check(None)
    for check in (ch10.check_prediction_decode_speedup, ch11.check_prediction_ue8m0_cost):
        assert "write your prediction first" in check(None)


def test_expected_answers_agree_with_the_library():
    c = ch10.exercise_3_constants()
    k = ch10.EXERCISE_3["top_k"]
    assert ch10.expected_crossover() == (c["C_attn"] * k + c["F_proj"]) // (c["C_attn"] - c["C_idx"]) + 1
    at = layer_cost(V32, ch10.expected_crossover(), k)
    before = layer_cost(V32, ch10.expected_crossover() - 1, k)
    assert at["decode_flops_dsa"] < at["decode_flops_dense"]
    assert before["decode_flops_dsa"] >= before["decode_flops_dense"]
    assert ch11.expected_ue8m0_scale() == 2.0**-6


def test_causal_topk_reports_the_prefill_pairs():
    """The pair count the old arithmetic exercise asked for is now the check's lesson: k(k+1)/2 + (L - k) k."""
    verdict = ch10.check_causal_topk(load_solutions("ch10").answer_causal_topk)
    assert f"{2048 * 2049 // 2 + (8192 - 2048) * 2048:,} pairs" in verdict


def _topk_unmasked(scores, k):
    return scores.topk(min(k, scores.shape[1]), dim=-1).indices


def _topk_unpadded(scores, k):
    return load_solutions("ch10").answer_causal_topk(scores, k).clamp(min=0)


def _topk_ascending(scores, k):
    return _by_position(load_solutions("ch10").answer_causal_topk(scores, k))


def _by_position(got):
    """The right keys, sorted by position instead of by score (padding kept last)."""
    key = torch.where(got < 0, got.shape[-1] * 10**6, got)
    return got.gather(-1, key.argsort(-1))


@pytest.mark.parametrize("wrong, hint", [
    (_topk_unmasked, "in its future"),
    (_topk_unpadded, "padding"),
    (_topk_ascending, "wrong order"),
    (lambda scores, k: scores, "integers"),
    (lambda scores, k: torch.zeros(1, 1, dtype=torch.long), "shape"),
    (3, "should be a function"),
])
def test_wrong_causal_topk_fail(wrong, hint):
    with pytest.raises(AssertionError, match=hint):
        ch10.check_causal_topk(wrong)


def _no_relu(q, w, k):
    return torch.einsum("tj,tjs->ts", w, torch.einsum("tjd,sd->tjs", q, k))


def _relu_outside(q, w, k):
    return torch.relu(_no_relu(q, w, k))


def _no_weights(q, w, k):
    return torch.relu(torch.einsum("tjd,sd->tjs", q, k)).sum(1)


def _softmax(q, w, k):
    return torch.einsum("tj,tjs->ts", w, torch.softmax(torch.einsum("tjd,sd->tjs", q, k), -1))


def _scaled(q, w, k):
    return load_solutions("ch10").answer_index_scores(q, w, k) * q.shape[-1] ** -0.5


def _transposed(q, w, k):
    return load_solutions("ch10").answer_index_scores(q, w, k).T


def _masked(q, w, k):  # a causal mask on top is fine: the check compares the causal entries only
    scores = load_solutions("ch10").answer_index_scores(q, w, k)
    t, s = scores.shape
    allowed = torch.arange(s)[None, :] <= torch.arange(s - t, s)[:, None]
    return scores.masked_fill(~allowed, float("-inf"))


def _crashes(*args):
    raise RuntimeError("boom")


@pytest.mark.parametrize("wrong, hint", [
    (_no_relu, "apply ReLU"),
    (_relu_outside, "ReLU goes on each head"),
    (_no_weights, "weight head j"),
    (_softmax, "not a softmax"),
    (_scaled, "leave out"),
    (_transposed, "shape"),
    (_crashes, "raised RuntimeError: boom"),
    (lambda q, w, k: None, "return a tensor"),
    (3, "should be a function"),
])
def test_wrong_index_scores_fail(wrong, hint):
    with pytest.raises(AssertionError, match=hint):
        ch10.check_index_scores(wrong)


def test_masked_index_scores_pass():
    assert ch10.check_index_scores(_masked).startswith("✓")


@pytest.mark.parametrize("wrong, hint", [
    (1024, "L = k"),
    (1089, "F_proj"),
    (1195, "strictly cheaper"),
    (2284, "not yet"),
    ("1196", "should be a number"),
])
def test_wrong_crossovers_fail(wrong, hint):
    with pytest.raises(AssertionError, match=hint):
        ch10.check_crossover(wrong)


@pytest.mark.parametrize("wrong, hint", [
    (3.7 / 448, "fp32 scale"),
    (2.0**-7, "round the exponent up"),
    (64.0, "not its inverse"),
    (448 / 3.7, "not its inverse"),
    (4.0, "divide amax by 448"),
    (2.0**-5, "not yet"),
    (True, "should be a number"),
])
def test_wrong_ue8m0_scales_fail(wrong, hint):
    with pytest.raises(AssertionError, match=hint):
        ch11.check_ue8m0_scale(wrong)


def _butterflies(x):
    """The worked solution: the check forbids the library's fwht, so the slips below start from it."""
    return load_solutions("ch11").answer_fwht(x)


def _unnormalized(x):
    return _butterflies(x) * x.shape[-1] ** 0.5


def _twice_scaled(x):
    return _butterflies(x) / x.shape[-1] ** 0.5


def _first_axis(x):
    return _butterflies(x.transpose(0, -1)).transpose(0, -1) if x.dim() > 1 else _butterflies(x)


def _wrong_pairs(x):  # one butterfly stage too few
    n = x.shape[-1]
    return _butterflies(x) if n <= 2 else _butterflies(x.reshape(*x.shape[:-1], 2, n // 2)).reshape(x.shape)


def _flattened(x):
    return _butterflies(x).flatten()


@pytest.mark.parametrize("wrong, hint", [
    (_unnormalized, "1 / sqrt"),
    (_twice_scaled, "scaled twice"),
    (_first_axis, "first axis"),
    (_wrong_pairs, "differs from x H"),
    (_flattened, "keeps the shape"),
    (_crashes, "raised RuntimeError: boom"),
    (lambda x: x.tolist(), "return a tensor"),
    ("fwht", "should be a function"),
])
def test_wrong_fwht_fail(wrong, hint):
    with pytest.raises(AssertionError, match=hint):
        ch11.check_fwht(wrong)


def test_library_hadamard_is_refused():
    for shortcut in (fwht, lambda x: x @ hadamard_rotation(x.shape[-1], x.dtype, x.device)):
        with pytest.raises(AssertionError, match="Hadamard"):
            ch11.check_fwht(shortcut)


def _fp32_scales(x, block):
    blocks = x.reshape(*x.shape[:-1], -1, block)
    scales = blocks.abs().amax(-1).clamp_min(1e-4) / 448
    return (blocks / scales[..., None]).to(torch.float8_e4m3fn).reshape(x.shape), scales


def _rounded_down(x, block):
    blocks = x.reshape(*x.shape[:-1], -1, block)
    scales = torch.exp2(torch.floor(torch.log2(blocks.abs().amax(-1).clamp_min(1e-4) / 448)))
    return (blocks / scales[..., None]).clamp(-448, 448).to(torch.float8_e4m3fn).reshape(x.shape), scales


def _no_floor(x, block):
    blocks = x.reshape(*x.shape[:-1], -1, block)
    scales = torch.exp2(torch.ceil(torch.log2(blocks.abs().amax(-1) / 448)))
    return (blocks / scales[..., None]).to(torch.float8_e4m3fn).reshape(x.shape), scales


def _not_fp8(x, block):
    x_fp8, scales = load_solutions("ch11").answer_block_fp8(x, block)
    return x_fp8.float(), scales


def _one_scale(x, block):
    scale = torch.exp2(torch.ceil(torch.log2(x.abs().amax().clamp_min(1e-4) / 448)))
    return (x / scale).to(torch.float8_e4m3fn), scale.reshape(1)


@pytest.mark.parametrize("wrong, hint", [
    (_fp32_scales, "fp32 scales"),
    (_rounded_down, "rounded DOWN"),
    (_no_floor, "clamp amax below"),
    (_not_fp8, "float8_e4m3fn"),
    (_one_scale, "one scale per block"),
    (lambda x, block: quantize_fp8_blocks(x, block, "ue8m0"), "block quantizer"),
    (lambda x, block: x, "two tensors"),
])
def test_wrong_block_fp8_fail(wrong, hint):
    with pytest.raises(AssertionError, match=hint):
        ch11.check_block_fp8(wrong)


def test_predictions_explain_wrong_guesses():
    verdict = ch10.check_prediction_decode_speedup(64)
    assert verdict.startswith("✗") and "L / k counts the attention alone" in verdict
    verdict = ch11.check_prediction_ue8m0_cost(2.0)
    assert verdict.startswith("✗") and "does NOT cost a factor" in verdict
