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


def _quiet():
    manager = warnings.catch_warnings()
    manager.__enter__()
    warnings.simplefilter("ignore")
    return manager


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


def run_baselines(y: np.ndarray, fit_end: int, origins: np.ndarray, horizon: int,
                  season: int, names: tuple[str, ...] = NAMES
                  ) -> dict[str, tuple[np.ndarray, dict]]:
    """Every baseline in ``names`` that applies to the series: ``{name: (forecasts, info)}``."""
    out: dict[str, tuple[np.ndarray, dict]] = {}
    for name in names:
        if name == "naive":
            out[name] = naive(y, origins, horizon), {"model": "last value"}
        elif name == "seasonal_naive" and season > 1:
            out[name] = (seasonal_naive(y, origins, horizon, season),
                         {"model": f"value one season ({season} steps) earlier"})
        elif name == "ets":
            out[name] = ets(y, fit_end, origins, horizon, season)
        elif name == "arima":
            out[name] = arima(y, fit_end, origins, horizon)
        elif name == "seasonal_arima" and 1 < season <= 24:
            out[name] = arima(y, fit_end, origins, horizon, season)
    return out
