"""The maths: each cell's forward equations and hand-derived backward, as plain tensor functions.

Nothing here imports the rest of rnnkit. See ``sequence.py`` for the time loop and
``rnn.py``, ``lstm.py``, ``gru.py`` for each cell's equations.
"""

from rnnkit.functional.gru import GRU, gru_backward_step, gru_local_derivatives, gru_step
from rnnkit.functional.lstm import LSTM, lstm_backward_step, lstm_local_derivatives, lstm_step
from rnnkit.functional.rnn import (
    RNN_RELU,
    RNN_TANH,
    rnn_backward_step,
    rnn_relu_step,
    rnn_tanh_step,
)
from rnnkit.functional.sequence import (
    CellSpec,
    GateBlock,
    SequenceCache,
    SequenceGrads,
    gate_blocks,
    sequence_backward,
    sequence_forward,
)

CELLS: dict[str, CellSpec] = {spec.name: spec for spec in (RNN_TANH, RNN_RELU, LSTM, GRU)}

# The plain, autograd-friendly step of each cell: (x_proj_t, state, w_hh, b_hh) -> (state, cache).
STEPS = {"rnn_tanh": rnn_tanh_step, "rnn_relu": rnn_relu_step, "lstm": lstm_step, "gru": gru_step}

__all__ = [
    "CELLS",
    "STEPS",
    "CellSpec",
    "GateBlock",
    "SequenceCache",
    "SequenceGrads",
    "gate_blocks",
    "gru_backward_step",
    "gru_local_derivatives",
    "gru_step",
    "lstm_backward_step",
    "lstm_local_derivatives",
    "lstm_step",
    "rnn_backward_step",
    "rnn_relu_step",
    "rnn_tanh_step",
    "sequence_backward",
    "sequence_forward",
]
