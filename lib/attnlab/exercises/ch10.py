"""Checks for chapter 10, DeepSeek Sparse Attention.

    from attnlab.exercises import ch10
    print(ch10.check_causal_topk(answer_causal_topk))            # a function (scores, k) -> indices
    print(ch10.check_index_scores(answer_index_scores))          # a function (q, w, k) -> I
    print(ch10.check_crossover(answer_crossover))                # an int, tokens of context
    print(ch10.check_prediction_decode_speedup(prediction_decode_speedup))  # predict, then run: a float

Each check compares the answer with :mod:`attnlab.dsa`: ``None`` returns a reminder, a right answer
"✓ ...", a wrong one raises ``AssertionError`` with a hint aimed at the usual slip.
"""

from __future__ import annotations

import dataclasses

import torch

from attnlab import costs, dsa
from attnlab.dsa import IndexerConfig, LightningIndexer, crossover_context, layer_cost, topk_indices
from attnlab.exercises._common import Shortcut, as_number, call_answer, run_check, run_prediction
from attnlab.sizing import MODELS

#: Exercise 1 writes the selection, so it may not call the library's.
TOPK_SHORTCUT = Shortcut("attnlab.dsa.topk_indices", (dsa.topk_indices, dsa._stable_topk),
                         "mask the future, take torch.topk, and pad with -1 yourself")

#: Exercise 3: DeepSeek-V3.2's shapes with this top-k; the query latent d'_c is 1536.
EXERCISE_3 = {"model": "deepseek-v3.2", "top_k": 1024, "q_lora_rank": 1536}


# ----------------------------------------------------------------------------------------------------
# exercise 1: causal top-k with padding

#: Exercise 1's reminder of what the selection costs: a causal prefill of this many tokens with this top-k.
PREFILL = {"length": 8192, "top_k": 2048}

#: Exercise 1's cases: (queries T, keys S, k), the T queries being the last T positions of the S keys.
TOPK_CASES = ((6, 6, 3), (4, 9, 3), (5, 5, 8), (1, 7, 4), (8, 8, 1), (3, 10, 10))


def _topk_cases() -> list[tuple[torch.Tensor, int]]:
    """Random float64 index scores (T, S), no ties, with the k of :data:`TOPK_CASES`."""
    g = torch.Generator().manual_seed(20)
    return [(torch.randn(t, s, generator=g, dtype=torch.float64), k) for t, s, k in TOPK_CASES]


def reference_topk(scores: torch.Tensor, k: int) -> torch.Tensor:
    """:func:`attnlab.dsa.topk_indices` of ``scores`` (T, S) with the future masked: (T, min(k, S)), -1 padded."""
    t, s = scores.shape
    visible = torch.arange(s)[None, :] <= torch.arange(s - t, s)[:, None]  # (T, S): key j <= query position
    return topk_indices(scores.masked_fill(~visible, float("-inf"))[None], k)[0]


def check_causal_topk(answer: object) -> str:
    """Exercise 1: a function ``(scores, k) -> indices``: ``scores`` (T, S) are raw index scores of T queries,
    the last T positions of S keys (query t sits at position S - T + t and sees keys 0 .. S - T + t);
    ``indices`` (T, min(k, S)) int64 holds each query's k best VISIBLE keys, best first, and -1 in the
    slots a query cannot fill (it sees fewer than k tokens). Compared with :func:`attnlab.dsa.topk_indices`,
    which the answer may not call; ``torch.topk`` is fine."""

    def check(fn: object) -> str:
        assert callable(fn), f"answer should be a function (scores, k) -> indices, got {type(fn).__name__}"
        cases = _topk_cases()
        for scores, k in cases:
            got = call_answer(fn, scores.clone(), k, shortcuts=[TOPK_SHORTCUT])
            want = reference_topk(scores, k)
            t, s = scores.shape
            assert isinstance(got, torch.Tensor), f"return a tensor of indices, got {type(got).__name__}"
            assert not got.is_floating_point(), f"indices are integers (torch.long), got {got.dtype}"
            assert tuple(got.shape) == tuple(want.shape), (
                f"for {t} queries over {s} keys and k = {k} the indices have shape (T, min(k, S)) = "
                f"{tuple(want.shape)}, got {tuple(got.shape)}"
            )
            got = got.long()
            if torch.equal(got, want):
                continue
            positions = torch.arange(s - t, s)[:, None]  # (T, 1)
            future = (got > positions) & (got >= 0)
            if future.any():
                row = int(future.any(-1).nonzero()[0])
                raise AssertionError(
                    f"query {row} (position {s - t + row}) selected key {int(got[row][future[row]][0])}, in its "
                    "future: "
                    "set the scores of keys j > position to -inf before taking the top k"
                )
            short = want.eq(-1)
            if short.any() and not torch.equal(got.eq(-1), short):
                row = int(short.any(-1).nonzero()[0])
                raise AssertionError(
                    f"query {row} sees only {s - t + row + 1} token{'s' if s - t + row else ''}, fewer than k = {k}: "
                    "its remaining slots are -1 "
                    f"(padding), expected {want[row].tolist()}, got {got[row].tolist()}"
                )
            same_sets = torch.equal(got.sort(-1).values, want.sort(-1).values)
            if same_sets:
                raise AssertionError("the right keys in the wrong order: best first (largest score first), "
                                     "padding last")
            raise AssertionError(f"for {t} queries over {s} keys and k = {k} expected\n{want.tolist()}\n"
                                 f"got\n{got.tolist()}")
        L, k = PREFILL["length"], PREFILL["top_k"]
        pairs, dense = costs.selected_pairs(L, k), L * (L + 1) // 2
        return (f"matches topk_indices on {len(cases)} cases, padding included. Each query keeps min(k, t + 1) keys, "
                f"so a causal prefill of {L:,} tokens with k = {k:,} scores {pairs:,} pairs = k(k+1)/2 + (L − k) k, "
                f"{dense / pairs:.2f}× fewer than dense causal attention's {dense:,}")

    return run_check("causal top-k with padding", answer, check)


# ----------------------------------------------------------------------------------------------------
# exercise 2


def _score_cases() -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Random float64 (q (T, H, d), w (T, H), k (S, d)) with T <= S, some with T < S."""
    g = torch.Generator().manual_seed(10)
    cases = []
    for t, s, h, d in [(3, 7, 2, 4), (6, 6, 4, 8), (1, 5, 3, 16), (9, 9, 1, 2)]:
        q = torch.randn(t, h, d, generator=g, dtype=torch.float64)
        w = torch.randn(t, h, generator=g, dtype=torch.float64)
        k = torch.randn(s, d, generator=g, dtype=torch.float64)
        cases.append((q, w, k))
    return cases


def _reference_scores(q: torch.Tensor, w: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The library's I (T, S) without its (d^I)^-0.5 factor, and where it is defined (the causal part)."""
    t, h, d = q.shape
    config = IndexerConfig(d_model=4, q_lora_rank=None, index_n_heads=h, index_head_dim=d, rope_head_dim=0,
                           index_topk=1, hadamard=False)
    scores = LightningIndexer(config).double().score(q[None], w[None], k[None])[0] / config.softmax_scale
    return scores, torch.isfinite(scores)


def check_index_scores(answer: object) -> str:
    """Exercise 2: a function ``(q, w, k) -> I`` with q (T, H, d), w (T, H), k (S, d) and
    I[t, s] = sum_j w[t, j] ReLU(q[t, j] · k[s]), shape (T, S), no scale and no mask.

    Compared with :meth:`attnlab.dsa.LightningIndexer.score` (divided by its (d^I)^-0.5) on the causal
    entries of random float64 inputs."""

    def check(fn: object) -> str:
        assert callable(fn), f"answer should be a function (q, w, k) -> I, got {type(fn).__name__}"
        cases = _score_cases()
        for q, w, k in cases:
            try:
                got = fn(q.clone(), w.clone(), k.clone())
            except AssertionError:
                raise
            except Exception as err:  # a learner's bug: report it as a failed check
                raise AssertionError(f"calling your function on q {tuple(q.shape)}, w {tuple(w.shape)}, "
                                     f"k {tuple(k.shape)} raised {type(err).__name__}: {err}") from err
            want, allowed = _reference_scores(q, w, k)
            assert isinstance(got, torch.Tensor), f"return a tensor (T, S), got {type(got).__name__}"
            assert tuple(got.shape) == tuple(want.shape), (
                f"for q {tuple(q.shape)} and k {tuple(k.shape)} the scores have shape {tuple(want.shape)} "
                f"(queries, keys), yours {tuple(got.shape)}"
            )
            got = got.to(torch.float64)
            logits = torch.einsum("tjd,sd->tjs", q, k)  # q[t, j] · k[s]
            variants = {
                "no_relu": torch.einsum("tj,tjs->ts", w, logits),
                "relu_outside": torch.relu(torch.einsum("tj,tjs->ts", w, logits)),
                "no_weights": torch.relu(logits).sum(dim=1),
                "softmax": torch.einsum("tj,tjs->ts", w, torch.softmax(logits, dim=-1)),
                "raw_sum": logits.sum(dim=1),
            }

            def same(a: torch.Tensor, b: torch.Tensor, allowed: torch.Tensor = allowed) -> bool:
                return torch.allclose(a[allowed], b[allowed], atol=1e-9, rtol=1e-9)

            if not same(got, want):
                assert not same(got, variants["raw_sum"]), (
                    "that adds the raw dot products over the heads, as the draft does: apply ReLU to each head's "
                    "q[t, j] · k[s] and weight it by w[t, j] before summing"
                )
                assert not same(got, variants["no_relu"]), (
                    "negative dot products must not count: apply ReLU to each head's q[t, j] · k[s] first"
                )
                assert not same(got, variants["relu_outside"]), (
                    "ReLU goes on each head's dot product, before the weights: sum_j w ReLU(q·k), not ReLU(sum_j ...)"
                )
                assert not same(got, variants["no_weights"]), "weight head j's ReLU(q·k) by w[t, j] before summing"
                assert not same(got, variants["softmax"]), "the indexer uses ReLU, not a softmax over keys"
                assert not same(got, want * q.shape[-1] ** -0.5), (
                    "leave out the (d^I)^-0.5 factor: the exercise asks for the sum alone"
                )
                diff = float((got - want)[allowed].abs().max())
                raise AssertionError(f"the scores differ from I[t, s] = sum_j w[t, j] ReLU(q[t, j] · k[s]) by up to "
                                     f"{diff:.2e}")
        return (f"I[t, s] = Σ_j w[t, j] ReLU(q[t, j] · k[s]) equals LightningIndexer.score on {len(cases)} "
                "random cases")

    return run_check("lightning indexer scores", answer, check)


# ----------------------------------------------------------------------------------------------------
# exercise 3


def exercise_3_constants() -> dict[str, int]:
    """C_attn, C_idx and F_proj (FLOPs) of :func:`attnlab.dsa.layer_cost` for DeepSeek-V3.2's shapes, from
    :mod:`attnlab.costs`: 2 n_h (2 d_c + d_h^R), 2 H^I d^I + 2 H^I and 2 (d'_c H^I d^I + d d^I + d H^I)."""
    shape = dataclasses.replace(MODELS[EXERCISE_3["model"]].attention_shape(), q_lora_rank=EXERCISE_3["q_lora_rank"])
    return {
        "C_attn": 2 * costs.macs_per_cached_token("mla", shape),
        "C_idx": 2 * costs.indexer_macs_per_cached_token(shape),
        "F_proj": 2 * costs.indexer_projection_macs(shape),
    }


def expected_crossover() -> int:
    """The shortest context L at which DSA's decode FLOPs are below dense MLA's (top-k of EXERCISE_3)."""
    return crossover_context(MODELS[EXERCISE_3["model"]], EXERCISE_3["top_k"], "decode_flops",
                             q_lora_rank=EXERCISE_3["q_lora_rank"])


def check_crossover(answer: object) -> str:
    """Exercise 3: the shortest context length (an int) at which one decoded token costs fewer FLOPs with
    DSA (top-k ``EXERCISE_3["top_k"]``) than with dense MLA, in one layer of DeepSeek-V3.2."""
    k = EXERCISE_3["top_k"]
    c = exercise_3_constants()
    expected = expected_crossover()
    no_proj = c["C_attn"] * k // (c["C_attn"] - c["C_idx"]) + 1

    def check(a: object) -> str:
        value = as_number(a, "the context length")
        assert value != k, (
            f"at L = k = {k:,} DSA attends to every token, like dense MLA, and pays for the indexer on top"
        )
        assert value != no_proj, (
            "the indexer also runs its projections once per token (F_proj), which the longer context must pay back"
        )
        assert value != expected - 1, (
            "at that length the two cost the same or DSA still costs more: the answer is the first L where DSA "
            "is strictly cheaper, floor(...) + 1"
        )
        assert value == expected, (
            "not yet: solve C_attn L > F_proj + C_idx L + C_attn k for the smallest whole L"
        )
        cost = layer_cost(MODELS[EXERCISE_3["model"]], expected, k)
        return (f"L* = {expected:,} tokens: there dense MLA spends {cost['decode_flops_dense']:,} FLOPs per decoded "
                f"token and DSA {cost['decode_flops_dsa']:,}")

    return run_check("crossover context", answer, check)


# ----------------------------------------------------------------------------------------------------
# exercise 4: predict, then run

#: Exercise 4: DeepSeek-V3.2 decoding at this context with its own top-k.
SPEEDUP = {"model": "deepseek-v3.2", "context": 128 * 1024, "top_k": 2048}


def check_prediction_decode_speedup(prediction: object) -> str:
    """Exercise 4, predict then run: how many times fewer FLOPs one decoded token costs with DSA than with
    dense MLA, in one DeepSeek-V3.2 layer at 128K tokens of context, top-k 2048
    (:func:`attnlab.dsa.layer_cost`). Right within 25%."""

    def judge(guess: object) -> tuple[bool, str]:
        value = as_number(guess, "your prediction")
        assert value > 0, f"a ratio of FLOPs is positive, got {value}"
        e = SPEEDUP
        spec = MODELS[e["model"]]
        cost = layer_cost(spec, e["context"], e["top_k"])
        ratio = cost["decode_flops_dense"] / cost["decode_flops_dsa"]
        naive = e["context"] / e["top_k"]
        shape = spec.attention_shape()
        c_attn, c_idx = costs.macs_per_cached_token("mla", shape), costs.indexer_macs_per_cached_token(shape)
        right = abs(value - ratio) <= 0.25 * ratio
        slip = (f"{naive:.0f}× = L / k counts the attention alone. " if abs(value - naive) <= 0.25 * naive else "")
        return right, (
            f"{slip}DSA spends {ratio:.1f}× fewer FLOPs: dense {cost['decode_flops_dense'] / 1e9:.2f} GFLOP, DSA "
            f"{cost['decode_flops_dsa'] / 1e9:.2f} GFLOP, of which the indexer takes "
            f"{cost['decode_flops_indexer'] / 1e9:.2f} (it still scores all {e['context']:,} tokens) and the sparse "
            f"attention {cost['decode_flops_sparse'] / 1e9:.2f} (its {e['top_k']:,} tokens). The indexer is cheap per "
            f"token ({c_idx:,} multiply-adds against MLA's {c_attn:,}), but it is O(L): however long the context, "
            f"DSA's decode speedup stays below {c_attn / c_idx:.1f}×."
        )

    return run_prediction("DSA decode speedup at 128K", prediction, judge)
