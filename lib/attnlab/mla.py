"""Multi-head Latent Attention (MLA, DeepSeek-V2, arXiv 2405.04434, §2.1 and Appendix C).

MLA caches one small latent vector per token instead of per-head keys and values. For token t with
hidden state h_t (width d), n_h heads, head width d_h, latent width d_c and RoPE width d_h^R
(DeepSeek-V2 paper, Appendix C, eqs. 37-47):

    c^Q_t = W^DQ h_t                                  (37)  query latent, width d'_c (optional)
    q^C_t = W^UQ c^Q_t        split into n_h heads    (38)  q^C_{t,i}, width d_h
    q^R_t = RoPE(W^QR c^Q_t)  split into n_h heads    (39)  q^R_{t,i}, width d_h^R
    q_{t,i} = [q^C_{t,i}; q^R_{t,i}]                  (40)
    c^KV_t = W^DKV h_t                                (41)  CACHED, width d_c
    k^C_t = W^UK c^KV_t       split into n_h heads    (42)  k^C_{t,i}, width d_h
    k^R_t = RoPE(W^KR h_t)                            (43)  CACHED, width d_h^R, ONE key shared by all heads
    k_{t,i} = [k^C_{t,i}; k^R_t]                      (44)
    v^C_t = W^UV c^KV_t       split into n_h heads    (45)  v^C_{t,i}, width d_v
    o_{t,i} = sum_j softmax_j(q_{t,i} · k_{j,i} / sqrt(d_h + d_h^R)) v^C_{j,i}   (46)
    u_t = W^O [o_{t,1}; ...; o_{t,n_h}]               (47)

DeepSeek adds an RMSNorm after each compressed latent (paper §3.1.2, "additional RMS Norm layers after
the compressed latent vectors"), so the cached latent is c^KV_t = RMSNorm(W^DKV h_t); its code computes
W^DKV h_t and W^KR h_t with one matrix of d_c + d_h^R outputs and splits the result.

The cache holds d_c + d_h^R numbers per token and layer (Table 1), however many heads there are.
Two ways to compute the same attention from it:

- "naive" (Hugging Face's ``DeepseekV3Attention``): re-expand k^C_{t,i} and v^C_{t,i} for every cached
  token at every step (eqs. 42, 45), then ordinary multi-head attention with (d_h + d_h^R)-wide keys.
- "absorbed" (DeepSeek-V3 ``inference/model.py``, ``attn_impl="absorb"``): matrix products associate, so
      q^C_{s,i} · k^C_{t,i} = q^C_{s,i} · (W^UK_i c^KV_t) = (W^UK_i^T q^C_{s,i}) · c^KV_t,
  fold W^UK_i into the query once per query token and score it against the cached latents directly;
  likewise sum_t a_t (W^UV_i c^KV_t) = W^UV_i (sum_t a_t c^KV_t) applies W^UV_i after the weighted sum.
  Every head then reads the same cached vectors: MQA with (d_c + d_h^R)-wide keys and d_c-wide values.

Why the RoPE part is decoupled: RoPE multiplies key t by a rotation R_t that depends on t. With RoPE on
the latent-derived keys, q_s · (R_t W^UK c_t) = (R_s q)^T R_t W^UK c_t, and the matrix between the query
and c_t changes with t, so no fixed matrix can be folded into the query (:func:`rope_on_latent_keys`
shows the folding going wrong). MLA keeps the latent path position-free and carries position in the
separate, shared k^R_t.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
from torch import nn

from attnlab._validate import (
    check_bool,
    check_cache,
    check_even,
    check_floating,
    check_hidden_states,
    check_ndim,
    check_non_negative_int,
    check_positions,
    check_positive_int,
    check_real,
    check_tensor,
    check_type,
)
from attnlab.attention import AttentionLayer, AttentionOutput, causal_mask, softmax
from attnlab.kv_cache import LayerCache
from attnlab.rope import RopeTable, interleaved_to_halves, rope_frequencies, rotate_pairs

#: The two ways :class:`MultiHeadLatentAttention` can compute attention from its latent cache (its
#: :attr:`~attnlab.attention.AttentionLayer.IMPLEMENTATIONS`; "absorbed" is the default).
MODES: tuple[str, ...] = ("absorbed", "naive")


# ----------------------------------------------------------------------------------------------------
# configuration


@dataclass(frozen=True, kw_only=True)
class MLAConfig:
    """Shape of one MLA layer, in DeepSeek's names (paper symbols in brackets).

    d_model [d]; n_heads [n_h]; q_lora_rank [d'_c]: query latent width, None or 0 = no query latent
    (q = W^Q h_t directly, as DeepSeek-V2-Lite); kv_lora_rank [d_c]: the cached latent's width;
    qk_nope_head_dim [d_h]: per-head query/key width without position; qk_rope_head_dim [d_h^R]: width of
    the decoupled RoPE query/key (even); v_head_dim [d_v]: per-head value width (None = d_h).
    rope_base [theta]; rope_interleaved: True rotates pairs (2i, 2i+1) as DeepSeek's checkpoints do,
    False rotates halves (i, i + d/2) as Llama's code does. norm_eps: epsilon of the two RMSNorms.

    YaRN context extension (Peng et al. 2023, arXiv 2309.00071; DeepSeek-V2 §3.1.4), off when
    rope_factor == 1: rope_factor [s]; original_max_position: the pre-training context;
    beta_fast, beta_slow: the rotation counts that bound the frequency ramp; mscale: the coefficient in
    m = 0.1 * mscale * ln(s) + 1; mscale_all_dim: Hugging Face's second coefficient (None = mscale).
    The softmax scale becomes (d_h + d_h^R)^-0.5 * m(mscale_all_dim)^2, and the rotated q^R, k^R are
    multiplied by m(mscale) / m(mscale_all_dim) (1 when the two agree, as in DeepSeek-V2 and V3).
    """

    d_model: int
    n_heads: int
    kv_lora_rank: int
    qk_nope_head_dim: int
    qk_rope_head_dim: int
    v_head_dim: int | None = None
    q_lora_rank: int | None = None
    rope_base: float = 10000.0
    rope_interleaved: bool = True
    norm_eps: float = 1e-6
    rope_factor: float = 1.0
    original_max_position: int | None = None
    beta_fast: float = 32.0
    beta_slow: float = 1.0
    mscale: float = 1.0
    mscale_all_dim: float | None = None

    def __post_init__(self) -> None:
        for name in ("d_model", "n_heads", "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim"):
            check_positive_int(name, getattr(self, name))
        check_even("qk_rope_head_dim", self.qk_rope_head_dim)
        if self.v_head_dim is None:
            object.__setattr__(self, "v_head_dim", self.qk_nope_head_dim)
        check_positive_int("v_head_dim", self.v_head_dim)
        if self.q_lora_rank is not None:
            check_non_negative_int("q_lora_rank", self.q_lora_rank)
            if self.q_lora_rank == 0:  # DeepSeek's code writes "no query latent" as 0, Hugging Face as None
                object.__setattr__(self, "q_lora_rank", None)
        check_real("rope_base", self.rope_base, 1.0, strict=True)
        if not isinstance(self.rope_interleaved, bool):
            raise ValueError(f"rope_interleaved={self.rope_interleaved!r} must be True or False")
        check_real("norm_eps", self.norm_eps, 0.0, strict=True)
        check_real("rope_factor", self.rope_factor, 1.0)
        if self.rope_factor > 1.0:
            if self.original_max_position is None:
                raise ValueError(f"rope_factor={self.rope_factor} > 1 turns YaRN on: it needs "
                                 "original_max_position (the pre-training context length)")
            check_positive_int("original_max_position", self.original_max_position)
        elif self.original_max_position is not None:
            check_positive_int("original_max_position", self.original_max_position)
        check_real("beta_slow", self.beta_slow, 0.0, strict=True)
        check_real("beta_fast", self.beta_fast, 0.0, strict=True)
        if self.beta_fast <= self.beta_slow:
            raise ValueError(f"beta_fast={self.beta_fast} must be > beta_slow={self.beta_slow} "
                             "(fast-rotating pairs keep their frequency, slow ones are interpolated)")
        check_real("mscale", self.mscale, 0.0)
        if self.mscale_all_dim is not None:
            check_real("mscale_all_dim", self.mscale_all_dim, 0.0)

    @property
    def qk_head_dim(self) -> int:
        """Width of one head's query and key: d_h + d_h^R (192 in DeepSeek-V3)."""
        return self.qk_nope_head_dim + self.qk_rope_head_dim

    @property
    def yarn(self) -> bool:
        """True when YaRN is on (rope_factor > 1)."""
        return self.rope_factor > 1.0

    @property
    def softmax_scale(self) -> float:
        """(d_h + d_h^R)^-0.5 (eq. 46), times m^2 with m = 0.1 * mscale * ln(rope_factor) + 1 under YaRN
        (DeepSeek-V3 ``inference/model.py``, ``MLA.softmax_scale``; Hugging Face uses mscale_all_dim)."""
        m = yarn_mscale(self.rope_factor, self.mscale if self.mscale_all_dim is None else self.mscale_all_dim)
        return self.qk_head_dim**-0.5 * m * m

    @property
    def rope_amplitude(self) -> float:
        """Factor on the rotated q^R and k^R: m(mscale) / m(mscale_all_dim) (Hugging Face's YaRN
        ``attention_factor``); 1 without YaRN or when mscale_all_dim is None or equals mscale."""
        if self.mscale_all_dim is None:
            return 1.0
        return yarn_mscale(self.rope_factor, self.mscale) / yarn_mscale(self.rope_factor, self.mscale_all_dim)

    def cache_elements_per_token(self) -> int:
        """Numbers cached per token in this layer: d_c + d_h^R (DeepSeek-V2 Table 1), independent of n_h."""
        return self.kv_lora_rank + self.qk_rope_head_dim


# ----------------------------------------------------------------------------------------------------
# RoPE with YaRN frequencies


def yarn_mscale(factor: float, mscale: float = 1.0) -> float:
    """YaRN's attention temperature m = 0.1 * mscale * ln(factor) + 1 for factor > 1, else 1.

    DeepSeek-V2 §3.1.4 writes it sqrt(t) = 0.0707 ln s + 1 (mscale = 0.707); the softmax scale is
    multiplied by m^2 because both the query and the key side carry one factor m."""
    check_real("factor", factor, 0.0, strict=True)
    check_real("mscale", mscale, 0.0)
    return 0.1 * mscale * math.log(factor) + 1.0 if factor > 1.0 else 1.0


def yarn_frequencies(head_dim: int, base: float = 10000.0, factor: float = 1.0,
                     original_max_position: int | None = None, beta_fast: float = 32.0,
                     beta_slow: float = 1.0) -> torch.Tensor:
    """RoPE frequencies theta_i = base^(-2i/d), corrected by YaRN when factor > 1; (d/2,) float64.

    YaRN (arXiv 2309.00071, "NTK-by-parts"): pair i turns r_i = L / (2 pi / theta_i) times over the
    pre-training context L. Pairs that turn more than beta_fast times keep theta_i (extrapolate), pairs
    that turn fewer than beta_slow times are interpolated to theta_i / factor, and a linear ramp over the
    pair index joins the two:

        theta'_i = theta_i * (1 - ramp_i) + theta_i / factor * ramp_i,
        ramp_i = clamp((i - low) / (high - low), 0, 1),  low/high = floor/ceil of the index where
        r_i = beta_fast / beta_slow:  i(r) = d ln(L / (2 pi r)) / (2 ln base), clamped to [0, d - 1].

    As DeepSeek-V3 ``inference/model.py`` (``precompute_freqs_cis``) and Hugging Face's
    ``_compute_yarn_parameters``, in float64 here.
    """
    theta = rope_frequencies(head_dim, base)  # (d/2,) float64
    check_real("factor", factor, 1.0)
    if factor == 1.0:
        return theta
    check_positive_int("original_max_position", original_max_position)
    check_real("beta_slow", beta_slow, 0.0, strict=True)
    check_real("beta_fast", beta_fast, 0.0, strict=True)
    if beta_fast <= beta_slow:
        raise ValueError(f"beta_fast={beta_fast} must be > beta_slow={beta_slow}")

    def pair_index(rotations: float) -> float:  # i at which pair i turns `rotations` times over L
        return head_dim * math.log(original_max_position / (rotations * 2 * math.pi)) / (2 * math.log(base))

    low = max(math.floor(pair_index(beta_fast)), 0)
    high = min(math.ceil(pair_index(beta_slow)), head_dim - 1)
    if low == high:
        high += 0.001  # avoid dividing by zero, as both reference implementations do
    i = torch.arange(head_dim // 2, dtype=torch.float64)
    ramp = ((i - low) / (high - low)).clamp(0.0, 1.0)  # 0 = keep theta_i, 1 = theta_i / factor
    return theta * (1 - ramp) + theta / factor * ramp


def _check_rope_input(x: torch.Tensor, positions: torch.Tensor) -> None:
    """x (b, s, [heads,] d) in floating point and positions (s,) integer, one per token of x."""
    check_floating("x", x)
    if x.dim() not in (3, 4):
        raise ValueError(f"x must have 3 or 4 dims (batch, seq, [heads,] width), got shape {tuple(x.shape)}")
    check_positions(positions, x.shape[1])


# ----------------------------------------------------------------------------------------------------
# the layer


class MultiHeadLatentAttention(AttentionLayer):
    """Causal MLA (eqs. 37-47): x (batch, seq, d_model) -> an :class:`~attnlab.attention.AttentionOutput`
    with output (batch, seq, d_model).

    Two implementations (:data:`MODES`), chosen with :meth:`use` (``layer.use("naive")``): "absorbed" (the
    default, :meth:`attend_absorbed`) and "naive" (:meth:`attend_naive`); they give the same result.

    Parameters, as DeepSeek's checkpoints lay them out (``nn.Linear`` weights are (out, in)):

    - ``w_dq`` (W^DQ), ``q_norm``, ``w_uq`` when q_lora_rank is set, else ``w_q``: the query
      up-projection holds W^UQ and W^QR together, head i's rows being [W^UQ_i (d_h rows); W^QR_i (d_h^R)];
    - ``w_dkv``: W^DKV (first d_c rows) stacked on W^KR (last d_h^R rows); ``kv_norm`` on the latent;
    - ``w_ukv``: head i's rows are [W^UK_i (d_h rows); W^UV_i (d_v rows)], viewed as :attr:`w_uk`,
      :attr:`w_uv`; ``w_o``: W^O.

    With a :class:`~attnlab.kv_cache.LayerCache` (``seq_dim`` 1 or -2) the layer appends the new tokens'
    c^KV (batch, seq, d_c) and k^R (batch, seq, d_h^R) under the names ``c_kv`` and ``k_rope``, in both
    modes, and positions continue from ``cache.seq_len``; a cache with a window W limits each query to its
    last W tokens.
    """

    IMPLEMENTATIONS = MODES

    def __init__(self, config: MLAConfig) -> None:
        super().__init__()
        check_type("config", config, MLAConfig, "an MLAConfig")
        self.config = c = config
        h, d_qk = c.n_heads, c.qk_head_dim
        if c.q_lora_rank is None:
            self.w_q = nn.Linear(c.d_model, h * d_qk, bias=False)  # [W^UQ; W^QR] acting on h_t
        else:
            self.w_dq = nn.Linear(c.d_model, c.q_lora_rank, bias=False)  # W^DQ (eq. 37)
            self.q_norm = nn.RMSNorm(c.q_lora_rank, eps=c.norm_eps)
            self.w_uq = nn.Linear(c.q_lora_rank, h * d_qk, bias=False)  # [W^UQ; W^QR] (eqs. 38, 39)
        self.w_dkv = nn.Linear(c.d_model, c.kv_lora_rank + c.qk_rope_head_dim, bias=False)  # [W^DKV; W^KR]
        self.kv_norm = nn.RMSNorm(c.kv_lora_rank, eps=c.norm_eps)
        self.w_ukv = nn.Linear(c.kv_lora_rank, h * (c.qk_nope_head_dim + c.v_head_dim), bias=False)
        self.w_o = nn.Linear(h * c.v_head_dim, c.d_model, bias=False)  # W^O (eq. 47)
        # RoPE frequencies, kept in float64 outside the state dict so module.to(bfloat16) cannot round them
        self.theta = yarn_frequencies(c.qk_rope_head_dim, c.rope_base, c.rope_factor, c.original_max_position,
                                      c.beta_fast, c.beta_slow)
        self.rope_table = RopeTable()  # cos, sin of the last positions rotated (DSA's indexer shares it)

    @property
    def w_uk(self) -> torch.Tensor:
        """W^UK as one (d_h, d_c) matrix per head: (n_heads, d_h, d_c), a view of ``w_ukv``."""
        c = self.config
        return self.w_ukv.weight.view(c.n_heads, c.qk_nope_head_dim + c.v_head_dim, c.kv_lora_rank)[
            :, : c.qk_nope_head_dim]

    @property
    def w_uv(self) -> torch.Tensor:
        """W^UV as one (d_v, d_c) matrix per head: (n_heads, d_v, d_c), a view of ``w_ukv``."""
        c = self.config
        return self.w_ukv.weight.view(c.n_heads, c.qk_nope_head_dim + c.v_head_dim, c.kv_lora_rank)[
            :, c.qk_nope_head_dim :]

    def rope(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """RoPE(x) for x (b, s, d_h^R) or (b, s, heads, d_h^R) at positions (s,): rotate pair i by
        positions * theta_i (YaRN-corrected), times :attr:`MLAConfig.rope_amplitude` when it is not 1."""
        _check_rope_input(x, positions)
        # cos, sin of positions * theta (s, d_h^R / 2), shared with the other rotations at these positions
        return self.rope_table.rotate(x, positions, self.theta, self.config.rope_interleaved,
                                      self.config.rope_amplitude)

    def queries(self, x: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q^C (b, s, n_h, d_h) and the rotated q^R (b, s, n_h, d_h^R) (eqs. 37-39):
        c^Q = RMSNorm(W^DQ h), [q^C_i; q^R_i] = W^UQ/W^QR c^Q (or W^Q h without a query latent)."""
        c = self.config
        check_hidden_states(x, c.d_model, self.w_o.weight, nonempty=False)
        check_positions(positions, x.shape[1])
        b, s, _ = x.shape
        if c.q_lora_rank is None:
            q = self.w_q(x)
        else:
            q = self.w_uq(self.q_norm(self.w_dq(x)))  # c^Q_t = RMSNorm(W^DQ h_t), then up-project
        q = q.view(b, s, c.n_heads, c.qk_head_dim)
        q_nope, q_rope = q.split([c.qk_nope_head_dim, c.qk_rope_head_dim], dim=-1)
        return q_nope, self.rope(q_rope, positions)

    def latents(self, x: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """What the cache stores for each new token (eqs. 41, 43): c^KV = RMSNorm(W^DKV h) (b, s, d_c) and
        the shared rotated key k^R = RoPE(W^KR h) (b, s, d_h^R)."""
        c = self.config
        check_hidden_states(x, c.d_model, self.w_o.weight, nonempty=False)
        check_positions(positions, x.shape[1])
        c_kv, k_rope = self.w_dkv(x).split([c.kv_lora_rank, c.qk_rope_head_dim], dim=-1)
        return self.kv_norm(c_kv), self.rope(k_rope, positions)

    def attend_naive(self, q_nope: torch.Tensor, q_rope: torch.Tensor, c_kv: torch.Tensor, k_rope: torch.Tensor,
                     mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Eqs. 42-46 as written: expand every cached latent into per-head keys and values, then MHA. (k^C is
        rebound to the full key once the RoPE part is appended, so the two expanded key tensors and the values,
        hundreds of MB each at 32K tokens, are never all alive at once.)

        q_nope (b, s, h, d_h), q_rope (b, s, h, d_h^R), c_kv (b, t, d_c), k_rope (b, t, d_h^R),
        mask (s, t) -> o (b, s, h, d_v), weights (b, s, h, t)."""
        self._check_attend_inputs(q_nope, q_rope, c_kv, k_rope, mask)
        c = self.config
        k = torch.einsum("btc,hdc->bthd", c_kv, self.w_uk)  # k^C_{t,i} = W^UK_i c^KV_t  (42)
        k = torch.cat([k, k_rope[:, :, None, :].expand(-1, -1, c.n_heads, -1)], dim=-1)  # [k^C_{t,i}; k^R_t]  (44)
        v = torch.einsum("btc,hvc->bthv", c_kv, self.w_uv)  # v^C_{t,i} = W^UV_i c^KV_t  (45)
        q = torch.cat([q_nope, q_rope], dim=-1)  # (40)
        scores = torch.einsum("bshd,bthd->bsht", q, k) * c.softmax_scale  # (b, s, h, t)
        weights = softmax(scores.masked_fill(~mask[None, :, None, :], float("-inf")), dim=-1)
        return torch.einsum("bsht,bthv->bshv", weights, v), weights  # (46)

    def attend_absorbed(self, q_nope: torch.Tensor, q_rope: torch.Tensor, c_kv: torch.Tensor,
                        k_rope: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The same attention with W^UK folded into the query and W^UV applied after the weighted sum:

            score_{s,t,i} = [W^UK_i^T q^C_{s,i}; q^R_{s,i}] · [c^KV_t; k^R_t] * scale
                          = ((W^UK_i^T q^C_{s,i}) · c^KV_t + q^R_{s,i} · k^R_t) * scale,
            o_{s,i} = W^UV_i sum_t a_{s,t,i} c^KV_t.

        Shapes as :meth:`attend_naive`; no per-head key or value is ever built. Every head reads the same
        keys (MQA), so the s h queries are the rows of one matrix, scored against the cached c^KV and k^R
        (stored apart) by one matmul and one fused multiply-add onto it (``baddbmm``). ``mask`` None: every
        query sees every key (a decode step's single query at the end of the keys), and no mask is applied."""
        self._check_attend_inputs(q_nope, q_rope, c_kv, k_rope, mask, allow_no_mask=True)
        b, s, h, t = *q_nope.shape[:3], c_kv.shape[1]
        q_c, q_r = self.absorbed_query(q_nope, q_rope)  # (b, s h, d_c), (b, s h, d_h^R)
        scores = torch.baddbmm(q_c @ c_kv.mT, q_r, k_rope.mT)  # q~ · c^KV_t + q^R · k^R_t: (b, s h, t)
        if mask is None:
            weights = torch.softmax(scores, dim=-1)
        else:
            weights = softmax(scores.view(b, s, h, t).masked_fill_(~mask[None, :, None, :], float("-inf")), dim=-1)
        o_latent = weights.view(b, s * h, t) @ c_kv  # sum_t a_t c^KV_t, in latent space
        return self.absorbed_output(o_latent.view(b, s, h, -1)), weights.view(b, s, h, t)

    def absorbed_query(self, q_nope: torch.Tensor, q_rope: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The absorbed query, scaled: [W^UK_i^T q^C_{s,i}; q^R_{s,i}] * scale as one row per query and head,
        split into the part facing c^KV and the part facing k^R. q_nope (b, s, h, d_h), q_rope (b, s, h, d_h^R)
        -> (b, s h, d_c), (b, s h, d_h^R). Unchecked: :meth:`attend_absorbed` and DSA's sparse attention
        check their inputs before calling it."""
        c = self.config
        b, s, h, d = q_nope.shape
        # q~_{s,i} = W^UK_i^T q^C_{s,i}: per head i, the (b s, d_h) queries times W^UK_i (d_h, d_c), one bmm
        q_latent = (q_nope.reshape(b * s, h, d).transpose(0, 1) @ self.w_uk).transpose(0, 1)  # (b s, h, d_c)
        q_c = q_latent.reshape(b, s * h, -1) * c.softmax_scale  # the part facing c^KV, a row per query and head
        q_r = q_rope.reshape(b, s * h, -1) * c.softmax_scale  # the part facing k^R
        return q_c, q_r

    def absorbed_output(self, o_latent: torch.Tensor) -> torch.Tensor:
        """o_{s,i} = W^UV_i o~_{s,i}: the latent output (b, s, h, d_c) -> (b, s, h, d_v), W^UV_i applied once
        (per head i, the (b s, d_c) latent outputs times W^UV_i^T, one bmm)."""
        b, s, h, c = o_latent.shape
        o = o_latent.reshape(b * s, h, c).transpose(0, 1) @ self.w_uv.mT  # (h, b s, d_v)
        return o.transpose(0, 1).reshape(b, s, h, -1)

    def _check_attend_inputs(self, q_nope, q_rope, c_kv, k_rope, mask, allow_no_mask: bool = False) -> None:
        """The shapes :meth:`attend_naive` and :meth:`attend_absorbed` document, in the layer's dtype; mask
        may be None only with ``allow_no_mask``."""
        c = self.config
        check_ndim("q_nope", q_nope, 4, "(batch, seq, n_heads, qk_nope_head_dim)")
        check_ndim("c_kv", c_kv, 3, "(batch, tokens, kv_lora_rank)")
        (b, s), t = q_nope.shape[:2], c_kv.shape[1]
        for name, tensor, want in (("q_nope", q_nope, (b, s, c.n_heads, c.qk_nope_head_dim)),
                                   ("q_rope", q_rope, (b, s, c.n_heads, c.qk_rope_head_dim)),
                                   ("c_kv", c_kv, (b, t, c.kv_lora_rank)),
                                   ("k_rope", k_rope, (b, t, c.qk_rope_head_dim))):
            check_tensor(name, tensor)
            if tuple(tensor.shape) != want:
                raise ValueError(f"{name} has shape {tuple(tensor.shape)}, expected {want}")
            weight = self.w_o.weight
            if tensor.dtype != weight.dtype:
                raise ValueError(f"dtype mismatch: {name} is {tensor.dtype} but the weights are {weight.dtype}")
        if mask is None and allow_no_mask:
            return
        check_tensor("mask", mask)
        if mask.dtype != torch.bool or tuple(mask.shape) != (s, t):
            raise ValueError(f"mask must be a boolean (seq, tokens) = {(s, t)} tensor, got {mask.dtype} "
                             f"{tuple(mask.shape)}")

    def forward(self, x: torch.Tensor, cache: LayerCache | None = None,
                return_weights: bool = False) -> AttentionOutput:
        """u = W^O [o_1; ...; o_{n_h}] (eqs. 37-47), causal; x (b, s, d_model) -> output (b, s, d_model).

        Computed the way :attr:`implementation` says ("absorbed" or "naive", the same result);
        return_weights=True also returns the attention weights (b, n_heads, s, cached + s)."""
        c = self.config
        check_hidden_states(x, c.d_model, self.w_o.weight)
        check_cache(cache, (1, -2), "MLA", "(batch, seq, width)")
        check_bool("return_weights", return_weights)
        start = 0 if cache is None else cache.seq_len
        b, s, _ = x.shape
        positions = self.rope_table.positions(start, s)  # both rotations slice its rows
        q_nope, q_rope = self.queries(x, positions)
        c_kv, k_rope = self.latents(x, positions)
        if cache is not None:
            c_kv, k_rope = cache.update(c_kv=c_kv, k_rope=k_rope)  # (b, start + s, d_c), (b, start + s, d_h^R)
        window = None if cache is None else cache.window  # a windowed cache: each query sees its last W tokens
        t, absorbed = c_kv.shape[1], self.implementation == "absorbed"
        if absorbed and s == 1 and (window is None or window >= t):
            mask = None  # one query at the end of the keys sees them all: the absorbed path skips the mask
        else:
            mask = causal_mask(s, t, device=x.device, window=window)  # (s, t)
        attend = self.attend_absorbed if absorbed else self.attend_naive
        o, weights = attend(q_nope, q_rope, c_kv, k_rope, mask)  # (b, s, h, d_v), (b, s, h, t)
        y = self.w_o(o.reshape(b, s, c.n_heads * c.v_head_dim))
        return AttentionOutput(y, weights.transpose(1, 2) if return_weights else None)


# ----------------------------------------------------------------------------------------------------
# the counter-example: RoPE on the latent-derived keys


def rope_on_latent_keys(module: MultiHeadLatentAttention, x: torch.Tensor, mode: str = "naive") -> torch.Tensor:
    """Attention with RoPE on the keys recovered from the latent, k_{t,i} = R_t W^UK_i c^KV_t, and on
    q_{s,i} = R_s q^C_{s,i}: the design the decoupled k^R replaces (DeepSeek-V2 §2.1.3). Uses
    ``module``'s weights, ignores its decoupled q^R/k^R; scale d_h^-0.5; causal, no cache.

    mode="naive": the correct scores (R_s q^C_{s,i}) · (R_t W^UK_i c^KV_t); a cache would have to hold the
    rotated per-head keys (n_h d_h numbers per token) to avoid recomputing them.
    mode="absorbed": folds W^UK_i into the query anyway, score (W^UK_i^T R_s q^C_{s,i}) · c^KV_t. That drops
    the rotation R_t, which sits between W^UK_i and c^KV_t and changes with t: the true score is
    q^C^T R_s^T R_t W^UK_i c^KV_t = q^C^T R_(t-s) W^UK_i c^KV_t. Only scores against the key at t = 0
    (R_0 = I) come out right, so only the first token's output matches "naive" (see the tests).
    x (b, s, d_model) -> (b, s, d_model).
    """
    check_type("module", module, MultiHeadLatentAttention)
    c = module.config
    check_hidden_states(x, c.d_model, module.w_o.weight, nonempty=False)
    check_even("qk_nope_head_dim", c.qk_nope_head_dim)
    if mode not in MODES:
        raise ValueError(f"mode={mode!r} must be one of {MODES}")
    b, s, _ = x.shape
    positions = torch.arange(s)
    angles = positions[:, None, None].double() * rope_frequencies(c.qk_nope_head_dim, c.rope_base)  # (s, 1, d_h/2)
    q_nope, _ = module.queries(x, positions)  # (b, s, h, d_h); the decoupled q^R is not used
    q = rotate_pairs(q_nope, angles, c.rope_interleaved)  # R_s q^C_{s,i}
    c_kv, _ = module.latents(x, positions)  # (b, t, d_c); the decoupled k^R is not used
    if mode == "naive":
        k = rotate_pairs(torch.einsum("btc,hdc->bthd", c_kv, module.w_uk), angles, c.rope_interleaved)
        scores = torch.einsum("bshd,bthd->bsht", q, k)  # (R_s q^C_{s,i}) · (R_t W^UK_i c^KV_t)
    else:
        q_latent = torch.einsum("bshd,hdc->bshc", q, module.w_uk)  # W^UK_i^T R_s q^C_{s,i}: R_t is lost
        scores = torch.einsum("bshc,btc->bsht", q_latent, c_kv)
    mask = causal_mask(s, s, device=x.device)
    scores = scores * c.qk_nope_head_dim**-0.5
    weights = softmax(scores.masked_fill(~mask[None, :, None, :], float("-inf")), dim=-1)
    o = torch.einsum("bsht,btc->bshc", weights, c_kv)
    o = torch.einsum("bshc,hvc->bshv", o, module.w_uv)  # (b, s, h, d_v)
    return module.w_o(o.reshape(b, s, c.n_heads * c.v_head_dim))


# ----------------------------------------------------------------------------------------------------
# layouts: interleaved -> halves, Hugging Face


def rope_to_halves(module: MultiHeadLatentAttention) -> MultiHeadLatentAttention:
    """The same layer with RoPE on halves (i, i + d/2) instead of interleaved pairs (2i, 2i+1).

    Permuting the rows of W^QR (each head) and of W^KR by p = :func:`attnlab.rope.interleaved_to_halves`
    turns DeepSeek's interleaved rotation into Llama's ``rotate_half``: RoPE_halves(P x) = P
    RoPE_interleaved(x), and q^R · k^R is unchanged because the same permutation hits both. Outputs
    are equal; the cached k^R comes out permuted (new k_rope = old k_rope[..., p]).
    """
    check_type("module", module, MultiHeadLatentAttention)
    c = module.config
    if not c.rope_interleaved:
        raise ValueError("rope_to_halves needs a module with rope_interleaved=True; this one already uses halves")
    new = MultiHeadLatentAttention(dataclasses.replace(c, rope_interleaved=False)).use(module.implementation)
    new = new.to(device=module.w_o.weight.device, dtype=module.w_o.weight.dtype)
    new.load_state_dict(module.state_dict())
    p = interleaved_to_halves(c.qk_rope_head_dim)
    with torch.no_grad():
        w_q = new.w_q if c.q_lora_rank is None else new.w_uq
        per_head = w_q.weight.view(c.n_heads, c.qk_head_dim, -1)
        per_head[:, c.qk_nope_head_dim :] = per_head[:, c.qk_nope_head_dim :][:, p].clone()  # W^QR_i rows
        new.w_dkv.weight[c.kv_lora_rank :] = new.w_dkv.weight[c.kv_lora_rank :][p].clone()  # W^KR rows
    return new


def from_transformers(hf_attention: nn.Module) -> MultiHeadLatentAttention:
    """This course's :class:`MultiHeadLatentAttention` with the weights of a Hugging Face
    ``DeepseekV3Attention`` (transformers 5.x), same dtype and device; outputs agree.

    Weight names: q_proj -> w_q, or q_a_proj -> w_dq, q_a_layernorm -> q_norm, q_b_proj -> w_uq;
    kv_a_proj_with_mqa -> w_dkv; kv_a_layernorm -> kv_norm; kv_b_proj -> w_ukv; o_proj -> w_o. No
    permutation is needed: with ``rope_interleave=True`` Hugging Face keeps DeepSeek's interleaved
    weights and rotates pairs (2i, 2i+1) (returning them in halves order, which leaves q^R · k^R
    unchanged), so the layer gets rope_interleaved=True; with ``rope_interleave=False`` it rotates halves.
    YaRN settings come from ``config.rope_parameters``.
    """
    cfg = getattr(hf_attention, "config", None)
    if cfg is None or getattr(cfg, "model_type", None) != "deepseek_v3":
        raise ValueError("hf_attention must be a transformers DeepseekV3Attention (config.model_type "
                         f"'deepseek_v3'), got {type(hf_attention).__name__}")
    if cfg.num_key_value_heads != cfg.num_attention_heads:
        raise ValueError(f"num_key_value_heads={cfg.num_key_value_heads} must equal num_attention_heads="
                         f"{cfg.num_attention_heads}: MLA gives every head its own key and value")
    if getattr(cfg, "attention_bias", False):
        raise ValueError("attention_bias=True is not supported: DeepSeek's MLA projections have no bias")
    q_eps = hf_attention.q_a_layernorm.variance_epsilon if cfg.q_lora_rank is not None else None
    eps = hf_attention.kv_a_layernorm.variance_epsilon
    if q_eps is not None and q_eps != eps:
        raise ValueError(f"q_a_layernorm eps={q_eps} differs from kv_a_layernorm eps={eps}; MLAConfig has one")
    config = MLAConfig(d_model=cfg.hidden_size, n_heads=cfg.num_attention_heads, q_lora_rank=cfg.q_lora_rank,
                       kv_lora_rank=cfg.kv_lora_rank, qk_nope_head_dim=cfg.qk_nope_head_dim,
                       qk_rope_head_dim=cfg.qk_rope_head_dim, v_head_dim=cfg.v_head_dim,
                       rope_interleaved=bool(cfg.rope_interleave), norm_eps=eps, **_rope_settings(cfg))
    weight = hf_attention.o_proj.weight
    module = MultiHeadLatentAttention(config).to(device=weight.device, dtype=weight.dtype)
    names = {"kv_a_proj_with_mqa": "w_dkv", "kv_a_layernorm": "kv_norm", "kv_b_proj": "w_ukv", "o_proj": "w_o"}
    if cfg.q_lora_rank is None:
        names["q_proj"] = "w_q"
    else:
        names.update(q_a_proj="w_dq", q_a_layernorm="q_norm", q_b_proj="w_uq")
    with torch.no_grad():
        for hf_name, name in names.items():
            getattr(module, name).weight.copy_(getattr(hf_attention, hf_name).weight)
    return module


def _rope_settings(cfg) -> dict:
    """MLAConfig's RoPE/YaRN fields from a Hugging Face config's ``rope_parameters``."""
    rp = dict(cfg.rope_parameters)
    settings = {"rope_base": float(rp["rope_theta"])}
    rope_type = rp.get("rope_type", "default")
    if rope_type == "default":
        return settings
    if rope_type != "yarn":
        raise ValueError(f"rope_type={rope_type!r} is not supported: use 'default' or 'yarn'")
    if rp.get("attention_factor") is not None or rp.get("truncate", True) is not True:
        raise ValueError("YaRN with an explicit attention_factor or truncate=False is not supported")
    original = rp["original_max_position_embeddings"]
    factor = rp.get("factor") or cfg.max_position_embeddings / original
    mscale, mscale_all_dim = rp.get("mscale"), rp.get("mscale_all_dim")
    if mscale_all_dim and not mscale:
        raise ValueError("YaRN with mscale_all_dim but no mscale is not supported")
    # Hugging Face: softmax scale * m(mscale_all_dim)^2 (none when it is unset), cos/sin * m(mscale) /
    # m(mscale_all_dim) when both are set, else * m(1). mscale_all_dim = 0 gives m = 1.
    if not mscale_all_dim:
        mscale, mscale_all_dim = 1.0, 0.0
    settings.update(rope_factor=float(factor), original_max_position=int(original),
                    beta_fast=float(rp.get("beta_fast") or 32), beta_slow=float(rp.get("beta_slow") or 1),
                    mscale=float(mscale), mscale_all_dim=float(mscale_all_dim))
    return settings
