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
# # Chapter 3 · Attention in matrix form
#
# *Video chapter at 04:26.*
#
# > **What you will learn:** attention for a whole sequence as matrix products, the causal mask, multi-head
# > attention with its projections, and how head widths are chosen.
# >
# > **What it assumes:** [chapter 2](02_attention_vector_form.ipynb); matrix multiplication.
#
# Chapter 2 computed attention for one query with a loop over the keys. A sequence of n tokens has n
# queries, one per position, and all of them attend at once. Stacking the vectors into matrices turns
# n² dot products into a single matrix product, which is what GPUs are built for. This chapter writes
# attention in matrix form, adds the **causal mask** that keeps a language model from reading the
# future, splits the work into **heads**, looks at what the heads of a trained model attend to, and
# meets the price: the n × n score matrix, the quadratic wall that the rest of the course works around.

# %% slideshow={"slide_type": "skip"}
import math

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from IPython.display import Markdown, display

from attnlab import figures, show_source, sizing
from attnlab.attention import attention_flops, attention_matrix, attention_vector, causal_mask, softmax
from attnlab.devices import dtype_bytes
from attnlab.exercises import ch03
from attnlab.gqa import GroupedQueryAttention
from attnlab.interactive import attention as ia
from attnlab.model import load_checkpoint
from attnlab.plots import COLORS
from attnlab.tokenization import load_tokenizer

torch.manual_seed(0)
plt.rcParams.update({"font.size": 11, "axes.titlesize": 12})
tok = load_tokenizer()

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### The idea, animated
#
# The chapter in one short animation. It plays here once the videos are rendered (`./course animations`);
# until then, and in static exports, the last frame stands in.

# %% slideshow={"slide_type": "-"}
from attnlab.media import show_animation

show_animation("AttentionMatrixScene")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 1. Every dot product at once: $QK^\top$
#
# Put the n queries in the rows of a matrix $Q$ (n × d), the keys in the rows of $K$ (n × d) and the
# values in the rows of $V$ (n × d_v). Entry (i, j) of $QK^\top$ is $q_i \cdot k_j$, so one product gives
# every score:
#
# $$S = \frac{Q K^\top}{\sqrt d} \in \mathbb{R}^{n \times n},\qquad
# A = \operatorname{softmax}_{\text{row}}(S + M),\qquad O = A V \in \mathbb{R}^{n \times d_v}.$$
#
# Row i of $A$ holds query i's weights over all keys, exactly the vector of chapter 2; row i of $O$ is
# its output. $M$ is the mask of section 2. A five-token example, with random vectors standing in for what
# a trained layer would compute:

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "-"} tags=["hide-input"]
phrase = "The value is returned"
labels = ia.token_labels(tok, tok.encode(phrase))
n, d = len(labels), 4
gen = torch.Generator().manual_seed(0)
Q, K, V = (torch.randn(n, d, generator=gen) for _ in range(3))  # each (n, d)
S = Q @ K.T / math.sqrt(d)  # (n, n): S[i, j] = q_i · k_j / √d

loop = torch.tensor([[float(Q[i] @ K[j]) / math.sqrt(d) for j in range(n)] for i in range(n)])
display(Markdown(
    f"`{phrase}` is {n} tokens: {', '.join(f'`{t}`' for t in labels)} (`·` is a space). With d = {d}, "
    f"`Q @ K.T / √d` has shape {tuple(S.shape)}, and it equals the {n * n} dot products taken one by one: "
    f"**{torch.allclose(S, loop, atol=1e-6)}**."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 2. The causal mask
#
# A language model is trained to predict every next token of a text **in one pass**: position i
# predicts token i + 1. If position i could attend to position i + 1, it would simply read the answer,
# and the model would learn nothing usable for generating text, where the future does not exist yet.
# So query i may only look at keys j ≤ i. The mask adds 0 where a query may look and $-\infty$ where it
# may not:
#
# $$M_{ij} = \begin{cases} 0 & j \le i \\ -\infty & j > i \end{cases}\qquad
# e^{-\infty} = 0 \;\Rightarrow\; A_{ij} = 0 \text{ for every } j > i .$$

# %% slideshow={"slide_type": "-"}
mask = causal_mask(n, n)  # (n, n) boolean, True = may attend
masked = S.masked_fill(~mask, float("-inf"))
A = softmax(masked)  # row-wise: each row sums to 1


def annotate(ax, matrix, fmt, dark_above):
    """Write each entry of ``matrix`` in its cell (-inf as −∞), in white where |entry| > dark_above."""
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            v = float(matrix[i, j])
            text = "−∞" if v == float("-inf") else fmt.format(v)
            ax.text(j, i, text, ha="center", va="center", fontsize=10,
                    color="white" if math.isfinite(v) and abs(v) > dark_above else "black")


fig, axes = plt.subplots(1, 3, figsize=(11.5, 4.2))
panels = [(S, "scores S = QKᵀ/√d", "RdBu_r", "{:+.2f}"),
          (masked, "S + M (future hidden)", "RdBu_r", "{:+.2f}"),
          (A, "A = softmax(S + M), row by row", "Blues", "{:.2f}")]
for ax, (mat, title, cmap, fmt) in zip(axes, panels, strict=True):
    shown = mat.masked_fill(torch.isinf(mat), float("nan"))
    lim = float(S.abs().max())
    vmin, vmax = (0.0, 1.0) if cmap == "Blues" else (-lim, lim)
    ax.imshow(shown.numpy(), cmap=cmap, vmin=vmin, vmax=vmax)
    ax.set_facecolor("#dddddd")  # the hidden (future) cells
    annotate(ax, mat, fmt, dark_above=0.6 * vmax)
    ax.set_xticks(range(n), labels, rotation=45, ha="right")
    ax.set_yticks(range(n), labels)
    ax.set_xlabel("key j")
    ax.set_title(title)
axes[0].set_ylabel("query i")
fig.tight_layout()
plt.show()

display(Markdown(
    f"The mask is the lower triangle, diagonal included ({int(mask.sum())} of {n * n} entries): a token "
    f"may look at itself and everything before it. After the softmax the largest weight above the "
    f"diagonal is exactly {float(A[~mask].max())}, and every row still sums to 1: "
    f"**{torch.allclose(A.sum(-1), torch.ones(n))}**. The first token can only attend to itself: its "
    f"weight is {float(A[0, 0]):.1f}."
))

# %% [markdown] slideshow={"slide_type": "subslide"}
# The mask really does cut the future off. Change the key and value of the last token, and compare every
# output before it, with and without the mask:

# %% slideshow={"slide_type": "-"}
K2, V2 = K.clone(), V.clone()
K2[-1], V2[-1] = torch.randn(d, generator=gen), torch.randn(d, generator=gen)  # a different last token
for causal in (True, False):
    before, _ = attention_matrix(Q, K, V, causal=causal)
    after, _ = attention_matrix(Q, K2, V2, causal=causal)
    change = (after[:-1] - before[:-1]).abs().max()  # outputs of tokens 0 .. n-2
    display(Markdown(f"`causal={causal}`: largest change in the outputs of the first {n - 1} tokens: "
                     f"**{float(change):.3g}**"))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 3. The library's `attention_matrix`
#
# Two `einsum`s and a masked softmax. The `...` in the index strings lets the same code take any leading
# dimensions, such as (batch, heads). The scores:

# %% slideshow={"slide_type": "-"}
show_source(attention_matrix, start="scale = 1.0", stop="scores = torch.einsum")

# %% [markdown] slideshow={"slide_type": "-"}
# and, after the causal mask (and an optional mask of the caller's) has been combined into `allowed`:

# %% slideshow={"slide_type": "-"}
show_source(attention_matrix, start="if allowed is not None", stop='return torch.einsum("...qk')

# %% [markdown] slideshow={"slide_type": "subslide"}
# It must agree with the loop of chapter 2 (`attention_vector` for each query, over keys 0..i) and with
# PyTorch's fused `scaled_dot_product_attention`, on random inputs with a batch of 2 and 4 heads:

# %% slideshow={"slide_type": "-"}
gen = torch.Generator().manual_seed(1)
tolerance = {torch.float32: 1e-5, torch.float64: 1e-12}
rows = ["| dtype | tolerance | equals the loop of chapter 2 | equals PyTorch SDPA (is_causal=True) |",
        "|---|---|---|---|"]
diffs = []
for dtype, tol in tolerance.items():
    q, k, v = (torch.randn(2, 4, 40, 16, generator=gen, dtype=dtype) for _ in range(3))  # (b, h, n, d)
    out, _ = attention_matrix(q, k, v, causal=True)
    looped = torch.stack([
        torch.stack([
            torch.stack([attention_vector(q[b, h, i], k[b, h, : i + 1], v[b, h, : i + 1])[0] for i in range(40)])
            for h in range(4)])
        for b in range(2)])
    sdpa = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    d_loop, d_sdpa = float((out - looped).abs().max()), float((out - sdpa).abs().max())
    diffs.append((dtype, d_loop, d_sdpa))
    rows.append(f"| {str(dtype).removeprefix('torch.')} | {tol:g} | **{d_loop < tol}** | **{d_sdpa < tol}** |")
display(Markdown("\n".join(rows)))

# %% slideshow={"slide_type": "subslide"}
# NBVAL_IGNORE_OUTPUT
# The last bits of a float sum depend on the CPU's vector instructions, so these numbers vary by machine.
for dtype, d_loop, d_sdpa in diffs:
    name = str(dtype).removeprefix("torch.")
    print(f"{name}: largest |difference| from the loop {d_loop:.1e}, from SDPA {d_sdpa:.1e}")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 4. Multi-head attention
#
# One attention pattern per layer is limiting: a token may need the previous word for grammar and a
# name ten tokens back for meaning. **Multi-head attention** runs H attentions side by side, each in its
# own space of width $d_h$ with its own projections, and joins them (the original Transformer, and this
# course's tiny model, choose $d_h = d_\text{model} / H$; section 4's last cell shows that real models need not):
#
# $$\text{head}_h = \operatorname{Attention}(X W^Q_h,\; X W^K_h,\; X W^V_h),\qquad
# \operatorname{MultiHead}(X) = \operatorname{Concat}(\text{head}_1, \dots, \text{head}_H)\, W^O .$$
#
# In code there is one big $W^Q$ ($d_\text{model} \times d_\text{model}$); its output is cut into H
# slices of width $d_h$ with a `view`, and a `transpose` puts the heads before the sequence so each head
# is a separate (n × d_h) problem. The course's layer (which also handles the shared-KV variants of later
# chapters; here `n_kv_heads = n_heads`):

# %% slideshow={"slide_type": "-"}
show_source(GroupedQueryAttention.project, start="b, s, _ = x.shape", stop="v = self.w_v(x)")

# %% slideshow={"slide_type": "-"}
show_source(GroupedQueryAttention.forward, start="out, weights = grouped_attention", stop="y = self.w_o")

# %% [markdown] slideshow={"slide_type": "subslide"}
# The course's tiny language model, `tiny_mha`, trained on Python's documentation. We rebuild one of its
# attention layers by hand from `project`, `attention_matrix` and $W^O$, and compare with the layer
# itself. (`project` also rotates q and k by position, RoPE, which a later chapter explains.)

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "-"} tags=["hide-input"]
model = load_checkpoint("tiny_mha").requires_grad_(False)  # inference only: no gradients
cfg = model.config
sentence = "If the class has an __init__ method, it is called with the arguments passed to the class."
ids = torch.tensor([tok.encode(sentence)])  # (1, n)
tokens = ia.token_labels(tok, ids[0].tolist())
layer = 1
attn = model.blocks[layer].attn

x = ia.layer_input(model, ids, layer)  # (b, n, d_model): what this layer reads
q, k, v = attn.project(x)  # each (b, H, n, d_h)
o, w = attention_matrix(q, k, v, causal=True)  # o (b, H, n, d_h), w (b, H, n, n)
concat = o.transpose(1, 2).reshape(1, ids.shape[1], cfg.d_model)  # (b, n, H * d_h): heads side by side
y = attn.w_o(concat)  # (b, n, d_model)

y_layer = attn(x).output  # the layer itself, (b, n, d_model)
shapes = [("X (layer input)", x), ("Q, K, V, split into heads", q), ("scores and weights A", w),
          ("O = AV per head", o), ("concat of the heads", concat), ("output, after W^O", y)]
rows = ["| tensor | shape |", "|---|---|"] + [f"| {name} | `{tuple(t.shape)}` |" for name, t in shapes]
display(Markdown("\n".join(rows)))
diff_layer = float((y - y_layer).abs().max())
display(Markdown(
    f"`tiny_mha` has {cfg.n_layers} layers of H = {cfg.n_heads} heads, $d_\\text{{model}}$ = {cfg.d_model}, "
    f"so $d_h$ = {cfg.d_model // cfg.n_heads}. On a sentence of {ids.shape[1]} tokens, the hand-built "
    f"layer {layer} matches the model's own output to within 1e-5: **{diff_layer < 1e-5}**."
))

# %% slideshow={"slide_type": "subslide"}
# NBVAL_IGNORE_OUTPUT
# The last bits of a float sum depend on the CPU's vector instructions, so this number varies by machine.
print(f"largest |difference| from the model's layer: {diff_layer:.1e}")

# %% [markdown] slideshow={"slide_type": "subslide"}
# $d_h = d_\text{model}/H$ is a choice, not part of the definition: $W^Q$ maps $d_\text{model}$ to
# $H d_h$, whatever the two are. Published configurations (`attnlab.sizing.MODELS`, each citing its
# config file):

# %% slideshow={"slide_type": "-"}
rows = ["| model | $d_\\text{model}$ | H | $d_h$ | H × $d_h$ | H × $d_h$ / $d_\\text{model}$ |",
        "|---|---:|---:|---:|---:|---:|"]
for key in ("llama-3-8b", "gemma-2-9b", "deepseek-v3"):
    spec = sizing.MODELS[key]
    width = spec.n_heads * spec.head_dim
    rows.append(f"| {spec.name} | {spec.hidden_size:,} | {spec.n_heads} | {spec.head_dim} | {width:,} | "
                f"{width / spec.hidden_size:.2f} |")
display(Markdown("\n".join(rows)))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 5. What the heads of a trained model do
#
# Nothing tells a head what to look for; training finds it. We measure three simple patterns for every
# head, as the mean weight a query puts on **the previous token**, on **the first token**, and on
# **itself** (queries 1..n-1; query 0 has no choice), averaged over four sentences:

# %% slideshow={"slide_type": "-"}
SENTENCES = {
    "class __init__": sentence,
    "return statement": "The return statement leaves the current function call with the expression list as "
                        "return value.",
    "for loop": "for i in range(10):\n    print(i * i)",
    "a b c d e f, twice": "a b c d e f a b c d e f",
}
all_maps = {label: ia.attention_maps(model, torch.tensor(tok.encode(text))) for label, text in SENTENCES.items()}
grid = ia.pattern_grid(list(all_maps.values()))  # {pattern: (n_layers, n_heads)}, averaged over sentences

fig, axes = plt.subplots(1, 3, figsize=(11.5, 3.2))
for ax, (p, g) in zip(axes, grid.items(), strict=True):
    ax.imshow(g.numpy(), cmap="Blues", vmin=0, vmax=1, aspect="auto")
    for lay in range(cfg.n_layers):
        for h in range(cfg.n_heads):
            ax.text(h, lay, f"{g[lay, h]:.2f}", ha="center", va="center", fontsize=9,
                    color="white" if g[lay, h] > 0.6 else "black")
    ax.set_xticks(range(cfg.n_heads))
    ax.set_yticks(range(cfg.n_layers))
    ax.set(xlabel="head", ylabel="layer", title=f"weight on {ia.PATTERNS[p]}")
fig.tight_layout()
plt.show()


ranked = {p: ia.rank_heads(list(all_maps.values()), p) for p in ia.PATTERNS}  # (layer, head, score), best first
lengths_ex = [len(tok.encode(text)) for text in SENTENCES.values()]
even = [causal_mask(m, m).double() / torch.arange(1, m + 1).unsqueeze(1) for m in lengths_ex]  # spread evenly
uniform = sum(ia.head_pattern_scores(e)["previous"] for e in even) / len(even)  # the same for all 3 patterns
prev, first, itself = ranked["previous"][0], ranked["first"][0], ranked["self"][0]


def against_even(score):
    return f"{score / uniform:.1f}× the even spread"


display(Markdown(
    f"A head spreading its weight evenly over the past would score {uniform:.0%} on each pattern for these "
    f"sentences. The strongest **previous-token head** is head {prev[1]} of layer {prev[0]}: on average "
    f"{prev[2]:.0%} of each query's weight goes to the token just before it, {against_even(prev[2])}. "
    f"The strongest **first-token head** is head {first[1]} of layer {first[0]} ({first[2]:.0%}, "
    f"{against_even(first[2])}), and the head that looks most at **the token itself** is head "
    f"{itself[1]} of layer {itself[0]} ({itself[2]:.0%}, {against_even(itself[2])}). "
    + ("Of the three, the previous-token pattern stands out most clearly in this small model."
       if prev[2] > max(first[2], itself[2]) else
       "The previous-token pattern is not the clearest one in this small model.")
))

# %% [markdown] slideshow={"slide_type": "subslide"}
# The three heads on a shorter sentence, darker = more weight (the percentages are for this sentence).
# Each row is a query, each column a key; the upper triangle is empty because of the causal mask. Heads
# that score low on all three patterns are doing something else: look for it in the widget below.

# %% slideshow={"slide_type": "-"}
chosen = []  # the best head for each pattern, skipping a head already chosen for another pattern
for p in ("previous", "first", "self"):
    lay, h, _ = next(r for r in ranked[p] if r[:2] not in [c[:2] for c in chosen])
    chosen.append((lay, h, p))

short = "A function definition defines a user-defined function object."
short_ids = tok.encode(short)
maps = ia.attention_maps(model, torch.tensor(short_ids))
heads = {}  # pick a head with the buttons, hover a cell for its token pair and weight
for lay, h, p in chosen:
    view = ia.map_view(maps, ia.token_labels(tok, short_ids), lay, h)
    title = f"layer {lay}, head {h}: {view['scores'][p]:.0%} of the weight on {ia.PATTERNS[p]}"
    heads[f"{p} (layer {lay}, head {h})"] = figures.heatmap_figure(view["weights"], view["tokens"], title=title)
figures.show(figures.choice_figure(heads), "ch03-three-heads")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 6. Try it
#
# Pick a sentence, a layer and a head. The repeated `a b c d e f` is worth a look: in its second half,
# does any head look back at the *earlier copy* of the current letter, or at the letter after it?

# %% slideshow={"slide_type": "-"}
explorer = ia.attention_map_explorer(model, tok, SENTENCES, layer=prev[0], head=prev[1])
explorer

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 7. What it costs
#
# For one head and n tokens, $QK^\top$ is $n \cdot n \cdot d$ multiply-adds and $AV$ another
# $n \cdot n \cdot d_v$: with $d_v = d$ and 2 FLOPs per multiply-add, **$4n^2d$ FLOPs**. And the plain
# algorithm stores the n × n scores: **$n^2$ numbers per head**, against $3nd$ for Q, K and V. Both grow
# with the square of the sequence length. For a head of width d = 128 in float32:

# %% slideshow={"slide_type": "-"}
d_head, elem = 128, dtype_bytes(torch.float32)
gpu_gib = 80  # the memory of a large data-centre GPU
lengths = [2**k for k in range(10, 21)]  # 1K .. 1M tokens
flops = [attention_flops(m, m, d_head) for m in lengths]  # 4 n^2 d
score_bytes = [m * m * elem for m in lengths]
qkv_bytes = [3 * m * d_head * elem for m in lengths]

rows = ["| tokens n | FLOPs 4n²d | score matrix n² | Q, K, V 3nd |", "|---|---|---|---|"]
for m, f, s, qkv in zip(lengths, flops, score_bytes, qkv_bytes, strict=True):
    if m in (2**10, 2**13, 2**16, 2**20):
        rows.append(f"| {m:,} | {f:.2e} | {s / 2**30:,.3f} GiB | {qkv / 2**20:,.1f} MiB |")
display(Markdown("\n".join(rows)))

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
ax1.loglog(lengths, flops, "o-", color=COLORS["cache"])
ax1.set(xlabel="sequence length n", ylabel="FLOPs, one head", title="Compute: 4n²d")
ax2.loglog(lengths, [b / 2**30 for b in score_bytes], "o-", color=COLORS["cache"], label="scores, n² (float32)")
ax2.loglog(lengths, [b / 2**30 for b in qkv_bytes], "s-", color=COLORS["query"], label="Q, K, V, 3nd")
ax2.axhline(gpu_gib, color=COLORS["muted"], ls="--", label=f"{gpu_gib} GiB GPU")
ax2.set(xlabel="sequence length n", ylabel="GiB, one head", title="Memory: the n × n wall")
ax2.legend(loc="upper left")
for ax in (ax1, ax2):
    ax.grid(alpha=0.3, which="both")
fig.tight_layout()
plt.show()

wall = math.isqrt(gpu_gib * 2**30 // elem)  # n at which one head's scores fill the GPU
tiny = cfg.n_layers * cfg.n_heads * cfg.max_seq_len**2 * elem
display(Markdown(
    f"Doubling n doubles Q, K and V but quadruples the scores and the FLOPs: at "
    f"{lengths[-1]:,} tokens the scores are {score_bytes[-1] / qkv_bytes[-1]:,.0f}× larger than Q, K and "
    f"V together. One head's scores alone fill {gpu_gib} GiB at n ≈ {wall:,} tokens. The tiny model "
    f"never feels it: at its full context of {cfg.max_seq_len} tokens, all {cfg.n_layers * cfg.n_heads} "
    f"of its score matrices take {tiny / 2**20:.0f} MiB. Long contexts need two fixes: not comparing every "
    f"query with every key (the sparse attention of chapters 10-12), and [never storing the scores whole]"
    f"(15_flash_attention.ipynb), which is how every production kernel computes attention (FlashAttention, "
    f"chapter 15: the scores are made and used tile by tile, with a running softmax)."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercises
#
# Each exercise has a cell to fill in and a check cell. Worked solutions are in
# `notebooks/solutions/ch03.py`; try first.
#
# **Exercise 1.** Write the causal mask: a function of `n` returning an `(n, n)` boolean tensor that is
# `True` where query i may attend to key j. Do not call `causal_mask` (the check notices).

# %% slideshow={"slide_type": "-"}
def my_causal_mask(n):
    """n -> (n, n) bool tensor, True where key j is not in query i's future."""
    ...


answer_causal_mask = None  # when it works: answer_causal_mask = my_causal_mask

# %% slideshow={"slide_type": "-"}
print(ch03.check_causal_mask(answer_causal_mask))

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Exercise 2.** Split a projected tensor into heads: `x` of shape `(batch, seq, d_model)` and `n_heads`
# give `(batch, n_heads, seq, d_h)` with $d_h = d_\text{model} / n_\text{heads}$, head h holding columns
# $h \cdot d_h$ to $(h+1) \cdot d_h - 1$ of x, as `GroupedQueryAttention.project` does.

# %% slideshow={"slide_type": "-"}
def my_split_heads(x, n_heads):
    """(batch, seq, d_model) -> (batch, n_heads, seq, d_model // n_heads)."""
    ...


answer_split_heads = None  # when it works: answer_split_heads = my_split_heads

# %% slideshow={"slide_type": "-"}
print(ch03.check_split_heads(answer_split_heads))

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Exercise 3.** The quadratic wall, by hand (the cell below states the numbers).

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "-"} tags=["hide-input"]
display(Markdown(
    f"A layer has {ch03.SCORE_HEADS} heads and the sequence is {ch03.SCORE_SEQ_LEN:,} tokens long. How many "
    f"GiB ($2^{{30}}$ bytes) do that layer's score matrices take in {str(ch03.SCORE_DTYPE).removeprefix('torch.')}"
    f" ({dtype_bytes(ch03.SCORE_DTYPE)} bytes per number)?"
))

# %% slideshow={"slide_type": "-"}
answer_score_gib = None

# %% slideshow={"slide_type": "-"}
print(ch03.check_score_gib(answer_score_gib))

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Exercise 4 (predict, then run).** Causal attention, one head, with no positional information of any
# kind. Shuffle the order of tokens 0 to n − 2 and leave the last token where it is. Does the last token's
# output change? Write `True` or `False` first; the check cell runs it and explains.

# %% slideshow={"slide_type": "-"}
prediction_last_output_changes = None  # True or False

# %% slideshow={"slide_type": "-"}
print(ch03.check_prediction_shuffled_past(prediction_last_output_changes))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Summary
#
# * $QK^\top$ computes every query-key score at once; row i of softmax$(QK^\top/\sqrt d + M)\,V$ is
#   chapter 2's answer for query i.
# * The causal mask puts $-\infty$ on the future so its softmax weights are exactly 0: a language model
#   trains on every position in one pass without seeing the token it must predict.
# * Multi-head attention cuts $d_\text{model}$ into H heads with their own patterns, then concatenates
#   them and mixes with $W^O$. A trained model's heads specialise: in the tiny model some read the
#   previous token; none parks on the first token (section 5 measured it), a habit of large models that
#   the "attention sinks" of long-context models put to use.
# * The cost is quadratic: $4n^2d$ FLOPs and an n × n score matrix per head.
