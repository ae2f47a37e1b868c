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

import fcntl
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Self

from rnnkit import atomic

LOCK_NAME = ".lock"


class RunLock:
    """An exclusive lock on a run folder while a process trains into it.

    ``fcntl.flock`` on ``RUN_DIR/.lock``: the operating system releases it when the
    process ends in any way (a crash or SIGKILL leaves no stale lock), and a second
    process that tries to train into the same folder gets an error naming the first.
    """

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK_NAME
        self.handle = None

    def __enter__(self) -> Self:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")  # held until __exit__
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise ValueError(f"{self.path.parent}: another rnnkit process (pid {holder}) is "
                             "training into this run folder; wait for it to finish or stop "
                             "it, or choose another folder") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self.handle = handle
        return self

    def __exit__(self, *exc: object) -> None:
        if self.handle is not None:
            fcntl.flock(self.handle, fcntl.LOCK_UN)
            self.handle.close()
            self.handle = None


# What a run leaves before its first checkpoint: such a folder may be started again.
_BEFORE_FIRST_CHECKPOINT = {"config.json", "logs", "tensorboard", "checkpoints", "plots", LOCK_NAME}


def never_checkpointed(path: Path, data_files: tuple[str, ...] = ()) -> bool:
    """Whether ``path`` holds a run that was stopped before it wrote any checkpoint (and
    nothing else a user might want to keep). ``data_files``: what the task writes from
    its data before training (a vocabulary, an item list), which starting again rewrites."""
    if not (path / "config.json").is_file() or any(path.glob("checkpoints/*.ckpt")):
        return False
    return all(item.name in _BEFORE_FIRST_CHECKPOINT or item.name in data_files
               or item.name.startswith(".") for item in path.iterdir())


def new_run_dir(task: str, out: str | None, shared: bool = False,
                data_files: tuple[str, ...] = (), resumable: bool = True) -> Path:
    """``out`` if given (created; must be empty or new), else ``runs/<task>/<timestamp>``.
    With ``shared`` (a run whose processes start together, under torchrun), ``out`` may
    already hold what the other processes wrote, as long as it is not a run yet (no
    ``config.json``). A folder holding a run stopped before its first checkpoint is
    started again in place (``data_files`` as :func:`never_checkpointed`'s).
    ``resumable``: whether a used folder's error may point to ``--resume`` (a command
    without it only says to choose another folder)."""
    if out is not None:
        path = Path(out)
        if path.exists() and not path.is_dir():
            raise ValueError(f"--out: {path} is a file; name a folder for the run")
        busy = path.exists() and ((path / "config.json").exists() if shared
                                  else any(path.iterdir()))
        if busy and not shared and never_checkpointed(path, data_files):
            with RunLock(path):  # refuses if that run is still going
                for name in ("config.json", "logs", "tensorboard", "checkpoints", "plots",
                             *data_files):
                    target = path / name
                    if target.is_dir():
                        shutil.rmtree(target)
                    elif target.exists():
                        target.unlink()
            busy = False
        if busy:
            hint = f", or continue that run with --resume {path}" if resumable else ""
            raise ValueError(f"--out: {path} exists and is not empty; choose a new folder{hint}")
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
    """Write JSON atomically (:func:`rnnkit.atomic.write_json`)."""
    atomic.write_json(path, payload)


def read_run_config(run_dir: str | Path) -> dict[str, Any]:
    """The config a run was started with; a clear error if ``run_dir`` is not a run folder."""
    run_dir = Path(run_dir)
    path = run_dir / "config.json"
    if not path.is_file():
        raise ValueError(f"{run_dir}: not an rnnkit run folder (no config.json)")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: unreadable ({exc})") from exc
    if not isinstance(config, dict):
        raise ValueError(f"{path}: expected a JSON object of options, got a "
                         f"{type(config).__name__}")
    return config


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
