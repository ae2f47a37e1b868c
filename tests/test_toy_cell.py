"""A cell registered only through its description works everywhere: layers, every task,
export and the server.

The toy is the minimal gated unit (MGU, Zhou et al. 2016), which rnnkit does not ship:
``f = sigmoid(W_f x + U_f h + b_f)``, ``n = tanh(W_n x + U_n (f * h) + b_n)``,
``h' = (1 - f) h + f n``. It is described by its plain step alone, so it runs on the
reference engine (autograd through the step); nothing else in rnnkit is told about it.
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

import rnnkit.nn as rnn
from rnnkit import functional
from rnnkit.choices import CELL_CHOICES
from rnnkit.cli import main
from rnnkit.functional import CellSpec, register_cell
from rnnkit.tasks.catalog import CATALOG
from tests.helpers import Client, one_step, tiny_options


def mgu_step(x_proj_t, state, w_hh, b_hh, extra=(), h_in=None):
    (h,) = state
    h_read = h if h_in is None else h_in
    w_f, w_n = w_hh.chunk(2, dim=0)
    b_f, b_n = (None, None) if b_hh is None else b_hh.chunk(2)
    x_f, x_n = x_proj_t.chunk(2, dim=1)
    f = torch.sigmoid(x_f + F.linear(h_read, w_f, b_f))
    n = torch.tanh(x_n + F.linear(f * h_read, w_n, b_n))
    return ((1 - f) * h + f * n,), (f, n)


MGU = CellSpec(name="mgu", gates=2, num_states=1, step=mgu_step)


@pytest.fixture
def mgu():
    """Register the toy for one test, and leave every registry as it was."""
    from rnnkit.nn import layers

    saved = (dict(functional.CELLS), dict(functional._ALIASES), list(CELL_CHOICES._names),
             dict(layers._LAYERS))
    register_cell(MGU)
    yield MGU
    functional.CELLS.clear()
    functional.CELLS.update(saved[0])
    functional._ALIASES.clear()
    functional._ALIASES.update(saved[1])
    CELL_CHOICES._names[:] = saved[2]
    layers._LAYERS.clear()
    layers._LAYERS.update(saved[3])


def _by_hand(x, layer):
    """The MGU written out once more, straight from the equations (batch first, one layer)."""
    w_ih, w_hh = layer.weight_ih_l0, layer.weight_hh_l0
    b_ih, b_hh = layer.bias_ih_l0, layer.bias_hh_l0
    H = layer.hidden_size
    h = x.new_zeros(x.shape[0], H)
    outputs = []
    for t in range(x.shape[1]):
        f = torch.sigmoid(x[:, t] @ w_ih[:H].T + b_ih[:H] + h @ w_hh[:H].T + b_hh[:H])
        n = torch.tanh(x[:, t] @ w_ih[H:].T + b_ih[H:] + (f * h) @ w_hh[H:].T + b_hh[H:])
        h = (1 - f) * h + f * n
        outputs.append(h)
    return torch.stack(outputs, 1), h


def test_a_layer_of_the_toy_matches_its_equations_and_gradcheck(mgu):
    layer = rnn.layer_class("mgu")(3, 5, batch_first=True).double()
    assert layer.mode == "mgu" and type(layer).__name__ == "Mgu"
    x = torch.randn(4, 6, 3, dtype=torch.float64, requires_grad=True)
    y, h_n = layer(x)
    expected_y, expected_h = _by_hand(x, layer)
    torch.testing.assert_close(y, expected_y)
    torch.testing.assert_close(h_n[0], expected_h)
    assert torch.autograd.gradcheck(lambda inp: layer(inp)[0], (x[:2, :3],))
    # lengths, bidirectional and stacking come from the layer machinery, not the cell
    two = rnn.layer_class("mgu")(3, 5, num_layers=2, bidirectional=True, batch_first=True)
    y, h_n = two(torch.randn(4, 6, 3), lengths=torch.tensor([6, 1, 3, 2]))
    assert y.shape == (4, 6, 10) and h_n.shape == (4, 4, 5) and torch.isfinite(y).all()


def test_the_toy_runs_on_the_reference_engine_and_a_named_engine_says_why_not(mgu):
    layer = rnn.layer_class("mgu")(3, 4, backend="reference")
    layer(torch.randn(5, 2, 3))
    with pytest.warns(RuntimeWarning, match="mgu cell has no hand-derived backward.*using .reference"):
        rnn.layer_class("mgu")(3, 4, backend="fused")(torch.randn(5, 2, 3))


@pytest.mark.parametrize("task", list(CATALOG))
def test_every_task_trains_the_toy(mgu, task, tmp_path):
    options = tiny_options(task, tmp_path) | {"cell": "mgu"}
    result = one_step(task, options, tmp_path / "run")
    layers = [m for m in result["module"].modules() if isinstance(m, rnn.RNNBase)]
    assert layers and {m.mode for m in layers} == {"mgu"}
    assert torch.isfinite(result["loss"])


def test_the_command_line_offers_trains_exports_and_serves_the_toy(mgu, tmp_path, capsys):
    from rnnkit.export import load_safetensors
    from rnnkit.serving import build_app

    run = tmp_path / "run"
    assert main(["train", "seqclass", "--data", "digits", "--cell", "mgu", "--hidden", "8",
                 "--epochs", "1", "--quiet", "--out", str(run)]) == 0
    assert json.loads((run / "config.json").read_text())["cell"] == "mgu"
    # export: weights and config, rebuilt without pickle; ONNX says why it cannot
    path = tmp_path / "mgu.safetensors"
    assert main(["export", str(run), "--format", "safetensors", "--output", str(path)]) == 0
    model = load_safetensors(path).eval()
    assert model.encoder.mode == "mgu"
    capsys.readouterr()
    assert main(["export", str(run), "--format", "onnx", "--output", str(tmp_path / "m.onnx")]) == 2
    assert "mgu cell has no torch.nn counterpart" in capsys.readouterr().err
    # the server answers as the exported network computes
    image = torch.rand(8, 8)
    with torch.no_grad():
        probs = torch.softmax(model(image[None, :, :]), -1)[0]
    with Client(build_app(run)) as client:
        status, _, text = client.post("/predict", {"images": [image.tolist()]})
    assert status == 200
    top = json.loads(text)["predictions"][0]
    assert top["label"] == str(int(probs.argmax()))


def test_a_forget_bias_for_a_cell_without_a_forget_gate_is_refused(tmp_path, capsys):
    assert main(["train", "seqclass", "--data", "digits", "--cell", "gru", "--forget-bias", "3",
                 "--out", str(tmp_path / "r")]) == 2
    assert "--forget-bias: the gru cell has no forget gate" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
