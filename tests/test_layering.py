"""Imports point one way: no cycle between streamchat's packages and top-level modules."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import streamchat

ROOT = Path(streamchat.__file__).parent


def _unit(path: Path) -> str:
    """The package (or top-level module) a file belongs to: ``http``, ``services``, …"""
    return path.relative_to(ROOT).parts[0].removesuffix(".py")


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
            if node.module == "streamchat":  # from streamchat import actions
                names = [f"streamchat.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        found.update(name.split(".")[1] for name in names if name.startswith("streamchat."))
    return found


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for path in ROOT.rglob("*.py"):
        unit = _unit(path)
        graph[unit] |= {other for other in _imports(path) if other != unit}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one member (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in list(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle_between_packages() -> None:
    assert _cycles(_graph()) == []


def test_the_checker_sees_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_web_boundary_stays_out_of_the_lower_layers() -> None:
    graph = _graph()
    for lower in ("pubsub", "store", "rooms", "ws", "actors", "services", "actions"):
        assert "http" not in graph[lower], f"{lower} imports http"
    for lower in ("pubsub", "store", "rooms"):
        assert "ws" not in graph[lower], f"{lower} imports ws"
