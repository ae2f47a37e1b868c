"""Autograd of the engines' operators (:mod:`rnnkit.backends.ops`).

Two forms of one autograd.Function: :class:`SequenceFunction` (a separate
``setup_context`` and a generated batching rule, what ``torch.func`` and ``torch.compile``
need) and :class:`EagerSequenceFunction` (the classic form, for plain eager runs, where the
other form's per-call argument binding costs about 100 us). Both keep the same tensors and
share one backward, :func:`gradients`: the hand-derived backward operator, or, when the
backward must itself be differentiable (``create_graph=True``, legacy-batched gradients),
:func:`differentiable_backward`, which differentiates the ``reference`` engine's
recomputation of the forward. ``torch.ops.rnnkit.sequence`` called directly gets the same
through ``register_autograd`` (:func:`setup_context`, :func:`op_backward`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from rnnkit.backends import ops
from rnnkit.backends.ops import _backward_impl, _forward_impl, _grad_targets
from rnnkit.functional import CELLS, Masks


def setup_context(ctx, inputs, output) -> None:
    """The operator's registered autograd: what the backward keeps."""
    (engine, cell, x, w_ih, w_hh, b_ih, b_hh, extra, states0, lengths, recurrent_mask,
     zoneout) = inputs
    _save(ctx, engine, cell, x, w_ih, w_hh, b_ih, b_hh, extra, states0, lengths,
          recurrent_mask, zoneout, output[1 + CELLS[cell].num_states:])


def _save(ctx, engine, cell, x, w_ih, w_hh, b_ih, b_hh, extra, states0, lengths,
          recurrent_mask, zoneout, saved, outputs: bool = True) -> None:
    """Keep what the backward needs on ``ctx``; ``outputs``: the saved buffers are outputs
    of the Function (and so marked non-differentiable)."""
    ctx.engine, ctx.cell = engine, cell
    ctx.sizes = (len(extra), len(states0), len(saved))
    ctx.zoneout_present = [m is not None for m in zoneout]
    ctx.has_bias = b_ih is not None
    ctx.has_mask = recurrent_mask is not None
    ctx.has_lengths = lengths is not None
    tensors = [x, w_ih, w_hh, *([b_ih, b_hh] if ctx.has_bias else []), *extra, *states0,
               *([lengths] if ctx.has_lengths else []),
               *([recurrent_mask] if ctx.has_mask else []),
               *(m for m in zoneout if m is not None), *saved]
    ctx.save_for_backward(*tensors)
    if outputs:
        ctx.mark_non_differentiable(*saved)
    ctx.set_materialize_grads(False)


def _unpack(ctx):
    it = iter(ctx.saved_tensors)
    x, w_ih, w_hh = next(it), next(it), next(it)
    b_ih, b_hh = (next(it), next(it)) if ctx.has_bias else (None, None)
    n_extra, n_states, n_saved = ctx.sizes
    extra = [next(it) for _ in range(n_extra)]
    states0 = [next(it) for _ in range(n_states)]
    lengths = next(it) if ctx.has_lengths else None
    recurrent_mask = next(it) if ctx.has_mask else None
    zoneout = [next(it) if present else None for present in ctx.zoneout_present]
    saved = [next(it) for _ in range(n_saved)]
    return x, w_ih, w_hh, b_ih, b_hh, extra, states0, lengths, recurrent_mask, zoneout, saved


def gradients(ctx, dy: Tensor | None, dfinal: list[Tensor | None],
               need: list[bool]) -> list[Tensor | None]:
    """[dx, dw_ih, dw_hh, db_ih, db_hh, *dextra, *dstates0] (None where not needed): the
    hand-derived backward operator, or, when the backward must itself be differentiable,
    :func:`differentiable_backward`."""
    (x, w_ih, w_hh, b_ih, b_hh, extra, states0, lengths, recurrent_mask, zoneout,
     saved) = _unpack(ctx)
    targets = _grad_targets(x, w_ih, w_hh, b_ih, b_hh, extra, states0)
    need = [bool(n) and t is not None for n, t in zip(need, targets)]
    if not any(need) or (dy is None and all(g is None for g in dfinal)):
        return [None] * len(targets)
    if not torch.compiler.is_compiling() and _needs_differentiable(targets, dy, dfinal):
        return differentiable_backward(ctx.cell, x, w_ih, w_hh, b_ih, b_hh, extra, states0,
                                       lengths, recurrent_mask, zoneout, dy, dfinal, need)
    args = (ctx.engine, ctx.cell, x, w_ih, w_hh, b_ih, b_hh, extra, states0, lengths,
            recurrent_mask, zoneout, saved, dy, dfinal, need)
    if torch.compiler.is_compiling():
        out = torch.ops.rnnkit.sequence_backward(*args)
    elif _plain_eager(x) and not torch._C._are_functorch_transforms_active():
        out = _backward_impl(*args)
    else:
        # One level of differentiation, never differentiated itself (that is
        # differentiable_backward's job): below autograd, as the op's impl expects.
        with torch._C._AutoDispatchBelowAutograd():
            out = torch.ops.rnnkit.sequence_backward(*args)
    return [g if n else None for g, n in zip(out, need)]


def _needs_differentiable(targets, dy: Tensor | None, dfinal: list[Tensor | None]) -> bool:
    """Whether the backward must be built from differentiable operations: under
    ``create_graph`` with something to differentiate, or for batched gradients
    (``is_grads_batched=True``, gradcheck's batched check), which vmap the backward with the
    legacy batching that has no fallback for list arguments."""
    incoming = [g for g in (dy, *dfinal) if g is not None]
    if any(_is_legacy_batched(g) for g in incoming):
        return True
    if not torch.is_grad_enabled():  # the usual backward (no create_graph): nothing more to ask
        return False
    if any(t is not None and torch._C._functorch.is_functorch_wrapped_tensor(t)
           for t in targets):
        # Inside a torch.func transform (jacrev, vjp, grad) the backward is one level of
        # differentiation: the operator is right there (and the recomputation, run on the
        # transform's wrapped tensors, is not).
        return False
    return any(t is not None and t.requires_grad for t in (*targets, *incoming))


_LEGACY_BATCHED = getattr(torch._C._functorch, "is_legacy_batchedtensor", None)


def _is_legacy_batched(t: Tensor) -> bool:
    return _LEGACY_BATCHED is not None and bool(_LEGACY_BATCHED(t))


def op_backward(ctx, grads):
    """Registered autograd of ``torch.ops.rnnkit.sequence`` called directly."""
    n_extra, n_states, _ = ctx.sizes
    nig = ctx.needs_input_grad  # engine, cell, x, w_ih, w_hh, b_ih, b_hh, [extra], [states0], ..
    need = [nig[2], nig[3], nig[4], nig[5], nig[6], *nig[7], *nig[8]]
    out = gradients(ctx, grads[0], list(grads[1: 1 + n_states]), need)
    dextra = list(out[5: 5 + n_extra])
    dstates0 = list(out[5 + n_extra:])
    return (None, None, *out[:5], dextra, dstates0, None, None,
            [None] * len(ctx.zoneout_present))


class SequenceFunction(torch.autograd.Function):
    """The operators as one autograd.Function with a separate ``setup_context`` and a
    generated batching rule, which is what ``torch.func`` (``jacrev``, ``vmap`` of a
    gradient) needs; ``torch.compile`` traces it, and the operators inside, whole.

    ``apply(engine, cell, n_extra, zoneout_present, x, w_ih, w_hh, b_ih, b_hh, lengths,
    recurrent_mask, *extra, *states0, *zoneout_masks_present) -> (y, *final, *saved)``.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(engine, cell, n_extra, zoneout_present, x, w_ih, w_hh, b_ih, b_hh, lengths,
                recurrent_mask, *rest):
        return _call_forward(engine, cell, n_extra, zoneout_present, x, w_ih, w_hh, b_ih, b_hh,
                             lengths, recurrent_mask, rest, below_autograd=False)

    @staticmethod
    def setup_context(ctx, inputs, output):
        (engine, cell, n_extra, zoneout_present, x, w_ih, w_hh, b_ih, b_hh, lengths,
         recurrent_mask, *rest) = inputs
        extra, states0, zoneout = _split_rest(cell, n_extra, zoneout_present, rest)
        _save(ctx, engine, cell, x, w_ih, w_hh, b_ih, b_hh, extra, states0, lengths,
              recurrent_mask, zoneout, output[1 + len(states0):])

    @staticmethod
    def backward(ctx, *grads):
        n_extra, n_states, _ = ctx.sizes
        nig = ctx.needs_input_grad
        # engine, cell, n_extra, zoneout_present, x, w_ih, w_hh, b_ih, b_hh, lengths, mask, ..
        need = [nig[4], nig[5], nig[6], nig[7], nig[8],
                *nig[11: 11 + n_extra + n_states]]
        out = gradients(ctx, grads[0], list(grads[1: 1 + n_states]), need)
        n_zoneout = sum(ctx.zoneout_present)
        return (None, None, None, None, *out[:5], None, None, *out[5:], *([None] * n_zoneout))


class EagerSequenceFunction(torch.autograd.Function):
    """:class:`SequenceFunction` in the classic form (``forward(ctx, ...)``), for eager runs
    outside torch.func transforms: autograd.Function binds every call's arguments to the
    signature of a ``setup_context``-style forward (``inspect``), about 100 us a call.
    Same arguments, same saved tensors, same backward."""

    @staticmethod
    def forward(ctx, engine, cell, n_extra, zoneout_present, x, w_ih, w_hh, b_ih, b_hh,
                lengths, recurrent_mask, *rest):
        out = _call_forward(engine, cell, n_extra, zoneout_present, x, w_ih, w_hh, b_ih, b_hh,
                            lengths, recurrent_mask, rest)
        extra, states0, zoneout = _split_rest(cell, n_extra, zoneout_present, rest)
        n_out = 1 + len(states0)
        _save(ctx, engine, cell, x, w_ih, w_hh, b_ih, b_hh, extra, states0, lengths,
              recurrent_mask, zoneout, out[n_out:], outputs=False)
        # Only y and the final states are outputs: the saved buffers stay out of the graph.
        return out[:n_out]

    backward = SequenceFunction.backward


class PlainSequenceFunction(torch.autograd.Function):
    """:class:`EagerSequenceFunction` for the commonest call, in a plain eager run: no
    lengths, masks or extra parameters, a non-empty batch. The same boundary check, kernels
    and backward, with the least bookkeeping (each list built and unpacked costs a few
    microseconds, and a short sequence takes two milliseconds).

    ``apply(engine, cell, x, w_ih, w_hh, b_ih, b_hh, *states0) -> (y, *final)``.
    """

    @staticmethod
    def forward(ctx, engine, cell, x, w_ih, w_hh, b_ih, b_hh, *states0):
        ops.check_inputs(engine, cell, x, w_ih, w_hh, b_ih, b_hh, (), states0, None, None, ())
        y, final, saved = ops._KERNELS[engine].forward(cell, x, w_ih, w_hh, b_ih, b_hh, (),
                                                       states0, None, Masks())
        ctx.engine, ctx.cell, ctx.n_states = engine, cell, len(states0)
        ctx.save_for_backward(x, w_ih, w_hh, b_ih, b_hh, *states0, *saved)
        ctx.set_materialize_grads(False)
        return (y, *final)

    @staticmethod
    def backward(ctx, dy, *dfinal):
        x, w_ih, w_hh, b_ih, b_hh, *rest = ctx.saved_tensors
        n = ctx.n_states
        states0, saved = rest[:n], rest[n:]
        nig = ctx.needs_input_grad  # engine, cell, x, w_ih, w_hh, b_ih, b_hh, *states0
        need = [nig[2], nig[3], nig[4], nig[5] and b_ih is not None,
                nig[6] and b_hh is not None, *nig[7:7 + n]]
        none = (None,) * (5 + n)
        if not any(need) or (dy is None and all(g is None for g in dfinal)):
            return (None, None, *none)
        targets = [x, w_ih, w_hh, b_ih, b_hh, *states0]
        if _needs_differentiable(targets, dy, list(dfinal)):
            grads = differentiable_backward(ctx.cell, x, w_ih, w_hh, b_ih, b_hh, (), states0,
                                            None, None, (), dy, list(dfinal), need)
        else:
            grads = ops._KERNELS[ctx.engine].backward(ctx.cell, x, w_ih, w_hh, b_ih is not None,
                                                      (), None, Masks(), saved, dy,
                                                      list(dfinal), need)
        return (None, None, *grads)


def _call_forward(engine, cell, n_extra, zoneout_present, x, w_ih, w_hh, b_ih, b_hh, lengths,
                  recurrent_mask, rest, below_autograd: bool = True) -> tuple[Tensor, ...]:
    extra, states0, zoneout = _split_rest(cell, n_extra, zoneout_present, rest)
    args = (engine, cell, x, w_ih, w_hh, b_ih, b_hh, extra, states0, lengths, recurrent_mask,
            zoneout)
    if not below_autograd:  # traced (torch.compile) or under torch.func's own dispatch
        return tuple(torch.ops.rnnkit.sequence(*args))
    if _plain_eager(x):
        return tuple(_forward_impl(*args))
    with torch._C._AutoDispatchBelowAutograd():  # the Function is the autograd: skip the op's
        return tuple(torch.ops.rnnkit.sequence(*args))


def _plain_eager(x: Tensor) -> bool:
    """Nothing is watching the dispatcher: a plain tensor, no dispatch mode (fake tensors,
    FlopCounterMode, export), no profiler. Then the operators' implementation is called
    as a function, which saves the dispatcher's hop (about 25 us a call, with the lists of
    tensors); whatever looks at operators sees ``torch.ops.rnnkit.*`` as always."""
    return (type(x) is Tensor and torch._C._len_torch_dispatch_stack() == 0
            and not torch.autograd.profiler._is_profiler_enabled)


def _split_rest(cell, n_extra, zoneout_present, rest):
    n_states = CELLS[cell].num_states
    extra = list(rest[:n_extra])
    states0 = list(rest[n_extra: n_extra + n_states])
    masks = iter(rest[n_extra + n_states:])
    zoneout = [next(masks) if present else None for present in zoneout_present]
    return extra, states0, zoneout


def differentiable_backward(cell: str, x: Tensor, w_ih: Tensor, w_hh: Tensor,
                            b_ih: Tensor | None, b_hh: Tensor | None, extra: Sequence[Tensor],
                            states0: Sequence[Tensor], lengths: Tensor | None,
                            recurrent_mask: Tensor | None, zoneout: Sequence[Tensor | None],
                            dy: Tensor | None, dfinal: Sequence[Tensor | None],
                            need: Sequence[bool]) -> list[Tensor | None]:
    """The first-order gradients as a differentiable function of the inputs and of the
    incoming gradients: the ``reference`` engine recomputes the forward (the same
    equations, through autograd) and autograd differentiates it with ``create_graph``."""
    from rnnkit.backends.reference import ReferenceBackend

    targets = _grad_targets(x, w_ih, w_hh, b_ih, b_hh, extra, states0)
    wanted = [t for t, n in zip(targets, need) if n]
    if not wanted:
        return [None] * len(targets)
    with torch.enable_grad():
        y, final = ReferenceBackend().run(cell, x, tuple(states0), w_ih, w_hh, b_ih, b_hh,
                                          lengths, tuple(extra),
                                          Masks(recurrent_mask, tuple(zoneout)))
        outs, gouts = [], []
        for out, g in zip((y, *final), (dy, *dfinal)):
            if g is not None:
                outs.append(out)
                gouts.append(g)
        found = torch.autograd.grad(outs, wanted, gouts, create_graph=True, allow_unused=True)
    it = iter(found)
    result = []
    for t, n in zip(targets, need):
        if not n:
            result.append(None)
            continue
        g = next(it)
        result.append(torch.zeros_like(t) if g is None else g)
    return result


__all__ = ["EagerSequenceFunction", "PlainSequenceFunction", "SequenceFunction",
           "differentiable_backward",
           "gradients", "op_backward", "setup_context"]
