"""The convolutional GRU (Ballas et al. 2016): a GRU whose products are convolutions.
Forward equations and the hand-derived backward through time.

Per time step, for frames x_t [B, C, *S] and the state h [B, F, *S], with ``*`` a "same"
convolution, gates in torch.nn.GRU's order r, z, n:

    a = W_x * x_t + b_x          # [B, 3F, *S]: a_r, a_z, a_n
    u = W_h * h_{t-1} + b_h      # [B, 3F, *S]: u_r, u_z, u_n
    r = sigmoid(a_r + u_r), z = sigmoid(a_z + u_z)
    n = tanh(a_n + r u_n)
    h_t = (1 - z) n + z h_{t-1}

With a 1x1 kernel on 1x1 frames this is torch.nn.GRU's cell. Past a sequence's end the
state is kept (h_t = m h_t + (1 - m) h_{t-1}, m = 1 while t < length).

Backward of one step, given dh flowing back into h_t:

    dn = dh (1 - z);  dz = dh (h_{t-1} - n)
    dA_n = dn (1 - n^2)                       # pre-activation of n
    dA_r = dA_n u_n r (1 - r);  dA_z = dz z (1 - z)
    da = [dA_r, dA_z, dA_n]                   # into the input's convolution
    du = [dA_r, dA_z, dA_n r]                 # into the recurrent convolution
    dh_{t-1} = dh z + W_h^T * du

The input convolution runs once over all steps before the loop, its gradients once
after it; the convolutions' vector-Jacobian products come from ``torch.nn.grad``.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from rnnkit.functional.convlstm import _INPUT_GRAD, _WEIGHT_GRAD, _padding, _step_masks, conv


def convgru_step(gx_t: Tensor, h: Tensor, w_hh: Tensor,
                 b_hh: Tensor | None) -> tuple[Tensor, Tensor]:
    """One step from the input's gate contribution gx_t [B, 3F, *S] (W_x * x_t + b_x).
    Returns h_t and the cache r, z, n, u_n [B, 4F, *S]."""
    a_r, a_z, a_n = gx_t.chunk(3, dim=1)
    u_r, u_z, u_n = conv(h, w_hh, b_hh).chunk(3, dim=1)
    r, z = torch.sigmoid(a_r + u_r), torch.sigmoid(a_z + u_z)
    n = torch.tanh(a_n + r * u_n)
    return (1 - z) * n + z * h, torch.cat([r, z, n, u_n], dim=1)


def convgru_backward_step(dh: Tensor, cache: Tensor, h_prev: Tensor,
                          w_hh: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(da [B, 3F, *S], du [B, 3F, *S], dh_{t-1}) from dh_t (see the module docstring)."""
    r, z, n, u_n = cache.chunk(4, dim=1)
    d_an = dh * (1 - z) * (1 - n * n)
    d_ar = d_an * u_n * r * (1 - r)
    d_az = dh * (h_prev - n) * z * (1 - z)
    d_a = torch.cat([d_ar, d_az, d_an], dim=1)
    d_u = torch.cat([d_ar, d_az, d_an * r], dim=1)
    dh_prev = dh * z + _INPUT_GRAD[w_hh.dim() - 2](list(dh.shape), w_hh, d_u,
                                                    padding=_padding(w_hh))
    return d_a, d_u, dh_prev


class ConvGRUFunction(torch.autograd.Function):
    """A ConvGRU layer over a sequence with the hand-derived BPTT (one direction).

    Args: x [T, B, C, *S]; h0 [B, F, *S]; w_ih [3F, C, *k]; w_hh [3F, F, *k]; b_ih, b_hh
    [3F] or None; lengths [B] (int64, CPU) or None.
    Returns outputs [T, B, F, *S] (zero past each sequence's end) and h_n.
    """

    @staticmethod
    def forward(ctx, x, h0, w_ih, w_hh, b_ih, b_hh, lengths):
        steps, batch = x.shape[:2]
        gx = conv(x.flatten(0, 1), w_ih, b_ih).unflatten(0, (steps, batch))
        masks = _step_masks(lengths, steps, h0)
        h, hs, caches, outputs = h0, [h0], [], []
        for t in range(steps):
            h_new, cache = convgru_step(gx[t], h, w_hh, b_hh)
            m = masks[t]
            if m is None:
                outputs.append(h_new)
                h = h_new
            else:
                outputs.append(h_new * m)
                h = m * h_new + (1 - m) * h
            hs.append(h)
            caches.append(cache)
        ctx.save_for_backward(x, torch.stack(hs), torch.stack(caches), w_ih, w_hh)
        ctx.masks = masks
        ctx.biases = (b_ih is not None, b_hh is not None)
        return torch.stack(outputs), h

    @staticmethod
    @once_differentiable  # the cache holds no graph: a second derivative is refused, not wrong
    def backward(ctx, d_out, d_hn):
        x, hs, caches, w_ih, w_hh = ctx.saved_tensors
        steps = x.shape[0]
        dh = torch.zeros_like(hs[0]) if d_hn is None else d_hn.clone()
        d_a, d_u = [None] * steps, [None] * steps
        for t in reversed(range(steps)):
            m = ctx.masks[t]
            grad_h = dh if d_out is None else dh + d_out[t]
            if m is None:
                d_a[t], d_u[t], dh = convgru_backward_step(grad_h, caches[t], hs[t], w_hh)
            else:  # past a sequence's end the state passed through unchanged
                d_a[t], d_u[t], dh_step = convgru_backward_step(grad_h * m, caches[t], hs[t],
                                                                w_hh)
                dh = dh_step + (1 - m) * dh
        flat_a, flat_u = torch.stack(d_a).flatten(0, 1), torch.stack(d_u).flatten(0, 1)
        dim = w_hh.dim() - 2
        inputs = x.flatten(0, 1)
        dx = _INPUT_GRAD[dim](list(inputs.shape), w_ih, flat_a,
                              padding=_padding(w_ih)).unflatten(0, x.shape[:2])
        dw_ih = _WEIGHT_GRAD[dim](inputs, list(w_ih.shape), flat_a, padding=_padding(w_ih))
        dw_hh = _WEIGHT_GRAD[dim](hs[:-1].flatten(0, 1), list(w_hh.shape), flat_u,
                                  padding=_padding(w_hh))
        reduce = [0] + list(range(2, flat_a.dim()))
        return (dx, dh, dw_ih, dw_hh, flat_a.sum(reduce) if ctx.biases[0] else None,
                flat_u.sum(reduce) if ctx.biases[1] else None, None)


def convgru_reference(x: Tensor, h0: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None,
                      b_hh: Tensor | None, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """The same layer as a loop of :func:`convgru_step` under autograd: the oracle."""
    masks = _step_masks(lengths, x.shape[0], h0)
    h, outputs = h0, []
    for t in range(x.shape[0]):
        h_new, _ = convgru_step(conv(x[t], w_ih, b_ih), h, w_hh, b_hh)
        m = masks[t]
        outputs.append(h_new if m is None else h_new * m)
        h = h_new if m is None else m * h_new + (1 - m) * h
    return torch.stack(outputs), h
