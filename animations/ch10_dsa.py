"""Chapter 10 · DeepSeek Sparse Attention (DSA): a new token's lightning indexer scores every cached token,
I_{t,s} = sum_j w_{t,j} ReLU(q_{t,j} · k_s), and MLA then attends to the top-k of them only.

The picture is a toy with real numbers: a :class:`attnlab.dsa.LightningIndexer` with 4 index heads of
width 8 scores L = 16 tokens (the newest included), :func:`attnlab.dsa.topk_indices` keeps k = 4, and
only those tokens' cached latents c^KV are gathered into MLA's attention. The counter at the bottom is
DeepSeek-V3.2's own: k = index_topk = 2048 from :data:`attnlab.sizing.MODELS`, and the context from which
DSA decodes a token with fewer FLOPs than dense MLA, :func:`attnlab.dsa.crossover_context`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from manim import (
    DOWN,
    LEFT,
    RIGHT,
    UP,
    Create,
    FadeIn,
    FadeOut,
    Line,
    Rectangle,
    ReplacementTransform,
    RoundedRectangle,
    TransformFromCopy,
    VGroup,
)

from animations.style import (
    BODY,
    HIGHLIGHT,
    INDEX,
    INK,
    LATENT,
    MUTED,
    QUERY,
    SMALL,
    CourseScene,
    cell,
    mathtex,
    text,
    tint,
    title,
)
from attnlab import dsa, sizing

MODEL = "deepseek-v3.2"
N_TOKENS = 16  # L of the toy: the newest token and 15 before it
TOP_K = 4  # k of the toy
N_INDEX_HEADS = 4  # H^I of the toy
INDEX_HEAD_DIM = 8  # d^I of the toy
D_MODEL = 16
SEED = 0


@dataclass(frozen=True)
class IndexScores:
    """The newest token's view of the toy: ``head_scores`` (H^I, L) = ReLU(q_{t,j} · k_s) (d^I)^-0.5 per
    index head, ``weights`` (H^I,) = w_{t,j}, ``scores`` (L,) = I_{t,s} = weights @ head_scores, and
    ``selected``, the top-k positions, best first."""

    head_scores: torch.Tensor
    weights: torch.Tensor
    scores: torch.Tensor
    selected: tuple[int, ...]


@dataclass(frozen=True)
class CostCounter:
    """DeepSeek-V3.2's numbers: ``top_k`` and ``crossover``, the shortest context where DSA decodes a token
    in fewer FLOPs than dense MLA."""

    model: str
    top_k: int
    crossover: int

    def label(self) -> str:
        """"DeepSeek-V3.2, k = 2,048: fewer FLOPs per token from L = 2,284"."""
        return f"{self.model}, k = {self.top_k:,}: fewer FLOPs per token from L = {self.crossover:,}"


def index_scores(n_tokens: int = N_TOKENS, top_k: int = TOP_K, seed: int = SEED) -> IndexScores:
    """Score ``n_tokens`` random tokens with a random :class:`~attnlab.dsa.LightningIndexer` (float64, no
    query latent) for the newest token, per head and summed, and select the top ``top_k``."""
    config = dsa.IndexerConfig(d_model=D_MODEL, q_lora_rank=None, index_n_heads=N_INDEX_HEADS,
                               index_head_dim=INDEX_HEAD_DIM, rope_head_dim=4, index_topk=top_k)
    with torch.random.fork_rng(), torch.no_grad():
        torch.manual_seed(seed)
        indexer = dsa.LightningIndexer(config).to(torch.float64)
        x = torch.randn(1, n_tokens, D_MODEL, dtype=torch.float64)  # (1, L, d)
        all_scores = indexer(x)  # I (1, L, L), causal
        scores = all_scores[0, -1]  # I_{t,s} of the newest token t: (L,)
        positions = torch.arange(n_tokens)
        q = indexer.queries(x, positions)[0, -1]  # (H^I, d^I)
        k = indexer.keys(x, positions)[0]  # (L, d^I): one key per token, shared by the heads
        w = indexer.head_weights(x)[0, -1]  # (H^I,)
        head_scores = F.relu(torch.einsum("jd,sd->js", q, k)) * config.softmax_scale  # (H^I, L)
        selected = dsa.topk_indices(all_scores, top_k)[0, -1]  # (k,)
    if not torch.allclose(w @ head_scores, scores):
        raise RuntimeError("the per-head scores do not sum to the indexer's I_{t,s}")
    return IndexScores(head_scores, w, scores, tuple(int(s) for s in selected))


def cost_counter(model: str = MODEL) -> CostCounter:
    """k and the decode-FLOPs crossover (:func:`attnlab.dsa.crossover_context`, which compares
    :func:`attnlab.dsa.layer_cost`'s dense and DSA FLOPs) for ``model``."""
    spec = sizing.get_model(model)
    return CostCounter(spec.name, spec.index_topk, dsa.crossover_context(spec, spec.index_topk))


def _times(w: float) -> str:
    """"\\times 0.35", or "\\times (-0.25)" for a negative weight."""
    return rf"\times {w:.2f}" if w >= 0 else rf"\times ({w:.2f})"


def _vbar(x: float, base: float, height: float, width: float, color) -> Rectangle:
    """A vertical bar at x standing on y = base (hanging from it when height < 0)."""
    h = max(abs(height), 0.03)
    rect = Rectangle(width=width, height=h, stroke_width=0, fill_color=color, fill_opacity=1.0)
    return rect.move_to([x, base + (h / 2 if height >= 0 else -h / 2), 0])


class DSAScene(CourseScene):
    """A new token: the indexer scores all 16 cached tokens, the top 4 light up, only their latents go into MLA."""

    def construct(self) -> None:
        data = index_scores()
        counter = cost_counter()
        n = N_TOKENS
        xs = [-3.5 + 0.56 * s for s in range(n)]
        y_tok, y_base = -0.62, 0.3  # the latents' row, the index scores' baseline
        head_ys = [1.75, 1.3, 0.85, 0.4]  # baselines of the per-head rows
        bar_w = 0.36

        heading = title("Sparse attention (DSA)", chapter=10)
        formula = mathtex(r"I_{t,s}", r"=", r"\textstyle\sum_j w_{t,j}\,\mathrm{ReLU}(q_{t,j}\cdot k_s)", color=INK)
        formula[0].set_color(INDEX)
        formula.move_to([0.7, 2.5, 0])

        # the cache: one latent per token, the newest outlined
        latents = VGroup(*[cell(0.44, 0.44, LATENT, 0.45).move_to([x, y_tok, 0]) for x in xs])
        latents[-1][0].set_stroke(QUERY, width=5)
        lat_label = VGroup(mathtex(r"c^{KV}_s", color=LATENT), text("cached", SMALL, color=MUTED))
        lat_label.arrange(DOWN, buff=0.05).move_to([-5.6, y_tok - 0.05, 0])
        new_label = text("new", SMALL, color=QUERY).next_to(latents[-1], DOWN, buff=0.12)

        # per index head: ReLU(q_{t,j} . k_s), then weighted by w_{t,j} and summed into I_{t,s}
        head_unit = 0.42 / float(data.head_scores.max())
        head_rows = VGroup(*[VGroup(*[_vbar(xs[s], head_ys[j], float(data.head_scores[j, s]) * head_unit, bar_w,
                                            tint(INDEX, 0.55)) for s in range(n)]) for j in range(N_INDEX_HEADS)])
        head_label = VGroup(text(f"{N_INDEX_HEADS} index", SMALL, color=INDEX), text("heads", SMALL, color=INDEX),
                            mathtex(r"\mathrm{ReLU}", color=INDEX)).arrange(DOWN, buff=0.08)
        head_label.move_to([-5.6, 1.15, 0])
        weight_labels = VGroup(*[mathtex(_times(float(data.weights[j])), size=38, color=INDEX)
                                 .move_to([6.0, head_ys[j] + 0.12, 0]) for j in range(N_INDEX_HEADS)])
        w_name = mathtex(r"w_{t,j}", size=38, color=INDEX).move_to([6.0, 2.25, 0])
        score_unit = 1.45 / float(data.scores.abs().max())
        score_bars = VGroup(*[_vbar(xs[s], y_base, float(data.scores[s]) * score_unit, bar_w, INDEX)
                              for s in range(n)])
        axis = Line([xs[0] - 0.35, y_base, 0], [xs[-1] + 0.35, y_base, 0], color=MUTED, stroke_width=1.5)
        score_label = VGroup(mathtex(r"I_{t,s}", color=INDEX), text("index score", SMALL, color=INDEX))
        score_label.arrange(DOWN, buff=0.08).move_to([-5.6, 1.0, 0])

        self.add(heading)
        self.play(FadeIn(latents), FadeIn(lat_label), FadeIn(new_label), run_time=1.0)
        self.play(FadeIn(formula, shift=DOWN * 0.1), run_time=0.8)
        self.play(FadeIn(head_rows, shift=UP * 0.1), FadeIn(head_label), run_time=1.0)
        self.play(FadeIn(weight_labels), FadeIn(w_name), run_time=0.6)
        self.wait(0.4)
        self.play(*[ReplacementTransform(VGroup(*[head_rows[j][s] for j in range(N_INDEX_HEADS)]), score_bars[s])
                    for s in range(n)],
                  ReplacementTransform(head_label, score_label), FadeOut(weight_labels), FadeOut(w_name),
                  Create(axis), run_time=1.5)
        self.wait(0.4)

        # top-k: the k best scores light up, with their latents
        chosen = set(data.selected)
        top_label = VGroup(text("top-k", BODY, color=HIGHLIGHT), text(f"k = {TOP_K}", BODY, color=HIGHLIGHT))
        top_label.arrange(DOWN, buff=0.1).move_to([6.1, 1.0, 0])
        self.play(*[score_bars[s].animate.set_fill(HIGHLIGHT if s in chosen else tint(MUTED, 0.45))
                    for s in range(n)],
                  *[latents[s][0].animate.set_stroke(HIGHLIGHT, width=5) for s in chosen],
                  FadeIn(top_label), run_time=1.0)
        self.wait(0.3)

        # only the selected latents are gathered into MLA's attention, next to the new token's query
        order = sorted(chosen)
        slots = [0.6 + 0.62 * i for i in range(TOP_K)]
        y_mla = -2.05
        gathered = VGroup(*[cell(0.44, 0.44, LATENT, 0.45).move_to([x, y_mla, 0]) for x in slots])
        for c in gathered:
            c[0].set_stroke(HIGHLIGHT, width=5)
        query = cell(0.44, 0.44, QUERY, 0.6).move_to([-0.55, y_mla, 0])
        q_name = mathtex("q_t", color=QUERY).next_to(query, LEFT, buff=0.15)
        box = RoundedRectangle(corner_radius=0.12, width=slots[-1] - q_name.get_left()[0] + 0.65, height=0.85,
                               stroke_color=LATENT, stroke_width=3)
        box.move_to([(q_name.get_left()[0] + slots[-1]) / 2 + 0.05, y_mla, 0])
        mla_label = text(f"MLA reads {TOP_K} of {n}", BODY, color=LATENT).next_to(box, LEFT, buff=0.3)
        skipped = [s for s in range(n) if s not in chosen]
        self.play(Create(box), FadeIn(query), FadeIn(q_name), FadeIn(mla_label), run_time=0.8)
        self.play(*[TransformFromCopy(latents[s], gathered[i]) for i, s in enumerate(order)],
                  *[latents[s].animate.set_opacity(0.25) for s in skipped], run_time=1.4)
        self.wait(0.4)

        # what it buys at DeepSeek-V3.2's scale
        big_o = VGroup(text("core attention:", BODY), mathtex(r"O(L^2)\;\to\;O(L\,k)")).arrange(RIGHT, buff=0.25)
        big_o.move_to([0, -3.05, 0])
        crossover = text(counter.label(), SMALL, color=MUTED).move_to([0, -3.65, 0])
        self.play(FadeIn(big_o, shift=UP * 0.1), run_time=0.8)
        self.play(FadeIn(crossover, shift=UP * 0.1), run_time=0.8)
        self.wait(3.0)
