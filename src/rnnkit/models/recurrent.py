"""Build an rnnkit recurrent layer by cell name, and initialise it."""

from __future__ import annotations

import torch
from torch import nn

import rnnkit.nn as rnn
from rnnkit.choices import CELL_CHOICES, INIT_CHOICES

# Names the CLI's --cell and --init accept, and the layer each cell name builds.
_LAYERS = {"lstm": rnn.LSTM, "gru": rnn.GRU, "ln-lstm": rnn.LayerNormLSTM,
           "ln-gru": rnn.LayerNormGRU, "carry-lstm": rnn.CarryLSTM}
if set(CELL_CHOICES) != {"rnn", "rnn-relu", *_LAYERS}:  # the command line offers CELL_CHOICES
    raise ImportError("rnnkit.choices.CELL_CHOICES and models.recurrent._LAYERS disagree")
_LSTM_MODES = ("lstm", "LSTM", "ln_lstm", "carry_lstm")  # cells with a forget gate at block 1


def build_recurrent(cell: str, input_size: int, hidden: int, layers: int = 1,
                    bidirectional: bool = False, dropout: float = 0.0,
                    backend: str | None = None, zoneout: float = 0.0,
                    recurrent_dropout: float = 0.0, proj_size: int = 0) -> rnn.RNNBase:
    """An ``rnnkit.nn`` layer with ``batch_first=True``.

    Args:
        cell: one of :data:`CELL_CHOICES` (``rnn`` is the tanh RNN; ``ln-lstm``,
            ``ln-gru`` the layer-norm variants; ``carry-lstm`` the carry-gate LSTM).
        input_size, hidden, layers, bidirectional, dropout: as torch.nn's layers.
        backend: rnnkit engine, or None for automatic.
        zoneout, recurrent_dropout: regularisers inside the recurrence (:class:`rnnkit.nn.RNNBase`).
        proj_size: LSTM only, the width of the projected hidden state (0: none).
    """
    if cell not in CELL_CHOICES:
        raise ValueError(f"cell: expected one of {', '.join(CELL_CHOICES)}, got {cell!r}")
    kwargs = {"num_layers": layers, "bidirectional": bidirectional, "batch_first": True,
              "dropout": dropout if layers > 1 else 0.0, "backend": backend,
              "zoneout": zoneout, "recurrent_dropout": recurrent_dropout}
    if proj_size:
        if cell != "lstm":
            raise ValueError(f"proj_size: only the lstm cell has a projection, got cell {cell!r}")
        kwargs["proj_size"] = proj_size
    if cell in _LAYERS:
        return _LAYERS[cell](input_size, hidden, **kwargs)
    return rnn.RNN(input_size, hidden, nonlinearity="relu" if cell == "rnn-relu" else "tanh", **kwargs)


@torch.no_grad()
def initialise_recurrent(layer: nn.Module, scheme: str = "torch",
                         forget_bias: float | None = None) -> None:
    """Re-initialise a recurrent layer's weights.

    Args:
        layer: an ``rnnkit.nn`` (or ``torch.nn``) RNN/LSTM/GRU.
        scheme: ``"torch"`` keeps torch's U(-1/sqrt(H), 1/sqrt(H)); ``"orthogonal"`` makes each
            gate block of every ``weight_hh`` orthogonal (Saxe et al. 2014) and each
            ``weight_ih`` Xavier-uniform, with zero biases; ``"identity"`` is the IRNN
            recipe (Le et al. 2015, meant for relu RNNs): each ``weight_hh`` block the
            identity, ``weight_ih`` ~ N(0, 0.001^2), zero biases.
        forget_bias: for the LSTMs (plain, layer-norm, carry-gate), the forget gate's total bias (``bias_ih`` + ``bias_hh``) is set
            to this value (Jozefowicz et al. 2015: 1.0 eases learning long memories);
            None leaves the biases as the scheme made them.
    """
    if scheme not in INIT_CHOICES:
        raise ValueError(f"init: expected one of {', '.join(INIT_CHOICES)}, got {scheme!r}")
    hidden = layer.hidden_size
    for name, param in layer.named_parameters():
        if scheme in ("orthogonal", "identity"):
            if name.startswith("weight_hh"):
                for block in param.split(hidden, dim=0):
                    if scheme == "orthogonal":
                        nn.init.orthogonal_(block)
                    else:
                        nn.init.eye_(block)
            elif name.startswith("weight_ih"):
                for block in param.split(hidden, dim=0):
                    if scheme == "orthogonal":
                        nn.init.xavier_uniform_(block)
                    else:
                        nn.init.normal_(block, std=1e-3)
            elif name.startswith("bias"):
                param.zero_()
        if forget_bias is not None and getattr(layer, "mode", "") in _LSTM_MODES:
            if name.startswith("bias_ih"):
                param[hidden: 2 * hidden] = forget_bias
            elif name.startswith("bias_hh"):
                param[hidden: 2 * hidden] = 0.0


def build_initialised_encoder(config, input_size: int) -> rnn.RNNBase:
    """:func:`build_recurrent` then :func:`initialise_recurrent`, from a model config with
    ``cell, hidden, layers, bidirectional, dropout, backend, init, forget_bias`` (and
    ``zoneout``, ``recurrent_dropout``, ``proj_size``, zero when absent)."""
    encoder = build_recurrent(config.cell, input_size, config.hidden, config.layers,
                              config.bidirectional, config.dropout, config.backend,
                              getattr(config, "zoneout", 0.0),
                              getattr(config, "recurrent_dropout", 0.0),
                              getattr(config, "proj_size", 0))
    initialise_recurrent(encoder, config.init, config.forget_bias)
    return encoder
