"""Checks for chapter 9, Applying RoPE to MLA (decoupled RoPE).

    from attnlab.exercises import ch09
    print(ch09.check_rope(answer_rope))                        # a function (x, m, base) -> rotated x
    print(ch09.check_permutation(answer_permutation))          # a list of 8 ints
    print(ch09.check_v3_softmax_scale(answer_v3_softmax_scale))  # a float

Each check compares the answer with :mod:`attnlab.rope` or :mod:`attnlab.mla`: ``None`` returns a reminder,
a right answer "✓ ...", a wrong one raises ``AssertionError`` with a hint aimed at the usual slip.
"""

from __future__ import annotations

import math
import numbers

import torch

from attnlab.exercises._common import run_check
from attnlab.mla import MLAConfig, yarn_mscale
from attnlab.rope import apply_rope

#: The head width of exercise 2.
PERMUTATION_DIM = 8

#: DeepSeek-V3's MLA shape and YaRN settings (config_671B.json in deepseek-ai/DeepSeek-V3).
V3_CONFIG = MLAConfig(d_model=7168, n_heads=128, q_lora_rank=1536, kv_lora_rank=512, qk_nope_head_dim=128,
                      qk_rope_head_dim=64, v_head_dim=128, rope_base=10000.0, rope_factor=40.0,
                      original_max_position=4096, beta_fast=32.0, beta_slow=1.0, mscale=1.0)


def check_rope(answer: object) -> str:
    """Exercise 1: a function (x (d,), m, base) -> x rotated by RoPE at position m, halves convention:
    pair i = (x[i], x[i + d/2]) turns by the angle m * base^(-2i/d). Compared with
    :func:`attnlab.rope.apply_rope` in float64."""

    def check(fn: object) -> str:
        assert callable(fn), f"answer should be a function (x, m, base) -> tensor, got {type(fn).__name__}"
        gen = torch.Generator().manual_seed(9)
        cases = [(torch.randn(d, generator=gen, dtype=torch.float64), m, base)
                 for d, m, base in ((2, 1, 10000.0), (4, 0, 10000.0), (8, 3, 10000.0), (16, 17, 10000.0),
                                    (16, 200, 500.0), (64, 1000, 10000.0))]
        for x, m, base in cases:
            want = apply_rope(x[None], torch.tensor([m]), base)[0]
            try:
                got = fn(x.clone(), m, base)
            except Exception as err:
                raise AssertionError(f"calling your function with x of shape {tuple(x.shape)}, m={m}, base={base} "
                                     f"raised {type(err).__name__}: {err}") from err
            assert isinstance(got, torch.Tensor), f"expected a tensor, got {type(got).__name__}"
            assert got.shape == x.shape, f"expected shape {tuple(x.shape)}, got {tuple(got.shape)}"
            if torch.allclose(got.double(), want, rtol=1e-9, atol=1e-12):
                continue
            if torch.allclose(got.double(), apply_rope(x[None], torch.tensor([m]), base, interleaved=True)[0],
                              rtol=1e-9, atol=1e-12):
                raise AssertionError("that is the interleaved convention, pairs (2i, 2i+1); the exercise asks for "
                                     "halves, pairs (i, i + d/2)")
            back = apply_rope(got.double()[None], torch.tensor([m]), base)[0]
            if m and torch.allclose(back, x, rtol=1e-9, atol=1e-12):
                raise AssertionError("you rotated by -m θ_i: the first output of a pair is x_a cos − x_b sin, "
                                     "the second x_a sin + x_b cos")
            raise AssertionError(f"for d={x.shape[0]}, m={m}, base={base} the result differs from apply_rope; "
                                 "check θ_i = base^(-2i/d) for i = 0 .. d/2 - 1")
        return f"equal to apply_rope on {len(cases)} vectors, d from 2 to 64, m up to 1000"

    return run_check("RoPE", answer, check)


def check_permutation(answer: object) -> str:
    """Exercise 2: the permutation p of PERMUTATION_DIM dimensions with
    apply_rope(x[p]) == apply_rope(x, interleaved=True)[p] for every x and position."""
    d = PERMUTATION_DIM

    def check(a: object) -> str:
        try:
            p = torch.as_tensor(a.tolist() if isinstance(a, torch.Tensor) else list(a))
        except (TypeError, ValueError, RuntimeError) as err:
            raise AssertionError(f"answer should be a list of {d} integers, got {a!r}") from err
        assert p.dtype in (torch.int64, torch.int32) and p.dim() == 1, f"answer should be a list of {d} integers"
        assert sorted(p.tolist()) == list(range(d)), (
            f"a permutation of 0..{d - 1} uses every index once, got {p.tolist()}"
        )
        x = torch.randn(5, d, generator=torch.Generator().manual_seed(10), dtype=torch.float64)
        positions = torch.tensor([0, 1, 2, 7, 100])
        halves = apply_rope(x[:, p], positions)
        interleaved = apply_rope(x, positions, interleaved=True)[:, p]
        if not torch.allclose(halves, interleaved, atol=1e-12):
            inverse = torch.argsort(p)
            inverse_interleaved = apply_rope(x, positions, interleaved=True)[:, inverse]
            if torch.allclose(apply_rope(x[:, inverse], positions), inverse_interleaved, atol=1e-12):
                raise AssertionError("that is the inverse permutation: p[j] is the interleaved dimension that goes "
                                     "to halves position j")
            raise AssertionError("interleaved pair i = (2i, 2i+1) must land on halves pair i = (i, i + d/2), in that "
                                 "order: p[i] = 2i and p[i + d/2] = 2i + 1")
        return f"p = {p.tolist()}: gather the even dimensions, then the odd ones"

    return run_check("interleaved to halves", answer, check)


def check_v3_softmax_scale(answer: object) -> str:
    """Exercise 3: DeepSeek-V3's softmax scale with YaRN: (d_h + d_h^R)^-0.5 x m^2, m = 0.1 ln(40) + 1."""
    c = V3_CONFIG
    expected = c.softmax_scale
    m = yarn_mscale(c.rope_factor, c.mscale)

    def check(a: object) -> str:
        assert isinstance(a, numbers.Real) and not isinstance(a, bool), f"answer should be a number, got {a!r}"
        value = float(a)
        assert not math.isclose(value, c.qk_head_dim**-0.5 * m, rel_tol=1e-6), (
            "square m: both the query side and the key side carry one factor m, so the scale gets m^2"
        )
        assert not math.isclose(value, c.qk_nope_head_dim**-0.5 * m * m, rel_tol=1e-6), (
            f"the score is over the whole query/key head, d_h + d_h^R = {c.qk_head_dim} wide, not {c.qk_nope_head_dim}"
        )
        assert not math.isclose(value, c.qk_head_dim**-0.5, rel_tol=1e-6), (
            "that is the scale without YaRN; DeepSeek-V3 extends its context by a factor of 40"
        )
        assert math.isclose(value, expected, rel_tol=1e-6), "not yet: (d_h + d_h^R)^-0.5 x (0.1 ln 40 + 1)^2"
        return f"{expected:.6f} = {c.qk_head_dim}^-0.5 × {m:.4f}^2"

    return run_check("DeepSeek-V3 softmax scale", answer, check)
