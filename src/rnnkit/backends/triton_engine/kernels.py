"""The Triton kernels of the ``triton`` engine: one time step of every built-in cell.

Each kernel is the maths of ``native/engine.cpp`` (``cell_row_forward`` and
``cell_row_backward``), which is that of :mod:`rnnkit.functional`; only where it runs
changes. A program owns a tile of ``BB`` rows (sequences) by ``BH`` hidden units and
computes, for those units, every gate block: the recurrent product for its columns
(``tl.dot`` over the hidden dimension in ``BK`` slices, in the input's precision:
``input_precision="ieee"``, never TF32) and the gate maths on the result, so one launch
is one whole step of the plain cells:

* ``fwd_step``: ``h_{t-1} (* m) @ W_hh^T`` for the tile's columns of each gate, the
  activations, the new states, zoneout;
* ``bwd_step``: the previous backward step's ``dgates_{t+1} @ W_hh`` (* m) for the tile,
  plus ``dL/dy_t``, then the hand-derived gate gradients of step ``t``.

The layer-norm cells normalise across the whole row, so their step is two launches: the
recurrent product (``product``) and a kernel that owns whole rows (``ln_fwd_row``,
``ln_bwd_row`` in :mod:`.layer_norm_kernels`). The minimal cells' scans are in
:mod:`.min_kernels`.

Cell numbers are those of ``engine.cpp``'s ``CellKind``. Buffers are time-major and
contiguous; the offsets of step ``t`` come in as arguments (Python integers, 64-bit when
large). Rows ``>= n`` (sequences that have ended) are neither read nor written.

This module imports Triton, so it is imported only when the engine runs. Triton decides
when a kernel is defined whether it runs compiled or in its interpreter
(``TRITON_INTERPRET=1``, on CPU tensors through numpy), so in one process the kernels
are one or the other.
"""

from __future__ import annotations

import triton
import triton.language as tl

RNN_TANH, RNN_RELU, LSTM, CARRY_LSTM, GRU, LN_LSTM, LN_GRU = range(7)


@triton.jit
def _sigmoid(x):
    # From e = exp(-|x|) in (0, 1]: never overflows, so a saturated gate is 0, not NaN.
    e = tl.exp(-tl.abs(x))
    r = 1.0 / (1.0 + e)
    return tl.where(x >= 0, r, e * r)


@triton.jit
def _tanh(x):
    e = tl.exp(-2.0 * tl.abs(x))
    t = (1.0 - e) / (1.0 + e)
    return tl.where(x >= 0, t, -t)


@triton.jit
def _lerp(new, prev, m):
    # s~ + m (s_{t-1} - s~) from the nearer end, as torch.lerp (m = 1 keeps s_{t-1} exactly).
    d = prev - new
    return tl.where(m < 0.5, new + m * d, prev - d * (1.0 - m))


@triton.jit
def _hidden_dot(acc, a, w_hh, q, cols, ks, kmask, cmask, H, PREC: tl.constexpr):
    # acc += a [BB, BK] @ W_hh[q H + cols, ks]^T  ([BK, BH], torch's [G, H] layout)
    w = tl.load(w_hh + (q * H + cols)[None, :] * H + ks[:, None],
                mask=kmask[:, None] & cmask[None, :], other=0.0)
    return acc + tl.dot(a, w, input_precision=PREC)


@triton.jit
def _lstm_gates(gx, r0, r1, r2, r3, m2, H):
    # i, f, g, o from the input side (in gx) plus the recurrent side r0..r3; the
    # activations replace the pre-activations in gx (what the backward reads).
    i = _sigmoid(tl.load(gx, mask=m2, other=0.0) + r0)
    f = _sigmoid(tl.load(gx + H, mask=m2, other=0.0) + r1)
    g = _tanh(tl.load(gx + 2 * H, mask=m2, other=0.0) + r2)
    o = _sigmoid(tl.load(gx + 3 * H, mask=m2, other=0.0) + r3)
    tl.store(gx, i, mask=m2)
    tl.store(gx + H, f, mask=m2)
    tl.store(gx + 2 * H, g, mask=m2)
    tl.store(gx + 3 * H, o, mask=m2)
    return i, f, g, o


@triton.jit
def _gru_step(gx, ghp, gh0, gh1, gh2, b_hh, cols, cmask, m2, hp, H, HAS_BHH: tl.constexpr):
    # gh = the recurrent side (+ b_hh), kept at ghp (cache0); r, z, n replace the input
    # side's pre-activations in gx; returns h_t = (1 - z) n + z h_{t-1}.
    if HAS_BHH:
        gh0 += tl.load(b_hh + cols, mask=cmask, other=0.0)[None, :]
        gh1 += tl.load(b_hh + H + cols, mask=cmask, other=0.0)[None, :]
        gh2 += tl.load(b_hh + 2 * H + cols, mask=cmask, other=0.0)[None, :]
    tl.store(ghp, gh0, mask=m2)
    tl.store(ghp + H, gh1, mask=m2)
    tl.store(ghp + 2 * H, gh2, mask=m2)
    r = _sigmoid(tl.load(gx, mask=m2, other=0.0) + gh0)
    z = _sigmoid(tl.load(gx + H, mask=m2, other=0.0) + gh1)
    nn = _tanh(tl.load(gx + 2 * H, mask=m2, other=0.0) + r * gh2)
    tl.store(gx, r, mask=m2)
    tl.store(gx + H, z, mask=m2)
    tl.store(gx + 2 * H, nn, mask=m2)
    return nn + z * (hp - nn)


@triton.jit
def _fwd_tile(pid_b, pid_h, xp, states_h, states_c, cache0, w_hh, b_hh, mask, h_in, zh, zc,
              off_g, off_h, off_hn, n, H,
              CELL: tl.constexpr, NG: tl.constexpr, HAS_BHH: tl.constexpr,
              HAS_MASK: tl.constexpr, HAS_ZH: tl.constexpr, HAS_ZC: tl.constexpr,
              PREC: tl.constexpr, BB: tl.constexpr, BH: tl.constexpr, BK: tl.constexpr):
    """One forward step of rnn, rnn-relu, lstm, carry-lstm or gru for the [BB, BH] tile
    (row block ``pid_b``, hidden block ``pid_h``).

    Offsets of step t: ``off_g`` = t B G (xp; the GRU's gh in cache0), ``off_h`` = t B H
    (h_{t-1} and c_{t-1} in the states, h_in, zoneout, the LSTMs' tanh(c_t) in cache0),
    ``off_hn`` = (t + 1) B H (the new states).
    """
    rows = pid_b * BB + tl.arange(0, BB)
    cols = pid_h * BH + tl.arange(0, BH)
    rmask = rows < n
    cmask = cols < H
    m2 = rmask[:, None] & cmask[None, :]
    G = NG * H
    dt = xp.dtype.element_ty
    acc0 = tl.zeros([BB, BH], dtype=dt)
    acc1 = tl.zeros([BB, BH], dtype=dt)
    acc2 = tl.zeros([BB, BH], dtype=dt)
    acc3 = tl.zeros([BB, BH], dtype=dt)
    acc4 = tl.zeros([BB, BH], dtype=dt)
    for k0 in range(0, H, BK):
        ks = k0 + tl.arange(0, BK)
        kmask = ks < H
        am = rmask[:, None] & kmask[None, :]
        aidx = rows[:, None] * H + ks[None, :]
        a = tl.load(states_h + off_h + aidx, mask=am, other=0.0)
        if HAS_MASK:  # variational recurrent dropout: the product reads h_{t-1} * m
            a = a * tl.load(mask + aidx, mask=am, other=0.0)
            if pid_h == 0:
                tl.store(h_in + off_h + aidx, a, mask=am)
        acc0 = _hidden_dot(acc0, a, w_hh, 0, cols, ks, kmask, cmask, H, PREC)
        if NG >= 3:
            acc1 = _hidden_dot(acc1, a, w_hh, 1, cols, ks, kmask, cmask, H, PREC)
            acc2 = _hidden_dot(acc2, a, w_hh, 2, cols, ks, kmask, cmask, H, PREC)
        if NG >= 4:
            acc3 = _hidden_dot(acc3, a, w_hh, 3, cols, ks, kmask, cmask, H, PREC)
        if NG >= 5:
            acc4 = _hidden_dot(acc4, a, w_hh, 4, cols, ks, kmask, cmask, H, PREC)
    gx = xp + off_g + rows[:, None] * G + cols[None, :]  # gate block q at + q H
    hidx = rows[:, None] * H + cols[None, :]
    hp = tl.load(states_h + off_h + hidx, mask=m2, other=0.0)
    if CELL == 0 or CELL == 1:
        pre = tl.load(gx, mask=m2, other=0.0) + acc0
        if CELL == 0:
            h = _tanh(pre)
        else:
            h = tl.maximum(pre, 0.0)
        tl.store(gx, h, mask=m2)  # the activation is what the backward reads
    elif CELL == 4:  # GRU: gh = W_hh h_{t-1} + b_hh kept in cache0 [B, 3H]
        gh = cache0 + off_g + rows[:, None] * G + cols[None, :]
        h = _gru_step(gx, gh, acc0, acc1, acc2, b_hh, cols, cmask, m2, hp, H, HAS_BHH)
    else:  # LSTM (i, f, g, o) and carry-LSTM (and beta)
        i, f, g, o = _lstm_gates(gx, acc0, acc1, acc2, acc3, m2, H)
        cp = tl.load(states_c + off_h + hidx, mask=m2, other=0.0)
        c = f * cp + i * g
        tc = _tanh(c)
        tl.store(cache0 + off_h + hidx, tc, mask=m2)
        h = o * tc
        if CELL == 3:
            beta = _sigmoid(tl.load(gx + 4 * H, mask=m2, other=0.0) + acc4)
            tl.store(gx + 4 * H, beta, mask=m2)
            h += beta * hp
        if HAS_ZC:
            c = _lerp(c, cp, tl.load(zc + off_h + hidx, mask=m2, other=0.0))
        tl.store(states_c + off_hn + hidx, c, mask=m2)
    if HAS_ZH:
        h = _lerp(h, hp, tl.load(zh + off_h + hidx, mask=m2, other=0.0))
    tl.store(states_h + off_hn + hidx, h, mask=m2)


@triton.jit
def _lstm_saved(gx, cache0, states_c, dc, zc, off_h, hidx, m2, H, HAS_ZC: tl.constexpr):
    # What an LSTM's backward step reads: the activations i, f, g, o, tanh(c_t) (of the
    # cell norm's output for ln-lstm), c_{t-1}, and dL/dc_t less the share zoneout kept.
    i = tl.load(gx, mask=m2, other=0.0)
    f = tl.load(gx + H, mask=m2, other=0.0)
    g = tl.load(gx + 2 * H, mask=m2, other=0.0)
    o = tl.load(gx + 3 * H, mask=m2, other=0.0)
    tc = tl.load(cache0 + off_h + hidx, mask=m2, other=0.0)
    cp = tl.load(states_c + off_h + hidx, mask=m2, other=0.0)
    dcv = tl.load(dc + hidx, mask=m2, other=0.0)
    kept_c = dcv * 0.0
    if HAS_ZC:
        kept_c = dcv * tl.load(zc + off_h + hidx, mask=m2, other=0.0)
        dcv -= kept_c
    return i, f, g, o, tc, cp, dcv, kept_c


@triton.jit
def _bwd_tile(pid_b, pid_h, acts, states_h, states_c, cache0, w_hh, mask, zh, zc, dy, dh, dc,
              dgx, dgh, src, off_g, off_h, off_src, n, n_next, H,
              CELL: tl.constexpr, NG: tl.constexpr, HAS_NEXT: tl.constexpr,
              HAS_MASK: tl.constexpr, HAS_DY: tl.constexpr, HAS_ZH: tl.constexpr,
              HAS_ZC: tl.constexpr, PREC: tl.constexpr,
              BB: tl.constexpr, BH: tl.constexpr, BK: tl.constexpr):
    """One backward step of rnn, rnn-relu, lstm, carry-lstm or gru for a [BB, BH] tile.

    First what reaches h_t from step t+1 through W_hh: ``src`` (dgates of step t+1, rows
    ``< n_next``, at ``off_src``) @ W_hh for the tile's columns (* m), added to ``dh``
    (which holds the direct part step t+1 left) with dL/dy_t. Then step t's gate
    gradients into ``dgx`` (and ``dgh``), and the direct parts for step t-1 into ``dh``
    and ``dc``.
    """
    rows = pid_b * BB + tl.arange(0, BB)
    cols = pid_h * BH + tl.arange(0, BH)
    rmask = rows < n
    cmask = cols < H
    m2 = rmask[:, None] & cmask[None, :]
    G = NG * H
    hidx = rows[:, None] * H + cols[None, :]
    d = tl.load(dh + hidx, mask=m2, other=0.0)
    if HAS_NEXT:
        dt = dh.dtype.element_ty
        acc = tl.zeros([BB, BH], dtype=dt)
        amask = rows < n_next
        for k0 in range(0, G, BK):
            ks = k0 + tl.arange(0, BK)
            kmask = ks < G
            a = tl.load(src + off_src + rows[:, None] * G + ks[None, :],
                        mask=amask[:, None] & kmask[None, :], other=0.0)
            w = tl.load(w_hh + ks[:, None] * H + cols[None, :],
                        mask=kmask[:, None] & cmask[None, :], other=0.0)
            acc += tl.dot(a, w, input_precision=PREC)
        if HAS_MASK:
            acc = acc * tl.load(mask + hidx, mask=m2, other=0.0)
        d += acc
    if HAS_DY:
        d += tl.load(dy + off_h + hidx, mask=m2, other=0.0)
    kept_h = d * 0.0
    if HAS_ZH:  # the share zoneout kept skips the cell
        kept_h = d * tl.load(zh + off_h + hidx, mask=m2, other=0.0)
        d -= kept_h
    gx = acts + off_g + rows[:, None] * G + cols[None, :]
    dx = dgx + off_g + rows[:, None] * G + cols[None, :]
    if CELL == 0 or CELL == 1:
        h = tl.load(gx, mask=m2, other=0.0)
        if CELL == 0:
            tl.store(dx, d * (1.0 - h * h), mask=m2)
        else:
            tl.store(dx, tl.where(h > 0.0, d, 0.0), mask=m2)
        direct = d * 0.0
    elif CELL == 4:
        r = tl.load(gx, mask=m2, other=0.0)
        z = tl.load(gx + H, mask=m2, other=0.0)
        nn = tl.load(gx + 2 * H, mask=m2, other=0.0)
        ghn = tl.load(cache0 + off_g + rows[:, None] * G + 2 * H + cols[None, :], mask=m2,
                      other=0.0)
        hp = tl.load(states_h + off_h + hidx, mask=m2, other=0.0)
        dn = d * (1.0 - z) * (1.0 - nn * nn)
        dz = d * (hp - nn) * z * (1.0 - z)
        dr = dn * ghn * r * (1.0 - r)
        tl.store(dx, dr, mask=m2)
        tl.store(dx + H, dz, mask=m2)
        tl.store(dx + 2 * H, dn, mask=m2)
        dhg = dgh + off_g + rows[:, None] * G + cols[None, :]
        tl.store(dhg, dr, mask=m2)
        tl.store(dhg + H, dz, mask=m2)
        tl.store(dhg + 2 * H, dn * r, mask=m2)
        direct = d * z
    else:
        i, f, g, o, tc, cp, dcv, kept_c = _lstm_saved(gx, cache0, states_c, dc, zc, off_h,
                                                       hidx, m2, H, HAS_ZC)
        dct = dcv + d * o * (1.0 - tc * tc)
        tl.store(dx, dct * g * i * (1.0 - i), mask=m2)
        tl.store(dx + H, dct * cp * f * (1.0 - f), mask=m2)
        tl.store(dx + 2 * H, dct * i * (1.0 - g * g), mask=m2)
        tl.store(dx + 3 * H, d * tc * o * (1.0 - o), mask=m2)
        tl.store(dc + hidx, dct * f + kept_c, mask=m2)
        direct = d * 0.0
        if CELL == 3:
            beta = tl.load(gx + 4 * H, mask=m2, other=0.0)
            hp = tl.load(states_h + off_h + hidx, mask=m2, other=0.0)
            tl.store(dx + 4 * H, d * hp * beta * (1.0 - beta), mask=m2)
            direct = d * beta  # the carry path
    tl.store(dh + hidx, direct + kept_h, mask=m2)


@triton.jit
def fwd_step(xp, states_h, states_c, cache0, w_hh, b_hh, mask, h_in, zh, zc,
             off_g, off_h, off_hn, n, H,
             CELL: tl.constexpr, NG: tl.constexpr, HAS_BHH: tl.constexpr,
             HAS_MASK: tl.constexpr, HAS_ZH: tl.constexpr, HAS_ZC: tl.constexpr,
             PREC: tl.constexpr, BB: tl.constexpr, BH: tl.constexpr, BK: tl.constexpr):
    """One forward step, one launch: a program per [BB, BH] tile."""
    _fwd_tile(tl.program_id(0), tl.program_id(1), xp, states_h, states_c, cache0, w_hh, b_hh,
              mask, h_in, zh, zc, off_g, off_h, off_hn, n, H, CELL, NG, HAS_BHH, HAS_MASK,
              HAS_ZH, HAS_ZC, PREC, BB, BH, BK)


@triton.jit
def fwd_seq(xp, states_h, states_c, cache0, w_hh, b_hh, mask, h_in, zh, zc, sizes, T, B, H,
            CELL: tl.constexpr, NG: tl.constexpr, HAS_BHH: tl.constexpr,
            HAS_MASK: tl.constexpr, HAS_ZH: tl.constexpr, HAS_ZC: tl.constexpr,
            PREC: tl.constexpr, BB: tl.constexpr, BH: tl.constexpr, BK: tl.constexpr):
    """The whole forward loop in one launch (persistent over time): a program per block of
    BB rows walks every step and every hidden block of its rows; what it wrote for step t
    is what it reads for step t+1 (a barrier between steps). ``sizes``: the running rows
    of each step (int32 [T])."""
    pid_b = tl.program_id(0)
    G = NG * H
    for t in range(T):
        n = tl.load(sizes + t)
        for hb in range(tl.cdiv(H, BH)):
            _fwd_tile(pid_b, hb, xp, states_h, states_c, cache0, w_hh, b_hh, mask, h_in,
                      zh, zc, t * B * G, t * B * H, (t + 1) * B * H, n, H, CELL, NG, HAS_BHH,
                      HAS_MASK, HAS_ZH, HAS_ZC, PREC, BB, BH, BK)
        tl.debug_barrier()


@triton.jit
def bwd_step(acts, states_h, states_c, cache0, w_hh, mask, zh, zc, dy, dh, dc, dgx, dgh, src,
             off_g, off_h, off_src, n, n_next, H,
             CELL: tl.constexpr, NG: tl.constexpr, HAS_NEXT: tl.constexpr,
             HAS_MASK: tl.constexpr, HAS_DY: tl.constexpr, HAS_ZH: tl.constexpr,
             HAS_ZC: tl.constexpr, PREC: tl.constexpr,
             BB: tl.constexpr, BH: tl.constexpr, BK: tl.constexpr):
    """One backward step, one launch: a program per [BB, BH] tile."""
    _bwd_tile(tl.program_id(0), tl.program_id(1), acts, states_h, states_c, cache0, w_hh,
              mask, zh, zc, dy, dh, dc, dgx, dgh, src, off_g, off_h, off_src, n, n_next, H,
              CELL, NG, HAS_NEXT, HAS_MASK, HAS_DY, HAS_ZH, HAS_ZC, PREC, BB, BH, BK)


@triton.jit
def bwd_seq(acts, states_h, states_c, cache0, w_hh, mask, zh, zc, dy, dh, dc, dgx, dgh, src,
            sizes, T, B, H,
            CELL: tl.constexpr, NG: tl.constexpr, HAS_MASK: tl.constexpr,
            HAS_DY: tl.constexpr, HAS_ZH: tl.constexpr, HAS_ZC: tl.constexpr,
            PREC: tl.constexpr, BB: tl.constexpr, BH: tl.constexpr, BK: tl.constexpr):
    """The whole backward loop (but the last product, dL/dh_0) in one launch, as
    ``fwd_seq``: a program per block of rows, steps T-1 down to 0."""
    pid_b = tl.program_id(0)
    G = NG * H
    for i in range(T):
        t = T - 1 - i
        n = tl.load(sizes + t)
        n_next = tl.load(sizes + t + 1, mask=t + 1 < T, other=0)
        for hb in range(tl.cdiv(H, BH)):
            _bwd_tile(pid_b, hb, acts, states_h, states_c, cache0, w_hh, mask, zh, zc, dy, dh,
                      dc, dgx, dgh, src, t * B * G, t * B * H, (t + 1) * B * G, n, n_next, H,
                      CELL, NG, True, HAS_MASK, HAS_DY, HAS_ZH, HAS_ZC, PREC, BB, BH, BK)
        tl.debug_barrier()


@triton.jit
def product(a, off_a, w, out, off_out, mask, a_store, n, K, N,
            TRANS_W: tl.constexpr, ACCUMULATE: tl.constexpr, MASK_A: tl.constexpr,
            MASK_OUT: tl.constexpr, PREC: tl.constexpr,
            BB: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    """out[:n] (+)= (a[:n] (* m)) @ op(W) (* m), a [., K] at ``off_a``, out [., N] at
    ``off_out``; op(W) is W [K, N], or the transpose of W [N, K] with ``TRANS_W``. With
    ``MASK_A`` the masked rows are also written to ``a_store`` (at ``off_a``)."""
    pid_b = tl.program_id(0)
    pid_n = tl.program_id(1)
    rows = pid_b * BB + tl.arange(0, BB)
    cols = pid_n * BN + tl.arange(0, BN)
    rmask = rows < n
    cmask = cols < N
    acc = tl.zeros([BB, BN], dtype=out.dtype.element_ty)
    for k0 in range(0, K, BK):
        ks = k0 + tl.arange(0, BK)
        kmask = ks < K
        am = rmask[:, None] & kmask[None, :]
        aidx = rows[:, None] * K + ks[None, :]
        x = tl.load(a + off_a + aidx, mask=am, other=0.0)
        if MASK_A:
            x = x * tl.load(mask + aidx, mask=am, other=0.0)
            if pid_n == 0:
                tl.store(a_store + off_a + aidx, x, mask=am)
        wm = kmask[:, None] & cmask[None, :]
        if TRANS_W:
            wt = tl.load(w + cols[None, :] * K + ks[:, None], mask=wm, other=0.0)
        else:
            wt = tl.load(w + ks[:, None] * N + cols[None, :], mask=wm, other=0.0)
        acc += tl.dot(x, wt, input_precision=PREC)
    m2 = rmask[:, None] & cmask[None, :]
    oidx = rows[:, None] * N + cols[None, :]
    if MASK_OUT:
        acc = acc * tl.load(mask + oidx, mask=m2, other=0.0)
    if ACCUMULATE:
        acc += tl.load(out + off_out + oidx, mask=m2, other=0.0)
    tl.store(out + off_out + oidx, acc, mask=m2)
