"""The layer class of every registered cell: the built-in ones by name, and, for a cell
registered only through its description (:func:`rnnkit.functional.register_cell`), a
class made on first use with torch.nn.LSTM's constructor (two states) or torch.nn.GRU's
(one)."""

from __future__ import annotations

import functools

from rnnkit.functional import cell_spec
from rnnkit.nn.rnn import (
    GRU,
    LSTM,
    RNN,
    CarryLSTM,
    LayerNormGRU,
    LayerNormLSTM,
    RNNBase,
    _GRULike,
    _LSTMLike,
)

_LAYERS: dict[str, type[RNNBase]] = {"lstm": LSTM, "gru": GRU, "ln-lstm": LayerNormLSTM,
                                     "ln-gru": LayerNormGRU, "carry-lstm": CarryLSTM}


def layer_class(cell: str):
    """The layer class of a cell (by name or alias), as a constructor taking torch.nn's
    arguments: ``layer_class("ln-gru")(input_size, hidden_size, num_layers, ...)``."""
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
