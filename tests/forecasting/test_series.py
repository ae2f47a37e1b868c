"""Loading series: built-ins, CSV files, and clear errors for bad ones."""

import numpy as np
import pandas as pd
import pytest

from rnnkit.data.series import load_series


def test_builtins_have_their_documented_shape():
    air = load_series("airpassengers")
    assert air.values.shape == (144, 1) and air.season == 12 and air.freq == "MS"
    assert air.index[0] == pd.Timestamp("1949-01-01") and air.values[0, 0] == 112
    msft = load_series("msft", covariates=["Open", "Volume"])
    assert msft.values.shape == (7983, 3) and msft.columns == ["Close", "Open", "Volume"]
    assert msft.season == 1 and msft.index[-1] == pd.Timestamp("2017-11-10")
    co2 = load_series("co2")  # 59 missing weeks, interpolated by default for this source
    assert len(co2) == 2284 and np.isfinite(co2.values).all() and "59 rows" in co2.notes[0]
    with pytest.raises(ValueError, match="59 rows with missing values.*--missing interpolate"):
        load_series("co2", missing="error")


def _write(tmp_path, text, name="data.csv"):
    path = tmp_path / name
    path.write_text(text)
    return f"csv:{path}"


def test_csv_with_dates_covariates_and_an_inferred_step(tmp_path):
    rows = "\n".join(f"2020-{m:02d}-01,{10 + m},{m * 2}" for m in range(1, 13))
    source = _write(tmp_path, "date,sales,price\n" + rows + "\n")
    s = load_series(source, "sales", ["price"], time_col="date")
    assert s.freq == "MS" and s.season == 12 and s.columns == ["sales", "price"]
    np.testing.assert_array_equal(s.values[:2], [[11, 2], [12, 4]])
    assert s.future_index(1)[0] == pd.Timestamp("2021-01-01")


def test_csv_errors_name_what_is_wrong(tmp_path):
    source = _write(tmp_path, "date,sales\n2020-01-01,1\n2020-02-01,2\n")
    with pytest.raises(ValueError, match="--target: no column 'revenue'.*date, sales"):
        load_series(source, "revenue", time_col="date")
    with pytest.raises(ValueError, match="--target: name the column"):
        load_series(source)
    with pytest.raises(ValueError, match="--covariates: no column 'x'"):
        load_series(source, "sales", ["x"], time_col="date")
    bad = _write(tmp_path, "t,y\n1,3.5\n2,n/a?\n3,4\n", "bad.csv")
    with pytest.raises(ValueError, match=r"column 'y' holds a non-numeric value 'n/a\?' \(data row 2\)"):
        load_series(bad, "y")
    with pytest.raises(ValueError, match="--time-col: no column 'when'"):
        load_series(source, "sales", time_col="when")
    with pytest.raises(ValueError, match="no such file"):
        load_series(f"csv:{tmp_path / 'absent.csv'}", "y")
    dup = _write(tmp_path, "d,y\n2020-01-01,1\n2020-01-01,2\n2020-01-02,3\n", "dup.csv")
    with pytest.raises(ValueError, match="appears more than once"):
        load_series(dup, "y", time_col="d")


def test_too_few_rows_for_the_windows(tmp_path):
    from rnnkit.tasks.forecast import TASK
    from rnnkit.training.options import COMMON_OPTIONS, resolve

    source = _write(tmp_path, "y\n" + "\n".join(str(v) for v in range(1, 21)) + "\n")
    config = resolve([*TASK.options, *COMMON_OPTIONS], TASK.defaults,
                     {"data": source, "target": "y"}, {})
    config = TASK.prepare(config)
    with pytest.raises(ValueError, match="the series has 20 rows.*fewer than one window"):
        TASK.build(config)


def test_missing_values_and_gaps(tmp_path):
    text = "day,y\n2021-03-01,1\n2021-03-02,\n2021-03-03,3\n2021-03-05,5\n2021-03-06,6\n"
    source = _write(tmp_path, text)
    with pytest.raises(ValueError, match="1 rows with missing values.*1 missing timestamps"):
        load_series(source, "y", time_col="day")
    filled = load_series(source, "y", time_col="day", missing="interpolate")
    np.testing.assert_allclose(filled.target, [1, 2, 3, 4, 5, 6])
    assert filled.freq == "D"
    dropped = load_series(source, "y", time_col="day", missing="drop")
    np.testing.assert_allclose(dropped.target, [1, 3, 5, 6])
    assert dropped.freq is None and "dropped" in dropped.notes[0]


def test_trading_days_are_business_days_with_holidays_as_gaps(tmp_path):
    days = pd.bdate_range("2021-01-04", periods=30).delete([7])  # one holiday
    text = "d,close\n" + "\n".join(f"{d.date()},{100 + i}" for i, d in enumerate(days))
    source = _write(tmp_path, text + "\n")
    with pytest.raises(ValueError, match="1 missing timestamps on the B grid.*--missing drop"):
        load_series(source, "close", time_col="d")
    assert len(load_series(source, "close", time_col="d", missing="drop")) == 29
