"""The shape every exercise check shares."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable


def run_check(name: str, answer: object, check: Callable[[object], str]) -> str:
    """Return "not attempted" for ``answer is None``; else run ``check`` (which asserts) and return
    ``"✓ <name>: <what it verified>"``. Failing asserts propagate with their hint."""
    if answer is None:
        return f"… {name}: not attempted yet (replace None with your answer and run the cell again)"
    return f"✓ {name}: {check(answer)}"


def as_number(answer: object, what: str) -> float:
    """``answer`` as a float; an ``AssertionError`` naming ``what`` unless it is a finite real number
    (``True``/``False`` are not numbers here)."""
    assert isinstance(answer, numbers.Real) and not isinstance(answer, bool), (
        f"{what} should be a number, got {type(answer).__name__} {answer!r}"
    )
    value = float(answer)
    assert math.isfinite(value), f"{what} should be finite, got {answer!r}"
    return value


def as_integer(answer: object, what: str) -> int:
    """``answer`` as an int; an ``AssertionError`` naming ``what`` unless it is a whole real number."""
    value = as_number(answer, what)
    assert value == int(value), f"{what} should be a whole number, got {answer!r}"
    return int(value)
