"""Drop-in replacements for torch.nn.RNN, torch.nn.LSTM and torch.nn.GRU.

Same constructor arguments, forward signature, parameter names (``weight_ih_l0``,
``bias_hh_l1_reverse``, ...) and gate order as torch.nn, so a torch.nn state_dict
loads unchanged and outputs match. What is added:

* ``backend=``: which engine runs the cells (see :mod:`rnnkit.backends`);
* ``forward(..., lengths=...)``: per-sequence lengths for a padded tensor, as an
  alternative to packing (outputs past a sequence's end are zero, the final state is
  taken at each sequence's own last step).
"""

from __future__ import annotations

import math
import numbers
import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from rnnkit.backends import available_backends, run_direction
from rnnkit.nn.validation import check_input, check_lengths, check_state

_GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}


class RNNBase(nn.Module):
    """Shared machinery of :class:`RNN`, :class:`LSTM` and :class:`GRU`.

    Args:
        cell: ``"rnn_tanh"``, ``"rnn_relu"``, ``"lstm"`` or ``"gru"``.
        Others as torch.nn.RNNBase; ``backend`` names an engine or None for automatic.
    """

    def __init__(self, cell: str, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, proj_size: int = 0, device=None, dtype=None,
                 *, backend: str | None = None) -> None:
        super().__init__()
        _check_positive_int(input_size, "input_size", allow_zero=False)
        _check_positive_int(hidden_size, "hidden_size", allow_zero=False)
        _check_positive_int(num_layers, "num_layers", allow_zero=False)
        if (not isinstance(dropout, numbers.Number) or isinstance(dropout, bool)
                or not 0 <= dropout <= 1):
            raise ValueError(f"dropout: expected a number in [0, 1] (the probability of zeroing "
                             f"an element between layers), got {dropout!r}")
        if proj_size:
            raise NotImplementedError("proj_size: LSTM with projections is not implemented in "
                                      "rnnkit yet; use torch.nn.LSTM for proj_size > 0")
        if backend is not None and backend not in available_backends():
            raise ValueError(f"backend: expected one of {available_backends()} or None, got {backend!r}")
        if dropout > 0 and num_layers == 1:
            warnings.warn("dropout option adds dropout after all but last recurrent layer, so "
                          f"non-zero dropout expects num_layers greater than 1, but got "
                          f"dropout={dropout} and num_layers={num_layers}", stacklevel=3)
        self.mode = cell
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        self.batch_first = batch_first
        self.dropout = float(dropout)
        self.bidirectional = bidirectional
        self.proj_size = 0
        self.backend = backend
        factory = {"device": device, "dtype": dtype}
        gate_size = _GATES[cell] * hidden_size
        directions = 2 if bidirectional else 1
        self._flat_weights_names: list[str] = []
        for layer in range(num_layers):
            layer_input = input_size if layer == 0 else hidden_size * directions
            for direction in range(directions):
                suffix = f"_l{layer}" + ("_reverse" if direction == 1 else "")
                shapes = {"weight_ih": (gate_size, layer_input), "weight_hh": (gate_size, hidden_size)}
                if bias:
                    shapes |= {"bias_ih": (gate_size,), "bias_hh": (gate_size,)}
                for kind, shape in shapes.items():
                    name = kind + suffix
                    self.register_parameter(name, nn.Parameter(torch.empty(shape, **factory)))
                    self._flat_weights_names.append(name)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """torch.nn's initialisation: every weight and bias ~ U(-1/sqrt(H), 1/sqrt(H))."""
        stdv = 1.0 / math.sqrt(self.hidden_size)
        for weight in self.parameters():
            nn.init.uniform_(weight, -stdv, stdv)

    def flatten_parameters(self) -> None:
        """Accepted for compatibility with torch.nn (a cuDNN detail); nothing to do here."""

    @property
    def all_weights(self) -> list[list[nn.Parameter]]:
        """Parameters grouped per layer and direction, as torch.nn exposes them."""
        per = 4 if self.bias else 2
        flat = [getattr(self, n) for n in self._flat_weights_names]
        return [flat[i: i + per] for i in range(0, len(flat), per)]

    @property
    def _num_states(self) -> int:
        return 2 if self.mode == "lstm" else 1

    def _layer_weights(self, layer: int, direction: int):
        suffix = f"_l{layer}" + ("_reverse" if direction == 1 else "")
        w_ih = getattr(self, "weight_ih" + suffix)
        w_hh = getattr(self, "weight_hh" + suffix)
        if not self.bias:
            return w_ih, w_hh, None, None
        return w_ih, w_hh, getattr(self, "bias_ih" + suffix), getattr(self, "bias_hh" + suffix)

    def forward(self, input: Tensor | PackedSequence, hx=None, *, lengths=None):
        """Run the layer.

        Args:
            input: [T, B, input_size] (``[B, T, input_size]`` with ``batch_first``),
                [T, input_size] unbatched, or a PackedSequence.
            hx: initial state(s), [num_layers * directions, B, hidden_size] each
                (without the B dimension for unbatched input); zeros when None.
                For LSTM a tuple ``(h_0, c_0)``.
            lengths: optional [B] valid lengths for a padded (batched) tensor input.

        Returns:
            ``(output, h_n)``, or ``(output, (h_n, c_n))`` for LSTM, shaped as torch.nn's.
        """
        ref = self.weight_ih_l0
        packed = isinstance(input, PackedSequence)
        unbatched = False
        if packed:
            if lengths is not None:
                raise ValueError("lengths: a PackedSequence already carries its lengths; "
                                 "pass lengths only with a padded tensor")
            check_input(input.data, self.input_size, ref, ranks=(2,))
            x, lengths = pad_packed_sequence(input)  # [T, B, I], original batch order
        else:
            check_input(input, self.input_size, ref, ranks=(2, 3))
            unbatched = input.dim() == 2
            if unbatched:
                if lengths is not None:
                    raise ValueError("lengths: only for batched input; got a 2-D (unbatched) input")
                x = input.unsqueeze(1)
            else:
                x = input.transpose(0, 1) if self.batch_first else input
            if lengths is not None:
                lengths = check_lengths(lengths, x.shape[1], x.shape[0])
        states = self._initial_states(hx, x, unbatched)
        output, finals = self._run_layers(x, states, lengths)
        if packed:
            output = _repack(output, lengths, input)
        elif unbatched:
            output = output.squeeze(1)
            finals = [f.squeeze(1) for f in finals]
        elif self.batch_first:
            output = output.transpose(0, 1)
        if self.mode == "lstm":
            return output, (finals[0], finals[1])
        return output, finals[0]

    def _initial_states(self, hx, x: Tensor, unbatched: bool) -> list[Tensor]:
        directions = 2 if self.bidirectional else 1
        batch = x.shape[1]
        shape = (self.num_layers * directions, batch, self.hidden_size)
        if hx is None:
            zeros = torch.zeros(shape, dtype=x.dtype, device=x.device)
            return [zeros] * self._num_states
        names = ["hx"] if self._num_states == 1 else ["hx[0] (h_0)", "hx[1] (c_0)"]
        if self._num_states == 2:
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise TypeError(f"hx: expected a tuple (h_0, c_0) for LSTM, got {type(hx).__name__}")
            given = list(hx)
        else:
            given = [hx]
        expected = shape[:1] + shape[2:] if unbatched else shape
        ref = self.weight_ih_l0
        states = [check_state(s, expected, ref, n) for s, n in zip(given, names)]
        return [s.unsqueeze(1) for s in states] if unbatched else states

    def _run_layers(self, x: Tensor, states: list[Tensor], lengths: Tensor | None):
        directions = 2 if self.bidirectional else 1
        finals: list[list[Tensor]] = [[] for _ in range(self._num_states)]
        layer_input = x
        for layer in range(self.num_layers):
            outputs = []
            for direction in range(directions):
                k = layer * directions + direction
                y, final = run_direction(
                    self.mode, layer_input, tuple(s[k] for s in states),
                    *self._layer_weights(layer, direction), lengths=lengths,
                    reverse=direction == 1, backend=self.backend)
                outputs.append(y)
                for store, f in zip(finals, final):
                    store.append(f)
            layer_input = outputs[0] if directions == 1 else torch.cat(outputs, dim=2)
            if self.dropout and self.training and layer < self.num_layers - 1:
                layer_input = F.dropout(layer_input, self.dropout, training=True)
        return layer_input, [torch.stack(f) for f in finals]

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.mode == "rnn_relu":
            s += ", nonlinearity='relu'"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        if self.backend is not None:
            s += f", backend={self.backend!r}"
        return s


def _repack(output: Tensor, lengths: Tensor, like: PackedSequence) -> PackedSequence:
    """Pack a padded [T, B, *] output exactly as ``like`` is packed."""
    order = like.sorted_indices
    if order is not None:
        output = output.index_select(1, order)
        lengths = lengths.index_select(0, order.cpu())
    data = pack_padded_sequence(output, lengths, enforce_sorted=True).data
    return like._replace(data=data)


def _check_positive_int(value: object, name: str, *, allow_zero: bool) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < (0 if allow_zero else 1):
        raise ValueError(f"{name}: expected a positive integer, got {value!r}")


class RNN(RNNBase):
    """Elman RNN, ``h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)``; drop-in for torch.nn.RNN.

    Args:
        input_size, hidden_size, num_layers, nonlinearity (``'tanh'`` or ``'relu'``), bias,
        batch_first, dropout, bidirectional, device, dtype: as torch.nn.RNN.
        backend: engine name, or None for automatic.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 nonlinearity: str = "tanh", bias: bool = True, batch_first: bool = False,
                 dropout: float = 0.0, bidirectional: bool = False, device=None, dtype=None,
                 *, backend: str | None = None) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity: expected 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        super().__init__(f"rnn_{nonlinearity}", input_size, hidden_size, num_layers, bias,
                         batch_first, dropout, bidirectional, 0, device, dtype, backend=backend)


class LSTM(RNNBase):
    """Long short-term memory (gates i, f, g, o); drop-in for torch.nn.LSTM.

    Args:
        input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
        proj_size (only 0 is supported), device, dtype: as torch.nn.LSTM.
        backend: engine name, or None for automatic.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, proj_size: int = 0, device=None, dtype=None,
                 *, backend: str | None = None) -> None:
        super().__init__("lstm", input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, proj_size, device, dtype, backend=backend)


class GRU(RNNBase):
    """Gated recurrent unit (gates r, z, n as torch defines them); drop-in for torch.nn.GRU.

    Args:
        input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
        device, dtype: as torch.nn.GRU.
        backend: engine name, or None for automatic.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, device=None, dtype=None,
                 *, backend: str | None = None) -> None:
        super().__init__("gru", input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, 0, device, dtype, backend=backend)
