"""Checks for chapter 6, Grouped-query attention.

    from attnlab.exercises import ch06
    print(ch06.check_mean_pool(answer_mean_pool))              # a function (w, n_heads, n_kv_heads) -> w'
    print(ch06.check_valid_kv_heads(answer_valid_kv_heads))    # the KV-head counts 12 query heads allow
    print(ch06.check_qwen_bytes_per_token(answer_qwen_bytes_per_token))  # an int, bytes

Each check compares the answer with :mod:`attnlab.gqa` or :mod:`attnlab.sizing`: ``None`` returns a
reminder, a right answer "✓ ...", a wrong one raises ``AssertionError`` with a hint aimed at the usual slip.
"""

from __future__ import annotations

import torch

from attnlab import sizing
from attnlab.exercises._common import as_number, run_check
from attnlab.gqa import AttentionConfig, GroupedQueryAttention, mha_to_gqa

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
            try:
                got = fn(w.clone(), n_heads, n_kv)
            except Exception as err:  # a learner's bug: report it with the case that broke it
                raise AssertionError(f"with w {tuple(w.shape)}, n_heads={n_heads}, n_kv_heads={n_kv} your "
                                     f"function raised {type(err).__name__}: {err}") from err
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


VALID_FOR = 12  # the head count exercise 2 asks about


def check_valid_kv_heads(answer: object) -> str:
    """Exercise 2: every KV-head count GQA allows for 12 query heads (a list, tuple or set of ints).

    Expected: the n_kv_heads for which ``AttentionConfig(d_model, 12, n_kv_heads)`` is valid, i.e. the
    divisors of 12.
    """

    def valid(n: int) -> bool:
        try:
            AttentionConfig(d_model=12 * 8, n_heads=VALID_FOR, n_kv_heads=n)
        except ValueError:
            return False
        return True

    expected = [n for n in range(1, VALID_FOR + 1) if valid(n)]

    def check(a: object) -> str:
        assert isinstance(a, (list, tuple, set, frozenset, range)), (
            f"answer should be a list of head counts, got {type(a).__name__} {a!r}"
        )
        values = [as_number(x, "a head count") for x in a]
        assert all(x == int(x) for x in values), "head counts are whole numbers"
        got = sorted({int(x) for x in values})
        wrong = [n for n in got if n not in expected]
        assert not wrong, (
            f"{wrong[0]} cannot be: {VALID_FOR} query heads do not split into {wrong[0]} equal groups "
            f"(AttentionConfig raises: n_heads={VALID_FOR} is not divisible by n_kv_heads={wrong[0]})"
            if wrong[0] > 0 else "head counts are positive"
        )
        missing = [n for n in expected if n not in got]
        assert 1 not in missing, "1 is allowed too: one KV head for all 12 query heads is MQA, GQA's one end"
        assert VALID_FOR not in missing, f"{VALID_FOR} is allowed too: one KV head per query head is MHA, the other end"
        assert not missing, f"missing {missing}: every n_kv_heads that divides {VALID_FOR} works"
        return f"{expected}: the divisors of {VALID_FOR} (1 is MQA, {VALID_FOR} is MHA, the rest GQA)"

    return run_check("valid KV-head counts for 12 heads", answer, check)


def check_qwen_bytes_per_token(answer: object) -> str:
    """Exercise 3: bytes one token adds to Qwen2.5-7B's KV cache in bfloat16, all layers.

    Qwen2.5-7B (config.json): 28 layers, 28 query heads, 4 KV heads, hidden_size 3584. Expected:
    2 x n_g x d_h x l x 2 bytes with d_h = hidden_size / n_heads.
    """
    spec = sizing.MODELS["qwen2.5-7b"]
    expected = sizing.cache_bytes_per_token(spec, "bfloat16")

    def check(a: object) -> str:
        value = as_number(a, "bytes per token")
        assert value != expected * spec.group_size, (
            f"that counts all {spec.n_heads} query heads (MHA); GQA caches only the {spec.n_kv_heads} KV heads"
        )
        assert value != expected // 2, "half the answer: the cache holds a key AND a value per KV head"
        assert value != expected // spec.n_layers, f"that is one layer; the model has {spec.n_layers}"
        assert value != expected * 2, "that is float32 (4 bytes a number); bfloat16 takes 2"
        assert value == expected, (
            "not yet: 2 (K and V) x KV heads x head dim x layers x 2 bytes; head dim = hidden_size / heads"
        )
        return (f"{expected:,} bytes per token (2 × {spec.n_kv_heads} × {spec.head_dim} × {spec.n_layers} × 2), "
                f"{sizing.format_ratio(sizing.reduction_vs_mha(spec))}× less than MHA")

    return run_check("Qwen2.5-7B bytes per token", answer, check)
