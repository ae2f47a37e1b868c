"""The engines as real PyTorch operators: ``torch.ops.rnnkit.sequence`` and its backward.

Every compiled engine (``fused``, ``native``) runs one cell over one direction of one layer
through two registered operators:

``rnnkit::sequence(engine, cell, x, w_ih, w_hh, b_ih, b_hh, extra, states0, lengths,
recurrent_mask, zoneout) -> [y, *final_states, *saved]``

``rnnkit::sequence_backward(engine, cell, <the same inputs>, saved, dy, dfinal, need)
-> [dx, dw_ih, dw_hh, db_ih, db_hh, *dextra, *dstates0]``

What registration buys (``torch.library``):

* a fake (meta) implementation of each, a shape formula, so ``torch.compile`` traces a
  model through them with no graph break, ``lengths=`` included (the packed layout is
  made inside the operator, so no shape depends on the lengths' values);
* registered autograd (:mod:`rnnkit.backends.op_autograd`): the backward is the
  hand-derived BPTT (the second operator); when the backward must itself be
  differentiable (``create_graph=True``, double backward), it is computed instead by
  differentiating the ``reference`` engine's recomputation of the forward (the same
  equations through autograd), so every higher-order gradient is exact;
* a batching rule for each (a loop over the vmapped dimension), so ``torch.func.vmap``,
  ``jacrev`` and ``is_grads_batched=True`` work.

Inputs are checked here, at the operators' boundary, for every engine: shapes, dtypes,
devices and lengths, with errors that are ``RuntimeError`` (as torch.nn's) and name what was
expected and what came. An engine's kernels may trust what passes this check.

An engine registers a :class:`SequenceKernel` under its name with :func:`register_kernel`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch
from torch import Tensor

from rnnkit.functional import CELLS, Masks

NAMESPACE = "rnnkit"


class SequenceKernel(Protocol):
    """What an engine provides to the operators. ``batch_sizes`` is None (every sequence
    runs all T steps) or T counts of running sequences, non-increasing, possibly ending in
    zeros (steps after the longest sequence); rows are then sorted longest first."""

    def forward(self, cell: str, x: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None,
                b_hh: Tensor | None, extra: tuple[Tensor, ...], states0: tuple[Tensor, ...],
                batch_sizes: list[int] | None, masks: Masks
                ) -> tuple[Tensor, tuple[Tensor, ...], list[Tensor]]:
        """(y [T, B, H], final states [B, H], saved tensors for the backward)."""

    def saved_like(self, cell: str, x: Tensor, w_hh: Tensor, masks: Masks) -> list[Tensor]:
        """Empty tensors shaped as ``forward``'s saved list (the fake implementation)."""

    def backward(self, cell: str, x: Tensor, w_ih: Tensor, w_hh: Tensor, has_bias: bool,
                 extra: tuple[Tensor, ...], batch_sizes: list[int] | None, masks: Masks,
                 saved: list[Tensor], dy: Tensor | None, dfinal: list[Tensor | None],
                 need: list[bool]) -> list[Tensor | None]:
        """[dx, dw_ih, dw_hh, db_ih, db_hh, *dextra, *dstates0]; None where not needed.
        ``need`` has one flag per entry of that list."""


_KERNELS: dict[str, SequenceKernel] = {}


def register_kernel(name: str, kernel: SequenceKernel) -> None:
    """Make ``kernel`` runnable as ``engine=name`` through the operators."""
    _KERNELS[name] = kernel


class OperatorInputError(RuntimeError):
    """A malformed input at the operators' boundary (a RuntimeError, as torch.nn's)."""


# ---------------------------------------------------------------- boundary checks


def _fail(msg: str) -> None:
    raise OperatorInputError(f"rnnkit.ops.sequence: {msg}")


def check_inputs(engine: str, cell: str, x: Tensor, w_ih: Tensor, w_hh: Tensor,
                 b_ih: Tensor | None, b_hh: Tensor | None, extra: Sequence[Tensor],
                 states0: Sequence[Tensor], lengths: Tensor | None,
                 recurrent_mask: Tensor | None, zoneout: Sequence[Tensor | None]) -> None:
    """Every assumption the kernels make, checked (shapes, dtypes, devices, lengths)."""
    if engine not in _KERNELS:
        _fail(f"engine: expected one of {sorted(_KERNELS)}, got {engine!r}")
    if cell not in CELLS:
        _fail(f"cell: expected one of {sorted(CELLS)}, got {cell!r}")
    spec = CELLS[cell]
    if x.dim() != 3:
        _fail(f"x: expected a 3-D [T, B, I] tensor, got shape {tuple(x.shape)}")
    if not x.dtype.is_floating_point:
        _fail(f"x: expected a floating-point dtype, got {x.dtype}")
    T, B, I = x.shape
    if w_hh.dim() != 2:
        _fail(f"w_hh: expected a 2-D [gates * H, H] tensor, got shape {tuple(w_hh.shape)}")
    H = w_hh.shape[1]
    G = spec.gates * H
    # (name, tensor, shape): a flat list, compared as the loop goes (this runs on every call)
    checks = [("w_ih", w_ih, (G, I)), ("w_hh", w_hh, (G, H))]
    if (b_ih is None) != (b_hh is None):
        _fail("b_ih, b_hh: expected both or neither")
    if b_ih is not None:
        checks += [("b_ih", b_ih, (G,)), ("b_hh", b_hh, (G,))]
    if len(extra) != len(spec.extra):
        _fail(f"extra: cell {cell!r} takes {len(spec.extra)} extra parameters "
              f"({', '.join(e.name for e in spec.extra) or 'none'}), got {len(extra)}")
    checks += [(e.name, t, (e.width * H,)) for e, t in zip(spec.extra, extra)]
    if len(states0) != spec.num_states:
        _fail(f"states0: cell {cell!r} has {spec.num_states} states, got {len(states0)}")
    checks += [("states0", s, (B, H)) for s in states0]
    if recurrent_mask is not None:
        checks.append(("recurrent_mask", recurrent_mask, (B, H)))
    if len(zoneout) > spec.num_states:
        _fail(f"zoneout: at most one mask per state ({spec.num_states}), got {len(zoneout)}")
    checks += [("zoneout", m, (T, B, H)) for m in zoneout if m is not None]
    dtype, device = x.dtype, x.device
    for name, t, shape in checks:
        if t.shape == shape and t.dtype == dtype and t.device == device:
            continue
        if name in ("states0", "zoneout"):  # named with their index only when one is wrong
            listed = states0 if name == "states0" else zoneout
            name = f"{name}[{next(k for k, u in enumerate(listed) if u is t)}]"
        if t.shape != shape:
            _fail(f"{name}: expected shape {shape} (T={T}, B={B}, I={I}, H={H}, "
                  f"{spec.gates} gate blocks), got {tuple(t.shape)}")
        if t.dtype != dtype:
            _fail(f"{name}: expected dtype {dtype} (the input's), got {t.dtype}")
        if t.device != device:
            _fail(f"{name}: expected a tensor on {device} (the input's), got {t.device}")
    if lengths is not None:
        if lengths.dim() != 1 or lengths.shape[0] != B or lengths.dtype != torch.int64:
            _fail(f"lengths: expected an int64 tensor of shape ({B},), got "
                  f"{lengths.dtype} {tuple(lengths.shape)}")
        if lengths.device.type != "cpu":
            _fail(f"lengths: expected a CPU tensor, got one on {lengths.device}")


def _check_length_values(lengths: Tensor, T: int) -> None:
    """The values of ``lengths`` (not available while tracing, so checked at run time)."""
    if lengths.numel() and (int(lengths.min()) < 1 or int(lengths.max()) > T):
        _fail(f"lengths: expected every length in 1..{T}, got values from "
              f"{int(lengths.min())} to {int(lengths.max())}")


# ---------------------------------------------------------------- the packed layout


class Layout:
    """How a batch with ``lengths`` is laid out for the kernels: sorted longest first
    (``order``, or None when already sorted) with ``batch_sizes`` (T counts, trailing
    zeros after the longest sequence), or as it is (both None)."""

    def __init__(self, lengths: Tensor | None, T: int, device: torch.device) -> None:
        self.order: Tensor | None = None
        self.inverse: Tensor | None = None
        self.batch_sizes: list[int] | None = None
        if lengths is None:
            return
        _check_length_values(lengths, T)
        if lengths.numel() == 0 or bool((lengths == T).all()):
            return
        sorted_lengths, order = torch.sort(lengths, descending=True, stable=True)
        steps = torch.arange(T)
        self.batch_sizes = (sorted_lengths.unsqueeze(0) > steps.unsqueeze(1)).sum(1).tolist()
        if not bool((order == torch.arange(len(order))).all()):
            inverse = torch.empty_like(order)
            inverse[order] = torch.arange(len(order))
            self.order, self.inverse = order.to(device), inverse.to(device)

    def rows(self, t: Tensor | None, dim: int) -> Tensor | None:
        """``t`` with its batch dimension ``dim`` in the kernels' order."""
        return t if t is None or self.order is None else t.index_select(dim, self.order)

    def unrows(self, t: Tensor | None, dim: int) -> Tensor | None:
        """``t`` back in the caller's order."""
        return t if t is None or self.inverse is None else t.index_select(dim, self.inverse)

    def masks(self, recurrent_mask: Tensor | None, zoneout: Sequence[Tensor | None]) -> Masks:
        return Masks(self.rows(recurrent_mask, 0), tuple(self.rows(m, 1) for m in zoneout))


# ---------------------------------------------------------------- the operators


def _forward_impl(engine: str, cell: str, x: Tensor, w_ih: Tensor, w_hh: Tensor,
                  b_ih: Tensor | None, b_hh: Tensor | None, extra: Sequence[Tensor],
                  states0: Sequence[Tensor], lengths: Tensor | None,
                  recurrent_mask: Tensor | None, zoneout: Sequence[Tensor | None]
                  ) -> list[Tensor]:
    check_inputs(engine, cell, x, w_ih, w_hh, b_ih, b_hh, extra, states0, lengths,
                 recurrent_mask, zoneout)
    T = x.shape[0]
    if x.shape[1] == 0:  # an empty batch: nothing to run
        return _empty_forward(engine, cell, x, w_hh, recurrent_mask, zoneout)
    if lengths is None:  # the common case, without the layout's bookkeeping
        y, final, saved = _KERNELS[engine].forward(
            cell, x, w_ih, w_hh, b_ih, b_hh, tuple(extra), tuple(states0), None,
            Masks(recurrent_mask, tuple(zoneout)))
        return [y, *final, *saved]
    layout = Layout(lengths, T, x.device)
    y, final, saved = _KERNELS[engine].forward(
        cell, layout.rows(x, 1), w_ih, w_hh, b_ih, b_hh, tuple(extra),
        tuple(layout.rows(s, 0) for s in states0), layout.batch_sizes,
        layout.masks(recurrent_mask, zoneout))
    return [layout.unrows(y, 1), *(layout.unrows(s, 0) for s in final), *saved]


def _empty_forward(engine: str, cell: str, x: Tensor, w_hh: Tensor,
                   recurrent_mask: Tensor | None, zoneout: Sequence[Tensor | None]
                   ) -> list[Tensor]:
    T, B, _ = x.shape
    H = w_hh.shape[1]
    spec = CELLS[cell]
    saved = _KERNELS[engine].saved_like(cell, x, w_hh, Masks(recurrent_mask, tuple(zoneout)))
    return [x.new_zeros(T, B, H), *(x.new_zeros(B, H) for _ in range(spec.num_states)),
            *(torch.zeros_like(s) for s in saved)]


def _forward_fake(engine, cell, x, w_ih, w_hh, b_ih, b_hh, extra, states0, lengths,
                  recurrent_mask, zoneout):
    check_inputs(engine, cell, x, w_ih, w_hh, b_ih, b_hh, extra, states0, lengths,
                 recurrent_mask, zoneout)
    return _empty_forward(engine, cell, x, w_hh, recurrent_mask, zoneout)


def _backward_impl(engine: str, cell: str, x: Tensor, w_ih: Tensor, w_hh: Tensor,
                   b_ih: Tensor | None, b_hh: Tensor | None, extra: Sequence[Tensor],
                   states0: Sequence[Tensor], lengths: Tensor | None,
                   recurrent_mask: Tensor | None, zoneout: Sequence[Tensor | None],
                   saved: Sequence[Tensor], dy: Tensor | None,
                   dfinal: Sequence[Tensor | None], need: Sequence[bool]) -> list[Tensor]:
    inputs = _grad_targets(x, w_ih, w_hh, b_ih, b_hh, extra, states0)
    if x.shape[1] == 0:
        return [torch.zeros_like(t) if n and t is not None else x.new_empty(0)
                for t, n in zip(inputs, need)]
    if lengths is None:
        grads = _KERNELS[engine].backward(
            cell, x, w_ih, w_hh, b_ih is not None, tuple(extra), None,
            Masks(recurrent_mask, tuple(zoneout)), list(saved), dy, list(dfinal), list(need))
        return [g if g is not None else x.new_empty(0) for g in grads]
    layout = Layout(lengths, x.shape[0], x.device)
    grads = _KERNELS[engine].backward(
        cell, layout.rows(x, 1), w_ih, w_hh, b_ih is not None, tuple(extra),
        layout.batch_sizes, layout.masks(recurrent_mask, zoneout), list(saved),
        layout.rows(dy, 1), [layout.rows(g, 0) for g in dfinal], list(need))
    n_states = len(states0)
    grads[0] = layout.unrows(grads[0], 1)
    for k in range(len(grads) - n_states, len(grads)):
        grads[k] = layout.unrows(grads[k], 0)
    return [g if g is not None else x.new_empty(0) for g in grads]


def _backward_fake(engine, cell, x, w_ih, w_hh, b_ih, b_hh, extra, states0, lengths,
                   recurrent_mask, zoneout, saved, dy, dfinal, need):
    inputs = _grad_targets(x, w_ih, w_hh, b_ih, b_hh, extra, states0)
    return [torch.empty_like(t) if n and t is not None else x.new_empty(0)
            for t, n in zip(inputs, need)]


def _grad_targets(x, w_ih, w_hh, b_ih, b_hh, extra, states0) -> list[Tensor | None]:
    return [x, w_ih, w_hh, b_ih, b_hh, *extra, *states0]


# The autograd (a circular import: it needs the implementations above, ops needs it below).
from rnnkit.backends.op_autograd import (
    EagerSequenceFunction,
    PlainSequenceFunction,
    SequenceFunction,
    _plain_eager,
    op_backward,
    setup_context,
)

# ---------------------------------------------------------------- batching rules (vmap)


def _take(value, dim, i):
    if dim is None or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_take(v, d, i) for v, d in zip(value, dim)]
    return value.select(dim, i)


def _loop_vmap(op, info, in_dims, *args):
    """A correct fallback batching rule: run ``op`` once per element of the vmapped
    dimension and stack the results (tensors absent or empty in one are in all)."""
    results = [op(*(_take(a, d, i) for a, d in zip(args, in_dims)))
               for i in range(info.batch_size)]
    stacked = [torch.stack([r[k] for r in results]) for k in range(len(results[0]))]
    return stacked, [0] * len(stacked)


_SCHEMA_INPUTS = ("str engine, str cell, Tensor x, Tensor w_ih, Tensor w_hh, Tensor? b_ih, "
                  "Tensor? b_hh, Tensor[] extra, Tensor[] states0, Tensor? lengths, "
                  "Tensor? recurrent_mask, Tensor?[] zoneout")
# The registration: torch.library's low-level API rather than the custom_op decorator, whose
# per-call Python wrapping (argument binding, a torch.compile guard, alias checks) cost
# about 450 us a forward and backward (benchmarks/operator_overhead.py), more than a
# whole short sequence.
_LIB = torch.library.Library(NAMESPACE, "FRAGMENT")


def _register() -> None:
    _LIB.define(f"sequence({_SCHEMA_INPUTS}) -> Tensor[]")
    _LIB.define(f"sequence_backward({_SCHEMA_INPUTS}, Tensor[] saved, Tensor? dy, "
                "Tensor?[] dfinal, bool[] need) -> Tensor[]")
    _LIB.impl("sequence", _forward_impl, "CompositeExplicitAutograd")
    _LIB.impl("sequence_backward", _backward_impl, "CompositeExplicitAutograd")
    torch.library.register_fake(f"{NAMESPACE}::sequence", _forward_fake, lib=_LIB)
    torch.library.register_fake(f"{NAMESPACE}::sequence_backward", _backward_fake, lib=_LIB)
    torch.library.register_autograd(f"{NAMESPACE}::sequence", op_backward,
                                    setup_context=setup_context, lib=_LIB)
    torch.library.register_vmap(f"{NAMESPACE}::sequence", lambda info, in_dims, *args:
                                _loop_vmap(torch.ops.rnnkit.sequence, info, in_dims, *args),
                                lib=_LIB)
    torch.library.register_vmap(f"{NAMESPACE}::sequence_backward", lambda info, in_dims, *args:
                                _loop_vmap(torch.ops.rnnkit.sequence_backward, info, in_dims,
                                           *args), lib=_LIB)


_register()


def run_sequence(engine: str, cell: str, x: Tensor, states0: Sequence[Tensor], w_ih: Tensor,
                 w_hh: Tensor, b_ih: Tensor | None, b_hh: Tensor | None,
                 lengths: Tensor | None, extra: Sequence[Tensor] = (),
                 masks: Masks | None = None) -> tuple[Tensor, tuple[Tensor, ...]]:
    """Run ``cell`` with the registered ``engine`` through ``torch.ops.rnnkit.sequence``;
    the :class:`rnnkit.backends.Backend` contract (``y``, final states)."""
    masks = masks or Masks()
    eager = not (torch.compiler.is_compiling() or torch._C._are_functorch_transforms_active())
    if (eager and lengths is None and not extra and masks.recurrent is None
            and not any(m is not None for m in masks.zoneout) and x.shape[1] > 0
            and _plain_eager(x)):
        y, *final = PlainSequenceFunction.apply(engine, cell, x, w_ih, w_hh, b_ih, b_hh,
                                                *states0)
        return y, tuple(final)
    present = tuple(m is not None for m in masks.zoneout)
    function = EagerSequenceFunction if eager else SequenceFunction
    out = function.apply(engine, cell, len(extra), present, x, w_ih, w_hh, b_ih, b_hh,
                         lengths, masks.recurrent, *extra, *states0,
                         *(m for m in masks.zoneout if m is not None))
    n = CELLS[cell].num_states
    return out[0], tuple(out[1: 1 + n])


__all__ = ["OperatorInputError", "SequenceKernel", "check_inputs", "register_kernel",
           "run_sequence"]
