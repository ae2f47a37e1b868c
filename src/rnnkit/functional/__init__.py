"""The maths: each cell's forward equations and hand-derived backward, as plain tensor functions.

Nothing here imports the rest of rnnkit but the torch-free name lists of
:mod:`rnnkit.choices`. See ``sequence.py`` for the time loop (and
zoneout and recurrent dropout, which act on it), and ``rnn.py``, ``lstm.py`` (with the
carry-gate LSTM), ``gru.py`` and ``layer_norm.py`` (layer-norm LSTM and GRU) for each
cell's equations. :data:`CELLS` is the registry of cell descriptions.
"""

from rnnkit.choices import CELL_CHOICES
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

CELLS: dict[str, CellSpec] = {}  # the cell registry: one name -> its description
_ALIASES: dict[str, str] = {}  # other spellings -> the name


def register_cell(spec: CellSpec) -> CellSpec:
    """Add a cell to the registry, under its name and its aliases; the layers
    (:func:`rnnkit.nn.register_cell` also makes a layer class), engines, tasks, export and
    server find it there. A name already taken by another cell is an error."""
    if not isinstance(spec, CellSpec):
        raise TypeError(f"register_cell: expected a CellSpec, got {type(spec).__name__}")
    if not spec.name or any(c.isspace() for c in spec.name):
        raise ValueError(f"register_cell: expected a name without spaces, got {spec.name!r}")
    if spec.num_states not in (1, 2) or spec.gates < 1:
        raise ValueError(f"register_cell: {spec.name}: expected 1 or 2 states and at least "
                         f"one gate, got {spec.num_states} and {spec.gates}")
    for field in ("forget_gate", "keep_gate", "write_gate"):
        block = getattr(spec, field)
        if block is not None and not 0 <= block < spec.gates:
            raise ValueError(f"register_cell: {spec.name}: {field} {block} is not one of its "
                             f"{spec.gates} gate blocks")
    if not callable(spec.step):
        raise TypeError(f"register_cell: {spec.name}: step must be a function")
    for name in (spec.name, *spec.aliases):
        taken = CELLS.get(name) or CELLS.get(_ALIASES.get(name, ""))
        if taken is not None and taken is not spec:
            raise ValueError(f"register_cell: the name {name!r} is taken by the {taken.name} cell")
    CELLS[spec.name] = spec
    CELL_CHOICES.add(spec.name)  # --cell offers it
    _ALIASES.update(dict.fromkeys(spec.aliases, spec.name))
    return spec


def cell_name(name: str) -> str:
    """The registered name for ``name`` or one of its aliases (``ln_lstm``, torch.nn's
    ``LSTM``...); ValueError naming the cells otherwise."""
    if isinstance(name, str):
        if name in CELLS:
            return name
        if name in _ALIASES:
            return _ALIASES[name]
    raise ValueError(f"cell: expected one of {', '.join(CELLS)}, got {name!r}")


def cell_spec(name: str) -> CellSpec:
    """The :class:`CellSpec` of a cell, by its name or an alias."""
    return CELLS[cell_name(name)]


for _spec in (RNN_TANH, RNN_RELU, LSTM, GRU, LN_LSTM, LN_GRU, CARRY_LSTM):
    register_cell(_spec)

__all__ = [
    "CELLS",
    "LAYER_NORM_EPS",
    "CellSpec",
    "ExtraParam",
    "GateBlock",
    "Masks",
    "SequenceCache",
    "SequenceGrads",
    "carry_lstm_step",
    "cell_name",
    "cell_spec",
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
    "register_cell",
    "rnn_backward_step",
    "rnn_relu_step",
    "rnn_tanh_step",
    "sequence_backward",
    "sequence_forward",
]
