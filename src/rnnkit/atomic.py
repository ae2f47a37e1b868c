"""Write a file so that a reader sees the old one or the whole new one, never a part.

Every file rnnkit writes into a run folder, a cache or an export goes through
:func:`atomic_path`: the content is written to a temporary file beside the target (one
name per process, so DDP ranks do not collide), flushed to disk, then renamed over the
target. On any error (a full disk, Ctrl-C) the temporary file is removed and the previous
target, if any, is left as it was. Torch-free: the command line imports it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

TMP_MARK = ".tmp-"  # temporaries are ".<name>.tmp-<pid>"; run_folder removes stale ones


def temporary_name(path: Path) -> Path:
    return path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path`` (fsynced first)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | Path, payload: Any, **dumps: Any) -> None:
    """``payload`` as JSON (indented, a final newline), atomically."""
    write_text(path, json.dumps(payload, **({"indent": 2} | dumps)) + "\n")
