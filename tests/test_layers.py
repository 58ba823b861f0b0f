"""The import structure: packages stand on floors, imports go down (or across), never round a circle.

Every ``import`` in ``src/ppad`` counts, at module level and inside functions; only the imports
under ``if TYPE_CHECKING:`` (never run) do not.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

#: Low to high. A unit is a ``ppad`` subpackage or top-level module, or one of the modules named
#: here on its own: they import nothing above the floor they are placed on.
FLOORS: tuple[tuple[str, ...], ...] = (
    # the ground: errors, files, names, and modules that import nothing more: the image reader and
    # resizer (numpy, Pillow), region geometry and patch rules (numpy), the η rule (torch)
    ("ppad", "errors", "io", "choices", "lazy", "outputs", "data.resize", "data.readers", "regions.regions"),
    ("scoring.rule",),
    ("backbones",),
    ("prompts", "regions", "lungs"),
    ("synthesis",),
    ("data",),
    ("methods",),
    ("training", "runs"),
    ("metrics", "scoring.rows"),  # numbers and result rows, no model: what maps and exports write
    # the ONNX runtime scorer (numpy, onnxruntime): what scoring reads an exported model through
    ("maps", "export.runtime"),
    ("scoring",),
    ("export", "bench", "pretraining"),
    ("cli", "serve"),
)

#: Imports from a lower floor to a higher one that stay, each with its reason: (importer, imported).
ALLOWED_UPWARD: set[tuple[str, str]] = set()


def unit_of(module: str) -> str:
    """The floor unit a dotted ``ppad`` module belongs to."""
    parts = module.split(".")[1:]
    if len(parts) >= 2 and ".".join(parts[:2]) in FLOOR_OF:
        return ".".join(parts[:2])
    return parts[0] if parts else "ppad"


FLOOR_OF = {unit: level for level, units in enumerate(FLOORS) for unit in units}


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_nodes(tree: ast.Module) -> set[int]:
    """ids of the nodes under ``if TYPE_CHECKING:`` blocks."""
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            skipped |= {id(child) for statement in node.body for child in ast.walk(statement)}
    return skipped


def ppad_imports() -> list[tuple[str, str, int]]:
    """(importing module, imported ``ppad`` module, line) for every import that runs."""
    found = []
    for path in sorted((SRC / "ppad").rglob("*.py")):
        module, tree = _module_name(path), ast.parse(path.read_text(), str(path))
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        skipped = _type_checking_nodes(tree)
        for node in ast.walk(tree):
            if id(node) in skipped:
                continue
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                names = [base]
            else:
                continue
            found += [(module, name, node.lineno) for name in names if name == "ppad" or name.startswith("ppad.")]
    return found


def test_every_module_stands_on_a_floor():
    assert {unit_of(module) for module, _, _ in ppad_imports()} <= set(FLOOR_OF)


def test_no_import_goes_up_a_floor_but_the_allowed_ones():
    upward = {
        (module, imported)
        for module, imported, _ in ppad_imports()
        if FLOOR_OF[unit_of(module)] < FLOOR_OF[unit_of(imported)]
    }
    assert upward == ALLOWED_UPWARD


def test_no_import_circle_between_units_but_through_an_allowed_arrow():
    graph: dict[str, set[str]] = {}
    for module, imported, _ in ppad_imports():
        if unit_of(module) != unit_of(imported) and (module, imported) not in ALLOWED_UPWARD:
            graph.setdefault(unit_of(module), set()).add(unit_of(imported))
    circle = _find_circle(graph)
    assert circle is None, " → ".join(circle or [])


def _find_circle(graph: dict[str, set[str]]) -> list[str] | None:
    """A path that returns to its start, or None (depth-first, three colours)."""
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for successor in sorted(graph.get(node, ())):
            if state.get(successor) == 1:
                return [*path[path.index(successor) :], successor]
            if successor not in state and (found := visit(successor, [*path, successor])):
                return found
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start, [start])):
            return found
    return None


def test_the_circle_finder_finds_a_circle():
    assert _find_circle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_circle({"a": {"b"}, "b": {"c"}}) is None


@pytest.mark.parametrize(
    ("module", "unit"),
    [("ppad.data.resize", "data.resize"), ("ppad.data.batches", "data"), ("ppad", "ppad"), ("ppad.regions", "regions")],
)
def test_units_are_packages_but_for_the_named_modules(module, unit):
    assert unit_of(module) == unit
