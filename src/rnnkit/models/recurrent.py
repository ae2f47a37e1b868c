"""Build an rnnkit recurrent layer by cell name, and initialise it."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import nn

import rnnkit.nn as rnn
from rnnkit.backends import available_backends
from rnnkit.backends.minimal import MIN_ENGINES
from rnnkit.choices import INIT_CHOICES
from rnnkit.functional import CELLS, cell_spec
from rnnkit.functional.minimal import MIN_CELLS


def forget_gate(cell: str) -> int | None:
    """The gate block whose bias is a forget gate's, for any cell ``--cell`` offers."""
    return MIN_CELLS[cell].forget_gate if cell in MIN_CELLS else cell_spec(cell).forget_gate


@dataclass(kw_only=True)
class EncoderConfig:
    """The recurrent encoder, declared once: every model config extends it, every task
    fills it from its options with :meth:`from_options`, and :func:`build_initialised_encoder`
    builds it. The defaults are the library's; each task's own are in its options."""

    cell: str = "lstm"  # a registered cell's name (rnnkit.functional.CELLS) or a minimal one
    hidden: int = 128
    layers: int = 1
    bidirectional: bool = False
    dropout: float = 0.0  # between recurrent layers (and, per model, around them)
    init: str = "torch"
    forget_bias: float | None = 1.0  # cells with a forget gate; Jozefowicz et al. 2015
    backend: str | None = None
    zoneout: float = 0.0  # inside the recurrence (rnnkit.nn.RNNBase)
    recurrent_dropout: float = 0.0
    proj_size: int = 0  # LSTM only: h projected to this width (LSTMP, Sak et al. 2014)
    chrono: int | None = None  # chrono initialisation's T_max (Tallec & Ollivier 2018)

    def __post_init__(self) -> None:
        if self.cell not in CELLS and self.cell not in MIN_CELLS:
            raise ValueError(f"--cell: expected one of {', '.join([*CELLS, *MIN_CELLS])}, got "
                             f"{self.cell!r}")
        if self.init not in INIT_CHOICES:
            raise ValueError(f"--init: expected one of {', '.join(INIT_CHOICES)}, got "
                             f"{self.init!r}")
        if (forget_gate(self.cell) is None and self.forget_bias is not None
                and self.forget_bias != EncoderConfig.forget_bias):
            raise ValueError(f"--forget-bias: the {self.cell} cell has no forget gate, so "
                             f"{self.forget_bias} would change nothing; leave it out")
        if self.chrono is not None:
            check_chrono(self.cell, self.chrono)
            if self.forget_bias is not None and self.forget_bias != EncoderConfig.forget_bias:
                raise ValueError(f"--forget-bias {self.forget_bias}: --chrono {self.chrono} sets "
                                 "the forget-gate biases itself; give one of the two")

    @property
    def encoder(self) -> EncoderConfig:
        """Just the encoder's fields, as an :class:`EncoderConfig`."""
        return EncoderConfig(**{f.name: getattr(self, f.name) for f in fields(EncoderConfig)})

    @staticmethod
    def from_options(options: Mapping[str, Any]) -> dict[str, Any]:
        """The encoder's fields found in a run's options (``config.json``), as keyword
        arguments for a model config; a run written before an option existed lacks it and
        gets the default."""
        return {f.name: options[f.name] for f in fields(EncoderConfig) if f.name in options}


def chrono_gates(cell: str) -> tuple[int, int | None] | None:
    """The (keep, write) gate blocks that ``--chrono`` sets for ``cell``, or None."""
    if cell in MIN_CELLS or cell not in CELLS:
        return None
    spec = cell_spec(cell)
    return None if spec.keep_gate is None else (spec.keep_gate, spec.write_gate)


def check_chrono(cell: str, t_max: int) -> None:
    """Refuse a ``--chrono`` that cannot act: a cell without a keep gate, or T_max < 3
    (the range 1 .. T_max - 1 would be empty or a single value)."""
    if chrono_gates(cell) is None:
        gated = [c for c in CELLS if chrono_gates(c) is not None]
        raise ValueError(f"--chrono: the {cell} cell has no gate that keeps its state; "
                         f"chrono initialisation needs one of {', '.join(gated)}")
    if isinstance(t_max, bool) or not isinstance(t_max, int) or t_max < 3:
        raise ValueError(f"--chrono: expected T_max, the longest dependency in steps, an "
                         f"integer >= 3, got {t_max!r}")


def build_recurrent(cell: str, input_size: int, hidden: int, layers: int = 1,
                    bidirectional: bool = False, dropout: float = 0.0,
                    backend: str | None = None, zoneout: float = 0.0,
                    recurrent_dropout: float = 0.0, proj_size: int = 0) -> rnn.RNNBase:
    """An ``rnnkit.nn`` layer with ``batch_first=True``.

    Args:
        cell: a registered cell's name (:data:`rnnkit.functional.CELLS`: ``rnn`` is the tanh
            RNN; ``ln-lstm``, ``ln-gru`` the layer-norm variants; ``carry-lstm`` the
            carry-gate LSTM; and any cell added with ``register_cell``), or a minimal cell
            (``mingru``, ``minlstm``: :class:`rnnkit.nn.MinGRU`, :class:`rnnkit.nn.MinLSTM`).
        backend: an engine the cell runs on, or None; one it cannot run on falls back to the
            automatic choice with a warning.
        input_size, hidden, layers, bidirectional, dropout: as torch.nn's layers.
        zoneout, recurrent_dropout: regularisers inside the recurrence (:class:`rnnkit.nn.RNNBase`).
        proj_size: LSTM only, the width of the projected hidden state (0: none).
    """
    if cell in MIN_CELLS:
        return _build_minimal(cell, input_size, hidden, layers, bidirectional, dropout, backend,
                              zoneout, recurrent_dropout, proj_size)
    if cell not in CELLS:
        raise ValueError(f"cell: expected one of {', '.join([*CELLS, *MIN_CELLS])}, got "
                         f"{cell!r}")
    if backend is not None and backend not in available_backends():
        warnings.warn(f"backend: the {cell} cell runs on {', '.join(available_backends())}, "
                      f"not {backend!r}; using the automatic choice", stacklevel=2)
        backend = None
    kwargs = {"num_layers": layers, "bidirectional": bidirectional, "batch_first": True,
              "dropout": dropout if layers > 1 else 0.0, "backend": backend,
              "zoneout": zoneout, "recurrent_dropout": recurrent_dropout}
    if proj_size:
        if cell != "lstm":
            raise ValueError(f"proj_size: only the lstm cell has a projection, got cell {cell!r}")
        kwargs["proj_size"] = proj_size
    return rnn.layer_class(cell)(input_size, hidden, **kwargs)


def _build_minimal(cell: str, input_size: int, hidden: int, layers: int, bidirectional: bool,
                   dropout: float, backend: str | None, zoneout: float,
                   recurrent_dropout: float, proj_size: int) -> rnn.MinRNNBase:
    """A :class:`rnnkit.nn.MinGRU` or :class:`rnnkit.nn.MinLSTM` (``batch_first=True``)."""
    for name, value in (("zoneout", zoneout), ("recurrent-dropout", recurrent_dropout),
                        ("proj-size", proj_size)):
        if value:
            raise ValueError(f"--{name}: not available with the {cell} cell (rnnkit defines "
                             f"it for the cells with a recurrent product); got {value}, leave "
                             f"it out (--dropout acts between layers)")
    if backend is not None and backend not in MIN_ENGINES:
        warnings.warn(f"backend: the {cell} cell runs on {', '.join(MIN_ENGINES)}, not "
                      f"{backend!r}; using the automatic choice", stacklevel=3)
        backend = None
    layer = rnn.MinGRU if cell == "mingru" else rnn.MinLSTM
    return layer(input_size, hidden, layers, batch_first=True, bidirectional=bidirectional,
                 dropout=dropout if layers > 1 else 0.0, backend=backend)


@torch.no_grad()
def initialise_recurrent(layer: nn.Module, scheme: str = "torch",
                         forget_bias: float | None = None, chrono: int | None = None) -> None:
    """Re-initialise a recurrent layer's weights.

    Args:
        layer: an ``rnnkit.nn`` (or ``torch.nn``) RNN/LSTM/GRU.
        scheme: ``"torch"`` keeps torch's U(-1/sqrt(H), 1/sqrt(H)); ``"orthogonal"`` makes each
            gate block of every ``weight_hh`` orthogonal (Saxe et al. 2014) and each
            ``weight_ih`` Xavier-uniform, with zero biases; ``"identity"`` is the IRNN
            recipe (Le et al. 2015, meant for relu RNNs): each ``weight_hh`` block the
            identity, ``weight_ih`` ~ N(0, 0.001^2), zero biases.
        forget_bias: for a cell with a forget gate (its description's ``forget_gate``: the
            plain, layer-norm and carry-gate LSTMs), the forget gate's total bias
            (``bias_ih`` + ``bias_hh``) is set to this value (Jozefowicz et al. 2015: 1.0 eases learning long memories);
            None leaves the biases as the scheme made them.
        chrono: T_max of chrono initialisation (Tallec & Ollivier 2018, "Can recurrent
            neural networks warp time?"), applied last, to every layer and direction: each
            unit's keep-gate bias (an LSTM's forget gate, a GRU's update gate ``z``) is
            ``log(u)`` with ``u ~ U(1, T_max - 1)``, and an LSTM's input-gate bias is its
            negative, so that at the start each unit remembers over about ``u`` steps,
            spread over the range of dependencies the task holds. ``bias_hh`` of those
            blocks is set to 0, so the totals are exactly these values.
    """
    if scheme not in INIT_CHOICES:
        raise ValueError(f"init: expected one of {', '.join(INIT_CHOICES)}, got {scheme!r}")
    hidden = layer.hidden_size
    cell = layer.mode if layer.mode in MIN_CELLS else cell_spec(layer.mode).name
    forget = forget_gate(cell)
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
        if forget_bias is not None and forget is not None:
            if name.startswith("bias_ih"):
                param[forget * hidden: (forget + 1) * hidden] = forget_bias
            elif name.startswith("bias_hh"):
                param[forget * hidden: (forget + 1) * hidden] = 0.0
    if chrono is not None:
        _chrono(layer, cell, chrono)


def _chrono(layer: nn.Module, cell: str, t_max: int) -> None:
    check_chrono(cell, t_max)
    keep, write = chrono_gates(cell)
    hidden = layer.hidden_size
    for name, param in layer.named_parameters():
        if name.startswith("bias_ih"):
            bias = torch.empty(hidden, dtype=torch.float64).uniform_(1.0, t_max - 1.0).log_()
            param[keep * hidden:(keep + 1) * hidden] = bias.to(param.dtype)
            if write is not None:
                param[write * hidden:(write + 1) * hidden] = -bias.to(param.dtype)
        elif name.startswith("bias_hh"):
            for block in (keep, write):
                if block is not None:
                    param[block * hidden:(block + 1) * hidden] = 0.0


def build_initialised_encoder(config: EncoderConfig, input_size: int) -> rnn.RNNBase:
    """:func:`build_recurrent` then :func:`initialise_recurrent`, from an
    :class:`EncoderConfig` (or a model config, which extends it)."""
    encoder = build_recurrent(config.cell, input_size, config.hidden, config.layers,
                              config.bidirectional, config.dropout, config.backend,
                              config.zoneout, config.recurrent_dropout, config.proj_size)
    initialise_recurrent(encoder, config.init, config.forget_bias, config.chrono)
    return encoder
