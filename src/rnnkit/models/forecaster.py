"""Sequence forecaster: a recurrent encoder over a window, then a direct multi-step head;
and an ensemble of such forecasters that averages their forecasts."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.choices import WINDOW_NORMS
from rnnkit.models.recurrent import EncoderConfig, build_initialised_encoder

MIN_STD = 1e-3  # floor of the Gaussian head's standard deviation (standardised units)


@dataclass(kw_only=True)
class ForecasterConfig(EncoderConfig):
    """Everything needed to rebuild a :class:`SequenceForecaster`."""

    input_size: int  # columns per step: the target, then covariates
    output_length: int  # target steps forecast at once
    window_norm: str = "last"  # subtract the window's last target value (and add it back)
    probabilistic: bool = False  # Gaussian head: a mean and a standard deviation per step
    members: int = 1  # > 1: a ForecasterEnsemble of this many networks


def build_forecaster(config: ForecasterConfig) -> SequenceForecaster | ForecasterEnsemble:
    """One forecaster, or an ensemble when ``config.members`` > 1."""
    if isinstance(config.members, bool) or not isinstance(config.members, int) \
            or config.members < 1:
        raise ValueError(f"--ensemble: expected a positive number of networks, got "
                         f"{config.members!r}")
    return SequenceForecaster(config) if config.members == 1 else ForecasterEnsemble(config)


class SequenceForecaster(nn.Module):
    """``[B, L, input_size]`` window -> the next ``output_length`` target values.

    With ``window_norm="last"`` the target column of each window is shifted so that its
    last value is 0, and the forecast shifted back: the network learns changes from the
    last observation, which carries it past the range of levels seen in training.
    With ``probabilistic`` it also returns a standard deviation per step
    (``softplus`` of a second head, floored at :data:`MIN_STD`).
    """

    def __init__(self, config: ForecasterConfig) -> None:
        super().__init__()
        if config.window_norm not in WINDOW_NORMS:
            raise ValueError(f"--window-norm: expected one of {', '.join(WINDOW_NORMS)}, "
                             f"got {config.window_norm!r}")
        self.config = config
        self.encoder = build_initialised_encoder(config, config.input_size)
        directions = 2 if config.bidirectional else 1
        self.dropout = nn.Dropout(config.dropout)
        outputs = config.output_length * (2 if config.probabilistic else 1)
        self.head = nn.Linear((config.proj_size or config.hidden) * directions, outputs)

    def export_signature(self) -> tuple[list[str], list[str], dict[str, int]]:
        """For ONNX and TorchScript: the mean, and the standard deviation when
        probabilistic."""
        outputs = ["mean", "std"] if self.config.probabilistic else ["mean"]
        return ["x"], outputs, {"features": self.config.input_size}

    def export_forward(self, x: Tensor) -> tuple[Tensor, ...]:
        mean, std = self(x)
        return (mean,) if std is None else (mean, std)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """Returns the mean ``[B, K]`` and the standard deviation ``[B, K]`` (or None)."""
        if x.dim() != 3 or x.shape[-1] != self.config.input_size:
            raise ValueError(f"expected windows [batch, steps, {self.config.input_size}], "
                             f"got {tuple(x.shape)}")
        shift = None
        if self.config.window_norm == "last":
            shift = x[:, -1:, 0]  # [B, 1]
            x = torch.cat([x[:, :, :1] - shift.unsqueeze(-1), x[:, :, 1:]], dim=-1)
        _, state = self.encoder(x)
        h_n = state[0] if isinstance(state, tuple) else state
        directions = 2 if self.config.bidirectional else 1
        last = torch.cat(list(h_n[-directions:]), dim=-1)
        out = self.head(self.dropout(last))
        k = self.config.output_length
        mean, std = out[:, :k], None
        if self.config.probabilistic:
            std = F.softplus(out[:, k:]) + MIN_STD
        if shift is not None:
            mean = mean + shift
        return mean, std

    def loss(self, x: Tensor, y: Tensor) -> Tensor:
        """Mean squared error, or the Gaussian negative log-likelihood when probabilistic."""
        return forecast_loss(*self(x), y)

    def score(self, x: Tensor, y: Tensor) -> Tensor:
        """The loss that validation and test report: for one network, its training loss."""
        return self.loss(x, y)


def forecast_loss(mean: Tensor, std: Tensor | None, y: Tensor) -> Tensor:
    if std is None:
        return F.mse_loss(mean, y)
    return F.gaussian_nll_loss(mean, y, std.pow(2), full=True)


class ForecasterEnsemble(nn.Module):
    """``members`` :class:`SequenceForecaster` networks, each initialised from its own
    draw of the random generator, whose forecasts are averaged (a seed ensemble:
    Lakshminarayanan et al. 2017; averaging forecasts, Bates & Granger 1969).

    Training minimises the mean of the members' own losses, so each member learns alone
    (their parameters are disjoint; only the gradient clipping, when on, sees them
    together, and each member's gradient is 1/members of its solo one, which Adam's
    normalisation undoes). Validation and test score the ensemble's forecast: the mean
    of the members' means, and with ``probabilistic`` the standard deviation of the
    equal-weight mixture of their Gaussians (moments matched).
    """

    def __init__(self, config: ForecasterConfig) -> None:
        super().__init__()
        self.config = config
        member = replace(config, members=1)
        self.members = nn.ModuleList(SequenceForecaster(member) for _ in range(config.members))

    def export_signature(self) -> tuple[list[str], list[str], dict[str, int]]:
        return self.members[0].export_signature()

    def export_forward(self, x: Tensor) -> tuple[Tensor, ...]:
        mean, std = self(x)
        return (mean,) if std is None else (mean, std)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """The members' average: mean ``[B, K]`` and mixture standard deviation (or None)."""
        outputs = [m(x) for m in self.members]
        means = torch.stack([mean for mean, _ in outputs])
        mean = means.mean(dim=0)
        if not self.config.probabilistic:
            return mean, None
        second = torch.stack([s.pow(2) + mu.pow(2) for mu, s in outputs]).mean(dim=0)
        # E[y^2] - E[y]^2 >= each member's floor^2 in exact arithmetic; the clamp only
        # guards the rounding of that difference
        return mean, (second - mean.pow(2)).clamp_min(MIN_STD ** 2).sqrt()

    def loss(self, x: Tensor, y: Tensor) -> Tensor:
        """The mean of the members' own losses (each member learns alone)."""
        return torch.stack([m.loss(x, y) for m in self.members]).mean()

    def score(self, x: Tensor, y: Tensor) -> Tensor:
        """The loss of the averaged forecast."""
        return forecast_loss(*self(x), y)
