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
# # Chapter 11 · Quantization and rotation
#
# *Video chapter at 23:57.*
#
# > **What you will learn:** FP8 e4m3 by hand, block quantization with scales, what an outlier channel costs,
# > and how a Hadamard rotation spreads it out before the indexer quantizes.
# >
# > **What it assumes:** [chapter 10](10_deepseek_sparse_attention.ipynb): the lightning indexer; how
# > floating-point numbers are stored (the chapter recalls it).
#
# Chapter 10's lightning indexer lets each query attend to only $k$ tokens, but it still *scores* every
# cached token for every query. At long context that scoring is most of what DSA spends, so DeepSeek runs
# it in 8-bit floating point (**FP8**): one byte per number instead of two, and on Hopper GPUs FP8 tensor
# cores do twice the multiply-adds per second of bfloat16. Eight bits hold very little, though, and a few
# unusually large channels (**outliers**) can spoil them. So before quantizing, DeepSeek-V3.2 multiplies
# the index queries and keys by a **Hadamard matrix**, a rotation that leaves every dot product unchanged
# and spreads each outlier over all channels.
#
# This chapter takes FP8 apart bit by bit, quantizes in blocks with one scale each, measures what
# outliers cost, builds the Hadamard transform and its fast $O(n \log n)$ version, and then checks, on
# queries and keys with outlier channels, when the rotation actually helps the indexer pick the right
# tokens, and when it does not.

# %% slideshow={"slide_type": "-"}
import math

import matplotlib.pyplot as plt
import torch
from IPython.display import Markdown, display

from attnlab import figures, show_source, sizing
from attnlab.dsa import LightningIndexer, layer_cost
from attnlab.exercises import ch11
from attnlab.interactive import dsa as dsa_widgets
from attnlab.plots import COLORS
from attnlab.quant import (
    FP8_E4M3_MAX,
    FP8_E4M3_RELATIVE_ERROR,
    block_scales,
    dequantize_fp8_blocks,
    fake_quantize_fp8,
    fwht,
    fwht_additions,
    hadamard_matrix,
    quantize_fp8_blocks,
)

torch.manual_seed(0)
torch.set_num_threads(1)  # the tensors here are small; one thread keeps runs fast and repeatable

v32 = sizing.MODELS["deepseek-v3.2"]
cost = layer_cost(v32, 131_072)  # one decoded token at 128K context, one layer, top-k 2048
share = cost["decode_flops_indexer"] / cost["decode_flops_dsa"]
display(Markdown(
    f"In {v32.name}, decoding one token at 131,072 tokens of context costs DSA "
    f"{cost['decode_flops_dsa'] / 1e9:.2f} GFLOP per layer, and **{share:.0%} of it is the indexer** "
    f"({cost['decode_flops_indexer'] / 1e9:.2f} GFLOP: {v32.index_n_heads} index heads of width "
    f"{v32.index_head_dim} against every cached key). It also reads "
    f"{sizing.format_bytes(cost['decode_bytes_indexer'])} of index keys per layer. FP8 makes both cheaper."
))

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### The idea, animated
#
# The chapter in one short animation. It plays here once the videos are rendered (`./course animations`);
# until then, and in static exports, the last frame stands in.

# %% slideshow={"slide_type": "-"}
from attnlab.media import show_animation

show_animation("HadamardFP8Scene")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 1. FP8 e4m3 by hand
#
# The FP8 format DeepSeek uses is **e4m3**: 1 sign bit $s$, 4 exponent bits $e$ and 3 mantissa bits $m$.
# Its value is
#
# $$x = (-1)^{s}\; 2^{\,e-7} \left(1 + \frac{m}{8}\right) \quad (e = 1, \dots, 15), \qquad
#   x = (-1)^{s}\; 2^{-6}\, \frac{m}{8} \quad (e = 0,\ \text{subnormal}).$$
#
# PyTorch's `torch.float8_e4m3fn` ("fn": finite, no infinities) spends only the pattern $e = 15, m = 7$
# on NaN, so its largest value is $2^{8} \times 1.75 = 448$. With 3 mantissa bits, neighbouring normal
# values are $2^{-3}$ of the power of two apart; rounding to the nearest one moves a value by at most half
# of that, a **relative error of at most $2^{-4} = 6.25\%$**. Below the smallest normal value $2^{-6}$ the
# spacing stays fixed at $2^{-9}$: precision is absolute there, not relative.
#
# We decode all 256 bit patterns by the formula and compare with what PyTorch reads from the same bytes.

# %% slideshow={"slide_type": "-"}
bits = torch.arange(256, dtype=torch.uint8)
from_torch = bits.view(torch.float8_e4m3fn).double()  # PyTorch's reading of each byte


def e4m3_by_hand(byte: int) -> float:
    """The value of one e4m3fn byte by the formula above."""
    s, e, m = byte >> 7, (byte >> 3) & 0b1111, byte & 0b111
    if e == 15 and m == 7:
        return math.nan
    magnitude = 2.0**-6 * m / 8 if e == 0 else 2.0 ** (e - 7) * (1 + m / 8)
    return -magnitude if s else magnitude


by_hand = torch.tensor([e4m3_by_hand(b) for b in range(256)], dtype=torch.float64)
assert torch.equal(by_hand.isnan(), from_torch.isnan())
assert torch.equal(by_hand[~by_hand.isnan()], from_torch[~from_torch.isnan()])
finite = from_torch[from_torch.isfinite()]
positive = finite[finite > 0].unique()  # sorted
normal_min = float(positive[positive >= 2**-6].min())
display(Markdown(
    f"The formula gives the same value as PyTorch for all 256 bytes. {len(finite)} of them are finite "
    f"({len(finite.unique())} distinct numbers, as +0 and −0 are equal); the largest is "
    f"**{float(finite.max()):g}** (`FP8_E4M3_MAX` = {FP8_E4M3_MAX:g}), the smallest normal "
    f"{normal_min:g} = 2^{math.log2(normal_min):.0f}, the smallest subnormal {float(positive.min()):g} = "
    f"2^{math.log2(float(positive.min())):.0f}."
))

# %% slideshow={"slide_type": "subslide"}
samples = torch.tensor([0.1, 0.3, 1.0, 1.1, math.pi, 10.0, 100.0, 300.0, 447.0, 0.01, 0.001])
round_trip = samples.to(torch.float8_e4m3fn).to(torch.float32)
rows = ["| value | as float8_e4m3fn | relative error |", "|---|---|---|"]
for x, y in zip(samples.tolist(), round_trip.tolist(), strict=True):
    rows.append(f"| {x:.6g} | {y:.6g} | {abs(y - x) / x:.2%} |")
normal = samples >= 2**-6
worst_normal = float(((round_trip - samples).abs() / samples)[normal].max())
assert worst_normal <= FP8_E4M3_RELATIVE_ERROR
display(Markdown("\n".join(rows)))
display(Markdown(
    f"Every normal value here comes back within {worst_normal:.2%} of itself, under the bound "
    f"{FP8_E4M3_RELATIVE_ERROR:.2%}. The two smallest are subnormal and lose much more: "
    f"{samples[-1].item():g} becomes {round_trip[-1].item():g}. (Values beyond ±448 must be clamped first; "
    "the library does so before converting.)"
))

# %% slideshow={"slide_type": "subslide"}
gaps = (positive[1:] - positive[:-1]) / positive[:-1]  # relative distance to the next value
fig = figures.new_figure("FP8 e4m3: relative spacing of the representable numbers", "positive FP8 e4m3 value",
                         "gap to the next value / value", log_x=True, log_y=True, height=360)
fig.add_scatter(x=positive[:-1].tolist(), y=gaps.tolist(), mode="lines+markers", line_shape="hv", showlegend=False,
                line_color=COLORS["query"], marker_size=4, customdata=positive[1:].tolist(),
                hovertemplate="value %{x:.6g}, next %{customdata:.6g}<br>gap / value = %{y:.4f}<extra></extra>")
fig.add_vline(x=normal_min, line=dict(color=COLORS["muted"], dash="dash", width=1))
fig.add_hline(y=2 * FP8_E4M3_RELATIVE_ERROR, line=dict(color=COLORS["cache"], dash="dot", width=1))
# on a log axis an annotation sits at log10 of its value
fig.add_annotation(x=math.log10(normal_min), y=0.98, xref="x", yref="paper", xanchor="left", yanchor="top",
                   text=" smallest normal 2⁻⁶: below it, fixed steps of 2⁻⁹", showarrow=False)
fig.add_annotation(x=math.log10(2**-5.8), y=math.log10(2 * FP8_E4M3_RELATIVE_ERROR), xanchor="left",
                   yanchor="bottom", text="2⁻³: the widest normal step", showarrow=False, font_color=COLORS["cache"])
figures.show(fig, "ch11-fp8-spacing")  # hover a step: the value, the next one and the relative gap

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 2. Block quantization: one scale per 128 values
#
# Activations are not conveniently sized between $2^{-6}$ and 448, so every **block** of $B = 128$
# consecutive values gets its own scale $s$, chosen so that the block's largest magnitude lands on 448:
#
# $$s = \frac{\max_i |x_i|}{448}, \qquad
#   \hat x_i = s \cdot \operatorname{round}_{\text{e4m3}}\!\left(\frac{x_i}{s}\right).$$
#
# DeepSeek-V3.2's inference config sets `scale_fmt = "ue8m0"`: the scale is rounded **up** to a power of
# two, $s = 2^{\lceil \log_2(\max_i |x_i| / 448) \rceil}$, which fits in 8 exponent bits and makes
# multiplying by it exact. Rounding up keeps every $|x_i / s| \le 448$. Here are the two lines that pick
# the scale and the lines that quantize:

# %% slideshow={"slide_type": "-"}
show_source(block_scales, start="amax = blocks.abs()", stop="scale = torch.exp2")

# %% slideshow={"slide_type": "-"}
show_source(quantize_fp8_blocks, start="scales = block_scales", stop="x_fp8 = blocks.clamp")

# %% slideshow={"slide_type": "subslide"}
g = torch.Generator().manual_seed(1)
x = torch.randn(4, 256, generator=g, dtype=torch.float64)  # 4 vectors of 2 blocks each
x[:, 128:] *= 20  # the second block of every vector is 20 times larger
rows = ["| scale format | scales of vector 0 (block 1, block 2) | relative error |", "|---|---|---|"]
errors = {}
for fmt in ("fp32", "ue8m0"):
    x_fp8, scales = quantize_fp8_blocks(x, 128, fmt)  # float8_e4m3fn (4, 256), float32 (4, 2)
    x_hat = dequantize_fp8_blocks(x_fp8, scales, torch.float64)
    errors[fmt] = float((x_hat - x).norm() / x.norm())
    rows.append(f"| {fmt} | {scales[0, 0].item():.5g}, {scales[0, 1].item():.5g} | {errors[fmt]:.2%} |")
display(Markdown("\n".join(rows)))

# with power-of-two scales, dividing by s only shifts the exponent: the block size stops mattering
assert max(errors.values()) < 1.2 * min(errors.values())
same_32_128 = torch.equal(fake_quantize_fp8(x, 32, "ue8m0"), fake_quantize_fp8(x, 128, "ue8m0"))
diff_fp32 = not torch.equal(fake_quantize_fp8(x, 32, "fp32"), fake_quantize_fp8(x, 128, "fp32"))
assert same_32_128 and diff_fp32
display(Markdown(
    f"Each block's scale follows its own size, so the 20-times-larger second block costs the first nothing. "
    f"The relative error is {errors['fp32']:.2%} with fp32 scales and {errors['ue8m0']:.2%} with ue8m0 ones, "
    "nearly the same: a floating-point format has the same relative precision in every binade, so it matters "
    "little where in its range the block's largest value lands. A subtler consequence: dividing by a power of two only "
    "shifts the exponent, so with ue8m0 scales FP8 quantization is plain rounding to 3 mantissa bits, and "
    f"blocks of 32 and of 128 give identical results here (**{same_32_128}**), while fp32 scales do not "
    "(the block then decides which value lands exactly on 448). Blocks matter for ue8m0 only at the edges of "
    "the range: overflow above 448 and the subnormals below 2^-6."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 3. Outliers: what one large channel costs
#
# Trained transformers are known for a few feature dimensions that are much larger than the rest in most
# tokens (the "outlier features" of Dettmers et al., LLM.int8(),
# [arXiv 2208.07339](https://arxiv.org/abs/2208.07339)). One such **outlier** sets $\max_i |x_i|$, and so
# the scale, for its whole block. For an 8-bit *integer* format (values $s \cdot \{-127, \dots, 127\}$)
# that is ruinous: the step size $s$ grows with the outlier and the ordinary values are rounded to a
# handful of levels. A *floating-point* format keeps
# its relative precision over a range of $2^{17}$, so it should be hurt far less. We measure: 256 vectors
# of 128 standard normal values, channel 5 set to an outlier $M$, and the error of the **other 127
# channels** after quantization.

# %% slideshow={"slide_type": "-"}
def int8_round_trip(x: torch.Tensor, block: int = 128) -> torch.Tensor:
    """For comparison only: symmetric INT8 with one scale amax / 127 per block."""
    blocks = x.reshape(*x.shape[:-1], -1, block)
    s = blocks.abs().amax(dim=-1, keepdim=True) / 127
    return ((blocks / s).round().clamp(-127, 127) * s).reshape(x.shape)


g = torch.Generator().manual_seed(2)
base = torch.randn(256, 128, generator=g, dtype=torch.float64)
others = torch.ones(128, dtype=torch.bool)
others[5] = False
magnitudes = [1, 10, 100, 1_000, 10_000, 100_000]
outlier_err = {"FP8, fp32 scale": [], "FP8, ue8m0 scale": [], "INT8": []}
subnormal_share = []
for M in magnitudes:
    xm = base.clone()
    xm[:, 5] = M
    for name, x_hat in (("FP8, fp32 scale", fake_quantize_fp8(xm, 128, "fp32")),
                        ("FP8, ue8m0 scale", fake_quantize_fp8(xm, 128, "ue8m0")),
                        ("INT8", int8_round_trip(xm))):
        outlier_err[name].append(float((x_hat - xm)[:, others].norm() / xm[:, others].norm()))
    x_fp8, _ = quantize_fp8_blocks(xm, 128, "fp32")
    subnormal_share.append(float((x_fp8.float().abs() < 2**-6)[:, others].double().mean()))

fig = figures.new_figure("What one outlier does to the rest of its block",
                         "outlier M in channel 5 (other channels: standard normal)",
                         "relative error of the other 127", log_x=True, log_y=True)
styles = {"FP8, fp32 scale": COLORS["query"], "FP8, ue8m0 scale": COLORS["index"], "INT8": COLORS["cache"]}
for name, colour in styles.items():  # click a legend entry to hide a format; drag to zoom
    errors = [float(f"{e:.4g}") for e in outlier_err[name]]  # 4 digits: the last bits differ between CPUs
    fig.add_scatter(x=magnitudes, y=errors, mode="lines+markers", name=name, line_color=colour,
                    hovertemplate=f"{name}<br>outlier M = %{{x:,}}<br>error of the others %{{y:.2%}}<extra></extra>")
fig.update_layout(legend=dict(x=0.01, y=0.99, xanchor="left", yanchor="top"))
figures.show(fig, "ch11-outlier-error")

i100, i1k = magnitudes.index(100), magnitudes.index(10_000)
fp8 = outlier_err["FP8, fp32 scale"]
assert fp8[i1k] < 1.2 * fp8[0] and outlier_err["INT8"][i100] > 5 * fp8[i100] and fp8[-1] > 2 * fp8[0]
display(Markdown(
    f"INT8's error grows in proportion to the outlier: {outlier_err['INT8'][0]:.2%} at M = 1, "
    f"{outlier_err['INT8'][i100]:.0%} at M = 100. FP8 barely notices: "
    f"{fp8[0]:.2%} at M = 1, {fp8[i100]:.2%} at M = 100, {fp8[i1k]:.2%} at M = 10,000, where "
    f"{subnormal_share[i1k]:.0%} of the other values have been pushed into the subnormal range. Only beyond "
    f"that does the wasted range show (M = {magnitudes[-1]:,}: {fp8[-1]:.1%}). "
    "So in FP8 an outlier does not, in practice, spoil its neighbours. What it does spoil is **itself**: "
    "its rounding error is up to 6.25% of a very large number, and in a dot product that is one large "
    "term that does not average out. Section 6 measures what that does to the indexer's choices."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 4. The Hadamard transform
#
# A **Hadamard matrix** has entries $\pm 1$ and orthogonal rows. Sylvester's construction doubles it:
#
# $$H_1 = [1], \qquad H_{2n} = \begin{bmatrix} H_n & H_n \\ H_n & -H_n \end{bmatrix}, \qquad
#   H_n H_n^\top = n I.$$
#
# Divided by $\sqrt n$ it is **orthonormal**, $\tilde H \tilde H^\top = I$: a rotation (with reflections)
# of $\mathbb{R}^n$. Every entry has the same magnitude $1/\sqrt n$, so each output coordinate is an equal
# mix of *all* input coordinates.

# %% slideshow={"slide_type": "-"}
show_source(hadamard_matrix, start="h = torch.ones", stop="return h")

# %% slideshow={"slide_type": "subslide"}
H = hadamard_matrix(128)  # normalized, float64
identity_err = float((H @ H.T - torch.eye(128, dtype=torch.float64)).abs().max())
assert identity_err < 1e-12 and torch.equal(H, H.T)
fig, axes = plt.subplots(1, 2, figsize=(9, 4.3), dpi=160)  # enough pixels for 128 x 128 cells
axes[0].imshow(hadamard_matrix(16, normalized=False).numpy(), cmap="coolwarm_r", vmin=-1.6, vmax=1.6,
               interpolation="nearest")
axes[0].set_title("$H_{16}$ (blue +1, red −1)")
axes[1].imshow(H.numpy(), cmap="coolwarm_r", vmin=-1.6 / 128**0.5, vmax=1.6 / 128**0.5, interpolation="nearest")
axes[1].set_title("$H_{128} / \\sqrt{128}$: what DeepSeek's indexer uses")
for ax in axes:
    ax.set_xticks([])
    ax.set_yticks([])
fig.tight_layout()
plt.show()
display(Markdown(
    "$\\tilde H_{128} \\tilde H_{128}^\\top$ equals the identity to within 1e-12 in float64, and "
    "$\\tilde H$ is symmetric. The picture shows the recursion: each quadrant of $H_{16}$ is "
    "$H_8$, the bottom-right one negated."
))

# %% [markdown] slideshow={"slide_type": "subslide"}
# Multiplying by $H_n$ costs $n^2$ multiply-adds, but the recursion factors it into $\log_2 n$ stages of
# **butterflies**: $(a, b) \mapsto (a + b,\ a - b)$. That is the **fast Walsh-Hadamard transform**,
# $n \log_2 n$ additions and no multiplications until the final $1/\sqrt n$:

# %% slideshow={"slide_type": "-"}
show_source(fwht, start="h = 1", stop="return x * n**-0.5")

# %% slideshow={"slide_type": "subslide"}
g = torch.Generator().manual_seed(3)
x = torch.randn(1000, 128, generator=g, dtype=torch.float64)
fast_err = float((fwht(x) - x @ H).abs().max())
assert fast_err < 1e-12
rows = ["| n | fwht: n log₂ n additions | x @ H: n² multiply-adds | ratio |", "|---|---|---|---|"]
for n in (2, 16, 128, 1024, 16_384):
    rows.append(f"| {n:,} | {fwht_additions(n):,} | {n * n:,} | {n * n / fwht_additions(n):,.0f}× |")
display(Markdown("\n".join(rows)))
display(Markdown(
    "On 1,000 random vectors of width 128, `fwht(x)` equals `x @ H` to within 1e-12 (float64). "
    f"For DeepSeek's width 128 the fast transform needs {fwht_additions(128):,} additions instead of "
    f"{128 * 128:,} multiply-adds."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 5. A rotation spreads an outlier over every channel
#
# Rotate a vector with one outlier. Coordinate $j$ of $x \tilde H$ is
# $\sum_i x_i \tilde H_{ij} = \pm M/\sqrt n + (\text{a mix of the ordinary values})$: the outlier now sits
# in *every* coordinate at $1/\sqrt n$ of its size, while the ordinary values, mixed with random signs,
# keep their typical size (an orthonormal map keeps the norm).

# %% slideshow={"slide_type": "-"}
g = torch.Generator().manual_seed(4)
v = torch.randn(128, generator=g, dtype=torch.float64)
v[5] = 50.0
v_rot = fwht(v)
peak = {name: float(t.abs().max() / t.pow(2).mean().sqrt()) for name, t in (("before", v), ("after", v_rot))}
fig, axes = plt.subplots(1, 2, figsize=(11, 3.4), sharey=True)
for ax, t, title, colour in ((axes[0], v, "x: one outlier (channel 5 = 50)", COLORS["cache"]),
                             (axes[1], v_rot, "x H / √128: the same vector, rotated", COLORS["query"])):
    ax.bar(range(128), t.numpy(), width=0.9, color=colour)
    ax.axhline(0, color="black", lw=0.6)
    ax.set(title=title, xlabel="channel", xlim=(-1, 128))
    ax.grid(alpha=0.3, axis="y")
axes[0].set_ylabel("value")
fig.tight_layout()
plt.show()
assert math.isclose(float(v.norm()), float(v_rot.norm()), rel_tol=1e-12)
display(Markdown(
    f"Before the rotation the largest entry is {peak['before']:.1f}× the RMS of the vector; after it, "
    f"{peak['after']:.1f}×. The norm is unchanged ({float(v.norm()):.4f} both times). The block's scale "
    f"amax / 448 drops from {float(v.abs().max()) / 448:.4f} to {float(v_rot.abs().max()) / 448:.4f}; in "
    "exchange, every coordinate now carries a share of the outlier."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 6. Dot products are unchanged, and what rotation does to the indexer
#
# The indexer only needs dot products $q \cdot k$, and an orthonormal rotation keeps them:
#
# $$(q \tilde H) \cdot (k \tilde H) = q\, \tilde H \tilde H^\top k^\top = q \cdot k .$$
#
# So rotating *both* the index queries and the index keys changes nothing in exact arithmetic; it only
# changes what FP8 has to round. In the library the indexer does exactly that in `prepare`, which queries
# and keys both pass through:

# %% slideshow={"slide_type": "-"}
show_source(LightningIndexer.prepare, start="c = self.config", stop="return x")

# %% slideshow={"slide_type": "subslide"}
g = torch.Generator().manual_seed(5)
q = torch.randn(64, 128, generator=g, dtype=torch.float64)
k = torch.randn(2048, 128, generator=g, dtype=torch.float64)
q[:, 3] += 30.0
k[:, 3] += 30.0
dot_err = float((fwht(q) @ fwht(k).T - q @ k.T).abs().max())
assert dot_err < 1e-9
display(Markdown(
    f"For 64 queries and 2,048 keys with an outlier channel, $(q\\tilde H) \\cdot (k\\tilde H)$ and "
    f"$q \\cdot k$ agree to within 1e-9 in float64 (the scores themselves are around "
    f"{float((q @ k.T).abs().mean()):.0f}). This is also why Hugging Face's `DeepseekV32Indexer` can skip "
    "the rotation: without FP8 it would change nothing."
))

# %% slideshow={"slide_type": "-"}
# NBVAL_IGNORE_OUTPUT
# The last bits of float64 sums depend on the CPU's vector instructions, so these vary by machine.
print(f"|H H^T - I| <= {identity_err:.1e}, |fwht(x) - x @ H| <= {fast_err:.1e}, "
      f"|(qH)·(kH) - q·k| <= {dot_err:.1e}")

# %% [markdown] slideshow={"slide_type": "subslide"}
# Now the experiment that matters: does the rotation help the indexer **pick the right tokens** after
# FP8? `dsa_widgets.outlier_inputs` draws 32 queries and 2,048 keys of width 128 with standard normal
# entries and adds $M$ to the same 4 channels of every query and key, a stylised version of the outlier
# features of section 3. `rotation_experiment` quantizes them in FP8 blocks of 128, with and
# without the rotation first, and compares the top-64 keys by the FP8 scores with the top-64 by exact
# float64 scores:

# %% slideshow={"slide_type": "-"}
show_source(dsa_widgets.rotation_experiment, start="for name, rotate in", stop='"overlap": topk_overlap')

# %% slideshow={"slide_type": "subslide"}
sweep = {fmt: [dsa_widgets.rotation_experiment(M, 128, fmt) for M in dsa_widgets.OUTLIER_OPTIONS]
         for fmt in ("fp32", "ue8m0")}
xs = range(len(dsa_widgets.OUTLIER_OPTIONS))
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
for ax, fmt in zip(axes, ("ue8m0", "fp32"), strict=True):
    for name, colour, label in (("plain", COLORS["cache"], "FP8 directly"),
                                ("rotated", COLORS["query"], "Hadamard, then FP8")):
        ax.plot(xs, [r[name]["overlap"] for r in sweep[fmt]], "o-", color=colour, label=label)
    ax.axhline(64 / 2048, color=COLORS["muted"], ls=":", lw=1)
    ax.text(0, 64 / 2048 + 0.02, "chance", fontsize=9, color=COLORS["muted"])
    ax.set_xticks(list(xs), [f"{m:g}" for m in dsa_widgets.OUTLIER_OPTIONS])
    ax.set(xlabel="outlier M added to 4 of 128 channels", title=f"blocks of 128, {fmt} scales", ylim=(0, 1.05))
    ax.grid(alpha=0.3)
axes[0].set_ylabel("top-64 overlap with exact scores")
axes[0].legend(loc="upper right")
fig.tight_layout()
plt.show()

# %% slideshow={"slide_type": "subslide"}
def describe(fmt: str) -> str:
    """Where the rotation helps (more than 1 point of overlap), where it hurts, and by how much."""
    runs = sweep[fmt]
    gain = [r["rotated"]["overlap"] - r["plain"]["overlap"] for r in runs]
    helps = [r["outlier"] for r, d in zip(runs, gain, strict=True) if d > 0.01]
    hurts = [r["outlier"] for r, d in zip(runs, gain, strict=True) if d < -0.01]
    best = max(range(len(runs)), key=lambda i: gain[i])
    listed = ", ".join(f"{m:g}" for m in helps)
    text = (f"With {fmt} scales the rotation keeps more of the top-64 for M in {{{listed}}}, "
            f"most at M = {runs[best]['outlier']:g} ({runs[best]['plain']['overlap']:.0%} → "
            f"{runs[best]['rotated']['overlap']:.0%})")
    if hurts:
        worst = min(range(len(runs)), key=lambda i: gain[i])
        text += (f"; it keeps less for M in {{{', '.join(f'{m:g}' for m in hurts)}}}, worst at "
                 f"M = {runs[worst]['outlier']:g} ({runs[worst]['plain']['overlap']:.0%} → "
                 f"{runs[worst]['rotated']['overlap']:.0%})")
    return text + "."


for fmt in ("ue8m0", "fp32"):  # the prose below describes both directions; make sure both occur
    gains = [r["rotated"]["overlap"] - r["plain"]["overlap"] for r in sweep[fmt]]
    assert max(gains) > 0.05 and min(gains) < -0.05
no_outlier = sweep["ue8m0"][0]
top = sweep["ue8m0"][-1]
display(Markdown(
    f"Without outliers FP8 already keeps {no_outlier['plain']['overlap']:.0%} of the top-64 "
    f"({no_outlier['rotated']['overlap']:.0%} rotated): 3 mantissa bits are enough to rank most keys. "
    f"{describe('ue8m0')} {describe('fp32')} At M = {top['outlier']:g} both are close to chance "
    f"({top['plain']['overlap']:.0%} and {top['rotated']['overlap']:.0%}, against {64 / 2048:.0%})."
))
display(Markdown(
    "Why it goes both ways: without the rotation, the four outlier entries are each rounded by up to "
    "6.25% of $M$, and since every query also carries $M$ there, those few rounding errors are multiplied "
    "by $M$ in the score. The rotation spreads them over 128 coordinates whose rounding errors partly "
    "cancel, so for moderate outliers the ranking survives much better. But the rotated coordinates are "
    "all about $M/\\sqrt{128}$ in size, so every one of them is rounded at that scale, and once $M$ is large "
    "this noise in all 128 coordinates buries the ordinary channels' signal, which unrotated FP8 had "
    "kept at full relative precision. With fp32 scales there is one more effect: the largest entry of "
    "each block lands exactly on 448 and is stored without error, so plain FP8 keeps one outlier exact. "
    "The rotation is a good bet for moderate outliers, not a guarantee; it is cheap, as section 8 shows."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 7. Explore: outlier size, block size and scale format
#
# Move the outlier size and switch the block size and the scale format. The curve shows the top-64
# overlap over all outlier sizes for the chosen quantization, with and without the rotation; the table
# gives the key quantization error, the score error (relative to how much the exact scores vary across
# keys) and the overlap at the chosen size. Try blocks of 32 with fp32 scales: each outlier channel then
# sits in its own block as that block's largest value, and plain FP8 stores it exactly.

# %% slideshow={"slide_type": "-"}
explorer = dsa_widgets.rotation_explorer(outlier=20, block=128, scale_format="ue8m0")
explorer

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "subslide"} tags=["hide-input"]
explorer.outlier.value = 50
explorer.block.value = 32
explorer.scale_format.value = "fp32"
r = dsa_widgets.rotation_experiment(50, 32, "fp32")
display(Markdown(
    f"At outlier 50 with blocks of 32 and fp32 scales the explorer shows a top-64 overlap of "
    f"{r['plain']['overlap']:.1%} without the rotation and {r['rotated']['overlap']:.1%} with it: here the "
    f"rotation {'helps' if r['rotated']['overlap'] > r['plain']['overlap'] else 'hurts'}, because plain FP8 "
    "stores each block's outlier exactly. DeepSeek's choice, blocks of 128 with ue8m0 scales, is the "
    "default setting."
))
explorer.outlier.value, explorer.block.value, explorer.scale_format.value = 20, 128, "ue8m0"

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 8. What it costs
#
# **Bytes.** One index key is $d^I = 128$ numbers per token and layer. In bfloat16 that is 256 bytes; in
# FP8 it is 128 bytes plus one float32 scale per 128 values. DeepSeek's FlashMLA kernels store MLA's own
# cache in FP8 too: the 512-wide latent in FP8 with one float32 scale per 128 values, and the 64-wide
# RoPE key kept in bfloat16.

# %% slideshow={"slide_type": "-"}
d_i = sizing.indexer_elements_per_token(v32, per_layer=True)  # 128
d_c, d_rope = sizing.mla_dims(v32)  # 512, 64
index_bf16, index_fp8 = 2 * d_i, d_i + 4 * math.ceil(d_i / 128)
mla_bf16 = 2 * sizing.kv_elements_per_token(v32, per_layer=True)  # (512 + 64) x 2
mla_fp8 = d_c + 4 * (d_c // 128) + 2 * d_rope  # FlashMLA: 512 + 4 * 4 + 64 * 2
assert (index_fp8, mla_fp8, mla_bf16) == (132, 656, 1152)
# the same layouts as the course's sizing stores them (attnlab.cache_formats): every number in bf16, or FP8
assert [layout.bytes for layout in sizing.cache_layouts(v32)] == [mla_bf16, index_bf16]
assert [layout.bytes for layout in sizing.cache_layouts(v32, cache_format="deepseek-fp8")] == [mla_fp8, index_fp8]
L128k = 131_072
rows = ["| per token and layer | bfloat16 | FP8 | saved |", "|---|---|---|---|",
        f"| index key (d^I = {d_i}) | {index_bf16} B | {d_i} + 4 = {index_fp8} B | {index_bf16 / index_fp8:.2f}× |",
        f"| MLA cache (d_c + d_h^R = {d_c} + {d_rope}) | {mla_bf16:,} B | {d_c} + 4 × 4 + {d_rope} × 2 = {mla_fp8} B "
        f"| {mla_bf16 / mla_fp8:.2f}× |",
        f"| both, all {v32.n_layers} layers | {sizing.cache_bytes_per_token(v32):,} B | "
        f"{sizing.cache_bytes_per_token(v32, cache_format='deepseek-fp8'):,} B | "
        f"{(index_bf16 + mla_bf16) / (index_fp8 + mla_fp8):.2f}× |",
        f"| both, all layers, {L128k:,} tokens | {sizing.gib(sizing.kv_cache_bytes(v32, L128k)):.2f} GiB | "
        f"{sizing.gib(sizing.kv_cache_bytes(v32, L128k, cache_format='deepseek-fp8')):.2f} GiB | |"]
display(Markdown("\n".join(rows)))

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "subslide"} tags=["hide-input"]
per_query = (v32.index_n_heads + 1) * fwht_additions(d_i)  # the query's 64 heads and its own key
score_flops = cost["decode_flops_indexer"]
display(Markdown(
    f"**Arithmetic.** Per decoded token and layer, the rotation transforms {v32.index_n_heads} index-query "
    f"heads and one new index key: {per_query:,} additions. At 131,072 tokens of context the indexer's "
    f"scoring costs {score_flops / 1e9:.2f} GFLOP, so the rotation adds {per_query / score_flops:.1e} of it. "
    f"Cached keys are rotated once, when they are written. The FP8 key is {index_bf16 / index_fp8:.2f}× "
    f"smaller to store and to read than a bfloat16 one, and every decoded token reads all "
    f"{L128k:,} of them in every layer ({sizing.format_bytes(cost['decode_bytes_indexer'])} per layer)."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercises
#
# Each exercise has an answer cell (replace `None`) and a check cell. Worked solutions are in
# `notebooks/solutions/ch11.py`; try first.
#
# **Exercise 1.** Here is a block of 128 values. What scale does the **ue8m0** format give it? Give a
# float (a power of two).

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "-"} tags=["hide-input"]
block = ch11.exercise_1_block()
display(Markdown(f"The block: {block.numel()} values from {block[0].item():g} to {block[-1].item():g}, evenly spaced."))

# %% slideshow={"slide_type": "-"}
answer_ue8m0_scale = None

# %% slideshow={"slide_type": "-"}
print(ch11.check_ue8m0_scale(answer_ue8m0_scale))

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Exercise 2.** Write the fast Walsh-Hadamard transform yourself: `my_fwht(x)` takes `x` of shape
# `(..., n)`, `n` a power of two, and returns `x @ H_n / sqrt(n)` (Sylvester's $H_n$) along the last axis,
# without building the $n \times n$ matrix: $\log_2 n$ stages of butterflies $(a, b) \mapsto (a + b, a - b)$.
# Then set `answer_fwht = my_fwht`.

# %% slideshow={"slide_type": "-"}
def my_fwht(x):
    """x (..., n) -> x H_n / sqrt(n), same shape."""
    n = x.shape[-1]
    y = x.clone()
    # for h = 1, 2, 4, ..., n/2: pair coordinate i with i + h inside blocks of 2h, (a, b) -> (a + b, a - b)
    return y / n**0.5


answer_fwht = None

# %% slideshow={"slide_type": "-"}
print(ch11.check_fwht(answer_fwht))

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Exercise 3.** Block FP8 with ue8m0 scales, as DeepSeek-V3.2's `act_quant` does it. Write
# `(x, block) -> (x_fp8, scales)`: split the last axis of `x` (float32) into blocks of `block` values; give
# each block the scale $s = 2^{\lceil \log_2(\max(a, 10^{-4}) / 448) \rceil}$, $a$ its largest $|x_i|$;
# return `x / s` per block cast to `torch.float8_e4m3fn`, and the float32 scales (one per block). Do not
# call `quant.quantize_fp8_blocks`, `quant.block_scales` or `quant.fake_quantize_fp8` (the check notices).

# %% slideshow={"slide_type": "-"}
answer_block_fp8 = None

# %% slideshow={"slide_type": "-"}
print(ch11.check_block_fp8(answer_block_fp8))

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Exercise 4 (predict, then run).** Quantize blocks of 128 standard normal values to FP8, once with exact
# fp32 scales (amax / 448) and once with ue8m0 scales, which round that scale up to a power of two: up to
# 2× larger. How many times larger is the RMS error with ue8m0? Write your guess first; the check cell runs it.

# %% slideshow={"slide_type": "-"}
prediction_ue8m0_cost = None  # a positive number: RMS error with ue8m0 / RMS error with fp32 scales

# %% slideshow={"slide_type": "-"}
print(ch11.check_prediction_ue8m0_cost(prediction_ue8m0_cost))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Summary
#
# * FP8 e4m3 has 3 mantissa bits and reaches ±448: every normal value is stored within 6.25% of itself;
#   below $2^{-6}$ precision becomes absolute.
# * Block quantization gives each 128 values one scale, amax / 448, or with DeepSeek's ue8m0 the next
#   power of two above it, which turns quantization into plain rounding to 3 mantissa bits.
# * An outlier hardly harms its FP8 neighbours (unlike INT8), but its own rounding error is one large
#   term in every dot product it enters.
# * The Hadamard rotation $\tilde H = H/\sqrt n$ is orthonormal: it keeps dot products, costs
#   $n \log_2 n$ additions, and spreads an outlier over all channels.
# * On queries and keys with outlier channels, rotating before FP8 keeps more of the right top-k for
#   moderate outliers and can keep less for extreme ones; measure before trusting it.
# * FP8 stores an index key in about half the bytes of bfloat16 (128 values plus one 4-byte scale), and
#   FlashMLA's FP8 MLA cache takes 512 + 4 × 4 + 64 × 2 bytes per token and layer.
