"""Engines that run a cell over a sequence, chosen by a registry.

``reference`` (autograd loop, the oracle), ``fused`` (hand-written BPTT as tensor
operations, any device), ``native`` (every built-in cell's loops in C++, CPU) and ``triton``
(the loops as Triton kernels, CUDA) are built in; the automatic choice tries ``triton``,
``native``, ``fused``, then ``reference``
(:mod:`rnnkit.backends.base` holds the one selection rule).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from rnnkit.backends.base import (
    ENV_VAR,
    Backend,
    available_backends,
    get_backend,
    register_backend,
    select_backend,
)
from rnnkit.backends.fused import FusedBackend, record_state_gradients
from rnnkit.backends.native import NativeBackend
from rnnkit.backends.reference import ReferenceBackend
from rnnkit.backends.triton_engine import TritonBackend
from rnnkit.functional import Masks

register_backend(ReferenceBackend(), priority=10)
register_backend(FusedBackend(), priority=20)
register_backend(NativeBackend(), priority=30)
register_backend(TritonBackend(), priority=40)


def reverse_padded(x: Tensor, lengths: Tensor | None) -> Tensor:
    """Reverse each sequence of ``x`` [T, B, *] within its own length.

    Positions past a sequence's end stay where they are, so applying this twice is
    the identity; it is how the backward direction of a bidirectional layer sees
    each sequence from its last valid step.
    """
    if lengths is None:
        return x.flip(0)
    T, B = x.shape[:2]
    t = torch.arange(T).unsqueeze(1)  # [T, 1]
    lens = lengths.unsqueeze(0)  # [1, B]
    idx = torch.where(t < lens, lens - 1 - t, t).to(x.device)  # [T, B]
    idx = idx.view(T, B, *([1] * (x.dim() - 2))).expand_as(x)
    return x.gather(0, idx)


def run_direction(cell: str, x: Tensor, states0: tuple[Tensor, ...], w_ih: Tensor,
                  w_hh: Tensor, b_ih: Tensor | None, b_hh: Tensor | None,
                  lengths: Tensor | None = None, reverse: bool = False,
                  backend: str | None = None, extra: Sequence[Tensor] = (),
                  masks: Masks | None = None) -> tuple[Tensor, tuple[Tensor, ...]]:
    """Run ``cell`` over one direction of one layer with the selected backend.

    Args:
        cell: a key of :data:`rnnkit.functional.CELLS` (``"lstm"``, ``"ln-gru"``...).
        x: [T, B, I]; states0: tuple of [B, H]; weights as torch.nn names them.
        lengths: int64 CPU tensor [B] of valid lengths (1..T), or None for all T.
        reverse: run from each sequence's last valid step back to its first.
        backend: a registered name, or None for the automatic choice.
        extra: the cell's extra parameters, in the order of its spec's ``extra``.
        masks: recurrent-dropout mask [B, H] and zoneout masks [T, B, H] per state, or
            None. Zoneout masks are indexed by processing step (for ``reverse``, step 0
            is each sequence's last element).

    Returns:
        ``y`` [T, B, H] in the original time order, and the final states.
    """
    masked = masks is not None and (masks.recurrent is not None
                                    or any(m is not None for m in masks.zoneout))
    engine = select_backend(backend, cell, x.device, x.dtype, masked)
    if reverse:
        x = reverse_padded(x, lengths)
    y, final = engine.run(cell, x, states0, w_ih, w_hh, b_ih, b_hh, lengths, tuple(extra), masks)
    if reverse:
        y = reverse_padded(y, lengths)
    return y, final


__all__ = [
    "ENV_VAR",
    "Backend",
    "FusedBackend",
    "NativeBackend",
    "ReferenceBackend",
    "TritonBackend",
    "available_backends",
    "get_backend",
    "record_state_gradients",
    "register_backend",
    "reverse_padded",
    "run_direction",
    "select_backend",
]
