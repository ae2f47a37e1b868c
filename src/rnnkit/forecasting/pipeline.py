"""From a series to training windows and back to forecasts on the data's own scale.

The steps, each fitted on the training part only:

1. transform the target: ``log`` (positive series), then optionally ``difference`` it at
   a lag (1: log-returns for prices; the season: year-on-year change);
2. standardise every column with the training rows' mean and standard deviation;
   with ``calendar`` (a season of ``m`` steps), append two calendar columns, the sine and
   cosine of each row's position in the season (``2 pi t / m``), known for any future
   step, so a rollout can feed them too;
3. cut windows: ``input_length`` steps in, ``output_length`` target steps out, the
   origin ``o`` being the first step forecast. A window belongs to the split its
   targets lie in: training windows end before the validation part, validation windows
   inside it, test windows inside the test part (their inputs may reach back).

A forecast of ``horizon`` steps from origin ``o`` runs the model on the window before
``o``; beyond ``output_length`` it feeds its own forecasts back (autoregressive
rollout), then undoes the scaling, the differencing and the log.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch

from rnnkit.choices import TRANSFORMS


@dataclass
class Pipeline:
    """The fitted preprocessing of one run (saved in the run folder as ``pipeline.json``).

    Attributes:
        input_length, output_length: window sizes in steps.
        transform: ``none`` or ``log`` on the target.
        difference: lag of the target's differencing (0: none).
        mean, std: per column, of the transformed training rows.
        val_start, test_start, length: split boundaries (row positions) and series length.
        calendar: season of the calendar columns (0: none; see :func:`calendar_features`).
    """

    input_length: int
    output_length: int
    transform: str
    difference: int
    mean: list[float]
    std: list[float]
    val_start: int
    test_start: int
    length: int
    calendar: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def first_origin(self) -> int:
        """The earliest origin with a full input window of defined (differenced) values."""
        return self.difference + self.input_length

    def origins(self, split: str) -> np.ndarray:
        """Origins of the windows whose ``output_length`` targets lie in ``split``."""
        k = self.output_length
        lo, hi = {"train": (0, self.val_start), "validation": (self.val_start, self.test_start),
                  "test": (self.test_start, self.length)}[split]
        return np.arange(max(lo, self.first_origin), hi - k + 1)

    def levels(self, y: np.ndarray) -> np.ndarray:
        """The target after ``transform`` (before differencing)."""
        return np.log(y) if self.transform == "log" else np.asarray(y, dtype=np.float64)

    def encode(self, values: np.ndarray, scaled: bool = True) -> np.ndarray:
        """``[T, C]`` data (from row 0 of the series) -> model inputs: target transformed
        and differenced (the first ``difference`` rows are NaN), every column standardised,
        then the 2 calendar columns if any (``[T, C + 2]``); unless not ``scaled``: only
        transformed and differenced, ``[T, C]``."""
        out = np.array(values, dtype=np.float64, copy=True)
        w = self.levels(out[:, 0])
        if self.difference:
            u = np.full_like(w, np.nan)
            u[self.difference:] = w[self.difference:] - w[:-self.difference]
            w = u
        out[:, 0] = w
        if not scaled:
            return out
        out = (out - np.asarray(self.mean)) / np.asarray(self.std)
        if self.calendar:
            out = np.concatenate([out, calendar_features(np.arange(len(out)), self.calendar)],
                                 axis=1)
        return out

    def decode(self, z: np.ndarray, history: np.ndarray) -> np.ndarray:
        """Standardised target forecasts ``z [..., H]`` (steps ``o .. o+H-1``) -> data
        scale, given the data's target ``history [..., o]`` (at least ``difference``
        steps) before each origin."""
        u = z * self.std[0] + self.mean[0]
        if self.difference:
            d = self.difference
            w = self.levels(history[..., -d:])
            steps = []
            for j in range(u.shape[-1]):
                prev = w[..., j] if j < d else steps[j - d]
                steps.append(u[..., j] + prev)
            u = np.stack(steps, axis=-1)
        return np.exp(u) if self.transform == "log" else u


def calendar_features(rows: np.ndarray, season: int) -> np.ndarray:
    """``[..., 2]``: sine and cosine of ``2 pi row / season``, the position of each row
    (counted from the series' first) in its seasonal cycle, the same for every cycle."""
    angle = 2 * np.pi * (np.asarray(rows) % season) / season
    return np.stack([np.sin(angle), np.cos(angle)], axis=-1)


def fit_pipeline(values: np.ndarray, input_length: int, output_length: int, val_size: int,
                 test_size: int, transform: str = "none", difference: int = 0,
                 calendar: int = 0) -> Pipeline:
    """Fit the preprocessing on the training rows (those before the last ``val_size +
    test_size``), checking that every split holds at least one window. ``calendar``: the
    season of the calendar columns, 0 for none.

    Raises:
        ValueError: a bad size, a non-positive series under ``log``, or too few rows.
    """
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    if transform not in TRANSFORMS:
        raise ValueError(f"--transform: expected one of {', '.join(TRANSFORMS)}, got {transform!r}")
    for name, value, least in (("--input-length", input_length, 1),
                               ("--output-length", output_length, 1),
                               ("--val-size", val_size, 0), ("--test-size", test_size, 1),
                               ("--difference", difference, 0), ("--season", calendar, 0)):
        if value < least:
            raise ValueError(f"{name}: expected an integer >= {least}, got {value}")
    if transform == "log" and (values[:, 0] <= 0).any():
        raise ValueError("--transform log: the target has values <= 0 (smallest "
                         f"{values[:, 0].min():g}); use --transform none")
    test_start = n - test_size
    val_start = test_start - val_size
    need = difference + input_length + output_length
    if val_start < need:
        raise ValueError(
            f"the series has {n} rows: after the last {val_size} (validation) and {test_size} "
            f"(test) rows, {max(val_start, 0)} remain for training, fewer than one window needs "
            f"({difference} differenced + {input_length} input + {output_length} output); "
            "shorten --input-length or the validation and test parts, or give more data")
    if val_size < output_length:
        raise ValueError(f"--val-size: {val_size} steps cannot hold one window of "
                         f"--output-length {output_length} (validation picks the best epoch)")
    if calendar == 1:
        raise ValueError("--calendar: the series' season is 1 step, so every step has the "
                         "same position in it; set --season to the steps per cycle")
    pipeline = Pipeline(input_length, output_length, transform, difference, [], [], val_start,
                        test_start, n, calendar)
    train = pipeline.encode(values, scaled=False)[difference:val_start]
    std = train.std(axis=0)
    pipeline.mean = train.mean(axis=0).tolist()
    pipeline.std = np.where(std > 0, std, 1.0).tolist()
    return pipeline


def windows(z: np.ndarray, origins: np.ndarray, input_length: int,
            output_length: int) -> tuple[np.ndarray, np.ndarray]:
    """Inputs ``[N, input_length, C]`` (rows ``o-L .. o-1``) and targets
    ``[N, output_length]`` (target rows ``o .. o+K-1``) for each origin ``o``."""
    origins = np.asarray(origins, dtype=np.int64)
    rows = origins[:, None] + np.arange(-input_length, 0)[None, :]
    ahead = origins[:, None] + np.arange(output_length)[None, :]
    return z[rows], z[ahead, 0]


Predictor = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor | None]]


@torch.no_grad()
def forecast(predict: Predictor, pipeline: Pipeline, values: np.ndarray, origins: np.ndarray,
             horizon: int, samples: int = 0, seed: int = 0, batch: int = 4096
             ) -> tuple[np.ndarray, np.ndarray | None]:
    """Forecast ``horizon`` steps from each origin, on the data's scale.

    Args:
        predict: the model: inputs ``[N, L, C]`` (standardised) -> (mean ``[N, K]``,
            standard deviation ``[N, K]`` or None).
        values: the data ``[T, C]`` from the series' first row; only rows before each
            origin are read (the calendar columns of later rows come from their positions).
        origins: first forecast steps; each needs ``pipeline.first_origin`` rows before it.
        samples: with a probabilistic model, also draw this many sample paths, each fed
            back through the rollout (intervals then come from their quantiles).

    Returns:
        point forecasts ``[N, horizon]`` (the rollout of the means) and sample paths
        ``[samples, N, horizon]`` or None.
    """
    values = np.asarray(values, dtype=np.float64)
    origins = np.asarray(origins, dtype=np.int64)
    k, length = pipeline.output_length, pipeline.input_length
    if values.shape[1] > 1 and horizon > k:
        raise ValueError(f"--horizon: {horizon} steps need a rollout beyond --output-length {k}, "
                         "which needs future covariates; with --covariates keep the horizon "
                         f"<= {k} or train with --output-length {horizon}")
    if len(origins) and origins.min() < pipeline.first_origin:
        raise ValueError(f"origin {origins.min()}: needs {pipeline.first_origin} earlier rows")
    z = pipeline.encode(values)
    history = np.stack([values[o - max(pipeline.difference, 1):o, 0] for o in origins]) \
        if len(origins) else np.zeros((0, 1))
    x, _ = windows(z, origins, length, 0)

    def rollout(start: np.ndarray, at: np.ndarray, draw: torch.Generator | None) -> np.ndarray:
        """Forecasts from the windows ``start`` before the origins ``at``."""
        inputs = torch.as_tensor(start, dtype=torch.float32)
        out: list[torch.Tensor] = []
        steps = 0
        while steps < horizon:
            parts = []
            for i in range(0, len(inputs), batch):
                mean, std = predict(inputs[i:i + batch])
                if draw is not None:
                    if std is None:
                        raise ValueError("sample paths and intervals need a probabilistic "
                                         "model (train with --probabilistic)")
                    mean = mean + std * torch.randn(mean.shape, generator=draw)
                parts.append(mean)
            chunk = torch.cat(parts) if parts else torch.zeros(0, k)
            out.append(chunk)
            steps += k
            if steps < horizon:
                fed = torch.zeros(len(inputs), k, inputs.shape[2])
                fed[:, :, 0] = chunk
                if pipeline.calendar:  # the fed rows' own calendar, known ahead
                    rows = at[:, None] + (steps - k) + np.arange(k)[None, :]
                    fed[:, :, -2:] = torch.as_tensor(calendar_features(rows, pipeline.calendar))
                inputs = torch.cat([inputs, fed], dim=1)[:, -length:]
        return torch.cat(out, dim=1)[:, :horizon].double().numpy()

    point = pipeline.decode(rollout(x, origins, None), history)
    if not samples:
        return point, None
    draw = torch.Generator().manual_seed(seed)
    paths = rollout(np.tile(x, (samples, 1, 1)), np.tile(origins, samples), draw)
    paths = paths.reshape(samples, len(origins), horizon)
    return point, pipeline.decode(paths, np.broadcast_to(history, (samples, *history.shape)))
