"""Show the library's own code inside a notebook, so a chapter displays the lines it runs."""

from __future__ import annotations

import inspect
import textwrap


def source_lines(obj: object, start: str | None = None, stop: str | None = None) -> str:
    """Return the source of ``obj`` (function, class or method), cut to the lines between the first line
    containing ``start`` and the first line from there on containing ``stop`` (both included) when given.

    ``stop`` may match the start line itself: ``start=stop`` shows that one line."""
    lines = textwrap.dedent(inspect.getsource(obj)).splitlines()
    if start is not None:
        idx = next((i for i, line in enumerate(lines) if start in line), None)
        if idx is None:
            raise ValueError(f"start={start!r} does not occur in the source of {obj!r}")
        lines = lines[idx:]
    if stop is not None:
        idx = next((i for i, line in enumerate(lines) if stop in line), None)
        if idx is None:
            raise ValueError(f"stop={stop!r} does not occur in the source after start")
        lines = lines[: idx + 1]
    return textwrap.dedent("\n".join(lines))


def show_source(obj: object, start: str | None = None, stop: str | None = None):
    """Display the (optionally cut) source of ``obj`` as a highlighted Python block in a notebook."""
    from IPython.display import Markdown

    return Markdown(f"```python\n{source_lines(obj, start, stop)}\n```")
