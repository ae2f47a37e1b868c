"""Time-series forecasting: ``rnnkit train forecast`` and ``rnnkit forecast``.

A recurrent encoder reads ``input_length`` steps and a linear head forecasts the next
``output_length`` target values at once (direct multi-step), trained with the mean
squared error (or the Gaussian negative log-likelihood with ``--probabilistic``). Longer
horizons roll the model out on its own forecasts. The test report puts the network
beside the classical baselines (:mod:`rnnkit.forecasting.baselines`) forecast from the
same origins. Data: :mod:`rnnkit.data.series`; windows and scaling:
:mod:`rnnkit.forecasting.pipeline`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from rnnkit.data.series import Series, load_series
from rnnkit.forecasting.baselines import NAMES as BASELINE_NAMES
from rnnkit.forecasting.baselines import run_baselines
from rnnkit.forecasting.metrics import all_metrics
from rnnkit.forecasting.pipeline import Pipeline, fit_pipeline, forecast, windows
from rnnkit.models.forecaster import ForecasterConfig, build_forecaster
from rnnkit.tasks import catalog
from rnnkit.training.module import TrainingModule
from rnnkit.training.run_folder import write_json
from rnnkit.training.sampling import epoch_shuffled

log = logging.getLogger("rnnkit")

PIPELINE_FILE = "pipeline.json"
INTERVALS = (80, 95)  # central prediction intervals, percent
SAMPLES = 500  # sample paths behind the intervals

# Per-source defaults for the options left unset (None). Chosen before any test-set
# result was seen for msft; for airpassengers see the README's account.
PRESETS: dict[str, dict[str, Any]] = {
    "airpassengers": {"input_length": 36, "output_length": 12, "horizon": 36, "test_size": 36,
                      "val_size": 12, "transform": "log", "difference": 0,
                      "window_norm": "last", "epochs": 200, "batch_size": 16},
    "msft": {"input_length": 20, "horizon": 1, "test_size": 250, "val_size": 250,
             "transform": "log", "difference": 1, "window_norm": "none", "epochs": 20,
             "batch_size": 64},
    "sunspots": {"input_length": 120, "horizon": 12, "test_size": 120, "val_size": 120,
                 "transform": "none", "difference": 0, "window_norm": "last", "epochs": 30,
                 "batch_size": 64},
    "taylor": {"input_length": 96, "horizon": 48, "test_size": 336, "val_size": 336,
               "transform": "none", "difference": 0, "window_norm": "last", "epochs": 20,
               "batch_size": 64},
    "co2": {"input_length": 104, "horizon": 52, "test_size": 104, "val_size": 104,
            "transform": "none", "difference": 0, "window_norm": "last", "epochs": 30,
            "batch_size": 64},
}


def complete_config(config: dict[str, Any], series: Series) -> dict[str, Any]:
    """Fill the options left unset from the source's preset (or, for files, from the
    series' season and length), and check them."""
    config = dict(config)
    preset = PRESETS.get(config["data"], {})
    n, season = len(series), series.season
    generic_horizon = season if 1 < season <= 52 else 1
    fallback = {"horizon": generic_horizon, "transform": "none", "difference": 0,
                "epochs": 100, "batch_size": 32,
                "input_length": max(2 * season, 24) if season > 1 else 24}
    for key in ("horizon", "input_length", "transform", "difference", "epochs", "batch_size"):
        if config.get(key) is None:
            config[key] = preset.get(key, fallback[key])
    if config.get("window_norm") is None:
        config["window_norm"] = preset.get("window_norm",
                                           "none" if config["difference"] else "last")
    if config.get("baselines") is None:
        config["baselines"] = list(BASELINE_NAMES)
    config["covariates"] = list(config.get("covariates") or [])
    if config.get("output_length") is None:
        config["output_length"] = preset.get("output_length", config["horizon"])
    for key in ("test_size", "val_size"):
        if config.get(key) is None:
            config[key] = preset.get(key, max(config["horizon"], config["output_length"],
                                              round(0.1 * n)))
    if config["horizon"] < 1:
        raise ValueError(f"--horizon: expected a positive number of steps, got {config['horizon']}")
    if config["horizon"] > config["test_size"]:
        raise ValueError(f"--horizon: {config['horizon']} steps do not fit in the test part "
                         f"(--test-size {config['test_size']})")
    if config["test_stride"] < 1:
        raise ValueError(f"--test-stride: expected a positive integer, got {config['test_stride']}")
    if len(series.columns) > 1 and config["horizon"] > config["output_length"]:
        raise ValueError(f"--horizon {config['horizon']} > --output-length "
                         f"{config['output_length']}: a rollout would need future covariates")
    return config


class ForecastData(L.LightningDataModule):
    """The series, its fitted pipeline and the windows of each split."""

    def __init__(self, config: dict[str, Any], run_dir: Path | None = None) -> None:
        super().__init__()
        self.config = config
        self.series = load_series(config["data"], config["target"], config["covariates"],
                                  config["time_col"], config["missing"], config["season"])
        c = config
        self.pipeline: Pipeline = fit_pipeline(self.series.values, c["input_length"],
                                               c["output_length"], c["val_size"], c["test_size"],
                                               c["transform"], c["difference"],
                                               self.series.season if c.get("calendar") else 0)
        if run_dir is not None:
            self._check_saved(Path(run_dir) / PIPELINE_FILE)
        self.z = self.pipeline.encode(self.series.values)

    def _check_saved(self, path: Path) -> None:
        """Keep the pipeline with the run; a later load must fit the same one (the same
        data), else forecasts would be silently scaled wrong."""
        current = self.pipeline.to_dict()
        if not path.is_file():
            write_json(path, current)
            return
        saved = json.loads(path.read_text())
        same = (saved.get("length") == current["length"]
                and np.allclose(saved.get("mean", []), current["mean"], rtol=1e-9)
                and np.allclose(saved.get("std", []), current["std"], rtol=1e-9))
        if not same:
            raise ValueError(f"--data {self.config['data']}: the data differ from those the run "
                             f"was trained on ({saved.get('length')} rows then, "
                             f"{current['length']} now, or different values); its {path.name} "
                             "no longer fits")

    def dataset(self, split: str) -> TensorDataset:
        x, y = windows(self.z, self.pipeline.origins(split), self.pipeline.input_length,
                       self.pipeline.output_length)
        return TensorDataset(torch.as_tensor(x, dtype=torch.float32),
                             torch.as_tensor(y, dtype=torch.float32))

    def sizes(self) -> dict[str, int]:
        p = self.pipeline
        return {"rows": p.length, "train_rows": p.val_start, "validation_rows": p.test_start - p.val_start,
                "test_rows": p.length - p.test_start,
                **{f"{s}_windows": len(p.origins(s)) for s in ("train", "validation", "test")}}

    def train_dataloader(self) -> DataLoader:
        dataset = self.dataset("train")
        return DataLoader(dataset, batch_size=self.config["batch_size"],
                          sampler=epoch_shuffled(dataset, self.config["seed"]))

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.dataset("validation"), batch_size=1024)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.dataset("test"), batch_size=1024)

    def evaluation_origins(self, horizon: int, stride: int) -> np.ndarray:
        """Origins in the test part whose ``horizon`` steps all lie in it."""
        p = self.pipeline
        return np.arange(max(p.test_start, p.first_origin), p.length - horizon + 1, stride)


class ForecastModule(TrainingModule):
    """Trains a :class:`SequenceForecaster` on standardised windows."""

    monitor = "val_loss"
    mode = "min"

    def __init__(self, config: dict[str, Any], model_config: ForecasterConfig) -> None:
        super().__init__(config)
        self.model = build_forecaster(model_config)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.model(x)

    def loss_on(self, batch) -> torch.Tensor:
        return self.model.loss(*batch)

    def training_step(self, batch, batch_idx):
        loss = self.model.loss(*batch)
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", self.model.score(*batch), on_epoch=True, prog_bar=True, sync_dist=True)

    def test_step(self, batch, batch_idx):
        self.log("test_loss", self.model.score(*batch), on_epoch=True, sync_dist=True)

    def predictor(self):
        """The model as :func:`rnnkit.forecasting.pipeline.forecast` calls it."""
        self.eval()
        return lambda x: self.model(x.to(self.device))


class ForecastTask(catalog.ForecastOptions):
    """``rnnkit train forecast``."""

    # written from the data before training; a run stopped before its first checkpoint
    # is started again without them (rnnkit.training.run_folder.never_checkpointed)
    data_files = (PIPELINE_FILE,)

    def add_routes(self, app, ctx) -> None:
        """The server's endpoint for these runs (:func:`rnnkit.tasks.routes.forecast`)."""
        from rnnkit.tasks import routes

        routes.forecast(app, ctx, self)

    monitor = "val_loss"
    mode = "min"
    curves = [("loss", "loss on standardised values (MSE, or Gaussian NLL)")]

    def prepare(self, config: dict[str, Any]) -> dict[str, Any]:
        series = load_series(config["data"], config["target"], config["covariates"],
                             config["time_col"], config["missing"], config["season"])
        config = complete_config(config, series)
        config["target"] = series.columns[0]
        for note in series.notes:
            log.info(f"{config['data']}: {note}")
        return config

    def build(self, config: dict[str, Any],
              run_dir: Path | None = None) -> tuple[ForecastModule, ForecastData]:
        if config.get("horizon") is None:  # a config written without prepare (the API)
            config = self.prepare(config)
        data = ForecastData(config, run_dir)
        model_config = ForecasterConfig(
            input_size=data.z.shape[1], output_length=config["output_length"],
            **ForecasterConfig.from_options(config), window_norm=config["window_norm"],
            probabilistic=config["probabilistic"], members=config.get("ensemble") or 1)
        return ForecastModule(config, model_config), data

    def describe_evaluation(self, module: ForecastModule, data: ForecastData, run_dir: Path,
                            split: str) -> None:
        describe_evaluation(module, data, run_dir, split)

    def after_test(self, run_dir: Path, module: ForecastModule,
                   data: ForecastData) -> dict[str, Any]:
        report = evaluate_forecasts(module, data, data.config)
        _plot_test(run_dir / "plots" / "test_forecast.png", data, report.pop("_arrays"))
        _log_table(report, data.config)
        return {"data": {"source": data.config["data"], "columns": data.series.columns,
                         "freq": data.series.freq, "season": data.series.season,
                         "notes": data.series.notes, **data.sizes()},
                "forecast": report}


def describe_evaluation(module: ForecastModule, data: ForecastData, run_dir: Path,
                        split: str) -> None:
    """``rnnkit evaluate`` on a forecast run: the table training printed, with the
    network's row computed afresh from the checkpoint and the baselines' rows (which do
    not depend on it) read back from ``metrics.json``."""
    if split != "test":
        return
    report = evaluate_forecasts(module, data, {**data.config, "baselines": []})
    report.pop("_arrays")
    try:
        saved = json.loads((run_dir / "metrics.json").read_text())["forecast"]["baselines"]
    except (OSError, ValueError, KeyError, TypeError):
        saved = {}
    report["baselines"] = saved
    _log_table(report, data.config)


def evaluate_forecasts(module: ForecastModule, data: ForecastData,
                       config: dict[str, Any]) -> dict[str, Any]:
    """The network and the baselines forecast ``horizon`` steps from every test origin;
    their metrics on the data's scale."""
    horizon = config["horizon"]
    origins = data.evaluation_origins(horizon, config["test_stride"])
    y = data.series.target
    actual = y[origins[:, None] + np.arange(horizon)[None, :]]
    train = y[:data.pipeline.val_start]
    season = data.series.season
    prices = config["data"] == "msft" or config["difference"] > 0
    last = y[origins - 1] if prices else None
    samples = SAMPLES if config["probabilistic"] else 0
    point, paths = forecast(module.predictor(), data.pipeline, data.series.values, origins,
                            horizon, samples=samples, seed=config["seed"])
    report: dict[str, Any] = {
        "horizon": horizon, "origins": len(origins), "output_length": config["output_length"],
        "model": all_metrics(actual, point, train, season, last),
        "mae_by_step": [round(float(np.mean(np.abs(actual[:, j] - point[:, j]))), 6)
                        for j in range(horizon)]}
    if prices:
        moves = np.sign(actual - y[origins - 1][:, None])
        report["share_of_up_moves"] = float(np.mean(moves[moves != 0] > 0))
    if paths is not None:
        report["intervals"] = {}
        for level in INTERVALS:
            lo, hi = np.percentile(paths, [50 - level / 2, 50 + level / 2], axis=0)
            report["intervals"][f"{level}%"] = {
                "coverage": float(np.mean((actual >= lo) & (actual <= hi))),
                "mean_width": float(np.mean(hi - lo))}
    timeout = config.get("baseline_timeout", 180.0) or None
    baselines, failed = run_baselines(y, data.pipeline.test_start, origins, horizon, season,
                                      tuple(config["baselines"]), timeout, report=log.info)
    report["baselines"] = {name: {**all_metrics(actual, f, train, season, last), "fitted": info}
                           for name, (f, info) in baselines.items()}
    report["baselines"] |= {name: {"failed": why} for name, why in failed.items()}
    report["_arrays"] = {"origins": origins, "actual": actual, "model": point,
                         "paths": paths, **{n: f for n, (f, _) in baselines.items()}}
    return report


def _log_table(report: dict[str, Any], config: dict[str, Any]) -> None:
    keys = ["mae", "rmse", "mape", "smape", "mase"]
    if "directional_accuracy" in report["model"]:
        keys.append("directional_accuracy")
    heads = {"mape": "MAPE %", "smape": "sMAPE %", "directional_accuracy": "direction"}
    log.info("")
    log.info(f"test: {report['origins']} origin(s), {report['horizon']} step(s) ahead")
    log.info(f"{'':16}" + "".join(f"{heads.get(k, k.upper()):>11}" for k in keys))
    rows = [("rnnkit " + config["cell"], report["model"]), *report["baselines"].items()]
    for name, metrics in rows:
        if "failed" in metrics:
            log.info(f"{name:16}left out: {metrics['failed']}")
            continue
        cells = []
        for k in keys:
            v = metrics.get(k)
            cells.append(f"{'-':>11}" if v is None else
                         (f"{v:>11.1%}" if k == "directional_accuracy" else f"{v:>11.4g}"))
        log.info(f"{name:16}" + "".join(cells))
    if "share_of_up_moves" in report:
        log.info(f"(the data moved up at {report['share_of_up_moves']:.1%} of the steps; a "
                 "forecast of no change scores no direction)")
    for level, item in report.get("intervals", {}).items():
        log.info(f"{level} interval: coverage {item['coverage']:.1%}, mean width "
                 f"{item['mean_width']:.4g}")


def _plot_test(path: Path, data: ForecastData, arrays: dict[str, Any]) -> None:
    """One forecast path over the test part when there is a single origin; else the
    forecasts for the last horizon step, each drawn at the step it forecasts."""
    from rnnkit.forecasting.plots import plot_forecast

    origins, horizon = arrays["origins"], arrays["actual"].shape[1]
    single = len(origins) == 1
    names = ("seasonal_naive", "ets", "arima") if single else ("naive", "arima")
    if single:
        steps = int(origins[0]) + np.arange(horizon)
        pick = (lambda a: a[0])
        title = f"{data.series.columns[0]}: {horizon}-step forecast from the test origin"
    else:
        steps = origins + horizon - 1
        pick = (lambda a: a[:, horizon - 1])
        title = f"{data.series.columns[0]}: {horizon}-step-ahead forecasts over the test part"
    forecasts = {"rnnkit": pick(arrays["model"])}
    forecasts |= {n: pick(arrays[n]) for n in names if n in arrays}
    band = None
    if arrays["paths"] is not None:
        paths = arrays["paths"][:, 0] if single else arrays["paths"][:, :, horizon - 1]
        band = np.percentile(paths, [10, 90], axis=0)
    plot_forecast(path, data.series, steps, forecasts, band, title)


TASK = ForecastTask()


def forecast_frame(module: ForecastModule, data: ForecastData, horizon: int,
                   start: int | None = None, seed: int = 0):
    """A ``horizon``-step forecast from row ``start`` (default: past the end of the data)
    as a pandas DataFrame indexed by date (or step): ``forecast``, the actual values where
    known, and ``lower_P``/``upper_P`` interval bounds for a probabilistic model."""
    import pandas as pd

    series = data.series
    n = len(series)
    start = n if start is None else start
    if horizon < 1:
        raise ValueError(f"--horizon: expected a positive number of steps, got {horizon}")
    if not data.pipeline.first_origin <= start <= n:
        raise ValueError(f"forecast origin {start}: must lie between "
                         f"{data.pipeline.first_origin} and {n}")
    samples = SAMPLES if module.model.config.probabilistic else 0
    point, paths = forecast(module.predictor(), data.pipeline, series.values, np.array([start]),
                            horizon, samples=samples, seed=seed)
    index = series.future_index(horizon, start)
    if index is None:
        index = pd.RangeIndex(start, start + horizon, name="step")
    frame = pd.DataFrame({"forecast": point[0]}, index=index)
    known = min(horizon, n - start)
    if known > 0:
        frame["actual"] = np.concatenate([series.target[start:start + known],
                                          np.full(horizon - known, np.nan)])
    if paths is not None:
        for level in INTERVALS:
            lo, hi = np.percentile(paths[:, 0], [50 - level / 2, 50 + level / 2], axis=0)
            frame[f"lower_{level}"], frame[f"upper_{level}"] = lo, hi
    return frame


def plot_frame(path: str | Path, data: ForecastData, frame, start: int) -> Path:
    """The picture of :func:`forecast_frame`'s output."""
    from rnnkit.forecasting.plots import plot_forecast

    band = None
    if "lower_80" in frame:
        band = np.stack([frame["lower_80"].to_numpy(), frame["upper_80"].to_numpy()])
    steps = start + np.arange(len(frame))
    where = "the test origin" if start < len(data.series) else "the end of the data"
    title = f"{data.series.columns[0]}: {len(frame)}-step forecast from {where}"
    return plot_forecast(Path(path), data.series, steps, {"rnnkit": frame["forecast"].to_numpy()},
                         band, title)
