"""Tests for attnlab.mla: absorbed == naive == the paper's equations, the latent cache and its size, the
RoPE-on-latent counter-example, YaRN, parity with Hugging Face's DeepseekV3Attention and with DeepSeek's
reference formulas, argument checks."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from deepseek_reference import DeepSeekArgs, deepseek_args, deepseek_freqs_cis, deepseek_mla, deepseek_weights
from hypothesis import given, settings
from hypothesis import strategies as st

from attnlab.devices import supported_dtypes
from attnlab.gqa import AttentionConfig, GroupedQueryAttention
from attnlab.huggingface import attention_forward
from attnlab.kv_cache import KVCache, LayerCache
from attnlab.mla import (
    MLAConfig,
    MultiHeadLatentAttention,
    from_transformers,
    rope_on_latent_keys,
    rope_to_halves,
    yarn_frequencies,
    yarn_mscale,
)
from attnlab.model import TinyLM, TinyLMConfig, generate
from attnlab.rope import apply_rope, interleaved_to_halves, rope_frequencies, rotate_pairs
from attnlab.sizing import ModelSpec, kv_cache_bytes

F64 = torch.float64
SETTINGS = settings(max_examples=25, deadline=None)
seeds = st.integers(0, 2**31 - 1)
YARN = {"rope_factor": 4.0, "original_max_position": 8, "rope_base": 500.0, "mscale": 0.707}


def run(layer: MultiHeadLatentAttention, x: torch.Tensor, mode: str = "absorbed", **kwargs) -> torch.Tensor:
    """The layer's output for x, computed in ``mode`` ("absorbed", the default, or "naive")."""
    with layer.using(mode):
        return layer(x, **kwargs).output


def make_layer(config: MLAConfig, seed: int = 0, dtype: torch.dtype = F64) -> MultiHeadLatentAttention:
    """A layer with every weight (RMSNorm gains included) drawn from N(0, 0.5^2), so no term hides."""
    torch.manual_seed(seed)
    layer = MultiHeadLatentAttention(config).to(dtype)
    with torch.no_grad():
        for p in layer.parameters():
            p.normal_(0.0, 0.5)
    return layer


def small_config(q_lora_rank=None, interleaved=True, yarn=False, **shape) -> MLAConfig:
    dims = {"d_model": 12, "n_heads": 3, "kv_lora_rank": 5, "qk_nope_head_dim": 4, "qk_rope_head_dim": 4,
            "v_head_dim": 3, **shape}
    return MLAConfig(q_lora_rank=q_lora_rank, rope_interleaved=interleaved, **dims, **(YARN if yarn else {}))


@st.composite
def mla_configs(draw):
    return MLAConfig(
        d_model=draw(st.sampled_from([4, 8, 12])), n_heads=draw(st.integers(1, 3)),
        q_lora_rank=draw(st.sampled_from([None, 3, 6])), kv_lora_rank=draw(st.integers(1, 6)),
        qk_nope_head_dim=draw(st.integers(1, 5)), qk_rope_head_dim=draw(st.sampled_from([2, 4, 6])),
        v_head_dim=draw(st.integers(1, 5)), rope_interleaved=draw(st.booleans()),
        **(YARN if draw(st.booleans()) else {}))


# --- the paper's equations, written out independently ------------------------------------------------


def paper_mla(layer: MultiHeadLatentAttention, x: torch.Tensor) -> torch.Tensor:
    """Eqs. 37-47 of the DeepSeek-V2 paper token by token and head by head, with attnlab.rope.apply_rope
    for RoPE (no YaRN): the plainest possible reading, sharing no code with the layer's forward."""
    c = layer.config
    d_h, d_r, d_c, d_v = c.qk_nope_head_dim, c.qk_rope_head_dim, c.kv_lora_rank, c.v_head_dim
    w_uq = (layer.w_q if c.q_lora_rank is None else layer.w_uq).weight.view(c.n_heads, d_h + d_r, -1)
    w_ukv = layer.w_ukv.weight.view(c.n_heads, d_h + d_v, d_c)
    w_dkv, w_kr = layer.w_dkv.weight[:d_c], layer.w_dkv.weight[d_c:]

    def rms_norm(v, gain):
        return gain * v / torch.sqrt(v.pow(2).mean() + c.norm_eps)

    def rope(v, m):
        return apply_rope(v[None], torch.tensor([m]), c.rope_base, c.rope_interleaved)[0]

    b, s, _ = x.shape
    out = torch.zeros(b, s, c.d_model, dtype=x.dtype)
    for n in range(b):
        h = x[n]
        c_q = [h[t] if c.q_lora_rank is None else rms_norm(layer.w_dq.weight @ h[t], layer.q_norm.weight)
               for t in range(s)]  # (37)
        c_kv = [rms_norm(w_dkv @ h[t], layer.kv_norm.weight) for t in range(s)]  # (41)
        k_r = [rope(w_kr @ h[t], t) for t in range(s)]  # (43)
        for t in range(s):
            heads = []
            for i in range(c.n_heads):
                q = torch.cat([w_uq[i, :d_h] @ c_q[t], rope(w_uq[i, d_h:] @ c_q[t], t)])  # (38)-(40)
                keys = [torch.cat([w_ukv[i, :d_h] @ c_kv[j], k_r[j]]) for j in range(t + 1)]  # (42), (44)
                values = [w_ukv[i, d_h:] @ c_kv[j] for j in range(t + 1)]  # (45)
                a = torch.softmax(torch.stack([q @ k for k in keys]) / math.sqrt(d_h + d_r), dim=0)
                heads.append(sum(a[j] * values[j] for j in range(t + 1)))  # (46)
            out[n, t] = layer.w_o.weight @ torch.cat(heads)  # (47)
    return out


@pytest.mark.parametrize("q_lora_rank", [None, 6])
@pytest.mark.parametrize("interleaved", [True, False])
@pytest.mark.parametrize("mode", ["absorbed", "naive"])
def test_matches_the_papers_equations(q_lora_rank, interleaved, mode):
    layer = make_layer(small_config(q_lora_rank, interleaved), seed=1)
    x = torch.randn(2, 5, 12, dtype=F64)
    torch.testing.assert_close(run(layer, x, mode), paper_mla(layer, x), rtol=1e-10, atol=1e-12)


# --- absorbed == naive, cached decode == full forward ------------------------------------------------


@SETTINGS
@given(config=mla_configs(), batch=st.integers(1, 2), seq=st.integers(1, 6), data=st.data(), seed=seeds)
def test_absorbed_equals_naive_prefill_and_cached_decode(config, batch, seq, data, seed):
    layer = make_layer(config, seed % 1000)
    x = torch.randn(batch, seq, config.d_model, generator=torch.Generator().manual_seed(seed), dtype=F64)
    full = run(layer, x, "naive")
    torch.testing.assert_close(run(layer, x, "absorbed"), full, rtol=1e-10, atol=1e-10)
    prefill = data.draw(st.integers(1, seq), label="prefill")
    for mode in ("absorbed", "naive"):
        cache = LayerCache(seq_dim=1)
        steps = [run(layer, x[:, :prefill], mode, cache=cache)]
        steps += [run(layer, x[:, t : t + 1], mode, cache=cache) for t in range(prefill, seq)]  # one token each
        torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=1e-10, atol=1e-10)
        assert cache.seq_len == seq


def test_modes_can_be_mixed_on_one_cache():
    """Both modes cache the same thing, so a prefill in one mode and decoding in the other agree."""
    layer = make_layer(small_config(6, yarn=True), seed=2)
    x = torch.randn(1, 6, 12, dtype=F64)
    caches = {mode: LayerCache(seq_dim=1) for mode in ("absorbed", "naive")}
    for mode, cache in caches.items():
        run(layer, x[:, :4], mode, cache=cache)
    for name in ("c_kv", "k_rope"):
        torch.testing.assert_close(caches["absorbed"].tensors[name], caches["naive"].tensors[name], rtol=1e-12,
                                   atol=1e-12)
    y = torch.cat([run(layer, x[:, t : t + 1], "naive", cache=caches["absorbed"]) for t in (4, 5)], dim=1)
    torch.testing.assert_close(y, layer(x).output[:, 4:], rtol=1e-10, atol=1e-10)


def test_attention_weights_are_causal_and_normalised():
    layer = make_layer(small_config(), seed=3)
    x = torch.randn(2, 5, 12, dtype=F64)
    out = layer(x, return_weights=True)
    y, weights = out.output, out.weights
    assert y.shape == (2, 5, 12) and weights.shape == (2, 3, 5, 5) and out.selection is None
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3, 5, dtype=F64))
    allowed = torch.ones(5, 5, dtype=torch.bool).tril()
    assert torch.all(weights[..., ~allowed] == 0) and torch.all(weights[..., allowed] > 0)
    with layer.using("naive"):
        naive = layer(x, return_weights=True).weights
    torch.testing.assert_close(weights, naive, rtol=1e-10, atol=1e-12)
    assert layer(x).weights is None  # only when asked for
    cache = LayerCache(seq_dim=1)
    layer(x[:, :4], cache=cache)
    last = layer(x[:, 4:], cache=cache, return_weights=True).weights
    assert last.shape == (2, 3, 1, 5)
    torch.testing.assert_close(last, weights[:, :, 4:], rtol=1e-10, atol=1e-12)


def test_w_uk_and_w_uv_are_views_of_w_ukv():
    layer = make_layer(small_config(), seed=4)
    assert layer.w_uk.shape == (3, 4, 5) and layer.w_uv.shape == (3, 3, 5)
    w = layer.w_ukv.weight.view(3, 7, 5)
    assert torch.equal(layer.w_uk, w[:, :4]) and torch.equal(layer.w_uv, w[:, 4:])
    assert layer.w_uk.data_ptr() == layer.w_ukv.weight.data_ptr()


# --- what the cache holds and what it costs ----------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("q_lora_rank", [None, 6])
def test_cache_holds_exactly_the_latent_and_the_rope_key(dtype, q_lora_rank):
    config = small_config(q_lora_rank, kv_lora_rank=6, qk_rope_head_dim=4, qk_nope_head_dim=4)
    layer = make_layer(config, seed=5, dtype=dtype)
    x = torch.randn(3, 7, 12, dtype=F64).to(dtype)
    for mode in ("absorbed", "naive"):
        cache = LayerCache(seq_dim=1)
        run(layer, x[:, :4], mode, cache=cache)
        run(layer, x[:, 4:5], mode, cache=cache)
        run(layer, x[:, 5:], mode, cache=cache)
        assert sorted(cache.tensors) == ["c_kv", "k_rope"]
        assert cache.tensors["c_kv"].shape == (3, 7, 6) and cache.tensors["k_rope"].shape == (3, 7, 4)
        per_token = config.cache_elements_per_token()
        assert per_token == 6 + 4
        assert cache.nbytes == 3 * 7 * per_token * dtype.itemsize
        spec = ModelSpec(name="tiny-mla", source="test", n_layers=1, n_heads=3, n_kv_heads=3, head_dim=4,
                         attention="mla", hidden_size=12, kv_lora_rank=6, qk_rope_head_dim=4)
        assert cache.nbytes == kv_cache_bytes(spec, seq_len=7, batch=3, dtype=dtype)
    # what is cached: the RMS-normed latent and the rotated shared key, computed here from the weights
    x64 = x.double()
    layer64 = layer.double()
    cache = LayerCache(seq_dim=1)
    layer64(x64, cache=cache)
    latent = x64 @ layer64.w_dkv.weight[:6].T
    latent = layer64.kv_norm.weight * latent / torch.sqrt(latent.pow(2).mean(-1, keepdim=True) + 1e-6)
    k_rope = apply_rope(x64 @ layer64.w_dkv.weight[6:].T, torch.arange(7), interleaved=True)
    torch.testing.assert_close(cache.tensors["c_kv"], latent, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(cache.tensors["k_rope"], k_rope, rtol=1e-12, atol=1e-12)


def test_cache_is_independent_of_head_count():
    sizes = []
    for n_heads in (1, 4):
        layer = make_layer(small_config(n_heads=n_heads), seed=6)
        cache = LayerCache(seq_dim=1)
        layer(torch.randn(1, 5, 12, dtype=F64), cache=cache)
        sizes.append(cache.nbytes)
    gqa = GroupedQueryAttention(AttentionConfig(12, 4, head_dim=4)).double()
    gqa_cache = LayerCache()
    gqa(torch.randn(1, 5, 12, dtype=F64), cache=gqa_cache)
    assert sizes[0] == sizes[1] == 5 * (5 + 4) * 8
    assert gqa_cache.nbytes == 5 * 2 * 4 * 4 * 8  # MHA with the same 4 heads caches 2 n_h d_h


def test_plugs_into_the_tiny_model_and_its_cache():
    """forward(x, cache=..., return_weights=...) is the interface model.Block calls."""
    config = TinyLMConfig(vocab_size=32, d_model=16, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=24,
                          max_seq_len=32)
    torch.manual_seed(7)
    model = TinyLM(config)
    mla = MLAConfig(d_model=16, n_heads=4, q_lora_rank=8, kv_lora_rank=6, qk_nope_head_dim=4, qk_rope_head_dim=2)
    for block in model.blocks:
        block.attn = make_layer(mla, seed=8, dtype=torch.float32)
    model.eval()
    ids = torch.randint(0, 32, (2, 5))
    cached = generate(model, ids, 6, use_cache=True)
    assert torch.equal(cached, generate(model, ids, 6, use_cache=False))
    cache = model.new_cache()
    _, maps = model(cached, cache=cache, return_attention=True)
    assert maps[0].shape == (2, 4, 11, 11)
    assert isinstance(cache, KVCache) and cache.nbytes == 2 * 2 * 11 * (6 + 2) * 4
    spec = ModelSpec(name="tiny", source="test", n_layers=2, n_heads=4, n_kv_heads=4, head_dim=4, attention="mla",
                     hidden_size=16, kv_lora_rank=6, qk_rope_head_dim=2)
    assert cache.nbytes == kv_cache_bytes(spec, seq_len=11, batch=2, dtype=torch.float32)


# --- the counter-example: RoPE on the latent-derived keys cannot be absorbed -------------------------


@pytest.mark.parametrize("interleaved", [True, False])
def test_rope_on_latent_keys_does_not_absorb_but_decoupled_rope_does(interleaved):
    layer = make_layer(small_config(6, interleaved, qk_nope_head_dim=4), seed=9)
    x = torch.randn(2, 8, 12, dtype=F64)
    naive, folded = rope_on_latent_keys(layer, x, "naive"), rope_on_latent_keys(layer, x, "absorbed")
    error = (folded - naive).abs().max() / naive.abs().max()
    assert error > 0.05, f"folding W^UK past a position-dependent rotation should fail, error {error:.2e}"
    # only the first token is right: it sees the key at t = 0 alone, and R_0 = I
    torch.testing.assert_close(folded[:, 0], naive[:, 0], rtol=1e-10, atol=1e-12)
    # MLA's decoupled RoPE absorbs exactly
    decoupled = (run(layer, x, "absorbed") - run(layer, x, "naive")).abs().max()
    assert decoupled < 1e-10


def test_rope_on_latent_keys_naive_is_position_aware_attention():
    """The counter-example's naive path is ordinary RoPE attention over the per-head keys W^UK_i c^KV_t,
    rebuilt here with attnlab.rope.apply_rope (scale d_h^-0.5 = 1/2)."""
    layer = make_layer(small_config(qk_nope_head_dim=4), seed=10)
    x = torch.randn(1, 6, 12, dtype=F64)
    y = rope_on_latent_keys(layer, x)
    q_nope, _ = layer.queries(x, torch.arange(6))
    c_kv, _ = layer.latents(x, torch.arange(6))
    k = torch.einsum("btc,hdc->bthd", c_kv, layer.w_uk)
    q = apply_rope(q_nope.transpose(1, 2), torch.arange(6), interleaved=True)  # (b, h, s, d_h)
    k = apply_rope(k.transpose(1, 2), torch.arange(6), interleaved=True)
    a = torch.softmax((q @ k.transpose(-1, -2) / 2.0).masked_fill(torch.ones(6, 6).triu(1).bool(), -math.inf), -1)
    o = a @ torch.einsum("btc,hvc->bhtv", c_kv, layer.w_uv)
    torch.testing.assert_close(y, layer.w_o(o.transpose(1, 2).reshape(1, 6, -1)), rtol=1e-10, atol=1e-12)


# --- RoPE, YaRN, softmax scale -----------------------------------------------------------------------


@pytest.mark.parametrize("interleaved", [True, False])
def test_rotate_pairs_is_apply_rope_with_plain_frequencies(interleaved):
    x = torch.randn(2, 7, 3, 8, dtype=F64)
    positions = torch.arange(3, 10)
    angles = positions[:, None, None].double() * rope_frequencies(8, 500.0)
    expected = apply_rope(x.transpose(1, 2), positions, 500.0, interleaved).transpose(1, 2)
    torch.testing.assert_close(rotate_pairs(x, angles, interleaved), expected, rtol=1e-12, atol=1e-12)


def test_yarn_frequencies_ramp_between_kept_and_interpolated():
    theta = rope_frequencies(16, 10000.0)
    assert torch.equal(yarn_frequencies(16, 10000.0), theta)
    yarn = yarn_frequencies(16, 10000.0, factor=40.0, original_max_position=4096)
    # pair i turns 4096 theta_i / (2 pi) times over the original context: fast pairs keep theta_i, slow
    # pairs are divided by the factor, the ones in between are blended
    turns = 4096 * theta / (2 * math.pi)
    fast, slow = turns > 32, turns < 1
    assert fast.any() and slow.any()
    torch.testing.assert_close(yarn[fast], theta[fast], rtol=1e-12, atol=0)
    torch.testing.assert_close(yarn[slow], theta[slow] / 40, rtol=1e-12, atol=0)
    assert torch.all(yarn <= theta) and torch.all(yarn >= theta / 40)
    between = ~fast & ~slow
    assert torch.all(yarn[between] < theta[between]) and torch.all(yarn[between] > theta[between] / 40)


def test_softmax_scale_and_cache_width_of_deepseek_v3():
    """DeepSeek-V3's shape (config_671B.json): 192-wide heads, 576 cached numbers, YaRN factor 40."""
    v3 = MLAConfig(d_model=7168, n_heads=128, q_lora_rank=1536, kv_lora_rank=512, qk_nope_head_dim=128,
                   qk_rope_head_dim=64, v_head_dim=128, rope_factor=40.0, original_max_position=4096)
    assert v3.qk_head_dim == 192 and v3.cache_elements_per_token() == 576
    m = 0.1 * 1.0 * math.log(40) + 1
    assert v3.softmax_scale == pytest.approx(192**-0.5 * m * m, rel=1e-15)
    assert v3.softmax_scale == pytest.approx(0.1352337, rel=1e-6)
    no_yarn = MLAConfig(d_model=7168, n_heads=128, kv_lora_rank=512, qk_nope_head_dim=128, qk_rope_head_dim=64)
    assert no_yarn.softmax_scale == 192**-0.5 and no_yarn.rope_amplitude == 1.0
    # DeepSeek-V2: mscale 0.707 gives the paper's sqrt(t) = 0.0707 ln s + 1
    assert yarn_mscale(40.0, 0.707) == pytest.approx(0.0707 * math.log(40) + 1, rel=1e-12)
    assert yarn_mscale(1.0, 0.707) == 1.0
    args = DeepSeekArgs(dim=7168, n_heads=128, q_lora_rank=1536, kv_lora_rank=512, qk_nope_head_dim=128,
                        qk_rope_head_dim=64, v_head_dim=128, max_seq_len=4096 * 4)
    assert args.softmax_scale == pytest.approx(v3.softmax_scale, rel=1e-15)


def test_forward_uses_the_yarn_softmax_scale():
    """Rebuild the attention weights from q, k and the hand-written scale (d_h + d_h^R)^-0.5 m^2."""
    config = small_config(yarn=True)
    layer = make_layer(config, seed=11)
    x = torch.randn(1, 6, 12, dtype=F64)
    weights = layer(x, return_weights=True).weights
    q_nope, q_rope = layer.queries(x, torch.arange(6))
    c_kv, k_rope = layer.latents(x, torch.arange(6))
    k_nope = torch.einsum("btc,hdc->bthd", c_kv, layer.w_uk)
    scores = torch.einsum("bshd,bthd->bhst", q_nope, k_nope) + torch.einsum("bshr,btr->bhst", q_rope, k_rope)
    m = 0.1 * 0.707 * math.log(4.0) + 1
    scale = (4 + 4) ** -0.5 * m * m
    expected = torch.softmax((scores * scale).masked_fill(torch.ones(6, 6).triu(1).bool(), -math.inf), dim=-1)
    torch.testing.assert_close(weights, expected, rtol=1e-10, atol=1e-12)
    assert not torch.allclose(weights, torch.softmax(
        (scores * (4 + 4) ** -0.5).masked_fill(torch.ones(6, 6).triu(1).bool(), -math.inf), dim=-1))


# --- layouts ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("q_lora_rank", [None, 6])
def test_rope_to_halves_is_a_permutation(q_lora_rank):
    layer = make_layer(small_config(q_lora_rank, yarn=True, qk_rope_head_dim=6), seed=12)
    halves = rope_to_halves(layer)
    assert halves.config.rope_interleaved is False
    x = torch.randn(2, 5, 12, dtype=F64)
    caches = LayerCache(seq_dim=1), LayerCache(seq_dim=1)
    torch.testing.assert_close(halves(x, cache=caches[1]).output, layer(x, cache=caches[0]).output, rtol=1e-10,
                               atol=1e-12)
    p = interleaved_to_halves(6)
    torch.testing.assert_close(caches[1].tensors["k_rope"], caches[0].tensors["k_rope"][..., p])
    torch.testing.assert_close(caches[1].tensors["c_kv"], caches[0].tensors["c_kv"])
    with pytest.raises(ValueError, match="rope_interleaved=True"):
        rope_to_halves(halves)


# --- DeepSeek's reference formulas --------------------------------------------------------------------


@pytest.mark.parametrize("q_lora_rank", [None, 6])
@pytest.mark.parametrize("yarn", [False, True])
@pytest.mark.parametrize("attn_impl", ["absorb", "naive"])
def test_matches_deepseeks_reference_formulas(q_lora_rank, yarn, attn_impl):
    config = small_config(q_lora_rank, interleaved=True, yarn=yarn, qk_rope_head_dim=6)
    layer = make_layer(config, seed=13)
    args = deepseek_args(config, max_seq_len=32)
    assert args.softmax_scale == pytest.approx(config.softmax_scale, rel=1e-15)
    freqs_cis = deepseek_freqs_cis(args)  # complex, (32, 3)
    x = torch.randn(2, 7, 12, dtype=F64)
    ours, theirs = LayerCache(seq_dim=1), None
    for start, end in ((0, 4), (4, 5), (5, 6), (6, 7)):  # prefill, then one token at a time
        y = layer(x[:, start:end], cache=ours).output
        y_ds, theirs = deepseek_mla(x[:, start:end], deepseek_weights(layer), args, start, freqs_cis[start:end],
                                    theirs, attn_impl)
        torch.testing.assert_close(y, y_ds, rtol=1e-10, atol=1e-12)
    if attn_impl == "absorb":  # DeepSeek's kv_cache and pe_cache are this course's c_kv and k_rope
        torch.testing.assert_close(theirs[0], ours.tensors["c_kv"], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(theirs[1], ours.tensors["k_rope"], rtol=1e-12, atol=1e-12)
    else:  # naive mode caches per-head keys (d_h + d_h^R wide) and values (d_v wide)
        k, v = theirs
        assert k.shape == (2, 7, 3, 4 + 6) and v.shape == (2, 7, 3, 3)
        assert k.nbytes + v.nbytes == 2 * 7 * 3 * (4 + 6 + 3) * 8 > ours.nbytes


def test_deepseek_freqs_cis_match_the_layers_rope():
    config = small_config(yarn=True, qk_rope_head_dim=8)
    args = deepseek_args(config, max_seq_len=40)
    torch.testing.assert_close(deepseek_freqs_cis(args).angle()[1], yarn_frequencies(
        8, 500.0, 4.0, 8, 32.0, 1.0), rtol=1e-12, atol=1e-15)
    with pytest.raises(ValueError, match="max_seq_len"):
        deepseek_args(config, max_seq_len=8)
    with pytest.raises(ValueError, match="interleaved"):
        deepseek_args(small_config(interleaved=False), max_seq_len=8)


# --- Hugging Face DeepseekV3Attention ------------------------------------------------------------------


@pytest.fixture(scope="module")
def hf():
    transformers = pytest.importorskip("transformers")
    from transformers.cache_utils import DynamicCache
    from transformers.models.deepseek_v3 import modeling_deepseek_v3 as modeling

    return transformers.DeepseekV3Config, modeling, DynamicCache


def hf_attention(hf, dtype, interleave, q_lora_rank, rope_parameters=None, seed=0):
    config_cls, modeling, _ = hf
    kwargs = {"hidden_size": 24, "num_attention_heads": 3, "num_key_value_heads": 3, "q_lora_rank": q_lora_rank,
              "kv_lora_rank": 8, "qk_nope_head_dim": 6, "qk_rope_head_dim": 8, "v_head_dim": 5,
              "max_position_embeddings": 32, "rope_interleave": interleave, "num_hidden_layers": 1}
    if rope_parameters is not None:
        kwargs["rope_parameters"] = rope_parameters
    config = config_cls(**kwargs)
    config._attn_implementation = "eager"
    torch.manual_seed(seed)
    attention = modeling.DeepseekV3Attention(config, layer_idx=0).to(dtype)
    with torch.no_grad():
        for p in attention.parameters():
            p.normal_(0.0, 0.5)
    return attention, modeling.DeepseekV3RotaryEmbedding(config)


HF_YARN = {"rope_type": "yarn", "rope_theta": 500.0, "factor": 4.0, "original_max_position_embeddings": 8,
           "beta_fast": 32, "beta_slow": 1, "mscale": 0.707, "mscale_all_dim": 0.707}


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("interleave", [True, False])
@pytest.mark.parametrize("q_lora_rank", [None, 12])
@pytest.mark.parametrize("yarn", [False, True])
def test_matches_hugging_face_deepseek_v3(hf, dtype, interleave, q_lora_rank, yarn):
    """Outputs, attention weights and cache agree with transformers' DeepseekV3Attention, prefill and decode.

    Hugging Face's RMSNorm and rotary tables compute in float32 whatever the input dtype, so float64
    agrees to float32 accuracy only."""
    _, _, dynamic_cache = hf
    attention, rotary = hf_attention(hf, dtype, interleave, q_lora_rank, HF_YARN if yarn else None)
    layer = from_transformers(attention)
    assert layer.config.rope_interleaved is interleave and layer.config.yarn is yarn
    assert layer.config.softmax_scale == pytest.approx(attention.scaling, rel=1e-12)
    torch.testing.assert_close(layer.theta, rotary.inv_freq.double(), rtol=1e-6, atol=0)
    x = torch.randn(2, 6, 24, dtype=F64).to(dtype)
    theirs, ours = dynamic_cache(config=attention.config), LayerCache(seq_dim=1)
    for start, end in ((0, 4), (4, 5), (5, 6)):
        positions = torch.arange(start, end)[None].expand(2, -1)
        cos, sin = rotary(x, positions)
        n = end - start
        mask = torch.full((n, end), -math.inf, dtype=dtype).triu(start + 1)[None, None]
        y_hf, w_hf = attention_forward(attention, x[:, start:end], (cos, sin), mask, theirs)
        out = layer(x[:, start:end], cache=ours, return_weights=True)
        y, w = out.output, out.weights
        torch.testing.assert_close(y, y_hf, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(w, w_hf, rtol=1e-5, atol=1e-6)
    # transformers 5 caches the latent too: keys = RMS-normed c^KV, values = rotated k^R, each (b, 1, t, .);
    # with rope_interleave it returns the rotated pairs in halves order, a fixed permutation
    keys, values = theirs.layers[0].keys[:, 0], theirs.layers[0].values[:, 0]
    p = interleaved_to_halves(8) if interleave else torch.arange(8)
    torch.testing.assert_close(ours.tensors["c_kv"], keys, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ours.tensors["k_rope"][..., p], values, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mscales", [{"mscale": 1.0, "mscale_all_dim": 0.707}, {"mscale": 0.707}, {}])
def test_hugging_face_yarn_mscale_variants(hf, mscales):
    """Hugging Face scales softmax by m(mscale_all_dim)^2 and cos/sin by m(mscale) / m(mscale_all_dim)."""
    rope_parameters = {k: v for k, v in HF_YARN.items() if k not in ("mscale", "mscale_all_dim")} | mscales
    attention, rotary = hf_attention(hf, F64, True, 12, rope_parameters)
    layer = from_transformers(attention)
    assert layer.config.softmax_scale == pytest.approx(attention.scaling, rel=1e-12)
    assert layer.config.rope_amplitude == pytest.approx(rotary.attention_scaling, rel=1e-12)
    x = torch.randn(1, 5, 24, dtype=F64)
    cos, sin = rotary(x, torch.arange(5)[None])
    mask = torch.full((5, 5), -math.inf, dtype=F64).triu(1)[None, None]
    torch.testing.assert_close(layer(x).output, attention(x, (cos, sin), mask)[0], rtol=1e-5, atol=1e-5)


def test_from_transformers_rejects_what_it_cannot_copy(hf):
    config_cls, modeling, _ = hf
    with pytest.raises(ValueError, match="DeepseekV3Attention"):
        from_transformers(GroupedQueryAttention(AttentionConfig(8, 2)))
    config = config_cls(hidden_size=24, num_attention_heads=3, num_key_value_heads=3, q_lora_rank=None,
                        kv_lora_rank=8, qk_nope_head_dim=6, qk_rope_head_dim=8, v_head_dim=5, attention_bias=True)
    with pytest.raises(ValueError, match="attention_bias"):
        from_transformers(modeling.DeepseekV3Attention(config, layer_idx=0))


# --- devices and dtypes ---------------------------------------------------------------------------------


def test_runs_on_every_device_and_dtype(device):
    config = small_config(6, yarn=True)
    reference_layer = make_layer(config, seed=14)
    x64 = torch.randn(2, 5, 12, dtype=F64)
    reference = reference_layer(x64).output
    for dtype in supported_dtypes(device):
        layer = copy.deepcopy(reference_layer).to(device=device, dtype=dtype)
        x = x64.to(device=device, dtype=dtype)
        cache = LayerCache(seq_dim=1)
        y = torch.cat([layer(x[:, :3], cache=cache).output, layer(x[:, 3:], cache=cache).output], dim=1)
        assert y.shape == (2, 5, 12) and y.dtype == dtype and y.device.type == device.type
        tol = {torch.bfloat16: 0.15, torch.float32: 1e-4, F64: 1e-10}[dtype]
        scale = reference.abs().max().item()
        assert (y.cpu().double() - reference).abs().max().item() <= tol * scale
        assert (run(layer, x, "naive").cpu().double() - reference).abs().max().item() <= tol * scale


# --- argument checks ------------------------------------------------------------------------------------


@pytest.mark.parametrize("change, match", [
    ({"d_model": 0}, "d_model"),
    ({"n_heads": -2}, "n_heads"),
    ({"kv_lora_rank": 0}, "kv_lora_rank"),
    ({"qk_nope_head_dim": 1.5}, "qk_nope_head_dim"),
    ({"qk_rope_head_dim": 3}, "qk_rope_head_dim=3 must be even"),
    ({"v_head_dim": 0}, "v_head_dim"),
    ({"q_lora_rank": -1}, "q_lora_rank"),
    ({"rope_base": 1.0}, "rope_base"),
    ({"rope_interleaved": "yes"}, "rope_interleaved"),
    ({"norm_eps": 0.0}, "norm_eps"),
    ({"rope_factor": 0.5}, "rope_factor"),
    ({"rope_factor": 4.0}, "original_max_position"),
    ({"rope_factor": 4.0, "original_max_position": 0}, "original_max_position"),
    ({"beta_fast": 1.0, "beta_slow": 1.0}, "beta_fast=1.0 must be > beta_slow"),
    ({"mscale": -1.0}, "mscale"),
    ({"mscale_all_dim": float("nan")}, "mscale_all_dim"),
])
def test_config_rejects_bad_values(change, match):
    dims = {"d_model": 8, "n_heads": 2, "kv_lora_rank": 4, "qk_nope_head_dim": 2, "qk_rope_head_dim": 2} | change
    with pytest.raises(ValueError, match=match):
        MLAConfig(**dims)


def test_config_normalises_defaults():
    config = MLAConfig(d_model=8, n_heads=2, kv_lora_rank=4, qk_nope_head_dim=3, qk_rope_head_dim=2, q_lora_rank=0)
    assert config.v_head_dim == 3 and config.q_lora_rank is None and config.cache_elements_per_token() == 6
    assert not hasattr(MultiHeadLatentAttention(config), "w_dq")


def test_forward_rejects_bad_input():
    layer = make_layer(small_config(), seed=15)
    x = torch.randn(1, 3, 12, dtype=F64)  # bad hidden states: test_layer_interface, for every layer
    with pytest.raises(ValueError, match="implementation='absorb' must be one of"):
        layer.use("absorb")
    assert layer.implementation == "absorbed"  # a refused choice changes nothing
    with pytest.raises(TypeError, match="mode"):
        layer(x, mode="naive")  # the form is the layer's setting, not a call argument
    with pytest.raises(ValueError, match="seq_dim=2"):
        layer(x, cache=LayerCache(seq_dim=2))
    gqa_cache = LayerCache()
    gqa_cache.update(k=torch.zeros(1, 2, 3, 4, dtype=F64), v=torch.zeros(1, 2, 3, 4, dtype=F64))
    with pytest.raises(ValueError, match="cache holds"):
        layer(x, cache=gqa_cache)
    with pytest.raises(ValueError, match="qk_nope_head_dim=3 must be even"):
        rope_on_latent_keys(make_layer(small_config(qk_nope_head_dim=3)), x)
    with pytest.raises(ValueError, match="MLAConfig"):
        MultiHeadLatentAttention({"d_model": 12})
    with pytest.raises(ValueError, match="attn_impl"):
        deepseek_mla(x, deepseek_weights(layer), deepseek_args(layer.config, 8), 0, None, None, "fast")


def test_rotate_pairs_rejects_mismatched_angles():
    with pytest.raises(ValueError, match="x.shape\\[-1\\]=5 must be even"):
        rotate_pairs(torch.zeros(2, 5), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="angles has 3 pairs"):
        rotate_pairs(torch.zeros(2, 4), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="original_max_position"):
        yarn_frequencies(8, factor=2.0)
