"""Tests for attnlab.attention: vector form == matrix form == torch's SDPA, safe softmax, masks, FLOPs."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.flop_counter import FlopCounterMode

from attnlab.attention import attention_flops, attention_matrix, attention_vector, causal_mask, softmax

F64 = torch.float64
SETTINGS = settings(max_examples=25, deadline=None)
seeds = st.integers(0, 2**31 - 1)


def randn(gen: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=gen, dtype=F64)


def bottom_right_causal(n_q: int, n_k: int) -> torch.Tensor:
    """Reference mask, built independently of the library: query i is position n_k - n_q + i."""
    return torch.ones(n_q, n_k, dtype=torch.bool).tril(diagonal=n_k - n_q)


@st.composite
def attention_shapes(draw, square: bool = False):
    batch = draw(st.integers(1, 2))
    heads = draw(st.integers(1, 3))
    n_k = draw(st.integers(1, 6))
    n_q = n_k if square else draw(st.integers(1, n_k))
    d = draw(st.integers(1, 8))
    d_v = draw(st.integers(1, 8))
    return batch, heads, n_q, n_k, d, d_v


# --- matrix form against torch --------------------------------------------------------------------------


@SETTINGS
@given(shape=attention_shapes(), causal=st.booleans(), seed=seeds)
def test_matrix_form_matches_torch_sdpa(shape, causal, seed):
    b, h, n_q, n_k, d, d_v = shape
    gen = torch.Generator().manual_seed(seed)
    q, k, v = randn(gen, b, h, n_q, d), randn(gen, b, h, n_k, d), randn(gen, b, h, n_k, d_v)
    out, weights = attention_matrix(q, k, v, causal=causal)
    mask = bottom_right_causal(n_q, n_k) if causal else None
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-12)
    assert out.shape == (b, h, n_q, d_v) and weights.shape == (b, h, n_q, n_k)
    torch.testing.assert_close(weights.sum(-1), torch.ones(b, h, n_q, dtype=F64))


@SETTINGS
@given(shape=attention_shapes(square=True), seed=seeds)
def test_causal_square_matches_sdpa_is_causal(shape, seed):
    b, h, n, _, d, d_v = shape
    gen = torch.Generator().manual_seed(seed)
    q, k, v = randn(gen, b, h, n, d), randn(gen, b, h, n, d), randn(gen, b, h, n, d_v)
    out, weights = attention_matrix(q, k, v, causal=True)
    expected = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-12)
    assert torch.all(weights.triu(diagonal=1) == 0)


@SETTINGS
@given(shape=attention_shapes(), causal=st.booleans(), seed=seeds)
def test_boolean_mask_matches_sdpa(shape, causal, seed):
    b, h, n_q, n_k, d, d_v = shape
    gen = torch.Generator().manual_seed(seed)
    q, k, v = randn(gen, b, h, n_q, d), randn(gen, b, h, n_k, d), randn(gen, b, h, n_k, d_v)
    mask = torch.rand(b, 1, n_q, n_k, generator=gen) < 0.5  # broadcast over heads
    # keep at least one visible key per query: its own position n_k - n_q + i, visible even when causal
    mask[..., torch.arange(n_q), torch.arange(n_k - n_q, n_k)] = True
    out, weights = attention_matrix(q, k, v, causal=causal, mask=mask)
    allowed = mask & bottom_right_causal(n_q, n_k) if causal else mask
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-12)
    assert torch.all(weights.masked_select(~allowed.expand_as(weights)) == 0)


@SETTINGS
@given(shape=attention_shapes(), scale=st.floats(0.01, 3.0), seed=seeds)
def test_explicit_scale_matches_sdpa(shape, scale, seed):
    b, h, n_q, n_k, d, d_v = shape
    gen = torch.Generator().manual_seed(seed)
    q, k, v = randn(gen, b, h, n_q, d), randn(gen, b, h, n_k, d), randn(gen, b, h, n_k, d_v)
    out, _ = attention_matrix(q, k, v, scale=scale)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, scale=scale), rtol=1e-10, atol=1e-12)


def test_leading_dims_broadcast():
    gen = torch.Generator().manual_seed(0)
    q, k, v = randn(gen, 2, 3, 4, 5), randn(gen, 1, 3, 6, 5), randn(gen, 1, 3, 6, 2)
    out, _ = attention_matrix(q, k, v)
    expected = F.scaled_dot_product_attention(q, k.expand(2, -1, -1, -1), v.expand(2, -1, -1, -1))
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-12)


# --- vector form == matrix form -------------------------------------------------------------------------


@SETTINGS
@given(shape=attention_shapes(), seed=seeds)
def test_vector_form_matches_matrix_form(shape, seed):
    _, _, n_q, n_k, d, d_v = shape
    gen = torch.Generator().manual_seed(seed)
    q, k, v = randn(gen, n_q, d), randn(gen, n_k, d), randn(gen, n_k, d_v)
    out, weights = attention_matrix(q, k, v)
    for i in range(n_q):
        o_i, a_i = attention_vector(q[i], k, v)
        torch.testing.assert_close(o_i, out[i], rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(a_i, weights[i], rtol=1e-10, atol=1e-12)


@SETTINGS
@given(shape=attention_shapes(), seed=seeds)
def test_vector_form_over_visible_keys_matches_causal_matrix_form(shape, seed):
    _, _, n_q, n_k, d, d_v = shape
    gen = torch.Generator().manual_seed(seed)
    q, k, v = randn(gen, n_q, d), randn(gen, n_k, d), randn(gen, n_k, d_v)
    out, _ = attention_matrix(q, k, v, causal=True)
    for i in range(n_q):
        visible = n_k - n_q + i + 1  # query i sits at position n_k - n_q + i
        o_i, _ = attention_vector(q[i], k[:visible], v[:visible])
        torch.testing.assert_close(o_i, out[i], rtol=1e-10, atol=1e-12)


def test_vector_form_by_hand():
    q = torch.tensor([1.0, 0.0], dtype=F64)
    keys = torch.tensor([[2.0, 0.0], [0.0, 2.0]], dtype=F64)
    values = torch.tensor([[1.0, 0.0, 3.0], [0.0, 1.0, -1.0]], dtype=F64)
    out, weights = attention_vector(q, keys, values)
    s = torch.tensor([2.0 / math.sqrt(2), 0.0], dtype=F64)
    a = s.exp() / s.exp().sum()
    torch.testing.assert_close(weights, a)
    torch.testing.assert_close(out, a[0] * values[0] + a[1] * values[1])


# --- safe softmax ---------------------------------------------------------------------------------------


@SETTINGS
@given(rows=st.integers(1, 4), cols=st.integers(1, 8), spread=st.floats(0.1, 30.0), seed=seeds)
def test_softmax_matches_torch_on_ordinary_rows(rows, cols, spread, seed):
    gen = torch.Generator().manual_seed(seed)
    scores = randn(gen, rows, cols) * spread
    torch.testing.assert_close(softmax(scores), torch.softmax(scores, dim=-1), rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(softmax(scores, dim=0), torch.softmax(scores, dim=0), rtol=1e-12, atol=1e-15)


@SETTINGS
@given(cols=st.integers(2, 8), shift=st.floats(-1e4, 1e4), seed=seeds)
def test_softmax_is_shift_invariant_even_for_huge_scores(cols, shift, seed):
    gen = torch.Generator().manual_seed(seed)
    scores = randn(gen, cols)
    shifted = softmax(scores + shift)
    assert torch.isfinite(shifted).all()
    torch.testing.assert_close(shifted, torch.softmax(scores, dim=-1), rtol=1e-8, atol=1e-10)


def test_softmax_stays_finite_where_naive_exp_overflows():
    scores = torch.tensor([[1e4, 1e4 - 1.0, 0.0], [1e4, 1e4, 1e4]], dtype=torch.float32)
    naive = scores.exp() / scores.exp().sum(-1, keepdim=True)
    assert not torch.isfinite(naive).all()  # exp(1e4) overflows: inf / inf = nan
    out = softmax(scores)
    assert torch.isfinite(out).all()
    e = math.exp(-1.0)
    expected = torch.tensor([[1 / (1 + e), e / (1 + e), 0.0], [1 / 3, 1 / 3, 1 / 3]])
    torch.testing.assert_close(out, expected)


def test_softmax_gives_masked_keys_exactly_zero():
    scores = torch.tensor([[0.5, float("-inf"), -2.0]], dtype=F64)
    out = softmax(scores)
    assert out[0, 1] == 0
    torch.testing.assert_close(out[0, [0, 2]], torch.softmax(scores[0, [0, 2]], dim=-1))


def test_fully_masked_row_raises_by_default():
    scores = torch.tensor([[float("-inf"), float("-inf")], [0.0, 1.0]], dtype=F64)
    with pytest.raises(ValueError, match=r"1 row\(s\) of scores are fully masked"):
        softmax(scores)


def test_fully_masked_row_gives_zeros_when_asked():
    scores = torch.tensor([[float("-inf"), float("-inf")], [0.0, 1.0]], dtype=F64)
    out = softmax(scores, on_fully_masked="zeros")
    assert not torch.isnan(out).any()
    assert torch.equal(out[0], torch.zeros(2, dtype=F64))
    torch.testing.assert_close(out[1], torch.softmax(scores[1], dim=-1))


def test_attention_with_fully_masked_row():
    gen = torch.Generator().manual_seed(0)
    q, k, v = randn(gen, 3, 4), randn(gen, 5, 4), randn(gen, 5, 2)
    mask = torch.ones(3, 5, dtype=torch.bool)
    mask[1] = False  # query 1 may attend to nothing
    with pytest.raises(ValueError, match="fully masked"):
        attention_matrix(q, k, v, mask=mask)
    out, weights = attention_matrix(q, k, v, mask=mask, on_fully_masked="zeros")
    assert not torch.isnan(out).any() and not torch.isnan(weights).any()
    assert torch.equal(out[1], torch.zeros(2, dtype=F64)) and torch.equal(weights[1], torch.zeros(5, dtype=F64))
    unmasked, _ = attention_matrix(q, k, v)
    torch.testing.assert_close(out[[0, 2]], unmasked[[0, 2]])


def test_softmax_rejects_unknown_policy():
    with pytest.raises(ValueError, match="on_fully_masked='nan' must be 'error' or 'zeros'"):
        softmax(torch.zeros(2), on_fully_masked="nan")


# --- causal mask ----------------------------------------------------------------------------------------


def test_causal_mask_square_is_lower_triangular():
    expected = torch.tensor([[1, 0, 0], [1, 1, 0], [1, 1, 1]], dtype=torch.bool)
    assert torch.equal(causal_mask(3, 3), expected)


def test_causal_mask_decode_rows_are_the_last_positions():
    expected = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    assert torch.equal(causal_mask(2, 5), expected)
    assert torch.equal(causal_mask(1, 4), torch.ones(1, 4, dtype=torch.bool))  # one new token sees all


@settings(max_examples=30, deadline=None)
@given(n_k=st.integers(1, 10), data=st.data())
def test_causal_mask_is_bottom_right_aligned(n_k, data):
    n_q = data.draw(st.integers(0, n_k))
    mask = causal_mask(n_q, n_k)
    assert mask.dtype == torch.bool and mask.shape == (n_q, n_k)
    assert torch.equal(mask, bottom_right_causal(n_q, n_k))
    assert torch.equal(mask, causal_mask(n_k, n_k)[n_k - n_q :])  # the last n_q rows of the full mask


@SETTINGS
@given(shape=attention_shapes(), seed=seeds)
def test_decode_rows_equal_last_rows_of_full_causal_attention(shape, seed):
    b, h, n_q, n_k, d, d_v = shape
    gen = torch.Generator().manual_seed(seed)
    q, k, v = randn(gen, b, h, n_k, d), randn(gen, b, h, n_k, d), randn(gen, b, h, n_k, d_v)
    full, _ = attention_matrix(q, k, v, causal=True)
    last, _ = attention_matrix(q[..., n_k - n_q :, :], k, v, causal=True)
    torch.testing.assert_close(last, full[..., n_k - n_q :, :], rtol=1e-12, atol=1e-14)


def test_causal_mask_errors():
    with pytest.raises(ValueError, match="n_q=4 must be <= n_k=3"):
        causal_mask(4, 3)
    with pytest.raises(ValueError, match="n_q=-1 must be a non-negative integer"):
        causal_mask(-1, 3)
    with pytest.raises(ValueError, match="n_k=2.5 must be a non-negative integer"):
        causal_mask(1, 2.5)


def test_causal_with_more_queries_than_keys_raises():
    with pytest.raises(ValueError, match="n_q=3 must be <= n_k=2"):
        attention_matrix(torch.zeros(3, 4), torch.zeros(2, 4), torch.zeros(2, 4), causal=True)


# --- FLOPs ----------------------------------------------------------------------------------------------


def test_attention_flops_formula():
    assert attention_flops(3, 5, 4) == 2 * 3 * 5 * (4 + 4)
    assert attention_flops(3, 5, 4, d_v=6, n_heads=2) == 2 * 3 * 5 * (4 + 6) * 2
    assert attention_flops(1, 1, 1) == 4
    assert attention_flops(128, 128, 64, n_heads=8) == 4 * 128 * 128 * 64 * 8  # the usual 4 n^2 d


@pytest.mark.parametrize("shape", [(1, 1, 4, 4, 8, 8), (2, 3, 2, 5, 4, 6), (3, 2, 7, 7, 2, 3)])
def test_attention_flops_matches_torch_flop_counter(shape):
    b, h, n_q, n_k, d, d_v = shape
    q, k, v = torch.randn(b, h, n_q, d), torch.randn(b, h, n_k, d), torch.randn(b, h, n_k, d_v)
    with FlopCounterMode(display=False) as counter:
        attention_matrix(q, k, v)
    assert counter.get_total_flops() == b * attention_flops(n_q, n_k, d, d_v, n_heads=h)


# --- argument checks ------------------------------------------------------------------------------------


def test_attention_matrix_rejects_bad_shapes():
    z = torch.zeros
    with pytest.raises(ValueError, match=r"q must have at least 2 dims .* got shape \(4,\)"):
        attention_matrix(z(4), z(3, 4), z(3, 4))
    with pytest.raises(ValueError, match=r"k has d \(query width\)=5 \(dim -1\), expected 4"):
        attention_matrix(z(2, 4), z(3, 5), z(3, 4))
    with pytest.raises(ValueError, match=r"v has n_k \(number of keys\)=2 \(dim -2\), expected 3"):
        attention_matrix(z(2, 4), z(3, 4), z(2, 4))
    with pytest.raises(ValueError, match="shapes do not broadcast together"):
        attention_matrix(z(2, 3, 2, 4), z(3, 3, 5, 4), z(3, 3, 5, 4))


def test_attention_matrix_rejects_bad_masks():
    q, k, v = torch.zeros(2, 4), torch.zeros(3, 4), torch.zeros(3, 4)
    with pytest.raises(ValueError, match="mask must be a boolean tensor"):
        attention_matrix(q, k, v, mask=torch.ones(2, 3))
    with pytest.raises(ValueError, match="shapes do not broadcast together"):
        attention_matrix(q, k, v, mask=torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"must broadcast to the scores' shape"):
        attention_matrix(q, k, v, mask=torch.ones(5, 2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="device mismatch: q is on cpu but mask is on meta"):
        attention_matrix(q, k, v, mask=torch.ones(2, 3, dtype=torch.bool, device="meta"))


def test_attention_matrix_rejects_dtype_and_device_mismatch():
    q, k, v = torch.zeros(2, 4), torch.zeros(3, 4), torch.zeros(3, 4)
    with pytest.raises(ValueError, match="dtype mismatch: q is torch.float32 but k is torch.float64"):
        attention_matrix(q, k.double(), v)
    with pytest.raises(ValueError, match="dtype mismatch: q is torch.float32 but v is torch.bfloat16"):
        attention_matrix(q, k, v.bfloat16())
    with pytest.raises(ValueError, match="device mismatch: q is on cpu but v is on meta"):
        attention_matrix(q, k, v.to("meta"))


def test_attention_vector_rejects_bad_input():
    z = torch.zeros
    with pytest.raises(ValueError, match=r"q must have 1 dims \(d,\), got shape \(1, 4\)"):
        attention_vector(z(1, 4), z(3, 4), z(3, 4))
    with pytest.raises(ValueError, match=r"keys must have 2 dims"):
        attention_vector(z(4), z(4), z(3, 4))
    with pytest.raises(ValueError, match=r"values must have 2 dims"):
        attention_vector(z(4), z(3, 4), z(3))
    with pytest.raises(ValueError, match=r"keys has d \(query width\)=5"):
        attention_vector(z(4), z(3, 5), z(3, 4))
    with pytest.raises(ValueError, match=r"values has n \(number of keys\)=2"):
        attention_vector(z(4), z(3, 4), z(2, 4))
    with pytest.raises(ValueError, match="dtype mismatch"):
        attention_vector(z(4), z(3, 4, dtype=F64), z(3, 4))
    with pytest.raises(ValueError, match="device mismatch"):
        attention_vector(z(4), z(3, 4), z(3, 4, device="meta"))
    with pytest.raises(ValueError, match="keys has n=0 rows"):
        attention_vector(z(4), z(0, 4), z(0, 4))
    with pytest.raises(ValueError, match="q must be a torch.Tensor, got list"):
        attention_vector([1.0, 2.0], z(3, 2), z(3, 2))
