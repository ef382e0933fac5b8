"""Show the library's own code inside a notebook, so a chapter displays the lines it runs."""

from __future__ import annotations

import inspect
import textwrap
from pathlib import Path

#: Highlighting for source files shown by path (the library's one C kernel); objects are Python.
LANGUAGES = {".c": "c", ".py": "python"}


def source_lines(obj: object, start: str | None = None, stop: str | None = None) -> str:
    """Return the source of ``obj`` (function, class or method, or a source file's :class:`~pathlib.Path`), cut
    to the lines between the first line containing ``start`` and the first line from there on containing
    ``stop`` (both included) when given.

    ``stop`` may match the start line itself: ``start=stop`` shows that one line."""
    text = obj.read_text(encoding="utf-8") if isinstance(obj, Path) else inspect.getsource(obj)
    lines = textwrap.dedent(text).splitlines()
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
    """Display the (optionally cut) source of ``obj`` as a highlighted block in a notebook: Python, or the
    language of a source file given by path (:data:`LANGUAGES`)."""
    from IPython.display import Markdown

    language = LANGUAGES.get(obj.suffix, "") if isinstance(obj, Path) else "python"
    return Markdown(f"```{language}\n{source_lines(obj, start, stop)}\n```")
