"""Layers of the minimal cells (Feng et al. 2024): :class:`MinGRU`, :class:`MinLSTM` and
their single-step cells.

torch.nn-style arguments (``num_layers``, ``bidirectional``, ``batch_first``, ``dropout``,
an initial state, ``lengths=``, PackedSequence) and the forward contract of
:class:`rnnkit.nn.RNNBase`: ``output, h_n = layer(x, h_0)``. Each layer and direction has
``weight_ih_l{k}[_reverse]`` [gates * H, in] and ``bias_ih_l{k}[_reverse]`` and no
recurrent weight: the gates read only the input (equations in
:mod:`rnnkit.functional.minimal`), so a whole sequence is one matrix product and a linear
scan (engines in :mod:`rnnkit.backends.minimal`).

``residual=True`` wraps each layer in the block of the paper's models:
``x + W_out minrnn(LayerNorm(x)) + b_out``, with ``norm_weight_l{k}``, ``norm_bias_l{k}``,
``weight_out_l{k}`` [input_size, directions * H] and ``bias_out_l{k}``; every layer then
reads and writes ``input_size`` features and ``hidden_size`` is the width inside.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.backends import reverse_padded
from rnnkit.backends.minimal import MIN_ENGINES, run_min, select_min_engine
from rnnkit.functional.minimal import ACTIVATIONS, MIN_CELLS, min_step, valid_steps
from rnnkit.nn.rnn import RNNBase
from rnnkit.nn.validation import check_flag, check_input, check_like, check_size


class MinRNNBase(RNNBase):
    """Shared machinery of :class:`MinGRU` and :class:`MinLSTM` (``forward``, the
    initial-state and input checks are :class:`RNNBase`'s).

    Args:
        cell: ``"mingru"`` or ``"minlstm"``.
        input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, device, dtype: as torch.nn.GRU.
        activation: ``"g"`` (the paper's log-space variant: a positive candidate) or
            ``"identity"`` (its plain variant).
        residual: wrap each layer in the paper's residual block (the module docstring).
        backend: ``"native"``, ``"scan"`` or ``"reference"`` (the step loop), or None for
            automatic (native on the CPU, scan elsewhere).
    """

    def __init__(self, cell: str, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, device=None, dtype=None, *,
                 activation: str = "g", residual: bool = False,
                 backend: str | None = None) -> None:
        nn.Module.__init__(self)
        spec = MIN_CELLS[cell]
        self._set_arguments(spec.name, input_size, hidden_size, num_layers, bias, batch_first,
                            dropout, bidirectional)
        check_flag(residual, "residual")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation: expected one of {', '.join(ACTIVATIONS)}, got "
                             f"{activation!r}")
        if backend is not None and backend not in MIN_ENGINES:
            raise ValueError(f"backend: the minimal cells run on {', '.join(MIN_ENGINES)} or "
                             f"None (automatic), got {backend!r}")
        self.activation = activation
        self.residual = residual
        self.backend = backend
        # what RNNBase's forward and rnnkit.nn.Stream read
        self.proj_size = 0
        self.zoneout = (0.0,)
        self.recurrent_dropout = 0.0
        factory = {"device": device, "dtype": dtype}
        directions = 2 if bidirectional else 1
        self._flat_weights_names: list[str] = []
        self._extra_names: list[str] = []
        for layer in range(num_layers):
            width = input_size if layer == 0 or residual else hidden_size * directions
            shapes = {}
            for direction in range(directions):
                suffix = f"_l{layer}" + ("_reverse" if direction else "")
                shapes["weight_ih" + suffix] = (spec.gates * hidden_size, width)
                if bias:
                    shapes["bias_ih" + suffix] = (spec.gates * hidden_size,)
            if residual:
                shapes |= {f"norm_weight_l{layer}": (width,), f"norm_bias_l{layer}": (width,),
                           f"weight_out_l{layer}": (width, hidden_size * directions)}
                if bias:
                    shapes[f"bias_out_l{layer}"] = (width,)
            for name, shape in shapes.items():
                self.register_parameter(name, nn.Parameter(torch.empty(shape, **factory)))
                self._flat_weights_names.append(name)
        self._shapes = {name: p.shape for name, p in self._parameters.items()}
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The gate weights and biases ~ U(-1/sqrt(H), 1/sqrt(H)) as torch.nn's recurrent
        layers; the residual block's output layer as torch.nn.Linear, its norm at 1 and 0."""
        stdv = 1.0 / math.sqrt(self.hidden_size)
        for name in self._flat_weights_names:
            param = getattr(self, name)
            if name.startswith("norm_weight"):
                nn.init.ones_(param)
            elif name.startswith("norm_bias"):
                nn.init.zeros_(param)
            elif name.startswith(("weight_out", "bias_out")):
                bound = 1.0 / math.sqrt(self.hidden_size * (2 if self.bidirectional else 1))
                nn.init.uniform_(param, -bound, bound)
            else:
                nn.init.uniform_(param, -stdv, stdv)

    @property
    def all_weights(self) -> list[list[nn.Parameter]]:
        return [[getattr(self, n) for n in self._flat_weights_names
                 if n.endswith(f"_l{k}") or f"_l{k}_" in n] for k in range(self.num_layers)]

    @property
    def _num_states(self) -> int:
        return 1

    def _gate_weights(self, layer: int, direction: int) -> tuple[Tensor, Tensor | None]:
        suffix = f"_l{layer}" + ("_reverse" if direction else "")
        return (getattr(self, "weight_ih" + suffix),
                getattr(self, "bias_ih" + suffix) if self.bias else None)

    def _block_in(self, x: Tensor, layer: int) -> Tensor:
        if not self.residual:
            return x
        return F.layer_norm(x, x.shape[-1:], getattr(self, f"norm_weight_l{layer}"),
                            getattr(self, f"norm_bias_l{layer}"))

    def _block_out(self, x: Tensor, y: Tensor, layer: int) -> Tensor:
        if not self.residual:
            return y
        return x + F.linear(y, getattr(self, f"weight_out_l{layer}"),
                            getattr(self, f"bias_out_l{layer}") if self.bias else None)

    def _run_layers(self, x: Tensor, states: list[Tensor], lengths: Tensor | None,
                    between_layers=None):
        engine = select_min_engine(self.backend, x.device, x.dtype)
        directions = 2 if self.bidirectional else 1
        T = x.shape[0]
        valid = valid_steps(lengths, T, x.device)
        finals = []
        layer_input = x
        for layer in range(self.num_layers):
            inner = self._block_in(layer_input, layer)
            outputs = []
            for direction in range(directions):
                k = layer * directions + direction
                w, b = self._gate_weights(layer, direction)
                seq = reverse_padded(inner, lengths) if direction else inner
                proj = F.linear(seq, w, b)  # [T, B, gates * H]: the one matrix product
                h = run_min(engine, self.mode, self.activation, proj, states[0][k], lengths)
                finals.append(h[-1])  # carried past each sequence's end
                if valid is not None:
                    h = h * valid  # zero past the end, as torch.nn's outputs
                outputs.append(reverse_padded(h, lengths) if direction else h)
            y = outputs[0] if directions == 1 else torch.cat(outputs, dim=2)
            layer_input = self._block_out(layer_input, y, layer)
            if layer < self.num_layers - 1:
                layer_input = self._between(layer_input, layer, between_layers)
        if valid is not None and self.residual:
            layer_input = layer_input * valid
        return layer_input, [torch.stack(finals)]

    def step(self, input: Tensor, hx=None):
        """One time step, ``y, h = layer.step(x_t, h)``: equal to ``forward`` on a sequence
        of one step (under ``torch.no_grad()`` computed directly, one matrix-vector product
        and the element-wise update per layer)."""
        if self.bidirectional:
            raise ValueError("step: a bidirectional layer reads each sequence from both ends, "
                             "so it cannot advance one step at a time; call the layer on the "
                             "whole sequence")
        check_input(input, self.input_size, self.weight_ih_l0, ranks=(1, 2))
        unbatched = input.dim() == 1
        if torch.is_grad_enabled() or (self.training and self.dropout > 0):
            time_dim = 1 if self.batch_first and not unbatched else 0
            output, state = self.forward(input.unsqueeze(time_dim), hx)
            return output.squeeze(time_dim), state
        x = input.view(1, -1) if unbatched else input  # [B, I]
        self._check_weights()
        h = self._initial_states(hx, x.unsqueeze(0), unbatched)[0]  # [L, B, H]
        new = []
        for layer in range(self.num_layers):
            w, b = self._gate_weights(layer, 0)
            state = min_step(self.mode, F.linear(self._block_in(x, layer), w, b), h[layer],
                             self.activation)
            new.append(state)
            x = self._block_out(x, state, layer)
        new_h = torch.stack(new)
        if unbatched:
            return x[0], new_h[:, 0]
        return x, new_h

    def extra_repr(self) -> str:
        extras = [f"activation={self.activation!r}"] if self.activation != "g" else []
        return self._repr_with(extras + (["residual=True"] if self.residual else []))


_ARGS = """
    Args:
        input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, device, dtype: as torch.nn.GRU.
        activation: ``"g"`` (default; the paper's log-space variant, a positive candidate)
            or ``"identity"`` (the plain variant).
        residual: each layer as the paper's block ``x + W_out minrnn(LayerNorm(x))``.
        backend: ``"native"``, ``"scan"``, ``"reference"`` or None (automatic).
"""


class MinGRU(MinRNNBase):
    __doc__ = ("""minGRU (Feng et al. 2024): ``z_t = sigmoid(W_z x_t + b_z)``,
    ``h_t = (1 - z_t) h_{t-1} + z_t act(W_h x_t + b_h)``; ``weight_ih`` [2H, in] stacks
    z, h. Trains in parallel over time.""" + _ARGS)

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, device=None, dtype=None, *,
                 activation: str = "g", residual: bool = False,
                 backend: str | None = None) -> None:
        super().__init__("mingru", input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, device, dtype, activation=activation,
                         residual=residual, backend=backend)


class MinLSTM(MinRNNBase):
    __doc__ = ("""minLSTM (Feng et al. 2024): forget and input gates ``f_t, i_t`` of the
    input alone, normalised to ``f' = f / (f + i)``, ``i' = i / (f + i)``;
    ``h_t = f'_t h_{t-1} + i'_t act(W_h x_t + b_h)``; ``weight_ih`` [3H, in] stacks f, i,
    h. One state (no cell state). Trains in parallel over time.""" + _ARGS)

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, device=None, dtype=None, *,
                 activation: str = "g", residual: bool = False,
                 backend: str | None = None) -> None:
        super().__init__("minlstm", input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, device, dtype, activation=activation,
                         residual=residual, backend=backend)


class MinCell(nn.Module):
    """One step of a minimal cell, as torch.nn.GRUCell: ``h' = cell(x, h)``.

    Args:
        cell: ``"mingru"`` or ``"minlstm"``; input_size, hidden_size, bias, device, dtype:
            as torch.nn.GRUCell; activation: ``"g"`` or ``"identity"``.
    """

    def __init__(self, cell: str, input_size: int, hidden_size: int, bias: bool = True,
                 device=None, dtype=None, *, activation: str = "g") -> None:
        super().__init__()
        if cell not in MIN_CELLS:
            raise ValueError(f"cell: expected one of {', '.join(MIN_CELLS)}, got {cell!r}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation: expected one of {', '.join(ACTIVATIONS)}, got "
                             f"{activation!r}")
        check_size(input_size, "input_size")
        check_size(hidden_size, "hidden_size")
        check_flag(bias, "bias")
        self.mode, self.activation = cell, activation
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        gates = MIN_CELLS[cell].gates * hidden_size
        factory = {"device": device, "dtype": dtype}
        self.weight_ih = nn.Parameter(torch.empty(gates, input_size, **factory))
        self.bias_ih = nn.Parameter(torch.empty(gates, **factory)) if bias else None
        stdv = 1.0 / math.sqrt(hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -stdv, stdv)

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        check_input(input, self.input_size, self.weight_ih, ranks=(1, 2))
        x = input.unsqueeze(0) if input.dim() == 1 else input
        if hx is None:
            hx = x.new_zeros(x.shape[0], self.hidden_size)
        else:
            check_like(hx, self.weight_ih, "hx")
            h = hx.unsqueeze(0) if hx.dim() == 1 else hx
            if h.shape != (x.shape[0], self.hidden_size):
                raise ValueError(f"hx: expected shape {(*input.shape[:-1], self.hidden_size)}, "
                                 f"got {tuple(hx.shape)}")
            hx = h
        out = min_step(self.mode, F.linear(x, self.weight_ih, self.bias_ih), hx,
                       self.activation)
        return out[0] if input.dim() == 1 else out


class MinGRUCell(MinCell):
    """One minGRU step (see :class:`MinGRU`)."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None,
                 dtype=None, *, activation: str = "g") -> None:
        super().__init__("mingru", input_size, hidden_size, bias, device, dtype,
                         activation=activation)


class MinLSTMCell(MinCell):
    """One minLSTM step (see :class:`MinLSTM`)."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None,
                 dtype=None, *, activation: str = "g") -> None:
        super().__init__("minlstm", input_size, hidden_size, bias, device, dtype,
                         activation=activation)


__all__ = ["MinCell", "MinGRU", "MinGRUCell", "MinLSTM", "MinLSTMCell", "MinRNNBase"]
