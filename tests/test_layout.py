"""The package's floor plan (docs/architecture.md): every import points down the layers, no
import circles, no family imports another, no private name crosses files, and the commands
hold no switch on the family. Read from the source (AST), every import counted, those inside
functions too."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "posekit"
FAMILIES = ("bottomup", "topdown", "detector")

# a module may import its own layer (without circles) and the layers below it
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "atomic"),
    ("schema", "config"),
    ("evaluation", "drawing", "people", "data", "engine", "layers"),
    FAMILIES,
    ("tasks",),
    ("commands", "trials"),
    ("cli", "__main__"),
)


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int:
    top = module.split(".")[0]
    for index, names in enumerate(LAYERS):
        if top in names:
            return index
    raise AssertionError(f"posekit.{module} is in no layer of LAYERS: add it")


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(module: str) -> Iterator[tuple[str, list[str], int]]:
    """(imported posekit module, names taken from it, line) for every import in ``module``."""
    tree = ast.parse(MODULES[module].read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("posekit"):
            base = node.module.removeprefix("posekit").lstrip(".")
            names = [alias.name for alias in node.names]
            for name in names:  # ``from posekit.data import coco`` imports a module
                if f"{base}.{name}".lstrip(".") in MODULES:
                    yield f"{base}.{name}".lstrip("."), [], node.lineno
            if base:
                yield base, [n for n in names if f"{base}.{n}" not in MODULES], node.lineno
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("posekit."):
                    yield alias.name.removeprefix("posekit."), [], node.lineno


GRAPH = {
    module: {target for target, _, _ in imports_of(module) if target in MODULES}
    for module in MODULES
    if module
}


def test_every_import_points_down_the_layers() -> None:
    upward = [
        f"posekit.{module} (line {line}) imports posekit.{target}"
        for module in GRAPH
        for target, _, line in imports_of(module)
        if target in MODULES and layer_of(target) > layer_of(module)
    ]
    assert upward == []


def test_no_family_imports_another() -> None:
    crossing = [
        f"posekit.{module} imports posekit.{target}"
        for module, targets in GRAPH.items()
        for target in targets
        if module.split(".")[0] in FAMILIES
        and target.split(".")[0] in FAMILIES
        and target.split(".")[0] != module.split(".")[0]
    ]
    assert crossing == []


def import_circles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in GRAPH.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for node in sorted(GRAPH):
        if node not in index:
            visit(node)
    return circles


def test_no_import_circles() -> None:
    assert import_circles() == []


def test_import_circle_finder_finds_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(GRAPH, "errors", {"atomic"})
    monkeypatch.setitem(GRAPH, "atomic", {"errors"})
    assert ["atomic", "errors"] in import_circles()


def test_no_private_name_is_imported_across_files() -> None:
    private = [
        f"posekit.{module} imports {name} from posekit.{target}"
        for module in GRAPH
        for target, names, _ in imports_of(module)
        for name in names
        if name.startswith("_") and name != "__version__"
    ]
    assert private == []


def family_switches(source: str) -> list[str]:
    """Lines that name a family or compare ``.family`` with a constant."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and node.value in FAMILIES:
            found.append(f"line {node.lineno}: {node.value!r}")
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            if any(isinstance(s, ast.Attribute) and s.attr == "family" for s in sides) and any(
                isinstance(s, ast.Constant) for s in sides
            ):
                found.append(f"line {node.lineno}: .family compared with a constant")
    return found


def test_the_commands_hold_no_switch_on_the_family() -> None:
    switches = [
        f"posekit.{module} {switch}"
        for module, path in MODULES.items()
        if module.startswith(("commands", "trials")) or module == "cli"
        for switch in family_switches(path.read_text())
    ]
    assert switches == []


def test_a_switch_is_found() -> None:
    assert sorted(family_switches('if task.family == "detector":\n    pass\n')) == [
        "line 1: 'detector'",
        "line 1: .family compared with a constant",
    ]
    assert family_switches("if task.family != meta['family']:\n    pass\n") == []


def test_each_family_is_one_folder_and_one_line_in_the_table() -> None:
    tasks = (PACKAGE / "tasks.py").read_text()
    for family in FAMILIES:
        assert (PACKAGE / family / "task.py").is_file()
        assert tasks.count(f"posekit.{family}.task import") == 1
