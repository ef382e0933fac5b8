"""The fast decode paths compute what the plain formulations computed before them: each test keeps a copy of
the old code as its reference.

- :func:`attnlab.dsa.topk_indices` (torch.topk with ties resolved by position) returns exactly the indices of
  the old full stable sort, ties, -inf, NaN and padding included;
- :meth:`attnlab.dsa.LightningIndexer.score` (matmuls, in-place ReLU, no mask for one query) equals the old
  einsums and causal mask, values and gradients, prefill and decode;
- :func:`attnlab.dsa.gather_tokens` (index_select for one sequence) copies exactly the old rows;
- the indexer's Hadamard rotation as one matmul (:func:`attnlab.quant.hadamard_rotation`) equals the butterflies;
- :meth:`attnlab.mla.MultiHeadLatentAttention.attend_absorbed` (one row per head, a matmul plus baddbmm, no
  mask for one query) equals the old einsums and mask, values and gradients.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnlab.attention import causal_mask, softmax
from attnlab.dsa import IndexerConfig, LightningIndexer, gather_tokens, topk_indices
from attnlab.kv_cache import LayerCache
from attnlab.mla import MLAConfig, MultiHeadLatentAttention
from attnlab.quant import fwht, hadamard_rotation

F64 = torch.float64
seeds = st.integers(0, 2**31 - 1)


# --- the old implementations, verbatim but for their argument checks ---------------------------------------


def old_topk_indices(scores: torch.Tensor, top_k: int) -> torch.Tensor:
    _, s, t = scores.shape
    k = min(top_k, t)
    order = torch.sort(scores, dim=-1, descending=True, stable=True).indices[..., :k]  # (b, s, k)
    visible = torch.arange(t - s, t, device=scores.device) + 1  # tokens query p may see: p + 1
    valid = torch.arange(k, device=scores.device) < visible[:, None]  # (s, k)
    return order.masked_fill(~valid, -1)


def old_score(softmax_scale: float, q: torch.Tensor, weights: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    logits = torch.einsum("bsjd,btd->bsjt", q, k)  # q^I_{t,j} · k^I_s, every head against the shared key
    scores = torch.einsum("bsj,bsjt->bst", weights, torch.relu(logits)) * softmax_scale
    allowed = causal_mask(q.shape[1], k.shape[1], device=q.device)  # (s, t)
    return scores.masked_fill(~allowed, float("-inf"))


def old_gather_tokens(cached: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    batch = torch.arange(cached.shape[0], device=cached.device)[:, None, None]  # (b, 1, 1)
    return cached[batch, indices.clamp_min(0)]


def old_attend_absorbed(layer: MultiHeadLatentAttention, q_nope, q_rope, c_kv, k_rope, mask):
    c = layer.config
    q_latent = torch.einsum("bshd,hdc->bshc", q_nope, layer.w_uk)  # q~_{s,i} = W^UK_i^T q^C_{s,i}
    scores = (torch.einsum("bshc,btc->bsht", q_latent, c_kv)
              + torch.einsum("bshr,btr->bsht", q_rope, k_rope)) * c.softmax_scale  # (b, s, h, t)
    weights = softmax(scores.masked_fill(~mask[None, :, None, :], float("-inf")), dim=-1)
    o_latent = torch.einsum("bsht,btc->bshc", weights, c_kv)  # sum_t a_t c^KV_t, in latent space
    return torch.einsum("bshc,hvc->bshv", o_latent, layer.w_uv), weights  # W^UV_i applied once


# --- top-k ---------------------------------------------------------------------------------------------------

# few distinct values, so ties are everywhere, both zeros (which compare equal), and the infinities
VALUES = (-2.0, -0.5, -0.0, 0.0, 0.5, 1.0, 3.0, float("inf"), float("-inf"))
DTYPES = (torch.float64, torch.float32, torch.bfloat16, torch.float16)


@st.composite
def tied_scores(draw):
    batch, n_keys = draw(st.integers(1, 3)), draw(st.integers(1, 40))
    n_queries = draw(st.integers(1, n_keys))
    top_k = draw(st.integers(1, n_keys + 3))  # below, at and above the number of keys
    values = draw(st.lists(st.sampled_from(VALUES[:-2]), min_size=1, max_size=4, unique=True))
    extremes = draw(st.sampled_from(["none", "inf", "nan"]))
    g = torch.Generator().manual_seed(draw(seeds))
    pick = torch.randint(0, len(values), (batch, n_queries, n_keys), generator=g)
    scores = torch.tensor(values, dtype=F64)[pick]
    if draw(st.booleans()):  # or scores that rarely tie
        scores = torch.randn(scores.shape, generator=g, dtype=F64)
    if extremes != "none":  # a few +inf / -inf (or NaN) entries among the visible ones
        special = torch.rand(scores.shape, generator=g) < 0.1
        fill = torch.tensor([float("inf"), float("-inf")] if extremes == "inf" else [float("nan")], dtype=F64)
        scores = torch.where(special, fill[torch.randint(0, len(fill), scores.shape, generator=g)], scores)
    future = torch.arange(n_keys)[None, :] > torch.arange(n_keys - n_queries, n_keys)[:, None]  # (s, t)
    scores = scores.masked_fill(future, float("-inf"))  # as LightningIndexer.score returns them
    return scores.to(draw(st.sampled_from(DTYPES))), top_k


@settings(max_examples=400, deadline=None)
@given(case=tied_scores())
def test_topk_indices_equals_the_stable_sort_exactly(case, device):
    scores, top_k = case
    scores = scores.to(device)
    new, old = topk_indices(scores, top_k), old_topk_indices(scores, top_k)
    assert new.dtype == old.dtype == torch.int64 and new.shape == old.shape
    assert torch.equal(new, old), (scores, top_k, new, old)


@pytest.mark.parametrize("n_keys,top_k", [(300, 256), (2049, 256), (5000, 2048)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_topk_indices_equals_the_stable_sort_on_long_rows(n_keys, top_k, dtype, device):
    """Decode-sized rows: a prefix of prefill queries plus the last one, scores rounded to 8 levels so the
    k-th value is tied many times over, and a row of all-equal scores."""
    g = torch.Generator().manual_seed(n_keys)
    scores = (torch.randn(2, 3, n_keys, generator=g, dtype=F64) * 2).round().clamp(-4, 3).to(dtype)
    future = torch.arange(n_keys)[None, :] > torch.arange(n_keys - 3, n_keys)[:, None]
    scores = scores.masked_fill(future, float("-inf"))
    scores[1, 0, : n_keys - 2] = 0.0  # every visible score of this query equal
    distinct = torch.randn(2, 3, n_keys, generator=g, dtype=F64).to(dtype).masked_fill(future, float("-inf"))
    for s in (scores, scores[:, -1:], distinct, distinct[:, -1:]):  # prefill-like and decode, ties and none
        s = s.to(device)
        assert torch.equal(topk_indices(s, top_k), old_topk_indices(s, top_k))


# --- the indexer scores ---------------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(batch=st.integers(1, 3), n_keys=st.integers(1, 24), data=st.data(), seed=seeds)
def test_index_scores_equal_the_einsum_formulation(batch, n_keys, data, seed):
    n_heads, head_dim = data.draw(st.integers(1, 5)), data.draw(st.sampled_from([2, 4, 8, 16]))
    n_queries = data.draw(st.sampled_from([1, n_keys, data.draw(st.integers(1, n_keys))]))  # decode and prefill
    config = IndexerConfig(d_model=8, q_lora_rank=None, index_n_heads=n_heads, index_head_dim=head_dim,
                           rope_head_dim=2, index_topk=4)
    indexer = LightningIndexer(config).double()
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, n_queries, n_heads, head_dim, generator=g, dtype=F64, requires_grad=True)
    w = torch.randn(batch, n_queries, n_heads, generator=g, dtype=F64, requires_grad=True)
    k = torch.randn(batch, n_keys, head_dim, generator=g, dtype=F64, requires_grad=True)
    new, old = indexer.score(q, w, k), old_score(config.softmax_scale, q, w, k)
    assert torch.equal(torch.isneginf(new), torch.isneginf(old))
    torch.testing.assert_close(new, old, rtol=1e-12, atol=1e-12)
    # the gradients the indexer's KL loss sends back are the same too (the in-place ReLU is safe)
    cotangent = torch.randn(new.shape, generator=g, dtype=F64).masked_fill(torch.isneginf(old), 0.0)
    grads_new = torch.autograd.grad(new, (q, w, k), cotangent)
    grads_old = torch.autograd.grad(old, (q, w, k), cotangent)
    for a, b in zip(grads_new, grads_old, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_index_scores_of_a_decode_step_read_a_cache_view():
    """The decode step scores one query against a (b, t, d^I) view of the preallocated cache."""
    config = IndexerConfig(d_model=8, q_lora_rank=None, index_n_heads=4, index_head_dim=16, rope_head_dim=4,
                           index_topk=4)
    torch.manual_seed(0)
    indexer = LightningIndexer(config).double()
    x = torch.randn(2, 9, 8, dtype=F64)
    cache = LayerCache(seq_dim=1, capacity=32)
    indexer(x[:, :8], cache=cache)
    step = indexer(x[:, 8:], cache=cache)
    q = indexer.queries(x[:, 8:], torch.tensor([8]))
    expected = old_score(config.softmax_scale, q, indexer.head_weights(x[:, 8:]), cache.tensors["index_key"])
    torch.testing.assert_close(step, expected, rtol=1e-12, atol=1e-12)
    assert torch.isfinite(step).all()


# --- the gather -----------------------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(batch=st.integers(1, 3), n_keys=st.integers(1, 30), n_queries=st.integers(1, 4), top_k=st.integers(1, 12),
       width=st.integers(1, 9), seed=seeds)
def test_gather_tokens_copies_exactly_the_old_rows(batch, n_keys, n_queries, top_k, width, seed, device):
    g = torch.Generator().manual_seed(seed)
    storage = torch.randn(batch, n_keys + 5, width, generator=g, dtype=F64).to(device)
    for cached in (storage[:, :n_keys], storage[:, :n_keys].contiguous()):  # a cache view and a plain tensor
        indices = torch.randint(-1, n_keys, (batch, n_queries, top_k), generator=g).to(device)
        new = gather_tokens(cached, indices)
        assert new.shape == (batch, n_queries, top_k, width)
        assert torch.equal(new, old_gather_tokens(cached, indices))


# --- the Hadamard rotation ------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 4, 8, 16, 32, 64, 128, 256, 512])
def test_hadamard_matmul_equals_the_butterflies(n, device):
    """The indexer's one-matmul rotation, x @ hadamard_rotation(n), is quant.fwht (the butterflies)."""
    x = torch.randn(3, 5, n, dtype=F64).to(device)
    torch.testing.assert_close(x @ hadamard_rotation(n, F64, x.device), fwht(x), rtol=1e-12, atol=1e-12)
    x32 = x.float()
    rotated = x32 @ hadamard_rotation(n, torch.float32, x.device)
    torch.testing.assert_close(rotated, fwht(x32), rtol=1e-5, atol=1e-5)
    assert rotated.dtype == torch.float32


def test_indexer_prepare_rotates_with_the_matmul():
    """LightningIndexer.prepare (hadamard on, FP8 off) equals fwht of its input."""
    indexer = LightningIndexer(IndexerConfig(d_model=16, q_lora_rank=None, index_n_heads=2, index_head_dim=32,
                                             rope_head_dim=8, index_topk=4, hadamard=True, use_fp8=False)).double()
    x = torch.randn(2, 3, 32, dtype=F64)
    torch.testing.assert_close(indexer.prepare(x), fwht(x), rtol=1e-12, atol=1e-12)


def test_hadamard_matrix_cached_under_inference_mode_still_serves_autograd():
    hadamard_rotation.cache_clear()
    x = torch.randn(4, 64, dtype=F64)
    with torch.inference_mode():
        x @ hadamard_rotation(64, F64, x.device)  # builds and caches H_64 here
    x.requires_grad_(True)
    ((x @ hadamard_rotation(64, F64, x.device)) ** 2).sum().backward()  # a rotation: d/dx |x H|^2 = 2 x
    torch.testing.assert_close(x.grad, 2 * x.detach(), rtol=1e-12, atol=1e-12)


# --- absorbed MLA ---------------------------------------------------------------------------------------------


@st.composite
def mla_cases(draw):
    config = MLAConfig(d_model=12, n_heads=draw(st.integers(1, 4)), kv_lora_rank=draw(st.integers(1, 9)),
                       qk_nope_head_dim=draw(st.integers(1, 5)), qk_rope_head_dim=draw(st.sampled_from([2, 4])),
                       v_head_dim=draw(st.integers(1, 5)))
    n_keys = draw(st.integers(1, 20))
    n_queries = draw(st.sampled_from([1, n_keys, draw(st.integers(1, n_keys))]))
    window = draw(st.one_of(st.none(), st.integers(1, n_keys + 2)))
    return config, draw(st.integers(1, 3)), n_queries, n_keys, window, draw(seeds)


@settings(max_examples=60, deadline=None)
@given(case=mla_cases())
def test_absorbed_attention_equals_the_einsum_formulation(case):
    config, batch, n_queries, n_keys, window, seed = case
    torch.manual_seed(seed % 1000)
    layer = MultiHeadLatentAttention(config).double()
    g = torch.Generator().manual_seed(seed)
    h, d_c, d_r = config.n_heads, config.kv_lora_rank, config.qk_rope_head_dim
    q_nope = torch.randn(batch, n_queries, h, config.qk_nope_head_dim, generator=g, dtype=F64, requires_grad=True)
    q_rope = torch.randn(batch, n_queries, h, d_r, generator=g, dtype=F64, requires_grad=True)
    c_kv = torch.randn(batch, n_keys, d_c, generator=g, dtype=F64, requires_grad=True)
    k_rope = torch.randn(batch, n_keys, d_r, generator=g, dtype=F64, requires_grad=True)
    inputs = (q_nope, q_rope, c_kv, k_rope)
    mask = causal_mask(n_queries, n_keys, window=window)
    masks = [(mask, mask)]
    if n_queries == 1 and mask.all():  # the decode step: no mask at all against the old all-true one
        masks.append((None, mask))
    for new_mask, old_mask in masks:
        o, w = layer.attend_absorbed(*inputs, new_mask)
        o_ref, w_ref = old_attend_absorbed(layer, *inputs, old_mask)
        torch.testing.assert_close(o, o_ref, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(w, w_ref, rtol=1e-12, atol=1e-12)
        assert torch.equal(w == 0, w_ref == 0)  # masked keys get exactly zero weight
        cotangent = torch.randn(o.shape, generator=g, dtype=F64)
        params = (*inputs, layer.w_ukv.weight)
        for a, b in zip(torch.autograd.grad(o, params, cotangent), torch.autograd.grad(o_ref, params, cotangent),
                        strict=True):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_absorbed_decode_step_builds_no_mask_and_matches_naive():
    """A cached decode step of the absorbed layer (mask skipped) equals the naive layer's (masked)."""
    config = MLAConfig(d_model=12, n_heads=3, kv_lora_rank=5, qk_nope_head_dim=4, qk_rope_head_dim=4, v_head_dim=3)
    torch.manual_seed(1)
    layer = MultiHeadLatentAttention(config).double()
    x = torch.randn(2, 7, 12, dtype=F64)
    outputs = {}
    for mode in ("absorbed", "naive"):
        cache = LayerCache(seq_dim=1, capacity=16)
        with layer.using(mode):
            layer(x[:, :6], cache=cache)
            outputs[mode] = layer(x[:, 6:], cache=cache, return_weights=True)
    torch.testing.assert_close(outputs["absorbed"].output, outputs["naive"].output, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(outputs["absorbed"].weights, outputs["naive"].weights, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(outputs["absorbed"].output, layer(x).output[:, 6:], rtol=1e-12, atol=1e-12)


# --- what the fast paths still refuse --------------------------------------------------------------------------


def test_fast_paths_keep_refusing_bad_input():
    config = IndexerConfig(d_model=8, q_lora_rank=None, index_n_heads=2, index_head_dim=4, rope_head_dim=2,
                           index_topk=4)
    indexer = LightningIndexer(config)
    with pytest.raises(ValueError, match="seq=3"):  # more queries than keys (they are the last of the keys)
        indexer.score(torch.zeros(1, 3, 2, 4), torch.zeros(1, 3, 2), torch.zeros(1, 2, 4))
    with pytest.raises(ValueError, match="seq=1"):  # one query, no key
        indexer.score(torch.zeros(1, 1, 2, 4), torch.zeros(1, 1, 2), torch.zeros(1, 0, 4))
    layer = MultiHeadLatentAttention(MLAConfig(d_model=8, n_heads=2, kv_lora_rank=4, qk_nope_head_dim=2,
                                               qk_rope_head_dim=2))
    q_nope, q_rope = layer.queries(torch.zeros(1, 1, 8), torch.tensor([0]))
    with pytest.raises((TypeError, ValueError), match="mask"):  # only the absorbed path takes mask=None
        layer.attend_naive(q_nope, q_rope, torch.zeros(1, 1, 4), torch.zeros(1, 1, 2), None)
    with pytest.raises(ValueError, match="mask"):
        layer.attend_absorbed(q_nope, q_rope, torch.zeros(1, 1, 4), torch.zeros(1, 1, 2), torch.ones(1, 1))
    with pytest.raises(ValueError, match="fully masked"):  # a masked row with no key left is still an error
        layer.attend_absorbed(q_nope, q_rope, torch.zeros(1, 1, 4), torch.zeros(1, 1, 2),
                              torch.zeros(1, 1, dtype=torch.bool))
