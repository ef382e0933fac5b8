"""The exercise checks enforce what the exercises forbid, and the "predict, then run" questions explain.

One test per forbidden shortcut: an answer that takes it fails with a message naming it, however the
shortcut is reached (imported under another name, as a method, through a module, from a cache), while the
worked solution passes. Chapter 8's checks also watch the tensors an answer computes: one that rebuilds
per-head keys or values fails, with the reason absorption exists. The guard itself (``exercises._common``)
is tested last: it leaves no profiler or torch mode behind, and a learner cannot hide a shortcut in a try.
"""

from __future__ import annotations

import math
import runpy
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.overrides import _get_current_function_mode_stack

from attnlab import attention, costs, dsa, gqa, lowrank, quant, rope, sizing, tokenization
from attnlab.attention import causal_mask as imported_causal_mask
from attnlab.exercises import ch01, ch02, ch03, ch04, ch05, ch06, ch07, ch08, ch09, ch10, ch11, ch12, ch13, ch14
from attnlab.exercises._common import DerivedShapeWatch, Guard, Shortcut, call_answer, run_prediction
from attnlab.tokenization import get_pair_counts as renamed_pair_counts

SOLUTIONS = Path(__file__).resolve().parents[1] / "notebooks" / "solutions"


def solution(chapter: str, name: str):
    return runpy.run_path(str(SOLUTIONS / f"{chapter}.py"))[name]


# ----------------------------------------------------------------------------------------------------
# one test per forbidden shortcut: (check, cheating answer, words the message must contain, chapter, solution)

SHORTCUTS = [
    ("ch01-get_pair_counts", ch01.check_pair_counts, lambda ids: tokenization.get_pair_counts(ids),
     "tokenization.get_pair_counts", "ch01", "answer_pair_counts"),
    ("ch01-get_pair_counts-renamed", ch01.check_pair_counts, lambda ids: renamed_pair_counts(list(ids)),
     "tokenization.get_pair_counts", "ch01", "answer_pair_counts"),
    ("ch01-merge", ch01.check_merge, lambda ids, pair, new: tokenization.merge(ids, pair, new),
     "tokenization.merge", "ch01", "answer_merge"),
    ("ch02-torch.softmax", ch02.check_softmax, lambda s: torch.softmax(s, dim=0), "library softmax", "ch02",
     "answer_softmax"),
    ("ch02-F.softmax", ch02.check_softmax, lambda s: F.softmax(s, dim=-1), "library softmax", "ch02",
     "answer_softmax"),
    ("ch02-Tensor.softmax", ch02.check_softmax, lambda s: s.softmax(-1), "library softmax", "ch02",
     "answer_softmax"),
    ("ch02-nn.Softmax", ch02.check_softmax, lambda s: torch.nn.Softmax(dim=0)(s), "library softmax", "ch02",
     "answer_softmax"),
    ("ch02-log_softmax", ch02.check_softmax, lambda s: s.log_softmax(0).exp(), "library softmax", "ch02",
     "answer_softmax"),
    ("ch02-attnlab.softmax", ch02.check_softmax, lambda s: attention.softmax(s, on_fully_masked="zeros"),
     "attnlab.attention.softmax", "ch02", "answer_softmax"),
    ("ch02-attention_vector", ch02.check_attend, lambda q, k, v: attention.attention_vector(q, k, v)[0],
     "attention_vector", "ch02", "answer_attend"),
    ("ch05-grouped_attention", ch05.check_mqa_attention, lambda q, k, v: gqa.grouped_attention(q, k, v)[0],
     "library attention", "ch05", "answer_mqa_attention"),
    ("ch05-sdpa", ch05.check_mqa_attention,
     lambda q, k, v: F.scaled_dot_product_attention(q, k.expand_as(q), v.expand_as(q), is_causal=True),
     "library attention", "ch05", "answer_mqa_attention"),
    ("ch03-causal_mask", ch03.check_causal_mask, lambda n: imported_causal_mask(n, n),
     "attnlab.attention.causal_mask", "ch03", "answer_causal_mask"),
    ("ch06-mha_to_gqa", ch06.check_mean_pool, lambda w, h, g: _pool_through_library(w, h, g),
     "mha_to_gqa", "ch06", "answer_mean_pool"),
    ("ch06-grouped_attention", ch06.check_gqa_attention, lambda q, k, v: gqa.grouped_attention(q, k, v)[0],
     "grouped attention", "ch06", "answer_gqa_attention"),
    ("ch06-sdpa", ch06.check_gqa_attention,
     lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True),
     "grouped attention", "ch06", "answer_gqa_attention"),
    ("ch07-lowrank-factors", ch07.check_joint_factors, lambda k, v, r: _factors_through_library(k, v, r),
     "attnlab.lowrank", "ch07", "answer_joint_factors"),
    ("ch07-lowrank-error", ch07.check_lowrank_error, lambda m, r: lowrank.lowrank_error(m, r)[0],
     "attnlab.lowrank", "ch07", "answer_lowrank_error"),
    ("ch09-rope", ch09.check_rope, lambda x, m, base: rope.apply_rope(x[None], torch.tensor([m]), base)[0],
     "attnlab.rope", "ch09", "answer_rope"),
    ("ch09-rope-matrix", ch09.check_rope, lambda x, m, base: rope.rotation_matrix(m, x.shape[0], base) @ x,
     "attnlab.rope", "ch09", "answer_rope"),
    ("ch09-layer-wiring", ch09.check_decoupled_scores, lambda layer, x: _scores_through_forward(layer, x),
     "the layer's own wiring", "ch09", "answer_decoupled_scores"),
    ("ch10-topk_indices", ch10.check_causal_topk, lambda s, k: _topk_through_library(s, k),
     "attnlab.dsa.topk_indices", "ch10", "answer_causal_topk"),
    ("ch11-fwht", ch11.check_fwht, lambda x: quant.fwht(x), "Hadamard", "ch11", "answer_fwht"),
    ("ch11-hadamard-cached", ch11.check_fwht, lambda x: x @ quant.hadamard_rotation(x.shape[-1], x.dtype, x.device),
     "Hadamard", "ch11", "answer_fwht"),
    ("ch11-quantize", ch11.check_block_fp8, lambda x, b: quant.quantize_fp8_blocks(x, b, "ue8m0"),
     "block quantizer", "ch11", "answer_block_fp8"),
    ("ch11-block_scales", ch11.check_block_fp8, lambda x, b: _fp8_through_block_scales(x, b),
     "block quantizer", "ch11", "answer_block_fp8"),
    ("ch12-indexer_kl_loss", ch12.check_selected_kl, lambda w, i, sel: dsa.indexer_kl_loss(w, i, sel),
     "attnlab.dsa.indexer_kl_loss", "ch12", "answer_selected_kl"),
    ("ch13-sizing", ch13.check_cache_numbers, lambda config: _numbers_through_sizing(config),
     "attnlab.sizing", "ch13", "answer_cache_numbers"),
    ("ch14-costs", ch14.check_mqa_counts,
     lambda shape, L: (costs.decode_flops("mqa", shape, L), costs.decode_bytes_read("mqa", shape, L, "float32")),
     "attnlab.costs", "ch14", "answer_mqa_counts"),
]


def _pool_through_library(w, n_heads, n_kv):
    d = w.shape[0] // n_heads
    layer = gqa.GroupedQueryAttention(gqa.AttentionConfig(w.shape[1], n_heads, n_heads, rope=False)).double()
    with torch.no_grad():
        layer.w_k.weight.copy_(w)
    assert d
    return gqa.mha_to_gqa(layer, n_kv).w_k.weight.detach()


def _factors_through_library(w_k, w_v, r):
    approx = lowrank.lowrank_approx(torch.cat([w_k, w_v]), r)
    u, s, vh = torch.linalg.svd(approx, full_matrices=False)
    up = u[:, :r] * s[:r]
    return vh[:r], up[: w_k.shape[0]], up[w_k.shape[0]:]


def _scores_through_forward(layer, x):
    layer(x)  # the check should stop at the call, whatever is returned
    return torch.zeros(0)


def _topk_through_library(scores, k):
    t, s = scores.shape
    visible = torch.arange(s)[None, :] <= torch.arange(s - t, s)[:, None]
    return dsa.topk_indices(scores.masked_fill(~visible, float("-inf"))[None], k)[0]


def _fp8_through_block_scales(x, block):
    scales = quant.block_scales(x, block, "ue8m0")
    blocks = x.reshape(*x.shape[:-1], -1, block) / scales[..., None]
    return blocks.to(torch.float8_e4m3fn).reshape(x.shape), scales


def _numbers_through_sizing(config):
    return sizing.kv_elements_per_token(sizing.MODELS["llama-3-70b"], per_layer=True)


@pytest.mark.parametrize("check, cheat, named, chapter, name", [s[1:] for s in SHORTCUTS],
                         ids=[s[0] for s in SHORTCUTS])
def test_a_forbidden_shortcut_fails_and_the_worked_solution_passes(check, cheat, named, chapter, name):
    with pytest.raises(AssertionError, match="which this exercise asks you not to use") as failure:
        check(cheat)
    assert named in str(failure.value)
    assert check(solution(chapter, name)).startswith("✓")


def test_a_shortcut_hidden_in_a_try_still_fails():
    """The guard records the call instead of raising inside the learner's code, so catching it does not help."""
    def sneaky(scores):
        try:
            return torch.softmax(scores, dim=0)
        except Exception:  # noqa: BLE001 - the learner's attempt to swallow a refusal
            return scores

    with pytest.raises(AssertionError, match="library softmax"):
        ch02.check_softmax(sneaky)


# ----------------------------------------------------------------------------------------------------
# chapter 8: no per-head key or value may appear while the answer runs


def _keys_einsum(q, w, c):
    keys = torch.einsum("btc,hdc->bthd", c, w)  # the rebuilt keys
    return torch.einsum("bshd,bthd->bsht", q, keys)


def _keys_matmul(q, w, c):
    h, d, dc = w.shape
    keys = (c @ w.reshape(h * d, dc).T).view(c.shape[0], c.shape[1], h, d)  # (b, t, h d) first
    return torch.einsum("bshd,bthd->bsht", q, keys)


def _keys_broadcast(q, w, c):
    keys = (c[:, :, None, None, :] * w[None, None]).sum(-1)  # (b, t, h, d)
    return torch.einsum("bshd,bthd->bsht", q, keys)


def _keys_one_token_at_a_time(q, w, c):
    columns = []
    for t in range(c.shape[1]):
        k_t = torch.einsum("bc,hdc->bhd", c[:, t], w)  # one token's keys, every head
        columns.append(torch.einsum("bshd,bhd->bsh", q, k_t))
    return torch.stack(columns, dim=-1)


def _keys_one_head_at_a_time(q, w, c):
    heads = []
    for h in range(w.shape[0]):
        k_h = c @ w[h].T  # (b, t, d_h): one head's keys
        heads.append(q[:, :, h] @ k_h.transpose(1, 2))
    return torch.stack(heads, dim=2)


@pytest.mark.parametrize("cheat", [_keys_einsum, _keys_matmul, _keys_broadcast, _keys_one_token_at_a_time,
                                   _keys_one_head_at_a_time])
def test_ch08_rebuilt_keys_fail_with_the_reason_for_absorption(cheat):
    with pytest.raises(AssertionError) as failure:
        ch08.check_absorbed_scores(cheat)
    message = str(failure.value)
    assert "built per-head keys" in message and "Absorption exists" in message and "Fold W^UK_h" in message


def _values_einsum(a, c, w_uv, w_o):
    v = torch.einsum("btc,hvc->bthv", c, w_uv)  # the rebuilt values
    return torch.einsum("bsht,bthv->bshv", a, v).flatten(-2) @ w_o.T


def _values_matmul(a, c, w_uv, w_o):
    h, d_v, d_c = w_uv.shape
    v = (c @ w_uv.reshape(h * d_v, d_c).T).view(*c.shape[:2], h, d_v)
    return torch.einsum("bsht,bthv->bshv", a, v).flatten(-2) @ w_o.T


@pytest.mark.parametrize("cheat", [_values_einsum, _values_matmul])
def test_ch08_rebuilt_values_fail_with_the_reason_for_absorption(cheat):
    with pytest.raises(AssertionError) as failure:
        ch08.check_absorbed_output(cheat)
    assert "built per-head values" in str(failure.value) and "Absorption exists" in str(failure.value)


def _absorbed_broadcast_matmul(q, w, c):
    return torch.einsum("bshd,hdc->bshc", q, w) @ c.transpose(-1, -2)[:, None]  # reshapes (b s) inside


def _absorbed_rows(q, w, c):
    b, s, h, _ = q.shape
    return (torch.einsum("bshd,hdc->bshc", q, w).reshape(b, s * h, -1) @ c.mT).view(b, s, h, -1)


def _absorbed_head_by_head(q, w, c):
    return torch.stack([(q[:, :, i] @ w[i]) @ c.mT for i in range(w.shape[0])], dim=2)


def _absorbed_token_by_token(q, w, c):
    q_latent = torch.einsum("bshd,hdc->bshc", q, w)
    return torch.stack([(q_latent * c[:, t, None, None]).sum(-1) for t in range(c.shape[1])], dim=-1)


@pytest.mark.parametrize("honest", [_absorbed_broadcast_matmul, _absorbed_rows, _absorbed_head_by_head,
                                    _absorbed_token_by_token])
def test_ch08_honest_absorbed_scores_are_not_flagged(honest):
    """Whatever reshapes torch makes inside, no other size can pass for the head width (see ch08.CASES)."""
    assert ch08.check_absorbed_scores(honest).startswith("✓")


def test_ch08_honest_output_path_head_by_head_is_not_flagged():
    def head_by_head(a, c, w_uv, w_o):
        return torch.cat([(a[:, :, h] @ c) @ w_uv[h].T for h in range(w_uv.shape[0])], dim=-1) @ w_o.T

    assert ch08.check_absorbed_output(head_by_head).startswith("✓")


def test_ch08_absorbing_w_uv_into_w_o_is_allowed():
    """DeepSeek folds W^UV into W^O: mixing latents, then one (d_c -> d_model) map per head, builds no value."""
    def folded(a, c, w_uv, w_o):
        h, d_v, _ = w_uv.shape
        w_ov = torch.einsum("mhv,hvc->hmc", w_o.view(w_o.shape[0], h, d_v), w_uv)  # (h, d_model, d_c)
        return torch.einsum("bshc,hmc->bsm", torch.einsum("bsht,btc->bshc", a, c), w_ov)

    assert ch08.check_absorbed_output(folded).startswith("✓")


# ----------------------------------------------------------------------------------------------------
# predict, then run: chapters 1 to 4 (the others are tested beside their chapters)

PREDICTIONS = [
    (ch01.check_prediction_mean_abs_cos, "ch01", "prediction_mean_abs_cos", 1 / 8, "standard deviation"),
    (ch02.check_prediction_unscaled_max_weight, "ch02", "prediction_unscaled_max_weight", 0.25, "variance d"),
    (ch03.check_prediction_shuffled_past, "ch03", "prediction_last_output_changes", True, "bag of words"),
    (ch04.check_prediction_key_rows, "ch04", "prediction_key_rows", 100, "WITH a cache"),
]


@pytest.mark.parametrize("check, chapter, name, wrong, words", PREDICTIONS, ids=[p[2] for p in PREDICTIONS])
def test_a_prediction_is_judged_and_explained(check, chapter, name, wrong, words):
    assert "write your prediction first" in check(None)
    assert check(solution(chapter, name)).startswith("✓")
    verdict = check(wrong)
    assert verdict.startswith("✗") and words in verdict


def test_predictions_explain_with_measured_numbers():
    assert f"{ch01.measured_mean_abs_cos():.3f}" in ch01.check_prediction_mean_abs_cos(0.1)
    assert math.sqrt(2 / (math.pi * 64)) == pytest.approx(ch01.measured_mean_abs_cos(), abs=0.01)
    m = ch02.measured_max_weights()
    assert m["unscaled"] > 0.9 > 0.3 > m["scaled"]
    assert ch03.shuffled_past_changes()["last"] < 1e-12 < ch03.shuffled_past_changes()["token_1"]
    assert ch04.count_key_rows() == {"no_cache": 5050, "cache": 100}


@pytest.mark.parametrize("check, bad", [(ch01.check_prediction_mean_abs_cos, "0.1"),
                                        (ch02.check_prediction_unscaled_max_weight, 1.5),
                                        (ch03.check_prediction_shuffled_past, 0)])
def test_a_prediction_of_the_wrong_kind_fails(check, bad):
    with pytest.raises(AssertionError):
        check(bad)


# ----------------------------------------------------------------------------------------------------
# the guard itself


def test_the_guard_leaves_no_profiler_and_no_torch_mode_behind():
    before = sys.getprofile()
    with pytest.raises(AssertionError):
        ch02.check_softmax(lambda s: torch.softmax(s, 0))
    with pytest.raises(AssertionError):
        ch08.check_absorbed_scores(_keys_einsum)
    assert sys.getprofile() is before
    assert len(_get_current_function_mode_stack()) == 0


def test_call_answer_reports_a_crash_with_its_input():
    with pytest.raises(AssertionError, match=r"calling your function on \(tensor of shape \(3,\)\) raised KeyError"):
        call_answer(lambda x: {}[x.sum().item()], torch.ones(3))


def test_a_derived_shape_watch_follows_computation_from_its_sources_only():
    source, other = torch.ones(2, 5), torch.ones(7, 3)
    watch = DerivedShapeWatch([source], lambda shape: 3 in shape, "saw {shape}")
    guard = Guard(watchers=[watch])
    with guard:
        (other * 2).sum()  # not derived from the source: its 3 is fine
        (source @ torch.ones(5, 3)).relu()  # derived, with a 3-wide axis
    assert guard.findings == ["saw (2, 3)"]


def test_run_prediction_shows_floats_briefly():
    verdict = run_prediction("x", 1 / 3, lambda g: (True, "because."))
    assert verdict == "✓ x: you predicted 0.3333. because."


def test_a_module_shortcut_covers_its_functions_only():
    """attnlab.costs forbidden: its functions are, AttentionShape's properties (read off the shape) are not."""
    guard = Guard([Shortcut("costs", (costs,), "no")])
    with guard:
        _ = bench_shape().q_input_dim
    assert guard.findings == []
    with guard:
        costs.cache_widths("mha", bench_shape())
    assert guard.findings and "costs" in guard.findings[0]


def bench_shape():
    from attnlab.bench import QUICK_SHAPE

    return QUICK_SHAPE
