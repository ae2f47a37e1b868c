"""Sequence classifier: a recurrent encoder read at its last step, then a linear head."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from rnnkit.models.recurrent import EncoderConfig, build_initialised_encoder


@dataclass(kw_only=True)
class SequenceClassifierConfig(EncoderConfig):
    """Everything needed to rebuild a :class:`SequenceClassifier`."""

    input_size: int
    num_classes: int


class SequenceClassifier(nn.Module):
    """``[B, T, input_size]`` -> logits ``[B, num_classes]`` from the last hidden state.

    With ``bidirectional``, the forward direction's state at the last step and the
    backward direction's state at the first step are concatenated.
    """

    def __init__(self, config: SequenceClassifierConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = build_initialised_encoder(config, config.input_size)
        directions = 2 if config.bidirectional else 1
        self.dropout = nn.Dropout(config.dropout)
        width = config.proj_size or config.hidden  # of h, which the head reads
        self.head = nn.Linear(width * directions, config.num_classes)

    def export_signature(self) -> tuple[list[str], list[str], dict[str, int]]:
        """For ONNX and TorchScript (:mod:`rnnkit.export`): input and output names, and
        what an input holds (``features`` per step, or token ids below ``vocab``)."""
        return ["x"], ["logits"], {"features": self.config.input_size}

    def export_forward(self, x: Tensor) -> tuple[Tensor, ...]:
        return (self(x),)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        _, state = self.encoder(x, lengths=lengths)
        h_n = state[0] if isinstance(state, tuple) else state  # [layers * dirs, B, H]
        directions = 2 if self.config.bidirectional else 1
        last = torch.cat(list(h_n[-directions:]), dim=-1)  # [B, dirs * H]
        return self.head(self.dropout(last))
