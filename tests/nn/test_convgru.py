"""ConvGRU: the hand-derived BPTT against autograd through the step loop and gradcheck,
a 1x1 kernel on 1x1 frames against rnnkit.nn.GRU and torch.nn.GRU with the same weights,
padded sequences against the same sequences alone, the cell against one layer step."""

from __future__ import annotations

import pytest
import torch

import rnnkit
from rnnkit.functional.convgru import ConvGRUFunction, convgru_reference
from rnnkit.nn import ConvGRU, ConvGRUCell


def _inputs(spatial, seed=0, steps=4, batch=3, channels=2, hidden=3, kernel=3):
    g = torch.Generator().manual_seed(seed)
    k = (kernel,) * len(spatial)

    def r(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).requires_grad_()

    return [r(steps, batch, channels, *spatial), r(batch, hidden, *spatial),
            r(3 * hidden, channels, *k, scale=0.5), r(3 * hidden, hidden, *k, scale=0.3),
            r(3 * hidden), r(3 * hidden)]


@pytest.mark.parametrize("spatial", [(6,), (4, 5)], ids=["1d", "2d"])
@pytest.mark.parametrize("lengths", [None, [4, 1, 3]], ids=["full", "lengths"])
def test_hand_bptt_equals_autograd_through_the_loop(spatial, lengths):
    args = _inputs(spatial)
    lengths = None if lengths is None else torch.tensor(lengths)
    got = ConvGRUFunction.apply(*args, lengths)
    want = convgru_reference(*args, lengths)
    upstream = [torch.randn_like(t) for t in got]
    g_got = torch.autograd.grad(got, args, upstream)
    g_want = torch.autograd.grad(want, args, upstream)
    for a, b in zip([*got, *g_got], [*want, *g_want]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("spatial,kernel", [((5,), 3), ((3, 4), 3), ((3, 3, 2), 1)])
def test_gradcheck(spatial, kernel):
    args = _inputs(spatial, seed=1, steps=3, batch=2, hidden=2, kernel=kernel)
    lengths = torch.tensor([3, 2])
    assert torch.autograd.gradcheck(lambda *a: ConvGRUFunction.apply(*a, lengths), args)


def test_gradcheck_without_biases():
    args = _inputs((4,), seed=2, steps=3, batch=2, hidden=2)
    assert torch.autograd.gradcheck(
        lambda x, h, w1, w2: ConvGRUFunction.apply(x, h, w1, w2, None, None, None), args[:4])


@pytest.mark.parametrize("backend", ["fused", "reference"])
def test_one_by_one_kernel_on_one_pixel_is_the_gru(backend):
    torch.manual_seed(0)
    conv = ConvGRU(3, 4, 1, num_layers=2, bidirectional=True, batch_first=True,
                   backend=backend).double()
    flat = {k: (v.flatten(1) if k.startswith("weight") else v)
            for k, v in conv.state_dict().items()}
    ours = rnnkit.nn.GRU(3, 4, num_layers=2, bidirectional=True, batch_first=True).double()
    ours.load_state_dict(flat)
    torch_gru = torch.nn.GRU(3, 4, num_layers=2, bidirectional=True, batch_first=True).double()
    torch_gru.load_state_dict(flat)
    x = torch.randn(5, 6, 3, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([6, 3, 1, 6, 2])
    out, h = conv(x.view(5, 6, 3, 1, 1), lengths=lengths)
    ref, rh = ours(x, lengths=lengths)
    torch.testing.assert_close(out.view(5, 6, 8), ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(h.view(4, 5, 4), rh)
    up = torch.randn_like(ref)
    g_conv = torch.autograd.grad(out.view(5, 6, 8), [x, conv.weight_hh_l1_reverse,
                                                     conv.bias_hh_l0], up)
    g_ref = torch.autograd.grad(ref, [x, ours.weight_hh_l1_reverse, ours.bias_hh_l0], up)
    torch.testing.assert_close(g_conv[0], g_ref[0])
    torch.testing.assert_close(g_conv[1].flatten(1), g_ref[1])
    torch.testing.assert_close(g_conv[2], g_ref[2])
    h0 = torch.randn(4, 5, 4, dtype=torch.float64)
    full, hn = conv(x.view(5, 6, 3, 1, 1), h0.view(4, 5, 4, 1, 1))
    want, want_h = torch_gru(x, h0)
    torch.testing.assert_close(full.view(5, 6, 8), want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(hn.view(4, 5, 4), want_h, rtol=1e-12, atol=1e-12)


def test_a_padded_sequence_equals_itself_alone():
    torch.manual_seed(1)
    layer = ConvGRU(2, 3, (3, 1), num_layers=2, bidirectional=True).double()
    x = torch.randn(6, 3, 2, 4, 5, dtype=torch.float64)
    lengths = torch.tensor([6, 2, 4])
    out, h = layer(x, lengths=lengths)
    for b, n in enumerate(lengths.tolist()):
        alone, ha = layer(x[:n, b: b + 1])
        torch.testing.assert_close(out[:n, b: b + 1], alone)
        assert n == 6 or out[n:, b].abs().max() == 0
        torch.testing.assert_close(h[:, b: b + 1], ha)


def test_the_cell_is_one_step_of_the_layer():
    torch.manual_seed(2)
    layer = ConvGRU(2, 3, 3, spatial_dims=1).double()
    cell = ConvGRUCell(2, 3, 3, spatial_dims=1).double()
    cell.load_state_dict({k.removesuffix("_l0"): v for k, v in layer.state_dict().items()})
    x = torch.randn(3, 4, 2, 7, dtype=torch.float64)
    out, _ = layer(x)
    h = None
    for t in range(3):
        h = cell(x[t], h)
        torch.testing.assert_close(h, out[t])


@pytest.mark.parametrize("make, message", [
    (lambda: ConvGRU(2, 3, 4), "kernel_size: expected an odd positive int"),
    (lambda: ConvGRUCell(2, True, 3), "hidden_channels: expected a positive int"),
    (lambda: ConvGRU(2, 3, 3)(torch.randn(4, 2, 3, 5, 5)), "expected 2 channels"),
    (lambda: ConvGRU(2, 3, 3)(torch.randn(4, 2, 2, 5, 5), hx=(torch.zeros(1, 2, 3, 5, 5),) * 2),
     "hx: expected h_0 of shape (1, 2, 3, 5, 5)"),
    (lambda: ConvGRU(2, 3, 3)(torch.randn(4, 2, 2, 5, 5), hx=torch.zeros(2, 2, 3, 5, 5)),
     "hx: expected h_0 of shape (1, 2, 3, 5, 5), got [(2, 2, 3, 5, 5)]"),
])
def test_bad_arguments_are_named(make, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")
                       .replace("[", r"\[").replace("]", r"\]")):
        make()
