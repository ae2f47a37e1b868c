"""The layer classes: torch.nn's three (:class:`RNN`, :class:`LSTM`, :class:`GRU`), the
variants torch.nn lacks, and the layer of every registered cell (:func:`layer_class`):
the built-in ones by name, and, for a cell registered only through its description
(:func:`rnnkit.functional.register_cell`), a class made on first use with torch.nn.LSTM's
constructor (two states) or torch.nn.GRU's (one)."""

from __future__ import annotations

import functools

from rnnkit.functional import cell_spec
from rnnkit.functional.minimal import MIN_CELLS
from rnnkit.nn.minimal import MinGRU, MinLSTM
from rnnkit.nn.rnn import RNNBase

_REGULARISERS = """
        zoneout, recurrent_dropout: regularisers inside the recurrence, see :class:`RNNBase`."""


class RNN(RNNBase):
    """Elman RNN, ``h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)``; drop-in for torch.nn.RNN.

    Args:
        input_size, hidden_size, num_layers, nonlinearity (``'tanh'`` or ``'relu'``), bias,
        batch_first, dropout, bidirectional, device, dtype: as torch.nn.RNN.
        backend: engine name, or None for automatic.""" + _REGULARISERS + """
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 nonlinearity: str = "tanh", bias: bool = True, batch_first: bool = False,
                 dropout: float = 0.0, bidirectional: bool = False, device=None, dtype=None,
                 *, backend: str | None = None, zoneout: float = 0.0,
                 recurrent_dropout: float = 0.0) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity: expected 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        super().__init__("rnn" if nonlinearity == "tanh" else "rnn-relu", input_size, hidden_size, num_layers, bias,
                         batch_first, dropout, bidirectional, 0, device, dtype, backend=backend,
                         zoneout=zoneout, recurrent_dropout=recurrent_dropout)


class _LSTMLike(RNNBase):
    """The constructor of torch.nn.LSTM, for :class:`LSTM` and its variants."""

    _cell = "lstm"

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, proj_size: int = 0, device=None, dtype=None,
                 *, backend: str | None = None, zoneout: float | tuple[float, float] = 0.0,
                 recurrent_dropout: float = 0.0) -> None:
        super().__init__(self._cell, input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, proj_size, device, dtype, backend=backend,
                         zoneout=zoneout, recurrent_dropout=recurrent_dropout)


class _GRULike(RNNBase):
    """The constructor of torch.nn.GRU, for :class:`GRU` and its variants."""

    _cell = "gru"

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, device=None, dtype=None,
                 *, backend: str | None = None, zoneout: float = 0.0,
                 recurrent_dropout: float = 0.0) -> None:
        super().__init__(self._cell, input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, 0, device, dtype, backend=backend,
                         zoneout=zoneout, recurrent_dropout=recurrent_dropout)


class LSTM(_LSTMLike):
    """Long short-term memory (gates i, f, g, o); drop-in for torch.nn.LSTM.

    Args:
        input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
        proj_size, device, dtype: as torch.nn.LSTM (``proj_size``: see
        :func:`rnnkit.nn.projection.run_projected`).
        backend: engine name, or None for automatic.""" + _REGULARISERS + """
    """


class GRU(_GRULike):
    """Gated recurrent unit (gates r, z, n as torch defines them); drop-in for torch.nn.GRU.

    Args:
        input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
        device, dtype: as torch.nn.GRU.
        backend: engine name, or None for automatic.""" + _REGULARISERS + """
    """


class LayerNormLSTM(_LSTMLike):
    """LSTM with layer normalisation (Ba et al. 2016, as haste defines it); torch.nn.LSTM's
    arguments.

    ``a_t = LN(W_ih x_t; w_x) + b_ih + LN(W_hh h_{t-1}; w_h) + b_hh``, gates as the LSTM's,
    ``c_t = f c_{t-1} + i g``, ``h_t = o tanh(LN(c_t; w_c, b_c))``; equations and backward in
    :mod:`rnnkit.functional.layer_norm`. Besides torch.nn.LSTM's parameters, each layer and
    direction has ``ln_ih_weight`` [4H], ``ln_hh_weight`` [4H], ``ln_cell_weight`` [H]
    (initialised to 1) and ``ln_cell_bias`` [H] (to 0), suffixed ``_l{k}[_reverse]``.
    A torch.nn.LSTM state_dict loads with ``strict=False`` (the gains keep their values).""" \
        + _REGULARISERS + """
    """

    _cell = "ln-lstm"


class LayerNormGRU(_GRULike):
    """GRU with layer normalisation (as haste defines it); torch.nn.GRU's arguments.

    ``gx = LN(W_ih x_t; w_x) + b_ih``, ``gh = LN(W_hh h_{t-1}; w_h) + b_hh``, then the GRU's
    gates (:mod:`rnnkit.functional.layer_norm`). Extra parameters per layer and direction:
    ``ln_ih_weight`` and ``ln_hh_weight`` [3H], initialised to 1.""" + _REGULARISERS + """
    """

    _cell = "ln-gru"


class CarryLSTM(_LSTMLike):
    """LSTM with a carry gate: ``h_t = o tanh(c_t) + beta_t h_{t-1}``, where
    ``beta_t = sigmoid(W_xb x_t + W_hb h_{t-1} + b_b)`` is a fifth gate block stacked after
    i, f, g, o in ``weight_ih`` / ``weight_hh`` [5H, *] (see
    :data:`rnnkit.functional.lstm.CARRY_LSTM`); torch.nn.LSTM's arguments.""" + _REGULARISERS + """
    """

    _cell = "carry-lstm"


_LAYERS: dict[str, type[RNNBase]] = {"lstm": LSTM, "gru": GRU, "ln-lstm": LayerNormLSTM,
                                     "ln-gru": LayerNormGRU, "carry-lstm": CarryLSTM}


def layer_class(cell: str):
    """The layer class of a cell (by name or alias), as a constructor taking torch.nn's
    arguments: ``layer_class("ln-gru")(input_size, hidden_size, num_layers, ...)``; for the
    minimal cells, :class:`rnnkit.nn.MinGRU` and :class:`rnnkit.nn.MinLSTM`."""
    if cell in MIN_CELLS:
        return MinGRU if cell == "mingru" else MinLSTM
    spec = cell_spec(cell)
    if spec.name in ("rnn", "rnn-relu"):
        return functools.partial(RNN, nonlinearity="relu" if spec.name == "rnn-relu" else "tanh")
    if spec.name not in _LAYERS:
        base = _LSTMLike if spec.num_states == 2 else _GRULike
        name = "".join(part.capitalize() for part in spec.name.replace("_", "-").split("-"))
        _LAYERS[spec.name] = type(name, (base,), {
            "_cell": spec.name, "__module__": __name__,
            "__doc__": f"A layer of the {spec.name} cell (registered through its "
                       f"description), with torch.nn.{'LSTM' if spec.num_states == 2 else 'GRU'}'s "
                       f"arguments."})
    return _LAYERS[spec.name]
