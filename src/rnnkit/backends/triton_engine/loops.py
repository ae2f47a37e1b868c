"""The ``triton`` engine's time loops: the same buffers and arguments as the native ops
``torch.ops.rnnkit.cell_forward`` / ``cell_backward`` (see ``native/engine.cpp``), the
steps launched as the kernels of :mod:`.kernels`.

A step of the plain cells (rnn, rnn-relu, lstm, carry-lstm, gru) is one launch forward
and one backward: the backward kernel of step t starts with the product
``dgates_{t+1} @ W_hh`` that the previous launch's gate gradients make possible, and a last
product after the loop gives dL/dh_0. The layer-norm cells take two launches a step
(the recurrent product, then a kernel that owns whole rows for the norms).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
from torch import Tensor

from rnnkit.backends.triton_engine import kernels as K
from rnnkit.backends.triton_engine import layer_norm_kernels as LN
from rnnkit.backends.triton_engine import min_kernels as M

# Tile sizes: rows x hidden units (x the slice of the product's inner dimension). tl.dot
# needs at least 16 in each.
BB, BH, BK = 16, 32, 32
BN = 64  # columns of a product tile
NG = {K.RNN_TANH: 1, K.RNN_RELU: 1, K.LSTM: 4, K.CARRY_LSTM: 5, K.GRU: 3, K.LN_LSTM: 4,
      K.LN_GRU: 3}
NORMS = {K.LN_LSTM: 2, K.LN_GRU: 1}


LOOP_VAR = "RNNKIT_TRITON_LOOP"
# The recurrent matrix a persistent loop reads every step from a single SM's caches.
ON_CHIP_BYTES = 256 * 1024


def persistent(kind: int, T: int, B: int, H: int, itemsize: int) -> bool:
    """Whether a plain cell's loops run persistent over time (``fwd_seq``/``bwd_seq``, one
    launch) rather than a launch per step: ``RNNKIT_TRITON_LOOP`` = ``persistent`` or
    ``step``; by default (``auto``) persistent when W_hh fits on chip (at most
    ``ON_CHIP_BYTES``), where a step is too little work to pay for its launches. Never for
    the layer-norm cells, nor past 2**31 elements (the kernel's offsets are 32-bit)."""
    mode = os.environ.get(LOOP_VAR, "auto")
    if mode not in ("auto", "step", "persistent"):
        raise ValueError(f"{LOOP_VAR}: expected auto, step or persistent, got {mode!r}")
    G = NG[kind] * H
    if kind >= K.LN_LSTM or mode == "step" or T * B * G >= 2 ** 31:
        return False
    return mode == "persistent" or G * H * itemsize <= ON_CHIP_BYTES


def _sizes(sizes: Sequence[int], T: int, B: int, device: torch.device) -> Tensor:
    return torch.tensor(list(sizes) if sizes else [B] * T, dtype=torch.int32, device=device)


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _row_block(H: int) -> tuple[int, int]:
    """(rows per program, padded width) of the whole-row kernels: about 2,048 values per
    block, so a program's row of four gates stays in registers."""
    hp = triton_next_power_of_2(H)
    return max(1, min(16, 2048 // hp)), hp


def _row_warps(hp: int) -> int:
    """Warps of a whole-row program: more for wide rows (a row of four gates at H = 1024
    is 4,096 values per row)."""
    return 8 if hp >= 512 else 4


def triton_next_power_of_2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def _layer_norm_buffers(kind: int, cache: Sequence[Tensor], step_extra: Sequence[Tensor],
                        dummy: Tensor) -> tuple[Tensor, ...]:
    """(cache0, cache1, cache2, rstd, w_h, w_c, b_c) of a layer-norm cell (``dummy`` for
    what ln-gru lacks): engine.cpp's cache layout and extra parameters."""
    lstm = kind == K.LN_LSTM
    return (cache[0], cache[1], cache[2] if lstm else dummy, cache[-1], step_extra[0],
            step_extra[1] if lstm else dummy, step_extra[2] if lstm else dummy)


def _precision(t: Tensor) -> str:
    del t
    return "ieee"  # float32 products in float32 (never TF32), float64 in float64


def cell_forward(kind: int, xp: Tensor, w_hh: Tensor, b_step: Tensor | None,
                 step_extra: Sequence[Tensor], states: Sequence[Tensor], cache: Sequence[Tensor],
                 mask: Tensor | None, h_in: Tensor | None, zoneout: Sequence[Tensor | None],
                 sizes: Sequence[int]) -> None:
    """The forward loop; writes the activations into ``xp``, the states, the cache."""
    T, B, G = xp.shape
    H = w_hh.shape[1]
    dummy = xp
    sh = states[0]
    sc = states[1] if len(states) > 1 else dummy
    zh = zoneout[0] if len(zoneout) > 0 and zoneout[0] is not None else None
    zc = zoneout[1] if len(zoneout) > 1 and zoneout[1] is not None else None
    flags = {"HAS_MASK": mask is not None, "HAS_ZH": zh is not None, "HAS_ZC": zc is not None}
    m = mask if mask is not None else dummy
    hin = h_in if h_in is not None else dummy
    prec = _precision(xp)
    if kind >= K.LN_LSTM:
        c0, c1, c2, rstd, w_h, w_c, b_c = _layer_norm_buffers(kind, cache, step_extra, dummy)
        rbb, hp = _row_block(H)
    else:
        c0 = cache[0] if cache else dummy
    b = b_step if b_step is not None else dummy
    if T > 0 and B > 0 and persistent(kind, T, B, H, xp.element_size()):
        K.fwd_seq[(_cdiv(B, BB),)](
            xp, sh, sc, c0, w_hh, b, m, hin, zh if zh is not None else dummy,
            zc if zc is not None else dummy, _sizes(sizes, T, B, xp.device), T, B, H,
            CELL=kind, NG=NG[kind], HAS_BHH=b_step is not None, PREC=prec,
            BB=BB, BH=BH, BK=BK, **flags)
        return
    for t in range(T):
        n = sizes[t] if sizes else B
        if n == 0:
            continue
        off_g, off_h, off_hn = t * B * G, t * B * H, (t + 1) * B * H
        if kind < K.LN_LSTM:
            K.fwd_step[(_cdiv(n, BB), _cdiv(H, BH))](
                xp, sh, sc, c0, w_hh, b, m, hin, zh if zh is not None else dummy,
                zc if zc is not None else dummy, off_g, off_h, off_hn, n, H,
                CELL=kind, NG=NG[kind], HAS_BHH=b_step is not None, PREC=prec,
                BB=BB, BH=BH, BK=BK, **flags)
            continue
        K.product[(_cdiv(n, BB), _cdiv(G, BN))](
            sh, off_h, w_hh, c1, off_g, m, hin, n, H, G, TRANS_W=True, ACCUMULATE=False,
            MASK_A=mask is not None, MASK_OUT=False, PREC=prec, BB=BB, BN=BN, BK=BK)
        LN.ln_fwd_row[(_cdiv(n, rbb),)](
            xp, sh, sc, c0, c1, c2, rstd, w_h, w_c, b_c, b,
            zh if zh is not None else dummy, zc if zc is not None else dummy,
            off_g, off_h, off_hn, t * B * NORMS[kind], n, H,
            CELL=kind, NG=NG[kind], NORMS=NORMS[kind], HAS_BHH=b_step is not None,
            HAS_ZH=zh is not None, HAS_ZC=zc is not None, BB=rbb, HP=hp,
            num_warps=_row_warps(hp))


def cell_backward(kind: int, acts: Tensor, w_hh: Tensor, step_extra: Sequence[Tensor],
                  states: Sequence[Tensor], cache: Sequence[Tensor], mask: Tensor | None,
                  h_in: Tensor | None, zoneout: Sequence[Tensor | None], dy: Tensor | None,
                  drec: Sequence[Tensor], dgx: Tensor, dgh: Tensor | None, dr: Tensor | None,
                  dcache: Tensor | None, sizes: Sequence[int], norms: Tensor | None) -> None:
    """The backward loop: gate gradients into ``dgx`` (``dgh``, ``dr``, ``dcache``), and
    dL/dh_0 (dL/dc_0) into ``drec``, which come in holding dL/d(final states)."""
    T, B, G = acts.shape
    H = w_hh.shape[1]
    dummy = acts
    sh = states[0]
    sc = states[1] if len(states) > 1 else dummy
    dh = drec[0]
    dc = drec[1] if len(drec) > 1 else dummy
    zh = zoneout[0] if len(zoneout) > 0 and zoneout[0] is not None else None
    zc = zoneout[1] if len(zoneout) > 1 and zoneout[1] is not None else None
    m = mask if mask is not None else dummy
    prec = _precision(acts)
    # The buffer whose rows W_hh carries back to h_{t-1}: as engine.cpp's backward.
    src = dr if kind >= K.LN_LSTM else dgh if kind == K.GRU else dgx
    zflags = {"HAS_ZH": zh is not None, "HAS_ZC": zc is not None}
    zh_, zc_ = (zh if zh is not None else dummy), (zc if zc is not None else dummy)

    def rows(t: int) -> int:
        return sizes[t] if sizes else B

    def carry_back(t: int, n: int) -> None:  # dh[:n] += (src_t[:n] @ W_hh) * m
        K.product[(_cdiv(n, BB), _cdiv(H, BN))](
            src, t * B * G, w_hh, dh, 0, m, dummy, n, G, H, TRANS_W=False, ACCUMULATE=True,
            MASK_A=False, MASK_OUT=mask is not None, PREC=prec, BB=BB, BN=BN, BK=BK)

    def record(t: int, n: int) -> None:  # dh[:n] += dy_t, and its norm (the total dL/dh_t)
        if dy is not None:
            dh[:n] += dy[t, :n]
        norms[t, :n] = dh[:n].norm(dim=1)

    if kind >= K.LN_LSTM:
        c0, c1, c2, rstd, w_h, w_c, _ = _layer_norm_buffers(kind, cache, step_extra, dummy)
        rbb, hp = _row_block(H)
        for t in reversed(range(T)):
            n = rows(t)
            if n == 0:
                continue
            if norms is not None:
                record(t, n)
            LN.ln_bwd_row[(_cdiv(n, rbb),)](
                acts, sh, sc, c0, c1, c2, rstd, w_h, w_c, zh_, zc_,
                dy if dy is not None else dummy, dh, dc, dgx,
                dgh if dgh is not None else dummy, dr,
                dcache if dcache is not None else dummy,
                t * B * G, t * B * H, t * B * NORMS[kind], n, H,
                CELL=kind, NG=NG[kind], NORMS=NORMS[kind],
                HAS_DY=dy is not None and norms is None, BB=rbb, HP=hp,
                num_warps=_row_warps(hp), **zflags)
            carry_back(t, n)
        return
    if T > 0 and B > 0 and norms is None and persistent(kind, T, B, H, acts.element_size()):
        K.bwd_seq[(_cdiv(B, BB),)](
            acts, sh, sc, c0_of(cache, dummy), w_hh, m, zh_, zc_,
            dy if dy is not None else dummy, dh, dc, dgx, dgh if dgh is not None else dummy,
            src, _sizes(sizes, T, B, acts.device), T, B, H,
            CELL=kind, NG=NG[kind], HAS_MASK=mask is not None, HAS_DY=dy is not None,
            PREC=prec, BB=BB, BH=BH, BK=BK, **zflags)
        carry_back(0, rows(0))
        return
    for t in reversed(range(T)):
        n = rows(t)
        if n == 0:
            continue
        n_next = rows(t + 1) if t + 1 < T else 0
        fused_next = n_next > 0 and norms is None
        if norms is not None:
            if n_next > 0:
                carry_back(t + 1, n_next)
            record(t, n)
        K.bwd_step[(_cdiv(n, BB), _cdiv(H, BH))](
            acts, sh, sc, c0_of(cache, dummy), w_hh, m, zh_, zc_,
            dy if dy is not None else dummy, dh, dc, dgx,
            dgh if dgh is not None else dummy, src,
            t * B * G, t * B * H, (t + 1) * B * G, n, n_next, H,
            CELL=kind, NG=NG[kind], HAS_NEXT=fused_next, HAS_MASK=mask is not None,
            HAS_DY=dy is not None and norms is None, PREC=prec, BB=BB, BH=BH, BK=BK, **zflags)
    if rows(0) > 0:
        carry_back(0, rows(0))


def c0_of(cache: Sequence[Tensor], dummy: Tensor) -> Tensor:
    return cache[0] if cache else dummy





# The minimal cells: one launch each way over the whole sequence (``min_fwd``, ``min_bwd``).
MIN_BLOCK = 256  # channels (of B H) per program
MIN_CELL_CODES = {"mingru": 0, "minlstm": 1}
ACTIVATION_CODES = {"g": 0, "identity": 1}


def min_forward(cell: str, activation: str, proj: Tensor, h0: Tensor,
                lengths: Tensor | None) -> Tensor:
    """h [T, B, H] of ``torch.ops.rnnkit.min_scan`` (inputs checked there, T and B > 0)."""
    T, B, _ = proj.shape
    H = h0.shape[1]
    proj, h0 = proj.contiguous(), h0.contiguous()
    h = proj.new_empty(T, B, H)
    lens = h0 if lengths is None else lengths.to(device=proj.device, dtype=torch.int32)
    M.min_fwd[(_cdiv(B * H, MIN_BLOCK),)](
        proj, h0, lens, h, T, B, H, CELL=MIN_CELL_CODES[cell], ACT=ACTIVATION_CODES[activation],
        HAS_LEN=lengths is not None, BLOCK=MIN_BLOCK)
    return h


def min_backward(cell: str, activation: str, proj: Tensor, h0: Tensor, lengths: Tensor | None,
                 h: Tensor, dh: Tensor) -> list[Tensor]:
    """[dproj, dh0] of ``torch.ops.rnnkit.min_scan_backward``."""
    T, B, G = proj.shape
    H = h0.shape[1]
    proj, h0, h, dh = proj.contiguous(), h0.contiguous(), h.contiguous(), dh.contiguous()
    dproj = torch.empty_like(proj)
    dh0 = torch.empty_like(h0)
    lens = h0 if lengths is None else lengths.to(device=proj.device, dtype=torch.int32)
    M.min_bwd[(_cdiv(B * H, MIN_BLOCK),)](
        proj, h0, lens, h, dh, dproj, dh0, T, B, H, (T - 1) * B * G, (T - 1) * B * H,
        CELL=MIN_CELL_CODES[cell], ACT=ACTIVATION_CODES[activation],
        HAS_LEN=lengths is not None, BLOCK=MIN_BLOCK)
    return [dproj, dh0]


__all__ = ["cell_backward", "cell_forward", "min_backward", "min_forward", "persistent"]
