"""The convolutional LSTM (Shi et al. 2015): an LSTM whose products are convolutions, so
its states are feature maps. Forward equations and the hand-derived backward through time.

Per time step, for frames x_t [B, C, *S] (S: one or two spatial sizes) and states
h, c [B, F, *S], with ``*`` a convolution with "same" padding (odd kernels):

    gates = W_x * x_t + b_x + W_h * h_{t-1} + b_h        # [B, 4F, *S], blocks i, f, g, o
    i, f, o = sigmoid(.), g = tanh(.)
    c_t = f c_{t-1} + i g
    h_t = o tanh(c_t)

(Shi et al. also have peephole terms W_c o c; like Keras's ConvLSTM2D and Flax's
ConvLSTMCell, this cell has none.) With per-sequence lengths, a step past a sequence's
end keeps its state: h_t = m h_t + (1 - m) h_{t-1}, m = 1 while t < length.

Backward of one step, given dh_t and dc_t flowing back (with the mask applied):

    dc   = dc_t + dh_t o (1 - tanh(c_t)^2)
    do   = dh_t tanh(c_t);  di = dc g;  dg = dc i;  df = dc c_{t-1}
    dA   = [di i(1-i), df f(1-f), dg (1-g^2), do o(1-o)]   # pre-activation gates
    dh_{t-1} = W_h^T * dA   (the convolution's input gradient)
    dc_{t-1} = dc f

The input convolution runs once over all steps before the loop, and the weight
gradients are one convolution-weight gradient each after it; only the recurrent
convolution is inside the loop. The vector-Jacobian products of the convolution come from
``torch.nn.grad`` (as layer norm's come from torch in the layer-norm cells).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable
from torch.nn import grad as conv_grad

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_INPUT_GRAD = {1: conv_grad.conv1d_input, 2: conv_grad.conv2d_input, 3: conv_grad.conv3d_input}
_WEIGHT_GRAD = {1: conv_grad.conv1d_weight, 2: conv_grad.conv2d_weight,
                3: conv_grad.conv3d_weight}


def _padding(w: Tensor) -> tuple[int, ...]:
    return tuple(k // 2 for k in w.shape[2:])


def conv(x: Tensor, w: Tensor, b: Tensor | None = None) -> Tensor:
    """A "same" convolution of x [N, C, *S] with w [O, C, *k] (odd k)."""
    return _CONV[w.dim() - 2](x, w, b, padding=_padding(w))


def convlstm_step(gx_t: Tensor, h: Tensor, c: Tensor, w_hh: Tensor,
                  b_hh: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    """One step from the input's gate contribution gx_t [B, 4F, *S] (W_x * x_t + b_x).
    Returns h_t, c_t and the cache: the activated gates with tanh(c_t), [B, 5F, *S]."""
    gates = gx_t + conv(h, w_hh, b_hh)
    i, f, g, o = gates.chunk(4, dim=1)
    i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
    c_new = f * c + i * g
    tanh_c = torch.tanh(c_new)
    return o * tanh_c, c_new, torch.cat([i, f, g, o, tanh_c], dim=1)


def convlstm_backward_step(dh: Tensor, dc: Tensor, cache: Tensor, c_prev: Tensor,
                           w_hh: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(dA [B, 4F, *S], dh_{t-1}, dc_{t-1}) from dh_t and dc_t (see the module docstring)."""
    i, f, g, o, tanh_c = cache.chunk(5, dim=1)
    dc = dc + dh * o * (1 - tanh_c * tanh_c)
    d_a = torch.cat([dc * g * i * (1 - i), dc * c_prev * f * (1 - f), dc * i * (1 - g * g),
                     dh * tanh_c * o * (1 - o)], dim=1)
    dh_prev = _INPUT_GRAD[w_hh.dim() - 2](list(dh.shape), w_hh, d_a, padding=_padding(w_hh))
    return d_a, dh_prev, dc * f


def _step_masks(lengths: Tensor | None, steps: int, like: Tensor) -> list[Tensor | None]:
    """Per step a [B, 1, ..] mask (1 while t < length), or None where every sequence runs."""
    if lengths is None:
        return [None] * steps
    shape = (-1,) + (1,) * (like.dim() - 1)
    out = []
    for t in range(steps):
        running = (lengths > t)
        out.append(None if bool(running.all()) else running.to(like.dtype).view(shape))
    return out


def masked_update(h_new: Tensor, c_new: Tensor, h: Tensor, c: Tensor,
                  m: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    """(output, h_t, c_t) of a step: past a sequence's end (m = 0) the output is zero and
    the state is kept."""
    if m is None:
        return h_new, h_new, c_new
    return h_new * m, m * h_new + (1 - m) * h, m * c_new + (1 - m) * c


class ConvLSTMFunction(torch.autograd.Function):
    """A ConvLSTM layer over a sequence with the hand-derived BPTT (one direction).

    Args: x [T, B, C, *S]; h0, c0 [B, F, *S]; w_ih [4F, C, *k]; w_hh [4F, F, *k];
    b_ih, b_hh [4F] or None; lengths [B] (int64, CPU) or None.
    Returns outputs [T, B, F, *S] (zero past each sequence's end), h_n, c_n.
    """

    @staticmethod
    def forward(ctx, x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths):
        steps, batch = x.shape[:2]
        gx = conv(x.flatten(0, 1), w_ih, b_ih).unflatten(0, (steps, batch))
        masks = _step_masks(lengths, steps, h0)
        h, c = h0, c0
        hs, cs, caches, outputs = [h0], [c0], [], []
        for t in range(steps):
            h_new, c_new, cache = convlstm_step(gx[t], h, c, w_hh, b_hh)
            out, h, c = masked_update(h_new, c_new, h, c, masks[t])
            outputs.append(out)
            hs.append(h)
            cs.append(c)
            caches.append(cache)
        ctx.save_for_backward(x, torch.stack(hs), torch.stack(cs), torch.stack(caches), w_ih,
                              w_hh)
        ctx.masks = masks
        ctx.biases = (b_ih is not None, b_hh is not None)
        return torch.stack(outputs), h, c

    @staticmethod
    @once_differentiable  # the cache holds no graph: a second derivative is refused, not wrong
    def backward(ctx, d_out, d_hn, d_cn):
        x, hs, cs, caches, w_ih, w_hh = ctx.saved_tensors
        steps = x.shape[0]
        dh = torch.zeros_like(hs[0]) if d_hn is None else d_hn.clone()
        dc = torch.zeros_like(cs[0]) if d_cn is None else d_cn.clone()
        d_a = [None] * steps
        for t in reversed(range(steps)):
            m = ctx.masks[t]
            grad_h = dh if d_out is None else dh + d_out[t]  # on h_t before the mask
            if m is None:
                d_a[t], dh, dc = convlstm_backward_step(grad_h, dc, caches[t], cs[t], w_hh)
            else:  # past a sequence's end the state passed through unchanged
                d_a[t], dh_step, dc_step = convlstm_backward_step(grad_h * m, dc * m, caches[t],
                                                                  cs[t], w_hh)
                dh, dc = dh_step + (1 - m) * dh, dc_step + (1 - m) * dc
        d_a = torch.stack(d_a)  # [T, B, 4F, *S]
        flat = d_a.flatten(0, 1)
        dim = w_hh.dim() - 2
        dx = _INPUT_GRAD[dim](list(x.flatten(0, 1).shape), w_ih, flat,
                              padding=_padding(w_ih)).unflatten(0, x.shape[:2])
        dw_ih = _WEIGHT_GRAD[dim](x.flatten(0, 1), list(w_ih.shape), flat, padding=_padding(w_ih))
        dw_hh = _WEIGHT_GRAD[dim](hs[:-1].flatten(0, 1), list(w_hh.shape), flat,
                                  padding=_padding(w_hh))
        reduce = [0] + list(range(2, flat.dim()))
        db = flat.sum(reduce)
        return (dx, dh, dc, dw_ih, dw_hh, db if ctx.biases[0] else None,
                db if ctx.biases[1] else None, None)


def convlstm_reference(x: Tensor, h0: Tensor, c0: Tensor, w_ih: Tensor, w_hh: Tensor,
                       b_ih: Tensor | None, b_hh: Tensor | None,
                       lengths: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """The same layer as a loop of :func:`convlstm_step` under autograd: the oracle."""
    steps = x.shape[0]
    masks = _step_masks(lengths, steps, h0)
    h, c, outputs = h0, c0, []
    for t in range(steps):
        h_new, c_new, _ = convlstm_step(conv(x[t], w_ih, b_ih), h, c, w_hh, b_hh)
        out, h, c = masked_update(h_new, c_new, h, c, masks[t])
        outputs.append(out)
    return torch.stack(outputs), h, c
