"""Checks of what a user passes to a layer, with errors that name the argument.

Every message says which argument was wrong, what was expected and what came, so a
user's mistake never surfaces as a stack trace from deep inside torch.
"""

from __future__ import annotations

import torch
from torch import Tensor


def check_input(input: object, input_size: int, ref: Tensor, *, ranks: tuple[int, ...]) -> Tensor:
    """Validate the input tensor's type, rank, feature size, dtype and device."""
    if not isinstance(input, Tensor):
        raise TypeError(f"input: expected a torch.Tensor or PackedSequence, got {type(input).__name__}")
    if input.dim() not in ranks:
        shapes = " or ".join(f"{r}-D" for r in ranks)
        raise ValueError(f"input: expected a {shapes} tensor, got {input.dim()}-D with shape "
                         f"{tuple(input.shape)}")
    if input.shape[-1] != input_size:
        raise ValueError(f"input: expected last dimension input_size={input_size}, got "
                         f"{input.shape[-1]} (shape {tuple(input.shape)})")
    check_like(input, ref, "input")
    return input


def check_like(t: Tensor, ref: Tensor, name: str) -> None:
    """Same dtype and device as the layer's parameters."""
    if t.dtype != ref.dtype:
        raise TypeError(f"{name}: expected dtype {ref.dtype} (the layer's parameters), got "
                        f"{t.dtype}; convert the input or the layer with .to()")
    if t.device != ref.device:
        raise ValueError(f"{name}: expected a tensor on {ref.device} (the layer's parameters), "
                         f"got one on {t.device}")


def check_state(state: object, expected: tuple[int, ...], ref: Tensor, name: str) -> Tensor:
    """An initial state: a tensor of exactly ``expected`` shape, dtype and device of ``ref``."""
    if not isinstance(state, Tensor):
        raise TypeError(f"{name}: expected a tensor of shape {expected}, got {type(state).__name__}")
    if tuple(state.shape) != expected:
        raise ValueError(f"{name}: expected shape {expected}, got {tuple(state.shape)}")
    check_like(state, ref, name)
    return state


def check_lengths(lengths: object, batch: int, steps: int) -> Tensor:
    """Per-sequence lengths: integers in 1..steps, one per batch element; returned int64 on CPU."""
    if isinstance(lengths, (list, tuple)):
        lengths = torch.as_tensor(lengths)
    if not isinstance(lengths, Tensor):
        raise TypeError(f"lengths: expected a 1-D integer tensor or list, got {type(lengths).__name__}")
    if lengths.dtype.is_floating_point or lengths.dtype.is_complex or lengths.dtype == torch.bool:
        raise TypeError(f"lengths: expected integers, got dtype {lengths.dtype}")
    if lengths.dim() != 1 or lengths.shape[0] != batch:
        raise ValueError(f"lengths: expected shape ({batch},) (one per sequence in the batch), "
                         f"got {tuple(lengths.shape)}")
    lengths = lengths.detach().to("cpu", torch.int64)
    if torch.compiler.is_compiling():
        return lengths  # values are data: the engines' operator checks them when it runs
    if batch and int(lengths.min()) < 1:
        raise ValueError(f"lengths: expected every length >= 1, got {int(lengths.min())}")
    if batch and int(lengths.max()) > steps:
        raise ValueError(f"lengths: expected every length <= the sequence length {steps}, got "
                         f"{int(lengths.max())}")
    return lengths
