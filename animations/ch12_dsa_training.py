"""Chapter 12 · training DSA's indexer (DeepSeek-V3.2 tech report, continued pre-training).

Stage 1, dense warm-up: attention stays dense, everything but the lightning indexer is frozen, and the
indexer learns to match the main attention, p_t (summed over heads, L1-normalised), by minimising
KL(p_t || softmax(I_t)). Stage 2, sparse training: top-k selection is on, the indexer's input is detached,
so the model learns only from the language-modelling loss and the indexer only from its KL over the
selected set S_t.

The bars are real: a tiny :class:`attnlab.dsa.DeepSeekSparseAttention` layer (8 tokens, top-k 4) set up
with :func:`attnlab.dsa.set_training_stage` and trained here for a few dozen Adam steps on
:func:`attnlab.dsa.indexer_loss`; the bars are its last query's p_t and softmax(I_t). The token counts
are the report's: 1,000 steps of 16 sequences of 128K tokens, then 15,000 steps of 480.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from manim import (
    DOWN,
    LEFT,
    PI,
    RIGHT,
    UP,
    Arc,
    Arrow,
    Create,
    FadeIn,
    FadeOut,
    GrowArrow,
    Line,
    Rectangle,
    ReplacementTransform,
    RoundedRectangle,
    Transform,
    VGroup,
)

from animations.style import (
    BODY,
    HIGHLIGHT,
    INDEX,
    INK,
    LATENT,
    MUTED,
    SMALL,
    CourseScene,
    mathtex,
    text,
    tint,
    title,
)
from attnlab import dsa
from attnlab.mla import MLAConfig

SEQ_LEN = 128 * 1024  # tokens per training sequence, "128K"
#: (stage, steps, sequences per step) from the tech report.
STAGES: tuple[tuple[str, int, int], ...] = (("dense warm-up", 1000, 16), ("sparse training", 15000, 480))
N_TOKENS = 8  # the toy's sequence
TOP_K = 4
SNAPSHOT_STEPS = (0, 5, 20, 60)  # warm-up steps shown
LR = 0.05  # the toy's Adam learning rate (the report's stage 1: 1e-3 over 1,000 steps)
SEED = 0


@dataclass(frozen=True)
class Snapshot:
    """The last query's distributions over the 8 tokens: ``p`` (main attention, summed over heads,
    L1-normalised, over S_t in stage 2), ``index`` = softmax(I_t) (over S_t in stage 2), both zero off
    the set, ``kl`` = that query's :func:`attnlab.dsa.indexer_kl_loss`, ``selected`` (stage 2's S_t)."""

    step: int
    p: torch.Tensor
    index: torch.Tensor
    kl: float
    selected: tuple[int, ...] | None = None


@dataclass(frozen=True)
class TrainingToy:
    """The toy's ``warmup`` snapshots (at :data:`SNAPSHOT_STEPS`) and its first ``sparse`` forward pass;
    ``layer`` (as trained up to the last snapshot, now in stage "sparse") and its input ``x`` (1, 8, d);
    ``frozen_unchanged``: whether the warm-up left every parameter outside the indexer as it was."""

    warmup: tuple[Snapshot, ...]
    sparse: Snapshot
    layer: dsa.DeepSeekSparseAttention
    x: torch.Tensor
    frozen_unchanged: bool


def token_count(steps: int, sequences: int, seq_len: int = SEQ_LEN) -> int:
    """Tokens a stage trains on: steps x sequences per step x tokens per sequence."""
    return steps * sequences * seq_len


def format_tokens(n: int) -> str:
    """2,097,152,000 -> "2.1B"."""
    return f"{n / 1e9:.1f}B"


def stage_line(stage: int) -> str:
    """"stage 1: 1,000 steps × 16 × 128K = 2.1B tokens" (or stage 2's): steps x sequences x tokens each."""
    _, steps, sequences = STAGES[stage - 1]
    return (f"stage {stage}: {steps:,} steps × {sequences} × {SEQ_LEN // 1024}K = "
            f"{format_tokens(token_count(steps, sequences))} tokens")


def _snapshot(layer: dsa.DeepSeekSparseAttention, step: int) -> Snapshot:
    """Read the last query's row out of the layer's kept forward call (``layer.kl_inputs``)."""
    weights, scores, indices = layer.kl_inputs  # (1, h, s, t), (1, s, t), (1, s, k) or None
    w, s = weights[:, :, -1:].detach(), scores[:, -1:].detach()
    sel = None if indices is None else indices[:, -1:]
    kl = float(dsa.indexer_kl_loss(w, s, sel))
    allowed = torch.ones(s.shape[-1], dtype=torch.bool) if sel is None else dsa.selection_mask(sel, s.shape[-1])[0, 0]
    p = w[0, :, 0].sum(0) * allowed
    index = torch.softmax(s[0, 0].masked_fill(~allowed, float("-inf")), dim=-1)
    return Snapshot(step, p / p.sum(), index, kl, None if sel is None else tuple(sorted(int(i) for i in sel[0, 0])))


def training_toy(seed: int = SEED) -> TrainingToy:
    """Build the toy layer (every weight N(0, 0.5^2), float64), warm its indexer up with Adam on
    :func:`attnlab.dsa.indexer_loss` in stage "warmup", then run one forward pass in stage "sparse"."""
    cfg = MLAConfig(d_model=16, n_heads=2, kv_lora_rank=8, qk_nope_head_dim=4, qk_rope_head_dim=4, v_head_dim=4,
                    q_lora_rank=8)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        layer = dsa.DeepSeekSparseAttention(cfg, dsa.indexer_config_for(cfg, 4, 8, TOP_K)).to(torch.float64)
        with torch.no_grad():
            for param in layer.parameters():
                param.normal_(0.0, 0.5)
        x = torch.randn(1, N_TOKENS, cfg.d_model, dtype=torch.float64)
    frozen_before = {name: p.detach().clone() for name, p in layer.mla.named_parameters()}

    dsa.set_training_stage(layer, "warmup")  # dense attention, all but the indexer frozen
    optimizer = torch.optim.Adam(dsa.indexer_parameters(layer), lr=LR)
    snapshots = []
    for step in range(max(SNAPSHOT_STEPS) + 1):
        layer(x)
        if step in SNAPSHOT_STEPS:
            snapshots.append(_snapshot(layer, step))
        if step == max(SNAPSHOT_STEPS):
            break  # the layer stays as the last snapshot shows it
        optimizer.zero_grad()
        dsa.indexer_loss(layer).backward()
        optimizer.step()
    unchanged = all(torch.equal(p, frozen_before[name]) for name, p in layer.mla.named_parameters())

    dsa.set_training_stage(layer, "sparse")  # top-k on, the indexer's input detached
    layer(x)
    sparse = _snapshot(layer, max(SNAPSHOT_STEPS))
    return TrainingToy(tuple(snapshots), sparse, layer, x, unchanged)


def lock_icon(color=MUTED) -> VGroup:
    """A padlock: a filled body and its shackle (``result[1]``), about 0.45 units high."""
    body = RoundedRectangle(corner_radius=0.04, width=0.34, height=0.26, stroke_width=0, fill_color=color,
                            fill_opacity=1.0)
    shackle = Arc(radius=0.11, start_angle=0, angle=PI, stroke_color=color, stroke_width=5)
    shackle.next_to(body, UP, buff=0).shift(DOWN * 0.01)
    legs = VGroup(*[Line(shackle.get_corner(DOWN + side), shackle.get_corner(DOWN + side) + DOWN * 0.05,
                         stroke_color=color, stroke_width=5) for side in (LEFT, RIGHT)])
    return VGroup(body, VGroup(shackle, legs))


class DSATrainingScene(CourseScene):
    """Stage 1: frozen model, the indexer's softmax converges to the attention; stage 2: top-k, detached input."""

    def construct(self) -> None:
        toy = training_toy()
        n = N_TOKENS
        xs = [0.95 + 0.8 * s for s in range(n)]  # token columns of the chart
        y_base, bar_w = -0.95, 0.3
        unit = 2.2 / max(float(torch.stack([s.p for s in (*toy.warmup, toy.sparse)]).max()),
                         float(torch.stack([s.index for s in (*toy.warmup, toy.sparse)]).max()))

        def bars(snap: Snapshot) -> VGroup:
            pairs = VGroup()
            for s in range(n):
                p = Rectangle(width=bar_w, height=max(float(snap.p[s]) * unit, 0.03), stroke_width=0,
                              fill_color=LATENT, fill_opacity=1.0)
                q = Rectangle(width=bar_w, height=max(float(snap.index[s]) * unit, 0.03), stroke_width=0,
                              fill_color=INDEX, fill_opacity=1.0)
                p.move_to([xs[s] - bar_w / 2 - 0.02, y_base, 0], aligned_edge=DOWN)
                q.move_to([xs[s] + bar_w / 2 + 0.02, y_base, 0], aligned_edge=DOWN)
                pairs.add(VGroup(p, q))
            return pairs

        def kl_line(snap: Snapshot) -> VGroup:
            tex = (rf"\mathrm{{KL}}(p_t\,\|\,\mathrm{{softmax}}\,I_t) = {snap.kl:.3f}" if snap.selected is None else
                   rf"\mathrm{{KL}} \text{{ over }} S_t = {snap.kl:.3f}")
            return mathtex(tex, size=40).move_to([3.75, -1.6, 0])

        def step_note(snap: Snapshot) -> VGroup:
            return text(f"toy layer, step {snap.step}", SMALL, color=MUTED).move_to([3.75, -2.2, 0])

        heading = title("Training the indexer", chapter=12)
        header = text(f"Stage 1 · {STAGES[0][0]}", BODY, bold=True).move_to([-6.9, 2.5, 0], aligned_edge=LEFT)
        tokens1 = text(stage_line(1), SMALL, color=MUTED).move_to([0, -2.95, 0])

        # the diagram: h feeds the model (frozen) and the indexer (learning)
        h = mathtex("h_t").move_to([-6.45, 0.1, 0])
        model = VGroup(RoundedRectangle(corner_radius=0.12, width=2.6, height=0.85, stroke_color=MUTED,
                                        stroke_width=3, fill_color=tint(MUTED, 0.3), fill_opacity=1.0),
                       text("model", BODY, color=INK)).move_to([-3.2, 1.05, 0])
        model[1].move_to(model[0])
        indexer = VGroup(RoundedRectangle(corner_radius=0.12, width=2.6, height=0.85, stroke_color=INDEX,
                                          stroke_width=3, fill_color=tint(INDEX, 0.2), fill_opacity=1.0),
                         text("indexer", BODY, color=INDEX)).move_to([-3.2, -0.85, 0])
        indexer[1].move_to(indexer[0])
        start = h.get_right() + RIGHT * 0.1
        wire_m = Line(start, model[0].get_left(), color=INK, stroke_width=3)
        wire_i = Line(start, indexer[0].get_left(), color=INK, stroke_width=3)
        lock = lock_icon().next_to(model[0], RIGHT, buff=0.2)
        model_note = text("frozen", SMALL, color=MUTED).next_to(model[0], UP, buff=0.12)
        index_note = text("KL loss", SMALL, color=INDEX).next_to(indexer[0], DOWN, buff=0.12)

        # the chart: main attention p_t next to the indexer's softmax(I_t), per token
        axis = Line([xs[0] - 0.45, y_base, 0], [xs[-1] + 0.45, y_base, 0], color=MUTED, stroke_width=1.5)
        legend = VGroup(
            VGroup(Rectangle(width=0.3, height=0.3, stroke_width=0, fill_color=LATENT, fill_opacity=1),
                   mathtex("p_t", color=LATENT), text("attention", SMALL, color=LATENT)).arrange(RIGHT, buff=0.12),
            VGroup(Rectangle(width=0.3, height=0.3, stroke_width=0, fill_color=INDEX, fill_opacity=1),
                   mathtex(r"\mathrm{softmax}\,I_t", color=INDEX)).arrange(RIGHT, buff=0.12),
        ).arrange(RIGHT, buff=0.45).move_to([3.75, 1.85, 0])
        snaps = toy.warmup
        chart = bars(snaps[0])
        kl = kl_line(snaps[0])
        note = step_note(snaps[0])

        self.add(heading)
        self.play(FadeIn(header), FadeIn(h), Create(wire_m), Create(wire_i), FadeIn(model), FadeIn(indexer),
                  run_time=1.0)
        self.play(FadeIn(lock, scale=1.3), FadeIn(model_note), FadeIn(index_note), run_time=0.7)
        self.play(FadeIn(axis), FadeIn(legend), FadeIn(chart, shift=UP * 0.1), FadeIn(kl), FadeIn(note),
                  FadeIn(tokens1), run_time=1.0)
        self.wait(0.5)
        for snap in snaps[1:]:  # the indexer's bars move onto the attention's
            new_kl, new_note = kl_line(snap), step_note(snap)
            self.play(Transform(chart, bars(snap)), ReplacementTransform(kl, new_kl),
                      ReplacementTransform(note, new_note), run_time=1.0)
            kl, note = new_kl, new_note
        self.wait(1.0)

        # stage 2: top-k on, the model unfrozen (LM loss), the indexer's input cut off from its gradient
        header2 = text(f"Stage 2 · {STAGES[1][0]}", BODY, bold=True).move_to(header, aligned_edge=LEFT)
        tokens2 = text(stage_line(2), SMALL, color=MUTED).move_to([0, -3.55, 0])
        middle = wire_i.point_from_proportion(0.5)
        direction = wire_i.get_unit_vector()
        cut_a = Line(wire_i.get_start(), middle - direction * 0.12, color=INK, stroke_width=3)
        cut_b = Line(middle + direction * 0.12, wire_i.get_end(), color=INK, stroke_width=3)
        scissors = VGroup(*[Line([-0.09, -0.16, 0], [0.09, 0.16, 0], color=HIGHLIGHT, stroke_width=4)
                            .move_to(middle + direction * d) for d in (-0.12, 0.12)])
        detached = text("detached", SMALL, color=HIGHLIGHT).move_to([-6.0, -0.95, 0])
        top_k = Arrow(indexer[0].get_top(), model[0].get_bottom(), buff=0.05, color=HIGHLIGHT, stroke_width=4)
        top_k_label = text(f"top-{TOP_K}", SMALL, color=HIGHLIGHT).next_to(top_k, RIGHT, buff=0.15)
        model_note2 = text("LM loss", SMALL, color=LATENT).move_to(model_note)
        index_note2 = text("KL over top-k", SMALL, color=INDEX).move_to(index_note)
        sparse = toy.sparse
        chosen = set(sparse.selected)
        sparse_chart = bars(sparse)
        for s in range(n):
            if s not in chosen:
                sparse_chart[s].set_fill(tint(MUTED, 0.4))
        marks = VGroup(*[Line([xs[s] - 0.36, y_base - 0.1, 0], [xs[s] + 0.36, y_base - 0.1, 0], color=HIGHLIGHT,
                              stroke_width=6) for s in sorted(chosen)])

        self.play(ReplacementTransform(header, header2), FadeIn(tokens2, shift=UP * 0.1), run_time=0.8)
        self.play(lock[1].animate.shift(UP * 0.12).rotate(-0.6), run_time=0.4)
        self.play(FadeOut(lock), model[0].animate.set_fill(tint(LATENT, 0.2)).set_stroke(LATENT),
                  ReplacementTransform(model_note, model_note2), run_time=0.7)
        self.remove(wire_i)
        self.add(cut_a, cut_b)
        self.play(FadeIn(scissors, scale=1.5), FadeIn(detached), run_time=0.6)
        self.play(GrowArrow(top_k), FadeIn(top_k_label), ReplacementTransform(index_note, index_note2), run_time=0.8)
        self.play(Transform(chart, sparse_chart), ReplacementTransform(kl, kl_line(sparse)), FadeOut(note),
                  Create(marks), run_time=1.2)
        self.wait(3.0)
