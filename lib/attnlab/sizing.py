"""KV-cache sizing for real models: how many bytes one token of context costs, and how many tokens fit.

While a model generates, every new token attends to every earlier one, so each layer keeps the keys
and values of all earlier tokens: the KV cache. Per token and layer it holds (DeepSeek-V2 paper,
arXiv 2405.04434, Table 1; n_h query heads, n_g KV heads, d_h head width, l layers)

    MHA   2 n_h d_h        every query head has its own key and value
    GQA   2 n_g d_h        n_g groups of query heads share one key and value each
    MQA   2 d_h            one key and one value shared by all heads
    MLA   d_c + d_h^R      one latent c^KV (width d_c) plus one decoupled RoPE key k^R (width d_h^R)

numbers, times l for the whole model when every layer attends to every earlier token.

Many current models do not: their configs list each layer's kind (Hugging Face ``layer_types``). A
sliding-window layer attends to the last W tokens only (``sliding_window``; Mistral-7B-v0.1, Gemma 2/3/4,
gpt-oss), so its cache holds min(T, W) of T tokens; a layer that reads an earlier layer's keys and values
(Gemma 4's ``num_kv_shared_layers``) holds none. The sizing is therefore layer by layer,

    bytes(T) = batch x sum over layers i of  tokens_i(T) x (numbers per token of layer i) x b
    tokens_i(T) = T (full),  min(T, W) (sliding),  0 (shared)

(:func:`layer_tokens`, :func:`layer_cache_bytes`; :func:`kv_cache_bytes` is their sum). Two more kinds of
layer hold something else than one entry per token:

* a linear-attention layer (Gated DeltaNet in Qwen3-Next, Kimi Delta Attention in Kimi Linear) folds every
  token into a fixed state, one d_k x d_v matrix per value head plus the last K - 1 inputs of its short
  convolution, whatever the context (:func:`linear_state_elements`): bytes_i(T) = [T > 0] x state x b;
* a DeepSeek-V4 layer keeps its last W = 128 tokens raw, one compressed entry per m tokens (CSA m = 4, HCA
  m = 128, none on a sliding-only layer) and, in a CSA layer, one index key per entry, every entry one
  512-wide vector that is key and value at once (:func:`attnlab.costs.v4_layer_cache_entries`):
  bytes_i(T) = (min(T, W) + floor(T / m)) x entry bytes + [CSA] floor(T / m) x index-key bytes.

For a model with
windows no single "bytes per token" exists: up to the window every layer keeps the new token, past it only
the full layers do, so the cache grows more slowly and, with no full layer at all, stops growing.
:data:`MODELS` holds the published shapes of real models.

The counts themselves live in :mod:`attnlab.costs` (one function per quantity, over an
:class:`~attnlab.costs.AttentionShape`) and what each scheme caches in :mod:`attnlab.schemes`; this module
applies them to published models, by name, as published or "what if it used scheme X"
(:meth:`ModelSpec.attention_shape` gives the shape a sizing uses).

``dtype`` is the storage of every cached number. DeepSeek-V3.2 (MLA with DeepSeek Sparse Attention) caches,
per token and layer, MLA's 512 + 64 numbers and its lightning indexer's 128-wide index key, so in bfloat16
(576 + 128) x 2 B. DeepSeek's own kernels store a different, mixed layout (FlashMLA's FP8 entry of 656 B
and an FP8 index key of 132 B): that is a second, named format, ``cache_format="deepseek-fp8"``
(:data:`CACHE_FORMATS`, :func:`cache_layouts`), never the default.

For MLA models ``head_dim`` is the per-head value (and non-RoPE key) width d_h = 128, which is what the
MHA/MQA/GQA comparisons use; the query/key head is 192 wide (128 + 64) but that is not what is cached.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import lru_cache

import torch

from attnlab import costs
from attnlab._validate import (
    ArgumentTypeError,
    check_bool,
    check_divisible,
    check_even,
    check_non_negative_int,
    check_positive_int,
    check_real,
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
from attnlab.costs import (  # noqa: F401 (DTYPES_BY_NAME: re-exported)
    DEEPSEEK_V4_FLASH,
    DEEPSEEK_V4_PRO,
    DTYPES_BY_NAME,
    KIMI_LINEAR,
    QWEN3_NEXT,
    V4_RATIO_TYPES,
    AttentionShape,
    HybridModel,
    V4Model,
    get_dtype,
    linear_conv_channels,
)
from attnlab.devices import dtype_bytes
from attnlab.schemes import TABLE1_SCHEMES, get_scheme

#: The attention schemes the sizing compares, in the course's order: the DeepSeek-V2 paper's Table 1
#: (:data:`attnlab.schemes.TABLE1_SCHEMES`). DSA caches MLA's entries plus an index key
#: (:func:`indexer_elements_per_token`).
SCHEMES: tuple[str, ...] = TABLE1_SCHEMES

GIB = 2**30  # bytes in one GiB (the unit GPU memory is sold in)

#: Published byte layouts a sizing may use instead of one dtype for every cached number (``cache_format=``):
#: name -> (the MLA entry's layout, the index key's layout). "deepseek-fp8": FlashMLA's FP8 entry, 512 e4m3 +
#: 4 fp32 scales + 64 bf16 = 656 B, and DeepSeek-V3.2's FP8 index key, 128 e4m3 + 1 fp32 scale = 132 B
#: (:mod:`attnlab.cache_formats`, with sources). The index key counts only for a model with an indexer.
CACHE_FORMATS: dict[str, tuple[ByteLayout, ByteLayout]] = {
    "deepseek-fp8": (DEEPSEEK_V32_FP8_MLA, DEEPSEEK_V32_FP8_INDEX_KEY),
}
#: The same formats for a DeepSeek-V4 layer: (its entry, its index key). "deepseek-fp8": the 584-byte FP8 entry
#: (448 e4m3 + 64 bf16 RoPE + 7 ue8m0 scales + 1 pad) and the 68-byte FP4 index key, the layouts of DeepSeek's
#: published V4 vs V3.2 comparison (:data:`attnlab.costs.V4_CACHE_FORMATS` "fp8").
V4_CACHE_FORMATS: dict[str, tuple[ByteLayout, ByteLayout]] = {
    "deepseek-fp8": (DEEPSEEK_V4_FP8_ENTRY, DEEPSEEK_V4_FP4_INDEX_KEY),
}

#: The kinds of layer a :class:`ModelSpec` lists in ``layer_types`` (Hugging Face writes "full_attention",
#: "sliding_attention", "linear_attention", ...): a full layer attends to (and caches) every earlier token, a
#: sliding one the last ``sliding_window``; a linear one (Gated DeltaNet, KDA) keeps a fixed state; "v4-sliding",
#: "csa" and "hca" are DeepSeek-V4's layers (config ``compress_ratios`` 0, 4, 128), sized from ``ModelSpec.v4``.
LAYER_TYPES: tuple[str, ...] = ("full", "sliding", "linear", "v4-sliding", "csa", "hca")
#: DeepSeek-V4's layer kinds here, from :data:`attnlab.costs.V4_RATIO_TYPES`' names ("sliding" there).
V4_LAYER_TYPES: dict[str, str] = {"sliding": "v4-sliding", "csa": "csa", "hca": "hca"}
_V4_COST_TYPES = {kind: name for name, kind in V4_LAYER_TYPES.items()}  # back to costs' names


def v4_layer_types(v4: V4Model) -> tuple[str, ...]:
    """The ``layer_types`` of a DeepSeek-V4 model: its config's ``compress_ratios`` read as kinds, 0 ->
    "v4-sliding", 4 -> "csa", 128 -> "hca" (Hugging Face ``_COMPRESS_RATIO_TO_LAYER_TYPE``)."""
    check_type("v4", v4, V4Model)
    return tuple(V4_LAYER_TYPES[V4_RATIO_TYPES[r]] for r in v4.compress_ratios)


def hybrid_shape(model: HybridModel) -> dict[str, object]:
    """The :class:`ModelSpec` fields of a published linear/full hybrid, read from its
    :class:`~attnlab.costs.HybridModel` (the one record of its layers): name, n_layers, layer_types ("full" at
    ``full_layers``, "linear" elsewhere), the linear layers' heads, widths and convolution, max_context, and the
    full layers' cached widths (GQA: n_kv_heads, head_dim; MLA: kv_lora_rank, qk_rope_head_dim)."""
    m = check_type("model", model, HybridModel, "a costs.HybridModel (costs.QWEN3_NEXT, costs.KIMI_LINEAR)")
    full = ({"n_kv_heads": m.n_kv_heads, "head_dim": m.head_dim} if m.full_kind == "gqa"
            else {"kv_lora_rank": m.kv_lora_rank, "qk_rope_head_dim": m.rope_head_dim})
    return {"name": m.name, "n_layers": m.n_layers, "max_context": m.max_context,
            "layer_types": tuple("full" if i in m.full_layers else "linear" for i in range(m.n_layers)),
            "linear_key_heads": m.linear_key_heads, "linear_key_dim": m.d_k, "linear_value_heads": m.linear_heads,
            "linear_value_dim": m.d_v, "linear_conv_kernel": m.conv_kernel, **full}


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """The attention shape of one model, as its published config gives it.

    n_layers: decoder layers l; n_heads: query heads n_h; n_kv_heads: key/value heads n_g (MHA: n_h,
    MQA: 1); head_dim: the cached K/V head width d_h (for MLA the value/no-RoPE width, 128);
    attention: "mha" | "mqa" | "gqa" | "mla"; kv_lora_rank: MLA's latent width d_c; qk_rope_head_dim:
    MLA's decoupled RoPE key width d_h^R. A non-MLA model may carry d_c and d_h^R too: they are then
    the shape a what-if ``scheme="mla"`` uses (0 means the DeepSeek-V2 paper's d_c = 4 d_h,
    d_h^R = d_h / 2). n_params: total parameters (0 when unknown); max_context: the published
    ``max_position_embeddings``; q_lora_rank: MLA's query latent d'_c (0: none); index_*: DeepSeek Sparse
    Attention's lightning indexer (V3.2 only).

    Layers, as Hugging Face configs list them: layer_types: one of :data:`LAYER_TYPES` per layer ("full" or
    "sliding"; empty: every layer full, the tuple is filled in); sliding_window: W, the tokens a sliding layer
    attends to and caches (0 when no layer slides); kv_shared_layers: the last N layers compute no keys and
    values of their own but read those of the last earlier layer of their type (Gemma 4's
    ``num_kv_shared_layers``), so they cache nothing; global_head_dim, global_n_kv_heads: the full layers'
    own d_h and n_g when they differ from the sliding ones' (Gemma 4's ``global_head_dim``; 0: the same).

    Linear-attention layers ("linear": Qwen3-Next's Gated DeltaNet, Kimi Linear's KDA), in their configs' names:
    linear_key_heads H_k and linear_key_dim d_k (``linear_num_key_heads``, ``linear_key_head_dim``),
    linear_value_heads H_v and linear_value_dim d_v, linear_conv_kernel K (``linear_conv_kernel_dim``; 0: no
    short convolution). v4: a DeepSeek-V4 model's :class:`~attnlab.costs.V4Model` (window, entry and index-key
    widths, ``compress_ratios``); its ``layer_types`` are then :func:`v4_layer_types` (v4).
    """

    name: str
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    attention: str
    hidden_size: int
    source: str
    kv_lora_rank: int = 0
    qk_rope_head_dim: int = 0
    q_lora_rank: int = 0
    n_params: int = 0
    max_context: int = 0
    index_n_heads: int = 0
    index_head_dim: int = 0
    index_topk: int = 0
    layer_types: tuple[str, ...] = ()
    sliding_window: int = 0
    kv_shared_layers: int = 0
    global_head_dim: int = 0
    global_n_kv_heads: int = 0
    linear_key_heads: int = 0
    linear_key_dim: int = 0
    linear_value_heads: int = 0
    linear_value_dim: int = 0
    linear_conv_kernel: int = 0
    v4: V4Model | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise ArgumentTypeError(f"name={self.name!r} must be a non-empty string")
        if not self.name:
            raise ValueError(f"name={self.name!r} must be a non-empty string")
        for field in ("n_layers", "n_heads", "n_kv_heads", "head_dim", "hidden_size"):
            check_positive_int(field, getattr(self, field))
        for field in ("kv_lora_rank", "qk_rope_head_dim", "q_lora_rank", "n_params", "max_context",
                      "index_n_heads", "index_head_dim", "index_topk", "sliding_window", "kv_shared_layers",
                      "global_head_dim", "global_n_kv_heads", "linear_key_heads", "linear_key_dim",
                      "linear_value_heads", "linear_value_dim", "linear_conv_kernel"):
            check_non_negative_int(field, getattr(self, field))
        check_divisible("n_heads", self.n_heads, "n_kv_heads", self.n_kv_heads)
        check_even("head_dim", self.head_dim)
        check_even("qk_rope_head_dim", self.qk_rope_head_dim)
        if not isinstance(self.attention, str) or self.attention not in SCHEMES:
            raise ValueError(f"attention={self.attention!r} must be one of {SCHEMES}")
        if self.attention == "mha" and self.n_kv_heads != self.n_heads:
            raise ValueError(f"attention='mha' needs n_kv_heads == n_heads, got n_kv_heads={self.n_kv_heads} "
                             f"and n_heads={self.n_heads} (use attention='gqa')")
        if self.attention == "mqa" and self.n_kv_heads != 1:
            raise ValueError(f"attention='mqa' needs n_kv_heads=1, got n_kv_heads={self.n_kv_heads}")
        if self.attention == "mla" and self.kv_lora_rank == 0:
            raise ValueError("attention='mla' needs kv_lora_rank (d_c) > 0, got kv_lora_rank=0")
        if not isinstance(self.source, str):
            raise ArgumentTypeError(f"source={self.source!r} must be a string (a URL or citation)")
        self._check_layers()

    def _check_layers(self) -> None:
        """Fill in an empty ``layer_types`` (every layer full) and check the layer fields against each other."""
        if isinstance(self.layer_types, list):
            object.__setattr__(self, "layer_types", tuple(self.layer_types))
        check_type("layer_types", self.layer_types, tuple, "a tuple of layer kinds")
        if not self.layer_types:
            object.__setattr__(self, "layer_types", ("full",) * self.n_layers)
        if len(self.layer_types) != self.n_layers:
            raise ValueError(f"layer_types lists {len(self.layer_types)} layers, must list n_layers={self.n_layers}")
        for kind in self.layer_types:
            if not isinstance(kind, str) or kind not in LAYER_TYPES:
                raise ValueError(f"layer_types holds {kind!r}: each layer must be one of {LAYER_TYPES}")
        slides = "sliding" in self.layer_types
        if slides and self.sliding_window == 0:
            raise ValueError("layer_types has sliding layers: sliding_window must be > 0, got 0")
        if not slides and self.sliding_window:
            raise ValueError(f"sliding_window={self.sliding_window} needs a 'sliding' entry in layer_types")
        if self.kv_shared_layers >= self.n_layers:
            raise ValueError(f"kv_shared_layers={self.kv_shared_layers} must be < n_layers={self.n_layers} "
                             "(some layer must compute the keys and values the others read)")
        owners = self.layer_types[:self.n_layers - self.kv_shared_layers]
        for kind in set(self.layer_types[len(owners):]) - set(owners):
            raise ValueError(f"kv_shared_layers={self.kv_shared_layers}: a shared {kind!r} layer needs an earlier "
                             f"{kind!r} layer that keeps its own cache")
        if self.global_head_dim:
            check_even("global_head_dim", self.global_head_dim)
        if self.global_n_kv_heads:
            check_divisible("n_heads", self.n_heads, "global_n_kv_heads", self.global_n_kv_heads)
        if "linear" in self.layer_types:
            for field in ("linear_key_heads", "linear_key_dim", "linear_value_heads", "linear_value_dim"):
                if getattr(self, field) == 0:
                    raise ValueError(f"layer_types has linear layers: {field} must be > 0, got 0")
            check_divisible("linear_value_heads", self.linear_value_heads, "linear_key_heads",
                            self.linear_key_heads)
        if self.v4 is not None:
            check_type("v4", self.v4, V4Model, "a costs.V4Model or None")
            if self.layer_types != v4_layer_types(self.v4):
                raise ValueError(f"v4={self.v4.name}: layer_types must be v4_layer_types(v4), its compress_ratios "
                                 "read as 'v4-sliding', 'csa', 'hca'")
        elif set(self.layer_types) & set(V4_LAYER_TYPES.values()):
            raise ValueError("layer_types has DeepSeek-V4 layers ('v4-sliding', 'csa', 'hca'): v4 must be the "
                             "model's costs.V4Model, got None")

    @property
    def group_size(self) -> int:
        """Query heads per KV head: n_h / n_g."""
        return self.n_heads // self.n_kv_heads

    def attention_shape(self, n_kv_heads: int | None = None) -> AttentionShape:
        """The :class:`~attnlab.costs.AttentionShape` this model's sizings use: its own widths, MLA's from
        :func:`mla_dims` (the paper's d_c = 4 d_h, d_h^R = d_h / 2 on a model without them), and
        ``n_kv_heads`` KV heads for a GQA what-if (None: its own)."""
        d_c, d_h_rope = mla_dims(self)
        return AttentionShape(
            d_model=self.hidden_size, n_layers=self.n_layers, n_heads=self.n_heads, head_dim=self.head_dim,
            n_kv_heads=self.n_kv_heads if n_kv_heads is None else n_kv_heads, kv_lora_rank=d_c,
            qk_rope_head_dim=d_h_rope, q_lora_rank=self.q_lora_rank, index_n_heads=self.index_n_heads,
            index_head_dim=self.index_head_dim, index_topk=self.index_topk)

    @property
    def kv_sources(self) -> tuple[int, ...]:
        """For each layer, the layer whose cache it reads: itself, or for one of the last ``kv_shared_layers``
        layers the last earlier layer of the same type that keeps its own (Gemma 4: the sliding layers 15-34
        read layer 13's cache, the full ones layer 14's; transformers ``Gemma4TextConfig.kv_sharing_modes``)."""
        first_shared = self.n_layers - self.kv_shared_layers
        owners = self.layer_types[:first_shared]
        last_owner = {kind: first_shared - 1 - owners[::-1].index(kind) for kind in set(owners)}
        return tuple(i if i < first_shared else last_owner[kind] for i, kind in enumerate(self.layer_types))

    @property
    def windowed(self) -> bool:
        """True when some layer holds fewer than all tokens: a sliding layer or a shared one."""
        return "sliding" in self.layer_types or self.kv_shared_layers > 0

    @property
    def proportional(self) -> bool:
        """True when the cache is tokens x a fixed number of bytes per token: no sliding or shared layer, no
        linear layer's fixed state, no DeepSeek-V4 window and compressed entries."""
        return not self.windowed and self.v4 is None and "linear" not in self.layer_types

    def layer_shape(self, layer: int, n_kv_heads: int | None = None) -> AttentionShape:
        """The :class:`~attnlab.costs.AttentionShape` of one layer (``n_layers=1``): :meth:`attention_shape`,
        with a full layer's ``global_head_dim`` and ``global_n_kv_heads`` where the config gives them;
        ``n_kv_heads`` (a GQA what-if) replaces every layer's."""
        check_non_negative_int("layer", layer)
        if layer >= self.n_layers:
            raise ValueError(f"layer={layer} must be < n_layers={self.n_layers}")
        shape = self.attention_shape(n_kv_heads)
        full = self.layer_types[layer] == "full"
        d_h = self.global_head_dim if full and self.global_head_dim else self.head_dim
        n_g = shape.n_kv_heads
        if n_kv_heads is None and full and self.global_n_kv_heads:
            n_g = self.global_n_kv_heads
        return replace(shape, n_layers=1, head_dim=d_h, v_head_dim=d_h, n_kv_heads=n_g)


def _spec(name: str, source: str, **shape) -> ModelSpec:
    return ModelSpec(name=name, source=source, **shape)


def _alternating(n_layers: int, every: int, other: str = "sliding") -> tuple[str, ...]:
    """``other`` layers (sliding, or linear in a hybrid) with a full one every ``every``-th: layer i is full
    iff (i + 1) % every == 0, the rule transformers' Gemma 2/3/4 and gpt-oss configs write
    (``sliding_window_pattern``) and Qwen3-Next's ``full_attention_interval``."""
    return tuple("full" if (i + 1) % every == 0 else other for i in range(n_layers))


#: Published shapes. Each entry cites the config.json (or paper) its numbers come from.
MODELS: dict[str, ModelSpec] = {
    # https://huggingface.co/deepseek-ai/DeepSeek-V2/blob/main/config.json and arXiv 2405.04434 §2.1:
    # num_hidden_layers 60, num_attention_heads 128, kv_lora_rank 512, qk_rope_head_dim 64,
    # qk_nope_head_dim 128, v_head_dim 128, q_lora_rank 1536, hidden_size 5120; 236B parameters (21B active).
    "deepseek-v2": _spec(
        "DeepSeek-V2", "https://huggingface.co/deepseek-ai/DeepSeek-V2/blob/main/config.json",
        n_layers=60, n_heads=128, n_kv_heads=128, head_dim=128, attention="mla", hidden_size=5120,
        kv_lora_rank=512, qk_rope_head_dim=64, q_lora_rank=1536, n_params=236_000_000_000, max_context=163_840),
    # https://huggingface.co/deepseek-ai/DeepSeek-V3/blob/main/config.json (and inference/configs/
    # config_671B.json in github.com/deepseek-ai/DeepSeek-V3): num_hidden_layers 61,
    # num_attention_heads 128, kv_lora_rank 512, qk_rope_head_dim 64, v_head_dim 128, q_lora_rank 1536,
    # hidden_size 7168;
    # 671B parameters (37B active), arXiv 2412.19437.
    "deepseek-v3": _spec(
        "DeepSeek-V3", "https://huggingface.co/deepseek-ai/DeepSeek-V3/blob/main/config.json",
        n_layers=61, n_heads=128, n_kv_heads=128, head_dim=128, attention="mla", hidden_size=7168,
        kv_lora_rank=512, qk_rope_head_dim=64, q_lora_rank=1536, n_params=671_000_000_000, max_context=163_840),
    # https://huggingface.co/deepseek-ai/DeepSeek-V3.2-Exp/blob/main/config.json (inference/configs/
    # config_671B_v3.2.json): V3's MLA shape plus the lightning indexer: index_n_heads 64,
    # index_head_dim 128, index_topk 2048.
    "deepseek-v3.2": _spec(
        "DeepSeek-V3.2", "https://huggingface.co/deepseek-ai/DeepSeek-V3.2-Exp/blob/main/config.json",
        n_layers=61, n_heads=128, n_kv_heads=128, head_dim=128, attention="mla", hidden_size=7168,
        kv_lora_rank=512, qk_rope_head_dim=64, q_lora_rank=1536, n_params=671_000_000_000, max_context=163_840,
        index_n_heads=64, index_head_dim=128, index_topk=2048),
    # https://huggingface.co/deepseek-ai/deepseek-llm-67b-base/blob/main/config.json: 95 layers,
    # 64 heads, num_key_value_heads 8, hidden_size 8192. The dense model DeepSeek-V2's "KV cache
    # reduced by 93.3%" is measured against (arXiv 2405.04434, §1 and §3.2.3).
    "deepseek-67b": _spec(
        "DeepSeek-LLM-67B", "https://huggingface.co/deepseek-ai/deepseek-llm-67b-base/blob/main/config.json",
        n_layers=95, n_heads=64, n_kv_heads=8, head_dim=128, attention="gqa", hidden_size=8192,
        n_params=67_000_000_000, max_context=4096),
    # https://huggingface.co/meta-llama/Llama-2-7b-hf/blob/main/config.json: 32 layers, 32 heads,
    # num_key_value_heads 32 (plain MHA), hidden_size 4096 (head_dim 128), max_position_embeddings 4096.
    "llama-2-7b": _spec(
        "Llama-2-7B", "https://huggingface.co/meta-llama/Llama-2-7b-hf/blob/main/config.json",
        n_layers=32, n_heads=32, n_kv_heads=32, head_dim=128, attention="mha", hidden_size=4096,
        n_params=6_738_000_000, max_context=4096),
    # https://huggingface.co/meta-llama/Meta-Llama-3-8B/blob/main/config.json: 32 layers, 32 heads,
    # num_key_value_heads 8, hidden_size 4096, max_position_embeddings 8192.
    "llama-3-8b": _spec(
        "Llama-3-8B", "https://huggingface.co/meta-llama/Meta-Llama-3-8B/blob/main/config.json",
        n_layers=32, n_heads=32, n_kv_heads=8, head_dim=128, attention="gqa", hidden_size=4096,
        n_params=8_030_000_000, max_context=8192),
    # https://huggingface.co/meta-llama/Meta-Llama-3-70B/blob/main/config.json: 80 layers, 64 heads,
    # num_key_value_heads 8, hidden_size 8192, max_position_embeddings 8192.
    "llama-3-70b": _spec(
        "Llama-3-70B", "https://huggingface.co/meta-llama/Meta-Llama-3-70B/blob/main/config.json",
        n_layers=80, n_heads=64, n_kv_heads=8, head_dim=128, attention="gqa", hidden_size=8192,
        n_params=70_554_000_000, max_context=8192),
    # https://huggingface.co/mistralai/Mistral-7B-v0.3/blob/main/config.json: 32 layers, 32 heads,
    # num_key_value_heads 8, hidden_size 4096, max_position_embeddings 32768, sliding_window null.
    # (v0.1 had sliding_window 4096, a rolling cache that never grows past 4096 tokens.)
    "mistral-7b": _spec(
        "Mistral-7B", "https://huggingface.co/mistralai/Mistral-7B-v0.3/blob/main/config.json",
        n_layers=32, n_heads=32, n_kv_heads=8, head_dim=128, attention="gqa", hidden_size=4096,
        n_params=7_248_000_000, max_context=32_768),
    # https://huggingface.co/tiiuae/falcon-7b/blob/main/config.json: n_layer 32, n_head 71,
    # hidden_size 4544 (head_dim 4544 / 71 = 64), multi_query true: ONE key/value head.
    # Trained with a 2048-token context (model card).
    "falcon-7b": _spec(
        "Falcon-7B", "https://huggingface.co/tiiuae/falcon-7b/blob/main/config.json",
        n_layers=32, n_heads=71, n_kv_heads=1, head_dim=64, attention="mqa", hidden_size=4544,
        n_params=6_922_000_000, max_context=2048),
    # https://huggingface.co/Qwen/Qwen2.5-7B/blob/main/config.json: num_hidden_layers 28,
    # num_attention_heads 28, num_key_value_heads 4, hidden_size 3584 (head_dim 128),
    # max_position_embeddings 131072; 7.61B parameters (model card).
    "qwen2.5-7b": _spec(
        "Qwen2.5-7B", "https://huggingface.co/Qwen/Qwen2.5-7B/blob/main/config.json",
        n_layers=28, n_heads=28, n_kv_heads=4, head_dim=128, attention="gqa", hidden_size=3584,
        n_params=7_615_000_000, max_context=131_072),
    # https://huggingface.co/meta-llama/Llama-3.1-405B/blob/main/config.json: num_hidden_layers 126,
    # num_attention_heads 128, num_key_value_heads 8, hidden_size 16384 (head_dim 128),
    # max_position_embeddings 131072; 405B parameters (model card).
    "llama-3.1-405b": _spec(
        "Llama-3.1-405B", "https://huggingface.co/meta-llama/Llama-3.1-405B/blob/main/config.json",
        n_layers=126, n_heads=128, n_kv_heads=8, head_dim=128, attention="gqa", hidden_size=16384,
        n_params=405_000_000_000, max_context=131_072),
    # https://huggingface.co/mistralai/Mixtral-8x7B-v0.1/blob/main/config.json: num_hidden_layers 32,
    # num_attention_heads 32, num_key_value_heads 8, hidden_size 4096 (head_dim 128),
    # max_position_embeddings 32768; 46.7B parameters in all (8 experts per MLP, 2 active per token).
    "mixtral-8x7b": _spec(
        "Mixtral-8x7B", "https://huggingface.co/mistralai/Mixtral-8x7B-v0.1/blob/main/config.json",
        n_layers=32, n_heads=32, n_kv_heads=8, head_dim=128, attention="gqa", hidden_size=4096,
        n_params=46_700_000_000, max_context=32_768),
    # https://huggingface.co/google/gemma-2-9b/blob/main/config.json: num_hidden_layers 42,
    # num_attention_heads 16, num_key_value_heads 8, head_dim 256 (set explicitly: NOT hidden_size 3584 / 16
    # = 224), max_position_embeddings 8192, sliding_window 4096; 9.24B parameters. Layers alternate, local
    # first: even layers attend to a 4096-token window, odd ones to everything (Gemma 2 report, arXiv
    # 2408.00118, §2.1; transformers Gemma2Config.layer_types, "sliding_attention" iff (i + 1) % 2).
    "gemma-2-9b": _spec(
        "Gemma-2-9B", "https://huggingface.co/google/gemma-2-9b/blob/main/config.json",
        n_layers=42, n_heads=16, n_kv_heads=8, head_dim=256, attention="gqa", hidden_size=3584,
        n_params=9_240_000_000, max_context=8192, layer_types=_alternating(42, every=2), sliding_window=4096),
    # https://huggingface.co/deepseek-ai/DeepSeek-V2-Lite/blob/main/config.json: num_hidden_layers 27,
    # num_attention_heads 16, kv_lora_rank 512, qk_rope_head_dim 64, qk_nope_head_dim 128,
    # v_head_dim 128, hidden_size 2048, max_position_embeddings 163840, q_lora_rank null (no query latent);
    # 15.7B parameters (2.4B active).
    "deepseek-v2-lite": _spec(
        "DeepSeek-V2-Lite", "https://huggingface.co/deepseek-ai/DeepSeek-V2-Lite/blob/main/config.json",
        n_layers=27, n_heads=16, n_kv_heads=16, head_dim=128, attention="mla", hidden_size=2048,
        kv_lora_rank=512, qk_rope_head_dim=64, n_params=15_700_000_000, max_context=163_840),
    # https://huggingface.co/mistralai/Mistral-7B-v0.1/blob/main/config.json: num_hidden_layers 32,
    # num_attention_heads 32, num_key_value_heads 8, hidden_size 4096 (head_dim 128), sliding_window 4096,
    # max_position_embeddings 32768. Every layer attends to the last 4096 tokens, and the paper's rolling
    # buffer cache keeps only those (Mistral 7B, arXiv 2310.06825, §2 "Rolling Buffer Cache"); 7.24B parameters.
    "mistral-7b-v0.1": _spec(
        "Mistral-7B-v0.1", "https://huggingface.co/mistralai/Mistral-7B-v0.1/blob/main/config.json",
        n_layers=32, n_heads=32, n_kv_heads=8, head_dim=128, attention="gqa", hidden_size=4096,
        n_params=7_242_000_000, max_context=32_768, layer_types=("sliding",) * 32, sliding_window=4096),
    # https://huggingface.co/google/gemma-3-27b-pt/blob/main/config.json (text_config): num_hidden_layers 62,
    # num_attention_heads 32, num_key_value_heads 16, head_dim 128, hidden_size 5376, sliding_window 1024,
    # sliding_window_pattern 6 (five local layers, then one global: global iff (i + 1) % 6 == 0, 10 of 62),
    # max_position_embeddings 131072 (Gemma 3 report, arXiv 2503.19786, §2.1); 27B parameters.
    "gemma-3-27b": _spec(
        "Gemma-3-27B", "https://huggingface.co/google/gemma-3-27b-pt/blob/main/config.json",
        n_layers=62, n_heads=32, n_kv_heads=16, head_dim=128, attention="gqa", hidden_size=5376,
        n_params=27_000_000_000, max_context=131_072, layer_types=_alternating(62, every=6), sliding_window=1024),
    # https://huggingface.co/google/gemma-4-E2B/blob/main/config.json (text_config): num_hidden_layers 35,
    # num_attention_heads 8, num_key_value_heads 1 (one K/V head), head_dim 256 on the sliding layers and
    # global_head_dim 512 on the full ones, hidden_size 1536, sliding_window 512, layer_types: four sliding
    # then one full (full iff (i + 1) % 5 == 0), num_kv_shared_layers 20 (layers 15-34 read layer 13's or
    # layer 14's cache and store none: transformers Gemma4TextConfig.kv_sharing_modes), attention_k_eq_v
    # false, max_position_embeddings 131072; 5.1B parameters with the per-layer embeddings (model card).
    "gemma-4-e2b": _spec(
        "Gemma-4-E2B", "https://huggingface.co/google/gemma-4-E2B/blob/main/config.json",
        n_layers=35, n_heads=8, n_kv_heads=1, head_dim=256, attention="mqa", hidden_size=1536,
        n_params=5_100_000_000, max_context=131_072, layer_types=_alternating(35, every=5), sliding_window=512,
        kv_shared_layers=20, global_head_dim=512),
    # https://huggingface.co/openai/gpt-oss-120b/blob/main/config.json: num_hidden_layers 36,
    # num_attention_heads 64, num_key_value_heads 8, head_dim 64, hidden_size 2880, sliding_window 128,
    # layer_types alternating "sliding_attention" (even) and "full_attention" (odd), max_position_embeddings
    # 131072; a learned sink logit per head, which caches nothing (gpt-oss model card, arXiv 2508.10925, §2);
    # 116.8B parameters (5.1B active).
    "gpt-oss-120b": _spec(
        "gpt-oss-120b", "https://huggingface.co/openai/gpt-oss-120b/blob/main/config.json",
        n_layers=36, n_heads=64, n_kv_heads=8, head_dim=64, attention="gqa", hidden_size=2880,
        n_params=116_800_000_000, max_context=131_072, layer_types=_alternating(36, every=2), sliding_window=128),
    # https://huggingface.co/openai/gpt-oss-20b/blob/main/config.json: num_hidden_layers 24, the same attention
    # as gpt-oss-120b (64 heads, 8 K/V heads of 64, window 128 on even layers, context 131072); 20.9B
    # parameters (3.6B active), gpt-oss model card, arXiv 2508.10925.
    "gpt-oss-20b": _spec(
        "gpt-oss-20b", "https://huggingface.co/openai/gpt-oss-20b/blob/main/config.json",
        n_layers=24, n_heads=64, n_kv_heads=8, head_dim=64, attention="gqa", hidden_size=2880,
        n_params=20_900_000_000, max_context=131_072, layer_types=_alternating(24, every=2), sliding_window=128),
    # https://huggingface.co/Qwen/Qwen3-Next-80B-A3B-Instruct/blob/main/config.json: num_attention_heads 16,
    # hidden_size 2048; 80B parameters (3B active), model card. Its layers (full_attention_interval 4: 12 GQA
    # layers of 2 K/V heads of 256, 36 Gated DeltaNet), linear widths and context: costs.QWEN3_NEXT.
    "qwen3-next-80b-a3b": ModelSpec(
        source="https://huggingface.co/Qwen/Qwen3-Next-80B-A3B-Instruct/blob/main/config.json",
        n_heads=16, attention="gqa", hidden_size=2048, n_params=80_000_000_000, **hybrid_shape(QWEN3_NEXT)),
    # https://huggingface.co/moonshotai/Kimi-Linear-48B-A3B-Instruct/blob/main/config.json: MLA with
    # num_attention_heads 32, v_head_dim 128, q_lora_rank null, hidden_size 2304; 48B parameters (3B active),
    # model card (Kimi Linear report, arXiv 2510.26692). Its layers (7 MLA, 20 KDA), the MLA cache widths
    # (kv_lora_rank 512, qk_rope_head_dim 64: a slot kept though its MLA uses no RoPE) and context:
    # costs.KIMI_LINEAR.
    "kimi-linear-48b-a3b": ModelSpec(
        source="https://huggingface.co/moonshotai/Kimi-Linear-48B-A3B-Instruct/blob/main/config.json",
        n_heads=32, n_kv_heads=32, head_dim=128, attention="mla", hidden_size=2304, n_params=48_000_000_000,
        **hybrid_shape(KIMI_LINEAR)),
    # https://huggingface.co/deepseek-ai/DeepSeek-V4-Pro/blob/main/config.json: num_hidden_layers 61,
    # compress_ratios [128, 128] + [4, 128] x 29 + [4] (+ the MTP layer's), num_attention_heads 128, one K = V
    # head of head_dim 512 (qk_rope_head_dim 64), sliding_window 128, hidden_size 7168, q_lora_rank 1536,
    # index_n_heads 64, index_head_dim 128, index_topk 1024, max_position_embeddings 1048576 (costs.DEEPSEEK_V4_PRO
    # holds these); 1.6T parameters (49B active), DeepSeek-V4 report. kv_lora_rank 512 and qk_rope_head_dim 64
    # are the MLA what-if's widths: V3.2's cache, the one V4 replaced.
    "deepseek-v4-pro": _spec(
        "DeepSeek-V4-Pro", "https://huggingface.co/deepseek-ai/DeepSeek-V4-Pro/blob/main/config.json",
        n_layers=61, n_heads=128, n_kv_heads=1, head_dim=512, attention="mqa", hidden_size=7168,
        kv_lora_rank=512, qk_rope_head_dim=64, q_lora_rank=1536, n_params=1_600_000_000_000, max_context=1_048_576,
        layer_types=v4_layer_types(DEEPSEEK_V4_PRO), v4=DEEPSEEK_V4_PRO),
    # https://huggingface.co/deepseek-ai/DeepSeek-V4-Flash/blob/main/config.json: num_hidden_layers 43,
    # compress_ratios [0, 0] + [4, 128] x 20 + [4] (2 sliding-only, 21 CSA, 20 HCA), num_attention_heads 64, one
    # K = V head of 512, sliding_window 128, hidden_size 4096, q_lora_rank 1024, index_topk 512,
    # max_position_embeddings 1048576 (costs.DEEPSEEK_V4_FLASH); 284B parameters (13B active), DeepSeek-V4 report.
    "deepseek-v4-flash": _spec(
        "DeepSeek-V4-Flash", "https://huggingface.co/deepseek-ai/DeepSeek-V4-Flash/blob/main/config.json",
        n_layers=43, n_heads=64, n_kv_heads=1, head_dim=512, attention="mqa", hidden_size=4096,
        kv_lora_rank=512, qk_rope_head_dim=64, q_lora_rank=1024, n_params=284_000_000_000, max_context=1_048_576,
        layer_types=v4_layer_types(DEEPSEEK_V4_FLASH), v4=DEEPSEEK_V4_FLASH),
}


# ----------------------------------------------------------------------------------------------------
# argument checks


def get_model(model: ModelSpec | str) -> ModelSpec:
    """Return ``model`` itself if it is a :class:`ModelSpec`, else ``MODELS[model]``."""
    if isinstance(model, ModelSpec):
        return model
    if isinstance(model, str) and model in MODELS:
        return MODELS[model]
    error = ValueError if isinstance(model, str) else ArgumentTypeError
    raise error(f"model={model!r} must be a ModelSpec or one of {sorted(MODELS)}")


def _check_scheme(spec: ModelSpec, scheme: str | None, n_kv_heads: int | None) -> tuple[str, int]:
    """Resolve ``scheme`` (None = as published) and the KV-head count a GQA sizing uses."""
    if scheme is None:
        scheme = spec.attention
    if not isinstance(scheme, str) or scheme not in SCHEMES:
        raise ValueError(f"scheme={scheme!r} must be None (as published) or one of {SCHEMES}")
    if n_kv_heads is None:
        return scheme, spec.n_kv_heads
    if scheme != "gqa":
        raise ValueError(f"n_kv_heads={n_kv_heads!r} applies only to scheme='gqa', got scheme={scheme!r}")
    check_positive_int("n_kv_heads", n_kv_heads)
    check_divisible("n_heads", spec.n_heads, "n_kv_heads", n_kv_heads)
    return scheme, n_kv_heads


# ----------------------------------------------------------------------------------------------------
# the formulas


def mla_dims(model: ModelSpec | str) -> tuple[int, int]:
    """(d_c, d_h^R) that MLA caches for ``model``: its own when it has them, else the DeepSeek-V2
    paper's choice d_c = 4 d_h and d_h^R = d_h / 2 (arXiv 2405.04434, §2.1.4 and Appendix)."""
    spec = get_model(model)
    if spec.attention == "mla" or spec.kv_lora_rank > 0:
        return spec.kv_lora_rank, spec.qk_rope_head_dim
    return 4 * spec.head_dim, spec.head_dim // 2


def table1_elements(n_h: int, d_h: int, l: int, n_g: int, d_c: int, d_h_rope: int) -> dict[str, int]:
    """KV-cache elements per token for the whole model, DeepSeek-V2 paper Table 1:

    MHA 2 n_h d_h l,  GQA 2 n_g d_h l,  MQA 2 d_h l,  MLA (d_c + d_h^R) l.

    Returns ``{"mha": ..., "mqa": ..., "gqa": ..., "mla": ...}`` (ints, element counts, no dtype).
    """
    for name, value in (("n_h", n_h), ("d_h", d_h), ("l", l), ("n_g", n_g), ("d_c", d_c)):
        check_positive_int(name, value)
    check_non_negative_int("d_h_rope", d_h_rope)
    check_divisible("n_h", n_h, "n_g", n_g)
    shape = AttentionShape(d_model=n_h * d_h, n_layers=l, n_heads=n_h, n_kv_heads=n_g, head_dim=d_h,
                           kv_lora_rank=d_c, qk_rope_head_dim=d_h_rope)
    return {scheme: costs.cache_elements_per_token(scheme, shape) for scheme in SCHEMES}


@lru_cache(maxsize=4096)  # the calculators build a new ModelSpec per slider move: keep the cache bounded
def _layer_parts(spec: ModelSpec, layer: int, scheme: str, n_kv_heads: int | None) -> tuple[tuple[str, int], ...]:
    """Numbers per token of each tensor one layer caches, {name: count} (empty for a layer that reads another
    layer's cache). As published, an MLA model with a lightning indexer caches DSA's parts (MLA's c_kv and
    k_rope plus the index key); a what-if scheme caches its own Table 1 parts only."""
    if spec.kv_sources[layer] != layer or spec.layer_types[layer] == "linear":
        return ()  # a shared layer reads another's cache; a linear one keeps a fixed state (linear_state_elements)
    return tuple(costs.cache_widths(cache_scheme(spec, scheme), spec.layer_shape(layer, n_kv_heads)).items())


def cache_scheme(model: ModelSpec | str, scheme: str | None = None) -> str:
    """The scheme record (:mod:`attnlab.schemes`) whose cache rule sizes ``model`` under ``scheme``: the scheme
    itself, except that an MLA model with a lightning indexer, as published, caches DSA's parts, c^KV + k^R +
    the index key k^I ("dsa" for DeepSeek-V3.2)."""
    spec = get_model(model)
    scheme, _ = _check_scheme(spec, scheme, None)
    return "dsa" if scheme == spec.attention == "mla" and spec.index_head_dim else scheme


def _cached_parts(spec: ModelSpec, layer: int, scheme: str, n_kv_heads: int | None) -> dict[str, int]:
    return dict(_layer_parts(spec, layer, scheme, n_kv_heads))


def _parts_text(names: list[str]) -> str:
    return " + ".join(names).replace("c_kv", "c^KV").replace("k_rope", "k^R")


def cache_layouts(model: ModelSpec | str, layer: int = 0, dtype: torch.dtype | str = torch.bfloat16,
                  scheme: str | None = None, n_kv_heads: int | None = None, *,
                  cache_format: str | None = None) -> tuple[ByteLayout, ...]:
    """How one token is stored in layer ``layer``'s cache, as :class:`~attnlab.cache_formats.ByteLayout` s
    whose ``bytes`` add up to what the sizing counts; () for a layer that reads another layer's cache.

    ``cache_format`` None: the course's accounting, every cached number stored in ``dtype``
    (:func:`attnlab.cache_formats.uniform_layout`): the keys and values (or MLA's c^KV + k^R), and for a
    model with a lightning indexer its index key k^I, 576 + 128 numbers for DeepSeek-V3.2. A name from
    :data:`CACHE_FORMATS` instead uses that published byte layout (``dtype`` then stays bfloat16: the format
    fixes each part's storage): "deepseek-fp8" is FlashMLA's 656-byte FP8 MLA entry plus the 132-byte FP8
    index key, 656 + 132 = 788 bytes for DeepSeek-V3.2.

    A DeepSeek-V4 layer, as published, stores its cached vectors (window tokens and compressed entries alike) as
    one 512-wide entry each, plus a 128-wide index key per CSA entry: these are the layouts of one vector, not
    of one token (:func:`layer_cache_bytes` counts the vectors); "deepseek-fp8" is then the 584-byte FP8 entry
    and the 68-byte FP4 index key (:data:`V4_CACHE_FORMATS`). A linear layer caches no tokens: ()."""
    spec = get_model(model)
    published = scheme is None
    scheme, _ = _check_scheme(spec, scheme, n_kv_heads)
    check_non_negative_int("layer", layer)
    if layer >= spec.n_layers:
        raise ValueError(f"layer={layer} must be < n_layers={spec.n_layers}")
    dtype = get_dtype(dtype)
    if cache_format is not None:
        if "linear" in spec.layer_types:
            raise ValueError(f"cache_format={cache_format!r} is DeepSeek's layout; {spec.name} has linear layers "
                             "whose states it does not cover (leave cache_format None)")
        if not isinstance(cache_format, str) or cache_format not in CACHE_FORMATS:
            raise ValueError(f"cache_format={cache_format!r} must be None (every number in dtype) or one of "
                             f"{tuple(CACHE_FORMATS)}")
        if dtype != torch.bfloat16:
            raise ValueError(f"dtype={dtype} cannot go with cache_format={cache_format!r}: the format fixes each "
                             "part's storage (leave dtype at bfloat16)")
    if _v4_published(spec, published):
        entry, index_key = ((uniform_layout(spec.v4.head_dim, dtype, "entry k = v"),
                             uniform_layout(spec.v4.index_head_dim, dtype, "index key k^I"))
                            if cache_format is None else V4_CACHE_FORMATS[cache_format])
        return (entry, index_key) if spec.layer_types[layer] == "csa" else (entry,)
    parts = _cached_parts(spec, layer, scheme, n_kv_heads)
    if not parts:
        return ()
    index = parts.pop("index_key", 0)
    if cache_format is None:
        layouts = (uniform_layout(sum(parts.values()), dtype, _parts_text(list(parts))),)
        return layouts + ((uniform_layout(index, dtype, "index key k^I"),) if index else ())
    entry, index_key = CACHE_FORMATS[cache_format]
    if set(parts) != {"c_kv", "k_rope"} or sum(parts.values()) != entry.numbers:
        raise ValueError(f"cache_format={cache_format!r} stores an MLA entry of {entry.numbers} numbers; "
                         f"{spec.name} under scheme={scheme!r} caches {_parts_text(list(parts))} = "
                         f"{sum(parts.values())}")
    if index and index != index_key.numbers:
        raise ValueError(f"cache_format={cache_format!r} stores an index key of {index_key.numbers} numbers; "
                         f"{spec.name} caches {index}")
    return (entry, index_key) if index else (entry,)


def _v4_published(spec: ModelSpec, published: bool) -> bool:
    """A DeepSeek-V4 model sized as published: its layers hold windows and compressed entries. Any what-if
    scheme (even its own "mqa") makes every layer a full layer of that scheme on the model's shape."""
    return published and spec.v4 is not None


@lru_cache(maxsize=4096)  # the calculators build a new ModelSpec per slider move: keep the cache bounded
def _layer_accounts(spec: ModelSpec, scheme: str | None, n_kv_heads: int | None, dtype: torch.dtype,
                    cache_format: str | None) -> tuple[tuple[str, int, int, int], ...]:
    """Per layer (kind, bytes of one cached vector, bytes of one index key, bytes of its fixed state): kind
    "full", "sliding" or "shared" (a cached vector is one token), "linear" (only a state), or a DeepSeek-V4
    kind as published; under a what-if scheme a V4 layer is "full"."""
    published = scheme is None
    states = _state_bytes(spec, dtype)
    out = []
    for i, kind in enumerate(spec.layer_types):
        layouts = cache_layouts(spec, i, dtype, scheme, n_kv_heads, cache_format=cache_format)
        if spec.kv_sources[i] != i:
            kind = "shared"
        elif kind in V4_LAYER_TYPES.values() and not published:
            kind = "full"
        if kind in V4_LAYER_TYPES.values():
            out.append((kind, layouts[0].bytes, layouts[1].bytes if len(layouts) > 1 else 0, 0))
        else:
            out.append((kind, sum(layout.bytes for layout in layouts), 0, states if kind == "linear" else 0))
    return tuple(out)


def _accounts(model: ModelSpec | str, dtype: torch.dtype | str, scheme: str | None, n_kv_heads: int | None,
              cache_format: str | None) -> tuple[ModelSpec, tuple[tuple[str, int, int, int], ...]]:
    spec = get_model(model)
    _check_scheme(spec, scheme, n_kv_heads)
    if cache_format is not None and not isinstance(cache_format, str):
        raise ArgumentTypeError(f"cache_format={cache_format!r} must be None or one of {tuple(CACHE_FORMATS)}")
    return spec, _layer_accounts(spec, scheme, n_kv_heads, get_dtype(dtype), cache_format)


def _token_bytes(model: ModelSpec | str, dtype: torch.dtype | str, scheme: str | None, n_kv_heads: int | None,
                 cache_format: str | None) -> tuple[ModelSpec, tuple[int, ...]]:
    """Bytes one token takes in each layer's cache while the layer keeps it (0: shared or linear layers). Not
    defined for a DeepSeek-V4 model as published, whose layers keep compressed entries, not tokens."""
    spec, accounts = _accounts(model, dtype, scheme, n_kv_heads, cache_format)
    _per_token_only(spec, scheme)
    return spec, tuple(token for _, token, _, _ in accounts)


def _per_token_only(spec: ModelSpec, scheme: str | None) -> None:
    if _v4_published(spec, scheme is None):
        raise ValueError(f"{spec.name}'s layers cache a 128-token window plus one compressed entry per 4 or 128 "
                         "tokens, not a fixed number per token: size it with kv_cache_bytes, layer_cache_bytes or "
                         "growth_bytes_per_token, or pass a what-if scheme")


def _layer_bytes(account: tuple[str, int, int, int], seq_len: int, window: int) -> int:
    """Bytes one layer holds after ``seq_len`` tokens (one sequence), for its account from
    :func:`_layer_accounts`: full T x b; sliding min(T, W) x b; shared 0; linear [T > 0] x state; DeepSeek-V4
    (min(T, W) + floor(T / m)) x entry + [CSA] floor(T / m) x index key
    (:func:`attnlab.costs.v4_layer_cache_entries`)."""
    kind, vector, index, state = account
    if kind == "linear":
        return state if seq_len else 0
    if kind in V4_LAYER_TYPES.values():
        held = costs.v4_layer_cache_entries(_V4_COST_TYPES[kind], seq_len, window=window)
        return (held["window"] + held["entries"]) * vector + held["index_keys"] * index
    tokens = {"full": seq_len, "sliding": min(seq_len, window), "shared": 0}[kind]
    return tokens * vector


def _conv_channels(spec: ModelSpec) -> int:
    """Channels of a hybrid's linear layers' short convolution, 2 H_k d_k + H_v d_v (:func:`linear_conv_channels`)."""
    return linear_conv_channels(spec.linear_value_heads, spec.linear_key_dim, spec.linear_value_dim,
                                spec.linear_key_heads)


def linear_state_elements(model: ModelSpec | str) -> dict[str, int]:
    """Numbers one linear-attention layer keeps per sequence, whatever the context, {"recurrent", "conv"}
    ({} for a model without linear layers):

        recurrent  H_v x d_k x d_v                 one d_k x d_v matrix S per value head, the delta rule's state
                                                  (Gated DeltaNet, arXiv 2412.06464, eq. 10; KDA, Kimi Linear
                                                  report arXiv 2510.26692, §3)
        conv       (2 H_k d_k + H_v d_v) x (K - 1)  the short causal convolution over q, k and v keeps its
                                                  last K - 1 inputs (0 when K = 0)

    Qwen3-Next: 32 x 128 x 128 = 524,288 + (2 x 16 x 128 + 32 x 128) x 3 = 24,576. (Hugging Face keeps the
    recurrent state in float32 and K conv columns; the sizing stores every number in one ``dtype``.)"""
    spec = get_model(model)
    if "linear" not in spec.layer_types:
        return {}
    return {"recurrent": spec.linear_value_heads * spec.linear_key_dim * spec.linear_value_dim,
            "conv": _conv_channels(spec) * max(spec.linear_conv_kernel - 1, 0)}


def _state_bytes(spec: ModelSpec, dtype: torch.dtype) -> int:
    """Bytes of one linear layer's fixed state, every number in ``dtype``: :func:`attnlab.costs.linear_state_bytes`
    (chapter 18 calls it with Hugging Face's float32 state instead); 0 without linear layers."""
    if "linear" not in spec.layer_types:
        return 0
    return costs.linear_state_bytes(spec.linear_value_heads, spec.linear_key_dim, spec.linear_value_dim, dtype,
                                    conv_channels=_conv_channels(spec), conv_kernel=spec.linear_conv_kernel,
                                    conv_dtype=dtype)


def fixed_state_bytes(model: ModelSpec | str, batch: int = 1, dtype: torch.dtype | str = torch.bfloat16) -> int:
    """Bytes the linear layers keep for ``batch`` sequences whatever their length: batch x (linear layers) x
    :func:`linear_state_elements` x bytes(dtype); 0 for a model without linear layers. Qwen3-Next in bfloat16:
    36 x 548,864 x 2 = 39,518,208 B per sequence."""
    spec = get_model(model)
    check_positive_int("batch", batch)
    return batch * spec.layer_types.count("linear") * _state_bytes(spec, get_dtype(dtype))


def growth_bytes_per_token(model: ModelSpec | str, dtype: torch.dtype | str = torch.bfloat16,
                           scheme: str | None = None, n_kv_heads: int | None = None, *,
                           cache_format: str | None = None) -> float:
    """Bytes the cache grows by per token at long context, past every window (one sequence):

        sum over full layers of b_i  +  sum over CSA / HCA layers of (entry + [CSA] index key) / m

    Sliding, shared and linear layers add nothing there. For a model without windows this is
    :func:`cache_bytes_per_token`; for DeepSeek-V4 an average over one compressed block (an entry lands every
    m tokens): V4-Pro in bfloat16, 30 x (1024 + 256) / 4 + 31 x 1024 / 128 = 9,848 B. A float."""
    spec, accounts = _accounts(model, dtype, scheme, n_kv_heads, cache_format)
    rates = {V4_LAYER_TYPES[kind]: ratio for ratio, kind in V4_RATIO_TYPES.items() if ratio}  # csa 4, hca 128
    total = 0.0
    for kind, vector, index, _ in accounts:
        if kind == "full":
            total += vector
        elif kind in rates:
            total += (vector + index) / rates[kind]
    return total


def layer_tokens(model: ModelSpec | str, seq_len: int) -> list[int]:
    """Tokens each layer's cache holds after ``seq_len`` tokens of context, layer by layer:

        full: T,    sliding: min(T, W),    shared (reads an earlier layer's cache): 0,    linear: 0 (a state)

    W is the config's ``sliding_window``: a query sees itself and the W - 1 tokens before it, so a rolling
    cache never needs more than W (Mistral 7B, arXiv 2310.06825, §2). A DeepSeek-V4 layer holds vectors, not
    tokens: min(T, 128) raw ones and floor(T / m) compressed ones (CSA m = 4, HCA 128), their sum here.
    Returns a list of ``n_layers`` ints."""
    spec = get_model(model)
    t = check_non_negative_int("seq_len", seq_len)
    out = []
    for i, (kind, source) in enumerate(zip(spec.layer_types, spec.kv_sources, strict=True)):
        if kind in V4_LAYER_TYPES.values():
            held = costs.v4_layer_cache_entries(_V4_COST_TYPES[kind], t, window=spec.v4.window)
            out.append(held["window"] + held["entries"])
        else:
            out.append(0 if source != i or kind == "linear" else min(t, spec.sliding_window) if kind == "sliding"
                       else t)
    return out


def layer_elements_per_token(model: ModelSpec | str, scheme: str | None = None,
                             n_kv_heads: int | None = None) -> list[int]:
    """Numbers one token takes in each layer's cache while that layer keeps it: Table 1 of arXiv 2405.04434
    on the layer's own shape (:meth:`ModelSpec.layer_shape`), MHA 2 n_h d_h, MQA 2 d_h, GQA 2 n_g d_h,
    MLA d_c + d_h^R, plus the index key d^I of a model with a lightning indexer as published (DeepSeek-V3.2:
    512 + 64 + 128 = 704); 0 for a layer that reads another layer's cache and for a linear layer (its fixed
    state: :func:`linear_state_elements`). A list of ``n_layers`` ints. ``scheme``/``n_kv_heads`` as in
    :func:`kv_cache_bytes`; a DeepSeek-V4 model needs a what-if scheme here (its layers cache entries per 4 or
    128 tokens: :func:`layer_cache_bytes`)."""
    spec = get_model(model)
    _per_token_only(spec, scheme)
    scheme, _ = _check_scheme(spec, scheme, n_kv_heads)
    return [sum(_cached_parts(spec, i, scheme, n_kv_heads).values()) for i in range(spec.n_layers)]


def kv_elements_per_token(model: ModelSpec | str, scheme: str | None = None, n_kv_heads: int | None = None,
                          *, per_layer: bool = False) -> int:
    """Numbers of keys and values one token adds (Table 1 of arXiv 2405.04434), summed over the layers that
    keep a cache of their own (l layers when every layer does) or, with ``per_layer=True``, for one layer:
    MHA 2 n_h d_h, MQA 2 d_h, GQA 2 n_g d_h, MLA d_c + d_h^R. A lightning indexer's key is not a key or value
    of the attention: :func:`indexer_elements_per_token` counts it, :func:`layer_elements_per_token` and the
    byte counts include it.

    For a model with sliding windows this is what a token costs while it is inside every window: past the
    window the sliding layers drop it (:func:`layer_tokens`). ``per_layer=True`` needs one width for every
    layer that caches (Gemma 4's full layers are twice as wide as its sliding ones: use
    :func:`layer_elements_per_token`). ``scheme`` None sizes the model as published; "mha"/"mqa"/"gqa"/"mla"
    is "what if it used that" (GQA takes ``n_kv_heads`` or the model's own; MLA on a non-MLA model uses
    :func:`mla_dims`).
    """
    spec = get_model(model)
    _per_token_only(spec, scheme)
    scheme, _ = _check_scheme(spec, scheme, n_kv_heads)
    per_layer = check_bool("per_layer", per_layer)
    widths = [sum(v for k, v in _cached_parts(spec, i, scheme, n_kv_heads).items() if k != "index_key")
              for i in range(spec.n_layers)]
    if not per_layer:
        return sum(widths)
    distinct = sorted({w for w in widths if w})
    if len(distinct) > 1:
        raise ValueError(f"per_layer=True needs one width per layer, but {spec.name}'s layers cache "
                         f"{distinct} numbers per token: use layer_elements_per_token")
    return distinct[0]


def cache_bytes_per_token(model: ModelSpec | str, dtype: torch.dtype | str = torch.bfloat16,
                          scheme: str | None = None, n_kv_heads: int | None = None, *,
                          cache_format: str | None = None) -> int:
    """Bytes one more token adds to the cache while it is inside every layer's window: the bytes of
    :func:`cache_layouts` summed over the layers that keep a cache, by default every cached number
    (:func:`layer_elements_per_token`) x bytes per element of ``dtype`` (bf16: 2, fp8: 1). DeepSeek-V3.2 in
    bf16: (576 + 128) x 2 x 61 = 85,888 B; with ``cache_format="deepseek-fp8"`` (656 + 132) x 61 = 48,068 B.
    Linear layers add nothing per token (their state is fixed: :func:`fixed_state_bytes`); a DeepSeek-V4 model
    as published has no such figure (:func:`growth_bytes_per_token`).

    For a model without windows, what each token of any context costs. For a windowed one, the slope up to
    the window only: past it a token costs only the full layers' share (:func:`kv_cache_bytes` sizes a
    context layer by layer)."""
    return sum(_token_bytes(model, dtype, scheme, n_kv_heads, cache_format)[1])


def layer_cache_bytes(model: ModelSpec | str, seq_len: int = 1, batch: int = 1,
                      dtype: torch.dtype | str = torch.bfloat16, scheme: str | None = None,
                      n_kv_heads: int | None = None, *, cache_format: str | None = None) -> list[int]:
    """Bytes of each layer's cache for ``batch`` sequences of ``seq_len`` tokens:

        bytes_i = batch x tokens_i(seq_len) x (bytes per token of layer i)

    with tokens_i from :func:`layer_tokens` (T, min(T, W) or 0) and a token's bytes from
    :func:`cache_layouts` (by default :func:`layer_elements_per_token` x bytes(dtype)). A linear layer holds
    its fixed state instead, [T > 0] x :func:`linear_state_elements` x bytes(dtype), whatever T; a DeepSeek-V4
    layer (as published) (min(T, 128) + floor(T / m)) entries and, in CSA, floor(T / m) index keys, each in
    :func:`cache_layouts`' bytes, as :func:`attnlab.costs.v4_cache_bytes` counts them. A list of ``n_layers``
    ints; :func:`kv_cache_bytes` is its sum."""
    spec = get_model(model)
    t = check_non_negative_int("seq_len", seq_len)
    check_positive_int("batch", batch)
    spec, accounts = _accounts(spec, dtype, scheme, n_kv_heads, cache_format)
    window = spec.v4.window if spec.v4 is not None else spec.sliding_window
    return [batch * _layer_bytes(account, t, window) for account in accounts]


def kv_cache_bytes(model: ModelSpec | str, seq_len: int = 1, batch: int = 1,
                   dtype: torch.dtype | str = torch.bfloat16, scheme: str | None = None,
                   n_kv_heads: int | None = None, *, cache_format: str | None = None) -> int:
    """Size of the KV cache for ``batch`` sequences of ``seq_len`` tokens, summed over the layers
    (:func:`layer_cache_bytes`):

        bytes = batch x sum_i tokens_i(seq_len) x (elements per token of layer i) x bytes(dtype)

    which for a model whose layers all attend to everything is batch x seq_len x l x (elements per token per
    layer, Table 1, plus an index key under DSA) x bytes(dtype). ``model`` is a :class:`ModelSpec` or a key
    of :data:`MODELS`; ``scheme`` None = as published, else the what-if scheme ("mha", "mqa", "gqa" with
    ``n_kv_heads``, "mla"), the layers' windows kept; ``cache_format`` a published byte layout instead of
    one dtype (:func:`cache_layouts`). Returns an int (bytes).
    """
    return sum(layer_cache_bytes(model, seq_len, batch, dtype, scheme, n_kv_heads, cache_format=cache_format))


def marginal_cache_bytes(model: ModelSpec | str, seq_len: int, dtype: torch.dtype | str = torch.bfloat16,
                         scheme: str | None = None, n_kv_heads: int | None = None, *,
                         cache_format: str | None = None) -> int:
    """Bytes the next token adds to one sequence's cache after ``seq_len`` tokens:
    :func:`kv_cache_bytes` (seq_len + 1) - :func:`kv_cache_bytes` (seq_len). Inside every window it is
    :func:`cache_bytes_per_token`; past a window the sliding layers drop their oldest token as they keep the new
    one, so only the full layers grow (gpt-oss-120b past 128 tokens: its 18 full layers, half the bytes), and a
    model without full layers (Mistral-7B-v0.1 past 4,096) adds 0."""
    before = kv_cache_bytes(model, seq_len, 1, dtype, scheme, n_kv_heads, cache_format=cache_format)
    return kv_cache_bytes(model, seq_len + 1, 1, dtype, scheme, n_kv_heads, cache_format=cache_format) - before


def reduction_vs_mha(model: ModelSpec | str, scheme: str | None = None,
                     n_kv_heads: int | None = None) -> float:
    """How many times smaller the cache is than the same model's MHA cache: (2 n_h d_h) / (scheme's), over the
    layers that cache tokens (a hybrid's linear layers keep their states either way)."""
    mha = kv_elements_per_token(model, "mha")
    return mha / kv_elements_per_token(model, scheme, n_kv_heads)


def attention_macs_per_cached_token(model: ModelSpec | str, scheme: str | None = None,
                                    n_kv_heads: int | None = None, *, per_layer: bool = True) -> int:
    """Multiply-adds one query token spends on one cached token while decoding (one layer by default),
    :func:`attnlab.costs.macs_per_cached_token` for ``model``.

    MHA, GQA, MQA: every query head scores a d_h-wide key and mixes a d_h-wide value, 2 n_h d_h,
    whatever the number of KV heads (sharing saves memory, not arithmetic).
    MLA in its absorbed mode (W^UK folded into the query, W^UV into the output; DeepSeek-V3
    ``inference/model.py``): each head scores the (d_c + d_h^R)-wide cached vector and mixes the
    d_c-wide latent, n_h (2 d_c + d_h^R). ``per_layer=False`` sums over the layers that attend to cached
    tokens (a hybrid's linear layers do not).
    """
    spec = get_model(model)
    _per_token_only(spec, scheme)
    scheme, n_g = _check_scheme(spec, scheme, n_kv_heads)
    attending = spec.n_layers - spec.layer_types.count("linear")  # a hybrid's linear layers hold no tokens
    shape = replace(spec.attention_shape(n_g), n_layers=attending)
    return costs.macs_per_cached_token(scheme, shape, per_layer=per_layer)


def decode_flops_per_byte(model: ModelSpec | str, scheme: str | None = None, n_kv_heads: int | None = None,
                          dtype: torch.dtype | str = torch.bfloat16) -> float:
    """Arithmetic intensity of decoding attention: FLOPs (2 per multiply-add) per byte of cache read,
    2 x :func:`attention_macs_per_cached_token` / (elements per token per layer x bytes(dtype));
    :func:`attnlab.costs.attention_intensity` for ``model``."""
    spec = get_model(model)
    _per_token_only(spec, scheme)
    scheme, n_g = _check_scheme(spec, scheme, n_kv_heads)
    return costs.attention_intensity(scheme, spec.attention_shape(n_g), get_dtype(dtype))


def gib(n_bytes: int | float) -> float:
    """Bytes -> GiB (2^30 bytes)."""
    check_real("n_bytes", n_bytes)
    return n_bytes / GIB


def tokens_that_fit(model: ModelSpec | str, gpu_gib: float, dtype: torch.dtype | str = torch.bfloat16,
                    scheme: str | None = None, n_kv_heads: int | None = None,
                    weights_dtype: torch.dtype | str | None = None, *,
                    cache_format: str | None = None) -> int | float:
    """How many tokens of context fit in ``gpu_gib`` GiB: the largest T with :func:`kv_cache_bytes` (T) <=
    gpu_gib x 2^30 - weights. ``weights_dtype`` given: the model's weights (n_params x bytes) sit in the same
    memory first; 0 when they alone do not fit. ``cache_format`` as in :func:`cache_layouts`.

    Without windows the cache is T x :func:`cache_bytes_per_token`, so T = floor(budget / bytes per token),
    the tokens of one sequence or the sum over a batch's. With windows (W tokens) the cache grows by s_all
    bytes per token up to W (every caching layer) and by s_full past it (the full layers only):

        T = floor(budget / s_all)                  if budget < W s_all
        T = W + floor((budget - W s_all) / s_full)  otherwise (one sequence's context)

    A linear layer's fixed state comes out of the budget once the first token is in; a DeepSeek-V4 cache grows
    in steps (an entry per 4 or 128 tokens). Every one of these caches grows monotonically with T, so T is
    found by doubling and bisection on :func:`kv_cache_bytes` (one sequence), which gives the closed forms
    above where they apply. When no layer grows past its window (no full, CSA or HCA layer) the cache stops
    growing: once it fits at the longest window, any context fits and the answer is ``math.inf``."""
    budget = int(check_real("gpu_gib", gpu_gib, 0.0, strict=True) * GIB)
    if weights_dtype is not None:
        budget -= weight_bytes(model, weights_dtype)
    budget = max(budget, 0)
    spec = get_model(model)

    def size(t: int) -> int:
        return kv_cache_bytes(spec, t, 1, dtype, scheme, n_kv_heads, cache_format=cache_format)

    if growth_bytes_per_token(spec, dtype, scheme, n_kv_heads, cache_format=cache_format) == 0:
        hi = max(spec.sliding_window, spec.v4.window if spec.v4 is not None else 0, 1)  # flat from here on
        if size(hi) <= budget:
            return math.inf
    else:
        hi = 1
        while size(hi) <= budget:
            hi *= 2
    lo = 0  # size(lo) <= budget < size(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if size(mid) <= budget else (lo, mid)
    return lo


def weight_bytes(model: ModelSpec | str, dtype: torch.dtype | str = torch.bfloat16) -> int:
    """Bytes of the model's weights: n_params x bytes(dtype)."""
    spec = get_model(model)
    if spec.n_params == 0:
        raise ValueError(f"n_params of model {spec.name!r} is unknown (0): cannot size its weights")
    return spec.n_params * dtype_bytes(get_dtype(dtype))


def indexer_elements_per_token(model: ModelSpec | str, *, per_layer: bool = False) -> int:
    """Numbers DeepSeek Sparse Attention's lightning indexer caches per token: one index key of width
    index_head_dim (128 in V3.2), shared by all index heads, per layer; 0 for models without DSA.
    (DeepSeek's code stores it in FP8 with one fp32 scale per 128 values.)"""
    return costs.indexer_elements_per_token(get_model(model).attention_shape(), per_layer=per_layer)


def format_si(value: int | float, units: tuple[str, ...]) -> str:
    """``value`` in decimal (SI) steps of 1000 through ``units`` (the first is the base unit, shown as a
    whole number), three significant digits: 3,997,696 with ("B", "kB", "MB", ...) -> "4.00 MB"."""
    value = check_real("value", value)
    if not isinstance(units, tuple) or not units or not all(isinstance(unit, str) for unit in units):
        raise ArgumentTypeError(f"units={units!r} must be a non-empty tuple of unit names, e.g. ('B', 'kB')")
    for unit in units:
        if abs(value) < 999.5 or unit == units[-1]:
            break
        value /= 1000
    if unit == units[0]:
        return f"{int(value)} {unit}"
    decimals = 0 if abs(value) >= 100 else 1 if abs(value) >= 10 else 2
    return f"{value:.{decimals}f} {unit}"


def format_bytes(n_bytes: int | float) -> str:
    """Decimal units, three significant digits: 3,997,696 -> "4.00 MB", 31,232 -> "31.2 kB"."""
    check_real("n_bytes", n_bytes)
    return format_si(n_bytes, ("B", "kB", "MB", "GB", "TB"))


def format_ratio(ratio: float) -> str:
    """A reduction factor with at most one decimal and no trailing zero: 128.0 -> "128", 56.89 -> "56.9"."""
    check_real("ratio", ratio, 0.0, strict=True)
    text = f"{ratio:.1f}"
    return text[:-2] if text.endswith(".0") else text


def kv_formula(model: ModelSpec | str, scheme: str | None = None, n_kv_heads: int | None = None) -> str:
    """The numbers one layer caches per token, as a formula with this model's numbers filled in, e.g. "2 n_g d_h
    = 2 × 8 × 128 = 2,048" (Table 1): the :attr:`~attnlab.schemes.Scheme.formula` of :func:`cache_scheme` on
    the model's shape (DeepSeek-V3.2 as published: "d_c + d_h^R + d^I = 512 + 64 + 128 = 704"). When the full
    layers' widths differ from the sliding ones' (Gemma 4), one formula per kind: "sliding: ...; full: ...".
    A linear layer's fixed state and, as published, a DeepSeek-V4 layer's window and compressed entries get
    their own formula ("linear: H_v d_k d_v + (2 H_k d_k + H_v d_v)(K - 1) = ..."; "csa: (min(T, 128) + T/4)
    × 512 + T/4 × 128")."""
    spec = get_model(model)
    published = scheme is None
    scheme, _ = _check_scheme(spec, scheme, n_kv_heads)
    key = cache_scheme(spec, scheme)
    formulas = {}
    for i, kind in enumerate(spec.layer_types):
        if kind == "linear":
            state = linear_state_elements(spec)
            conv = _conv_channels(spec)
            formulas.setdefault(kind, f"state H_v d_k d_v + (2 H_k d_k + H_v d_v)(K - 1) = {spec.linear_value_heads} "
                                f"× {spec.linear_key_dim} × {spec.linear_value_dim} + {conv:,} × "
                                f"{max(spec.linear_conv_kernel - 1, 0)} = {sum(state.values()):,} per sequence")
            continue
        if _v4_published(spec, published):
            v4 = spec.v4
            rate = {"csa": "T/4", "hca": "T/128", "v4-sliding": ""}[kind]
            held = f"(min(T, {v4.window}) + {rate})" if rate else f"min(T, {v4.window})"
            index = f" + {rate} × {v4.index_head_dim}" if kind == "csa" else ""
            formulas.setdefault(kind, f"{held} × {v4.head_dim}{index}")
            continue
        shape = spec.layer_shape(i, n_kv_heads)
        per = costs.cache_elements_per_token(key, shape, per_layer=True)
        formulas.setdefault(kind, f"{get_scheme(key).formula.format(**vars(shape))} = {per:,}")
    if len(set(formulas.values())) == 1:
        return next(iter(formulas.values()))
    return "; ".join(f"{kind}: {text}" for kind, text in formulas.items())


def layer_plan(model: ModelSpec | str) -> str:
    """The model's layers in words, from its config: "42 layers, all full", "21 sliding (window 4,096) + 21
    full", "12 sliding (window 512) + 3 full keep a cache; 20 read an earlier layer's"."""
    spec = get_model(model)
    owners = spec.layer_types[:spec.n_layers - spec.kv_shared_layers]
    if spec.v4 is not None:  # "2 sliding + 21 CSA (1 entry per 4 tokens) + 20 HCA (per 128), each with ..."
        named = {"v4-sliding": "sliding", "csa": "CSA (1 entry per 4 tokens)", "hca": "HCA (1 entry per 128)"}
        return " + ".join(f"{owners.count(kind)} {name}" for kind, name in named.items() if kind in owners) + (
            f", each keeping its last {spec.v4.window} tokens")
    n_sliding, n_full = owners.count("sliding"), owners.count("full")
    n_linear = owners.count("linear")
    parts = ([f"{n_sliding} sliding (window {spec.sliding_window:,})"] if n_sliding else []) + (
        [f"{n_linear} linear (fixed state)"] if n_linear else []) + ([f"{n_full} full"] if n_full else [])
    if spec.kv_shared_layers:
        return " + ".join(parts) + f" keep a cache; {spec.kv_shared_layers} read an earlier layer's"
    if not n_sliding and not n_linear:
        return f"{spec.n_layers} layers, all full"
    return " + ".join(parts) if n_full else f"{parts[0]}, none full"
