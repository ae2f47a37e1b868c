"""Vanilla (Elman) RNN cell: forward equations and hand-derived BPTT.

Forward, with ``act`` = tanh or relu (torch.nn.RNN's ``nonlinearity``)::

    a_t = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh        # pre-activation   [B, H]
    h_t = act(a_t)                                      # hidden state     [B, H]

Backward, with ``dh_t`` the total gradient reaching ``h_t`` (from the output at
step t and from step t+1)::

    da_t      = dh_t * act'(a_t)          # tanh: 1 - h_t^2;  relu: 1[h_t > 0]
    dh_{t-1} += da_t @ W_hh               # the only product inside the loop
    dW_hh     = sum_t da_t^T h_{t-1}      # after the loop, one product
    dW_ih     = sum_t da_t^T x_t,  dx_t = da_t @ W_ih,  db_ih = db_hh = sum_t da_t
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from rnnkit.functional.sequence import CellSpec, GateBlock, recurrent_grad


def rnn_tanh_step(x_proj_t: Tensor, state: tuple[Tensor], w_hh: Tensor,
                  b_hh: Tensor | None, extra: Sequence[Tensor] = (),
                  h_in: Tensor | None = None) -> tuple[tuple[Tensor], tuple[Tensor]]:
    """One step of the tanh RNN.

    Args:
        x_proj_t: [B, H] input projection ``W_ih x_t + b_ih``.
        state: ``(h_{t-1},)``, [B, H].
        w_hh: [H, H]; b_hh: [H] or None.
        extra: the cell's extra parameters (none for this cell).
        h_in: what the recurrent product reads instead of ``h_{t-1}`` (recurrent
            dropout applies its mask there), or None.

    Returns:
        ``((h_t,), (h_t,))``: the new state, and the cache the backward reads, the
        activation itself (a zoneout layer then mixes ``h_t`` with ``h_{t-1}``; the cache
        stays the activation).
    """
    (h,) = state
    h_new = torch.tanh(x_proj_t + F.linear(h if h_in is None else h_in, w_hh, b_hh))
    return (h_new,), (h_new,)


def rnn_relu_step(x_proj_t: Tensor, state: tuple[Tensor], w_hh: Tensor,
                  b_hh: Tensor | None, extra: Sequence[Tensor] = (),
                  h_in: Tensor | None = None) -> tuple[tuple[Tensor], tuple[Tensor]]:
    """One step of the relu RNN; arguments as :func:`rnn_tanh_step`."""
    (h,) = state
    h_new = torch.relu(x_proj_t + F.linear(h if h_in is None else h_in, w_hh, b_hh))
    return (h_new,), (h_new,)


def _step_into(activation):
    def step_into(x_t: GateBlock, prev: Sequence[Tensor], hin: Tensor, w_hh_t: Tensor,
                  b_hh: Tensor | None, out: Sequence[Tensor], cache: Sequence[Tensor],
                  extra: Sequence[Tensor]) -> None:
        # a_t accumulated in place on the projection buffer, activated there (the cache the
        # backward reads: h_t itself differs from act(a_t) where zoneout keeps h_{t-1}),
        # then copied into h_t.
        x_t.flat.addmm_(hin, w_hh_t)  # [n, H]
        activation(x_t.flat, out=x_t.flat)
        out[0].copy_(x_t.flat)
    return step_into


def rnn_tanh_local_derivatives(cache: Sequence[Tensor], states: Sequence[Tensor],
                               extra: Sequence[Tensor] = ()) -> tuple[Tensor]:
    """tanh'(a_t) = 1 - tanh(a_t)^2 for every step at once, from the activations the forward
    left in ``cache[0]`` [T, B, H] (``h_t`` before any zoneout)."""
    h = cache[0]
    return (1 - h * h,)


def rnn_relu_local_derivatives(cache: Sequence[Tensor], states: Sequence[Tensor],
                               extra: Sequence[Tensor] = ()) -> tuple[Tensor]:
    """relu'(a_t) = 1[relu(a_t) > 0] for every step at once (activations in ``cache[0]``)."""
    h = cache[0]
    return ((h > 0).to(h.dtype),)


def rnn_backward_step(drec: Sequence[Tensor], derivs_t: Sequence[Tensor], w_hh: Tensor,
                      dgx: GateBlock, dgh: GateBlock, dr: Tensor, dy_prev: Tensor | None = None,
                      mask: Tensor | None = None, sums: Sequence[Tensor] = (),
                      extra: Sequence[Tensor] = ()) -> None:
    """One step of BPTT, in place.

    Args:
        drec: ``[dh]`` with dh [n, H] the total gradient w.r.t. ``h_t``; overwritten
            with the gradient w.r.t. ``h_{t-1}``.
        derivs_t: ``[act'(a_t)]``, [n, H].
        w_hh: [H, H].
        dgx: receives ``da_t`` [n, H]; dgh and dr are the same buffer for this cell.
        dy_prev: [n, H] gradient of the output at step t-1, added to ``dh_{t-1}``, or None.
        mask: [n, H] recurrent-dropout mask, or None.
        sums, extra: unused by this cell (the loop's common signature).
    """
    (dh,) = drec
    torch.mul(dh, derivs_t[0], out=dgx.flat)  # da_t
    recurrent_grad(dh, dgx.flat, w_hh, dy_prev, mask)  # dh_{t-1} = dy_{t-1} + (da_t @ W_hh) m


def _spec(name: str, step, activation, local_derivatives, aliases) -> CellSpec:
    return CellSpec(name=name, gates=1, num_states=1, step=step, aliases=aliases,
                    fold_hidden_bias=True,
                    separate_hidden_grads=False, cache_widths=(),
                    step_into=_step_into(activation), local_derivatives=local_derivatives,
                    backward_step=rnn_backward_step)


def _relu_into(a: Tensor, out: Tensor) -> None:
    torch.clamp_min(a, 0, out=out)


RNN_TANH = _spec("rnn", rnn_tanh_step, torch.tanh, rnn_tanh_local_derivatives,
                 ("rnn_tanh", "RNN_TANH"))
RNN_RELU = _spec("rnn-relu", rnn_relu_step, _relu_into, rnn_relu_local_derivatives,
                 ("rnn_relu", "RNN_RELU"))
