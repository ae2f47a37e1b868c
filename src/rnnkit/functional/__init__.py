"""The maths: each cell's forward equations and hand-derived backward, as plain tensor functions.

Nothing here imports the rest of rnnkit. See ``sequence.py`` for the time loop (and
zoneout and recurrent dropout, which act on it), and ``rnn.py``, ``lstm.py`` (with the
carry-gate LSTM), ``gru.py`` and ``layer_norm.py`` (layer-norm LSTM and GRU) for each
cell's equations.
"""

from rnnkit.functional.gru import GRU, gru_backward_step, gru_local_derivatives, gru_step
from rnnkit.functional.layer_norm import LN_GRU, LN_LSTM, ln_gru_step, ln_lstm_step
from rnnkit.functional.lstm import (
    CARRY_LSTM,
    LSTM,
    carry_lstm_step,
    lstm_backward_step,
    lstm_local_derivatives,
    lstm_step,
)
from rnnkit.functional.rnn import (
    RNN_RELU,
    RNN_TANH,
    rnn_backward_step,
    rnn_relu_step,
    rnn_tanh_step,
)
from rnnkit.functional.sequence import (
    LAYER_NORM_EPS,
    CellSpec,
    ExtraParam,
    GateBlock,
    Masks,
    SequenceCache,
    SequenceGrads,
    gate_blocks,
    layer_norm_backward,
    sequence_backward,
    sequence_forward,
)

CELLS: dict[str, CellSpec] = {spec.name: spec for spec in (
    RNN_TANH, RNN_RELU, LSTM, GRU, CARRY_LSTM, LN_LSTM, LN_GRU)}

# The plain, autograd-friendly step of each cell:
# (x_proj_t, state, w_hh, b_hh, extra=(), h_in=None) -> (state, cache).
STEPS = {"rnn_tanh": rnn_tanh_step, "rnn_relu": rnn_relu_step, "lstm": lstm_step,
         "gru": gru_step, "carry_lstm": carry_lstm_step, "ln_lstm": ln_lstm_step,
         "ln_gru": ln_gru_step}

__all__ = [
    "CELLS",
    "LAYER_NORM_EPS",
    "STEPS",
    "CellSpec",
    "ExtraParam",
    "GateBlock",
    "Masks",
    "SequenceCache",
    "SequenceGrads",
    "carry_lstm_step",
    "gate_blocks",
    "gru_backward_step",
    "gru_local_derivatives",
    "gru_step",
    "layer_norm_backward",
    "ln_gru_step",
    "ln_lstm_step",
    "lstm_backward_step",
    "lstm_local_derivatives",
    "lstm_step",
    "rnn_backward_step",
    "rnn_relu_step",
    "rnn_tanh_step",
    "sequence_backward",
    "sequence_forward",
]
