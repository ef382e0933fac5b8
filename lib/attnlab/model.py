"""A small decoder-only language model whose attention layer is pluggable.

    h_0 = E[ids]
    h_l = h_{l-1} + Attn_l(RMSNorm(h_{l-1}))          (Attn = MHA, MQA or GQA; MLA and DSA plug in later;
                                                     a hybrid puts Gated DeltaNet in all but every r-th layer)
    h_l = h_l + MLP_l(RMSNorm(h_l))                  (SwiGLU MLP)
    logits = RMSNorm(h_L) E^T                        (output head tied to the embedding)

Small enough to train on a laptop CPU in minutes (``python -m attnlab.train``), big enough that its
attention maps on real text show structure and that cached generation is worth checking.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from attnlab._validate import (
    check_bool,
    check_device,
    check_divisible,
    check_dtype,
    check_floating,
    check_hidden_states,
    check_integer_tensor,
    check_ndim,
    check_non_negative_int,
    check_path,
    check_positive_int,
    check_real,
    check_type,
)
from attnlab.attention import AttentionLayer
from attnlab.costs import AttentionShape
from attnlab.dsa import IndexerConfig
from attnlab.gqa import AttentionConfig
from attnlab.kv_cache import KVCache
from attnlab.linear_attention import LinearAttention, LinearAttentionConfig, RecurrentState
from attnlab.mla import MLAConfig
from attnlab.schemes import (
    DSA,
    HYBRID_DEFAULTS,
    MHA,
    MLA,
    SCHEMES,
    SHARED_KV_DEFAULTS,
    VARIANTS,
    WINDOW_DEFAULTS,
)
from attnlab.window import SharedKVAttention, WindowConfig, WindowedAttention, layer_types

ATTENTION_KINDS: tuple[str, ...] = tuple(SCHEMES)  # the course's schemes, attnlab.schemes.SCHEMES
#: The tiny variants of chapters 17 and 18: the checkpoint ``tiny_<key>`` is the tiny GQA model with these fields
#: set (a window and sinks, shared K/V, or Gated DeltaNet in three layers of four).
TINY_VARIANTS: dict[str, dict[str, int]] = {"gqa_window": WINDOW_DEFAULTS, "gqa_shared": SHARED_KV_DEFAULTS,
                                            "gqa_hybrid": HYBRID_DEFAULTS}
#: The schemes a hybrid's full layers may use: the dense ones (Qwen3-Next: GQA) and MLA (Kimi Linear).
HYBRID_FULL_KINDS: tuple[str, ...] = ("mha", "mqa", "gqa", "mla")
DATA_DIR = Path(__file__).parent / "data"


@dataclass(frozen=True)
class TinyLMConfig:
    """Shape of the tiny model. ``attention`` picks the layer: "mha" (n_kv_heads = n_heads), "mqa" (1),
    "gqa" (``n_kv_heads``, a divisor of n_heads), "mla" (latent ``kv_lora_rank`` = d_c and decoupled
    RoPE key ``qk_rope_head_dim`` = d_h^R; the DeepSeek-V2 paper's choices d_c = 4 d_h, d_h^R = d_h / 2)
    or "dsa" (MLA plus a lightning indexer of ``index_n_heads`` heads of width ``index_head_dim`` that
    picks ``index_topk`` tokens per query).

    ``full_every`` r > 0 makes a linear/full hybrid (chapter 18): layer i keeps ``attention`` iff
    (i + 1) % r == 0 and is otherwise a Gated DeltaNet layer (:meth:`linear_config`), as Qwen3-Next's
    ``full_attention_interval`` = 4 does."""

    vocab_size: int = 512
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 8
    n_kv_heads: int = 2
    d_ff: int = 344  # SwiGLU hidden width, about 8/3 d_model
    max_seq_len: int = 256
    attention: str = "gqa"
    rope_base: float = 10000.0
    kv_lora_rank: int = 64  # d_c (MLA only)
    qk_rope_head_dim: int = 8  # d_h^R (MLA and DSA)
    index_n_heads: int = 4  # H^I (DSA only)
    index_head_dim: int = 16  # d^I (DSA only)
    index_topk: int = 32  # k (DSA only)
    window: int | None = None  # W of the sliding layers (chapter 17); None: every layer global
    global_every: int = 0  # with a window: layer i global iff (i + 1) % global_every == 0; 0: every layer slides
    n_sinks: int = 0  # StreamingLLM sink tokens the sliding layers keep beside their window
    kv_share: int = 1  # cross-layer KV sharing (CLA): layer i reads layer i - i % kv_share's K/V; 1: none
    full_every: int = 0  # hybrid: layer i full iff (i + 1) % full_every == 0, the rest Gated DeltaNet; 0: all full

    def __post_init__(self) -> None:
        for name in ("vocab_size", "d_model", "n_layers", "n_heads", "n_kv_heads", "d_ff", "max_seq_len",
                     "kv_lora_rank", "qk_rope_head_dim", "index_n_heads", "index_head_dim", "index_topk"):
            check_positive_int(name, getattr(self, name))
        if not isinstance(self.attention, str) or self.attention not in ATTENTION_KINDS:
            raise ValueError(f"attention={self.attention!r} must be one of {ATTENTION_KINDS}")
        self.attention_config()  # validates the head counts
        if self.attention in ("mla", "dsa"):
            self.mla_config()  # validates d_c and d_h^R against the head shape
        if self.attention == "dsa":
            self.indexer_config()
        if self.window is not None:
            check_positive_int("window", self.window)
        check_non_negative_int("global_every", self.global_every)
        check_non_negative_int("n_sinks", self.n_sinks)
        check_positive_int("kv_share", self.kv_share)
        if self.n_sinks and self.window is None:
            raise ValueError(f"n_sinks={self.n_sinks} needs a window: a global layer keeps every token anyway")
        if self.global_every and self.window is None:
            raise ValueError(f"global_every={self.global_every} needs a window: without one every layer is global")
        if self.windowed and not SCHEMES[self.attention].dense:
            raise ValueError(f"window, n_sinks and kv_share apply to the dense schemes (mha, mqa, gqa), "
                             f"not attention={self.attention!r}")
        self._check_full_every()

    def _check_full_every(self) -> None:
        """``full_every``: 0 (no linear layer), or 2..n_layers, with a scheme whose full layers a hybrid may keep."""
        check_non_negative_int("full_every", self.full_every)
        if not self.full_every:
            return
        if self.full_every == 1:
            raise ValueError("full_every=1 makes every layer full, which is the plain model: write full_every=0 "
                             "(no linear layer), or e.g. 4 for one full layer in four (Qwen3-Next)")
        if self.full_every > self.n_layers:
            raise ValueError(f"full_every={self.full_every} > n_layers={self.n_layers} leaves no full layer: layer i "
                             f"is full iff (i + 1) % full_every == 0, and a hybrid keeps at least one (the layer that "
                             "can still look any token up)")
        if self.windowed:
            raise ValueError(f"full_every={self.full_every} cannot be combined with window, n_sinks or kv_share: a "
                             "model is a hybrid (chapter 18) or a windowed/shared-KV model (chapter 17), not both")
        if self.attention not in HYBRID_FULL_KINDS:
            raise ValueError(f"full_every={self.full_every} with attention={self.attention!r}: a hybrid's full layers "
                             f"are one of {HYBRID_FULL_KINDS} (DSA's indexer is trained over a model whose every "
                             "layer is DSA)")
        check_divisible("d_model", self.d_model, "n_heads", self.n_heads)

    @property
    def windowed(self) -> bool:
        """True when a layer slides or shares its K/V (chapter 17's variants): layers are built by attnlab.window."""
        return self.window is not None or self.kv_share != 1

    def layer_window(self, layer: int) -> WindowConfig:
        """Layer ``layer``'s window: sliding (W, the sinks) unless global by ``global_every`` or no window is set."""
        self._check_layer(layer)
        if self.window is None or layer_types(self.n_layers, self.global_every)[layer] == "full_attention":
            return WindowConfig()
        return WindowConfig(self.window, self.n_sinks)

    def kv_source(self, layer: int) -> int:
        """The layer whose K/V layer ``layer`` reads: itself, or with kv_share r the first of its group of r (CLA)."""
        self._check_layer(layer)
        return layer - layer % self.kv_share

    @property
    def hybrid(self) -> bool:
        """True when some layers are Gated DeltaNet (``full_every`` > 0): a linear/full hybrid (chapter 18)."""
        return self.full_every > 0

    def is_linear(self, layer: int) -> bool:
        """Whether layer ``layer`` is a Gated DeltaNet layer: in a hybrid, iff (layer + 1) % full_every != 0."""
        self._check_layer(layer)
        return self.hybrid and (layer + 1) % self.full_every != 0

    def layer_types(self) -> tuple[str, ...]:
        """"linear_attention" or "full_attention" per layer, as Hugging Face's Qwen3-Next config spells them."""
        return tuple("linear_attention" if self.is_linear(i) else "full_attention" for i in range(self.n_layers))

    def linear_config(self) -> LinearAttentionConfig:
        """The :class:`~attnlab.linear_attention.LinearAttentionConfig` of a hybrid's linear layers: Gated DeltaNet
        with the model's heads, n_heads x d_h (d_h = d_model / n_heads) for keys, queries and values, and
        Qwen3-Next's short convolution of 4 taps; chunks of 64 tokens in the chunkwise form."""
        check_divisible("d_model", self.d_model, "n_heads", self.n_heads)
        return LinearAttentionConfig(self.d_model, self.n_heads, self.d_model // self.n_heads, rule="gated_delta",
                                     conv_size=4, chunk_size=64)

    def _check_layer(self, layer: int) -> None:
        check_non_negative_int("layer", layer)
        if layer >= self.n_layers:
            raise ValueError(f"layer={layer} must be below n_layers={self.n_layers}")

    def attention_shape(self) -> AttentionShape:
        """Every layer's widths as an :class:`~attnlab.costs.AttentionShape` (per-head d_h = d_model / n_heads;
        the scheme's record decides how many of ``n_kv_heads`` it uses: MHA all, MQA one, GQA n_kv_heads)."""
        check_divisible("d_model", self.d_model, "n_heads", self.n_heads)
        return AttentionShape(d_model=self.d_model, n_heads=self.n_heads, head_dim=self.d_model // self.n_heads,
                              n_kv_heads=self.n_kv_heads, kv_lora_rank=self.kv_lora_rank,
                              qk_rope_head_dim=self.qk_rope_head_dim, index_n_heads=self.index_n_heads,
                              index_head_dim=self.index_head_dim, index_topk=self.index_topk,
                              n_layers=self.n_layers)

    def _layer_options(self) -> dict:
        """What the tiny model sets on top of the shape: RoPE on the dense layers' q and k, its base."""
        return {"rope": True, "rope_base": self.rope_base} if SCHEMES[self.attention].dense else \
            {"rope_base": self.rope_base}

    def mla_config(self) -> MLAConfig:
        """The :class:`MLAConfig` of every layer when attention == "mla" (per-head dims d_h = d_model / n_heads)."""
        return MLA.layer_config(self.attention_shape(), rope_base=self.rope_base)

    def indexer_config(self) -> IndexerConfig:
        """The lightning indexer paired with :meth:`mla_config` when attention == "dsa"."""
        return DSA.layer_config(self.attention_shape(), rope_base=self.rope_base)[1]

    def build_attention(self, layer: int = 0, source: AttentionLayer | None = None) -> AttentionLayer:
        """One attention layer of the kind ``attention`` names, built by its record in :mod:`attnlab.schemes`;
        all share forward(x, cache, return_weights) -> :class:`~attnlab.attention.AttentionOutput`. A windowed
        or shared-KV model (:attr:`windowed`) builds layer ``layer`` with :mod:`attnlab.window`: a
        :class:`~attnlab.window.WindowedAttention`, or a :class:`~attnlab.window.SharedKVAttention` reading
        ``source``'s K/V when :meth:`kv_source` names another layer. A hybrid's linear layers (:meth:`is_linear`)
        are :class:`~attnlab.linear_attention.LinearAttention` of :meth:`linear_config`."""
        if self.is_linear(layer):
            return LinearAttention(self.linear_config())
        if not self.windowed:
            return SCHEMES[self.attention].build_layer(self.attention_shape(), **self._layer_options())
        config = self.attention_config()
        if self.kv_source(layer) == layer:
            return WindowedAttention(config, self.layer_window(layer))
        if not isinstance(source, WindowedAttention):
            raise ValueError(f"layer {layer} reads layer {self.kv_source(layer)}'s K/V: pass that layer as source")
        return SharedKVAttention(config, source, self.layer_window(layer))

    def attention_config(self) -> AttentionConfig:
        """The :class:`AttentionConfig` of every layer, with n_kv_heads set by ``attention`` (MLA: the head
        shape it re-expands to, n_kv_heads = n_heads)."""
        record = SCHEMES[self.attention]
        if not record.dense:
            return MHA.layer_config(self.attention_shape(), rope=True, rope_base=self.rope_base)
        return record.layer_config(self.attention_shape(), **self._layer_options())


def tiny_config(scheme: str, **fields) -> TinyLMConfig:
    """The tiny model of ``scheme``: one of :data:`ATTENTION_KINDS`, or a variant of :data:`TINY_VARIANTS` (its
    base scheme with the variant's fields, e.g. "gqa_window" -> attention="gqa", window=32, n_sinks=4;
    "gqa_hybrid" -> attention="gqa", full_every=4);
    ``fields`` override any :class:`TinyLMConfig` field."""
    allowed = (*ATTENTION_KINDS, *TINY_VARIANTS)
    if not isinstance(scheme, str) or scheme not in allowed:
        raise ValueError(f"scheme={scheme!r} must be one of {allowed}")
    if scheme in TINY_VARIANTS:
        return TinyLMConfig(**{"attention": VARIANTS[scheme].base, **TINY_VARIANTS[scheme], **fields})
    return TinyLMConfig(**{"attention": scheme, **fields})


class SwiGLU(nn.Module):
    """MLP(x) = W_2 (SiLU(W_1 x) * W_3 x)  (Shazeer 2020), x: (..., d_model) -> (..., d_model)."""

    def __init__(self, d_model: int, d_ff: int) -> None:
        super().__init__()
        check_positive_int("d_model", d_model)
        check_positive_int("d_ff", d_ff)
        self.w_1 = nn.Linear(d_model, d_ff, bias=False)
        self.w_3 = nn.Linear(d_model, d_ff, bias=False)
        self.w_2 = nn.Linear(d_ff, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_floating("x", x)
        if x.dim() == 0 or x.shape[-1] != self.w_1.in_features:
            raise ValueError(f"x must have shape (..., d_model={self.w_1.in_features}), got {tuple(x.shape)}")
        return self.w_2(F.silu(self.w_1(x)) * self.w_3(x))


class Block(nn.Module):
    """Pre-norm transformer block: h += Attn(RMSNorm(h)); h += MLP(RMSNorm(h))."""

    def __init__(self, config: TinyLMConfig, layer: int = 0, source: AttentionLayer | None = None) -> None:
        super().__init__()
        check_type("config", config, TinyLMConfig)
        self.attn_norm = nn.RMSNorm(config.d_model)
        self.attn = config.build_attention(layer, source)
        self.mlp_norm = nn.RMSNorm(config.d_model)
        self.mlp = SwiGLU(config.d_model, config.d_ff)

    def forward(self, h: torch.Tensor, cache=None, return_weights: bool = False):
        check_hidden_states(h, self.mlp.w_1.in_features, self.mlp.w_1.weight, nonempty=False, owner="block", name="h")
        check_bool("return_weights", return_weights)
        a = self.attn(self.attn_norm(h), cache=cache, return_weights=return_weights)
        h = h + a.output
        h = h + self.mlp(self.mlp_norm(h))
        return h, a.weights


class TinyLM(nn.Module):
    """ids (batch, seq) -> logits (batch, seq, vocab). Pass a :class:`KVCache` to decode incrementally."""

    def __init__(self, config: TinyLMConfig) -> None:
        super().__init__()
        check_type("config", config, TinyLMConfig)
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.d_model)  # E
        self.blocks = nn.ModuleList()
        for i in range(config.n_layers):  # a shared-KV layer is built with the layer whose K/V it reads
            source = self.blocks[config.kv_source(i)].attn if config.kv_source(i) != i else None
            self.blocks.append(Block(config, i, source))
        self.norm = nn.RMSNorm(config.d_model)
        self.apply(self._init)

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)

    def new_cache(self, window: int | None = None) -> KVCache:
        """An empty cache with one layer slot per block, room for max_seq_len tokens allocated at the first
        call; ``window`` W keeps only each layer's last W tokens (sliding-window attention; not for DSA). A
        windowed model (:attr:`TinyLMConfig.windowed`) gives each sliding layer its
        :class:`~attnlab.window.RollingCache` and leaves a shared layer's slot empty. A hybrid
        (:attr:`TinyLMConfig.hybrid`) gives each linear layer a :class:`~attnlab.linear_attention.RecurrentState`:
        a fixed-size state, which the cache's :attr:`~attnlab.kv_cache.KVCache.state_nbytes` counts and its
        bytes per token leave out (it does not grow)."""
        cache = KVCache(self.config.n_layers, window=window, capacity=self.config.max_seq_len)
        for i in range(self.config.n_layers):
            if self.config.is_linear(i):
                cache.layers[i] = RecurrentState()
        if self.config.windowed:
            if window is not None:
                raise ValueError(f"window={window}: this model's layers bring their own windows (config.window)")
            for i in range(self.config.n_layers):
                if self.config.kv_source(i) == i and self.config.layer_window(i).window is not None:
                    cache.layers[i] = self.config.layer_window(i).new_cache()
        return cache

    def forward(self, ids: torch.Tensor, cache: KVCache | None = None, return_attention: bool = False):
        """Logits for every position; with ``cache``, ``ids`` are the NEW tokens after those cached.

        return_attention=True also returns each layer's weights (batch, n_heads, seq, seq_total)."""
        check_ndim("ids", ids, 2, "(batch, seq)")
        if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
            raise ValueError(f"ids must be an integer tensor of token ids, got {ids.dtype}")
        if 0 in ids.shape:
            raise ValueError(f"ids has shape {tuple(ids.shape)}: pass at least one sequence of at least one token")
        if cache is not None:
            check_type("cache", cache, KVCache, "a KVCache (model.new_cache())")
        check_bool("return_attention", return_attention)
        if cache is not None and len(cache) != self.config.n_layers:
            raise ValueError(f"cache has {len(cache)} layers, the model has n_layers={self.config.n_layers}")
        start = 0 if cache is None else cache.seq_len
        if start + ids.shape[1] > self.config.max_seq_len:
            raise ValueError(
                f"sequence length {start + ids.shape[1]} exceeds max_seq_len={self.config.max_seq_len}"
            )
        if ids.numel() and (ids.min() < 0 or ids.max() >= self.config.vocab_size):
            raise ValueError(f"ids must lie in [0, vocab_size={self.config.vocab_size})")
        h = self.embed(ids)  # (b, s, d_model)
        maps = []
        for i, block in enumerate(self.blocks):
            h, weights = block(h, None if cache is None else cache[i], return_attention)
            maps.append(weights)
        logits = self.norm(h) @ self.embed.weight.T  # tied output head, (b, s, vocab)
        return (logits, maps) if return_attention else logits

    def loss(self, ids: torch.Tensor) -> torch.Tensor:
        """Next-token cross-entropy: predict ids[:, 1:] from ids[:, :-1]."""
        check_ndim("ids", ids, 2, "(batch, seq)")
        if ids.shape[1] < 2:
            raise ValueError(f"ids has seq={ids.shape[1]}: the loss needs at least 2 tokens (an input and a target)")
        logits = self(ids[:, :-1])
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))


@torch.no_grad()
def generate(model: TinyLM, ids: torch.Tensor, max_new_tokens: int, use_cache: bool = True,
             temperature: float = 0.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """Append ``max_new_tokens`` tokens to ``ids`` (batch, seq); greedy when temperature == 0.

    use_cache=True: one prefill pass over the prompt, then one token per step through the KV cache.
    use_cache=False: every step re-runs the whole sequence (the O(t^2) baseline). Both give the same tokens.
    """
    check_type("model", model, TinyLM)
    check_ndim("ids", ids, 2, "(batch, seq)")
    check_integer_tensor("ids", ids)
    check_non_negative_int("max_new_tokens", max_new_tokens)
    check_bool("use_cache", use_cache)
    check_real("temperature", temperature, 0.0)
    if generator is not None:
        check_type("generator", generator, torch.Generator)
    longest = ids.shape[1] + max_new_tokens - 1  # the last new token is predicted from all the others
    if max_new_tokens and longest > model.config.max_seq_len:
        raise ValueError(f"sequence length {longest} exceeds max_seq_len={model.config.max_seq_len}: ids holds "
                         f"{ids.shape[1]} tokens and max_new_tokens={max_new_tokens} more are generated")
    cache = model.new_cache() if use_cache else None
    out, step_input = ids, ids
    for _ in range(max_new_tokens):
        logits = model(step_input, cache=cache)[:, -1]  # (b, vocab), the last position only
        if temperature == 0:
            nxt = logits.argmax(dim=-1, keepdim=True)
        else:
            probs = torch.softmax(logits.double() / temperature, dim=-1)
            nxt = torch.multinomial(probs, 1, generator=generator)
        out = torch.cat([out, nxt], dim=1)
        step_input = nxt if use_cache else out
    return out


def checkpoint_path(name: str) -> Path:
    """Where the shipped checkpoint ``name`` (e.g. "tiny_gqa") lives: lib/attnlab/data/<name>.pt."""
    check_type("name", name, str)
    return DATA_DIR / f"{name}.pt"


def save_checkpoint(model: TinyLM, path: Path, metrics: dict | None = None) -> None:
    """Save config, float16 weights (small enough to ship) and training metrics."""
    check_type("model", model, TinyLM)
    check_path("path", path)
    if metrics is not None:
        check_type("metrics", metrics, dict)
    state = {k: v.to(torch.float16) for k, v in model.state_dict().items()}
    torch.save({"config": asdict(model.config), "state_dict": state, "metrics": metrics or {}}, path)


def load_checkpoint(name_or_path: str | Path, dtype: torch.dtype = torch.float32,
                    device: torch.device | str = "cpu") -> TinyLM:
    """Load a shipped checkpoint by name ("tiny_gqa") or a path; returns the model in eval mode."""
    check_path("name_or_path", name_or_path)
    check_dtype("dtype", dtype, floating=True)
    check_device("device", device)
    path = Path(name_or_path)
    if not path.suffix:
        path = checkpoint_path(str(name_or_path))
    if not path.exists():
        shipped = sorted(p.stem for p in DATA_DIR.glob("*.pt"))
        raise ValueError(f"no checkpoint {str(name_or_path)!r}; shipped: {shipped}")
    blob = torch.load(path, map_location="cpu", weights_only=True)
    model = TinyLM(TinyLMConfig(**blob["config"]))
    model.load_state_dict({k: v.to(torch.float32) for k, v in blob["state_dict"].items()})
    model.metrics = blob.get("metrics", {})
    return model.to(device=device, dtype=dtype).eval()


def checkpoint_metrics(name: str) -> dict:
    """The training metrics stored beside a shipped checkpoint (steps, losses, seconds)."""
    path = checkpoint_path(name)
    if not path.exists():
        shipped = sorted(p.stem for p in DATA_DIR.glob("*.pt"))
        raise ValueError(f"no checkpoint name={name!r}; shipped: {shipped}")
    return json.loads(json.dumps(torch.load(path, weights_only=True)["metrics"]))
