"""Widgets of chapters 2 and 3: attention for one query (vector form) and attention maps (matrix form).

Chapter 2, :func:`vector_explorer`: one query in the plane against a few hand-made keys. Sliders turn
the query (angle), stretch it (length) and set a temperature T; the widget redraws the arrows, the
scores s_i = q · k_i / (T sqrt(d)) and the weights softmax(s) as bars, and lists the numbers.

Chapter 3, :func:`attention_map_explorer`: the attention maps of a trained :class:`~attnlab.model.TinyLM`.
Dropdowns pick a prepared sentence, a layer and a head (only values the model has); the widget shows
that head's weights as a heatmap and how much of them go to the previous token, the first token and the
token itself.

Everything shown is computed by pure functions from a frozen state (:func:`vector_view`,
:func:`vector_figure`, :func:`vector_readout_html`, :func:`map_view`, :func:`map_figure`,
:func:`map_readout_html`), so tests check it without a browser. Callbacks only set widget values
(``Image.value``, ``HTML.value``); none prints.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import ipywidgets as widgets
import matplotlib.pyplot as plt
import torch

from attnlab._validate import check_ndim, check_non_negative_int
from attnlab.attention import attention_vector
from attnlab.model import TinyLM
from attnlab.plots import COLORS, attention_heatmap, figure_png
from attnlab.tokenization import BPETokenizer, visible_token
from attnlab.widgets import row

#: Smallest font in every figure of this module, readable when projected.
FONT_SIZE = 10

# ---------------------------------------------------------------------------------------------------------
# Chapter 2: one query against a few keys
# ---------------------------------------------------------------------------------------------------------

#: The hand-made keys of chapter 2: four 2-D vectors of different directions and lengths.
TOY_KEYS: tuple[tuple[float, float], ...] = ((2.0, 0.5), (0.5, 2.0), (-1.5, 1.0), (0.5, -2.0))
#: Their labels, k_1 .. k_4.
TOY_LABELS: tuple[str, ...] = ("k₁", "k₂", "k₃", "k₄")


def query_from_angle(angle_deg: float, length: float) -> torch.Tensor:
    """q = length * (cos angle, sin angle), a 2-D query of shape (2,), float32."""
    rad = math.radians(angle_deg)
    return torch.tensor([length * math.cos(rad), length * math.sin(rad)])


@dataclass(frozen=True)
class VectorState:
    """What the chapter 2 widget shows is a function of this.

    angle_deg, length: the query q = length (cos angle, sin angle); temperature: T > 0 divides the
    scaled scores (T = 1 is plain attention, T < 1 sharper, T > 1 flatter); keys: the 2-D keys (n, 2);
    labels: one name per key.
    """

    angle_deg: float = 30.0
    length: float = 1.5
    temperature: float = 1.0
    keys: tuple[tuple[float, float], ...] = TOY_KEYS
    labels: tuple[str, ...] = TOY_LABELS

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise ValueError(f"temperature={self.temperature} must be > 0")
        if not self.length >= 0:
            raise ValueError(f"length={self.length} must be >= 0")
        if len(self.keys) == 0 or any(len(k) != 2 for k in self.keys):
            raise ValueError(f"keys must be a non-empty sequence of 2-D points, got {self.keys!r}")
        if len(self.labels) != len(self.keys):
            raise ValueError(f"len(labels)={len(self.labels)} must equal len(keys)={len(self.keys)}")


def vector_view(state: VectorState) -> dict:
    """The numbers of the chapter 2 widget, from :func:`attnlab.attention.attention_vector`.

    Returns ``{"q" (2,), "keys" (n, 2), "dots" (n,) q·k_i, "scale" 1/(T sqrt(d)), "scores" (n,)
    s_i = q·k_i * scale, "weights" (n,) softmax(s)}``.
    """
    q = query_from_angle(state.angle_deg, state.length)  # (2,)
    keys = torch.tensor(state.keys, dtype=q.dtype)  # (n, 2)
    scale = 1.0 / (state.temperature * math.sqrt(q.shape[0]))
    _, weights = attention_vector(q, keys, keys, scale=scale)  # values unused here: the keys stand in
    dots = keys @ q  # q · k_i, (n,)
    return {"q": q, "keys": keys, "dots": dots, "scale": scale, "scores": dots * scale, "weights": weights}


def draw_vectors(ax, vectors: torch.Tensor, labels: Sequence[str], color: str, extra=None,
                 title: str | None = None) -> None:
    """Draw 2-D ``vectors`` (n, 2) as arrows from the origin with their ``labels`` (on ``ax``).

    extra: optional ``(vector (2,), label, color)`` drawn thicker on top (the query, or an output)."""
    items = [(v, lab, color, 2.0) for v, lab in zip(vectors.tolist(), labels, strict=True)]
    if extra is not None:
        items.append((extra[0].tolist(), extra[1], extra[2], 3.2))
    reach = max(1.0, max(math.hypot(*v) for v, *_ in items)) * 1.25
    for v, lab, col, lw in items:
        ax.annotate("", xy=v, xytext=(0, 0),
                    arrowprops={"arrowstyle": "-|>", "color": col, "lw": lw, "mutation_scale": 16})
        norm = math.hypot(*v) or 1.0
        ax.text(v[0] + 0.18 * reach * v[0] / norm / 1.25, v[1] + 0.18 * reach * v[1] / norm / 1.25, lab,
                color=col, fontsize=FONT_SIZE + 2, ha="center", va="center", fontweight="bold")
    ax.axhline(0, color=COLORS["muted"], lw=0.6)
    ax.axvline(0, color=COLORS["muted"], lw=0.6)
    ax.set_xlim(-reach, reach)
    ax.set_ylim(-reach, reach)
    ax.set_aspect("equal")
    ax.tick_params(labelsize=FONT_SIZE - 1)
    ax.grid(alpha=0.25)
    if title:
        ax.set_title(title, fontsize=FONT_SIZE + 1)


def draw_bars(ax, values: torch.Tensor, labels: Sequence[str], color: str, title: str,
              ylim: tuple[float, float] | None = None, fmt: str = "{:.2f}") -> None:
    """Bar chart of ``values`` (n,) over ``labels``, each bar annotated with its value (on ``ax``)."""
    vals = values.tolist()
    ax.bar(range(len(vals)), vals, color=color)
    ax.set_xticks(range(len(vals)), list(labels), fontsize=FONT_SIZE)
    ax.tick_params(axis="y", labelsize=FONT_SIZE - 1)
    ax.axhline(0, color="black", lw=0.6)
    if ylim is not None:
        ax.set_ylim(*ylim)
    lo, hi = ax.get_ylim()
    pad = 0.02 * (hi - lo)
    for x, v in enumerate(vals):
        ax.text(x, v + pad if v >= 0 else v - pad, fmt.format(v), ha="center",
                va="bottom" if v >= 0 else "top", fontsize=FONT_SIZE - 1)
    ax.set_ylim(lo - (3 * pad if min(vals) < 0 else 0), hi + 3 * pad)
    ax.set_title(title, fontsize=FONT_SIZE + 1)


def vector_figure(state: VectorState):
    """Three panels: the query and key arrows, the scaled scores, the softmax weights. Returns the Figure."""
    view = vector_view(state)
    fig, (ax_v, ax_s, ax_w) = plt.subplots(1, 3, figsize=(11, 3.6))
    draw_vectors(ax_v, view["keys"], state.labels, COLORS["key"], extra=(view["q"], "q", COLORS["query"]),
                 title="query q and keys kᵢ")
    t = f"{state.temperature:g}"
    draw_bars(ax_s, view["scores"], state.labels, COLORS["muted"],
              "scores q·kᵢ / √d" if t == "1" else f"scores q·kᵢ / ({t}·√d)")
    draw_bars(ax_w, view["weights"], state.labels, COLORS["query"], "weights softmax(scores)", ylim=(0, 1))
    fig.tight_layout()
    return fig


def vector_readout_html(state: VectorState) -> str:
    """The chapter 2 widget's numbers as an HTML table: q, then q·k_i, score and weight per key."""
    view = vector_view(state)
    q = view["q"].tolist()
    head = (f"<p style='font-size:14px'>q = ({q[0]:+.2f}, {q[1]:+.2f}), |q| = {state.length:.2f}, "
            f"scale 1/(T·√d) = {view['scale']:.3f}</p>")
    cells = "".join(
        f"<tr><td>{html.escape(lab)}</td><td>{d:+.2f}</td><td>{s:+.2f}</td><td><b>{w:.3f}</b></td></tr>"
        for lab, d, s, w in zip(state.labels, view["dots"].tolist(), view["scores"].tolist(),
                                view["weights"].tolist(), strict=True)
    )
    style = "border-collapse:collapse;font-size:14px;font-variant-numeric:tabular-nums"
    return (head + f"<table style='{style}'><tr><th>key</th><th>q·k</th><th>score</th><th>weight</th></tr>"
            + cells + "</table>")


@dataclass
class VectorControls:
    """The chapter 2 widget's children, so a test (or a curious learner) can set them from code."""

    angle: widgets.IntSlider
    length: widgets.FloatSlider
    temperature: widgets.FloatSlider
    image: widgets.Image
    readout: widgets.HTML


class VectorExplorer(widgets.VBox):
    """The container :func:`vector_explorer` returns; ``.controls`` holds its child widgets."""

    def __init__(self, keys: Sequence[Sequence[float]] = TOY_KEYS, labels: Sequence[str] = TOY_LABELS,
                 angle_deg: int = 30, length: float = 1.5) -> None:
        keys = tuple(tuple(float(x) for x in k) for k in (keys.tolist() if torch.is_tensor(keys) else keys))
        self._base = VectorState(angle_deg=angle_deg, length=length, keys=keys, labels=tuple(labels))
        style = {"description_width": "120px"}
        layout = widgets.Layout(width="420px")
        self.controls = c = VectorControls(
            angle=widgets.IntSlider(value=angle_deg, min=0, max=355, step=5, description="angle of q (°)",
                                    continuous_update=False, style=style, layout=layout),
            length=widgets.FloatSlider(value=length, min=0.0, max=4.0, step=0.25, description="length |q|",
                                       continuous_update=False, style=style, layout=layout),
            temperature=widgets.FloatSlider(value=1.0, min=0.1, max=4.0, step=0.1, description="temperature T",
                                            continuous_update=False, style=style, layout=layout),
            image=widgets.Image(format="png", layout=widgets.Layout(max_width="100%")),
            readout=widgets.HTML(),
        )
        super().__init__([row(widgets.VBox([c.angle, c.length, c.temperature]), c.readout), c.image])
        for w in (c.angle, c.length, c.temperature):
            w.observe(self._refresh, names="value")
        self._refresh()

    def state(self) -> VectorState:
        """The current :class:`VectorState` read from the sliders."""
        c = self.controls
        return VectorState(angle_deg=float(c.angle.value), length=float(c.length.value),
                           temperature=float(c.temperature.value), keys=self._base.keys, labels=self._base.labels)

    def _refresh(self, change: dict | None = None) -> None:
        state = self.state()
        self.controls.readout.value = vector_readout_html(state)
        self.controls.image.value = figure_png(vector_figure(state), dpi=90)

    def __repr__(self) -> str:
        # Short and deterministic: the notebook stores it as the cell's plain-text output.
        return f"VectorExplorer(n_keys={len(self._base.keys)})"


def vector_explorer(keys: Sequence[Sequence[float]] = TOY_KEYS, labels: Sequence[str] = TOY_LABELS,
                    angle_deg: int = 30, length: float = 1.5) -> VectorExplorer:
    """Return the chapter 2 widget: sliders for the query's angle and length and a temperature, above
    the arrows, score bars and weight bars (an ``ipywidgets.Image``) and a table of the numbers.

    keys: 2-D keys (n, 2) as nested sequences or a tensor; labels: one name per key.
    """
    return VectorExplorer(keys, labels, angle_deg, length)


# ---------------------------------------------------------------------------------------------------------
# Chapter 3: attention maps of the tiny model
# ---------------------------------------------------------------------------------------------------------

#: The patterns :func:`head_pattern_scores` measures, with how the readout names them.
PATTERNS: dict[str, str] = {"previous": "previous token", "first": "first token", "self": "the token itself"}


@torch.no_grad()
def layer_input(model: TinyLM, ids: torch.Tensor, layer: int) -> torch.Tensor:
    """x = RMSNorm(h_{layer}): what the attention of block ``layer`` reads, (batch, seq, d_model).

    Runs blocks 0..layer-1 on ``ids`` (batch, seq), then applies the block's own ``attn_norm``; the
    layer's queries, keys and values are ``model.blocks[layer].attn.project(x)``."""
    check_ndim("ids", ids, 2, "(batch, seq)")
    check_non_negative_int("layer", layer)
    if layer >= len(model.blocks):
        raise ValueError(f"layer={layer} must be < n_layers={len(model.blocks)}")
    h = model.embed(ids)  # (b, s, d_model)
    for block in model.blocks[:layer]:
        h, _ = block(h)
    return model.blocks[layer].attn_norm(h)


@torch.no_grad()
def attention_maps(model: TinyLM, ids: torch.Tensor) -> list[torch.Tensor]:
    """Every layer's attention weights for one sequence: a list (n_layers) of (n_heads, seq, seq).

    ids: (seq,) or (1, seq) token ids."""
    ids = ids.unsqueeze(0) if ids.dim() == 1 else ids
    check_ndim("ids", ids, 2, "(1, seq)")
    if ids.shape[0] != 1:
        raise ValueError(f"ids must hold one sequence, got batch={ids.shape[0]}")
    _, maps = model(ids, return_attention=True)
    return [w[0].float() for w in maps]


def head_pattern_scores(weights: torch.Tensor) -> dict[str, float]:
    """How much of one head's attention goes where, averaged over queries 1..n-1 (query 0 can only
    attend to itself, so it is left out):

    "previous": mean_i w[i, i-1];  "first": mean_i w[i, 0];  "self": mean_i w[i, i].

    weights: (n, n) with n >= 2. Each score lies in [0, 1]."""
    check_ndim("weights", weights, 2, "(n_q, n_k)")
    n = weights.shape[0]
    if n < 2 or weights.shape[1] != n:
        raise ValueError(f"weights must be square with n >= 2, got shape {tuple(weights.shape)}")
    i = torch.arange(1, n)
    w = weights.double()
    return {"previous": float(w[i, i - 1].mean()), "first": float(w[i, 0].mean()), "self": float(w[i, i].mean())}


def pattern_grid(sentence_maps: Sequence[Sequence[torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Each pattern's score for every head, averaged over sentences: {pattern: (n_layers, n_heads)}.

    sentence_maps: one entry per sentence, each as returned by :func:`attention_maps` (per layer
    (n_heads, n, n)); the sentences may differ in length."""
    if not sentence_maps:
        raise ValueError("sentence_maps must hold the maps of at least one sentence")
    n_layers, n_heads = len(sentence_maps[0]), sentence_maps[0][0].shape[0]
    grid = {p: torch.zeros(n_layers, n_heads, dtype=torch.float64) for p in PATTERNS}
    for maps in sentence_maps:
        if len(maps) != n_layers or any(m.shape[0] != n_heads for m in maps):
            raise ValueError("every sentence's maps must come from the same model (layers and heads)")
        for layer, m in enumerate(maps):
            for head in range(n_heads):
                for p, score in head_pattern_scores(m[head]).items():
                    grid[p][layer, head] += score / len(sentence_maps)
    return grid


def rank_heads(sentence_maps: Sequence[Sequence[torch.Tensor]], pattern: str) -> list[tuple[int, int, float]]:
    """All (layer, head, score) for ``pattern`` (a key of :data:`PATTERNS`), highest score first, the
    score averaged over sentences as in :func:`pattern_grid`."""
    if pattern not in PATTERNS:
        raise ValueError(f"pattern={pattern!r} must be one of {list(PATTERNS)}")
    g = pattern_grid(sentence_maps)[pattern]
    rows = [(layer, head, float(g[layer, head])) for layer in range(g.shape[0]) for head in range(g.shape[1])]
    return sorted(rows, key=lambda r: (-r[2], r[0], r[1]))


def token_labels(tokenizer: BPETokenizer, ids: Sequence[int]) -> list[str]:
    """One printable label per token: its text with spaces as ``·`` and newlines as ``↵``
    (:func:`attnlab.tokenization.visible_token`)."""
    return [visible_token(tokenizer.token_bytes(int(t))) for t in ids]


@dataclass(frozen=True)
class MapState:
    """What the chapter 3 widget shows: ``sentence`` (a key of the widget's sentences), ``layer``, ``head``."""

    sentence: str
    layer: int = 0
    head: int = 0


def map_view(maps: Sequence[torch.Tensor], tokens: Sequence[str], layer: int, head: int) -> dict:
    """The weights (n, n) of ``head`` in ``layer``, their pattern scores and a title, for one sentence."""
    if not 0 <= layer < len(maps):
        raise ValueError(f"layer={layer} must be in [0, {len(maps)})")
    if not 0 <= head < maps[layer].shape[0]:
        raise ValueError(f"head={head} must be in [0, {maps[layer].shape[0]})")
    weights = maps[layer][head]  # (n, n)
    if len(tokens) != weights.shape[-1]:
        raise ValueError(f"len(tokens)={len(tokens)} must equal the sequence length {weights.shape[-1]}")
    return {"weights": weights, "scores": head_pattern_scores(weights), "tokens": list(tokens),
            "title": f"layer {layer}, head {head}"}


def map_figure(view: dict, ax=None, size: float | None = None):
    """Draw ``view`` (from :func:`map_view`) with :func:`attnlab.plots.attention_heatmap`, labels at a
    projectable size. Returns the Figure (a new one unless ``ax`` is given)."""
    n = len(view["tokens"])
    if ax is None:
        size = size or max(4.0, min(8.0, 0.24 * n + 1.8))
        fig, ax = plt.subplots(figsize=(size, size))
    else:
        fig = ax.figure
    attention_heatmap(view["weights"], view["tokens"], ax=ax, title=view["title"])
    ax.tick_params(labelsize=FONT_SIZE - 1)
    ax.title.set_fontsize(FONT_SIZE + 2)
    ax.xaxis.label.set_fontsize(FONT_SIZE)
    ax.yaxis.label.set_fontsize(FONT_SIZE)
    return fig


def map_readout_html(view: dict) -> str:
    """The pattern scores of the shown head as an HTML table (mean weight per query, queries 1..n-1)."""
    rows = "".join(f"<tr><td>{html.escape(PATTERNS[k])}</td><td><b>{v:.1%}</b></td></tr>"
                   for k, v in view["scores"].items())
    style = "border-collapse:collapse;font-size:14px;font-variant-numeric:tabular-nums"
    return (f"<p style='font-size:14px'><b>{html.escape(view['title'])}</b>: mean weight on</p>"
            f"<table style='{style}'>{rows}</table>")


@dataclass
class MapControls:
    """The chapter 3 widget's children, so a test (or a curious learner) can set them from code."""

    sentence: widgets.Dropdown
    layer: widgets.Dropdown
    head: widgets.Dropdown
    image: widgets.Image
    readout: widgets.HTML


@dataclass
class _Sentence:
    ids: list[int]
    tokens: list[str]
    maps: list[torch.Tensor] = field(default_factory=list)


class AttentionMapExplorer(widgets.VBox):
    """The container :func:`attention_map_explorer` returns; ``.controls`` holds its child widgets."""

    def __init__(self, model: TinyLM, tokenizer: BPETokenizer, sentences: Mapping[str, str],
                 layer: int = 0, head: int = 0) -> None:
        if not sentences:
            raise ValueError("sentences must hold at least one {label: text} entry")
        self._model, self._tokenizer = model, tokenizer
        self._sentences: dict[str, str] = dict(sentences)
        self._cache: dict[str, _Sentence] = {}
        for label in self._sentences:
            self._prepare(label)  # validate every sentence now, not in a callback
        n_layers, n_heads = model.config.n_layers, model.config.n_heads
        style = {"description_width": "70px"}
        self.controls = c = MapControls(
            sentence=widgets.Dropdown(options=list(self._sentences), value=next(iter(self._sentences)),
                                      description="sentence", style=style, layout=widgets.Layout(width="420px")),
            layer=widgets.Dropdown(options=list(range(n_layers)), value=layer, description="layer", style=style,
                                   layout=widgets.Layout(width="160px")),
            head=widgets.Dropdown(options=list(range(n_heads)), value=head, description="head", style=style,
                                  layout=widgets.Layout(width="160px")),
            image=widgets.Image(format="png", layout=widgets.Layout(max_width="100%")),
            readout=widgets.HTML(),
        )
        super().__init__([row(c.sentence, c.layer, c.head),
                          row(c.image, c.readout)])
        for w in (c.sentence, c.layer, c.head):
            w.observe(self._refresh, names="value")
        self._refresh()

    def _prepare(self, label: str) -> _Sentence:
        if label not in self._cache:
            ids = self._tokenizer.encode(self._sentences[label])
            if not 2 <= len(ids) <= self._model.config.max_seq_len:
                raise ValueError(f"sentence {label!r} has {len(ids)} tokens; it needs 2 to "
                                 f"{self._model.config.max_seq_len}")
            maps = attention_maps(self._model, torch.tensor(ids))
            self._cache[label] = _Sentence(ids, token_labels(self._tokenizer, ids), maps)
        return self._cache[label]

    def state(self) -> MapState:
        """The current :class:`MapState` read from the dropdowns."""
        c = self.controls
        return MapState(sentence=c.sentence.value, layer=c.layer.value, head=c.head.value)

    def view(self) -> dict:
        """What is shown now: :func:`map_view` of the current state."""
        s = self.state()
        sentence = self._prepare(s.sentence)
        return map_view(sentence.maps, sentence.tokens, s.layer, s.head)

    def _refresh(self, change: dict | None = None) -> None:
        view = self.view()
        self.controls.readout.value = map_readout_html(view)
        self.controls.image.value = figure_png(map_figure(view), dpi=100)

    def __repr__(self) -> str:
        # Short and deterministic: the notebook stores it as the cell's plain-text output.
        return f"AttentionMapExplorer(sentences={len(self._sentences)})"


def attention_map_explorer(model: TinyLM, tokenizer: BPETokenizer, sentences: Mapping[str, str],
                           layer: int = 0, head: int = 0) -> AttentionMapExplorer:
    """Return the chapter 3 widget: dropdowns for a sentence (``{label: text}``), a layer and a head
    (only the model's own), above that head's attention heatmap (an ``ipywidgets.Image``) and the share
    of its weight on the previous token, the first token and the token itself."""
    return AttentionMapExplorer(model, tokenizer, sentences, layer, head)
