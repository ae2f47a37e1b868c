"""rnnkit.nn cells equal torch.nn cells with copied weights, batched and unbatched."""

from __future__ import annotations

import pytest
import torch

import rnnkit

CELLS = {
    "rnn": (torch.nn.RNNCell, rnnkit.nn.RNNCell, {"nonlinearity": "tanh"}),
    "rnn-relu": (torch.nn.RNNCell, rnnkit.nn.RNNCell, {"nonlinearity": "relu"}),
    "lstm": (torch.nn.LSTMCell, rnnkit.nn.LSTMCell, {}),
    "gru": (torch.nn.GRUCell, rnnkit.nn.GRUCell, {}),
}
TOL = {"rtol": 1e-10, "atol": 1e-12}


def _flat(out):
    return list(out) if isinstance(out, tuple) else [out]


@pytest.mark.parametrize("kind", CELLS)
@pytest.mark.parametrize("batched", [True, False])
@pytest.mark.parametrize("given_state", [True, False])
@pytest.mark.parametrize("backend", ["fused", "reference"])
def test_cell_matches_torch(kind, batched, given_state, backend):
    torch_cls, ours_cls, extra = CELLS[kind]
    reference = torch_cls(3, 4, **extra).double()
    ours = ours_cls(3, 4, **extra, backend=backend).double()
    ours.load_state_dict(reference.state_dict())
    shape = (5, 3) if batched else (3,)
    state_shape = (5, 4) if batched else (4,)
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    hx = None
    if given_state:
        make = lambda: torch.randn(state_shape, dtype=torch.float64, requires_grad=True)
        hx = (make(), make()) if kind == "lstm" else make()
    # Three steps, feeding the state back, as a user drives a cell.
    outs = []
    for layer in (reference, ours):
        state = hx
        for _ in range(3):
            state = layer(x, state)
        outs.append(_flat(state))
    for a, b in zip(outs[1], outs[0]):
        torch.testing.assert_close(a, b, **TOL)
    upstream = [torch.randn_like(o) for o in outs[0]]
    leaves = [x] + (_flat(hx) if hx is not None else [])
    grads = [torch.autograd.grad(o, leaves + list(layer.parameters()), upstream)
             for o, layer in zip(outs, (reference, ours))]
    for a, b in zip(grads[1], grads[0]):
        torch.testing.assert_close(a, b, **TOL)


def test_cell_rejects_wrong_state_shape():
    cell = rnnkit.nn.GRUCell(3, 4)
    with pytest.raises(ValueError, match=r"hx: expected shape \(2, 4\), got \(2, 5\)"):
        cell(torch.randn(2, 3), torch.randn(2, 5))
    with pytest.raises(TypeError, match="hx: expected a tuple"):
        rnnkit.nn.LSTMCell(3, 4)(torch.randn(2, 3), torch.randn(2, 4))
