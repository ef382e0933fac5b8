"""Chapter 18 · linear attention and hybrids: a softmax layer's KV cache grows by one entry per token, a Gated
DeltaNet layer's state stays one d_k x d_v matrix, faded by the gate alpha_t and written by an outer product
k_t u_t^T each token.

Every state drawn is read off :func:`attnlab.linear_attention.delta_rule_recurrent` run on the same seeded
tokens: the tints of the grid are |S_t| after the gate (alpha_t S_{t-1}) and after the write.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from manim import (
    DOWN,
    LEFT,
    RIGHT,
    UP,
    FadeIn,
    FadeOut,
    ReplacementTransform,
    TransformFromCopy,
    VGroup,
)

from animations.style import (
    CACHE,
    KEY,
    MUTED,
    SMALL,
    VALUE,
    CourseScene,
    cell,
    column,
    grid,
    mathtex,
    text,
    title,
)
from attnlab.linear_attention import delta_rule_recurrent

D_K = D_V = 4
N_TOKENS = 6
SIDE = 0.5  # side of one state cell, scene units
SLOT = 0.42  # side of one cache cell


def run_states() -> dict:
    """The states the scene draws: per token, the gate alpha_t, |alpha_t S_{t-1}| and |S_t| (d_k x d_v each),
    and k_t, v_t, from a seeded run of the gated delta rule."""
    gen = torch.Generator().manual_seed(7)
    k = F.normalize(torch.randn(1, 1, N_TOKENS, D_K, generator=gen, dtype=torch.float64), dim=-1)
    v = torch.randn(1, 1, N_TOKENS, D_V, generator=gen, dtype=torch.float64)
    beta = torch.full((1, 1, N_TOKENS), 0.9, dtype=torch.float64)
    g = torch.log(torch.tensor([0.9, 0.6, 0.9, 0.4, 0.9, 0.7], dtype=torch.float64)).view(1, 1, N_TOKENS)
    S = torch.zeros(1, 1, D_K, D_V, dtype=torch.float64)
    faded, written = [], []
    for t in range(N_TOKENS):
        faded.append((S * g[0, 0, t].exp())[0, 0].abs())
        _, S = delta_rule_recurrent(k[:, :, t:t + 1], k[:, :, t:t + 1], v[:, :, t:t + 1], beta[:, :, t:t + 1],
                                    g[:, :, t:t + 1], state=S)
        written.append(S[0, 0].abs())
    top = float(max(s.max() for s in written))
    return {"alpha": g[0, 0].exp().tolist(), "faded": [(s / top).tolist() for s in faded],
            "written": [(s / top).tolist() for s in written], "k": k[0, 0].tolist(), "v": v[0, 0].tolist()}


class LinearAttentionScene(CourseScene):
    """A growing KV cache (left) against a fixed state matrix (right), faded by the gate and written by k u^T."""

    def construct(self) -> None:
        s = run_states()
        heading = title("Linear attention: a fixed-size state", chapter=18)
        self.add(heading)

        # left: the softmax layer's cache, one K and one V cell per token
        cache_title = text("softmax layer: KV cache", SMALL, color=CACHE).move_to([-3.6, 2.25, 0])
        # right: the Gated DeltaNet layer's state S, d_k x d_v
        state_title = text("Gated DeltaNet: state S", SMALL, color=KEY).move_to([3.2, 2.25, 0])
        S = grid(D_K, D_V, SIDE, SIDE, KEY, [[0.04] * D_V for _ in range(D_K)]).move_to([3.2, 0.0, 0])
        dims = VGroup(mathtex(r"d_k", color=MUTED).next_to(S, LEFT, buff=0.2))
        formula = mathtex(r"S_t = \alpha_t (I - \beta_t k_t k_t^\top) S_{t-1} + \beta_t k_t v_t^\top")
        formula.to_edge(DOWN, buff=0.35)
        self.play(FadeIn(cache_title), FadeIn(state_title), FadeIn(S), FadeIn(dims), FadeIn(formula), run_time=1.0)

        cache_k, cache_v = VGroup(), VGroup()
        origin = [-5.6, 1.3, 0]
        sizes = None
        for t in range(N_TOKENS):
            # the cache gains one column: K and V of token t
            k_cell = cell(SLOT, SLOT, CACHE, 0.35).move_to([origin[0] + t * SLOT, origin[1], 0])
            v_cell = cell(SLOT, SLOT, CACHE, 0.6).move_to([origin[0] + t * SLOT, origin[1] - SLOT, 0])
            cache_k.add(k_cell)
            cache_v.add(v_cell)
            new_sizes = VGroup(
                text(f"{t + 1} tokens: {2 * (t + 1)} vectors", SMALL, color=CACHE).move_to([-3.6, 0.05, 0]),
                text(f"{D_K} × {D_V} numbers, always", SMALL, color=KEY).next_to(S, DOWN, buff=0.3),
            )
            # k_t (column) and v_t (row) beside the state
            k_col = column(s["k"][t], KEY, name=f"k_{{{t + 1}}}", cell_size=0.32).next_to(S, LEFT, buff=0.8)
            v_cells = column(s["v"][t], VALUE, cell_size=0.32, horizontal=True).next_to(S, UP, buff=0.3)
            v_row = VGroup(v_cells, mathtex(f"v_{{{t + 1}}}", color=VALUE).next_to(v_cells, RIGHT, buff=0.2))
            gate = mathtex(rf"\alpha_{{{t + 1}}} = {s['alpha'][t]:.1f}", color=MUTED).next_to(S, RIGHT, buff=0.3)
            faded = grid(D_K, D_V, SIDE, SIDE, KEY, _fills(s["faded"][t])).move_to(S)
            written = grid(D_K, D_V, SIDE, SIDE, KEY, _fills(s["written"][t])).move_to(S)
            intro = [FadeIn(k_cell), FadeIn(v_cell), FadeIn(k_col), FadeIn(v_row), FadeIn(gate)]
            intro.append(FadeIn(new_sizes) if sizes is None else ReplacementTransform(sizes, new_sizes))
            self.play(*intro, run_time=0.6)
            self.play(ReplacementTransform(S, faded), run_time=0.5)  # the gate fades the whole state
            self.play(TransformFromCopy(VGroup(k_col, v_row), written), FadeOut(faded), run_time=0.7)
            S, sizes = written, new_sizes
            if t < N_TOKENS - 1:
                self.play(FadeOut(k_col), FadeOut(v_row), FadeOut(gate), run_time=0.3)
        note = text("the cache grows with L; the state does not", SMALL).next_to(formula, UP, buff=0.3)
        self.play(FadeIn(note), run_time=0.6)
        self.wait(2.0)


def _fills(magnitudes: list[list[float]]) -> list[list[float]]:
    """Tints in 0..1 for a grid: a light floor plus |S| (already scaled so that the largest of the scene is 1)."""
    return [[0.04 + 0.86 * m for m in row] for row in magnitudes]
