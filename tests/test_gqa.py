"""Tests for attnlab.gqa: grouped attention against torch and against MHA, cached decode, MHA -> GQA."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from attnlab.attention import attention_matrix
from attnlab.gqa import AttentionConfig, GroupedQueryAttention, grouped_attention, mha_to_gqa, repeat_kv
from attnlab.kv_cache import LayerCache

F64 = torch.float64
SETTINGS = settings(max_examples=25, deadline=None)
seeds = st.integers(0, 2**31 - 1)


def randn(gen: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=gen, dtype=F64)


def bottom_right_causal(n_q: int, n_k: int) -> torch.Tensor:
    return torch.ones(n_q, n_k, dtype=torch.bool).tril(diagonal=n_k - n_q)


@st.composite
def gqa_shapes(draw):
    """(batch, n_heads, n_kv_heads, n_q, n_k, head_dim) with n_kv_heads | n_heads and n_q <= n_k."""
    n_kv = draw(st.integers(1, 3))
    group = draw(st.integers(1, 3))
    n_k = draw(st.integers(1, 6))
    n_q = draw(st.integers(1, n_k))
    return draw(st.integers(1, 2)), n_kv * group, n_kv, n_q, n_k, draw(st.integers(1, 6))


@st.composite
def layer_configs(draw, kinds=("mha", "gqa", "mqa"), rope=None):
    kind = draw(st.sampled_from(kinds))
    n_heads = draw(st.sampled_from([1, 2, 4]) if kind == "mha" else st.sampled_from([2, 4, 6]))
    n_kv = {"mha": n_heads, "mqa": 1, "gqa": draw(st.sampled_from([d for d in range(1, n_heads + 1)
                                                                    if n_heads % d == 0]))}[kind]
    head_dim = draw(st.sampled_from([2, 4]))
    d_model = draw(st.sampled_from([4, 8]))
    use_rope = draw(st.booleans()) if rope is None else rope
    bias = draw(st.booleans())
    return AttentionConfig(d_model, n_heads, n_kv, head_dim=head_dim, rope=use_rope, bias=bias)


def make_layer(config: AttentionConfig, seed: int) -> GroupedQueryAttention:
    torch.manual_seed(seed)
    layer = GroupedQueryAttention(config).to(F64)
    with torch.no_grad():  # non-zero biases, so a misplaced bias shows up
        for p in layer.parameters():
            p.normal_(0.0, 0.5)
    return layer


# --- grouped_attention ----------------------------------------------------------------------------------


@SETTINGS
@given(shape=gqa_shapes(), causal=st.booleans(), seed=seeds)
def test_grouped_attention_matches_sdpa_enable_gqa(shape, causal, seed):
    b, n_heads, n_kv, n_q, n_k, d = shape
    gen = torch.Generator().manual_seed(seed)
    q, k, v = randn(gen, b, n_heads, n_q, d), randn(gen, b, n_kv, n_k, d), randn(gen, b, n_kv, n_k, d)
    out, weights = grouped_attention(q, k, v, causal=causal)
    mask = bottom_right_causal(n_q, n_k) if causal else None
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-12)
    assert out.shape == (b, n_heads, n_q, d) and weights.shape == (b, n_heads, n_q, n_k)


@pytest.mark.parametrize("n_kv", [1, 4])
def test_grouped_attention_extremes_match_sdpa(n_kv):
    """MQA (one KV head) and MHA (n_kv = n_heads), decode-shaped (n_q < n_k) and square."""
    gen = torch.Generator().manual_seed(n_kv)
    for n_q, n_k in ((1, 7), (3, 7), (7, 7)):
        q, k, v = randn(gen, 2, 4, n_q, 6), randn(gen, 2, n_kv, n_k, 6), randn(gen, 2, n_kv, n_k, 6)
        out, _ = grouped_attention(q, k, v)
        expected = F.scaled_dot_product_attention(q, k, v, attn_mask=bottom_right_causal(n_q, n_k),
                                                  enable_gqa=True)
        torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-12)


@SETTINGS
@given(shape=gqa_shapes(), causal=st.booleans(), seed=seeds)
def test_grouped_attention_equals_attention_over_repeated_kv(shape, causal, seed):
    b, n_heads, n_kv, n_q, n_k, d = shape
    gen = torch.Generator().manual_seed(seed)
    q, k, v = randn(gen, b, n_heads, n_q, d), randn(gen, b, n_kv, n_k, d), randn(gen, b, n_kv, n_k, d)
    out, weights = grouped_attention(q, k, v, causal=causal)
    r = n_heads // n_kv
    ref_out, ref_weights = attention_matrix(q, repeat_kv(k, r), repeat_kv(v, r), causal=causal)
    torch.testing.assert_close(out, ref_out, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(weights, ref_weights, rtol=1e-12, atol=1e-14)


def test_grouped_attention_scale():
    gen = torch.Generator().manual_seed(0)
    q, k, v = randn(gen, 1, 4, 3, 5), randn(gen, 1, 2, 3, 5), randn(gen, 1, 2, 3, 5)
    out, _ = grouped_attention(q, k, v, scale=0.3)
    expected = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=0.3, enable_gqa=True)
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-12)


def test_repeat_kv_maps_query_head_to_its_group():
    x = torch.arange(2 * 3 * 4 * 5, dtype=F64).view(2, 3, 4, 5)
    out = repeat_kv(x, 2)
    assert out.shape == (2, 6, 4, 5)
    for h in range(6):
        assert torch.equal(out[:, h], x[:, h // 2])
    assert torch.equal(repeat_kv(x, 1), x)


def test_grouped_attention_errors():
    z = torch.zeros
    with pytest.raises(ValueError, match=r"q must have 4 dims \(batch, n_heads, seq, head_dim\)"):
        grouped_attention(z(4, 3, 5), z(1, 2, 3, 5), z(1, 2, 3, 5))
    with pytest.raises(ValueError, match="n_heads=4 is not divisible by n_kv_heads=3"):
        grouped_attention(z(1, 4, 3, 5), z(1, 3, 3, 5), z(1, 3, 3, 5))
    with pytest.raises(ValueError, match=r"k has head_dim=6 \(dim 3\), expected 5"):
        grouped_attention(z(1, 4, 3, 5), z(1, 2, 3, 6), z(1, 2, 3, 6))
    with pytest.raises(ValueError, match=r"k has batch=3 \(dim 0\), expected 2"):
        grouped_attention(z(2, 4, 3, 5), z(3, 2, 3, 5), z(3, 2, 3, 5))
    with pytest.raises(ValueError, match=r"v has shape \(1, 2, 4, 5\) but k has \(1, 2, 3, 5\)"):
        grouped_attention(z(1, 4, 3, 5), z(1, 2, 3, 5), z(1, 2, 4, 5))
    with pytest.raises(ValueError, match="dtype mismatch: q is torch.float32 but k is torch.float64"):
        grouped_attention(z(1, 4, 3, 5), z(1, 2, 3, 5, dtype=F64), z(1, 2, 3, 5, dtype=F64))
    with pytest.raises(ValueError, match="device mismatch: q is on cpu but k is on meta"):
        grouped_attention(z(1, 4, 3, 5), z(1, 2, 3, 5, device="meta"), z(1, 2, 3, 5, device="meta"))
    with pytest.raises(ValueError, match="n_q=4 must be <= n_k=3"):
        grouped_attention(z(1, 4, 4, 5), z(1, 2, 3, 5), z(1, 2, 3, 5))


# --- GroupedQueryAttention as MHA == torch.nn.MultiheadAttention ----------------------------------------


@settings(max_examples=15, deadline=None)
@given(n_heads=st.sampled_from([1, 2, 4]), head_dim=st.sampled_from([1, 2, 3]), batch=st.integers(1, 2),
       seq=st.integers(1, 6), seed=seeds)
def test_mha_equals_torch_multihead_attention(n_heads, head_dim, batch, seq, seed):
    d_model = n_heads * head_dim
    config = AttentionConfig(d_model, n_heads, rope=False, bias=False)
    assert config.kind == "mha"
    ours = make_layer(config, seed)
    ref = nn.MultiheadAttention(d_model, n_heads, bias=False, batch_first=True, dtype=F64)
    with torch.no_grad():
        ref.in_proj_weight.copy_(torch.cat([ours.w_q.weight, ours.w_k.weight, ours.w_v.weight]))
        ref.out_proj.weight.copy_(ours.w_o.weight)
    x = torch.randn(batch, seq, d_model, dtype=F64, generator=torch.Generator().manual_seed(seed))
    future = torch.ones(seq, seq, dtype=torch.bool).triu(diagonal=1)  # True = may NOT attend, in torch
    expected, expected_weights = ref(x, x, x, attn_mask=future, need_weights=True, average_attn_weights=False)
    out = ours(x, return_weights=True)
    y, weights = out.output, out.weights
    torch.testing.assert_close(y, expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(weights, expected_weights, rtol=1e-10, atol=1e-12)


# --- cached decode == full forward ----------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(config=layer_configs(), batch=st.integers(1, 2), prefill=st.integers(1, 5), new=st.integers(1, 5),
       seed=seeds)
def test_cached_decode_equals_full_forward(config, batch, prefill, new, seed):
    layer = make_layer(config, seed)
    x = torch.randn(batch, prefill + new, config.d_model, dtype=F64, generator=torch.Generator().manual_seed(seed))
    full = layer(x).output
    cache = LayerCache()
    steps = [layer(x[:, :prefill], cache=cache).output]  # prefill
    for t in range(prefill, prefill + new):  # then one token at a time
        steps.append(layer(x[:, t : t + 1], cache=cache).output)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=1e-10, atol=1e-12)
    assert cache.seq_len == prefill + new
    assert cache.tensors["k"].shape == (batch, config.n_kv_heads, prefill + new, config.head_dim)


@pytest.mark.parametrize("kind", ["mha", "gqa", "mqa"])
def test_cached_decode_in_uneven_chunks(kind):
    n_kv = {"mha": 4, "gqa": 2, "mqa": 1}[kind]
    config = AttentionConfig(d_model=8, n_heads=4, n_kv_heads=n_kv)
    assert config.kind == kind
    layer = make_layer(config, 3)
    x = torch.randn(2, 9, 8, dtype=F64)
    full_out = layer(x, return_weights=True)
    full, full_weights = full_out.output, full_out.weights
    cache, outs, start = LayerCache(), [], 0
    for size in (4, 1, 3, 1):
        out = layer(x[:, start : start + size], cache=cache, return_weights=True)
        y, weights = out.output, out.weights
        assert weights.shape == (2, 4, size, start + size)
        torch.testing.assert_close(weights, full_weights[:, :, start : start + size, : start + size])
        outs.append(y)
        start += size
    torch.testing.assert_close(torch.cat(outs, dim=1), full, rtol=1e-10, atol=1e-12)


def test_rope_makes_the_layer_position_dependent():
    """Without the cache's offset, a decode step would rotate the new token as position 0: check it matters."""
    layer = make_layer(AttentionConfig(d_model=8, n_heads=2, n_kv_heads=1), 0)
    x = torch.randn(1, 4, 8, dtype=F64)
    full = layer(x).output
    cache = LayerCache()
    layer(x[:, :3], cache=cache)
    q, k, _ = layer.project(x[:, 3:], start=0)
    q_right, k_right, _ = layer.project(x[:, 3:], start=3)
    assert not torch.allclose(q, q_right) and not torch.allclose(k, k_right)
    torch.testing.assert_close(layer(x[:, 3:], cache=cache).output, full[:, 3:])


# --- mha_to_gqa -----------------------------------------------------------------------------------------


def pooled_by_loop(w: torch.Tensor, n_kv_old: int, n_kv_new: int, head_dim: int) -> torch.Tensor:
    """Reference for mean-pooling: new head g = mean of old heads g*pool .. (g+1)*pool - 1."""
    pool = n_kv_old // n_kv_new
    heads = [w[i * head_dim : (i + 1) * head_dim] for i in range(n_kv_old)]
    new_heads = []
    for g in range(n_kv_new):
        total = torch.zeros_like(heads[0])
        for j in range(pool):
            total = total + heads[g * pool + j]
        new_heads.append(total / pool)
    return torch.cat(new_heads)


@pytest.mark.parametrize(("n_heads", "n_kv_old", "n_kv_new"), [(8, 8, 2), (8, 8, 1), (8, 4, 2), (6, 6, 3),
                                                                (6, 3, 1), (4, 4, 4)])
@pytest.mark.parametrize("bias", [False, True])
def test_mha_to_gqa_pools_group_means(n_heads, n_kv_old, n_kv_new, bias):
    config = AttentionConfig(d_model=12, n_heads=n_heads, n_kv_heads=n_kv_old, head_dim=4, bias=bias)
    old = make_layer(config, 7)
    new = mha_to_gqa(old, n_kv_new)
    assert new.config.n_kv_heads == n_kv_new and new.config.n_heads == n_heads
    assert new.config.head_dim == 4 and new.config.bias == bias and new.config.rope == config.rope
    assert new.w_q.weight.dtype == F64
    for name in ("w_q", "w_o"):
        for p_new, p_old in zip(getattr(new, name).parameters(), getattr(old, name).parameters(), strict=True):
            assert torch.equal(p_new, p_old)
    for name in ("w_k", "w_v"):
        src, dst = getattr(old, name), getattr(new, name)
        assert dst.weight.shape == (n_kv_new * 4, 12)
        torch.testing.assert_close(dst.weight, pooled_by_loop(src.weight, n_kv_old, n_kv_new, 4))
        if bias:
            torch.testing.assert_close(dst.bias, pooled_by_loop(src.bias, n_kv_old, n_kv_new, 4))


def test_mha_to_gqa_to_the_same_heads_is_the_identity():
    old = make_layer(AttentionConfig(d_model=8, n_heads=4, n_kv_heads=2, bias=True), 1)
    new = mha_to_gqa(old, 2)
    assert new is not old
    for (name, p_old), (name_new, p_new) in zip(old.state_dict().items(), new.state_dict().items(), strict=True):
        assert name == name_new and torch.equal(p_old, p_new)
    x = torch.randn(2, 5, 8, dtype=F64)
    assert torch.equal(new(x).output, old(x).output)


@pytest.mark.parametrize(("n_kv_old", "n_kv_new"), [(8, 2), (8, 1), (4, 2)])
def test_mha_to_gqa_keeps_outputs_when_heads_in_a_group_are_identical(n_kv_old, n_kv_new):
    config = AttentionConfig(d_model=16, n_heads=8, n_kv_heads=n_kv_old, head_dim=4, bias=True)
    old = make_layer(config, 2)
    pool = n_kv_old // n_kv_new
    with torch.no_grad():  # make every K/V head equal to the first head of its new group
        for lin in (old.w_k, old.w_v):
            for params in (lin.weight, lin.bias):
                heads = params.view(n_kv_new, pool, 4, *params.shape[1:])
                heads.copy_(heads[:, :1].expand_as(heads).clone())
    new = mha_to_gqa(old, n_kv_new)
    x = torch.randn(2, 6, 16, dtype=F64)
    torch.testing.assert_close(new(x).output, old(x).output, rtol=1e-10, atol=1e-12)


def test_mha_to_gqa_changes_outputs_of_a_generic_layer():
    """The converse of the test above: pooling distinct heads is lossy (why GQA needs uptraining)."""
    old = make_layer(AttentionConfig(d_model=16, n_heads=8), 2)
    x = torch.randn(2, 6, 16, dtype=F64)
    assert not torch.allclose(mha_to_gqa(old, 2)(x).output, old(x).output)


def test_mha_to_gqa_errors():
    layer = GroupedQueryAttention(AttentionConfig(d_model=12, n_heads=6, n_kv_heads=6))
    with pytest.raises(ValueError, match=r"n_kv_heads \(old\)=6 is not divisible by n_kv_heads \(new\)=4"):
        mha_to_gqa(layer, 4)
    with pytest.raises(ValueError, match="n_kv_heads=0 must be a positive integer"):
        mha_to_gqa(layer, 0)


# --- AttentionConfig ------------------------------------------------------------------------------------


def test_config_divisibility_message():
    with pytest.raises(ValueError) as info:
        AttentionConfig(d_model=768, n_heads=12, n_kv_heads=5)
    assert str(info.value) == "n_heads=12 is not divisible by n_kv_heads=5"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"d_model": 0, "n_heads": 2}, "d_model=0 must be a positive integer"),
        ({"d_model": 8, "n_heads": 0}, "n_heads=0 must be a positive integer"),
        ({"d_model": 8, "n_heads": 2, "n_kv_heads": 0}, "n_kv_heads=0 must be a positive integer"),
        ({"d_model": 10, "n_heads": 4}, "d_model=10 is not divisible by n_heads=4"),
        ({"d_model": 8, "n_heads": 2, "head_dim": -2}, "head_dim=-2 must be a positive integer"),
        ({"d_model": 6, "n_heads": 2}, "head_dim=3 must be even when rope=True"),
        ({"d_model": 8, "n_heads": 2.0}, "n_heads=2.0 must be a positive integer"),
    ],
)
def test_config_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AttentionConfig(**kwargs)


def test_config_derived_fields():
    mha = AttentionConfig(d_model=64, n_heads=8)
    assert (mha.n_kv_heads, mha.head_dim, mha.kind, mha.group_size) == (8, 8, "mha", 1)
    assert mha.cache_elements_per_token() == 2 * 8 * 8
    gqa = AttentionConfig(d_model=64, n_heads=8, n_kv_heads=2)
    assert (gqa.kind, gqa.group_size, gqa.cache_elements_per_token()) == ("gqa", 4, 2 * 2 * 8)
    mqa = AttentionConfig(d_model=64, n_heads=8, n_kv_heads=1, head_dim=16)
    assert (mqa.kind, mqa.group_size, mqa.cache_elements_per_token()) == ("mqa", 8, 2 * 16)
    assert AttentionConfig(d_model=6, n_heads=2, rope=False).head_dim == 3  # odd is fine without RoPE
    assert AttentionConfig(d_model=4, n_heads=1).kind == "mha"  # n_heads = 1 counts as MHA


def test_layer_parameter_shapes_follow_the_config():
    layer = GroupedQueryAttention(AttentionConfig(d_model=12, n_heads=6, n_kv_heads=2, head_dim=4))
    assert layer.w_q.weight.shape == (24, 12) and layer.w_o.weight.shape == (12, 24)
    assert layer.w_k.weight.shape == layer.w_v.weight.shape == (8, 12)
    assert layer.w_q.bias is None


def test_layer_errors():
    layer = GroupedQueryAttention(AttentionConfig(d_model=8, n_heads=2))
    with pytest.raises(ValueError, match=r"x must have 3 dims \(batch, seq, d_model\)"):
        layer(torch.zeros(4, 8))
    with pytest.raises(ValueError, match="x has d_model=6, this layer expects 8"):
        layer(torch.zeros(1, 4, 6))
    with pytest.raises(ValueError, match="dtype mismatch: x is torch.float64 but the weights are torch.float32"):
        layer(torch.zeros(1, 4, 8, dtype=F64))
    with pytest.raises(ValueError, match="device mismatch: x is on meta but weights is on cpu"):
        layer(torch.zeros(1, 4, 8, device="meta"))
