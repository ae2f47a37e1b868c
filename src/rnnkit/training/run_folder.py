"""The run folder: where one training run keeps its config, metrics, checkpoints and plots.

Layout::

    runs/<task>/<timestamp>/
        config.json          the full resolved config (what --resume reads back)
        metrics.json         final metrics nested by split, epochs, wall time, parameters
        checkpoints/         best.ckpt (by the validation metric) and last.ckpt
        logs/version_N/      Lightning's CSV log (one version per resume)
        plots/               PNG learning curves (and a confusion matrix for classifiers)
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any


def new_run_dir(task: str, out: str | None, shared: bool = False) -> Path:
    """``out`` if given (created; must be empty or new), else ``runs/<task>/<timestamp>``.
    With ``shared`` (a run whose processes start together, under torchrun), ``out`` may
    already hold what the other processes wrote, as long as it is not a run yet (no
    ``config.json``)."""
    if out is not None:
        path = Path(out)
        busy = path.exists() and ((path / "config.json").exists() if shared
                                  else any(path.iterdir()))
        if busy:
            raise ValueError(f"--out: {path} exists and is not empty; choose a new folder, or "
                             f"continue that run with --resume {path}")
    else:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path = Path("runs") / task / stamp
        suffix = 1
        while path.exists():
            suffix += 1
            path = Path("runs") / task / f"{stamp}-{suffix}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write JSON atomically: a temporary file, then a rename over the target."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # one per process (DDP)
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


def read_run_config(run_dir: str | Path) -> dict[str, Any]:
    """The config a run was started with; a clear error if ``run_dir`` is not a run folder."""
    run_dir = Path(run_dir)
    path = run_dir / "config.json"
    if not path.is_file():
        raise ValueError(f"{run_dir}: not an rnnkit run folder (no config.json)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: unreadable ({exc})") from exc


def checkpoint_path(run_dir: str | Path, which: str = "best") -> Path:
    """``best`` or ``last`` checkpoint of a run, or a path given directly."""
    run_dir = Path(run_dir)
    if which in ("best", "last"):
        path = run_dir / "checkpoints" / f"{which}.ckpt"
    else:
        path = Path(which)
    if not path.is_file():
        raise ValueError(f"checkpoint {path} is missing; a run folder holds checkpoints/best.ckpt "
                         "and checkpoints/last.ckpt once an epoch has finished")
    return path
