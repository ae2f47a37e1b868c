"""rnnkit.nn layers equal torch.nn layers with copied weights.

Outputs, final states and the gradients of the input, the initial states and every
parameter, with random upstream gradients, across layers, directions, batch_first,
packed input with unsorted lengths, unbatched input and given/default initial states.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import rnnkit
from tests.helpers import random_lengths

KINDS = {
    "rnn": (torch.nn.RNN, rnnkit.nn.RNN, {"nonlinearity": "tanh"}),
    "rnn-relu": (torch.nn.RNN, rnnkit.nn.RNN, {"nonlinearity": "relu"}),
    "lstm": (torch.nn.LSTM, rnnkit.nn.LSTM, {}),
    "gru": (torch.nn.GRU, rnnkit.nn.GRU, {}),
}
TOL = {"rtol": 1e-9, "atol": 1e-10}
I, H = 4, 5


def make_pair(kind, dtype=torch.float64, backend=None, **kwargs):
    torch_cls, ours_cls, extra = KINDS[kind]
    reference = torch_cls(I, H, **extra, **kwargs).to(dtype)
    ours = ours_cls(I, H, **extra, **kwargs, backend=backend).to(dtype)
    ours.load_state_dict(reference.state_dict())  # strict: same names, same shapes
    return reference, ours


def initial_state(kind, layers, directions, batch, unbatched=False):
    shape = (layers * directions, H) if unbatched else (layers * directions, batch, H)
    make = lambda: torch.randn(shape, dtype=torch.float64, requires_grad=True)
    return (make(), make()) if kind == "lstm" else make()


def flat_state(state):
    return list(state) if isinstance(state, tuple) else [state]


def compare(reference, ours, inputs, hx, upstream_seed_like=None):
    """Run both on the same input; compare outputs, states and all gradients."""
    results = []
    for layer in (reference, ours):
        out, state = layer(inputs, hx) if hx is not None else layer(inputs)
        results.append((out, flat_state(state)))
    (out_r, st_r), (out_o, st_o) = results
    data_r = out_r.data if hasattr(out_r, "batch_sizes") else out_r
    data_o = out_o.data if hasattr(out_o, "batch_sizes") else out_o
    torch.testing.assert_close(data_o, data_r, **TOL)
    for a, b in zip(st_o, st_r):
        torch.testing.assert_close(a, b, **TOL)
    if hasattr(out_r, "batch_sizes"):
        assert torch.equal(out_o.batch_sizes, out_r.batch_sizes)
        for a, b in ((out_o.sorted_indices, out_r.sorted_indices),
                     (out_o.unsorted_indices, out_r.unsorted_indices)):
            assert (a is None and b is None) or torch.equal(a, b)
    upstream = [torch.randn_like(data_r)] + [torch.randn_like(s) for s in st_r]
    x = inputs.data if hasattr(inputs, "batch_sizes") else inputs
    leaves_extra = [x] + (flat_state(hx) if hx is not None else [])
    grads = []
    for layer, (out, st) in zip((reference, ours), results):
        data = out.data if hasattr(out, "batch_sizes") else out
        leaves = leaves_extra + list(layer.parameters())
        grads.append(torch.autograd.grad([data, *st], leaves, upstream))
    for a, b in zip(grads[1], grads[0]):
        torch.testing.assert_close(a, b, **TOL)


GRID = list(itertools.product(KINDS, [1, 3], [False, True], [False, True]))


@pytest.mark.parametrize("kind,layers,bidirectional,batch_first", GRID)
def test_padded_input(kind, layers, bidirectional, batch_first):
    reference, ours = make_pair(kind, num_layers=layers, bidirectional=bidirectional,
                                batch_first=batch_first)
    T, B = 6, 3
    shape = (B, T, I) if batch_first else (T, B, I)
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    compare(reference, ours, x, initial_state(kind, layers, 2 if bidirectional else 1, B))


@pytest.mark.parametrize("kind,layers,bidirectional,batch_first", GRID)
def test_packed_unsorted_input(kind, layers, bidirectional, batch_first):
    reference, ours = make_pair(kind, num_layers=layers, bidirectional=bidirectional,
                                batch_first=batch_first)
    T, B = 7, 5
    shape = (B, T, I) if batch_first else (T, B, I)
    x = torch.randn(shape, dtype=torch.float64)
    packed = pack_padded_sequence(x, random_lengths(B, T), batch_first=batch_first,
                                  enforce_sorted=False)
    packed.data.requires_grad_()
    compare(reference, ours, packed, initial_state(kind, layers, 2 if bidirectional else 1, B))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_packed_sorted_input_default_state(kind, bidirectional):
    reference, ours = make_pair(kind, num_layers=2, bidirectional=bidirectional)
    x = torch.randn(6, 3, I, dtype=torch.float64)
    packed = pack_padded_sequence(x, torch.tensor([6, 4, 1]), enforce_sorted=True)
    packed.data.requires_grad_()
    compare(reference, ours, packed, None)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("given_state", [False, True])
def test_unbatched_input(kind, bidirectional, given_state):
    reference, ours = make_pair(kind, num_layers=2, bidirectional=bidirectional)
    x = torch.randn(5, I, dtype=torch.float64, requires_grad=True)
    hx = initial_state(kind, 2, 2 if bidirectional else 1, None, unbatched=True) if given_state else None
    compare(reference, ours, x, hx)


@pytest.mark.parametrize("kind", KINDS)
def test_default_state_and_no_bias(kind):
    reference, ours = make_pair(kind, num_layers=2, bias=False)
    x = torch.randn(4, 2, I, dtype=torch.float64, requires_grad=True)
    compare(reference, ours, x, None)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("backend", ["reference", "fused"])
def test_float32_both_backends(kind, backend):
    reference, ours = make_pair(kind, dtype=torch.float32, backend=backend, num_layers=2,
                                bidirectional=True)
    x = torch.randn(20, 8, I)
    out_r, _ = reference(x)
    out_o, _ = ours(x)
    torch.testing.assert_close(out_o, out_r, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_lengths_keyword_equals_packing(kind):
    # rnnkit's extra: a padded tensor plus lengths gives what packing gives in torch.nn.
    reference, ours = make_pair(kind, num_layers=2, bidirectional=True, batch_first=True)
    B, T = 4, 6
    x = torch.randn(B, T, I, dtype=torch.float64)
    lengths = random_lengths(B, T)
    out_r, st_r = reference(pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False))
    out_r, _ = pad_packed_sequence(out_r, batch_first=True, total_length=T)
    out_o, st_o = ours(x, lengths=lengths)
    torch.testing.assert_close(out_o, out_r, **TOL)
    for a, b in zip(flat_state(st_o), flat_state(st_r)):
        torch.testing.assert_close(a, b, **TOL)


@pytest.mark.parametrize("kind", KINDS)
def test_dropout_between_layers(kind):
    # Train mode: the same random masks as torch.nn draws from the same seed, so the
    # outputs agree exactly, and they differ from the dropout-free eval outputs.
    reference, ours = make_pair(kind, num_layers=3, dropout=0.5)
    x = torch.randn(6, 4, I, dtype=torch.float64)
    torch.manual_seed(123)
    out_r, _ = reference(x)
    torch.manual_seed(123)
    out_o, _ = ours(x)
    torch.testing.assert_close(out_o, out_r, **TOL)
    reference.eval()
    ours.eval()
    eval_r, _ = reference(x)
    eval_o, _ = ours(x)
    eval_o2, _ = ours(x)
    torch.testing.assert_close(eval_o, eval_r, **TOL)
    assert torch.equal(eval_o, eval_o2)  # deterministic in eval mode
    assert not torch.allclose(out_o, eval_o)  # dropout was applied in train mode


def test_state_dict_round_trip_and_parameter_order():
    reference, ours = make_pair("lstm", num_layers=2, bidirectional=True)
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in reference.named_parameters()]
    reference.load_state_dict(ours.state_dict())
    assert len(ours.all_weights) == len(reference.all_weights) == 4


@pytest.mark.parametrize("kind", ["gru", "rnn"])
def test_outputs_can_be_modified_in_place(kind):
    # torch.nn.GRU/RNN allow an in-place op on their output before backward; so must we,
    # without the change reaching the cache the backward reads.
    reference, ours = make_pair(kind)
    x = torch.randn(5, 2, I, dtype=torch.float64, requires_grad=True)
    grads = []
    for layer in (reference, ours):
        out, _ = layer(x)
        torch.relu_(out)
        grads.append(torch.autograd.grad(out.sum(), [x, *layer.parameters()]))
    for a, b in zip(grads[1], grads[0]):
        torch.testing.assert_close(a, b, **TOL)
