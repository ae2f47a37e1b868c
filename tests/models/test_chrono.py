"""Chrono initialisation (Tallec & Ollivier 2018): keep-gate biases log U(1, T_max - 1),
an LSTM's input-gate bias their negative; checked by the state a cell keeps, not by
where its blocks sit."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

from rnnkit.models.recurrent import (
    EncoderConfig,
    build_initialised_encoder,
    build_recurrent,
    initialise_recurrent,
)


def _zero_weights(layer) -> None:
    with torch.no_grad():
        for name, p in layer.named_parameters():
            if name.startswith("weight"):
                p.zero_()


def _kept_fraction(cell: str, hidden: int, t_max: int, seed: int = 0) -> torch.Tensor:
    """One step from state 1 with every weight zeroed: what each unit keeps of its state.
    With the weights gone only the biases act, so the LSTM keeps ``sigmoid(b_f)`` of its
    cell and writes ``sigmoid(b_i) * tanh(b_g)``; the GRU keeps ``z = sigmoid(b_z)`` of
    ``h`` and writes ``(1 - z) * tanh(b_n + r * b_hn)``."""
    torch.manual_seed(seed)
    layer = build_recurrent(cell, 3, hidden)
    initialise_recurrent(layer, chrono=t_max)
    with torch.no_grad():
        # zero the candidate's biases (block 2: the LSTM's g, the GRU's n) so that nothing
        # new is written: the step's state is then exactly the kept part of the old one
        for name, p in layer.named_parameters():
            if name.startswith("bias"):
                p[2 * hidden:3 * hidden] = 0.0
    _zero_weights(layer)
    x = torch.zeros(1, 1, 3)
    if "lstm" in cell:
        _, (_, c) = layer(x, (torch.zeros(1, 1, hidden), torch.ones(1, 1, hidden)))
        return c.flatten()
    out, _ = layer(x, torch.ones(1, 1, hidden))
    return out.flatten()


@pytest.mark.parametrize("cell", ["lstm", "ln-lstm", "carry-lstm", "gru", "ln-gru"])
def test_each_unit_keeps_a_fraction_spread_over_the_chrono_range(cell):
    t_max, hidden = 40, 16
    kept = _kept_fraction(cell, hidden, t_max)
    # keep gate sigmoid(log u) = u / (1 + u), u in [1, T_max - 1]: memories of u steps
    u = kept / (1 - kept)
    assert torch.all(u >= 1 - 1e-4) and torch.all(u <= t_max - 1 + 1e-3), u
    assert u.max() - u.min() > 5  # spread, not one value


def test_lstm_biases_follow_the_formula_in_every_layer_and_direction():
    torch.manual_seed(0)
    h, t_max = 8, 100
    lstm = build_recurrent("lstm", 3, h, layers=2, bidirectional=True)
    before = {n: p.detach().clone() for n, p in lstm.named_parameters()}
    initialise_recurrent(lstm, chrono=t_max)
    for suffix in ("l0", "l0_reverse", "l1", "l1_reverse"):
        total = getattr(lstm, f"bias_ih_{suffix}") + getattr(lstm, f"bias_hh_{suffix}")
        b_i, b_f, b_g, b_o = total.detach().split(h)
        assert torch.all(b_f >= 0) and torch.all(b_f <= math.log(t_max - 1) + 1e-6)
        torch.testing.assert_close(b_i, -b_f)
        # the cell's candidate and output gates keep torch's init
        for block, bias in ((2, b_g), (3, b_o)):
            ih, hh = before[f"bias_ih_{suffix}"], before[f"bias_hh_{suffix}"]
            torch.testing.assert_close(bias, (ih + hh)[block * h:(block + 1) * h])
    for name, p in lstm.named_parameters():
        if name.startswith("weight"):
            assert torch.equal(p, before[name])


def test_forget_biases_are_log_of_a_uniform():
    """exp(b_f) is uniform on [1, T_max - 1]: a Kolmogorov-Smirnov test on 4,000 units
    (the seed is fixed, so this cannot flake)."""
    torch.manual_seed(1)
    t_max, h = 1000, 4000
    lstm = build_recurrent("lstm", 2, h)
    initialise_recurrent(lstm, chrono=t_max)
    u = (lstm.bias_ih_l0 + lstm.bias_hh_l0)[h:2 * h].detach().double().exp().numpy()
    result = stats.kstest(u, stats.uniform(loc=1, scale=t_max - 2).cdf)
    assert result.pvalue > 0.01, result
    # and not, say, uniform on the log scale
    assert stats.kstest(u, stats.loguniform(1, t_max - 1).cdf).pvalue < 1e-6


def test_chrono_is_built_from_the_encoder_config_after_the_forget_bias():
    torch.manual_seed(0)
    config = EncoderConfig(cell="lstm", hidden=6, chrono=50)
    encoder = build_initialised_encoder(config, 2)
    total = (encoder.bias_ih_l0 + encoder.bias_hh_l0).detach()
    assert not torch.all(total[6:12] == 1.0)  # not the default forget bias 1
    torch.testing.assert_close(total[:6], -total[6:12])


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"cell": "rnn", "chrono": 50}, "the rnn cell has no gate that keeps its state"),
    ({"cell": "mingru", "chrono": 50}, "the mingru cell has no gate that keeps its state"),
    ({"cell": "gru", "chrono": 2}, "expected T_max, the longest dependency"),
    ({"cell": "lstm", "chrono": 50, "forget_bias": 2.0}, "--forget-bias 2.0: --chrono 50"),
])
def test_chrono_refusals_name_the_option(kwargs, message):
    with pytest.raises(ValueError, match=message):
        EncoderConfig(**kwargs)


def test_chrono_option_on_the_command_line():
    from rnnkit.training.options import chrono_range

    assert chrono_range("none") is None and chrono_range("120") == 120
    for bad in ("2", "x", "1.5"):
        with pytest.raises(Exception, match="expected"):
            chrono_range(bad)
