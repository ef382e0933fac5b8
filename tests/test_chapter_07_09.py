"""Chapters 7-9 (MLA, absorption, decoupled RoPE): the low-rank analysis is Eckart-Young, the widgets show
what attnlab.sizing, attnlab.rope and the MLA layer compute and offer only valid values, and the exercise
checks accept the worked solutions and reject the usual slips."""

from __future__ import annotations

import dataclasses
import itertools
import re
import runpy
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode
from traitlets import TraitError

from attnlab import lowrank, sizing
from attnlab.costs import mla_decode_step_costs
from attnlab.exercises import ch07, ch08, ch09
from attnlab.figures import trace_data
from attnlab.gqa import AttentionConfig, GroupedQueryAttention
from attnlab.interactive import mla as ui
from attnlab.mla import MLAConfig, MultiHeadLatentAttention
from attnlab.model import TinyLM, TinyLMConfig
from attnlab.rope import apply_rope, interleaved_to_halves
from attnlab.sizing import MODELS

SOLUTIONS = Path(__file__).resolve().parents[1] / "notebooks" / "solutions"
F64 = torch.float64
V3 = MODELS["deepseek-v3"]


def shown_text(html_text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html_text))


def parse_svg(svg: str) -> ET.Element:
    root = ET.fromstring(svg)  # well-formed XML
    assert root.tag.endswith("svg")
    return root


def random_matrix(rows: int, cols: int, rank: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(rows, rank, generator=gen, dtype=F64) @ torch.randn(rank, cols, generator=gen, dtype=F64)


def fake_errors(head_dim: int = 16) -> dict[int, list[float]]:
    """Per-layer errors for every rank the chapter 7 slider reaches (two layers, decreasing in r)."""
    ranks = sorted({ui.tiny_rank(d, head_dim) for d in ui.DC_OPTIONS})
    top = max(ranks)
    return {r: [1 - r / top, (1 - r / top) ** 2] for r in ranks}


# ---------------------------------------------------------------------------------------- lowrank


@pytest.mark.parametrize("rows,cols,rank", [(30, 12, 12), (12, 30, 5), (40, 40, 7), (64, 16, 16)])
def test_lowrank_error_is_the_truncated_svd_error(rows, cols, rank):
    m = random_matrix(rows, cols, rank, seed=rows + cols) + 1e-3 * random_matrix(rows, cols, min(rows, cols), seed=1)
    for r in range(min(rows, cols) + 2):
        approx = lowrank.lowrank_approx(m, r)
        assert torch.linalg.matrix_rank(approx).item() <= r
        direct = ((m - approx).norm() / m.norm()).item()
        assert lowrank.lowrank_error(m, r)[0] == pytest.approx(direct, abs=1e-10)
    assert lowrank.lowrank_error(m, 0) == [pytest.approx(1.0)]
    assert lowrank.lowrank_error(m, [min(rows, cols), 10_000]) == [pytest.approx(0.0, abs=1e-12)] * 2


def test_lowrank_error_is_best_among_random_factorisations():
    m = random_matrix(50, 20, 20, seed=3)
    gen = torch.Generator().manual_seed(4)
    best = lowrank.lowrank_error(m, 5)[0]
    for _ in range(20):
        c = torch.randn(50, 5, generator=gen, dtype=F64)  # a random rank-5 "latent" per row
        w_fit = torch.linalg.lstsq(c, m).solution  # the best up-projection for it, (5, 20)
        assert ((m - c @ w_fit).norm() / m.norm()).item() >= best - 1e-12  # never beats the truncated SVD


def test_lowrank_error_reuses_given_singular_values_and_rejects_bad_input():
    m = random_matrix(10, 6, 4)
    s = lowrank.singular_values(m)
    assert lowrank.lowrank_error(m, [1, 2, 3], s=s) == lowrank.lowrank_error(m, [1, 2, 3])
    with pytest.raises(ValueError, match="rank"):
        lowrank.lowrank_error(m, -1)
    with pytest.raises(ValueError, match="all zeros"):
        lowrank.lowrank_error(torch.zeros(3, 3), 1)
    with pytest.raises(ValueError, match="m must be 2-D|m"):
        lowrank.singular_values(torch.zeros(3))


def test_budget_errors_sharing_always_wins():
    n_heads, d_h = 4, 6
    gen = torch.Generator().manual_seed(5)
    h = torch.randn(200, 16, generator=gen, dtype=F64)  # K and V are both linear in the same hidden state
    k = h @ torch.randn(16, n_heads * d_h, generator=gen, dtype=F64)
    v = h @ torch.randn(16, n_heads * d_h, generator=gen, dtype=F64)
    ranks = [8, 16, 24, 32, 48]
    out = lowrank.budget_errors(k, v, n_heads, ranks)
    assert out["shared"] == pytest.approx(lowrank.lowrank_error(lowrank.joint_kv(k, v), ranks))
    for shared, split, per_head in zip(out["shared"], out["per K and V"], out["per head"], strict=True):
        assert shared <= split + 1e-12 <= per_head + 2e-12
    assert out["shared"][ranks.index(16)] == pytest.approx(0.0, abs=1e-10)  # [K, V] has rank 16 = width of h
    with pytest.raises(ValueError, match="multiple of 2 \\* n_heads"):
        lowrank.budget_errors(k, v, n_heads, [4])
    with pytest.raises(ValueError, match="n_heads"):
        lowrank.budget_errors(k, v, 5, [10])


def test_joint_kv_scales_each_part_to_unit_norm():
    k, v = random_matrix(20, 8, 3), 100 * random_matrix(20, 5, 2, seed=2)
    j = lowrank.joint_kv(k, v)
    assert j.shape == (20, 13)
    assert j[:, :8].norm().item() == pytest.approx(1.0) and j[:, 8:].norm().item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="rows"):
        lowrank.joint_kv(k, v[:5])


def test_kv_matrices_of_real_layers():
    torch.manual_seed(0)
    x = torch.randn(2, 9, 32, dtype=F64)
    gqa = GroupedQueryAttention(AttentionConfig(d_model=32, n_heads=4, n_kv_heads=2)).double()
    k, v = lowrank.kv_matrices(gqa, x)
    torch.testing.assert_close(k, gqa.w_k(x).reshape(18, -1))
    torch.testing.assert_close(v, gqa.w_v(x).reshape(18, -1))
    mla = MultiHeadLatentAttention(MLAConfig(d_model=32, n_heads=4, kv_lora_rank=5, qk_nope_head_dim=8,
                                             qk_rope_head_dim=4, v_head_dim=6)).double()
    k, v = lowrank.kv_matrices(mla, x)
    assert k.shape == (18, 32) and v.shape == (18, 24)
    assert torch.linalg.matrix_rank(k).item() <= 5 and torch.linalg.matrix_rank(v).item() <= 5  # rank <= d_c
    with pytest.raises(ValueError, match="GroupedQueryAttention or MultiHeadLatentAttention"):
        lowrank.kv_matrices(torch.nn.Linear(32, 32), x)


def test_attention_inputs_captures_every_layer_and_removes_its_hooks():
    torch.manual_seed(0)
    model = TinyLM(TinyLMConfig(d_model=32, n_layers=3, n_heads=4, d_ff=40, vocab_size=50, attention="mla",
                                kv_lora_rank=8, qk_rope_head_dim=4)).eval()
    ids = torch.randint(0, 50, (2, 7))
    inputs = lowrank.attention_inputs(model, ids)
    assert [tuple(x.shape) for x in inputs] == [(2, 7, 32)] * 3
    torch.testing.assert_close(inputs[0], model.blocks[0].attn_norm(model.embed(ids)))
    assert all(not block.attn._forward_pre_hooks for block in model.blocks)


# ---------------------------------------------------------------------------------------- chapter 7 widget


def test_latent_figures_match_sizing_for_deepseek_v3():
    f = ui.latent_figures(512, 64)
    assert f["mla_bytes_per_token"] == sizing.cache_bytes_per_token(V3) == 70_272
    assert f["mha_bytes_per_token"] == sizing.cache_bytes_per_token(V3, scheme="mha") == 3_997_696
    assert f["ratio_vs_mha"] == pytest.approx(56.89, abs=0.01)
    assert f["elements_per_layer"] == 576 and f["gqa_groups"] == 2.25


def test_latent_options_are_valid_and_the_sliders_offer_only_them():
    assert all(d > 0 for d in ui.DC_OPTIONS) and all(r % 2 == 0 and r >= 0 for r in ui.ROPE_OPTIONS)
    assert 512 in ui.DC_OPTIONS and 64 in ui.ROPE_OPTIONS
    w = ui.latent_explorer(fake_errors())
    assert list(w.d_c.options) == list(ui.DC_OPTIONS)
    assert list(w.d_h_rope.options) == list(ui.ROPE_OPTIONS)
    with pytest.raises(TraitError):  # a SelectionSlider refuses values it does not offer
        w.d_h_rope.value = 63
    with pytest.raises(ValueError, match="d_h_rope"):
        ui.latent_spec(512, 63)
    with pytest.raises(ValueError, match="d_h_rope"):
        ui.latent_explorer(fake_errors(), d_h_rope=63)


@pytest.mark.parametrize("d_c,d_h_rope", [(64, 0), (256, 32), (512, 64), (1024, 128)])
def test_moving_the_sliders_shows_what_sizing_gives(d_c, d_h_rope, capsys):
    w = ui.latent_explorer(fake_errors())
    w.d_c.value, w.d_h_rope.value = d_c, d_h_rope
    spec = dataclasses.replace(V3, kv_lora_rank=d_c, qk_rope_head_dim=d_h_rope)
    mla, mha = sizing.cache_bytes_per_token(spec), sizing.cache_bytes_per_token(spec, scheme="mha")
    text = shown_text(w.readout.value)
    assert f"{mla:,} B" in text
    assert f"{sizing.format_ratio(mha / mla)}× smaller" in text
    assert f"{(d_c + d_h_rope) / 256:g} groups" in text
    rank = ui.tiny_rank(d_c, 16)
    assert f"rank {rank} of its [K, V]" in text
    assert trace_data(w.chart) == trace_data(ui.latent_figure(d_c, d_h_rope, fake_errors()))
    bars = w.chart.data[0]
    assert list(bars.y) == ["MHA", "MLA"] and list(bars.x) == [mha, mla]
    marked = w.chart.data[-1]  # one point per layer at the rank the slider's d_c gives
    assert set(marked.x) == {rank} and list(marked.y) == list(fake_errors()[rank])
    assert capsys.readouterr().out == ""  # callbacks never print
    assert repr(w) == f"LatentExplorer(d_c={d_c}, d_h_rope={d_h_rope})"


def test_tiny_rank_keeps_the_ratio_to_the_head_width():
    assert ui.tiny_rank(512, 16) == 64  # DeepSeek-V3's d_c = 4 d_h, like the tiny MLA model's 64 = 4 x 16
    assert [ui.tiny_rank(d, 16) for d in ui.DC_OPTIONS] == list(range(8, 129, 8))
    with pytest.raises(ValueError, match="whole rank"):
        ui.tiny_rank(100, 16)


def test_latent_explorer_needs_every_rank_it_can_reach():
    errors = fake_errors()
    del errors[64]
    with pytest.raises(ValueError, match="64"):
        ui.latent_explorer(errors)


def test_latent_diagram_is_valid_svg_with_one_key_and_value_per_head():
    svg = ui.latent_diagram_svg(n_heads=4, total_heads=128)
    texts = [e.text for e in parse_svg(svg).iter() if e.tag.endswith("text")]
    assert {"k0", "v0", "k3", "v3"} <= set(texts)
    assert any("576 numbers per token" in (t or "") for t in texts)
    with pytest.raises(ValueError, match="at most 8"):
        ui.latent_diagram_svg(n_heads=9)


# ---------------------------------------------------------------------------------------- chapter 8 widget


@pytest.mark.parametrize("n_heads,t", [(2, 5), (4, 37), (8, 64)])
def test_mla_decode_step_costs_count_exactly_what_the_layer_computes(n_heads, t):
    """The FLOP formulas against torch's own FLOP counter on the library's two attention paths."""
    c = MLAConfig(d_model=32, n_heads=n_heads, kv_lora_rank=24, qk_nope_head_dim=8, qk_rope_head_dim=6, v_head_dim=10)
    layer = MultiHeadLatentAttention(c).double()
    gen = torch.Generator().manual_seed(t)
    q_nope = torch.randn(1, 1, n_heads, 8, generator=gen, dtype=F64)
    q_rope = torch.randn(1, 1, n_heads, 6, generator=gen, dtype=F64)
    c_kv, k_rope = torch.randn(1, t, 24, generator=gen, dtype=F64), torch.randn(1, t, 6, generator=gen, dtype=F64)
    mask = torch.ones(1, t, dtype=torch.bool)
    costs = mla_decode_step_costs(ui.step_shape(n_heads, d_c=24, d_h=8, d_v=10, d_h_rope=6), t)
    outputs = {}
    for mode, attend in (("naive", layer.attend_naive), ("absorbed", layer.attend_absorbed)):
        with FlopCounterMode(display=False) as counter:
            outputs[mode] = attend(q_nope, q_rope, c_kv, k_rope, mask)[0]
        assert counter.get_total_flops() == costs[mode]["flops"] == 2 * costs[mode]["macs"]
    torch.testing.assert_close(outputs["naive"], outputs["absorbed"])


def test_mla_decode_step_costs_agree_with_sizing_and_the_formulas():
    h, t, d_c, d_h, d_v, d_r = V3.n_heads, 4096, 512, 128, 128, 64
    costs = mla_decode_step_costs(V3.attention_shape(), t)
    assert costs == mla_decode_step_costs(ui.step_shape(h), t)  # the widget's defaults are DeepSeek-V3's widths
    assert costs["naive"]["parts"]["re-expand K, V"] == h * (d_h + d_v) * d_c * t
    assert costs["absorbed"]["parts"]["fold W^UK, W^UV"] == h * d_c * (d_h + d_v)
    assert costs["absorbed"]["macs"] == h * d_c * (d_h + d_v) + h * t * (d_c + d_r) + h * t * d_c
    per_cached = (costs["absorbed"]["macs"] - costs["absorbed"]["parts"]["fold W^UK, W^UV"]) // t
    assert per_cached == sizing.attention_macs_per_cached_token(V3, "mla")
    assert costs["absorbed"]["cache_bytes"] == t * sizing.cache_bytes_per_token(V3) // V3.n_layers
    assert costs["expanded"]["cache_bytes"] == t * h * (d_h + d_r + d_v) * 2
    assert costs["absorbed"]["extra_bytes"] == 0 < costs["naive"]["extra_bytes"]


def test_absorption_explorer_offers_valid_values_and_follows_its_sliders(capsys):
    w = ui.absorption_explorer()
    assert list(w.n_heads.options) == list(ui.HEAD_OPTIONS)
    assert [v for _, v in w.seq_len.options] == [n for _, n in ui.CONTEXT_OPTIONS]
    chart, before = w.chart, trace_data(w.chart)
    w.n_heads.value, w.seq_len.value = 16, 32768
    assert w.chart is chart and trace_data(w.chart) != before
    assert trace_data(w.chart) == trace_data(ui.decode_costs_figure(16, 32768))
    costs = mla_decode_step_costs(ui.step_shape(16), 32768)
    assert list(w.chart.data[0].x) == [costs[s]["flops"] for s in ui.STRATEGIES]  # FLOPs panel
    assert list(w.chart.data[2].x) == [costs[s]["cache_bytes"] for s in ui.STRATEGIES]  # bytes: cache read
    assert list(w.chart.data[3].x) == [costs[s]["extra_bytes"] for s in ui.STRATEGIES]  # bytes: rebuilt K/V
    assert f"{costs['naive']['flops'] / costs['absorbed']['flops']:.1f}× the FLOPs" in shown_text(w.readout.value)
    assert capsys.readouterr().out == ""
    assert repr(w) == "AbsorptionExplorer(seq_len=32768, n_heads=16)"
    with pytest.raises(ValueError, match="n_heads"):
        ui.absorption_explorer(n_heads=3)


# ---------------------------------------------------------------------------------------- chapter 9 widget


def test_rope_pair_state_matches_apply_rope_and_depends_on_m_minus_n_only():
    gen = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 16, generator=gen, dtype=F64)
    for m, n, pair in itertools.product((0, 3, 20), (0, 7), (0, 5)):
        s = ui.rope_pair_state(q, k, m, n, pair)
        q_m, k_n = apply_rope(q[None], torch.tensor([m]))[0], apply_rope(k[None], torch.tensor([n]))[0]
        assert s["score"] == pytest.approx(float(q_m @ k_n))
        assert s["q_rot"] == pytest.approx((float(q_m[pair]), float(q_m[pair + 8])))
        assert sum(ui.rope_pair_state(q, k, m, n, p)["pair_score"] for p in range(8)) == pytest.approx(s["score"])
        for shift in (1, 64, 960):
            shifted = ui.rope_pair_state(q, k, m, n, pair, shift=shift)
            assert shifted["score"] == pytest.approx(s["score"], abs=1e-9)
            assert shifted["m"] - shifted["n"] == m - n
    with pytest.raises(ValueError, match="pair"):
        ui.rope_pair_state(q, k, 1, 1, 8)
    with pytest.raises(ValueError, match="even"):
        ui.rope_pair_state(q[:5], k[:5], 1, 1, 0)


def test_rope_explorer_sliders_and_callbacks(capsys):
    gen = torch.Generator().manual_seed(1)
    q, k = torch.randn(2, 16, generator=gen, dtype=F64)
    w = ui.rope_explorer(q, k, m=5, n=2)
    assert (w.pair.min, w.pair.max) == (0, 7)  # only the 8 pairs of a 16-wide vector
    assert w.m.max == w.n.max == ui.POSITION_MAX and w.shift.max == ui.SHIFT_MAX
    score = f"{ui.rope_pair_state(q, k, 5, 2, 0)['score']:+.4f}"
    chart = w.chart.value
    w.shift.value = 64  # both vectors turn, the score does not change
    assert w.chart.value != chart
    assert score in shown_text(w.chart.value) and "the same" in shown_text(w.readout.value)
    w.n.value = 3  # m - n changes, so does the score
    assert f"{ui.rope_pair_state(q, k, 5, 3, 0, shift=64)['score']:+.4f}" in shown_text(w.chart.value)
    parse_svg(w.chart.value)
    assert capsys.readouterr().out == ""
    assert repr(w) == "RoPEExplorer(m=5, n=3, shift=64, pair=0)"


# ---------------------------------------------------------------------------------------- exercises


@pytest.fixture(scope="module")
def solutions() -> dict[str, dict]:
    return {ch: runpy.run_path(str(SOLUTIONS / f"{ch}.py")) for ch in ("ch07", "ch08", "ch09")}


CHECKS = [
    (ch07.check_joint_factors, "ch07", "answer_joint_factors"),
    (ch07.check_lowrank_error, "ch07", "answer_lowrank_error"),
    (ch08.check_absorbed_scores, "ch08", "answer_absorbed_scores"),
    (ch08.check_absorbed_output, "ch08", "answer_absorbed_output"),
    (ch08.check_absorbed_step_macs, "ch08", "answer_absorbed_step_macs"),
    (ch09.check_rope, "ch09", "answer_rope"),
    (ch09.check_permutation, "ch09", "answer_permutation"),
    (ch09.check_decoupled_scores, "ch09", "answer_decoupled_scores"),
]
PREDICTIONS = [
    (ch07.check_prediction_random_rank, "ch07", "prediction_random_rank_error"),
    (ch08.check_prediction_prefill_ratio, "ch08", "prediction_prefill_ratio"),
    (ch09.check_prediction_shifted_positions, "ch09", "prediction_scores_change"),
]


@pytest.mark.parametrize("check,chapter,name", CHECKS, ids=[c[2] for c in CHECKS])
def test_solutions_pass_and_none_is_not_attempted(solutions, check, chapter, name):
    assert check(solutions[chapter][name]).startswith("✓")
    assert "not attempted" in check(None)


@pytest.mark.parametrize("check,chapter,name", PREDICTIONS, ids=[c[2] for c in PREDICTIONS])
def test_worked_predictions_are_right_and_none_runs_nothing(solutions, check, chapter, name):
    assert check(solutions[chapter][name]).startswith("✓")
    assert "write your prediction first" in check(None)


def _svd_error(m, r, shift=0, square=False):
    s = torch.linalg.svdvals(m)
    e = s[max(r - shift, 0):].square().sum() / s.square().sum()
    return float(e if square else e.sqrt())


def _rope_by_hand(x, m, base, sign=1.0, interleaved=False):
    """RoPE written out, so the slips below do not call attnlab.rope (which exercise 1 forbids)."""
    d = x.shape[-1]
    angle = sign * m * base ** (-2.0 * torch.arange(d // 2, dtype=torch.float64) / d)
    cos, sin = angle.cos(), angle.sin()
    a, b = (x[..., 0::2], x[..., 1::2]) if interleaved else (x[..., : d // 2], x[..., d // 2:])
    first, second = a * cos - b * sin, a * sin + b * cos
    if interleaved:
        return torch.stack([first, second], dim=-1).flatten(-2)
    return torch.cat([first, second], dim=-1)


def _factors_smallest(w_k, w_v, r):
    u, s, vh = torch.linalg.svd(torch.cat([w_k, w_v]), full_matrices=False)
    up = u[:, -r:] * s[-r:]
    return vh[-r:], up[: w_k.shape[0]], up[w_k.shape[0]:]


def _factors_keys_only(w_k, w_v, r):
    u, s, vh = torch.linalg.svd(w_k, full_matrices=False)
    return vh[:r], u[:, :r] * s[:r], torch.zeros(w_v.shape[0], r, dtype=w_v.dtype)


def _output_wrong_order(weights, c, w_uv, w_o):
    o = torch.einsum("bshc,hvc->bshv", torch.einsum("bsht,btc->bshc", weights, c), w_uv)
    return o.transpose(-1, -2).flatten(-2) @ w_o.T


WRONG = [
    (ch07.check_joint_factors, _factors_smallest, "SMALLEST"),
    (ch07.check_joint_factors, _factors_keys_only, "TOGETHER"),
    (ch07.check_joint_factors, lambda w_k, w_v, r: (w_k, w_k, w_v), "shape"),
    (ch07.check_joint_factors, lambda w_k, w_v, r: w_k, "three tensors"),
    (ch07.check_lowrank_error, lambda m, r: _svd_error(m, r, square=True), "square root"),
    (ch07.check_lowrank_error, lambda m, r: _svd_error(m, r, shift=1), "off by one"),
    (ch07.check_lowrank_error, lambda m, r: 0.0, "expected"),
    (ch07.check_lowrank_error, 0.5, "function"),
    (ch08.check_absorbed_scores, lambda q, w, c: torch.einsum("bshd,hdc,btc->bsht", q, w.flip(0), c), "own W^UK"),
    (ch08.check_absorbed_scores, lambda q, w, c: torch.einsum("bshd,hdc,btc->bsth", q, w, c), "shape"),
    (ch08.check_absorbed_scores, lambda q, w, c: torch.einsum("bshd,hdc,btc->bsht", q, w, c) * 2, "fold first"),
    (ch08.check_absorbed_scores, lambda q, w, c: torch.einsum("bshc,btc->bsht", q, c), "raised"),
    (ch08.check_absorbed_output, _output_wrong_order, "head by head"),
    (ch08.check_absorbed_output, lambda a, c, w_uv, w_o: torch.einsum(
        "bshc,hvc->bshv", torch.einsum("bsht,btc->bshc", a, c), w_uv), "concatenate"),
    (ch08.check_absorbed_output, lambda a, c, w_uv, w_o: torch.zeros(a.shape[0], a.shape[1], w_o.shape[0]), "differs"),
    (ch08.check_absorbed_step_macs, 587_202_560 - 16_777_216, "fold"),
    (ch08.check_absorbed_step_macs, 587_202_560 - 128 * 4096 * 64, "RoPE part"),
    (ch08.check_absorbed_step_macs, 2 * 587_202_560, "FLOPs"),
    (ch09.check_rope, lambda x, m, base: _rope_by_hand(x, m, base, interleaved=True), "interleaved"),
    (ch09.check_rope, lambda x, m, base: _rope_by_hand(x, m, base, sign=-1.0), "-m θ_i"),
    (ch09.check_rope, lambda x, m, base: _rope_by_hand(x, m, 10000.0), "base"),
    (ch09.check_permutation, torch.argsort(interleaved_to_halves(8)).tolist(), "inverse"),
    (ch09.check_permutation, [0, 1, 2, 3, 4, 5, 6, 7], "in that order"),
    (ch09.check_permutation, [0, 2, 4, 6, 1, 3, 5, 5], "every index once"),
    (ch09.check_permutation, 7, "list"),
]


@pytest.mark.parametrize("check,answer,hint", WRONG, ids=[f"{c.__name__}-{i}" for i, (c, _, _) in enumerate(WRONG)])
def test_wrong_answers_fail_with_a_hint(check, answer, hint):
    with pytest.raises(AssertionError, match=re.escape(hint)):
        check(answer)


def _decoupled(solutions, slip):
    """The worked decoupled-RoPE scores with one slip put in."""
    good = solutions["ch09"]["answer_decoupled_scores"]

    def answer(layer, x):
        c = layer.config
        if slip == "scale":
            return good(layer, x) / c.softmax_scale * c.qk_head_dim**-0.5
        if slip == "unscaled":
            return good(layer, x) / c.softmax_scale
        if slip == "key not rotated":
            b, s, _ = x.shape
            q = layer.w_q(x).view(b, s, c.n_heads, c.qk_head_dim)
            q_nope, q_rope = q.split([c.qk_nope_head_dim, c.qk_rope_head_dim], dim=-1)
            c_kv, k_rope = layer.w_dkv(x).split([c.kv_lora_rank, c.qk_rope_head_dim], dim=-1)
            q_rope = layer.rope(q_rope, torch.arange(s))
            content = torch.einsum("bshc,btc->bsht", torch.einsum("bshd,hdc->bshc", q_nope, layer.w_uk),
                                   layer.kv_norm(c_kv))
            return (content + torch.einsum("bshr,btr->bsht", q_rope, k_rope)) * c.softmax_scale
        return good(layer, x).transpose(1, 2)

    return answer


@pytest.mark.parametrize("slip,hint", [("scale", "m^2"), ("unscaled", "not scaled"), ("key not rotated", "k^R"),
                                       ("transposed", "transpose(1, 2)")])
def test_decoupled_scores_slips_are_named(solutions, slip, hint):
    with pytest.raises(AssertionError, match=re.escape(hint)):
        ch09.check_decoupled_scores(_decoupled(solutions, slip))


def test_predictions_explain_wrong_guesses():
    assert ch07.check_prediction_random_rank(0.1).startswith("✗")
    assert "3.40×" in ch08.check_prediction_prefill_ratio(0.3)
    assert ch08.check_prediction_prefill_ratio(0.3).startswith("✗")
    verdict = ch09.check_prediction_shifted_positions(True)
    assert verdict.startswith("✗") and "n − m" in verdict
    with pytest.raises(AssertionError, match="True"):
        ch09.check_prediction_shifted_positions("no")
