"""The names the command line offers, in one module that imports nothing heavy.

``rnnkit --help`` is built from these without importing torch, Lightning or a task;
the modules that act on a name import it from here, so the two cannot drift.
"""

CELL_CHOICES = ("rnn", "rnn-relu", "lstm", "gru", "ln-lstm", "ln-gru", "carry-lstm")
INIT_CHOICES = ("torch", "orthogonal", "identity")
BACKEND_CHOICES = ("native", "fused", "reference")  # rnnkit.available_backends(), CPU build
LEVELS = ("char", "word")  # language-model tokens
POOLINGS = ("last", "max", "mean", "attention")  # text classifier
ATTENTIONS = ("none", "dot", "general", "additive")  # translator
TOKENIZERS = ("auto", "word", "subword", "char", "jieba")  # translation
BASELINE_NAMES = ("naive", "seasonal_naive", "ets", "arima", "seasonal_arima")  # forecasting
TRANSFORMS = ("none", "log")  # forecast target transforms
WINDOW_NORMS = ("last", "none")  # forecaster input normalisation
MISSING_CHOICES = ("error", "interpolate", "drop")  # gaps in a series


def install_hint(extra: str) -> str:
    """How to get an optional part: from PyPI, and from a clone of the repository."""
    return f"pip install 'rnnkit[{extra}]' (in a clone: pip install -e '.[{extra}]')"
