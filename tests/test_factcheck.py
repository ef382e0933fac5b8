"""Chapter 13 (fact-check): every verdict that arithmetic decides is computed and flips with its input,
every seed claim is listed, the real-model table and widget show what attnlab.sizing gives, and the
exercise checks accept the worked solutions and reject the usual slips."""

from __future__ import annotations

import dataclasses
import re
import runpy
from pathlib import Path

import pytest
import torch
from traitlets import TraitError

from attnlab import dsa, factcheck, sizing
from attnlab.exercises import ch13
from attnlab.figures import trace_data
from attnlab.interactive import factcheck as ui
from attnlab.sizing import MODELS, SCHEMES

SOLUTIONS = Path(__file__).resolve().parents[1] / "notebooks" / "solutions"


@pytest.fixture(scope="module")
def claims():
    return {c.key: c for c in factcheck.claims()}


def shown_text(html_text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html_text))


# ---------------------------------------------------------------------------------------- the claims


def test_every_seed_claim_is_listed_once(claims):
    assert len(claims) == len(factcheck.claims())  # keys are unique
    expected = {
        "mha_2017_timeline", "mla_reference", "attention_softmax", "embeddings_cluster", "mqa_128x", "kv_4mb_31kb",
        "mqa_quality", "gqa_8x", "gqa_16_groups_v3", "gqa_quality", "qkv_one_latent", "mla_576_dim", "mla_57x",
        "mla_slightly_better", "dsa_september_2025", "dsa_price_50", "dsa_compute_50", "memory_bandwidth",
        "mqa_own_kv", "shared_projections", "fewer_parameters", "absorb_no_extra_compute", "mla_576_times",
        "six_times_faster",
    }
    assert set(claims) == expected
    assert {c.source for c in claims.values()} == set(factcheck.SOURCES)
    for c in claims.values():
        assert c.text and c.computation and c.evidence and c.primary_source
        assert c.verdict in factcheck.VERDICTS


@pytest.mark.parametrize("key,verdict", [
    ("mqa_128x", "needs context"), ("kv_4mb_31kb", "right"), ("gqa_8x", "needs context"), ("gqa_16_groups_v3", "wrong"),
    ("mla_57x", "right"), ("mla_576_dim", "needs context"), ("mla_576_times", "wrong"),
    ("six_times_faster", "needs context"), ("mqa_own_kv", "wrong"), ("dsa_september_2025", "right"),
    ("dsa_price_50", "right"), ("dsa_compute_50", "needs context"), ("mla_slightly_better", "needs context"),
    ("embeddings_cluster", "needs context"), ("mqa_quality", "right"), ("gqa_quality", "right"),
    ("absorb_no_extra_compute", "needs context"), ("memory_bandwidth", "right"), ("mha_2017_timeline", "right"),
])
def test_verdicts(claims, key, verdict):
    assert claims[key].verdict == verdict, claims[key]


def test_mqa_128x_is_exact_and_flips():
    per = {s: sizing.cache_bytes_per_token("deepseek-v3", scheme=s) for s in ("mha", "mqa")}
    assert per["mha"] / per["mqa"] == 128
    assert factcheck.mqa_ratio_claim(128).verdict == "needs context"  # V3 uses MLA: MQA there is a what-if
    assert "what-if" in factcheck.mqa_ratio_claim(128).evidence
    assert factcheck.mqa_ratio_claim(64).verdict == "wrong"
    assert factcheck.mqa_ratio_claim(71, model="falcon-7b").verdict == "right"  # Falcon-7B does use MQA: n_h = 71


def test_bytes_per_token_figures_and_flip():
    c = factcheck.bytes_per_token_claim()
    assert "3,997,696" in c.evidence and "31,232" in c.evidence
    assert factcheck.bytes_per_token_claim(claimed_mha_mb=6).verdict == "wrong"
    assert factcheck.bytes_per_token_claim(claimed_mqa_kb=47).verdict == "wrong"


def test_gqa_rows_flip():
    assert factcheck.gqa_ratio_claim(8, 16).verdict == "needs context"  # a what-if on V3's shape
    assert factcheck.gqa_ratio_claim(8, 32).verdict == "wrong"
    assert factcheck.gqa_ratio_claim(4, 8, model="llama-3-8b").verdict == "right"  # 32 heads, 8 KV heads: GQA
    assert factcheck.gqa_ratio_claim(2, 16, model="llama-3-8b").verdict == "needs context"  # not its 8 KV heads
    assert factcheck.gqa_in_deepseek_claim("deepseek-v3").verdict == "wrong"
    assert factcheck.gqa_in_deepseek_claim("llama-3-8b").verdict == "right"


def test_mla_rows_flip():
    assert round(sizing.reduction_vs_mha("deepseek-v3"), 1) == 56.9
    assert factcheck.mla_ratio_claim(57).verdict == "right"
    assert factcheck.mla_ratio_claim(56).verdict == "wrong"
    assert factcheck.mla_576_times_claim(576).verdict == "wrong"
    assert factcheck.mla_576_times_claim(57).verdict == "right"
    assert factcheck.mla_width_claim(576).verdict == "needs context"
    assert factcheck.mla_width_claim(512).verdict == "wrong"


def test_other_computed_rows_flip():
    assert factcheck.speedup_claim(claimed=6).verdict == "needs context"
    assert factcheck.speedup_claim(claimed=57).verdict == "wrong"
    assert factcheck.mqa_misreading_claim("own").verdict == "wrong"
    assert factcheck.mqa_misreading_claim("shared").verdict == "right"
    assert factcheck.dsa_date_claim((2025, 9)).verdict == "right"
    assert factcheck.dsa_date_claim((2025, 3)).verdict == "wrong"
    assert factcheck.dsa_price_claim(0.5).verdict == "right"
    assert factcheck.dsa_price_claim(0.75).verdict == "wrong"
    crossover = dsa.crossover_context(MODELS["deepseek-v3.2"])
    assert factcheck.dsa_compute_claim(131_072).verdict == "needs context"
    assert factcheck.dsa_compute_claim(crossover - 1).verdict == "wrong"
    assert factcheck.mla_quality_claim(True).verdict == "needs context"  # tiny MLA is behind tiny MHA
    assert factcheck.mla_quality_claim(False).verdict == "right"
    assert factcheck.query_latent_claim(1536).verdict == "needs context"
    assert factcheck.query_latent_claim(512).verdict == "right"
    assert factcheck.mla_reference_claim("2405.04434").verdict == "right"
    assert factcheck.mla_reference_claim("2412.19437").verdict == "wrong"


def test_verdict_helper_and_claim_validation():
    assert factcheck._verdict(True) == "right" and factcheck._verdict(False) == "wrong"
    assert factcheck._verdict(False, "right", "needs context") == "needs context"
    with pytest.raises(ValueError, match="verdicts"):
        factcheck._verdict(True, "maybe")
    c = factcheck.mqa_ratio_claim()
    with pytest.raises(ValueError, match="verdict"):
        dataclasses.replace(c, verdict="probably")
    with pytest.raises(ValueError, match="source"):
        dataclasses.replace(c, source="a blog")
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.verdict = "wrong"
    assert factcheck.arxiv_year_month("1706.03762") == (2017, 6)
    with pytest.raises(ValueError, match="arxiv_id"):
        factcheck.arxiv_year_month("abc")


def test_markdown_table_has_one_row_per_claim(claims):
    table = factcheck.markdown_table(list(claims.values()))
    assert len(table.splitlines()) == 2 + len(claims)


def test_common_mistakes():
    m = factcheck.common_mistakes()
    assert m["query_heads"]["ratio"] == 4.0
    assert m["rope_key"]["wrong"] == 512 * 61 * 2 and round(1 - m["rope_key"]["ratio"], 3) == 0.111
    assert m["head_dim"]["wrong"] == 2 * 8 * 224 * 42 * 2 and m["head_dim"]["right"] == 2 * 8 * 256 * 42 * 2


def test_gpus_needed():
    weights = 671_000_000_000 * 2
    cache = 32 * 131_072 * 70_272
    assert factcheck.gpus_needed("deepseek-v3", 32, 131_072) == -(-(weights + cache) // (80 * 2**30)) == 20
    assert factcheck.gpus_needed("deepseek-v3", 32, 131_072, per_token_bytes=0) == -(-weights // (80 * 2**30))


# ---------------------------------------------------------------------------------------- the model table


def test_model_table_covers_every_model_and_scheme_and_agrees_with_sizing():
    rows = ui.model_table()
    assert {(r["model"], r["scheme"]) for r in rows} == {(k, s) for k in MODELS for s in SCHEMES}
    for r in rows:
        spec = MODELS[r["model"]]
        assert r["published"] == (r["scheme"] == spec.attention)
        assert r["bytes_per_token"] == sizing.cache_bytes_per_token(spec, "bfloat16", r["scheme"], r["n_kv_heads"])
        for n, b in r["cache_bytes"].items():
            assert b == n * r["bytes_per_token"]
        assert r["weight_bytes"] == 2 * spec.n_params
        expected = sizing.tokens_that_fit(spec, 80, scheme=r["scheme"], n_kv_heads=r["n_kv_heads"],
                                          weights_dtype=torch.bfloat16)
        assert r["tokens_fit"] == expected
        assert r["weights_fit"] == (r["weight_bytes"] <= 80 * 2**30)
        if not r["weights_fit"]:
            assert r["tokens_fit"] == 0 and "exceed" in r["note"]
    assert sum(r["published"] for r in rows) == len(MODELS)


def test_model_table_dtype_and_budget():
    fp8 = {(r["model"], r["scheme"]): r for r in ui.model_table(gpu_gib=2000, dtype="float8")}
    bf16 = {(r["model"], r["scheme"]): r for r in ui.model_table(gpu_gib=2000)}
    for k, r in fp8.items():
        assert 2 * r["bytes_per_token"] == bf16[k]["bytes_per_token"]
    assert fp8[("deepseek-v3", "mla")]["weights_fit"]
    with pytest.raises(ValueError):
        ui.model_table(context_lens=(0,))


# ---------------------------------------------------------------------------------------- the widget


@pytest.fixture
def explorer():
    return ui.model_cache_explorer()


def test_explorer_offers_only_valid_values(explorer):
    assert repr(explorer) == "ModelCacheExplorer(model='deepseek-v3', seq_len=131072)"
    assert [v for _, v in explorer.model.options] == list(MODELS)
    assert [v for _, v in explorer.seq_len.options] == [2**k for k in range(10, 21)]
    assert [v for _, v in explorer.dtype.options] == list(sizing.DTYPES_BY_NAME.values())
    with pytest.raises(TraitError):
        explorer.model.value = "gpt-5"
    with pytest.raises(TraitError):
        explorer.seq_len.value = 5000
    with pytest.raises(ValueError):
        ui.model_cache_explorer("gpt-5")


@pytest.mark.parametrize("key", sorted(MODELS))
def test_setting_model_and_context_shows_what_sizing_gives(explorer, key):
    explorer.model.value = key
    explorer.seq_len.value = 32768
    text = shown_text(explorer.table.value)
    for scheme in SCHEMES:
        n_kv = ui.gqa_start(MODELS[key]) if scheme == "gqa" else None
        per = sizing.cache_bytes_per_token(key, scheme=scheme, n_kv_heads=n_kv)
        assert f"{per:,}" in text
        assert sizing.format_bytes(sizing.kv_cache_bytes(key, 32768, scheme=scheme, n_kv_heads=n_kv)) in text
    assert explorer.table.value == ui.table_html(key, 32768, 80.0, torch.bfloat16)
    assert trace_data(explorer.chart) == trace_data(ui.chart_figure(key, 32768, 80.0, torch.bfloat16))
    rows = ui.model_rows(key, 32768, 80.0, torch.bfloat16)
    assert list(explorer.chart.data[0].x) == [r["cache_bytes"][32768] for r in rows]  # exact bytes per bar


def test_gpu_and_dtype_change_the_readout(explorer):
    explorer.model.value = "llama-3-8b"
    explorer.gpu_gib.value = 160.0
    fit = sizing.tokens_that_fit("llama-3-8b", 160.0, weights_dtype=torch.bfloat16)
    assert f"{fit:,}" in shown_text(explorer.table.value)
    explorer.dtype.value = torch.float8_e4m3fn
    assert f"{sizing.cache_bytes_per_token('llama-3-8b', 'float8'):,}" in shown_text(explorer.table.value)
    explorer.model.value = "deepseek-v3"
    assert "weights alone exceed 160 GiB" in shown_text(explorer.table.value)


# ---------------------------------------------------------------------------------------- exercises


def test_solutions_pass():
    ns = runpy.run_path(str(SOLUTIONS / "ch13.py"))
    assert ch13.check_llama3_70b_bytes(ns["answer_llama3_70b_bytes"]).startswith("✓")
    assert ch13.check_gemma2_bytes(ns["answer_gemma2_bytes"]).startswith("✓")
    assert ch13.check_gpus_needed(ns["answer_gpus_needed"]).startswith("✓")
    assert "not attempted" in ch13.check_gpus_needed(None)


@pytest.mark.parametrize("check,wrong,hint", [
    (ch13.check_llama3_70b_bytes, 2 * 64 * 128 * 80 * 2, "query heads"),
    (ch13.check_llama3_70b_bytes, 2 * 8 * 128 * 2, "one layer"),
    (ch13.check_llama3_70b_bytes, 2 * 8 * 128 * 80, "numbers, not bytes"),
    (ch13.check_llama3_70b_bytes, 12345, "not yet"),
    (ch13.check_llama3_70b_bytes, "327680", "number"),
    (ch13.check_gemma2_bytes, 2 * 8 * 224 * 42 * 2, "head_dim"),
    (ch13.check_gemma2_bytes, 2 * 16 * 256 * 42 * 2, "query heads"),
    (ch13.check_gemma2_bytes, 1, "not yet"),
    (ch13.check_gpus_needed, 19, "RoPE key"),
    (ch13.check_gpus_needed, 16, "weights alone"),
    (ch13.check_gpus_needed, 21, "not yet"),
    (ch13.check_gpus_needed, 20.5, "whole number"),
])
def test_wrong_answers_fail(check, wrong, hint):
    with pytest.raises(AssertionError, match=hint):
        check(wrong)
