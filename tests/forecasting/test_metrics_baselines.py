"""Metrics by hand, and the baselines against statsmodels run from each origin directly."""

import warnings

import numpy as np
import pytest

from rnnkit.forecasting import baselines, metrics


def test_metrics_by_hand():
    a = np.array([[100.0, 200.0], [50.0, 80.0]])
    f = np.array([[110.0, 190.0], [50.0, 100.0]])
    assert metrics.mae(a, f) == pytest.approx(10.0)
    assert metrics.rmse(a, f) == pytest.approx(np.sqrt((100 + 100 + 0 + 400) / 4))
    assert metrics.mape(a, f) == pytest.approx(100 * (0.1 + 0.05 + 0 + 0.25) / 4)
    assert metrics.smape(a, f) == pytest.approx(
        200 * (10 / 210 + 10 / 390 + 0 + 20 / 180) / 4)
    train = np.array([1.0, 3, 2, 6, 4])  # seasonal naive with m=2: |2-1|, |6-3|, |4-2| -> 2
    assert metrics.mase(a, f, train, season=2) == pytest.approx(10.0 / 2)
    assert metrics.mase(a, f, train, season=10) == pytest.approx(10.0 / 2.25)  # m falls to 1
    assert np.isnan(metrics.mape(np.array([0.0, 1.0]), np.array([1.0, 1.0])))


def test_directional_accuracy():
    last = np.array([10.0, 10.0, 10.0])
    actual = np.array([[11.0], [9.0], [10.0]])  # up, down, flat (left out)
    assert metrics.directional_accuracy(actual, np.array([[12.0], [11.0], [3.0]]), last) == 0.5
    assert metrics.directional_accuracy(actual, np.array([[10.0], [10.0], [10.0]]), last) == 0.0
    assert metrics.directional_accuracy(np.array([[10.0]]), np.array([[11.0]]), [10.0]) is None


def test_naive_and_seasonal_naive():
    y = np.arange(40, dtype=float)
    np.testing.assert_array_equal(baselines.naive(y, np.array([10, 20]), 3),
                                  [[9, 9, 9], [19, 19, 19]])
    # season 4 from origin 20: steps 20..25 take 16, 17, 18, 19, 16, 17
    np.testing.assert_array_equal(baselines.seasonal_naive(y, np.array([20]), 6, 4),
                                  [[16, 17, 18, 19, 16, 17]])


@pytest.fixture(scope="module")
def passengers():
    from pmdarima.datasets import load_airpassengers

    return load_airpassengers()


def test_ets_forecasts_from_each_origin_with_the_fitted_parameters(passengers):
    from statsmodels.tsa.exponential_smoothing.ets import ETSModel

    origins = np.array([100, 110, 130])
    out, info = baselines.ets(passengers, 96, origins, 6, season=12)
    spec = {k: info[k] for k in ("error", "trend", "damped_trend", "seasonal")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fitted = ETSModel(passengers[:96], seasonal_periods=12, **spec).fit(disp=False)
        for row, o in enumerate(origins):
            direct = ETSModel(passengers[:o], seasonal_periods=12, **spec).smooth(fitted.params)
            np.testing.assert_allclose(out[row], direct.forecast(6), rtol=1e-8)
    assert info["aic"] == pytest.approx(fitted.aic, abs=0.01)


def test_arima_forecasts_from_each_origin_without_later_data(passengers, monkeypatch):
    import pmdarima

    # every call below fits the same first 108 points: search their orders once (the
    # search is the slow part, and what is tested is the forecast from each origin)
    searched, search = {}, pmdarima.auto_arima

    def search_once(y, **kwargs):
        key = (np.asarray(y).tobytes(), tuple(sorted(kwargs.items())))
        if key not in searched:
            searched[key] = search(y, **kwargs)
        return searched[key]

    monkeypatch.setattr(pmdarima, "auto_arima", search_once)
    origins = np.array([110, 125])
    out, info = baselines.arima(passengers, 108, origins, 5)
    assert info["seasonal_order"] == [0, 0, 0, 0]
    changed = passengers.copy()
    changed[126:] *= 3  # after the last forecast's origin: no effect
    again, _ = baselines.arima(changed, 108, origins, 5)
    np.testing.assert_allclose(out, again)
    changed[111] *= 3  # inside the second window's history: that forecast moves
    moved, _ = baselines.arima(changed, 108, origins, 5)
    np.testing.assert_allclose(moved[0], out[0])
    assert not np.allclose(moved[1], out[1])
    assert len(searched) == 1


def test_a_failing_or_slow_baseline_is_left_out_and_the_others_still_run():
    """Each fitted baseline runs in its own child process: a library error or a search
    past the time limit is reported by name, and the rest of the table is unaffected."""
    y = np.arange(1.0, 11.0)
    origins = np.arange(5, 9)
    out, failed = baselines.run_baselines(y, 5, origins, 2, 4, ("naive", "ets", "arima",
                                                               "seasonal_arima"), timeout=120)
    assert set(out) == {"naive", "ets", "arima"}
    assert list(failed) == ["seasonal_arima"] and "ValueError" in failed["seasonal_arima"]
    np.testing.assert_array_equal(out["naive"][0], baselines.naive(y, origins, 2))
    heard = []
    out, failed = baselines.run_baselines(y, 5, origins, 2, 4, ("naive", "ets"), timeout=0.05,
                                          report=heard.append)
    assert list(out) == ["naive"]
    assert failed == {"ets": "stopped after 0.05 s (--baseline-timeout)"}
    assert heard[-1] == "baseline ets: left out, stopped after 0.05 s (--baseline-timeout)"
