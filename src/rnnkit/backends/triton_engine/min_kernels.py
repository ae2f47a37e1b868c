"""The minimal cells' scans (minGRU, minLSTM; ``rnnkit.functional.minimal``) as Triton
kernels, one each way over the whole sequence: h_t = a_t h_{t-1} + b_t.

A program owns BLOCK of the B H channels and walks the steps; each step reads the
projections once and writes h once, so the loop moves each byte once (what bounds it is
memory bandwidth). Cells: 0 mingru (blocks k, u), 1 minlstm (kf, ki, u); activations: 0
"g", 1 identity. Pointers advance by a step's stride (64-bit pointer arithmetic, whatever
T B G).
"""

from __future__ import annotations

import triton
import triton.language as tl

from rnnkit.backends.triton_engine.kernels import _sigmoid


@triton.jit
def _softplus(x):
    return tl.maximum(x, 0.0) + tl.log(1.0 + tl.exp(-tl.abs(x)))


@triton.jit
def _activate(u, ACT: tl.constexpr):
    # One return per function: every helper here has a single exit.
    if ACT == 1:
        out = u
    else:
        out = tl.where(u >= 0, u + 0.5, _sigmoid(u))
    return out


@triton.jit
def _activate_derivative(u, ACT: tl.constexpr):
    if ACT == 1:
        out = u * 0.0 + 1.0
    else:
        s = _sigmoid(u)
        out = tl.where(u >= 0, 1.0, s * (1.0 - s))
    return out


@triton.jit
def _min_gates(p, H, m, CELL: tl.constexpr):
    # (k or kf, ki (minlstm; else 0), u) at pointers p of gate block 0
    k = tl.load(p, mask=m, other=0.0)
    if CELL == 0:
        ki = k * 0.0
        u = tl.load(p + H, mask=m, other=0.0)
    else:
        ki = tl.load(p + H, mask=m, other=0.0)
        u = tl.load(p + 2 * H, mask=m, other=0.0)
    return k, ki, u


@triton.jit
def _min_coefficients(k, ki, u, CELL: tl.constexpr, ACT: tl.constexpr):
    # (a, b, and the factor of b before the activation: z or i')
    if CELL == 0:
        a = _sigmoid(-k)
        f = _sigmoid(k)
    else:
        d = _softplus(-ki) - _softplus(-k)  # log f - log i
        a = _sigmoid(d)
        f = _sigmoid(-d)
    return a, f * _activate(u, ACT), f


@triton.jit
def min_fwd(proj, h0, lens, h, T, B, H, CELL: tl.constexpr, ACT: tl.constexpr,
            HAS_LEN: tl.constexpr, BLOCK: tl.constexpr):
    """h [T, B, H] from proj [T, B, G] and h0 [B, H]; past a sequence's length the state
    carries on."""
    idx = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = idx < B * H
    row = idx // H
    G = (2 + CELL) * H
    hv = tl.load(h0 + idx, mask=m, other=0.0)
    length = row * 0 + T
    if HAS_LEN:
        length = tl.load(lens + row, mask=m, other=0)
    p = proj + row * G + idx % H
    q = h + idx
    for t in range(T):
        k, ki, u = _min_gates(p, H, m, CELL)
        a, b, _f = _min_coefficients(k, ki, u, CELL, ACT)
        hv = tl.where(t < length, a * hv + b, hv)
        tl.store(q, hv, mask=m)
        p += B * G
        q += B * H


@triton.jit
def min_bwd(proj, h0, lens, h, dh, dproj, dh0, T, B, H, last_g, last_h, CELL: tl.constexpr,
            ACT: tl.constexpr, HAS_LEN: tl.constexpr, BLOCK: tl.constexpr):
    """dproj [T, B, G] and dh0 [B, H] from dh [T, B, H] (the final state's gradient in its
    last row): delta_t = dh_t + a_{t+1} delta_{t+1}, then the gates' gradients. ``last_g``,
    ``last_h``: the offsets of step T-1, (T-1) B G and (T-1) B H."""
    idx = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = idx < B * H
    row = idx // H
    G = (2 + CELL) * H
    length = row * 0 + T
    if HAS_LEN:
        length = tl.load(lens + row, mask=m, other=0)
    h0v = tl.load(h0 + idx, mask=m, other=0.0)
    delta = h0v * 0.0
    a_next = delta + 1.0  # nothing follows the last step
    p = proj + last_g + row * G + idx % H
    dp = dproj + last_g + row * G + idx % H
    q = h + last_h + idx
    dq = dh + last_h + idx
    for i in range(T):
        t = T - 1 - i
        delta = tl.load(dq, mask=m, other=0.0) + a_next * delta
        later = (row * 0 + t) > 0  # h_{t-1} is in h; at t = 0 it is h0
        hp = tl.where(later, tl.load(q - B * H, mask=m & later, other=0.0), h0v)
        k, ki, u = _min_gates(p, H, m, CELL)
        a, _b, f = _min_coefficients(k, ki, u, CELL, ACT)
        c = _activate(u, ACT)
        du = delta * f * _activate_derivative(u, ACT)
        if CELL == 0:  # a = sigmoid(-k), z = sigmoid(k)
            dk = delta * f * a * (c - hp)
            dki = dk * 0.0
        else:  # a = f' = sigmoid(d), d = softplus(-ki) - softplus(-kf)
            dd = delta * a * f * (hp - c)
            dk = dd * _sigmoid(-k)
            dki = -dd * _sigmoid(-ki)
        valid = t < length  # padded steps: a = 1, b = 0, no gradient to proj
        dk = tl.where(valid, dk, 0.0)
        dki = tl.where(valid, dki, 0.0)
        du = tl.where(valid, du, 0.0)
        a = tl.where(valid, a, 1.0)
        tl.store(dp, dk, mask=m)
        if CELL == 0:
            tl.store(dp + H, du, mask=m)
        else:
            tl.store(dp + H, dki, mask=m)
            tl.store(dp + 2 * H, du, mask=m)
        a_next = a
        p -= B * G
        dp -= B * G
        q -= B * H
        dq -= B * H
    tl.store(dh0 + idx, a_next * delta, mask=m)
