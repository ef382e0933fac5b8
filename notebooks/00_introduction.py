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
# # Chapter 0 · Introduction and map of the course
#
# *Video chapter at 00:00.*
#
# > **What you will learn:** what one token of context costs in memory under MHA, MQA, GQA, MLA and DSA,
# > computed from published model configs; how the chapters build on one another; how to size a cache with the
# > calculator.
# >
# > **What it assumes:** Python and a little PyTorch (tensors, matrix products); nothing about transformers.
#
# In 2017 the Transformer gave every attention head its own keys and values. Since then, the models you
# chat with have changed *how much they remember per token* more than almost anything else: multi-query
# attention (MQA) shares one key and value among all heads, grouped-query attention (GQA) shares them
# within groups, DeepSeek's multi-head latent attention (MLA) caches one small latent vector and rebuilds
# keys and values from it, and DeepSeek Sparse Attention (DSA) reads only the cached tokens that matter.
#
# This course follows the video *How Attention Got So Efficient [GQA/MLA/DSA]* chapter by chapter, and
# builds every idea in PyTorch in the course library `attnlab`, tested against the plain version it
# replaces. Each chapter has the motivation, the math, the code (imported from `attnlab`, with the key
# lines shown), plots, a live widget, a **What it costs** section, and exercises with checks.
#
# This first chapter answers one question: **why is attention's memory the thing to make efficient?**
# It then lays out the map of the course, computes the headline numbers that the rest of the course
# explains, and gives you a calculator to play with.

# %% slideshow={"slide_type": "skip"}
import matplotlib.pyplot as plt
import torch
from IPython.display import HTML, Markdown, display
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

from attnlab import factcheck, figures, schemes, show_source, sizing
from attnlab.exercises import ch00
from attnlab.sizing import MODELS, SCHEMES, format_bytes, format_ratio, gib
from attnlab.widgets import CalculatorState, bar_chart_figure, cache_calculator, readout_html

_ = torch.manual_seed(0)  # nothing below is random; every chapter fixes the seed all the same

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### The idea, animated
#
# The chapter in one short animation. It plays here once the videos are rendered (`./course animations`);
# until then, and in static exports, the last frame stands in.

# %% slideshow={"slide_type": "-"}
from attnlab.media import show_animation

show_animation("IntroductionScene")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 1. Why memory is the bottleneck
#
# A language model writes one token at a time. To produce the next token, every layer turns the newest
# token into a query, compares it with the **keys** of all earlier tokens, and averages their **values**.
# Recomputing those keys and values at every step would repeat almost all the work, so they are kept:
# the **KV cache** (chapter 4).
#
# So each generated token **reads the whole KV cache** once, every layer, every step, and does very
# little arithmetic with each number it reads: in plain multi-head attention each cached number meets
# exactly one query head, one multiply-add. A GPU performs hundreds of operations in the time it fetches
# one byte, so generation waits on memory. The cost of a generated token is roughly
#
# $$\text{bytes read per token} \approx \text{(cache bytes per token of context)} \times
# \text{(context length)} \;+\; \text{(weights read)},$$
#
# and every method in this course attacks the first factor (MQA, GQA, MLA) or the second (DSA).
# Here is the size of that read for DeepSeek-V3, whose shape is loaded from its published config:

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "-"} tags=["hide-input"]
v3 = MODELS["deepseek-v3"]
context = 128 * 1024  # tokens ("128K")
mla_read = sizing.kv_cache_bytes(v3, seq_len=context)  # MLA, as published, bfloat16
mha_read = sizing.kv_cache_bytes(v3, seq_len=context, scheme="mha")  # what if it used plain MHA
gpu_gib = 80  # one H100 or H800
# FlashMLA's memory-bound decoding figure on an H800 (github.com/deepseek-ai/FlashMLA): up to 3000 GB/s.
flashmla_bytes_per_s = 3000e9

display(Markdown(
    f"With a {context:,}-token context, every token **{v3.name}** generates reads "
    f"**{gib(mla_read):.2f} GiB** of MLA cache ({v3.n_layers} layers, bfloat16). Had it kept the plain "
    f"multi-head keys and values of the same heads, it would read **{gib(mha_read):,.0f} GiB** per token, "
    f"more than the memory of {int(gib(mha_read) // gpu_gib)} GPUs of {gpu_gib} GiB. Reading the MLA cache "
    f"once at FlashMLA's {flashmla_bytes_per_s / 1e9:,.0f} GB/s takes "
    f"{1e3 * mla_read / flashmla_bytes_per_s:.1f} ms, the MHA cache "
    f"{1e3 * mha_read / flashmla_bytes_per_s:,.0f} ms: a floor on the time per token of one sequence, "
    "from bytes alone."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 2. The map of the course
#
# The chapters follow the video's chapters (the timestamps are the video's); "course" marks a chapter
# the course adds. The table is built from the course's chapter list, `attnlab.chapters`, and lists the
# chapters whose notebook is in this folder.

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "-"} tags=["hide-input"]
from pathlib import Path

from attnlab.chapters import CHAPTERS  # the course's one chapter list: number, title, video timestamp, ...

here = [c for c in CHAPTERS if Path(c.notebook).is_file()]  # the chapters whose notebook is in this folder
rows = [
    f"| {c.number} | {c.title} | {c.video_label} | [`{c.notebook}`]({c.notebook}) | {c.builds} |"
    for c in here
]
header = ["| Ch. | Topic | Video | Notebook | What you build |", "|---|---|---|---|---|"]
display(Markdown("\n".join(header + rows)))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 3. The headline numbers
#
# How many numbers does the cache keep per token and per layer? The DeepSeek-V2 paper
# ([arXiv 2405.04434](https://arxiv.org/abs/2405.04434), Table 1) puts the four schemes side by side,
# with $n_h$ query heads of width $d_h$, $n_g$ key/value groups, and MLA's latent width $d_c$ and
# decoupled RoPE key width $d_h^R$:
#
# | scheme | cached numbers per token and layer |
# |---|---|
# | MHA | $2\,n_h d_h$ (a key and a value for every head) |
# | GQA | $2\,n_g d_h$ (one per group) |
# | MQA | $2\,d_h$ (one for all heads) |
# | MLA | $d_c + d_h^R$ (the latent $c^{KV}$ plus one RoPE key $k^R$) |
#
# `attnlab.schemes` writes exactly that, one rule per scheme, naming the tensors each layer caches;
# `attnlab.sizing` applies the rules to published models:

# %% slideshow={"slide_type": "-"}
show_source(schemes, start="def _mha_cache", stop='return {"c_kv"')

# %% [markdown] slideshow={"slide_type": "subslide"}
# DeepSeek-V3 caches MLA. To compare, we ask what the *same* model would cache with each scheme, with
# its own layers, query heads and head width $d_h$ (the value width: the wider query/key head, which
# includes the RoPE part, is never cached in MLA's form), in bfloat16. For GQA we take the number of KV
# groups the seed summaries quote.

# %% slideshow={"slide_type": "-"}
gqa_heads = 16  # the seed summaries' "16 groups"
display(Markdown(
    f"{v3.name}: {v3.n_layers} layers, {v3.n_heads} query heads, $d_h$ = {v3.head_dim}, "
    f"$d_c$ = {v3.kv_lora_rank}, $d_h^R$ = {v3.qk_rope_head_dim} (from [its config.json]({v3.source})); "
    f"GQA what-if with {gqa_heads} KV heads."
))
per_scheme = {s: sizing.cache_bytes_per_token(v3, scheme=s, n_kv_heads=gqa_heads if s == "gqa" else None)
              for s in SCHEMES}
ratio = {s: per_scheme["mha"] / per_scheme[s] for s in SCHEMES}
lines = [f"| scheme | per token and layer | bytes per token ({v3.n_layers} layers, bf16) | vs MHA |",
         "|---|---|---:|---:|"]
for s in SCHEMES:
    formula = sizing.kv_formula(v3, scheme=s, n_kv_heads=gqa_heads if s == "gqa" else None)
    lines.append(f"| {s.upper()}{' (as published)' if s == v3.attention else ''} | {formula} | "
                 f"{per_scheme[s]:,} ({format_bytes(per_scheme[s])}) | {format_ratio(ratio[s])}× |")
display(Markdown("\n".join(lines)))

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### What the seed summaries got right, and wrong
#
# The summaries of the video that this course started from quote these figures. Each verdict below is
# computed from the published shapes, not typed in: it is chapter 13's verdict for the same claim
# (`attnlab.factcheck`), with the same label.

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "-"} tags=["hide-input"]
d_c, d_h_rope = sizing.mla_dims(v3)
width = sizing.kv_elements_per_token(v3, per_layer=True)
v2, dense67 = MODELS["deepseek-v2"], MODELS["deepseek-67b"]
v2_saving = 1 - sizing.kv_elements_per_token(v2) / sizing.kv_elements_per_token(dense67)
verdicts = [  # (claim key in attnlab.factcheck, the claim, what the arithmetic shows)
    ("mqa_128x", "MQA: “128× less memory, 4 MB → 31 kB per token”",
     f"Right arithmetic, for a what-if: {format_bytes(per_scheme['mha'])} → {format_bytes(per_scheme['mqa'])} "
     f"per token, {format_ratio(ratio['mqa'])}×: DeepSeek-V3's shape with MHA versus MQA. V3 uses neither."),
    ("gqa_16_groups_v3", f"GQA: “{gqa_heads} groups in DeepSeek V3/R1, 8× less”",
     f"DeepSeek-V3 does not use GQA: its config has an MLA latent (kv_lora_rank {v3.kv_lora_rank}) and "
     f"num_key_value_heads = num_attention_heads = {v3.n_kv_heads}. *If* it had {gqa_heads} KV heads, "
     f"its cache would be {format_ratio(ratio['gqa'])}× smaller than MHA."),
    ("mla_57x", "MLA: “57× less than multi-head attention”",
     f"{width} = {d_c} (latent) + {d_h_rope} (decoupled RoPE key) numbers per token and layer; "
     f"{format_ratio(ratio['mla'])}× smaller than MHA."),
    ("mla_576_times", f"“Reduces the KV cache by {width} times”",
     f"{width} is a width, not a factor. The factor is {format_ratio(ratio['mla'])}×."),
    ("six_times_faster", "“Six times faster generation”",
     f"DeepSeek-V2's “5.76× throughput, 93.3% smaller cache” is against the dense {dense67.name} "
     f"(GQA with {dense67.n_kv_heads} KV heads, {dense67.n_layers} layers) and includes KV quantization. "
     f"By element count alone, V2's cache is {100 * v2_saving:.1f}% smaller. Chapter 13 checks the rest."),
]
display(Markdown("\n".join(["| claim | verdict | computed |", "|---|---|---|",
                            *[f"| {c} | {factcheck.verdict_label(factcheck.claim(key).verdict)} | {why} |"
                              for key, c, why in verdicts]])))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 4. Play with it: the KV-cache calculator
#
# Pick a model: its published shape loads into the sliders. Then change anything: the number of layers,
# query heads, KV heads (the slider only offers divisors of the query heads, because the heads must split
# into equal groups), head width, MLA's latent and RoPE widths, the context, the batch, the dtype, and the
# GPU memory. *Scheme shown* chooses which scheme the numbers on the right describe; the bar chart always
# compares all four for the same shape. A few things to try:
#
# * DeepSeek-V3: slide KV heads to 1 and to 128, and watch the GQA bar reach the MQA and MHA bars.
# * Llama-3-70B at 128K context (longer than the window of the original Llama-3 config the calculator
#   loads; Llama-3.1 kept the same attention shape and reached 128K): does one 80 GiB GPU hold one
#   sequence's cache? With MLA?
# * Switch the dtype to float8: everything halves against bfloat16.
# * Gemma-2-9B, Gemma-3-27B or gpt-oss-120b: some of their layers attend only to a sliding window of recent
#   tokens and cache only those. The readout gives the bytes per token inside the window and past it,
#   where only the full layers still grow; Mistral-7B-v0.1's cache stops growing at its window.
# * Qwen3-Next or Kimi Linear: most of their layers are linear attention and keep a fixed state per
#   sequence, whatever the context; only the few full layers grow. DeepSeek-V4-Pro or -Flash: every layer
#   keeps its last 128 tokens plus one compressed entry per 4 or per 128 tokens (chapter 20). The readout
#   gives the fixed state, or V4's growth per token; the bars are what-ifs with every layer attending fully.

# %% slideshow={"slide_type": "-"}
calc = cache_calculator("deepseek-v3")
calc

# %% [markdown] slideshow={"slide_type": "subslide"}
# The calculator draws its readout and chart with pure functions of its state, so the same view can be rendered
# without a live kernel. Here it is for Llama-3-70B serving a batch of sequences as long as its published
# context window, in bfloat16:

# %% slideshow={"slide_type": "-"}
llama70 = MODELS["llama-3-70b"]
state = CalculatorState(spec=llama70, gqa_kv_heads=llama70.n_kv_heads, seq_len=llama70.max_context, batch=16)
display(Markdown(f"{llama70.name}: batch {state.batch} × {state.seq_len:,} tokens"))
display(HTML(readout_html(state)))
figures.show(bar_chart_figure(state), "ch00-llama-70b-cache")  # hover a bar for its exact bytes

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 5. Cache size against context length
#
# The cache grows linearly with the context, with a slope set by the scheme. Each line is a real model's
# cache for one sequence in bfloat16, solid up to its published context window (`max_position_embeddings`,
# marked with a dot) and dotted beyond it. The grey dashed line is DeepSeek-V3's shape with plain MHA.
# Models with sliding-window layers (Gemma, Mistral-7B-v0.1) bend where the window ends: past it only their
# full layers keep every token, and a model without full layers stays flat. The hybrids (Qwen3-Next, Kimi
# Linear) start from their linear layers' fixed state; DeepSeek-V4 grows by a compressed entry per 4 or
# 128 tokens.

# %% slideshow={"slide_type": "-"}
lengths = [2**k for k in range(10, 21)]  # 1K ... 1M tokens
shown = ["llama-2-7b", "llama-3-70b", "llama-3-8b", "deepseek-v3", "qwen2.5-7b", "falcon-7b", "gemma-3-27b",
         "mistral-7b-v0.1", "qwen3-next-80b-a3b", "kimi-linear-48b-a3b", "deepseek-v4-pro", "deepseek-v4-flash"]
# legend from largest to smallest bytes per token (DeepSeek-V4: its average growth, an entry per 4 or 128 tokens)
shown.sort(key=lambda k: -(sizing.growth_bytes_per_token(k) if MODELS[k].v4 else sizing.cache_bytes_per_token(k)))
colors = plt.get_cmap("tab20").colors[::2] + plt.get_cmap("tab20").colors[1::2]  # tab10's, then lighter ones


def map_label(spec: sizing.ModelSpec) -> str:
    """Legend text: the scheme and what one more token costs (inside the window; V4: its average growth)."""
    if spec.v4 is not None:  # an entry per 4 or 128 tokens, not a fixed number per token
        return f"{spec.name} (CSA + HCA, {format_bytes(sizing.growth_bytes_per_token(spec))}/token on average)"
    window = f", window {spec.sliding_window:,}" if spec.windowed else ""  # past it only full layers grow
    state = (f" + {format_bytes(sizing.fixed_state_bytes(spec))} state" if "linear" in spec.layer_types
             else "")  # the linear layers' fixed state
    return (f"{spec.name} ({spec.attention.upper()}{' + linear' if state else ''}, "
            f"{format_bytes(sizing.cache_bytes_per_token(spec))}/token{state}{window})")


fig, ax = plt.subplots(figsize=(10.5, 5.2))
ax.plot(lengths, [gib(sizing.kv_cache_bytes(v3, n, scheme="mha")) for n in lengths], color="0.55",
        linestyle="--", linewidth=1.8, label=f"{v3.name} shape with MHA (what-if)")
for i, key in enumerate(shown):
    spec = MODELS[key]
    inside = [n for n in lengths if n <= spec.max_context] + [spec.max_context]
    inside = sorted(set(inside))
    beyond = [spec.max_context] + [n for n in lengths if n > spec.max_context]
    ax.plot(inside, [gib(sizing.kv_cache_bytes(spec, n)) for n in inside], color=colors[i], linewidth=2.2,
            label=map_label(spec))
    ax.plot([spec.max_context], [gib(sizing.kv_cache_bytes(spec, spec.max_context))], color=colors[i],
            marker="o", markersize=5, clip_on=False)  # the published context
    if len(beyond) > 1:
        ax.plot(beyond, [gib(sizing.kv_cache_bytes(spec, n)) for n in beyond], color=colors[i],
                linewidth=1.4, linestyle=":")
ax.axhline(gpu_gib, color="black", linewidth=0.9)
ax.text(lengths[0] * 1.1, gpu_gib * 1.15, f"{gpu_gib} GiB: one H100's memory", fontsize=9)
ax.set_xscale("log", base=2)
ax.set_yscale("log")
ax.xaxis.set_major_locator(FixedLocator(lengths[::2]))
ax.xaxis.set_minor_locator(NullLocator())
ax.set_xticklabels([f"{n // 1024}K" if n < 2**20 else "1M" for n in lengths[::2]])
ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}"))
ax.set_xlim(lengths[0], lengths[-1])
ax.set_xlabel("context length (tokens, one sequence)")
ax.set_ylabel("KV cache (GiB, bfloat16)")
ax.set_title("KV cache for one sequence: dotted = beyond the published context window")
ax.grid(True, which="major", alpha=0.3)
ax.legend(fontsize=9, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
fig.tight_layout()
plt.show()

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "subslide"} tags=["hide-input"]
at = 128 * 1024
sizes = {key: gib(sizing.kv_cache_bytes(key, at)) for key in shown}


def beyond(key: str) -> str:
    """Say so when ``at`` is longer than the model's published context."""
    n = MODELS[key].max_context
    return f", beyond its {n // 1024}K context" if n < at else ""


gemma3, mistral01 = MODELS["gemma-3-27b"], MODELS["mistral-7b-v0.1"]
display(Markdown(
    f"At {at:,} tokens the full-attention caches of one sequence range from {sizes['falcon-7b']:.2f} GiB "
    f"(Falcon-7B, MQA{beyond('falcon-7b')}) to {sizes['llama-2-7b']:.0f} GiB (Llama-2-7B, MHA"
    f"{beyond('llama-2-7b')}). DeepSeek-V3, with {v3.n_params / 1e9:.0f} billion "
    f"parameters, needs {sizes['deepseek-v3']:.2f} GiB with MLA, close to the "
    f"{sizes['qwen2.5-7b']:.2f} GiB of Qwen2.5-7B with GQA. "
    "Mistral-7B has the same cache shape as Llama-3-8B "
    f"({format_bytes(sizing.cache_bytes_per_token('mistral-7b'))} per token), so its line is the same. "
    f"{gemma3.name} caches the last {gemma3.sliding_window:,} tokens on {gemma3.layer_types.count('sliding')} of "
    f"its {gemma3.n_layers} layers, so it needs {sizes['gemma-3-27b']:.2f} GiB instead of "
    f"{gib(at * sizing.cache_bytes_per_token(gemma3)):.1f}; {mistral01.name}, whose every layer slides over "
    f"{mistral01.sliding_window:,} tokens, needs {sizes['mistral-7b-v0.1']:.2f} GiB at any length past that."
))

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "subslide"} tags=["hide-input"]
newer = ["qwen3-next-80b-a3b", "kimi-linear-48b-a3b", "deepseek-v4-pro", "deepseek-v4-flash", "deepseek-v3.2"]
points = [32 * 1024, 128 * 1024, 2**20]
lines = ["| model (published context) | layers | 32K | 128K | 1M |", "|---|---|---:|---:|---:|"]
for key in newer:
    spec = MODELS[key]
    cells = [f"{gib(sizing.kv_cache_bytes(spec, n)):.2f} GiB" for n in points]
    cells = [f"*{c}*" if n > spec.max_context else c for c, n in zip(cells, points, strict=True)]  # beyond it
    lines.append(f"| {spec.name} ({spec.max_context // 1024:,}K) | {sizing.layer_plan(spec)} | " + " | ".join(cells)
                 + " |")
qwen_next, v4_pro, v32 = MODELS["qwen3-next-80b-a3b"], MODELS["deepseek-v4-pro"], MODELS["deepseek-v3.2"]
pro_1m, v32_1m = (sizing.kv_cache_bytes(m, 2**20) for m in (v4_pro, v32))
pro_fp8, v32_fp8 = (sizing.kv_cache_bytes(m, 2**20, cache_format="deepseek-fp8") for m in (v4_pro, v32))
display(Markdown(
    "The newest designs change the shape of the curve itself. One sequence, bfloat16 (*italics*: beyond the "
    "published context):\n\n" + "\n".join(lines) + "\n\n"
    f"{qwen_next.name}'s {qwen_next.layer_types.count('linear')} Gated DeltaNet layers keep "
    f"{format_bytes(sizing.fixed_state_bytes(qwen_next))} of state per sequence at any length; only its "
    f"{qwen_next.layer_types.count('full')} full layers grow, by "
    f"{format_bytes(sizing.cache_bytes_per_token(qwen_next))} per token. At 1M tokens {v4_pro.name} needs "
    f"{gib(pro_1m):.2f} GiB against {gib(v32_1m):.2f} GiB for "
    f"{v32.name}, {v32_1m / pro_1m:.1f}× less; in DeepSeek's own byte layouts (FP8 entries, FP4 index keys "
    f"against V3.2's FP8 ones) {100 * pro_fp8 / v32_fp8:.0f}% of V3.2's cache, the published “about 10%”."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 6. What it costs
#
# **Memory beside the weights.** The cache shares the GPU with the model's weights. What is left over
# decides how many tokens, and so how many users, one GPU serves at once.

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "-"} tags=["hide-input"]
l8 = MODELS["llama-3-8b"]
weights = sizing.weight_bytes(l8, torch.bfloat16)
fit = sizing.tokens_that_fit(l8, gpu_gib, weights_dtype=torch.bfloat16)
node = 8 * gpu_gib  # one server of eight GPUs
v3_fit_mla = sizing.tokens_that_fit(v3, node, weights_dtype="float8")
v3_fit_mha = sizing.tokens_that_fit(v3, node, scheme="mha", weights_dtype="float8")
display(Markdown(
    f"* {l8.name} in bfloat16: the weights take {gib(weights):.1f} GiB of one {gpu_gib} GiB GPU; "
    "the rest holds "
    f"{fit:,} tokens of cache, {fit // l8.max_context} sequences of its {l8.max_context:,}-token context.\n"
    f"* {v3.name} with FP8 weights ({gib(sizing.weight_bytes(v3, 'float8')):.0f} GiB) on {node} GiB "
    f"(eight {gpu_gib} GiB GPUs): the {gib(node * 2**30 - sizing.weight_bytes(v3, 'float8')):.0f} GiB "
    f"left hold {v3_fit_mla:,} tokens of MLA cache, but only {v3_fit_mha:,} tokens of MHA cache. "
    "(A rough bound: activations and the serving framework take their share too.)"
))

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Bandwidth per generated token.** Each new token reads the whole cache, so the time per token grows
# with the context. Reading DeepSeek-V3's cache for one sequence once, at FlashMLA's 3000 GB/s:

# %% slideshow={"slide_type": "-"}
lines = ["| scheme | cache at 8K | cache at 128K | read time per token at 128K |", "|---|---:|---:|---:|"]
for s in SCHEMES:
    n_kv = gqa_heads if s == "gqa" else None
    c8, c128 = (sizing.kv_cache_bytes(v3, n, scheme=s, n_kv_heads=n_kv) for n in (8 * 1024, 128 * 1024))
    lines.append(f"| {s.upper()} | {gib(c8):.2f} GiB | {gib(c128):.2f} GiB | "
                 f"{1e3 * c128 / flashmla_bytes_per_s:.1f} ms |")
display(Markdown("\n".join(lines)))

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Arithmetic per byte.** Sharing keys and values saves memory, not arithmetic: every query head still
# scores every cached token. MLA even spends *more* arithmetic per cached token: in its absorbed form
# (chapter 8) each head scores the whole $d_c + d_h^R$ wide vector and mixes the $d_c$ wide latent.
# What matters for decoding is the ratio, FLOPs per byte read:

# %% slideshow={"slide_type": "-"}
lines = ["| scheme | multiply-adds per cached token and layer | FLOPs per byte of cache read |",
         "|---|---:|---:|"]
for s in SCHEMES:
    n_kv = gqa_heads if s == "gqa" else None
    macs = sizing.attention_macs_per_cached_token(v3, scheme=s, n_kv_heads=n_kv)
    lines.append(f"| {s.upper()} | {macs:,} | {sizing.decode_flops_per_byte(v3, s, n_kv):.1f} |")
display(Markdown("\n".join(lines)))
flashmla_flops = 660e12  # FlashMLA's compute-bound figure on H800: up to 660 TFLOPS
display(Markdown(
    f"FlashMLA's own two figures, {flashmla_flops / 1e12:.0f} TFLOPS and "
    f"{flashmla_bytes_per_s / 1e9:,.0f} GB/s, balance at {flashmla_flops / flashmla_bytes_per_s:.0f} FLOPs "
    f"per byte. MHA decoding, at {sizing.decode_flops_per_byte(v3, 'mha'):.0f}, leaves the arithmetic "
    f"units idle while it waits on memory; MLA, at {sizing.decode_flops_per_byte(v3, 'mla'):.0f}, is where "
    "arithmetic, not memory, starts to set the pace. Chapter 8 counts both sides for MLA's absorbed decode."
))

# %% [markdown] slideshow={"slide_type": "subslide"}
# **What DSA adds.** DeepSeek-V3.2 keeps V3's MLA cache and adds, per token and layer, one key for its
# lightning indexer. In return, the main attention reads only the top-k selected tokens:

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "-"} tags=["hide-input"]
v32 = MODELS["deepseek-v3.2"]
index_extra = sizing.indexer_elements_per_token(v32) / sizing.kv_elements_per_token(v32)
mla_layout, index_layout = sizing.cache_layouts(v32, cache_format="deepseek-fp8")  # DeepSeek's FP8 layout
display(Markdown(
    f"{v32.name} caches {sizing.indexer_elements_per_token(v32, per_layer=True)} more numbers per token "
    f"and layer for the indexer: {100 * index_extra:.1f}% more than MLA's {width}, so with every number in "
    f"bfloat16 its cache is {format_bytes(sizing.cache_bytes_per_token(v32))} per token against "
    f"{format_bytes(sizing.cache_bytes_per_token(v3))} for {v3.name}, {100 * index_extra:.1f}% more in bytes "
    f"too. DeepSeek's kernels store both in FP8 with scales ({mla_layout.bytes} B and {index_layout.bytes} B "
    f"per token and layer): {100 * index_layout.bytes / mla_layout.bytes:.1f}% more. At {at:,} tokens of "
    f"context, attention then reads the cache of only {v32.index_topk:,} selected tokens, "
    f"{100 * v32.index_topk / at:.1f}% of it, while the cheap indexer still scans every index key "
    "(chapters 10 to 12)."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercises
#
# Each exercise has an answer cell (replace `None`) and a check cell. Work the answers out by hand from
# the numbers given, not with `attnlab.sizing`; the checks compare with it. Solutions are in
# `notebooks/solutions/ch00.py`.
#
# **Exercise 1 (predict, then run).** Llama-3-8B has 8 billion parameters and caches, per token, a key and
# a value for each of its 8 KV heads (width 128) in each of its 32 layers. In bfloat16, at how many tokens of
# one sequence does its KV cache weigh as much as its weights? Write your guess first; the check cell
# computes it and explains.

# %% slideshow={"slide_type": "-"}
prediction_cache_meets_weights = None  # a number of tokens

# %% slideshow={"slide_type": "-"}
print(ch00.check_prediction_cache_meets_weights(prediction_cache_meets_weights))

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Exercise 2.** DeepSeek-V3 caches $d_c$ = 512 latent numbers and a $d_h^R$ = 64 wide RoPE key per
# token and layer, in 61 layers. How many GiB ($2^{30}$ bytes) does its cache take for one sequence of
# 128K = 131,072 tokens in bfloat16? (To 0.01 GiB.)

# %% slideshow={"slide_type": "-"}
answer_mla_cache_gib = None

# %% slideshow={"slide_type": "-"}
print(ch00.check_mla_cache_gib(answer_mla_cache_gib))

# %% [markdown] slideshow={"slide_type": "subslide"}
# Next, chapter 1: where the tokens come from, and why their number is the length every cost here
# multiplies.
