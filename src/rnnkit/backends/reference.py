"""The reference backend: autograd through a plain Python loop of the functional steps.

Slow and obviously correct; every other engine is tested against it. Variable
lengths are handled by masking: a finished sequence keeps its state and emits zeros.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from rnnkit.functional import CELLS, STEPS


class ReferenceBackend:
    """Autograd through :data:`rnnkit.functional.STEPS`; supports every cell, device and dtype."""

    name = "reference"

    def unsupported_reason(self, cell: str, device: torch.device, dtype: torch.dtype) -> str | None:
        return None if cell in STEPS else f"unknown cell {cell!r}"

    def run(self, cell: str, x: Tensor, states0: tuple[Tensor, ...], w_ih: Tensor,
            w_hh: Tensor, b_ih: Tensor | None, b_hh: Tensor | None,
            lengths: Tensor | None) -> tuple[Tensor, tuple[Tensor, ...]]:
        step = STEPS[cell]
        T = x.shape[0]
        x_proj = F.linear(x, w_ih, b_ih)  # [T, B, G]
        state = tuple(states0)
        outputs = []
        for t in range(T):
            new_state, _ = step(x_proj[t], state, w_hh, b_hh)
            if lengths is None:
                state = new_state
                outputs.append(new_state[0])
            else:
                alive = (lengths > t).to(x.device).unsqueeze(1)  # [B, 1]
                state = tuple(torch.where(alive, new, old) for new, old in zip(new_state, state))
                outputs.append(new_state[0] * alive)
        assert CELLS[cell].num_states == len(state)
        return torch.stack(outputs), state
