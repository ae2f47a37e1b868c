"""ConvLSTM: the hand-derived BPTT against autograd through the step loop and gradcheck,
a 1x1 kernel on 1x1 frames against rnnkit.nn.LSTM and torch.nn.LSTM with the same weights,
padded sequences against the same sequences alone, the cell against one layer step."""

from __future__ import annotations

import pytest
import torch

import rnnkit
from rnnkit.functional.convlstm import ConvLSTMFunction, convlstm_reference
from rnnkit.nn import ConvLSTM, ConvLSTMCell


def _inputs(spatial, seed=0, steps=4, batch=3, channels=2, hidden=3, kernel=3):
    g = torch.Generator().manual_seed(seed)
    k = (kernel,) * len(spatial)

    def r(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).requires_grad_()

    return [r(steps, batch, channels, *spatial), r(batch, hidden, *spatial),
            r(batch, hidden, *spatial), r(4 * hidden, channels, *k, scale=0.5),
            r(4 * hidden, hidden, *k, scale=0.3), r(4 * hidden), r(4 * hidden)]


@pytest.mark.parametrize("spatial", [(6,), (4, 5)], ids=["1d", "2d"])
@pytest.mark.parametrize("lengths", [None, [4, 1, 3]], ids=["full", "lengths"])
def test_hand_bptt_equals_autograd_through_the_loop(spatial, lengths):
    args = _inputs(spatial)
    lengths = None if lengths is None else torch.tensor(lengths)
    got = ConvLSTMFunction.apply(*args, lengths)
    want = convlstm_reference(*args, lengths)
    upstream = [torch.randn_like(t) for t in got]
    g_got = torch.autograd.grad(got, args, upstream)
    g_want = torch.autograd.grad(want, args, upstream)
    for a, b in zip([*got, *g_got], [*want, *g_want]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("spatial,kernel", [((5,), 3), ((3, 4), 3), ((2, 3), 1), ((3, 3, 2), 3)])
def test_gradcheck(spatial, kernel):
    args = _inputs(spatial, seed=1, steps=3, batch=2, hidden=2, kernel=kernel)
    lengths = torch.tensor([3, 2])
    assert torch.autograd.gradcheck(lambda *a: ConvLSTMFunction.apply(*a, lengths), args)


def test_second_derivatives_are_refused_not_wrong():
    args = _inputs((4,), steps=2)
    out, _, _ = ConvLSTMFunction.apply(*args, None)
    (gx,) = torch.autograd.grad(out.sum(), args[0], create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable|does not require grad|twice"):
        torch.autograd.grad(gx.sum(), args[3])


@pytest.mark.parametrize("backend", ["fused", "reference"])
def test_one_by_one_kernel_on_one_pixel_is_the_lstm(backend):
    torch.manual_seed(0)
    conv = ConvLSTM(3, 4, 1, num_layers=2, bidirectional=True, batch_first=True,
                    backend=backend).double()
    flat = {k: (v.flatten(1) if k.startswith("weight") else v)
            for k, v in conv.state_dict().items()}
    ours = rnnkit.nn.LSTM(3, 4, num_layers=2, bidirectional=True, batch_first=True).double()
    ours.load_state_dict(flat)
    torch_lstm = torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True, batch_first=True).double()
    torch_lstm.load_state_dict(flat)
    x = torch.randn(5, 6, 3, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([6, 3, 1, 6, 2])
    out, (h, c) = conv(x.view(5, 6, 3, 1, 1), lengths=lengths)
    ref, (rh, rc) = ours(x, lengths=lengths)
    torch.testing.assert_close(out.view(5, 6, 8), ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(h.view(4, 5, 4), rh)
    torch.testing.assert_close(c.view(4, 5, 4), rc)
    up = torch.randn_like(ref)
    g_conv = torch.autograd.grad(out.view(5, 6, 8), [x, conv.weight_hh_l1_reverse], up)
    g_ref = torch.autograd.grad(ref, [x, ours.weight_hh_l1_reverse], up)
    torch.testing.assert_close(g_conv[0], g_ref[0])
    torch.testing.assert_close(g_conv[1].flatten(1), g_ref[1])
    full, _ = conv(x.view(5, 6, 3, 1, 1))
    torch.testing.assert_close(full.view(5, 6, 8), torch_lstm(x)[0], rtol=1e-12, atol=1e-12)


def test_a_padded_sequence_equals_itself_alone():
    torch.manual_seed(1)
    layer = ConvLSTM(2, 3, (3, 1), num_layers=2, bidirectional=True).double()
    x = torch.randn(6, 3, 2, 4, 5, dtype=torch.float64)
    lengths = torch.tensor([6, 2, 4])
    out, (h, c) = layer(x, lengths=lengths)
    for b, n in enumerate(lengths.tolist()):
        alone, (ha, ca) = layer(x[:n, b: b + 1])
        torch.testing.assert_close(out[:n, b: b + 1], alone)
        assert out[n:, b].abs().max() == 0 if n < 6 else True
        torch.testing.assert_close(h[:, b: b + 1], ha)
        torch.testing.assert_close(c[:, b: b + 1], ca)


def test_the_cell_is_one_step_of_the_layer():
    torch.manual_seed(2)
    layer = ConvLSTM(2, 3, 3, spatial_dims=1).double()
    cell = ConvLSTMCell(2, 3, 3, spatial_dims=1).double()
    cell.load_state_dict({k.removesuffix("_l0"): v for k, v in layer.state_dict().items()})
    x = torch.randn(3, 4, 2, 7, dtype=torch.float64)
    out, _ = layer(x)
    h = c = torch.zeros(4, 3, 7, dtype=torch.float64)
    for t in range(3):
        h, c = cell(x[t], (h, c))
        torch.testing.assert_close(h, out[t])


@pytest.mark.parametrize("make, message", [
    (lambda: ConvLSTM(2, 3, 2), "kernel_size: expected an odd positive int"),
    (lambda: ConvLSTM(2, 3, (3, 3, 3)), "kernel_size"),
    (lambda: ConvLSTM(0, 3, 3), "in_channels: expected a positive int"),
    (lambda: ConvLSTM(2, 3, 3, backend="cuda"), "backend: expected one of fused, reference"),
    (lambda: ConvLSTM(2, 3, 3)(torch.randn(4, 2, 2, 5)), "input: expected a 5-D tensor"),
    (lambda: ConvLSTM(2, 3, 3)(torch.randn(4, 2, 3, 5, 5)), "expected 2 channels"),
    (lambda: ConvLSTM(2, 3, 3)(torch.randn(0, 2, 2, 5, 5)), "expected at least one time step"),
    (lambda: ConvLSTM(2, 3, 3)(torch.randn(4, 2, 2, 5, 5), lengths=[4, 5]),
     "lengths: expected 2 values in 1..4"),
    (lambda: ConvLSTM(2, 3, 3)(torch.randn(4, 2, 2, 5, 5), hx=(torch.zeros(1, 2, 3, 5, 4),) * 2),
     "hx: expected (h_0, c_0), each of shape (1, 2, 3, 5, 5)"),
])
def test_bad_arguments_are_named(make, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make()
