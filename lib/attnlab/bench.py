"""Decode benchmark: step time, cache bytes, a roofline and goals for MHA, GQA, MQA, MLA (naive, absorbed) and DSA,
and beside them the newer schemes of chapters 17-20 (a sliding window, Gated DeltaNet, Quest blocks, DeepSeek-V4).

Run ``python -m attnlab.bench [--device cpu|cuda] [--dtype float32|bfloat16] [--contexts 1024,...,32768]
[--repeats N] [--warmup N] [--out results.json] [--quick] [--threads N (default 1)] [--huge-pages]``.

One attention layer, batch 1, one new token decoded against a cache of L tokens (so it attends to
T = L + 1 keys). The default shape (:data:`DEFAULT_SHAPE`) is a moderate layer:

    d = 1024, n_h = 16 query heads of d_h = 64             MHA: n_kv = 16, GQA: n_kv = 4, MQA: n_kv = 1
    MLA: d_c = 256 latent + d_h^R = 32 RoPE key, d_h = d_v = 64, no query latent (q = W^Q h)
    DSA: that MLA layer + a lightning indexer of H^I = 4 heads x d^I = 64, top-k k = 256 (gather path)

The default contexts are 1K to 32K tokens (:data:`DEFAULT_CONTEXTS`); ``--quick`` uses :data:`QUICK_SHAPE`
(d = 128, 4 heads of 32, ...) with tiny contexts, for tests.

For each scheme the cache is filled directly with random tensors of the right shape (no token-by-token
prefill) and its measured size (:attr:`LayerCache.nbytes`) is checked against :func:`cache_bytes`. MHA's V is
stored transposed, the token axis innermost (:func:`transposed_names`), which its decode step's mix reads
faster; the SDPA peer below times both layouts for every dense scheme. Every scheme's projections are stored
column-major (:func:`column_major_projections`): one token times W^T then reads W^T row after row, which
BLAS streams faster than W's rows (:func:`bench_projection_layouts` times both).

The newer schemes (:data:`NEWER_SCHEMES`; :class:`NewerSettings`, derived from the shape by
:func:`newer_settings`) run in the same interleaved rounds, each against its own cache, filled directly too
(:func:`filled_newer_cache`) and checked against its formula (:func:`newer_cache_bytes`):

    gqa_window      GQA with a sliding window of W = 4096 and S = 4 sinks (chapter 17): a ring of S + W slots,
                    so a step reads min(T, S + W) keys; equal to GQA up to 4K tokens, flat after
    gated_deltanet  Gated DeltaNet, n_h = 16 heads of d_k = d_v = 64, a short convolution of K = 4 (chapter 18):
                    one recurrent step on a fixed state, the same at every context
    quest           GQA reading the top n = 4 blocks of B = 64 tokens (DSA's k = 256) by Quest's bound, its own
                    block always among them (chapter 19): every block's bounds scored, 4 blocks read whole
    v4_csa, v4_hca  a DeepSeek-V4 layer of d = 1024, n_h = 16, c = 256, d^R = 32, d'_c = 256, g = 2 x d_g = 512,
                    a window of 128 (chapter 20): CSA compresses by m = 4 and an indexer of 4 x 64 picks k = 256
                    entries; HCA compresses by m = 128 and reads every entry

Their rows in the report carry "group": "newer" (the six above: "course"); their FLOPs and bytes are
:func:`newer_step_costs`, from :mod:`attnlab.costs` like the others'.

Timing (:func:`time_interleaved`): at one context every scheme's layer and cache exist side by side, and
each round runs every scheme's step once, in an order that rotates from round to round, so that a busy
spell on a shared machine hits all schemes alike; ``warmup`` rounds are left out, then ``repeats`` rounds
are timed. Before every call the cache is restored to L tokens (``cache.crop``, outside the timed region;
no step copies the cache, see below); CUDA is synchronized around every call; Python's garbage collector
is paused. Each entry reports the median, the minimum, every time, the spread ((max - min) / median of the
middle half of the calls) and the minor page faults per call (``getrusage().ru_minflt`` around each call).
A page fault is fresh memory mapped in on first touch. No cache is ever re-allocated, and the schemes
that read the cache in place fault nothing; but PyTorch's CPU allocator (glibc's malloc) returns every
large freed block to the system and maps the next one afresh, so a step with hundreds of MB of
temporaries (naive MLA and Hugging Face's MLA, which rebuild every key and value, at 32K tokens) faults
them in 4 KiB page by page on every call, about a third of its time: that is part of what such a step
costs in PyTorch on a CPU, and the faults column says how much. ``--huge-pages`` asks PyTorch for
transparent huge pages (:func:`request_huge_pages`: ``THP_MEM_ALLOC_ENABLE=1``), 512 times fewer faults
for the same memory, but where the kernel compacts memory on demand (THP defrag "madvise") some calls then
stall for hundreds of ms, so the default keeps 4 KiB pages. Smaller temporaries would fault too, now and
then, depending on what ran before them; the command line first fixes glibc's thresholds
(:func:`steady_heap`) so that blocks under 32 MiB are reused from the heap. The report records which
settings were in effect (``"allocator"``).

The counts come from :mod:`attnlab.costs` (2 FLOPs per multiply-add, b = bytes per element, T = L + 1,
k' = min(k, T); derivations in each function's docstring):

    weights W        :func:`~attnlab.costs.weight_elements` (W^Q, W^K, W^V, W^O; MLA's [W^DKV; W^KR], [W^UK; W^UV],
                     W^O, the latent's RMSNorm; DSA adds the indexer's W^IQ, W^IK, LayerNorm, W^IW)
    FLOPs per step   :func:`~attnlab.costs.decode_flops` = :func:`~attnlab.costs.projection_flops` (2 W, less what
                     MLA naive applies per cached token) + :func:`~attnlab.costs.decode_attention_flops`
                     (dense 4 n_h d_h T, MLA absorbed 2 n_h (2 d_c + d_h^R) T, MLA naive 2 n_h (d_h + d_v) d_c T
                     + 2 n_h (d_h + d_h^R + d_v) T, DSA 2 (H^I d^I + H^I) T + 2 n_h (2 d_c + d_h^R) k')
    bytes per step   :func:`~attnlab.costs.decode_bytes_moved` = :func:`~attnlab.costs.decode_bytes_read`
                     (b (W + the cache the step reads; MLA naive also writes and reads the expanded K and V,
                     DSA reads every index key and k' latents)) + :func:`~attnlab.costs.cache_append_bytes`
                     (the new token written into each cached tensor: b x the cache's numbers per token)
    cache bytes      :func:`~attnlab.costs.cache_bytes`: b L x (dense 2 n_kv d_h, MLA d_c + d_h^R, DSA + d^I)

RoPE, norms, softmax and top-k sorting are left out of the FLOPs. The formulas count an ideal cache that is
read in place, as :class:`~attnlab.kv_cache.LayerCache` does: it writes the new token into preallocated
storage (room for L + 1 tokens here) and hands back views, so no step copies the cache. (Its teaching
twin :class:`~attnlab.kv_cache.ConcatCache` appends with ``torch.cat``, reading and writing the whole cache
once more per step.) Achieved bandwidths below are "useful bytes / time".

Machine probes: copy bandwidth (``dst.copy_(src)``, 2 x nbytes / time), read bandwidth (``x.sum()`` over a
buffer larger than the caches, nbytes / time), an n x n GEMM rate (2 n^3 / time) and a decode-shaped matmul
ceiling: (n_h x w) @ (w x N) with w = d_c + d_h^R, the shape of absorbed MLA's scores, N = 384 tokens on a
CPU (:data:`DECODE_MATMUL_TOKENS`: the operands, 0.45 MB in float32, sit inside one core's L2, so it measures
the arithmetic of a 16-row matmul, not memory). The roofline
uses the read bandwidth and the decode-shaped ceiling: attainable FLOP/s = min(ceiling, intensity x read
bandwidth), balance = ceiling / read bandwidth; the old GEMM / copy balance stays in the JSON too. Each
probe runs twice, before and after the decode rounds, and the better pass is the machine's ceiling
(:func:`machine_record`): on a shared host a busy moment during one pass would otherwise set the ceiling
below what the schemes reach in the quiet rounds around it.

Between contexts (outside every timed region) :func:`release_free_memory` collects garbage and returns the C
heap's free memory to the system (glibc's ``malloc_trim``), so that one context's leftovers do not stay
resident under the next one's peak: the run's peak memory is that of its largest context.

DSA's parts (:func:`bench_dsa_parts`), at the largest context: the whole step beside its index scores, its
top-k and its projections timed alone, each call from cold caches, and the step again with warm caches, so the
report says where DSA's time goes; the index scores are timed both as the step computes them (on a CPU, the
fused kernel of :mod:`attnlab.fused` where a C compiler built it; ``"fused_kernel"`` in the report says
whether) and as PyTorch's matmuls. The projection
layouts (:func:`bench_projection_layouts`): each course scheme's projections for one token with W row-major
and column-major, the second being how the benchmark's layers store them.

Peers, in the same run: PyTorch's ``scaled_dot_product_attention(..., enable_gqa=True)`` against
:func:`attnlab.gqa.grouped_attention` for the dense schemes' attention core (and grouped_attention on V stored
transposed), and Hugging Face's
``DeepseekV3Attention`` (random weights, its DynamicCache filled directly with the same random latents the
library's cache holds, K/V re-expanded from the latent every step) against this library's naive and
absorbed MLA decode with identical weights (:func:`attnlab.mla.from_transformers`).

Goals (:data:`TARGETS`), checked at the largest context and printed as a goal-vs-measured table at the end:
DSA >= 5x faster than absorbed MLA; MHA reads >= 50% of the copy bandwidth; absorbed MLA >= 40% of its
roofline bound; Hugging Face >= 3x slower than absorbed MLA. The report also records the run's wall time
and peak memory (``getrusage().ru_maxrss``).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import gc
import inspect
import json
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tqdm import tqdm

from attnlab._validate import (
    ArgumentTypeError,
    check_bool,
    check_non_negative_int,
    check_positive_int,
    check_type,
)
from attnlab.attention import AttentionLayer
from attnlab.block_sparse import BlockSparseCache, QuestAttention
from attnlab.costs import (
    AttentionShape,
    V4Model,
    block_sparse_append_bytes,
    block_sparse_cache_bytes,
    block_sparse_decode_bytes_read,
    block_sparse_decode_flops,
    cache_append_bytes,
    cache_bytes,
    decode_bytes_read,
    decode_flops,
    indexer_macs_per_cached_token,
    linear_conv_channels,
    linear_decode_bytes,
    linear_layer_decode_flops,
    linear_state_bytes,
    v4_decode_bytes,
    v4_decode_flops,
    v4_layer_cache_bytes,
    window_decode_bytes_read,
    window_decode_flops,
    windowed_cache_bytes,
)
from attnlab.devices import dtype_bytes
from attnlab.dsa import _index_scores, _index_scores_matmul, _topk
from attnlab.fused import _fusable, kernel_status
from attnlab.gqa import AttentionConfig, grouped_attention
from attnlab.huggingface import attention_forward
from attnlab.kv_cache import LayerCache
from attnlab.linear_attention import LinearAttention, LinearAttentionConfig, RecurrentState
from attnlab.mla import from_transformers
from attnlab.schemes import BENCH_SCHEMES, get_scheme
from attnlab.schemes import NEWER_SCHEMES as NEWER_RECORDS
from attnlab.v4 import CompressorState, DeepSeekV4Attention, V4AttentionConfig, V4Cache
from attnlab.window import RollingCache, ring_slot

#: The schemes benchmarked, in the table's order (:data:`attnlab.schemes.BENCH_SCHEMES`).
SCHEMES: tuple[str, ...] = BENCH_SCHEMES
#: The newer schemes of chapters 17-20 (:data:`attnlab.schemes.NEWER_SCHEMES`), timed in the same interleaved
#: rounds as :data:`SCHEMES` at each context, reported in rows of their own (``"group": "newer"``): a sliding
#: window, Gated DeltaNet, Quest block selection, DeepSeek-V4's CSA and HCA layers.
NEWER_SCHEMES: tuple[str, ...] = tuple(NEWER_RECORDS)
#: The group each timed scheme's rows carry in a report ("group" of "results" and "roofline").
GROUPS: dict[str, str] = {**{key: "course" for key in SCHEMES}, **{key: "newer" for key in NEWER_SCHEMES}}
#: The dense ones (GroupedQueryAttention with n_kv = n_heads / n_groups / 1), in the same order.
DENSE_SCHEMES: tuple[str, ...] = tuple(key for key in SCHEMES if get_scheme(key).dense)
#: dtypes the benchmark accepts, by name.
BENCH_DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16}
#: device types the benchmark accepts.
BENCH_DEVICES: tuple[str, ...] = ("cpu", "cuda")
#: The contexts of a full run: 1K to 32K cached tokens.
DEFAULT_CONTEXTS: tuple[int, ...] = (1024, 2048, 4096, 8192, 16384, 32768)
QUICK_CONTEXTS: tuple[int, ...] = (64, 128)
#: Timed rounds per context (every scheme once per round), and the untimed rounds before them.
DEFAULT_REPEATS = 9
DEFAULT_WARMUP = 2
#: Timed rounds of the Hugging Face peer (its step is the slowest of the run; three implementations per round).
DEFAULT_HF_REPEATS = 4
#: Columns N of the decode-shaped matmul probe, (n_h x w) @ (w x N), on a CPU and on CUDA. On a CPU the (w x N)
#: operand must sit inside one core's L2 (0.5 to 2 MiB on current cores), or the probe times the next cache level:
#: with w = 288, N = 384 is 0.44 MB in float32. (N = 1024, 1.18 MB, spilled the 1 MiB L2 of the CPU the stored run
#: used, and its rate swung between 58 and 81 GFLOP/s from one process to the next; N = 256 to 768 gave 78 to 90.)
DECODE_MATMUL_TOKENS = {"cpu": 384, "cuda": 32768}

#: The goals a run is held to, at its largest context (32K tokens in a full run): what is compared, the goal
#: (a lower bound on "measured") and how "measured" is computed from the run.
TARGETS: tuple[dict[str, object], ...] = (
    {"key": "dsa_speedup_over_mla_absorbed", "target": "DSA at least 5x faster than absorbed MLA", "goal": 5.0,
     "unit": "x", "measured_as": "absorbed MLA's median step time / DSA's"},
    {"key": "mha_copy_bandwidth_fraction", "target": "MHA at least 50% of the copy bandwidth", "goal": 0.5,
     "unit": "%", "measured_as": "bytes MHA must read per step (weights + cache) / median step time / copy bandwidth"},
    {"key": "mla_absorbed_roofline_fraction", "target": "absorbed MLA at least 40% of its roofline bound",
     "goal": 0.4, "unit": "%", "measured_as": "formula FLOPs / median step time / min(decode matmul ceiling, "
                                              "intensity x read bandwidth)"},
    {"key": "hf_slowdown_over_mla_absorbed", "target": "HF DeepseekV3Attention at least 3x slower than absorbed "
     "MLA", "goal": 3.0, "unit": "x", "measured_as": "Hugging Face's median step time / attnlab absorbed MLA's "
                                                     "(same weights, same cached latents)"},
)


def BenchShape(d_model: int = 1024, n_heads: int = 16, head_dim: int = 64, n_groups: int = 4,
               kv_lora_rank: int = 256, qk_rope_head_dim: int = 32, index_n_heads: int = 4, index_head_dim: int = 64,
               index_topk: int = 256) -> AttentionShape:
    """One layer's :class:`~attnlab.costs.AttentionShape` for every scheme: d_model [d], n_heads [n_h] of
    head_dim [d_h] (also MLA's d_h and d_v), n_groups: GQA's KV heads [n_kv]; MLA's kv_lora_rank [d_c] and
    qk_rope_head_dim [d_h^R] (no query latent); DSA's index_n_heads [H^I], index_head_dim [d^I, a power of
    two] and index_topk [k]; one layer. :func:`shape_arguments` gives the keywords back."""
    arguments = dict(locals())
    for name, value in arguments.items():
        check_positive_int(name, value)
    if n_heads % n_groups:
        raise ValueError(f"n_heads={n_heads} is not divisible by n_groups={n_groups}")
    for name in ("head_dim", "qk_rope_head_dim"):
        if arguments[name] % 2:
            raise ValueError(f"{name}={arguments[name]} must be even (RoPE rotates pairs)")
    if index_head_dim & (index_head_dim - 1):
        raise ValueError(f"index_head_dim={index_head_dim} must be a power of two (Hadamard rotation)")
    if qk_rope_head_dim > index_head_dim:
        raise ValueError(f"qk_rope_head_dim={qk_rope_head_dim} must be <= index_head_dim={index_head_dim} "
                         "(the indexer rotates its first d_h^R coordinates)")
    return AttentionShape(d_model=d_model, n_heads=n_heads, head_dim=head_dim, n_kv_heads=n_groups,
                          kv_lora_rank=kv_lora_rank, qk_rope_head_dim=qk_rope_head_dim, index_n_heads=index_n_heads,
                          index_head_dim=index_head_dim, index_topk=index_topk)


def shape_arguments(shape: AttentionShape) -> dict[str, int]:
    """The :func:`BenchShape` keywords that build ``shape`` (what a report stores under "shape", so
    ``BenchShape(**report["shape"])`` rebuilds it): its fields, with n_groups for n_kv_heads."""
    check_type("shape", shape, AttentionShape, "an AttentionShape (attnlab.bench.BenchShape(...))")
    return {name: getattr(shape, "n_kv_heads" if name == "n_groups" else name)
            for name in inspect.signature(BenchShape).parameters}


DEFAULT_SHAPE = BenchShape()
QUICK_SHAPE = BenchShape(d_model=128, n_heads=4, head_dim=32, n_groups=2, kv_lora_rank=64, qk_rope_head_dim=16,
                         index_n_heads=2, index_head_dim=32, index_topk=32)


# ----------------------------------------------------------------------------------------------------
# argument checks


def check_scheme(scheme: object) -> str:
    """Return ``scheme`` if it is one of :data:`SCHEMES`, else raise ValueError."""
    return get_scheme(scheme, "scheme", SCHEMES).key


def check_bench_scheme(scheme: object) -> str:
    """Return ``scheme`` if the benchmark times it (one of :data:`SCHEMES` or :data:`NEWER_SCHEMES`), else raise
    ValueError naming the argument."""
    if isinstance(scheme, str) and scheme in GROUPS:
        return scheme
    error = ValueError if isinstance(scheme, str) else ArgumentTypeError
    raise error(f"scheme={scheme!r} must be one of {SCHEMES + NEWER_SCHEMES}")


def check_context(context: object, name: str = "context") -> int:
    """Return ``context`` if it is a positive int (tokens in the cache), else raise ValueError."""
    return check_positive_int(name, context)


def parse_dtype(dtype: torch.dtype | str) -> torch.dtype:
    """"float32" / "bfloat16" (or those torch dtypes) -> torch dtype; anything else raises ValueError."""
    if isinstance(dtype, torch.dtype) and dtype in BENCH_DTYPES.values():
        return dtype
    if isinstance(dtype, str) and dtype in BENCH_DTYPES:
        return BENCH_DTYPES[dtype]
    raise ValueError(f"dtype={dtype!r} must be one of {sorted(BENCH_DTYPES)}")


def parse_device(device: torch.device | str) -> torch.device:
    """"cpu" or "cuda" -> torch device; an unknown name, or "cuda" without a GPU, raises ValueError."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device={device!r} must be one of {BENCH_DEVICES}") from err
    if dev.type not in BENCH_DEVICES:
        raise ValueError(f"device={device!r} must be one of {BENCH_DEVICES}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} needs CUDA, which this torch cannot use here")
    return dev


def parse_contexts(contexts: str | Sequence[int]) -> tuple[int, ...]:
    """"1024,2048" or a sequence of ints -> a tuple of positive ints (ValueError otherwise)."""
    if isinstance(contexts, str):
        try:
            contexts = [int(part) for part in contexts.split(",") if part.strip()]
        except ValueError as err:
            raise ValueError(f"contexts={contexts!r} must be comma-separated positive integers") from err
    contexts = tuple(contexts)
    if not contexts:
        raise ValueError("contexts must name at least one context length")
    return tuple(check_context(c, "context") for c in contexts)


# ----------------------------------------------------------------------------------------------------
# the formulas: attnlab.costs; here what only the benchmark needs


def n_kv_heads(scheme: str, shape: AttentionShape) -> int:
    """K/V heads of a dense scheme: MHA n_h, GQA n_groups, MQA 1 (:attr:`attnlab.schemes.Scheme.kv_heads`)."""
    record = get_scheme(scheme, "scheme", SCHEMES)
    if not record.dense:
        raise ValueError(f"scheme={scheme!r} has no K/V heads: use one of {DENSE_SCHEMES}")
    return record.kv_heads(shape)


def roofline_bound(intensity: float, balance: float) -> str:
    """"memory" when intensity (FLOP/byte) < the machine balance (matmul rate / bandwidth), else "compute"."""
    if not (intensity > 0 and balance > 0):
        raise ValueError(f"intensity={intensity!r} and balance={balance!r} must be positive")
    return "memory" if intensity < balance else "compute"


def attainable_flops(intensity: float, bandwidth: float, peak_flops: float) -> float:
    """The roofline: min(peak FLOP/s, intensity x bandwidth)."""
    return min(peak_flops, intensity * bandwidth)


# ----------------------------------------------------------------------------------------------------
# layers and caches


def build_layer(scheme: str, shape: AttentionShape, device: torch.device, dtype: torch.dtype) -> AttentionLayer:
    """A randomly initialised layer of ``scheme`` on ``device`` in ``dtype`` (eval mode), built by the scheme's
    record (:mod:`attnlab.schemes`); latent layers rotate RoPE in halves, like Hugging Face's peer. Its
    projections are stored column-major (:func:`column_major_projections`)."""
    record = get_scheme(check_scheme(scheme), "scheme")
    options = {} if record.dense else {"rope_interleaved": False}
    return column_major_projections(record.build_layer(shape, **options).to(device=device, dtype=dtype).eval())


ROW_MAJOR_PROJECTIONS = ("w_ukv",)
"""Projections :func:`column_major_projections` leaves row-major: MLA's W^UKV, which the absorbed path reads
as per-head views (:attr:`~attnlab.mla.MultiHeadLatentAttention.w_uk`, ``w_uv``) of its rows."""


def _projections(layer: torch.nn.Module) -> list[torch.nn.Linear]:
    """The ``nn.Linear`` modules of ``layer`` that :func:`column_major_projections` stores column-major."""
    return [module for name, module in layer.named_modules()
            if isinstance(module, torch.nn.Linear) and name.rsplit(".", 1)[-1] not in ROW_MAJOR_PROJECTIONS]


def _one_token_through(weights: Sequence[torch.Tensor]) -> tuple[Callable[[], list[torch.Tensor]], int]:
    """A call that runs one random token x through each weight W, y = x W^T (``F.linear``, as a decode step's
    projections do), and the bytes of the weights it reads."""
    inputs = [torch.randn(1, w.shape[1], device=w.device, dtype=w.dtype) for w in weights]
    nbytes = sum(w.numel() * w.element_size() for w in weights)
    return (lambda: [F.linear(x, w) for x, w in zip(inputs, weights, strict=True)]), nbytes


def column_major_projections(layer: torch.nn.Module) -> torch.nn.Module:
    """Store every projection W (out, in) of ``layer`` (its ``nn.Linear`` weights, but those named in
    :data:`ROW_MAJOR_PROJECTIONS`) column-major: the same matrix, its values unchanged, laid out as W^T (in, out)
    contiguous, so that ``W.stride() == (1, out)``. A decode step multiplies one token x (1, in) by each W^T;
    BLAS then adds x_i times row i of W^T, reading W^T from start to end, where with W's rows it runs one dot
    product per output; :func:`bench_projection_layouts` measures what the first order gains (the benchmark's
    layers, every scheme alike, are built this way). Returns ``layer``, changed in place."""
    check_type("layer", layer, torch.nn.Module, "a torch.nn.Module")
    with torch.no_grad():
        for module in _projections(layer):
            w = module.weight
            module.weight = torch.nn.Parameter(w.detach().t().contiguous().t(), requires_grad=w.requires_grad)
    return layer


def transposed_names(scheme: str, shape: AttentionShape) -> tuple[str, ...]:
    """The cached tensors the benchmark stores transposed (:class:`LayerCache`'s ``transposed``, the token axis
    innermost): V when each K/V head serves one query head (MHA). A decode step's mix a V is then, per head,
    d_h rows of L numbers against a, a matrix-vector product that BLAS streams faster than L rows of d_h
    (:func:`bench_sdpa` times both layouts for every dense scheme). Where r query heads share a V head
    (GQA, MQA) the mix is an (r x L)(L x d_h) product, which the usual layout runs as fast or faster, so it
    stays; MLA's latent is both K and V and stays as it is."""
    record = get_scheme(check_scheme(scheme), "scheme")
    return ("v",) if record.dense and record.kv_heads(shape) == shape.n_heads else ()


def filled_cache(scheme: str, shape: AttentionShape, context: int, device: torch.device,
                 dtype: torch.dtype) -> LayerCache:
    """A :class:`LayerCache` holding ``context`` tokens of random entries in the layout ``scheme`` uses, one
    tensor per name and width of its record's cache rule: dense k, v (1, n_kv, L, d_h) (MHA's v stored
    transposed, :func:`transposed_names`); latent c_kv (1, L, d_c), k_rope (1, L, d_h^R), and DSA's index_key
    (1, L, d^I)."""
    record = get_scheme(check_scheme(scheme), "scheme")
    check_context(context)
    widths = record.cache(shape)  # {cached tensor: numbers per token}
    if record.dense:  # (batch, n_kv, tokens, width / n_kv): one slice per K/V head
        g = record.kv_heads(shape)
        sizes = {name: (1, g, context, width // g) for name, width in widths.items()}
    else:  # (batch, tokens, width)
        sizes = {name: (1, context, width) for name, width in widths.items()}
    cache = LayerCache(seq_dim=2 if record.dense else 1, capacity=context + 1,  # no growth when timed
                       transposed=transposed_names(scheme, shape))
    cache.update(**{name: torch.randn(*size, device=device, dtype=dtype) for name, size in sizes.items()})
    return cache


def decode_call(scheme: str, layer: AttentionLayer, x: torch.Tensor, cache: LayerCache) -> Callable[[], torch.Tensor]:
    """A zero-argument function running one decode step of ``layer`` on x (1, 1, d) with ``cache``, in the
    implementation the scheme's record names (MLA "naive" or "absorbed"; DSA gathers its top-k)."""
    record = get_scheme(check_scheme(scheme), "scheme")
    if record.indexer:
        layer.use("gather")
    elif not record.dense:
        layer.use(record.mode)
    return lambda: layer(x, cache).output


# ----------------------------------------------------------------------------------------------------
# the newer schemes (chapters 17-20): their settings, layers, directly filled caches and formulas


@dataclass(frozen=True)
class NewerSettings:
    """What the newer schemes add to a :func:`BenchShape` layer (:func:`newer_settings` derives them from it):

    window W and n_sinks S of the sliding window (chapter 17; GQA's heads), block_size B and top_blocks n of
    Quest's selection (chapter 19; GQA's heads; n B tokens read, the budget of DSA's top-k), conv_size K of
    Gated DeltaNet's short convolution (chapter 18; the layer's n_h heads of d_k = d_v = d_h), and the
    DeepSeek-V4 layer's window (v4_window), its CSA and HCA compression rates m (chapter 20;
    :func:`v4_bench_config` gives its widths)."""

    window: int = 4096
    n_sinks: int = 4
    block_size: int = 64
    top_blocks: int = 4
    conv_size: int = 4
    v4_window: int = 128
    csa_rate: int = 4
    hca_rate: int = 128

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            (check_non_negative_int if f.name == "n_sinks" else check_positive_int)(f.name, getattr(self, f.name))


def newer_settings(shape: AttentionShape) -> NewerSettings:
    """The newer schemes' settings for a layer of ``shape``, scaled with DSA's top-k k so that every sparse
    scheme reads the same budget: Quest reads n = 4 blocks of B = k / 4 tokens; the sliding window is W = 16 k
    with S = 4 sinks; V4 keeps W = k / 2 raw tokens, compresses CSA by m = 4 (its indexer: the shape's H^I, d^I
    and k) and HCA by m = k / 2. For :data:`DEFAULT_SHAPE` (k = 256): W = 4096 (Mistral 7B's and Gemma 2's
    window, so the window equals GQA up to 4K tokens and stays flat after), B = 64, V4's W = 128 and HCA's
    m = 128 (DeepSeek-V4's own), CSA's m = 4."""
    check_type("shape", shape, AttentionShape, "an AttentionShape (attnlab.bench.BenchShape(...))")
    k = check_positive_int("index_topk", shape.index_topk)
    return NewerSettings(window=16 * k, n_sinks=4, block_size=max(1, k // 4), top_blocks=4, conv_size=4,
                         v4_window=max(1, k // 2), csa_rate=4, hca_rate=max(1, k // 2))


def _v4_widths(shape: AttentionShape) -> dict[str, int]:
    """The V4 layer's widths for a bench shape: c = d_c, d^R = d_h^R (the shared vector as wide as MLA's latent,
    its RoPE slice as MLA's RoPE key), d'_c = d / 4, g = n_h / 8 output groups (V4-Flash's 8 heads a group) of
    d_g = n_h c / (4 g) (a fourth of a group's n_h c / g, as V4-Flash's 1024 of 4096)."""
    groups = max(1, shape.n_heads // 8)
    while shape.n_heads % groups:
        groups -= 1
    return {"head_dim": shape.kv_lora_rank, "rope_head_dim": shape.qk_rope_head_dim,
            "q_lora_rank": max(1, shape.d_model // 4), "o_groups": groups,
            "o_lora_rank": max(1, shape.n_heads * shape.kv_lora_rank // (4 * groups))}


def v4_bench_config(shape: AttentionShape, layer_type: str, newer: NewerSettings | None = None) -> V4AttentionConfig:
    """The DeepSeek-V4 layer the benchmark times, sized like the bench layer (d, n_h of ``shape``; widths of
    :func:`_v4_widths`: for :data:`DEFAULT_SHAPE` c = 256, d^R = 32, d'_c = 256, g = 2 groups of d_g = 512), its
    indexer the shape's H^I x d^I with top-k k, window and rates from ``newer`` (None: :func:`newer_settings`).
    ``layer_type`` "csa" or "hca"."""
    check_type("shape", shape, AttentionShape, "an AttentionShape (attnlab.bench.BenchShape(...))")
    if not isinstance(layer_type, str) or layer_type not in ("csa", "hca"):
        raise ValueError(f"layer_type={layer_type!r} must be 'csa' or 'hca'")
    newer = newer_settings(shape) if newer is None else check_type("newer", newer, NewerSettings)
    return V4AttentionConfig(d_model=shape.d_model, n_heads=shape.n_heads, window=newer.v4_window,
                             layer_type=layer_type, compress_rate=newer.csa_rate if layer_type == "csa" else
                             newer.hca_rate, index_n_heads=shape.index_n_heads, index_head_dim=shape.index_head_dim,
                             index_topk=shape.index_topk, **_v4_widths(shape))


def v4_bench_model(shape: AttentionShape, newer: NewerSettings | None = None) -> V4Model:
    """The :class:`~attnlab.costs.V4Model` of :func:`v4_bench_config`'s layer, for the formulas of
    :mod:`attnlab.costs` (``v4_decode_flops``, ``v4_decode_bytes``, ``v4_layer_cache_bytes``; pass the rate)."""
    check_type("shape", shape, AttentionShape, "an AttentionShape (attnlab.bench.BenchShape(...))")
    newer = newer_settings(shape) if newer is None else check_type("newer", newer, NewerSettings)
    return V4Model(name="attnlab.bench layer", compress_ratios=(4, 128), d_model=shape.d_model,
                   n_heads=shape.n_heads, index_topk=shape.index_topk, source="attnlab.bench.v4_bench_config",
                   window=newer.v4_window, index_n_heads=shape.index_n_heads, index_head_dim=shape.index_head_dim,
                   **_v4_widths(shape))


def _v4_rate(scheme: str, newer: NewerSettings) -> tuple[str, int]:
    return ("csa", newer.csa_rate) if scheme == "v4_csa" else ("hca", newer.hca_rate)


def _newer_scheme(scheme: object) -> str:
    if not isinstance(scheme, str) or scheme not in NEWER_SCHEMES:
        error = ValueError if isinstance(scheme, str) else ArgumentTypeError
        raise error(f"scheme={scheme!r} must be one of {NEWER_SCHEMES}")
    return scheme


def build_newer_layer(scheme: str, shape: AttentionShape, device: torch.device, dtype: torch.dtype,
                      newer: NewerSettings | None = None) -> AttentionLayer:
    """A randomly initialised layer of a newer ``scheme`` (one of :data:`NEWER_SCHEMES`) on ``device`` in ``dtype``,
    eval mode, set to decode: "gqa_window" GQA with a window of W and S sinks (its record's builder);
    "gated_deltanet" Gated DeltaNet of n_h heads of d_h, recurrent form; "quest" GQA reading n blocks of B
    (:class:`~attnlab.block_sparse.QuestAttention`); "v4_csa", "v4_hca" :func:`v4_bench_config`'s layer (CSA
    gathering its top-k entries)."""
    scheme = _newer_scheme(scheme)
    check_type("shape", shape, AttentionShape, "an AttentionShape (attnlab.bench.BenchShape(...))")
    newer = newer_settings(shape) if newer is None else check_type("newer", newer, NewerSettings)
    if scheme == "gqa_window":
        layer = get_scheme("gqa_window").build_layer(shape, window=newer.window, n_sinks=newer.n_sinks)
    elif scheme == "gated_deltanet":
        layer = LinearAttention(LinearAttentionConfig(d_model=shape.d_model, n_heads=shape.n_heads,
                                                      head_dim=shape.head_dim, v_head_dim=shape.v_head_dim,
                                                      rule="gated_delta", conv_size=newer.conv_size)).use("recurrent")
    elif scheme == "quest":
        config = AttentionConfig(shape.d_model, shape.n_heads, shape.n_kv_heads, shape.head_dim)
        layer = QuestAttention(config, block_size=newer.block_size, top_blocks=newer.top_blocks)
    else:
        layer = DeepSeekV4Attention(v4_bench_config(shape, _v4_rate(scheme, newer)[0], newer)).use("gather")
    return column_major_projections(layer.to(device=device, dtype=dtype).eval())


def filled_newer_cache(scheme: str, layer: AttentionLayer, context: int, device: torch.device,
                       dtype: torch.dtype) -> RollingCache | RecurrentState | BlockSparseCache | V4Cache:
    """The cache of ``layer`` (built by :func:`build_newer_layer` for ``scheme``) after ``context`` L tokens,
    filled directly with random tensors of the right shapes, no prefill, as :func:`filled_cache` fills the others:

    - "gqa_window": a :class:`~attnlab.window.RollingCache` of S + W slots holding min(L, S + W) tokens' k, v
      (1, n_kv, ., d_h), loaded at seq_len L (:meth:`~attnlab.window.RollingCache.load`);
    - "gated_deltanet": a :class:`~attnlab.linear_attention.RecurrentState` with a random state S
      (1, n_h, d_k, d_v) and K - 1 convolution inputs (1, K - 1, C), seq_len L;
    - "quest": a :class:`~attnlab.block_sparse.BlockSparseCache` of L tokens' k, v (room for L + 1), its block
      bounds computed as it takes them;
    - "v4_csa", "v4_hca": a :class:`~attnlab.v4.V4Cache` loaded with min(W, L) window vectors, floor(L / m)
      entries (CSA: and index keys) and the compressors' running state after L tokens: L mod m pending
      projections, CSA's previous window's first halves (:meth:`~attnlab.v4.V4Cache.load`)."""
    scheme = _newer_scheme(scheme)
    check_context(context)

    def randn(*size: int) -> torch.Tensor:
        return torch.randn(*size, device=device, dtype=dtype)

    if scheme == "gqa_window":
        c, w = layer.config, layer.window
        cache = RollingCache(w.window, w.n_sinks)
        held = min(context, w.n_sinks + w.window)
        cache.load(context, k=randn(1, c.n_kv_heads, held, c.head_dim), v=randn(1, c.n_kv_heads, held, c.head_dim))
        return cache
    if scheme == "gated_deltanet":
        c = layer.config
        cache = RecurrentState()
        cache.S = randn(1, c.n_heads, c.head_dim, c.d_v)
        cache.conv = randn(1, c.conv_size - 1, c.conv_channels) if c.conv_size else None
        cache.seq_len = context
        return cache
    if scheme == "quest":
        c = layer.config
        cache = layer.make_cache(capacity=context + 1)  # no growth when timed
        cache.update(randn(1, c.n_kv_heads, context, c.head_dim), randn(1, c.n_kv_heads, context, c.head_dim))
        return cache
    c = layer.config
    m, n = c.compress_rate, context // c.compress_rate
    rows = context % m

    def state(width: int, k: int) -> CompressorState:
        out = CompressorState()
        out.entries = n
        out.pending = randn(1, rows, 2 * k * width) if rows else None
        out.previous = randn(1, m, 2 * width) if k == 2 and n else None
        return out

    csa = c.layer_type == "csa"
    cache = layer.make_cache()
    cache.load(context, randn(1, min(c.window, context), c.head_dim), randn(1, n, c.head_dim),
               randn(1, n, c.index_head_dim) if csa else None, state(c.head_dim, 2 if csa else 1),
               state(c.index_head_dim, 2) if csa else None)
    return cache


def newer_reset(scheme: str, cache: RollingCache | RecurrentState | BlockSparseCache | V4Cache,
                context: int) -> Callable[[], None]:
    """A zero-argument function that puts ``cache`` back to ``context`` tokens after a decode step, outside the
    timed region and without copying the cache: the ring's one overwritten slot and count
    (:meth:`~attnlab.window.RollingCache.load` with ``slots``), the recurrent state's tensors (a step replaces
    them), the block cache cropped (its last block's bounds recomputed), V4's window and entries cropped and its
    compressors' state restored."""
    scheme = _newer_scheme(scheme)
    check_context(context)
    if scheme == "gqa_window":
        slot = ring_slot(context, cache.window, cache.n_sinks)
        held = cache.tensors  # before the step: the slot's old entries, or zeros where it held none yet
        saved = {name: (t.narrow(2, slot, 1) if slot < t.shape[2] else torch.zeros_like(t.narrow(2, 0, 1))).clone()
                 for name, t in held.items()}
        slots = torch.tensor([slot], device=next(iter(held.values())).device)
        return lambda: cache.load(context, slots=slots, **saved)
    if scheme == "gated_deltanet":
        saved = (cache.S, cache.z, cache.conv, cache.seq_len)

        def reset_state() -> None:
            cache.S, cache.z, cache.conv, cache.seq_len = saved
        return reset_state
    if scheme == "quest":
        return lambda: cache.crop(context)
    entries = cache.n_entries
    states = [(s, s.pending, s.previous, s.entries) for s in (cache.compressor, cache.indexer)]

    def reset_v4() -> None:
        cache.window.crop(context)
        if cache.compressed.seq_len > entries:
            cache.compressed.crop(entries)
        for s, pending, previous, count in states:
            s.pending, s.previous, s.entries = pending, previous, count
    return reset_v4


def newer_cache_bytes(scheme: str, shape: AttentionShape, context: int, dtype: torch.dtype | str,
                      newer: NewerSettings | None = None) -> int:
    """What a newer scheme's cache holds at ``context`` L tokens, by formula (:mod:`attnlab.costs`), for the
    measured nbytes to be checked against: the window's b 2 n_kv d_h min(L, S + W)
    (``windowed_cache_bytes``); Gated DeltaNet's state, b (n_h d_k d_v + C (K - 1)) (``linear_state_bytes``);
    Quest's K, V and block bounds (``block_sparse_cache_bytes``); V4's window, entries, index keys and
    compressor state (``v4_layer_cache_bytes``)."""
    scheme = _newer_scheme(scheme)
    check_type("shape", shape, AttentionShape, "an AttentionShape (attnlab.bench.BenchShape(...))")
    newer = newer_settings(shape) if newer is None else check_type("newer", newer, NewerSettings)
    if scheme == "gqa_window":
        return windowed_cache_bytes("gqa", shape, context, dtype, [newer.window], newer.n_sinks)
    if scheme == "gated_deltanet":
        d_k, d_v = shape.head_dim, shape.v_head_dim
        conv = linear_conv_channels(shape.n_heads, d_k, d_v)
        return linear_state_bytes(shape.n_heads, d_k, d_v, dtype, conv_channels=conv, conv_kernel=newer.conv_size,
                                  conv_dtype=dtype)
    if scheme == "quest":
        return block_sparse_cache_bytes("gqa", shape, context, dtype, newer.block_size)
    layer_type, rate = _v4_rate(scheme, newer)
    return v4_layer_cache_bytes(v4_bench_model(shape, newer), layer_type, context, dtype, rate)


def newer_step_costs(scheme: str, shape: AttentionShape, context: int, dtype: torch.dtype | str,
                     newer: NewerSettings | None = None) -> dict[str, int]:
    """FLOPs, bytes read and bytes written into the cache by one decode step of a newer scheme after ``context``
    tokens, one layer, batch 1, all from :mod:`attnlab.costs` (weights included, as for :data:`SCHEMES`):

        gqa_window      window_decode_flops, window_decode_bytes_read, cache_append_bytes       (min(T, S + W) keys)
        gated_deltanet  linear_layer_decode_flops, linear_decode_bytes ("read"; "written": the state replaced)
        quest           block_sparse_decode_flops, block_sparse_decode_bytes_read, block_sparse_append_bytes
        v4_csa, v4_hca  v4_decode_flops (summed), v4_decode_bytes (all but "appended"; "appended")

    -> {"flops", "bytes_read", "bytes_appended"}."""
    scheme = _newer_scheme(scheme)
    check_type("shape", shape, AttentionShape, "an AttentionShape (attnlab.bench.BenchShape(...))")
    newer = newer_settings(shape) if newer is None else check_type("newer", newer, NewerSettings)
    if scheme == "gqa_window":
        return {"flops": window_decode_flops("gqa", shape, context, newer.window, newer.n_sinks),
                "bytes_read": window_decode_bytes_read("gqa", shape, context, dtype, newer.window, newer.n_sinks),
                "bytes_appended": cache_append_bytes("gqa", shape, dtype)}
    if scheme == "gated_deltanet":
        check_non_negative_int("context", context)
        args = (shape.d_model, shape.n_heads, shape.head_dim, shape.v_head_dim)
        moved = linear_decode_bytes(*args, dtype, newer.conv_size)
        return {"flops": linear_layer_decode_flops(*args, newer.conv_size), "bytes_read": moved["read"],
                "bytes_appended": moved["written"]}
    if scheme == "quest":
        b, n = newer.block_size, newer.top_blocks
        return {"flops": block_sparse_decode_flops("gqa", shape, context, b, n),
                "bytes_read": block_sparse_decode_bytes_read("gqa", shape, context, dtype, b, n),
                "bytes_appended": block_sparse_append_bytes("gqa", shape, dtype)}
    layer_type, rate = _v4_rate(scheme, newer)
    model = v4_bench_model(shape, newer)
    moved = v4_decode_bytes(model, layer_type, context, dtype, rate)
    return {"flops": sum(v4_decode_flops(model, layer_type, context, rate).values()),
            "bytes_read": sum(v for k, v in moved.items() if k != "appended"), "bytes_appended": moved["appended"]}


# ----------------------------------------------------------------------------------------------------
# timing


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels on CUDA (a no-op on CPU), so perf_counter brackets the work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def minor_page_faults() -> int:
    """Minor page faults of this process so far (``getrusage(RUSAGE_SELF).ru_minflt``): each one is a page of
    fresh memory the kernel mapped in on first touch."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def time_calls(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int = DEFAULT_WARMUP,
               reset: Callable[[], None] | None = None) -> list[float]:
    """Seconds per call of ``fn`` for ``repeats`` calls after ``warmup`` untimed ones; ``reset`` runs
    before every call, outside the timed region. (One function: :func:`time_interleaved` for several.)"""
    timings = time_interleaved({"fn": fn}, device, repeats, warmup, None if reset is None else {"fn": reset})
    return timings["fn"]["times_s"]


def time_interleaved(calls: Mapping[str, Callable[[], object]], device: torch.device, repeats: int,
                     warmup: int = DEFAULT_WARMUP, resets: Mapping[str, Callable[[], None]] | None = None,
                     before: Callable[[str], None] | None = None) -> dict[str, dict[str, list]]:
    """Time several functions interleaved: ``warmup + repeats`` rounds, each calling every function of
    ``calls`` once, round i starting at the (i mod n)-th name (so each takes every place in the order);
    the first ``warmup`` rounds are not kept. Before each call ``before(name)`` (progress) and
    ``resets[name]`` run, outside the timed region; CUDA is synchronized around each call, Python's garbage
    collector is paused throughout. Returns {name: {"times_s": seconds per timed call, "faults": minor page
    faults per timed call}}, each list ``repeats`` long, in round order."""
    check_positive_int("repeats", repeats)
    check_non_negative_int("warmup", warmup)
    if not isinstance(calls, Mapping) or not calls:
        raise ValueError(f"calls must be a non-empty mapping name -> function, got {calls!r}")
    resets = {} if resets is None else resets
    unknown = set(resets) - set(calls)
    if unknown:
        raise ValueError(f"resets names {sorted(unknown)}, which calls lacks")
    names = list(calls)
    out: dict[str, dict[str, list]] = {name: {"times_s": [], "faults": []} for name in names}
    collecting = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        for i in range(warmup + repeats):
            k = i % len(names)
            for name in names[k:] + names[:k]:
                if before is not None:
                    before(name)
                if name in resets:
                    resets[name]()
                fn = calls[name]
                synchronize(device)
                faults = minor_page_faults()
                start = time.perf_counter()
                fn()
                synchronize(device)
                seconds = time.perf_counter() - start
                faults = minor_page_faults() - faults
                if i >= warmup:
                    out[name]["times_s"].append(seconds)
                    out[name]["faults"].append(faults)
    finally:
        if collecting:
            gc.enable()
    return out


def middle_spread(times: Sequence[float]) -> float:
    """(max - min) / median of the middle half of ``times`` (the fastest and the slowest quarter left out):
    how far the typical calls stray. 0 for a single time."""
    ordered = sorted(times)
    if not ordered:
        raise ValueError("times must hold at least one time")
    cut = len(ordered) // 4
    middle = ordered[cut:len(ordered) - cut]
    return (middle[-1] - middle[0]) / statistics.median(ordered)


def timing_summary(timing: Mapping[str, list], prefix: str = "") -> dict:
    """One function's timing (an entry of :func:`time_interleaved`) as report fields: ``time_s`` (median),
    ``time_min_s``, ``times_s``, ``spread`` (:func:`middle_spread`), ``faults_per_call`` (mean minor page
    faults) and ``faults_max``, each name after ``prefix`` (e.g. "hf_" gives "hf_time_s")."""
    times, faults = timing["times_s"], timing["faults"]
    return {f"{prefix}time_s": statistics.median(times), f"{prefix}time_min_s": min(times),
            f"{prefix}times_s": list(times), f"{prefix}spread": middle_spread(times),
            f"{prefix}faults_per_call": statistics.fmean(faults), f"{prefix}faults_max": max(faults)}


#: The environment variable that makes PyTorch's CPU allocator ask for transparent huge pages (c10/core/alloc_cpu.cpp:
#: blocks of 2 MiB or more are madvise(MADV_HUGEPAGE)d). PyTorch reads it once, at its first CPU allocation.
HUGE_PAGES_VARIABLE = "THP_MEM_ALLOC_ENABLE"
_THP_SETTING = "/sys/kernel/mm/transparent_hugepage/enabled"


def request_huge_pages() -> bool:
    """Set ``THP_MEM_ALLOC_ENABLE=1`` (:data:`HUGE_PAGES_VARIABLE`) unless the environment already sets it,
    so that PyTorch backs each CPU block of 2 MiB or more with transparent huge pages: a fresh 100 MB
    temporary then faults in as about 50 pages of 2 MiB instead of 25,000 of 4 KiB. It only takes effect
    before the process's first CPU tensor is allocated (``--huge-pages`` calls it first thing) and where
    the kernel's THP setting is "always" or "madvise". Returns :func:`huge_pages_in_effect`."""
    os.environ.setdefault(HUGE_PAGES_VARIABLE, "1")
    return huge_pages_in_effect()


def huge_pages_in_effect() -> bool:
    """Whether a fresh 64 MiB CPU tensor faults in as huge pages: True when filling it takes fewer than a
    quarter of the 16,384 minor page faults that 4 KiB pages would."""
    x = torch.empty(2**26, dtype=torch.uint8)
    faults = minor_page_faults()
    x.fill_(1)
    return minor_page_faults() - faults < 2**26 // 4096 // 4


#: glibc's malloc settings :func:`steady_heap` makes (``mallopt``): mmap threshold, its largest fixed value, and the
#: trim threshold, in bytes.
STEADY_HEAP = {"mmap_threshold": 32 * 2**20, "trim_threshold": 256 * 2**20}
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameter numbers (malloc.h)
_steady_heap: dict | None = None  # what steady_heap set in this process, if it did


def steady_heap() -> dict | None:
    """Keep freed memory below 32 MiB in the C heap for the next call (glibc ``mallopt``: :data:`STEADY_HEAP`).

    By default glibc maps a block above its mmap threshold (128 KiB at first, raised as such blocks are freed)
    afresh from the system and returns the heap's free top once it exceeds the trim threshold; which of a
    step's temporaries fault in page by page then depends on what ran before (a Quest step's gathered blocks
    faulted 100 to 240 pages per call at 1K tokens in one run, none in the next context). With the mmap
    threshold fixed at 32 MiB and a 256 MiB trim threshold, temporaries under 32 MiB are served from memory
    the heap keeps; larger ones (naive MLA's and Hugging Face's expanded keys and values) still fault, and
    the faults column shows it. :func:`release_free_memory` still trims between contexts. ``python -m
    attnlab.bench`` calls this first; it changes the whole process, so :func:`main` and :func:`run_benchmark`
    called from elsewhere (a notebook's live run, a test) do not. Returns the settings, or None where the C
    library has no ``mallopt`` (not glibc)."""
    global _steady_heap
    try:
        import ctypes

        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return None
    if not (mallopt(_M_MMAP_THRESHOLD, STEADY_HEAP["mmap_threshold"])
            and mallopt(_M_TRIM_THRESHOLD, STEADY_HEAP["trim_threshold"])):
        return None
    _steady_heap = dict(STEADY_HEAP)
    return _steady_heap


def allocator_info() -> dict:
    """The memory settings a run ran with: the huge-page variable as set (or None), the kernel's THP setting
    (the bracketed choice of /sys/kernel/mm/transparent_hugepage/enabled, or None), whether huge pages
    were in effect (:func:`huge_pages_in_effect`) and the malloc settings :func:`steady_heap` made (or None)."""
    try:
        with open(_THP_SETTING, encoding="utf-8") as f:
            setting = f.read().split("[", 1)[1].split("]", 1)[0]
    except (OSError, IndexError):
        setting = None
    return {HUGE_PAGES_VARIABLE: os.environ.get(HUGE_PAGES_VARIABLE), "transparent_hugepage": setting,
            "huge_pages": huge_pages_in_effect(), "malloc": _steady_heap}


# ----------------------------------------------------------------------------------------------------
# the machine


#: The machine's probes; a run measures each twice, before and after its decode rounds (:func:`machine_record`).
PROBES: tuple[str, ...] = ("copy_bandwidth", "read_bandwidth", "matmul_rate", "decode_matmul_rate")


def machine_record(first: Mapping[str, float], second: Mapping[str, float], copy_bytes: int, gemm_n: int,
                   decode_shape: Sequence[int]) -> dict:
    """The report's "machine": each probe's rate (:data:`PROBES`) as the better of its two passes, one before
    and one after the decode rounds, with both passes kept under "probe_passes". A probe is a ceiling, what the
    machine can do: on a shared host a busy moment lowers it as it slows the schemes, and a ceiling taken in
    such a moment alone would put a scheme timed in a quiet one above 100% of it. Then the balances and the
    roofline's two ceilings (read bandwidth, decode-shaped matmul)."""
    for name, rates in (("first", first), ("second", second)):
        if set(rates) != set(PROBES) or not all(isinstance(v, float) and v > 0 for v in rates.values()):
            raise ValueError(f"{name} must map each of {PROBES} to a positive rate, got {dict(rates)}")
    best = {probe: max(first[probe], second[probe]) for probe in PROBES}
    return {"copy_bandwidth": best["copy_bandwidth"], "copy_bytes": copy_bytes, "matmul_rate": best["matmul_rate"],
            "gemm_n": gemm_n, "balance_flops_per_byte": best["matmul_rate"] / best["copy_bandwidth"],
            "read_bandwidth": best["read_bandwidth"], "read_bytes": copy_bytes,
            "decode_matmul_rate": best["decode_matmul_rate"], "decode_matmul_shape": list(decode_shape),
            "roofline_bandwidth": best["read_bandwidth"], "roofline_flops": best["decode_matmul_rate"],
            "roofline_balance": best["decode_matmul_rate"] / best["read_bandwidth"],
            "roofline_uses": "read bandwidth (x.sum()) and the decode-shaped matmul ceiling",
            "probe_passes": {probe: [first[probe], second[probe]] for probe in PROBES},
            "probes_use": "the better of two passes, before and after the decode rounds"}


def measure_copy_bandwidth(device: torch.device, dtype: torch.dtype, n_bytes: int, repeats: int) -> float:
    """Bytes per second of ``dst.copy_(src)`` on a tensor of about n_bytes: 2 x nbytes (read + write) / median time."""
    n = max(1, n_bytes // dtype_bytes(dtype))
    src = torch.randn(n, device=device, dtype=dtype)
    dst = torch.empty_like(src)
    seconds = statistics.median(time_calls(lambda: dst.copy_(src), device, repeats))
    return 2 * src.numel() * src.element_size() / seconds


def measure_read_bandwidth(device: torch.device, dtype: torch.dtype, n_bytes: int, repeats: int) -> float:
    """Bytes per second read by ``x.sum()`` over a tensor of about n_bytes (what a decode step mostly does:
    stream the cache and the weights once, writing almost nothing): nbytes / median time."""
    n = max(1, n_bytes // dtype_bytes(dtype))
    x = torch.randn(n, device=device, dtype=dtype)
    seconds = statistics.median(time_calls(lambda: x.sum(), device, repeats))
    return x.numel() * x.element_size() / seconds


def measure_matmul_rate(device: torch.device, dtype: torch.dtype, n: int, repeats: int) -> float:
    """FLOP/s of an n x n by n x n matmul in ``dtype``: 2 n^3 / median time."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    seconds = statistics.median(time_calls(lambda: a @ b, device, repeats))
    return 2 * n**3 / seconds


def decode_matmul_shape(shape: AttentionShape, tokens: int) -> tuple[int, int, int]:
    """(rows, width, columns) of the decode-shaped matmul probe: absorbed MLA's scores, n_h query rows of width
    w = d_c + d_h^R against ``tokens`` cached [c^KV; k^R] columns (a decode step's matmuls all have as few
    rows: one token's heads)."""
    check_type("shape", shape, AttentionShape, "an AttentionShape (attnlab.bench.BenchShape(...))")
    return shape.n_heads, shape.kv_lora_rank + shape.qk_rope_head_dim, check_positive_int("tokens", tokens)


def measure_decode_matmul_rate(device: torch.device, dtype: torch.dtype, rows: int, width: int, tokens: int,
                               repeats: int) -> float:
    """FLOP/s of a (rows x width) @ (width x tokens) matmul, the skinny shape of a decode step's scores and
    weighted sums: 2 rows width tokens / median time. With operands that fit in cache it is the arithmetic
    ceiling a decode step can reach, lower than a square GEMM's (too few rows to reuse each loaded column)."""
    a = torch.randn(check_positive_int("rows", rows), check_positive_int("width", width), device=device, dtype=dtype)
    b = torch.randn(width, check_positive_int("tokens", tokens), device=device, dtype=dtype)
    seconds = statistics.median(time_calls(lambda: a @ b, device, repeats))
    return 2 * rows * width * tokens / seconds


def fused_kernel_info() -> dict:
    """Whether DSA's index scores run the fused CPU kernel of :mod:`attnlab.fused` in this process: "available",
    "reason" (how it was built, or why not) and "target" (the instruction set its loader picked)."""
    status = kernel_status()
    return {"available": status.available, "reason": status.reason, "target": status.target}


def device_info(device: torch.device) -> dict:
    """Device name (the GPU's on CUDA, else the CPU's), CPU count, threads, platform, and the CPU's details
    (model name, family and model numbers, the vector ISA torch uses, cache sizes) where Linux gives them."""
    info = {"type": device.type, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "platform": platform.platform()}
    cpu = _cpu_details()
    if device.type == "cuda":
        info["name"] = torch.cuda.get_device_name(device)
    else:
        info["name"] = platform.processor() or cpu.get("cpu_name") or platform.machine()
    return {**info, **cpu}


def _cpu_details() -> dict:
    """What /proc/cpuinfo and /sys say about CPU 0 (Linux; fewer keys elsewhere): "cpu_name", "cpu_family",
    "cpu_model", "cpu_capability" (torch's vector ISA, e.g. "AVX512") and "cpu_caches" {"L1d": "48K", ...}."""
    details: dict = {}
    fields = {"model name": "cpu_name", "cpu family": "cpu_family", "model": "cpu_model"}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                name = fields.get(key.strip())
                if name and name not in details:
                    details[name] = value.strip()
                if not line.strip() and details:
                    break  # the first processor only
    except OSError:
        pass
    capability = getattr(torch.backends.cpu, "get_cpu_capability", None)
    if capability is not None:
        details["cpu_capability"] = capability()
    caches = {}
    base = "/sys/devices/system/cpu/cpu0/cache"
    try:
        for index in sorted(os.listdir(base)):
            if not index.startswith("index"):
                continue
            fields = {}
            for name in ("type", "level", "size"):
                with open(os.path.join(base, index, name), encoding="utf-8") as f:
                    fields[name] = f.read().strip()
            label = f"L{fields['level']}" + {"Data": "d", "Instruction": "i"}.get(fields["type"], "")
            caches[label] = fields["size"]
    except OSError:
        pass
    if caches:
        details["cpu_caches"] = caches
    return details


def release_free_memory() -> bool:
    """Collect Python's garbage and hand the memory the C heap holds free back to the system (glibc's
    ``malloc_trim(0)``), so that what one context freed (its caches, layers and temporaries, many of them
    below glibc's mmap threshold and so kept in the heap) does not stay resident under the next context's
    peak. Run between contexts, outside every timed region. Returns whether the C library had ``malloc_trim``
    (glibc; elsewhere only the garbage is collected)."""
    gc.collect()
    try:
        import ctypes

        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return False
    trim(0)
    return True


def process_wall_seconds() -> float | None:
    """Seconds since this process started (Linux: /proc), or None where that is unknown."""
    try:
        with open("/proc/self/stat", encoding="utf-8") as f:
            started = int(f.read().rsplit(")", 1)[1].split()[19])  # field 22: start time in clock ticks
        with open("/proc/uptime", encoding="utf-8") as f:
            uptime = float(f.read().split()[0])
        return uptime - started / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def peak_rss_bytes() -> int:
    """The most memory this process has held resident so far (``getrusage(RUSAGE_SELF).ru_maxrss``: KiB on
    Linux, bytes on macOS), in bytes."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else 1024 * peak


# ----------------------------------------------------------------------------------------------------
# the benchmark


def bench_context(shape: AttentionShape, context: int, device: torch.device, dtype: torch.dtype, repeats: int,
                  warmup: int = DEFAULT_WARMUP, schemes: Sequence[str] = SCHEMES,
                  before: Callable[[str], None] | None = None, newer: NewerSettings | None = None) -> list[dict]:
    """One decode step of every scheme against a cache of ``context`` tokens, timed interleaved
    (:func:`time_interleaved`; ``before(scheme)`` runs before each call); checks each cache's size.
    ``schemes`` may mix :data:`SCHEMES` and :data:`NEWER_SCHEMES` (built with ``newer``, None:
    :func:`newer_settings`): all of them share the same rounds.

    Returns one entry per scheme: its "group" ("course" or "newer", :data:`GROUPS`), the :func:`timing_summary`
    fields (median, minimum, all times, spread, page faults per call) and the measured and formula cache bytes
    (which must agree)."""
    schemes = tuple(check_bench_scheme(s) for s in schemes)
    check_context(context)
    newer = newer_settings(shape) if newer is None else check_type("newer", newer, NewerSettings)
    x = torch.randn(1, 1, shape.d_model, device=device, dtype=dtype)
    calls, resets, sizes = {}, {}, {}
    for scheme in schemes:
        if GROUPS[scheme] == "course":
            layer = build_layer(scheme, shape, device, dtype)
            cache = filled_cache(scheme, shape, context, device, dtype)
            expected = cache_bytes(scheme, shape, context, dtype)
            calls[scheme] = decode_call(scheme, layer, x, cache)
            resets[scheme] = (lambda c: lambda: c.crop(context))(cache)  # back to `context` tokens
        else:
            layer = build_newer_layer(scheme, shape, device, dtype, newer)
            cache = filled_newer_cache(scheme, layer, context, device, dtype)
            expected = newer_cache_bytes(scheme, shape, context, dtype, newer)
            calls[scheme] = (lambda f, c: lambda: f(x, c).output)(layer, cache)
            resets[scheme] = newer_reset(scheme, cache, context)
        measured = cache.nbytes
        if measured != expected:
            raise AssertionError(f"{scheme}: {type(cache).__name__}.nbytes={measured} but the formula gives {expected}")
        sizes[scheme] = (measured, expected)
    with torch.inference_mode():
        timings = time_interleaved(calls, device, repeats, warmup, resets, before)
    return [{"scheme": scheme, "context": context, "group": GROUPS[scheme], **timing_summary(timings[scheme]),
             "cache_bytes_measured": sizes[scheme][0], "cache_bytes_formula": sizes[scheme][1]}
            for scheme in schemes]


#: The parts of DSA's step that :func:`bench_dsa_parts` times alone (:func:`dsa_rest_seconds`: the step less these).
DSA_ALONE: tuple[str, ...] = ("index_scores", "topk", "projections")
#: What :func:`bench_dsa_parts` times, in its rounds: the whole step from cold caches, the parts alone from cold
#: caches, the index scores by PyTorch's two matmuls (the step's own path where the fused kernel is not built),
#: and the whole step again right after another (warm).
DSA_PARTS: tuple[str, ...] = ("step", *DSA_ALONE, "index_scores_matmul", "step_warm")


def bench_dsa_parts(shape: AttentionShape, context: int, device: torch.device, dtype: torch.dtype, repeats: int,
                    warmup: int = DEFAULT_WARMUP, flush_bytes: int = 2**27,
                    before: Callable[[str], None] | None = None) -> dict:
    """Where DSA's decode step goes at ``context``: the whole step (as :func:`bench_context` times it), three of
    its parts timed alone, the same functions the step runs, and the step once more with warm caches, all in
    interleaved rounds (:data:`DSA_PARTS`):

    "index_scores": I_s = sum_j w_j ReLU(q_j · k_s) (d^I)^-0.5 over the T = L + 1 index keys as the step
    computes them: by the fused kernel of :mod:`attnlab.fused` on a CPU in float32 where it is built, else by
    PyTorch's matmuls (2 (H^I d^I + H^I) T FLOPs, :func:`~attnlab.costs.indexer_macs_per_cached_token`; the
    T d^I keys read once); "index_scores_path" says which ("fused kernel, <target>" or "matmuls");
    "topk": the top k of those T scores, best first, ties by position;
    "projections": the new token through every projection of the layer (its ``nn.Linear`` weights, stored as
    the step holds them), each weight read once;
    "index_scores_matmul": the same scores by PyTorch's two matmuls, a matmul H^I columns wide and the weighted
    sum (the kernel's "before": the same call with the kernel switched off);
    "step_warm": the whole step right after an untimed one, so that its weights, its index keys (when they fit
    the last-level cache) and the code of every operation it runs are still in the caches.

    Before every other call a read of ``flush_bytes`` (more than the last-level cache) evicts what the previous
    call left, so each starts cold, as it does among the benchmark's schemes. Returns the medians and spreads
    (:func:`timing_summary` under each part's name and "_"), the index scores' FLOPs and key bytes and their
    achieved FLOP/s and bytes/s (both paths), and the projections' weight bytes and bytes/s."""
    check_context(context)
    check_positive_int("flush_bytes", flush_bytes)
    layer = build_layer("dsa", shape, device, dtype)
    cache = filled_cache("dsa", shape, context, device, dtype)
    x = torch.randn(1, 1, shape.d_model, device=device, dtype=dtype)
    step = decode_call("dsa", layer, x, cache)
    flush = torch.randn(max(1, flush_bytes // dtype_bytes(dtype)), device=device, dtype=dtype)
    t = context + 1
    # the layer's own projections, column-major as the step reads them
    project, weight_bytes = _one_token_through([m.weight.detach() for m in _projections(layer)])
    with torch.inference_mode():
        positions = torch.arange(context, t)
        q = layer.indexer.queries(layer.query_input(x), positions)  # (1, 1, H^I, d^I)
        w = layer.indexer.head_weights(x)  # (1, 1, H^I)
        keys = torch.randn(1, t, shape.index_head_dim, device=device, dtype=dtype)  # what the step scores
        scale = layer.indexer_config.softmax_scale
        scores = _index_scores(q, w, keys, scale)  # (1, 1, T)
        calls = {"step": step, "index_scores": lambda: _index_scores(q, w, keys, scale),
                 "topk": lambda: _topk(scores, layer.top_k, None, t),
                 "projections": project,
                 "index_scores_matmul": lambda: _index_scores_matmul(q, w, keys, scale),
                 "step_warm": step}
        resets = {"step": lambda: (cache.crop(context), flush.sum()), "index_scores": flush.sum,
                  "topk": flush.sum, "projections": flush.sum, "index_scores_matmul": flush.sum,
                  "step_warm": lambda: (cache.crop(context), step(), cache.crop(context))}  # one step untimed
        timings = time_interleaved(calls, device, repeats, warmup, resets, before)
        fused = _fusable(q, w, keys)
    out = {"context": context, "flush_bytes": flush.numel() * flush.element_size(),
           "index_scores_path": f"fused kernel, {kernel_status().target}" if fused else "matmuls"}
    for name in DSA_PARTS:
        out.update(timing_summary(timings[name], prefix=f"{name}_"))
    flops = 2 * indexer_macs_per_cached_token(shape) * t
    key_bytes = keys.numel() * keys.element_size()
    out.update({"index_scores_flops": flops, "index_key_bytes": key_bytes,
                "index_scores_flop_rate": flops / out["index_scores_time_s"],
                "index_scores_bandwidth": key_bytes / out["index_scores_time_s"],
                "index_scores_matmul_flop_rate": flops / out["index_scores_matmul_time_s"],
                "index_scores_matmul_bandwidth": key_bytes / out["index_scores_matmul_time_s"],
                "projection_weight_bytes": weight_bytes,
                "projections_bandwidth": weight_bytes / out["projections_time_s"]})
    return out


#: The schemes :func:`bench_projection_layouts` times: every course scheme but naive MLA, whose projections are
#: absorbed MLA's.
LAYOUT_SCHEMES: tuple[str, ...] = tuple(s for s in SCHEMES if s != "mla_naive")


def bench_projection_layouts(shape: AttentionShape, device: torch.device, dtype: torch.dtype, repeats: int,
                             warmup: int = DEFAULT_WARMUP, flush_bytes: int = 2**27,
                             before: Callable[[str], None] | None = None) -> list[dict]:
    """One token x times every projection of each course scheme's layer, y = x W^T for each ``nn.Linear`` weight W
    that :func:`column_major_projections` stores column-major, in both layouts: "rows" as ``nn.Linear`` makes
    W (out, in), each output a dot product of x with a row; "columns" as the benchmark's layers hold it, W^T's
    rows contiguous, the output the sum of x_i times row i of W^T. Both layouts of every scheme run in the same
    interleaved rounds, each call after a read of ``flush_bytes`` (more than the last-level cache), so it
    starts from cold caches, as a decode step does among the schemes. The schemes are :data:`LAYOUT_SCHEMES`.

    Returns one entry per scheme: its weight bytes, :func:`timing_summary` for each layout (prefixes "rows_",
    "columns_"), the weights read per second in each, and ``ratio_rows_over_columns`` (above 1: column-major
    is faster)."""
    check_positive_int("flush_bytes", flush_bytes)
    calls, sizes = {}, {}
    for scheme in LAYOUT_SCHEMES:
        columns = [m.weight.detach() for m in _projections(build_layer(scheme, shape, device, dtype))]
        rows = [w.contiguous() for w in columns]  # the same (out, in) matrices, strides (in, 1)
        for layout, weights in (("rows", rows), ("columns", columns)):
            calls[f"{scheme}:{layout}"], sizes[scheme] = _one_token_through(weights)
    flush = torch.randn(max(1, flush_bytes // dtype_bytes(dtype)), device=device, dtype=dtype)
    with torch.inference_mode():
        timings = time_interleaved(calls, device, repeats, warmup, {name: flush.sum for name in calls}, before)
    out = []
    for scheme in LAYOUT_SCHEMES:
        entry = {"scheme": scheme, "weight_bytes": sizes[scheme]}
        for layout in ("rows", "columns"):
            entry.update(timing_summary(timings[f"{scheme}:{layout}"], prefix=f"{layout}_"))
            entry[f"{layout}_bandwidth"] = sizes[scheme] / entry[f"{layout}_time_s"]
        entry["ratio_rows_over_columns"] = entry["rows_time_s"] / entry["columns_time_s"]
        out.append(entry)
    return out


def bench_sdpa(scheme: str, shape: AttentionShape, context: int, device: torch.device, dtype: torch.dtype,
               repeats: int, warmup: int = DEFAULT_WARMUP, before: Callable[[str], None] | None = None) -> dict:
    """The dense attention core of one decode step: q (1, n_h, 1, d_h) against k, v (1, n_kv, T, d_h),
    :func:`grouped_attention` against ``F.scaled_dot_product_attention(..., enable_gqa=True)``, and
    grouped_attention again with the same v stored transposed (``v_t``, the token axis innermost, as
    :func:`transposed_names` stores MHA's), the three interleaved. ``ratio_grouped_attention_over_v_t`` above 1
    means the transposed V is faster; the decode step uses it where :func:`transposed_names` says so."""
    t = check_context(context) + 1
    g = n_kv_heads(scheme, shape)
    q = torch.randn(1, shape.n_heads, 1, shape.head_dim, device=device, dtype=dtype)
    k = torch.randn(1, g, t, shape.head_dim, device=device, dtype=dtype)
    v = torch.randn(1, g, t, shape.head_dim, device=device, dtype=dtype)
    v_t = v.mT.contiguous().mT  # the same (1, g, T, d_h) values, strides (.., 1, T)
    calls = {"grouped_attention": lambda: grouped_attention(q, k, v, causal=True),
             "v_t": lambda: grouped_attention(q, k, v_t, causal=True),
             "sdpa": lambda: F.scaled_dot_product_attention(q, k, v, enable_gqa=True)}
    with torch.inference_mode():
        timings = time_interleaved(calls, device, repeats, warmup, before=before)
        ours = grouped_attention(q, k, v)[0].float()
        diff = (ours - F.scaled_dot_product_attention(q, k, v, enable_gqa=True).float()).abs().max().item()
        diff_t = (ours - grouped_attention(q, k, v_t)[0].float()).abs().max().item()
    return {"scheme": scheme, "context": context,
            **_peer_stats(timings, [("grouped_attention", "sdpa"), ("grouped_attention", "v_t")]),
            "max_abs_diff": diff, "max_abs_diff_v_t": diff_t}


def _peer_stats(timings: Mapping[str, Mapping[str, list]], ratios: Sequence[tuple[str, str]]) -> dict:
    """Per function: median ``<name>_s``, minimum ``<name>_min_s``, every time ``<name>_times_s``,
    ``<name>_spread`` and ``<name>_faults_per_call``; per pair (a, b): ``ratio_a_over_b`` of the medians and
    ``ratio_a_over_b_min`` of the minima (the minimum is the least disturbed on a shared machine)."""
    out: dict = {}
    for name, timing in timings.items():
        summary = timing_summary(timing)
        out.update({f"{name}_s": summary["time_s"], f"{name}_min_s": summary["time_min_s"],
                    f"{name}_times_s": summary["times_s"], f"{name}_spread": summary["spread"],
                    f"{name}_faults_per_call": summary["faults_per_call"]})
    for a, b in ratios:
        out[f"ratio_{a}_over_{b}"] = out[f"{a}_s"] / out[f"{b}_s"]
        out[f"ratio_{a}_over_{b}_min"] = out[f"{a}_min_s"] / out[f"{b}_min_s"]
    return out


def hf_attention(shape: AttentionShape, max_positions: int, device: torch.device, dtype: torch.dtype):
    """A randomly initialised transformers ``DeepseekV3Attention`` of the shape (built offline, SDPA
    backend, halves RoPE) and its rotary embedding; returns (attention, rotary, DynamicCache class)."""
    import transformers
    from transformers.cache_utils import DynamicCache
    from transformers.models.deepseek_v3 import modeling_deepseek_v3 as modeling

    s = shape
    config = transformers.DeepseekV3Config(
        hidden_size=s.d_model, num_attention_heads=s.n_heads, num_key_value_heads=s.n_heads, q_lora_rank=None,
        kv_lora_rank=s.kv_lora_rank, qk_nope_head_dim=s.head_dim, qk_rope_head_dim=s.qk_rope_head_dim,
        v_head_dim=s.head_dim, max_position_embeddings=max_positions, rope_interleave=False, num_hidden_layers=1,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
    config._attn_implementation = "sdpa"
    attention = modeling.DeepseekV3Attention(config, layer_idx=0).to(device=device, dtype=dtype).eval()
    rotary = modeling.DeepseekV3RotaryEmbedding(config).to(device)
    return attention, rotary, DynamicCache


def hf_filled_cache(attention, c_kv: torch.Tensor, k_rope: torch.Tensor):
    """A transformers ``DynamicCache`` for ``attention`` (a ``DeepseekV3Attention``) holding the latents
    c_kv (1, L, d_c) and RoPE keys k_rope (1, L, d_h^R) exactly as its prefill would have cached them: the
    layer calls ``cache.update(kv_nope, k_rot, layer_idx)`` with the normed latent and the rotated key
    viewed as single-head 4-D tensors, so its layer holds keys (1, 1, L, d_c) and values (1, 1, L, d_h^R).
    Filling it directly skips a prefill that would cost far more than the decode step being measured."""
    from transformers.cache_utils import DynamicCache

    check_type("c_kv", c_kv, torch.Tensor)
    check_type("k_rope", k_rope, torch.Tensor)
    config = attention.config
    if (c_kv.ndim != 3 or k_rope.ndim != 3 or c_kv.shape[:2] != k_rope.shape[:2]
            or c_kv.shape[-1] != config.kv_lora_rank or k_rope.shape[-1] != config.qk_rope_head_dim):
        raise ValueError(f"c_kv {tuple(c_kv.shape)} and k_rope {tuple(k_rope.shape)} must be (batch, L, "
                         f"{config.kv_lora_rank}) and (batch, L, {config.qk_rope_head_dim})")
    cache = DynamicCache(config=config)
    cache.update(c_kv[:, None], k_rope[:, None], attention.layer_idx)
    return cache


def bench_hf_mla(shape: AttentionShape, context: int, device: torch.device, dtype: torch.dtype, repeats: int,
                 warmup: int = DEFAULT_WARMUP, before: Callable[[str], None] | None = None) -> dict:
    """Hugging Face ``DeepseekV3Attention`` decode against :class:`MultiHeadLatentAttention` naive and absorbed
    decode with the same weights and the same cached latents, interleaved. Both caches are filled directly
    with the same ``context`` random latents and RoPE keys (:func:`hf_filled_cache`, a :class:`LayerCache`);
    cos/sin are computed outside the timed region (Hugging Face computes them once per model, not per
    layer). Hugging Face's DynamicCache appends by ``torch.cat``, part of its step as it is in use."""
    check_context(context)
    attention, rotary, _ = hf_attention(shape, context + 1, device, dtype)
    naive = from_transformers(attention).eval().use("naive")
    absorbed = from_transformers(attention).eval().use("absorbed")
    with torch.inference_mode():
        c_kv = torch.randn(1, context, shape.kv_lora_rank, device=device, dtype=dtype)
        k_rope = torch.randn(1, context, shape.qk_rope_head_dim, device=device, dtype=dtype)
        theirs = hf_filled_cache(attention, c_kv, k_rope)
        cache = LayerCache(seq_dim=1, capacity=context + 1)
        cache.update(c_kv=c_kv, k_rope=k_rope)
        del c_kv, k_rope
        layer = theirs.layers[attention.layer_idx]
        saved_hf = (layer.keys, layer.values)
        x_new = torch.randn(1, 1, shape.d_model, device=device, dtype=dtype)
        cos, sin = rotary(x_new, torch.tensor([[context]], device=device))

        def reset_hf() -> None:
            layer.keys, layer.values = saved_hf

        def reset_ours() -> None:
            cache.crop(context)

        calls = {"hf": lambda: attention_forward(attention, x_new, (cos, sin), None, theirs)[0],
                 "attnlab_naive": lambda: naive(x_new, cache).output,
                 "attnlab_absorbed": lambda: absorbed(x_new, cache).output}
        resets = {"hf": reset_hf, "attnlab_naive": reset_ours, "attnlab_absorbed": reset_ours}
        timings = time_interleaved(calls, device, repeats, warmup, resets, before)
        outputs = {}
        for name, fn in calls.items():
            resets[name]()
            outputs[name] = fn().float()
        reset_hf()
        reset_ours()
    return {"context": context,
            **_peer_stats(timings, [("hf", "attnlab_absorbed"), ("hf", "attnlab_naive")]),
            "max_abs_diff": (outputs["hf"] - outputs["attnlab_absorbed"]).abs().max().item(),
            "max_abs_diff_naive": (outputs["hf"] - outputs["attnlab_naive"]).abs().max().item()}


def roofline_entry(scheme: str, shape: AttentionShape, context: int, dtype: torch.dtype, seconds: float,
                   machine: Mapping[str, float], newer: NewerSettings | None = None) -> dict:
    """Formula FLOPs and bytes of one decode step (bytes read + the token appended), intensity, bound, and
    what the measured time achieved, against the machine's roofline (``machine["roofline_bandwidth"]``,
    ``machine["roofline_flops"]``: read bandwidth and decode matmul ceiling) and its copy bandwidth. A newer
    scheme's counts are :func:`newer_step_costs` (with ``newer``; its "bytes_appended" is what the step writes
    into its cache: Gated DeltaNet's whole state); its entry carries "group": "newer", the others "course"."""
    if check_bench_scheme(scheme) in SCHEMES:
        flops = decode_flops(scheme, shape, context)
        bytes_read = decode_bytes_read(scheme, shape, context, dtype)
        appended = cache_append_bytes(scheme, shape, dtype)
    else:
        counts = newer_step_costs(scheme, shape, context, dtype, newer)
        flops, bytes_read, appended = counts["flops"], counts["bytes_read"], counts["bytes_appended"]
    n_bytes = bytes_read + appended
    intensity = flops / n_bytes
    bandwidth, peak = machine["roofline_bandwidth"], machine["roofline_flops"]
    achieved_bw = n_bytes / seconds
    achieved_flops = flops / seconds
    attainable = attainable_flops(intensity, bandwidth, peak)
    return {"scheme": scheme, "context": context, "group": GROUPS[scheme], "flops": flops, "bytes": n_bytes,
            "bytes_read": bytes_read,
            "bytes_appended": appended, "intensity": intensity, "bound": roofline_bound(intensity, peak / bandwidth),
            "achieved_bandwidth": achieved_bw, "bandwidth_fraction": achieved_bw / bandwidth,
            "copy_bandwidth_fraction": achieved_bw / machine["copy_bandwidth"], "achieved_flops": achieved_flops,
            "flops_fraction": achieved_flops / peak, "attainable_flops": attainable,
            "roofline_fraction": achieved_flops / attainable}


def measure_targets(report: Mapping) -> list[dict]:
    """:data:`TARGETS` against a report (the dict :func:`run_benchmark` returns), at its largest context:
    one dict per target, its fields plus "context", "measured" (None where the run lacks the peer) and
    "met" (measured >= goal; None when not measured), and "detail" (the numbers behind it)."""
    context = max(report["contexts"])
    timing = {r["scheme"]: r for r in report["results"] if r["context"] == context}
    roof = {r["scheme"]: r for r in report["roofline"] if r["context"] == context}
    machine = report["machine"]
    hf = next((r for r in report["peers"].get("hf_deepseek_v3", []) if r["context"] == context), None)
    measured: dict[str, tuple[float | None, str]] = {}
    if "dsa" in timing and "mla_absorbed" in timing:
        dsa, mla = timing["dsa"]["time_s"], timing["mla_absorbed"]["time_s"]
        measured["dsa_speedup_over_mla_absorbed"] = (mla / dsa, f"{mla * 1e3:.3f} ms / {dsa * 1e3:.3f} ms")
    if "mha" in timing:
        rate = roof["mha"]["bytes_read"] / timing["mha"]["time_s"]
        measured["mha_copy_bandwidth_fraction"] = (
            rate / machine["copy_bandwidth"], f"{rate / 1e9:.2f} GB/s of {machine['copy_bandwidth'] / 1e9:.2f} "
            f"(read bandwidth {machine['read_bandwidth'] / 1e9:.2f}: {rate / machine['read_bandwidth']:.0%})")
    if "mla_absorbed" in roof:
        r = roof["mla_absorbed"]
        measured["mla_absorbed_roofline_fraction"] = (
            r["roofline_fraction"], f"{r['achieved_flops'] / 1e9:.1f} of {r['attainable_flops'] / 1e9:.1f} GFLOP/s "
            f"({r['intensity']:.1f} FLOP/B, {r['bound']}-bound)")
    if hf is not None:
        measured["hf_slowdown_over_mla_absorbed"] = (
            hf["ratio_hf_over_attnlab_absorbed"], f"{hf['hf_s'] * 1e3:.2f} ms / {hf['attnlab_absorbed_s'] * 1e3:.2f} "
            f"ms (naive {hf['attnlab_naive_s'] * 1e3:.2f} ms: {hf['ratio_hf_over_attnlab_naive']:.2f}x)")
    out = []
    for target in TARGETS:
        value, detail = measured.get(target["key"], (None, "not measured in this run"))
        out.append({**target, "context": context, "measured": value,
                    "met": None if value is None else value >= target["goal"], "detail": detail})
    return out


def run_benchmark(device: torch.device | str = "cpu", dtype: torch.dtype | str = "float32",
                  contexts: Sequence[int] | str = DEFAULT_CONTEXTS, repeats: int = DEFAULT_REPEATS,
                  shape: AttentionShape = DEFAULT_SHAPE, copy_bytes: int | None = None, gemm_n: int | None = None,
                  hf_peer: bool = True, progress: bool = False, on_table: Callable[[str], None] | None = None,
                  warmup: int = DEFAULT_WARMUP, hf_repeats: int | None = None,
                  decode_tokens: int | None = None, newer: NewerSettings | None = None) -> dict:
    """Every scheme at every context, the peers, the roofline and the targets; returns the JSON-ready dict.

    The newer schemes (:data:`NEWER_SCHEMES`, with ``newer``, None: :func:`newer_settings` of the shape) are
    timed in the same rounds as :data:`SCHEMES`; their rows in "results" and "roofline" carry "group": "newer"
    (the others "course"), the report lists them under "newer_schemes" and their settings under
    "newer_settings" ("schemes" stays the six of :data:`SCHEMES`).

    ``repeats`` timed rounds after ``warmup`` untimed ones at each context (every scheme once per round,
    :func:`time_interleaved`); the Hugging Face peer runs ``hf_repeats`` rounds (None: min(repeats,
    :data:`DEFAULT_HF_REPEATS`)). copy_bytes sizes the copy and read probes, gemm_n the square GEMM,
    decode_tokens the decode-shaped matmul's columns (None: 128 MiB, 1024 and 384 on CPU; 1 GiB, 8192 and
    32768 on CUDA: :data:`DECODE_MATMUL_TOKENS`). Every context must exceed the DSA top-k, so the sparse path
    really selects.
    ``progress`` shows a bar (on stderr) over every timed call; ``on_table`` receives each table of the
    report as text as soon as its numbers are measured (the command line prints them), the same text
    :func:`format_report` gives at the end, the goal-vs-measured targets and the run's cost last."""
    started = time.perf_counter()
    device, dtype = parse_device(device), parse_dtype(dtype)
    contexts = parse_contexts(contexts)
    check_positive_int("repeats", repeats)
    check_non_negative_int("warmup", warmup)
    hf_repeats = min(repeats, DEFAULT_HF_REPEATS) if hf_repeats is None else check_positive_int("hf_repeats",
                                                                                               hf_repeats)
    check_type("shape", shape, AttentionShape, "an AttentionShape (attnlab.bench.BenchShape(...))")
    if min(contexts) <= shape.index_topk:
        raise ValueError(f"every context must exceed index_topk={shape.index_topk} (DSA must select), "
                         f"got contexts={contexts}")
    cuda = device.type == "cuda"
    copy_bytes = (2**30 if cuda else 2**27) if copy_bytes is None else check_positive_int("copy_bytes", copy_bytes)
    gemm_n = (8192 if cuda else 1024) if gemm_n is None else check_positive_int("gemm_n", gemm_n)
    decode_tokens = (DECODE_MATMUL_TOKENS[device.type] if decode_tokens is None
                     else check_positive_int("decode_tokens", decode_tokens))
    check_bool("hf_peer", hf_peer)
    check_bool("progress", progress)
    if on_table is not None and not callable(on_table):
        raise ArgumentTypeError(f"on_table must be None or callable (e.g. print), got {type(on_table).__name__}")
    show = on_table or (lambda text: None)
    newer = newer_settings(shape) if newer is None else check_type("newer", newer, NewerSettings)
    report = _run(device, dtype, contexts, repeats, warmup, hf_repeats, shape, copy_bytes, gemm_n, decode_tokens,
                  hf_peer, progress, show, newer)
    report["targets"] = measure_targets(report)
    show(format_targets_table(report["targets"]))
    report["run"] = {"wall_s": time.perf_counter() - started, "sections_s": report.pop("sections_s"),
                     "process_wall_s": process_wall_seconds(),
                     "peak_rss_bytes": peak_rss_bytes(), "peak_rss_source": "getrusage(RUSAGE_SELF).ru_maxrss",
                     "minor_page_faults": minor_page_faults()}
    show(format_run(report["run"]))
    return report


def _run(device, dtype, contexts, repeats, warmup, hf_repeats, shape, copy_bytes, gemm_n, decode_tokens, hf_peer,
         progress, show, newer) -> dict:
    rounds, hf_rounds = warmup + repeats, warmup + hf_repeats
    steps = 2 * len(PROBES) + len(DSA_PARTS) * rounds + 2 * len(LAYOUT_SCHEMES) * rounds + len(contexts) * rounds * (
        len(SCHEMES) + len(NEWER_SCHEMES) + 3 * len(DENSE_SCHEMES)) + (len(contexts) * hf_rounds * 3 if hf_peer else 0)
    bar = tqdm(total=steps, desc="benchmark", unit="call", disable=not progress, file=sys.stderr, leave=False)

    def step(what: str) -> None:
        bar.set_postfix_str(what)
        bar.update()

    sections, clock = {}, time.perf_counter()

    def lap(name: str) -> None:  # seconds each part of the run took
        nonlocal clock
        now = time.perf_counter()
        sections[name], clock = now - clock, now

    torch.manual_seed(0)
    probe_repeats = max(repeats, 5)
    rows, width, tokens = decode_matmul_shape(shape, decode_tokens)

    def probes(when: str) -> dict[str, float]:  # one pass of the machine's four probes
        step(f"copy bandwidth ({when})")
        rates = {"copy_bandwidth": measure_copy_bandwidth(device, dtype, copy_bytes, probe_repeats)}
        step(f"read bandwidth ({when})")
        rates["read_bandwidth"] = measure_read_bandwidth(device, dtype, copy_bytes, probe_repeats)
        step(f"matmul rate ({when})")
        rates["matmul_rate"] = measure_matmul_rate(device, dtype, gemm_n, 3 * probe_repeats)  # short calls: more
        step(f"decode-shaped matmul ({when})")
        rates["decode_matmul_rate"] = measure_decode_matmul_rate(device, dtype, rows, width, tokens,
                                                                 3 * probe_repeats)
        return rates

    first = probes("before the decode rounds")
    header = {"device": device_info(device), "dtype": str(dtype).removeprefix("torch."),
              "torch_version": torch.__version__,
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "shape": shape_arguments(shape), "repeats": repeats, "warmup": warmup,
              "allocator": allocator_info(), "fused_kernel": fused_kernel_info()}
    lap("probes")
    show(format_header(header))
    results = []
    for context in contexts:
        release_free_memory()  # the last context's leftovers do not add to this one's peak
        entries = bench_context(shape, context, device, dtype, repeats, warmup, SCHEMES + NEWER_SCHEMES,
                                before=lambda name, c=context: step(f"{name} at {c:,} tokens"), newer=newer)
        mha = next(r for r in entries if r["scheme"] == "mha")
        for r in entries:
            r["time_vs_mha"] = r["time_s"] / mha["time_s"]
            r["cache_vs_mha"] = r["cache_bytes_measured"] / mha["cache_bytes_measured"]
        results += entries
        show(format_decode_table(entries))
    largest = max(contexts)
    dsa_parts = bench_dsa_parts(shape, largest, device, dtype, repeats, warmup, copy_bytes,
                                before=lambda name: step(f"DSA's parts at {largest:,} tokens"))
    layouts = bench_projection_layouts(shape, device, dtype, repeats, warmup, copy_bytes,
                                       before=lambda name: step(f"projection layouts: {name}"))
    lap("decode")
    machine = machine_record(first, probes("after the decode rounds"), copy_bytes, gemm_n, [rows, width, tokens])
    roofline = [roofline_entry(r["scheme"], shape, r["context"], dtype, r["time_s"], machine, newer) for r in results]
    lap("probes_again")
    show(format_roofline_table(machine, roofline))
    show(format_dsa_parts(dsa_parts))
    show(format_projection_layouts(layouts))
    sdpa = []
    for context in contexts:
        for scheme in DENSE_SCHEMES:
            sdpa.append(bench_sdpa(scheme, shape, context, device, dtype, repeats, warmup,
                                   before=lambda name, s=scheme, c=context: step(f"SDPA peer: {s} at {c:,} tokens")))
    lap("sdpa_peer")
    show(format_sdpa_table(sdpa))
    hf = []
    for context in contexts if hf_peer else ():
        release_free_memory()
        hf.append(bench_hf_mla(shape, context, device, dtype, hf_repeats, warmup,
                               before=lambda name, c=context: step(f"Hugging Face peer at {c:,} tokens")))
    lap("hf_peer")
    if hf:
        show(format_hf_table(hf))
    bar.close()
    return {
        "device": header["device"],
        "dtype": header["dtype"],
        "torch_version": torch.__version__,
        "date": header["date"],
        "batch": 1,
        "repeats": repeats,
        "warmup": warmup,
        "hf_repeats": hf_repeats if hf_peer else None,
        "timing": ("interleaved: each round runs every scheme's step once, in an order rotating from round to "
                   "round; warmup rounds dropped; times_s in round order; spread = (max - min) / median of the "
                   "middle half; faults = minor page faults per timed call"),
        "contexts": list(contexts),
        "shape": shape_arguments(shape),
        "schemes": list(SCHEMES),
        "newer_schemes": list(NEWER_SCHEMES),
        "newer_settings": dataclasses.asdict(newer),
        "machine": machine,
        "allocator": header["allocator"],
        "fused_kernel": header["fused_kernel"],
        "results": results,
        "roofline": roofline,
        "dsa_parts": dsa_parts,
        "projection_layouts": layouts,
        "peers": {"sdpa": sdpa, "hf_deepseek_v3": hf},
        "sections_s": sections,
        "notes": ("T = context + 1 keys per decode step; formulas in attnlab.bench's docstring count each byte "
                  "once; bytes = bytes read + the token appended to the cache (LayerCache writes it into "
                  "preallocated storage, so no step copies the cache)."),
    }


# ----------------------------------------------------------------------------------------------------
# output


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Plain-text table, columns right-aligned to their widest cell."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_header(report: dict) -> str:
    """The machine, the dtype, the layer's shape and the timing plan: the report's first lines."""
    dev = report["device"]
    extra = ", ".join(str(dev[k]) for k in ("cpu_capability",) if k in dev)
    caches = ", ".join(f"{k} {v}" for k, v in dev.get("cpu_caches", {}).items())
    cpu = f" [{', '.join(part for part in (extra, caches) if part)}]" if extra or caches else ""
    timing = (f"\ntiming: {report['repeats']} interleaved rounds after {report['warmup']} warm-up rounds per context"
              if "warmup" in report else "")
    if "allocator" in report:
        a = report["allocator"]
        pages = "transparent huge pages" if a["huge_pages"] else "4 KiB pages"
        timing += (f"; memory: {pages} ({HUGE_PAGES_VARIABLE}={a[HUGE_PAGES_VARIABLE]}, kernel THP "
                   f"{a['transparent_hugepage']})")
    if "fused_kernel" in report:
        k = report["fused_kernel"]
        timing += ("\nDSA's index scores on a CPU: " + (f"fused kernel ({k['target']}; {k['reason']})"
                                                        if k["available"] else f"matmuls ({k['reason']})"))
    return (f"device {dev['type']} ({dev['name']}, {dev['cpu_count']} CPUs{cpu}), {dev.get('torch_threads', '?')} "
            f"torch threads, dtype {report['dtype']}, torch {report['torch_version']}, {report['date']}\n"
            f"shape {report['shape']}{timing}\n")


def _by_group(rows: Sequence[dict]) -> tuple[list[dict], list[dict]]:
    """Rows of the course's schemes and rows of the newer ones ("group"; rows written before it: by scheme)."""
    course = [r for r in rows if r.get("group", GROUPS.get(r["scheme"], "course")) == "course"]
    return course, [r for r in rows if r not in course]


#: The heading of the newer schemes' rows in the printed tables.
NEWER_HEADING = "Newer schemes (chapters 17-20), timed in the same rounds"


def format_decode_table(results: Sequence[dict]) -> str:
    """The decode-step table: time, its spread and page faults, and the measured cache bytes of each scheme
    (one row per scheme and context); the newer schemes' rows, if any, in a table of their own below."""
    def rows(entries: Sequence[dict]) -> list[list]:
        return [[r["scheme"], r["context"], f"{r['time_s'] * 1e3:.3f}", f"{r['time_min_s'] * 1e3:.3f}",
                 f"{r['spread']:.1%}", f"{r['faults_per_call']:.0f}", r["cache_bytes_measured"],
                 r["cache_bytes_formula"], f"{r['time_vs_mha']:.2f}", f"{r['cache_vs_mha']:.4f}"] for r in entries]

    headers = ["scheme", "context", "median ms", "min ms", "spread", "faults/call", "cache B (measured)",
               "cache B (formula)", "time/MHA", "cache/MHA"]
    course, newer = _by_group(results)
    out = ["Decode step (one layer, batch 1; median and min of the interleaved rounds)", format_table(headers,
                                                                                                     rows(course))]
    if newer:
        out += [NEWER_HEADING, format_table(headers, rows(newer))]
    return "\n".join([*out, ""])


def format_roofline_table(machine: dict, roofline: Sequence[dict]) -> str:
    """Each scheme on the roofline of the measured read bandwidth and decode matmul ceiling."""
    m = machine
    rows, width, tokens = m["decode_matmul_shape"]

    def table(entries: Sequence[dict]) -> str:
        return format_table(["scheme", "context", "MFLOP", "MB moved", "append B", "FLOP/B", "bound", "GB/s",
                             "of read BW", "of copy BW", "of bound"],
                            [[r["scheme"], r["context"], f"{r['flops'] / 1e6:.2f}", f"{r['bytes'] / 1e6:.3f}",
                              r["bytes_appended"], f"{r['intensity']:.2f}", r["bound"],
                              f"{r['achieved_bandwidth'] / 1e9:.2f}", f"{r['bandwidth_fraction']:.2f}",
                              f"{r['copy_bandwidth_fraction']:.2f}", f"{r['roofline_fraction']:.2f}"] for r in entries])

    course, newer = _by_group(roofline)
    return "\n".join([
        f"Roofline: read bandwidth {m['read_bandwidth'] / 1e9:.2f} GB/s (x.sum()), decode matmul "
        f"({rows} x {width}) @ ({width} x {tokens}) {m['decode_matmul_rate'] / 1e9:.1f} GFLOP/s, balance "
        f"{m['roofline_balance']:.1f} FLOP/byte\n          (copy bandwidth {m['copy_bandwidth'] / 1e9:.2f} GB/s, "
        f"{m['gemm_n']}^2 GEMM {m['matmul_rate'] / 1e9:.1f} GFLOP/s, their balance "
        f"{m['balance_flops_per_byte']:.1f} FLOP/byte)",
        table(course), *([NEWER_HEADING, table(newer)] if newer else []), ""])


def dsa_rest_seconds(parts: Mapping) -> float:
    """What :func:`bench_dsa_parts`' cold step spends outside the parts it times alone (index scores, top-k,
    projections): RoPE, the norms, the cache append, the gathers, the sparse attention and W^UKV's per-head
    products, many small operations."""
    return parts["step_time_s"] - sum(parts[f"{name}_time_s"] for name in DSA_ALONE)


def format_dsa_parts(parts: dict) -> str:
    """DSA's step at the largest context beside its parts timed alone, and the step warm
    (:func:`bench_dsa_parts`)."""
    step, scores, topk, proj, matmul, warm = (parts[f"{name}_time_s"] for name in DSA_PARTS)
    rest = dsa_rest_seconds(parts)

    def rates(prefix: str) -> str:
        return (f"{parts[f'{prefix}_flop_rate'] / 1e9:.1f} GFLOP/s, {parts[f'{prefix}_bandwidth'] / 1e9:.1f} GB/s "
                "of keys")

    rows = [["whole step", f"{step * 1e3:.3f}", "100%", ""],
            [f"index scores ({parts['index_scores_path']})", f"{scores * 1e3:.3f}", f"{scores / step:.0%}",
             rates("index_scores")],
            ["top-k", f"{topk * 1e3:.3f}", f"{topk / step:.0%}", ""],
            ["projections", f"{proj * 1e3:.3f}", f"{proj / step:.0%}",
             f"{parts['projections_bandwidth'] / 1e9:.1f} GB/s of weights"],
            ["the rest", f"{rest * 1e3:.3f}", f"{rest / step:.0%}", "RoPE, norms, append, gathers, sparse attention"],
            ["index scores by matmuls", f"{matmul * 1e3:.3f}", f"{matmul / step:.0%}", rates("index_scores_matmul")],
            ["whole step, warm", f"{warm * 1e3:.3f}", f"{warm / step:.0%}", "right after another step"]]
    return "\n".join([f"DSA's decode step at L = {parts['context']:,} tokens, each part timed alone from cold caches",
                      format_table(["part", "ms", "of the step", "rate"], rows), ""])


def format_projection_layouts(layouts: Sequence[dict]) -> str:
    """Each course scheme's projections for one token, row-major against column-major
    (:func:`bench_projection_layouts`)."""
    rows = [[r["scheme"], f"{r['weight_bytes'] / 2**20:.1f}", f"{r['rows_time_s'] * 1e3:.3f}",
             f"{r['columns_time_s'] * 1e3:.3f}", f"{r['ratio_rows_over_columns']:.2f}",
             f"{r['rows_bandwidth'] / 1e9:.1f} -> {r['columns_bandwidth'] / 1e9:.1f}"] for r in layouts]
    return "\n".join(["Projections of one token, W row-major (nn.Linear) vs column-major (the benchmark's layers), "
                      "each call from cold caches",
                      format_table(["scheme", "weights MiB", "rows ms", "columns ms", "rows / columns", "GB/s"], rows),
                      ""])


def format_sdpa_table(sdpa: Sequence[dict]) -> str:
    """The attention core against torch's scaled_dot_product_attention."""
    rows = [[r["scheme"], r["context"], f"{r['grouped_attention_s'] * 1e3:.3f}", f"{r['sdpa_s'] * 1e3:.3f}",
             f"{r['ratio_grouped_attention_over_sdpa']:.2f}", f"{r['ratio_grouped_attention_over_sdpa_min']:.2f}",
             f"{r['max_abs_diff']:.1e}", f"{r['v_t_s'] * 1e3:.3f}", f"{r['ratio_grouped_attention_over_v_t']:.2f}"]
            for r in sdpa]
    title = ("Attention core: attnlab grouped_attention vs torch scaled_dot_product_attention(enable_gqa=True), "
             "and with V stored transposed (V^T)")
    return "\n".join([title,
                      format_table(["scheme", "context", "grouped ms", "sdpa ms", "grouped/sdpa", "(min/min)",
                                    "max|diff|", "V^T ms", "grouped/V^T"], rows), ""])


def format_hf_table(hf: Sequence[dict]) -> str:
    """Hugging Face's DeepseekV3Attention against the library's naive and absorbed MLA."""
    rows = [[r["context"], f"{r['hf_s'] * 1e3:.3f}", f"{r['attnlab_naive_s'] * 1e3:.3f}",
             f"{r['attnlab_absorbed_s'] * 1e3:.3f}", f"{r['ratio_hf_over_attnlab_naive']:.2f}",
             f"{r['ratio_hf_over_attnlab_absorbed']:.2f}", f"{r['ratio_hf_over_attnlab_absorbed_min']:.2f}",
             f"{r['hf_faults_per_call']:.0f}", f"{max(r['max_abs_diff'], r['max_abs_diff_naive']):.1e}"] for r in hf]
    return "\n".join(["MLA decode: transformers DeepseekV3Attention vs attnlab naive and absorbed (same weights, "
                      "same cache)",
                      format_table(["context", "HF ms", "naive ms", "absorbed ms", "HF/naive", "HF/absorbed",
                                    "(min/min)", "HF faults/call", "max|diff|"], rows), ""])


def _format_goal(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    return f"{value:.0%}" if unit == "%" else f"{value:.2f}x"


def format_targets_table(targets: Sequence[dict]) -> str:
    """The goals against what the run measured (:func:`measure_targets`), one row per target."""
    rows = [[t["target"], f">= {_format_goal(t['goal'], t['unit'])}", _format_goal(t["measured"], t["unit"]),
             {True: "yes", False: "NO", None: "-"}[t["met"]], t["detail"]] for t in targets]
    context = targets[0]["context"] if targets else "?"
    return "\n".join([f"Targets at L = {context:,} tokens: goal vs measured",
                      format_table(["target", "goal", "measured", "met", "from"], rows), ""])


def format_run(run: dict) -> str:
    """The run's own cost: wall time (of the benchmark, and of the whole process) and peak memory."""
    process = "" if run.get("process_wall_s") is None else f", {run['process_wall_s']:.1f} s since the process began"
    parts = ", ".join(f"{name.replace('_', ' ')} {seconds:.1f} s"
                      for name, seconds in run.get("sections_s", {}).items())
    return (f"Run: {run['wall_s']:.1f} s wall{process}" + (f" ({parts})" if parts else "") +
            f"; peak memory {run['peak_rss_bytes'] / 2**30:.2f} GiB resident ({run['peak_rss_source']})")


def format_report(report: dict) -> str:
    """The result dict of :func:`run_benchmark` as plain-text tables (the sections, in the order measured)."""
    out = [format_header(report), *(format_decode_table([r for r in report["results"] if r["context"] == c])
                                    for c in report["contexts"]),
           format_roofline_table(report["machine"], report["roofline"])]
    if "dsa_parts" in report:
        out.append(format_dsa_parts(report["dsa_parts"]))
    if "projection_layouts" in report:
        out.append(format_projection_layouts(report["projection_layouts"]))
    out.append(format_sdpa_table(report["peers"]["sdpa"]))
    if report["peers"]["hf_deepseek_v3"]:
        out.append(format_hf_table(report["peers"]["hf_deepseek_v3"]))
    if "targets" in report:
        out.append(format_targets_table(report["targets"]))
    if "run" in report:
        out.append(format_run(report["run"]))
    return "\n".join(out)


def _print_now(text: str) -> None:
    tqdm.write(text, file=sys.stdout)  # above the progress bar, which tqdm redraws below it
    sys.stdout.flush()


def main(argv: Sequence[str] | None = None) -> dict:
    """Command line: run the benchmark, print the tables, write JSON with --out; returns the result dict."""
    parser = argparse.ArgumentParser(prog="python -m attnlab.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--dtype", default="float32", help="float32 or bfloat16")
    parser.add_argument("--contexts", default=None, help="comma-separated context lengths (default 1024,...,32768)")
    parser.add_argument("--repeats", type=int, default=None,
                        help=f"timed rounds per context (median; default {DEFAULT_REPEATS})")
    parser.add_argument("--warmup", type=int, default=DEFAULT_WARMUP, help="untimed rounds before them")
    parser.add_argument("--out", default=None, help="write the results as JSON to this path")
    parser.add_argument("--quick", action="store_true", help="tiny shape and contexts, for tests")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (default 1: one decode stream on one core, what the "
                             "bandwidth probes measure and the targets assume); recorded in the JSON")
    parser.add_argument("--huge-pages", action="store_true",
                        help=f"set {HUGE_PAGES_VARIABLE}=1: large temporaries fault in as 2 MiB pages, not 4 KiB")
    args = parser.parse_args(argv)
    if args.huge_pages:
        request_huge_pages()  # before the first CPU tensor, or PyTorch never reads it
    threads = torch.get_num_threads()
    torch.set_num_threads(check_positive_int("threads", args.threads))
    try:
        report = _main(args)
    finally:
        torch.set_num_threads(threads)  # a caller in the same process (a test, a notebook) keeps its own
    return report


def _main(args: argparse.Namespace) -> dict:
    """:func:`main` after the threads are set."""
    options = {"warmup": args.warmup, "progress": True, "on_table": _print_now}
    if args.quick:
        contexts = QUICK_CONTEXTS if args.contexts is None else args.contexts
        repeats = 2 if args.repeats is None else args.repeats
        report = run_benchmark(args.device, args.dtype, contexts, repeats, QUICK_SHAPE, copy_bytes=2**23, gemm_n=256,
                               **options)
    else:
        contexts = DEFAULT_CONTEXTS if args.contexts is None else args.contexts
        repeats = DEFAULT_REPEATS if args.repeats is None else args.repeats
        report = run_benchmark(args.device, args.dtype, contexts, repeats, **options)
    if args.out is not None:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=1)
            f.write("\n")
    return report


if __name__ == "__main__":
    steady_heap()  # the command line's own process only: a caller of main() keeps its malloc settings
    main()
