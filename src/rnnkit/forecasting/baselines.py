"""The classical baselines, forecast from exactly the origins the network is tested on.

- ``naive``: the last observed value (the random walk, for prices).
- ``seasonal_naive``: the value one season earlier (only for seasonal series).
- ``ets``: statsmodels' ``ETSModel`` (additive errors). The trend (none, additive,
  additive damped) and seasonality (none, additive, multiplicative) are chosen by AIC.
- ``arima``: orders chosen by ``pmdarima.auto_arima`` with its defaults: non-seasonal,
  stepwise search (Hyndman & Khandakar 2008), d by the KPSS test, AIC. The fitted model
  is statsmodels' SARIMAX. This is the setting of Darts' AutoARIMA.
- ``seasonal_arima``: the same search with a seasonal part at the series' season (for
  seasons of 2 to 24 steps; longer ones make the search too slow).

Each model is fitted once, on everything before the test part (the training and
validation rows), on the data's own scale. Forecasts from a later origin keep those
parameters and filter the data up to the origin (statsmodels' ``smooth`` / ``apply``),
so no test value enters a forecast made before it.
"""

from __future__ import annotations

import itertools
import warnings

import numpy as np

from rnnkit.choices import BASELINE_NAMES as NAMES


def naive(y: np.ndarray, origins: np.ndarray, horizon: int) -> np.ndarray:
    """``[N, horizon]``: the value at ``o - 1`` for every step."""
    return np.repeat(np.asarray(y, dtype=np.float64)[np.asarray(origins) - 1][:, None],
                     horizon, axis=1)


def seasonal_naive(y: np.ndarray, origins: np.ndarray, horizon: int, season: int) -> np.ndarray:
    """``[N, horizon]``: step ``o + j`` gets the last observed value of its season,
    ``y[o + j - season * (j // season + 1)]``."""
    j = np.arange(horizon)
    rows = np.asarray(origins)[:, None] + j[None, :] - season * (j[None, :] // season + 1)
    return np.asarray(y, dtype=np.float64)[rows]


def ets(y: np.ndarray, fit_end: int, origins: np.ndarray, horizon: int,
        season: int) -> tuple[np.ndarray, dict]:
    """Forecasts ``[N, horizon]`` and a description of the chosen model."""
    from statsmodels.tsa.exponential_smoothing.ets import ETSModel

    y = np.asarray(y, dtype=np.float64)
    train = y[:fit_end]
    seasonals = [None]
    if 1 < season <= len(train) // 2:
        seasonals += ["add"] + (["mul"] if (train > 0).all() else [])
    best = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for (trend, damped), seasonal in itertools.product(
                [(None, False), ("add", False), ("add", True)], seasonals):
            spec = {"error": "add", "trend": trend, "damped_trend": damped, "seasonal": seasonal,
                    "seasonal_periods": season if seasonal else None}
            try:
                fitted = ETSModel(train, **spec).fit(disp=False)
            except (ValueError, np.linalg.LinAlgError):
                continue
            if np.isfinite(fitted.aic) and (best is None or fitted.aic < best[0]):
                best = (fitted.aic, spec, fitted.params)
        if best is None:
            raise ValueError("ets: no exponential-smoothing model could be fitted")
        _, spec, params = best
        full = ETSModel(y, **spec).smooth(params)
        out = np.stack([np.asarray(full.predict(start=o, end=o + horizon - 1, dynamic=0))
                        for o in origins])
    described = {k: v for k, v in spec.items() if k != "seasonal_periods"}
    return out, {"model": "ETS", **described, "aic": round(float(best[0]), 2)}


def arima(y: np.ndarray, fit_end: int, origins: np.ndarray, horizon: int,
          season: int = 1) -> tuple[np.ndarray, dict]:
    """Forecasts ``[N, horizon]`` and the chosen orders; ``season > 1`` searches a
    seasonal part too."""
    import pmdarima

    y = np.asarray(y, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = pmdarima.auto_arima(y[:fit_end], seasonal=season > 1, m=max(season, 1),
                                    suppress_warnings=True, error_action="ignore")
        full = model.arima_res_.apply(y)
        out = np.stack([np.asarray(full.get_prediction(start=o, end=o + horizon - 1,
                                                       dynamic=True).predicted_mean)
                        for o in origins])
    return out, {"model": "ARIMA", "order": list(model.order),
                 "seasonal_order": list(model.seasonal_order),
                 "intercept": bool(model.with_intercept), "aic": round(float(model.aic()), 2)}


class BaselineFailed(RuntimeError):
    """A baseline that raised or ran past its time limit (the run goes on without it)."""


def _isolated(name: str, args: tuple, timeout: float | None):
    """Baseline ``name`` fitted in a child Python process, killed after ``timeout``
    seconds: statsmodels' and pmdarima's searches can neither be interrupted in a thread
    nor always be trusted to end, and a crash in them must not take the training run down.
    The child is ``python -m rnnkit.forecasting.baselines``, given its arguments on stdin
    (a pickle this process writes and the child reads: no file or foreign data is
    unpickled), so no user script is imported again, as multiprocessing's spawn would."""
    import os
    import pickle
    import subprocess
    import sys

    # one thread each: the baselines fit side by side, one process per core
    env = {**os.environ, **{k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                                  "MKL_NUM_THREADS")}}
    try:
        done = subprocess.run([sys.executable, "-m", "rnnkit.forecasting.baselines"],
                              input=pickle.dumps((name, args)), capture_output=True,
                              timeout=timeout, check=False, env=env)
    except subprocess.TimeoutExpired:
        raise BaselineFailed(f"stopped after {timeout:g} s (--baseline-timeout)") from None
    if done.returncode != 0 or not done.stdout:
        lines = done.stderr.decode(errors="replace").strip().splitlines()
        raise BaselineFailed(lines[-1][:300] if lines else f"exit status {done.returncode}")
    status, value = pickle.loads(done.stdout)
    if status != "ok":
        raise BaselineFailed(value)
    return value


def _fit_in_child() -> None:
    """The child side of :func:`_isolated`: read (name, args), write (status, result)."""
    import pickle
    import sys

    name, args = pickle.load(sys.stdin.buffer)
    fn = {"ets": ets, "arima": arima, "seasonal_arima": arima}[name]
    try:
        result = ("ok", fn(*args))
    except Exception as exc:  # noqa: BLE001 - the fitting library's own error, reported
        text = " ".join(str(exc).split()) or type(exc).__name__
        result = ("error", f"{type(exc).__name__}: {text[:300]}")
    sys.stdout.buffer.write(pickle.dumps(result))


def applicable(name: str, season: int) -> bool:
    """Whether baseline ``name`` applies to a series with this season."""
    if name == "seasonal_naive":
        return season > 1
    if name == "seasonal_arima":
        return 1 < season <= 24
    return True


def run_baselines(y: np.ndarray, fit_end: int, origins: np.ndarray, horizon: int,
                  season: int, names: tuple[str, ...] = NAMES, timeout: float | None = 180.0,
                  report=None) -> tuple[dict[str, tuple[np.ndarray, dict]], dict[str, str]]:
    """Every baseline in ``names`` that applies to the series.

    Returns ``({name: (forecasts, info)}, {name: why it failed})``. The fitted models
    (ets, arima, seasonal_arima) run in a child process each, stopped after ``timeout``
    seconds (None: no limit); one that fails or times out is reported and left out, and
    the others still run. ``report(message)`` hears of each fit as it starts and ends.
    """
    import time
    from concurrent.futures import ThreadPoolExecutor

    say = report or (lambda message: None)
    out: dict[str, tuple[np.ndarray, dict]] = {}
    failed: dict[str, str] = {}
    fitted = {}
    for name in names:
        if not applicable(name, season):
            continue
        if name == "naive":
            out[name] = naive(y, origins, horizon), {"model": "last value"}
        elif name == "seasonal_naive":
            out[name] = (seasonal_naive(y, origins, horizon, season),
                         {"model": f"value one season ({season} steps) earlier"})
        else:
            fitted[name] = {"ets": (y, fit_end, origins, horizon, season),
                            "arima": (y, fit_end, origins, horizon),
                            "seasonal_arima": (y, fit_end, origins, horizon, season)}[name]
    if fitted:
        limit = f" (at most {timeout:g} s each)" if timeout else ""
        say(f"baselines: fitting {', '.join(fitted)} side by side{limit}")

        def fit(name: str):
            start = time.perf_counter()
            try:
                return name, _isolated(name, fitted[name], timeout), None, start
            except BaselineFailed as exc:
                return name, None, str(exc), start

        with ThreadPoolExecutor(max_workers=len(fitted)) as pool:
            results = list(pool.map(fit, fitted))
        for name, value, error, start in results:
            if error is None:
                out[name] = value
            else:
                failed[name] = error
                say(f"baseline {name}: left out, {error}")
    order = {name: i for i, name in enumerate(names)}
    return dict(sorted(out.items(), key=lambda item: order[item[0]])), failed

if __name__ == "__main__":
    _fit_in_child()
