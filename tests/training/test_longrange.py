"""The long-range lab: generators, baselines, gradient diagnostics and clipping."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import rnnkit
from rnnkit.cli import main
from rnnkit.data.synthetic import (
    adding_baseline_mse,
    adding_problem,
    copy_baseline_cross_entropy,
    copy_memory,
)
from rnnkit.functional import CELLS
from rnnkit.training.diagnostics import state_gradient_norms


def test_adding_targets_are_the_sum_of_the_marked_values():
    x, y = adding_problem(500, 30, seed=5)
    values, markers = x[..., 0], x[..., 1]
    assert torch.all(markers.sum(1) == 2)
    assert torch.all(markers[:, :15].sum(1) == 1) and torch.all(markers[:, 15:].sum(1) == 1)
    torch.testing.assert_close(y, (values * markers).sum(1))
    x2, y2 = adding_problem(500, 30, seed=5)
    assert torch.equal(x, x2) and torch.equal(y, y2)  # a seed makes the same data
    assert not torch.equal(adding_problem(500, 30, seed=6)[1], y)


def test_adding_baseline_matches_the_formula_and_the_data():
    assert adding_baseline_mse() == pytest.approx(1 / 6)
    _, y = adding_problem(200_000, 10, seed=0)
    assert float(((y - 1) ** 2).mean()) == pytest.approx(1 / 6, abs=2e-3)


def test_copy_target_is_the_input_symbols_after_the_delay():
    delay = 7
    x, y = copy_memory(100, delay, seed=1)
    assert x.shape == y.shape == (100, delay + 20)
    assert torch.all((x[:, :10] >= 1) & (x[:, :10] <= 8))
    assert torch.all(x[:, 10:] == torch.where(torch.arange(delay + 10) == delay - 1, 9, 0))
    assert torch.all(y[:, :-10] == 0) and torch.equal(y[:, -10:], x[:, :10])


def test_copy_baseline_matches_the_formula_and_a_memoryless_predictor():
    delay = 50
    assert copy_baseline_cross_entropy(delay) == pytest.approx(10 * math.log(8) / (delay + 20))
    y = copy_memory(64, delay, seed=2)[1]
    logits = torch.full((64, delay + 20, 10), -1e9)
    logits[:, :-10, 0] = 0.0  # certain blanks
    logits[:, -10:, 1:9] = 0.0  # uniform over the 8 symbols at the end
    ce = torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten())
    assert float(ce) == pytest.approx(copy_baseline_cross_entropy(delay), rel=1e-6)


class _Probe(torch.nn.Module):
    """A one-layer LSTM whose loss reads several time steps, with a loss_on method."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = rnnkit.nn.LSTM(3, 5, batch_first=True, backend="fused")

    def loss_on(self, batch):
        (x,) = batch
        y, _ = self.lstm(x)
        return (y[:, -1] ** 2).sum() + y[:, 2].sum()


def test_state_gradient_norms_equal_autograd():
    torch.manual_seed(0)
    model = _Probe().double()
    x = torch.randn(4, 9, 3, dtype=torch.float64)
    got = state_gradient_norms(model, [x])
    # Autograd through the plain LSTM steps, keeping every h_t.
    p = dict(model.lstm.named_parameters())
    h = torch.zeros(4, 5, dtype=torch.float64)
    c = torch.zeros_like(h)
    hs = []
    for t in range(9):
        (h, c), _ = CELLS["lstm"].step(x[:, t] @ p["weight_ih_l0"].T + p["bias_ih_l0"], (h, c),
                                 p["weight_hh_l0"], p["bias_hh_l0"])
        h.retain_grad()
        hs.append(h)
    ((hs[-1] ** 2).sum() + hs[2].sum()).backward()
    expected = torch.stack([t.grad.norm(dim=1) for t in hs]).mean(1)
    torch.testing.assert_close(torch.from_numpy(got), expected, rtol=1e-10, atol=1e-12)


def test_clipping_caps_the_global_norm_and_diagnostics_are_written(tmp_path):
    run = tmp_path / "run"
    assert main(["train", "adding", "--length", "20", "--train-size", "256", "--hidden", "8",
                 "--batch-size", "64", "--epochs", "1", "--clip", "0.01", "--grad-diagnostics", "2", "--no-progress",
                 "--out", str(run)]) == 0
    diag = json.loads((run / "diagnostics.json").read_text())
    norms = diag["global_grad_norm"]
    assert len(norms) == 4  # 256 / 64 steps
    assert all(r["after_clip"] <= 0.01 * (1 + 1e-5) for r in norms)
    assert any(r["before_clip"] > 0.01 for r in norms)
    probes = diag["state_grad_norms"]
    assert [r["step"] for r in probes] == [0, 2, 4] and len(probes[0]["norms"]) == 20
    for name in ("grad_heatmap.png", "grad_over_time.png", "grad_norm.png"):
        assert (run / "plots" / name).stat().st_size > 1000
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["baseline"]["mse"] == pytest.approx(1 / 6)
    x, _ = adding_problem(3, 20, seed=9)
    np.save(tmp_path / "three.npy", x.numpy())
    assert main(["predict", str(run), str(tmp_path / "three.npy")]) == 0
    assert main(["evaluate", str(run)]) == 0


def test_copy_task_trains_and_reports(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "copy", "--delay", "5", "--train-size", "128", "--hidden", "8",
                 "--epochs", "1", "--cell", "gru", "--no-progress", "--out", str(run)]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0 <= metrics["test"]["copy_accuracy"] <= 1 and metrics["test"]["loss"] > 0
    assert metrics["baseline"]["cross_entropy"] == pytest.approx(10 * math.log(8) / 25)
    np.save(tmp_path / "one.npy", copy_memory(1, 5, seed=4)[0][0].numpy())
    capsys.readouterr()
    assert main(["predict", str(run), str(tmp_path / "one.npy")]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{tmp_path / 'one.npy'}: recalled ") and len(out.split()) == 12
    np.save(tmp_path / "bad.npy", np.full((25,), 12))
    assert main(["predict", str(run), str(tmp_path / "bad.npy")]) == 2
    assert "expected symbols 0-9" in capsys.readouterr().err


def test_lab_compare_writes_table_and_plots_and_reuses_finished_runs(tmp_path, capsys):
    out = tmp_path / "cmp"
    argv = ["lab", "compare", "--task", "adding", "--length", "8,12", "--cells", "rnn,lstm",
            "--epochs", "1", "--train-size", "128", "--batch-size", "64", "--hidden", "8", "--no-progress",
            "--grad-diagnostics", "1", "--out", str(out)]
    assert main(argv) == 0
    rows = json.loads((out / "comparison.json").read_text())["rows"]
    assert [(r["T"], r["cell"]) for r in rows] == [(8, "rnn"), (8, "lstm"), (12, "rnn"), (12, "lstm")]
    assert all(r["baseline_loss"] == pytest.approx(1 / 6) and r["steps"] == 2 for r in rows)
    table = (out / "comparison.md").read_text()
    assert "| 12 | lstm |" in table and "not solved" in table
    for name in ("learning_curves.png", "dh_norms.png"):
        assert (out / name).stat().st_size > 1000
    stamp = (out / "rnn-T8" / "metrics.json").stat().st_mtime
    capsys.readouterr()
    assert main(argv) == 0  # a finished run is reused, not retrained
    assert (out / "rnn-T8" / "metrics.json").stat().st_mtime == stamp
    assert "== adding" not in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["lab", "compare", "--cells", "rnn,transformer"])


def test_a_minimal_cell_trains_evaluates_and_predicts(tmp_path):
    """--cell mingru through the whole command (exact resume: test_exact_resume.py)."""
    run = tmp_path / "run"
    assert main(["train", "adding", "--length", "16", "--train-size", "128", "--hidden", "8",
                 "--cell", "minlstm", "--layers", "2", "--epochs", "2", "--no-progress",
                 "--out", str(run)]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["cell"] == "minlstm"
    np.save(tmp_path / "one.npy", np.random.default_rng(0).random((1, 16, 2)).astype("float32"))
    assert main(["predict", str(run), str(tmp_path / "one.npy")]) == 0
    assert main(["evaluate", str(run)]) == 0
