"""Drop-in replacements for torch.nn.RNN, torch.nn.LSTM and torch.nn.GRU.

Same constructor arguments, forward signature, parameter names (``weight_ih_l0``,
``bias_hh_l1_reverse``, ...) and gate order as torch.nn, so a torch.nn state_dict
loads unchanged and outputs match. What is added:

* ``backend=``: which engine runs the cells (see :mod:`rnnkit.backends`);
* ``forward(..., lengths=...)``: per-sequence lengths for a padded tensor, as an
  alternative to packing (outputs past a sequence's end are zero, the final state is
  taken at each sequence's own last step);
* ``zoneout=`` and ``recurrent_dropout=``: regularisers inside the recurrence;
* ``forward(..., between_layers=...)``: a function applied to each layer's output before
  the next layer reads it (an adapter between stacked layers, say);
* the variants torch.nn lacks: :class:`LayerNormLSTM`, :class:`LayerNormGRU`,
  :class:`CarryLSTM`.

This module holds the machinery they share, :class:`RNNBase`; the classes themselves
and the layer of every registered cell are in :mod:`rnnkit.nn.layers`.
"""

from __future__ import annotations

import math
import numbers
import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from rnnkit.backends import available_backends, run_direction
from rnnkit.functional import CELLS, Masks, cell_spec
from rnnkit.nn.errors import RNNShapeError, RNNTypeError
from rnnkit.nn.packing import repack, unpack
from rnnkit.nn.projection import run_projected
from rnnkit.nn.stepping import StepMixin
from rnnkit.nn.validation import (
    check_flag,
    check_input,
    check_lengths,
    check_probability,
    check_sequence_length,
    check_size,
    check_state,
    check_zoneout,
)


class RNNBase(StepMixin, nn.Module):
    """Shared machinery of :class:`RNN`, :class:`LSTM` and :class:`GRU`.

    Args:
        cell: a cell's name in :data:`rnnkit.functional.CELLS` (``"rnn"``, ``"lstm"``,
            ``"ln-gru"``...) or one of its aliases.
        input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, proj_size, device, dtype: as torch.nn.RNNBase.
        backend: an engine's name, or None for automatic.
        zoneout: probability that a state unit keeps its previous value at a step
            (Krueger et al. 2017), in training; in evaluation every unit takes the
            expectation ``p * s_{t-1} + (1 - p) * s~_t``. One number for every state, or
            a pair ``(hidden, cell)`` for the LSTMs.
        recurrent_dropout: probability of dropping a unit of ``h_{t-1}`` where it enters
            the recurrent product, with one mask per sequence for all its steps
            (variational dropout, Gal & Ghahramani 2016), in training only.
    """

    def __init__(self, cell: str, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, proj_size: int = 0, device=None, dtype=None,
                 *, backend: str | None = None, zoneout: float | tuple[float, float] = 0.0,
                 recurrent_dropout: float = 0.0) -> None:
        super().__init__()
        spec = cell_spec(cell)
        cell = spec.name
        self._set_arguments(cell, input_size, hidden_size, num_layers, bias, batch_first,
                            dropout, bidirectional)
        check_size(proj_size, "proj_size", allow_zero=True)
        if proj_size >= hidden_size:
            raise ValueError(f"proj_size: expected less than hidden_size={hidden_size} (the "
                             f"projection makes h smaller than c), got {proj_size}")
        if proj_size and cell != "lstm":
            raise NotImplementedError(
                f"proj_size: projections are defined for the plain LSTM (rnnkit.nn.LSTM), not "
                f"for {type(self).__name__}: its initial state would enter the recurrence "
                f"before the projection can be folded into it")
        if backend is not None and backend not in available_backends():
            raise ValueError(f"backend: expected one of {available_backends()} or None, got {backend!r}")
        self.zoneout = check_zoneout(zoneout, spec.num_states)
        self.recurrent_dropout = check_probability(recurrent_dropout, "recurrent_dropout")
        if proj_size and (self.recurrent_dropout or any(self.zoneout)):
            raise NotImplementedError(
                "proj_size: zoneout and recurrent_dropout act on the hidden state, which the "
                "projection replaces; use them with proj_size=0")
        self.proj_size = proj_size
        self.backend = backend
        factory = {"device": device, "dtype": dtype}
        gate_size = spec.gates * hidden_size
        directions = 2 if bidirectional else 1
        real_hidden = proj_size or hidden_size  # the width of h (and of the output)
        self._flat_weights_names: list[str] = []
        self._extra_names: list[str] = []  # the variant's own parameters (layer-norm gains...)
        for layer in range(num_layers):
            layer_input = input_size if layer == 0 else real_hidden * directions
            for direction in range(directions):
                suffix = f"_l{layer}" + ("_reverse" if direction == 1 else "")
                shapes = {"weight_ih": (gate_size, layer_input), "weight_hh": (gate_size, real_hidden)}
                if bias:
                    shapes |= {"bias_ih": (gate_size,), "bias_hh": (gate_size,)}
                if proj_size:
                    shapes["weight_hr"] = (proj_size, hidden_size)
                for kind, shape in shapes.items():
                    name = kind + suffix
                    self.register_parameter(name, nn.Parameter(torch.empty(shape, **factory)))
                    self._flat_weights_names.append(name)
                for extra in spec.extra:
                    name = extra.name + suffix
                    shape = (extra.width * hidden_size,)
                    self.register_parameter(name, nn.Parameter(torch.empty(shape, **factory)))
                    self._extra_names.append(name)
        self._shapes = {name: p.shape for name, p in self._parameters.items()}
        self.reset_parameters()

    def _set_arguments(self, cell: str, input_size: int, hidden_size: int, num_layers: int,
                       bias: bool, batch_first: bool, dropout: float,
                       bidirectional: bool) -> None:
        """Check the constructor arguments every rnnkit layer shares with torch.nn's, and
        keep them (the minimal layers' constructor uses it too)."""
        check_size(input_size, "input_size")
        check_size(hidden_size, "hidden_size")
        check_size(num_layers, "num_layers")
        check_flag(bias, "bias")
        check_flag(batch_first, "batch_first")
        if not isinstance(bidirectional, int) or bidirectional not in (0, 1):
            # torch.nn does not check it; a string such as "False" would silently be true
            raise RNNTypeError(f"bidirectional: expected a bool, got {bidirectional!r} "
                               f"({type(bidirectional).__name__})")
        if (not isinstance(dropout, numbers.Number) or isinstance(dropout, bool)
                or not 0 <= dropout <= 1):
            raise ValueError(f"dropout: expected a number in [0, 1] (the probability of zeroing "
                             f"an element between layers), got {dropout!r}")
        if dropout > 0 and num_layers == 1:
            warnings.warn("dropout option adds dropout after all but last recurrent layer, so "
                          f"non-zero dropout expects num_layers greater than 1, but got "
                          f"dropout={dropout} and num_layers={num_layers}", stacklevel=4)
        self.mode = cell
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        self.batch_first = batch_first
        self.dropout = float(dropout)
        self.bidirectional = bool(bidirectional)

    def reset_parameters(self) -> None:
        """torch.nn's initialisation: every weight and bias ~ U(-1/sqrt(H), 1/sqrt(H));
        a variant's layer-norm gains start at 1 and its layer-norm biases at 0."""
        stdv = 1.0 / math.sqrt(self.hidden_size)
        for name in self._flat_weights_names:
            nn.init.uniform_(getattr(self, name), -stdv, stdv)
        inits = {e.name: e.init for e in CELLS[self.mode].extra}
        for name in self._extra_names:
            nn.init.constant_(getattr(self, name), inits[name[: name.rindex("_l")]])

    def _check_weights(self) -> None:
        """Parameters assigned after construction must still fit the layer's sizes (every
        engine indexes them by ``hidden_size``); torch.nn refuses them too."""
        for name, shape in self._shapes.items():
            # getattr, not _parameters: weight_norm and parametrize replace a parameter by
            # a tensor computed on access
            w = getattr(self, name, None)
            if not isinstance(w, Tensor) or w.shape != shape:
                got = "nothing" if w is None else f"shape {tuple(w.shape)}"
                raise RNNShapeError(f"{name}: expected shape {tuple(shape)} for this layer "
                                    f"(input_size={self.input_size}, hidden_size="
                                    f"{self.hidden_size}), got {got}")

    def flatten_parameters(self) -> None:
        """Accepted for compatibility with torch.nn (a cuDNN detail); nothing to do here."""

    @property
    def all_weights(self) -> list[list[nn.Parameter]]:
        """Parameters grouped per layer and direction, as torch.nn exposes them."""
        per = (4 if self.bias else 2) + (1 if self.proj_size else 0)
        flat = [getattr(self, n) for n in self._flat_weights_names]
        return [flat[i: i + per] for i in range(0, len(flat), per)]

    @property
    def _num_states(self) -> int:
        return CELLS[self.mode].num_states

    def _layer_weights(self, layer: int, direction: int):
        suffix = f"_l{layer}" + ("_reverse" if direction == 1 else "")
        w_ih = getattr(self, "weight_ih" + suffix)
        w_hh = getattr(self, "weight_hh" + suffix)
        if not self.bias:
            return w_ih, w_hh, None, None
        return w_ih, w_hh, getattr(self, "bias_ih" + suffix), getattr(self, "bias_hh" + suffix)

    def _proj_weight(self, layer: int, direction: int) -> Tensor | None:
        if not self.proj_size:
            return None
        return getattr(self, f"weight_hr_l{layer}" + ("_reverse" if direction == 1 else ""))

    def _extra_weights(self, layer: int, direction: int) -> tuple[Tensor, ...]:
        suffix = f"_l{layer}" + ("_reverse" if direction == 1 else "")
        return tuple(getattr(self, e.name + suffix) for e in CELLS[self.mode].extra)

    def _masks(self, x: Tensor) -> Masks | None:
        """Fresh recurrent-dropout and zoneout masks for one (layer, direction)."""
        T, B = x.shape[:2]
        shape = (B, self.hidden_size)
        recurrent = None
        if self.training and self.recurrent_dropout > 0:
            keep = 1 - self.recurrent_dropout
            recurrent = x.new_empty(shape).bernoulli_(keep).div_(keep)
        zoneout: tuple[Tensor | None, ...] = ()
        if any(self.zoneout):
            if self.training:  # 1 = the unit keeps its previous value
                zoneout = tuple(x.new_empty((T, *shape)).bernoulli_(p) if p > 0 else None
                                for p in self.zoneout)
            else:  # the expectation
                zoneout = tuple(x.new_full((1, 1, 1), p).expand(T, *shape) if p > 0 else None
                                for p in self.zoneout)
        if recurrent is None and not zoneout:
            return None
        return Masks(recurrent, zoneout)

    def forward(self, input: Tensor | PackedSequence, hx=None, *, lengths=None,
                between_layers=None):
        """Run the layer.

        Args:
            input: [T, B, input_size] (``[B, T, input_size]`` with ``batch_first``),
                [T, input_size] unbatched, or a PackedSequence.
            hx: initial state(s), [num_layers * directions, B, hidden_size] each
                (without the B dimension for unbatched input); zeros when None.
                For LSTM a tuple ``(h_0, c_0)``.
            lengths: optional [B] valid lengths for a padded (batched) tensor input.
            between_layers: optional ``f(layer, output) -> output``, called on the output
                of each layer but the last (``layer`` = 0 .. num_layers - 2, ``output``
                time-major [T, B, directions * width], padded past each sequence's end)
                before the inter-layer dropout and the next layer; it must keep the shape.
                Steps past a sequence's end never reach the next layer's state.

        Returns:
            ``(output, h_n)``, or ``(output, (h_n, c_n))`` for LSTM, shaped as torch.nn's.
        """
        ref = self.weight_ih_l0
        packed = isinstance(input, PackedSequence)
        unbatched = False
        if packed:
            if lengths is not None:
                raise RNNShapeError("lengths: a PackedSequence already carries its lengths; "
                                 "pass lengths only with a padded tensor")
            check_input(input.data, self.input_size, ref, ranks=(2,))
            x, lengths = unpack(input)  # [T, B, I], original batch order
        else:
            check_input(input, self.input_size, ref, ranks=(2, 3))
            unbatched = input.dim() == 2
            if unbatched:
                if lengths is not None:
                    raise RNNShapeError("lengths: only for batched input; got a 2-D (unbatched) "
                                        "input")
                x = input.unsqueeze(1)
            else:
                x = input.transpose(0, 1) if self.batch_first else input
            if lengths is not None:
                lengths = check_lengths(lengths, x.shape[1], x.shape[0])
        check_sequence_length(x, input.data if packed else input)
        self._check_weights()
        states = self._initial_states(hx, x, unbatched)
        if between_layers is not None and not callable(between_layers):
            raise RNNTypeError(f"between_layers: expected a function (layer, output) -> "
                               f"output, got {type(between_layers).__name__}")
        output, finals = self._run_layers(x, states, lengths, between_layers)
        if packed:
            output = repack(output, input)
        elif unbatched:
            output = output.squeeze(1)
            finals = [f.squeeze(1) for f in finals]
        elif self.batch_first:
            output = output.transpose(0, 1)
        if self._num_states == 2:
            return output, (finals[0], finals[1])
        return output, finals[0]

    def _initial_states(self, hx, x: Tensor, unbatched: bool) -> list[Tensor]:
        directions = 2 if self.bidirectional else 1
        batch = x.shape[1]
        shape = (self.num_layers * directions, batch, self.hidden_size)
        # With a projection, h (the first state) is proj_size wide and c hidden_size.
        shapes = [(shape[0], batch, self.proj_size or self.hidden_size), shape][:self._num_states]
        if hx is None:
            return [torch.zeros(s, dtype=x.dtype, device=x.device) for s in shapes]
        names = ["hx"] if self._num_states == 1 else ["hx[0] (h_0)", "hx[1] (c_0)"]
        if self._num_states == 2:
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise TypeError(f"hx: expected a tuple (h_0, c_0) for LSTM, got {type(hx).__name__}")
            given = list(hx)
        else:
            given = [hx]
        expected = [sh[:1] + sh[2:] if unbatched else sh for sh in shapes]
        ref = self.weight_ih_l0
        states = [check_state(s, e, ref, n) for s, e, n in zip(given, expected, names)]
        return [s.unsqueeze(1) for s in states] if unbatched else states

    def _run_layers(self, x: Tensor, states: list[Tensor], lengths: Tensor | None,
                    between_layers=None):
        directions = 2 if self.bidirectional else 1
        finals: list[list[Tensor]] = [[] for _ in range(self._num_states)]
        layer_input = x
        for layer in range(self.num_layers):
            outputs = []
            for direction in range(directions):
                k = layer * directions + direction
                w_hr = self._proj_weight(layer, direction)
                if w_hr is not None:
                    y, final = run_projected(layer_input, tuple(s[k] for s in states),
                                             *self._layer_weights(layer, direction), w_hr,
                                             lengths, direction == 1, self.backend)
                else:
                    y, final = run_direction(
                        self.mode, layer_input, tuple(s[k] for s in states),
                        *self._layer_weights(layer, direction), lengths=lengths,
                        reverse=direction == 1, backend=self.backend,
                        extra=self._extra_weights(layer, direction),
                        masks=self._masks(layer_input))
                outputs.append(y)
                for store, f in zip(finals, final):
                    store.append(f)
            layer_input = outputs[0] if directions == 1 else torch.cat(outputs, dim=2)
            if layer < self.num_layers - 1:
                layer_input = self._between(layer_input, layer, between_layers)
        return layer_input, [torch.stack(f) for f in finals]

    def _between(self, y: Tensor, layer: int, between_layers) -> Tensor:
        """What the next layer reads of layer ``layer``'s output ``y``: ``between_layers``
        (checked to keep the shape), then the inter-layer dropout."""
        if between_layers is not None:
            shape = y.shape
            y = between_layers(layer, y)
            if not isinstance(y, Tensor) or y.shape != shape:
                got = tuple(y.shape) if isinstance(y, Tensor) else type(y).__name__
                raise RNNShapeError(f"between_layers: expected it to return the layer's "
                                    f"output shape {tuple(shape)}, got {got}")
        if self.dropout and self.training:
            y = F.dropout(y, self.dropout, training=True)
        return y

    def extra_repr(self) -> str:
        extras = []
        if self.proj_size:
            extras.append(f"proj_size={self.proj_size}")
        if any(self.zoneout):
            extras.append(f"zoneout={self.zoneout if len(set(self.zoneout)) > 1 else self.zoneout[0]}")
        if self.recurrent_dropout:
            extras.append(f"recurrent_dropout={self.recurrent_dropout}")
        return self._repr_with(extras)

    def _repr_with(self, extras: list[str]) -> str:
        """torch.nn's repr of the shared arguments (those not at their defaults), then
        ``extras``, then the backend."""
        parts = [str(self.input_size), str(self.hidden_size)]
        if self.num_layers != 1:
            parts.append(f"num_layers={self.num_layers}")
        if self.mode == "rnn-relu":
            parts.append("nonlinearity='relu'")
        for shown, text in ((not self.bias, "bias=False"), (self.batch_first, "batch_first=True"),
                            (self.dropout, f"dropout={self.dropout}"),
                            (self.bidirectional, "bidirectional=True")):
            if shown:
                parts.append(text)
        parts += extras
        if self.backend is not None:
            parts.append(f"backend={self.backend!r}")
        return ", ".join(parts)


_MOVED = ("RNN", "LSTM", "GRU", "LayerNormLSTM", "LayerNormGRU", "CarryLSTM")


def __getattr__(name: str):
    """The layer classes moved to :mod:`rnnkit.nn.layers`; code and whole-model pickles that
    name them here still find them."""
    if name in _MOVED:
        from rnnkit.nn import layers

        return getattr(layers, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
