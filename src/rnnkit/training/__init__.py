"""The training stack on PyTorch Lightning: options, Trainer, run folder, plots, runner."""

from rnnkit.training.module import TrainingModule
from rnnkit.training.runner import evaluate, load_trained, train

__all__ = ["TrainingModule", "evaluate", "load_trained", "train"]
