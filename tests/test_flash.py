"""Tests for attnlab.flash and the IO counts of attnlab.costs (chapter 15): the online softmax equals the
softmax; the tiled forward equals SDPA and the matrix form in float64 for random shapes, tile sizes that do
and do not divide the lengths, causal and not, n_q != n_k, GQA; the log-sum-exp per row; skipped tiles;
split-KV attention and the merge exact against dense; the HBM counts against a direct count of the tiles
visited; bfloat16 and every device present; the benchmark's JSON."""

from __future__ import annotations

import importlib
import json
import math
import runpy
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from attnlab import costs, flash
from attnlab.attention import attention_matrix, causal_mask
from attnlab.devices import supported_dtypes

F64 = torch.float64
SETTINGS = settings(max_examples=40, deadline=None)


def qkv(b, h, n_q, n_k, d, d_v=None, n_kv=None, seed=0, dtype=F64, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    n_kv = h if n_kv is None else n_kv
    d_v = d if d_v is None else d_v
    q = torch.randn(b, h, n_q, d, generator=g, dtype=F64) * 2
    k = torch.randn(b, n_kv, n_k, d, generator=g, dtype=F64) * 2
    v = torch.randn(b, n_kv, n_k, d_v, generator=g, dtype=F64)
    return (t.to(device=device, dtype=dtype) for t in (q, k, v))


def dense(q, k, v, causal):
    """The matrix form on K/V heads repeated for each query head, and the log-sum-exp of each row."""
    r = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(r, dim=1), v.repeat_interleave(r, dim=1)
    out, _ = attention_matrix(q, k, v, causal=causal)
    scores = torch.einsum("bhqd,bhkd->bhqk", q, k) / math.sqrt(q.shape[-1])
    if causal:
        scores = scores.masked_fill(~causal_mask(q.shape[2], k.shape[2]), float("-inf"))
    return out, torch.logsumexp(scores, dim=-1)


# --------------------------------------------------------------------------------------------------
# the online softmax


@SETTINGS
@given(n=st.integers(1, 40), block=st.integers(1, 12), seed=st.integers(0, 2**31 - 1))
def test_online_softmax_equals_softmax(n, block, seed):
    scores = torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=F64) * 10
    steps, weights = flash.online_softmax_trace(scores, block)
    torch.testing.assert_close(weights, torch.softmax(scores, dim=-1))
    assert len(steps) == math.ceil(n / block)
    assert steps[-1].m == pytest.approx(float(scores.max()))
    assert steps[-1].l == pytest.approx(float(torch.exp(scores - scores.max()).sum()))
    for before, after in zip(steps, steps[1:], strict=False):  # m never falls; alpha = exp(m_old - m_new)
        assert after.m >= before.m
        assert after.alpha == pytest.approx(math.exp(before.m - after.m))


def test_online_softmax_update_rescales_the_old_sum():
    m, l = torch.tensor([1.0], dtype=F64), torch.tensor([2.0], dtype=F64)
    m_new, l_new, alpha = flash.online_softmax_update(m, l, torch.tensor([[3.0, 0.0]], dtype=F64))
    assert float(m_new) == 3.0 and float(alpha) == pytest.approx(math.exp(-2.0))
    assert float(l_new) == pytest.approx(2.0 * math.exp(-2.0) + 1.0 + math.exp(-3.0))
    # a row that saw only -inf keeps m = -inf, l = 0, and no NaN appears
    m_new, l_new, alpha = flash.online_softmax_update(torch.tensor([float("-inf")]), torch.tensor([0.0]),
                                                      torch.tensor([[float("-inf")] * 3]))
    assert torch.isneginf(m_new).all() and float(l_new) == 0.0 and not torch.isnan(alpha).any()


def test_online_softmax_survives_huge_scores():
    scores = torch.tensor([1e4, -1e4, 5e3, 1e4 + 1.0])
    _, weights = flash.online_softmax_trace(scores, 1)
    torch.testing.assert_close(weights, torch.softmax(scores, dim=-1))


# --------------------------------------------------------------------------------------------------
# the tiled forward


@SETTINGS
@given(b=st.integers(1, 2), n_kv=st.integers(1, 2), r=st.integers(1, 3), n_k=st.integers(1, 45),
       extra_q=st.integers(0, 45), d=st.integers(1, 9), d_v=st.integers(1, 7), block_q=st.integers(1, 17),
       block_k=st.integers(1, 17), causal=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_tiled_equals_the_matrix_form_and_sdpa(b, n_kv, r, n_k, extra_q, d, d_v, block_q, block_k, causal, seed):
    n_q = max(1, n_k - extra_q) if causal else 1 + extra_q  # causal: queries are the last n_q of n_k
    q, k, v = qkv(b, n_kv * r, n_q, n_k, d, d_v, n_kv, seed)
    out, lse = flash.flash_attention(q, k, v, causal=causal, block_q=block_q, block_k=block_k)
    want, want_lse = dense(q, k, v, causal)
    torch.testing.assert_close(out, want, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(lse, want_lse, rtol=1e-10, atol=1e-12)
    if d == d_v and (not causal or n_q == n_k):  # SDPA's is_causal is the top-left mask: equal for n_q = n_k
        sdpa = F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=True)
        torch.testing.assert_close(out, sdpa, rtol=1e-10, atol=1e-12)


def test_decode_rows_equal_sdpa_with_the_bottom_right_mask():
    q, k, v = qkv(1, 2, 3, 40, 8)
    out, _ = flash.flash_attention(q, k, v, causal=True, block_q=2, block_k=7)
    mask = causal_mask(3, 40)  # the 3 queries are positions 37, 38, 39
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask), rtol=1e-10,
                               atol=1e-12)


def test_tile_schedule_skips_the_future_and_forward_visits_exactly_its_tiles(monkeypatch):
    grid = flash.tile_schedule(10, 10, 4, 3, causal=True)
    assert grid == [["partial", "partial", "skipped", "skipped"],
                    ["full", "partial", "partial", "skipped"],
                    ["full", "full", "full", "partial"]]
    assert all(cell == "full" for row in flash.tile_schedule(10, 10, 4, 3) for cell in row)
    # count the score tiles the forward really computes: one einsum "bgrqd,bgkd->bgrqk" per visited tile
    seen = []
    real = torch.einsum

    def counting(eq, *ops):
        if eq == "bgrqd,bgkd->bgrqk":
            seen.append(ops[1].shape[-2])
        return real(eq, *ops)

    monkeypatch.setattr(flash.torch, "einsum", counting)
    q, k, v = qkv(1, 1, 10, 10, 4)
    flash.flash_attention(q, k, v, causal=True, block_q=4, block_k=3)
    visited = sum(cell != "skipped" for row in grid for cell in row)
    assert len(seen) == visited == 9
    assert sum(seen) == costs.flash_key_rows_loaded(10, 10, 4, 3, causal=True)


@pytest.mark.parametrize("causal", [False, True])
def test_hbm_counts_against_a_direct_count_of_tiles(causal):
    for n_q, n_k, bq, bk in [(10, 10, 4, 3), (37, 37, 8, 5), (5, 37, 2, 16), (64, 64, 64, 64), (1, 33, 1, 4)]:
        rows = 0
        for row in flash.tile_schedule(n_q, n_k, bq, bk, causal=causal):
            rows += sum(min(bk, n_k - j * bk) for j, cell in enumerate(row) if cell != "skipped")
        assert costs.flash_key_rows_loaded(n_q, n_k, bq, bk, causal) == rows
        d, d_v, b = 8, 6, 2
        io = costs.flash_attention_hbm_bytes(n_q, n_k, d, bq, bk, torch.bfloat16, v_head_dim=d_v, causal=causal)
        assert io == {"read Q": n_q * d * b, "read K, V": rows * (d + d_v) * b, "write O": n_q * d_v * b,
                      "write L": 4 * n_q, "total": (n_q * d + rows * (d + d_v) + n_q * d_v) * b + 4 * n_q}


def test_standard_counts_and_theorem_2_scaling():
    n, d = 1024, 64
    io = costs.standard_attention_hbm_bytes(n, n, d, "float32")
    assert io["write S"] == n * n * 4 and io["read S, write P"] == 2 * n * n * 4
    assert io["total"] == 4 * (4 * n * d + 4 * n * n)  # Theta(N d + N^2)
    assert costs.score_bytes_not_written(n, n, "float32", n_heads=3) == 3 * 2 * n * n * 4
    # the tiled form: K, V read ceil(N / B_r) times; doubling B_r (the SRAM) halves those reads
    small = costs.flash_attention_hbm_bytes(n, n, d, 64, 64, "float32")["read K, V"]
    large = costs.flash_attention_hbm_bytes(n, n, d, 128, 64, "float32")["read K, V"]
    assert small == (n // 64) * n * 2 * d * 4 and large * 2 == small
    sram = costs.flash_sram_bytes(128, 64, d, "bfloat16")
    assert sram["total"] == (128 * d + 64 * d + 64 * d) * 2 + (128 * 64 + 128 * d + 2 * 128) * 4
    assert costs.standard_attention_hbm_bytes(8, 8, 4, n_heads=2, batch=3)["total"] == \
        6 * costs.standard_attention_hbm_bytes(8, 8, 4)["total"]


def test_a_row_with_no_visible_key_gets_zero_and_minus_infinity():
    q, k, v = qkv(1, 1, 2, 4, 3)
    out, lse = flash.flash_attention(q, k, v, causal=True, q_start=0, k_start=1)  # query 0 precedes every key
    assert torch.equal(out[0, 0, 0], torch.zeros(3, dtype=F64)) and torch.isneginf(lse[0, 0, 0])
    torch.testing.assert_close(out[0, 0, 1], v[0, 0, 0])  # query 1 sees only key 1 (the first)


def test_runs_in_bfloat16_and_on_every_device(device):
    for dtype in supported_dtypes(device):
        q, k, v = qkv(1, 4, 33, 33, 16, n_kv=2, dtype=dtype, device=device)
        out, lse = flash.flash_attention(q, k, v, causal=True, block_q=8, block_k=16)
        assert out.dtype == dtype and out.device.type == torch.device(device).type
        assert lse.dtype == torch.promote_types(dtype, torch.float32)
        want, _ = dense(*(t.double() for t in (q, k, v)), causal=True)
        tol = {torch.bfloat16: 3e-2, torch.float32: 1e-5, torch.float64: 1e-12}[dtype]
        torch.testing.assert_close(out.double(), want, rtol=tol, atol=tol)
        merged, _, _ = flash.split_kv_attention(q[:, :, -1:], k, v, 3, causal=True)
        torch.testing.assert_close(merged.double(), want[:, :, -1:], rtol=tol, atol=tol)


# --------------------------------------------------------------------------------------------------
# split-KV decoding and the merge


@SETTINGS
@given(n_k=st.integers(1, 60), n_q=st.integers(1, 4), splits=st.integers(1, 9), causal=st.booleans(),
       seed=st.integers(0, 2**31 - 1))
def test_split_kv_equals_dense(n_k, n_q, splits, causal, seed):
    n_q, splits = min(n_q, n_k), min(splits, n_k)
    q, k, v = qkv(2, 4, n_q, n_k, 5, 3, n_kv=2, seed=seed)
    out, lse, partials = flash.split_kv_attention(q, k, v, splits, causal=causal, block_k=4)
    want, want_lse = dense(q, k, v, causal)
    torch.testing.assert_close(out, want, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(lse, want_lse, rtol=1e-10, atol=1e-12)
    assert len(partials) == splits


def test_merge_is_exact_for_any_partition_and_order():
    q, k, v = qkv(1, 2, 1, 30, 8)
    want, want_lse = dense(q, k, v, causal=False)
    cuts = [(0, 7), (7, 8), (8, 30)]
    parts = [flash.flash_attention(q, k[..., a:z, :], v[..., a:z, :]) for a, z in cuts]
    for order in ([0, 1, 2], [2, 0, 1]):
        out, lse = flash.merge_partials([parts[i][0] for i in order], [parts[i][1] for i in order])
        torch.testing.assert_close(out, want, rtol=1e-12, atol=1e-13)
        torch.testing.assert_close(lse, want_lse, rtol=1e-12, atol=1e-13)
    # merging merges: ((A, B), C) == (A, B, C)
    ab = flash.merge_partials([parts[0][0], parts[1][0]], [parts[0][1], parts[1][1]])
    out, _ = flash.merge_partials([ab[0], parts[2][0]], [ab[1], parts[2][1]])
    torch.testing.assert_close(out, want, rtol=1e-12, atol=1e-13)
    # a chunk no query could see (lse = -inf) weighs nothing
    empty = (torch.full_like(want, 7.0), torch.full_like(want_lse, float("-inf")))
    out, _ = flash.merge_partials([parts[0][0], empty[0], parts[1][0], parts[2][0]],
                                  [parts[0][1], empty[1], parts[1][1], parts[2][1]])
    torch.testing.assert_close(out, want, rtol=1e-12, atol=1e-13)
    # the usual slip: averaging the partial outputs is not attention over all keys
    naive = torch.stack([p[0] for p in parts]).mean(dim=0)
    assert not torch.allclose(naive, want)


@pytest.mark.parametrize("n_splits", [1, 3, 7])
def test_split_kv_runs_absorbed_mla_decode(n_splits):
    """Absorbed MLA is MQA over the latent cache: keys [c^KV; k^R], values c^KV, one K/V head for all heads.
    Split-KV attention then W^UV equals the layer's own absorbed decode (what FlashMLA's splits compute)."""
    from attnlab.mla import MLAConfig, MultiHeadLatentAttention

    torch.manual_seed(1)
    mla = MultiHeadLatentAttention(MLAConfig(d_model=24, n_heads=4, kv_lora_rank=10, qk_nope_head_dim=6,
                                             qk_rope_head_dim=4, v_head_dim=5, q_lora_rank=12)).double()
    x = torch.randn(2, 19, 24, dtype=F64)
    positions = torch.arange(19)
    q_nope, q_rope = mla.queries(x[:, -1:], positions[-1:])
    c_kv, k_rope = mla.latents(x, positions)
    want, _ = mla.attend_absorbed(q_nope, q_rope, c_kv, k_rope, None)  # (2, 1, h, d_v)
    q = torch.cat([torch.einsum("bshd,hdc->bshc", q_nope, mla.w_uk), q_rope], dim=-1).transpose(1, 2)
    keys = torch.cat([c_kv, k_rope], dim=-1)[:, None]
    o_latent, _, _ = flash.split_kv_attention(q, keys, c_kv[:, None], n_splits, scale=mla.config.softmax_scale)
    got = torch.einsum("bhsc,hvc->bshv", o_latent, mla.w_uv)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


# --------------------------------------------------------------------------------------------------
# bad input and the benchmark


@pytest.mark.parametrize(("call", "arg"), [
    (lambda: flash.flash_attention(*qkv(1, 3, 4, 4, 2, n_kv=2)), "n_heads"),
    (lambda: flash.flash_attention(*qkv(1, 2, 5, 4, 2), causal=True), "n_q"),
    (lambda: flash.flash_attention(*qkv(1, 2, 4, 4, 2), block_q=0), "block_q"),
    (lambda: flash.flash_attention(*qkv(1, 2, 4, 4, 2), scale=float("nan")), "scale"),
    (lambda: flash.split_kv_attention(*qkv(1, 2, 1, 4, 2), 5), "n_splits"),
    (lambda: flash.merge_partials([torch.zeros(1, 2, 3)], [torch.zeros(1, 3)]), "lses"),
    (lambda: flash.online_softmax_trace(torch.zeros(3), 0), "block_size"),
    (lambda: costs.flash_attention_hbm_bytes(8, 8, 4, 0, 4), "block_q"),
])
def test_bad_input_names_the_argument(call, arg):
    with pytest.raises(ValueError, match=arg):
        call()


def test_benchmark_runs_and_reports_each_form(tmp_path):
    report = flash.benchmark(lengths=[64, 96], n_heads=1, head_dim=8, repeats=1, block=32)
    assert [(r["length"], r["form"]) for r in report["rows"]] == [
        (n, form) for n in (64, 96) for form in flash.BENCH_FORMS]
    for row in report["rows"]:
        assert row["time_s"] > 0 and row["score_bytes"] == row["length"] ** 2 * 4
        if row["form"] == "matrix":  # the matrix form holds at least one whole score matrix
            assert row["peak_bytes"] >= row["score_bytes"]
    assert report["torch_version"] == torch.__version__ and report["cpu"]
    out = tmp_path / "b.json"
    flash.main(["--bench", "--lengths", "32", "--repeats", "1", "--out", str(out)])
    assert json.loads(out.read_text())["rows"][0]["length"] == 32


def test_committed_benchmark_shows_the_saving():
    report = flash.load_benchmark()
    rows = {(r["length"], r["form"]): r for r in report["rows"]}
    longest = max(n for n, _ in rows)
    assert rows[longest, "tiled"]["peak_bytes"] < rows[longest, "tiled"]["score_bytes"] / 10
    assert rows[longest, "matrix"]["peak_bytes"] >= rows[longest, "matrix"]["score_bytes"]


# --------------------------------------------------------------------------------------------------
# chapter 15: exercises, solutions, the widget's numbers, the animation's numbers

SOLUTIONS = Path(__file__).resolve().parents[1] / "notebooks" / "solutions" / "ch15.py"


def test_solutions_pass_the_checks():
    from attnlab.exercises import ch15

    s = runpy.run_path(str(SOLUTIONS))
    assert ch15.check_online_step(s["answer_online_step"]).startswith("✓")
    assert ch15.check_merge(s["answer_merge"]).startswith("✓")
    assert ch15.check_kv_bytes(s["answer_kv_bytes"]).startswith("✓")
    assert s["answer_kv_bytes"] == ch15.expected_kv_bytes()
    for check in (ch15.check_online_step, ch15.check_merge, ch15.check_kv_bytes):
        assert "not attempted" in check(None)


def test_exercise_checks_name_the_slip():
    from attnlab.exercises import ch15
    from attnlab.exercises.ch15 import _reference_step

    for slip, words in (("no_rescale_l", "l is not rescaled"), ("no_rescale_o", "o is not rescaled"),
                        ("inverted", "upside down")):
        with pytest.raises(AssertionError, match=words):
            ch15.check_online_step(lambda *a, slip=slip: _reference_step(*a, slip=slip))

    def normalised(m, l, o, s, v):  # noqa: E741  divides at every step, keeps o normalised
        m_new = torch.maximum(m, s.max())
        p = torch.exp(s - m_new)
        l_new = torch.exp(m - m_new) * l + p.sum()
        return m_new, l_new, (torch.exp(m - m_new) * l * o + p @ v) / l_new

    with pytest.raises(AssertionError, match="normalised"):
        ch15.check_online_step(normalised)
    merge = runpy.run_path(str(SOLUTIONS))["answer_merge"]
    with pytest.raises(AssertionError, match="plain average"):
        ch15.check_merge(lambda o1, l1, o2, l2: ((o1 + o2) / 2, torch.logaddexp(l1, l2)))
    with pytest.raises(AssertionError, match="not the larger"):
        ch15.check_merge(lambda o1, l1, o2, l2: (merge(o1, l1, o2, l2)[0], torch.maximum(l1, l2)))
    with pytest.raises(AssertionError, match="raised ZeroDivisionError"):
        ch15.check_merge(lambda *a: 1 / 0)
    with pytest.raises(AssertionError, match="causal mask"):
        ch15.check_kv_bytes(costs.flash_attention_hbm_bytes(4096, 4096, 128, 128, 64)["read K, V"])
    with pytest.raises(AssertionError, match="K only"):
        ch15.check_kv_bytes(ch15.expected_kv_bytes() // 2)


def test_widget_numbers_come_from_costs():
    from attnlab.interactive import flash as ui

    f = ui.tile_figures(16_384, 128, 128, 64)
    assert f["standard"] == costs.standard_attention_hbm_bytes(16_384, 16_384, 128, "bfloat16")
    assert f["tiled"] == costs.flash_attention_hbm_bytes(16_384, 16_384, 128, 128, 64, "bfloat16", causal=True)
    assert f["fits"] and not ui.tile_figures(16_384, 256, 256, 256)["fits"]
    assert "does not fit" in ui.tile_readout_html(ui.tile_figures(16_384, 256, 256, 256))
    explorer = ui.tile_explorer()
    explorer.block_q.value = 32
    assert explorer.readout.value == ui.tile_readout_html(ui.tile_figures(16_384, 128, 32, 64))
    assert "B_r = 32" in explorer.readout.value and "past 512 query blocks" in explorer.readout.value
    with pytest.raises(ValueError, match="block_q"):
        ui.tile_explorer(block_q=48)  # not a slider option
    for _, n in ui.LENGTH_OPTIONS:  # every value the sliders offer gives numbers, tiles within the length
        for d in ui.HEAD_DIM_OPTIONS:
            for b_r in ui.BLOCK_OPTIONS:
                assert b_r <= n and ui.tile_figures(n, d, b_r, 64)["tiled"]["total"] > 0


def test_widget_callbacks_never_print(capsys):
    from attnlab.interactive import flash as ui

    explorer = ui.tile_explorer()
    for value in ui.BLOCK_OPTIONS:
        explorer.block_k.value = value
    explorer.length.value = 131_072
    explorer.head_dim.value = 256
    assert capsys.readouterr() == ("", "")
    assert "131,072" in explorer.readout.value and "d = 256" in explorer.readout.value


def test_animation_numbers_come_from_attnlab():
    pytest.importorskip("manim")
    root = Path(__file__).resolve().parents[1]
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    scene = importlib.import_module("animations.ch15_flash_attention")
    data = scene.flash_scene_data()
    assert data.schedule == flash.tile_schedule(scene.N, scene.N, scene.B_R, scene.B_C, causal=True)
    for steps, lse, r in zip(data.steps, data.lse, (scene.B_R - 1, 2 * scene.B_R - 1), strict=True):
        row = data.scores[r, :r + 1]
        assert steps[-1].m == pytest.approx(float(row.max()))
        assert steps[-1].m + math.log(steps[-1].l) == pytest.approx(lse)  # L = m + log l of the tiled forward
        assert sum(1 for st in steps[1:] if st.alpha < 1) >= 1  # the maximum moves at least once
