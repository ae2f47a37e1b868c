"""The layer-norm cells' steps (ln-lstm, ln-gru) as Triton kernels: a program owns whole
rows, since a layer norm reads the whole row. Once ``kernels.product`` has put the
recurrent product in cache1, ``ln_fwd_row`` normalises it and does the gates, the cell norm
(ln-lstm), the states and zoneout; backward, ``ln_bwd_row`` makes the gate gradients and
the norms' backward, from which ``kernels.product`` makes dL/dh_{t-1}. The maths is
``engine.cpp``'s ``normalise`` / ``normalise_backward`` and its layer-norm rows."""

from __future__ import annotations

import triton
import triton.language as tl

from rnnkit.backends.triton_engine.kernels import (
    _gru_step,
    _lerp,
    _lstm_gates,
    _lstm_saved,
    _tanh,
)

EPS = 1e-5  # rnnkit.functional.LAYER_NORM_EPS, as engine.cpp's normalise


@triton.jit
def _whole_rows(n, H, NG: tl.constexpr, BB: tl.constexpr, HP: tl.constexpr):
    # The program's BB rows (of the n running) by the padded width HP, their masks and
    # offsets in a [., G] buffer and in a [., H] one.
    rows = tl.program_id(0) * BB + tl.arange(0, BB)
    cols = tl.arange(0, HP)
    rmask = rows < n
    cmask = cols < H
    m2 = rmask[:, None] & cmask[None, :]
    gidx = rows[:, None] * (NG * H) + cols[None, :]
    hidx = rows[:, None] * H + cols[None, :]
    return rows, cols, rmask, cmask, m2, gidx, hidx


@triton.jit
def _normalise(v0, v1, v2, v3, m2, W, NG: tl.constexpr):
    # Layer norm over the row of up to four [BB, HP] blocks (biased variance, two passes).
    s = tl.sum(v0, 1) + tl.sum(v1, 1) + tl.sum(v2, 1) + tl.sum(v3, 1)
    mean = (s / W)[:, None]
    d0 = tl.where(m2, v0 - mean, 0.0)
    d1 = tl.where(m2, v1 - mean, 0.0)
    d2 = tl.where(m2, v2 - mean, 0.0)
    d3 = tl.where(m2, v3 - mean, 0.0)
    if NG < 4:
        d3 = d3 * 0.0
    if NG < 2:
        d1 = d1 * 0.0
        d2 = d2 * 0.0
    var = (tl.sum(d0 * d0, 1) + tl.sum(d1 * d1, 1) + tl.sum(d2 * d2, 1) + tl.sum(d3 * d3, 1)) / W
    rs = 1.0 / tl.sqrt(var + EPS)
    return d0 * rs[:, None], d1 * rs[:, None], d2 * rs[:, None], d3 * rs[:, None], rs


@triton.jit
def _normalise_backward(g0, g1, g2, g3, x0, x1, x2, x3, w0, w1, w2, w3, rs, W):
    # dx = rstd (u - mean(u) - x_hat mean(u x_hat)), u = g w, over the row of four blocks.
    u0 = g0 * w0
    u1 = g1 * w1
    u2 = g2 * w2
    u3 = g3 * w3
    su = ((tl.sum(u0, 1) + tl.sum(u1, 1) + tl.sum(u2, 1) + tl.sum(u3, 1)) / W)[:, None]
    sux = ((tl.sum(u0 * x0, 1) + tl.sum(u1 * x1, 1) + tl.sum(u2 * x2, 1)
            + tl.sum(u3 * x3, 1)) / W)[:, None]
    r = rs[:, None]
    return r * (u0 - su - x0 * sux), r * (u1 - su - x1 * sux), r * (u2 - su - x2 * sux), \
        r * (u3 - su - x3 * sux)


@triton.jit
def ln_fwd_row(xp, states_h, states_c, cache0, cache1, cache2, rstd, w_h, w_c, b_c, b_hh,
               zh, zc, off_g, off_h, off_hn, off_r, n, H,
               CELL: tl.constexpr, NG: tl.constexpr, NORMS: tl.constexpr,
               HAS_BHH: tl.constexpr, HAS_ZH: tl.constexpr, HAS_ZC: tl.constexpr,
               BB: tl.constexpr, HP: tl.constexpr):
    """The rest of a forward step of ln-lstm or ln-gru for BB whole rows, once
    ``product`` has put W_hh h_in in cache1: its layer norm (in place, 1/std to rstd),
    the gates, the cell norm (ln-lstm), the states and zoneout."""
    rows, cols, rmask, cmask, m2, gidx, hidx = _whole_rows(n, H, NG, BB, HP)
    G = NG * H
    rb = cache1 + off_g + gidx
    r0 = tl.load(rb, mask=m2, other=0.0)
    r1 = tl.load(rb + H, mask=m2, other=0.0)
    r2 = tl.load(rb + 2 * H, mask=m2, other=0.0)
    r3 = r0 * 0.0
    if NG == 4:
        r3 = tl.load(rb + 3 * H, mask=m2, other=0.0)
    x0, x1, x2, x3, rs = _normalise(r0, r1, r2, r3, m2, G, NG)
    tl.store(rb, x0, mask=m2)
    tl.store(rb + H, x1, mask=m2)
    tl.store(rb + 2 * H, x2, mask=m2)
    if NG == 4:
        tl.store(rb + 3 * H, x3, mask=m2)
    tl.store(rstd + off_r + rows * NORMS, rs, mask=rmask)
    w0 = tl.load(w_h + cols, mask=cmask, other=0.0)[None, :]
    w1 = tl.load(w_h + H + cols, mask=cmask, other=0.0)[None, :]
    w2 = tl.load(w_h + 2 * H + cols, mask=cmask, other=0.0)[None, :]
    gx = xp + off_g + gidx
    hp = tl.load(states_h + off_h + hidx, mask=m2, other=0.0)
    if CELL == 5:  # ln-lstm
        w3 = tl.load(w_h + 3 * H + cols, mask=cmask, other=0.0)[None, :]
        i, f, g, o = _lstm_gates(gx, x0 * w0, x1 * w1, x2 * w2, x3 * w3, m2, H)
        cp = tl.load(states_c + off_h + hidx, mask=m2, other=0.0)
        c = f * cp + i * g
        zero = c * 0.0
        ch, _a, _b, _c, rs_c = _normalise(c, zero, zero, zero, m2, H, 1)
        tl.store(cache2 + off_h + hidx, ch, mask=m2)
        tl.store(rstd + off_r + rows * NORMS + 1, rs_c, mask=rmask)
        wc = tl.load(w_c + cols, mask=cmask, other=0.0)[None, :]
        bc = tl.load(b_c + cols, mask=cmask, other=0.0)[None, :]
        tc = _tanh(ch * wc + bc)
        tl.store(cache0 + off_h + hidx, tc, mask=m2)
        h = o * tc
        if HAS_ZC:
            c = _lerp(c, cp, tl.load(zc + off_h + hidx, mask=m2, other=0.0))
        tl.store(states_c + off_hn + hidx, c, mask=m2)
    else:  # ln-gru: gh = LN(W_hh h) w_h + b_hh, kept in cache0 [B, 3H]
        h = _gru_step(gx, cache0 + off_g + gidx, x0 * w0, x1 * w1, x2 * w2, b_hh, cols, cmask,
                      m2, hp, H, HAS_BHH)
    if HAS_ZH:
        h = _lerp(h, hp, tl.load(zh + off_h + hidx, mask=m2, other=0.0))
    tl.store(states_h + off_hn + hidx, h, mask=m2)


@triton.jit
def ln_bwd_row(acts, states_h, states_c, cache0, cache1, cache2, rstd, w_h, w_c, zh, zc, dy,
               dh, dc, dgx, dgh, dr, dcache, off_g, off_h, off_r, n, H,
               CELL: tl.constexpr, NG: tl.constexpr, NORMS: tl.constexpr,
               HAS_DY: tl.constexpr, HAS_ZH: tl.constexpr, HAS_ZC: tl.constexpr,
               BB: tl.constexpr, HP: tl.constexpr):
    """A backward step of ln-lstm or ln-gru for BB whole rows (``dh`` complete but for
    dL/dy_t): the gate gradients, the layer norms' backward into ``dr`` (from which
    ``product`` then makes dh_{t-1}), ``dcache`` (ln-lstm), the direct parts."""
    rows, cols, rmask, cmask, m2, gidx, hidx = _whole_rows(n, H, NG, BB, HP)
    G = NG * H
    d = tl.load(dh + hidx, mask=m2, other=0.0)
    if HAS_DY:
        d += tl.load(dy + off_h + hidx, mask=m2, other=0.0)
    kept_h = d * 0.0
    if HAS_ZH:
        kept_h = d * tl.load(zh + off_h + hidx, mask=m2, other=0.0)
        d -= kept_h
    rs = tl.load(rstd + off_r + rows * NORMS, mask=rmask, other=0.0)
    gx = acts + off_g + gidx
    dx = dgx + off_g + gidx
    xb = cache1 + off_g + gidx
    x0 = tl.load(xb, mask=m2, other=0.0)
    x1 = tl.load(xb + H, mask=m2, other=0.0)
    x2 = tl.load(xb + 2 * H, mask=m2, other=0.0)
    w0 = tl.load(w_h + cols, mask=cmask, other=0.0)[None, :]
    w1 = tl.load(w_h + H + cols, mask=cmask, other=0.0)[None, :]
    w2 = tl.load(w_h + 2 * H + cols, mask=cmask, other=0.0)[None, :]
    if CELL == 5:  # ln-lstm
        i, f, g, o, tc, cp, dcv, kept_c = _lstm_saved(gx, cache0, states_c, dc, zc, off_h,
                                                       hidx, m2, H, HAS_ZC)
        dch = d * o * (1.0 - tc * tc)  # through h = o tanh(LN(c) w_c + b_c)
        tl.store(dcache + off_h + hidx, dch, mask=m2)
        xc = tl.load(cache2 + off_h + hidx, mask=m2, other=0.0)
        wc = tl.load(w_c + cols, mask=cmask, other=0.0)[None, :]
        rs_c = tl.load(rstd + off_r + rows * NORMS + 1, mask=rmask, other=0.0)
        zero = d * 0.0
        dcn, _a, _b, _c = _normalise_backward(dch, zero, zero, zero, xc, zero, zero, zero,
                                              wc, zero, zero, zero, rs_c, H)
        dct = dcv + dcn
        d0 = dct * g * i * (1.0 - i)
        d1 = dct * cp * f * (1.0 - f)
        d2 = dct * i * (1.0 - g * g)
        d3 = d * tc * o * (1.0 - o)
        tl.store(dx, d0, mask=m2)
        tl.store(dx + H, d1, mask=m2)
        tl.store(dx + 2 * H, d2, mask=m2)
        tl.store(dx + 3 * H, d3, mask=m2)
        tl.store(dc + hidx, dct * f + kept_c, mask=m2)
        x3 = tl.load(xb + 3 * H, mask=m2, other=0.0)
        w3 = tl.load(w_h + 3 * H + cols, mask=cmask, other=0.0)[None, :]
        direct = d * 0.0
    else:  # ln-gru
        r = tl.load(gx, mask=m2, other=0.0)
        z = tl.load(gx + H, mask=m2, other=0.0)
        nn = tl.load(gx + 2 * H, mask=m2, other=0.0)
        ghn = tl.load(cache0 + off_g + gidx + 2 * H, mask=m2, other=0.0)
        hp = tl.load(states_h + off_h + hidx, mask=m2, other=0.0)
        dn = d * (1.0 - z) * (1.0 - nn * nn)
        dz = d * (hp - nn) * z * (1.0 - z)
        drr = dn * ghn * r * (1.0 - r)
        tl.store(dx, drr, mask=m2)
        tl.store(dx + H, dz, mask=m2)
        tl.store(dx + 2 * H, dn, mask=m2)
        d0 = drr
        d1 = dz
        d2 = dn * r
        d3 = d * 0.0
        dhg = dgh + off_g + gidx
        tl.store(dhg, d0, mask=m2)
        tl.store(dhg + H, d1, mask=m2)
        tl.store(dhg + 2 * H, d2, mask=m2)
        x3 = d * 0.0
        w3 = d * 0.0
        direct = d * z
    e0, e1, e2, e3 = _normalise_backward(d0, d1, d2, d3, x0, x1, x2, x3, w0, w1, w2, w3, rs, G)
    drb = dr + off_g + gidx
    tl.store(drb, e0, mask=m2)
    tl.store(drb + H, e1, mask=m2)
    tl.store(drb + 2 * H, e2, mask=m2)
    if NG == 4:
        tl.store(drb + 3 * H, e3, mask=m2)
    tl.store(dh + hidx, direct + kept_h, mask=m2)
