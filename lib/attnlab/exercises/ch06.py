"""Checks for chapter 6, Grouped-query attention.

    from attnlab.exercises import ch06
    print(ch06.check_mean_pool(answer_mean_pool))              # a function (w, n_heads, n_kv_heads) -> w'
    print(ch06.check_gqa_attention(answer_gqa_attention))      # a function (q, k, v) -> out
    print(ch06.check_prediction_gqa_flops(prediction_gqa_flops))  # predict, then run: a float

Each check compares the answer with :mod:`attnlab.gqa` or :mod:`attnlab.costs`; the functions the answers
rewrite (``mha_to_gqa``, ``grouped_attention``, ``repeat_kv``) are forbidden in them. ``None`` returns a
reminder, a right answer "✓ ...", a wrong one raises ``AssertionError`` with a hint aimed at the usual slip.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from attnlab import costs, gqa, sizing
from attnlab.exercises._common import Shortcut, as_number, call_answer, run_check, run_prediction
from attnlab.gqa import AttentionConfig, GroupedQueryAttention, grouped_attention, mha_to_gqa

#: Exercise 1 writes the conversion.
POOL_SHORTCUT = Shortcut("attnlab.gqa.mha_to_gqa", (gqa.mha_to_gqa,),
                         "view the rows as (n_kv_heads, r, head_dim, d_model) and average over r yourself")
#: Exercise 2 writes the grouped attention.
GQA_SHORTCUT = Shortcut("a library grouped attention (grouped_attention, repeat_kv or scaled_dot_product_attention)",
                        (gqa.grouped_attention, gqa.repeat_kv, F.scaled_dot_product_attention),
                        "view the query heads as (n_kv_heads, r) groups and let broadcasting share K and V")

#: (d_model, n_heads, n_kv_heads) the mean-pool check converts.
POOL_CASES: tuple[tuple[int, int, int], ...] = (
    (32, 8, 8), (32, 8, 4), (32, 8, 2), (32, 8, 1), (48, 12, 6), (48, 12, 4), (48, 12, 3), (24, 6, 2),
)


def _strided(w: torch.Tensor, n_heads: int, n_kv: int) -> torch.Tensor:
    """The usual slip: grouping heads h, h + n_kv, h + 2 n_kv, ... instead of neighbours."""
    d = w.shape[0] // n_heads
    return w.view(n_heads // n_kv, n_kv, d, -1).mean(dim=0).reshape(n_kv * d, -1)


def check_mean_pool(answer: object) -> str:
    """Exercise 1: a function ``(w, n_heads, n_kv_heads) -> pooled`` that mean-pools one K (or V)
    projection weight the way the GQA paper converts MHA (Ainslie et al. 2023, sec. 2.1).

    w: (n_heads * head_dim, d_model), rows h*head_dim .. (h+1)*head_dim - 1 belong to head h;
    pooled: (n_kv_heads * head_dim, d_model), KV head g = mean of heads g*r .. (g+1)*r - 1, r = n_heads /
    n_kv_heads. Compared with :func:`attnlab.gqa.mha_to_gqa` on random MHA layers.
    """

    def check(fn: object) -> str:
        assert callable(fn), f"answer should be a function (w, n_heads, n_kv_heads) -> tensor, got {type(fn).__name__}"
        for d_model, n_heads, n_kv in POOL_CASES:
            with torch.random.fork_rng(devices=[]):  # fixed weights, and the learner's RNG left alone
                torch.manual_seed(6 + n_heads * 16 + n_kv)
                layer = GroupedQueryAttention(AttentionConfig(d_model, n_heads, n_heads, rope=False)).double()
                want = mha_to_gqa(layer, n_kv).w_k.weight.detach()
            w = layer.w_k.weight.detach().clone()
            got = call_answer(fn, w.clone(), n_heads, n_kv, shortcuts=[POOL_SHORTCUT])
            assert isinstance(got, torch.Tensor), f"expected a tensor, got {type(got).__name__}"
            assert got.shape == want.shape, (
                f"with w {tuple(w.shape)}, n_heads={n_heads}, n_kv_heads={n_kv} the result should be "
                f"{tuple(want.shape)} (n_kv_heads * head_dim rows, d_model columns), got {tuple(got.shape)}"
            )
            got = got.detach().double()
            if torch.allclose(got, want, atol=1e-10):
                continue
            r = n_heads // n_kv
            if torch.allclose(got, want * r, atol=1e-10):
                raise AssertionError(f"that is the sum of each group's {r} heads; mean-pool divides by r = {r}")
            if torch.allclose(got, _strided(w, n_heads, n_kv), atol=1e-10):
                raise AssertionError(
                    f"you grouped heads h, h + {n_kv}, h + {2 * n_kv}, ...; a group is {r} NEIGHBOURING heads: "
                    f"KV head g serves query heads g*{r} .. g*{r} + {r - 1} (view as (n_kv, r, head_dim, d_model))"
                )
            raise AssertionError(f"with n_heads={n_heads}, n_kv_heads={n_kv} the values differ from mha_to_gqa's "
                                 "mean-pooled weight")
        return f"matches mha_to_gqa's mean-pooling on {len(POOL_CASES)} layers, from n_kv = n_heads down to 1"

    return run_check("mean-pool conversion", answer, check)


# ----------------------------------------------------------------------------------------------------
# exercise 2: grouped attention


def _gqa_cases() -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Random float64 (q (b, h, n, d), k, v (b, g, n, d)) with 1 < g < h, so a wrong grouping shows."""
    gen = torch.Generator().manual_seed(16)
    shapes = [(1, 4, 5, 3, 2), (2, 6, 7, 4, 3), (1, 8, 6, 5, 2), (2, 6, 4, 8, 2)]
    return [(torch.randn(b, h, n, d, generator=gen, dtype=torch.float64),
             torch.randn(b, g, n, d, generator=gen, dtype=torch.float64),
             torch.randn(b, g, n, d, generator=gen, dtype=torch.float64)) for b, h, n, d, g in shapes]


def check_gqa_attention(answer: object) -> str:
    """Exercise 2: a function ``(q, k, v) -> out`` for causal grouped-query attention: q (b, n_heads, n, d),
    k, v (b, n_kv_heads, n, d), out (b, n_heads, n, d), query head h reading KV head h // r with
    r = n_heads / n_kv_heads (neighbouring heads share, as in the GQA paper and :func:`attnlab.gqa.mha_to_gqa`).
    Compared with :func:`attnlab.gqa.grouped_attention`, which the answer may not call (nor ``repeat_kv`` or
    ``F.scaled_dot_product_attention``)."""

    def check(fn: object) -> str:
        assert callable(fn), f"answer should be a function (q, k, v) -> out, got {type(fn).__name__}"
        cases = _gqa_cases()
        for q, k, v in cases:
            got = call_answer(fn, q.clone(), k.clone(), v.clone(), shortcuts=[GQA_SHORTCUT])
            want = grouped_attention(q, k, v, causal=True)[0]
            h, g = q.shape[1], k.shape[1]
            assert isinstance(got, torch.Tensor), f"return a tensor (b, n_heads, n, d), got {type(got).__name__}"
            assert tuple(got.shape) == tuple(want.shape), (
                f"for q {tuple(q.shape)} and k, v {tuple(k.shape)} the output has shape {tuple(want.shape)}, "
                f"got {tuple(got.shape)}"
            )
            got = got.double()
            if torch.allclose(got, want, atol=1e-10, rtol=1e-9):
                continue
            r = h // g
            strided = torch.arange(h) % g  # head h -> KV head h % g: the usual slip
            if torch.allclose(got, grouped_attention(q, k[:, strided], v[:, strided], causal=True)[0], atol=1e-10):
                raise AssertionError(f"query head h reads KV head h // r (r = {r}: heads 0..{r - 1} share KV head 0), "
                                     f"not h % n_kv_heads; view q as (b, n_kv_heads, r, n, d)")
            if torch.allclose(got, grouped_attention(q, k, v, causal=False)[0], atol=1e-10):
                raise AssertionError("the attention is causal: mask the keys j > i before the softmax")
            raise AssertionError(f"for q {tuple(q.shape)} and k, v {tuple(k.shape)} the output differs from "
                                 "softmax(q k^T / √d + M) v with query head h reading KV head h // r")
        return (f"equals grouped_attention on {len(cases)} cases: each KV head serves r neighbouring query heads, "
                "with no copy of K or V needed")

    return run_check("grouped-query attention", answer, check)


# ----------------------------------------------------------------------------------------------------
# exercise 3: predict, then run

#: Exercise 3: Llama-3-8B's attention shape (32 query heads, 8 KV heads) at this context, against MHA.
DECODE = {"model": "llama-3-8b", "context": 8192}


def check_prediction_gqa_flops(prediction: object) -> str:
    """Exercise 3, predict then run: one decode step of Llama-3-8B's attention core at 8,192 tokens; what
    fraction of MHA's attention FLOPs does GQA with 8 KV heads spend? Right within 0.1
    (:func:`attnlab.costs.decode_attention_flops`)."""

    def judge(guess: object) -> tuple[bool, str]:
        value = as_number(guess, "your prediction")
        assert value > 0, f"a ratio of FLOPs is positive, got {value}"
        e = DECODE
        gqa = sizing.MODELS[e["model"]].attention_shape()
        mha = dataclasses.replace(gqa, n_kv_heads=gqa.n_heads)
        flops = {"gqa": costs.decode_attention_flops("gqa", gqa, e["context"]),
                 "mha": costs.decode_attention_flops("mha", mha, e["context"])}
        cache = {"gqa": costs.cache_bytes("gqa", gqa, e["context"], per_layer=True),
                 "mha": costs.cache_bytes("mha", mha, e["context"], per_layer=True)}
        ratio = flops["gqa"] / flops["mha"]
        right = abs(value - ratio) <= 0.1
        slip = (f"{value:g} is the cache's share, not the arithmetic's. "
                if abs(value - cache["gqa"] / cache["mha"]) < 0.05 else "")
        return right, (
            f"{slip}GQA spends {ratio:.2f} of MHA's attention FLOPs ({flops['gqa']:,} against {flops['mha']:,} per "
            f"layer): each of the {gqa.n_heads} query heads still scores every cached key and mixes every value. What "
            f"shrinks is the cache read: {cache['gqa'] / 2**20:.0f} MiB against {cache['mha'] / 2**20:.0f} MiB per "
            "layer "
            f"in bfloat16, {cache['mha'] / cache['gqa']:.0f}× less. Decode is limited by memory traffic, so that is "
            "where GQA's speed comes from."
        )

    return run_prediction("GQA / MHA decode FLOPs", prediction, judge)
