"""What attention costs: every count the course uses, written once, as pure functions of one shape.

Each function takes a scheme (a key of :mod:`attnlab.schemes`: "mha", "mqa", "gqa", "mla", "dsa", or one of
MLA's decode forms "mla_naive", "mla_absorbed"; plain "mla" decodes absorbed, as DeepSeek's code does by
default) and an :class:`AttentionShape`. Symbols (DeepSeek-V2 paper, arXiv 2405.04434, §2; DeepSeek-V3.2
tech report for the indexer):

    d       d_model            n_h   n_heads          d_h   head_dim (MLA: the no-RoPE key width)
    n_g     n_kv_heads (GQA)   d_v   v_head_dim       d_c   kv_lora_rank (latent)     d_h^R  qk_rope_head_dim
    d'_c    q_lora_rank (0: no query latent)          H^I   index_n_heads    d^I  index_head_dim    k  index_topk
    l       n_layers           b     bytes per element of the dtype

Conventions, the same in every function:

- 2 FLOPs per multiply-add (MAC); softmax, RoPE, norms and the top-k sort are left out of the FLOPs.
- Decoding appends one token to a cache of ``context`` tokens; it attends to T = context + 1 keys (its own
  key included); DSA's attention reads k' = min(k, T) of them.
- Cache sizes (``*_per_token``) count all l layers unless ``per_layer=True``; the work of a step (FLOPs,
  bytes read) counts one layer.

What each scheme caches is its record's rule (:attr:`attnlab.schemes.Scheme.cache`); the arithmetic of the
three kinds, dense (MHA, MQA, GQA), latent (MLA, its decode forms) and sparse (DSA), is written below.
:mod:`attnlab.sizing` applies these to published models, :mod:`attnlab.bench` to the benchmark's layer,
:mod:`attnlab.dsa`'s cost comparison and the widgets to theirs.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from attnlab._validate import (
    ArgumentTypeError,
    check_bool,
    check_choice,
    check_divisible,
    check_even,
    check_non_negative_int,
    check_positive_int,
    check_sized_dtype,
    check_tiling,
    check_type,
)
from attnlab.cache_formats import (
    DEEPSEEK_V4_FP4_INDEX_KEY,
    DEEPSEEK_V4_FP8_ENTRY,
    DEEPSEEK_V32_FP8_INDEX_KEY,
    DEEPSEEK_V32_FP8_MLA,
    ByteLayout,
    uniform_layout,
)
from attnlab.devices import dtype_bytes
from attnlab.schemes import Scheme, get_scheme

#: Names a dtype may be given by; the values are what torch stores.
DTYPES_BY_NAME: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
    "float8": torch.float8_e4m3fn,
}

#: Quantities :func:`dsa_crossover_context` can compare.
COST_METRICS: tuple[str, ...] = ("decode_flops", "decode_bytes", "prefill_flops")


# ----------------------------------------------------------------------------------------------------
# the shape


@dataclass(frozen=True, kw_only=True)
class AttentionShape:
    """The widths of one attention layer, and the number of layers, in the names DeepSeek's configs use.

    One shape serves every scheme: a dense scheme reads d_model, n_heads, head_dim, v_head_dim and (GQA)
    n_kv_heads; MLA reads the latent widths kv_lora_rank (d_c), qk_rope_head_dim (d_h^R) and q_lora_rank
    (d'_c, 0 when queries come straight from h_t); DSA adds the indexer's index_n_heads (H^I),
    index_head_dim (d^I) and index_topk (k). n_kv_heads None means n_heads, v_head_dim None means head_dim;
    0 marks a width the shape does not have. :meth:`attnlab.sizing.ModelSpec.attention_shape` gives a
    published model's shape, :func:`attnlab.bench.BenchShape` the benchmark's layer.
    """

    d_model: int
    n_heads: int
    head_dim: int
    n_kv_heads: int | None = None
    v_head_dim: int | None = None
    kv_lora_rank: int = 0
    qk_rope_head_dim: int = 0
    q_lora_rank: int = 0
    index_n_heads: int = 0
    index_head_dim: int = 0
    index_topk: int = 0
    n_layers: int = 1

    def __post_init__(self) -> None:
        if self.n_kv_heads is None:
            object.__setattr__(self, "n_kv_heads", self.n_heads)
        if self.v_head_dim is None:
            object.__setattr__(self, "v_head_dim", self.head_dim)
        for name in ("d_model", "n_heads", "head_dim", "n_kv_heads", "v_head_dim", "n_layers"):
            check_positive_int(name, getattr(self, name))
        for name in ("kv_lora_rank", "qk_rope_head_dim", "q_lora_rank", "index_n_heads", "index_head_dim",
                     "index_topk"):
            check_non_negative_int(name, getattr(self, name))
        check_divisible("n_heads", self.n_heads, "n_kv_heads", self.n_kv_heads)
        check_even("qk_rope_head_dim", self.qk_rope_head_dim)

    @property
    def q_input_dim(self) -> int:
        """Width the queries (and the index queries) are projected from: d'_c with a query latent, else d."""
        return self.q_lora_rank or self.d_model


def as_shape(shape: object, name: str = "shape") -> AttentionShape:
    """``shape`` itself if it is an :class:`AttentionShape`, else its ``attention_shape()`` (a
    :class:`attnlab.sizing.ModelSpec` has one); anything else raises ArgumentTypeError naming ``name``."""
    if isinstance(shape, AttentionShape):
        return shape
    method = getattr(shape, "attention_shape", None)
    if callable(method):
        return method()
    raise ArgumentTypeError(f"{name} must be an AttentionShape or a ModelSpec, got {type(shape).__name__}")


def get_dtype(dtype: torch.dtype | str) -> torch.dtype:
    """Return a torch dtype for ``dtype`` (a ``torch.dtype`` or a name in :data:`DTYPES_BY_NAME`)."""
    if isinstance(dtype, torch.dtype):
        if dtype == torch.bool:
            raise ValueError("dtype=torch.bool cannot hold keys or values")
        return check_sized_dtype("dtype", dtype)
    if isinstance(dtype, str) and dtype in DTYPES_BY_NAME:
        return DTYPES_BY_NAME[dtype]
    error = ValueError if isinstance(dtype, str) else ArgumentTypeError
    raise error(f"dtype={dtype!r} must be a torch.dtype or one of {sorted(DTYPES_BY_NAME)}")


def _element_bytes(dtype: torch.dtype | str) -> int:
    return dtype_bytes(get_dtype(dtype))


def _fitting(scheme: object, shape: object) -> tuple[Scheme, AttentionShape]:
    """The record of ``scheme`` and the shape, after checking the shape has the widths the scheme needs."""
    record = get_scheme(scheme, "scheme")
    s = as_shape(shape)
    if not record.dense and s.kv_lora_rank == 0:
        raise ValueError(f"scheme={record.key!r} needs a latent: the shape has kv_lora_rank=0 (d_c)")
    if record.indexer:
        for name in ("index_n_heads", "index_head_dim", "index_topk"):
            if getattr(s, name) == 0:
                raise ValueError(f"scheme={record.key!r} needs a lightning indexer: the shape has {name}=0")
    return record, s


def _layers(s: AttentionShape, per_layer: bool) -> int:
    return 1 if check_bool("per_layer", per_layer) else s.n_layers


def _context(context: object) -> int:
    """T = context + 1: the keys a decoded token attends to."""
    return check_non_negative_int("context", context) + 1


# ----------------------------------------------------------------------------------------------------
# what is cached


def cache_widths(scheme: str, shape: AttentionShape) -> dict[str, int]:
    """Numbers each cached tensor holds per token and layer, by the names the layers use: MHA {"k": n_h d_h,
    "v": n_h d_v}, GQA n_g instead of n_h, MQA 1; MLA {"c_kv": d_c, "k_rope": d_h^R}; DSA adds {"index_key":
    d^I}. The scheme's own rule, :attr:`attnlab.schemes.Scheme.cache`."""
    record, s = _fitting(scheme, shape)
    return dict(record.cache(s))


def cache_elements_per_token(scheme: str, shape: AttentionShape, *, per_layer: bool = False) -> int:
    """Numbers one token adds to the cache (DeepSeek-V2 paper, Table 1), over all l layers or, with
    ``per_layer=True``, in one: MHA 2 n_h d_h, GQA 2 n_g d_h, MQA 2 d_h, MLA d_c + d_h^R (the latent c^KV_t of
    eq. 41 and the RoPE key k^R_t of eq. 43, both shared by all heads), DSA d_c + d_h^R + d^I (plus the
    indexer's key k^I_t). DeepSeek-V3: MHA 2 x 128 x 128 = 32,768, MLA 512 + 64 = 576 per layer.

    Over all layers only for a scheme whose every layer caches that (``Scheme.every_layer``): a windowed,
    shared-KV or hybrid stack is counted layer by layer by :func:`windowed_cache_bytes`,
    :func:`hybrid_cache_bytes` or :func:`attnlab.sizing.kv_cache_bytes`."""
    record, s = _fitting(scheme, shape)
    if not per_layer and not record.every_layer:
        raise ValueError(f"scheme={record.key!r}: its layers do not all cache {record.formula.split(' = ')[0]} per "
                         "token, so l times one layer would be wrong; pass per_layer=True for one layer that "
                         "caches, or count the stack layer by layer (costs.windowed_cache_bytes for windows and "
                         "sharing, costs.hybrid_cache_bytes for a hybrid, sizing.kv_cache_bytes for a model)")
    return sum(record.cache(s).values()) * _layers(s, per_layer)


def cache_bytes_per_token(scheme: str, shape: AttentionShape, dtype: torch.dtype | str = torch.bfloat16, *,
                          per_layer: bool = False) -> int:
    """Bytes one more token of context adds to the cache: :func:`cache_elements_per_token` x b. DeepSeek-V3 in
    bf16, 61 layers: MLA 576 x 61 x 2 = 70,272 B; the same shape with MHA 32,768 x 61 x 2 = 3,997,696 B."""
    return cache_elements_per_token(scheme, shape, per_layer=per_layer) * _element_bytes(dtype)


def cache_bytes(scheme: str, shape: AttentionShape, context: int, dtype: torch.dtype | str = torch.bfloat16, *,
                batch: int = 1, per_layer: bool = False) -> int:
    """Size of the cache holding ``batch`` sequences of ``context`` tokens:
    batch x context x :func:`cache_bytes_per_token`."""
    check_non_negative_int("context", context)
    check_positive_int("batch", batch)
    return batch * context * cache_bytes_per_token(scheme, shape, dtype, per_layer=per_layer)


def indexer_elements_per_token(shape: AttentionShape, *, per_layer: bool = False) -> int:
    """Numbers DeepSeek Sparse Attention's lightning indexer caches per token: one index key k^I_t of width d^I,
    shared by all H^I index heads, per layer (128 in DeepSeek-V3.2); 0 for a shape without an indexer."""
    s = as_shape(shape)
    return s.index_head_dim * _layers(s, per_layer)


def indexer_cache_bytes_per_token(shape: AttentionShape, *, per_layer: bool = False) -> int:
    """Bytes of the index keys as DeepSeek-V3.2 stores them (``inference/model.py``): d^I FP8 (e4m3) values and
    one fp32 scale per block of 128, d^I + 4 ceil(d^I / 128) per layer (132 for d^I = 128)."""
    s = as_shape(shape)
    if s.index_head_dim == 0:
        raise ValueError("shape has index_head_dim=0: it has no lightning indexer")
    return (s.index_head_dim + 4 * math.ceil(s.index_head_dim / 128)) * _layers(s, per_layer)


def expanded_kv_elements_per_token(shape: AttentionShape) -> int:
    """Numbers of the per-head keys and values MLA rebuilds from one cached latent (eqs. 42-45): n_h (d_h +
    d_h^R + d_v), each head's key [k^C; k^R] and value v^C. What a cache of expanded keys would hold per
    layer (DeepSeek's ``attn_impl="naive"``), and what MLA's naive decode writes per token and step."""
    s = as_shape(shape)
    return s.n_heads * (s.head_dim + s.qk_rope_head_dim + s.v_head_dim)


# ----------------------------------------------------------------------------------------------------
# work per attended token


def macs_per_cached_token_parts(scheme: str, shape: AttentionShape) -> dict[str, int]:
    """Multiply-adds one query token spends on each cached token it attends to, one layer, by step:

    - dense: "scores" n_h d_h (every query head dots its group's key), "weighted sum" n_h d_v. Sharing K/V
      heads saves memory, not arithmetic.
    - MLA naive (``mla_naive``): "re-expand K, V" n_h (d_h + d_v) d_c (k^C = W^UK c^KV, v^C = W^UV c^KV, eqs.
      42 and 45, for every cached token at every step), then "scores" n_h (d_h + d_h^R) and "weighted sum"
      n_h d_v on the expanded heads.
    - MLA absorbed (``mla``, ``mla_absorbed``; DSA on each selected token): W^UK folded into the query and W^UV
      applied after the sum (DeepSeek-V3 ``inference/model.py``, ``attn_impl="absorb"``), so each head
      "scores" the (d_c + d_h^R)-wide cached [c^KV; k^R] and mixes the d_c-wide latent, "weighted sum" n_h d_c.
    """
    record, s = _fitting(scheme, shape)
    h = s.n_heads
    if record.dense:
        return {"scores": h * s.head_dim, "weighted sum": h * s.v_head_dim}
    if record.mode == "naive":
        return {"re-expand K, V": h * (s.head_dim + s.v_head_dim) * s.kv_lora_rank,
                "scores": h * (s.head_dim + s.qk_rope_head_dim), "weighted sum": h * s.v_head_dim}
    return {"scores": h * (s.kv_lora_rank + s.qk_rope_head_dim), "weighted sum": h * s.kv_lora_rank}


def macs_per_cached_token(scheme: str, shape: AttentionShape, *, per_layer: bool = True) -> int:
    """Multiply-adds one query token spends on one cached token while decoding, the sum of
    :func:`macs_per_cached_token_parts`: dense 2 n_h d_h (with d_v = d_h), MLA absorbed n_h (2 d_c + d_h^R),
    MLA naive n_h (d_h + d_v) d_c + n_h (d_h + d_h^R + d_v). One layer, or all l with ``per_layer=False``.
    DeepSeek-V3: MHA 32,768, MLA absorbed 128 x (2 x 512 + 64) = 139,264."""
    _, s = _fitting(scheme, shape)
    return sum(macs_per_cached_token_parts(scheme, s).values()) * _layers(s, per_layer)


def indexer_macs_per_cached_token(shape: AttentionShape) -> int:
    """Multiply-adds of one index score I_{t,s} = sum_j w^I_{t,j} ReLU(q^I_{t,j} · k^I_s) (DeepSeek-V3.2 tech
    report, eq. 1): H^I dot products of width d^I, then H^I weighted terms, H^I d^I + H^I."""
    s = as_shape(shape)
    return s.index_n_heads * s.index_head_dim + s.index_n_heads


def indexer_projection_macs(shape: AttentionShape) -> int:
    """Multiply-adds of the indexer's projections for one token, once per query: the index queries
    W^IQ (from d'_c, or from d without a query latent: q_in H^I d^I), the index key W^IK (d d^I) and the head
    weights W^IW (d H^I)."""
    s = as_shape(shape)
    return s.q_input_dim * s.index_n_heads * s.index_head_dim + s.d_model * s.index_head_dim \
        + s.d_model * s.index_n_heads


# ----------------------------------------------------------------------------------------------------
# one decode step of one layer


def weight_elements(scheme: str, shape: AttentionShape) -> int:
    """Parameters of one layer:

        dense   d n_h d_h + d n_kv (d_h + d_v) + n_h d_v d               (W^Q, W^K, W^V, W^O)
        MLA     queries + d (d_c + d_h^R) + d_c n_h (d_h + d_v) + n_h d_v d + d_c
                ([W^DKV; W^KR], [W^UK; W^UV], W^O, the latent's RMSNorm), the queries being
                d n_h (d_h + d_h^R) without a query latent, else d d'_c + d'_c + d'_c n_h (d_h + d_h^R)
        DSA     MLA + q_in H^I d^I + d d^I + 2 d^I + d H^I             (W^IQ, W^IK, its LayerNorm, W^IW)
    """
    record, s = _fitting(scheme, shape)
    d, h, dh, dv = s.d_model, s.n_heads, s.head_dim, s.v_head_dim
    if record.dense:
        return d * h * dh + d * record.kv_heads(s) * (dh + dv) + h * dv * d
    dc, dr, dq = s.kv_lora_rank, s.qk_rope_head_dim, s.q_lora_rank
    queries = d * h * (dh + dr) if dq == 0 else d * dq + dq + dq * h * (dh + dr)
    mla = queries + d * (dc + dr) + dc * h * (dh + dv) + h * dv * d + dc
    if not record.indexer:
        return mla
    return mla + indexer_projection_macs(s) + 2 * s.index_head_dim


def projection_flops(scheme: str, shape: AttentionShape) -> int:
    """FLOPs of one decoded token that do not grow with the context: 2 x every weight applied once (norm
    weights excluded). MLA naive applies W^UK and W^UV to every cached token instead (counted in
    :func:`decode_attention_flops`); absorbed, they are applied once, to the query and to the output."""
    record, s = _fitting(scheme, shape)
    linear = weight_elements(record.key, s)
    if not record.dense:
        linear -= s.kv_lora_rank + s.q_lora_rank  # the latents' RMSNorms
    if record.indexer:
        linear -= 2 * s.index_head_dim  # the index key's LayerNorm
    if record.mode == "naive":
        linear -= s.kv_lora_rank * s.n_heads * (s.head_dim + s.v_head_dim)  # [W^UK; W^UV]
    return 2 * linear


def decode_attention_flops(scheme: str, shape: AttentionShape, context: int) -> int:
    """FLOPs of one decoded token that grow with the context (T = context + 1 keys, k' = min(k, T)):
    2 x :func:`macs_per_cached_token` x T, i.e. dense 4 n_h d_h T, MLA absorbed 2 n_h (2 d_c + d_h^R) T, MLA naive
    2 n_h (d_h + d_v) d_c T + 2 n_h (d_h + d_h^R + d_v) T; DSA scores every key with the indexer and attends
    to the k' it selects, 2 (H^I d^I + H^I) T + 2 n_h (2 d_c + d_h^R) k'. (For n_q queries against n_k keys
    of one head, :func:`attnlab.attention.attention_flops` counts the same core.)"""
    record, s = _fitting(scheme, shape)
    t = _context(context)
    if not record.indexer:
        return 2 * macs_per_cached_token(record.key, s) * t
    return 2 * indexer_macs_per_cached_token(s) * t + 2 * macs_per_cached_token(record.key, s) * min(s.index_topk, t)


def decode_flops(scheme: str, shape: AttentionShape, context: int) -> int:
    """FLOPs to decode one token against ``context`` cached tokens, one layer, batch 1:
    :func:`projection_flops` + :func:`decode_attention_flops`."""
    return projection_flops(scheme, shape) + decode_attention_flops(scheme, shape, context)


def decode_bytes_read(scheme: str, shape: AttentionShape, context: int, dtype: torch.dtype | str) -> int:
    """Bytes one decode step reads from memory (T = context + 1, k' = min(k, T)), each once, b bytes each:
    the layer's weights W (:func:`weight_elements`) and the cache it attends to:

        dense          b (W + 2 n_kv d_h T)
        MLA absorbed   b (W + (d_c + d_h^R) T)
        MLA naive      b (W + (d_c + d_h^R) T + 2 n_h (d_h + d_h^R + d_v) T)   (expanded K, V written and read)
        DSA            b (W + d^I T + (d_c + d_h^R) k')                    (every index key, k' latents)
    """
    record, s = _fitting(scheme, shape)
    t = _context(context)
    b = _element_bytes(dtype)
    w = weight_elements(record.key, s)
    if record.dense:
        return b * (w + cache_elements_per_token(record.key, s, per_layer=True) * t)
    latent = cache_elements_per_token("mla", s, per_layer=True)
    if record.indexer:
        return b * (w + s.index_head_dim * t + latent * min(s.index_topk, t))
    if record.mode == "naive":
        return b * (w + latent * t + 2 * expanded_kv_elements_per_token(s) * t)
    return b * (w + latent * t)


def cache_append_bytes(scheme: str, shape: AttentionShape, dtype: torch.dtype | str) -> int:
    """Bytes one decode step writes into the cache, one layer: the new token's entry in each cached tensor,
    b x :func:`cache_elements_per_token` (``per_layer=True``): dense b 2 n_kv d_h (its k and v), MLA
    b (d_c + d_h^R) (c^KV_t and k^R_t), DSA b (d_c + d_h^R + d^I) (and the index key k^I_t). A cache that
    is written in place (:class:`~attnlab.kv_cache.LayerCache`) moves only these bytes to append; one that
    concatenates (:class:`~attnlab.kv_cache.ConcatCache`, Hugging Face's DynamicCache) also reads and writes
    the whole cache once more. The same for every context; tiny next to the cache a step reads (DEFAULT
    bench layer, float32: MHA 8 KiB against 256 MiB read at 32K tokens)."""
    record, s = _fitting(scheme, shape)
    return cache_elements_per_token(record.key, s, per_layer=True) * _element_bytes(dtype)


def decode_bytes_moved(scheme: str, shape: AttentionShape, context: int, dtype: torch.dtype | str) -> int:
    """Bytes one decode step moves to or from memory, one layer: what it reads,
    :func:`decode_bytes_read` (weights and cache), plus the token it appends, :func:`cache_append_bytes`."""
    return decode_bytes_read(scheme, shape, context, dtype) + cache_append_bytes(scheme, shape, dtype)


def arithmetic_intensity(scheme: str, shape: AttentionShape, context: int, dtype: torch.dtype | str, *,
                         cache_append: bool = False) -> float:
    """FLOPs per byte read of one decode step: :func:`decode_flops` / :func:`decode_bytes_read`; with
    ``cache_append=True`` per byte moved, appended token included (:func:`decode_bytes_moved`, what
    :mod:`attnlab.bench` places on its roofline). Below the machine's balance point (peak FLOP/s /
    bandwidth) the step is memory-bound."""
    moved = decode_bytes_moved if check_bool("cache_append", cache_append) else decode_bytes_read
    return decode_flops(scheme, shape, context) / moved(scheme, shape, context, dtype)


def attention_intensity(scheme: str, shape: AttentionShape, dtype: torch.dtype | str = torch.bfloat16) -> float:
    """FLOPs per byte of cache the attention core reads while decoding, 2 x :func:`macs_per_cached_token` /
    (:func:`cache_bytes_per_token`, one layer): what :func:`arithmetic_intensity` tends to as the context
    grows and the weights' share vanishes. DeepSeek-V3 in bf16: MHA 1, GQA with 16 groups 8, MQA 128, MLA
    absorbed 2 x 139,264 / 1,152 = 241.8. Not defined for DSA, whose attention reads only k of the cached
    tokens (see :func:`dsa_layer_cost`)."""
    record, s = _fitting(scheme, shape)
    if record.indexer:
        raise ValueError(f"scheme={record.key!r} reads only its top-k tokens: use dsa_layer_cost")
    return 2 * macs_per_cached_token(record.key, s) / cache_bytes_per_token(record.key, s, dtype, per_layer=True)


# ----------------------------------------------------------------------------------------------------
# prefill


def selected_pairs(length: int, top_k: int) -> int:
    """sum_{t=1}^{L} min(k, t): query-key pairs a causal top-k prefill of L tokens scores (query t sees t
    tokens, itself included, and keeps k of them)."""
    check_non_negative_int("length", length)
    check_positive_int("top_k", top_k)
    if length <= top_k:
        return length * (length + 1) // 2
    return top_k * (top_k + 1) // 2 + (length - top_k) * top_k


def prefill_flops(scheme: str, shape: AttentionShape, length: int) -> int:
    """FLOPs of the attention core of a causal prefill of ``length`` tokens (L(L+1)/2 query-key pairs), one
    layer; projections left out. Per pair: dense 2 (n_h d_h + n_h d_v); MLA naive 2 n_h (d_h + d_h^R + d_v)
    (K and V are expanded once per token, a projection, not once per pair: DeepSeek's dense prefill); MLA
    absorbed 2 n_h (2 d_c + d_h^R). DSA: the indexer's projections L x 2 (q_in H^I d^I + d d^I + d H^I), its
    scores 2 (H^I d^I + H^I) per pair, and absorbed attention on :func:`selected_pairs` pairs."""
    record, s = _fitting(scheme, shape)
    check_non_negative_int("length", length)
    pairs = length * (length + 1) // 2
    if record.indexer:
        indexer = length * 2 * indexer_projection_macs(s) + 2 * indexer_macs_per_cached_token(s) * pairs
        return indexer + 2 * macs_per_cached_token(record.key, s) * selected_pairs(length, s.index_topk)
    parts = macs_per_cached_token_parts(record.key, s)
    parts.pop("re-expand K, V", None)  # once per token in a prefill, with the projections
    return 2 * sum(parts.values()) * pairs


# ----------------------------------------------------------------------------------------------------
# chapter 8: one decode step of MLA, three ways


#: The three ways to run MLA's decode step that chapter 8 compares, in display order, with their labels.
MLA_STRATEGIES: dict[str, str] = {
    "expanded": "cache per-head K, V",
    "naive": "cache latent, re-expand",
    "absorbed": "cache latent, absorb",
}


def mla_absorption_fold_macs(shape: AttentionShape) -> int:
    """Multiply-adds of MLA's absorption for one query token, once per step: W^UK_i^T folded into each head's
    query (n_h d_h d_c) and W^UV_i applied to each head's latent output (n_h d_v d_c), n_h d_c (d_h + d_v)."""
    _, s = _fitting("mla", shape)
    return s.n_heads * s.kv_lora_rank * (s.head_dim + s.v_head_dim)


def mla_decode_step_costs(shape: AttentionShape, seq_len: int, dtype: torch.dtype | str = torch.bfloat16) -> dict:
    """Multiply-adds (MACs) and bytes of one decode step of one MLA layer: one new query token attending to
    ``seq_len`` (t) cached tokens, n_h heads; the new token's own projections, the same in every strategy, are
    left out. From :func:`macs_per_cached_token_parts` and the cache widths:

    - "expanded": the cache holds every head's rotated key (d_h + d_h^R) and value (d_v), as DeepSeek's
      reference code does with ``attn_impl="naive"``; MACs n_h t (d_h + d_h^R + d_v).
    - "naive": the cache holds the latent and the RoPE key (d_c + d_h^R per token); every step rebuilds
      K^C and V of all t tokens, t n_h (d_h + d_v) d_c MACs, then attends, n_h t (d_h + d_h^R + d_v).
    - "absorbed": the same cache; fold W^UK_i into the query and W^UV_i after the weighted sum, once per
      step, n_h d_c (d_h + d_v) MACs, then attend in latent space: scores n_h t (d_c + d_h^R), weighted sum
      n_h t d_c.

    Returns {strategy: {"macs", "flops" (2 x MACs), "cache_bytes" (cache read), "extra_bytes" (K and V the
    naive strategy builds in memory, t n_h (d_h + d_v) x b; 0 otherwise), "parts" (MACs by step)}}."""
    _, s = _fitting("mla", shape)
    t = check_non_negative_int("seq_len", seq_len)
    b = _element_bytes(dtype)
    naive = {step: macs * t for step, macs in macs_per_cached_token_parts("mla_naive", s).items()}
    attend = {step: macs for step, macs in naive.items() if step != "re-expand K, V"}
    absorbed = {"fold W^UK, W^UV": mla_absorption_fold_macs(s),  # once per step
                **{step: macs * t for step, macs in macs_per_cached_token_parts("mla_absorbed", s).items()}}
    parts = {"expanded": attend, "naive": naive, "absorbed": absorbed}
    latent = cache_bytes_per_token("mla", s, dtype, per_layer=True)
    cache = {"expanded": t * expanded_kv_elements_per_token(s) * b, "naive": t * latent, "absorbed": t * latent}
    extra = {"expanded": 0, "naive": t * s.n_heads * (s.head_dim + s.v_head_dim) * b, "absorbed": 0}
    out = {}
    for strategy in MLA_STRATEGIES:
        macs = sum(parts[strategy].values())
        out[strategy] = {"macs": macs, "flops": 2 * macs, "cache_bytes": cache[strategy],
                         "extra_bytes": extra[strategy], "parts": parts[strategy]}
    return out


# ----------------------------------------------------------------------------------------------------
# chapter 10: DSA against dense MLA


def _dsa_shape(shape: object, top_k: object, q_lora_rank: object) -> AttentionShape:
    s = as_shape(shape, "spec")
    if s.kv_lora_rank == 0 or s.index_n_heads == 0 or s.index_head_dim == 0:
        raise ValueError(f"spec has no lightning indexer (index_n_heads={s.index_n_heads}, index_head_dim="
                         f"{s.index_head_dim}) or no MLA latent (kv_lora_rank={s.kv_lora_rank})")
    top_k = s.index_topk if top_k is None else check_positive_int("top_k", top_k)
    check_positive_int("top_k", top_k)
    q_lora_rank = s.q_lora_rank if q_lora_rank is None else check_positive_int("q_lora_rank", q_lora_rank)
    return dataclasses.replace(s, index_topk=top_k, q_lora_rank=q_lora_rank)


#: How a DSA layer runs a prefill in :func:`dsa_layer_cost`: "switch" (DeepSeek's service: whichever of the
#: two modes is cheaper for that length), "sparse" (always the indexer plus absorbed attention on the top-k),
#: "masked_mha" (always MLA's MHA mode on every pair, the top-k applied as a mask).
PREFILL_MODES: tuple[str, ...] = ("switch", "sparse", "masked_mha")


def dsa_layer_cost(spec: AttentionShape, context_len: int, top_k: int | None = None, *,
                   q_lora_rank: int | None = None, kv_bytes_per_token: int | None = None,
                   index_bytes_per_token: int | None = None, prefill_dense_mode: str = "naive",
                   prefill_mode: str = "switch", per_layer: bool = True) -> dict[str, int]:
    """FLOPs (2 per multiply-add) and bytes of dense MLA against DSA, one layer (``per_layer=False``: all l).

    ``spec``: an :class:`AttentionShape` or a :class:`~attnlab.sizing.ModelSpec` with an indexer (e.g.
    DeepSeek-V3.2); top_k None: its k; q_lora_rank None: its d'_c (d without a query latent). Per (query,
    cached token) pair, with the functions above:

        C_attn  = 2 n_h (2 d_c + d_h^R)       MLA absorbed ("MQA") mode, 2 x :func:`macs_per_cached_token`
        C_mha   = 2 n_h (d_h + d_h^R + d_v)   MLA naive ("MHA") mode on expanded heads, DeepSeek's dense prefill
        C_idx   = 2 H^I d^I + 2 H^I           2 x :func:`indexer_macs_per_cached_token`
        F_proj  = 2 (q_in H^I d^I + d d^I + d H^I)   2 x :func:`indexer_projection_macs`, once per query token

    Decoding one token with L = ``context_len`` tokens of context (the new one included):
        dense:  C_attn L                      DSA: F_proj + C_idx L + C_attn min(k, L)
        bytes:  B_kv L                        DSA: B_idx L + B_kv min(k, L)
    with B_kv the MLA cache per token and layer (:func:`cache_bytes_per_token` in bf16, 1152 for V3.2, unless
    ``kv_bytes_per_token``) and B_idx the indexer's (:func:`indexer_cache_bytes_per_token`, 132, unless
    ``index_bytes_per_token``). Prefilling L tokens (:func:`prefill_flops`):
        dense:  C_pre L(L+1)/2                DSA: L F_proj + C_idx L(L+1)/2 + C_attn sum_t min(k, t)
    with C_pre = C_mha (``prefill_dense_mode="naive"``, DeepSeek's dense prefill) or C_attn ("absorbed").
    "prefill_flops_indexer" and "prefill_flops_sparse" are the two parts of that sparse path, and
    "prefill_flops_sparse_path" their sum (:func:`prefill_flops` of "dsa").

    The mode switch. Per query-key pair the sparse path's absorbed attention (C_attn) costs more than the
    dense prefill's MHA mode (C_mha: 278,528 against 81,920 FLOPs for DeepSeek-V3.2), so for short prompts
    DeepSeek does not run it: "for short-sequence prefilling, we specially implement a masked MHA mode to
    simulate DSA" (DeepSeek-V3.2-Exp report, §3 Inference Costs; Appendix A: MHA mode for prefill). Its
    reference code does the same, ``MLA.forward``'s ``if mask is not None:  # MHA prefill`` branch in
    DeepSeek-V3.2-Exp ``inference/model.py``: scores of every pair in MHA mode plus the indexer's top-k as a
    mask. That mode costs the dense prefill plus the indexer where it decides something:
        masked MHA:  C_pre L(L+1)/2 + (L F_proj + C_idx L(L+1)/2 if L > k, else 2 d d^I L)
    (with L <= k every earlier token is selected, the mask is the causal one, and only the index keys later
    steps read are computed). ``prefill_mode``: "switch" (default) gives "prefill_flops_dsa" =
    min(sparse path, masked MHA), "sparse" the sparse path alone (this function's count before the switch),
    "masked_mha" the masked mode alone; "prefill_flops_masked_mha" is always the masked mode's count and
    "prefill_masked_mha" is 1 when the DSA side runs it, else 0.
    Both sides share MLA's own projections, MLP and so on, which are left out; so are softmax and top-k.
    """
    s = _dsa_shape(spec, top_k, q_lora_rank)
    L = check_positive_int("context_len", context_len)
    check_bool("per_layer", per_layer)
    if not isinstance(prefill_dense_mode, str) or prefill_dense_mode not in ("naive", "absorbed"):
        raise ValueError(f"prefill_dense_mode={prefill_dense_mode!r} must be 'naive' or 'absorbed'")
    check_choice("prefill_mode", prefill_mode, PREFILL_MODES)
    b_kv = (cache_bytes_per_token("mla", s, torch.bfloat16, per_layer=True) if kv_bytes_per_token is None
            else check_positive_int("kv_bytes_per_token", kv_bytes_per_token))
    b_idx = (indexer_cache_bytes_per_token(s, per_layer=True) if index_bytes_per_token is None
             else check_positive_int("index_bytes_per_token", index_bytes_per_token))
    c_attn = 2 * macs_per_cached_token("mla_absorbed", s)
    c_idx, f_proj = 2 * indexer_macs_per_cached_token(s), 2 * indexer_projection_macs(s)
    k = min(s.index_topk, L)
    pairs = L * (L + 1) // 2
    cost = {
        "decode_flops_dense": decode_attention_flops("mla_absorbed", s, L - 1),
        "decode_flops_indexer": f_proj + c_idx * L,
        "decode_flops_sparse": c_attn * k,
        "decode_bytes_dense": b_kv * L,
        "decode_bytes_indexer": b_idx * L,
        "decode_bytes_sparse": b_kv * k,
        "prefill_flops_dense": prefill_flops(f"mla_{prefill_dense_mode}", s, L),
        "prefill_flops_indexer": L * f_proj + c_idx * pairs,
        "prefill_flops_sparse": c_attn * selected_pairs(L, s.index_topk),
        "cache_bytes_dense": b_kv * L,
        "cache_bytes_dsa": (b_kv + b_idx) * L,
    }
    for metric in COST_METRICS:
        cost[f"{metric}_dsa"] = cost[f"{metric}_indexer"] + cost[f"{metric}_sparse"]
    # the mode switch: the masked MHA mode, its indexer only where top-k drops a token
    mask_indexer = cost["prefill_flops_indexer"] if L > s.index_topk else L * 2 * s.d_model * s.index_head_dim
    cost["prefill_flops_sparse_path"] = cost["prefill_flops_dsa"]
    cost["prefill_flops_masked_mha"] = cost["prefill_flops_dense"] + mask_indexer
    masked = {"switch": cost["prefill_flops_masked_mha"] < cost["prefill_flops_sparse_path"],
              "sparse": False, "masked_mha": True}[prefill_mode]
    if masked:
        cost["prefill_flops_dsa"] = cost["prefill_flops_masked_mha"]
    if not per_layer:
        cost = {name: value * s.n_layers for name, value in cost.items()}
    return {"context_len": L, "top_k": s.index_topk, "selected": k, **cost, "prefill_masked_mha": int(masked)}


def dsa_crossover_context(spec: AttentionShape, top_k: int | None = None, metric: str = "decode_flops",
                          max_context: int = 2**40, **cost_options) -> int | None:
    """The shortest context L at which DSA costs less than dense MLA in ``metric`` ("decode_flops",
    "decode_bytes" or "prefill_flops", see :func:`dsa_layer_cost`, whose keyword options it passes on), or
    None if that never happens up to ``max_context`` (e.g. when C_idx >= C_attn).

    Below k every token is selected, so DSA pays the indexer on top of dense attention; above k the
    difference grows with L, so the set where DSA is cheaper is [L*, inf) and bisection finds L*. For
    decode FLOPs, L* = floor((C_attn k + F_proj) / (C_attn - C_idx)) + 1 (2284 for DeepSeek-V3.2)."""
    if not isinstance(metric, str) or metric not in COST_METRICS:
        raise ValueError(f"metric={metric!r} must be one of {COST_METRICS}")
    check_positive_int("max_context", max_context)

    def cheaper(length: int) -> bool:
        cost = dsa_layer_cost(spec, length, top_k, **cost_options)
        return cost[f"{metric}_dsa"] < cost[f"{metric}_dense"]

    hi = max(1, dsa_layer_cost(spec, 1, top_k, **cost_options)["top_k"])
    while not cheaper(hi):
        if hi >= max_context:
            return None
        hi = min(2 * hi, max_context)
    lo = 0  # cheaper(lo) is False: at L <= k DSA also runs the indexer
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if cheaper(mid) else (mid, hi)
    return hi


def dsa_prefill_switch_context(spec: AttentionShape, top_k: int | None = None, max_context: int = 2**40,
                               **cost_options) -> int | None:
    """The shortest prompt length L at which a DSA layer's sparse prefill path costs fewer FLOPs than its
    masked MHA mode (:func:`dsa_layer_cost`, whose keyword options it passes on), or None up to
    ``max_context``: below it DeepSeek's service runs the masked MHA mode, from it the sparse path.

    Above k both modes pay the same indexer, so the sparse path wins once C_attn sum_t min(k, t) <
    C_pre L(L+1)/2, with sum_t min(k, t) = k(k+1)/2 + (L - k) k: the difference is a concave quadratic in L,
    so the set where the sparse path wins is [L*, inf), L* ~ k (C_attn + sqrt(C_attn (C_attn - C_pre))) / C_pre,
    12,813 for DeepSeek-V3.2 with the naive (MHA-mode) dense prefill."""
    check_positive_int("max_context", max_context)
    if "prefill_mode" in cost_options:
        raise ValueError("prefill_mode is what dsa_prefill_switch_context decides; leave it out")

    def sparse_cheaper(length: int) -> bool:
        cost = dsa_layer_cost(spec, length, top_k, **cost_options)
        return cost["prefill_flops_sparse_path"] < cost["prefill_flops_masked_mha"]

    hi = max(1, dsa_layer_cost(spec, 1, top_k, **cost_options)["top_k"])
    while not sparse_cheaper(hi):
        if hi >= max_context:
            return None
        hi = min(2 * hi, max_context)
    lo = 0  # at L <= k the sparse path pays the indexer and C_attn > C_pre per pair
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if sparse_cheaper(mid) else (mid, hi)
    return hi


# ----------------------------------------------------------------------------------------------------
# DeepSeek-V4: a window plus compressed entries (CSA, HCA), against DeepSeek-V3.2's MLA + DSA
#
# A V4 layer (:mod:`attnlab.v4`; "DeepSeek-V4" report §2.3) caches, at context L, the last W raw tokens (one
# c-wide vector each, key and value at once), one c-wide compressed entry per m tokens (CSA m = 4, HCA m = 128;
# none in a sliding layer) and, in a CSA layer, one c^I-wide index key per entry. The running state of a
# compressor's unfinished window (fewer than 2m tokens' projections) is a constant left out, as the published
# comparison leaves it out. V3.2 caches one MLA entry (d_c + d_h^R = 576 numbers) and one index key (128) per
# token in each of its 61 layers. Bytes per cached vector come from :mod:`attnlab.cache_formats`.

#: The layer types of a V4 config's ``compress_ratios``: 0 sliding only, 4 CSA, 128 HCA (Hugging Face's
#: ``_COMPRESS_RATIO_TO_LAYER_TYPE``, configuration_deepseek_v4.py).
V4_RATIO_TYPES: dict[int, str] = {0: "sliding", 4: "csa", 128: "hca"}


@dataclass(frozen=True, kw_only=True)
class V4Model:
    """A published DeepSeek-V4 model's attention, in its config.json's names: ``compress_ratios`` per layer
    (0 sliding, 4 CSA, 128 HCA; the multi-token-prediction layer left out), d_model [hidden_size], n_heads
    [num_attention_heads], head_dim c (512), rope_head_dim d^R (64), q_lora_rank d_c, o_groups g,
    o_lora_rank d_g, window W [sliding_window], index_n_heads H^I, index_head_dim c^I, index_topk k."""

    name: str
    compress_ratios: tuple[int, ...]
    d_model: int
    n_heads: int
    q_lora_rank: int
    o_groups: int
    index_topk: int
    source: str
    head_dim: int = 512
    rope_head_dim: int = 64
    o_lora_rank: int = 1024
    window: int = 128
    index_n_heads: int = 64
    index_head_dim: int = 128

    def __post_init__(self) -> None:
        if not self.compress_ratios or any(r not in V4_RATIO_TYPES for r in self.compress_ratios):
            raise ValueError(f"compress_ratios must be a non-empty tuple of {sorted(V4_RATIO_TYPES)}, "
                             f"got {self.compress_ratios!r}")
        for name in ("d_model", "n_heads", "q_lora_rank", "o_groups", "index_topk", "head_dim", "o_lora_rank",
                     "window", "index_n_heads", "index_head_dim"):
            check_positive_int(name, getattr(self, name))

    @property
    def n_layers(self) -> int:
        return len(self.compress_ratios)

    def layer_counts(self) -> dict[str, int]:
        """Layers of each type: {"sliding": ..., "csa": ..., "hca": ...}."""
        types = [V4_RATIO_TYPES[r] for r in self.compress_ratios]
        return {kind: types.count(kind) for kind in ("sliding", "csa", "hca")}


#: DeepSeek-V4-Flash: 43 layers, [0, 0] + [4, 128] x 20 + [4]: 2 sliding, 21 CSA, 20 HCA (config.json
#: ``compress_ratios``, whose 44th entry is the MTP layer's).
DEEPSEEK_V4_FLASH = V4Model(name="DeepSeek-V4-Flash", compress_ratios=(0, 0) + (4, 128) * 20 + (4,), d_model=4096,
                            n_heads=64, q_lora_rank=1024, o_groups=8, index_topk=512,
                            source="deepseek-ai/DeepSeek-V4-Flash config.json (compress_ratios, hidden_size, ...)")
#: DeepSeek-V4-Pro: 61 layers, [128, 128] + [4, 128] x 29 + [4]: 31 HCA, 30 CSA (config.json).
DEEPSEEK_V4_PRO = V4Model(name="DeepSeek-V4-Pro", compress_ratios=(128, 128) + (4, 128) * 29 + (4,), d_model=7168,
                          n_heads=128, q_lora_rank=1536, o_groups=16, index_topk=1024,
                          source="deepseek-ai/DeepSeek-V4-Pro config.json (compress_ratios, hidden_size, ...)")
V4_MODELS: dict[str, V4Model] = {"deepseek-v4-flash": DEEPSEEK_V4_FLASH, "deepseek-v4-pro": DEEPSEEK_V4_PRO}
#: DeepSeek-V3.2's layers, each caching an MLA entry and an index key per token (config.json num_hidden_layers).
DEEPSEEK_V32_LAYERS = 61


def _v4_model(model: object) -> V4Model:
    if isinstance(model, str) and model in V4_MODELS:
        return V4_MODELS[model]
    if isinstance(model, V4Model):
        return model
    error = ValueError if isinstance(model, str) else ArgumentTypeError
    raise error(f"model={model!r} must be a V4Model or one of {sorted(V4_MODELS)}")


def v4_layer_cache_entries(layer_type: str, context: int, rate: int | None = None, window: int = 128) -> dict[str, int]:
    """Vectors one V4 layer holds at ``context`` L tokens: "window" min(W, L) raw tokens, "entries" floor(L / m)
    compressed ones (0 in a sliding layer), "index_keys" floor(L / m) in a CSA layer (else 0). m: ``rate``,
    None for the release's (CSA 4, HCA 128)."""
    if not isinstance(layer_type, str) or layer_type not in ("sliding", "csa", "hca"):
        raise ValueError(f"layer_type={layer_type!r} must be one of ('sliding', 'csa', 'hca')")
    check_non_negative_int("context", context)
    check_positive_int("window", window)
    if layer_type == "sliding":
        return {"window": min(window, context), "entries": 0, "index_keys": 0}
    m = check_positive_int("rate", rate) if rate is not None else (4 if layer_type == "csa" else 128)
    entries = context // m
    return {"window": min(window, context), "entries": entries, "index_keys": entries if layer_type == "csa" else 0}


def v4_cache_bytes(model: V4Model | str, context: int, entry: ByteLayout = DEEPSEEK_V4_FP8_ENTRY,
                   index_key: ByteLayout = DEEPSEEK_V4_FP4_INDEX_KEY) -> int:
    """Bytes of one sequence's cache, every layer of ``model``, at ``context`` L tokens:

        sum over layers of (min(W, L) + floor(L / m)) x entry bytes + [CSA] floor(L / m) x index-key bytes.

    With DeepSeek's FP8 entries (584 B) and FP4 index keys (68 B), a CSA layer costs about 584/4 + 68/4 = 163
    bytes per token and an HCA layer 584/128 = 4.6. ``entry``, ``index_key``: any
    :class:`~attnlab.cache_formats.ByteLayout` (``uniform_layout(512)`` and ``uniform_layout(128)`` for bfloat16)."""
    m = _v4_model(model)
    check_type("entry", entry, ByteLayout)
    check_type("index_key", index_key, ByteLayout)
    total = 0
    for ratio in m.compress_ratios:
        held = v4_layer_cache_entries(V4_RATIO_TYPES[ratio], context, ratio or None, m.window)
        total += (held["window"] + held["entries"]) * entry.bytes + held["index_keys"] * index_key.bytes
    return total


def v32_cache_bytes(context: int, entry: ByteLayout = DEEPSEEK_V32_FP8_MLA,
                    index_key: ByteLayout = DEEPSEEK_V32_FP8_INDEX_KEY, n_layers: int = DEEPSEEK_V32_LAYERS) -> int:
    """DeepSeek-V3.2's cache for one sequence at ``context`` L tokens: n_layers x L x (entry + index key) bytes,
    61 x L x (656 + 132) in FlashMLA's FP8 layout."""
    check_non_negative_int("context", context)
    check_type("entry", entry, ByteLayout)
    check_type("index_key", index_key, ByteLayout)
    check_positive_int("n_layers", n_layers)
    return n_layers * context * (entry.bytes + index_key.bytes)


#: The two accountings of the published comparison: DeepSeek's serving formats (V4: FP8 entries and FP4 index
#: keys; V3.2: FlashMLA's FP8 MLA entry and FP8 index key) and every number in bfloat16.
V4_CACHE_FORMATS: dict[str, dict[str, ByteLayout]] = {
    "fp8": {"v4_entry": DEEPSEEK_V4_FP8_ENTRY, "v4_index_key": DEEPSEEK_V4_FP4_INDEX_KEY,
            "v32_entry": DEEPSEEK_V32_FP8_MLA, "v32_index_key": DEEPSEEK_V32_FP8_INDEX_KEY},
    "bf16": {"v4_entry": uniform_layout(512), "v4_index_key": uniform_layout(128),
             "v32_entry": uniform_layout(576), "v32_index_key": uniform_layout(128)},
}


def v4_vs_v32_cache(model: V4Model | str, context: int, formats: str = "fp8") -> dict[str, float]:
    """The published comparison ("V4-Pro needs about 10%, V4-Flash about 7% of V3.2's KV cache at 1M tokens"):
    {"v4_bytes", "v32_bytes", "ratio" = v4 / v32, "times_smaller" = v32 / v4} at ``context`` tokens, in
    ``formats`` "fp8" (DeepSeek's serving layouts, where the 10% and 7% hold) or "bf16" (every number in
    bfloat16, where V4-Pro is about 8.7x smaller)."""
    if not isinstance(formats, str) or formats not in V4_CACHE_FORMATS:
        raise ValueError(f"formats={formats!r} must be one of {tuple(V4_CACHE_FORMATS)}")
    f = V4_CACHE_FORMATS[formats]
    v4 = v4_cache_bytes(model, context, f["v4_entry"], f["v4_index_key"])
    v32 = v32_cache_bytes(context, f["v32_entry"], f["v32_index_key"])
    return {"v4_bytes": v4, "v32_bytes": v32, "ratio": v4 / v32 if v32 else math.nan,
            "times_smaller": v32 / v4 if v4 else math.nan}


def v4_decode_flops(model: V4Model | str, layer_type: str, context: int, rate: int | None = None) -> dict[str, int]:
    """FLOPs (2 per MAC) of one decoded token in one V4 layer of ``model`` with ``context`` cached tokens, by
    part (T = context + 1 positions, n_w = min(W, T) window keys, n_c = floor(T / m) complete entries,
    k' = min(k, n_c)):

        "projections"  2 (d d_c + d_c n_h c + d c + n_h c d_g + g d_g d)   W^DQ, W^UQ, W^KV, grouped W^O_a, W^O_b
        "compressor"   2 d 2 k c (content and gate, k = 2 for CSA, 1 for HCA), CSA also 2 d 2 (2 c^I) for the
                       indexer's compressor, 2 d_c H^I c^I for its queries and 2 d H^I for its head weights
        "indexer"      2 (H^I c^I + H^I) n_c                 CSA: every complete entry scored
        "attention"    2 n_h 2c (n_w + a), a = k' (CSA), n_c (HCA), 0 (sliding): scores and weighted sum over
                       the c-wide shared vector (the value is the key)

    Pooling a completed window (once per m tokens), norms, RoPE, softmaxes and the top-k are left out, as in
    every count of this module. ``rate``: m, None for the release's."""
    m = _v4_model(model)
    entries = v4_layer_cache_entries(layer_type, context + 1, rate, m.window)  # T = context + 1 positions
    d, dq, h, c, g, dg = m.d_model, m.q_lora_rank, m.n_heads, m.head_dim, m.o_groups, m.o_lora_rank
    hi, ci = m.index_n_heads, m.index_head_dim
    n_c, n_w = entries["entries"], entries["window"]
    parts = {"projections": 2 * (d * dq + dq * h * c + d * c + h * c * dg + g * dg * d),
             "compressor": 0, "indexer": 0, "attention": 0}
    attended = 0
    if layer_type == "csa":
        parts["compressor"] = 2 * d * 2 * (2 * c) + 2 * d * 2 * (2 * ci) + 2 * dq * hi * ci + 2 * d * hi
        parts["indexer"] = 2 * (hi * ci + hi) * n_c
        attended = min(m.index_topk, n_c)
    elif layer_type == "hca":
        parts["compressor"] = 2 * d * 2 * c
        attended = n_c
    parts["attention"] = 2 * h * 2 * c * (n_w + attended)
    return parts


def _v4_rate(m: V4Model, layer_type: str, rate: int | None) -> int:
    """The compression rate m of a CSA or HCA layer: ``rate``, or the release's (4, 128)."""
    if not isinstance(layer_type, str) or layer_type not in ("sliding", "csa", "hca"):
        raise ValueError(f"layer_type={layer_type!r} must be one of ('sliding', 'csa', 'hca')")
    if layer_type == "sliding":
        return 0
    return check_positive_int("rate", rate) if rate is not None else (4 if layer_type == "csa" else 128)


def v4_weight_elements(model: V4Model | str, layer_type: str, rate: int | None = None) -> int:
    """Parameters of one V4 attention layer (:class:`attnlab.v4.DeepSeekV4Attention`):

        d d_c + d_c + d_c n_h c + d c + c + n_h + d_g n_h c + g d_g d
            (W^DQ, its RMSNorm, W^UQ, W^KV, its RMSNorm, the sinks, the grouped W^O_a, W^O_b)
        CSA, HCA: + 2 d k c + m k c + c     (the compressor's W^C and W^Z, its position bias B, RMSNorm; k = 2, 1)
        CSA:      + 2 d 2 c^I + m 2 c^I + c^I + d_c H^I c^I + d H^I   (the indexer's compressor, W^IUQ, W^w)"""
    m = _v4_model(model)
    rate = _v4_rate(m, layer_type, rate)
    d, dq, h, c, g, dg = m.d_model, m.q_lora_rank, m.n_heads, m.head_dim, m.o_groups, m.o_lora_rank
    total = d * dq + dq + dq * h * c + d * c + c + h + dg * h * c + g * dg * d
    if layer_type == "sliding":
        return total
    k = 2 if layer_type == "csa" else 1
    total += 2 * d * k * c + rate * k * c + c
    if layer_type == "csa":
        ci, hi = m.index_head_dim, m.index_n_heads
        total += 2 * d * 2 * ci + rate * 2 * ci + ci + dq * hi * ci + d * hi
    return total


def _v4_state_numbers(m: V4Model, layer_type: str, rate: int, context: int) -> dict[str, int]:
    """Numbers of the compressors' running state after ``context`` tokens: "pending" the projections [C; Z] of
    the L mod m tokens of the unfinished window (2 k c each; CSA also 2 2 c^I for the indexer's), "previous"
    (CSA, once an entry exists) the last complete window's first halves, m 2 c + m 2 c^I."""
    if layer_type == "sliding":
        return {"pending": 0, "previous": 0}
    rows = context % rate
    k = 2 if layer_type == "csa" else 1
    pending = rows * 2 * k * m.head_dim + (rows * 2 * 2 * m.index_head_dim if layer_type == "csa" else 0)
    previous = rate * 2 * (m.head_dim + m.index_head_dim) if layer_type == "csa" and context >= rate else 0
    return {"pending": pending, "previous": previous}


def v4_layer_cache_bytes(model: V4Model | str, layer_type: str, context: int, dtype: torch.dtype | str,
                         rate: int | None = None) -> int:
    """Bytes one V4 layer's cache (:class:`attnlab.v4.V4Cache`) holds at ``context`` L tokens, every number in
    ``dtype`` (b bytes), the compressors' running state included (:func:`v4_cache_bytes` leaves that constant out):

        b ((min(W, L) + floor(L / m)) c + [CSA] floor(L / m) c^I + (L mod m) 2 k c + [CSA] (L mod m) 4 c^I
           + [CSA, L >= m] 2 m (c + c^I))

    (:func:`v4_layer_cache_entries` counts the vectors; k = 2 for CSA, 1 for HCA.)"""
    m = _v4_model(model)
    rate = _v4_rate(m, layer_type, rate)
    held = v4_layer_cache_entries(layer_type, context, rate or None, m.window)
    state = _v4_state_numbers(m, layer_type, rate, context)
    numbers = (held["window"] + held["entries"]) * m.head_dim + held["index_keys"] * m.index_head_dim
    return _element_bytes(dtype) * (numbers + state["pending"] + state["previous"])


def v4_decode_bytes(model: V4Model | str, layer_type: str, context: int, dtype: torch.dtype | str,
                    rate: int | None = None) -> dict[str, int]:
    """Bytes one decoded token moves in one V4 layer with ``context`` cached tokens, by part, every number in
    ``dtype`` (b bytes; T = context + 1, n_w = min(W, T), n_c = floor(T / m), k' = min(k, n_c), as in
    :func:`v4_decode_flops`):

        "weights"     b :func:`v4_weight_elements`                      read once
        "window"      b n_w c                                           the window's key/values (its own included)
        "index_keys"  b n_c c^I                                         CSA: every complete entry's index key
        "entries"     b k' c (CSA, the selected), b n_c c (HCA, all)
        "state"       b (context mod m) (2 k c [+ 4 c^I])               the unfinished window's projections
        "appended"    b (c + 2 k c [+ 4 c^I])                           written: the token's key/value into the
                                                                        window, its projections into the pending
                                                                        window (the last two: none when sliding)

    Reading is everything but "appended". Pooling a completed window (once per m tokens: the pending and
    previous projections read, one entry written) is left out, as it is in the FLOPs."""
    m = _v4_model(model)
    rate = _v4_rate(m, layer_type, rate)
    check_non_negative_int("context", context)
    b = _element_bytes(dtype)
    held = v4_layer_cache_entries(layer_type, context + 1, rate or None, m.window)  # T = context + 1 positions
    c, ci = m.head_dim, m.index_head_dim
    n_c = held["entries"]
    attended = min(m.index_topk, n_c) if layer_type == "csa" else n_c
    k = 2 if layer_type == "csa" else 1
    projections = 0 if layer_type == "sliding" else 2 * k * c + (2 * 2 * ci if layer_type == "csa" else 0)
    return {"weights": b * v4_weight_elements(m, layer_type, rate or None), "window": b * held["window"] * c,
            "index_keys": b * held["index_keys"] * ci, "entries": b * attended * c,
            "state": b * _v4_state_numbers(m, layer_type, rate, context)["pending"],
            "appended": b * (c + projections)}
# paged caches: pages, waste and prefix sharing (vLLM's PagedAttention, Kwon et al., SOSP 2023, §3 and §4)
#
# A paged cache stores a sequence of n tokens in whole pages (blocks) of B token slots each, found through a
# block table (§4.1); a contiguous cache reserves one run of slots per sequence in advance (§3). Slots
# reserved but not holding a token are waste, of two kinds (§3, Fig. 3): *reservation*, slots that tokens
# still to be generated will fill, and *internal fragmentation*, slots no token will ever fill (the request
# stops before its reservation, or its last page, is full). :mod:`attnlab.paged` simulates request streams
# with these counts.


def pages_for(tokens: int, block_size: int) -> int:
    """Pages a sequence of ``tokens`` tokens occupies: ceil(n / B) (PagedAttention §4.2: a new page is
    allocated only when the last one is full)."""
    check_non_negative_int("tokens", tokens)
    check_positive_int("block_size", block_size)
    return -(-tokens // block_size)  # ceil(n / B)


def page_slack(tokens: int, block_size: int) -> int:
    """Empty slots in the last page: B ceil(n / B) - n, between 0 and B - 1 (§4.2: a sequence's waste is
    confined to its last block)."""
    return pages_for(tokens, block_size) * block_size - tokens


def waste_parts(used: int, final: int, reserved: int) -> dict[str, int]:
    """Split the ``reserved`` slots of one request holding ``used`` tokens now and ``final`` = prompt + output
    tokens when it finishes (used <= final) into the paper's kinds (§3, Fig. 3):

        reservation = min(reserved, final) - used     slots future tokens of this request will fill
        internal    = max(0, reserved - final)        slots no token will ever fill

    Contiguous at the maximum length: reserved = L_max; at the actual length (an oracle): reserved = final,
    internal 0; paged: reserved = B ceil(used / B), both at most B - 1."""
    check_non_negative_int("used", used)
    check_non_negative_int("final", final)
    check_non_negative_int("reserved", reserved)
    if used > final:
        raise ValueError(f"used={used} must be at most final={final}: a request holds no more than it will")
    if reserved < used:
        raise ValueError(f"reserved={reserved} must be at least used={used}: every held token has a slot")
    return {"reservation": min(reserved, final) - used, "internal": max(0, reserved - final)}


def shared_prefix_pages(prefix: int, suffixes: tuple[int, ...] | list[int], block_size: int,
                        share: bool = True) -> int:
    """Pages held by N requests that all start with the same ``prefix`` tokens (a system prompt) and then
    hold ``suffixes[i]`` tokens of their own.

    Without sharing every request holds its own copy: sum_i ceil((P + s_i) / B). With sharing (§4.4, Fig. 8,
    copy-on-write) the floor(P / B) full pages of the prefix are held once, and each request's first write
    copies the partly filled last prefix page (when P mod B > 0) into a page of its own:
    floor(P / B) + sum_i ceil((P mod B + s_i) / B)."""
    check_non_negative_int("prefix", prefix)
    check_positive_int("block_size", block_size)
    check_bool("share", share)
    if not isinstance(suffixes, (tuple, list)) or not suffixes:
        raise ValueError(f"suffixes={suffixes!r} must be a non-empty list of token counts, one per request")
    for s in suffixes:  # each request writes at least one token of its own (else it copies nothing)
        check_positive_int("suffixes", s)
    if not share:
        return sum(pages_for(prefix + s, block_size) for s in suffixes)
    full, rest = divmod(prefix, block_size)
    return full + sum(pages_for(rest + s, block_size) for s in suffixes)
# chapter 15: FlashAttention's memory traffic
#
# How many bytes one attention call moves between the GPU's large, slow memory (HBM) and its small, fast
# on-chip memory (SRAM), for one head of one sequence unless n_heads and batch say otherwise, following
# the IO analysis of FlashAttention (Dao et al. 2022, arXiv:2205.14135, §3.2 and Appendix C, Theorem 2).
# Symbols: n_q queries, n_k keys, d the query/key width, d_v the value width, b bytes per element of the
# inputs, B_r and B_c the tile sizes, M the SRAM size. Standard attention moves Theta(N d + N^2) bytes;
# the tiled form Theta(N^2 d^2 / M). The scores S and probabilities P are the n_q x n_k matrices the
# standard form writes and reads back; the tiled form keeps each (B_r x B_c) tile of them on chip.


def _io_args(n_q: object, n_k: object, head_dim: object, v_head_dim: object, n_heads: object,
             batch: object) -> tuple[int, int, int, int, int]:
    check_positive_int("n_q", n_q)
    check_positive_int("n_k", n_k)
    check_positive_int("head_dim", head_dim)
    d_v = head_dim if v_head_dim is None else check_positive_int("v_head_dim", v_head_dim)
    check_positive_int("n_heads", n_heads)
    check_positive_int("batch", batch)
    return n_q, n_k, head_dim, d_v, n_heads * batch


def standard_attention_hbm_bytes(n_q: int, n_k: int, head_dim: int, dtype: torch.dtype | str = torch.bfloat16, *,
                                 v_head_dim: int | None = None, n_heads: int = 1, batch: int = 1) -> dict[str, int]:
    """HBM bytes of standard attention (FlashAttention paper, Algorithm 0), which materialises S and P:

        1. read Q, K (n_q d + n_k d), compute S = Q K^T, write S (n_q n_k)
        2. read S (n_q n_k), compute P = softmax(S), write P (n_q n_k)
        3. read P (n_q n_k) and V (n_k d_v), compute O = P V, write O (n_q d_v)

    each element b bytes (S and P in the inputs' dtype, as PyTorch's matrix form keeps them). Returns
    {"read Q, K", "write S", "read S, write P", "read P, V", "write O", "total"}: total
    b (n_q d + n_k d + 4 n_q n_k + n_k d_v + n_q d_v), Theta(N d + N^2) for n_q = n_k = N (Theorem 2).
    Times n_heads x batch."""
    n_q, n_k, d, d_v, copies = _io_args(n_q, n_k, head_dim, v_head_dim, n_heads, batch)
    b = _element_bytes(dtype) * copies
    parts = {
        "read Q, K": (n_q * d + n_k * d) * b,
        "write S": n_q * n_k * b,  # S = Q K^T, n_q x n_k
        "read S, write P": 2 * n_q * n_k * b,  # P = softmax(S)
        "read P, V": (n_q * n_k + n_k * d_v) * b,
        "write O": n_q * d_v * b,  # O = P V
    }
    return {**parts, "total": sum(parts.values())}


def flash_key_rows_loaded(n_q: int, n_k: int, block_q: int, block_k: int, causal: bool = False) -> int:
    """Rows of K (and of V) the tiled forward loads from HBM, summed over its ceil(n_q / B_r) query blocks.
    Without the mask every query block streams all n_k keys. Under the causal mask (the queries are the last
    n_q of n_k positions) a query block stops after the key block that holds its last query's position: it
    loads whole key blocks of B_c up to there, min(n_k, B_c ceil(p / B_c)) rows with p = n_k - n_q + (its last
    row) + 1 the keys its last query sees; the blocks after it are skipped."""
    check_tiling(n_q, n_k, block_q, block_k, causal)
    blocks = range(0, n_q, block_q)
    if not causal:
        return len(blocks) * n_k
    seen = (n_k - n_q + min(i0 + block_q, n_q) for i0 in blocks)  # keys the block's last query sees
    return sum(min(n_k, -(-p // block_k) * block_k) for p in seen)  # whole B_c blocks up to the diagonal


def flash_attention_hbm_bytes(n_q: int, n_k: int, head_dim: int, block_q: int, block_k: int,
                              dtype: torch.dtype | str = torch.bfloat16, *, v_head_dim: int | None = None,
                              causal: bool = False, n_heads: int = 1, batch: int = 1) -> dict[str, int]:
    """HBM bytes of the tiled forward (:func:`attnlab.flash.flash_attention`: the outer loop over query blocks
    of FlashAttention-2, Dao 2023, Algorithm 1): each query block Q_i (B_r x d) is read once, streams the K_j,
    V_j blocks it needs (:func:`flash_key_rows_loaded`), keeps S_ij, P_ij, m, l and O_i on chip, and writes
    O_i and its log-sum-exp L_i once:

        read Q: n_q d b     read K, V: R (d + d_v) b     write O: n_q d_v b     write L: 4 n_q (float32)

    with R = ceil(n_q / B_r) n_k rows (fewer under the causal mask, where ``block_k`` B_c decides how far past
    the diagonal the last loaded block reaches). With B_r = Theta(M / d) that is Theta(N^2 d^2 / M) for
    n_q = n_k = N (FlashAttention, Theorem 2). Returns {"read Q", "read K, V", "write O", "write L", "total"},
    times n_heads x batch."""
    n_q, n_k, d, d_v, copies = _io_args(n_q, n_k, head_dim, v_head_dim, n_heads, batch)
    check_positive_int("block_q", block_q)
    check_positive_int("block_k", block_k)
    b = _element_bytes(dtype) * copies
    rows = flash_key_rows_loaded(n_q, n_k, block_q, block_k, causal)
    parts = {
        "read Q": n_q * d * b,
        "read K, V": rows * (d + d_v) * b,
        "write O": n_q * d_v * b,
        "write L": n_q * 4 * copies,  # one float32 log-sum-exp per row, for the backward pass and merges
    }
    return {**parts, "total": sum(parts.values())}


def flash_sram_bytes(block_q: int, block_k: int, head_dim: int, dtype: torch.dtype | str = torch.bfloat16, *,
                     v_head_dim: int | None = None) -> dict[str, int]:
    """On-chip bytes one query block of the tiled forward holds at once: the tiles Q_i (B_r x d), K_j
    (B_c x d) and V_j (B_c x d_v) in the inputs' dtype, and in float32 (4 bytes, as the kernels accumulate)
    the score tile S_ij / P_ij (B_r x B_c, P overwrites S), the output accumulator O_i (B_r x d_v) and the
    running m and l (B_r each). Returns {"Q, K, V tiles", "S/P tile", "O accumulator", "m, l", "total"}.
    FlashAttention picks B_c = ceil(M / 4d), B_r = min(B_c, d) so that this fits an SRAM of M elements."""
    check_positive_int("block_q", block_q)
    check_positive_int("block_k", block_k)
    d = check_positive_int("head_dim", head_dim)
    d_v = d if v_head_dim is None else check_positive_int("v_head_dim", v_head_dim)
    b = _element_bytes(dtype)
    parts = {
        "Q, K, V tiles": (block_q * d + block_k * d + block_k * d_v) * b,
        "S/P tile": block_q * block_k * 4,
        "O accumulator": block_q * d_v * 4,
        "m, l": 2 * block_q * 4,
    }
    return {**parts, "total": sum(parts.values())}


def score_bytes_not_written(n_q: int, n_k: int, dtype: torch.dtype | str = torch.bfloat16, *, n_heads: int = 1,
                            batch: int = 1) -> int:
    """Bytes the tiled forward never writes to HBM (nor reads back): the scores S and the probabilities P,
    two n_q x n_k matrices of b bytes per head and sequence, 2 n_q n_k b x n_heads x batch. The standard form
    writes both whole (masked entries included) and reads both back; FlashAttention writes only O and L."""
    check_positive_int("n_q", n_q)
    check_positive_int("n_k", n_k)
    check_positive_int("n_heads", n_heads)
    check_positive_int("batch", batch)
    return 2 * n_q * n_k * _element_bytes(dtype) * n_heads * batch
# chapter 17: sliding windows, sinks and shared KV
#
# A sliding layer of window W that keeps S sink tokens (attnlab.window) holds min(L, S + W) tokens after L; a
# global layer holds L; a layer that reads another layer's K/V (CLA, Gemma 3n/4) holds none. What a held token
# costs is the scheme's rule above, unchanged: windows and sharing change how many tokens are held, not their
# width. A decoded token attends to min(T, S + W) keys in a sliding layer (T = context + 1, its own included).


def window_cache_tokens(seq_len: int, window: int | None = None, n_sinks: int = 0) -> int:
    """Tokens one layer holds after ``seq_len`` tokens: min(L, S + W) for a sliding layer (the window and the
    sinks, :class:`attnlab.window.RollingCache`), L for a global one (``window`` None)."""
    check_non_negative_int("seq_len", seq_len)
    check_non_negative_int("n_sinks", n_sinks)
    if window is None:
        if n_sinks:
            raise ValueError(f"n_sinks={n_sinks} needs a window: a global layer keeps every token anyway")
        return seq_len
    return min(seq_len, n_sinks + check_positive_int("window", window))


def _layer_plan(shape: AttentionShape, windows: object, kv_sources: object) -> tuple[list, list]:
    """The per-layer windows and K/V sources, checked: one entry per layer of ``shape``; a source is an
    earlier (or the same) layer that owns its cache."""
    n = shape.n_layers
    windows = [None] * n if windows is None else list(windows)
    sources = list(range(n)) if kv_sources is None else list(kv_sources)
    for name, values in (("windows", windows), ("kv_sources", sources)):
        if len(values) != n:
            raise ValueError(f"{name} has {len(values)} entries, the shape has n_layers={n}: one per layer")
    for i, w in enumerate(windows):
        if w is not None:
            check_positive_int(f"windows[{i}]", w)
    for i, j in enumerate(sources):
        check_non_negative_int(f"kv_sources[{i}]", j)
        if j > i or sources[j] != j:
            raise ValueError(f"kv_sources[{i}]={j} must name layer {i} itself or an earlier layer that owns its "
                             "cache (kv_sources[j] == j)")
    return windows, sources


def layer_cache_tokens(shape: AttentionShape, seq_len: int, windows: object = None, n_sinks: int = 0,
                       kv_sources: object = None) -> list[int]:
    """Tokens each layer holds after ``seq_len`` tokens: :func:`window_cache_tokens` of its window
    (``windows[i]``, None = global; ``n_sinks`` kept by every sliding layer), 0 for a layer whose
    ``kv_sources[i]`` is another layer (it reads that layer's cache)."""
    s = as_shape(shape)
    windows, sources = _layer_plan(s, windows, kv_sources)
    check_non_negative_int("n_sinks", n_sinks)
    return [0 if sources[i] != i else window_cache_tokens(seq_len, w, n_sinks if w is not None else 0)
            for i, w in enumerate(windows)]


def windowed_cache_bytes(scheme: str, shape: AttentionShape, seq_len: int, dtype: torch.dtype | str = torch.bfloat16,
                         windows: object = None, n_sinks: int = 0, kv_sources: object = None, *,
                         batch: int = 1) -> int:
    """Bytes of a model's cache after ``seq_len`` tokens when layers slide or share: batch x b x the sum over
    layers of (tokens held, :func:`layer_cache_tokens`) x (numbers per token and layer,
    ``cache_elements_per_token(per_layer=True)``). With no windows and no sharing it equals :func:`cache_bytes`;
    past S + W it stops growing in the sliding layers."""
    held = layer_cache_tokens(shape, seq_len, windows, n_sinks, kv_sources)
    check_positive_int("batch", batch)
    per_token = cache_elements_per_token(scheme, shape, per_layer=True) * _element_bytes(dtype)
    return batch * sum(held) * per_token


def window_decode_attention_flops(scheme: str, shape: AttentionShape, context: int, window: int | None = None,
                                  n_sinks: int = 0) -> int:
    """:func:`decode_attention_flops` of one layer whose decoded token sees at most S + W keys:
    2 x :func:`macs_per_cached_token` x min(T, S + W), T = context + 1 (dense: 4 n_h d_h min(T, S + W)). Constant
    once the context passes the window: a sliding layer's decode step costs the same at 1K and at 1M tokens."""
    record, s = _fitting(scheme, shape)
    if record.indexer:
        raise ValueError(f"scheme={record.key!r}: DSA's indexer scores every cached token; windows are for the "
                         "dense schemes")
    t = window_cache_tokens(_context(context), window, n_sinks)
    return 2 * macs_per_cached_token(record.key, s) * t


def window_decode_flops(scheme: str, shape: AttentionShape, context: int, window: int | None = None,
                        n_sinks: int = 0) -> int:
    """FLOPs to decode one token in a layer that sees at most S + W keys, batch 1: :func:`projection_flops` +
    :func:`window_decode_attention_flops` (dense: 2 W_elements + 4 n_h d_h min(T, S + W)); the same as
    :func:`decode_flops` up to T = S + W, constant after."""
    return projection_flops(scheme, shape) + window_decode_attention_flops(scheme, shape, context, window, n_sinks)


def window_decode_bytes_read(scheme: str, shape: AttentionShape, context: int, dtype: torch.dtype | str,
                             window: int | None = None, n_sinks: int = 0) -> int:
    """Bytes one decode step of a sliding layer reads: b (W_elements + 2 n_kv d_h min(T, S + W)), the weights
    and the min(T, S + W) keys and values its ring holds (:class:`attnlab.window.RollingCache`), T = context + 1.
    (It appends one token, :func:`cache_append_bytes`, over the oldest one once the ring is full.)"""
    record, s = _fitting(scheme, shape)
    if not record.dense:
        raise ValueError(f"scheme={record.key!r}: windows are counted here for the dense schemes only")
    t = window_cache_tokens(_context(context), window, n_sinks)
    per_token = cache_elements_per_token(record.key, s, per_layer=True)
    return _element_bytes(dtype) * (weight_elements(record.key, s) + per_token * t)


# ----------------------------------------------------------------------------------------------------
# chapter 19: block-sparse selection, contiguous blocks against gathered rows
#
# A sparse decode step reads k of the L cached tokens, each `bytes_per_token` bytes. Token-level top-k (DSA)
# picks them anywhere: up to k separate rows, each its own address to compute and its own read. Block
# selection (NSA, MoBA, Quest) picks k / B blocks of B consecutive tokens: the same bytes in k / B runs of
# B * bytes_per_token bytes, each one tile a kernel loads whole (NSA §3.3.2, §3.4). Scoring costs differ too:
# DSA's indexer scores every cached token, a block method one summary per block (MoBA and NSA a pooled key,
# Quest two bound vectors). :mod:`attnlab.block_sparse` measures the runs real selections make.

#: How a selection scores the cache: every token ("token", DSA's indexer), one pooled key per block ("mean",
#: MoBA; NSA's compressed keys) or a min and a max vector per block ("bounds", Quest).
SELECTION_SCORERS: tuple[str, ...] = ("token", "mean", "bounds")


def selection_read(budget: int, block_size: int, bytes_per_token: int) -> dict[str, int]:
    """What one query reads when it selects ``budget`` tokens in runs of ``block_size`` (1: single tokens).

    tokens = k; segments = ceil(k / B) (separate contiguous runs at most: a token-level selection is scattered
    in the worst case, k runs); bytes = k * bytes_per_token, the same for any B; bytes_per_segment =
    B * bytes_per_token."""
    check_positive_int("budget", budget)
    check_positive_int("block_size", block_size)
    check_positive_int("bytes_per_token", bytes_per_token)
    return {"tokens": budget, "segments": -(-budget // block_size), "bytes": budget * bytes_per_token,
            "bytes_per_segment": block_size * bytes_per_token}


def selection_score_macs(context: int, block_size: int, key_dim: int, n_heads: int, scorer: str) -> int:
    """Multiply-accumulates one query spends choosing what to read from a ``context``-token cache.

    "token": L * d * H (DSA: H^I index heads of width d^I score every token, Eq. 1 of the V3.2 report);
    "mean": ceil(L / B) * d * H (one dot product per block and head, MoBA §2.2, NSA Eq. 8);
    "bounds": 2 * ceil(L / B) * d * H (Quest: q⁺ · M_j and q⁻ · m_j). The top-k that follows is left out."""
    check_positive_int("context", context)
    check_positive_int("block_size", block_size)
    check_positive_int("key_dim", key_dim)
    check_positive_int("n_heads", n_heads)
    if not isinstance(scorer, str) or scorer not in SELECTION_SCORERS:
        raise ValueError(f"scorer={scorer!r} must be one of {SELECTION_SCORERS}")
    units = context if scorer == "token" else -(-context // block_size)
    return (2 if scorer == "bounds" else 1) * units * key_dim * n_heads


# One decode step of Quest-style block-sparse attention over a dense layer's cache (:class:`attnlab.block_sparse.
# QuestAttention`, T = context + 1 tokens held after the new one, B tokens a block, n blocks chosen per query head):
# the cache holds K, V and each block's key bounds (m_j, M_j) per K/V head; the step scores the ceil(T / B)
# blocks by the bound (two dot products per block and query head), keeps n' = min(n, ceil(T / B)) of them (its
# own among them) and attends over their n' B slots, read whole (the own block's slots past the query are read
# and masked). Each query head reads its own n' blocks (index_select per head; a GQA group's heads may pick the
# same block, which is then read once per head).


def block_sparse_blocks_read(context: int, block_size: int, top_blocks: int) -> int:
    """n' = min(n, ceil(T / B)), T = context + 1: blocks one query head reads in a decode step."""
    check_positive_int("block_size", block_size)
    check_positive_int("top_blocks", top_blocks)
    return min(top_blocks, -(-_context(context) // block_size))


def block_sparse_decode_flops(scheme: str, shape: AttentionShape, context: int, block_size: int,
                              top_blocks: int) -> int:
    """FLOPs of one block-sparse decode step (the section above), one layer, batch 1:

        :func:`projection_flops` + 2 x :func:`selection_score_macs` (T, B, d_h, n_h, "bounds")
                                 + 2 n_h (d_h + d_v) n' B                  (scores and weighted sum, whole blocks)

    i.e. 2 W + 4 n_h d_h ceil(T / B) + 2 n_h (d_h + d_v) n' B: the scoring grows with T / B, the attention
    stops growing once n' = n."""
    record, s = _fitting(scheme, shape)
    if not record.dense:
        raise ValueError(f"scheme={record.key!r}: block-sparse selection is counted here over a dense layer's K/V")
    t = _context(context)
    score = selection_score_macs(t, block_size, s.head_dim, s.n_heads, "bounds")
    slots = block_sparse_blocks_read(context, block_size, top_blocks) * block_size
    return projection_flops(record.key, s) + 2 * score + 2 * s.n_heads * (s.head_dim + s.v_head_dim) * slots


def block_sparse_decode_bytes_read(scheme: str, shape: AttentionShape, context: int, dtype: torch.dtype | str,
                                   block_size: int, top_blocks: int) -> int:
    """Bytes one block-sparse decode step reads, b bytes each: the weights, every block's bounds (m_j, M_j of
    each K/V head) and each query head's n' blocks of keys and values (:func:`selection_read` of n' B tokens
    of d_h + d_v numbers):

        b (W + 2 n_kv d_h ceil(T / B) + n_h (d_h + d_v) n' B)"""
    record, s = _fitting(scheme, shape)
    if not record.dense:
        raise ValueError(f"scheme={record.key!r}: block-sparse selection is counted here over a dense layer's K/V")
    b = _element_bytes(dtype)
    blocks = -(-_context(context) // check_positive_int("block_size", block_size))
    kv_heads = record.kv_heads(s)
    read = selection_read(block_sparse_blocks_read(context, block_size, top_blocks) * block_size, block_size,
                          (s.head_dim + s.v_head_dim) * b)
    return b * (weight_elements(record.key, s) + 2 * kv_heads * s.head_dim * blocks) + s.n_heads * read["bytes"]


def block_sparse_cache_bytes(scheme: str, shape: AttentionShape, context: int, dtype: torch.dtype | str,
                             block_size: int) -> int:
    """Bytes of a block-sparse cache of ``context`` L tokens, one layer, batch 1: the dense cache
    (:func:`cache_bytes`) and two bound vectors per block and K/V head, b (2 n_kv d_h L + 2 n_kv d_h ceil(L / B))
    (:attr:`attnlab.block_sparse.BlockSparseCache.nbytes`): 1 / B more than the dense cache's keys."""
    record, s = _fitting(scheme, shape)
    if not record.dense:
        raise ValueError(f"scheme={record.key!r}: block-sparse selection is counted here over a dense layer's K/V")
    blocks = -(-check_non_negative_int("context", context) // check_positive_int("block_size", block_size))
    bounds = 2 * record.kv_heads(s) * s.head_dim * blocks * _element_bytes(dtype)
    return cache_bytes(record.key, s, context, dtype, per_layer=True) + bounds


def block_sparse_append_bytes(scheme: str, shape: AttentionShape, dtype: torch.dtype | str) -> int:
    """Bytes one block-sparse decode step writes into the cache: the new token's K and V
    (:func:`cache_append_bytes`) and its block's updated bounds, b 2 n_kv d_h more."""
    record, s = _fitting(scheme, shape)
    if not record.dense:
        raise ValueError(f"scheme={record.key!r}: block-sparse selection is counted here over a dense layer's K/V")
    return cache_append_bytes(record.key, s, dtype) + 2 * record.kv_heads(s) * s.head_dim * _element_bytes(dtype)


# ----------------------------------------------------------------------------------------------------
# Linear attention and hybrids: a fixed state against a growing cache (chapter 18)
#
# A linear-attention layer (:mod:`attnlab.linear_attention`) keeps, per sequence, one d_k x d_v state per head
# and the short convolution's last K - 1 inputs, whatever the context L; a full layer keeps its per-token cache,
# which grows with L. A hybrid stack mixes both: Qwen3-Next 3 Gated DeltaNet layers per full GQA layer, Kimi
# Linear 3 KDA layers per MLA layer. Bytes: the full layers' cache in ``cache_dtype`` (bfloat16 by default);
# the recurrent state in ``state_dtype`` (float32: Hugging Face's and vLLM's choice for both models, even in a
# bfloat16 model); the convolution's inputs in ``cache_dtype``. Hugging Face keeps K columns of convolution
# state where K - 1 suffice; the formulas count K - 1.


@dataclass(frozen=True, kw_only=True)
class HybridModel:
    """A published linear/full hybrid's attention, in its config.json's terms.

    ``full_layers``: 0-based indices of the full-attention layers (every other layer is linear);
    ``full_kind``: "gqa" (2 x ``n_kv_heads`` x ``head_dim`` numbers per token) or "mla" (``kv_lora_rank`` +
    ``rope_head_dim`` per token); the linear layers: ``linear_kind`` ("gated_deltanet" or "kda"),
    ``linear_heads`` value heads H_v, each with a ``d_k`` x ``d_v`` state, ``linear_key_heads`` key heads H_k
    (H_v a multiple), a convolution of ``conv_kernel`` taps over q, k and v (:attr:`conv_channels`).
    :data:`attnlab.sizing.MODELS` takes a published hybrid's layers from its record here
    (:func:`attnlab.sizing.hybrid_shape`)."""

    name: str
    n_layers: int
    full_layers: tuple[int, ...]
    full_kind: str
    linear_kind: str
    linear_heads: int
    linear_key_heads: int
    d_k: int
    d_v: int
    conv_kernel: int
    max_context: int
    source: str
    n_kv_heads: int = 0
    head_dim: int = 0
    kv_lora_rank: int = 0
    rope_head_dim: int = 0

    def __post_init__(self) -> None:
        for name in ("n_layers", "linear_heads", "linear_key_heads", "d_k", "d_v", "conv_kernel", "max_context"):
            check_positive_int(name, getattr(self, name))
        check_divisible("linear_heads", self.linear_heads, "linear_key_heads", self.linear_key_heads)
        if not isinstance(self.full_kind, str) or self.full_kind not in ("gqa", "mla"):
            raise ValueError(f"full_kind={self.full_kind!r} must be 'gqa' or 'mla'")
        if not isinstance(self.linear_kind, str) or self.linear_kind not in ("gated_deltanet", "kda"):
            raise ValueError(f"linear_kind={self.linear_kind!r} must be 'gated_deltanet' or 'kda'")
        if not isinstance(self.full_layers, tuple) or any(
                isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < self.n_layers for i in self.full_layers):
            raise ValueError(f"full_layers={self.full_layers!r} must be a tuple of layer indices in "
                             f"0..{self.n_layers - 1}")
        if len(set(self.full_layers)) != len(self.full_layers):
            raise ValueError(f"full_layers={self.full_layers!r} lists a layer twice")
        if self.full_kind == "gqa":
            check_positive_int("n_kv_heads", self.n_kv_heads)
            check_positive_int("head_dim", self.head_dim)
        else:
            check_positive_int("kv_lora_rank", self.kv_lora_rank)
            check_non_negative_int("rope_head_dim", self.rope_head_dim)

    @property
    def conv_channels(self) -> int:
        """Channels of the linear layers' short convolution: :func:`linear_conv_channels`."""
        return linear_conv_channels(self.linear_heads, self.d_k, self.d_v, self.linear_key_heads)

    @property
    def n_full(self) -> int:
        """Full-attention layers."""
        return len(self.full_layers)

    @property
    def n_linear(self) -> int:
        """Linear-attention layers."""
        return self.n_layers - self.n_full

    def full_numbers_per_token(self) -> int:
        """Numbers one full layer caches per token: 2 n_kv d_h (GQA), d_c + d_h^R (MLA)."""
        if self.full_kind == "gqa":
            return 2 * self.n_kv_heads * self.head_dim
        return self.kv_lora_rank + self.rope_head_dim


#: Qwen3-Next-80B-A3B (Qwen/Qwen3-Next-80B-A3B-Instruct config.json; transformers' Qwen3NextConfig): 48 layers,
#: full iff (i + 1) % full_attention_interval == 0 with interval 4 (12 full GQA layers, 16 query / 2 KV heads of
#: 256), 36 Gated DeltaNet layers with 32 value heads of a 128 x 128 state (16 key heads x 128), conv_dim
#: 2 x 16 x 128 + 32 x 128 = 8192, linear_conv_kernel_dim 4; max_position_embeddings 262,144.
QWEN3_NEXT = HybridModel(name="Qwen3-Next-80B-A3B", n_layers=48, full_layers=tuple(range(3, 48, 4)),
                         full_kind="gqa", n_kv_heads=2, head_dim=256, linear_kind="gated_deltanet", linear_heads=32,
                         linear_key_heads=16, d_k=128, d_v=128, conv_kernel=4,
                         max_context=262_144,
                         source="Qwen/Qwen3-Next-80B-A3B-Instruct config.json (full_attention_interval 4, "
                                "linear_num_value_heads 32, linear_key_head_dim 128, ...)")
#: Kimi-Linear-48B-A3B (moonshotai/Kimi-Linear-48B-A3B-Instruct config.json, linear_attn_config): 27 layers,
#: full_attn_layers 4, 8, ..., 24, 27 (1-based) = 3, 7, 11, 15, 19, 23, 26 (0-based) are MLA (d_c 512 + d_h^R 64
#: cached, no RoPE applied but the slot kept), 20 KDA layers of 32 heads x 128 (state 128 x 128 each), a short
#: convolution of kernel 4 over q, k and v: 3 x 32 x 128 = 12,288 channels; model_max_length 1,048,576.
KIMI_LINEAR = HybridModel(name="Kimi-Linear-48B-A3B", n_layers=27, full_layers=(3, 7, 11, 15, 19, 23, 26),
                          full_kind="mla", kv_lora_rank=512, rope_head_dim=64, linear_kind="kda", linear_heads=32,
                          linear_key_heads=32, d_k=128, d_v=128, conv_kernel=4, max_context=1_048_576,
                          source="moonshotai/Kimi-Linear-48B-A3B-Instruct config.json (linear_attn_config: "
                                 "full_attn_layers, kda_layers, num_heads 32, head_dim 128, short_conv_kernel_size 4)")
HYBRID_MODELS: dict[str, HybridModel] = {"qwen3-next-80b-a3b": QWEN3_NEXT, "kimi-linear-48b-a3b": KIMI_LINEAR}


def _hybrid_model(model: object) -> HybridModel:
    if isinstance(model, str) and model in HYBRID_MODELS:
        return HYBRID_MODELS[model]
    if isinstance(model, HybridModel):
        return model
    error = ValueError if isinstance(model, str) else ArgumentTypeError
    raise error(f"model={model!r} must be a HybridModel or one of {sorted(HYBRID_MODELS)}")


def linear_conv_channels(value_heads: int, d_k: int, d_v: int, key_heads: int | None = None) -> int:
    """Channels C of a linear-attention layer's short causal convolution, which runs over its q, k and v:

        C = 2 H_k d_k + H_v d_v

    with H_v = ``value_heads`` and H_k = ``key_heads`` (None: H_v, the course's layers). Qwen3-Next (16 key and
    32 value heads of 128): 8,192; Kimi Linear's KDA (32 and 32): 12,288."""
    check_positive_int("value_heads", value_heads)
    check_positive_int("d_k", d_k)
    check_positive_int("d_v", d_v)
    key_heads = value_heads if key_heads is None else check_positive_int("key_heads", key_heads)
    return 2 * key_heads * d_k + value_heads * d_v


def linear_state_bytes(n_heads: int, d_k: int, d_v: int, state_dtype: torch.dtype | str = torch.float32, *,
                       conv_channels: int = 0, conv_kernel: int = 0,
                       conv_dtype: torch.dtype | str = torch.bfloat16) -> int:
    """Bytes one linear-attention layer holds per sequence, at any context:

        n_heads x d_k x d_v x b_state  +  conv_channels x (conv_kernel - 1) x b_conv

    the recurrent state S (one d_k x d_v matrix per head; Katharopoulos' normaliser z, n_heads x d_k more, is
    left out: the delta rules have none) and the short convolution's last K - 1 inputs (none when
    ``conv_kernel`` is 0). Qwen3-Next: 32 x 128 x 128 x 4 + 8192 x 3 x 2 = 2,146,304 bytes."""
    check_positive_int("n_heads", n_heads)
    check_positive_int("d_k", d_k)
    check_positive_int("d_v", d_v)
    check_non_negative_int("conv_channels", conv_channels)
    check_non_negative_int("conv_kernel", conv_kernel)
    state = n_heads * d_k * d_v * _element_bytes(state_dtype)
    return state + conv_channels * max(conv_kernel - 1, 0) * _element_bytes(conv_dtype)


def state_crossover_context(state_bytes: int, bytes_per_token: int) -> int:
    """The shortest context L at which a full layer caching ``bytes_per_token`` per token holds more than a
    linear layer's fixed ``state_bytes``: floor(state / per-token) + 1. Below it the growing cache is the
    smaller one."""
    check_positive_int("state_bytes", state_bytes)
    check_positive_int("bytes_per_token", bytes_per_token)
    return state_bytes // bytes_per_token + 1


def hybrid_full_layers(n_layers: int, linear_per_full: int) -> tuple[int, ...]:
    """The full layers of an ``n_layers`` stack with ``linear_per_full`` linear layers before each full one:
    layer i is full iff (i + 1) % (r + 1) == 0 (Qwen3-Next's rule, ``full_attention_interval`` = r + 1).
    r = 0: every layer full; r >= n_layers: none."""
    check_positive_int("n_layers", n_layers)
    check_non_negative_int("linear_per_full", linear_per_full)
    return tuple(i for i in range(n_layers) if (i + 1) % (linear_per_full + 1) == 0)


def hybrid_cache_bytes(model: HybridModel | str, context: int, cache_dtype: torch.dtype | str = torch.bfloat16,
                       state_dtype: torch.dtype | str = torch.float32,
                       full_layers: tuple[int, ...] | None = None) -> dict[str, int]:
    """One sequence's cache in every layer of a hybrid at ``context`` L tokens:

        "full"     = n_full x L x (numbers per token) x b_cache            grows with L
        "linear"   = n_linear x :func:`linear_state_bytes`                  fixed
        "total"    = full + linear
        "all_full" = n_layers x L x (numbers per token) x b_cache          the same stack with no linear layer

    ``full_layers`` replaces the model's pattern (e.g. from :func:`hybrid_full_layers`) to ask "what if"."""
    m = _hybrid_model(model)
    check_non_negative_int("context", context)
    if full_layers is not None:
        m = dataclasses.replace(m, full_layers=full_layers)  # __post_init__ checks the indices
    per_token = m.full_numbers_per_token() * _element_bytes(cache_dtype)
    state = linear_state_bytes(m.linear_heads, m.d_k, m.d_v, state_dtype, conv_channels=m.conv_channels,
                               conv_kernel=m.conv_kernel, conv_dtype=cache_dtype)
    full = m.n_full * context * per_token
    linear = m.n_linear * state
    return {"full": full, "linear": linear, "total": full + linear, "all_full": m.n_layers * context * per_token}


def linear_decode_flops(n_heads: int, d_k: int, d_v: int) -> int:
    """FLOPs of one decode step of a (gated) delta-rule layer's core, per token, at any context: three
    d_k x d_v products per head, the read S^T k, the rank-1 write k u^T and the read-out S^T q (2 FLOPs per
    MAC each, the convention above), 6 n_heads d_k d_v; the gate's scaling of S and the projections are left
    out, as softmax and the projections are in :func:`decode_attention_flops`."""
    check_positive_int("n_heads", n_heads)
    check_positive_int("d_k", d_k)
    check_positive_int("d_v", d_v)
    return 3 * 2 * n_heads * d_k * d_v


# One Gated DeltaNet layer of :mod:`attnlab.linear_attention` (``LinearAttentionConfig(rule="gated_delta")``): n_h
# heads with keys and queries of d_k and values of d_v, a depthwise causal convolution of K taps over the
# C = n_h (2 d_k + d_v) q, k, v channels; its cache, a :class:`~attnlab.linear_attention.RecurrentState`, is the
# state S (n_h d_k d_v) and the K - 1 last inputs of the convolution (C (K - 1)), whatever the context.


def linear_weight_elements(d_model: int, n_heads: int, d_k: int, d_v: int, conv_size: int = 4) -> int:
    """Parameters of one Gated DeltaNet layer:

        d n_h (2 d_k + d_v) + n_h d_v d + C K + 2 d n_h + 2 n_h
        (W_q, W_k, W_v; W_o; the convolution; W_beta and W_a; A_log and dt_bias), C = n_h (2 d_k + d_v)."""
    for name, value in (("d_model", d_model), ("n_heads", n_heads), ("d_k", d_k), ("d_v", d_v)):
        check_positive_int(name, value)
    check_non_negative_int("conv_size", conv_size)
    channels = linear_conv_channels(n_heads, d_k, d_v)
    return d_model * channels + n_heads * d_v * d_model + channels * conv_size + 2 * d_model * n_heads + 2 * n_heads


def linear_layer_decode_flops(d_model: int, n_heads: int, d_k: int, d_v: int, conv_size: int = 4) -> int:
    """FLOPs of one Gated DeltaNet decode step, whole layer, at any context (2 per MAC):

        2 (d C + n_h d_v d + 2 d n_h)   projections (q, k, v; o; beta and the gate's a)
        + 2 C K                         the convolution over the new input and the K - 1 kept ones
        + 6 n_h d_k d_v                 the recurrence's three products, :func:`linear_decode_flops`

    with C = n_h (2 d_k + d_v); norms, SiLU, the gate's exp and softplus left out as everywhere here."""
    for name, value in (("d_model", d_model), ("n_heads", n_heads), ("d_k", d_k), ("d_v", d_v)):
        check_positive_int(name, value)
    check_non_negative_int("conv_size", conv_size)
    channels = linear_conv_channels(n_heads, d_k, d_v)
    projections = d_model * channels + n_heads * d_v * d_model + 2 * d_model * n_heads
    return 2 * projections + 2 * channels * conv_size + linear_decode_flops(n_heads, d_k, d_v)


def linear_decode_bytes(d_model: int, n_heads: int, d_k: int, d_v: int, dtype: torch.dtype | str,
                        conv_size: int = 4, state_dtype: torch.dtype | str | None = None) -> dict[str, int]:
    """Bytes one Gated DeltaNet decode step moves, at any context: {"read": b :func:`linear_weight_elements` +
    the state it reads, "written": the state it writes back}, the state being :func:`linear_state_bytes`
    (S in ``state_dtype``, None: ``dtype``, as :class:`~attnlab.linear_attention.LinearAttention` keeps it; the
    K - 1 convolution inputs in ``dtype``). The step replaces both: S_t = alpha_t (I - beta_t k_t k_t^T) S_{t-1}
    + beta_t k_t v_t^T touches every number of S, and the convolution's window moves by one input."""
    state = linear_state_bytes(n_heads, d_k, d_v, dtype if state_dtype is None else state_dtype,
                               conv_channels=linear_conv_channels(n_heads, d_k, d_v), conv_kernel=conv_size,
                               conv_dtype=dtype)
    weights = linear_weight_elements(d_model, n_heads, d_k, d_v, conv_size) * _element_bytes(dtype)
    return {"read": weights + state, "written": state}
