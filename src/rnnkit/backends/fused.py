"""The fused backend: one autograd.Function per (layer, direction) whose backward is the
hand-derived BPTT of :mod:`rnnkit.functional`, not autograd.

It runs on any device torch runs on (the work is torch operations on preallocated
buffers). Variable lengths: the batch is sorted longest first and each step works on
the rows still running (the packed-sequence layout), then the original order is
restored.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

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
    """Collect ||dL/dh_t|| from every fused backward that runs inside the block.

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


class FusedSequenceFunction(torch.autograd.Function):
    """Autograd wrapper around :func:`sequence_forward` / :func:`sequence_backward`.

    ``apply(spec, batch_sizes, masks, x, w_ih, w_hh, b_ih, b_hh, *extra, *states0)`` with
    ``len(extra) == len(spec.extra)``; ``masks`` (a :class:`Masks` or None) are inputs
    without gradients.
    """

    @staticmethod
    def forward(ctx, spec: CellSpec, batch_sizes: Sequence[int] | None, masks: Masks | None,
                x: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None, b_hh: Tensor | None,
                *rest: Tensor):
        n_extra = len(spec.extra)
        extra, states0 = rest[:n_extra], rest[n_extra:]
        y, final, saved = sequence_forward(spec, x, states0, w_ih, w_hh, b_ih, b_hh, batch_sizes,
                                           extra, masks)
        ctx.spec = spec
        ctx.batch_sizes = batch_sizes
        ctx.masks = saved.masks
        ctx.has_bias = b_ih is not None
        ctx.sizes = (len(saved.states), len(saved.cache), len(saved.input_norm), n_extra)
        h_in = () if saved.h_in is None else (saved.h_in,)
        ctx.save_for_backward(x, w_ih, w_hh, *saved.states, *saved.cache, *saved.input_norm,
                              *extra, *h_in)
        ctx.set_materialize_grads(False)
        # Copies, not views of the saved buffers: a caller may modify its outputs in place
        # (torch.nn allows it), and that must not reach what the backward reads.
        return (y.clone(), *(s.clone() for s in final))

    @staticmethod
    @once_differentiable
    def backward(ctx, dy: Tensor | None, *dfinal: Tensor | None):
        spec: CellSpec = ctx.spec
        x, w_ih, w_hh, *rest = ctx.saved_tensors
        parts = []
        for size in ctx.sizes:
            parts.append(tuple(rest[:size]))
            rest = rest[size:]
        states, cache, input_norm, extra = parts
        h_in = rest[0] if rest else None
        saved = SequenceCache(x, states, cache, ctx.batch_sizes, extra, ctx.masks, h_in, input_norm)
        # needs_input_grad: (spec, batch_sizes, masks, x, w_ih, w_hh, b_ih, b_hh, *extra, *states0)
        need = ctx.needs_input_grad
        n_extra = len(extra)
        norms = x.new_zeros(x.shape[0], x.shape[1]) if _RECORDERS else None
        grads = sequence_backward(
            spec, saved, w_ih, w_hh, dy, dfinal, need_x=need[3],
            need_weights=need[4] or need[5], need_bias=ctx.has_bias and (need[6] or need[7]),
            need_extra=any(need[8: 8 + n_extra]), state_grad_norms=norms)
        for store in _RECORDERS:
            store.append(norms)
        first_state = 8 + n_extra
        dextra = tuple(g if need[8 + k] else None for k, g in enumerate(grads.extra))
        dstates0 = tuple(g if need[first_state + k] else None for k, g in enumerate(grads.states0))
        return (None, None, None, grads.x, grads.w_ih, grads.w_hh, grads.b_ih, grads.b_hh,
                *dextra, *dstates0)


def batch_sizes_from_lengths(sorted_lengths: Tensor) -> list[int]:
    """Running sequences per step, from lengths sorted longest first: [T_max] ints."""
    steps = torch.arange(int(sorted_lengths[0]))
    return (sorted_lengths.unsqueeze(0) > steps.unsqueeze(1)).sum(1).tolist()


class FusedBackend:
    """Hand-written BPTT over preallocated buffers; any device, floating dtypes."""

    name = "fused"

    def unsupported_reason(self, cell: str, device: torch.device, dtype: torch.dtype) -> str | None:
        if cell not in CELLS:
            return f"unknown cell {cell!r}"
        if not dtype.is_floating_point:
            return f"dtype {dtype} is not floating point"
        return None

    def run(self, cell: str, x: Tensor, states0: tuple[Tensor, ...], w_ih: Tensor,
            w_hh: Tensor, b_ih: Tensor | None, b_hh: Tensor | None,
            lengths: Tensor | None, extra: Sequence[Tensor] = (),
            masks: Masks | None = None) -> tuple[Tensor, tuple[Tensor, ...]]:
        spec = CELLS[cell]

        def apply(batch_sizes, masks, x, states0):
            return FusedSequenceFunction.apply(spec, batch_sizes, masks, x, w_ih, w_hh, b_ih, b_hh,
                                               *extra, *states0)

        return run_sorted(apply, x, states0, lengths, masks)


def run_sorted(apply: Callable[..., Sequence[Tensor]], x: Tensor, states0: tuple[Tensor, ...],
               lengths: Tensor | None, masks: Masks | None) -> tuple[Tensor, tuple[Tensor, ...]]:
    """Run ``apply(batch_sizes, masks, x, states0) -> (y, *final)`` in the packed layout.

    With lengths that are not all T, the batch (and the initial states and masks) is sorted
    longest first, ``batch_sizes`` says how many sequences run at each step, ``x`` is cut to
    the longest length, and the outputs are padded back to T and returned in the caller's
    order. Otherwise ``apply`` sees the batch as it is, with ``batch_sizes`` None.
    """
    T = x.shape[0]
    if lengths is None or bool((lengths == T).all()):
        y, *final = apply(None, masks, x, states0)
        return y, tuple(final)
    sorted_lengths, order = torch.sort(lengths, descending=True, stable=True)
    identity = bool((order == torch.arange(len(order))).all())
    batch_sizes = batch_sizes_from_lengths(sorted_lengths)
    t_max = len(batch_sizes)
    if not identity:
        idx = order.to(x.device)
        x = x.index_select(1, idx)
        states0 = tuple(s.index_select(0, idx) for s in states0)
        if masks is not None:
            masks = Masks(
                None if masks.recurrent is None else masks.recurrent.index_select(0, idx),
                tuple(None if m is None else m.index_select(1, idx) for m in masks.zoneout))
    if masks is not None:
        masks = Masks(masks.recurrent,
                      tuple(None if m is None else m[:t_max] for m in masks.zoneout))
    y, *final = apply(batch_sizes, masks, x[:t_max], states0)
    if t_max < T:
        y = torch.cat([y, y.new_zeros(T - t_max, *y.shape[1:])])
    if not identity:
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(len(order))
        inverse = inverse.to(x.device)
        y = y.index_select(1, inverse)
        final = [s.index_select(0, inverse) for s in final]
    return y, tuple(final)
