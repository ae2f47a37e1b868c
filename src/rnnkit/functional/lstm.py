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
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from rnnkit.functional.sequence import CellSpec


def lstm_step(x_proj_t: Tensor, state: tuple[Tensor, Tensor], w_hh: Tensor,
              b_hh: Tensor | None) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
    """One LSTM step, written as the equations read.

    Args:
        x_proj_t: [B, 4H] input projection ``W_ih x_t + b_ih``.
        state: ``(h_{t-1}, c_{t-1})``, each [B, H].
        w_hh: [4H, H]; b_hh: [4H] or None.

    Returns:
        ``((h_t, c_t), (acts, tanh_c))``: the new state, and the cache that
        :func:`lstm_local_derivatives` reads: ``acts`` [B, 4H] = (i, f, g, o),
        ``tanh_c`` [B, H].
    """
    h, c = state
    gates = x_proj_t + F.linear(h, w_hh, b_hh)
    gi, gf, gg, go = gates.chunk(4, dim=1)
    i, f, g, o = torch.sigmoid(gi), torch.sigmoid(gf), torch.tanh(gg), torch.sigmoid(go)
    c_new = f * c + i * g
    tanh_c = torch.tanh(c_new)
    h_new = o * tanh_c
    return (h_new, c_new), (torch.cat([i, f, g, o], dim=1), tanh_c)


def lstm_step_into(x_proj_t: Tensor, prev: Sequence[Tensor], w_hh_t: Tensor,
                   b_hh: Tensor | None, out: Sequence[Tensor], cache: Sequence[Tensor]) -> None:
    """:func:`lstm_step` writing into preallocated slots (the fused engine's step).

    Args:
        x_proj_t: [n, 4H], already holding both biases.
        prev: ``[h_{t-1}, c_{t-1}]``, each [n, H].
        w_hh_t: [H, 4H] (``W_hh`` transposed).
        out: ``[h_t, c_t]`` slots, each [n, H].
        cache: ``[acts, tanh_c]`` slots, [n, 4H] and [n, H].
    """
    h, c = prev
    h_out, c_out = out
    acts, tanh_c = cache
    H = h.shape[1]
    torch.addmm(x_proj_t, h, w_hh_t, out=acts)  # pre-activations, activated in place
    acts[:, : 2 * H].sigmoid_()
    acts[:, 2 * H: 3 * H].tanh_()
    acts[:, 3 * H:].sigmoid_()
    i, f, g, o = acts[:, :H], acts[:, H: 2 * H], acts[:, 2 * H: 3 * H], acts[:, 3 * H:]
    torch.mul(f, c, out=c_out)
    c_out.addcmul_(i, g)
    torch.tanh(c_out, out=tanh_c)
    torch.mul(o, tanh_c, out=h_out)


def lstm_local_derivatives(cache: Sequence[Tensor],
                           states: Sequence[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    """The factors of the backward equations, for all steps at once.

    Args:
        cache: ``(acts [T, B, 4H], tanh_c [T, B, H])`` from the forward.
        states: ``(h [T+1, B, H], c [T+1, B, H])``; index 0 is the initial state.

    Returns:
        ``A`` [T, B, H] = o (1 - tanh(c_t)^2), the path dh_t -> dc_t;
        ``P`` [T, B, 4H] = (g i(1-i), c_{t-1} f(1-f), i (1-g^2), tanh(c_t) o(1-o)),
        so that dgates = (dc_t P_i, dc_t P_f, dc_t P_g, dh_t P_o);
        ``f`` [T, B, H], the forget gate, carrying dc back one step.
    """
    acts, tanh_c = cache
    c_prev = states[1][:-1]
    H = tanh_c.shape[-1]
    i, f, g, o = (acts[..., k * H:(k + 1) * H] for k in range(4))
    sig_d = acts * (1 - acts)  # sigmoid' for the i, f, o blocks (the g block is unused)
    P = torch.empty_like(acts)
    torch.mul(g, sig_d[..., :H], out=P[..., :H])
    torch.mul(c_prev, sig_d[..., H: 2 * H], out=P[..., H: 2 * H])
    torch.mul(i, 1 - g * g, out=P[..., 2 * H: 3 * H])
    torch.mul(tanh_c, sig_d[..., 3 * H:], out=P[..., 3 * H:])
    A = o * (1 - tanh_c * tanh_c)
    return A, P, f


def lstm_backward_step(drec: Sequence[Tensor], derivs_t: Sequence[Tensor], w_hh: Tensor,
                       dgx: Tensor, dgh: Tensor) -> None:
    """One step of LSTM BPTT, in place.

    Args:
        drec: ``[dh, dc]``, each [n, H]: on entry the total gradient w.r.t. ``h_t`` and
            the carried gradient w.r.t. ``c_t``; on exit the same for step t-1.
        derivs_t: ``[A, P, f]`` of step t, see :func:`lstm_local_derivatives`.
        w_hh: [4H, H].
        dgx: [n, 4H] receives the gradient of the gate pre-activations (dgh is the same).
    """
    dh, dc = drec
    A, P, f = derivs_t
    n, H = dh.shape
    dc.addcmul_(dh, A)  # dc_t = dc' + dh_t * o * (1 - tanh(c_t)^2)
    torch.mul(P[:, : 3 * H].view(n, 3, H), dc.unsqueeze(1),
              out=dgx[:, : 3 * H].view(n, 3, H))  # dgates_i, dgates_f, dgates_g
    torch.mul(dh, P[:, 3 * H:], out=dgx[:, 3 * H:])  # dgates_o
    dc.mul_(f)  # carried to c_{t-1}
    torch.mm(dgx, w_hh, out=dh)  # dh_{t-1} (the output gradient of t-1 is added by the loop)


LSTM = CellSpec(name="lstm", gates=4, num_states=2, fold_hidden_bias=True,
                separate_hidden_grads=False, cache_widths=(4, 1), step_into=lstm_step_into,
                local_derivatives=lstm_local_derivatives, backward_step=lstm_backward_step)
