"""Linear attention, the delta rule and Gated DeltaNet: attention whose "cache" is a fixed-size state.

Softmax attention (chapter 3) keeps every key and value: the cache grows by one entry per token. Drop the
softmax and write the similarity as a dot product of features, sim(q, k) = phi(q)^T phi(k), and the sum over
the past factors through one d_k x d_v matrix (Katharopoulos et al. 2020, "Transformers are RNNs", §3.2; with
the causal mask of §3.3, as the recurrence of §3.4):

    S_t = S_{t-1} + phi(k_t) v_t^T          z_t = z_{t-1} + phi(k_t)            (the state: d_k x d_v and d_k)
    o_t = S_t^T phi(q_t) / (z_t^T phi(q_t))                                      (the output: d_v)

phi(x) = elu(x) + 1 (§3.2.1). The state does not grow with t: that is the whole saving, and the whole loss.

The delta rule (Schlag et al. 2021, "Linear Transformers Are Secretly Fast Weight Programmers"; DeltaNet,
Yang et al. 2024, "Parallelizing Linear Transformers with the Delta Rule over Sequence Length") writes v_t over
what the state already returns for k_t instead of adding to it; Gated DeltaNet (Yang, Kautz, Hatamizadeh,
"Gated Delta Networks", ICLR 2025) first fades the whole state by a gate alpha_t in (0, 1]:

    S_t = alpha_t (I - beta_t k_t k_t^T) S_{t-1} + beta_t k_t v_t^T               o_t = S_t^T q_t

**Layout.** Every state here is (d_k, d_v), keys along the rows, as Hugging Face's Qwen3-Next
(``torch_recurrent_gated_delta_rule``) and the flash-linear-attention kernels store it; the papers write the
transpose, S_paper = S^T (d_v x d_k), so that S_t = S_{t-1}(alpha_t (I - beta_t k_t k_t^T)) + beta_t v_t k_t^T
and o_t = S_t q_t. The gate is passed in log space, g_t = log alpha_t <= 0, as in those kernels.

Tensors: q, k (batch, heads, seq, d_k); v (batch, heads, seq, d_v); beta, g (batch, heads, seq);
state (batch, heads, d_k, d_v). Every function computes in float32 at least (float64 stays float64) and
returns the input's dtype, so bfloat16 runs as Hugging Face's and FLA's kernels run it.

Two forms compute the same thing: the **recurrent** one (a loop over tokens, one state update each: what a
decode step does) and the **chunkwise** one (Yang et al. 2024 §3; the WY representation / UT transform of a
chunk's C updates solved with one triangular system, then one matmul per chunk for the state passed on):
matrix multiplications a GPU runs well, the sequential part cut from L steps to L / C.

:class:`LinearAttention` is an :class:`~attnlab.attention.AttentionLayer` built on them (linear, delta or
gated delta rule, with Qwen3-Next's short causal convolution); its cache, a :class:`RecurrentState`, holds
the state and the convolution's last inputs, a fixed number of bytes whatever the context.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from attnlab._validate import (
    check_bool,
    check_choice,
    check_dim_size,
    check_floating,
    check_hidden_states,
    check_ndim,
    check_non_negative_int,
    check_positive_int,
    check_same_device,
    check_same_dtype,
    check_type,
)
from attnlab.attention import AttentionLayer, AttentionOutput

#: The update rules :class:`LinearAttention` implements: Katharopoulos et al.'s linear attention, DeltaNet's
#: delta rule, Gated DeltaNet's gated delta rule (Qwen3-Next's linear layers).
RULES = ("linear", "delta", "gated_delta")


# ----------------------------------------------------------------------------------------------------
# checks shared by the functional forms


def _check_qkv(q: object, k: object, v: object) -> None:
    """q, k: (batch, heads, seq, d_k) and v: (batch, heads, seq, d_v), floating, one dtype and device."""
    for name, t in (("q", q), ("k", k), ("v", v)):
        check_floating(name, t)
        check_ndim(name, t, 4, "(batch, heads, seq, dim)")
    check_dim_size("k", k, -1, q.shape[-1], "d_k (the query width)")
    for name, t in (("k", k), ("v", v)):
        for dim, meaning in ((0, "batch"), (1, "heads"), (2, "seq")):
            check_dim_size(name, t, dim, q.shape[dim], meaning)
    check_same_dtype(q=q, k=k, v=v)
    check_same_device(q=q, k=k, v=v)


def _check_gates(q: torch.Tensor, beta: object, g: object) -> None:
    """beta and g (when given): (batch, heads, seq), q's dtype and device; g = log alpha <= 0."""
    for name, t in (("beta", beta), ("g", g)):
        if t is None and name == "g":
            continue
        check_floating(name, t)
        check_ndim(name, t, 3, "(batch, heads, seq)")
        for dim, meaning in ((0, "batch"), (1, "heads"), (2, "seq")):
            check_dim_size(name, t, dim, q.shape[dim], meaning)
        check_same_dtype(q=q, **{name: t})
        check_same_device(q=q, **{name: t})
    if g is not None and bool((g > 0).any()):
        raise ValueError("g holds log alpha_t and must be <= 0 everywhere: a gate alpha_t = exp(g_t) > 1 would "
                         "grow the state without bound")


def _check_state(state: object, q: torch.Tensor, d_v: int) -> None:
    """state: None or (batch, heads, d_k, d_v), q's dtype and device."""
    if state is None:
        return
    check_floating("state", state)
    check_ndim("state", state, 4, "(batch, heads, d_k, d_v)")
    for dim, size, meaning in ((0, q.shape[0], "batch"), (1, q.shape[1], "heads"), (2, q.shape[-1], "d_k"),
                               (3, d_v, "d_v")):
        check_dim_size("state", state, dim, size, meaning)
    check_same_device(q=q, state=state)


def _work_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 stays float64; every other float is computed in float32 (bfloat16 accumulates badly)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


# ----------------------------------------------------------------------------------------------------
# linear attention (Katharopoulos et al. 2020)


def elu_feature_map(x: torch.Tensor) -> torch.Tensor:
    """phi(x) = elu(x) + 1, Katharopoulos et al. 2020 §3.2.1: positive everywhere, so the normaliser
    z_t^T phi(q_t) never vanishes. Any shape; elementwise."""
    check_floating("x", x)
    return F.elu(x) + 1.0


@dataclass(frozen=True)
class LinearState:
    """Linear attention's state after a sequence: S = sum_t phi(k_t) v_t^T (batch, heads, d_k, d_v) and the
    normaliser's z = sum_t phi(k_t) (batch, heads, d_k)."""

    S: torch.Tensor
    z: torch.Tensor


def linear_attention_parallel(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Causal linear attention in its quadratic, attention-like form (Katharopoulos et al. 2020, §3.2 with
    sim(q, k) = phi(q)^T phi(k), and the causal mask of §3.3):

        o_i = sum_{j<=i} (phi(q_i)^T phi(k_j)) v_j / sum_{j<=i} phi(q_i)^T phi(k_j)

    q, k: (batch, heads, seq, d_k), v: (batch, heads, seq, d_v) -> (batch, heads, seq, d_v)."""
    _check_qkv(q, k, v)
    work = _work_dtype(q.dtype)
    fq, fk = elu_feature_map(q.to(work)), elu_feature_map(k.to(work))  # phi(q), phi(k)
    L = q.shape[-2]
    mask = torch.ones(L, L, dtype=torch.bool, device=q.device).tril()  # j <= i
    A = torch.einsum("bhid,bhjd->bhij", fq, fk).masked_fill(~mask, 0.0)  # phi(q_i)^T phi(k_j), causal
    out = torch.einsum("bhij,bhje->bhie", A, v.to(work)) / A.sum(-1, keepdim=True)
    return out.to(q.dtype)


def linear_attention_recurrent(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                               state: LinearState | None = None) -> tuple[torch.Tensor, LinearState]:
    """Causal linear attention as a recurrence, one token at a time (Katharopoulos et al. 2020, §3.4):

        S_t = S_{t-1} + phi(k_t) v_t^T,   z_t = z_{t-1} + phi(k_t),   o_t = S_t^T phi(q_t) / z_t^T phi(q_t)

    q, k: (batch, heads, seq, d_k), v: (batch, heads, seq, d_v); ``state``: the :class:`LinearState` left by
    the tokens before (None: zeros). Returns (o (batch, heads, seq, d_v), the state after the last token)."""
    _check_qkv(q, k, v)
    if state is not None:
        check_type("state", state, LinearState)
        _check_state(state.S, q, v.shape[-1])
    work = _work_dtype(q.dtype)
    fq, fk, v_ = elu_feature_map(q.to(work)), elu_feature_map(k.to(work)), v.to(work)
    B, H, L, d_k = q.shape
    S = fq.new_zeros(B, H, d_k, v.shape[-1]) if state is None else state.S.to(work)  # (b, h, d_k, d_v)
    z = fq.new_zeros(B, H, d_k) if state is None else state.z.to(work)  # (b, h, d_k)
    outs = []
    for t in range(L):
        S = S + torch.einsum("bhd,bhe->bhde", fk[:, :, t], v_[:, :, t])  # S_t = S_{t-1} + phi(k_t) v_t^T
        z = z + fk[:, :, t]  # z_t = z_{t-1} + phi(k_t)
        num = torch.einsum("bhde,bhd->bhe", S, fq[:, :, t])  # S_t^T phi(q_t)
        outs.append(num / torch.einsum("bhd,bhd->bh", z, fq[:, :, t]).unsqueeze(-1))  # / z_t^T phi(q_t)
    out = torch.stack(outs, dim=2) if outs else v_.new_zeros(B, H, 0, v.shape[-1])
    return out.to(q.dtype), LinearState(S.to(q.dtype), z.to(q.dtype))


def linear_attention_chunkwise(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, chunk_size: int = 64,
                               state: LinearState | None = None) -> tuple[torch.Tensor, LinearState]:
    """Causal linear attention, chunk by chunk: the recurrence of :func:`linear_attention_recurrent` with the
    normaliser carried as one more value column (v'_t = [v_t, 1] makes S'_t = [S_t, z_t]), run by
    :func:`_chunkwise_core` without the delta rule (inside a chunk the quadratic form, between chunks the
    state). Same arguments and result as :func:`linear_attention_recurrent`."""
    _check_qkv(q, k, v)
    check_positive_int("chunk_size", chunk_size)
    if state is not None:
        check_type("state", state, LinearState)
        _check_state(state.S, q, v.shape[-1])
    work = _work_dtype(q.dtype)
    fq, fk, v_ = elu_feature_map(q.to(work)), elu_feature_map(k.to(work)), v.to(work)
    B, H, L, d_k = q.shape
    v_aug = torch.cat([v_, v_.new_ones(B, H, L, 1)], dim=-1)  # [v_t, 1]: (b, h, seq, d_v + 1)
    S0 = None if state is None else torch.cat([state.S, state.z.unsqueeze(-1)], dim=-1).to(work)
    ones = fq.new_ones(B, H, L)
    out_aug, S_aug = _chunkwise_core(fq, fk, v_aug, ones, None, chunk_size, S0, delta=False)
    out = out_aug[..., :-1] / out_aug[..., -1:]  # S_t^T phi(q_t) / z_t^T phi(q_t)
    return out.to(q.dtype), LinearState(S_aug[..., :-1].to(q.dtype), S_aug[..., -1].to(q.dtype))


# ----------------------------------------------------------------------------------------------------
# the (gated) delta rule: DeltaNet and Gated DeltaNet


def delta_rule_recurrent(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor,
                         g: torch.Tensor | None = None,
                         state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The (gated) delta rule, one token at a time (DeltaNet, Yang et al. 2024; Gated DeltaNet, Yang et al.
    ICLR 2025), in the (d_k, d_v) layout of the module docstring:

        S'_t   = alpha_t S_{t-1}                       (gate; alpha_t = exp(g_t), 1 without ``g``)
        u_t    = beta_t (v_t - S'_t^T k_t)             (what to write: the error of the current read-out)
        S_t    = S'_t + k_t u_t^T  = alpha_t (I - beta_t k_t k_t^T) S_{t-1} + beta_t k_t v_t^T
        o_t    = S_t^T q_t

    q, k: (batch, heads, seq, d_k), v: (batch, heads, seq, d_v), beta, g: (batch, heads, seq);
    ``state``: (batch, heads, d_k, d_v) left by earlier tokens (None: zeros). Returns (o (batch, heads, seq,
    d_v), the final state). With unit-norm keys and beta_t = 1, S_t^T k_t = v_t: the key's slot is overwritten."""
    _check_qkv(q, k, v)
    _check_gates(q, beta, g)
    _check_state(state, q, v.shape[-1])
    work = _work_dtype(q.dtype)
    q_, k_, v_, b_ = (t.to(work) for t in (q, k, v, beta))
    B, H, L, d_k = q.shape
    S = q_.new_zeros(B, H, d_k, v.shape[-1]) if state is None else state.to(work)  # (b, h, d_k, d_v)
    outs = []
    for t in range(L):
        if g is not None:
            S = S * g[:, :, t].to(work).exp()[..., None, None]  # S'_t = alpha_t S_{t-1}
        read = torch.einsum("bhde,bhd->bhe", S, k_[:, :, t])  # S'^T k_t: what the state holds for k_t
        u = b_[:, :, t, None] * (v_[:, :, t] - read)  # u_t = beta_t (v_t - S'^T k_t)
        S = S + torch.einsum("bhd,bhe->bhde", k_[:, :, t], u)  # S_t = S'_t + k_t u_t^T
        outs.append(torch.einsum("bhde,bhd->bhe", S, q_[:, :, t]))  # o_t = S_t^T q_t
    out = torch.stack(outs, dim=2) if outs else v_.new_zeros(B, H, 0, v.shape[-1])
    return out.to(q.dtype), S.to(q.dtype)


def _chunkwise_core(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor, g: torch.Tensor | None,
                    chunk_size: int, state: torch.Tensor | None, delta: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The chunkwise form (DeltaNet, Yang et al. 2024 §3; Gated DeltaNet §3), already-checked tensors in the
    work dtype. Within a chunk of C tokens write Gamma_r = prod_{s<=r} alpha_s (cumulative gate), S_0 the
    state entering the chunk. Unrolling the recurrence,

        S_r = Gamma_r S_0 + sum_{s<=r} (Gamma_r / Gamma_s) k_s u_s^T                                  (1)
        u_r = beta_r v_r - beta_r Gamma_r S_0^T k_r - sum_{s<r} beta_r (Gamma_r / Gamma_s)(k_r.k_s) u_s  (2)

    (2) for all r at once is a unit lower-triangular system (I + A) U = beta V - (beta Gamma K) S_0 with
    A_rs = beta_r (Gamma_r / Gamma_s) k_r.k_s for s < r. Solving it against beta V and beta Gamma K, chunk
    by chunk in parallel before any state is known, is the UT transform (the WY representation of the
    product of the C Householder-like factors): U_0 = T (beta V), W = T (beta Gamma K), T = (I + A)^{-1};
    then U = U_0 - W S_0. The outputs and the state passed on are matmuls:

        O     = (Gamma Q) S_0 + (Q K^T * D * M) U            D_rs = Gamma_r / Gamma_s, M: s <= r   (from 1)
        S_C   = Gamma_C S_0 + ((Gamma_C / Gamma) K)^T U                                            (from 1)

    Without the delta rule (``delta=False``: plain, possibly gated, linear attention) A = 0 and W = 0, U = beta V.
    A length that is no multiple of C is padded with tokens that change nothing (k = 0, beta = 0, g = 0)."""
    B, H, L, d_k = q.shape
    d_v = v.shape[-1]
    C = chunk_size
    pad = (-L) % C
    if g is None:
        g = torch.zeros_like(beta)
    if pad:
        q, k, v = (F.pad(t, (0, 0, 0, pad)) for t in (q, k, v))
        beta, g = (F.pad(t, (0, pad)) for t in (beta, g))
    N = (L + pad) // C
    q, k, v = (t.reshape(B, H, N, C, t.shape[-1]) for t in (q, k, v))  # (b, h, chunk, C, dim)
    beta, g = beta.reshape(B, H, N, C), g.reshape(B, H, N, C)
    gamma = g.cumsum(-1)  # log Gamma_r within each chunk: (b, h, N, C)
    causal = torch.ones(C, C, dtype=torch.bool, device=q.device).tril()  # s <= r
    log_D = (gamma.unsqueeze(-1) - gamma.unsqueeze(-2)).masked_fill(~causal, -math.inf)
    D = log_D.exp()  # Gamma_r / Gamma_s for s <= r, else 0: (b, h, N, C, C)
    Gamma = gamma.exp().unsqueeze(-1)  # (b, h, N, C, 1)
    if delta:
        A = (beta.unsqueeze(-1) * torch.einsum("bhnrd,bhnsd->bhnrs", k, k) * D).tril(-1)  # A_rs, s < r
        I_plus_A = A + torch.eye(C, dtype=q.dtype, device=q.device)
        U0 = torch.linalg.solve_triangular(I_plus_A, beta.unsqueeze(-1) * v, upper=False, unitriangular=True)
        W = torch.linalg.solve_triangular(I_plus_A, beta.unsqueeze(-1) * Gamma * k, upper=False,
                                          unitriangular=True)  # T (beta Gamma K)
    else:
        U0, W = beta.unsqueeze(-1) * v, None
    QK = torch.einsum("bhnrd,bhnsd->bhnrs", q, k) * D  # (Q K^T * D * M) within each chunk
    k_out = k * (gamma[..., -1:] - gamma).exp().unsqueeze(-1)  # (Gamma_C / Gamma_s) k_s
    S = q.new_zeros(B, H, d_k, d_v) if state is None else state
    out = torch.empty(B, H, N, C, d_v, dtype=q.dtype, device=q.device)
    for n in range(N):  # the only sequential part: N = L / C steps instead of L
        U = U0[:, :, n] if W is None else U0[:, :, n] - W[:, :, n] @ S  # U = U_0 - W S_0
        out[:, :, n] = (Gamma[:, :, n] * q[:, :, n]) @ S + QK[:, :, n] @ U  # O = (Gamma Q) S_0 + (QK^T*D*M) U
        S = gamma[:, :, n, -1].exp()[..., None, None] * S + k_out[:, :, n].transpose(-1, -2) @ U  # S_C
    return out.reshape(B, H, N * C, d_v)[:, :, :L], S


def delta_rule_chunkwise(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor,
                         g: torch.Tensor | None = None, chunk_size: int = 64,
                         state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The (gated) delta rule in chunkwise parallel form (Yang et al. 2024 §3; Gated DeltaNet §3.3): within
    chunks of ``chunk_size`` tokens the UT transform and matmuls, the state passed from chunk to chunk
    (derivation in :func:`_chunkwise_core`). Same arguments and result as :func:`delta_rule_recurrent`, equal
    to it up to rounding, for any length (a last, shorter chunk included)."""
    _check_qkv(q, k, v)
    _check_gates(q, beta, g)
    check_positive_int("chunk_size", chunk_size)
    _check_state(state, q, v.shape[-1])
    work = _work_dtype(q.dtype)
    out, S = _chunkwise_core(q.to(work), k.to(work), v.to(work), beta.to(work), None if g is None else g.to(work),
                             chunk_size, None if state is None else state.to(work), delta=True)
    return out.to(q.dtype), S.to(q.dtype)


def delta_rule_weights(q: torch.Tensor, k: torch.Tensor, beta: torch.Tensor,
                       g: torch.Tensor | None = None) -> torch.Tensor:
    """The attention matrix the (gated) delta rule computes implicitly: o_i = sum_j W_ij v_j from an empty
    state. The output is linear in V, so W is the output for V = the identity (value j = the j-th unit
    vector), by :func:`delta_rule_chunkwise`. q, k: (batch, heads, seq, d_k), beta, g: (batch, heads, seq)
    -> W (batch, heads, seq, seq), zero above the diagonal; unlike softmax weights its rows need not sum to 1
    and may be negative (the delta rule subtracts)."""
    check_floating("q", q)
    check_ndim("q", q, 4, "(batch, heads, seq, d_k)")
    B, H, L, _ = q.shape
    eye = torch.eye(L, dtype=q.dtype, device=q.device).expand(B, H, L, L)  # v_j = e_j
    out, _ = delta_rule_chunkwise(q, k, eye, beta, g, chunk_size=max(L, 1))
    return out


# ----------------------------------------------------------------------------------------------------
# the layer


@dataclass(frozen=True)
class LinearAttentionConfig:
    """A linear-attention layer: ``n_heads`` heads with keys and queries of ``head_dim`` (d_k) and values of
    ``v_head_dim`` (d_v, default d_k); ``rule`` one of :data:`RULES`; a depthwise causal convolution of
    ``conv_size`` taps over the q, k, v channels (Qwen3-Next's ``linear_conv_kernel_dim`` = 4; 0: none);
    ``chunk_size`` C of the chunkwise form (Qwen3-Next's kernels: 64).

    Qwen3-Next-80B-A3B's Gated DeltaNet (config.json): 16 key heads x 128, 32 value heads x 128; the layer
    here gives every value head its own key head (n_heads key heads = value heads)."""

    d_model: int
    n_heads: int
    head_dim: int
    v_head_dim: int | None = None
    rule: str = "gated_delta"
    conv_size: int = 4
    chunk_size: int = 64

    def __post_init__(self) -> None:
        check_positive_int("d_model", self.d_model)
        check_positive_int("n_heads", self.n_heads)
        check_positive_int("head_dim", self.head_dim)
        if self.v_head_dim is not None:
            check_positive_int("v_head_dim", self.v_head_dim)
        check_choice("rule", self.rule, RULES)
        check_non_negative_int("conv_size", self.conv_size)
        check_positive_int("chunk_size", self.chunk_size)

    @property
    def d_v(self) -> int:
        """The value head width: ``v_head_dim``, or ``head_dim`` when unset."""
        return self.head_dim if self.v_head_dim is None else self.v_head_dim

    @property
    def conv_channels(self) -> int:
        """Channels the short convolution runs over: q, k and v of every head (Qwen3-Next's ``conv_dim``)."""
        return self.n_heads * (2 * self.head_dim + self.d_v)

    def state_numbers(self) -> int:
        """Numbers the layer's cache holds per sequence, whatever the context: n_heads x d_k x d_v of state
        (+ n_heads x d_k of normaliser for linear attention) + (conv_size - 1) x conv_channels inputs kept
        for the convolution."""
        normaliser = self.n_heads * self.head_dim if self.rule == "linear" else 0
        conv = max(self.conv_size - 1, 0) * self.conv_channels
        return self.n_heads * self.head_dim * self.d_v + normaliser + conv


class RecurrentState:
    """A linear-attention layer's cache: not one entry per token but a fixed-size state, replaced in place at
    every call. ``S`` (batch, heads, d_k, d_v) the state after the last token, ``z`` (batch, heads, d_k) linear
    attention's normaliser (None for the delta rules), ``conv`` (batch, conv_size - 1, channels) the last
    inputs of the short convolution, ``seq_len`` the tokens seen. Empty (all None, 0) until the first call.

    >>> cache = RecurrentState()
    >>> layer = LinearAttention(LinearAttentionConfig(d_model=8, n_heads=2, head_dim=4))
    >>> _ = layer(torch.randn(1, 5, 8), cache=cache)
    >>> cache.seq_len, tuple(cache.S.shape), tuple(cache.conv.shape)
    (5, (1, 2, 4, 4), (1, 3, 24))
    """

    #: A :class:`~attnlab.kv_cache.KVCache` slot may hold this instead of a per-token cache: it keeps no token,
    #: so the cache's token counts and bytes per token skip it (:attr:`KVCache.state_nbytes` counts it).
    holds_tokens = False

    def __init__(self) -> None:
        self.S: torch.Tensor | None = None
        self.z: torch.Tensor | None = None
        self.conv: torch.Tensor | None = None
        self.seq_len = 0

    def __repr__(self) -> str:
        shape = None if self.S is None else tuple(self.S.shape)
        return f"RecurrentState(seq_len={self.seq_len}, S={shape}, nbytes={self.nbytes})"

    @property
    def nbytes(self) -> int:
        """Bytes the cache holds: the same after 10 tokens as after 10 million."""
        return sum(t.numel() * t.element_size() for t in (self.S, self.z, self.conv) if t is not None)

    @property
    def n_tokens(self) -> int:
        """Tokens held: none. Every token seen is folded into S; none can be read back one by one."""
        return 0

    @property
    def capacity_nbytes(self) -> int:
        """Bytes allocated: what it holds (:attr:`nbytes`); the state is replaced, never grown."""
        return self.nbytes

    def crop(self, seq_len: int) -> None:
        """Only a no-op is possible: a state cannot forget its last tokens (they are folded into S), so
        ``seq_len`` must be the tokens already seen; anything else raises ValueError."""
        check_non_negative_int("seq_len", seq_len)
        if seq_len != self.seq_len:
            raise ValueError(f"seq_len={seq_len}: a recurrent state cannot be cropped, its {self.seq_len} tokens are "
                             "folded into one state; keep a copy of the state from before them instead")


class LinearAttention(AttentionLayer):
    """A linear-attention layer with the course's interface: ``layer(x, cache=None, return_weights=False)``.

    x (batch, seq, d_model) -> q, k, v projections -> short causal convolution + SiLU (Qwen3-Next's
    ``Qwen3NextGatedDeltaNet``; skipped when ``conv_size`` = 0) -> per head:

    * ``rule="linear"``: phi = elu + 1 on q and k, :func:`linear_attention_chunkwise` (or ``_recurrent``);
    * ``"delta"`` / ``"gated_delta"``: q and k L2-normalised, q scaled by d_k^-1/2, beta_t = sigmoid(w_beta x_t);
      for ``"gated_delta"`` g_t = -exp(A_log) softplus(w_a x_t + dt_bias) (Qwen3-Next's gate, Mamba-2's
      parametrisation), then :func:`delta_rule_chunkwise` (or ``_recurrent``);

    then the output projection. (Qwen3-Next also gates the output with a sigmoid of x and an RMSNorm, which
    change no cache and are left out.) ``use("chunkwise")`` (default) or ``use("recurrent")`` picks the form;
    both give the same numbers. With "chunkwise" a call of one token (a decode step) still runs one step of the
    recurrence, as Hugging Face's Qwen3-Next does once its cache holds a state: padding one token to a chunk of
    C would do C times the work for the same numbers. The cache is a :class:`RecurrentState`: prefill then
    token-by-token decode equals one call over the whole sequence. ``return_weights=True`` returns the implicit
    attention matrix (:func:`delta_rule_weights`, or linear attention's normalised phi(q)^T phi(k)) of a call
    from an empty cache.
    """

    IMPLEMENTATIONS = ("chunkwise", "recurrent")

    def __init__(self, config: LinearAttentionConfig) -> None:
        check_type("config", config, LinearAttentionConfig)
        super().__init__()
        self.config = c = config
        self.W_q = nn.Linear(c.d_model, c.n_heads * c.head_dim, bias=False)
        self.W_k = nn.Linear(c.d_model, c.n_heads * c.head_dim, bias=False)
        self.W_v = nn.Linear(c.d_model, c.n_heads * c.d_v, bias=False)
        self.W_o = nn.Linear(c.n_heads * c.d_v, c.d_model, bias=False)
        if c.conv_size:
            self.conv_weight = nn.Parameter(torch.randn(c.conv_channels, 1, c.conv_size) / math.sqrt(c.conv_size))
        if c.rule != "linear":
            self.W_beta = nn.Linear(c.d_model, c.n_heads, bias=False)
        if c.rule == "gated_delta":
            self.W_a = nn.Linear(c.d_model, c.n_heads, bias=False)
            # Mamba-2's initialisation, which Qwen3-Next's gate follows: A in [1, 16], and dt_bias the inverse
            # softplus of a step dt log-uniform in [0.001, 0.1], so that g = -A dt starts between -1.6 and -0.001
            self.A_log = nn.Parameter(torch.log(torch.empty(c.n_heads).uniform_(1, 16)))
            dt = torch.exp(torch.empty(c.n_heads).uniform_(math.log(1e-3), math.log(1e-1)))
            self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))  # softplus(dt_bias) = dt

    def _conv(self, mixed: torch.Tensor, cache: RecurrentState | None) -> torch.Tensor:
        """Depthwise causal convolution over the sequence (mixed: (batch, seq, channels)), continuing from the
        inputs the cache kept; y_t = SiLU(sum_j w_j x_{t - K + 1 + j}). Updates ``cache.conv``.

        One new token (a decode step) is the sum itself over the K inputs held, a multiply and a sum per channel
        (what causal-conv1d's ``causal_conv1d_update`` computes); longer inputs run ``F.conv1d``. (On a CPU,
        PyTorch hands conv1d to oneDNN, whose setup for so small a call costs more than the sum, and now and
        then, in the benchmark's rounds, far more: chapter 14's Gated DeltaNet curve once showed it.)"""
        K = self.config.conv_size
        past = None if cache is None else cache.conv
        if past is None:
            past = mixed.new_zeros(mixed.shape[0], K - 1, mixed.shape[-1])  # nothing before the first token
        full = torch.cat([past, mixed], dim=1)  # (b, K - 1 + seq, channels)
        if cache is not None:
            cache.conv = full[:, full.shape[1] - (K - 1):].detach().clone()
        if mixed.shape[1] == 1:  # sum_j w_{c,j} x_{j,c} over the K inputs: (b, K, channels) -> (b, 1, channels)
            return F.silu((full * self.conv_weight[:, 0].T).sum(dim=1, keepdim=True))
        y = F.conv1d(full.transpose(1, 2), self.conv_weight, groups=mixed.shape[-1])  # (b, channels, seq)
        return F.silu(y.transpose(1, 2))

    def forward(self, x: torch.Tensor, cache: RecurrentState | None = None,
                return_weights: bool = False) -> AttentionOutput:
        """x (batch, seq, d_model) -> :class:`~attnlab.attention.AttentionOutput` (output (batch, seq, d_model),
        weights (batch, heads, seq, seq) when asked). ``cache``: a :class:`RecurrentState`, read and replaced."""
        c = self.config
        check_hidden_states(x, c.d_model, self.W_q.weight)
        if cache is not None:
            check_type("cache", cache, RecurrentState)
            if cache.S is not None and cache.S.shape[0] != x.shape[0]:
                raise ValueError(f"cache holds a batch of {cache.S.shape[0]} sequences, x has batch={x.shape[0]}")
        check_bool("return_weights", return_weights)
        if return_weights and cache is not None and cache.seq_len:
            raise ValueError("return_weights=True needs an empty cache: the weights of earlier tokens are folded "
                             "into the state and cannot be read back")
        B, L, _ = x.shape
        mixed = torch.cat([self.W_q(x), self.W_k(x), self.W_v(x)], dim=-1)  # (b, seq, conv_channels)
        if c.conv_size:
            mixed = self._conv(mixed, cache)
        q, k, v = mixed.split([c.n_heads * c.head_dim, c.n_heads * c.head_dim, c.n_heads * c.d_v], dim=-1)
        q = q.view(B, L, c.n_heads, c.head_dim).transpose(1, 2)  # (b, h, seq, d_k)
        k = k.view(B, L, c.n_heads, c.head_dim).transpose(1, 2)
        v = v.view(B, L, c.n_heads, c.d_v).transpose(1, 2)  # (b, h, seq, d_v)
        weights = None
        chunkwise = self.implementation == "chunkwise" and L > 1  # one token: one step of the recurrence
        if c.rule == "linear":
            state = None if cache is None or cache.S is None else LinearState(cache.S, cache.z)
            form = linear_attention_chunkwise if chunkwise else linear_attention_recurrent
            kwargs = {"chunk_size": c.chunk_size} if chunkwise else {}
            o, new = form(q, k, v, state=state, **kwargs)
            S, z = new.S, new.z
            if return_weights:
                fq, fk = elu_feature_map(q), elu_feature_map(k)
                A = torch.einsum("bhid,bhjd->bhij", fq, fk).tril()  # phi(q_i)^T phi(k_j), j <= i
                weights = A / A.sum(-1, keepdim=True)
        else:
            q = F.normalize(q, dim=-1) / math.sqrt(c.head_dim)  # L2 norm in the kernel, then d_k^-1/2 (Qwen3-Next)
            k = F.normalize(k, dim=-1)
            beta = torch.sigmoid(self.W_beta(x)).transpose(1, 2)  # beta_t in (0, 1): (b, h, seq)
            g = None
            if c.rule == "gated_delta":
                g = (-self.A_log.exp() * F.softplus(self.W_a(x) + self.dt_bias)).transpose(1, 2)  # log alpha_t
            state = None if cache is None else cache.S
            if chunkwise:
                o, S = delta_rule_chunkwise(q, k, v, beta, g, chunk_size=c.chunk_size, state=state)
            else:
                o, S = delta_rule_recurrent(q, k, v, beta, g, state=state)
            z = None
            if return_weights:
                weights = delta_rule_weights(q, k, beta, g)
        if cache is not None:
            cache.S, cache.z = S.detach(), None if z is None else z.detach()
            cache.seq_len += L
        out = self.W_o(o.transpose(1, 2).reshape(B, L, c.n_heads * c.d_v))
        return AttentionOutput(out, weights)
