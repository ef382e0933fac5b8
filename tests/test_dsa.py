"""Tests for attnlab.dsa: DSA equals dense MLA when top-k covers the context, the selection is the causal
top-k of the index scores, cached decode equals prefill with tokens really dropped, the gather path equals
the dense-masked reference, the indexer's formula, RoPE convention, rotation and FP8, cache size against
attnlab.sizing, the KL losses and training stages, the cost model, parity with Hugging Face's
DeepseekV32Indexer and DeepseekV32Attention, the tiny model, argument checks."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnlab.devices import supported_dtypes
from attnlab.dsa import (
    DeepSeekSparseAttention,
    IndexerConfig,
    IndexSelection,
    LightningIndexer,
    crossover_context,
    from_transformers,
    gather_tokens,
    indexer_config_for,
    indexer_from_transformers,
    indexer_kl_loss,
    indexer_loss,
    layer_cost,
    prefill_switch_context,
    selection_mask,
    set_training_stage,
    sparse_attend_absorbed,
    topk_indices,
)
from attnlab.huggingface import attention_forward
from attnlab.kv_cache import LayerCache
from attnlab.mla import MLAConfig
from attnlab.model import TinyLM, TinyLMConfig, generate
from attnlab.quant import fake_quantize_fp8
from attnlab.rope import apply_rope
from attnlab.sizing import MODELS, ModelSpec, attention_macs_per_cached_token, indexer_elements_per_token

F64 = torch.float64
V32 = MODELS["deepseek-v3.2"]  # the shape the cost model is checked on
SETTINGS = settings(max_examples=15, deadline=None)
seeds = st.integers(0, 2**31 - 1)


def mla_config(q_lora_rank=6, **shape) -> MLAConfig:
    dims = {"d_model": 12, "n_heads": 3, "kv_lora_rank": 5, "qk_nope_head_dim": 4, "qk_rope_head_dim": 4,
            "v_head_dim": 3, **shape}
    return MLAConfig(q_lora_rank=q_lora_rank, **dims)


def make_dsa(config: MLAConfig | None = None, seed: int = 0, dtype=F64, index_n_heads=8, index_head_dim=8,
             index_topk=4, **options) -> DeepSeekSparseAttention:
    """A layer with every weight (norm gains and biases included) drawn from N(0, 0.5^2)."""
    config = mla_config() if config is None else config
    torch.manual_seed(seed)
    layer = DeepSeekSparseAttention(config, indexer_config_for(config, index_n_heads, index_head_dim, index_topk,
                                                               **options)).to(dtype)
    with torch.no_grad():
        for p in layer.parameters():
            p.normal_(0.0, 0.5)
    return layer


def call(layer, x, implementation=None, top_k=None, **kwargs):
    """layer(x, **kwargs) with ``implementation`` and ``top_k`` set for this call (None: the layer's own)."""
    with layer.using(implementation, top_k=top_k):
        return layer(x, **kwargs)


def run_in_chunks(layer, x, bounds, implementation=None):
    """Feed x through one cache in the chunks x[:, a:b] for consecutive (a, b) in bounds."""
    cache = LayerCache(seq_dim=1)
    return torch.cat([call(layer, x[:, a:b], implementation, cache=cache).output for a, b in bounds], dim=1), cache


def bounds_of(cuts, seq):
    edges = [0, *sorted(set(cuts)), seq]
    return [(a, b) for a, b in zip(edges, edges[1:], strict=False) if b > a]


@st.composite
def dsa_cases(draw):
    config = mla_config(q_lora_rank=draw(st.sampled_from([None, 5])), n_heads=draw(st.integers(1, 3)),
                        kv_lora_rank=draw(st.integers(1, 6)), qk_rope_head_dim=draw(st.sampled_from([2, 4])))
    options = {"hadamard": draw(st.booleans()), "index_n_heads": draw(st.integers(1, 4)),
               "index_head_dim": draw(st.sampled_from([4, 8]))}
    seq = draw(st.integers(1, 9))
    return config, options, draw(st.integers(1, 2)), seq, draw(st.lists(st.integers(1, max(seq - 1, 1)), max_size=3))


# --- DSA = dense MLA when nothing is dropped ------------------------------------------------------------


@SETTINGS
@given(case=dsa_cases(), seed=seeds)
def test_top_k_covering_the_context_gives_dense_mla(case, seed):
    config, options, batch, seq, cuts = case
    layer = make_dsa(config, seed % 1000, index_topk=seq, **options)
    x = torch.randn(batch, seq, config.d_model, dtype=F64, generator=torch.Generator().manual_seed(seed))
    dense = layer.mla(x).output
    for impl in ("gather", "mask", "dense"):
        torch.testing.assert_close(call(layer, x, impl).output, dense, rtol=1e-10, atol=1e-10)
        y, _ = run_in_chunks(layer, x, bounds_of(cuts, seq), impl)  # prefill, then decode
        torch.testing.assert_close(y, dense, rtol=1e-10, atol=1e-10)


# --- the selection --------------------------------------------------------------------------------------


def test_selected_set_is_exactly_the_top_k_of_the_index_scores():
    layer = make_dsa(seed=1, index_topk=4)
    x = torch.randn(2, 11, 12, dtype=F64)
    out = layer(x, return_weights=True)
    weights, selection = out.weights, out.selection
    scores, indices = selection.scores, selection.indices
    assert isinstance(selection, IndexSelection) and indices.shape == (2, 11, 4) and scores.shape == (2, 11, 11)
    for b in range(2):
        for t in range(11):
            chosen = indices[b, t][indices[b, t] >= 0]
            assert len(chosen) == min(4, t + 1) and len(set(chosen.tolist())) == len(chosen)
            visible = scores[b, t, : t + 1]
            expected = set(visible.argsort(descending=True)[: min(4, t + 1)].tolist())
            assert set(chosen.tolist()) == expected
            others = [s for s in range(t + 1) if s not in expected]
            if others:  # a strict margin: no tie decides this test
                assert visible[chosen].min() > visible[others].max()
            # the same set for every MLA head: attention weights vanish exactly off the selected set
            support = weights[b, :, t] > 0  # (n_heads, t)
            assert support.eq(selection_mask(indices, 11)[b, t]).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3, 11, dtype=F64))


@SETTINGS
@given(batch=st.integers(1, 2), n_keys=st.integers(1, 12), data=st.data(), seed=seeds)
def test_no_future_token_is_ever_selected(batch, n_keys, data, seed):
    n_queries = data.draw(st.integers(1, n_keys))
    top_k = data.draw(st.integers(1, 14))
    g = torch.Generator().manual_seed(seed)
    scores = torch.randint(-3, 4, (batch, n_queries, n_keys), generator=g).double()  # many ties
    positions = torch.arange(n_keys - n_queries, n_keys)
    future = torch.arange(n_keys)[None, :] > positions[:, None]
    scores = scores.masked_fill(future, float("-inf"))
    indices = topk_indices(scores, top_k)
    assert indices.shape == (batch, n_queries, min(top_k, n_keys))
    valid = indices >= 0
    assert (indices[valid] <= positions[None, :, None].expand_as(indices)[valid]).all()
    assert valid.sum(-1).eq(torch.clamp(positions + 1, max=top_k)).all()
    assert (valid[..., :-1] >= valid[..., 1:]).all()  # padding only at the end
    picked = scores.gather(-1, indices.clamp_min(0))
    assert torch.isfinite(picked[valid]).all() and (picked[..., :-1] >= picked[..., 1:])[valid[..., 1:]].all()
    # a stable choice: ties go to the earlier position, whoever else is scored in the same call
    torch.testing.assert_close(topk_indices(scores[:, -1:], top_k), indices[:, -1:], rtol=0, atol=0)
    ties = topk_indices(torch.zeros(1, 1, n_keys, dtype=F64), top_k)
    assert ties[0, 0].tolist() == list(range(min(top_k, n_keys)))
    # and through a layer: selected positions never exceed the query's own
    layer = make_dsa(seed=seed % 1000, index_topk=top_k)
    x = torch.randn(batch, n_keys, 12, dtype=F64, generator=g)
    got = layer(x).selection.indices
    assert (got <= torch.arange(n_keys)[None, :, None]).all()


def test_cached_decode_equals_prefill_with_tokens_dropped():
    layer = make_dsa(seed=2, index_topk=3)
    x = torch.randn(2, 12, 12, dtype=F64)
    out = layer(x)
    prefill, selection = out.output, out.selection
    dropped = (torch.arange(12) + 1 - 3).clamp_min(0)  # tokens each query cannot attend to
    assert dropped.sum() > 0 and selection.indices.shape[-1] == 3
    assert (prefill - layer.mla(x).output).abs().max() > 1e-3  # the sparse output really differs from dense MLA
    for bounds in ([(t, t + 1) for t in range(12)], [(0, 5), (5, 6), (6, 12)]):
        cache = LayerCache(seq_dim=1)
        steps = [layer(x[:, a:b], cache=cache) for a, b in bounds]
        chosen = [step.selection for step in steps]
        torch.testing.assert_close(torch.cat([step.output for step in steps], 1), prefill, rtol=1e-10, atol=1e-10)
        # a step with t < top_k tokens returns min(top_k, t) slots; pad to compare with the prefill's
        steps = [torch.nn.functional.pad(c.indices, (0, 3 - c.indices.shape[-1]), value=-1) for c in chosen]
        torch.testing.assert_close(torch.cat(steps, 1), selection.indices, rtol=0, atol=0)
        assert set(cache.tensors) == {"c_kv", "k_rope", "index_key"} and cache.seq_len == 12


@SETTINGS
@given(case=dsa_cases(), top_k=st.integers(1, 5), seed=seeds)
def test_gather_path_equals_dense_masked_reference(case, top_k, seed):
    config, options, batch, seq, cuts = case
    layer = make_dsa(config, seed % 1000, index_topk=top_k, **options)
    x = torch.randn(batch, seq, config.d_model, dtype=F64, generator=torch.Generator().manual_seed(seed))
    gather, mask = layer(x, return_weights=True), call(layer, x, "mask", return_weights=True)
    (y_gather, w_gather), (y_mask, w_mask) = (gather.output, gather.weights), (mask.output, mask.weights)
    torch.testing.assert_close(y_gather, y_mask, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(w_gather, w_mask, rtol=1e-10, atol=1e-12)
    y_cached, _ = run_in_chunks(layer, x, bounds_of(cuts, seq))
    torch.testing.assert_close(y_cached, y_mask, rtol=1e-10, atol=1e-10)


def test_gather_reads_only_the_selected_latents():
    """The gather path copies (b, s, top_k, d_c) latents out of the cache; NaN planted in every unselected
    cached latent leaves it untouched, while the dense-masked reference multiplies it by zero weights."""
    layer = make_dsa(seed=3, index_topk=2)
    x = torch.randn(1, 6, 12, dtype=F64)
    cache = LayerCache(seq_dim=1)
    layer(x[:, :5], cache=cache)
    selection = layer(x[:, 5:], cache=cache).selection
    indices = selection.indices  # (1, 1, 2)
    c_kv, k_rope = cache.tensors["c_kv"].clone(), cache.tensors["k_rope"].clone()
    gathered = gather_tokens(c_kv, indices)
    assert gathered.shape == (1, 1, 2, 5)
    torch.testing.assert_close(gathered[0, 0], c_kv[0, indices[0, 0]], rtol=0, atol=0)
    unselected = ~selection_mask(indices, 6)[0, 0]
    c_kv[:, unselected], k_rope[:, unselected] = float("nan"), float("nan")
    q_nope, q_rope = layer.mla.queries(x[:, 5:], torch.tensor([5]))
    o, weights = sparse_attend_absorbed(layer.mla, q_nope, q_rope, c_kv, k_rope, indices)
    assert torch.isfinite(o).all() and weights.shape == (1, 1, 3, 2)
    o_ref, _ = layer.mla.attend_naive(q_nope, q_rope, c_kv, k_rope, ~unselected[None])
    assert torch.isnan(o_ref).any()


# --- the lightning indexer ------------------------------------------------------------------------------


@pytest.mark.parametrize("q_lora_rank", [None, 6])
def test_index_scores_follow_the_formula(q_lora_rank):
    """I[t, s] = sum_j w[t, j] ReLU(q[t, j] · k[s]) * d^-0.5, w = W^IW h * H^-0.5, RoPE on halves of the
    first d^R coordinates, k = LayerNorm(W^IK h), written out with loops."""
    config = IndexerConfig(d_model=12, q_lora_rank=q_lora_rank, index_n_heads=3, index_head_dim=8,
                           rope_head_dim=4, index_topk=2, hadamard=False)
    torch.manual_seed(4)
    indexer = LightningIndexer(config).double()
    with torch.no_grad():
        for p in indexer.parameters():
            p.normal_(0.0, 0.5)
    x = torch.randn(1, 5, 12, dtype=F64)
    q_in = x if q_lora_rank is None else torch.randn(1, 5, 6, dtype=F64)
    scores = indexer(x, None if q_lora_rank is None else q_in)
    pos = torch.arange(5)
    q = (q_in[0] @ indexer.w_q.weight.T).view(5, 3, 8)
    q = torch.cat([apply_rope(q[..., :4].transpose(0, 1), pos, interleaved=False).transpose(0, 1), q[..., 4:]], -1)
    k = torch.nn.functional.layer_norm(x[0] @ indexer.w_k.weight.T, (8,), indexer.k_norm.weight, indexer.k_norm.bias,
                                       1e-6)
    k = torch.cat([apply_rope(k[:, :4], pos, interleaved=False), k[:, 4:]], -1)
    w = x[0] @ indexer.w_weights.weight.T * 3**-0.5
    for t in range(5):
        for s in range(5):
            expected = sum(w[t, j] * torch.relu(q[t, j] @ k[s]) for j in range(3)) * 8**-0.5
            if s <= t:
                assert scores[0, t, s].item() == pytest.approx(expected.item(), rel=1e-12, abs=1e-12)
            else:
                assert scores[0, t, s].item() == -math.inf
    # interleaved RoPE (the first release's bug) gives different scores
    k_inter = torch.cat([apply_rope(k[:, :4], pos, interleaved=True), k[:, 4:]], -1)
    assert not torch.allclose(k_inter, k)


def test_indexer_key_cache_decode_equals_prefill():
    indexer = make_dsa(seed=14, use_fp8=True).indexer
    x, q_in = torch.randn(2, 9, 12, dtype=F64), torch.randn(2, 9, 6, dtype=F64)
    full = indexer(x, q_in)
    cache = LayerCache(seq_dim=1)
    for a, b in ((0, 4), (4, 5), (5, 9)):
        torch.testing.assert_close(indexer(x[:, a:b], q_in[:, a:b], cache=cache), full[:, a:b, :b],
                                   rtol=1e-12, atol=1e-12)
    assert set(cache.tensors) == {"index_key"} and cache.tensors["index_key"].shape == (2, 9, 8)


def test_hadamard_rotation_leaves_scores_unchanged_and_fp8_stays_close():
    exact = make_dsa(seed=5, index_head_dim=16, hadamard=False)
    rotated = make_dsa(seed=5, index_head_dim=16, hadamard=True)
    fp8 = make_dsa(seed=5, index_head_dim=16, hadamard=True, use_fp8=True)
    x = torch.randn(2, 20, 12, dtype=F64)
    s_exact, s_rot = exact(x).selection.scores, rotated(x).selection.scores
    cache = LayerCache(seq_dim=1)
    s_fp8 = fp8(x, cache=cache).selection.scores
    torch.testing.assert_close(s_rot, s_exact, rtol=1e-10, atol=1e-10)
    visible = torch.isfinite(s_exact)
    error = (s_fp8 - s_exact)[visible].abs().mean() / s_exact[visible].abs().mean()
    assert 0 < error < 0.1
    # the cached index keys are what an FP8 kernel holds: quantizing them again changes nothing
    keys = cache.tensors["index_key"]
    torch.testing.assert_close(fake_quantize_fp8(keys, 16, "ue8m0"), keys, rtol=0, atol=0)
    top_exact, top_fp8 = topk_indices(s_exact, 4), topk_indices(s_fp8, 4)
    same = (top_exact[..., :, None] == top_fp8[..., None, :]).any(-1) & (top_exact >= 0)
    assert same.sum() / (top_exact >= 0).sum() > 0.8


def test_indexer_cache_size_matches_sizing():
    spec = ModelSpec(name="tiny-dsa", source="test", n_layers=2, n_heads=3, n_kv_heads=3, head_dim=4,
                     attention="mla", hidden_size=12, kv_lora_rank=5, qk_rope_head_dim=4, index_n_heads=8,
                     index_head_dim=8, index_topk=4)
    layer = make_dsa(index_n_heads=spec.index_n_heads, index_head_dim=spec.index_head_dim)
    _, cache = run_in_chunks(layer, torch.randn(2, 7, 12, dtype=F64), [(0, 4), (4, 7)])
    per_token = {name: t.numel() // (2 * 7) for name, t in cache.tensors.items()}
    assert per_token["index_key"] == indexer_elements_per_token(spec, per_layer=True) == 8
    assert per_token["c_kv"] + per_token["k_rope"] == layer.config.cache_elements_per_token() == 9
    assert per_token["index_key"] == layer.indexer_config.cache_elements_per_token()
    # DeepSeek-V3.2's shape: a 128-wide key per token and layer, however many index heads
    v32 = MODELS["deepseek-v3.2"]
    config = IndexerConfig(d_model=v32.hidden_size, q_lora_rank=1536, index_n_heads=v32.index_n_heads,
                           index_head_dim=v32.index_head_dim, rope_head_dim=v32.qk_rope_head_dim,
                           index_topk=v32.index_topk, use_fp8=True)
    indexer, cache = LightningIndexer(config), LayerCache(seq_dim=1)
    with torch.no_grad():
        scores = indexer(torch.randn(1, 3, v32.hidden_size), torch.randn(1, 3, 1536), cache=cache)
    assert scores.shape == (1, 3, 3) and config.fp8_block == 128
    assert cache.tensors["index_key"].shape == (1, 3, indexer_elements_per_token(v32, per_layer=True))
    assert indexer_elements_per_token(v32) == 128 * 61


# --- training -------------------------------------------------------------------------------------------


def causal_scores(b, s, generator):
    return torch.randn(b, s, s, dtype=F64, generator=generator).masked_fill(
        torch.ones(s, s, dtype=torch.bool).triu(1), float("-inf"))


def test_kl_loss_is_zero_when_the_indexer_matches_and_positive_otherwise():
    g = torch.Generator().manual_seed(6)
    scores = causal_scores(2, 5, g)
    p = torch.softmax(scores, dim=-1)  # (b, s, t)
    split = torch.rand(2, 3, 5, 1, dtype=F64, generator=g)  # heads share the mass unevenly
    weights = p[:, None] * split / split.sum(1, keepdim=True) * 3  # sum over heads = 3 p: L1-normalised back to p
    assert indexer_kl_loss(weights, scores).abs().item() < 1e-12
    other = causal_scores(2, 5, g)
    loss = indexer_kl_loss(weights, other)
    assert loss.item() > 1e-3
    manual = sum((p[b, t, : t + 1] * (p[b, t, : t + 1].log() - torch.log_softmax(other[b, t, : t + 1], -1))).sum()
                 for b in range(2) for t in range(5))
    assert loss.item() == pytest.approx(manual.item(), rel=1e-10)
    assert indexer_kl_loss(weights, other, reduction="mean").item() == pytest.approx(loss.item() / 10, rel=1e-12)


def test_kl_loss_over_the_selected_set():
    g = torch.Generator().manual_seed(7)
    scores, weights = causal_scores(1, 6, g), torch.softmax(causal_scores(1, 6, g), -1)[:, None].expand(1, 2, 6, 6)
    selected = topk_indices(scores, 3)
    loss = indexer_kl_loss(weights, scores, selected)
    chosen = selection_mask(selected, 6)
    manual = 0.0
    for t in range(6):
        keep = chosen[0, t]
        p = weights[0].sum(0)[t, keep] / weights[0].sum(0)[t, keep].sum()
        manual += (p * (p.log() - torch.log_softmax(scores[0, t, keep], -1))).sum().item()
    assert loss.item() == pytest.approx(manual, rel=1e-10) and loss.item() > 1e-3
    # scores outside the selected set do not enter; the dense loss differs
    moved = scores.masked_fill(~chosen & torch.isfinite(scores), 50.0)
    assert indexer_kl_loss(weights, moved, selected).item() == pytest.approx(loss.item(), rel=1e-12)
    assert indexer_kl_loss(weights, scores).item() != pytest.approx(loss.item(), rel=1e-3)
    # matching inside the set gives zero
    matched = torch.softmax(scores.masked_fill(~chosen, float("-inf")), -1)[:, None].expand(1, 2, 6, 6)
    assert indexer_kl_loss(matched, scores, selected).abs().item() < 1e-12
    # the target is detached: only the scores get a gradient
    w, s = weights.clone().requires_grad_(), scores.clone().requires_grad_()
    indexer_kl_loss(w, s, selected).backward()
    assert w.grad is None and s.grad is not None and torch.isfinite(s.grad).all()


def grads(module):
    return {name: p.grad for name, p in module.named_parameters()}


def test_training_stages_route_the_gradients():
    layer = make_dsa(seed=8, index_topk=3)
    x = torch.randn(2, 7, 12, dtype=F64)
    # stage 1: dense attention, only the indexer trains, on the KL to the dense attention
    set_training_stage(layer, "warmup")
    assert layer.implementation == "dense"
    y = layer(x).output
    torch.testing.assert_close(y, layer.mla(x).output, rtol=1e-10, atol=1e-10)
    assert all(p.requires_grad == name.startswith("indexer.") for name, p in layer.named_parameters())
    loss = indexer_loss(layer)
    assert loss.item() > 0 and layer.kl_inputs[2] is None
    loss.backward()
    assert all((g is not None) == name.startswith("indexer.") for name, g in grads(layer).items())
    # stage 2: sparse attention; the LM-side loss reaches only the model, the KL only the indexer
    set_training_stage(layer, "sparse")
    layer.zero_grad(set_to_none=True)
    assert layer.implementation == "gather"
    out = layer(x)
    y, selection = out.output, out.selection
    assert all(p.requires_grad for p in layer.parameters())
    torch.testing.assert_close(y, call(layer, x, "mask").output, rtol=1e-10, atol=1e-10)
    y.square().sum().backward(retain_graph=True)
    assert all((g is None) == name.startswith("indexer.") for name, g in grads(layer).items())
    layer.zero_grad(set_to_none=True)
    layer(x)
    kl = indexer_loss(layer)
    torch.testing.assert_close(kl, indexer_kl_loss(layer.kl_inputs[0], selection.scores, selection.indices))
    kl.backward()
    assert all((g is not None) == name.startswith("indexer.") for name, g in grads(layer).items())
    # inference: nothing kept
    set_training_stage(layer, "inference")
    layer(x)
    assert layer.kl_inputs is None and layer.implementation == "gather" and not layer.detach_indexer_input


def test_without_detaching_the_kl_would_reach_the_model():
    layer = make_dsa(seed=9, index_topk=3)
    set_training_stage(layer, "sparse")
    layer.detach_indexer_input = False  # what stage 2 must avoid
    layer(torch.randn(1, 6, 12, dtype=F64))
    indexer_loss(layer).backward()
    assert layer.mla.w_dq.weight.grad is not None  # via the query latent the indexer reads


# --- the tiny model -------------------------------------------------------------------------------------


def tiny_dsa_model(top_k):
    config = TinyLMConfig(vocab_size=40, d_model=16, n_layers=2, n_heads=2, d_ff=24, max_seq_len=32,
                          attention="mla", kv_lora_rank=8, qk_rope_head_dim=4)
    torch.manual_seed(10)
    mla_model = TinyLM(config).double().eval()
    dsa_model = copy.deepcopy(mla_model)
    for block in dsa_model.blocks:
        dsa = DeepSeekSparseAttention(config.mla_config(), indexer_config_for(config.mla_config(), 4, 8, top_k))
        dsa = dsa.double()
        with torch.no_grad():
            for p in dsa.indexer.parameters():
                p.normal_(0.0, 0.5)
        dsa.mla.load_state_dict(block.attn.state_dict())
        block.attn = dsa
    return mla_model, dsa_model


def test_plugs_into_the_tiny_model_and_its_cache():
    mla_model, dsa_model = tiny_dsa_model(top_k=32)
    ids = torch.randint(0, 40, (2, 12))
    torch.testing.assert_close(dsa_model(ids), mla_model(ids), rtol=1e-10, atol=1e-10)
    _, sparse_model = tiny_dsa_model(top_k=3)
    logits, maps = sparse_model(ids, return_attention=True)
    assert maps[0].shape == (2, 2, 12, 12) and (maps[0][:, :, -1] > 0).sum(-1).le(3).all()
    assert (logits - mla_model(ids)).abs().max() > 1e-3
    cached = generate(sparse_model, ids[:, :5], 6, use_cache=True)
    assert torch.equal(cached, generate(sparse_model, ids[:, :5], 6, use_cache=False))


# --- what it costs --------------------------------------------------------------------------------------


def test_cost_model_by_hand_for_deepseek_v32():
    cost = layer_cost(V32, 4096)  # DeepSeek-V3.2: 128 heads, d_c 512, d_h^R 64, 64 index heads of 128, k 2048
    c_attn = 2 * 128 * (2 * 512 + 64)  # 278,528 FLOPs per cached token, absorbed MLA
    c_idx = 2 * 64 * 128 + 2 * 64  # 16,512
    f_proj = 2 * (1536 * 64 * 128 + 7168 * 128 + 7168 * 64)  # 27,918,336
    assert c_attn == 2 * attention_macs_per_cached_token("deepseek-v3.2", "mla")
    assert cost["selected"] == 2048 and cost["top_k"] == 2048
    assert cost["decode_flops_dense"] == c_attn * 4096 == 1_140_850_688
    assert cost["decode_flops_dsa"] == f_proj + c_idx * 4096 + c_attn * 2048 == 665_976_832
    assert cost["decode_bytes_dense"] == 1152 * 4096 and cost["decode_bytes_dsa"] == 132 * 4096 + 1152 * 2048
    assert cost["prefill_flops_dense"] == 2 * 128 * (128 + 64 + 128) * 4096 * 4097 // 2
    assert cost["prefill_flops_sparse"] == c_attn * (2048 * 2049 // 2 + 2048 * 2048)
    assert cost["cache_bytes_dsa"] - cost["cache_bytes_dense"] == 132 * 4096
    assert layer_cost(V32, 4096, per_layer=False)["decode_flops_dsa"] == 61 * cost["decode_flops_dsa"]
    short = layer_cost(V32, 1000)  # below k every token is selected: DSA only adds the indexer
    assert short["decode_flops_sparse"] == short["decode_flops_dense"] and short["selected"] == 1000
    assert short["decode_flops_dsa"] > short["decode_flops_dense"]
    fp8 = layer_cost(V32, 4096, kv_bytes_per_token=656)  # FlashMLA's FP8 cache format
    assert fp8["decode_bytes_dense"] == 656 * 4096


def test_crossover_context():
    c_attn, c_idx, f_proj = 278_528, 16_512, 27_918_336
    expected = (c_attn * 2048 + f_proj) // (c_attn - c_idx) + 1
    assert crossover_context(V32) == expected == 2284
    for metric in ("decode_flops", "decode_bytes", "prefill_flops"):
        for mode in ("naive", "absorbed"):
            at = crossover_context(V32, metric=metric, prefill_dense_mode=mode)
            before, after = (layer_cost(V32, n, prefill_dense_mode=mode) for n in (at - 1, at))
            assert after[f"{metric}_dsa"] < after[f"{metric}_dense"]
            assert before[f"{metric}_dsa"] >= before[f"{metric}_dense"]
    assert crossover_context(V32, metric="decode_bytes") == 1152 * 2048 // (1152 - 132) + 1
    # DeepSeek's dense prefill runs the cheaper MHA mode, so sparse prefill pays off only later
    assert crossover_context(V32, metric="prefill_flops") > crossover_context(V32, metric="prefill_flops",
                                                                         prefill_dense_mode="absorbed")
    assert crossover_context(V32, top_k=512) < crossover_context(V32, top_k=2048)
    heavy = ModelSpec(name="heavy-indexer", source="test", n_layers=1, n_heads=2, n_kv_heads=2, head_dim=8,
                      attention="mla", hidden_size=16, kv_lora_rank=8, qk_rope_head_dim=4, index_n_heads=64,
                      index_head_dim=128, index_topk=4)
    assert crossover_context(heavy, max_context=2**20) is None  # C_idx > C_attn: never cheaper


def test_short_prefills_switch_to_the_masked_mha_mode():
    """Below prefill_switch_context the DSA layer prefills like dense MLA (MHA mode, top-k as a mask), so
    at 1K tokens it no longer costs 4x the dense prefill; above it, the sparse path."""
    switch = prefill_switch_context(V32)
    assert switch == 12_813
    short, long = layer_cost(V32, 1024), layer_cost(V32, 131_072)
    assert short["prefill_masked_mha"] == 1 and long["prefill_masked_mha"] == 0
    assert short["prefill_flops_dsa"] / short["prefill_flops_dense"] < 1.05
    assert short["prefill_flops_sparse_path"] / short["prefill_flops_dense"] > 4
    assert layer_cost(V32, switch - 1)["prefill_masked_mha"] == 1 and layer_cost(V32, switch)["prefill_masked_mha"] == 0
    assert prefill_switch_context(V32, top_k=512) < switch  # fewer selected tokens: the sparse path wins sooner


# --- Hugging Face ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hf():
    transformers = pytest.importorskip("transformers")
    from transformers.cache_utils import DynamicCache
    from transformers.models.deepseek_v32 import modeling_deepseek_v32 as modeling

    return transformers.DeepseekV32Config, modeling, DynamicCache


# YaRN as Hugging Face reads it. With mscale set and mscale_all_dim unset, transformers multiplies the
# cos/sin that the MLA layer AND the indexer share by 0.1 ln(factor) + 1 (1.37 at factor 40); with both set
# (DeepSeek-V3.2's own config) by m(mscale) / m(mscale_all_dim).
YARN = {"rope_type": "yarn", "rope_theta": 500.0, "factor": 40.0, "original_max_position_embeddings": 4,
        "beta_fast": 32, "beta_slow": 1}
ROPE_VARIANTS = {"default": None, "yarn-mscale-only": YARN | {"mscale": 1.0},
                 "yarn-both-mscales": YARN | {"mscale": 1.0, "mscale_all_dim": 0.707},
                 "yarn-no-mscale": YARN}


def hf_attention(hf, dtype, seed=0, index_topk=4, rope_parameters=None):
    config_cls, modeling, _ = hf
    kwargs = {} if rope_parameters is None else {"rope_parameters": rope_parameters}
    config = config_cls(hidden_size=32, num_attention_heads=3, num_key_value_heads=3, q_lora_rank=12,
                        kv_lora_rank=8, qk_nope_head_dim=6, qk_rope_head_dim=8, v_head_dim=5, index_n_heads=8,
                        index_head_dim=16, index_topk=index_topk, max_position_embeddings=64, num_hidden_layers=1,
                        **kwargs)
    config._attn_implementation = "eager"
    torch.manual_seed(seed)
    attention = modeling.DeepseekV32Attention(config, layer_idx=0).to(dtype)
    with torch.no_grad():
        for p in attention.parameters():
            p.normal_(0.0, 0.5)
    return attention, modeling.DeepseekV32RotaryEmbedding(config)


def causal_additive_mask(n, end, dtype):
    return torch.full((n, end), -math.inf, dtype=dtype).triu(end - n + 1)[None, None]


def boundary_gap(scores, k):
    """Per query: score of its k-th choice minus its (k+1)-th (inf when it sees at most k tokens)."""
    top = scores.sort(dim=-1, descending=True).values
    if top.shape[-1] <= k:
        return torch.full(top.shape[:-1], math.inf, dtype=top.dtype)
    gap = top[..., k - 1] - top[..., k]
    return torch.where(torch.isfinite(top[..., k]), gap, torch.full_like(gap, math.inf))


@pytest.mark.parametrize("rope", list(ROPE_VARIANTS))
@pytest.mark.parametrize("hadamard", [False, True])
def test_matches_hugging_face_deepseek_v32_indexer(hf, hadamard, rope):
    """Same weights -> the same top-k set as transformers' DeepseekV32Indexer, which scores in float32 and
    skips the Hadamard rotation and FP8. HF returns min(index_topk, t) positions, future ones included for
    early queries (its attention mask removes them); we pad those slots with -1 instead. Under YaRN the
    indexer rotates with Hugging Face's scaled cos/sin too."""
    attention, rotary = hf_attention(hf, torch.float32, seed=11, index_topk=5, rope_parameters=ROPE_VARIANTS[rope])
    hf_indexer = attention.indexer
    indexer = indexer_from_transformers(hf_indexer, hadamard=hadamard).double()
    assert not indexer.config.use_fp8 and indexer.config.rope_head_dim == 8
    x = torch.randn(2, 14, 32)
    positions = torch.arange(14)[None].expand(2, -1)
    q_resid = attention.q_a_layernorm(attention.q_a_proj(x))
    cos, sin = rotary(x, positions)
    mask = causal_additive_mask(14, 14, torch.float32)[:, 0].expand(2, -1, -1)
    theirs = hf_indexer(x, q_resid, (cos, sin), mask, positions).long()  # (2, 14, 5)
    scores = indexer(x.double(), q_resid.detach().double())
    assert indexer.rope_amplitude == pytest.approx(rotary.attention_scaling, rel=1e-12)
    ours = topk_indices(scores, 5)
    assert theirs.shape == ours.shape == (2, 14, 5)
    gap = boundary_gap(scores, 5)
    assert (gap > 1e-4).float().mean() > 0.9  # nearly every row has a clear k-th choice
    for b in range(2):
        for t in range(14):
            mine = set(ours[b, t][ours[b, t] >= 0].tolist())
            hf_set = {s for s in theirs[b, t].tolist() if s <= t}
            if gap[b, t] > 1e-4:
                assert mine == hf_set, (b, t)


@pytest.mark.parametrize("rope", list(ROPE_VARIANTS))
def test_matches_hugging_face_deepseek_v32_attention_prefill_and_decode(hf, rope):
    """transformers' DeepseekV32Attention (eager: the indexer's top-k folded into the attention mask) and
    this layer (gather) agree on the output, prefill then decode, and on the cached index keys, with and
    without YaRN (the index keys carry Hugging Face's cos/sin amplitude)."""
    _, _, dynamic_cache = hf
    attention, rotary = hf_attention(hf, F64, seed=12, rope_parameters=ROPE_VARIANTS[rope])
    layer = from_transformers(attention)
    assert layer.indexer.rope_amplitude == pytest.approx(rotary.attention_scaling, rel=1e-12)
    assert layer.mla.config.rope_interleaved and not layer.indexer_config.rope_head_dim % 2
    x = torch.randn(2, 12, 32, dtype=F64)
    theirs, ours = dynamic_cache(config=attention.config), LayerCache(seq_dim=1)
    dropped = 0
    for start, end in ((0, 8), (8, 9), (9, 10), (10, 12)):
        positions = torch.arange(start, end)[None].expand(2, -1)
        cos, sin = rotary(x, positions)
        mask = causal_additive_mask(end - start, end, F64).expand(2, 1, -1, -1)
        y_hf, _ = attention_forward(attention, x[:, start:end], (cos, sin), mask, theirs)
        out = layer(x[:, start:end], cache=ours)
        y, selection = out.output, out.selection
        assert (boundary_gap(selection.scores, 4) > 1e-4).all()  # no near-tie: the sets must agree
        torch.testing.assert_close(y, y_hf, rtol=1e-5, atol=1e-5)
        dropped += int((torch.arange(start, end) + 1 > 4).sum())
    assert dropped > 0
    torch.testing.assert_close(ours.tensors["index_key"], theirs.layers[0].indexer_keys, rtol=1e-5, atol=1e-6)


def test_from_transformers_rejects_other_modules(hf):
    with pytest.raises(ValueError, match="DeepseekV32Attention"):
        from_transformers(make_dsa())
    with pytest.raises(ValueError, match="DeepseekV32Indexer"):
        indexer_from_transformers(torch.nn.Linear(2, 2))


# --- devices and dtypes ---------------------------------------------------------------------------------


def test_runs_on_every_device_and_dtype(device):
    reference_layer = make_dsa(seed=13, index_topk=16, use_fp8=True)
    x64 = torch.randn(2, 7, 12, dtype=F64)
    reference = reference_layer.mla(x64).output
    for dtype in supported_dtypes(device):
        layer = copy.deepcopy(reference_layer).to(device=device, dtype=dtype)
        x = x64.to(device=device, dtype=dtype)
        cache = LayerCache(seq_dim=1)
        y = torch.cat([layer(x[:, :4], cache=cache).output, layer(x[:, 4:], cache=cache).output], dim=1)
        assert y.shape == (2, 7, 12) and y.dtype == dtype and y.device.type == device.type
        tol = {torch.bfloat16: 0.15, torch.float32: 1e-4, F64: 1e-10}[dtype]
        assert (y.cpu().double() - reference).abs().max().item() <= tol * reference.abs().max().item()
        sparse = call(layer, x, top_k=2)
        assert torch.isfinite(sparse.output).all() and sparse.selection.indices.device.type == device.type


# --- argument checks ------------------------------------------------------------------------------------


@pytest.mark.parametrize("change, match", [
    ({"d_model": 0}, "d_model"),
    ({"index_n_heads": -1}, "index_n_heads"),
    ({"index_head_dim": 0}, "index_head_dim"),
    ({"index_topk": 0}, "index_topk"),
    ({"q_lora_rank": -3}, "q_lora_rank"),
    ({"rope_head_dim": 3}, "rope_head_dim=3 must be even"),
    ({"rope_head_dim": 10}, "rope_head_dim=10 must be <= index_head_dim=8"),
    ({"rope_base": 1.0}, "rope_base"),
    ({"norm_eps": 0.0}, "norm_eps"),
    ({"hadamard": 1}, "hadamard"),
    ({"use_fp8": "yes"}, "use_fp8"),
    ({"index_head_dim": 12}, "index_head_dim=12 must be a power of two"),
    ({"fp8_block": 3}, "index_head_dim=8 is not divisible by fp8_block=3"),
    ({"fp8_scale_format": "e8m0"}, "fp8_scale_format"),
])
def test_indexer_config_rejects_bad_values(change, match):
    fields = {"d_model": 12, "q_lora_rank": 6, "index_n_heads": 2, "index_head_dim": 8, "rope_head_dim": 4,
              "index_topk": 3} | change
    with pytest.raises(ValueError, match=match):
        IndexerConfig(**fields)


def test_config_normalises_defaults():
    config = IndexerConfig(d_model=12, q_lora_rank=0, index_n_heads=2, index_head_dim=12, rope_head_dim=4,
                           index_topk=3, hadamard=False)
    assert config.q_lora_rank is None and config.q_input_dim == 12 and config.fp8_block == 12
    assert config.softmax_scale == 12**-0.5 and config.head_weight_scale == 2**-0.5
    assert LightningIndexer(config).w_q.in_features == 12  # no query latent: project from h_t


def test_layer_rejects_mismatched_configs_and_bad_input():
    config = mla_config()
    good = indexer_config_for(config, 2, 8, 3)
    with pytest.raises(ValueError, match="d_model"):
        DeepSeekSparseAttention(config, indexer_config_for(mla_config(d_model=10), 2, 8, 3))
    with pytest.raises(ValueError, match="q_lora_rank"):
        DeepSeekSparseAttention(config, indexer_config_for(mla_config(q_lora_rank=None), 2, 8, 3))
    with pytest.raises(ValueError, match="rope_head_dim=4 must equal qk_rope_head_dim=2"):
        DeepSeekSparseAttention(mla_config(qk_rope_head_dim=2), good)
    with pytest.raises(ValueError, match="MLAConfig"):
        DeepSeekSparseAttention(good, good)
    with pytest.raises(ValueError, match="IndexerConfig"):
        DeepSeekSparseAttention(config, config)
    with pytest.raises(ValueError, match="mla must be an MLAConfig"):
        indexer_config_for(good, 2, 8, 3)
    layer = make_dsa()  # bad hidden states: test_layer_interface, for every layer
    x = torch.randn(1, 3, 12, dtype=F64)
    with pytest.raises(ValueError, match="implementation='sparse' must be one of"):
        layer.use("sparse")
    with pytest.raises(ValueError, match="top_k=0"):
        layer.use("mask", top_k=0)
    assert layer.settings() == {"implementation": "gather", "top_k": 4}  # refused settings change nothing
    with pytest.raises(ValueError, match="window=4"):
        layer(x, cache=LayerCache(seq_dim=1, window=4))  # DSA selects among all earlier tokens
    with pytest.raises(ValueError, match="seq_dim=2"):
        layer(x, cache=LayerCache(seq_dim=2))
    with pytest.raises(ValueError, match="cache must be a LayerCache"):
        layer(x, cache={})
    mla_cache = LayerCache(seq_dim=1)
    layer.mla(x, cache=mla_cache)
    with pytest.raises(ValueError, match="cache holds"):
        layer(x, cache=mla_cache)


def test_indexer_rejects_bad_input():
    indexer = make_dsa().indexer
    x = torch.randn(1, 3, 12, dtype=F64)
    with pytest.raises(ValueError, match="q_input is required"):
        indexer(x)
    with pytest.raises(ValueError, match="q_input has shape"):
        indexer(x, torch.randn(1, 3, 5, dtype=F64))
    with pytest.raises(ValueError, match="dtype mismatch: q_input"):
        indexer(x, torch.randn(1, 3, 6))
    with pytest.raises(ValueError, match="d_model=10"):
        indexer(x[..., :10], torch.randn(1, 3, 6, dtype=F64))
    no_latent = make_dsa(mla_config(q_lora_rank=None)).indexer
    with pytest.raises(ValueError, match="q_input must be None"):
        no_latent(x, x)
    with pytest.raises(ValueError, match="IndexerConfig"):
        LightningIndexer(mla_config())
    with pytest.raises(ValueError, match="theta has shape"):
        LightningIndexer(indexer_config_for(mla_config(), 2, 8, 3), theta=torch.ones(3))


def test_selection_and_losses_reject_bad_input():
    scores = torch.zeros(1, 3, 4)
    with pytest.raises(ValueError, match="scores must have 3 dims"):
        topk_indices(scores[0], 2)
    with pytest.raises(ValueError, match="top_k=0"):
        topk_indices(scores, 0)
    with pytest.raises(ValueError, match="seq=5 queries but only 4 keys"):
        topk_indices(torch.zeros(1, 5, 4), 2)
    with pytest.raises(ValueError, match="beyond n_keys=4"):
        selection_mask(torch.tensor([[[0, 4]]]), 4)
    weights = torch.full((1, 2, 3, 4), 0.25)
    with pytest.raises(ValueError, match="attn_weights must have 4 dims"):
        indexer_kl_loss(weights[0], scores)
    with pytest.raises(ValueError, match="must agree"):
        indexer_kl_loss(weights[..., :3], scores)
    with pytest.raises(ValueError, match="reduction='none'"):
        indexer_kl_loss(weights, scores, reduction="none")
    with pytest.raises(ValueError, match="selected has shape"):
        indexer_kl_loss(weights, scores, torch.zeros(1, 2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="no allowed key"):
        indexer_kl_loss(weights, torch.full((1, 3, 4), -math.inf))
    with pytest.raises(ValueError, match="stage='pretrain'"):
        set_training_stage(make_dsa(), "pretrain")
    with pytest.raises(ValueError, match="no DeepSeekSparseAttention layer"):
        set_training_stage(torch.nn.Linear(2, 2), "sparse")
    with pytest.raises(ValueError, match="no kept forward call"):
        indexer_loss(make_dsa())


def test_cost_model_rejects_bad_input():
    with pytest.raises(ValueError, match="context_len=0"):
        layer_cost(V32, 0)
    with pytest.raises(ValueError, match="top_k=-1"):
        layer_cost(V32, 10, top_k=-1)
    with pytest.raises(ValueError, match="has no lightning indexer"):
        layer_cost(MODELS["deepseek-v3"], 10)
    with pytest.raises(TypeError, match="spec must be an AttentionShape or a ModelSpec"):
        layer_cost("deepseek-v3.2", 10)  # the layer module does not know the model catalogue
    with pytest.raises(ValueError, match="prefill_dense_mode"):
        layer_cost(V32, 10, prefill_dense_mode="mha")
    with pytest.raises(ValueError, match="kv_bytes_per_token=0"):
        layer_cost(V32, 10, kv_bytes_per_token=0)
    with pytest.raises(ValueError, match="metric='flops'"):
        crossover_context(V32, metric="flops")


def test_topk_matches_the_stable_sort_with_nan_in_one_row_and_ties_in_another():
    """One row holds NaN (it compares false, so it counts no score >= its k-th value), another more ties at its
    k-th value than k: neither may hide the other, and both follow the stable sort (NaN first, ties by position)."""
    nan_row = torch.tensor([0.5, float("nan"), 0.1, 0.9, 0.3, 0.2])
    tied_row = torch.ones(6)  # 6 scores >= its k-th value: with the NaN row's 0, the batch totals b k = 6
    scores = torch.stack([nan_row, tied_row])[:, None, :]  # (b, 1, t): one query at the end sees every key
    k = 3
    expected = torch.sort(scores, dim=-1, descending=True, stable=True).indices[..., :k]
    assert torch.equal(topk_indices(scores, k), expected)
    for row in range(scores.shape[0]):  # one row alone: a decode step's path
        assert torch.equal(topk_indices(scores[row : row + 1], k), expected[row : row + 1])


@pytest.mark.parametrize("scores", [[5.0, 4.0, 1.0, 3.0, 2.0, 3.0], [3.0, 4.0, 3.0, 5.0, 3.0, 0.0],
                                    [2.0, float("-inf"), 7.0, float("-inf"), float("-inf"), float("-inf")]])
def test_topk_breaks_a_tie_at_the_kth_score_by_position(scores):
    """The k found strictly decrease but the (k+1)-th score equals the k-th (one more reaches it than k): the
    k + 1 values read by the fast test are not strict, so the tie goes to the earlier position, as the sort
    gives it (the third row ties at -inf)."""
    row = torch.tensor(scores)[None, None, :]
    k = 3
    expected = torch.sort(row, dim=-1, descending=True, stable=True).indices[..., :k]
    assert torch.equal(topk_indices(row, k), expected)


@pytest.mark.parametrize("seed", range(20))
def test_topk_follows_the_stable_sort_on_scores_full_of_ties(seed):
    """Small integer scores tie inside the top k, at its boundary and beyond it, and some rows hold NaN: the
    fast path (no tie anywhere), the tie-breaking path and the sort fallback all give the stable sort's order."""
    gen = torch.Generator().manual_seed(seed)
    b, t, k = 3, 40, 7
    scores = torch.randint(0, 6 if seed % 2 else 1000, (b, 1, t), generator=gen).double()
    if seed % 5 == 0:
        scores[seed % b, 0, seed % t] = float("nan")
    expected = torch.sort(scores, dim=-1, descending=True, stable=True).indices[..., :k]
    assert torch.equal(topk_indices(scores, k), expected)
    for row in range(scores.shape[0]):  # one row alone: a decode step's path
        assert torch.equal(topk_indices(scores[row : row + 1], k), expected[row : row + 1])
