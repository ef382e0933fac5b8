# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown] slideshow={"slide_type": "slide"}
# # Chapter 13 · Fact-check
#
# > **What you will learn:** to check each claim of the video and its summaries with the course's arithmetic
# > and the papers' own evidence, and to size real models' caches without the usual slips.
# >
# > **What it assumes:** [chapters 0 to 12](00_introduction.ipynb); the arithmetic is redone here, so a reader
# > who skipped some of them can still follow it.
#
# The video's description and two summaries of the video quote figures: 128×, 8×, 57×, "576", "4 MB per
# token", "six times faster", "50%". Some are right, some are wrong, and some are right only with a
# qualification the summary leaves out. This chapter checks every claim that can be checked, with the
# course library doing the arithmetic, and then turns the same arithmetic on real models, where public
# KV-cache calculators often slip.

# %% slideshow={"slide_type": "skip"}
import matplotlib.pyplot as plt
import torch
from IPython.display import Markdown, display

from attnlab import dsa, factcheck, quality, show_source, sizing
from attnlab import evidence as E
from attnlab import evidence_plots as EP
from attnlab.exercises import ch13
from attnlab.interactive import factcheck as fc_widgets
from attnlab.sizing import MODELS, format_bytes, format_ratio

_ = torch.manual_seed(0)
torch.set_num_threads(1)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 1. Every claim, one row
#
# Each row is built by `attnlab.factcheck.claims()`. Where arithmetic decides the verdict, the row's
# builder computes the deciding condition and hands it to a tiny helper, so no verdict is typed by hand:

# %% slideshow={"slide_type": "-"}
show_source(factcheck._verdict)

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "subslide"} tags=["hide-input"]
rows = factcheck.claims()
display(Markdown(factcheck.markdown_table(rows)))
counts = {v: sum(c.verdict == v for c in rows) for v in factcheck.VERDICTS}
display(Markdown(f"{len(rows)} claims: **{counts['right']}** right, **{counts['wrong']}** wrong, "
                 f"**{counts['needs context']}** right only with context."))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 2. The arithmetic behind the notable ones
#
# ### 128×, "4 MB → 31 kB", 8× and 57×
#
# All four follow from DeepSeek-V3's published shapes (61 layers, 128 heads, $d_h$ = 128, $d_c$ = 512,
# $d_h^R$ = 64) in bfloat16, with the per-layer formulas of the DeepSeek-V2 paper's Table 1. DeepSeek-V3
# uses MLA only: its MHA, GQA and MQA rows are what-ifs on its shape, which is why the 128× and 8× rows of
# the table above say "needs context" although their arithmetic holds.

# %% slideshow={"slide_type": "-"}
v3 = MODELS["deepseek-v3"]
lines = ["| scheme | per layer (numbers) | per token, all layers (bf16) | vs MHA |", "|---|---|---:|---:|"]
for scheme, n_kv in (("mha", None), ("gqa", 16), ("mqa", None), ("mla", None)):
    per = sizing.cache_bytes_per_token(v3, scheme=scheme, n_kv_heads=n_kv)
    kind = "as published" if scheme == v3.attention else "what-if"
    detail = f"{n_kv} KV heads, {kind}" if n_kv else kind
    lines.append(f"| {scheme.upper()} ({detail}) | "
                 f"{sizing.kv_formula(v3, scheme, n_kv)} | {per:,} B ({format_bytes(per)}) | "
                 f"{format_ratio(sizing.reduction_vs_mha(v3, scheme, n_kv))}× |")
display(Markdown("\n".join(lines)))

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### "16 groups in DeepSeek V3/R1" and "576"
#
# The 8× figure is sound arithmetic for a GQA model with 16 KV heads, but DeepSeek-V3 is not one. And 576
# is a width, not a factor: it is two vectors side by side.

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "-"} tags=["hide-input"]
d_c, d_h_rope = sizing.mla_dims(v3)
width = sizing.kv_elements_per_token(v3, per_layer=True)
display(Markdown(
    f"`MODELS['deepseek-v3'].attention` is **{v3.attention!r}**. Per token and layer its cache holds "
    f"{width} = {d_c} (latent $c^{{KV}}$) + {d_h_rope} (decoupled RoPE key $k^R$) numbers; the reduction "
    f"against MHA is {2 * v3.n_heads * v3.head_dim:,} / {width} = **{format_ratio(sizing.reduction_vs_mha(v3))}×**, "
    f"not {width}×."
))

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### "Six times faster"
#
# DeepSeek-V2 reported up to 5.76× the generation throughput of DeepSeek 67B, a dense GQA model, with
# a 93.3% smaller KV cache; that comparison includes KV quantization and a different model. Counting
# cached numbers alone:

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "-"} tags=["hide-input"]
v2_elems, base_elems = sizing.kv_elements_per_token("deepseek-v2"), sizing.kv_elements_per_token("deepseek-67b")
display(Markdown(
    f"DeepSeek-V2 caches {v2_elems:,} numbers per token, DeepSeek 67B {base_elems:,}: "
    f"**{1 - v2_elems / base_elems:.1%}** fewer, a factor of {format_ratio(base_elems / v2_elems)}, far from "
    "the 57× that the same MLA shape gives against MHA."
))

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### DSA: "50%"
#
# The API price cut (more than 50%) is a business figure. Compute is not one number: the lightning indexer
# still looks at every token, so below a crossover context DSA costs *more* than dense MLA.

# %% slideshow={"slide_type": "-"}
v32 = MODELS["deepseek-v3.2"]
crossover = dsa.crossover_context(v32)
lines = ["| context | dense MLA decode FLOPs (one layer) | DSA | saved |", "|---:|---:|---:|---:|"]
for n in (1024, 4096, 32768, 131072):
    c = dsa.layer_cost(v32, n)
    lines.append(f"| {n:,} | {c['decode_flops_dense']:,} | {c['decode_flops_dsa']:,} | "
                 f"{1 - c['decode_flops_dsa'] / c['decode_flops_dense']:.1%} |")
display(Markdown("\n".join(lines)))
display(Markdown(f"DSA decodes with fewer FLOPs from **{crossover:,}** tokens of context on."))

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### "A slight performance improvement"
#
# The DeepSeek-V2 paper's ablation found MLA ahead of MHA on its benchmarks. The course's tiny models
# (`attnlab.quality`: several seeds per scheme, parameter counts matched) can only add to that verdict when
# their gap is larger than the seeds' own spread:

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "-"} tags=["hide-input"]
study = quality.load_study()
display(Markdown(" · ".join(f"{name.upper()}: **{study.summary(name).mean:.3f}** ± {study.summary(name).std:.3f} "
                            "nats" for name in ("mha", "gqa", "mqa", "mla"))
                 + f". MLA − MHA = {factcheck.tiny_gap('mla', 'mha').words()} on held-out text: "
                 + factcheck.verdict_label(factcheck.claim("mla_slightly_better").verdict) + "."))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## What the papers measured
#
# Several verdicts rest on quality, and quality is not arithmetic: it is what the papers measured. Their
# tables are cited data in `attnlab.evidence` (DeepSeek-V2's Appendix D, the GQA paper's Table 1,
# DeepSeek-V3.2-Exp's Table 1). Each row below compares a scheme with the one it replaces, on the same
# model size and training: every dot is one benchmark, the bar their mean.

# %% slideshow={"slide_type": "-"}
EP.paper_gaps()
plt.tight_layout()
plt.show()
lines = []
for label, table, new, old in EP.PAPER_GAPS:
    points = EP.gap_points(table, new, old)
    lines.append(f"| {label.replace(chr(10), ' ')} | {len(points)} | {min(points):+.1f} to {max(points):+.1f} | "
                 f"{sum(points) / len(points):+.2f} |")
display(Markdown("\n".join(["| comparison | scores | range | mean |", "|---|---:|---:|---:|", *lines])))

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### "DSA matches earlier model performance"
#
# The most important claim about DSA is not its cost but that it costs nothing in quality. DeepSeek kept
# the training of DeepSeek-V3.2-Exp aligned with DeepSeek-V3.1-Terminus, the same model without DSA, so
# their Table 1 isolates the change. Score differences, with the band the verdict allows shaded:

# %% slideshow={"slide_type": "-"}
tolerance = 1.0  # points: the default of factcheck.dsa_quality_claim
EP.delta_bars(E.V32_TABLE1, "dsa", "mla", tolerance=tolerance)
plt.tight_layout()
plt.show()
verdict = factcheck.claim("dsa_matches_quality")
split = E.within(E.V32_TABLE1, "dsa", "mla", tolerance=tolerance)
deltas = E.V32_TABLE1.deltas("dsa", "mla")
percent = [b.name for b in E.V32_TABLE1.benchmarks if b.percent]
display(Markdown(
    f"{factcheck.verdict_label(verdict.verdict)}. On {len(split['within'])} of {len(percent)} benchmarks V3.2-Exp "
    f"is within {tolerance:g} point of V3.1-Terminus; it is better by more on {' and '.join(split['better'])}, "
    f"and worse by more on {', '.join(f'{n} ({deltas[n]:+.1f})' for n in split['worse'])}; the mean difference is "
    f"{sum(deltas[n] for n in percent) / len(percent):+.2f} points (Codeforces, a rating: "
    f"{deltas['Codeforces-Div1']:+g}). The report's own reading: \"{E.V32_TABLE1.conclusion.split('. ')[0]}.\" It "
    "blames the drops on GPQA, HLE and HMMT on shorter reasoning, and says the gap closes with checkpoints that "
    "reason as long. So: matched on average, on DeepSeek's own benchmarks, not on every one of them."
))

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### "DeepSeek V4's Secret: 98% Less Memory"
#
# A title beside the video, not the video's own claim. "98% less" means a cache of at most 2% of some
# baseline, 50× smaller. Which baseline? Every comparison the figure could rest on, computed layer by
# layer (V4: a 128-token window plus one compressed entry per 4 or 128 tokens, chapter 20):

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "-"} tags=["hide-input"]
savings = factcheck.memory_savings()  # MLA vs MHA; V4-Pro, V4-Flash vs V3.2 (FP8/FP4, bf16); V4-Pro vs MHA
lines = ["| comparison | ours | baseline | ratio | less |", "|---|---:|---:|---:|---:|"]
for r in savings:
    as_bytes = "numbers" not in r["comparison"]  # MLA vs MHA counts cached numbers; the rest, bytes
    ours, theirs = (format_bytes(r[k]) if as_bytes else f"{r[k]:,}" for k in ("ours", "theirs"))
    lines.append(f"| {r['comparison']} | {ours} | {theirs} | {r['ratio']:.2%} | {r['saving']:.1%} |")
display(Markdown("\n".join(lines)))
v4_claim = factcheck.v4_memory_claim()
mla, pro, pro_bf16, flash, flash_bf16, pro_mha = savings
display(Markdown(
    f"Only MLA against MHA gives about 98% ({mla['saving']:.1%}), and that is DeepSeek-V2's 2024 saving, which "
    "V3 and V3.2 kept. V4's own step, against V3.2 at a million tokens, is the published “about 10%” (V4-Pro) "
    f"and “7%” (V4-Flash) of the cache: {pro['ratio']:.1%} and {flash['ratio']:.1%} in DeepSeek's FP8/FP4 "
    f"layouts, {pro['saving']:.1%} and {flash['saving']:.1%} less ({pro_bf16['saving']:.1%} and "
    f"{flash_bf16['saving']:.1%} in bfloat16). Against a plain-MHA model of V3's shape V4-Pro saves "
    f"{pro_mha['saving']:.2%}, more than the title says. Verdict: **{v4_claim.verdict}**."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 3. Real models: a cache explorer that gets the shapes right
#
# `attnlab.interactive.factcheck.model_table` sizes every model in `attnlab.sizing.MODELS` from its
# published config.json, layer by layer. It gets head_dim, KV heads, MLA's RoPE key, DSA's index key,
# sliding-window layers, linear layers' fixed states (Qwen3-Next, Kimi Linear) and DeepSeek-V4's compressed
# entries right where public calculators get them wrong. As published, bfloat16, with the weights (bf16)
# beside the cache on one 80 GiB GPU; a size in *italics* is for a context longer than the model's
# published one (`max_position_embeddings`, in brackets). A cache that is not proportional to its tokens
# (windows, fixed states, V4) makes the last column the longest single context that fits:

# %% slideshow={"slide_type": "-"}
table = fc_widgets.model_table()
lines = ["| model | scheme | bytes per token | cache at 4K | at 32K | at 128K | tokens beside the weights (80 GiB) |",
         "|---|---|---:|---:|---:|---:|---:|"]
for r in table:
    if r["published"]:
        spec = MODELS[r["model"]]
        fit = fc_widgets.fit_text(r["tokens_fit"], r["model"]) if r["weights_fit"] else f"0 ({r['note']})"
        per = f"{r['bytes_per_token']:,.0f}" + (f" up to {spec.sliding_window:,} tokens" if spec.windowed else "")
        scheme = sizing.cache_scheme(spec).upper()
        if spec.v4 is not None:  # an entry per 4 or 128 tokens: the average growth past the window
            scheme, per = "CSA + HCA", f"{per} on average"
        elif "linear" in spec.layer_types:  # a fixed state per sequence beside the full layers' tokens
            scheme, per = f"{scheme} + linear", f"{per} + {format_bytes(sizing.fixed_state_bytes(spec))} state"
        sizes = [f"*{format_bytes(b)}*" if r["beyond"][n] else format_bytes(b) for n, b in r["cache_bytes"].items()]
        lines.append(f"| {r['name']} ({fc_widgets.context_label(spec.max_context)}) | "
                     f"{scheme} | {per} | " + " | ".join(sizes) + f" | {fit} |")
display(Markdown("\n".join(lines)))

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "subslide"} tags=["hide-input"]
bf16_parts = " + ".join(f"{layout.numbers} × 2 B" for layout in sizing.cache_layouts(v32))
fp8 = sizing.cache_layouts(v32, cache_format="deepseek-fp8")
display(Markdown(
    f"{v32.name}'s row counts what it caches per token and layer, MLA's {sizing.kv_formula(v3)} numbers and "
    f"its indexer's {sizing.indexer_elements_per_token(v32, per_layer=True)}-wide key: ({bf16_parts}) × "
    f"{v32.n_layers} layers = {sizing.cache_bytes_per_token(v32):,} B in bfloat16, "
    f"{sizing.cache_bytes_per_token(v32) - sizing.cache_bytes_per_token(v3):,} B more than {v3.name}. "
    f"DeepSeek's own kernels store another layout, FP8 with scales: "
    f"{' + '.join(f'{layout.bytes} B' for layout in fp8)} per layer, "
    f"{sizing.cache_bytes_per_token(v32, cache_format='deepseek-fp8'):,} B per token "
    "(`cache_format=\"deepseek-fp8\"`)."
))

# %% [markdown] slideshow={"slide_type": "subslide"}
# Three mistakes, each computed:

# %% slideshow={"slide_type": "-"}
mistakes = factcheck.common_mistakes()
lines = ["| mistake | model | right bytes per token | wrong | error |", "|---|---|---:|---:|---:|"]
for m in mistakes.values():
    lines.append(f"| {m['how']} | {MODELS[m['model']].name} | {m['right']:,} | {m['wrong']:,} | "
                 f"{m['ratio'] - 1:+.1%} |")
display(Markdown("\n".join(lines)))

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Sliding windows
#
# A sliding-window layer attends to the last W tokens only, so its cache never holds more than W; a
# Gemma 4 layer that reads an earlier layer's cache holds none. A calculator that reads the shapes but not
# `layer_types` sizes every layer as full. At each model's published context:

# %% slideshow={"slide_type": "-"}
lines = ["| model | layers | context | layer by layer | every layer full | too large by |",
         "|---|---|---:|---:|---:|---:|"]
for w in factcheck.windowed_sizes():
    lines.append(f"| {MODELS[w['model']].name} | {w['plan']} | {w['context']:,} | {format_bytes(w['right'])} | "
                 f"{format_bytes(w['wrong'])} | {w['ratio']:.2f}× |")
display(Markdown("\n".join(lines)))
gemma = MODELS["gemma-2-9b"]
past = sizing.marginal_cache_bytes(gemma, gemma.sliding_window)
display(Markdown(
    f"Past its {gemma.sliding_window:,}-token window {gemma.name}'s cache grows by {past:,} B per token instead "
    f"of {sizing.cache_bytes_per_token(gemma):,} B: only its full layers keep the new token for good. "
    "Without full layers (Mistral-7B-v0.1) the cache stops growing at the window."
))

# %% [markdown] slideshow={"slide_type": "subslide"}
# Pick a model, a context, the GPU memory and the cache dtype: the table compares the published scheme
# with what-if MHA, GQA, MQA and MLA versions of the same model.

# %% slideshow={"slide_type": "-"}
explorer = fc_widgets.model_cache_explorer("deepseek-v3", seq_len=131072, gpu_gib=80)
explorer

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 4. What it costs
#
# A wrong calculator provisions the wrong number of GPUs. Serving DeepSeek-V3 (bf16 weights) to 32
# sequences of 128K tokens on 80 GiB GPUs, counting weights and KV cache only:

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "-"} tags=["hide-input"]
batch, seq_len = ch13.BATCH, ch13.SEQ_LEN
right = factcheck.gpus_needed("deepseek-v3", batch, seq_len)
no_rope = factcheck.gpus_needed("deepseek-v3", batch, seq_len, per_token_bytes=mistakes["rope_key"]["wrong"])
as_mha = factcheck.gpus_needed("deepseek-v3", batch, seq_len,
                               per_token_bytes=sizing.cache_bytes_per_token(v3, scheme="mha"))
llama = MODELS["llama-3-8b"]
llama_right = factcheck.gpus_needed("llama-3-8b", 64, 32768)
llama_wrong = factcheck.gpus_needed("llama-3-8b", 64, 32768, per_token_bytes=mistakes["query_heads"]["wrong"])
display(Markdown(
    f"- With the right cache ({format_bytes(sizing.cache_bytes_per_token(v3))} per token): **{right}** GPUs.\n"
    f"- Forgetting the RoPE key: {no_rope} GPUs, {right - no_rope} too few: the deployment runs out of memory.\n"
    f"- Sizing the cache as MHA (the \"4 MB per token\" figure): {as_mha} GPUs, {as_mha - right} wasted.\n"
    f"- Llama-3-8B, 64 sequences of 32K: {llama_right} GPUs; counting its {llama.n_heads} query heads instead "
    f"of {llama.n_kv_heads} KV heads asks for {llama_wrong}."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercises
#
# Replace `None` with your answer and run the check. Worked solutions: `notebooks/solutions/ch13.py`.
#
# **1.** Read a config as the model code does. Write `config -> int`: the numbers one token adds to ONE
# full-attention layer's cache, for a dict of `config.json` fields like those of `ch13.CONFIGS` (Llama-3-70B,
# Gemma-2-9B, Falcon-7B, Qwen2.5-7B, DeepSeek-V3). Mind an explicit `head_dim`, a missing
# `num_key_value_heads`, `multi_query`, and MLA's `kv_lora_rank`. Without `attnlab.sizing` (the check notices).

# %% slideshow={"slide_type": "-"}
answer_cache_numbers = None

# %% slideshow={"slide_type": "-"}
print(ch13.check_cache_numbers(answer_cache_numbers))

# %% [markdown] slideshow={"slide_type": "subslide"}
# **2 (predict, then run).** DeepSeek-V3's naive MLA mode rebuilds, for every head, a key of width 128 + 64
# (content and RoPE) and a value of width 128. If it cached those instead of the latent and the RoPE key, how
# many times larger would its cache be? Write your guess first; the check cell computes it.

# %% slideshow={"slide_type": "-"}
prediction_naive_cache = None  # a positive number

# %% slideshow={"slide_type": "-"}
print(ch13.check_prediction_naive_cache(prediction_naive_cache))

# %% [markdown] slideshow={"slide_type": "subslide"}
# **3.** How many 80 GiB GPUs hold DeepSeek-V3's weights in bfloat16 (671B parameters) plus the MLA cache
# of 32 sequences of 131,072 tokens?

# %% slideshow={"slide_type": "-"}
answer_gpus_needed = None

# %% slideshow={"slide_type": "-"}
print(ch13.check_gpus_needed(answer_gpus_needed))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Summary
#
# - The ratios in the summaries (128×, 8×, 57×) are right for DeepSeek-V3's shapes; the 8× needs a GQA
#   model, which V3 is not.
# - 576 is the width of MLA's cached vector (512 + 64), not a reduction factor.
# - Speed-ups and price cuts compare whole systems, not one attention scheme.
# - Quality claims rest on the papers' own tables: MQA loses quality at scale, GQA most of it back, MLA
#   matched or beat MHA in DeepSeek-V2's ablation, and DSA matches its predecessor on average, not on every
#   benchmark.
# - Real-model sizing needs the config's head_dim, its KV heads, MLA's RoPE key, DSA's index key, and
#   its `layer_types`: sliding-window layers hold the window only, shared layers nothing.
