"""Convolutional recurrent layers for sequences of 1-D, 2-D or 3-D frames: the ConvLSTM
(Shi et al. 2015) and the ConvGRU (Ballas et al. 2016), ``ConvLSTM``/``ConvGRU`` over a
whole sequence and ``ConvLSTMCell``/``ConvGRUCell`` for one step. torch.nn has none;
Keras has ``ConvLSTM1D/2D/3D`` and Flax ``ConvLSTMCell``. The equations and the
hand-derived backward through time are in :mod:`rnnkit.functional.convlstm` and
:mod:`rnnkit.functional.convgru`.

Parameters follow torch.nn.LSTM's and GRU's names with convolution kernels for matrices:
``weight_ih_l{k}`` [G F, C, *kernel], ``weight_hh_l{k}`` [G F, F, *kernel], ``bias_ih_l{k}``
and ``bias_hh_l{k}`` [G F] (``_reverse`` for the backward direction), with G = 4 gates in
torch's order i, f, g, o for the LSTM and G = 3 (r, z, n) for the GRU. With a 1x1 kernel
on 1x1 frames each layer is exactly ``rnnkit.nn.LSTM`` or ``rnnkit.nn.GRU``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from rnnkit.functional.convgru import ConvGRUFunction, convgru_reference, convgru_step
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


class _ConvCell(nn.Module):
    gates = 4

    def __init__(self, in_channels: int, hidden_channels: int, kernel_size, bias: bool = True,
                 spatial_dims: int = 2) -> None:
        super().__init__()
        kernel = _kernel(kernel_size, spatial_dims)
        for name, value in (("in_channels", in_channels), ("hidden_channels", hidden_channels)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}: expected a positive int, got {value!r}")
        self.in_channels, self.hidden_channels = in_channels, hidden_channels
        self.kernel_size, self.spatial_dims = kernel, spatial_dims
        width = self.gates * hidden_channels
        self.weight_ih = nn.Parameter(torch.empty(width, in_channels, *kernel))
        self.weight_hh = nn.Parameter(torch.empty(width, hidden_channels, *kernel))
        self.bias_ih = nn.Parameter(torch.empty(width)) if bias else None
        self.bias_hh = nn.Parameter(torch.empty(width)) if bias else None
        _init(self, hidden_channels, kernel)

    def _input_gates(self, input: Tensor) -> Tensor:
        _check_frames(input, self.in_channels, self.spatial_dims, 2 + self.spatial_dims,
                      "[B, C, *S]")
        return conv(input, self.weight_ih, self.bias_ih)

    def _zeros(self, input: Tensor) -> Tensor:
        return input.new_zeros(input.shape[0], self.hidden_channels, *input.shape[2:])


class ConvLSTMCell(_ConvCell):
    """One ConvLSTM step: ``h, c = cell(x_t, (h, c))`` for frames x_t [B, C, *S]."""

    def forward(self, input: Tensor, hx: tuple[Tensor, Tensor] | None = None
                ) -> tuple[Tensor, Tensor]:
        gx = self._input_gates(input)
        if hx is None:
            hx = (self._zeros(input), self._zeros(input))
        h, c, _ = convlstm_step(gx, hx[0], hx[1], self.weight_hh, self.bias_hh)
        return h, c


class ConvGRUCell(_ConvCell):
    """One ConvGRU step: ``h = cell(x_t, h)`` for frames x_t [B, C, *S]."""

    gates = 3

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        gx = self._input_gates(input)
        h, _ = convgru_step(gx, self._zeros(input) if hx is None else hx, self.weight_hh,
                            self.bias_hh)
        return h


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


class _ConvRNN(nn.Module):
    """A stack of convolutional recurrent layers over sequences of frames.

    Args:
        in_channels, hidden_channels: channels of the frames and of each state (F).
        kernel_size: odd, an int or one per spatial dimension ("same" padding).
        num_layers, bias, batch_first, dropout, bidirectional: as torch.nn.LSTM.
        spatial_dims: 1 for [.., C, W] frames, 2 for [.., C, H, W] (default), 3 for volumes.
        backend: ``fused`` (the hand-derived BPTT, default) or ``reference`` (autograd
            through the step loop).

    ``forward(input, hx=None, lengths=None)``: input [T, B, C, *S] ([B, T, ...] with
    ``batch_first``); hx the initial state, [num_layers * directions, B, F, *S] for each
    state tensor; lengths [B] for padded batches (each sequence's state stops at its end,
    outputs past it are zero, the reverse direction starts at its last frame). Returns
    output [T, B, directions * F, *S] and the final state.
    """

    gates = 4
    states = 2  # (h, c), or 1: h alone

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
                    torch.empty(self.gates * hidden_channels, channels, *kernel)))
                self.register_parameter(f"weight_hh_l{layer}{suffix}", nn.Parameter(
                    torch.empty(self.gates * hidden_channels, hidden_channels, *kernel)))
                if bias:
                    for kind in ("ih", "hh"):
                        self.register_parameter(f"bias_{kind}_l{layer}{suffix}", nn.Parameter(
                            torch.empty(self.gates * hidden_channels)))
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
        hx = self._initial_state(hx, x, state_shape)
        run = self._run()
        finals: list[list[Tensor]] = [[] for _ in hx]
        for layer in range(self.num_layers):
            outputs = []
            for d, suffix in enumerate(("", "_reverse")[:directions]):
                k = layer * directions + d
                seq = x if d == 0 else reverse_padded(x, lengths)
                out, *state = run(seq, *(s[k] for s in hx), *self._weights(layer, suffix),
                                  lengths)
                outputs.append(out if d == 0 else reverse_padded(out, lengths))
                for kept, s in zip(finals, state):
                    kept.append(s)
            x = torch.cat(outputs, dim=2) if directions == 2 else outputs[0]
            if self.dropout and self.training and layer < self.num_layers - 1:
                x = nn.functional.dropout(x, self.dropout)
        output = x.transpose(0, 1) if self.batch_first else x
        final = tuple(torch.stack(kept) for kept in finals)
        return output, (final if self.states == 2 else final[0])

    def _initial_state(self, hx, x: Tensor, shape: tuple[int, ...]) -> tuple[Tensor, ...]:
        if hx is None:
            return (x.new_zeros(shape),) * self.states
        parts = tuple(hx) if self.states == 2 and isinstance(hx, (tuple, list)) else (hx,)
        if len(parts) != self.states or any(not isinstance(s, Tensor) or tuple(s.shape) != shape
                                            for s in parts):
            got = [tuple(s.shape) if isinstance(s, Tensor) else type(s).__name__ for s in parts]
            what = "(h_0, c_0), each" if self.states == 2 else "h_0"
            raise ValueError(f"hx: expected {what} of shape {shape}, got {got}")
        return parts


class ConvLSTM(_ConvRNN):
    __doc__ = ("A stack of ConvLSTM layers (Shi et al. 2015) over sequences of frames; the "
               "state is ``(h, c)``." + _ConvRNN.__doc__.split("frames.", 1)[1])

    def _run(self):
        return ConvLSTMFunction.apply if self.backend == "fused" else convlstm_reference


class ConvGRU(_ConvRNN):
    __doc__ = ("A stack of ConvGRU layers (Ballas et al. 2016) over sequences of frames; the "
               "state is ``h``, as torch.nn.GRU's." + _ConvRNN.__doc__.split("frames.", 1)[1])

    gates = 3
    states = 1

    def _run(self):
        return ConvGRUFunction.apply if self.backend == "fused" else convgru_reference
