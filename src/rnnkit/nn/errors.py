"""The error classes of rnnkit's layers: rnnkit's messages, torch.nn's exception classes.

torch.nn raises ``RuntimeError`` for most shape and size mismatches, ``ValueError`` for a
dtype mismatch or a bad rank, and ``TypeError`` for an argument of the wrong type. rnnkit's
messages name the argument, what was expected and what came; each error class below also
derives from what torch.nn raises in that case, so code written for torch.nn
(``except RuntimeError``) keeps catching them, and so does code that caught rnnkit's earlier
classes (``ValueError``, ``TypeError``).
"""

from __future__ import annotations


class RNNShapeError(ValueError, RuntimeError):
    """A tensor of the wrong shape, rank, size, length or device (torch.nn: RuntimeError)."""


class RNNTypeError(TypeError, ValueError):
    """A tensor of the wrong dtype (torch.nn: ValueError) or an argument of the wrong type
    (torch.nn: TypeError)."""


__all__ = ["RNNShapeError", "RNNTypeError"]
