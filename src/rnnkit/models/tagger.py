"""Sequence tagger: symbols in, one prediction per time step out (the copy-memory task's shape)."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.models.recurrent import build_initialised_encoder


@dataclass
class SequenceTaggerConfig:
    """Everything needed to rebuild a :class:`SequenceTagger`."""

    vocab: int  # input symbols, fed one-hot
    num_classes: int
    cell: str = "lstm"
    hidden: int = 128
    layers: int = 1
    bidirectional: bool = False
    dropout: float = 0.0
    init: str = "torch"
    forget_bias: float | None = 1.0
    backend: str | None = None
    zoneout: float = 0.0  # inside the recurrence (rnnkit.nn.RNNBase)
    recurrent_dropout: float = 0.0


class SequenceTagger(nn.Module):
    """``[B, T]`` int64 symbols -> logits ``[B, T, num_classes]``."""

    def __init__(self, config: SequenceTaggerConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = build_initialised_encoder(config, config.vocab)
        directions = 2 if config.bidirectional else 1
        self.head = nn.Linear(config.hidden * directions, config.num_classes)

    def forward(self, symbols: Tensor) -> Tensor:
        x = F.one_hot(symbols, self.config.vocab).to(self.head.weight.dtype)
        y, _ = self.encoder(x)
        return self.head(y)
