"""One visual style for every course animation: colours per role, fonts, sizes and small builders.

The colours are the course's roles from :data:`attnlab.plots.COLORS`, so a key is the same green in a
plot, a widget and an animation; background, ink, faint and highlight colours and the font are those of
:mod:`attnlab.figures`, the plots' style. Sizes are chosen for a projector: at 480p (the low-quality render)
the frame is 8 units = 480 px high, one unit is 60 px, and a ``Text`` of ``font_size`` f has an em of
about 0.83 f px (DejaVu Sans), a ``MathTex`` about 0.65 f px. :data:`MIN_FONT_SIZE` and
:data:`MIN_MATH_FONT_SIZE` keep every glyph at an em of at least 24 px there; the tests check that no
scene goes below them.

Every scene derives from :class:`CourseScene` (white background) and builds its pieces with the helpers
below: :func:`title` (the heading), :func:`text` and :func:`mathtex` (checked sizes), :func:`baseline_text`
(labels that share a baseline), :func:`cell`, :func:`column` (a vector), :func:`grid` (a matrix),
:func:`bar` (a labelled horizontal bar) and :func:`step_caption` (the line explaining the current step).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from manim import (
    DOWN,
    LEFT,
    ORIGIN,
    RIGHT,
    UL,
    Line,
    ManimColor,
    MathTex,
    Rectangle,
    Scene,
    Text,
    VGroup,
    interpolate_color,
)

from attnlab import figures
from attnlab.plots import COLORS, SCHEME_COLORS

# --------------------------------------------------------------------------------------------------
# colours: the roles come from attnlab.plots, so plots and animations agree

QUERY = ManimColor(COLORS["query"])  # blue: q, Q, query heads
KEY = ManimColor(COLORS["key"])  # green: k, K
VALUE = ManimColor(COLORS["value"])  # orange: v, V
LATENT = ManimColor(COLORS["latent"])  # purple: MLA's latent c^KV
CACHE = ManimColor(COLORS["cache"])  # red: what the KV cache holds
ROPE = ManimColor(COLORS["rope"])  # brown: RoPE parts
INDEX = ManimColor(COLORS["index"])  # teal: DSA's lightning indexer
MUTED = ManimColor(COLORS["muted"])  # grey: masked, inactive, secondary
SCHEME = {name: ManimColor(hex_) for name, hex_ in SCHEME_COLORS.items()}  # per attention scheme

BACKGROUND = ManimColor(figures.BACKGROUND)  # white, as in every plot (attnlab.figures)
INK = ManimColor(figures.INK)  # text and outlines
FAINT = ManimColor(figures.FAINT)  # empty or masked cells
HIGHLIGHT = ManimColor(figures.HIGHLIGHT)  # the thing to look at right now (a merged pair, the new token)

# --------------------------------------------------------------------------------------------------
# fonts and sizes (see the module docstring for the pixel arithmetic)

FONT = figures.FONT  # DejaVu Sans, the plots' font too
MONO = "DejaVu Sans Mono"
MIN_FONT_SIZE = 30  # Text: em = 0.83 x 30 = 25 px at 480p
MIN_MATH_FONT_SIZE = 38  # MathTex: em = 0.65 x 38 = 25 px at 480p
SMALL = MIN_FONT_SIZE  # labels in and beside cells
BODY = 34  # captions, bar labels
LARGE = 40  # the line the scene is about
TITLE = 44
MATH = 44

STROKE = 2.0  # outline width of cells and bars
CELL = 0.42  # side of one vector cell, in scene units (25 px at 480p)


def em_px(font_size: float, pixel_height: int = 480, math: bool = False) -> float:
    """Pixels of one em for a ``Text`` (or, with ``math=True``, a ``MathTex``) of ``font_size`` at a
    render ``pixel_height`` pixels high: 0.834 f (DejaVu Sans) or 0.654 f (Latin Modern) at 480p."""
    per_font_size = 0.654 if math else 0.834
    return per_font_size * font_size * pixel_height / 480


class CourseScene(Scene):
    """A scene on the course's white background."""

    def setup(self) -> None:
        self.camera.background_color = BACKGROUND


def text(s: str, size: float = BODY, color=INK, mono: bool = False, bold: bool = False) -> Text:
    """A ``Text`` in the course font (``mono=True``: DejaVu Sans Mono, for bytes and ids)."""
    if size < MIN_FONT_SIZE:
        raise ValueError(f"size={size} is below MIN_FONT_SIZE={MIN_FONT_SIZE}: unreadable when projected")
    return Text(s, font=MONO if mono else FONT, font_size=size, color=color, weight="BOLD" if bold else "NORMAL")


def baseline_text(s: str, size: float = BODY, color=INK, mono: bool = False, bold: bool = False) -> Text:
    """A ``Text`` whose box always spans a full ascent and descent, so that labels centred in boxes share
    one baseline whatever letters they hold ("on" next to "the"): an invisible, zero-width "Hy" is
    appended and moved onto the middle of the visible letters, so the box is as wide as they are."""
    mob = text(s + "Hy", size, color=color, mono=mono, bold=bold)
    visible = VGroup(*mob.submobjects[:-2])
    for strut in mob.submobjects[-2:]:
        strut.set_opacity(0).stretch(1e-3, 0).set_x(visible.get_x())
    return mob


def centre_label(mob: Text, target) -> Text:
    """Move a :func:`baseline_text` so that it is centred on ``target`` (a point or a mobject)."""
    return mob.move_to(target.get_center() if hasattr(target, "get_center") else np.asarray(target, dtype=float))


def title(s: str, chapter: int | None = None) -> VGroup:
    """The heading at the top left: ``"4 · KV cache"``, with a thin rule under it across the frame."""
    label = f"{chapter} · {s}" if chapter is not None else s
    heading = text(label, TITLE, bold=True).to_corner(UL, buff=0.35)
    rule = Line(LEFT * 6.9, RIGHT * 6.9, color=FAINT, stroke_width=2).next_to(heading, DOWN, buff=0.15)
    rule.set_x(0)
    return VGroup(heading, rule)


def tint(color, amount: float) -> ManimColor:
    """``color`` mixed with the background: amount 0 is white, 1 is the full colour."""
    return interpolate_color(BACKGROUND, ManimColor(color), float(np.clip(amount, 0.0, 1.0)))


def cell(width: float = CELL, height: float = CELL, color=MUTED, fill: float = 0.25, label: str | None = None,
         size: float = SMALL, mono: bool = True, label_color=INK) -> VGroup:
    """One cell: a rectangle outlined in ``color``, filled with ``color`` tinted to ``fill`` (0..1),
    with an optional text ``label`` centred in it. ``result[0]`` is the rectangle."""
    box = Rectangle(width=width, height=height, stroke_color=color, stroke_width=STROKE,
                    fill_color=tint(color, fill), fill_opacity=1.0)
    parts = VGroup(box)
    if label is not None:
        parts.add(centre_label(baseline_text(label, size, color=label_color, mono=mono), box))
    return parts


def shades(values: Sequence[float], low: float = 0.12, high: float = 0.9) -> list[float]:
    """Map numbers to tint amounts in [low, high], by magnitude relative to the largest (0 -> low)."""
    arr = np.abs(np.asarray(values, dtype=float))
    top = float(arr.max()) if arr.size and arr.max() > 0 else 1.0
    return [low + (high - low) * float(v) / top for v in arr]


def column(values: Sequence[float], color, name: str | None = None, cell_size: float = CELL,
           name_color=None, horizontal: bool = False) -> VGroup:
    """A vector as a column of cells (``horizontal=True``: a row), each tinted by its value's magnitude,
    with ``name`` under it, LaTeX math such as ``"k_3"``. ``result.cells`` holds the cells, ``result.name``
    the label."""
    cells = VGroup(*[cell(cell_size, cell_size, color, fill) for fill in shades(values)])
    cells.arrange(RIGHT if horizontal else DOWN, buff=0)
    group = VGroup(cells)
    group.cells = cells
    group.name = None
    if name is not None:
        label = mathtex(name, color=name_color or color)
        label.next_to(cells, DOWN, buff=0.12)
        group.add(label)
        group.name = label
    return group


def grid(n_rows: int, n_cols: int, cell_w: float, cell_h: float, color, fills=None) -> VGroup:
    """A matrix as ``n_rows`` rows of ``n_cols`` cells (``result[i][j]`` is the cell in row i, column j),
    tinted by ``fills[i][j]`` in 0..1 (default: a light tint)."""
    rows = VGroup()
    for i in range(n_rows):
        row = VGroup(*[cell(cell_w, cell_h, color, 0.15 if fills is None else fills[i][j]) for j in range(n_cols)])
        rows.add(row.arrange(RIGHT, buff=0))
    return rows.arrange(DOWN, buff=0)


def bar(length: float, color, name: str, value: str, height: float = 0.42, size: float = BODY) -> VGroup:
    """A horizontal bar whose left edge sits at x = 0: ``name`` to its left (right-aligned at x = -0.2),
    ``value`` to its right. ``result.rect`` is the bar, ``result.name``/``result.value`` the
    labels. Place it with ``shift`` so that bars of one chart share their left edge."""
    rect = Rectangle(width=max(length, 0.04), height=height, stroke_width=0, fill_color=color, fill_opacity=1.0)
    rect.move_to(ORIGIN, aligned_edge=LEFT)  # left edge at x = 0
    name_mob = text(name, size).next_to(rect, LEFT, buff=0.2)
    value_mob = text(value, size).next_to(rect, RIGHT, buff=0.2)
    group = VGroup(rect, name_mob, value_mob)
    group.rect, group.name, group.value = rect, name_mob, value_mob
    return group


def mathtex(*tex: str, size: float = MATH, color=INK) -> MathTex:
    """A ``MathTex`` formula (LaTeX math mode) in the course's ink, at least :data:`MIN_MATH_FONT_SIZE`.
    Several strings become parts ``result[0], result[1], ...`` that can be highlighted one by one."""
    if size < MIN_MATH_FONT_SIZE:
        raise ValueError(f"size={size} is below MIN_MATH_FONT_SIZE={MIN_MATH_FONT_SIZE}: unreadable when projected")
    return MathTex(*tex, font_size=size, color=color)


def step_caption(words: str, tex: str, color=INK) -> VGroup:
    """The line of explanation at the bottom of the frame: ``words`` in the text font, then a formula."""
    line = VGroup(text(words, BODY, color=color), mathtex(tex, color=color)).arrange(RIGHT, buff=0.25)
    return line.to_edge(DOWN, buff=0.3)
