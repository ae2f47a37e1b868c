"""The native backend: the LSTM and GRU time loops in C++ (``engine.cpp``), on the CPU.

The equations, the cache and the hand-derived backward are those of
:mod:`rnnkit.functional` (``lstm.py``, ``gru.py``); what changes is where the loop runs.
The Python ``fused`` engine pays a few microseconds of dispatch for each of the ~10 tensor
operations of a step, which is most of the time at small batches; here a step is one call
into the BLAS for the recurrent product and one fused pass of gate math, with no Python
and no dispatcher in between. The whole-sequence products (input projections before the
loop, weight and input gradients after it) stay as they are in the fused engine.

Cases it does not cover are handed on, never approximated: other cells (the registry picks
``fused``), other devices or dtypes, and runs with recurrent dropout or zoneout masks
(handed to the fused engine inside :meth:`NativeBackend.run`). Where the library cannot be
built, :mod:`.build` warns once and the registry falls back to ``fused``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from rnnkit.backends import fused, ops
from rnnkit.backends.native import build
from rnnkit.functional import Masks
from rnnkit.functional.sequence import last_step_index

CELLS = ("lstm", "gru")
DTYPES = (torch.float32, torch.float64)
GATES = {"lstm": 4, "gru": 3}


def available() -> bool:
    """True when the native ops are built and loaded (building them if needed)."""
    return build.load() is None


class NativeKernel:
    """The native engine's side of :mod:`rnnkit.backends.ops` (inputs already checked
    there). Saved for the backward: the gate activations [T, B, G], the cell's cache
    (``tanh(c_t)`` [T, B, H] for the LSTM, ``W_hh h_{t-1} + b_hh`` [T, B, 3H] for the GRU)
    and the states [T+1, B, H]."""

    def forward(self, cell, x, w_ih, w_hh, b_ih, b_hh, extra, states0, batch_sizes, masks):
        T, B, I = x.shape
        H = w_hh.shape[1]
        sizes = list(batch_sizes) if batch_sizes is not None else []
        # Rows past a sequence's end are never written, so they must start as zeros.
        alloc = torch.zeros if batch_sizes is not None else torch.empty
        opts = {"dtype": x.dtype, "device": x.device}
        bias = b_ih
        if cell == "lstm" and b_hh is not None:  # both biases enter only through their sum
            bias = b_hh if bias is None else bias + b_hh
        xp = project(x.reshape(T * B, I), w_ih, bias, transposed=True).view(T, B, -1)  # -> gates
        w_hh = w_hh.contiguous()  # read as W_hh^T by the loop, without a transposed copy
        states = [alloc(T + 1, B, H, **opts) for _ in states0]
        for buf, s0 in zip(states, states0):
            buf[0].copy_(s0)
        ops = torch.ops.rnnkit
        if cell == "lstm":
            cache = alloc(T, B, H, **opts)  # tanh(c_t)
            ops.lstm_forward(xp, w_hh, states[0], states[1], cache, sizes)
        else:
            cache = alloc(T, B, 3 * H, **opts)  # W_hh h_{t-1} + b_hh
            ops.gru_forward(xp, w_hh, b_hh.contiguous() if b_hh is not None else None,
                            states[0], cache, sizes)
        if batch_sizes is None:
            final = tuple(s[T].clone() for s in states)
        else:
            last = last_step_index(batch_sizes, B, x.device)
            cols = torch.arange(B, device=x.device)
            final = tuple(s[last, cols] for s in states)
        # Copies: the caller may modify its outputs in place; the backward reads the buffers.
        return states[0][1:].clone(), final, [xp, cache, *states]

    def saved_like(self, cell, x, w_hh, masks):
        T, B, _ = x.shape
        H = w_hh.shape[1]
        width = H if cell == "lstm" else 3 * H
        return [x.new_empty(T, B, GATES[cell] * H), x.new_empty(T, B, width),
                *(x.new_empty(T + 1, B, H) for _ in range(2 if cell == "lstm" else 1))]

    def backward(self, cell, x, w_ih, w_hh, has_bias, extra, batch_sizes, masks, saved, dy,
                 dfinal, need):
        acts, cache, *states = saved
        T, B, I = x.shape
        H = w_hh.shape[1]
        G = GATES[cell] * H
        sizes = list(batch_sizes) if batch_sizes is not None else []
        alloc = torch.zeros if sizes else torch.empty
        opts = {"dtype": x.dtype, "device": x.device}
        drec = [torch.zeros(B, H, **opts) if g is None else g.contiguous().clone() for g in dfinal]
        dy = dy.contiguous() if dy is not None else None
        norms = x.new_zeros(T, B) if fused._RECORDERS else None
        ops = torch.ops.rnnkit
        w_hh = w_hh.contiguous()
        dgx = alloc(T, B, G, **opts)
        if cell == "lstm":
            ops.lstm_backward(acts, states[1], cache, w_hh, dy, drec[0], drec[1], dgx, sizes, norms)
            dgh = dgx
        else:
            dgh = alloc(T, B, G, **opts)
            ops.gru_backward(acts, cache, states[0], w_hh, dy, drec[0], dgx, dgh, sizes, norms)
        for store in fused._RECORDERS:
            store.append(norms)
        flat_gx, flat_gh = dgx.view(T * B, G), dgh.view(T * B, G)
        dx = project(flat_gx, w_ih, None, transposed=False).view(T, B, I) if need[0] else None
        dw_ih = torch.mm(flat_gx.t(), x.reshape(T * B, I)) if need[1] else None
        dw_hh = torch.mm(flat_gh.t(), states[0][:T].reshape(T * B, H)) if need[2] else None
        db_ih = flat_gx.sum(0) if has_bias and (need[3] or need[4]) else None
        db_hh = None
        if db_ih is not None:
            db_hh = db_ih.clone() if cell == "lstm" else flat_gh.sum(0)
        out = [dx, dw_ih, dw_hh, db_ih, db_hh, *drec]
        return [g if n else None for g, n in zip(out, need)]


def project(a: Tensor, w: Tensor, bias: Tensor | None, *, transposed: bool) -> Tensor:
    """``a @ w (+ bias)`` for a whole sequence's rows [N, K], with ``w`` [K, M], or ``w``
    [M, K] and its transpose when ``transposed`` (torch's weight layout). MKL's sgemm: at
    these sizes the packed kernel (``torch.ops.rnnkit.matmul``) ties with it
    (``benchmarks/engine_split.py``), so the simpler path stays."""
    w = w.t() if transposed else w
    return torch.mm(a, w) if bias is None else torch.addmm(bias, a, w)


class NativeBackend:
    """The C++ loops; CPU, float32 and float64, LSTM and GRU."""

    name = "native"
    runs_masks = False  # recurrent dropout and zoneout: the fused loop has them

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
         layers: int, has_bias: bool) -> tuple[Tensor, tuple[Tensor, ...]]:
    """One step of a stack of LSTM or GRU layers without gradients, in one native call.

    Args:
        x: [B, I]; states: ``(h, c)`` or ``(h,)``, each [layers, B, H], or None for zeros;
        weights: per layer ``w_ih, w_hh`` (and ``b_ih, b_hh`` with ``has_bias``). All
        contiguous, on the CPU, of one floating dtype.

    Returns:
        The top layer's h_t [B, H], and the new states, each [layers, B, H].
    """
    if cell == "lstm":
        h0, c0 = (None, None) if states is None else states
        y, h, c = torch.ops.rnnkit.lstm_step.default(x, h0, c0, weights, layers, has_bias)
        return y, (h, c)
    h0 = None if states is None else states[0]
    y, h = torch.ops.rnnkit.gru_step.default(x, h0, weights, layers, has_bias)
    return y, (h,)


__all__ = ["CELLS", "NativeBackend", "NativeKernel", "available", "step"]
