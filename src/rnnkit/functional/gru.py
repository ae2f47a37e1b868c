"""GRU cell: forward equations and hand-derived BPTT.

Gate order r, z, n, exactly as torch.nn.GRU defines them (the reset gate multiplies
the *projected* previous state, bias included)::

    gh = W_hh h_{t-1} + b_hh                                # [B, 3H] = (gh_r, gh_z, gh_n)
    gx = W_ih x_t + b_ih                                    # [B, 3H] = (gx_r, gx_z, gx_n)
    r = sigmoid(gx_r + gh_r)       z = sigmoid(gx_z + gh_z)
    n = tanh(gx_n + r * gh_n)
    h_t = (1 - z) * n + z * h_{t-1}

Backward, with ``dh_t`` the total gradient reaching ``h_t``::

    dn_pre = dh_t * (1 - z) * (1 - n^2)                   # d(gx_n)
    dz_pre = dh_t * (h_{t-1} - n) * z(1-z)                # d(gx_z) = d(gh_z)
    dr_pre = dn_pre * gh_n * r(1-r)                       # d(gx_r) = d(gh_r)
    d(gh_n) = dn_pre * r
    dh_{t-1} = dh_t * z + (dr_pre, dz_pre, dn_pre * r) @ W_hh

So the input side gets ``dgx = dh_t * P`` and the hidden side ``dgh = dh_t * Q``,
where P and Q depend only on the forward cache and are computed for all steps at
once by :func:`gru_local_derivatives`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from rnnkit.functional.sequence import CellSpec, GateBlock, recurrent_grad


def gru_step(x_proj_t: Tensor, state: tuple[Tensor], w_hh: Tensor,
             b_hh: Tensor | None, extra: Sequence[Tensor] = (), h_in: Tensor | None = None
             ) -> tuple[tuple[Tensor], tuple[Tensor, Tensor]]:
    """One GRU step, written as the equations read.

    Args:
        x_proj_t: [B, 3H] input projection ``W_ih x_t + b_ih``.
        state: ``(h_{t-1},)``, [B, H].
        w_hh: [3H, H]; b_hh: [3H] or None.
        extra: unused (no extra parameters).
        h_in: what the recurrent product reads instead of ``h_{t-1}`` (recurrent
            dropout), or None. The update ``z * h_{t-1}`` always uses ``h_{t-1}``.

    Returns:
        ``((h_t,), (acts, gh))``: the new state and the cache that
        :func:`gru_local_derivatives` reads: ``acts`` [B, 3H] = (r, z, n),
        ``gh`` [B, 3H] = ``W_hh h_{t-1} + b_hh``.
    """
    (h,) = state
    gh = F.linear(h if h_in is None else h_in, w_hh, b_hh)
    return gru_update(x_proj_t, h, gh)


def gru_update(x_proj_t: Tensor, h: Tensor, gh: Tensor) -> tuple[tuple[Tensor], tuple[Tensor, Tensor]]:
    """The GRU's gates and new state from the two projections (autograd-friendly)."""
    gx_r, gx_z, gx_n = x_proj_t.chunk(3, dim=1)
    gh_r, gh_z, gh_n = gh.chunk(3, dim=1)
    r = torch.sigmoid(gx_r + gh_r)
    z = torch.sigmoid(gx_z + gh_z)
    n = torch.tanh(gx_n + r * gh_n)
    h_new = (1 - z) * n + z * h
    return (h_new,), (torch.cat([r, z, n], dim=1), gh)


def gru_step_into(x_t: GateBlock, prev: Sequence[Tensor], hin: Tensor, w_hh_t: Tensor,
                  b_hh: Tensor | None, out: Sequence[Tensor], cache: Sequence[Tensor],
                  extra: Sequence[Tensor] = ()) -> None:
    """:func:`gru_step` writing into preallocated slots (the fused engine's step).

    Args:
        x_t: this step's input projections [n, 3H] holding ``b_ih`` only (``b_hh`` sits
            inside the reset product); overwritten with the activations (r, z, n),
            which are the first half of the cache.
        prev: ``[h_{t-1}]``, [n, H]; hin: what the recurrent product reads.
        w_hh_t: [H, 3H] (``W_hh`` transposed); b_hh: [3H] or None.
        out: ``[h_t]`` slot, [n, H].
        cache: ``[gh]`` slot, [n, 3H].
    """
    gh = cache[0]
    if b_hh is None:
        torch.mm(hin, w_hh_t, out=gh)
    else:
        torch.addmm(b_hh, hin, w_hh_t, out=gh)
    gru_gates_into(x_t, prev[0], gh, out[0])


def gru_gates_into(x_t: GateBlock, h: Tensor, gh: Tensor, h_out: Tensor) -> None:
    """Gates and new state from the input projections ``x_t`` (overwritten with r, z, n)
    and the hidden projections ``gh`` [n, 3H], into ``h_out``."""
    r, z, n = x_t.gates
    rz = x_t.split[:, :2]
    rz.add_(gh.view_as(x_t.split)[:, :2]).sigmoid_()
    n.addcmul_(r, gh[:, -h.shape[1]:]).tanh_()
    torch.addcmul(n, z, h - n, out=h_out)  # (1 - z) n + z h


def gru_local_derivatives(cache: Sequence[Tensor], states: Sequence[Tensor],
                          extra: Sequence[Tensor] = ()) -> tuple[Tensor, Tensor, Tensor]:
    """The factors of the backward equations, for all steps at once.

    Args:
        cache: ``(acts [T, B, 3H], gh [T, B, 3H])`` from the forward.
        states: ``(h [T+1, B, H],)``; index 0 is the initial state.

    Returns:
        ``P`` [T, B, 3, H] with dgx = dh_t P, ``Q`` [T, B, 3, H] with dgh = dh_t Q,
        and ``z`` [T, B, H], the direct path dh_t -> dh_{t-1}.
    """
    acts, gh = cache[:2]
    h_prev = states[0][:-1]
    T, B, H = h_prev.shape
    r, z, n = acts[..., :H], acts[..., H: 2 * H], acts[..., 2 * H:]
    P = torch.empty_like(acts)
    p_n = P[..., 2 * H:]
    torch.mul(1 - z, 1 - n * n, out=p_n)
    torch.mul((h_prev - n) * z, 1 - z, out=P[..., H: 2 * H])
    torch.mul(p_n * gh[..., 2 * H:], r * (1 - r), out=P[..., :H])
    Q = P.clone()
    Q[..., 2 * H:].mul_(r)
    return P.view(T, B, 3, H), Q.view(T, B, 3, H), z


def gru_backward_step(drec: Sequence[Tensor], derivs_t: Sequence[Tensor], w_hh: Tensor,
                      dgx: GateBlock, dgh: GateBlock, dr: Tensor, dy_prev: Tensor | None = None,
                      mask: Tensor | None = None, sums: Sequence[Tensor] = (),
                      extra: Sequence[Tensor] = ()) -> None:
    """One step of GRU BPTT, in place.

    Args:
        drec: ``[dh]`` [n, H]: on entry the total gradient w.r.t. ``h_t``, on exit
            the gradient w.r.t. ``h_{t-1}`` through this step.
        derivs_t: ``[P, Q, z]`` of step t, see :func:`gru_local_derivatives`.
        w_hh: [3H, H].
        dgx: receives d(gx) [n, 3H]; dgh: receives d(gh) [n, 3H] (dr: the same).
        dy_prev: [n, H] gradient of the output at step t-1, added to ``dh_{t-1}``, or None.
        mask: [n, H] recurrent-dropout mask, or None.
    """
    (dh,) = drec
    gru_gate_grads(dh, derivs_t, dgx, dgh, dy_prev)
    recurrent_grad(dh, dgh.flat, w_hh, dh, mask)  # dh_{t-1} = dy_{t-1} + dh_t z + dgh @ W_hh


def gru_gate_grads(dh: Tensor, derivs_t: Sequence[Tensor], dgx: GateBlock, dgh: GateBlock,
                   dy_prev: Tensor | None) -> None:
    """dgx = dh P, dgh = dh Q; then dh becomes dy_{t-1} + dh_t z (the direct path)."""
    P, Q, z = derivs_t[:3]
    d = dh.unsqueeze(1)  # [n, 1, H], broadcast over the three gate blocks
    torch.mul(P, d, out=dgx.split)
    torch.mul(Q, d, out=dgh.split)
    if dy_prev is None:
        dh.mul_(z)
    else:
        torch.addcmul(dy_prev, dh, z, out=dh)


GRU = CellSpec(name="gru", gates=3, num_states=1, step=gru_step, aliases=("GRU",), keep_gate=1,
               fold_hidden_bias=False,
               separate_hidden_grads=True, cache_widths=(3,), step_into=gru_step_into,
               local_derivatives=gru_local_derivatives, backward_step=gru_backward_step)
