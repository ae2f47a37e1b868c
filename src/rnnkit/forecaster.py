"""``Forecaster``: the forecast task for notebooks, ``fit(series).predict(n)``.

    >>> from rnnkit import Forecaster
    >>> model = Forecaster(horizon=12, epochs=100).fit(passengers)   # a pandas Series
    >>> model.predict(24)                                            # a DataFrame by date

``fit`` runs ``rnnkit train forecast`` on the series: the last ``val_size`` steps before
the last ``test_size`` (default: the horizon) pick the best epoch; the test part is
scored against the baselines (``metrics``). ``predict`` then forecasts past the end of the
whole series. Every fit leaves a complete run folder (``run_dir``), so
``rnnkit forecast RUN_DIR`` and ``Forecaster.from_run`` work on it later.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np


class Forecaster:
    """A recurrent forecaster with the ``rnnkit train forecast`` options as keywords.

    Args:
        horizon: steps ahead scored on the test part (default: the season, else 1).
        out: folder for the run (default: a new temporary folder).
        **options: any option of ``rnnkit train forecast --help``, with underscores:
            ``input_length``, ``output_length``, ``cell``, ``hidden``, ``epochs``, ``lr``,
            ``probabilistic``, ``transform``, ``difference``, ``season``, ``seed``, ...;
            ``quiet=True`` prints nothing while fitting (no line per epoch).
    """

    def __init__(self, horizon: int | None = None, out: str | Path | None = None,
                 **options: Any) -> None:
        from rnnkit.tasks.forecast import TASK
        from rnnkit.training.options import COMMON_OPTIONS

        known = {o.key for o in [*TASK.options, *COMMON_OPTIONS]} - {"data", "out"}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(f"Forecaster: unknown option(s) {', '.join(unknown)}; see "
                             "rnnkit train forecast --help")
        self.options = {"horizon": horizon, "baselines": ["naive", "seasonal_naive"],
                        "progress": False, **options}
        self.out = Path(out) if out is not None else None
        self.run_dir: Path | None = None
        self.metrics: dict[str, Any] | None = None
        self._module = self._data = None

    def fit(self, series, target: str | None = None,
            covariates: list[str] | None = None) -> Forecaster:
        """Train on ``series``: a pandas Series, a DataFrame (``target`` column, default
        the first, and ``covariates`` columns) or a 1-D/2-D numpy array. A datetime
        index dates the forecasts."""
        import pandas as pd

        from rnnkit.tasks.forecast import TASK
        from rnnkit.training import runner
        from rnnkit.training.options import COMMON_OPTIONS, resolve

        frame = _as_frame(series)
        target = target or str(frame.columns[0])
        folder = self.out or Path(tempfile.mkdtemp(prefix="rnnkit-forecaster-"))
        folder.mkdir(parents=True, exist_ok=True)
        csv = folder / "series.csv"
        timed = isinstance(frame.index, pd.DatetimeIndex)
        frame.to_csv(csv, index=timed, index_label="time" if timed else None)
        given = {"data": f"csv:{csv}", "target": target, "covariates": list(covariates or []),
                 "time_col": "time" if timed else None, "out": str(folder / "run")}
        # the keyword options are checked and converted as a config file's values are
        as_text = {k: (",".join(map(str, v)) if isinstance(v, (list, tuple)) else v)
                   for k, v in self.options.items()}
        config = resolve([*TASK.options, *COMMON_OPTIONS], TASK.defaults, given, as_text)
        self.run_dir = runner.train(TASK, config)
        self.metrics = json.loads((self.run_dir / "metrics.json").read_text())
        self._load("best")
        return self

    @classmethod
    def from_run(cls, run_dir: str | Path, checkpoint: str = "best") -> Forecaster:
        """A forecaster from a trained ``rnnkit train forecast`` run folder."""
        model = cls()
        model.run_dir = Path(run_dir)
        model._load(checkpoint)
        metrics = model.run_dir / "metrics.json"
        model.metrics = json.loads(metrics.read_text()) if metrics.is_file() else None
        return model

    def _load(self, checkpoint: str) -> None:
        from rnnkit.tasks.forecast import TASK
        from rnnkit.training import runner

        self._module, self._data, _ = runner.load_trained(TASK, self.run_dir, checkpoint)

    def predict(self, n: int | None = None, seed: int = 0):
        """Forecast ``n`` steps past the end of the series (default: the horizon): a
        DataFrame with ``forecast`` (and ``lower_80 .. upper_95`` when probabilistic)."""
        from rnnkit.tasks.forecast import forecast_frame

        if self._module is None:
            raise ValueError("Forecaster: call fit(series) (or Forecaster.from_run) first")
        n = n if n is not None else self._data.config["horizon"]
        return forecast_frame(self._module, self._data, int(n), seed=seed)


def _as_frame(series):
    import pandas as pd

    if isinstance(series, pd.Series):
        return series.to_frame(name=str(series.name) if series.name is not None else "value")
    if isinstance(series, pd.DataFrame):
        return series.rename(columns=str)
    array = np.asarray(series, dtype=np.float64)
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2:
        raise ValueError(f"series: expected a 1-D or 2-D array, got shape {array.shape}")
    names = ["value"] + [f"x{i}" for i in range(1, array.shape[1])]
    return pd.DataFrame(array, columns=names)
