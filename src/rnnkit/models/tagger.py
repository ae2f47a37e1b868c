"""Sequence tagger: symbols in, one prediction per time step out (the copy-memory task's shape)."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.models.recurrent import EncoderConfig, build_initialised_encoder


@dataclass(kw_only=True)
class SequenceTaggerConfig(EncoderConfig):
    """Everything needed to rebuild a :class:`SequenceTagger`."""

    vocab: int  # input symbols, fed one-hot
    num_classes: int


class SequenceTagger(nn.Module):
    """``[B, T]`` int64 symbols -> logits ``[B, T, num_classes]``."""

    def __init__(self, config: SequenceTaggerConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = build_initialised_encoder(config, config.vocab)
        directions = 2 if config.bidirectional else 1
        self.dropout = nn.Dropout(config.dropout)  # before the head, as the classifier's
        self.head = nn.Linear((config.proj_size or config.hidden) * directions,
                              config.num_classes)

    def export_signature(self) -> tuple[list[str], list[str], dict[str, int]]:
        """For ONNX and TorchScript, as :meth:`SequenceClassifier.export_signature`."""
        return ["symbols"], ["logits"], {"vocab": self.config.vocab}

    def export_forward(self, symbols: Tensor) -> tuple[Tensor, ...]:
        return (self(symbols),)

    def forward(self, symbols: Tensor) -> Tensor:
        x = F.one_hot(symbols, self.config.vocab).to(self.head.weight.dtype)
        y, _ = self.encoder(x)
        return self.head(self.dropout(y))
