"""LSTM cell: forward equations and hand-derived BPTT.

Gate order i, f, g, o, as torch.nn.LSTM stacks them in ``W_ih`` and ``W_hh``::

    gates = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh           # [B, 4H]
    i = sigmoid(gates_i)   f = sigmoid(gates_f)              # input, forget gates
    g = tanh(gates_g)      o = sigmoid(gates_o)              # candidate, output gate
    c_t = f * c_{t-1} + i * g                                # cell state   [B, H]
    h_t = o * tanh(c_t)                                      # hidden state [B, H]

Backward. Let ``dh_t`` be the total gradient reaching ``h_t`` and ``dc'`` the one
carried back from step t+1 to ``c_t`` (``dc'`` = dc_{t+1} * f_{t+1}). With
sigmoid' = s(1-s) and tanh' = 1 - tanh^2::

    dc_t      = dc' + dh_t * o * (1 - tanh(c_t)^2)
    dgates_i  = dc_t * g * i(1-i)
    dgates_f  = dc_t * c_{t-1} * f(1-f)
    dgates_g  = dc_t * i * (1 - g^2)
    dgates_o  = dh_t * tanh(c_t) * o(1-o)
    dc_{t-1}' = dc_t * f
    dh_{t-1} += dgates @ W_hh

Every factor that multiplies ``dc_t`` or ``dh_t`` above depends only on the forward
cache, so :func:`lstm_local_derivatives` computes them for all steps at once; the
loop is then four pointwise products and one matrix product per step.

The fused forward step uses tanh(a) = 2 sigmoid(2a) - 1 for the candidate g: with
the g block of the pre-activations doubled once per sequence (:func:`lstm_prepare`),
one sigmoid call covers all four gates (transcendentals dominate the step's
pointwise cost on a CPU). The cache holds the true g, so the backward is unchanged.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from rnnkit.functional.sequence import CellSpec, GateBlock, recurrent_grad


def lstm_step(x_proj_t: Tensor, state: tuple[Tensor, Tensor], w_hh: Tensor,
              b_hh: Tensor | None, extra: Sequence[Tensor] = (), h_in: Tensor | None = None
              ) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
    """One LSTM step, written as the equations read.

    Args:
        x_proj_t: [B, 4H] input projection ``W_ih x_t + b_ih``.
        state: ``(h_{t-1}, c_{t-1})``, each [B, H].
        w_hh: [4H, H]; b_hh: [4H] or None.
        extra: unused (no extra parameters).
        h_in: what the recurrent product reads instead of ``h_{t-1}`` (recurrent
            dropout), or None.

    Returns:
        ``((h_t, c_t), (acts, tanh_c))``: the new state, and the cache that
        :func:`lstm_local_derivatives` reads: ``acts`` [B, 4H] = (i, f, g, o),
        ``tanh_c`` [B, H].
    """
    h, c = state
    gates = x_proj_t + F.linear(h if h_in is None else h_in, w_hh, b_hh)
    gi, gf, gg, go = gates.chunk(4, dim=1)
    i, f, g, o = torch.sigmoid(gi), torch.sigmoid(gf), torch.tanh(gg), torch.sigmoid(go)
    c_new = f * c + i * g
    tanh_c = torch.tanh(c_new)
    h_new = o * tanh_c
    return (h_new, c_new), (torch.cat([i, f, g, o], dim=1), tanh_c)


def lstm_prepare(x_proj: Tensor, w_hh_t: Tensor, extra: Sequence[Tensor] = ()) -> tuple[Tensor, ...]:
    """Double the g block of the input projections [T, B, gates*H] and of ``W_hh^T``
    [H, gates*H], in place (both are the engine's private copies), for
    :func:`lstm_step_into`."""
    H = w_hh_t.shape[0]
    x_proj[..., 2 * H: 3 * H].mul_(2)
    w_hh_t[:, 2 * H: 3 * H].mul_(2)
    return tuple(extra)


def lstm_activate(x_t: GateBlock) -> None:
    """Pre-activations (g block doubled) -> (i, f, g, o) in place, one sigmoid call:
    tanh(a) = 2 sigmoid(2a) - 1."""
    g = x_t.gates[2]
    x_t.flat.sigmoid_()  # i, f, o (and carry); and sigmoid(2 a_g) in the g block
    minus_one, two = _constants(g.device, g.dtype)
    torch.addcmul(minus_one, g, two, out=g)  # g = tanh(a_g) = 2 sigmoid(2 a_g) - 1


def lstm_step_into(x_t: GateBlock, prev: Sequence[Tensor], hin: Tensor, w_hh_t: Tensor,
                   b_hh: Tensor | None, out: Sequence[Tensor], cache: Sequence[Tensor],
                   extra: Sequence[Tensor] = ()) -> None:
    """:func:`lstm_step` writing into preallocated slots (the fused engine's step).

    Args:
        x_t: this step's input projections [n, 4H], holding both biases, g block
            doubled (:func:`lstm_prepare`); overwritten with the activations (i, f, g, o),
            which are the first half of the cache.
        prev: ``[h_{t-1}, c_{t-1}]``, each [n, H]; hin: what the recurrent product reads.
        w_hh_t: [H, 4H] (``W_hh`` transposed, g block doubled).
        out: ``[h_t, c_t]`` slots, each [n, H].
        cache: ``[tanh_c]`` slot, [n, H].
    """
    c = prev[1]
    h_out, c_out = out
    (tanh_c,) = cache
    i, f, g, o = x_t.gates[:4]
    x_t.flat.addmm_(hin, w_hh_t)  # pre-activations (g doubled), in place
    lstm_activate(x_t)
    torch.mul(f, c, out=c_out)
    c_out.addcmul_(i, g)  # c_t = f c_{t-1} + i g
    torch.tanh(c_out, out=tanh_c)
    torch.mul(o, tanh_c, out=h_out)  # h_t = o tanh(c_t)


@functools.cache
def _constants(device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """-1 and 2 as 0-dim tensors on the step's device: a Python number would be wrapped
    into a new tensor on every call, which costs more than the arithmetic at small sizes."""
    return torch.tensor(-1.0, device=device, dtype=dtype), torch.tensor(2.0, device=device, dtype=dtype)


def gate_factors(acts: Tensor, tanh_c: Tensor, c_prev: Tensor) -> tuple[Tensor, ...]:
    """The LSTM's gate factors for all steps: P [T, B, gates*H] = s(1-s) per sigmoid
    block, with the i, f, g, o blocks finished as below, and A = o (1 - tanh_c^2).

    Returns ``(A, P, P_i, P_f, P_g, P_o)`` (the P_* are views of P)."""
    H = tanh_c.shape[-1]
    i, g, o = acts[..., :H], acts[..., 2 * H: 3 * H], acts[..., 3 * H: 4 * H]
    P = torch.addcmul(acts, acts, acts, value=-1)  # s(1-s): sigmoid' in the sigmoid blocks
    P_i, P_f, P_g, P_o = (P[..., k * H:(k + 1) * H] for k in range(4))
    P_i.mul_(g)
    P_f.mul_(c_prev)
    torch.addcmul(i, i * g, g, value=-1, out=P_g)  # i (1 - g^2)
    P_o.mul_(tanh_c)
    A = torch.addcmul(o, o * tanh_c, tanh_c, value=-1)  # o (1 - tanh(c_t)^2)
    return A, P, P_i, P_f, P_g, P_o


def lstm_local_derivatives(cache: Sequence[Tensor], states: Sequence[Tensor],
                           extra: Sequence[Tensor] = ()) -> tuple[Tensor, ...]:
    """The factors of the backward equations, for all steps at once.

    Args:
        cache: ``(acts [T, B, 4H], tanh_c [T, B, H])`` from the forward.
        states: ``(h [T+1, B, H], c [T+1, B, H])``; index 0 is the initial state.

    Returns:
        ``A`` [T, B, H] = o (1 - tanh(c_t)^2), the path dh_t -> dc_t;
        ``P_i, P_f, P_g, P_o`` [T, B, H] = g i(1-i), c_{t-1} f(1-f), i (1-g^2),
        tanh(c_t) o(1-o), so that dgates = (dc_t P_i, dc_t P_f, dc_t P_g, dh_t P_o);
        ``f`` [T, B, H], the forget gate, carrying dc back one step.
    """
    acts, tanh_c = cache[:2]
    H = tanh_c.shape[-1]
    A, _, P_i, P_f, P_g, P_o = gate_factors(acts, tanh_c, states[1][:-1])
    return A, P_i, P_f, P_g, P_o, acts[..., H: 2 * H]


def lstm_gate_grads(dh: Tensor, dc: Tensor, A: Tensor, P: Sequence[Tensor], f: Tensor,
                    dgx: GateBlock) -> None:
    """dc_t += dh_t A; the four gate gradients into ``dgx``; dc carried to c_{t-1}."""
    P_i, P_f, P_g, P_o = P
    d_i, d_f, d_g, d_o = dgx.gates[:4]
    dc.addcmul_(dh, A)  # dc_t = dc' + dh_t * o * (1 - tanh(c_t)^2)
    torch.mul(dc, P_i, out=d_i)
    torch.mul(dc, P_f, out=d_f)
    torch.mul(dc, P_g, out=d_g)
    torch.mul(dh, P_o, out=d_o)
    dc.mul_(f)  # carried to c_{t-1}


def lstm_backward_step(drec: Sequence[Tensor], derivs_t: Sequence[Tensor], w_hh: Tensor,
                       dgx: GateBlock, dgh: GateBlock, dr: Tensor, dy_prev: Tensor | None = None,
                       mask: Tensor | None = None, sums: Sequence[Tensor] = (),
                       extra: Sequence[Tensor] = ()) -> None:
    """One step of LSTM BPTT, in place.

    Args:
        drec: ``[dh, dc]``, each [n, H]: on entry the total gradient w.r.t. ``h_t`` and
            the carried gradient w.r.t. ``c_t``; on exit the same for step t-1.
        derivs_t: ``[A, P_i, P_f, P_g, P_o, f]`` of step t, see :func:`lstm_local_derivatives`.
        w_hh: [4H, H].
        dgx: receives the gradient of the gate pre-activations [n, 4H] (dgh, dr: the same).
        dy_prev: [n, H] gradient of the output at step t-1, added to ``dh_{t-1}``, or None.
        mask: [n, H] recurrent-dropout mask, or None.
    """
    dh, dc = drec
    A, P_i, P_f, P_g, P_o, f = derivs_t
    lstm_gate_grads(dh, dc, A, (P_i, P_f, P_g, P_o), f, dgx)
    recurrent_grad(dh, dgx.flat, w_hh, dy_prev, mask)  # dh_{t-1} = dy_{t-1} + dgates @ W_hh


LSTM = CellSpec(name="lstm", gates=4, num_states=2, step=lstm_step, forget_gate=1,
                keep_gate=1, write_gate=0,
                aliases=("LSTM",), fold_hidden_bias=True,
                separate_hidden_grads=False, cache_widths=(1,), step_into=lstm_step_into,
                local_derivatives=lstm_local_derivatives, backward_step=lstm_backward_step,
                prepare=lstm_prepare)


# --- The carry-gate LSTM --------------------------------------------------------------

def carry_lstm_step(x_proj_t: Tensor, state: tuple[Tensor, Tensor], w_hh: Tensor,
                    b_hh: Tensor | None, extra: Sequence[Tensor] = (), h_in: Tensor | None = None
                    ) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
    """One step of the carry-gate LSTM (gates i, f, g, o, beta; see :data:`CARRY_LSTM`).

    Args and returns as :func:`lstm_step`, with 5H rows in ``w_hh`` and the cache's
    ``acts`` [B, 5H] = (i, f, g, o, beta).
    """
    h, c = state
    gates = x_proj_t + F.linear(h if h_in is None else h_in, w_hh, b_hh)
    gi, gf, gg, go, gb = gates.chunk(5, dim=1)
    i, f, g, o = torch.sigmoid(gi), torch.sigmoid(gf), torch.tanh(gg), torch.sigmoid(go)
    beta = torch.sigmoid(gb)
    c_new = f * c + i * g
    tanh_c = torch.tanh(c_new)
    h_new = o * tanh_c + beta * h
    return (h_new, c_new), (torch.cat([i, f, g, o, beta], dim=1), tanh_c)


def carry_lstm_step_into(x_t: GateBlock, prev: Sequence[Tensor], hin: Tensor, w_hh_t: Tensor,
                         b_hh: Tensor | None, out: Sequence[Tensor], cache: Sequence[Tensor],
                         extra: Sequence[Tensor] = ()) -> None:
    """:func:`carry_lstm_step` into preallocated slots; as :func:`lstm_step_into`, then
    ``h_t += beta * h_{t-1}``."""
    lstm_step_into(x_t, prev, hin, w_hh_t, b_hh, out, cache)
    out[0].addcmul_(x_t.gates[4], prev[0])


def carry_lstm_local_derivatives(cache: Sequence[Tensor], states: Sequence[Tensor],
                                 extra: Sequence[Tensor] = ()) -> tuple[Tensor, ...]:
    """As :func:`lstm_local_derivatives`, plus ``P_b`` = h_{t-1} beta(1-beta) (dgates_beta =
    dh_t P_b) and ``beta``, the direct path dh_t -> dh_{t-1}."""
    acts, tanh_c = cache
    H = tanh_c.shape[-1]
    h_prev = states[0][:-1]
    A, P, P_i, P_f, P_g, P_o = gate_factors(acts, tanh_c, states[1][:-1])
    P_b = P[..., 4 * H:].mul_(h_prev)
    return A, P_i, P_f, P_g, P_o, acts[..., H: 2 * H], P_b, acts[..., 4 * H:]


def carry_lstm_backward_step(drec: Sequence[Tensor], derivs_t: Sequence[Tensor], w_hh: Tensor,
                             dgx: GateBlock, dgh: GateBlock, dr: Tensor,
                             dy_prev: Tensor | None = None, mask: Tensor | None = None,
                             sums: Sequence[Tensor] = (), extra: Sequence[Tensor] = ()) -> None:
    """One step of carry-gate LSTM BPTT, in place; arguments as :func:`lstm_backward_step`
    with ``derivs_t`` from :func:`carry_lstm_local_derivatives`."""
    dh, dc = drec
    A, P_i, P_f, P_g, P_o, f, P_b, beta = derivs_t
    lstm_gate_grads(dh, dc, A, (P_i, P_f, P_g, P_o), f, dgx)
    torch.mul(dh, P_b, out=dgx.gates[4])
    if dy_prev is None:
        dh.mul_(beta)
    else:
        torch.addcmul(dy_prev, dh, beta, out=dh)  # the carry path: dh_t beta
    recurrent_grad(dh, dgx.flat, w_hh, dh, mask)  # + dgates @ W_hh


CARRY_LSTM = CellSpec(name="carry-lstm", gates=5, num_states=2, step=carry_lstm_step,
                      forget_gate=1, keep_gate=1, write_gate=0, aliases=("carry_lstm",),
                      fold_hidden_bias=True,
                      separate_hidden_grads=False, cache_widths=(1,),
                      step_into=carry_lstm_step_into,
                      local_derivatives=carry_lstm_local_derivatives,
                      backward_step=carry_lstm_backward_step, prepare=lstm_prepare)
"""The carry-gate LSTM: an LSTM whose hidden state also carries part of the previous one
through a learned gate (the variant in one of the source articles)::

    gates  = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh       # [B, 5H]: i, f, g, o, beta
    beta_t = sigmoid(W_xb x_t + W_hb h_{t-1} + b_b)      # the fifth block
    c_t    = f * c_{t-1} + i * g
    h_t    = o * tanh(c_t) + beta_t * h_{t-1}

Backward: as the LSTM's, plus ``dgates_beta = dh_t * h_{t-1} * beta(1-beta)`` and the
direct path ``dh_{t-1} += dh_t * beta_t``.
"""
