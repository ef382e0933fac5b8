"""attnlab.costs: every count against values worked by hand from the papers' equations and DeepSeek's configs,
against torch's own FLOP counter on the library's layers, and against the modules that use it."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from attnlab import bench, costs, dsa, sizing
from attnlab.costs import AttentionShape
from attnlab.schemes import BENCH_SCHEMES, SCHEMES, TABLE1_SCHEMES, get_scheme

MODELS = sizing.MODELS
V3 = MODELS["deepseek-v3"].attention_shape()  # 61 layers, 128 heads, d_h 128, d_c 512, d_h^R 64, d'_c 1536
V32 = MODELS["deepseek-v3.2"].attention_shape()  # V3 + an indexer of 64 heads x 128, top-k 2048


def test_the_shape_of_deepseek_v3():
    assert V3 == AttentionShape(d_model=7168, n_layers=61, n_heads=128, n_kv_heads=128, head_dim=128,
                                v_head_dim=128, kv_lora_rank=512, qk_rope_head_dim=64, q_lora_rank=1536)
    assert V3.q_input_dim == 1536 and AttentionShape(d_model=8, n_heads=2, head_dim=4).q_input_dim == 8
    assert costs.as_shape(MODELS["deepseek-v3"]) == V3 and costs.as_shape(V3) is V3


def test_cache_per_token_of_deepseek_v3_by_hand():
    """DeepSeek-V2 paper, Table 1, with V3's config (bf16, 2 bytes a number, 61 layers)."""
    assert costs.cache_widths("mla", V3) == {"c_kv": 512, "k_rope": 64}
    assert costs.cache_elements_per_token("mla", V3, per_layer=True) == 512 + 64 == 576
    assert costs.cache_elements_per_token("mha", V3, per_layer=True) == 2 * 128 * 128 == 32_768
    assert costs.cache_bytes_per_token("mla", V3) == 576 * 61 * 2 == 70_272  # "70 kB per token"
    assert costs.cache_bytes_per_token("mha", V3) == 32_768 * 61 * 2 == 3_997_696  # "4 MB per token"
    assert costs.cache_bytes_per_token("mqa", V3) == 2 * 128 * 61 * 2 == 31_232  # "31 kB per token"
    assert costs.cache_bytes_per_token("gqa", dataclasses.replace(V3, n_kv_heads=16)) == 2 * 16 * 128 * 61 * 2
    assert costs.cache_bytes_per_token("mla", V3, "float8") == 35_136
    assert costs.cache_bytes_per_token("mla", V3, torch.float32, per_layer=True) == 576 * 4
    assert costs.cache_bytes("mla", V3, 131_072, batch=2) == 2 * 131_072 * 70_272
    # DSA keeps MLA's cache and adds one 128-wide index key per token and layer
    assert costs.cache_widths("dsa", V32) == {"c_kv": 512, "k_rope": 64, "index_key": 128}
    assert costs.indexer_elements_per_token(V32) == 128 * 61 and costs.indexer_elements_per_token(V3) == 0
    assert costs.indexer_cache_bytes_per_token(V32, per_layer=True) == 128 + 4  # FP8 values + one fp32 scale
    assert costs.expanded_kv_elements_per_token(V3) == 128 * (128 + 64 + 128) == 40_960


def test_work_per_cached_token_of_deepseek_v3_by_hand():
    assert costs.macs_per_cached_token("mha", V3) == 2 * 128 * 128 == 32_768
    assert costs.macs_per_cached_token("mqa", V3) == costs.macs_per_cached_token("mha", V3)  # sharing saves bytes
    assert costs.macs_per_cached_token("mla", V3) == 128 * (2 * 512 + 64) == 139_264  # absorbed: MQA-like
    assert costs.macs_per_cached_token("mla_absorbed", V3) == 139_264
    assert costs.macs_per_cached_token_parts("mla_naive", V3) == {
        "re-expand K, V": 128 * (128 + 128) * 512, "scores": 128 * (128 + 64), "weighted sum": 128 * 128}
    assert costs.macs_per_cached_token("mla", V3, per_layer=False) == 61 * 139_264
    assert costs.mla_absorption_fold_macs(V3) == 128 * 512 * 256
    # FLOPs per byte of bf16 cache: MHA 1, GQA-16 8, MQA 128, MLA 2 x 139,264 / 1,152
    assert costs.attention_intensity("mha", V3) == 1.0
    assert costs.attention_intensity("gqa", dataclasses.replace(V3, n_kv_heads=16)) == 8.0
    assert costs.attention_intensity("mqa", V3) == 128.0
    assert math.isclose(costs.attention_intensity("mla", V3), 2 * 139_264 / 1152)


def test_indexer_of_deepseek_v32_by_hand():
    """DeepSeek-V3.2 tech report: C_idx = 2 H^I d^I + 2 H^I, F_proj = 2 (d'_c H^I d^I + d d^I + d H^I)."""
    assert 2 * costs.indexer_macs_per_cached_token(V32) == 2 * 64 * 128 + 2 * 64 == 16_512
    assert 2 * costs.indexer_projection_macs(V32) == 2 * (1536 * 64 * 128 + 7168 * 128 + 7168 * 64) == 27_918_336
    t = 4096
    assert costs.decode_attention_flops("dsa", V32, t - 1) == 16_512 * t + 278_528 * 2048
    assert costs.dsa_layer_cost(V32, t)["decode_flops_dsa"] == 27_918_336 + 16_512 * t + 278_528 * 2048
    assert costs.dsa_crossover_context(V32) == (278_528 * 2048 + 27_918_336) // (278_528 - 16_512) + 1 == 2284
    assert costs.dsa_crossover_context(V32, metric="decode_bytes") == 1152 * 2048 // (1152 - 132) + 1
    assert costs.dsa_crossover_context(MODELS["deepseek-v3.2"]) == 2284  # a ModelSpec serves as the shape


def test_decode_step_of_the_benchmark_layer_by_hand():
    s = bench.DEFAULT_SHAPE  # d 1024, 16 heads of 64, GQA 4, d_c 256, d_h^R 32, indexer 4 x 64, k 256
    assert costs.weight_elements("mha", s) == 4 * 1024 * 1024
    assert costs.weight_elements("mqa", s) == 2 * 1024 * 1024 + 2 * 1024 * 64
    t = 8192 + 1
    assert costs.decode_flops("mha", s, 8192) == 2 * 4 * 1024 * 1024 + 4 * 16 * 64 * t
    assert costs.decode_bytes_read("mqa", s, 8192, "float32") == 4 * (costs.weight_elements("mqa", s) + 2 * 64 * t)
    assert costs.arithmetic_intensity("mha", s, 8192, "bfloat16") == pytest.approx(
        costs.decode_flops("mha", s, 8192) / (2 * (4 * 1024 * 1024 + 2 * 16 * 64 * t)))
    # the long-context limit of the step's intensity is the attention core's
    assert costs.arithmetic_intensity("mqa", s, 10**9, "bfloat16") == pytest.approx(
        costs.attention_intensity("mqa", s), rel=1e-3)


def test_prefill_and_the_selected_pairs():
    assert costs.selected_pairs(8192, 2048) == 2048 * 2049 // 2 + (8192 - 2048) * 2048
    assert costs.selected_pairs(100, 2048) == 100 * 101 // 2
    assert costs.prefill_flops("mha", V3, 10) == 2 * 32_768 * 55
    assert costs.prefill_flops("mla_naive", V3, 10) == 2 * 128 * (128 + 64 + 128) * 55  # expansion: a projection
    assert costs.prefill_flops("mla_absorbed", V3, 10) == costs.prefill_flops("mla", V3, 10) == 2 * 139_264 * 55
    for n in (1, 1000, 4096):
        c = costs.dsa_layer_cost(V32, n)
        assert costs.prefill_flops("dsa", V32, n) == c["prefill_flops_sparse_path"]
        assert costs.prefill_flops("dsa", V32, n) == costs.dsa_layer_cost(V32, n, prefill_mode="sparse")[
            "prefill_flops_dsa"]
        assert costs.prefill_flops("mla_naive", V32, n) == c["prefill_flops_dense"]


def test_short_prefills_run_the_masked_mha_mode():
    """DeepSeek-V3.2-Exp prefills short prompts in MLA's MHA mode with the top-k as a mask (report §3,
    Inference Costs; inference/model.py's "MHA prefill" branch): the DSA layer's prefill costs the cheaper of
    the two modes, min(sparse path, dense + the indexer where it chooses)."""
    c_pre, c_idx = 2 * 128 * (128 + 64 + 128), 2 * 64 * 128 + 2 * 64
    f_proj, key_proj = 2 * (1536 * 64 * 128 + 7168 * 128 + 7168 * 64), 2 * 7168 * 128
    short = costs.dsa_layer_cost(V32, 1024)  # L <= k: every token is selected, only the index keys are made
    assert short["prefill_masked_mha"] == 1
    assert short["prefill_flops_masked_mha"] == c_pre * 1024 * 1025 // 2 + key_proj * 1024 == short["prefill_flops_dsa"]
    assert short["prefill_flops_dsa"] < short["prefill_flops_sparse_path"] / 4  # 4.3x before the switch
    mid = costs.dsa_layer_cost(V32, 4096)  # L > k: the mask needs the indexer's top-k
    pairs = 4096 * 4097 // 2
    assert mid["prefill_flops_masked_mha"] == c_pre * pairs + 4096 * f_proj + c_idx * pairs == mid["prefill_flops_dsa"]
    long = costs.dsa_layer_cost(V32, 131_072)
    assert long["prefill_masked_mha"] == 0 and long["prefill_flops_dsa"] == long["prefill_flops_sparse_path"]
    for n in (1, 100, 2048, 2049, 8192, 20_000, 131_072):
        c = costs.dsa_layer_cost(V32, n)
        assert c["prefill_flops_dsa"] == min(c["prefill_flops_sparse_path"], c["prefill_flops_masked_mha"])
        assert c["prefill_flops_masked_mha"] >= c["prefill_flops_dense"]  # the switch never beats dense MLA
        for mode, key in (("sparse", "prefill_flops_sparse_path"), ("masked_mha", "prefill_flops_masked_mha")):
            assert costs.dsa_layer_cost(V32, n, prefill_mode=mode)["prefill_flops_dsa"] == c[key]
    assert costs.dsa_layer_cost(V32, 4096, per_layer=False)["prefill_masked_mha"] == 1  # a flag, not scaled by l
    with pytest.raises(ValueError, match="prefill_mode"):
        costs.dsa_layer_cost(V32, 10, prefill_mode="dense")


def test_prefill_switch_context():
    switch = costs.dsa_prefill_switch_context(V32)
    k, c_attn, c_pre = 2048, 278_528, 81_920
    assert switch == 12_813
    assert abs(switch - k * (c_attn + math.sqrt(c_attn * (c_attn - c_pre))) / c_pre) < 1  # the quadratic's root
    before, at = (costs.dsa_layer_cost(V32, n) for n in (switch - 1, switch))
    assert before["prefill_masked_mha"] == 1 and at["prefill_masked_mha"] == 0
    # the DSA layer beats dense MLA only where its sparse path runs, so the prefill crossover comes after it
    assert costs.dsa_crossover_context(V32, metric="prefill_flops") > switch
    # absorbed dense prefill: C_attn per pair both ways, so the sparse path wins as soon as top-k drops a token
    assert costs.dsa_prefill_switch_context(V32, prefill_dense_mode="absorbed") == k + 1
    with pytest.raises(ValueError, match="prefill_mode"):
        costs.dsa_prefill_switch_context(V32, prefill_mode="sparse")


def test_mla_decode_step_costs_from_the_per_token_counts():
    t = 4096
    step = costs.mla_decode_step_costs(V3, t)
    naive = costs.macs_per_cached_token_parts("mla_naive", V3)
    assert step["naive"]["parts"] == {k: v * t for k, v in naive.items()}
    assert step["expanded"]["macs"] == t * (naive["scores"] + naive["weighted sum"])
    assert step["absorbed"]["macs"] == costs.mla_absorption_fold_macs(V3) + t * 139_264
    assert step["absorbed"]["cache_bytes"] == t * 1152 and step["expanded"]["cache_bytes"] == t * 40_960 * 2
    assert step["naive"]["extra_bytes"] == t * 128 * 256 * 2
    assert all(c["flops"] == 2 * c["macs"] for c in step.values())


@pytest.mark.parametrize("scheme", BENCH_SCHEMES)
def test_decode_flops_equal_torchs_flop_counter(scheme):
    """One decode step of the real layer (QUICK_SHAPE, 40 cached tokens): torch counts the matmuls, the same
    multiply-adds the formula counts (norms, RoPE, softmax and top-k are not matmuls)."""
    shape, context = bench.QUICK_SHAPE, 40
    record = get_scheme(scheme)
    layer = record.build_layer(shape).double().eval()
    if record.mode is not None and record.base is not None:
        layer.use(record.mode)
    cache = bench.filled_cache(scheme, shape, context, torch.device("cpu"), torch.float64)
    x = torch.randn(1, 1, shape.d_model, dtype=torch.float64)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        layer(x, cache=cache)
    counted = counter.get_total_flops()
    if record.indexer and layer.indexer_config.hadamard:
        # The library rotates the new token's H^I index queries and its index key with a (d^I x d^I) Hadamard
        # matmul; the cost model, like DeepSeek's kernel (a fast transform, O(d log d)), leaves it out.
        counted -= 2 * (shape.index_n_heads + 1) * shape.index_head_dim**2
    assert counted == costs.decode_flops(scheme, shape, context)


@pytest.mark.parametrize("scheme", BENCH_SCHEMES)
@pytest.mark.parametrize("q_lora_rank", [0, 24])
def test_weight_elements_equal_the_layers_parameters(scheme, q_lora_rank):
    shape = dataclasses.replace(bench.QUICK_SHAPE, q_lora_rank=q_lora_rank)
    if get_scheme(scheme).dense and q_lora_rank:
        return  # a dense layer has no query latent
    layer = get_scheme(scheme).build_layer(shape)
    assert sum(p.numel() for p in layer.parameters()) == costs.weight_elements(scheme, shape)


@pytest.mark.parametrize("key", sorted(MODELS))
def test_sizing_applies_the_same_counts_to_every_model(key):
    spec = MODELS[key]
    for scheme in TABLE1_SCHEMES:
        shape = spec.attention_shape()
        # every layer that keeps a cache of its own, on its own shape (Gemma 4's full layers are wider)
        # (as published, a model with a lightning indexer caches DSA's parts: MLA's and the index key;
        # a hybrid's linear layers keep a fixed state instead, no tokens)
        key = "dsa" if scheme == spec.attention and spec.index_head_dim else scheme
        widths = [costs.cache_elements_per_token(key, spec.layer_shape(i), per_layer=True)
                  for i, source in enumerate(spec.kv_sources) if source == i and spec.layer_types[i] != "linear"]
        assert sizing.cache_bytes_per_token(spec, "bfloat16", scheme) == 2 * sum(widths)
        if spec.proportional or spec.v4 is not None:  # a what-if scheme on V4: every layer full
            assert sizing.cache_bytes_per_token(spec, "bfloat16", scheme) == costs.cache_bytes_per_token(key, shape)
        if len(set(widths)) == 1:
            assert sizing.kv_elements_per_token(spec, scheme, per_layer=True) == costs.cache_elements_per_token(
                scheme, shape, per_layer=True)
        assert sizing.attention_macs_per_cached_token(spec, scheme) == costs.macs_per_cached_token(scheme, shape)
        assert sizing.decode_flops_per_byte(spec, scheme) == costs.attention_intensity(scheme, shape)
    assert sizing.indexer_elements_per_token(spec) == costs.indexer_elements_per_token(spec.attention_shape())


def test_dsa_layer_cost_takes_the_shape_from_its_caller():
    v32 = MODELS["deepseek-v3.2"]
    assert dsa.layer_cost(v32, 4096) == costs.dsa_layer_cost(V32, 4096)
    assert dsa.crossover_context(v32, 512) == costs.dsa_crossover_context(V32, 512)
    with pytest.raises(ValueError, match="has no lightning indexer"):
        costs.dsa_layer_cost(V3, 4096)


def test_every_scheme_has_every_count():
    shape = dataclasses.replace(V32, n_kv_heads=8)
    for scheme in (*SCHEMES, "mla_naive", "mla_absorbed"):
        assert costs.cache_elements_per_token(scheme, shape) > 0
        assert costs.macs_per_cached_token(scheme, shape) > 0
        assert costs.decode_flops(scheme, shape, 100) > costs.projection_flops(scheme, shape) > 0
        assert costs.decode_bytes_read(scheme, shape, 100, "bfloat16") > 0
        assert costs.prefill_flops(scheme, shape, 100) > 0


# --- DeepSeek-V4 against DeepSeek-V3.2 ------------------------------------------------------------------


def test_v4_layer_schedules_are_the_configs():
    """compress_ratios of the V4 config.json files (deepseek-v4.md): Flash [0, 0] + [4, 128] x 20 + [4],
    Pro [128, 128] + [4, 128] x 29 + [4]."""
    flash, pro = costs.V4_MODELS["deepseek-v4-flash"], costs.V4_MODELS["deepseek-v4-pro"]
    assert (flash.n_layers, flash.layer_counts()) == (43, {"sliding": 2, "csa": 21, "hca": 20})
    assert (pro.n_layers, pro.layer_counts()) == (61, {"sliding": 0, "csa": 30, "hca": 31})
    assert (flash.index_topk, pro.index_topk, flash.o_groups, pro.o_groups) == (512, 1024, 8, 16)


def test_v4_cache_is_a_tenth_of_v32s_at_a_million_tokens():
    """The published comparison, with the arithmetic: at L = 2^20 tokens V3.2 holds 61 L (656 + 132) bytes; a V4
    CSA layer (128 + L/4) x 584 + (L/4) x 68, an HCA layer (128 + L/128) x 584, a sliding layer 128 x 584.
    Pro (30 CSA, 31 HCA) needs about 10% of V3.2's cache and Flash (21 CSA, 20 HCA, 2 sliding) about 7%, in
    DeepSeek's FP8/FP4 layouts; with every number in bfloat16, Pro is about 8.7x smaller."""
    L = 2**20
    v32 = 61 * L * (656 + 132)
    csa, hca, sliding = (128 + L // 4) * 584 + (L // 4) * 68, (128 + L // 128) * 584, 128 * 584
    assert costs.v32_cache_bytes(L) == v32
    assert costs.v4_cache_bytes("deepseek-v4-pro", L) == 30 * csa + 31 * hca
    assert costs.v4_cache_bytes("deepseek-v4-flash", L) == 21 * csa + 20 * hca + 2 * sliding
    pro, flash = costs.v4_vs_v32_cache("deepseek-v4-pro", L), costs.v4_vs_v32_cache("deepseek-v4-flash", L)
    assert round(100 * pro["ratio"]) == 10 and round(100 * flash["ratio"]) == 7
    bf16 = costs.v4_vs_v32_cache("deepseek-v4-pro", L, "bf16")
    assert bf16["v32_bytes"] == 61 * L * (576 + 128) * 2
    assert bf16["v4_bytes"] == 30 * ((128 + L // 4) * 1024 + (L // 4) * 256) + 31 * (128 + L // 128) * 1024
    assert round(bf16["times_smaller"], 1) == 8.7
    # the 10% needs the small formats on BOTH sides: V4 in FP8/FP4 against V3.2 in bfloat16 would be ~5.9%
    mixed = costs.v4_cache_bytes("deepseek-v4-pro", L) / bf16["v32_bytes"]
    assert mixed < 0.07


def test_v4_cache_entries_per_layer():
    assert costs.v4_layer_cache_entries("sliding", 1000) == {"window": 128, "entries": 0, "index_keys": 0}
    assert costs.v4_layer_cache_entries("csa", 1000) == {"window": 128, "entries": 250, "index_keys": 250}
    assert costs.v4_layer_cache_entries("hca", 1000) == {"window": 128, "entries": 7, "index_keys": 0}
    assert costs.v4_layer_cache_entries("hca", 50, rate=8, window=64) == {"window": 50, "entries": 6, "index_keys": 0}


@pytest.mark.parametrize("layer_type, context", [("sliding", 30), ("csa", 29), ("csa", 9), ("hca", 30), ("hca", 3)])
def test_v4_decode_flops_equal_torchs_flop_counter(layer_type, context):
    """One decode step of attnlab.v4's layer (a tiny V4, the step completing no window, so no pooling runs):
    torch counts the matmuls, the same multiply-adds the formula counts."""
    from attnlab.v4 import DeepSeekV4Attention, V4AttentionConfig

    model = costs.V4Model(name="tiny", compress_ratios=(4,), d_model=24, n_heads=4, q_lora_rank=12, o_groups=2,
                          index_topk=3, source="test", head_dim=16, rope_head_dim=8, o_lora_rank=6, window=6,
                          index_n_heads=3, index_head_dim=8)
    rate = {"sliding": None, "csa": 4, "hca": 5}[layer_type]
    assert (context + 1) % rate != 0 if rate else True
    layer = DeepSeekV4Attention(V4AttentionConfig(
        d_model=24, n_heads=4, q_lora_rank=12, o_groups=2, o_lora_rank=6, head_dim=16, rope_head_dim=8, window=6,
        layer_type=layer_type, compress_rate=rate, index_n_heads=3, index_head_dim=8, index_topk=3)).double()
    cache = layer.make_cache()
    with torch.no_grad():
        layer(torch.randn(1, context, 24, dtype=torch.float64), cache=cache)
        with FlopCounterMode(display=False) as counter:
            layer(torch.randn(1, 1, 24, dtype=torch.float64), cache=cache)
    assert counter.get_total_flops() == sum(costs.v4_decode_flops(model, layer_type, context, rate).values())


# --- the newer schemes the benchmark times: a sliding window, Gated DeltaNet, block-sparse selection, V4 ----------


def test_window_block_sparse_and_linear_counts_by_hand():
    """The benchmark's layer (d = 1024, 16 heads of 64, GQA 4 K/V heads; W = 4096, S = 4; blocks of 64, 4 read;
    Gated DeltaNet 16 heads of 64, K = 4), float32, worked by hand."""
    s = bench.DEFAULT_SHAPE
    w = 1024 * 16 * 64 + 1024 * 4 * 128 + 16 * 64 * 1024  # GQA's weights: 3,145,728
    assert costs.weight_elements("gqa", s) == w
    # window: 2 w + 4 n_h d_h min(T, S + W); at 32K the ring holds 4100 keys, at 1K all 1025
    assert costs.window_decode_flops("gqa", s, 32768, 4096, 4) == 2 * w + 4 * 16 * 64 * 4100
    assert costs.window_decode_flops("gqa", s, 1024, 4096, 4) == costs.decode_flops("gqa", s, 1024)
    assert costs.window_decode_bytes_read("gqa", s, 32768, "float32", 4096, 4) == 4 * (w + 512 * 4100)
    # block-sparse: 4 n_h d_h ceil(T / B) for the bounds, 2 n_h (d_h + d_v) n' B for 4 blocks of 64
    t = 32769
    blocks = -(-t // 64)  # 513
    assert costs.block_sparse_decode_flops("gqa", s, 32768, 64, 4) == 2 * w + 4 * 16 * 64 * blocks + 2 * 16 * 128 * 256
    assert costs.block_sparse_decode_bytes_read("gqa", s, 32768, "float32", 64, 4) == 4 * (
        w + 2 * 4 * 64 * blocks + 16 * 128 * 256)
    assert costs.block_sparse_cache_bytes("gqa", s, 32768, "float32", 64) == 4 * (512 * 32768 + 2 * 4 * 64 * 512)
    assert costs.block_sparse_append_bytes("gqa", s, "float32") == 4 * (512 + 512)
    assert costs.block_sparse_blocks_read(100, 64, 4) == 2  # T = 101 tokens: 2 blocks exist
    # Gated DeltaNet: C = 16 (64 + 64 + 64) = 3072 channels
    weights = 1024 * 3072 + 16 * 64 * 1024 + 3072 * 4 + 2 * 1024 * 16 + 2 * 16
    assert costs.linear_weight_elements(1024, 16, 64, 64) == weights
    assert costs.linear_layer_decode_flops(1024, 16, 64, 64) == 2 * (weights - 3072 * 4 - 32) + 2 * 3072 * 4 + \
        6 * 16 * 64 * 64
    state = 4 * (16 * 64 * 64 + 3072 * 3)
    assert costs.linear_decode_bytes(1024, 16, 64, 64, "float32") == {"read": 4 * weights + state, "written": state}
    assert state == costs.linear_state_bytes(16, 64, 64, "float32", conv_channels=3072, conv_kernel=4,
                                             conv_dtype="float32")


def _quest_layer(shape: AttentionShape):
    from attnlab.block_sparse import QuestAttention
    from attnlab.gqa import AttentionConfig

    return QuestAttention(AttentionConfig(shape.d_model, shape.n_heads, shape.n_kv_heads, shape.head_dim),
                          block_size=8, top_blocks=3)


@pytest.mark.parametrize("context", [5, 16, 40, 61])
def test_block_sparse_decode_flops_equal_torchs_flop_counter(context):
    shape = bench.QUICK_SHAPE
    layer = _quest_layer(shape).double().eval()
    assert sum(p.numel() for p in layer.parameters()) == costs.weight_elements("gqa", shape)
    cache = layer.make_cache()
    with torch.no_grad():
        cache.update(torch.randn(1, shape.n_kv_heads, context, shape.head_dim, dtype=torch.float64),
                     torch.randn(1, shape.n_kv_heads, context, shape.head_dim, dtype=torch.float64))
        with FlopCounterMode(display=False) as counter:
            layer(torch.randn(1, 1, shape.d_model, dtype=torch.float64), cache=cache)
    assert counter.get_total_flops() == costs.block_sparse_decode_flops("gqa", shape, context, 8, 3)
    assert cache.nbytes == costs.block_sparse_cache_bytes("gqa", shape, context + 1, torch.float64, 8)


@pytest.mark.parametrize("context", [1, 100])
def test_gated_deltanet_decode_flops_equal_torchs_flop_counter(context):
    from attnlab.linear_attention import LinearAttention, LinearAttentionConfig, RecurrentState

    layer = LinearAttention(LinearAttentionConfig(d_model=48, n_heads=3, head_dim=8, v_head_dim=6)).double()
    layer.use("recurrent")
    assert sum(p.numel() for p in layer.parameters()) == costs.linear_weight_elements(48, 3, 8, 6)
    cache = RecurrentState()
    with torch.no_grad():
        layer(torch.randn(1, context, 48, dtype=torch.float64), cache=cache)
        assert cache.nbytes == costs.linear_decode_bytes(48, 3, 8, 6, torch.float64)["written"]
        with FlopCounterMode(display=False) as counter:
            layer(torch.randn(1, 1, 48, dtype=torch.float64), cache=cache)
    # the rank-1 write k u^T is an outer product, which torch runs as a broadcast multiply and does not count:
    # the formula counts it as one of the recurrence's three d_k x d_v products (linear_decode_flops); the one
    # token's short convolution, sum_j w_j x_j over K = 4 inputs per channel, is a multiply and a sum too
    outer = 2 * 3 * 8 * 6
    conv = 2 * layer.config.conv_channels * layer.config.conv_size
    assert counter.get_total_flops() + outer + conv == costs.linear_layer_decode_flops(48, 3, 8, 6)


@pytest.mark.parametrize("layer_type", ["sliding", "csa", "hca"])
def test_v4_weight_elements_equal_the_layers_parameters(layer_type):
    from attnlab.v4 import DeepSeekV4Attention, V4AttentionConfig

    model = costs.V4Model(name="tiny", compress_ratios=(4,), d_model=24, n_heads=4, q_lora_rank=12, o_groups=2,
                          index_topk=3, source="test", head_dim=16, rope_head_dim=8, o_lora_rank=6, window=6,
                          index_n_heads=3, index_head_dim=8)
    rate = {"sliding": None, "csa": 4, "hca": 5}[layer_type]
    layer = DeepSeekV4Attention(V4AttentionConfig(
        d_model=24, n_heads=4, q_lora_rank=12, o_groups=2, o_lora_rank=6, head_dim=16, rope_head_dim=8, window=6,
        layer_type=layer_type, compress_rate=rate, index_n_heads=3, index_head_dim=8, index_topk=3))
    assert sum(p.numel() for p in layer.parameters()) == costs.v4_weight_elements(model, layer_type, rate)


def test_v4_decode_bytes_by_hand():
    """V4-Flash's shape (c 512, c^I 128, W 128, k 512), bfloat16, at 1M cached tokens: a CSA step reads every
    index key and k entries, an HCA step every entry; both append the token and its compressor projections."""
    L = 2**20
    csa = costs.v4_decode_bytes("deepseek-v4-flash", "csa", L, "bfloat16")
    n_c = (L + 1) // 4
    assert csa["window"] == 2 * 128 * 512 and csa["index_keys"] == 2 * n_c * 128 and csa["entries"] == 2 * 512 * 512
    assert csa["state"] == 0 and csa["appended"] == 2 * (512 + 4 * 512 + 4 * 128)
    hca = costs.v4_decode_bytes("deepseek-v4-flash", "hca", L + 2, "bfloat16")
    assert hca["entries"] == 2 * ((L + 3) // 128) * 512 and hca["index_keys"] == 0
    assert hca["state"] == 2 * 2 * 2 * 512 and hca["appended"] == 2 * (512 + 2 * 512)  # 2 pending tokens
    sliding = costs.v4_decode_bytes("deepseek-v4-flash", "sliding", L, "bfloat16")
    assert sliding["entries"] == sliding["state"] == 0 and sliding["appended"] == 2 * 512
    assert csa["weights"] == 2 * costs.v4_weight_elements("deepseek-v4-flash", "csa")
