"""Plots shared by the chapters, drawn with matplotlib in one style (colours per role, defined once)."""

from __future__ import annotations

import io
import statistics
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import torch

from attnlab.schemes import SCHEMES, get_scheme

#: One colour per role, shared by plots, widgets and animations.
COLORS = {
    "query": "#1f77b4",  # blue
    "key": "#2ca02c",  # green
    "value": "#ff7f0e",  # orange
    "latent": "#9467bd",  # purple
    "cache": "#d62728",  # red
    "rope": "#8c564b",  # brown
    "index": "#17becf",  # teal
    "muted": "#7f7f7f",  # grey
}

#: Colour per attention scheme, used by every bar chart that compares them (:attr:`attnlab.schemes.Scheme.color`).
SCHEME_COLORS = {key: scheme.color for key, scheme in SCHEMES.items()}


def attention_heatmap(weights: torch.Tensor, tokens: Sequence[str] | None = None,
                      query_tokens: Sequence[str] | None = None, ax=None, title: str | None = None,
                      cmap: str = "Blues", vmax: float | None = None):
    """Draw an attention matrix (n_q, n_k) as a heatmap: rows are queries, columns keys, darker = more weight.

    tokens label the keys (and the queries, unless query_tokens is given). vmax caps the colour scale
    (default: the largest weight; row 0 always puts 1.0 on its only key, so pass e.g. the largest weight
    off row 0 to make the other rows readable). Returns the Axes."""
    w = weights.detach().to("cpu", torch.float32)
    if w.dim() != 2:
        raise ValueError(f"weights must be 2-D (n_q, n_k), got shape {tuple(w.shape)}")
    if tokens is not None:
        if len(tokens) != w.shape[1]:
            raise ValueError(f"len(tokens)={len(tokens)} must equal the number of keys n_k={w.shape[1]}")
        if query_tokens is None and w.shape[0] > w.shape[1]:
            raise ValueError(f"n_q={w.shape[0]} > n_k={w.shape[1]}: pass query_tokens to label the queries")
        if query_tokens is not None and len(query_tokens) != w.shape[0]:
            raise ValueError(f"len(query_tokens)={len(query_tokens)} must equal the number of queries "
                             f"n_q={w.shape[0]}")
    if ax is None:
        size = max(3.0, min(9.0, 0.32 * w.shape[1] + 1.5))
        _, ax = plt.subplots(figsize=(size, size * w.shape[0] / w.shape[1] + 0.4))
    ax.imshow(w.numpy(), cmap=cmap, vmin=0.0, vmax=vmax if vmax is not None else (float(w.max()) or 1.0), aspect="auto")
    if tokens is not None:
        ax.set_xticks(range(len(tokens)), [repr(t)[1:-1] for t in tokens], rotation=90, fontsize=9)
        q_labels = list(query_tokens) if query_tokens is not None else list(tokens)[-w.shape[0]:]
        ax.set_yticks(range(w.shape[0]), [repr(t)[1:-1] for t in q_labels], fontsize=9)
    ax.set_xlabel("key (attended to)")
    ax.set_ylabel("query (attending)")
    if title:
        ax.set_title(title)
    return ax


def figure_png(fig, dpi: int = 110) -> bytes:
    """Render a matplotlib figure to PNG bytes (for an ``ipywidgets.Image``) and close it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def seed_spread(losses: Mapping[str, Mapping[int, float]], ax=None, title: str | None = None,
                ylabel: str = "validation loss (nats per token)"):
    """Each scheme's loss over its seeds, side by side: one marker per seed (the scheme's colour and marker from
    :mod:`attnlab.schemes`), a bar from mean - std to mean + std (sample standard deviation, n - 1) and a line at
    the mean, so a gap between two schemes can be read against the seeds' own spread.

    ``losses``: {scheme key: {seed: loss}} in the order to draw, e.g. ``{s: study.losses(s) for s in ("mha",
    "gqa", "gqa_hybrid")}`` of an :class:`attnlab.quality.Study`; every scheme needs at least 2 seeds.
    Returns the Axes."""
    if not isinstance(losses, Mapping) or not losses:
        raise ValueError(f"losses must be a non-empty mapping {{scheme: {{seed: loss}}}}, got {losses!r}")
    for key, by_seed in losses.items():
        get_scheme(key, "losses' key")
        if not isinstance(by_seed, Mapping) or len(by_seed) < 2:
            raise ValueError(f"losses[{key!r}] must map at least 2 seeds to their losses (a spread needs two), "
                             f"got {by_seed!r}")
    if ax is None:
        _, ax = plt.subplots(figsize=(1.6 + 1.3 * len(losses), 3.4))
    for x, (key, by_seed) in enumerate(losses.items()):
        record, values = get_scheme(key), [float(v) for v in by_seed.values()]
        mean, std = statistics.fmean(values), statistics.stdev(values)
        ax.bar(x, 2 * std, bottom=mean - std, width=0.5, color=record.color, alpha=0.25, edgecolor="none")
        ax.hlines(mean, x - 0.25, x + 0.25, color=record.color, lw=2)
        offsets = [0.16 * (i - (len(values) - 1) / 2) for i in range(len(values))]  # seeds side by side
        ax.scatter([x + o for o in offsets], values, color=record.color, marker=record.marker, s=28, zorder=3,
                   edgecolor="white", linewidth=0.6)
    ax.set_xticks(range(len(losses)), [get_scheme(key).label for key in losses])
    ax.set_xlim(-0.6, len(losses) - 0.4)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3, axis="y")
    if title:
        ax.set_title(title, fontsize=10)
    return ax
