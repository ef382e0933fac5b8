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
# # Chapter 7 · Multi-head latent attention (MLA)
#
# *Video chapter at 13:32.*
#
# > **What you will learn:** multi-head latent attention: cache one small latent per token and rebuild every
# > head's key and value from it; the query latent; why a low-rank latent can work; the cache it saves.
# >
# > **What it assumes:** [chapters 4 to 6](04_kv_caching.ipynb); what a matrix's rank is (the chapter recalls
# > it).
#
# MQA and GQA (chapters 5 and 6) shrink the KV cache by letting heads **share** keys and values: fewer
# K/V heads, fewer numbers per token. DeepSeek-V2 ([arXiv 2405.04434](https://arxiv.org/abs/2405.04434))
# took another route. Every head keeps its own key and value, but the cache holds neither: it holds one
# small **latent vector** per token, and each head rebuilds its key and value from it with its own
# matrices. DeepSeek calls it **multi-head latent attention (MLA)**; DeepSeek-V3 and R1 use it unchanged.
#
# This chapter builds MLA's key/value path from the course library, measures what it caches, looks at
# the keys and values of a trained model to see why a latent can work at all, and computes the numbers
# that summaries of the video quote, with a verdict on each.

# %% slideshow={"slide_type": "skip"}
import matplotlib.pyplot as plt
import torch
from IPython.display import HTML, Markdown, display

from attnlab import corpus, costs, factcheck, figures, lowrank, plots, quality, show_source, sizing
from attnlab import evidence as E
from attnlab import evidence_plots as EP
from attnlab.exercises import ch07
from attnlab.interactive import mla as mla_widgets
from attnlab.mla import MultiHeadLatentAttention
from attnlab.model import load_checkpoint
from attnlab.plots import COLORS
from attnlab.sizing import MODELS, format_bytes, format_ratio
from attnlab.tokenization import load_tokenizer

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

show_animation("MLAScene")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 1. The idea: cache a latent, rebuild K and V
#
# For token $t$ with hidden state $h_t \in \mathbb{R}^d$, MLA computes one **down-projection** and caches
# only its result (DeepSeek-V2, eqs. 41, 42, 45; DeepSeek adds an RMSNorm on the latent, §3.1.2):
#
# $$c^{KV}_t = \mathrm{RMSNorm}\!\left(W^{DKV} h_t\right) \in \mathbb{R}^{d_c}
# \qquad \text{(cached)}$$
#
# Every head $i$ then **up-projects** the same latent with its own matrices:
#
# $$k^C_{t,i} = W^{UK}_i\, c^{KV}_t \in \mathbb{R}^{d_h}, \qquad
#   v^C_{t,i} = W^{UV}_i\, c^{KV}_t \in \mathbb{R}^{d_h}, \qquad i = 1, \dots, n_h .$$
#
# Stacked over heads, $k^C_t = W^{UK} c^{KV}_t$ with $W^{UK} \in \mathbb{R}^{n_h d_h \times d_c}$: a
# **low-rank factorisation** of the key projection, $W^K \approx W^{UK} W^{DKV}$, and likewise for
# values, through the *same* $c^{KV}_t$. Attention itself is ordinary multi-head attention on these keys
# and values. Position needs one more small cached vector, the decoupled RoPE key $k^R_t$ of width
# $d_h^R$, shared by all heads; chapter 9 explains why. Here is the path for one token, with
# DeepSeek-V3's widths:

# %% slideshow={"slide_type": "-"}
v3 = MODELS["deepseek-v3"]
d_c, d_h_rope = sizing.mla_dims(v3)
display(HTML(mla_widgets.latent_diagram_svg(n_heads=4, d_model=v3.hidden_size, d_c=d_c, d_h=v3.head_dim,
                                            d_h_rope=d_h_rope, total_heads=v3.n_heads)))
display(Markdown(
    f"Per token and layer the cache holds "
    f"$d_c + d_h^R$ = {d_c} + {d_h_rope} = **{d_c + d_h_rope}** numbers; the keys and values it stands for "
    f"would be $2 n_h d_h$ = 2 × {v3.n_heads} × {v3.head_dim} = **{2 * v3.n_heads * v3.head_dim:,}**."
))

# %% [markdown] slideshow={"slide_type": "subslide"}
# The **queries get a latent too** (DeepSeek-V2, eqs. 37-39): $c^Q_t = W^{DQ} h_t \in \mathbb{R}^{d'_c}$,
# then every head's $q^C_{t,i} = W^{UQ}_i c^Q_t$ and its RoPE part $q^R_{t,i} = W^{QR}_i c^Q_t$. This latent
# is **not cached**: queries are used once, by their own token. DeepSeek-V2 (§2.1.2) compresses them "to
# reduce the activation memory during training", which the latent's smaller width does, and it shrinks the
# query projection's weights too. Chapters 8 to 12 use it (DeepSeek's configs call $d'_c$ `q_lora_rank`);
# the course's tiny models, like DeepSeek-V2-Lite, project queries straight from $h_t$.

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "-"} tags=["hide-input"]
d_q = v3.q_lora_rank  # d'_c
q_width = v3.n_heads * (v3.head_dim + d_h_rope)  # n_h (d_h + d_h^R): every head's [q^C; q^R]
direct, factored = v3.hidden_size * q_width, v3.hidden_size * d_q + d_q * q_width
display(Markdown(
    f"{v3.name}: $d'_c$ = {d_q:,}. A direct query projection would be $d \\times n_h (d_h + d_h^R)$ = "
    f"{v3.hidden_size:,} × {q_width:,} = {direct / 1e6:.0f}M weights per layer; through the latent, "
    f"$W^{{DQ}}$ and $W^{{UQ}}$ (with $W^{{QR}}$) together hold {factored / 1e6:.1f}M, {direct / factored:.1f}× "
    "fewer. The cache does not change: it never held queries."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 2. The code
#
# `attnlab.mla.MultiHeadLatentAttention` follows DeepSeek's checkpoints: `w_dkv` holds $W^{DKV}$ and the
# RoPE key's $W^{KR}$ in one matrix, `kv_norm` is the RMSNorm, and `w_ukv` holds every head's
# $[W^{UK}_i; W^{UV}_i]$. What the cache stores for each new token:

# %% slideshow={"slide_type": "-"}
show_source(MultiHeadLatentAttention.latents, start="c_kv, k_rope =", stop="return")

# %% [markdown] slideshow={"slide_type": "-"}
# and how the plain ("naive") form rebuilds every head's keys and values from the cached latents, one
# einsum each (`c` is the latent index, `h` the head, `d` and `v` the key and value widths), with the one
# shared RoPE key appended to every head's key:

# %% slideshow={"slide_type": "-"}
show_source(MultiHeadLatentAttention.attend_naive, start="k = torch.einsum", stop="v = torch.einsum")

# %% [markdown] slideshow={"slide_type": "subslide"}
# The course's tiny language model comes in an MLA version, `tiny_mla`, trained on the same text with the
# same recipe as `tiny_mha` (chapter 3). Its layer shapes, read off the loaded weights:

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "-"} tags=["hide-input"]
tiny_mla = load_checkpoint("tiny_mla")
tiny_mha = load_checkpoint("tiny_mha")
layer = tiny_mla.blocks[0].attn
cfg = layer.config
rows = ["| weight | paper symbol | shape | role |", "|---|---|---|---|"]
rows += [
    f"| `w_dkv.weight` | $[W^{{DKV}}; W^{{KR}}]$ | {tuple(layer.w_dkv.weight.shape)} | "
    f"down-projection to the latent ({cfg.kv_lora_rank}) and the RoPE key ({cfg.qk_rope_head_dim}) |",
    f"| `kv_norm.weight` | RMSNorm gain | {tuple(layer.kv_norm.weight.shape)} | normalises the latent |",
    f"| `w_uk` (view of `w_ukv`) | $W^{{UK}}_i$ | {tuple(layer.w_uk.shape)} | one ($d_h$ × $d_c$) matrix per head |",
    f"| `w_uv` (view of `w_ukv`) | $W^{{UV}}_i$ | {tuple(layer.w_uv.shape)} | one ($d_v$ × $d_c$) matrix per head |",
    f"| `w_q.weight` | $[W^{{UQ}}; W^{{QR}}]$ | {tuple(layer.w_q.weight.shape)} | queries: "
    f"{cfg.n_heads} heads × ({cfg.qk_nope_head_dim} + {cfg.qk_rope_head_dim}) |",
    f"| `w_o.weight` | $W^O$ | {tuple(layer.w_o.weight.shape)} | output projection |",
]
display(Markdown("\n".join(rows)))

# %% [markdown] slideshow={"slide_type": "subslide"}
# One claim in a summary of the video says MLA "shares these projections across all heads", so that "the
# same matrices are used repeatedly by different heads". The **latent** is shared; the **up-projections
# are not**. Compare every pair of heads' $W^{UK}_i$ in the trained model:

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "-"} tags=["hide-input"]
w_uk = layer.w_uk.detach()  # (n_heads, d_h, d_c)
n_h = w_uk.shape[0]
flat = torch.nn.functional.normalize(w_uk.reshape(n_h, -1), dim=1)
cosine = flat @ flat.T  # cosine similarity between heads' W^UK_i, as vectors
off_diagonal = cosine[~torch.eye(n_h, dtype=torch.bool)]
display(Markdown(
    f"Across the {n_h * (n_h - 1) // 2} pairs of heads in layer 0, the cosine similarity of $W^{{UK}}_i$ and "
    f"$W^{{UK}}_j$ lies between {off_diagonal.min():+.2f} and {off_diagonal.max():+.2f} (1 would be the same "
    f"matrix). Verdict: {factcheck.verdict_label(factcheck.claim('shared_projections').verdict)}. One latent is "
    "shared by all heads (and by K and V); each head "
    "rebuilds its own key and value from it with its own, different matrices. That is what keeps MLA "
    "*multi-head*: the heads do not see the same keys."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 3. What is cached, measured
#
# Run the same 64-token prompt through `tiny_mla` and `tiny_mha` with a `KVCache`, decode 32 more tokens,
# and look at what the cache holds.

# %% slideshow={"slide_type": "-"}
tokenizer = load_tokenizer()
val_ids = tokenizer.encode(corpus.load_text("val"))
prompt = torch.tensor([val_ids[:64]])
caches = {}
with torch.no_grad():
    for name, model in (("mla", tiny_mla), ("mha", tiny_mha)):
        cache = caches[name] = model.new_cache()
        logits = model(prompt, cache=cache)
        for _ in range(32):
            logits = model(logits[:, -1:].argmax(-1), cache=cache)

mla_cache = caches["mla"]
shapes = ", ".join(f"`{k}` {tuple(v.shape)}" for k, v in mla_cache[0].tensors.items())
display(Markdown(f"After {mla_cache.seq_len} tokens, layer 0 of `tiny_mla` caches {shapes}: "
                 "(batch, tokens, width). No per-head key or value is stored anywhere."))

# %% slideshow={"slide_type": "subslide"}
c_mla, c_mha = tiny_mla.config, tiny_mha.config
element_bytes = tiny_mla.embed.weight.element_size()  # float32: 4
# The tiny models' shape, as sizing describes real models (head_dim = d_model / n_heads)
tiny_spec = sizing.ModelSpec(name="tiny_mla", source="attnlab.model.TinyLMConfig", n_layers=c_mla.n_layers,
                             n_heads=c_mla.n_heads, n_kv_heads=c_mla.n_heads, head_dim=c_mla.d_model // c_mla.n_heads,
                             attention="mla", hidden_size=c_mla.d_model, kv_lora_rank=c_mla.kv_lora_rank,
                             qk_rope_head_dim=c_mla.qk_rope_head_dim)
measured = {name: cache.bytes_per_token() for name, cache in caches.items()}
formula = (c_mla.kv_lora_rank + c_mla.qk_rope_head_dim) * c_mla.n_layers * element_bytes
predicted = {"mla": sizing.cache_bytes_per_token(tiny_spec, torch.float32),
             "mha": sizing.cache_bytes_per_token(tiny_spec, torch.float32, scheme="mha")}
rows = ["| model | measured `KVCache` bytes per token | formula | `sizing.cache_bytes_per_token` |",
        "|---|---:|---|---:|"]
rows.append(f"| tiny_mla | {measured['mla']:,.0f} | ($d_c$ + $d_h^R$) × layers × 4 B = ({c_mla.kv_lora_rank} + "
            f"{c_mla.qk_rope_head_dim}) × {c_mla.n_layers} × {element_bytes} = {formula:,} | {predicted['mla']:,} |")
rows.append(f"| tiny_mha | {measured['mha']:,.0f} | 2 $n_h d_h$ × layers × 4 B = 2 × {c_mha.n_heads} × "
            f"{c_mha.d_model // c_mha.n_heads} × {c_mha.n_layers} × {element_bytes} | {predicted['mha']:,} |")
display(Markdown("\n".join(rows)))
assert measured["mla"] == formula == predicted["mla"] and measured["mha"] == predicted["mha"]
display(Markdown(
    f"Measured, formula and `sizing` agree. The tiny MLA model caches **{measured['mha'] / measured['mla']:.2f}× "
    f"less** than the tiny MHA model, less than DeepSeek's ratio because its heads are narrow: "
    f"$d_c$ = 4 $d_h$ = {c_mla.kv_lora_rank} against $2 n_h d_h$ = {2 * tiny_spec.n_heads * tiny_spec.head_dim}."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 4. Why a latent can work: the keys and values of a trained model
#
# A latent of width $d_c$ can only produce keys (and values) that lie in a $d_c$-dimensional subspace. Do
# real keys and values need more? Take the trained **MHA** model, which was never asked to compress
# anything, run 2,048 tokens of held-out text through it, and stack each layer's keys into a matrix $K$
# of shape (tokens, $n_h d_h$), before RoPE (the content part, which MLA's latent carries), and likewise
# $V$. The **singular values** of $K$ say how many directions it really uses, and by the Eckart-Young
# theorem the best rank-$r$ approximation $K_r$ leaves the relative error
#
# $$\frac{\lVert K - K_r \rVert_F}{\lVert K \rVert_F} = \sqrt{\frac{\sum_{j>r} s_j^2}{\sum_j s_j^2}} .$$

# %% slideshow={"slide_type": "-"}
show_source(lowrank.lowrank_error, start="energy = s.square()", stop="return")

# %% slideshow={"slide_type": "subslide"}
window = c_mha.max_seq_len
text_ids = torch.tensor(val_ids[: 8 * window]).view(8, window)  # 8 windows of real text, (8, 256)
# float64 copies for the analysis, so that "zero" singular values show as float64 rounding (~1e-16)
mha64, mla64 = load_checkpoint("tiny_mha", dtype=torch.float64), load_checkpoint("tiny_mla", dtype=torch.float64)
inputs_mha = lowrank.attention_inputs(mha64, text_ids)  # per layer: (8, 256, d_model)
inputs_mla = lowrank.attention_inputs(mla64, text_ids)
kv_mha = [lowrank.kv_matrices(block.attn, x) for block, x in zip(mha64.blocks, inputs_mha, strict=True)]
kv_mla = [lowrank.kv_matrices(block.attn, x) for block, x in zip(mla64.blocks, inputs_mla, strict=True)]
K0, V0 = kv_mha[0]
width = K0.shape[1]
ranks = list(range(0, width + 1, 4))
err = {part: [lowrank.lowrank_error(kv[j], ranks) for kv in kv_mha] for j, part in enumerate(("K", "V"))}
err["[K, V]"] = [lowrank.lowrank_error(lowrank.joint_kv(k, v), ranks) for k, v in kv_mha]
mean_err = {part: [sum(e[i] for e in curves) / len(curves) for i in range(len(ranks))] for part, curves in err.items()}

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.4))
show_layer = 1
for (k, v), style, label in ((kv_mha[show_layer], "-", "tiny_mha"), (kv_mla[show_layer], "--", "tiny_mla (rebuilt)")):
    for matrix, colour, part in ((k, COLORS["key"], "K"), (v, COLORS["value"], "V")):
        s = lowrank.singular_values(matrix)
        ax1.semilogy(range(1, len(s) + 1), (s / s[0]).clamp_min(1e-20), style, color=colour, lw=1.8,
                     label=f"{label}: {part}")
ax1.axvline(c_mla.kv_lora_rank, color=COLORS["latent"], ls=":", lw=1.2)
ax1.text(c_mla.kv_lora_rank + 2, 1e-9, f"d_c = {c_mla.kv_lora_rank}", color=COLORS["latent"], fontsize=9)
ax1.set(xlabel="index j", ylabel="singular value s_j / s_1 (log scale)", ylim=(1e-20, 3),
        title=f"Singular values of the stacked K and V, layer {show_layer}")
ax1.legend(frameon=False, fontsize=8, loc="lower left")
for part, colour in (("K", COLORS["key"]), ("V", COLORS["value"]), ("[K, V]", COLORS["latent"])):
    ax2.plot(ranks, [100 * e for e in mean_err[part]], color=colour, lw=2.2, label=f"{part} of tiny_mha")
ax2.axvline(c_mla.kv_lora_rank, color=COLORS["latent"], ls=":", lw=1.2)
ax2.text(c_mla.kv_lora_rank + 2, 60, f"d_c = {c_mla.kv_lora_rank}\n(tiny_mla)", color=COLORS["latent"], fontsize=9)
ax2.set(xlabel="rank r of the approximation", ylabel="relative error (%)", xlim=(0, width), ylim=(0, 100),
        title=f"Best rank-r error, mean over the {len(kv_mha)} layers")
ax2.legend(frameon=False)
for ax in (ax1, ax2):
    ax.spines[["top", "right"]].set_visible(False)
fig.tight_layout()
plt.show()


# %% slideshow={"slide_type": "subslide"}
def rank_for(curve, tolerance):
    """Smallest rank in `ranks` whose error is at most `tolerance`."""
    return next(r for r, e in zip(ranks, curve, strict=True) if e <= tolerance)


at_dc = ranks.index(c_mla.kv_lora_rank)
display(Markdown(
    f"Left, solid: the MHA model's singular values fall off smoothly: its keys and values use all "
    f"{width} directions a little, and a few directions a lot. Dashed: the keys and values that `tiny_mla` "
    f"rebuilds from its latent have exactly {c_mla.kv_lora_rank} non-zero singular values, then a cliff "
    f"to rounding noise: by construction they live in a {c_mla.kv_lora_rank}-dimensional space.\n\n"
    f"Right: keeping the best {c_mla.kv_lora_rank} of {width} directions leaves a mean error of "
    f"{mean_err['K'][at_dc]:.1%} on the keys and {mean_err['V'][at_dc]:.1%} on the values; an error of 10% "
    f"needs rank {rank_for(mean_err['K'], 0.10)} for K and {rank_for(mean_err['V'], 0.10)} for V. "
    f"Keys are more compressible than values. The joint matrix $[K, V]$ (each scaled to norm 1), which one "
    f"shared latent has to serve, reaches {mean_err['[K, V]'][at_dc]:.1%} at rank {c_mla.kv_lora_rank}, "
    f"although it is twice as wide."
))

# %% [markdown] slideshow={"slide_type": "-"}
# This is an intuition, not a proof: the MHA model was trained without a bottleneck, and the best rank-$r$
# fit is found after the fact. MLA learns its down- and up-projections *with* the bottleneck from the
# start, so the model arranges itself to fit through it (section 8 compares the trained models).

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 5. Not just "low-rank K and V"
#
# Many descriptions stop at "MLA compresses K and V to a low rank". Four details make it what it is:
#
# 1. **One latent for K and V.** The same $c^{KV}_t$ feeds $W^{UK}$ and $W^{UV}$ (the paper's
#    "low-rank key-value **joint** compression"). Keys and values are both linear in $h_t$, so their
#    directions overlap, and one latent serves both.
# 2. **One latent for all heads.** The heads differ only in their up-projections (section 2).
# 3. **RMS-normed.** The cached $c^{KV}_t$ comes out of an RMSNorm (DeepSeek-V2 §3.1.2): every cached
#    vector has the same root-mean-square size before a learned per-dimension gain.
# 4. **Never expanded at inference.** Chapter 8 folds $W^{UK}_i$ into the query and $W^{UV}_i$ into the
#    output, so no per-head key or value is ever built. Chapter 9 adds the shared RoPE key that keeps this
#    possible.
#
# The first two are measurable. Give the tiny MHA model's keys and values a cache budget of $r$ numbers
# per token and layer and spend it three ways: one latent shared by K, V and all heads (MLA); one latent
# of $r/2$ for K and another for V; or a separate latent of $r / (2 n_h)$ for each head's K and each head's V.

# %% slideshow={"slide_type": "-"}
show_source(lowrank.budget_errors, start="out: dict", stop='out["per head"].append')

# %% slideshow={"slide_type": "subslide"}
budget_ranks = list(range(2 * c_mha.n_heads, width + 1, 2 * c_mha.n_heads))  # multiples of 2 n_h
budgets = [lowrank.budget_errors(k, v, c_mha.n_heads, budget_ranks) for k, v in kv_mha]
ways = {"shared": "one latent for K, V and all heads (MLA)", "per K and V": "one for K, one for V",
        "per head": "one per head, for K and for V"}
budget_mean = {w: [sum(b[w][i] for b in budgets) / len(budgets) for i in range(len(budget_ranks))] for w in ways}
fig = figures.new_figure("tiny_mha, mean over layers: the same budget, spent three ways",
                         "cache budget r (numbers per token and layer)", "relative error of [K, V] (%)")
for (w, label), colour in zip(ways.items(), (COLORS["latent"], COLORS["query"], COLORS["muted"]), strict=True):
    fig.add_scatter(x=budget_ranks, y=[round(100 * e, 2) for e in budget_mean[w]], mode="lines+markers", name=label,
                    line=dict(color=colour, width=2.5),  # 2 decimals of a percent: the same on every CPU
                    hovertemplate=f"{label}<br>budget r = %{{x}}<br>error %{{y:.2f}}%<extra></extra>")
fig.update_yaxes(rangemode="tozero")
fig.update_layout(legend=dict(x=0.99, y=0.99, xanchor="right", yanchor="top"), hovermode="x unified")
figures.show(fig, "ch07-budget-three-ways")  # hover a budget: the three errors side by side

i64 = budget_ranks.index(c_mla.kv_lora_rank)
display(Markdown(
    f"With the tiny MLA model's budget of {c_mla.kv_lora_rank} numbers, sharing one latent leaves "
    f"**{budget_mean['shared'][i64]:.1%}** error, separate latents for K and V "
    f"{budget_mean['per K and V'][i64]:.1%}, and separate latents per head {budget_mean['per head'][i64]:.1%}. "
    "Sharing always wins: each split is itself one particular rank-r approximation of $[K, V]$, and the "
    "shared latent is the best one. That is the point of MLA's *joint* compression."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 6. The DeepSeek-V2 paper's Table 1
#
# The paper compares the cache per token of the four schemes, in elements, for $l$ layers:
# MHA $2 n_h d_h l$, GQA $2 n_g d_h l$, MQA $2 d_h l$, MLA $(d_c + d_h^R) l$. With its choice
# $d_c = 4 d_h$ and $d_h^R = d_h / 2$, MLA's entry is $\frac{9}{2} d_h l$, "equal to GQA with only 2.25
# groups". `sizing.table1_elements` computes the table from the paper's symbols, with each scheme's rule
# (`attnlab.schemes`, chapter 0); here with DeepSeek-V3's shape and, for GQA, the 16 groups one summary
# quotes (a what-if: DeepSeek-V3 does not use GQA).

# %% slideshow={"slide_type": "-"}
show_source(sizing.table1_elements, start="shape = AttentionShape", stop="return {")

# %% slideshow={"slide_type": "subslide"}
n_g = 16  # the seed summaries' "16 groups": a what-if comparison
table1 = sizing.table1_elements(n_h=v3.n_heads, d_h=v3.head_dim, l=v3.n_layers, n_g=n_g, d_c=d_c, d_h_rope=d_h_rope)
unit = v3.head_dim * v3.n_layers  # d_h l
formulas = {"mha": "2 n_h d_h l", "gqa": "2 n_g d_h l", "mqa": "2 d_h l", "mla": "(d_c + d_h^R) l"}
capability = {row.scheme: row.capability for row in E.V2_TABLE1}  # the paper's own column (evidence.V2_TABLE1)
rows = [f"| scheme | elements per token | {v3.name} ($n_h$ {v3.n_heads}, $d_h$ {v3.head_dim}, $l$ {v3.n_layers}, "
        f"$n_g$ {n_g}) | in units of $d_h l$ | vs MHA | capability (the paper's word) |",
        "|---|---|---:|---:|---:|---|"]
for scheme in ("mha", "gqa", "mqa", "mla"):
    rows.append(f"| {scheme.upper()} | ${formulas[scheme]}$ | {table1[scheme]:,} | {table1[scheme] / unit:g} | "
                f"{format_ratio(table1['mha'] / table1[scheme])}× | {capability[scheme]} |")
display(Markdown("\n".join(rows)))
display(Markdown(
    f"MLA's {table1['mla']:,} elements are {table1['mla'] / unit:g} $d_h l$ = 9/2 $d_h l$, the same as GQA with "
    f"{table1['mla'] / (2 * unit):g} groups: MLA stores about as much as a GQA model with two or three K/V heads, "
    "while every one of its heads gets its own keys and values."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 7. The 57× figure, and the claims around it
#
# In bytes (bfloat16, 2 bytes per element), per token over all layers, from DeepSeek-V3's config:

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "-"} tags=["hide-input"]
per_token = {s: sizing.cache_bytes_per_token(v3, "bfloat16", s, n_g if s == "gqa" else None) for s in sizing.SCHEMES}
ratio_mla = per_token["mha"] / per_token["mla"]
display(Markdown(
    f"MHA: {per_token['mha']:,} bytes per token ({format_bytes(per_token['mha'])}); MLA: {per_token['mla']:,} "
    f"bytes ({format_bytes(per_token['mla'])}). Ratio **{per_token['mha']:,} / {per_token['mla']:,} = "
    f"{ratio_mla:.1f}×**."
))

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "subslide"} tags=["hide-input"]
v2, dense67 = MODELS["deepseek-v2"], MODELS["deepseek-67b"]
v2_cut = 1 - sizing.kv_elements_per_token(v2) / sizing.kv_elements_per_token(dense67)
kv_params_mha = 2 * v3.hidden_size * v3.n_heads * v3.head_dim  # W^K and W^V of MHA, one layer
kv_params_mla = v3.hidden_size * (d_c + d_h_rope) + d_c * v3.n_heads * 2 * v3.head_dim  # W^DKV, W^KR, W^UK, W^UV
verdicts = [  # (claim key in attnlab.factcheck, the claim, what the arithmetic shows)
    ("mla_57x", "“57× reduction [of the cache] vs multi-head attention”",
     f"{per_token['mha']:,} / {per_token['mla']:,} = {ratio_mla:.1f}× for {v3.name}'s shape in bfloat16."),
    ("mla_576_dim", f"“{d_c + d_h_rope}-dimensional compressed vector”",
     f"Right as a width, but two vectors: {d_c} (latent $c^{{KV}}$, the compressed part) + {d_h_rope} (RoPE key "
     f"$k^R$) = {d_c + d_h_rope} numbers per token and layer."),
    ("mla_576_times", f"“reduces the cache size by {d_c + d_h_rope} times”",
     f"{d_c + d_h_rope} is the *width* of the cached vector; the reduction is {ratio_mla:.1f}×."),
    ("six_times_faster", "“generating tokens six times faster than traditional Transformers”",
     f"DeepSeek-V2 reported up to 5.76× the generation throughput of **{dense67.name}**, a dense GQA model "
     f"({dense67.n_kv_heads} K/V heads, {dense67.n_layers} layers), not of MHA Transformers in general, and with "
     f"more than MLA changed: a mixture-of-experts model, and a KV cache quantized to about 6 bits. By element "
     f"count alone V2's cache is {100 * v2_cut:.1f}% smaller than {dense67.name}'s; the headline 93.3% includes "
     "the quantization. DeepSeek-V3 and R1 share V2's MLA design."),
    ("shared_projections", "“the same latent space used for all heads”, “shared projections across heads”",
     f"The latent is shared; the up-projections $W^{{UK}}_i$, $W^{{UV}}_i$ are per head (section 2). MLA does have "
     f"fewer K/V parameters than MHA, {kv_params_mla / 1e6:.1f} M against {kv_params_mha / 1e6:.1f} M per "
     f"layer of {v3.name}, because of the narrow latent, not because heads share matrices."),
]
display(Markdown("\n".join(["| claim | verdict | computed |", "|---|---|---|",
                            *[f"| {c} | {factcheck.verdict_label(factcheck.claim(key).verdict)} | {why} |"
                              for key, c, why in verdicts]])))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 8. The tiny models: does the latent cost quality?
#
# The DeepSeek-V2 paper reports that, at its scale, MLA even scores better than MHA (§2.1, Table 1 and
# Appendix D). The course's quality study (`attnlab.quality`) trains tiny MHA and MLA models with several
# seeds, their parameter counts matched (the MLP of the smaller one widened), on the same recipe, and scores
# each on the whole validation split: the spread between seeds says how large a gap must be to mean anything.

# %% slideshow={"slide_type": "-"}
study = quality.load_study()
display(Markdown(study.markdown(("mha", "mla"))))
fig, axes = plt.subplots(1, 2, figsize=(11.5, 3.8), gridspec_kw={"width_ratios": [1, 1.6]})
plots.seed_spread(study, ("mha", "mla"), ax=axes[0])
plots.seed_curves(study, ("mha", "mla"), ax=axes[1])
fig.tight_layout()
plt.show()

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "fragment"} tags=["hide-input"]
mla_gap = study.gap("mla", "mha")
recipe = study.recipe
display(Markdown(
    f"MLA against MHA: {mla_gap.words()}; seed by seed {', '.join(f'{d:+.3f}' for d in mla_gap.paired)}, "
    f"with {study.summary('mha').params:,} and {study.summary('mla').params:,} parameters (MLP widths "
    f"{study.d_ff['mha']} and {study.d_ff['mla']}), for a cache {measured['mha'] / measured['mla']:.2f}× "
    f"smaller.\n\n"
    f"**What the tiny regime cannot show.** Here the latent is $d_c$ = {c_mla.kv_lora_rank} for "
    f"{c_mla.n_heads} heads of {tiny_spec.head_dim}, a cache {measured['mha'] / measured['mla']:.1f}× smaller "
    f"than MHA's; DeepSeek-V3 squeezes {2 * MODELS['deepseek-v3'].n_heads * MODELS['deepseek-v3'].head_dim:,} "
    f"numbers per token and layer into {MODELS['deepseek-v3'].kv_lora_rank + MODELS['deepseek-v3'].qk_rope_head_dim}, "
    f"a far harder compression, and only the papers' models test it. The tiny models see "
    f"{study.tokens_seen() / 1e6:.1f}M tokens in windows of {recipe['seq_len']} and stop while still learning "
    f"(MLA's sampled validation loss fell {study.last_drop('mla'):.3f} nats over the last {recipe['eval_every']} "
    f"steps), so the ranking is of early learning; DeepSeek-V2's ablation compares MoE models of "
    f"{E.V2_MOE_SMALL.arms[0].fact('# Total Params')} and {E.V2_MOE_LARGE.arms[0].fact('# Total Params')} "
    f"parameters on hard benchmarks, next."
))

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### What the papers measured
#
# DeepSeek-V2's Appendix D.2 trained two pairs of mixture-of-experts models that differ only in attention,
# MHA or MLA, a small pair and a large one, and scored them on the same hard benchmarks (Table 9, cited data
# in `attnlab.evidence`):

# %% slideshow={"slide_type": "-"}
fig, axes = plt.subplots(1, 2, figsize=(12, 3.8), sharey=True)
for ax, table in zip(axes, (E.V2_MOE_SMALL, E.V2_MOE_LARGE), strict=True):
    EP.score_bars(table, ax)
fig.tight_layout()
plt.show()
gaps = {name: t.deltas("mla", "mha") for name, t in (("small", E.V2_MOE_SMALL), ("large", E.V2_MOE_LARGE))}
share = {name: E.parse_count(t.arms[1].fact("KV Cache per Token (# Element)"))
         / E.parse_count(t.arms[0].fact("KV Cache per Token (# Element)"))
         for name, t in (("small", E.V2_MOE_SMALL), ("large", E.V2_MOE_LARGE))}
behind = [b for b, d in gaps["small"].items() if d < 0]
display(Markdown(
    f"The pairs: {E.V2_MOE_SMALL.title[0].lower()}{E.V2_MOE_SMALL.title[1:]}, {E.V2_MOE_SMALL.setting}; "
    f"{E.V2_MOE_LARGE.title[0].lower()}{E.V2_MOE_LARGE.title[1:]}, {E.V2_MOE_LARGE.setting}. "
    f"At their scale MLA is ahead of MHA on {sum(d > 0 for g in gaps.values() for d in g.values())} of the "
    f"{sum(len(g) for g in gaps.values())} scores: on average {sum(gaps['small'].values()) / 4:+.1f} points for "
    f"the small pair (behind on {', '.join(behind)}, {gaps['small'][behind[0]]:+.1f}) and "
    f"{sum(gaps['large'].values()) / 4:+.1f} for the large pair (ahead on {sum(d > 0 for d in gaps['large'].values())} "
    f"of {len(gaps['large'])}), with a cache of "
    f"{share['small']:.0%} and {share['large']:.0%} of MHA's. That is the evidence behind Table 1's "
    f"*stronger* and behind the claim of a \"slight performance improvement\" "
    f"({factcheck.verdict_label(factcheck.claim('mla_slightly_better').verdict)} in chapter 13): one pair of "
    f"runs per scale, by the scheme's authors. The tiny models above "
    + ("can neither confirm nor refute it: their gap is within the seeds' spread." if not mla_gap.clear else
       "agree with it." if mla_gap.delta < 0 else "point the other way, beyond their seeds' spread.")
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 9. Try it: the latent's width
#
# Slide the latent width $d_c$ and the RoPE key width $d_h^R$ (even only: RoPE rotates pairs). The top
# panel is DeepSeek-V3's cache per token with those widths, against MHA. The bottom panel applies the same
# ratio $d_c / d_h$ to the tiny MHA model's real keys and values (rank $r = d_c \times 16 / 128$, since the
# tiny heads are 16 wide): the error a latent of that relative size would leave. DeepSeek's $d_c = 4 d_h$
# lands at rank 64. The singular values were computed once above; the widget only looks them up.

# %% slideshow={"slide_type": "-"}
widget_ranks = sorted({mla_widgets.tiny_rank(d, tiny_spec.head_dim) for d in mla_widgets.DC_OPTIONS})
joint = [lowrank.joint_kv(k, v) for k, v in kv_mha]
joint_s = [lowrank.singular_values(j) for j in joint]  # the SVD, once per layer
widget_errors = {r: [lowrank.lowrank_error(j, r, s=s)[0] for j, s in zip(joint, joint_s, strict=True)]
                 for r in widget_ranks}
explorer = mla_widgets.latent_explorer(widget_errors, tiny_head_dim=tiny_spec.head_dim, d_c=d_c, d_h_rope=d_h_rope)
explorer

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 10. What it costs
#
# | | MHA | MLA |
# |---|---|---|
# | cached numbers per token and layer | $2 n_h d_h$ | $d_c + d_h^R$ |
# | K/V parameters per layer | $2\, d\, n_h d_h$ | $d (d_c + d_h^R) + 2\, d_c n_h d_h$ |
# | rebuilding K, V, per cached token and step | none | $2\, n_h d_h d_c$ multiply-adds (chapter 8 avoids it) |
# | position | RoPE on every key | a separate shared RoPE key (chapter 9) |
#
# The numbers, for DeepSeek-V3's shape and for the tiny models:

# %% slideshow={"slide_type": "-"}
# multiply-adds per cached token and decode step, one layer (chapter 8 derives these counts)
macs_attend = sizing.attention_macs_per_cached_token(v3, "mha")  # MHA: score one key, mix one value per head
macs_naive = costs.macs_per_cached_token("mla_naive", v3.attention_shape())  # rebuild K, V of 1 token, attend
tiny_kv_params = {
    "mha": sum(p.numel() for b in tiny_mha.blocks for p in (b.attn.w_k.weight, b.attn.w_v.weight)),
    "mla": sum(p.numel() for b in tiny_mla.blocks for p in (b.attn.w_dkv.weight, b.attn.w_ukv.weight,
                                                            b.attn.kv_norm.weight)),
}
rows = ["| | MHA | MLA | MLA against MHA |", "|---|---:|---:|---|"]
rows.append(f"| {v3.name}: cache bytes per token (bf16) | {per_token['mha']:,} | {per_token['mla']:,} | "
            f"{ratio_mla:.1f}× less |")
rows.append(f"| {v3.name}: cache for one 128K-token sequence | "
            f"{sizing.gib(sizing.kv_cache_bytes(v3, 128 * 1024, scheme='mha')):,.0f} GiB | "
            f"{sizing.gib(sizing.kv_cache_bytes(v3, 128 * 1024)):.2f} GiB | |")
rows.append(f"| {v3.name}: K/V parameters per layer | {kv_params_mha / 1e6:.1f} M | {kv_params_mla / 1e6:.1f} M | "
            f"{kv_params_mha / kv_params_mla:.1f}× fewer |")
rows.append(f"| {v3.name}: multiply-adds per cached token and step, per layer (MLA rebuilding K, V) | "
            f"{macs_attend:,} | {macs_naive:,} | {macs_naive / macs_attend:.0f}× more |")
rows.append(f"| tiny models: cache bytes per token (float32) | {measured['mha']:,.0f} | {measured['mla']:,.0f} | "
            f"{measured['mha'] / measured['mla']:.2f}× less |")
rows.append(f"| tiny models: K/V parameters | {tiny_kv_params['mha']:,} | {tiny_kv_params['mla']:,} | |")
rows.append(f"| tiny models, parameters matched: validation loss, mean ± std of {study.summary('mha').n} seeds | "
            f"{study.summary('mha').mean:.3f} ± {study.summary('mha').std:.3f} | {study.summary('mla').mean:.3f} ± "
            f"{study.summary('mla').std:.3f} | {mla_gap.delta:+.3f} |")
display(Markdown("\n".join(rows)))
display(Markdown(
    f"Memory is where MLA wins, by {ratio_mla:.0f}×. The price, if the keys and values are rebuilt naively at "
    f"every decode step, is arithmetic: {macs_naive / macs_attend:.0f}× the multiply-adds of "
    "MHA for each cached token, every step. Chapter 8 removes that price by absorbing the up-projections "
    "into the query and the output, and chapter 9 shows what position encoding needs for that to work."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercises
#
# Each exercise has an answer cell (replace `None`) and a check cell. Solutions are in
# `notebooks/solutions/ch07.py`.
#
# **Exercise 1.** One latent for keys and values. Write a function `(w_k, w_v, r) -> (w_dkv, w_uk, w_uv)`:
# `w_k` ($n_h d_h$, $d$) and `w_v` ($n_h d_v$, $d$) are an MHA layer's key and value projections; return the
# down-projection `w_dkv` ($r$, $d$) and the up-projections `w_uk` ($n_h d_h$, $r$), `w_uv` ($n_h d_v$, $r$)
# whose product `[w_uk; w_uv] @ w_dkv` is the best rank-$r$ approximation of the stacked `[w_k; w_v]`. Use
# `torch.linalg.svd`, not `attnlab.lowrank` (the check notices).

# %% slideshow={"slide_type": "-"}
answer_joint_factors = None

# %% slideshow={"slide_type": "-"}
print(ch07.check_joint_factors(answer_joint_factors))

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Exercise 2 (predict, then run).** Take a 256 × 256 matrix of independent standard normal numbers and
# keep its best rank-32 approximation. What relative error $\lVert M - M_{32} \rVert_F / \lVert M \rVert_F$
# is left? Write your guess first; the check cell runs it and explains.

# %% slideshow={"slide_type": "-"}
prediction_random_rank_error = None  # a number between 0 and 1

# %% slideshow={"slide_type": "-"}
print(ch07.check_prediction_random_rank(prediction_random_rank_error))

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Exercise 3.** Write a function `(matrix, r) -> float` that returns the relative error
# $\lVert M - M_r \rVert_F / \lVert M \rVert_F$ of the best rank-$r$ approximation of a 2-D tensor, using
# `torch.linalg.svdvals` (without calling `attnlab.lowrank`: the check notices). Assign the function itself.

# %% slideshow={"slide_type": "-"}
answer_lowrank_error = None

# %% slideshow={"slide_type": "-"}
print(ch07.check_lowrank_error(answer_lowrank_error))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Summary
#
# * MLA caches one RMS-normed latent $c^{KV}_t$ of width $d_c$ per token and layer (plus a shared RoPE key
#   of width $d_h^R$), and each head rebuilds its own key and value from it with its own $W^{UK}_i$,
#   $W^{UV}_i$.
# * Its cache is $(d_c + d_h^R)\, l$ elements per token: for DeepSeek-V3, 576 per layer, 56.9× less than MHA
#   of the same shape, as much as GQA with 2.25 groups.
# * Real keys and values of a trained MHA model are far from full rank, and one latent shared by K, V and
#   all heads fits them better than separate latents of the same total size.
# * Rebuilding K and V at every decode step would cost far more arithmetic than MHA; chapter 8 shows how to
#   avoid it.
