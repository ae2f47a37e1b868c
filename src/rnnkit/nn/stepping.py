"""One time step at a time: ``layer.step(x_t, state)`` and ``layer.stream()``, for
streaming and decoding.

A mixin of :class:`rnnkit.nn.rnn.RNNBase`. Under ``torch.no_grad()`` on the CPU, a stacked
step of any built-in cell is one call into the native engine (:mod:`rnnkit.backends.native`);
every other case runs the layer's ``forward`` on a sequence of one step. :class:`Stream`
checks the layer once and then makes only that call per step, keeping the state itself.
"""

from __future__ import annotations

from operator import is_not

import torch
from torch import Tensor

from rnnkit.backends import native
from rnnkit.backends.base import select_backend
from rnnkit.functional import CELLS
from rnnkit.nn.validation import check_input


class StepMixin:
    """``step`` for :class:`rnnkit.nn.rnn.RNNBase` (uses its attributes and ``forward``)."""

    def step(self, input: Tensor, hx=None):
        """Advance the layer by one time step: the streaming and decoding API.

        ``y, state = layer.step(x_t, state)`` is ``layer(x_t.unsqueeze(0), state)`` with the
        time dimension taken off, for generating, decoding or filtering one token or
        sample at a time with the state carried between calls.

        Under ``torch.no_grad()`` (or inference mode), on the CPU, for every built-in cell
        in float32/float64 and with the native engine built, the step is one call into C++
        for the whole stack (see :mod:`rnnkit.backends.native`); otherwise it runs the layer's
        ``forward`` on a sequence of one step, so gradients, every cell, zoneout and
        dropout behave exactly as there.

        Args:
            input: [B, input_size], or [input_size] unbatched (``batch_first`` is irrelevant
                for a single step).
            hx: the state, as ``forward`` takes and returns it ([num_layers, B, hidden_size],
                a tuple ``(h, c)`` for the LSTMs), or None for zeros.

        Returns:
            ``(output, state)``: the top layer's h_t [B, hidden_size] and the new state in
            the format of ``hx``.
        """
        if self.bidirectional:
            raise ValueError("step: a bidirectional layer reads each sequence from both ends, "
                             "so it cannot advance one step at a time; call the layer on the "
                             "whole sequence")
        ref = self.weight_ih_l0
        check_input(input, self.input_size, ref, ranks=(1, 2))
        unbatched = input.dim() == 1
        if not self._native_step_ok(input):
            time_dim = 1 if self.batch_first and not unbatched else 0
            output, state = self.forward(input.unsqueeze(time_dim), hx)
            return output.squeeze(time_dim), state
        x = input.view(1, -1) if unbatched else input  # [B, I]
        states = None if hx is None else self._step_states(hx, x, unbatched)
        weights = self._step_weights()
        output, new = native.step(self.mode, x if x.is_contiguous() else x.contiguous(), states,
                                  weights, self.num_layers, self.bias, self.zoneout)
        if unbatched:
            output, new = output[0], tuple(s[:, 0] for s in new)
        return output, (new if len(new) == 2 else new[0])

    def stream(self, batch_size: int = 1, state=None) -> Stream:
        """A :class:`Stream` over this layer: ``y_t = stream(x_t)`` per step, state kept
        inside, for generation and real-time use without gradients."""
        return Stream(self, batch_size, state)

    def _step_weights(self) -> list[Tensor]:
        """Per layer ``w_ih, w_hh`` (``b_ih, b_hh``), then the cell's extra parameters: the
        order the native step reads them in."""
        per = 4 if self.bias else 2
        n_extra = len(CELLS[self.mode].extra)
        names = []
        for layer in range(self.num_layers):
            names += self._flat_weights_names[per * layer: per * (layer + 1)]
            names += self._extra_names[n_extra * layer: n_extra * (layer + 1)]
        weights = [getattr(self, name) for name in names]
        return [w if w.is_contiguous() else w.contiguous() for w in weights]

    def _step_states(self, hx, x: Tensor, unbatched: bool) -> list[Tensor]:
        """The given state as contiguous [layers, B, H] tensors. The common case (right
        shapes, dtype and device) is checked inline: a step is tens of microseconds, and the
        general check costs a quarter of that; anything else gets its error from there."""
        given = hx if isinstance(hx, (tuple, list)) else (hx,)
        shape = (self.num_layers, self.hidden_size) if unbatched else \
            (self.num_layers, x.shape[0], self.hidden_size)
        ref = self.weight_ih_l0
        if (len(given) == self._num_states
                and all(isinstance(s, Tensor) and s.shape == shape and s.dtype == ref.dtype
                        and s.device == ref.device for s in given)):
            states = [s.unsqueeze(1) for s in given] if unbatched else list(given)
        else:
            states = self._initial_states(hx, x.unsqueeze(0), unbatched)
        return [s if s.is_contiguous() else s.contiguous() for s in states]

    def _native_step_ok(self, input: Tensor) -> bool:
        """Whether :meth:`step` can take the native single-step path for this input."""
        if torch.is_grad_enabled() or self.proj_size:
            return False  # gradients and the projection take forward's path
        if self.training and (self.dropout > 0 or self.recurrent_dropout > 0 or any(self.zoneout)):
            return False  # the masks are drawn by forward
        # the one selection rule (rnnkit.backends.base), as forward would apply it (zoneout
        # in evaluation is applied by the native step, layer by layer)
        return select_backend(self.backend, self.mode, input.device, input.dtype).name == "native"


class Stream:
    """A recurrent layer advanced one step per call, with its state kept inside.

    ``stream = layer.stream(batch_size=1)``, then ``y_t = stream(x_t)`` for each new input
    [batch_size, input_size] (or [input_size] when ``batch_size`` is None): the output of the
    top layer at that step. The layer is checked once, here (no bidirectional layer, no
    projection, not in training mode with dropout or zoneout); each call then checks only
    the input's shape and dtype and makes one native call for the whole stack when the
    engine can run it (any built-in cell, on the CPU, float32 or float64), else
    :meth:`layer.step <rnnkit.nn.rnn.RNNBase.step>`. No gradients flow through a stream.

    The stream reads the layer's parameters at every step, so training between calls and
    ``load_state_dict`` are seen; ``stream.state`` is the state in ``layer.step``'s format,
    and ``stream.reset()`` starts again from zeros (or from a given state).
    """

    def __init__(self, layer, batch_size: int | None = 1, state=None) -> None:
        if layer.bidirectional:
            raise ValueError("stream: a bidirectional layer reads each sequence from both ends, "
                             "so it cannot advance one step at a time")
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
            raise ValueError(f"stream: batch_size: expected a positive int or None, got "
                             f"{batch_size!r}")
        self.layer = layer
        self.batch_size = batch_size
        ref = layer.weight_ih_l0
        self._shape = (layer.input_size,) if batch_size is None else (batch_size, layer.input_size)
        self._dtype, self._device = ref.dtype, ref.device
        self._stochastic = layer.dropout > 0 or layer.recurrent_dropout > 0 or any(layer.zoneout)
        # The engine's choice, made once: any built-in cell, CPU, float32/float64, built.
        self._use_native = (layer.mode in native.KINDS and not layer.proj_size
                            and select_backend(
                                layer.backend, layer.mode, self._device, self._dtype).name
                            == "native")
        self._call = (torch.ops.rnnkit.cell_step.default, native.KINDS.get(layer.mode),
                      layer.num_layers, layer.bias, [float(p) for p in layer.zoneout])
        self._params: tuple = ()
        self._weights: list[Tensor] = []
        self.reset(state)

    def reset(self, state=None) -> None:
        """Start again from ``state`` (``layer.step``'s format) or zeros."""
        self._state = state
        self._native: list[Tensor] = []  # the state as the native step keeps it ([] = zeros)

    @property
    def state(self):
        """The state after the last step, in ``layer.step``'s format (None before the first)."""
        return self._state

    def _current_weights(self) -> list[Tensor]:
        """The layer's weights in the native step's order: the list made at the last call,
        unless a parameter was replaced since (training in place and ``load_state_dict``
        keep the same tensors; a non-contiguous parameter is copied at every call)."""
        params = tuple(self.layer._parameters.values())
        if len(params) != len(self._params) or any(map(is_not, params, self._params)):
            self._weights = self.layer._step_weights()
            contiguous = all(p is None or p.is_contiguous() for p in params)
            self._params = params if contiguous else ()
        return self._weights

    def __call__(self, x: Tensor) -> Tensor:
        if (not isinstance(x, Tensor) or x.shape != self._shape or x.dtype != self._dtype
                or x.device != self._device):
            got = (f"shape {tuple(x.shape)}, {x.dtype} on {x.device}" if isinstance(x, Tensor)
                   else type(x).__name__)
            raise ValueError(f"stream: input: expected shape {self._shape}, {self._dtype} on "
                             f"{self._device} (the layer's), got {got}")
        layer = self.layer
        if layer.training and self._stochastic:
            raise ValueError("stream: the layer is in training mode with dropout or zoneout, "
                             "whose masks a stream does not draw; call layer.eval() first")
        grad = torch.is_grad_enabled()
        torch._C._set_grad_enabled(False)
        try:
            if not self._use_native:
                y, self._state = layer.step(x, self._state)
                return y
            unbatched = self.batch_size is None
            xb = x.view(1, -1) if unbatched else x
            if not self._native and self._state is not None:  # a state given by the caller
                self._native = layer._step_states(self._state, xb, unbatched)
            op, kind, layers, bias, zoneout = self._call
            y, new = op(kind, xb if xb.is_contiguous() else xb.contiguous(), self._native,
                        self._current_weights(), layers, bias, zoneout)
        finally:
            torch._C._set_grad_enabled(grad)
        self._native = new
        if unbatched:
            y, new = y[0], [s[:, 0] for s in new]
        self._state = tuple(new) if len(new) == 2 else new[0]
        return y
