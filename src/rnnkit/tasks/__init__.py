"""One module per application; each exposes task objects the runner and the CLI drive.

``TASKS`` maps a task's name to its task object, importing the task's module (torch,
Lightning, its data code) on first access only; :mod:`rnnkit.tasks.catalog` holds what
the command line needs without that.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import Any

from rnnkit.tasks.catalog import CATALOG, IMPLEMENTATIONS


class _Tasks(Mapping):
    """Task objects by name, each imported when first looked up."""

    def __getitem__(self, name: str) -> Any:
        if name not in IMPLEMENTATIONS:
            raise KeyError(name)
        module, attribute = IMPLEMENTATIONS[name]
        return getattr(importlib.import_module(f"rnnkit.tasks.{module}"), attribute)

    def __iter__(self) -> Iterator[str]:
        return iter(CATALOG)

    def __len__(self) -> int:
        return len(CATALOG)


TASKS: Mapping[str, Any] = _Tasks()

__all__ = ["CATALOG", "TASKS"]
