"""What a user writes today for the variants torch.nn lacks: torch.nn modules in a Python
loop, differentiated by autograd. These are the competitors of rnnkit's fused variants in
``engine.py`` (written from the variants' definitions with torch.nn building blocks, not
from rnnkit's code).

Each takes [T, B, I] input, returns ``(y [T, B, H], final state)``, and has
``load_from(layer)`` (copy an rnnkit layer's weights) and ``ordered_parameters()`` (its
parameters in the order of the rnnkit layer's ``parameters()``, to compare gradients).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _copy(pairs: list[tuple[Tensor, Tensor]]) -> None:
    with torch.no_grad():
        for dst, src in pairs:
            dst.copy_(src)


class LayerNormLSTMLoop(nn.Module):
    """Layer-norm LSTM cell from nn.Linear and nn.LayerNorm, looped over time."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        H = hidden_size
        self.ih = nn.Linear(input_size, 4 * H, bias=False)
        self.hh = nn.Linear(H, 4 * H, bias=False)
        self.ln_ih, self.ln_hh, self.ln_c = nn.LayerNorm(4 * H), nn.LayerNorm(4 * H), nn.LayerNorm(H)

    def forward(self, x: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        h = c = x.new_zeros(x.shape[1], self.hh.in_features)
        xs = self.ln_ih(self.ih(x))  # the input side for all steps at once
        outputs = []
        for t in range(x.shape[0]):
            i, f, g, o = (xs[t] + self.ln_hh(self.hh(h))).chunk(4, 1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(self.ln_c(c))
            outputs.append(h)
        return torch.stack(outputs), (h, c)

    def load_from(self, layer: nn.Module) -> None:
        p = dict(layer.named_parameters())
        _copy([(self.ih.weight, p["weight_ih_l0"]), (self.hh.weight, p["weight_hh_l0"]),
               (self.ln_ih.weight, p["ln_ih_weight_l0"]), (self.ln_ih.bias, p["bias_ih_l0"]),
               (self.ln_hh.weight, p["ln_hh_weight_l0"]), (self.ln_hh.bias, p["bias_hh_l0"]),
               (self.ln_c.weight, p["ln_cell_weight_l0"]), (self.ln_c.bias, p["ln_cell_bias_l0"])])

    def ordered_parameters(self) -> list[Tensor]:
        return [self.ih.weight, self.hh.weight, self.ln_ih.bias, self.ln_hh.bias,
                self.ln_ih.weight, self.ln_hh.weight, self.ln_c.weight, self.ln_c.bias]


class LayerNormGRULoop(nn.Module):
    """Layer-norm GRU cell from nn.Linear and nn.LayerNorm, looped over time."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        H = hidden_size
        self.ih = nn.Linear(input_size, 3 * H, bias=False)
        self.hh = nn.Linear(H, 3 * H, bias=False)
        self.ln_ih, self.ln_hh = nn.LayerNorm(3 * H), nn.LayerNorm(3 * H)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        H = self.hh.in_features
        h = x.new_zeros(x.shape[1], H)
        xs = self.ln_ih(self.ih(x))
        outputs = []
        for t in range(x.shape[0]):
            gh = self.ln_hh(self.hh(h))
            r = torch.sigmoid(xs[t, :, :H] + gh[:, :H])
            z = torch.sigmoid(xs[t, :, H:2 * H] + gh[:, H:2 * H])
            n = torch.tanh(xs[t, :, 2 * H:] + r * gh[:, 2 * H:])
            h = (1 - z) * n + z * h
            outputs.append(h)
        return torch.stack(outputs), h

    def load_from(self, layer: nn.Module) -> None:
        p = dict(layer.named_parameters())
        _copy([(self.ih.weight, p["weight_ih_l0"]), (self.hh.weight, p["weight_hh_l0"]),
               (self.ln_ih.weight, p["ln_ih_weight_l0"]), (self.ln_ih.bias, p["bias_ih_l0"]),
               (self.ln_hh.weight, p["ln_hh_weight_l0"]), (self.ln_hh.bias, p["bias_hh_l0"])])

    def ordered_parameters(self) -> list[Tensor]:
        return [self.ih.weight, self.hh.weight, self.ln_ih.bias, self.ln_hh.bias,
                self.ln_ih.weight, self.ln_hh.weight]


class CarryLSTMLoop(nn.Module):
    """LSTM with a carry gate, h_t = o tanh(c_t) + beta_t h_{t-1}, from nn.Linear."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.ih = nn.Linear(input_size, 5 * hidden_size)
        self.hh = nn.Linear(hidden_size, 5 * hidden_size)

    def forward(self, x: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        h = c = x.new_zeros(x.shape[1], self.hh.in_features)
        xs = self.ih(x)
        outputs = []
        for t in range(x.shape[0]):
            i, f, g, o, beta = (xs[t] + self.hh(h)).chunk(5, 1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c) + torch.sigmoid(beta) * h
            outputs.append(h)
        return torch.stack(outputs), (h, c)

    def load_from(self, layer: nn.Module) -> None:
        p = dict(layer.named_parameters())
        _copy([(self.ih.weight, p["weight_ih_l0"]), (self.hh.weight, p["weight_hh_l0"]),
               (self.ih.bias, p["bias_ih_l0"]), (self.hh.bias, p["bias_hh_l0"])])

    def ordered_parameters(self) -> list[Tensor]:
        return [self.ih.weight, self.hh.weight, self.ih.bias, self.hh.bias]


class _CellWeights(nn.Module):
    """A loop whose weights are a torch.nn cell's (``self.cell``), named as a layer's."""

    def load_from(self, layer: nn.Module) -> None:
        p = dict(layer.named_parameters())
        _copy([(getattr(self.cell, name), p[name + "_l0"])
               for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")])

    def ordered_parameters(self) -> list[Tensor]:
        return [self.cell.weight_ih, self.cell.weight_hh, self.cell.bias_ih, self.cell.bias_hh]


class RegularisedLSTMLoop(_CellWeights):
    """nn.LSTMCell in a loop with zoneout on h and c (Krueger et al.) and variational
    recurrent dropout on the h fed back (Gal & Ghahramani)."""

    def __init__(self, input_size: int, hidden_size: int, zoneout: float,
                 recurrent_dropout: float) -> None:
        super().__init__()
        self.cell = nn.LSTMCell(input_size, hidden_size)
        self.zoneout, self.recurrent_dropout = zoneout, recurrent_dropout

    def forward(self, x: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        B, H, p = x.shape[1], self.cell.hidden_size, self.zoneout
        h = c = x.new_zeros(B, H)
        mask = None
        if self.training and self.recurrent_dropout:
            keep = 1 - self.recurrent_dropout
            mask = torch.bernoulli(x.new_full((B, H), keep)) / keep
        outputs = []
        for t in range(x.shape[0]):
            h_new, c_new = self.cell(x[t], (h if mask is None else h * mask, c))
            if self.training:
                keep_h = torch.bernoulli(x.new_full((B, H), p))
                keep_c = torch.bernoulli(x.new_full((B, H), p))
                h = keep_h * h + (1 - keep_h) * h_new
                c = keep_c * c + (1 - keep_c) * c_new
            else:
                h, c = p * h + (1 - p) * h_new, p * c + (1 - p) * c_new
            outputs.append(h)
        return torch.stack(outputs), (h, c)


class RegularisedGRULoop(_CellWeights):
    """The GRU's equations in a loop (torch.nn.GRUCell cannot read the masked h in the
    product and the plain h in the update), with zoneout on h and variational recurrent
    dropout on the h fed to the recurrent product."""

    def __init__(self, input_size: int, hidden_size: int, zoneout: float,
                 recurrent_dropout: float) -> None:
        super().__init__()
        self.cell = nn.GRUCell(input_size, hidden_size)  # holds the weights
        self.zoneout, self.recurrent_dropout = zoneout, recurrent_dropout

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        B, H, p = x.shape[1], self.cell.hidden_size, self.zoneout
        cell = self.cell
        h = x.new_zeros(B, H)
        mask = None
        if self.training and self.recurrent_dropout:
            keep = 1 - self.recurrent_dropout
            mask = torch.bernoulli(x.new_full((B, H), keep)) / keep
        gx_all = F.linear(x, cell.weight_ih, cell.bias_ih)
        outputs = []
        for t in range(x.shape[0]):
            gh = F.linear(h if mask is None else h * mask, cell.weight_hh, cell.bias_hh)
            xr, xz, xn = gx_all[t].chunk(3, 1)
            hr, hz, hn = gh.chunk(3, 1)
            r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
            h_new = (1 - z) * torch.tanh(xn + r * hn) + z * h
            if self.training:
                keep_h = torch.bernoulli(x.new_full((B, H), p))
                h = keep_h * h + (1 - keep_h) * h_new
            else:
                h = p * h + (1 - p) * h_new
            outputs.append(h)
        return torch.stack(outputs), h
