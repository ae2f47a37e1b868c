"""rnnkit: recurrent neural networks with the maths in the open.

* :mod:`rnnkit.functional`: each cell's forward equations and hand-derived BPTT.
* :mod:`rnnkit.backends`: engines that run a cell over a sequence (``reference``, ``fused``).
* :mod:`rnnkit.nn`: drop-in replacements for ``torch.nn.RNN/LSTM/GRU`` and their cells.
* :class:`rnnkit.Forecaster`: ``fit(series).predict(n)`` time-series forecasting.
"""

from rnnkit import backends, functional, nn
from rnnkit.backends import available_backends

__version__ = "0.1.0"

__all__ = ["Forecaster", "__version__", "available_backends", "backends", "functional", "nn"]


def __getattr__(name: str):
    """``rnnkit.Forecaster`` is imported on first use (it pulls in Lightning and pandas)."""
    if name == "Forecaster":
        from rnnkit.forecasting.facade import Forecaster

        return Forecaster
    raise AttributeError(f"module 'rnnkit' has no attribute {name!r}")
