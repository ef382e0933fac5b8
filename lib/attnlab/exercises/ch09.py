"""Checks for chapter 9, Applying RoPE to MLA (decoupled RoPE).

    from attnlab.exercises import ch09
    print(ch09.check_rope(answer_rope))                        # a function (x, m, base) -> rotated x
    print(ch09.check_permutation(answer_permutation))          # a list of 8 ints
    print(ch09.check_decoupled_scores(answer_decoupled_scores))  # a function (layer, x) -> scores
    print(ch09.check_prediction_shifted_positions(prediction_scores_change))  # predict, then run: a bool

Each check compares the answer with :mod:`attnlab.rope` or :mod:`attnlab.mla`: ``None`` returns a reminder,
a right answer "✓ ...", a wrong one raises ``AssertionError`` with a hint aimed at the usual slip. Exercise 1
must not call :mod:`attnlab.rope` (nor the MLA layer's ``rope``); exercise 3 must wire the layer's weights
itself, without its ``queries``, ``latents``, ``attend_*`` or ``forward``.
"""

from __future__ import annotations

import torch

from attnlab import rope
from attnlab.exercises._common import Shortcut, call_answer, run_check, run_prediction
from attnlab.mla import MLAConfig, MultiHeadLatentAttention
from attnlab.rope import apply_rope

#: Exercise 1 writes RoPE, so it may not borrow the library's.
ROPE_SHORTCUT = Shortcut("attnlab.rope", (rope, MultiHeadLatentAttention.rope),
                         "compute the angles m·θ_i and turn each pair (x[i], x[i + d/2]) yourself")
#: Exercise 3 wires the layer, so it may not call the methods that do the wiring.
WIRING_SHORTCUT = Shortcut(
    "the layer's own wiring (queries, latents, attend_naive, attend_absorbed or forward)",
    (MultiHeadLatentAttention.queries, MultiHeadLatentAttention.latents, MultiHeadLatentAttention.attend_naive,
     MultiHeadLatentAttention.attend_absorbed, MultiHeadLatentAttention.forward),
    "build q^C, q^R, c^KV and k^R from layer.w_q, layer.w_dkv, layer.kv_norm and layer.rope yourself",
)

#: The head width of exercise 2.
PERMUTATION_DIM = 8

#: Exercise 3's tiny layer: no query latent, every width distinct, and YaRN on (factor 4 over a pre-training
#: context of 8), so its softmax scale carries m^2 as DeepSeek-V3's does (config_671B.json: factor 40).
TINY_CONFIG = MLAConfig(d_model=24, n_heads=3, kv_lora_rank=10, qk_nope_head_dim=6, qk_rope_head_dim=4,
                        v_head_dim=5, rope_factor=4.0, original_max_position=8)


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
            got = call_answer(fn, x.clone(), m, base, shortcuts=[ROPE_SHORTCUT])
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


# ----------------------------------------------------------------------------------------------------
# exercise 3: decoupled RoPE, wired into a tiny layer


def exercise_layer(seed: int = 9) -> MultiHeadLatentAttention:
    """Exercise 3's float64 layer of :data:`TINY_CONFIG`, seeded; the learner's RNG is left alone."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MultiHeadLatentAttention(TINY_CONFIG).double().eval()


def _inputs(seed: int = 19) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(b, s, TINY_CONFIG.d_model, generator=gen, dtype=torch.float64) for b, s in ((1, 5), (2, 9))]


def reference_scores(layer: MultiHeadLatentAttention, x: torch.Tensor, shift: int = 0) -> torch.Tensor:
    """Pre-softmax, unmasked scores (b, s, h, t) of ``layer`` on x at positions shift .. shift + s - 1:
    (q^C_i · W^UK_i c^KV_t + q^R_i · k^R_t) x softmax_scale (DeepSeek-V2 eqs. 37-46)."""
    positions = torch.arange(shift, shift + x.shape[1])
    q_nope, q_rope = layer.queries(x, positions)
    c_kv, k_rope = layer.latents(x, positions)
    content = torch.einsum("bshc,btc->bsht", torch.einsum("bshd,hdc->bshc", q_nope, layer.w_uk), c_kv)
    position = torch.einsum("bshr,btr->bsht", q_rope, k_rope)
    return (content + position) * layer.config.softmax_scale


def _slips(layer: MultiHeadLatentAttention, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The usual wrong wirings, each with the message that names it."""
    c = layer.config
    positions = torch.arange(x.shape[1])
    q = layer.w_q(x).view(*x.shape[:2], c.n_heads, c.qk_head_dim)
    q_nope, q_rope_raw = q.split([c.qk_nope_head_dim, c.qk_rope_head_dim], dim=-1)
    c_raw, k_rope_raw = layer.w_dkv(x).split([c.kv_lora_rank, c.qk_rope_head_dim], dim=-1)
    q_rope, k_rope, c_kv = layer.rope(q_rope_raw, positions), layer.rope(k_rope_raw, positions), layer.kv_norm(c_raw)
    q_lat = torch.einsum("bshd,hdc->bshc", q_nope, layer.w_uk)

    def scores(qr, kr, latent, scale=c.softmax_scale):
        return (torch.einsum("bshc,btc->bsht", q_lat, latent) + torch.einsum("bshr,btr->bsht", qr, kr)) * scale

    return {
        "the shared key k^R is not rotated: RoPE turns both q^R (per head) and k^R (once per token, then "
        "shared by every head)": scores(q_rope, k_rope_raw, c_kv),
        "the query part q^R is not rotated: RoPE turns both q^R and k^R": scores(q_rope_raw, k_rope, c_kv),
        "c^KV skips its RMSNorm: the cached latent is layer.kv_norm(W^DKV h)": scores(q_rope, k_rope, c_raw),
        f"that scale is (d_h + d_h^R)^-0.5 = {c.qk_head_dim ** -0.5:.4f}; with YaRN on, the layer's "
        f"softmax_scale ({c.softmax_scale:.4f}) also carries m^2": scores(q_rope, k_rope, c_kv, c.qk_head_dim**-0.5),
        f"that divides by √d_h alone; the score runs over the whole head, d_h + d_h^R = {c.qk_head_dim} wide, "
        "so use layer.config.softmax_scale": scores(q_rope, k_rope, c_kv, c.qk_nope_head_dim**-0.5),
        "the scores are not scaled: multiply by layer.config.softmax_scale": scores(q_rope, k_rope, c_kv, 1.0),
    }


def check_decoupled_scores(answer: object) -> str:
    """Exercise 3: a function ``(layer, x) -> scores`` wiring decoupled RoPE by hand in a tiny
    :class:`~attnlab.mla.MultiHeadLatentAttention` without query latent: x (b, s, d_model) at positions
    0 .. s-1 -> the pre-softmax, unmasked scores (b, s, h, t = s), equal to :func:`reference_scores`."""

    def check(fn: object) -> str:
        assert callable(fn), f"answer should be a function (layer, x) -> scores, got {type(fn).__name__}"
        layer = exercise_layer()
        xs = _inputs()
        for x in xs:
            with torch.no_grad():
                got = call_answer(fn, layer, x.clone(), shortcuts=[WIRING_SHORTCUT])
                want = reference_scores(layer, x)
                slips = _slips(layer, x)
            assert isinstance(got, torch.Tensor), f"return a tensor (b, s, h, t), got {type(got).__name__}"
            b, s, h, t = want.shape
            if tuple(got.shape) == (b, h, s, t):
                raise AssertionError("the axes are (batch, queries, heads, keys): transpose(1, 2)")
            assert tuple(got.shape) == tuple(want.shape), (
                f"for x of shape {tuple(x.shape)} the scores have shape (b, s, h, t) = {tuple(want.shape)}, "
                f"got {tuple(got.shape)}"
            )
            got = got.detach().double()
            if torch.allclose(got, want, rtol=1e-9, atol=1e-10):
                continue
            for message, slip in slips.items():
                if torch.allclose(got, slip, rtol=1e-9, atol=1e-10):
                    raise AssertionError(message)
            raise AssertionError(
                f"for x of shape {tuple(x.shape)} the scores differ from (q^C · W^UK c^KV + RoPE(q^R) · RoPE(k^R)) "
                f"× scale by up to {float((got - want).abs().max()):.2e}: check the split of w_q's rows per head "
                "([q^C (d_h); q^R (d_h^R)]) and of w_dkv's ([c^KV (d_c); k^R (d_h^R)])"
            )
        return (f"equal to the layer's own scores on {len(xs)} inputs: c^KV unrotated and shared, k^R rotated "
                "once per token and shared by every head, q^R rotated per head, and YaRN's scale")

    return run_check("decoupled RoPE scores", answer, check)


# ----------------------------------------------------------------------------------------------------
# exercise 4: predict, then run

#: Exercise 4 shifts every position by this much.
SHIFT = 1000


def check_prediction_shifted_positions(prediction: object) -> str:
    """Exercise 4, predict then run: the tiny layer's scores with every position (queries and keys alike)
    shifted by :data:`SHIFT`: do they change? (True or False.)"""

    def judge(guess: object) -> tuple[bool, str]:
        assert isinstance(guess, bool), f"answer True (they change) or False (they stay), got {guess!r}"
        layer, x = exercise_layer(), _inputs()[0]
        with torch.no_grad():
            before, after = reference_scores(layer, x), reference_scores(layer, x, SHIFT)
            c_kv = layer.latents(x, torch.arange(x.shape[1]))[0]
            c_kv_shifted = layer.latents(x, torch.arange(SHIFT, SHIFT + x.shape[1]))[0]
        diff, size = float((after - before).abs().max()), float(before.abs().max())
        changes = diff > 1e-9 * size
        return guess == changes, (
            f"The scores moved by at most {diff:.1e} (they are of size {size:.2f}): the same, up to rounding. "
            f"The content part q^C · W^UK c^KV carries no position at all (the cached latent is identical: "
            f"{float((c_kv_shifted - c_kv).abs().max()):.0e} apart), and the RoPE part turns q^R by m θ and k^R by "
            "n θ, so their dot product sees only n − m. That is what lets the cache keep k^R rotated once, at its "
            "own position, forever."
        )

    return run_prediction("scores after shifting every position", prediction, judge)
