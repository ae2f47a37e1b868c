"""How a recurrent encoder's outputs become one vector per sequence, over valid steps only.

* ``last``: the final state of each direction (forward at the true last step, backward
  at the first step), concatenated;
* ``max`` / ``mean``: elementwise max / mean of o_t over t <= len (max pooling over a
  bidirectional encoder: Conneau et al. 2017's BiLSTM-max);
* ``attention``: a_t = softmax_t(v^T tanh(W o_t)) over t <= len, z = sum_t a_t o_t
  (Yang et al. 2016's attention pooling, one query vector ``v``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rnnkit.choices import POOLINGS


def check_pooling(pooling: str) -> None:
    if pooling not in POOLINGS:
        raise ValueError(f"--pooling: expected one of {', '.join(POOLINGS)}, got {pooling!r}")


def attention_scorer(width: int) -> nn.Module:
    """``o_t -> v^T tanh(W o_t)`` for ``attention`` pooling."""
    return nn.Sequential(nn.Linear(width, width), nn.Tanh(), nn.Linear(width, 1, bias=False))


def last_state(state: Tensor | tuple[Tensor, ...], directions: int) -> Tensor:
    """The top layer's final state of each direction, concatenated: [B, directions * H]."""
    h_n = state[0] if isinstance(state, tuple) else state  # [layers * dirs, B, H]
    return torch.cat(list(h_n[-directions:]), dim=-1)


def pool_steps(output: Tensor, lengths: Tensor | None, pooling: str,
               attention: nn.Module | None = None) -> Tensor:
    """``max``, ``mean`` or ``attention`` pooling of ``output`` [B, T, D] over the first
    ``lengths[b]`` steps of each row (all T without ``lengths``): [B, D]."""
    steps = output.shape[1]
    if lengths is None:
        lengths = torch.full((output.shape[0],), steps, device=output.device)
    lengths = lengths.to(output.device)
    valid = torch.arange(steps, device=output.device)[None, :] < lengths[:, None]  # [B, T]
    if pooling == "max":
        return output.masked_fill(~valid[..., None], float("-inf")).amax(dim=1)
    if pooling == "mean":
        summed = (output * valid[..., None]).sum(dim=1)
        return summed / lengths.to(output)[:, None]
    if pooling != "attention" or attention is None:
        raise ValueError(f"pool_steps: no step pooling {pooling!r} (with a scorer for "
                         f"attention)")
    scores = attention(output).squeeze(-1).masked_fill(~valid, float("-inf"))
    weights = torch.softmax(scores, dim=1)  # [B, T], zero on padding
    return torch.einsum("bt,btd->bd", weights, output.masked_fill(~valid[..., None], 0.0))
