"""rnnkit: recurrent neural networks with the maths in the open.

* :mod:`rnnkit.functional`: each cell's forward equations and hand-derived BPTT.
* :mod:`rnnkit.backends`: engines that run a cell over a sequence (``reference``, ``fused``).
* :mod:`rnnkit.nn`: drop-in replacements for ``torch.nn.RNN/LSTM/GRU`` and their cells.
"""

from rnnkit import backends, functional, nn
from rnnkit.backends import available_backends

__version__ = "0.1.0"

__all__ = ["__version__", "available_backends", "backends", "functional", "nn"]
