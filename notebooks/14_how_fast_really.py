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
# # Chapter 14 · How fast, really
#
# *Course chapter (not in the video).*
#
# > **What you will learn:** to time a decode step honestly, to read a roofline, and to compare the course's
# > layers with PyTorch's SDPA and Hugging Face's DeepSeek attention.
# >
# > **What it assumes:** [chapters 4 to 10](04_kv_caching.ipynb); memory bandwidth and FLOPs (the chapter
# > explains both). One section looks ahead to the schemes of [chapters 17 to 20](17_sliding_windows_and_sinks.ipynb).
#
# The earlier chapters counted bytes and FLOPs on paper. This one runs the clock. One attention layer, batch
# 1, decodes one new token against a cache of $L$ tokens, for every scheme of the course: MHA, GQA, MQA,
# MLA (naive and absorbed) and DSA. We look at the step time, check the cache against the formula, place
# each scheme on a roofline, compare with PyTorch's and Hugging Face's implementations, hold the run to a
# few goals, and finally set the cache each tiny model keeps against the validation loss it reached.
#
# Every timing here was taken on one core of a CPU, not on a GPU; the first cell below names the CPU, as
# the run recorded it, and measures what it can stream and compute. The numbers say how the schemes behave
# on a small memory-bound machine. `python -m attnlab.bench --device cuda --dtype bfloat16` produces the
# same tables on a GPU.

# %% slideshow={"slide_type": "skip"}
import matplotlib.pyplot as plt
import torch
from IPython.display import Markdown, display

from attnlab import bench, costs, figures, fused, quality, schemes, show_source
from attnlab.exercises import ch14
from attnlab.interactive import bench as bench_ui
from attnlab.model import load_checkpoint
from attnlab.sizing import format_bytes

_ = torch.manual_seed(0)
# One thread: the live run below measures one core, like the committed run.
torch.set_num_threads(1)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 1. The committed CPU run
#
# `python -m attnlab.bench --out lib/attnlab/data/bench_cpu.json` wrote this file (the defaults: one thread,
# contexts 1K to 32K tokens, 9 timed rounds after 2 warm-up rounds; the lines below read them from the file).
# The layer is `bench.DEFAULT_SHAPE`: $d = 1024$, 16 query heads of 64; GQA keeps 4 K/V heads, MQA one; MLA
# caches a latent of $d_c = 256$ plus a RoPE key of $d_h^R = 32$; DSA adds a 4-head indexer of width 64 and
# attends to the top $k = 256$ tokens only. On a CPU, DSA's index scores run as one fused C loop
# (`attnlab.fused`, built with the system's C compiler); section 3 times it against PyTorch's matmuls.
#
# **How it times.** At each context every scheme's layer and cache are built side by side, the cache filled
# directly with random numbers of the right shape. Then come rounds: each round runs every scheme's decode
# step once, in an order that rotates from round to round, so a busy moment on the machine hits all schemes
# alike. Before each step the cache is cut back to $L$ tokens (outside the timed region); the cache is
# preallocated, so a step writes its one new token in place and copies nothing. Each point is the median of
# the timed rounds; the run also keeps every time, the spread (how far the middle half of the rounds lie
# apart) and the page faults of each step (fresh memory the kernel had to map in).
#
# **Where the bytes sit.** MHA's cache stores V transposed (`LayerCache(..., transposed=("v",))`): the same
# numbers, but each feature of a head holds its $L$ tokens side by side, as llama.cpp stores V. A decode step's
# mix $\sum_s a_s v_s$ is then, per head, $d_h$ rows of $L$ numbers against the weights, which BLAS streams
# faster than $L$ rows of $d_h$. Where $r$ query heads share a V head (GQA, MQA) the mix is an $r$-row product
# that the usual layout serves as well, so only MHA's is transposed (`bench.transposed_names`); section 1's
# peer comparison times both layouts for every dense scheme.
#
# The weights have a layout too. `nn.Linear` keeps $W$ as (out, in), one row per output, so one token times
# $W^\top$ is a dot product per output. The benchmark's layers, every scheme alike, keep the same matrices
# column-major (`bench.column_major_projections`): $W^\top$'s rows lie one after another, and the product
# becomes $\sum_i x_i\,(W^\top)_{i,:}$, one pass from start to end that BLAS streams faster. MLA's $W^{UKV}$
# stays in rows: the absorbed step reads it as per-head views ($W^{UK}_i$, $W^{UV}_i$). The run times both
# layouts too (`bench.bench_projection_layouts`), below.

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "-"} tags=["hide-input"]
report = bench_ui.load_results()
shape = bench.BenchShape(**report["shape"])
contexts = report["contexts"]
m = report["machine"]
roof = bench_ui.roofline_machine(report)
display(Markdown(
    f"**Run:** {bench_ui.report_label(report)}, torch {report['torch_version']}, median of {report['repeats']} "
    f"interleaved rounds (after {report['warmup']} warm-up rounds) per point, contexts "
    f"{', '.join(f'{c:,}' for c in contexts)} tokens, schemes "
    f"{', '.join(bench_ui.SCHEME_LABELS[s] for s in report['schemes'])}.\n\n"
    f"**The CPU:** {bench_ui.cpu_description(report)}, {report['device']['torch_threads']} torch thread. On one "
    f"core it reads {m['read_bandwidth'] / 1e9:.1f} GB/s from memory (`x.sum()` over "
    f"{format_bytes(m['read_bytes'])}) and copies {m['copy_bandwidth'] / 1e9:.1f} GB/s (bytes read + written); a "
    f"matmul shaped like a decode step's, {roof['peak_probe'].removeprefix('decode matmul ')}, runs at "
    f"{m['decode_matmul_rate'] / 1e9:.0f} GFLOP/s, a square {m['gemm_n']}² GEMM at {m['matmul_rate'] / 1e9:.0f}. "
    f"Its **balance** is {roof['balance']:.1f} FLOP per byte ({m['decode_matmul_rate'] / 1e9:.0f} GFLOP/s / "
    f"{m['read_bandwidth'] / 1e9:.1f} GB/s): a step that does fewer FLOPs per byte it moves is memory-bound here. "
    f"Each probe ran twice, before and after the decode rounds, and these are the better passes (the read "
    f"bandwidth: {' and '.join(f'{v / 1e9:.1f}' for v in m['probe_passes']['read_bandwidth'])} GB/s): on a "
    f"shared machine a busy moment lowers a probe as it slows a step, and a ceiling must not be taken in one."
))

# %% [markdown] slideshow={"slide_type": "subslide"}
# Each line is one scheme: its median decode-step time against the number of cached tokens $L$, both axes
# logarithmic. A line rising with slope 1 means time proportional to $L$: reading the cache dominates the
# step. A flat line means a fixed cost dominates: the layer's weights, read once per step, and its
# projections. MHA, GQA and MQA are parallel lines whose gaps are their caches' sizes; naive
# MLA sits far above everything, rebuilding every key and value at every step; absorbed MLA reads the small
# latent cache; DSA flattens out, reading the full latent of only $k$ = 256 tokens.

# %% slideshow={"slide_type": "-"}
figures.show(bench_ui.time_plotly(report), "ch14-decode-time")  # hover a point; drag to zoom, double-click back

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "subslide"} tags=["hide-input"]
big, small = max(contexts), min(contexts)
r_big = bench_ui.ratios_vs_mha(report, big)
r_small = bench_ui.ratios_vs_mha(report, small)
at_big = {r["scheme"]: r for r in bench_ui.select_rows(report, report["schemes"], big)}
at_small = {r["scheme"]: r for r in bench_ui.select_rows(report, report["schemes"], small)}
growth = {s: at_big[s]["time_s"] / at_small[s]["time_s"] for s in report["schemes"]}
display(Markdown(
    f"At {big:,} cached tokens MHA needs {at_big['mha']['time_s'] * 1e3:.1f} ms "
    f"per step; MQA {r_big['mqa']['time']:.2f}× that, GQA {r_big['gqa']['time']:.2f}×, absorbed MLA "
    f"{r_big['mla_absorbed']['time']:.2f}× and DSA {r_big['dsa']['time']:.2f}×. Naive MLA, which rebuilds every "
    f"key and value each step, takes {r_big['mla_naive']['time']:.1f}× MHA's time. At {small:,} tokens the "
    f"weights still weigh in and the spread is narrower: MQA {r_small['mqa']['time']:.2f}×, absorbed MLA "
    f"{r_small['mla_absorbed']['time']:.2f}×. From {small:,} to {big:,} tokens ({big // small}× the cache) MHA's "
    f"step grows {growth['mha']:.1f}×, absorbed MLA's {growth['mla_absorbed']:.1f}× and DSA's only "
    f"{growth['dsa']:.1f}×.\n\n"
    f"How steady the clock was: at {big:,} tokens the middle half of each scheme's rounds lie within "
    f"{max(r['spread'] for r in at_big.values()):.0%} of its median (the widest: "
    f"{bench_ui.SCHEME_LABELS[max(at_big.values(), key=lambda r: r['spread'])['scheme']]}). Naive MLA page-faults "
    f"{at_big['mla_naive']['faults_per_call']:,.0f} pages of fresh memory per step at {big:,} tokens: its rebuilt "
    f"keys and values, hundreds of MB that PyTorch's allocator maps in afresh at every step. The schemes that "
    f"read the cache in place fault {max(at_big[s]['faults_per_call'] for s in ('mha', 'mla_absorbed', 'dsa')):,.0f}."
))

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Cache bytes: measured against the formula
#
# The benchmark fills each cache with real tensors and reads `LayerCache.nbytes`; `costs.cache_bytes`
# predicts $b\,L$ times $2 n_{kv} d_h$ (dense), $d_c + d_h^R$ (MLA) or $d_c + d_h^R + d^I$ (DSA, which also
# caches the indexer's key), each scheme's rule in `attnlab.schemes`:

# %% slideshow={"slide_type": "-"}
show_source(schemes, start="def _mha_cache", stop='return {**_mla_cache(s), "index_key"')

# %% slideshow={"slide_type": "subslide"}
rows = ["| scheme | measured | formula | equal | × MHA |", "|---|---:|---:|:---:|---:|"]
for r in bench_ui.select_rows(report, report["schemes"], big):
    rows.append(f"| {bench_ui.SCHEME_LABELS[r['scheme']]} | {r['cache_bytes_measured']:,} | "
                f"{r['cache_bytes_formula']:,} | {r['cache_bytes_measured'] == r['cache_bytes_formula']} | "
                f"{r['cache_vs_mha']:.4g} |")
display(Markdown(f"Cache bytes at L = {big:,}, {report['dtype']}, one layer:\n\n" + "\n".join(rows)))
display(Markdown(f"Every measured cache, every context, equals its formula: "
                 f"**{bench_ui.cache_matches_formula(report)}**."))

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Against the peers
#
# Two comparisons run in the same benchmark. For the dense schemes, the attention core of one step:
# `attnlab.gqa.grouped_attention` (plain einsums) against PyTorch's fused
# `scaled_dot_product_attention(..., enable_gqa=True)`. For MLA, Hugging Face's `DeepseekV3Attention`, which
# re-expands keys and values from the latent every step, against this library's naive and absorbed decode
# with the same weights and the same cached latents: both caches are filled directly with the same random
# latents, in each library's layout (their outputs agree to float32 rounding).
#
# In the figure each line is a ratio of median step times, one above the dashed line at 1 meaning the first
# named is slower: the plain-einsum attention core over SDPA for each dense scheme, and Hugging Face's step
# over the library's absorbed (solid) and naive (dashed) MLA.

# %% slideshow={"slide_type": "-"}
fig = bench_ui.peer_figure(report)
plt.show()

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "subslide"} tags=["hide-input"]
peers = bench_ui.peer_ratios(report)
hf = peers["hf_over_absorbed"]
hf_naive = peers["hf_over_naive"]
hf_diff = max(max(r["max_abs_diff"], r["max_abs_diff_naive"]) for r in report["peers"]["hf_deepseek_v3"])
mqa_sdpa = peers["sdpa_mqa"][big]
display(Markdown(
    f"Hugging Face's MLA step takes {hf[small]:.1f}× the absorbed step at {small:,} tokens and {hf[big]:.1f}× at "
    f"{big:,}: its cost grows with the re-expansion, $n_h (d_h + d_v) d_c$ multiply-adds per cached token, while "
    f"the absorbed form reads each latent once. Against the library's naive form, which does the same "
    f"re-expansion, it takes {hf_naive[small]:.2f}× at {small:,} tokens and {hf_naive[big]:.2f}× at {big:,}"
    + (": the same algorithm costs about the same" if 2 / 3 < hf_naive[big] < 3 / 2 else
       ": the same algorithm, written differently")
    + f" (largest output difference {hf_diff:.1e}). Against SDPA the plain "
    f"einsums take {peers['sdpa_mha'][small]:.2f}× SDPA's time for MHA at {small:,} tokens and "
    f"{peers['sdpa_mha'][big]:.2f}× at {big:,}; for MQA at {big:,} the ratio is {mqa_sdpa:.2f}"
    + (": on this CPU build the fused kernel loses to the einsum once few K/V heads are shared by many query "
       "heads." if mqa_sdpa < 1 else ".")
))
vt = {scheme: peers[f"vt_{scheme}"] for scheme in bench.DENSE_SCHEMES}
faster_from = min((c for c in contexts if vt["mha"][c] > 1), default=None)
display(Markdown(
    f"**The transposed V, measured.** The same attention core with V in rows takes {vt['mha'][big]:.2f}× its "
    f"time with V transposed for MHA at {big:,} tokens and {vt['mha'][small]:.2f}× at {small:,}"
    + (f" (the transposed layout wins from {faster_from:,} tokens on, once V no longer sits in the caches)"
       if faster_from is not None and faster_from > small else "")
    + f"; for GQA at {big:,} the ratio is {vt['gqa'][big]:.2f} and for MQA {vt['mqa'][big]:.2f}"
    + (": no clear gain where query heads share a V head, so their V stays in rows."
       if max(vt["gqa"][big], vt["mqa"][big]) < 1.1 else
       ": in this run the shared V heads gain too, though the benchmark keeps their V in rows.")
))
layouts = {r["scheme"]: r for r in report["projection_layouts"]}
saved_ms = {scheme: (r["rows_time_s"] - r["columns_time_s"]) * 1e3 for scheme, r in layouts.items()}
display(Markdown(
    "**The projections' layout, measured.** One token through every projection of a layer, from cold caches: "
    + "; ".join(f"{bench_ui.SCHEME_LABELS[scheme]} "
                f"{r['rows_time_s'] * 1e3:.2f} ms in rows, {r['columns_time_s'] * 1e3:.2f} ms column-major "
                f"({r['weight_bytes'] / 2**20:.1f} MiB at {r['rows_bandwidth'] / 1e9:.0f} → "
                f"{r['columns_bandwidth'] / 1e9:.0f} GB/s)" for scheme, r in layouts.items())
    + ". The projections cost the same at every context (the weights do not grow with it). "
    + (f"Column-major saves {min(saved_ms.values()):.2f} to {max(saved_ms.values()):.2f} ms a step."
       if min(saved_ms.values()) >= 0 else
       f"Column-major is faster for {sum(d > 0 for d in saved_ms.values())} of the {len(saved_ms)} layers, by up "
       f"to {max(saved_ms.values()):.2f} ms a step, and {-min(saved_ms.values()):.2f} ms slower for "
       f"{bench_ui.SCHEME_LABELS[min(saved_ms, key=saved_ms.get)]}: in this run the order of the reads matters "
       "less than their number.")
    + f" Both layouts stay below the read probe's {m['read_bandwidth'] / 1e9:.0f} GB/s, a plain sum over as many "
    "bytes."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 2. The roofline
#
# A decode step does $F$ FLOPs and moves $B$ bytes; its **arithmetic intensity** is $I = F / B$. A machine
# streams $\beta$ bytes/s and computes $\pi$ FLOP/s, so the step can go no faster than
# $\min(\beta I, \pi)$ FLOP/s. Below the **balance point** $\pi / \beta$ the step is memory-bound: the
# bytes set the time. The benchmark measures $\beta$ by reading a buffer far larger than the caches
# (`x.sum()`, what a decode step mostly does) and $\pi$ with a matmul of a decode step's shape: one row
# per query head against a block of cached columns small enough to stay in the core's cache. A square GEMM
# reuses each number it loads a thousand times; a matmul of so few rows cannot, so its ceiling is lower,
# and it is the one a decode step can reach. (The JSON keeps the copy bandwidth and the square GEMM's rate too.) $B$
# counts the weights, the cache the step reads and the one token it appends to the cache:

# %% slideshow={"slide_type": "-"}
display(show_source(costs.macs_per_cached_token_parts, start="h = s.n_heads"))
display(show_source(costs.decode_attention_flops, start="t = _context(context)"))
show_source(costs.cache_append_bytes, start="record, s = _fitting")

# %% slideshow={"slide_type": "subslide"}
figures.show(bench_ui.roofline_plotly(report, context=big), "ch14-roofline")  # hover a scheme: achieved, attainable

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "subslide"} tags=["hide-input"]
rows_big = at_big
i_small = {s: r["intensity"] for s, r in at_small.items()}
display(Markdown(
    f"This machine ({bench_ui.cpu_description(report)}): read bandwidth {roof['bandwidth'] / 1e9:.1f} GB/s, "
    f"decode matmul {roof['peak'] / 1e9:.0f} GFLOP/s, balance **{roof['balance']:.1f} FLOP/byte**. Each dot is "
    f"a scheme's step at {big:,} tokens: across, its intensity from the formulas; up, the FLOP/s its median "
    f"time achieved; the black line is the most the machine allows. At {big:,} tokens MHA sits at "
    f"{rows_big['mha']['intensity']:.2f} FLOP/byte (each cached number is read once for one multiply-add), MQA "
    f"at {rows_big['mqa']['intensity']:.2f}, absorbed MLA at {rows_big['mla_absorbed']['intensity']:.2f} and "
    f"DSA at {rows_big['dsa']['intensity']:.2f}; naive MLA, at {rows_big['mla_naive']['intensity']:.1f}, is "
    f"{rows_big['mla_naive']['bound']}-bound and slow for it: all that arithmetic is wasted rebuilding keys."
))

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Why absorbed MLA moves right.** After absorption all $n_h$ heads score and mix the *same* cached latent
# (chapter 8's MQA view): each cached number, read once, feeds $n_h$ multiply-adds instead of one. So its
# intensity grows with $L$ towards $n_h (2 d_c + d_h^R) / (d_c + d_h^R)$ multiply-adds per number, far
# right of MHA's fixed 0.5 FLOP/byte in float32. With this benchmark's few heads that stays below a GPU's
# balance (hundreds of FLOP per byte), so there it is still memory-bound while using each byte many times;
# DeepSeek-V3's 128 heads on one GPU cross it (chapter 8 states the condition).
#
# **Why DSA moves left.** DSA reads only the indexer keys ($d^I$ per token) for every token and the full
# latents for $k$ tokens only. Its bytes per step grow slowly with $L$, but its FLOPs grow more slowly
# still: in this layer the indexer does $H^I$ multiply-adds per cached index number, a handful, so the
# intensity falls back below MQA's. DSA wins here by moving fewer bytes, not by using them better.
# (DeepSeek-V3.2's indexer is another matter: its many index heads read one-byte FP8 keys, one multiply-add
# per head for every byte.)

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "-"} tags=["hide-input"]
display(Markdown(
    f"From {small:,} to {big:,} tokens absorbed MLA moves from {i_small['mla_absorbed']:.2f} to "
    f"{rows_big['mla_absorbed']['intensity']:.2f} FLOP/byte; DSA stays between {i_small['dsa']:.2f} and "
    f"{rows_big['dsa']['intensity']:.2f}, while its bytes per step at {big:,} tokens are "
    f"{rows_big['dsa']['bytes'] / rows_big['mla_absorbed']['bytes']:.2f}× absorbed MLA's "
    f"({format_bytes(rows_big['dsa']['bytes'])} against {format_bytes(rows_big['mla_absorbed']['bytes'])}, "
    "weights included)."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## The newer schemes on the same roofline
#
# Chapters 17 to 20 add four ways to keep a decode step from reading the whole cache: a **sliding window**
# with a few sink tokens (chapter 17), a **linear-attention** layer whose cache is a fixed state, Gated
# DeltaNet (chapter 18), **block-sparse selection** that reads a few whole blocks chosen by Quest's bound
# (chapter 19), and DeepSeek-V4's **compressed** layers, CSA (a top-k of entries that each pool a few tokens)
# and HCA (every entry, each pooling many tokens; chapter 20). Each chapter explains its scheme; here we only
# ask what one decode step costs. The benchmark times one step of each, in the same interleaved rounds as the
# six schemes above, on a layer of the same size, its cache filled directly and checked against its formula,
# and places it on the same roofline with FLOPs and bytes from `attnlab.costs`.

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "-"} tags=["hide-input"]
newer = bench_ui.newer_summary(report)
ns, v4 = newer["settings"], newer["v4"]
timed = newer["measured"]
display(Markdown(
    f"The layers: the window keeps $S$ = {ns.n_sinks} sinks and the last $W$ = {ns.window:,} tokens, GQA's "
    f"{shape.n_kv_heads} K/V heads; Gated DeltaNet has {shape.n_heads} heads with a {shape.head_dim} × "
    f"{shape.v_head_dim} state each and a convolution of {ns.conv_size} taps; Quest reads the top "
    f"{ns.top_blocks} blocks of {ns.block_size} tokens, {ns.top_blocks * ns.block_size} tokens like DSA's "
    f"top-$k$, its own block always among them; the V4 layer shares one vector of $c$ = {v4.head_dim} "
    f"(its last {v4.rope_head_dim} rotated) per token or entry, keeps a window of {v4.window} raw tokens, and "
    f"compresses by $m$ = {ns.csa_rate} (CSA, an indexer of {v4.index_n_heads} × {v4.index_head_dim} choosing "
    f"{v4.index_topk} entries) or $m$ = {ns.hca_rate} (HCA, every entry read). "
    + (f"The stored run timed {len(timed)} of them: "
       f"{', '.join(bench_ui.NEWER_LABELS[s] for s in timed)}." if timed else
       "The stored run predates them: the figures below draw them from the formulas alone, as their roofline "
       "bounds on this machine, beside the six schemes' measured times and bounds.")
))

# %% slideshow={"slide_type": "subslide"}
figures.show(bench_ui.newer_time_plotly(report), "ch14-newer-time")  # click a legend entry to hide a scheme

# %% slideshow={"slide_type": "subslide"}
figures.show(bench_ui.newer_roofline_plotly(report, context=big), "ch14-newer-roofline")  # hollow: a bound only

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "subslide"} tags=["hide-input"]
per_token, nbytes = newer["bytes_per_token"], newer["bytes"]
growth = newer["growth"]


def ms(scheme: str, context: int) -> float:
    """The stored run's median step time of ``scheme`` at ``context`` tokens, in ms."""
    return next(r["time_s"] for r in report["results"] if r["scheme"] == scheme and r["context"] == context) * 1e3


display(Markdown(
    f"**What each curve shows.** The window's step is GQA's up to {newer['window_equal_gqa_until']:,} tokens; "
    f"from $S + W$ = {newer['window_flat_from']:,} on its ring is full and the line is flat: at {big:,} tokens "
    f"it moves {nbytes['gqa_window'][1] / 1e6:.1f} MB a step, where MHA moves {nbytes['mha'][1] / 1e6:.0f} MB. "
    f"Gated DeltaNet is flat from the first token: {nbytes['gated_deltanet'][0] / 1e6:.1f} MB a step at "
    f"{small:,} tokens and at {big:,}, its weights and its fixed state. Quest and CSA grow only with their "
    f"scoring: Quest reads each block's two bound vectors, {per_token['quest']:.0f} bytes more a step per cached "
    f"token, {1 / newer['quest_vs_gqa']:.0f}× less than GQA's full read ({per_token['gqa']:,.0f}), while the "
    f"{ns.top_blocks} blocks it reads stay the same size; CSA scores one compressed index key per {ns.csa_rate} "
    f"tokens, {per_token['v4_csa']:.0f} bytes per cached token, {newer['csa_vs_dsa']:.2f}× DSA's "
    f"{per_token['dsa']:.0f}, and attends to {v4.index_topk} entries whatever $L$. HCA reads every entry, but "
    f"one per {ns.hca_rate} tokens: {per_token['v4_hca']:.0f} bytes per cached token, 1/"
    f"{1 / newer['hca_vs_uncompressed']:.0f} of reading every token's $c$-wide vector and 1/"
    f"{1 / newer['hca_vs_mla']:.0f} of absorbed MLA's {per_token['mla_absorbed']:,.0f}. What none of them "
    f"saves is the weights, read once a step: the V4 layers move {nbytes['v4_hca'][0] / 1e6:.1f} to "
    f"{nbytes['v4_csa'][0] / 1e6:.1f} MB a step at {small:,} tokens, the GQA-sized window "
    f"{nbytes['gqa_window'][0] / 1e6:.1f} MB.\n\n"
    + (f"In this run, from {small:,} to {big:,} tokens, MHA's step went from {ms('mha', small):.2f} to "
       f"{ms('mha', big):.2f} ms ({growth['mha']:.1f}×), and the newer ones' "
       + ", ".join(f"{bench_ui.NEWER_LABELS[s]} from {ms(s, small):.2f} to {ms(s, big):.2f} ms" for s in timed)
       + (" (a step that got faster with more context had a noisy first point: its spread is in the run's "
          "table)" if any(growth[s] < 1 for s in timed) else "") + "."
       if timed else
       f"By the bounds, from {small:,} to {big:,} tokens MHA's step grows {newer['bound_growth']['mha']:.1f}× and "
       "the newer ones' " + ", ".join(f"{bench_ui.NEWER_LABELS[s]} {newer['bound_growth'][s]:.2f}×"
                                      for s in bench.NEWER_SCHEMES)
       + "; the stored run predates these schemes, and `python -m attnlab.bench` times them beside the others "
       "(the live run below does, on the small shape).")
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 3. Goals
#
# The benchmark holds every run to four goals at its largest context (`bench.TARGETS`) and stores them in
# the JSON beside what it measured: DSA should decode several times faster than absorbed MLA (it reads the
# full latents of $k$ tokens, not of all of them); MHA, which has nothing to do but stream its cache, should
# stream it at a good fraction of the copy bandwidth; absorbed MLA should get close to its roofline bound;
# and Hugging Face's step, which rebuilds every key and value, should lose clearly to absorbed MLA. The
# table below is the run's own (`report["targets"]`): the goals, what was measured and how; a "no" is a goal
# this CPU run missed.

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "-"} tags=["hide-input"]
display(Markdown(bench_ui.targets_markdown(report)))
dsa_rows = sorted((r for r in report["results"] if r["scheme"] == "dsa"), key=lambda r: r["context"])
dsa_roof = next(r for r in report["roofline"] if r["scheme"] == "dsa" and r["context"] == big)
mla_big = next(r for r in report["results"] if r["scheme"] == "mla_absorbed" and r["context"] == big)
floor_s = dsa_roof["bytes"] / report["machine"]["read_bandwidth"]  # DSA's bytes at the read bandwidth
parts = report["dsa_parts"]
part_ms = {name: parts[f"{name}_time_s"] * 1e3 for name in bench.DSA_PARTS}
rest_ms = bench.dsa_rest_seconds(parts) * 1e3
display(Markdown(
    f"**Where DSA's step goes.** At {big:,} tokens DSA moves {dsa_roof['bytes'] / 1e6:.1f} MB a step (its "
    f"weights, every index key, {report['shape']['index_topk']} gathered latents): at this CPU's read "
    f"bandwidth that is {floor_s * 1e3:.2f} ms, and a step that fast would be "
    f"{mla_big['time_s'] / floor_s:.0f}× faster than absorbed MLA. It takes {dsa_rows[-1]['time_s'] * 1e3:.2f} ms, "
    f"and already {dsa_rows[0]['time_s'] * 1e3:.2f} ms at {dsa_rows[0]['context']:,} tokens: most of the step "
    f"is a cost that does not grow with the context. The run also times parts of the step alone, each "
    f"call starting from cold caches (`bench.bench_dsa_parts`; the whole step took {part_ms['step']:.2f} ms "
    f"there). The index scores, {report['shape']['index_n_heads']} heads against every key, by PyTorch's own "
    f"operations (a matmul only {report['shape']['index_n_heads']} columns wide, a ReLU, a second matmul: "
    f"`dsa.index_scores` anywhere but a CPU decode step) take {part_ms['index_scores_matmul']:.2f} ms: the "
    f"matmul runs at "
    f"{parts['index_scores_matmul_flop_rate'] / 1e9:.0f} GFLOP/s (the square GEMM: {m['matmul_rate'] / 1e9:.0f}) "
    f"and reads the keys at {parts['index_scores_matmul_bandwidth'] / 1e9:.0f} GB/s (the read probe: "
    f"{m['read_bandwidth'] / 1e9:.0f}). "
    + (f"The step runs a fused kernel instead, `attnlab.fused` compiled for {report['fused_kernel']['target']}: "
       f"one C loop that reads each key once and keeps its {report['shape']['index_n_heads']} dot products, the "
       f"ReLU and the weighted sum in registers, as DeepSeek's own indexer does on a GPU (`fp8_index_kernel`). "
       f"It takes {part_ms['index_scores']:.2f} ms, the keys read at {parts['index_scores_bandwidth'] / 1e9:.0f} "
       f"GB/s, {part_ms['index_scores_matmul'] / part_ms['index_scores']:.1f}× faster"
       if parts["index_scores_path"] != "matmuls" else
       f"The step ran those matmuls too: no C compiler built the fused kernel of `attnlab.fused` for this run "
       f"({report['fused_kernel']['reason']})")
    + f"; the top-k takes {part_ms['topk']:.2f} ms; the projections, the new token "
    f"times each of the layer's weight matrices, {part_ms['projections']:.2f} ms (the weights read at "
    f"{parts['projections_bandwidth'] / 1e9:.0f} GB/s). The other {rest_ms:.2f} ms "
    f"({rest_ms / part_ms['step']:.0%} of the step) are many small tensor operations (RoPE, norms, the cache "
    f"append, the gathers, the sparse attention over {report['shape']['index_topk']} tokens), each with a fixed "
    f"cost in PyTorch on a CPU, and that cost is largest from cold caches: right after another step, with what "
    f"it reads and the code of every operation it runs still cached as far as the caches hold them, the same step "
    f"takes {part_ms['step_warm']:.2f} ms, {part_ms['step_warm'] / part_ms['step']:.0%} of the cold one. Fused GPU "
    f"kernels (DeepSeek's FlashMLA and DeepGEMM) remove most of those operations too; here they are what stands "
    f"between the measured ratio and the bytes' ratio."
))
cost = bench_ui.run_cost(report)
display(Markdown(
    f"The whole run ({len(contexts)} contexts × {len(report['schemes']) + len(report.get('newer_schemes', ()))} "
    f"schemes, DSA's parts, the layouts and both peers) took "
    f"{cost['wall_s']:.0f} s and at most {cost['peak_gib']:.2f} GiB of memory: "
    + ", ".join(f"{name.replace('_', ' ')} {sec:.0f} s" for name, sec in cost["sections_s"].items()) + "."
))

# %% [markdown] slideshow={"slide_type": "subslide"}
# **The fused kernel.** Its loop, from `lib/attnlab/csrc/index_scores.c`, for one sequence: for every key
# $k_s$, the dot products with four index heads at once, 16 numbers at a time (`v16` is a vector of 16
# floats: one AVX-512 register, two AVX2 ones), the four 16-lane partial sums added up together
# (`sum4x16`), the ReLU by keeping only the lanes above 0, the weighted sum over the heads, one score out.
# `attnlab.fused` compiles it on first use; where no C compiler is found, `dsa.index_scores` keeps its
# matmuls, and `fused.kernel_status()` says why.

# %% slideshow={"slide_type": "-"}
show_source(fused.SOURCE, start="void score_keys", stop="/* score_keys */")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 4. A live run, here and now
#
# The same code, on the small `QUICK_SHAPE` ($d = 128$, 4 heads of 32), contexts 64, 128 and 256, three
# repeats, without the Hugging Face peer. It takes a second or two.

# %% slideshow={"slide_type": "-"}
live = bench.run_benchmark("cpu", "float32", contexts=(64, 128, 256), repeats=3, shape=bench.QUICK_SHAPE,
                           copy_bytes=2**23, gemm_n=256, hf_peer=False)

# %% slideshow={"slide_type": "subslide"}
# NBVAL_IGNORE_OUTPUT
# Timings change from run to run and machine to machine; the next cell checks only what cannot change.
print(bench.format_report(live))

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "subslide"} tags=["hide-input"]
display(Markdown(
    f"Schemes measured: {', '.join(sorted(live['schemes']))}, and in the same rounds the newer "
    f"{', '.join(live['newer_schemes'])}; contexts {live['contexts']}. Every cache equals "
    f"its formula: **{bench_ui.cache_matches_formula(live)}**."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 5. The quality side
#
# Speed is half the story. The course's quality study (`attnlab.quality`) trains a tiny model of each scheme
# with several seeds on the same budget, parameter counts matched within 2% (the MLP of the smaller models
# widened), and DSA from each seed's MLA model; every model is scored on the whole validation split. Measure
# the cache each scheme keeps per token (all four layers, float32) by running its shipped tiny model on a few
# tokens (the MLP's width does not change the cache), and set it against the study's losses.

# %% slideshow={"slide_type": "-"}
study = quality.load_study()
names = ["mha", "gqa", "mqa", "mla", "dsa"]
cache_per_token = {}
for name in names:
    model = load_checkpoint(f"tiny_{name}")
    cache = model.new_cache()
    with torch.no_grad():
        model(torch.arange(8)[None], cache=cache)  # 8 tokens, (1, 8)
    cache_per_token[name] = cache.bytes_per_token()

# %% slideshow={"slide_type": "subslide"}
fig, ax = plt.subplots(figsize=(6.4, 3.9))
for name in names:
    s = study.summary(name)
    colour = schemes.get_scheme(name).color
    ax.errorbar(cache_per_token[name], s.mean, yerr=s.std, fmt="o", ms=7, color=colour, capsize=4, zorder=3)
    ax.scatter([cache_per_token[name]] * s.n, list(study.losses(name).values()), s=12, color=colour, alpha=0.5)
    ax.annotate(name.upper() + (" (sparse)" if name == "dsa" else ""), (cache_per_token[name], s.mean),
                textcoords="offset points", xytext=(8, 4), fontsize=9)
ax.set_xscale("log", base=2)
ax.set_xlim(min(cache_per_token.values()) / 1.3, max(cache_per_token.values()) * 1.5)  # room for the labels
ax.xaxis.set_major_formatter(lambda value, _: f"{value:,.0f} B")
ax.set_xlabel("cache bytes per token (4 layers, float32, measured)")
ax.set_ylabel("validation loss (nats / token)")
ax.set_title(f"Tiny models: cache against quality ({study.summary('mha').n} seeds each: dots, mean ± std)",
             fontsize=10)
ax.grid(True, which="both", alpha=0.3)
plt.show()

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "subslide"} tags=["hide-input"]
dsa_runs = [r for r in study.runs if r.scheme == "dsa"]
selection_cost = [r.val_loss - r.dense_val_loss for r in dsa_runs]
extra = study.dsa_recipe["warmup_steps"] + study.dsa_recipe["sparse_steps"]
means = {name: study.summary(name).mean for name in names}
rows = ["| scheme | cache B/token | × MHA | val loss, mean ± std |", "|---|---:|---:|---:|"]
for name in names:
    s = study.summary(name)
    rows.append(f"| {name.upper()} | {cache_per_token[name]:,.0f} | "
                f"{cache_per_token[name] / cache_per_token['mha']:.3g} | {s.mean:.3f} ± {s.std:.3f} |")
display(Markdown("\n".join(rows)))
display(Markdown(
    f"Over MHA, GQA, MQA and MLA, trained alike, the means lie within "
    f"{max(means[n] for n in names[:4]) - min(means[n] for n in names[:4]):.3f} nats of each other, while the "
    f"caches differ {cache_per_token['mha'] / cache_per_token['mqa']:.0f}-fold; the largest gap against MHA is "
    f"{max((study.gap(n, 'mha') for n in names[1:4]), key=lambda g: abs(g.delta)).words()}. "
    f"DSA is not on the same budget: it starts from its seed's trained MLA model and trains {extra} more steps "
    f"({study.dsa_recipe['warmup_steps']} indexer warm-up, {study.dsa_recipe['sparse_steps']} sparse), so its "
    f"lower loss is the extra training, not sparsity. What sparsity alone costs is the same weights run both "
    f"ways: attending to the top {study.dsa_recipe['top_k']} tokens instead of all changes the loss by "
    f"{', '.join(f'{d:+.4f}' for d in selection_cost)} nats (seed by seed). These are "
    f"{study.summary('mha').params / 1e6:.2f}M-parameter models that saw {study.tokens_seen() / 1e6:.1f}M tokens "
    f"in windows of {study.recipe['seq_len']}: keeping {study.dsa_recipe['top_k']} of at most "
    f"{study.recipe['seq_len']} tokens costs them about {sum(selection_cost) / len(selection_cost):.3f} nats, "
    f"and nothing here measures quality at long context or at scale, which is where the papers' "
    f"comparisons (chapters 5-7 and 10) live. The plot shows that shrinking the cache cost these tiny models "
    f"little; it does not rank the schemes."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 6. Explore the run
#
# Pick schemes and one of the run's context lengths: the widget shows each scheme's measured step time,
# its cache (measured, checked against the formula) and where it sits on this machine's roofline.

# %% slideshow={"slide_type": "-"}
explorer = bench_ui.bench_explorer(report, schemes=("mha", "mqa", "mla_absorbed", "dsa"), context=big)
explorer

# %% [markdown] slideshow={"slide_type": "slide"}
# ## What it costs
#
# Per decoded token, one layer of `DEFAULT_SHAPE`, float32, from the formulas the benchmark checks against
# (FLOPs: 2 per multiply-add; bytes: weights plus the cache read once, plus the token appended).

# %% slideshow={"slide_type": "-"}
rows = ["| scheme | cache / token | FLOPs at L = " + " | ".join(f"{c:,}" for c in contexts) +
        " | bytes at L = " + f"{big:,} |", "|---|---:|" + "---:|" * len(contexts) + "---:|"]
for s in bench.SCHEMES:
    rows.append(f"| {bench_ui.SCHEME_LABELS[s]} | {costs.cache_bytes(s, shape, 1, 'float32'):,} B | "
                + " | ".join(f"{costs.decode_flops(s, shape, c) / 1e6:.1f} M" for c in contexts)
                + f" | {format_bytes(costs.decode_bytes_moved(s, shape, big, 'float32'))} |")
display(Markdown("\n".join(rows)))
display(Markdown(
    f"Per cached token MHA holds {costs.cache_bytes('mha', shape, 1, 'float32'):,} bytes, absorbed MLA "
    f"{costs.cache_bytes('mla_absorbed', shape, 1, 'float32'):,} and DSA "
    f"{costs.cache_bytes('dsa', shape, 1, 'float32'):,}. Naive MLA does "
    f"{costs.decode_flops('mla_naive', shape, big) / costs.decode_flops('mla_absorbed', shape, big):.0f}× "
    f"absorbed MLA's FLOPs at {big:,} tokens for the same cache; DSA's FLOPs barely grow with L."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercises
#
# Count by hand: every check measures its reference on the real layer (torch's FLOP counter, the bytes of the
# weights and the cache), so `attnlab.costs` cannot answer for you, and exercise 1 may not call it. Solutions
# are in `notebooks/solutions/ch14.py`.
#
# **1.** Write `(shape, context) -> (flops, n_bytes)` for one MQA decode step of one layer in float32, batch 1,
# after `context` cached tokens: the FLOPs (2 per multiply-add) and the bytes read, weights included. `shape`
# has the fields `d_model`, `n_heads`, `head_dim`.

# %% slideshow={"slide_type": "-"}
answer_mqa_counts = None  # a function (shape, context) -> (flops, n_bytes)
print(ch14.check_mqa_counts(answer_mqa_counts))

# %% [markdown] slideshow={"slide_type": "-"}
# **2 (predict, then run).** A machine has a balance of `ch14.BALANCE` = 4 FLOP/byte. At 8192 cached tokens,
# float32, `DEFAULT_SHAPE`: is one decode step of MHA, of MQA and of absorbed MLA memory-bound or
# compute-bound? Write a dict from `"mha"`, `"mqa"`, `"mla_absorbed"` to `"memory"` or `"compute"` first; the
# check measures each step.

# %% slideshow={"slide_type": "-"}
prediction_bounds = None  # {"mha": "memory", ...}
print(ch14.check_prediction_bounds(prediction_bounds))

# %% [markdown] slideshow={"slide_type": "subslide"}
# **3.** On the same machine, from how many cached tokens $L$ on is absorbed MLA compute-bound? Give the
# smallest such $L$, counted by hand from `DEFAULT_SHAPE`'s fields.

# %% slideshow={"slide_type": "-"}
answer_crossover = None  # an int
print(ch14.check_crossover_context(answer_crossover))
