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
# # Chapter 5 · Multi-query attention
#
# *Video chapter at 09:42.*
#
# > **What you will learn:** multi-query attention: one key/value head shared by every query head, the cache
# > it saves, the bytes a decode step no longer reads, and the quality it costs.
# >
# > **What it assumes:** [chapter 4](04_kv_caching.ipynb): the KV cache and its size.
#
# Chapter 4 kept the keys and values of every earlier token in a cache, so each new token costs one
# forward step instead of a whole re-run. The price is memory: with multi-head attention (MHA) every
# layer stores a key and a value **for each of the n_h heads** of every token, and every decode step
# reads all of it back. Generation waits on that read, not on arithmetic.
#
# In 2019 Noam Shazeer asked how much of that is needed ("Fast Transformer Decoding: One Write-Head is
# All You Need", arXiv 1911.02150). His answer, **multi-query attention (MQA)**: keep all n_h query
# heads, but give them **one** key head and **one** value head, shared. The cache shrinks by a factor of
# n_h, and in his experiments the quality barely moved. This chapter builds it from the course library,
# measures the cache, checks the claim against a wrong description of it, and weighs what it costs.

# %% slideshow={"slide_type": "skip"}
import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from IPython.display import HTML, Markdown, display
from matplotlib.patches import Patch

from attnlab import corpus, factcheck, plots, quality, show_source, sizing
from attnlab import evidence as E
from attnlab import evidence_plots as EP
from attnlab.attention import attention_matrix
from attnlab.exercises import ch05
from attnlab.gqa import AttentionConfig, GroupedQueryAttention, grouped_attention, repeat_kv
from attnlab.interactive import gqa as gqa_widgets
from attnlab.model import load_checkpoint
from attnlab.plots import COLORS, SCHEME_COLORS, attention_heatmap
from attnlab.sizing import MODELS, format_bytes, format_ratio
from attnlab.tokenization import load_tokenizer, render_token

_ = torch.manual_seed(0)
# One thread: the same float rounding on every machine, so every printed number below is reproducible.
torch.set_num_threads(1)

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### The idea, animated
#
# The chapter in one short animation. It plays here once the videos are rendered (`./course animations`);
# until then, and in static exports, the last frame stands in.

# %% slideshow={"slide_type": "-"}
from attnlab.media import show_animation

show_animation("MQAScene")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 1. The picture
#
# Below, each blue box is a query head and each green/orange pair is one cached key head and value head.
# On the left, MHA: every query head reads its own K and V. On the right, MQA: all query heads fan into
# the same single K and V. The query side is untouched, so the model still has n_h different ways of
# *looking*; only what it *remembers* per token is shared.

# %% slideshow={"slide_type": "-"}
n_heads = 8
display(HTML(
    '<div style="display:flex;flex-wrap:wrap;gap:8px">'
    + gqa_widgets.sharing_svg(n_heads, n_heads, width=470, title=f"MHA: {n_heads} query heads, {n_heads} K/V heads")
    + gqa_widgets.sharing_svg(n_heads, 1, width=470, title=f"MQA: {n_heads} query heads, 1 K/V head")
    + "</div>"
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 2. The math
#
# For a sequence $X \in \mathbb{R}^{n \times d_{model}}$, MHA gives each head $h = 1, \dots, n_h$ its own
# projections:
#
# $$Q_h = X W^Q_h,\quad K_h = X W^K_h,\quad V_h = X W^V_h,\qquad
# O_h = \operatorname{softmax}\!\left(\frac{Q_h K_h^\top}{\sqrt{d_h}} + M\right) V_h ,$$
#
# with $W^Q_h, W^K_h, W^V_h \in \mathbb{R}^{d_{model} \times d_h}$ and $M$ the causal mask. MQA keeps
# the $n_h$ query projections and drops the head index from the other two:
#
# $$K = X W^K,\quad V = X W^V,\qquad O_h = \operatorname{softmax}\!\left(\frac{Q_h K^\top}{\sqrt{d_h}}
# + M\right) V \qquad (h = 1, \dots, n_h).$$
#
# The outputs are concatenated and projected by $W^O$ as before. Per token and layer the cache holds
#
# $$\underbrace{2\, n_h\, d_h}_{\text{MHA}} \;\longrightarrow\; \underbrace{2\, d_h}_{\text{MQA}}
# \quad\text{numbers: } n_h \text{ times fewer.}$$

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 3. The code: the same module with `n_kv_heads = 1`
#
# `attnlab` has one attention module for MHA, MQA and GQA (chapter 6): `GroupedQueryAttention`, with
# `n_heads` query heads and `n_kv_heads` key/value heads. MQA is `n_kv_heads=1`. The projections shrink
# accordingly:

# %% slideshow={"slide_type": "-"}
mqa_config = AttentionConfig(d_model=128, n_heads=8, n_kv_heads=1)
mha_config = AttentionConfig(d_model=128, n_heads=8)  # n_kv_heads defaults to n_heads
for config in (mha_config, mqa_config):
    layer = GroupedQueryAttention(config)
    print(f"{config.kind}: n_kv_heads={config.n_kv_heads}, group size {config.group_size}, "
          f"W^Q {tuple(layer.w_q.weight.T.shape)}, W^K {tuple(layer.w_k.weight.T.shape)}, "
          f"W^V {tuple(layer.w_v.weight.T.shape)}, cached numbers per token {config.cache_elements_per_token()}")

# %% [markdown] slideshow={"slide_type": "-"}
# The attention itself is `grouped_attention`. It reshapes the query heads into `(n_kv_heads groups) x
# (r heads per group)` and multiplies each group's queries with its K/V head in one matmul. With one K/V
# head there is one group of all r = n_h query heads; the shared `k` and `v` are never copied:

# %% slideshow={"slide_type": "-"}
show_source(grouped_attention, start="r, n_k = ", stop="out = torch.einsum")

# %% [markdown] slideshow={"slide_type": "subslide"}
# Three checks, in float64 on random tensors. MQA must give the same output as
#
# 1. PyTorch's own `scaled_dot_product_attention` with `enable_gqa=True` (which accepts fewer K/V heads
#    than query heads);
# 2. plain MHA (`attention_matrix` from chapter 3) whose n_h key heads are all **the same** key head, and
#    whose value heads are all the same value head (`repeat_kv` makes those copies);
# 3. a whole MHA *layer* whose weight matrices $W^K_h$ are n_h copies of MQA's one $W^K$ (likewise $W^V$).
#
# So MQA is exactly MHA with its K/V heads tied together, computed without the copies.

# %% slideshow={"slide_type": "-"}
gen = torch.Generator().manual_seed(0)
b, n, d = 2, 10, 16
q = torch.randn(b, n_heads, n, d, generator=gen, dtype=torch.float64)  # (batch, n_heads, seq, d_h)
k = torch.randn(b, 1, n, d, generator=gen, dtype=torch.float64)  # (batch, 1 KV head, seq, d_h)
v = torch.randn(b, 1, n, d, generator=gen, dtype=torch.float64)

out_mqa, _ = grouped_attention(q, k, v, causal=True)  # (b, n_heads, n, d)
out_sdpa = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
out_mha_tied, _ = attention_matrix(q, repeat_kv(k, n_heads), repeat_kv(v, n_heads), causal=True)
print("output shape", tuple(out_mqa.shape))
print("MQA == SDPA(enable_gqa=True):      ", torch.allclose(out_mqa, out_sdpa, atol=1e-12))
print("MQA == MHA with K/V heads all equal:", torch.allclose(out_mqa, out_mha_tied, atol=1e-12))

mqa_layer = GroupedQueryAttention(mqa_config).double()
mha_layer = GroupedQueryAttention(mha_config).double()
with torch.no_grad():
    mha_layer.w_q.weight.copy_(mqa_layer.w_q.weight)
    mha_layer.w_o.weight.copy_(mqa_layer.w_o.weight)
    mha_layer.w_k.weight.copy_(mqa_layer.w_k.weight.repeat(n_heads, 1))  # W^K_h = W^K for every head h
    mha_layer.w_v.weight.copy_(mqa_layer.w_v.weight.repeat(n_heads, 1))
x = torch.randn(b, n, 128, generator=gen, dtype=torch.float64)
y_mqa, y_mha = mqa_layer(x).output, mha_layer(x).output  # each layer returns an AttentionOutput
print("MQA layer == MHA layer with tied W^K, W^V:", torch.allclose(y_mqa, y_mha, atol=1e-12))

# %% [markdown] slideshow={"slide_type": "subslide"}
# Sharing keys does **not** make the heads alike: each head still has its own query, so each head still
# attends differently. Here are four heads of the last layer of `tiny_mqa`, the course's small language
# model trained with MQA, on a line of Python documentation. All four score the very same keys.

# %% slideshow={"slide_type": "-"}
tokenizer = load_tokenizer()
tiny = {name: load_checkpoint(f"tiny_{name}") for name in ("mha", "gqa", "mqa")}
text = "The return statement leaves the current function call with the expression list"
ids = torch.tensor([tokenizer.encode(text)])
with torch.no_grad():
    _, maps = tiny["mqa"](ids, return_attention=True)  # per layer (1, n_heads, seq, seq)
labels = [render_token(tokenizer.vocab[i]) for i in ids[0].tolist()]
fig, axes = plt.subplots(1, 4, figsize=(15, 4.6))
for head, ax in enumerate(axes):
    attention_heatmap(maps[-1][0, head], labels, ax=ax, title=f"head {head}")
    ax.tick_params(labelsize=7)
    if head:
        ax.set_ylabel("")
        ax.set_yticklabels([])
mqa_attn = tiny["mqa"].config.attention_config()
fig.suptitle(f"tiny_mqa ({tiny['mqa'].config.n_layers} layers, {mqa_attn.n_heads} query heads, "
             f"{mqa_attn.n_kv_heads} K/V head), last layer: four query heads, one shared set of keys", y=1.0)
fig.tight_layout()
plt.show()

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "subslide"} tags=["hide-input"]
last = maps[-1][0]  # (n_heads, seq, seq)
# total variation distance between two heads' attention rows: the share of weight that sits elsewhere
spread = max(0.5 * (last[i] - last[j]).abs().sum(-1).mean().item() for i in range(4) for j in range(i))
display(Markdown(
    f"The heads differ: for the two most different of the four heads above, on average **{spread:.0%}** of a "
    f"query's attention weight lands on different keys (total variation distance, mean over the "
    f"{ids.shape[1]} queries), although every head reads the same single key per token."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 4. A wrong description, checked
#
# A summary of the video that circulates online says: *"In traditional multi-query attention, each head
# gets its own set of keys and values."* That is the definition of **multi-head** attention, the thing
# MQA replaces. The library classifies each reading from its head counts:

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "-"} tags=["hide-input"]
claim = AttentionConfig(d_model=128, n_heads=8, n_kv_heads=8)  # "each head its own keys and values"
display(Markdown(
    f"{factcheck.verdict_label(factcheck.claim('mqa_own_kv').verdict)}. Each of the {claim.n_heads} heads with "
    f"its own K/V means n_kv_heads = {claim.n_kv_heads}, "
    f"which `AttentionConfig` calls `{claim.kind!r}` and which caches {claim.cache_elements_per_token()} "
    f"numbers per token and layer; MQA is n_kv_heads = {mqa_config.n_kv_heads} (`{mqa_config.kind!r}`), "
    f"{mqa_config.cache_elements_per_token()} numbers: "
    f"{claim.cache_elements_per_token() // mqa_config.cache_elements_per_token()}× fewer. The other summary's "
    f"line, *\"share a single key and value vector across many query heads\"*, is the right one."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 5. The cache shrinks by n_h
#
# ### Measured on the tiny models
#
# We feed the same 64-token prompt through `tiny_mha`, `tiny_gqa` (2 K/V heads, chapter 6) and
# `tiny_mqa` with a `KVCache`, then generate 64 more tokens one at a time, and read `KVCache.nbytes`
# after every step.

# %% slideshow={"slide_type": "-"}
prompt = torch.tensor([tokenizer.encode(corpus.load_text("val"))[:64]])  # (1, 64)
growth, caches = {}, {}
with torch.no_grad():
    for name, model in tiny.items():
        cache = caches[name] = model.new_cache()
        logits = model(prompt, cache=cache)
        sizes = [(cache.seq_len, cache.nbytes)]
        for _ in range(64):
            nxt = logits[:, -1:].argmax(-1)  # greedy next token, (1, 1)
            logits = model(nxt, cache=cache)
            sizes.append((cache.seq_len, cache.nbytes))
        growth[name] = sizes

rows = ["| model | K/V heads | measured bytes per token | formula 2 × n_kv × d_h × layers × 4 B |",
        "|---|---|---|---|"]
for name, model in tiny.items():
    attn = model.config.attention_config()
    formula = attn.cache_elements_per_token() * model.config.n_layers * model.embed.weight.element_size()
    rows.append(f"| tiny_{name} | {attn.n_kv_heads} | {caches[name].bytes_per_token():,.0f} B | {formula:,} B |")
display(Markdown("\n".join(rows)))

# %% slideshow={"slide_type": "subslide"}
fig, ax = plt.subplots(figsize=(7, 3.6))
for name, sizes in growth.items():
    scheme = tiny[name].config.attention_config().kind
    ax.plot([t for t, _ in sizes], [nb / 1e3 for _, nb in sizes], color=SCHEME_COLORS[scheme], lw=2.2,
            label=f"tiny_{name} ({tiny[name].config.attention_config().n_kv_heads} K/V heads)")
    ax.plot(*sizes[0][:1], sizes[0][1] / 1e3, "o", color=SCHEME_COLORS[scheme], ms=7)  # after the prefill
ax.axvline(prompt.shape[1], color=COLORS["muted"], ls=":", lw=1)
ax.set_xlim(0, growth["mha"][-1][0] + 2)
ax.set_ylim(0, None)
ax.text(prompt.shape[1] - 2, ax.get_ylim()[1] * 0.9, f"● after the {prompt.shape[1]}-token prefill", ha="right",
        color=COLORS["muted"], fontsize=9)
ax.text(prompt.shape[1] + 2, ax.get_ylim()[1] * 0.9, "decode, one token a step", color=COLORS["muted"], fontsize=9)
ax.set(xlabel="tokens in the cache", ylabel="KVCache.nbytes (kB)",
       title=f"Measured cache of the tiny models ({tiny['mha'].config.n_layers} layers, float32)")
ax.legend(frameon=False)
ax.spines[["top", "right"]].set_visible(False)
fig.tight_layout()
plt.show()

mha_bpt, mqa_bpt = caches["mha"].bytes_per_token(), caches["mqa"].bytes_per_token()
display(Markdown(
    f"Measured: {mha_bpt:,.0f} bytes per token with MHA, {mqa_bpt:,.0f} with MQA, "
    f"**{mha_bpt / mqa_bpt:g}× less**, which is n_h = {tiny['mqa'].config.n_heads}."
))

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Real models
#
# `attnlab.sizing` holds the published shapes of real models. **Falcon-7B** is a real MQA model (its
# config says `multi_query: true`); for it, MHA is the what-if. **Llama-2-7B** is a real MHA model; MQA is
# its what-if. **DeepSeek-V3** uses neither: it uses multi-head latent attention (chapter 7). Sizing it
# as MHA and as MQA, both what-ifs, gives the figures quoted in the video's summaries.

# %% slideshow={"slide_type": "-"}
real = ["llama-2-7b", "falcon-7b", "deepseek-v3"]
rows = ["| model | query heads n_h | d_h | layers | published | MHA bytes/token | MQA bytes/token | MHA / MQA |",
        "|---|---|---|---|---|---|---|---|"]
for key in real:
    spec = MODELS[key]
    mha_b = sizing.cache_bytes_per_token(spec, "bfloat16", "mha")
    mqa_b = sizing.cache_bytes_per_token(spec, "bfloat16", "mqa")
    rows.append(f"| {spec.name} | {spec.n_heads} | {spec.head_dim} | {spec.n_layers} | {spec.attention.upper()} "
                f"| {mha_b:,} ({format_bytes(mha_b)}) | {mqa_b:,} ({format_bytes(mqa_b)}) "
                f"| {format_ratio(mha_b / mqa_b)}× |")
display(Markdown("\n".join(rows) + "\n\nbfloat16, 2 bytes a number, all layers."))

v3 = MODELS["deepseek-v3"]
v3_mha = sizing.cache_bytes_per_token(v3, "bfloat16", "mha")
v3_mqa = sizing.cache_bytes_per_token(v3, "bfloat16", "mqa")
display(Markdown(
    f"**The summary's \"4 MB → 31 kB per token, 128×\" checks out as arithmetic**: DeepSeek-V3's shape "
    f"({v3.n_heads} heads of d_h = {v3.head_dim}, {v3.n_layers} layers, bfloat16) gives "
    f"{v3_mha:,} B = {format_bytes(v3_mha)} per token as MHA and {v3_mqa:,} B = {format_bytes(v3_mqa)} as "
    f"MQA, {format_ratio(v3_mha / v3_mqa)}× less, which is n_h = {v3.n_heads}. **Both are what-ifs**: "
    f"DeepSeek-V3 ships MLA, which caches {format_bytes(sizing.cache_bytes_per_token(v3))} per token (chapter 7)."
))

# %% slideshow={"slide_type": "subslide"}
fig, ax = plt.subplots(figsize=(8, 3.4))
width = 0.38
for i, key in enumerate(real):
    spec = MODELS[key]
    for j, scheme in enumerate(("mha", "mqa")):
        value = sizing.cache_bytes_per_token(spec, "bfloat16", scheme)
        published = spec.attention == scheme
        ax.barh(i + (j - 0.5) * width, value, height=width * 0.92, color=SCHEME_COLORS[scheme],
                alpha=1.0 if published else 0.45, hatch=None if published else "//", edgecolor="white")
        ax.text(value * 1.15, i + (j - 0.5) * width, format_bytes(value) + ("" if published else " (what-if)"),
                va="center", fontsize=9)
ax.set_xscale("log")
ax.set_xlim(5e3, 4e7)
ax.set_yticks(range(len(real)), [MODELS[k].name for k in real])
ax.invert_yaxis()
ax.set_xlabel("KV-cache bytes per token (all layers, bfloat16, log scale)")
ax.set_title("MHA against MQA, per token of context")
ax.legend(handles=[Patch(color=SCHEME_COLORS["mha"], label="MHA"), Patch(color=SCHEME_COLORS["mqa"], label="MQA"),
                   Patch(facecolor=COLORS["muted"], alpha=0.45, hatch="//", edgecolor="white", label="what-if")],
          frameon=False, loc="upper right")
ax.spines[["top", "right"]].set_visible(False)
fig.tight_layout()
plt.show()

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 6. Why it is faster at decode: bytes read per generated token
#
# A decode step does little arithmetic per byte it reads. Every step reads each weight once (shared by
# all sequences of the batch) and **every sequence's whole cache**:
#
# $$\text{bytes read per step} = \underbrace{P \cdot 2}_{\text{weights}} \;+\;
# \underbrace{B \cdot t \cdot 2\, n_{kv}\, d_h\, l \cdot 2}_{\text{K/V cache}}$$
#
# for P parameters, batch B, context t, bfloat16. MQA leaves the weight term alone and divides the
# cache term by n_h. The arithmetic does not change: each query head still scores every cached key
# (`sizing.attention_macs_per_cached_token`), so MQA does the same work on n_h times fewer bytes.

# %% slideshow={"slide_type": "-"}
llama2 = MODELS["llama-2-7b"]
macs = {s: sizing.attention_macs_per_cached_token(llama2, s) for s in ("mha", "mqa")}
intensity = {s: sizing.decode_flops_per_byte(llama2, s) for s in ("mha", "mqa")}
display(Markdown(
    f"{llama2.name}, per layer and cached token: {macs['mha']:,} multiply-adds with MHA, {macs['mqa']:,} "
    f"with MQA (the same); arithmetic intensity of decoding attention {intensity['mha']:g} FLOP per byte "
    f"with MHA and {intensity['mqa']:g} with MQA. A GPU needs hundreds of FLOP per byte to be busy (chapter 4), "
    f"so both are memory-bound, and the time of the attention read falls with its bytes."
))

contexts = [2**k for k in range(8, 18)]
batch = 8
fig, ax = plt.subplots(figsize=(7.5, 3.8))
for scheme in ("mha", "mqa"):
    reads = [gqa_widgets.decode_read_bytes(llama2, t, batch, scheme)["total"] / 1e9 for t in contexts]
    ax.plot(contexts, reads, "o-", color=SCHEME_COLORS[scheme], lw=2, ms=4, label=f"{scheme.upper()}: weights + cache")
weights_gb = sizing.weight_bytes(llama2) / 1e9
ax.axhline(weights_gb, color=COLORS["muted"], ls="--", lw=1.2, label="weights alone")
ax.set_xscale("log", base=2)
ax.set_xticks(contexts, [f"{t // 1024}K" if t >= 1024 else str(t) for t in contexts])
ax.set(xlabel="context length t (tokens per sequence)", ylabel="GB read per decode step",
       title=f"Bytes read per decode step: {llama2.name} shape, batch {batch}, bfloat16")
ax.legend(frameon=False)
ax.spines[["top", "right"]].set_visible(False)
fig.tight_layout()
plt.show()

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "subslide"} tags=["hide-input"]
t_long = 32 * 1024
long_mha = gqa_widgets.decode_read_bytes(llama2, t_long, batch, "mha")
long_mqa = gqa_widgets.decode_read_bytes(llama2, t_long, batch, "mqa")
paper_cost = {s: E.mqa_row(E.MQA_COSTS, s) for s in ("mha", "mqa")}  # the MQA paper's Table 2
paper_mha_us, paper_mqa_us = (paper_cost[s].greedy[1] for s in ("mha", "mqa"))  # the decoder, per output token
beam_mha_us, beam_mqa_us = (paper_cost[s].beam4[1] for s in ("mha", "mqa"))
display(Markdown(
    f"At {t_long:,} tokens and batch {batch}, a step of the MHA model reads {format_bytes(long_mha['total'])}, "
    f"{long_mha['cache'] / long_mha['total']:.0%} of it cache; with MQA it reads "
    f"{format_bytes(long_mqa['total'])}, **{format_ratio(long_mha['total'] / long_mqa['total'])}× less**. "
    f"Shazeer measured the same effect on his translation model (Table 2 of arXiv 1911.02150, one TPUv2, "
    f"WMT14 English-German, µs per output token): the incremental decoder took {paper_mha_us:g} µs with MHA "
    f"and {paper_mqa_us:g} µs with MQA, **{paper_mha_us / paper_mqa_us:.1f}× faster** ({beam_mha_us:g} and "
    f"{beam_mqa_us:g} µs with beam-4 search, {beam_mha_us / beam_mqa_us:.1f}×), while a training step, which "
    f"reads every key once for a whole sequence, took {paper_cost['mha'].training:.1f} and "
    f"{paper_cost['mqa'].training:.1f} µs per token: the same."
))

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Live: bytes read per decode step
#
# Pick a dense model, a context length and a batch. Grey is the weights (read once per step whatever the
# batch), red the K/V cache of all sequences. Watch the cache take over as the batch or the context grows,
# and MQA push that point far out.

# %% slideshow={"slide_type": "-"}
gqa_widgets.mqa_decode_explorer("llama-2-7b", seq_len=4096, batch=8)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 7. The quality cost
#
# Sharing one K/V head removes parameters and forces every head to read the same summary of each token,
# so some quality is expected to go. Shazeer measured it on two tasks: translation (WMT14 English-German,
# scored on the dev set with greedy decoding, then on the test set with greedy and with beam-4 decoding) and
# language modeling (the Billion-Word benchmark). Every model has the same parameter count: MQA's smaller
# $W^K$ and $W^V$ are made up for by wider feed-forward layers. The paper's numbers for MHA and MQA
# (`attnlab.evidence.mqa_quality_pairs()`, Tables 1 and 3):

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "-"} tags=["hide-input"]
paper_quality = E.mqa_quality_pairs()
behind = [q for q in paper_quality if q.standing == "behind"]
ahead = [q for q in paper_quality if q.standing == "ahead"]
rows = ["| the paper's measure | MHA | MQA | MQA against MHA |", "|---|---:|---:|---|"]
rows += [f"| {q.metric} ({'lower' if q.lower_is_better else 'higher'} is better) | {q.mha:g} | {q.mqa:g} | "
         f"{q.standing} ({q.mqa - q.mha:+.3g}) |"
         for q in paper_quality]
paper_bleu = {"mha": paper_quality[1].mha, "mqa": paper_quality[1].mqa}  # dev BLEU, greedy: the paper's first
display(Markdown(
    "\n".join(rows) + "\n\n"
    f"MQA is behind on {len(behind)} of the {len(paper_quality)} numbers, each time by a little, and ahead on "
    f"{', '.join(q.metric for q in ahead)}, while decoding {paper_mha_us / paper_mqa_us:.1f}× faster per token. "
    f"Shazeer's own reading (§4.2): *\"{E.MQA_QUALITY_CONCLUSION}\"*"
))

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### What the papers measured
#
# Two small models, each trained once, are thin evidence. Two later papers measured MQA against MHA at
# scale, both as tables (`attnlab.evidence`, each number cited to its table): the GQA paper converted
# T5-XXL's MHA to MQA and uptrained it briefly; DeepSeek-V2's Appendix D.1 trained 7B dense models from
# scratch with each scheme.

# %% slideshow={"slide_type": "-"}
fig, ax = plt.subplots(figsize=(9, 3.6))
EP.score_bars(E.V2_DENSE_7B, ax)
fig.tight_layout()
plt.show()
t5_mha, t5_mqa = E.gqa_row("MHA-XXL"), E.gqa_row("MQA-XXL")
d1 = E.V2_DENSE_7B.deltas("mqa", "mha")
display(Markdown(
    f"- **T5-XXL (GQA paper, Table 1):** MQA, uptrained on {t5_mqa.uptrain_fraction:.0%} of the pre-training "
    f"steps, averages {t5_mqa.average} against MHA's {t5_mha.average} ({t5_mqa.average - t5_mha.average:+.1f} "
    f"points) and runs {t5_mha.t_infer_s / t5_mqa.t_infer_s:.1f}× faster per sample.\n"
    f"- **7B dense, trained from scratch (DeepSeek-V2, Appendix D.1):** MQA trails MHA on all {len(d1)} hard "
    f"benchmarks, by {min(-d for d in d1.values()):.1f} to {max(-d for d in d1.values()):.1f} points "
    f"(mean {-sum(d1.values()) / len(d1):.1f}).\n\n"
    "So the quality cost that Shazeer's small models barely show does show at scale, on harder benchmarks; how much "
    "depends on the model and the task, and (as the GQA paper shows) on whether K/V heads are shared from "
    "the start or merged from a trained MHA model. Chapter 6 shows the middle ground."
))

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### The tiny models: several seeds, parameters matched
#
# One tiny model per scheme would be a single sample: a second seed of the *same* scheme can land as far
# away as another scheme does. And sharing K/V heads removes parameters, so a smaller MQA model would be
# measured against a bigger MHA one. The course's quality study (`attnlab.quality`, `python -m
# attnlab.quality`) fixes both the way Shazeer did: it widens the MLP of the smaller models until every
# scheme has the same parameter count within 2%, then trains each scheme with several seeds on the same
# recipe and scores each model on the *whole* validation split.

# %% slideshow={"slide_type": "-"}
study = quality.load_study()
shipped = {name: sum(p.numel() for p in model.parameters()) for name, model in tiny.items()}
display(Markdown(study.markdown(("mha", "gqa", "mqa"))))
fig, axes = plt.subplots(1, 2, figsize=(12.5, 3.8), gridspec_kw={"width_ratios": [1, 1.4]})
plots.seed_spread(study, ("mha", "gqa", "mqa"), ax=axes[0])
plots.seed_curves(study, ("mha", "gqa", "mqa"), ax=axes[1])
fig.tight_layout()
plt.show()

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "fragment"} tags=["hide-input"]
mqa_gap, gqa_gap = study.gap("mqa", "mha"), study.gap("gqa", "mha")
recipe = study.recipe
display(Markdown(
    f"The shipped `tiny_mqa` above has {shipped['mqa']:,} parameters, {1 - shipped['mqa'] / shipped['mha']:.0%} "
    f"fewer than `tiny_mha`'s {shipped['mha']:,}; in the study MQA's MLP is {study.d_ff['mqa']} wide instead of "
    f"{study.d_ff['mla']}, and every model has {min(study.summary(s).params for s in ('mha', 'gqa', 'mqa')):,} to "
    f"{max(study.summary(s).params for s in ('mha', 'gqa', 'mqa')):,} parameters "
    f"(spread {study.param_spread():.2%}). Each of the {study.summary('mqa').n} seeds trains "
    f"{recipe['steps']:,} steps of {recipe['batch_size']} × {recipe['seq_len']} tokens.\n\n"
    f"- **MQA against MHA:** {mqa_gap.words()}; seed by seed "
    f"{', '.join(f'{d:+.3f}' for d in mqa_gap.paired)}.\n"
    f"- **GQA (2 K/V heads) against MHA:** {gqa_gap.words()}.\n\n"
    f"In the paper the dev BLEU moved by {100 * (paper_bleu['mqa'] - paper_bleu['mha']) / paper_bleu['mha']:+.1f}%; "
    f"here MQA's loss moved by {100 * mqa_gap.delta / study.summary('mha').mean:+.2f}%, for a cache "
    f"{mha_bpt / mqa_bpt:g}× smaller."
))

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "fragment"} tags=["hide-input"]
display(Markdown(
    f"**What the tiny regime cannot show.** These models have {study.summary('mha').params / 1e6:.2f}M parameters "
    f"and see {study.tokens_seen() / 1e6:.1f}M tokens in windows of {recipe['seq_len']}; DeepSeek-V2's dense "
    f"comparison above used models of {E.V2_DENSE_7B.arms[0].fact('# Params')} parameters, "
    f"{E.parse_count(E.V2_DENSE_7B.arms[0].fact('# Params')) / study.summary('mha').params:,.0f}× more, "
    f"scored on hard benchmarks rather than next-token loss. At {recipe['seq_len']} tokens a cache is never the "
    f"bottleneck and long-range recall, where one shared K/V head has the least room, is barely exercised; and "
    f"the models are still learning when they stop (MHA's sampled validation loss fell "
    f"{study.last_drop('mha'):.3f} nats over the last "
    f"{recipe['eval_every']} steps), so the study ranks how fast each scheme learns as much as where it would end. "
    f"What it does show: at equal parameters and with the seeds' luck measured, how big MQA's quality cost is "
    f"*next to* that luck."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 8. What it costs
#
# | | MHA | MQA |
# |---|---|---|
# | cached numbers per token and layer | $2 n_h d_h$ | $2 d_h$ ($n_h$× fewer) |
# | cache bytes read per decode step | $B\,t\,2 n_h d_h\, l$ bytes(dtype) | $n_h$× fewer |
# | attention multiply-adds per cached token | $2 n_h d_h$ | the same |
# | parameters in $W^K, W^V$ | $2\, d_{model}\, n_h d_h$ | $n_h$× fewer |
# | quality | reference | slightly lower |
#
# The numbers for the models of this chapter:

# %% slideshow={"slide_type": "-"}
tiny_mha, tiny_mqa = tiny["mha"], tiny["mqa"]
kv_params = {name: sum(p.numel() for blk in tiny[name].blocks for p in (blk.attn.w_k.weight, blk.attn.w_v.weight))
             for name in ("mha", "mqa")}
rows = ["| | MHA | MQA | MQA against MHA |", "|---|---|---|---|"]
rows.append(f"| tiny model: cache bytes per token (float32) | {mha_bpt:,.0f} | {mqa_bpt:,.0f} | "
            f"{mha_bpt / mqa_bpt:g}× less |")
rows.append(f"| tiny model: W^K and W^V parameters | {kv_params['mha']:,} | {kv_params['mqa']:,} | "
            f"{kv_params['mha'] / kv_params['mqa']:g}× fewer |")
rows.append(f"| tiny models, parameters matched: validation loss, mean ± std of {study.summary('mha').n} seeds | "
            f"{study.summary('mha').mean:.3f} ± {study.summary('mha').std:.3f} | {study.summary('mqa').mean:.3f} ± "
            f"{study.summary('mqa').std:.3f} | {mqa_gap.delta:+.3f} |")
for key in ("llama-2-7b", "falcon-7b"):
    spec = MODELS[key]
    a, c = (sizing.cache_bytes_per_token(spec, "bfloat16", s) for s in ("mha", "mqa"))
    rows.append(f"| {spec.name}: cache bytes per token (bfloat16) | {a:,} | {c:,} | {format_ratio(a / c)}× less |")
rows.append(f"| {llama2.name}: bytes read per step, {t_long // 1024}K tokens × batch {batch} | "
            f"{format_bytes(long_mha['total'])} | {format_bytes(long_mqa['total'])} | "
            f"{format_ratio(long_mha['total'] / long_mqa['total'])}× less |")
rows.append(f"| {llama2.name}: attention multiply-adds per cached token per layer | {macs['mha']:,} | "
            f"{macs['mqa']:,} | the same |")
rows.append(f"| paper (WMT14 EN-DE): dev BLEU, greedy | {paper_bleu['mha']:g} | {paper_bleu['mqa']:g} | "
            f"{paper_bleu['mqa'] - paper_bleu['mha']:+.1f} |")
rows.append(f"| paper: decoder time per output token (TPUv2) | {paper_mha_us:g} µs | {paper_mqa_us:g} µs | "
            f"{paper_mha_us / paper_mqa_us:.1f}× faster |")
display(Markdown("\n".join(rows)))

# %% [markdown] slideshow={"slide_type": "subslide"}
# MQA is all or nothing: n_h query heads and one K/V head. Chapter 6 makes the number of K/V heads a
# dial between MHA and MQA, and shows how to convert a trained MHA model instead of training again.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercises
#
# Replace each `None` with your answer and run the check below it. Worked solutions are in
# `notebooks/solutions/ch05.py`.
#
# **Exercise 1 (predict, then run).** Build an MHA layer and an MQA layer, both with $d_\text{model}$ = 512
# and 8 query heads of width 64. The MQA layer caches 8× less per token. How many times the MQA layer's
# parameters does the MHA layer have? Write your guess first; the check cell counts them.

# %% slideshow={"slide_type": "-"}
prediction_mqa_parameters = None  # a positive number: MHA parameters / MQA parameters

# %% slideshow={"slide_type": "-"}
print(ch05.check_prediction_mqa_parameters(prediction_mqa_parameters))

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Exercise 2.** Write causal multi-query attention as a function `(q, k, v) -> out` with
# `q` of shape (batch, n_heads, seq, d) and `k`, `v` of shape (batch, 1, seq, d). Hint: you do not need
# to copy `k` and `v` n_heads times; broadcasting does it. The library's attention functions are off
# limits (the check notices).

# %% slideshow={"slide_type": "-"}
answer_mqa_attention = None  # a function (q, k, v) -> out of shape (batch, n_heads, seq, d)

# %% slideshow={"slide_type": "-"}
print(ch05.check_mqa_attention(answer_mqa_attention))

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Exercise 3.** Take Llama-2-7B (6.738 billion parameters, 32 layers, 32 heads of width 128, MHA) in
# bfloat16, with 4096 tokens of context per sequence. From which batch size on does one decode step read
# at least as many bytes of K/V cache as of weights? Answer for MHA and for an MQA version of the same
# model, as a pair `(mha_batch, mqa_batch)`.

# %% slideshow={"slide_type": "-"}
answer_cache_dominates = None  # (mha_batch, mqa_batch)

# %% slideshow={"slide_type": "-"}
print(ch05.check_cache_dominates(answer_cache_dominates))
