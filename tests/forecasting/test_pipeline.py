"""Windows, scaling, differencing and rollout against closed-form answers; no leakage."""

import numpy as np
import pytest
import torch

from rnnkit.forecasting.pipeline import calendar_features, fit_pipeline, forecast, windows
from rnnkit.models.forecaster import ForecasterConfig, SequenceForecaster


def test_windows_round_trip_a_known_series():
    t = np.arange(30, dtype=float)
    z = np.stack([t, 100 + t], axis=1)
    origins = np.array([5, 6, 20])
    x, y = windows(z, origins, input_length=4, output_length=3)
    assert x.shape == (3, 4, 2) and y.shape == (3, 3)
    for row, o in enumerate(origins):
        np.testing.assert_array_equal(x[row, :, 0], t[o - 4:o])
        np.testing.assert_array_equal(x[row, :, 1], 100 + t[o - 4:o])
        np.testing.assert_array_equal(y[row], t[o:o + 3])
    # every training window glued back gives the training part of the series
    p = fit_pipeline(z, 4, 3, val_size=5, test_size=5)
    xs, ys = windows(p.encode(z), p.origins("train"), 4, 3)
    glued = np.concatenate([xs[0, :, 0], ys[:, 0], ys[-1, 1:]])
    np.testing.assert_allclose(glued * p.std[0] + p.mean[0], t[:p.val_start])


def test_splits_hold_their_targets_only():
    z = np.random.default_rng(0).normal(size=(50, 1)) + 5
    p = fit_pipeline(z, 6, 2, val_size=8, test_size=10)
    assert (p.val_start, p.test_start) == (32, 40)
    assert p.origins("train").max() + 2 <= 32
    assert p.origins("validation").min() >= 32 and p.origins("validation").max() + 2 <= 40
    assert p.origins("test").min() >= 40 and p.origins("test").max() + 2 <= 50


@pytest.mark.parametrize("transform,difference", [("none", 0), ("log", 0), ("log", 1),
                                                  ("none", 12), ("log", 12)])
def test_decode_inverts_encode(transform, difference):
    rng = np.random.default_rng(1)
    y = np.exp(np.cumsum(rng.normal(0.01, 0.1, 120)))[:, None] * 50
    p = fit_pipeline(y, 24, 6, val_size=12, test_size=12, transform=transform,
                     difference=difference)
    z = p.encode(y)
    for o in (40, 100, 108):
        back = p.decode(z[o:o + 12, 0], y[:o, 0])
        np.testing.assert_allclose(back, y[o:o + 12, 0], rtol=1e-10)


def test_log_returns_are_what_they_say():
    y = np.array([10.0, 11, 12.1, 12.1, 13])[:, None]
    p = fit_pipeline(y, 1, 1, val_size=1, test_size=1, transform="log", difference=1)
    raw = p.encode(y, scaled=False)[:, 0]
    assert np.isnan(raw[0])
    np.testing.assert_allclose(raw[1:], np.log(y[1:, 0] / y[:-1, 0]))


def test_scaler_sees_only_the_training_rows():
    rng = np.random.default_rng(2)
    y = rng.normal(size=(100, 2))
    p = fit_pipeline(y, 10, 5, val_size=20, test_size=20)
    changed = y.copy()
    changed[p.val_start:] = 1e6  # validation and test values do not matter
    q = fit_pipeline(changed, 10, 5, val_size=20, test_size=20)
    assert p.mean == q.mean and p.std == q.std
    np.testing.assert_allclose(p.mean, y[:60].mean(axis=0))


def test_shuffling_the_future_does_not_change_past_forecasts():
    torch.manual_seed(0)
    rng = np.random.default_rng(3)
    y = np.cumsum(rng.normal(size=(200, 2)), axis=0) + 50
    p = fit_pipeline(y, 12, 4, val_size=20, test_size=40, transform="log", difference=1)
    model = SequenceForecaster(ForecasterConfig(input_size=2, output_length=4, hidden=8,
                                                probabilistic=True))
    model.eval()
    origins = np.arange(p.test_start, 180)
    before, _ = forecast(model, p, y, origins, 4, samples=20, seed=5)
    for o in (p.test_start, 150, 179):
        shuffled = y.copy()
        shuffled[o:] = rng.permutation(shuffled[o:])
        after, _ = forecast(model, p, shuffled, origins[origins <= o], 4,
                                      samples=20, seed=5)
        np.testing.assert_allclose(after, before[origins <= o])


def test_rollout_feeds_forecasts_back():
    """A 'model' that continues a straight line, 2 steps at a time, rolled out 7 steps
    with log + first differences: a constant growth rate, compounded."""
    y = 100 * 1.02 ** np.arange(60)[:, None]
    p = fit_pipeline(y, 3, 2, val_size=4, test_size=10, transform="log", difference=1)

    def last_value_model(x):  # differenced series is constant: repeat the last value
        return x[:, -1:, 0].repeat(1, 2), None

    point, _ = forecast(last_value_model, p, y, np.array([50]), 7)
    np.testing.assert_allclose(point[0], 100 * 1.02 ** np.arange(50, 57), rtol=1e-6)


def test_calendar_columns_are_the_season_position_by_formula():
    y = 50 + np.random.default_rng(4).normal(size=(100, 1))
    p = fit_pipeline(y, 12, 3, val_size=12, test_size=12, calendar=12)
    plain = fit_pipeline(y, 12, 3, val_size=12, test_size=12)
    z = p.encode(y)
    assert z.shape == (100, 3) and len(p.mean) == len(p.std) == 1  # not standardised
    np.testing.assert_array_equal(z[:, :1], plain.encode(y))
    t = np.arange(100)
    np.testing.assert_allclose(z[:, 1], np.sin(2 * np.pi * t / 12), atol=1e-12)
    np.testing.assert_allclose(z[:, 2], np.cos(2 * np.pi * t / 12), atol=1e-12)
    np.testing.assert_allclose(z[5, 1:], z[5 + 12 * 7, 1:], atol=1e-12)  # one per season
    assert p.encode(y, scaled=False).shape == (100, 1)
    with pytest.raises(ValueError, match="--calendar"):
        fit_pipeline(y, 12, 3, val_size=12, test_size=12, calendar=1)


@pytest.mark.parametrize("samples", [0, 3])
def test_rollout_feeds_the_calendar_of_the_rows_it_forecasts(samples):
    """Each rollout step's window holds, in its calendar columns, the calendar of the
    rows it stands for: read from the series up to the origin, computed beyond it."""
    y = 10 + np.random.default_rng(5).normal(size=(90, 1))
    p = fit_pipeline(y, 6, 2, val_size=10, test_size=20, calendar=7)
    origins = np.array([70, 75, 90])  # 90: past the end of the data
    seen = []

    def model(x):
        seen.append(x.clone())
        return x[:, -2:, 0] * 0 + 0.5, x[:, -2:, 0] * 0 + 1

    forecast(model, p, y, origins, 7, samples=samples)
    calls = seen if not samples else seen[4:]  # the point forecast's 4 steps, then paths
    assert len(calls) == 4
    at = np.tile(origins, max(samples, 1))
    for step, x in enumerate(calls):
        rows = at[:, None] + 2 * step + np.arange(-6, 0)[None, :]
        np.testing.assert_allclose(x[:, :, 1:].numpy(), calendar_features(rows, 7), atol=1e-6)
        if step and not samples:  # the fed rows carry the forecasts
            assert (x[:, -2:, 0] == 0.5).all()


def test_rollout_with_covariates_is_refused():
    y = np.random.default_rng(0).normal(size=(80, 2))
    p = fit_pipeline(y, 5, 2, val_size=10, test_size=10)
    with pytest.raises(ValueError, match="future covariates"):
        forecast(lambda x: (x[:, -2:, 0], None), p, y, np.array([70]), 5)


def test_too_short_and_bad_values_are_refused():
    y = np.arange(1, 31, dtype=float)[:, None]
    with pytest.raises(ValueError, match="30 rows.*fewer than one window"):
        fit_pipeline(y, 20, 5, val_size=5, test_size=5)
    with pytest.raises(ValueError, match="--transform log.*<= 0"):
        fit_pipeline(y - 10, 5, 1, val_size=2, test_size=2, transform="log")
    with pytest.raises(ValueError, match="--val-size"):
        fit_pipeline(y, 5, 4, val_size=2, test_size=4)
