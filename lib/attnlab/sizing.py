"""KV-cache sizing for real models: how many bytes one token of context costs, and how many tokens fit.

While a model generates, every new token attends to every earlier one, so each layer keeps the keys
and values of all earlier tokens: the KV cache. Per token and layer it holds (DeepSeek-V2 paper,
arXiv 2405.04434, Table 1; n_h query heads, n_g KV heads, d_h head width, l layers)

    MHA   2 n_h d_h        every query head has its own key and value
    GQA   2 n_g d_h        n_g groups of query heads share one key and value each
    MQA   2 d_h            one key and one value shared by all heads
    MLA   d_c + d_h^R      one latent c^KV (width d_c) plus one decoupled RoPE key k^R (width d_h^R)

numbers, times l for the whole model. :func:`kv_cache_bytes` multiplies that by the context length,
the batch and the bytes of the dtype; :data:`MODELS` holds the published shapes of real models.

The counts themselves live in :mod:`attnlab.costs` (one function per quantity, over an
:class:`~attnlab.costs.AttentionShape`) and what each scheme caches in :mod:`attnlab.schemes`; this module
applies them to published models, by name, as published or "what if it used scheme X"
(:meth:`ModelSpec.attention_shape` gives the shape a sizing uses).

For MLA models ``head_dim`` is the per-head value (and non-RoPE key) width d_h = 128, which is what the
MHA/MQA/GQA comparisons use; the query/key head is 192 wide (128 + 64) but that is not what is cached.
"""

from __future__ import annotations

from dataclasses import dataclass

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
)
from attnlab.costs import DTYPES_BY_NAME, AttentionShape, get_dtype  # noqa: F401 (DTYPES_BY_NAME: re-exported)
from attnlab.devices import dtype_bytes
from attnlab.schemes import TABLE1_SCHEMES, get_scheme

#: The attention schemes the sizing compares, in the course's order: the DeepSeek-V2 paper's Table 1
#: (:data:`attnlab.schemes.TABLE1_SCHEMES`). DSA caches MLA's entries plus an index key
#: (:func:`indexer_elements_per_token`).
SCHEMES: tuple[str, ...] = TABLE1_SCHEMES

GIB = 2**30  # bytes in one GiB (the unit GPU memory is sold in)


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

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise ArgumentTypeError(f"name={self.name!r} must be a non-empty string")
        if not self.name:
            raise ValueError(f"name={self.name!r} must be a non-empty string")
        for field in ("n_layers", "n_heads", "n_kv_heads", "head_dim", "hidden_size"):
            check_positive_int(field, getattr(self, field))
        for field in ("kv_lora_rank", "qk_rope_head_dim", "q_lora_rank", "n_params", "max_context",
                      "index_n_heads", "index_head_dim", "index_topk"):
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


def _spec(name: str, source: str, **shape) -> ModelSpec:
    return ModelSpec(name=name, source=source, **shape)


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
    # = 224), max_position_embeddings 8192; 9.24B parameters. Every other layer uses a 4096-token sliding
    # window, which a rolling cache could exploit; sized here as a full cache on every layer.
    "gemma-2-9b": _spec(
        "Gemma-2-9B", "https://huggingface.co/google/gemma-2-9b/blob/main/config.json",
        n_layers=42, n_heads=16, n_kv_heads=8, head_dim=256, attention="gqa", hidden_size=3584,
        n_params=9_240_000_000, max_context=8192),
    # https://huggingface.co/deepseek-ai/DeepSeek-V2-Lite/blob/main/config.json: num_hidden_layers 27,
    # num_attention_heads 16, kv_lora_rank 512, qk_rope_head_dim 64, qk_nope_head_dim 128,
    # v_head_dim 128, hidden_size 2048, max_position_embeddings 163840, q_lora_rank null (no query latent);
    # 15.7B parameters (2.4B active).
    "deepseek-v2-lite": _spec(
        "DeepSeek-V2-Lite", "https://huggingface.co/deepseek-ai/DeepSeek-V2-Lite/blob/main/config.json",
        n_layers=27, n_heads=16, n_kv_heads=16, head_dim=128, attention="mla", hidden_size=2048,
        kv_lora_rank=512, qk_rope_head_dim=64, n_params=15_700_000_000, max_context=163_840),
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


def kv_elements_per_token(model: ModelSpec | str, scheme: str | None = None, n_kv_heads: int | None = None,
                          *, per_layer: bool = False) -> int:
    """Numbers the KV cache holds for one token (Table 1 of arXiv 2405.04434), over all l layers or,
    with ``per_layer=True``, for one layer: MHA 2 n_h d_h, MQA 2 d_h, GQA 2 n_g d_h, MLA d_c + d_h^R.

    ``scheme`` None sizes the model as published; "mha"/"mqa"/"gqa"/"mla" is "what if it used that"
    (GQA takes ``n_kv_heads`` or the model's own; MLA on a non-MLA model uses :func:`mla_dims`).
    """
    spec = get_model(model)
    scheme, n_g = _check_scheme(spec, scheme, n_kv_heads)
    check_bool("per_layer", per_layer)
    return costs.cache_elements_per_token(scheme, spec.attention_shape(n_g), per_layer=per_layer)


def cache_bytes_per_token(model: ModelSpec | str, dtype: torch.dtype | str = torch.bfloat16,
                          scheme: str | None = None, n_kv_heads: int | None = None) -> int:
    """Bytes one more token of context adds to the cache: elements per token (all layers) x bytes per
    element of ``dtype`` (bf16: 2, fp8: 1); :func:`attnlab.costs.cache_bytes_per_token` for ``model``."""
    spec = get_model(model)
    scheme, n_g = _check_scheme(spec, scheme, n_kv_heads)
    return costs.cache_bytes_per_token(scheme, spec.attention_shape(n_g), get_dtype(dtype))


def kv_cache_bytes(model: ModelSpec | str, seq_len: int = 1, batch: int = 1,
                   dtype: torch.dtype | str = torch.bfloat16, scheme: str | None = None,
                   n_kv_heads: int | None = None) -> int:
    """Size of the KV cache for ``batch`` sequences of ``seq_len`` tokens:

        bytes = batch x seq_len x l x (elements per token per layer, Table 1) x bytes(dtype)

    ``model`` is a :class:`ModelSpec` or a key of :data:`MODELS`; ``scheme`` None = as published, else
    the what-if scheme ("mha", "mqa", "gqa" with ``n_kv_heads``, "mla"). Returns an int (bytes).
    """
    check_non_negative_int("seq_len", seq_len)
    check_positive_int("batch", batch)
    return batch * seq_len * cache_bytes_per_token(model, dtype, scheme, n_kv_heads)


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
                    weights_dtype: torch.dtype | str | None = None) -> int:
    """How many tokens of cache (summed over all sequences of a batch) fit in ``gpu_gib`` GiB:
    floor((gpu_gib x 2^30 - weights) / cache_bytes_per_token). ``weights_dtype`` given: the model's weights
    (n_params x bytes) sit in the same memory first; 0 when they alone do not fit."""
    budget = int(check_real("gpu_gib", gpu_gib, 0.0, strict=True) * GIB)
    if weights_dtype is not None:
        budget -= weight_bytes(model, weights_dtype)
    per_token = cache_bytes_per_token(model, dtype, scheme, n_kv_heads)
    return max(budget, 0) // per_token


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
    2,048": the scheme's :attr:`~attnlab.schemes.Scheme.formula` on the model's shape."""
    spec = get_model(model)
    scheme, n_g = _check_scheme(spec, scheme, n_kv_heads)
    shape = spec.attention_shape(n_g)
    per = costs.cache_elements_per_token(scheme, shape, per_layer=True)
    text = get_scheme(scheme).formula.format(**vars(shape))
    return f"{text} = {per:,}"
