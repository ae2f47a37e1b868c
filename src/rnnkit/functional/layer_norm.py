"""Layer-normalised LSTM and GRU (Ba, Kiros & Hinton 2016), as haste defines them.

Layer norm over the last dimension, ``LN(v; w, b) = (v - mean(v)) / sqrt(var(v) + eps) * w + b``
(biased variance, eps = 1e-5 as torch.nn.LayerNorm), is applied to the input and the
recurrent pre-activations *separately*, each with its own gain, before the biases are
added; the LSTM also normalises its cell state before the output tanh (the carried
state ``c_t`` itself stays unnormalised).

Layer-norm LSTM, gates i, f, g, o as torch.nn.LSTM::

    a_t = LN(W_ih x_t; w_x) + b_ih + LN(W_hh h_{t-1}; w_h) + b_hh        # [B, 4H]
    i, f, o = sigmoid(a_i, a_f, a_o);  g = tanh(a_g)
    c_t = f * c_{t-1} + i * g
    h_t = o * tanh(LN(c_t; w_c, b_c))

Layer-norm GRU, gates r, z, n as torch.nn.GRU::

    gx = LN(W_ih x_t; w_x) + b_ih        gh = LN(W_hh h_{t-1}; w_h) + b_hh    # [B, 3H]
    r = sigmoid(gx_r + gh_r)   z = sigmoid(gx_z + gh_z)   n = tanh(gx_n + r * gh_n)
    h_t = (1 - z) * n + z * h_{t-1}

Backward. Layer norm's own derivative: for ``y = x_hat * w + b`` with ``x_hat = (x - mean) * rstd``
and ``u = dy * w``::

    dx = rstd * (u - mean(u) - x_hat * mean(u * x_hat)),   dw = sum dy * x_hat,   db = sum dy

(:func:`rnnkit.functional.sequence.layer_norm_backward`, ATen's kernel for this formula,
which also gives the step's share of ``dw`` and ``db``). With it, one LSTM step back is the plain LSTM's,
with two layer norms on the way:

    dc^_t     = dh_t * o * (1 - tanh(c^_t)^2)              # c^_t = LN(c_t; w_c, b_c)
    dc_t      = dc' + LN_backward(dc^_t)                    # dc' carried from step t+1
    da        = (dc_t g i(1-i), dc_t c_{t-1} f(1-f), dc_t i (1-g^2), dh_t tanh(c^_t) o(1-o))
    dr        = LN_backward(da)                             # r = W_hh h_{t-1}
    dh_{t-1}  = dr @ W_hh;   dc_{t-1}' = dc_t * f

and the GRU's is the plain GRU's with ``dr = LN_backward(dgh)`` in place of ``dgh`` in the
recurrent product. The gains' and biases' gradients are taken step by step as the loop
goes (while each step's numbers are still in cache) and summed after it; the input
norm's after the loop, at once for all steps.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from rnnkit.functional.gru import gru_gate_grads, gru_gates_into, gru_local_derivatives, gru_update
from rnnkit.functional.lstm import gate_factors, lstm_activate
from rnnkit.functional.sequence import (
    LAYER_NORM_EPS,
    CellSpec,
    ExtraParam,
    GateBlock,
    recurrent_grad,
)

# ATen's layer-norm backward, called below Python's operator wrapper (torch exposes no
# function binding for it, and the wrapper costs more than the kernel at small sizes).
_LN_BACKWARD = torch.ops.aten.native_layer_norm_backward.default._op


def _ln_backward(g: Tensor, x: Tensor, mean: Tensor, rstd: Tensor, weight: Tensor,
                 bias: Tensor | None, sums: Sequence[Tensor]) -> Tensor:
    """dx of ``LN(x) * weight (+ bias)`` for one step (:func:`layer_norm_backward`); the
    step's dweight (and dbias, with a bias) are added into ``sums``."""
    dx, dw, db = _LN_BACKWARD(g, x, [x.shape[1]], mean, rstd, weight, bias,
                              [True, True, bias is not None])
    sums[0].add_(dw)
    if bias is not None:
        sums[1].add_(db)
    return dx


def _sums(sums: Sequence[Tensor]) -> tuple[Tensor, ...]:
    """The extra parameters' gradients: the accumulators, summed over the steps."""
    return tuple(sums)


# --- Layer-norm LSTM ------------------------------------------------------------------

def ln_lstm_step(x_proj_t: Tensor, state: tuple[Tensor, Tensor], w_hh: Tensor,
                 b_hh: Tensor | None, extra: Sequence[Tensor] = (), h_in: Tensor | None = None
                 ) -> tuple[tuple[Tensor, Tensor], tuple[()]]:
    """One layer-norm LSTM step, as the equations read (autograd-friendly).

    Args:
        x_proj_t: [B, 4H] ``LN(W_ih x_t; w_x) + b_ih``.
        state: ``(h_{t-1}, c_{t-1})``; w_hh: [4H, H]; b_hh: [4H] or None.
        extra: ``(w_x, w_h, w_c, b_c)``, the layer norms' gains [4H], [4H], [H] and bias [H].
        h_in: what the recurrent product reads instead of ``h_{t-1}``, or None.
    """
    h, c = state
    _, w_h, w_c, b_c = extra
    r = F.linear(h if h_in is None else h_in, w_hh)
    gates = x_proj_t + F.layer_norm(r, (r.shape[1],), w_h, b_hh, LAYER_NORM_EPS)
    gi, gf, gg, go = gates.chunk(4, dim=1)
    i, f, g, o = torch.sigmoid(gi), torch.sigmoid(gf), torch.tanh(gg), torch.sigmoid(go)
    c_new = f * c + i * g
    h_new = o * torch.tanh(F.layer_norm(c_new, (c_new.shape[1],), w_c, b_c, LAYER_NORM_EPS))
    return (h_new, c_new), ()


def ln_lstm_prepare(x_proj: Tensor, w_hh_t: Tensor, extra: Sequence[Tensor]) -> tuple[Tensor, ...]:
    """Double the g block of the input projections and of the recurrent gain (a copy):
    the step's single sigmoid then yields tanh for g (see :mod:`rnnkit.functional.lstm`).
    ``W_hh`` is not scaled: the layer norm would undo it."""
    H = w_hh_t.shape[0]
    w_x, w_h, w_c, b_c = extra
    x_proj[..., 2 * H: 3 * H].mul_(2)
    w_h2 = w_h.clone()
    w_h2[2 * H: 3 * H].mul_(2)
    return (w_x, w_h2, w_c, b_c)


def ln_lstm_step_into(x_t: GateBlock, prev: Sequence[Tensor], hin: Tensor, w_hh_t: Tensor,
                      b_hh: Tensor | None, out: Sequence[Tensor], cache: Sequence[Tensor],
                      extra: Sequence[Tensor]) -> None:
    """:func:`ln_lstm_step` into preallocated slots.

    Cache slots: ``tanh(c^_t)`` [n, H], ``r = W_hh h_{t-1}`` [n, 4H], ``c_t`` [n, H], then
    mean and 1/std [n, 1] of ``r`` and of ``c_t``. ``x_t`` holds both biases (g doubled) and is overwritten with (i, f, g, o).
    """
    c = prev[1]
    h_out, c_out = out
    tanh_c, r, c_raw, mean_r, rstd_r, mean_c, rstd_c = cache
    _, w_h2, w_c, b_c = extra
    torch.mm(hin, w_hh_t, out=r)
    normed, mean, rstd = torch.native_layer_norm(r, [r.shape[1]], w_h2, None, LAYER_NORM_EPS)
    mean_r.copy_(mean)
    rstd_r.copy_(rstd)
    x_t.flat.add_(normed)
    lstm_activate(x_t)
    i, f, g, o = x_t.gates
    torch.mul(f, c, out=c_raw)
    c_raw.addcmul_(i, g)  # c_t = f c_{t-1} + i g
    normed, mean, rstd = torch.native_layer_norm(c_raw, [c_raw.shape[1]], w_c, b_c, LAYER_NORM_EPS)
    mean_c.copy_(mean)
    rstd_c.copy_(rstd)
    torch.tanh(normed, out=tanh_c)
    torch.mul(o, tanh_c, out=h_out)  # h_t = o tanh(LN(c_t))
    c_out.copy_(c_raw)


def ln_lstm_local_derivatives(cache: Sequence[Tensor], states: Sequence[Tensor],
                              extra: Sequence[Tensor] = ()) -> tuple[Tensor, ...]:
    """``A = o (1 - tanh(c^_t)^2)``, ``P_i, P_f, P_g, P_o`` and ``f`` as the plain LSTM's
    (with tanh(c^_t) for tanh(c_t)), then the layer norms' inputs and statistics."""
    acts, tanh_c, r, c_raw, mean_r, rstd_r, mean_c, rstd_c = cache
    H = tanh_c.shape[-1]
    A, _, P_i, P_f, P_g, P_o = gate_factors(acts, tanh_c, states[1][:-1])
    return (A, P_i, P_f, P_g, P_o, acts[..., H: 2 * H], c_raw, mean_c, rstd_c, r, mean_r, rstd_r)


def ln_lstm_backward_step(drec: Sequence[Tensor], derivs_t: Sequence[Tensor], w_hh: Tensor,
                          dgx: GateBlock, dgh: GateBlock, dr: Tensor,
                          dy_prev: Tensor | None = None, mask: Tensor | None = None,
                          sums: Sequence[Tensor] = (), extra: Sequence[Tensor] = ()) -> None:
    """One step of layer-norm LSTM BPTT, in place (equations in the module docstring).

    ``dgx`` receives the gate pre-activations' gradient; ``dr`` [n, 4H] the one of
    ``W_hh h_{t-1}``; ``sums`` = the sums of dw_h [4H], dw_c [H], db_c [H] over the steps.
    """
    dh, dc = drec
    A, P_i, P_f, P_g, P_o, f, c_raw, mean_c, rstd_c, r, mean_r, rstd_r = derivs_t
    _, w_h, w_c, b_c = extra
    d_i, d_f, d_g, d_o = dgx.gates
    dc_hat = dh * A  # dL/dc^_t
    dc.add_(_ln_backward(dc_hat, c_raw, mean_c, rstd_c, w_c, b_c, sums[1:3]))
    torch.mul(dc, P_i, out=d_i)
    torch.mul(dc, P_f, out=d_f)
    torch.mul(dc, P_g, out=d_g)
    torch.mul(dh, P_o, out=d_o)
    dc.mul_(f)  # carried to c_{t-1}
    d_r = _ln_backward(dgx.flat, r, mean_r, rstd_r, w_h, None, sums[0:1])
    dr.copy_(d_r)
    recurrent_grad(dh, d_r, w_hh, dy_prev, mask)  # dh_{t-1} = dy_{t-1} + dr @ W_hh


LN_LSTM = CellSpec(
    name="ln-lstm", gates=4, num_states=2, step=ln_lstm_step, forget_gate=1,
    keep_gate=1, write_gate=0,
    aliases=("ln_lstm",), fold_hidden_bias=True, separate_hidden_grads=False,
    cache_widths=(1, 4, 1), step_into=ln_lstm_step_into,
    local_derivatives=ln_lstm_local_derivatives, backward_step=ln_lstm_backward_step,
    prepare=ln_lstm_prepare,
    extra=(ExtraParam("ln_ih_weight", 4, 1.0), ExtraParam("ln_hh_weight", 4, 1.0),
           ExtraParam("ln_cell_weight", 1, 1.0), ExtraParam("ln_cell_bias", 1, 0.0)),
    input_norm=True, recurrent_norm=True, norm_stats=2, accumulators=(4, 1, 1),
    extra_grads=_sums)


# --- Layer-norm GRU -------------------------------------------------------------------

def ln_gru_step(x_proj_t: Tensor, state: tuple[Tensor], w_hh: Tensor, b_hh: Tensor | None,
                extra: Sequence[Tensor] = (), h_in: Tensor | None = None
                ) -> tuple[tuple[Tensor], tuple[Tensor, Tensor]]:
    """One layer-norm GRU step, as the equations read (autograd-friendly).

    Args:
        x_proj_t: [B, 3H] ``LN(W_ih x_t; w_x) + b_ih``.
        state: ``(h_{t-1},)``; w_hh: [3H, H]; b_hh: [3H] or None.
        extra: ``(w_x, w_h)``, the gains [3H] of the two layer norms.
        h_in: what the recurrent product reads instead of ``h_{t-1}``, or None.
    """
    (h,) = state
    r = F.linear(h if h_in is None else h_in, w_hh)
    gh = F.layer_norm(r, (r.shape[1],), extra[1], b_hh, LAYER_NORM_EPS)
    return gru_update(x_proj_t, h, gh)


def ln_gru_step_into(x_t: GateBlock, prev: Sequence[Tensor], hin: Tensor, w_hh_t: Tensor,
                     b_hh: Tensor | None, out: Sequence[Tensor], cache: Sequence[Tensor],
                     extra: Sequence[Tensor]) -> None:
    """:func:`ln_gru_step` into preallocated slots. Cache slots: ``gh`` [n, 3H] (after the
    layer norm and ``b_hh``), ``r = W_hh h_{t-1}`` [n, 3H], mean and 1/std of ``r`` [n, 1]."""
    gh, r, mean_r, rstd_r = cache
    torch.mm(hin, w_hh_t, out=r)
    normed, mean, rstd = torch.native_layer_norm(r, [r.shape[1]], extra[1], b_hh, LAYER_NORM_EPS)
    gh.copy_(normed)
    mean_r.copy_(mean)
    rstd_r.copy_(rstd)
    gru_gates_into(x_t, prev[0], gh, out[0])


def ln_gru_local_derivatives(cache: Sequence[Tensor], states: Sequence[Tensor],
                             extra: Sequence[Tensor] = ()) -> tuple[Tensor, ...]:
    """The plain GRU's ``P, Q, z``, then ``r`` and its mean and 1/std."""
    return (*gru_local_derivatives(cache[:2], states), *cache[2:])


def ln_gru_backward_step(drec: Sequence[Tensor], derivs_t: Sequence[Tensor], w_hh: Tensor,
                         dgx: GateBlock, dgh: GateBlock, dr: Tensor, dy_prev: Tensor | None = None,
                         mask: Tensor | None = None, sums: Sequence[Tensor] = (),
                         extra: Sequence[Tensor] = ()) -> None:
    """One step of layer-norm GRU BPTT, in place: the plain GRU's step, with the recurrent
    product fed ``dr = LN_backward(dgh)`` (also kept in ``dr`` for ``dW_hh``)."""
    (dh,) = drec
    r, mean_r, rstd_r = derivs_t[3:]
    gru_gate_grads(dh, derivs_t, dgx, dgh, dy_prev)
    d_r = _ln_backward(dgh.flat, r, mean_r, rstd_r, extra[1], None, sums)
    dr.copy_(d_r)
    recurrent_grad(dh, d_r, w_hh, dh, mask)


LN_GRU = CellSpec(
    name="ln-gru", gates=3, num_states=1, step=ln_gru_step, aliases=("ln_gru",), keep_gate=1,
    fold_hidden_bias=False, separate_hidden_grads=True,
    cache_widths=(3, 3), step_into=ln_gru_step_into, local_derivatives=ln_gru_local_derivatives,
    backward_step=ln_gru_backward_step,
    extra=(ExtraParam("ln_ih_weight", 3, 1.0), ExtraParam("ln_hh_weight", 3, 1.0)),
    input_norm=True, recurrent_norm=True, norm_stats=1, accumulators=(3,), extra_grads=_sums)
