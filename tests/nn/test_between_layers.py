"""``forward(..., between_layers=f)``: f runs on each layer's output before the next layer
reads it. The reference is torch.nn's one-layer modules stacked by hand, with the weights
copied and f applied between them."""

from __future__ import annotations

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import rnnkit
from rnnkit.nn.errors import RNNShapeError, RNNTypeError

D = torch.float64
TOL = {"rtol": 1e-10, "atol": 1e-10}
LAYERS = {"lstm": (rnnkit.nn.LSTM, torch.nn.LSTM), "gru": (rnnkit.nn.GRU, torch.nn.GRU),
          "rnn": (rnnkit.nn.RNN, torch.nn.RNN)}


def _squash(layer: int, y: torch.Tensor) -> torch.Tensor:
    return torch.tanh(y * (layer + 2)) + 0.5 * y  # a different map on each layer


def _stacked_by_hand(ours, torch_cls, x, lengths, between):
    """Each layer a one-layer torch.nn module holding our layer's weights; ``between`` on
    the padded output in between. Returns (padded output, [final states])."""
    params = dict(ours.named_parameters())
    finals, layer_input = [], x
    for layer in range(ours.num_layers):
        one = torch_cls(layer_input.shape[-1], ours.hidden_size, bidirectional=ours.bidirectional,
                        dtype=D)
        with torch.no_grad():
            for name, p in one.named_parameters():
                p.copy_(params[name.replace("_l0", f"_l{layer}")])
        packed = pack_padded_sequence(layer_input, lengths, enforce_sorted=False)
        out, state = one(packed)
        out, _ = pad_packed_sequence(out, total_length=x.shape[0])
        finals.append(state)
        layer_input = between(layer, out) if layer < ours.num_layers - 1 else out
    states = finals[0] if isinstance(finals[0], tuple) else None
    if states is None:
        return layer_input, [torch.cat(finals)]
    return layer_input, [torch.cat([f[i] for f in finals]) for i in range(len(states))]


@pytest.mark.parametrize("cell", sorted(LAYERS))
@pytest.mark.parametrize("bidirectional", [False, True])
def test_a_function_between_layers_matches_torch_layers_stacked_by_hand(cell, bidirectional):
    torch.manual_seed(0)
    ours_cls, torch_cls = LAYERS[cell]
    T, B, I, H = 7, 4, 3, 5
    ours = ours_cls(I, H, num_layers=3, bidirectional=bidirectional, dtype=D)
    x = torch.randn(T, B, I, dtype=D)
    lengths = torch.tensor([7, 2, 5, 1])
    calls = []

    def between(layer, y):
        calls.append((layer, tuple(y.shape)))
        return _squash(layer, y)

    out, state = ours(x, lengths=lengths, between_layers=between)
    width = H * (2 if bidirectional else 1)
    assert calls == [(0, (T, B, width)), (1, (T, B, width))]  # not after the top layer
    expected_out, expected_states = _stacked_by_hand(ours, torch_cls, x, lengths, _squash)
    torch.testing.assert_close(out, expected_out, **TOL)
    for got, want in zip(state if isinstance(state, tuple) else (state,), expected_states):
        torch.testing.assert_close(got, want, **TOL)


def test_batch_first_and_packed_input_reach_the_same_function():
    torch.manual_seed(1)
    layer = rnnkit.nn.GRU(3, 4, num_layers=2, batch_first=True, dtype=D)
    x = torch.randn(3, 6, 3, dtype=D)
    lengths = torch.tensor([6, 4, 1])
    padded, h = layer(x, lengths=lengths, between_layers=_squash)
    packed, h_packed = layer(pack_padded_sequence(x, lengths, batch_first=True,
                                                  enforce_sorted=False),
                             between_layers=_squash)
    packed, _ = pad_packed_sequence(packed, batch_first=True)
    torch.testing.assert_close(packed, padded, **TOL)
    torch.testing.assert_close(h_packed, h, **TOL)
    plain, _ = layer(x, lengths=lengths)
    assert not torch.allclose(plain, padded)  # the function did act


def test_the_identity_between_layers_changes_nothing_and_gradients_reach_the_function():
    torch.manual_seed(2)
    layer = rnnkit.nn.LSTM(3, 4, num_layers=2, bidirectional=True)
    x = torch.randn(5, 2, 3)
    plain, _ = layer(x)
    same, _ = layer(x, between_layers=lambda _, y: y)
    assert torch.equal(same, plain)
    scale = torch.nn.Parameter(torch.tensor(1.5))
    out, _ = layer(x, between_layers=lambda _, y: scale * y)
    out.sum().backward()
    assert scale.grad is not None and scale.grad != 0


def test_a_minimal_layer_takes_it_as_well():
    """MinGRU: two one-layer MinGRUs with the weights copied, the function between."""
    torch.manual_seed(3)
    two = rnnkit.nn.MinGRU(3, 4, num_layers=2, dtype=D)
    x = torch.randn(6, 2, 3, dtype=D)
    out, h = two(x, between_layers=_squash)
    params = dict(two.named_parameters())
    layer_input, finals = x, []
    for k in range(2):
        one = rnnkit.nn.MinGRU(layer_input.shape[-1], 4, dtype=D)
        with torch.no_grad():
            for name, p in one.named_parameters():
                p.copy_(params[name.replace("_l0", f"_l{k}")])
        y, h_k = one(layer_input)
        finals.append(h_k)
        layer_input = _squash(k, y) if k == 0 else y
    torch.testing.assert_close(out, layer_input, **TOL)
    torch.testing.assert_close(h, torch.cat(finals), **TOL)


def test_bad_between_layers_are_named():
    layer = rnnkit.nn.GRU(3, 4, num_layers=2)
    x = torch.randn(5, 2, 3)
    with pytest.raises(RNNTypeError, match="between_layers: expected a function"):
        layer(x, between_layers=3)
    with pytest.raises(RNNShapeError, match=r"between_layers: expected it to return the "
                                            r"layer's output shape \(5, 2, 4\), got \(5, 2, 2\)"):
        layer(x, between_layers=lambda _, y: y[..., :2])
    with pytest.raises(RNNShapeError, match="got NoneType"):
        layer(x, between_layers=lambda _, y: None)
