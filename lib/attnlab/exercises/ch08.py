"""Checks for chapter 8, MLA at inference time.

    from attnlab.exercises import ch08
    print(ch08.check_absorbed_scores(answer_absorbed_scores))        # a function (q_nope, w_uk, c_kv) -> scores
    print(ch08.check_absorbed_output(answer_absorbed_output))        # a function (weights, c_kv, w_uv, w_o) -> out
    print(ch08.check_absorbed_step_macs(answer_absorbed_step_macs))  # an int, multiply-adds
    print(ch08.check_prediction_prefill_ratio(prediction_prefill_ratio))  # predict, then run: a float

Exercises 1 and 2 are checked against the plain computation (keys and values rebuilt from the latent) AND
watched while they run: any tensor computed from the cached latents that has a head's key width (exercise 1)
or is a per-token value (exercise 2) fails them, since absorption exists so that those are never built.
Exercise 3 is checked with :func:`attnlab.costs.mla_decode_step_costs`. ``None`` returns a reminder, a right
answer "✓ ...", a wrong one raises ``AssertionError`` with a hint aimed at the usual slip.
"""

from __future__ import annotations

import torch

from attnlab import sizing
from attnlab.costs import mla_decode_step_costs, prefill_flops
from attnlab.exercises._common import DerivedShapeWatch, as_integer, as_number, call_answer, run_check, run_prediction

#: The context length of exercise 3.
STEP_CONTEXT = 4096
#: The prefill length of exercise 4.
PREFILL_LENGTH = 4096

#: Sizes (b, s, t, h, d_h, d_c) of the random cases of exercises 1 and 2. The head width d_h is a prime that
#: divides no other size, so no reshape of the other axes (b s, s h, b s h, ...) can take its width, nor
#: n_h d_h's: a head-width axis in a tensor can only come from W^UK or W^UV. Likewise no such product equals
#: the token count t in a tensor that also has a value-width axis.
CASES = ((1, 1, 5, 2, 7, 4), (2, 3, 5, 4, 11, 6), (1, 2, 9, 3, 13, 8), (3, 1, 8, 1, 5, 4))

WHY_ABSORB = (
    "Absorption exists so that decode never rebuilds per-head {what} from the cache: DeepSeek-V3 would turn "
    "each cached entry of 576 numbers into 128 heads × 128 numbers, for all t cached tokens, at every step, "
    "and read them back. Fold {fold} instead"
)


def _score_cases() -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Random float64 (q_nope (b, s, h, d_h), w_uk (h, d_h, d_c), c_kv (b, t, d_c)) with the sizes of CASES."""
    gen = torch.Generator().manual_seed(8)
    return [(torch.randn(b, s, h, d_h, generator=gen, dtype=torch.float64),
             torch.randn(h, d_h, d_c, generator=gen, dtype=torch.float64),
             torch.randn(b, t, d_c, generator=gen, dtype=torch.float64)) for b, s, t, h, d_h, d_c in CASES]


def key_watch(c_kv: torch.Tensor, n_heads: int, d_h: int) -> DerivedShapeWatch:
    """Fails on any tensor computed from ``c_kv`` with an axis of a head's width d_h (or of n_h d_h): a key,
    or part of one, rebuilt from the latent."""
    return DerivedShapeWatch(
        [c_kv], lambda shape: d_h in shape or n_heads * d_h in shape,
        "your function built per-head keys: a tensor of shape {shape}, computed from c_kv, has a head-width "
        f"(d_h = {d_h}) axis. " + WHY_ABSORB.format(what="keys W^UK_h c_t",
                                                   fold="W^UK_h into the query: q~ = W^UK_h^T q, then q~ · c_t"))


def check_absorbed_scores(answer: object) -> str:
    """Exercise 1: a function (q_nope (b, s, h, d_h), w_uk (h, d_h, d_c), c_kv (b, t, d_c)) -> scores
    (b, s, h, t) with scores[b, s, h, t] = q_nope[b, s, h] · (w_uk[h] @ c_kv[b, t]), computed without
    building the keys: fold w_uk into the query first. Compared with the rebuilt keys in float64, and
    watched (:func:`key_watch`) while it runs."""

    def check(fn: object) -> str:
        assert callable(fn), f"answer should be a function (q_nope, w_uk, c_kv) -> scores, got {type(fn).__name__}"
        cases = _score_cases()
        for q, w, c in cases:
            keys = torch.einsum("btc,hdc->bthd", c, w)  # k_{t,h} = W^UK_h c_t, the keys absorption avoids
            want = torch.einsum("bshd,bthd->bsht", q, keys)
            c_in = c.clone()
            got = call_answer(fn, q.clone(), w.clone(), c_in, watchers=[key_watch(c_in, w.shape[0], w.shape[1])])
            assert isinstance(got, torch.Tensor), f"expected a tensor, got {type(got).__name__}"
            assert tuple(got.shape) == tuple(want.shape), (
                f"scores should have shape (batch, queries, heads, keys) = {tuple(want.shape)}, got {tuple(got.shape)}"
            )
            if not torch.allclose(got.double(), want, rtol=1e-9, atol=1e-9):
                wrong_head = torch.einsum("bshd,bthd->bsht", q, keys.flip(2))
                if torch.allclose(got.double(), wrong_head, rtol=1e-9, atol=1e-9):
                    raise AssertionError("each head must use its own W^UK_h: keep the head index h in both factors")
                raise AssertionError(
                    "the scores differ from q · (W^UK c): fold first, q~ = einsum('bshd,hdc->bshc', q_nope, w_uk), "
                    "then score q~ against c_kv over the latent index c"
                )
        return (f"equal to the scores against rebuilt keys on {len(cases)} random shapes, and no tensor computed "
                "from c_kv ever had a head's width: no key was built")

    return run_check("absorbed scores", answer, check)


# ----------------------------------------------------------------------------------------------------
# exercise 2: the absorbed output path


def _output_cases() -> list[tuple[torch.Tensor, ...]]:
    """Random float64 (weights (b, s, h, t) rows summing to 1, c_kv (b, t, d_c), w_uv (h, d_v, d_c),
    w_o (d_model, h d_v)), with d_v the d_h of CASES and d_model = 2 d_v + 1."""
    gen = torch.Generator().manual_seed(18)
    cases = []
    for b, s, t, h, d_v, d_c in CASES:
        weights = torch.softmax(torch.randn(b, s, h, t, generator=gen, dtype=torch.float64), dim=-1)
        cases.append((weights, torch.randn(b, t, d_c, generator=gen, dtype=torch.float64),
                      torch.randn(h, d_v, d_c, generator=gen, dtype=torch.float64),
                      torch.randn(2 * d_v + 1, h * d_v, generator=gen, dtype=torch.float64)))
    return cases


def value_watch(c_kv: torch.Tensor, t: int, n_heads: int, d_v: int) -> DerivedShapeWatch:
    """Fails on any tensor computed from ``c_kv`` that has both a token axis (t) and a value-width axis (d_v
    or n_h d_v): per-token values W^UV_h c_t rebuilt from the latent."""
    return DerivedShapeWatch(
        [c_kv], lambda shape: t in shape and (d_v in shape or n_heads * d_v in shape),
        "your function built per-head values: a tensor of shape {shape}, computed from c_kv, has a token axis "
        f"(t = {t}) and a value-width axis (d_v = {d_v}). " + WHY_ABSORB.format(
            what="values W^UV_h c_t",
            fold="W^UV_h in after the weighted sum: o~ = Σ_t a_t c_t (latent width), then W^UV_h o~, once per query"))


def _plain_output(weights, c_kv, w_uv, w_o) -> torch.Tensor:
    """The output path with rebuilt values: v_{t,h} = W^UV_h c_t, o_h = Σ_t a_{h,t} v_{t,h}, out = W^O [o_1; ...]."""
    v = torch.einsum("btc,hvc->bthv", c_kv, w_uv)  # (b, t, h, d_v), what absorption avoids
    o = torch.einsum("bsht,bthv->bshv", weights, v)  # (b, s, h, d_v)
    return o.flatten(-2) @ w_o.T  # (b, s, d_model)


def check_absorbed_output(answer: object) -> str:
    """Exercise 2: a function (weights (b, s, h, t), c_kv (b, t, d_c), w_uv (h, d_v, d_c), w_o (d_model, h d_v))
    -> out (b, s, d_model), out = W^O [o_1; ...; o_h] with o_h = Σ_t weights[.., h, t] W^UV_h c_t (DeepSeek-V2
    eqs. 45-47), computed without per-token values: mix the latents first, then apply W^UV_h once per query.
    Compared with the rebuilt values in float64, and watched (:func:`value_watch`) while it runs."""

    def check(fn: object) -> str:
        assert callable(fn), (
            f"answer should be a function (weights, c_kv, w_uv, w_o) -> output, got {type(fn).__name__}"
        )
        cases = _output_cases()
        for weights, c, w_uv, w_o in cases:
            want = _plain_output(weights, c, w_uv, w_o)
            c_in = c.clone()
            h, d_v, _ = w_uv.shape
            got = call_answer(fn, weights.clone(), c_in, w_uv.clone(), w_o.clone(),
                              watchers=[value_watch(c_in, c.shape[1], h, d_v)])
            assert isinstance(got, torch.Tensor), f"expected a tensor, got {type(got).__name__}"
            b, s = weights.shape[:2]
            heads_out = torch.einsum("bsht,btc->bshc", weights, c)
            heads_out = torch.einsum("bshc,hvc->bshv", heads_out, w_uv)  # (b, s, h, d_v)
            if tuple(got.shape) == tuple(heads_out.shape):
                raise AssertionError(f"that is every head's output o_h, shape {tuple(got.shape)}: concatenate the "
                                     "heads "
                                     "(flatten the last two axes) and apply W^O, out = [o_1; ...; o_h] @ w_o.T")
            assert tuple(got.shape) == tuple(want.shape), (
                f"the output should have shape (batch, queries, d_model) = {tuple(want.shape)}, got {tuple(got.shape)}"
            )
            got = got.double()
            if torch.allclose(got, want, rtol=1e-9, atol=1e-9):
                continue
            if torch.allclose(got, heads_out.flatten(-2) @ w_o, rtol=1e-9, atol=1e-9) if w_o.shape[0] == w_o.shape[1] \
                    else False:
                raise AssertionError("W^O maps the heads to d_model: multiply by w_o.T")
            if torch.allclose(got, heads_out.transpose(-1, -2).flatten(-2) @ w_o.T, rtol=1e-9, atol=1e-9):
                raise AssertionError("the heads are concatenated head by head, [o_1; ...; o_h]: flatten (h, d_v), "
                                     "not (d_v, h)")
            raise AssertionError("the output differs from W^O [Σ_t a_{h,t} W^UV_h c_t]_h: mix the latents with the "
                                 "weights over t, apply each head's W^UV_h, concatenate the heads, then W^O")
        return (f"equal to the output through rebuilt values on {len(cases)} random shapes, and no per-token value "
                "was ever built: each head mixed the cached latents, then applied W^UV_h once")

    return run_check("absorbed output path", answer, check)


def check_absorbed_step_macs(answer: object) -> str:
    """Exercise 3: multiply-adds of one absorbed decode step of one DeepSeek-V3 layer at STEP_CONTEXT cached
    tokens, leaving out the new token's own projections: fold n_h d_c (d_h + d_v), scores n_h t (d_c + d_h^R),
    weighted sum n_h t d_c."""
    spec = sizing.MODELS["deepseek-v3"]
    d_c, d_h_rope = sizing.mla_dims(spec)
    costs = mla_decode_step_costs(spec.attention_shape(), STEP_CONTEXT)["absorbed"]
    expected, parts = costs["macs"], costs["parts"]

    def check(a: object) -> str:
        value = as_integer(a, "the number of multiply-adds")
        assert value != expected - parts["fold W^UK, W^UV"], (
            "add the fold: W^UK_i^T q and W^UV_i after the weighted sum cost n_h d_c (d_h + d_v), once per step"
        )
        h, t = spec.n_heads, STEP_CONTEXT
        assert value != expected - h * t * d_h_rope, "the scores also include the RoPE part: n_h t (d_c + d_h^R)"
        assert value != 2 * expected, "count multiply-adds, not FLOPs (one multiply-add is 2 FLOPs)"
        assert value == expected, "not yet: fold + scores + weighted sum, one layer, one new token"
        return (f"{expected:,} = {parts['fold W^UK, W^UV']:,} (fold) + {parts['scores']:,} (scores) + "
                f"{parts['weighted sum']:,} (weighted sum)")

    return run_check("absorbed decode step", answer, check)


# ----------------------------------------------------------------------------------------------------
# exercise 4: predict, then run


def check_prediction_prefill_ratio(prediction: object) -> str:
    """Exercise 4, predict then run: in a causal prefill of PREFILL_LENGTH tokens through one DeepSeek-V3
    layer, how many times the attention-core FLOPs of the naive form (keys and values expanded once per token)
    does the absorbed form spend? Right within 25% of :func:`attnlab.costs.prefill_flops`'s ratio."""

    def judge(guess: object) -> tuple[bool, str]:
        value = as_number(guess, "your prediction")
        assert value > 0, f"a ratio of FLOPs is positive, got {value}"
        s = sizing.MODELS["deepseek-v3"].attention_shape()
        L = PREFILL_LENGTH
        naive, absorbed = prefill_flops("mla_naive", s, L), prefill_flops("mla_absorbed", s, L)
        ratio = absorbed / naive
        right = abs(value - ratio) <= 0.25 * ratio
        slip = ("Absorption does not save arithmetic everywhere. " if value < 1 else "")
        pairs = L * (L + 1) // 2
        return right, (
            f"{slip}Absorbed spends {ratio:.2f}× the FLOPs of naive: {absorbed / 1e12:.2f} against "
            f"{naive / 1e12:.2f} TFLOP over {pairs:,} query-key pairs. Per pair and head, naive scores a "
            f"{s.head_dim + s.qk_rope_head_dim}-wide key and mixes a {s.v_head_dim}-wide value (2 × "
            f"{s.head_dim + s.qk_rope_head_dim + s.v_head_dim} FLOPs), absorbed scores and mixes "
            f"{s.kv_lora_rank}-wide latents (2 × {2 * s.kv_lora_rank + s.qk_rope_head_dim}). In a prefill every "
            "token is a query, so expanding K and V once per token is cheap next to the pairs; at decode one "
            "query would re-expand all t tokens, and absorption wins. DeepSeek's code prefills in the expanded "
            "form and decodes absorbed."
        )

    return run_prediction("prefill FLOPs, absorbed / naive", prediction, judge)
