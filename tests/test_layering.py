"""Import layering of the library: which attnlab modules may import which.

The rules (also in CONTRIBUTING.md, "Import layering"):

1. **Math and cost modules never import widgets.** ``attention``, ``kv_cache``, ``gqa``, ``mla``, ``dsa``,
   ``rope``, ``quant``, ``sizing``, ``lowrank``, ``model``, ``tokenization``, ``costs``, ``schemes``,
   ``chapters``, ``_validate``, ``devices`` and the later chapters' modules (:data:`MATH_AND_COST`) import
   none of ``attnlab.widgets``, ``attnlab.interactive`` (or a module in it), ``ipywidgets`` and ``IPython``,
   nor the plotting module ``attnlab.figures`` and ``plotly``: they compute, and run where no notebook does.
2. **Exercises never import widgets.** ``attnlab.exercises.*`` checks answers with the math and cost
   modules, never with a widget's or an ``interactive`` module's helpers (same list as rule 1).
3. **Layers never import the model catalogue.** ``gqa``, ``mla``, ``dsa``, ``attention``, ``kv_cache``,
   ``rope``, ``quant``, ``model`` and the later layers (:data:`LAYERS`) import nothing of ``attnlab.sizing``
   (``MODELS``, ``ModelSpec``, its cost formulas): a layer is built from its config, and the catalogue of
   published models sits above it.

"Import" counts every import the module runs, at module level or inside a function, and every import
it makes through another attnlab module (``model`` importing ``dsa`` importing ``sizing`` breaks rule 3
for ``model`` too); imports under ``if TYPE_CHECKING:`` are not run and do not count, and neither does the
package's ``attnlab/__init__.py``. A module a rule names but the library does not have (yet) is skipped.
The imports are read with :mod:`ast`, so nothing is imported to check them.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

LIBRARY = Path(__file__).resolve().parents[1] / "lib" / "attnlab"

WIDGETS = ("attnlab.widgets", "attnlab.interactive", "ipywidgets", "IPython", "attnlab.figures", "plotly")
CATALOGUE = ("attnlab.sizing",)
MATH_AND_COST = ("attention", "kv_cache", "gqa", "mla", "dsa", "rope", "quant", "sizing", "lowrank", "model",
                 "tokenization", "costs", "schemes", "chapters", "_validate", "devices", "cache_formats", "v4",
                 "paged", "flash", "window", "evidence", "block_sparse", "linear_attention", "recall", "quality")
LAYERS = ("gqa", "mla", "dsa", "attention", "kv_cache", "rope", "quant", "model", "v4", "paged", "window",
          "block_sparse", "linear_attention", "recall")


def _module_name(path: Path) -> str:
    parts = path.relative_to(LIBRARY.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _all_modules() -> dict[str, Path]:
    """Every module of the library: dotted name -> file."""
    return {_module_name(path): path for path in sorted(LIBRARY.rglob("*.py"))}


MODULES = _all_modules()
EXERCISES = tuple(sorted(name for name in MODULES if name.startswith("attnlab.exercises.")))


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _runtime_nodes(tree: ast.AST):
    """Every node of ``tree`` except what sits under ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                stack.extend(child.orelse)
            else:
                stack.append(child)


def imports_of(name: str) -> set[str]:
    """The dotted names module ``name`` imports when it runs: ``import a.b`` gives "a.b"; ``from a import b``
    gives "a.b" when that is an attnlab module, else "a"; relative imports are resolved; a constant
    argument of ``importlib.import_module`` counts too."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    return set(_imports(path, package, frozenset(MODULES)))


@functools.cache
def _imports(path: Path, package: str, modules: frozenset[str]) -> frozenset[str]:
    found: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:
                sub = f"{module}.{alias.name}"
                found.add(sub if sub in modules else module)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "import_module" and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)):
            found.add(node.args[0].value)
    return frozenset(found)


def _matches(imported: str, forbidden: tuple[str, ...]) -> bool:
    return any(imported == f or imported.startswith(f + ".") for f in forbidden)


def forbidden_chains(name: str, forbidden: tuple[str, ...]) -> list[str]:
    """Every import chain by which module ``name`` reaches a ``forbidden`` module, directly or through other
    attnlab modules (not through the package ``attnlab`` itself), shortest first:
    ["attnlab.model -> attnlab.dsa -> attnlab.sizing"]. Empty when the rule holds."""
    chains, seen, frontier = [], {name}, [[name]]
    while frontier:
        next_frontier = []
        for chain in frontier:
            for imported in sorted(imports_of(chain[-1])):
                if _matches(imported, forbidden):
                    chains.append(" -> ".join([*chain, imported]))
                elif imported in MODULES and imported != "attnlab" and imported not in seen:
                    seen.add(imported)
                    next_frontier.append([*chain, imported])
        frontier = next_frontier
    return chains


def _present(names: tuple[str, ...]) -> list[str]:
    return [f"attnlab.{n}" for n in names if f"attnlab.{n}" in MODULES]


RULES = (
    [("math and cost modules never import widgets", name, WIDGETS) for name in _present(MATH_AND_COST)]
    + [("exercises never import widgets", name, WIDGETS) for name in EXERCISES]
    + [("layers never import the model catalogue", name, CATALOGUE) for name in _present(LAYERS)]
)


@pytest.mark.parametrize("rule, module, forbidden", RULES, ids=[f"{m.removeprefix('attnlab.')}: {r}"
                                                                 for r, m, _ in RULES])
def test_layering(rule, module, forbidden):
    chains = forbidden_chains(module, forbidden)
    assert not chains, f"{rule}: " + "; ".join(chains)


def test_the_rules_cover_the_library():
    """Every module a rule names that exists is checked, the exercises are found, and the reader sees
    imports: a known import, a relative one, a function-level one and a TYPE_CHECKING one."""
    assert len(EXERCISES) >= 10 and "attnlab.exercises.ch00" in EXERCISES
    for name in ("attention", "gqa", "mla", "dsa", "sizing", "model", "chapters", "devices"):
        assert f"attnlab.{name}" in MODULES, name
    assert "attnlab._validate" in imports_of("attnlab.gqa")
    assert "attnlab.kv_cache" in imports_of("attnlab._validate")  # imported inside a function
    assert "attnlab.dsa" not in imports_of("attnlab.attention")  # only under TYPE_CHECKING
    assert "ipywidgets" in imports_of("attnlab.widgets") and "attnlab.sizing" in imports_of("attnlab.widgets")


def test_a_chain_through_another_module_is_found(tmp_path, monkeypatch):
    """A module that imports a clean module that imports a forbidden one breaks the rule, and the message
    shows the chain."""
    package = tmp_path / "attnlab"
    package.mkdir()
    (package / "__init__.py").write_text("from attnlab import top\n")
    (package / "top.py").write_text("from . import middle\n")
    (package / "middle.py").write_text("def f():\n    import attnlab.bottom\n")
    (package / "bottom.py").write_text("from attnlab.widgets import row\n")
    (package / "widgets.py").write_text("import ipywidgets\n")
    monkeypatch.setitem(globals(), "LIBRARY", package)
    monkeypatch.setitem(globals(), "MODULES", _all_modules())
    assert forbidden_chains("attnlab.top", WIDGETS) == [
        "attnlab.top -> attnlab.middle -> attnlab.bottom -> attnlab.widgets"]
    assert forbidden_chains("attnlab.widgets", CATALOGUE) == []
