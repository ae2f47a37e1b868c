"""The options of ``rnnkit train tsclass``, declared without importing torch."""

from __future__ import annotations

from rnnkit.choices import POOLINGS
from rnnkit.training.options import Option, non_negative, seed

# seqclass and tsclass (rnnkit.models.classifier): runs saved before it existed read "last"
CLASSIFIER_POOLING = Option(
    "pooling", str, "last", "how the encoder's outputs become one vector: the final state of "
    "each direction (last), or every valid step's outputs (max, mean, attention)", POOLINGS)


class TsclassOptions:
    """The options of ``rnnkit train`` for :class:`rnnkit.tasks.tsclass.task.SequenceFeatureTask`."""

    name = "tsclass"
    description = ("classify sequences of feature vectors of varying length: the speaker of "
                   "Japanese vowels (12 cepstral coefficients per frame), or a UEA/UCR .ts "
                   "dataset")
    options = [
        Option("data", str, "japanese-vowels", "japanese-vowels (UCI: 9 speakers, 270 "
               "training and 370 test utterances, read from the sktime wheel fetched with "
               "pip on first use) or ts:DIR (a folder with one *_TRAIN.ts and one *_TEST.ts "
               "file)", metavar="SOURCE"),
        Option("split-seed", seed, 0, "seed of the stratified tenth of the training file held "
               "out for validation", metavar="S"),
        CLASSIFIER_POOLING,
        Option("noise", non_negative, 0.4, "training inputs get Gaussian noise of this "
               "standard deviation added to every standardised feature, drawn anew each "
               "step (Bishop 1995: training with noise; 0: off)", metavar="SIGMA"),
    ]
    # The default recipe (docs/tsclass.md): two small bidirectional LSTM layers, dropout
    # before the head, a cosine over 60 short epochs run to the end (patience 60), and
    # --noise 0.4: the lowest validation loss of the arms tried on Japanese vowels
    # (experiments/tsclass.py).
    defaults = {"cell": "lstm", "hidden": 64, "layers": 2, "bidirectional": True,
                "dropout": 0.3, "epochs": 60, "batch_size": 16, "lr": 3e-3,
                "optimizer": "adam", "schedule": "cosine", "clip": 1.0, "patience": 60}
