"""DeepSeek Sparse Attention (DSA, DeepSeek-V3.2-Exp: tech report "DeepSeek-V3.2" and ``inference/model.py``).

MLA (:mod:`attnlab.mla`) shrinks what each token costs to cache; every query still reads all t cached
tokens, so a decode step costs O(t) and a prefill O(L^2). DSA keeps MLA and lets each query read only k
of them (k = 2048 in V3.2), chosen by a small, cheap scorer, the lightning indexer. For query token t
and an earlier token s (H^I index heads of width d^I; h_t the layer's input):

    q^I_{t,j} = W^IQ_j c^Q_t           index query of head j, from MLA's query latent c^Q_t
    k^I_s     = LayerNorm(W^IK h_s)    ONE index key per token, shared by all index heads (cached)
    w^I_{t,j} = (W^IW h_t)_j           a per-token weight for each index head
    I_{t,s}   = sum_j w^I_{t,j} ReLU(q^I_{t,j} · k^I_s)                          (index score)
    S_t       = Top-k_{s <= t} I_{t,s},  |S_t| = min(k, t + 1)                   (causal top-k)
    u_t       = MLA(h_t, {c^KV_s, k^R_s : s in S_t})                             (sparse attention)

The same set S_t serves every MLA head, and the sparse attention runs in MLA's absorbed ("MQA") mode:
every head reads the same gathered latents. DeepSeek's code also scales I by (n_heads^I)^-0.5 and by
(d^I)^-0.5 (``weights_proj(x) * n_heads ** -0.5`` and ``softmax_scale``); ReLU instead of softmax was chosen
for throughput. The first d^R coordinates of q^I and k^I are rotated by RoPE, with the main attention's
frequency table, but in the "halves" pairing (i, i + d^R/2), not MLA's interleaved one.

Before scoring, DeepSeek rotates q^I and k^I by an orthonormal Hadamard matrix (dot products unchanged)
and quantizes them to FP8 e4m3 in blocks of 128 (:mod:`attnlab.quant`); the cached k^I is FP8 with one
fp32 scale. Here FP8 is simulated (quantize, then dequantize) and off by default; Hugging Face's
``DeepseekV32Indexer`` skips both the rotation and FP8.

The indexer is trained to imitate the main attention (tech report, continued pre-training):

- stage 1, dense warm-up: attention stays dense and only the indexer trains, on
  L^I = sum_t KL(p_t || Softmax(I_t)), with p_t the main attention summed over heads and L1-normalised;
- stage 2, sparse training: attention uses S_t; L^I = sum_t KL(p_{t,S_t} || Softmax(I_{t,S_t})); the indexer's
  input is detached, so the indexer learns only from L^I and the rest of the model only from the LM loss.

:func:`layer_cost` and :func:`crossover_context` count what that buys: the core attention drops from
C_attn L to C_attn k per decoded token, at the price of an indexer pass C_idx L that is about 17x cheaper
per token than MLA's absorbed attention with DeepSeek-V3.2's shapes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from attnlab import costs
from attnlab._validate import (
    check_bool,
    check_cache,
    check_floating,
    check_hidden_states,
    check_indices,
    check_integer_tensor,
    check_ndim,
    check_non_negative_int,
    check_positions,
    check_positive_int,
    check_real,
    check_same_device,
    check_type,
)
from attnlab.attention import AttentionLayer, AttentionOutput, causal_mask
from attnlab.costs import AttentionShape
from attnlab.fused import _fusable, _index_scores_fused
from attnlab.kv_cache import LayerCache
from attnlab.mla import MLAConfig, MultiHeadLatentAttention, _rope_settings, yarn_frequencies
from attnlab.quant import SCALE_FORMATS, fake_quantize_fp8, hadamard_rotation
from attnlab.rope import RopeTable, rope_frequencies

if TYPE_CHECKING:
    from attnlab.sizing import ModelSpec

#: How :class:`DeepSeekSparseAttention` runs attention over the selected tokens: "gather" copies the
#: selected latents out of the cache (the fast path), "mask" runs dense MLA with every other key masked.
SPARSE_IMPLS: tuple[str, ...] = ("gather", "mask")
#: :class:`DeepSeekSparseAttention`'s implementations: the two sparse ones, and "dense", MLA over every
#: token with the indexer still scoring (the tech report's dense warm-up). "gather" is the default.
DSA_IMPLEMENTATIONS: tuple[str, ...] = (*SPARSE_IMPLS, "dense")
#: :func:`set_training_stage`'s stages: the tech report's dense warm-up and sparse training, and inference.
TRAINING_STAGES: tuple[str, ...] = ("warmup", "sparse", "inference")
#: Quantities :func:`crossover_context` can compare.
COST_METRICS: tuple[str, ...] = costs.COST_METRICS


def _is_power_of_two(n: int) -> bool:
    return n >= 1 and n & (n - 1) == 0


# ----------------------------------------------------------------------------------------------------
# configuration


@dataclass(frozen=True, kw_only=True)
class IndexerConfig:
    """Shape of one lightning indexer, in DeepSeek's names (tech report symbols in brackets).

    d_model [d]: width of the hidden state h_t; q_lora_rank [d'_c]: width of the MLA query latent c^Q_t the
    index query is projected from; None or 0 when the MLA layer has no query latent, and then the index
    query is projected from the hidden state h_t instead. index_n_heads [H^I] (64 in V3.2); index_head_dim
    [d^I] (128); rope_head_dim: how many leading coordinates of q^I and k^I RoPE rotates (MLA's d_h^R, 64);
    index_topk [k] (2048); rope_base: RoPE's theta; norm_eps: the key LayerNorm's epsilon.
    hadamard: rotate q^I and k^I by the orthonormal Hadamard matrix (d^I must be a power of two);
    use_fp8: simulate FP8 e4m3 block quantization of q^I and k^I (off by default so float64 stays exact);
    fp8_block: values per FP8 scale (None = min(128, d^I)); fp8_scale_format: "ue8m0" (power-of-two
    scales, as DeepSeek-V3.2's ``config_671B_v3.2.json`` sets ``scale_fmt``) or "fp32".
    """

    d_model: int
    q_lora_rank: int | None
    index_n_heads: int
    index_head_dim: int
    rope_head_dim: int
    index_topk: int
    rope_base: float = 10000.0
    norm_eps: float = 1e-6
    hadamard: bool = True
    use_fp8: bool = False
    fp8_block: int | None = None
    fp8_scale_format: str = "ue8m0"

    def __post_init__(self) -> None:
        for name in ("d_model", "index_n_heads", "index_head_dim", "index_topk"):
            check_positive_int(name, getattr(self, name))
        if self.q_lora_rank is not None:
            check_non_negative_int("q_lora_rank", self.q_lora_rank)
            if self.q_lora_rank == 0:  # DeepSeek writes "no query latent" as 0
                object.__setattr__(self, "q_lora_rank", None)
        check_non_negative_int("rope_head_dim", self.rope_head_dim)
        if self.rope_head_dim % 2:
            raise ValueError(f"rope_head_dim={self.rope_head_dim} must be even (RoPE rotates pairs of dimensions)")
        if self.rope_head_dim > self.index_head_dim:
            raise ValueError(f"rope_head_dim={self.rope_head_dim} must be <= index_head_dim={self.index_head_dim}")
        check_real("rope_base", self.rope_base, 1.0, strict=True)
        check_real("norm_eps", self.norm_eps, 0.0, strict=True)
        for name in ("hadamard", "use_fp8"):
            check_bool(name, getattr(self, name))
        if self.hadamard and not _is_power_of_two(self.index_head_dim):
            raise ValueError(f"index_head_dim={self.index_head_dim} must be a power of two when hadamard=True "
                             "(Sylvester's Hadamard matrices have power-of-two order)")
        if self.fp8_block is None:
            object.__setattr__(self, "fp8_block", min(128, self.index_head_dim))
        check_positive_int("fp8_block", self.fp8_block)
        if self.index_head_dim % self.fp8_block:
            raise ValueError(f"index_head_dim={self.index_head_dim} is not divisible by fp8_block={self.fp8_block}")
        if not isinstance(self.fp8_scale_format, str) or self.fp8_scale_format not in SCALE_FORMATS:
            raise ValueError(f"fp8_scale_format={self.fp8_scale_format!r} must be one of {SCALE_FORMATS}")

    @property
    def q_input_dim(self) -> int:
        """Width of what the index query is projected from: q_lora_rank (c^Q_t), or d_model (h_t) without it."""
        return self.d_model if self.q_lora_rank is None else self.q_lora_rank

    @property
    def softmax_scale(self) -> float:
        """(d^I)^-0.5, DeepSeek's ``Indexer.softmax_scale`` (the name is DeepSeek's; no softmax follows)."""
        return self.index_head_dim**-0.5

    @property
    def head_weight_scale(self) -> float:
        """(H^I)^-0.5, the factor DeepSeek puts on ``weights_proj(x)``."""
        return self.index_n_heads**-0.5

    def cache_elements_per_token(self) -> int:
        """Numbers the indexer caches per token: one key of width d^I
        (:func:`attnlab.sizing.indexer_elements_per_token`)."""
        return self.index_head_dim


def indexer_config_for(mla: MLAConfig, index_n_heads: int, index_head_dim: int, index_topk: int,
                       **options) -> IndexerConfig:
    """The :class:`IndexerConfig` DeepSeek pairs with an MLA layer: same d_model, query latent, RoPE width
    (the indexer rotates its first d_h^R coordinates with the main attention's frequencies) and base.
    ``options``: any other IndexerConfig field (hadamard, use_fp8, ...)."""
    check_type("mla", mla, MLAConfig, "an MLAConfig")
    return IndexerConfig(d_model=mla.d_model, q_lora_rank=mla.q_lora_rank, index_n_heads=index_n_heads,
                         index_head_dim=index_head_dim, rope_head_dim=mla.qk_rope_head_dim,
                         index_topk=index_topk, rope_base=mla.rope_base, **options)


# ----------------------------------------------------------------------------------------------------
# the lightning indexer


class LightningIndexer(nn.Module):
    """I_{t,s} = sum_j w^I_{t,j} ReLU(q^I_{t,j} · k^I_s) (H^I)^-0.5 (d^I)^-0.5, causal (future s -> -inf).

    Parameters under DeepSeek's names in brackets: ``w_q`` [wq_b] (H^I d^I, q_input_dim), ``w_k`` [wk]
    (d^I, d_model), ``k_norm`` [k_norm] (LayerNorm over d^I, with bias), ``w_weights`` [weights_proj]
    (H^I, d_model). ``theta``: the RoPE frequencies (rope_head_dim / 2,) float64; None computes
    base^(-2i/d^R) (:class:`DeepSeekSparseAttention` passes the MLA layer's, YaRN included, as DeepSeek's
    code hands both the same ``freqs_cis``). ``rope_amplitude``: the factor on the rotated coordinates,
    :attr:`MLAConfig.rope_amplitude` (Hugging Face's YaRN ``attention_scaling``, which multiplies the
    cos/sin that the MLA layer and the indexer share); 1 for DeepSeek's own code and without YaRN.

    The key cache is a :class:`~attnlab.kv_cache.LayerCache` (seq_dim 1) holding ``index_key``
    (batch, t, d^I): the keys after RoPE, rotation and (simulated) FP8, d^I numbers per token.
    """

    def __init__(self, config: IndexerConfig, theta: torch.Tensor | None = None, rope_amplitude: float = 1.0) -> None:
        super().__init__()
        check_type("config", config, IndexerConfig)
        check_real("rope_amplitude", rope_amplitude, 0.0, strict=True)
        self.config = c = config
        self.w_q = nn.Linear(c.q_input_dim, c.index_n_heads * c.index_head_dim, bias=False)  # W^IQ
        self.w_k = nn.Linear(c.d_model, c.index_head_dim, bias=False)  # W^IK
        self.k_norm = nn.LayerNorm(c.index_head_dim, eps=c.norm_eps)
        self.w_weights = nn.Linear(c.d_model, c.index_n_heads, bias=False)  # W^IW
        if theta is None:
            theta = rope_frequencies(c.rope_head_dim, c.rope_base) if c.rope_head_dim else torch.zeros(0)
        check_floating("theta", theta)
        if theta.shape != (c.rope_head_dim // 2,):
            raise ValueError(f"theta has shape {tuple(theta.shape)}, expected (rope_head_dim / 2,) = "
                             f"({c.rope_head_dim // 2},)")
        self.theta = theta.to(torch.float64)  # kept outside the state dict, like MLA's
        self.rope_table = RopeTable()  # DeepSeekSparseAttention hands it MLA's: one cos, sin per step
        self.rope_amplitude = float(rope_amplitude)

    def rope(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Rotate the FIRST rope_head_dim coordinates of x (b, s, [heads,] d^I) at positions (s,) in the
        halves pairing (i, i + d^R/2); the rest pass through.

        DeepSeek's first release of V3.2-Exp rotated the indexer's pairs interleaved, like MLA; in November
        2025 it corrected ``Indexer.forward`` to ``apply_rotary_emb(..., interleaved=False)`` ("rope in
        indexer is not interleaved"), which vLLM and SGLang followed and Hugging Face's DeepseekV32Indexer
        does too (``rotate_half``)."""
        check_floating("x", x)
        if x.dim() not in (3, 4):
            raise ValueError(f"x must have 3 or 4 dims (batch, seq, [heads,] d^I), got shape {tuple(x.shape)}")
        check_positions(positions, x.shape[1])
        d_rope = self.config.rope_head_dim
        if d_rope == 0:
            return x
        x_rope, x_pass = x.split([d_rope, x.shape[-1] - d_rope], dim=-1)
        # the pairs in halves, by positions * theta; Hugging Face's YaRN scales the shared cos/sin (amplitude)
        x_rope = self.rope_table.rotate(x_rope, positions, self.theta, interleaved=False,
                                        amplitude=self.rope_amplitude)
        return torch.cat([x_rope, x_pass], dim=-1)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """What the FP8 kernel scores with: x -> x H / sqrt(d^I) when ``hadamard`` (dot products unchanged),
        then dequantize(quantize_fp8(.)) per block when ``use_fp8``. x (..., d^I) -> (..., d^I)."""
        c = self.config
        if c.hadamard:  # fwht as one matmul: quant.fwht's butterflies, faster at these widths
            x = x @ hadamard_rotation(x.shape[-1], x.dtype, x.device)
        if c.use_fp8:
            x = fake_quantize_fp8(x, c.fp8_block, c.fp8_scale_format)
        return x

    def queries(self, q_input: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """q^I (b, s, H^I, d^I) from c^Q_t (or h_t without a query latent): q_input (b, s, q_input_dim)."""
        c = self.config
        check_ndim("q_input", q_input, 3, "(batch, seq, q_input_dim)")
        if q_input.shape[-1] != c.q_input_dim:
            raise ValueError(f"q_input has width {q_input.shape[-1]}, this indexer expects q_input_dim={c.q_input_dim}")
        b, s, _ = q_input.shape
        q = self.w_q(q_input).view(b, s, c.index_n_heads, c.index_head_dim)  # q^I_{t,j} = W^IQ_j c^Q_t
        return self.prepare(self.rope(q, positions))

    def keys(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """k^I (b, s, d^I) = prepare(RoPE(LayerNorm(W^IK h_s))), one key per token shared by all index heads."""
        return self.prepare(self.rope(self.k_norm(self.w_k(x)), positions))

    def head_weights(self, x: torch.Tensor) -> torch.Tensor:
        """w^I (b, s, H^I) = W^IW h_t * (H^I)^-0.5 (DeepSeek: ``weights_proj(x) * n_heads ** -0.5``)."""
        check_hidden_states(x, self.config.d_model, self.w_weights.weight, nonempty=False, owner="indexer")
        return self.w_weights(x) * self.config.head_weight_scale

    def score(self, q: torch.Tensor, weights: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """I_{t,s} = sum_j w_{t,j} ReLU(q_{t,j} · k_s) * (d^I)^-0.5, with s > t set to -inf.

        q (b, s, H^I, d^I), weights (b, s, H^I), k (b, t, d^I), the s queries being the last s of the t
        positions -> I (b, s, t), scored by :func:`index_scores` (two matmuls); a single query at the end of the keys
        (a decode step) sees them all, so no causal mask is built for it."""
        c = self.config
        check_ndim("q", q, 4, "(batch, seq, index_n_heads, index_head_dim)")
        check_ndim("weights", weights, 3, "(batch, seq, index_n_heads)")
        check_ndim("k", k, 3, "(batch, tokens, index_head_dim)")
        b, s = q.shape[:2]
        for name, tensor, want in (("q", q, (b, s, c.index_n_heads, c.index_head_dim)),
                                   ("weights", weights, (b, s, c.index_n_heads)),
                                   ("k", k, (b, k.shape[1], c.index_head_dim))):
            if tuple(tensor.shape) != want:
                raise ValueError(f"{name} has shape {tuple(tensor.shape)}, expected {want}")
        check_floating("q", q)
        if weights.dtype != q.dtype or k.dtype != q.dtype:
            raise ValueError(f"dtype mismatch: q is {q.dtype}, weights {weights.dtype}, k {k.dtype}")
        t = k.shape[1]
        if s > t:
            raise ValueError(f"q has seq={s} queries but k only {t} tokens: the queries are the last seq of them")
        return self._score(q, weights, k)

    def _score(self, q: torch.Tensor, weights: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """:meth:`score` on checked inputs."""
        s, t = q.shape[1], k.shape[1]
        scores = _index_scores(q, weights, k, self.config.softmax_scale)  # (b, s, t)
        if s == 1:  # one query, the last position: it sees every key
            return scores
        return scores.masked_fill_(~causal_mask(s, t, device=q.device), float("-inf"))

    def forward(self, x: torch.Tensor, q_input: torch.Tensor | None = None,
                cache: LayerCache | None = None) -> torch.Tensor:
        """Index scores I (b, s, t) for x (b, s, d_model), causal; ``q_input`` (b, s, q_lora_rank) is MLA's
        query latent c^Q (required when q_lora_rank is set; must be None without a query latent, where the
        index query comes from x). With ``cache`` the new keys are appended under ``index_key`` and
        positions continue from ``cache.seq_len``."""
        c = self.config
        check_hidden_states(x, c.d_model, owner="indexer")
        if c.q_lora_rank is None:
            if q_input is not None:
                raise ValueError("q_input must be None: this indexer has q_lora_rank=None and projects its "
                                 "queries from x")
            q_input = x
        else:
            if q_input is None:
                raise ValueError(f"q_input is required: the index query is projected from MLA's query latent "
                                 f"(q_lora_rank={c.q_lora_rank})")
            check_ndim("q_input", q_input, 3, "(batch, seq, q_lora_rank)")
            if q_input.shape[:2] != x.shape[:2] or q_input.shape[-1] != c.q_lora_rank:
                raise ValueError(f"q_input has shape {tuple(q_input.shape)}, expected "
                                 f"{(*x.shape[:2], c.q_lora_rank)}")
        for name, t in (("x", x), ("q_input", q_input)):
            if t.dtype != self.w_k.weight.dtype:
                raise ValueError(f"dtype mismatch: {name} is {t.dtype} but the weights are {self.w_k.weight.dtype}")
        check_same_device(x=x, q_input=q_input, weights=self.w_k.weight)
        check_cache(cache, (1, -2), "DSA", "(batch, seq, width)")
        _check_no_window(cache)
        start = 0 if cache is None else cache.seq_len
        positions = self.rope_table.positions(start, x.shape[1])  # rotations slice its rows
        q, k, w = self.queries(q_input, positions), self.keys(x, positions), self.head_weights(x)
        if cache is not None:
            (k,) = cache.update(index_key=k)  # (b, start + s, d^I)
        return self.score(q, w, k)


def index_scores(q: torch.Tensor, weights: torch.Tensor, k: torch.Tensor, softmax_scale: float) -> torch.Tensor:
    """I_{t,s} = sum_j w_{t,j} ReLU(q_{t,j} · k_s) * softmax_scale for every query t and key s, no mask.

    q (b, s, H^I, d^I), weights (b, s, H^I), k (b, n, d^I) -> I (b, s, n). Two matmuls: the keys against every
    query head, (b, n, s H^I) (the keys, the bulk of what is read, stream through in their stored order), then
    the weighted sum over the heads; a decode step on a CPU runs the fused kernel of :mod:`attnlab.fused`
    instead where it is built (same scores up to float32 rounding). :meth:`LightningIndexer.score` masks the
    future tokens after it;
    DeepSeek-V4's indexer (:mod:`attnlab.v4`) scores its compressed entries with it."""
    check_ndim("q", q, 4, "(batch, seq, index_n_heads, index_head_dim)")
    check_ndim("weights", weights, 3, "(batch, seq, index_n_heads)")
    check_ndim("k", k, 3, "(batch, keys, index_head_dim)")
    check_floating("q", q)
    b, s, h, d = q.shape
    if tuple(weights.shape) != (b, s, h) or k.shape[0] != b or k.shape[2] != d:
        raise ValueError(f"q {tuple(q.shape)}, weights {tuple(weights.shape)} and k {tuple(k.shape)} must be "
                         "(b, s, H^I, d^I), (b, s, H^I) and (b, n, d^I)")
    if weights.dtype != q.dtype or k.dtype != q.dtype:
        raise ValueError(f"dtype mismatch: q is {q.dtype}, weights {weights.dtype}, k {k.dtype}")
    check_real("softmax_scale", softmax_scale, 0.0, strict=True)
    return _index_scores(q, weights, k, softmax_scale)


def _index_scores(q: torch.Tensor, weights: torch.Tensor, k: torch.Tensor, softmax_scale: float) -> torch.Tensor:
    """:func:`index_scores` on checked inputs: a decode step on a CPU in float32 goes through the fused kernel
    of :mod:`attnlab.fused` where it is built (each key read once, no (n, H^I) logits), the rest through
    :func:`_index_scores_matmul`."""
    if _fusable(q, weights, k):
        return _index_scores_fused(q, weights * softmax_scale, k)
    return _index_scores_matmul(q, weights, k, softmax_scale)


def _index_scores_matmul(q: torch.Tensor, weights: torch.Tensor, k: torch.Tensor, softmax_scale: float) -> torch.Tensor:
    """:func:`index_scores` as two matmuls, on checked inputs (any device, dtype, query count; differentiable)."""
    b, s, h, d = q.shape
    n = k.shape[1]
    logits = k @ q.reshape(b, s * h, d).mT  # k^I_s · q^I_{t,j}: the shared keys against every head, one matmul
    weights = weights * softmax_scale  # the scale on the H^I weights rather than on the n scores
    relu = logits.relu_().view(b, n, s, h).transpose(1, 2)  # (b, s, n, H^I), a view
    return (relu @ weights[..., None]).view(b, s, n)  # sum_j w_{t,j} ReLU(...): a batched matmul


def _check_no_window(cache: LayerCache | None) -> None:
    """DSA selects among all earlier tokens: a sliding-window cache, which drops some, is refused."""
    if cache is not None and cache.window is not None:
        raise ValueError(f"cache has window={cache.window}: DSA's indexer selects among all earlier tokens, so "
                         "its cache keeps every token (make it without a window)")


# ----------------------------------------------------------------------------------------------------
# top-k selection


def topk_indices(scores: torch.Tensor, top_k: int, visible: torch.Tensor | None = None) -> torch.Tensor:
    """S_t = the min(top_k, t + 1) positions s <= t with the largest I_{t,s}, best first.

    scores (b, s, t): index scores of the last s of t positions, -inf where s > t (as
    :meth:`LightningIndexer.score` returns them) -> indices (b, s, min(top_k, t)) int64, padded with -1
    where fewer than top_k tokens exist (query position p has p + 1). Ties go to the earlier position
    (a stable sort), so the choice does not depend on how many queries are scored together.

    ``visible`` (s,) integer: how many keys each query may see, the first visible[i] of the t (their scores
    -inf beyond), for keys that are not the queries' own tokens: DeepSeek-V4's compressed entries, of which
    query t sees (t + 1) // m (:mod:`attnlab.v4`). None: the token-causal count p + 1 above."""
    check_ndim("scores", scores, 3, "(batch, seq, keys)")
    check_floating("scores", scores)
    check_positive_int("top_k", top_k)
    _, s, t = scores.shape
    if visible is None:
        if s > t:
            raise ValueError(f"scores has seq={s} queries but only {t} keys: queries are the last seq of the keys")
        fewest = t - s + 1  # the first query's, known without reading the tensor
    else:
        check_integer_tensor("visible", visible)
        check_ndim("visible", visible, 1, "(seq,)")
        if visible.shape[0] != s or bool(((visible < 0) | (visible > t)).any()):
            raise ValueError(f"visible must hold seq={s} counts between 0 and keys={t}, got {visible.tolist()}")
        visible = visible.to(scores.device)
        fewest = int(visible.min()) if s else 0
    return _topk(scores, top_k, visible, fewest)


def _topk(scores: torch.Tensor, top_k: int, visible: torch.Tensor | None, fewest: int) -> torch.Tensor:
    """:func:`topk_indices` on checked inputs: ``visible`` None means token-causal (query p sees p + 1 keys);
    ``fewest`` is the smallest count any query sees."""
    _, s, t = scores.shape
    if visible is None and fewest < min(top_k, t):  # needed only when some query sees fewer than k keys
        visible = torch.arange(t - s, t, device=scores.device) + 1  # tokens query p may see: p + 1
    if t == 0:
        return torch.empty(*scores.shape[:2], 0, dtype=torch.long, device=scores.device)
    if top_k < t:  # a real selection: torch.topk, with ties resolved as the stable sort below resolves them
        order = _stable_topk(scores, top_k)
        if order is not None:
            return order if fewest >= top_k else _pad_invisible(order, visible)
    k = min(top_k, t)
    if fewest >= k:
        return torch.sort(scores, dim=-1, descending=True, stable=True).indices[..., :k]  # (b, s, k)
    order = torch.sort(scores, dim=-1, descending=True, stable=True).indices[..., :k]  # (b, s, k)
    valid = torch.arange(k, device=scores.device) < visible[:, None]  # (s, k)
    return order.masked_fill(~valid, -1)


def _stable_topk(scores: torch.Tensor, k: int) -> torch.Tensor | None:
    """``torch.sort(scores, dim=-1, descending=True, stable=True).indices[..., :k]`` without sorting all t
    scores; None when a row holds NaN (the sort's place for NaN is left to the sort). scores (b, s, t), k < t.

    torch.topk finds the k-th largest value v of each row (its values are determined; only which of several
    equal scores it returns is not). The stable sort's first k are every score above v, then the first
    positions scoring exactly v, up to k in all; sorted by score, ties by position, as the sort orders them.
    When no row has more than k scores >= v, topk's k positions are exactly those; when moreover the k values
    strictly decrease, topk's own order is the sort's, and nothing is sorted again. Both tests read the k + 1
    largest values (k < t): they strictly decrease exactly when the k found do and the (k+1)-th lies below v,
    that is when only k scores reach v; the row itself is not scanned again."""
    b, s, _ = scores.shape
    values, found = torch.topk(scores, k + 1, dim=-1)  # sorted, best first: the k wanted and the next
    # the common case: the k + 1 values strictly decrease, so no tie is to be broken and topk's order is the
    # stable sort's (NaN, which compares false, never passes this test)
    if bool((values[..., :-1] > values[..., 1:]).all()):
        return found[..., :k]
    values, found = values[..., :k], found[..., :k]
    kth = values[..., -1:]  # v, (b, s, 1)
    if bool(torch.isnan(values).any()):  # topk ranks NaN above everything: a row holds NaN
        return None
    if bool(((scores >= kth).sum(dim=-1) != k).any()):  # a row tied at v beyond the k found: first positions win
        above, tied = scores > kth, scores == kth
        keep = above | (tied & (tied.cumsum(dim=-1) <= k - above.sum(dim=-1, keepdim=True)))  # k per row
        found = keep.nonzero()[:, -1].view(b, s, k)
    positions = found.sort(dim=-1).values  # ascending, so the stable sort below puts ties in position order
    best = torch.sort(scores.gather(-1, positions), dim=-1, descending=True, stable=True).indices
    return positions.gather(-1, best)


def _pad_invisible(order: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
    """order (b, s, k) with -1 in the slots beyond the visible[i] keys query i may see (visible (s,))."""
    return order.masked_fill(torch.arange(order.shape[-1], device=order.device) >= visible[:, None], -1)


def selection_mask(indices: torch.Tensor, n_keys: int) -> torch.Tensor:
    """Boolean (b, s, n_keys), True at the selected positions: indices (b, s, k) with -1 as padding."""
    check_ndim("indices", indices, 3, "(batch, seq, top_k)")
    check_positive_int("n_keys", n_keys)
    check_indices("indices", indices, n_keys, "n_keys", padding=True)
    mask = torch.zeros(*indices.shape[:2], n_keys + 1, dtype=torch.bool, device=indices.device)
    mask.scatter_(-1, torch.where(indices < 0, n_keys, indices), True)  # padding lands in an extra column
    return mask[..., :n_keys]


# ----------------------------------------------------------------------------------------------------
# sparse MLA


@dataclass(frozen=True)
class IndexSelection:
    """What the indexer decided for a forward call: scores I (b, s, t) (-inf for future tokens) and the
    selected positions (b, s, min(top_k, t)) padded with -1 (None during the dense warm-up)."""

    scores: torch.Tensor
    indices: torch.Tensor | None


def gather_tokens(cached: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """out[b, s, i] = cached[b, indices[b, s, i]]: cached (b, t, width), indices (b, s, k) (-1 reads row 0,
    to be masked by the caller) -> (b, s, k, width). A real copy of the k selected rows per query."""
    check_ndim("cached", cached, 3, "(batch, tokens, width)")
    check_ndim("indices", indices, 3, "(batch, seq, top_k)")
    if indices.shape[0] != cached.shape[0]:
        raise ValueError(f"indices has batch={indices.shape[0]}, cached has batch={cached.shape[0]}")
    check_same_device(cached=cached, indices=indices)
    check_indices("indices", indices, cached.shape[1], "cached.shape[1]", padding=True)
    return _gather(cached, indices)


def _gather(cached: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """:func:`gather_tokens` on checked inputs."""
    if cached.shape[0] == 1:  # one sequence (a decode step): a plain row gather, faster than the indexing below
        rows = cached[0].index_select(0, indices.reshape(-1).clamp_min(0))  # (s k, width)
        return rows.view(1, *indices.shape[1:], cached.shape[-1])
    batch = torch.arange(cached.shape[0], device=cached.device)[:, None, None]  # (b, 1, 1)
    return cached[batch, indices.clamp_min(0)]


def sparse_attend_absorbed(mla: MultiHeadLatentAttention, q_nope: torch.Tensor, q_rope: torch.Tensor,
                           c_kv: torch.Tensor, k_rope: torch.Tensor,
                           indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """MLA's absorbed attention over the gathered tokens S_t only, shared by all heads:

        score_{t,i,s} = ((W^UK_i^T q^C_{t,i}) · c^KV_s + q^R_{t,i} · k^R_s) * scale,   s in S_t,
        o_{t,i} = W^UV_i sum_{s in S_t} softmax_s(score_{t,i,s}) c^KV_s.

    q_nope (b, s, h, d_h), q_rope (b, s, h, d_h^R), c_kv (b, t, d_c), k_rope (b, t, d_h^R), indices
    (b, s, k) with -1 padding -> o (b, s, h, d_v), weights (b, s, h, k) over the gathered slots."""
    check_type("mla", mla, MultiHeadLatentAttention)
    m = mla.config
    check_ndim("q_nope", q_nope, 4, "(batch, seq, n_heads, qk_nope_head_dim)")
    check_ndim("q_rope", q_rope, 4, "(batch, seq, n_heads, qk_rope_head_dim)")
    check_ndim("c_kv", c_kv, 3, "(batch, tokens, kv_lora_rank)")
    check_ndim("k_rope", k_rope, 3, "(batch, tokens, qk_rope_head_dim)")
    check_ndim("indices", indices, 3, "(batch, seq, top_k)")
    b, s = q_nope.shape[:2]
    for name, t, want in (("q_nope", q_nope, (b, s, m.n_heads, m.qk_nope_head_dim)),
                          ("q_rope", q_rope, (b, s, m.n_heads, m.qk_rope_head_dim)),
                          ("c_kv", c_kv, (b, c_kv.shape[1], m.kv_lora_rank)),
                          ("k_rope", k_rope, (b, c_kv.shape[1], m.qk_rope_head_dim)),
                          ("indices", indices, (b, s, indices.shape[2]))):
        if tuple(t.shape) != want:
            raise ValueError(f"{name} has shape {tuple(t.shape)}, expected {want}")
    for name, t in (("q_nope", q_nope), ("q_rope", q_rope), ("c_kv", c_kv), ("k_rope", k_rope)):
        if t.dtype != mla.w_o.weight.dtype:
            raise ValueError(f"dtype mismatch: {name} is {t.dtype} but the weights are {mla.w_o.weight.dtype}")
        check_same_device(**{name: t, "weights": mla.w_o.weight})
    check_indices("indices", indices, c_kv.shape[1], "c_kv.shape[1]", padding=True)
    return _sparse_attend(mla, q_nope, q_rope, c_kv, k_rope, indices, padded=bool((indices < 0).any()))


def _sparse_attend(mla: MultiHeadLatentAttention, q_nope: torch.Tensor, q_rope: torch.Tensor, c_kv: torch.Tensor,
                   k_rope: torch.Tensor, indices: torch.Tensor, padded: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`sparse_attend_absorbed` on checked inputs; ``padded``: some indices are -1 (masked out).

    Each query has its own k tokens, so the b s queries are the batch of the matmuls: the h heads of a query
    are the rows of its (h, d_c + d_h^R) absorbed query (:meth:`MultiHeadLatentAttention.absorbed_query`),
    scored against its gathered latents by one matmul and one fused multiply-add (``baddbmm``)."""
    b, s, h = q_nope.shape[:3]
    k = indices.shape[-1]
    if b == 1:  # one sequence (a decode step): plain row gathers with one flat index, -1 read as row 0
        flat = indices.reshape(-1).clamp_min(0) if padded else indices.reshape(-1)
        c_sel = c_kv[0].index_select(0, flat).view(s, k, -1)  # (s, k, d_c): each query's own k latents
        r_sel = k_rope[0].index_select(0, flat).view(s, k, -1)  # (s, k, d_h^R)
    else:
        c_sel = _gather(c_kv, indices).view(b * s, k, -1)  # (b s, k, d_c)
        r_sel = _gather(k_rope, indices).view(b * s, k, -1)  # (b s, k, d_h^R)
    q_c, q_r = mla.absorbed_query(q_nope, q_rope)  # (b, s h, d_c), (b, s h, d_h^R), scaled
    q_c, q_r = q_c.reshape(b * s, h, -1), q_r.reshape(b * s, h, -1)  # one query's heads per batch row
    scores = torch.baddbmm(q_c @ c_sel.mT, q_r, r_sel.mT)  # (W^UK^T q^C) · c^KV_s + q^R · k^R_s: (b s, h, k)
    if padded:  # a query that sees fewer than k tokens: its -1 slots get no weight (it always sees itself)
        scores.masked_fill_((indices < 0).view(b * s, 1, k), float("-inf"))
    weights = torch.softmax(scores, dim=-1)  # (b s, h, k)
    o_latent = weights @ c_sel  # sum_s a_s c^KV_s: (b s, h, d_c)
    return mla.absorbed_output(o_latent.view(b, s, h, -1)), weights.view(b, s, h, k)


def scatter_weights(weights: torch.Tensor, indices: torch.Tensor, n_keys: int) -> torch.Tensor:
    """Sparse weights (b, s, h, k) at positions indices (b, s, k) -> dense (b, s, h, n_keys), zero elsewhere."""
    check_ndim("weights", weights, 4, "(batch, seq, heads, top_k)")
    check_floating("weights", weights)
    check_ndim("indices", indices, 3, "(batch, seq, top_k)")
    if indices.shape != weights.shape[:2] + weights.shape[3:]:
        raise ValueError(f"indices has shape {tuple(indices.shape)}, expected (batch, seq, top_k) = "
                         f"{tuple(weights.shape[:2] + weights.shape[3:])} from weights")
    check_same_device(weights=weights, indices=indices)
    check_positive_int("n_keys", n_keys)
    check_indices("indices", indices, n_keys, "n_keys", padding=True)
    b, s, h, k = weights.shape
    dense = weights.new_zeros(b, s, h, n_keys)
    index = indices.clamp_min(0)[:, :, None, :].expand(b, s, h, k)
    return dense.scatter_add(-1, index, weights)  # padded slots carry weight 0, so adding them is harmless


class DeepSeekSparseAttention(AttentionLayer):
    """DSA: an MLA layer (:attr:`mla`) that attends, for each query, only to the top-k tokens chosen by a
    :class:`LightningIndexer` (:attr:`indexer`). x (batch, seq, d_model) -> (batch, seq, d_model), causal.

    The same interface as every attention layer (:class:`~attnlab.attention.AttentionLayer`), so
    :class:`~attnlab.model.TinyLM` can use it: ``forward(x, cache=None, return_weights=False)`` returns an
    :class:`~attnlab.attention.AttentionOutput` whose ``selection`` is the :class:`IndexSelection`. The cache
    is one :class:`~attnlab.kv_cache.LayerCache` (seq_dim 1, no window) holding ``c_kv`` (b, t, d_c),
    ``k_rope`` (b, t, d_h^R) and ``index_key`` (b, t, d^I).

    Implementations (:data:`DSA_IMPLEMENTATIONS`), chosen with :meth:`use`: "gather" (default) and "mask"
    attend to the selected tokens only (see :meth:`forward`); "dense" runs dense MLA while the indexer still
    scores (stage 1 of training). :meth:`use` also sets :attr:`top_k`, the tokens selected per query
    (the config's index_topk at first): ``with layer.using(top_k=8): ...``.

    Training flags (set them with :func:`set_training_stage`): ``detach_indexer_input`` feeds the indexer
    detached inputs (stage 2), ``keep_for_kl`` keeps the last call's weights and selection in ``kl_inputs``
    for :func:`indexer_loss`.
    """

    IMPLEMENTATIONS = DSA_IMPLEMENTATIONS

    def __init__(self, mla_config: MLAConfig, indexer_config: IndexerConfig) -> None:
        super().__init__()
        check_type("mla_config", mla_config, MLAConfig, "an MLAConfig")
        check_type("indexer_config", indexer_config, IndexerConfig)
        m, c = mla_config, indexer_config
        if c.d_model != m.d_model:
            raise ValueError(f"indexer d_model={c.d_model} must equal the MLA layer's d_model={m.d_model}")
        if c.q_lora_rank != m.q_lora_rank:
            raise ValueError(f"indexer q_lora_rank={c.q_lora_rank} must equal the MLA layer's q_lora_rank="
                             f"{m.q_lora_rank}: the index query is projected from MLA's query latent")
        if c.rope_head_dim != m.qk_rope_head_dim:
            raise ValueError(f"indexer rope_head_dim={c.rope_head_dim} must equal qk_rope_head_dim="
                             f"{m.qk_rope_head_dim}: DeepSeek's indexer rotates with the main attention's "
                             "frequency table")
        self.config, self.indexer_config = m, c
        self.mla = MultiHeadLatentAttention(m)
        self.indexer = LightningIndexer(c, theta=self.mla.theta, rope_amplitude=m.rope_amplitude)
        self.indexer.rope_table = self.mla.rope_table  # same positions, same theta: cos and sin computed once
        self.top_k = c.index_topk
        self.detach_indexer_input = False
        self.keep_for_kl = False
        self.kl_inputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None] | None = None

    def use(self, implementation: str | None = None, top_k: int | None = None) -> DeepSeekSparseAttention:
        """Compute with ``implementation`` ("gather", "mask" or "dense"; None keeps the current one) and
        select ``top_k`` tokens per query (None keeps the current number); returns the layer."""
        if implementation is not None and (not isinstance(implementation, str)
                                           or implementation not in self.IMPLEMENTATIONS):
            raise ValueError(f"implementation={implementation!r} must be one of {self.IMPLEMENTATIONS}")
        if top_k is not None:
            self.top_k = check_positive_int("top_k", top_k)
        if implementation is not None:
            self.implementation = implementation
        return self

    def settings(self) -> dict[str, object]:
        """The implementation and top_k, as keyword arguments that :meth:`use` takes back."""
        return {"implementation": self.implementation, "top_k": self.top_k}

    def query_input(self, x: torch.Tensor) -> torch.Tensor:
        """What the index query is projected from: MLA's query latent c^Q = RMSNorm(W^DQ h) (b, s, d'_c)
        (DeepSeek's ``qr``), or h itself when the layer has no query latent. (MLA's :meth:`queries`
        computes W^DQ h again; a fused kernel would share it.)"""
        check_hidden_states(x, self.config.d_model, self.mla.w_o.weight, nonempty=False)
        if self.config.q_lora_rank is None:
            return x
        return self.mla.q_norm(self.mla.w_dq(x))

    def forward(self, x: torch.Tensor, cache: LayerCache | None = None,
                return_weights: bool = False) -> AttentionOutput:
        """u_t = MLA(h_t, {c^KV_s, k^R_s : s in Top-k_{s <= t} I_{t,s}}), causal; x (b, s, d_model) -> output
        (b, s, d_model), with k = :attr:`top_k`.

        Implementation "gather" (default) copies each query's selected latents out of the cache,
        (b, s, top_k, d_c), and runs absorbed (MQA-mode) attention on them; "mask" runs MLA's naive
        attention over all tokens with the unselected ones masked, the reference it must equal; "dense"
        attends to every token (the indexer still scores, nothing is selected). Returns the output, the
        weights (b, n_heads, s, t) (zero off the selected set) if return_weights, and always the
        :class:`IndexSelection` as ``selection``."""
        m = self.config
        check_hidden_states(x, m.d_model, self.mla.w_o.weight)
        check_cache(cache, (1, -2), "DSA", "(batch, seq, width)")
        _check_no_window(cache)
        check_bool("return_weights", return_weights)
        start = 0 if cache is None else cache.seq_len
        b, s, _ = x.shape
        positions = self.mla.rope_table.positions(start, s)  # the four rotations slice its rows
        q_nope, q_rope = self.mla.queries(x, positions)  # (b, s, h, d_h), (b, s, h, d_h^R)
        c_kv, k_rope = self.mla.latents(x, positions)  # (b, s, d_c), (b, s, d_h^R)
        x_index, q_input = x, self.query_input(x)
        if self.detach_indexer_input:  # stage 2: the indexer's KL loss must not reach the rest of the model
            x_index, q_input = x_index.detach(), q_input.detach()
        index_q = self.indexer.queries(q_input, positions)  # (b, s, H^I, d^I)
        index_k = self.indexer.keys(x_index, positions)  # (b, s, d^I)
        index_w = self.indexer.head_weights(x_index)  # (b, s, H^I)
        if cache is not None:
            c_kv, k_rope, index_k = cache.update(c_kv=c_kv, k_rope=k_rope, index_key=index_k)
        t = c_kv.shape[1]
        scores = self.indexer._score(index_q, index_w, index_k)  # I (b, s, t), shapes fixed by the layer
        need_weights = return_weights or self.keep_for_kl
        if self.implementation == "dense":  # stage 1: dense MLA, the indexer only watches
            indices = None
            mask = None if s == 1 else causal_mask(s, t, device=x.device)  # one query sees every key: no mask
            o, weights = self.mla.attend_absorbed(q_nope, q_rope, c_kv, k_rope, mask)
        else:
            fewest = t - s + 1  # keys the first query sees; a query sees fewer than k only when this is short
            indices = _topk(scores, self.top_k, None, fewest)  # (b, s, min(top_k, t)), -1 padded
            if self.implementation == "gather":
                padded = fewest < indices.shape[-1]
                o, sparse_weights = _sparse_attend(self.mla, q_nope, q_rope, c_kv, k_rope, indices, padded)
                weights = scatter_weights(sparse_weights, indices, t) if need_weights else None
            else:
                o, weights = self._attend_masked(q_nope, q_rope, c_kv, k_rope, indices)
        y = self.mla.w_o(o.reshape(b, s, m.n_heads * m.v_head_dim))
        weights = None if weights is None else weights.transpose(1, 2)  # (b, h, s, t)
        if self.keep_for_kl:
            self.kl_inputs = (weights, scores, indices)
        return AttentionOutput(y, weights if return_weights else None, IndexSelection(scores, indices))

    def _attend_masked(self, q_nope, q_rope, c_kv, k_rope, indices):
        """Reference path: MLA's naive attention over all t tokens with mask = causal AND selected, one
        batch row at a time (MLA's mask is shared by the batch). -> o (b, s, h, d_v), weights (b, s, h, t)."""
        s, t = q_nope.shape[1], c_kv.shape[1]
        allowed = causal_mask(s, t, device=c_kv.device) & selection_mask(indices, t)  # (b, s, t)
        rows = [self.mla.attend_naive(q_nope[i : i + 1], q_rope[i : i + 1], c_kv[i : i + 1], k_rope[i : i + 1],
                                      allowed[i]) for i in range(q_nope.shape[0])]
        return torch.cat([o for o, _ in rows]), torch.cat([w for _, w in rows])


# ----------------------------------------------------------------------------------------------------
# training the indexer


def indexer_kl_loss(attn_weights: torch.Tensor, index_scores: torch.Tensor, selected: torch.Tensor | None = None,
                    reduction: str = "sum") -> torch.Tensor:
    """L^I = sum_t KL(p_t || Softmax(I_t)), p_t = sum_i a_{t,i,:} / ||sum_i a_{t,i,:}||_1 (the main attention
    summed over heads, L1-normalised; detached, so this loss trains only the indexer).

    Stage 1 (``selected`` None): over every visible token (finite I_{t,s}). Stage 2 (``selected`` the
    indices (b, s, k) of the sparse step, -1 padded): over S_t only, KL(p_{t,S_t} || Softmax(I_{t,S_t})),
    with p renormalised over S_t. attn_weights (b, n_heads, s, t), index_scores (b, s, t) -> a scalar:
    the sum over batch and queries ("sum") or its mean ("mean")."""
    check_ndim("attn_weights", attn_weights, 4, "(batch, n_heads, seq, keys)")
    check_ndim("index_scores", index_scores, 3, "(batch, seq, keys)")
    check_floating("attn_weights", attn_weights)
    check_floating("index_scores", index_scores)
    if attn_weights.shape[:1] + attn_weights.shape[2:] != index_scores.shape:
        raise ValueError(f"attn_weights {tuple(attn_weights.shape)} and index_scores {tuple(index_scores.shape)} "
                         "must agree on (batch, seq, keys)")
    _check_reduction(reduction)
    check_same_device(attn_weights=attn_weights, index_scores=index_scores)
    allowed = torch.isfinite(index_scores)
    if selected is not None:
        check_ndim("selected", selected, 3, "(batch, seq, top_k)")
        check_indices("selected", selected, index_scores.shape[-1], "keys", padding=True)
        if selected.shape[:2] != index_scores.shape[:2]:
            raise ValueError(f"selected has shape {tuple(selected.shape)}, expected (batch, seq) = "
                             f"{tuple(index_scores.shape[:2])} in front")
        allowed = allowed & selection_mask(selected, index_scores.shape[-1])
    if not allowed.any(dim=-1).all():
        raise ValueError("some query has no allowed key (all index scores -inf or none selected)")
    p = attn_weights.detach().to(index_scores.dtype).sum(dim=1) * allowed  # (b, s, t)
    total = p.sum(dim=-1, keepdim=True)
    p = p / torch.where(total > 0, total, torch.ones_like(total))
    log_q = torch.log_softmax(index_scores.masked_fill(~allowed, float("-inf")), dim=-1)
    kl = (torch.xlogy(p, p) - p * log_q.masked_fill(~allowed, 0.0)).sum(dim=-1)  # (b, s)
    return kl.sum() if reduction == "sum" else kl.mean()


def _check_reduction(reduction: object) -> None:
    if not isinstance(reduction, str) or reduction not in ("sum", "mean"):
        raise ValueError(f"reduction={reduction!r} must be 'sum' or 'mean'")


def _dsa_layers(model: nn.Module) -> list[DeepSeekSparseAttention]:
    check_type("model", model, nn.Module, "an nn.Module")
    layers = [m for m in model.modules() if isinstance(m, DeepSeekSparseAttention)]
    if not layers:
        raise ValueError(f"model ({type(model).__name__}) has no DeepSeekSparseAttention layer")
    return layers


def indexer_parameters(model: nn.Module) -> Iterator[nn.Parameter]:
    """The parameters of every :class:`LightningIndexer` inside ``model``."""
    check_type("model", model, nn.Module, "an nn.Module")  # here, not in the generator: checked on the call
    return (p for module in model.modules() if isinstance(module, LightningIndexer) for p in module.parameters())


def set_training_stage(model: nn.Module, stage: str) -> None:
    """Set every DSA layer of ``model`` (a layer or a whole model) for one of the tech report's stages:

    - "warmup" (stage 1, dense warm-up): dense attention (implementation "dense"); every parameter outside
      the indexers frozen (requires_grad False); the layers keep what :func:`indexer_loss` needs;
    - "sparse" (stage 2): top-k attention ("gather"); every parameter trainable; the indexers read detached
      inputs, so their KL loss reaches only them, and the LM loss cannot reach them (top-k is not
      differentiable);
    - "inference": top-k attention ("gather"), nothing kept, every parameter trainable again.
    """
    if not isinstance(stage, str) or stage not in TRAINING_STAGES:
        raise ValueError(f"stage={stage!r} must be one of {TRAINING_STAGES}")
    for layer in _dsa_layers(model):
        layer.use("dense" if stage == "warmup" else "gather")
        layer.detach_indexer_input = stage in ("warmup", "sparse")
        layer.keep_for_kl = stage != "inference"
        layer.kl_inputs = None
    indexer_ids = {id(p) for p in indexer_parameters(model)}
    for p in model.parameters():
        p.requires_grad_(stage != "warmup" or id(p) in indexer_ids)


def indexer_loss(model: nn.Module, reduction: str = "sum") -> torch.Tensor:
    """Sum over ``model``'s DSA layers of :func:`indexer_kl_loss` for their last forward call: dense
    (stage 1) or over the selected set (stage 2). Needs :func:`set_training_stage` first."""
    _check_reduction(reduction)
    losses = []
    for layer in _dsa_layers(model):
        if layer.kl_inputs is None:
            raise ValueError("no kept forward call: call set_training_stage(model, 'warmup' or 'sparse'), then "
                             "run the model forward before indexer_loss")
        weights, scores, indices = layer.kl_inputs
        losses.append(indexer_kl_loss(weights, scores, indices, reduction))
    return torch.stack(losses).sum()


# ----------------------------------------------------------------------------------------------------
# what it costs


def layer_cost(spec: AttentionShape | ModelSpec, context_len: int, top_k: int | None = None,
               **options) -> dict[str, int]:
    """FLOPs and bytes of one layer of ``spec`` with dense MLA against DSA, for one decoded token at
    ``context_len`` tokens of context and for a prefill of that many: :func:`attnlab.costs.dsa_layer_cost`,
    where the counts are derived. ``spec``: an :class:`~attnlab.costs.AttentionShape` or a model with an
    indexer (``attnlab.sizing.MODELS["deepseek-v3.2"]``); top_k None: the model's k; ``options``:
    q_lora_rank, kv_bytes_per_token, index_bytes_per_token, prefill_dense_mode, prefill_mode (short prefills
    run MLA's MHA mode with the top-k as a mask, as DeepSeek's service does: "switch", the default), per_layer."""
    return costs.dsa_layer_cost(spec, context_len, top_k, **options)


def crossover_context(spec: AttentionShape | ModelSpec, top_k: int | None = None, metric: str = "decode_flops",
                      max_context: int = 2**40, **options) -> int | None:
    """The shortest context at which DSA costs less than dense MLA in ``metric`` ("decode_flops",
    "decode_bytes" or "prefill_flops") for ``spec``, or None up to ``max_context``:
    :func:`attnlab.costs.dsa_crossover_context` (2284 tokens of decode FLOPs for DeepSeek-V3.2)."""
    return costs.dsa_crossover_context(spec, top_k, metric, max_context, **options)


def prefill_switch_context(spec: AttentionShape | ModelSpec, top_k: int | None = None, max_context: int = 2**40,
                           **options) -> int | None:
    """The shortest prompt at which a DSA layer of ``spec`` prefills more cheaply on its sparse path than in
    the masked MHA mode DeepSeek runs short prompts in (DeepSeek-V3.2-Exp report, §3), or None up to
    ``max_context``: :func:`attnlab.costs.dsa_prefill_switch_context` (12,813 tokens for DeepSeek-V3.2)."""
    return costs.dsa_prefill_switch_context(spec, top_k, max_context, **options)


# ----------------------------------------------------------------------------------------------------
# Hugging Face


def indexer_from_transformers(hf_indexer: nn.Module, hadamard: bool = False, use_fp8: bool = False) -> LightningIndexer:
    """This course's :class:`LightningIndexer` with the weights of a transformers ``DeepseekV32Indexer``
    (wq_b -> w_q, wk -> w_k, k_norm -> k_norm, weights_proj -> w_weights), same dtype and device.

    Hugging Face skips the Hadamard rotation and FP8 (the rotation is orthogonal, FP8 only a precision
    choice), hence the defaults; its RoPE frequencies come from ``config.rope_parameters`` (YaRN included)."""
    cfg = getattr(hf_indexer, "config", None)
    if cfg is None or getattr(cfg, "model_type", None) != "deepseek_v32" or not hasattr(hf_indexer, "weights_proj"):
        raise ValueError("hf_indexer must be a transformers DeepseekV32Indexer (config.model_type 'deepseek_v32'), "
                         f"got {type(hf_indexer).__name__}")
    settings = _rope_settings(cfg)
    config = IndexerConfig(d_model=cfg.hidden_size, q_lora_rank=cfg.q_lora_rank, index_n_heads=cfg.index_n_heads,
                           index_head_dim=cfg.index_head_dim, rope_head_dim=cfg.qk_rope_head_dim,
                           index_topk=cfg.index_topk, rope_base=settings["rope_base"],
                           norm_eps=hf_indexer.k_norm.eps, hadamard=hadamard, use_fp8=use_fp8)
    # The frequencies and the cos/sin amplitude of the MLA layer the indexer sits in (same rotary table)
    rope = MLAConfig(d_model=1, n_heads=1, kv_lora_rank=1, qk_nope_head_dim=1, qk_rope_head_dim=cfg.qk_rope_head_dim,
                     **settings)
    theta = yarn_frequencies(rope.qk_rope_head_dim, rope.rope_base, rope.rope_factor, rope.original_max_position,
                             rope.beta_fast, rope.beta_slow)
    weight = hf_indexer.wk.weight
    module = LightningIndexer(config, theta=theta, rope_amplitude=rope.rope_amplitude)
    module = module.to(device=weight.device, dtype=weight.dtype)
    names = {"wq_b": "w_q", "wk": "w_k", "weights_proj": "w_weights"}
    with torch.no_grad():
        for hf_name, name in names.items():
            getattr(module, name).weight.copy_(getattr(hf_indexer, hf_name).weight)
        module.k_norm.weight.copy_(hf_indexer.k_norm.weight)
        module.k_norm.bias.copy_(hf_indexer.k_norm.bias)
    return module


def from_transformers(hf_attention: nn.Module, hadamard: bool = False,
                      use_fp8: bool = False) -> DeepSeekSparseAttention:
    """This course's :class:`DeepSeekSparseAttention` with the weights of a transformers
    ``DeepseekV32Attention`` (MLA with query latent, interleaved RoPE, plus its ``indexer``).

    MLA weights: q_a_proj -> w_dq, q_a_layernorm -> q_norm, q_b_proj -> w_uq, kv_a_proj_with_mqa -> w_dkv,
    kv_a_layernorm -> kv_norm, kv_b_proj -> w_ukv, o_proj -> w_o; the indexer as
    :func:`indexer_from_transformers`."""
    cfg = getattr(hf_attention, "config", None)
    if cfg is None or getattr(cfg, "model_type", None) != "deepseek_v32" or not hasattr(hf_attention, "indexer"):
        raise ValueError("hf_attention must be a transformers DeepseekV32Attention (config.model_type "
                         f"'deepseek_v32'), got {type(hf_attention).__name__}")
    if cfg.num_key_value_heads != cfg.num_attention_heads or getattr(cfg, "attention_bias", False):
        raise ValueError("num_key_value_heads must equal num_attention_heads and attention_bias must be False")
    eps = hf_attention.kv_a_layernorm.variance_epsilon
    mla_config = MLAConfig(d_model=cfg.hidden_size, n_heads=cfg.num_attention_heads, q_lora_rank=cfg.q_lora_rank,
                           kv_lora_rank=cfg.kv_lora_rank, qk_nope_head_dim=cfg.qk_nope_head_dim,
                           qk_rope_head_dim=cfg.qk_rope_head_dim, v_head_dim=cfg.v_head_dim,
                           rope_interleaved=True, norm_eps=eps, **_rope_settings(cfg))
    indexer = indexer_from_transformers(hf_attention.indexer, hadamard, use_fp8)
    weight = hf_attention.o_proj.weight
    module = DeepSeekSparseAttention(mla_config, indexer.config).to(device=weight.device, dtype=weight.dtype)
    names = {"q_a_proj": "w_dq", "q_a_layernorm": "q_norm", "q_b_proj": "w_uq", "kv_a_proj_with_mqa": "w_dkv",
             "kv_a_layernorm": "kv_norm", "kv_b_proj": "w_ukv", "o_proj": "w_o"}
    with torch.no_grad():
        for hf_name, name in names.items():
            getattr(module.mla, name).weight.copy_(getattr(hf_attention, hf_name).weight)
    module.indexer.load_state_dict(indexer.state_dict())
    return module
