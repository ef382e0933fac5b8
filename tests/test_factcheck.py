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

from attnlab import costs, dsa, factcheck, sizing
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
        "six_times_faster", "dsa_matches_quality", "kv_caching_is_absorption", "mla_training_params",
        "deago_benchmark", "mqa_mechanism", "gqa_mechanism", "mla_576_every_layer", "hundreds_of_millions",
        "v4_98_percent",
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
    ("dsa_price_50", "right"), ("dsa_compute_50", "needs context"), ("mla_slightly_better", "right"),
    ("embeddings_cluster", "needs context"), ("mqa_quality", "right"), ("gqa_quality", "right"),
    ("absorb_no_extra_compute", "needs context"), ("memory_bandwidth", "right"), ("mha_2017_timeline", "right"),
    ("dsa_matches_quality", "needs context"), ("kv_caching_is_absorption", "wrong"), ("mla_training_params", "wrong"),
    ("deago_benchmark", "wrong"), ("mqa_mechanism", "right"), ("gqa_mechanism", "right"),
    ("mla_576_every_layer", "right"), ("hundreds_of_millions", "needs context"),
    ("v4_98_percent", "needs context"),
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
    assert factcheck.mla_quality_claim(False).verdict == "needs context"  # the papers would not say so
    assert factcheck.query_latent_claim(1536).verdict == "needs context"
    assert factcheck.query_latent_claim(512).verdict == "right"
    assert factcheck.mla_reference_claim("2405.04434").verdict == "right"
    assert factcheck.mla_reference_claim("2412.19437").verdict == "wrong"


def test_evidence_rows_flip_and_cite_the_papers(claims):
    """The rows the papers' own evidence decides (attnlab.evidence) change with their inputs."""
    assert factcheck.dsa_quality_claim(tolerance=3.0).verdict == "right"  # HMMT 2025, -2.5, is the largest drop
    assert factcheck.dsa_quality_claim(tolerance=0.05).verdict == "wrong"  # the mean is -0.11 points
    for name in ("Humanity's Last Exam -1.9", "Aider-Polyglot -1.6", "HMMT 2025 -2.5", "8 of 13"):
        assert name in claims["dsa_matches_quality"].evidence
    assert "Table 1" in claims["dsa_matches_quality"].primary_source
    assert factcheck.benchmark_name_claim("DROP").verdict == "right"
    assert factcheck.benchmark_name_claim("agi-eval").verdict == "right"
    assert factcheck.benchmark_name_claim("BBH").verdict == "right"
    assert "no paper names it" in claims["deago_benchmark"].evidence
    assert factcheck.research_cost_claim(claimed_usd=1e6).verdict == "right"
    assert factcheck.research_cost_claim(usd_per_gpu_hour=100).verdict == "right"  # 140M USD at 100 USD/hour
    assert "2.8M USD" in claims["hundreds_of_millions"].evidence
    assert factcheck.gqa_mechanism_claim(8, 4).verdict == factcheck.mqa_mechanism_claim(16).verdict == "right"
    assert "same cache" in claims["kv_caching_is_absorption"].evidence
    assert "15.8B vs 15.7B" in claims["mla_training_params"].evidence
    assert "35,136 = 61 layers" in claims["mla_576_every_layer"].evidence
    tiny = factcheck.tiny_gap("mla", "mha")  # the shipped study decides whether the tiny models contradict
    assert factcheck.mla_quality_claim().verdict == ("needs context" if tiny.clear and tiny.delta > 0 else "right")
    assert "seeds, parameters matched" in claims["mla_slightly_better"].evidence


def _study(losses):
    from dataclasses import asdict

    from attnlab.dsa_training import DSATrainConfig
    from attnlab.quality import Run, Study
    from attnlab.train import TrainConfig

    runs = tuple(Run(scheme, seed, 344, 1000, 0, loss, {"step": [1], "val_loss": [loss]}, 1.0)
                 for scheme, values in losses.items() for seed, loss in enumerate(values))
    return Study(runs, asdict(TrainConfig()), asdict(DSATrainConfig()), {}, 0.02, 1.0)


@pytest.mark.parametrize(("mla", "verdict"), [
    ((2.80, 2.81, 2.82), "needs context"),  # tiny MLA clearly behind: the tiny models contradict the paper
    ((2.70, 2.75, 2.80), "right"),  # a gap within the seeds' spread says nothing against the paper
    ((2.60, 2.61, 2.62), "right"),  # tiny MLA clearly ahead: agrees
])
def test_quality_verdicts_count_only_gaps_beyond_the_seeds_spread(monkeypatch, mla, verdict):
    study = _study({"mha": (2.74, 2.75, 2.76), "mla": mla, "mqa": (2.70, 2.75, 2.80), "gqa": (2.74, 2.75, 2.76)})
    monkeypatch.setattr(factcheck, "load_study", lambda: study)
    assert factcheck.mla_quality_claim().verdict == verdict
    assert factcheck.mqa_quality_claim().verdict == "right"  # MQA's tiny gap is within its spread
    assert factcheck.gqa_quality_claim().verdict == "right"


def test_one_verdict_label_per_claim_in_every_chapter(claims):
    """Chapters 0, 5, 7 and 13 print a verdict only through factcheck.verdict_label(factcheck.claim(key)):
    no verdict typed by hand, so the same claim reads the same everywhere."""
    assert factcheck.verdict_label("needs context") == "**Needs context**"
    assert factcheck.claim("mla_57x") == claims["mla_57x"]
    with pytest.raises(ValueError, match="key"):
        factcheck.claim("mla_58x")
    with pytest.raises(ValueError, match="verdict"):
        factcheck.verdict_label("half right")
    notebooks = SOLUTIONS.parent
    typed = re.compile(r"\*\*(Right|Wrong|Half right|Out of context|Needs context|Not the comparison)[^*]*\*\*")
    for name in ("00_introduction", "05_multi_query_attention", "07_multi_head_latent_attention", "13_fact_check"):
        source = (notebooks / f"{name}.py").read_text()
        assert not typed.findall(source), f"{name}: a verdict typed by hand: {typed.findall(source)}"
        assert "verdict_label(" in source, f"{name} prints no verdict through factcheck.verdict_label"


def test_v4_98_percent_memory_worked_out():
    rows = {r["comparison"]: r for r in factcheck.memory_savings()}
    # MLA vs MHA on V3's shape (Table 1): 512 + 64 = 576 against 2 x 128 x 128 = 32,768: 1.76%, 98.2% less
    mla = rows["MLA vs MHA, DeepSeek-V3's shape, numbers per token and layer"]
    assert (mla["ours"], mla["theirs"]) == (576, 32_768) and round(100 * mla["saving"], 1) == 98.2
    # V4-Pro vs V3.2 at 1M tokens. DeepSeek's layouts: 30 CSA layers of (128 + 262,144) x 584 + 262,144 x 68 B
    # and 31 HCA layers of (128 + 8,192) x 584 B, against 61 x 1M x (656 + 132) B; bf16: 512/128 x 2 B against
    # (576 + 128) x 2 B
    m = 2**20
    pro = rows["DeepSeek-V4-Pro vs DeepSeek-V3.2 at 1M tokens, DeepSeek's FP8/FP4 layouts"]
    assert pro["ours"] == 30 * (262_272 * 584 + 262_144 * 68) + 31 * 8_320 * 584
    assert pro["theirs"] == 61 * m * (656 + 132)
    assert pro["ratio"] == costs.v4_vs_v32_cache("deepseek-v4-pro", m, "fp8")["ratio"]
    assert round(pro["ratio"], 3) == 0.105  # the published "about 10%": 89.5% less, not 98%
    bf16 = rows["DeepSeek-V4-Pro vs DeepSeek-V3.2 at 1M tokens, bfloat16"]
    assert bf16["ours"] == 30 * (262_272 * 1024 + 262_144 * 256) + 31 * 8_320 * 1024
    assert bf16["theirs"] == 61 * m * (576 + 128) * 2
    assert round(1 / bf16["ratio"], 1) == 8.7
    flash = rows["DeepSeek-V4-Flash vs DeepSeek-V3.2 at 1M tokens, DeepSeek's FP8/FP4 layouts"]
    assert round(flash["ratio"], 3) == 0.073  # "about 7%"
    # the verdict flips with the figure: 89% (V4-Pro vs V3.2) is right, 99.9% nothing gives
    assert factcheck.v4_memory_claim(0.98).verdict == "needs context"
    assert factcheck.v4_memory_claim(0.89).verdict == "right"
    assert factcheck.v4_memory_claim(0.999).verdict == "wrong"
    with pytest.raises(ValueError, match="context"):
        factcheck.memory_savings(0)


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
    v4_models = {k for k, m in MODELS.items() if m.v4 is not None}
    assert {(r["model"], r["scheme"]) for r in rows} == (
        {(k, s) for k in MODELS for s in SCHEMES} | {(k, "v4") for k in v4_models})
    for r in rows:
        spec = MODELS[r["model"]]
        v4 = r["scheme"] == "v4"  # DeepSeek-V4 as published; its Table 1 rows are what-ifs
        scheme = None if v4 else r["scheme"]
        assert r["published"] == (v4 or (r["scheme"] == spec.attention and spec.v4 is None))
        per = (sizing.growth_bytes_per_token(spec) if v4
               else sizing.cache_bytes_per_token(spec, "bfloat16", scheme, r["n_kv_heads"]))
        assert r["bytes_per_token"] == per
        for n, b in r["cache_bytes"].items():
            assert b == sizing.kv_cache_bytes(spec, n, 1, "bfloat16", scheme, r["n_kv_heads"])
            if spec.proportional or (spec.v4 is not None and not v4):
                assert b == n * r["bytes_per_token"]
        assert r["weight_bytes"] == 2 * spec.n_params
        expected = sizing.tokens_that_fit(spec, 80, scheme=scheme, n_kv_heads=r["n_kv_heads"],
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
    assert ch13.check_cache_numbers(ns["answer_cache_numbers"]).startswith("✓")
    assert ch13.check_prediction_naive_cache(ns["prediction_naive_cache"]).startswith("✓")
    assert ch13.check_gpus_needed(ns["answer_gpus_needed"]).startswith("✓")
    assert "not attempted" in ch13.check_gpus_needed(None)
    assert "write your prediction first" in ch13.check_prediction_naive_cache(None)


def test_exercise_configs_read_like_the_catalogue():
    """The check reads the configs its own way; where the course's catalogue has the model, they agree."""
    for name, key in [("Llama-3-70B", "llama-3-70b"), ("Gemma-2-9B", "gemma-2-9b"), ("Falcon-7B", "falcon-7b"),
                      ("Qwen2.5-7B", "qwen2.5-7b"), ("DeepSeek-V3", "deepseek-v3")]:
        spec = sizing.MODELS[key]
        assert ch13.reference_numbers(ch13.CONFIGS[name]) == sizing.kv_elements_per_token(spec, per_layer=True)


def _reads(slip):
    def answer(config):
        heads = config["num_attention_heads"]
        if config.get("kv_lora_rank"):
            return 2 * (config["kv_lora_rank"] + config["qk_rope_head_dim"]) if slip == "mla twice" else 576
        n_kv = config.get("num_key_value_heads", heads)
        if config.get("multi_query") and slip != "multi_query":
            n_kv = 1
        head_dim = config["hidden_size"] // heads if slip == "head_dim" else config.get("head_dim") or config[
            "hidden_size"] // heads
        return 2 * n_kv * head_dim

    return answer


@pytest.mark.parametrize("slip, hint", [("head_dim", "Gemma-2-9B: hidden_size / num_attention_heads"),
                                        ("multi_query", "Falcon-7B: multi_query"),
                                        ("mla twice", "DeepSeek-V3: MLA's latent serves keys AND values")])
def test_config_slips_are_named(slip, hint):
    with pytest.raises(AssertionError, match=hint):
        ch13.check_cache_numbers(_reads(slip))


@pytest.mark.parametrize("check,wrong,hint", [
    (ch13.check_cache_numbers, lambda config: 0, "Llama-3-70B: expected 2,048"),
    (ch13.check_cache_numbers, lambda config: "many", "number"),
    (ch13.check_prediction_naive_cache, -1, "positive"),
    (ch13.check_gpus_needed, 19, "RoPE key"),
    (ch13.check_gpus_needed, 16, "weights alone"),
    (ch13.check_gpus_needed, 21, "not yet"),
    (ch13.check_gpus_needed, 20.5, "whole number"),
])
def test_wrong_answers_fail(check, wrong, hint):
    with pytest.raises(AssertionError, match=hint):
        check(wrong)


def test_windowed_sizes_against_a_full_cache():
    rows = {r["model"]: r for r in factcheck.windowed_sizes()}
    # Gemma-2-9B at its 8,192 tokens: 21 full layers x 8,192 + 21 sliding x 4,096, 8,192 B per token and layer
    g = rows["gemma-2-9b"]
    assert g["right"] == 21 * 8192 * (8192 + 4096) and g["wrong"] == 42 * 8192 * 8192 and g["ratio"] == 4 / 3
    assert rows["mistral-7b-v0.1"]["ratio"] == 32_768 / 4096  # all sliding: the window against the context
    with pytest.raises(ValueError, match="no sliding or shared layers"):
        factcheck.windowed_sizes(("llama-3-8b",))


def test_explorer_marks_beyond_context_and_windows():
    text = shown_text(ui.table_html("gemma-2-9b", 131072, 80.0, torch.bfloat16))
    assert "beyond its 8K context" in text and "21 sliding (window 4,096) + 21 full" in text
    assert "inside the window" in text and "8,192 tokens" in text
    assert "beyond" not in shown_text(ui.table_html("deepseek-v3", 131072, 80.0, torch.bfloat16))
    text = shown_text(ui.table_html("mistral-7b-v0.1", 131072, 80.0, torch.bfloat16))
    assert "any context (the cache stops growing at 4,096 tokens)" in text
    rows = {r["scheme"]: r for r in ui.model_rows("llama-3-70b", 131072, 80, torch.bfloat16)}
    assert rows["gqa"]["beyond"] == {131072: True}
    assert ui.context_label(163_840) == "160K" and ui.context_label(1000) == "1,000"
    assert ui.beyond_note("llama-3-70b", 8192) == ""
    assert ui.beyond_note("llama-3-70b", 8193) == " (beyond its 8K context)"
    with pytest.raises(ValueError, match="n_tokens"):
        ui.context_label(0)


def test_naive_cache_prediction_names_the_57x_comparison():
    verdict = ch13.check_prediction_naive_cache(57)
    assert verdict.startswith("✗") and "71.1×" in verdict and "128-wide keys" in verdict
