"""The training stack on PyTorch Lightning: options, Trainer, run folder, plots, runner.

The names below are imported on first use, so that ``rnnkit.training.options`` (what the
command line is built from) loads without Lightning.
"""

from __future__ import annotations

import importlib

__all__ = ["TrainingModule", "evaluate", "load_trained", "train"]
_WHERE = {"TrainingModule": "rnnkit.training.module", "evaluate": "rnnkit.training.runner",
          "load_trained": "rnnkit.training.runner", "train": "rnnkit.training.runner"}


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'rnnkit.training' has no attribute {name!r}")
