"""Convolutional LSTM layers (Shi et al. 2015) for sequences of 1-D or 2-D frames:
``ConvLSTM`` over a whole sequence and ``ConvLSTMCell`` for one step. torch.nn has none;
Keras has ``ConvLSTM1D/2D/3D`` and Flax ``ConvLSTMCell``. The equations and the
hand-derived backward through time are in :mod:`rnnkit.functional.convlstm`.

Parameters follow torch.nn.LSTM's names with convolution kernels for matrices:
``weight_ih_l{k}`` [4F, C, *kernel], ``weight_hh_l{k}`` [4F, F, *kernel], ``bias_ih_l{k}``
and ``bias_hh_l{k}`` [4F] (``_reverse`` for the backward direction), gates in torch's
order i, f, g, o. With a 1x1 kernel on 1x1 frames the layer is exactly ``rnnkit.nn.LSTM``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from rnnkit.functional.convlstm import ConvLSTMFunction, conv, convlstm_reference, convlstm_step

BACKENDS = ("fused", "reference")  # hand-derived BPTT, or autograd through the step loop


def _kernel(kernel_size, spatial_dims: int) -> tuple[int, ...]:
    if spatial_dims not in (1, 2, 3):
        raise ValueError(f"spatial_dims: expected 1, 2 or 3, got {spatial_dims!r}")
    kernel = (kernel_size,) * spatial_dims if isinstance(kernel_size, int) else tuple(kernel_size)
    if len(kernel) != spatial_dims or not all(isinstance(k, int) and k >= 1 and k % 2 == 1
                                              for k in kernel):
        raise ValueError(f"kernel_size: expected an odd positive int or {spatial_dims} of them "
                         f"(the state keeps the frame's size, which needs 'same' padding), "
                         f"got {kernel_size!r}")
    return kernel


def _init(module: nn.Module, hidden: int, kernel: tuple[int, ...]) -> None:
    """torch.nn.LSTM's uniform(-1/sqrt(fan), 1/sqrt(fan)), with the kernel in the fan."""
    bound = 1.0 / math.sqrt(hidden * math.prod(kernel))
    for p in module.parameters():
        nn.init.uniform_(p, -bound, bound)


class ConvLSTMCell(nn.Module):
    """One ConvLSTM step: ``h, c = cell(x_t, (h, c))`` for frames x_t [B, C, *S]."""

    def __init__(self, in_channels: int, hidden_channels: int, kernel_size, bias: bool = True,
                 spatial_dims: int = 2) -> None:
        super().__init__()
        kernel = _kernel(kernel_size, spatial_dims)
        for name, value in (("in_channels", in_channels), ("hidden_channels", hidden_channels)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive int, got {value!r}")
        self.in_channels, self.hidden_channels = in_channels, hidden_channels
        self.kernel_size, self.spatial_dims = kernel, spatial_dims
        self.weight_ih = nn.Parameter(torch.empty(4 * hidden_channels, in_channels, *kernel))
        self.weight_hh = nn.Parameter(torch.empty(4 * hidden_channels, hidden_channels, *kernel))
        self.bias_ih = nn.Parameter(torch.empty(4 * hidden_channels)) if bias else None
        self.bias_hh = nn.Parameter(torch.empty(4 * hidden_channels)) if bias else None
        _init(self, hidden_channels, kernel)

    def forward(self, input: Tensor, hx: tuple[Tensor, Tensor] | None = None
                ) -> tuple[Tensor, Tensor]:
        _check_frames(input, self.in_channels, self.spatial_dims, 2 + self.spatial_dims,
                      "[B, C, *S]")
        if hx is None:
            zeros = input.new_zeros(input.shape[0], self.hidden_channels, *input.shape[2:])
            hx = (zeros, zeros)
        h, c, _ = convlstm_step(conv(input, self.weight_ih, self.bias_ih), hx[0], hx[1],
                                self.weight_hh, self.bias_hh)
        return h, c


def _check_frames(x: Tensor, channels: int, spatial: int, rank: int, layout: str) -> None:
    if not isinstance(x, Tensor) or x.dim() != rank:
        got = f"shape {tuple(x.shape)}" if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"input: expected a {rank}-D tensor {layout} ({spatial} spatial "
                         f"dimension(s)), got {got}")
    at = rank - spatial - 1
    if x.shape[at] != channels:
        raise ValueError(f"input: expected {channels} channels in dimension {at}, got "
                         f"{x.shape[at]}")


def reverse_padded(x: Tensor, lengths: Tensor | None) -> Tensor:
    """x [T, B, ...] with each sequence's first ``lengths[b]`` steps reversed (padding stays)."""
    if lengths is None:
        return x.flip(0)
    steps = x.shape[0]
    t = torch.arange(steps).unsqueeze(1)  # [T, 1]
    n = lengths.view(1, -1)
    index = torch.where(t < n, n - 1 - t, t).to(x.device)  # [T, B]
    index = index.view(steps, -1, *([1] * (x.dim() - 2))).expand_as(x)
    return x.gather(0, index)


class ConvLSTM(nn.Module):
    """A stack of ConvLSTM layers over sequences of frames.

    Args:
        in_channels, hidden_channels: channels of the frames and of each state (F).
        kernel_size: odd, an int or one per spatial dimension ("same" padding).
        num_layers, bias, batch_first, dropout, bidirectional: as torch.nn.LSTM.
        spatial_dims: 1 for [.., C, W] frames, 2 for [.., C, H, W] (default), 3 for volumes.
        backend: ``fused`` (the hand-derived BPTT, default) or ``reference`` (autograd
            through the step loop).

    ``forward(input, hx=None, lengths=None)``: input [T, B, C, *S] ([B, T, ...] with
    ``batch_first``); hx ``(h_0, c_0)``, each [num_layers * directions, B, F, *S]; lengths
    [B] for padded batches (each sequence's state stops at its end, outputs past it are
    zero, the reverse direction starts at its last frame). Returns output [T, B,
    directions * F, *S] and ``(h_n, c_n)``.
    """

    def __init__(self, in_channels: int, hidden_channels: int, kernel_size, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, spatial_dims: int = 2,
                 backend: str = "fused") -> None:
        super().__init__()
        kernel = _kernel(kernel_size, spatial_dims)
        for name, value in (("in_channels", in_channels), ("hidden_channels", hidden_channels),
                            ("num_layers", num_layers)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}: expected a positive int, got {value!r}")
        if not 0.0 <= float(dropout) <= 1.0:
            raise ValueError(f"dropout: expected a probability in [0, 1], got {dropout!r}")
        if backend not in BACKENDS:
            raise ValueError(f"backend: expected one of {', '.join(BACKENDS)}, got {backend!r}")
        self.in_channels, self.hidden_channels = in_channels, hidden_channels
        self.kernel_size, self.spatial_dims, self.num_layers = kernel, spatial_dims, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, float(dropout)
        self.bidirectional, self.backend = bidirectional, backend
        directions = 2 if bidirectional else 1
        for layer in range(num_layers):
            channels = in_channels if layer == 0 else hidden_channels * directions
            for suffix in ("", "_reverse")[:directions]:
                self.register_parameter(f"weight_ih_l{layer}{suffix}", nn.Parameter(
                    torch.empty(4 * hidden_channels, channels, *kernel)))
                self.register_parameter(f"weight_hh_l{layer}{suffix}", nn.Parameter(
                    torch.empty(4 * hidden_channels, hidden_channels, *kernel)))
                if bias:
                    for kind in ("ih", "hh"):
                        self.register_parameter(f"bias_{kind}_l{layer}{suffix}", nn.Parameter(
                            torch.empty(4 * hidden_channels)))
        _init(self, hidden_channels, kernel)

    def _weights(self, layer: int, suffix: str) -> tuple:
        return tuple(getattr(self, f"{name}_l{layer}{suffix}", None)
                     for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))

    def forward(self, input: Tensor, hx: tuple[Tensor, Tensor] | None = None,
                lengths: Tensor | None = None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        layout = "[B, T, C, *S]" if self.batch_first else "[T, B, C, *S]"
        _check_frames(input, self.in_channels, self.spatial_dims, 3 + self.spatial_dims, layout)
        x = input.transpose(0, 1) if self.batch_first else input
        steps, batch, spatial = x.shape[0], x.shape[1], x.shape[3:]
        if steps == 0:
            raise ValueError("input: expected at least one time step, got a sequence of "
                             "length 0 (torch.nn.LSTM refuses it too)")
        directions = 2 if self.bidirectional else 1
        state_shape = (self.num_layers * directions, batch, self.hidden_channels, *spatial)
        if lengths is not None:
            lengths = torch.as_tensor(lengths).to("cpu", torch.int64)
            if lengths.shape != (batch,) or bool((lengths < 1).any()) or bool(
                    (lengths > steps).any()):
                raise ValueError(f"lengths: expected {batch} values in 1..{steps}, got "
                                 f"{lengths.tolist()}")
        if hx is None:
            zeros = x.new_zeros(state_shape)
            hx = (zeros, zeros)
        elif (not isinstance(hx, (tuple, list)) or len(hx) != 2
              or any(tuple(s.shape) != state_shape for s in hx)):
            got = [tuple(s.shape) for s in hx] if isinstance(hx, (tuple, list)) else hx
            raise ValueError(f"hx: expected (h_0, c_0), each of shape {state_shape}, got {got}")
        run = ConvLSTMFunction.apply if self.backend == "fused" else convlstm_reference
        h_n, c_n = [], []
        for layer in range(self.num_layers):
            outputs = []
            for d, suffix in enumerate(("", "_reverse")[:directions]):
                k = layer * directions + d
                seq = x if d == 0 else reverse_padded(x, lengths)
                out, h, c = run(seq, hx[0][k], hx[1][k], *self._weights(layer, suffix), lengths)
                outputs.append(out if d == 0 else reverse_padded(out, lengths))
                h_n.append(h)
                c_n.append(c)
            x = torch.cat(outputs, dim=2) if directions == 2 else outputs[0]
            if self.dropout and self.training and layer < self.num_layers - 1:
                x = nn.functional.dropout(x, self.dropout)
        output = x.transpose(0, 1) if self.batch_first else x
        return output, (torch.stack(h_n), torch.stack(c_n))
