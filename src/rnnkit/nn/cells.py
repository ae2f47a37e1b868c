"""Single-step cells, drop-in for torch.nn.RNNCell, LSTMCell and GRUCell.

Each call runs one time step through the selected backend (a sequence of length 1),
so the gradient is the same hand-derived BPTT the sequence layers use.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from rnnkit.backends import available_backends, run_direction
from rnnkit.nn.validation import check_flag, check_input, check_size, check_state


class RNNCellBase(nn.Module):
    """Shared machinery; parameters ``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh``."""

    def __init__(self, cell: str, gates: int, input_size: int, hidden_size: int, bias: bool,
                 device=None, dtype=None, *, backend: str | None = None) -> None:
        super().__init__()
        # torch.nn's cells accept zero sizes (and compute empty or zero results)
        check_size(input_size, "input_size", allow_zero=True)
        check_size(hidden_size, "hidden_size", allow_zero=True)
        check_flag(bias, "bias")
        if backend is not None and backend not in available_backends():
            raise ValueError(f"backend: expected one of {available_backends()} or None, got {backend!r}")
        self.mode = cell
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.bias = bias
        self.backend = backend
        factory = {"device": device, "dtype": dtype}
        self.weight_ih = nn.Parameter(torch.empty(gates * hidden_size, input_size, **factory))
        self.weight_hh = nn.Parameter(torch.empty(gates * hidden_size, hidden_size, **factory))
        if bias:
            self.bias_ih = nn.Parameter(torch.empty(gates * hidden_size, **factory))
            self.bias_hh = nn.Parameter(torch.empty(gates * hidden_size, **factory))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """torch.nn's initialisation: U(-1/sqrt(H), 1/sqrt(H)) (zeros when H = 0)."""
        stdv = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0.0
        for weight in self.parameters():
            nn.init.uniform_(weight, -stdv, stdv)

    def _step(self, input: Tensor, hx, num_states: int):
        check_input(input, self.input_size, self.weight_ih, ranks=(1, 2))
        unbatched = input.dim() == 1
        x = input.unsqueeze(0) if unbatched else input  # [B, I]
        shape = (self.hidden_size,) if unbatched else (x.shape[0], self.hidden_size)
        if hx is None:
            zeros = torch.zeros(x.shape[0], self.hidden_size, dtype=x.dtype, device=x.device)
            states = [zeros] * num_states
        else:
            given = list(hx) if num_states == 2 else [hx]
            if num_states == 2 and (not isinstance(hx, (tuple, list)) or len(hx) != 2):
                raise TypeError(f"hx: expected a tuple (h_0, c_0), got {type(hx).__name__}")
            names = ["hx"] if num_states == 1 else ["hx[0] (h_0)", "hx[1] (c_0)"]
            states = [check_state(s, shape, self.weight_ih, n) for s, n in zip(given, names)]
            if unbatched:
                states = [s.unsqueeze(0) for s in states]
        _, final = run_direction(self.mode, x.unsqueeze(0), tuple(states), self.weight_ih,
                                 self.weight_hh, self.bias_ih, self.bias_hh, backend=self.backend)
        return [f.squeeze(0) for f in final] if unbatched else list(final)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if not self.bias:
            s += ", bias=False"
        if self.mode == "rnn-relu":
            s += ", nonlinearity='relu'"
        return s


class RNNCell(RNNCellBase):
    """One step of the Elman RNN; drop-in for torch.nn.RNNCell."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 nonlinearity: str = "tanh", device=None, dtype=None, *,
                 backend: str | None = None) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity: expected 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        super().__init__("rnn" if nonlinearity == "tanh" else "rnn-relu", 1, input_size, hidden_size, bias, device, dtype,
                         backend=backend)

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        """``input`` [B, I] or [I]; ``hx`` [B, H] or [H]; returns ``h'``."""
        return self._step(input, hx, 1)[0]


class LSTMCell(RNNCellBase):
    """One LSTM step; drop-in for torch.nn.LSTMCell."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None,
                 dtype=None, *, backend: str | None = None) -> None:
        super().__init__("lstm", 4, input_size, hidden_size, bias, device, dtype, backend=backend)

    def forward(self, input: Tensor, hx: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        """``input`` [B, I] or [I]; ``hx`` = (h, c), each [B, H] or [H]; returns ``(h', c')``."""
        h, c = self._step(input, hx, 2)
        return h, c


class GRUCell(RNNCellBase):
    """One GRU step; drop-in for torch.nn.GRUCell."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None,
                 dtype=None, *, backend: str | None = None) -> None:
        super().__init__("gru", 3, input_size, hidden_size, bias, device, dtype, backend=backend)

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        """``input`` [B, I] or [I]; ``hx`` [B, H] or [H]; returns ``h'``."""
        return self._step(input, hx, 1)[0]
