"""One time step at a time: ``layer.step(x_t, state)``, for streaming and decoding.

A mixin of :class:`rnnkit.nn.rnn.RNNBase`. Under ``torch.no_grad()`` on the CPU, a stacked
LSTM or GRU step is one call into the native engine (:mod:`rnnkit.backends.native`);
every other case runs the layer's ``forward`` on a sequence of one step.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rnnkit.backends import native
from rnnkit.backends.base import select_backend
from rnnkit.nn.validation import check_input


class StepMixin:
    """``step`` for :class:`rnnkit.nn.rnn.RNNBase` (uses its attributes and ``forward``)."""

    def step(self, input: Tensor, hx=None):
        """Advance the layer by one time step: the streaming and decoding API.

        ``y, state = layer.step(x_t, state)`` is ``layer(x_t.unsqueeze(0), state)`` with the
        time dimension taken off, for generating, decoding or filtering one token or
        sample at a time with the state carried between calls.

        Under ``torch.no_grad()`` (or inference mode), on the CPU, for the LSTM and the GRU
        in float32/float64 and with the native engine built, the step is one call into C++
        per layer (see :mod:`rnnkit.backends.native`); otherwise it runs the layer's
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
        weights = [getattr(self, name) for name in self._flat_weights_names]
        if not all(w.is_contiguous() for w in weights):
            weights = [w.contiguous() for w in weights]
        output, new = native.step(self.mode, x if x.is_contiguous() else x.contiguous(), states,
                                  weights, self.num_layers, self.bias)
        if any(self.zoneout):  # evaluation: each unit takes the expectation
            prev = states or [torch.zeros_like(s) for s in new]
            new = tuple(torch.lerp(n, s, p) if p > 0 else n
                        for n, s, p in zip(new, prev, self.zoneout))
            output = new[0][-1]
        if unbatched:
            output, new = output[0], tuple(s[:, 0] for s in new)
        return output, (new if len(new) == 2 else new[0])

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
        # in evaluation is applied here, after the native step)
        return select_backend(self.backend, self.mode, input.device, input.dtype).name == "native"
