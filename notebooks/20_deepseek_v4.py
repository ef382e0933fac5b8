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
# # Chapter 20 · DeepSeek-V4: compressed sparse attention
#
# **What you will learn:** how DeepSeek-V4 (April 2026) caches a million tokens in about a tenth of
# DeepSeek-V3.2's memory: one 512-wide vector per token that is both key and value, learned attention sinks,
# a 128-token window of raw tokens in every layer, and two kinds of compressed entries read in the same
# softmax: **CSA** (4 tokens pooled into one entry, a lightning indexer picking the top-k) and **HCA** (128
# tokens into one, all read); the layer schedules of V4-Flash and V4-Pro, the grouped output projection, the
# FP8 and FP4 cache formats, and the published comparison with V3.2 reproduced byte by byte.
#
# **What it assumes:** chapters 5 (MQA), 7-9 (MLA and its decoupled RoPE key), 10 (DSA's lightning indexer
# and top-k) and 11 (FP8 blocks and scales).

# %% slideshow={"slide_type": "-"}
import math

import matplotlib.pyplot as plt
import torch
from IPython.display import Markdown, display

from attnlab import cache_formats, costs, show_source, sizing
from attnlab.exercises import ch20
from attnlab.interactive import v4 as v4_widgets
from attnlab.plots import COLORS
from attnlab.v4 import (
    CompressedIndexer,
    DeepSeekV4Attention,
    GatedPoolingCompressor,
    V4AttentionConfig,
    from_transformers,
    pool_windows,
    rope_tail,
    sink_softmax,
)

torch.manual_seed(0)
torch.set_num_threads(1)  # the layers here are tiny: more threads only add overhead
F64 = torch.float64
FLASH, PRO = costs.DEEPSEEK_V4_FLASH, costs.DEEPSEEK_V4_PRO
TYPE_COLORS = {"sliding": COLORS["muted"], "csa": COLORS["index"], "hca": COLORS["latent"]}
fmt = sizing.format_bytes

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### The idea, animated
#
# The chapter in one short animation. It plays here once the videos are rendered (`./course animations`);
# until then, and in static exports, the last frame stands in.

# %% slideshow={"slide_type": "-"}
from attnlab.media import show_animation

show_animation("CompressedSparseScene")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 1. From V3.2 to V4
#
# DeepSeek-V3.2 (chapters 7-12) caches, in each of its 61 layers, one MLA entry per token, the 512-wide
# latent $c^{KV}$ and the 64-wide RoPE key $k^R$, and one 128-wide index key for DSA's lightning indexer,
# which picks the top 2048 **tokens** for each query. Its cache grows by the same amount for every token in
# every layer. DeepSeek-V4 ("DeepSeek-V4: Towards Highly Efficient Million-Token Context Intelligence", §2.3)
# keeps only the last $W = 128$ raw tokens per layer and replaces the rest by **compressed entries**:
#
# | layer type (`compress_ratios`) | raw tokens | compressed entries | read by a query |
# |---|---|---|---|
# | sliding (0) | last 128 | none | the window |
# | CSA (4) | last 128 | one per 4 tokens, plus an index key each | the window + the indexer's top-k entries |
# | HCA (128) | last 128 | one per 128 tokens | the window + every entry |
#
# The released configs (numbers read from `attnlab.costs`, which cites the `config.json` files):

# %% slideshow={"slide_type": "-"}
v32 = sizing.MODELS["deepseek-v3.2"]
rows = ["| | layers (sliding / CSA / HCA) | hidden $d$ | query heads $n_h$ | $d_c$ (query latent) | "
        "output groups $g$ × $d_g$ | indexer heads × width, top-k |", "|---|---|---|---|---|---|---|"]
for m in (FLASH, PRO):
    n = m.layer_counts()
    rows.append(f"| {m.name} | {m.n_layers} ({n['sliding']} / {n['csa']} / {n['hca']}) | {m.d_model:,} | {m.n_heads} | "
                f"{m.q_lora_rank:,} | {m.o_groups} × {m.o_lora_rank:,} | {m.index_n_heads} × {m.index_head_dim}, "
                f"{m.index_topk:,} entries = {4 * m.index_topk:,} tokens' worth |")
rows.append(f"| {v32.name} | {v32.n_layers} (MLA + DSA) | {v32.hidden_size:,} | {v32.n_heads} | "
            f"{v32.q_lora_rank:,} | – | {v32.index_n_heads} × {v32.index_head_dim}, {v32.index_topk:,} tokens |")
display(Markdown("\n".join(rows)))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 2. The backbone: one vector is the key and the value
#
# Every V4 layer is multi-query attention (chapter 5) with a single KV "head" $c = 512$ wide, and that one
# vector serves as the key **and** the value. There is no up-projection as in MLA: the cache holds exactly
# what attention reads.
#
# $$c^Q_t = \mathrm{RMSNorm}(W^{DQ} h_t), \quad
#   q_{t,i} = \mathrm{RoPE}_t\big(\mathrm{RMSNorm}(W^{UQ}_i c^Q_t)\big), \quad
#   kv_t = \mathrm{RoPE}_t\big(\mathrm{RMSNorm}(W^{KV} h_t)\big)$$
#
# $$o_{t,i} = \mathrm{RoPE}_t^{-1}\Big(\sum_j a_{t,i,j}\, kv_j\Big), \qquad
#   a_{t,i,j} = \frac{\exp(q_{t,i} \cdot kv_j / \sqrt{c})}{e^{z_i} + \sum_{j'} \exp(q_{t,i} \cdot kv_{j'} / \sqrt{c})}$$
#
# RoPE turns only the **last** $d^R = 64$ of the 512 coordinates, in interleaved pairs $(2i, 2i+1)$. Because
# the value is the rotated key, the weighted sum carries the keys' rotations $R_j$; rotating the output back
# by $R_t^{-1}$ leaves $R_t^{-1} R_j = R_{j-t}$: only the distance counts. $z_i$ is a learned **sink** per
# head (section 3).

# %% slideshow={"slide_type": "-"}
show_source(DeepSeekV4Attention.queries, start="q_latent = self.q_norm", stop="return rope_tail")

# %% slideshow={"slide_type": "-"}
show_source(DeepSeekV4Attention.key_values, start="return rope_tail")

# %% slideshow={"slide_type": "-"}
show_source(DeepSeekV4Attention.forward, start="scores = torch.einsum(\"bshc,btc->bsht\"",
            stop="scores = scores.masked_fill(~window_mask")

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Only relative position counts
#
# A tiny V4 layer in float64 (a window of 6, heads of $c = 16$ with RoPE on the last 8). The same 6 tokens
# are placed at positions $0..5$ and again at $1000..1005$: their attention outputs agree when the output is
# rotated back, and differ when it is not.

# %% slideshow={"slide_type": "-"}
tiny = V4AttentionConfig(d_model=24, n_heads=4, q_lora_rank=12, o_groups=2, o_lora_rank=6, head_dim=16,
                         rope_head_dim=8, window=6, layer_type="sliding")
torch.manual_seed(1)
layer = DeepSeekV4Attention(tiny).double()
with torch.no_grad():
    for p in layer.parameters():
        p.normal_(0.0, 0.5)
x = torch.randn(1, 6, tiny.d_model, dtype=F64)


def attend(x: torch.Tensor, first: int, rotate_back: bool = True) -> torch.Tensor:
    """The layer's attention at positions first .. first + s - 1: o (b, s, n_h, c), rotated back or not."""
    positions = torch.arange(first, first + x.shape[1])
    q, _ = layer.queries(x, positions)  # (b, s, n_h, c)
    kv = layer.key_values(x, positions)  # (b, s, c): key and value
    scores = torch.einsum("bshc,btc->bsht", q, kv) * tiny.softmax_scale
    scores = scores.masked_fill(~torch.ones(6, 6, dtype=torch.bool).tril()[None, :, None, :], -math.inf)
    o = torch.einsum("bsht,btc->bshc", sink_softmax(scores, layer.sinks), kv)
    return rope_tail(o, positions, layer.theta, inverse=True) if rotate_back else o


with torch.no_grad():
    rotated = (attend(x, 0) - attend(x, 1000)).abs().max().item()
    unrotated = (attend(x, 0, False) - attend(x, 1000, False)).abs().max().item()
    rope_part = (attend(x, 0, False) - attend(x, 1000, False))[..., : tiny.head_dim - tiny.rope_head_dim].abs().max()
display(Markdown(
    f"Positions 0..5 against 1000..1005, largest difference of the attention output: **{rotated:.1e}** rotated back, "
    f"**{unrotated:.2f}** without the inverse rotation (and {float(rope_part):.1e} in the "
    f"{tiny.head_dim - tiny.rope_head_dim} coordinates RoPE leaves alone: the absolute position hides in the rotated "
    f"{tiny.rope_head_dim})."
))

# %% [markdown] slideshow={"slide_type": "subslide"}
# The inverse rotation sits in the output projection, which also groups the heads (section 7):

# %% slideshow={"slide_type": "-"}
show_source(DeepSeekV4Attention.output, start="o = rope_tail(o, positions", stop="y = torch.einsum")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 3. Attention sinks
#
# Each head has a learned scalar $z_i$ (float32 in DeepSeek's code) that enters the softmax's denominator as
# $e^{z_i}$ and nothing else: a column with no value. The weights over the real keys sum to less than one, so
# a head with nothing worth reading can put its weight on the sink and return (almost) zero, instead of being
# forced to average something. It is the same device as gpt-oss's sinks.

# %% slideshow={"slide_type": "-"}
show_source(sink_softmax, start="z = sinks.to", stop="return exp")

# %% slideshow={"slide_type": "-"}
scores = torch.tensor([[[[2.0, 1.0, 0.5, -1.0]]]], dtype=F64).expand(1, 1, 3, 4)  # one query, 3 heads, 4 keys
sinks = torch.tensor([-math.inf, 0.0, 4.0], dtype=F64)
weights = sink_softmax(scores, sinks)[0, 0]  # (heads, keys)
rows = ["| sink $z_i$ | weights on the 4 keys | their sum | left to the sink |", "|---|---|---|---|"]
for z, w in zip(sinks.tolist(), weights, strict=True):
    rows.append(f"| {z} | {', '.join(f'{v:.3f}' for v in w.tolist())} | {w.sum():.3f} | {1 - w.sum():.3f} |")
display(Markdown("\n".join(rows)))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 4. A window in every layer, one softmax
#
# Every layer keeps the last $W = 128$ raw tokens (the current one included). A CSA or HCA layer appends its
# compressed entries to those keys and runs **one** softmax, sink included, over window and entries together.
# Entry $w$ of a layer with rate $m$ pools tokens up to $mw + m - 1$, so the query at position $t$ may read it
# only once that token has arrived:
#
# $$w < \left\lfloor \frac{t + 1}{m} \right\rfloor .$$
#
# Below, the weights of one head of two tiny layers (window 8; CSA with $m = 4$ keeping the top 3 entries,
# HCA with $m = 8$) over 40 tokens: the band on the left is the window, the columns on the right the entries.

# %% slideshow={"slide_type": "-"}
def tiny_layer(layer_type: str, seed: int, **change) -> DeepSeekV4Attention:
    """A random V4 layer in float64 (weights N(0, 0.5²)), window 8, heads of c = 16."""
    fields = dict(d_model=24, n_heads=4, q_lora_rank=12, o_groups=2, o_lora_rank=6, head_dim=16, rope_head_dim=8,
                  window=8, layer_type=layer_type, index_n_heads=3, index_head_dim=8, index_topk=3,
                  compress_rate={"sliding": None, "csa": 4, "hca": 8}[layer_type])
    torch.manual_seed(seed)
    module = DeepSeekV4Attention(V4AttentionConfig(**(fields | change))).double()
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0.0, 0.5)
    return module


S = 40
xs = torch.randn(1, S, 24, dtype=F64)
fig, axes = plt.subplots(1, 2, figsize=(12, 4.4))
with torch.no_grad():
    for ax, kind in zip(axes, ("csa", "hca"), strict=True):
        out = tiny_layer(kind, seed=2)(xs, return_weights=True)
        w = out.weights[0, 0]  # (queries, raw tokens + entries), head 0
        ax.imshow(w.numpy(), cmap="Blues", aspect="auto", vmin=0, vmax=float(w.max()) * 0.6)
        ax.axvline(S - 0.5, color=COLORS["cache"], lw=1.5)
        m = 4 if kind == "csa" else 8
        ax.set_title(f"{kind.upper()}, m = {m}: raw tokens | {w.shape[1] - S} compressed entries", fontsize=10)
        ax.set_xlabel("key: raw token j (left of the red line), compressed entry w (right)")
        ax.set_ylabel("query position t")
plt.tight_layout()
plt.show()

# %% [markdown] slideshow={"slide_type": "subslide"}
# In the CSA panel each row reads at most 3 entries (the indexer's choice); in the HCA panel every row reads
# all the entries it may see, a staircase that steps every 8 tokens. Together with the 8-token window, every
# earlier token of the HCA layer is seen either raw or inside an entry. The mask of the compressed part:

# %% slideshow={"slide_type": "-"}
show_source(DeepSeekV4Attention.forward, start="visible = torch.div(positions + 1",
            stop="selection = IndexSelection(index, indices)")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 5. CSA: pool overlapping windows, then select
#
# Per token $j$ the compressor computes contents $C_j = W^C h_j$ and gate logits $Z_j = W^Z h_j$, each
# $2 \times 512$ wide, and a learned bias $B$ per slot. Entry $w$ pools **8 slots**: the first halves of
# tokens $4w-4 .. 4w-1$ and the second halves of tokens $4w .. 4w+3$, windows of 8 at stride 4, so every token
# feeds two entries. A softmax over the 8 slots runs **per channel** (512 separate softmaxes):
#
# $$C^{\text{Comp}}_w = \sum_{\text{slots } s} \mathrm{softmax}_s\big(Z_s + B_s\big) \odot C_s ,
#   \qquad \text{entry}_w = \mathrm{RoPE}_{4w}\big(\mathrm{RMSNorm}(C^{\text{Comp}}_w)\big).$$
#
# Entry 0 has no window before it: its first-half slots get weight $e^{-\infty} = 0$.

# %% slideshow={"slide_type": "-"}
show_source(pool_windows, start="c_a, c_b = content.split",
            stop='return torch.einsum("bnjc,bnjc->bnc", weights, slots_c)')

# %% slideshow={"slide_type": "-"}
n_tok, fig = 20, plt.figure(figsize=(11, 3.4))
axes = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1]})
for ax, (kind, m, overlap) in zip(axes, (("CSA", 4, True), ("HCA (m = 4 here for the picture)", 4, False)),
                                  strict=True):
    for w in range(n_tok // m):
        for j in range(n_tok):
            second = m * w <= j < m * w + m  # the window's own tokens (their second halves in CSA)
            first = overlap and m * (w - 1) <= j < m * w  # the window before (first halves)
            if second or first:
                ax.add_patch(plt.Rectangle((j, w), 1, 1, ec="white",
                                           color=COLORS["index"] if second else COLORS["latent"],
                                           alpha=1.0 if second else 0.55))
    ax.set_xlim(0, n_tok)
    ax.set_ylim(n_tok // m, 0)
    ax.set_xticks([j + 0.5 for j in range(n_tok)], [str(j) for j in range(n_tok)], fontsize=8)
    ax.set_yticks([w + 0.5 for w in range(n_tok // m)], [f"entry {w}" for w in range(n_tok // m)], fontsize=8)
    ax.set_xlabel("token j")
    ax.set_title(kind, fontsize=10)
handles = [plt.Rectangle((0, 0), 1, 1, color=COLORS["index"]), plt.Rectangle((0, 0), 1, 1, color=COLORS["latent"],
                                                                                alpha=0.55)]
fig.legend(handles, ["second halves of the window's own tokens (HCA: the whole token)",
                     "first halves of the window before it (CSA only)"], loc="lower center", ncol=2, frameon=False)
plt.tight_layout(rect=(0, 0.1, 1, 1))
plt.show()

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### The indexer over compressed entries
#
# CSA's lightning indexer is chapter 10's, moved from tokens to entries. It has its own compressor of the same
# kind, 128 wide (RoPE on its last 64), whose entries are the **index keys** $K^I_w$; its queries come from the
# attention's query latent $c^Q_t$, 64 heads of 128:
#
# $$I_{t,w} = \sum_{h=1}^{64} w_{t,h}\, \mathrm{ReLU}\big(q^I_{t,h} \cdot K^I_w\big),$$
#
# and each query attends to the top-k visible entries: 512 in V4-Flash, 1024 in V4-Pro, each entry standing
# for 4 tokens, where V3.2 picked 2048 single tokens. DeepSeek's code also rotates $q^I$ and $K^I$ by a
# Hadamard matrix (chapter 11) and stores $K^I$ in FP4.

# %% slideshow={"slide_type": "-"}
show_source(CompressedIndexer.scores, start="q = self.wq_b(q_latent)", stop="return index_scores")

# %% slideshow={"slide_type": "-"}
show_source(GatedPoolingCompressor.forward, start="content, gate = projected", stop="return rope_tail")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 6. HCA: heavily compressed, read densely
#
# HCA pools non-overlapping blocks of $m = 128$ tokens with the same gated softmax (one slot per token, no
# halves) and has no indexer: every query reads every completed entry, $w < \lfloor (t+1)/128 \rfloor$,
# plus its window: a dense read over few entries, where CSA reads a few of many. Its cache grows by one
# entry per 128 tokens.

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "-"} tags=["hide-input"]
million = 2**20
reads = {kind: costs.v4_layer_cache_entries(kind, million)["entries"] for kind in ("csa", "hca")}
display(Markdown(
    f"At {million:,} tokens a CSA layer holds {reads['csa']:,} entries and each query reads {PRO.index_topk:,} "
    f"(V4-Pro) of them after scoring all {reads['csa']:,} with the indexer; an HCA layer holds {reads['hca']:,} and "
    f"each query reads all {reads['hca']:,}. Both read the 128-token window besides."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 7. The layer schedules and the grouped output
#
# The configs' `compress_ratios` list one number per layer: V4-Flash starts with two sliding-only layers,
# V4-Pro with two HCA layers, and both then alternate CSA and HCA, ending on CSA.

# %% slideshow={"slide_type": "-"}
fig, ax = plt.subplots(figsize=(12, 2.4))
rows_drawn = [(FLASH.name, [costs.V4_RATIO_TYPES[r] for r in FLASH.compress_ratios]),
              (PRO.name, [costs.V4_RATIO_TYPES[r] for r in PRO.compress_ratios]),
              (f"{v32.name} (MLA + DSA)", ["v3.2"] * costs.DEEPSEEK_V32_LAYERS)]
colors = TYPE_COLORS | {"v3.2": COLORS["cache"]}
for y, (_, kinds) in enumerate(rows_drawn):
    for i, kind in enumerate(kinds):
        ax.add_patch(plt.Rectangle((i, y), 0.9, 0.8, color=colors[kind]))
ax.set_xlim(0, costs.DEEPSEEK_V32_LAYERS)
ax.set_ylim(len(rows_drawn) - 0.1, -0.1)
ax.set_yticks([y + 0.4 for y in range(len(rows_drawn))], [name for name, _ in rows_drawn])
ax.set_xlabel("layer (0-based)")
ax.spines[["top", "right", "left"]].set_visible(False)
labels = {"sliding": "sliding window only", "csa": "CSA (m = 4, top-k)", "hca": "HCA (m = 128, dense)",
          "v3.2": "MLA + DSA, every token"}
ax.legend([plt.Rectangle((0, 0), 1, 1, color=c) for c in colors.values()], [labels[k] for k in colors], ncol=4,
          loc="upper center", bbox_to_anchor=(0.5, -0.35), frameon=False)
plt.tight_layout()
plt.show()

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### The grouped output projection
#
# $n_h$ heads of $c = 512$ make $n_h c$ numbers per token, too many for one dense $W^O$. V4 splits the heads
# into $g$ groups, projects each group alone to $d_g = 1024$ numbers, then maps the $g\, d_g$ to the hidden
# size:
#
# $$u_t = W^{O_b}\,\big[\,W^{O_a}_1 o_{t,1:n_h/g};\ \dots;\ W^{O_a}_g o_{t,\,n_h - n_h/g+1:n_h}\big].$$

# %% slideshow={"slide_type": "-"}
show_source(DeepSeekV4Attention.output, start="o_groups = o.reshape", stop="return self.wo_b")

# %% slideshow={"slide_type": "-"}
rows = ["| | dense $W^O$: $n_h c \\cdot d$ | grouped: $n_h c\\, d_g + g\\, d_g\\, d$ | ratio |", "|---|---|---|---|"]
for m in (FLASH, PRO):
    dense = m.n_heads * m.head_dim * m.d_model
    grouped = m.n_heads * m.head_dim * m.o_lora_rank + m.o_groups * m.o_lora_rank * m.d_model
    rows.append(f"| {m.name} | {dense / 1e6:,.0f}M | {grouped / 1e6:,.0f}M | {grouped / dense:.2f} |")
display(Markdown("Output-projection weights per layer:\n\n" + "\n".join(rows)))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 8. The layer runs: decode equals prefill, and it matches Hugging Face
#
# `attnlab.v4.V4Cache` holds what decoding needs: the window, the compressed entries and index keys, and
# each compressor's **running state**, the projections of the unfinished window and, for CSA, the first
# halves of the last complete one, which the next entry pools. Each tiny layer below (float64) runs 29 tokens
# at once, then again one token at a time through the cache.

# %% slideshow={"slide_type": "-"}
x29 = torch.randn(2, 29, 24, dtype=F64)
rows = ["| layer | prefill vs token by token, max abs difference | entries held | tokens in the unfinished window |",
        "|---|---|---|---|"]
with torch.no_grad():
    for kind in ("sliding", "csa", "hca"):
        module = tiny_layer(kind, seed=3)
        cache = module.make_cache()
        steps = torch.cat([module(x29[:, t:t + 1], cache=cache).output for t in range(29)], dim=1)
        diff = (steps - module(x29).output).abs().max().item()
        pending = cache.compressor.pending.shape[1] if cache.compressor.pending is not None else 0
        rows.append(f"| {kind} | {diff:.1e} | {cache.n_entries} | {pending} |")
display(Markdown("\n".join(rows)))

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Against Hugging Face's `DeepseekV4Attention`
#
# transformers (5.23 and later) ships V4's layer. `from_transformers` copies its weights into this course's
# layer. Built offline from a tiny random config (one layer of each type, CSA $m = 4$, HCA $m = 8$, window 8,
# YaRN as in the release), both run the same 27 tokens: a 5-token prefill, then one token at a time. Hugging
# Face computes norms, RoPE and the pooling softmax in float32 even in a float64 model, which bounds the
# agreement. With a top-k smaller than the entries, two nearly tied index scores could be ordered the other
# way in float32 (tie-breaking, not a difference in the math), so the CSA layer's smallest gap between the
# k-th and the (k+1)-th best score is shown too.

# %% slideshow={"slide_type": "-"}
from transformers import DeepseekV4Config
from transformers.cache_utils import DynamicCache
from transformers.models.deepseek_v4 import modeling_deepseek_v4 as hf_v4

from attnlab.huggingface import cache_keyword

HF_TYPES = ("sliding_attention", "compressed_sparse_attention", "heavily_compressed_attention")
hf_config = DeepseekV4Config(
    vocab_size=64, hidden_size=32, num_attention_heads=4, head_dim=32, q_lora_rank=16, o_groups=2, o_lora_rank=8,
    index_n_heads=16, index_head_dim=16, index_topk=3, sliding_window=8, hc_mult=2, num_hidden_layers=3,
    moe_intermediate_size=16, n_routed_experts=4, num_experts_per_tok=2, max_position_embeddings=1024,
    partial_rotary_factor=0.25, layer_types=list(HF_TYPES),
    compress_rates={"compressed_sparse_attention": 4, "heavily_compressed_attention": 8},
    rope_parameters={"rope_type": "yarn", "factor": 16.0, "original_max_position_embeddings": 64})
hf_config._attn_implementation = "eager"
rotary = hf_v4.DeepseekV4RotaryEmbedding(hf_config).to(F64)


def hf_step(attention, x: torch.Tensor, start: int, cache) -> torch.Tensor:
    """Hugging Face's layer on tokens start .. start + s - 1, with its additive sliding-window mask over the keys
    it holds (the cached window, then the new tokens)."""
    b, s, _ = x.shape
    positions = torch.arange(start, start + s)[None].expand(b, -1)
    embeddings = {kind: rotary(x, positions, layer_type=kind) for kind in ("main", "compress")}
    window = hf_config.sliding_window
    q, k = torch.arange(start, start + s)[:, None], torch.arange(start - min(start, window - 1), start + s)[None]
    mask = torch.zeros(s, k.shape[1], dtype=F64).masked_fill(~((k <= q) & (k > q - window)), -math.inf)
    kwargs = {} if cache is None else {cache_keyword(attention): cache}  # "cache" or "past_key_values"
    return attention(x, embeddings, position_ids=positions, attention_mask=mask[None, None].expand(b, 1, -1, -1),
                     **kwargs)[0]


# %% slideshow={"slide_type": "-"}
x27 = torch.randn(2, 27, 32, dtype=F64)
parity, rows = {}, ["| layer | Hugging Face vs `attnlab.v4`, max abs difference (prefill) | (token by token) | "
                    "compressed entries, max abs difference |", "|---|---|---|---|"]
with torch.no_grad():
    for i in range(len(HF_TYPES)):
        torch.manual_seed(10 + i)
        hf_layer = hf_v4.DeepseekV4Attention(hf_config, i).to(F64)
        for p in hf_layer.parameters():
            p.normal_(0.0, 0.5)
        ours = from_transformers(hf_layer)
        out = ours(x27)
        prefill = (out.output - hf_step(hf_layer, x27, 0, None)).abs().max().item()
        if out.selection is not None:  # CSA: the k-th best visible entry against the (k+1)-th
            top = out.selection.scores.sort(dim=-1, descending=True).values
            k_sel = hf_config.index_topk
            tie_gap = (top[..., k_sel - 1] - top[..., k_sel])[torch.isfinite(top[..., k_sel])].min().item()
        theirs_cache, our_cache, errors = DynamicCache(config=hf_config), ours.make_cache(), []
        for a, e in [(0, 5)] + [(t, t + 1) for t in range(5, 27)]:
            y_hf = hf_step(hf_layer, x27[:, a:e], a, theirs_cache)
            errors.append((ours(x27[:, a:e], cache=our_cache).output - y_hf).abs().max().item())
        entries = "–"
        if ours.config.compressed:
            held = theirs_cache.layers[i].compressed_kv["compressor"]
            entries = f"{(our_cache.compressed.tensors['kv'] - held).abs().max().item():.1e}"
        parity[ours.config.layer_type] = max(prefill, *errors)
        rows.append(f"| {ours.config.layer_type} | {prefill:.1e} | {max(errors):.1e} | {entries} |")
display(Markdown("\n".join(rows)))

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "-"} tags=["hide-input"]
display(Markdown(
    f"Largest difference over the three layer types, prefill and decode: **{max(parity.values()):.1e}**, float32's "
    f"rounding inside Hugging Face's float64 layer. The CSA layer's closest call between a kept and a dropped entry "
    f"differs by {tie_gap:.1e} in index score, far above that rounding: both layers keep the same entries. "
    "`tests/test_v4.py` checks the same, with and without YaRN, and the compressors' unfinished windows against "
    "Hugging Face's cache."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 9. Cache formats: FP8 entries, FP4 index keys
#
# DeepSeek serves V4 with the 448 coordinates RoPE leaves alone in FP8 (e4m3) with one power-of-two (ue8m0)
# scale byte per 64 values, the 64 RoPE coordinates in bfloat16 and one pad byte, and the index keys in FP4
# (e2m1) with one scale per 32 values. V3.2's FP8 layouts (chapter 16) for comparison:

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "-"} tags=["hide-input"]
layouts = [cache_formats.DEEPSEEK_V4_FP8_ENTRY, cache_formats.DEEPSEEK_V4_FP4_INDEX_KEY,
           cache_formats.DEEPSEEK_V32_FP8_MLA, cache_formats.DEEPSEEK_V32_FP8_INDEX_KEY]
display(Markdown("\n".join(["| layout | bytes, part by part |", "|---|---|"]
                           + [f"| {lay.name} | {lay.formula()} |" for lay in layouts])))

# %% slideshow={"slide_type": "-"}
part_colors = {"entry": COLORS["key"], "latent": COLORS["latent"], "RoPE": COLORS["rope"], "scale": COLORS["muted"],
               "pad": "#dddddd", "index": COLORS["index"]}
fig, ax = plt.subplots(figsize=(11, 2.6))
for y, lay in enumerate(layouts):
    left = 0
    for part in lay.parts:
        color = next(c for key, c in part_colors.items() if part.what.startswith(key))
        ax.barh(y, part.bytes, left=left, color=color, ec="white")
        left += part.bytes
    ax.text(left + 8, y, f"{lay.bytes} B", va="center", fontsize=9)
ax.set_yticks(range(len(layouts)), [lay.name for lay in layouts], fontsize=9)
ax.invert_yaxis()
ax.set_xlim(0, 760)
ax.set_xlabel("bytes per cached vector")
ax.legend([plt.Rectangle((0, 0), 1, 1, color=c) for c in part_colors.values()],
          ["V4 entry, e4m3", "V3.2 latent, e4m3", "RoPE part, bfloat16", "scales", "pad", "index key"],
          ncol=6, loc="upper center", bbox_to_anchor=(0.45, -0.3), frameon=False, fontsize=9)
ax.spines[["top", "right"]].set_visible(False)
plt.tight_layout()
plt.show()

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 10. What it costs: the published comparison, byte by byte
#
# DeepSeek reports that at 1M tokens V4-Pro needs about **10%** and V4-Flash about **7%** of V3.2's KV cache.
# Per sequence at context $L$ (`costs.v4_cache_bytes`, `costs.v32_cache_bytes`):
#
# $$\text{V4} = \sum_{\text{layers}} \Big(\big(\min(W, L) + \lfloor L/m \rfloor\big)\, b_{\text{entry}}
#   + [\text{CSA}]\, \lfloor L/m \rfloor\, b_{\text{key}}\Big), \qquad
#   \text{V3.2} = 61\, L\, (b_{\text{MLA}} + b_{\text{key}}).$$

# %% slideshow={"slide_type": "-"}
L = million
fp8 = costs.V4_CACHE_FORMATS["fp8"]
e, k = fp8["v4_entry"].bytes, fp8["v4_index_key"].bytes
v32_token = fp8["v32_entry"].bytes + fp8["v32_index_key"].bytes
lines = []
for m in (PRO, FLASH):
    n = m.layer_counts()
    csa = (128 + L // 4) * e + (L // 4) * k
    hca = (128 + L // 128) * e
    sliding = 128 * e
    total = n["csa"] * csa + n["hca"] * hca + n["sliding"] * sliding
    assert total == costs.v4_cache_bytes(m, L)  # the arithmetic below is the library's
    v32_total = costs.DEEPSEEK_V32_LAYERS * L * v32_token
    lines.append(
        f"**{m.name}** at L = {L:,}: {n['csa']} CSA layers × ((128 + {L // 4:,}) × {e} + {L // 4:,} × {k}) = "
        f"{fmt(n['csa'] * csa)}; {n['hca']} HCA layers × (128 + {L // 128:,}) × {e} = {fmt(n['hca'] * hca)}"
        + (f"; {n['sliding']} sliding layers × 128 × {e} = {fmt(n['sliding'] * sliding)}" if n["sliding"] else "")
        + f". Total **{fmt(total)}** against V3.2's {costs.DEEPSEEK_V32_LAYERS} × {L:,} × ({fp8['v32_entry'].bytes} + "
        f"{fp8['v32_index_key'].bytes}) = **{fmt(v32_total)}**: **{100 * total / v32_total:.1f}%**.")
display(Markdown("\n\n".join(lines)))

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Which byte formats make it true
#
# The two percentages hold when both models are counted in their serving formats: V4 with FP8 entries and FP4
# index keys, V3.2 with FlashMLA's FP8 MLA entry (656 B) and FP8 index key (132 B). Counted in bfloat16
# everywhere, V4 keeps a larger share, because its FP4 index keys and the smaller scale overhead were part
# of the saving. Counting V4 in FP8 against V3.2 in bfloat16 mixes accountings and flatters V4.

# %% slideshow={"slide_type": "-"}
rows = ["| model | context | V4, FP8 / FP4 | V3.2, FP8 | V4 / V3.2 | V4, bf16 | V3.2, bf16 | V4 / V3.2 (bf16) |",
        "|---|---|---|---|---|---|---|---|"]
for m in (PRO, FLASH):
    for context in (2**17, 2**20):
        a, b = costs.v4_vs_v32_cache(m, context, "fp8"), costs.v4_vs_v32_cache(m, context, "bf16")
        rows.append(f"| {m.name} | {v4_widgets.context_label(context)} | {fmt(a['v4_bytes'])} | "
                    f"{fmt(a['v32_bytes'])} | **{100 * a['ratio']:.1f}%** ({a['times_smaller']:.1f}× smaller) | "
                    f"{fmt(b['v4_bytes'])} | "
                    f"{fmt(b['v32_bytes'])} | {100 * b['ratio']:.1f}% ({b['times_smaller']:.1f}× smaller) |")
display(Markdown("\n".join(rows)))
bf16 = costs.V4_CACHE_FORMATS["bf16"]
pro_fp8, pro_bf16 = costs.v4_vs_v32_cache(PRO, L, "fp8"), costs.v4_vs_v32_cache(PRO, L, "bf16")
mixed = costs.v4_cache_bytes(PRO, L) / costs.v32_cache_bytes(L, bf16["v32_entry"], bf16["v32_index_key"])
display(Markdown(
    f"At 1M tokens: in the serving formats V4-Pro holds {100 * pro_fp8['ratio']:.1f}% of V3.2's cache "
    f"({pro_fp8['times_smaller']:.1f}× smaller), the published \"about 10%\"; in bfloat16 everywhere "
    f"{100 * pro_bf16['ratio']:.1f}% ({pro_bf16['times_smaller']:.1f}× smaller); V4 in FP8 against V3.2 in bfloat16 "
    f"would give {100 * mixed:.1f}%, a number neither model is served at."
))

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Against context
#
# Both caches grow linearly past the window, but with very different slopes: bytes added per token and layer,
# far past the window, in the serving formats:

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "-"} tags=["hide-input"]
slopes = {"CSA": (e + k) / 4, "HCA": e / 128, "V3.2": v32_token}
display(Markdown(", ".join(f"{name} **{b:.1f} B**" for name, b in slopes.items())
                 + f": one V3.2 layer adds as much per token as {v32_token / slopes['CSA']:.1f} CSA layers."))

# %% slideshow={"slide_type": "-"}
contexts = [2**p for p in range(7, 21)]
fig, ax = plt.subplots(figsize=(8, 3.6))
ax.plot(contexts, [costs.v32_cache_bytes(c) / 2**30 for c in contexts], marker="o", color=COLORS["cache"],
        label=f"{v32.name}, FP8 (656 + 132 B)")
for m, color in ((PRO, COLORS["latent"]), (FLASH, COLORS["index"])):
    ax.plot(contexts, [costs.v4_cache_bytes(m, c) / 2**30 for c in contexts], marker="o", color=color,
            label=f"{m.name}, FP8 entries + FP4 index keys")
ax.set_xscale("log", base=2)
ax.set_yscale("log")
ax.set_xticks([2**7, 2**10, 2**13, 2**17, 2**20], ["128", "1K", "8K", "128K", "1M"])
ax.set_xlabel("context L (tokens)")
ax.set_ylabel("cache of one sequence (GiB)")
ax.grid(alpha=0.3)
ax.legend(frameon=False, fontsize=9)
plt.show()

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### And the FLOPs of a decoded token
#
# Fewer bytes is half the story: a query also reads fewer vectors. `costs.v4_decode_flops` counts one decoded
# token's FLOPs in one V4-Pro layer of each type at 1M tokens of context (2 per multiply-add; pooling, norms and
# softmaxes left out). The indexer still scores every CSA entry, 4× fewer than V3.2's indexer scored tokens.

# %% slideshow={"slide_type": "-"}
rows = ["| V4-Pro layer | projections | compressor | indexer | attention | total |", "|---|---|---|---|---|---|"]
for kind in ("csa", "hca"):
    parts = costs.v4_decode_flops(PRO, kind, L)
    rows.append(f"| {kind.upper()} | " + " | ".join(f"{v / 1e9:.2f} G" for v in parts.values())
                + f" | {sum(parts.values()) / 1e9:.2f} G |")
display(Markdown("\n".join(rows)))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 11. Explore: context, model and byte format
#
# Choose the context, V4-Flash or V4-Pro, and how the bytes are counted. The table shows what one layer of each
# type holds, its bytes, and all its layers' bytes beside V3.2's (`attnlab.costs`).

# %% slideshow={"slide_type": "-"}
explorer = v4_widgets.v4_cache_explorer(model="deepseek-v4-pro", context=2**20, formats="fp8")
explorer

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "subslide"} tags=["hide-input"]
explorer.model.value, explorer.context.value = "deepseek-v4-flash", 2**17
flash_rows = v4_widgets.cache_rows("deepseek-v4-flash", 2**17, "fp8")
csa_share = sum(r["bytes"] for r in flash_rows if r["kind"] == "csa") / sum(r["bytes"] for r in flash_rows[:-1])
display(Markdown(
    f"With V4-Flash at 128K the explorer shows the CSA layers holding {100 * csa_share:.0f}% of V4's cache: the "
    "entries compressed 4× and their index keys are nearly all of it; the HCA entries and the windows are the rest."
))
explorer.model.value, explorer.context.value = "deepseek-v4-pro", 2**20

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercises
#
# Each exercise has an answer cell (replace `None`) and a check cell. Worked solutions are in
# `notebooks/solutions/ch20.py`; try first.
#
# **Exercise 1.** In a CSA layer ($m = 4$), how many compressed entries (entries $0, 1, \dots$) may the query
# at position $t = 39$ (counting from 0) use? And in an HCA layer ($m = 128$), the query at $t = 255$? Two ints.

# %% slideshow={"slide_type": "-"}
answer_csa_entries = None
answer_hca_entries = None

# %% slideshow={"slide_type": "-"}
print(ch20.check_visible_entries(answer_csa_entries, answer_hca_entries))

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Exercise 2.** How many bytes does one DeepSeek-V4 entry take in its FP8 layout (448 values in e4m3, the
# 64 RoPE values in bfloat16, one one-byte scale per 64 FP8 values, one pad byte)? And how many bytes per
# token does a CSA layer add far past its window, with one such entry and one 68-byte FP4 index key per 4 tokens?

# %% slideshow={"slide_type": "-"}
answer_entry_bytes = None
answer_csa_bytes_per_token = None

# %% slideshow={"slide_type": "-"}
print(ch20.check_entry_bytes(answer_entry_bytes, answer_csa_bytes_per_token))

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Exercise 3, predict then run.** A tiny CSA layer ($m = 4$, window $W = 6$) decodes 14 tokens one at a
# time. **Predict** how many compressed entries its cache then holds, how many raw tokens its window holds,
# and how many tokens wait in the compressor's unfinished window; then run the check, which runs the layer.

# %% slideshow={"slide_type": "-"}
answer_entries = None
answer_window = None
answer_pending = None

# %% slideshow={"slide_type": "-"}
print(ch20.check_decode_prediction(answer_entries, answer_window, answer_pending))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Summary
#
# * V4 caches one 512-wide vector per kept token or entry, used as key and value (MQA with a single shared
#   head); RoPE turns its last 64 coordinates, and the output is rotated back so only relative position counts.
# * A learned sink per head adds to the softmax's denominator only; every layer keeps the last 128 raw tokens
#   and runs one softmax over them and its compressed entries.
# * CSA pools overlapping 8-token windows at stride 4 with a per-channel gated softmax, normalises and rotates
#   the entry, and lets a lightning indexer over compressed index keys pick the top 512 (Flash) or 1024 (Pro).
#   HCA pools 128-token blocks and reads them all.
# * V4-Flash: 2 sliding, 21 CSA, 20 HCA layers; V4-Pro: 31 HCA, 30 CSA. Heads are projected out in groups.
# * In DeepSeek's serving formats (FP8 entries of 584 B, FP4 index keys of 68 B, against V3.2's 656 + 132 B) the
#   cache at 1M tokens is about 10% (Pro) and 7% (Flash) of V3.2's, as published; counted in bfloat16 it is still
#   several times smaller (section 10).
