"""The fused backend: the time loop of :mod:`rnnkit.functional` run by
``torch.ops.rnnkit.sequence`` (:mod:`rnnkit.backends.ops`), whose backward is the
hand-derived BPTT, not autograd.

It runs on any device torch runs on (the work is torch operations on preallocated
buffers). Variable lengths: the operator sorts the batch longest first and each step works on
the rows still running (the packed-sequence layout), then restores the original order.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor

from rnnkit.backends import ops
from rnnkit.functional import (
    CELLS,
    CellSpec,
    Masks,
    SequenceCache,
    sequence_backward,
    sequence_forward,
)

_RECORDERS: list[list[Tensor]] = []


@contextmanager
def record_state_gradients() -> Iterator[list[Tensor]]:
    """Collect ||dL/dh_t|| from every fused or native backward that runs inside the block.

    Yields a list that receives one [T, B] tensor per (layer, direction), in the order
    the backward visits them (the top layer first). With variable lengths the rows are
    in the engine's length-sorted order. The norms come from the hand-derived BPTT
    itself, so recording costs one norm per time step.
    """
    store: list[Tensor] = []
    _RECORDERS.append(store)
    try:
        yield store
    finally:
        _RECORDERS.remove(store)


class FusedKernel:
    """The fused engine's side of :mod:`rnnkit.backends.ops`: the forward keeps the
    :class:`SequenceCache` as a flat list of tensors, the backward rebuilds it."""

    @staticmethod
    def _layout(spec: CellSpec, masks: Masks) -> tuple[int, int, int, int]:
        """How many tensors of the saved list are (states, cache, input_norm, h_in)."""
        return (spec.num_states, 1 + len(spec.cache_widths) + 2 * spec.norm_stats,
                3 if spec.input_norm else 0, 1 if masks.recurrent is not None else 0)

    def forward(self, cell, x, w_ih, w_hh, b_ih, b_hh, extra, states0, batch_sizes, masks):
        spec = CELLS[cell]
        y, final, saved = sequence_forward(spec, x, states0, w_ih, w_hh, b_ih, b_hh,
                                           batch_sizes, extra, masks)
        h_in = [] if saved.h_in is None else [saved.h_in]
        keep = [*saved.states, *saved.cache, *saved.input_norm, *h_in]
        # Copies, not views of the saved buffers: a caller may modify its outputs in place
        # (torch.nn allows it), and that must not reach what the backward reads.
        return y.clone(), tuple(s.clone() for s in final), keep

    def saved_like(self, cell, x, w_hh, masks):
        spec = CELLS[cell]
        T, B, _ = x.shape
        H = w_hh.shape[1]
        G = spec.gates * H
        new = x.new_empty
        shapes = [(T + 1, B, H)] * spec.num_states + [(T, B, G)]
        shapes += [(T, B, w * H) for w in spec.cache_widths] + [(T, B, 1)] * (2 * spec.norm_stats)
        if spec.input_norm:
            shapes += [(T, B, G), (T, B, 1), (T, B, 1)]
        if masks.recurrent is not None:
            shapes.append((T, B, H))
        return [new(s) for s in shapes]

    def backward(self, cell, x, w_ih, w_hh, has_bias, extra, batch_sizes, masks, saved, dy,
                 dfinal, need):
        spec = CELLS[cell]
        n_states, n_cache, n_norm, n_hin = self._layout(spec, masks)
        states = tuple(saved[:n_states])
        cache = tuple(saved[n_states: n_states + n_cache])
        input_norm = tuple(saved[n_states + n_cache: n_states + n_cache + n_norm])
        h_in = saved[-1] if n_hin else None
        cached = SequenceCache(x, states, cache, batch_sizes, tuple(extra), masks, h_in,
                               input_norm)
        n_extra = len(extra)
        norms = x.new_zeros(x.shape[0], x.shape[1]) if _RECORDERS else None
        grads = sequence_backward(
            spec, cached, w_ih, w_hh, dy, dfinal, need_x=need[0],
            need_weights=need[1] or need[2], need_bias=has_bias and (need[3] or need[4]),
            need_extra=any(need[5: 5 + n_extra]), state_grad_norms=norms)
        for store in _RECORDERS:
            store.append(norms)
        out = [grads.x, grads.w_ih, grads.w_hh, grads.b_ih, grads.b_hh, *grads.extra,
               *grads.states0]
        return [g if n else None for g, n in zip(out, need)]


class FusedBackend:
    """Hand-written BPTT over preallocated buffers; any device, floating dtypes."""

    name = "fused"

    def unsupported_reason(self, cell: str, device: torch.device, dtype: torch.dtype) -> str | None:
        if cell not in CELLS:
            return f"unknown cell {cell!r}"
        if CELLS[cell].step_into is None:
            return f"the {cell} cell has no hand-derived backward (only its plain step)"
        if not dtype.is_floating_point:
            return f"dtype {dtype} is not floating point"
        return None

    def run(self, cell: str, x: Tensor, states0: tuple[Tensor, ...], w_ih: Tensor,
            w_hh: Tensor, b_ih: Tensor | None, b_hh: Tensor | None,
            lengths: Tensor | None, extra: Sequence[Tensor] = (),
            masks: Masks | None = None) -> tuple[Tensor, tuple[Tensor, ...]]:
        return ops.run_sequence("fused", cell, x, states0, w_ih, w_hh, b_ih, b_hh, lengths,
                                extra, masks)


ops.register_kernel("fused", FusedKernel())
