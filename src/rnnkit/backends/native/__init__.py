"""The native backend: the time loops of every built-in cell in C++ (``engine.cpp``), on the CPU.

The equations, the cache and the hand-derived backward are those of
:mod:`rnnkit.functional` (``rnn.py``, ``lstm.py``, ``gru.py``, ``layer_norm.py``); what
changes is where the loop runs. The Python ``fused`` engine pays a few microseconds of
dispatch for each of the ~10 tensor operations of a step, which is most of the time at small
batches; here a step is one call into the BLAS for the recurrent product and one fused pass
of gate math, with no Python and no dispatcher in between. In ``engine.cpp`` each cell is
written once, as a row of forward and a row of backward maths; one time loop, a template,
runs them all, with recurrent dropout and zoneout masks as inputs. The whole-sequence
products (input projections and the input layer norm before the loop, weight and input
gradients after it) are shared with the fused engine
(:func:`rnnkit.functional.sequence._input_and_weight_grads`).

Cases it does not cover are handed on, never approximated: cells registered by a user (the
registry picks ``fused``), other devices or dtypes. Where the library cannot be built,
:mod:`.build` warns once and the registry falls back to ``fused``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from rnnkit.backends import fused, ops
from rnnkit.backends.native import build
from rnnkit.functional import CELLS as SPECS
from rnnkit.functional import Masks
from rnnkit.functional.sequence import (
    SequenceCache,
    _input_and_weight_grads,
    _project_input,
    last_step_index,
)

# The cells with a native loop, and their number in engine.cpp's CellKind.
KINDS = {"rnn": 0, "rnn-relu": 1, "lstm": 2, "carry-lstm": 3, "gru": 4, "ln-lstm": 5, "ln-gru": 6}
CELLS = tuple(KINDS)
DTYPES = (torch.float32, torch.float64)
# engine.cpp's cache_shape: the widths (units of H) of the cache buffers, then how many
# 1/std values per row the layer norms keep.
CACHE = {"rnn": ((), 0), "rnn-relu": ((), 0), "lstm": ((1,), 0), "carry-lstm": ((1,), 0),
         "gru": ((3,), 0), "ln-lstm": ((1, 4, 1), 2), "ln-gru": ((3, 3), 1)}


def available() -> bool:
    """True when the native ops are built and loaded (building them if needed)."""
    return build.load() is None


def _contiguous(t: Tensor | None) -> Tensor | None:
    return None if t is None else t.contiguous()


class NativeKernel:
    """The native engine's side of :mod:`rnnkit.backends.ops` (inputs already checked
    there). Saved for the backward: the gate activations [T, B, G], the states [T+1, B, H],
    the cell's cache (``CACHE``), the input layer norm's (raw product, mean, 1/std) for the
    layer-norm cells, and ``h_{t-1} * m`` [T, B, H] with a recurrent-dropout mask.

    The time loops themselves are ``forward_loop`` and ``backward_loop``: the C++ ops here;
    the ``triton`` engine keeps everything else and brings its own loops."""

    @staticmethod
    def forward_loop(*args) -> None:
        torch.ops.rnnkit.cell_forward(*args)

    @staticmethod
    def backward_loop(*args) -> None:
        torch.ops.rnnkit.cell_backward(*args)

    def forward(self, cell, x, w_ih, w_hh, b_ih, b_hh, extra, states0, batch_sizes, masks):
        spec = SPECS[cell]
        T, B, _ = x.shape
        H = w_hh.shape[1]
        sizes = list(batch_sizes) if batch_sizes is not None else []
        # Rows past a sequence's end are never written, so they must start as zeros.
        alloc = torch.zeros if batch_sizes is not None else torch.empty
        opts = {"dtype": x.dtype, "device": x.device}
        xp, input_norm = _project_input(spec, x, w_ih, b_ih, b_hh, extra)  # -> activations
        states = [alloc(T + 1, B, H, **opts) for _ in states0]
        for buf, s0 in zip(states, states0):
            buf[0].copy_(s0)
        widths, norms = CACHE[cell]
        cache = [alloc(T, B, w * H, **opts) for w in widths]
        if norms:
            cache.append(alloc(T, B, norms, **opts))
        h_in = alloc(T, B, H, **opts) if masks.recurrent is not None else None
        b_step = None if spec.fold_hidden_bias else _contiguous(b_hh)
        step_extra = [e.contiguous() for e in extra[1:]] if spec.input_norm else []
        self.forward_loop(
            KINDS[cell], xp, w_hh.contiguous(), b_step, step_extra, states, cache,
            _contiguous(masks.recurrent), h_in, [_contiguous(m) for m in masks.zoneout], sizes)
        if batch_sizes is None:
            final = tuple(s[T].clone() for s in states)
        else:
            last = last_step_index(batch_sizes, B, x.device)
            cols = torch.arange(B, device=x.device)
            final = tuple(s[last, cols] for s in states)
        kept = [xp, *states, *cache, *input_norm, *([] if h_in is None else [h_in])]
        # A copy: the caller may modify its outputs in place; the backward reads the buffers.
        return states[0][1:].clone(), final, kept

    def saved_like(self, cell, x, w_hh, masks):
        spec = SPECS[cell]
        T, B, _ = x.shape
        H = w_hh.shape[1]
        G = spec.gates * H
        widths, norms = CACHE[cell]
        shapes = [(T, B, G)] + [(T + 1, B, H)] * spec.num_states
        shapes += [(T, B, w * H) for w in widths] + ([(T, B, norms)] if norms else [])
        if spec.input_norm:
            shapes += [(T, B, G), (T, B, 1), (T, B, 1)]
        if masks.recurrent is not None:
            shapes.append((T, B, H))
        return [x.new_empty(s) for s in shapes]

    def backward(self, cell, x, w_ih, w_hh, has_bias, extra, batch_sizes, masks, saved, dy,
                 dfinal, need):
        spec = SPECS[cell]
        widths, norms = CACHE[cell]
        n_states = spec.num_states
        acts, states = saved[0], saved[1: 1 + n_states]
        k = 1 + n_states
        cache = saved[k: k + len(widths) + (1 if norms else 0)]
        k += len(cache)
        input_norm = tuple(saved[k: k + 3]) if spec.input_norm else ()
        h_in = saved[-1] if masks.recurrent is not None else None
        T, B, _ = x.shape
        H = w_hh.shape[1]
        G = spec.gates * H
        sizes = list(batch_sizes) if batch_sizes is not None else []
        alloc = torch.zeros if sizes else torch.empty
        opts = {"dtype": x.dtype, "device": x.device}
        drec = [torch.zeros(B, H, **opts) if g is None else g.contiguous().clone() for g in dfinal]
        dgx = alloc(T, B, G, **opts)
        dgh = alloc(T, B, G, **opts) if spec.separate_hidden_grads else None
        dr = alloc(T, B, G, **opts) if spec.recurrent_norm else None
        dcache = alloc(T, B, H, **opts) if spec.norm_stats == 2 else None  # the cell norm
        norms_out = x.new_zeros(T, B) if fused._RECORDERS else None
        step_extra = [e.contiguous() for e in extra[1:]] if spec.input_norm else []
        self.backward_loop(
            KINDS[cell], acts, w_hh.contiguous(), step_extra, list(states), list(cache),
            _contiguous(masks.recurrent), h_in, [_contiguous(m) for m in masks.zoneout],
            _contiguous(dy), drec, dgx, dgh, dr, dcache, sizes, norms_out)
        for store in fused._RECORDERS:
            store.append(norms_out)
        need_extra = any(need[5: 5 + len(extra)])
        sums = _extra_sums(cell, cache, dgx, dgh, dcache, G, H) if need_extra else []
        saved_cache = SequenceCache(x, tuple(states), (), batch_sizes, tuple(extra), masks,
                                    h_in, input_norm)
        hidden = dgh if dgh is not None else dgx
        gx, gw_ih, gw_hh, gb_ih, gb_hh, grad_extra = _input_and_weight_grads(
            spec, saved_cache, w_ih, dgx, hidden, dr if dr is not None else hidden, sums,
            need[0], need[1] or need[2], has_bias and (need[3] or need[4]), need_extra)
        out = [gx, gw_ih, gw_hh, gb_ih, gb_hh, *grad_extra, *drec]
        return [g if n else None for g, n in zip(out, need)]


def _extra_sums(cell: str, cache: Sequence[Tensor], dgx: Tensor, dgh: Tensor | None,
                dcache: Tensor | None, G: int, H: int) -> list[Tensor]:
    """The layer norms' gains and bias gradients, summed over every step and row from the
    loop's buffers (the layer ordering of ``spec.accumulators``): ln-lstm (w_h, w_c, b_c),
    ln-gru (w_h). ``cache`` holds the normalised values the gains multiplied."""
    if cell == "ln-lstm":
        xhat_r, xhat_c = cache[1].view(-1, G), cache[2].view(-1, H)
        dch = dcache.view(-1, H)
        return [(dgx.view(-1, G) * xhat_r).sum(0), (dch * xhat_c).sum(0), dch.sum(0)]
    if cell == "ln-gru":
        return [(dgh.view(-1, G) * cache[1].view(-1, G)).sum(0)]
    return []


class NativeBackend:
    """The C++ loops; CPU, float32 and float64, every built-in cell, with masks."""

    name = "native"

    def unsupported_reason(self, cell: str, device: torch.device, dtype: torch.dtype) -> str | None:
        if cell not in CELLS:
            return f"cell {cell!r} has no native loop (it has: {', '.join(CELLS)})"
        if device.type != "cpu":
            return f"device {device} is not the CPU"
        if dtype not in DTYPES:
            return f"dtype {dtype} is not float32 or float64"
        reason = build.load()
        return None if reason is None else f"not built: {reason}"

    def run(self, cell: str, x: Tensor, states0: tuple[Tensor, ...], w_ih: Tensor,
            w_hh: Tensor, b_ih: Tensor | None, b_hh: Tensor | None,
            lengths: Tensor | None, extra: Sequence[Tensor] = (),
            masks: Masks | None = None) -> tuple[Tensor, tuple[Tensor, ...]]:
        return ops.run_sequence("native", cell, x.contiguous(), tuple(s.contiguous() for s in states0),
                                w_ih, w_hh, b_ih, b_hh, lengths, extra, masks)


ops.register_kernel("native", NativeKernel())


def step(cell: str, x: Tensor, states: Sequence[Tensor] | None, weights: Sequence[Tensor],
         layers: int, has_bias: bool, zoneout: Sequence[float] = ()
         ) -> tuple[Tensor, tuple[Tensor, ...]]:
    """One step of a stack of layers of ``cell`` without gradients, in one native call.

    Args:
        x: [B, I]; states: ``(h, c)`` or ``(h,)``, each [layers, B, H], or None for zeros;
        weights: per layer ``w_ih, w_hh`` (and ``b_ih, b_hh`` with ``has_bias``), then the
        cell's extra parameters in the order of its spec. All contiguous, on the CPU, of
        one floating dtype.
        zoneout: per state, the zoneout probability applied in evaluation (each unit takes
        its expectation ``p s_{t-1} + (1 - p) s_t``, layer by layer), or empty.

    Returns:
        The top layer's h_t [B, H], and the new states, each [layers, B, H].
    """
    y, new = torch.ops.rnnkit.cell_step.default(KINDS[cell], x, [] if states is None else states,
                                                weights, layers, has_bias,
                                                [float(p) for p in zoneout])
    return y, tuple(new)


__all__ = ["CELLS", "NativeBackend", "NativeKernel", "available", "step"]
