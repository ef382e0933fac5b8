"""Plots shared by the chapters, drawn with matplotlib in one style (colours per role, defined once)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import torch

from attnlab.schemes import SCHEMES, get_scheme

if TYPE_CHECKING:
    from attnlab.quality import Study

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


def seed_spread(study: Study, schemes: Sequence[str] | None = None, ax=None, title: str | None = None):
    """Validation loss of a :class:`~attnlab.quality.Study`, one column per scheme: every seed a dot, the mean a
    bar with whiskers at mean +- one sample standard deviation, the value printed beside it. Returns the Axes."""
    schemes = study.schemes() if schemes is None else tuple(schemes)
    if ax is None:
        _, ax = plt.subplots(figsize=(1.5 * len(schemes) + 2.5, 3.6))
    for x, scheme in enumerate(schemes):
        s, losses = study.summary(scheme), study.losses(scheme)
        colour = get_scheme(scheme).color  # a scheme's or a variant's (gqa_hybrid) colour
        offsets = [0.12 * (i - (len(losses) - 1) / 2) for i in range(len(losses))]
        ax.scatter([x + o for o in offsets], list(losses.values()), s=26, color=colour, alpha=0.75, zorder=3,
                   edgecolors="white", linewidths=0.5)
        ax.errorbar([x + 0.3], [s.mean], yerr=[[s.std], [s.std]], fmt="_", ms=18, mew=2.5, color=colour,
                    capsize=4, elinewidth=1.5, zorder=4)
        ax.annotate(f"{s.mean:.3f}\n± {s.std:.3f}", (x + 0.38, s.mean), textcoords="offset points",
                    xytext=(4, 0), va="center", fontsize=8.5, color=colour)
    labels = [get_scheme(scheme).label + ("\n(sparse)" if scheme == "dsa" else "") for scheme in schemes]
    ax.set_xticks(range(len(schemes)), labels)
    ax.set_xlim(-0.5, len(schemes) - 0.1)
    ax.set_ylabel("validation loss (nats / token)")
    ax.set_title(title or f"{len(study.losses(schemes[0]))} seeds per scheme: dots, mean ± std", fontsize=10)
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(True, axis="y", alpha=0.3)
    return ax


def seed_curves(study: Study, schemes: Sequence[str] | None = None, ax=None, title: str | None = None):
    """The validation loss while training, per scheme of a :class:`~attnlab.quality.Study`: the mean over seeds
    as a line, the band between the best and the worst seed shaded. Returns the Axes."""
    schemes = study.schemes() if schemes is None else tuple(schemes)
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.6))
    for scheme in schemes:
        runs = [r for r in study.runs if r.scheme == scheme]
        steps = runs[0].history["step"]
        curves = torch.tensor([r.history["val_loss"] for r in runs])  # (seeds, evaluations)
        colour = get_scheme(scheme).color
        ax.plot(steps, curves.mean(0).tolist(), "o-", ms=3.5, lw=2, color=colour,
                label=f"{get_scheme(scheme).label} (mean of {len(runs)} seeds)")
        ax.fill_between(steps, curves.min(0).values.tolist(), curves.max(0).values.tolist(), color=colour,
                        alpha=0.18, lw=0)
    ax.set(xlabel="training step", ylabel="validation loss (nats / token)")
    ax.set_title(title or "Validation loss while training: mean line, best-to-worst seed band", fontsize=10)
    ax.legend(frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    return ax
