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
# # Chapter 19 · Selecting blocks instead of tokens
#
# > **What you will learn:** selecting blocks of tokens instead of single tokens (NSA, MoBA, Quest) and
# > evicting tokens (H2O, SnapKV), measured against DSA's token-level top-k at the same budget, and why
# > kernels prefer contiguous blocks.
# >
# > **What it assumes:** [chapter 10](10_deepseek_sparse_attention.ipynb) (DSA's indexer and top-k) and
# > [chapter 16](16_paged_kv_cache.ipynb) (pages).
#
# DeepSeek Sparse Attention (chapter 10) lets each query read $k$ **tokens**, wherever they sit in the
# cache. Most other sparse designs read **blocks**: the cache is cut into blocks of $B$ consecutive
# tokens, each block is scored with something cheap, and the best blocks are read whole. DeepSeek's own
# **NSA** (Native Sparse Attention, Yuan et al. 2025) selects blocks; Moonshot's **MoBA** (Lu et al. 2025)
# serves Kimi's long-context requests; MiniMax-M3 and Step-3.7-Flash score 128-token blocks with an
# indexer and keep the top 16 plus the local block. **Quest** (Tang et al. 2024) selects pages at decode
# time without training. A different family, **H2O** (Zhang et al. 2023) and **SnapKV** (Li et al. 2024),
# does not choose what to read but what to **keep**, evicting the rest of the cache for good.
#
# This chapter implements all of them in `attnlab.block_sparse`, runs them on the tiny model's attention
# over real text at the same token budget as DSA's top-$k$, and counts what a kernel reads.

# %% slideshow={"slide_type": "-"}
import matplotlib.pyplot as plt
import torch
from IPython.display import Markdown, display

from attnlab import block_sparse as bs
from attnlab import cache_formats, corpus, costs, show_source
from attnlab.exercises import ch19
from attnlab.gqa import grouped_attention
from attnlab.interactive import block_sparse as explorer
from attnlab.interactive.attention import layer_input
from attnlab.model import load_checkpoint
from attnlab.tokenization import load_tokenizer

torch.manual_seed(0)
torch.set_num_threads(1)  # the tiny model's matrices are too small to gain from more threads
model = load_checkpoint("tiny_gqa").eval()  # float32
cfg = model.config
val_ids = load_tokenizer().encode(corpus.load_text("val"))
windows = torch.tensor([val_ids[i:i + cfg.max_seq_len] for i in (0, 4000, 8000, 12000)])  # (4, 256)
with torch.no_grad():
    qkv = [model.blocks[layer].attn.project(layer_input(model, windows, layer)) for layer in range(cfg.n_layers)]
COLOR = explorer.METHOD_COLORS
LABEL = bs.METHOD_LABELS
display(Markdown(
    f"The measurements run the tiny GQA model (`tiny_gqa`: {cfg.n_layers} layers, {cfg.n_heads} query heads sharing "
    f"{cfg.n_kv_heads} KV heads of width {cfg.d_model // cfg.n_heads}) on {windows.shape[0]} windows of "
    f"{windows.shape[1]} validation tokens: each layer's queries, keys and values, RoPE applied."
))

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### The idea, animated
#
# The chapter in one short animation. It plays here once the videos are rendered (`./course animations`);
# until then, and in static exports, the last frame stands in.

# %% slideshow={"slide_type": "-"}
from attnlab.media import show_animation

show_animation("BlockSelectionScene")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 1. Blocks and what a query may see
#
# Cut the $n$ cached tokens into $\lceil n/B \rceil$ blocks, block $j$ holding tokens $jB, \dots, jB+B-1$
# (the last one maybe partial). Query $p$ may choose block $j$ only if it starts at or before $p$:
#
# $$\text{visible}(p, j) = [\, jB \le p \,] = [\, j \le c(p) \,], \qquad c(p) = \lfloor p / B \rfloor ,$$
#
# and of its own block $c(p)$ it reads only the tokens up to $p$. A selection of blocks then becomes a token
# mask: token $s$ is read iff its block $\lfloor s/B \rfloor$ is chosen and $s \le p$. Every method below ends
# in such a mask, so one function, `sparse_attention`, attends over any of them.

# %% slideshow={"slide_type": "-"}
show_source(bs.causal_block_mask, start="current = ", stop="return torch.arange")

# %% slideshow={"slide_type": "-"}
show_source(bs.block_token_mask, start="tokens = chosen", stop="return (tokens")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 2. MoBA: a mean key per block
#
# MoBA (*Mixture of Block Attention*, §2.2) treats blocks like experts of a mixture: a gate scores block
# $j$ by the query against the mean of its keys,
#
# $$s_{j} = q \cdot \bar k_j, \qquad \bar k_j = \operatorname{mean}_{s \in \text{block } j} k_s ,$$
#
# and each query head attends to its top-$k$ blocks. Causality is enforced at the block level: a future
# block gets $-\infty$, and the query's **own** block is always chosen (its gate is set to $+\infty$), with
# the causal mask inside it.

# %% slideshow={"slide_type": "-"}
show_source(bs.moba_scores, start="k_bar = ", stop="return s.masked_fill")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 3. Quest: a bound per block
#
# Quest (§3.3) scores **pages** at decode time, with no training. For each page it keeps the channel-wise
# minimum $m_j$ and maximum $M_j$ of its keys. For any key $k$ in the page, $q_i k_i \le \max(q_i m_{j,i},\,
# q_i M_{j,i})$ on every channel, so
#
# $$U_j = \sum_i \max(q_i m_{j,i},\ q_i M_{j,i}) = q^+ \cdot M_j + q^- \cdot m_j \ \ge\ q \cdot k_s
#   \quad \text{for every } s \text{ in page } j,$$
#
# with $q^+ = \max(q, 0)$, $q^- = \min(q, 0)$: two matrix products. A page whose bound is small cannot hold a
# large score; Quest reads the top-$k$ pages by $U_j$.

# %% slideshow={"slide_type": "-"}
show_source(bs.quest_upper_bound, start="q_pos, q_neg = ", stop="return torch.einsum")

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "-"} tags=["hide-input"]
q2, k2, _ = qkv[2]
m2, M2 = bs.quest_bounds(k2, 16)  # (4, 2, 16 blocks, 16)
U = bs.quest_upper_bound(q2, *(x.repeat_interleave(cfg.n_heads // cfg.n_kv_heads, dim=1) for x in (m2, M2)))
dots = torch.einsum("bhqd,bhsd->bhqs", q2, k2.repeat_interleave(cfg.n_heads // cfg.n_kv_heads, dim=1))
best = dots.view(*dots.shape[:3], -1, 16).amax(-1)  # (4, 8, 256, 16): the best q · k of each block
display(Markdown(
    f"On layer 2 of the tiny model (blocks of 16, every query against every block): the bound is above the block's "
    f"best dot product in **{float((U >= best - 1e-4).double().mean()):.0%}** of {best.numel():,} cases, and on "
    f"average {float((U - best).mean()):.1f} above it, where the best dot products spread over "
    f"{float(best.std()):.1f} (one standard deviation): a safe but loose ranking."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 4. NSA: three branches and a gate
#
# NSA (§3.3) replaces one attention by three over different keys and values and mixes them with gates
# $g^c_t = \sigma(\text{MLP}(x_t))$ (Eq. 5):
#
# $$o_t = g^{\text{cmp}}_t\,\text{Attn}(q_t, \tilde K^{\text{cmp}}, \tilde V^{\text{cmp}})
#       + g^{\text{slc}}_t\,\text{Attn}(q_t, \tilde K^{\text{slc}}, \tilde V^{\text{slc}})
#       + g^{\text{win}}_t\,\text{Attn}(q_t, \tilde K^{\text{win}}, \tilde V^{\text{win}})$$
#
# * **compressed**: one key and value per block, $\tilde k_j = \varphi(k_{jB:(j+1)B})$ (Eq. 7; $\varphi$ is a
#   learned MLP, the mean here, for want of trained NSA weights);
# * **selected**: the tokens of the top-$n$ blocks, scored by the compressed branch's **own** attention
#   $p^{\text{cmp}} = \operatorname{softmax}(q\tilde K^\top)$ (Eq. 8), summed over the query heads of a GQA group
#   so the whole group reads one set of blocks (Eq. 10), with 1 initial and 2 local blocks always in (§4.1);
# * **sliding**: the last $w$ tokens.
#
# The scores come free from the compressed branch. The paper chose blocks for the hardware (§3.3.2): GPUs
# read contiguous blocks at a much higher throughput than rows at random indices, and blockwise computation
# keeps the Tensor Cores busy.

# %% slideshow={"slide_type": "-"}
show_source(bs.nsa_scores, start="p_cmp = softmax", stop="return p_slc.masked_fill")

# %% slideshow={"slide_type": "subslide"}
show_source(bs.nsa_attention, start="g = gates.unsqueeze", stop="return g[")

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "-"} tags=["hide-input"]
q64, k64, v64 = (x[:1].double() for x in qkv[2])  # one window of layer 2, float64
dense64, _ = grouped_attention(q64, k64, v64, causal=True)
gates = torch.zeros(*q64.shape[:3], 3, dtype=torch.float64)
only_selected, only_window = gates.clone(), gates.clone()
only_selected[..., 1], only_window[..., 2] = 1.0, 1.0
n_all = bs.n_blocks(q64.shape[2], 16)
diff_slc = (bs.nsa_attention(q64, k64, v64, only_selected, 16, top_n=n_all, window=8) - dense64).abs().max()
diff_win = (bs.nsa_attention(q64, k64, v64, only_window, 16, top_n=3, window=q64.shape[2]) - dense64).abs().max()
display(Markdown(
    f"Checks in float64 on layer 2: with only the selected branch open and all {n_all} blocks selectable, NSA equals "
    f"dense attention to {float(diff_slc):.1e}; with only a window as long as the text, to {float(diff_win):.1e}. "
    "`tests/test_block_sparse.py` checks this for every method on random shapes (hypothesis)."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 5. Eviction: H2O and SnapKV
#
# The methods above keep the whole cache and choose what to **read**. Eviction methods choose what to
# **keep**; a token they drop is gone for every later query, and the cache itself shrinks to the budget.
#
# * **H2O** (§3-4, Algorithm 1) keeps the $k/2$ most recent tokens and the "heavy hitters": the tokens with the
#   largest attention accumulated over the queries so far. At every decode step the weakest older token goes.
# * **SnapKV** (§4.2) decides once, at the end of the prompt: the last $w$ prompt queries (the observation
#   window) vote, $v_s = \sum_{i \in \text{window}} a_{i,s}$; the votes are smoothed by an average pool of
#   width 5 (its reference code's `kernel_size=5`), and the top $k - w$ earlier tokens are kept with the window.
#
# Here each query position is treated as a decode step (H2O) or as the end of a prompt (SnapKV), so that one
# pass gives a selection for every query.

# %% slideshow={"slide_type": "-"}
show_source(bs.h2o_mask, start="held[..., p] = True", stop="acc = acc + a")

# %% slideshow={"slide_type": "-"}
show_source(bs.snapkv_mask, start="votes = csum", stop="keep = token_topk_mask")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 6. The selections, side by side
#
# One head of layer 2 on the first 256 validation tokens: every query (rows) over the keys (columns), at a
# budget of 64 tokens, blocks of 16.
# Grey: visible but not read; colour: read. Token top-$k$ per head is the best any 64 tokens can do: for one
# query the softmax grows with $q \cdot k$, so the 64 largest scores hold the most attention. DSA shares one
# set across all heads of the layer: the top 64 of the heads' summed attention, the target its lightning
# indexer is trained to imitate (chapter 12); a trained indexer approaches it from below (chapter 10 measures
# the tiny DSA model's own).

# %% slideshow={"slide_type": "-"}
from matplotlib.colors import ListedColormap

LAYER, HEAD, BUDGET, BLOCK = 2, 0, 64, 16
fig, axes = plt.subplots(2, 4, figsize=(12, 7), layout="constrained")
for ax, method in zip(axes.flat, bs.METHODS, strict=False):
    mask = explorer.selection(method, BLOCK, BUDGET, LAYER)[HEAD]  # (256, 256)
    picture = torch.ones_like(mask, dtype=torch.long).tril() + mask.long()  # 0 future, 1 visible, 2 read
    ax.imshow(picture.numpy(), cmap=ListedColormap(["white", "#E4E4E4", COLOR[method]]), vmin=0, vmax=2,
              interpolation="nearest")
    held = explorer.measures(method, BLOCK, BUDGET, LAYER, HEAD)["recall"]
    ax.set_title(f"{LABEL[method]}\nholds {held:.0%}", fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
axes.flat[-1].axis("off")
axes.flat[-1].text(0, 0.5, "rows: queries\ncolumns: keys\ngrey: visible, not read\ncolour: read", fontsize=10,
                   va="center")
plt.show()

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 7. The same budget, measured
#
# For each layer, budget and method: the share of each query's dense softmax mass that the selected tokens hold
# (recall), and the output error $\lVert o_{\text{sparse}} - o \rVert / \lVert o \rVert$ against dense
# attention, averaged over the 4 windows, 8 heads and every query that sees more tokens than the budget.
# Blocks of 16 tokens (the tiny model's 256 tokens make 16 blocks, as 8K tokens make 16 of MoBA's
# 512-token blocks).

# %% slideshow={"slide_type": "-"}
BUDGETS = (48, 64, 128)
measured = {}  # (method, budget) -> [SelectionMeasure per layer]
with torch.no_grad():
    for q, k, v in qkv:
        for m in bs.measure_selections(q, k, v, budgets=BUDGETS, block_size=BLOCK):
            measured.setdefault((m.method, m.budget), []).append(m)


def mean_of(method: str, budget: int, field: str) -> float:
    """The mean over layers of one measured field."""
    runs = measured[(method, budget)]
    return sum(getattr(m, field) for m in runs) / len(runs)


fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
for method in bs.METHODS:
    style = "-" if method in bs.BLOCK_METHODS else ("--" if method in ("h2o", "snapkv") else ":")
    for ax, field in zip(axes, ("recall", "error"), strict=True):
        ax.plot(BUDGETS, [mean_of(method, b, field) for b in BUDGETS], style, marker="o", color=COLOR[method],
                label=LABEL[method])
axes[0].set_ylabel("share of the dense attention held")
axes[1].set_ylabel("relative output error")
for ax in axes:
    ax.set_xlabel(f"budget (tokens of {cfg.max_seq_len})")
    ax.set_xticks(BUDGETS)
    ax.grid(alpha=0.3)
axes[1].legend(frameon=False, fontsize=8, loc="upper right")
plt.tight_layout()
plt.show()

# %% slideshow={"slide_type": "subslide"}
rows = ["| method | " + " | ".join(f"held at {b}" for b in BUDGETS) + " | " + " | ".join(
    f"error at {b}" for b in BUDGETS) + " | held at 64, layers 0-3 |", "|---" * (2 + 2 * len(BUDGETS)) + "|"]
for method in bs.METHODS:
    per_layer = ", ".join(f"{m.recall:.0%}" for m in measured[(method, 64)])
    rows.append(f"| {LABEL[method]} | " + " | ".join(f"{mean_of(method, b, 'recall'):.1%}" for b in BUDGETS) + " | "
                + " | ".join(f"{mean_of(method, b, 'error'):.3f}" for b in BUDGETS) + f" | {per_layer} |")
display(Markdown("\n".join(rows)))

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "-"} tags=["hide-input"]
NAME = {"token": "token top-$k$", "dsa": "DSA", "nsa": "NSA", "moba": "MoBA", "quest": "Quest", "h2o": "H2O",
        "snapkv": "SnapKV"}
block_best = max(bs.BLOCK_METHODS, key=lambda m: mean_of(m, 64, "recall"))
evict_best = max(("h2o", "snapkv"), key=lambda m: mean_of(m, 64, "recall"))
worst_layer = {min(range(cfg.n_layers), key=lambda i: measured[(m, 64)][i].recall) for m in bs.METHODS}
layers_note = (f"Layer {worst_layer.pop()} spreads its attention most and loses most under every method. "
               if len(worst_layer) == 1 else "")
display(Markdown(
    f"At 64 tokens the per-head token top-$k$ holds {mean_of('token', 64, 'recall'):.1%} of the attention, DSA's "
    f"shared set {mean_of('dsa', 64, 'recall'):.1%}, the best block method ({NAME[block_best]}) "
    f"{mean_of(block_best, 64, 'recall'):.1%} and the best eviction ({NAME[evict_best]}) "
    f"{mean_of(evict_best, 64, 'recall'):.1%}. Blocks pay for contiguity with the weak tokens they carry along; "
    f"the gap narrows as the budget grows (at 128: {mean_of('token', 128, 'recall'):.1%} against "
    f"{mean_of(block_best, 128, 'recall'):.1%}). " + layers_note
    + f"NSA at 48 tokens is only its 3 forced blocks (1 initial + 2 local = 48 tokens): "
    f"{mean_of('nsa', 48, 'recall'):.1%}; its compression $\\varphi$ is an untrained mean here, where NSA learns it "
    "with the model. H2O's evictions are final: a token dropped early cannot come back when a later query needs it."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 8. The kernel argument: contiguous blocks against gathered rows
#
# Two selections of the same $k$ tokens move the same bytes. What differs is **how many separate pieces**
# the kernel must fetch. Token-level top-$k$ reads up to $k$ rows, each at its own address (a gather);
# block selection reads $k/B$ runs of $B$ consecutive rows, each one tile that a kernel loads whole into
# shared memory and feeds to the tensor cores (NSA §3.3.2 and §3.4). And under GQA, when each query head
# picks its own tokens, a KV head must deliver the **union** of its group's picks; NSA shares one selection
# per group so a block is loaded once for the whole group. Measured on the tiny model at a budget of 64:

# %% slideshow={"slide_type": "-"}
group = cfg.n_heads // cfg.n_kv_heads
rows = ["| method | tokens read per query head | separate runs per query head | tokens one KV head delivers to "
        f"its {group} query heads |", "|---|---|---|---|"]
for method in bs.METHODS:
    rows.append(f"| {LABEL[method]} | {mean_of(method, 64, 'tokens'):.1f} | {mean_of(method, 64, 'segments'):.1f} | "
                f"{mean_of(method, 64, 'group_tokens'):.1f} |")
display(Markdown("\n".join(rows)))

# %% slideshow={"slide_type": "subslide"}
entry = cache_formats.DEEPSEEK_V32_FP8_MLA.bytes  # one token's MLA entry in FlashMLA's FP8 layout
K_V32, NSA_BLOCK = 2048, 64  # DSA's top-k in V3.2; NSA's selection block l' (§4.1)
gather, blocks = costs.selection_read(K_V32, 1, entry), costs.selection_read(K_V32, NSA_BLOCK, entry)
rows = ["| read | tokens | bytes | separate reads | bytes per read |", "|---|---|---|---|---|"]
for name, r in (("token top-k (DSA)", gather), (f"blocks of {NSA_BLOCK}", blocks)):
    rows.append(f"| {name} | {r['tokens']:,} | {r['bytes']:,} | {r['segments']:,} | {r['bytes_per_segment']:,} |")
display(Markdown("\n".join(rows)))

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "-"} tags=["hide-input"]
display(Markdown(
    f"At DeepSeek-V3.2's $k$ = {K_V32:,} tokens of {entry}-byte FP8 entries, a decode step reads "
    f"{gather['bytes'] / 2**20:.2f} MiB per layer either way: as {gather['segments']:,} separate rows, or as "
    f"{blocks['segments']} runs of {blocks['bytes_per_segment'] / 1024:.0f} KiB. Each row of DSA is large enough "
    f"({entry} bytes) to use the memory bus well, which is why DeepSeek can afford token-level gathers with a "
    f"kernel written for them (FlashMLA's sparse kernel); with a head's 128-wide bfloat16 key (256 bytes) per row, "
    f"or with heads choosing separately, the gather's overhead grows. On the tiny model, per-head selection makes a "
    f"KV head deliver {mean_of('moba', 64, 'group_tokens'):.0f} tokens for MoBA at a budget of 64, against "
    f"{mean_of('nsa', 64, 'group_tokens'):.0f} for NSA's shared blocks."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 9. Explore: method, block size, budget, layer, head
#
# Pick a method, a block size and a budget (only the budgets the method can spend in whole blocks are
# offered; NSA needs its 3 forced blocks), a layer and a head. Left: which tokens every query reads; right:
# the last query's dense attention, the tokens read in colour. The table compares with token top-$k$.

# %% slideshow={"slide_type": "-"}
widget = explorer.block_selection_explorer(method="moba", block_size=16, budget=64, layer=2, head=0)
widget

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "subslide"} tags=["hide-input"]
widget.method.value = "quest"
quest_here = explorer.measures("quest", 16, 64, 2, 0)
widget.block_size.value = 8
quest_small = explorer.measures("quest", 8, 64, 2, 0)
display(Markdown(
    f"Setting the explorer to Quest: with blocks of 16 on layer 2, head 0, it holds {quest_here['recall']:.1%} in "
    f"{quest_here['segments']:.1f} runs; with blocks of 8 (twice the blocks for the same budget) "
    f"{quest_small['recall']:.1%} in {quest_small['segments']:.1f} runs. Smaller blocks select more finely and read "
    "in more pieces."
))
widget.method.value, widget.block_size.value = "moba", 16

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 10. What it costs
#
# What each method adds to the cache, what it spends choosing, and what it reads, per query and layer, at a
# context of $L$ = 128K tokens with one scorer of $H = 64$ heads of width $d = 128$ (DSA's indexer shape) and
# blocks of $B = 64$:

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "-"} tags=["hide-input"]
L, H, D, B64 = 128 * 1024, 64, 128, 64
score = {kind: costs.selection_score_macs(L, B64, D, H, kind) for kind in costs.SELECTION_SCORERS}
rows = ["| method | cached besides K and V | scoring MACs per query | reads |", "|---|---|---|---|",
        f"| DSA | one index key ($d^I$ numbers) per token | {score['token']:,} (every token) | top-$k$ rows, "
        "scattered |",
        f"| MoBA | nothing (mean keys recomputed or 1 per block: {1 / B64:.3f} keys per token) | {score['mean']:,} | "
        "top blocks, contiguous |",
        f"| Quest | $m_j, M_j$: {2 / B64:.3f} key-sized vectors per token | {score['bounds']:,} | top pages, "
        "contiguous |",
        f"| NSA | compressed $\\tilde k, \\tilde v$ per block (stride 16 in the paper: 1/16 of K and V) | "
        f"{score['mean']:,} (its compressed branch's own scores) | compressed + top blocks + window |",
        "| H2O, SnapKV | less: the cache is cut to the budget | accumulated or window attention | what is kept |"]
display(Markdown("\n".join(rows)))

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "-"} tags=["hide-input"]
display(Markdown(
    f"Scoring blocks instead of tokens divides the scorer's work by $B$: {score['token'] / score['mean']:.0f}× fewer "
    f"multiply-adds here ({score['token'] / 1e9:.2f} G against {score['mean'] / 1e6:.1f} M per query), which is why a "
    "block method can score with the full query heads while DSA needs its small, FP8 lightning indexer. Attention "
    "itself costs the same for any selection of $k$ tokens: $k$ dot products and $k$ weighted values per head. "
    "Eviction is the only family that shrinks the cache; its price is recall that cannot be recovered."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercises
#
# Each exercise has an answer cell (replace `None`) and a check cell. Worked solutions are in
# `notebooks/solutions/ch19.py`; try first.
#
# **Exercise 1, MoBA's causal block mask.** A cache of $T = 10$ tokens is cut into blocks of $B = 4$. Write
# the $(10, 3)$ boolean table whose row $p$ marks the blocks query $p$ may route to (a nested list or a tensor).

# %% slideshow={"slide_type": "-"}
answer_block_mask = None

# %% slideshow={"slide_type": "-"}
print(ch19.check_block_mask(answer_block_mask))

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Exercise 2, Quest's bound.** A page holds the keys $(0.5, 1, -1)$, $(2, -0.5, 0)$ and $(-1, 0.5, 2)$. What
# score $U$ does Quest give it for the query $q = (1, -2, 0.5)$? Give a number.

# %% slideshow={"slide_type": "-"}
answer_bound = None

# %% slideshow={"slide_type": "-"}
print(ch19.check_quest_bound(answer_bound))

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Exercise 3, predict then run.** On layer 2 of the tiny model, at a budget of 64 tokens with blocks of 16,
# **predict** which holds more of the dense attention: per-head token top-$k$ (`"token"`) or MoBA (`"moba"`).
# Then: can any block method, at some budget, hold **more** than per-head token top-$k$ (`True` or `False`)?
# The check runs it on a window of validation text and explains.

# %% slideshow={"slide_type": "-"}
answer_more = None
answer_ever = None

# %% slideshow={"slide_type": "-"}
print(ch19.check_recall_prediction(answer_more, answer_ever))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Summary
#
# * Block methods cut the cache into blocks of $B$ tokens and score each block cheaply: MoBA by the query
#   against the block's mean key, Quest by an upper bound from per-channel key minima and maxima, NSA by its
#   compressed branch's own attention, shared across a GQA group.
# * Causality at the block level: a query sees the blocks starting at or before it, and reads its own block
#   only up to itself. With a budget covering every token, every method is dense attention.
# * At the same token budget, token top-$k$ per head holds the most attention any selection can; blocks give
#   some of it up, less as the budget grows. Eviction (H2O, SnapKV) also shrinks the cache, and what it drops is
#   gone for good.
# * The kernel's view: the same bytes, in $k/B$ contiguous runs instead of $k$ scattered rows, one set of blocks
#   per GQA group instead of one per head, and a scorer $B$ times cheaper.
