"""The shape every exercise check shares."""

from __future__ import annotations

from collections.abc import Callable


def run_check(name: str, answer: object, check: Callable[[object], str]) -> str:
    """Return "not attempted" for ``answer is None``; else run ``check`` (which asserts) and return
    ``"✓ <name>: <what it verified>"``. Failing asserts propagate with their hint."""
    if answer is None:
        return f"… {name}: not attempted yet (replace None with your answer and run the cell again)"
    return f"✓ {name}: {check(answer)}"
