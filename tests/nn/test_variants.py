"""The variant layers and the regularisers, against references written here from their
definitions (torch.nn cells, torch.nn.functional.layer_norm), not from rnnkit's code."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import rnnkit
from rnnkit.backends import run_direction
from rnnkit.functional import Masks
from tests.helpers import CELLS, NUM_STATES, make_extra, make_weights

D = torch.float64
TOL = {"rtol": 1e-10, "atol": 1e-10}
VARIANTS = {"ln-lstm": rnnkit.nn.LayerNormLSTM, "ln-gru": rnnkit.nn.LayerNormGRU,
            "carry-lstm": rnnkit.nn.CarryLSTM}


def _perturb(layer: torch.nn.Module) -> None:
    """Move every parameter off its initial value (gains of exactly 1 hide mistakes)."""
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(0.3 * torch.randn_like(p))


def test_layer_norm_lstm_follows_its_equations():
    T, B, I, H = 6, 3, 4, 5
    layer = rnnkit.nn.LayerNormLSTM(I, H, dtype=D)
    _perturb(layer)
    x = torch.randn(T, B, I, dtype=D)
    p = dict(layer.named_parameters())
    h = torch.zeros(B, H, dtype=D)
    c = torch.zeros(B, H, dtype=D)
    outs = []
    for t in range(T):
        a = (F.layer_norm(x[t] @ p["weight_ih_l0"].T, (4 * H,), p["ln_ih_weight_l0"])
             + p["bias_ih_l0"]
             + F.layer_norm(h @ p["weight_hh_l0"].T, (4 * H,), p["ln_hh_weight_l0"])
             + p["bias_hh_l0"])
        i, f, g, o = a.chunk(4, 1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(F.layer_norm(c, (H,), p["ln_cell_weight_l0"],
                                                       p["ln_cell_bias_l0"]))
        outs.append(h)
    y, (h_n, c_n) = layer(x)
    torch.testing.assert_close(y, torch.stack(outs), **TOL)
    torch.testing.assert_close(h_n[0], h, **TOL)
    torch.testing.assert_close(c_n[0], c, **TOL)


def test_layer_norm_gru_follows_its_equations():
    T, B, I, H = 6, 3, 4, 5
    layer = rnnkit.nn.LayerNormGRU(I, H, dtype=D)
    _perturb(layer)
    x = torch.randn(T, B, I, dtype=D)
    p = dict(layer.named_parameters())
    h = torch.zeros(B, H, dtype=D)
    outs = []
    for t in range(T):
        gx = F.layer_norm(x[t] @ p["weight_ih_l0"].T, (3 * H,), p["ln_ih_weight_l0"]) + p["bias_ih_l0"]
        gh = F.layer_norm(h @ p["weight_hh_l0"].T, (3 * H,), p["ln_hh_weight_l0"]) + p["bias_hh_l0"]
        r = torch.sigmoid(gx[:, :H] + gh[:, :H])
        z = torch.sigmoid(gx[:, H:2 * H] + gh[:, H:2 * H])
        n = torch.tanh(gx[:, 2 * H:] + r * gh[:, 2 * H:])
        h = (1 - z) * n + z * h
        outs.append(h)
    y, h_n = layer(x)
    torch.testing.assert_close(y, torch.stack(outs), **TOL)
    torch.testing.assert_close(h_n[0], h, **TOL)


def test_carry_lstm_is_an_lstm_cell_plus_the_carried_state():
    T, B, I, H = 6, 3, 4, 5
    layer = rnnkit.nn.CarryLSTM(I, H, dtype=D)
    cell = torch.nn.LSTMCell(I, H, dtype=D)
    with torch.no_grad():  # the first four blocks are torch's LSTM; the fifth is beta
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(cell, name).copy_(getattr(layer, name + "_l0")[: 4 * H])
    x = torch.randn(T, B, I, dtype=D)
    p = dict(layer.named_parameters())
    h = torch.zeros(B, H, dtype=D)
    c = torch.zeros(B, H, dtype=D)
    outs = []
    for t in range(T):
        beta = torch.sigmoid(x[t] @ p["weight_ih_l0"][4 * H:].T + p["bias_ih_l0"][4 * H:]
                             + h @ p["weight_hh_l0"][4 * H:].T + p["bias_hh_l0"][4 * H:])
        h_lstm, c = cell(x[t], (h, c))
        h = h_lstm + beta * h
        outs.append(h)
    y, (_h_n, c_n) = layer(x)
    torch.testing.assert_close(y, torch.stack(outs), **TOL)
    torch.testing.assert_close(c_n[0], c, **TOL)


def test_carry_lstm_with_a_closed_carry_gate_is_torch_lstm():
    ref = torch.nn.LSTM(4, 5, num_layers=2, dtype=D)
    layer = rnnkit.nn.CarryLSTM(4, 5, num_layers=2, dtype=D)
    with torch.no_grad():
        for name, p in layer.named_parameters():
            p.zero_()
            p[: 20].copy_(ref.state_dict()[name])
            if name.startswith("bias_ih"):
                p[20:] = -1e4  # beta = sigmoid(-1e4) = 0 exactly in float64
    x = torch.randn(7, 3, 4, dtype=D)
    y_ref, (_h_ref, c_ref) = ref(x)
    y, (_h, c) = layer(x)
    torch.testing.assert_close(y, y_ref, **TOL)
    torch.testing.assert_close(c, c_ref, **TOL)


@pytest.mark.parametrize("cell", list(VARIANTS))
@pytest.mark.parametrize("regularised", [False, True])
def test_fused_and_reference_layers_agree(cell, regularised):
    # Stacked, bidirectional, batch-first, variable lengths; in training with the same seed
    # the layer draws the same masks for either engine.
    kwargs = {"zoneout": 0.2, "recurrent_dropout": 0.3} if regularised else {}
    layers = {b: VARIANTS[cell](3, 4, num_layers=2, bidirectional=True, batch_first=True,
                                dtype=D, backend=b, **kwargs) for b in ("reference", "fused")}
    _perturb(layers["fused"])
    layers["reference"].load_state_dict(layers["fused"].state_dict())
    x = torch.randn(5, 6, 3, dtype=D, requires_grad=True)
    lengths = torch.tensor([6, 2, 5, 1, 3])
    results = {}
    for backend, layer in layers.items():
        torch.manual_seed(1)
        y, final = layer(x, lengths=lengths)
        final = final if isinstance(final, tuple) else (final,)
        loss = (y * torch.linspace(-1, 1, y.shape[-1], dtype=D)).sum() + sum(f.sum() for f in final)
        grads = torch.autograd.grad(loss, [x, *layer.parameters()])
        results[backend] = (y, *final, *grads)
    for a, b in zip(results["fused"], results["reference"]):
        torch.testing.assert_close(a, b, **TOL)


@pytest.mark.parametrize("cell", CELLS)
def test_zero_masks_reproduce_the_plain_cell_exactly(cell):
    # Zoneout masks of zeros and a recurrent mask of ones change nothing, to the last bit.
    T, B, I, H = 6, 3, 4, 5
    x = torch.randn(T, B, I, dtype=D)
    states0 = tuple(torch.randn(B, H, dtype=D) for _ in range(NUM_STATES[cell]))
    weights = make_weights(cell, I, H, D, requires_grad=False)
    extra = make_extra(cell, H, D, requires_grad=False)
    masks = Masks(torch.ones(B, H, dtype=D), tuple(torch.zeros(T, B, H, dtype=D) for _ in states0))
    for backend in ("fused", "reference"):
        plain = run_direction(cell, x, states0, *weights, backend=backend, extra=extra)
        masked = run_direction(cell, x, states0, *weights, backend=backend, extra=extra, masks=masks)
        assert torch.equal(plain[0], masked[0])
        assert all(torch.equal(a, b) for a, b in zip(plain[1], masked[1]))


@pytest.mark.parametrize("cls", [rnnkit.nn.LSTM, rnnkit.nn.GRU, rnnkit.nn.LayerNormLSTM])
def test_zero_probabilities_are_the_plain_layer(cls):
    plain = cls(4, 5, num_layers=2, dtype=D)
    regularised = cls(4, 5, num_layers=2, dtype=D, zoneout=0.0, recurrent_dropout=0.0)
    regularised.load_state_dict(plain.state_dict())
    x = torch.randn(6, 3, 4, dtype=D)
    assert torch.equal(plain(x)[0], regularised(x)[0])  # training mode


def test_zoneout_in_evaluation_is_the_expectation():
    # Built from torch.nn.LSTMCell: s_t = p s_{t-1} + (1 - p) s~_t, hidden and cell rates apart.
    T, B, I, H, p_h, p_c = 6, 3, 4, 5, 0.3, 0.1
    layer = rnnkit.nn.LSTM(I, H, dtype=D, zoneout=(p_h, p_c)).eval()
    cell = torch.nn.LSTMCell(I, H, dtype=D)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(cell, name).copy_(getattr(layer, name + "_l0"))
    x = torch.randn(T, B, I, dtype=D)
    h = torch.zeros(B, H, dtype=D)
    c = torch.zeros(B, H, dtype=D)
    outs = []
    for t in range(T):
        h_new, c_new = cell(x[t], (h, c))
        h, c = p_h * h + (1 - p_h) * h_new, p_c * c + (1 - p_c) * c_new
        outs.append(h)
    y, (_h_n, c_n) = layer(x)
    torch.testing.assert_close(y, torch.stack(outs), **TOL)
    torch.testing.assert_close(c_n[0], c, **TOL)
    assert torch.equal(layer(x)[0], y)  # deterministic


def test_zoneout_in_training_keeps_the_previous_value_with_probability_p():
    layer = rnnkit.nn.GRU(8, 64, zoneout=0.4)
    y, _ = layer(torch.randn(50, 32, 8))
    kept = (y[1:] == y[:-1]).double().mean().item()  # a unit that was updated never repeats
    assert abs(kept - 0.4) < 0.03
    assert not torch.equal(layer(torch.ones(5, 2, 8))[0], layer(torch.ones(5, 2, 8))[0])


def test_recurrent_dropout_is_one_scaled_mask_per_sequence():
    # With W_ih = W_hh = I and no bias, h_t = tanh(x_t + m * h_{t-1} / (1 - q)): a dropped
    # unit reads only its input, at every step (the same mask for the whole sequence).
    H, q = 200, 0.25
    layer = rnnkit.nn.RNN(H, H, bias=False, dtype=D, recurrent_dropout=q)
    with torch.no_grad():
        layer.weight_ih_l0.copy_(torch.eye(H, dtype=D))
        layer.weight_hh_l0.copy_(torch.eye(H, dtype=D))
    x = torch.randn(8, 3, H, dtype=D)
    y, _ = layer(x)
    dropped = torch.isclose(y[1:], torch.tanh(x[1:]), rtol=0, atol=1e-14)  # [T-1, B, H]
    assert torch.equal(dropped, dropped[:1].expand_as(dropped))  # same units at every step
    assert abs(dropped[0].double().mean().item() - q) < 0.06
    kept = ~dropped[0]
    expected = torch.tanh(x[1:] + y[:-1] / (1 - q))
    torch.testing.assert_close(y[1:][:, kept], expected[:, kept], **TOL)
    layer.eval()  # no dropout in evaluation
    torch.testing.assert_close(layer(x)[0][1], torch.tanh(x[1] + torch.tanh(x[0])), **TOL)


@pytest.mark.parametrize("kwargs, message", [
    ({"zoneout": 1.5}, "zoneout: expected a probability in [0, 1), got 1.5"),
    ({"zoneout": (0.1,)}, "zoneout: expected a probability or a pair (hidden, cell)"),
    ({"recurrent_dropout": -0.1}, "recurrent_dropout: expected a probability in [0, 1), got -0.1"),
    ({"recurrent_dropout": "0.2"}, "recurrent_dropout: expected a probability"),
])
def test_bad_regulariser_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")
                       .replace("[", r"\[")):
        rnnkit.nn.LayerNormLSTM(3, 4, **kwargs)


def test_variants_load_a_torch_state_dict_but_keep_their_gains():
    ref = torch.nn.LSTM(3, 4, num_layers=2)
    layer = rnnkit.nn.LayerNormLSTM(3, 4, num_layers=2)
    result = layer.load_state_dict(ref.state_dict(), strict=False)
    assert sorted(result.missing_keys) == sorted(
        f"{n}_l{k}" for k in range(2)
        for n in ("ln_ih_weight", "ln_hh_weight", "ln_cell_weight", "ln_cell_bias"))
    assert torch.equal(layer.weight_hh_l1, ref.weight_hh_l1)
    assert torch.equal(layer.ln_cell_weight_l0, torch.ones(4))
