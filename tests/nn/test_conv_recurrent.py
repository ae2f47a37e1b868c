"""ConvLSTM and ConvGRU: the hand-derived BPTT against autograd through the step loop and
gradcheck, a 1x1 kernel on 1x1 frames against rnnkit.nn.LSTM/GRU and torch.nn.LSTM/GRU
with the same weights, padded sequences against the same sequences alone, the cell
against one layer step, bad arguments named."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

import rnnkit
from rnnkit.functional.convgru import ConvGRUFunction, convgru_reference
from rnnkit.functional.convlstm import ConvLSTMFunction, convlstm_reference
from rnnkit.nn import ConvGRU, ConvGRUCell, ConvLSTM, ConvLSTMCell


@dataclass(frozen=True)
class Kind:
    function: type
    reference: object
    layer: type
    cell: type
    flat: type  # rnnkit's matrix layer: the same at 1x1
    torch_layer: type
    gates: int
    states: int  # (h, c) or h alone

    def run(self, args, lengths):
        return self.function.apply(*args, lengths)


KINDS = {
    "lstm": Kind(ConvLSTMFunction, convlstm_reference, ConvLSTM, ConvLSTMCell, rnnkit.nn.LSTM,
                 torch.nn.LSTM, 4, 2),
    "gru": Kind(ConvGRUFunction, convgru_reference, ConvGRU, ConvGRUCell, rnnkit.nn.GRU,
                torch.nn.GRU, 3, 1),
}
kinds = pytest.mark.parametrize("kind", list(KINDS.values()), ids=list(KINDS))


def _inputs(kind: Kind, spatial, seed=0, steps=4, batch=3, channels=2, hidden=3, kernel=3):
    """x, the initial states, w_ih, w_hh, b_ih, b_hh (float64, requiring gradients)."""
    g = torch.Generator().manual_seed(seed)
    k = (kernel,) * len(spatial)
    width = kind.gates * hidden

    def r(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).requires_grad_()

    return [r(steps, batch, channels, *spatial),
            *(r(batch, hidden, *spatial) for _ in range(kind.states)),
            r(width, channels, *k, scale=0.5), r(width, hidden, *k, scale=0.3), r(width),
            r(width)]


def _states(state) -> tuple:
    return state if isinstance(state, tuple) else (state,)


@kinds
@pytest.mark.parametrize("spatial", [(6,), (4, 5)], ids=["1d", "2d"])
@pytest.mark.parametrize("lengths", [None, [4, 1, 3]], ids=["full", "lengths"])
def test_hand_bptt_equals_autograd_through_the_loop(kind, spatial, lengths):
    args = _inputs(kind, spatial)
    lengths = None if lengths is None else torch.tensor(lengths)
    got = kind.run(args, lengths)
    want = kind.reference(*args, lengths)
    upstream = [torch.randn_like(t) for t in got]
    g_got = torch.autograd.grad(got, args, upstream)
    g_want = torch.autograd.grad(want, args, upstream)
    for a, b in zip([*got, *g_got], [*want, *g_want]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@kinds
@pytest.mark.parametrize("spatial,kernel", [((5,), 3), ((3, 4), 3), ((2, 3), 1), ((3, 3, 2), 3)])
def test_gradcheck(kind, spatial, kernel):
    args = _inputs(kind, spatial, seed=1, steps=3, batch=2, hidden=2, kernel=kernel)
    lengths = torch.tensor([3, 2])
    assert torch.autograd.gradcheck(lambda *a: kind.run(a, lengths), args)


@kinds
def test_gradcheck_without_biases(kind):
    args = _inputs(kind, (4,), seed=2, steps=3, batch=2, hidden=2)[:-2]
    assert torch.autograd.gradcheck(lambda *a: kind.run([*a, None, None], None), args)


@kinds
def test_second_derivatives_are_refused_not_wrong(kind):
    args = _inputs(kind, (4,), steps=2)
    out = kind.run(args, None)[0]
    (gx,) = torch.autograd.grad(out.sum(), args[0], create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable|does not require grad|twice"):
        torch.autograd.grad(gx.sum(), args[-3])


@kinds
@pytest.mark.parametrize("backend", ["fused", "reference"])
def test_one_by_one_kernel_on_one_pixel_is_the_matrix_layer(kind, backend):
    torch.manual_seed(0)
    conv = kind.layer(3, 4, 1, num_layers=2, bidirectional=True, batch_first=True,
                      backend=backend).double()
    flat = {k: (v.flatten(1) if k.startswith("weight") else v)
            for k, v in conv.state_dict().items()}
    ours = kind.flat(3, 4, num_layers=2, bidirectional=True, batch_first=True).double()
    ours.load_state_dict(flat)
    theirs = kind.torch_layer(3, 4, num_layers=2, bidirectional=True, batch_first=True).double()
    theirs.load_state_dict(flat)
    x = torch.randn(5, 6, 3, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([6, 3, 1, 6, 2])
    out, state = conv(x.view(5, 6, 3, 1, 1), lengths=lengths)
    ref, ref_state = ours(x, lengths=lengths)
    torch.testing.assert_close(out.view(5, 6, 8), ref, rtol=1e-12, atol=1e-12)
    for s, r in zip(_states(state), _states(ref_state)):
        torch.testing.assert_close(s.view(4, 5, 4), r)
    up = torch.randn_like(ref)
    g_conv = torch.autograd.grad(out.view(5, 6, 8), [x, conv.weight_hh_l1_reverse,
                                                     conv.bias_hh_l0], up)
    g_ref = torch.autograd.grad(ref, [x, ours.weight_hh_l1_reverse, ours.bias_hh_l0], up)
    torch.testing.assert_close(g_conv[0], g_ref[0])
    torch.testing.assert_close(g_conv[1].flatten(1), g_ref[1])
    torch.testing.assert_close(g_conv[2], g_ref[2])
    h0 = tuple(torch.randn(4, 5, 4, dtype=torch.float64) for _ in range(kind.states))
    conv_h0 = tuple(s.view(4, 5, 4, 1, 1) for s in h0)
    full, final = conv(x.view(5, 6, 3, 1, 1), conv_h0 if kind.states == 2 else conv_h0[0])
    want, want_final = theirs(x, h0 if kind.states == 2 else h0[0])
    torch.testing.assert_close(full.view(5, 6, 8), want, rtol=1e-12, atol=1e-12)
    for s, r in zip(_states(final), _states(want_final)):
        torch.testing.assert_close(s.view(4, 5, 4), r, rtol=1e-12, atol=1e-12)


@kinds
def test_a_padded_sequence_equals_itself_alone(kind):
    torch.manual_seed(1)
    layer = kind.layer(2, 3, (3, 1), num_layers=2, bidirectional=True).double()
    x = torch.randn(6, 3, 2, 4, 5, dtype=torch.float64)
    lengths = torch.tensor([6, 2, 4])
    out, state = layer(x, lengths=lengths)
    for b, n in enumerate(lengths.tolist()):
        alone, alone_state = layer(x[:n, b: b + 1])
        torch.testing.assert_close(out[:n, b: b + 1], alone)
        assert n == 6 or out[n:, b].abs().max() == 0
        for s, a in zip(_states(state), _states(alone_state)):
            torch.testing.assert_close(s[:, b: b + 1], a)


@kinds
def test_the_cell_is_one_step_of_the_layer(kind):
    torch.manual_seed(2)
    layer = kind.layer(2, 3, 3, spatial_dims=1).double()
    cell = kind.cell(2, 3, 3, spatial_dims=1).double()
    cell.load_state_dict({k.removesuffix("_l0"): v for k, v in layer.state_dict().items()})
    x = torch.randn(3, 4, 2, 7, dtype=torch.float64)
    out, _ = layer(x)
    state = None
    for t in range(3):
        state = cell(x[t], state)
        torch.testing.assert_close(_states(state)[0], out[t])


@pytest.mark.parametrize("make, message", [
    (lambda: ConvLSTM(2, 3, 2), "kernel_size: expected an odd positive int"),
    (lambda: ConvGRU(2, 3, 4), "kernel_size: expected an odd positive int"),
    (lambda: ConvLSTM(2, 3, (3, 3, 3)), "kernel_size"),
    (lambda: ConvLSTM(0, 3, 3), "in_channels: expected a positive int"),
    (lambda: ConvGRUCell(2, True, 3), "hidden_channels: expected a positive int"),
    (lambda: ConvLSTM(2, 3, 3, backend="cuda"), "backend: expected one of fused, reference"),
    (lambda: ConvLSTM(2, 3, 3)(torch.randn(4, 2, 2, 5)), "input: expected a 5-D tensor"),
    (lambda: ConvLSTM(2, 3, 3)(torch.randn(4, 2, 3, 5, 5)), "expected 2 channels"),
    (lambda: ConvGRU(2, 3, 3)(torch.randn(4, 2, 3, 5, 5)), "expected 2 channels"),
    (lambda: ConvLSTM(2, 3, 3)(torch.randn(0, 2, 2, 5, 5)), "expected at least one time step"),
    (lambda: ConvLSTM(2, 3, 3)(torch.randn(4, 2, 2, 5, 5), lengths=[4, 5]),
     "lengths: expected 2 values in 1..4"),
    (lambda: ConvLSTM(2, 3, 3)(torch.randn(4, 2, 2, 5, 5), hx=(torch.zeros(1, 2, 3, 5, 4),) * 2),
     "hx: expected (h_0, c_0), each of shape (1, 2, 3, 5, 5)"),
    (lambda: ConvGRU(2, 3, 3)(torch.randn(4, 2, 2, 5, 5), hx=(torch.zeros(1, 2, 3, 5, 5),) * 2),
     "hx: expected h_0 of shape (1, 2, 3, 5, 5)"),
    (lambda: ConvGRU(2, 3, 3)(torch.randn(4, 2, 2, 5, 5), hx=torch.zeros(2, 2, 3, 5, 5)),
     "hx: expected h_0 of shape (1, 2, 3, 5, 5), got [(2, 2, 3, 5, 5)]"),
])
def test_bad_arguments_are_named(make, message):
    escaped = message
    for char in "()[]":
        escaped = escaped.replace(char, "\\" + char)
    with pytest.raises(ValueError, match=escaped):
        make()
