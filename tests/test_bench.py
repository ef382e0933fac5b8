"""attnlab.bench: the formulas it reports (attnlab.costs) against hand-computed values, attnlab.sizing and
LayerCache.nbytes; a quick in-process run whose JSON has every scheme and field; bad arguments. No timing is
asserted (timings vary)."""

from __future__ import annotations

import copy
import json

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
    cache_append_bytes,
    cache_bytes,
    cache_elements_per_token,
    decode_attention_flops,
    decode_bytes_moved,
    decode_bytes_read,
    decode_flops,
    weight_elements,
)
from attnlab.dsa import layer_cost
from attnlab.kv_cache import LayerCache
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
    # the appended token: b x the cache's numbers per token (16 / 8 / 6 / 10 above), whatever the context
    assert [cache_append_bytes(s, TINY, torch.float32) for s in ("mha", "gqa", "mla_absorbed", "dsa")] == [
        64, 32, 24, 40]
    assert cache_append_bytes("mha", TINY, torch.bfloat16) == 32
    assert decode_bytes_moved("mha", TINY, 9, torch.float32) == 1664 + 64
    assert decode_bytes_moved("dsa", TINY, 9, "float32") == 1944 + 40
    assert costs.arithmetic_intensity("mha", TINY, 9, "float32", cache_append=True) == pytest.approx(832 / 1728)


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


@pytest.mark.parametrize("scheme", bench.DENSE_SCHEMES)
def test_transposed_v_gives_the_same_decode_step(scheme):
    """MHA's benchmark cache stores V transposed (the token axis innermost), GQA's and MQA's do not; a decode
    step on it returns, in float64, what the same layer returns on the same tokens in the usual layout."""
    cache = filled_cache(scheme, QUICK_SHAPE, 40, torch.device("cpu"), torch.float64)
    transposed = scheme == "mha"
    assert bench.transposed_names(scheme, QUICK_SHAPE) == (("v",) if transposed else ())
    assert (cache.tensors["v"].stride(2) == 1) == transposed and cache.tensors["k"].stride(3) == 1
    plain = LayerCache(seq_dim=2)
    plain.update(**{name: t.contiguous() for name, t in cache.tensors.items()})
    layer = bench.build_layer(scheme, QUICK_SHAPE, torch.device("cpu"), torch.float64)
    x = torch.randn(1, 1, QUICK_SHAPE.d_model, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(layer(x, cache).output, layer(x, plain).output, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("scheme", SCHEMES + bench.NEWER_SCHEMES)
def test_column_major_projections_keep_every_value_and_the_decode_step(scheme):
    """The benchmark's layers store each projection column-major (W^T's rows contiguous) but MLA's W^UKV, which
    the absorbed path views per head: the same parameters, values and decode step, in float64, as the layer
    as built."""
    device, dtype = torch.device("cpu"), torch.float64
    torch.manual_seed(0)
    built = bench.build_layer(scheme, QUICK_SHAPE, device, dtype) if scheme in SCHEMES else \
        bench.build_newer_layer(scheme, QUICK_SHAPE, device, dtype, SMALL)
    rows = copy.deepcopy(built)
    with torch.no_grad():  # back to the usual row-major storage
        for module in rows.modules():
            if isinstance(module, torch.nn.Linear):
                module.weight = torch.nn.Parameter(module.weight.contiguous())
    linears = {name: m.weight for name, m in built.named_modules() if isinstance(m, torch.nn.Linear)}
    assert linears
    for name, w in linears.items():
        row_major = name.rsplit(".", 1)[-1] in bench.ROW_MAJOR_PROJECTIONS
        assert w.stride() == ((w.shape[1], 1) if row_major else (1, w.shape[0])), name
    assert [n for n, _ in built.named_parameters()] == [n for n, _ in rows.named_parameters()]
    for (name, a), (_, b) in zip(built.named_parameters(), rows.named_parameters(), strict=True):
        assert torch.equal(a, b) and a.requires_grad == b.requires_grad, name
    x = torch.randn(1, 1, QUICK_SHAPE.d_model, dtype=dtype)
    if scheme in SCHEMES:
        caches = [filled_cache(scheme, QUICK_SHAPE, 40, device, dtype) for _ in range(2)]
        for name, t in caches[0].tensors.items():
            caches[1].tensors[name].copy_(t)
    else:
        caches = []
        for layer in (built, rows):  # the same random entries in both
            torch.manual_seed(1)
            caches.append(bench.filled_newer_cache(scheme, layer, 40, device, dtype))
    if scheme in SCHEMES:
        decode = bench.decode_call(scheme, built, x, caches[0]), bench.decode_call(scheme, rows, x, caches[1])
    else:
        decode = (lambda: built(x, caches[0]).output), (lambda: rows(x, caches[1]).output)
    with torch.no_grad():
        torch.testing.assert_close(decode[0](), decode[1](), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_weight_elements_equal_parameter_count(scheme):
    layer = bench.build_layer(scheme, QUICK_SHAPE, torch.device("cpu"), torch.float32)
    assert sum(p.numel() for p in layer.parameters()) == weight_elements(scheme, QUICK_SHAPE)


def test_quick_main_writes_complete_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    returned = bench.main(["--quick", "--contexts", "64,128", "--repeats", "1", "--out", str(out)])
    report = json.loads(out.read_text())
    assert report["schemes"] == list(SCHEMES) and report["contexts"] == [64, 128]
    assert report["dtype"] == "float32" and report["device"]["type"] == "cpu"
    assert report["torch_version"] == torch.__version__ and report["date"][:4].isdigit()
    assert report["shape"] == bench.shape_arguments(QUICK_SHAPE)
    assert BenchShape(**report["shape"]) == QUICK_SHAPE
    newer = bench.NewerSettings(**report["newer_settings"])
    assert report["newer_schemes"] == list(bench.NEWER_SCHEMES) and newer == bench.newer_settings(QUICK_SHAPE)
    timed = SCHEMES + bench.NEWER_SCHEMES
    assert {(r["scheme"], r["context"]) for r in report["results"]} == {(s, c) for s in timed for c in (64, 128)}
    assert all(r["group"] == bench.GROUPS[r["scheme"]] for r in report["results"] + report["roofline"])
    assert report["repeats"] == 1 and report["warmup"] == bench.DEFAULT_WARMUP and report["hf_repeats"] == 1
    for r in report["results"]:
        assert r["time_s"] > 0 and r["time_min_s"] > 0 and all(t > 0 for t in r["times_s"])
        assert len(r["times_s"]) == 1 and r["spread"] == 0.0  # one timed round
        assert r["faults_per_call"] >= 0 and r["faults_max"] >= r["faults_per_call"]  # page faults per call
        formula = (cache_bytes(r["scheme"], QUICK_SHAPE, r["context"], torch.float32) if r["group"] == "course" else
                   bench.newer_cache_bytes(r["scheme"], QUICK_SHAPE, r["context"], torch.float32, newer))
        assert r["cache_bytes_measured"] == r["cache_bytes_formula"] == formula
        assert r["time_vs_mha"] > 0 and r["cache_vs_mha"] > 0
    machine = report["machine"]
    for probe in bench.PROBES:  # the better of two passes, before and after the decode rounds
        assert machine[probe] > 0 and machine[probe] == max(machine["probe_passes"][probe]), probe
        assert len(machine["probe_passes"][probe]) == 2
    assert set(report["run"]["sections_s"]) == {"probes", "decode", "probes_again", "sdpa_peer", "hf_peer"}
    assert machine["balance_flops_per_byte"] == pytest.approx(machine["matmul_rate"] / machine["copy_bandwidth"])
    # n_h x (d_c + d_h^R) @ (d_c + d_h^R) x N
    assert machine["decode_matmul_shape"] == [4, 64 + 16, bench.DECODE_MATMUL_TOKENS["cpu"]]
    assert (machine["roofline_bandwidth"], machine["roofline_flops"]) == (machine["read_bandwidth"],
                                                                          machine["decode_matmul_rate"])
    assert machine["roofline_balance"] == pytest.approx(machine["decode_matmul_rate"] / machine["read_bandwidth"])
    assert len(report["roofline"]) == len(report["results"])
    for r in report["roofline"]:
        if r["group"] == "newer":  # the newer schemes' own formulas (attnlab.costs through newer_step_costs)
            counts = bench.newer_step_costs(r["scheme"], QUICK_SHAPE, r["context"], torch.float32, newer)
            assert (r["flops"], r["bytes_read"], r["bytes_appended"]) == (
                counts["flops"], counts["bytes_read"], counts["bytes_appended"])
            assert r["bytes"] == r["bytes_read"] + r["bytes_appended"]
            assert r["intensity"] == pytest.approx(r["flops"] / r["bytes"])
        else:
            assert r["flops"] == decode_flops(r["scheme"], QUICK_SHAPE, r["context"])
            assert r["bytes_read"] == decode_bytes_read(r["scheme"], QUICK_SHAPE, r["context"], torch.float32)
            assert r["bytes_appended"] == cache_append_bytes(r["scheme"], QUICK_SHAPE, torch.float32)
            assert r["bytes"] == r["bytes_read"] + r["bytes_appended"] == decode_bytes_moved(
                r["scheme"], QUICK_SHAPE, r["context"], torch.float32)
            assert r["intensity"] == pytest.approx(costs.arithmetic_intensity(r["scheme"], QUICK_SHAPE, r["context"],
                                                                              torch.float32, cache_append=True))
        assert r["bound"] == roofline_bound(r["intensity"], machine["roofline_balance"])
        assert r["attainable_flops"] == min(machine["decode_matmul_rate"],
                                            r["intensity"] * machine["read_bandwidth"])
        assert r["roofline_fraction"] == pytest.approx(r["achieved_flops"] / r["attainable_flops"])
        for field in ("intensity", "achieved_bandwidth", "bandwidth_fraction", "copy_bandwidth_fraction",
                      "achieved_flops", "flops_fraction"):
            assert r[field] > 0
    sdpa = report["peers"]["sdpa"]
    assert {(r["scheme"], r["context"]) for r in sdpa} == {(s, c) for s in bench.DENSE_SCHEMES for c in (64, 128)}
    assert all(r["ratio_grouped_attention_over_sdpa"] > 0 and r["ratio_grouped_attention_over_sdpa_min"] > 0
               and r["max_abs_diff"] < 1e-4 for r in sdpa)
    assert all(r["ratio_grouped_attention_over_v_t"] == pytest.approx(r["grouped_attention_s"] / r["v_t_s"])
               and r["max_abs_diff_v_t"] < 1e-5 for r in sdpa)
    parts = report["dsa_parts"]  # DSA's step and two of its parts, at the largest context
    shape = QUICK_SHAPE
    assert parts["context"] == 128
    assert parts["index_scores_flops"] == 2 * (shape.index_n_heads * shape.index_head_dim + shape.index_n_heads) * 129
    assert parts["index_key_bytes"] == 129 * shape.index_head_dim * 4
    for name in bench.DSA_PARTS:
        assert parts[f"{name}_time_s"] > 0 and len(parts[f"{name}_times_s"]) == report["repeats"]
    assert parts["index_scores_flop_rate"] == pytest.approx(parts["index_scores_flops"] / parts["index_scores_time_s"])
    assert parts["index_scores_matmul_bandwidth"] == pytest.approx(
        parts["index_key_bytes"] / parts["index_scores_matmul_time_s"])
    # the step's index scores ran the fused kernel exactly when this process built it (float32 on a CPU here)
    kernel = report["fused_kernel"]
    assert kernel == bench.fused_kernel_info()
    assert parts["index_scores_path"] == (f"fused kernel, {kernel['target']}" if kernel["available"] else "matmuls")
    dsa_layer = bench.build_layer("dsa", shape, torch.device("cpu"), torch.float32)
    assert parts["projection_weight_bytes"] == 4 * sum(m.weight.numel() for name, m in dsa_layer.named_modules()
                                                       if isinstance(m, torch.nn.Linear) and name != "mla.w_ukv")
    assert parts["projections_bandwidth"] == pytest.approx(
        parts["projection_weight_bytes"] / parts["projections_time_s"])
    assert bench.dsa_rest_seconds(parts) == pytest.approx(
        parts["step_time_s"] - parts["index_scores_time_s"] - parts["topk_time_s"] - parts["projections_time_s"])
    layouts = report["projection_layouts"]  # each course scheme's projections, row- against column-major
    assert [r["scheme"] for r in layouts] == [s for s in SCHEMES if s != "mla_naive"] == list(bench.LAYOUT_SCHEMES)
    for r in layouts:
        scheme_layer = bench.build_layer(r["scheme"], QUICK_SHAPE, torch.device("cpu"), torch.float32)
        assert r["weight_bytes"] == 4 * sum(m.weight.numel() for name, m in scheme_layer.named_modules()
                                            if isinstance(m, torch.nn.Linear) and not name.endswith("w_ukv"))
        for layout in ("rows", "columns"):
            assert len(r[f"{layout}_times_s"]) == report["repeats"]
            assert r[f"{layout}_bandwidth"] == pytest.approx(r["weight_bytes"] / r[f"{layout}_time_s"])
        assert r["ratio_rows_over_columns"] == pytest.approx(r["rows_time_s"] / r["columns_time_s"])
    hf = report["peers"]["hf_deepseek_v3"]
    assert [r["context"] for r in hf] == [64, 128]
    for r in hf:  # Hugging Face against the library's naive and absorbed MLA, same weights, same cache
        for name in ("hf", "attnlab_naive", "attnlab_absorbed"):
            assert r[f"{name}_s"] > 0 and r[f"{name}_min_s"] > 0 and r[f"{name}_faults_per_call"] >= 0
        for ours in ("attnlab_absorbed", "attnlab_naive"):
            assert r[f"ratio_hf_over_{ours}"] == pytest.approx(r["hf_s"] / r[f"{ours}_s"])
            assert r[f"ratio_hf_over_{ours}_min"] > 0
        assert r["max_abs_diff"] < 1e-4 and r["max_abs_diff_naive"] < 1e-4
    targets = report["targets"]
    assert [t["key"] for t in targets] == [t["key"] for t in bench.TARGETS]
    for t in targets:
        assert t["context"] == 128 and t["goal"] > 0 and t["measured"] > 0 and t["met"] == (t["measured"] >= t["goal"])
    run = report["run"]
    assert 0 < run["wall_s"] < 60 and run["peak_rss_bytes"] > 2**20 and run["minor_page_faults"] > 0
    assert returned["results"] == report["results"]
    printed = capsys.readouterr().out
    assert "Roofline" in printed and "grouped/sdpa" in printed and "HF/absorbed" in printed
    assert printed.count(bench.NEWER_HEADING) == 3  # one decode table per context, and the roofline
    assert "Targets at L = 128 tokens: goal vs measured" in printed and "Run: " in printed


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
    (lambda: bench.check_bench_scheme("sliding"), "scheme='sliding'"),
    (lambda: bench.build_newer_layer("mha", QUICK_SHAPE, torch.device("cpu"), torch.float32), "scheme='mha'"),
    (lambda: bench.NewerSettings(window=0), "window=0"),
    (lambda: bench.column_major_projections("layer"), "layer must be a torch.nn.Module"),
    (lambda: bench.bench_projection_layouts(QUICK_SHAPE, torch.device("cpu"), torch.float32, 1, flush_bytes=0),
     "flush_bytes=0"),
    (lambda: bench.v4_bench_config(QUICK_SHAPE, "sliding"), "layer_type='sliding'"),
    (lambda: bench.newer_step_costs("quest", QUICK_SHAPE, -1, "float32"), "context=-1"),
    (lambda: bench.run_benchmark("cpu", "float32", [64], 1, QUICK_SHAPE, newer={"window": 8}), "newer must be"),
    (lambda: bench.run_benchmark("cpu", "float32", [64], 1, {"d_model": 8}), "shape must be an AttentionShape"),
    (lambda: bench.run_benchmark("cpu", "float32", [64], 1, QUICK_SHAPE, progress="yes"), "progress='yes'"),
    (lambda: bench.run_benchmark("cpu", "float32", [64], 1, QUICK_SHAPE, on_table="print"), "on_table must be"),
    (lambda: bench.bench_dsa_parts(QUICK_SHAPE, 0, torch.device("cpu"), torch.float32, 1), "context=0"),
    (lambda: bench.bench_dsa_parts(QUICK_SHAPE, 64, torch.device("cpu"), torch.float32, 1, flush_bytes=0),
     "flush_bytes=0"),
    (lambda: bench.main(["--quick", "--threads", "0"]), "threads=0"),
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
    context, the roofline, DSA's parts, the SDPA peer; each is what format_report shows for those numbers."""
    tables = []
    report = bench.run_benchmark("cpu", "float32", [40, 48], 1, QUICK_SHAPE, copy_bytes=2**20, gemm_n=64,
                                 hf_peer=False, on_table=tables.append)
    assert [t.split()[0] for t in tables] == ["device", "Decode", "Decode", "Roofline:", "DSA's", "Projections",
                                              "Attention", "Targets", "Run:"]
    results = report["results"]
    assert tables[0] == bench.format_header(report)
    assert tables[1] == bench.format_decode_table([r for r in results if r["context"] == 40])
    assert tables[2] == bench.format_decode_table([r for r in results if r["context"] == 48])
    assert tables[3] == bench.format_roofline_table(report["machine"], report["roofline"])
    assert tables[4] == bench.format_dsa_parts(report["dsa_parts"])
    assert tables[5] == bench.format_projection_layouts(report["projection_layouts"])
    assert tables[6] == bench.format_sdpa_table(report["peers"]["sdpa"])
    assert tables[7] == bench.format_targets_table(report["targets"])
    assert tables[8] == bench.format_run(report["run"])
    assert "\n".join(tables) == bench.format_report(report)
    hf_target = report["targets"][-1]  # no Hugging Face peer in this run: measured None, met None
    assert hf_target["measured"] is None and hf_target["met"] is None


def test_command_line_shows_a_bar_and_prints_each_table_before_the_next_is_measured():
    """python -m attnlab.bench --quick: the tables on stdout in the order measured, a tqdm bar on stderr
    naming what it measures."""
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-m", "attnlab.bench", "--quick", "--contexts", "40", "--repeats", "1"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    out, err = run.stdout, run.stderr.replace("\r", "\n")
    order = [out.index(title) for title in ("device cpu", "Decode step", "Roofline:", "Attention core", "MLA decode",
                                            "Targets at", "Run: ")]
    assert order == sorted(order)
    assert "benchmark:" in err and "%|" in err, err[-1000:]
    assert "mla_absorbed at 40 tokens" in err and "Hugging Face peer at 40 tokens" in err


# --- timing that measures attention: interleaved rounds, spread, page faults ---------------------------


def test_time_interleaved_runs_every_function_once_per_round_in_a_rotating_order():
    calls, resets = [], []
    fns = {name: (lambda n=name: calls.append(n)) for name in ("a", "b", "c")}
    timings = bench.time_interleaved(fns, torch.device("cpu"), repeats=4, warmup=2,
                                     resets={"b": lambda: resets.append("b")})
    rounds = [calls[i:i + 3] for i in range(0, len(calls), 3)]
    assert len(rounds) == 6 and all(sorted(r) == ["a", "b", "c"] for r in rounds)  # every function, every round
    assert [r[0] for r in rounds] == ["a", "b", "c", "a", "b", "c"]  # each starts a round in turn
    assert resets == ["b"] * 6
    for name in fns:
        assert len(timings[name]["times_s"]) == len(timings[name]["faults"]) == 4  # warm-up rounds dropped
        assert all(t >= 0 for t in timings[name]["times_s"]) and all(f >= 0 for f in timings[name]["faults"])


def test_a_context_interleaves_every_scheme_each_round():
    visits = []
    entries = bench.bench_context(QUICK_SHAPE, 40, torch.device("cpu"), torch.float32, repeats=3, warmup=1,
                                  before=visits.append)
    rounds = [visits[i:i + len(SCHEMES)] for i in range(0, len(visits), len(SCHEMES))]
    assert len(rounds) == 4 and all(sorted(r) == sorted(SCHEMES) for r in rounds)
    assert [e["scheme"] for e in entries] == list(SCHEMES)
    for e in entries:
        assert len(e["times_s"]) == 3 and e["time_s"] == sorted(e["times_s"])[1]
        assert e["spread"] >= 0 and e["faults_per_call"] >= 0 and e["cache_bytes_measured"] == e["cache_bytes_formula"]


def test_the_newer_schemes_share_the_rounds_of_the_others():
    visits = []
    timed = SCHEMES + bench.NEWER_SCHEMES
    entries = bench.bench_context(QUICK_SHAPE, 72, torch.device("cpu"), torch.float32, repeats=2, warmup=1,
                                  schemes=timed, before=visits.append)
    rounds = [visits[i:i + len(timed)] for i in range(0, len(visits), len(timed))]
    assert len(rounds) == 3 and all(sorted(r) == sorted(timed) for r in rounds)
    assert [(e["scheme"], e["group"]) for e in entries] == [(s, bench.GROUPS[s]) for s in timed]
    assert all(e["cache_bytes_measured"] == e["cache_bytes_formula"] for e in entries)


# --- the newer schemes: layers, caches filled directly, their formulas --------------------------------------

# a window and blocks small enough that the ring wraps and several blocks exist at these contexts
SMALL = bench.NewerSettings(window=24, n_sinks=3, block_size=8, top_blocks=2, conv_size=4, v4_window=16,
                            csa_rate=4, hca_rate=16)


def test_newer_settings_of_the_default_layer():
    """W = 4096 with 4 sinks, Quest 4 blocks of 64 (= DSA's top-k 256), V4's own window 128 and rates 4, 128;
    the V4 layer sized like the bench layer: c = d_c = 256, d^R = 32, d'_c = 256, 2 output groups of 512."""
    assert bench.newer_settings(DEFAULT_SHAPE) == bench.NewerSettings()
    assert bench.NewerSettings() == bench.NewerSettings(window=4096, n_sinks=4, block_size=64, top_blocks=4,
                                                        conv_size=4, v4_window=128, csa_rate=4, hca_rate=128)
    csa = bench.v4_bench_config(DEFAULT_SHAPE, "csa")
    assert (csa.d_model, csa.n_heads, csa.head_dim, csa.rope_head_dim, csa.q_lora_rank, csa.o_groups,
            csa.o_lora_rank, csa.window, csa.compress_rate) == (1024, 16, 256, 32, 256, 2, 512, 128, 4)
    assert (csa.index_n_heads, csa.index_head_dim, csa.index_topk) == (4, 64, 256)
    assert bench.v4_bench_config(DEFAULT_SHAPE, "hca").compress_rate == 128
    q = bench.newer_settings(QUICK_SHAPE)
    assert q.block_size * q.top_blocks == QUICK_SHAPE.index_topk


@pytest.mark.parametrize("scheme", bench.NEWER_SCHEMES)
@pytest.mark.parametrize("context", [5, 40, 70])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_newer_caches_filled_directly_hold_what_the_formulas_count(scheme, context, dtype):
    layer = bench.build_newer_layer(scheme, QUICK_SHAPE, torch.device("cpu"), dtype, SMALL)
    cache = bench.filled_newer_cache(scheme, layer, context, torch.device("cpu"), dtype)
    assert cache.seq_len == context
    assert cache.nbytes == bench.newer_cache_bytes(scheme, QUICK_SHAPE, context, dtype, SMALL)
    assert bench.newer_cache_bytes(scheme, QUICK_SHAPE, context, dtype, SMALL) > 0


def _step_flops(layer, x, cache) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        layer(x, cache=cache)
    return counter.get_total_flops()


@pytest.mark.parametrize("scheme", bench.NEWER_SCHEMES)
@pytest.mark.parametrize("context", [8, 40, 70])  # V4: 2 or more entries (torch counts no contraction of length 1)
def test_newer_steps_do_the_flops_the_formulas_count_and_reset_exactly(scheme, context):
    """One decode step of each newer layer on its directly filled cache: torch's FLOP counter counts the formula's
    FLOPs (Gated DeltaNet's rank-1 write, an outer product, and its one-token convolution, a multiply and a sum,
    which torch does not count, aside); after the reset the cache is as it was: the same nbytes, and the next
    step gives the very same output."""
    layer = bench.build_newer_layer(scheme, QUICK_SHAPE, torch.device("cpu"), torch.float64, SMALL)
    cache = bench.filled_newer_cache(scheme, layer, context, torch.device("cpu"), torch.float64)
    reset = bench.newer_reset(scheme, cache, context)
    nbytes = cache.nbytes
    x = torch.randn(1, 1, QUICK_SHAPE.d_model, dtype=torch.float64)
    counted = _step_flops(layer, x, cache)
    if scheme == "gated_deltanet":
        counted += 2 * QUICK_SHAPE.n_heads * QUICK_SHAPE.head_dim * QUICK_SHAPE.v_head_dim
        counted += 2 * layer.config.conv_channels * layer.config.conv_size  # sum_j w_j x_j per channel
    assert counted == bench.newer_step_costs(scheme, QUICK_SHAPE, context, torch.float64, SMALL)["flops"]
    for _ in range(3):
        reset()
        assert cache.nbytes == nbytes and cache.seq_len == context
        with torch.no_grad():
            first = layer(x, cache=cache).output
        reset()
        with torch.no_grad():
            assert torch.equal(layer(x, cache=cache).output, first)


def test_newer_step_costs_by_hand():
    """The default layer at 32K tokens, float32: the window reads 4100 keys whatever L; Gated DeltaNet the same
    at every L; HCA's entries grow as L / 128 and CSA's index keys as L / 4."""
    s, f = DEFAULT_SHAPE, "float32"
    w = bench.newer_step_costs("gqa_window", s, 32768, f)
    assert w == bench.newer_step_costs("gqa_window", s, 100_000, f)
    assert w["bytes_read"] == 4 * (weight_elements("gqa", s) + 2 * 4 * 64 * 4100)
    assert bench.newer_step_costs("gqa_window", s, 1024, f)["flops"] == decode_flops("gqa", s, 1024)
    g = bench.newer_step_costs("gated_deltanet", s, 32768, f)
    assert g == bench.newer_step_costs("gated_deltanet", s, 1024, f)
    hca = [bench.newer_step_costs("v4_hca", s, L, f)["bytes_read"] for L in (1024, 32768)]
    assert hca[1] - hca[0] == 4 * (32769 // 128 - 1025 // 128) * 256
    csa = [bench.newer_step_costs("v4_csa", s, L, f)["bytes_read"] for L in (1024, 32768)]
    assert csa[1] - csa[0] == 4 * (32769 // 4 - 1025 // 4) * 64 + 4 * 128 * 0  # only index keys grow (k' = 256)


def test_middle_spread_ignores_the_outer_quarters():
    assert bench.middle_spread([1.0]) == 0.0
    assert bench.middle_spread([10.0, 1.0, 1.0, 1.1, 1.0, 1.05, 1.0, 0.1]) == pytest.approx(0.05)  # 1.0 .. 1.05
    summary = bench.timing_summary({"times_s": [2.0, 1.0, 3.0], "faults": [4, 0, 2]}, prefix="x_")
    assert summary == {"x_time_s": 2.0, "x_time_min_s": 1.0, "x_times_s": [2.0, 1.0, 3.0],
                       "x_spread": pytest.approx(1.0), "x_faults_per_call": 2.0, "x_faults_max": 4}


def test_page_faults_are_counted_per_call():
    """A call that touches fresh memory page-faults it in (64 MiB: mapped afresh by glibc every time); one that
    reuses a buffer does not."""
    buffer = torch.empty(2**22)
    buffer.fill_(1.0)
    timings = bench.time_interleaved({"fresh": lambda: torch.ones(2**24), "reuse": lambda: buffer.fill_(2.0)},
                                     torch.device("cpu"), repeats=3, warmup=1)
    assert min(timings["fresh"]["faults"]) >= 16  # 16,384 pages of 4 KiB, or 32 huge pages of 2 MiB
    assert max(timings["reuse"]["faults"]) < 16


def test_allocator_info_says_which_pages_a_run_used():
    info = bench.allocator_info()
    assert set(info) == {bench.HUGE_PAGES_VARIABLE, "transparent_hugepage", "huge_pages", "malloc"}
    assert isinstance(info["huge_pages"], bool)
    assert info["malloc"] is None  # this process never called steady_heap (the command line's own does)


def test_the_command_line_keeps_the_heap_steady_and_says_so(tmp_path):
    """python -m attnlab.bench fixes glibc's malloc thresholds in its own process and records them."""
    import subprocess
    import sys

    out = tmp_path / "quick.json"
    subprocess.run([sys.executable, "-m", "attnlab.bench", "--quick", "--contexts", "40", "--repeats", "1",
                    "--out", str(out)], check=True, capture_output=True)
    assert json.loads(out.read_text())["allocator"]["malloc"] == bench.STEADY_HEAP


def test_the_command_line_asks_for_huge_pages_before_torch_allocates():
    """In a fresh process request_huge_pages() sets the allocator's variable before torch allocates, and reports
    what the allocator then does. Whether the kernel hands out huge pages at that moment depends on its free
    memory (a fragmented, busy machine has none), so the test asks for an honest report, not for huge pages."""
    import os
    import subprocess
    import sys

    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled", encoding="utf-8") as f:
            allowed = "[never]" not in f.read()
    except OSError:
        pytest.skip("no transparent huge pages here")
    env = {k: v for k, v in os.environ.items() if k != bench.HUGE_PAGES_VARIABLE}
    code = ("import os; from attnlab import bench; got = bench.request_huge_pages(); "
            "print(os.environ[bench.HUGE_PAGES_VARIABLE], got, bench.allocator_info()['huge_pages'])")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    variable, requested, reported = run.stdout.split()
    assert variable == "1", run.stderr[-2000:]
    assert requested == reported  # request_huge_pages() says what the allocator does
    if not allowed:  # THP "never": no huge pages, whatever the variable says
        assert requested == "False"


def test_the_machine_keeps_the_better_pass_of_each_probe():
    first = {"copy_bandwidth": 30e9, "read_bandwidth": 20e9, "matmul_rate": 80e9, "decode_matmul_rate": 60e9}
    second = {"copy_bandwidth": 25e9, "read_bandwidth": 40e9, "matmul_rate": 90e9, "decode_matmul_rate": 50e9}
    m = bench.machine_record(first, second, 2**27, 1024, [16, 288, 384])
    assert (m["copy_bandwidth"], m["read_bandwidth"], m["matmul_rate"], m["decode_matmul_rate"]) == (
        30e9, 40e9, 90e9, 60e9)
    assert m["roofline_balance"] == pytest.approx(60e9 / 40e9) and m["balance_flops_per_byte"] == pytest.approx(3.0)
    assert m["probe_passes"]["read_bandwidth"] == [20e9, 40e9]
    with pytest.raises(ValueError, match="second must map"):
        bench.machine_record(first, {**second, "read_bandwidth": 0.0}, 2**27, 1024, [16, 288, 384])


def test_probes_return_positive_rates():
    cpu = torch.device("cpu")
    assert bench.measure_copy_bandwidth(cpu, torch.float32, 2**22, 2) > 0
    assert bench.measure_read_bandwidth(cpu, torch.float32, 2**22, 2) > 0
    assert bench.measure_matmul_rate(cpu, torch.float32, 64, 2) > 0
    rows, width, tokens = bench.decode_matmul_shape(DEFAULT_SHAPE, 256)
    assert (rows, width, tokens) == (16, 256 + 32, 256)
    assert bench.measure_decode_matmul_rate(cpu, torch.float32, rows, width, tokens, 2) > 0


# --- the Hugging Face peer: its cache filled directly -----------------------------------------------------


def test_hf_cache_filled_directly_is_what_a_prefill_caches():
    """DeepseekV3Attention's prefill caches (1, 1, L, d_c) latents and (1, 1, L, d_h^R) rotated keys; filling a
    DynamicCache with those tensors directly gives the same cache, the same next step, and the library's naive
    and absorbed MLA agree with it on the same latents."""
    import math

    from attnlab.huggingface import attention_forward
    from attnlab.kv_cache import LayerCache
    from attnlab.mla import from_transformers

    shape, context, cpu = QUICK_SHAPE, 40, torch.device("cpu")
    torch.manual_seed(0)
    attention, rotary, dynamic_cache = bench.hf_attention(shape, context + 1, cpu, torch.float32)
    with torch.inference_mode():
        prefilled = dynamic_cache(config=attention.config)
        x = torch.randn(1, context, shape.d_model)
        cos, sin = rotary(x, torch.arange(context)[None])
        mask = torch.full((context, context), -math.inf).triu(1)
        attention_forward(attention, x, (cos, sin), mask[None, None], prefilled)
        keys, values = prefilled.layers[0].keys, prefilled.layers[0].values
        assert keys.shape == (1, 1, context, shape.kv_lora_rank)
        assert values.shape == (1, 1, context, shape.qk_rope_head_dim)
        direct = bench.hf_filled_cache(attention, keys[:, 0], values[:, 0])
        assert type(direct.layers[0]) is type(prefilled.layers[0])
        assert torch.equal(direct.layers[0].keys, keys) and torch.equal(direct.layers[0].values, values)
        assert direct.get_seq_length() == prefilled.get_seq_length() == context
        x_new = torch.randn(1, 1, shape.d_model)
        cos, sin = rotary(x_new, torch.tensor([[context]]))
        out_prefilled = attention_forward(attention, x_new, (cos, sin), None, prefilled)[0]
        out_direct = attention_forward(attention, x_new, (cos, sin), None, direct)[0]
        assert torch.equal(out_prefilled, out_direct)
        for mode in ("naive", "absorbed"):
            cache = LayerCache(seq_dim=1, capacity=context + 1)
            cache.update(c_kv=keys[:, 0], k_rope=values[:, 0])
            ours = from_transformers(attention).eval().use(mode)(x_new, cache).output
            torch.testing.assert_close(ours, out_direct, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="c_kv"):
        bench.hf_filled_cache(attention, keys[:, 0, :, :8], values[:, 0])


# --- targets ---------------------------------------------------------------------------------------------


def _fake_report(dsa_ms=2.0, absorbed_ms=12.0, mha_ms=20.0, hf_ms=60.0):
    """A report with the fields measure_targets reads, at contexts 1024 and 32768."""
    big = 32768
    results = [{"scheme": s, "context": c, "time_s": t / 1e3} for c in (1024, big)
               for s, t in (("mha", mha_ms), ("mla_absorbed", absorbed_ms), ("dsa", dsa_ms))]
    roofline = [{"scheme": "mha", "context": big, "bytes_read": 300e6},
                {"scheme": "mla_absorbed", "context": big, "roofline_fraction": 0.55, "achieved_flops": 44e9,
                 "attainable_flops": 80e9, "intensity": 11.0, "bound": "compute"}]
    hf = [{"context": big, "hf_s": hf_ms / 1e3, "attnlab_absorbed_s": absorbed_ms / 1e3, "attnlab_naive_s": 0.4,
           "ratio_hf_over_attnlab_absorbed": hf_ms / absorbed_ms, "ratio_hf_over_attnlab_naive": hf_ms / 400}]
    return {"contexts": [1024, big], "results": results, "roofline": roofline, "peers": {"hf_deepseek_v3": hf},
            "machine": {"copy_bandwidth": 20e9, "read_bandwidth": 25e9}}


def test_targets_compare_the_largest_context_with_the_goals():
    targets = bench.measure_targets(_fake_report())
    by_key = {t["key"]: t for t in targets}
    assert list(by_key) == ["dsa_speedup_over_mla_absorbed", "mha_copy_bandwidth_fraction",
                            "mla_absorbed_roofline_fraction", "hf_slowdown_over_mla_absorbed"]
    assert [t["goal"] for t in targets] == [5.0, 0.5, 0.4, 3.0]
    assert all(t["context"] == 32768 for t in targets)
    assert by_key["dsa_speedup_over_mla_absorbed"]["measured"] == pytest.approx(6.0)
    assert by_key["mha_copy_bandwidth_fraction"]["measured"] == pytest.approx(300e6 / 0.020 / 20e9)  # 0.75
    assert by_key["mla_absorbed_roofline_fraction"]["measured"] == 0.55
    assert by_key["hf_slowdown_over_mla_absorbed"]["measured"] == pytest.approx(5.0)
    assert all(t["met"] for t in targets)
    missed = {t["key"]: t["met"] for t in bench.measure_targets(_fake_report(dsa_ms=6.0, hf_ms=24.0))}
    assert missed["dsa_speedup_over_mla_absorbed"] is False and missed["hf_slowdown_over_mla_absorbed"] is False
    table = bench.format_targets_table(targets)
    assert table.startswith("Targets at L = 32,768 tokens: goal vs measured")
    for row, goal, measured in (("DSA at least 5x", ">= 5.00x", "6.00x"), ("MHA at least 50%", ">= 50%", "75%"),
                                ("absorbed MLA at least 40%", ">= 40%", "55%"), ("HF Deepseek", ">= 3.00x", "5.00x")):
        line = next(line for line in table.splitlines() if row in line)
        assert goal in line and measured in line and " yes " in line


@pytest.mark.parametrize("call, match", [
    (lambda: bench.time_interleaved({}, torch.device("cpu"), 1), "calls must be"),
    (lambda: bench.time_interleaved({"a": lambda: None}, torch.device("cpu"), 0), "repeats=0"),
    (lambda: bench.time_interleaved({"a": lambda: None}, torch.device("cpu"), 1, warmup=-1), "warmup=-1"),
    (lambda: bench.time_interleaved({"a": lambda: None}, torch.device("cpu"), 1, resets={"b": print}), "resets"),
    (lambda: bench.middle_spread([]), "times"),
    (lambda: bench.decode_matmul_shape(TINY, 0), "tokens=0"),
    (lambda: bench.measure_decode_matmul_rate(torch.device("cpu"), torch.float32, 0, 8, 8, 1), "rows=0"),
    (lambda: bench.run_benchmark("cpu", "float32", [64], 1, QUICK_SHAPE, warmup=-1), "warmup=-1"),
    (lambda: bench.run_benchmark("cpu", "float32", [64], 1, QUICK_SHAPE, hf_repeats=0), "hf_repeats=0"),
    (lambda: bench.run_benchmark("cpu", "float32", [64], 1, QUICK_SHAPE, decode_tokens=0), "decode_tokens=0"),
    (lambda: bench.run_benchmark("cpu", "float32", [64], 1, QUICK_SHAPE, hf_peer="no"), "hf_peer='no'"),
    (lambda: costs.cache_append_bytes("mha", TINY, "int4"), "dtype='int4'"),
    (lambda: costs.arithmetic_intensity("mha", TINY, 8, "float32", cache_append="yes"), "cache_append='yes'"),
])
def test_new_arguments_are_checked(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_free_memory_goes_back_to_the_system_between_contexts():
    import platform

    # glibc's malloc_trim where the C library is glibc; elsewhere the garbage is collected only
    assert bench.release_free_memory() is (platform.libc_ver()[0] == "glibc")
