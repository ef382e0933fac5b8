"""The shape every exercise check shares, and the guard that enforces what an exercise forbids.

:func:`call_answer` runs a learner's function under a :class:`Guard`: it records every call of a forbidden
:class:`Shortcut` (a function, however imported; a whole module; a torch function or Tensor method) and lets
:class:`DerivedShapeWatch` look at the shape of every tensor the learner computes, so that a check can reject
an answer that gets the right numbers the wrong way. :func:`run_prediction` runs a "predict, then run"
question.
"""

from __future__ import annotations

import inspect
import math
import numbers
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import CodeType, ModuleType

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


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


# ----------------------------------------------------------------------------------------------------
# shortcuts an exercise forbids, and shapes it must never see


@dataclass(frozen=True)
class Shortcut:
    """A callable an exercise forbids.

    ``label`` names it in the failure message; ``targets`` are what counts as calling it: a Python function
    (however it was imported: the check watches its code object, not a module attribute), a module (every
    function defined at its top level), or a torch function or ``Tensor`` method (seen by a
    :class:`~torch.overrides.TorchFunctionMode`, which catches ``torch.softmax``, ``F.softmax`` and
    ``x.softmax`` alike); ``instead`` says what the exercise asks for.
    """

    label: str
    targets: tuple[object, ...]
    instead: str


#: A watcher sees every ATen operation run during the learner's call: ``(func, inputs, outputs)`` with the
#: tensors flattened out of the arguments and the result; it returns a failure message, or None.
Watcher = Callable[[object, list, list], "str | None"]


def _callables(target: object) -> list[object]:
    """``target`` itself, or for a module every function defined at its top level (cached ones included)."""
    if isinstance(target, ModuleType):
        return [fn for fn in vars(target).values()
                if callable(fn) and not isinstance(fn, type) and getattr(fn, "__module__", None) == target.__name__]
    return [target]


def _code_object(fn: object) -> CodeType | None:
    """The code object whose execution counts as calling ``fn`` (None for a builtin)."""
    code = getattr(inspect.unwrap(fn), "__code__", None)
    return code if isinstance(code, CodeType) else None


def _tensors(tree: object) -> list[torch.Tensor]:
    return [t for t in tree_flatten(tree)[0] if isinstance(t, torch.Tensor)]


class _TorchWatch(TorchFunctionMode):
    """Sees every torch function and Tensor method the learner's code calls (``torch.softmax``,
    ``F.softmax`` and ``x.softmax`` alike), to catch forbidden ones."""

    def __init__(self, guard: Guard) -> None:
        super().__init__()
        self.guard = guard

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.guard._saw_torch(func)
        return func(*args, **(kwargs or {}))


class _ShapeWatch(TorchDispatchMode):
    """Sees every tensor operation at the ATen level, inside composite ones too (an einsum's reshapes and
    batched matmuls), and shows its inputs and outputs to the guard's watchers."""

    def __init__(self, guard: Guard) -> None:
        super().__init__()
        self.guard = guard

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs, outputs = _tensors((args, kwargs)), _tensors(out)
        for watch in self.guard.watchers:
            self.guard._flag(watch(func, inputs, outputs))
        return out


class Guard:
    """Context manager that records, while the learner's code runs, every call of a forbidden
    :class:`Shortcut` and every message a :data:`Watcher` returns. It never raises inside the learner's
    code (which could catch it); :meth:`verdict` reports the first finding afterwards."""

    def __init__(self, shortcuts: Iterable[Shortcut] = (), watchers: Iterable[Watcher] = ()) -> None:
        self.shortcuts = tuple(shortcuts)
        self.watchers = tuple(watchers)
        self.findings: list[str] = []
        self._by_code: dict[CodeType, Shortcut] = {}
        self._by_torch: dict[int, Shortcut] = {}
        self._targets = [(fn, s) for s in self.shortcuts for target in s.targets for fn in _callables(target)]
        for fn, s in self._targets:
            code = _code_object(fn)
            if code is not None:
                self._by_code[code] = s
            self._by_torch[id(fn)] = s  # a builtin or a method descriptor, as a torch function mode sees it
        self._previous_profile = None
        self._modes = [_TorchWatch(self)] + ([_ShapeWatch(self)] if self.watchers else [])

    def _flag(self, message: str | None) -> None:
        if message and message not in self.findings:
            self.findings.append(message)

    def _hit(self, shortcut: Shortcut) -> None:
        self._flag(f"your answer calls {shortcut.label}, which this exercise asks you not to use: "
                   f"{shortcut.instead}")

    def _saw_torch(self, func: object) -> None:
        shortcut = self._by_torch.get(id(func))
        if shortcut is None:
            shortcut = self._by_code.get(_code_object(func)) if callable(func) else None
        if shortcut is not None:
            self._hit(shortcut)

    def _profile(self, frame, event, arg):
        if event == "call" and frame.f_code in self._by_code:
            self._hit(self._by_code[frame.f_code])
        elif event == "c_call" and id(arg) in self._by_torch:  # a builtin function called from Python
            self._hit(self._by_torch[id(arg)])
        if self._previous_profile is not None:
            self._previous_profile(frame, event, arg)

    def __enter__(self) -> Guard:
        for fn, _ in self._targets:  # a cached function runs its code only on a miss: empty its cache first
            if callable(getattr(fn, "cache_clear", None)):
                fn.cache_clear()
        if self._by_code or self._by_torch:
            self._previous_profile = sys.getprofile()
            sys.setprofile(self._profile)
        for mode in self._modes:
            mode.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        for mode in reversed(self._modes):
            mode.__exit__(*exc)
        if self._by_code or self._by_torch:
            sys.setprofile(self._previous_profile)

    def verdict(self) -> None:
        """Raise ``AssertionError`` with the first finding, if any."""
        if self.findings:
            raise AssertionError(self.findings[0])


def describe_args(args: Iterable[object]) -> str:
    """The arguments as a failure message shows them: tensors by shape, the rest by repr (shortened)."""
    shown = []
    for a in args:
        if isinstance(a, torch.Tensor):
            shown.append(f"tensor of shape {tuple(a.shape)}")
        else:
            text = repr(a)
            shown.append(text if len(text) <= 60 else text[:57] + "...")
    return ", ".join(shown)


def call_answer(fn: Callable, *args: object, shortcuts: Iterable[Shortcut] = (),
                watchers: Iterable[Watcher] = ()) -> object:
    """Call the learner's ``fn(*args)`` under a :class:`Guard`; return its result.

    A forbidden shortcut or a watcher's finding fails the check with its message (before any error the call
    raised: the shortcut is the slip to fix first); an exception from the learner's code becomes an
    ``AssertionError`` naming the input that broke it."""
    guard = Guard(shortcuts, watchers)
    error: Exception | None = None
    result = None
    try:
        with guard:
            result = fn(*args)
    except AssertionError:
        guard.verdict()
        raise
    except Exception as err:  # a learner's bug: report it as a failed check, with the input that broke it
        error = err
    guard.verdict()
    if error is not None:
        raise AssertionError(f"calling your function on ({describe_args(args)}) raised "
                             f"{type(error).__name__}: {error}") from error
    return result


class DerivedShapeWatch:
    """A :data:`Watcher` for tensors computed from given sources: every torch output with a source (or a
    tensor computed from one) among its inputs is itself "derived"; a derived tensor whose shape
    ``forbidden(shape)`` accepts fails the check with ``message`` (``{shape}`` is filled in).

    Chapter 8 uses it to reject rebuilt keys: anything computed from the cached latents that has a head-width
    axis is a key (or a value) that absorption exists to avoid."""

    def __init__(self, sources: Iterable[torch.Tensor], forbidden: Callable[[tuple[int, ...]], bool],
                 message: str) -> None:
        self._derived = {id(t) for t in sources}
        self._keep: list[torch.Tensor] = list(sources)  # keeps ids from being reused while the call runs
        self.forbidden = forbidden
        self.message = message

    def __call__(self, func: object, inputs: list, outputs: list) -> str | None:
        if not any(id(t) in self._derived for t in inputs):
            return None
        finding = None
        for t in outputs:
            self._derived.add(id(t))
            self._keep.append(t)
            if finding is None and self.forbidden(tuple(t.shape)):
                finding = self.message.format(shape=tuple(t.shape))
        return finding


# ----------------------------------------------------------------------------------------------------
# predict, then run


def run_prediction(name: str, guess: object, judge: Callable[[object], tuple[bool, str]]) -> str:
    """A "predict, then run" question: ``guess is None`` returns a reminder (the experiment does not run, so
    nothing gives the answer away); otherwise ``judge(guess)`` runs the experiment and returns ``(right,
    explanation)``, the explanation built from the numbers it computed. A guess of the wrong kind raises
    ``AssertionError``; a wrong guess is not an error: the verdict starts with ✗ and explains."""
    if guess is None:
        return (f"… {name}: write your prediction first (replace None), then run this cell: it runs the "
                "experiment and compares")
    right, explanation = judge(guess)
    if isinstance(guess, float):
        shown = f"{guess:,.0f}" if abs(guess) >= 1e4 else f"{guess:.4g}"
    else:
        shown = repr(guess)
    return f"{'✓' if right else '✗'} {name}: you predicted {shown}. {explanation}"
