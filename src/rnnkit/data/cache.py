"""Where fetched data lives: ``$RNNKIT_CACHE``, else ``$XDG_CACHE_HOME/rnnkit``, else ``~/.cache/rnnkit``."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """The folder for data fetched from package registries (created on demand)."""
    if os.environ.get("RNNKIT_CACHE"):
        root = Path(os.environ["RNNKIT_CACHE"])
    else:
        root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "rnnkit"
    root.mkdir(parents=True, exist_ok=True)
    return root
