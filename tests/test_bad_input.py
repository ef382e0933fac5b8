"""Bad input never reaches torch: every public function and layer of attnlab refuses it with a ``ValueError``
(a ``TypeError`` for an argument of the wrong Python type) whose message names the argument, raised by the
library's own checks before torch sees the input.

One table, :data:`CASES`: a readable id, the public object a case exercises, a zero-argument call with one bad
argument, the exception expected and the argument name its message must contain. :func:`test_public_api_is_covered`
walks the public API of the core modules, so every new public function or class needs a row here (or a place,
with its reason, in :data:`NO_CHECKABLE_INPUT`).
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import re
import sys
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import torch

import attnlab
from attnlab import (
    attention,
    block_sparse,
    cache_formats,
    costs,
    devices,
    dsa,
    dsa_training,
    evidence,
    figures,
    flash,
    gqa,
    kv_cache,
    linear_attention,
    lowrank,
    mla,
    paged,
    quant,
    recall,
    rope,
    schemes,
    sizing,
    tokenization,
    train,
    v4,
    window,
)
from attnlab import model as lm

NAN, INF = float("nan"), float("inf")
LIBRARY = Path(attnlab.__file__).resolve().parent


class Case(NamedTuple):
    id: str
    target: Any  # the public function or class the call exercises
    call: Any  # zero-argument callable: one public call with exactly one bad argument
    error: type[Exception]
    arg: str  # the message must name this argument


# --- small, valid objects the cases start from ---------------------------------------------------------

GQA_CONFIG = gqa.AttentionConfig(d_model=8, n_heads=2, n_kv_heads=1)
V4_FIELDS = dict(d_model=16, n_heads=2, q_lora_rank=8, o_groups=2, o_lora_rank=4, head_dim=8, rope_head_dim=4,
                 window=4, layer_type="csa", compress_rate=2, index_n_heads=2, index_head_dim=4, index_topk=2)
GQA_LAYER = gqa.GroupedQueryAttention(GQA_CONFIG)


def _rolling_cache() -> window.RollingCache:
    """A ring of 4 slots that already holds one token of "k"."""
    cache = window.RollingCache(4)
    cache.update(k=torch.zeros(1, 1, 1, 2))
    return cache
X8 = torch.randn(1, 3, 8)
Q4 = torch.randn(1, 2, 3, 4)  # (batch, heads, seq, head_dim)
KV4 = torch.randn(1, 1, 3, 4)

MLA_CONFIG = mla.MLAConfig(d_model=12, n_heads=3, kv_lora_rank=5, qk_nope_head_dim=4, qk_rope_head_dim=4,
                           v_head_dim=3, q_lora_rank=6)
MLA_LAYER = mla.MultiHeadLatentAttention(MLA_CONFIG)
X12 = torch.randn(1, 3, 12)
V4_LAYER = v4.DeepSeekV4Attention(v4.V4AttentionConfig(**V4_FIELDS))
X16 = torch.randn(1, 3, 16)

INDEXER_CONFIG = dsa.indexer_config_for(MLA_CONFIG, 2, 8, 3)
DSA_LAYER = dsa.DeepSeekSparseAttention(MLA_CONFIG, INDEXER_CONFIG)
Q_INPUT = torch.randn(1, 3, 6)  # MLA's query latent c^Q for X12
INDICES = torch.tensor([[[0, -1], [1, 0], [2, 1]]])  # (batch 1, seq 3, top_k 2), -1 = padding
SPARSE_WEIGHTS = torch.rand(1, 3, 2, 2)  # (batch, seq, heads, top_k)
ATTN_WEIGHTS = torch.full((1, 2, 3, 4), 0.25)  # (batch, heads, seq, keys)
INDEX_SCORES = torch.zeros(1, 3, 4)
FIGURE = figures.new_figure("a figure")

TINY_CONFIG = lm.TinyLMConfig(vocab_size=32, d_model=16, n_layers=1, n_heads=2, n_kv_heads=1, d_ff=24,
                              max_seq_len=12)
TINY = lm.TinyLM(TINY_CONFIG)
IDS = torch.randint(0, 32, (1, 4))

TINY_MLA = lm.TinyLM(dataclasses.replace(TINY_CONFIG, n_kv_heads=2, attention="mla", kv_lora_rank=8,
                                         qk_rope_head_dim=4, index_n_heads=2, index_head_dim=4, index_topk=3))
TINY_DSA = dsa_training.dsa_from_mla(TINY_MLA)
DSA_TRAIN = dsa_training.DSATrainConfig(warmup_steps=1, sparse_steps=1, batch_size=1, seq_len=8, top_k=3,
                                        eval_every=1, eval_batches=1)

TOKENIZER = tokenization.BPETokenizer().train("aaabdaaabac", vocab_size=259)
SPEC = "llama-3-8b"
V32 = sizing.MODELS["deepseek-v3.2"]
SHAPE = costs.AttentionShape(d_model=16, n_heads=4, head_dim=4, n_kv_heads=2, kv_lora_rank=8, qk_rope_head_dim=2,
                             index_n_heads=2, index_head_dim=4, index_topk=3, n_layers=2)
DENSE_SHAPE = costs.AttentionShape(d_model=16, n_heads=4, head_dim=4)  # no latent, no indexer
M = torch.randn(6, 4, dtype=torch.float64)  # a matrix for the low-rank analysis


LA_Q = torch.randn(1, 2, 5, 4)  # (batch, heads, seq, d_k)
LA_V = torch.randn(1, 2, 5, 3)  # (batch, heads, seq, d_v)
LA_BETA = torch.rand(1, 2, 5)
LA_LAYER = linear_attention.LinearAttention(linear_attention.LinearAttentionConfig(d_model=8, n_heads=2, head_dim=4))


def _filled_state() -> linear_attention.RecurrentState:
    """A linear layer's cache after 2 tokens."""
    state = linear_attention.RecurrentState()
    LA_LAYER(torch.randn(1, 2, 8), cache=state)
    return state


def _states_only() -> kv_cache.KVCache:
    """A cache whose only layer is a linear layer's state after 2 tokens: it holds no token."""
    cache = kv_cache.KVCache(1)
    cache.layers[0] = _filled_state()
    return cache


def _hybrid_cache() -> kv_cache.KVCache:
    """A tiny 2-layer hybrid's cache (a Gated DeltaNet layer, then GQA) after 3 tokens."""
    model = lm.TinyLM(dataclasses.replace(TINY_CONFIG, n_layers=2, full_every=2))
    cache = model.new_cache()
    model(IDS[:, :3], cache=cache)
    return cache


def mla_fields(**change) -> dict:
    fields = {"d_model": 12, "n_heads": 3, "kv_lora_rank": 5, "qk_nope_head_dim": 4, "qk_rope_head_dim": 4}
    return fields | change


def indexer_fields(**change) -> dict:
    fields = {"d_model": 12, "q_lora_rank": 6, "index_n_heads": 2, "index_head_dim": 8, "rope_head_dim": 4,
              "index_topk": 3}
    return fields | change


def spec_fields(**change) -> dict:
    fields = {"name": "t", "n_layers": 2, "n_heads": 4, "n_kv_heads": 2, "head_dim": 8, "attention": "gqa",
              "hidden_size": 32, "source": "test"}
    return fields | change


def mla_cache() -> kv_cache.LayerCache:
    return kv_cache.LayerCache(seq_dim=1)


def filled_cache(window: int | None = None) -> kv_cache.LayerCache:
    """A cache that has seen 4 tokens of k and v (holding the last ``window`` of them)."""
    cache = kv_cache.LayerCache(window=window)
    cache.update(k=torch.zeros(1, 1, 4, 2), v=torch.zeros(1, 1, 4, 2))
    return cache


# --- the table -------------------------------------------------------------------------------------------

CASES: list[Case] = [
    # attention
    Case("softmax: scores is a list", attention.softmax, lambda: attention.softmax([1.0, 2.0]), TypeError, "scores"),
    Case("softmax: integer scores", attention.softmax, lambda: attention.softmax(torch.tensor([[1, 2]])),
         ValueError, "scores"),
    Case("softmax: dim beyond the tensor", attention.softmax, lambda: attention.softmax(torch.zeros(2, 3), dim=2),
         ValueError, "dim"),
    Case("softmax: dim is a float", attention.softmax, lambda: attention.softmax(torch.zeros(2, 3), dim=1.0),
         TypeError, "dim"),
    Case("softmax: unknown on_fully_masked", attention.softmax,
         lambda: attention.softmax(torch.zeros(2, 3), on_fully_masked="nan"), ValueError, "on_fully_masked"),
    Case("attention_vector: q is a str", attention.attention_vector,
         lambda: attention.attention_vector("q", torch.zeros(3, 2), torch.zeros(3, 2)), TypeError, "q"),
    Case("attention_vector: integer tensors", attention.attention_vector,
         lambda: attention.attention_vector(torch.ones(2, dtype=torch.long), torch.ones(3, 2, dtype=torch.long),
                                            torch.ones(3, 2, dtype=torch.long)), ValueError, "q"),
    Case("attention_vector: NaN scale", attention.attention_vector,
         lambda: attention.attention_vector(torch.zeros(2), torch.zeros(3, 2), torch.zeros(3, 2), scale=NAN),
         ValueError, "scale"),
    Case("causal_mask: unknown device", attention.causal_mask, lambda: attention.causal_mask(2, 2, device="gpu"),
         ValueError, "device"),
    Case("causal_mask: n_q is a float", attention.causal_mask, lambda: attention.causal_mask(2.5, 3),
         TypeError, "n_q"),
    Case("causal_mask: window = 0", attention.causal_mask, lambda: attention.causal_mask(2, 3, window=0),
         ValueError, "window"),
    Case("AttentionLayer.use: unknown implementation", attention.AttentionLayer, lambda: GQA_LAYER.use("fast"),
         ValueError, "implementation"),
    Case("AttentionLayer.use: implementation is not a str", attention.AttentionLayer, lambda: GQA_LAYER.use(1),
         ValueError, "implementation"),
    Case("attention_matrix: q is a list", attention.attention_matrix,
         lambda: attention.attention_matrix([[1.0]], torch.zeros(1, 1), torch.zeros(1, 1)), TypeError, "q"),
    Case("attention_matrix: float mask", attention.attention_matrix,
         lambda: attention.attention_matrix(torch.zeros(3, 2), torch.zeros(3, 2), torch.zeros(3, 2),
                                            mask=torch.ones(3, 3)), ValueError, "mask"),
    Case("attention_matrix: mask of the wrong shape", attention.attention_matrix,
         lambda: attention.attention_matrix(torch.zeros(3, 2), torch.zeros(3, 2), torch.zeros(3, 2),
                                            mask=torch.ones(4, 4, dtype=torch.bool)), ValueError, "mask"),
    Case("attention_matrix: mask is a list", attention.attention_matrix,
         lambda: attention.attention_matrix(torch.zeros(3, 2), torch.zeros(3, 2), torch.zeros(3, 2),
                                            mask=[[True] * 3] * 3), TypeError, "mask"),
    Case("attention_matrix: causal is a str", attention.attention_matrix,
         lambda: attention.attention_matrix(torch.zeros(3, 2), torch.zeros(3, 2), torch.zeros(3, 2), causal="yes"),
         TypeError, "causal"),
    Case("attention_matrix: mask on another device", attention.attention_matrix,
         lambda: attention.attention_matrix(torch.zeros(3, 2), torch.zeros(3, 2), torch.zeros(3, 2),
                                            mask=torch.ones(3, 3, dtype=torch.bool, device="meta")),
         ValueError, "mask"),
    Case("attention_matrix: infinite scale", attention.attention_matrix,
         lambda: attention.attention_matrix(torch.zeros(3, 2), torch.zeros(3, 2), torch.zeros(3, 2), scale=INF),
         ValueError, "scale"),
    Case("attention_flops: negative n_q", attention.attention_flops, lambda: attention.attention_flops(-1, 4, 8),
         ValueError, "n_q"),
    Case("attention_flops: d_v = 0", attention.attention_flops, lambda: attention.attention_flops(1, 4, 8, d_v=0),
         ValueError, "d_v"),
    # devices
    Case("dtype_bytes: complex dtype", devices.dtype_bytes, lambda: devices.dtype_bytes(torch.complex64), ValueError,
         "dtype"),
    Case("dtype_bytes: dtype is a str", devices.dtype_bytes, lambda: devices.dtype_bytes("float32"), TypeError,
         "dtype"),
    Case("supported_dtypes: unknown device", devices.supported_dtypes, lambda: devices.supported_dtypes("gpu"),
         ValueError, "device"),
    Case("supported_dtypes: device is None", devices.supported_dtypes, lambda: devices.supported_dtypes(None),
         TypeError, "device"),
    # kv_cache
    Case("LayerCache: seq_dim is a str", kv_cache.LayerCache, lambda: kv_cache.LayerCache(seq_dim="1"),
         TypeError, "seq_dim"),
    Case("LayerCache.update: a list instead of a tensor", kv_cache.LayerCache,
         lambda: kv_cache.LayerCache().update(k=[1.0, 2.0]), TypeError, "k"),
    Case("LayerCache.update: seq_dim beyond the tensor", kv_cache.LayerCache,
         lambda: kv_cache.LayerCache(seq_dim=5).update(k=torch.zeros(2, 3)), ValueError, "seq_dim"),
    Case("LayerCache: window = 0", kv_cache.LayerCache, lambda: kv_cache.LayerCache(window=0), ValueError,
         "window"),
    Case("LayerCache: window is a float", kv_cache.LayerCache, lambda: kv_cache.LayerCache(window=4.0), TypeError,
         "window"),
    Case("LayerCache: negative capacity", kv_cache.LayerCache, lambda: kv_cache.LayerCache(capacity=-1), ValueError,
         "capacity"),
    Case("LayerCache.update: no tensors", kv_cache.LayerCache, lambda: kv_cache.LayerCache(window=2).update(),
         ValueError, "update"),
    Case("LayerCache.crop: beyond the tokens seen", kv_cache.LayerCache,
         lambda: filled_cache().crop(5), ValueError, "seq_len"),
    Case("LayerCache.crop: before the window", kv_cache.LayerCache,
         lambda: filled_cache(window=2).crop(0), ValueError, "seq_len"),
    Case("LayerCache.crop: seq_len is a float", kv_cache.LayerCache, lambda: filled_cache().crop(1.0), TypeError,
         "seq_len"),
    Case("ConcatCache: seq_dim is a str", kv_cache.ConcatCache, lambda: kv_cache.ConcatCache(seq_dim="1"),
         TypeError, "seq_dim"),
    Case("ConcatCache.update: a list instead of a tensor", kv_cache.ConcatCache,
         lambda: kv_cache.ConcatCache().update(k=[1.0, 2.0]), TypeError, "k"),
    Case("KVCache: n_layers = 0", kv_cache.KVCache, lambda: kv_cache.KVCache(0), ValueError, "n_layers"),
    Case("KVCache: window = -1", kv_cache.KVCache, lambda: kv_cache.KVCache(2, window=-1), ValueError, "window"),
    Case("KVCache.crop: beyond the tokens seen", kv_cache.KVCache, lambda: kv_cache.KVCache(2).crop(1), ValueError,
         "seq_len"),
    Case("KVCache: seq_dim is a float", kv_cache.KVCache, lambda: kv_cache.KVCache(2, seq_dim=1.5),
         TypeError, "seq_dim"),
    # gqa
    Case("AttentionConfig: NaN rope_base", gqa.AttentionConfig,
         lambda: gqa.AttentionConfig(8, 2, rope_base=NAN), ValueError, "rope_base"),
    Case("AttentionConfig: rope is a str", gqa.AttentionConfig, lambda: gqa.AttentionConfig(8, 2, rope="yes"),
         TypeError, "rope"),
    Case("AttentionConfig: bias is an int", gqa.AttentionConfig, lambda: gqa.AttentionConfig(8, 2, bias=1),
         TypeError, "bias"),
    Case("AttentionConfig: n_kv_heads does not divide n_heads", gqa.AttentionConfig,
         lambda: gqa.AttentionConfig(768, 12, n_kv_heads=5), ValueError, "n_kv_heads"),
    Case("grouped_attention: integer tensors", gqa.grouped_attention,
         lambda: gqa.grouped_attention(Q4.long(), KV4.long(), KV4.long()), ValueError, "q"),
    Case("grouped_attention: NaN scale", gqa.grouped_attention,
         lambda: gqa.grouped_attention(Q4, KV4, KV4, scale=NAN), ValueError, "scale"),
    Case("grouped_attention: window = 0", gqa.grouped_attention,
         lambda: gqa.grouped_attention(Q4, KV4, KV4, window=0), ValueError, "window"),
    Case("grouped_attention: window without causal", gqa.grouped_attention,
         lambda: gqa.grouped_attention(Q4, KV4, KV4, causal=False, window=2), ValueError, "window"),
    Case("grouped_attention: no K/V heads", gqa.grouped_attention,
         lambda: gqa.grouped_attention(Q4, KV4[:, :0], KV4[:, :0]), ValueError, "n_kv_heads"),
    Case("repeat_kv: n_rep = 0", gqa.repeat_kv, lambda: gqa.repeat_kv(KV4, 0), ValueError, "n_rep"),
    Case("repeat_kv: x with 3 dims", gqa.repeat_kv, lambda: gqa.repeat_kv(KV4[0], 2), ValueError, "x"),
    Case("GroupedQueryAttention: config is a dict", gqa.GroupedQueryAttention,
         lambda: gqa.GroupedQueryAttention({"d_model": 8, "n_heads": 2}), TypeError, "config"),
    Case("GroupedQueryAttention: cache is a dict", gqa.GroupedQueryAttention, lambda: GQA_LAYER(X8, cache={}),
         TypeError, "cache"),
    Case("GroupedQueryAttention: cache with seq_dim 1", gqa.GroupedQueryAttention,
         lambda: GQA_LAYER(X8, cache=kv_cache.LayerCache(seq_dim=1)), ValueError, "cache"),
    Case("GroupedQueryAttention: return_weights is a str", gqa.GroupedQueryAttention,
         lambda: GQA_LAYER(X8, return_weights="no"), TypeError, "return_weights"),
    Case("GroupedQueryAttention.project: negative start", gqa.GroupedQueryAttention,
         lambda: GQA_LAYER.project(X8, start=-1), ValueError, "start"),
    Case("mha_to_gqa: module is an MLA layer", gqa.mha_to_gqa, lambda: gqa.mha_to_gqa(MLA_LAYER, 1),
         TypeError, "module"),
    Case("mha_to_gqa: n_kv_heads does not divide", gqa.mha_to_gqa, lambda: gqa.mha_to_gqa(GQA_LAYER, 2),
         ValueError, "n_kv_heads"),
    # rope
    Case("rope_frequencies: NaN base", rope.rope_frequencies, lambda: rope.rope_frequencies(8, NAN),
         ValueError, "base"),
    Case("rope_frequencies: base is a str", rope.rope_frequencies, lambda: rope.rope_frequencies(8, "1e4"),
         TypeError, "base"),
    Case("rope_frequencies: unknown device", rope.rope_frequencies,
         lambda: rope.rope_frequencies(8, device="tpu0"), ValueError, "device"),
    Case("rope_angles: positions is a list", rope.rope_angles, lambda: rope.rope_angles([0, 1], 8),
         TypeError, "positions"),
    Case("rope_angles: complex positions", rope.rope_angles,
         lambda: rope.rope_angles(torch.zeros(2, dtype=torch.complex64), 8), ValueError, "positions"),
    Case("apply_rope: integer x", rope.apply_rope,
         lambda: rope.apply_rope(torch.ones(3, 4, dtype=torch.long), torch.arange(3)), ValueError, "x"),
    Case("apply_rope: float positions", rope.apply_rope,
         lambda: rope.apply_rope(torch.zeros(3, 4), torch.arange(3.0)), ValueError, "positions"),
    Case("apply_rope: x and positions on different devices", rope.apply_rope,
         lambda: rope.apply_rope(torch.zeros(3, 4, device="meta"), torch.arange(3)), ValueError, "positions"),
    Case("apply_rope: interleaved is a str", rope.apply_rope,
         lambda: rope.apply_rope(torch.zeros(3, 4), torch.arange(3), interleaved="no"), TypeError, "interleaved"),
    Case("apply_rope: NaN base", rope.apply_rope,
         lambda: rope.apply_rope(torch.zeros(3, 4), torch.arange(3), base=NAN), ValueError, "base"),
    Case("apply_rope: positions broadcast beyond x", rope.apply_rope,
         lambda: rope.apply_rope(torch.zeros(3, 4), torch.zeros(2, 3, dtype=torch.long)), ValueError, "positions"),
    Case("rotate_pairs: integer x", rope.rotate_pairs,
         lambda: rope.rotate_pairs(torch.ones(3, 4, dtype=torch.long), torch.zeros(3, 2)), ValueError, "x"),
    Case("rotate_pairs: angles of the wrong shape", rope.rotate_pairs,
         lambda: rope.rotate_pairs(torch.zeros(2, 3, 4), torch.zeros(5, 2)), ValueError, "angles"),
    Case("rotate_pairs: angles is a list", rope.rotate_pairs,
         lambda: rope.rotate_pairs(torch.zeros(3, 4), [[0.0, 0.0]] * 3), TypeError, "angles"),
    Case("rotate_pairs: interleaved is a str", rope.rotate_pairs,
         lambda: rope.rotate_pairs(torch.zeros(3, 4), torch.zeros(3, 2), interleaved="yes"), TypeError,
         "interleaved"),
    Case("interleaved_to_halves: odd d", rope.interleaved_to_halves, lambda: rope.interleaved_to_halves(5),
         ValueError, "d"),
    Case("rotation_matrix: position is a str", rope.rotation_matrix, lambda: rope.rotation_matrix("3", 4),
         TypeError, "position"),
    Case("rotation_matrix: odd head_dim", rope.rotation_matrix, lambda: rope.rotation_matrix(3, 5),
         ValueError, "head_dim"),
    # mla
    Case("MLAConfig: NaN rope_base", mla.MLAConfig, lambda: mla.MLAConfig(**mla_fields(rope_base=NAN)),
         ValueError, "rope_base"),
    Case("MLAConfig: infinite norm_eps", mla.MLAConfig, lambda: mla.MLAConfig(**mla_fields(norm_eps=INF)),
         ValueError, "norm_eps"),
    Case("MLAConfig: d_model is a str", mla.MLAConfig, lambda: mla.MLAConfig(**mla_fields(d_model="12")),
         TypeError, "d_model"),
    Case("yarn_mscale: NaN factor", mla.yarn_mscale, lambda: mla.yarn_mscale(NAN), ValueError, "factor"),
    Case("yarn_frequencies: NaN beta_fast", mla.yarn_frequencies,
         lambda: mla.yarn_frequencies(8, factor=2.0, original_max_position=16, beta_fast=NAN),
         ValueError, "beta_fast"),
    Case("yarn_frequencies: beta_fast <= beta_slow", mla.yarn_frequencies,
         lambda: mla.yarn_frequencies(8, factor=2.0, original_max_position=16, beta_fast=1.0, beta_slow=2.0),
         ValueError, "beta_fast"),
    Case("MultiHeadLatentAttention: config is a dict", mla.MultiHeadLatentAttention,
         lambda: mla.MultiHeadLatentAttention(mla_fields()), TypeError, "config"),
    Case("MultiHeadLatentAttention: cache is a tuple", mla.MultiHeadLatentAttention,
         lambda: MLA_LAYER(X12, cache=(torch.zeros(1, 2, 5), torch.zeros(1, 2, 4))), TypeError, "cache"),
    Case("MultiHeadLatentAttention: cache with seq_dim 0", mla.MultiHeadLatentAttention,
         lambda: MLA_LAYER(X12, cache=kv_cache.LayerCache(seq_dim=0)), ValueError, "cache"),
    Case("AttentionLayer.use: MLA with DeepSeek's name 'absorb'", attention.AttentionLayer,
         lambda: MLA_LAYER.use("absorb"), ValueError, "implementation"),
    Case("AttentionLayer.using: unknown MLA implementation", attention.AttentionLayer,
         lambda: MLA_LAYER.using("fast").__enter__(), ValueError, "implementation"),
    Case("MultiHeadLatentAttention: windowed cache of the wrong layout", mla.MultiHeadLatentAttention,
         lambda: MLA_LAYER(X12, cache=kv_cache.LayerCache(seq_dim=0, window=2)), ValueError, "cache"),
    Case("MultiHeadLatentAttention.rope: float positions", mla.MultiHeadLatentAttention,
         lambda: MLA_LAYER.rope(torch.zeros(1, 3, 4), torch.arange(3.0)), ValueError, "positions"),
    Case("MultiHeadLatentAttention.queries: x of the wrong width", mla.MultiHeadLatentAttention,
         lambda: MLA_LAYER.queries(X8, torch.arange(3)), ValueError, "x"),
    Case("MultiHeadLatentAttention.latents: one position too few", mla.MultiHeadLatentAttention,
         lambda: MLA_LAYER.latents(X12, torch.arange(2)), ValueError, "positions"),
    Case("MultiHeadLatentAttention.attend_naive: float mask", mla.MultiHeadLatentAttention,
         lambda: MLA_LAYER.attend_naive(*MLA_LAYER.queries(X12, torch.arange(3)),
                                        *MLA_LAYER.latents(X12, torch.arange(3)), torch.ones(3, 3)),
         ValueError, "mask"),
    Case("MultiHeadLatentAttention.attend_absorbed: c_kv of the wrong width", mla.MultiHeadLatentAttention,
         lambda: MLA_LAYER.attend_absorbed(*MLA_LAYER.queries(X12, torch.arange(3)), torch.zeros(1, 3, 4),
                                           torch.zeros(1, 3, 4), attention.causal_mask(3, 3)), ValueError, "c_kv"),
    Case("rope_on_latent_keys: module is a GQA layer", mla.rope_on_latent_keys,
         lambda: mla.rope_on_latent_keys(GQA_LAYER, X8), TypeError, "module"),
    Case("rope_to_halves: module is a GQA layer", mla.rope_to_halves, lambda: mla.rope_to_halves(GQA_LAYER),
         TypeError, "module"),
    Case("mla.from_transformers: not a Hugging Face layer", mla.from_transformers,
         lambda: mla.from_transformers(GQA_LAYER), ValueError, "hf_attention"),
    # dsa
    Case("IndexerConfig: infinite norm_eps", dsa.IndexerConfig,
         lambda: dsa.IndexerConfig(**indexer_fields(norm_eps=INF)), ValueError, "norm_eps"),
    Case("IndexerConfig: NaN rope_base", dsa.IndexerConfig,
         lambda: dsa.IndexerConfig(**indexer_fields(rope_base=NAN)), ValueError, "rope_base"),
    Case("IndexerConfig: hadamard is an int", dsa.IndexerConfig,
         lambda: dsa.IndexerConfig(**indexer_fields(hadamard=1)), TypeError, "hadamard"),
    Case("indexer_config_for: mla is a dict", dsa.indexer_config_for,
         lambda: dsa.indexer_config_for(mla_fields(), 2, 8, 3), TypeError, "mla"),
    Case("LightningIndexer: config is an MLAConfig", dsa.LightningIndexer,
         lambda: dsa.LightningIndexer(MLA_CONFIG), TypeError, "config"),
    Case("LightningIndexer: theta is a list", dsa.LightningIndexer,
         lambda: dsa.LightningIndexer(INDEXER_CONFIG, theta=[1.0, 0.1]), TypeError, "theta"),
    Case("LightningIndexer: NaN rope_amplitude", dsa.LightningIndexer,
         lambda: dsa.LightningIndexer(INDEXER_CONFIG, rope_amplitude=NAN), ValueError, "rope_amplitude"),
    Case("LightningIndexer: cache is a dict", dsa.LightningIndexer,
         lambda: DSA_LAYER.indexer(X12, Q_INPUT, cache={}), TypeError, "cache"),
    Case("LightningIndexer: cache with seq_dim 2", dsa.LightningIndexer,
         lambda: DSA_LAYER.indexer(X12, Q_INPUT, cache=kv_cache.LayerCache(seq_dim=2)), ValueError, "cache"),
    Case("LightningIndexer.queries: q_input of the wrong width", dsa.LightningIndexer,
         lambda: DSA_LAYER.indexer.queries(X12, torch.arange(3)), ValueError, "q_input"),
    Case("LightningIndexer.rope: float positions", dsa.LightningIndexer,
         lambda: DSA_LAYER.indexer.rope(torch.zeros(1, 3, 8), torch.arange(3.0)), ValueError, "positions"),
    Case("LightningIndexer.head_weights: x of the wrong width", dsa.LightningIndexer,
         lambda: DSA_LAYER.indexer.head_weights(X8), ValueError, "x"),
    Case("LightningIndexer.score: k of the wrong width", dsa.LightningIndexer,
         lambda: DSA_LAYER.indexer.score(torch.zeros(1, 3, 2, 8), torch.zeros(1, 3, 2), torch.zeros(1, 3, 4)),
         ValueError, "k"),
    Case("topk_indices: integer scores", dsa.topk_indices,
         lambda: dsa.topk_indices(torch.zeros(1, 2, 3, dtype=torch.long), 2), ValueError, "scores"),
    Case("topk_indices: top_k is a float", dsa.topk_indices, lambda: dsa.topk_indices(INDEX_SCORES, 2.0),
         TypeError, "top_k"),
    Case("selection_mask: float indices", dsa.selection_mask,
         lambda: dsa.selection_mask(INDICES.float(), 4), ValueError, "indices"),
    Case("selection_mask: index below the -1 padding", dsa.selection_mask,
         lambda: dsa.selection_mask(torch.tensor([[[0, -2]]]), 4), ValueError, "indices"),
    Case("selection_mask: index beyond n_keys", dsa.selection_mask,
         lambda: dsa.selection_mask(torch.tensor([[[0, 4]]]), 4), ValueError, "indices"),
    Case("selection_mask: n_keys = 0", dsa.selection_mask, lambda: dsa.selection_mask(INDICES, 0),
         ValueError, "n_keys"),
    Case("gather_tokens: float indices", dsa.gather_tokens,
         lambda: dsa.gather_tokens(torch.zeros(1, 4, 5), INDICES.float()), ValueError, "indices"),
    Case("gather_tokens: index beyond the cached tokens", dsa.gather_tokens,
         lambda: dsa.gather_tokens(torch.zeros(1, 2, 5), INDICES), ValueError, "indices"),
    Case("gather_tokens: batch sizes differ", dsa.gather_tokens,
         lambda: dsa.gather_tokens(torch.zeros(2, 4, 5), INDICES), ValueError, "indices"),
    Case("sparse_attend_absorbed: mla is a GQA layer", dsa.sparse_attend_absorbed,
         lambda: dsa.sparse_attend_absorbed(GQA_LAYER, torch.zeros(1, 3, 3, 4), torch.zeros(1, 3, 3, 4),
                                            torch.zeros(1, 3, 5), torch.zeros(1, 3, 4), INDICES), TypeError, "mla"),
    Case("sparse_attend_absorbed: c_kv of the wrong width", dsa.sparse_attend_absorbed,
         lambda: dsa.sparse_attend_absorbed(MLA_LAYER, torch.zeros(1, 3, 3, 4), torch.zeros(1, 3, 3, 4),
                                            torch.zeros(1, 3, 6), torch.zeros(1, 3, 4), INDICES), ValueError, "c_kv"),
    Case("scatter_weights: index beyond n_keys", dsa.scatter_weights,
         lambda: dsa.scatter_weights(SPARSE_WEIGHTS, INDICES, 2), ValueError, "indices"),
    Case("scatter_weights: n_keys = 0", dsa.scatter_weights, lambda: dsa.scatter_weights(SPARSE_WEIGHTS, INDICES, 0),
         ValueError, "n_keys"),
    Case("scatter_weights: float indices", dsa.scatter_weights,
         lambda: dsa.scatter_weights(SPARSE_WEIGHTS, INDICES.float(), 4), ValueError, "indices"),
    Case("DeepSeekSparseAttention: mla_config is an IndexerConfig", dsa.DeepSeekSparseAttention,
         lambda: dsa.DeepSeekSparseAttention(INDEXER_CONFIG, INDEXER_CONFIG), TypeError, "mla_config"),
    Case("DeepSeekSparseAttention: cache with seq_dim 0", dsa.DeepSeekSparseAttention,
         lambda: DSA_LAYER(X12, cache=kv_cache.LayerCache(seq_dim=0)), ValueError, "cache"),
    Case("DeepSeekSparseAttention: return_weights is a str", dsa.DeepSeekSparseAttention,
         lambda: DSA_LAYER(X12, return_weights="yes"), TypeError, "return_weights"),
    Case("DeepSeekSparseAttention: windowed cache", dsa.DeepSeekSparseAttention,
         lambda: DSA_LAYER(X12, cache=kv_cache.LayerCache(seq_dim=1, window=2)), ValueError, "window"),
    Case("DeepSeekSparseAttention.use: top_k = 0", dsa.DeepSeekSparseAttention, lambda: DSA_LAYER.use(top_k=0),
         ValueError, "top_k"),
    Case("DeepSeekSparseAttention.use: top_k is a float", dsa.DeepSeekSparseAttention,
         lambda: DSA_LAYER.use(top_k=2.0), TypeError, "top_k"),
    Case("DeepSeekSparseAttention.use: unknown implementation", dsa.DeepSeekSparseAttention,
         lambda: DSA_LAYER.use("sparse"), ValueError, "implementation"),
    Case("DeepSeekSparseAttention.using: unknown implementation", dsa.DeepSeekSparseAttention,
         lambda: DSA_LAYER.using("sparse").__enter__(), ValueError, "implementation"),
    Case("indexer_kl_loss: float selected", dsa.indexer_kl_loss,
         lambda: dsa.indexer_kl_loss(ATTN_WEIGHTS, INDEX_SCORES, INDICES.float()), ValueError, "selected"),
    Case("indexer_kl_loss: selected is a list", dsa.indexer_kl_loss,
         lambda: dsa.indexer_kl_loss(ATTN_WEIGHTS, INDEX_SCORES, [[[0]]]), TypeError, "selected"),
    Case("indexer_kl_loss: unknown reduction", dsa.indexer_kl_loss,
         lambda: dsa.indexer_kl_loss(ATTN_WEIGHTS, INDEX_SCORES, reduction="none"), ValueError, "reduction"),
    Case("indexer_parameters: model is a str", dsa.indexer_parameters, lambda: dsa.indexer_parameters("model"),
         TypeError, "model"),
    Case("set_training_stage: unknown stage", dsa.set_training_stage,
         lambda: dsa.set_training_stage(DSA_LAYER, "pretrain"), ValueError, "stage"),
    Case("set_training_stage: model is a config", dsa.set_training_stage,
         lambda: dsa.set_training_stage(MLA_CONFIG, "sparse"), TypeError, "model"),
    Case("indexer_loss: unknown reduction", dsa.indexer_loss, lambda: dsa.indexer_loss(DSA_LAYER, "max"),
         ValueError, "reduction"),
    Case("layer_cost: per_layer is a str", dsa.layer_cost, lambda: dsa.layer_cost(V32, 100, per_layer="no"),
         TypeError, "per_layer"),
    Case("layer_cost: context_len = 0", dsa.layer_cost, lambda: dsa.layer_cost(V32, 0), ValueError, "context_len"),
    Case("layer_cost: spec is a model name", dsa.layer_cost, lambda: dsa.layer_cost("deepseek-v3.2", 10), TypeError,
         "spec"),
    Case("prefill_switch_context: max_context = 0", dsa.prefill_switch_context,
         lambda: dsa.prefill_switch_context(V32, max_context=0), ValueError, "max_context"),
    Case("dsa_layer_cost: unknown prefill_mode", costs.dsa_layer_cost,
         lambda: costs.dsa_layer_cost(SHAPE, 10, prefill_mode="dense"), ValueError, "prefill_mode"),
    Case("dsa_prefill_switch_context: prefill_mode given", costs.dsa_prefill_switch_context,
         lambda: costs.dsa_prefill_switch_context(SHAPE, prefill_mode="sparse"), ValueError, "prefill_mode"),
    Case("crossover_context: max_context = 0", dsa.crossover_context,
         lambda: dsa.crossover_context(V32, max_context=0),
         ValueError, "max_context"),
    Case("indexer_from_transformers: not a Hugging Face indexer", dsa.indexer_from_transformers,
         lambda: dsa.indexer_from_transformers(torch.nn.Linear(2, 2)), ValueError, "hf_indexer"),
    Case("dsa.from_transformers: not a Hugging Face layer", dsa.from_transformers,
         lambda: dsa.from_transformers(MLA_LAYER), ValueError, "hf_attention"),
    # quant
    Case("block_scales: x is a list", quant.block_scales, lambda: quant.block_scales([1.0] * 128), TypeError, "x"),
    Case("block_scales: integer x", quant.block_scales,
         lambda: quant.block_scales(torch.zeros(2, 128, dtype=torch.long)), ValueError, "x"),
    Case("quantize_fp8_blocks: block = 0", quant.quantize_fp8_blocks,
         lambda: quant.quantize_fp8_blocks(torch.zeros(2, 128), block=0), ValueError, "block"),
    Case("dequantize_fp8_blocks: dtype is a str", quant.dequantize_fp8_blocks,
         lambda: quant.dequantize_fp8_blocks(*quant.quantize_fp8_blocks(torch.zeros(128)), dtype="float32"),
         TypeError, "dtype"),
    Case("dequantize_fp8_blocks: integer dtype", quant.dequantize_fp8_blocks,
         lambda: quant.dequantize_fp8_blocks(*quant.quantize_fp8_blocks(torch.zeros(128)), dtype=torch.int32),
         ValueError, "dtype"),
    Case("dequantize_fp8_blocks: x_fp8 in float32", quant.dequantize_fp8_blocks,
         lambda: quant.dequantize_fp8_blocks(torch.zeros(128), torch.ones(1)), ValueError, "x_fp8"),
    Case("fake_quantize_fp8: unknown scale_format", quant.fake_quantize_fp8,
         lambda: quant.fake_quantize_fp8(torch.zeros(128), scale_format="e8m0"), ValueError, "scale_format"),
    Case("hadamard_matrix: dtype is a str", quant.hadamard_matrix,
         lambda: quant.hadamard_matrix(4, dtype="float64"), TypeError, "dtype"),
    Case("hadamard_matrix: normalized in an integer dtype", quant.hadamard_matrix,
         lambda: quant.hadamard_matrix(4, dtype=torch.int64), ValueError, "dtype"),
    Case("hadamard_matrix: n is a float", quant.hadamard_matrix, lambda: quant.hadamard_matrix(4.0),
         TypeError, "n"),
    Case("fwht: integer x", quant.fwht, lambda: quant.fwht(torch.ones(2, 4, dtype=torch.long)), ValueError, "x"),
    Case("fwht: last dim not a power of two", quant.fwht, lambda: quant.fwht(torch.zeros(2, 12)),
         ValueError, "x.shape[-1]"),
    Case("fwht: x is a list", quant.fwht, lambda: quant.fwht([1.0, 2.0]), TypeError, "x"),
    Case("hadamard_rotation: n not a power of two", quant.hadamard_rotation,
         lambda: quant.hadamard_rotation(12, torch.float32, torch.device("cpu")), ValueError, "n"),
    Case("hadamard_rotation: integer dtype", quant.hadamard_rotation,
         lambda: quant.hadamard_rotation(8, torch.int32, torch.device("cpu")), ValueError, "dtype"),
    Case("fwht_additions: n = 0", quant.fwht_additions, lambda: quant.fwht_additions(0), ValueError, "n"),
    # sizing
    Case("ModelSpec: name is an int", sizing.ModelSpec, lambda: sizing.ModelSpec(**spec_fields(name=7)),
         TypeError, "name"),
    Case("ModelSpec: head_dim is a float", sizing.ModelSpec, lambda: sizing.ModelSpec(**spec_fields(head_dim=8.0)),
         TypeError, "head_dim"),
    Case("get_model: model is an int", sizing.get_model, lambda: sizing.get_model(42), TypeError, "model"),
    Case("get_dtype: complex dtype", sizing.get_dtype, lambda: sizing.get_dtype(torch.complex64), ValueError,
         "dtype"),
    Case("get_dtype: unknown dtype name", sizing.get_dtype, lambda: sizing.get_dtype("fp8"), ValueError, "dtype"),
    Case("mla_dims: unknown model", sizing.mla_dims, lambda: sizing.mla_dims("gpt-5"), ValueError, "model"),
    Case("table1_elements: n_h = 0", sizing.table1_elements, lambda: sizing.table1_elements(0, 8, 2, 1, 32, 4),
         ValueError, "n_h"),
    Case("kv_elements_per_token: per_layer is a str", sizing.kv_elements_per_token,
         lambda: sizing.kv_elements_per_token(SPEC, per_layer="no"), TypeError, "per_layer"),
    Case("cache_bytes_per_token: complex dtype", sizing.cache_bytes_per_token,
         lambda: sizing.cache_bytes_per_token(SPEC, torch.complex64), ValueError, "dtype"),
    Case("kv_cache_bytes: negative seq_len", sizing.kv_cache_bytes, lambda: sizing.kv_cache_bytes(SPEC, -1),
         ValueError, "seq_len"),
    Case("reduction_vs_mha: unknown scheme", sizing.reduction_vs_mha,
         lambda: sizing.reduction_vs_mha(SPEC, "sparse"), ValueError, "scheme"),
    Case("attention_macs_per_cached_token: per_layer is an int", sizing.attention_macs_per_cached_token,
         lambda: sizing.attention_macs_per_cached_token(SPEC, per_layer=0), TypeError, "per_layer"),
    Case("decode_flops_per_byte: quantized dtype", sizing.decode_flops_per_byte,
         lambda: sizing.decode_flops_per_byte(SPEC, dtype=torch.qint8), ValueError, "dtype"),
    Case("gib: NaN bytes", sizing.gib, lambda: sizing.gib(NAN), ValueError, "n_bytes"),
    Case("gib: bytes as a str", sizing.gib, lambda: sizing.gib("1024"), TypeError, "n_bytes"),
    Case("tokens_that_fit: NaN gpu_gib", sizing.tokens_that_fit, lambda: sizing.tokens_that_fit(SPEC, NAN),
         ValueError, "gpu_gib"),
    Case("weight_bytes: unknown dtype name", sizing.weight_bytes, lambda: sizing.weight_bytes(SPEC, "int4"),
         ValueError, "dtype"),
    Case("indexer_elements_per_token: per_layer is an int", sizing.indexer_elements_per_token,
         lambda: sizing.indexer_elements_per_token("deepseek-v3.2", per_layer=1), TypeError, "per_layer"),
    Case("format_si: NaN value", sizing.format_si, lambda: sizing.format_si(NAN, ("B", "kB")), ValueError, "value"),
    Case("format_si: no units", sizing.format_si, lambda: sizing.format_si(5, ()), TypeError, "units"),
    Case("format_bytes: bytes as a str", sizing.format_bytes, lambda: sizing.format_bytes("5 MB"), TypeError,
         "n_bytes"),
    Case("format_ratio: NaN ratio", sizing.format_ratio, lambda: sizing.format_ratio(NAN), ValueError, "ratio"),
    Case("kv_formula: n_kv_heads without scheme gqa", sizing.kv_formula,
         lambda: sizing.kv_formula(SPEC, "mha", n_kv_heads=8), ValueError, "n_kv_heads"),
    Case("layer_tokens: negative seq_len", sizing.layer_tokens, lambda: sizing.layer_tokens(SPEC, -3),
         ValueError, "seq_len"),
    Case("v4_layer_types: v4 is a dict", sizing.v4_layer_types, lambda: sizing.v4_layer_types({"window": 128}),
         TypeError, "v4"),
    Case("linear_state_elements: unknown model", sizing.linear_state_elements,
         lambda: sizing.linear_state_elements("qwen4"), ValueError, "model"),
    Case("fixed_state_bytes: batch = 0", sizing.fixed_state_bytes,
         lambda: sizing.fixed_state_bytes("qwen3-next-80b-a3b", batch=0), ValueError, "batch"),
    Case("growth_bytes_per_token: unknown scheme", sizing.growth_bytes_per_token,
         lambda: sizing.growth_bytes_per_token("deepseek-v4-pro", scheme="csa"), ValueError, "scheme"),
    Case("layer_elements_per_token: unknown scheme", sizing.layer_elements_per_token,
         lambda: sizing.layer_elements_per_token(SPEC, "window"), ValueError, "scheme"),
    Case("layer_cache_bytes: batch 0", sizing.layer_cache_bytes, lambda: sizing.layer_cache_bytes(SPEC, 4, 0),
         ValueError, "batch"),
    Case("cache_layouts: unknown cache_format", sizing.cache_layouts,
         lambda: sizing.cache_layouts("deepseek-v3.2", cache_format="int4"), ValueError, "cache_format"),
    Case("marginal_cache_bytes: seq_len is a float", sizing.marginal_cache_bytes,
         lambda: sizing.marginal_cache_bytes(SPEC, 2.5), TypeError, "seq_len"),
    Case("cache_scheme: unknown scheme", sizing.cache_scheme, lambda: sizing.cache_scheme(SPEC, "flash"),
         ValueError, "scheme"),
    Case("layer_plan: model is a dict", sizing.layer_plan, lambda: sizing.layer_plan({"n_layers": 2}), TypeError,
         "model"),
    # costs
    Case("AttentionShape: d_model = 0", costs.AttentionShape,
         lambda: costs.AttentionShape(d_model=0, n_heads=2, head_dim=4), ValueError, "d_model"),
    Case("AttentionShape: n_kv_heads does not divide n_heads", costs.AttentionShape,
         lambda: costs.AttentionShape(d_model=8, n_heads=4, head_dim=2, n_kv_heads=3), ValueError, "n_kv_heads"),
    Case("as_shape: shape is a model name", costs.as_shape, lambda: costs.as_shape("deepseek-v3"), TypeError,
         "shape"),
    Case("cache_widths: unknown scheme", costs.cache_widths, lambda: costs.cache_widths("sparse", SHAPE),
         ValueError, "scheme"),
    Case("cache_elements_per_token: per_layer is a str", costs.cache_elements_per_token,
         lambda: costs.cache_elements_per_token("mha", SHAPE, per_layer="no"), TypeError, "per_layer"),
    Case("costs.cache_bytes_per_token: complex dtype", costs.cache_bytes_per_token,
         lambda: costs.cache_bytes_per_token("mha", SHAPE, torch.complex64), ValueError, "dtype"),
    Case("cache_bytes: negative context", costs.cache_bytes, lambda: costs.cache_bytes("mha", SHAPE, -1),
         ValueError, "context"),
    Case("costs.indexer_elements_per_token: per_layer is an int", costs.indexer_elements_per_token,
         lambda: costs.indexer_elements_per_token(SHAPE, per_layer=1), TypeError, "per_layer"),
    Case("indexer_cache_bytes_per_token: no indexer", costs.indexer_cache_bytes_per_token,
         lambda: costs.indexer_cache_bytes_per_token(DENSE_SHAPE), ValueError, "index_head_dim"),
    Case("expanded_kv_elements_per_token: shape is a dict", costs.expanded_kv_elements_per_token,
         lambda: costs.expanded_kv_elements_per_token({"n_heads": 4}), TypeError, "shape"),
    Case("macs_per_cached_token_parts: MLA without a latent", costs.macs_per_cached_token_parts,
         lambda: costs.macs_per_cached_token_parts("mla", DENSE_SHAPE), ValueError, "kv_lora_rank"),
    Case("macs_per_cached_token: per_layer is an int", costs.macs_per_cached_token,
         lambda: costs.macs_per_cached_token("mha", SHAPE, per_layer=0), TypeError, "per_layer"),
    Case("indexer_macs_per_cached_token: shape is an int", costs.indexer_macs_per_cached_token,
         lambda: costs.indexer_macs_per_cached_token(3), TypeError, "shape"),
    Case("indexer_projection_macs: shape is None", costs.indexer_projection_macs,
         lambda: costs.indexer_projection_macs(None), TypeError, "shape"),
    Case("weight_elements: scheme is an int", costs.weight_elements, lambda: costs.weight_elements(7, SHAPE),
         TypeError, "scheme"),
    Case("projection_flops: DSA without an indexer", costs.projection_flops,
         lambda: costs.projection_flops("dsa", costs.AttentionShape(d_model=8, n_heads=2, head_dim=4,
                                                                    kv_lora_rank=4)), ValueError, "index_n_heads"),
    Case("decode_attention_flops: negative context", costs.decode_attention_flops,
         lambda: costs.decode_attention_flops("mha", SHAPE, -1), ValueError, "context"),
    Case("decode_flops: context is a float", costs.decode_flops, lambda: costs.decode_flops("mha", SHAPE, 1.5),
         TypeError, "context"),
    Case("decode_bytes_read: unknown dtype name", costs.decode_bytes_read,
         lambda: costs.decode_bytes_read("mha", SHAPE, 4, "int4"), ValueError, "dtype"),
    Case("cache_append_bytes: unknown scheme", costs.cache_append_bytes,
         lambda: costs.cache_append_bytes("sliding", SHAPE, "float32"), ValueError, "scheme"),
    Case("decode_bytes_moved: negative context", costs.decode_bytes_moved,
         lambda: costs.decode_bytes_moved("mqa", SHAPE, -2, "float32"), ValueError, "context"),
    Case("arithmetic_intensity: bool dtype", costs.arithmetic_intensity,
         lambda: costs.arithmetic_intensity("mqa", SHAPE, 4, torch.bool), ValueError, "dtype"),
    Case("attention_intensity: DSA", costs.attention_intensity, lambda: costs.attention_intensity("dsa", SHAPE),
         ValueError, "scheme"),
    Case("selected_pairs: top_k = 0", costs.selected_pairs, lambda: costs.selected_pairs(10, 0), ValueError,
         "top_k"),
    Case("prefill_flops: negative length", costs.prefill_flops, lambda: costs.prefill_flops("mha", SHAPE, -2),
         ValueError, "length"),
    Case("mla_absorption_fold_macs: no latent", costs.mla_absorption_fold_macs,
         lambda: costs.mla_absorption_fold_macs(DENSE_SHAPE), ValueError, "kv_lora_rank"),
    Case("mla_decode_step_costs: negative seq_len", costs.mla_decode_step_costs,
         lambda: costs.mla_decode_step_costs(SHAPE, -1), ValueError, "seq_len"),
    Case("dsa_layer_cost: context_len = 0", costs.dsa_layer_cost, lambda: costs.dsa_layer_cost(SHAPE, 0),
         ValueError, "context_len"),
    Case("dsa_crossover_context: unknown metric", costs.dsa_crossover_context,
         lambda: costs.dsa_crossover_context(SHAPE, metric="flops"), ValueError, "metric"),
    # schemes
    Case("Scheme: colour is a name", schemes.Scheme, lambda: dataclasses.replace(schemes.MHA, color="blue"),
         ValueError, "color"),
    Case("get_scheme: key is an int", schemes.get_scheme, lambda: schemes.get_scheme(3), TypeError, "key"),
    Case("variants: unknown key", schemes.variants, lambda: schemes.variants("flash"), ValueError, "key"),
    # lowrank
    Case("attention_inputs: model is a layer", lowrank.attention_inputs,
         lambda: lowrank.attention_inputs(GQA_LAYER, IDS), TypeError, "model"),
    Case("attention_inputs: float ids", lowrank.attention_inputs,
         lambda: lowrank.attention_inputs(TINY, IDS.float()), ValueError, "ids"),
    Case("kv_matrices: attn is a Linear", lowrank.kv_matrices,
         lambda: lowrank.kv_matrices(torch.nn.Linear(8, 8), X8), TypeError, "attn"),
    Case("kv_matrices: x of the wrong width", lowrank.kv_matrices, lambda: lowrank.kv_matrices(GQA_LAYER, X12),
         ValueError, "x"),
    Case("singular_values: NaN entry", lowrank.singular_values,
         lambda: lowrank.singular_values(torch.tensor([[1.0, NAN], [0.0, 1.0]])), ValueError, "m"),
    Case("singular_values: m is a list", lowrank.singular_values, lambda: lowrank.singular_values([[1.0]]),
         TypeError, "m"),
    Case("lowrank_error: ranks is a str", lowrank.lowrank_error, lambda: lowrank.lowrank_error(M, "12"),
         TypeError, "ranks"),
    Case("lowrank_error: s with 2 dims", lowrank.lowrank_error,
         lambda: lowrank.lowrank_error(M, [1], s=torch.ones(2, 2)), ValueError, "s"),
    Case("lowrank_approx: negative rank", lowrank.lowrank_approx, lambda: lowrank.lowrank_approx(M, -1),
         ValueError, "rank"),
    Case("joint_kv: row counts differ", lowrank.joint_kv, lambda: lowrank.joint_kv(M, M[:3]), ValueError, "v"),
    Case("budget_errors: n_heads = 0", lowrank.budget_errors, lambda: lowrank.budget_errors(M, M, 0, [4]),
         ValueError, "n_heads"),
    Case("budget_errors: ranks is a tensor", lowrank.budget_errors,
         lambda: lowrank.budget_errors(M, M, 1, torch.tensor([2, 4])), TypeError, "ranks"),
    # model
    Case("TinyLMConfig: NaN rope_base", lm.TinyLMConfig, lambda: lm.TinyLMConfig(rope_base=NAN), ValueError,
         "rope_base"),
    Case("TinyLMConfig: unknown attention", lm.TinyLMConfig, lambda: lm.TinyLMConfig(attention="nsa"), ValueError,
         "attention"),
    Case("SwiGLU: d_ff = 0", lm.SwiGLU, lambda: lm.SwiGLU(16, 0), ValueError, "d_ff"),
    Case("SwiGLU: x of the wrong width", lm.SwiGLU, lambda: lm.SwiGLU(16, 24)(X8), ValueError, "x"),
    Case("Block: config is an AttentionConfig", lm.Block, lambda: lm.Block(GQA_CONFIG), TypeError, "config"),
    Case("Block: h with 2 dims", lm.Block, lambda: TINY.blocks[0](torch.zeros(3, 16)), ValueError, "h"),
    Case("TinyLM: config is a dict", lm.TinyLM, lambda: lm.TinyLM({"vocab_size": 32}), TypeError, "config"),
    Case("TinyLM: cache is a dict", lm.TinyLM, lambda: TINY(IDS, cache={0: None}), TypeError, "cache"),
    Case("TinyLM: return_attention is a str", lm.TinyLM, lambda: TINY(IDS, return_attention="yes"), TypeError,
         "return_attention"),
    Case("TinyLM.loss: a single token", lm.TinyLM, lambda: TINY.loss(IDS[:, :1]), ValueError, "ids"),
    Case("generate: NaN temperature", lm.generate, lambda: lm.generate(TINY, IDS, 2, temperature=NAN), ValueError,
         "temperature"),
    Case("generate: model is a layer", lm.generate, lambda: lm.generate(GQA_LAYER, IDS, 2), TypeError, "model"),
    Case("generate: generator is a seed", lm.generate,
         lambda: lm.generate(TINY, IDS, 2, temperature=1.0, generator=0), TypeError, "generator"),
    Case("generate: use_cache is a str", lm.generate, lambda: lm.generate(TINY, IDS, 2, use_cache="no"), TypeError,
         "use_cache"),
    Case("generate: max_new_tokens is a float", lm.generate, lambda: lm.generate(TINY, IDS, 2.0), TypeError,
         "max_new_tokens"),
    Case("generate: longer than max_seq_len", lm.generate, lambda: lm.generate(TINY, IDS, 10), ValueError,
         "max_new_tokens"),
    Case("checkpoint_path: name is an int", lm.checkpoint_path, lambda: lm.checkpoint_path(3), TypeError, "name"),
    Case("save_checkpoint: path is an int", lm.save_checkpoint, lambda: lm.save_checkpoint(TINY, 3), TypeError,
         "path"),
    Case("load_checkpoint: integer dtype", lm.load_checkpoint,
         lambda: lm.load_checkpoint("tiny_gqa", dtype=torch.int64), ValueError, "dtype"),
    Case("load_checkpoint: unknown device", lm.load_checkpoint,
         lambda: lm.load_checkpoint("tiny_gqa", device="gpu"), ValueError, "device"),
    Case("checkpoint_metrics: no such checkpoint", lm.checkpoint_metrics,
         lambda: lm.checkpoint_metrics("no_such_model"), ValueError, "name"),
    # tokenization
    Case("most_frequent_pair: counts is a list", tokenization.most_frequent_pair,
         lambda: tokenization.most_frequent_pair([((1, 2), 3)]), TypeError, "counts"),
    Case("split_chunks: pattern is not a regular expression", tokenization.split_chunks,
         lambda: tokenization.split_chunks("abc", pattern="(["), ValueError, "pattern"),
    Case("split_chunks: text is bytes", tokenization.split_chunks, lambda: tokenization.split_chunks(b"abc"),
         TypeError, "text"),
    Case("train_merges_naive: vocab_size is a float", tokenization.train_merges_naive,
         lambda: tokenization.train_merges_naive("aaab", 300.0), TypeError, "vocab_size"),
    Case("train_merges: vocab_size below 256", tokenization.train_merges,
         lambda: tokenization.train_merges("aaab", 100), ValueError, "vocab_size"),
    Case("train_merges: verbose is a str", tokenization.train_merges,
         lambda: tokenization.train_merges("aaab", 260, verbose="yes"), TypeError, "verbose"),
    Case("vocab_from_merges: merges is a list", tokenization.vocab_from_merges,
         lambda: tokenization.vocab_from_merges([((104, 105), 256)]), TypeError, "merges"),
    Case("vocab_from_merges: a merge of one id", tokenization.vocab_from_merges,
         lambda: tokenization.vocab_from_merges({(104,): 256}), TypeError, "merges"),
    Case("BPETokenizer: pattern is an int", tokenization.BPETokenizer,
         lambda: tokenization.BPETokenizer(pattern=5), TypeError, "pattern"),
    Case("BPETokenizer: merge skips an id", tokenization.BPETokenizer,
         lambda: tokenization.BPETokenizer({(1, 2): 300}), ValueError, "merges"),
    Case("BPETokenizer.decode: id out of range", tokenization.BPETokenizer, lambda: TOKENIZER.decode([0, 259]),
         ValueError, "ids"),
    Case("BPETokenizer.token_bytes: id is a str", tokenization.BPETokenizer, lambda: TOKENIZER.token_bytes("a"),
         ValueError, "id"),
    Case("BPETokenizer.to_json: metadata is a list", tokenization.BPETokenizer,
         lambda: TOKENIZER.to_json(metadata=["course"]), TypeError, "metadata"),
    Case("BPETokenizer.from_json: a JSON list", tokenization.BPETokenizer,
         lambda: tokenization.BPETokenizer.from_json("[1, 2]"), ValueError, "text"),
    Case("BPETokenizer.save: path is an int", tokenization.BPETokenizer, lambda: TOKENIZER.save(3), TypeError,
         "path"),
    Case("utf8_bytes_per_token: ids is an int", tokenization.utf8_bytes_per_token,
         lambda: tokenization.utf8_bytes_per_token("abc", 3), TypeError, "ids"),
    Case("visible_token: token is a str", tokenization.visible_token, lambda: tokenization.visible_token("the"),
         TypeError, "token"),
    Case("render_token: token is a str", tokenization.render_token, lambda: tokenization.render_token("the"),
         TypeError, "token"),
    Case("tokens_html: tokenizer is a str", tokenization.tokens_html,
         lambda: tokenization.tokens_html("bpe", "some text"), TypeError, "tokenizer"),
    Case("compare_with_hf: vocab_size below 256", tokenization.compare_with_hf,
         lambda: tokenization.compare_with_hf("aaab", "ab", 100), ValueError, "vocab_size"),
    Case("write_course_tokenizer: path is an int", tokenization.write_course_tokenizer,
         lambda: tokenization.write_course_tokenizer(3), TypeError, "path"),
    # train
    Case("TrainConfig: NaN lr", train.TrainConfig, lambda: train.TrainConfig(lr=NAN), ValueError, "lr"),
    Case("TrainConfig: negative warmup", train.TrainConfig, lambda: train.TrainConfig(warmup=-1), ValueError,
         "warmup"),
    Case("TrainConfig: infinite weight_decay", train.TrainConfig, lambda: train.TrainConfig(weight_decay=INF),
         ValueError, "weight_decay"),
    Case("TrainConfig: seed is a float", train.TrainConfig, lambda: train.TrainConfig(seed=0.5), TypeError, "seed"),
    Case("token_ids: unknown split", train.token_ids, lambda: train.token_ids("test"), ValueError, "split"),
    Case("sample_batch: float data", train.sample_batch,
         lambda: train.sample_batch(torch.arange(20.0), 2, 4, torch.Generator()), ValueError, "data"),
    Case("lr_at: negative step", train.lr_at, lambda: train.lr_at(-1, train.TrainConfig()), ValueError, "step"),
    Case("evaluate: cfg is a dict", train.evaluate, lambda: train.evaluate(TINY, torch.arange(20), {}), TypeError,
         "cfg"),
    Case("train: model_config is a dict", train.train, lambda: train.train({"attention": "mha"}), TypeError,
         "model_config"),
    Case("main: argv is a str", train.main, lambda: train.main("--steps 1"), TypeError, "argv"),
    Case("train: progress is a str", train.train, lambda: train.train(TINY_CONFIG, progress="yes"), TypeError,
         "progress"),
    # dsa_training: the progress flag of the training loops
    Case("warmup_indexer: progress is a str", dsa_training.warmup_indexer,
         lambda: dsa_training.warmup_indexer(TINY_DSA, DSA_TRAIN, progress="yes"), TypeError, "progress"),
    Case("train_sparse: progress is an int", dsa_training.train_sparse,
         lambda: dsa_training.train_sparse(TINY_DSA, DSA_TRAIN, progress=1), TypeError, "progress"),
    Case("dsa_training.run: progress is a str", dsa_training.run,
         lambda: dsa_training.run(TINY_MLA, DSA_TRAIN, progress="yes"), TypeError, "progress"),
    # cache_formats
    Case("BytePart.count", cache_formats.BytePart, lambda: cache_formats.BytePart("x", 0, 8), ValueError, "count"),
    Case("BytePart.bits", cache_formats.BytePart, lambda: cache_formats.BytePart("x", 3, 4), ValueError, "bits"),
    Case("ByteLayout.parts", cache_formats.ByteLayout, lambda: cache_formats.ByteLayout("x", (), "s"), ValueError,
         "parts"),
    Case("uniform_layout.dtype", cache_formats.uniform_layout, lambda: cache_formats.uniform_layout(4, "int9"),
         ValueError, "dtype"),
    # v4: DeepSeek-V4's attention layer
    Case("V4AttentionConfig: unknown layer_type", v4.V4AttentionConfig,
         lambda: v4.V4AttentionConfig(**V4_FIELDS | {"layer_type": "dense"}), ValueError, "layer_type"),
    Case("V4AttentionConfig: o_groups does not divide n_heads", v4.V4AttentionConfig,
         lambda: v4.V4AttentionConfig(**V4_FIELDS | {"o_groups": 3}), ValueError, "o_groups"),
    Case("V4AttentionConfig: rope_head_dim wider than the index keys", v4.V4AttentionConfig,
         lambda: v4.V4AttentionConfig(**V4_FIELDS | {"index_head_dim": 2}), ValueError, "rope_head_dim"),
    Case("V4AttentionConfig: a sliding layer with a compress_rate", v4.V4AttentionConfig,
         lambda: v4.V4AttentionConfig(**V4_FIELDS | {"layer_type": "sliding"}), ValueError, "compress_rate"),
    Case("V4AttentionConfig: window is 0", v4.V4AttentionConfig,
         lambda: v4.V4AttentionConfig(**V4_FIELDS | {"window": 0}), ValueError, "window"),
    Case("rms_norm: eps = 0", v4.rms_norm, lambda: v4.rms_norm(torch.ones(2, 3), 0.0), ValueError, "eps"),
    Case("rope_tail: float positions", v4.rope_tail,
         lambda: v4.rope_tail(torch.zeros(1, 3, 8), torch.arange(3.0), V4_LAYER.theta), ValueError, "positions"),
    Case("rope_tail: theta wider than x", v4.rope_tail,
         lambda: v4.rope_tail(torch.zeros(1, 3, 2), torch.arange(3), V4_LAYER.theta), ValueError, "theta"),
    Case("sink_softmax: one sink too few", v4.sink_softmax,
         lambda: v4.sink_softmax(torch.zeros(1, 2, 4, 3), torch.zeros(3)), ValueError, "sinks"),
    Case("pool_windows: gate of another shape", v4.pool_windows,
         lambda: v4.pool_windows(torch.zeros(1, 2, 4, 6), torch.zeros(1, 2, 4, 4), True), ValueError, "gate"),
    Case("pool_windows: previous without overlap", v4.pool_windows,
         lambda: v4.pool_windows(torch.zeros(1, 2, 4, 6), torch.zeros(1, 2, 4, 6), False, torch.zeros(1, 4, 6)),
         ValueError, "previous"),
    Case("GatedPoolingCompressor: rate is 0", v4.GatedPoolingCompressor,
         lambda: v4.GatedPoolingCompressor(8, 8, 0, True, torch.ones(2)), ValueError, "rate"),
    Case("GatedPoolingCompressor.forward: state is a dict", v4.GatedPoolingCompressor,
         lambda: V4_LAYER.compressor(X16, state={}), TypeError, "state"),
    Case("V4Cache: config is a dict", v4.V4Cache, lambda: v4.V4Cache(V4_FIELDS), TypeError, "config"),
    Case("CompressedIndexer: an HCA config", v4.CompressedIndexer,
         lambda: v4.CompressedIndexer(v4.V4AttentionConfig(**V4_FIELDS | {"layer_type": "hca"}), V4_LAYER.theta),
         ValueError, "layer_type"),
    Case("CompressedIndexer.scores: index keys of another width", v4.CompressedIndexer,
         lambda: V4_LAYER.indexer.scores(X16, torch.zeros(1, 3, 8), torch.arange(3), torch.zeros(1, 2, 5)),
         ValueError, "index_keys"),
    Case("DeepSeekV4Attention: config is an MLAConfig", v4.DeepSeekV4Attention,
         lambda: v4.DeepSeekV4Attention(MLA_CONFIG), TypeError, "config"),
    Case("DeepSeekV4Attention: x of another width", v4.DeepSeekV4Attention, lambda: V4_LAYER(X8), ValueError, "x"),
    Case("DeepSeekV4Attention: cache is a LayerCache", v4.DeepSeekV4Attention,
         lambda: V4_LAYER(X16, cache=kv_cache.LayerCache(seq_dim=1)), TypeError, "cache"),
    Case("DeepSeekV4Attention: cache of another layer", v4.DeepSeekV4Attention,
         lambda: V4_LAYER(X16, cache=v4.V4Cache(v4.V4AttentionConfig(**V4_FIELDS | {"window": 2}))), ValueError,
         "cache"),
    Case("DeepSeekV4Attention.use: unknown implementation", v4.DeepSeekV4Attention,
         lambda: V4_LAYER.use("dense"), ValueError, "implementation"),
    Case("DeepSeekV4Attention.use: top_k = 0", v4.DeepSeekV4Attention, lambda: V4_LAYER.use(top_k=0), ValueError,
         "top_k"),
    Case("DeepSeekV4Attention.output: o of another head width", v4.DeepSeekV4Attention,
         lambda: V4_LAYER.output(torch.zeros(1, 3, 2, 4), torch.arange(3)), ValueError, "o"),
    Case("DeepSeekV4Attention.queries: positions too few", v4.DeepSeekV4Attention,
         lambda: V4_LAYER.queries(X16, torch.arange(2)), ValueError, "positions"),
    Case("v4.from_transformers: a GQA layer", v4.from_transformers, lambda: v4.from_transformers(GQA_LAYER),
         ValueError, "hf_attention"),
    Case("index_scores: k of another width", dsa.index_scores,
         lambda: dsa.index_scores(torch.zeros(1, 2, 3, 4), torch.zeros(1, 2, 3), torch.zeros(1, 5, 6), 0.5),
         ValueError, "k"),
    Case("topk_indices: visible beyond the keys", dsa.topk_indices,
         lambda: dsa.topk_indices(torch.zeros(1, 2, 3), 2, visible=torch.tensor([1, 4])), ValueError, "visible"),
    # costs: DeepSeek-V4
    Case("V4Model: a compress ratio of 8", costs.V4Model,
         lambda: costs.V4Model(name="x", compress_ratios=(8,), d_model=8, n_heads=2, q_lora_rank=4, o_groups=1,
                               index_topk=2, source="s"), ValueError, "compress_ratios"),
    Case("v4_layer_cache_entries: unknown layer_type", costs.v4_layer_cache_entries,
         lambda: costs.v4_layer_cache_entries("mla", 10), ValueError, "layer_type"),
    Case("v4_cache_bytes: unknown model", costs.v4_cache_bytes, lambda: costs.v4_cache_bytes("deepseek-v4", 10),
         ValueError, "model"),
    Case("v4_cache_bytes: entry is an int", costs.v4_cache_bytes,
         lambda: costs.v4_cache_bytes("deepseek-v4-pro", 10, entry=584), TypeError, "entry"),
    Case("v32_cache_bytes: negative context", costs.v32_cache_bytes, lambda: costs.v32_cache_bytes(-1),
         ValueError, "context"),
    Case("v4_vs_v32_cache: unknown formats", costs.v4_vs_v32_cache,
         lambda: costs.v4_vs_v32_cache("deepseek-v4-pro", 10, "fp4"), ValueError, "formats"),
    Case("v4_decode_flops: negative context", costs.v4_decode_flops,
         lambda: costs.v4_decode_flops("deepseek-v4-pro", "csa", -2), ValueError, "context"),
    Case("page_bytes.block_size", cache_formats.page_bytes,
         lambda: cache_formats.page_bytes(cache_formats.DEEPSEEK_V32_FP8_MLA, 0), ValueError, "block_size"),
    Case("page_spans.layout", cache_formats.page_spans, lambda: cache_formats.page_spans("656 B"), TypeError, "layout"),
    Case("tokens_in_budget.n_layers", cache_formats.tokens_in_budget,
         lambda: cache_formats.tokens_in_budget((cache_formats.DEEPSEEK_V32_FP8_MLA,), 0, 2**30), ValueError,
         "n_layers"),
    # costs: pages
    Case("pages_for.tokens", costs.pages_for, lambda: costs.pages_for(-1, 16), ValueError, "tokens"),
    Case("page_slack.block_size", costs.page_slack, lambda: costs.page_slack(5, 0), ValueError, "block_size"),
    Case("waste_parts.used beyond final", costs.waste_parts, lambda: costs.waste_parts(9, 5, 16), ValueError, "used"),
    Case("shared_prefix_pages.suffixes", costs.shared_prefix_pages,
         lambda: costs.shared_prefix_pages(10, [], 16), ValueError, "suffixes"),
    # linear attention (chapter 18)
    Case("elu_feature_map: integer x", linear_attention.elu_feature_map,
         lambda: linear_attention.elu_feature_map(torch.tensor([1, 2])), ValueError, "x"),
    Case("linear_attention_parallel: k of another width", linear_attention.linear_attention_parallel,
         lambda: linear_attention.linear_attention_parallel(LA_Q, torch.randn(1, 2, 5, 3), LA_V), ValueError, "k"),
    Case("linear_attention_recurrent: state not a LinearState", linear_attention.linear_attention_recurrent,
         lambda: linear_attention.linear_attention_recurrent(LA_Q, LA_Q, LA_V, state=torch.zeros(1)), TypeError,
         "state"),
    Case("linear_attention_chunkwise.chunk_size", linear_attention.linear_attention_chunkwise,
         lambda: linear_attention.linear_attention_chunkwise(LA_Q, LA_Q, LA_V, chunk_size=0), ValueError,
         "chunk_size"),
    Case("delta_rule_recurrent: a positive log gate", linear_attention.delta_rule_recurrent,
         lambda: linear_attention.delta_rule_recurrent(LA_Q, LA_Q, LA_V, LA_BETA, torch.ones(1, 2, 5)), ValueError,
         "g"),
    Case("delta_rule_chunkwise: beta of another length", linear_attention.delta_rule_chunkwise,
         lambda: linear_attention.delta_rule_chunkwise(LA_Q, LA_Q, LA_V, torch.rand(1, 2, 4)), ValueError, "beta"),
    Case("delta_rule_chunkwise: state of another d_v", linear_attention.delta_rule_chunkwise,
         lambda: linear_attention.delta_rule_chunkwise(LA_Q, LA_Q, LA_V, LA_BETA, state=torch.zeros(1, 2, 4, 2)),
         ValueError, "state"),
    Case("delta_rule_weights: q of 3 dims", linear_attention.delta_rule_weights,
         lambda: linear_attention.delta_rule_weights(torch.randn(2, 5, 4), LA_Q, LA_BETA), ValueError, "q"),
    Case("LinearAttentionConfig.rule", linear_attention.LinearAttentionConfig,
         lambda: linear_attention.LinearAttentionConfig(8, 2, 4, rule="softmax"), ValueError, "rule"),
    Case("LinearAttentionConfig.conv_size", linear_attention.LinearAttentionConfig,
         lambda: linear_attention.LinearAttentionConfig(8, 2, 4, conv_size=-1), ValueError, "conv_size"),
    Case("LinearAttention.config", linear_attention.LinearAttention, lambda: linear_attention.LinearAttention({}),
         TypeError, "config"),
    Case("LinearAttention.forward: a LayerCache", linear_attention.LinearAttention,
         lambda: LA_LAYER(torch.randn(1, 3, 8), cache=kv_cache.LayerCache()), TypeError, "cache"),
    Case("LinearAttention.forward: x of another width", linear_attention.LinearAttention,
         lambda: LA_LAYER(torch.randn(1, 3, 5)), ValueError, "x"),
    Case("RecurrentState via LinearAttention: weights from a filled cache", linear_attention.RecurrentState,
         lambda: LA_LAYER(torch.randn(1, 1, 8), cache=_filled_state(), return_weights=True), ValueError,
         "return_weights"),
    Case("RecurrentState.crop: a state cannot forget tokens", linear_attention.RecurrentState,
         lambda: _filled_state().crop(1), ValueError, "seq_len"),
    # the tiny linear/full hybrid (chapter 18)
    Case("TinyLMConfig.full_every = 1", lm.TinyLMConfig, lambda: lm.TinyLMConfig(full_every=1), ValueError,
         "full_every"),
    Case("TinyLMConfig.full_every beyond n_layers", lm.TinyLMConfig, lambda: lm.TinyLMConfig(full_every=5),
         ValueError, "full_every"),
    Case("TinyLMConfig.full_every is a float", lm.TinyLMConfig, lambda: lm.TinyLMConfig(full_every=2.0), ValueError,
         "full_every"),
    Case("TinyLMConfig.full_every with a window", lm.TinyLMConfig, lambda: lm.TinyLMConfig(full_every=2, window=8),
         ValueError, "full_every"),
    Case("TinyLMConfig.full_every with DSA", lm.TinyLMConfig,
         lambda: lm.TinyLMConfig(full_every=2, attention="dsa"), ValueError, "attention"),
    Case("TinyLMConfig.is_linear: layer beyond n_layers", lm.TinyLMConfig,
         lambda: lm.tiny_config("gqa_hybrid").is_linear(4), ValueError, "layer"),
    Case("KVCache.bytes_per_token: only fixed-size states", kv_cache.KVCache, lambda: _states_only().bytes_per_token(),
         ValueError, "bytes_per_token"),
    Case("KVCache.crop: a hybrid's linear layer", kv_cache.KVCache, lambda: _hybrid_cache().crop(1), ValueError,
         "seq_len"),
    # the recall probe (chapter 18)
    Case("RecallTask.max_pairs above n_keys", recall.RecallTask, lambda: recall.RecallTask(n_keys=4, max_pairs=5),
         ValueError, "max_pairs"),
    Case("recall_batch.n_pairs above max_pairs", recall.recall_batch,
         lambda: recall.recall_batch(recall.RecallTask(max_pairs=4), 5, 2), ValueError, "n_pairs"),
    Case("RecallModelConfig.pattern", recall.RecallModelConfig, lambda: recall.RecallModelConfig(pattern="mamba"),
         ValueError, "pattern"),
    Case("RecallModel.task", recall.RecallModel, lambda: recall.RecallModel(recall.RecallModelConfig(), 64),
         TypeError, "task"),
    Case("ProbeSettings.pairs beyond the task", recall.ProbeSettings, lambda: recall.ProbeSettings(pairs=(2, 99)),
         ValueError, "pairs"),
    Case("recall_accuracy.model", recall.recall_accuracy,
         lambda: recall.recall_accuracy("model", recall.RecallTask(), 2), TypeError, "model"),
    Case("train_recall.settings", recall.train_recall, lambda: recall.train_recall({}, 0), TypeError, "settings"),
    Case("run_probe.patterns", recall.run_probe,
         lambda: recall.run_probe(recall.ProbeSettings(steps=1), patterns=("mamba",)), ValueError, "patterns"),
    Case("probe_cache_numbers.seq_len", recall.probe_cache_numbers,
         lambda: recall.probe_cache_numbers(recall.RecallModelConfig(), 0), ValueError, "seq_len"),
    Case("written_recall.rule", recall.written_recall, lambda: recall.written_recall("mamba", 4, 16), ValueError,
         "rule"),
    Case("load_probe.budget", recall.load_probe, lambda: recall.load_probe("medium"), ValueError, "budget"),
    Case("merge_probes: no records", recall.merge_probes, lambda: recall.merge_probes(), ValueError, "probes"),
    # chapter 18's costs
    Case("HybridModel.full_layers beyond n_layers", costs.HybridModel,
         lambda: dataclasses.replace(costs.QWEN3_NEXT, full_layers=(3, 48)), ValueError, "full_layers"),
    Case("linear_state_bytes.d_k", costs.linear_state_bytes, lambda: costs.linear_state_bytes(32, 0, 128), ValueError,
         "d_k"),
    Case("state_crossover_context.bytes_per_token", costs.state_crossover_context,
         lambda: costs.state_crossover_context(100, 0), ValueError, "bytes_per_token"),
    Case("hybrid_full_layers.linear_per_full", costs.hybrid_full_layers, lambda: costs.hybrid_full_layers(48, -1),
         ValueError, "linear_per_full"),
    Case("linear_decode_flops.d_v", costs.linear_decode_flops, lambda: costs.linear_decode_flops(2, 4, 0), ValueError,
         "d_v"),
    Case("hybrid_cache_bytes.model", costs.hybrid_cache_bytes, lambda: costs.hybrid_cache_bytes("llama", 10),
         ValueError, "model"),
    Case("hybrid_cache_bytes.context", costs.hybrid_cache_bytes,
         lambda: costs.hybrid_cache_bytes("qwen3-next-80b-a3b", -1), ValueError, "context"),
    # paged
    Case("BlockPool.num_blocks", paged.BlockPool, lambda: paged.BlockPool(0, 16), ValueError, "num_blocks"),
    Case("BlockPool.release of a free page", paged.BlockPool, lambda: paged.BlockPool(2, 4).release(1), ValueError,
         "block"),
    Case("PagedSequence.pool", paged.PagedSequence, lambda: paged.PagedSequence("pool"), TypeError, "pool"),
    Case("PagedSequence.locate beyond its pages", paged.PagedSequence,
         lambda: paged.BlockPool(2, 4).new_sequence().locate(4), ValueError, "position"),
    Case("PagedLayerCache.layer", paged.PagedLayerCache,
         lambda: paged.PagedLayerCache(paged.BlockPool(2, 4).new_sequence(), "0"), TypeError, "layer"),
    Case("PagedLayerCache.update: a list", paged.PagedLayerCache,
         lambda: paged.BlockPool(2, 4).new_sequence()[0].update(k=[1.0]), TypeError, "k"),
    Case("Request.prompt", paged.Request, lambda: paged.Request(0, 0, 5), ValueError, "prompt"),
    Case("RequestMix.output", paged.RequestMix, lambda: paged.RequestMix("x", (1, 4), (9, 3), 20), ValueError,
         "output"),
    Case("request_stream.rate", paged.request_stream, lambda: paged.request_stream("chat", 5, rate=0), ValueError,
         "rate"),
    Case("simulate.policy", paged.simulate, lambda: paged.simulate([paged.Request(0, 2, 2)], 64, "best"), ValueError,
         "policy"),
    Case("compare_policies.mix", paged.compare_policies, lambda: paged.compare_policies("poetry", 2**15), ValueError,
         "mix"),
    # flash (chapter 15) and its IO counts in costs
    Case("online_softmax_update: integer scores", flash.online_softmax_update,
         lambda: flash.online_softmax_update(torch.zeros(2), torch.zeros(2), torch.ones(2, 3, dtype=torch.long)),
         ValueError, "scores"),
    Case("online_softmax_update: m of the wrong shape", flash.online_softmax_update,
         lambda: flash.online_softmax_update(torch.zeros(3), torch.zeros(2), torch.zeros(2, 3)), ValueError, "m"),
    Case("online_softmax_trace: a 2-D row", flash.online_softmax_trace,
         lambda: flash.online_softmax_trace(torch.zeros(2, 3), 2), ValueError, "scores"),
    Case("online_softmax_trace: block_size = 0", flash.online_softmax_trace,
         lambda: flash.online_softmax_trace(torch.zeros(3), 0), ValueError, "block_size"),
    Case("tile_schedule: causal with n_q > n_k", flash.tile_schedule,
         lambda: flash.tile_schedule(5, 4, causal=True), ValueError, "n_q"),
    Case("tile_schedule: block_k is a float", flash.tile_schedule, lambda: flash.tile_schedule(4, 4, 2, 2.0),
         TypeError, "block_k"),
    Case("flash_attention: q with 3 dims", flash.flash_attention,
         lambda: flash.flash_attention(torch.zeros(2, 3, 4), KV4, KV4), ValueError, "q"),
    Case("flash_attention: n_kv_heads does not divide n_heads", flash.flash_attention,
         lambda: flash.flash_attention(torch.zeros(1, 3, 3, 4), torch.zeros(1, 2, 3, 4), torch.zeros(1, 2, 3, 4)),
         ValueError, "n_heads"),
    Case("flash_attention: k of another width", flash.flash_attention,
         lambda: flash.flash_attention(Q4, torch.zeros(1, 1, 3, 5), torch.zeros(1, 1, 3, 5)), ValueError, "head_dim"),
    Case("flash_attention: block_q = 0", flash.flash_attention,
         lambda: flash.flash_attention(Q4, KV4, KV4, block_q=0), ValueError, "block_q"),
    Case("flash_attention: causal is a str", flash.flash_attention,
         lambda: flash.flash_attention(Q4, KV4, KV4, causal="yes"), TypeError, "causal"),
    Case("flash_attention: negative k_start", flash.flash_attention,
         lambda: flash.flash_attention(Q4, KV4, KV4, k_start=-1), ValueError, "k_start"),
    Case("merge_partials: outputs is a tensor", flash.merge_partials,
         lambda: flash.merge_partials(torch.zeros(2, 3, 4), [torch.zeros(3)]), ValueError, "outputs"),
    Case("merge_partials: one lse too few", flash.merge_partials,
         lambda: flash.merge_partials([torch.zeros(3, 4)] * 2, [torch.zeros(3)]), ValueError, "lses"),
    Case("merge_partials: lse of the wrong shape", flash.merge_partials,
         lambda: flash.merge_partials([torch.zeros(3, 4)], [torch.zeros(4)]), ValueError, "lses"),
    Case("split_kv_attention: more splits than keys", flash.split_kv_attention,
         lambda: flash.split_kv_attention(Q4, KV4, KV4, 4), ValueError, "n_splits"),
    Case("split_kv_attention: n_splits is a float", flash.split_kv_attention,
         lambda: flash.split_kv_attention(Q4, KV4, KV4, 1.5), TypeError, "n_splits"),
    Case("flash.benchmark: a length of 0", flash.benchmark, lambda: flash.benchmark([0]), ValueError, "lengths"),
    Case("flash.benchmark: repeats = 0", flash.benchmark, lambda: flash.benchmark([8], repeats=0), ValueError,
         "repeats"),
    Case("load_benchmark: no such file", flash.load_benchmark, lambda: flash.load_benchmark("no/such.json"),
         ValueError, "path"),
    Case("load_benchmark: path is an int", flash.load_benchmark, lambda: flash.load_benchmark(3), TypeError, "path"),
    Case("flash.main: argv is a str", flash.main, lambda: flash.main("--bench"), ValueError, "argv"),
    Case("standard_attention_hbm_bytes: n_q = 0", costs.standard_attention_hbm_bytes,
         lambda: costs.standard_attention_hbm_bytes(0, 4, 2), ValueError, "n_q"),
    Case("standard_attention_hbm_bytes: unknown dtype", costs.standard_attention_hbm_bytes,
         lambda: costs.standard_attention_hbm_bytes(4, 4, 2, "float9"), ValueError, "dtype"),
    Case("flash_key_rows_loaded: causal with n_q > n_k", costs.flash_key_rows_loaded,
         lambda: costs.flash_key_rows_loaded(5, 4, 2, 2, causal=True), ValueError, "n_q"),
    Case("flash_attention_hbm_bytes: block_k = 0", costs.flash_attention_hbm_bytes,
         lambda: costs.flash_attention_hbm_bytes(4, 4, 2, 2, 0), ValueError, "block_k"),
    Case("flash_attention_hbm_bytes: batch is a float", costs.flash_attention_hbm_bytes,
         lambda: costs.flash_attention_hbm_bytes(4, 4, 2, 2, 2, batch=1.0), TypeError, "batch"),
    Case("flash_sram_bytes: v_head_dim = 0", costs.flash_sram_bytes,
         lambda: costs.flash_sram_bytes(2, 2, 4, v_head_dim=0), ValueError, "v_head_dim"),
    Case("score_bytes_not_written: negative n_heads", costs.score_bytes_not_written,
         lambda: costs.score_bytes_not_written(4, 4, n_heads=-1), ValueError, "n_heads"),
    # window (chapter 17)
    Case("layer_types.global_every", window.layer_types, lambda: window.layer_types(4, -1), ValueError,
         "global_every"),
    Case("LayerPattern.window", window.LayerPattern, lambda: window.LayerPattern("x", 4, 0, 2), ValueError, "window"),
    Case("window_mask.k_positions float", window.window_mask,
         lambda: window.window_mask(torch.arange(3), torch.zeros(3)), ValueError, "k_positions"),
    Case("window_mask.n_sinks without window", window.window_mask,
         lambda: window.window_mask(torch.arange(3), torch.arange(3), None, 2), ValueError, "n_sinks"),
    Case("sliding_window_mask.window", window.sliding_window_mask, lambda: window.sliding_window_mask(4, 0),
         ValueError, "window"),
    Case("softmax_with_sink.sink heads", window.softmax_with_sink,
         lambda: window.softmax_with_sink(torch.zeros(1, 2, 3, 3), torch.zeros(3)), ValueError, "sink"),
    Case("softmax_with_sink.dim", window.softmax_with_sink,
         lambda: window.softmax_with_sink(torch.zeros(1, 2, 3, 3), torch.zeros(2), dim=1), ValueError, "dim"),
    Case("window_attention.k_positions length", window.window_attention,
         lambda: window.window_attention(torch.zeros(1, 2, 3, 4), torch.zeros(1, 1, 3, 4), torch.zeros(1, 1, 3, 4),
                                         torch.arange(3), torch.arange(2)), ValueError, "k_positions"),
    Case("window_attention.sink", window.window_attention,
         lambda: window.window_attention(torch.zeros(1, 2, 3, 4), torch.zeros(1, 1, 3, 4), torch.zeros(1, 1, 3, 4),
                                         torch.arange(3), torch.arange(3), 2, 0, torch.zeros(3)), ValueError, "sink"),
    Case("ring_slot.window", window.ring_slot, lambda: window.ring_slot(5, 0), ValueError, "window"),
    Case("RollingCache.n_sinks", window.RollingCache, lambda: window.RollingCache(4, -1), ValueError, "n_sinks"),
    Case("RollingCache.update names", window.RollingCache, lambda: _rolling_cache().update(q=torch.zeros(1, 1, 1, 2)),
         ValueError, "cache"),
    Case("WindowConfig.n_sinks without window", window.WindowConfig, lambda: window.WindowConfig(None, 2),
         ValueError, "n_sinks"),
    Case("WindowedAttention.window type", window.WindowedAttention,
         lambda: window.WindowedAttention(GQA_CONFIG, {"window": 3}), TypeError, "window"),
    Case("WindowedAttention.cache window", window.WindowedAttention,
         lambda: window.WindowedAttention(GQA_CONFIG, window.WindowConfig(3))(torch.zeros(1, 2, 8),
                                                                             cache=window.RollingCache(4)),
         ValueError, "window"),
    Case("SharedKVAttention.source", window.SharedKVAttention,
         lambda: window.SharedKVAttention(GQA_CONFIG, GQA_LAYER), TypeError, "source"),
    Case("SharedKVAttention.x before source", window.SharedKVAttention,
         lambda: window.SharedKVAttention(GQA_CONFIG, window.WindowedAttention(GQA_CONFIG))(torch.zeros(1, 2, 8)),
         ValueError, "source"),
    Case("from_gpt_oss.attention", window.from_gpt_oss, lambda: window.from_gpt_oss(GQA_LAYER), ValueError,
         "attention"),
    Case("tiny_config.scheme", lm.tiny_config, lambda: lm.tiny_config("gqa_flash"), ValueError, "scheme"),
    Case("TinyLMConfig.n_sinks without window", lm.TinyLMConfig, lambda: lm.TinyLMConfig(n_sinks=2), ValueError,
         "n_sinks"),
    Case("TinyLMConfig.kv_share", lm.TinyLMConfig, lambda: lm.TinyLMConfig(kv_share=0), ValueError, "kv_share"),
    Case("window_cache_tokens.window", costs.window_cache_tokens, lambda: costs.window_cache_tokens(10, 0),
         ValueError, "window"),
    Case("layer_cache_tokens.kv_sources", costs.layer_cache_tokens,
         lambda: costs.layer_cache_tokens(costs.AttentionShape(d_model=8, n_heads=2, head_dim=4, n_layers=2), 5,
                                          kv_sources=[1, 1]), ValueError, "kv_sources"),
    Case("windowed_cache_bytes.windows", costs.windowed_cache_bytes,
         lambda: costs.windowed_cache_bytes("gqa", costs.AttentionShape(d_model=8, n_heads=2, head_dim=4), 5,
                                            windows=[4, 4]), ValueError, "windows"),
    Case("window_decode_attention_flops.scheme", costs.window_decode_attention_flops,
         lambda: costs.window_decode_attention_flops("dsa", costs.AttentionShape(
             d_model=8, n_heads=2, head_dim=4, kv_lora_rank=4, qk_rope_head_dim=2, index_n_heads=1,
             index_head_dim=2, index_topk=2), 5, 4), ValueError, "scheme"),
    # evidence
    Case("CapabilityRow.capability", evidence.CapabilityRow,
         lambda: evidence.CapabilityRow("mha", "MHA", "2 n_h d_h l", "Best", evidence.V2_TABLE1[0].source),
         ValueError, "capability"),
    Case("Arm.fact: unknown fact", evidence.Arm, lambda: evidence.V2_MOE_SMALL.arms[0].fact("FLOPs"), ValueError,
         "name"),
    Case("ScoreTable: uncited", evidence.ScoreTable,
         lambda: dataclasses.replace(evidence.V2_DENSE_7B, source="a blog"), ValueError, "source"),
    Case("ScoreTable.column: unknown arm", evidence.ScoreTable, lambda: evidence.V32_TABLE1.column("MHA-XXL"),
         ValueError, "which"),
    Case("GQARow: no table named", evidence.GQARow,
         lambda: evidence.GQARow("MHA-XXL", "mha", "XXL", 1.51, 47.2, 0.0, evidence.GQA_PAPER), ValueError, "source"),
    Case("CostCurve.phase", evidence.CostCurve,
         lambda: dataclasses.replace(evidence.V32_COST_CURVES[0], phase="train"), ValueError, "phase"),
    Case("TrainingStage: uncited", evidence.TrainingStage,
         lambda: dataclasses.replace(evidence.V32_TRAINING[0], source=""), ValueError, "source"),
    Case("gqa_row: unknown label", evidence.gqa_row, lambda: evidence.gqa_row("GQA-4-XXL"), ValueError, "label"),
    Case("cost_curve: unknown model", evidence.cost_curve, lambda: evidence.cost_curve("decode", "V3"), ValueError,
         "model"),
    Case("parse_count: no unit", evidence.parse_count, lambda: evidence.parse_count("110.6"), ValueError, "printed"),
    Case("within: negative tolerance", evidence.within,
         lambda: evidence.within(evidence.V32_TABLE1, "dsa", "mla", -0.5), ValueError, "tolerance"),
    # block_sparse (chapter 19)
    Case("n_blocks.block_size", block_sparse.n_blocks, lambda: block_sparse.n_blocks(8, 0), ValueError, "block_size"),
    Case("causal_block_mask.n_queries", block_sparse.causal_block_mask,
         lambda: block_sparse.causal_block_mask(5, 4, 2), ValueError, "n_queries"),
    Case("block_token_mask.block_indices", block_sparse.block_token_mask,
         lambda: block_sparse.block_token_mask(torch.zeros(3, dtype=torch.long), 8, 4), ValueError, "block_indices"),
    Case("select_blocks.block_scores", block_sparse.select_blocks,
         lambda: block_sparse.select_blocks(torch.zeros(1, 4, 3), 2, 4, 8), ValueError, "block_scores"),
    Case("pool_keys.k", block_sparse.pool_keys, lambda: block_sparse.pool_keys(torch.zeros(4, 8), 2), ValueError, "k"),
    Case("moba_scores.q", block_sparse.moba_scores,
         lambda: block_sparse.moba_scores(torch.zeros(1, 3, 4, 8), torch.zeros(1, 2, 4, 8), 2), ValueError, "q"),
    Case("quest_bounds.block_size", block_sparse.quest_bounds,
         lambda: block_sparse.quest_bounds(torch.zeros(1, 1, 4, 8), -1), ValueError, "block_size"),
    Case("quest_upper_bound.m", block_sparse.quest_upper_bound,
         lambda: block_sparse.quest_upper_bound(torch.zeros(1, 1, 4, 8), torch.zeros(1, 1, 2, 4),
                                                torch.zeros(1, 1, 2, 8)), ValueError, "m"),
    Case("quest_scores.k", block_sparse.quest_scores,
         lambda: block_sparse.quest_scores(torch.zeros(1, 1, 6, 8), torch.zeros(1, 1, 4, 8), 2), ValueError, "k"),
    Case("nsa_scores.n_local", block_sparse.nsa_scores,
         lambda: block_sparse.nsa_scores(torch.zeros(1, 1, 4, 8), torch.zeros(1, 1, 4, 8), 2, n_local=-1),
         ValueError, "n_local"),
    Case("dense_scores.k", block_sparse.dense_scores,
         lambda: block_sparse.dense_scores(torch.zeros(1, 1, 4, 8), torch.zeros(1, 1, 4, 6)), ValueError, "k"),
    Case("token_topk_mask.top_k", block_sparse.token_topk_mask,
         lambda: block_sparse.token_topk_mask(torch.zeros(1, 4, 4), 0), ValueError, "top_k"),
    Case("h2o_mask.recent", block_sparse.h2o_mask,
         lambda: block_sparse.h2o_mask(torch.zeros(1, 1, 4, 4), 2, 3), ValueError, "recent"),
    Case("snapkv_mask.window", block_sparse.snapkv_mask,
         lambda: block_sparse.snapkv_mask(torch.zeros(1, 4, 4), 4, 4), ValueError, "window"),
    Case("select.method", block_sparse.select,
         lambda: block_sparse.select("random", torch.zeros(1, 1, 4, 8), torch.zeros(1, 1, 4, 8), 2), ValueError,
         "method"),
    Case("sparse_attention.mask", block_sparse.sparse_attention,
         lambda: block_sparse.sparse_attention(torch.zeros(1, 1, 4, 8), torch.zeros(1, 1, 4, 8),
                                               torch.zeros(1, 1, 4, 8), torch.ones(1, 1, 4, 4)), ValueError, "mask"),
    Case("attention_recall.mask", block_sparse.attention_recall,
         lambda: block_sparse.attention_recall(torch.zeros(2, 4), torch.ones(2, 3, dtype=torch.bool)), ValueError,
         "mask"),
    Case("memory_segments.mask", block_sparse.memory_segments,
         lambda: block_sparse.memory_segments(torch.ones(4)), ValueError, "mask"),
    Case("group_reads.group_size", block_sparse.group_reads,
         lambda: block_sparse.group_reads(torch.ones(1, 3, 2, 2, dtype=torch.bool), 2), ValueError, "group_size"),
    Case("nsa_attention.gates", block_sparse.nsa_attention,
         lambda: block_sparse.nsa_attention(torch.zeros(1, 1, 4, 8), torch.zeros(1, 1, 4, 8), torch.zeros(1, 1, 4, 8),
                                            torch.zeros(1, 1, 4, 2), 2, 2, 2), ValueError, "gates"),
    Case("measure_selections.budgets", block_sparse.measure_selections,
         lambda: block_sparse.measure_selections(torch.zeros(1, 1, 4, 8), torch.zeros(1, 1, 4, 8),
                                                 torch.zeros(1, 1, 4, 8), budgets=(4,)), ValueError, "budgets"),
    Case("costs.selection_read.block_size", costs.selection_read, lambda: costs.selection_read(64, 0, 656), ValueError,
         "block_size"),
    Case("costs.selection_score_macs.scorer", costs.selection_score_macs,
         lambda: costs.selection_score_macs(1024, 64, 128, 8, "blocks"), ValueError, "scorer"),
    # figures
    Case("scheme_style.key", figures.scheme_style, lambda: figures.scheme_style("nsa"), ValueError, "key"),
    Case("new_figure.height", figures.new_figure, lambda: figures.new_figure("t", height=0), ValueError, "height"),
    Case("figure_json.fig", figures.figure_json, lambda: figures.figure_json({"data": []}), ValueError, "fig"),
    Case("figure_html.figure_id", figures.figure_html, lambda: figures.figure_html(FIGURE, "Fig 1"), ValueError,
         "figure_id"),
    Case("mimebundle.figure_id", figures.mimebundle, lambda: figures.mimebundle(FIGURE, "1st"), ValueError,
         "figure_id"),
    Case("show.figure_id", figures.show, lambda: figures.show(FIGURE, "a b"), ValueError, "figure_id"),
    Case("trace_data.fig", figures.trace_data, lambda: figures.trace_data([]), ValueError, "fig"),
    Case("figure_text.fig", figures.figure_text, lambda: figures.figure_text("title"), ValueError, "fig"),
    Case("Segment.value", figures.Segment, lambda: figures.Segment("cache", -1, "#000000"), ValueError, "value"),
    Case("Bar.segments", figures.Bar, lambda: figures.Bar("MHA", ()), ValueError, "segments"),
    Case("hbar_figure.bars", figures.hbar_figure, lambda: figures.hbar_figure([], "t"), ValueError, "bars"),
    Case("LiveFigure.figure", figures.LiveFigure, lambda: figures.LiveFigure(None), ValueError, "figure"),
    Case("heatmap_figure.keys", figures.heatmap_figure,
         lambda: figures.heatmap_figure(torch.ones(2, 3), ["a", "b"]), ValueError, "keys"),
    Case("heatmap_figure.weights", figures.heatmap_figure, lambda: figures.heatmap_figure([1.0, 2.0], ["a"]),
         ValueError, "weights"),
    Case("choice_figure.options", figures.choice_figure, lambda: figures.choice_figure({}), ValueError, "options"),
]

# Public names of the core modules that take no input a check could refuse, with the reason. Everything else
# public in those modules needs at least one case above.
NO_CHECKABLE_INPUT: dict[Any, str] = {
    # No arguments at all.
    devices.available_devices: "no arguments",
    devices.default_device: "no arguments",
    # Frozen records of what a forward call returned or decided; they store what the layer hands them and
    # compute nothing.
    dsa.IndexSelection: "a plain record, filled by DeepSeekSparseAttention.forward",
    evidence.Benchmark: "a plain record of a paper's benchmark name, metric and shots; a ScoreTable holds it",
    attention.AttentionOutput: "a plain record, filled by every attention layer's forward",
    flash.OnlineSoftmaxStep: "a plain record, filled by online_softmax_trace",
    # No arguments at all, either.
    tokenization.course_metadata: "no arguments",
    tokenization.train_course_tokenizer: "no arguments",
    tokenization.load_tokenizer: "no arguments",
    tokenization.shipped_metadata: "no arguments",
    # Pure-Python BPE primitives whose whole source chapter 1 shows verbatim (show_source), so an added check
    # would change a stored notebook output; they never reach torch, and everything public that calls them
    # (train_merges, BPETokenizer, ...) checks its input first.
    tokenization.get_pair_counts: "source shown verbatim in notebook 01; pure Python, no torch",
    tokenization.merge: "source shown verbatim in notebook 01; pure Python, no torch",
    # An empty running state, filled by GatedPoolingCompressor.forward (which checks its type).
    v4.CompressorState: "no arguments; a record the compressor fills",
    # Chapter 16: an exception type and plain records of what was measured or where bytes sit.
    paged.OutOfBlocks: "an exception type, raised when a pool has no free page",
    paged.SimResult: "a plain record, filled by simulate",
    # Chapter 19: a plain record of what a selection held and read.
    block_sparse.SelectionMeasure: "a plain record, filled by measure_selections",
    cache_formats.PageSpan: "a plain record, filled by page_spans",
    # Chapter 18: records filled by the functions that check their input, and the shipped results.
    linear_attention.LinearState: "a plain record of a state, checked by the functions it is passed to",
    recall.RecallBatch: "a plain record, filled by recall_batch",
}

CORE_MODULES = (attention, kv_cache, gqa, mla, dsa, rope, quant, sizing, lowrank, lm, tokenization, train, devices,
                costs, schemes, cache_formats, v4, paged, flash, window, evidence, block_sparse, figures,
                linear_attention, recall)


def public_api(module) -> list:
    """The public callables (functions and classes) ``module`` defines: its ``__all__`` if it has one, else
    every name not starting with ``_`` whose object was defined in that module (not imported into it)."""
    names = getattr(module, "__all__", None)
    if names is None:
        names = [name for name in vars(module) if not name.startswith("_")]
    objects = [getattr(module, name) for name in names]
    return [obj for obj in objects if (inspect.isfunction(obj) or inspect.isclass(obj))
            and obj.__module__ == module.__name__]


def _entered(target, calls: set[tuple[str, str]]) -> bool:
    """Whether the traced ``calls`` (module, qualified name) ran ``target``'s own code: the function itself, or
    any method of the class."""
    if inspect.isclass(target):
        return any(module == target.__module__ and name.startswith(target.__qualname__ + ".")
                   for module, name in calls)
    return (target.__module__, target.__qualname__) in calls


@pytest.mark.parametrize("case", [pytest.param(case, id=case.id) for case in CASES])
def test_bad_input_is_refused_by_the_library(case: Case):
    calls: set[tuple[str, str]] = set()

    def trace(frame, event, _arg):
        if event == "call":
            calls.add((frame.f_globals.get("__name__", ""), frame.f_code.co_qualname))

    sys.setprofile(trace)
    try:
        with pytest.raises(case.error) as excinfo:
            case.call()
    finally:
        sys.setprofile(None)
    message = str(excinfo.value)
    named = re.search(rf"(?<![\w.]){re.escape(case.arg)}(?![\w])", message)  # the name as a word, not "h" in "shape"
    assert named, f"the message does not name {case.arg!r}: {message!r}"
    assert isinstance(excinfo.value, ValueError), "every refusal is a ValueError (wrong types: also a TypeError)"
    tb = excinfo.tb
    while tb.tb_next is not None:
        tb = tb.tb_next
    origin = Path(tb.tb_frame.f_code.co_filename).resolve()
    assert origin.is_relative_to(LIBRARY), f"raised in {origin}, not by attnlab's own checks: {message!r}"
    assert _entered(case.target, calls), f"the call never ran {case.target.__qualname__}"


def test_table_is_well_formed():
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids)), "case ids must be unique"
    assert len(CASES) >= 80
    for case in CASES:
        assert callable(case.call) and issubclass(case.error, Exception) and case.arg, case.id


@pytest.mark.parametrize("module", CORE_MODULES, ids=lambda module: module.__name__.split(".")[-1])
def test_public_api_is_covered(module):
    covered = {case.target for case in CASES} | set(NO_CHECKABLE_INPUT)
    missing = [obj.__qualname__ for obj in public_api(module) if obj not in covered]
    assert not missing, f"{module.__name__}: public names without a bad-input case: {missing}"


def test_allow_list_names_only_public_api():
    public = {obj for module in CORE_MODULES for obj in public_api(module)}
    stale = [obj.__qualname__ for obj in NO_CHECKABLE_INPUT if obj not in public]
    assert not stale, f"NO_CHECKABLE_INPUT lists names that are no longer public API: {stale}"
    overlap = [obj.__qualname__ for obj in NO_CHECKABLE_INPUT if obj in {case.target for case in CASES}]
    assert not overlap, f"allow-listed yet covered by a case, drop them from NO_CHECKABLE_INPUT: {overlap}"


def test_nan_fails_every_comparison():  # why check_real exists: a plain `value <= 0` lets NaN through
    assert not NAN <= 0 and not NAN > 0 and math.isnan(NAN)
