"""Checks for chapter 5, Multi-query attention.

    from attnlab.exercises import ch05
    print(ch05.check_prediction_mqa_parameters(prediction_mqa_parameters))  # predict, then run: a float
    print(ch05.check_mqa_attention(answer_mqa_attention))                    # a function (q, k, v) -> out
    print(ch05.check_cache_dominates(answer_cache_dominates))                # a pair of ints, batch sizes

Each check compares the answer with :mod:`attnlab.sizing` or :mod:`attnlab.gqa`: ``None`` returns a
reminder, a right answer "✓ ...", a wrong one raises ``AssertionError`` with a hint aimed at the usual slip.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from attnlab import attention, gqa, sizing
from attnlab.exercises._common import Shortcut, as_number, call_answer, run_check, run_prediction
from attnlab.gqa import AttentionConfig, GroupedQueryAttention, grouped_attention

#: Exercise 2 writes the attention, so the library's may not do it.
MQA_SHORTCUT = Shortcut("a library attention (grouped_attention, repeat_kv, attention_matrix or "
                        "scaled_dot_product_attention)",
                        (gqa.grouped_attention, gqa.repeat_kv, attention.attention_matrix,
                         F.scaled_dot_product_attention),
                        "write softmax(q k^T / √d + M) v yourself; broadcasting shares the one K/V head")

#: Exercise 1's layers: this width and head count, MHA against MQA.
PARAMS_EXPERIMENT = {"d_model": 512, "n_heads": 8}


def layer_parameters() -> dict[str, int]:
    """Parameters of one MHA and one MQA :class:`~attnlab.gqa.GroupedQueryAttention` of PARAMS_EXPERIMENT's
    shape, counted on the layers themselves, and the numbers each caches per token."""
    e = PARAMS_EXPERIMENT
    out = {}
    for name, n_kv in (("mha", e["n_heads"]), ("mqa", 1)):
        config = AttentionConfig(e["d_model"], e["n_heads"], n_kv)
        with torch.device("meta"):  # shapes only: no memory, no random numbers drawn
            layer = GroupedQueryAttention(config)
        out[name] = sum(p.numel() for p in layer.parameters())
        out[f"{name}_cache"] = config.cache_elements_per_token()
    return out


def check_prediction_mqa_parameters(prediction: object) -> str:
    """Exercise 1, predict then run: how many times the parameters of an MQA layer does the MHA layer of the
    same shape (d_model 512, 8 heads) have? Right within 10% of the counted ratio."""

    def judge(guess: object) -> tuple[bool, str]:
        value = as_number(guess, "your prediction")
        assert value > 0, f"a ratio of parameter counts is positive, got {value}"
        m, e = layer_parameters(), PARAMS_EXPERIMENT
        ratio, cache_ratio = m["mha"] / m["mqa"], m["mha_cache"] / m["mqa_cache"]
        right = abs(value - ratio) <= 0.1 * ratio
        slip = (f"{cache_ratio:.0f}× is what the CACHE shrinks by, not the weights. "
                if abs(value - cache_ratio) < 0.5 else "")
        d, h = e["d_model"], e["n_heads"]
        return right, (
            f"{slip}Counted: MHA {m['mha']:,} parameters, MQA {m['mqa']:,}, {ratio:.2f}×. Only W^K and W^V shrink, "
            f"from {d}×{d} to {d}×{d // h} each; W^Q and W^O stay {d}×{d}. The cache shrinks {cache_ratio:.0f}×. A "
            "whole model shrinks far less, since its MLP and embeddings stay the same; still, to compare quality "
            "fairly, Shazeer (2019) widened the MQA model's MLP until the parameter counts matched."
        )

    return run_prediction("MHA / MQA parameters", prediction, judge)


def _cases() -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Random float64 (q, k, v) with one K/V head: (b, h, n, d) and (b, 1, n, d)."""
    gen = torch.Generator().manual_seed(5)
    shapes = [(1, 4, 5, 8), (2, 8, 7, 4), (3, 3, 1, 6), (2, 6, 11, 16)]
    return [(torch.randn(b, h, n, d, generator=gen, dtype=torch.float64),
             torch.randn(b, 1, n, d, generator=gen, dtype=torch.float64),
             torch.randn(b, 1, n, d, generator=gen, dtype=torch.float64)) for b, h, n, d in shapes]


def check_mqa_attention(answer: object) -> str:
    """Exercise 2: a function ``(q, k, v) -> out`` for causal multi-query attention.

    q: (batch, n_heads, seq, d); k, v: (batch, 1, seq, d), ONE key/value head shared by every query head;
    out: (batch, n_heads, seq, d) = softmax(q K^T / sqrt(d) + M) V per head. Compared with
    :func:`attnlab.gqa.grouped_attention` on random float64 inputs. A returned ``(out, weights)`` pair is
    accepted too.
    """

    def check(fn: object) -> str:
        assert callable(fn), f"answer should be a function (q, k, v) -> out, got {type(fn).__name__}"
        cases = _cases()
        for q, k, v in cases:
            got = call_answer(fn, q.clone(), k.clone(), v.clone(), shortcuts=[MQA_SHORTCUT])
            if isinstance(got, tuple):
                got = got[0]
            assert isinstance(got, torch.Tensor), f"expected a tensor, got {type(got).__name__}"
            assert got.shape == q.shape, (
                f"with q {tuple(q.shape)} and k, v {tuple(k.shape)} the output should have q's shape "
                f"{tuple(q.shape)} (every query head gets its own output), got {tuple(got.shape)}"
            )
            want = grouped_attention(q, k, v, causal=True)[0]
            if torch.allclose(got.double(), want, atol=1e-6):
                continue
            if q.shape[2] > 1 and torch.allclose(got.double(), grouped_attention(q, k, v, causal=False)[0], atol=1e-6):
                raise AssertionError("that attends to future tokens too: mask keys j > i with -inf before softmax")
            if torch.allclose(got.double(), grouped_attention(q, k, v, causal=True, scale=1.0)[0], atol=1e-6):
                raise AssertionError("the scores need the factor 1 / sqrt(d) before softmax")
            raise AssertionError(f"with q {tuple(q.shape)} the output differs from causal attention with one "
                                 "shared K/V head (softmax over the key axis, then weights @ v)")
        return (f"matches grouped_attention with n_kv_heads = 1 on {len(cases)} random shapes; broadcasting "
                "one K/V head over all query heads is all MQA needs")

    return run_check("multi-query attention", answer, check)


MODEL_DOMINATES = "llama-2-7b"  # the dense MHA model exercise 3 is about
SEQ_LEN_DOMINATES = 4096  # tokens of context per sequence in exercise 3


def expected_cache_dominates() -> tuple[int, int]:
    """(MHA batch, MQA batch): the smallest batch at which one decode step of Llama-2-7B at 4096 tokens
    reads at least as many bytes of K/V cache as of weights (bfloat16), from :mod:`attnlab.sizing`."""
    weights = sizing.weight_bytes(MODEL_DOMINATES, "bfloat16")
    per_seq = {s: sizing.kv_cache_bytes(MODEL_DOMINATES, SEQ_LEN_DOMINATES, 1, "bfloat16", s) for s in ("mha", "mqa")}
    return math.ceil(weights / per_seq["mha"]), math.ceil(weights / per_seq["mqa"])


def check_cache_dominates(answer: object) -> str:
    """Exercise 3: a pair ``(mha_batch, mqa_batch)``, the smallest batch at which a decode step of
    Llama-2-7B (bfloat16, 4096 tokens per sequence) reads at least as many bytes of K/V cache
    (batch x 4096 x bytes per token) as of weights (n_params x 2 bytes), with MHA and with MQA.
    """
    mha, mqa = expected_cache_dominates()

    def check(a: object) -> str:
        assert isinstance(a, (tuple, list)) and len(a) == 2, (
            f"answer should be a pair (mha_batch, mqa_batch), got {type(a).__name__} {a!r}"
        )
        values = [as_number(x, "a batch size") for x in a]
        assert all(x == int(x) and x > 0 for x in values), "batch sizes are positive whole numbers"
        got = tuple(int(x) for x in values)
        assert got != (mqa, mha), "swapped: MHA's big cache dominates at a SMALLER batch than MQA's"
        assert got != (mha - 1, mqa - 1), (
            "one short: at that batch the cache is still a little smaller than the weights; round up"
        )
        assert got[0] == mha, (
            f"MHA: {got[0]} is not it; batch >= weights / (4096 x bytes per token), bytes per token = "
            "2 x 32 heads x 128 x 32 layers x 2 B"
        )
        assert got[1] == mqa, (
            f"MQA: {got[1]} is not it; MQA caches one K/V head, so one sequence's cache is 32x smaller "
            "than MHA's"
        )
        return (f"MHA from batch {mha}, MQA only from batch {mqa}: with one K/V head the weights stay the "
                f"bigger read up to batch {mqa - 1}")

    return run_check("batch where the cache outweighs the weights", answer, check)
