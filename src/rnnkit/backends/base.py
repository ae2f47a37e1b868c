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

Selection (:func:`select_backend`): an explicit name, else the ``RNNKIT_BACKEND``
environment variable, else the first backend in preference order that supports
the cell, device and dtype. A named backend that cannot run a case is not forced:
the registry warns once and falls back to one that can.
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
    """An engine that runs a cell over a sequence."""

    name: str

    def unsupported_reason(self, cell: str, device: torch.device, dtype: torch.dtype) -> str | None:
        """None when the case is supported, otherwise a short reason."""

    def run(self, cell: str, x: Tensor, states0: tuple[Tensor, ...], w_ih: Tensor,
            w_hh: Tensor, b_ih: Tensor | None, b_hh: Tensor | None,
            lengths: Tensor | None, extra: Sequence[Tensor] = (),
            masks: Masks | None = None) -> tuple[Tensor, tuple[Tensor, ...]]:
        """Run the cell; see the module docstring for shapes."""


_REGISTRY: dict[str, Backend] = {}
_PREFERENCE: list[str] = []  # fastest first
_WARNED: set[tuple[str, str]] = set()


def register_backend(backend: Backend, *, preference: int | None = None) -> None:
    """Add a backend. ``preference`` is its place in the automatic order (0 = tried first)."""
    _REGISTRY[backend.name] = backend
    if backend.name in _PREFERENCE:
        _PREFERENCE.remove(backend.name)
    _PREFERENCE.insert(len(_PREFERENCE) if preference is None else preference, backend.name)


def available_backends() -> list[str]:
    """Registered backend names, in automatic-selection order."""
    return list(_PREFERENCE)


def get_backend(name: str) -> Backend:
    """The backend registered under ``name``; ValueError naming the known ones otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"backend: expected one of {available_backends()}, got {name!r}") from None


def select_backend(name: str | None, cell: str, device: torch.device,
                   dtype: torch.dtype) -> Backend:
    """Choose the backend for one run (see the module docstring for the rules)."""
    return _REGISTRY[_selected_name(name, cell, device, dtype)]


def _selected_name(name: str | None, cell: str, device: torch.device, dtype: torch.dtype) -> str:
    # A constant for torch.compile: the choice (which may build the native engine, read the
    # environment and warn) is made once while tracing, not traced into the graph.
    source = "backend="
    if name is None and os.environ.get(ENV_VAR):
        name, source = os.environ[ENV_VAR], ENV_VAR
    if name is not None:
        if name not in _REGISTRY:
            raise ValueError(f"{source}: expected one of {available_backends()}, got {name!r}")
        backend = _REGISTRY[name]
        reason = backend.unsupported_reason(cell, device, dtype)
        if reason is None:
            return name
        fallback = _first_supporting(cell, device, dtype)
        key = (name, reason)
        if key not in _WARNED:
            _WARNED.add(key)
            warnings.warn(f"rnnkit: backend {name!r} cannot run this case ({reason}); "
                          f"using {fallback.name!r}", RuntimeWarning, stacklevel=5)
        return fallback.name
    return _first_supporting(cell, device, dtype).name


# A constant for torch.compile, marked as torch.compiler.assume_constant_result marks a
# function; the decorator itself would import torch._dynamo (about 1.7 s) with rnnkit.nn.
# tests/nn/test_startup.py checks that the decorator still marks functions this way.
_selected_name._dynamo_marked_constant = True


def _first_supporting(cell: str, device: torch.device, dtype: torch.dtype) -> Backend:
    for name in _PREFERENCE:
        if _REGISTRY[name].unsupported_reason(cell, device, dtype) is None:
            return _REGISTRY[name]
    raise RuntimeError(f"no rnnkit backend supports cell {cell!r} on {device} with {dtype}")
