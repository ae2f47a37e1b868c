"""LSTM with a projection (LSTMP, Sak et al. 2014; torch.nn.LSTM's ``proj_size``), run by
any engine.

torch.nn.LSTM with ``proj_size = P`` computes, with ``W_hh`` [4H, P] and ``W_hr`` [P, H]::

    gates = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh
    c_t = f * c_{t-1} + i * g,    m_t = o * tanh(c_t),    h_t = W_hr m_t

Since ``W_hh h_{t-1} = (W_hh W_hr) m_{t-1}`` for every step after the first, the recurrence
is an ordinary LSTM over the unprojected state ``m`` with the recurrent weight
``W_hh W_hr`` [4H, H], and ``h`` is its output times ``W_hr^T``. The first step reads the
given ``h_0`` instead, which need not be a projection of anything: its term ``W_hh h_0``
enters through the input projection, as extra input features that hold ``h_0`` at each
sequence's first processed step and zeros elsewhere, with ``W_hh`` as their weights. So
the whole sequence is one run of the plain LSTM on the selected engine (native, fused...),
with its hand-derived backward; autograd carries the gradients through the two products
around it to ``W_hh``, ``W_hr`` and ``h_0``. The results are torch.nn's up to rounding.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rnnkit.backends import run_direction


def first_step_mask(T: int, B: int, lengths: Tensor | None, reverse: bool,
                    device: torch.device) -> Tensor:
    """[T, B, 1]: 1 at the step each sequence is processed first (index 0 forward; the
    sequence's last valid index for the reverse direction), 0 elsewhere."""
    t = torch.arange(T, device=device).unsqueeze(1)  # [T, 1]
    if not reverse:
        first = torch.zeros(1, B, dtype=torch.long, device=device)
    elif lengths is None:
        first = torch.full((1, B), T - 1, dtype=torch.long, device=device)
    else:
        first = (lengths.to(device) - 1).unsqueeze(0)
    return (t == first).unsqueeze(2)


def run_projected(x: Tensor, states0: tuple[Tensor, Tensor], w_ih: Tensor, w_hh: Tensor,
                  b_ih: Tensor | None, b_hh: Tensor | None, w_hr: Tensor,
                  lengths: Tensor | None, reverse: bool, backend: str | None
                  ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """One direction of one LSTMP layer.

    Args:
        x: [T, B, I]; states0: ``(h_0 [B, P], c_0 [B, H])``; w_ih [4H, I], w_hh [4H, P],
            biases [4H] or None, w_hr [P, H] (torch.nn's layout).
        lengths, reverse, backend: as :func:`rnnkit.backends.run_direction`.

    Returns:
        ``y`` [T, B, P] (zero past each sequence's end) and ``(h_n [B, P], c_n [B, H])``.
    """
    T, B, _ = x.shape
    h0, c0 = states0
    H = w_hr.shape[1]
    first = first_step_mask(T, B, lengths, reverse, x.device).to(x.dtype)
    x_aug = torch.cat([x, first * h0.unsqueeze(0)], dim=2)  # [T, B, I + P]
    w_ih_aug = torch.cat([w_ih, w_hh], dim=1)  # [4H, I + P]
    w_rec = w_hh @ w_hr  # [4H, H]
    m0 = c0.new_zeros(B, H)
    y_m, (m_n, c_n) = run_direction("lstm", x_aug, (m0, c0), w_ih_aug, w_rec, b_ih, b_hh,
                                    lengths=lengths, reverse=reverse, backend=backend)
    return y_m @ w_hr.t(), (m_n @ w_hr.t(), c_n)


__all__ = ["first_step_mask", "run_projected"]
