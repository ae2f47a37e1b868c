"""rnnkit.nn.MinGRU and MinLSTM: every engine equal, each sequence of a padded or packed
batch equal to that sequence run alone through the step loop, both directions, stacked
layers, an initial state, continuation across calls, step() and streams, the cells,
torch.compile, and the errors a user meets."""

from __future__ import annotations

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import rnnkit.nn as rnn
from rnnkit.backends.minimal import MIN_ENGINES, native_available
from rnnkit.functional.minimal import sequential_forward
from rnnkit.models.recurrent import EncoderConfig, build_recurrent, initialise_recurrent
from rnnkit.nn.errors import RNNShapeError, RNNTypeError
from tests.helpers import random_lengths

LAYERS = [rnn.MinGRU, rnn.MinLSTM]
# (triton: tests/backends/test_triton.py, in Triton's interpreter or on a GPU)
ENGINES = [e for e in MIN_ENGINES if e != "triton" and (e != "native" or native_available())]


def _alone(layer, x, h0=None):
    """One sequence [T, I] through the layer's equations, written out here: per layer and
    direction the projection and the step loop, no padding anywhere."""
    directions = 2 if layer.bidirectional else 1
    H = layer.hidden_size
    inp, finals = x, []
    for k in range(layer.num_layers):
        inner = inp
        if layer.residual:
            inner = torch.nn.functional.layer_norm(inp, inp.shape[-1:],
                                                   getattr(layer, f"norm_weight_l{k}"),
                                                   getattr(layer, f"norm_bias_l{k}"))
        outs = []
        for d in range(directions):
            sfx = f"_l{k}" + ("_reverse" if d else "")
            w, b = getattr(layer, "weight_ih" + sfx), getattr(layer, "bias_ih" + sfx)
            seq = inner.flip(0) if d else inner
            start = (h0[k * directions + d] if h0 is not None else x.new_zeros(H)).unsqueeze(0)
            h = sequential_forward(layer.mode, (seq @ w.t() + b).unsqueeze(1), start,
                                   layer.activation)[:, 0]
            finals.append(h[-1])
            outs.append(h.flip(0) if d else h)
        y = torch.cat(outs, -1)
        if layer.residual:
            y = inp + y @ getattr(layer, f"weight_out_l{k}").t() + getattr(layer, f"bias_out_l{k}")
        inp = y
    return inp, torch.stack(finals)


@pytest.mark.parametrize("cls", LAYERS)
@pytest.mark.parametrize("bidirectional,residual", [(False, False), (True, False), (True, True)])
def test_each_padded_sequence_equals_running_it_alone(cls, bidirectional, residual):
    torch.manual_seed(0)
    layer = cls(4, 5, num_layers=2, bidirectional=bidirectional, residual=residual,
                batch_first=True, dtype=torch.float64)
    B, T = 5, 11
    x = torch.randn(B, T, 4, dtype=torch.float64)
    lengths = random_lengths(B, T)
    h0 = torch.randn(layer.num_layers * (2 if bidirectional else 1), B, 5, dtype=torch.float64)
    results = {}
    for engine in ENGINES:
        layer.backend = engine
        results[engine] = layer(x, h0, lengths=lengths)
    y, h = results["reference"]
    for b, n in enumerate(lengths.tolist()):
        want_y, want_h = _alone(layer, x[b, :n], h0[:, b])
        torch.testing.assert_close(y[b, :n], want_y, rtol=0, atol=1e-12)
        assert not y[b, n:].any()  # zero past the end, as torch.nn
        torch.testing.assert_close(h[:, b], want_h, rtol=0, atol=1e-12)
    params = list(layer.parameters()) + [h0.requires_grad_()]
    dy = torch.randn_like(y)
    dh = torch.randn_like(h)
    ref_grads = None
    for engine in ENGINES:
        layer.backend = engine
        out, fin = layer(x, h0, lengths=lengths)
        torch.testing.assert_close(out, y, rtol=0, atol=1e-12)
        grads = torch.autograd.grad((out * dy).sum() + (fin * dh).sum(), params)
        if ref_grads is None:
            ref_grads = grads
        for g, r in zip(grads, ref_grads):
            torch.testing.assert_close(g, r, rtol=0, atol=1e-10)


@pytest.mark.parametrize("cls", LAYERS)
def test_packed_equals_padded_with_lengths(cls):
    torch.manual_seed(1)
    layer = cls(3, 4, num_layers=2, bidirectional=True)
    x = torch.randn(7, 4, 3)
    lengths = torch.tensor([7, 2, 5, 1])
    y, h = layer(x, lengths=lengths)
    packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
    yp, hp = layer(packed)
    yp, _ = pad_packed_sequence(yp, total_length=7)
    torch.testing.assert_close(yp, y)
    torch.testing.assert_close(hp, h)


@pytest.mark.parametrize("cls", LAYERS)
def test_an_initial_state_continues_a_sequence_exactly(cls):
    """The parallel forward with h_0 equals running step by step from h_0, and a sequence
    cut in two (the final state passed on) equals it whole: the public implementations'
    parallel and sequential outputs disagree here."""
    torch.manual_seed(2)
    for activation in ("g", "identity"):
        layer = cls(3, 6, num_layers=3, activation=activation, dtype=torch.float64)
        x = torch.randn(20, 2, 3, dtype=torch.float64)
        h0 = torch.rand(3, 2, 6, dtype=torch.float64)
        y, h = layer(x, h0)
        y1, h1 = layer(x[:8], h0)
        y2, h2 = layer(x[8:], h1)
        torch.testing.assert_close(torch.cat([y1, y2]), y, rtol=0, atol=1e-12)
        torch.testing.assert_close(h2, h, rtol=0, atol=1e-12)
        state, steps = h0, []
        with torch.no_grad():
            for t in range(20):
                out, state = layer.step(x[t], state)
                steps.append(out)
        torch.testing.assert_close(torch.stack(steps), y, rtol=0, atol=1e-12)
        torch.testing.assert_close(state, h, rtol=0, atol=1e-12)
        out, state = layer.step(x[0], h0)  # with gradients: the forward's path
        torch.testing.assert_close(out, y[0], rtol=0, atol=1e-12)


@pytest.mark.parametrize("cls", LAYERS)
def test_stream_and_unbatched_input(cls):
    torch.manual_seed(3)
    layer = cls(3, 4, num_layers=2, residual=True).eval()
    x = torch.randn(9, 3)
    y, h = layer(x)  # unbatched [T, I]
    assert y.shape == (9, 3) and h.shape == (2, 4)
    stream = layer.stream(batch_size=None)
    got = torch.stack([stream(x[t]) for t in range(9)])
    torch.testing.assert_close(got, y, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(stream.state, h, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("cls", LAYERS)
def test_the_cell_is_one_step_of_the_layer(cls):
    torch.manual_seed(4)
    cell_cls = rnn.MinGRUCell if cls is rnn.MinGRU else rnn.MinLSTMCell
    layer = cls(3, 4)
    cell = cell_cls(3, 4)
    cell.load_state_dict({"weight_ih": layer.weight_ih_l0, "bias_ih": layer.bias_ih_l0})
    x = torch.randn(6, 2, 3)
    h = torch.zeros(2, 4)
    outs = []
    for t in range(6):
        h = cell(x[t], h)
        outs.append(h)
    torch.testing.assert_close(torch.stack(outs), layer(x)[0])
    assert cell(x[0, 0]).shape == (4,)  # unbatched


def test_compile_fullgraph_trains_as_eager():
    torch.manual_seed(5)
    layer = rnn.MinLSTM(3, 4, num_layers=2, bidirectional=True, batch_first=True)
    x = torch.randn(2, 7, 3)
    lengths = torch.tensor([7, 3])
    y, h = layer(x, lengths=lengths)
    grads = torch.autograd.grad(y.square().sum() + h.sum(), list(layer.parameters()))
    compiled = torch.compile(layer, fullgraph=True)
    yc, hc = compiled(x, lengths=lengths)
    torch.testing.assert_close(yc, y, rtol=1e-5, atol=1e-6)
    gc = torch.autograd.grad(yc.square().sum() + hc.sum(), list(layer.parameters()))
    for a, b in zip(gc, grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_arguments_and_inputs_are_checked():
    with pytest.raises(ValueError, match="activation"):
        rnn.MinGRU(3, 4, activation="tanh")
    with pytest.raises(ValueError, match="backend"):
        rnn.MinGRU(3, 4, backend="fused")
    with pytest.raises(RNNTypeError, match="bidirectional"):
        rnn.MinLSTM(3, 4, bidirectional="yes")
    with pytest.raises(ValueError, match="dropout"):
        rnn.MinLSTM(3, 4, dropout=2.0)
    layer = rnn.MinGRU(3, 4)
    with pytest.raises(RNNShapeError, match="input_size=3"):
        layer(torch.randn(5, 2, 4))
    with pytest.raises(RNNShapeError, match="hx"):
        layer(torch.randn(5, 2, 3), torch.zeros(1, 3, 4))
    with pytest.raises(RNNTypeError, match="dtype"):
        layer(torch.randn(5, 2, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="lengths"):
        layer(torch.randn(5, 2, 3), lengths=[5, 6])
    with pytest.raises(ValueError, match="bidirectional"):
        rnn.MinGRU(3, 4, bidirectional=True).step(torch.randn(2, 3))
    layer.weight_ih_l0 = torch.nn.Parameter(torch.randn(4, 3))
    with pytest.raises(RNNShapeError, match="weight_ih_l0"):
        layer(torch.randn(5, 2, 3))


def test_the_task_encoder_builds_and_refuses_what_it_cannot_honour():
    layer = build_recurrent("minlstm", 3, 8, layers=2, dropout=0.2)
    assert isinstance(layer, rnn.MinLSTM) and layer.batch_first and layer.dropout == 0.2
    initialise_recurrent(layer, "orthogonal", forget_bias=1.5)
    assert torch.all(layer.bias_ih_l1[:8] == 1.5) and torch.all(layer.bias_ih_l1[8:] == 0)
    assert EncoderConfig(cell="mingru").cell == "mingru"
    with pytest.raises(ValueError, match="forget-bias"):
        EncoderConfig(cell="mingru", forget_bias=2.0)
    for option in ("zoneout", "recurrent_dropout"):
        with pytest.raises(ValueError, match=option.replace("_", "-")):
            build_recurrent("mingru", 3, 4, **{option: 0.1})
    with pytest.warns(UserWarning, match="automatic"):
        assert build_recurrent("mingru", 3, 4, backend="fused").backend is None
    assert rnn.layer_class("mingru") is rnn.MinGRU
