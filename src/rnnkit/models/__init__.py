"""Reusable networks as plain nn.Modules configured by dataclasses (no Lightning here)."""

from rnnkit.choices import CELL_CHOICES
from rnnkit.models.classifier import SequenceClassifier, SequenceClassifierConfig
from rnnkit.models.recurrent import EncoderConfig, build_recurrent, initialise_recurrent
from rnnkit.models.tagger import SequenceTagger, SequenceTaggerConfig

__all__ = ["CELL_CHOICES", "EncoderConfig", "SequenceClassifier", "SequenceClassifierConfig",
           "SequenceTagger", "SequenceTaggerConfig", "build_recurrent",
           "initialise_recurrent"]
