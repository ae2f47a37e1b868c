"""Run one recurrent cell over a whole sequence, forward and hand-derived backward.

This is the time loop shared by every cell. A cell describes itself with a
:class:`CellSpec` (its equations live in ``rnn.py``, ``lstm.py``, ``gru.py``); the
loop here does the bookkeeping that is the same for all of them:

* the input projection ``x_t @ W_ih^T + b_ih`` for all time steps is one matrix
  product before the loop, so only ``h_{t-1} @ W_hh^T`` is inside it;
* the forward writes every step's state and gate activations into preallocated
  buffers (the cache, as cuDNN's reserve space), so the backward never recomputes
  the forward;
* the backward first turns that cache into the *local derivatives* of every step in
  a few whole-sequence tensor operations, then walks back in time doing only what
  the recurrence forces it to (pointwise products and ``dgates @ W_hh``);
* the weight, bias and input gradients are one matrix product each after the loop.

Variable lengths use the packed-sequence layout: the batch is sorted by length,
longest first, and ``batch_sizes[t]`` says how many sequences are still running at
step ``t``, so step ``t`` works on rows ``[:batch_sizes[t]]`` only. A finished
sequence's state stops changing, its outputs past its end are zero, and no
gradient flows into its padding.

Two regularisers act on the loop itself, for every cell, with masks that are inputs
(so the hand-derived backward is exact for the masks that were drawn):

* variational recurrent dropout (Gal & Ghahramani 2016): the recurrent product reads
  ``h_{t-1} * m`` with one mask ``m`` [B, H] for the whole sequence;
* zoneout (Krueger et al. 2017): after the cell's step, each state unit keeps its
  previous value where the mask is 1, ``s_t = m_t * s_{t-1} + (1 - m_t) * s~_t``, with a
  mask [T, B, H] per state (0/1 in training; the probability itself in evaluation).

Shapes: T time steps, B batch, I input features, H hidden units, G = gates * H.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from rnnkit.functional.spec import (  # noqa: F401 (the cells import them from here too)
    LAYER_NORM_EPS,
    CellSpec,
    ExtraParam,
    GateBlock,
    Masks,
    gate_blocks,
)


@dataclass
class SequenceCache:
    """What the forward keeps for the backward (all time-major)."""

    x: Tensor  # [T, B, I]
    states: tuple[Tensor, ...]  # each [T+1, B, H]; states[k][0] is the initial state
    cache: tuple[Tensor, ...]  # input projections as the step left them [T, B, G], then the cell's buffers
    batch_sizes: Sequence[int] | None
    extra: tuple[Tensor, ...] = ()  # the cell's extra parameters
    masks: Masks = Masks()  # noqa: RUF009 (an immutable NamedTuple)
    h_in: Tensor | None = None  # [T, B, H] h_{t-1} * recurrent mask, when there is one
    input_norm: tuple[Tensor, ...] = ()  # (W_ih x [T, B, G], mean, 1/std [T, B, 1]) for input_norm


def _project_input(spec: CellSpec, x: Tensor, w_ih: Tensor, b_ih: Tensor | None,
                   b_hh: Tensor | None, extra: Sequence[Tensor]
                   ) -> tuple[Tensor, tuple[Tensor, ...]]:
    """All input projections at once: [T, B, I] -> [T, B, G], and what an input layer
    norm keeps for the backward (the raw product, its mean and 1/std)."""
    T, B, I = x.shape
    bias = b_ih
    if spec.fold_hidden_bias and b_hh is not None:
        bias = b_hh if bias is None else bias + b_hh
    flat = x.reshape(T * B, I)
    if spec.input_norm:
        raw = torch.mm(flat, w_ih.t())
        xp, mean, rstd = torch.native_layer_norm(raw, [raw.shape[1]], extra[0], bias,
                                                 LAYER_NORM_EPS)
        return xp.view(T, B, -1), (raw.view(T, B, -1), mean.view(T, B, 1), rstd.view(T, B, 1))
    xp = torch.mm(flat, w_ih.t()) if bias is None else torch.addmm(bias, flat, w_ih.t())
    return xp.view(T, B, -1), ()


def sequence_forward(spec: CellSpec, x: Tensor, states0: Sequence[Tensor], w_ih: Tensor,
                     w_hh: Tensor, b_ih: Tensor | None, b_hh: Tensor | None,
                     batch_sizes: Sequence[int] | None = None, extra: Sequence[Tensor] = (),
                     masks: Masks | None = None
                     ) -> tuple[Tensor, tuple[Tensor, ...], SequenceCache]:
    """Run ``spec`` over ``x`` and keep the cache for :func:`sequence_backward`.

    Args:
        x: [T, B, I] input, time-major. With ``batch_sizes``, sorted by length, longest first.
        states0: initial states, each [B, H].
        w_ih: [G, I]; w_hh: [G, H]; b_ih, b_hh: [G] or None.
        batch_sizes: running sequences per step (non-increasing, first == B, zero after
            the longest sequence), or None when every sequence has length T.
        extra: the cell's extra parameters, in the order of ``spec.extra``.
        masks: recurrent-dropout and zoneout masks, or None.

    Returns:
        y: [T, B, H] hidden state at every step (zero past a sequence's end),
        final: each state at the sequence's last step, [B, H],
        cache: what the backward needs.
    """
    T, B, _ = x.shape
    H = w_hh.shape[1]
    masks = masks or Masks()
    extra = tuple(extra)
    if batch_sizes is not None:
        check_batch_sizes(batch_sizes, T, B)
    xp, input_norm = _project_input(spec, x, w_ih, b_ih, b_hh, extra)  # [T, B, G]
    w_hh_t = w_hh.t().contiguous()  # [H, G]; MKL runs h @ W^T faster from a row-major copy
    step_extra = extra if spec.prepare is None else spec.prepare(xp, w_hh_t, extra)
    b_step = None if spec.fold_hidden_bias else b_hh
    alloc = torch.empty if batch_sizes is None else torch.zeros
    opts = {"dtype": x.dtype, "device": x.device}
    states = tuple(alloc(T + 1, B, H, **opts) for _ in range(spec.num_states))
    for buf, s0 in zip(states, states0):
        buf[0].copy_(s0)
    cache = (xp, *(alloc(T, B, w * H, **opts) for w in spec.cache_widths),
             *(alloc(T, B, 1, **opts) for _ in range(2 * spec.norm_stats)))
    h_in = alloc(T, B, H, **opts) if masks.recurrent is not None else None
    # Per-step views made once, outside the loop (each slice is a dispatch).
    xs = gate_blocks(xp, spec.gates)
    state_steps = [s.unbind(0) for s in states]
    cache_steps = [c.unbind(0) for c in cache[1:]]
    h_in_steps = h_in.unbind(0) if h_in is not None else None
    zoneout = [(k, m.unbind(0)) for k, m in enumerate(masks.zoneout) if m is not None]
    for t in range(_steps_run(batch_sizes, T)):
        prev = [s[t] for s in state_steps]
        out = [s[t + 1] for s in state_steps]
        slots = [c[t] for c in cache_steps]
        x_t = xs[t]
        n = B if batch_sizes is None else batch_sizes[t]
        if n != B:
            x_t, prev, out, slots = x_t.rows(n), _rows(prev, n), _rows(out, n), _rows(slots, n)
        hin = prev[0]
        if h_in_steps is not None:  # variational recurrent dropout
            hin = h_in_steps[t][:n]
            torch.mul(prev[0], masks.recurrent[:n], out=hin)
        spec.step_into(x_t, prev, hin, w_hh_t, b_step, out, slots, step_extra)
        for k, m in zoneout:  # s_t = s~_t + m (s_{t-1} - s~_t)
            out[k].lerp_(prev[k], m[t][:n])
    if batch_sizes is None:
        final = tuple(s[T] for s in states)
    else:
        last = last_step_index(batch_sizes, B, x.device)  # [B]: length of each sequence
        cols = torch.arange(B, device=x.device)
        final = tuple(s[last, cols] for s in states)
    saved = SequenceCache(x, states, cache, batch_sizes, extra, masks, h_in, input_norm)
    return states[0][1:], final, saved


def _rows(tensors: Sequence[Tensor], n: int) -> list[Tensor]:
    return [t[:n] for t in tensors]


def check_batch_sizes(batch_sizes: Sequence[int], steps: int, batch: int) -> None:
    """The packed layout needs one count per step, starting at B and never growing."""
    sizes = list(batch_sizes)
    if len(sizes) != steps:
        raise ValueError(f"batch_sizes: expected one entry per time step ({steps}), got {len(sizes)}")
    if sizes and sizes[0] != batch:
        raise ValueError(f"batch_sizes: expected the first entry to be the batch size {batch}, "
                         f"got {sizes[0]}")
    if any(b < a for a, b in zip(sizes[1:], sizes)) or (sizes and sizes[-1] < 0):
        raise ValueError("batch_sizes: expected non-negative, non-increasing counts (sequences "
                         f"sorted by length, longest first), got {sizes}")


def _steps_run(batch_sizes: Sequence[int] | None, T: int) -> int:
    """Steps with at least one running sequence (``batch_sizes`` may end in zeros: the
    steps after the longest sequence, whose buffers stay zero)."""
    if batch_sizes is None:
        return T
    return sum(1 for n in batch_sizes if n > 0)


def last_step_index(batch_sizes: Sequence[int], B: int, device: torch.device) -> Tensor:
    """Length of each (sorted) sequence, recovered from the batch sizes."""
    bs = torch.tensor(list(batch_sizes), device=device)
    return (bs.unsqueeze(1) > torch.arange(B, device=device)).sum(0)


@dataclass
class SequenceGrads:
    """Gradients returned by :func:`sequence_backward` (None where not asked for)."""

    x: Tensor | None  # [T, B, I]
    states0: tuple[Tensor, ...]  # each [B, H]
    w_ih: Tensor | None  # [G, I]
    w_hh: Tensor | None  # [G, H]
    b_ih: Tensor | None  # [G]
    b_hh: Tensor | None  # [G]
    extra: tuple[Tensor | None, ...] = ()  # one per spec.extra


def sequence_backward(spec: CellSpec, saved: SequenceCache, w_ih: Tensor, w_hh: Tensor,
                      dy: Tensor | None, dfinal: Sequence[Tensor | None],
                      need_x: bool = True, need_weights: bool = True,
                      need_bias: bool = True, need_extra: bool = True,
                      state_grad_norms: Tensor | None = None) -> SequenceGrads:
    """Hand-derived backpropagation through time.

    Args:
        spec: the cell.
        saved: the forward's cache.
        w_ih, w_hh: the weights used in the forward.
        dy: [T, B, H] gradient of the loss w.r.t. the outputs, or None.
        dfinal: gradient w.r.t. each final state, [B, H] or None.
        need_x, need_weights, need_bias, need_extra: skip products nobody asked for.
        state_grad_norms: optional [T, B] buffer that receives ||dL/dh_t||, the norm of the
            total gradient reaching each step's hidden state (the vanishing-gradient picture).

    Returns:
        The gradients, see :class:`SequenceGrads`.
    """
    x, states, batch_sizes, extra = saved.x, saved.states, saved.batch_sizes, saved.extra
    T, B = x.shape[:2]
    H = w_hh.shape[1]
    G = spec.gates * H
    opts = {"dtype": x.dtype, "device": x.device}
    derivs = spec.local_derivatives(saved.cache, states, extra)  # each [T, B, *]

    # Running gradient w.r.t. each state; starts as the gradient of the final state.
    # With variable lengths, row b joins the loop at its own last step, still
    # holding its final-state gradient, because rows >= batch_sizes[t+1] are not touched
    # until then.
    drec = []
    for k in range(spec.num_states):
        g = dfinal[k]
        drec.append(torch.zeros(B, H, **opts) if g is None else g.clone())
    alloc = torch.empty if batch_sizes is None else torch.zeros
    dgx = alloc(T, B, G, **opts)  # gradient w.r.t. the input-side pre-activations
    dgh = alloc(T, B, G, **opts) if spec.separate_hidden_grads else dgx
    dr = alloc(T, B, G, **opts) if spec.recurrent_norm else dgh  # w.r.t. W_hh h_{t-1}
    sums = [torch.zeros(w * H, **opts) for w in spec.accumulators]
    _backward_through_time(spec, saved, w_hh, dy, derivs, drec, dgx, dgh, dr, sums,
                           state_grad_norms)
    gx, gw_ih, gw_hh, gb_ih, gb_hh, grad_extra = _input_and_weight_grads(
        spec, saved, w_ih, dgx, dgh, dr, sums, need_x, need_weights, need_bias, need_extra)
    return SequenceGrads(gx, tuple(drec), gw_ih, gw_hh, gb_ih, gb_hh, tuple(grad_extra))


def _backward_through_time(spec: CellSpec, saved: SequenceCache, w_hh: Tensor,
                           dy: Tensor | None, derivs: Sequence[Tensor], drec: list[Tensor],
                           dgx: Tensor, dgh: Tensor, dr: Tensor, sums: list[Tensor],
                           state_grad_norms: Tensor | None) -> None:
    """The loop of :func:`sequence_backward`, last step first: fills the gate gradients
    ``dgx``, ``dgh``, ``dr`` [T, B, G] and the accumulators ``sums``, and leaves in ``drec``
    the gradients of the initial states."""
    x, batch_sizes, extra, masks = saved.x, saved.batch_sizes, saved.extra, saved.masks
    T, B = x.shape[:2]
    deriv_steps = [d.unbind(0) for d in derivs]
    dgx_steps = gate_blocks(dgx, spec.gates)
    dgh_steps = gate_blocks(dgh, spec.gates) if spec.separate_hidden_grads else dgx_steps
    dr_steps = dr.unbind(0)
    dy_steps = dy.unbind(0) if dy is not None else None
    zoneout = [(k, m.unbind(0)) for k, m in enumerate(masks.zoneout) if m is not None]
    sizes = [B] * T if batch_sizes is None else list(batch_sizes)
    dh = drec[0]
    for t in range(_steps_run(batch_sizes, T) - 1, -1, -1):
        n = sizes[t]
        # Rows whose sequence ends at step t join now: their output gradient at t has not
        # been added yet (for the others, the previous backward step added it).
        joined = sizes[t + 1] if t + 1 < T else 0
        if dy_steps is not None and n > joined:
            dh[joined:n].add_(dy_steps[t][joined:n])
        if state_grad_norms is not None:  # dh now holds the total dL/dh_t of the running rows
            torch.linalg.vector_norm(dh[:n], dim=1, out=state_grad_norms[t, :n])
        d_t = [d[t] for d in deriv_steps]
        gx, gh, r_t = dgx_steps[t], dgh_steps[t], dr_steps[t]
        rec = drec
        dy_prev = dy_steps[t - 1] if dy_steps is not None and t > 0 else None
        mask = masks.recurrent
        if n != B:
            d_t, gx, gh, rec = _rows(d_t, n), gx.rows(n), gh.rows(n), _rows(drec, n)
            r_t = r_t[:n]
            dy_prev = dy_prev[:n] if dy_prev is not None else None
            mask = mask[:n] if mask is not None else None
        # Zoneout: the kept share of each state's gradient skips the cell.
        kept = []
        for k, m in zoneout:
            keep = rec[k] * m[t][:n]
            rec[k].sub_(keep)
            kept.append((k, keep))
        # The output gradient of step t-1 rides along with the product dgates @ W_hh.
        spec.backward_step(rec, d_t, w_hh, gx, gh, r_t, dy_prev, mask, sums, extra)
        for k, keep in kept:
            rec[k].add_(keep)


def _input_and_weight_grads(spec: CellSpec, saved: SequenceCache, w_ih: Tensor, dgx: Tensor,
                            dgh: Tensor, dr: Tensor, sums: list[Tensor], need_x: bool,
                            need_weights: bool, need_bias: bool, need_extra: bool):
    """After the loop: the gradients of the inputs, weights, biases and extra parameters,
    one matrix product (or sum) each over all steps."""
    x, states, extra = saved.x, saved.states, saved.extra
    T, B, I = x.shape
    G = dgx.shape[-1]
    H = states[0].shape[-1]
    flat_gx = dgx.view(T * B, G)
    flat_gh = dgh.view(T * B, G)
    grad_extra: list[Tensor | None] = [None] * len(extra)
    pre_norm = flat_gx  # gradient w.r.t. W_ih x (before the input layer norm, if any)
    if spec.input_norm:
        raw, mean, rstd = saved.input_norm
        pre_norm, grad_extra[0] = layer_norm_backward(flat_gx, raw.view(T * B, G),
                                                      mean.view(T * B, 1), rstd.view(T * B, 1),
                                                      extra[0], need_weight=need_extra)
    gx = torch.mm(pre_norm, w_ih).view(T, B, I) if need_x else None
    gw_ih = gw_hh = gb_ih = gb_hh = None
    if need_weights:
        gw_ih = torch.mm(pre_norm.t(), x.reshape(T * B, I))
        h_in = saved.h_in if saved.h_in is not None else states[0][:T]
        gw_hh = torch.mm(dr.view(T * B, G).t(), h_in.reshape(T * B, H))
    if need_bias:
        gb_ih = flat_gx.sum(0)
        gb_hh = gb_ih.clone() if not spec.separate_hidden_grads else flat_gh.sum(0)
    if need_extra and spec.extra_grads is not None:
        first = 1 if spec.input_norm else 0
        grad_extra[first:] = spec.extra_grads(sums)
    return gx, gw_ih, gw_hh, gb_ih, gb_hh, grad_extra


def layer_norm_backward(g: Tensor, x: Tensor, mean: Tensor, rstd: Tensor, weight: Tensor,
                        need_weight: bool = False) -> tuple[Tensor, Tensor | None]:
    """Gradients of ``y = x_hat * weight (+ bias)``, ``x_hat = (x - mean) * rstd``, normalised
    over the last dimension. With ``u = g * weight`` and means over that dimension::

        dx = rstd * (u - mean(u) - x_hat * mean(u * x_hat)),     dweight = sum(g * x_hat)

    (summed over all rows). This is ATen's kernel, one pass over the data instead of the
    seven tensor operations the formula reads as; ``mean`` and ``rstd`` [rows, 1] must be
    contiguous.

    Args:
        g: [rows, W] gradient w.r.t. ``y``; x: [rows, W] the norm's input.
        need_weight: also return ``dweight`` [W] (else None).
    """
    dx, dw, _ = torch.ops.aten.native_layer_norm_backward(
        g, x, [x.shape[-1]], mean, rstd, weight, None, [True, need_weight, False])
    return dx, dw


def recurrent_grad(out: Tensor, dr: Tensor, w_hh: Tensor, addend: Tensor | None,
                   mask: Tensor | None) -> None:
    """``out = addend + (dr @ W_hh) * mask``: the gradient reaching ``h_{t-1}`` through the
    recurrent product (``addend`` and ``mask`` may be None; ``addend`` may be ``out``)."""
    if mask is None:
        if addend is None:
            torch.mm(dr, w_hh, out=out)
        elif addend is out:
            out.addmm_(dr, w_hh)
        else:
            torch.addmm(addend, dr, w_hh, out=out)
        return
    product = torch.mm(dr, w_hh)
    if addend is None:
        torch.mul(product, mask, out=out)
    elif addend is out:
        out.addcmul_(product, mask)
    else:
        torch.addcmul(addend, product, mask, out=out)
