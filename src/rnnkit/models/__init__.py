"""Reusable networks as plain nn.Modules configured by dataclasses (no Lightning here)."""

from rnnkit.models.classifier import SequenceClassifier, SequenceClassifierConfig
from rnnkit.models.recurrent import CELL_CHOICES, build_recurrent, initialise_recurrent
from rnnkit.models.tagger import SequenceTagger, SequenceTaggerConfig

__all__ = ["CELL_CHOICES", "SequenceClassifier", "SequenceClassifierConfig",
           "SequenceTagger", "SequenceTaggerConfig", "build_recurrent",
           "initialise_recurrent"]
