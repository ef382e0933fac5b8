"""Chapter 14 (how fast, really): the benchmark report loaders, the widget and the exercise checks."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pytest

from attnlab import bench, costs
from attnlab.exercises import ch14
from attnlab.interactive import bench as ui

SOLUTIONS = Path(__file__).resolve().parents[1] / "notebooks" / "solutions"


@pytest.fixture(scope="module")
def report():
    return ui.load_results()


@pytest.fixture(scope="module")
def raw():
    return json.loads(ui.CPU_RESULTS.read_text())


# ------------------------------------------------------------------------------------------- loaders


def test_load_results_reads_the_committed_cpu_run(report, raw):
    assert report == raw
    assert report["device"]["type"] == "cpu"
    assert report["schemes"] == list(bench.SCHEMES)
    label = ui.report_label(report)
    assert report["date"][:10] in label and report["dtype"] in label and report["device"]["name"] in label


def test_load_results_rejects_a_file_that_is_not_a_report(tmp_path):
    path = tmp_path / "other.json"
    path.write_text(json.dumps({"device": {}}))
    with pytest.raises(ValueError, match="not a benchmark report"):
        ui.load_results(path)


def test_select_rows_joins_the_json_entries(report, raw):
    for context in raw["contexts"]:
        rows = ui.select_rows(report, ["dsa", "mha"], context)
        assert [r["scheme"] for r in rows] == ["dsa", "mha"]
        for row in rows:
            timing = next(r for r in raw["results"] if (r["scheme"], r["context"]) == (row["scheme"], context))
            roof = next(r for r in raw["roofline"] if (r["scheme"], r["context"]) == (row["scheme"], context))
            assert row["time_s"] == timing["time_s"] and row["intensity"] == roof["intensity"]
            assert row["cache_bytes_measured"] == timing["cache_bytes_measured"]


def test_select_rows_validates(report):
    with pytest.raises(ValueError, match="context"):
        ui.select_rows(report, ["mha"], 1000)
    with pytest.raises(ValueError, match="scheme"):
        ui.select_rows(report, ["mla"], report["contexts"][0])
    with pytest.raises(ValueError, match="at least one"):
        ui.select_rows(report, [], report["contexts"][0])


def _course(row: dict) -> bool:
    """A row of the six schemes (a report may also hold the newer schemes' rows, "group": "newer")."""
    return row.get("group", "course") == "course"


def test_committed_caches_match_the_formula_and_the_ratios_follow(report):
    assert ui.cache_matches_formula(report)
    shape = bench.BenchShape(**report["shape"])
    newer = ui.newer_settings_of(report)
    for r in report["results"]:
        formula = (costs.cache_bytes(r["scheme"], shape, r["context"], report["dtype"]) if _course(r)
                   else bench.newer_cache_bytes(r["scheme"], shape, r["context"], report["dtype"], newer))
        assert r["cache_bytes_formula"] == formula
    big = max(report["contexts"])
    ratios = ui.ratios_vs_mha(report, big)
    assert ratios["mha"] == {"time": 1.0, "cache": 1.0}
    assert ratios["mqa"]["cache"] == 1 / shape.n_heads
    broken = json.loads(json.dumps(report))
    broken["results"][0]["cache_bytes_measured"] += 1
    assert not ui.cache_matches_formula(broken)


def test_peer_ratios_and_roofline_entries_match_the_formulas(report):
    peers = ui.peer_ratios(report)
    dense = ("mha", "gqa", "mqa")
    assert set(peers) == {*(f"{kind}_{s}" for kind in ("sdpa", "vt") for s in dense), "hf_over_absorbed",
                          "hf_over_naive"}
    for r in report["peers"]["sdpa"]:  # V in rows over V transposed, from the same rounds' medians
        assert peers[f"vt_{r['scheme']}"][r["context"]] == pytest.approx(r["grouped_attention_s"] / r["v_t_s"])
    assert sorted(peers["hf_over_absorbed"]) == sorted(peers["hf_over_naive"]) == report["contexts"]
    shape = bench.BenchShape(**report["shape"])
    for r in report["roofline"]:  # bytes: read + the token appended to the cache
        if not _course(r):
            counts = bench.newer_step_costs(r["scheme"], shape, r["context"], report["dtype"],
                                            ui.newer_settings_of(report))
            assert (r["flops"], r["bytes"]) == (counts["flops"], counts["bytes_read"] + counts["bytes_appended"])
            continue
        assert r["bytes"] == costs.decode_bytes_moved(r["scheme"], shape, r["context"], report["dtype"])
        assert r["intensity"] == pytest.approx(costs.arithmetic_intensity(r["scheme"], shape, r["context"],
                                                                          report["dtype"], cache_append=True))
        assert r["bound"] == bench.roofline_bound(r["intensity"], report["machine"]["roofline_balance"])


def test_the_committed_run_names_its_cpu_and_its_roofline(report):
    dev, m = report["device"], report["machine"]
    description = ui.cpu_description(report)
    assert description.startswith(dev["cpu_name"]) and f"{dev['cpu_count']} CPUs" in description
    assert dev["cpu_capability"] in description
    roof = ui.roofline_machine(report)
    assert (roof["bandwidth"], roof["peak"]) == (m["read_bandwidth"], m["decode_matmul_rate"])
    assert roof["balance"] == pytest.approx(m["decode_matmul_rate"] / m["read_bandwidth"])
    assert m["balance_flops_per_byte"] == pytest.approx(m["matmul_rate"] / m["copy_bandwidth"])  # the old one
    old = json.loads(json.dumps(report))
    for key in ("roofline_bandwidth", "roofline_flops", "roofline_balance"):
        del old["machine"][key]
    assert ui.roofline_machine(old)["bandwidth"] == m["copy_bandwidth"]  # older reports: copy bandwidth, GEMM


def test_the_committed_run_has_its_targets_and_its_cost(report):
    table = ui.targets_markdown(report)
    lines = table.splitlines()
    assert len(lines) == 2 + len(bench.TARGETS)
    for target, line in zip(report["targets"], lines[2:], strict=True):
        assert line.startswith(f"| {target['target']} |")
        assert target["context"] == max(report["contexts"]) and target["measured"] is not None
        assert target["met"] == (target["measured"] >= target["goal"])
    assert bench.measure_targets(report) == report["targets"]  # recomputed from the stored numbers
    cost = ui.run_cost(report)
    assert 0 < cost["wall_s"] < 60 and 0 < cost["peak_gib"] < 1.5
    assert set(cost["sections_s"]) == {"probes", "decode", "probes_again", "sdpa_peer", "hf_peer"}
    for r in report["results"]:  # the timing of every point: its rounds, spread and page faults
        assert len(r["times_s"]) == report["repeats"] and r["spread"] >= 0 and r["faults_per_call"] >= 0
    with pytest.raises(ValueError, match="no targets"):
        ui.targets_markdown({k: v for k, v in report.items() if k != "targets"})


# ------------------------------------------------------------------------------ the newer schemes (chapters 17-20)


@pytest.fixture(scope="module")
def with_newer():
    """A small run that timed the newer schemes beside the six (the committed run may predate them)."""
    return bench.run_benchmark("cpu", "float32", [40, 72], 1, bench.QUICK_SHAPE, copy_bytes=2**20, gemm_n=64,
                               hf_peer=False, warmup=0)


def _without_newer(report: dict) -> dict:
    """The report as a run written before the newer schemes were timed: no newer rows, settings or group."""
    old = json.loads(json.dumps(report))
    for key in ("results", "roofline"):
        old[key] = [{k: v for k, v in r.items() if k != "group"} for r in old[key] if r["group"] == "course"]
    for key in ("newer_schemes", "newer_settings"):
        del old[key]
    return old


def test_the_newer_schemes_are_drawn_from_what_the_report_has(with_newer):
    for report, timed in ((with_newer, bench.NEWER_SCHEMES), (_without_newer(with_newer), ())):
        assert ui.newer_measured(report) == timed
        assert ui.newer_settings_of(report) == bench.newer_settings(bench.QUICK_SHAPE)
        points = ui.newer_points(report)
        assert list(points) == [*ui.NEWER_REFERENCES, *bench.NEWER_SCHEMES]
        roof = ui.roofline_machine(report)
        for s, rows in points.items():
            assert [r["context"] for r in rows] == [40, 72]
            for r in rows:
                assert r["bound_s"] == max(r["bytes"] / roof["bandwidth"], r["flops"] / roof["peak"])
                assert (r["time_s"] is None) == (s not in timed and s not in ui.NEWER_REFERENCES)
        fig = ui.newer_time_plotly(report)
        solid = [t for t in fig.data if t.line.dash != "dash"]
        dashed = [t for t in fig.data if t.line.dash == "dash"]
        assert len(dashed) == len(points) and len(solid) == len(ui.NEWER_REFERENCES) + len(timed)
        for trace in dashed:  # the bounds, from the formulas, for every scheme
            rows = points[trace.legendgroup]
            assert list(trace.y) == [r["bound_s"] * 1e3 for r in rows]
            assert trace.showlegend == (trace.legendgroup not in timed and trace.legendgroup not in
                                        ui.NEWER_REFERENCES)
        for trace in solid:  # the measured medians, where the report has them
            rows = [r for r in report["results"] if r["scheme"] == trace.legendgroup]
            assert list(trace.y) == [r["time_s"] * 1e3 for r in rows]
        names = [t.name for t in fig.data if t.showlegend is not False]
        assert names == [ui.NEWER_LABELS.get(s) or ui.SCHEME_LABELS[s] for s in points] if timed else \
            [ui.SCHEME_LABELS[s] for s in ui.NEWER_REFERENCES] + [f"{ui.NEWER_LABELS[s]} (bound only)"
                                                                 for s in bench.NEWER_SCHEMES]
        roofline = ui.newer_roofline_plotly(report)
        line, *dots = roofline.data
        assert len(dots) == len(points)
        for dot, rows in zip(dots, points.values(), strict=True):
            r = rows[-1]
            expected = r["achieved_flops"] if r["achieved_flops"] is not None else min(
                roof["bandwidth"] * r["intensity"], roof["peak"])
            assert (dot.x[0], dot.y[0]) == (r["intensity"], expected)
            assert dot.name.endswith("(bound)") == (r["achieved_flops"] is None)


def test_the_newer_summary_quotes_the_formulas(with_newer, report):
    """The numbers chapter 14's prose quotes: the window equals GQA until its ring is full, Gated DeltaNet adds
    nothing per token, Quest adds 2 n_kv d_h / B (1/B of GQA's read), CSA c^I / m (a quarter of DSA's d^I
    here), HCA c / m (1/m of reading every token's c-wide vector)."""
    summary = ui.newer_summary(report)  # the committed run (whether or not it timed them)
    ns, shape = summary["settings"], bench.BenchShape(**report["shape"])
    assert ns == bench.NewerSettings() and summary["window_flat_from"] == 4100
    assert summary["window_equal_gqa_until"] == 4096  # its last context that fits S + W
    per_token = summary["bytes_per_token"]
    assert per_token["gated_deltanet"] == 0 and summary["bytes"]["gated_deltanet"][0] == summary["bytes"][
        "gated_deltanet"][1]
    assert per_token["quest"] == 4 * 2 * shape.n_kv_heads * shape.head_dim / ns.block_size
    assert summary["quest_vs_gqa"] == 1 / ns.block_size
    assert per_token["v4_csa"] == 4 * shape.index_head_dim / ns.csa_rate and summary["csa_vs_dsa"] == 0.25
    assert per_token["v4_hca"] == 4 * shape.kv_lora_rank / ns.hca_rate
    assert summary["hca_vs_uncompressed"] == 1 / 128
    small = ui.newer_summary(with_newer)
    assert set(small["growth"]) == {*ui.NEWER_REFERENCES, *bench.NEWER_SCHEMES}
    assert set(ui.newer_summary(_without_newer(with_newer))["growth"]) == set(ui.NEWER_REFERENCES)


def test_plotly_figures_carry_the_report(report):
    time = ui.time_plotly(report)
    assert [t.name for t in time.data] == [ui.SCHEME_LABELS[s] for s in report["schemes"]]
    for trace, s in zip(time.data, report["schemes"], strict=True):
        rows = [r for r in report["results"] if r["scheme"] == s]
        assert list(trace.y) == [r["time_s"] * 1e3 for r in rows] and list(trace.x) == [r["context"] for r in rows]
        assert trace.marker.color == ui.get_scheme(s).color
    assert time.layout.xaxis.type == time.layout.yaxis.type == "log"
    big = max(report["contexts"])
    roof = ui.roofline_plotly(report, context=big)
    line, *points = roof.data
    machine = ui.roofline_machine(report)
    assert max(line.y) == machine["peak"] and roof.layout.shapes[0].x0 == machine["balance"]
    for point, r in zip(points, ui.select_rows(report, report["schemes"], big), strict=True):
        assert (point.x[0], point.y[0]) == (r["intensity"], r["achieved_flops"])


def test_figures_draw(report):
    import matplotlib.pyplot as plt

    for fig in (ui.time_figure(report), ui.peer_figure(report), ui.roofline_figure(report, ["mha"], 1024)):
        assert fig.axes
        plt.close(fig)


# ------------------------------------------------------------------------------------------- widget


def test_widget_offers_only_the_reports_values_and_follows_its_controls(report, capsys):
    w = ui.bench_explorer(report, schemes=("mha",), context=min(report["contexts"]))
    assert [v for _, v in w.context.options] == report["contexts"]
    assert [v for _, v in w.schemes.options] == report["schemes"]
    before_html, before_png = w.readout.value, w.image.value
    assert before_png[:4] == b"\x89PNG"
    big = max(report["contexts"])
    w.context.value = big
    w.schemes.value = ("mqa", "mla_absorbed")
    assert w.readout.value != before_html and w.image.value != before_png
    assert w.readout.value == ui.readout_html(report, ("mqa", "mla_absorbed"), big)
    rows = ui.select_rows(report, ["mqa", "mla_absorbed"], big)
    for r in rows:
        assert f"{r['time_s'] * 1e3:.3f} ms" in w.readout.value
        assert f"{r['intensity']:.2f} FLOP/byte" in w.readout.value
    assert "MHA: step time" not in w.readout.value
    assert capsys.readouterr().out == ""
    assert repr(w) == f"BenchExplorer(schemes=['mqa', 'mla_absorbed'], context={big})"


def test_widget_rejects_invalid_starting_values(report):
    with pytest.raises(ValueError, match="context"):
        ui.bench_explorer(report, context=3000)
    with pytest.raises(ValueError, match="scheme"):
        ui.bench_explorer(report, schemes=("mla",))


# ------------------------------------------------------------------------------------------- exercises


@pytest.fixture(scope="module")
def solutions():
    return runpy.run_path(str(SOLUTIONS / "ch14.py"))


@pytest.mark.parametrize("check, name", [
    (ch14.check_mqa_counts, "answer_mqa_counts"),
    (ch14.check_crossover_context, "answer_crossover"),
])
def test_solutions_pass(solutions, check, name):
    assert check(solutions[name]).startswith("✓")
    assert check(None).startswith("…")


def test_worked_prediction_is_right(solutions):
    assert ch14.check_prediction_bounds(solutions["prediction_bounds"]).startswith("✓")
    assert "write your prediction first" in ch14.check_prediction_bounds(None)


@pytest.mark.parametrize("scheme", ["mha", "mqa", "mla_absorbed"])
def test_measured_references_agree_with_the_formulas(scheme):
    """The checks measure; the course's formulas must say the same (else one of the two is wrong)."""
    m = ch14.measure_step(scheme, ch14.SHAPE, 100)
    assert m["flops"] == costs.decode_flops(scheme, ch14.SHAPE, 100)
    assert m["bytes"] == costs.decode_bytes_read(scheme, ch14.SHAPE, 100, "float32")


def test_measured_crossover_is_the_formulas_crossover():
    L = ch14.crossover_context()
    assert costs.arithmetic_intensity("mla_absorbed", ch14.SHAPE, L, "float32") >= ch14.BALANCE
    assert costs.arithmetic_intensity("mla_absorbed", ch14.SHAPE, L - 1, "float32") < ch14.BALANCE


def test_the_formulas_cannot_answer_exercise_1():
    def by_formula(shape, context):
        return costs.decode_flops("mqa", shape, context), costs.decode_bytes_read("mqa", shape, context, "float32")

    with pytest.raises(AssertionError, match="attnlab.costs or attnlab.bench"):
        ch14.check_mqa_counts(by_formula)


def _counts(solutions, slip):
    good = solutions["answer_mqa_counts"]

    def answer(shape, context):
        flops, n_bytes = good(shape, context)
        h, d_h, t = shape.n_heads, shape.head_dim, context + 1
        return {"macs": (flops // 2, n_bytes), "own key": (flops - 4 * h * d_h, n_bytes),
                "mha bytes": (flops, n_bytes + 4 * 2 * (h - 1) * d_h * t), "bf16": (flops, n_bytes // 2),
                "no weights": (flops, 4 * 2 * d_h * t)}[slip]

    return answer


@pytest.mark.parametrize("slip, hint", [("macs", "multiply-add is 2 FLOPs"), ("own key", "T = L \\+ 1"),
                                        ("mha bytes", "ONE key head"), ("bf16", "4 bytes"),
                                        ("no weights", "weights too")])
def test_mqa_count_slips_are_named(solutions, slip, hint):
    with pytest.raises(AssertionError, match=hint):
        ch14.check_mqa_counts(_counts(solutions, slip))


@pytest.mark.parametrize("check, answer, hint", [
    (ch14.check_prediction_bounds, {"mha": "memory"}, "keys"),
    (ch14.check_prediction_bounds, {"mha": "memory", "mqa": "memory", "mla_absorbed": "slow"}, "'memory' or"),
    (ch14.check_crossover_context, 3764, "one too many"),
    (ch14.check_crossover_context, 3762, "one short"),
    (ch14.check_crossover_context, 4096, "not yet"),
    (ch14.check_crossover_context, 3763.5, "whole number"),
])
def test_wrong_answers_fail_with_a_hint(check, answer, hint):
    with pytest.raises(AssertionError, match=hint):
        check(answer)


def test_a_wrong_prediction_is_explained():
    verdict = ch14.check_prediction_bounds({"mha": "memory", "mqa": "compute", "mla_absorbed": "memory"})
    assert verdict.startswith("✗") and "Wrong for mqa, mla_absorbed" in verdict and "6.44 FLOP/byte" in verdict
