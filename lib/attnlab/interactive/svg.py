"""Small SVG and HTML builders shared by the chapter widgets (deterministic markup, crisp when projected)."""

from __future__ import annotations

import html
from collections.abc import Sequence

FONT = 'font-family="DejaVu Sans, Arial, sans-serif"'


def svg_open(width: int, height: int, font_size: int = 13) -> list[str]:
    """The opening ``<svg>`` tag of a width x height drawing on a white background (close with ``</svg>``)."""
    return [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" {FONT} font-size="{font_size}">',
            f'<rect width="{width}" height="{height}" fill="white"/>']


def svg_text(x: float, y: float, text: str, **attrs: object) -> str:
    """A ``<text>`` element at (x, y); keyword ``text_anchor="end"`` becomes ``text-anchor="end"``."""
    extra = "".join(f' {k.replace("_", "-")}="{v}"' for k, v in attrs.items())
    return f'<text x="{x:.1f}" y="{y:.1f}"{extra}>{html.escape(text)}</text>'


def html_table(rows: Sequence[tuple[str, str]]) -> str:
    """A two-column HTML table of (label, bold value) rows with tabular figures."""
    cells = "".join(
        f'<tr><td style="padding:2px 12px 2px 0">{html.escape(k)}</td>'
        f'<td style="padding:2px 0;font-variant-numeric:tabular-nums"><b>{html.escape(v)}</b></td></tr>'
        for k, v in rows
    )
    return f'<table style="border-collapse:collapse;font-size:14px">{cells}</table>'
