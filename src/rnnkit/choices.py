"""The names the command line offers, in one module that imports nothing heavy.

``rnnkit --help`` is built from these without importing torch, Lightning or a task;
the modules that act on a name import it from here, so the two cannot drift.
"""

from collections.abc import Sequence


class Names(Sequence):
    """A list of names that registration can extend (argparse reads it when the parser is
    built, so a cell registered before that is offered by ``--cell``)."""

    def __init__(self, *names: str) -> None:
        self._names = list(names)

    def __getitem__(self, index):
        return self._names[index]

    def __len__(self) -> int:
        return len(self._names)

    def __repr__(self) -> str:
        return f"Names{tuple(self._names)}"

    def add(self, name: str) -> None:
        if name not in self._names:
            self._names.append(name)


# The built-in cells, in registry order; rnnkit.functional.register_cell adds to it, and a
# test checks it against rnnkit.functional.CELLS (which this module cannot import: torch).
CELL_CHOICES = Names("rnn", "rnn-relu", "lstm", "gru", "ln-lstm", "ln-gru", "carry-lstm")
# The minimal cells (rnnkit.functional.minimal.MIN_CELLS: gates of the input alone, trained
# by a parallel scan); a layer of their own, not a cell description.
MIN_CELL_CHOICES = ("mingru", "minlstm")


class Joined(Sequence):
    """Several name lists read as one, each read when asked (so registration shows)."""

    def __init__(self, *parts: Sequence[str]) -> None:
        self._parts = parts

    def _names(self) -> list[str]:
        return [name for part in self._parts for name in part]

    def __getitem__(self, index):
        return self._names()[index]

    def __len__(self) -> int:
        return sum(len(part) for part in self._parts)


ENCODER_CELL_CHOICES = Joined(CELL_CHOICES, MIN_CELL_CHOICES)  # what --cell offers
INIT_CHOICES = ("torch", "orthogonal", "identity")
BACKEND_CHOICES = ("triton", "native", "fused", "reference", "scan")  # available_backends(), and
# scan (the minimal cells' parallel scan)
LEVELS = ("char", "word")  # language-model tokens
POOLINGS = ("last", "max", "mean", "attention")  # rnnkit.models.pooling
# text classifier: the embedding fine-tuned, frozen, or both side by side (Kim 2014's
# non-static, static and multichannel)
EMBEDDING_MODES = ("non-static", "static", "both")
PRETRAINED_VECTORS = ("glove-6b-50d",)  # named word-vector sources (rnnkit.data.vectors)
EMBEDDING_METHODS = ("skipgram", "cbow")  # rnnkit train embeddings (word2vec)
ATTENTIONS = ("none", "dot", "general", "additive", "scaled-dot", "scaled-general")  # translator
TOKENIZERS = ("auto", "word", "subword", "char", "jieba")  # translation
BASELINE_NAMES = ("naive", "seasonal_naive", "ets", "arima", "seasonal_arima")  # forecasting
TRANSFORMS = ("none", "log")  # forecast target transforms
WINDOW_NORMS = ("last", "none")  # forecaster input normalisation
MISSING_CHOICES = ("error", "interpolate", "drop")  # gaps in a series
RECOMMEND_LOSSES = ("ce", "sampled", "bpr-max")  # next-item losses
SPLIT_CHOICES = ("last", "days")  # next-item splits
VIDEO_MODELS = ("cnn-rnn", "convlstm", "convgru")  # video: classifiers; predictors: conv ones
VIDEO_TARGETS = ("direction", "digit")  # what a Moving MNIST clip is classified by


def install_hint(extra: str) -> str:
    """How to get an optional part: from PyPI, and from a clone of the repository."""
    return f"pip install 'rnnkit[{extra}]' (in a clone: pip install -e '.[{extra}]')"
