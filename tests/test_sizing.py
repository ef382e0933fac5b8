"""KV-cache sizing: the seed figures, Table 1 of the DeepSeek-V2 paper, every published model, what-ifs,
bad input, and chapter 0's exercises."""

from __future__ import annotations

import math
import runpy
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from attnlab import costs, sizing
from attnlab.cache_formats import uniform_layout
from attnlab.exercises import ch00
from attnlab.sizing import MODELS, SCHEMES, ModelSpec

ROOT = Path(__file__).resolve().parents[1]

# ----------------------------------------------------------------------------------------------------
# The seed summaries' figures, from DeepSeek-V3's shapes in bfloat16 (reference/facts.md).


def test_seed_figures_deepseek_v3_bytes_per_token():
    v3 = "deepseek-v3"
    assert sizing.cache_bytes_per_token(v3, scheme="mha") == 3_997_696  # "4 MB per token"
    assert sizing.cache_bytes_per_token(v3, scheme="mqa") == 31_232  # "31 kB per token"
    assert sizing.cache_bytes_per_token(v3, scheme="gqa", n_kv_heads=16) == 499_712
    assert sizing.cache_bytes_per_token(v3) == 70_272  # MLA, as published
    assert sizing.cache_bytes_per_token(v3, scheme="mla") == 70_272
    assert sizing.kv_elements_per_token(v3, per_layer=True) == 576  # a width, not a factor
    assert sizing.format_bytes(3_997_696) == "4.00 MB"
    assert sizing.format_bytes(31_232) == "31.2 kB"


def test_seed_ratios_are_computed():
    v3 = "deepseek-v3"
    assert sizing.reduction_vs_mha(v3, "mqa") == 128.0
    assert sizing.reduction_vs_mha(v3, "gqa", n_kv_heads=16) == 8.0
    assert round(sizing.reduction_vs_mha(v3, "mla"), 1) == 56.9  # "57x"
    assert round(sizing.reduction_vs_mha(v3)) == 57
    assert sizing.format_ratio(sizing.reduction_vs_mha(v3, "mqa")) == "128"
    assert sizing.format_ratio(sizing.reduction_vs_mha(v3, "mla")) == "56.9"


def test_seed_128k_mla_cache_is_8_58_gib():
    n_bytes = sizing.kv_cache_bytes("deepseek-v3", seq_len=128 * 1024, dtype=torch.bfloat16)
    assert n_bytes == 576 * 61 * 131_072 * 2
    assert round(sizing.gib(n_bytes), 2) == 8.58


def test_deepseek_v3_does_not_use_gqa():
    assert MODELS["deepseek-v3"].attention == "mla"
    # as published, a GQA what-if keeps the config's 128 KV heads: no saving at all against MHA
    assert sizing.reduction_vs_mha("deepseek-v3", "gqa") == 1.0


def test_v2_against_67b_by_element_count():
    # DeepSeek-V2's "93.3%" includes KV quantization; by element count alone the reduction is 82.2%.
    ratio = sizing.kv_elements_per_token("deepseek-v2") / sizing.kv_elements_per_token("deepseek-67b")
    assert round(100 * (1 - ratio), 1) == 82.2


# ----------------------------------------------------------------------------------------------------
# Table 1 of arXiv 2405.04434


@pytest.mark.parametrize("n_h,d_h,l,n_g,d_c,d_h_rope", [(128, 128, 61, 16, 512, 64), (32, 64, 2, 4, 100, 6),
                                                        (1, 2, 1, 1, 1, 0)])
def test_table1_formulas(n_h, d_h, l, n_g, d_c, d_h_rope):
    t = sizing.table1_elements(n_h, d_h, l, n_g, d_c, d_h_rope)
    assert t == {"mha": 2 * n_h * d_h * l, "gqa": 2 * n_g * d_h * l, "mqa": 2 * d_h * l,
                 "mla": (d_c + d_h_rope) * l}


def test_table1_mla_is_gqa_with_2_25_groups():
    d_h, l = 128, 60
    t = sizing.table1_elements(n_h=128, d_h=d_h, l=l, n_g=1, d_c=4 * d_h, d_h_rope=d_h // 2)
    assert t["mla"] == 9 * d_h * l // 2
    assert t["mla"] / (2 * d_h * l) == 2.25


def test_table1_matches_kv_elements_per_token_for_every_model():
    for key, spec in MODELS.items():
        if spec.kv_shared_layers or spec.global_head_dim:  # layers of several widths: see the windowed tests
            continue
        d_c, d_h_rope = sizing.mla_dims(spec)
        l = spec.n_layers - spec.layer_types.count("linear")  # a hybrid's linear layers cache no tokens
        t = sizing.table1_elements(spec.n_heads, spec.head_dim, l, spec.n_kv_heads, d_c, d_h_rope)
        for scheme in SCHEMES:
            assert sizing.kv_elements_per_token(spec, scheme) == t[scheme], (key, scheme)


# ----------------------------------------------------------------------------------------------------
# Every published model, against its config.json fields worked by hand.

# config.json keys: num_hidden_layers, num_attention_heads, num_key_value_heads, hidden_size
L, H, KV, D = "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "hidden_size"
MLA_V3 = {"kv_lora_rank": 512, "qk_rope_head_dim": 64, "v_head_dim": 128}
CONFIGS = {
    # the fields of each model's config.json that the cache depends on (URLs in attnlab/sizing.py)
    "deepseek-v2": {L: 60, H: 128, D: 5120, "kv_lora_rank": 512, "qk_rope_head_dim": 64, "v_head_dim": 128},
    "deepseek-v3": {L: 61, H: 128, D: 7168, **MLA_V3},
    "deepseek-v3.2": {L: 61, H: 128, D: 7168, **MLA_V3, "index_head_dim": 128},
    "deepseek-67b": {L: 95, H: 64, KV: 8, D: 8192},
    "llama-2-7b": {L: 32, H: 32, KV: 32, D: 4096},
    "llama-3-8b": {L: 32, H: 32, KV: 8, D: 4096},
    "llama-3-70b": {L: 80, H: 64, KV: 8, D: 8192},
    "mistral-7b": {L: 32, H: 32, KV: 8, D: 4096},
    "falcon-7b": {"n_layer": 32, "n_head": 71, "multi_query": True, D: 4544},  # Falcon's own key names
    "qwen2.5-7b": {L: 28, H: 28, KV: 4, D: 3584},
    "llama-3.1-405b": {L: 126, H: 128, KV: 8, D: 16384},
    "mixtral-8x7b": {L: 32, H: 32, KV: 8, D: 4096},
    # head_dim given, not D / H; layer_types alternate sliding (even) and full (odd)
    "gemma-2-9b": {L: 42, H: 16, KV: 8, D: 3584, "head_dim": 256, "sliding_window": 4096,
                   "layer_types": ["sliding_attention", "full_attention"] * 21},
    "mistral-7b-v0.1": {L: 32, H: 32, KV: 8, D: 4096, "sliding_window": 4096,
                        "layer_types": ["sliding_attention"] * 32},  # every layer windowed (rolling cache)
    "gemma-3-27b": {L: 62, H: 32, KV: 16, D: 5376, "head_dim": 128, "sliding_window": 1024,
                    "layer_types": (["sliding_attention"] * 5 + ["full_attention"]) * 10 + ["sliding_attention"] * 2},
    "gemma-4-e2b": {L: 35, H: 8, KV: 1, D: 1536, "head_dim": 256, "global_head_dim": 512, "sliding_window": 512,
                    "num_kv_shared_layers": 20, "layer_types": (["sliding_attention"] * 4 + ["full_attention"]) * 7},
    "gpt-oss-120b": {L: 36, H: 64, KV: 8, D: 2880, "head_dim": 64, "sliding_window": 128,
                     "layer_types": ["sliding_attention", "full_attention"] * 18},
    "gpt-oss-20b": {L: 24, H: 64, KV: 8, D: 2880, "head_dim": 64, "sliding_window": 128,
                    "layer_types": ["sliding_attention", "full_attention"] * 12},
    "deepseek-v2-lite": {L: 27, H: 16, D: 2048, "kv_lora_rank": 512, "qk_rope_head_dim": 64, "v_head_dim": 128},
}
#: Hybrid and DeepSeek-V4 configs: linear-attention layers (a fixed state) or windows plus compressed entries.
NEW_CONFIGS = {
    # no layer_types: layer i is full attention iff (i + 1) % full_attention_interval == 0, else Gated DeltaNet
    "qwen3-next-80b-a3b": {L: 48, H: 16, KV: 2, D: 2048, "head_dim": 256, "full_attention_interval": 4,
                           "linear_num_key_heads": 16, "linear_key_head_dim": 128, "linear_num_value_heads": 32,
                           "linear_value_head_dim": 128, "linear_conv_kernel_dim": 4},
    # MLA layers listed 1-based in linear_attn_config; KDA has as many key as value heads
    "kimi-linear-48b-a3b": {L: 27, H: 32, D: 2304, "kv_lora_rank": 512, "qk_rope_head_dim": 64, "v_head_dim": 128,
                            "linear_attn_config": {"full_attn_layers": [4, 8, 12, 16, 20, 24, 27], "num_heads": 32,
                                                   "head_dim": 128, "short_conv_kernel_size": 4}},
    # compress_ratios without the MTP layer's entry: 0 sliding only, 4 CSA, 128 HCA; one 512-wide K = V vector
    "deepseek-v4-pro": {L: 61, H: 128, D: 7168, "head_dim": 512, "sliding_window": 128, "index_head_dim": 128,
                        "compress_ratios": [128, 128] + [4, 128] * 29 + [4]},
    "deepseek-v4-flash": {L: 43, H: 64, D: 4096, "head_dim": 512, "sliding_window": 128, "index_head_dim": 128,
                          "compress_ratios": [0, 0] + [4, 128] * 20 + [4]},
}


def hand_layer_bytes_bf16(cfg: dict, seq_len: int) -> list[int]:
    """Each layer's cache in bf16 after ``seq_len`` tokens, worked from raw config fields without attnlab:
    a layer keeps K and V (2 x KV heads x its head_dim numbers) for every token it attends to, all of them
    on a full layer, the last sliding_window on a sliding one; each of the last num_kv_shared_layers layers
    reads an earlier layer's cache and keeps nothing (Gemma 4)."""
    types = cfg.get("layer_types", ["full_attention"] * cfg[L])
    first_shared = cfg[L] - cfg.get("num_kv_shared_layers", 0)
    out = []
    for i, kind in enumerate(types):
        full = kind == "full_attention"
        head_dim = cfg.get("head_dim", cfg[D] // cfg[H])
        if full and "global_head_dim" in cfg:  # Gemma 4: the full layers' own width
            head_dim = cfg["global_head_dim"]
        tokens = 0 if i >= first_shared else seq_len if full else min(seq_len, cfg["sliding_window"])
        out.append(2 * cfg[KV] * head_dim * tokens * 2)
    return out


def hand_bytes_per_token_bf16(cfg: dict) -> int:
    """Per-token cache bytes in bf16 worked from raw config fields, without attnlab (while a token is inside
    every window: each layer that keeps a cache holds it)."""
    if "layer_types" in cfg:
        return sum(hand_layer_bytes_bf16(cfg, 1))
    if "kv_lora_rank" in cfg:  # MLA: latent + decoupled RoPE key, per layer (+ DSA's index key, V3.2)
        return (cfg["kv_lora_rank"] + cfg["qk_rope_head_dim"] + cfg.get("index_head_dim", 0)) * cfg[L] * 2
    if "n_layer" in cfg:  # Falcon's RW config: multi_query = one KV head
        head_dim = cfg["hidden_size"] // cfg["n_head"]
        return 2 * (1 if cfg["multi_query"] else cfg["n_head"]) * head_dim * cfg["n_layer"] * 2
    head_dim = cfg.get("head_dim", cfg["hidden_size"] // cfg["num_attention_heads"])
    return 2 * cfg["num_key_value_heads"] * head_dim * cfg["num_hidden_layers"] * 2


def test_every_model_has_a_config_here():
    assert set(CONFIGS) | set(NEW_CONFIGS) == set(MODELS)
    for key in ("deepseek-v2", "deepseek-v3", "deepseek-v3.2", "llama-2-7b", "llama-3-8b", "llama-3-70b",
                "mistral-7b", "falcon-7b", "qwen2.5-7b"):
        assert key in MODELS


@pytest.mark.parametrize("key", sorted(CONFIGS))
def test_model_bytes_per_token_against_hand_formula(key):
    cfg, spec = CONFIGS[key], MODELS[key]
    assert sizing.cache_bytes_per_token(key) == hand_bytes_per_token_bf16(cfg)
    if "layer_types" in cfg:
        for seq_len in (1, 100, 1000, 5000, 200_000):
            assert sizing.layer_cache_bytes(spec, seq_len) == hand_layer_bytes_bf16(cfg, seq_len)
            assert sizing.kv_cache_bytes(spec, seq_len, batch=3) == 3 * sum(hand_layer_bytes_bf16(cfg, seq_len))
    else:
        assert sizing.kv_cache_bytes(spec, seq_len=1000, batch=3) == 3000 * hand_bytes_per_token_bf16(cfg)
    assert spec.source.startswith("https://huggingface.co/")
    assert spec.source.endswith("config.json")


@pytest.mark.parametrize("key", sorted(CONFIGS))
def test_model_spec_matches_config_fields(key):
    cfg, spec = CONFIGS[key], MODELS[key]
    layers = cfg.get("num_hidden_layers", cfg.get("n_layer"))
    heads = cfg.get("num_attention_heads", cfg.get("n_head"))
    assert (spec.n_layers, spec.n_heads, spec.hidden_size) == (layers, heads, cfg["hidden_size"])
    types = [kind.removesuffix("_attention") for kind in cfg.get("layer_types", ["full_attention"] * layers)]
    assert spec.layer_types == tuple(types)
    assert spec.sliding_window == cfg.get("sliding_window", 0)
    assert spec.kv_shared_layers == cfg.get("num_kv_shared_layers", 0)
    assert spec.global_head_dim == cfg.get("global_head_dim", 0)
    if "kv_lora_rank" in cfg:
        assert spec.attention == "mla"
        assert (spec.kv_lora_rank, spec.qk_rope_head_dim, spec.head_dim) == (
            cfg["kv_lora_rank"], cfg["qk_rope_head_dim"], cfg["v_head_dim"])
        assert spec.index_head_dim == cfg.get("index_head_dim", 0)
    else:
        assert spec.head_dim == cfg.get("head_dim", cfg["hidden_size"] // heads)
        kv = 1 if cfg.get("multi_query") else cfg.get("num_key_value_heads")
        assert spec.n_kv_heads == kv
        expected = "mha" if kv == heads else "mqa" if kv == 1 else "gqa"
        assert spec.attention == expected


def test_specific_published_shapes():
    falcon = MODELS["falcon-7b"]
    assert (falcon.n_heads, falcon.n_kv_heads, falcon.head_dim, falcon.attention) == (71, 1, 64, "mqa")
    qwen = MODELS["qwen2.5-7b"]
    assert (qwen.n_heads, qwen.n_kv_heads, qwen.head_dim, qwen.n_layers) == (28, 4, 128, 28)
    v2 = MODELS["deepseek-v2"]
    v2_shape = (v2.n_layers, v2.n_heads, v2.kv_lora_rank, v2.qk_rope_head_dim, v2.head_dim)
    assert v2_shape == (60, 128, 512, 64, 128)
    v32 = MODELS["deepseek-v3.2"]
    assert (v32.index_n_heads, v32.index_head_dim, v32.index_topk) == (64, 128, 2048)
    # V3.2 caches V3's MLA entry plus one 128-wide index key per token and layer
    assert sizing.cache_bytes_per_token("deepseek-v3.2") == sizing.cache_bytes_per_token("deepseek-v3") + 128 * 61 * 2


def test_v32_caches_v3_plus_index_keys_in_bf16():
    # every cached number in bf16: (512 + 64) latent + RoPE key, + 128 index key, x 2 B, x 61 layers
    v3, v32 = "deepseek-v3", "deepseek-v3.2"
    assert sizing.layer_elements_per_token(v32) == [512 + 64 + 128] * 61
    assert sizing.cache_bytes_per_token(v32) == (576 + 128) * 2 * 61 == 85_888
    assert sizing.kv_cache_bytes(v32, K128) - sizing.kv_cache_bytes(v3, K128) == K128 * 128 * 2 * 61
    assert sizing.kv_elements_per_token(v32, per_layer=True) == 576  # keys and values (Table 1) only
    assert sizing.reduction_vs_mha(v32) == sizing.reduction_vs_mha(v3)
    layouts = sizing.cache_layouts(v32)
    assert [layout.bytes for layout in layouts] == [576 * 2, 128 * 2]
    assert sizing.cache_bytes_per_token(v32, "float8") == (576 + 128) * 61
    # a what-if scheme caches its own Table 1 parts: no index key
    assert sizing.cache_bytes_per_token(v32, scheme="mha") == sizing.cache_bytes_per_token(v3, scheme="mha")


def test_v32_fp8_format_is_656_plus_132_bytes():
    # FlashMLA's FP8 entry: 512 e4m3 (1 B) + 4 fp32 scales (4 B) + 64 bf16 RoPE (2 B) = 656 B;
    # the FP8 index key: 128 e4m3 + one fp32 scale = 132 B (DeepSeek-V3.2-Exp inference/model.py)
    entry, index_key = sizing.cache_layouts("deepseek-v3.2", cache_format="deepseek-fp8")
    assert entry.bytes == 512 * 1 + 4 * 4 + 64 * 2 == 656 and index_key.bytes == 128 + 4 == 132
    assert sizing.cache_bytes_per_token("deepseek-v3.2", cache_format="deepseek-fp8") == (656 + 132) * 61
    assert sizing.kv_cache_bytes("deepseek-v3.2", 1000, 2, cache_format="deepseek-fp8") == 2000 * 788 * 61
    assert sizing.cache_bytes_per_token("deepseek-v3", cache_format="deepseek-fp8") == 656 * 61  # no indexer
    t = sizing.tokens_that_fit("deepseek-v3.2", 80, cache_format="deepseek-fp8")
    assert t == 80 * 2**30 // (788 * 61)
    # the named format is not the default
    assert sizing.cache_bytes_per_token("deepseek-v3.2") != sizing.cache_bytes_per_token(
        "deepseek-v3.2", cache_format="deepseek-fp8")


@pytest.mark.parametrize("kwargs,match", [
    (dict(model="llama-3-8b", cache_format="deepseek-fp8"), "stores an MLA entry of 576 numbers"),
    (dict(model="deepseek-v3.2", scheme="mha", cache_format="deepseek-fp8"), "stores an MLA entry"),
    (dict(model="deepseek-v3.2", cache_format="fp8"), "cache_format='fp8' must be None"),
    (dict(model="deepseek-v3.2", dtype="float8", cache_format="deepseek-fp8"), "cannot go with cache_format"),
    (dict(model="deepseek-v3.2", layer=61), "layer=61 must be < n_layers=61"),
])
def test_cache_layouts_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sizing.cache_layouts(**kwargs)


# ----------------------------------------------------------------------------------------------------
# Windowed and shared layers, each model's cache worked by hand from its published config (bfloat16, 2 B)

K128 = 128 * 1024


def test_gpt_oss_alternating_window_128():
    # 36 layers: even ones slide over 128 tokens, odd ones see everything; 8 K/V heads of 64:
    # 2 x 8 x 64 = 1,024 numbers = 2,048 B per token and layer.
    per_layer = 2 * 8 * 64 * 2
    assert sizing.layer_elements_per_token("gpt-oss-120b") == [1024] * 36
    assert sizing.cache_bytes_per_token("gpt-oss-120b") == 36 * per_layer == 73_728  # inside the window
    # at 128K: 18 full layers x 131,072 tokens + 18 sliding layers x 128 tokens
    assert sizing.kv_cache_bytes("gpt-oss-120b", K128) == 18 * per_layer * (K128 + 128) == 4_836_556_800
    assert sizing.layer_cache_bytes("gpt-oss-120b", K128)[:2] == [128 * per_layer, K128 * per_layer]
    # gpt-oss-20b: the same attention on 24 layers
    assert sizing.kv_cache_bytes("gpt-oss-20b", K128) == 12 * per_layer * (K128 + 128) == 3_224_371_200


def test_gemma_3_five_local_one_global():
    # 62 layers, global iff (i + 1) % 6 == 0: 10 global (5, 11, ..., 59), 52 local with a 1,024 window;
    # 16 K/V heads of 128: 2 x 16 x 128 = 4,096 numbers = 8,192 B per token and layer.
    spec, per_layer = MODELS["gemma-3-27b"], 2 * 16 * 128 * 2
    assert [i for i, kind in enumerate(spec.layer_types) if kind == "full"] == list(range(5, 62, 6))
    assert sizing.kv_cache_bytes(spec, K128) == 10 * per_layer * K128 + 52 * per_layer * 1024 == 11_173_625_856
    # against the same 62 layers with every cache full: 62 x 131,072 / (10 x 131,072 + 52 x 1,024) = 5.96x smaller
    assert round(62 * per_layer * K128 / sizing.kv_cache_bytes(spec, K128), 2) == 5.96


def test_gemma_4_e2b_shared_layers_add_nothing():
    # 35 layers, full iff (i + 1) % 5 == 0; one K/V head, 256 wide on sliding layers, 512 on full ones:
    # sliding 2 x 256 = 512 numbers (1,024 B), full 2 x 512 = 1,024 numbers (2,048 B) per token.
    # The last 20 layers (15-34) read layer 13's (sliding) or 14's (full) cache: 12 sliding + 3 full keep one.
    spec = MODELS["gemma-4-e2b"]
    assert spec.kv_sources[15:] == tuple(14 if kind == "full" else 13 for kind in spec.layer_types[15:])
    widths = sizing.layer_elements_per_token(spec)
    assert widths[:15] == [512, 512, 512, 512, 1024] * 3 and widths[15:] == [0] * 20
    assert sizing.cache_bytes_per_token(spec) == 12 * 1024 + 3 * 2048 == 18_432
    assert sizing.kv_cache_bytes(spec, K128) == 12 * 1024 * 512 + 3 * 2048 * K128 == 811_597_824
    assert sizing.layer_cache_bytes(spec, K128)[15:] == [0] * 20
    # the same layers without sharing: 28 sliding + 7 full caches
    unshared = replace(spec, kv_shared_layers=0)
    assert sizing.kv_cache_bytes(unshared, K128) == 28 * 1024 * 512 + 7 * 2048 * K128
    with pytest.raises(ValueError, match="use layer_elements_per_token"):
        sizing.kv_elements_per_token(spec, per_layer=True)
    assert sizing.kv_formula(spec) == "sliding: 2 d_h = 2 × 256 = 512; full: 2 d_h = 2 × 512 = 1,024"


def test_mistral_v01_rolling_cache_stops_growing():
    # 32 layers, all sliding with a 4,096 window; 8 K/V heads of 128: 2 x 8 x 128 x 2 = 4,096 B per token
    # and layer, so the cache never exceeds 4,096 x 32 x 4,096 B = 512 MiB.
    cap = 4096 * 32 * 4096
    assert cap == 512 * 2**20
    assert sizing.kv_cache_bytes("mistral-7b-v0.1", 4096) == cap
    assert sizing.kv_cache_bytes("mistral-7b-v0.1", 32_768) == cap
    assert sizing.kv_cache_bytes("mistral-7b-v0.1", 1000) == sizing.kv_cache_bytes("mistral-7b", 1000)
    assert sizing.tokens_that_fit("mistral-7b-v0.1", 0.5) == math.inf  # the whole window fits: any context does
    assert sizing.tokens_that_fit("mistral-7b-v0.1", 0.25) == 2048


def test_gemma_2_9b_sized_with_its_windows():
    # 42 layers alternating: 21 sliding (4,096) + 21 full; 8 K/V heads of 256 = 4,096 numbers = 8,192 B.
    per_layer = 2 * 8 * 256 * 2
    at_8k = sizing.kv_cache_bytes("gemma-2-9b", 8192)  # its published context
    assert at_8k == 21 * per_layer * 8192 + 21 * per_layer * 4096 == 2_113_929_216
    assert at_8k / (42 * per_layer * 8192) == 0.75  # a quarter smaller than a full cache on every layer
    assert sizing.layer_plan("gemma-2-9b") == "21 sliding (window 4,096) + 21 full"


@pytest.mark.parametrize("key", sorted(k for k, m in MODELS.items() if m.windowed))
def test_windowed_caches_flatten_past_the_window(key):
    spec = MODELS[key]
    w = spec.sliding_window
    full_bytes = sum(b for b, kind in zip(sizing.layer_elements_per_token(spec), spec.layer_types, strict=True)
                     if kind == "full") * 2
    # inside the window every caching layer grows; past it only the full ones
    assert sizing.kv_cache_bytes(spec, w) - sizing.kv_cache_bytes(spec, w - 1) == sizing.cache_bytes_per_token(spec)
    assert sizing.kv_cache_bytes(spec, w + 7) - sizing.kv_cache_bytes(spec, w + 6) == full_bytes
    assert sizing.kv_cache_bytes(spec, 10 * w) <= 10 * w * sizing.cache_bytes_per_token(spec)


def test_marginal_bytes_past_the_window():
    # gpt-oss-120b: 73,728 B per token inside the 128-token window, its 18 full layers' 36,864 B past it
    assert sizing.marginal_cache_bytes("gpt-oss-120b", 100) == 36 * 2048
    assert sizing.marginal_cache_bytes("gpt-oss-120b", 128) == 18 * 2048
    assert sizing.marginal_cache_bytes("mistral-7b-v0.1", 5000) == 0
    assert sizing.marginal_cache_bytes("llama-3-8b", 10**6) == sizing.cache_bytes_per_token("llama-3-8b")


@pytest.mark.parametrize("key", sorted(MODELS))
@pytest.mark.parametrize("gpu_gib", [0.01, 0.3, 24, 80])
def test_tokens_that_fit_is_the_largest_context_that_fits(key, gpu_gib):
    t = sizing.tokens_that_fit(key, gpu_gib)
    budget = int(gpu_gib * 2**30)
    if t == math.inf:
        assert sizing.kv_cache_bytes(key, 10**9) <= budget
    else:
        assert sizing.kv_cache_bytes(key, t) <= budget < sizing.kv_cache_bytes(key, t + 1)


def test_what_ifs_keep_the_windows_and_the_sharing():
    # Gemma-4-E2B as MHA: 8 heads on each caching layer, 2 x 8 x 256 on sliding, 2 x 8 x 512 on full ones
    assert sizing.layer_elements_per_token("gemma-4-e2b", "mha")[:5] == [4096, 4096, 4096, 4096, 8192]
    assert sizing.cache_bytes_per_token("gemma-4-e2b", scheme="mha") == (12 * 4096 + 3 * 8192) * 2
    assert sizing.reduction_vs_mha("gemma-4-e2b") == 8.0
    # a GQA what-if on gpt-oss-120b still slides on its even layers
    assert sizing.kv_cache_bytes("gpt-oss-120b", K128, scheme="gqa", n_kv_heads=1) == 18 * 2 * 64 * 2 * (K128 + 128)


def test_tokens_that_fit_beside_the_weights_with_windows():
    # gpt-oss-20b in bf16 (41.8 GB of weights) on 80 GiB: past the 128 window only the 12 full layers grow
    budget = 80 * 2**30 - 2 * MODELS["gpt-oss-20b"].n_params
    t = sizing.tokens_that_fit("gpt-oss-20b", 80, weights_dtype="bfloat16")
    assert t == 128 + (budget - 128 * 24 * 2048) // (12 * 2048)
    assert sizing.kv_cache_bytes("gpt-oss-20b", t) <= budget < sizing.kv_cache_bytes("gpt-oss-20b", t + 1)


# ----------------------------------------------------------------------------------------------------
# Hybrids (a linear layer's fixed state) and DeepSeek-V4 (a window plus compressed entries), from raw configs


def hand_hybrid_layer_bytes(cfg: dict, seq_len: int, b: int = 2, entry: int | None = None,
                            index_key: int | None = None) -> list[int]:
    """Each layer's cache after ``seq_len`` tokens, ``b`` bytes per number, worked from raw config fields
    without attnlab. A linear layer (Gated DeltaNet, KDA) keeps, once a token is in, its delta-rule state, one
    d_k x d_v matrix per value head, and its short convolution's last kernel - 1 inputs over the q, k and v
    channels (2 H_k d_k + H_v d_v). A full layer keeps every token: 2 x KV heads x head_dim (GQA) or
    kv_lora_rank + qk_rope_head_dim (MLA). A DeepSeek-V4 layer keeps min(T, 128) raw 512-wide vectors plus one
    per compress_ratio tokens, and in a ratio-4 (CSA) layer a 128-wide index key per compressed one;
    ``entry``/``index_key``: bytes of each instead of 512 b / 128 b (DeepSeek's FP8 / FP4 layout)."""
    if "compress_ratios" in cfg:
        entry = cfg["head_dim"] * b if entry is None else entry
        index_key = cfg["index_head_dim"] * b if index_key is None else index_key
        out = []
        for m in cfg["compress_ratios"]:
            compressed = seq_len // m if m else 0
            keys = compressed if m == 4 else 0
            out.append((min(seq_len, cfg["sliding_window"]) + compressed) * entry + keys * index_key)
        return out
    if "linear_attn_config" in cfg:  # Kimi Linear: KDA with as many key as value heads, MLA elsewhere
        lin = cfg["linear_attn_config"]
        hk = hv = lin["num_heads"]
        dk = dv = lin["head_dim"]
        kernel = lin["short_conv_kernel_size"]
        full = [i + 1 in lin["full_attn_layers"] for i in range(cfg[L])]
        per_token = cfg["kv_lora_rank"] + cfg["qk_rope_head_dim"]
    else:  # Qwen3-Next: Gated DeltaNet, full attention every full_attention_interval-th layer
        hk, dk = cfg["linear_num_key_heads"], cfg["linear_key_head_dim"]
        hv, dv = cfg["linear_num_value_heads"], cfg["linear_value_head_dim"]
        kernel = cfg["linear_conv_kernel_dim"]
        full = [(i + 1) % cfg["full_attention_interval"] == 0 for i in range(cfg[L])]
        per_token = 2 * cfg[KV] * cfg["head_dim"]
    state = hv * dk * dv + (2 * hk * dk + hv * dv) * (kernel - 1)
    return [seq_len * per_token * b if f else (state * b if seq_len else 0) for f in full]


HYBRID_CONTEXTS = (0, 1, 3, 127, 128, 129, 1000, 32_768, 131_072, 1_048_576)


@pytest.mark.parametrize("key", sorted(NEW_CONFIGS))
def test_hybrid_and_v4_models_against_their_configs(key):
    cfg, spec = NEW_CONFIGS[key], MODELS[key]
    assert (spec.n_layers, spec.n_heads, spec.hidden_size) == (cfg[L], cfg[H], cfg[D])
    for seq_len in HYBRID_CONTEXTS:
        assert sizing.layer_cache_bytes(spec, seq_len) == hand_hybrid_layer_bytes(cfg, seq_len), seq_len
        assert sizing.kv_cache_bytes(spec, seq_len, batch=3) == 3 * sum(hand_hybrid_layer_bytes(cfg, seq_len))
        f32 = sizing.kv_cache_bytes(spec, seq_len, dtype=torch.float32)
        assert f32 == sum(hand_hybrid_layer_bytes(cfg, seq_len, b=4))
    assert spec.source.startswith("https://huggingface.co/") and spec.source.endswith("config.json")
    assert spec.max_context in (262_144, 1_048_576)


def test_qwen3_next_gated_deltanet_state_and_full_layers():
    # 48 layers, full iff (i + 1) % 4 == 0: layers 3, 7, ..., 47 (12), Gated DeltaNet on the other 36
    spec = MODELS["qwen3-next-80b-a3b"]
    assert [i for i, kind in enumerate(spec.layer_types) if kind == "full"] == list(range(3, 48, 4))
    assert sizing.layer_plan(spec) == "36 linear (fixed state) + 12 full"
    # state per layer: recurrent H_v d_k d_v = 32 x 128 x 128 = 524,288; conv (2 x 16 x 128 + 32 x 128) x (4 - 1)
    # = 8,192 x 3 = 24,576; 548,864 numbers, x 2 B = 1,097,728 B, x 36 layers = 39,518,208 B per sequence
    assert sizing.linear_state_elements(spec) == {"recurrent": 524_288, "conv": 24_576}
    assert sizing.fixed_state_bytes(spec) == 36 * 548_864 * 2 == 39_518_208
    assert sizing.fixed_state_bytes(spec, batch=2, dtype="float32") == 4 * 39_518_208
    # per token only the 12 full layers grow: 2 x 2 KV heads x 256 = 1,024 numbers, 2,048 B each, 24,576 B
    assert sizing.layer_elements_per_token(spec)[:4] == [0, 0, 0, 1024]
    assert sizing.cache_bytes_per_token(spec) == 12 * 1024 * 2 == 24_576
    assert sizing.growth_bytes_per_token(spec) == 24_576
    # bytes(T) = 39,518,208 + 24,576 T for T > 0; nothing before the first token
    assert sizing.kv_cache_bytes(spec, 0) == 0
    assert sizing.kv_cache_bytes(spec, 32_768) == 39_518_208 + 24_576 * 32_768 == 844_824_576
    assert sizing.marginal_cache_bytes(spec, 5000) == 24_576
    # what-ifs touch the full layers only: MHA 2 x 16 x 256 on 12 layers, the states stay
    assert sizing.cache_bytes_per_token(spec, scheme="mha") == 12 * 2 * 16 * 256 * 2
    assert sizing.kv_cache_bytes(spec, 10, scheme="mqa") == 39_518_208 + 10 * 12 * 2 * 256 * 2
    assert sizing.reduction_vs_mha(spec) == 8.0
    # decoding reads cached tokens in the 12 full layers only: 2 n_h d_h = 2 x 16 x 256 multiply-adds each
    assert sizing.attention_macs_per_cached_token(spec, per_layer=False) == 12 * 2 * 16 * 256
    assert sizing.kv_formula(spec).startswith("linear: state H_v d_k d_v + (2 H_k d_k + H_v d_v)(K - 1) = "
                                              "32 × 128 × 128 + 8,192 × 3 = 548,864 per sequence; full: 2 n_g d_h")


def test_kimi_linear_kda_state_and_mla_layers():
    # linear_attn_config lists the MLA layers 1-based: 4, 8, ..., 24, 27 -> 3, 7, 11, 15, 19, 23, 26 here
    spec = MODELS["kimi-linear-48b-a3b"]
    assert [i for i, kind in enumerate(spec.layer_types) if kind == "full"] == [3, 7, 11, 15, 19, 23, 26]
    assert sizing.layer_plan(spec) == "20 linear (fixed state) + 7 full"
    # KDA: 32 heads, d_k = d_v = 128: 524,288 + (3 x 32 x 128 = 12,288) x 3 = 561,152 numbers per layer
    assert sizing.linear_state_elements(spec) == {"recurrent": 32 * 128 * 128, "conv": 12_288 * 3}
    assert sizing.fixed_state_bytes(spec) == 20 * 561_152 * 2 == 22_446_080
    # its 7 MLA layers cache d_c + d_h^R = 512 + 64 = 576 numbers per token: 8,064 B in bf16
    assert sizing.kv_elements_per_token(spec) == 7 * 576
    assert sizing.cache_bytes_per_token(spec) == 7 * 576 * 2 == 8_064
    assert sizing.kv_cache_bytes(spec, 1_048_576) == 22_446_080 + 8_064 * 1_048_576
    with pytest.raises(ValueError, match="has linear layers whose states it does not cover"):
        sizing.kv_cache_bytes(spec, 10, cache_format="deepseek-fp8")


@pytest.mark.parametrize("key,v4", [("deepseek-v4-pro", costs.DEEPSEEK_V4_PRO),
                                    ("deepseek-v4-flash", costs.DEEPSEEK_V4_FLASH)])
def test_v4_models_are_sized_by_the_v4_cost_functions(key, v4):
    spec = MODELS[key]
    assert spec.v4 is v4 and spec.layer_types == sizing.v4_layer_types(v4)
    bf16 = (uniform_layout(512), uniform_layout(128))
    for seq_len in HYBRID_CONTEXTS:
        # every number in bf16: entries 512 x 2 B, index keys 128 x 2 B; DeepSeek's FP8 entry 584 B, FP4 key 68 B
        assert sizing.kv_cache_bytes(spec, seq_len) == costs.v4_cache_bytes(v4, seq_len, *bf16)
        assert sizing.kv_cache_bytes(spec, seq_len, cache_format="deepseek-fp8") == costs.v4_cache_bytes(v4, seq_len)
        fp8 = hand_hybrid_layer_bytes(NEW_CONFIGS[key], seq_len, entry=584, index_key=68)
        assert sizing.layer_cache_bytes(spec, seq_len, cache_format="deepseek-fp8") == fp8
    # against V3.2 at 1M tokens, in DeepSeek's formats and in bf16: the published comparison
    m = 2**20
    for fmt, cache_format in (("fp8", "deepseek-fp8"), ("bf16", None)):
        ratio = (sizing.kv_cache_bytes(spec, m, cache_format=cache_format)
                 / sizing.kv_cache_bytes("deepseek-v3.2", m, cache_format=cache_format))
        assert math.isclose(ratio, costs.v4_vs_v32_cache(v4, m, fmt)["ratio"])


def test_v4_pro_cache_worked_by_hand():
    spec = MODELS["deepseek-v4-pro"]
    assert sizing.layer_plan(spec) == ("30 CSA (1 entry per 4 tokens) + 31 HCA (1 entry per 128), each keeping "
                                       "its last 128 tokens")
    # 1M tokens, bf16. CSA layer: (128 + 262,144) entries x 1,024 B + 262,144 index keys x 256 B = 335,675,392 B;
    # HCA layer: (128 + 8,192) x 1,024 = 8,519,680 B; 30 CSA + 31 HCA layers = 10,334,371,840 B (9.62 GiB)
    per_layer = sizing.layer_cache_bytes(spec, 2**20)
    assert per_layer[:3] == [8_519_680, 8_519_680, 335_675_392]
    assert sizing.kv_cache_bytes(spec, 2**20) == 30 * 335_675_392 + 31 * 8_519_680 == 10_334_371_840
    # in DeepSeek's layout: CSA (128 + 262,144) x 584 + 262,144 x 68, HCA (128 + 8,192) x 584
    fp8 = 30 * (262_272 * 584 + 262_144 * 68) + 31 * 8_320 * 584
    assert sizing.kv_cache_bytes(spec, 2**20, cache_format="deepseek-fp8") == fp8
    # past the window it grows by (1,024 + 256) / 4 per CSA layer and 1,024 / 128 per HCA layer, on average
    assert sizing.growth_bytes_per_token(spec) == 30 * 1280 / 4 + 31 * 1024 / 128 == 9_848
    # over whole 128-token blocks exactly (from 128 to 128 + 1,280: 320 CSA entries and 10 HCA ones per layer)
    assert sizing.kv_cache_bytes(spec, 1408) - sizing.kv_cache_bytes(spec, 128) == 1280 * 9_848
    # V4 holds vectors, not a fixed number per token: per-token figures need a what-if scheme
    assert sizing.layer_tokens(spec, 1000)[:3] == [128 + 7, 128 + 7, 128 + 250]
    with pytest.raises(ValueError, match="not a fixed number per token"):
        sizing.cache_bytes_per_token(spec)
    # a what-if makes every layer a full layer of that scheme: MLA = V3.2's 512 + 64 on 61 layers
    assert sizing.cache_bytes_per_token(spec, scheme="mla") == sizing.cache_bytes_per_token("deepseek-v3", scheme="mla")
    assert sizing.kv_cache_bytes(spec, 100, scheme="mqa") == 100 * 61 * 2 * 512 * 2


def test_tokens_that_fit_with_fixed_states_and_v4():
    # Qwen3-Next: the 39,518,208 B of states come first, then 24,576 B per token
    assert sizing.tokens_that_fit("qwen3-next-80b-a3b", 1) == (2**30 - 39_518_208) // 24_576 == 42_082
    assert sizing.tokens_that_fit("qwen3-next-80b-a3b", 0.03) == 0  # 32.2 MB: not even the states
    # Kimi Linear beside its bf16 weights (96 GB) on 141 GiB
    budget = 141 * 2**30 - 2 * 48_000_000_000 - 22_446_080
    assert sizing.tokens_that_fit("kimi-linear-48b-a3b", 141, weights_dtype="bfloat16") == budget // 8_064
    # V4: the largest context whose stepped cache fits (1 GiB in DeepSeek's layouts)
    t = sizing.tokens_that_fit("deepseek-v4-pro", 1, cache_format="deepseek-fp8")
    assert costs.v4_cache_bytes("deepseek-v4-pro", t) <= 2**30 < costs.v4_cache_bytes("deepseek-v4-pro", t + 1)


@pytest.mark.parametrize("change,match", [
    (dict(layer_types=("linear", "full")), "linear_key_heads must be > 0, got 0"),
    (dict(layer_types=("linear", "full"), linear_key_heads=3, linear_key_dim=8, linear_value_heads=4,
          linear_value_dim=8), "linear_value_heads=4 is not divisible by linear_key_heads=3"),
    (dict(layer_types=("csa", "full")), "v4 must be the model's costs.V4Model, got None"),
    (dict(v4=costs.DEEPSEEK_V4_FLASH), "layer_types must be v4_layer_types(v4)"),
])
def test_model_spec_hybrid_validation(change, match):
    with pytest.raises(ValueError, match=match.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        ModelSpec(**{**BASE, **change})


def test_layer_shape():
    spec = MODELS["gemma-4-e2b"]
    assert (spec.layer_shape(3).head_dim, spec.layer_shape(4).head_dim) == (256, 512)
    assert spec.layer_shape(4).n_layers == 1 and spec.layer_shape(4, n_kv_heads=2).n_kv_heads == 2
    with pytest.raises(ValueError, match="layer=35 must be < n_layers=35"):
        spec.layer_shape(35)


def test_layer_tokens():
    assert sizing.layer_tokens("gpt-oss-20b", 1000)[:4] == [128, 1000, 128, 1000]
    assert sizing.layer_tokens("gemma-4-e2b", 600)[10:17] == [512, 512, 512, 512, 600, 0, 0]
    assert sizing.layer_tokens("llama-3-8b", 5) == [5] * 32


@pytest.mark.parametrize("change,match", [
    (dict(layer_types=("full",)), "layer_types lists 1 layers, must list n_layers=2"),
    (dict(layer_types=("full", "local")), "layer_types holds 'local'"),
    (dict(layer_types=("sliding", "full")), "sliding_window must be > 0"),
    (dict(sliding_window=64), "sliding_window=64 needs a 'sliding' entry"),
    (dict(kv_shared_layers=2), "kv_shared_layers=2 must be < n_layers=2"),
    (dict(layer_types=("sliding", "full"), sliding_window=4, kv_shared_layers=1),
     "a shared 'full' layer needs an earlier 'full' layer"),
    (dict(global_head_dim=5), "global_head_dim=5 must be even"),
    (dict(global_n_kv_heads=5), "n_heads=12 is not divisible by global_n_kv_heads=5"),
])
def test_model_spec_layer_validation(change, match):
    with pytest.raises(ValueError, match=match.replace("(", r"\(").replace(".", r"\.")):
        ModelSpec(**{**BASE, **change})


# ----------------------------------------------------------------------------------------------------
# What-if schemes, dtypes, memory budget


def test_what_if_schemes_on_llama3_8b():
    m = "llama-3-8b"  # 32 layers, 32 heads, 8 KV heads, d_h 128
    assert sizing.cache_bytes_per_token(m) == 2 * 8 * 128 * 32 * 2
    assert sizing.cache_bytes_per_token(m, scheme="mha") == 2 * 32 * 128 * 32 * 2
    assert sizing.cache_bytes_per_token(m, scheme="mqa") == 2 * 128 * 32 * 2
    assert sizing.cache_bytes_per_token(m, scheme="gqa") == sizing.cache_bytes_per_token(m)
    assert sizing.cache_bytes_per_token(m, scheme="gqa", n_kv_heads=2) == 2 * 2 * 128 * 32 * 2
    # MLA on a non-MLA model: the DeepSeek-V2 paper's d_c = 4 d_h, d_h^R = d_h / 2
    assert sizing.mla_dims(m) == (512, 64)
    assert sizing.cache_bytes_per_token(m, scheme="mla") == (512 + 64) * 32 * 2
    assert sizing.cache_bytes_per_token("llama-2-7b") == sizing.cache_bytes_per_token(m, scheme="mha")


def test_n_kv_heads_with_scheme_none_on_a_gqa_model():
    assert sizing.cache_bytes_per_token("llama-3-8b", n_kv_heads=4) == 2 * 4 * 128 * 32 * 2


def test_mla_what_if_uses_carried_dims_on_non_mla_spec():
    spec = ModelSpec(name="t", n_layers=2, n_heads=4, n_kv_heads=4, head_dim=16, attention="mha",
                     hidden_size=64, source="test", kv_lora_rank=40, qk_rope_head_dim=8)
    assert sizing.kv_elements_per_token(spec, "mla") == (40 + 8) * 2


def test_dtypes_and_linearity():
    m = "deepseek-v3"
    bf16 = sizing.kv_cache_bytes(m, 100, 2, torch.bfloat16)
    assert sizing.kv_cache_bytes(m, 100, 2, torch.float32) == 2 * bf16
    assert sizing.kv_cache_bytes(m, 100, 2, torch.float16) == bf16
    assert sizing.kv_cache_bytes(m, 100, 2, "float8") == bf16 // 2
    assert sizing.kv_cache_bytes(m, 100, 2, torch.float8_e4m3fn) == bf16 // 2
    assert sizing.kv_cache_bytes(m, 100, 2, "bfloat16") == bf16
    assert sizing.kv_cache_bytes(m, 200, 2) == 2 * bf16
    assert sizing.kv_cache_bytes(m, 100, 4) == 2 * bf16
    assert sizing.kv_cache_bytes(m, 0) == 0


def test_tokens_that_fit():
    per = sizing.cache_bytes_per_token("deepseek-v3")
    assert sizing.tokens_that_fit("deepseek-v3", 80) == 80 * 2**30 // per
    assert sizing.tokens_that_fit("deepseek-v3", 80, scheme="mha") == 80 * 2**30 // 3_997_696
    n = sizing.tokens_that_fit("llama-3-8b", 80, weights_dtype=torch.bfloat16)
    assert n == (80 * 2**30 - 2 * MODELS["llama-3-8b"].n_params) // 131_072
    # weights alone overflow the budget: nothing fits
    assert sizing.tokens_that_fit("deepseek-v3", 80, weights_dtype="float8") == 0
    assert sizing.weight_bytes("deepseek-v3", "float8") == 671_000_000_000


def test_decode_arithmetic_intensity():
    v3 = "deepseek-v3"
    assert sizing.decode_flops_per_byte(v3, "mha") == 1.0
    assert sizing.decode_flops_per_byte(v3, "mqa") == 128.0
    assert sizing.decode_flops_per_byte(v3, "gqa", n_kv_heads=16) == 8.0
    assert sizing.attention_macs_per_cached_token(v3, "mla") == 128 * (512 + 64 + 512)
    assert math.isclose(sizing.decode_flops_per_byte(v3, "mla"), 2 * 128 * 1088 / (576 * 2))
    # sharing KV heads saves memory, not arithmetic
    macs = sizing.attention_macs_per_cached_token
    assert macs(v3, "mqa") == macs(v3, "gqa", n_kv_heads=16) == macs(v3, "mha")


def test_indexer_cache_of_v32():
    assert sizing.indexer_elements_per_token("deepseek-v3.2") == 128 * 61
    assert sizing.indexer_elements_per_token("deepseek-v3.2", per_layer=True) == 128
    assert sizing.indexer_elements_per_token("deepseek-v3") == 0


def test_kv_formula_text():
    assert sizing.kv_formula("deepseek-v3") == "d_c + d_h^R = 512 + 64 = 576"
    assert sizing.kv_formula("llama-3-8b") == "2 n_g d_h = 2 × 8 × 128 = 2,048"
    assert sizing.kv_formula("falcon-7b") == "2 d_h = 2 × 64 = 128"
    assert sizing.kv_formula("deepseek-v3.2") == "d_c + d_h^R + d^I = 512 + 64 + 128 = 704"
    assert sizing.kv_formula("deepseek-v3.2", "mla") == sizing.kv_formula("deepseek-v3.2")
    assert sizing.cache_scheme("deepseek-v3.2") == "dsa" and sizing.cache_scheme("deepseek-v3.2", "mha") == "mha"


def test_format_bytes():
    assert sizing.format_bytes(576) == "576 B"
    assert sizing.format_bytes(70_272) == "70.3 kB"
    assert sizing.format_bytes(499_712) == "500 kB"
    assert sizing.format_bytes(999_999) == "1.00 MB"
    assert sizing.format_bytes(9_210_691_584) == "9.21 GB"


# ----------------------------------------------------------------------------------------------------
# Bad input: ValueError naming the argument and the rule


@pytest.mark.parametrize("kwargs,match", [
    (dict(seq_len=-1), "seq_len=-1 must be a non-negative integer"),
    (dict(seq_len=1.5), "seq_len=1.5 must be a non-negative integer"),
    (dict(batch=0), "batch=0 must be a positive integer"),
    (dict(batch=True), "batch=True must be a positive integer"),
    (dict(scheme="sparse"), "scheme='sparse' must be None"),
    (dict(scheme="gqa", n_kv_heads=5), "n_heads=128 is not divisible by n_kv_heads=5"),
    (dict(scheme="gqa", n_kv_heads=0), "n_kv_heads=0 must be a positive integer"),
    (dict(scheme="gqa", n_kv_heads=2.0), "n_kv_heads=2.0 must be a positive integer"),
    (dict(scheme="mha", n_kv_heads=8), "n_kv_heads=8 applies only to scheme='gqa'"),
    (dict(dtype="int4"), "dtype='int4' must be a torch.dtype"),
    (dict(dtype=torch.bool), "dtype=torch.bool"),
])
def test_kv_cache_bytes_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match.replace("(", r"\(").replace(".", r"\.")):
        sizing.kv_cache_bytes("deepseek-v3", **kwargs)


def test_unknown_model_name():
    with pytest.raises(ValueError, match="model='no-such-model' must be a ModelSpec or one of"):
        sizing.kv_cache_bytes("no-such-model")
    with pytest.raises(ValueError, match="model=42"):
        sizing.cache_bytes_per_token(42)


def test_bad_budgets():
    for bad in (0, -1, float("nan"), "80", True):
        with pytest.raises(ValueError, match="gpu_gib=.* must be a positive number"):
            sizing.tokens_that_fit("deepseek-v3", bad)
    spec = ModelSpec(name="t", n_layers=1, n_heads=2, n_kv_heads=2, head_dim=4, attention="mha",
                     hidden_size=8, source="test")
    with pytest.raises(ValueError, match="n_params of model 't' is unknown"):
        sizing.weight_bytes(spec)


BASE = dict(name="t", n_layers=2, n_heads=12, n_kv_heads=4, head_dim=8, attention="gqa", hidden_size=96,
            source="test")


@pytest.mark.parametrize("change,match", [
    (dict(n_kv_heads=5), "n_heads=12 is not divisible by n_kv_heads=5"),
    (dict(n_layers=0), "n_layers=0 must be a positive integer"),
    (dict(n_heads=12.0), "n_heads=12.0 must be a positive integer"),
    (dict(head_dim=7), "head_dim=7 must be even"),
    (dict(qk_rope_head_dim=3), "qk_rope_head_dim=3 must be even"),
    (dict(kv_lora_rank=-1), "kv_lora_rank=-1 must be a non-negative integer"),
    (dict(attention="flash"), "attention='flash' must be one of"),
    (dict(attention="mha"), "attention='mha' needs n_kv_heads == n_heads"),
    (dict(attention="mqa"), "attention='mqa' needs n_kv_heads=1"),
    (dict(attention="mla"), "attention='mla' needs kv_lora_rank"),
    (dict(name=""), "name='' must be a non-empty string"),
    (dict(source=None), "source=None must be a string"),
])
def test_model_spec_validation(change, match):
    with pytest.raises(ValueError, match=match.replace("(", r"\(").replace(".", r"\.")):
        ModelSpec(**{**BASE, **change})


def test_table1_rejects_bad_input():
    with pytest.raises(ValueError, match="n_h=12 is not divisible by n_g=5"):
        sizing.table1_elements(12, 8, 2, 5, 32, 4)
    with pytest.raises(ValueError, match="d_h_rope=-2 must be a non-negative integer"):
        sizing.table1_elements(12, 8, 2, 4, 32, -2)


# ----------------------------------------------------------------------------------------------------
# Chapter 0's exercises: the worked solutions pass, wrong answers fail


@pytest.fixture(scope="module")
def solutions() -> dict:
    return runpy.run_path(str(ROOT / "notebooks" / "solutions" / "ch00.py"))


CHECKS = {
    "answer_mla_cache_gib": ch00.check_mla_cache_gib,
}


def test_worked_prediction_is_right_and_a_wrong_one_is_explained(solutions):
    check = ch00.check_prediction_cache_meets_weights
    assert check(solutions["prediction_cache_meets_weights"]).startswith("✓")
    assert "write your prediction first" in check(None)
    verdict = check(1_000_000)
    assert verdict.startswith("✗") and "131,072 bytes" in verdict


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_solutions_pass(solutions, name):
    assert CHECKS[name](solutions[name]).startswith("✓")


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_unattempted_answers_get_a_reminder(name):
    assert "not attempted" in CHECKS[name](None)


@pytest.mark.parametrize("name,wrong,hint", [
    ("answer_mla_cache_gib", 7.625, "latent alone"),  # forgot the RoPE key
    ("answer_mla_cache_gib", 9.21, "GB"),  # decimal GB instead of GiB
    ("answer_mla_cache_gib", 8.0, "not yet"),
])
def test_wrong_answers_fail(name, wrong, hint):
    with pytest.raises(AssertionError, match=hint):
        CHECKS[name](wrong)
