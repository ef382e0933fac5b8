"""DeepSeek's reference MLA (DeepSeek-V3 ``inference/model.py``) as pure functions, for the tests.

The tests check :class:`attnlab.mla.MultiHeadLatentAttention` against these formulas, written in
DeepSeek's own names (``ModelArgs``, ``precompute_freqs_cis``, ``apply_rotary_emb``, ``MLA.forward``).
They are not part of the library: nothing in the course calls them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from attnlab._validate import (
    check_choice,
    check_even,
    check_floating,
    check_ndim,
    check_non_negative_int,
    check_positive_int,
    check_real,
    check_tensor,
    check_type,
)
from attnlab.mla import MLAConfig, MultiHeadLatentAttention


@dataclass(frozen=True, kw_only=True)
class DeepSeekArgs:
    """The MLA fields of DeepSeek-V3's ``ModelArgs`` (``inference/model.py``), in its names.

    q_lora_rank 0 = no query latent; YaRN applies when max_seq_len > original_seq_len."""

    dim: int
    n_heads: int
    q_lora_rank: int
    kv_lora_rank: int
    qk_nope_head_dim: int
    qk_rope_head_dim: int
    v_head_dim: int
    max_seq_len: int
    original_seq_len: int = 4096
    rope_theta: float = 10000.0
    rope_factor: float = 40.0
    beta_fast: float = 32.0
    beta_slow: float = 1.0
    mscale: float = 1.0

    def __post_init__(self) -> None:
        for name in ("dim", "n_heads", "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim",
                     "max_seq_len", "original_seq_len"):
            check_positive_int(name, getattr(self, name))
        check_non_negative_int("q_lora_rank", self.q_lora_rank)
        check_even("qk_rope_head_dim", self.qk_rope_head_dim)
        check_real("rope_theta", self.rope_theta, 1.0, strict=True)
        check_real("rope_factor", self.rope_factor, 0.0, strict=True)
        check_real("beta_slow", self.beta_slow, 0.0, strict=True)
        check_real("beta_fast", self.beta_fast, 0.0, strict=True)
        if self.beta_fast <= self.beta_slow:
            raise ValueError(f"beta_fast={self.beta_fast} must be > beta_slow={self.beta_slow}")
        check_real("mscale", self.mscale, 0.0)

    @property
    def softmax_scale(self) -> float:
        """qk_head_dim^-0.5, times mscale'^2 with mscale' = 0.1 mscale ln(rope_factor) + 1 when
        max_seq_len > original_seq_len (``MLA.__init__``)."""
        scale = (self.qk_nope_head_dim + self.qk_rope_head_dim) ** -0.5
        if self.max_seq_len > self.original_seq_len:
            m = 0.1 * self.mscale * math.log(self.rope_factor) + 1.0
            scale = scale * m * m
        return scale


def deepseek_args(config: MLAConfig, max_seq_len: int) -> DeepSeekArgs:
    """DeepSeek's ``ModelArgs`` for an interleaved :class:`MLAConfig`; YaRN on iff config.rope_factor > 1
    (then original_seq_len = config.original_max_position and max_seq_len must exceed it)."""
    check_type("config", config, MLAConfig, "an MLAConfig")
    if not config.rope_interleaved:
        raise ValueError("DeepSeek's code rotates interleaved pairs: config needs rope_interleaved=True")
    if config.mscale_all_dim is not None and config.mscale_all_dim != config.mscale:
        raise ValueError("DeepSeek's code has one mscale: config needs mscale_all_dim None or == mscale")
    check_positive_int("max_seq_len", max_seq_len)
    original = config.original_max_position if config.yarn else max_seq_len
    if config.yarn and max_seq_len <= original:
        raise ValueError(f"max_seq_len={max_seq_len} must exceed original_max_position={original} "
                         "for DeepSeek's code to apply YaRN")
    return DeepSeekArgs(dim=config.d_model, n_heads=config.n_heads, q_lora_rank=config.q_lora_rank or 0,
                        kv_lora_rank=config.kv_lora_rank, qk_nope_head_dim=config.qk_nope_head_dim,
                        qk_rope_head_dim=config.qk_rope_head_dim, v_head_dim=config.v_head_dim,
                        max_seq_len=max_seq_len, original_seq_len=original, rope_theta=config.rope_base,
                        rope_factor=config.rope_factor, beta_fast=config.beta_fast, beta_slow=config.beta_slow,
                        mscale=config.mscale)


def deepseek_weights(module: MultiHeadLatentAttention) -> dict[str, torch.Tensor]:
    """``module``'s weights under DeepSeek's names: wq or (wq_a, q_norm, wq_b), wkv_a, kv_norm, wkv_b, wo."""
    check_type("module", module, MultiHeadLatentAttention)
    names = {"w_dkv": "wkv_a", "kv_norm": "kv_norm", "w_ukv": "wkv_b", "w_o": "wo"}
    if module.config.q_lora_rank is None:
        names["w_q"] = "wq"
    else:
        names.update(w_dq="wq_a", q_norm="q_norm", w_uq="wq_b")
    return {ds: getattr(module, ours).weight for ours, ds in names.items()}


def deepseek_freqs_cis(args: DeepSeekArgs, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``precompute_freqs_cis``: e^{i m theta_i} for m < max_seq_len, (max_seq_len, d_h^R / 2) complex,
    with YaRN's frequency ramp when max_seq_len > original_seq_len (DeepSeek computes in float32)."""
    check_type("args", args, DeepSeekArgs)
    check_choice("dtype", dtype, (torch.float32, torch.float64))
    d, base = args.qk_rope_head_dim, args.rope_theta
    freqs = 1.0 / (base ** (torch.arange(0, d, 2, dtype=dtype) / d))
    if args.max_seq_len > args.original_seq_len:
        def correction_dim(rotations):
            return d * math.log(args.original_seq_len / (rotations * 2 * math.pi)) / (2 * math.log(base))
        low = max(math.floor(correction_dim(args.beta_fast)), 0)
        high = min(math.ceil(correction_dim(args.beta_slow)), d - 1)
        high = high + 0.001 if low == high else high
        smooth = 1 - ((torch.arange(d // 2, dtype=dtype) - low) / (high - low)).clamp(0, 1)
        freqs = freqs / args.rope_factor * (1 - smooth) + freqs * smooth
    angles = torch.outer(torch.arange(args.max_seq_len, dtype=dtype), freqs)
    return torch.polar(torch.ones_like(angles), angles)


def deepseek_apply_rotary_emb(x: torch.Tensor, freqs_cis: torch.Tensor) -> torch.Tensor:
    """``apply_rotary_emb``: read pairs (2i, 2i+1) as complex numbers and multiply by e^{i m theta_i}.

    x (b, s, heads, d) with freqs_cis (s, d/2) -> (b, s, heads, d)."""
    check_ndim("x", x, 4, "(batch, seq, heads, d)")
    check_floating("x", x)
    check_even("x.shape[-1]", x.shape[-1])
    _check_freqs_cis(freqs_cis, x.shape[1], x.shape[-1] // 2)
    z = torch.view_as_complex(x.to(freqs_cis.real.dtype).reshape(*x.shape[:-1], -1, 2).contiguous())
    z = z * freqs_cis.view(1, x.shape[1], 1, z.shape[-1])
    return torch.view_as_real(z).flatten(3).to(x.dtype)


def _check_freqs_cis(freqs_cis: object, seq: int, pairs: int) -> None:
    """freqs_cis: complex (seq, pairs), the rows of :func:`deepseek_freqs_cis` for the tokens at hand."""
    check_ndim("freqs_cis", freqs_cis, 2, "(seq, d/2)")
    if not freqs_cis.dtype.is_complex:
        raise ValueError(f"freqs_cis must be a complex tensor (e^{{i m theta}}), got {freqs_cis.dtype}")
    if tuple(freqs_cis.shape) != (seq, pairs):
        raise ValueError(f"freqs_cis has shape {tuple(freqs_cis.shape)}, expected (seq, d/2) = ({seq}, {pairs})")


def deepseek_mla(x: torch.Tensor, weights: dict[str, torch.Tensor], args: DeepSeekArgs, start_pos: int,
                 freqs_cis: torch.Tensor, cache: tuple[torch.Tensor, torch.Tensor] | None = None,
                 attn_impl: str = "absorb", eps: float = 1e-6):
    """``MLA.forward`` of DeepSeek-V3 ``inference/model.py`` as a pure function.

    x (b, s, dim); freqs_cis: the rows start_pos..start_pos+s-1 of :func:`deepseek_freqs_cis`; cache:
    what earlier calls returned (None at start_pos 0). attn_impl="absorb" (DeepSeek's default) caches
    kv = RMSNorm latent (b, t, d_c) and pe = rotated shared key (b, t, d_h^R) and scores

        (einsum("bshc,btc->bsht", q_nope W^UK, kv) + einsum("bshr,btr->bsht", q_pe, pe)) * softmax_scale;

    "naive" caches per-head k (b, t, h, d_h + d_h^R) and v (b, t, h, d_v). Returns (out (b, s, dim),
    cache). Differences from the original: caches grow by concatenation instead of preallocated buffers,
    the causal mask also covers a multi-token call at start_pos > 0, and softmax runs in x's dtype
    when that is float64 (DeepSeek's runs in float32).
    """
    if not isinstance(attn_impl, str) or attn_impl not in ("absorb", "naive"):
        raise ValueError(f"attn_impl={attn_impl!r} must be 'absorb' or 'naive'")
    check_type("args", args, DeepSeekArgs)
    check_non_negative_int("start_pos", start_pos)
    if (start_pos == 0) != (cache is None):
        raise ValueError("pass cache=None exactly when start_pos == 0")
    check_ndim("x", x, 3, "(batch, seq, dim)")
    check_floating("x", x)
    if x.shape[-1] != args.dim:
        raise ValueError(f"x has dim={x.shape[-1]}, args.dim={args.dim}")
    check_type("weights", weights, dict)
    wanted = ["wkv_a", "kv_norm", "wkv_b", "wo"] + (["wq"] if args.q_lora_rank == 0 else ["wq_a", "q_norm", "wq_b"])
    missing = [name for name in wanted if name not in weights]
    if missing:
        raise ValueError(f"weights lacks {missing}: pass deepseek_weights(module)")
    for name in wanted:
        check_tensor(f"weights[{name!r}]", weights[name])
        if weights[name].dtype != x.dtype:
            raise ValueError(f"dtype mismatch: x is {x.dtype} but weights[{name!r}] is {weights[name].dtype}")
    _check_freqs_cis(freqs_cis, x.shape[1], args.qk_rope_head_dim // 2)
    if cache is not None:
        check_type("cache", cache, tuple, "a tuple (the cache an earlier call returned)")
        if len(cache) != 2 or not all(isinstance(t, torch.Tensor) for t in cache):
            raise ValueError("cache must be the pair of tensors an earlier call returned")
        if cache[0].shape[:2] != (x.shape[0], start_pos):
            raise ValueError(f"cache holds {tuple(cache[0].shape[:2])} (batch, tokens), expected "
                             f"({x.shape[0]}, start_pos={start_pos})")
    check_real("eps", eps, 0.0, strict=True)
    bsz, seqlen, _ = x.shape
    h, d_nope, d_rope, d_c = args.n_heads, args.qk_nope_head_dim, args.qk_rope_head_dim, args.kv_lora_rank
    if args.q_lora_rank == 0:
        q = F.linear(x, weights["wq"])
    else:
        q = F.linear(F.rms_norm(F.linear(x, weights["wq_a"]), (args.q_lora_rank,), weights["q_norm"], eps),
                     weights["wq_b"])
    q = q.view(bsz, seqlen, h, d_nope + d_rope)
    q_nope, q_pe = torch.split(q, [d_nope, d_rope], dim=-1)
    q_pe = deepseek_apply_rotary_emb(q_pe, freqs_cis)
    kv = F.linear(x, weights["wkv_a"])
    kv, k_pe = torch.split(kv, [d_c, d_rope], dim=-1)
    k_pe = deepseek_apply_rotary_emb(k_pe.unsqueeze(2), freqs_cis)  # (b, s, 1, d_rope)
    kv_norm = F.rms_norm(kv, (d_c,), weights["kv_norm"], eps)
    if attn_impl == "naive":
        q = torch.cat([q_nope, q_pe], dim=-1)
        kv = F.linear(kv_norm, weights["wkv_b"]).view(bsz, seqlen, h, d_nope + args.v_head_dim)
        k_nope, v = torch.split(kv, [d_nope, args.v_head_dim], dim=-1)
        k = torch.cat([k_nope, k_pe.expand(-1, -1, h, -1)], dim=-1)
        k_cache, v_cache = (k, v) if cache is None else (torch.cat([cache[0], k], 1), torch.cat([cache[1], v], 1))
        scores = torch.einsum("bshd,bthd->bsht", q, k_cache) * args.softmax_scale
        cache = (k_cache, v_cache)
    else:
        wkv_b = weights["wkv_b"].view(h, -1, d_c)
        q_nope = torch.einsum("bshd,hdc->bshc", q_nope, wkv_b[:, :d_nope])
        pe = k_pe.squeeze(2)
        kv_cache, pe_cache = (kv_norm, pe) if cache is None else (torch.cat([cache[0], kv_norm], 1),
                                                                    torch.cat([cache[1], pe], 1))
        scores = (torch.einsum("bshc,btc->bsht", q_nope, kv_cache)
                  + torch.einsum("bshr,btr->bsht", q_pe, pe_cache)) * args.softmax_scale
        cache = (kv_cache, pe_cache)
    end_pos = start_pos + seqlen
    if seqlen > 1:  # DeepSeek: torch.full((seqlen, seqlen), -inf).triu_(1), written for start_pos = 0
        mask = torch.full((seqlen, end_pos), float("-inf"), device=x.device).triu_(start_pos + 1)
        scores = scores + mask.unsqueeze(1).to(scores.dtype)
    scores = scores.softmax(dim=-1, dtype=torch.promote_types(x.dtype, torch.float32)).type_as(x)
    if attn_impl == "naive":
        out = torch.einsum("bsht,bthd->bshd", scores, cache[1])
    else:
        out = torch.einsum("bsht,btc->bshc", scores, cache[0])
        out = torch.einsum("bshc,hdc->bshd", out, wkv_b[:, -args.v_head_dim :])
    return F.linear(out.flatten(2), weights["wo"]), cache
