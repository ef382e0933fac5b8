"""The attention schemes of the course, each defined once: name, colour, what it caches, how to build it.

One frozen :class:`Scheme` record per scheme, in the course's order (:data:`SCHEMES`):

    MHA  multi-head attention        caches k, v          2 n_h d_h numbers per token and layer
    MQA  multi-query attention       caches k, v          2 d_h
    GQA  grouped-query attention     caches k, v          2 n_g d_h
    MLA  multi-head latent attention caches c_kv, k_rope  d_c + d_h^R
    DSA  DeepSeek Sparse Attention   caches c_kv, k_rope, index_key   d_c + d_h^R + d^I

and the two ways the benchmark runs MLA's decode step, as variants of MLA (:data:`VARIANTS`, ``base="mla"``):
``mla_naive`` re-expands every cached latent into per-head keys and values, ``mla_absorbed`` folds W^UK and W^UV
into the query and output and attends in latent space (DeepSeek's default). Chapter 17 adds two variants of GQA
(``base="gqa"``) that cache the same numbers per held token but hold fewer: ``gqa_window`` (a sliding window
with sink tokens, :mod:`attnlab.window`) and ``gqa_shared`` (every second layer reads the K/V below). Chapter 18
adds ``gqa_hybrid``: GQA in one layer of four, Gated DeltaNet (:mod:`attnlab.linear_attention`) in the others,
whose caches are fixed-size states; its record's layer is the full one, ``build_layer(shape, linear=True)`` a
linear one.

Every module that lists, names, colours or sizes schemes reads them here: :mod:`attnlab.costs` (what each one
costs), :mod:`attnlab.sizing`, :mod:`attnlab.bench`, :mod:`attnlab.model`, :mod:`attnlab.plots` and the widgets.
A new scheme is one more record here (its cache rule, colour, layer builder), plus its formulas in
:mod:`attnlab.costs` if its arithmetic differs from the existing kinds.

This module imports no layer module at import time (the layer builders import theirs when called), so every
other module can import it without a cycle.

The benchmark also times the newer layers of chapters 17-20 beside these (:data:`NEWER_SCHEMES`: a sliding
window, Gated DeltaNet, Quest block selection, DeepSeek-V4's CSA and HCA); each has a :class:`NewerScheme`,
its name, colour and marker, since what they cache is no count per token.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from attnlab._validate import ArgumentTypeError

if TYPE_CHECKING:
    from torch import nn

    from attnlab.costs import AttentionShape


@dataclass(frozen=True, kw_only=True)
class SchemeName:
    """What every figure and table needs to show a scheme: key (the name code passes around), label (how
    tables and legends write it), name (the full name), description (one sentence), color and marker (its
    colour and matplotlib marker in every figure). :class:`Scheme` and :class:`NewerScheme` start with it."""

    key: str
    label: str
    name: str
    description: str
    color: str
    marker: str

    def __post_init__(self) -> None:
        for name in ("key", "label", "name", "description", "marker"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ArgumentTypeError(f"{name}={getattr(self, name)!r} must be a non-empty string")
        if not re.fullmatch(r"#[0-9a-f]{6}", self.color):
            raise ValueError(f"color={self.color!r} must be a colour '#rrggbb' (lower-case hex)")


@dataclass(frozen=True, kw_only=True)
class Scheme(SchemeName):
    """One attention scheme.

    key: the name code passes around ("mha", "mla_absorbed"); label: how tables and legends write it ("MHA",
    "MLA absorbed"); name: the full name; description: one sentence on what it shares or compresses;
    color, marker: its colour and matplotlib marker in every figure.
    caches: the tensors its layer keeps in a :class:`~attnlab.kv_cache.LayerCache`, by the names the layers
    use; cache(shape): numbers each of them holds per token and layer, {name: count} (their sum is the
    DeepSeek-V2 paper's Table 1 entry); formula: that sum written with the shape's numbers, a
    ``str.format`` template over the fields of :class:`~attnlab.costs.AttentionShape`.
    kv_heads(shape): K/V heads of a dense scheme (one built by :class:`~attnlab.gqa.GroupedQueryAttention`),
    None for the latent ones. layer_config(shape, **options) and build_layer(shape, **options): the layer's
    config (DSA: the (MLAConfig, IndexerConfig) pair) and a randomly initialised layer; ``options`` go to
    the (MLA) config. mode: how an MLA-family layer runs a decode step ("naive" or "absorbed", the layers'
    ``mode=``); base: for a variant, the scheme it is a way of running; indexer: the layer has a lightning
    indexer and attends to its top-k tokens; table1: one of the four rows of the DeepSeek-V2 paper's
    Table 1 (what :mod:`attnlab.sizing` compares); trainer: the module whose ``main`` trains the tiny
    checkpoint ``tiny_<key>`` (None for variants); every_layer: every layer caches ``cache(shape)`` per token
    at any context, so a model's cache is l times one layer's (False for the window, shared-KV and hybrid
    variants, whose layers differ: :func:`attnlab.costs.windowed_cache_bytes`, ``hybrid_cache_bytes`` and
    :func:`attnlab.sizing.kv_cache_bytes` count them layer by layer).
    """

    caches: tuple[str, ...]
    cache: Callable[[AttentionShape], dict[str, int]]
    formula: str
    kv_heads: Callable[[AttentionShape], int] | None = None
    layer_config: Callable[..., object]
    build_layer: Callable[..., nn.Module]
    mode: str | None = None
    base: str | None = None
    indexer: bool = False
    table1: bool = False
    trainer: str | None = None
    every_layer: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.formula, str) or not self.formula:
            raise ArgumentTypeError(f"formula={self.formula!r} must be a non-empty string")
        if not isinstance(self.caches, tuple) or not self.caches or not all(isinstance(c, str) for c in self.caches):
            raise ArgumentTypeError(f"caches={self.caches!r} must be a non-empty tuple of cached tensor names")
        for name in ("cache", "layer_config", "build_layer"):
            if not callable(getattr(self, name)):
                raise ArgumentTypeError(f"{name}={getattr(self, name)!r} must be callable (it takes a shape)")
        if self.kv_heads is not None and not callable(self.kv_heads):
            raise ArgumentTypeError(f"kv_heads={self.kv_heads!r} must be None or callable (it takes a shape)")
        if self.mode not in (None, "naive", "absorbed"):
            raise ValueError(f"mode={self.mode!r} must be None, 'naive' or 'absorbed'")
        if self.base is not None and not isinstance(self.base, str):
            raise ArgumentTypeError(f"base={self.base!r} must be None or a scheme name")
        for name in ("indexer", "table1", "every_layer"):
            if not isinstance(getattr(self, name), bool):
                raise ArgumentTypeError(f"{name}={getattr(self, name)!r} must be True or False")

    @property
    def dense(self) -> bool:
        """True for MHA, MQA and GQA: plain keys and values in K/V heads."""
        return self.kv_heads is not None

    def describe(self, shape: AttentionShape) -> str:
        """What the scheme keeps per token, in a few words: "8 KV heads", "1 KV head", "d_c 512 + d_h^R 64"."""
        if self.kv_heads is not None:
            n = self.kv_heads(shape)
            return f"{n} KV head{'' if n == 1 else 's'}"
        widths = [f"d_c {shape.kv_lora_rank}", f"d_h^R {shape.qk_rope_head_dim}"]
        return " + ".join(widths + ([f"d^I {shape.index_head_dim}"] if self.indexer else []))


# ----------------------------------------------------------------------------------------------------
# what each scheme caches per token and layer: {cached tensor: numbers} (DeepSeek-V2 paper, Table 1)


def _mha_cache(s: AttentionShape) -> dict[str, int]:  # 2 n_h d_h: a key and a value for every head
    return {"k": s.n_heads * s.head_dim, "v": s.n_heads * s.v_head_dim}


def _mqa_cache(s: AttentionShape) -> dict[str, int]:  # 2 d_h: one key and one value for all heads
    return {"k": s.head_dim, "v": s.v_head_dim}


def _gqa_cache(s: AttentionShape) -> dict[str, int]:  # 2 n_g d_h: one key and one value per group
    return {"k": s.n_kv_heads * s.head_dim, "v": s.n_kv_heads * s.v_head_dim}


def _mla_cache(s: AttentionShape) -> dict[str, int]:  # d_c + d_h^R: the latent and one shared RoPE key
    return {"c_kv": s.kv_lora_rank, "k_rope": s.qk_rope_head_dim}


def _dsa_cache(s: AttentionShape) -> dict[str, int]:  # d_c + d_h^R + d^I: MLA's, plus one index key
    return {**_mla_cache(s), "index_key": s.index_head_dim}


# ----------------------------------------------------------------------------------------------------
# how each scheme's layer is built (the layer modules are imported when a layer is built, not before)


def _dense_config(kv_heads: Callable[[AttentionShape], int]) -> Callable[..., object]:
    def config(shape: AttentionShape, **options):
        from attnlab.gqa import AttentionConfig

        if shape.v_head_dim != shape.head_dim:
            raise ValueError(f"v_head_dim={shape.v_head_dim} must equal head_dim={shape.head_dim}: "
                             "GroupedQueryAttention keeps keys and values of one width")
        return AttentionConfig(shape.d_model, shape.n_heads, kv_heads(shape), shape.head_dim, **options)

    return config


def _build_dense(kv_heads: Callable[[AttentionShape], int]) -> Callable[..., nn.Module]:
    def build(shape: AttentionShape, **options) -> nn.Module:
        from attnlab.gqa import GroupedQueryAttention

        return GroupedQueryAttention(_dense_config(kv_heads)(shape, **options))

    return build


def _mla_config(shape: AttentionShape, **options):
    from attnlab.mla import MLAConfig

    return MLAConfig(d_model=shape.d_model, n_heads=shape.n_heads, kv_lora_rank=shape.kv_lora_rank,
                     qk_nope_head_dim=shape.head_dim, qk_rope_head_dim=shape.qk_rope_head_dim,
                     v_head_dim=shape.v_head_dim, q_lora_rank=shape.q_lora_rank or None, **options)


def _build_mla(shape: AttentionShape, **options) -> nn.Module:
    from attnlab.mla import MultiHeadLatentAttention

    return MultiHeadLatentAttention(_mla_config(shape, **options))


def _dsa_config(shape: AttentionShape, **options) -> tuple[object, object]:
    from attnlab.dsa import indexer_config_for

    mla = _mla_config(shape, **options)
    return mla, indexer_config_for(mla, shape.index_n_heads, shape.index_head_dim, shape.index_topk)


def _build_dsa(shape: AttentionShape, **options) -> nn.Module:
    from attnlab.dsa import DeepSeekSparseAttention

    return DeepSeekSparseAttention(*_dsa_config(shape, **options))


def _all_heads(s: AttentionShape) -> int:
    return s.n_heads


def _one_head(s: AttentionShape) -> int:
    return 1


def _groups(s: AttentionShape) -> int:
    return s.n_kv_heads


# ----------------------------------------------------------------------------------------------------
# the records

MHA = Scheme(
    key="mha", label="MHA", name="multi-head attention", color="#4c72b0", marker="o",
    description="every query head has its own key and value (Vaswani et al. 2017)",
    caches=("k", "v"), cache=_mha_cache, formula="2 n_h d_h = 2 × {n_heads} × {head_dim}",
    kv_heads=_all_heads, layer_config=_dense_config(_all_heads), build_layer=_build_dense(_all_heads),
    table1=True, trainer="attnlab.train")

MQA = Scheme(
    key="mqa", label="MQA", name="multi-query attention", color="#c44e52", marker="^",
    description="one key and one value shared by all query heads (Shazeer 2019)",
    caches=("k", "v"), cache=_mqa_cache, formula="2 d_h = 2 × {head_dim}",
    kv_heads=_one_head, layer_config=_dense_config(_one_head), build_layer=_build_dense(_one_head),
    table1=True, trainer="attnlab.train")

GQA = Scheme(
    key="gqa", label="GQA", name="grouped-query attention", color="#55a868", marker="s",
    description="n_g groups of query heads share one key and value each (Ainslie et al. 2023)",
    caches=("k", "v"), cache=_gqa_cache, formula="2 n_g d_h = 2 × {n_kv_heads} × {head_dim}",
    kv_heads=_groups, layer_config=_dense_config(_groups), build_layer=_build_dense(_groups),
    table1=True, trainer="attnlab.train")

MLA = Scheme(
    key="mla", label="MLA", name="multi-head latent attention", color="#8172b2", marker="D",
    description="one compressed latent c^KV and one decoupled RoPE key k^R per token, shared by all heads, "
                "which rebuild their own keys and values from it (DeepSeek-V2)",
    caches=("c_kv", "k_rope"), cache=_mla_cache, formula="d_c + d_h^R = {kv_lora_rank} + {qk_rope_head_dim}",
    layer_config=_mla_config, build_layer=_build_mla, mode="absorbed", table1=True, trainer="attnlab.train")

DSA = Scheme(
    key="dsa", label="DSA", name="DeepSeek Sparse Attention", color="#64b5cd", marker="v",
    description="MLA whose queries each read only the top-k tokens a lightning indexer picks (DeepSeek-V3.2)",
    caches=("c_kv", "k_rope", "index_key"), cache=_dsa_cache,
    formula="d_c + d_h^R + d^I = {kv_lora_rank} + {qk_rope_head_dim} + {index_head_dim}",
    layer_config=_dsa_config, build_layer=_build_dsa, mode="absorbed", indexer=True,
    trainer="attnlab.dsa_training")

MLA_NAIVE = replace(
    MLA, key="mla_naive", label="MLA naive", marker="x", base="mla", mode="naive", table1=False, trainer=None,
    description="MLA decoding by re-expanding every cached latent into per-head keys and values")

MLA_ABSORBED = replace(
    MLA, key="mla_absorbed", label="MLA absorbed", marker="D", base="mla", mode="absorbed", table1=False,
    trainer=None, description="MLA decoding with W^UK folded into the query and W^UV into the output, in latent "
                              "space (DeepSeek-V3's default)")

# ----------------------------------------------------------------------------------------------------
# chapter 17: GQA whose layers slide over a window, or read another layer's K/V (attnlab.window)

#: The tiny checkpoints' settings of chapter 17's variants (``TinyLMConfig`` fields on top of GQA), and the
#: layers' defaults when a record builds one: a window of 32 with 4 sink tokens; every second layer shared.
WINDOW_DEFAULTS: dict[str, int] = {"window": 32, "n_sinks": 4}
SHARED_KV_DEFAULTS: dict[str, int] = {"kv_share": 2}


def _build_window(shape: AttentionShape, window: int = WINDOW_DEFAULTS["window"],
                  n_sinks: int = WINDOW_DEFAULTS["n_sinks"], learned_sink: bool = False, **options) -> nn.Module:
    from attnlab.window import WindowConfig, WindowedAttention

    return WindowedAttention(_dense_config(_groups)(shape, **options), WindowConfig(window, n_sinks, learned_sink))


def _build_shared_source(shape: AttentionShape, **options) -> nn.Module:
    from attnlab.window import WindowedAttention

    return WindowedAttention(_dense_config(_groups)(shape, **options))


GQA_WINDOW = replace(
    GQA, key="gqa_window", label="GQA window", marker="P", color="#dd8452", base="gqa", table1=False,
    description="GQA whose queries see only the last W tokens and the first S (sinks), so a layer caches at most "
                "S + W tokens in a ring (Mistral 7B; StreamingLLM, Xiao et al. 2023)",
    formula="2 n_g d_h = 2 × {n_kv_heads} × {head_dim} per held token, min(L, S + W) tokens held",
    build_layer=_build_window, trainer="attnlab.train", every_layer=False)

GQA_SHARED = replace(
    GQA, key="gqa_shared", label="GQA shared KV", marker="X", color="#937860", base="gqa", table1=False,
    description="GQA where every second layer reads the K/V of the layer below and caches nothing "
                "(CLA, Brandon et al. 2024)",
    formula="2 n_g d_h = 2 × {n_kv_heads} × {head_dim} in each layer that owns a cache, 0 in a layer that reads one",
    build_layer=_build_shared_source, trainer="attnlab.train", every_layer=False)

# ----------------------------------------------------------------------------------------------------
# chapter 18: GQA in one layer of four, Gated DeltaNet in the others (attnlab.linear_attention)

#: The tiny hybrid's setting (a ``TinyLMConfig`` field on top of GQA): layer i is full GQA iff (i + 1) % 4 == 0,
#: the others Gated DeltaNet, as Qwen3-Next-80B-A3B (``full_attention_interval`` 4).
HYBRID_DEFAULTS: dict[str, int] = {"full_every": 4}


def _build_hybrid(shape: AttentionShape, linear: bool = False, **options) -> nn.Module:
    """A layer of the hybrid: its full GQA layer, or with ``linear=True`` one of its Gated DeltaNet layers (a
    :class:`~attnlab.linear_attention.LinearAttention` with the shape's heads and widths; ``options`` then go
    to its :class:`~attnlab.linear_attention.LinearAttentionConfig`, e.g. ``chunk_size``)."""
    if not linear:
        return _build_dense(_groups)(shape, **options)
    from attnlab.linear_attention import LinearAttention, LinearAttentionConfig

    return LinearAttention(LinearAttentionConfig(shape.d_model, shape.n_heads, shape.head_dim, shape.v_head_dim,
                                                 rule="gated_delta", **options))


GQA_HYBRID = replace(
    GQA, key="gqa_hybrid", label="GQA hybrid 3:1", marker="h", color="#da8bc3", base="gqa", table1=False,
    description="GQA in one layer of four and Gated DeltaNet, a fixed-size state, in the other three: "
                "Qwen3-Next's 3:1 layout (full iff (i + 1) % 4 == 0; Yang, Kautz, Hatamizadeh 2025)",
    formula="2 n_g d_h = 2 × {n_kv_heads} × {head_dim} per token in each full layer (one in "
            f"{HYBRID_DEFAULTS['full_every']}); a linear layer holds a fixed state instead, at any context",
    build_layer=_build_hybrid, trainer="attnlab.train", every_layer=False)

#: The course's schemes, in chapter order (chapters 2-4, 5, 6, 7-9, 10-12).
SCHEMES: dict[str, Scheme] = {s.key: s for s in (MHA, MQA, GQA, MLA, DSA)}
#: Ways of running a scheme that the benchmark times apart; each names its scheme in ``base``.
VARIANTS: dict[str, Scheme] = {s.key: s for s in (MLA_NAIVE, MLA_ABSORBED, GQA_WINDOW, GQA_SHARED, GQA_HYBRID)}
#: The DeepSeek-V2 paper's Table 1, the four cache layouts :mod:`attnlab.sizing` compares: MHA, MQA, GQA, MLA.
TABLE1_SCHEMES: tuple[str, ...] = tuple(key for key, s in SCHEMES.items() if s.table1)
#: What ``python -m attnlab.bench`` times, in its table's order: the dense schemes by shrinking cache, MLA's two
#: decode forms, DSA.
BENCH_SCHEMES: tuple[str, ...] = ("mha", "gqa", "mqa", "mla_naive", "mla_absorbed", "dsa")


# ----------------------------------------------------------------------------------------------------
# chapters 17-20 in the benchmark: layers timed beside BENCH_SCHEMES whose caches no per-token rule describes


@dataclass(frozen=True, kw_only=True)
class NewerScheme(SchemeName):
    """How the benchmark names and draws a scheme of chapters 17-20 that it times beside :data:`BENCH_SCHEMES`
    (:data:`attnlab.bench.NEWER_SCHEMES`): key, label, name, description, color, marker as in :class:`Scheme`,
    ``chapter`` the chapter that builds it and ``module`` the layer module. What its layer caches and costs
    is in that module and in :mod:`attnlab.costs`: a window's ring, a fixed recurrent state, a cache with
    per-block summaries, compressed entries; none of them is a count per token and layer."""

    chapter: int
    module: str

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.module, str) or not self.module:
            raise ArgumentTypeError(f"module={self.module!r} must be a non-empty string")
        if isinstance(self.chapter, bool) or not isinstance(self.chapter, int) or self.chapter < 1:
            raise ArgumentTypeError(f"chapter={self.chapter!r} must be a positive chapter number")


#: The newer schemes the benchmark times, in the order of the course: chapter 17's sliding window (GQA_WINDOW's
#: own name and colour), 18's Gated DeltaNet, 19's Quest block selection, 20's two DeepSeek-V4 layer types.
NEWER_SCHEMES: dict[str, NewerScheme] = {s.key: s for s in (
    NewerScheme(key=GQA_WINDOW.key, label=GQA_WINDOW.label, name="sliding-window GQA with sinks",
                description=GQA_WINDOW.description, color=GQA_WINDOW.color, marker=GQA_WINDOW.marker, chapter=17,
                module="attnlab.window"),
    NewerScheme(key="gated_deltanet", label="Gated DeltaNet", name="Gated DeltaNet (linear attention)",
                description="a fixed d_k x d_v state per head, faded by a gate and written by the delta rule, "
                            "instead of a cache (Yang et al. 2025; Qwen3-Next's linear layers)",
                color="#da8bc3", marker="h", chapter=18, module="attnlab.linear_attention"),
    NewerScheme(key="quest", label="Quest blocks", name="block-sparse selection (Quest)",
                description="GQA whose queries read only the top-n blocks of B tokens by an upper bound from each "
                            "block's key min and max (Tang et al. 2024)",
                color="#ccb974", marker="p", chapter=19, module="attnlab.block_sparse"),
    NewerScheme(key="v4_csa", label="V4 CSA", name="DeepSeek-V4 compressed sparse attention",
                description="a window of raw tokens plus one entry per 4 tokens, of which an indexer picks the "
                            "top k (DeepSeek-V4)",
                color="#2a9d8f", marker="<", chapter=20, module="attnlab.v4"),
    NewerScheme(key="v4_hca", label="V4 HCA", name="DeepSeek-V4 heavily compressed attention",
                description="a window of raw tokens plus one entry per 128 tokens, every one read (DeepSeek-V4)",
                color="#6a4c93", marker=">", chapter=20, module="attnlab.v4"),
)}


def get_scheme(key: object, name: str = "key", among: tuple[str, ...] | None = None) -> Scheme:
    """The record of ``key``: a scheme of :data:`SCHEMES` or a variant of :data:`VARIANTS` (a :class:`Scheme`
    passes through). ``among`` narrows what is accepted (e.g. :data:`TABLE1_SCHEMES`); anything else raises
    ValueError naming the argument as ``name`` ("scheme='sparse' must be one of ..."), a non-string key
    :class:`~attnlab._validate.ArgumentTypeError`."""
    allowed = (*SCHEMES, *VARIANTS) if among is None else tuple(among)
    if isinstance(key, Scheme):
        key = key.key
    if not isinstance(key, str):
        raise ArgumentTypeError(f"{name}={key!r} must be a scheme name, one of {allowed}")
    if key not in allowed or (key not in SCHEMES and key not in VARIANTS):
        raise ValueError(f"{name}={key!r} must be one of {allowed}")
    return SCHEMES.get(key) or VARIANTS[key]


def variants(key: object) -> tuple[Scheme, ...]:
    """The variants of scheme ``key`` ("mla" -> mla_naive, mla_absorbed; () for the others)."""
    base = get_scheme(key).key
    return tuple(s for s in VARIANTS.values() if s.base == base)
