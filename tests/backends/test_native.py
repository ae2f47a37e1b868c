"""The native engine (C++ loops) equals autograd through the reference engine, and falls
back cleanly where it cannot be built.

Sizes are chosen to reach every path of the C++ products: hidden sizes whose gate blocks
are and are not multiples of the 32-column panels, batches that leave 0, 1 and 2 rows
after the 3-row micro kernel, products large enough to be split over threads, and steps
of more rows than the packed kernel takes (30: the BLAS's product, in float32 too).
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
from rnnkit.functional import Masks
from tests.backends.test_fused_vs_reference import random_masks
from tests.helpers import NUM_STATES, make_extra, make_weights, random_lengths

pytestmark = pytest.mark.skipif(not native.available(), reason="native engine not built here")

TOL = {torch.float64: {"rtol": 1e-10, "atol": 1e-10}, torch.float32: {"rtol": 2e-5, "atol": 2e-5}}
CELLS = list(native.CELLS)  # every built-in cell
EXTRA: dict = {}  # the extra parameters of the last _case, by cell


def _grads(cell, backend, x, states0, weights, lengths=None, reverse=False, masks=None):
    extra = EXTRA.get(cell, [])
    leaves = [x, *states0] + [w for w in weights if w is not None] + extra
    y, final = run_direction(cell, x, states0, *weights, lengths=lengths, reverse=reverse,
                             backend=backend, masks=masks, extra=extra)
    g = torch.Generator().manual_seed(7)
    dy = torch.randn(y.shape, dtype=y.dtype, generator=g)
    dfinal = [torch.randn(f.shape, dtype=f.dtype, generator=g) for f in final]
    return (y, *final, *torch.autograd.grad([y, *final], leaves, [dy, *dfinal]))


def _case(cell, T, B, I, H, dtype, bias=True):
    torch.manual_seed(T * 1000 + B * 10 + H)
    x = torch.randn(T, B, I, dtype=dtype, requires_grad=True)
    states0 = tuple(torch.randn(B, H, dtype=dtype, requires_grad=True)
                    for _ in range(NUM_STATES[cell]))
    EXTRA[cell] = make_extra(cell, H, dtype)
    return x, states0, make_weights(cell, I, H, dtype, bias=bias)


def _assert_all_close(got, expected, dtype):
    """Within TOL; in float32, the absolute part scales with the tensor's size (a layer
    norm's gradients reach tens, where float32 rounding alone is 1e-5 of that)."""
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        tol = dict(TOL[dtype])
        if dtype == torch.float32 and b.numel():
            tol["atol"] *= max(1.0, float(b.detach().abs().max()))
        torch.testing.assert_close(a, b, **tol)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("B,H", [(1, 8), (2, 37), (3, 40), (4, 16), (7, 33), (30, 12)])
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


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("cell", CELLS)
def test_gradcheck(cell, masked):
    x, states0, weights = _case(cell, 4, 3, 3, 5, torch.float64)
    extra = EXTRA[cell]
    leaves = (x, *states0, *weights, *extra)
    n, n_w = NUM_STATES[cell], len(weights)
    masks = random_masks(cell, 4, 3, 5, torch.float64) if masked else None

    def fn(x, *rest):
        y, final = run_direction(cell, x, tuple(rest[:n]), *rest[n: n + n_w], backend="native",
                                 lengths=torch.tensor([4, 2, 3]), extra=rest[n + n_w:],
                                 masks=masks)
        return (y, *final)

    assert torch.autograd.gradcheck(fn, leaves)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("lengths,reverse", [(False, False), (True, True)])
def test_masks_match_reference(cell, dtype, lengths, reverse):
    """Recurrent dropout and zoneout run in the native loops (no hand-over), with the
    gradients of the masks that were drawn."""
    x, states0, weights = _case(cell, 7, 5, 4, 6, dtype)
    masks = random_masks(cell, 7, 5, 6, dtype)
    lens = random_lengths(5, 7) if lengths else None
    assert rnnkit.backends.select_backend(None, cell, x.device, dtype, True).name == "native"
    _assert_all_close(_grads(cell, "native", x, states0, weights, lens, reverse, masks),
                      _grads(cell, "reference", x, states0, weights, lens, reverse, masks), dtype)


@pytest.mark.parametrize("backend", ["native", "fused"])
@pytest.mark.parametrize("cell", CELLS)
def test_evaluation_masks_give_exact_gradients(cell, backend):
    """Zoneout in evaluation keeps the probability itself, s_t = p s_{t-1} + (1 - p) s~_t, and
    gradients taken there (saliency on an evaluated model) must still be exact: the
    backward reads the cell's own output s~_t, not the state that zoneout mixed."""
    x, states0, weights = _case(cell, 6, 3, 4, 5, torch.float64)
    masks = Masks(torch.full((3, 5), 0.8, dtype=torch.float64),
                  tuple(torch.full((6, 3, 5), p, dtype=torch.float64)
                        for p in (0.3, 0.1)[: NUM_STATES[cell]]))
    _assert_all_close(_grads(cell, backend, x, states0, weights, masks=masks),
                      _grads(cell, "reference", x, states0, weights, masks=masks), torch.float64)


@pytest.mark.parametrize("cell", CELLS)
def test_records_state_gradients_as_the_fused_engine(cell):
    x, states0, weights = _case(cell, 7, 4, 3, 6, torch.float64)
    lengths = torch.tensor([7, 3, 5, 7])
    norms = {}
    for backend in ("native", "fused"):
        with record_state_gradients() as store:
            _grads(cell, backend, x, states0, weights, lengths)
        norms[backend] = store
    assert len(norms["native"]) == 1
    torch.testing.assert_close(norms["native"][0], norms["fused"][0])


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
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


LAYERS = ["LSTM", "GRU", "RNN", "LayerNormLSTM", "LayerNormGRU", "CarryLSTM"]


@pytest.mark.parametrize("kind", LAYERS)
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


def _perturbed(kind, dtype=torch.float32, **kwargs):
    """A stacked layer whose layer-norm gains and biases are away from 1 and 0."""
    torch.manual_seed(1)
    layer = getattr(rnnkit.nn, kind)(6, 9, num_layers=2, dtype=dtype, **kwargs).eval()
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return layer


@pytest.mark.parametrize("kind", LAYERS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_stream_equals_forward(kind, dtype):
    """A stream of every cell gives forward's outputs and final state, one native call per
    step (checked: it chose the native engine), batched and unbatched."""
    layer = _perturbed(kind, dtype)
    x = torch.randn(7, 3, 6, dtype=dtype)
    with torch.no_grad():
        y, final = layer(x)
        y1, _ = layer(x[:, 1])
    stream = layer.stream(batch_size=3)
    assert stream._use_native
    ys = torch.stack([stream(x[t]) for t in range(7)])
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {}
    torch.testing.assert_close(ys, y, **tol)
    finals = final if isinstance(final, tuple) else (final,)
    states = stream.state if isinstance(stream.state, tuple) else (stream.state,)
    for a, b in zip(states, finals):
        torch.testing.assert_close(a, b, **tol)
    single = layer.stream(batch_size=None)
    torch.testing.assert_close(torch.stack([single(x[t, 1]) for t in range(7)]), y1, **tol)
    assert not ys.requires_grad


def test_stream_state_reset_and_parameter_updates():
    layer = _perturbed("LSTM")
    x = torch.randn(4, 2, 6)
    stream = layer.stream(batch_size=2)
    for t in range(2):
        stream(x[t])
    state = stream.state
    with torch.no_grad():
        _, expected_state = layer(x[:2])
        y, _ = layer(x[2:], expected_state)
    restarted = layer.stream(batch_size=2, state=state)  # a state handed over
    torch.testing.assert_close(torch.stack([restarted(x[2]), restarted(x[3])]), y)
    stream.reset()
    torch.testing.assert_close(stream(x[0]), layer(x[:1])[0][0].detach())
    with torch.no_grad():  # training between calls is seen at the next step
        layer.weight_hh_l1.mul_(0.5)
    stream.reset()
    torch.testing.assert_close(stream(x[0]), layer(x[:1])[0][0].detach())
    # and so is a parameter replaced by a new one
    layer.weight_ih_l0 = torch.nn.Parameter(torch.randn_like(layer.weight_ih_l0))
    stream.reset()
    torch.testing.assert_close(stream(x[0]), layer(x[:1])[0][0].detach())


def test_stream_refuses_what_it_cannot_do():
    layer = rnnkit.nn.GRU(3, 4, num_layers=2, zoneout=0.1)
    stream = layer.stream(batch_size=2)
    with pytest.raises(ValueError, match=r"stream: input: expected shape \(2, 3\), torch.float32"):
        stream(torch.randn(3, 3))
    with pytest.raises(ValueError, match="stream: input: expected"):
        stream(torch.randn(2, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="training mode with dropout or zoneout"):
        stream(torch.randn(2, 3))
    layer.eval()  # zoneout in evaluation: the expectation, as forward
    x = torch.randn(5, 2, 3)
    with torch.no_grad():
        y, _ = layer(x)
    torch.testing.assert_close(torch.stack([stream(x[t]) for t in range(5)]), y)
    with pytest.raises(ValueError, match="bidirectional"):
        rnnkit.nn.LSTM(3, 4, bidirectional=True).stream()
    with pytest.raises(ValueError, match="batch_size: expected a positive int or None, got 0"):
        layer.stream(batch_size=0)


@pytest.mark.parametrize("kind,zoneout", [("LSTM", (0.2, 0.4)), ("GRU", 0.3),
                                          ("LayerNormLSTM", (0.7, 0.1))])
def test_step_with_zoneout_in_evaluation_uses_the_expectation(kind, zoneout):
    """Layer by layer: the next layer reads the mixed state, as in forward (two layers)."""
    layer = _perturbed(kind, zoneout=zoneout)
    x = torch.randn(6, 2, 6)
    with torch.no_grad():
        y, _ = layer(x)
        state, steps = None, []
        for t in range(6):
            out, state = layer.step(x[t], state)
            steps.append(out)
    torch.testing.assert_close(torch.stack(steps), y)
    stream = layer.stream(batch_size=2)
    assert stream._use_native
    torch.testing.assert_close(torch.stack([stream(x[t]) for t in range(6)]), y)


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
