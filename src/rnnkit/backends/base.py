"""The contract every engine meets, and the registry that chooses one.

A backend runs one cell over one direction of one layer::

    y, final_states = backend.run(cell, x, states0, w_ih, w_hh, b_ih, b_hh, lengths,
                                  extra, masks)

with ``x`` [T, B, I] time-major, ``states0`` a tuple of [B, H] tensors (``(h,)`` or
``(h, c)``), ``lengths`` an int64 CPU tensor [B] or None, ``extra`` the cell's extra
parameters (layer-norm gains...) and ``masks`` the recurrent-dropout and zoneout masks
(:class:`rnnkit.functional.Masks`) or None. ``y`` is [T, B, H] and is
zero past each sequence's end; ``final_states`` holds each sequence's state at its
own last step.

Selection (:func:`select_backend`) is the one rule every caller uses (the layers'
``forward``, their one-step ``step()``, and every engine): an explicit name, else the
``RNNKIT_BACKEND`` environment variable, else the backend of highest ``priority`` that
supports the case: the cell, device and dtype, and whether the run carries
recurrent-dropout or zoneout masks (a backend whose ``runs_masks`` is False leaves those
to another). A named backend that cannot run a case is not forced: the registry warns
once and falls back to the best one that can. Built in: triton 40 (CUDA), native 30,
fused 20, reference 10.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from typing import Protocol

import torch
from torch import Tensor

from rnnkit.functional import Masks

ENV_VAR = "RNNKIT_BACKEND"


class Backend(Protocol):
    """An engine that runs a cell over a sequence. Optional attribute: ``runs_masks``
    (default True), False for an engine without recurrent dropout and zoneout."""

    name: str

    def unsupported_reason(self, cell: str, device: torch.device, dtype: torch.dtype) -> str | None:
        """None when the case is supported, otherwise a short reason."""

    def run(self, cell: str, x: Tensor, states0: tuple[Tensor, ...], w_ih: Tensor,
            w_hh: Tensor, b_ih: Tensor | None, b_hh: Tensor | None,
            lengths: Tensor | None, extra: Sequence[Tensor] = (),
            masks: Masks | None = None) -> tuple[Tensor, tuple[Tensor, ...]]:
        """Run the cell; see the module docstring for shapes."""


_REGISTRY: dict[str, Backend] = {}
_PRIORITY: dict[str, int] = {}  # higher is tried first
_PREFERENCE: list[str] = []  # the names by priority, highest first
_WARNED: set[tuple[str, str]] = set()


def register_backend(backend: Backend, *, priority: int = 0) -> None:
    """Add (or replace) a backend; the automatic choice tries higher ``priority`` first
    (built in: triton 40, native 30, fused 20, reference 10; equal priorities keep
    registration order)."""
    _REGISTRY[backend.name] = backend
    _PRIORITY[backend.name] = priority
    order = [n for n in _PREFERENCE if n != backend.name] + [backend.name]
    _PREFERENCE[:] = sorted(order, key=lambda n: -_PRIORITY[n])


def available_backends() -> list[str]:
    """Registered backend names, in automatic-selection order."""
    return list(_PREFERENCE)


def unsupported_reason(backend: Backend, cell: str, device: torch.device, dtype: torch.dtype,
                       masked: bool = False) -> str | None:
    """Why ``backend`` cannot run the case, or None: its own answer for the cell, device
    and dtype, and whether it runs recurrent-dropout and zoneout masks."""
    if masked and not getattr(backend, "runs_masks", True):
        return "recurrent dropout and zoneout run in another engine's loop"
    return backend.unsupported_reason(cell, device, dtype)


def get_backend(name: str) -> Backend:
    """The backend registered under ``name``; ValueError naming the known ones otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"backend: expected one of {available_backends()}, got {name!r}") from None


def select_backend(name: str | None, cell: str, device: torch.device,
                   dtype: torch.dtype, masked: bool = False) -> Backend:
    """Choose the backend for one run (see the module docstring for the rules);
    ``masked``: the run carries recurrent-dropout or zoneout masks."""
    return _REGISTRY[_selected_name(name, cell, device, dtype, masked)]


def _selected_name(name: str | None, cell: str, device: torch.device, dtype: torch.dtype,
                   masked: bool = False) -> str:
    # A constant for torch.compile: the choice (which may build the native engine, read the
    # environment and warn) is made once while tracing, not traced into the graph.
    source = "backend="
    if name is None and os.environ.get(ENV_VAR):
        name, source = os.environ[ENV_VAR], ENV_VAR
    if name is not None:
        if name not in _REGISTRY:
            raise ValueError(f"{source}: expected one of {available_backends()}, got {name!r}")
        reason = unsupported_reason(_REGISTRY[name], cell, device, dtype, masked)
        if reason is None:
            return name
        fallback = _first_supporting(cell, device, dtype, masked)
        key = (name, reason)
        if key not in _WARNED:
            _WARNED.add(key)
            warnings.warn(f"rnnkit: backend {name!r} cannot run this case ({reason}); "
                          f"using {fallback.name!r}", RuntimeWarning, stacklevel=5)
        return fallback.name
    return _first_supporting(cell, device, dtype, masked).name


# A constant for torch.compile, marked as torch.compiler.assume_constant_result marks a
# function; the decorator itself would import torch._dynamo (about 1.7 s) with rnnkit.nn.
# tests/nn/test_startup.py checks that the decorator still marks functions this way.
_selected_name._dynamo_marked_constant = True


def _first_supporting(cell: str, device: torch.device, dtype: torch.dtype,
                      masked: bool) -> Backend:
    for name in _PREFERENCE:
        if unsupported_reason(_REGISTRY[name], cell, device, dtype, masked) is None:
            return _REGISTRY[name]
    raise RuntimeError(f"no rnnkit backend supports cell {cell!r} on {device} with {dtype}")
