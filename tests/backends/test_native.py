"""The native engine (C++ loops) equals autograd through the reference engine, and falls
back cleanly where it cannot be built.

Sizes are chosen to reach every path of the C++ products: hidden sizes whose gate blocks
are and are not multiples of the 32-column panels, batches that leave 0, 1 and 2 rows
after the 3-row micro kernel, and products large enough to be split over threads.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import rnnkit
from rnnkit.backends import native, record_state_gradients, run_direction
from tests.backends.test_fused_vs_reference import random_masks
from tests.helpers import NUM_STATES, make_weights, random_lengths

pytestmark = pytest.mark.skipif(not native.available(), reason="native engine not built here")

TOL = {torch.float64: {"rtol": 1e-10, "atol": 1e-10}, torch.float32: {"rtol": 2e-5, "atol": 2e-5}}
CELLS = ["lstm", "gru"]


def _grads(cell, backend, x, states0, weights, lengths=None, reverse=False, masks=None):
    leaves = [x, *states0] + [w for w in weights if w is not None]
    y, final = run_direction(cell, x, states0, *weights, lengths=lengths, reverse=reverse,
                             backend=backend, masks=masks)
    g = torch.Generator().manual_seed(7)
    dy = torch.randn(y.shape, dtype=y.dtype, generator=g)
    dfinal = [torch.randn(f.shape, dtype=f.dtype, generator=g) for f in final]
    return (y, *final, *torch.autograd.grad([y, *final], leaves, [dy, *dfinal]))


def _case(cell, T, B, I, H, dtype, bias=True):
    torch.manual_seed(T * 1000 + B * 10 + H)
    x = torch.randn(T, B, I, dtype=dtype, requires_grad=True)
    states0 = tuple(torch.randn(B, H, dtype=dtype, requires_grad=True)
                    for _ in range(NUM_STATES[cell]))
    return x, states0, make_weights(cell, I, H, dtype, bias=bias)


def _assert_all_close(got, expected, dtype):
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, **TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("B,H", [(1, 8), (2, 37), (3, 40), (4, 16), (7, 33)])
def test_matches_reference(cell, B, H, dtype):
    x, states0, weights = _case(cell, 6, B, 5, H, dtype)
    _assert_all_close(_grads(cell, "native", x, states0, weights),
                      _grads(cell, "reference", x, states0, weights), dtype)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_variable_lengths_reverse_and_no_bias(cell, reverse, bias):
    dtype = torch.float64
    x, states0, weights = _case(cell, 9, 6, 4, 11, dtype, bias=bias)
    lengths = random_lengths(6, 9)
    _assert_all_close(_grads(cell, "native", x, states0, weights, lengths, reverse),
                      _grads(cell, "reference", x, states0, weights, lengths, reverse), dtype)


@pytest.mark.parametrize("cell", CELLS)
def test_threaded_and_packed_products(cell):
    # B * 4H * H and B * 3H * H above the size at which the products are split over threads,
    # and a longer sequence with many lengths.
    x, states0, weights = _case(cell, 32, 9, 24, 96, torch.float32)
    lengths = torch.tensor([32, 2, 32, 13, 1, 24, 32, 31, 2])
    _assert_all_close(_grads(cell, "native", x, states0, weights, lengths),
                      _grads(cell, "reference", x, states0, weights, lengths), torch.float32)


@pytest.mark.parametrize("m,k,n", [(300, 24, 96), (257, 37, 70), (1, 5, 3), (97, 64, 33)])
@pytest.mark.parametrize("bias", [True, False])
def test_packed_matmul(m, k, n, bias):
    a, w, b = torch.randn(m, k), torch.randn(k, n), torch.randn(n) if bias else None
    expected = torch.mm(a, w) if b is None else torch.addmm(b, a, w)
    matmul = torch.ops.rnnkit.matmul
    torch.testing.assert_close(matmul(a, w, b, False), expected, rtol=1e-5, atol=1e-4)
    # torch's weight layout [n, k], read as its transpose
    torch.testing.assert_close(matmul(a, w.t().contiguous(), b, True), expected, rtol=1e-5,
                               atol=1e-4)
    a64, w64 = a.double(), w.double()  # the BLAS path
    torch.testing.assert_close(matmul(a64, w64, None, False), torch.mm(a64, w64))
    torch.testing.assert_close(matmul(a64, w64.t().contiguous(), None, True), torch.mm(a64, w64))


@pytest.mark.parametrize("cell", CELLS)
def test_gradcheck(cell):
    x, states0, weights = _case(cell, 4, 3, 3, 5, torch.float64)
    leaves = (x, *states0, *weights)
    n = NUM_STATES[cell]

    def fn(x, *rest):
        y, final = run_direction(cell, x, tuple(rest[:n]), *rest[n:], backend="native",
                                 lengths=torch.tensor([4, 2, 3]))
        return (y, *final)

    assert torch.autograd.gradcheck(fn, leaves)


@pytest.mark.parametrize("cell", CELLS)
def test_masks_are_handed_to_the_fused_engine(cell, monkeypatch):
    """The selection rule sends a run with recurrent-dropout or zoneout masks past native
    (automatically without a word; named, with one warning), to the same numbers."""
    from rnnkit.backends import base

    monkeypatch.setattr(base, "_WARNED", set())
    x, states0, weights = _case(cell, 5, 3, 4, 6, torch.float64)
    masks = random_masks(cell, 5, 3, 6, torch.float64)
    expected = _grads(cell, "reference", x, states0, weights, masks=masks)
    with pytest.warns(RuntimeWarning, match="recurrent dropout and zoneout.*using 'fused'"):
        named = _grads(cell, "native", x, states0, weights, masks=masks)
    _assert_all_close(named, expected, torch.float64)
    _assert_all_close(_grads(cell, None, x, states0, weights, masks=masks), expected,
                      torch.float64)


def test_records_state_gradients_as_the_fused_engine():
    x, states0, weights = _case("lstm", 7, 4, 3, 6, torch.float64)
    lengths = torch.tensor([7, 3, 5, 7])
    norms = {}
    for backend in ("native", "fused"):
        with record_state_gradients() as store:
            _grads("lstm", backend, x, states0, weights, lengths)
        norms[backend] = store
    assert len(norms["native"]) == 1
    torch.testing.assert_close(norms["native"][0], norms["fused"][0])


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
@pytest.mark.parametrize("layers,bidirectional,batch_first", [(1, False, False), (2, True, True),
                                                              (3, False, True)])
def test_layer_matches_torch_nn(kind, layers, bidirectional, batch_first):
    """Stacked, bidirectional and packed variable-length input, against torch.nn."""
    torch.manual_seed(layers)
    ref = getattr(torch.nn, kind)(5, 12, num_layers=layers, bidirectional=bidirectional,
                                  batch_first=batch_first)
    ours = getattr(rnnkit.nn, kind)(5, 12, num_layers=layers, bidirectional=bidirectional,
                                    batch_first=batch_first, backend="native")
    ours.load_state_dict(ref.state_dict())
    lengths = torch.tensor([7, 3, 6, 1, 7])
    x = torch.randn(5, 7, 5) if batch_first else torch.randn(7, 5, 5)
    results = []
    for layer in (ref, ours):
        xi = x.clone().requires_grad_()
        packed = pack_padded_sequence(xi, lengths, batch_first=batch_first, enforce_sorted=False)
        out, state = layer(packed)
        out, _ = pad_packed_sequence(out, batch_first=batch_first)
        states = state if isinstance(state, tuple) else (state,)
        loss = out.pow(2).sum() + sum(s.sin().sum() for s in states)
        grads = torch.autograd.grad(loss, [xi, *layer.parameters()])
        results.append((out, *states, *grads))
    _assert_all_close(results[1], results[0], torch.float32)


# ---------------------------------------------------------------- the step API


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN", "LayerNormLSTM"])
@pytest.mark.parametrize("batched", [True, False])
def test_step_equals_forward(kind, batched):
    torch.manual_seed(0)
    layer = getattr(rnnkit.nn, kind)(6, 9, num_layers=2, batch_first=True).eval()
    x = torch.randn(3, 5, 6) if batched else torch.randn(5, 6)
    with torch.no_grad():
        y, final = layer(x)
        state, steps = None, []
        for t in range(5):
            out, state = layer.step(x[:, t] if batched else x[t], state)
            steps.append(out)
    torch.testing.assert_close(torch.stack(steps, dim=1 if batched else 0), y)
    finals = final if isinstance(final, tuple) else (final,)
    states = state if isinstance(state, tuple) else (state,)
    for a, b in zip(states, finals):
        torch.testing.assert_close(a, b)


def test_step_with_zoneout_in_evaluation_uses_the_expectation():
    torch.manual_seed(0)
    layer = rnnkit.nn.LSTM(4, 7, zoneout=(0.2, 0.4)).eval()
    x = torch.randn(6, 2, 4)
    with torch.no_grad():
        y, _ = layer(x)
        state, steps = None, []
        for t in range(6):
            out, state = layer.step(x[t], state)
            steps.append(out)
    torch.testing.assert_close(torch.stack(steps), y)


def test_step_keeps_gradients_when_asked():
    layer = rnnkit.nn.GRU(3, 4)
    x = torch.randn(2, 3, requires_grad=True)
    out, _ = layer.step(x)
    out.sum().backward()
    assert x.grad is not None and layer.weight_hh_l0.grad is not None


def test_step_refuses_bidirectional_and_bad_input():
    with pytest.raises(ValueError, match="step: a bidirectional layer"):
        rnnkit.nn.LSTM(3, 4, bidirectional=True).step(torch.randn(2, 3))
    with pytest.raises(ValueError, match="input: expected last dimension input_size=3"):
        rnnkit.nn.LSTM(3, 4).step(torch.randn(2, 5))
    with pytest.raises(ValueError, match="input: expected a 1-D or 2-D tensor"):
        rnnkit.nn.GRU(3, 4).step(torch.randn(1, 2, 3))
    with pytest.raises(ValueError, match=r"hx: expected shape \(1, 2, 4\)"), torch.no_grad():
        rnnkit.nn.GRU(3, 4).step(torch.randn(2, 3), torch.zeros(1, 3, 4))


# ---------------------------------------------------------------- without a build


def _python(code: str, **env: str) -> subprocess.CompletedProcess:
    full = {**os.environ, **env}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], check=False,
                          capture_output=True,
                          text=True, env=full, timeout=300)


FALLBACK_CHECK = """
    import warnings
    import torch
    import rnnkit
    from rnnkit.backends import native, select_backend
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.manual_seed(0)
        layer = rnnkit.nn.LSTM(3, 5, num_layers=2)
        ref = torch.nn.LSTM(3, 5, num_layers=2)
        ref.load_state_dict(layer.state_dict())
        x = torch.randn(4, 2, 3)
        for _ in range(3):
            y, _ = layer(x)
        with torch.no_grad():
            out, _ = layer.step(x[0])
    torch.testing.assert_close(y, ref(x)[0])
    torch.testing.assert_close(out, ref(x[:1])[0][0])
    messages = [str(w.message) for w in caught if "native" in str(w.message)]
    print("AVAILABLE", native.available())
    print("CHOSEN", select_backend(None, "lstm", torch.device("cpu"), torch.float32).name)
    print("WARNINGS", len(messages))
    for m in messages:
        print(m)
"""


def test_falls_back_with_one_warning_when_it_cannot_build(tmp_path):
    # A fresh cache (nothing built) and a compiler that does not exist.
    result = _python(FALLBACK_CHECK, RNNKIT_CACHE=str(tmp_path), CXX="/nonexistent/c++")
    assert result.returncode == 0, result.stderr
    assert "AVAILABLE False" in result.stdout
    assert "CHOSEN fused" in result.stdout
    assert "WARNINGS 1" in result.stdout
    assert "the native CPU engine is unavailable" in result.stdout
    assert "'fused' engine" in result.stdout


def test_switched_off_without_a_warning(tmp_path):
    result = _python(FALLBACK_CHECK, RNNKIT_CACHE=str(tmp_path), RNNKIT_NATIVE="0")
    assert result.returncode == 0, result.stderr
    assert "AVAILABLE False" in result.stdout
    assert "CHOSEN fused" in result.stdout
    assert "WARNINGS 0" in result.stdout
