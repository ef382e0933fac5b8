"""Decode benchmark: step time, cache bytes and a roofline for MHA, GQA, MQA, MLA (naive, absorbed) and DSA.

Run ``python -m attnlab.bench [--device cpu|cuda] [--dtype float32|bfloat16] [--contexts 1024,2048,4096,8192]
[--repeats N] [--out results.json] [--quick] [--threads N]``.

One attention layer, batch 1, one new token decoded against a cache of L tokens (so it attends to
T = L + 1 keys). The default shape (:data:`DEFAULT_SHAPE`) is a moderate layer:

    d = 1024, n_h = 16 query heads of d_h = 64             MHA: n_kv = 16, GQA: n_kv = 4, MQA: n_kv = 1
    MLA: d_c = 256 latent + d_h^R = 32 RoPE key, d_h = d_v = 64, no query latent (q = W^Q h)
    DSA: that MLA layer + a lightning indexer of H^I = 4 heads x d^I = 64, top-k k = 256 (gather path)

``--quick`` uses :data:`QUICK_SHAPE` (d = 128, 4 heads of 32, ...) with tiny contexts, for tests.

For each scheme the cache is filled directly with random tensors of the right shape (no token-by-token
prefill), its measured size (:attr:`LayerCache.nbytes`) is checked against :func:`cache_bytes`, and one
decode step is timed (warm-up, then the median of the repeats; the cache is restored to L tokens before
every call, outside the timed region; CUDA is synchronized around every call).

The counts come from :mod:`attnlab.costs` (2 FLOPs per multiply-add, b = bytes per element, T = L + 1,
k' = min(k, T); derivations in each function's docstring):

    weights W        :func:`~attnlab.costs.weight_elements` (W^Q, W^K, W^V, W^O; MLA's [W^DKV; W^KR], [W^UK; W^UV],
                     W^O, the latent's RMSNorm; DSA adds the indexer's W^IQ, W^IK, LayerNorm, W^IW)
    FLOPs per step   :func:`~attnlab.costs.decode_flops` = :func:`~attnlab.costs.projection_flops` (2 W, less what
                     MLA naive applies per cached token) + :func:`~attnlab.costs.decode_attention_flops`
                     (dense 4 n_h d_h T, MLA absorbed 2 n_h (2 d_c + d_h^R) T, MLA naive 2 n_h (d_h + d_v) d_c T
                     + 2 n_h (d_h + d_h^R + d_v) T, DSA 2 (H^I d^I + H^I) T + 2 n_h (2 d_c + d_h^R) k')
    bytes per step   :func:`~attnlab.costs.decode_bytes_read`: b (W + the cache the step reads; MLA naive also
                     writes and reads the expanded K and V, DSA reads every index key and k' latents)
    cache bytes      :func:`~attnlab.costs.cache_bytes`: b L x (dense 2 n_kv d_h, MLA d_c + d_h^R, DSA + d^I)

RoPE, norms, softmax and top-k sorting are left out of the FLOPs. The formulas count an ideal cache that is
read in place, as :class:`~attnlab.kv_cache.LayerCache` does: it writes the new token into preallocated
storage (room for L + 1 tokens here) and hands back views, so no step copies the cache. (Its teaching
twin :class:`~attnlab.kv_cache.ConcatCache` appends with ``torch.cat``, reading and writing the whole cache
once more per step.) Achieved bandwidths below are "useful bytes / time".

Roofline: the script measures the machine's copy bandwidth (``dst.copy_(src)``, 2 x nbytes moved / time)
and matmul rate (an n x n GEMM in the chosen dtype, 2 n^3 / time); the balance point is rate / bandwidth
(FLOP/byte). A scheme whose arithmetic intensity (FLOPs / bytes) is below it is memory-bound, and its
achieved bandwidth (bytes / median step time) is reported as a fraction of the copy bandwidth.

Peers, in the same run: PyTorch's ``scaled_dot_product_attention(..., enable_gqa=True)`` against
:func:`attnlab.gqa.grouped_attention` for the dense schemes' attention core, and Hugging Face's
``DeepseekV3Attention`` (random weights, a DynamicCache filled by a chunked prefill of the same context,
K/V re-expanded from the latent every step) against this library's absorbed MLA decode with identical
weights (:func:`attnlab.mla.from_transformers`) and the very same cached latents.
"""

from __future__ import annotations

import argparse
import datetime
import inspect
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from tqdm import tqdm

from attnlab._validate import ArgumentTypeError, check_bool, check_positive_int, check_type
from attnlab.attention import AttentionLayer
from attnlab.costs import AttentionShape, cache_bytes, decode_bytes_read, decode_flops
from attnlab.devices import dtype_bytes
from attnlab.gqa import grouped_attention
from attnlab.huggingface import attention_forward
from attnlab.kv_cache import LayerCache
from attnlab.mla import from_transformers
from attnlab.schemes import BENCH_SCHEMES, get_scheme

#: The schemes benchmarked, in the table's order (:data:`attnlab.schemes.BENCH_SCHEMES`).
SCHEMES: tuple[str, ...] = BENCH_SCHEMES
#: The dense ones (GroupedQueryAttention with n_kv = n_heads / n_groups / 1), in the same order.
DENSE_SCHEMES: tuple[str, ...] = tuple(key for key in SCHEMES if get_scheme(key).dense)
#: dtypes the benchmark accepts, by name.
BENCH_DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16}
#: device types the benchmark accepts.
BENCH_DEVICES: tuple[str, ...] = ("cpu", "cuda")
DEFAULT_CONTEXTS: tuple[int, ...] = (1024, 2048, 4096, 8192)
QUICK_CONTEXTS: tuple[int, ...] = (64, 128)


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
    record (:mod:`attnlab.schemes`); latent layers rotate RoPE in halves, like Hugging Face's peer."""
    record = get_scheme(check_scheme(scheme), "scheme")
    options = {} if record.dense else {"rope_interleaved": False}
    return record.build_layer(shape, **options).to(device=device, dtype=dtype).eval()


def filled_cache(scheme: str, shape: AttentionShape, context: int, device: torch.device,
                 dtype: torch.dtype) -> LayerCache:
    """A :class:`LayerCache` holding ``context`` tokens of random entries in the layout ``scheme`` uses, one
    tensor per name and width of its record's cache rule: dense k, v (1, n_kv, L, d_h); latent c_kv
    (1, L, d_c), k_rope (1, L, d_h^R), and DSA's index_key (1, L, d^I)."""
    record = get_scheme(check_scheme(scheme), "scheme")
    check_context(context)
    widths = record.cache(shape)  # {cached tensor: numbers per token}
    if record.dense:  # (batch, n_kv, tokens, width / n_kv): one slice per K/V head
        g = record.kv_heads(shape)
        sizes = {name: (1, g, context, width // g) for name, width in widths.items()}
    else:  # (batch, tokens, width)
        sizes = {name: (1, context, width) for name, width in widths.items()}
    cache = LayerCache(seq_dim=2 if record.dense else 1, capacity=context + 1)  # no growth when timed
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
# timing


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels on CUDA (a no-op on CPU), so perf_counter brackets the work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_call(fn: Callable[[], object], device: torch.device, reset: Callable[[], None] | None = None) -> float:
    """Seconds one call of ``fn`` takes on ``device`` (synchronized before and after); ``reset`` runs
    first, outside the timed region."""
    if reset is not None:
        reset()
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def time_calls(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int = 2,
               reset: Callable[[], None] | None = None) -> list[float]:
    """Seconds per call of ``fn`` for ``repeats`` calls after ``warmup`` untimed ones; ``reset`` runs
    before every call, outside the timed region."""
    check_positive_int("repeats", repeats)
    times = [timed_call(fn, device, reset) for _ in range(warmup + repeats)]
    return times[warmup:]


def time_pair(fn_a: Callable[[], object], fn_b: Callable[[], object], device: torch.device, repeats: int,
              warmup: int = 2, reset_a: Callable[[], None] | None = None,
              reset_b: Callable[[], None] | None = None) -> tuple[list[float], list[float]]:
    """Seconds per call of ``fn_a`` and ``fn_b``, timed alternately (a, b, then b, a, ...) so that a busy spell
    on a shared machine hits both alike; ``reset_*`` run before each call, outside the timed region."""
    check_positive_int("repeats", repeats)
    times: dict[str, list[float]] = {"a": [], "b": []}
    calls = {"a": (fn_a, reset_a), "b": (fn_b, reset_b)}
    for i in range(warmup + repeats):
        for name in ("a", "b") if i % 2 == 0 else ("b", "a"):
            fn, reset = calls[name]
            seconds = timed_call(fn, device, reset)
            if i >= warmup:
                times[name].append(seconds)
    return times["a"], times["b"]


def measure_copy_bandwidth(device: torch.device, dtype: torch.dtype, n_bytes: int, repeats: int) -> float:
    """Bytes per second of ``dst.copy_(src)`` on a tensor of about n_bytes: 2 x nbytes (read + write) / median time."""
    n = max(1, n_bytes // dtype_bytes(dtype))
    src = torch.randn(n, device=device, dtype=dtype)
    dst = torch.empty_like(src)
    seconds = statistics.median(time_calls(lambda: dst.copy_(src), device, repeats))
    return 2 * src.numel() * src.element_size() / seconds


def measure_matmul_rate(device: torch.device, dtype: torch.dtype, n: int, repeats: int) -> float:
    """FLOP/s of an n x n by n x n matmul in ``dtype``: 2 n^3 / median time."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    seconds = statistics.median(time_calls(lambda: a @ b, device, repeats))
    return 2 * n**3 / seconds


def device_info(device: torch.device) -> dict:
    """Device name (the GPU's on CUDA, else the CPU's), CPU count, threads and platform."""
    info = {"type": device.type, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "platform": platform.platform()}
    if device.type == "cuda":
        info["name"] = torch.cuda.get_device_name(device)
    else:
        info["name"] = platform.processor() or _cpu_model_name() or platform.machine()
    return info


def _cpu_model_name() -> str:
    """The CPU's "model name" from /proc/cpuinfo (Linux), or "" where there is none."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


# ----------------------------------------------------------------------------------------------------
# the benchmark


def bench_scheme(scheme: str, shape: AttentionShape, context: int, device: torch.device, dtype: torch.dtype,
                 repeats: int) -> dict:
    """Time one decode step of ``scheme`` against a cache of ``context`` tokens; check the cache size.

    Returns the median and all times (seconds) and the measured and formula cache bytes (which must agree)."""
    layer = build_layer(scheme, shape, device, dtype)
    cache = filled_cache(scheme, shape, context, device, dtype)
    measured, expected = cache.nbytes, cache_bytes(scheme, shape, context, dtype)
    if measured != expected:
        raise AssertionError(f"{scheme}: LayerCache.nbytes={measured} but the formula gives {expected}")
    x = torch.randn(1, 1, shape.d_model, device=device, dtype=dtype)

    def reset() -> None:
        cache.crop(context)  # back to `context` tokens; the next step overwrites the decoded one

    with torch.inference_mode():
        times = time_calls(decode_call(scheme, layer, x, cache), device, repeats, reset=reset)
    return {"scheme": scheme, "context": context, "time_s": statistics.median(times), "time_min_s": min(times),
            "times_s": times,
            "cache_bytes_measured": measured, "cache_bytes_formula": expected}


def bench_sdpa(scheme: str, shape: AttentionShape, context: int, device: torch.device, dtype: torch.dtype,
               repeats: int) -> dict:
    """The dense attention core of one decode step: q (1, n_h, 1, d_h) against k, v (1, n_kv, T, d_h),
    :func:`grouped_attention` against ``F.scaled_dot_product_attention(..., enable_gqa=True)``."""
    t = check_context(context) + 1
    g = n_kv_heads(scheme, shape)
    q = torch.randn(1, shape.n_heads, 1, shape.head_dim, device=device, dtype=dtype)
    k = torch.randn(1, g, t, shape.head_dim, device=device, dtype=dtype)
    v = torch.randn(1, g, t, shape.head_dim, device=device, dtype=dtype)
    with torch.inference_mode():
        ours, theirs = time_pair(lambda: grouped_attention(q, k, v, causal=True),
                                 lambda: F.scaled_dot_product_attention(q, k, v, enable_gqa=True), device, repeats)
        diff = (grouped_attention(q, k, v)[0].float() - F.scaled_dot_product_attention(
            q, k, v, enable_gqa=True).float()).abs().max().item()
    return {"scheme": scheme, "context": context, **_pair_stats("grouped_attention", ours, "sdpa", theirs),
            "max_abs_diff": diff}


def _pair_stats(name_a: str, times_a: list[float], name_b: str, times_b: list[float]) -> dict:
    """Medians, minima and the ratios a / b of both (the minimum is the least disturbed on a shared machine)."""
    med_a, med_b = statistics.median(times_a), statistics.median(times_b)
    return {f"{name_a}_s": med_a, f"{name_b}_s": med_b, f"{name_a}_min_s": min(times_a),
            f"{name_b}_min_s": min(times_b), f"ratio_{name_a}_over_{name_b}": med_a / med_b,
            f"ratio_{name_a}_over_{name_b}_min": min(times_a) / min(times_b)}


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


def bench_hf_mla(shape: AttentionShape, context: int, device: torch.device, dtype: torch.dtype, repeats: int,
                 chunk: int = 512) -> dict:
    """Hugging Face ``DeepseekV3Attention`` decode (DynamicCache filled by a prefill of ``context`` random
    tokens in chunks of ``chunk``) against :class:`MultiHeadLatentAttention` absorbed decode with the same
    weights and the same cached latents. cos/sin are computed outside the timed region (Hugging Face
    computes them once per model, not per layer)."""
    check_context(context)
    attention, rotary, dynamic_cache = hf_attention(shape, context + 1, device, dtype)
    ours = from_transformers(attention).eval()
    theirs = dynamic_cache(config=attention.config)
    with torch.inference_mode():
        x = torch.randn(1, context, shape.d_model, device=device, dtype=dtype)
        for start in range(0, context, chunk):
            end = min(start + chunk, context)
            cos, sin = rotary(x, torch.arange(start, end, device=device)[None])
            mask = torch.full((end - start, end), -math.inf, device=device, dtype=dtype).triu(start + 1)
            attention_forward(attention, x[:, start:end], (cos, sin), mask[None, None], theirs)
        layer = theirs.layers[0]
        saved_hf = (layer.keys, layer.values)  # (1, 1, L, d_c) normed latents, (1, 1, L, d_h^R) rotated keys
        cache = LayerCache(seq_dim=1, capacity=context + 1)
        cache.update(c_kv=layer.keys[:, 0].contiguous(), k_rope=layer.values[:, 0].contiguous())
        ours.use("absorbed")
        x_new = torch.randn(1, 1, shape.d_model, device=device, dtype=dtype)
        cos, sin = rotary(x_new, torch.tensor([[context]], device=device))

        def reset_hf() -> None:
            layer.keys, layer.values = saved_hf

        def reset_ours() -> None:
            cache.crop(context)

        def step_hf() -> torch.Tensor:
            return attention_forward(attention, x_new, (cos, sin), None, theirs)[0]

        def step_ours() -> torch.Tensor:
            return ours(x_new, cache).output

        hf_times, our_times = time_pair(step_hf, step_ours, device, repeats, reset_a=reset_hf, reset_b=reset_ours)
        reset_hf()
        reset_ours()
        diff = (step_hf().float() - step_ours().float()).abs().max().item()
    return {"context": context, **_pair_stats("hf", hf_times, "attnlab_absorbed", our_times), "max_abs_diff": diff}


def roofline_entry(scheme: str, shape: AttentionShape, context: int, dtype: torch.dtype, seconds: float,
                   bandwidth: float, matmul_rate: float) -> dict:
    """Formula FLOPs and bytes of one decode step, intensity, bound, and what the measured time achieved."""
    flops = decode_flops(scheme, shape, context)
    n_bytes = decode_bytes_read(scheme, shape, context, dtype)
    intensity = flops / n_bytes
    balance = matmul_rate / bandwidth
    achieved_bw = n_bytes / seconds
    achieved_flops = flops / seconds
    return {"scheme": scheme, "context": context, "flops": flops, "bytes": n_bytes, "intensity": intensity,
            "bound": roofline_bound(intensity, balance), "achieved_bandwidth": achieved_bw,
            "bandwidth_fraction": achieved_bw / bandwidth, "achieved_flops": achieved_flops,
            "flops_fraction": achieved_flops / matmul_rate,
            "attainable_flops": attainable_flops(intensity, bandwidth, matmul_rate)}


def run_benchmark(device: torch.device | str = "cpu", dtype: torch.dtype | str = "float32",
                  contexts: Sequence[int] | str = DEFAULT_CONTEXTS, repeats: int = 7,
                  shape: AttentionShape = DEFAULT_SHAPE, copy_bytes: int | None = None, gemm_n: int | None = None,
                  hf_peer: bool = True, progress: bool = False,
                  on_table: Callable[[str], None] | None = None) -> dict:
    """Every scheme at every context, the peers and the roofline; returns the JSON-ready result dict.

    copy_bytes / gemm_n size the bandwidth and matmul probes (None: 128 MiB and 1024 on CPU, 1 GiB and 8192
    on CUDA). Every context must exceed the DSA top-k, so the sparse path really selects. ``progress`` shows
    a bar (on stderr) over every measurement; ``on_table`` receives each table of the report as text as
    soon as its numbers are measured (the command line prints them), the same text
    :func:`format_report` gives at the end."""
    device, dtype = parse_device(device), parse_dtype(dtype)
    contexts = parse_contexts(contexts)
    check_positive_int("repeats", repeats)
    check_type("shape", shape, AttentionShape, "an AttentionShape (attnlab.bench.BenchShape(...))")
    if min(contexts) <= shape.index_topk:
        raise ValueError(f"every context must exceed index_topk={shape.index_topk} (DSA must select), "
                         f"got contexts={contexts}")
    cuda = device.type == "cuda"
    copy_bytes = (2**30 if cuda else 2**27) if copy_bytes is None else check_positive_int("copy_bytes", copy_bytes)
    gemm_n = (8192 if cuda else 1024) if gemm_n is None else check_positive_int("gemm_n", gemm_n)
    check_bool("progress", progress)
    if on_table is not None and not callable(on_table):
        raise ArgumentTypeError(f"on_table must be None or callable (e.g. print), got {type(on_table).__name__}")
    show = on_table or (lambda text: None)
    steps = 2 + len(contexts) * (len(SCHEMES) + len(DENSE_SCHEMES) + (1 if hf_peer else 0))
    bar = tqdm(total=steps, desc="benchmark", unit="run", disable=not progress, file=sys.stderr, leave=False)

    def advance(what: str) -> None:
        bar.set_postfix_str(what)
        bar.update()

    torch.manual_seed(0)
    bar.set_postfix_str("copy bandwidth")
    bandwidth = measure_copy_bandwidth(device, dtype, copy_bytes, repeats)
    advance("matmul rate")
    matmul_rate = measure_matmul_rate(device, dtype, gemm_n, repeats)
    advance("decode steps")
    machine = {"copy_bandwidth": bandwidth, "copy_bytes": copy_bytes, "matmul_rate": matmul_rate,
               "gemm_n": gemm_n, "balance_flops_per_byte": matmul_rate / bandwidth}
    header = {"device": device_info(device), "dtype": str(dtype).removeprefix("torch."),
              "torch_version": torch.__version__,
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "shape": shape_arguments(shape), "machine": machine}
    show(format_header(header))
    results, roofline = [], []
    for context in contexts:
        for scheme in SCHEMES:
            bar.set_postfix_str(f"{scheme} at {context:,} tokens")
            entry = bench_scheme(scheme, shape, context, device, dtype, repeats)
            results.append(entry)
            roofline.append(roofline_entry(scheme, shape, context, dtype, entry["time_s"], bandwidth, matmul_rate))
            advance(f"{scheme} at {context:,} tokens")
        mha = next(r for r in results if r["scheme"] == "mha" and r["context"] == context)
        for r in results[-len(SCHEMES):]:
            r["time_vs_mha"] = r["time_s"] / mha["time_s"]
            r["cache_vs_mha"] = r["cache_bytes_measured"] / mha["cache_bytes_measured"]
        show(format_decode_table(results[-len(SCHEMES):]))
    show(format_roofline_table(machine, roofline))
    sdpa = []
    for context in contexts:
        for scheme in DENSE_SCHEMES:
            bar.set_postfix_str(f"SDPA peer: {scheme} at {context:,} tokens")
            sdpa.append(bench_sdpa(scheme, shape, context, device, dtype, repeats))
            advance(f"SDPA peer: {scheme} at {context:,} tokens")
    show(format_sdpa_table(sdpa))
    hf = []
    for context in contexts if hf_peer else ():
        bar.set_postfix_str(f"Hugging Face peer at {context:,} tokens")
        hf.append(bench_hf_mla(shape, context, device, dtype, repeats))
        advance(f"Hugging Face peer at {context:,} tokens")
    if hf:
        show(format_hf_table(hf))
    bar.close()
    return {
        "device": device_info(device),
        "dtype": str(dtype).removeprefix("torch."),
        "torch_version": torch.__version__,
        "date": header["date"],
        "batch": 1,
        "repeats": repeats,
        "contexts": list(contexts),
        "shape": shape_arguments(shape),
        "schemes": list(SCHEMES),
        "machine": machine,
        "results": results,
        "roofline": roofline,
        "peers": {"sdpa": sdpa, "hf_deepseek_v3": hf},
        "notes": ("T = context + 1 keys per decode step; formulas in attnlab.bench's docstring count each byte "
                  "once; LayerCache writes each new token into preallocated storage, so no step copies the cache."),
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
    """The machine, the dtype and the layer's shape: the report's first lines."""
    dev = report["device"]
    return (f"device {dev['type']} ({dev['name']}, {dev['cpu_count']} CPUs), dtype {report['dtype']}, "
            f"torch {report['torch_version']}, {report['date']}\nshape {report['shape']}\n")


def format_decode_table(results: Sequence[dict]) -> str:
    """The decode-step table: time and measured cache bytes of each scheme (one row per scheme and context)."""
    rows = [[r["scheme"], r["context"], f"{r['time_s'] * 1e3:.3f}", f"{r['time_min_s'] * 1e3:.3f}",
             r["cache_bytes_measured"], r["cache_bytes_formula"], f"{r['time_vs_mha']:.2f}", f"{r['cache_vs_mha']:.4f}"]
            for r in results]
    return "\n".join(["Decode step (one layer, batch 1; median and min of the repeats)",
                      format_table(["scheme", "context", "median ms", "min ms", "cache B (measured)",
                                    "cache B (formula)", "time/MHA", "cache/MHA"], rows), ""])


def format_roofline_table(machine: dict, roofline: Sequence[dict]) -> str:
    """Each scheme on the roofline of the measured copy bandwidth and matmul rate."""
    m = machine
    rows = [[r["scheme"], r["context"], f"{r['flops'] / 1e6:.2f}", f"{r['bytes'] / 1e6:.3f}", f"{r['intensity']:.2f}",
             r["bound"], f"{r['achieved_bandwidth'] / 1e9:.2f}", f"{r['bandwidth_fraction']:.2f}",
             f"{r['flops_fraction']:.3f}"] for r in roofline]
    return "\n".join([f"Roofline: copy bandwidth {m['copy_bandwidth'] / 1e9:.2f} GB/s, matmul "
                      f"{m['matmul_rate'] / 1e9:.1f} GFLOP/s, balance {m['balance_flops_per_byte']:.1f} FLOP/byte",
                      format_table(["scheme", "context", "MFLOP", "MB", "FLOP/B", "bound", "GB/s", "of copy BW",
                                    "of matmul"], rows), ""])


def format_sdpa_table(sdpa: Sequence[dict]) -> str:
    """The attention core against torch's scaled_dot_product_attention."""
    rows = [[r["scheme"], r["context"], f"{r['grouped_attention_s'] * 1e3:.3f}", f"{r['sdpa_s'] * 1e3:.3f}",
             f"{r['ratio_grouped_attention_over_sdpa']:.2f}", f"{r['ratio_grouped_attention_over_sdpa_min']:.2f}",
             f"{r['max_abs_diff']:.1e}"] for r in sdpa]
    title = "Attention core: attnlab grouped_attention vs torch scaled_dot_product_attention(enable_gqa=True)"
    return "\n".join([title,
                      format_table(["scheme", "context", "grouped ms", "sdpa ms", "grouped/sdpa", "(min/min)",
                                    "max|diff|"], rows), ""])


def format_hf_table(hf: Sequence[dict]) -> str:
    """Hugging Face's DeepseekV3Attention against the library's absorbed MLA."""
    rows = [[r["context"], f"{r['hf_s'] * 1e3:.3f}", f"{r['attnlab_absorbed_s'] * 1e3:.3f}",
             f"{r['ratio_hf_over_attnlab_absorbed']:.2f}", f"{r['ratio_hf_over_attnlab_absorbed_min']:.2f}",
             f"{r['max_abs_diff']:.1e}"] for r in hf]
    return "\n".join(["MLA decode: transformers DeepseekV3Attention vs attnlab absorbed (same weights, same cache)",
                      format_table(["context", "HF ms", "attnlab ms", "HF/attnlab", "(min/min)", "max|diff|"], rows)])


def format_report(report: dict) -> str:
    """The result dict of :func:`run_benchmark` as plain-text tables (the sections, in the order measured)."""
    out = [format_header(report), format_decode_table(report["results"]),
           format_roofline_table(report["machine"], report["roofline"]), format_sdpa_table(report["peers"]["sdpa"])]
    if report["peers"]["hf_deepseek_v3"]:
        out.append(format_hf_table(report["peers"]["hf_deepseek_v3"]))
    return "\n".join(out)


def _print_now(text: str) -> None:
    tqdm.write(text, file=sys.stdout)  # above the progress bar, which tqdm redraws below it
    sys.stdout.flush()


def main(argv: Sequence[str] | None = None) -> dict:
    """Command line: run the benchmark, print the tables, write JSON with --out; returns the result dict."""
    parser = argparse.ArgumentParser(prog="python -m attnlab.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--dtype", default="float32", help="float32 or bfloat16")
    parser.add_argument("--contexts", default=None, help="comma-separated context lengths")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per measurement (median)")
    parser.add_argument("--out", default=None, help="write the results as JSON to this path")
    parser.add_argument("--quick", action="store_true", help="tiny shape and contexts, for tests")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's own choice); recorded in the JSON")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(check_positive_int("threads", args.threads))
    if args.quick:
        contexts = QUICK_CONTEXTS if args.contexts is None else args.contexts
        repeats = 2 if args.repeats is None else args.repeats
        report = run_benchmark(args.device, args.dtype, contexts, repeats, QUICK_SHAPE, copy_bytes=2**23, gemm_n=256,
                               progress=True, on_table=_print_now)
    else:
        contexts = DEFAULT_CONTEXTS if args.contexts is None else args.contexts
        repeats = 7 if args.repeats is None else args.repeats
        report = run_benchmark(args.device, args.dtype, contexts, repeats, progress=True, on_table=_print_now)
    if args.out is not None:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=1)
            f.write("\n")
    return report


if __name__ == "__main__":
    main()
