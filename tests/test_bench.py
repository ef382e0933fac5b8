"""attnlab.bench: the formulas it reports (attnlab.costs) against hand-computed values, attnlab.sizing and
LayerCache.nbytes; a quick in-process run whose JSON has every scheme and field; bad arguments. No timing is
asserted (timings vary)."""

from __future__ import annotations

import json
import time

import pytest
import torch

from attnlab import bench, costs
from attnlab.bench import (
    DEFAULT_SHAPE,
    QUICK_SHAPE,
    SCHEMES,
    BenchShape,
    filled_cache,
    roofline_bound,
)
from attnlab.costs import (
    cache_bytes,
    cache_elements_per_token,
    decode_attention_flops,
    decode_bytes_read,
    decode_flops,
    weight_elements,
)
from attnlab.dsa import layer_cost
from attnlab.sizing import ModelSpec, attention_macs_per_cached_token, kv_elements_per_token

# d = 8, n_h = 4 heads of d_h = 2, GQA n_kv = 2, d_c = 4, d_h^R = 2, H^I = 2 x d^I = 4, k = 3
TINY = BenchShape(d_model=8, n_heads=4, head_dim=2, n_groups=2, kv_lora_rank=4, qk_rope_head_dim=2,
                  index_n_heads=2, index_head_dim=4, index_topk=3)


def test_formulas_by_hand():
    """Hand-computed for TINY at context 9 (T = 10 keys), see the comments for the arithmetic."""
    # cache: 2 n_kv d_h = 16 / 8 / 4; MLA d_c + d_h^R = 6; DSA + d^I = 10
    assert [cache_elements_per_token(s, TINY) for s in SCHEMES] == [16, 8, 4, 6, 6, 10]
    # MHA 8*4*2 + 2*8*4*2 + 4*2*8 = 256; GQA 64 + 64 + 64 = 192; MQA 64 + 32 + 64 = 160
    # MLA 8*4*4 + 8*6 + 4*4*4 + 4*2*8 + 4 = 308; DSA + 8*2*4 + 8*4 + 2*4 + 8*2 = 428
    assert [weight_elements(s, TINY) for s in SCHEMES] == [256, 192, 160, 308, 308, 428]
    # MHA 2*256 + 4*4*2*10 = 832; MQA 2*160 + 320 = 640
    # absorbed 2*304 + 2*4*(2*4 + 2)*10 = 1408; naive 2*(304 - 64) + 2*4*4*4*10 + 2*4*6*10 = 2240
    # DSA 2*(428 - 4 - 8) + (2*2*4 + 2*2)*10 + 2*4*10*min(3, 10) = 832 + 200 + 240 = 1272
    assert decode_flops("mha", TINY, 9) == 832
    assert decode_flops("mqa", TINY, 9) == 640
    assert decode_flops("mla_absorbed", TINY, 9) == 1408
    assert decode_flops("mla_naive", TINY, 9) == 2240
    assert decode_flops("dsa", TINY, 9) == 1272
    # float32: MHA 4*(256 + 160) ; GQA 4*(192 + 80); absorbed 4*(308 + 60); naive 4*(308 + 60 + 2*4*6*10);
    # DSA 4*(428 + 4*10 + 6*3)
    assert decode_bytes_read("mha", TINY, 9, torch.float32) == 1664
    assert decode_bytes_read("gqa", TINY, 9, "float32") == 1088
    assert decode_bytes_read("mla_absorbed", TINY, 9, torch.float32) == 1472
    assert decode_bytes_read("mla_naive", TINY, 9, torch.float32) == 3392
    assert decode_bytes_read("dsa", TINY, 9, torch.float32) == 1944
    assert decode_bytes_read("mha", TINY, 9, torch.bfloat16) == 832
    assert cache_bytes("mha", TINY, 9, torch.bfloat16) == 9 * 16 * 2
    assert costs.arithmetic_intensity("mha", TINY, 9, torch.float32) == pytest.approx(832 / 1664)


def test_roofline_bound():
    assert roofline_bound(0.5, 10.0) == "memory"
    assert roofline_bound(20.0, 10.0) == "compute"
    assert bench.attainable_flops(1.0, 5e9, 1e12) == 5e9
    assert bench.attainable_flops(1e6, 5e9, 1e12) == 1e12
    with pytest.raises(ValueError, match="must be positive"):
        roofline_bound(0.0, 1.0)


@pytest.mark.parametrize("shape", [TINY, QUICK_SHAPE, DEFAULT_SHAPE], ids=["tiny", "quick", "default"])
def test_formulas_match_sizing_and_dsa_layer_cost(shape):
    spec = ModelSpec(name="bench", n_layers=1, n_heads=shape.n_heads, n_kv_heads=shape.n_kv_heads,
                     head_dim=shape.head_dim, attention="mla", hidden_size=shape.d_model, source="attnlab.bench",
                     kv_lora_rank=shape.kv_lora_rank, qk_rope_head_dim=shape.qk_rope_head_dim,
                     index_n_heads=shape.index_n_heads, index_head_dim=shape.index_head_dim,
                     index_topk=shape.index_topk)
    assert spec.attention_shape() == shape  # the same layer, as sizing sees a published model
    for scheme, sizing_scheme, n_kv in (("mha", "mha", None), ("gqa", "gqa", shape.n_kv_heads),
                                        ("mqa", "mqa", None), ("mla_absorbed", "mla", None)):
        assert cache_elements_per_token(scheme, shape) == kv_elements_per_token(spec, sizing_scheme, n_kv,
                                                                                per_layer=True)
        for context in (1, 100, 5000):
            macs = attention_macs_per_cached_token(spec, sizing_scheme, n_kv)
            assert decode_attention_flops(scheme, shape, context) == 2 * macs * (context + 1)
    for context in (1, shape.index_topk, 3 * shape.index_topk):
        for by in (spec, shape):
            cost = layer_cost(by, context + 1, shape.index_topk, q_lora_rank=shape.d_model)
            assert decode_attention_flops("mla_absorbed", shape, context) == cost["decode_flops_dense"]
            dsa_extra = decode_flops("dsa", shape, context) - costs.projection_flops("mla_absorbed", shape)
            assert dsa_extra == cost["decode_flops_dsa"]


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cache_bytes_equal_layer_cache_nbytes(scheme, dtype):
    cache = filled_cache(scheme, TINY, 7, torch.device("cpu"), dtype)
    assert cache.seq_len == 7
    assert cache.nbytes == cache_bytes(scheme, TINY, 7, dtype)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_weight_elements_equal_parameter_count(scheme):
    layer = bench.build_layer(scheme, QUICK_SHAPE, torch.device("cpu"), torch.float32)
    assert sum(p.numel() for p in layer.parameters()) == weight_elements(scheme, QUICK_SHAPE)


def test_quick_main_writes_complete_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    start = time.perf_counter()
    returned = bench.main(["--quick", "--contexts", "64,128", "--repeats", "1", "--out", str(out)])
    assert time.perf_counter() - start < 20
    report = json.loads(out.read_text())
    assert report["schemes"] == list(SCHEMES) and report["contexts"] == [64, 128]
    assert report["dtype"] == "float32" and report["device"]["type"] == "cpu"
    assert report["torch_version"] == torch.__version__ and report["date"][:4].isdigit()
    assert report["shape"] == bench.shape_arguments(QUICK_SHAPE)
    assert BenchShape(**report["shape"]) == QUICK_SHAPE
    assert {(r["scheme"], r["context"]) for r in report["results"]} == {(s, c) for s in SCHEMES for c in (64, 128)}
    for r in report["results"]:
        assert r["time_s"] > 0 and r["time_min_s"] > 0 and all(t > 0 for t in r["times_s"])
        assert r["cache_bytes_measured"] == r["cache_bytes_formula"] == cache_bytes(
            r["scheme"], QUICK_SHAPE, r["context"], torch.float32)
        assert r["time_vs_mha"] > 0 and r["cache_vs_mha"] > 0
    machine = report["machine"]
    assert machine["copy_bandwidth"] > 0 and machine["matmul_rate"] > 0
    assert machine["balance_flops_per_byte"] == pytest.approx(machine["matmul_rate"] / machine["copy_bandwidth"])
    assert len(report["roofline"]) == len(report["results"])
    for r in report["roofline"]:
        assert r["flops"] == decode_flops(r["scheme"], QUICK_SHAPE, r["context"])
        assert r["bytes"] == decode_bytes_read(r["scheme"], QUICK_SHAPE, r["context"], torch.float32)
        assert r["bound"] in ("memory", "compute")
        for field in ("intensity", "achieved_bandwidth", "bandwidth_fraction", "achieved_flops", "flops_fraction"):
            assert r[field] > 0
    sdpa = report["peers"]["sdpa"]
    assert {(r["scheme"], r["context"]) for r in sdpa} == {(s, c) for s in bench.DENSE_SCHEMES for c in (64, 128)}
    assert all(r["ratio_grouped_attention_over_sdpa"] > 0 and r["ratio_grouped_attention_over_sdpa_min"] > 0
               and r["max_abs_diff"] < 1e-4 for r in sdpa)
    hf = report["peers"]["hf_deepseek_v3"]
    assert [r["context"] for r in hf] == [64, 128]
    assert all(r["ratio_hf_over_attnlab_absorbed"] > 0 and r["ratio_hf_over_attnlab_absorbed_min"] > 0
               and r["hf_s"] > 0 and r["attnlab_absorbed_s"] > 0 and r["max_abs_diff"] < 1e-4 for r in hf)
    assert returned["results"] == report["results"]
    printed = capsys.readouterr().out
    assert "Roofline" in printed and "grouped/sdpa" in printed and "HF/attnlab" in printed


@pytest.mark.parametrize("call, match", [
    (lambda: decode_flops("sliding", TINY, 8), "scheme='sliding'"),
    (lambda: bench.check_scheme("mla"), "scheme='mla'"),
    (lambda: cache_bytes("mha", TINY, 8, "float64"), "dtype='float64'"),
    (lambda: bench.parse_dtype(torch.int8), "dtype="),
    (lambda: decode_flops("mha", TINY, -1), "context=-1"),
    (lambda: decode_bytes_read("mha", TINY, -4, "float32"), "context=-4"),
    (lambda: bench.parse_device("tpu"), "device='tpu'"),
    (lambda: bench.parse_contexts("64,0"), "context=0"),
    (lambda: bench.parse_contexts("64,abc"), "comma-separated"),
    (lambda: bench.run_benchmark("cpu", "float32", [16], 1, QUICK_SHAPE), "index_topk=32"),
    (lambda: bench.run_benchmark("cpu", "float32", [64], 0, QUICK_SHAPE), "repeats=0"),
    (lambda: BenchShape(n_heads=16, n_groups=3), "n_groups=3"),
    (lambda: bench.n_kv_heads("dsa", TINY), "K/V heads"),
    (lambda: bench.run_benchmark("cpu", "float32", [64], 1, {"d_model": 8}), "shape must be an AttentionShape"),
    (lambda: bench.run_benchmark("cpu", "float32", [64], 1, QUICK_SHAPE, progress="yes"), "progress='yes'"),
    (lambda: bench.run_benchmark("cpu", "float32", [64], 1, QUICK_SHAPE, on_table="print"), "on_table must be"),
])
def test_bad_arguments_raise_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_main_rejects_bad_arguments():
    with pytest.raises(ValueError, match="dtype='float16'"):
        bench.main(["--quick", "--dtype", "float16"])
    with pytest.raises(ValueError, match="device='metal'"):
        bench.main(["--quick", "--device", "metal"])
    with pytest.raises(ValueError, match="context=-1"):
        bench.main(["--quick", "--contexts", "64,-1"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised where CUDA is absent")
def test_cuda_without_gpu_raises():
    with pytest.raises(ValueError, match="needs CUDA"):
        bench.parse_device("cuda")


# --- progress: tables as they are measured, a bar on the terminal -------------------------------------


def test_tables_arrive_as_measured_and_match_the_report():
    """on_table receives each section as soon as its numbers exist: the header, one decode table per
    context, the roofline, the SDPA peer; each is what format_report shows for those numbers."""
    tables = []
    report = bench.run_benchmark("cpu", "float32", [40, 48], 1, QUICK_SHAPE, copy_bytes=2**20, gemm_n=64,
                                 hf_peer=False, on_table=tables.append)
    assert [t.split()[0] for t in tables] == ["device", "Decode", "Decode", "Roofline:", "Attention"]
    results = report["results"]
    assert tables[0] == bench.format_header(report)
    assert tables[1] == bench.format_decode_table([r for r in results if r["context"] == 40])
    assert tables[2] == bench.format_decode_table([r for r in results if r["context"] == 48])
    assert tables[3] == bench.format_roofline_table(report["machine"], report["roofline"])
    assert tables[4] == bench.format_sdpa_table(report["peers"]["sdpa"])
    assert all(table in bench.format_report(report) for table in (tables[0], tables[3], tables[4]))


def test_command_line_shows_a_bar_and_prints_each_table_before_the_next_is_measured():
    """python -m attnlab.bench --quick: the tables on stdout in the order measured, a tqdm bar on stderr
    naming what it measures."""
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-m", "attnlab.bench", "--quick", "--contexts", "40", "--repeats", "1"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    out, err = run.stdout, run.stderr.replace("\r", "\n")
    order = [out.index(title) for title in ("device cpu", "Decode step", "Roofline:", "Attention core", "MLA decode")]
    assert order == sorted(order)
    assert "benchmark:" in err and "%|" in err, err[-1000:]
    assert "mla_absorbed at 40 tokens" in err and "Hugging Face peer at 40 tokens" in err
