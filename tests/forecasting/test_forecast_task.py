"""The forecast task end to end: the Forecaster facade, the CLI, and what training sees."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from rnnkit import Forecaster
from rnnkit.cli import main

QUICK = {"hidden": 16, "epochs": 40, "batch_size": 16, "lr": 1e-2, "baselines": "naive"}


def sine(n=240, period=24):
    t = np.arange(n)
    index = pd.date_range("2001-01-01", periods=n, freq="h")
    return pd.Series(np.sin(2 * np.pi * t / period), index=index, name="signal")


def test_a_small_model_forecasts_a_sine_nearly_exactly(tmp_path):
    series = sine()
    model = Forecaster(horizon=12, input_length=24, output_length=12, test_size=24,
                       val_size=24, out=tmp_path, hidden=16, epochs=40, lr=1e-2,
                       batch_size=16, window_norm="none", seed=0).fit(series)
    test_mae = model.metrics["forecast"]["model"]["mae"]
    assert test_mae < 0.05, test_mae  # amplitude 1; naive scores about 0.6 here
    assert model.metrics["forecast"]["baselines"]["naive"]["mae"] > 0.4
    ahead = model.predict(30)  # past the end: two and a half rollouts of 12
    assert list(ahead.index[:2]) == list(pd.date_range("2001-01-11", periods=2, freq="h"))
    truth = np.sin(2 * np.pi * np.arange(240, 270) / 24)
    assert np.max(np.abs(ahead["forecast"].to_numpy() - truth)) < 0.15
    again = Forecaster.from_run(model.run_dir).predict(30)
    np.testing.assert_allclose(again["forecast"], ahead["forecast"])


def test_training_never_sees_the_validation_or_test_targets(tmp_path):
    """Two runs on series that differ only after the training part end with the same
    weights: no statistic or window of training reaches past it."""
    base = sine(200).to_numpy() + np.random.default_rng(0).normal(0, 0.1, 200) + 3
    other = base.copy()
    other[150:] = np.random.default_rng(1).permutation(other[150:]) * 5
    options = {**QUICK, "horizon": 6, "input_length": 12, "test_size": 25, "val_size": 25,
               "epochs": 3, "seed": 3}
    a = Forecaster(out=tmp_path / "a", **options).fit(base)
    b = Forecaster(out=tmp_path / "b", **options).fit(other)
    last_a = torch.load(a.run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    last_b = torch.load(b.run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    for key, value in last_a["state_dict"].items():
        torch.testing.assert_close(value, last_b["state_dict"][key], rtol=0, atol=0)
    pa, pb = (json.loads((r.run_dir / "pipeline.json").read_text()) for r in (a, b))
    assert pa["mean"] == pb["mean"] and pa["std"] == pb["std"]


def test_probabilistic_intervals_cover_gaussian_noise(tmp_path):
    rng = np.random.default_rng(0)
    values = 10 + np.sin(np.arange(400) * 2 * np.pi / 20) + rng.normal(0, 0.3, 400)
    model = Forecaster(horizon=1, input_length=20, test_size=100, val_size=60,
                       probabilistic=True, out=tmp_path, **QUICK, seed=0).fit(values)
    report = model.metrics["forecast"]
    assert list(report["baselines"]) == ["naive"]
    coverage = report["intervals"]["80%"]["coverage"]
    assert 0.65 <= coverage <= 0.95, coverage
    assert report["intervals"]["95%"]["coverage"] >= coverage
    ahead = model.predict(3)
    assert (ahead["lower_95"] <= ahead["lower_80"]).all()
    assert (ahead["lower_80"] <= ahead["forecast"]).all()
    assert (ahead["forecast"] <= ahead["upper_80"]).all()


def test_cli_trains_on_a_csv_and_forecasts(tmp_path, capsys):
    series = sine(160, period=12)
    csv = tmp_path / "s.csv"
    series.rename_axis("when").to_csv(csv)
    run = tmp_path / "run"
    code = main(["train", "forecast", "--data", f"csv:{csv}", "--time-col", "when",
                 "--target", "signal", "--horizon", "4", "--test-size", "20", "--val-size",
                 "20", "--hidden", "8", "--epochs", "2", "--baselines", "naive,seasonal_naive",
                 "--season", "12", "--out", str(run)])
    assert code == 0
    out = capsys.readouterr().out
    assert "test: 17 origin(s), 4 step(s) ahead" in out and "seasonal_naive" in out
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["forecast"]["origins"] == 17 and len(metrics["forecast"]["mae_by_step"]) == 4
    assert (run / "plots" / "test_forecast.png").is_file()
    code = main(["forecast", str(run), "--horizon", "5", "--csv", str(tmp_path / "f.csv"),
                 "--plot", str(tmp_path / "f.png")])
    assert code == 0
    table = pd.read_csv(tmp_path / "f.csv")
    assert list(table.columns) == ["time", "forecast"] and len(table) == 5
    assert table["time"][0] == "2001-01-07 16:00:00"
    assert (tmp_path / "f.png").is_file()
    assert main(["forecast", str(run), "--test"]) == 0
    assert "actual" in capsys.readouterr().out


def test_cli_errors_are_one_line(tmp_path, capsys):
    csv = tmp_path / "s.csv"
    csv.write_text("t,y\n" + "\n".join(f"{i},{i % 7}" for i in range(40)) + "\n")
    assert main(["train", "forecast", "--data", f"csv:{csv}", "--target", "z"]) == 2
    assert "--target: no column 'z'" in capsys.readouterr().err
    assert main(["train", "forecast", "--data", f"csv:{csv}", "--target", "y",
                 "--horizon", "50", "--test-size", "10"]) == 2
    assert "--horizon: 50 steps do not fit in the test part (--test-size 10)" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown option"):
        Forecaster(hiden=3)
    with pytest.raises(ValueError, match="baselines"):
        Forecaster(baselines=["naive", "prophet"]).fit(np.arange(100.0))


def test_a_baseline_that_fails_is_left_out_and_the_run_completes(tmp_path, capsys):
    series = sine(120, period=12)
    csv = tmp_path / "s.csv"
    series.rename_axis("when").to_csv(csv)
    run = tmp_path / "run"
    assert main(["train", "forecast", "--data", f"csv:{csv}", "--time-col", "when",
                 "--target", "signal", "--horizon", "3", "--hidden", "8", "--epochs", "2",
                 "--baselines", "naive,ets", "--baseline-timeout", "0.05", "--no-progress",
                 "--out", str(run)]) == 0
    out = capsys.readouterr().out
    assert "ets             left out: stopped after 0.05 s (--baseline-timeout)" in out
    forecast = json.loads((run / "metrics.json").read_text())["forecast"]
    assert forecast["baselines"]["ets"] == {"failed": "stopped after 0.05 s (--baseline-timeout)"}
    assert forecast["baselines"]["naive"]["mae"] > 0
    assert (run / "plots" / "test_forecast.png").is_file()
    # evaluate prints the same table: the network afresh, the baselines from the run
    assert main(["evaluate", str(run)]) == 0
    table = capsys.readouterr().out
    assert "test: " in table and "rnnkit gru" in table and "naive" in table
    assert "left out" in table


def test_forecaster_quiet_prints_nothing_while_fitting(tmp_path, capsys):
    Forecaster(horizon=3, out=tmp_path / "loud", hidden=4, epochs=3,
               baselines="naive").fit(sine(120))
    assert capsys.readouterr().out.count("epoch ") == 3
    Forecaster(horizon=3, out=tmp_path / "quiet", hidden=4, epochs=3, baselines="naive",
               quiet=True).fit(sine(120))
    assert "epoch " not in capsys.readouterr().out


def test_calendar_inputs_tell_the_phase_that_a_one_step_window_cannot(tmp_path):
    """A season of 4 steps with values 0, 0, 1, 1: after a 0 comes a 0 or a 1 depending on
    the position in the season alone. Reading one step, only the calendar columns tell
    which; with them the 4-step rollout is exact, without them it guesses."""
    t = np.arange(200)
    series = pd.Series(5.0 + (t % 4 >= 2), index=pd.date_range("2000-01-01", periods=200,
                                                                   freq="D"))
    options = {**QUICK, "season": 4, "input_length": 1, "output_length": 1, "horizon": 4,
               "test_size": 40, "val_size": 40, "seed": 0}
    calendar = Forecaster(out=tmp_path / "calendar", calendar=True, **options).fit(series)
    plain = Forecaster(out=tmp_path / "plain", **options).fit(series)
    assert calendar.metrics["forecast"]["model"]["mae"] < 0.1
    assert plain.metrics["forecast"]["model"]["mae"] > 0.3
    ahead = calendar.predict(8)["forecast"].to_numpy()  # past the end: rows 200..207
    np.testing.assert_allclose(ahead, 5.0 + (np.arange(200, 208) % 4 >= 2), atol=0.15)


def test_calendar_needs_a_season(tmp_path, capsys):
    values = np.random.default_rng(0).normal(size=120) + 10
    with pytest.raises(ValueError, match="--calendar: the series' season is 1"):
        Forecaster(out=tmp_path, calendar=True, horizon=2, **QUICK).fit(values)
