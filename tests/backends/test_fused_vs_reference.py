"""The fused engine (hand-derived BPTT) equals autograd through the reference engine.

For every cell, the plain ones and the variants: outputs, final states and the
gradients of the input, every weight, bias and extra parameter and the initial states,
with random upstream gradients on the outputs and the final states; also with variable
lengths, in the reverse direction, and with fixed recurrent-dropout and zoneout masks.
"""

from __future__ import annotations

import pytest
import torch

from rnnkit.backends import run_direction
from rnnkit.backends.ops import run_sequence
from rnnkit.functional import CELLS as SPECS
from rnnkit.functional import Masks
from tests.helpers import CELLS, NUM_STATES, make_extra, make_weights, random_lengths

TOL = {torch.float64: {"rtol": 1e-10, "atol": 1e-10}, torch.float32: {"rtol": 1e-5, "atol": 1e-5}}
# A layer norm over a handful of units divides by their spread, which magnifies float32
# rounding (float64 agrees to 1e-10, so the maths is the same). MKL's float32 sums also
# depend on how the buffers happen to be aligned, so the same case can differ by 1e-3 from
# one process to the next (seen once in a full run, at 1.2e-3 on 2 of 100 gradients).
TOL_LAYER_NORM_FLOAT32 = {"rtol": 1e-3, "atol": 2e-3}


def random_masks(cell: str, T: int, B: int, H: int, dtype: torch.dtype) -> Masks:
    """A recurrent-dropout mask (keep 0.7, scaled) and 0/1 zoneout masks (p 0.3) per state."""
    recurrent = torch.bernoulli(torch.full((B, H), 0.7, dtype=dtype)) / 0.7
    zoneout = tuple(torch.bernoulli(torch.full((T, B, H), 0.3, dtype=dtype))
                    for _ in range(NUM_STATES[cell]))
    return Masks(recurrent, zoneout)


def _run_both(cell, T, B, I, H, dtype, lengths, reverse=False, bias=True, masks=False):
    x = torch.randn(T, B, I, dtype=dtype, requires_grad=True)
    states0 = tuple(torch.randn(B, H, dtype=dtype, requires_grad=True)
                    for _ in range(NUM_STATES[cell]))
    weights = make_weights(cell, I, H, dtype, bias=bias)
    extra = make_extra(cell, H, dtype)
    leaves = [x, *states0] + [w for w in weights if w is not None] + extra
    dy = torch.randn(T, B, H, dtype=dtype)
    dfinal = [torch.randn(B, H, dtype=dtype) for _ in states0]
    run_masks = random_masks(cell, T, B, H, dtype) if masks else None
    results = {}
    for backend in ("reference", "fused"):
        y, final = run_direction(cell, x, states0, *weights, lengths=lengths, reverse=reverse,
                                 backend=backend, extra=extra, masks=run_masks)
        grads = torch.autograd.grad([y, *final], leaves, [dy, *dfinal])
        results[backend] = (y, final, grads)
    return results


def _assert_same(results, dtype, cell=""):
    (y_r, f_r, g_r), (y_f, f_f, g_f) = results["reference"], results["fused"]
    tol = TOL_LAYER_NORM_FLOAT32 if cell.startswith("ln-") and dtype == torch.float32 else TOL[dtype]
    torch.testing.assert_close(y_f, y_r, **tol)
    for a, b in zip(f_f, f_r):
        torch.testing.assert_close(a, b, **tol)
    for a, b in zip(g_f, g_r):
        torch.testing.assert_close(a, b, **tol)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("cell", CELLS)
def test_full_length(cell, dtype):
    _assert_same(_run_both(cell, T=9, B=4, I=5, H=6, dtype=dtype, lengths=None), dtype, cell)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("reverse", [False, True])
def test_variable_lengths(cell, dtype, reverse):
    T, B = 8, 6
    results = _run_both(cell, T=T, B=B, I=3, H=5, dtype=dtype, lengths=random_lengths(B, T),
                        reverse=reverse)
    _assert_same(results, dtype, cell)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("with_lengths", [False, True])
def test_fixed_masks_give_exact_gradients(cell, dtype, with_lengths):
    # Recurrent dropout and zoneout together, masks drawn once and given to both engines.
    T, B = 7, 5
    lengths = random_lengths(B, T) if with_lengths else None
    _assert_same(_run_both(cell, T=T, B=B, I=3, H=4, dtype=dtype, lengths=lengths,
                           reverse=with_lengths, masks=True), dtype, cell)


@pytest.mark.parametrize("cell", CELLS)
def test_no_bias_and_lengths_shorter_than_input(cell):
    # Every sequence shorter than the padded input: the fused engine trims and pads back.
    lengths = torch.tensor([3, 5, 2])
    _assert_same(_run_both(cell, T=7, B=3, I=4, H=4, dtype=torch.float64, lengths=lengths,
                           bias=False), torch.float64)


@pytest.mark.parametrize("cell", CELLS)
def test_outputs_past_the_end_are_zero_and_final_state_is_at_each_end(cell):
    T, B, I, H = 6, 4, 3, 5
    lengths = torch.tensor([2, 6, 1, 4])
    x = torch.randn(T, B, I, dtype=torch.float64)
    states0 = tuple(torch.randn(B, H, dtype=torch.float64) for _ in range(NUM_STATES[cell]))
    weights = make_weights(cell, I, H, torch.float64, requires_grad=False)
    extra = make_extra(cell, H, torch.float64, requires_grad=False)
    y, final = run_direction(cell, x, states0, *weights, lengths=lengths, backend="fused",
                             extra=extra)
    for b, n in enumerate(lengths.tolist()):
        assert torch.all(y[n:, b] == 0)
        # The same sequence alone, cut to its length, ends in the same state.
        y_alone, final_alone = run_direction(cell, x[:n, b:b + 1], tuple(s[b:b + 1] for s in states0),
                                             *weights, backend="fused", extra=extra)
        torch.testing.assert_close(y[:n, b], y_alone[:, 0], rtol=1e-12, atol=1e-12)
        for f, fa in zip(final, final_alone):
            torch.testing.assert_close(f[b], fa[0], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("with_lengths", [False, True])
@pytest.mark.parametrize("with_masks", [False, True])
def test_gradcheck_fused(cell, with_lengths, with_masks):
    T, B, I, H = 4, 3, 2, 3
    spec = SPECS[cell]
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    states0 = [torch.randn(B, H, dtype=torch.float64, requires_grad=True)
               for _ in range(spec.num_states)]
    weights = make_weights(cell, I, H, torch.float64)
    extra = make_extra(cell, H, torch.float64)
    lengths = torch.tensor([4, 1, 3]) if with_lengths else None  # unsorted on purpose
    masks = random_masks(cell, T, B, H, torch.float64) if with_masks else None

    def fn(x, w_ih, w_hh, b_ih, b_hh, *rest):
        extra, states0 = rest[:len(spec.extra)], rest[len(spec.extra):]
        y, final = run_sequence("fused", cell, x, states0, w_ih, w_hh, b_ih, b_hh, lengths,
                                extra, masks)
        return (y, *final)

    assert torch.autograd.gradcheck(fn, (x, *weights, *extra, *states0), eps=1e-6, atol=1e-8)


def test_only_some_inputs_need_grad():
    # The engine skips products nobody asked for and still returns the right ones.
    cell, T, B, I, H = "lstm", 5, 3, 4, 6
    x = torch.randn(T, B, I, dtype=torch.float64)
    states0 = (torch.zeros(B, H, dtype=torch.float64), torch.zeros(B, H, dtype=torch.float64))
    weights = make_weights(cell, I, H, torch.float64)
    weights[0].requires_grad_(False)
    grads = {}
    for backend in ("reference", "fused"):
        y, _ = run_direction(cell, x, states0, *weights, backend=backend)
        grads[backend] = torch.autograd.grad(y.sum(), [weights[1], weights[3]])
    for a, b in zip(grads["fused"], grads["reference"]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
