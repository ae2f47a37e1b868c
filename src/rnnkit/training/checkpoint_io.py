"""Checkpoints written atomically and read with a clear error when damaged."""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO


def load_checkpoint_file(path: str | Path) -> dict[str, Any]:
    """``torch.load`` on the CPU, with a clear error for a missing or damaged file."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint {path} is missing")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, OSError,
            ValueError) as exc:
        raise ValueError(f"checkpoint {path} is corrupt or not a checkpoint ({exc}); "
                         "resume from another one or retrain") from exc
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ValueError(f"checkpoint {path} is not a Lightning checkpoint (no state_dict)")
    return checkpoint


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write to a temporary file in the same folder, flush it to disk, then rename.

    A run killed mid-write leaves the previous checkpoint intact, never a truncated one.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        with open(tmp, "wb") as f:
            torch.save(checkpoint, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict[str, Any]:
        return load_checkpoint_file(path)
