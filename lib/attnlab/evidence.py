"""The papers' own evidence, as data: the published quality and cost results the course's verdicts rest on.

Every number here is copied from the paper named in its record's ``source`` (table, figure or section);
nothing is computed or estimated, except the cost curves of DeepSeek-V3.2-Exp's Figure 3, which the report
gives only as a plot: they are read off the figure, and the record says so (``read_off=True``, with the
reading's resolution). Numbers that could not be checked against the paper itself are left out.

- :data:`MQA_WMT14`, :data:`MQA_COSTS`, :data:`MQA_LM1B`: the MQA paper (Shazeer, arXiv 1911.02150), Tables 1
  to 3: WMT14 English-German quality (dev log-perplexity, dev BLEU, test BLEU with greedy and beam-4 decoding),
  TPUv2 time per output token (training, greedy and beam-4 inference), Billion-Word language-model perplexity;
  :func:`mqa_row` picks the baseline or the multi-query model, :func:`mqa_quality_pairs` sets every quality
  number of the two side by side.
- :data:`V2_TABLE1`: DeepSeek-V2 (arXiv 2405.04434) §2.1.4, Table 1: KV cache per token and capability of
  MHA, GQA, MQA and MLA.
- :data:`V2_DENSE_7B`: DeepSeek-V2 Appendix D.1, Table 8: 7B dense models with MQA, GQA (8 groups) and MHA.
- :data:`V2_MOE_SMALL`, :data:`V2_MOE_LARGE`: DeepSeek-V2 Appendix D.2, Table 9: MoE models with MHA and MLA.
- :data:`GQA_T5_XXL`: the GQA paper (arXiv 2305.13245), Table 1: T5 MHA, MQA and GQA-8, average quality
  and inference time per sample, and the uptraining fraction of §2.1 / §3.1.
- :data:`V32_TABLE1`: DeepSeek-V3.2-Exp report, Table 1: DeepSeek-V3.1-Terminus against DeepSeek-V3.2-Exp.
- :data:`V32_COST_CURVES`: DeepSeek-V3.2-Exp report, Figure 3: cost per million tokens against token
  position, prefill and decode, on H800 GPUs at 2 USD per GPU hour (read off the figure).
- :data:`V32_TRAINING`: DeepSeek-V3.2-Exp report §2.1: the two continued pre-training stages.
- :data:`V2_TRAINING_COST`: DeepSeek-V2 §3.2.3 and §1: H800 GPU hours per trillion tokens, corpus size.

The DeepSeek-V2 numbers are those of the report's PDF in the ``deepseek-ai/DeepSeek-V2`` repository
(``deepseek-v2-tech-report.pdf``, the arXiv paper); the DeepSeek-V3.2-Exp numbers are those of
``DeepSeek_V3_2.pdf`` in ``deepseek-ai/DeepSeek-V3.2-Exp``. Plain frozen dataclasses and tuples: no torch,
no widgets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from attnlab._validate import check_bool, check_choice, check_positive_int, check_real, check_type

MQA_PAPER = "MQA (Shazeer, Fast Transformer Decoding: One Write-Head is All You Need), arXiv 1911.02150"
V2_PAPER = "DeepSeek-V2, arXiv 2405.04434"
GQA_PAPER = "GQA (Ainslie et al.), arXiv 2305.13245"
V32_REPORT = "DeepSeek-V3.2-Exp report (DeepSeek_V3_2.pdf, deepseek-ai/DeepSeek-V3.2-Exp)"

#: DeepSeek-V2 Table 1's capability words, weakest first.
CAPABILITY_ORDER: tuple[str, ...] = ("Weak", "Moderate", "Strong", "Stronger")


@dataclass(frozen=True)
class CapabilityRow:
    """One row of DeepSeek-V2's Table 1: ``scheme`` (course key), ``mechanism`` (the paper's name),
    ``kv_cache_per_token`` (the paper's formula, elements; n_h heads, d_h head width, l layers, n_g groups,
    d_c latent, d_h^R decoupled RoPE key), ``capability`` (one of :data:`CAPABILITY_ORDER`) and ``source``."""

    scheme: str
    mechanism: str
    kv_cache_per_token: str
    capability: str
    source: str

    def __post_init__(self) -> None:
        check_choice("capability", self.capability, CAPABILITY_ORDER)
        _check_source(self.source)


@dataclass(frozen=True)
class Benchmark:
    """A benchmark as a paper's table names it: ``name``, ``metric`` ("EM", "Acc.", "Pass@1", "Rating"...),
    ``shots`` ("3-shot", or "" when the table gives none) and ``category`` (the table's group, or "")."""

    name: str
    metric: str
    shots: str = ""
    category: str = ""

    @property
    def percent(self) -> bool:
        """True when the score is a percentage (0-100), False for a rating such as Codeforces'."""
        return self.metric != "Rating"


@dataclass(frozen=True)
class Arm:
    """One model column of a published table: ``label`` as the paper prints it, ``scheme`` (the attention
    scheme's course key, or "" when the column compares whole models), and the column's own facts as
    (name, value) pairs in ``facts`` (parameters, KV cache elements per token, training tokens), exactly
    as printed."""

    label: str
    scheme: str = ""
    facts: tuple[tuple[str, str], ...] = ()

    def fact(self, name: str) -> str:
        """The printed value of ``name`` in :attr:`facts` (e.g. "# Total Params" -> "15.7B")."""
        return dict(self.facts)[check_choice("name", name, tuple(k for k, _ in self.facts))]


@dataclass(frozen=True)
class ScoreTable:
    """A published table of benchmark scores: ``arms`` (model columns), ``benchmarks`` (rows), ``scores``
    (one tuple per benchmark, one score per arm, in ``arms`` order, as printed), ``source`` (paper, table),
    ``setting`` (what the arms share: size, training tokens) and ``conclusion`` (the paper's own words)."""

    key: str
    title: str
    arms: tuple[Arm, ...]
    benchmarks: tuple[Benchmark, ...]
    scores: tuple[tuple[float, ...], ...]
    source: str
    setting: str
    conclusion: str

    def __post_init__(self) -> None:
        _check_source(self.source)
        if len(self.scores) != len(self.benchmarks):
            raise ValueError(f"{self.key}: {len(self.scores)} score rows for {len(self.benchmarks)} benchmarks")
        for bench, row in zip(self.benchmarks, self.scores, strict=True):
            if len(row) != len(self.arms):
                raise ValueError(f"{self.key}: {bench.name} has {len(row)} scores for {len(self.arms)} arms")

    def arm(self, which: str) -> int:
        """Column index of the arm whose ``label`` or ``scheme`` is ``which``."""
        names = tuple(a.label for a in self.arms) + tuple(a.scheme for a in self.arms if a.scheme)
        check_choice("which", which, names)
        return next(i for i, arm in enumerate(self.arms) if which in (arm.label, arm.scheme))

    def column(self, which: str) -> dict[str, float]:
        """{benchmark name: score} of one arm (label or scheme)."""
        i = self.arm(which)
        return {b.name: row[i] for b, row in zip(self.benchmarks, self.scores, strict=True)}

    def deltas(self, new: str, old: str) -> dict[str, float]:
        """{benchmark name: score(new) - score(old)}, rounded to the table's one decimal (higher is better
        for every benchmark in these tables)."""
        a, b = self.column(new), self.column(old)
        return {name: round(a[name] - b[name], 1) for name in a}


@dataclass(frozen=True)
class GQARow:
    """One row of the GQA paper's Table 1: ``label`` as printed ("MQA-XXL"), ``scheme`` (course key),
    ``size`` ("Large" or "XXL", T5.1.1), ``t_infer_s`` (inference time per sample, seconds), ``average``
    (average dev-set performance over its seven datasets), ``uptrain_fraction`` (alpha: the share of the
    original pre-training steps spent uptraining a converted MHA checkpoint; 0 for the MHA models)."""

    label: str
    scheme: str
    size: str
    t_infer_s: float
    average: float
    uptrain_fraction: float
    source: str

    def __post_init__(self) -> None:
        _check_source(self.source)


@dataclass(frozen=True)
class CostCurve:
    """One line of DeepSeek-V3.2-Exp's Figure 3: ``phase`` ("prefill" or "decode"), ``model``, the token
    positions (tokens) and the cost per million tokens (USD) at each, ``read_off`` (True: read off the
    plotted line, not printed in the report) and ``resolution_usd`` (how finely the reading can be trusted)."""

    phase: str
    model: str
    positions: tuple[int, ...]
    usd_per_million: tuple[float, ...]
    read_off: bool
    resolution_usd: float
    source: str

    def __post_init__(self) -> None:
        _check_source(self.source)
        check_choice("phase", self.phase, ("prefill", "decode"))
        if len(self.positions) != len(self.usd_per_million):
            raise ValueError(f"{len(self.positions)} positions for {len(self.usd_per_million)} costs")

    def at(self, position: int) -> float:
        """The read-off cost at one of :attr:`positions`."""
        return self.usd_per_million[self.positions.index(check_choice("position", position, self.positions))]


@dataclass(frozen=True)
class TrainingStage:
    """One stage of a published training recipe: ``steps``, ``sequences_per_step``, ``sequence_tokens``,
    ``tokens_stated`` (the total the paper prints, as a number), ``learning_rate``, ``top_k`` (None when
    attention is dense) and what it trains (``trains``)."""

    name: str
    steps: int
    sequences_per_step: int
    sequence_tokens: int
    tokens_stated: float
    learning_rate: float
    top_k: int | None
    trains: str
    source: str

    def __post_init__(self) -> None:
        _check_source(self.source)

    @property
    def tokens(self) -> int:
        """steps x sequences per step x tokens per sequence."""
        return self.steps * self.sequences_per_step * self.sequence_tokens


@dataclass(frozen=True)
class MQAVariant:
    """Which model of the MQA paper a row describes: ``label`` as printed ("multi-head", "multi-query local"),
    ``scheme`` (course key: "mha" or "mqa"), ``local`` (the paper's "local" rows: decoder self-attention sees
    the current position and the previous 31 only), ``heads`` h, ``d_kv`` (d_k = d_v) and ``d_ff`` (the
    feed-forward width; the paper widens it where attention has fewer parameters, so every model has the same
    parameter count)."""

    label: str
    scheme: str
    local: bool
    heads: int
    d_kv: int
    d_ff: int

    def __post_init__(self) -> None:
        check_choice("scheme", self.scheme, ("mha", "mqa"))
        check_bool("local", self.local)
        for name in ("heads", "d_kv", "d_ff"):
            check_positive_int(name, getattr(self, name))


@dataclass(frozen=True)
class TranslationRow:
    """One row of the MQA paper's Table 1 (WMT14 English-German): the ``model``, ``ln_ppl_dev`` (log-perplexity
    on the dev set, per subword token; lower is better), ``bleu_dev`` (dev BLEU) and ``bleu_test`` (test BLEU
    with greedy and with beam-4 decoding; None where the table leaves the cell blank)."""

    model: MQAVariant
    ln_ppl_dev: float
    bleu_dev: float
    bleu_test: tuple[float, float] | None
    source: str

    def __post_init__(self) -> None:
        _check_source(self.source)


@dataclass(frozen=True)
class DecodeCostRow:
    """One row of the MQA paper's Table 2: amortized TPUv2 microseconds per output token (sequence length
    128) for ``training`` and for greedy (``greedy``) and beam-4 (``beam4``) inference, each as (encoder,
    decoder): incremental decoding is the decoder's part."""

    model: MQAVariant
    training: float
    greedy: tuple[float, float]
    beam4: tuple[float, float]
    source: str

    def __post_init__(self) -> None:
        _check_source(self.source)


@dataclass(frozen=True)
class LanguageModelRow:
    """One row of the MQA paper's Table 3 (Billion-Word language-modeling benchmark): ``dev_ppl`` (dev-set
    perplexity per word; lower is better)."""

    model: MQAVariant
    dev_ppl: float
    source: str

    def __post_init__(self) -> None:
        _check_source(self.source)


def _check_source(source: object) -> None:
    papers = (MQA_PAPER, V2_PAPER, GQA_PAPER, V32_REPORT)
    if not isinstance(source, str) or not any(p in source for p in papers):
        raise ValueError(f"source={source!r} must name the paper (one of {papers!r})")
    if not any(w in source for w in ("Table", "Figure", "§", "Appendix", "Abstract")):
        raise ValueError(f"source={source!r} must name the table, figure or section")


# ----------------------------------------------------------------------------------------------------
# The MQA paper, §4 Tables 1-3 (an encoder-decoder Transformer on WMT14 EN-DE; a decoder-only LM on Billion-Word)

_MHA, _MQA = MQAVariant("multi-head", "mha", False, 8, 128, 4096), MQAVariant("multi-query", "mqa", False, 8, 128, 5440)
_MHA_LOCAL = MQAVariant("multi-head local", "mha", True, 8, 128, 4096)
_MQA_LOCAL = MQAVariant("multi-query local", "mqa", True, 8, 128, 5440)
_MQA_T1 = f"{MQA_PAPER}, §4.2, Table 1 (dev: greedy decoding of newstest2013; test: newstest2014)"
MQA_WMT14: tuple[TranslationRow, ...] = (
    TranslationRow(_MHA, 1.424, 26.7, (27.7, 28.4), _MQA_T1),
    TranslationRow(_MQA, 1.439, 26.5, (27.5, 28.5), _MQA_T1),
    TranslationRow(_MHA_LOCAL, 1.427, 26.6, (27.5, 28.3), _MQA_T1),
    TranslationRow(_MQA_LOCAL, 1.437, 26.5, (27.6, 28.2), _MQA_T1),
    TranslationRow(MQAVariant("multi-head", "mha", False, 1, 128, 6784), 1.518, 25.8, None, _MQA_T1),
    TranslationRow(MQAVariant("multi-head", "mha", False, 2, 64, 6784), 1.480, 26.2, (26.8, 27.9), _MQA_T1),
    TranslationRow(MQAVariant("multi-head", "mha", False, 4, 32, 6784), 1.488, 26.1, None, _MQA_T1),
    TranslationRow(MQAVariant("multi-head", "mha", False, 8, 16, 6784), 1.513, 25.8, None, _MQA_T1),
)
_MQA_T2 = f"{MQA_PAPER}, §4.3, Table 2 (one TPUv2, 8 cores)"
MQA_COSTS: tuple[DecodeCostRow, ...] = (
    DecodeCostRow(_MHA, 13.2, (1.7, 46), (2.0, 203), _MQA_T2),
    DecodeCostRow(_MQA, 13.0, (1.5, 3.8), (1.6, 32), _MQA_T2),
    DecodeCostRow(_MHA_LOCAL, 13.2, (1.7, 23), (1.9, 47), _MQA_T2),
    DecodeCostRow(_MQA_LOCAL, 13.0, (1.5, 3.3), (1.6, 16), _MQA_T2),
)
_MQA_T3 = f"{MQA_PAPER}, §4.2, Table 3"
MQA_LM1B: tuple[LanguageModelRow, ...] = (
    LanguageModelRow(MQAVariant("multi-head", "mha", False, 8, 128, 8192), 29.9, _MQA_T3),
    LanguageModelRow(MQAVariant("multi-query", "mqa", False, 8, 128, 9088), 30.2, _MQA_T3),
    LanguageModelRow(MQAVariant("multi-head", "mha", False, 1, 128, 9984), 31.2, _MQA_T3),
    LanguageModelRow(MQAVariant("multi-head", "mha", False, 2, 64, 9984), 31.1, _MQA_T3),
    LanguageModelRow(MQAVariant("multi-head", "mha", False, 4, 32, 9984), 31.0, _MQA_T3),
    LanguageModelRow(MQAVariant("multi-head", "mha", False, 8, 16, 9984), 30.9, _MQA_T3),
)


def mqa_row(table: tuple, scheme: str, local: bool = False):
    """The row of one of the MQA paper's tables (:data:`MQA_WMT14`, :data:`MQA_COSTS`, :data:`MQA_LM1B`) for
    the paper's baseline (``scheme`` "mha": 8 heads of 128) or its multi-query model ("mqa"), global or
    ``local``: the pair the paper compares; the other rows vary the heads of multi-head attention."""
    if table not in (MQA_WMT14, MQA_COSTS, MQA_LM1B):
        raise ValueError("table must be one of the MQA paper's tables: evidence.MQA_WMT14, MQA_COSTS or MQA_LM1B")
    check_choice("scheme", scheme, ("mha", "mqa"))
    check_bool("local", local)
    baseline = table[0].model  # each table lists the paper's baseline first: 8 heads of 128
    rows = [r for r in table if r.model.scheme == scheme and r.model.local == local
            and (r.model.heads, r.model.d_kv) == (baseline.heads, baseline.d_kv)]
    if not rows:
        raise ValueError(f"local={local!r}: the table has no {'local ' if local else ''}{scheme} row "
                         "(Table 3 has no local models)")
    return rows[0]


@dataclass(frozen=True)
class QualityPair:
    """One quality number the MQA paper gives for both its baseline (``mha``) and its multi-query model
    (``mqa``): ``metric`` (what and where), ``lower_is_better`` (perplexities) and ``source``."""

    metric: str
    mha: float
    mqa: float
    lower_is_better: bool
    source: str

    def __post_init__(self) -> None:
        _check_source(self.source)

    @property
    def standing(self) -> str:
        """Where the multi-query model stands against the baseline on this number: "ahead" (strictly better),
        "behind" (strictly worse) or "level"."""
        if self.mqa == self.mha:
            return "level"
        return "ahead" if (self.mqa < self.mha) == self.lower_is_better else "behind"


def mqa_quality_pairs() -> tuple[QualityPair, ...]:
    """Every quality number of the MQA paper's baseline beside its multi-query model's (global attention, 8
    heads of 128): Table 1's dev log-perplexity, dev BLEU and test BLEU (greedy, beam 4), Table 3's dev
    perplexity, in that order."""
    t1 = {s: mqa_row(MQA_WMT14, s) for s in ("mha", "mqa")}
    t3 = {s: mqa_row(MQA_LM1B, s) for s in ("mha", "mqa")}
    return (
        QualityPair("WMT14 EN-DE dev ln(PPL)", t1["mha"].ln_ppl_dev, t1["mqa"].ln_ppl_dev, True, _MQA_T1),
        QualityPair("WMT14 EN-DE dev BLEU (greedy)", t1["mha"].bleu_dev, t1["mqa"].bleu_dev, False, _MQA_T1),
        QualityPair("WMT14 EN-DE test BLEU, greedy", t1["mha"].bleu_test[0], t1["mqa"].bleu_test[0], False, _MQA_T1),
        QualityPair("WMT14 EN-DE test BLEU, beam 4", t1["mha"].bleu_test[1], t1["mqa"].bleu_test[1], False, _MQA_T1),
        QualityPair("Billion-Word LM dev perplexity", t3["mha"].dev_ppl, t3["mqa"].dev_ppl, True, _MQA_T3),
    )


#: The MQA paper's §4.1 setup: d_model, layers, the attention layers in each layer (the translation model is an
#: encoder-decoder: self-attention in the encoder; self- and encoder-decoder attention in the decoder; the language
#: model is decoder-only), and the total parameters stated, the same for every variant of a task.
MQA_SETUP = {
    "d_model": 1024,
    "translation": {"encoder_layers": 6, "decoder_layers": 6, "attention_per_encoder_layer": 1,
                    "attention_per_decoder_layer": 2, "params_stated": 211e6},
    "language_model": {"encoder_layers": 0, "decoder_layers": 6, "attention_per_encoder_layer": 0,
                       "attention_per_decoder_layer": 1, "params_stated": 192e6},
    "source": f"{MQA_PAPER}, §4.1 (Experimental Setup)",
}

#: The MQA paper's §4.3 timings before amortization (Table 2 divides them by the tokens): milliseconds per training
#: step of ``train_step_tokens`` target tokens, per encoder pass and per incremental decoder step of a batch of
#: ``batch`` sequences of ``source_tokens`` input tokens.
MQA_SPEED_TEXT = {
    "train_step_ms": {"mha": 433, "mqa": 425}, "train_step_tokens": 32_768,
    "encoder_ms": {"mha": 222, "mqa": 195}, "decoder_step_ms": {"mha": 47, "mqa": 3.9},
    "batch": 1024, "source_tokens": 128,
    "source": f"{MQA_PAPER}, §4.3 (Speed)",
}

#: The MQA paper's own reading of Tables 1 and 3 (§4.2), word for word.
MQA_QUALITY_CONCLUSION = (
    "According to both of these metrics, the multi-query attention model seems to be slightly worse than the "
    "baseline, but much closer than any of the alternatives involving decreasing h, d_k and d_v. [...] Again, "
    "the multi-query model performed similarly to the baseline, and actually had the highest BLEU score (28.5) "
    "with beam-4 decoding.")


# ----------------------------------------------------------------------------------------------------
# DeepSeek-V2, §2.1.4 Table 1 and Appendix D

_T1 = f"{V2_PAPER}, §2.1.4, Table 1"
V2_TABLE1: tuple[CapabilityRow, ...] = (
    CapabilityRow("mha", "Multi-Head Attention (MHA)", "2 n_h d_h l", "Strong", _T1),
    CapabilityRow("gqa", "Grouped-Query Attention (GQA)", "2 n_g d_h l", "Moderate", _T1),
    CapabilityRow("mqa", "Multi-Query Attention (MQA)", "2 d_h l", "Weak", _T1),
    CapabilityRow("mla", "MLA (Ours)", "(d_c + d_h^R) l ≈ 9/2 d_h l", "Stronger", _T1),
)

_HARD4 = (Benchmark("BBH", "EM", "3-shot"), Benchmark("MMLU", "Acc.", "5-shot"),
          Benchmark("C-Eval", "Acc.", "5-shot"), Benchmark("CMMLU", "Acc.", "5-shot"))

V2_DENSE_7B = ScoreTable(
    key="v2_d1", title="7B dense models with MQA, GQA (8 groups) and MHA",
    arms=(Arm("Dense 7B w/ MQA", "mqa", (("# Params", "7.1B"),)),
          Arm("Dense 7B w/ GQA (8 Groups)", "gqa", (("# Params", "6.9B"),)),
          Arm("Dense 7B w/ MHA", "mha", (("# Params", "6.9B"),))),
    benchmarks=_HARD4,
    scores=((33.2, 35.6, 37.0), (37.9, 41.2, 45.2), (30.0, 37.7, 42.9), (34.6, 38.4, 43.5)),
    source=f"{V2_PAPER}, Appendix D.1, Table 8",
    setting="all three trained on 1.33T tokens, same architecture except attention, parameters aligned to "
            "about 7B by adjusting the number of layers",
    conclusion="MHA demonstrates significant advantages over GQA and MQA on hard benchmarks.",
)

_D2 = f"{V2_PAPER}, Appendix D.2, Table 9"
_D2_CONCLUSION = ("MLA shows better performance than MHA. More importantly, MLA requires a significantly smaller "
                  "amount of KV cache (14% for small MoE models and 4% for large MoE models) than MHA.")
V2_MOE_SMALL = ScoreTable(
    key="v2_d2_small", title="Small MoE models (about 16B total parameters) with MHA and MLA",
    arms=(Arm("Small MoE w/ MHA", "mha", (("# Activated Params", "2.5B"), ("# Total Params", "15.8B"),
                                          ("KV Cache per Token (# Element)", "110.6K"))),
          Arm("Small MoE w/ MLA", "mla", (("# Activated Params", "2.4B"), ("# Total Params", "15.7B"),
                                          ("KV Cache per Token (# Element)", "15.6K")))),
    benchmarks=_HARD4,
    scores=((37.9, 39.0), (48.7, 50.0), (51.6, 50.9), (52.3, 53.4)),
    source=_D2, setting="trained on 1.33T tokens, same architecture except attention",
    conclusion=_D2_CONCLUSION,
)
V2_MOE_LARGE = ScoreTable(
    key="v2_d2_large", title="Large MoE models (about 250B total parameters) with MHA and MLA",
    arms=(Arm("Large MoE w/ MHA", "mha", (("# Activated Params", "25.0B"), ("# Total Params", "250.8B"),
                                          ("KV Cache per Token (# Element)", "860.2K"))),
          Arm("Large MoE w/ MLA", "mla", (("# Activated Params", "21.5B"), ("# Total Params", "247.4B"),
                                          ("KV Cache per Token (# Element)", "34.6K")))),
    benchmarks=_HARD4,
    scores=((46.6, 50.7), (57.5, 59.0), (57.9, 59.2), (60.7, 62.5)),
    source=_D2, setting="trained on 420B tokens, same architecture except attention",
    conclusion=_D2_CONCLUSION,
)

#: The KV-cache shares Appendix D.2 states in its text (MLA's cache as a share of MHA's), small then large.
V2_D2_CACHE_SHARE_STATED: tuple[float, float] = (0.14, 0.04)

#: DeepSeek-V2 §3.2.3: H800 GPU hours per trillion training tokens, DeepSeek 67B and DeepSeek-V2; the stated
#: saving (42.5%); §1 / Abstract: the pre-training corpus, trillions of tokens.
V2_TRAINING_COST = {
    "gpu_hours_per_trillion_tokens": {"deepseek-67b": 300_600, "deepseek-v2": 172_800},
    "saving_stated": 0.425,
    "corpus_trillion_tokens": 8.1,
    "source": f"{V2_PAPER}, §3.2.3 (training costs) and Abstract (8.1T tokens, 42.5%)",
}

#: DeepSeek-V2 §3.2.1: the benchmarks its evaluation names (for checking a benchmark name a summary quotes).
V2_BENCHMARK_NAMES: tuple[str, ...] = (
    "MMLU", "C-Eval", "CMMLU", "HellaSwag", "PIQA", "ARC", "BBH", "TriviaQA", "NaturalQuestions", "RACE", "DROP",
    "C3", "CMRC", "WinoGrande", "CLUEWSC", "Pile", "CHID", "CCPM", "GSM8K", "MATH", "CMath", "HumanEval", "MBPP",
    "CRUXEval", "AGIEval",
)
V2_BENCHMARKS_SOURCE = f"{V2_PAPER}, §3.2.1 (Evaluation Benchmarks)"

# ----------------------------------------------------------------------------------------------------
# GQA paper, Table 1 (T5.1.1; MQA and GQA applied to the decoder's self- and cross-attention)

_GQA_T1 = f"{GQA_PAPER}, Table 1 (uptraining proportion alpha = 0.05: §3.1 and Abstract)"
GQA_T5_XXL: tuple[GQARow, ...] = (
    GQARow("MHA-Large", "mha", "Large", 0.37, 46.0, 0.0, _GQA_T1),
    GQARow("MHA-XXL", "mha", "XXL", 1.51, 47.2, 0.0, _GQA_T1),
    GQARow("MQA-XXL", "mqa", "XXL", 0.24, 46.6, 0.05, _GQA_T1),
    GQARow("GQA-8-XXL", "gqa", "XXL", 0.28, 47.1, 0.05, _GQA_T1),
)


def gqa_row(label: str) -> GQARow:
    """The row of :data:`GQA_T5_XXL` printed as ``label`` ("MHA-XXL", "MQA-XXL", "GQA-8-XXL", "MHA-Large")."""
    check_choice("label", label, tuple(r.label for r in GQA_T5_XXL))
    return next(r for r in GQA_T5_XXL if r.label == label)


# ----------------------------------------------------------------------------------------------------
# DeepSeek-V3.2-Exp report

V32_TABLE1 = ScoreTable(
    key="v32_t1", title="DeepSeek-V3.1-Terminus against DeepSeek-V3.2-Exp",
    arms=(Arm("DeepSeek-V3.1-Terminus", "mla"), Arm("DeepSeek-V3.2-Exp", "dsa")),
    benchmarks=(
        Benchmark("MMLU-Pro", "EM", category="General"),
        Benchmark("GPQA-Diamond", "Pass@1", category="General"),
        Benchmark("Humanity's Last Exam", "Pass@1", category="General"),
        Benchmark("BrowseComp", "Acc.", category="Search Agent"),
        Benchmark("BrowseComp_zh", "Acc.", category="Search Agent"),
        Benchmark("SimpleQA", "Acc.", category="Search Agent"),
        Benchmark("LiveCodeBench (2408-2505)", "Pass@1", category="Code"),
        Benchmark("Codeforces-Div1", "Rating", category="Code"),
        Benchmark("Aider-Polyglot", "Acc.", category="Code"),
        Benchmark("SWE Verified (Agent mode)", "Acc.", category="Code Agent"),
        Benchmark("SWE-bench Multilingual (Agent mode)", "Acc.", category="Code Agent"),
        Benchmark("Terminal-bench (Terminus 1 framework)", "Acc.", category="Code Agent"),
        Benchmark("AIME 2025", "Pass@1", category="Math"),
        Benchmark("HMMT 2025", "Pass@1", category="Math"),
    ),
    scores=((85.0, 85.0), (80.7, 79.9), (21.7, 19.8), (38.5, 40.1), (45.0, 47.9), (96.8, 97.1), (74.9, 74.1),
            (2046, 2121), (76.1, 74.5), (68.4, 67.8), (57.8, 57.9), (36.7, 37.7), (88.4, 89.3), (86.1, 83.6)),
    source=f"{V32_REPORT}, §3, Table 1",
    setting="the same post-training pipeline, algorithm and data for both (§2.2); V3.2-Exp is V3.1-Terminus "
            "plus DSA through continued training",
    conclusion="Overall, DeepSeek-V3.2-Exp does not show substantial performance degradation compared with "
               "DeepSeek-V3.1-Terminus. The performance of DeepSeek-V3.2-Exp on GPQA, HLE, and HMMT 2025 is "
               "lower than that of DeepSeek-V3.1-Terminus because DeepSeek-V3.2-Exp generates fewer reasoning "
               "tokens. However, this performance gap closes when using intermediate checkpoints that produce a "
               "comparable number of tokens.",
)

#: Figure 3's pricing: "estimated from benchmarking the actual service deployed on H800 GPUs, at a rental
#: price of 2 USD per GPU hour" (§3, Inference Costs).
V32_GPU_HOUR_USD = 2.0
V32_SHORT_PREFILL_NOTE = ("Note that for short-sequence prefilling, we specially implement a masked MHA mode to "
                          "simulate DSA, which can achieve higher efficiency under short-context conditions.")
V32_COST_SOURCE = f"{V32_REPORT}, §3 (Inference Costs), Figure 3"

_FIG3 = f"{V32_COST_SOURCE}, read off the plotted lines (not printed in the report)"
_K = 1024
_PREFILL_AT = (4 * _K, 8 * _K, 16 * _K, 32 * _K, 64 * _K, 96 * _K, 128 * _K)
_DECODE_AT = (2 * _K, 8 * _K, 16 * _K, 32 * _K, 64 * _K, 96 * _K, 128 * _K)
V32_COST_CURVES: tuple[CostCurve, ...] = (
    CostCurve("prefill", "DeepSeek-V3.1-Terminus", _PREFILL_AT, (0.075, 0.095, 0.13, 0.21, 0.36, 0.51, 0.665),
              True, 0.01, f"{_FIG3} (a) Prefilling"),
    CostCurve("prefill", "DeepSeek-V3.2-Exp", _PREFILL_AT, (0.085, 0.10, 0.11, 0.12, 0.14, 0.165, 0.19),
              True, 0.01, f"{_FIG3} (a) Prefilling"),
    CostCurve("decode", "DeepSeek-V3.1-Terminus", _DECODE_AT, (0.10, 0.20, 0.33, 0.59, 1.115, 1.635, 2.15),
              True, 0.02, f"{_FIG3} (b) Decoding"),
    CostCurve("decode", "DeepSeek-V3.2-Exp", _DECODE_AT, (0.14, 0.15, 0.155, 0.17, 0.19, 0.225, 0.245),
              True, 0.02, f"{_FIG3} (b) Decoding"),
)


def cost_curve(phase: str, model: str) -> CostCurve:
    """The Figure 3 line of ``model`` ("DeepSeek-V3.1-Terminus" or "DeepSeek-V3.2-Exp") in ``phase``."""
    check_choice("phase", phase, ("prefill", "decode"))
    check_choice("model", model, tuple(dict.fromkeys(c.model for c in V32_COST_CURVES)))
    return next(c for c in V32_COST_CURVES if c.phase == phase and c.model == model)


_TRAIN = f"{V32_REPORT}, §2.1 (Continued Pre-Training)"
V32_TRAINING: tuple[TrainingStage, ...] = (
    TrainingStage("dense warm-up", 1000, 16, 128 * _K, 2.1e9, 1e-3, None,
                  "the lightning indexer only (everything else frozen), KL to the dense attention", _TRAIN),
    TrainingStage("sparse training", 15000, 480, 128 * _K, 943.7e9, 7.3e-6, 2048,
                  "the whole model (LM loss) and the indexer (KL on the selected tokens, input detached)", _TRAIN),
)

#: Every record with a ``source``, for listing and testing.
ALL_TABLES: tuple[ScoreTable, ...] = (V2_DENSE_7B, V2_MOE_SMALL, V2_MOE_LARGE, V32_TABLE1)


def parse_count(printed: str) -> float:
    """A count as the papers print it, "110.6K" -> 110600.0, "15.7B" -> 1.57e10."""
    check_type("printed", printed, str)
    if not re.fullmatch(r"\d+(\.\d+)?[KMBT]", printed):
        raise ValueError(f"printed={printed!r} must be a number followed by K, M, B or T, like '110.6K'")
    scale = {"K": 1e3, "M": 1e6, "B": 1e9, "T": 1e12}[printed[-1]]
    return float(printed[:-1]) * scale


def within(table: ScoreTable, new: str, old: str, tolerance: float = 1.0) -> dict[str, list[str]]:
    """Sort ``table``'s percentage benchmarks by score(new) - score(old): {"within": |delta| <= tolerance,
    "better": delta > tolerance, "worse": delta < -tolerance}; ratings (Codeforces) are left out, their
    scale is not points."""
    check_real("tolerance", tolerance, minimum=0)
    deltas = table.deltas(new, old)
    out: dict[str, list[str]] = {"within": [], "better": [], "worse": []}
    for bench in table.benchmarks:
        if not bench.percent:
            continue
        d = deltas[bench.name]
        out["within" if abs(d) <= tolerance else "better" if d > 0 else "worse"].append(bench.name)
    return out
