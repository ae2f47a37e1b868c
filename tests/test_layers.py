"""The package's layers import only downwards (docs/architecture.md): every ``import`` of
rnnkit, at module level or inside a function, is checked against the order below, so a
cycle or a layering break (``data/`` reaching into ``training/``) fails here."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).parents[1] / "src" / "rnnkit"
# Lower ranks are imported by higher ones, never the other way round.
RANK = {"choices": 0, "atomic": 0, "body_limit": 0,
        "functional": 1, "backends": 2, "nn": 3, "models": 4, "data": 4,
        "forecasting": 5, "embeddings": 5, "training": 6, "tasks": 7,
        "export": 8, "serving": 8, "forecaster": 8, "parser": 9, "commands": 9, "cli": 10, "rnnkit": 11}


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module == "rnnkit":
            # "from rnnkit import commands" names a module; __version__ is metadata
            names = [f"rnnkit.{a.name}" if a.name in RANK else "rnnkit" for a in node.names
                     if not a.name.startswith("__")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "rnnkit":
                found.add(parts[1] if len(parts) > 1 else "rnnkit")
    return found


def test_imports_point_down_the_layers():
    broken = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).parts
        layer = "rnnkit" if rel == ("__init__.py",) else rel[0].removesuffix(".py")
        assert layer in RANK, f"{layer}: place the new module or package in RANK"
        for target in _imports(path) - {layer}:
            if RANK[target] >= RANK[layer]:
                broken.append(f"{path.relative_to(SRC)} imports rnnkit.{target}")
    assert not broken, "\n".join(broken)
