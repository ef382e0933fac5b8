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
# # Chapter 2 · Attention in vector form
#
# *Video chapter at 01:21.*
#
# > **What you will learn:** attention for one query: dot-product scores, the 1/√d scale, a softmax that
# > cannot overflow, the weighted sum of values; where q, k and v come from.
# >
# > **What it assumes:** vectors and dot products; [chapter 1](01_tokenization.ipynb) for where the vectors
# > come from.
#
# After tokenization every position of a sequence holds a vector. On its own, that vector only knows its
# own token: in `the method returns it`, the vector of `it` cannot tell what "it" is. **Attention** lets
# a position pull information from the others. The current position asks a question, the **query** `q`;
# every position advertises what it holds with a **key** `kᵢ` and offers its content as a **value** `vᵢ`.
# The query is compared with every key, the comparisons become weights, and the answer is the weighted
# average of the values. In a model, `q`, `kᵢ` and `vᵢ` are not the token vectors themselves but three
# learned linear maps of them, $q = W^Q x$, $k_i = W^K x_i$, $v_i = W^V x_i$ (section 6 reads them out of a
# trained model; chapter 3 builds the maps); here they are given, so the mechanism can be seen alone.
#
# This chapter does it for **one query**, with vectors small enough to draw: dot products as similarity,
# why the scores are divided by √d, a softmax that cannot overflow, and the weighted sum. Then the same
# computation inside one head of a trained language model, and what it costs. Chapter 3 stacks all the
# queries into matrices.

# %% slideshow={"slide_type": "skip"}
import math

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from IPython.display import Markdown, display

from attnlab import figures, show_source
from attnlab.attention import attention_flops, attention_vector, softmax
from attnlab.devices import dtype_bytes
from attnlab.exercises import ch02
from attnlab.interactive import attention as ia
from attnlab.model import load_checkpoint
from attnlab.plots import COLORS
from attnlab.tokenization import load_tokenizer

torch.manual_seed(0)
plt.rcParams.update({"font.size": 11, "axes.titlesize": 12})

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### The idea, animated
#
# The chapter in one short animation. It plays here once the videos are rendered (`./course animations`);
# until then, and in static exports, the last frame stands in.

# %% slideshow={"slide_type": "-"}
from attnlab.media import show_animation

show_animation("AttentionVectorScene")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 1. Dot products measure similarity
#
# Four keys and one query in the plane (d = 2), so that we can draw them. The keys are the course's
# hand-made example (`ia.TOY_KEYS`, listed in the table below); the widget of section 7 uses them too.

# %% slideshow={"slide_type": "-"}
keys = torch.tensor(ia.TOY_KEYS)  # k₁..k₄, (n, d) = (4, 2)
labels = list(ia.TOY_LABELS)
q = torch.tensor([1.5, 0.8])  # the query, (d,)
n, d = keys.shape

# %% [markdown] slideshow={"slide_type": "subslide"}
# The score of key $k_i$ is its dot product with the query:
#
# $$q \cdot k_i = \sum_{j=1}^{d} q_j\, k_{i,j} = \lVert q\rVert\, \lVert k_i\rVert \cos\theta_i .$$
#
# It is large when $k_i$ points the same way as $q$ (small angle $\theta_i$), zero when they are
# perpendicular, negative when they point apart, and it grows with the lengths of both vectors.

# %% slideshow={"slide_type": "-"}
dots = keys @ q  # q · k_i for every key at once, (n,)
cos = dots / (q.norm() * keys.norm(dim=1))
rows = ["| key | kᵢ | ‖kᵢ‖ | angle to q | q · kᵢ |", "|---|---|---|---|---|"]
for lab, k, c, s in zip(labels, keys.tolist(), cos.tolist(), dots.tolist(), strict=True):
    rows.append(f"| {lab} | ({k[0]:+.1f}, {k[1]:+.1f}) | {math.hypot(*k):.2f} | "
                f"{math.degrees(math.acos(max(-1.0, min(1.0, c)))):.0f}° | **{s:+.2f}** |")
display(Markdown("\n".join(rows)))

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.8))
ia.draw_vectors(ax1, keys, labels, COLORS["key"], extra=(q, "q", COLORS["query"]), title="query q and keys kᵢ")
ia.draw_bars(ax2, dots, labels, COLORS["muted"], "dot products q · kᵢ")
fig.tight_layout()
plt.show()

best, worst = int(dots.argmax()), int(dots.argmin())
display(Markdown(
    f"{labels[best]} points closest to q and scores highest ({dots[best]:+.2f}); {labels[worst]} points "
    f"away and scores {dots[worst]:+.2f}. {labels[1]} is {math.degrees(math.acos(cos[1])):.0f}° away "
    f"from q, much further than {labels[0]} ({math.degrees(math.acos(cos[0])):.0f}°), and scores "
    f"{dots[1]:+.2f} against {dots[0]:+.2f}. Both keys are {keys[0].norm():.2f} and {keys[1].norm():.2f} "
    f"long, so the whole drop is the angle: ‖q‖ ‖k‖ cos θ = {q.norm():.2f} × {keys[1].norm():.2f} × "
    f"{cos[1]:.2f} against {q.norm():.2f} × {keys[0].norm():.2f} × {cos[0]:.2f}. A longer key would "
    "score higher at the same angle; section 7's widget stretches the query to show it."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 2. Why divide by √d
#
# In a real model q and k have d = 64 or 128 components, not 2. If their components are independent with
# mean 0 and variance 1, the dot product is a sum of d independent terms of variance 1, so
#
# $$\operatorname{Var}(q\cdot k) = d, \qquad \operatorname{std}(q\cdot k) = \sqrt d .$$
#
# The wider the head, the larger the scores. Dividing by $\sqrt d$ brings the spread back to 1 for every
# width. Measured on random vectors:

# %% slideshow={"slide_type": "-"}
gen = torch.Generator().manual_seed(0)
widths = [2, 8, 32, 128, 512, 2048]
n_pairs, n_keys = 1000, 8
std_raw, std_scaled, peak_raw, peak_scaled, slope_raw, slope_scaled = [], [], [], [], [], []
for width in widths:
    qs = torch.randn(n_pairs, width, generator=gen)
    ks = torch.randn(n_pairs, n_keys, width, generator=gen)
    s = torch.einsum("pd,pkd->pk", qs, ks)  # (pairs, keys): 8 scores per random query
    std_raw.append(float(s.std()))
    std_scaled.append(float((s / math.sqrt(width)).std()))
    for scores, peak, slope in ((s, peak_raw, slope_raw), (s / math.sqrt(width), peak_scaled, slope_scaled)):
        a = softmax(scores)
        peak.append(float(a.max(dim=-1).values.mean()))  # the largest of the 8 weights, on average
        slope.append(float((a * (1 - a)).sum(-1).mean()))  # sum_i da_i/ds_i: how much the weights can move

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10.5, 3.8))
ax1.loglog(widths, std_raw, "o-", color=COLORS["cache"], label="q · k")
ax1.loglog(widths, std_scaled, "s-", color=COLORS["query"], label="q · k / √d")
ax1.loglog(widths, [math.sqrt(w) for w in widths], ":", color=COLORS["muted"], label="√d")
ax1.set(xlabel="head width d", ylabel="standard deviation of the score", title="Scores grow like √d")
ax1.legend()
ax2.semilogx(widths, peak_raw, "o-", color=COLORS["cache"], label="softmax(q · k)")
ax2.semilogx(widths, peak_scaled, "s-", color=COLORS["query"], label="softmax(q · k / √d)")
ax2.axhline(1 / n_keys, color=COLORS["muted"], ls=":", label=f"uniform, 1/{n_keys}")
ax2.set(xlabel="head width d", ylabel="largest weight (mean)", ylim=(0, 1.05),
        title=f"Unscaled softmax saturates ({n_keys} keys)")
ax2.legend(loc="center right")
for ax in (ax1, ax2):
    ax.grid(alpha=0.3, which="both")
fig.tight_layout()
plt.show()

i = widths.index(512)
display(Markdown(
    f"At d = {widths[i]} the raw scores have a standard deviation of {std_raw[i]:.1f} "
    f"(√{widths[i]} = {math.sqrt(widths[i]):.1f}); scaled, {std_scaled[i]:.2f}. Unscaled, the softmax "
    f"gives on average {peak_raw[i]:.0%} of the weight to a single key out of {n_keys}: it has become "
    f"an argmax. That also stops learning: the derivative of weight $a_i$ with respect to its own score is "
    f"$a_i(1-a_i)$, and summed over the keys it is {slope_raw[i]:.3f} unscaled against "
    f"{slope_scaled[i]:.3f} scaled. Near-zero gradients mean the model cannot learn to shift its "
    f"attention, which is why Vaswani et al. (2017) divide by $\\sqrt{{d}}$."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 3. Softmax, without overflow
#
# The scaled scores $s_i = q \cdot k_i / \sqrt d$ become weights that are positive and sum to 1:
#
# $$a_i = \operatorname{softmax}(s)_i = \frac{e^{s_i}}{\sum_j e^{s_j}} = \frac{e^{s_i - m}}{\sum_j e^{s_j - m}}
# \quad\text{for any } m .$$
#
# The second form multiplies top and bottom by $e^{-m}$, so it is the same number. With $m = \max_j s_j$
# every exponent is at most 0, which matters on a computer: float32 cannot hold $e^{89}$.

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "-"} tags=["hide-input"]
big = torch.tensor([90.0, 95.0, 100.0])  # float32 scores, as an unscaled wide head can produce
naive = torch.exp(big) / torch.exp(big).sum()
safe = softmax(big)
f32_max, f16_max = torch.finfo(torch.float32).max, torch.finfo(torch.float16).max
display(Markdown(
    f"float32 tops out at {f32_max:.3e}, so $e^{{x}}$ overflows to infinity once x > "
    f"{math.log(f32_max):.1f} (float16 already at x > {math.log(f16_max):.1f}). For scores "
    f"{big.tolist()}: `exp(s) / exp(s).sum()` = {naive.tolist()} (∞/∞ is not a number), while "
    f"`attnlab.attention.softmax(s)` = {[round(x, 5) for x in safe.tolist()]}, the same as for "
    f"{(big - big.max()).tolist()}: {torch.equal(safe, softmax(big - big.max()))}."
))

# %% slideshow={"slide_type": "subslide"}
show_source(softmax, start="row_max = ", stop="return exp /")

# %% [markdown] slideshow={"slide_type": "subslide"}
# The library's version also handles a row whose every score is $-\infty$ (every key hidden by a mask,
# chapter 3): there the softmax is undefined, and it raises an error by default instead of returning NaN.
# Back to our four keys, with $d = 2$:

# %% slideshow={"slide_type": "-"}
state = ia.VectorState(angle_deg=math.degrees(math.atan2(q[1], q[0])), length=float(q.norm()),
                       keys=tuple(map(tuple, keys.tolist())), labels=tuple(labels))
fig = ia.vector_figure(state)
plt.show()
view = ia.vector_view(state)
weights = view["weights"]
display(Markdown(
    f"The scores are the dot products times 1/√{d} = {1 / math.sqrt(d):.3f}. Softmax turns them into "
    f"weights summing to {weights.sum():.3f}: {labels[best]} gets {weights[best]:.0%}, "
    f"{labels[worst]} only {weights[worst]:.1%}. No key gets exactly 0: softmax is a *soft* argmax."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 4. The weighted sum of values
#
# The output is the average of the values, weighted by the attention:
#
# $$o = \sum_{i=1}^{n} a_i\, v_i .$$
#
# The values need not have the width of the keys. To see the mixing, let each value be a colour, three
# numbers (red, green, blue); the output is then a blend of the four colours.

# %% slideshow={"slide_type": "-"}
values = torch.tensor([[0.85, 0.15, 0.10],   # v₁ red
                       [0.10, 0.60, 0.20],   # v₂ green
                       [0.15, 0.30, 0.85],   # v₃ blue
                       [0.95, 0.80, 0.10]])  # v₄ yellow, (n, d_v) = (4, 3)
output = weights @ values  # sum_i a_i v_i, (d_v,)

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.4), gridspec_kw={"width_ratios": [2, 1]})
ax1.bar(range(n), weights.tolist(), color=values.tolist(), edgecolor="black")
ax1.set_xticks(range(n), [f"a{s} · v{s}" for s in "₁₂₃₄"])
ax1.set(ylabel="weight aᵢ", ylim=(0, 1), title="each value, scaled by its weight")
ax2.imshow(output.view(1, 1, 3).numpy())
ax2.set_xticks([])
ax2.set_yticks([])
ax2.set_title("output o = Σ aᵢ vᵢ")
fig.tight_layout()
plt.show()
display(Markdown(
    f"o = ({', '.join(f'{x:.2f}' for x in output.tolist())}): mostly the red of v₁, pulled toward the "
    f"green of v₂. Every output is a convex combination of the values (weights ≥ 0, summing to 1), so it "
    f"always lies between them."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 5. The library's `attention_vector`
#
# The three steps together, written as a loop over the keys, as in the equations:

# %% slideshow={"slide_type": "-"}
show_source(attention_vector, start="scale = 1.0", stop="return output")

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "subslide"} tags=["hide-input"]
out, w = attention_vector(q, keys, values)
sdpa = F.scaled_dot_product_attention(q[None], keys, values)[0]  # PyTorch's fused kernel, (d_v,)
gen = torch.Generator().manual_seed(1)
q64, k64, v64 = (torch.randn(*shape, generator=gen, dtype=torch.float64) for shape in ((64,), (100, 64), (100, 32)))
diff32 = float((out - sdpa).abs().max())
diff64 = float((attention_vector(q64, k64, v64)[0] - F.scaled_dot_product_attention(q64[None], k64, v64)[0])
               .abs().max())
display(Markdown(
    f"On our example, `attention_vector` gives o = ({', '.join(f'{x:.4f}' for x in out.tolist())}), the "
    f"blend above. PyTorch's `scaled_dot_product_attention` agrees to within 1e-6 in float32: "
    f"**{diff32 < 1e-6}**; on a random head with d = 64 and 100 keys in float64, to within 1e-12: "
    f"**{diff64 < 1e-12}**."
))

# %% slideshow={"slide_type": "-"}
# NBVAL_IGNORE_OUTPUT
# The last bits of a float sum depend on the CPU's vector instructions, so these numbers vary by machine.
print(f"largest |difference| from SDPA: float32 {diff32:.1e}, float64 {diff64:.1e}")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 6. One head of a trained model
#
# The course's tiny language model (`tiny_mha`: 4 layers of 8 heads, `d_model` = 128, trained on
# Python's documentation) computes exactly this, once per position, head and layer. We take a sentence,
# run the layers below the one we look at, and read out that layer's queries, keys and values with its
# own projections. Each head works in its own 16-dimensional space. (The model also rotates q and k by
# their positions, RoPE, a later chapter; the rotated vectors are what the dot products see.)

# %% slideshow={"slide_type": "-"}
model = load_checkpoint("tiny_mha").requires_grad_(False)  # inference only: no gradients
tok = load_tokenizer()
sentence = "The return statement leaves the current function call with the expression list as return value."
ids = torch.tensor([tok.encode(sentence)])  # (1, seq)
tokens = ia.token_labels(tok, ids[0].tolist())
maps = ia.attention_maps(model, ids)  # per layer (n_heads, seq, seq), as the model computes them
t = len(tokens) - 1  # the query: the last token


def top_other_key(weights_row: torch.Tensor) -> float:
    """The largest weight on a key other than the first token and the query itself."""
    return float(weights_row[1:-1].max())


layer, head = max(((lay, h) for lay in range(len(maps)) for h in range(maps[lay].shape[0])),
                  key=lambda lh: top_other_key(maps[lh[0]][lh[1], t, : t + 1]))
x = ia.layer_input(model, ids, layer)  # what this layer's attention reads, (1, seq, d_model)
q_all, k_all, v_all = model.blocks[layer].attn.project(x)  # each (1, n_heads, seq, d_head)
q_t = q_all[0, head, t]  # one query, (d_head,)
keys_t, values_t = k_all[0, head, : t + 1], v_all[0, head, : t + 1]  # keys 0..t: the past only, (t+1, d_head)
out_t, w_t = attention_vector(q_t, keys_t, values_t)
diff_model = float((w_t - maps[layer][head, t, : t + 1]).abs().max())
display(Markdown(
    f"The sentence is {len(tokens)} tokens; the query is the last one, `{tokens[t]}`. Of all "
    f"{len(maps) * maps[0].shape[0]} heads, head {head} of layer {layer} puts the most weight on a "
    f"single earlier token (other than the first). Its query has d = {q_t.shape[0]} components, and "
    f"`attention_vector` on it gives the weights the model computed itself, to within 1e-6: "
    f"**{diff_model < 1e-6}**."
))

# %% slideshow={"slide_type": "subslide"}
# NBVAL_IGNORE_OUTPUT
# The last bits of a float sum depend on the CPU's vector instructions, so this number varies by machine.
print(f"largest |difference| from the model's own weights: {diff_model:.1e}")

# %% slideshow={"slide_type": "subslide"}
# hover a bar for the token pair and its weight
fig = figures.new_figure(f"layer {layer}, head {head}: where the query '{tokens[t]}' looks", "key", "weight")
fig.add_bar(x=list(range(t + 1)), y=[round(w, 4) for w in w_t.tolist()], marker_color=COLORS["query"],
            customdata=[[tok, j] for j, tok in enumerate(tokens[: t + 1])],
            hovertemplate=f"query '{tokens[t]}' ({t}) → key '%{{customdata[0]}}' (%{{customdata[1]}})"
                          "<br>weight %{y:.3f}<extra></extra>")
fig.update_xaxes(tickvals=list(range(t + 1)), ticktext=tokens[: t + 1], tickangle=-60)
figures.show(fig, "ch02-query-weights")
order = w_t.argsort(descending=True)[:3].tolist()
display(Markdown(
    "The three keys with the most weight: "
    + ", ".join(f"`{tokens[j]}` (position {j}, {w_t[j]:.0%})" for j in order)
    + f". The weights over all {t + 1} keys sum to {w_t.sum():.3f}; the output is a {out_t.shape[0]}-number "
    "blend of those keys' values, which the layer passes on."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 7. Try it
#
# Turn the query with the angle slider and watch the weights follow the key it points at. Shrink its
# length to 0: every score is 0 and the weights are uniform. Stretch it, or lower the temperature T
# (which divides the scores), and the softmax sharpens toward a single key; raise T and it flattens.

# %% slideshow={"slide_type": "-"}
explorer = ia.vector_explorer(keys, labels, angle_deg=30, length=1.5)
explorer

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 8. What it costs
#
# One query against $n$ keys costs $n \cdot d$ multiply-adds for the scores and $n \cdot d_v$ for the
# weighted sum (plus $n$ exponentials). The work is tiny per key, but **every key and every value is
# read once**, so the memory traffic grows exactly as fast as the work. The table counts one head with
# $d = d_v = 128$, the keys and values stored in bfloat16.

# %% slideshow={"slide_type": "-"}
d_head = 128
elem = dtype_bytes(torch.bfloat16)
rows = ["| keys n | multiply-adds n·d + n·d_v | FLOPs (2 per multiply-add) | K and V read | FLOPs per byte |",
        "|---|---|---|---|---|"]
for n_keys in (16, 1024, 32 * 1024, 1024 * 1024):
    macs = n_keys * d_head + n_keys * d_head
    flops = attention_flops(1, n_keys, d_head)  # 2 n (d + d_v): the library's count agrees
    assert flops == 2 * macs
    read = 2 * n_keys * d_head * elem  # bytes of keys + values
    rows.append(f"| {n_keys:,} | {macs:,} | {flops:,} | {read / 2**20:,.3f} MiB | {flops / read:.1f} |")
display(Markdown("\n".join(rows)))
display(Markdown(
    f"Whatever n, one query does {attention_flops(1, 1, d_head) / (2 * d_head * elem):.1f} FLOP per byte "
    "it reads. A GPU can do many times more arithmetic than that in the time it takes to fetch a byte "
    "from its memory, so this loop is limited by memory, not arithmetic. When a model generates text it "
    "runs exactly this for each new token, in every head of every layer, over all the keys and values so "
    "far. Keeping those keys and values (the KV cache) and reading them fast is what the rest of the "
    "course is about."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercises
#
# Each exercise has a cell to fill in and a check cell that tests your function on many inputs.
# Worked solutions are in `notebooks/solutions/ch02.py`; try first.
#
# **Exercise 1.** Write a softmax for a 1-D tensor of scores that does not overflow: it must return
# finite weights for `torch.tensor([1000.0, 1001.0, 1002.0])` in float32, and zeros where a score is
# `-inf`. Do not call `torch.softmax` (in any of its spellings: `F.softmax`, `scores.softmax`) or the
# library's `softmax`: the check notices.

# %% slideshow={"slide_type": "-"}
def my_softmax(scores):
    """scores: (n,) tensor -> weights (n,), positive, summing to 1."""
    ...


answer_softmax = None  # when my_softmax works: answer_softmax = my_softmax

# %% slideshow={"slide_type": "-"}
print(ch02.check_softmax(answer_softmax))

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Exercise 2.** Write the scaled scores of one query against n keys, $s_i = q \cdot k_i / \sqrt d$,
# for `q` of shape `(d,)` and `keys` of shape `(n, d)`, returning shape `(n,)`. One matrix-vector
# product does all the dot products.

# %% slideshow={"slide_type": "-"}
def my_scaled_scores(q, keys):
    """q: (d,), keys: (n, d) -> scores (n,)."""
    ...


answer_scaled_scores = None  # when it works: answer_scaled_scores = my_scaled_scores

# %% slideshow={"slide_type": "-"}
print(ch02.check_scaled_scores(answer_scaled_scores))

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Exercise 3.** Put it together: the attention output $o = \sum_i a_i v_i$ for one query, with
# `values` of shape `(n, d_v)`, returning shape `(d_v,)`. Your two functions above are allowed; the library's
# `attention_vector` is not (the check notices).

# %% slideshow={"slide_type": "-"}
def my_attend(q, keys, values):
    """q: (d,), keys: (n, d), values: (n, d_v) -> output (d_v,)."""
    ...


answer_attend = None  # when it works: answer_attend = my_attend

# %% slideshow={"slide_type": "-"}
print(ch02.check_attend(answer_attend))

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Exercise 4 (predict, then run).** Take a query and 16 keys in $d$ = 512 dimensions, all entries standard
# normal, and apply softmax to the **raw** scores $q \cdot k_i$, without dividing by $\sqrt d$. On average
# over many queries, how large is the largest of the 16 weights? Write your guess first; the check cell runs
# the experiment and explains.

# %% slideshow={"slide_type": "-"}
prediction_unscaled_max_weight = None  # a number between 0 and 1

# %% slideshow={"slide_type": "-"}
print(ch02.check_prediction_unscaled_max_weight(prediction_unscaled_max_weight))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Summary
#
# * A query scores each key with a dot product: alignment times length.
# * Dividing by $\sqrt d$ keeps the scores' spread at about 1 for any head width; without it the
#   softmax saturates and its gradients vanish.
# * Softmax turns scores into weights; subtracting the maximum first changes nothing mathematically and
#   prevents overflow.
# * The output is the weighted average of the values. One query against n keys costs about
#   $n(d + d_v)$ multiply-adds and reads every key and value once.
