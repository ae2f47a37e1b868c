"""The minimal recurrent cells of Feng et al. 2024 ("Were RNNs all we needed?"): minGRU
and minLSTM, whose gates read only the input.

Each step is then linear in the state, element by element:

    h_t = a_t * h_{t-1} + b_t                                   # [B, H]

where ``a_t`` and ``b_t`` are functions of the projection ``p_t = W x_t + b`` alone. The
matrix product leaves the loop (one product for the whole sequence) and the recurrence is
a linear scan, which runs in parallel over time.

minGRU (``p_t`` has blocks ``k, u``: ``W`` is [2H, I]):

    z_t = sigmoid(k_t)                  update gate
    h~_t = act(u_t)                     candidate
    h_t = (1 - z_t) h_{t-1} + z_t h~_t  so  a_t = 1 - z_t = sigmoid(-k_t),  b_t = z_t h~_t

minLSTM (blocks ``k^f, k^i, u``: ``W`` is [3H, I]):

    f_t = sigmoid(k^f_t),  i_t = sigmoid(k^i_t)            forget and input gates
    f'_t = f_t / (f_t + i_t),  i'_t = i_t / (f_t + i_t)    normalised, so f' + i' = 1
    h_t = f'_t h_{t-1} + i'_t h~_t       so  a_t = f'_t,  b_t = i'_t h~_t

computed as ``f'_t = sigmoid(d_t)``, ``i'_t = sigmoid(-d_t)`` with
``d_t = log f_t - log i_t = softplus(-k^i_t) - softplus(-k^f_t)``: no 0 / 0 when both
gates saturate shut.

``act`` (``activation=``) is ``"g"``, the paper's log-space variant:
``g(u) = u + 1/2`` for ``u >= 0`` and ``sigmoid(u)`` below, positive, so every state is
positive when ``h_0`` is; or ``"identity"``, the paper's plain variant. The paper takes
logs to run the scan (``logcumsumexp``) because its scan divides by cumulative products of
``a``; the chunked scan here composes ``(a, b)`` pairs and never divides, so both variants
run in linear space without overflow at any length (tests check it against the paper's
log-space formula at T = 16k). Unlike the paper's code, ``h_0`` enters as it is (not through
``g``): a final state passed back in continues the sequence exactly.

Backward (hand-derived). With ``delta_t`` the gradient reaching ``h_t`` from everything
after it,

    delta_t = dh_t + a_{t+1} delta_{t+1}        a linear recurrence, run in reverse: a scan
    da_t = delta_t h_{t-1},  db_t = delta_t,  dh_0 = a_1 delta_1 (0-based: a_0 delta_0)

and through each cell's maps (``s(x) = sigmoid(x)``):

    minGRU:  dk = delta z (1 - z) (h~ - h_{t-1}),  du = delta z act'(u)
    minLSTM: dd = delta f' i' (h_{t-1} - h~),  dk^f = dd s(-k^f),  dk^i = -dd s(-k^i),
             du = delta i' act'(u)

Padding: past a sequence's length ``a = 1`` and ``b = 0``, so the state is carried to the
end unchanged (the last row is every sequence's final state) and nothing there has a
gradient.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

ACTIVATIONS = ("g", "identity")


class MinCellSpec(NamedTuple):
    """A minimal cell: its name (as ``--cell`` spells it), gate blocks in ``W`` and the
    block whose bias is a forget gate's (``--forget-bias`` sets it), or None."""

    name: str
    gates: int
    forget_gate: int | None


MIN_CELLS: dict[str, MinCellSpec] = {
    "mingru": MinCellSpec("mingru", 2, None),  # blocks z, h (z is an update gate: no forget bias)
    "minlstm": MinCellSpec("minlstm", 3, 0),  # blocks f, i, h
}


def softplus(x: Tensor) -> Tensor:
    """log(1 + e^x), exact over the whole range (torch's softplus returns x above 20)."""
    return x.clamp(min=0) + torch.log1p(torch.exp(-x.abs()))


def activate(u: Tensor, activation: str) -> Tensor:
    """The candidate ``h~ = act(u)``."""
    if activation == "identity":
        return u
    return torch.where(u >= 0, u + 0.5, torch.sigmoid(u))


def activate_derivative(u: Tensor, activation: str) -> Tensor:
    """``act'(u)``."""
    if activation == "identity":
        return torch.ones_like(u)
    s = torch.sigmoid(u)
    return torch.where(u >= 0, torch.ones_like(u), s * (1 - s))


def coefficients(cell: str, proj: Tensor, activation: str) -> tuple[Tensor, Tensor]:
    """``(a, b)`` of ``h_t = a_t h_{t-1} + b_t`` from the projections ``proj`` [..., G]."""
    if cell == "mingru":
        k, u = proj.chunk(2, dim=-1)
        z = torch.sigmoid(k)
        return torch.sigmoid(-k), z * activate(u, activation)
    kf, ki, u = proj.chunk(3, dim=-1)
    d = softplus(-ki) - softplus(-kf)  # log f - log i
    return torch.sigmoid(d), torch.sigmoid(-d) * activate(u, activation)


def coefficient_grads(cell: str, proj: Tensor, activation: str, delta: Tensor,
                      h_prev: Tensor) -> Tensor:
    """The gradient reaching ``proj`` [..., G] from ``delta`` (reaching ``h_t``) and the
    previous states ``h_prev`` (the module docstring's backward)."""
    if cell == "mingru":
        k, u = proj.chunk(2, dim=-1)
        z, a = torch.sigmoid(k), torch.sigmoid(-k)
        c = activate(u, activation)
        dk = delta * z * a * (c - h_prev)
        du = delta * z * activate_derivative(u, activation)
        return torch.cat([dk, du], dim=-1)
    kf, ki, u = proj.chunk(3, dim=-1)
    d = softplus(-ki) - softplus(-kf)
    fp, ip = torch.sigmoid(d), torch.sigmoid(-d)
    c = activate(u, activation)
    dd = delta * fp * ip * (h_prev - c)
    du = delta * ip * activate_derivative(u, activation)
    return torch.cat([dd * torch.sigmoid(-kf), -dd * torch.sigmoid(-ki), du], dim=-1)


def min_step(cell: str, proj_t: Tensor, h: Tensor, activation: str) -> Tensor:
    """One step ``h_t = a_t h_{t-1} + b_t`` from ``proj_t`` [B, G] and ``h`` [B, H]."""
    a, b = coefficients(cell, proj_t, activation)
    return torch.addcmul(b, a, h)


def valid_steps(lengths: Tensor | None, T: int, device: torch.device) -> Tensor | None:
    """[T, B, 1] booleans, True where step t is inside sequence b; None without lengths."""
    if lengths is None:
        return None
    return (torch.arange(T).unsqueeze(1) < lengths.unsqueeze(0)).unsqueeze(2).to(device)


def padded_coefficients(cell: str, proj: Tensor, activation: str,
                        valid: Tensor | None) -> tuple[Tensor, Tensor]:
    """:func:`coefficients`, with ``a = 1, b = 0`` at padded steps (the state carries on)."""
    a, b = coefficients(cell, proj, activation)
    if valid is not None:
        a = torch.where(valid, a, torch.ones_like(a))
        b = torch.where(valid, b, torch.zeros_like(b))
    return a, b


def sequential_forward(cell: str, proj: Tensor, h0: Tensor, activation: str,
                       lengths: Tensor | None = None) -> Tensor:
    """The reference: one :func:`min_step` per time step (autograd through the loop).

    Args:
        proj: [T, B, G] projections ``W x_t + b``; h0: [B, H].
        lengths: int64 [B] valid lengths (1..T), or None.

    Returns:
        h [T, B, H]; past a sequence's end its state carries on unchanged.
    """
    valid = valid_steps(lengths, proj.shape[0], proj.device)
    h, out = h0, []
    for t in range(proj.shape[0]):
        new = min_step(cell, proj[t], h, activation)
        h = new if valid is None else torch.where(valid[t], new, h)
        out.append(h)
    return torch.stack(out) if out else proj.new_empty(0, *h0.shape)


def chunk_size(T: int) -> int:
    """Steps per chunk of :func:`linear_scan`: about sqrt(T), which balances the two
    sequential phases (C steps within the chunks, T / C carries across them)."""
    return max(1, math.isqrt(max(T - 1, 0)) + 1)


def linear_scan(a: Tensor, b: Tensor, h0: Tensor, chunk: int | None = None) -> Tensor:
    """``h_t = a_t h_{t-1} + b_t`` for all t at once: a chunked parallel scan.

    The T steps are cut into chunks of ``chunk`` steps. Within every chunk at once (one
    tensor operation per position, over all chunks), the scan from a zero state and the
    cumulative product of ``a``; then each chunk's carry-in, chunk after chunk; then each
    step adds its cumulative product times its chunk's carry. Only products and sums of
    the given values, never a division, so a product of many small ``a`` underflows to 0
    (the right limit) instead of overflowing a quotient. Differentiable (autograd).

    Args:
        a, b: [T, *S]; h0: [*S].

    Returns:
        h [T, *S].
    """
    T = a.shape[0]
    if T == 0:
        return b.clone()
    C = chunk or chunk_size(T)
    n = -(-T // C)
    rest = a.shape[1:]
    if n * C != T:  # pad the last chunk with steps that change nothing
        a = torch.cat([a, a.new_ones(n * C - T, *rest)])
        b = torch.cat([b, b.new_zeros(n * C - T, *rest)])
    A = a.reshape(n, C, *rest).transpose(0, 1)  # [C, n, *S]: position within chunk first
    Bv = b.reshape(n, C, *rest).transpose(0, 1)
    local, prod = [Bv[0]], [A[0]]
    for c in range(1, C):
        local.append(torch.addcmul(Bv[c], A[c], local[-1]))
        prod.append(A[c] * prod[-1])
    carries = [h0]  # the state entering each chunk
    for j in range(n - 1):
        carries.append(torch.addcmul(local[-1][j], prod[-1][j], carries[-1]))
    h = torch.addcmul(torch.stack(local), torch.stack(prod), torch.stack(carries))
    return h.transpose(0, 1).reshape(n * C, *rest)[:T]


def scan_forward(cell: str, proj: Tensor, h0: Tensor, activation: str,
                 lengths: Tensor | None = None) -> Tensor:
    """:func:`sequential_forward` by :func:`linear_scan`; same arguments and result."""
    valid = valid_steps(lengths, proj.shape[0], proj.device)
    a, b = padded_coefficients(cell, proj, activation, valid)
    return linear_scan(a, b, h0)


def scan_backward(cell: str, proj: Tensor, h0: Tensor, activation: str,
                  lengths: Tensor | None, h: Tensor, dh: Tensor) -> tuple[Tensor, Tensor]:
    """The hand-derived backward of :func:`scan_forward`: ``delta`` by a reverse
    :func:`linear_scan`, then :func:`coefficient_grads`.

    Args:
        proj, h0, activation, lengths: the forward's inputs; h: its output [T, B, H];
            dh: the gradient reaching h [T, B, H] (the final state's included in the last row).

    Returns:
        (dproj [T, B, G], dh0 [B, H]).
    """
    T = proj.shape[0]
    valid = valid_steps(lengths, T, proj.device)
    a, _ = padded_coefficients(cell, proj, activation, valid)
    # delta_t = dh_t + a_{t+1} delta_{t+1}: reversed, a scan with coefficients a_{t+1}
    # (1 for the last step, which nothing follows) and no incoming state.
    a_next = torch.cat([a[1:], torch.ones_like(a[:1])])
    delta = linear_scan(a_next.flip(0), dh.flip(0), torch.zeros_like(h0)).flip(0)
    h_prev = torch.cat([h0.unsqueeze(0), h[:-1]])
    dproj = coefficient_grads(cell, proj, activation, delta, h_prev)
    if valid is not None:
        dproj = dproj * valid
    return dproj, a[0] * delta[0]


__all__ = ["ACTIVATIONS", "MIN_CELLS", "MinCellSpec", "activate", "activate_derivative",
           "chunk_size", "coefficient_grads", "coefficients", "linear_scan", "min_step",
           "padded_coefficients", "scan_backward", "scan_forward", "sequential_forward",
           "softplus", "valid_steps"]
