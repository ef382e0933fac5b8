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
# # Chapter 16 · The paged KV cache and prefix sharing
#
# > **What you will learn:** how serving systems keep many sequences' caches in fixed-size pages with block
# > tables, how much memory contiguous reservations waste on simulated requests, how a shared prompt is copied
# > on write, and how DeepSeek's FP8 cache fills a page.
# >
# > **What it assumes:** [chapter 4](04_kv_caching.ipynb) (the KV cache); chapters
# > [7](07_multi_head_latent_attention.ipynb) and [10](10_deepseek_sparse_attention.ipynb) for the MLA and DSA
# > page layouts.
#
# Chapter 4 gave each sequence a cache that grows by one token per step. A server decodes **many**
# sequences at once, and none of them knows how long it will get. If each sequence's cache must be one
# contiguous buffer, the server has to reserve room for the longest answer it might write, and most of
# that room never holds a token: memory that could have served more requests sits empty.
#
# vLLM's **PagedAttention** (Kwon et al., *Efficient Memory Management for Large Language Model Serving
# with PagedAttention*, SOSP 2023) stores the cache the way an operating system stores a process's
# memory: in fixed-size **pages** found through a per-sequence **block table**, allocated one page at a
# time, shared between sequences with **copy-on-write**. This chapter builds that cache (`attnlab.paged`),
# checks that every scheme of the course decodes from it exactly as from the contiguous one, measures the
# waste with and without pages on simulated request streams, and lays DeepSeek-V3.2's MLA and DSA caches
# out in FlashMLA's 64-token pages.

# %% slideshow={"slide_type": "-"}
import matplotlib.pyplot as plt
import torch
from IPython.display import Markdown, display

from attnlab import cache_formats, costs, show_source, sizing
from attnlab.costs import AttentionShape
from attnlab.exercises import ch16
from attnlab.interactive import paged as paged_widgets
from attnlab.kv_cache import LayerCache
from attnlab.paged import MIXES, BlockPool, PagedLayerCache, PagedSequence, compare_policies
from attnlab.plots import COLORS
from attnlab.schemes import SCHEMES, VARIANTS

torch.manual_seed(0)
torch.set_num_threads(1)  # the layers here are tiny: more threads only add overhead
llama = sizing.MODELS["llama-3-8b"]
per_token = sizing.cache_bytes_per_token(llama)  # bytes of one token's cache, all layers, bfloat16
display(Markdown(
    f"The serving examples size the cache of {llama.name}: {llama.n_layers} layers × 2 × {llama.n_kv_heads} KV heads "
    f"× {llama.head_dim} numbers in bfloat16 = **{sizing.format_bytes(per_token)} per token**."
))

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### The idea, animated
#
# The chapter in one short animation. It plays here once the videos are rendered (`./course animations`);
# until then, and in static exports, the last frame stands in.

# %% slideshow={"slide_type": "-"}
from attnlab.media import show_animation

show_animation("PagedCacheScene")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 1. The problem: a cache reserved in advance
#
# A contiguous cache must know its size when it is made: growing it later means a new buffer and a copy,
# and in a GPU shared by hundreds of sequences a larger free run may not exist. Serving systems before
# vLLM therefore reserved, per request, one buffer of the **maximum** length the request could reach
# (PagedAttention §3). `LayerCache(capacity=...)` does the same. Of the reserved slots of a request that
# holds $n$ tokens now and will hold $n_{\text{final}}$ = prompt + output when done, the paper's Fig. 3
# names two kinds of waste:
#
# $$\text{reservation} = \min(r, n_{\text{final}}) - n, \qquad
#   \text{internal fragmentation} = \max(0,\ r - n_{\text{final}}),$$
#
# slots that this request's later tokens will fill, and slots no token will ever fill ($r$ slots reserved).

# %% slideshow={"slide_type": "-"}
MAX_LEN, PROMPT, OUTPUT = 2048, 200, 300  # a chat turn in a server that accepts up to 2048 tokens
cache = LayerCache(capacity=MAX_LEN)  # one layer's K and V, reserved at the maximum length
x = torch.randn(1, llama.n_kv_heads, PROMPT + 100, llama.head_dim, dtype=torch.bfloat16)  # 100 tokens generated so far
cache.update(k=x, v=x)
parts = costs.waste_parts(cache.seq_len, PROMPT + OUTPUT, cache.capacity)
display(Markdown(
    f"A request with a {PROMPT}-token prompt, {cache.seq_len - PROMPT} of its {OUTPUT} output tokens generated, in "
    f"a buffer of {MAX_LEN:,} tokens: one layer holds {sizing.format_bytes(cache.nbytes)} of tokens in "
    f"{sizing.format_bytes(cache.capacity_nbytes)} allocated. Of its {cache.capacity:,} slots, {cache.seq_len} hold "
    f"tokens, **{parts['reservation']}** wait for the rest of the answer (reservation) and **{parts['internal']:,}** "
    f"will never be used (internal fragmentation): over all {llama.n_layers} layers, "
    f"{sizing.format_bytes(parts['internal'] * per_token)} of {llama.name}'s cache reserved for nothing."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 2. Pages and block tables
#
# PagedAttention (§4.1-4.2) cuts every sequence's cache into **logical blocks** of $B$ tokens and stores
# each in any free **physical page** of one shared pool. A sequence's **block table** lists its pages; token
# position $p$ sits in
#
# $$\text{page} = \text{table}[\lfloor p / B \rfloor], \qquad \text{slot} = p \bmod B, \qquad
#   \text{flat slot} = \text{page} \cdot B + \text{slot}.$$
#
# A page is taken from the free list only when the sequence's last page is full, so a sequence never
# holds more than $B - 1$ empty slots, and nothing is reserved for tokens not yet generated. Below, three
# sequences grow in turns in a pool of 4-token pages; each one's pages end up scattered through the pool.

# %% slideshow={"slide_type": "-"}
pool = BlockPool(num_blocks=12, block_size=4)
seqs = {name: pool.new_sequence() for name in "abc"}
growth = {"a": (6, 3, 1), "b": (3, 5, 2), "c": (9, 1, 4)}  # tokens each sequence adds in three rounds
for round_ in range(3):
    for name, seq in seqs.items():
        n = growth[name][round_]
        seq[0].update(k=torch.randn(1, 1, n, 2), v=torch.randn(1, 1, n, 2))  # (b, heads, new tokens, d)
rows = ["| sequence | tokens | block table (logical block → page) | empty slots in its last page |",
        "|---|---|---|---|"]
for name, seq in seqs.items():
    table = ", ".join(f"{j} → {page}" for j, page in enumerate(seq.block_table))
    rows.append(f"| {name} | {seq.seq_len} | {table} | {costs.page_slack(seq.seq_len, pool.block_size)} |")
display(Markdown("\n".join(rows)))
display(Markdown(f"{pool.n_used} of {pool.num_blocks} pages in use, {pool.n_free} free. Token 9 of sequence a sits "
                 f"at (page, slot) = {seqs['a'].locate(9)}."))

# %% slideshow={"slide_type": "subslide"}
owner_colors = {"a": COLORS["query"], "b": COLORS["value"], "c": COLORS["latent"]}
fig, ax = plt.subplots(figsize=(9, 2.6))
for name, seq in seqs.items():
    for position in range(seq.seq_len):
        page, slot = seq.locate(position)
        ax.add_patch(plt.Rectangle((page + slot / 4, 0), 0.25, 1, color=owner_colors[name], ec="white", lw=1))
        ax.text(page + slot / 4 + 0.125, 0.5, str(position), ha="center", va="center", fontsize=7, color="white")
for page in range(pool.num_blocks):
    ax.add_patch(plt.Rectangle((page, 0), 1, 1, fill=False, ec="black", lw=1.5))
    ax.text(page + 0.5, 1.08, f"page {page}", ha="center", fontsize=8)
handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in owner_colors.values()]
ax.legend(handles, [f"sequence {n}" for n in owner_colors], loc="upper center", bbox_to_anchor=(0.5, -0.05), ncol=3,
          frameon=False)
ax.set_xlim(0, pool.num_blocks)
ax.set_ylim(0, 1.25)
ax.axis("off")
ax.set_title("The pool: each slot shows the position of the token it holds (blank: empty)", fontsize=10)
plt.show()

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### The code
#
# `PagedSequence` keeps the table and allocates: a new page only when the last one is full. The position
# lookup is the formula above:

# %% slideshow={"slide_type": "-"}
show_source(PagedSequence.locate, start="block, offset = divmod", stop="return self.block_table")

# %% slideshow={"slide_type": "-"}
show_source(PagedSequence.prepare_write, start="while len(self.block_table)", stop="self.block_table.append")

# %% [markdown] slideshow={"slide_type": "subslide"}
# `PagedLayerCache` is a layer's view of one sequence, with the interface of chapter 4's `LayerCache`
# (`seq_len`, `window`, `update(**named_tensors)`). `update` writes the new tokens into their slots
# through the block table, then gathers every cached token back into order, which is what the layer's
# attention reads. vLLM's kernel reads the pages in place instead of gathering them (§4.1); the numbers
# it computes are the same.

# %% slideshow={"slide_type": "-"}
show_source(PagedLayerCache.update, start="where = self.sequence.slots", stop="return tuple")

# %% slideshow={"slide_type": "-"}
show_source(PagedSequence.slots, start="table = torch.tensor", stop="return table")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 3. The same outputs as the contiguous cache
#
# A layer cannot tell the caches apart. Every scheme of the course, in float64, decodes a 6-token prompt
# and then 20 tokens one at a time, once with a `LayerCache` and once from 3-token pages scattered through
# a pool that other sequences used first. `tests/test_paged.py` repeats this for random page sizes and
# lengths (hypothesis), with two layers sharing one block table, and for forked sequences.

# %% slideshow={"slide_type": "-"}
SHAPE = AttentionShape(d_model=32, n_heads=4, head_dim=8, n_kv_heads=2, v_head_dim=8, kv_lora_rank=16,
                       qk_rope_head_dim=4, q_lora_rank=24, index_n_heads=2, index_head_dim=8, index_topk=8, n_layers=1)
rows = ["| scheme | caches | pages used | max abs difference, paged vs contiguous |", "|---|---|---|---|"]
for scheme in (*SCHEMES.values(), *VARIANTS.values()):
    torch.manual_seed(1)
    layer = scheme.build_layer(SHAPE).double().eval()
    if scheme.indexer:
        layer.use("gather")  # DSA: attend to the top-k tokens gathered out of the cache
    elif scheme.mode is not None:
        layer.use(scheme.mode)  # MLA: naive or absorbed decoding
    scattered = BlockPool(num_blocks=12, block_size=3)
    for page in [scattered.allocate() for _ in range(7)][::2]:
        scattered.release(page)  # pages 0, 2, 4, 6 freed: they come back after the unused ones
    paged_cache, contiguous = scattered.new_sequence()[0], LayerCache()
    x = torch.randn(1, 26, SHAPE.d_model, dtype=torch.float64)
    with torch.no_grad():
        diffs = [(layer(x[:, :6], cache=paged_cache).output - layer(x[:, :6], cache=contiguous).output).abs().max()]
        for t in range(6, 26):
            step = x[:, t:t + 1]
            diffs.append((layer(step, cache=paged_cache).output - layer(step, cache=contiguous).output).abs().max())
    rows.append(f"| {scheme.label} | {', '.join(scheme.caches)} | {paged_cache.sequence.block_table} | "
                f"{float(max(diffs)):.1e} |")
display(Markdown("\n".join(rows)))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 4. Sharing a prompt: fork and copy-on-write
#
# Parallel sampling (several answers to one prompt) and a system prompt that every request starts with
# mean many sequences with the same first tokens. With pages they can **share** them (§4.4): a fork copies
# the block table, not the pages, and adds one to each page's **reference count**. Full pages are never
# written again (the cache only appends), so they stay shared for good. The last, partly filled page is
# shared until the first write into it: that sequence copies the page to a fresh one and writes into the
# copy (**copy-on-write**), and the count of the original drops by one.

# %% slideshow={"slide_type": "-"}
def counts_table(pool: BlockPool, seqs: dict[str, PagedSequence], title: str) -> str:
    """A Markdown table: each sequence's block table, and the reference count of every page in use."""
    rows = [f"**{title}**", "", "| | block table | tokens |", "|---|---|---|"]
    rows += [f"| {name} | {seq.block_table} | {seq.seq_len} |" for name, seq in seqs.items()]
    used = {b: n for b, n in enumerate(pool.ref_counts) if n}
    rows += ["", "reference counts (page: count): " + ", ".join(f"{b}: {n}" for b, n in used.items())
             + f"; pages copied so far: {pool.copies}"]
    return "\n".join(rows)


share = BlockPool(num_blocks=16, block_size=4)
parent = share.new_sequence()
prompt = torch.randn(1, 10, SHAPE.d_model, dtype=torch.float64)
torch.manual_seed(2)
mha = SCHEMES["mha"].build_layer(SHAPE).double().eval()
with torch.no_grad():
    mha(prompt, cache=parent[0])  # the 10-token prompt: two full 4-token pages and one holding 2 tokens
    prompt_pages = list(parent.block_table)
    forks = {"parent": parent, "fork 1": parent.fork(), "fork 2": parent.fork()}
display(Markdown(counts_table(share, forks, "After two forks: the block table is copied, the pages are not")))

# %% slideshow={"slide_type": "subslide"}
answers = {name: torch.randn(1, 3, SHAPE.d_model, dtype=torch.float64) for name in forks}
max_diff = 0.0
with torch.no_grad():
    for name, seq in forks.items():  # each sequence decodes its own 3 tokens, against its own full copy
        own = LayerCache()
        mha(prompt, cache=own)
        for t in range(3):
            step = answers[name][:, t:t + 1]
            max_diff = max(max_diff, float((mha(step, cache=seq[0]).output - mha(step, cache=own).output).abs().max()))
display(Markdown(counts_table(share, forks, "After each wrote 3 tokens of its own")))
still_shared = [b for b in parent.block_table if share.ref_counts[b] == len(forks)]
partial = prompt_pages[-1]  # the prompt's partly filled last page
kept = [name for name, seq in forks.items() if partial in seq.block_table]
display(Markdown(
    f"Pages {still_shared} are still shared by all {len(forks)}. The partly filled page {partial} was copied by each "
    f"writer that found it shared ({share.copies} copies for {len(forks)} writers); {kept[0]}, holding it alone by "
    f"then, "
    f"wrote into it in place. Every sequence decoded exactly as from its own contiguous copy (largest difference "
    f"{max_diff:.1e}), with {share.n_used} pages in use instead of "
    f"{len(forks) * costs.pages_for(parent.seq_len, share.block_size)} without sharing."
))

# %% slideshow={"slide_type": "-"}
show_source(PagedSequence.prepare_write, start="for j in range(start // B", stop="self.block_table[j] = fresh")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 5. Fragmentation, measured
#
# How much does paging save on a real stream of requests? `attnlab.paged.simulate` runs a
# first-come-first-served server step by step: requests arrive (four per step on average, more than any
# policy can serve), wait, are admitted in arrival order while the one at the head fits, cache one token per
# step, and free their slots when done. Prompt lengths are uniform and output lengths log-uniform (many
# short answers, a few long ones) in three seeded **mixes**; the cache budget is 4 GiB of Llama-3-8B's
# cache. Three ways to reserve a request's cache:
#
# * **contiguous, max length**: the maximum (2,048 tokens) at admission;
# * **contiguous, actual length**: prompt + output at admission, an oracle that knows the output length
#   (no real server does), the best a contiguous cache could do;
# * **paged** with $B$ = 8, 16, 32, 128: $\lceil n/B \rceil$ pages for the $n$ tokens held now, one more when
#   the last is full. When no page is free, the request admitted last is **preempted**: its pages are freed
#   and it is recomputed later from its prompt (vLLM's recomputation, §4.5).
#
# Each step adds every request's empty reserved slots to the waste, split as in section 1. The simulator
# does not model the contiguous allocator's external fragmentation (gaps between buffers), which would
# only make the contiguous caches look worse.

# %% slideshow={"slide_type": "-"}
BUDGET_GIB = 4
budget = BUDGET_GIB * 2**30 // per_token  # token slots in the budget
results = {mix: compare_policies(mix, budget, n_requests=300) for mix in MIXES}
policy_colors = [COLORS["cache"], COLORS["muted"], COLORS["key"], COLORS["index"], COLORS["query"], COLORS["latent"]]
labels = [r.label for r in results["chat"]]
fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
width = 0.8 / len(labels)
for i, label in enumerate(labels):
    xs = [m + (i - (len(labels) - 1) / 2) * width for m in range(len(MIXES))]
    axes[0].bar(xs, [100 * results[mix][i].waste_fraction for mix in MIXES], width, color=policy_colors[i], label=label)
    axes[1].bar(xs, [results[mix][i].mean_running for mix in MIXES], width, color=policy_colors[i])
axes[0].set_ylabel("reserved slots holding no token (%)")
axes[1].set_ylabel("requests decoding at once (mean)")
for ax in axes:
    ax.set_xticks(range(len(MIXES)), list(MIXES))
    ax.grid(axis="y", alpha=0.3)
axes[0].set_title(f"Waste, {BUDGET_GIB} GiB of {llama.name}'s cache ({budget:,} token slots)", fontsize=10)
axes[1].set_title("Requests served at once in the same memory", fontsize=10)
fig.legend(loc="lower center", ncol=3, frameon=False)
plt.tight_layout(rect=(0, 0.12, 1, 1))  # room for the legend under the panels
plt.show()

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "subslide"} tags=["hide-input"]
chat = {r.label: r for r in results["chat"]}
worst, oracle, p16 = chat[labels[0]], chat[labels[1]], chat["paged, B = 16"]
display(Markdown(
    f"On the chat mix, a cache reserved at the maximum length leaves **{100 * worst.waste_fraction:.0f}%** of what it "
    f"reserves empty and decodes {worst.mean_running:.1f} requests at once on average; even the oracle wastes "
    f"{100 * oracle.waste_fraction:.0f}% (slots held for tokens still to come) and decodes {oracle.mean_running:.1f}. "
    f"Pages of 16 tokens waste **{100 * p16.waste_fraction:.1f}%** and decode {p16.mean_running:.1f} at once: "
    f"{p16.mean_running / worst.mean_running:.1f}× the max-length reservation, "
    f"{p16.mean_running / oracle.mean_running:.2f}× "
    f"the oracle, and the stream is served in {p16.steps:,} steps instead of {worst.steps:,}."
))
rows = ["| mix | cache reserved | waste | requests at once | peak | preempted | steps |",
        "|---|---|---|---|---|---|---|"]
for mix, res in results.items():
    rows += [f"| {mix} | {r.label} | {100 * r.waste_fraction:.1f}% | {r.mean_running:.1f} | {r.peak_running} | "
             f"{r.preemptions} | {r.steps:,} |" for r in res]
display(Markdown("\n".join(rows)))

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Page size: waste against work per page
#
# Larger pages waste more (up to $B - 1$ slots per sequence) but give a kernel longer contiguous runs to
# read and a shorter block table. Preemptions are the price of admitting on what a request holds *now*:
# when the admitted requests grow past the pool, some must start over. vLLM's default is $B = 16$, the size
# its ablation of block sizes found to balance the two (§7.2). The waste of each page size, on every mix:

# %% slideshow={"slide_type": "-"}
mix_colors = dict(zip(MIXES, (COLORS["query"], COLORS["value"], COLORS["latent"]), strict=True))
fig, ax = plt.subplots(figsize=(7, 3.2))
for mix, res in results.items():
    paged_res = [r for r in res if r.policy == "paged"]
    ax.plot([r.block_size for r in paged_res], [100 * r.waste_fraction for r in paged_res], marker="o", label=mix,
            color=mix_colors[mix])
ax.set_xscale("log", base=2)
ax.set_xticks([8, 16, 32, 128], ["8", "16", "32", "128"])
ax.set_xlabel("page size B (tokens)")
ax.set_ylabel("reserved slots holding no token (%)")
ax.grid(alpha=0.3)
ax.legend(frameon=False)
plt.show()

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 6. Prefix sharing: one system prompt, many requests
#
# $N$ requests that start with the same $P$-token system prompt and then hold $s_i$ tokens of their own
# need, with $B$-token pages (`costs.shared_prefix_pages`),
#
# $$\text{alone: } \sum_i \left\lceil \frac{P + s_i}{B} \right\rceil, \qquad
#   \text{shared: } \left\lfloor \frac{P}{B} \right\rfloor
#   + \sum_i \left\lceil \frac{(P \bmod B) + s_i}{B} \right\rceil,$$
#
# the full prompt pages once, and each request's copy of the partly filled last one.

# %% slideshow={"slide_type": "-"}
P, S, B = 1000, 200, 16  # a 1000-token system prompt, 200 tokens of each request's own, 16-token pages
ns = [1, 2, 4, 8, 16, 32, 64]
alone = [costs.shared_prefix_pages(P, [S] * n, B, share=False) for n in ns]
shared = [costs.shared_prefix_pages(P, [S] * n, B) for n in ns]
check_pool = BlockPool(num_blocks=512, block_size=B)  # the formula against the pool, for N = 8
system = check_pool.new_sequence()
system[0].update(k=torch.zeros(1, 1, P, 1))
requests = [system.fork() for _ in range(8)]
system.free()
for seq in requests:
    seq[0].update(k=torch.zeros(1, 1, S, 1))
fig, ax = plt.subplots(figsize=(7, 3.2))
ax.plot(ns, [a * B * per_token / 2**30 for a in alone], marker="o", color=COLORS["cache"], label="each request alone")
ax.plot(ns, [s * B * per_token / 2**30 for s in shared], marker="o", color=COLORS["key"], label="prompt pages shared")
ax.set_xscale("log", base=2)
ax.set_xticks(ns, [str(n) for n in ns])
ax.set_xlabel("requests N sharing the system prompt")
ax.set_ylabel(f"{llama.name} cache (GiB)")
ax.grid(alpha=0.3)
ax.legend(frameon=False)
plt.show()
display(Markdown(
    f"With N = 8 the pool holds **{check_pool.n_used} pages**, the formula says {shared[ns.index(8)]} (alone: "
    f"{alone[ns.index(8)]}); {check_pool.copies} pages were copied on write. At N = {ns[-1]} sharing keeps "
    f"{shared[-1]:,} pages instead of {alone[-1]:,}: {100 * (1 - shared[-1] / alone[-1]):.0f}% less memory, "
    f"{sizing.format_bytes((alone[-1] - shared[-1]) * B * per_token)} of {llama.name}'s cache freed for other requests."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 7. MLA and DSA caches in pages
#
# The pool does not care what a token's cache holds: `BlockPool` stores any named tensors, and the MLA and
# DSA layers above ran from it unchanged. Production kernels fix the byte layout. DeepSeek's FlashMLA
# kernel reads a paged cache with **64-token pages** (FlashMLA README: "Paged kvcache with block size of
# 64"), and for DeepSeek-V3.2 it stores each token's MLA entry in FP8 as 656 bytes: the 512-wide latent
# $c^{KV}$ in float8 e4m3, four float32 scales (one per 128 values) and the 64-wide RoPE key $k^R$ kept in
# bfloat16 (FlashMLA README, "FP8 KV cache"). DSA adds the lightning indexer's key: 128 e4m3 values and one
# float32 scale, 132 bytes (DeepSeek-V3.2-Exp `inference/model.py`), in a cache of its own. A page holds its
# tokens one after another, each token's bytes in the order above (`cache_formats.page_spans`): one row per
# token slot below.

# %% slideshow={"slide_type": "-"}
mla_fp8, index_fp8 = cache_formats.DEEPSEEK_V32_FP8_MLA, cache_formats.DEEPSEEK_V32_FP8_INDEX_KEY
PAGE = cache_formats.FLASHMLA_PAGE_TOKENS
part_colors = {"latent": COLORS["latent"], "scale": COLORS["muted"], "RoPE": COLORS["rope"], "index": COLORS["index"]}


def color_of(what: str) -> str:
    """The colour of a layout part, by the first word of its description ("latent c^KV, ...": latent)."""
    return next(c for key, c in part_colors.items() if what.startswith(key))


fig, axes = plt.subplots(1, 2, figsize=(12, 4.6), gridspec_kw={"width_ratios": [mla_fp8.bytes, index_fp8.bytes * 2]})
for ax, layout in zip(axes, (mla_fp8, index_fp8), strict=True):
    for span in cache_formats.page_spans(layout, PAGE):
        row_start = span.token * layout.bytes
        ax.barh(span.token, span.stop - span.start, left=span.start - row_start, height=1.0, color=color_of(span.what))
    ax.set_ylim(PAGE - 0.5, -0.5)
    ax.set_xlim(0, layout.bytes)
    ax.set_xlabel("byte within the token's entry")
    ax.set_title(f"{layout.name}\n{PAGE} tokens × {layout.bytes} B = {cache_formats.page_bytes(layout, PAGE):,} B",
                 fontsize=10)
axes[0].set_ylabel("token slot in the page")
handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in part_colors.values()]
names = ["latent c^KV, fp8 e4m3", "scales, float32", "RoPE key k^R, bfloat16", "index key k^I, fp8 e4m3"]
fig.legend(handles, names, loc="lower center", ncol=4, frameon=False)
plt.tight_layout(rect=(0, 0.07, 1, 1))  # room for the legend under the panels
plt.show()

# %% slideshow={"slide_type": "subslide"}
v32 = sizing.MODELS["deepseek-v3.2"]
mla_bf16 = cache_formats.uniform_layout(mla_fp8.numbers, torch.bfloat16, "latent and RoPE key")
index_bf16 = cache_formats.uniform_layout(index_fp8.numbers, torch.bfloat16, "index key")
formats = {"bfloat16": (mla_bf16, index_bf16), "FP8 (FlashMLA)": (mla_fp8, index_fp8)}
budgets = [10, 40]  # GiB of one GPU given to the cache
rows = ["| stored as | MLA entry | index key | one 64-token page, one layer (MLA + index) | one page in all "
        f"{v32.n_layers} layers | " + " | ".join(f"tokens in {g} GiB" for g in budgets) + " |",
        "|---" * (5 + len(budgets)) + "|"]
for name, (mla_layout, index_layout) in formats.items():
    page = cache_formats.page_bytes(mla_layout, PAGE) + cache_formats.page_bytes(index_layout, PAGE)
    fit = [cache_formats.tokens_in_budget((mla_layout, index_layout), v32.n_layers, g * 2**30, PAGE) for g in budgets]
    rows.append(f"| {name} | {mla_layout.bytes:,} B | {index_layout.bytes} B | {page:,} B | "
                f"{sizing.format_bytes(page * v32.n_layers)} | " + " | ".join(f"{t:,}" for t in fit) + " |")
display(Markdown("\n".join(rows)))
fp8_fit = cache_formats.tokens_in_budget((mla_fp8, index_fp8), v32.n_layers, 40 * 2**30, PAGE)
bf16_fit = cache_formats.tokens_in_budget((mla_bf16, index_bf16), v32.n_layers, 40 * 2**30, PAGE)
scale_bytes = sum(p.bytes for lay in (mla_fp8, index_fp8) for p in lay.parts if p.what.startswith("scale"))
display(Markdown(
    f"{v32.name} caches {mla_fp8.numbers} + {index_fp8.numbers} numbers per token and layer. In FP8 a page of "
    f"{PAGE} tokens across its {v32.n_layers} layers takes "
    f"{sizing.format_bytes((cache_formats.page_bytes(mla_fp8) + cache_formats.page_bytes(index_fp8)) * v32.n_layers)}, "
    f"so 40 GiB hold {fp8_fit:,} tokens, about {fp8_fit / v32.max_context:.0f} full {v32.max_context // 1024}K "
    f"contexts ({fp8_fit / bf16_fit:.2f}× the bfloat16 layout). The scales cost "
    f"{scale_bytes} bytes a token and "
    f"the RoPE key stays in bfloat16: the FP8 entry is "
    f"{mla_fp8.bytes / mla_bf16.bytes:.0%} of the bfloat16 one, not half."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 8. Explore: page size, request mix, memory
#
# Choose the request mix, the cache memory (GiB of Llama-3-8B's cache) and the page size. The table runs the
# simulator of section 5 on 300 requests (seed 0) and shows how many requests each reservation decodes at
# once, how much of what it reserves holds nothing, and how many requests paging had to preempt.

# %% slideshow={"slide_type": "-"}
explorer = paged_widgets.paging_explorer(mix="chat", gib=4, block_size=16)
explorer

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "subslide"} tags=["hide-input"]
explorer.mix.value, explorer.block_size.value = "long outputs", 128
long_max, _, long_paged = paged_widgets.run("long outputs", 4, 128)
display(Markdown(
    f"On the long-outputs mix with 128-token pages the explorer shows {100 * long_paged.waste_fraction:.1f}% of the "
    f"paged cache empty against {100 * long_max.waste_fraction:.0f}% at the maximum length, and "
    f"{long_paged.mean_running:.1f} requests at once against {long_max.mean_running:.1f}."
))
explorer.mix.value, explorer.block_size.value = "chat", 16

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 9. What it costs
#
# Paging changes where the bytes sit, not how many a token needs or how many FLOPs attention does. What it
# adds: a block table per sequence, an indirection on every read, a copy per shared page written, and, when
# memory runs out, recomputation.

# %% slideshow={"slide_type": "-"}
table_bytes = 4  # one int32 page id per page and sequence, as vLLM's block tables store it
page16 = 16 * per_token  # one 16-token page of Llama-3-8B, all layers
rows = ["| cost | Llama-3-8B, B = 16 | DeepSeek-V3.2, FP8, B = 64 |", "|---|---|---|"]
v32_page = (cache_formats.page_bytes(mla_fp8) + cache_formats.page_bytes(index_fp8)) * v32.n_layers
rows.append(f"| bytes per page (all layers) | {sizing.format_bytes(page16)} | {sizing.format_bytes(v32_page)} |")
rows.append(f"| block table per page | {table_bytes} B ({table_bytes / page16:.1e} of the page) | {table_bytes} B "
            f"({table_bytes / v32_page:.1e}) |")
rows.append(f"| most empty slots per sequence | {16 - 1} tokens = {sizing.format_bytes(15 * per_token)} | {PAGE - 1} "
            f"tokens = {sizing.format_bytes(v32_page * (PAGE - 1) // PAGE)} |")
rows.append(f"| copy-on-write of one shared page | {sizing.format_bytes(page16)} read + written | "
            f"{sizing.format_bytes(v32_page)} read + written |")
display(Markdown("\n".join(rows)))
gather = 2 * (PROMPT + OUTPUT) * per_token
display(Markdown(
    f"The gather in `PagedLayerCache.update` reads every cached token and writes it again in order before the layer "
    f"attends: for a {PROMPT + OUTPUT}-token sequence of {llama.name} that is {sizing.format_bytes(gather)} moved per "
    "decode step on top of the attention's own reads, a cost of this teaching version. A paged attention kernel "
    "reads the pages in place through the block table; the PagedAttention paper measured its kernel 20-26% slower "
    "than FasterTransformer's contiguous one (§7.1), a price paid back many times by the larger batches."
))

# %% [markdown] slideshow={"slide_type": "subslide"}
# On this CPU the teaching version's gather shows up in wall-clock time too:

# %% slideshow={"slide_type": "-"}
# NBVAL_IGNORE_OUTPUT
# Wall-clock timings vary from machine to machine and run to run, so this output is not checked.
import time

layer = SCHEMES["gqa"].build_layer(SHAPE).eval()
for name, make in (("contiguous", LayerCache), ("paged, B = 16", lambda: BlockPool(64, 16).new_sequence()[0])):
    cache = make()
    with torch.no_grad():
        layer(torch.randn(1, 512, SHAPE.d_model), cache=cache)
        start = time.perf_counter()
        for _ in range(200):
            layer(torch.randn(1, 1, SHAPE.d_model), cache=cache)
    print(f"{name:14}: {(time.perf_counter() - start) / 200 * 1e6:.0f} µs per decode step at ~600 tokens")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercises
#
# Each exercise has an answer cell (replace `None`) and a check cell. Worked solutions are in
# `notebooks/solutions/ch16.py`; try first.
#
# **Exercise 1.** A sequence's block table is `(7, 3, 9, 4)` and pages hold $B = 16$ tokens. In which
# physical page and at which slot is the token at position 37 (counting from 0)? Give a pair `(page, slot)`.

# %% slideshow={"slide_type": "-"}
answer_locate = None

# %% slideshow={"slide_type": "-"}
print(ch16.check_locate(answer_locate))

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Exercise 2.** A request with a 1,000-token prompt generates 300 tokens in 16-token pages. When it
# finishes, how many pages does it hold, and how many of their slots hold no token? Give two ints.

# %% slideshow={"slide_type": "-"}
answer_pages = None
answer_waste = None

# %% slideshow={"slide_type": "-"}
print(ch16.check_pages(answer_pages, answer_waste))

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Exercise 3, predict then run.** A 40-token prompt is cached in 16-token pages, forked into two
# sequences, and the prompt's own sequence is freed. Each fork then writes 10 tokens of its own, one fork
# after the other. **Predict** how many pages are in use at the end and how many pages were copied on
# write; then run the check, which runs it on a `BlockPool`.

# %% slideshow={"slide_type": "-"}
answer_fork_pages = None
answer_fork_copies = None

# %% slideshow={"slide_type": "-"}
print(ch16.check_fork_prediction(answer_fork_pages, answer_fork_copies))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Summary
#
# * A contiguous cache must be reserved before the answer's length is known; at the maximum length most of
#   it never holds a token, and even an oracle that knew every length holds room for tokens still to come.
# * Pages of $B$ tokens, found through a per-sequence block table (page $= \text{table}[\lfloor p/B \rfloor]$,
#   slot $= p \bmod B$), are allocated one at a time: at most $B - 1$ empty slots per sequence, and the
#   memory saved serves more requests at once.
# * Forks share pages with reference counts; only the first write into a shared, partly filled page copies
#   it. A shared system prompt is stored once.
# * Any scheme decodes from pages exactly as from one buffer: the layers of chapters 2-12 ran unchanged.
# * A page's bytes are the layout's: DeepSeek-V3.2's FP8 MLA entry and index key fill FlashMLA's 64-token
#   pages token after token, and what fits in a GPU follows from the page size in bytes.
