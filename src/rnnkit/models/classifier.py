"""Sequence classifier: a recurrent encoder, its outputs pooled (its last state by default),
then a linear head."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from rnnkit.models.pooling import attention_scorer, check_pooling, last_state, pool_steps
from rnnkit.models.recurrent import EncoderConfig, build_initialised_encoder


@dataclass(kw_only=True)
class SequenceClassifierConfig(EncoderConfig):
    """Everything needed to rebuild a :class:`SequenceClassifier`."""

    input_size: int
    num_classes: int
    pooling: str = "last"  # rnnkit.models.pooling; runs saved before it existed read "last"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_pooling(self.pooling)


class SequenceClassifier(nn.Module):
    """``[B, T, input_size]`` (and true ``lengths`` [B]) -> logits ``[B, num_classes]``.

    The encoder's outputs are pooled over the valid steps (:mod:`rnnkit.models.pooling`):
    ``last`` concatenates the forward direction's state at the last step and the backward
    direction's at the first step; ``max``, ``mean`` and ``attention`` read every step.
    """

    def __init__(self, config: SequenceClassifierConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = build_initialised_encoder(config, config.input_size)
        directions = 2 if config.bidirectional else 1
        self.dropout = nn.Dropout(config.dropout)
        width = (config.proj_size or config.hidden) * directions  # of h, which the head reads
        if config.pooling == "attention":
            self.attention = attention_scorer(width)
        self.head = nn.Linear(width, config.num_classes)

    def export_signature(self) -> tuple[list[str], list[str], dict[str, int]]:
        """For ONNX and TorchScript (:mod:`rnnkit.export`): input and output names, and
        what an input holds (``features`` per step, or token ids below ``vocab``)."""
        return ["x"], ["logits"], {"features": self.config.input_size}

    def export_forward(self, x: Tensor) -> tuple[Tensor, ...]:
        return (self(x),)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        output, state = self.encoder(x, lengths=lengths)
        if self.config.pooling == "last":
            pooled = last_state(state, 2 if self.config.bidirectional else 1)
        else:
            pooled = pool_steps(output, lengths, self.config.pooling,
                                getattr(self, "attention", None))
        return self.head(self.dropout(pooled))
