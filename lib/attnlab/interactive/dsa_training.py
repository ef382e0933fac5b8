"""The widget of chapter 12 (DSA training): what the lightning indexer picks, against what attention wants.

For one text, :func:`probe_indexer` runs a DSA model once with dense attention and records, in every
layer and for every query position t:

- the true attention p_t = sum_i a_{t,i,:} / ||sum_i a_{t,i,:}||_1 (main attention summed over heads,
  L1-normalised), the target of the indexer's training;
- the indexer's distribution Softmax(I_t) over the tokens s <= t, what the KL compares p_t with;
- the indexer's top-k S_t (the tokens sparse attention would read) and the true attention's top-k T_t.

:func:`query_stats` turns one (layer, position) into numbers (recall |T_t ∩ S_t| / |T_t|, the share of
p_t that S_t keeps, KL(p_t || Softmax(I_t))), :func:`query_figure` into a bar chart and
:func:`query_html` into a readout, all pure. :func:`indexer_explorer` wraps them in ipywidgets (an
indexer menu to compare an untrained and a trained one, a layer menu and a position slider); its
callbacks only set an Image and an HTML widget.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import ipywidgets as widgets
import matplotlib.pyplot as plt
import torch

from attnlab._validate import check_positive_int
from attnlab.dsa import selection_mask, topk_indices
from attnlab.dsa_training import attention_mode
from attnlab.model import TinyLM
from attnlab.plots import COLORS, figure_png
from attnlab.tokenization import BPETokenizer, visible_token
from attnlab.widgets import row

#: Bars of keys outside the indexer's top-k.
_UNSELECTED = "#c8c8c8"


@dataclass(frozen=True)
class IndexerProbe:
    """One text through one DSA model. ``tokens`` (display text) and ``ids`` of the seq tokens;
    ``top_k`` [k]; ``attention`` (n_layers, seq, seq): row t is p_t (zero after t); ``index_dist``
    (n_layers, seq, seq): row t is Softmax(I_t) (zero after t); ``selected`` and ``true_top``
    (n_layers, seq, k'): the indexer's and the true attention's top-k positions, k' = min(k, seq), -1 where
    a query has fewer than k tokens; ``name``: which indexer this is (for the readout)."""

    tokens: tuple[str, ...]
    ids: tuple[int, ...]
    top_k: int
    attention: torch.Tensor
    index_dist: torch.Tensor
    selected: torch.Tensor
    true_top: torch.Tensor
    name: str = ""

    @property
    def n_layers(self) -> int:
        return self.attention.shape[0]

    @property
    def seq_len(self) -> int:
        return self.attention.shape[1]


@torch.no_grad()
def probe_indexer(model: TinyLM, tokenizer: BPETokenizer, text: str | Sequence[int], top_k: int | None = None,
                  name: str = "") -> IndexerProbe:
    """Run ``model`` (a DSA TinyLM) on ``text`` (a str, or token ids) with dense attention and record
    p_t, Softmax(I_t) and both top-k sets (``top_k`` None: the model's index_topk) in every layer."""
    if not isinstance(model, TinyLM) or model.config.attention != "dsa":
        raise ValueError("model must be a TinyLM with attention='dsa'")
    ids = tokenizer.encode(text) if isinstance(text, str) else [int(i) for i in text]
    if not ids:
        raise ValueError("text must hold at least one token")
    if len(ids) > model.config.max_seq_len:
        raise ValueError(f"text has {len(ids)} tokens, more than max_seq_len={model.config.max_seq_len}")
    k = model.config.index_topk if top_k is None else check_positive_int("top_k", top_k)
    ids_t = torch.tensor([ids], device=model.embed.weight.device)
    p_rows, q_rows, sel_rows, top_rows = [], [], [], []
    with attention_mode(model, dense=True, keep=True) as layers:
        model.eval()
        model(ids_t)
        for layer in layers:
            weights, scores, _ = layer.kl_inputs  # (1, h, s, s), (1, s, s)
            visible = torch.isfinite(scores)
            p = weights.sum(dim=1).double()
            p = p / p.sum(dim=-1, keepdim=True)  # L1-normalised over the visible keys
            p_rows.append(p[0].float())
            q_rows.append(torch.softmax(scores.double(), dim=-1)[0].float())
            sel_rows.append(topk_indices(scores, k)[0])
            top_rows.append(topk_indices(p.masked_fill(~visible, float("-inf")), k)[0])
    return IndexerProbe(tokens=tuple(visible_token(tokenizer.vocab[i]) for i in ids), ids=tuple(ids), top_k=k,
                        attention=torch.stack(p_rows).cpu(), index_dist=torch.stack(q_rows).cpu(),
                        selected=torch.stack(sel_rows).cpu(), true_top=torch.stack(top_rows).cpu(), name=name)


def _check_query(probe: IndexerProbe, layer: object, position: object) -> None:
    if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < probe.n_layers:
        raise ValueError(f"layer={layer!r} must be an int in [0, {probe.n_layers})")
    if isinstance(position, bool) or not isinstance(position, int) or not 0 <= position < probe.seq_len:
        raise ValueError(f"position={position!r} must be an int in [0, {probe.seq_len})")


def _as_set(indices: torch.Tensor) -> set[int]:
    return {int(i) for i in indices.tolist() if i >= 0}


def query_stats(probe: IndexerProbe, layer: int, position: int) -> dict:
    """Numbers for query ``position`` in ``layer``: n_visible (t + 1), n_selected (min(k, t + 1)),
    recall |T_t ∩ S_t| / |T_t|, mass (sum of p_t over S_t: the share of the true attention the sparse
    attention keeps), kl KL(p_t || Softmax(I_t)) in nats, and the best key of p_t and of the indexer."""
    _check_query(probe, layer, position)
    p = probe.attention[layer, position, : position + 1].double()
    q = probe.index_dist[layer, position, : position + 1].double()
    selected, true_top = _as_set(probe.selected[layer, position]), _as_set(probe.true_top[layer, position])
    kl = float((torch.xlogy(p, p) - p * torch.log(q.clamp_min(1e-300))).sum())
    return {
        "n_visible": position + 1,
        "n_selected": len(selected),
        "recall": len(selected & true_top) / len(true_top),
        "mass": float(p[sorted(selected)].sum()),
        "kl": kl,
        "best_true": int(p.argmax()),
        "best_index": int(q.argmax()),
    }


def query_figure(probe: IndexerProbe, layer: int, position: int):
    """Two bar charts over the keys s <= t of query ``position``: above, the true attention p_t; below,
    the indexer's Softmax(I_t). Keys the indexer selects are coloured (``COLORS["index"]``), the others
    grey, and a square under the upper axis marks each selected key (visible even where its bar is tiny);
    a dot marks the true attention's top-k. Returns the matplotlib Figure."""
    stats = query_stats(probe, layer, position)
    n = position + 1
    selected = selection_mask(probe.selected[layer, position][None, None], probe.seq_len)[0, 0, :n]
    true_top = selection_mask(probe.true_top[layer, position][None, None], probe.seq_len)[0, 0, :n]
    colours = [COLORS["index"] if s else _UNSELECTED for s in selected.tolist()]
    p = probe.attention[layer, position, :n]
    q = probe.index_dist[layer, position, :n]
    width = min(13.0, max(6.0, 0.13 * n + 2.5))
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(width, 5.2), sharex=True)
    x = range(n)
    ax1.bar(x, p.tolist(), color=colours, width=0.85)
    top = float(p.max())
    marks = [i for i in range(n) if true_top[i]]
    ax1.scatter(marks, [float(p[i]) + 0.04 * top for i in marks], s=9, color=COLORS["cache"], zorder=3,
                label=f"true top-{probe.top_k}")
    chosen = [i for i in range(n) if selected[i]]
    ax1.scatter(chosen, [-0.05 * top] * len(chosen), s=10, marker="s", color=COLORS["index"], zorder=3,
                label=f"indexer's top-{probe.top_k}")
    ax1.set_ylim(-0.09 * top, 1.12 * top)
    ax1.set_ylabel("true attention $p_t$")
    ax1.legend(loc="upper left", fontsize=9, frameon=False)
    ax2.bar(x, q.tolist(), color=colours, width=0.85)
    ax2.set_ylabel("indexer Softmax$(I_t)$")
    ax2.invert_yaxis()
    query = probe.tokens[position]
    who = f"{probe.name}: " if probe.name else ""
    ax1.set_title(f"{who}layer {layer}, query {position} ('{query}'): coloured = the indexer's top-{probe.top_k}; "
                  f"recall {stats['recall']:.2f}, attention kept {stats['mass']:.2f}", fontsize=11)
    ax2.set_xticks(list(x), list(probe.tokens[:n]), rotation=90, fontsize=7)
    ax2.set_xlabel("key position s <= t")
    for ax in (ax1, ax2):
        ax.grid(axis="y", alpha=0.3)
        ax.set_xlim(-0.7, n - 0.3)
        ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout(h_pad=0.3)
    return fig


def query_png(probe: IndexerProbe, layer: int, position: int, dpi: int = 90) -> bytes:
    """:func:`query_figure` rendered to PNG bytes (for an ``ipywidgets.Image``)."""
    return figure_png(query_figure(probe, layer, position), dpi=dpi)


def query_html(probe: IndexerProbe, layer: int, position: int) -> str:
    """A readout of :func:`query_stats` (pure: same arguments, same string)."""
    s = query_stats(probe, layer, position)
    if s["n_visible"] <= probe.top_k:
        choice = (f"Query {position} sees {s['n_visible']} tokens, no more than k = {probe.top_k}: sparse "
                  "attention keeps them all, so nothing can be missed here. Move right of position "
                  f"{probe.top_k - 1} to see the indexer choose.")
    else:
        choice = (f"Query {position} sees {s['n_visible']} tokens and keeps k = {probe.top_k} of them; "
                  f"{s['n_visible'] - probe.top_k} are dropped.")
    tok = probe.tokens
    rows = [
        ("Recall: true top-k found by the indexer", f"{s['recall']:.0%}"),
        ("Share of the true attention on the kept tokens", f"{s['mass']:.0%}"),
        ("KL(p_t || Softmax(I_t))", f"{s['kl']:.3f} nats"),
        ("Strongest key, true attention", f"{s['best_true']} ({tok[s['best_true']]})"),
        ("Strongest key, indexer", f"{s['best_index']} ({tok[s['best_index']]})"),
    ]
    table = "".join(
        f'<tr><td style="padding:1px 12px 1px 0">{html.escape(k)}</td>'
        f'<td style="padding:1px 0;font-variant-numeric:tabular-nums"><b>{html.escape(v)}</b></td></tr>'
        for k, v in rows
    )
    name = f"<b>{html.escape(probe.name)}</b> · " if probe.name else ""
    return (f'<div style="font-size:14px;max-width:900px">{name}{html.escape(choice)}'
            f'<table style="border-collapse:collapse;margin-top:4px">{table}</table></div>')


class IndexerExplorer(widgets.VBox):
    """The container :func:`indexer_explorer` returns: ``.probes`` (name -> :class:`IndexerProbe`), the
    controls ``.indexer``, ``.layer``, ``.position``, and the views ``.image`` and ``.readout``."""

    def __init__(self, probes: Mapping[str, IndexerProbe], layer: int | None = None,
                 position: int | None = None) -> None:
        if not probes:
            raise ValueError("probes must hold at least one IndexerProbe")
        self.probes = dict(probes)
        first = next(iter(self.probes.values()))
        shapes = {(p.n_layers, p.seq_len, p.ids) for p in self.probes.values()}
        if len(shapes) != 1:
            raise ValueError("every probe must come from the same text and the same number of layers")
        layer = first.n_layers - 1 if layer is None else layer
        position = first.seq_len - 1 if position is None else position
        _check_query(first, layer, position)
        style = {"description_width": "70px"}
        names = list(self.probes)
        self.indexer = widgets.Dropdown(options=names, value=names[-1], description="indexer", style=style,
                                        layout=widgets.Layout(width="330px"))
        self.layer = widgets.Dropdown(options=list(range(first.n_layers)), value=layer, description="layer",
                                      style=style, layout=widgets.Layout(width="150px"))
        self.position = widgets.IntSlider(value=position, min=0, max=first.seq_len - 1, description="query",
                                          style=style, layout=widgets.Layout(width="520px"))
        self.image = widgets.Image(format="png", layout=widgets.Layout(max_width="100%"))
        self.readout = widgets.HTML()
        for control in (self.indexer, self.layer, self.position):
            control.observe(self._refresh, names="value")
        super().__init__([row(self.indexer, self.layer), self.position, self.image, self.readout])
        self._refresh()

    @property
    def probe(self) -> IndexerProbe:
        """The probe the indexer menu names."""
        return self.probes[self.indexer.value]

    def _refresh(self, change: dict | None = None) -> None:
        # A callback: it only sets the Image's and the HTML widget's values.
        self.image.value = query_png(self.probe, self.layer.value, self.position.value)
        self.readout.value = query_html(self.probe, self.layer.value, self.position.value)

    def __repr__(self) -> str:
        # A short, deterministic text form (the notebook stores it as the cell's plain-text output).
        return f"IndexerExplorer(indexers={list(self.probes)}, tokens={next(iter(self.probes.values())).seq_len})"


def indexer_explorer(models: Mapping[str, TinyLM], tokenizer: BPETokenizer, text: str | Sequence[int],
                     top_k: int | None = None, layer: int | None = None,
                     position: int | None = None) -> IndexerExplorer:
    """The chapter's widget: for each named DSA model (e.g. an untrained and a trained indexer on the same
    MLA weights), :func:`probe_indexer` on ``text``; menus pick the indexer and the layer, a slider the
    query position (default: the last layer and the last token)."""
    if not isinstance(models, Mapping) or not models:
        raise ValueError("models must be a non-empty mapping of name -> DSA TinyLM")
    probes = {name: probe_indexer(m, tokenizer, text, top_k, name=name) for name, m in models.items()}
    return IndexerExplorer(probes, layer, position)


def recall_curve(probe: IndexerProbe, layer: int | None = None) -> torch.Tensor:
    """Recall at every query position (seq,), in one layer or averaged over layers (``layer`` None)."""
    layers = range(probe.n_layers) if layer is None else [layer]
    rows = []
    for l in layers:
        _check_query(probe, l, 0)
        n = probe.seq_len
        sel = selection_mask(probe.selected[l][None], n)[0]
        top = selection_mask(probe.true_top[l][None], n)[0]
        rows.append((sel & top).sum(-1) / top.sum(-1))
    return torch.stack(rows).mean(0)
