"""Chapter 13: every checkable claim in the video's description and two summaries of it, with a verdict.

Each claim is one :class:`Claim`. Where arithmetic can decide a verdict, a small builder function
computes it from :mod:`attnlab.sizing`, :mod:`attnlab.dsa` or the shipped tiny checkpoints and passes
the deciding condition to :func:`_verdict`; its inputs default to the seed's own figures, so a test (or
a learner) can change an input and watch the verdict change. Claims that arithmetic cannot settle carry
the figures and the primary source the verdict rests on.

Verdicts: "right" (the figure or statement holds as written), "wrong" (it does not), "needs context"
(it holds only with a qualification the seed leaves out). Every chapter prints them as
:data:`VERDICT_LABELS` through :func:`verdict_label`, looking the claim up with :func:`claim`, so the same
claim carries the same label in chapters 0, 5, 7, 10 and 13. Claims about quality rest on the papers' own
tables, :mod:`attnlab.evidence`.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from datetime import date

import torch

from attnlab import dsa, sizing
from attnlab import evidence as E
from attnlab._validate import check_positive_int
from attnlab.attention import attention_matrix, softmax
from attnlab.model import load_checkpoint
from attnlab.quality import Gap, load_study
from attnlab.sizing import MODELS, format_bytes, format_ratio

VIDEO = "video description"
SUMMARY_A = "summary A (Noiz notes)"
SUMMARY_B = "summary B"
SIDEBAR = "video page sidebar (another video's title)"
SOURCES: tuple[str, ...] = (VIDEO, SUMMARY_A, SUMMARY_B, SIDEBAR)
VERDICTS: tuple[str, ...] = ("right", "wrong", "needs context")
#: How every chapter prints a verdict: one label per verdict, the same for the same claim everywhere.
VERDICT_LABELS: dict[str, str] = {"right": "Right", "wrong": "Wrong", "needs context": "Needs context"}

V2_PAPER = "DeepSeek-V2, arXiv 2405.04434"
V3_CONFIG = "DeepSeek-V3 inference/configs/config_671B.json"
DSA_NEWS = "DeepSeek API news, 29 September 2025 (DeepSeek-V3.2-Exp)"
V4_REPORT = "DeepSeek-V4 report (April 2026): V4-Pro about 10%, V4-Flash about 7% of V3.2's KV cache at 1M tokens"


@dataclass(frozen=True)
class Claim:
    """One claim from a seed file and its check.

    key: a short id; text: the claim as the seed states it; source: which seed says it (one of
    :data:`SOURCES`); verdict: one of :data:`VERDICTS`; computation: the attnlab call that decides it;
    evidence: the computed figures, as text; primary_source: the paper or code the figures rest on.
    """

    key: str
    text: str
    source: str
    verdict: str
    computation: str
    evidence: str
    primary_source: str

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"source={self.source!r} must be one of {SOURCES}")
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict={self.verdict!r} must be one of {VERDICTS}")


def _verdict(condition: bool, if_true: str = "right", if_false: str = "wrong") -> str:
    """The verdict a computed ``condition`` gives: ``if_true`` when it holds, else ``if_false``."""
    if if_true not in VERDICTS or if_false not in VERDICTS:
        raise ValueError(f"verdicts must be among {VERDICTS}, got {if_true!r} and {if_false!r}")
    return if_true if bool(condition) else if_false


def arxiv_year_month(arxiv_id: str) -> tuple[int, int]:
    """(year, month) an arXiv identifier YYMM.NNNNN encodes: "1706.03762" -> (2017, 6)."""
    if not isinstance(arxiv_id, str) or len(arxiv_id.split(".")[0]) != 4 or not arxiv_id[:4].isdigit():
        raise ValueError(f"arxiv_id={arxiv_id!r} must look like 'YYMM.NNNNN'")
    return 2000 + int(arxiv_id[:2]), int(arxiv_id[2:4])


def val_loss(name: str) -> float:
    """Held-out loss (nats per token) stored with a shipped tiny checkpoint, e.g. "tiny_mla"."""
    return float(load_checkpoint(name).metrics["val_loss"])


# ----------------------------------------------------------------------------------------------------
# the builders, one per claim whose verdict is computed; defaults are the seeds' own figures


def _what_if(model: str, scheme: str, holds: bool) -> tuple[str, str]:
    """The verdict of a ratio computed for ``scheme`` on ``model``'s shape: "right" when the arithmetic holds
    and the model really uses the scheme, "needs context" when it holds only as a what-if (the model uses
    another scheme), "wrong" when it does not hold; and the note saying which."""
    spec = MODELS[model]
    if not holds:
        return "wrong", ""
    if spec.attention == scheme:
        return "right", f" ({spec.name} uses {scheme.upper()})"
    return "needs context", (f": a what-if, {spec.name} uses {spec.attention.upper()}, and the ratio is this "
                             "shape's own, not a property of the scheme")


def mqa_ratio_claim(claimed: float = 128, model: str = "deepseek-v3") -> Claim:
    """"MQA achieves 128x memory reduction": MHA / MQA bytes per token, 2 n_h d_h / 2 d_h = n_h. Right for a
    model that uses MQA; for another model's shape (DeepSeek-V3's 128 heads) only a what-if."""
    mha, mqa = sizing.cache_bytes_per_token(model, scheme="mha"), sizing.cache_bytes_per_token(model, scheme="mqa")
    ratio = mha / mqa
    verdict, note = _what_if(model, "mqa", ratio == claimed)
    return Claim("mqa_128x", f"MQA achieves {claimed:g}x memory reduction", SUMMARY_A,
                 verdict, f'cache_bytes_per_token("{model}", scheme="mha") / (scheme="mqa")',
                 f"per layer MHA {sizing.kv_formula(model, 'mha')} against MQA {sizing.kv_formula(model, 'mqa')} "
                 f"numbers; per token {mha:,} B / {mqa:,} B = {format_ratio(ratio)} = n_h{note}",
                 f"MQA, arXiv 1911.02150; {V3_CONFIG}")


def bytes_per_token_claim(claimed_mha_mb: float = 4, claimed_mqa_kb: float = 31, model: str = "deepseek-v3") -> Claim:
    """"4MB per token -> 31kB per token": V3's shapes with d_h = 128, bfloat16, MHA then MQA."""
    mha, mqa = (sizing.cache_bytes_per_token(model, "bfloat16", scheme) for scheme in ("mha", "mqa"))
    ok = round(mha / 1e6) == claimed_mha_mb and math.floor(mqa / 1e3) == claimed_mqa_kb
    return Claim("kv_4mb_31kb", f"KV cache {claimed_mha_mb:g}MB per token -> {claimed_mqa_kb:g}kB per token",
                 SUMMARY_A, _verdict(ok), f'cache_bytes_per_token("{model}", "bfloat16", "mha" / "mqa")',
                 f"{mha:,} B ({format_bytes(mha)}) and {mqa:,} B ({format_bytes(mqa)}), d_h = "
                 f"{MODELS[model].head_dim}", f"{V2_PAPER}, Table 1; {V3_CONFIG}")


def gqa_ratio_claim(claimed: float = 8, n_kv_heads: int = 16, model: str = "deepseek-v3") -> Claim:
    """"GQA: 8-fold memory reduction vs MHA", with 16 KV heads: n_h / n_g. Right for a GQA model with that
    many KV heads; on another model's shape only a what-if."""
    ratio = sizing.reduction_vs_mha(model, "gqa", n_kv_heads)
    verdict, note = _what_if(model, "gqa", ratio == claimed)
    spec = MODELS[model]
    if verdict == "right" and spec.n_kv_heads != n_kv_heads:
        verdict, note = "needs context", f": {spec.name} has {spec.n_kv_heads} KV heads, not {n_kv_heads}"
    return Claim("gqa_8x", f"GQA gives a {claimed:g}-fold memory reduction vs MHA", SUMMARY_A,
                 verdict, f'reduction_vs_mha("{model}", "gqa", n_kv_heads={n_kv_heads})',
                 f"per layer MHA {sizing.kv_formula(model, 'mha')} against GQA "
                 f"{sizing.kv_formula(model, 'gqa', n_kv_heads)} numbers: n_h / n_g = {MODELS[model].n_heads} / "
                 f"{n_kv_heads} = {format_ratio(ratio)}{note}", f"GQA, arXiv 2305.13245; {V2_PAPER}, Table 1")


def gqa_in_deepseek_claim(model: str = "deepseek-v3") -> Claim:
    """"16 groups in DeepSeek V3/R1": right only if the model's published attention is GQA."""
    attention = MODELS[model].attention
    return Claim("gqa_16_groups_v3", f"GQA uses 16 groups in {MODELS[model].name}/R1", SUMMARY_A,
                 _verdict(attention == "gqa"), f'MODELS["{model}"].attention',
                 f'"{attention}": V3/R1 cache an MLA latent, not grouped K/V; 16 groups is a what-if',
                 V3_CONFIG)


def mla_ratio_claim(claimed: float = 57, model: str = "deepseek-v3") -> Claim:
    """"MLA: 57-fold reduction vs MHA": 2 n_h d_h / (d_c + d_h^R) = 32,768 / 576."""
    ratio = sizing.reduction_vs_mha(model, "mla")
    return Claim("mla_57x", f"MLA gives a {claimed:g}-fold reduction vs MHA", SUMMARY_A,
                 _verdict(round(ratio) == claimed), f'reduction_vs_mha("{model}", "mla")',
                 f"{sizing.kv_elements_per_token(model, 'mha', per_layer=True):,} / "
                 f"{sizing.kv_elements_per_token(model, 'mla', per_layer=True)} = {format_ratio(ratio)}, "
                 f"rounds to {round(ratio)}", f"{V2_PAPER}, Table 1; {V3_CONFIG}")


def mla_width_claim(claimed: int = 576, model: str = "deepseek-v3") -> Claim:
    """"576-dimensional compressed vector": the cached width is d_c + d_h^R, two parts."""
    d_c, d_h_rope = sizing.mla_dims(model)
    width = sizing.kv_elements_per_token(model, per_layer=True)
    verdict = _verdict(width == claimed, "needs context", "wrong")
    return Claim("mla_576_dim", f"MLA caches a {claimed}-dimensional compressed vector in DeepSeek V3/R1",
                 SUMMARY_A, verdict, f'kv_elements_per_token("{model}", per_layer=True), mla_dims("{model}")',
                 f"{width} = {d_c} latent c^KV + {d_h_rope} decoupled RoPE key k^R: only {d_c} is the "
                 "compressed vector", f"{V2_PAPER}, §2.1.3; {V3_CONFIG}")


def mla_576_times_claim(claimed: float = 576, model: str = "deepseek-v3") -> Claim:
    """"reduces cache size by 576 times": the factor is 2 n_h d_h / (d_c + d_h^R), 576 is the width."""
    ratio = sizing.reduction_vs_mha(model)
    return Claim("mla_576_times", f"MLA reduces the cache size by {claimed:g} times per token", SUMMARY_B,
                 _verdict(round(ratio) == claimed), f'reduction_vs_mha("{model}")',
                 f"factor {format_ratio(ratio)}; {sizing.kv_elements_per_token(model, per_layer=True)} is "
                 "the cached width per layer", f"{V2_PAPER}, Table 1")


def speedup_claim(claimed: float = 6, reported: float = 5.76) -> Claim:
    """"six times faster": DeepSeek-V2 reported up to 5.76x generation throughput against DeepSeek 67B."""
    v2, base = sizing.kv_elements_per_token("deepseek-v2"), sizing.kv_elements_per_token("deepseek-67b")
    verdict = _verdict(round(reported) == claimed, "needs context", "wrong")
    return Claim("six_times_faster", f"MLA generates tokens {claimed:g} times faster than traditional "
                 "Transformers", SUMMARY_B, verdict,
                 'kv_elements_per_token("deepseek-v2") / kv_elements_per_token("deepseek-67b")',
                 f"reported up to {reported}x throughput, V2 vs dense DeepSeek 67B (GQA, 8 KV heads), with "
                 f"KV quantization and MoE; by element count the cache shrinks {1 - v2 / base:.1%}, "
                 "not MLA alone", f"{V2_PAPER}, §1 and §3.2.3")


def mqa_misreading_claim(kv_heads_described: str = "own") -> Claim:
    """Summary B: "in multi-query attention, each head gets its own set of keys and values" (that is MHA)."""
    mqa_kv = sizing.table1_elements(8, 64, 1, 1, 256, 32)["mqa"]
    per_head = 2 * 64
    described = per_head * 8 if kv_heads_described == "own" else per_head
    return Claim("mqa_own_kv", "In multi-query attention each head gets its own set of keys and values",
                 SUMMARY_B, _verdict(described == mqa_kv),
                 "table1_elements(n_h=8, d_h=64, l=1, ...)['mqa']",
                 f"MQA caches 2 d_h = {mqa_kv} numbers (one K and one V for all heads); own K/V per head "
                 f"would be 2 n_h d_h = {per_head * 8}: that is MHA", "MQA, arXiv 1911.02150")


def dsa_date_claim(claimed: tuple[int, int] = (2025, 9)) -> Claim:
    """"DSA released in September 2025": DeepSeek-V3.2-Exp was announced on 29 September 2025."""
    announced = date(2025, 9, 29)
    return Claim("dsa_september_2025", "DeepSeek Sparse Attention was released in September 2025", SUMMARY_A,
                 _verdict((announced.year, announced.month) == tuple(claimed)), "date(2025, 9, 29)",
                 f"announced {announced.isoformat()}", DSA_NEWS)


def dsa_price_claim(claimed_cut: float = 0.50, announced_cut_over: float = 0.50) -> Claim:
    """"cut API pricing by 50%": the announcement cut prices by more than 50%."""
    return Claim("dsa_price_50", "DSA cut API pricing by 50%", SUMMARY_A,
                 _verdict(claimed_cut <= announced_cut_over), "announced cut vs claimed cut",
                 f"announced: more than {announced_cut_over:.0%}; claimed {claimed_cut:.0%} is a lower bound",
                 DSA_NEWS)


def dsa_compute_claim(context_len: int = 131_072, claimed_cut: float = 0.50, model: str = "deepseek-v3.2") -> Claim:
    """"cut compute costs by 50%": DSA's saving depends on the context; below the crossover it costs more."""
    spec = MODELS[model]
    cost = dsa.layer_cost(spec, context_len)
    crossover = dsa.crossover_context(spec)
    saved = 1 - cost["decode_flops_dsa"] / cost["decode_flops_dense"]
    prefill_saved = 1 - cost["prefill_flops_dsa"] / cost["prefill_flops_dense"]
    verdict = _verdict(crossover is not None and context_len >= crossover, "needs context", "wrong")
    return Claim("dsa_compute_50", f"DSA cut compute costs by {claimed_cut:.0%}", SUMMARY_A, verdict,
                 f'dsa.crossover_context(MODELS["{model}"]), dsa.layer_cost(MODELS["{model}"], {context_len})',
                 f"attention decode FLOPs saved at {context_len // 1024}K: {saved:.1%}, prefill: "
                 f"{prefill_saved:.1%}; below {crossover:,} tokens of context DSA costs more than dense MLA",
                 "DeepSeek-V3.2-Exp tech report and inference/model.py")


def tiny_gap(new: str, old: str) -> Gap:
    """``new`` against ``old`` in the course's quality study (:func:`attnlab.quality.load_study`: tiny models with
    parameters matched, several seeds each): the difference of means and whether it exceeds the seeds' spread."""
    return load_study().gap(new, old)


def _tiny_contradicts(gap: Gap, paper_says_new_worse: bool) -> bool:
    """True when the tiny models clearly (beyond the seeds' spread) point the other way from the papers."""
    return gap.clear and (gap.delta > 0) != paper_says_new_worse


def _tiny_note(gap: Gap) -> str:
    study = load_study()
    return (f"tiny models ({study.summary(gap.new).n} seeds, parameters matched): {gap.new.upper()} "
            f"{study.summary(gap.new).mean:.3f}, {gap.old.upper()} {study.summary(gap.old).mean:.3f} nats, "
            f"{gap.words()}")


def mla_quality_claim(reported_better_in_paper: bool | None = None) -> Claim:
    """"slight performance improvement" of MLA: the V2 paper's ablation (Appendix D.2, Table 9, from
    :mod:`attnlab.evidence`: MLA ahead on average at both scales unless ``reported_better_in_paper`` says
    otherwise). "right" when the papers say so and the tiny models of the quality study do not clearly (beyond
    their seeds' spread) say the opposite; "needs context" otherwise."""
    gap = tiny_gap("mla", "mha")
    gaps = [list(t.deltas("mla", "mha").values()) for t in (E.V2_MOE_SMALL, E.V2_MOE_LARGE)]
    if reported_better_in_paper is None:
        reported_better_in_paper = all(sum(g) > 0 for g in gaps)
    holds = reported_better_in_paper and not _tiny_contradicts(gap, paper_says_new_worse=False)
    ahead = sum(d > 0 for g in gaps for d in g)
    return Claim("mla_slightly_better", "MLA brings a slight performance improvement over MHA", SUMMARY_A,
                 _verdict(holds, "right", "needs context"),
                 'quality.load_study().gap("mla", "mha"); evidence.V2_MOE_*',
                 f"V2 paper (Appendix D.2): MLA ahead of MHA on {ahead} of {sum(map(len, gaps))} benchmark scores, "
                 f"mean {sum(gaps[0]) / len(gaps[0]):+.1f} (small MoE) and {sum(gaps[1]) / len(gaps[1]):+.1f} "
                 f"points (large MoE); {_tiny_note(gap)}", E.V2_MOE_SMALL.source)


def mqa_quality_claim() -> Claim:
    """"at the cost of reduced expressive power": MQA loses a little quality (the MQA paper's Tables 1 and 3,
    behind on most of its quality numbers; DeepSeek-V2's 7B dense ablation), unless the tiny models of the
    quality study clearly say otherwise."""
    gap = tiny_gap("mqa", "mha")
    pairs = E.mqa_quality_pairs()
    behind = [q for q in pairs if q.standing == "behind"]
    ahead = [q for q in pairs if q.standing == "ahead"]
    dense = E.V2_DENSE_7B.deltas("mqa", "mha")
    papers = len(behind) > len(pairs) / 2 and sum(dense.values()) < 0
    return Claim("mqa_quality", "MQA costs some expressive power (quality)", SUMMARY_A,
                 _verdict(papers and not _tiny_contradicts(gap, paper_says_new_worse=True)),
                 'quality.load_study().gap("mqa", "mha"); evidence.mqa_quality_pairs(); evidence.V2_DENSE_7B',
                 f"MQA paper: MQA behind MHA on {len(behind)} of {len(pairs)} quality numbers (dev BLEU "
                 f"{pairs[1].mha:g} vs {pairs[1].mqa:g}), ahead on "
                 f"{', '.join(f'{q.metric} ({q.mqa:g} vs {q.mha:g})' for q in ahead) or 'none'}; V2 7B dense: MQA "
                 f"behind MHA by {-sum(dense.values()) / len(dense):.1f} points on average; {_tiny_note(gap)}",
                 f"MQA, arXiv 1911.02150, Tables 1 and 3; {E.V2_DENSE_7B.source}")


def gqa_quality_claim() -> Claim:
    """"GQA preserves quality better than MQA": the GQA paper (T5-XXL 47.1 vs 46.6), unless the tiny models of
    the quality study clearly say otherwise."""
    gap = tiny_gap("gqa", "mqa")
    t5_gqa, t5_mqa = E.gqa_row("GQA-8-XXL").average, E.gqa_row("MQA-XXL").average
    return Claim("gqa_quality", "GQA preserves model quality better than MQA", SUMMARY_A,
                 _verdict(t5_gqa > t5_mqa and not _tiny_contradicts(gap, paper_says_new_worse=False)),
                 'quality.load_study().gap("gqa", "mqa"); evidence.GQA_T5_XXL',
                 f"GQA paper T5-XXL {t5_gqa} vs {t5_mqa}; {_tiny_note(gap)}", "GQA, arXiv 2305.13245, Table 1")


def attention_claim(seed: int = 0) -> Claim:
    """"dot products between query and key vectors, then softmax": attention_matrix against the formula."""
    gen = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(4, 8, generator=gen, dtype=torch.float64) for _ in range(3))
    out, weights = attention_matrix(q, k, v)
    by_hand = softmax(q @ k.T / math.sqrt(8)) @ v
    ok = torch.allclose(out, by_hand) and torch.allclose(weights.sum(-1), torch.ones(4, dtype=torch.float64))
    return Claim("attention_softmax", "Attention scores are query-key dot products, normalised by softmax",
                 SUMMARY_A, _verdict(ok), "attention_matrix(q, k, v) vs softmax(q k^T / sqrt(d)) v",
                 "same output to float64 rounding; every row of weights sums to 1 (scaled by 1/sqrt(d))",
                 "Attention Is All You Need, arXiv 1706.03762, eq. 1")


def memory_bound_claim(model: str = "deepseek-v3") -> Claim:
    """"attention needs a lot of memory bandwidth, making generation slow": MHA decoding does 1 FLOP per byte."""
    intensity = sizing.decode_flops_per_byte(model, "mha")
    h100_ridge = 989e12 / 3.35e12  # bf16 dense FLOP/s over HBM bytes/s, H100 SXM datasheet
    return Claim("memory_bandwidth", "Attention needs a lot of memory bandwidth, making generation slow",
                 SUMMARY_B, _verdict(intensity < h100_ridge), f'decode_flops_per_byte("{model}", "mha")',
                 f"{intensity:g} FLOP per cache byte against about {h100_ridge:.0f} an H100 can feed: memory-bound",
                 "MQA, arXiv 1911.02150 (performance analysis); NVIDIA H100 SXM datasheet")


def absorb_compute_claim(model: str = "deepseek-v3") -> Claim:
    """"computing attention directly from the latent avoids additional compute": absorbed MLA reads far fewer
    bytes but does more multiply-adds per cached token than MHA."""
    mla = sizing.attention_macs_per_cached_token(model, "mla")
    mha = sizing.attention_macs_per_cached_token(model, "mha")
    return Claim("absorb_no_extra_compute", "Computing attention directly from the latent cache avoids "
                 "additional compute at inference", SUMMARY_B, _verdict(mla <= mha, "right", "needs context"),
                 f'attention_macs_per_cached_token("{model}", "mla" / "mha")',
                 f"absorbed MLA: {mla:,} multiply-adds per cached token and layer, MHA {mha:,} "
                 f"({mla / mha:.2f}x): it avoids re-expanding K and V, not arithmetic",
                 "DeepSeek-V3 inference/model.py (absorb mode)")


def shared_projections_claim() -> Claim:
    """Summary B: heads "share these projections", "the same matrices are used by different heads". The
    latent (and W^DKV) is shared; each head's up-projection W^UK_i differs (trained tiny_mla)."""
    w_uk = load_checkpoint("tiny_mla").blocks[0].attn.w_uk.detach()  # (n_heads, d_h, d_c)
    flat = torch.nn.functional.normalize(w_uk.reshape(w_uk.shape[0], -1), dim=1)
    cos = flat @ flat.T
    top = cos[~torch.eye(len(cos), dtype=torch.bool)].max().item()
    return Claim("shared_projections", "MLA shares the same projection matrices across all heads", SUMMARY_B,
                 _verdict(top > 0.999, "right", "needs context"),
                 'load_checkpoint("tiny_mla").blocks[0].attn.w_uk: cosine between heads',
                 f"one latent and one W^DKV serve all heads; the per-head W^UK_i differ (largest cosine "
                 f"{top:.2f})", f"{V2_PAPER}, eqs. 41-45")


def fewer_parameters_claim(model: str = "deepseek-v3") -> Claim:
    """"fewer parameters are needed": K/V projection weights of V3's shapes, MHA against MLA."""
    s = MODELS[model]
    d_c, d_h_rope = sizing.mla_dims(s)
    mha = 2 * s.hidden_size * s.n_heads * s.head_dim
    mla = s.hidden_size * (d_c + d_h_rope) + d_c * s.n_heads * 2 * s.head_dim
    tiny_mha, tiny_mla = (load_checkpoint(n).metrics["n_params"] for n in ("tiny_mha", "tiny_mla"))
    verdict = _verdict(mla < mha and tiny_mla < tiny_mha, "right", "needs context")
    return Claim("fewer_parameters", "MLA needs fewer parameters", SUMMARY_B, verdict,
                 f'K/V projection weights from MODELS["{model}"]; tiny checkpoints\' n_params',
                 f"V3 K/V projections per layer: MHA {mha:,}, MLA {mla:,}; tiny models: MHA {tiny_mha:,}, "
                 f"MLA {tiny_mla:,} parameters", f"{V2_PAPER}, §2.1.2; {V3_CONFIG}")


def query_latent_claim(model_q_lora_rank: int = 1536, model: str = "deepseek-v3") -> Claim:
    """"compress query/key/value into a lower-dimensional latent": K and V share one cached latent; the
    query has its own, wider, uncached latent (q_lora_rank)."""
    d_c, _ = sizing.mla_dims(model)
    return Claim("qkv_one_latent", "MLA compresses queries, keys and values into a lower-dimensional latent",
                 SUMMARY_A, _verdict(model_q_lora_rank == d_c, "right", "needs context"),
                 f'mla_dims("{model}") and q_lora_rank', f"K and V: one cached latent of {d_c}; Q: its own "
                 f"latent of {model_q_lora_rank}, never cached", f"{V2_PAPER}, §2.1.2; {V3_CONFIG}")


def timeline_claim() -> Claim:
    """The video walks "what happened after" 2017's MHA in order: the arXiv ids of its references."""
    refs = {"MHA": "1706.03762", "MQA": "1911.02150", "GQA": "2305.13245", "MLA": "2405.04434"}
    dates = [arxiv_year_month(i) for i in refs.values()] + [(2025, 9)]  # + DSA's announcement
    mha_year = arxiv_year_month(refs["MHA"])[0]
    return Claim("mha_2017_timeline", "Multi-head attention is from the 2017 Transformer paper; MQA, GQA, MLA "
                 "and DSA came after it, in that order", VIDEO, _verdict(mha_year == 2017 and dates == sorted(dates)),
                 "arxiv_year_month(...) for the description's references",
                 ", ".join(f"{k} {y}-{m:02d}" for k, (y, m) in zip([*refs, "DSA"], dates, strict=True)),
                 "arXiv 1706.03762, 1911.02150, 2305.13245, 2405.04434; " + DSA_NEWS)


def mla_reference_claim(arxiv_id: str = "2405.04434") -> Claim:
    """The description cites arXiv 2405.04434 for MLA: the DeepSeek-V2 paper (May 2024), where MLA appears."""
    year, month = arxiv_year_month(arxiv_id)
    return Claim("mla_reference", f"MLA's reference is arXiv {arxiv_id}", VIDEO,
                 _verdict(arxiv_id == V2_PAPER.split()[-1]), "arxiv_year_month and the V2 paper's id",
                 f"{arxiv_id} = DeepSeek-V2 ({year}-{month:02d}), which introduces MLA", V2_PAPER)


def _tiny(gap: float) -> str:
    """A float64 rounding gap as text that does not depend on the CPU: "< 1e-12" (or the gap, if larger)."""
    return "< 1e-12" if gap < 1e-12 else f"{gap:.0e}"


# ----------------------------------------------------------------------------------------------------
# the seed claims the papers' own evidence decides (attnlab.evidence), and the remaining seed sentences


def dsa_quality_claim(tolerance: float = 1.0) -> Claim:
    """"DSA matches earlier model performance": DeepSeek-V3.2-Exp's Table 1 against DeepSeek-V3.1-Terminus
    (:data:`attnlab.evidence.V32_TABLE1`). "right" when every percentage benchmark is within ``tolerance``
    points or better, "needs context" when the mean is within it but some benchmarks are worse by more,
    "wrong" when the mean drops by more than ``tolerance``."""
    table = E.V32_TABLE1
    split = E.within(table, "dsa", "mla", tolerance)
    deltas = table.deltas("dsa", "mla")
    pct = [deltas[b.name] for b in table.benchmarks if b.percent]
    mean = sum(pct) / len(pct)
    verdict = "right" if not split["worse"] else _verdict(mean >= -tolerance, "needs context", "wrong")
    rating = next(b.name for b in table.benchmarks if not b.percent)
    worse = ", ".join(f"{n} {deltas[n]:+.1f}" for n in split["worse"])
    return Claim("dsa_matches_quality", "DSA matches earlier model performance", SUMMARY_A, verdict,
                 f"evidence.within(V32_TABLE1, 'dsa', 'mla', tolerance={tolerance:g})",
                 f"V3.2-Exp vs V3.1-Terminus: {len(split['within'])} of {len(pct)} benchmarks within {tolerance:g} "
                 f"point, {len(split['better'])} better by more, {len(split['worse'])} worse by more ({worse}); "
                 f"mean {mean:+.2f} points; {rating} {deltas[rating]:+g} rating. The report blames fewer "
                 "reasoning tokens for the GPQA, HLE and HMMT gaps", table.source)


def kv_caching_section_claim(seed: int = 0) -> Claim:
    """Summary B's "Introducing KV caching" section: "the model rearranges the query computation to use a
    compressed latent space once for all attention heads ... this reduces memory storage". That is MLA's
    absorption (fold W^UK_i into the query), not KV caching: run a small MLA layer with a cache both ways; the
    rearrangement changes neither the output nor what the cache holds, so it cannot be what stores less."""
    from attnlab.kv_cache import LayerCache
    from attnlab.mla import MLAConfig, MultiHeadLatentAttention

    torch.manual_seed(seed)
    layer = MultiHeadLatentAttention(MLAConfig(d_model=32, n_heads=4, kv_lora_rank=8, qk_nope_head_dim=8,
                                               qk_rope_head_dim=4, v_head_dim=8)).double()
    x = torch.randn(1, 6, 32, dtype=torch.float64)
    out, cached = {}, {}
    for mode in ("naive", "absorbed"):
        cache = LayerCache()
        with torch.no_grad(), layer.using(mode):
            out[mode] = layer(x, cache=cache).output
        cached[mode] = cache.nbytes
    gap = (out["naive"] - out["absorbed"]).abs().max().item()
    per_token = {m: b // x.shape[1] for m, b in cached.items()}
    rearrangement_shrinks_cache = cached["absorbed"] < cached["naive"]
    return Claim("kv_caching_is_absorption", "“Introducing KV caching”: the model rearranges the query computation "
                 "to use a compressed latent once for all heads, which reduces memory storage", SUMMARY_B,
                 _verdict(rearrangement_shrinks_cache), "MultiHeadLatentAttention with a LayerCache, "
                 "use('naive') vs use('absorbed')",
                 f"the rearranged query is absorption (chapter 8), not caching (chapter 4): same output "
                 f"(max |difference| {_tiny(gap)}) and the same cache, {per_token['naive']} B per token either way; "
                 "the cache is small because it holds the latent (MLA), whatever the query does",
                 f"{V2_PAPER}, §2.1.2 and §2.1.3 (absorbing W^UK into W^Q)")


def mla_training_parameters_claim(model: str = "deepseek-v3") -> Claim:
    """Summary B: MLA "increases computational complexity during training due to higher parameter counts". MLA
    has fewer K/V weights than MHA on V3's shape, and DeepSeek-V2's own ablation models with MLA have fewer
    parameters than their MHA twins (Appendix D.2, Table 9)."""
    spec = MODELS[model]
    d_c, d_h_rope = sizing.mla_dims(spec)
    mha = 2 * spec.hidden_size * spec.n_heads * spec.head_dim  # W^K, W^V
    mla = spec.hidden_size * (d_c + d_h_rope) + d_c * spec.n_heads * 2 * spec.head_dim  # W^DKV, W^KR, W^UK, W^UV
    paper = [(t.arms[t.arm("mha")].fact("# Total Params"), t.arms[t.arm("mla")].fact("# Total Params"))
             for t in (E.V2_MOE_SMALL, E.V2_MOE_LARGE)]
    more = mla > mha or any(E.parse_count(b) > E.parse_count(a) for a, b in paper)
    return Claim("mla_training_params", "MLA increases training complexity due to higher parameter counts",
                 SUMMARY_B, _verdict(more), f'K/V projection weights of MODELS["{model}"]; evidence.V2_MOE_*',
                 f"{spec.name} K/V weights per layer: MHA {mha:,}, MLA {mla:,} ({mla / mha:.0%}); V2's ablation "
                 f"models, MHA vs MLA total parameters: {paper[0][0]} vs {paper[0][1]}, {paper[1][0]} vs "
                 f"{paper[1][1]}: MLA has fewer", f"{E.V2_MOE_SMALL.source}; {V3_CONFIG}")


def benchmark_name_claim(name: str = "DeAGO", close: float = 0.6) -> Claim:
    """Summary B cites "the DeAGO benchmark". Look the name up among every benchmark the course's papers
    report (DeepSeek-V2 §3.2.1 and Appendix D, DeepSeek-V3.2-Exp Table 1): "right" if one matches it (case
    and punctuation ignored), else "wrong"; the nearest name by spelling is shown, and called a guess unless
    its similarity reaches ``close``."""
    import difflib

    def plain(text: str) -> str:
        return "".join(ch for ch in text.lower() if ch.isalnum())

    known = list(E.V2_BENCHMARK_NAMES) + [b.name for t in E.ALL_TABLES for b in t.benchmarks]
    found = any(plain(name) == plain(k) or plain(name) == plain(k.split(" (")[0]) for k in known)
    score, nearest = max((difflib.SequenceMatcher(None, plain(name), plain(k)).ratio(), k) for k in known)
    guess = ("close enough to be a likely garbling" if score >= close else
             "too far to say what was meant: no paper names it")
    return Claim("deago_benchmark", f"The model's results are shown on the {name} benchmark", SUMMARY_B,
                 _verdict(found), f"difflib against evidence.V2_BENCHMARK_NAMES and the evidence tables ({len(known)})",
                 f"no benchmark called {name} in DeepSeek-V2 (§3.2.1, Appendix D) or DeepSeek-V3.2-Exp (Table 1); "
                 f"nearest spelling: {nearest} (similarity {score:.2f}), {guess}",
                 f"{E.V2_BENCHMARKS_SOURCE}; {E.V32_TABLE1.source}")


def mqa_mechanism_claim(n_heads: int = 8, seed: int = 0) -> Claim:
    """Summary A: MQA shares "a single key and value vector across many query heads". Run an MQA layer
    (n_kv_heads = 1) with a cache: it stores one K and one V per token, 2 d_h numbers, for all n_h heads."""
    from attnlab.gqa import AttentionConfig, GroupedQueryAttention
    from attnlab.kv_cache import LayerCache

    torch.manual_seed(seed)
    config = AttentionConfig(d_model=4 * n_heads, n_heads=n_heads, n_kv_heads=1)
    cache = LayerCache()
    with torch.no_grad():
        GroupedQueryAttention(config)(torch.randn(1, 5, config.d_model), cache=cache)
    k = cache.tensors["k"]  # (batch, n_kv_heads, seq, d_h)
    head_dim = config.d_model // n_heads
    return Claim("mqa_mechanism", "MQA shares a single key and value vector across many query heads", SUMMARY_A,
                 _verdict(config.kind == "mqa" and k.shape[1] == 1), "GroupedQueryAttention(n_kv_heads=1) "
                 "with a LayerCache", f"{n_heads} query heads, cached K of shape {tuple(k.shape)}: one K (and one "
                 f"V) per token, {config.cache_elements_per_token()} = 2 d_h numbers (d_h = {head_dim})",
                 "MQA, arXiv 1911.02150")


def gqa_mechanism_claim(n_heads: int = 8, n_kv_heads: int = 2, seed: int = 0) -> Claim:
    """Summary A: GQA "splits heads into groups; each group shares key/value pairs". grouped_attention with
    n_g K/V heads equals plain attention per query head h on K/V head g(h) = floor(h / r), r = n_h / n_g."""
    from attnlab.gqa import grouped_attention

    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(1, n_heads, 5, 4, generator=gen, dtype=torch.float64)  # (b, n_h, s, d_h)
    k, v = (torch.randn(1, n_kv_heads, 5, 4, generator=gen, dtype=torch.float64) for _ in range(2))  # (b, n_g, s, d_h)
    out, _ = grouped_attention(q, k, v)  # (b, n_h, s, d_h)
    r = n_heads // n_kv_heads
    by_head = torch.stack([attention_matrix(q[0, h], k[0, h // r], v[0, h // r], causal=True)[0]
                           for h in range(n_heads)])[None]  # each head on its group's K/V, g(h) = h // r
    ok = torch.allclose(out, by_head)
    return Claim("gqa_mechanism", "GQA splits the query heads into groups; each group shares one key/value pair",
                 SUMMARY_A, _verdict(ok), "grouped_attention(q, k, v) vs attention per head on K/V head h // r",
                 f"{n_heads} query heads, {n_kv_heads} K/V heads: every head equals attention on its group's K/V "
                 f"(groups of r = {r}); max |difference| {_tiny((out - by_head).abs().max().item())}",
                 "GQA, arXiv 2305.13245, §2.2")


def mla_width_per_layer_claim(model: str = "deepseek-v3") -> Claim:
    """Summary A asks "whether 576-d is constant across layers or configurable": one kv_lora_rank and one
    qk_rope_head_dim serve every layer of the config; the total is n_layers x (d_c + d_h^R)."""
    spec = MODELS[model]
    d_c, d_h_rope = sizing.mla_dims(spec)
    total = sizing.kv_elements_per_token(spec)
    constant = total == spec.n_layers * (d_c + d_h_rope)
    return Claim("mla_576_every_layer", f"MLA's {d_c + d_h_rope}-wide cache is the same in every layer", SUMMARY_A,
                 _verdict(constant), f'kv_elements_per_token("{model}") vs n_layers x sum(mla_dims)',
                 f"{total:,} = {spec.n_layers} layers x ({d_c} + {d_h_rope}): one kv_lora_rank and one "
                 "qk_rope_head_dim in the config, shared by all layers; configurable per model (a config field), "
                 "not per layer", V3_CONFIG)


def research_cost_claim(claimed_usd: float = 1e8, usd_per_gpu_hour: float | None = None) -> Claim:
    """Summary B: the work is "made possible with hundreds of millions of dollars". DeepSeek-V2 reports its
    training compute: 172.8K H800 GPU hours per trillion tokens (§3.2.3) on 8.1T tokens; at the rental price
    DeepSeek-V3.2-Exp's report prices H800s at (2 USD per GPU hour) that is about 2.8M USD. No paper states
    research or hardware budgets, so "hundreds of millions" cannot be checked against them."""
    price = E.V32_GPU_HOUR_USD if usd_per_gpu_hour is None else float(usd_per_gpu_hour)
    hours = E.V2_TRAINING_COST["gpu_hours_per_trillion_tokens"]["deepseek-v2"] * E.V2_TRAINING_COST[
        "corpus_trillion_tokens"]
    usd = hours * price
    return Claim("hundreds_of_millions", "The work was made possible with hundreds of millions of dollars",
                 SUMMARY_B, _verdict(usd >= claimed_usd, "right", "needs context"),
                 "V2 GPU hours per trillion tokens x corpus x price per GPU hour",
                 f"{hours / 1e6:.2f}M H800 GPU hours to pre-train DeepSeek-V2, about {usd / 1e6:.1f}M USD at "
                 f"{price:g} USD per GPU hour, {claimed_usd / usd:.0f}x less than the {claimed_usd / 1e6:.0f}M USD "
                 "that 'hundreds of millions' starts at; the papers give no research or hardware budget",
                 f"{E.V2_TRAINING_COST['source']}; {E.V32_COST_SOURCE}")


def memory_savings(context: int = 2**20, baseline: str = "deepseek-v3") -> list[dict]:
    """The cache comparisons a "N% less memory" figure for DeepSeek could rest on, each {"comparison", "ours",
    "theirs" (bytes or numbers), "ratio" = ours / theirs, "saving" = 1 - ratio}:

    * MLA against MHA on ``baseline``'s shape, per token and layer (Table 1 of arXiv 2405.04434):
      (d_c + d_h^R) / (2 n_h d_h) = 576 / 32,768 for DeepSeek-V3;
    * DeepSeek-V4-Pro and -Flash against DeepSeek-V3.2 at ``context`` tokens, in DeepSeek's byte layouts (FP8
      entries and FP4 index keys against V3.2's FP8 ones, where the published "about 10%" and "7%" hold) and
      with every number in bfloat16 (:func:`attnlab.sizing.kv_cache_bytes`, layer by layer);
    * DeepSeek-V4-Pro against ``baseline``'s shape with plain MHA at ``context`` tokens, bfloat16."""
    context = check_positive_int("context", context)
    spec = sizing.get_model(baseline)
    label = (f"{context // 2**20:,}M" if context % 2**20 == 0 else f"{context // 1024:,}K" if context % 1024 == 0
             else f"{context:,}")
    mla, mha = (sizing.kv_elements_per_token(spec, scheme, per_layer=True) for scheme in ("mla", "mha"))
    rows = [(f"MLA vs MHA, {spec.name}'s shape, numbers per token and layer", mla, mha)]
    for key in ("deepseek-v4-pro", "deepseek-v4-flash"):
        for cache_format, what in (("deepseek-fp8", "DeepSeek's FP8/FP4 layouts"), (None, "bfloat16")):
            rows.append((f"{MODELS[key].name} vs DeepSeek-V3.2 at {label} tokens, {what}",
                         sizing.kv_cache_bytes(key, context, cache_format=cache_format),
                         sizing.kv_cache_bytes("deepseek-v3.2", context, cache_format=cache_format)))
    rows.append((f"DeepSeek-V4-Pro vs {spec.name}'s shape with MHA at {label} tokens, bfloat16",
                 sizing.kv_cache_bytes("deepseek-v4-pro", context), sizing.kv_cache_bytes(spec, context, scheme="mha")))
    return [{"comparison": c, "ours": ours, "theirs": theirs, "ratio": ours / theirs, "saving": 1 - ours / theirs}
            for c, ours, theirs in rows]


def v4_memory_claim(claimed: float = 0.98, context: int = 2**20) -> Claim:
    """"DeepSeek V4's Secret: 98% Less Memory": a saving s needs a cache of at most 1 - s of its baseline (98%:
    2%, 50x smaller). Right if V4 saves that much against V3.2, the model it replaces, in either byte
    accounting; "needs context" if only another comparison gives it (MLA against MHA, 98.2% on V3's shape: a
    2024 saving, not V4's); wrong if none does (:func:`memory_savings`)."""
    rows = memory_savings(context)
    reaches = [round(100 * r["saving"]) >= round(100 * claimed) for r in rows]  # "98%" as written, rounded
    v4_vs_v32 = any(ok for ok, r in zip(reaches, rows, strict=True) if "vs DeepSeek-V3.2" in r["comparison"])
    verdict = "right" if v4_vs_v32 else _verdict(reaches[0], "needs context", "wrong")
    mla, pro, flash = rows[0], rows[1], rows[3]
    evidence = (f"{claimed:.0%} less needs at most {1 - claimed:.0%} of the baseline ({1 / (1 - claimed):.0f}x "
                f"smaller). MLA vs MHA on V3's shape: {mla['ours']} / {mla['theirs']:,} = {mla['ratio']:.2%}, "
                f"{mla['saving']:.1%} less (MLA, DeepSeek-V2, 2024). V4 vs V3.2 at {context:,} tokens: V4-Pro "
                f"{pro['ratio']:.1%} ({pro['saving']:.1%} less) in DeepSeek's FP8/FP4 layouts, {rows[2]['ratio']:.1%} "
                f"in bfloat16; V4-Flash {flash['ratio']:.1%} and {rows[4]['ratio']:.1%}. Against V3's shape with "
                f"MHA (a what-if), V4-Pro keeps {rows[5]['ratio']:.2%} ({rows[5]['saving']:.1%} less)")
    return Claim("v4_98_percent", f"DeepSeek V4's secret: {claimed:.0%} less memory", SIDEBAR, verdict,
                 f"memory_savings({context}): kv_cache_bytes of V4 and V3.2; MLA vs MHA widths",
                 evidence, f"{V4_REPORT}; {V2_PAPER}, Table 1")


def claims() -> list[Claim]:
    """Every checkable claim in the three seed files, one :class:`Claim` each, video description first."""
    return [
        timeline_claim(),
        mla_reference_claim(),
        attention_claim(),
        Claim("embeddings_cluster", "Tokens map to IDs and d-dimensional embeddings in which semantically "
              "similar words cluster", SUMMARY_A, "needs context", "none: a property of training",
              "IDs and vectors: yes; clustering holds for trained embeddings, not for the random "
              "initial ones", "Mikolov et al., arXiv 1301.3781"),
        mqa_ratio_claim(),
        bytes_per_token_claim(),
        mqa_quality_claim(),
        gqa_ratio_claim(),
        gqa_in_deepseek_claim(),
        gqa_quality_claim(),
        query_latent_claim(),
        mla_width_claim(),
        mla_ratio_claim(),
        mla_quality_claim(),
        dsa_date_claim(),
        dsa_price_claim(),
        dsa_compute_claim(),
        memory_bound_claim(),
        mqa_misreading_claim(),
        shared_projections_claim(),
        fewer_parameters_claim(),
        absorb_compute_claim(),
        mla_576_times_claim(),
        speedup_claim(),
        dsa_quality_claim(),
        kv_caching_section_claim(),
        mla_training_parameters_claim(),
        benchmark_name_claim(),
        mqa_mechanism_claim(),
        gqa_mechanism_claim(),
        mla_width_per_layer_claim(),
        research_cost_claim(),
        v4_memory_claim(),
    ]


def verdict_label(verdict: str) -> str:
    """The label every chapter prints for ``verdict`` (:data:`VERDICT_LABELS`), in bold: "**Needs context**"."""
    if verdict not in VERDICT_LABELS:
        raise ValueError(f"verdict={verdict!r} must be one of {VERDICTS}")
    return f"**{VERDICT_LABELS[verdict]}**"


@functools.cache
def _claims_by_key() -> dict[str, Claim]:
    return {c.key: c for c in claims()}  # the defaults are the seeds' own figures: the same every call


def claim(key: str) -> Claim:
    """The claim whose :attr:`Claim.key` is ``key``, as :func:`claims` builds it (so chapters 0, 5, 7 and 13
    print the same verdict for it); built once, then looked up."""
    by_key = _claims_by_key()
    if key not in by_key:
        raise ValueError(f"key={key!r} must be one of {sorted(by_key)}")
    return by_key[key]


def markdown_table(rows: list[Claim]) -> str:
    """The claims as one Markdown table: claim, source, verdict, computation, evidence, primary source."""
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| claim | source | verdict | computation | evidence | primary source |", "|---|---|---|---|---|---|"]
    lines += [f"| {cell(c.text)} | {c.source} | {verdict_label(c.verdict)} | `{cell(c.computation)}` "
              f"| {cell(c.evidence)} | {cell(c.primary_source)} |" for c in rows]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------
# what a wrong calculator costs


def gpus_needed(model: str, batch: int, seq_len: int, gpu_gib: float = 80, per_token_bytes: int | None = None,
                weights_dtype: torch.dtype | str = torch.bfloat16) -> int:
    """GPUs of ``gpu_gib`` GiB that hold the model's weights plus the KV cache of ``batch`` sequences of
    ``seq_len`` tokens: ceil((weights + batch x seq_len x bytes per token) / (gpu_gib x 2^30)).

    ``per_token_bytes`` None uses :func:`attnlab.sizing.cache_bytes_per_token` (bf16, as published); pass
    another figure to see what a calculator that gets it wrong would provision. Ignores activations and
    overheads."""
    if per_token_bytes is None:
        per_token_bytes = sizing.cache_bytes_per_token(model)
    total = sizing.weight_bytes(model, weights_dtype) + batch * seq_len * per_token_bytes
    return math.ceil(total / (gpu_gib * sizing.GIB))


#: The models with sliding-window layers chapter 13 sizes at their published context.
WINDOWED_MODELS: tuple[str, ...] = ("gemma-2-9b", "gemma-3-27b", "gpt-oss-120b", "mistral-7b-v0.1", "gemma-4-e2b")


def windowed_sizes(models: tuple[str, ...] = WINDOWED_MODELS, dtype: torch.dtype | str = torch.bfloat16) -> list[dict]:
    """The slip of sizing a windowed model as if its windows were not there, at its published context.

    One row per model: {"model", "context" (its max_context), "plan" (:func:`attnlab.sizing.layer_plan`),
    "right" (:func:`attnlab.sizing.kv_cache_bytes`, layer by layer: a sliding layer holds min(T, W) tokens, a
    shared one none), "wrong" (T x :func:`attnlab.sizing.cache_bytes_per_token`: every layer that keeps a cache
    holding all T tokens, the arithmetic of a calculator that reads the shapes but not ``layer_types``),
    "ratio" (wrong / right)}."""
    out = []
    for key in models:
        spec = sizing.get_model(key)
        if not spec.windowed or not spec.max_context:
            raise ValueError(f"models holds {key!r}, which has no sliding or shared layers or no max_context")
        t = spec.max_context
        right = sizing.kv_cache_bytes(spec, t, 1, dtype)
        wrong = t * sizing.cache_bytes_per_token(spec, dtype)
        out.append({"model": key, "context": t, "plan": sizing.layer_plan(spec), "right": right, "wrong": wrong,
                    "ratio": wrong / right})
    return out


def common_mistakes() -> dict[str, dict]:
    """Three mistakes public KV-cache calculators make, each as {"model", "right", "wrong", "ratio", "how"}
    (bytes per token in bf16): head_dim taken as hidden_size / n_heads (Gemma-2-9B sets head_dim 256,
    not 3584 / 16 = 224), query heads counted instead of KV heads (Llama-3-8B: 32, not 8), and MLA's
    decoupled RoPE key forgotten (DeepSeek-V3: 512 instead of 512 + 64 per layer)."""
    gemma, llama, v3 = MODELS["gemma-2-9b"], MODELS["llama-3-8b"], MODELS["deepseek-v3"]
    d_c, _ = sizing.mla_dims(v3)
    cases = {
        "head_dim": ("gemma-2-9b", 2 * gemma.n_kv_heads * (gemma.hidden_size // gemma.n_heads) * gemma.n_layers * 2,
                     f"head_dim = hidden_size / n_heads = {gemma.hidden_size} / {gemma.n_heads} = "
                     f"{gemma.hidden_size // gemma.n_heads} instead of the config's {gemma.head_dim}"),
        "query_heads": ("llama-3-8b", sizing.cache_bytes_per_token(llama, scheme="mha"),
                        f"n_heads = {llama.n_heads} query heads instead of {llama.n_kv_heads} KV heads"),
        "rope_key": ("deepseek-v3", d_c * v3.n_layers * 2,
                     f"the latent d_c = {d_c} alone instead of d_c + d_h^R = {sum(sizing.mla_dims(v3))}"),
    }
    out = {}
    for name, (model, wrong, how) in cases.items():
        right = sizing.cache_bytes_per_token(model)
        out[name] = {"model": model, "right": right, "wrong": wrong, "ratio": wrong / right, "how": how}
    return out
