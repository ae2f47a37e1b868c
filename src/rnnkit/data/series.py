"""Time series for forecasting: the built-in sources, user CSV files, and the checks on them.

Sources (``--data``):

- ``airpassengers``: monthly airline passengers 1949-1960, 144 values (pmdarima).
- ``msft``: Microsoft daily open/high/low/close/volume, 1986-03-13 to 2017-11-10, 7,983
  trading days (pmdarima). Rows are trading days: weekends and market holidays are not
  gaps, one row is one step.
- ``sunspots``: monthly mean sunspot numbers 1749-1983, 2,820 values (pmdarima).
- ``taylor``: half-hourly electricity demand in England and Wales, 5 June to 27 August
  2000, 4,032 values (pmdarima).
- ``co2``: weekly atmospheric CO2 at Mauna Loa 1958-2001, 2,284 weeks of which 59 are
  missing (statsmodels).
- ``csv:PATH``: your file, with ``--time-col`` (optional), ``--target`` and
  ``--covariates``.

Missing values and irregular timestamps are found and reported. ``missing="error"`` (the
default for CSV files) refuses them, naming the first ones. ``"interpolate"`` puts the
rows on the regular time grid (the most common spacing; business days when every
timestamp is a weekday one day apart) and fills the gaps linearly in time.
``"drop"`` removes rows with a missing value and treats the remaining rows as
consecutive steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rnnkit.choices import MISSING_CHOICES, install_hint

BUILTIN = ("airpassengers", "msft", "sunspots", "taylor", "co2")
_INSTALL = install_hint("forecast")


@dataclass
class Series:
    """A multivariate series: ``values[:, 0]`` is the target, the other columns covariates.

    Attributes:
        values: float64 ``[T, 1 + covariates]``.
        index: the timestamps (a pandas ``DatetimeIndex``), or None for plain steps.
        columns: the column names, target first.
        freq: pandas frequency alias of one step (``"MS"``, ``"B"``, ``"30min"``), or None.
        season: steps in one seasonal cycle (1: none), for seasonal baselines and MASE.
        source: the ``--data`` value it came from.
        notes: what was done to the data (interpolated or dropped rows), for the report.
    """

    values: np.ndarray
    index: object | None
    columns: list[str]
    freq: str | None
    season: int
    source: str
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.values)

    @property
    def target(self) -> np.ndarray:
        return self.values[:, 0]

    def future_index(self, steps: int, start: int | None = None):
        """Timestamps of ``steps`` steps after position ``start`` (default: the end), or None."""
        import pandas as pd

        start = len(self) if start is None else start
        if self.index is None or self.freq is None:
            return None
        if start < len(self):
            known = self.index[start:start + steps]
            if len(known) == steps:
                return known
        last = self.index[start - 1]
        offset = pd.tseries.frequencies.to_offset(self.freq)
        return pd.date_range(last + offset, periods=steps, freq=offset)


def _require(module: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ValueError(f"--data: this source needs the {module} package: {_INSTALL}") from None


def _season_for(freq: str | None) -> int:
    """Steps per seasonal cycle for a pandas frequency: a year of months, quarters or
    weeks, a week of days or business days, a day of hours or minutes; 1 otherwise."""
    if not freq:
        return 1
    import pandas as pd

    offset = pd.tseries.frequencies.to_offset(freq)
    base = offset.rule_code.split("-")[0]
    per_year = {"MS": 12, "ME": 12, "M": 12, "QS": 4, "QE": 4, "Q": 4, "W": 52}
    if base in per_year and offset.n == 1:
        return per_year[base]
    if base == "B" and offset.n == 1:
        return 5
    if base == "D" and offset.n == 1:
        return 7
    minutes = {"h": 60, "min": 1}.get(base)
    if minutes is not None and (24 * 60) % (minutes * offset.n) == 0:
        return 24 * 60 // (minutes * offset.n)
    return 1


def load_series(source: str, target: str | None = None, covariates: list[str] | None = None,
                time_col: str | None = None, missing: str | None = None,
                season: int | None = None) -> Series:
    """Load ``source`` (see the module docstring) as a checked :class:`Series`.

    Args:
        source: a built-in name or ``csv:PATH``.
        target: the column to forecast (built-ins have their own default).
        covariates: further input columns, known in the past only.
        time_col: the timestamp column of a CSV file (None: rows are plain steps).
        missing: ``error``, ``interpolate`` or ``drop`` (None: the source's default,
            ``error`` for files).
        season: steps per seasonal cycle (None: from the frequency).

    Raises:
        ValueError: an unknown source, a missing column, non-numeric values, missing
            values or gaps under ``missing="error"``, or a missing package.
    """
    _require("pandas")
    if missing is not None and missing not in MISSING_CHOICES:
        raise ValueError(f"--missing: expected one of {', '.join(MISSING_CHOICES)}, got {missing!r}")
    covariates = list(covariates or [])
    if source.startswith("csv:"):
        frame, freq_hint = _read_csv(source[4:], time_col), None
        default_target, default_missing = None, "error"
    elif source in BUILTIN:
        frame, time_col, freq_hint, default_target, default_missing = _builtin(source)
    else:
        raise ValueError(f"--data: expected one of {', '.join(BUILTIN)} or csv:PATH, got {source!r}")
    target = target or default_target
    if target is None:
        raise ValueError(f"--target: name the column to forecast; {source} has columns "
                         f"{', '.join(map(str, frame.columns))}")
    wanted = [target, *covariates]
    absent = [c for c in wanted if c not in frame.columns]
    if absent:
        role = "--target" if target in absent else "--covariates"
        listed = frame.attrs.get("file_columns", list(map(str, frame.columns)))
        raise ValueError(f"{role}: no column {absent[0]!r} in {source}; its columns are "
                         f"{', '.join(listed)}")
    if len(set(wanted)) != len(wanted):
        raise ValueError(f"--covariates: repeats a column or the target ({', '.join(wanted)})")
    frame = frame[wanted]
    _check_numeric(frame, source)
    series = _regularise(frame, source, freq_hint, missing or default_missing, time_col)
    if season is None:  # daily prices have no weekly cycle worth a seasonal baseline
        season = 1 if source == "msft" else _season_for(series.freq)
    series.season = season
    if season < 1:
        raise ValueError(f"--season: expected a positive number of steps, got {season}")
    return series


def _builtin(source: str):
    """(frame indexed by time, time column, frequency, default target, default missing)."""
    import pandas as pd

    if source == "co2":
        sm = _require("statsmodels.api")
        frame = sm.datasets.co2.load_pandas().data
        return frame, "index", "W-SAT", "co2", "interpolate"
    datasets = _require("pmdarima.datasets")
    if source == "airpassengers":
        values = datasets.load_airpassengers()
        index = pd.date_range("1949-01-01", periods=len(values), freq="MS")
        return pd.DataFrame({"passengers": values}, index=index), "index", "MS", "passengers", "error"
    if source == "sunspots":
        values = np.asarray(datasets.load_sunspots(), dtype=float)
        index = pd.date_range("1749-01-01", periods=len(values), freq="MS")
        return pd.DataFrame({"sunspots": values}, index=index), "index", "MS", "sunspots", "error"
    if source == "taylor":
        values = datasets.load_taylor()
        index = pd.date_range("2000-06-05", periods=len(values), freq="30min")
        return pd.DataFrame({"demand": values}, index=index), "index", "30min", "demand", "error"
    frame = datasets.load_msft()  # trading days: one row per step
    frame.index = pd.to_datetime(frame.pop("Date"))
    frame = frame.drop(columns=["OpenInt"]).astype(float)
    return frame, "trading-days", None, "Close", "error"


def _read_csv(path: str, time_col: str | None):
    import pandas as pd

    p = Path(path)
    if not p.is_file():
        raise ValueError(f"--data: no such file {path}")
    import csv

    try:
        with open(p, newline="", encoding="utf-8-sig") as f:
            head = f.readline()
        delimiter = ","
        if any(d in head for d in ",\t;|"):
            delimiter = csv.Sniffer().sniff(head, delimiters=",\t;|").delimiter
        frame = pd.read_csv(p, sep=delimiter, encoding="utf-8-sig")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ValueError(f"--data: cannot read {path} as CSV ({exc})") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    frame.attrs["file_columns"] = list(frame.columns)
    if time_col is not None:
        if time_col not in frame.columns:
            raise ValueError(f"--time-col: no column {time_col!r} in {path}; its columns are "
                             f"{', '.join(frame.columns)}")
        try:
            stamps = pd.to_datetime(frame.pop(time_col), format="mixed")
        except (ValueError, TypeError) as exc:
            raise ValueError(f"--time-col: {time_col!r} holds values that are not dates "
                             f"({exc})") from None
        frame.index = pd.DatetimeIndex(stamps)
    return frame


def _check_numeric(frame, source: str) -> None:
    import pandas as pd

    for column in frame.columns:
        numeric = pd.to_numeric(frame[column], errors="coerce")
        bad = frame[column].notna() & numeric.isna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise ValueError(f"{source}: column {column!r} holds a non-numeric value "
                             f"{frame[column].iloc[row]!r} (data row {row + 1})")
        frame[column] = numeric.astype(float)


def _regularise(frame, source: str, freq: str | None, missing: str, time_col) -> Series:
    """Sort, check the time grid and missing values, and apply ``missing``."""
    import pandas as pd

    notes: list[str] = []
    columns = list(map(str, frame.columns))
    timed = isinstance(frame.index, pd.DatetimeIndex)
    if timed:
        if frame.index.has_duplicates:
            first = frame.index[frame.index.duplicated()][0]
            raise ValueError(f"{source}: the timestamp {first} appears more than once")
        if not frame.index.is_monotonic_increasing:
            frame = frame.sort_index()
            notes.append("rows sorted by time")
    if time_col == "trading-days":  # built-in prices: every row a step, whatever the date
        freq = "B"
        gaps = 0
    elif timed:
        freq = freq or _infer_step(frame.index)
        grid = pd.date_range(frame.index[0], frame.index[-1], freq=freq)
        gaps = len(grid.difference(frame.index))
        off_grid = len(frame.index.difference(grid))
        if off_grid:
            raise ValueError(f"{source}: {off_grid} timestamps do not fall on the series' "
                             f"regular {freq} grid (first: {frame.index.difference(grid)[0]}); "
                             "resample the file to one spacing first")
    else:
        gaps = 0
    nan_rows = int(frame.isna().any(axis=1).sum())
    if gaps or nan_rows:
        what = []
        if nan_rows:
            first = frame.index[frame.isna().any(axis=1).to_numpy()][0]
            what.append(f"{nan_rows} rows with missing values (first at {first})")
        if gaps:
            what.append(f"{gaps} missing timestamps on the {freq} grid")
        found = " and ".join(what)
        if missing == "error":
            raise ValueError(f"{source}: {found}; choose --missing interpolate (fill linearly "
                             "in time) or --missing drop (remove them, rows become consecutive "
                             "steps)")
        if missing == "interpolate":
            if timed:
                frame = frame.reindex(pd.date_range(frame.index[0], frame.index[-1], freq=freq))
                frame = frame.interpolate(method="time", limit_direction="both")
            else:
                frame = frame.interpolate(limit_direction="both")
            notes.append(f"{found}: interpolated linearly")
        else:
            frame = frame.dropna()
            notes.append(f"{found}: dropped; the remaining rows are consecutive steps")
            if gaps:
                freq = None
    values = frame.to_numpy(dtype=np.float64)
    if not np.isfinite(values).all():
        raise ValueError(f"{source}: infinite values in the data")
    return Series(values=values, index=frame.index if timed else None, columns=columns,
                  freq=freq, season=1, source=source, notes=notes)


def _infer_step(index) -> str:
    """The series' step: business days when every timestamp is a weekday one day apart
    in the main, else the most common spacing."""
    import pandas as pd

    if len(index) < 3:
        raise ValueError("the series needs at least 3 timestamps to find its spacing")
    diffs = pd.Series(index[1:] - index[:-1])
    step = diffs.mode().iloc[0]
    day = pd.Timedelta(days=1)
    if step == day and (index.day_of_week < 5).all():
        return "B"
    if pd.Timedelta(days=28) <= step <= pd.Timedelta(days=31):
        if (index.day == 1).all():
            return "MS"
        if index.is_month_end.all():
            return "ME"
    if pd.Timedelta(days=89) <= step <= pd.Timedelta(days=92) and (index.day == 1).all():
        return "QS"
    if step % day == pd.Timedelta(0):
        days = step // day
        if days == 7:
            return "W-" + index[0].day_name()[:3].upper()
        return "D" if days == 1 else f"{days}D"
    if step % pd.Timedelta(hours=1) == pd.Timedelta(0):
        hours = step // pd.Timedelta(hours=1)
        return "h" if hours == 1 else f"{hours}h"
    minutes = step // pd.Timedelta(minutes=1)
    if step % pd.Timedelta(minutes=1) == pd.Timedelta(0):
        return "min" if minutes == 1 else f"{minutes}min"
    return f"{int(step.total_seconds())}s"
