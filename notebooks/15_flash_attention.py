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
# # Chapter 15 · FlashAttention: attention without the score matrix
#
# *Course chapter (not in the video).*
#
# > **What you will learn:** the online softmax (a running maximum and sum), exact attention computed tile by
# > tile without ever storing the score matrix, the memory traffic that saves, and split-KV decoding with the
# > log-sum-exp merge.
# >
# > **What it assumes:** [chapter 3](03_attention_matrix_form.ipynb) (attention as matrix products) and
# > [chapter 4](04_kv_caching.ipynb) (decoding from a cache).
#
# Chapter 3 computed attention the way the formula reads: build the scores $S = QK^\top/\sqrt{d}$, an
# $n \times n$ matrix per head, take the softmax of each row into $P$, multiply by $V$. Every step writes a
# whole matrix to memory and the next reads it back. FlashAttention (Dao et al., 2022) computes exactly the
# same output **tile by tile**, keeping each tile of scores in fast on-chip memory and never writing $S$ or $P$
# anywhere. The trick that makes this possible is a softmax that can be computed one block of a row at a
# time: the **online softmax** of Milakov and Gimelshein (2018).
#
# This chapter builds the online softmax, the tiled forward pass (equal to PyTorch's
# `scaled_dot_product_attention` in float64), counts the bytes each form moves, and ends with split-KV
# decoding (FlashDecoding) and the log-sum-exp merge of partial results, which DeepSeek's FlashMLA and sparse
# attention kernels use to combine blocks.

# %% slideshow={"slide_type": "skip"}
import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from IPython.display import Markdown, display

from attnlab import costs, flash, show_source
from attnlab.attention import attention_matrix
from attnlab.exercises import ch15
from attnlab.gqa import grouped_attention
from attnlab.interactive import flash as flash_ui
from attnlab.interactive.attention import layer_input
from attnlab.model import load_checkpoint
from attnlab.plots import COLORS
from attnlab.sizing import format_bytes
from attnlab.tokenization import load_tokenizer

torch.manual_seed(0)
torch.set_num_threads(1)  # small tensors: one thread is as fast here, and deterministic

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### The idea, animated
#
# The chapter in one short animation. It plays here once the videos are rendered (`./course animations`);
# until then, and in static exports, the last frame stands in.

# %% slideshow={"slide_type": "-"}
from attnlab.media import show_animation

show_animation("FlashAttentionScene")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 1. The problem: the score matrix
#
# Chapter 3's `attention_matrix` returns the weights $P$ of shape `(..., n_q, n_k)`: to produce them it has
# held the scores, the masked scores and their exponentials, each an $n \times n$ matrix per head. How big is
# one of them?

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "-"} tags=["hide-input"]
L128k = 128 * 1024
one_head = costs.score_bytes_not_written(L128k, L128k, "bfloat16") // 2  # S alone: n^2 x 2 bytes
q_k_v_o = 4 * L128k * 128 * 2  # Q, K, V and O of one head of width 128, bfloat16
x = torch.randn(1, 1, 512, 64)
_, weights = attention_matrix(x, x, x, causal=True)
display(Markdown(
    f"At n = {L128k:,} tokens one head's score matrix in bfloat16 is n² × 2 = **{one_head:,} bytes** "
    f"({one_head / 2**30:.0f} GiB), and the softmax's output P is another matrix of the same size. Q, K, V and O "
    f"of that head (width 128) are {q_k_v_o / 2**20:.0f} MiB together, {one_head / q_k_v_o:,.0f}× less. "
    f"Chapter 3's function really builds them: for 512 tokens it returns weights of shape "
    f"`{tuple(weights.shape)}`, {weights.numel() * weights.element_size():,} bytes in float32 for one head."
))

# %% [markdown] slideshow={"slide_type": "subslide"}
# A GPU has two kinds of memory. HBM is large (80 GB on an H100) and far from the arithmetic units; SRAM,
# the shared memory of each streaming multiprocessor, is fast but a few hundred KiB. Standard attention
# writes $S$ to HBM, reads it back to take the softmax, writes $P$, reads it back to multiply by $V$: four
# passes over $n^2$ numbers per head, for arithmetic that is cheap per byte. FlashAttention loads blocks of
# $Q$, $K$, $V$ into SRAM, does all three steps there, and writes only the output (and one number per row).
# To do the softmax on a block it needs one idea.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 2. The online softmax
#
# $\mathrm{softmax}(s)_j = e^{s_j - m} / \ell$ with $m = \max_j s_j$ and $\ell = \sum_j e^{s_j - m}$ seems to need
# the whole row twice: once for the maximum, once for the sum. Milakov and Gimelshein (2018) keep a **running
# maximum** $m$ and a **running sum** $\ell$ and fold in one block of scores at a time:
#
# $$m_\text{new} = \max\big(m_\text{old}, \max_{j \in \text{block}} s_j\big), \qquad
# \ell_\text{new} = e^{m_\text{old} - m_\text{new}}\,\ell_\text{old}
# + \sum_{j \in \text{block}} e^{s_j - m_\text{new}}.$$
#
# Everything summed so far was exponentiated against the old maximum; when a block raises the maximum, the
# factor $\alpha = e^{m_\text{old} - m_\text{new}} \le 1$ rescales it to the new one. Before the first block,
# $m = -\infty$ and $\ell = 0$.

# %% slideshow={"slide_type": "-"}
show_source(flash.online_softmax_update, start="m_new = torch.maximum", stop="return")

# %% [markdown] slideshow={"slide_type": "subslide"}
# One row of eight scores, three at a time:

# %% slideshow={"slide_type": "-"}
row = torch.tensor([1.0, 0.5, 2.0, -1.0, 3.5, 0.0, 4.0, 2.5], dtype=torch.float64)
steps, online = flash.online_softmax_trace(row, block_size=3)
lines = ["| block | scores | block max | m | α = e^(m_old − m_new) | ℓ |", "|---|---|---:|---:|---:|---:|"]
for st in steps:
    scores = ", ".join(f"{v:g}" for v in row[st.start:st.stop].tolist())
    alpha = "– (first block)" if st.start == 0 else f"{st.alpha:.4f}"
    lines.append(f"| {st.start}–{st.stop - 1} | {scores} | {st.block_max:g} | {st.m:g} | {alpha} | {st.l:.4f} |")
display(Markdown("\n".join(lines)))
exact = torch.softmax(row, dim=0)
display(Markdown(
    f"After the last block m = {steps[-1].m:g} is the row's maximum and ℓ = {steps[-1].l:.4f} equals "
    f"Σ e^(s_j − m) = {float(torch.exp(row - row.max()).sum()):.4f}. The softmax from these two numbers, "
    f"e^(s_j − m)/ℓ, differs from `torch.softmax` by at most {float((online - exact).abs().max()):.1e}. "
    f"Block 2 raised the maximum from {steps[0].m:g} to {steps[1].m:g}, so the old sum was multiplied by "
    f"e^({steps[0].m:g} − {steps[1].m:g}) = {steps[1].alpha:.4f} before the new terms were added."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 3. The tiled forward
#
# The same rescaling works for the output. Cut the queries into blocks $Q_i$ of $B_r$ rows and the keys and
# values into blocks $K_j, V_j$ of $B_c$ rows. For each query block keep, per row, $m$, $\ell$ and an
# **unnormalised** output $\tilde O$, and for each key block (FlashAttention, Algorithm 1; FlashAttention-2's
# loop order and deferred normalisation):
#
# $$S_{ij} = Q_i K_j^\top/\sqrt{d}, \quad m^{(j)} = \max(m^{(j-1)}, \mathrm{rowmax}\,S_{ij}), \quad
# \tilde P_{ij} = e^{S_{ij} - m^{(j)}},$$
# $$\ell^{(j)} = e^{m^{(j-1)} - m^{(j)}}\ell^{(j-1)} + \mathrm{rowsum}\,\tilde P_{ij}, \qquad
# \tilde O^{(j)} = e^{m^{(j-1)} - m^{(j)}}\,\tilde O^{(j-1)} + \tilde P_{ij} V_j.$$
#
# After the last key block, $O_i = \tilde O / \ell$ (one division, FlashAttention-2's saving over dividing at
# every step) and the row's **log-sum-exp** $L_i = m + \log \ell$ is kept: $n$ numbers instead of $n^2$. Under
# the causal mask a key block that lies wholly after the query block's last query is never loaded.

# %% slideshow={"slide_type": "-"}
show_source(flash.flash_attention, start="for i0 in range", stop="return out")

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Equal to SDPA and to chapter 3, in float64
#
# Random queries, keys and values, 2 sequences, 4 heads, tile sizes that do not divide the length, causal
# and not; and decoding, where 3 new queries attend to 300 keys (they are the last 3 positions).

# %% slideshow={"slide_type": "-"}
g = torch.Generator().manual_seed(15)
q, k, v = (torch.randn(2, 4, 300, 64, generator=g, dtype=torch.float64) for _ in range(3))
rows = ["| case | tiles B_r × B_c | max abs. difference from SDPA | from `attention_matrix` |", "|---|---|---:|---:|"]
for name, causal, n_q, tiles in (("full, no mask", False, 300, (64, 48)), ("causal prefill", True, 300, (37, 64)),
                                 ("decode: 3 queries, 300 keys", True, 3, (16, 64))):
    qq = q[:, :, -n_q:]
    out, lse = flash.flash_attention(qq, k, v, causal=causal, block_q=tiles[0], block_k=tiles[1])
    mask = torch.ones(n_q, 300, dtype=torch.bool).tril(300 - n_q) if causal else None  # the last n_q positions
    sdpa = F.scaled_dot_product_attention(qq, k, v, attn_mask=mask)
    dense, _ = attention_matrix(qq, k, v, causal=causal)
    rows.append(f"| {name} | {tiles[0]} × {tiles[1]} | {float((out - sdpa).abs().max()):.1e} | "
                f"{float((out - dense).abs().max()):.1e} |")
display(Markdown("\n".join(rows)))

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Which tiles are computed
#
# `flash.tile_schedule` lists, for each query block and key block, whether the tile is computed whole, cut by
# the causal diagonal (computed, then masked), or skipped. Causal, 1,024 tokens, 128 × 128 tiles:

# %% slideshow={"slide_type": "-"}
schedule = flash.tile_schedule(1024, 1024, 128, 128, causal=True)
kinds = {"full": 2, "partial": 1, "skipped": 0}
grid = torch.tensor([[kinds[c] for c in r] for r in schedule])
fig, ax = plt.subplots(figsize=(6.0, 4.0))
cmap = plt.matplotlib.colors.ListedColormap(["#eeeeee", COLORS["index"], COLORS["query"]])
ax.imshow(grid.numpy(), cmap=cmap, vmin=0, vmax=2)
ax.set(xlabel="key block j", ylabel="query block i", title="causal, n = 1,024, B_r = B_c = 128")
handles = [plt.matplotlib.patches.Patch(facecolor=c, edgecolor=COLORS["muted"], label=lab)
           for c, lab in ((COLORS["query"], "full"), (COLORS["index"], "partial (diagonal)"), ("#eeeeee", "skipped"))]
ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=9)
plt.show()
counts = {kind: sum(r.count(kind) for r in schedule) for kind in kinds}
display(Markdown(
    f"{counts['full']} tiles full, {counts['partial']} on the diagonal, {counts['skipped']} of "
    f"{grid.numel()} skipped ({counts['skipped'] / grid.numel():.0%}): the causal mask saves almost half the work "
    "and the reads, not only hides the entries."
))

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### In the tiny model
#
# The course's tiny GQA model (chapter 6) reads a sentence; layer 1's queries, keys and values go once through
# its own attention (`grouped_attention`, which builds the weights) and once through the tiled forward, with
# its 4 query heads sharing 2 K/V heads.

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "-"} tags=["hide-input"]
model = load_checkpoint("tiny_gqa").requires_grad_(False)
tok = load_tokenizer()
ids = torch.tensor([tok.encode("Return a new sorted list from the items in iterable; the sort is stable, "
                               "so equal items keep their order.")])
attn = model.blocks[1].attn
q_t, k_t, v_t = attn.project(layer_input(model, ids, 1))  # q (1, 4, n, 16), k and v (1, 2, n, 16)
plain, w_plain = grouped_attention(q_t, k_t, v_t, causal=True)
tiled, lse_t = flash.flash_attention(q_t, k_t, v_t, causal=True, block_q=8, block_k=8)
display(Markdown(
    f"{ids.shape[1]} tokens; q {tuple(q_t.shape)}, k and v {tuple(k_t.shape)}. The layer's own attention "
    f"materialises weights of shape {tuple(w_plain.shape)}; the tiled forward keeps only L, "
    f"{tuple(lse_t.shape)}. Largest difference of the outputs in float32: "
    f"{float((plain - tiled).abs().max()):.1e}."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 4. How many bytes move
#
# The FlashAttention paper counts accesses to HBM (§3.2, Theorem 2). Standard attention reads Q and K, writes
# $S$, reads $S$, writes $P$, reads $P$ and $V$, writes $O$: $\Theta(Nd + N^2)$. The tiled forward reads each
# query block once and streams K and V past it, so K and V are read $\lceil N/B_r \rceil$ times: with $B_r$
# proportional to the SRAM size $M$ over $d$, $\Theta(N^2 d^2 / M)$. `attnlab.costs` writes both counts:

# %% slideshow={"slide_type": "-"}
show_source(costs.flash_attention_hbm_bytes, start="rows = flash_key_rows_loaded", stop="return")

# %% slideshow={"slide_type": "subslide"}
lengths = [2**p for p in range(10, 18)]
d = 128
standard = [costs.standard_attention_hbm_bytes(n, n, d, "bfloat16")["total"] for n in lengths]
tiled = {b_r: [costs.flash_attention_hbm_bytes(n, n, d, b_r, 64, "bfloat16", causal=True)["total"] for n in lengths]
         for b_r in (64, 128)}
floor = [4 * n * d * 2 for n in lengths]  # Q, K, V read once and O written once
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11.5, 4.2))
ax1.loglog(lengths, [b / 1e9 for b in standard], "o-", color=COLORS["cache"], label="standard (writes S, P)")
ax1.loglog(lengths, [b / 1e9 for b in tiled[128]], "s-", color=COLORS["query"], label="tiled, B_r = 128, causal")
ax1.loglog(lengths, [b / 1e9 for b in tiled[64]], "^-", color=COLORS["latent"], label="tiled, B_r = 64, causal")
ax1.loglog(lengths, [b / 1e9 for b in floor], "--", color=COLORS["muted"], label="Q, K, V, O once each")
ax1.set(xlabel="sequence length n", ylabel="GB moved through HBM, one head",
        title=f"HBM traffic, d = {d}, bfloat16")
ax2.loglog(lengths, [costs.score_bytes_not_written(n, n, "bfloat16") / 1e9 for n in lengths], "o-",
           color=COLORS["cache"], label="standard: S and P")
ax2.loglog(lengths, [4 * n / 1e9 for n in lengths], "s-", color=COLORS["query"], label="tiled: L, float32")
ax2.set(xlabel="sequence length n", ylabel="GB written besides O, one head", title="What is stored")
for ax in (ax1, ax2):
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="upper left")
fig.tight_layout()
plt.show()

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "subslide"} tags=["hide-input"]
n_big = lengths[-1]
io_std = costs.standard_attention_hbm_bytes(n_big, n_big, d, "bfloat16")
io_128 = costs.flash_attention_hbm_bytes(n_big, n_big, d, 128, 64, "bfloat16", causal=True)
io_full = costs.flash_attention_hbm_bytes(n_big, n_big, d, 128, 64, "bfloat16")
sram = costs.flash_sram_bytes(128, 64, d, "bfloat16")["total"]
display(Markdown(
    f"Both traffic curves grow as n²: the tiled form still streams K and V once per query block. What changes is "
    f"the constant. At n = {n_big:,} the standard form moves {format_bytes(io_std['total'])}, of which "
    f"{format_bytes(2 * costs.score_bytes_not_written(n_big, n_big, 'bfloat16'))} is S and P written and read "
    f"back; the tiled form with 128 × 64 tiles moves {format_bytes(io_128['total'])} causal "
    f"({format_bytes(io_full['total'])} without the mask), {io_std['total'] / io_128['total']:.1f}× less. "
    f"Per key row read, standard attention pays about 4 n bytes of S and P traffic, the tiled form "
    f"(d + d_v) × 2 bytes once per query block, so the ratio is about 2 B_r / d without the mask: larger "
    f"tiles, which need more SRAM ({flash_ui.kib(sram)} for these), save more. FlashAttention picks "
    f"B_c = ⌈M/4d⌉ and B_r = min(B_c, d) for an SRAM of M numbers.\n\n"
    f"The decisive saving is the right panel: the standard form writes "
    f"{format_bytes(costs.score_bytes_not_written(n_big, n_big, 'bfloat16'))} of S and P for one head, the "
    f"tiled form writes {format_bytes(4 * n_big)} of L. Memory grows as n instead of n², so contexts that "
    f"could not fit become possible, and one fused kernel replaces three."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 5. Split-KV decoding and the log-sum-exp merge
#
# Decoding has one query per sequence and head: the tiled forward is then a single query block streaming the
# whole cache, so a small batch gives the GPU fewer units of work than it has multiprocessors (over a hundred)
# and most of them idle. **FlashDecoding** (Dao, Haziza, Massa and Sizov, 2023) splits the cached keys into
# chunks, attends each chunk in parallel, getting a partial output $O_c$ normalised over its own keys and its
# log-sum-exp $L_c$, and merges:
#
# $$L = \log \sum_c e^{L_c}, \qquad O = \sum_c e^{L_c - L}\, O_c.$$
#
# $e^{L_c}$ is chunk $c$'s softmax denominator, so $e^{L_c - L}$ is its share of the total: the merge is exact.
# DeepSeek's FlashMLA combines its splits with this formula (its `flash_fwd_mla_combine_kernel` reads each
# split's output and `softmax_lse`), and sparse attention kernels that attend to gathered blocks of tokens
# combine the blocks the same way.

# %% slideshow={"slide_type": "-"}
show_source(flash.merge_partials, start="lse_c = torch.stack", stop="return")

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "subslide"} tags=["hide-input"]
g = torch.Generator().manual_seed(5)
q_dec = torch.randn(1, 8, 1, 64, generator=g, dtype=torch.float64)  # one new token, 8 query heads
k_cache = torch.randn(1, 2, 4096, 64, generator=g, dtype=torch.float64)  # 4,096 cached tokens, 2 K/V heads
v_cache = torch.randn(1, 2, 4096, 64, generator=g, dtype=torch.float64)
merged, lse_m, partials = flash.split_kv_attention(q_dec, k_cache, v_cache, n_splits=8, causal=True)
dense, dense_lse = flash.flash_attention(q_dec, k_cache, v_cache, causal=True)
shares = torch.stack([torch.exp(l_c - lse_m) for _, l_c in partials])[:, 0, 0, 0]  # head 0's chunk weights
averaged = torch.stack([o_c for o_c, _ in partials]).mean(dim=0)
display(Markdown(
    f"8 chunks of 512 cached tokens each. Head 0's chunks weigh "
    f"{', '.join(f'{float(s):.3f}' for s in shares)} (they sum to {float(shares.sum()):.6f}). The merged output "
    f"differs from attention over all 4,096 keys at once by {float((merged - dense).abs().max()):.1e}, and its "
    f"log-sum-exp by {float((lse_m - dense_lse).abs().max()):.1e}. Averaging the partial outputs instead would be "
    f"off by {float((averaged - dense).abs().max()):.3f}."
))

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### The same merge for MLA
#
# Absorbed MLA (chapter 8) decodes as multi-query attention over the cache: every head's query
# $[W^{UK\top}_i q^C_i;\ q^R_i]$ meets the same keys $[c^{KV}_t;\ k^R_t]$, and the values are the latents
# $c^{KV}_t$ themselves. So split-KV attention runs it unchanged, with one K/V head and $d_v = d_c$; FlashMLA
# splits DeepSeek's latent cache the same way. The tiny MLA model's layer 1, decoding the last token of the
# sentence, in 4 chunks:

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "-"} tags=["hide-input"]
mla_model = load_checkpoint("tiny_mla").requires_grad_(False)
mla = mla_model.blocks[1].attn
x_m = layer_input(mla_model, ids, 1)  # (1, n, d_model)
positions = torch.arange(ids.shape[1])
q_nope, q_rope = mla.queries(x_m[:, -1:], positions[-1:])  # the newest token: (1, 1, h, d_h), (1, 1, h, d_h^R)
c_kv, k_rope = mla.latents(x_m, positions)  # the cache: (1, n, d_c), (1, n, d_h^R)
want, _ = mla.attend_absorbed(q_nope, q_rope, c_kv, k_rope, None)  # the layer's own decode, (1, 1, h, d_v)
q_abs = torch.cat([torch.einsum("bshd,hdc->bshc", q_nope, mla.w_uk), q_rope], dim=-1).transpose(1, 2)
keys = torch.cat([c_kv, k_rope], dim=-1)[:, None]  # (1, 1, n, d_c + d_h^R): one K/V head for all heads
o_latent, _, _ = flash.split_kv_attention(q_abs, keys, c_kv[:, None], n_splits=4, scale=mla.config.softmax_scale)
o_mla = torch.einsum("bhsc,hvc->bshv", o_latent, mla.w_uv)  # W^UV_i after the merge, as in chapter 8
display(Markdown(
    f"Queries {tuple(q_abs.shape)}, keys {tuple(keys.shape)}, values {tuple(c_kv[:, None].shape)}: "
    f"{mla.config.n_heads} heads share one latent K/V head of width {keys.shape[-1]} (values {c_kv.shape[-1]}). "
    f"Split into 4 chunks, merged, then multiplied by W^UV, the output differs from the layer's absorbed "
    f"decode by {float((o_mla - want).abs().max()):.1e} in float32."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 6. Explore: tile sizes and memory traffic
#
# Slide the tile sizes $B_r$ and $B_c$, the sequence length and the head width. The table shows
# what one head moves through HBM in the standard and the tiled form (causal, bfloat16), and the SRAM one query
# block needs against the shared memory a thread block may use on an H100. Every value comes from
# `attnlab.costs`.

# %% slideshow={"slide_type": "-"}
explorer = flash_ui.tile_explorer(length=16_384, head_dim=128, block_q=128, block_k=64)
explorer

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "subslide"} tags=["hide-input"]
small, big = flash_ui.tile_figures(16_384, 128, 32, 64), flash_ui.tile_figures(16_384, 128, 256, 256)
display(Markdown(
    f"With B_r = 32 the tiled form moves {format_bytes(small['tiled']['total'])}, "
    f"{small['ratio']:.2f}× the standard form's traffic: K and V are streamed {16_384 // 32} times. With "
    f"256 × 256 tiles it moves {big['ratio']:.1f}× less than the standard form, but one query block then needs "
    f"{flash_ui.kib(big['sram']['total'])} of SRAM, {'within' if big['fits'] else 'more than'} an H100 thread "
    "block's share: the tile sizes are a trade between traffic and what fits on chip."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 7. On this CPU
#
# `python -m attnlab.flash --bench` timed one causal forward in three forms: chapter 3's `attention_matrix`,
# PyTorch's fused `scaled_dot_product_attention`, and the tiled Python loop of this chapter, and counted each
# form's peak of allocated tensor memory. The numbers below are the stored run,
# `lib/attnlab/data/bench_flash_cpu.json`, not a live timing.

# %% slideshow={"slide_type": "-"}
bench = flash.load_benchmark()
by = {(r["length"], r["form"]): r for r in bench["rows"]}
bench_lengths = sorted({r["length"] for r in bench["rows"]})
rows = ["| n | matrix form | SDPA | tiled (Python) | peak memory: matrix | SDPA | tiled | one score matrix |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|"]
for n in bench_lengths:
    t = {f: by[n, f]["time_s"] * 1e3 for f in flash.BENCH_FORMS}
    mem = {f: by[n, f]["peak_bytes"] / 2**20 for f in flash.BENCH_FORMS}
    rows.append(f"| {n:,} | {t['matrix']:.1f} ms | {t['sdpa']:.1f} ms | {t['tiled']:.1f} ms | "
                f"{mem['matrix']:.1f} MiB | {mem['sdpa']:.2f} MiB | {mem['tiled']:.2f} MiB | "
                f"{by[n, 'matrix']['score_bytes'] / 2**20:.0f} MiB |")
shape = bench["shape"]
display(Markdown(f"**{bench['cpu']}**, torch {bench['torch_version']}, {bench['threads']} thread; batch "
                 f"{shape['batch']}, {shape['n_heads']} heads of {shape['head_dim']}, {shape['dtype']}, causal; "
                 f"tiles {shape['block_q']} × {shape['block_k']}; median of {bench['repeats']} calls:\n\n"
                 + "\n".join(rows)))

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "subslide"} tags=["hide-input"]
top = bench_lengths[-1]
slower = by[top, "tiled"]["time_s"] / by[top, "sdpa"]["time_s"]
vs_matrix = by[top, "matrix"]["time_s"] / by[top, "tiled"]["time_s"]
display(Markdown(
    f"**Time.** On this CPU the tiled loop in Python is {slower:.1f}× slower than SDPA at n = {top:,}: every tile "
    f"is a handful of separate PyTorch calls, each reading and writing its small tensors through the caches, "
    f"while SDPA runs one fused C++ kernel (itself a tiled, online-softmax loop). It is "
    f"{'faster' if vs_matrix > 1 else 'slower'} than chapter 3's matrix form ({vs_matrix:.1f}×), which spends "
    "its time writing and reading whole score matrices. A CPU has no small, fast, programmer-managed SRAM "
    "for tiles to live in, so the speed-up FlashAttention is known for belongs to GPUs, with the loop written "
    "as one kernel.\n\n"
    f"**Memory.** The saving is real here too: at n = {top:,} the matrix form allocated "
    f"{by[top, 'matrix']['peak_bytes'] / 2**20:.0f} MiB at its peak, "
    f"{by[top, 'matrix']['peak_bytes'] / by[top, 'matrix']['score_bytes']:.1f}× one score matrix (scores, mask, "
    f"exponentials, weights), while the tiled loop peaked at {by[top, 'tiled']['peak_bytes'] / 2**20:.2f} MiB: the "
    f"output, L and one tile at a time. (Counted by a PyTorch dispatch mode: the bytes of every tensor the "
    "operations return; scratch that SDPA's kernel allocates inside itself is not seen.)"
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 8. What it costs
#
# FlashAttention changes where the numbers live, not what is computed: the FLOPs are those of standard
# attention, plus the rescaling of $\ell$ and $\tilde O$ once per tile. It adds one float32 $L$ per query row to
# what is written, so the backward pass can recompute each tile of $P$ from $Q$, $K$ and $L$ instead of
# storing it (one more $QK^\top$, paid for with far fewer bytes). It caches nothing new: the KV cache is the
# scheme's own.

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "-"} tags=["hide-input"]
from attnlab.attention import attention_flops

n, d, heads = 32_768, 128, 32
flops = attention_flops(n, n, d, n_heads=heads)
rescale = heads * n * (n // 64) * (d + 1)  # alpha * l and alpha * O~: d + 1 multiplies per row and key block
std = costs.standard_attention_hbm_bytes(n, n, d, "bfloat16", n_heads=heads)
til = costs.flash_attention_hbm_bytes(n, n, d, 128, 64, "bfloat16", causal=True, n_heads=heads)
rows = [f"| one layer, {heads} heads of {d}, n = {n:,}, bfloat16 | standard | tiled (128 × 64, causal) |",
        "|---|---:|---:|",
        f"| FLOPs of QKᵀ and PV (no causal saving) | {flops / 1e12:.2f} T | {flops / 1e12:.2f} T "
        f"(+ {rescale / 1e9:.1f} G of rescaling) |",
        f"| HBM traffic | {format_bytes(std['total'])} | {format_bytes(til['total'])} |",
        f"| written besides O | {format_bytes(costs.score_bytes_not_written(n, n, 'bfloat16', n_heads=heads))} (S, P) "
        f"| {format_bytes(til['write L'])} (L) |",
        f"| SRAM per query block | – | {flash_ui.kib(costs.flash_sram_bytes(128, 64, d, 'bfloat16')['total'])} |"]
display(Markdown("\n".join(rows)))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercises
#
# Each exercise has an answer cell (replace `None`) and a check cell. Worked solutions are in
# `notebooks/solutions/ch15.py`; try first.
#
# **Exercise 1.** Write one step of the online softmax with the output. `online_step(m, l, o, s, v)` takes the
# running max `m` and sum `l` (0-dim tensors), the unnormalised output `o` of shape `(d_v,)`, a block of scores
# `s` `(B,)` and its values `v` `(B, d_v)`, and returns the new `(m, l, o)`. The check folds rows in block by
# block and compares `o / l` with `softmax(s) @ v`. The draft below has a slip; fix it, then set
# `answer_online_step = online_step`.

# %% slideshow={"slide_type": "-"}
def online_step(m, l, o, s, v):  # noqa: E741
    """A first draft: the sum is rescaled when the maximum moves, the output is not yet."""
    m_new = torch.maximum(m, s.max())
    alpha = torch.exp(m - m_new)
    p = torch.exp(s - m_new)
    return m_new, alpha * l + p.sum(), o + p @ v


answer_online_step = None

# %% slideshow={"slide_type": "-"}
print(ch15.check_online_step(answer_online_step))

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Exercise 2.** Merge two partial results. `merge(o1, lse1, o2, lse2)` takes the attention outputs `o_c`
# `(n_q, d_v)` of two disjoint sets of keys, each normalised over its own keys, and their log-sum-exps `lse_c`
# `(n_q,)`, and returns `(o, lse)` for all the keys together. Do not call `flash.merge_partials`.

# %% slideshow={"slide_type": "-"}
answer_merge = None

# %% slideshow={"slide_type": "-"}
print(ch15.check_merge(answer_merge))

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Exercise 3.** Predict, then check. One head, a causal prefill of $n = 4096$ tokens, $d = d_v = 128$,
# bfloat16, tiles $B_r = 128$, $B_c = 64$. How many bytes of K and V does the tiled forward read from HBM? A
# query block loads whole key blocks up to the one that holds its last query's position. Work it out on paper,
# give an int, then run the check.

# %% slideshow={"slide_type": "-"}
answer_kv_bytes = None

# %% slideshow={"slide_type": "-"}
print(ch15.check_kv_bytes(answer_kv_bytes))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Summary
#
# * The online softmax keeps a running maximum $m$ and sum $\ell$ and rescales by $e^{m_\text{old} - m_\text{new}}$
#   when the maximum moves, so a row's softmax needs one pass and no stored row.
# * The tiled forward applies it to an unnormalised output too: tiles of $B_r$ queries by $B_c$ keys, each
#   score tile made, used and dropped on chip; the output divided by $\ell$ once; $L = m + \log \ell$ kept per
#   row. It equals SDPA and chapter 3's matrix form to rounding, and skips tiles above the causal diagonal.
# * The $n \times n$ scores are never written: memory grows as $n$, not $n^2$. HBM traffic stays quadratic
#   but smaller by a factor set by the tile size, $\Theta(N^2 d^2/M)$ against $\Theta(Nd + N^2)$.
# * Split-KV decoding attends chunks of the cache in parallel and merges them exactly with their log-sum-exps;
#   FlashMLA and sparse attention kernels combine partial results the same way.
# * On a CPU, in Python, the loop is slower than PyTorch's fused kernel; what it shows is the arithmetic the
#   GPU kernels run.
