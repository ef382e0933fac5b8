"""Checks for chapter 8, MLA at inference time.

    from attnlab.exercises import ch08
    print(ch08.check_absorbed_scores(answer_absorbed_scores))        # a function (q_nope, w_uk, c_kv) -> scores
    print(ch08.check_absorbed_query_width(answer_absorbed_query_width))  # an int
    print(ch08.check_absorbed_step_macs(answer_absorbed_step_macs))  # an int, multiply-adds

Each check compares the answer with the plain computation (keys rebuilt from the latent) or with
:func:`attnlab.costs.mla_decode_step_costs`: ``None`` returns a reminder, a right answer "✓ ...", a
wrong one raises ``AssertionError`` with a hint aimed at the usual slip.
"""

from __future__ import annotations

import torch

from attnlab import sizing
from attnlab.costs import mla_decode_step_costs
from attnlab.exercises._common import as_integer, run_check

#: The context length of exercise 3.
STEP_CONTEXT = 4096


def _score_cases() -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Random float64 (q_nope (b, s, h, d_h), w_uk (h, d_h, d_c), c_kv (b, t, d_c)) with all sizes distinct."""
    gen = torch.Generator().manual_seed(8)
    cases = []
    for b, s, t, h, d_h, d_c in ((1, 1, 5, 2, 3, 4), (2, 3, 7, 4, 6, 5), (1, 4, 4, 3, 8, 16), (3, 1, 9, 1, 2, 7)):
        cases.append((torch.randn(b, s, h, d_h, generator=gen, dtype=torch.float64),
                      torch.randn(h, d_h, d_c, generator=gen, dtype=torch.float64),
                      torch.randn(b, t, d_c, generator=gen, dtype=torch.float64)))
    return cases


def check_absorbed_scores(answer: object) -> str:
    """Exercise 1: a function (q_nope (b, s, h, d_h), w_uk (h, d_h, d_c), c_kv (b, t, d_c)) -> scores
    (b, s, h, t) with scores[b, s, h, t] = q_nope[b, s, h] · (w_uk[h] @ c_kv[b, t]), computed without
    building the keys: fold w_uk into the query first. Compared with the rebuilt keys in float64."""

    def check(fn: object) -> str:
        assert callable(fn), f"answer should be a function (q_nope, w_uk, c_kv) -> scores, got {type(fn).__name__}"
        cases = _score_cases()
        for q, w, c in cases:
            keys = torch.einsum("btc,hdc->bthd", c, w)  # k_{t,h} = W^UK_h c_t, the keys absorption avoids
            want = torch.einsum("bshd,bthd->bsht", q, keys)
            try:
                got = fn(q.clone(), w.clone(), c.clone())
            except Exception as err:
                raise AssertionError(f"calling your function with q_nope {tuple(q.shape)}, w_uk {tuple(w.shape)}, "
                                     f"c_kv {tuple(c.shape)} raised {type(err).__name__}: {err}") from err
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
        return f"equal to the scores against rebuilt keys on {len(cases)} random shapes, without building any key"

    return run_check("absorbed scores", answer, check)


def check_absorbed_query_width(answer: object) -> str:
    """Exercise 2: in absorbed mode, how many numbers wide is one head's query for DeepSeek-V3, scoring the
    cached [c^KV; k^R]? Expected d_c + d_h^R = 512 + 64."""
    spec = sizing.MODELS["deepseek-v3"]
    d_c, d_h_rope = sizing.mla_dims(spec)
    expected = d_c + d_h_rope

    def check(a: object) -> str:
        value = as_integer(a, "the query width")
        assert value != spec.head_dim + d_h_rope, (
            f"{value} = d_h + d_h^R is the query width WITHOUT absorption; folding W^UK_i into the query maps its "
            f"{spec.head_dim} content numbers to the latent's width"
        )
        assert value != d_c, "that is the content part alone; the query also keeps its decoupled RoPE part q^R"
        assert value != spec.n_heads * expected, "that is all heads together; the question asks for one head"
        assert value == expected, "not yet: the absorbed query scores [c^KV; k^R], so it has their width"
        plain = spec.head_dim + d_h_rope
        return f"{expected} = d_c + d_h^R = {d_c} + {d_h_rope}, {expected / plain:g}× the {plain} of the plain query"

    return run_check("absorbed query width", answer, check)


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
