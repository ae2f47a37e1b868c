"""Checks of what a user passes to a layer, with errors that name the argument.

Every message says which argument was wrong, what was expected and what came, so a
user's mistake never surfaces as a stack trace from deep inside torch.
"""

from __future__ import annotations

import numbers

import torch
from torch import Tensor

from rnnkit.nn.errors import RNNShapeError, RNNTypeError


def check_input(input: object, input_size: int, ref: Tensor, *, ranks: tuple[int, ...]) -> Tensor:
    """Validate the input tensor's type, rank, feature size, dtype and device."""
    if not isinstance(input, Tensor):
        raise TypeError(f"input: expected a torch.Tensor or PackedSequence, got {type(input).__name__}")
    if input.dim() not in ranks:
        shapes = " or ".join(f"{r}-D" for r in ranks)
        raise RNNShapeError(f"input: expected a {shapes} tensor, got {input.dim()}-D with shape "
                            f"{tuple(input.shape)}")
    if input.shape[-1] != input_size:
        raise RNNShapeError(f"input: expected last dimension input_size={input_size}, got "
                            f"{input.shape[-1]} (shape {tuple(input.shape)})")
    check_like(input, ref, "input")
    return input


def check_like(t: Tensor, ref: Tensor, name: str) -> None:
    """Same dtype and device as the layer's parameters."""
    if t.dtype != ref.dtype:
        raise RNNTypeError(f"{name}: expected dtype {ref.dtype} (the layer's parameters), got "
                           f"{t.dtype}; convert the input or the layer with .to()")
    if t.device != ref.device:
        raise RNNShapeError(f"{name}: expected a tensor on {ref.device} (the layer's "
                            f"parameters), got one on {t.device}")


def check_state(state: object, expected: tuple[int, ...], ref: Tensor, name: str) -> Tensor:
    """An initial state: a tensor of exactly ``expected`` shape, dtype and device of ``ref``."""
    if not isinstance(state, Tensor):
        raise TypeError(f"{name}: expected a tensor of shape {expected}, got {type(state).__name__}")
    if tuple(state.shape) != expected:
        raise RNNShapeError(f"{name}: expected shape {expected}, got {tuple(state.shape)}")
    check_like(state, ref, name)
    return state


def check_lengths(lengths: object, batch: int, steps: int) -> Tensor:
    """Per-sequence lengths: integers in 1..steps, one per batch element; returned int64 on CPU."""
    if isinstance(lengths, (list, tuple)):
        lengths = torch.as_tensor(lengths)
    if not isinstance(lengths, Tensor):
        raise TypeError(f"lengths: expected a 1-D integer tensor or list, got {type(lengths).__name__}")
    if lengths.dtype.is_floating_point or lengths.dtype.is_complex or lengths.dtype == torch.bool:
        raise RNNTypeError(f"lengths: expected integers, got dtype {lengths.dtype}")
    if lengths.dim() != 1 or lengths.shape[0] != batch:
        raise RNNShapeError(f"lengths: expected shape ({batch},) (one per sequence in the batch), "
                         f"got {tuple(lengths.shape)}")
    lengths = lengths.detach().to("cpu", torch.int64)
    if torch.compiler.is_compiling():
        return lengths  # values are data: the engines' operator checks them when it runs
    if batch and int(lengths.min()) < 1:
        raise RNNShapeError(f"lengths: expected every length >= 1, got {int(lengths.min())}")
    if batch and int(lengths.max()) > steps:
        raise RNNShapeError(f"lengths: expected every length <= the sequence length {steps}, got "
                         f"{int(lengths.max())}")
    return lengths


def check_sequence_length(x: Tensor, given: Tensor) -> None:
    """torch.nn refuses a sequence of no steps (a batch of none is fine); ``x`` is the
    time-major view of what the user ``given``."""
    if x.shape[0] == 0:
        raise RNNShapeError(f"input: expected sequence length to be larger than 0 in RNN, got "
                            f"shape {tuple(given.shape)}")


def check_size(value: object, name: str, *, allow_zero: bool = False) -> int:
    """A layer size: an int (TypeError otherwise, as torch.nn), positive (or >= 0)."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise RNNTypeError(f"{name}: expected an int, got {value!r} ({type(value).__name__})")
    if value < (0 if allow_zero else 1):
        what = "a non-negative" if allow_zero else "a positive"
        raise ValueError(f"{name}: expected {what} integer, got {value}")
    return value


def check_flag(value: object, name: str) -> bool:
    """A switch given as a bool, as torch.nn requires (a string such as "False" is true)."""
    if not isinstance(value, bool):
        raise RNNTypeError(f"{name}: expected a bool, got {value!r} ({type(value).__name__})")
    return value


def check_probability(value: object, name: str) -> float:
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not 0 <= value < 1:
        raise ValueError(f"{name}: expected a probability in [0, 1), got {value!r}")
    return float(value)


def check_zoneout(value: object, num_states: int) -> tuple[float, ...]:
    """One probability for every state, or one per state: (hidden, cell) for the LSTMs."""
    if isinstance(value, (tuple, list)):
        if len(value) != num_states:
            what = "(hidden, cell)" if num_states == 2 else "(hidden,)"
            raise ValueError(f"zoneout: expected a probability or a pair {what} of "
                             f"probabilities for this cell, got {value!r}")
        return tuple(check_probability(v, "zoneout") for v in value)
    return (check_probability(value, "zoneout"),) * num_states
