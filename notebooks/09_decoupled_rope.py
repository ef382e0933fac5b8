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
# # Chapter 9 · Applying RoPE to MLA (decoupled RoPE)
#
# *Video chapter at 18:15.*
#
# > **What you will learn:** rotary position embedding from scratch, why it breaks absorption, and MLA's
# > decoupled RoPE key shared by all heads.
# >
# > **What it assumes:** [chapters 7](07_multi_head_latent_attention.ipynb) and
# > [8](08_mla_at_inference.ipynb); 2-D rotations.
#
# Attention by itself does not know where tokens are. Most current models add position with **rotary
# position embedding (RoPE**, Su et al., [arXiv 2104.09864](https://arxiv.org/abs/2104.09864)): rotate
# each query and key by an angle proportional to its position, so that their dot product depends on how
# far apart they are. Chapter 8's absorption trick moved $W^{UK}_i$ from the keys into the query. RoPE
# puts a rotation *between* the two, one that changes with every key's position, and the trick breaks.
#
# This chapter builds RoPE from scratch, shows exactly where it collides with absorption, and then builds
# DeepSeek's fix: a small, separate **decoupled** RoPE part of the query and one shared RoPE key per token,
# the $d_h^R$ in MLA's cache.

# %% slideshow={"slide_type": "skip"}
import matplotlib.pyplot as plt
import torch
from IPython.display import Markdown, display
from matplotlib.colors import TwoSlopeNorm
from plotly.subplots import make_subplots

from attnlab import corpus, costs, figures, lowrank, show_source, sizing
from attnlab.exercises import ch09
from attnlab.interactive import mla as mla_widgets
from attnlab.mla import MLAConfig, MultiHeadLatentAttention, rope_on_latent_keys, yarn_frequencies, yarn_mscale
from attnlab.model import load_checkpoint
from attnlab.plots import COLORS
from attnlab.rope import apply_rope, interleaved_to_halves, rope_frequencies, rotate_pairs, rotation_matrix
from attnlab.sizing import MODELS
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

show_animation("DecoupledRoPEScene")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 1. RoPE from scratch
#
# Split a head's $d$ dimensions into $d/2$ **pairs**. At position $m$, rotate pair $i$ by the angle
# $m\,\theta_i$, with one frequency per pair, $\theta_i = b^{-2i/d}$ (base $b$ = 10000):
#
# $$\begin{pmatrix} x'_a \\ x'_b \end{pmatrix} =
# \begin{pmatrix} \cos m\theta_i & -\sin m\theta_i \\ \sin m\theta_i & \cos m\theta_i \end{pmatrix}
# \begin{pmatrix} x_a \\ x_b \end{pmatrix}, \qquad R_m = \operatorname{diag}(\text{those } 2\times 2 \text{ blocks}).$$
#
# That is all of it. `attnlab.rope.apply_rope` does it for whole tensors: it computes the angles
# $m\,\theta_i$ for every position and hands them to `rotate_pairs`, which rotates:

# %% slideshow={"slide_type": "-"}
show_source(rotate_pairs, start="cos = angles.cos()", stop="out_b = x_a * sin")

# %% [markdown] slideshow={"slide_type": "subslide"}
# The first pairs turn fast (pair 0 by one radian per position), the last ones barely move: a clock
# with $d/2$ hands. The wavelength $2\pi / \theta_i$ is how many positions pair $i$ needs for one full
# turn. DeepSeek-V3's RoPE part has $d_h^R$ = 64 dimensions, so 32 pairs:

# %% slideshow={"slide_type": "-"}
d_rope = MODELS["deepseek-v3"].qk_rope_head_dim  # 64
theta = rope_frequencies(d_rope)  # (32,)
i = torch.arange(d_rope // 2)
pretrain_context = 4096  # DeepSeek-V3's original context (YaRN's original_max_position, section 4)
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 3.8))
ax1.semilogy(i, theta, "o-", ms=4, color=COLORS["rope"])
ax1.set(xlabel="pair index i", ylabel="θ_i (radians per position)", title=f"Frequencies θ_i = 10000^(-2i/{d_rope})")
ax2.semilogy(i, 2 * torch.pi / theta, "o-", ms=4, color=COLORS["rope"])
ax2.axhline(pretrain_context, color=COLORS["muted"], ls="--", lw=1)
ax2.text(0, pretrain_context * 1.5, f"{pretrain_context:,} positions", color=COLORS["muted"], fontsize=9)
ax2.set(xlabel="pair index i", ylabel="positions per full turn", title="Wavelengths 2π / θ_i")
for ax in (ax1, ax2):
    ax.spines[["top", "right"]].set_visible(False)
fig.tight_layout()
plt.show()
slow = int((2 * torch.pi / theta > pretrain_context).sum())
display(Markdown(
    f"Pair 0 turns once every {2 * torch.pi / theta[0]:.1f} positions, pair {d_rope // 2 - 1} once every "
    f"{2 * torch.pi / theta[-1]:,.0f}. Within {pretrain_context:,} positions, the last {slow} of the "
    f"{d_rope // 2} pairs never complete a turn: they carry coarse, long-range position."
))

# %% [markdown] slideshow={"slide_type": "subslide"}
# Here is one pair of a key vector at positions 0 to 23, for four frequencies. Each dot is the same 2-D
# pair after rotation by $m\,\theta_i$; the colour is the position $m$.

# %% slideshow={"slide_type": "-"}
positions = torch.arange(24)
pair = torch.tensor([1.0, 0.3], dtype=torch.float64)  # one 2-D pair (x_a, x_b)
shown_pairs = [0, 4, 8, 16]
fig = make_subplots(rows=1, cols=4, subplot_titles=[f"pair {p}: θ = {theta[p]:.3g} rad" for p in shown_pairs],
                    horizontal_spacing=0.03)
circle = torch.linspace(0, 2 * torch.pi, 97)
for col, p in enumerate(shown_pairs, start=1):
    x = torch.zeros(len(positions), d_rope, dtype=torch.float64)
    x[:, p], x[:, p + d_rope // 2] = pair[0], pair[1]  # halves convention: pair p is (p, p + d/2)
    rotated = apply_rope(x, positions)
    xa, xb = rotated[:, p], rotated[:, p + d_rope // 2]
    fig.add_scatter(x=(pair.norm() * circle.cos()).tolist(), y=(pair.norm() * circle.sin()).tolist(), mode="lines",
                    line=dict(color=figures.FAINT), hoverinfo="skip", row=1, col=col)
    fig.add_scatter(x=xa.round(decimals=6).tolist(), y=xb.round(decimals=6).tolist(), mode="markers", row=1, col=col,
                    marker=dict(color=positions.tolist(), colorscale="Viridis", size=9, showscale=col == 4,
                                colorbar=dict(title=dict(text="position m"), thickness=12)),
                    customdata=[[m, round(m * theta[p].item(), 6), round(m * theta[p].item() % (2 * torch.pi), 6)]
                                for m in positions.tolist()],
                    hovertemplate=f"pair {p}<br>position m = %{{customdata[0]}}<br>angle m·θ = "
                                  "%{customdata[1]:.3f} rad (%{customdata[2]:.3f} mod 2π)<br>"
                                  "(x_a, x_b) = (%{x:.3f}, %{y:.3f})<extra></extra>")
    fig.add_scatter(x=[round(xa[0].item(), 6)], y=[round(xb[0].item(), 6)], mode="markers", hoverinfo="skip",
                    row=1, col=col,
                    marker=dict(symbol="circle-open", size=16, color=figures.INK, line=dict(width=2)))  # position 0
bare = dict(range=[-1.25, 1.25], showticklabels=False, showgrid=False, zeroline=False, showline=False, ticks="")
fig.update_xaxes(**bare)
fig.update_yaxes(**bare, scaleanchor="x", scaleratio=1)
for col in range(2, 5):
    fig.update_yaxes(scaleanchor=f"x{col}", row=1, col=col)
fig.update_layout(template="attnlab", height=340, showlegend=False, title=dict(
    text="One 2-D pair of a key at positions 0 to 23 (outlined: position 0); fast pairs wrap, slow ones creep"))
figures.show(fig, "ch09-rope-pairs")  # hover a dot: its position and angle

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Why rotate?** Rotations compose and are orthogonal: $R_m^\top R_n = R_{n-m}$. So for a query at
# position $m$ and a key at position $n$,
#
# $$\left(R_m q\right)^{\!\top}\left(R_n k\right) = q^\top R_m^\top R_n\, k = q^\top R_{n-m}\, k,$$
#
# which depends on the positions only through $m - n$. Checked numerically: the score of the same $q$
# and $k$ at every pair of positions from 0 to 63 is constant along each diagonal.

# %% slideshow={"slide_type": "-"}
gen = torch.Generator().manual_seed(0)
q, k = torch.randn(2, d_rope, generator=gen, dtype=torch.float64)
n_pos = 64
pos = torch.arange(n_pos)
scores = apply_rope(q.expand(n_pos, -1), pos) @ apply_rope(k.expand(n_pos, -1), pos).T  # [m, n] = q_m · k_n
spread = max((scores.diagonal(offset).max() - scores.diagonal(offset).min()).item()
             for offset in range(-n_pos + 1, n_pos))
fig, ax = plt.subplots(figsize=(5.2, 4.4))
image = ax.imshow(scores, cmap="RdBu_r", norm=TwoSlopeNorm(0.0))
fig.colorbar(image, ax=ax, label="q_m · k_n")
ax.set(xlabel="key position n", ylabel="query position m", title="RoPE scores: constant along diagonals")
fig.tight_layout()
plt.show()
examples = [(5, 2), (10, 7), (40, 37), (1000, 997)]
values = [(apply_rope(q[None], torch.tensor([m])) @ apply_rope(k[None], torch.tensor([n])).T).item()
          for m, n in examples]
display(Markdown(
    "Scores at (m, n) = " + ", ".join(f"({m}, {n})" for m, n in examples) + ": "
    + ", ".join(f"{v:+.6f}" for v in values)
    + f". Along every one of the {2 * n_pos - 1} diagonals above, the scores differ by at most 1e-12: "
    f"**{spread < 1e-12}**."
))

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Two conventions, one rotation
#
# Which dimensions form a pair is a convention. Hugging Face's Llama code rotates **halves**, pairs
# $(i, i + d/2)$; GPT-J and DeepSeek's own MLA code rotate **interleaved** pairs $(2i, 2i+1)$. Below, the
# rotation matrices $R_m$ of both, for $d$ = 8 at position $m$ = 1: the same 2×2 rotations, placed
# differently.

# %% slideshow={"slide_type": "-"}
d_small = 8
fig, axes = plt.subplots(1, 2, figsize=(9, 4.2))
for ax, interleaved in zip(axes, (False, True), strict=True):
    r = rotation_matrix(1, d_small, interleaved=interleaved)
    ax.imshow(r, cmap="RdBu_r", vmin=-1, vmax=1)
    for (row, col), value in zip(torch.cartesian_prod(torch.arange(d_small), torch.arange(d_small)).tolist(),
                                 r.flatten().tolist(), strict=True):
        if abs(value) > 1e-12:
            ax.text(col, row, f"{value:.2g}", ha="center", va="center", fontsize=8,
                    color="white" if abs(value) > 0.5 else "black")
    ax.set(xticks=range(d_small), yticks=range(d_small),
           title=("interleaved: pairs (2i, 2i+1)" if interleaved else "halves: pairs (i, i + d/2)"))
fig.suptitle(f"R_1 for d = {d_small}: cos θ_i on the diagonal, ±sin θ_i off it", y=1.0)
fig.tight_layout()
plt.show()

# %% [markdown] slideshow={"slide_type": "subslide"}
# A fixed permutation of the dimensions turns one into the other: gather the even dimensions, then the
# odd ones. That is how DeepSeek's interleaved checkpoints can run in a halves implementation
# (`attnlab.mla.rope_to_halves` permutes the rows of $W^{QR}$ and $W^{KR}$).

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "-"} tags=["hide-input"]
p = interleaved_to_halves(d_small)
x = torch.randn(5, d_small, generator=gen, dtype=torch.float64)
pos5 = torch.tensor([0, 1, 2, 50, 999])
same_rotation = torch.allclose(apply_rope(x[:, p], pos5), apply_rope(x, pos5, interleaved=True)[:, p], atol=1e-12)
P = torch.eye(d_small, dtype=torch.float64)[p]  # the permutation as a matrix: P x = x[p]
same_matrix = torch.allclose(P @ rotation_matrix(7, d_small, interleaved=True) @ P.T, rotation_matrix(7, d_small),
                             atol=1e-12)
display(Markdown(
    f"`interleaved_to_halves({d_small})` = {p.tolist()}. Rotating `x[p]` with halves equals rotating `x` "
    f"interleaved and then permuting: **{same_rotation}**; as matrices, $P R^{{int}}_m P^\\top = R^{{halves}}_m$: "
    f"**{same_matrix}**. And $q^\\top k$ is unchanged when the same permutation hits both."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 2. Why RoPE breaks absorption
#
# Put RoPE on MLA's keys the obvious way, on the keys rebuilt from the latent. For a query at position $t$
# and a cached token at position $s$:
#
# $$\left(R_t\, q^C_{t,i}\right)^{\!\top} \left(R_s\, W^{UK}_i c^{KV}_s\right)
# = q^{C\top}_{t,i}\; \underbrace{R_{s-t}\, W^{UK}_i}_{\text{changes with } s - t}\; c^{KV}_s .$$
#
# Absorption needed one fixed matrix between the query and $c^{KV}_s$, to fold into the query once. Here the
# matrix depends on the distance $s - t$, so it would have to be rebuilt for every cached token: that *is*
# rebuilding the keys, the cost chapter 8 removed. (Caching the rotated keys instead would bring back an
# MHA-sized cache.)
#
# `attnlab.mla.rope_on_latent_keys` implements this design with a layer's weights. In "naive" mode it
# computes the correct scores; in "absorbed" mode it folds $W^{UK}_i$ into the rotated query anyway, and
# so silently drops $R_s$:

# %% slideshow={"slide_type": "-"}
show_source(rope_on_latent_keys, start='if mode == "naive":', stop="scores = torch.einsum(\"bshc,btc->bsht\"")

# %% slideshow={"slide_type": "subslide"}
tokenizer = load_tokenizer()
text_ids = torch.tensor([tokenizer.encode(corpus.load_text("val"))[:32]])  # (1, 32), real text
model64 = load_checkpoint("tiny_mla", dtype=torch.float64)
layer = model64.blocks[0].attn
x = lowrank.attention_inputs(model64, text_ids)[0]  # what layer 0's attention receives, (1, 32, d_model)
with torch.no_grad():
    wrong = (rope_on_latent_keys(layer, x, mode="absorbed") - rope_on_latent_keys(layer, x, mode="naive")).abs()
    with layer.using("naive"):
        naive = layer(x).output
    right = (layer(x).output - naive).abs()  # the layer's default form, absorbed, against naive
per_position = wrong.amax(dim=-1)[0]  # (32,), largest error of each query position's output
out_size = rope_on_latent_keys(layer, x, mode="naive").abs().max().item()

fig, ax = plt.subplots(figsize=(8.5, 3.4))
ax.bar(range(len(per_position)), per_position, color=COLORS["cache"])
ax.set(xlabel="query position t", ylabel="max |absorbed − naive|",
       title="RoPE on the rebuilt keys: absorbing gives the wrong output (tiny_mla, layer 0)")
ax.spines[["top", "right"]].set_visible(False)
fig.tight_layout()
plt.show()
display(Markdown(
    f"With RoPE on the rebuilt keys, the absorbed output is off by up to **{per_position.max():.3f}**, on "
    f"outputs of size up to {out_size:.2f}. Only position 0 comes out right (error below 1e-12: "
    f"**{per_position[0].item() < 1e-12}**): a query at position 0 sees only the key at position 0, whose "
    "rotation is the identity."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 3. The fix: decouple position from content
#
# DeepSeek-V2 (§2.1.3) keeps the latent path **position-free** and carries position in a separate, small
# part of each query and key (eqs. 39-44):
#
# $$q^R_{t,i} = \mathrm{RoPE}\!\left(W^{QR}_i c^Q_t\right) \in \mathbb{R}^{d_h^R} \text{ (per head)}, \qquad
#   k^R_t = \mathrm{RoPE}\!\left(W^{KR} h_t\right) \in \mathbb{R}^{d_h^R} \text{ (one, shared by all heads)},$$
#
# $$q_{t,i} = [q^C_{t,i};\, q^R_{t,i}], \qquad k_{s,i} = [k^C_{s,i};\, k^R_s], \qquad
#   q_{t,i}^\top k_{s,i} = \underbrace{q^{C\top}_{t,i} W^{UK}_i c^{KV}_s}_{\text{absorbs, as in chapter 8}}
#   + \underbrace{q^{R\top}_{t,i}\, k^R_s}_{\text{RoPE, relative position}} .$$
#
# The content term has no rotation, so $W^{UK}_i$ folds into the query exactly as before. The RoPE term
# uses a key that is already small and shared, so it is simply cached, rotated, next to the latent: MQA
# for the position part. The softmax scale covers the whole head, $(d_h + d_h^R)^{-1/2}$. In the library,
# the cached RoPE key is computed with the latent and the absorbed scores add the two terms:

# %% slideshow={"slide_type": "-"}
show_source(MultiHeadLatentAttention.latents, start="c_kv, k_rope =", stop="return")

# %% slideshow={"slide_type": "-"}
display(show_source(MultiHeadLatentAttention.absorbed_query, start="q_c = q_latent", stop="q_r = q_rope"))
show_source(MultiHeadLatentAttention.attend_absorbed, start="scores = torch.baddbmm", stop="scores = torch.baddbmm")

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "subslide"} tags=["hide-input"]
# NBVAL_IGNORE_OUTPUT
# The last bits of float64 rounding depend on the CPU's kernels; the next cell checks them against a bound.
display(Markdown(f"Decoupled RoPE, same layer and input: largest |absorbed − naive| = {right.max():.1e}."))

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "-"} tags=["hide-input"]
display(Markdown(
    f"With the decoupled RoPE key, absorbed and naive agree to within 1e-12 at every position: "
    f"**{right.max().item() < 1e-12}**, against errors up to {per_position.max():.3f} without it."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 4. What it adds to the cache, and YaRN's scale
#
# The cache now holds $d_c + d_h^R$ numbers per token and layer: the latent and the one rotated RoPE key.
# For DeepSeek-V3, from its config (`config_671B.json`: 128 heads, `q_lora_rank` 1536, `kv_lora_rank`
# 512, `qk_nope_head_dim` 128, `qk_rope_head_dim` 64, `v_head_dim` 128, YaRN with factor 40 over an
# original 4,096-token context, `mscale` 1.0):

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "-"} tags=["hide-input"]
v3 = MODELS["deepseek-v3"]
v3_config = MLAConfig(d_model=v3.hidden_size, n_heads=v3.n_heads, q_lora_rank=1536, kv_lora_rank=v3.kv_lora_rank,
                      qk_nope_head_dim=v3.head_dim, qk_rope_head_dim=v3.qk_rope_head_dim, v_head_dim=v3.head_dim,
                      rope_factor=40.0, original_max_position=4096, mscale=1.0)
width = v3_config.cache_elements_per_token()
sizing_width = sizing.kv_elements_per_token(v3, per_layer=True)
# without a decoupled RoPE part, a head's key is the rebuilt k^C alone, d_h wide: RoPE'd per-head keys + latent
rotated_keys = v3_config.n_heads * v3_config.qk_nope_head_dim + v3_config.kv_lora_rank
display(Markdown(
    f"`MLAConfig.cache_elements_per_token()` = $d_c + d_h^R$ = {v3_config.kv_lora_rank} + "
    f"{v3_config.qk_rope_head_dim} = **{width}** per token and layer, the same as `sizing` "
    f"({sizing_width}: **{width == sizing_width}**). "
    f"The RoPE key is {100 * v3_config.qk_rope_head_dim / width:.1f}% of it. Had position been put on the "
    f"rebuilt keys, a fast decoder would have to cache the {v3_config.n_heads} rotated keys of width "
    f"$d_h$ = {v3_config.qk_nope_head_dim} per token (with no decoupled part, a key is $k^C$ alone; plus the "
    f"latent for the values), {rotated_keys:,} numbers: "
    f"{rotated_keys / width:.0f}× more. **576 is this width, the latent plus the RoPE key, not a reduction "
    "factor.**"
))

# %% [markdown] slideshow={"slide_type": "subslide"}
# **YaRN.** DeepSeek-V3 was pre-trained with 4,096-token contexts and extended to 128K with YaRN (Peng et
# al., [arXiv 2309.00071](https://arxiv.org/abs/2309.00071)). YaRN slows the slow pairs down by the factor
# $s$ = 40 (so that positions beyond the original context fall on angles the model has seen), leaves the
# fast pairs alone, and ramps between them. It also sharpens the softmax: the scale is multiplied by $m^2$
# with $m = 0.1 \cdot \texttt{mscale} \cdot \ln s + 1$, one factor $m$ for the query side and one for the key.

# %% slideshow={"slide_type": "-"}
theta_yarn = yarn_frequencies(d_rope, v3_config.rope_base, v3_config.rope_factor, v3_config.original_max_position,
                              v3_config.beta_fast, v3_config.beta_slow)
fig, ax = plt.subplots(figsize=(8, 3.8))
ax.semilogy(i, 2 * torch.pi / theta, "o-", ms=4, color=COLORS["muted"], label="plain RoPE")
ax.semilogy(i, 2 * torch.pi / theta_yarn, "s-", ms=4, color=COLORS["rope"],
            label=f"YaRN, factor {v3_config.rope_factor:g}")
ax.axhline(v3_config.original_max_position, color=COLORS["muted"], ls="--", lw=1)
ax.text(0, v3_config.original_max_position * 1.5, f"original context {v3_config.original_max_position:,}",
        fontsize=9, color=COLORS["muted"])
ax.set(xlabel="pair index i", ylabel="positions per full turn", title=f"YaRN's frequencies for d_h^R = {d_rope}")
ax.legend(frameon=False, loc="lower right")
ax.spines[["top", "right"]].set_visible(False)
fig.tight_layout()
plt.show()

m_v3 = yarn_mscale(v3_config.rope_factor, v3_config.mscale)
plain_scale = v3_config.qk_head_dim**-0.5
kept = int(torch.isclose(theta_yarn, theta).sum())
display(Markdown(
    f"The first {kept} pairs keep their frequency; the slowest are divided by {v3_config.rope_factor:g}. "
    f"`yarn_mscale({v3_config.rope_factor:g}, {v3_config.mscale:g})` = {m_v3:.4f}, so the softmax scale is "
    f"$(d_h + d_h^R)^{{-1/2}} m^2$ = {v3_config.qk_head_dim}^-0.5 × {m_v3:.4f}² = **{v3_config.softmax_scale:.4f}** "
    f"instead of {plain_scale:.4f} (`MLAConfig.softmax_scale`, as DeepSeek's `inference/model.py` computes it)."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 5. Try it: positions, rotations and the score
#
# A random query and key of width 16, so 8 pairs. Move the query position $m$ and the key position $n$, and
# pick the pair $i$ to draw. Then move **shift both by**: both vectors turn (watch the pair rotate), but
# the score $q_m \cdot k_n$ stays put, because $m - n$ does.

# %% slideshow={"slide_type": "-"}
gen = torch.Generator().manual_seed(3)
q16, k16 = torch.randn(2, 16, generator=gen, dtype=torch.float64)
mla_widgets.rope_explorer(q16, k16, m=5, n=2, pair=0)

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "subslide"} tags=["hide-input"]
shifts = (0, 8, 64, 960)
scores_shifted = [mla_widgets.rope_pair_state(q16, k16, 5, 2, 0, shift=s)["score"] for s in shifts]
display(Markdown(
    "The widget's numbers, for $m$ = 5, $n$ = 2 and shifts " + ", ".join(map(str, shifts)) + ": scores "
    + ", ".join(f"{s:+.6f}" for s in scores_shifted) + "."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 6. What it costs
#
# * **Cache**: $d_h^R$ more numbers per token and layer, one rotated key shared by all heads.
# * **Arithmetic**: each head's query gets a RoPE part of width $d_h^R$, and every score adds
#   $n_h d_h^R$ multiply-adds per cached token.
# * **Parameters**: $W^{QR}$ (from the query latent to $n_h d_h^R$) and $W^{KR}$ (from $h_t$ to $d_h^R$).
# * **Expressiveness**: all heads share one positional key, as in MQA; only the query side of position is
#   per head.

# %% slideshow={"slide_type": "-"}
c = v3_config
bytes_rope = sizing.cache_bytes_per_token(v3) * c.qk_rope_head_dim // width  # bf16, all layers
rope_macs = c.n_heads * c.qk_rope_head_dim  # per cached token: q^R_i · k^R for every head
attend_macs = costs.macs_per_cached_token("mla", v3.attention_shape())  # all absorbed attention per cached token
params = {"W^QR": c.q_lora_rank * c.n_heads * c.qk_rope_head_dim, "W^KR": c.d_model * c.qk_rope_head_dim}
rows = ["| what | per layer | share |", "|---|---:|---|"]
rows.append(f"| cache: numbers per token | {c.qk_rope_head_dim} | {c.qk_rope_head_dim} of {width} "
            f"({100 * c.qk_rope_head_dim / width:.1f}%); {bytes_rope:,} of {sizing.cache_bytes_per_token(v3):,} "
            f"bytes per token over {v3.n_layers} layers |")
rows.append(f"| decode: multiply-adds per cached token | {rope_macs:,} | of {attend_macs:,} absorbed "
            f"({100 * rope_macs / attend_macs:.1f}%) |")
rows.append(f"| parameters $W^{{QR}}$ | {params['W^QR']:,} | {c.q_lora_rank} × {c.n_heads} × {c.qk_rope_head_dim} |")
rows.append(f"| parameters $W^{{KR}}$ | {params['W^KR']:,} | {c.d_model:,} × {c.qk_rope_head_dim} |")
rows.append(f"| softmax scale | {c.softmax_scale:.4f} | {c.qk_head_dim}^-0.5 × {m_v3:.4f}² (YaRN) |")
display(Markdown(f"{v3.name}:\n\n" + "\n".join(rows)))
display(Markdown(
    f"For {100 * c.qk_rope_head_dim / width:.0f}% more cache and {100 * rope_macs / attend_macs:.0f}% "
    "more attention arithmetic, MLA keeps both its small cache and its absorbed decode."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercises
#
# Each exercise has an answer cell (replace `None`) and a check cell. Solutions are in
# `notebooks/solutions/ch09.py`.
#
# **Exercise 1.** Write a function `(x, m, base) -> tensor` that applies RoPE in the **halves** convention
# to a vector `x` of even width $d$ at position `m`: pair $i$ = `(x[i], x[i + d/2])` turns by $m\,\theta_i$,
# $\theta_i$ = `base ** (-2 i / d)`. Do not call `attnlab.rope` (the check notices).

# %% slideshow={"slide_type": "-"}
answer_rope = None

# %% slideshow={"slide_type": "-"}
print(ch09.check_rope(answer_rope))

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Exercise 2.** For $d$ = 8, give the permutation `p` (a list of 8 integers) with
# `apply_rope(x[..., p]) == apply_rope(x, interleaved=True)[..., p]`, without calling `interleaved_to_halves`.

# %% slideshow={"slide_type": "-"}
answer_permutation = None

# %% slideshow={"slide_type": "-"}
print(ch09.check_permutation(answer_permutation))

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Exercise 3.** Wire decoupled RoPE into a tiny layer by hand. `ch09.exercise_layer()` is an MLA layer
# without query latent (`layer.w_q`: per head, rows $[W^{UQ}_i; W^{QR}_i]$; `layer.w_dkv`: rows
# $[W^{DKV}; W^{KR}]$; `layer.kv_norm`; `layer.w_uk`; `layer.rope(t, positions)`; `layer.config`, with YaRN on).
# Write `(layer, x) -> scores`: for `x` (batch, s, d_model) at positions 0 .. s−1, the pre-softmax, unmasked
# scores (batch, s, heads, s), $(q^C_i \cdot W^{UK}_i c^{KV}_t + q^R_i \cdot k^R_t) \times$ the softmax scale,
# without calling the layer's `queries`, `latents`, `attend_*` or `forward`.

# %% slideshow={"slide_type": "-"}
answer_decoupled_scores = None

# %% slideshow={"slide_type": "-"}
print(ch09.check_decoupled_scores(answer_decoupled_scores))

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Exercise 4 (predict, then run).** Run the same layer on the same tokens, but with every position shifted by
# 1,000: queries and keys alike. Do the scores change? Write `True` or `False` first; the check cell runs it.

# %% slideshow={"slide_type": "-"}
prediction_scores_change = None  # True or False

# %% slideshow={"slide_type": "-"}
print(ch09.check_prediction_shifted_positions(prediction_scores_change))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Summary
#
# * RoPE rotates pairs of dimensions by position-proportional angles; scores then depend only on $m - n$.
#   Halves and interleaved pairs are the same rotation up to a fixed permutation.
# * RoPE on keys rebuilt from the latent puts $R_{s-t}$ between the query and $c^{KV}_s$, so $W^{UK}_i$ no
#   longer folds into the query: absorption gives wrong outputs.
# * Decoupled RoPE adds a small per-head RoPE query and one shared rotated key $k^R_t$: the content part
#   absorbs, the position part is cached as is. The cache becomes $d_c + d_h^R$ = 576 numbers per token
#   and layer for DeepSeek-V3, and YaRN multiplies the softmax scale by $m^2$.
