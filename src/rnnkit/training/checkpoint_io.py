"""Checkpoints written atomically, and read without running code from them.

A run folder is the natural way to share a trained model, so a checkpoint is untrusted
input: it is read with ``torch.load(weights_only=True)``, which unpickles tensors and
plain containers only. A checkpoint that needs more (one written by other code, or
crafted to run a payload) is refused with an error naming the type it asked for; a user
who trusts its source can allow full unpickling with ``RNNKIT_TRUST_CHECKPOINTS=1``.
"""

from __future__ import annotations

import os
import pickle
import re
import sys
import zipfile
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from rnnkit.atomic import TMP_MARK, atomic_path

TRUST_ENV = "RNNKIT_TRUST_CHECKPOINTS"
_NOTED: set[str] = set()


class UntrustedCheckpointError(ValueError):
    """A checkpoint that only full unpickling (which can run code) would read."""


def _trusted() -> bool:
    return os.environ.get(TRUST_ENV, "").strip().lower() in ("1", "true", "yes")


def load_checkpoint_file(path: str | Path) -> dict[str, Any]:
    """``torch.load`` of tensors and plain data on the CPU, with a clear error for a
    missing, damaged or unsafe file."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint {path} is missing")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if not re.search(r"GLOBAL|Unsupported global|Unsupported class", str(exc)):
            raise _damaged(path, exc) from exc  # not a refused type: a damaged file
        if not _trusted():
            raise UntrustedCheckpointError(
                f"checkpoint {path} holds more than tensors and plain data "
                f"({_unsafe_global(exc)}); rnnkit does not unpickle such files, since that can "
                f"run code from them. If you trust where it came from, set {TRUST_ENV}=1 "
                "to read it anyway") from None
        if str(path) not in _NOTED:
            _NOTED.add(str(path))
            print(f"rnnkit: note: {TRUST_ENV}=1: unpickling {path} in full (it holds more "
                  "than tensors and plain data)", file=sys.stderr)
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as exc2:
            raise _damaged(path, exc2) from exc2
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, KeyError,
            IndexError, TypeError, AttributeError) as exc:
        raise _damaged(path, exc) from exc
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ValueError(f"checkpoint {path} is not a Lightning checkpoint (no state_dict)")
    if not isinstance(checkpoint["state_dict"], dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor)
            for k, v in checkpoint["state_dict"].items()):
        raise ValueError(f"checkpoint {path}: state_dict must map names to tensors")
    return checkpoint


def _unsafe_global(exc: BaseException) -> str:
    """What the refused pickle asked for, e.g. ``it calls builtins.exec``."""
    found = re.search(r"GLOBAL ([\w.]+)", str(exc))
    return f"it asks for {found.group(1)}" if found else _first_line(exc)


def _first_line(exc: BaseException) -> str:
    text = str(exc)
    for line in text.splitlines():
        if line.startswith("Unsupported"):  # the weights-only unpickler's own reason
            return line.strip().rstrip(".")
    return text.splitlines()[0].strip() if text else type(exc).__name__


def _damaged(path: Path, exc: BaseException) -> ValueError:
    return ValueError(f"checkpoint {path} is corrupt or not a checkpoint ({_first_line(exc)}); "
                      "resume from another one or retrain")


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete the half-written checkpoints and JSON files a killed run left in ``folder``
    (and its ``checkpoints/``); returns what was removed."""
    removed = []
    for where in (folder, folder / "checkpoints"):
        if not where.is_dir():
            continue
        for item in where.iterdir():
            # ".<name>.tmp-<pid>" (rnnkit.atomic); ".<name>.<pid>.tmp" from older versions
            if item.is_file() and item.name.startswith(".") and (
                    TMP_MARK in item.name or item.name.endswith(".tmp")):
                try:
                    item.unlink()
                    removed.append(item)
                except OSError:
                    pass
    return removed


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write to a temporary file in the same folder, flush it to disk, then rename.

    A run killed mid-write leaves the previous checkpoint intact, never a truncated one;
    a write that fails (a full disk) removes its temporary file.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        path = Path(path)
        bad = [name for name, value in checkpoint.get("state_dict", {}).items()
               if torch.is_tensor(value) and value.is_floating_point()
               and not bool(torch.isfinite(value).all())]
        if bad:
            from rnnkit.training.trainer import TrainingDiverged

            kept = f"{path} keeps the previous weights" if path.is_file() else "nothing was written"
            raise TrainingDiverged(f"training diverged: the weights {', '.join(bad[:3])}"
                                   f"{' ...' if len(bad) > 3 else ''} are not finite, so the "
                                   f"checkpoint was not written ({kept}). Try a lower --lr "
                                   "or gradient clipping (--clip)")
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            torch.save(checkpoint, f)

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict[str, Any]:
        return follow_moved_folder(load_checkpoint_file(path), Path(path).parent)


def follow_moved_folder(checkpoint: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Point the checkpoint callbacks' saved state at ``folder``, where the checkpoint now
    lies. Lightning drops a ModelCheckpoint's best score when its saved folder differs from
    the current one (a run folder moved or copied to another disk or machine); the first
    epoch after resuming would then replace a better ``best.ckpt``. Paths under the old
    folder are read under the new one; the scores are kept."""
    new = os.path.realpath(folder)  # as ModelCheckpoint keeps its dirpath
    for key, state in (checkpoint.get("callbacks") or {}).items():
        if not str(key).startswith("ModelCheckpoint") or not isinstance(state, dict):
            continue
        old = state.get("dirpath")
        if not isinstance(old, str) or old == new:
            continue

        def moved(path, old=old):
            return new + path[len(old):] if isinstance(path, str) and path.startswith(old) else path

        state["dirpath"] = new
        for name in ("best_model_path", "kth_best_model_path", "last_model_path"):
            if name in state:
                state[name] = moved(state[name])
        if isinstance(state.get("best_k_models"), dict):
            state["best_k_models"] = {moved(k): v for k, v in state["best_k_models"].items()}
    return checkpoint
