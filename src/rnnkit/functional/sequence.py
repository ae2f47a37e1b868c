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

Shapes: T time steps, B batch, I input features, H hidden units, G = gates * H.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor


class GateBlock(NamedTuple):
    """One time step of a [T, B, gates * H] buffer, in the shapes the cells use.

    The views are made for all steps at once before the loop: inside it, each slice
    would cost a dispatch.
    """

    flat: Tensor  # [n, G], for the matrix products
    split: Tensor  # [n, gates, H], for products broadcast over the gate blocks
    gates: tuple[Tensor, ...]  # one [n, H] view per gate block

    def rows(self, n: int) -> GateBlock:
        """The first ``n`` rows (the sequences still running)."""
        return GateBlock(self.flat[:n], self.split[:n], tuple(g[:n] for g in self.gates))


def gate_blocks(buf: Tensor, gates: int) -> list[GateBlock]:
    """Per-step :class:`GateBlock` views of ``buf`` [T, B, gates * H]."""
    T, B, G = buf.shape
    split = buf.view(T, B, gates, G // gates)
    per_gate = [g.unbind(0) for g in split.unbind(2)]
    return [GateBlock(f, s, tuple(g[t] for g in per_gate))
            for t, (f, s) in enumerate(zip(buf.unbind(0), split.unbind(0)))]


@dataclass(frozen=True)
class CellSpec:
    """What the sequence loop needs to know about one cell type.

    Attributes:
        name: registry key, e.g. ``"lstm"``.
        gates: number of gate blocks stacked in ``W_ih`` / ``W_hh`` (1, 3 or 4).
        num_states: 1 (``h``) or 2 (``h, c``).
        fold_hidden_bias: True when ``b_hh`` enters the cell only through the sum
            ``W_ih x + b_ih + W_hh h + b_hh`` and can be added to the input projection.
        separate_hidden_grads: True when the gradient reaching ``W_hh h + b_hh``
            differs from the one reaching ``W_ih x + b_ih`` (GRU's reset gate).
        cache_widths: width, in units of H, of each extra cache buffer the step fills.
            The first cache buffer is always the input projection [T, B, G], which
            the step may overwrite in place (LSTM and GRU turn it into their gate
            activations, so the hidden product is accumulated without a copy).
        step_into: fused forward step ``(x_t: GateBlock, prev, w_hh_t, b_hh, out, cache)``,
            writing into preallocated slots.
        local_derivatives: ``(cache, states) -> tensors [T, B, ...]``, the per-step
            Jacobian factors, computed for all steps at once.
        backward_step: one step of hand-derived BPTT
            ``(drec, derivs_t, w_hh, dgx: GateBlock, dgh: GateBlock, dy_prev)``.
        prepare: optional, called once per sequence with the input projections
            [T, B, G] and the transposed recurrent weight [H, G] (both private copies)
            to put them in the form ``step_into`` expects.
    """

    name: str
    gates: int
    num_states: int
    fold_hidden_bias: bool
    separate_hidden_grads: bool
    cache_widths: tuple[int, ...]
    step_into: Callable[..., None]
    local_derivatives: Callable[..., tuple[Tensor, ...]]
    backward_step: Callable[..., None]
    prepare: Callable[[Tensor, Tensor], None] | None = None


@dataclass
class SequenceCache:
    """What the forward keeps for the backward (all time-major)."""

    x: Tensor  # [T, B, I]
    states: tuple[Tensor, ...]  # each [T+1, B, H]; states[k][0] is the initial state
    cache: tuple[Tensor, ...]  # input projections as the step left them [T, B, G], then the cell's buffers
    batch_sizes: Sequence[int] | None


def _project_input(spec: CellSpec, x: Tensor, w_ih: Tensor, b_ih: Tensor | None,
                   b_hh: Tensor | None) -> Tensor:
    """All input projections at once: [T, B, I] -> [T, B, G]."""
    T, B, I = x.shape
    bias = b_ih
    if spec.fold_hidden_bias and b_hh is not None:
        bias = b_hh if bias is None else bias + b_hh
    flat = x.reshape(T * B, I)
    xp = torch.mm(flat, w_ih.t()) if bias is None else torch.addmm(bias, flat, w_ih.t())
    return xp.view(T, B, -1)


def sequence_forward(spec: CellSpec, x: Tensor, states0: Sequence[Tensor], w_ih: Tensor,
                     w_hh: Tensor, b_ih: Tensor | None, b_hh: Tensor | None,
                     batch_sizes: Sequence[int] | None = None
                     ) -> tuple[Tensor, tuple[Tensor, ...], SequenceCache]:
    """Run ``spec`` over ``x`` and keep the cache for :func:`sequence_backward`.

    Args:
        x: [T, B, I] input, time-major. With ``batch_sizes``, sorted by length, longest first.
        states0: initial states, each [B, H].
        w_ih: [G, I]; w_hh: [G, H]; b_ih, b_hh: [G] or None.
        batch_sizes: running sequences per step (non-increasing, first == B), or None
            when every sequence has length T.

    Returns:
        y: [T, B, H] hidden state at every step (zero past a sequence's end),
        final: each state at the sequence's last step, [B, H],
        cache: what the backward needs.
    """
    T, B, _ = x.shape
    H = w_hh.shape[1]
    if batch_sizes is not None:
        check_batch_sizes(batch_sizes, T, B)
    xp = _project_input(spec, x, w_ih, b_ih, b_hh)  # [T, B, G]
    w_hh_t = w_hh.t().contiguous()  # [H, G]; MKL runs h @ W^T faster from a row-major copy
    if spec.prepare is not None:
        spec.prepare(xp, w_hh_t)
    b_step = None if spec.fold_hidden_bias else b_hh
    alloc = torch.empty if batch_sizes is None else torch.zeros
    opts = {"dtype": x.dtype, "device": x.device}
    states = tuple(alloc(T + 1, B, H, **opts) for _ in range(spec.num_states))
    for buf, s0 in zip(states, states0):
        buf[0].copy_(s0)
    cache = (xp, *(alloc(T, B, w * H, **opts) for w in spec.cache_widths))
    # Per-step views made once, outside the loop (each slice is a dispatch).
    xs = gate_blocks(xp, spec.gates)
    state_steps = [s.unbind(0) for s in states]
    cache_steps = [c.unbind(0) for c in cache[1:]]
    for t in range(T):
        prev = [s[t] for s in state_steps]
        out = [s[t + 1] for s in state_steps]
        slots = [c[t] for c in cache_steps]
        x_t = xs[t]
        n = B if batch_sizes is None else batch_sizes[t]
        if n != B:
            x_t, prev, out, slots = x_t.rows(n), _rows(prev, n), _rows(out, n), _rows(slots, n)
        spec.step_into(x_t, prev, w_hh_t, b_step, out, slots)
    if batch_sizes is None:
        final = tuple(s[T] for s in states)
    else:
        last = _last_step_index(batch_sizes, B, x.device)  # [B]: length of each sequence
        cols = torch.arange(B, device=x.device)
        final = tuple(s[last, cols] for s in states)
    return states[0][1:], final, SequenceCache(x, states, cache, batch_sizes)


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
    if any(b < a for a, b in zip(sizes[1:], sizes)) or (sizes and sizes[-1] < 1):
        raise ValueError("batch_sizes: expected positive, non-increasing counts (sequences sorted "
                         f"by length, longest first), got {sizes}")


def _last_step_index(batch_sizes: Sequence[int], B: int, device: torch.device) -> Tensor:
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


def sequence_backward(spec: CellSpec, saved: SequenceCache, w_ih: Tensor, w_hh: Tensor,
                      dy: Tensor | None, dfinal: Sequence[Tensor | None],
                      need_x: bool = True, need_weights: bool = True,
                      need_bias: bool = True,
                      state_grad_norms: Tensor | None = None) -> SequenceGrads:
    """Hand-derived backpropagation through time.

    Args:
        spec: the cell.
        saved: the forward's cache.
        w_ih, w_hh: the weights used in the forward.
        dy: [T, B, H] gradient of the loss w.r.t. the outputs, or None.
        dfinal: gradient w.r.t. each final state, [B, H] or None.
        need_x, need_weights, need_bias: skip products nobody asked for.
        state_grad_norms: optional [T, B] buffer that receives ||dL/dh_t||, the norm of the
            total gradient reaching each step's hidden state (the vanishing-gradient picture).

    Returns:
        The gradients, see :class:`SequenceGrads`.
    """
    x, states, batch_sizes = saved.x, saved.states, saved.batch_sizes
    T, B, I = x.shape
    H = w_hh.shape[1]
    G = spec.gates * H
    opts = {"dtype": x.dtype, "device": x.device}
    derivs = spec.local_derivatives(saved.cache, states)  # each [T, B, *]

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
    deriv_steps = [d.unbind(0) for d in derivs]
    dgx_steps = gate_blocks(dgx, spec.gates)
    dgh_steps = gate_blocks(dgh, spec.gates) if spec.separate_hidden_grads else dgx_steps
    dy_steps = dy.unbind(0) if dy is not None else None
    sizes = [B] * T if batch_sizes is None else list(batch_sizes)
    dh = drec[0]
    for t in range(T - 1, -1, -1):
        n = sizes[t]
        # Rows whose sequence ends at step t join now: their output gradient at t has not
        # been added yet (for the others, the previous backward step added it).
        joined = sizes[t + 1] if t + 1 < T else 0
        if dy_steps is not None and n > joined:
            dh[joined:n].add_(dy_steps[t][joined:n])
        if state_grad_norms is not None:  # dh now holds the total dL/dh_t of the running rows
            torch.linalg.vector_norm(dh[:n], dim=1, out=state_grad_norms[t, :n])
        d_t = [d[t] for d in deriv_steps]
        gx, gh = dgx_steps[t], dgh_steps[t]
        rec = drec
        dy_prev = dy_steps[t - 1] if dy_steps is not None and t > 0 else None
        if n != B:
            d_t, gx, gh, rec = _rows(d_t, n), gx.rows(n), gh.rows(n), _rows(drec, n)
            dy_prev = dy_prev[:n] if dy_prev is not None else None
        # The output gradient of step t-1 rides along with the product dgates @ W_hh.
        spec.backward_step(rec, d_t, w_hh, gx, gh, dy_prev)
    flat_gx = dgx.view(T * B, G)
    flat_gh = dgh.view(T * B, G)
    gx = torch.mm(flat_gx, w_ih).view(T, B, I) if need_x else None
    gw_ih = gw_hh = gb_ih = gb_hh = None
    if need_weights:
        gw_ih = torch.mm(flat_gx.t(), x.reshape(T * B, I))
        gw_hh = torch.mm(flat_gh.t(), states[0][:T].reshape(T * B, H))
    if need_bias:
        gb_ih = flat_gx.sum(0)
        gb_hh = gb_ih.clone() if not spec.separate_hidden_grads else flat_gh.sum(0)
    return SequenceGrads(gx, tuple(drec), gw_ih, gw_hh, gb_ih, gb_hh)
