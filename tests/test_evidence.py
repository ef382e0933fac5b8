"""The papers' evidence as data (:mod:`attnlab.evidence`): every record cited, and every number consistent with
the others where the paper states the same thing twice (a share in the text and the rows of its table, a
token total and the steps it comes from, a conclusion and the scores it sums up)."""

from __future__ import annotations

import dataclasses

import pytest

from attnlab import evidence as E
from attnlab import sizing
from attnlab.schemes import SCHEMES


def _records():
    """Every dataclass instance the module publishes, at top level or inside its tuples."""
    for value in vars(E).values():
        items = value if isinstance(value, tuple) else (value,)
        for item in items:
            if dataclasses.is_dataclass(item) and not isinstance(item, type):
                yield item


def test_every_record_names_its_paper_and_table_or_figure():
    records = list(_records())
    assert len(records) >= 4 + 4 + 4 + 2  # V2 Table 1 rows, 4 score tables, 4 GQA rows, 4 curves, 2 stages
    for record in records:
        if isinstance(record, (E.Benchmark, E.Arm, E.MQAVariant)):
            continue  # parts of a ScoreTable or of an MQA paper row, cited by it
        assert any(p in record.source for p in (E.MQA_PAPER, E.V2_PAPER, E.GQA_PAPER, E.V32_REPORT)), record
        assert any(w in record.source for w in ("Table", "Figure", "§", "Appendix")), record
    assert E.V2_TRAINING_COST["source"].startswith(E.V2_PAPER)
    assert E.MQA_SETUP["source"].startswith(E.MQA_PAPER) and E.MQA_SPEED_TEXT["source"].startswith(E.MQA_PAPER)
    assert E.V2_BENCHMARKS_SOURCE.startswith(E.V2_PAPER)


def test_an_uncited_record_is_refused():
    with pytest.raises(ValueError, match="source"):
        E.GQARow("MHA-XXL", "mha", "XXL", 1.51, 47.2, 0.0, "a blog post")
    with pytest.raises(ValueError, match="table, figure or section"):
        E.GQARow("MHA-XXL", "mha", "XXL", 1.51, 47.2, 0.0, E.GQA_PAPER)


def test_scores_are_rectangular_and_schemes_are_course_schemes():
    for table in E.ALL_TABLES:
        assert len(table.scores) == len(table.benchmarks)
        assert all(len(row) == len(table.arms) for row in table.scores)
        assert all(arm.scheme in SCHEMES for arm in table.arms)
    assert {row.scheme for row in E.V2_TABLE1} == {"mha", "gqa", "mqa", "mla"}
    assert {row.scheme for row in E.GQA_T5_XXL} == {"mha", "mqa", "gqa"}
    with pytest.raises(ValueError, match="3 score rows for 4 benchmarks"):
        dataclasses.replace(E.V2_DENSE_7B, scores=E.V2_DENSE_7B.scores[:-1])


def _mqa_layer_params(model: E.MQAVariant, task: str) -> int:
    """Attention and feed-forward weights of one of the MQA paper's models (§4.1): per attention layer
    W^Q, W^O (d x h d_k) and, one K/V head for multi-query or h of them, W^K, W^V; per layer a d x d_ff
    feed-forward pair. Embeddings and norms are the same in every variant and left out."""
    d, setup = E.MQA_SETUP["d_model"], E.MQA_SETUP[task]
    kv_heads = 1 if model.scheme == "mqa" else model.heads
    attention = 2 * d * model.heads * model.d_kv + 2 * d * kv_heads * model.d_kv
    layers = setup["encoder_layers"] + setup["decoder_layers"]
    attentions = (setup["encoder_layers"] * setup["attention_per_encoder_layer"]
                  + setup["decoder_layers"] * setup["attention_per_decoder_layer"])
    return attentions * attention + layers * 2 * d * model.d_ff


@pytest.mark.parametrize("table, task", [(E.MQA_WMT14, "translation"), (E.MQA_LM1B, "language_model")])
def test_mqa_paper_widened_feed_forward_matches_parameters_exactly(table, task):
    """§4.1: every variant has the baseline's parameter count, the feed-forward layers widened to make up for
    what attention lost. With Table 1's and 3's d_ff that balance is exact, to the weight, for every row: a
    mistyped width or head count would break it."""
    counts = {row.model: _mqa_layer_params(row.model, task) for row in table}
    assert len(set(counts.values())) == 1, counts
    assert next(iter(counts.values())) < E.MQA_SETUP[task]["params_stated"]  # embeddings make up the rest


def test_mqa_paper_table2_is_its_section_4_3_timings_divided_by_tokens():
    text = E.MQA_SPEED_TEXT
    for scheme in ("mha", "mqa"):
        row = E.mqa_row(E.MQA_COSTS, scheme)
        assert round(1e3 * text["train_step_ms"][scheme] / text["train_step_tokens"], 1) == row.training
        tokens = text["batch"] * text["source_tokens"]
        assert round(1e3 * text["encoder_ms"][scheme] / tokens, 1) == row.greedy[0]
        # the decoder's per-token times are printed to two significant figures (46, 3.8)
        assert float(f"{1e3 * text['decoder_step_ms'][scheme] / text['batch']:.2g}") == row.greedy[1]


def test_mqa_paper_conclusions_match_its_tables():
    """§4.2: MQA "slightly worse" than the baseline on dev ln(PPL) and dev BLEU "but much closer than any of the
    alternatives involving decreasing h, d_k and d_v"; "the highest BLEU score (28.5) with beam-4 decoding";
    on Billion-Word "slightly worse than the baseline, but significantly better than any of the alternatives"."""
    mha, mqa = (E.mqa_row(E.MQA_WMT14, s) for s in ("mha", "mqa"))
    assert mqa.ln_ppl_dev > mha.ln_ppl_dev and mqa.bleu_dev < mha.bleu_dev
    reduced = [r for r in E.MQA_WMT14 if r.model.d_ff == 6784]
    assert len(reduced) == 4
    assert all(mqa.ln_ppl_dev < r.ln_ppl_dev and mqa.bleu_dev > r.bleu_dev for r in reduced)
    assert max(r.bleu_test[1] for r in E.MQA_WMT14 if r.bleu_test) == mqa.bleu_test[1] == 28.5
    assert "(28.5)" in E.MQA_QUALITY_CONCLUSION
    lm_mha, lm_mqa = (E.mqa_row(E.MQA_LM1B, s) for s in ("mha", "mqa"))
    assert lm_mha.dev_ppl < lm_mqa.dev_ppl < min(r.dev_ppl for r in E.MQA_LM1B if r.model.d_ff == 9984)
    pairs = E.mqa_quality_pairs()
    assert [q.standing for q in pairs] == ["behind", "behind", "behind", "ahead", "behind"]
    level = E.QualityPair("a tie", 1.0, 1.0, True, pairs[0].source)
    lower = dataclasses.replace(level, mqa=0.9)
    assert (level.standing, lower.standing, dataclasses.replace(lower, lower_is_better=False).standing) == (
        "level", "ahead", "behind")
    assert (pairs[3].mha, pairs[3].mqa) == (mha.bleu_test[1], mqa.bleu_test[1])
    # local attention and multi-query are orthogonal: each local model is within 0.3 BLEU of its global twin
    for scheme in ("mha", "mqa"):
        assert abs(E.mqa_row(E.MQA_WMT14, scheme, local=True).bleu_dev - E.mqa_row(E.MQA_WMT14, scheme).bleu_dev) <= 0.3


def test_mqa_row_refuses_what_the_tables_lack():
    with pytest.raises(ValueError, match="table must be one of"):
        E.mqa_row(E.GQA_T5_XXL, "mha")
    with pytest.raises(ValueError, match="scheme"):
        E.mqa_row(E.MQA_WMT14, "gqa")
    with pytest.raises(ValueError, match="no local mha row"):
        E.mqa_row(E.MQA_LM1B, "mha", local=True)
    with pytest.raises(ValueError, match="local"):
        E.mqa_row(E.MQA_WMT14, "mha", local="yes")


def test_v2_table1_capability_matches_appendix_d():
    """Table 1 ranks MHA Strong, GQA Moderate, MQA Weak: Appendix D.1 scores them in that order on every
    benchmark. MLA 'Stronger' than MHA: Table 9's large MoE pair on every benchmark; the small pair on
    three of four (MHA is ahead on C-Eval, 51.6 against 50.9)."""
    rank = {row.scheme: E.CAPABILITY_ORDER.index(row.capability) for row in E.V2_TABLE1}
    assert rank["mqa"] < rank["gqa"] < rank["mha"] < rank["mla"]
    mqa, gqa, mha = (E.V2_DENSE_7B.column(s) for s in ("mqa", "gqa", "mha"))
    assert all(mqa[b] < gqa[b] < mha[b] for b in mha)
    assert all(d > 0 for d in E.V2_MOE_LARGE.deltas("mla", "mha").values())
    small = E.V2_MOE_SMALL.deltas("mla", "mha")
    assert [b for b, d in small.items() if d < 0] == ["C-Eval"] and small["C-Eval"] == -0.7


def test_v2_mla_cache_formula_is_nine_halves_d_h():
    """(d_c + d_h^R) l = 9/2 d_h l with DeepSeek-V2's d_c = 4 d_h and d_h^R = d_h / 2 (§2.1.4)."""
    d_c, d_h_rope = sizing.mla_dims("deepseek-v2")
    d_h = sizing.MODELS["deepseek-v2"].head_dim
    assert (d_c + d_h_rope) / d_h == 9 / 2
    assert "9/2 d_h l" in E.V2_TABLE1[-1].kv_cache_per_token


def test_d2_cache_shares_in_the_text_match_the_table():
    for table, stated in zip((E.V2_MOE_SMALL, E.V2_MOE_LARGE), E.V2_D2_CACHE_SHARE_STATED, strict=True):
        mha, mla = (E.parse_count(table.arms[table.arm(s)].fact("KV Cache per Token (# Element)"))
                    for s in ("mha", "mla"))
        assert round(mla / mha, 2) == stated
    assert E.parse_count("15.7B") == pytest.approx(15.7e9)


def test_d2_mla_models_have_fewer_parameters():
    for table in (E.V2_MOE_SMALL, E.V2_MOE_LARGE):
        for fact in ("# Activated Params", "# Total Params"):
            mha, mla = (E.parse_count(table.arms[table.arm(s)].fact(fact)) for s in ("mha", "mla"))
            assert mla < mha


def test_gqa_table_speed_and_quality_order():
    mha_l, mha, mqa, gqa = (E.gqa_row(n) for n in ("MHA-Large", "MHA-XXL", "MQA-XXL", "GQA-8-XXL"))
    assert mqa.t_infer_s < gqa.t_infer_s < mha_l.t_infer_s < mha.t_infer_s
    assert mha_l.average < mqa.average < gqa.average < mha.average
    assert mqa.uptrain_fraction == gqa.uptrain_fraction == 0.05 and mha.uptrain_fraction == 0.0
    assert round(mha.t_infer_s / gqa.t_infer_s, 1) == 5.4 and round(mha.t_infer_s / mqa.t_infer_s, 1) == 6.3


def test_v32_training_tokens_are_steps_times_sequences():
    for stage, printed_digits in zip(E.V32_TRAINING, (1, 1), strict=True):
        assert round(stage.tokens / 1e9, printed_digits) == round(stage.tokens_stated / 1e9, printed_digits)
    assert E.V32_TRAINING[0].top_k is None and E.V32_TRAINING[1].top_k == sizing.MODELS["deepseek-v3.2"].index_topk


def test_v2_training_saving_is_the_hours_per_trillion():
    hours = E.V2_TRAINING_COST["gpu_hours_per_trillion_tokens"]
    assert round(1 - hours["deepseek-v2"] / hours["deepseek-67b"], 3) == E.V2_TRAINING_COST["saving_stated"]


def test_v32_conclusion_names_the_benchmarks_that_dropped():
    """The report says V3.2-Exp is lower on GPQA, HLE and HMMT 2025: those deltas are negative."""
    d = E.V32_TABLE1.deltas("DeepSeek-V3.2-Exp", "DeepSeek-V3.1-Terminus")
    for name in ("GPQA-Diamond", "Humanity's Last Exam", "HMMT 2025"):
        assert d[name] < 0
    assert "GPQA, HLE, and HMMT 2025" in E.V32_TABLE1.conclusion


def test_within_sorts_every_percentage_benchmark_once():
    split = E.within(E.V32_TABLE1, "dsa", "mla", tolerance=1.0)
    names = [n for group in split.values() for n in group]
    assert sorted(names) == sorted(b.name for b in E.V32_TABLE1.benchmarks if b.percent)
    assert "Codeforces-Div1" not in names  # a rating, not points
    assert split["worse"] == ["Humanity's Last Exam", "Aider-Polyglot", "HMMT 2025"]
    assert split["better"] == ["BrowseComp", "BrowseComp_zh"]
    assert len(E.within(E.V32_TABLE1, "dsa", "mla", tolerance=0)["within"]) == 1  # MMLU-Pro, 85.0 both
    with pytest.raises(ValueError, match="tolerance"):
        E.within(E.V32_TABLE1, "dsa", "mla", tolerance=-1)


def test_cost_curves_are_marked_read_off_and_agree_with_the_report():
    """Figure 3 is a plot: every curve is marked as read off. What the report says in words holds for the
    readings: V3.2-Exp is far cheaper at long positions; short prefills (run in the masked MHA mode) cost
    about what V3.1-Terminus's do, within the reading's resolution plus a little."""
    for curve in E.V32_COST_CURVES:
        assert curve.read_off and "read off" in curve.source and curve.resolution_usd > 0
        assert list(curve.positions) == sorted(curve.positions)
        assert list(curve.usd_per_million) == sorted(curve.usd_per_million)  # cost grows with position
    for phase in ("prefill", "decode"):
        old, new = E.cost_curve(phase, "DeepSeek-V3.1-Terminus"), E.cost_curve(phase, "DeepSeek-V3.2-Exp")
        assert old.positions == new.positions
        assert new.at(131072) < old.at(131072) / 3
    pre_old, pre_new = E.cost_curve("prefill", "DeepSeek-V3.1-Terminus"), E.cost_curve("prefill", "DeepSeek-V3.2-Exp")
    assert abs(pre_new.at(4096) - pre_old.at(4096)) <= 2 * pre_old.resolution_usd
    assert E.V32_GPU_HOUR_USD == 2.0 and "masked MHA mode" in E.V32_SHORT_PREFILL_NOTE


def test_bad_lookups_name_the_argument():
    with pytest.raises(ValueError, match="which"):
        E.V2_DENSE_7B.column("dsa")
    with pytest.raises(ValueError, match="position"):
        E.V32_COST_CURVES[0].at(1000)
    with pytest.raises(ValueError, match="model"):
        E.cost_curve("prefill", "DeepSeek-V3")
    with pytest.raises(ValueError, match="label"):
        E.gqa_row("GQA-4-XXL")
    with pytest.raises(ValueError, match="printed"):
        E.parse_count("lots")


# --- the figures and tables drawn from it (attnlab.evidence_plots) ------------------------------------------


def test_figures_draw_the_published_numbers_in_the_scheme_colours():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_hex

    from attnlab import evidence_plots as EP
    from attnlab.plots import SCHEME_COLORS

    ax = EP.score_bars(E.V2_DENSE_7B)
    heights = sorted(round(p.get_height(), 1) for p in ax.patches)
    assert heights == sorted(v for row in E.V2_DENSE_7B.scores for v in row)
    assert {to_hex(p.get_facecolor()) for p in ax.patches} == {SCHEME_COLORS[s] for s in ("mqa", "gqa", "mha")}
    ax = EP.delta_bars(E.V32_TABLE1, "dsa", "mla")
    assert len(ax.containers[0]) == sum(b.percent for b in E.V32_TABLE1.benchmarks)  # the rating left out
    axes = EP.cost_curves()
    for a, phase in zip(axes, ("prefill", "decode"), strict=True):
        assert "read off" in a.get_title()
        for line, model in zip(a.get_lines(), ("DeepSeek-V3.1-Terminus", "DeepSeek-V3.2-Exp"), strict=True):
            assert list(line.get_ydata()) == list(E.cost_curve(phase, model).usd_per_million)
    ax = EP.paper_gaps()
    assert len(ax.get_yticks()) == len(EP.PAPER_GAPS)
    assert EP.gap_points(E.GQA_T5_XXL, "MQA-XXL", "MHA-XXL") == [-0.6]
    EP.gqa_tradeoff()
    EP.category_gaps(E.V32_TABLE1, "dsa", "mla")
    plt.close("all")
    with pytest.raises(ValueError, match="ratings"):
        EP.score_bars(E.V32_TABLE1)
    with pytest.raises(ValueError, match="table"):
        EP.delta_bars("Table 1", "dsa", "mla")


def test_markdown_table_has_every_score_and_the_source():
    from attnlab import evidence_plots as EP

    text = EP.markdown_table(E.V2_MOE_LARGE, "mla", "mha")
    lines = text.splitlines()
    assert lines[0] == "| benchmark | Large MoE w/ MHA | Large MoE w/ MLA | MLA − MHA |"
    assert "| BBH (EM, 3-shot) | 46.6 | 50.7 | +4.1 |" in lines
    assert "| *KV Cache per Token (# Element)* | 860.2K | 34.6K | |" in lines
    assert E.V2_MOE_LARGE.source in text
    assert "| Codeforces-Div1 (Rating) | 2046 | 2121 | +75 |" in EP.markdown_table(E.V32_TABLE1, "dsa", "mla")
    with pytest.raises(ValueError, match="together"):
        EP.markdown_table(E.V32_TABLE1, "dsa")
