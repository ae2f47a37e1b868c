"""The reference backend: autograd through a plain Python loop of the functional steps.

Slow and obviously correct; every other engine is tested against it. Variable
lengths are handled by masking: a finished sequence keeps its state and emits zeros.
Zoneout and recurrent dropout are applied as their definitions read.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from rnnkit.functional import CELLS, LAYER_NORM_EPS, Masks


class ReferenceBackend:
    """Autograd through each cell's plain ``step`` (:class:`rnnkit.functional.CellSpec`);
    supports every registered cell, device and dtype."""

    name = "reference"

    def unsupported_reason(self, cell: str, device: torch.device, dtype: torch.dtype) -> str | None:
        return None if cell in CELLS else f"unknown cell {cell!r}"

    def run(self, cell: str, x: Tensor, states0: tuple[Tensor, ...], w_ih: Tensor,
            w_hh: Tensor, b_ih: Tensor | None, b_hh: Tensor | None,
            lengths: Tensor | None, extra: Sequence[Tensor] = (),
            masks: Masks | None = None) -> tuple[Tensor, tuple[Tensor, ...]]:
        spec = CELLS[cell]
        step = spec.step
        masks = masks or Masks()
        T = x.shape[0]
        if spec.input_norm:  # LN(W_ih x; w_x) + b_ih
            x_proj = F.layer_norm(F.linear(x, w_ih), (w_ih.shape[0],), extra[0], b_ih,
                                  LAYER_NORM_EPS)
        else:
            x_proj = F.linear(x, w_ih, b_ih)  # [T, B, G]
        state = tuple(states0)
        outputs = []
        for t in range(T):
            h_in = None if masks.recurrent is None else state[0] * masks.recurrent
            new_state, _ = step(x_proj[t], state, w_hh, b_hh, extra, h_in=h_in)
            # Zoneout: where the mask is 1, a unit keeps its previous value.
            new_state = tuple(new if m is None else m[t] * old + (1 - m[t]) * new
                              for new, old, m in zip(new_state, state, _pad(masks.zoneout, state)))
            if lengths is None:
                state = new_state
                outputs.append(new_state[0])
            else:
                alive = (lengths > t).to(x.device).unsqueeze(1)  # [B, 1]
                state = tuple(torch.where(alive, new, old) for new, old in zip(new_state, state))
                outputs.append(new_state[0] * alive)
        assert spec.num_states == len(state)
        return torch.stack(outputs), state


def _pad(masks: Sequence[Tensor | None], states: Sequence[Tensor]) -> list[Tensor | None]:
    return list(masks) + [None] * (len(states) - len(masks))
