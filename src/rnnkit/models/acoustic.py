"""Acoustic model for CTC: a convolutional front end that subsamples time, recurrent
layers, and a linear layer to characters plus the CTC blank.

The shape follows Deep Speech 2 (Amodei et al. 2016) and ESPnet's ``Conv2dSubsampling``:
two 3x3 convolutions of stride 2 over (time, frequency) cut the frame rate from 100 to
25 per second, a linear layer maps each frame's channels x bands to the recurrent input,
then stacked (usually bidirectional) rnnkit layers read the whole clip. With
``encoder="conv"`` the recurrent layers are replaced by as many 1-D convolutions of width
5 and the same output width, which is the ablation that shows what the recurrence adds.

Padded frames are zeroed before every convolution, so a clip's output is the same
whether it is transcribed alone or in a padded batch.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from rnnkit.models.recurrent import EncoderConfig, build_initialised_encoder

ENCODERS = ("rnn", "conv")


@dataclass(kw_only=True)
class AcousticModelConfig(EncoderConfig):
    """Everything needed to rebuild an :class:`AcousticModel`."""

    features: int  # mel bands per frame
    num_labels: int  # blank + characters
    channels: int = 32  # of each front-end convolution
    encoder_kind: str = "rnn"  # "rnn" or "conv" (the ablation without recurrence)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.encoder_kind not in ENCODERS:
            raise ValueError(f"--encoder: expected one of {', '.join(ENCODERS)}, got "
                             f"{self.encoder_kind!r}")


def subsampled_lengths(lengths: Tensor) -> Tensor:
    """Frames left after the two stride-2 convolutions (kernel 3, padding 1)."""
    for _ in range(2):
        lengths = (lengths - 1) // 2 + 1
    return lengths


def _mask(x: Tensor, lengths: Tensor, time_dim: int) -> Tensor:
    """``x`` with the steps at or past each sequence's length set to 0."""
    steps = torch.arange(x.shape[time_dim], device=x.device)
    keep = steps[None, :] < lengths[:, None].to(x.device)  # [B, T]
    shape = [x.shape[0]] + [1] * (x.dim() - 1)
    shape[time_dim] = x.shape[time_dim]
    return x * keep.reshape(shape).to(x.dtype)


class AcousticModel(nn.Module):
    """``[B, T, features]`` log-mels and lengths -> CTC log-probabilities
    ``[B, T', num_labels]`` and the lengths ``T'`` (about T / 4)."""

    def __init__(self, config: AcousticModelConfig) -> None:
        super().__init__()
        self.config = config
        c = config.channels
        self.conv1 = nn.Conv2d(1, c, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(c, c, 3, stride=2, padding=1)
        bands = (config.features - 1) // 2 + 1
        bands = (bands - 1) // 2 + 1
        self.project = nn.Linear(c * bands, config.hidden)
        directions = 2 if config.bidirectional else 1
        width = (config.proj_size or config.hidden) * directions
        if config.encoder_kind == "rnn":
            self.encoder = build_initialised_encoder(config, config.hidden)
            self.convolutions = None
        else:
            self.encoder = None
            sizes = [config.hidden] + [width] * config.layers
            self.convolutions = nn.ModuleList(nn.Conv1d(a, b, 5, padding=2)
                                              for a, b in itertools.pairwise(sizes))
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(width, config.num_labels)

    def forward(self, features: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``lengths`` None: every clip fills all ``T`` frames (no masking)."""
        full = lengths is None
        if full:
            lengths = torch.full((features.shape[0],), features.shape[1], dtype=torch.long,
                                 device=features.device)
        lengths1 = (lengths - 1) // 2 + 1
        out_lengths = subsampled_lengths(lengths)
        x = features if full else _mask(features, lengths, 1)
        x = torch.relu(self.conv1(x.unsqueeze(1)))  # [B, C, T / 2, F / 2]
        x = torch.relu(self.conv2(x if full else _mask(x, lengths1, 2)))  # [B, C, T', F']
        x = x.permute(0, 2, 1, 3).flatten(2)  # [B, T', C * F']
        x = self.dropout(torch.relu(self.project(x)))  # [B, T', H]
        if self.encoder is not None:
            x, _ = self.encoder(x, lengths=None if full else out_lengths)  # [B, T', dirs * H]
        else:
            x = x.transpose(1, 2)  # [B, H, T']
            for conv in self.convolutions:
                x = self.dropout(torch.relu(conv(x if full else _mask(x, out_lengths, 2))))
            x = x.transpose(1, 2)
        logits = self.head(self.dropout(x))
        return torch.log_softmax(logits, dim=-1), out_lengths

    def export_signature(self) -> tuple[list[str], list[str], dict[str, int]]:
        """For ONNX and TorchScript (:mod:`rnnkit.export`): a batch of whole clips
        ``[batch, steps, features]`` in, log-probabilities ``[batch, frames, labels]`` out
        (frames = ceil(steps / 4)); clips of different lengths go one per call."""
        return ["features"], ["log_probs"], {"features": self.config.features,
                                             "per_step_output": True}

    def export_forward(self, features: Tensor) -> tuple[Tensor, ...]:
        return (self(features)[0],)
