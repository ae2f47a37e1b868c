"""rnnkit: recurrent neural networks with the maths in the open.

* :mod:`rnnkit.functional`: each cell's forward equations and hand-derived BPTT.
* :mod:`rnnkit.backends`: engines that run a cell over a sequence (``reference``, ``fused``,
  ``native``).
* :mod:`rnnkit.nn`: drop-in replacements for ``torch.nn.RNN/LSTM/GRU`` and their cells.
* :class:`rnnkit.Forecaster`: ``fit(series).predict(n)`` time-series forecasting.

Each is imported on first use: ``import rnnkit`` alone loads nothing heavy, so the
``rnnkit`` command answers ``--help`` without importing torch.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

__all__ = ["Forecaster", "__version__", "available_backends", "backends", "functional", "nn"]
_SUBMODULES = ("backends", "functional", "nn")


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"rnnkit.{name}")
    if name == "available_backends":
        from rnnkit.backends import available_backends

        return available_backends
    if name == "Forecaster":  # pulls in Lightning and pandas
        from rnnkit.forecaster import Forecaster

        return Forecaster
    raise AttributeError(f"module 'rnnkit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
