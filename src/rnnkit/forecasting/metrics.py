"""Forecast accuracy on the data's own scale.

Every function takes ``actual`` and ``forecast`` of the same shape (``[windows, horizon]``
or flat) and averages over every forecast step.
"""

from __future__ import annotations

import numpy as np


def mae(actual: np.ndarray, forecast: np.ndarray) -> float:
    return float(np.mean(np.abs(np.asarray(actual) - forecast)))


def rmse(actual: np.ndarray, forecast: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(actual) - forecast) ** 2)))


def mape(actual: np.ndarray, forecast: np.ndarray) -> float:
    """Mean absolute percentage error, in percent (undefined where ``actual`` is 0: NaN)."""
    actual = np.asarray(actual, dtype=np.float64)
    if (actual == 0).any():
        return float("nan")
    return float(100 * np.mean(np.abs((actual - forecast) / actual)))


def smape(actual: np.ndarray, forecast: np.ndarray) -> float:
    """Symmetric MAPE in percent: ``200 |a - f| / (|a| + |f|)``, 0 where both are 0."""
    actual = np.asarray(actual, dtype=np.float64)
    denominator = np.abs(actual) + np.abs(forecast)
    ratio = np.divide(np.abs(actual - forecast), denominator,
                      out=np.zeros_like(denominator), where=denominator > 0)
    return float(200 * np.mean(ratio))


def mase(actual: np.ndarray, forecast: np.ndarray, train: np.ndarray, season: int = 1) -> float:
    """MAE scaled by the in-sample MAE of the seasonal naive forecast on ``train``
    (Hyndman & Koehler 2006); ``season`` falls back to 1 when ``train`` is too short."""
    train = np.asarray(train, dtype=np.float64)
    m = season if len(train) > season else 1
    scale = np.mean(np.abs(train[m:] - train[:-m]))
    return float(mae(actual, forecast) / scale) if scale > 0 else float("nan")


def directional_accuracy(actual: np.ndarray, forecast: np.ndarray,
                         last: np.ndarray) -> float | None:
    """Share of steps whose forecast moves from the last observed value (``last [N]``, at
    each origin) in the direction the data moved. Steps where the data did not move are
    left out; a forecast that does not move counts as wrong. None if nothing moved."""
    actual = np.asarray(actual, dtype=np.float64)
    last = np.asarray(last, dtype=np.float64).reshape(-1, *([1] * (actual.ndim - 1)))
    true_move = np.sign(actual - last)
    moved = true_move != 0
    if not moved.any():
        return None
    return float(np.mean((np.sign(forecast - last) == true_move)[moved]))


def all_metrics(actual: np.ndarray, forecast: np.ndarray, train: np.ndarray, season: int,
                last: np.ndarray | None = None) -> dict[str, float | None]:
    """MAE, RMSE, MAPE, sMAPE, MASE (and directional accuracy when ``last`` is given)."""
    out: dict[str, float | None] = {
        "mae": mae(actual, forecast), "rmse": rmse(actual, forecast),
        "mape": mape(actual, forecast), "smape": smape(actual, forecast),
        "mase": mase(actual, forecast, train, season)}
    if last is not None:
        out["directional_accuracy"] = directional_accuracy(actual, forecast, last)
    return out
