"""The imports drawn in docs/architecture.md are the only ones the code makes.

The page is the contract: its mermaid graph gives the arrows, its table gives each node's modules and the
libraries it may not import. Every import in the layers and the functions (top level or inside a function) is
checked against them.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "architecture.md"
SOURCES = {ROOT / "layers" / "loyalty": "", ROOT / "layers" / "analytics": ""}
HANDLER_NODE = "handlers"


@dataclass(frozen=True)
class Contract:
    arrows: frozenset[tuple[str, str]]
    prefixes: dict[str, str]  # module prefix -> node
    refused: dict[str, frozenset[str]]  # node -> top-level packages it may not import

    def node_of(self, module: str) -> str | None:
        matches = [p for p in self.prefixes if module == p or module.startswith(p + ".")]
        return self.prefixes[max(matches, key=len)] if matches else None


def read_contract(text: str) -> Contract:
    [graph] = re.findall(r"```mermaid\n(.*?)```", text, flags=re.S)
    arrows = set()
    for line in graph.splitlines():
        if "-->" in line:
            source, target = (re.match(r"\s*(\w+)", part).group(1) for part in line.split("-->"))  # type: ignore[union-attr]
            arrows.add((source, target))
    prefixes: dict[str, str] = {}
    refused: dict[str, frozenset[str]] = {}
    for row in re.findall(r"^\|\s*(\w+)\s*\|\s*(.*?)\s*\|\s*(.*?)\s*\|$", text, flags=re.M):
        node, modules, banned = row
        if node == "node":
            continue
        for module in re.findall(r"`([^`]+)`", modules):
            prefixes[module] = node
        refused[node] = frozenset(name.strip() for name in banned.split(",") if name.strip())
    return Contract(frozenset(arrows), prefixes, refused)


@dataclass(frozen=True)
class Import:
    path: Path
    line: int
    source: str  # the importing node
    module: str


def module_name(path: Path) -> str:
    for root in SOURCES:
        if root in path.parents:
            parts = path.relative_to(root).with_suffix("").parts
            return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    raise ValueError(path)


def imported_modules(tree: ast.AST, package: str) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the importing package
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                yield node.lineno, ".".join([*base, *([node.module] if node.module else [])])
            elif node.module:
                # `from loyalty.points import ledger` imports loyalty.points.ledger: name the module when it is one
                for alias in node.names:
                    yield node.lineno, f"{node.module}.{alias.name}"


def imports(contract: Contract) -> Iterator[Import]:
    for root in SOURCES:
        for path in sorted(root.rglob("*.py")):
            name = module_name(path)
            if name == "loyalty":  # the namespace's own __init__: a docstring
                continue
            source = contract.node_of(name)
            assert source is not None, f"{path.relative_to(ROOT)} ({name}) belongs to no node of docs/architecture.md"
            package = name if path.name == "__init__.py" else name.rpartition(".")[0]
            for line, module in imported_modules(ast.parse(path.read_text()), package):
                yield Import(path, line, source, module)
    for path in sorted((ROOT / "functions").glob("*/*.py")):
        for line, module in imported_modules(ast.parse(path.read_text()), ""):
            yield Import(path, line, HANDLER_NODE, module)


def violations(contract: Contract) -> list[str]:
    found = []
    for made in imports(contract):
        target = contract.node_of(made.module)
        where = f"{made.path.relative_to(ROOT)}:{made.line} imports {made.module}"
        if target is not None and target != made.source and (made.source, target) not in contract.arrows:
            found.append(f"{where}: {made.source} -> {target} is not drawn")
        if made.module.split(".")[0] in contract.refused.get(made.source, frozenset()):
            found.append(f"{where}: {made.source} may not import {made.module.split('.')[0]}")
    return found


CONTRACT = read_contract(PAGE.read_text())


def test_every_import_in_the_layers_and_functions_is_an_arrow_of_the_architecture_page() -> None:
    assert violations(CONTRACT) == []


def test_the_page_draws_the_nodes_it_lists_and_no_cycle() -> None:
    nodes = set(CONTRACT.refused)
    assert {node for arrow in CONTRACT.arrows for node in arrow} <= nodes
    assert HANDLER_NODE in nodes and "core" in nodes

    def reaches(start: str, goal: str, seen: frozenset[str] = frozenset()) -> bool:
        return any(
            target == goal or (target not in seen and reaches(target, goal, seen | {target}))
            for source, target in CONTRACT.arrows
            if source == start
        )

    assert [node for node in nodes if reaches(node, node)] == []


@pytest.mark.parametrize(
    ("module", "node"),
    [
        ("loyalty.segments.refresh", "refresh"),
        ("loyalty.segments.rules", "segments"),
        ("loyalty.adapters.dynamodb.table", "adapters"),
        ("loyalty_analytics.bgnbd", "analytics"),
        ("boto3", None),
    ],
)
def test_a_module_belongs_to_the_node_of_its_longest_prefix(module: str, node: str | None) -> None:
    assert CONTRACT.node_of(module) == node


def test_an_undrawn_import_is_found() -> None:
    """The check itself can fail: the same page without the arrow from points to core refuses today's code."""
    without = read_contract(PAGE.read_text().replace('points["loyalty.points"] --> core', 'points["loyalty.points"]'))

    found = set(violations(without)) - set(violations(CONTRACT))

    assert found and all("points -> core is not drawn" in line for line in found)
    assert any(line.startswith("layers/loyalty/loyalty/points/ledger.py") for line in found)


def test_a_refused_library_is_found() -> None:
    banned = Contract(CONTRACT.arrows, CONTRACT.prefixes, {**CONTRACT.refused, "core": frozenset({"pydantic"})})

    assert any("core may not import pydantic" in line for line in violations(banned))
