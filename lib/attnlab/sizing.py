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

(:func:`layer_tokens`, :func:`layer_cache_bytes`; :func:`kv_cache_bytes` is their sum). For a model with
windows no single "bytes per token" exists: up to the window every layer keeps the new token, past it only
the full layers do, so the cache grows more slowly and, with no full layer at all, stops growing.
:data:`MODELS` holds the published shapes of real models.

The counts themselves live in :mod:`attnlab.costs` (one function per quantity, over an
:class:`~attnlab.costs.AttentionShape`) and what each scheme caches in :mod:`attnlab.schemes`; this module
applies them to published models, by name, as published or "what if it used scheme X"
(:meth:`ModelSpec.attention_shape` gives the shape a sizing uses).

For MLA models ``head_dim`` is the per-head value (and non-RoPE key) width d_h = 128, which is what the
MHA/MQA/GQA comparisons use; the query/key head is 192 wide (128 + 64) but that is not what is cached.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import cache

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
from attnlab.costs import DTYPES_BY_NAME, AttentionShape, get_dtype  # noqa: F401 (DTYPES_BY_NAME: re-exported)
from attnlab.devices import dtype_bytes
from attnlab.schemes import TABLE1_SCHEMES, get_scheme

#: The attention schemes the sizing compares, in the course's order: the DeepSeek-V2 paper's Table 1
#: (:data:`attnlab.schemes.TABLE1_SCHEMES`). DSA caches MLA's entries plus an index key
#: (:func:`indexer_elements_per_token`).
SCHEMES: tuple[str, ...] = TABLE1_SCHEMES

GIB = 2**30  # bytes in one GiB (the unit GPU memory is sold in)

#: The kinds of layer a :class:`ModelSpec` lists in ``layer_types`` (Hugging Face writes "full_attention" and
#: "sliding_attention"): a full layer attends to (and caches) every earlier token, a sliding one the last
#: ``sliding_window``.
LAYER_TYPES: tuple[str, ...] = ("full", "sliding")


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

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise ArgumentTypeError(f"name={self.name!r} must be a non-empty string")
        if not self.name:
            raise ValueError(f"name={self.name!r} must be a non-empty string")
        for field in ("n_layers", "n_heads", "n_kv_heads", "head_dim", "hidden_size"):
            check_positive_int(field, getattr(self, field))
        for field in ("kv_lora_rank", "qk_rope_head_dim", "q_lora_rank", "n_params", "max_context",
                      "index_n_heads", "index_head_dim", "index_topk", "sliding_window", "kv_shared_layers",
                      "global_head_dim", "global_n_kv_heads"):
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


def _alternating(n_layers: int, every: int) -> tuple[str, ...]:
    """Sliding layers with a full one every ``every``-th: layer i is full iff (i + 1) % every == 0, the rule
    transformers' Gemma 2/3/4 and gpt-oss configs write (``sliding_window_pattern``)."""
    return tuple("full" if (i + 1) % every == 0 else "sliding" for i in range(n_layers))


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


@cache
def _layer_widths(spec: ModelSpec, scheme: str, n_g: int | None) -> tuple[int, ...]:
    """Numbers per token each layer caches under ``scheme`` (0 for a layer that reads another's cache)."""
    sources = spec.kv_sources
    return tuple(costs.cache_elements_per_token(scheme, spec.layer_shape(i, n_g), per_layer=True)
                 if sources[i] == i else 0 for i in range(spec.n_layers))


def _widths(model: ModelSpec | str, scheme: str | None, n_kv_heads: int | None) -> tuple[ModelSpec, tuple[int, ...]]:
    spec = get_model(model)
    scheme, _ = _check_scheme(spec, scheme, n_kv_heads)
    return spec, _layer_widths(spec, scheme, n_kv_heads)


def layer_tokens(model: ModelSpec | str, seq_len: int) -> list[int]:
    """Tokens each layer's cache holds after ``seq_len`` tokens of context, layer by layer:

        full: T,    sliding: min(T, W),    shared (reads an earlier layer's cache): 0

    W is the config's ``sliding_window``: a query sees itself and the W - 1 tokens before it, so a rolling
    cache never needs more than W (Mistral 7B, arXiv 2310.06825, §2). Returns a list of ``n_layers`` ints."""
    spec = get_model(model)
    t = check_non_negative_int("seq_len", seq_len)
    return [0 if source != i else min(t, spec.sliding_window) if kind == "sliding" else t
            for i, (kind, source) in enumerate(zip(spec.layer_types, spec.kv_sources, strict=True))]


def layer_elements_per_token(model: ModelSpec | str, scheme: str | None = None,
                             n_kv_heads: int | None = None) -> list[int]:
    """Numbers one token takes in each layer's cache while that layer keeps it (Table 1 of arXiv 2405.04434
    on the layer's own shape, :meth:`ModelSpec.layer_shape`): MHA 2 n_h d_h, MQA 2 d_h, GQA 2 n_g d_h,
    MLA d_c + d_h^R; 0 for a layer that reads another layer's cache. A list of ``n_layers`` ints.
    ``scheme``/``n_kv_heads`` as in :func:`kv_cache_bytes`."""
    return list(_widths(model, scheme, n_kv_heads)[1])


def kv_elements_per_token(model: ModelSpec | str, scheme: str | None = None, n_kv_heads: int | None = None,
                          *, per_layer: bool = False) -> int:
    """Numbers the KV cache holds for one token (Table 1 of arXiv 2405.04434), summed over the layers that
    keep a cache of their own (l layers when every layer does) or, with ``per_layer=True``, for one layer:
    MHA 2 n_h d_h, MQA 2 d_h, GQA 2 n_g d_h, MLA d_c + d_h^R.

    For a model with sliding windows this is what a token costs while it is inside every window: past the
    window the sliding layers drop it (:func:`layer_tokens`). ``per_layer=True`` needs one width for every
    layer that caches (Gemma 4's full layers are twice as wide as its sliding ones: use
    :func:`layer_elements_per_token`). ``scheme`` None sizes the model as published; "mha"/"mqa"/"gqa"/"mla"
    is "what if it used that" (GQA takes ``n_kv_heads`` or the model's own; MLA on a non-MLA model uses
    :func:`mla_dims`).
    """
    spec, widths = _widths(model, scheme, n_kv_heads)
    if not check_bool("per_layer", per_layer):
        return sum(widths)
    distinct = sorted({w for w in widths if w})
    if len(distinct) > 1:
        raise ValueError(f"per_layer=True needs one width per layer, but {spec.name}'s layers cache "
                         f"{distinct} numbers per token: use layer_elements_per_token")
    return distinct[0]


def cache_bytes_per_token(model: ModelSpec | str, dtype: torch.dtype | str = torch.bfloat16,
                          scheme: str | None = None, n_kv_heads: int | None = None) -> int:
    """Bytes one more token adds to the cache while it is inside every layer's window: elements per token
    (:func:`kv_elements_per_token`, every layer that keeps a cache) x bytes per element of ``dtype``
    (bf16: 2, fp8: 1). For a model without windows, what each token of any context costs. For a windowed
    one, the slope up to the window only: past it a token costs only the full layers' share
    (:func:`kv_cache_bytes` sizes a context layer by layer)."""
    return kv_elements_per_token(model, scheme, n_kv_heads) * dtype_bytes(get_dtype(dtype))


def layer_cache_bytes(model: ModelSpec | str, seq_len: int = 1, batch: int = 1,
                      dtype: torch.dtype | str = torch.bfloat16, scheme: str | None = None,
                      n_kv_heads: int | None = None) -> list[int]:
    """Bytes of each layer's cache for ``batch`` sequences of ``seq_len`` tokens:

        bytes_i = batch x tokens_i(seq_len) x (numbers per token of layer i) x bytes(dtype)

    with tokens_i from :func:`layer_tokens` (T, min(T, W) or 0) and the widths from
    :func:`layer_elements_per_token`. A list of ``n_layers`` ints; :func:`kv_cache_bytes` is its sum."""
    tokens = layer_tokens(model, seq_len)
    widths = layer_elements_per_token(model, scheme, n_kv_heads)
    check_positive_int("batch", batch)
    b = dtype_bytes(get_dtype(dtype))
    return [batch * t * w * b for t, w in zip(tokens, widths, strict=True)]


def kv_cache_bytes(model: ModelSpec | str, seq_len: int = 1, batch: int = 1,
                   dtype: torch.dtype | str = torch.bfloat16, scheme: str | None = None,
                   n_kv_heads: int | None = None) -> int:
    """Size of the KV cache for ``batch`` sequences of ``seq_len`` tokens, summed over the layers
    (:func:`layer_cache_bytes`):

        bytes = batch x sum_i tokens_i(seq_len) x (elements per token of layer i, Table 1) x bytes(dtype)

    which for a model whose layers all attend to everything is batch x seq_len x l x (elements per token per
    layer) x bytes(dtype). ``model`` is a :class:`ModelSpec` or a key of :data:`MODELS`; ``scheme`` None = as
    published, else the what-if scheme ("mha", "mqa", "gqa" with ``n_kv_heads``, "mla"), the layers' windows
    kept. Returns an int (bytes).
    """
    return sum(layer_cache_bytes(model, seq_len, batch, dtype, scheme, n_kv_heads))


def reduction_vs_mha(model: ModelSpec | str, scheme: str | None = None,
                     n_kv_heads: int | None = None) -> float:
    """How many times smaller the cache is than the same model's MHA cache: (2 n_h d_h) / (scheme's)."""
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
    d_c-wide latent, n_h (2 d_c + d_h^R).
    """
    spec = get_model(model)
    scheme, n_g = _check_scheme(spec, scheme, n_kv_heads)
    return costs.macs_per_cached_token(scheme, spec.attention_shape(n_g), per_layer=per_layer)


def decode_flops_per_byte(model: ModelSpec | str, scheme: str | None = None, n_kv_heads: int | None = None,
                          dtype: torch.dtype | str = torch.bfloat16) -> float:
    """Arithmetic intensity of decoding attention: FLOPs (2 per multiply-add) per byte of cache read,
    2 x :func:`attention_macs_per_cached_token` / (elements per token per layer x bytes(dtype));
    :func:`attnlab.costs.attention_intensity` for ``model``."""
    spec = get_model(model)
    scheme, n_g = _check_scheme(spec, scheme, n_kv_heads)
    return costs.attention_intensity(scheme, spec.attention_shape(n_g), get_dtype(dtype))


def gib(n_bytes: int | float) -> float:
    """Bytes -> GiB (2^30 bytes)."""
    check_real("n_bytes", n_bytes)
    return n_bytes / GIB


def tokens_that_fit(model: ModelSpec | str, gpu_gib: float, dtype: torch.dtype | str = torch.bfloat16,
                    scheme: str | None = None, n_kv_heads: int | None = None,
                    weights_dtype: torch.dtype | str | None = None) -> int | float:
    """How many tokens of context fit in ``gpu_gib`` GiB: the largest T with :func:`kv_cache_bytes` (T) <=
    gpu_gib x 2^30 - weights. ``weights_dtype`` given: the model's weights (n_params x bytes) sit in the same
    memory first; 0 when they alone do not fit.

    Without windows the cache is T x :func:`cache_bytes_per_token`, so T = floor(budget / bytes per token),
    the tokens of one sequence or the sum over a batch's. With windows (W tokens) the cache grows by s_all
    bytes per token up to W (every caching layer) and by s_full past it (the full layers only):

        T = floor(budget / s_all)                  if budget < W s_all
        T = W + floor((budget - W s_all) / s_full)  otherwise (one sequence's context)

    and when no layer is full (s_full = 0) the cache stops growing at W tokens: once W s_all fits, any
    context fits and the answer is ``math.inf``."""
    budget = int(check_real("gpu_gib", gpu_gib, 0.0, strict=True) * GIB)
    if weights_dtype is not None:
        budget -= weight_bytes(model, weights_dtype)
    budget = max(budget, 0)
    spec, widths = _widths(model, scheme, n_kv_heads)
    b = dtype_bytes(get_dtype(dtype))
    s_all = sum(widths) * b  # bytes per token inside every window
    s_full = sum(w for w, kind in zip(widths, spec.layer_types, strict=True) if kind == "full") * b  # past them
    window = spec.sliding_window
    if s_full == s_all or budget < window * s_all:
        return budget // s_all
    if s_full == 0:
        return math.inf
    return window + (budget - window * s_all) // s_full


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
    """The per-layer Table 1 formula with this model's numbers filled in, e.g. "2 n_g d_h = 2 × 8 × 128 =
    2,048": the scheme's :attr:`~attnlab.schemes.Scheme.formula` on the model's shape. When the full layers'
    widths differ from the sliding ones' (Gemma 4), one formula per kind: "sliding: ...; full: ..."."""
    spec = get_model(model)
    scheme, _ = _check_scheme(spec, scheme, n_kv_heads)
    formulas = {}
    for i, kind in enumerate(spec.layer_types):
        shape = spec.layer_shape(i, n_kv_heads)
        per = costs.cache_elements_per_token(scheme, shape, per_layer=True)
        formulas.setdefault(kind, f"{get_scheme(scheme).formula.format(**vars(shape))} = {per:,}")
    if len(set(formulas.values())) == 1:
        return next(iter(formulas.values()))
    return "; ".join(f"{kind}: {text}" for kind, text in formulas.items())


def layer_plan(model: ModelSpec | str) -> str:
    """The model's layers in words, from its config: "42 layers, all full", "21 sliding (window 4,096) + 21
    full", "12 sliding (window 512) + 3 full keep a cache; 20 read an earlier layer's"."""
    spec = get_model(model)
    owners = spec.layer_types[:spec.n_layers - spec.kv_shared_layers]
    n_sliding, n_full = owners.count("sliding"), owners.count("full")
    parts = ([f"{n_sliding} sliding (window {spec.sliding_window:,})"] if n_sliding else []) + (
        [f"{n_full} full"] if n_full else [])
    if spec.kv_shared_layers:
        return " + ".join(parts) + f" keep a cache; {spec.kv_shared_layers} read an earlier layer's"
    if not n_sliding:
        return f"{spec.n_layers} layers, all full"
    return " + ".join(parts) if n_full else f"{parts[0]}, none full"
