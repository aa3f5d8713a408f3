"""The architecture, checked: plugins import nothing from the runner, no module imports another in a cycle (imports
inside functions and for type checking count), nobody imports Hydra's private modules, and the runner knows no
platform's keys."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

PACKAGES = ("runner", "plugins", "hydra_plugins")


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def imported(path: Path, name: str) -> set[str]:
    """Every module ``path`` imports, wherever the import statement stands; relative imports resolved."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parents = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parents, *([base] if base else [])])
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: {m for m in imported(path, name) if m in known and m != name} for name, path in known.items()}


def test_plugins_import_nothing_from_the_runner():
    offenders = {name: sorted(m for m in deps if m.startswith("runner"))
                 for name, deps in graph().items() if name.startswith("plugins")}
    assert {name: deps for name, deps in offenders.items() if deps} == {}


def test_no_module_imports_another_in_a_cycle():
    edges = graph()
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(name: str) -> None:
        state[name] = 1
        path.append(name)
        for nxt in sorted(edges[name]):
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[name] = 2

    for name in sorted(edges):
        if name not in state:
            visit(name)
    assert cycles == []


def test_imports_inside_functions_and_relative_ones_are_seen(tmp_path):
    # So that the cycle check above cannot pass by missing an import.
    path = tmp_path / "a.py"
    path.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import c\n"
                    "def f():\n    from runner import b\n")
    assert {"runner.b", "runner.c"} <= imported(path, "runner.a")


def test_nothing_imports_hydras_private_modules():
    offenders = {name: sorted(m for m in imported(path, name) if m.startswith("hydra._internal"))
                 for name, path in modules().items()}
    assert {name: deps for name, deps in offenders.items() if deps} == {}
    texts = {name: path.read_text(encoding="utf-8") for name, path in modules().items()}
    assert [name for name, text in texts.items() if "hydra._internal" in text] == []


def test_the_runner_knows_no_platforms_keys():
    # What identifies a platform's project is the platform's to say (Platform.identity_keys).
    for path in (REPO / "runner").glob("*.py"):
        text = path.read_text(encoding="utf-8")
        for key in ("project_hash", "classification", "ENCORD_SSH_KEY"):
            assert key not in text, f"{path.name} names {key}"
