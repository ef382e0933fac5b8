"""Checks for chapter 10, DeepSeek Sparse Attention.

    from attnlab.exercises import ch10
    print(ch10.check_prefill_pairs(answer_prefill_pairs))        # an int, query-key pairs
    print(ch10.check_index_scores(answer_index_scores))          # a function (q, w, k) -> I
    print(ch10.check_crossover(answer_crossover))                # an int, tokens of context

Each check compares the answer with :mod:`attnlab.dsa`: ``None`` returns a reminder, a right answer
"✓ ...", a wrong one raises ``AssertionError`` with a hint aimed at the usual slip.
"""

from __future__ import annotations

import dataclasses

import torch

from attnlab import costs
from attnlab.dsa import IndexerConfig, LightningIndexer, crossover_context, layer_cost
from attnlab.exercises._common import as_number, run_check
from attnlab.sizing import MODELS

#: Exercise 1: a causal prefill of this many tokens, each query attending to its top-k.
EXERCISE_1 = {"length": 8192, "top_k": 2048}

#: Exercise 3: DeepSeek-V3.2's shapes with this top-k; the query latent d'_c is 1536.
EXERCISE_3 = {"model": "deepseek-v3.2", "top_k": 1024, "q_lora_rank": 1536}


# ----------------------------------------------------------------------------------------------------
# exercise 1


def expected_prefill_pairs() -> int:
    """sum_{t=1}^{L} min(k, t): query t (counting from 1) sees t tokens, itself included, and keeps k."""
    return costs.selected_pairs(EXERCISE_1["length"], EXERCISE_1["top_k"])


def check_prefill_pairs(answer: object) -> str:
    """Exercise 1: query-key pairs the sparse attention scores in a causal prefill of
    ``EXERCISE_1["length"]`` tokens with top-k ``EXERCISE_1["top_k"]`` (an int)."""
    L, k = EXERCISE_1["length"], EXERCISE_1["top_k"]
    expected = expected_prefill_pairs()

    def check(a: object) -> str:
        value = as_number(a, "the number of pairs")
        assert value != L * k, (
            f"L × k counts {k:,} keys for every query, but the first queries see fewer than {k:,} tokens: "
            "query t keeps min(k, t) of the t tokens it can see"
        )
        assert value != L * (L + 1) // 2, "that is dense causal attention, every query against every earlier token"
        assert value != L * L, "that is attention without the causal mask, and without the top-k"
        assert value != expected - k, "one query short per query: query t sees t tokens, itself included"
        assert value != expected - L, "one too few per query: query t sees t tokens, itself included"
        assert value == expected, "not yet: add min(k, t) over t = 1, ..., L"
        dense = L * (L + 1) // 2
        return (f"{expected:,} pairs = k(k+1)/2 + (L − k) k, against {dense:,} for dense causal attention "
                f"({dense / expected:.2f}× more)")

    return run_check("prefill pairs", answer, check)


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
            }

            def same(a: torch.Tensor, b: torch.Tensor, allowed: torch.Tensor = allowed) -> bool:
                return torch.allclose(a[allowed], b[allowed], atol=1e-9, rtol=1e-9)

            if not same(got, want):
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
